//! Deep linear networks in the proportional limit (paper §4, App. E; theory map T8–T9): the
//! training-level DMFT of a two-layer (L = 1) linear network trained by full-batch gradient
//! descent, as derived and checked in `docs/deep-linear-dmft.md` of the brief. Depth L ≥ 2, label
//! noise, online SGD and the outliers (App. E.12) are not built yet.
//!
//! **Convention** (the one with a proportional limit). x_μ ~ N(0, I_D), μ = 1…P, a fixed
//! training set; teacher β ~ N(0, I_D), y = β·x/√D; W⁰ ∈ R^{N×D} and readout w ∈ R^N i.i.d.
//! N(0, 1); f(x) = wᵀW⁰x/(gN); loss (1/2P)Σ_μ(f − y)²; plain GD on both with η = η₀g²N.
//! **μP: g = γ₀; NTK: g = γ₀√(D/N) = γ₀/√ν** ([`Parameterization`]). Ratios ν = N/D, α = P/D.
//! (With the tutorial's h = W⁰x/√D this is the μP readout √D/(γ₀N); the tutorial's literal
//! scaling has no limit when N, D, P grow together.) Writing f(x) = u·x and e = u − β/√D:
//! train = ½eᵀΣ̂e with Σ̂ = XᵀX/P, test = ½|e|². GD: W ← W + η₀g·w vᵀ, w ← w + η₀g·Wv with
//! v = −Σ̂e.
//!
//! **Derivation** (exact steps, then the DMFT of the Gaussian W⁰):
//! 1. Without label noise the data enter only through Σ̂; in its eigenbasis W⁰ and β stay
//!    i.i.d. Gaussian, so each input site carries a fixed pair (λ, β): λ from the MP law of Σ̂
//!    (ratio 1/α, an atom 1 − α at 0 when α < 1), β ~ N(0, 1).
//! 2. W(t) = W⁰ + η₀g Σ_{s<t} w(s)v(s)ᵀ: W⁰ enters only through W⁰v(t) and W⁰ᵀw(t).
//! 3. As N, D → ∞, with ẽ = √D·e and ṽ = −λẽ, T × T order parameters C_w = w·w/N,
//!    R_w = ⟨∂w/∂φ⟩ (width site), C_v = ṽ·ṽ, R_v = ⟨∂ṽ/∂ψ̃⟩ (input site):
//!    - width site: w(t+1) = w(t) + η₀g·φ(t) + η₀Σ_{s≤t} K(t, s)w(s),
//!      K = R_v/ν + η₀g²C_v·[s < t], φ ~ GP(0, C_v), w(0) ~ N(0, 1);
//!    - input site: ẽ(t) = ψ̃(t) − β − λΣ_{s<t} M(t, s)ẽ(s), M = R_w/g + η₀C_w,
//!      ψ̃ ~ GP(0, C_w/(g²ν)).
//!
//!    Closing: G_λ = (I + λM)⁻¹ (lower triangular, unit diagonal), S = C_w/(g²ν) + 11ᵀ,
//!    C_v = E_λ[λ²G_λSG_λᵀ], R_v = −E_λ[λG_λ]; the width process is w = a·w(0) + Bφ, so
//!    R_w = B and C_w = aaᵀ + BC_vBᵀ. Losses: test(t) = ½E_λ[(G_λSG_λᵀ)_tt],
//!    train(t) = ½E_λ[λ(G_λSG_λᵀ)_tt]; test(0) = ½(1 + 1/(g²ν)).
//! 4. Every coupling is causal or instantaneous-triangular, so the solve marches in time with
//!    no fixed-point iteration; the only approximation is the quadrature of the MP law.
//!    Cost O(Q·T³), memory O(Q·T²).

use super::rmt::MarchenkoPastur;
use crate::rng::{Purpose, normals, stream};
use faer::{Col, Mat};
use rayon::prelude::*;
use std::f64::consts::PI;

/// How the readout scale g depends on the width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parameterization {
    /// g = γ₀: feature learning at every width.
    Mup,
    /// g = γ₀/√ν: the lazy limit as the width grows at fixed D.
    Ntk,
}

/// A two-layer linear network trained by full-batch GD in the proportional limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearNet {
    /// ν = N/D.
    pub nu: f64,
    /// α = P/D.
    pub alpha: f64,
    pub gamma0: f64,
    pub eta0: f64,
    pub parameterization: Parameterization,
}

/// Train and test loss at every step 0…T (before each update).
#[derive(Clone, Debug, Default)]
pub struct LinearCurves {
    pub train: Vec<f64>,
    pub test: Vec<f64>,
}

/// MP quadrature nodes for the eigenvalues of Σ̂ (midpoint rule in the angle).
const NODES: usize = 400;

impl LinearNet {
    /// The readout scale g.
    pub fn g(&self) -> f64 {
        match self.parameterization {
            Parameterization::Mup => self.gamma0,
            Parameterization::Ntk => self.gamma0 / self.nu.sqrt(),
        }
    }

