//! Infinite-width DMFT of a deep μP network trained by full-batch gradient descent
//! (theory map T6; tutorial §8, eqs. 75–86; Bordelon & Pehlevan 2022; paper App. D).
//!
//! **Network** (eq. 75): h¹ = W⁰x/√D, h^{ℓ+1} = W^ℓφ(h^ℓ)/√N, f = w·φ(h^L)/(γN), weights
//! N(0, σ²), loss L = (1/2P)Σ_μ(f_μ − y_μ)², Δ_μ = (y_μ − f_μ)/P, rate η = η₀γ²N (eq. 76).
//! Super-index a = (t, μ), t = 0..=T (the weights after t updates), stored as a = tP + μ.
//!
//! **Single-site process of hidden layer ℓ** (derived from eqs. 77–84 by the cavity method; the
//! factors are this crate's normalization, checked against trained networks):
//!
//! ```text
//! h_a = u_a + Σ_{b: t_b<t_a} [σ²A^{ℓ−1}_{ab} + η₀γ Δ_b Φ^{ℓ−1}_{ab}] g_b        u ~ N(0, σ²Φ^{ℓ−1})
//! z_a = r_a + Σ_{b: t_b≤t_a} σ²B^ℓ_{ab} φ_b + Σ_{b: t_b<t_a} η₀γ Δ_b G^{ℓ+1}_{ab} φ_b   r ~ N(0, σ²G^{ℓ+1})
//! φ_a = φ(h_a),   g_a = φ'(h_a) z_a
//! Φ^ℓ = ⟨φφᵀ⟩,  G^ℓ = ⟨ggᵀ⟩,  A^ℓ = ⟨∂φ/∂r⟩,  B^{ℓ−1} = ⟨∂g/∂u⟩
//! ```
//!
//! with Φ⁰ = K^x = xxᵀ/D (constant in time, no response term: x does not depend on W⁰), and
//! for ℓ = L the field z is the readout weight w(t) itself: G^{L+1} ≡ 1, B^L = 0, r = w(0).
//! The output is f_a = (1/γ)⟨w(t) φ^L_a⟩, whose w(0) part ⟨w(0)φ_a⟩ = Σ_j L_{aj}⟨∂φ_a/∂ε_j⟩
//! comes from Stein's lemma (eq. 85: the response term plus η₀ΣΔΦ^L).
//!
//! **Responses: exact derivatives in the retained eigenmodes.** The Gaussian sources are
//! sampled as u = L_u ε, r = L_r ε' with L = V_kΛ_k^{1/2} from the eigenmodes of their covariance
//! above `rank_tol`·λ_max (the first layer's u has rank ≤ P, the readout's r rank 1, exactly).
//! Each sample's trajectory is differentiated along those k directions by forward-mode tangent
//! propagation through the same causal recursion (the linearization uses φ'(h) and φ''(h)z), and
//! the averages give A L_r and B L_u; then A = (A L_r) L_r⁺. This is the response restricted to
//! the range of the covariance, which is exactly what the dynamics use (A^ℓ is only ever applied
//! to g^{ℓ+1}, whose covariance is G^{ℓ+1}). Derivatives rather than Stein's lemma ⟨φ εᵀ⟩:
//! Stein's estimate of a mode with eigenvalue λ has Monte-Carlo error ~ λ^{-1/2}/√M after
//! un-scaling, the derivative's ~ |∂φ/∂r|/√M, so small modes stay quiet.
//!
//! **Linear φ** makes the process linear with sample-independent coefficients: one
//! deterministic pass of the same propagation over the k directions gives the exact moments
//! (no Monte Carlo), used to test the Monte-Carlo path.
//!
//! **Fixed point**: start from the lazy solution (initial kernels, NTK dynamics of f), then
//! update every layer from the previous iterate with damping until the relative change is
//! below `tol`. Sampling uses common random numbers, so the iteration is a deterministic map.

use crate::model::Activation;
use crate::rng::{Purpose, normals, stream};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// The training problem the DMFT describes (one output).
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
    /// Input kernel K^x_{μν} = x_μ·x_ν/D.
    pub kx: Mat<f64>,
    /// Targets y_μ.
    pub y: Vec<f64>,
}

