//! The hot operations of training, as a backend extension.
//!
//! Training an MLP spends its time in three matrix products per layer (forward `a·W`, backward
//! `δ·Wᵀ` and the weight gradient `aᵀ·δ`), the activation with its derivative, and the
//! optimizer update. [`Kernels`] names exactly these operations. Every backend gets burn's own
//! tensor ops by default (CUDA, wgpu, ndarray, and `Autodiff<_>`, whose forward pass is then
//! differentiable); the flex CPU backend overrides them with faer's GEMM (≈ 225 vs 166 GFLOP/s
//! for flex's own on 2 cores) and fused, multi-threaded elementwise loops (flex evaluates
//! `tanh` with one scalar libm call per element on one thread: 17 ns/element). BENCHMARKS.md
//! has the measurements. `tests/gradients.rs` checks the whole path against burn's autodiff.

pub mod conv;
mod fastmath;
mod flex;

pub use fastmath::tanh_f32;

use crate::model::Activation;
use burn::tensor::{Tensor, backend::Backend};
pub use reference::activation_derivative;

/// One Adam update's constants (PyTorch semantics; `bias1 = 1 − β₁ᵗ`, `bias2 = 1 − β₂ᵗ`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub bias1: f64,
    pub bias2: f64,
}

/// Backend operations used by training. Defaults are the [`reference`] burn-op versions.
pub trait Kernels: Backend {
    /// `α · a · b` for `a: [m, k]`, `b: [k, n]`.
    fn matmul(a: &Tensor<Self, 2>, b: &Tensor<Self, 2>, alpha: f64) -> Tensor<Self, 2> {
        reference::matmul(a, b, alpha)
    }

    /// `α · aᵀ · b` for `a: [k, m]`, `b: [k, n]` (weight gradients).
    fn matmul_tn(a: &Tensor<Self, 2>, b: &Tensor<Self, 2>, alpha: f64) -> Tensor<Self, 2> {
        reference::matmul_tn(a, b, alpha)
    }

    /// `α · a · bᵀ` for `a: [m, k]`, `b: [n, k]` (back-propagated signals).
    fn matmul_nt(a: &Tensor<Self, 2>, b: &Tensor<Self, 2>, alpha: f64) -> Tensor<Self, 2> {
        reference::matmul_nt(a, b, alpha)
    }

    /// `φ(h)`, and `φ'(h)` when `derivative` is set (`None` otherwise, and for linear
    /// networks where φ' ≡ 1).
    fn activate(act: Activation, h: Tensor<Self, 2>, derivative: bool) -> (Tensor<Self, 2>, Option<Tensor<Self, 2>>) {
        reference::activate(act, h, derivative)
    }

    /// Elementwise product `a ⊙ b`.
    fn hadamard(a: Tensor<Self, 2>, b: &Tensor<Self, 2>) -> Tensor<Self, 2> {
        reference::hadamard(a, b)
    }

    /// `Σ a ⊙ b` in f64.
    fn dot(a: &Tensor<Self, 2>, b: &Tensor<Self, 2>) -> f64 {
        reference::dot(a, b)
    }

    /// `y + α x`.
    fn axpy(y: Tensor<Self, 2>, alpha: f64, x: &Tensor<Self, 2>) -> Tensor<Self, 2> {
        reference::axpy(y, alpha, x)
    }

    /// `p − lr · g`.
    fn sgd(p: Tensor<Self, 2>, g: &Tensor<Self, 2>, lr: f64) -> Tensor<Self, 2> {
        reference::sgd(p, g, lr)
    }

    /// SGD with momentum (PyTorch, dampening 0): `b ← μb + g` (b = g when absent);
    /// `p ← p − lr·(g + μb)` with Nesterov, else `p ← p − lr·b`. Returns (p, b).
    fn momentum(
        p: Tensor<Self, 2>,
        g: Tensor<Self, 2>,
        buf: Option<Tensor<Self, 2>>,
        lr: f64,
        mu: f64,
        nesterov: bool,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>) {
        reference::momentum(p, g, buf, lr, mu, nesterov)
    }

