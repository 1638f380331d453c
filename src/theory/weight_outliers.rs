//! Outlier singular values of the hidden weights of a trained μP network (theory map T7;
//! tutorial §11.2, eqs. 108–111; paper App. C–D).
//!
//! After t updates the hidden matrix W^ℓ (N × N, entries N(0, σ²) at init) is, with W̃ = W/σ,
//!
//! ```text
//! W̃(t) = W̃(0) + (1/√N) Σ_b U_b V_bᵀ,   U_b = (η₀γΔ_b/σ) g^{ℓ+1}_b,   V_b = φ^ℓ_b,   b = (s, ν), s < t
//! ```
//!
//! With C outputs the sum runs over b = (s, ν, c), U_b = (η₀γΔ_{νc}(s)/σ) g^{ℓ+1}_{(s,ν,c)} and
//! V_b = φ^ℓ_{(s,ν)}: C spikes share one right vector, and everything below holds with b over
//! the backward super-indices ([`DmftSolution::spike_order_parameters`]) — with one care: the
//! copies' fields χ̃_(s,ν,c) = W̃(0)V_b/√N are one field, so a response ∂U/∂χ̃ is only defined
//! summed over the copies. The reduction uses R^g through Stein's identity ⟨U χ̃ᵀ⟩ = R^g C^φ,
//! where C^φ's rows of the copies are equal, so only that sum enters: each copy carries 1/C of
//! σd B (any split gives the same outliers: `tests/theory_network.rs`, to 1e-9; counting the
//! whole response on every copy multiplies it by C and put W² 6% above trained networks).
//!
//! (eq. 109 with the factor η₀γΔ_b/σ absorbed into the left spike, as the tutorial does). The
//! spikes are elementwise functions of the fields χ̃ = W̃(0)V/√N and ξ̃ = W̃(0)ᵀU/√N, and eq. (111)
//! needs their overlaps and responses, which follow from the network DMFT
//! ([`super::network`]; A^ℓ = ⟨∂φ^ℓ/∂r^ℓ⟩, B^ℓ = ⟨∂g^{ℓ+1}/∂u^{ℓ+1}⟩, with d_b = η₀γΔ_b/σ):
//!
//! ```text
//! C^φ_ab = Φ^ℓ_ab     C^g_ab = d_a d_b G^{ℓ+1}_ab     R^φ_ab = σ A^ℓ_ab / d_b     R^g_ab = σ d_a B^ℓ_ab
//! ```
//!
//! **Reduction** (theory map): with B = −[[R^φ + C^φ, C^φ], [R^φᵀ, R^φᵀ]] and
//! C = −[[R^g + C^g, C^g], [R^gᵀ, R^gᵀ]], det A(z) = 0 exactly when (1 − 𝒢)/𝒢 is an eigenvalue λ
//! of CB, 𝒢 the c = 1 MP Stieltjes transform; so every outlier eigenvalue of W̃ᵀW̃/N is
//! z = λ + 2 + 1/λ for a real eigenvalue λ > 1 of the 2S × 2S matrix CB (bulk edge 4), and the
//! normalized singular value is √z (bulk edge 2). With independent spikes (R = 0) and one spike
//! this is the classical (1 + θ²)/θ.
//!
//! **Compression**: if Q (S × k, orthonormal) spans the ranges of both C^φ and C^g, then
//! V = VQQᵀ and U = UQQᵀ (a spike combination with zero second moment vanishes), the update is
//! UVᵀ = (UQ)(VQ)ᵀ, every field is a function of the rotated fields W̃(0)VQ and W̃(0)ᵀUQ, and the
//! rotated spikes have order parameters QᵀXQ for X ∈ {C^φ, C^g, R^φ, R^g}: the same problem of
//! size k. (Spanning C^φ alone is not enough: V would still depend on the fields of the dropped
//! combinations of U; on a linear network that costs 4e-4 in the outlier.) Truncating Q to the
//! eigenmodes above a relative tolerance is the only approximation; `tests/theory_network.rs`
//! measures its error against the full determinant.
//!
//! **First layer** (W⁰, N × D, rectangular; paper App. C, whose equations were lost — this is
//! our derivation, exact at any N). Training touches W⁰(0) only through the preactivations
//! W⁰(0)x_μ/√D of the P training inputs: the forward pass uses nothing else, and every update
//! of W⁰ is a combination of g¹x_μᵀ. With X = [x_1 … x_P]/√D (D × P), K^x = XᵀX of rank r and
//! Π the projector onto span X, the Gaussian W⁰(0)(I − Π) is independent of W⁰(0)Π and hence of
//! the whole trajectory, and no update touches it. So, with H(t) = W⁰(t)X the current
//! preactivations h¹ (N × P),
//!
//! ```text
//! W⁰(t) = W⁰(0)(I − Π) + H(t) K^{x+} Xᵀ        (exact)
//! ```
//!
//! a rectangular Gaussian matrix of rank D − r plus a rank-r perturbation independent of it,
//! in the orthogonal directions span X: the appended-columns form of the rectangular spiked
//! model (T4). By rotation invariance only the Gram matrix of the appended columns matters,
//! Θ = K^{x+½}(HᵀH/σ²N)K^{x+½} (r × r), and a column of squared norm θ acts as a
//! Benaych-Georges–Nadakuditi spike of strength √(θ − 1) (its Gaussian column has norm² 1):
//! each eigenvalue θ > 1 + √c of Θ, c = (D − r)/N, gives an outlier singular value of
//! W⁰/(σ√N) at √(θ(θ − 1 + c)/(θ − 1)) ([`first_layer_outliers`]; bulk edge 1 + √c). In the
//! DMFT (N → ∞ at fixed D) HᵀH/N → K^{h¹}(t, t) = ⟨h¹h¹ᵀ⟩ and c → 0: the outliers are √θ for
//! the generalized eigenvalues θ > 1 of (K^{h¹}(t, t), σ²K^x) ([`first_layer_spikes`]). The
//! first layer's outliers are therefore not "dependent spikes" at all once the untouched
//! directions are split off.
//!
//! **At finite N** ([`first_layer_outliers_at_width`]) two O(D/N) effects move them, each a
//! BBP law: the rows of H are N i.i.d. draws of the single-site process, so HᵀH/N is a sample
//! covariance (ratio r/N) of the DMFT's K^{h¹} and a spike θ shows as θ(θ − 1 + r/N)/(θ − 1)
//! ([`super::rmt::sample_covariance_spike`]); the rectangular law above then adds the D − r
//! untouched directions. To first order the two add up to the rectangular law at the full ratio
//! D/N. At step 40 of `results/dmft-compare` (D = 32) they move W⁰'s outlier from 1.311
//! (N → ∞) to 1.325 at N = 2048 (trained mean 1.327). `tests/theory_network.rs` checks both steps against a simulated W⁰ with a
//! nonlinear dependent update, the second against the secular determinant, and the whole
//! against trained networks.

