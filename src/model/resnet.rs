//! The residual CNN of the paper's App. G.1: a 3×3 stem convolution, `depth` residual blocks
//! of two 3×3 convolutions at constant width N (channels), global average pooling and a
//! linear readout. The resolution is constant, or halved by a 2×2 average pool after every
//! `downsample_every` blocks (no parameters: the width and the parameterization are
//! unchanged). No BatchNorm (it couples the samples of a batch and breaks the μP/DMFT
//! picture); optionally a parameter-free LayerNorm or GroupNorm.
//!
//! ```text
//! h₀      = m_in · conv(x, W_stem)                         x: [B, 3, H, W]   W_stem: [N, 3, 3, 3]
//! h_{b+1} = h_b + β · m · conv(φ(𝒩(z_b)), W_b²),  z_b = m · conv(φ(𝒩(h_b)), W_b¹)    W_b¹, W_b²: [N, N, 3, 3]
//! f       = m_out · mean_{HW}(φ(𝒩(h_k))) W_out                                          W_out: [N, C]
//! ```
//!
//! (with h_{b+1} ← avgpool₂ₓ₂(h_{b+1}) after every `downsample_every`-th block). 𝒩 is the identity, or a normalization without learned parameters; β the residual-branch
//! scale (1, 1/√depth, or depth-μP: 1/√depth with the Adam rate of hidden layers also scaled
//! by 1/√depth, Yang et al. 2023, Bordelon et al. 2024). The multipliers m and the rates come
//! from the same [`ParamTable`] as the MLP with each layer's fan-in (3·9 for the stem, 9N for
//! hidden convolutions), so μP, NTK and SP mean the same thing in both networks.
//!
//! Gradients are back-propagated explicitly through the backend's convolution kernels
//! ([`Kernels::conv3x3`], [`Kernels::conv3x3_backward`]), as for the MLP; `tests/gradients.rs`
//! checks them against burn's autodiff.

use super::{Activation, Export, Gradients, LayerKind, Loss, ParamInfo, ParamTable, UpdateRule};
use crate::config::{OptimizerKind, RunConfig};
use crate::kernels::Kernels;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Normalization inside the residual branches (no learned parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    /// None (the default: the μP/DMFT setting).
    #[default]
    None,
    /// Over channels and positions of each sample (GroupNorm with one group).
    Layer,
    /// Over groups of `model.group_channels` channels and all positions of each sample.
    Group,
}

/// Scale β of each residual branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResidualScale {
    /// β = 1.
    #[default]
    One,
    /// β = 1/√depth.
    InvSqrtDepth,
    /// β = 1/√depth, and Adam rates of hidden layers × 1/√depth (depth-μP).
    DepthMup,
}

/// Shapes, activation and parameterization of one residual CNN.
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetSpec {
    /// Input image [channels, height, width].
    pub image: [usize; 3],
    /// Channels N.
    pub width: usize,
    /// Residual blocks.
    pub blocks: usize,
    pub output_dim: usize,
    pub activation: Activation,
    pub norm: Norm,
    /// Channels per group for [`Norm::Group`] (groups = N / this, at least 1).
    pub group_channels: usize,
    pub residual: ResidualScale,
    /// Halve the resolution (2×2 average pool) after every this many blocks; 0: never.
    pub downsample_every: usize,
    pub table: ParamTable,
}

/// Kernel size of every convolution.
pub const KERNEL: usize = 3;

impl ResNetSpec {
    pub fn from_config(cfg: &RunConfig, image: [usize; 3], output_dim: usize) -> Self {
        let m = &cfg.model;
        let depth_lr_scale = match (m.residual_scale, cfg.optimizer.kind) {
            (ResidualScale::DepthMup, OptimizerKind::Adam) => 1.0 / (m.depth as f64).sqrt(),
            _ => 1.0,
        };
        ResNetSpec {
            image,
            width: m.width,
            blocks: m.depth,
            output_dim,
            activation: m.activation,
            norm: m.norm,
            group_channels: m.group_channels,
            residual: m.residual_scale,
            downsample_every: m.downsample_every,
            table: ParamTable {
                parameterization: m.parameterization,
                width: m.width,
                input_dim: image[0] * KERNEL * KERNEL,
                gamma0: m.gamma0,
                init_variance: m.init_variance,
                rule: match cfg.optimizer.kind {
                    OptimizerKind::Sgd => UpdateRule::Sgd,
                    OptimizerKind::Adam => UpdateRule::Adam,
                },
                depth_lr_scale,
                proportional: false,
            },
        }
    }

