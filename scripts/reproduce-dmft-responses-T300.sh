#!/usr/bin/env bash
# The response estimators at a long horizon with common random numbers (issue: Theory II):
# `specdyn theory mup configs/fig1-mlp-tanh.toml --set train.steps=300` with ONE replica of the
# same 1000 samples (--dmft-seed 7) and n = 10, 20, 40 response samples (the first n of those
# samples), each with the first-order control variate and the debiased one. Differences between
# estimators at equal n are their bias difference (same samples); differences between n are the
# response samples' noise. Writes one folder per setting, times.txt and summary.csv (top outlier
# of W⁰, W¹, W² at steps 100, 200, 300 and the loss at 300).
#   scripts/reproduce-dmft-responses-T300.sh [OUT_DIR]        (about 20 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/dmft-responses-T300}
bin=${SPECDYN_BIN:-scripts/specdyn}
mkdir -p "$out"
rm -f "$out/times.txt"
for n in 10 20 40; do
    for est in control debiased; do
        t0=$(date +%s)
        "$bin" theory mup configs/fig1-mlp-tanh.toml --set train.steps=300 --out "$out/n$n-$est" \
            --replicas 1 --samples 1000 --response-samples "$n" --responses "$est" --dmft-seed 7 -q
        echo "$n $est $(( $(date +%s) - t0 ))" >> "$out/times.txt"
    done
done
python3 - "$out" <<'PY'
import csv, os, sys
out = sys.argv[1]
rows = []
for line in open(os.path.join(out, "times.txt")):
    n, est, secs = line.split()
    d = os.path.join(out, f"n{n}-{est}")
    top = {(int(r["step"]), r["matrix"]): float(r["value"])
           for r in csv.DictReader(open(os.path.join(d, "outliers.csv"))) if r["rank"] == "1"}
    loss = list(csv.DictReader(open(os.path.join(d, "loss.csv"))))[-1]
    row = {"response_samples": n, "estimator": est, "time_s": secs, "loss_300": float(loss["train_loss"])}
    for m, name in [("layers.0.weight", "W0"), ("layers.1.weight", "W1"), ("layers.2.weight", "W2")]:
        for t in (100, 200, 300):
            row[f"{name}_{t}"] = top.get((t, m), float("nan"))
    rows.append(row)
with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
for r in rows:
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
PY
rm -f "$out"/n*/kernels.csv "$out"/n*/theory-mup.png "$out"/n*/theory-mup.svg   # 11 MB each; the table needs outliers and loss
