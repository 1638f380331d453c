#!/usr/bin/env bash
# The recorded Fig.-2 comparison in results/fig2/ (issue: model interface + ResNet):
# configs/fig2-resnet.toml at N = 16, 32, 64 (seeds 0, 1) and N = 128 (seed 0) on the CIFAR-10
# data in DATA_DIR, then `specdyn plot` of blocks.0.conv2.weight across the runs. About 40
# minutes on 2 CPU cores (N = 128 dominates).
#   scripts/reproduce-fig2.sh DATA_DIR [RUNS_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
data=${1:?usage: scripts/reproduce-fig2.sh DATA_DIR [RUNS_DIR] [OUT_DIR]}
runs=${2:-runs/fig2}
out=${3:-results/fig2}
for cell in 16:0 16:1 32:0 32:1 64:0 64:1 128:0; do
    n=${cell%:*}
    s=${cell#*:}
    d="$runs/N$n-s$s"
    if [ -f "$d/summary.json" ] && grep -q '"completed"' "$d/summary.json"; then continue; fi
    if [ -f "$d/config.toml" ]; then
        scripts/specdyn train --resume "$d" --quiet
    else
        scripts/specdyn train configs/fig2-resnet.toml --out "$d" --quiet \
            --set data.dir="\"$data\"" --set model.width=$n --set seed=$s
    fi
done
scripts/specdyn plot "$runs"/N*-s* --matrix blocks.0.conv2.weight --out "$out"
