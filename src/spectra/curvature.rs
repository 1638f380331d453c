//! Curvature at a point of training: the top eigenvalue of the loss Hessian (sharpness) and of
//! the empirical neural tangent kernel, each raw and scaled by the per-layer learning rates.
//!
//! Gradient descent with per-parameter rates P = diag(η_ℓ) on L is stable near a minimum when
//! λ_max(P^½ H P^½) < 2 — for one global rate, the familiar η·λ_max(H) < 2 ("2/η"). For the
//! mean-squared loss L = (1/2B)Σ(f − y)², the Gauss–Newton part of H is JᵀJ/B, whose nonzero
//! spectrum is that of the NTK J Jᵀ/B on the batch; the LR-scaled counterpart is J P Jᵀ/B. The
//! paper ties learning-rate transfer to exactly these top modes (§4, Figs. 4–5).
//!
//! - **Sharpness**: Lanczos (three-term recurrence, `spectra.lanczos_steps` iterations) on
//!   Hessian-vector products from central differences of exact gradients,
//!   Hv ≈ [∇L(θ + εv) − ∇L(θ − εv)]/(2ε), ε = 10⁻³‖θ‖/‖v‖ (burn 0.21 has no double backward).
//!   Each iteration costs two gradient evaluations. Lanczos returns the largest algebraic Ritz
//!   value, which converges first.
//! - **NTK**, MLP: per-sample Jacobian factors from one back-propagation per output
//!   ([`jacobian_factors`](crate::model::MlpSpec)): Θ^{cc'} = Σ_ℓ s_ℓ m_ℓ² (A_ℓA_ℓᵀ) ⊙ (D_ℓ^c D_ℓ^{c'ᵀ})
//!   (+ bias terms), an exact BC × BC matrix (f64 eigenvalues), skipped (NaN) when BC > 4096.
//! - **NTK**, other networks: Lanczos on Θ u = J P Jᵀ u / B without forming J: Jᵀu is one
//!   back-propagation with output cotangent u ([`Model::backward`]), J w the central
//!   difference [f(θ + εw) − f(θ − εw)]/(2ε) of two forward passes (ε = 10⁻³‖θ‖/‖w‖).
//!   `spectra.lanczos_steps` iterations, each about two training steps.
//!
//! For the MSE loss the Hessian's Gauss–Newton part is the NTK; for cross-entropy it is
//! J Hₒ Jᵀ with the softmax Hessian Hₒ, and the NTK is reported as is.

use crate::kernels::Kernels;
use crate::model::{Loss, Model, tensor_to_vec};
use crate::rng::{Purpose, normals, stream};
use burn::tensor::{Tensor, TensorData};
use faer::Mat;

/// Top eigenvalues at one point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Curvature {
    pub sharpness: f64,
    pub lr_sharpness: f64,
    pub ntk_top: f64,
    pub lr_ntk_top: f64,
}

type Vector<B> = Vec<Tensor<B, 2>>;

fn dot<B: Kernels>(a: &Vector<B>, b: &Vector<B>) -> f64 {
    a.iter().zip(b).map(|(x, y)| B::dot(x, y)).sum()
}

fn axpy<B: Kernels>(y: Vector<B>, a: f64, x: &Vector<B>) -> Vector<B> {
    y.into_iter().zip(x).map(|(y, x)| B::axpy(y, a, x)).collect()
}

fn scale<B: Kernels>(x: Vector<B>, a: f64) -> Vector<B> {
    x.into_iter().map(|t| t.mul_scalar(a)).collect()
}

/// Scale each parameter's block of `v` by its own factor.
fn scale_blocks<B: Kernels>(v: &Vector<B>, factors: &[f64]) -> Vector<B> {
    v.iter().zip(factors).map(|(t, f)| t.clone().mul_scalar(*f)).collect()
}

