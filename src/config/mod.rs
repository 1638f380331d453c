//! Run configuration: one validated type built from a TOML file plus `--set key=value` overrides.
//!
//! Two stages, as in ripgrep/fd: the raw TOML (with overrides applied) is deserialized with
//! unknown keys rejected, then [`RunConfig::validate`] checks every range and cross-field rule
//! before any work starts. The effective config is written next to every output
//! (`config.toml` in the run directory) and embedded in every checkpoint.

mod overrides;

pub use overrides::{apply_overrides, known_keys, parse_value};

use crate::error::{Error, Result};
use crate::model::{Activation, Loss, Norm, Parameterization, ResidualScale};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything that defines a training run. Every field has a default (see the README's
/// config reference), so a config file only names what differs.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of the weight initialization and of the minibatch order.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub model: ModelConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub spectra: SpectraConfig,
}

/// Which network family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Fully connected network with `depth` hidden layers of `width` units.
    #[default]
    Mlp,
    /// Residual CNN (paper App. G.1): 3×3 stem, `depth` residual blocks of two 3×3
    /// convolutions with `width` channels, global average pooling, linear readout.
    Resnet,
}

/// The network and its parameterization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub kind: ModelKind,
    /// Number of hidden layers L (the network has L + 1 weight matrices).
    pub depth: usize,
    /// Hidden width N.
    pub width: usize,
    pub activation: Activation,
    pub parameterization: Parameterization,
    /// Richness γ₀ (tutorial eqs. 75–76): readout multiplier 1/(γ₀N) in μP.
    pub gamma0: f64,
    /// Initial weight variance σ² (entries of the O(1) weights are N(0, σ²)).
    pub init_variance: f64,
    /// Add zero-initialized biases to every hidden pre-activation (not to the output; MLP).
    pub bias: bool,
    /// ResNet: normalization inside the residual branches (`none`, `layer`, `group`).
    pub norm: Norm,
    /// ResNet with `norm = "group"`: channels per group.
    pub group_channels: usize,
    /// ResNet: scale of each residual branch (`one`, `inv-sqrt-depth`, `depth-mup`).
    pub residual_scale: ResidualScale,
    /// ResNet: halve the resolution with a 2×2 average pool after every this many blocks
    /// (0: constant resolution).
    pub downsample_every: usize,
    /// The proportional limit (N, D and P grow together; paper §4–5, App. E–F): the network
    /// f = wᵀW^{L−1}⋯W⁰x/(gN·N^{(L−1)/2}) without the 1/√D on the input, trained at rate η₀g²N,
    /// g = γ₀ (μP) or γ₀√(D/N) (NTK) — the convention of `specdyn theory linear` and
    /// `theory extensive`. In the table of `model::param`: μP's γ becomes γ₀/√D and every SGD
    /// rate is multiplied by D. MLP, plain SGD, μP or NTK.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub proportional: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: ModelKind::Mlp,
            depth: 3,
            width: 1024,
            activation: Activation::Tanh,
            parameterization: Parameterization::Mup,
            gamma0: 1.0,
            init_variance: 1.0,
            bias: false,
            norm: Norm::None,
            group_channels: 8,
            residual_scale: ResidualScale::One,
            downsample_every: 0,
            proportional: false,
        }
    }
}

/// Where the training data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DataKind {
    /// y = Σ_k c_k He_k(β·x/√D), x ~ N(0, I_D): one teacher direction β.
    #[default]
    SingleIndex,
    /// y = β·x/√D + noise.
    Linear,
    /// C outputs y_c = Σ_k c_k He_k(β_c·x/√D) + noise, C fixed or proportional to width.
    MultiOutput,
    /// Your own X and y from `.npy` or `.safetensors` files.
    Files,
    /// CIFAR-10 from the official binary files (`data_batch_1..5.bin`, `test_batch.bin`) in `data.dir`.
    Cifar10,
}

