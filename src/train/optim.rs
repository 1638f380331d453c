//! SGD (with optional momentum) and Adam, with PyTorch's semantics and a learning rate per
//! parameter tensor.
//!
//! Written here rather than taken from burn-optim because the μP/NTK rates differ per layer
//! kind and per optimizer, the state must be saved under stable names for exact resume (burn's
//! records key it by random ParamIds), and burn's defaults differ from PyTorch (Adam ε = 1e-5,
//! momentum dampening 0.1). Updates run on the inner (non-autodiff) backend.
//!
//! - SGD (torch.optim.SGD, dampening 0): `b ← μ b + g` (b = g at the first step);
//!   `d = g + μ b` (Nesterov) or `b`; `w ← w − lr d`. With μ = 0: `w ← w − lr g`.
//! - Adam (torch.optim.Adam): `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//!   `w ← w − (lr/(1−β₁ᵗ)) · m / (√v/√(1−β₂ᵗ) + ε)`.

use crate::config::{OptimizerConfig, OptimizerKind};
use crate::kernels::{AdamStep, Kernels};
use burn::tensor::{Tensor, backend::Backend};

/// Optimizer state for one parameter tensor.
#[derive(Clone, Debug)]
pub enum ParamState<B: Backend> {
    /// Plain SGD, or momentum before the first step.
    Empty,
    Momentum(Tensor<B, 2>),
    Adam {
        exp_avg: Tensor<B, 2>,
        exp_avg_sq: Tensor<B, 2>,
    },
}

/// The optimizer: its settings, per-parameter state and Adam's step count.
#[derive(Clone, Debug)]
pub struct Optimizer<B: Backend> {
    pub config: OptimizerConfig,
    pub state: Vec<ParamState<B>>,
    /// Number of updates taken (Adam's t).
    pub steps: u64,
}

impl<B: Kernels> Optimizer<B> {
    /// Fresh state for `n_params` parameter tensors.
    pub fn new(config: OptimizerConfig, n_params: usize) -> Self {
        Optimizer { config, state: vec![ParamState::Empty; n_params], steps: 0 }
    }

    /// One update of every parameter with its own learning rate. Parameters and state are
    /// moved through the kernels, so uniquely owned buffers are updated in place.
    pub fn step(&mut self, params: &mut Vec<Tensor<B, 2>>, grads: Vec<Tensor<B, 2>>, lrs: &[f64]) {
        self.steps += 1;
        let c = self.config.clone();
        let t = self.steps as i32;
        let old_params = std::mem::take(params);
        let old_state = std::mem::take(&mut self.state);
        for (((p, state), g), &lr) in old_params.into_iter().zip(old_state).zip(grads).zip(lrs) {
            let (p, state) = match c.kind {
                OptimizerKind::Sgd if c.momentum == 0.0 => (B::sgd(p, &g, lr), ParamState::Empty),
                OptimizerKind::Sgd => {
                    let buf = match state {
                        ParamState::Momentum(b) => Some(b),
                        _ => None,
                    };
                    let (p, b) = B::momentum(p, g, buf, lr, c.momentum, c.nesterov);
                    (p, ParamState::Momentum(b))
                }
                OptimizerKind::Adam => {
                    let (m, v) = match state {
                        ParamState::Adam { exp_avg, exp_avg_sq } => (exp_avg, exp_avg_sq),
                        _ => (g.zeros_like(), g.zeros_like()),
                    };
                    let s = AdamStep {
                        lr,
                        beta1: c.beta1,
                        beta2: c.beta2,
                        eps: c.eps,
                        bias1: 1.0 - c.beta1.powi(t),
                        bias2: 1.0 - c.beta2.powi(t),
                    };
                    let (p, m, v) = B::adam(p, &g, m, v, s);
                    (p, ParamState::Adam { exp_avg: m, exp_avg_sq: v })
                }
            };
            params.push(p);
            self.state.push(state);
        }
    }
}

/// Multiplier of the base rate at `step` of `total`: linear warm-up, then constant or cosine.
pub fn schedule_factor(cfg: &OptimizerConfig, step: u64, total: u64) -> f64 {
    use crate::config::Schedule;
    let warm =
        if cfg.warmup_steps > 0 && step < cfg.warmup_steps { (step + 1) as f64 / cfg.warmup_steps as f64 } else { 1.0 };
    let decay = match cfg.schedule {
        Schedule::Constant => 1.0,
        Schedule::Cosine => {
            let span = total.saturating_sub(cfg.warmup_steps).max(1) as f64;
            let progress = (step.saturating_sub(cfg.warmup_steps) as f64 / span).min(1.0);
            cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    };
    warm * decay
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    fn t(v: &[f32]) -> Tensor<Flex, 2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [1, v.len()]), &Default::default())
    }

    fn run(cfg: OptimizerConfig, grads: &[[f32; 2]]) -> Vec<f32> {
        let mut opt = Optimizer::<Flex>::new(cfg, 1);
        let mut p = vec![t(&[1.0, -2.0])];
        for g in grads {
            opt.step(&mut p, vec![t(g)], &[0.1]);
        }
        crate::model::tensor_to_vec(p[0].clone())
    }

    #[test]
    fn sgd_momentum_matches_pytorch_by_hand() {
        // torch.optim.SGD([w], lr=0.1, momentum=0.9) on grads g1, g2:
        // b1 = g1; w1 = w0 − 0.1 b1; b2 = 0.9 b1 + g2; w2 = w1 − 0.1 b2.
        let cfg = OptimizerConfig { momentum: 0.9, ..Default::default() };
        let w = run(cfg, &[[1.0, 2.0], [0.5, -1.0]]);
        let want = [1.0 - 0.1 * 1.0 - 0.1 * (0.9 + 0.5), -2.0 - 0.1 * 2.0 - 0.1 * (1.8 - 1.0)];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn adam_first_steps_move_by_lr() {
        // With bias correction, Adam's first step is lr·g/(|g| + ε') ≈ lr·sign(g).
        let cfg = OptimizerConfig { kind: OptimizerKind::Adam, ..Default::default() };
        let w = run(cfg.clone(), &[[3.0, -0.01]]);
        assert!((w[0] - 0.9).abs() < 1e-5 && (w[1] + 1.9).abs() < 1e-4, "{w:?}");
        // Second step by hand (β₁ = 0.9, β₂ = 0.999, ε = 1e-8).
        let w = run(cfg, &[[3.0, 1.0], [1.0, 1.0]]);
        let m = 0.9 * 0.1 * 3.0 + 0.1 * 1.0;
        let v: f64 = 0.999 * 0.001 * 9.0 + 0.001 * 1.0;
        let step = 0.1 / (1.0 - 0.81) * m / (v.sqrt() / (1.0 - 0.999f64.powi(2)).sqrt() + 1e-8);
        let want = 1.0 - 0.1 - step;
        assert!((w[0] as f64 - want).abs() < 1e-5, "{} vs {want}", w[0]);
    }

    #[test]
    fn cosine_schedule_ends_at_the_floor() {
        let cfg = OptimizerConfig {
            schedule: crate::config::Schedule::Cosine,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            ..Default::default()
        };
        assert!((schedule_factor(&cfg, 0, 110) - 0.1).abs() < 1e-12);
        assert!((schedule_factor(&cfg, 10, 110) - 1.0).abs() < 1e-12);
        assert!((schedule_factor(&cfg, 110, 110) - 0.1).abs() < 1e-12);
    }
}
