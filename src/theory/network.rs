//! Infinite-width DMFT of a deep μP network trained by gradient descent (full batch, or SGD on
//! a given sequence of minibatches)
//! (theory map T6; tutorial §8, eqs. 75–86; Bordelon & Pehlevan 2022; paper App. D).
//!
//! **Network** (eq. 75): h¹ = W⁰x/√D, h^{ℓ+1} = W^ℓφ(h^ℓ)/√N, f_c = w_c·φ(h^L)/(γN) for
//! C = O(1) outputs c, weights N(0, σ²), loss L = (1/2P)Σ_{μ,c}(f_{μc} − y_{μc})²,
//! Δ_{μc} = (y_{μc} − f_{μc})/P, rate η = η₀γ²N (eq. 76).
//! Super-index a = (t, μ), t = 0..=T (the weights after t updates), stored as a = tP + μ; the
//! backward fields carry the output too, a' = (a, c) stored as a' = aC + c (with one output
//! a' = a, and every formula below is the paper's).
//!
//! **Single-site process of hidden layer ℓ** (eqs. 77–84 written out by the cavity method for
//! discrete-time gradient descent; the factors are this crate's normalization, checked against
//! trained networks in `tests/theory_network.rs`):
//!
//! ```text
//! h_a = u_a + Σ_{b': t_b'<t_a} K_h[a,b'] g_b',   K_h[a,b'] = σ²A^{ℓ−1}_{ab'} + η₀γ Δ_b' Φ^{ℓ−1}_{ab}          u ~ N(0, σ²Φ^{ℓ−1})
//! z_a' = r_a' + Σ_{b: t_b≤t_a'} K_z[a',b] φ_b,   K_z[a',b] = σ²B^ℓ_{a'b} + [t_b<t_a'] η₀γ Σ_c Δ_(b,c) G^{ℓ+1}_{a',(b,c)}   r ~ N(0, σ²G^{ℓ+1})
//! φ_a = φ(h_a),   g_(a,c) = φ'(h_a) z_(a,c)
//! Φ^ℓ = ⟨φφᵀ⟩ (S × S),  G^ℓ = ⟨ggᵀ⟩ (SC × SC),  A^ℓ = ⟨∂φ/∂r⟩ (S × SC),  B^{ℓ−1} = ⟨∂g/∂u⟩ (SC × S)   (R^φ, R^g of eq. 84)
//! ```
//!
//! (b' = (b, c) a backward super-index, b its forward one) with Φ⁰ = K^x = xxᵀ/D (constant in
//! time, A⁰ = 0: x does not depend on W⁰), and for ℓ = L the field z_(a,c) is the readout
//! weight w_c(t) itself: G^{L+1}_{(a,c),(b,c')} = δ_cc', B^L = 0, r_(a,c) = w_c(0) for every a.
//! The output f_(a,c) = (1/γ)⟨w_c(t_a)φ^L_a⟩ splits into the learned part
//! η₀Σ_{t_b<t_a}Δ_(b,c)Φ^L_{ab} and ⟨w_c(0)φ_a⟩ = σ²⟨dφ_a/dw_c(0)⟩ by Stein's lemma (eq. 85),
//! which keeps the O(γ) signal out of O(1) sampling noise. Several outputs enter only through
//! the backward index: the readouts w_c are independent at initialization, so at γ → 0 each
//! output follows kernel regression with the same NTK, and the hidden layers learn from the
//! sum Σ_c Δ_c w_c of their error signals.
//!
//! **Solved by marching in time, not by iteration.** Every coupling is causal: h(t) needs g
//! before t; z(t) needs φ up to t; A^{ℓ−1}(t, ·) needs layer ℓ−1 up to t; B^ℓ(t, ·) needs layer
//! ℓ+1's g(t); f(t) needs Δ before t. So at each step t the layers are advanced bottom-up on the
//! h side (φ(t), Φ(t, ·), A(t, ·)), then f(t) and Δ(t), then top-down on the z side (g(t),
//! G(t, ·), B(t, ·)), and the order parameters of step t are final once computed. The damped
//! whole-horizon fixed-point iteration of the published solvers is a Picard iteration on this
//! causal system; its transients grow like (cT)^k/k! before they decay, and at γ₀ ≳ 1 over
//! T ≳ 50 steps it did not converge in our trials, while marching is exact in one pass.
//!
//! **Sampling causally.** The Gaussian sources must be drawn consistently with covariances that
//! are only known up to the current step. With M samples, u^ℓ_i(t) = σ/√M Σ_j ξ_ij φ^{ℓ−1}_j(t)
//! with a fixed Gaussian M × M matrix ξ is, given layer ℓ−1's samples, exactly Gaussian with
//! covariance σ²Φ̂^{ℓ−1} (the sample estimate) jointly over all times, and it is available at step t
//! (likewise r^ℓ from g^{ℓ+1} with an independent ξ'). The first layer's u = σ K^{x 1/2} ε and
//! the readout's w(0) are fixed draws.
//!
//! **Responses: averaged derivatives, by reverse mode.** A(t, ·) and B(t, ·) are the sample
//! averages of the Jacobian of φ(t) (g(t)) with respect to the sources r (u), obtained by an
//! adjoint sweep from step t back to 0 through the linearized process (coefficients φ'(h) and
//! φ''(h)z of each sample), over `response_samples` samples. Derivatives rather than Stein's
//! lemma ⟨φ rᵀ⟩C_r⁺: the Stein estimate carries O(1/√M) noise that C_r⁺ amplifies in weak modes,
//! while a derivative's noise scales with the response itself. The Stein term of f uses
//! forward-mode tangents along w(0) on all M samples (one direction, cheap).
//!
//! **Cost and the savings.** The sweeps cost ≈ 2·M_r·P³·T³/3 flops per response kind — a
//! per-sample Jacobian is a block-triangular solve of size S = P(T + 1), so no marching order
//! avoids the T³ — and dominate at long horizons. Three things make them cheap: (1) a control
//! variate ([`response_rows`]) removes the first-order noise of the response samples' mean
//! coefficients, which is most of it: 10 response samples then give the error bars that 100
//! plain ones do (`results/dmft-responses/`); (2) the sweep runs as a blocked triangular solve
//! ([`SWEEP_BLOCK`]); (3) it and the sampled fields are in f32 (their Monte-Carlo error is
//! ~1e-2, f32's rounding ~1e-7; the order parameters stay f64). With C outputs the backward
//! index is C times longer, so the sweeps cost about C² times as much and G takes C² times the
//! memory (`results/dmft-compare-outputs3`: C = 3, T = 60 in 49 s with six comparisons).
//!
//! **Linear φ** makes the process Gaussian with sample-independent coefficients: the adjoint
//! rows are the exact linear maps from the sources, and Φ = J_u C_u J_uᵀ + J_r C_r J_rᵀ exactly
//! (no sampling), the reference the Monte-Carlo path is tested against.
//!
//! **Monte-Carlo error**: `replicas` independent solves; the solution is their mean and the
//! loss carries the standard error of that mean. Statistics that are nonlinear in the order
//! parameters (the outliers) are computed on every replica too ([`solve_replicas`]); their
//! spread over the replicas divided by √R is the standard error of the mean solution's value.

use super::activation::Activation;
use crate::rng::{Purpose, normals, stream};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// The training problem the DMFT describes.
#[derive(Clone, Debug)]
pub struct MupProblem {
    /// Hidden layers L.
    pub depth: usize,
    pub activation: Activation,
    /// γ (γ₀ in μP).
    pub gamma: f64,
    pub eta0: f64,
    /// Initial weight variance σ².
    pub sigma2: f64,
    /// Number of updates T (times 0..=T).
    pub steps: usize,
    /// Input kernel K^x_{μν} = x_μ·x_ν/D over the samples (P of them; (T + 1)·P when `fresh`).
    pub kx: Mat<f64>,
    /// Targets y_{μc} over the same samples, row-major (sample μ, output c).
    pub y: Vec<f64>,
    /// Outputs C (O(1)).
    pub outputs: usize,
    /// Minibatch SGD: the training samples of each step 0..=T (None: full batch). A step's
    /// error signal is Δ_{μc} = (y_{μc} − f_{μc})/B on its batch and 0 elsewhere.
    pub batches: Option<Vec<Vec<usize>>>,
    /// Online SGD (paper App. D): every step trains on P fresh samples, so the super-index
    /// a = tP + μ is its own sample a (K^x and y over all (T + 1)·P of them). A sample lives
    /// only at its step, which is all the dynamics needs: its fields enter the kernels of later
    /// steps through its own step's spike only.
    pub fresh: bool,
}