    /// `α · conv(x, w)`: 3×3 convolution, stride 1, zero padding 1, for `x: [B, C, H, W]` and
    /// `w: [N, C·9]` (the row-major data of a `[N, C, 3, 3]` kernel). Returns `[B, N, H, W]`.
    fn conv3x3(x: &Tensor<Self, 4>, w: &Tensor<Self, 2>, alpha: f64) -> Tensor<Self, 4> {
        reference::conv3x3(x, w, alpha)
    }

    /// Gradients of `Σ δ ⊙ α·conv(x, w)`: with respect to `x` (`[B, C, H, W]`, when
    /// `input_grad`) and to `w` (`[N, C·9]`).
    fn conv3x3_backward(
        x: &Tensor<Self, 4>,
        w: &Tensor<Self, 2>,
        delta: &Tensor<Self, 4>,
        alpha: f64,
        input_grad: bool,
    ) -> (Option<Tensor<Self, 4>>, Tensor<Self, 2>) {
        reference::conv3x3_backward(x, w, delta, alpha, input_grad)
    }

    /// Adam (PyTorch): `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `p ← p − (lr/bias1) · m / (√v/√bias2 + ε)`. Returns (p, m, v).
    fn adam(
        p: Tensor<Self, 2>,
        g: &Tensor<Self, 2>,
        m: Tensor<Self, 2>,
        v: Tensor<Self, 2>,
        s: AdamStep,
    ) -> (Tensor<Self, 2>, Tensor<Self, 2>, Tensor<Self, 2>) {
        reference::adam(p, g, m, v, s)
    }
}

/// The operations written with burn tensor ops: the default for every backend, the fallback
/// of the fast ones, and the reference their tests compare against.
pub mod reference {
    use super::AdamStep;
    use crate::model::Activation;
    use burn::tensor::{Tensor, backend::Backend};

    pub fn matmul<B: Backend>(a: &Tensor<B, 2>, b: &Tensor<B, 2>, alpha: f64) -> Tensor<B, 2> {
        a.clone().matmul(b.clone()).mul_scalar(alpha)
    }

    pub fn matmul_tn<B: Backend>(a: &Tensor<B, 2>, b: &Tensor<B, 2>, alpha: f64) -> Tensor<B, 2> {
        a.clone().transpose().matmul(b.clone()).mul_scalar(alpha)
    }

    pub fn matmul_nt<B: Backend>(a: &Tensor<B, 2>, b: &Tensor<B, 2>, alpha: f64) -> Tensor<B, 2> {
        a.clone().matmul(b.clone().transpose()).mul_scalar(alpha)
    }

