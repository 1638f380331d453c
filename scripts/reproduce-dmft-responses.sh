#!/usr/bin/env bash
# The response estimator's Monte-Carlo error, plain vs control variate (issue: Theory II):
# `specdyn theory mup configs/dmft-compare.toml` (P = 16, T = 80) with 8 replicas of 1000
# samples each, responses from 100 samples averaged plainly, or from 10 and 25 samples with
# the control variate; writes one folder per setting and summary.csv (time, and at step 80 the
# loss and the top outlier of W⁰, W¹, W² with their standard errors over the replicas).
#   scripts/reproduce-dmft-responses.sh [OUT_DIR]        (about 8 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-results/dmft-responses}
bin=${SPECDYN_BIN:-scripts/specdyn}
mkdir -p "$out"
run() {
    local name=$1; shift
    local t0=$(date +%s.%N)
    "$bin" theory mup configs/dmft-compare.toml --out "$out/$name" --samples 1000 --replicas 8 -q "$@"
    echo "$name $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" >> "$out/times.txt"
}
rm -f "$out/times.txt"
run plain-100 --response-samples 100 --responses plain
run cv-10 --response-samples 10 --responses control
run cv-25 --response-samples 25 --responses control
python3 - "$out" <<'PY'
import csv, sys, os
out = sys.argv[1]
times = dict(l.split() for l in open(os.path.join(out, "times.txt")))
rows = []
for name, secs in times.items():
    loss = [r for r in csv.DictReader(open(os.path.join(out, name, "loss.csv")))]
    last = loss[-1]
    row = {"setting": name, "seconds": f"{float(secs):.1f}", "step": last["step"],
           "loss": last["train_loss"], "loss_se": last["stderr"]}
    outl = [r for r in csv.DictReader(open(os.path.join(out, name, "outliers.csv")))]
    for m in ("layers.0.weight", "layers.1.weight", "layers.2.weight"):
        top = [r for r in outl if r["step"] == last["step"] and r["matrix"] == m and r["rank"] == "1"]
        key = "W" + m.split(".")[1]
        row[key] = top[0]["value"] if top else ""
        row[key + "_se"] = top[0]["stderr"] if top else ""
    rows.append(row)
with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
print(open(os.path.join(out, "summary.csv")).read())
PY
rm -f "$out"/*/kernels.csv   # 2.5 MB each; summary.csv is what is cited
