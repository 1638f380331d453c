#!/usr/bin/env bash
# Several outputs of a two-layer linear network (issue: Theory III, multi-class C = 5; App. E.13):
# the class DMFT (src/theory/linear.rs, LinearClasses) and the first layer's five outliers
# against direct GD at N = 2000 (D = 1000, P = 2000), μP and NTK, 8 seeds, teacher scales
# 1, 0.85, 0.7, 0.55, 0.4, γ₀ = 8, η₀ = 0.02, T = 64. About 5 minutes on 2 cores.
#   scripts/reproduce-linear-classes.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/linear-classes}
bin=${SPECDYN_BIN:-scripts/specdyn}
mkdir -p "$out"
start=$(date +%s)
cmd=(theory linear --nu 2 --alpha 2 --gamma0 8 --eta0 0.02 --teacher-scales 1,0.85,0.7,0.55,0.4 --steps 64 --simulate 1000 --seeds 8 --out "$out")
"$bin" "${cmd[@]}" | tee "$out/summary.txt"
{
    echo "# Reproduce: scripts/reproduce-linear-classes.sh $out"
    echo "specdyn ${cmd[*]}"
    echo "# took $(( $(date +%s) - start )) s on 2 cores"
} > "$out/run.log"