/// Solver settings.
#[derive(Clone, Debug)]
pub struct DmftOptions {
    /// Monte-Carlo samples M of each layer's single-site process.
    pub samples: usize,
    /// Samples whose Jacobians give the response functions (their averages are low-variance);
    /// 0: [`DmftOptions::response_samples_for`] picks it from the horizon.
    pub response_samples: usize,
    /// Independent solves averaged; their spread gives the Monte-Carlo error bars.
    pub replicas: usize,
    pub seed: u64,
    /// Solve linear φ exactly (false: by Monte Carlo, to test the sampler).
    pub exact_linear: bool,
    /// How the response samples' Jacobians become the response functions ([`response_rows`]).
    pub responses: ResponseEstimator,
}

/// Estimators of the response functions from n response samples ([`response_rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseEstimator {
    /// The plain average of the n samples' Jacobians.
    Plain,
    /// The first-order control variate: bias O(1/n).
    Control,
    /// The control variate with its O(1/n) bias removed by a Richardson step on two halves of
    /// the n samples: bias O(1/n²) + O(1/M).
    Debiased,
}

impl ResponseEstimator {
    pub const NAMES: [&'static str; 3] = ["plain", "control", "debiased"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Plain, Self::Control, Self::Debiased].into_iter().find(|e| e.name() == name)
    }
}

impl Default for DmftOptions {
    fn default() -> Self {
        DmftOptions {
            samples: 2000,
            response_samples: 200,
            replicas: 1,
            seed: 0,
            exact_linear: true,
            responses: ResponseEstimator::Debiased,
        }
    }
}

impl DmftOptions {
    /// The response samples a solve of T steps uses: `response_samples`, or when that is 0,
    /// max(M/100, 10, ⌈2T/15⌉) (at most M). With the control variate 10 suffice at T = 80
    /// (`results/dmft-responses/`); the response samples' noise grows with the horizon: at
    /// T = 300, solves on the same 1000 samples with n = 10, 20, 40 put W²'s top outlier at
    /// 2.567, 2.513, 2.613, while the two control variates at equal n differ by ≤ 0.01
    /// (`results/dmft-responses-T300/`).
    pub fn response_samples_for(&self, steps: usize) -> usize {
        let n = match self.response_samples {
            0 => (self.samples / 100).max(10).max((2 * steps).div_ceil(15)),
            n => n,
        };
        n.clamp(1, self.samples.max(2))
    }
}

/// Order parameters of every hidden layer and the output, over super-indices.
#[derive(Clone, Debug)]
pub struct DmftSolution {
    pub problem: MupProblem,
    /// Φ^ℓ for ℓ = 1..=L (index ℓ−1), S × S.
    pub phi: Vec<Mat<f64>>,
    /// G^ℓ for ℓ = 1..=L (index ℓ−1), SC × SC over backward super-indices.
    pub g: Vec<Mat<f64>>,
    /// A^ℓ = ⟨∂φ^ℓ/∂r^ℓ⟩ for ℓ = 1..=L (index ℓ−1), S × SC, strictly causal.
    pub a: Vec<Mat<f64>>,
    /// B^ℓ = ⟨∂g^{ℓ+1}/∂u^{ℓ+1}⟩ for ℓ = 0..L (index ℓ; B⁰ is not needed and left zero), SC × S.
    pub b: Vec<Mat<f64>>,
    /// Outputs f[t][μC + c].
    pub f: Vec<Vec<f64>>,
    /// K^{h¹}(t, t) = ⟨h¹(t)h¹(t)ᵀ⟩ for t = 0..=T (P × P each): the first-layer preactivation
    /// kernel that fixes the outliers of W⁰ ([`super::weight_outliers::first_layer_outliers`]).
    pub h1: Vec<Mat<f64>>,
    /// Standard error of the train loss at each time over the replicas (0 when exact, NaN with
    /// one replica).
    pub loss_stderr: Vec<f64>,
    /// Replicas averaged (0 for the exact linear solve).
    pub replicas: usize,
}

impl MupProblem {
    /// Samples per step (the super-index width P).
    pub fn p(&self) -> usize {
        let samples = self.y.len() / self.outputs;
        if self.fresh { samples / (self.steps + 1) } else { samples }
    }

    /// Backward super-indices per step, P·C.
    pub fn q(&self) -> usize {
        self.p() * self.outputs
    }

    /// The sample at super-index a = tP + μ.
    pub fn sample(&self, a: usize) -> usize {
        if self.fresh { a } else { a % self.p() }
    }

    /// K^x between the samples of super-indices a and b.
    pub fn kx_between(&self, a: usize, b: usize) -> f64 {
        self.kx[(self.sample(a), self.sample(b))]
    }

    /// The P × P block of K^x among the samples of step t.
    pub fn kx_at(&self, t: usize) -> Mat<f64> {
        let p = self.p();
        Mat::from_fn(p, p, |i, j| self.kx_between(t * p + i, t * p + j))
    }
    pub fn times(&self) -> usize {
        self.steps + 1
    }
    /// Forward super-indices S = P(T + 1).
    pub fn size(&self) -> usize {
        self.p() * self.times()
    }

    /// Backward super-indices SC.
    pub fn backward_size(&self) -> usize {
        self.q() * self.times()
    }

    /// The samples step t trains on (all P for full-batch gradient descent).
    pub fn batch(&self, t: usize) -> Vec<usize> {
        match &self.batches {
            Some(b) => b[t].clone(),
            None => (0..self.p()).collect(),
        }
    }

    /// The target of output c at super-index a.
    fn target(&self, a: usize, c: usize) -> f64 {
        self.y[self.sample(a) * self.outputs + c]
    }

    /// The loss the run logs at step t, from the outputs f[μC + c] of the step's P samples:
    /// (1/2B)Σ_{μ ∈ batch(t)}Σ_c(f_{μc} − y_{μc})² (B = P full-batch).
    pub fn step_loss(&self, t: usize, f: &[f64]) -> f64 {
        let (batch, p, k) = (self.batch(t), self.p(), self.outputs);
        let sum: f64 = batch
            .iter()
            .flat_map(|&m| (0..k).map(move |c| (m, c)))
            .map(|(m, c)| (f[m * k + c] - self.target(t * p + m, c)).powi(2))
            .sum();
        sum / (2.0 * batch.len() as f64)
    }

    /// The error signal of step t: Δ_{μc} = (y_{μc} − f_{μc})/B on the batch, 0 elsewhere
    /// (P·C values, index μC + c).
    pub fn error_signal(&self, t: usize, f: &[f64]) -> Vec<f64> {
        let (batch, p, k) = (self.batch(t), self.p(), self.outputs);
        let mut d = vec![0.0; p * k];
        for &m in &batch {
            for c in 0..k {
                d[m * k + c] = (self.target(t * p + m, c) - f[m * k + c]) / batch.len() as f64;
            }
        }
        d
    }
}

impl DmftSolution {
    /// Train loss L(t) = (1/2B)Σ_{μ ∈ batch(t)}(f_μ(t) − y_μ)², as the run logs it.
    pub fn loss(&self) -> Vec<f64> {
        self.f.iter().enumerate().map(|(t, ft)| self.problem.step_loss(t, ft)).collect()
    }

    /// Δ over backward super-indices a' = (tP + μ)C + c (see [`MupProblem::error_signal`]).
    pub fn delta(&self) -> Vec<f64> {
        self.f.iter().enumerate().flat_map(|(t, ft)| self.problem.error_signal(t, ft)).collect()
    }

    /// The P × P block of Φ^ℓ at equal times t.
    pub fn phi_at(&self, layer: usize, t: usize) -> Mat<f64> {
        equal_time(&self.phi[layer - 1], self.problem.p(), t)
    }

    /// The PC × PC block of G^ℓ at equal times t (index μC + c).
    pub fn g_at(&self, layer: usize, t: usize) -> Mat<f64> {
        equal_time(&self.g[layer - 1], self.problem.q(), t)
    }

