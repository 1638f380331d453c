#!/usr/bin/env python3
"""All singular values of f32 matrices: specdyn (f64 Gram eigenvalues, faer) vs
numpy.linalg.svd(compute_uv=False) (LAPACK), same number of threads, in one run; and the top 8
singular triplets as the spectra path takes them between full spectra (block Lanczos run to
convergence), whose numpy alternative without an iterative solver is the full SVD.

    cargo build --release && python3 scripts/bench_spectra.py
"""
import json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]:
    os.environ[var] = str(THREADS)
import numpy as np  # after the thread variables

shapes = [(1024, 1024), (2048, 2048), (4096, 1024)]
out = subprocess.run([str(ROOT / "target/release/specdyn"), "bench", "svd", "--threads", str(THREADS),
                      "--shapes", ",".join(f"{r}x{c}" for r, c in shapes)], check=True, capture_output=True, text=True)
ours = [json.loads(l) for l in out.stdout.splitlines()]
rng = np.random.default_rng(0)


def best_of_3(f):
    times = []
    for _ in range(3):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


print(f"numpy {np.__version__}, {THREADS} threads")
print("| shape | specdyn (s) | faer SVD f64 (s) | numpy f32 (s) | numpy f64 (s) | specdyn / numpy f32 | specdyn top 8 (s) | top 8 / numpy f32 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for (r, c), o in zip(shapes, ours):
    a = rng.standard_normal((r, c)).astype(np.float32)
    b = a.astype(np.float64)
    t32 = best_of_3(lambda: np.linalg.svd(a, compute_uv=False))
    t64 = best_of_3(lambda: np.linalg.svd(b, compute_uv=False))
    print(f"| {r}×{c} | {o['seconds']:.3f} | {o['faer_svd_seconds']:.3f} | {t32:.3f} | {t64:.3f} | {o['seconds'] / t32:.2f} | "
          f"{o['top8_seconds']:.3f} | {o['top8_seconds'] / t32:.2f} |")
