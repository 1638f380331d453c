#!/usr/bin/env python3
"""Long horizons: the μP DMFT solve and the outliers at every step, specdyn vs the numpy
reference (scripts/dmft_numpy.py, the same time-marching algorithm without the control variate,
blocking or f32), at equal Monte-Carlo error: specdyn's 10 response samples with the control
variate give the error bars that 100 plain ones do (results/dmft-responses/summary.csv), so
numpy runs with 100. P = 16 (configs/dmft-compare.toml's network), M = 1000 samples, one
replica, 2 threads each, in one run; numpy's cost grows like T³, so it runs up to T = 100 only.

    cargo build --release && python3 scripts/bench_dmft_long.py [THREADS] [P]

With P = 4 (results/bench-dmft-long-p4.txt) the horizons are T = 100, 300, 1000 — T = 1000 at
P = 16 needs ≈ 40 GB — and numpy runs at every horizon (T = 1000 takes it ≈ 18 min).
"""
import json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
P = int(sys.argv[2]) if len(sys.argv) > 2 else 16
STEPS, NUMPY_MAX = ([50, 100, 300], 100) if P == 16 else ([100, 300, 1000], 1000)
for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]:
    os.environ[var] = str(THREADS)
import numpy as np  # after the thread variables
sys.path.insert(0, str(ROOT / "scripts"))
import dmft_numpy

print(f"numpy {np.__version__}, {THREADS} threads; L = 3 tanh, P = {P}, M = 1000 samples, 1 replica")
print("| T | S = P·(T+1) | specdyn solve (s) | specdyn outliers, all steps (s) | peak RSS (MiB) | "
      "numpy solve, 100 plain response samples (s) | numpy / specdyn solve |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for steps in STEPS:
    out = subprocess.run([str(ROOT / "target/release/specdyn"), "bench", "dmft", "--threads", str(THREADS), "--p", str(P),
                          "--steps", str(steps), "--samples", "1000", "--response-samples", "10", "--replicas", "1"],
                         check=True, capture_output=True, text=True)
    o = json.loads(out.stdout.splitlines()[-1])
    numpy_s, ratio = "—", "—"
    if steps <= NUMPY_MAX:
        t0 = time.perf_counter()
        dmft_numpy.solve_problem(o, samples=1000, response_samples=100)
        tn = time.perf_counter() - t0
        numpy_s, ratio = f"{tn:.1f}", f"{tn / o['solve_seconds']:.1f}×"
    print(f"| {steps} | {o['size']} | {o['solve_seconds']:.1f} | {o['outliers_all_steps_seconds']:.1f} | "
          f"{o['peak_rss_mib']:.0f} | {numpy_s} | {ratio} |", flush=True)
