//! Extensive output channels (theory map T10; paper §5, App. F): one gradient step of a linear
//! network with C ∝ D outputs restructures the whole bulk of a layer's spectrum. Two-layer
//! networks: the exact reduction to a generalized Marchenko–Pastur law ([`OneStep`], App. F.2),
//! checked against an independent route — the matrix Dyson equation of the update's
//! linearization ([`DeepOneStep`] with one hidden layer; [`super::pencil`]). Deeper networks
//! (App. F.3): every layer of a depth-L network by that Dyson equation ([`DeepOneStep`]).
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
//!
//! **Deeper networks** (paper App. F.3; derived here). Depth L: hidden weights W⁰ (N × D),
//! W¹ … W^{L−1} (N × N), readout A (N × C), all i.i.d. N(0, 1), and
//! f(x) = AᵀW^{L−1}⋯W⁰x/(γ₀N^{(L+1)/2}) (the same convention: `model.proportional`). In the
//! normalized matrices Ŵ = W/√N, Â = A/√N, B̂ = B/√N (entries of variance 1/N), f = ÂᵀΠx/γ₀
//! with Π = Ŵ^{L−1}⋯Ŵ⁰, y = √ν·B̂ᵀx, and one population GD step at η = η₀γ₀²N moves layer ℓ by
//!
//!   Ŵ^ℓ(1) = Ŵ^ℓ − η₀·FᵀÂÂᵀF·Ŵ^ℓ·EEᵀ + κ·FᵀÂB̂ᵀEᵀ,  κ = η₀γ₀√ν,
//!
//! F = Ŵ^{L−1}⋯Ŵ^{ℓ+1} (I for the last layer), E = Ŵ^{ℓ−1}⋯Ŵ⁰ (I for the first). For L = 1 it is
//! the update above (c·AB = κÂB̂ᵀ·√N). W^ℓ(1)ᵀW^ℓ(1)/N = Ŷᵀ Ŷ, Ŷ = Ŵ^ℓ(1), is YᵀY for a polynomial
//! Y in independent Gaussian matrices. For ℓ < L − 1 or ℓ > 0 no rotation invariance reduces it
//! to one scalar equation (F and E act on Ŵ^ℓ from both sides), so [`DeepOneStep::program`] writes
//! Y as a straight-line program (t = Eᵀv, a = FŴ^ℓEt, r = −η₀Âᵀa + κB̂ᵀt, u = Ŵ^ℓv + FᵀÂr) and
//! [`super::pencil`] solves the matrix Dyson equation of its linearization: the order parameters
//! are the normalized traces of the linearization's blocks (12 blocks, 42 unknowns at L = 2, ℓ = 1). The
//! update is what `specdyn train` runs (tests/extensive.rs checks a depth-2 run's step).

use super::pencil::{Dim, Factor, Pencil, Program, Src, term};
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

/// One GD step of a depth-L linear network with extensive outputs, seen at layer ℓ (module docs,
/// "Deeper networks"): the law of W^ℓ(1)ᵀW^ℓ(1)/N from the matrix Dyson equation of the update's
/// linearization. `layers = 1, layer = 0` is [`OneStep`]'s law by an independent route.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeepOneStep {
    pub step: OneStep,
    /// L: the number of hidden weight matrices W⁰ … W^{L−1}.
    pub layers: usize,
    /// ℓ ∈ 0..L: the layer whose spectrum is predicted.
    pub layer: usize,
}

/// Dimension labels of the program: N, D = N/ν, C = χN/ν.
const DIM_N: Dim = 0;
const DIM_D: Dim = 1;
const DIM_C: Dim = 2;

/// Scan points that locate the support before its edges are refined.
const SCAN: usize = 160;

impl DeepOneStep {
    /// Dimension of the layer's input space (D for ℓ = 0, else N) over N.
    pub fn input_ratio(&self) -> f64 {
        if self.layer == 0 { 1.0 / self.step.nu } else { 1.0 }
    }

    /// The update Ŵ^ℓ(1) as a straight-line program: matrices 0..L are Ŵ^k, L is Â, L + 1 is B̂.
    pub fn program(&self) -> Program {
        let (l, ell, s) = (self.layers, self.layer, &self.step);
        let fan_in = |k: usize| if k == 0 { DIM_D } else { DIM_N };
        let mut p = Program {
            ratios: vec![1.0, 1.0 / s.nu, s.chi / s.nu],
            matrices: (0..l).map(|k| (DIM_N, fan_in(k))).chain([(DIM_N, DIM_C), (DIM_D, DIM_C)]).collect(),
            input: fan_in(ell),
            output: DIM_N,
            ..Default::default()
        };
        let (a, b) = (l, l + 1);
        // t = Eᵀv = Ŵ⁰ᵀ⋯Ŵ^{ℓ−1}ᵀv (D).
        let mut t = Src::Input;
        for k in (0..ell).rev() {
            t = p.var(fan_in(k), vec![term(1.0, Factor::Zt(k), t)]);
        }
        // x = F·Ŵ^ℓ·E·t (N).
        let mut x = t;
        for k in 0..l {
            x = p.var(DIM_N, vec![term(1.0, Factor::Z(k), x)]);
        }
        // r = −η₀Âᵀx + κB̂ᵀt (C).
        let kappa = s.eta0 * s.gamma0 * s.nu.sqrt();
        let r = p.var(DIM_C, vec![term(-s.eta0, Factor::Zt(a), x), term(kappa, Factor::Zt(b), t)]);
        // y = FᵀÂr (N).
        let mut y = p.var(DIM_N, vec![term(1.0, Factor::Z(a), r)]);
        for k in (ell + 1..l).rev() {
            y = p.var(DIM_N, vec![term(1.0, Factor::Zt(k), y)]);
        }
        p.out_terms = vec![term(1.0, Factor::Z(ell), Src::Input), term(1.0, Factor::Id, y)];
        p
    }

