//! Extensive output channels (theory map T10; paper §5, App. F.2): one gradient step of a
//! two-layer linear network with C ∝ D outputs restructures the whole bulk of the first
//! layer's spectrum. This module is the exact two-layer reduction (a generalized
//! Marchenko–Pastur law); the App. F.1 DMFT cross-check and the deeper networks of App. F.3
//! are not built yet.
//!
//! **Convention** (the one with a proportional limit, as in the deep-linear theory). Input
//! x ∈ R^D, W ∈ R^{N×D}, readout A ∈ R^{N×C}, teacher B ∈ R^{D×C}, all entries i.i.d. N(0, 1);
//! f(x) = AᵀWx/(γ₀N), y = Bᵀx/√D, ratios ν = N/D and χ = C/D, population loss
//! ½E‖f − y‖², one gradient-descent step on W with η = η₀γ₀²N:
//!
//!   W(1) = M·W(0) + c·A·Bᵀ,  M = I − (η₀/N)AAᵀ,  c = η₀γ₀/√D.
//!
//! **Reduction.** W(1) = K·G with K = [M | cA] (N × (N+C)) and G = [W(0); Bᵀ] ((N+C) × D,
//! i.i.d. Gaussian, independent of A). KKᵀ = M² + c²AAᵀ has the eigenvalue
//! k(a) = (1 − η₀a)² + η₀²γ₀²ν·a for each eigenvalue a of AAᵀ/N ([`OneStep::population_value`]),
//! and a follows the MP law of ratio C/N (an atom 1 − C/N at a = 0 when C < N). Since G is
//! rotation invariant, S = W(1)ᵀW(1)/N (D × D) is the generalized MP law of the population
//! values t(a) = k(a)/ν: its Stieltjes transform m(z) = (1/D) tr (S − z)⁻¹ solves Silverstein's
//! equation ([`OneStep::z_of_m`])
//!
//!   z = −1/m + ν·E_a[ t / (1 + t·m) ],
//!
//! the density is Im m(x + i0)/π, and the edges of the support are z(m*) at the real critical
//! points z′(m*) = 0 (Silverstein & Choi 1995): the upper edge from the one in (−1/t_max, 0),
//! the lower edge (ν > 1) from the first one in (0, ∞).
//!
//! **ν → ∞** (paper eq. 351): the N − C zero modes of AAᵀ give t = 1/ν and the C others
//! concentrate at a = 1, t → η₀²γ₀², so S → I + η₀²γ₀²·MP(χ): a shifted MP law with upper edge
//! 1 + η₀²γ₀²(1 + √χ)² ([`OneStep::infinite_width_upper_edge`]).
//!
//! **Large ν** (paper F.2.1; derived here). The a-law is an atom 1 − χ/ν at 0 (t = 1/ν) and an
//! MP law of ratio r = χ/ν with mean 1 and variance r, where t = βa + (1 − η₀a)²/ν, β = η₀²γ₀².
//! Expanding Silverstein's equation to O(1/ν) — the atom gives (1 − χ/ν)/(1 + m/ν), the
//! variance of a gives ½β²g″(β)r for g(t) = t/(1 + tm), the (1 − η₀a)²/ν term gives
//! g′(β)(1 − η₀)²/ν; no O(ν^{-1/2}) term since E[a − 1] = 0 — and using z′(m*) = 0 at the
//! critical point gives the edge correction c₁/ν of [`OneStep::edge_shift_coefficient`].

use super::rmt::MarchenkoPastur;
use crate::rng::{Purpose, normals, stream};
use faer::Mat;
use num_complex::Complex64;
use std::f64::consts::PI;

/// One GD step of the two-layer linear network with extensive outputs (population limit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneStep {
    /// ν = N/D.
    pub nu: f64,
    /// χ = C/D.
    pub chi: f64,
    pub gamma0: f64,
    pub eta0: f64,
}

/// The law of the population values t(a) = k(a)/ν, as quadrature nodes and weights (an atom
/// at a = 0 included); the weights sum to 1.
#[derive(Clone, Debug)]
pub struct PopulationLaw {
    pub t: Vec<f64>,
    pub w: Vec<f64>,
}

/// Quadrature nodes for the continuous part of the a-law (midpoint rule in the angle that
/// smooths its square-root edges: spectral accuracy away from the poles of 1/(1 + tm)).
const NODES: usize = 2000;

impl OneStep {
    /// The eigenvalue of KKᵀ = M² + c²AAᵀ for an eigenvalue a of AAᵀ/N.
    pub fn population_value(&self, a: f64) -> f64 {
        (1.0 - self.eta0 * a).powi(2) + self.eta0.powi(2) * self.gamma0.powi(2) * self.nu * a
    }

