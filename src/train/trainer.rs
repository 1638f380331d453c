//! The training state of one run and the step that advances it.
//!
//! Training needs no autodiff graph: gradients come from explicit back-propagation through the
//! backend's [`Kernels`] (checked against burn's autodiff in `tests/gradients.rs`), so a step
//! is a forward pass, a backward pass and one in-place update per parameter.

use super::optim::{Optimizer, ParamState, schedule_factor};
use crate::checkpoint::{Checkpoint, NamedTensor};
use crate::config::RunConfig;
use crate::data::{Batch, Dataset, DeviceSet, HostData, Samples, TrainSet};
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::model::{LayerKind, Loss, Model, Network, accuracy, scalar, tensor_to_vec};
use crate::resources::MemoryEstimate;
use burn::tensor::{Tensor, TensorData, backend::Backend};

/// Half the squared error, summed over outputs and averaged over the batch:
/// L = (1/2B) Σ_μ Σ_c (f_μc − y_μc)², so Δ_μ = −∂L/∂f_μ = (y_μ − f_μ)/B (tutorial eq. 78).
pub fn mse_loss<B: Backend>(f: Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 1> {
    let n = f.dims()[0] as f64;
    (f - y).powi_scalar(2).sum().mul_scalar(0.5 / n)
}

/// Loss and gradients of one step. The loss (and, for classification, the outputs) stay on
/// the device until [`StepGradients::loss`] or [`StepGradients::accuracy`] reads them back, so
/// a GPU step that is not logged never waits for the host.
pub struct StepGradients<B: Backend> {
    loss: Tensor<B, 1>,
    /// Outputs and targets of the batch (classification data), for the accuracy.
    outputs: Option<(Tensor<B, 2>, Tensor<B, 2>, usize)>,
    /// One gradient per parameter, in [`Network::params`] order.
    pub grads: Vec<Tensor<B, 2>>,
}

impl<B: Backend> StepGradients<B> {
    /// The batch loss, read back from the device (a synchronization on a GPU).
    pub fn loss(&self) -> f64 {
        scalar(self.loss.clone())
    }

    /// Accuracy on the batch (classification data), read back from the device.
    pub fn accuracy(&self) -> Option<f64> {
        self.outputs.as_ref().map(|(f, y, c)| accuracy(&tensor_to_vec(f.clone()), &tensor_to_vec(y.clone()), *c))
    }

    /// Euclidean norm of the full gradient.
    pub fn norm(&self) -> f64 {
        self.grads.iter().map(|g| scalar(g.clone().powi_scalar(2).sum())).sum::<f64>().sqrt()
    }
}

/// Loss (and accuracy, for classification) on a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: Option<f64>,
}

/// Inputs and targets as tensors.
type Pair<B> = (Tensor<B, 2>, Tensor<B, 2>);

/// Samples evaluated per forward pass when a set is evaluated in chunks.
const EVAL_CHUNK: usize = 500;

/// Model, optimizer and data of one run, at some step.
pub struct Trainer<B: Kernels> {
    pub config: RunConfig,
    pub data: Dataset,
    pub model: Model<B>,
    pub optimizer: Optimizer<B>,
    /// Number of updates applied so far.
    pub step: u64,
    device: B::Device,
    /// The fixed training set, uploaded once (batches are gathered on the device).
    train_set: Option<DeviceSet<B>>,
    test: Option<Pair<B>>,
}

/// Memory a run of `network` on `data` needs beyond the data itself: weights, optimizer state,
/// activations of one batch, spectra work space and the NTK matrix.
pub fn memory_estimate(config: &RunConfig, network: &Network, data: &Dataset) -> MemoryEstimate {
    memory_estimate_for(config, network, data.train_size().unwrap_or(0))
}