/// Solver settings.
#[derive(Clone, Debug)]
pub struct DmftOptions {
    /// Monte-Carlo samples for kernels and outputs.
    pub samples: usize,
    /// Samples whose tangents give the responses (derivative averages are low-variance).
    pub response_samples: usize,
    /// Fraction of the new iterate mixed in.
    pub damping: f64,
    pub max_iterations: usize,
    /// Stop when the largest relative change is below this.
    pub tol: f64,
    pub seed: u64,
    /// Eigenmodes of a source covariance below this fraction of the largest are dropped.
    pub rank_tol: f64,
}

impl Default for DmftOptions {
    fn default() -> Self {
        DmftOptions {
            samples: 2000,
            response_samples: 500,
            damping: 0.6,
            max_iterations: 60,
            tol: 1e-4,
            seed: 0,
            rank_tol: 1e-9,
        }
    }
}

/// Order parameters of every hidden layer and the output, over super-indices.
#[derive(Clone, Debug)]
pub struct DmftSolution {
    pub problem: MupProblem,
    /// Φ^ℓ for ℓ = 1..=L (index ℓ−1), S × S.
    pub phi: Vec<Mat<f64>>,
    /// G^ℓ for ℓ = 1..=L.
    pub g: Vec<Mat<f64>>,
    /// A^ℓ = ⟨∂φ^ℓ/∂r^ℓ⟩ for ℓ = 1..=L.
    pub a: Vec<Mat<f64>>,
    /// B^ℓ = ⟨∂g^{ℓ+1}/∂u^{ℓ+1}⟩ for ℓ = 0..=L−1 (B⁰ is the first layer's, unused by the dynamics).
    pub b: Vec<Mat<f64>>,
    /// Outputs f[t][μ].
    pub f: Vec<Vec<f64>>,
    /// Largest relative change per iteration.
    pub residuals: Vec<f64>,
    /// Monte-Carlo standard error of the train loss at each time (0 for the exact linear solve).
    pub loss_stderr: Vec<f64>,
}

impl MupProblem {
    /// The problem a run config describes: the same data (K^x from the training inputs), depth,
    /// activation, γ, η₀, σ² and steps. The DMFT covers full-batch gradient descent of an MLP
    /// without biases and with one output, in μP or NTK parameterization (NTK: γ = γ₀/√N).
    pub fn from_config(cfg: &crate::config::RunConfig) -> crate::error::Result<Self> {
        use crate::config::{OptimizerKind, Schedule};
        use crate::error::Error;
        use crate::model::Parameterization;
        let unsupported = |what: &str| {
            Error::config(
                format!("the μP DMFT does not describe {what}"),
                "use full-batch SGD (train.batch_size = 0, no momentum, constant schedule), one output, no biases, μP or NTK",
            )
        };
        if cfg.optimizer.kind != OptimizerKind::Sgd || cfg.optimizer.momentum != 0.0 {
            return Err(unsupported("this optimizer"));
        }
        if cfg.optimizer.schedule != Schedule::Constant || cfg.optimizer.warmup_steps > 0 {
            return Err(unsupported("a learning-rate schedule"));
        }
        if cfg.train.batch_size != 0 || cfg.data.online {
            return Err(unsupported("minibatches or online data"));
        }
        if cfg.model.bias {
            return Err(unsupported("biases"));
        }
        if cfg.model.parameterization == Parameterization::Sp {
            return Err(unsupported("the standard parameterization"));
        }
        let data = crate::data::Dataset::from_config(cfg)?;
        if data.output_dim != 1 {
            return Err(unsupported("several outputs"));
        }
        let crate::data::TrainSet::Fixed(train) = &data.train else { return Err(unsupported("online data")) };
        let (p, d) = (train.n, train.d);
        let kx = Mat::from_fn(p, p, |i, j| {
            (0..d).map(|k| train.x[i * d + k] as f64 * train.x[j * d + k] as f64).sum::<f64>() / d as f64
        });
        let gamma = match cfg.model.parameterization {
            Parameterization::Ntk => cfg.model.gamma0 / (cfg.model.width as f64).sqrt(),
            _ => cfg.model.gamma0,
        };
        Ok(MupProblem {
            depth: cfg.model.depth,
            activation: cfg.model.activation,
            gamma,
            eta0: cfg.optimizer.lr,
            sigma2: cfg.model.init_variance,
            steps: cfg.train.steps as usize,
            kx,
            y: train.y.iter().map(|v| *v as f64).collect(),
        })
    }