    /// The neural tangent kernel at step t (eq. 86 with the current kernels), PC × PC over
    /// (μ, c): K_{(μc),(νc')} = Σ_{ℓ=0}^{L} G^{ℓ+1}_{(μc),(νc')} Φ^ℓ_{μν}, G^{L+1} = δ_cc',
    /// Φ⁰ = K^x.
    pub fn ntk_at(&self, t: usize) -> Mat<f64> {
        let pr = &self.problem;
        let (q, k) = (pr.q(), pr.outputs);
        let phis: Vec<Mat<f64>> =
            std::iter::once(pr.kx_at(t)).chain((1..=pr.depth).map(|l| self.phi_at(l, t))).collect();
        let gs: Vec<Mat<f64>> = (1..=pr.depth)
            .map(|l| self.g_at(l, t))
            .chain(std::iter::once(Mat::from_fn(q, q, |i, j| if i % k == j % k { 1.0 } else { 0.0 })))
            .collect();
        Mat::from_fn(q, q, |i, j| phis.iter().zip(&gs).map(|(f, g)| f[(i / k, j / k)] * g[(i, j)]).sum())
    }
}

fn equal_time(m: &Mat<f64>, p: usize, t: usize) -> Mat<f64> {
    Mat::from_fn(p, p, |i, j| m[(t * p + i, t * p + j)])
}

/// `V_k Λ_k^{1/2}` for the eigenmodes of a symmetric PSD matrix above `tol`·λ_max (n × k).
pub fn low_rank_sqrt(c: &Mat<f64>, tol: f64) -> Mat<f64> {
    let n = c.nrows();
    let sym = Mat::from_fn(n, n, |i, j| 0.5 * (c[(i, j)] + c[(j, i)]));
    let Ok(eig) = sym.self_adjoint_eigen(faer::Side::Lower) else { return Mat::zeros(n, 0) };
    let vals: Vec<f64> = (0..n).map(|i| eig.S()[i]).collect();
    let lmax = vals.iter().cloned().fold(0.0, f64::max);
    let keep: Vec<usize> = (0..n).rev().filter(|&i| vals[i] > tol * lmax && vals[i] > 0.0).collect();
    Mat::from_fn(n, keep.len(), |r, j| eig.U()[(r, keep[j])] * vals[keep[j]].sqrt())
}

/// The lazy-limit kernels at initialization (tutorial eq. 86; P × P each): Φ^ℓ for ℓ = 0..=L
/// (Φ⁰ = K^x), G^ℓ for ℓ = 1..=L+1 (index ℓ−1, G^{L+1} ≡ 1), and the NTK Σ_ℓ G^{ℓ+1} ⊙ Φ^ℓ.
/// Computed by the layer recursion Φ^ℓ = ⟨φ(u)φ(u)ᵀ⟩, G^ℓ = σ²G^{ℓ+1} ⊙ ⟨φ'(u)φ'(u)ᵀ⟩ with
/// u ~ N(0, σ²Φ^{ℓ−1}) over `samples` Gaussian draws (exact for linear φ): an independent route
/// to the γ → 0 limit of the DMFT. For a fixed dataset (not `fresh`): the kernels are over its P
/// samples.
pub struct InitialKernels {
    pub phi: Vec<Mat<f64>>,
    pub g: Vec<Mat<f64>>,
    pub ntk: Mat<f64>,
}

impl InitialKernels {
    pub fn new(pr: &MupProblem, samples: usize, seed: u64) -> Self {
        let (p, l, s2) = (pr.p(), pr.depth, pr.sigma2);
        let mut phi = vec![pr.kx.clone()];
        let mut dphi = Vec::new();
        for layer in 1..=l {
            let cov = &phi[layer - 1] * faer::Scale(s2);
            let (m1, m2) = gaussian_moments(pr.activation, &cov, samples, seed.wrapping_add(layer as u64));
            phi.push(m1);
            dphi.push(m2);
        }
        let mut g = vec![Mat::from_fn(p, p, |_, _| 1.0)];
        for layer in (1..=l).rev() {
            let above = g[0].clone();
            g.insert(0, Mat::from_fn(p, p, |i, j| s2 * above[(i, j)] * dphi[layer - 1][(i, j)]));
        }
        let ntk = Mat::from_fn(p, p, |i, j| (0..=l).map(|k| g[k][(i, j)] * phi[k][(i, j)]).sum());
        InitialKernels { phi, g, ntk }
    }

    /// Outputs of kernel gradient descent with this NTK: f_c(t+1) = f_c(t) + η₀ K Δ_c(t),
    /// f(0) = 0, Δ(t) the step's error signal (minibatches included): the γ → 0 limit of the
    /// DMFT (the initial NTK is δ_cc' K: the readouts are independent, so each output regresses
    /// on its own). Values f[t][μC + c].
    pub fn lazy_outputs(&self, pr: &MupProblem) -> Vec<Vec<f64>> {
        let (p, k) = (pr.p(), pr.outputs);
        let mut f = vec![vec![0.0; p * k]];
        for t in 0..pr.steps {
            let d = pr.error_signal(t, &f[t]);
            let next = (0..p * k).map(|i| {
                let (mu, c) = (i / k, i % k);
                f[t][i] + pr.eta0 * (0..p).map(|nu| self.ntk[(mu, nu)] * d[nu * k + c]).sum::<f64>()
            });
            f.push(next.collect());
        }
        f
    }
}

/// ⟨φ(h)φ(h)ᵀ⟩ and ⟨φ'(h)φ'(h)ᵀ⟩ for h ~ N(0, cov) (exact for linear φ).
fn gaussian_moments(act: Activation, cov: &Mat<f64>, samples: usize, seed: u64) -> (Mat<f64>, Mat<f64>) {
    let p = cov.nrows();
    if act == Activation::Linear {
        return (cov.clone(), Mat::from_fn(p, p, |_, _| 1.0));
    }
    let l = low_rank_sqrt(cov, 1e-12);
    let k = l.ncols();
    let e = normals(&mut stream(seed, Purpose::Analysis, 50), samples * k);
    let h = Mat::from_fn(samples, k, |i, j| e[i * k + j]) * l.transpose();
    let f = Mat::from_fn(samples, p, |i, j| act.eval(h[(i, j)]));
    let d = Mat::from_fn(samples, p, |i, j| act.derivative(h[(i, j)]));
    let inv = 1.0 / samples as f64;
    (f.transpose() * &f * faer::Scale(inv), d.transpose() * &d * faer::Scale(inv))
}

/// Solve the DMFT (see the module docs).
pub fn solve(problem: &MupProblem, opts: &DmftOptions) -> DmftSolution {
    solve_with_progress(problem, opts, &mut |_| {})
}

/// [`solve`], calling `progress(done)` after each of the `replicas · (T + 1)` steps.
pub fn solve_with_progress(pr: &MupProblem, opts: &DmftOptions, progress: &mut dyn FnMut(usize)) -> DmftSolution {
    solve_replicas(pr, opts, progress, &mut |_| {})
}

/// [`solve_with_progress`], also handing each replica's own solution to `each` before it is
/// averaged in: a statistic computed per replica has the Monte-Carlo standard error
/// sd/√R, which by the delta method is also the error of that statistic of the mean solution.
pub fn solve_replicas(
    pr: &MupProblem,
    opts: &DmftOptions,
    progress: &mut dyn FnMut(usize),
    each: &mut dyn FnMut(&DmftSolution),
) -> DmftSolution {
    let exact = pr.activation == Activation::Linear && opts.exact_linear;
    let replicas = if exact { 1 } else { opts.replicas.max(1) };
    let mut mean: Option<OrderParameters> = None;
    let mut losses: Vec<Vec<f64>> = Vec::new();
    let mut done = 0;
    for k in 0..replicas {
        let seed = opts.seed.wrapping_add(1_000_003 * k as u64);
        let one = Marcher::new(pr, opts, seed, exact).run(&mut |_| {
            done += 1;
            progress(done)
        });
        losses.push(one.f.iter().enumerate().map(|(t, ft)| pr.step_loss(t, ft)).collect());
        let mean_so_far = mean.map(|acc| acc.add(&one));
        let sol = DmftSolution {
            problem: pr.clone(),
            phi: one.phi,
            g: one.g,
            a: one.a,
            b: one.b,
            f: one.f,
            h1: one.h1,
            loss_stderr: vec![if exact { 0.0 } else { f64::NAN }; pr.times()],
            replicas: if exact { 0 } else { 1 },
        };
        each(&sol);
        let one = OrderParameters { phi: sol.phi, g: sol.g, a: sol.a, b: sol.b, f: sol.f, h1: sol.h1 };
        mean = Some(mean_so_far.unwrap_or(one));
    }
    let op = mean.expect("at least one replica").scaled(1.0 / replicas as f64);
    let loss_stderr = (0..pr.times())
        .map(|t| match replicas {
            1 if exact => 0.0,
            1 => f64::NAN,
            r => {
                let mean = losses.iter().map(|l| l[t]).sum::<f64>() / r as f64;
                let var = losses.iter().map(|l| (l[t] - mean).powi(2)).sum::<f64>() / (r - 1) as f64;
                (var / r as f64).sqrt()
            }
        })
        .collect();
    DmftSolution {
        problem: pr.clone(),
        phi: op.phi,
        g: op.g,
        a: op.a,
        b: op.b,
        f: op.f,
        h1: op.h1,
        loss_stderr,
        replicas: if exact { 0 } else { replicas },
    }
}

