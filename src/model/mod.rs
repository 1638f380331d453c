//! Networks and how they scale with width: the parameterization table, the MLP and the
//! residual CNN, behind one interface.
//!
//! A [`Network`] is an architecture (shapes, activation, parameterization; no tensors). A
//! [`Model`] is a network with its parameters on a backend: every parameter is held as a 2-D
//! tensor (the optimizer, checkpoints and curvature only ever see a list of 2-D tensors), and
//! [`ParamInfo`] says what each one is — its name in checkpoints, its [`LayerKind`], its
//! fan-in, its export layout (PyTorch's) and its row of the parameterization table.
//!
//! Training, checkpoints, resume, spectra, curvature and the coordinate check take a `Model`;
//! only [`Model::forward`], [`Model::backward`] and [`Model::features`] look inside it. Both
//! networks back-propagate explicitly through the backend's [`Kernels`] (the MLP by eq. 79 of
//! the tutorial, the ResNet through its convolutions), and `tests/gradients.rs` checks both
//! against burn's autodiff.

mod loss;
mod mlp;
mod param;
mod resnet;

pub use crate::theory::activation::{Activation, erf};
pub use loss::{Loss, accuracy};
pub use mlp::{MlpSpec, Trace, jacobian_factors as mlp_jacobian_factors};
pub use param::{LayerKind, LayerRule, ParamTable, Parameterization, UpdateRule};
pub use resnet::{Norm, ResNetSpec, ResidualScale};

use crate::array::transpose;
use crate::config::RunConfig;
pub use crate::data::DataShape;
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::rng::{Purpose, normals, stream};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use std::sync::Arc;

/// A network architecture: what `model.kind` selects.
#[derive(Clone, Debug, PartialEq)]
pub enum Network {
    Mlp(MlpSpec),
    ResNet(ResNetSpec),
}

/// How an in-memory parameter maps to its exported (checkpoint, PyTorch) layout.
#[derive(Clone, Debug, PartialEq)]
pub enum Export {
    /// In memory `[fan_in, fan_out]`, exported transposed as `[fan_out, fan_in]` (nn.Linear).
    Transpose,
    /// Same row-major data under another shape: conv kernels `[c_out, c_in·k·k]` ↔
    /// `[c_out, c_in, k, k]` (nn.Conv2d), biases `[1, N]` ↔ `[N]`.
    Reshape(Vec<usize>),
}

/// What one parameter tensor is.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// Name in checkpoints (PyTorch-style): `layers.{ℓ}.weight`, `blocks.{b}.conv2.weight`, ….
    pub name: String,
    pub kind: LayerKind,
    /// Position in the network (W^ℓ maps layer ℓ to ℓ+1 in the MLP).
    pub layer: usize,
    /// In-memory shape.
    pub shape: [usize; 2],
    pub export: Export,
    /// Inputs feeding one output unit (conv: c_in·k²).
    pub fan_in: usize,
    pub rule: LayerRule,
}

impl ParamInfo {
    pub fn is_bias(&self) -> bool {
        self.kind == LayerKind::Bias
    }

    /// A conv kernel's `[c_out, c_in, k_h, k_w]`.
    pub fn conv_shape(&self) -> Option<[usize; 4]> {
        match &self.export {
            Export::Reshape(s) if s.len() == 4 => Some([s[0], s[1], s[2], s[3]]),
            _ => None,
        }
    }

    /// Shape in exported files.
    pub fn export_shape(&self) -> Vec<usize> {
        match &self.export {
            Export::Transpose => vec![self.shape[1], self.shape[0]],
            Export::Reshape(s) => s.clone(),
        }
    }

    /// The matrix the spectra analyse: exported shape for 2-D weights, the square unfolding
    /// (c_out·k) × (c_in·k) for conv kernels; None for biases.
    pub fn matrix_shape(&self) -> Option<(usize, usize)> {
        if self.is_bias() {
            return None;
        }
        Some(match self.conv_shape() {
            Some([co, ci, kh, kw]) => (co * kh, ci * kw),
            None => {
                let s = self.export_shape();
                (s[0], s[1])
            }
        })
    }

    /// Spectra kind name: `input`, `hidden`, `readout`, or `conv-input` / `conv-hidden`.
    pub fn matrix_kind(&self) -> String {
        if self.conv_shape().is_some() { format!("conv-{}", self.kind.name()) } else { self.kind.name().to_string() }
    }