/// Synthetic or file-based data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub kind: DataKind,
    /// Input dimension D (synthetic data; read from the file otherwise).
    pub input_dim: usize,
    /// Number of outputs C (synthetic multi-output data).
    pub outputs: usize,
    /// If set, C = round(outputs_per_width × width): the extensive-output regime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs_per_width: Option<f64>,
    /// Hermite coefficients c_0, c_1, … of the teacher's link function (probabilists' He_k).
    /// Empty means the kind's default: [0, 1] for linear, [0, 1, 0.5] otherwise.
    pub hermite: Vec<f64>,
    /// Standard deviation of Gaussian label noise.
    pub noise: f64,
    /// Training set size P (fixed dataset).
    pub train_size: usize,
    /// Draw a fresh batch every step instead of reusing a fixed dataset.
    pub online: bool,
    /// Held-out test samples (synthetic data).
    pub test_size: usize,
    /// Seed of the teacher, the training set and the test set.
    pub seed: u64,
    /// Input file for `kind = "files"`: `X.npy`, or `data.safetensors:X` to pick a tensor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// Target file for `kind = "files"`, shape [P] or [P, C].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Optional held-out inputs for `kind = "files"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_x: Option<String>,
    /// Optional held-out targets for `kind = "files"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_y: Option<String>,
    /// Fraction of the file data held out as a test set when no test files are given.
    pub test_fraction: f64,
    /// Directory of the CIFAR-10 binary files for `kind = "cifar10"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Images: random horizontal flips and 4-pixel-padded random crops of every training batch
    /// (seeded by the step, so resume stays exact).
    pub augment: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            kind: DataKind::SingleIndex,
            input_dim: 64,
            outputs: 1,
            outputs_per_width: None,
            hermite: Vec::new(),
            noise: 0.0,
            train_size: 256,
            online: false,
            test_size: 1000,
            seed: 0,
            x: None,
            y: None,
            test_x: None,
            test_y: None,
            test_fraction: 0.2,
            dir: None,
            augment: false,
        }
    }
}

impl DataConfig {
    /// The Hermite coefficients actually used (the kind's default when none are given).
    pub fn hermite_coefficients(&self) -> Vec<f64> {
        if !self.hermite.is_empty() {
            return self.hermite.clone();
        }
        match self.kind {
            DataKind::Linear => vec![0.0, 1.0],
            _ => vec![0.0, 1.0, 0.5],
        }
    }
}

/// Optimizer family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// (Minibatch) SGD, with optional momentum; full-batch GD when `train.batch_size = 0`.
    #[default]
    Sgd,
    /// Adam with PyTorch defaults (β = 0.9, 0.999; ε = 1e-8).
    Adam,
}

/// Learning-rate schedule over steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    #[default]
    Constant,
    /// Cosine decay from the base rate to `min_lr_ratio` × base over the run.
    Cosine,
}

/// Optimizer and learning rate. `lr` is the base rate η₀; each layer's actual rate is η₀ times
/// the multiplier in the parameterization table (README).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    /// Base learning rate η₀.
    pub lr: f64,
    /// SGD momentum (PyTorch semantics, dampening 0).
    pub momentum: f64,
    pub nesterov: bool,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub schedule: Schedule,
    /// Linear warm-up steps from 0 to the base rate.
    pub warmup_steps: u64,
    /// Final rate of the cosine schedule, as a fraction of the base rate.
    pub min_lr_ratio: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.0,
            nesterov: false,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: Schedule::Constant,
            warmup_steps: 0,
            min_lr_ratio: 0.0,
        }
    }
}

