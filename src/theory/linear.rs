//! Deep linear networks in the proportional limit (paper §4, App. E; theory map T8–T9): the
//! training-level DMFT of a linear network of any depth L trained by full-batch gradient
//! descent — L = 1 and 2 as derived and checked in `docs/deep-linear-dmft.md` of the brief, any
//! L by the chain of sites below (checked against direct GD at L = 1, 2, 3 in
//! `tests/linear.rs`), with or without label noise, full batch or online SGD, and the outliers
//! of every layer's trained weights (App. E.12; derived here, "Outliers" below), the top NTK
//! mode ("NTK"), and several outputs at L = 1 ([`LinearClasses`], App. E.13).
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
//!    Cost O(Q·T³ + L·T³), memory O(Q·T² + L·T²).
//!
//! **Label noise** (y_μ = β·x_μ/√D + ε_μ, ε ~ N(0, σ_ε²); derived here). The gradient is
//! v = −Σ̂e + Xᵀε/P. With X = USVᵀ, Uᵀε is again i.i.d. N(0, σ_ε²), so in Σ̂'s eigenbasis each
//! input site with λ > 0 gets one more fixed source: ṽ = −λẽ + √(λ/α)ξ, ξ ~ N(0, σ_ε²), and
//! ẽ(t) = ψ̃(t) − β + Σ_{s<t}M(t, s)ṽ(s). Since λG_λM = I − G_λ, this gives
//! ṽ = −λG_λ(ψ̃ − β) + √(λ/α)ξ·G_λ1 and ẽ = G_λ(ψ̃ − β) + ξ(1 − G_λ1)/√(λα): C_v gains
//! E_λ[(λ/α)σ_ε²(G_λ1)(G_λ1)ᵀ], R_v is unchanged, test(t) gains ½E_λ[σ_ε²(1 − G_λ1)_t²/(λα)],
//! and train(t) = (1/2P)|Xu − y|² gains ½E_λ[σ_ε²(G_λ1)_t²/α] + ½(1 − 1/α)₊σ_ε² (the noise
//! outside X's column space). The width sites do not change.
//!
//! **Online SGD** (paper App. E.14; derived here): step t uses a fresh batch X_t of B = αD
//! samples, independent of e(t). Then (Σ̂_t e)_a = e_a(1 + O(B^{-1/2})) + N(0, |e|²/B): the input
//! site has the single eigenvalue λ = 1 and a batch noise ζ(t), independent across steps, of
//! variance (2·test(t) + σ_ε²)/α in ẽ units (the label noise adds Xᵀε/B). With G = (I + M)⁻¹,
//! ẽ = G(ψ̃ − β) + (I − G)ζ and ṽ = −G(ψ̃ − β) + Gζ: C_v gains G diag(var ζ) Gᵀ, R_v = −G,
//! test(t) gains ½Σ_{s<t}G(t, s)²var ζ(s), and the logged loss (the fresh batch's, before the
//! update) is test(t) + ½σ_ε². Still causal: ζ(t) needs only test(t).
//!
//! **Depth L** (f = wᵀW^{L−1}⋯W⁰x/(g·N^{(L+1)/2}), W^ℓ ∈ R^{N×N} for 1 ≤ ℓ < L, all N(0, 1);
//! the brief's L = 2 case written for any L). With the forward fields h¹ = W⁰v,
//! h^{ℓ+1} = W^ℓh^ℓ/√N and the backward fields g^L = w, g^ℓ = W^ℓᵀg^{ℓ+1}/√N, GD is
//! W⁰ += η₀g·g¹vᵀ, W^ℓ += η₀g·g^{ℓ+1}h^ℓᵀ/√N, w += η₀g·h^L, and u = W⁰ᵀg¹/(gN). Each matrix is
//! independent, so the DMFT is a chain of single sites, each a linear map of two independent
//! Gaussian sources (T × T coefficient matrices give its correlations and responses):
//! - the input site: as for L = 1 with w → g¹ (M = R_{g¹|φ¹}/g + η₀C_{g¹}·[s < t],
//!   ψ̃ ~ GP(0, C_{g¹}/(g²ν)));
//! - a hidden site ℓ (1 ≤ ℓ < L): h^ℓ = φ^ℓ + A_ℓ g^ℓ with φ^ℓ ~ GP(0, C_below) and
//!   A_ℓ = R_below + η₀g·C_below·[s < t] (below: R_v/(gν) and C_v from the input site for
//!   ℓ = 1, else R_{h^{ℓ−1}|ψ^{ℓ−1}} and C_{h^{ℓ−1}}); g^ℓ = ψ^ℓ + B_ℓ h^ℓ with
//!   ψ^ℓ ~ GP(0, C_above) and B_ℓ = R_above + η₀g·C_above·[s < t] (above: R_{g^{ℓ+1}|φ^{ℓ+1}}
//!   and C_{g^{ℓ+1}}, or R_{w|φ^L} and C_w);
//! - the readout site: h^L = φ^L + A_L w as for a hidden site, w(t + 1) = w(t) + η₀g·h^L(t).
//!
//! R_{g|φ} and R_{w|φ} are strictly causal, R_v and R_{h|ψ} have a diagonal, so each step runs
//! w(t) → g^{L−1}(t) … g¹(t) (down) → the input site at t → h¹(t) … h^L(t) (up). L = 1 is the
//! readout site directly above the input site: w(t+1) = w(t) + η₀g[φ(t) + Σ_{s≤t}A(t, s)w(s)],
//! the K of step 3 above (K = gA).
//!
//! **Outliers** (App. E.12; derived here — the paper's equations were lost — and checked against
//! a direct root-finder and against GD in `tests/linear.rs`). Take one matrix W (W⁰: N × D,
//! ratio r = ν; W^ℓ: N × N, r = 1). After T steps W(T) = W + η₀g Σ_{s<T} y(s)x(s)ᵀ (÷√N for
//! W^ℓ) with right vectors x (v, or h^ℓ) and left vectors y (g^{ℓ+1}, or w). An eigenvector
//! W(T)ᵀW(T)ỹ/N = zỹ is a probe with a partner h̃ = W(T)ỹ (÷√N for W^ℓ):
//! h̃ = f_ỹ + η₀g Σ_s y(s)c_s and zỹ = b_h̃ + η₀g Σ_s x(s)d_s, with the overlaps
//! c_s = x(s)·ỹ, d_s = y(s)·h̃/N and the fields f = W·, b = Wᵀ· of the initial matrix. The probe
//! is one more index of the same DMFT: its cavity fields are f̂_ỹ + (1/r)[R_ỹ|h̃ h̃ + Σ_t
//! R_ỹ|y(t) y(t)] and b̂_h̃ + R_h̃|ỹ ỹ + Σ_k R_h̃|x(k) x(k), with f̂_ỹ, b̂_h̃ Gaussian and
//! correlated with the training fields through c and d (Stein: E[x(s)b̂_h̃] = (R_x d)_s/r,
//! E[y(s)f̂_ỹ] = (R_y c)_s). Solving the two site equations, the probe's own responses are the
//! bulk's: s = R_ỹ|h̃ is the Stieltjes transform of the MP law of ratio 1/r at z and
//! s_h = R_h̃|ỹ = 1/(1 − s/r); writing κ = R_ỹ|y/r + η₀g·c and μ = R_h̃|x + η₀g·d, the closure is
//! linear and homogeneous:
//!   c = s(R_x d/r + C_x μ),  d = s_h(R_y c + C_y κ),  κ = sR_xᵀμ/r + η₀g·c,  μ = s_hR_yᵀκ + η₀g·d,
//! with C_x, R_x (response to b̂), C_y, R_y (response to f̂) the T × T blocks of the training
//! DMFT. z > (1 + 1/√r)² is an outlier exactly when this 4T × 4T map L(z) has the eigenvalue 1
//! ([`MatrixOrder::pole_determinant`]). With vectors independent of W (R = 0) it is the BBP
//! condition z·s_N(z)s(z)·η₀²g²|x|²|y|²/N = 1 of a rank-one rectangular spike.
//! **Reduction** (as eqs. (107), (111)): multiply the d and μ rows by 1 − s/r; then every row
//! is linear in s, (A₀ − sA₁)u = 0, with A₀ unit block lower triangular in the order (c, κ, d, μ)
//! and A₁ acting on (d, μ) only. So θ = 1/s is an eigenvalue of the z-independent 2T × 2T block
//! of A₀⁻¹A₁ on (d, μ) ([`MatrixOrder::pole_matrix`]); every real θ > 1/s₊ (s₊ = 1/(√c + c),
//! c = 1/r, the transform at the edge) is an outlier z = (1 + (1 − c)s)/(s(1 − cs)), the inverse
//! of the MP Stieltjes transform. Label noise and online batches only add sources independent
//! of W, so the same closure should hold with their C_x (not yet checked against GD).
//!
//! **NTK** (L = 1; App. E.15 and the edge of stability; derived here). For f = wᵀW⁰x/(gN) the
//! NTK is Θ(x, x′) = xᵀKx′/(g²N) with K = C_w(T, T)·I + W⁰ᵀW⁰/N, and η = η₀g²N, so ηΘ = η₀xᵀKx′.
//! On the population (x ~ N(0, I)) its spectrum is K's: the first layer's shifted by the readout
//! term C_w(T, T) (E.15; [`NtkTop::population`]). Full-batch GD on the training set moves the
//! residuals by (η₀/P)XKXᵀ, whose nonzero spectrum is that of KΣ̂: GD is stable while η₀ times its
//! top stays below 2. Its outliers come from the same probe with the input-site equation
//! z p = Σ̂(C_w p + W(T)ᵀh̃/N): at a site of eigenvalue λ the probe is ψ_λ·(b̂_h̃ + Σ_k μ_k x(k))
//! with ψ_λ = φ/(1 − φ s_h), φ = λ/(z − λC_w). Then s = E_λ[ψ_λ] replaces the MP transform, and
//! since x(s) = ṽ(s) depends on λ, the closure's s·C_x and s·R_x become E_λ[ψ_λC_v^λ] and
//! E_λ[ψ_λR_v^λ] with the per-node C_v^λ = λ²G_λSG_λᵀ, R_v^λ = −λG_λ/g ([`InputNodes`]). For each
//! s ∈ (0, ν) one z(s) solves s = E_λ[ψ_λ(z)]; the bulk edge is the minimum of z(s), and the
//! outliers are the zeros of det(I − N(s)) on the branch s below it (N: the closure with c and κ
//! eliminated, 2T × 2T). With Σ̂ = I it is exactly the first layer shifted by C_w (unit test).

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
    /// Hidden layers L ≥ 1: f(x) = wᵀW^{L−1}⋯W⁰x/(g·N^{(L+1)/2}), with L − 1 square N × N
    /// matrices between the first layer W⁰ (N × D) and the readout w.
    pub depth: usize,
    /// ν = N/D.
    pub nu: f64,
    /// α = P/D.
    pub alpha: f64,
    pub gamma0: f64,
    pub eta0: f64,
    pub parameterization: Parameterization,
    /// Label-noise variance σ_ε²: y_μ = β·x_μ/√D + ε_μ with ε_μ ~ N(0, σ_ε²) on the training set
    /// (the test loss stays the excess risk ½|e|²).
    pub label_noise: f64,
    /// Online SGD (paper App. E.14): every step a fresh batch of αD samples (α is then the batch
    /// ratio); the loss logged at a step is the fresh batch's, before the update.
    pub online: bool,
}