    pub fn activate<B: Backend>(
        act: Activation,
        h: Tensor<B, 2>,
        derivative: bool,
    ) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let d = if derivative { activation_derivative(act, h.clone()) } else { None };
        (apply(act, h), d)
    }

    /// φ applied elementwise with burn tensor ops.
    pub fn apply<B: Backend, const D: usize>(act: Activation, h: Tensor<B, D>) -> Tensor<B, D> {
        use burn::tensor::activation;
        match act {
            Activation::Linear => h,
            Activation::Tanh => h.tanh(),
            Activation::Relu => activation::relu(h),
            Activation::Gelu => activation::gelu(h),
            Activation::Erf => h.erf(),
        }
    }

    /// φ'(h) with burn tensor ops (`None` for the identity).
    pub fn activation_derivative<B: Backend>(act: Activation, h: Tensor<B, 2>) -> Option<Tensor<B, 2>> {
        use std::f64::consts::{PI, SQRT_2};
        Some(match act {
            Activation::Linear => return None,
            Activation::Tanh => h.tanh().powi_scalar(2).neg().add_scalar(1.0),
            Activation::Relu => h.greater_elem(0.0).float(),
            Activation::Gelu => {
                let cdf = h.clone().div_scalar(SQRT_2).erf().add_scalar(1.0).mul_scalar(0.5);
                let pdf = h.clone().powi_scalar(2).mul_scalar(-0.5).exp().mul_scalar(1.0 / (2.0 * PI).sqrt());
                cdf + h * pdf
            }
            Activation::Erf => h.powi_scalar(2).neg().exp().mul_scalar(2.0 / PI.sqrt()),
        })
    }

    fn conv_options() -> burn::tensor::ops::ConvOptions<2> {
        burn::tensor::ops::ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
    }

    fn kernel4<B: Backend>(w: &Tensor<B, 2>, c_in: usize) -> Tensor<B, 4> {
        let [n, _] = w.dims();
        w.clone().reshape([n, c_in, 3, 3])
    }

    pub fn conv3x3<B: Backend>(x: &Tensor<B, 4>, w: &Tensor<B, 2>, alpha: f64) -> Tensor<B, 4> {
        let c_in = x.dims()[1];
        burn::tensor::module::conv2d(x.clone(), kernel4(w, c_in), None, conv_options()).mul_scalar(alpha)
    }

    pub fn conv3x3_backward<B: Backend>(
        x: &Tensor<B, 4>,
        w: &Tensor<B, 2>,
        delta: &Tensor<B, 4>,
        alpha: f64,
        input_grad: bool,
    ) -> (Option<Tensor<B, 4>>, Tensor<B, 2>) {
        use burn::tensor::TensorPrimitive;
        let c_in = x.dims()[1];
        let prim = |t: Tensor<B, 4>| t.into_primitive().tensor();
        let d = delta.clone().mul_scalar(alpha);
        let k = kernel4(w, c_in);
        let gw = B::conv2d_weight_backward(prim(x.clone()), prim(k.clone()), prim(d.clone()), conv_options());
        let gw: Tensor<B, 4> = Tensor::from_primitive(TensorPrimitive::Float(gw));
        let gx = input_grad.then(|| {
            let g = B::conv2d_x_backward(prim(x.clone()), prim(k), prim(d), conv_options());
            Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(g))
        });
        (gx, gw.reshape(w.dims()))
    }

    pub fn hadamard<B: Backend>(a: Tensor<B, 2>, b: &Tensor<B, 2>) -> Tensor<B, 2> {
        a * b.clone()
    }

    pub fn dot<B: Backend>(a: &Tensor<B, 2>, b: &Tensor<B, 2>) -> f64 {
        crate::model::scalar(a.clone().mul(b.clone()).sum())
    }

    pub fn axpy<B: Backend>(y: Tensor<B, 2>, alpha: f64, x: &Tensor<B, 2>) -> Tensor<B, 2> {
        y + x.clone().mul_scalar(alpha)
    }

    pub fn sgd<B: Backend>(p: Tensor<B, 2>, g: &Tensor<B, 2>, lr: f64) -> Tensor<B, 2> {
        p - g.clone().mul_scalar(lr)
    }

    pub fn momentum<B: Backend>(
        p: Tensor<B, 2>,
        g: Tensor<B, 2>,
        buf: Option<Tensor<B, 2>>,
        lr: f64,
        mu: f64,
        nesterov: bool,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let buf = match buf {
            Some(b) => b.mul_scalar(mu) + g.clone(),
            None => g.clone(),
        };
        let dir = if nesterov { g + buf.clone().mul_scalar(mu) } else { buf.clone() };
        (p - dir.mul_scalar(lr), buf)
    }

    pub fn adam<B: Backend>(
        p: Tensor<B, 2>,
        g: &Tensor<B, 2>,
        m: Tensor<B, 2>,
        v: Tensor<B, 2>,
        s: AdamStep,
    ) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
        let m = m.mul_scalar(s.beta1) + g.clone().mul_scalar(1.0 - s.beta1);
        let v = v.mul_scalar(s.beta2) + g.clone().mul(g.clone()).mul_scalar(1.0 - s.beta2);
        let denom = v.clone().sqrt().div_scalar(s.bias2.sqrt()).add_scalar(s.eps);
        let p = p - m.clone().div(denom).mul_scalar(s.lr / s.bias1);
        (p, m, v)
    }
}

impl<B: Backend, C: burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy> Kernels
    for burn::backend::Autodiff<B, C>
{
}

#[cfg(feature = "ndarray")]
impl Kernels for burn::backend::NdArray {}

#[cfg(feature = "cuda")]
impl Kernels for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl Kernels for burn::backend::Wgpu {}
