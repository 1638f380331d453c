//! The multilayer perceptron, written term by term as in the DMFT tutorial, eq. (75):
//!
//! ```text
//! h¹      = m₀ · x W⁰              (+ b⁰)     x: [B, D]   W⁰: [D, N]
//! h^{ℓ+1} = m_ℓ · φ(h^ℓ) W^ℓ       (+ b^ℓ)    W^ℓ: [N, N],  1 ≤ ℓ < L
//! f       = m_L · φ(h^L) W^L                   W^L: [N, C]
//! ```
//!
//! with the multipliers m and init scales of the [`ParamTable`]. Gradients are computed by
//! explicit back-propagation ([`gradients`]), the recursion of the tutorial's eq. (79):
//! with `z_ℓ` the output of W^ℓ and `a_ℓ` its input (`a₀ = x`, `a_{ℓ+1} = φ(z_ℓ)`),
//!
//! ```text
//! δ_L = ∂L/∂f = (f − y)/B,   ∂L/∂W^ℓ = m_ℓ a_ℓᵀ δ_ℓ,   δ_{ℓ−1} = φ'(z_{ℓ−1}) ⊙ (m_ℓ δ_ℓ W^ℓᵀ)
//! ```
//!
//! so every product goes through the backend's fast [`Kernels`]; `tests/gradients.rs` checks
//! the result against burn's autodiff.
//!
//! **Layout.** In memory, weights are stored `[fan_in, fan_out]` (burn's `Linear` layout; the
//! forward is `x · W`, and this is ~1.4× faster on the CPU than multiplying by a transpose,
//! see BENCHMARKS.md). In checkpoints and every exported file they are `[fan_out, fan_in]`:
//! the paper's W^ℓ (h^{ℓ+1} = W^ℓ φ(h^ℓ)/√N) and PyTorch's `nn.Linear.weight`
//! ([`Export::Transpose`]).

use super::{Activation, Export, Gradients, LayerKind, Loss, ParamInfo, ParamTable, Parameterization, UpdateRule};
use crate::config::{OptimizerKind, RunConfig};
use crate::kernels::Kernels;
use burn::tensor::{Tensor, TensorData};

/// Shapes, activation and parameterization of one MLP.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpSpec {
    pub input_dim: usize,
    pub width: usize,
    /// Number of hidden layers L.
    pub depth: usize,
    pub output_dim: usize,
    pub activation: Activation,
    pub bias: bool,
    pub table: ParamTable,
}

impl MlpSpec {
    /// The network a run config describes, for data of the given dimensions.
    pub fn from_config(cfg: &RunConfig, input_dim: usize, output_dim: usize) -> Self {
        let m = &cfg.model;
        MlpSpec {
            input_dim,
            width: m.width,
            depth: m.depth,
            output_dim,
            activation: m.activation,
            bias: m.bias,
            table: ParamTable {
                parameterization: m.parameterization,
                width: m.width,
                input_dim,
                gamma0: m.gamma0,
                init_variance: m.init_variance,
                rule: match cfg.optimizer.kind {
                    OptimizerKind::Sgd => UpdateRule::Sgd,
                    OptimizerKind::Adam => UpdateRule::Adam,
                },
                depth_lr_scale: 1.0,
                proportional: m.proportional,
            },
        }
    }

    pub fn parameterization(&self) -> Parameterization {
        self.table.parameterization
    }

    /// Role of weight W^ℓ.
    pub fn weight_kind(&self, layer: usize) -> LayerKind {
        if layer == 0 {
            LayerKind::Input
        } else if layer == self.depth {
            LayerKind::Readout
        } else {
            LayerKind::Hidden
        }
    }

    /// Every parameter, in the canonical order: weights W⁰…W^L, then biases b⁰…b^{L−1}.
    pub fn params(&self) -> Vec<ParamInfo> {
        let mut out = Vec::new();
        for l in 0..=self.depth {
            let fan_in = if l == 0 { self.input_dim } else { self.width };
            let fan_out = if l == self.depth { self.output_dim } else { self.width };
            let kind = self.weight_kind(l);
            out.push(ParamInfo {
                name: format!("layers.{l}.weight"),
                kind,
                layer: l,
                shape: [fan_in, fan_out],
                export: Export::Transpose,
                fan_in,
                rule: self.table.layer(kind),
            });
        }
        if self.bias {
            for l in 0..self.depth {
                out.push(ParamInfo {
                    name: format!("layers.{l}.bias"),
                    kind: LayerKind::Bias,
                    layer: l,
                    shape: [1, self.width],
                    export: Export::Reshape(vec![self.width]),
                    fan_in: 1,
                    rule: self.table.layer(LayerKind::Bias),
                });
            }
        }
        out
    }
}