    /// In-memory (row-major) → exported (row-major).
    pub fn to_export(&self, data: &[f32]) -> Vec<f32> {
        match self.export {
            Export::Transpose => transpose(data, self.shape[0], self.shape[1]),
            Export::Reshape(_) => data.to_vec(),
        }
    }

    /// Exported → in-memory layout.
    pub fn from_export(&self, data: &[f32]) -> Vec<f32> {
        match self.export {
            Export::Transpose => transpose(data, self.shape[1], self.shape[0]),
            Export::Reshape(_) => data.to_vec(),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape[0] * self.shape[1]
    }
}

impl From<MlpSpec> for Network {
    fn from(s: MlpSpec) -> Self {
        Network::Mlp(s)
    }
}

impl From<ResNetSpec> for Network {
    fn from(s: ResNetSpec) -> Self {
        Network::ResNet(s)
    }
}

impl Network {
    /// The network a run config describes, for data of this shape.
    pub fn from_config(cfg: &RunConfig, shape: DataShape) -> Result<Self> {
        use crate::config::ModelKind;
        Ok(match cfg.model.kind {
            ModelKind::Mlp => Network::Mlp(MlpSpec::from_config(cfg, shape.input_dim, shape.outputs)),
            ModelKind::Resnet => {
                let image = shape.image.ok_or_else(|| {
                    Error::config(
                        "model.kind = \"resnet\" needs image data",
                        "use data.kind = \"cifar10\" (or model.kind = \"mlp\" for vectors)",
                    )
                })?;
                Network::ResNet(ResNetSpec::from_config(cfg, image, shape.outputs))
            }
        })
    }

    /// Every parameter, in the canonical order (checkpoint order, optimizer order).
    pub fn params(&self) -> Vec<ParamInfo> {
        match self {
            Network::Mlp(s) => s.params(),
            Network::ResNet(s) => s.params(),
        }
    }

    pub fn table(&self) -> &ParamTable {
        match self {
            Network::Mlp(s) => &s.table,
            Network::ResNet(s) => &s.table,
        }
    }

    pub fn activation(&self) -> Activation {
        match self {
            Network::Mlp(s) => s.activation,
            Network::ResNet(s) => s.activation,
        }
    }

    /// Features per sample (an image's channels × height × width).
    pub fn input_dim(&self) -> usize {
        match self {
            Network::Mlp(s) => s.input_dim,
            Network::ResNet(s) => s.image.iter().product(),
        }
    }

    pub fn output_dim(&self) -> usize {
        match self {
            Network::Mlp(s) => s.output_dim,
            Network::ResNet(s) => s.output_dim,
        }
    }

    pub fn width(&self) -> usize {
        self.table().width
    }

    /// Number of trainable floats, computed without listing the parameters (a depth of 10⁸
    /// must be refused by the memory check, not materialized).
    pub fn param_floats(&self) -> f64 {
        match self {
            Network::Mlp(s) => {
                let (d, n, l, c) = (s.input_dim as f64, s.width as f64, s.depth as f64, s.output_dim as f64);
                d * n + (l - 1.0) * n * n + n * c + if s.bias { l * n } else { 0.0 }
            }
            Network::ResNet(s) => {
                let (n, c) = (s.width as f64, s.output_dim as f64);
                let k2 = (resnet::KERNEL * resnet::KERNEL) as f64;
                s.image[0] as f64 * k2 * n + 2.0 * s.blocks as f64 * k2 * n * n + n * c
            }
        }
    }

    /// (rows, cols) of the largest matrix the spectra analyse, without listing the parameters.
    pub fn largest_matrix(&self) -> (usize, usize) {
        match self {
            Network::Mlp(s) => {
                let shapes = [(s.width, s.input_dim), (s.width, s.width), (s.output_dim, s.width)];
                shapes.into_iter().max_by_key(|(r, c)| r.saturating_mul(*c)).unwrap_or((0, 0))
            }
            Network::ResNet(s) => (s.width * resnet::KERNEL, s.width * resnet::KERNEL),
        }
    }

