#!/usr/bin/env bash
# The recorded online-SGD comparison (issue: Theory II, item 4): configs/dmft-compare.toml with
# a fresh batch of 16 samples every step (data.online = true; the data seed sets the samples,
# so every model seed shares one theory), N = 2048, seeds 0 and 1, T = 80, against the μP DMFT
# of the same sample stream (4 replicas × 1000 samples, 10 response samples). About 20 minutes
# on 2 CPU cores, most of it the outliers (fresh samples give C^φ and C^g nearly full rank).
#   scripts/reproduce-dmft-online.sh [RUNS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-runs/online}
out=${2:-results/dmft-compare-online}
bin=${SPECDYN_BIN:-scripts/specdyn}
for s in 0 1; do
    d="$runs/N2048-s$s"
    [ -f "$d/summary.json" ] && continue
    "$bin" train configs/dmft-compare.toml --out "$d" --overwrite --quiet --set model.width=2048 --set seed=$s \
        --set data.online=true --set train.batch_size=16 --set spectra.sharpness=false --set spectra.ntk=false
done
mkdir -p "$out"
start=$(date +%s)
"$bin" compare "$runs"/N2048-s* --out "$out" --samples 1000 --replicas 4 --response-samples 10
{
    echo "# Reproduce: scripts/reproduce-dmft-online.sh $runs $out"
    echo "# 2 runs of configs/dmft-compare.toml with data.online = true, train.batch_size = 16 (N = 2048, seeds 0, 1), then"
    echo "specdyn compare $runs/N2048-s* --out $out --samples 1000 --replicas 4 --response-samples 10"
    echo "# compare (theory included) took $(( $(date +%s) - start )) s on 2 cores"
} > "$out/run.log"