/// Everything a forward pass computed: pre-activations h¹…h^L and the output f.
pub struct Trace<B: Kernels> {
    pub preactivations: Vec<Tensor<B, 2>>,
    pub output: Tensor<B, 2>,
}

/// What back-propagation needs from the forward pass.
struct ForwardCache<B: Kernels> {
    /// Inputs a_ℓ of every weight W^ℓ (a₀ = x).
    inputs: Vec<Tensor<B, 2>>,
    /// φ'(z_ℓ) for every hidden layer (None for linear networks).
    derivatives: Vec<Option<Tensor<B, 2>>>,
    output: Tensor<B, 2>,
}

/// Pre-activation z_ℓ = m_ℓ a_ℓ W^ℓ (+ b_ℓ).
fn layer<B: Kernels>(
    s: &MlpSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    l: usize,
    input: &Tensor<B, 2>,
) -> Tensor<B, 2> {
    let z = B::matmul(input, &params[l], info[l].rule.multiplier); // [batch, fan_out]
    if s.bias && l < s.depth {
        z + params[s.depth + 1 + l].clone() // [1, N] broadcasts over the batch
    } else {
        z
    }
}

fn forward_cache<B: Kernels>(
    s: &MlpSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
    derivatives: bool,
) -> ForwardCache<B> {
    let mut inputs = Vec::with_capacity(s.depth + 1);
    let mut derivs = Vec::with_capacity(s.depth);
    inputs.push(x);
    for l in 0..s.depth {
        let z = layer(s, info, params, l, &inputs[l]);
        let (a, d) = B::activate(s.activation, z, derivatives);
        inputs.push(a);
        derivs.push(d);
    }
    let output = layer(s, info, params, s.depth, &inputs[s.depth]);
    ForwardCache { inputs, derivatives: derivs, output }
}

/// The network output f(x), shape [batch, C].
pub fn forward<B: Kernels>(s: &MlpSpec, info: &[ParamInfo], params: &[Tensor<B, 2>], x: Tensor<B, 2>) -> Tensor<B, 2> {
    forward_cache(s, info, params, x, false).output
}

/// Forward pass keeping every pre-activation h^{ℓ+1} = z_ℓ.
pub fn forward_trace<B: Kernels>(
    s: &MlpSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
) -> Trace<B> {
    let mut preactivations = Vec::with_capacity(s.depth);
    let mut input = x;
    for l in 0..s.depth {
        let z = layer(s, info, params, l, &input);
        preactivations.push(z.clone());
        input = B::activate(s.activation, z, false).0;
    }
    let output = layer(s, info, params, s.depth, &input);
    Trace { preactivations, output }
}

/// Back-propagate `delta` = ∂(·)/∂f from the output: calls `visit(ℓ, a_ℓ, δ_ℓ)` for
/// ℓ = L, …, 0 with the input a_ℓ of W^ℓ and the signal δ_ℓ = ∂(·)/∂z_ℓ (eq. 79).
fn backward<B: Kernels>(
    s: &MlpSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    cache: ForwardCache<B>,
    delta: Tensor<B, 2>,
    mut visit: impl FnMut(usize, Tensor<B, 2>, &Tensor<B, 2>),
) {
    let ForwardCache { mut inputs, mut derivatives, .. } = cache;
    let mut delta = delta;
    for l in (0..=s.depth).rev() {
        let a = inputs.pop().expect("one input per layer");
        visit(l, a, &delta);
        if l > 0 {
            let back = B::matmul_nt(&delta, &params[l], info[l].rule.multiplier); // [batch, fan_in]
            delta = match derivatives.pop().expect("one derivative per hidden layer") {
                Some(d) => B::hadamard(back, &d),
                None => back,
            };
        }
    }
}

/// Gradients of Σ δ·f for every parameter from a forward cache.
fn gradients_from<B: Kernels>(
    s: &MlpSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    cache: ForwardCache<B>,
    delta: Tensor<B, 2>,
) -> Gradients<B> {
    let depth = s.depth;
    let mut grads: Vec<Option<Tensor<B, 2>>> = vec![None; params.len()];
    backward(s, info, params, cache, delta, |l, a, delta| {
        grads[l] = Some(B::matmul_tn(&a, delta, info[l].rule.multiplier)); // [fan_in, fan_out]
        if s.bias && l < depth {
            grads[depth + 1 + l] = Some(delta.clone().sum_dim(0)); // [1, N]
        }
    });
    grads.into_iter().map(|g| g.expect("every parameter gets a gradient")).collect()
}

