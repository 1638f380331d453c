#!/usr/bin/env python3
"""Gaps between the deep-linear DMFT's top outlier and direct GD's top eigenvalue, per layer.

Reads every DIR/*/linear-outliers.csv written by `specdyn theory linear --simulate D` and writes
DIR/gaps.csv: at each simulated checkpoint where the theory has an outlier, the gap in units of
the distance above the bulk edge, (GD − DMFT)/(DMFT − edge), and in standard errors of the seed
mean; prints the final step's gaps.
    python3 scripts/linear_outlier_gaps.py results/linear-outliers
"""
import csv
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "results/linear-outliers")
rows = []
for path in sorted(root.glob("*/linear-outliers.csv")):
    with open(path) as f:
        for r in csv.DictReader(f):
            if not r["sim_top"] or int(r["outliers"]) == 0:
                continue
            th, sim, se, edge = (float(r[k]) for k in ("top", "sim_top", "sim_top_se", "edge"))
            rows.append({
                "run": path.parent.name, "parameterization": r["parameterization"], "nu": r["nu"],
                "layer": r["layer"], "step": int(r["step"]), "edge": edge, "dmft": th, "gd": sim,
                "gd_se": se, "gap_of_distance_pct": 100 * (sim - th) / (th - edge),
                "gap_se": (sim - th) / se if se > 0 else float("nan"),
            })
with open(root / "gaps.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
last = max(r["step"] for r in rows)
print(f"{'run':<12} {'par':<4} {'ν':>3} {'layer':>5} {'DMFT':>8} {'GD':>18} {'gap/distance':>13} {'gap/SE':>7}  (step {last})")
for r in rows:
    if r["step"] == last:
        print(f"{r['run']:<12} {r['parameterization']:<4} {r['nu']:>3} {'W' + r['layer']:>5} {r['dmft']:>8.4f} "
              f"{r['gd']:>9.4f} ± {r['gd_se']:.4f} {r['gap_of_distance_pct']:>+12.2f}% {r['gap_se']:>+7.1f}")
print(f"wrote {root / 'gaps.csv'}")