/// [`memory_estimate`] for a training set of `train_size` samples (before the data exists).
pub fn memory_estimate_for(config: &RunConfig, network: &Network, train_size: usize) -> MemoryEstimate {
    let params = network.param_floats();
    let mut e = MemoryEstimate::default();
    e.add("weights", params, 4.0);
    e.add("gradients", params, 4.0);
    let state = match config.optimizer.kind {
        crate::config::OptimizerKind::Adam => 2.0,
        crate::config::OptimizerKind::Sgd if config.optimizer.momentum > 0.0 => 1.0,
        _ => 0.0,
    };
    e.add("optimizer state", params * state, 4.0);
    let batch = match config.train.batch_size {
        0 => train_size,
        b => b,
    };
    e.add("activations", network.activation_floats(batch), 4.0);
    if !config.data.online {
        let floats = train_size as f64 * (network.input_dim() + network.output_dim()) as f64;
        // The device copy, and two transient f32 host copies while it is built.
        e.add("training set on the device", floats, 12.0);
    }
    if config.spectra.enabled {
        // W(0) of every matrix in f64, plus the largest matrix's copy and Gram matrix.
        let (r, c) = network.largest_matrix();
        let largest = (r as f64) * (c as f64) * 3.0 + (r.min(c) as f64).powi(2) * 2.0;
        e.add("spectra", params + largest, 8.0);
        if config.spectra.background {
            let depth = crate::spectra::worker::queue_depth(params) as f64;
            e.add("spectra queue", params * depth, 4.0);
        }
        if config.spectra.ntk {
            let side = (batch * network.output_dim()).min(4096) as f64;
            e.add("NTK", side * side, 8.0);
        }
    }
    e
}

impl<B: Kernels> Trainer<B> {
    /// A fresh run at step 0.
    pub fn new(config: RunConfig, device: B::Device) -> Result<Self> {
        let data = Dataset::from_config(&config)?;
        Self::with_data(config, data, device)
    }

    /// A fresh run at step 0 on data already built.
    pub fn with_data(config: RunConfig, data: Dataset, device: B::Device) -> Result<Self> {
        let network = Self::network(&config, &data)?;
        let model = Model::init(network, config.seed, &device);
        let optimizer = Optimizer::new(config.optimizer.clone(), model.params.len());
        Ok(Self::assemble(config, data, model, optimizer, 0, device))
    }

    /// The network of `config` for `data`, after checking that the run fits in memory.
    fn network(config: &RunConfig, data: &Dataset) -> Result<Network> {
        let network = Network::from_config(config, data.shape)?;
        let mut needed = memory_estimate(config, &network, data);
        needed.parts.extend(crate::data::memory_estimate(config).parts);
        needed.check("this run", "lower model.width, model.depth, train.batch_size or the data size")?;
        Ok(network)
    }

    fn assemble(
        config: RunConfig,
        data: Dataset,
        model: Model<B>,
        optimizer: Optimizer<B>,
        step: u64,
        device: B::Device,
    ) -> Self {
        let train_set = match &data.train {
            TrainSet::Fixed(s) => Some(DeviceSet::upload(s, data.augments(), &device)),
            TrainSet::Online => None,
        };
        let test = match &data.test {
            Some(Samples::Host(h)) if h.n <= 4 * EVAL_CHUNK => Some(h.to_tensors::<B>(&device)),
            _ => None,
        };
        Trainer { config, data, model, optimizer, step, device, train_set, test }
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    pub fn loss_kind(&self) -> Loss {
        self.config.train.loss
    }

    /// The batch the current step trains on, as tensors: gathered on the device from a fixed
    /// training set, drawn on the host and uploaded for online data.
    pub fn batch(&self) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let (step, size, seed) = (self.step, self.config.train.batch_size, self.config.seed);
        let Some(set) = &self.train_set else {
            return match self.data.batch(step, size, seed) {
                Batch::Samples(h) => h.to_tensors::<B>(&self.device),
                Batch::Full => unreachable!("online data never yields a full batch"),
            };
        };
        let idx = self.data.batch_indices(step, size, seed);
        if !self.data.augments() {
            return set.rows(idx.as_deref());
        }
        let idx = idx.unwrap_or_else(|| (0..set.len()).collect());
        set.augmented(&idx, &self.data.crops(step, idx.len(), seed))
    }

    /// Loss and gradients at the current parameters on the current step's batch.
    pub fn gradients(&self) -> StepGradients<B> {
        let (x, y) = self.batch();
        let (loss, f, grads) = self.model.gradients(x, y.clone(), self.loss_kind());
        let outputs = self.data.classification.then(|| (f, y, self.data.output_dim()));
        StepGradients { loss, outputs, grads }
    }