    /// The law of t = k(a)/ν for a the eigenvalues of AAᵀ/N: a = (C/N)·λ with λ of MP ratio
    /// N/C (rmt.rs convention), so an atom 1 − C/N at a = 0 when C < N.
    pub fn population_law(&self) -> PopulationLaw {
        let ratio = self.chi / self.nu; // C/N
        let mp = MarchenkoPastur::new(1.0 / ratio);
        let (lo, hi) = mp.edges();
        let continuous = 1.0 - mp.atom_at_zero();
        let mut t = Vec::with_capacity(NODES + 1);
        let mut w = Vec::with_capacity(NODES + 1);
        for j in 0..NODES {
            let theta = PI * (j as f64 + 0.5) / NODES as f64;
            let lambda = lo + (hi - lo) * (1.0 - theta.cos()) / 2.0;
            let s = theta.sin();
            t.push(self.population_value(ratio * lambda) / self.nu);
            w.push((hi - lo).powi(2) * s * s / (8.0 * PI * mp.c * lambda));
        }
        // Normalize the continuous part to its exact mass (removes the rule's O(1/Q²) error).
        let total: f64 = w.iter().sum();
        w.iter_mut().for_each(|x| *x *= continuous / total);
        if mp.atom_at_zero() > 0.0 {
            t.push(self.population_value(0.0) / self.nu);
            w.push(mp.atom_at_zero());
        }
        PopulationLaw { t, w }
    }

    /// Silverstein's equation: z(m) = −1/m + ν E[t/(1 + tm)].
    pub fn z_of_m(&self, law: &PopulationLaw, m: Complex64) -> Complex64 {
        let s: Complex64 = law.t.iter().zip(&law.w).map(|(t, w)| *w * *t / (1.0 + *t * m)).sum();
        -1.0 / m + self.nu * s
    }

    /// dz/dm = 1/m² − ν E[t²/(1 + tm)²].
    pub fn dz_dm(&self, law: &PopulationLaw, m: Complex64) -> Complex64 {
        let s: Complex64 = law.t.iter().zip(&law.w).map(|(t, w)| *w * (*t / (1.0 + *t * m)).powi(2)).sum();
        1.0 / (m * m) - self.nu * s
    }

    /// m(x + i0): continued from far above the real axis (fixed point at η = 1, then Newton
    /// while η shrinks tenfold to 1e-10), staying on the branch with Im m > 0.
    pub fn stieltjes(&self, law: &PopulationLaw, x: f64) -> Complex64 {
        let mut z = Complex64::new(x, 1.0);
        let mut m = Complex64::new(0.0, 1.0);
        for _ in 0..200 {
            let s: Complex64 = law.t.iter().zip(&law.w).map(|(t, w)| *w * *t / (1.0 + *t * m)).sum();
            m = 1.0 / (-z + self.nu * s);
        }
        let mut eta = 1.0;
        while eta > 1e-10 {
            eta /= 10.0;
            z = Complex64::new(x, eta);
            m = self.newton(law, z, m).unwrap_or(m);
        }
        m
    }

    /// Damped Newton on z(m) = z from `m`, never crossing to Im m < 0; None without
    /// convergence in 40 steps.
    fn newton(&self, law: &PopulationLaw, z: Complex64, mut m: Complex64) -> Option<Complex64> {
        for _ in 0..40 {
            let f = self.z_of_m(law, m) - z;
            let mut step = f / self.dz_dm(law, m);
            while (m - step).im < 0.0 && step.norm() > 1e-300 {
                step *= 0.5;
            }
            m -= step;
            if step.norm() <= 1e-14 * m.norm() {
                return Some(m);
            }
        }
        None
    }

    /// m(x + i0) by Newton from a neighbouring point's solution `near` (a density curve's
    /// previous x): accepted when it converges inside the support (Im m > 0); otherwise the
    /// full continuation of [`OneStep::stieltjes`].
    pub fn stieltjes_near(&self, law: &PopulationLaw, x: f64, near: Complex64) -> Complex64 {
        match self.newton(law, Complex64::new(x, 1e-10), near) {
            Some(m) if m.im > 1e-8 * m.norm() => m,
            _ => self.stieltjes(law, x),
        }
    }

    /// Density of the eigenvalues of S = W(1)ᵀW(1)/N at x (continuous part).
    pub fn density(&self, law: &PopulationLaw, x: f64) -> f64 {
        (self.stieltjes(law, x).im / PI).max(0.0)
    }