/// The training loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of optimizer steps T.
    pub steps: u64,
    /// Minibatch size; 0 means full batch (gradient descent on the whole training set).
    pub batch_size: usize,
    /// Write a metrics row every this many steps (checkpoint steps and the last step always).
    pub log_every: u64,
    /// The run is declared diverged when the loss is not finite or exceeds this factor times
    /// the initial loss (checked where the loss is read back: logged steps and checkpoints).
    pub divergence_factor: f64,
    /// `mse` (½ squared error; one-hot targets for classification) or `cross-entropy`.
    pub loss: Loss,
    /// Evaluate the test set every this many steps (and at checkpoints and the last step);
    /// 0: at every logged step.
    pub eval_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1000,
            batch_size: 0,
            log_every: 10,
            divergence_factor: 1e4,
            loss: Loss::Mse,
            eval_every: 0,
        }
    }
}

/// Checkpoint schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Log-spaced checkpoints per decade of steps (3 gives 0, 1, 2, 5, 10, 20, 50, …); 0 turns
    /// them off (the final step is always saved).
    pub per_decade: u32,
    /// Overwrite `latest.safetensors` every this many steps, for resuming after a crash (0: off).
    pub latest_every: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { per_decade: 3, latest_every: 100 }
    }
}

/// What is measured at checkpoints (written to `spectra.h5`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpectraConfig {
    /// Record weight spectra at every checkpoint.
    pub enabled: bool,
    /// Largest singular values tracked per matrix (with identities across snapshots).
    pub top_k: usize,
    /// Outlier threshold above the MP edge, in Tracy–Widom units σ_TW.
    pub outlier_margin: f64,
    /// Top Hessian eigenvalue (sharpness) at checkpoints: ≈ 55 training steps per evaluation
    /// (Lanczos on finite-difference Hessian-vector products), so off by default.
    pub sharpness: bool,
    /// Top eigenvalue of the empirical NTK on the training batch at checkpoints (≈ 2 steps).
    pub ntk: bool,
    /// Also measure sharpness/NTK every this many steps (0: checkpoints only).
    pub analysis_every: u64,
    /// Lanczos iterations for the sharpness (each costs two gradient evaluations).
    pub lanczos_steps: usize,
    /// Every singular value (an O(n³) decomposition) at this many log-spaced snapshots per
    /// decade (1: steps 0, 10, 100, … and the last; step 1 is left out, one update from step
    /// 0); the tracked top k at every snapshot.
    pub full_per_decade: u32,
    /// Analyse snapshots on a background thread while training goes on (the file is the same).
    pub background: bool,
}

impl Default for SpectraConfig {
    fn default() -> Self {
        SpectraConfig {
            enabled: true,
            top_k: 8,
            outlier_margin: 4.0,
            sharpness: false,
            ntk: true,
            analysis_every: 0,
            lanczos_steps: 15,
            full_per_decade: 1,
            background: true,
        }
    }
}

