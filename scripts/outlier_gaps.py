#!/usr/bin/env python3
"""Gaps between a `specdyn theory mup` prediction (with replica standard errors) and the run
means of a recorded `specdyn compare` table, in the three units of `specdyn compare`: relative
to the run, relative to the predicted distance above the MP edge 2, and in theory standard
errors. Reads THEORY/outliers.csv (step, matrix, rank, value, stderr) and
RECORDED/outliers.csv (step, matrix, width, seeds, run_mean, run_sd, ...); prints a table at the
steps given and writes OUT (CSV) for every step and width.

    python3 scripts/outlier_gaps.py THEORY_DIR RECORDED_DIR OUT.csv [STEP ...]
"""
import csv, math, sys

theory_dir, recorded_dir, out = sys.argv[1:4]
show = [int(s) for s in sys.argv[4:]] or [40, 60, 80]
theory = {}
with open(f"{theory_dir}/outliers.csv") as f:
    for r in csv.DictReader(f):
        if r["rank"] == "1":
            theory[(int(r["step"]), r["matrix"])] = (float(r["value"]), float(r["stderr"]))
rows = []
with open(f"{recorded_dir}/outliers.csv") as f:
    for r in csv.DictReader(f):
        key = (int(r["step"]), r["matrix"])
        if key not in theory:
            continue
        value, se = theory[key]
        run, sd, seeds = float(r["run_mean"]), float(r["run_sd"]), int(r["seeds"])
        gap = value - run
        rows.append({
            "step": key[0], "matrix": key[1], "width": int(r["width"]), "seeds": seeds,
            "run_mean": run, "run_se": sd / math.sqrt(seeds), "theory": value, "theory_stderr": se,
            "rel_gap": gap / run, "edge_gap": gap / (value - 2.0),
            "se_gap": gap / se if se > 0 else math.copysign(math.inf, gap),
            "combined_z": gap / math.hypot(se, sd / math.sqrt(seeds)),
        })
with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
print("| step | matrix | N | run mean ± SE | theory ± SE | rel. gap | gap / distance above edge | gap / theory SE | gap / combined SE |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    if r["step"] in show:
        print(f"| {r['step']} | {r['matrix']} | {r['width']} | {r['run_mean']:.4f} ± {r['run_se']:.4f} | "
              f"{r['theory']:.4f} ± {r['theory_stderr']:.4f} | {100 * r['rel_gap']:+.2f}% | "
              f"{100 * r['edge_gap']:+.1f}% | {r['se_gap']:+.2f} | {r['combined_z']:+.2f} |")