/// Order parameters, filled in step by step.
struct OrderParameters {
    phi: Vec<Mat<f64>>,
    g: Vec<Mat<f64>>,
    a: Vec<Mat<f64>>,
    b: Vec<Mat<f64>>,
    f: Vec<Vec<f64>>,
    h1: Vec<Mat<f64>>,
}

impl OrderParameters {
    fn add(self, o: &OrderParameters) -> OrderParameters {
        let sum = |x: Vec<Mat<f64>>, y: &[Mat<f64>]| x.into_iter().zip(y).map(|(a, b)| a + b).collect();
        OrderParameters {
            phi: sum(self.phi, &o.phi),
            g: sum(self.g, &o.g),
            a: sum(self.a, &o.a),
            b: sum(self.b, &o.b),
            f: self.f.iter().zip(&o.f).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x + y).collect()).collect(),
            h1: sum(self.h1, &o.h1),
        }
    }

    fn scaled(self, c: f64) -> OrderParameters {
        let sc = |x: Vec<Mat<f64>>| x.into_iter().map(|a| a * faer::Scale(c)).collect();
        OrderParameters {
            phi: sc(self.phi),
            g: sc(self.g),
            a: sc(self.a),
            b: sc(self.b),
            f: self.f.into_iter().map(|ft| ft.into_iter().map(|v| v * c).collect()).collect(),
            h1: sc(self.h1),
        }
    }
}

/// One layer's single-site process so far.
enum Fields {
    /// Monte-Carlo samples (rows) over super-indices (columns): φ and φ'(h) over the S forward
    /// ones, g and φ''(h)z (φ''(h) until z is known) over the SC backward ones. Stored in f32:
    /// their sampling error (1/√M) is four orders above f32's rounding, and the products over
    /// them are bound by memory traffic.
    Sampled { phi: Mat<f32>, g: Mat<f32>, d1: Mat<f32>, curv: Mat<f32> },
    /// Linear φ: the exact Jacobians of φ and g with respect to the sources u and r (S × S,
    /// S × SC, SC × S, SC × SC).
    Exact { phi_u: Mat<f64>, phi_r: Mat<f64>, g_u: Mat<f64>, g_r: Mat<f64> },
}

/// The fixed Gaussian draws of one Monte-Carlo solve.
struct Sources {
    /// First layer: u = σ K^{x 1/2} ε, the same at every step (M × P).
    u1: Mat<f32>,
    /// Readout weights at initialization w_c(0) ~ N(0, σ²) (M × C).
    w0: Mat<f32>,
    /// σ/√M · ξ (M × M) mixing layer ℓ−1's φ into u^ℓ, for ℓ = 2..=L (index ℓ−1).
    mix_u: Vec<Option<Mat<f32>>>,
    /// σ/√M · ξ' mixing layer ℓ+1's g into r^ℓ, for ℓ = 1..L (index ℓ−1).
    mix_r: Vec<Option<Mat<f32>>>,
}

/// Forward-mode tangents of the readout layer along one readout w_c(0), for the Stein term of
/// f_c (M × S, M × SC).
struct ReadoutTangent {
    dphi: Mat<f32>,
    dg: Mat<f32>,
    /// ∂h/∂w_c(0) at the current step (M × P).
    dh: Mat<f32>,
}

/// Which quantity at step t the responses are of.
#[derive(Clone, Copy, PartialEq)]
enum Seed {
    Phi,
    G,
}

fn par(flops: usize) -> Par {
    if flops > 1 << 20 { Par::rayon(0) } else { Par::Seq }
}

/// `out (+)= x · yᵀ · alpha`.
fn gemm_nt<E: faer::traits::ComplexField>(
    out: MatMut<'_, E>,
    accum: Accum,
    x: MatRef<'_, E>,
    y: MatRef<'_, E>,
    alpha: E,
) {
    let flops = out.nrows() * out.ncols() * x.ncols();
    matmul(out, accum, x, y.transpose(), alpha, par(flops));
}

/// The means over all M samples of a layer's linearized-process coefficients: φ'(h) over the
/// forward super-indices, φ''(h)z over the backward ones (the control variate of
/// [`response_rows`]).
#[derive(Clone)]
struct CoefMeans {
    d1: Vec<f32>,
    curv: Vec<f32>,
}

/// The time-marching solver of one replica.
struct Marcher<'a> {
    pr: &'a MupProblem,
    op: OrderParameters,
    /// Δ over backward super-indices (filled up to the current step).
    delta: Vec<f64>,
    /// K_h (S × SC) and K_z (SC × S) of every layer, filled row block by row block.
    kh: Vec<Mat<f64>>,
    kz: Vec<Mat<f64>>,
    /// f32 copies of K_h and K_z for the Monte-Carlo adjoint sweeps (empty when exact).
    kh32: Vec<Mat<f32>>,
    kz32: Vec<Mat<f32>>,
    /// Per layer, the coefficient means of the control variate (empty when exact).
    coef_mean: Vec<CoefMeans>,
    fields: Vec<Fields>,
    sources: Option<Sources>,
    /// One per output (empty when exact).
    tangents: Vec<ReadoutTangent>,
    response_samples: usize,
    responses: ResponseEstimator,
}

impl<'a> Marcher<'a> {
    fn new(pr: &'a MupProblem, opts: &DmftOptions, seed: u64, exact: bool) -> Self {
        let (s, sg, l, p, m, k) = (pr.size(), pr.backward_size(), pr.depth, pr.p(), opts.samples.max(2), pr.outputs);
        let zeros = |r: usize, c: usize| Mat::<f64>::zeros(r, c);
        let zeros32 = |r: usize, c: usize| Mat::<f32>::zeros(r, c);
        let fields = (0..l)
            .map(|_| match exact {
                true => {
                    Fields::Exact { phi_u: zeros(s, s), phi_r: zeros(s, sg), g_u: zeros(sg, s), g_r: zeros(sg, sg) }
                }
                false => {
                    Fields::Sampled { phi: zeros32(m, s), g: zeros32(m, sg), d1: zeros32(m, s), curv: zeros32(m, sg) }
                }
            })
            .collect();
        let sigma = pr.sigma2.sqrt();
        let gaussian = |index: u64, rows: usize, cols: usize, scale: f64| {
            let e = normals(&mut stream(seed, Purpose::Analysis, 1000 + index), rows * cols);
            Mat::from_fn(rows, cols, |i, j| (scale * e[i * cols + j]) as f32)
        };
        let sources = (!exact).then(|| {
            let root = low_rank_sqrt(&pr.kx, 1e-12);
            Sources {
                u1: gaussian(0, m, root.ncols(), sigma) * single(&root).transpose(),
                w0: gaussian(1, m, k, sigma),
                mix_u: (1..=l)
                    .map(|j| (j > 1).then(|| gaussian(10 + j as u64, m, m, sigma / (m as f64).sqrt())))
                    .collect(),
                mix_r: (1..=l)
                    .map(|j| (j < l).then(|| gaussian(20 + j as u64, m, m, sigma / (m as f64).sqrt())))
                    .collect(),
            }
        });
        let tangents = match exact {
            true => Vec::new(),
            false => {
                (0..k).map(|_| ReadoutTangent { dphi: zeros32(m, s), dg: zeros32(m, sg), dh: zeros32(m, p) }).collect()
            }
        };
        Marcher {
            pr,
            op: OrderParameters {
                phi: (0..l).map(|_| zeros(s, s)).collect(),
                g: (0..l).map(|_| zeros(sg, sg)).collect(),
                a: (0..l).map(|_| zeros(s, sg)).collect(),
                b: (0..l).map(|_| zeros(sg, s)).collect(),
                f: Vec::new(),
                h1: Vec::new(),
            },
            delta: vec![0.0; sg],
            kh: (0..l).map(|_| zeros(s, sg)).collect(),
            kz: (0..l).map(|_| zeros(sg, s)).collect(),
            kh32: (0..l).filter(|_| !exact).map(|_| Mat::zeros(s, sg)).collect(),
            kz32: (0..l).filter(|_| !exact).map(|_| Mat::zeros(sg, s)).collect(),
            coef_mean: (0..l).filter(|_| !exact).map(|_| CoefMeans { d1: vec![0.0; s], curv: vec![0.0; sg] }).collect(),
            fields,
            sources,
            tangents,
            response_samples: opts.response_samples_for(pr.steps).clamp(1, m),
            responses: opts.responses,
        }
    }