    /// β, the scale of every residual branch.
    pub fn branch_scale(&self) -> f64 {
        match self.residual {
            ResidualScale::One => 1.0,
            ResidualScale::InvSqrtDepth | ResidualScale::DepthMup => 1.0 / (self.blocks.max(1) as f64).sqrt(),
        }
    }

    fn conv(&self, name: String, kind: LayerKind, layer: usize, c_in: usize) -> ParamInfo {
        let fan_in = c_in * KERNEL * KERNEL;
        ParamInfo {
            name,
            kind,
            layer,
            shape: [self.width, fan_in],
            export: Export::Reshape(vec![self.width, c_in, KERNEL, KERNEL]),
            fan_in,
            rule: self.table.layer_with_fan_in(kind, fan_in),
        }
    }

    /// `stem.weight`, `blocks.{b}.conv1.weight`, `blocks.{b}.conv2.weight`, `readout.weight`.
    pub fn params(&self) -> Vec<ParamInfo> {
        let n = self.width;
        let mut out = vec![self.conv("stem.weight".into(), LayerKind::Input, 0, self.image[0])];
        for b in 0..self.blocks {
            out.push(self.conv(format!("blocks.{b}.conv1.weight"), LayerKind::Hidden, 1 + 2 * b, n));
            out.push(self.conv(format!("blocks.{b}.conv2.weight"), LayerKind::Hidden, 2 + 2 * b, n));
        }
        out.push(ParamInfo {
            name: "readout.weight".into(),
            kind: LayerKind::Readout,
            layer: 1 + 2 * self.blocks,
            shape: [n, self.output_dim],
            export: Export::Transpose,
            fan_in: n,
            rule: self.table.layer(LayerKind::Readout),
        });
        out
    }

    /// Is the resolution halved after block `b`?
    pub fn pools_after(&self, b: usize) -> bool {
        self.downsample_every > 0 && (b + 1).is_multiple_of(self.downsample_every)
    }

    /// Activation floats per image kept for back-propagation, summed over the blocks'
    /// resolutions (an estimate for the memory check).
    pub fn activation_floats_per_image(&self) -> f64 {
        let mut pixels = (self.image[1] * self.image[2]) as f64;
        let n = self.width as f64;
        let mut total = self.image[0] as f64 * pixels + 8.0 * n * pixels;
        for b in 0..self.blocks {
            total += 8.0 * n * pixels;
            if self.pools_after(b) {
                pixels /= 4.0;
            }
        }
        total
    }

    fn groups(&self) -> usize {
        match self.norm {
            Norm::None => 0,
            Norm::Layer => 1,
            Norm::Group => (self.width / self.group_channels.max(1)).max(1),
        }
    }
}

/// ε of the normalization.
const NORM_EPS: f64 = 1e-5;

/// 𝒩(h) for h [B, C, H, W] over `groups` channel groups; returns it with 1/σ per (sample,
/// group) for the backward pass. `groups = 0`: identity.
fn normalize<B: Kernels>(h: Tensor<B, 4>, groups: usize) -> (Tensor<B, 4>, Option<Tensor<B, 3>>) {
    if groups == 0 {
        return (h, None);
    }
    let [b, c, hh, ww] = h.dims();
    let g = h.reshape([b, groups, (c / groups) * hh * ww]); // [B, G, n]
    let centred = g.clone() - g.mean_dim(2);
    let inv_sd = (centred.clone().powi_scalar(2).mean_dim(2) + NORM_EPS).sqrt().recip(); // [B, G, 1]
    ((centred * inv_sd.clone()).reshape([b, c, hh, ww]), Some(inv_sd))
}

/// Back through 𝒩: dx = (1/σ)(dn − mean(dn) − n·mean(dn·n)).
fn normalize_backward<B: Kernels>(
    dn: Tensor<B, 4>,
    n: &Tensor<B, 4>,
    inv_sd: &Option<Tensor<B, 3>>,
    groups: usize,
) -> Tensor<B, 4> {
    let Some(inv_sd) = inv_sd else { return dn };
    let [b, c, hh, ww] = dn.dims();
    let shape = [b, groups, (c / groups) * hh * ww];
    let (dn, n) = (dn.reshape(shape), n.clone().reshape(shape));
    let proj = (dn.clone() * n.clone()).mean_dim(2);
    ((dn.clone() - dn.mean_dim(2) - n * proj) * inv_sd.clone()).reshape([b, c, hh, ww])
}

