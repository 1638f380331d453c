#!/usr/bin/env python3
"""Finite-size edge check for results/extensive-deep (scripts/reproduce-extensive-deep.sh).

Near a soft upper edge the predicted density is rho(x) ~ (k/pi) sqrt(edge - x); the largest of n
eigenvalues then sits on average 1.2065 (k n)^(-2/3) below the edge (the Tracy-Widom GOE mean,
-1.2065, in the local units of the semicircle, where k = 1). This prints, per case and n, the
fitted k (from the N = 2000 density within 2% of the edge), the measured gap (mean largest of 3
seeds, with its standard error) and the Tracy-Widom mean shift, all in % of the edge.
    python3 scripts/edge_tracy_widom.py [results/extensive-deep]
"""
import csv
import math
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "results/extensive-deep"
rows = list(csv.DictReader(open(f"{root}/edge-vs-n.csv")))
print("case,n,matrix_dim,k,gap_percent,gap_se_percent,tracy_widom_shift_percent")
for case in sorted({r["case"] for r in rows}):
    dens = list(csv.DictReader(open(f"{root}/{case}/N2000/extensive-density.csv")))
    xs = [float(r["x"]) for r in dens]
    rho = [float(r["density"]) for r in dens]
    edge = xs[-1]
    fit = [math.pi * r / math.sqrt(edge - x) for x, r in zip(xs, rho) if 0 < edge - x < 0.02 * edge and r > 0]
    k = sum(fit) / len(fit)
    for r in rows:
        if r["case"] != case:
            continue
        n = int(r["n"])
        # The layer's input dimension: D = N/nu for the first layer, N otherwise.
        dim = n if r["layer"] != "0" else n / float(case.split("-nu")[1].split("-")[0])
        shift = -1.2065 * (k * dim) ** (-2.0 / 3.0)
        se = 100 * float(r["largest_se"]) / edge
        print(f"{case},{n},{dim:g},{k:.3f},{r['gap_percent']},{se:.2f},{100 * shift / edge:.2f}")