use super::network::DmftSolution;
use faer::Mat;

/// Order parameters of the spikes of one hidden matrix at one time (S × S each, S spikes).
#[derive(Clone, Debug)]
pub struct SpikeOrderParameters {
    pub c_phi: Mat<f64>,
    pub c_g: Mat<f64>,
    pub r_phi: Mat<f64>,
    pub r_g: Mat<f64>,
    /// The backward super-indices b' = (tP + μ)C + c of the spikes kept (empty after a
    /// compression).
    pub spikes: Vec<usize>,
}

impl DmftSolution {
    /// The spike order parameters of W^ℓ (1 ≤ ℓ < L) after `t` updates (spikes with a
    /// vanishing error Δ_b contribute nothing and are left out). With C outputs a spike is a
    /// backward super-index b' = (b, c): U_b' = d_b' g_b', V_b' = φ_b, so C^φ and R^g read the
    /// forward index b of b'.
    pub fn spike_order_parameters(&self, layer: usize, t: usize) -> SpikeOrderParameters {
        let pr = &self.problem;
        assert!(layer >= 1 && layer < pr.depth, "hidden matrices are W¹ … W^(L−1)");
        let (sigma, k) = (pr.sigma2.sqrt(), pr.outputs);
        let delta = self.delta();
        let dmax = delta[..t * pr.q()].iter().fold(0.0f64, |m, d| m.max(d.abs()));
        let spikes: Vec<usize> = (0..t * pr.q()).filter(|&b| delta[b].abs() > 1e-12 * dmax).collect();
        let d: Vec<f64> = spikes.iter().map(|&b| pr.eta0 * pr.gamma * delta[b] / sigma).collect();
        let n = spikes.len();
        let (phi, g_above, a, b) = (&self.phi[layer - 1], &self.g[layer], &self.a[layer - 1], &self.b[layer]);
        SpikeOrderParameters {
            c_phi: Mat::from_fn(n, n, |i, j| phi[(spikes[i] / k, spikes[j] / k)]),
            c_g: Mat::from_fn(n, n, |i, j| d[i] * d[j] * g_above[(spikes[i], spikes[j])]),
            r_phi: Mat::from_fn(n, n, |i, j| sigma * a[(spikes[i] / k, spikes[j])] / d[j]),
            r_g: Mat::from_fn(n, n, |i, j| sigma * d[i] * b[(spikes[i], spikes[j] / k)] / k as f64),
            spikes,
        }
    }
}

