//! The multilayer perceptron, written term by term as in the DMFT tutorial, eq. (75):
//!
//! ```text
//! h¹      = m₀ · x W⁰              (+ b⁰)     x: [B, D]   W⁰: [D, N]
//! h^{ℓ+1} = m_ℓ · φ(h^ℓ) W^ℓ       (+ b^ℓ)    W^ℓ: [N, N],  1 ≤ ℓ < L
//! f       = m_L · φ(h^L) W^L                   W^L: [N, C]
//! ```
//!
//! with the multipliers m and init scales of the [`ParamTable`]. Gradients are computed by
//! explicit back-propagation ([`Mlp::gradients`]), the recursion of the tutorial's eq. (79):
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
//! the paper's W^ℓ (h^{ℓ+1} = W^ℓ φ(h^ℓ)/√N) and PyTorch's `nn.Linear.weight`. Only
//! [`ParamInfo::to_export`] and [`ParamInfo::from_export`] convert between the two.

use super::{Activation, LayerKind, LayerRule, ParamTable, Parameterization, UpdateRule};
use crate::config::{OptimizerKind, RunConfig};
use crate::kernels::Kernels;
use crate::rng::{Purpose, normals, stream};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use std::sync::Arc;

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

/// What one parameter tensor is.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// Name in checkpoints: `layers.{ℓ}.weight` or `layers.{ℓ}.bias`.
    pub name: String,
    pub kind: LayerKind,
    /// Layer index ℓ (W^ℓ maps layer ℓ to ℓ+1).
    pub layer: usize,
    /// In-memory shape: `[fan_in, fan_out]` for weights, `[1, N]` for biases.
    pub shape: [usize; 2],
    pub rule: LayerRule,
}

impl ParamInfo {
    pub fn is_bias(&self) -> bool {
        self.kind == LayerKind::Bias
    }

    /// Shape in exported files: `[fan_out, fan_in]` for weights, `[N]` for biases.
    pub fn export_shape(&self) -> Vec<usize> {
        if self.is_bias() { vec![self.shape[1]] } else { vec![self.shape[1], self.shape[0]] }
    }

    /// In-memory (row-major `[fan_in, fan_out]`) → exported (row-major `[fan_out, fan_in]`).
    pub fn to_export(&self, data: &[f32]) -> Vec<f32> {
        if self.is_bias() { data.to_vec() } else { transpose(data, self.shape[0], self.shape[1]) }
    }

    /// Exported → in-memory layout.
    pub fn from_export(&self, data: &[f32]) -> Vec<f32> {
        if self.is_bias() { data.to_vec() } else { transpose(data, self.shape[1], self.shape[0]) }
    }
}

/// Row-major `[rows, cols]` → row-major `[cols, rows]`.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    const BLOCK: usize = 64;
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                for c in c0..(c0 + BLOCK).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
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
                    rule: self.table.layer(LayerKind::Bias),
                });
            }
        }
        out
    }
}

/// An MLP on backend `B`: the spec and its parameters in [`MlpSpec::params`] order.
#[derive(Clone, Debug)]
pub struct Mlp<B: Backend> {
    pub spec: Arc<MlpSpec>,
    pub info: Arc<Vec<ParamInfo>>,
    pub params: Vec<Tensor<B, 2>>,
}

/// Everything a forward pass computed: pre-activations h¹…h^L and the output f.
pub struct Trace<B: Backend> {
    pub preactivations: Vec<Tensor<B, 2>>,
    pub output: Tensor<B, 2>,
}