/// λ_max of H (`rates = None`) or of P^½ H P^½ with P = diag(rates) (one rate per tensor).
pub fn top_hessian_eigenvalue<B: Kernels>(
    model: &Model<B>,
    x: &Tensor<B, 2>,
    y: &Tensor<B, 2>,
    loss: Loss,
    rates: Option<&[f64]>,
    steps: usize,
    seed: u64,
) -> f64 {
    let device = x.device();
    let n = model.params.len();
    let sqrt_p: Vec<f64> = match rates {
        Some(r) => r.iter().map(|v| v.sqrt()).collect(),
        None => vec![1.0; n],
    };
    let theta_norm = dot(&model.params, &model.params).sqrt().max(1e-12);
    // H_P v = P^½ H (P^½ v), by central differences.
    let hvp = |v: &Vector<B>| -> Vector<B> {
        let u = scale_blocks(v, &sqrt_p);
        let eps = 1e-3 * theta_norm / dot(&u, &u).sqrt().max(1e-30);
        let (_, _, gp) = model.perturbed(&u, eps).gradients(x.clone(), y.clone(), loss);
        let (_, _, gm) = model.perturbed(&u, -eps).gradients(x.clone(), y.clone(), loss);
        let hu: Vector<B> = gp.into_iter().zip(gm).map(|(a, b)| (a - b).mul_scalar(0.5 / eps)).collect();
        scale_blocks(&hu, &sqrt_p)
    };
    lanczos_top(&random_start(model, &device, seed), steps, hvp)
}

/// A random unit vector shaped like the parameters, from a fixed stream.
fn random_start<B: Kernels>(model: &Model<B>, device: &B::Device, seed: u64) -> Vector<B> {
    let q: Vector<B> = model
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let [r, c] = p.dims();
            let z: Vec<f32> = normals(&mut stream(seed, Purpose::Analysis, 200 + i as u64), r * c)
                .into_iter()
                .map(|v| v as f32)
                .collect();
            Tensor::from_data(TensorData::new(z, [r, c]), device)
        })
        .collect();
    let norm = dot(&q, &q).sqrt();
    scale(q, 1.0 / norm)
}

/// Largest eigenvalue of a symmetric operator by Lanczos (three-term recurrence with one
/// re-orthogonalization against the current vector), from the unit vector `start`.
fn lanczos_top<B: Kernels>(start: &Vector<B>, steps: usize, op: impl Fn(&Vector<B>) -> Vector<B>) -> f64 {
    let mut q = start.clone();
    let mut q_prev: Option<Vector<B>> = None;
    let (mut alphas, mut betas): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        let mut w = op(&q);
        let alpha = dot(&w, &q);
        w = axpy(w, -alpha, &q);
        if let (Some(qp), Some(b)) = (&q_prev, betas.last()) {
            w = axpy(w, -*b, qp);
        }
        // One step of re-orthogonalization against the current vector keeps f32 honest.
        let again = dot(&w, &q);
        w = axpy(w, -again, &q);
        alphas.push(alpha + again);
        let beta = dot(&w, &w).sqrt();
        if !beta.is_finite() || beta < 1e-10 * alpha.abs().max(1e-30) {
            break;
        }
        betas.push(beta);
        q_prev = Some(q);
        q = scale(w, 1.0 / beta);
    }
    let m = alphas.len();
    let t = Mat::<f64>::from_fn(m, m, |i, j| {
        if i == j {
            alphas[i]
        } else if i + 1 == j || j + 1 == i {
            betas[i.min(j)]
        } else {
            0.0
        }
    });
    t.self_adjoint_eigenvalues(faer::Side::Lower).ok().and_then(|e| e.last().copied()).unwrap_or(f64::NAN)
}