impl SpikeOrderParameters {
    pub fn size(&self) -> usize {
        self.c_phi.nrows()
    }

    /// Rotate onto the joint eigenmodes of C^φ and C^g above `tol`·λ_max (see the module docs).
    pub fn compressed(&self, tol: f64) -> SpikeOrderParameters {
        let q = spike_basis(&self.c_phi, &self.c_g, tol);
        let rot = |x: &Mat<f64>| q.transpose() * x * &q;
        SpikeOrderParameters {
            c_phi: rot(&self.c_phi),
            c_g: rot(&self.c_g),
            r_phi: rot(&self.r_phi),
            r_g: rot(&self.r_g),
            spikes: Vec::new(),
        }
    }

    /// The 2S × 2S matrices (B, C) of the reduction.
    fn blocks(&self) -> (Mat<f64>, Mat<f64>) {
        let s = self.size();
        let block = |r: &Mat<f64>, c: &Mat<f64>| {
            Mat::from_fn(2 * s, 2 * s, |i, j| -match (i < s, j < s) {
                (true, true) => r[(i, j)] + c[(i, j)],
                (true, false) => c[(i, j - s)],
                (false, _) => r[(j % s, i - s)],
            })
        };
        (block(&self.r_phi, &self.c_phi), block(&self.r_g, &self.c_g))
    }

    /// Every outlier of W̃ᵀW̃/N: z = λ + 2 + 1/λ for the real eigenvalues λ > 1 of CB, as
    /// normalized singular values √z, largest first.
    pub fn outliers(&self) -> Vec<f64> {
        if self.size() == 0 {
            return Vec::new();
        }
        let (b, c) = self.blocks();
        let cb = &c * &b;
        let eig = cb.eigenvalues().unwrap_or_default();
        let scale = eig.iter().map(|e| e.norm()).fold(1.0, f64::max);
        let mut out: Vec<f64> = eig
            .into_iter()
            .filter(|e| e.im.abs() <= 1e-9 * scale && e.re > 1.0)
            .map(|e| (e.re + 2.0 + 1.0 / e.re).sqrt())
            .collect();
        out.sort_by(|a, b| b.total_cmp(a));
        out
    }

    /// The 4S × 4S matrix A(z) of eq. (111) at z > 4.
    pub fn matrix_111(&self, z: f64) -> Mat<f64> {
        let s = self.size();
        let g = (z - (z * z - 4.0 * z).sqrt()) / (2.0 * z);
        let (b, c) = self.blocks();
        Mat::from_fn(4 * s, 4 * s, |i, j| {
            let (bi, bj) = (i / (2 * s), j / (2 * s));
            let (ii, jj) = (i % (2 * s), j % (2 * s));
            match (bi, bj) {
                (0, 0) => {
                    if ii == jj {
                        1.0 / g
                    } else {
                        0.0
                    }
                }
                (0, 1) => b[(ii, jj)],
                (1, 0) => c[(ii, jj)],
                _ => {
                    if ii == jj {
                        1.0 - g
                    } else {
                        0.0
                    }
                }
            }
        })
    }
}

