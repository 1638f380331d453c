#!/usr/bin/env bash
# Spectra's share of a training run (BENCHMARKS.md, "Spectra's share of a training run"):
# configs/fig1-mlp-tanh.toml with the default checkpoint schedule (3 per decade, no sharpness),
# 1000 steps, at N = 1024 and 2048, three ways:
#   none        spectra.enabled = false                        (the training alone)
#   inline-full spectra on the training thread, every singular value at every snapshot
#               (how specdyn worked before the background thread)
#   default     background thread at idle priority, top-k by randomized subspace iteration,
#               full spectra at 1 snapshot per decade
# `none` and `default` alternate REPS times (default 3; wall times on a shared machine vary by
# ±10%) and the overhead is that of the medians; `inline-full` runs once.
# Writes results/spectra-overhead.csv (one row per run) and prints the medians.
#   scripts/bench_spectra_overhead.sh [BINARY] [REPS]
# WIDTHS (default "1024 2048") and OUT (default results/spectra-overhead.csv) override.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${1:-target/release/specdyn}
reps=${2:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=${OUT:-results/spectra-overhead.csv}
echo "width,mode,rep,duration_s,spectra_s,spectra_wait_s" > "$tmp/rows.csv"
run() { # width mode rep
    local n=$1 mode=$2 rep=$3 extra=()
    case $mode in
        none) extra=(--set spectra.enabled=false) ;;
        inline-full) extra=(--set spectra.background=false --set spectra.full_per_decade=100) ;;
        default) extra=() ;;
    esac
    "$bin" train configs/fig1-mlp-tanh.toml --out "$tmp/run" --overwrite --quiet \
        --set model.width="$n" --set checkpoint.per_decade=3 --set spectra.sharpness=false "${extra[@]}" >/dev/null
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(','.join(sys.argv[2:] + [str(j['duration_s']), str(j.get('spectra_s',0)), str(j.get('spectra_wait_s',0))]))" \
        "$tmp/run/summary.json" "$n" "$mode" "$rep" | tee -a "$tmp/rows.csv"
}
for n in ${WIDTHS:-1024 2048}; do
    for rep in $(seq 1 "$reps"); do
        run "$n" none "$rep"
        run "$n" default "$rep"
    done
    run "$n" inline-full 1
done
cp "$tmp/rows.csv" "$out"
python3 - "$out" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for n in sorted({r["width"] for r in rows}, key=int):
    med = {m: statistics.median(float(r["duration_s"]) for r in rows if r["width"] == n and r["mode"] == m)
           for m in ("none", "default", "inline-full")}
    for m in ("inline-full", "default"):
        print(f"N={n} {m}: median {med[m]:.1f} s vs none {med['none']:.1f} s -> overhead {(med[m] - med['none']) / med[m]:.1%}")
PY
echo "wrote $out"