impl<B: Backend> Mlp<B> {
    /// Fresh initialization from `seed`: entry (i, j) of W^ℓ (export layout) is the
    /// `i·fan_in + j`-th normal draw of stream `(seed, Init, ℓ)` times the table's init std, so
    /// the same seed gives the same weights on every backend.
    pub fn init(spec: MlpSpec, seed: u64, device: &B::Device) -> Self {
        let info = spec.params();
        let host: Vec<Vec<f32>> = info
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let n = p.shape[0] * p.shape[1];
                if p.rule.init_std == 0.0 {
                    return vec![0.0; n];
                }
                let draws = normals(&mut stream(seed, Purpose::Init, i as u64), n);
                let export: Vec<f32> = draws.iter().map(|z| (z * p.rule.init_std) as f32).collect();
                p.from_export(&export)
            })
            .collect();
        Self::from_host(spec, host, device)
    }

    /// Build from host data in the in-memory layout, one vector per parameter.
    pub fn from_host(spec: MlpSpec, host: Vec<Vec<f32>>, device: &B::Device) -> Self {
        let info = spec.params();
        let params =
            info.iter().zip(host).map(|(p, data)| Tensor::from_data(TensorData::new(data, p.shape), device)).collect();
        Mlp { spec: Arc::new(spec), info: Arc::new(info), params }
    }

    /// Parameters copied to the host, in the in-memory layout.
    pub fn to_host(&self) -> Vec<Vec<f32>> {
        self.params.iter().map(|t| tensor_to_vec(t.clone())).collect()
    }
}

/// What back-propagation needs from the forward pass.
struct ForwardCache<B: Backend> {
    /// Inputs a_ℓ of every weight W^ℓ (a₀ = x).
    inputs: Vec<Tensor<B, 2>>,
    /// φ'(z_ℓ) for every hidden layer (None for linear networks).
    derivatives: Vec<Option<Tensor<B, 2>>>,
    output: Tensor<B, 2>,
}

impl<B: Kernels> Mlp<B> {
    /// Pre-activation z_ℓ = m_ℓ a_ℓ W^ℓ (+ b_ℓ).
    fn layer(&self, l: usize, input: &Tensor<B, 2>) -> Tensor<B, 2> {
        let z = B::matmul(input, &self.params[l], self.info[l].rule.multiplier); // [batch, fan_out]
        if self.spec.bias && l < self.spec.depth {
            z + self.params[self.spec.depth + 1 + l].clone() // [1, N] broadcasts over the batch
        } else {
            z
        }
    }

    fn forward_cache(&self, x: Tensor<B, 2>, derivatives: bool) -> ForwardCache<B> {
        let depth = self.spec.depth;
        let mut inputs = Vec::with_capacity(depth + 1);
        let mut derivs = Vec::with_capacity(depth);
        inputs.push(x);
        for l in 0..depth {
            let z = self.layer(l, &inputs[l]);
            let (a, d) = B::activate(self.spec.activation, z, derivatives);
            inputs.push(a);
            derivs.push(d);
        }
        let output = self.layer(depth, &inputs[depth]);
        ForwardCache { inputs, derivatives: derivs, output }
    }

    /// A copy whose parameters are `params + scale · direction` (one tensor per parameter).
    pub fn perturbed(&self, direction: &[Tensor<B, 2>], scale: f64) -> Self {
        let params = self.params.iter().zip(direction).map(|(p, d)| B::axpy(p.clone(), scale, d)).collect();
        Mlp { spec: self.spec.clone(), info: self.info.clone(), params }
    }