/// The outliers of W^ℓ after each update count in `steps` (≤ T), from one compression shared
/// by all of them: the eigenmodes M (n × k) of the full-horizon C^φ and C^g above `tol`·λ_max,
/// restricted to the n_t spikes before t, span C^φ's and C^g's ranges at time t (up to the
/// dropped modes). With M_t those first n_t rows and Q_t = M_t W_t an orthonormal basis of
/// their span (W_t from the eigendecomposition of the Gram matrix M_tᵀM_t), the rotated order
/// parameters are Q_tᵀ X Q_t = W_tᵀ (M_tᵀ X_t M_t) W_t, and Y_t = M_tᵀ X_t M_t grows by the
/// new spikes' rows and columns only: each step costs O(P·n·k + k³) instead of the O(n²·k) of
/// rotating the whole n × n block. `tol = 0` keeps every mode (exact). Returns one list per
/// entry of `steps`, largest first.
pub fn outliers_over_time(sol: &DmftSolution, layer: usize, steps: &[usize], tol: f64) -> Vec<Vec<f64>> {
    let horizon = steps.iter().copied().max().unwrap_or(0).min(sol.problem.steps);
    let full = sol.spike_order_parameters(layer, horizon);
    let modes = [dominant_modes(&full.c_phi, tol), dominant_modes(&full.c_g, tol)];
    let k = modes[0].ncols() + modes[1].ncols();
    let m = Mat::from_fn(full.size(), k, |i, j| {
        if j < modes[0].ncols() { modes[0][(i, j)] } else { modes[1][(i, j - modes[0].ncols())] }
    });
    let q = sol.problem.q();
    let xs = [&full.c_phi, &full.c_g, &full.r_phi, &full.r_g];
    let mut growing = GrowingProjection::new(k);
    let mut order: Vec<usize> = (0..steps.len()).collect();
    order.sort_by_key(|&i| steps[i]);
    let mut out = vec![Vec::new(); steps.len()];
    for i in order {
        let n = full.spikes.iter().take_while(|&&b| b < steps[i].min(horizon) * q).count();
        if n == 0 || k == 0 {
            continue;
        }
        growing.extend_to(&m, &xs, n);
        let [c_phi, c_g, r_phi, r_g] = growing.rotated();
        out[i] = SpikeOrderParameters { c_phi, c_g, r_phi, r_g, spikes: Vec::new() }.outliers();
    }
    out
}

/// `V_k Λ_k^{1/2}` for the eigenmodes of a symmetric PSD matrix C above `tol`·λ_max, like
/// [`super::network::low_rank_sqrt`] but without the full eigendecomposition (which at
/// S = 4816 spikes took 35 s per matrix): a pivoted partial Cholesky factor L stops once every
/// residual diagonal entry is below ε = tol·max_i C_ii / n, so the residual C − LLᵀ (PSD) has
/// norm ≤ its trace ≤ n·ε ≤ tol·λ_max; then Rayleigh–Ritz on span L (Q = qr(L), the eigenpairs
/// of QᵀCQ) gives the modes, cut at tol·λ_max. Cost O(n·k² + n²·k) for k columns.
pub fn dominant_modes(c: &Mat<f64>, tol: f64) -> Mat<f64> {
    let n = c.nrows();
    let mut diag: Vec<f64> = (0..n).map(|i| c[(i, i)]).collect();
    let top = diag.iter().cloned().fold(0.0, f64::max);
    if n == 0 || top <= 0.0 {
        return Mat::zeros(n, 0);
    }
    let eps = tol * top / n as f64;
    let mut l = Mat::<f64>::zeros(n, n.min(64));
    let mut k = 0;
    while k < n {
        let (pivot, d) = diag.iter().enumerate().fold((0, f64::MIN), |b, (i, &d)| if d > b.1 { (i, d) } else { b });
        if d <= eps {
            break;
        }
        if k == l.ncols() {
            let mut wider = Mat::<f64>::zeros(n, (2 * k).min(n));
            wider.as_mut().subcols_mut(0, k).copy_from(&l);
            l = wider;
        }
        // Column k: (C e_p − L L[p, :]ᵀ)/√d.
        let row: Mat<f64> = l.as_ref().submatrix(pivot, 0, 1, k).transpose().to_owned();
        let mut col = Mat::from_fn(n, 1, |i, _| 0.5 * (c[(i, pivot)] + c[(pivot, i)]));
        col -= l.as_ref().subcols(0, k) * &row;
        let scale = 1.0 / d.sqrt();
        for i in 0..n {
            l[(i, k)] = col[(i, 0)] * scale;
            diag[i] -= l[(i, k)] * l[(i, k)];
        }
        diag[pivot] = 0.0;
        k += 1;
    }
    if k == 0 {
        return Mat::zeros(n, 0);
    }
    let q = l.as_ref().subcols(0, k).qr().compute_thin_Q();
    let h = q.transpose() * c * &q;
    let h = Mat::from_fn(k, k, |i, j| 0.5 * (h[(i, j)] + h[(j, i)]));
    let Ok(eig) = h.self_adjoint_eigen(faer::Side::Lower) else { return Mat::zeros(n, 0) };
    let vals: Vec<f64> = (0..k).map(|i| eig.S()[i]).collect();
    let lmax = vals.iter().cloned().fold(0.0, f64::max);
    let keep: Vec<usize> = (0..k).rev().filter(|&i| vals[i] > tol * lmax && vals[i] > 0.0).collect();
    let y = Mat::from_fn(k, keep.len(), |r, j| eig.U()[(r, keep[j])] * vals[keep[j]].sqrt());
    q * y
}