    /// The linearization of [`DeepOneStep::program`].
    pub fn pencil(&self) -> Pencil {
        Pencil::new(&self.program())
    }

    /// The density at each of `xs` (in order; each point solved by Newton from its neighbour's
    /// traces).
    pub fn densities(&self, xs: &[f64]) -> Vec<f64> {
        densities(&self.pencil(), xs)
    }

    /// An upper bound on the spectrum: the square of the triangle inequality on ‖Ŷ‖ with each
    /// Gaussian factor at its limiting norm (1 + √(rows/cols)) · √(cols/N).
    pub fn spectral_bound(&self) -> f64 {
        let s = &self.step;
        let norm = |rows: f64, cols: f64| rows.sqrt() + cols.sqrt();
        let w = |k: usize| if k == 0 { norm(1.0, 1.0 / s.nu) } else { 2.0 };
        let f: f64 = (self.layer + 1..self.layers).map(w).product();
        let e: f64 = (0..self.layer).map(w).product();
        let a = norm(1.0, s.chi / s.nu);
        let b = norm(1.0 / s.nu, s.chi / s.nu);
        let kappa = s.eta0 * s.gamma0 * s.nu.sqrt();
        (w(self.layer) * (1.0 + s.eta0 * (f * a * e).powi(2)) + kappa * f * a * b * e).powi(2)
    }

    /// The density of W^ℓ(1)ᵀW^ℓ(1)/N on `points` points between its edges (located by a scan
    /// below [`DeepOneStep::spectral_bound`] and refined by bisection on the density), each point
    /// solved by Newton from its neighbour's traces.
    pub fn density_curve(&self, points: usize) -> Density {
        let pencil = self.pencil();
        let rho = |x: f64, near: Option<&[Complex64]>| {
            pencil
                .stieltjes_near(Complex64::new(x, 1e-10), near)
                .map(|(g, m)| ((g.im / PI).max(0.0), Some(m)))
                .unwrap_or((0.0, None))
        };
        let top = 1.02 * self.spectral_bound();
        let mut scan = Vec::with_capacity(SCAN);
        let mut near: Option<Vec<Complex64>> = None;
        for j in (0..SCAN).rev() {
            let x = top * (j as f64 + 0.5) / SCAN as f64;
            let (r, m) = rho(x, near.as_deref());
            near = m.or(near);
            scan.push((x, r));
        }
        scan.reverse();
        let peak = scan.iter().map(|p| p.1).fold(0.0, f64::max);
        let inside = |r: f64| r > 1e-7 * peak;
        let first = scan.iter().position(|p| inside(p.1)).unwrap_or(0);
        let last = scan.iter().rposition(|p| inside(p.1)).unwrap_or(SCAN - 1);
        let refine = |mut a: f64, mut b: f64| {
            // a inside the support, b outside (26 halvings: the scan step over 6.7e7).
            for _ in 0..26 {
                let mid = 0.5 * (a + b);
                if inside(rho(mid, None).0) {
                    a = mid;
                } else {
                    b = mid;
                }
            }
            0.5 * (a + b)
        };
        let hi = refine(scan[last].0, if last + 1 < SCAN { scan[last + 1].0 } else { top });
        // The lower edge: 0 when the density reaches down to the origin (a square layer's
        // 1/√x hard edge), else refined between the scan points around it.
        let lo = if first > 0 {
            refine(scan[first].0, scan[first - 1].0)
        } else if inside(rho(1e-4 * scan[0].0, None).0) {
            0.0
        } else {
            refine(scan[0].0, 0.0)
        };
        // Density on x = lo + (hi − lo)(1 − cos θ)/2, mass by the trapezoid rule in θ: ρ·dx/dθ
        // stays finite at a square-root edge and at a 1/√x hard edge (where the end value is
        // taken from its neighbour).
        let x: Vec<f64> =
            (0..points).map(|j| lo + (hi - lo) * (1.0 - (PI * j as f64 / (points - 1) as f64).cos()) / 2.0).collect();
        let mut dens = vec![0.0; points];
        if points > 2 {
            dens[1..points - 1].copy_from_slice(&densities(&pencil, &x[1..points - 1]));
        }
        let dtheta = PI / (points - 1) as f64;
        let mut f: Vec<f64> =
            (0..points).map(|j| dens[j] * 0.5 * (hi - lo) * (PI * j as f64 / (points - 1) as f64).sin()).collect();
        if lo == 0.0 && points > 2 {
            f[0] = f[1];
        }
        let mut cdf = vec![0.0; points];
        for j in 1..points {
            cdf[j] = cdf[j - 1] + 0.5 * (f[j] + f[j - 1]) * dtheta;
        }
        Density { x, rho: dens, cdf, lower_edge: lo, upper_edge: hi }
    }
}

