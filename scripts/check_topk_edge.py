#!/usr/bin/env python3
"""How far below the exact top singular values the top-k estimates sit when the spectrum has no
outlier (the clustered bulk edge of an N × N Gaussian matrix / √N), for three schemes (k = 8):
the last power iterate alone (subspace iteration, k + 10 probes, 6 iterations); Rayleigh–Ritz
on all 7 iterates (fixed-depth block Krylov, the `top_triplets` of src/spectra/matrix.rs before
the converged Lanczos); and block Lanczos on the Gram matrix with full reorthogonalization, run
until every top-k residual is below 1e-4 of the top Ritz value (today's `top_triplets`: blocks
of 8, f32 products, convergence checked every 4 blocks). Prints the relative errors of the top
and the k-th value, and the Lanczos basis size.

    python3 scripts/check_topk_edge.py [N ...]        (default: 1024 1024 2048 4096)
"""
import sys

import numpy as np


def lanczos(a, k, b, tol=1e-4, check=4, seed=0):
    """Top-k singular values of a (tall or square) by block Lanczos on AᵀA; returns them and the basis size."""
    c = a.shape[1]
    a32 = a.astype(np.float32)
    x = np.linalg.qr(np.random.default_rng(seed).standard_normal((c, b)))[0]
    q, w = np.zeros((c, 0)), np.zeros((c, 0))
    blocks = 0
    while True:
        blocks += 1
        gx = (a32.T @ (a32 @ x.astype(np.float32))).astype(np.float64)
        q, w = np.hstack([q, x]), np.hstack([w, gx])
        if blocks % check == 0:
            h = q.T @ w
            theta, y = np.linalg.eigh((h + h.T) / 2)
            theta, y = theta[::-1][:k], y[:, ::-1][:, :k]
            res = np.linalg.norm(w @ y - (q @ y) * theta, axis=0)
            if res.max() <= tol * theta[0]:
                return np.sqrt(theta), q.shape[1]
        nxt = gx - q @ (q.T @ gx)
        nxt -= q @ (q.T @ nxt)
        x = np.linalg.qr(nxt)[0]


widths = [int(n) for n in sys.argv[1:]] or [1024, 1024, 2048, 4096]
print("| N | seed | last iterate: top | block Krylov: top | block Krylov: 8th | Lanczos: top | Lanczos: 8th | Lanczos basis |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
seen = {}
for n in widths:
    seed = seen.get(n, 0)
    seen[n] = seed + 1
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
    lz, size = lanczos(a, k, 8)
    rel = lambda x, i: 100 * (x[i] - exact[i]) / exact[i]
    print(f"| {n} | {seed} | {rel(last, 0):+.2f}% | {rel(krylov, 0):+.3f}% | {rel(krylov, k - 1):+.3f}% | "
          f"{rel(lz, 0):+.1e}% | {rel(lz, k - 1):+.1e}% | {size} |")
