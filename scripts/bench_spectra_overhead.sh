#!/usr/bin/env bash
# Spectra's share of a training run (BENCHMARKS.md, "Spectra's share of a training run"):
# configs/fig1-mlp-tanh.toml with the default checkpoint schedule (3 per decade, no sharpness),
# 1000 steps, at N = 1024 and 2048, three ways:
#   none        spectra.enabled = false                        (the training alone)
#   inline-full spectra on the training thread, every singular value at every snapshot
#               (how specdyn worked before the background thread)
#   default     background thread, top-k by Lanczos, full spectra at 1 snapshot per decade
# Writes results/spectra-overhead.csv: wall time, spectra_s and spectra_wait_s from summary.json.
#   scripts/bench_spectra_overhead.sh [BINARY]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${1:-target/release/specdyn}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=results/spectra-overhead.csv
echo "width,mode,duration_s,spectra_s,spectra_wait_s,overhead_vs_none" > "$tmp/rows.csv"
for n in 1024 2048; do
    declare -A dur=()
    for mode in none inline-full default; do
        case $mode in
            none) extra=(--set spectra.enabled=false) ;;
            inline-full) extra=(--set spectra.background=false --set spectra.full_per_decade=100) ;;
            default) extra=() ;;
        esac
        "$bin" train configs/fig1-mlp-tanh.toml --out "$tmp/$n-$mode" --quiet \
            --set model.width=$n --set checkpoint.per_decade=3 --set spectra.sharpness=false "${extra[@]}" >/dev/null
        read -r d s w < <(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(j['duration_s'], j.get('spectra_s',0), j.get('spectra_wait_s',0))" "$tmp/$n-$mode/summary.json")
        dur[$mode]=$d
        o=$(python3 -c "print(f'{($d - ${dur[none]}) / $d:.3f}')")
        echo "$n,$mode,$d,$s,$w,$o" >> "$tmp/rows.csv"
        echo "N=$n $mode: ${d} s (spectra ${s} s, training waited ${w} s; overhead vs none $o)"
    done
    unset dur
done
cp "$tmp/rows.csv" "$out"
echo "wrote $out"