    pub fn p(&self) -> usize {
        self.y.len()
    }
    pub fn times(&self) -> usize {
        self.steps + 1
    }
    pub fn size(&self) -> usize {
        self.p() * self.times()
    }
    fn time_of(&self, a: usize) -> usize {
        a / self.p()
    }
}

impl DmftSolution {
    /// Train loss L(t) = (1/2P)Σ_μ(f_μ(t) − y_μ)².
    pub fn loss(&self) -> Vec<f64> {
        let y = &self.problem.y;
        self.f
            .iter()
            .map(|ft| ft.iter().zip(y).map(|(f, y)| (f - y).powi(2)).sum::<f64>() / (2.0 * y.len() as f64))
            .collect()
    }

    /// Δ_μ(t) = (y_μ − f_μ(t))/P.
    pub fn delta(&self) -> Vec<f64> {
        deltas(&self.problem, &self.f)
    }

    /// The P × P block of Φ^ℓ at equal times t.
    pub fn phi_at(&self, layer: usize, t: usize) -> Mat<f64> {
        let p = self.problem.p();
        Mat::from_fn(p, p, |i, j| self.phi[layer - 1][(t * p + i, t * p + j)])
    }
}

fn deltas(pr: &MupProblem, f: &[Vec<f64>]) -> Vec<f64> {
    let p = pr.p();
    let mut d = vec![0.0; pr.size()];
    for (t, ft) in f.iter().enumerate() {
        for mu in 0..p {
            d[t * p + mu] = (pr.y[mu] - ft[mu]) / p as f64;
        }
    }
    d
}

/// `V_k Λ_k^{1/2}` for the eigenmodes of a covariance above `tol`·λ_max (S × k).
pub fn low_rank_sqrt(c: &Mat<f64>, tol: f64) -> Mat<f64> {
    square_roots(c, tol).1
}

/// The symmetric square root C^{1/2} = VΛ₊^{1/2}Vᵀ (continuous in C, so samples ε C^{1/2}
/// drawn with fixed ε move smoothly between iterations) and the truncated `V_kΛ_k^{1/2}`.
fn square_roots(c: &Mat<f64>, tol: f64) -> (Mat<f64>, Mat<f64>) {
    let n = c.nrows();
    let sym = Mat::from_fn(n, n, |i, j| 0.5 * (c[(i, j)] + c[(j, i)]));
    let Ok(eig) = sym.self_adjoint_eigen(faer::Side::Lower) else { return (Mat::zeros(n, n), Mat::zeros(n, 0)) };
    let vals: Vec<f64> = (0..n).map(|i| eig.S()[i]).collect();
    let lmax = vals.iter().cloned().fold(0.0, f64::max);
    let keep: Vec<usize> = (0..n).rev().filter(|&i| vals[i] > tol * lmax && vals[i] > 0.0).collect();
    let low = Mat::from_fn(n, keep.len(), |r, j| eig.U()[(r, keep[j])] * vals[keep[j]].sqrt());
    let scaled = Mat::from_fn(n, n, |r, j| eig.U()[(r, j)] * vals[j].max(0.0).sqrt());
    let sym_sqrt = &scaled * eig.U().transpose();
    (sym_sqrt, low)
}

/// The causal coefficient matrices of one layer's process.
struct LayerCoefficients {
    /// K_h: h_a = u_a + Σ_b K_h[a, b] g_b (strictly causal in time).
    kh: Mat<f64>,
    /// K_z: z_a = r_a + Σ_b K_z[a, b] φ_b (causal, equal time allowed).
    kz: Mat<f64>,
}

/// One layer's trajectories for a batch of rows (samples), with the r-source and the
/// coefficients of the linearized dynamics, φ'(h) and φ''(h)z.
struct Trajectories {
    phi: Mat<f64>,
    r: Mat<f64>,
    z: Mat<f64>,
    g: Mat<f64>,
    d1: Mat<f64>,
    curv: Mat<f64>,
}

fn par(flops: usize) -> Par {
    if flops > 1 << 22 { Par::rayon(0) } else { Par::Seq }
}

/// `out[:, cols] += src[:, ..k] · K[rows, ..k]ᵀ` for a time block.
fn accumulate(mut out: MatMut<'_, f64>, src: MatRef<'_, f64>, k: MatRef<'_, f64>) {
    if src.ncols() == 0 {
        return;
    }
    let flops = out.nrows() * out.ncols() * src.ncols();
    matmul(out.as_mut(), Accum::Add, src, k.transpose(), 1.0, par(flops));
}

