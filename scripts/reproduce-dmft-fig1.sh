#!/usr/bin/env bash
# The Fig.-1 setup at T = 300 (issue: Theory II, must-show (a)): configs/fig1-mlp-tanh.toml
# (L = 3 tanh, μP, γ₀ = 1, η₀ = 0.1, P = 16 single-index points, full batch) trained for 300
# steps at N = 1024, 2048, 4096 with seeds 0, 1, 2, then `specdyn compare` against the μP DMFT
# with error bars from 4 replicas × 1000 samples and the default responses (40 response samples
# at T = 300, debiased control variate). Writes OUT_DIR (results/dmft-fig1-T300) with run.log;
# about 75 minutes on 2 cores (the N = 4096 runs ~10 min each, the theory ~15 min).
#   scripts/reproduce-dmft-fig1.sh [RUNS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-runs/fig1-T300}
out=${2:-results/dmft-fig1-T300}
bin=${SPECDYN_BIN:-scripts/specdyn}
for n in 1024 2048 4096; do
    for s in 0 1 2; do
        extra=()
        [ "$n" = 4096 ] && extra=(--set spectra.sharpness=false --set spectra.ntk=false)
        d="$runs/N$n-s$s"
        [ -f "$d/summary.json" ] && continue
        "$bin" train configs/fig1-mlp-tanh.toml --out "$d" --overwrite --quiet \
            --set model.width=$n --set seed=$s --set train.steps=300 "${extra[@]}"
    done
done
mkdir -p "$out"
start=$(date +%s)
"$bin" compare "$runs"/N*-s* --out "$out"
{
    echo "# Reproduce: scripts/reproduce-dmft-fig1.sh $runs $out"
    echo "# 9 runs of configs/fig1-mlp-tanh.toml (N = 1024, 2048, 4096 × seeds 0, 1, 2; T = 300), then"
    echo "specdyn compare $runs/N*-s* --out $out"
    echo "# theory: 4 replicas × 1000 samples, 40 response samples (debiased); compare took $(( $(date +%s) - start )) s on 2 cores"
} > "$out/run.log"
