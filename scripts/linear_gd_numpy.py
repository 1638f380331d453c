#!/usr/bin/env python3
"""Independent numpy GD of the depth-2 linear network in the convention of src/theory/linear.rs
(written apart from its simulate()): the top eigenvalues of W0ᵀW0/N and W1ᵀW1/N after T = 64
steps, ν = α = 2, γ₀ = 8, η₀ = 0.02, seeds 1000, 1001, …; one line per seed.
    python3 scripts/linear_gd_numpy.py {mup,ntk} N SEEDS
"""
import numpy as np, sys
par, n, seeds, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), 64
nu, alpha, gamma0, eta0 = 2.0, 2.0, 8.0, 0.02
g = gamma0 if par == "mup" else gamma0 / np.sqrt(nu)
d = int(round(n / nu)); p = int(round(alpha * d)); lr = eta0 * g; rn = np.sqrt(n)
for seed in range(seeds):
    rng = np.random.default_rng(1000 + seed)
    X = rng.standard_normal((p, d)); beta = rng.standard_normal(d)
    W0 = rng.standard_normal((n, d)); W1 = rng.standard_normal((n, n)); w = rng.standard_normal(n)
    for t in range(T):
        b0 = W1.T @ w / rn
        e = W0.T @ b0 / (g * n) - beta / np.sqrt(d)
        v = -X.T @ (X @ e) / p
        a1 = W0 @ v; a2 = W1 @ a1 / rn
        W0 += lr * np.outer(b0, v); W1 += (lr / rn) * np.outer(w, a1); w = w + lr * a2
    top0 = np.linalg.eigvalsh(W0.T @ W0 / n)[-1]
    top1 = np.linalg.eigvalsh(W1.T @ W1 / n)[-1]
    print(f"{par} N={n} seed={1000 + seed} t={T} W0 {top0:.5f} W1 {top1:.5f}", flush=True)
