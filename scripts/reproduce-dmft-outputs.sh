#!/usr/bin/env bash
# The recorded comparison with several outputs (issue: Theory II, must-show (c)):
# configs/dmft-compare.toml (L = 3 tanh, μP, γ₀ = 2, η₀ = 0.1, P = 16, full batch) with C = 3
# outputs (three single-index teachers y_c = He₁(z_c) + ½He₃(z_c) on the same inputs), trained
# for 60 steps at N = 1024, 2048, 4096 with seeds 0 and 1, then `specdyn compare` against the
# μP DMFT with several outputs (4 replicas × 1000 samples, 10 debiased response
# samples: the defaults at T = 60). Writes OUT_DIR (results/dmft-compare-outputs3) with run.log.
#   scripts/reproduce-dmft-outputs.sh [RUNS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-runs/outputs3}
out=${2:-results/dmft-compare-outputs3}
bin=${SPECDYN_BIN:-scripts/specdyn}
for n in 1024 2048 4096; do
    for s in 0 1; do
        d="$runs/N$n-s$s"
        [ -f "$d/summary.json" ] && continue
        "$bin" train configs/dmft-compare.toml --out "$d" --overwrite --quiet \
            --set model.width=$n --set seed=$s --set 'data.kind="multi-output"' --set data.outputs=3 \
            --set train.steps=60 --set spectra.sharpness=false --set spectra.ntk=false
    done
done
mkdir -p "$out"
start=$(date +%s)
"$bin" compare "$runs"/N*-s* --out "$out" --samples 1000 --replicas 4
{
    echo "# Reproduce: scripts/reproduce-dmft-outputs.sh $runs $out"
    echo "# 6 runs of configs/dmft-compare.toml with data.kind = \"multi-output\", data.outputs = 3, train.steps = 60"
    echo "# (N = 1024, 2048, 4096 × seeds 0, 1), then"
    echo "specdyn compare $runs/N*-s* --out $out --samples 1000 --replicas 4"
    echo "# compare (theory included) took $(( $(date +%s) - start )) s on 2 cores"
} > "$out/run.log"
