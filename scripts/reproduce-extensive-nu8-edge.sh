#!/usr/bin/env bash
# The finite-size edge at small D (issue: Theory IV, must-show "where D is smaller (ν = 8) report
# the gap and show it shrinking with N"): the two-layer law at ν = 8, χ = 0.5, η₀ = 0.2,
# γ₀ = 0.5, 2, 8, simulated at N = 2000, 4000, 8000 (D = 250, 500, 1000; 3 seeds). Writes
# OUT_DIR/edge-vs-n.csv (and each command's folder with its summary.txt).
#   scripts/reproduce-extensive-nu8-edge.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/extensive-nu8-edge}
bin=${SPECDYN_BIN:-scripts/specdyn}
mkdir -p "$out"
echo "gamma0,n,d,upper_edge,largest_mean,largest_se,gap_percent,ks" > "$out/edge-vs-n.csv"
for g in 0.5 2 8; do
    for n in 2000 4000 8000; do
        dir="$out/g$g-N$n"
        args=(theory extensive --nu 8 --chi 0.5 --gamma0 "$g" --eta0 0.2 --simulate "$n" --seeds 3 --out "$dir" --quiet)
        mkdir -p "$dir"
        { echo "# specdyn ${args[*]}"; "$bin" "${args[@]}"; } > "$out/summary.tmp" 2>/dev/null
        mv "$out/summary.tmp" "$dir/summary.txt"
        edge=$(sed -n 's/.*support of .*\[[0-9.]*, \([0-9.]*\)\].*/\1/p' "$dir/summary.txt")
        top=$(sed -n 's/.*largest eigenvalue *\([0-9.]*\) ± \([0-9.]*\) (edge \([-+0-9.]*\)%).*/\1,\2,\3/p' "$dir/summary.txt")
        ks=$(sed -n 's/.*KS distance *\([0-9.]*\).*/\1/p' "$dir/summary.txt")
        echo "$g,$n,$((n / 8)),$edge,$top,$ks" >> "$out/edge-vs-n.csv"
    done
done
cat "$out/edge-vs-n.csv"