    fn run(mut self, progress: &mut dyn FnMut(usize)) -> OrderParameters {
        let l = self.pr.depth;
        for t in 0..self.pr.times() {
            for layer in 1..=l {
                self.h_side(layer, t);
            }
            self.readout(t);
            for layer in (1..=l).rev() {
                self.z_side(layer, t);
            }
            progress(t);
        }
        self.op
    }

    /// σ²Φ^{ℓ−1} over the first w forward super-indices (Φ⁰ = K^x tiled): the covariance of u^ℓ.
    fn u_covariance(&self, layer: usize, w: usize) -> Mat<f64> {
        let s2 = self.pr.sigma2;
        match layer {
            1 => Mat::from_fn(w, w, |a, b| s2 * self.pr.kx_between(a, b)),
            _ => Mat::from_fn(w, w, |a, b| s2 * self.op.phi[layer - 2][(a, b)]),
        }
    }

    /// σ²G^{ℓ+1} over the first w backward super-indices (σ²δ_cc' for the readouts w_c(0)):
    /// the covariance of r^ℓ.
    fn r_covariance(&self, layer: usize, w: usize) -> Mat<f64> {
        let (s2, k) = (self.pr.sigma2, self.pr.outputs);
        match layer == self.pr.depth {
            true => Mat::from_fn(w, w, |a, b| if a % k == b % k { s2 } else { 0.0 }),
            false => Mat::from_fn(w, w, |a, b| s2 * self.op.g[layer][(a, b)]),
        }
    }

    /// Rows of step t of K_h^ℓ: σ²A^{ℓ−1}_{ab'} + η₀γΔ_b'Φ^{ℓ−1}_{ab} for t_b' < t, b' = (b, c).
    fn fill_kh(&mut self, layer: usize, t: usize) {
        let (p, k, s2, eg) = (self.pr.p(), self.pr.outputs, self.pr.sigma2, self.pr.eta0 * self.pr.gamma);
        for i in 0..p {
            let a = t * p + i;
            for b in 0..t * p * k {
                let (resp, below) = match layer {
                    1 => (0.0, self.pr.kx_between(a, b / k)),
                    _ => (s2 * self.op.a[layer - 2][(a, b)], self.op.phi[layer - 2][(a, b / k)]),
                };
                self.kh[layer - 1][(a, b)] = resp + eg * self.delta[b] * below;
                if let Some(kh) = self.kh32.get_mut(layer - 1) {
                    kh[(a, b)] = self.kh[layer - 1][(a, b)] as f32;
                }
            }
        }
    }

    /// Rows of step t of K_z^ℓ: σ²B^ℓ_{a'b} (t_b ≤ t) + η₀γΣ_cΔ_(b,c)G^{ℓ+1}_{a',(b,c)} (t_b < t).
    fn fill_kz(&mut self, layer: usize, t: usize) {
        let (p, k, top) = (self.pr.p(), self.pr.outputs, self.pr.depth);
        let (s2, eg) = (self.pr.sigma2, self.pr.eta0 * self.pr.gamma);
        for i in 0..p * k {
            let a = t * p * k + i;
            for b in 0..(t + 1) * p {
                let resp = if layer == top { 0.0 } else { s2 * self.op.b[layer][(a, b)] };
                let above = |c: usize| match layer == top {
                    true => f64::from(u8::from(a % k == c)),
                    false => self.op.g[layer][(a, b * k + c)],
                };
                let learn =
                    if b < t * p { eg * (0..k).map(|c| self.delta[b * k + c] * above(c)).sum::<f64>() } else { 0.0 };
                self.kz[layer - 1][(a, b)] = resp + learn;
                if let Some(kz) = self.kz32.get_mut(layer - 1) {
                    kz[(a, b)] = (resp + learn) as f32;
                }
            }
        }
    }

    /// Step t of layer ℓ's h side: φ(t), Φ^ℓ(t, ·) and A^ℓ(t, ·).
    fn h_side(&mut self, layer: usize, t: usize) {
        self.fill_kh(layer, t);
        let (p, k, act) = (self.pr.p(), self.pr.outputs, self.pr.activation);
        let (c, w, cg, wg) = (t * p, (t + 1) * p, t * p * k, (t + 1) * p * k);
        let rows = match &self.fields[layer - 1] {
            Fields::Sampled { .. } => {
                let src = self.sources.as_ref().expect("sampled solves have sources");
                let u = match (&src.mix_u[layer - 1], layer) {
                    (Some(mix), _) => {
                        let Fields::Sampled { phi: below, .. } = &self.fields[layer - 2] else { unreachable!() };
                        mix * below.as_ref().subcols(c, p)
                    }
                    _ if self.pr.fresh => src.u1.subcols(c, p).to_owned(),
                    _ => src.u1.clone(),
                };
                let Fields::Sampled { phi, g, d1, curv } = &mut self.fields[layer - 1] else { unreachable!() };
                let mut h = u;
                let kh = &self.kh32[layer - 1];
                gemm_nt(h.as_mut(), Accum::Add, g.as_ref().subcols(0, cg), kh.as_ref().submatrix(c, 0, p, cg), 1.0);
                if layer == 1 {
                    // ⟨hhᵀ⟩ with the source term exact: σ²K^x + ⟨dhᵀ + udᵀ + ddᵀ⟩, d = h − u (the
                    // sample covariance of u alone would add O(1/√M) noise to every outlier).
                    let u = if self.pr.fresh { src.u1.subcols(c, p).to_owned() } else { src.u1.clone() };
                    let (u, d) = (double(&u), double(&(&h - &u)));
                    let u = &u;
                    let inv = 1.0 / h.nrows() as f64;
                    let kx = self.pr.kx_at(t);
                    let mut kh1 = Mat::from_fn(p, p, |i, j| self.pr.sigma2 * kx[(i, j)]);
                    gemm_nt(kh1.as_mut(), Accum::Add, d.transpose(), d.transpose(), inv);
                    gemm_nt(kh1.as_mut(), Accum::Add, d.transpose(), u.transpose(), inv);
                    gemm_nt(kh1.as_mut(), Accum::Add, u.transpose(), d.transpose(), inv);
                    self.op.h1.push(kh1);
                }
                for j in 0..p {
                    for i in 0..h.nrows() {
                        let (f0, f1, f2) = act.eval_with_derivatives(h[(i, j)] as f64);
                        (phi[(i, c + j)], d1[(i, c + j)]) = (f0 as f32, f1 as f32);
                        for o in 0..k {
                            curv[(i, (c + j) * k + o)] = f2 as f32;
                        }
                    }
                }
                let means = &mut self.coef_mean[layer - 1];
                column_means(&mut means.d1, d1, c, p);
                let mut rows = Mat::<f32>::zeros(p, w);
                let scale = 1.0 / phi.nrows() as f32;
                gemm_nt(
                    rows.as_mut(),
                    Accum::Replace,
                    phi.as_ref().subcols(c, p).transpose(),
                    phi.as_ref().subcols(0, w).transpose(),
                    scale,
                );
                let lin = response_rows(d1, curv, means, self.response_samples, (w, wg), self.responses);
                let (_, rbar) = responses(kh, &self.kz32[layer - 1], &lin, (p, k), t, Seed::Phi);
                self.op.a[layer - 1].as_mut().submatrix_mut(c, 0, p, cg).copy_from(rbar.as_ref().subcols(0, cg));
                if layer == self.pr.depth {
                    for tan in &mut self.tangents {
                        gemm_nt(
                            tan.dh.as_mut(),
                            Accum::Replace,
                            tan.dg.as_ref().subcols(0, cg),
                            kh.as_ref().submatrix(c, 0, p, cg),
                            1.0,
                        );
                        for j in 0..p {
                            for i in 0..tan.dh.nrows() {
                                tan.dphi[(i, c + j)] = d1[(i, c + j)] * tan.dh[(i, j)];
                            }
                        }
                    }
                }
                double(&rows)
            }
            Fields::Exact { .. } => {
                let lin = Linearized::exact(w, wg);
                let (ubar, rbar) = responses(&self.kh[layer - 1], &self.kz[layer - 1], &lin, (p, k), t, Seed::Phi);
                let (cu, cr) = (self.u_covariance(layer, w), self.r_covariance(layer, cg));
                let Fields::Exact { phi_u, phi_r, .. } = &mut self.fields[layer - 1] else { unreachable!() };
                phi_u.as_mut().submatrix_mut(c, 0, p, w).copy_from(&ubar);
                phi_r.as_mut().submatrix_mut(c, 0, p, wg).copy_from(&rbar);
                self.op.a[layer - 1].as_mut().submatrix_mut(c, 0, p, cg).copy_from(rbar.as_ref().subcols(0, cg));
                let mut rows = &ubar * &cu * phi_u.as_ref().submatrix(0, 0, w, w).transpose();
                rows += rbar.as_ref().subcols(0, cg) * &cr * phi_r.as_ref().submatrix(0, 0, w, cg).transpose();
                rows
            }
        };
        set_symmetric_rows(&mut self.op.phi[layer - 1], &rows, c);
        if layer == 1 && matches!(self.fields[0], Fields::Exact { .. }) {
            // Linear φ: h¹ = φ¹, so K^{h¹} is Φ¹'s equal-time block.
            self.op.h1.push(equal_time(&self.op.phi[0], p, t));
        }
    }