impl LayerCoefficients {
    /// Run M rows of the process from sources u, r (M × S).
    fn forward(&self, act: Activation, p: usize, u: &Mat<f64>, r: &Mat<f64>) -> Trajectories {
        let (m, s) = (u.nrows(), u.ncols());
        let mut h = u.clone();
        let mut z = r.clone();
        let mut phi = Mat::<f64>::zeros(m, s);
        let mut g = Mat::<f64>::zeros(m, s);
        let mut d1 = Mat::<f64>::zeros(m, s);
        let mut curv = Mat::<f64>::zeros(m, s);
        for c0 in (0..s).step_by(p) {
            let c1 = c0 + p;
            accumulate(
                h.as_mut().subcols_mut(c0, p),
                g.as_ref().subcols(0, c0),
                self.kh.as_ref().submatrix(c0, 0, p, c0),
            );
            for c in c0..c1 {
                for i in 0..m {
                    let (f0, f1, f2) = act.eval_with_derivatives(h[(i, c)]);
                    phi[(i, c)] = f0;
                    d1[(i, c)] = f1;
                    curv[(i, c)] = f2;
                }
            }
            accumulate(
                z.as_mut().subcols_mut(c0, p),
                phi.as_ref().subcols(0, c1),
                self.kz.as_ref().submatrix(c0, 0, p, c1),
            );
            for c in c0..c1 {
                for i in 0..m {
                    g[(i, c)] = d1[(i, c)] * z[(i, c)];
                    curv[(i, c)] *= z[(i, c)];
                }
            }
        }
        Trajectories { phi, r: r.clone(), z, g, d1, curv }
    }

    /// Per-row tangents of φ and g for sample rows `rows` along source directions `du`, `dr`
    /// (S × k each, shared by the samples): row jj·m + i of the results is sample i along
    /// direction jj. The linearization uses φ'(h) and φ''(h)z of each sample's trajectory.
    fn tangent_rows(
        &self,
        act: Activation,
        p: usize,
        traj: &Trajectories,
        rows: std::ops::Range<usize>,
        du: MatRef<'_, f64>,
        dr: MatRef<'_, f64>,
    ) -> (Mat<f64>, Mat<f64>) {
        let _ = act;
        let (s, m) = (traj.phi.ncols(), rows.len());
        let k = du.ncols().max(dr.ncols());
        let (d1, curv) = (traj.d1.as_ref().subrows(rows.start, m), traj.curv.as_ref().subrows(rows.start, m));
        let n = m * k;
        let mut dh = Mat::from_fn(n, s, |row, c| if du.ncols() > 0 { du[(c, row / m)] } else { 0.0 });
        let mut dz = Mat::from_fn(n, s, |row, c| if dr.ncols() > 0 { dr[(c, row / m)] } else { 0.0 });
        let mut dphi = Mat::<f64>::zeros(n, s);
        let mut dg = Mat::<f64>::zeros(n, s);
        for c0 in (0..s).step_by(p) {
            let c1 = c0 + p;
            accumulate(
                dh.as_mut().subcols_mut(c0, p),
                dg.as_ref().subcols(0, c0),
                self.kh.as_ref().submatrix(c0, 0, p, c0),
            );
            for c in c0..c1 {
                for row in 0..n {
                    dphi[(row, c)] = d1[(row % m, c)] * dh[(row, c)];
                }
            }
            accumulate(
                dz.as_mut().subcols_mut(c0, p),
                dphi.as_ref().subcols(0, c1),
                self.kz.as_ref().submatrix(c0, 0, p, c1),
            );
            for c in c0..c1 {
                for row in 0..n {
                    let i = row % m;
                    dg[(row, c)] = curv[(i, c)] * dh[(row, c)] + d1[(i, c)] * dz[(row, c)];
                }
            }
        }
        (dphi, dg)
    }

