#!/usr/bin/env bash
# The recorded minibatch-SGD comparison (issue: Theory II, item 4; paper Fig. 12):
# configs/dmft-compare.toml with minibatches of 8 of the 16 points (the model seed orders them,
# so the theory follows one seed's batch order and each seed is compared on its own), N = 2048,
# seed 0, T = 80, against the μP DMFT of that batch sequence: loss, kernels and outliers.
#   scripts/reproduce-dmft-minibatch.sh [RUNS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-runs/minibatch}
out=${2:-results/dmft-compare-minibatch}
bin=${SPECDYN_BIN:-scripts/specdyn}
d="$runs/N2048-s0"
[ -f "$d/summary.json" ] || "$bin" train configs/dmft-compare.toml --out "$d" --overwrite --quiet \
    --set model.width=2048 --set seed=0 --set train.batch_size=8 --set spectra.sharpness=false --set spectra.ntk=false
mkdir -p "$out"
start=$(date +%s)
"$bin" compare "$d" --out "$out" --samples 1000 --replicas 4 --response-samples 10
{
    echo "# Reproduce: scripts/reproduce-dmft-minibatch.sh $runs $out"
    echo "# 1 run of configs/dmft-compare.toml with train.batch_size = 8 (N = 2048, seed 0), then"
    echo "specdyn compare $d --out $out --samples 1000 --replicas 4 --response-samples 10"
    echo "# compare (theory included) took $(( $(date +%s) - start )) s on 2 cores"
} > "$out/run.log"
