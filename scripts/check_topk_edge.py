#!/usr/bin/env python3
"""How far below the exact top singular values the randomized top-k estimates sit when the
spectrum has no outlier (the clustered bulk edge of an N × N Gaussian matrix / √N): the last
power iterate alone (subspace iteration) vs Rayleigh–Ritz on all 7 iterates (block Krylov), the
scheme of `top_triplets` in src/spectra/matrix.rs (k = 8, k + 10 probes, 6 iterations in f32,
f32 projection). Prints the relative errors of the top and the k-th value.

    python3 scripts/check_topk_edge.py
"""
import numpy as np

print("| N | seed | last iterate: top | block Krylov: top | block Krylov: 8th |")
print("|---:|---:|---:|---:|---:|")
for n, seed in [(1024, 0), (1024, 1), (2048, 0)]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n)) / np.sqrt(n)
    exact = np.linalg.svd(a, compute_uv=False)
    k, l = 8, 18
    a32 = a.astype(np.float32)
    orth = lambda m: np.linalg.qr(m)[0]
    q = orth(a32 @ rng.standard_normal((n, l)).astype(np.float32))
    blocks = [q]
    for _ in range(6):
        q = orth(a32 @ orth(a32.T @ q))
        blocks.append(q)
    last = np.linalg.svd(orth(q.astype(np.float64)).T @ a, compute_uv=False)[:k]
    basis = orth(np.hstack(blocks).astype(np.float64)).astype(np.float32)
    krylov = np.linalg.svd((basis.T @ a32).astype(np.float64), compute_uv=False)[:k]
    rel = lambda x, i: 100 * (x[i] - exact[i]) / exact[i]
    print(f"| {n} | {seed} | {rel(last, 0):+.2f}% | {rel(krylov, 0):+.3f}% | {rel(krylov, k - 1):+.3f}% |")