impl RunConfig {
    /// Read a TOML file, apply `--set` overrides, and validate.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = read_config_text(path)?;
        Self::from_toml_str(&text, overrides).map_err(|e| e.in_file(path))
    }

    /// Parse TOML text, apply `--set` overrides, and validate.
    pub fn from_toml_str(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            Error::config(
                format!("not valid TOML: {}", one_line(&e.to_string())),
                "fix the syntax at the line shown (strings need quotes, tables are [section])",
            )
        })?;
        if table.contains_key("sweep") {
            return Err(Error::config(
                "this is a sweep config (it has a [sweep] table), not a run config",
                "run it with `specdyn sweep CONFIG --out DIR`, or train one point of it by removing the [sweep] table",
            ));
        }
        if table.contains_key("coord") {
            return Err(Error::config(
                "this is a coordinate-check config (it has a [coord] table), not a run config",
                "run it with `specdyn coord-check CONFIG --out DIR`, or remove the [coord] table to train one network",
            ));
        }
        apply_overrides(&mut table, overrides)?;
        let cfg: RunConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            Error::config(
                one_line(&e.to_string()),
                "see the config reference in README.md for every key, its type and its default",
            )
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The effective config as TOML text (what `config.toml` and checkpoints hold).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not serialize config: {e}\n"))
    }

    /// Number of outputs C (resolves `outputs_per_width` against the width).
    pub fn output_dim(&self) -> usize {
        match self.data.outputs_per_width {
            Some(r) => ((r * self.model.width as f64).round() as usize).max(1),
            None => self.data.outputs,
        }
    }

    /// Check every range and cross-field rule. Called by the loaders; call it again after
    /// mutating a config in code.
    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        let d = &self.data;
        let o = &self.optimizer;
        let t = &self.train;
        positive_int("model.width", m.width, "e.g. model.width = 1024")?;
        positive_int(
            "model.depth",
            m.depth,
            "the number of hidden layers L (MLP) or of residual blocks (ResNet); e.g. model.depth = 3",
        )?;
        positive_real("model.gamma0", m.gamma0, "the richness γ₀; 1.0 is the usual μP choice")?;
        positive_real("model.init_variance", m.init_variance, "σ²; 1.0 as in the paper's Fig. 1")?;
        if !matches!(d.kind, DataKind::Files | DataKind::Cifar10) {
            positive_int("data.input_dim", d.input_dim, "e.g. data.input_dim = 64")?;
        }
        self.validate_model()?;
        if let Some(r) = d.outputs_per_width {
            positive_real("data.outputs_per_width", r, "e.g. 0.5 gives C = N/2 outputs")?;
            if d.kind != DataKind::MultiOutput {
                return Err(Error::config(
                    "data.outputs_per_width needs data.kind = \"multi-output\"",
                    "set data.kind = \"multi-output\" or remove outputs_per_width",
                ));
            }
        } else {
            positive_int("data.outputs", d.outputs, "the number of outputs C; e.g. 1")?;
        }
        if d.outputs != 1 && matches!(d.kind, DataKind::SingleIndex | DataKind::Linear) {
            return Err(Error::config(
                format!("data.outputs = {} but data.kind = {:?} has one output", d.outputs, d.kind),
                "use data.kind = \"multi-output\" for several outputs",
            ));
        }
        if d.hermite.iter().any(|c| !c.is_finite()) {
            return Err(Error::config("data.hermite has a non-finite coefficient", "use finite numbers"));
        }
        if !(d.noise >= 0.0 && d.noise.is_finite()) {
            return Err(Error::config(
                format!("data.noise = {} must be a finite number ≥ 0", d.noise),
                "it is the standard deviation of the label noise; 0 turns it off",
            ));
        }
        if d.dir.is_some() && d.kind != DataKind::Cifar10 {
            return Err(Error::config(
                "data.dir is only read with data.kind = \"cifar10\"",
                "set data.kind = \"cifar10\" or remove data.dir",
            ));
        }
        if d.augment && d.kind != DataKind::Cifar10 {
            return Err(Error::config(
                "data.augment (flips and crops) applies to images: data.kind = \"cifar10\"",
                "remove data.augment",
            ));
        }
        match d.kind {
            DataKind::Cifar10 => {
                if d.dir.is_none() {
                    return Err(Error::config(
                        "data.kind = \"cifar10\" needs data.dir, the directory of the binary files",
                        "e.g. data.dir = \"datasets/cifar10\" (see datasets/README.md; check it with `specdyn data cifar10 --dir DIR`)",
                    ));
                }
                if d.online || d.x.is_some() || d.y.is_some() || d.test_x.is_some() || d.test_y.is_some() {
                    return Err(Error::config(
                        "data.kind = \"cifar10\" is a fixed image set: data.online and data.x/y/test_x/test_y do not apply",
                        "remove those keys",
                    ));
                }
                positive_int("data.train_size", d.train_size, "the number of training images (50000 for all)")?;
            }
            DataKind::Files => {
                if d.x.is_none() || d.y.is_none() {
                    return Err(Error::config(
                        "data.kind = \"files\" needs data.x and data.y",
                        "e.g. data.x = \"datasets/mine/X.npy\", data.y = \"datasets/mine/y.npy\" (or \"file.safetensors:X\")",
                    ));
                }
                if d.online {
                    return Err(Error::config(
                        "data.online cannot be used with data.kind = \"files\" (a file is a fixed dataset)",
                        "set data.online = false",
                    ));
                }
                if d.test_x.is_some() != d.test_y.is_some() {
                    return Err(Error::config(
                        "give both data.test_x and data.test_y, or neither",
                        "without test files, data.test_fraction of the data is held out",
                    ));
                }
                if !(0.0..1.0).contains(&d.test_fraction) {
                    return Err(Error::config(
                        format!("data.test_fraction = {} must be in [0, 1)", d.test_fraction),
                        "e.g. 0.2 holds out a fifth of the samples",
                    ));
                }
            }
            _ => {
                if d.x.is_some() || d.y.is_some() || d.test_x.is_some() || d.test_y.is_some() {
                    return Err(Error::config(
                        "data.x/y/test_x/test_y are only read with data.kind = \"files\"",
                        "set data.kind = \"files\" or remove the file keys",
                    ));
                }
                if !d.online {
                    positive_int("data.train_size", d.train_size, "P, the number of training samples")?;
                }
            }
        }
        positive_real("optimizer.lr", o.lr, "the base rate η₀; e.g. 0.1")?;
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(Error::config(
                format!("optimizer.momentum = {} must be in [0, 1)", o.momentum),
                "e.g. 0.9, or 0 for plain SGD",
            ));
        }
        if o.nesterov && o.momentum == 0.0 {
            return Err(Error::config(
                "optimizer.nesterov = true needs optimizer.momentum > 0",
                "set a momentum, e.g. 0.9",
            ));
        }
        if o.kind == OptimizerKind::Adam && o.momentum != 0.0 {
            return Err(Error::config(
                "optimizer.momentum is an SGD setting; Adam uses beta1",
                "remove optimizer.momentum or set optimizer.kind = \"sgd\"",
            ));
        }
        for (key, v) in [("optimizer.beta1", o.beta1), ("optimizer.beta2", o.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::config(
                    format!("{key} = {v} must be in [0, 1)"),
                    "PyTorch's defaults are 0.9 and 0.999",
                ));
            }
        }
        positive_real("optimizer.eps", o.eps, "PyTorch's default is 1e-8")?;
        if !(0.0..=1.0).contains(&o.min_lr_ratio) {
            return Err(Error::config(
                format!("optimizer.min_lr_ratio = {} must be in [0, 1]", o.min_lr_ratio),
                "it is the final cosine rate as a fraction of the base rate",
            ));
        }
        if d.online && t.batch_size == 0 {
            return Err(Error::config(
                "online data (data.online = true) needs train.batch_size > 0",
                "set train.batch_size, e.g. 256",
            ));
        }
        if !d.online && d.kind != DataKind::Files && t.batch_size > d.train_size {
            return Err(Error::config(
                format!("train.batch_size = {} exceeds data.train_size = {}", t.batch_size, d.train_size),
                "use a smaller batch, or train.batch_size = 0 for full batch",
            ));
        }
        if t.divergence_factor.is_nan() || t.divergence_factor <= 1.0 {
            return Err(Error::config(
                format!("train.divergence_factor = {} must be > 1", t.divergence_factor),
                "e.g. 1e4: the run stops when the loss exceeds 10⁴ × its initial value",
            ));
        }
        positive_int("train.log_every", t.log_every as usize, "e.g. 10")?;
        if o.warmup_steps > t.steps {
            return Err(Error::config(
                format!("optimizer.warmup_steps = {} exceeds train.steps = {}", o.warmup_steps, t.steps),
                "the warm-up must end within the run: lower optimizer.warmup_steps or raise train.steps",
            ));
        }
        if self.spectra.full_per_decade > MAX_PER_DECADE {
            return Err(Error::config(
                format!("spectra.full_per_decade = {} is more than {MAX_PER_DECADE}", self.spectra.full_per_decade),
                "1 gives full spectra at steps 0, 1, 10, 100, …; 3 at 1, 2, 5, 10, …",
            ));
        }
        if self.checkpoint.per_decade > MAX_PER_DECADE {
            return Err(Error::config(
                format!("checkpoint.per_decade = {} is more than {MAX_PER_DECADE}", self.checkpoint.per_decade),
                "3 gives the 1-2-5 series, 10 a dense log grid; for checkpoints every k steps use checkpoint.latest_every",
            ));
        }
        let sp = &self.spectra;
        positive_int("spectra.top_k", sp.top_k, "e.g. 8")?;
        if !(sp.outlier_margin >= 0.0 && sp.outlier_margin.is_finite()) {
            return Err(Error::config(
                format!("spectra.outlier_margin = {} must be a finite number ≥ 0", sp.outlier_margin),
                "it is in Tracy–Widom units above the MP edge; 4 is the default",
            ));
        }
        if !(2..=1000).contains(&sp.lanczos_steps) {
            return Err(Error::config(
                format!("spectra.lanczos_steps = {} must be between 2 and 1000", sp.lanczos_steps),
                "15 is the default; 20–50 resolve the top eigenvalue well",
            ));
        }
        Ok(())
    }
}