/// φ on a 4-D tensor through the 2-D kernel (with φ' when asked).
fn activate4<B: Kernels>(act: Activation, h: Tensor<B, 4>, derivative: bool) -> (Tensor<B, 4>, Option<Tensor<B, 4>>) {
    let dims = h.dims();
    let flat = h.reshape([dims[0], dims[1] * dims[2] * dims[3]]);
    let (a, d) = B::activate(act, flat, derivative);
    (a.reshape(dims), d.map(|d| d.reshape(dims)))
}

fn hadamard4<B: Kernels>(a: Tensor<B, 4>, b: &Tensor<B, 4>) -> Tensor<B, 4> {
    let dims = a.dims();
    B::hadamard(
        a.reshape([dims[0], dims[1] * dims[2] * dims[3]]),
        &b.clone().reshape([dims[0], dims[1] * dims[2] * dims[3]]),
    )
    .reshape(dims)
}

/// 2×2 average pooling of [B, C, H, W] (H, W even) to [B, C, H/2, W/2].
fn avg_pool2<B: Kernels>(h: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, hh, ww] = h.dims();
    h.reshape([b * c * hh / 2, 2, ww / 2, 2]).mean_dim(3).mean_dim(1).reshape([b, c, hh / 2, ww / 2])
}

/// Back through [`avg_pool2`]: each input of a 2×2 window gets a quarter of its output's δ.
fn avg_pool2_backward<B: Kernels>(delta: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, c, h2, w2] = delta.dims();
    delta.mul_scalar(0.25).reshape([b * c * h2, 1, w2, 1]).expand([b * c * h2, 2, w2, 2]).reshape([
        b,
        c,
        2 * h2,
        2 * w2,
    ])
}

/// What one activation site φ(𝒩(h)) keeps for the backward pass.
struct Site<B: Kernels> {
    normalized: Tensor<B, 4>,
    inv_sd: Option<Tensor<B, 3>>,
    derivative: Option<Tensor<B, 4>>,
}

impl<B: Kernels> Site<B> {
    fn forward(spec: &ResNetSpec, h: Tensor<B, 4>, keep: bool) -> (Tensor<B, 4>, Option<Site<B>>) {
        let (n, inv_sd) = normalize(h, spec.groups());
        let (a, d) = activate4(spec.activation, n.clone(), keep);
        (a, keep.then_some(Site { normalized: n, inv_sd, derivative: d }))
    }

    /// δ at the site's input from δ at its output.
    fn backward(self, spec: &ResNetSpec, delta: Tensor<B, 4>) -> Tensor<B, 4> {
        let d = match &self.derivative {
            Some(phi1) => hadamard4(delta, phi1),
            None => delta,
        };
        normalize_backward(d, &self.normalized, &self.inv_sd, spec.groups())
    }
}

/// What one residual block keeps: (site 1, input of conv 1, site 2, input of conv 2).
type BlockCache<B> = (Option<Site<B>>, Tensor<B, 4>, Option<Site<B>>, Tensor<B, 4>);

/// The forward pass, keeping what back-propagation needs when `keep` is set.
struct Forward<B: Kernels> {
    x: Tensor<B, 4>,
    blocks: Vec<BlockCache<B>>,
    head: Option<Site<B>>,
    pooled: Tensor<B, 2>,
    output: Tensor<B, 2>,
    /// h₀ … h_k (for [`features`]).
    states: Vec<Tensor<B, 4>>,
}

fn run<B: Kernels>(
    s: &ResNetSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
    keep: bool,
) -> Forward<B> {
    let [c, hh, ww] = s.image;
    let batch = x.dims()[0];
    let x = x.reshape([batch, c, hh, ww]);
    let beta = s.branch_scale();
    let mut h = B::conv3x3(&x, &params[0], info[0].rule.multiplier); // [B, N, H, W]
    let mut states = vec![h.clone()];
    let mut blocks = Vec::with_capacity(s.blocks);
    for b in 0..s.blocks {
        let (i1, i2) = (1 + 2 * b, 2 + 2 * b);
        let (a1, site1) = Site::forward(s, h.clone(), keep);
        let z1 = B::conv3x3(&a1, &params[i1], info[i1].rule.multiplier);
        let (a2, site2) = Site::forward(s, z1, keep);
        let z2 = B::conv3x3(&a2, &params[i2], info[i2].rule.multiplier * beta);
        h = h + z2;
        if s.pools_after(b) {
            h = avg_pool2(h);
        }
        states.push(h.clone());
        blocks.push((site1, a1, site2, a2));
    }
    let (a, head) = Site::forward(s, h, keep);
    let pooled = a.mean_dim(3).mean_dim(2).reshape([batch, s.width]); // [B, N]
    let r = params.len() - 1;
    let output = B::matmul(&pooled, &params[r], info[r].rule.multiplier); // [B, C]
    Forward { x, blocks, head, pooled, output, states }
}