/// Y_X = M_nᵀ X_nn M_n for the four order parameters X and the Gram matrix M_nᵀM_n, for a
/// growing prefix n of the spikes (see [`outliers_over_time`]).
struct GrowingProjection {
    n: usize,
    y: [Mat<f64>; 4],
    gram: Mat<f64>,
}

impl GrowingProjection {
    fn new(k: usize) -> Self {
        GrowingProjection { n: 0, y: std::array::from_fn(|_| Mat::zeros(k, k)), gram: Mat::zeros(k, k) }
    }

    /// Add the spikes o..n (O = 0..o the old ones, N = o..n the new):
    /// Y += (M_Oᵀ X_{O,N}) M_N + M_Nᵀ (X_{N,0..n} M_{0..n}).
    fn extend_to(&mut self, m: &Mat<f64>, xs: &[&Mat<f64>; 4], n: usize) {
        let o = self.n;
        if n <= o {
            return;
        }
        let mn = m.subrows(o, n - o);
        let mo = m.subrows(0, o);
        let mall = m.subrows(0, n);
        for (y, x) in self.y.iter_mut().zip(xs) {
            if o > 0 {
                let left = mo.transpose() * x.submatrix(0, o, o, n - o);
                *y += left * mn;
            }
            let right = x.submatrix(o, 0, n - o, n) * mall;
            *y += mn.transpose() * right;
        }
        self.gram += mn.transpose() * mn;
        self.n = n;
    }

    /// W_tᵀ Y_X W_t for each X, W_t = V Λ^{-1/2} over the Gram eigenmodes above 1e-12·λ_max
    /// (so M_n W_t has orthonormal columns spanning M_n's range).
    fn rotated(&self) -> [Mat<f64>; 4] {
        let k = self.gram.nrows();
        let sym = Mat::from_fn(k, k, |i, j| 0.5 * (self.gram[(i, j)] + self.gram[(j, i)]));
        let Ok(eig) = sym.self_adjoint_eigen(faer::Side::Lower) else {
            return std::array::from_fn(|_| Mat::zeros(0, 0));
        };
        let vals: Vec<f64> = (0..k).map(|i| eig.S()[i]).collect();
        let lmax = vals.iter().cloned().fold(0.0, f64::max);
        let keep: Vec<usize> = (0..k).filter(|&i| vals[i] > 1e-12 * lmax && vals[i] > 0.0).collect();
        let w = Mat::from_fn(k, keep.len(), |r, j| eig.U()[(r, keep[j])] / vals[keep[j]].sqrt());
        std::array::from_fn(|i| w.transpose() * &self.y[i] * &w)
    }
}

/// The first-layer spike strengths at step t (see the module docs): the eigenvalues θ of
/// K^{x+½} K^{h¹}(t, t) K^{x+½} / σ² on the range of K^x (r of them, largest first). Without
/// training every θ is 1.
pub fn first_layer_spikes(kx: &Mat<f64>, kh: &Mat<f64>, sigma2: f64) -> Vec<f64> {
    let p = kx.nrows();
    let Ok(eig) = kx.self_adjoint_eigen(faer::Side::Lower) else { return Vec::new() };
    let lmax = (0..p).map(|i| eig.S()[i]).fold(0.0, f64::max);
    let keep: Vec<usize> = (0..p).filter(|&i| eig.S()[i] > 1e-10 * lmax).collect();
    // Columns u_i/√λ_i of the range: Θ = (U Λ^{-½})ᵀ K^{h¹} (U Λ^{-½}) / σ².
    let w = Mat::from_fn(p, keep.len(), |r, j| eig.U()[(r, keep[j])] / eig.S()[keep[j]].sqrt());
    let theta = w.transpose() * kh * &w * faer::Scale(1.0 / sigma2);
    let sym = Mat::from_fn(theta.nrows(), theta.ncols(), |i, j| 0.5 * (theta[(i, j)] + theta[(j, i)]));
    let mut out: Vec<f64> = sym.self_adjoint_eigenvalues(faer::Side::Lower).unwrap_or_default();
    out.sort_by(|a, b| b.total_cmp(a));
    out
}