/// λ_max of the empirical NTK on the batch, raw (`rates = None`, J Jᵀ/B) or LR-weighted
/// (J P Jᵀ/B). NaN when batch × outputs > 4096.
pub fn top_ntk_eigenvalue<B: Kernels>(model: &Model<B>, x: &Tensor<B, 2>, rates: Option<&[f64]>, steps: usize) -> f64 {
    let Some(spec) = model.mlp() else {
        return lanczos_ntk(model, x, rates, steps);
    };
    let [batch, _] = x.dims();
    let outputs = spec.output_dim;
    let size = batch * outputs;
    if size > 4096 {
        return f64::NAN;
    }
    let depth = spec.depth;
    let rate = |i: usize| rates.map_or(1.0, |r| r[i]);
    // factors[c][ℓ] = (A_ℓ, D_ℓ^c)
    let factors: Vec<Vec<(Tensor<B, 2>, Tensor<B, 2>)>> = (0..outputs)
        .map(|c| crate::model::mlp_jacobian_factors(spec, &model.info, &model.params, x.clone(), c))
        .collect();
    // Input Gram matrices A_ℓ A_ℓᵀ (shared by all outputs).
    let grams: Vec<Vec<f32>> =
        (0..=depth).map(|l| tensor_to_vec(B::matmul_nt(&factors[0][l].0, &factors[0][l].0, 1.0))).collect();
    let mut theta = Mat::<f64>::zeros(size, size);
    for c in 0..outputs {
        for c2 in c..outputs {
            for l in 0..=depth {
                let dd = tensor_to_vec(B::matmul_nt(&factors[c][l].1, &factors[c2][l].1, 1.0));
                let m = model.info[l].rule.multiplier;
                let w = rate(l) * m * m;
                let wb = if spec.bias && l < depth { rate(depth + 1 + l) } else { 0.0 };
                for i in 0..batch {
                    for j in 0..batch {
                        let v = (w * grams[l][i * batch + j] as f64 + wb) * dd[i * batch + j] as f64 / batch as f64;
                        theta[(i * outputs + c, j * outputs + c2)] += v;
                        if c2 != c {
                            theta[(j * outputs + c2, i * outputs + c)] += v;
                        }
                    }
                }
            }
        }
    }
    theta.self_adjoint_eigenvalues(faer::Side::Lower).ok().and_then(|e| e.last().copied()).unwrap_or(f64::NAN)
}

/// λ_max of J P Jᵀ / B by matrix-free Lanczos (any network).
fn lanczos_ntk<B: Kernels>(model: &Model<B>, x: &Tensor<B, 2>, rates: Option<&[f64]>, steps: usize) -> f64 {
    let [batch, _] = x.dims();
    let outputs = model.spec.output_dim();
    let device = x.device();
    let rate = |i: usize| rates.map_or(1.0, |r| r[i]);
    let theta_norm = dot(&model.params, &model.params).sqrt().max(1e-12);
    // Vectors live in output space [B, C], held as one-tensor "parameter vectors".
    let op = |u: &Vector<B>| -> Vector<B> {
        let jt_u = model.backward(x.clone(), u[0].clone()); // Jᵀu
        let w: Vector<B> = jt_u.into_iter().enumerate().map(|(i, g)| g.mul_scalar(rate(i))).collect(); // P Jᵀu
        let eps = 1e-3 * theta_norm / dot(&w, &w).sqrt().max(1e-30);
        let fp = model.perturbed(&w, eps).forward(x.clone());
        let fm = model.perturbed(&w, -eps).forward(x.clone());
        vec![(fp - fm).mul_scalar(0.5 / (eps * batch as f64))]
    };
    let z: Vec<f32> =
        normals(&mut stream(5, Purpose::Analysis, 300), batch * outputs).into_iter().map(|v| v as f32).collect();
    let start = vec![Tensor::from_data(TensorData::new(z, [batch, outputs]), &device)];
    let start = scale(start.clone(), 1.0 / dot(&start, &start).sqrt());
    lanczos_top(&start, steps, op)
}

/// All four numbers at once.
#[allow(clippy::too_many_arguments)]
pub fn curvature<B: Kernels>(
    model: &Model<B>,
    x: &Tensor<B, 2>,
    y: &Tensor<B, 2>,
    loss: Loss,
    rates: &[f64],
    lanczos_steps: usize,
    sharpness: bool,
    ntk: bool,
) -> Curvature {
    let nan = f64::NAN;
    // With one rate η for every tensor, P^½ H P^½ = ηH: one Lanczos run gives both.
    let uniform = rates.iter().all(|r| (r - rates[0]).abs() <= 1e-12 * rates[0].abs());
    let (sharp, lr_sharp) = if !sharpness {
        (nan, nan)
    } else if uniform && rates[0] > 0.0 {
        let s = top_hessian_eigenvalue(model, x, y, loss, Some(rates), lanczos_steps, 11);
        (s / rates[0], s)
    } else {
        (
            top_hessian_eigenvalue(model, x, y, loss, None, lanczos_steps, 11),
            top_hessian_eigenvalue(model, x, y, loss, Some(rates), lanczos_steps, 11),
        )
    };
    Curvature {
        sharpness: sharp,
        lr_sharpness: lr_sharp,
        ntk_top: if ntk { top_ntk_eigenvalue(model, x, None, lanczos_steps) } else { nan },
        lr_ntk_top: if ntk { top_ntk_eigenvalue(model, x, Some(rates), lanczos_steps) } else { nan },
    }
}
