#!/usr/bin/env python3
"""Where the largest of n eigenvalues should sit for a law with the predicted density.

For each `specdyn theory extensive ... --simulate N` output folder: the point x* at which the
predicted law leaves an expected count of 0.28 eigenvalues above it, n(1 - F(x*)) = 0.28 (at a
square-root edge this is exactly the mean of the Tracy-Widom GOE law, -1.2065 in its local units,
whatever the edge's coefficient; elsewhere a shape-aware estimate of the finite-size edge), next
to the simulated largest eigenvalue. n is the matrix's dimension: D for the first layer, N for a
hidden one. All in % of the predicted edge.
    python3 scripts/edge_count_estimate.py DIR [DIR ...]
"""
import csv
import re
import sys

print("dir,n,gap_percent,count_estimate_percent")
for folder in sys.argv[1:]:
    summary = open(f"{folder}/summary.txt").read()
    sim = re.search(r"simulated N = (\d+), D = (\d+)", summary)
    gap = re.search(r"largest eigenvalue .*\(edge ([-+0-9.]+)%\)", summary)
    layer = re.search(r"layer (\d+) of", summary)
    n = int(sim.group(1)) if layer and int(layer.group(1)) > 0 else int(sim.group(2))
    rows = list(csv.DictReader(open(f"{folder}/extensive-density.csv")))
    xs = [float(r["x"]) for r in rows]
    cdf = [float(r["cdf"]) for r in rows]
    target = 1.0 - 0.28 / n
    j = next(i for i in range(1, len(xs)) if cdf[i] >= target)
    x = xs[j - 1] + (xs[j] - xs[j - 1]) * (target - cdf[j - 1]) / (cdf[j] - cdf[j - 1])
    print(f"{folder},{n},{gap.group(1)},{100 * (x - xs[-1]) / xs[-1]:.2f}")