/// Train and test loss at every step 0…T (before each update).
#[derive(Clone, Debug, Default)]
pub struct LinearCurves {
    pub train: Vec<f64>,
    pub test: Vec<f64>,
}

/// MP quadrature nodes for the eigenvalues of Σ̂ (midpoint rule in the angle, which smooths
/// the square-root edges: spectrally accurate; 100 agree with 800 to 1e-6 over T = 200, test
/// `quadrature_is_converged_at_the_default_node_count`).
pub const NODES: usize = 100;

impl LinearNet {
    /// The brief's reference setting at depth L: ν = α = 2, γ₀ = 8, η₀ = 0.02, μP, full batch,
    /// no label noise (override fields with `LinearNet { eta0: …, ..LinearNet::reference(L) }`).
    pub fn reference(depth: usize) -> Self {
        LinearNet {
            depth,
            nu: 2.0,
            alpha: 2.0,
            gamma0: 8.0,
            eta0: 0.02,
            parameterization: Parameterization::Mup,
            label_noise: 0.0,
            online: false,
        }
    }

    /// The readout scale g.
    pub fn g(&self) -> f64 {
        match self.parameterization {
            Parameterization::Mup => self.gamma0,
            Parameterization::Ntk => self.gamma0 / self.nu.sqrt(),
        }
    }