    /// The network output f(x), shape [batch, C].
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward_cache(x, false).output
    }

    /// Forward pass keeping every pre-activation h^{ℓ+1} = z_ℓ.
    pub fn forward_trace(&self, x: Tensor<B, 2>) -> Trace<B> {
        let mut preactivations = Vec::with_capacity(self.spec.depth);
        let mut input = x;
        for l in 0..self.spec.depth {
            let z = self.layer(l, &input);
            preactivations.push(z.clone());
            input = B::activate(self.spec.activation, z, false).0;
        }
        let output = self.layer(self.spec.depth, &input);
        Trace { preactivations, output }
    }

    /// Back-propagate `delta` = ∂(·)/∂f from the output: calls `visit(ℓ, a_ℓ, δ_ℓ)` for
    /// ℓ = L, …, 0 with the input a_ℓ of W^ℓ and the signal δ_ℓ = ∂(·)/∂z_ℓ (eq. 79).
    fn backward(
        &self,
        cache: ForwardCache<B>,
        delta: Tensor<B, 2>,
        mut visit: impl FnMut(usize, Tensor<B, 2>, &Tensor<B, 2>),
    ) {
        let ForwardCache { mut inputs, mut derivatives, .. } = cache;
        let mut delta = delta;
        for l in (0..=self.spec.depth).rev() {
            let a = inputs.pop().expect("one input per layer");
            visit(l, a, &delta);
            if l > 0 {
                let back = B::matmul_nt(&delta, &self.params[l], self.info[l].rule.multiplier); // [batch, fan_in]
                delta = match derivatives.pop().expect("one derivative per hidden layer") {
                    Some(d) => B::hadamard(back, &d),
                    None => back,
                };
            }
        }
    }

    /// Loss L = (1/2B) Σ_μc (f_μc − y_μc)² and its gradient for every parameter (in
    /// [`MlpSpec::params`] order), by back-propagation.
    pub fn gradients(&self, x: Tensor<B, 2>, y: Tensor<B, 2>) -> (f64, Vec<Tensor<B, 2>>) {
        let depth = self.spec.depth;
        let batch = x.dims()[0] as f64;
        let cache = self.forward_cache(x, true);
        let err = cache.output.clone() - y; // [batch, C]
        let loss = scalar(err.clone().powi_scalar(2).sum()) * 0.5 / batch;
        let mut grads: Vec<Option<Tensor<B, 2>>> = vec![None; self.params.len()];
        let bias = self.spec.bias;
        self.backward(cache, err.mul_scalar(1.0 / batch), |l, a, delta| {
            grads[l] = Some(B::matmul_tn(&a, delta, self.info[l].rule.multiplier)); // [fan_in, fan_out]
            if bias && l < depth {
                grads[depth + 1 + l] = Some(delta.clone().sum_dim(0)); // [1, N]
            }
        });
        (loss, grads.into_iter().map(|g| g.expect("every parameter gets a gradient")).collect())
    }

    /// Per-sample Jacobian factors of output `c`: for every weight W^ℓ the inputs a_ℓ
    /// ([batch, fan_in]) and the signals δ_ℓ = ∂f_c/∂z_ℓ ([batch, fan_out]), so that
    /// ∂f_c(x_μ)/∂W^ℓ = m_ℓ a_ℓ[μ] ⊗ δ_ℓ[μ] (and ∂f_c/∂b_ℓ = δ_ℓ[μ]). Listed ℓ = 0, …, L.
    pub fn jacobian_factors(&self, x: Tensor<B, 2>, c: usize) -> Vec<(Tensor<B, 2>, Tensor<B, 2>)> {
        let cache = self.forward_cache(x, true);
        let [batch, outputs] = cache.output.dims();
        let mut onehot = vec![0.0f32; batch * outputs];
        (0..batch).for_each(|i| onehot[i * outputs + c] = 1.0);
        let delta = Tensor::from_data(TensorData::new(onehot, [batch, outputs]), &cache.output.device());
        let mut out = Vec::with_capacity(self.spec.depth + 1);
        self.backward(cache, delta, |_, a, d| out.push((a, d.clone())));
        out.reverse();
        out
    }
}

/// Copy any float tensor to a host `Vec<f32>` (row-major).
pub fn tensor_to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Read a one-element tensor as f64.
pub fn scalar<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    t.into_data().iter::<f64>().next().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let m = Mlp::<Flex>::init(s, 7, &dev);
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
        let m = Mlp::<Flex>::init(MlpSpec::from_config(&cfg, 64, 1), 1, &Default::default());
        let w = &m.to_host()[1];
        let var = w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var - 2.0).abs() < 0.02, "variance {var}");
    }
}
