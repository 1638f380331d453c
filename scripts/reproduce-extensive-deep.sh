#!/usr/bin/env bash
# Deeper networks with extensive outputs (issue: Theory IV, item 4; paper App. F.3): one
# population GD step of a linear network with L hidden layers, the spectrum of one layer from
# the matrix Dyson equation of the update's linearization against the exact update simulated at
# N = 1000, 2000, 4000 (3 seeds each). Writes OUT_DIR (results/extensive-deep): per case the
# command's output folder (density CSV, simulated CSV, figure, summary.txt) and edge-vs-n.csv.
#   scripts/reproduce-extensive-deep.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/extensive-deep}
bin=${SPECDYN_BIN:-scripts/specdyn}
mkdir -p "$out"
echo "case,layers,layer,n,upper_edge,largest_mean,largest_se,gap_percent,ks" > "$out/edge-vs-n.csv"
# (name, L, ℓ, ν, χ, γ₀, η₀)
while read -r name layers layer nu chi gamma0 eta0; do
    for n in 1000 2000 4000; do
        dir="$out/$name/N$n"
        args=(theory extensive --layers "$layers" --layer "$layer" --nu "$nu" --chi "$chi" --gamma0 "$gamma0"
            --eta0 "$eta0" --simulate "$n" --seeds 3 --out "$dir" --quiet)
        mkdir -p "$dir"
        { echo "# specdyn ${args[*]}"; "$bin" "${args[@]}" | grep -v '^wrote'; } > "$dir.summary.txt"
        mv "$dir.summary.txt" "$dir/summary.txt"
        edge=$(sed -n 's/.*support of .*\[[0-9.]*, \([0-9.]*\)\].*/\1/p' "$dir/summary.txt")
        top=$(sed -n 's/.*largest eigenvalue *\([0-9.]*\) ± \([0-9.]*\) (edge \([-+0-9.]*\)%).*/\1,\2,\3/p' "$dir/summary.txt")
        ks=$(sed -n 's/.*KS distance *\([0-9.]*\).*/\1/p' "$dir/summary.txt")
        echo "$name,$layers,$layer,$n,$edge,$top,$ks" >> "$out/edge-vs-n.csv"
    done
done <<'CASES'
L2-hidden-nu2-chi1-g2 2 1 2 1 2 0.2
L2-hidden-nu5-chi4-g1 2 1 5 4 1 0.2
L2-first-nu2-chi1-g2 2 0 2 1 2 0.2
L3-middle-nu4-chi2-g1 3 1 4 2 1 0.1
CASES
cat "$out/edge-vs-n.csv"