    /// Nodes and weights of the law of λ (eigenvalues of Σ̂ = XᵀX/P, MP of ratio 1/α).
    fn spectrum(&self, nodes: usize) -> (Vec<f64>, Vec<f64>) {
        let mp = MarchenkoPastur::new(1.0 / self.alpha);
        let (lo, hi) = mp.edges();
        let mut l = Vec::with_capacity(nodes + 1);
        let mut w = Vec::with_capacity(nodes + 1);
        for j in 0..nodes {
            let theta = PI * (j as f64 + 0.5) / nodes as f64;
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

    /// The DMFT losses at steps 0…T, marched in time through the chain of sites (module docs).
    pub fn solve(&self, steps: usize) -> LinearCurves {
        self.solve_with_nodes(steps, NODES)
    }

    /// [`LinearNet::solve`] with `nodes` quadrature nodes of the MP law of Σ̂.
    pub fn solve_with_nodes(&self, steps: usize, nodes: usize) -> LinearCurves {
        self.march(steps, nodes, false).0
    }

    /// The losses and, for every weight matrix W⁰ … W^{L−1}, the order parameters of its two
    /// sides ([`MatrixOrder`]), from which its outliers follow.
    pub fn solve_with_orders(&self, steps: usize) -> (LinearCurves, Vec<MatrixOrder>) {
        let (curves, orders, _) = self.march(steps, NODES, false);
        (curves, orders)
    }

    /// The top of the NTK of an L = 1 network trained by full-batch GD at each step of `at`
    /// (module docs, "NTK"). `None` for deeper networks and online SGD.
    pub fn ntk(&self, steps: usize, at: &[usize]) -> Option<Vec<NtkTop>> {
        if self.depth > 1 || self.online {
            return None;
        }
        let (_, orders, nodes) = self.march(steps, NODES, true);
        let nodes = nodes?;
        let first = orders.first()?;
        Some(at.par_iter().map(|&t| ntk_top(first, &nodes, t.min(steps))).collect())
    }

    /// The outliers of every layer's W^ℓ(t)ᵀW^ℓ(t)/N at every step t = 0…T (largest first;
    /// empty while none has left the bulk): `[layer][t]`.
    pub fn outliers(&self, steps: usize) -> Vec<Vec<Vec<f64>>> {
        let (_, orders) = self.solve_with_orders(steps);
        orders.iter().map(|m| (0..=steps).into_par_iter().map(|t| m.outliers(t)).collect()).collect()
    }

    /// The time march behind [`LinearNet::solve`] (module docs).
    /// `keep_nodes`: also return the input site's per-node correlations and responses.
    fn march(
        &self,
        steps: usize,
        nodes: usize,
        keep_nodes: bool,
    ) -> (LinearCurves, Vec<MatrixOrder>, Option<InputNodes>) {
        let t_len = steps + 1;
        let (g, e0, nu, depth) = (self.g(), self.eta0, self.nu, self.depth.max(1));
        let eg = e0 * g;
        // Online: E[Σ̂_t] = I, one node at λ = 1; the fluctuations of Σ̂_t become noise.
        let (lam, wq) = if self.online { (vec![1.0], vec![1.0]) } else { self.spectrum(nodes) };
        let q = lam.len();
        let mut hidden: Vec<HiddenSite> = (1..depth).map(|_| HiddenSite::new(t_len)).collect();
        let mut top = TopSite::new(t_len);
        // The input site: C_v, R_v; per node G_λ and H_λ = G_λS, row-major T × T (rows filled as
        // time advances); M and S row-major too, so every inner loop runs over contiguous memory.
        let mut cv = Mat::<f64>::zeros(t_len, t_len);
        let mut rv = Mat::<f64>::zeros(t_len, t_len);
        let tt = t_len * t_len;
        let mut gl: Vec<Vec<f64>> = vec![vec![0.0; tt]; q];
        let mut hl: Vec<Vec<f64>> = vec![vec![0.0; tt]; q];
        // Per node the row sums (G_λ1)(t), which carry the label noise.
        let mut g1: Vec<Vec<f64>> = vec![vec![0.0; t_len]; q];
        let (noise, alpha, online) = (self.label_noise, self.alpha, self.online);
        // Online: the variance of the batch noise ζ(s) of each past step (module docs).
        let mut zeta = vec![0.0; t_len];
        let mut mrow = vec![0.0; tt];
        let mut srow = vec![0.0; tt];
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
        let mut out = LinearCurves::default();
        for t in 0..t_len {
            // 1. The readout w(t) from step t − 1, and C_w(t, ·) (w lives on φ^L before t).
            {
                let below = if depth == 1 { &cv } else { &hidden[depth - 2].ch };
                top.advance(t, eg, below);
            }
            // 2. Down the hidden sites: g^ℓ(t) from h^ℓ before t, and C_{g^ℓ}(t, ·).
            for l in (0..depth - 1).rev() {
                let (below, rest) = hidden.split_at_mut(l);
                let (site, above) = rest.split_first_mut().expect("site l exists");
                let (r_above, c_above) = match above.first() {
                    Some(next) => (&next.pg, &next.cg),
                    None => (&top.bw, &top.cw),
                };
                let c_below = below.last().map_or(&cv, |prev| &prev.ch);
                site.g_side(t, eg, r_above, c_above, c_below);
            }
            // 3. The input site at t, driven by g¹ (w for L = 1).
            let (r_g1, c_g1) = match hidden.first() {
                Some(first) => (&first.pg, &first.cg),
                None => (&top.bw, &top.cw),
            };
            for r in 0..t {
                mrow[t * t_len + r] = r_g1[(t, r)] / g + e0 * c_g1[(t, r)];
            }
            for r in 0..=t {
                let v = c_g1[(t, r)] / (g * g * nu) + 1.0;
                srow[t * t_len + r] = v;
                srow[r * t_len + t] = v;
            }
            let m_t = &mrow[t * t_len..t * t_len + t];
            let srow = &srow;
            // Nodes are independent: each returns its share of C_v(t, ·), R_v(t, ·) and the losses.
            let shares: Vec<(Vec<f64>, Vec<f64>, f64, f64)> = gl
                .par_iter_mut()
                .zip(hl.par_iter_mut())
                .zip(g1.par_iter_mut())
                .zip(lam.par_iter().zip(wq.par_iter()))
                .map(|(((gm, hm), g1m), (&l, &wj))| {
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
                    g1m[t] = row.iter().sum();
                    // Label noise (module docs): ṽ gains √(λ/α)ξ·G1, ẽ gains ξ(1 − G1)/√(λα).
                    let nl = if l > 0.0 && !online { noise * l / alpha } else { 0.0 };
                    let mut cv_part = vec![0.0; t + 1];
                    let mut rv_part = vec![0.0; t + 1];
                    let mut gsg_tt = 0.0;
                    for c in 0..=t {
                        let gsg = dot(&hrow[..=c], &gm[c * t_len..c * t_len + c + 1]);
                        cv_part[c] = wj * (l * l * gsg + nl * g1m[t] * g1m[c]);
                        rv_part[c] = -wj * l * row[c];
                        gsg_tt = gsg;
                    }
                    let (mut test_noise, mut train_noise) = match l > 0.0 && !online {
                        true => (noise * (1.0 - g1m[t]).powi(2) / (l * alpha), noise * g1m[t].powi(2) / alpha),
                        false => (0.0, 0.0),
                    };
                    if online {
                        // ṽ gains Gζ and ẽ gains (I − G)ζ, ζ(s) independent with variance zeta[s].
                        for c in 0..=t {
                            let gc = &gm[c * t_len..c * t_len + c + 1];
                            cv_part[c] += wj * (0..=c).map(|s| row[s] * gc[s] * zeta[s]).sum::<f64>();
                        }
                        test_noise = (0..t).map(|s| row[s].powi(2) * zeta[s]).sum();
                        train_noise = test_noise;
                    }
                    (cv_part, rv_part, wj * 0.5 * (gsg_tt + test_noise), wj * 0.5 * (l * gsg_tt + train_noise))
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
            if online {
                // The batch noise of step t (Σ̂_t e(t) fluctuates by |e|²/B, Xᵀε/B by σ_ε²/B)
                // needs only test(t); it enters C_v(t, t) at once (G(t, t) = 1).
                zeta[t] = (2.0 * test + noise) / alpha;
                cv_row[t] += zeta[t];
            }
            for c in 0..=t {
                cv[(t, c)] = cv_row[c];
                cv[(c, t)] = cv_row[c];
                rv[(t, c)] = rv_row[c];
            }
            out.test.push(test);
            if online {
                // The fresh batch's loss: the population loss plus the label noise's.
                out.train.push(train + 0.5 * noise);
            } else {
                // The noise outside the column space of X (P > D): ½(1 − 1/α)σ_ε².
                out.train.push(train + 0.5 * noise * (1.0 - 1.0 / alpha).max(0.0));
            }
            // 4. Up the hidden sites: h^ℓ(t) from g^ℓ up to t, C_{h^ℓ}(t, ·), R_{h^ℓ|ψ^ℓ}(t, ·).
            // The coupling from below: R_v/(gν) from the input site, R_{h^{ℓ−1}|ψ^{ℓ−1}} above it.
            let rv_scaled = Mat::from_fn(t + 1, t + 1, |i, j| rv[(i, j)] / (g * nu));
            for l in 0..depth - 1 {
                let (below, rest) = hidden.split_at_mut(l);
                let (site, above) = rest.split_first_mut().expect("site l exists");
                let (r_below, c_below) = match below.last() {
                    Some(prev) => (&prev.qh, &prev.ch),
                    None => (&rv_scaled, &cv),
                };
                let c_above = above.first().map_or(&top.cw, |next| &next.cg);
                site.h_side(t, eg, r_below, c_below, c_above);
            }
            // 5. The readout's field h^L(t) = φ^L(t) + Σ_{s≤t} A(t, s) w(s).
            match hidden.last() {
                Some(last) => top.h_side(t, eg, &last.qh, &last.ch),
                None => top.h_side(t, eg, &rv_scaled, &cv),
            }
        }
        // Each matrix's right vectors (v, or h^ℓ with its response to W^ℓᵀ's field) and left
        // vectors (g^{ℓ+1} or w, with the response to W^ℓ's field).
        let rv_own = Mat::from_fn(t_len, t_len, |i, j| rv[(i, j)] / g);
        let orders = (0..depth)
            .map(|l| {
                let (c_right, r_right, ratio) = match l {
                    0 => (cv.clone(), rv_own.clone(), nu),
                    _ => (hidden[l - 1].ch.clone(), hidden[l - 1].qh.clone(), 1.0),
                };
                let (c_left, r_left) = match hidden.get(l) {
                    Some(site) => (site.cg.clone(), site.pg.clone()),
                    None => (top.cw.clone(), top.bw.clone()),
                };
                MatrixOrder { c_right, r_right, c_left, r_left, ratio, eg }
            })
            .collect();
        // Per node: C_v^λ = λ²(G_λS)G_λᵀ (+ label noise), R_v^λ = −λG_λ/g (full batch only).
        let kept = (keep_nodes && !online).then(|| {
            let (c_v, r_v): (Vec<Mat<f64>>, Vec<Mat<f64>>) = (0..q)
                .into_par_iter()
                .map(|j| {
                    let (l, gm, hm, g1m) = (lam[j], &gl[j], &hl[j], &g1[j]);
                    let nl = if l > 0.0 { noise * l / alpha } else { 0.0 };
                    let c = Mat::from_fn(t_len, t_len, |a, b| {
                        let hg: f64 = (0..=b).map(|r| hm[a * t_len + r] * gm[b * t_len + r]).sum();
                        l * l * hg + nl * g1m[a] * g1m[b]
                    });
                    let r = Mat::from_fn(t_len, t_len, |a, b| if b <= a { -l * gm[a * t_len + b] / g } else { 0.0 });
                    (c, r)
                })
                .unzip();
            InputNodes { lambda: lam.clone(), weight: wq.clone(), c_v, r_v }
        });
        (out, orders, kept)
    }
}

/// One weight matrix W (W⁰, N × D, or a hidden W^ℓ, N × N) seen from the DMFT: its update
/// W(T) = W + η₀g Σ_{s<T} y(s)x(s)ᵀ (÷√N for W^ℓ) pairs right vectors x (v, or h^ℓ) with left
/// vectors y (g^{ℓ+1}, or w). Each side's correlation and its response to the field this matrix
/// sends it (module docs, "Outliers"), T × T at steps 0…T.
#[derive(Clone, Debug)]
pub struct MatrixOrder {
    /// C_x(s, s′) = x(s)·x(s′) (input units) and R_x(s, s′) = ⟨∂x(s)/∂ĝ(s′)⟩, ĝ the
    /// fluctuation of √D·W⁰ᵀy/N (of Wᵀy/√N for W^ℓ); R_x has a diagonal.
    pub c_right: Mat<f64>,
    pub r_right: Mat<f64>,
    /// C_y(s, s′) = y(s)·y(s′)/N and R_y(s, s′) = ⟨∂y(s)/∂f(s′)⟩, f the fluctuation of W x
    /// (W x/√N); strictly causal.
    pub c_left: Mat<f64>,
    pub r_left: Mat<f64>,
    /// Rows over columns: ν for W⁰, 1 for W^ℓ (the bulk of WᵀW/N is MP of ratio 1/ratio).
    pub ratio: f64,
    /// η₀g, the size of each rank-one update.
    pub eg: f64,
}

impl MatrixOrder {
    /// The bulk of W(0)ᵀW(0)/N: MP of ratio (columns / rows) = 1/ratio (eq. 67).
    pub fn bulk(&self) -> MarchenkoPastur {
        MarchenkoPastur::new(1.0 / self.ratio)
    }

    /// The upper edge of the bulk, (1 + 1/√ratio)²; outliers lie above it.
    pub fn edge(&self) -> f64 {
        self.bulk().edges().1
    }

    /// The T × T blocks (C_x, R_x, C_y, R_y) over the updates s < T.
    fn blocks(&self, t: usize) -> [Mat<f64>; 4] {
        let cut = |m: &Mat<f64>| m.as_ref().submatrix(0, 0, t, t).to_owned();
        [cut(&self.c_right), cut(&self.r_right), cut(&self.c_left), cut(&self.r_left)]
    }

    /// The probe's closure at z > edge (module docs, "Outliers"): the 4T × 4T map L(z) of the
    /// overlaps (c, d) and couplings (κ, μ) onto themselves; z is an outlier of W(T)ᵀW(T)/N
    /// exactly when 1 is an eigenvalue of L(z). Kept as the direct check of
    /// [`MatrixOrder::outliers`].
    pub fn closure(&self, t: usize, z: f64) -> Mat<f64> {
        let [cx, rx, cy, ry] = self.blocks(t);
        let (nu, eg) = (self.ratio, self.eg);
        let sy = self.bulk().stieltjes_real(z);
        let sh = 1.0 / (1.0 - sy / nu);
        // Unknowns in the order c, d, κ, μ.
        Mat::from_fn(4 * t, 4 * t, |i, j| {
            let (bi, bj, a, b) = (i / t, j / t, i % t, j % t);
            let id = if a == b { 1.0 } else { 0.0 };
            match (bi, bj) {
                (0, 1) => sy * rx[(a, b)] / nu,
                (0, 3) => sy * cx[(a, b)],
                (1, 0) => sh * ry[(a, b)],
                (1, 2) => sh * cy[(a, b)],
                (2, 0) => eg * id,
                (2, 3) => sy * rx[(b, a)] / nu,
                (3, 1) => eg * id,
                (3, 2) => sh * ry[(b, a)],
                _ => 0.0,
            }
        })
    }

    /// det(I − L(z)) for [`MatrixOrder::closure`]: zero at every outlier.
    pub fn pole_determinant(&self, t: usize, z: f64) -> f64 {
        let l = self.closure(t, z);
        let n = l.nrows();
        let m = Mat::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.0 } - l[(i, j)]);
        m.determinant()
    }

    /// The z-independent 2T × 2T matrix K (module docs, "Outliers"): its real eigenvalues
    /// θ > 1/s₊ are the outliers, s = 1/θ being the bulk's Stieltjes transform there.
    pub fn pole_matrix(&self, t: usize) -> Mat<f64> {
        let [cx, rx, cy, ry] = self.blocks(t);
        let (nu, eg) = (self.ratio, self.eg);
        let id = Mat::<f64>::identity(t, t);
        // c = [R_x/ν, C_x](d; μ), κ = [ηR_x/ν, R_xᵀ/ν + ηC_x](d; μ) with η = η₀g.
        let c_d = &rx * (1.0 / nu);
        let c_mu = cx.clone();
        let k_d = &rx * (eg / nu);
        let k_mu = rx.transpose() * (1.0 / nu) + &cx * eg;
        // d′ = d/ν + R_y c + C_y κ, μ′ = (μ − ηd)/ν + R_yᵀκ + ηd′.
        let dd = &id * (1.0 / nu) + &ry * &c_d + &cy * &k_d;
        let dm = &ry * &c_mu + &cy * &k_mu;
        let md = &id * (-eg / nu) + ry.transpose() * &k_d + &dd * eg;
        let mm = &id * (1.0 / nu) + ry.transpose() * &k_mu + &dm * eg;
        Mat::from_fn(2 * t, 2 * t, |i, j| {
            let (a, b) = (i % t, j % t);
            match (i / t, j / t) {
                (0, 0) => dd[(a, b)],
                (0, 1) => dm[(a, b)],
                (1, 0) => md[(a, b)],
                _ => mm[(a, b)],
            }
        })
    }

    /// The outliers of W(T)ᵀW(T)/N after T updates, largest first: the real eigenvalues
    /// θ > 1/s₊ of [`MatrixOrder::pole_matrix`], mapped by the inverse Stieltjes transform of the
    /// bulk z(s) = (1 + (1 − c)s)/(s(1 − cs)), c = 1/ratio, s = 1/θ.
    pub fn outliers(&self, t: usize) -> Vec<f64> {
        if t == 0 {
            return Vec::new();
        }
        let c = 1.0 / self.ratio;
        let s_edge = 1.0 / (c.sqrt() + c);
        let eig = self.pole_matrix(t).eigenvalues().unwrap_or_default();
        let scale = eig.iter().map(|e| e.norm()).fold(1.0, f64::max);
        let mut out: Vec<f64> = eig
            .into_iter()
            .filter(|e| e.im.abs() <= 1e-9 * scale && e.re * s_edge > 1.0 + 1e-12)
            .map(|e| {
                let s = 1.0 / e.re;
                (1.0 + (1.0 - c) * s) / (s * (1.0 - c * s))
            })
            .collect();
        out.sort_by(|a, b| b.total_cmp(a));
        out
    }
}

/// A hidden layer's site (1 ≤ ℓ < L; module docs): h^ℓ = φ^ℓ + A g^ℓ and g^ℓ = ψ^ℓ + B h^ℓ with
/// independent Gaussian sources φ^ℓ ~ GP(0, C_below) and ψ^ℓ ~ GP(0, C_above), stored as the
/// coefficient matrices of both fields on both sources (T × T, rows filled as time advances).
struct HiddenSite {
    /// ∂g/∂φ = R_{g^ℓ|φ^ℓ} (strictly causal) and ∂g/∂ψ.
    pg: Mat<f64>,
    qg: Mat<f64>,
    /// ∂h/∂φ and ∂h/∂ψ = R_{h^ℓ|ψ^ℓ}.
    ph: Mat<f64>,
    qh: Mat<f64>,
    /// C_{g^ℓ} = g·g/N and C_{h^ℓ} = h·h/N.
    cg: Mat<f64>,
    ch: Mat<f64>,
}

/// Row t of P C Pᵀ + Q C′ Qᵀ against rows 0..=t: the covariance of a field with coefficient
/// rows P, Q on independent sources of covariances C, C′ (entries up to t; zero beyond a row's
/// support).
fn covariance_row(t: usize, p: &Mat<f64>, c: &Mat<f64>, q: &Mat<f64>, c2: &Mat<f64>) -> Vec<f64> {
    let xp: Vec<f64> = (0..=t).map(|j| (0..=t).map(|i| p[(t, i)] * c[(i, j)]).sum()).collect();
    let xq: Vec<f64> = (0..=t).map(|j| (0..=t).map(|i| q[(t, i)] * c2[(i, j)]).sum()).collect();
    (0..=t).map(|r| (0..=t).map(|j| xp[j] * p[(r, j)] + xq[j] * q[(r, j)]).sum()).collect()
}

impl HiddenSite {
    fn new(t_len: usize) -> Self {
        let z = || Mat::zeros(t_len, t_len);
        HiddenSite { pg: z(), qg: z(), ph: z(), qh: z(), cg: z(), ch: z() }
    }

    /// g(t) = ψ(t) + Σ_{s<t} B(t, s)h(s), B = R_above + η₀g·C_above (the layer above's response
    /// of its g to its φ, and the update of the matrix between them), then C_g(t, ·).
    fn g_side(&mut self, t: usize, eg: f64, r_above: &Mat<f64>, c_above: &Mat<f64>, c_below: &Mat<f64>) {
        let b: Vec<f64> = (0..t).map(|s| r_above[(t, s)] + eg * c_above[(t, s)]).collect();
        for c in 0..=t {
            self.pg[(t, c)] = (0..t).map(|s| b[s] * self.ph[(s, c)]).sum();
            self.qg[(t, c)] = (0..t).map(|s| b[s] * self.qh[(s, c)]).sum::<f64>() + if c == t { 1.0 } else { 0.0 };
        }
        for (r, v) in covariance_row(t, &self.pg, c_below, &self.qg, c_above).into_iter().enumerate() {
            self.cg[(t, r)] = v;
            self.cg[(r, t)] = v;
        }
    }

    /// h(t) = φ(t) + Σ_{s≤t} A(t, s)g(s), A = R_below + η₀g·C_below·[s < t], then C_h(t, ·).
    fn h_side(&mut self, t: usize, eg: f64, r_below: &Mat<f64>, c_below: &Mat<f64>, c_above: &Mat<f64>) {
        let a: Vec<f64> = (0..=t).map(|s| r_below[(t, s)] + if s < t { eg * c_below[(t, s)] } else { 0.0 }).collect();
        for c in 0..=t {
            self.ph[(t, c)] = (0..=t).map(|s| a[s] * self.pg[(s, c)]).sum::<f64>() + if c == t { 1.0 } else { 0.0 };
            self.qh[(t, c)] = (0..=t).map(|s| a[s] * self.qg[(s, c)]).sum();
        }
        for (r, v) in covariance_row(t, &self.ph, c_below, &self.qh, c_above).into_iter().enumerate() {
            self.ch[(t, r)] = v;
            self.ch[(r, t)] = v;
        }
    }
}

/// The readout's site: w(t) = a(t)w(0) + Σ_s B_w(t, s)φ^L(s) and its field
/// h^L(t) = a_h(t)w(0) + Σ_s B_h(t, s)φ^L(s), φ^L ~ GP(0, C_below), w(0) ~ N(0, 1);
/// w(t + 1) = w(t) + η₀g·h^L(t).
struct TopSite {
    a: Vec<f64>,
    /// R_{w|φ^L} (strictly causal).
    bw: Mat<f64>,
    ah: Vec<f64>,
    bh: Mat<f64>,
    /// C_w = w·w/N.
    cw: Mat<f64>,
}

impl TopSite {
    fn new(t_len: usize) -> Self {
        let z = || Mat::zeros(t_len, t_len);
        TopSite { a: vec![0.0; t_len], bw: z(), ah: vec![0.0; t_len], bh: z(), cw: z() }
    }

    /// w(t) from step t − 1, and C_w(t, ·).
    fn advance(&mut self, t: usize, eg: f64, c_below: &Mat<f64>) {
        if t == 0 {
            self.a[0] = 1.0;
        } else {
            self.a[t] = self.a[t - 1] + eg * self.ah[t - 1];
            for c in 0..t {
                self.bw[(t, c)] = self.bw[(t - 1, c)] + eg * self.bh[(t - 1, c)];
            }
        }
        let x: Vec<f64> = (0..=t).map(|j| (0..=t).map(|i| self.bw[(t, i)] * c_below[(i, j)]).sum()).collect();
        for r in 0..=t {
            let v = self.a[t] * self.a[r] + (0..=t).map(|j| x[j] * self.bw[(r, j)]).sum::<f64>();
            self.cw[(t, r)] = v;
            self.cw[(r, t)] = v;
        }
    }

    /// h^L(t) = φ^L(t) + Σ_{s≤t} A(t, s)w(s), A = R_below + η₀g·C_below·[s < t].
    fn h_side(&mut self, t: usize, eg: f64, r_below: &Mat<f64>, c_below: &Mat<f64>) {
        let a: Vec<f64> = (0..=t).map(|s| r_below[(t, s)] + if s < t { eg * c_below[(t, s)] } else { 0.0 }).collect();
        self.ah[t] = (0..=t).map(|s| a[s] * self.a[s]).sum();
        for c in 0..=t {
            self.bh[(t, c)] = (0..=t).map(|s| a[s] * self.bw[(s, c)]).sum::<f64>() + if c == t { 1.0 } else { 0.0 };
        }
    }
}

/// The input site's Σ̂-eigenvalue nodes with their own correlations and responses (full batch):
/// C_v^λ = λ²G_λSG_λᵀ (+ the label noise's (λσ_ε²/α)(G_λ1)(G_λ1)ᵀ) and R_v^λ = −λG_λ/g, the
/// response to the field ĝ of [`MatrixOrder`]; their λ-averages are C_v and R_v.
#[derive(Clone, Debug)]
pub struct InputNodes {
    pub lambda: Vec<f64>,
    pub weight: Vec<f64>,
    pub c_v: Vec<Mat<f64>>,
    pub r_v: Vec<Mat<f64>>,
}

/// The spectrum's top of the NTK of an L = 1 network after T steps (module docs, "NTK"), in
/// units where η times the NTK's eigenvalue on the training set is η₀ times these.
#[derive(Clone, Debug)]
pub struct NtkTop {
    pub step: usize,
    /// The readout term C_w(T, T) = |w|²/N that E.15 shifts the first layer's spectrum by.
    pub readout: f64,
    /// Population NTK (x ~ N(0, I)): C_w(T, T) + the largest eigenvalue of W⁰(T)ᵀW⁰(T)/N
    /// (its top outlier, or the MP edge) — App. E.15.
    pub population: f64,
    /// Training-set NTK KΣ̂ (K = C_w I + W⁰ᵀW⁰/N): the upper edge of its bulk and its outliers,
    /// largest first.
    pub edge: f64,
    pub outliers: Vec<f64>,
}

impl NtkTop {
    /// The largest eigenvalue of KΣ̂: the top outlier, or the bulk edge.
    pub fn top(&self) -> f64 {
        self.outliers.first().copied().unwrap_or(self.edge)
    }
}

/// ψ_λ = φ/(1 − φ s_h) with φ = λ/(z − λC_w): the input-site probe's transfer (module docs, "NTK").
fn ntk_psi(z: f64, s_h: f64, lambda: f64, readout: f64) -> f64 {
    let phi = lambda / (z - lambda * readout);
    phi / (1.0 - phi * s_h)
}

impl InputNodes {
    /// z(s): the z > max_λ λ(C_w + s_h) with E_λ[ψ_λ(z)] = s (E_λ[ψ] falls from +∞ to 0 there,
    /// so the root is unique), for 0 < s < ν. The bulk's inverse Stieltjes-like map.
    fn z_of_s(&self, s: f64, nu: f64, readout: f64) -> f64 {
        let s_h = 1.0 / (1.0 - s / nu);
        let lo = self.lambda.iter().map(|l| l * (readout + s_h)).fold(0.0, f64::max);
        let f = |z: f64| {
            self.lambda.iter().zip(&self.weight).map(|(l, w)| w * ntk_psi(z, s_h, *l, readout)).sum::<f64>() - s
        };
        let (mut a, mut b) = (lo * (1.0 + 1e-15) + 1e-300, 2.0 * lo + 2.0 / s);
        while f(b) > 0.0 {
            b *= 2.0;
        }
        for _ in 0..200 {
            let mid = 0.5 * (a + b);
            if f(mid) > 0.0 {
                a = mid
            } else {
                b = mid
            }
            if b - a <= 1e-14 * b {
                break;
            }
        }
        0.5 * (a + b)
    }
}

/// One step's [`NtkTop`]: the population top by E.15, the training-set edge as the minimum of
/// z(s) and its outliers as the zeros of det(I − N(s)) on the branch below it.
fn ntk_top(m: &MatrixOrder, nodes: &InputNodes, t: usize) -> NtkTop {
    let readout = m.c_left[(t, t)];
    let population = readout + m.outliers(t).first().copied().unwrap_or(m.edge());
    let nu = m.ratio;
    let z = |s: f64| nodes.z_of_s(s, nu, readout);
    // The bulk edge: scan z(s) over (0, ν), then a golden-section search around the minimum.
    let k_scan = 200;
    let s_at = |k: usize| nu * (k as f64 + 0.5) / k_scan as f64;
    let k_min = (0..k_scan).min_by(|a, b| z(s_at(*a)).total_cmp(&z(s_at(*b)))).unwrap_or(0);
    let (mut a, mut b) =
        (s_at(k_min.saturating_sub(1)) * if k_min == 0 { 0.5 } else { 1.0 }, s_at((k_min + 1).min(k_scan - 1)));
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..80 {
        let (x1, x2) = (b - ratio * (b - a), a + ratio * (b - a));
        if z(x1) < z(x2) { b = x2 } else { a = x1 }
    }
    let s_edge = 0.5 * (a + b);
    let edge = z(s_edge);
    let mut outliers = Vec::new();
    if t > 0 {
        let f = |s: f64| ntk_determinant(m, nodes, t, s, z(s));
        let k_det = 160;
        let grid: Vec<f64> = (1..=k_det).map(|k| s_edge * k as f64 / k_det as f64 * (1.0 - 1e-9)).collect();
        let vals: Vec<f64> = grid.iter().map(|s| f(*s)).collect();
        for k in 0..k_det - 1 {
            if vals[k].signum() == vals[k + 1].signum() {
                continue;
            }
            let (mut lo, mut hi, f_lo) = (grid[k], grid[k + 1], vals[k].signum());
            for _ in 0..50 {
                let mid = 0.5 * (lo + hi);
                if f(mid).signum() == f_lo { lo = mid } else { hi = mid }
            }
            outliers.push(z(0.5 * (lo + hi)));
        }
    }
    outliers.sort_by(|a, b| b.total_cmp(a));
    NtkTop { step: t, readout, population, edge, outliers }
}

/// det(I − N(s)) at z = z(s): the probe closure of [`MatrixOrder::closure`] with the input
/// site's transfer ψ_λ in place of the MP transform (module docs, "NTK"), c and κ eliminated.
fn ntk_determinant(m: &MatrixOrder, nodes: &InputNodes, t: usize, s: f64, z: f64) -> f64 {
    let (nu, eg, readout) = (m.ratio, m.eg, m.c_left[(t, t)]);
    let s_h = 1.0 / (1.0 - s / nu);
    let mut cx = Mat::<f64>::zeros(t, t);
    let mut rx = Mat::<f64>::zeros(t, t);
    for (j, (l, w)) in nodes.lambda.iter().zip(&nodes.weight).enumerate() {
        let p = w * ntk_psi(z, s_h, *l, readout);
        for b in 0..t {
            for (x, y) in cx.col_as_slice_mut(b).iter_mut().zip(&nodes.c_v[j].col_as_slice(b)[..t]) {
                *x += p * y;
            }
            // R_v^λ is lower triangular: rows a ≥ b.
            for (x, y) in rx.col_as_slice_mut(b)[b..].iter_mut().zip(&nodes.r_v[j].col_as_slice(b)[b..t]) {
                *x += p * y;
            }
        }
    }
    let cut = |x: &Mat<f64>| x.as_ref().submatrix(0, 0, t, t).to_owned();
    let (cy, ry) = (cut(&m.c_left), cut(&m.r_left));
    let id = Mat::<f64>::identity(t, t);
    let c_d = &rx * (1.0 / nu);
    let k_d = &rx * (eg / nu);
    let k_mu = rx.transpose() * (1.0 / nu) + &cx * eg;
    let n_dd = (&ry * &c_d + &cy * &k_d) * s_h;
    let n_dm = (&ry * &cx + &cy * &k_mu) * s_h;
    let n_md = ry.transpose() * &k_d * s_h + &id * eg;
    let n_mm = ry.transpose() * &k_mu * s_h;
    let i_minus_n = Mat::from_fn(2 * t, 2 * t, |i, j| {
        let (a, b) = (i % t, j % t);
        let n = match (i / t, j / t) {
            (0, 0) => n_dd[(a, b)],
            (0, 1) => n_dm[(a, b)],
            (1, 0) => n_md[(a, b)],
            _ => n_mm[(a, b)],
        };
        if i == j { 1.0 - n } else { -n }
    });
    i_minus_n.determinant()
}

/// A two-layer (L = 1) linear network with C outputs f_c = w_cᵀW⁰x/(gN), trained by full-batch
/// GD on y_c = s_c·β_c·x/√D with independent teachers β_c (paper App. E.13, Fig. 14; derived
/// here). Every object of the scalar DMFT gains a class index: super-indices (t, c), causal in
/// t; the sources w_c(0) and β_c are independent across classes, so S = C_w/(g²ν) + δ_cc′s_c²;
/// M = R_w/g + η₀C_w·[s < t], G_λ = (I + λM)⁻¹, C_v = E_λ[λ²G_λSG_λᵀ], R_v = −E_λ[λG_λ], and the
/// width site w_c(t+1) = w_c(t) + η₀g·φ_c(t) + η₀Σ_{(s,c′)}K((t,c),(s,c′))w_c′(s) with
/// K = R_v/ν + η₀g²C_v·[s < t]. The first layer's outliers follow from the same pole conditions
/// ([`MatrixOrder`]) on the super-indices: up to C of them. Dense: O(Q·(TC)²·C·T) time.
/// Any linear teacher y = Bᵀx/√D reduces to this one: the loss and the initialization are
/// invariant under rotations of the outputs, so rotating by the eigenvectors of BᵀB/D leaves
/// independent teachers with scales s_c = the singular values of B/√D. With independent
/// teachers every super-index matrix is block diagonal in c — the classes decouple, and the C
/// outliers are those of C scalar problems (test `five_outputs_give_five_outliers_that_match_direct_gd`:
/// the top one equals the scalar reference's).
#[derive(Clone, Debug)]
pub struct LinearClasses {
    /// ν, α, γ₀, η₀ and the parameterization (L = 1, full batch, no label noise).
    pub net: LinearNet,
    /// Teacher scales s_c, one per output.
    pub scales: Vec<f64>,
}

impl LinearClasses {
    /// The losses (summed over outputs: ½Σ_c|e_c|² and ½Σ_c e_cᵀΣ̂e_c) at steps 0…T and the
    /// first layer's order parameters on the super-indices (t, c), time-major: its outliers
    /// after T steps are `order.outliers(T·C)`.
    pub fn solve(&self, steps: usize) -> (LinearCurves, MatrixOrder) {
        let net = &self.net;
        let (g, e0, nu) = (net.g(), net.eta0, net.nu);
        let (cls, t_len) = (self.scales.len().max(1), steps + 1);
        let n = t_len * cls;
        let class = |i: usize| i % cls;
        let (lam, wq) = net.spectrum(NODES);
        let mut cw = Mat::<f64>::zeros(n, n);
        let mut bw = Mat::<f64>::zeros(n, n); // R_w = ∂w/∂φ (strictly causal)
        let mut aw = Mat::<f64>::zeros(n, cls); // ∂w/∂w(0)
        let mut cv = Mat::<f64>::zeros(n, n);
        let mut rv = Mat::<f64>::zeros(n, n); // ∂ṽ/∂ψ̃ with ψ̃ = ĝ/g
        let mut m = Mat::<f64>::zeros(n, n);
        let mut s = Mat::<f64>::zeros(n, n);
        let mut gl: Vec<Mat<f64>> = vec![Mat::zeros(n, n); lam.len()];
        for c in 0..cls {
            aw[(c, c)] = 1.0;
        }
        let mut out = LinearCurves::default();
        for t in 0..t_len {
            let (lo, hi) = (t * cls, (t + 1) * cls); // this step's rows
            // 1. C_w of step t's rows (w(t) is known): init part + B C_v Bᵀ over φ before t.
            let x = bw.as_ref().submatrix(lo, 0, cls, lo) * cv.as_ref().submatrix(0, 0, lo, lo);
            for i in lo..hi {
                for j in 0..hi {
                    let init: f64 = (0..cls).map(|k| aw[(i, k)] * aw[(j, k)]).sum();
                    let fluct: f64 = (0..lo).map(|l| x[(i - lo, l)] * bw[(j, l)]).sum();
                    cw[(i, j)] = init + fluct;
                    cw[(j, i)] = init + fluct;
                }
            }
            // 2. M of step t's rows (columns before t) and S up to step t.
            for i in lo..hi {
                for j in 0..lo {
                    m[(i, j)] = bw[(i, j)] / g + e0 * cw[(i, j)];
                }
                for j in 0..hi {
                    let v = cw[(i, j)] / (g * g * nu)
                        + if class(i) == class(j) { self.scales[class(i)].powi(2) } else { 0.0 };
                    s[(i, j)] = v;
                    s[(j, i)] = v;
                }
            }
            // 3. The input site per node: G rows of step t, then C_v, R_v rows and the losses.
            let m_ref = &m;
            let s_ref = &s;
            let shares: Vec<(Mat<f64>, Mat<f64>, f64, f64)> = gl
                .par_iter_mut()
                .zip(lam.par_iter().zip(wq.par_iter()))
                .map(|(gm, (&l, &wj))| {
                    // G(i, ·) = e_i − λ Σ_{j < lo} M(i, j) G(j, ·).
                    for i in lo..hi {
                        let mut row = vec![0.0; hi];
                        row[i] = 1.0;
                        for j in 0..lo {
                            let f = -l * m_ref[(i, j)];
                            if f != 0.0 {
                                for k in 0..=j {
                                    row[k] += f * gm[(j, k)];
                                }
                            }
                        }
                        for (k, v) in row.into_iter().enumerate() {
                            gm[(i, k)] = v;
                        }
                    }
                    // H = G_t S over columns < hi, then (G S Gᵀ)(i, j) for j < hi.
                    let h = gm.as_ref().submatrix(lo, 0, cls, hi) * s_ref.as_ref().submatrix(0, 0, hi, hi);
                    let gsg = &h * gm.as_ref().submatrix(0, 0, hi, hi).transpose();
                    let cv_part = Mat::from_fn(cls, hi, |a, b| wj * l * l * gsg[(a, b)]);
                    let rv_part = Mat::from_fn(cls, hi, |a, b| -wj * l * gm[(lo + a, b)]);
                    let diag: f64 = (0..cls).map(|a| gsg[(a, lo + a)]).sum();
                    (cv_part, rv_part, wj * 0.5 * diag, wj * 0.5 * l * diag)
                })
                .collect();
            let (mut test, mut train) = (0.0, 0.0);
            for (cp, rp, te, tr) in &shares {
                for a in 0..cls {
                    for b in 0..hi {
                        cv[(lo + a, b)] += cp[(a, b)];
                        rv[(lo + a, b)] += rp[(a, b)];
                    }
                }
                test += te;
                train += tr;
            }
            for a in lo..hi {
                for b in 0..lo {
                    cv[(b, a)] = cv[(a, b)];
                }
            }
            out.test.push(test);
            out.train.push(train);
            // 4. The width site: w(t + 1) from w(s ≤ t), K = R_v/ν + η₀g²C_v·[s < t].
            if t + 1 < t_len {
                for i in lo..hi {
                    let k_row: Vec<f64> =
                        (0..hi).map(|j| rv[(i, j)] / nu + if j < lo { e0 * g * g * cv[(i, j)] } else { 0.0 }).collect();
                    let next = i + cls;
                    for c in 0..cls {
                        aw[(next, c)] = aw[(i, c)] + e0 * (0..hi).map(|j| k_row[j] * aw[(j, c)]).sum::<f64>();
                    }
                    for col in 0..hi {
                        bw[(next, col)] = bw[(i, col)] + e0 * (0..hi).map(|j| k_row[j] * bw[(j, col)]).sum::<f64>();
                    }
                    bw[(next, i)] += e0 * g;
                }
            }
        }
        let r_right = Mat::from_fn(n, n, |i, j| rv[(i, j)] / g);
        (out, MatrixOrder { c_right: cv, r_right, c_left: cw, r_left: bw, ratio: nu, eg: e0 * g })
    }
}

/// Direct GD of [`LinearClasses`] at width N (D = N/ν, P = αD): losses summed over outputs at
/// steps 0…T, and the top `k` eigenvalues of W⁰ᵀW⁰/N after each step in `at`.
pub fn simulate_classes(
    problem: &LinearClasses,
    n: usize,
    steps: usize,
    seed: u64,
    at: &[usize],
    k: usize,
) -> (LinearCurves, Vec<Vec<f64>>) {
    let net = &problem.net;
    let cls = problem.scales.len().max(1);
    let d = ((n as f64) / net.nu).round() as usize;
    let p = ((d as f64) * net.alpha).round() as usize;
    let gauss = |rows: usize, cols: usize, k: u64| {
        let v = normals(&mut stream(seed, Purpose::Analysis, 600 + k), rows * cols);
        Mat::from_fn(rows, cols, |i, j| v[i * cols + j])
    };
    let x = gauss(p, d, 0);
    let beta = gauss(d, cls, 1);
    let mut w0 = gauss(n, d, 2);
    let mut w = gauss(n, cls, 3);
    let (g, nf, df, pf) = (net.g(), n as f64, d as f64, p as f64);
    let lr = net.eta0 * g;
    let target = Mat::from_fn(d, cls, |i, c| problem.scales[c] * beta[(i, c)] / df.sqrt());
    let mut out = LinearCurves::default();
    let mut tops = Vec::new();
    for t in 0..=steps {
        if at.contains(&t) {
            tops.push(top_gram_eigenvalues(&w0, k));
        }
        let u = (w0.transpose() * &w) * (1.0 / (g * nf));
        let e = &u - &target;
        let xe = &x * &e;
        out.test.push(0.5 * e.squared_norm_l2());
        out.train.push(0.5 * xe.squared_norm_l2() / pf);
        if t == steps {
            break;
        }
        let v = (x.transpose() * &xe) * (-1.0 / pf);
        let wv = &w0 * &v; // with the old W⁰
        w0 += (&w * v.transpose()) * lr;
        w += wv * lr;
    }
    (out, tops)
}

/// Direct GD of the network at width N (D = N/ν, P = αD, rounded; full batch, or a fresh
/// batch of P every step when `online`): the finite-size ground truth of [`LinearNet::solve`]. Losses at steps 0…T before each update. With
/// v = −Xᵀ(Xu − y)/P (= −Σ̂e without label noise), the forward fields a⁰ = v, a¹ = W⁰v, a^{ℓ+1} = W^ℓa^ℓ/√N and the backward fields
/// b^L = w, b^ℓ = W^ℓᵀb^{ℓ+1}/√N, the updates (rate η = η₀g²N, all from the old values) are
/// W⁰ += η₀g·b¹vᵀ, W^ℓ += η₀g·b^{ℓ+1}a^ℓᵀ/√N, w += η₀g·a^L, and u = W⁰ᵀb¹/(gN).
pub fn simulate(net: &LinearNet, n: usize, steps: usize, seed: u64) -> LinearCurves {
    simulate_observed(net, n, steps, seed, &mut |_, _, _, _| {})
}

/// Direct GD's spectra at the steps of `at` (ascending), `[checkpoint]` each, largest first.
#[derive(Clone, Debug, Default)]
pub struct Simulated {
    pub curves: LinearCurves,
    /// The top `k` eigenvalues of every layer's W^ℓᵀW^ℓ/N: `[checkpoint][layer]` — the ground
    /// truth of [`LinearNet::outliers`].
    pub layers: Vec<Vec<Vec<f64>>>,
    /// L = 1, full batch: the top `k` eigenvalues of the training-set NTK KΣ̂ (units of
    /// [`NtkTop`]; K = (|w|²/N)I + W⁰ᵀW⁰/N, from the same nonzero spectrum of XKXᵀ/P); else empty.
    pub ntk: Vec<Vec<f64>>,
}

/// [`simulate`], and the spectra of [`Simulated`] after each step in `at`.
pub fn simulate_spectra(net: &LinearNet, n: usize, steps: usize, seed: u64, at: &[usize], k: usize) -> Simulated {
    let mut out = Simulated::default();
    let with_ntk = net.depth <= 1 && !net.online;
    out.curves = simulate_observed(net, n, steps, seed, &mut |t, layers, w, x| {
        if !at.contains(&t) {
            return;
        }
        out.layers.push(layers.iter().map(|m| top_gram_eigenvalues(m, k)).collect());
        if with_ntk {
            out.ntk.push(training_ntk_top(layers[0], w, x, k, x.nrows() > x.ncols() + n));
        }
    });
    out
}

/// The top `k` eigenvalues of the training-set NTK KΣ̂ of an L = 1 network ([`Simulated::ntk`]):
/// XKXᵀ/P = AAᵀ with A = X[√C_w·I, W⁰ᵀ/√N]/√P, from AAᵀ (P × P) or, when `via_gram`, from
/// AᵀA = BΣ̂Bᵀ with B = [√C_w·I; W⁰/√N] ((D + N) × (D + N)) — the smaller one is used.
fn training_ntk_top(w0: &Mat<f64>, w: &Mat<f64>, x: &Mat<f64>, k: usize, via_gram: bool) -> Vec<f64> {
    let (nf, p, d, n) = (w0.nrows() as f64, x.nrows() as f64, x.ncols(), w0.nrows());
    let readout = w.squared_norm_l2() / nf;
    let m = if via_gram {
        let sig = (x.transpose() * x) * (1.0 / p);
        let b = Mat::from_fn(d + n, d, |i, j| match i < d {
            true => f64::from(u8::from(i == j)) * readout.sqrt(),
            false => w0[(i - d, j)] / nf.sqrt(),
        });
        &b * &sig * b.transpose()
    } else {
        let xw = x * w0.transpose(); // P × N
        (&xw * xw.transpose()) * (1.0 / (nf * p)) + (x * x.transpose()) * (readout / p)
    };
    let mut e = m.self_adjoint_eigenvalues(faer::Side::Lower).unwrap_or_default();
    e.reverse();
    e.truncate(k);
    e
}

/// The top `k` eigenvalues of WᵀW/N for an N × m matrix W, from its smaller Gram matrix.
fn top_gram_eigenvalues(w: &Mat<f64>, k: usize) -> Vec<f64> {
    let n = w.nrows() as f64;
    let gram = if w.ncols() <= w.nrows() { w.transpose() * w } else { w * w.transpose() };
    let mut e = gram.self_adjoint_eigenvalues(faer::Side::Lower).unwrap_or_default();
    e.reverse();
    e.truncate(k);
    e.iter().map(|x| x / n).collect()
}

/// What [`simulate_observed`] shows its observer after t updates: (t, [W⁰, W¹, …], w, X).
type Observer<'a> = dyn FnMut(usize, &[&Mat<f64>], &Mat<f64>, &Mat<f64>) + 'a;

/// [`simulate`] with `observe(t, [W⁰, W¹, …], w, X)` called on the weights after t updates,
/// t = 0…T (X: the fixed training set).
fn simulate_observed(net: &LinearNet, n: usize, steps: usize, seed: u64, observe: &mut Observer<'_>) -> LinearCurves {
    let d = ((n as f64) / net.nu).round() as usize;
    let p = ((d as f64) * net.alpha).round() as usize;
    let depth = net.depth.max(1);
    let gauss = |rows: usize, cols: usize, k: u64| {
        let v = normals(&mut stream(seed, Purpose::Analysis, 400 + k), rows * cols);
        Mat::from_fn(rows, cols, |i, j| v[i * cols + j])
    };
    let x = gauss(p, d, 0);
    let beta = gauss(d, 1, 1);
    let mut w0 = gauss(n, d, 2);
    let mut w = gauss(n, 1, 3);
    let mut hidden: Vec<Mat<f64>> = (1..depth).map(|l| gauss(n, n, 10 + l as u64)).collect();
    let g = net.g();
    let lr = net.eta0 * g; // η·(1/(gN)) = η₀g
    let root_n = (n as f64).sqrt();
    let target: Col<f64> = Col::from_fn(d, |i| beta[(i, 0)] / (d as f64).sqrt());
    let noise = gauss(p, 1, 5);
    let eps: Col<f64> = Col::from_fn(p, |i| net.label_noise.sqrt() * noise[(i, 0)]);
    let mut out = LinearCurves::default();
    for t in 0..=steps {
        let layers: Vec<&Mat<f64>> = std::iter::once(&w0).chain(hidden.iter()).collect();
        observe(t, &layers, &w, &x);
        // Backward fields b^L = w, b^ℓ = W^ℓᵀb^{ℓ+1}/√N (index ℓ − 1).
        let mut back = vec![w.clone(); depth];
        for l in (1..depth).rev() {
            back[l - 1] = hidden[l - 1].transpose() * &back[l] * (1.0 / root_n);
        }
        let u = (w0.transpose() * back[0].col(0)) * (1.0 / (g * n as f64));
        let e = &u - &target;
        // Online SGD: this step's fresh batch and label noise (streams 1000 + 2t, 1001 + 2t).
        let fresh = net.online.then(|| {
            let noise = gauss(p, 1, 1001 + 2 * t as u64);
            (gauss(p, d, 1000 + 2 * t as u64), Col::from_fn(p, |i| net.label_noise.sqrt() * noise[(i, 0)]))
        });
        let (x, eps) = match &fresh {
            Some((xt, et)) => (xt, et),
            None => (&x, &eps),
        };
        let xe = x * &e - eps; // the training residuals Xu − y
        let sig_e = x.transpose() * &xe * (1.0 / p as f64);
        out.test.push(0.5 * e.squared_norm_l2());
        out.train.push(0.5 * xe.squared_norm_l2() / p as f64);
        if t == steps {
            break;
        }
        let v = -sig_e;
        // Forward fields a¹ = W⁰v, a^{ℓ+1} = W^ℓa^ℓ/√N (index ℓ − 1), with the old weights.
        let mut fwd = vec![&w0 * &v];
        for l in 1..depth {
            let next = &hidden[l - 1] * fwd[l - 1].as_mat() * (1.0 / root_n);
            fwd.push(next.col(0).to_owned());
        }
        for j in 0..d {
            let vj = lr * v[j];
            for i in 0..n {
                w0[(i, j)] += back[0][(i, 0)] * vj;
            }
        }
        for l in 1..depth {
            let scale = lr / root_n;
            let (bl, al) = (&back[l], &fwd[l - 1]);
            let m = &mut hidden[l - 1];
            for j in 0..n {
                let aj = scale * al[j];
                for i in 0..n {
                    m[(i, j)] += bl[(i, 0)] * aj;
                }
            }
        }
        for i in 0..n {
            w[(i, 0)] += lr * fwd[depth - 1][i];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadrature_is_converged_at_the_default_node_count() {
        // The MP law of Σ̂ by the midpoint rule in the angle: NODES against 8× as many over
        // T = 200 (L = 2, with and without the atom at λ = 0). Measured: test loss within 2e-7
        // (α = 2; 1e-15 at α = 0.5), train loss above 1% of its start within 1e-13.
        for alpha in [2.0, 0.5] {
            let net = LinearNet { alpha, ..LinearNet::reference(2) };
            let (c, fine) = (net.solve(200), net.solve_with_nodes(200, 8 * NODES));
            for t in 0..=200 {
                let test = ((c.test[t] - fine.test[t]) / fine.test[t]).abs();
                assert!(test < 1e-6, "α = {alpha}, t = {t}: test {} vs {}", c.test[t], fine.test[t]);
                if fine.train[t] > 0.01 * fine.train[0] {
                    let train = ((c.train[t] - fine.train[t]) / fine.train[t]).abs();
                    assert!(train < 1e-10, "α = {alpha}, t = {t}: train {} vs {}", c.train[t], fine.train[t]);
                }
            }
        }
    }

    #[test]
    fn outliers_from_the_eigenproblem_are_the_roots_of_the_pole_determinant() {
        // The reduction (a 2T × 2T eigenproblem and the inverse Stieltjes map) against a direct
        // root-finder of det(I − L(z)) over z above the edge: same count, same places.
        // Measured: every root within 1e-9 (relative) of an eigenproblem outlier.
        let cases = [
            (LinearNet::reference(1), 20),
            (LinearNet { nu: 0.5, alpha: 0.5, eta0: 0.05, ..LinearNet::reference(1) }, 20),
            (LinearNet { parameterization: Parameterization::Ntk, nu: 4.0, ..LinearNet::reference(2) }, 16),
            (LinearNet::reference(3), 12),
        ];
        for (net, t) in cases {
            let (_, orders) = net.solve_with_orders(t);
            for (l, m) in orders.iter().enumerate() {
                let want = m.outliers(t);
                // Scan z from far above down to the edge on a log grid; bisect each sign change.
                let (edge, top) = (m.edge(), 20.0 * m.edge());
                let zs: Vec<f64> =
                    (0..=3000).map(|k| top * (edge / top).powf(k as f64 / 3000.0) * (1.0 + 1e-9)).collect();
                let f = |z: f64| m.pole_determinant(t, z);
                let mut roots = Vec::new();
                for pair in zs.windows(2) {
                    let (mut hi, mut lo) = (pair[0], pair[1]);
                    if f(hi).signum() == f(lo).signum() {
                        continue;
                    }
                    let f_hi = f(hi).signum();
                    for _ in 0..80 {
                        let mid = 0.5 * (hi + lo);
                        if f(mid).signum() == f_hi { hi = mid } else { lo = mid }
                    }
                    roots.push(0.5 * (hi + lo));
                }
                assert_eq!(roots.len(), want.len(), "layer {l} of {net:?}: roots {roots:?} vs {want:?}");
                assert!(!want.is_empty() || l > 0, "layer {l} of {net:?}: no outlier to check");
                for (r, w) in roots.iter().zip(&want) {
                    assert!(((r - w) / w).abs() < 1e-9, "layer {l} of {net:?}: root {r} vs {w}");
                }
            }
        }
    }

    #[test]
    fn the_ntk_probe_with_a_white_input_is_the_first_layer_shifted_by_the_readout() {
        // With Σ̂ = I (one node λ = 1 carrying C_v, R_v) the training-set NTK KΣ̂ is K =
        // C_w I + W⁰ᵀW⁰/N: its edge and outliers must be the first layer's (the eigenproblem
        // route, [`MatrixOrder::outliers`]) shifted by C_w(T, T) — two independent code paths
        // (a determinant scan over s vs the 2T × 2T eigenproblem). Measured: within 1e-8.
        let net = LinearNet::reference(1);
        let (_, orders, nodes) = net.march(20, NODES, true);
        let m = &orders[0];
        let white = InputNodes {
            lambda: vec![1.0],
            weight: vec![1.0],
            c_v: vec![m.c_right.clone()],
            r_v: vec![m.r_right.clone()],
        };
        for t in [0, 5, 10, 20] {
            let top = ntk_top(m, &white, t);
            let shift = m.c_left[(t, t)];
            assert!(
                (top.edge - shift - m.edge()).abs() < 1e-8 * top.edge,
                "t = {t}: edge {} vs {}",
                top.edge,
                shift + m.edge()
            );
            let want = m.outliers(t);
            assert_eq!(top.outliers.len(), want.len(), "t = {t}: {:?} vs {want:?}", top.outliers);
            for (a, b) in top.outliers.iter().zip(&want) {
                assert!((a - shift - b).abs() < 1e-8 * a, "t = {t}: {a} vs {}", shift + b);
            }
            assert!((top.population - shift - want.first().copied().unwrap_or(m.edge())).abs() < 1e-12);
        }
        // The per-node correlations and responses average back to the march's C_v and R_v.
        let nodes = nodes.expect("kept");
        for (avg, want) in [(&nodes.c_v, &m.c_right), (&nodes.r_v, &m.r_right)] {
            for a in 0..=20 {
                for b in 0..=20 {
                    let x: f64 = nodes.weight.iter().zip(avg.iter()).map(|(w, c)| w * c[(a, b)]).sum();
                    assert!(
                        (x - want[(a, b)]).abs() < 1e-10 * (1.0 + want[(a, b)].abs()),
                        "({a}, {b}): {x} vs {}",
                        want[(a, b)]
                    );
                }
            }
        }
    }

    #[test]
    fn one_output_of_the_class_solver_is_the_scalar_dmft() {
        // LinearClasses with C = 1 (a dense super-index march) against the scalar march:
        // losses and first-layer outliers. Measured: within 1e-12 (losses), 1e-10 (outliers).
        for par in [Parameterization::Mup, Parameterization::Ntk] {
            let net = LinearNet { parameterization: par, ..LinearNet::reference(1) };
            let (curves, order) = LinearClasses { net, scales: vec![1.0] }.solve(24);
            let (want, orders) = net.solve_with_orders(24);
            for t in 0..=24 {
                assert!(
                    (curves.test[t] - want.test[t]).abs() < 1e-12 * want.test[0],
                    "t = {t}: {} vs {}",
                    curves.test[t],
                    want.test[t]
                );
                assert!((curves.train[t] - want.train[t]).abs() < 1e-12 * want.train[0], "t = {t}");
            }
            for t in [6, 12, 24] {
                let (a, b) = (order.outliers(t), orders[0].outliers(t));
                assert_eq!(a.len(), b.len(), "t = {t}: {a:?} vs {b:?}");
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-10 * y, "t = {t}: {x} vs {y}");
                }
            }
        }
        // Two outputs with the second teacher off: its readout only adds |w₂|²/N to the test loss.
        let net = LinearNet::reference(1);
        let two = LinearClasses { net, scales: vec![1.0, 0.0] }.solve(0);
        let want = 0.5 * (1.0 + 1.0 / (net.g().powi(2) * net.nu)) + 0.5 / (net.g().powi(2) * net.nu);
        assert!((two.0.test[0] - want).abs() < 1e-12, "{} vs {want}", two.0.test[0]);
    }

    #[test]
    fn both_routes_to_the_simulated_ntk_spectrum_agree() {
        // AAᵀ (P × P) and AᵀA ((D + N) × (D + N)) share their nonzero eigenvalues; the simulation
        // takes the smaller, so both must give the same top. Measured: 1e-13 relative.
        let g = |r: usize, c: usize, k: u64| {
            let v = normals(&mut stream(3, Purpose::Analysis, 900 + k), r * c);
            Mat::from_fn(r, c, |i, j| v[i * c + j])
        };
        let (w0, w, x) = (g(30, 20, 0), g(30, 1, 1), g(45, 20, 2));
        let (a, b) = (training_ntk_top(&w0, &w, &x, 5, false), training_ntk_top(&w0, &w, &x, 5, true));
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-10 * p.abs(), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn initial_losses_are_exact() {
        // test(0) = ½(1 + 1/(g²ν)) at every depth (|W⁰ᵀ⋯w|² = D·N^L at initialization);
        // train(0) = ½E[λ](1 + 1/(g²ν)) with E[λ] = 1.
        for (depth, nu, alpha, par) in [
            (1, 2.0, 2.0, Parameterization::Mup),
            (1, 4.0, 0.5, Parameterization::Ntk),
            (3, 2.0, 2.0, Parameterization::Mup),
        ] {
            let net =
                LinearNet { nu, alpha, gamma0: 1.5, eta0: 0.1, parameterization: par, ..LinearNet::reference(depth) };
            let c = net.solve(0);
            let want = 0.5 * (1.0 + 1.0 / (net.g().powi(2) * nu));
            assert!((c.test[0] - want).abs() < 1e-12, "{} vs {want}", c.test[0]);
            assert!((c.train[0] - want).abs() < 1e-9, "{} vs {want}", c.train[0]);
            // Label noise adds ½σ_ε² to the training loss only (α > 1 and α < 1 alike).
            let noisy = LinearNet { label_noise: 0.3, ..net }.solve(0);
            assert!((noisy.test[0] - want).abs() < 1e-12, "{} vs {want}", noisy.test[0]);
            assert!((noisy.train[0] - want - 0.15).abs() < 1e-9, "{} vs {}", noisy.train[0], want + 0.15);
        }
    }
}