    /// Sample-averaged ∂φ/∂ε and ∂g/∂ε (S × k each) along u-directions `du` or r-directions
    /// `dr` (pass an empty matrix for the other), in chunks of directions.
    fn tangent_means(
        &self,
        act: Activation,
        p: usize,
        traj: &Trajectories,
        rows: std::ops::Range<usize>,
        du: &Mat<f64>,
        dr: &Mat<f64>,
    ) -> (Mat<f64>, Mat<f64>) {
        let s = traj.phi.ncols();
        let m = rows.len();
        let k = du.ncols().max(dr.ncols());
        let mut mean_phi = Mat::<f64>::zeros(s, k);
        let mut mean_g = Mat::<f64>::zeros(s, k);
        if k == 0 || m == 0 {
            return (mean_phi, mean_g);
        }
        let chunk = (8_000_000 / (m * s).max(1)).clamp(1, k);
        for j0 in (0..k).step_by(chunk) {
            let kk = chunk.min(k - j0);
            let du_c = if du.ncols() > 0 { du.as_ref().subcols(j0, kk) } else { du.as_ref() };
            let dr_c = if dr.ncols() > 0 { dr.as_ref().subcols(j0, kk) } else { dr.as_ref() };
            let (dphi, dg) = self.tangent_rows(act, p, traj, rows.clone(), du_c, dr_c);
            for jj in 0..kk {
                for c in 0..s {
                    let (mut sp, mut sg) = (0.0, 0.0);
                    for i in 0..m {
                        sp += dphi[(jj * m + i, c)];
                        sg += dg[(jj * m + i, c)];
                    }
                    mean_phi[(c, j0 + jj)] = sp / m as f64;
                    mean_g[(c, j0 + jj)] = sg / m as f64;
                }
            }
        }
        (mean_phi, mean_g)
    }
}

/// Mean of rows: (1/M) XᵀY (S × S).
fn second_moment(x: &Mat<f64>, y: &Mat<f64>) -> Mat<f64> {
    let (m, s) = (x.nrows(), x.ncols());
    let mut out = Mat::<f64>::zeros(s, s);
    matmul(out.as_mut(), Accum::Replace, x.transpose(), y.as_ref(), 1.0 / m as f64, par(m * s * s));
    out
}

/// State of the fixed-point iteration.
struct Iterate {
    phi: Vec<Mat<f64>>,
    g: Vec<Mat<f64>>,
    a: Vec<Mat<f64>>,
    b: Vec<Mat<f64>>,
    f: Vec<Vec<f64>>,
}

/// Outputs f[t][μ].
type Outputs = Vec<Vec<f64>>;

/// Result of one layer's process.
struct LayerUpdate {
    phi: Mat<f64>,
    g: Mat<f64>,
    a: Mat<f64>,
    b: Mat<f64>,
    /// Readout layer: f and its per-batch estimates.
    f: Option<(Outputs, Vec<Outputs>)>,
}

/// Solve the DMFT. For linear φ the moments are exact (no sampling).
pub fn solve(problem: &MupProblem, opts: &DmftOptions) -> DmftSolution {
    let mut it = lazy_start(problem, opts);
    let mut residuals = Vec::new();
    let mut batches = Vec::new();
    for iter in 0..opts.max_iterations {
        let updates: Vec<LayerUpdate> = (1..=problem.depth).map(|l| layer_update(problem, opts, &it, l)).collect();
        let mut change = 0.0f64;
        let alpha = if iter == 0 { 1.0 } else { opts.damping };
        let mix = |old: &mut Mat<f64>, new: &Mat<f64>, change: &mut f64| {
            let diff = (new - &*old).norm_l2();
            *change = change.max(diff / new.norm_l2().max(1e-300));
            *old = &*old * faer::Scale(1.0 - alpha) + new * faer::Scale(alpha);
        };
        for (l, upd) in updates.into_iter().enumerate() {
            let mut parts = [0.0f64; 4];
            mix(&mut it.phi[l], &upd.phi, &mut parts[0]);
            mix(&mut it.g[l], &upd.g, &mut parts[1]);
            mix(&mut it.a[l], &upd.a, &mut parts[2]);
            mix(&mut it.b[l], &upd.b, &mut parts[3]);
            if std::env::var("SPECDYN_DMFT_DEBUG").is_ok() {
                eprintln!(
                    "iter {iter} layer {}: Φ {:.1e} G {:.1e} A {:.1e} B {:.1e}",
                    l + 1,
                    parts[0],
                    parts[1],
                    parts[2],
                    parts[3]
                );
            }
            // Convergence is judged on the kernels and the outputs: the responses are only
            // defined on the range of their source covariance, and modes near the rank
            // threshold move in and out of it with no effect on the dynamics.
            change = change.max(parts[0]).max(parts[1]);
            if let Some((f, fb)) = upd.f {
                let (mut num, mut den) = (0.0, 0.0);
                for (old, new) in it.f.iter_mut().zip(&f) {
                    for (o, n) in old.iter_mut().zip(new) {
                        num += (n - *o).powi(2);
                        den += n * n;
                        *o = (1.0 - alpha) * *o + alpha * n;
                    }
                }
                change = change.max((num / den.max(1e-300)).sqrt());
                batches = fb;
            }
        }
        residuals.push(change);
        if change < opts.tol && iter > 0 {
            break;
        }
    }
    let loss_stderr = loss_error(problem, &it.f, &batches);
    DmftSolution { problem: problem.clone(), phi: it.phi, g: it.g, a: it.a, b: it.b, f: it.f, residuals, loss_stderr }
}