    /// f_(a,c)(t) = η₀Σ_{t_b<t}Δ_(b,c)Φ^L_{ab} + (σ²/γ)⟨∂φ^L_a/∂w_c(0)⟩, then Δ(t).
    fn readout(&mut self, t: usize) {
        let (p, k, l) = (self.pr.p(), self.pr.outputs, self.pr.depth);
        let (c, cg) = (t * p, t * p * k);
        let stein: Vec<f64> = (0..p * k)
            .map(|i| {
                let (mu, o) = (i / k, i % k);
                match self.tangents.get(o) {
                    Some(tan) => tan.dphi.col(c + mu).iter().map(|&x| x as f64).sum::<f64>() / tan.dphi.nrows() as f64,
                    None => (0..cg).filter(|b| b % k == o).map(|b| self.op.a[l - 1][(c + mu, b)]).sum(),
                }
            })
            .collect();
        let phi = &self.op.phi[l - 1];
        let f: Vec<f64> = (0..p * k)
            .map(|i| {
                let (mu, o) = (i / k, i % k);
                let learned: f64 = (0..c).map(|b| self.delta[b * k + o] * phi[(c + mu, b)]).sum();
                self.pr.eta0 * learned + self.pr.sigma2 / self.pr.gamma * stein[i]
            })
            .collect();
        let d = self.pr.error_signal(t, &f);
        self.delta[cg..cg + p * k].copy_from_slice(&d);
        self.op.f.push(f);
    }

    /// Step t of layer ℓ's z side: g(t), G^ℓ(t, ·) and B^{ℓ−1}(t, ·).
    fn z_side(&mut self, layer: usize, t: usize) {
        self.fill_kz(layer, t);
        let (p, k, top) = (self.pr.p(), self.pr.outputs, self.pr.depth);
        let q = p * k;
        let (c, w, cg, wg) = (t * p, (t + 1) * p, t * q, (t + 1) * q);
        let rows = match &self.fields[layer - 1] {
            Fields::Sampled { .. } => {
                let src = self.sources.as_ref().expect("sampled solves have sources");
                let r = match &src.mix_r[layer - 1] {
                    Some(mix) => {
                        let Fields::Sampled { g: above, .. } = &self.fields[layer] else { unreachable!() };
                        mix * above.as_ref().subcols(cg, q)
                    }
                    None => Mat::from_fn(src.w0.nrows(), q, |i, j| src.w0[(i, j % k)]),
                };
                let kz = &self.kz32[layer - 1];
                let Fields::Sampled { phi, g, d1, curv } = &mut self.fields[layer - 1] else { unreachable!() };
                let mut z = r;
                gemm_nt(z.as_mut(), Accum::Add, phi.as_ref().subcols(0, w), kz.as_ref().submatrix(cg, 0, q, w), 1.0);
                for j in 0..q {
                    for i in 0..z.nrows() {
                        g[(i, cg + j)] = d1[(i, c + j / k)] * z[(i, j)];
                        curv[(i, cg + j)] *= z[(i, j)];
                    }
                }
                let means = &mut self.coef_mean[layer - 1];
                column_means(&mut means.curv, curv, cg, q);
                let mut rows = Mat::<f32>::zeros(q, wg);
                let scale = 1.0 / g.nrows() as f32;
                gemm_nt(
                    rows.as_mut(),
                    Accum::Replace,
                    g.as_ref().subcols(cg, q).transpose(),
                    g.as_ref().subcols(0, wg).transpose(),
                    scale,
                );
                if layer > 1 {
                    let lin = response_rows(d1, curv, means, self.response_samples, (w, wg), self.responses);
                    let (ubar, _) = responses(&self.kh32[layer - 1], kz, &lin, (p, k), t, Seed::G);
                    self.op.b[layer - 1].as_mut().submatrix_mut(cg, 0, q, w).copy_from(&ubar);
                }
                if layer == top {
                    for (o, tan) in self.tangents.iter_mut().enumerate() {
                        let mut dz = Mat::from_fn(z.nrows(), q, |_, j| if j % k == o { 1.0 } else { 0.0 });
                        gemm_nt(
                            dz.as_mut(),
                            Accum::Add,
                            tan.dphi.as_ref().subcols(0, w),
                            kz.as_ref().submatrix(cg, 0, q, w),
                            1.0,
                        );
                        for j in 0..q {
                            for i in 0..dz.nrows() {
                                tan.dg[(i, cg + j)] =
                                    curv[(i, cg + j)] * tan.dh[(i, j / k)] + d1[(i, c + j / k)] * dz[(i, j)];
                            }
                        }
                    }
                }
                double(&rows)
            }
            Fields::Exact { .. } => {
                let lin = Linearized::exact(w, wg);
                let (ubar, rbar) = responses(&self.kh[layer - 1], &self.kz[layer - 1], &lin, (p, k), t, Seed::G);
                let (cu, cr) = (self.u_covariance(layer, w), self.r_covariance(layer, wg));
                let Fields::Exact { g_u, g_r, .. } = &mut self.fields[layer - 1] else { unreachable!() };
                g_u.as_mut().submatrix_mut(cg, 0, q, w).copy_from(&ubar);
                g_r.as_mut().submatrix_mut(cg, 0, q, wg).copy_from(&rbar);
                if layer > 1 {
                    self.op.b[layer - 1].as_mut().submatrix_mut(cg, 0, q, w).copy_from(&ubar);
                }
                let mut rows = &ubar * &cu * g_u.as_ref().submatrix(0, 0, wg, w).transpose();
                rows += &rbar * &cr * g_r.as_ref().submatrix(0, 0, wg, wg).transpose();
                rows
            }
        };
        set_symmetric_rows(&mut self.op.g[layer - 1], &rows, cg);
    }
}