/// The network output f(x), shape [batch, C]; x is [batch, c·h·w] (channel-major images).
pub fn forward<B: Kernels>(
    s: &ResNetSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
) -> Tensor<B, 2> {
    run(s, info, params, x, false).output
}

/// h₀ (stem) and every block's output, flattened to [batch, N·H·W].
pub fn features<B: Kernels>(
    s: &ResNetSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
) -> Vec<Tensor<B, 2>> {
    run(s, info, params, x, false)
        .states
        .into_iter()
        .map(|h| {
            let [b, c, hh, ww] = h.dims();
            h.reshape([b, c * hh * ww])
        })
        .collect()
}

fn backward<B: Kernels>(
    s: &ResNetSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    fwd: Forward<B>,
    delta: Tensor<B, 2>,
) -> Gradients<B> {
    let Forward { x, blocks, head, pooled, .. } = fwd;
    let [batch, n] = [x.dims()[0], s.width];
    let [hh, ww] = match blocks.last() {
        Some((_, a1, _, _)) if s.pools_after(s.blocks - 1) => [a1.dims()[2] / 2, a1.dims()[3] / 2],
        Some((_, a1, _, _)) => [a1.dims()[2], a1.dims()[3]],
        None => [s.image[1], s.image[2]],
    };
    let r = params.len() - 1;
    let mut grads: Vec<Option<Tensor<B, 2>>> = vec![None; params.len()];
    let m_out = info[r].rule.multiplier;
    grads[r] = Some(B::matmul_tn(&pooled, &delta, m_out)); // [N, C]
    let d_pooled = B::matmul_nt(&delta, &params[r], m_out); // [B, N]
    let d_a = d_pooled.mul_scalar(1.0 / (hh * ww) as f64).reshape([batch, n, 1, 1]).expand([batch, n, hh, ww]);
    let mut d_h = head.expect("kept").backward(s, d_a);
    let beta = s.branch_scale();
    for (b, (site1, a1, site2, a2)) in blocks.into_iter().enumerate().rev() {
        let (i1, i2) = (1 + 2 * b, 2 + 2 * b);
        if s.pools_after(b) {
            d_h = avg_pool2_backward(d_h);
        }
        let (d_a2, g2) = B::conv3x3_backward(&a2, &params[i2], &d_h, info[i2].rule.multiplier * beta, true);
        grads[i2] = Some(g2);
        let d_z1 = site2.expect("kept").backward(s, d_a2.expect("input gradient"));
        let (d_a1, g1) = B::conv3x3_backward(&a1, &params[i1], &d_z1, info[i1].rule.multiplier, true);
        grads[i1] = Some(g1);
        d_h = d_h + site1.expect("kept").backward(s, d_a1.expect("input gradient"));
    }
    let (_, g0) = B::conv3x3_backward(&x, &params[0], &d_h, info[0].rule.multiplier, false);
    grads[0] = Some(g0);
    grads.into_iter().map(|g| g.expect("every parameter gets a gradient")).collect()
}

/// Loss, outputs and gradients on one batch.
pub fn gradients<B: Kernels>(
    s: &ResNetSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
    y: Tensor<B, 2>,
    loss: Loss,
) -> (Tensor<B, 1>, Tensor<B, 2>, Gradients<B>) {
    let fwd = run(s, info, params, x, true);
    let output = fwd.output.clone();
    let (value, delta) = loss.value_and_error(&output, &y);
    (value, output, backward(s, info, params, fwd, delta))
}

/// The gradient of Σ δ·f for every parameter.
pub fn vjp<B: Kernels>(
    s: &ResNetSpec,
    info: &[ParamInfo],
    params: &[Tensor<B, 2>],
    x: Tensor<B, 2>,
    delta: Tensor<B, 2>,
) -> Gradients<B> {
    let fwd = run(s, info, params, x, true);
    backward(s, info, params, fwd, delta)
}
