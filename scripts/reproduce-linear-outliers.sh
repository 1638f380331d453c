#!/usr/bin/env bash
# Outliers of every layer of deep linear networks (issue: Theory III, App. E.12): the DMFT's
# pole conditions (src/theory/linear.rs, "Outliers") against direct GD, μP and NTK, ν = α = 2,
# γ₀ = 8, η₀ = 0.02, T = 64, 8 seeds (each with its own dataset):
#   1. fixed ratios, L = 1 and 2: D = 250, 500, 1000 (N = 500, 1000, 2000);
#   2. the width at fixed D = 250, P = 500 (ν = 2, 4, 8), L = 2: μP vs NTK.
# Then scripts/linear_outlier_gaps.py writes OUT_DIR/gaps.csv (gap in units of the distance above
# the bulk edge and in standard errors). About 25 minutes on 2 cores.
#   scripts/reproduce-linear-outliers.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/linear-outliers}
bin=${SPECDYN_BIN:-scripts/specdyn}
common=(--alpha 2 --gamma0 8 --eta0 0.02 --steps 64 --seeds 8 --quiet)
mkdir -p "$out"
start=$(date +%s)
{
    echo "# Reproduce: scripts/reproduce-linear-outliers.sh $out"
    for depth in 1 2; do
        for d in 250 500 1000; do
            echo "specdyn theory linear --depth $depth --nu 2 ${common[*]} --simulate $d --out $out/L$depth-D$d"
            "$bin" theory linear --depth $depth --nu 2 "${common[@]}" --simulate $d --out "$out/L$depth-D$d" \
                > "$out/L$depth-D$d.txt"
        done
    done
    echo "specdyn theory linear --depth 2 --nu 2,4,8 ${common[*]} --simulate 250 --out $out/width-L2"
    "$bin" theory linear --depth 2 --nu 2,4,8 "${common[@]}" --simulate 250 --out "$out/width-L2" > "$out/width-L2.txt"
    echo "python3 scripts/linear_outlier_gaps.py $out"
    echo "# took $(( $(date +%s) - start )) s on 2 cores"
} > "$out/run.log"
python3 scripts/linear_outlier_gaps.py "$out"