    /// Floats of activations kept for back-propagation of a batch of `batch` samples
    /// (an estimate for the memory check).
    pub fn activation_floats(&self, batch: usize) -> f64 {
        let b = batch as f64;
        match self {
            Network::Mlp(s) => b * (s.input_dim as f64 + 3.0 * s.width as f64 * s.depth as f64 + s.output_dim as f64),
            Network::ResNet(s) => b * s.activation_floats_per_image(),
        }
    }
}

/// A network with its parameters on backend `B`, in [`Network::params`] order.
#[derive(Clone, Debug)]
pub struct Model<B: Backend> {
    pub spec: Arc<Network>,
    pub info: Arc<Vec<ParamInfo>>,
    pub params: Vec<Tensor<B, 2>>,
}

/// One backward pass: the gradient of Σ δ·f with respect to every parameter, for a given
/// output cotangent δ ([batch, C]).
pub type Gradients<B> = Vec<Tensor<B, 2>>;

impl<B: Backend> Model<B> {
    /// Fresh initialization from `seed`: entry i of parameter p (export layout, row-major) is
    /// the i-th normal draw of stream `(seed, Init, p)` times the table's init std, so the
    /// same seed gives the same weights on every backend.
    pub fn init(spec: impl Into<Network>, seed: u64, device: &B::Device) -> Self {
        let spec = spec.into();
        let info = spec.params();
        let host: Vec<Vec<f32>> = info
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let n = p.numel();
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
    pub fn from_host(spec: impl Into<Network>, host: Vec<Vec<f32>>, device: &B::Device) -> Self {
        let spec = spec.into();
        let info = spec.params();
        let params =
            info.iter().zip(host).map(|(p, data)| Tensor::from_data(TensorData::new(data, p.shape), device)).collect();
        Model { spec: Arc::new(spec), info: Arc::new(info), params }
    }

    /// Parameters copied to the host, in the in-memory layout.
    pub fn to_host(&self) -> Vec<Vec<f32>> {
        self.params.iter().map(|t| tensor_to_vec(t.clone())).collect()
    }

    /// Parameters in export layout with their names (what checkpoints and spectra read).
    pub fn export(&self) -> Vec<crate::checkpoint::NamedTensor> {
        self.info
            .iter()
            .zip(self.to_host())
            .map(|(p, h)| crate::checkpoint::NamedTensor {
                name: p.name.clone(),
                shape: p.export_shape(),
                data: p.to_export(&h),
            })
            .collect()
    }

    /// The MLP spec, if this is an MLP.
    pub fn mlp(&self) -> Option<&MlpSpec> {
        match &*self.spec {
            Network::Mlp(s) => Some(s),
            Network::ResNet(_) => None,
        }
    }
}

impl<B: Kernels> Model<B> {
    /// A copy whose parameters are `params + scale · direction` (one tensor per parameter).
    pub fn perturbed(&self, direction: &[Tensor<B, 2>], scale: f64) -> Self {
        let params = self.params.iter().zip(direction).map(|(p, d)| B::axpy(p.clone(), scale, d)).collect();
        Model { spec: self.spec.clone(), info: self.info.clone(), params }
    }

    /// The network output f(x), shape [batch, C].
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match &*self.spec {
            Network::Mlp(s) => mlp::forward(s, &self.info, &self.params, x),
            Network::ResNet(s) => resnet::forward(s, &self.info, &self.params, x),
        }
    }

    /// Loss on (x, y) and its gradient for every parameter, by back-propagation. Returns the
    /// loss as a one-element tensor (read it with [`scalar`] when needed: on a GPU that is a
    /// synchronization), the outputs, and the gradients.
    pub fn gradients(
        &self,
        x: Tensor<B, 2>,
        y: Tensor<B, 2>,
        loss: Loss,
    ) -> (Tensor<B, 1>, Tensor<B, 2>, Gradients<B>) {
        match &*self.spec {
            Network::Mlp(s) => mlp::gradients(s, &self.info, &self.params, x, y, loss),
            Network::ResNet(s) => resnet::gradients(s, &self.info, &self.params, x, y, loss),
        }
    }

    /// Vector–Jacobian product: the gradient of Σ_μc δ_μc f_c(x_μ) for every parameter.
    pub fn backward(&self, x: Tensor<B, 2>, delta: Tensor<B, 2>) -> Gradients<B> {
        match &*self.spec {
            Network::Mlp(s) => mlp::vjp(s, &self.info, &self.params, x, delta),
            Network::ResNet(s) => resnet::vjp(s, &self.info, &self.params, x, delta),
        }
    }

    /// The hidden representations a coordinate check and the kernels look at, flattened to
    /// [batch, features]: h¹…h^L for the MLP; the stem output and every block's output for
    /// the ResNet. Named `h1`, `h2`, ….
    pub fn features(&self, x: Tensor<B, 2>) -> Vec<Tensor<B, 2>> {
        match &*self.spec {
            Network::Mlp(s) => mlp::forward_trace(s, &self.info, &self.params, x).preactivations,
            Network::ResNet(s) => resnet::features(s, &self.info, &self.params, x),
        }
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