/// The outlier singular values of W⁰/(σ√N) for spike strengths θ (from [`first_layer_spikes`])
/// and bulk ratio c = (D − r)/N: the rectangular BBP law
/// ([`super::rmt::rectangular_spike_outlier`]) at spike strength √(θ − 1), i.e.
/// √(θ(θ − 1 + c)/(θ − 1)) for each θ > 1 + √c, largest first; c = 0 (the DMFT limit) gives √θ
/// for θ > 1.
pub fn first_layer_outliers(spikes: &[f64], c: f64) -> Vec<f64> {
    let mut out: Vec<f64> = spikes
        .iter()
        .filter(|&&theta| theta > 1.0)
        .filter_map(|&theta| super::rmt::rectangular_spike_outlier((theta - 1.0).sqrt(), c))
        .collect();
    out.sort_by(|a, b| b.total_cmp(a));
    out
}

/// The outlier singular values of W⁰/(σ√N) at width N for the DMFT's spike strengths θ (N → ∞)
/// with input dimension D and r = rank K^x (see the module docs): each θ through the sample
/// covariance law at ratio r/N, then [`first_layer_outliers`] at c = (D − r)/N; only values
/// above the bulk edge 1 + √(D/N) of the whole matrix count (near the threshold the two steps
/// interact and the composed law is not claimed). Largest first.
pub fn first_layer_outliers_at_width(spikes: &[f64], width: usize, input_dim: usize, rank: usize) -> Vec<f64> {
    let n = width as f64;
    let sampled: Vec<f64> =
        spikes.iter().filter_map(|&theta| super::rmt::sample_covariance_spike(theta, rank as f64 / n)).collect();
    let edge = 1.0 + (input_dim as f64 / n).sqrt();
    let mut out = first_layer_outliers(&sampled, input_dim.saturating_sub(rank) as f64 / n);
    out.retain(|&v| v > edge);
    out
}

impl DmftSolution {
    /// The outliers of W⁰/(σ√N) after t updates in the DMFT limit (N → ∞ at fixed D):
    /// √θ for the first-layer spike strengths θ > 1, largest first. Not for online SGD (empty):
    /// its updates span every sample seen, whose current preactivations the solve does not track.
    pub fn first_layer_outliers(&self, t: usize) -> Vec<f64> {
        let pr = &self.problem;
        if pr.fresh {
            return Vec::new();
        }
        first_layer_outliers(&first_layer_spikes(&pr.kx, &self.h1[t], pr.sigma2), 0.0)
    }
}