/// Store the means over all samples of the `n` columns of `x` from column c in `means[c..c + n]`.
fn column_means(means: &mut [f32], x: &Mat<f32>, c: usize, n: usize) {
    for (j, mean) in means.iter_mut().enumerate().skip(c).take(n) {
        *mean = (x.col(j).iter().map(|&v| v as f64).sum::<f64>() / x.nrows() as f64) as f32;
    }
}

/// The linearized processes whose Jacobians [`responses`] averages, and their weights: the first
/// n samples (the response samples), then the estimator's extra rows. A Jacobian J(D) is a
/// polynomial in the coefficients D = (φ'(h), φ''(h)z); around the mean coefficients D̄ its
/// first-order term is linear in D − D̄, so the plain average (1/n)Σ_i J(D_i) carries the
/// first-order noise J(D̄_n) − J(D̄) of the n-sample mean D̄_n. The control variate
///
/// ```text
/// (1/n)Σ_i J(D_i) − J(D̄_n) + J(D̄_M)
/// ```
///
/// swaps it for the M-sample mean's (M = all samples of the layer): two extra rows, the
/// coefficients averaged over the n and over all M samples. What remains is the second-order
/// spread, and a bias: E J(D̄_k) = J(D̄) + a/k + O(1/k²) for a k-sample mean, so the estimate is
/// low or high by a(1/n − 1/M). The debiased estimate replaces J(D̄_n) by the Richardson
/// combination over the two halves (k₁ + k₂ = n samples)
///
/// ```text
/// 2J(D̄_n) − (k₁/n)J(D̄_k₁) − (k₂/n)J(D̄_k₂)
/// ```
///
/// whose a/k terms cancel (2/n − 2/n) and whose first-order part is still that of D̄_n (the
/// halves' deviations average to D̄_n's): two rows more, bias O(1/n²) + O(1/M).
fn response_rows(
    d1: &Mat<f32>,
    curv: &Mat<f32>,
    means: &CoefMeans,
    n: usize,
    (w, wg): (usize, usize),
    estimator: ResponseEstimator,
) -> Linearized<f32> {
    let estimator =
        if n < 2 && estimator == ResponseEstimator::Debiased { ResponseEstimator::Control } else { estimator };
    let half = n / 2;
    // (first sample, samples, weight) of each extra row's mean.
    let extra: Vec<(usize, usize, f64)> = match estimator {
        ResponseEstimator::Plain => vec![],
        ResponseEstimator::Control => vec![(0, n, -1.0)],
        ResponseEstimator::Debiased => {
            vec![(0, n, -2.0), (0, half, half as f64 / n as f64), (half, n - half, (n - half) as f64 / n as f64)]
        }
    };
    let sub_mean = |x: &Mat<f32>, b: usize, (from, k): (usize, usize)| {
        ((from..from + k).map(|i| x[(i, b)] as f64).sum::<f64>() / k as f64) as f32
    };
    let with_means = estimator != ResponseEstimator::Plain;
    let rows = n + extra.len() + usize::from(with_means);
    let build = |x: &Mat<f32>, all: &[f32], w: usize| {
        Mat::from_fn(rows, w, |i, b| match i {
            _ if i < n => x[(i, b)],
            _ if i < n + extra.len() => {
                let (from, k, _) = extra[i - n];
                sub_mean(x, b, (from, k))
            }
            _ => all[b],
        })
    };
    let mut weights = vec![1.0 / n as f64; n];
    weights.extend(extra.iter().map(|e| e.2));
    if with_means {
        weights.push(1.0);
    }
    Linearized { d1: build(d1, &means.d1, w), curv: build(curv, &means.curv, wg), weights }
}

/// The coefficients of the linearized process for each sample (rows; columns are super-indices)
/// — `d1` = φ'(h) over forward ones, `curv` = φ''(h)z over backward ones — and the weights with which [`responses`] sums their
/// Jacobians.
struct Linearized<E> {
    d1: Mat<E>,
    curv: Mat<E>,
    weights: Vec<f64>,
}

impl Linearized<f64> {
    /// Linear φ: one "sample" with φ' = 1 and φ'' = 0, whose Jacobian is exact.
    fn exact(w: usize, wg: usize) -> Self {
        Linearized { d1: Mat::from_fn(1, w, |_, _| 1.0), curv: Mat::zeros(1, wg), weights: vec![1.0] }
    }
}

fn single(m: &Mat<f64>) -> Mat<f32> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f32)
}

fn double(m: &Mat<f32>) -> Mat<f64> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| m[(i, j)] as f64)
}

/// Write the row block `rows` (P × w) at row offset c into a symmetric matrix and its transpose.
fn set_symmetric_rows(m: &mut Mat<f64>, rows: &Mat<f64>, c: usize) {
    for i in 0..rows.nrows() {
        for b in 0..rows.ncols() {
            m[(c + i, b)] = rows[(i, b)];
            m[(b, c + i)] = rows[(i, b)];
        }
    }
}

/// Steps per block of the adjoint sweep in [`responses`]: the adjoints of the steps after a
/// block reach it through one product with τP columns instead of τ products with P, so each
/// pass over the stored adjoints does τ times the arithmetic (the sweep is bound by memory
/// traffic otherwise). Any value gives the same sums; `BENCHMARKS.md` has the measurement.
const SWEEP_BLOCK: usize = 16;

/// Sample-averaged Jacobians of φ(t) (`Seed::Phi`, P quantities at step t) or g(t) (`Seed::G`,
/// PC quantities) with respect to the sources u and r at every super-index up to step t:
/// (∂·/∂u, ∂·/∂r), over w = (t + 1)P forward and (t + 1)PC backward columns. One adjoint sweep
/// from t back to 0 through the linearized process (b' = (b, c) over the C outputs)
///
/// ```text
/// δh_b = δu_b + Σ K_h[b, a'] δg_a',  δφ_b = φ'(h_b) δh_b,  δz_b' = δr_b' + Σ K_z[b', a] δφ_a,
/// δg_(b,c) = φ''(h_b)z_(b,c) δh_b + φ'(h_b) δz_(b,c)
/// ```
///
/// for each sample of `lin`; the adjoint rows are (quantity, sample), and the result is
/// Σ_i weights[i]·(sample i's Jacobian) ([`response_rows`]). The sweep is a block-triangular
/// solve and runs like a blocked one ([`SWEEP_BLOCK`]).
fn responses<E: SweepFloat>(
    kh: &Mat<E>,
    kz: &Mat<E>,
    lin: &Linearized<E>,
    (p, k): (usize, usize),
    t: usize,
    seed: Seed,
) -> (Mat<f64>, Mat<f64>) {
    let (d1, curv, weights) = (lin.d1.as_ref(), lin.curv.as_ref(), &lin.weights);
    let q = p * k;
    let (m, w, wg) = (d1.nrows(), (t + 1) * p, (t + 1) * q);
    let quantities = if seed == Seed::Phi { p } else { q };
    let n = m * quantities;
    let (one, zero) = (E::of(1.0), E::of(0.0));
    let mut hbar = Mat::<E>::from_fn(n, w, |_, _| zero);
    let mut zbar = Mat::<E>::from_fn(n, wg, |_, _| zero);
    let mut gbar = Mat::<E>::from_fn(n, q, |_, _| zero);
    let mut fbar = Mat::<E>::from_fn(n, p, |_, _| zero);
    let mut end = t + 1;
    while end > 0 {
        let start = end.saturating_sub(SWEEP_BLOCK);
        let (cs, ce, gs, ge) = (start * p, end * p, start * q, end * q);
        // What the adjoints after this block send into it, in one product each.
        let mut gpre = Mat::<E>::from_fn(n, ge - gs, |_, _| zero);
        let mut fpre = Mat::<E>::from_fn(n, ce - cs, |_, _| zero);
        if ce < w {
            let (rest, grest) = (w - ce, wg - ge);
            let (hk, zk) =
                (kh.as_ref().submatrix(ce, gs, rest, ge - gs), kz.as_ref().submatrix(ge, cs, grest, ce - cs));
            gemm_nt(gpre.as_mut(), Accum::Replace, hbar.as_ref().subcols(ce, rest), hk.transpose(), one);
            gemm_nt(fpre.as_mut(), Accum::Replace, zbar.as_ref().subcols(ge, grest), zk.transpose(), one);
        }
        for s in (start..end).rev() {
            let (c, cq) = (s * p, s * q);
            // ḡ(s) = Σ_{later a} h̄_a K_h[a, s];  z̄(s) = φ'(h) ḡ(s).
            gbar.copy_from(gpre.as_ref().subcols(cq - gs, q));
            let inside = ce - c - p;
            gemm_nt(
                gbar.as_mut(),
                Accum::Add,
                hbar.as_ref().subcols(c + p, inside),
                kh.as_ref().submatrix(c + p, cq, inside, q).transpose(),
                one,
            );
            if seed == Seed::G && s == t {
                add_seed(&mut gbar, m, one);
            }
            for j in 0..q {
                for row in 0..n {
                    zbar[(row, cq + j)] = d1[(row % m, c + j / k)] * gbar[(row, j)];
                }
            }
            // φ̄(s) = Σ_{a at or after s} z̄_a K_z[a, s];  h̄(s) = φ'(h) φ̄(s) + Σ_c φ''(h)z_c ḡ_c(s).
            fbar.copy_from(fpre.as_ref().subcols(c - cs, p));
            gemm_nt(
                fbar.as_mut(),
                Accum::Add,
                zbar.as_ref().subcols(cq, ge - cq),
                kz.as_ref().submatrix(cq, c, ge - cq, p).transpose(),
                one,
            );
            if seed == Seed::Phi && s == t {
                add_seed(&mut fbar, m, one);
            }
            for j in 0..p {
                for row in 0..n {
                    let i = row % m;
                    let mut v = d1[(i, c + j)] * fbar[(row, j)];
                    for o in 0..k {
                        v += curv[(i, cq + j * k + o)] * gbar[(row, j * k + o)];
                    }
                    hbar[(row, c + j)] = v;
                }
            }
        }
        end = start;
    }
    let mean = |x: &Mat<E>| {
        Mat::from_fn(quantities, x.ncols(), |mu, b| (0..m).map(|i| weights[i] * x[(mu * m + i, b)].to()).sum::<f64>())
    };
    (mean(&hbar), mean(&zbar))
}