    /// The learning rate of every parameter at the current step.
    pub fn learning_rates(&self) -> Vec<f64> {
        let factor = schedule_factor(&self.config.optimizer, self.step, self.config.train.steps);
        self.model.info.iter().map(|p| self.config.optimizer.lr * p.rule.lr_scale * factor).collect()
    }

    /// The learning rate of the first parameter of `kind` at the current step.
    pub fn learning_rate_of(&self, kind: LayerKind) -> Option<f64> {
        let lrs = self.learning_rates();
        self.model.info.iter().position(|p| p.kind == kind).map(|i| lrs[i])
    }

    /// Apply one optimizer update with these gradients and advance the step.
    pub fn apply(&mut self, grads: StepGradients<B>) {
        let lrs = self.learning_rates();
        self.optimizer.step(&mut self.model.params, grads.grads, &lrs);
        self.step += 1;
    }

    /// One full training step; returns the loss before the update (read back from the device).
    pub fn train_step(&mut self) -> f64 {
        let g = self.gradients();
        let loss = g.loss();
        self.apply(g);
        loss
    }

    /// One full training step with nothing read back to the host.
    pub fn advance(&mut self) {
        let g = self.gradients();
        self.apply(g);
    }

    /// Sharpness and top NTK eigenvalue (raw and LR-scaled) on the current step's batch.
    pub fn curvature(&self) -> crate::spectra::curvature::Curvature {
        let (x, y) = self.batch();
        let sp = &self.config.spectra;
        crate::spectra::curvature::curvature(
            &self.model,
            &x,
            &y,
            self.loss_kind(),
            &self.learning_rates(),
            sp.lanczos_steps,
            sp.sharpness,
            sp.ntk,
        )
    }

    /// Loss (and accuracy) on the held-out test set, if there is one.
    pub fn evaluate_test(&self) -> Option<Evaluation> {
        if let Some((x, y)) = &self.test {
            let f = self.model.forward(x.clone());
            return Some(self.evaluation(&f, y));
        }
        self.data.test.as_ref().map(|s| self.evaluate(s))
    }

    /// Loss on the held-out test set, if there is one.
    pub fn test_loss(&self) -> Option<f64> {
        self.evaluate_test().map(|e| e.loss)
    }

    fn evaluation(&self, f: &Tensor<B, 2>, y: &Tensor<B, 2>) -> Evaluation {
        let loss = scalar(self.loss_kind().value(f, y));
        let accuracy = self
            .data
            .classification
            .then(|| accuracy(&tensor_to_vec(f.clone()), &tensor_to_vec(y.clone()), self.data.output_dim()));
        Evaluation { loss, accuracy }
    }

    /// Loss and accuracy on a set of samples, in chunks (averaged over samples).
    pub fn evaluate(&self, samples: &Samples) -> Evaluation {
        let n = samples.len();
        let (mut loss, mut acc) = (0.0, 0.0);
        for start in (0..n).step_by(EVAL_CHUNK) {
            let idx: Vec<usize> = (start..(start + EVAL_CHUNK).min(n)).collect();
            let (x, y) = samples.rows(&idx, None).to_tensors::<B>(&self.device);
            let e = self.evaluation(&self.model.forward(x), &y);
            loss += e.loss * idx.len() as f64;
            acc += e.accuracy.unwrap_or(0.0) * idx.len() as f64;
        }
        let n = n.max(1) as f64;
        Evaluation { loss: loss / n, accuracy: self.data.classification.then_some(acc / n) }
    }

    /// Loss of the current parameters on arbitrary host data.
    pub fn loss_on(&self, data: &HostData) -> f64 {
        self.evaluate(&Samples::Host(data.clone())).loss
    }