/// Standard error of the loss from per-batch output estimates (empty for exact solves).
fn loss_error(pr: &MupProblem, f: &[Vec<f64>], batches: &[Vec<Vec<f64>>]) -> Vec<f64> {
    if batches.len() < 2 {
        return vec![0.0; f.len()];
    }
    let nb = batches.len() as f64;
    (0..f.len())
        .map(|t| {
            let losses: Vec<f64> = batches
                .iter()
                .map(|fb| fb[t].iter().zip(&pr.y).map(|(f, y)| (f - y).powi(2)).sum::<f64>() / (2.0 * pr.p() as f64))
                .collect();
            let mean = losses.iter().sum::<f64>() / nb;
            (losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (nb - 1.0)).sqrt() / nb.sqrt()
        })
        .collect()
}

/// The input kernel tiled over time: K[(t, μ), (s, ν)] = K^x_{μν}.
fn tiled(pr: &MupProblem, k: &Mat<f64>) -> Mat<f64> {
    let p = pr.p();
    Mat::from_fn(pr.size(), pr.size(), |a, b| k[(a % p, b % p)])
}

/// Lazy start: kernels frozen at their initial values (tiled over time), zero responses, and
/// the outputs of kernel gradient descent with the initial NTK (eq. 86).
fn lazy_start(pr: &MupProblem, opts: &DmftOptions) -> Iterate {
    let (p, l, s2) = (pr.p(), pr.depth, pr.sigma2);
    // Initial P × P kernels by Monte Carlo on the same sources (exact for linear φ).
    let mut phi0 = vec![Mat::<f64>::zeros(p, p); l + 1];
    phi0[0] = pr.kx.clone();
    let mut dphi0 = vec![Mat::<f64>::zeros(p, p); l + 1];
    for layer in 1..=l {
        let cov = &phi0[layer - 1] * faer::Scale(s2);
        let (ph, dph) = gaussian_moments(pr.activation, &cov, opts.samples, opts.seed + layer as u64);
        phi0[layer] = ph;
        dphi0[layer] = dph;
    }
    let mut g0 = vec![Mat::<f64>::zeros(p, p); l + 2];
    g0[l + 1] = Mat::from_fn(p, p, |_, _| 1.0);
    for layer in (1..=l).rev() {
        g0[layer] = Mat::from_fn(p, p, |i, j| s2 * g0[layer + 1][(i, j)] * dphi0[layer][(i, j)]);
    }
    let ntk = Mat::from_fn(p, p, |i, j| (0..=l).map(|k| g0[k + 1][(i, j)] * phi0[k][(i, j)]).sum::<f64>());
    let mut f = vec![vec![0.0; p]; pr.times()];
    for t in 0..pr.steps {
        let d: Vec<f64> = (0..p).map(|m| (pr.y[m] - f[t][m]) / p as f64).collect();
        for mu in 0..p {
            f[t + 1][mu] = f[t][mu] + pr.eta0 * (0..p).map(|nu| ntk[(mu, nu)] * d[nu]).sum::<f64>();
        }
    }
    let zeros = || Mat::<f64>::zeros(pr.size(), pr.size());
    Iterate {
        phi: (1..=l).map(|k| tiled(pr, &phi0[k])).collect(),
        g: (1..=l).map(|k| tiled(pr, &g0[k])).collect(),
        a: (0..l).map(|_| zeros()).collect(),
        b: (0..l).map(|_| zeros()).collect(),
        f,
    }
}

