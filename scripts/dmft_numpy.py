#!/usr/bin/env python3
"""A straightforward numpy version of specdyn's μP network DMFT solver (src/theory/network.rs):
the same time-marching algorithm (Monte-Carlo single-site processes sampled causally through
fixed mixing matrices, responses by an adjoint sweep over `response_samples` samples, the
Stein term of the readout by forward tangents along w(0)), written as a user would in numpy.
It is the reference for `scripts/bench_dmft.py` and, run on the same problem, must reproduce
specdyn's loss curve within Monte-Carlo error (the random draws differ).

    python3 scripts/dmft_numpy.py PROBLEM.json     # a problem printed by `specdyn bench dmft`
"""
import json, sys, time
import numpy as np


def adjoint_responses(kh, kz, d1, curv, p, t, seed_g):
    """Sample-averaged Jacobians of φ(t) (seed_g False) or g(t) (True) w.r.t. the sources u, r."""
    m, w = d1.shape[0], (t + 1) * p
    n = m * p
    hbar, zbar = np.zeros((n, w)), np.zeros((n, w))
    unit = np.kron(np.eye(p), np.ones((m, 1)))  # row (μ, i) seeds quantity μ
    for s in range(t, -1, -1):
        c = s * p
        gbar = hbar[:, c + p:w] @ kh[c + p:w, c:c + p]
        if seed_g and s == t:
            gbar += unit
        d1s, cs = np.tile(d1[:, c:c + p], (p, 1)), np.tile(curv[:, c:c + p], (p, 1))
        zbar[:, c:c + p] = d1s * gbar
        fbar = zbar[:, c:w] @ kz[c:w, c:c + p]
        if not seed_g and s == t:
            fbar += unit
        hbar[:, c:c + p] = d1s * fbar + cs * gbar
    return hbar.reshape(p, m, w).mean(1), zbar.reshape(p, m, w).mean(1)


def solve(kx, y, depth, gamma, eta0, sigma2, steps, samples=2000, response_samples=200, seed=0):
    rng = np.random.default_rng(seed)
    P, L, M, Mr = len(y), depth, samples, response_samples
    S, sig, eg = P * (steps + 1), np.sqrt(sigma2), eta0 * gamma
    Z = lambda r, c: np.zeros((r, c))
    phi_op, g_op, a_op, b_op = ([Z(S, S) for _ in range(L)] for _ in range(4))
    kh, kz = [Z(S, S) for _ in range(L)], [Z(S, S) for _ in range(L)]
    F, G, D1, CV = ([Z(M, S) for _ in range(L)] for _ in range(4))
    delta = np.zeros(S)
    vals, vecs = np.linalg.eigh(kx)
    keep = vals > 1e-12 * vals.max()
    root = vecs[:, keep] * np.sqrt(vals[keep])
    u1 = sig * rng.standard_normal((M, root.shape[1])) @ root.T
    w0 = sig * rng.standard_normal(M)
    mix_u = [None] + [sig / np.sqrt(M) * rng.standard_normal((M, M)) for _ in range(1, L)]
    mix_r = [sig / np.sqrt(M) * rng.standard_normal((M, M)) for _ in range(L - 1)] + [None]
    dphi, dg = Z(M, S), Z(M, S)
    kx_tiled = np.tile(kx, (steps + 1, steps + 1))
    losses = []
    for t in range(steps + 1):
        c, w = t * P, (t + 1) * P
        for l in range(L):  # h side, bottom-up
            if l == 0:
                kh[l][c:w, :c] = eg * delta[:c] * kx_tiled[c:w, :c]
                u = u1
            else:
                kh[l][c:w, :c] = sigma2 * a_op[l - 1][c:w, :c] + eg * delta[:c] * phi_op[l - 1][c:w, :c]
                u = mix_u[l] @ F[l - 1][:, c:w]
            h = u + G[l][:, :c] @ kh[l][c:w, :c].T
            th = np.tanh(h)
            F[l][:, c:w], D1[l][:, c:w], CV[l][:, c:w] = th, 1 - th ** 2, -2 * th * (1 - th ** 2)
            rows = F[l][:, c:w].T @ F[l][:, :w] / M
            _, rbar = adjoint_responses(kh[l], kz[l], D1[l][:Mr], CV[l][:Mr], P, t, False)
            a_op[l][c:w, :c] = rbar[:, :c]
            if l == L - 1:
                dh = dg[:, :c] @ kh[l][c:w, :c].T
                dphi[:, c:w] = D1[l][:, c:w] * dh
            phi_op[l][c:w, :w], phi_op[l][:w, c:w] = rows, rows.T
        f = eta0 * phi_op[L - 1][c:w, :c] @ delta[:c] + sigma2 / gamma * dphi[:, c:w].mean(0)
        delta[c:w] = (y - f) / P
        losses.append(float(np.mean((f - y) ** 2) / 2))
        for l in reversed(range(L)):  # z side, top-down
            if l == L - 1:
                kz[l][c:w, :c] = eg * delta[:c]
                r = np.tile(w0[:, None], (1, P))
            else:
                kz[l][c:w, :w] = sigma2 * b_op[l + 1][c:w, :w]
                kz[l][c:w, :c] += eg * delta[:c] * g_op[l + 1][c:w, :c]
                r = mix_r[l] @ G[l + 1][:, c:w]
            z = r + F[l][:, :w] @ kz[l][c:w, :w].T
            G[l][:, c:w] = D1[l][:, c:w] * z
            CV[l][:, c:w] *= z
            rows = G[l][:, c:w].T @ G[l][:, :w] / M
            if l > 0:
                ubar, _ = adjoint_responses(kh[l], kz[l], D1[l][:Mr], CV[l][:Mr], P, t, True)
                b_op[l][c:w, :w] = ubar
            if l == L - 1:
                dz = 1 + dphi[:, :w] @ kz[l][c:w, :w].T
                dg[:, c:w] = CV[l][:, c:w] * dh + D1[l][:, c:w] * dz
            g_op[l][c:w, :w], g_op[l][:w, c:w] = rows, rows.T
    return np.array(losses)


def solve_problem(pr, **kw):
    kx = np.array(pr["kx"]).reshape(pr["p"], pr["p"])
    return solve(kx, np.array(pr["y"]), pr["depth"], pr["gamma"], pr["eta0"], pr["sigma2"], pr["steps"], **kw)


if __name__ == "__main__":
    pr = json.load(open(sys.argv[1]))
    t0 = time.perf_counter()
    loss = solve_problem(pr)
    print(json.dumps({"seconds": time.perf_counter() - t0, "loss": loss.tolist()}))