/// The keys whose values differ between two configs, as "key: a → b".
pub fn differences(a: &RunConfig, b: &RunConfig) -> Vec<String> {
    fn flatten(v: &toml::Value, prefix: &str, out: &mut Vec<(String, String)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(v, &p, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    if let (Ok(va), Ok(vb)) = (toml::Value::try_from(a), toml::Value::try_from(b)) {
        flatten(&va, "", &mut fa);
        flatten(&vb, "", &mut fb);
    }
    let mb: std::collections::BTreeMap<_, _> = fb.into_iter().collect();
    let ma: std::collections::BTreeMap<_, _> = fa.into_iter().collect();
    let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    keys.into_iter()
        .filter(|k| ma.get(*k) != mb.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
            format!("{k}: {} → {}", show(ma.get(k)), show(mb.get(k)))
        })
        .collect()
}

impl RunConfig {
    /// Model rules that depend on the network family.
    fn validate_model(&self) -> Result<()> {
        let m = &self.model;
        if m.proportional
            && (m.kind != ModelKind::Mlp
                || self.optimizer.kind != OptimizerKind::Sgd
                || m.parameterization == crate::model::Parameterization::Sp)
        {
            return Err(Error::config(
                "model.proportional = true is the proportional-limit convention of an MLP trained by SGD in μP or NTK",
                "use model.kind = \"mlp\", optimizer.kind = \"sgd\" and parameterization \"mup\" or \"ntk\", or remove model.proportional",
            ));
        }
        match m.kind {
            ModelKind::Mlp => {
                if m.norm != Norm::None || m.residual_scale != ResidualScale::One || m.downsample_every != 0 {
                    return Err(Error::config(
                        "model.norm, model.residual_scale and model.downsample_every apply to model.kind = \"resnet\"",
                        "remove them, or set model.kind = \"resnet\"",
                    ));
                }
                if self.data.kind == DataKind::Cifar10 {
                    return Err(Error::config(
                        "CIFAR-10 images need a convolutional network",
                        "set model.kind = \"resnet\"",
                    ));
                }
            }
            ModelKind::Resnet => {
                if self.data.kind != DataKind::Cifar10 {
                    return Err(Error::config(
                        "model.kind = \"resnet\" needs image data",
                        "set data.kind = \"cifar10\" and data.dir, or use model.kind = \"mlp\"",
                    ));
                }
                if m.bias {
                    return Err(Error::config(
                        "model.bias is not supported by the ResNet (its convolutions have no biases)",
                        "set model.bias = false",
                    ));
                }
                let pools = m.depth.checked_div(m.downsample_every).unwrap_or(0);
                let side = 32usize;
                if pools > 0 && (pools >= usize::BITS as usize || !side.is_multiple_of(1usize << pools)) {
                    return Err(Error::config(
                        format!(
                            "model.downsample_every = {} with {} blocks halves the 32-pixel images {pools} times",
                            m.downsample_every, m.depth
                        ),
                        "pool at most 5 times (e.g. downsample_every = 1 with depth ≤ 5), or 0 for constant resolution",
                    ));
                }
                if m.norm == Norm::Group && (m.group_channels == 0 || !m.width.is_multiple_of(m.group_channels)) {
                    return Err(Error::config(
                        format!("model.group_channels = {} must divide model.width = {}", m.group_channels, m.width),
                        "e.g. model.group_channels = 8 with a width that is a multiple of 8",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Most log-spaced checkpoints per decade a config may ask for.
pub const MAX_PER_DECADE: u32 = 100;

impl RunConfig {
    /// The settings that determine the trajectory of the weights: seed, model, data,
    /// optimizer and batch size. Steps (a run may be extended), logging, checkpoint and
    /// spectra settings are reset to their defaults.
    pub fn trajectory(&self) -> RunConfig {
        RunConfig {
            seed: self.seed,
            model: self.model.clone(),
            data: self.data.clone(),
            optimizer: self.optimizer.clone(),
            train: TrainConfig { batch_size: self.train.batch_size, loss: self.train.loss, ..TrainConfig::default() },
            checkpoint: CheckpointConfig::default(),
            spectra: SpectraConfig::default(),
        }
    }

    /// A 64-bit FNV-1a hash (hex) of [`RunConfig::trajectory`] as TOML. Every checkpoint
    /// carries it; resume refuses a checkpoint whose fingerprint is not the run's.
    pub fn fingerprint(&self) -> String {
        let text = self.trajectory().to_toml();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

fn positive_int(key: &str, v: usize, hint: &str) -> Result<()> {
    if v == 0 {
        return Err(Error::config(format!("{key} = 0 must be at least 1"), hint));
    }
    Ok(())
}

fn positive_real(key: &str, v: f64, hint: &str) -> Result<()> {
    if !(v > 0.0 && v.is_finite()) {
        return Err(Error::config(format!("{key} = {v} must be a finite number > 0"), hint));
    }
    Ok(())
}

/// The text of a config file, or an error naming it (exit code 2).
pub fn read_config_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::input(
            "config",
            path,
            e,
            "check the path (relative paths are taken from the current directory); example configs live in configs/ (e.g. configs/quickstart.toml)",
        )
    })
}

/// Collapse a multi-line parser message into one paragraph.
pub(crate) fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let cfg = RunConfig::from_toml_str("", &[]).unwrap();
        assert_eq!(cfg.model.width, 1024);
        let again = RunConfig::from_toml_str(&cfg.to_toml(), &[]).unwrap();
        assert_eq!(cfg, again);
    }

    #[test]
    fn overrides_and_unknown_keys() {
        let cfg = RunConfig::from_toml_str("[model]\nwidth = 64\n", &["model.width=128".into()]).unwrap();
        assert_eq!(cfg.model.width, 128);
        let err = RunConfig::from_toml_str("[model]\nwidht = 64\n", &[]).unwrap_err().to_string();
        assert!(err.contains("widht"), "{err}");
        let err = RunConfig::from_toml_str("", &["model.widht=3".into()]).unwrap_err().to_string();
        assert!(err.contains("widht") && err.contains("width"), "{err}");
    }

    #[test]
    fn fingerprint_follows_the_trajectory_only() {
        let a = RunConfig::from_toml_str("", &[]).unwrap();
        let mut b = a.clone();
        b.train.steps = 5000;
        b.checkpoint.per_decade = 10;
        b.spectra.ntk = false;
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.seed = 1;
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = a.clone();
        c.optimizer.kind = OptimizerKind::Adam;
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn extensive_outputs_follow_width() {
        let cfg = RunConfig::from_toml_str(
            "[model]\nwidth = 200\n[data]\nkind = \"multi-output\"\noutputs_per_width = 0.5\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.output_dim(), 100);
    }
}