/// ⟨φ(h_μ)φ(h_ν)⟩ and ⟨φ'(h_μ)φ'(h_ν)⟩ for h ~ N(0, cov) (exact for linear φ).
fn gaussian_moments(act: Activation, cov: &Mat<f64>, samples: usize, seed: u64) -> (Mat<f64>, Mat<f64>) {
    let p = cov.nrows();
    if act == Activation::Linear {
        return (cov.clone(), Mat::from_fn(p, p, |_, _| 1.0));
    }
    let l = low_rank_sqrt(cov, 1e-12);
    let k = l.ncols();
    let e = normals(&mut stream(seed, Purpose::Analysis, 50), samples * k);
    let eps = Mat::from_fn(samples, k, |i, j| e[i * k + j]);
    let h = &eps * l.transpose();
    let ph = Mat::from_fn(samples, p, |i, j| act.eval(h[(i, j)]));
    let dph = Mat::from_fn(samples, p, |i, j| act.derivative(h[(i, j)]));
    (second_moment(&ph, &ph), second_moment(&dph, &dph))
}

/// The coefficient matrices of layer ℓ's process from the current iterate.
fn coefficients(pr: &MupProblem, it: &Iterate, layer: usize, delta: &[f64]) -> LayerCoefficients {
    let (s, l, s2, eg) = (pr.size(), pr.depth, pr.sigma2, pr.eta0 * pr.gamma);
    let below: Mat<f64> = if layer == 1 { tiled(pr, &pr.kx) } else { it.phi[layer - 2].clone() };
    let kh = Mat::from_fn(s, s, |a, b| {
        if pr.time_of(b) >= pr.time_of(a) {
            return 0.0;
        }
        let resp = if layer == 1 { 0.0 } else { s2 * it.a[layer - 2][(a, b)] };
        resp + eg * delta[b] * below[(a, b)]
    });
    let kz = Mat::from_fn(s, s, |a, b| {
        let (ta, tb) = (pr.time_of(a), pr.time_of(b));
        if tb > ta {
            return 0.0;
        }
        let resp = if layer == l { 0.0 } else { s2 * it.b[layer][(a, b)] };
        let learn = if tb < ta { eg * delta[b] * if layer == l { 1.0 } else { it.g[layer][(a, b)] } } else { 0.0 };
        resp + learn
    });
    LayerCoefficients { kh, kz }
}

/// Run layer ℓ's single-site process and measure its order parameters.
fn layer_update(pr: &MupProblem, opts: &DmftOptions, it: &Iterate, layer: usize) -> LayerUpdate {
    let (s, l, p, s2) = (pr.size(), pr.depth, pr.p(), pr.sigma2);
    let delta = deltas(pr, &it.f);
    let coeffs = coefficients(pr, it, layer, &delta);
    // Source covariances and their low-rank square roots.
    let cu = if layer == 1 { tiled(pr, &pr.kx) * faer::Scale(s2) } else { &it.phi[layer - 2] * faer::Scale(s2) };
    let cr = if layer == l { Mat::from_fn(s, s, |_, _| s2) } else { &it.g[layer] * faer::Scale(s2) };
    let (su, lu) = square_roots(&cu, opts.rank_tol);
    let (sr, lr) = square_roots(&cr, opts.rank_tol);
    if std::env::var("SPECDYN_DMFT_DEBUG").is_ok() {
        eprintln!("layer {layer}: source ranks u {} r {}", lu.ncols(), lr.ncols());
    }
    let linear = pr.activation == Activation::Linear;
    let (traj, samples, resp_rows) = if linear {
        // One deterministic pass: tangents along every retained direction give exact moments.
        let zero = Mat::<f64>::zeros(1, s);
        (coeffs.forward(pr.activation, p, &zero, &zero), 1usize, 0..1)
    } else {
        // Common random numbers: the same ε every iteration, through the symmetric square root.
        let m = opts.samples;
        let eu = normals(&mut stream(opts.seed, Purpose::Analysis, 60 + layer as u64), m * s);
        let er = normals(&mut stream(opts.seed, Purpose::Analysis, 80 + layer as u64), m * s);
        let eu = Mat::from_fn(m, s, |i, j| eu[i * s + j]);
        let er = Mat::from_fn(m, s, |i, j| er[i * s + j]);
        let u = &eu * &su;
        let r = &er * &sr;
        let rows = 0..opts.response_samples.min(m);
        (coeffs.forward(pr.activation, p, &u, &r), m, rows)
    };
    let empty = Mat::<f64>::zeros(s, 0);
    if linear {
        // Exact: tangents along every unit source direction give the full linear maps
        // T_r = ∂φ/∂r (= A) and ∂g/∂u (= B); the moments follow from the source covariances.
        let eye = Mat::<f64>::identity(s, s);
        let (t_phi_r, t_g_r) = coeffs.tangent_means(pr.activation, p, &traj, 0..1, &empty, &eye);
        let (t_phi_u, t_g_u) = coeffs.tangent_means(pr.activation, p, &traj, 0..1, &eye, &empty);
        let phi = &t_phi_u * &cu * t_phi_u.transpose() + &t_phi_r * &cr * t_phi_r.transpose();
        let g = &t_g_u * &cu * t_g_u.transpose() + &t_g_r * &cr * t_g_r.transpose();
        let f = (layer == l).then(|| {
            // f_a = η₀ Σ_{t_b<t_a} Δ_bΦ_ab + (1/γ)⟨r_aφ_a⟩, ⟨r_aφ_a⟩ = (T_r C_r)_aa.
            let rc = &t_phi_r * &cr;
            let f = (0..pr.times())
                .map(|t| {
                    (0..p)
                        .map(|mu| {
                            let a = t * p + mu;
                            let learned: f64 = (0..t * p).map(|b| delta[b] * phi[(a, b)]).sum::<f64>() * pr.eta0;
                            learned + rc[(a, a)] / pr.gamma
                        })
                        .collect()
                })
                .collect();
            (f, Vec::new())
        });
        return LayerUpdate { phi, g, a: t_phi_r, b: t_g_u, f };
    }
    // ∂/∂ε along r-directions (for A) and u-directions (for B).
    let (dphi_r, _) = coeffs.tangent_means(pr.activation, p, &traj, resp_rows.clone(), &empty, &lr);
    let (_, dg_u) = coeffs.tangent_means(pr.activation, p, &traj, resp_rows, &lu, &empty);
    let a = &dphi_r * pseudo_inverse(&lr);
    let b = &dg_u * pseudo_inverse(&lu);
    let (phi, g) = (second_moment(&traj.phi, &traj.phi), second_moment(&traj.g, &traj.g));
    let f = (layer == l).then(|| readout(pr, &coeffs, &traj, &lr, samples, &delta));
    LayerUpdate { phi, g, a, b, f }
}