/// Loss, outputs and gradients on one batch.
pub fn gradients<B: Kernels>(
    s: &MlpSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
    y: Tensor<B, 2>,
    loss: Loss,
) -> (Tensor<B, 1>, Tensor<B, 2>, Gradients<B>) {
    let cache = forward_cache(s, info, params, x, true);
    let output = cache.output.clone();
    let (value, delta) = loss.value_and_error(&output, &y);
    (value, output, gradients_from(s, info, params, cache, delta))
}

/// The gradient of Σ δ·f for every parameter.
pub fn vjp<B: Kernels>(
    s: &MlpSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
    delta: Tensor<B, 2>,
) -> Gradients<B> {
    let cache = forward_cache(s, info, params, x, true);
    gradients_from(s, info, params, cache, delta)
}

/// Per-sample Jacobian factors of output `c`: for every weight W^ℓ the inputs a_ℓ
/// ([batch, fan_in]) and the signals δ_ℓ = ∂f_c/∂z_ℓ ([batch, fan_out]), so that
/// ∂f_c(x_μ)/∂W^ℓ = m_ℓ a_ℓ[μ] ⊗ δ_ℓ[μ] (and ∂f_c/∂b_ℓ = δ_ℓ[μ]). Listed ℓ = 0, …, L.
pub fn jacobian_factors<B: Kernels>(
    s: &MlpSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
    c: usize,
) -> Vec<(Tensor<B, 2>, Tensor<B, 2>)> {
    let cache = forward_cache(s, info, params, x, true);
    let [batch, outputs] = cache.output.dims();
    let mut onehot = vec![0.0f32; batch * outputs];
    (0..batch).for_each(|i| onehot[i * outputs + c] = 1.0);
    let delta = Tensor::from_data(TensorData::new(onehot, [batch, outputs]), &cache.output.device());
    let mut out = Vec::with_capacity(s.depth + 1);
    backward(s, info, params, cache, delta, |_, a, d| out.push((a, d.clone())));
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, tensor_to_vec};
    use burn::backend::Flex;

    fn spec(depth: usize, bias: bool) -> MlpSpec {
        let mut cfg = RunConfig::default();
        cfg.model.depth = depth;
        cfg.model.width = 8;
        cfg.model.bias = bias;
        MlpSpec::from_config(&cfg, 5, 3)
    }

    #[test]
    fn param_list_and_layouts() {
        let s = spec(3, true);
        let p = s.params();
        assert_eq!(p.len(), 4 + 3);
        assert_eq!(p[0].shape, [5, 8]);
        assert_eq!(p[0].export_shape(), vec![8, 5]);
        assert_eq!(p[3].shape, [8, 3]);
        assert_eq!(p[3].kind, LayerKind::Readout);
        assert_eq!(p[4].name, "layers.0.bias");
        let data: Vec<f32> = (0..40).map(|i| i as f32).collect();
        assert_eq!(p[0].from_export(&p[0].to_export(&data)), data);
        // Export element (i, j) = in-memory element (j, i).
        assert_eq!(p[0].to_export(&data)[2 * 5 + 3], data[3 * 8 + 2]);
    }

    #[test]
    fn forward_matches_a_hand_computation() {
        let dev = Default::default();
        let s = spec(1, false);
        let m = Model::<Flex>::init(s, 7, &dev);
        let host = m.to_host();
        let x: Vec<f32> = (0..5).map(|i| 0.3 * i as f32 - 0.5).collect();
        let out = tensor_to_vec(m.forward(Tensor::from_data(TensorData::new(x.clone(), [1, 5]), &dev)));
        let (m0, m1) = (m.info[0].rule.multiplier, m.info[1].rule.multiplier);
        for c in 0..3 {
            let mut f = 0.0f64;
            for j in 0..8 {
                let h: f64 = (0..5).map(|i| x[i] as f64 * host[0][i * 8 + j] as f64).sum::<f64>() * m0;
                f += h.tanh() * host[1][j * 3 + c] as f64;
            }
            assert!((f * m1 - out[c] as f64).abs() < 1e-5, "output {c}");
        }
    }

    #[test]
    fn init_has_the_table_variance() {
        let mut cfg = RunConfig::default();
        cfg.model.width = 512;
        cfg.model.init_variance = 2.0;
        let m = Model::<Flex>::init(MlpSpec::from_config(&cfg, 64, 1), 1, &Default::default());
        let w = &m.to_host()[1];
        let var = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var - 2.0).abs() < 0.02, "variance {var}");
    }
}