    /// Nodes and weights of the law of λ (eigenvalues of Σ̂ = XᵀX/P, MP of ratio 1/α).
    fn spectrum(&self) -> (Vec<f64>, Vec<f64>) {
        let mp = MarchenkoPastur::new(1.0 / self.alpha);
        let (lo, hi) = mp.edges();
        let mut l = Vec::with_capacity(NODES + 1);
        let mut w = Vec::with_capacity(NODES + 1);
        for j in 0..NODES {
            let theta = PI * (j as f64 + 0.5) / NODES as f64;
            let x = lo + (hi - lo) * (1.0 - theta.cos()) / 2.0;
            l.push(x);
            w.push((hi - lo).powi(2) * theta.sin().powi(2) / (8.0 * PI * mp.c * x));
        }
        let total: f64 = w.iter().sum();
        let mass = 1.0 - mp.atom_at_zero();
        w.iter_mut().for_each(|x| *x *= mass / total);
        if mp.atom_at_zero() > 0.0 {
            l.push(0.0);
            w.push(mp.atom_at_zero());
        }
        (l, w)
    }

    /// The DMFT losses at steps 0…T, marched in time (module docs, step 3).
    pub fn solve(&self, steps: usize) -> LinearCurves {
        let t_len = steps + 1;
        let (g, e0, nu) = (self.g(), self.eta0, self.nu);
        let (lam, wq) = self.spectrum();
        let q = lam.len();
        // Width site: w(t) = a(t)·w(0) + Σ_s B(t, s)φ(s).
        let mut a = vec![0.0; t_len];
        let mut b = Mat::<f64>::zeros(t_len, t_len);
        let mut cw = Mat::<f64>::zeros(t_len, t_len);
        let mut cv = Mat::<f64>::zeros(t_len, t_len);
        let mut rv = Mat::<f64>::zeros(t_len, t_len);
        let mut k = Mat::<f64>::zeros(t_len, t_len);
        // Per node: G_λ and H_λ = G_λS, row-major T × T (rows filled as time advances); M and S
        // row-major too, so every inner loop below runs over contiguous memory.
        let tt = t_len * t_len;
        let mut gl: Vec<Vec<f64>> = vec![vec![0.0; tt]; q];
        let mut hl: Vec<Vec<f64>> = vec![vec![0.0; tt]; q];
        let mut mrow = vec![0.0; tt];
        let mut srow = vec![0.0; tt];
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
        let mut out = LinearCurves::default();
        for t in 0..t_len {
            // 1. The width process at t from steps < t.
            if t == 0 {
                a[0] = 1.0;
            } else {
                let p = t - 1;
                a[t] = a[p] + e0 * (0..=p).map(|r| k[(p, r)] * a[r]).sum::<f64>();
                for c in 0..t {
                    let mut v = b[(p, c)] + e0 * (0..=p).map(|r| k[(p, r)] * b[(r, c)]).sum::<f64>();
                    if c == p {
                        v += e0 * g;
                    }
                    b[(t, c)] = v;
                }
            }
            // 2. C_w(t, ·) = a aᵀ + B C_v Bᵀ (C_v known below t; B(t, ·) lives on φ(< t)).
            let bcv: Vec<f64> = (0..t).map(|c| (0..t).map(|d| b[(t, d)] * cv[(d, c)]).sum()).collect();
            for r in 0..=t {
                let v = a[t] * a[r] + (0..t).map(|c| bcv[c] * b[(r, c)]).sum::<f64>();
                cw[(t, r)] = v;
                cw[(r, t)] = v;
            }
            for r in 0..t {
                mrow[t * t_len + r] = b[(t, r)] / g + e0 * cw[(t, r)];
            }
            for r in 0..=t {
                let v = cw[(t, r)] / (g * g * nu) + 1.0;
                srow[t * t_len + r] = v;
                srow[r * t_len + t] = v;
            }
            // 3. The input site: row t of G_λ, H_λ = G_λS, and (G S Gᵀ)(t, ·).
            let m_t = &mrow[t * t_len..t * t_len + t];
            let srow = &srow;
            // Nodes are independent: each returns its share of C_v(t, ·), R_v(t, ·) and the losses.
            let shares: Vec<(Vec<f64>, Vec<f64>, f64, f64)> = gl
                .par_iter_mut()
                .zip(hl.par_iter_mut())
                .zip(lam.par_iter().zip(wq.par_iter()))
                .map(|((gm, hm), (&l, &wj))| {
                    // G(t, c) = −λ Σ_{c≤r<t} M(t, r) G(r, c), as row updates.
                    let mut row = vec![0.0; t + 1];
                    row[t] = 1.0;
                    for (r, mtr) in m_t.iter().enumerate() {
                        let f = -l * mtr;
                        for (x, y) in row[..=r].iter_mut().zip(&gm[r * t_len..r * t_len + r + 1]) {
                            *x += f * y;
                        }
                    }
                    gm[t * t_len..t * t_len + t + 1].copy_from_slice(&row);
                    // H(t, ·) = Σ_r G(t, r) S(r, ·).
                    let mut hrow = vec![0.0; t + 1];
                    for (r, gtr) in row.iter().enumerate() {
                        for (x, y) in hrow.iter_mut().zip(&srow[r * t_len..r * t_len + t + 1]) {
                            *x += gtr * y;
                        }
                    }
                    hm[t * t_len..t * t_len + t + 1].copy_from_slice(&hrow);
                    // H(r, t) for r < t gains the new column of S (symmetric: S(c, t) = S(t, c)).
                    for r in 0..t {
                        hm[r * t_len + t] = dot(&gm[r * t_len..r * t_len + r + 1], &srow[t * t_len..t * t_len + r + 1]);
                    }
                    let mut cv_part = vec![0.0; t + 1];
                    let mut rv_part = vec![0.0; t + 1];
                    let mut gsg_tt = 0.0;
                    for c in 0..=t {
                        let gsg = dot(&hrow[..=c], &gm[c * t_len..c * t_len + c + 1]);
                        cv_part[c] = wj * l * l * gsg;
                        rv_part[c] = -wj * l * row[c];
                        gsg_tt = gsg;
                    }
                    (cv_part, rv_part, wj * 0.5 * gsg_tt, wj * 0.5 * l * gsg_tt)
                })
                .collect();
            let mut cv_row = vec![0.0; t + 1];
            let mut rv_row = vec![0.0; t + 1];
            let (mut test, mut train) = (0.0, 0.0);
            for (c_part, r_part, te, tr) in &shares {
                for c in 0..=t {
                    cv_row[c] += c_part[c];
                    rv_row[c] += r_part[c];
                }
                test += te;
                train += tr;
            }
            for c in 0..=t {
                cv[(t, c)] = cv_row[c];
                cv[(c, t)] = cv_row[c];
                rv[(t, c)] = rv_row[c];
            }
            out.test.push(test);
            out.train.push(train);
            // 4. The kernel of the width site at t.
            for c in 0..=t {
                k[(t, c)] = rv[(t, c)] / nu + if c < t { e0 * g * g * cv[(t, c)] } else { 0.0 };
            }
        }
        out
    }
}