/// Orthonormal columns spanning the eigenmodes of `c_phi` and of `c_g` above `tol` times each
/// one's largest eigenvalue.
fn spike_basis(c_phi: &Mat<f64>, c_g: &Mat<f64>, tol: f64) -> Mat<f64> {
    let (a, b) = (dominant_modes(c_phi, tol), dominant_modes(c_g, tol));
    let both =
        Mat::from_fn(
            a.nrows(),
            a.ncols() + b.ncols(),
            |i, j| if j < a.ncols() { a[(i, j)] } else { b[(i, j - a.ncols())] },
        );
    both.qr().compute_thin_Q()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_modes_match_the_full_eigendecomposition() {
        // A random rotation of a spectrum decaying over 12 decades, with low-rank gram
        // structure like the DMFT's C^φ: compare V_kΛ_k^{1/2}V_kᵀ from both routes.
        let n = 240;
        let e = crate::rng::normals(&mut crate::rng::stream(3, crate::rng::Purpose::Analysis, 1), n * n);
        let q = Mat::from_fn(n, n, |i, j| e[i * n + j]).qr().compute_thin_Q();
        let vals: Vec<f64> = (0..n).map(|i| 10f64.powf(-12.0 * i as f64 / n as f64)).collect();
        let c = Mat::from_fn(n, n, |i, j| (0..n).map(|k| q[(i, k)] * vals[k] * q[(j, k)]).sum::<f64>());
        for tol in [1e-3, 1e-6] {
            let (ours, full) = (dominant_modes(&c, tol), crate::theory::network::low_rank_sqrt(&c, tol));
            assert_eq!(ours.ncols(), full.ncols(), "modes kept at tol {tol}");
            assert!(ours.ncols() > 5 && ours.ncols() < 3 * n / 4);
            let gap = (&ours * ours.transpose() - &full * full.transpose()).norm_max();
            assert!(gap < 1e-2 * tol, "tol {tol}: reconstructions differ by {gap:e}");
        }
    }

    #[test]
    fn first_layer_law_closed_form_threshold_and_limit() {
        // √(θ(θ − 1 + c)/(θ − 1)) above θ = 1 + √c, nothing below.
        for c in [0.0, 0.01, 0.3] {
            for theta in [1.05, 1.3, 2.0, 5.0] {
                let ours = first_layer_outliers(&[theta], c);
                let above = theta > 1.0 + f64::sqrt(c);
                assert_eq!(ours.len(), above as usize, "θ = {theta}, c = {c}");
                if above {
                    let want = (theta * (theta - 1.0 + c) / (theta - 1.0)).sqrt();
                    assert!((ours[0] - want).abs() < 1e-12, "θ = {theta}, c = {c}: {} vs {want}", ours[0]);
                }
            }
        }
        // The DMFT limit: √θ; at the threshold θ = 1 + √c the outlier meets the edge 1 + √c.
        assert!((first_layer_outliers(&[2.25], 0.0)[0] - 1.5).abs() < 1e-12);
        let c: f64 = 0.2;
        let at = first_layer_outliers(&[1.0 + c.sqrt() + 1e-9], c)[0];
        assert!((at - (1.0 + c.sqrt())).abs() < 1e-4, "{at}");
    }

    #[test]
    fn first_layer_outlier_solves_the_secular_equation() {
        // Appended columns of Gram Θ on an N × (D − r) Gaussian Z (entries 1/N): λ is an
        // outlier eigenvalue of WᵀW exactly when det(I − g(λ)Θ) = 0, g(z) = (1/N)tr(z − ZZᵀ)⁻¹
        // = (1 − c)/z + c∫ρ_MP(x)/(z − x)dx. Here g by quadrature of the MP density and the root
        // by bisection, against the closed form.
        use crate::theory::rmt::{MarchenkoPastur, bisect, gauss_legendre};
        let c = 0.25;
        let mp = MarchenkoPastur::new(c);
        let (a, b) = mp.edges();
        let g = |z: f64| {
            // x = a + (b − a)(1 − cos φ)/2 smooths the square-root edges.
            let integrand = |phi: f64| {
                let x = a + (b - a) * (1.0 - phi.cos()) / 2.0;
                mp.density(x) / (z - x) * (b - a) * phi.sin() / 2.0
            };
            (1.0 - c) / z + c * gauss_legendre(integrand, 0.0, std::f64::consts::PI)
        };
        let thetas = [4.0, 2.2, 1.7, 1.2];
        let closed = first_layer_outliers(&thetas, c);
        assert_eq!(closed.len(), 3, "θ = 1.2 is below 1 + √c = 1.5: {closed:?}");
        for (theta, s) in thetas.iter().zip(&closed) {
            let root = bisect(|z| g(z) - 1.0 / theta, b + 1e-9, 100.0);
            assert!((root.sqrt() - s).abs() < 1e-8, "θ = {theta}: secular root √{root} vs closed form {s}");
        }
    }

    #[test]
    fn independent_spike_is_classical_bbp() {
        // One spike U = θ·√N û, V = √N v̂ with no responses: outlier (1 + θ²)/θ.
        let theta: f64 = 1.7;
        let op = SpikeOrderParameters {
            c_phi: Mat::from_fn(1, 1, |_, _| 1.0),
            c_g: Mat::from_fn(1, 1, |_, _| theta * theta),
            r_phi: Mat::zeros(1, 1),
            r_g: Mat::zeros(1, 1),
            spikes: vec![0],
        };
        let out = op.outliers();
        assert!((out[0] - (1.0 + theta * theta) / theta).abs() < 1e-12, "{out:?}");
        // And A(z) is singular there.
        let z = out[0] * out[0];
        let smin = *op.matrix_111(z).singular_values().unwrap().last().unwrap();
        assert!(smin < 1e-10, "σ_min = {smin}");
    }
}
