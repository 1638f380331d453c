#!/usr/bin/env python3
"""The μP network DMFT solve: specdyn vs the same algorithm in numpy (scripts/dmft_numpy.py) on
the same problem (time, peak memory, and the largest relative difference of the loss curves,
which use different random draws); then the outlier roots over all steps: specdyn (one shared
compression onto the significant eigenmodes of C^φ and C^g, then a small eigenproblem per
step) vs the straightforward numpy version of the same reduction (numpy.linalg.eigvals of the
full 2S × 2S matrix CB at each step, S = P·t). Same threads for both, in one run.

    cargo build --release && python3 scripts/bench_dmft.py [THREADS]

numpy's per-step cost is timed at every 10th step on random matrices of the same size (the
eigenvalue cost does not depend on the entries' values) and summed ×10 over the steps.
"""
import json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]:
    os.environ[var] = str(THREADS)
import numpy as np  # after the thread variables
import resource
sys.path.insert(0, str(ROOT / "scripts"))
import dmft_numpy

# The size (P = 10, T up to 100), then the recorded comparison's (P = 16, T = 80),
# where the hidden weights have outliers to compare.
CASES = [(10, [25, 50, 100]), (16, [80])]
ours = []
for p, steps in CASES:
    out = subprocess.run([str(ROOT / "target/release/specdyn"), "bench", "dmft", "--threads", str(THREADS), "--p", str(p),
                          "--steps", ",".join(map(str, steps)),
                          "--samples", "2000", "--response-samples", "200", "--replicas", "1"], check=True, capture_output=True, text=True)
    ours += [json.loads(l) for l in out.stdout.splitlines()]
rng = np.random.default_rng(0)

print(f"numpy {np.__version__}, {THREADS} threads; L = 3 tanh, M = 2000 samples, 200 response samples")
print("| P | T | P·(T+1) | specdyn solve (s) | specdyn peak RSS (MiB) | numpy solve (s) | numpy peak RSS (MiB) | "
      "specdyn / numpy | max loss difference |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for o in ours:
    t0 = time.perf_counter()
    loss = dmft_numpy.solve_problem(o, samples=o["samples"], response_samples=o["response_samples"])
    tn = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    diff = np.max(np.abs(loss - np.array(o["loss"])) / np.array(o["loss"]))
    print(f"| {o['p']} | {o['steps']} | {o['size']} | {o['solve_seconds']:.1f} | {o['peak_rss_mib']:.0f} | {tn:.1f} | "
          f"{rss:.0f} | {o['solve_seconds'] / tn:.2f} | {100 * diff:.2f}% |")
print()

print("| P | T | P·(T+1) | DMFT solve (s) | peak RSS (MiB) | outliers, all steps, specdyn (s) | modes kept | "
      "numpy full 2S×2S, all steps (s) | ratio | outliers at T (W²) | compression error |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for o in ours:
    hidden = o["depth"] - 1
    total = 0.0
    for t in range(10, o["steps"] + 1, 10):
        s = o["p"] * t
        m = rng.standard_normal((2 * s, 2 * s))
        t0 = time.perf_counter()
        np.linalg.eigvals(m)
        total += 10 * (time.perf_counter() - t0)
    total *= hidden
    ratio = o["outliers_all_steps_seconds"] / total
    top = ", ".join(f"{v:.3f}" for v in o["outliers_last_step"]) or "none"
    print(f"| {o['p']} | {o['steps']} | {o['size']} | {o['solve_seconds']:.1f} | {o['peak_rss_mib']:.0f} | "
          f"{o['outliers_all_steps_seconds']:.2f} | {o['modes_kept']} | {total:.1f} | {ratio:.3f} | {top} | "
          + (f"{o['compression_error']:.1e} |" if o["compression_error"] is not None else "— |"))