    /// Lower and upper edges of the support of S (ν > 1: S has full rank).
    pub fn edges(&self, law: &PopulationLaw) -> (f64, f64) {
        let dz = |m: f64| self.dz_dm(law, Complex64::new(m, 0.0)).re;
        let z = |m: f64| self.z_of_m(law, Complex64::new(m, 0.0)).re;
        // Upper: z′ increases on (−1/t_max, 0), from −∞ to +∞.
        let t_max = law.t.iter().copied().fold(0.0, f64::max);
        let m_upper = super::rmt::bisect(dz, -1.0 / t_max * (1.0 - 1e-15), -1e-300);
        // Lower: z′ > 0 near 0⁺ and < 0 at large m (ν > 1); the first sign change.
        let mut lo = 1e-12;
        let mut hi = lo;
        while dz(hi) > 0.0 && hi < 1e12 {
            lo = hi;
            hi *= 1.5;
        }
        let m_lower = super::rmt::bisect(dz, lo, hi);
        (z(m_lower), z(m_upper))
    }

    /// Exact mean eigenvalue of S at finite N, C, D:
    /// 1 − 2η₀C/N + η₀²C(N + C + 1)/N² + η₀²γ₀²C/D (E tr over W(0), A, B; App. F.2).
    pub fn mean_eigenvalue(&self, n: f64, c: f64, d: f64) -> f64 {
        let e = self.eta0;
        1.0 - 2.0 * e * c / n + e * e * c * (n + c + 1.0) / (n * n) + e * e * self.gamma0.powi(2) * c / d
    }

    /// Mean eigenvalue in the proportional limit: E_a[k(a)] with E[a] = χ/ν and
    /// E[a²] = (χ/ν)(1 + χ/ν) — the limit of [`OneStep::mean_eigenvalue`].
    pub fn population_mean(&self) -> f64 {
        let r = self.chi / self.nu;
        let e = self.eta0;
        1.0 - 2.0 * e * r + e * e * r * (1.0 + r) + e * e * self.gamma0.powi(2) * self.nu * r
    }

    /// The ν → ∞ upper edge 1 + η₀²γ₀²(1 + √χ)² (paper eq. 351).
    pub fn infinite_width_upper_edge(&self) -> f64 {
        1.0 + (self.eta0 * self.gamma0).powi(2) * (1.0 + self.chi.sqrt()).powi(2)
    }

    /// The coefficient c₁ of the first-order correction to the upper edge at large ν:
    /// λ₊(ν) = λ₊(∞) + c₁/ν + O(1/ν²). Derivation (module docs, "Large ν"): with β = η₀²γ₀²,
    /// Silverstein's z(m) = z∞(m) + δz(m)/ν + O(1/ν²), where z∞(m) = 1 − 1/m + χβ/(1 + βm) and
    /// δz(m) = −(χ + m) − χ²β²m/(1 + βm)³ + χ(1 − η₀)²/(1 + βm)², and the edge moves by
    /// δz(m∞*)/ν at the critical point m∞* = −1/(β(1 + √χ)) of z∞ (its own shift enters only
    /// at second order):
    ///   c₁ = −χ + 1/(β(1 + √χ)) + √χ·β(1 + √χ)² + (1 − η₀)²(1 + √χ)².
    pub fn edge_shift_coefficient(&self) -> f64 {
        let beta = (self.eta0 * self.gamma0).powi(2);
        let s = self.chi.sqrt();
        -self.chi
            + 1.0 / (beta * (1.0 + s))
            + s * beta * (1.0 + s).powi(2)
            + (1.0 - self.eta0).powi(2) * (1.0 + s).powi(2)
    }

    /// The scaling variable of the edge's approach to ν = ∞: ν/ν_c with ν_c = c₁/λ₊(∞), under
    /// which the relative shift (λ₊(ν) − λ₊(∞))/λ₊(∞) collapses onto ν_c/ν for every χ, γ₀, η₀.
    pub fn edge_scaling_width(&self) -> f64 {
        self.edge_shift_coefficient() / self.infinite_width_upper_edge()
    }

    /// The predicted CDF at the points of `grid` (a [`Density`] of `points` angles between the
    /// edges, so the square-root edges are resolved).
    pub fn density_curve(&self, points: usize) -> Density {
        let law = self.population_law();
        let (lo, hi) = self.edges(&law);
        let mut x = Vec::with_capacity(points);
        let mut rho = Vec::with_capacity(points);
        let mut cdf = Vec::with_capacity(points);
        let mut acc = 0.0;
        let mut prev: Option<(f64, f64)> = None;
        let mut near: Option<Complex64> = None;
        for j in 0..points {
            let theta = PI * j as f64 / (points - 1) as f64;
            let xj = lo + (hi - lo) * (1.0 - theta.cos()) / 2.0;
            let r = if j == 0 || j + 1 == points {
                0.0
            } else {
                let m = match near {
                    Some(m0) => self.stieltjes_near(&law, xj, m0),
                    None => self.stieltjes(&law, xj),
                };
                near = Some(m);
                (m.im / PI).max(0.0)
            };
            if let Some((xp, rp)) = prev {
                acc += 0.5 * (r + rp) * (xj - xp);
            }
            prev = Some((xj, r));
            x.push(xj);
            rho.push(r);
            cdf.push(acc);
        }
        Density { x, rho, cdf, lower_edge: lo, upper_edge: hi }
    }
}

