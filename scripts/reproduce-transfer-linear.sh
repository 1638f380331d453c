#!/usr/bin/env bash
# Learning-rate transfer from theory (issue: Theory III, item 4): the sweep of
# configs/transfer-linear.toml (156 cells of two-layer linear networks, μP and NTK, ν = 2, 4, 8,
# 13 rates, 2 seeds; about 30 s on 2 cores) and `specdyn compare` of the sweep against the
# deep-linear DMFT on a fine η₀ grid. Writes OUT_DIR (results/transfer-linear) with run.log.
#   scripts/reproduce-transfer-linear.sh [SWEEP_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
sweep=${1:-sweeps/transfer-linear}
out=${2:-results/transfer-linear}
bin=${SPECDYN_BIN:-scripts/specdyn}
start=$(date +%s)
"$bin" sweep configs/transfer-linear.toml --out "$sweep" --jobs 2 --quiet
mkdir -p "$out"
"$bin" compare "$sweep" --out "$out" | tee "$out/summary.txt"
"$bin" sweep report "$sweep" >/dev/null && cp "$sweep/report/cells.csv" "$out/cells.csv"
{
    echo "# Reproduce: scripts/reproduce-transfer-linear.sh $sweep $out"
    echo "specdyn sweep configs/transfer-linear.toml --out $sweep --jobs 2"
    echo "specdyn compare $sweep --out $out"
    echo "# sweep and comparison took $(( $(date +%s) - start )) s on 2 cores"
} > "$out/run.log"
