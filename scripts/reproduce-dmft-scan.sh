#!/usr/bin/env bash
# The recorded σ² and γ₀ scans (issue: Theory II, item 6): configs/dmft-compare.toml (L = 3
# tanh, P = 16, η₀ = 0.1, T = 80) at N = 2048 with seeds 0 and 1, at σ² ∈ {0.5, 1, 2} (γ₀ = 2)
# and γ₀ ∈ {1, 2, 4} (σ² = 1), each compared with its own μP DMFT (`specdyn compare` on runs of
# several configs: one comparison per setting plus theory-scan.png and scan-summary.csv).
# About 35 minutes on 2 CPU cores.
#   scripts/reproduce-dmft-scan.sh [RUNS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=${1:-runs/scan}
out=${2:-results}
bin=${SPECDYN_BIN:-scripts/specdyn}
train() { # name, then --set overrides
    local name=$1
    shift
    for s in 0 1; do
        local d="$runs/$name-s$s"
        [ -f "$d/summary.json" ] && continue
        "$bin" train configs/dmft-compare.toml --out "$d" --overwrite --quiet --set model.width=2048 \
            --set seed=$s --set spectra.sharpness=false --set spectra.ntk=false "$@"
    done
}
train base
train sigma2-0.5 --set model.init_variance=0.5
train sigma2-2 --set model.init_variance=2.0
train gamma0-1 --set model.gamma0=1.0
train gamma0-4 --set model.gamma0=4.0
theory=(--samples 1000 --response-samples 200 --replicas 4)
"$bin" compare "$runs"/base-s* "$runs"/sigma2-*-s* --out "$out/dmft-scan-sigma2" "${theory[@]}"
"$bin" compare "$runs"/base-s* "$runs"/gamma0-*-s* --out "$out/dmft-scan-gamma0" "${theory[@]}"