    /// Snapshot for a checkpoint (weights and optimizer state in export layout).
    pub fn to_checkpoint(&self, elapsed_s: f64, initial_loss: f64) -> Checkpoint {
        let mut tensors = self.model.export();
        for (info, state) in self.model.info.iter().zip(&self.optimizer.state) {
            let mut push = |kind: &str, t: &Tensor<B, 2>| {
                tensors.push(NamedTensor {
                    name: format!("optimizer.{kind}.{}", info.name),
                    shape: info.export_shape(),
                    data: info.to_export(&tensor_to_vec(t.clone())),
                });
            };
            match state {
                ParamState::Empty => {}
                ParamState::Momentum(b) => push("momentum_buffer", b),
                ParamState::Adam { exp_avg, exp_avg_sq } => {
                    push("exp_avg", exp_avg);
                    push("exp_avg_sq", exp_avg_sq);
                }
            }
        }
        Checkpoint {
            step: self.step,
            config: self.config.to_toml(),
            specdyn_version: env!("CARGO_PKG_VERSION").to_string(),
            elapsed_s,
            initial_loss,
            optimizer_steps: self.optimizer.steps,
            fingerprint: self.config.fingerprint(),
            tensors,
        }
    }

    /// Rebuild the exact state saved in `ckpt` (which must come from a run with `config`).
    pub fn from_checkpoint(
        config: RunConfig,
        ckpt: &Checkpoint,
        path: &std::path::Path,
        device: B::Device,
    ) -> Result<Self> {
        let data = Dataset::from_config(&config)?;
        Self::from_checkpoint_with_data(config, data, ckpt, path, device)
    }

    /// [`Trainer::from_checkpoint`] on data already built.
    pub fn from_checkpoint_with_data(
        config: RunConfig,
        data: Dataset,
        ckpt: &Checkpoint,
        path: &std::path::Path,
        device: B::Device,
    ) -> Result<Self> {
        let network = Self::network(&config, &data)?;
        let info = network.params();
        let read = |name: &str, want: &[usize]| -> Result<&NamedTensor> {
            let t = ckpt.tensor(name).ok_or_else(|| {
                Error::checkpoint(
                    path,
                    format!("has no tensor '{name}'"),
                    "the checkpoint does not belong to this run's config",
                )
            })?;
            if t.shape != want {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor '{name}' has shape {:?}, the config needs {want:?}", t.shape),
                    "the checkpoint does not belong to this run's config",
                ));
            }
            Ok(t)
        };
        let mut host = Vec::new();
        for p in &info {
            host.push(p.from_export(&read(&p.name, &p.export_shape())?.data));
        }
        let model = Model::from_host(network, host, &device);
        let mut optimizer = Optimizer::new(config.optimizer.clone(), info.len());
        optimizer.steps = ckpt.optimizer_steps;
        for (i, p) in info.iter().enumerate() {
            let load = |kind: &str| -> Result<Option<Tensor<B, 2>>> {
                let name = format!("optimizer.{kind}.{}", p.name);
                if ckpt.tensor(&name).is_none() {
                    return Ok(None);
                }
                let t = read(&name, &p.export_shape())?;
                Ok(Some(Tensor::from_data(TensorData::new(p.from_export(&t.data), p.shape), &device)))
            };
            optimizer.state[i] = if let Some(b) = load("momentum_buffer")? {
                ParamState::Momentum(b)
            } else if let (Some(m), Some(v)) = (load("exp_avg")?, load("exp_avg_sq")?) {
                ParamState::Adam { exp_avg: m, exp_avg_sq: v }
            } else {
                ParamState::Empty
            };
        }
        let stateful = config.optimizer.kind == crate::config::OptimizerKind::Adam || config.optimizer.momentum > 0.0;
        if stateful
            && ckpt.optimizer_steps > 0
            && let Some(i) = optimizer.state.iter().position(|s| matches!(s, ParamState::Empty))
        {
            return Err(Error::checkpoint(
                path,
                format!(
                    "has no optimizer state for '{}' although {} updates were taken",
                    info[i].name, ckpt.optimizer_steps
                ),
                "the checkpoint was written with another optimizer; resume with the config it was made with",
            ));
        }
        if !stateful && let Some(i) = optimizer.state.iter().position(|s| !matches!(s, ParamState::Empty)) {
            return Err(Error::checkpoint(
                path,
                format!("holds optimizer state for '{}' but this run uses plain SGD", info[i].name),
                "the checkpoint was written with another optimizer; resume with the config it was made with",
            ));
        }
        Ok(Self::assemble(config, data, model, optimizer, ckpt.step, device))
    }
}