/// Direct full-batch GD of the network at width N (D = N/ν, P = αD, rounded): the finite-size
/// ground truth of [`LinearNet::solve`]. Losses at steps 0…T before each update.
pub fn simulate(net: &LinearNet, n: usize, steps: usize, seed: u64) -> LinearCurves {
    let d = ((n as f64) / net.nu).round() as usize;
    let p = ((d as f64) * net.alpha).round() as usize;
    let gauss = |rows: usize, cols: usize, k: u64| {
        let v = normals(&mut stream(seed, Purpose::Analysis, 400 + k), rows * cols);
        Mat::from_fn(rows, cols, |i, j| v[i * cols + j])
    };
    let x = gauss(p, d, 0);
    let beta = gauss(d, 1, 1);
    let mut w0 = gauss(n, d, 2);
    let mut w = gauss(n, 1, 3);
    let g = net.g();
    let lr = net.eta0 * g; // η·(1/(gN)) = η₀g
    let target: Col<f64> = Col::from_fn(d, |i| beta[(i, 0)] / (d as f64).sqrt());
    let mut out = LinearCurves::default();
    for t in 0..=steps {
        let u = (w0.transpose() * w.col(0)) * (1.0 / (g * n as f64));
        let e = &u - &target;
        let xe = &x * &e;
        let sig_e = x.transpose() * &xe * (1.0 / p as f64);
        out.test.push(0.5 * e.squared_norm_l2());
        out.train.push(0.5 * xe.squared_norm_l2() / p as f64);
        if t == steps {
            break;
        }
        let v = -sig_e;
        let wv = &w0 * &v;
        // W ← W + η₀g w vᵀ and w ← w + η₀g W v, both with the old values.
        for j in 0..d {
            let vj = lr * v[j];
            for i in 0..n {
                w0[(i, j)] += w[(i, 0)] * vj;
            }
        }
        for i in 0..n {
            w[(i, 0)] += lr * wv[i];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_losses_are_exact() {
        // test(0) = ½(1 + 1/(g²ν)); train(0) = ½E[λ](1 + 1/(g²ν)) with E[λ] = 1.
        for (nu, alpha, par) in [(2.0, 2.0, Parameterization::Mup), (4.0, 0.5, Parameterization::Ntk)] {
            let net = LinearNet { nu, alpha, gamma0: 1.5, eta0: 0.1, parameterization: par };
            let c = net.solve(0);
            let want = 0.5 * (1.0 + 1.0 / (net.g().powi(2) * nu));
            assert!((c.test[0] - want).abs() < 1e-12, "{} vs {want}", c.test[0]);
            assert!((c.train[0] - want).abs() < 1e-9, "{} vs {want}", c.train[0]);
        }
    }
}
