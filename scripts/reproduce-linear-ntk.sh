#!/usr/bin/env bash
# The top NTK eigenvalue of a two-layer linear network on its training set (issue: Theory III,
# item 3; src/theory/linear.rs, "NTK") against direct GD, μP and NTK, α = 2, γ₀ = 8, T = 64,
# 8 seeds (each with its own dataset):
#   1. η₀ = 0.02 across widths at fixed D = 250, P = 500 (ν = 2, 4, 8): μP vs NTK;
#   2. η₀ = 0.1 (ν = 2; D = 500 and 1000): past the edge of stability, a period-2 orbit.
# About 15 minutes on 2 cores.
#   scripts/reproduce-linear-ntk.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/linear-ntk}
bin=${SPECDYN_BIN:-scripts/specdyn}
common=(--alpha 2 --gamma0 8 --steps 64 --seeds 8 --quiet)
mkdir -p "$out"
start=$(date +%s)
{
    echo "# Reproduce: scripts/reproduce-linear-ntk.sh $out"
    echo "specdyn theory linear --nu 2,4,8 --eta0 0.02 ${common[*]} --simulate 250 --out $out/width"
    "$bin" theory linear --nu 2,4,8 --eta0 0.02 "${common[@]}" --simulate 250 --out "$out/width" > "$out/width.txt"
    for d in 500 1000; do
        echo "specdyn theory linear --nu 2 --eta0 0.1 ${common[*]} --simulate $d --out $out/eos-D$d"
        "$bin" theory linear --nu 2 --eta0 0.1 "${common[@]}" --simulate $d --out "$out/eos-D$d" > "$out/eos-D$d.txt"
    done
    echo "# took $(( $(date +%s) - start )) s on 2 cores"
} > "$out/run.log"