/// A predicted density on a grid, its CDF (trapezoid) and the edges.
#[derive(Clone, Debug)]
pub struct Density {
    pub x: Vec<f64>,
    pub rho: Vec<f64>,
    pub cdf: Vec<f64>,
    pub lower_edge: f64,
    pub upper_edge: f64,
}

impl Density {
    /// The CDF at x (linear between grid points), normalized by the grid's total mass.
    pub fn cdf_at(&self, x: f64) -> f64 {
        let total = *self.cdf.last().unwrap_or(&1.0);
        if x <= self.x[0] {
            return 0.0;
        }
        if x >= *self.x.last().unwrap_or(&0.0) {
            return 1.0;
        }
        let j = self.x.partition_point(|v| *v <= x);
        let (x0, x1) = (self.x[j - 1], self.x[j]);
        let (c0, c1) = (self.cdf[j - 1], self.cdf[j]);
        (c0 + (c1 - c0) * (x - x0) / (x1 - x0)) / total
    }

    /// Kolmogorov–Smirnov distance between this law and the empirical law of `samples`.
    pub fn ks_distance(&self, samples: &[f64]) -> f64 {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len() as f64;
        s.iter()
            .enumerate()
            .map(|(i, x)| {
                let f = self.cdf_at(*x);
                (f - i as f64 / n).abs().max((f - (i + 1) as f64 / n).abs())
            })
            .fold(0.0, f64::max)
    }
}

/// The finite-size ground truth: eigenvalues of W(1)ᵀW(1)/N after the exact one-step update
/// with N, D = N/ν, C = χD (rounded), descending.
pub fn simulate(model: &OneStep, n: usize, seed: u64) -> Vec<f64> {
    let d = ((n as f64) / model.nu).round() as usize;
    let c = ((d as f64) * model.chi).round() as usize;
    let gauss = |rows: usize, cols: usize, k: u64| {
        let g = normals(&mut stream(seed, Purpose::Analysis, 300 + k), rows * cols);
        Mat::from_fn(rows, cols, |i, j| g[i * cols + j])
    };
    let (w0, a, b) = (gauss(n, d, 0), gauss(n, c, 1), gauss(d, c, 2));
    let at_w0 = a.transpose() * &w0; // C × D
    let w1 = &w0 - (model.eta0 / n as f64) * (&a * &at_w0)
        + (model.eta0 * model.gamma0 / (d as f64).sqrt()) * (&a * b.transpose());
    let s = (w1.transpose() * &w1) * (1.0 / n as f64);
    let mut e = s.self_adjoint_eigenvalues(faer::Side::Lower).unwrap_or_default();
    e.reverse();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_law_has_the_exact_moments() {
        // E[a] = C/N and E[a²] = (C/N)(1 + C/N) for the MP law of AAᵀ/N, atom included.
        for (nu, chi) in [(5.0, 4.0), (2.0, 1.0), (8.0, 0.5), (1.5, 3.0)] {
            let m = OneStep { nu, chi, gamma0: 0.0, eta0: 1.0 };
            // With γ₀ = 0 and η₀ = 1, k(a) = (1 − a)², so ν E[t] = 1 − 2E[a] + E[a²].
            let law = m.population_law();
            let mean: f64 = law.t.iter().zip(&law.w).map(|(t, w)| t * w).sum::<f64>() * nu;
            let r = chi / nu;
            let want = 1.0 - 2.0 * r + r * (1.0 + r);
            assert!((mean - want).abs() < 1e-9, "ν={nu} χ={chi}: {mean} vs {want}");
            assert!((law.w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn no_step_is_marchenko_pastur() {
        // η₀ = 0: S = W(0)ᵀW(0)/N, the MP law of ratio D/N = 1/ν.
        let m = OneStep { nu: 4.0, chi: 1.0, gamma0: 1.0, eta0: 0.0 };
        let mp = MarchenkoPastur::new(1.0 / m.nu);
        let law = m.population_law();
        let (lo, hi) = m.edges(&law);
        let (a, b) = mp.edges();
        assert!((lo - a).abs() < 1e-8 && (hi - b).abs() < 1e-8, "{lo} {hi} vs {a} {b}");
        for x in [0.3, 0.8, 1.2, 1.9] {
            let (got, want) = (m.density(&law, x), mp.density(x));
            assert!((got - want).abs() < 1e-6 * want.max(1.0), "x = {x}: {got} vs {want}");
        }
    }
}