/// Seed the adjoint of the step's own quantities: row (μ, sample i) gets 1 in column μ.
fn add_seed<E: SweepFloat>(bar: &mut Mat<E>, m: usize, one: E) {
    for mu in 0..bar.ncols() {
        for i in 0..m {
            bar[(mu * m + i, mu)] += one;
        }
    }
}

/// The float type of the adjoint sweep: f32 for the Monte-Carlo path (the sweep's rounding,
/// ~1e-6 relative, is far below the sampling error; f32 halves the memory traffic and doubles
/// the SIMD width), f64 for the exact linear solve.
trait SweepFloat:
    faer::traits::ComplexField + Copy + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> + std::ops::AddAssign
{
    fn of(x: f64) -> Self;
    fn to(self) -> f64;
}

impl SweepFloat for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn to(self) -> f64 {
        self as f64
    }
}

impl SweepFloat for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn to(self) -> f64 {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocked_adjoint_sweep_sums_what_the_stepwise_one_does() {
        for k in [1, 3] {
            let (p, t, m) = (3, 2 * SWEEP_BLOCK + 5, 4);
            let (w, wg) = ((t + 1) * p, (t + 1) * p * k);
            let draw = |seed: u64, r: usize, c: usize| {
                let e = normals(&mut stream(7, Purpose::Analysis, seed), r * c);
                Mat::from_fn(r, c, |i, j| 0.1 * e[i * c + j])
            };
            // Causal couplings: K_h strictly before, K_z up to the same step.
            let (kh_all, kz_all) = (draw(1, w, wg), draw(2, wg, w));
            let kh = Mat::from_fn(w, wg, |a, b| if b / (p * k) < a / p { kh_all[(a, b)] } else { 0.0 });
            let kz = Mat::from_fn(wg, w, |a, b| if b / p <= a / (p * k) { kz_all[(a, b)] } else { 0.0 });
            let (d1, curv) = (draw(3, m, w), draw(4, m, wg));
            for seed in [Seed::Phi, Seed::G] {
                let weights = vec![1.0 / m as f64; m];
                let lin = Linearized { d1: d1.clone(), curv: curv.clone(), weights: weights.clone() };
                let (u, r) = responses(&kh, &kz, &lin, (p, k), t, seed);
                let (u0, r0) = responses_unblocked(&kh, &kz, d1.as_ref(), curv.as_ref(), (p, k), t, seed);
                let scale = u0.norm_max().max(r0.norm_max());
                assert!(scale > 1e-3, "a response that vanishes tests nothing");
                assert!((&u - &u0).norm_max() < 1e-12 * scale && (&r - &r0).norm_max() < 1e-12 * scale);
                // The Monte-Carlo path sweeps in f32.
                let lin = Linearized { d1: single(&d1), curv: single(&curv), weights };
                let (u1, r1) = responses(&single(&kh), &single(&kz), &lin, (p, k), t, seed);
                let gap = (&u1 - &u0).norm_max().max((&r1 - &r0).norm_max());
                assert!(gap < 1e-5 * scale, "f32 sweep off by {gap:e} of {scale:e} (C = {k})");
            }
        }
    }

    #[test]
    fn default_response_samples_grow_with_the_horizon() {
        let auto = |samples: usize| DmftOptions { samples, response_samples: 0, ..Default::default() };
        let got: Vec<usize> = [(1000, 40), (1000, 75), (1000, 80), (1000, 300), (5000, 80), (20, 300)]
            .iter()
            .map(|&(m, t)| auto(m).response_samples_for(t))
            .collect();
        assert_eq!(got, vec![10, 10, 11, 40, 50, 20]);
        let fixed = DmftOptions { samples: 1000, response_samples: 25, ..Default::default() };
        assert_eq!(fixed.response_samples_for(300), 25);
    }

    /// [`responses`] one step at a time, written index by index (the reference the blocked
    /// sweep is tested against): the adjoint of
    ///
    /// ```text
    /// δh_b = δu_b + Σ K_h[b, a'] δg_a',  δφ_b = φ'(h_b) δh_b,  δz_b' = δr_b' + Σ K_z[b', a] δφ_a,
    /// δg_(b,c) = φ''(h_b)z_(b,c) δh_b + φ'(h_b) δz_(b,c)
    /// ```
    ///
    /// for each sample (rows of `d1` = φ'(h), `curv` = φ''(h)z), averaged over the samples.
    fn responses_unblocked(
        kh: &Mat<f64>,
        kz: &Mat<f64>,
        d1: MatRef<'_, f64>,
        curv: MatRef<'_, f64>,
        (p, k): (usize, usize),
        t: usize,
        seed: Seed,
    ) -> (Mat<f64>, Mat<f64>) {
        let q = p * k;
        let (m, w, wg) = (d1.nrows(), (t + 1) * p, (t + 1) * q);
        let quantities = if seed == Seed::Phi { p } else { q };
        let mut u = Mat::<f64>::zeros(quantities, w);
        let mut r = Mat::<f64>::zeros(quantities, wg);
        for i in 0..m {
            for mu in 0..quantities {
                // Adjoints of h (forward index) and z (backward index) of this sample.
                let mut hbar = vec![0.0; w];
                let mut zbar = vec![0.0; wg];
                for s in (0..=t).rev() {
                    let mut gbar = vec![0.0; q];
                    for (jq, gb) in gbar.iter_mut().enumerate() {
                        let b = s * q + jq;
                        *gb = (s * p + p..w).map(|a| hbar[a] * kh[(a, b)]).sum::<f64>();
                        if seed == Seed::G && s == t && jq == mu {
                            *gb += 1.0;
                        }
                        zbar[b] = d1[(i, s * p + jq / k)] * *gb;
                    }
                    for j in 0..p {
                        let b = s * p + j;
                        let mut fbar = (s * q..wg).map(|a| zbar[a] * kz[(a, b)]).sum::<f64>();
                        if seed == Seed::Phi && s == t && j == mu {
                            fbar += 1.0;
                        }
                        hbar[b] =
                            d1[(i, b)] * fbar + (0..k).map(|c| curv[(i, b * k + c)] * gbar[j * k + c]).sum::<f64>();
                    }
                }
                for b in 0..w {
                    u[(mu, b)] += hbar[b] / m as f64;
                }
                for b in 0..wg {
                    r[(mu, b)] += zbar[b] / m as f64;
                }
            }
        }
        (u, r)
    }
}