/// L⁺ = Λ^{-1/2}Vᵀ for L = VΛ^{1/2} (orthogonal columns).
fn pseudo_inverse(l: &Mat<f64>) -> Mat<f64> {
    let n2: Vec<f64> = (0..l.ncols()).map(|j| l.col(j).squared_norm_l2()).collect();
    Mat::from_fn(l.ncols(), l.nrows(), |j, c| l[(c, j)] / n2[j])
}

/// f_a = (1/γ)⟨w(t_a)φ_a⟩ by Monte Carlo: the learned part (w(t) − w(0))φ_a directly, the
/// w(0) part by Stein's lemma as Σ_j L_r[a, j]∂φ_a/∂ε_j per sample (r = w(0) has rank one), so
/// the O(γ) signal is not buried in O(1) noise. Also returns 10 batch estimates for error bars.
fn readout(
    pr: &MupProblem,
    coeffs: &LayerCoefficients,
    traj: &Trajectories,
    lr: &Mat<f64>,
    samples: usize,
    delta: &[f64],
) -> (Outputs, Vec<Outputs>) {
    let _ = delta;
    let (p, times) = (pr.p(), pr.times());
    // Per-sample values: (1/γ)[(w(t) − w(0))φ_a + L_r[a]·∂φ_a/∂ε] over all samples.
    let (dphi_all, _) =
        coeffs.tangent_rows(pr.activation, p, traj, 0..samples, Mat::<f64>::zeros(pr.size(), 0).as_ref(), lr.as_ref());
    let value = |i: usize, a: usize| -> f64 {
        let w_learned = traj.z[(i, a)] - traj.r[(i, a)];
        let stein: f64 = (0..lr.ncols()).map(|j| lr[(a, j)] * dphi_all[(j * samples + i, a)]).sum();
        (w_learned * traj.phi[(i, a)] + stein) / pr.gamma
    };
    let estimate = |rows: std::ops::Range<usize>| -> Vec<Vec<f64>> {
        let n = rows.len() as f64;
        (0..times)
            .map(|t| (0..p).map(|mu| rows.clone().map(|i| value(i, t * p + mu)).sum::<f64>() / n).collect())
            .collect()
    };
    let nb = 10;
    let batches = (0..nb).map(|k| estimate(k * samples / nb..(k + 1) * samples / nb)).collect();
    (estimate(0..samples), batches)
}