/// Im g(x + 10⁻¹⁰i)/π at each of `xs`, continued from point to point.
fn densities(pencil: &Pencil, xs: &[f64]) -> Vec<f64> {
    let mut near: Option<Vec<Complex64>> = None;
    xs.iter()
        .map(|x| match pencil.stieltjes_near(Complex64::new(*x, 1e-10), near.as_deref()) {
            Some((g, m)) => {
                near = Some(m);
                (g.im / PI).max(0.0)
            }
            None => 0.0,
        })
        .collect()
}

/// The finite-size ground truth of [`DeepOneStep`]: eigenvalues of W^ℓ(1)ᵀW^ℓ(1)/N after the exact
/// population step at N, D = N/ν, C = χD (rounded), descending.
pub fn simulate_deep(model: &DeepOneStep, n: usize, seed: u64) -> Vec<f64> {
    let s = &model.step;
    let (l, ell) = (model.layers, model.layer);
    let d = ((n as f64) / s.nu).round() as usize;
    let c = ((d as f64) * s.chi).round() as usize;
    let scale = 1.0 / (n as f64).sqrt();
    let gauss = |rows: usize, cols: usize, k: u64| {
        let g = normals(&mut stream(seed, Purpose::Analysis, 400 + k), rows * cols);
        Mat::from_fn(rows, cols, |i, j| g[i * cols + j] * scale)
    };
    let w: Vec<Mat<f64>> = (0..l).map(|k| gauss(n, if k == 0 { d } else { n }, k as u64)).collect();
    let (a, b) = (gauss(n, c, 100), gauss(d, c, 101));
    // FᵀÂ (N × C).
    let mut fa = a;
    for k in (ell + 1..l).rev() {
        fa = w[k].transpose() * &fa;
    }
    // Eᵀ (D × n_in), None for the first layer (E = I).
    let et: Option<Mat<f64>> = (0..ell).rev().fold(None, |acc: Option<Mat<f64>>, k| {
        Some(match acc {
            None => w[k].transpose().to_owned(),
            Some(m) => w[k].transpose() * &m,
        })
    });
    let kappa = s.eta0 * s.gamma0 * s.nu.sqrt();
    let g = fa.transpose() * &w[ell]; // C × n_in
    let (gee, bet) = match &et {
        Some(et) => ((&g * et.transpose()) * et, b.transpose() * et),
        None => (g, b.transpose().to_owned()),
    };
    let y = &w[ell] - (&fa * &gee) * s.eta0 + (&fa * &bet) * kappa;
    let mut e = (y.transpose() * &y).self_adjoint_eigenvalues(faer::Side::Lower).unwrap_or_default();
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

    #[test]
    fn the_dyson_equation_of_the_update_is_silversteins_law() {
        // L = 1: the linearization's matrix Dyson equation and the generalized MP law are two
        // independent routes to the same Stieltjes transform (module docs); equal to 1e-6.
        let mut worst = 0.0f64;
        for (nu, chi, gamma0, eta0) in [(5.0, 4.0, 2.0, 0.2), (2.0, 1.0, 0.5, 0.5), (8.0, 0.5, 8.0, 0.1)] {
            let one = OneStep { nu, chi, gamma0, eta0 };
            let deep = DeepOneStep { step: one, layers: 1, layer: 0 };
            let pencil = Pencil::new(&deep.program());
            let law = one.population_law();
            let (lo, hi) = one.edges(&law);
            for f in [0.05, 0.3, 0.6, 0.95] {
                let x = lo + f * (hi - lo);
                let want = one.stieltjes(&law, x);
                let got = pencil.stieltjes(Complex64::new(x, 1e-10)).expect("the Dyson equation converges");
                worst = worst.max((got - want).norm() / want.norm());
                assert!((got - want).norm() < 1e-6 * want.norm(), "ν={nu} χ={chi} x={x}: {got} vs {want}");
            }
            // Off the axis too (ζ = x + 0.3i), where Silverstein's m is its fixed point.
            let zeta = Complex64::new(0.5 * (lo + hi), 0.3);
            let mut m = Complex64::new(0.0, 1.0);
            for _ in 0..2000 {
                let s: Complex64 = law.t.iter().zip(&law.w).map(|(t, w)| *w * *t / (1.0 + *t * m)).sum();
                m = 0.5 * m + 0.5 / (-zeta + nu * s);
            }
            let got = pencil.stieltjes(zeta).expect("the Dyson equation converges");
            worst = worst.max((got - m).norm() / m.norm());
            assert!((got - m).norm() < 1e-6 * m.norm(), "ν={nu} χ={chi} off-axis: {got} vs {m}");
        }
        eprintln!("largest relative gap, Dyson equation vs Silverstein: {worst:.1e}");
    }
}
