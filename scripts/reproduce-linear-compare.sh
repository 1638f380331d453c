#!/usr/bin/env bash
# The deep-linear DMFT against trained networks at fixed ratios (issue: Theory III, must-show 1):
# configs/linear-proportional.toml (L = 1, μP, ν = α = 2, γ₀ = 8, η₀ = 0.02, T = 64) at
# N = 500, 1000, 2000 (D = N/2, P = N), 8 seeds each with its own dataset, then `specdyn compare`.
# About 10 minutes on 2 cores. Writes OUT_DIR (results/linear-compare) with run.log.
#   scripts/reproduce-linear-compare.sh [RUNS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-runs/linear-compare}
out=${2:-results/linear-compare}
bin=${SPECDYN_BIN:-scripts/specdyn}
start=$(date +%s)
for n in 500 1000 2000; do
    for s in 0 1 2 3 4 5 6 7; do
        d="$runs/N$n-s$s"
        [ -f "$d/summary.json" ] && continue
        "$bin" train configs/linear-proportional.toml --out "$d" --overwrite --quiet \
            --set model.width=$n --set data.input_dim=$((n / 2)) --set data.train_size=$n \
            --set seed=$s --set data.seed=$((s + 1))
    done
done
mkdir -p "$out"
"$bin" compare "$runs"/N*-s* --out "$out" | tee "$out/summary.txt"
{
    echo "# Reproduce: scripts/reproduce-linear-compare.sh $runs $out"
    echo "# 24 runs of configs/linear-proportional.toml (N = 500, 1000, 2000 with D = N/2, P = N; seed = 0…7, data.seed = seed + 1), then"
    echo "specdyn compare $runs/N*-s* --out $out"
    echo "# training and comparison took $(( $(date +%s) - start )) s on 2 cores"
} > "$out/run.log"
