//! Training and test data: synthetic teachers on Gaussian inputs, the user's own arrays, or
//! CIFAR-10 images.
//!
//! Vectors live on the host as row-major f32 ([`HostData`]); images as bytes ([`ImageSet`]).
//! Training uploads a fixed set once and gathers each batch on the device ([`DeviceSet`]);
//! [`Dataset::batch`] builds the same batch on the host (online data, and the reference). Every draw comes from a counter-based stream ([`crate::rng`]): the
//! training set from `(data.seed, TrainSet)`, the test set from `(data.seed, TestSet)`, the
//! online batch of step t from `(data.seed, Online, t)`, the minibatch order of epoch e from
//! `(seed, Order, e)` and the augmentation of step t from `(seed, Augment, t)`.

pub mod cifar;
mod device;
mod files;
mod teacher;

pub use cifar::{Crop, ImageSet};
pub use device::DeviceSet;
pub use files::{Array, read_array, write_npy};
pub use teacher::{Teacher, hermite, hermite_series};

use crate::config::{DataKind, RunConfig};
use crate::error::{Error, Result};
use crate::resources::MemoryEstimate;
use crate::rng::{Purpose, permutation, stream};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use std::path::PathBuf;

/// The shape of the data a network is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataShape {
    /// Features per sample (flattened; an image is channels × height × width).
    pub input_dim: usize,
    /// Images: [channels, height, width].
    pub image: Option<[usize; 3]>,
    /// Outputs C.
    pub outputs: usize,
}

/// Samples on the host: inputs `[n, d]` and targets `[n, c]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct HostData {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub n: usize,
    pub d: usize,
    pub c: usize,
}

impl HostData {
    /// The rows `idx`, in that order.
    pub fn rows(&self, idx: &[usize]) -> HostData {
        let mut x = Vec::with_capacity(idx.len() * self.d);
        let mut y = Vec::with_capacity(idx.len() * self.c);
        for &i in idx {
            x.extend_from_slice(&self.x[i * self.d..(i + 1) * self.d]);
            y.extend_from_slice(&self.y[i * self.c..(i + 1) * self.c]);
        }
        HostData { x, y, n: idx.len(), d: self.d, c: self.c }
    }

    /// Upload as tensors `x: [n, d]`, `y: [n, c]`.
    pub fn to_tensors<B: Backend>(&self, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
        (
            Tensor::from_data(TensorData::new(self.x.clone(), [self.n, self.d]), device),
            Tensor::from_data(TensorData::new(self.y.clone(), [self.n, self.c]), device),
        )
    }
}

/// A fixed set of samples: vectors, or images converted on demand.
#[derive(Clone, Debug)]
pub enum Samples {
    Host(HostData),
    Images(ImageSet),
}

impl Samples {
    pub fn len(&self) -> usize {
        match self {
            Samples::Host(h) => h.n,
            Samples::Images(i) => i.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `idx` as f32 (images normalized; augmented when an RNG is given).
    pub fn rows(&self, idx: &[usize], augment: Option<&mut rand_chacha::ChaCha8Rng>) -> HostData {
        match self {
            Samples::Host(h) => h.rows(idx),
            Samples::Images(i) => i.rows(idx, augment),
        }
    }

    /// Every sample as f32.
    pub fn all(&self) -> HostData {
        match self {
            Samples::Host(h) => h.clone(),
            Samples::Images(i) => i.rows(&(0..i.len()).collect::<Vec<_>>(), None),
        }
    }
}

/// Where training batches come from.
#[derive(Clone, Debug)]
pub enum TrainSet {
    /// A fixed dataset of P samples (full batch or minibatches).
    Fixed(Samples),
    /// A fresh batch from the teacher at every step.
    Online,
}

/// The data of one run.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub train: TrainSet,
    pub test: Option<Samples>,
    /// The synthetic teacher, when there is one (its directions are used for overlaps).
    pub teacher: Option<Teacher>,
    pub shape: DataShape,
    /// Targets are one-hot classes: accuracy is reported.
    pub classification: bool,
    data_seed: u64,
    augment: bool,
}

/// One step's batch: either the whole fixed training set, or explicit samples.
pub enum Batch {
    /// The full training set (the caller keeps it uploaded).
    Full,
    Samples(HostData),
}

/// Memory the data of `cfg` will take (before building it), for [`MemoryEstimate::check`].
pub fn memory_estimate(cfg: &RunConfig) -> MemoryEstimate {
    let d = &cfg.data;
    let mut e = MemoryEstimate::default();
    let outputs = cfg.output_dim() as f64;
    match d.kind {
        DataKind::Files => {
            let size = |s: &Option<String>| {
                s.as_deref()
                    .map(|s| files::split_spec(s).0)
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len() as f64)
                    .unwrap_or(0.0)
            };
            // Bytes read, plus f32 copies (worst case: 1-byte elements become 4-byte floats).
            let bytes = size(&d.x) + size(&d.y) + size(&d.test_x) + size(&d.test_y);
            e.add("data files", bytes, 5.0);
        }
        DataKind::Cifar10 => {
            e.add("images", (d.train_size + d.test_size) as f64 + 60_000.0, cifar::RECORD as f64 * 2.0);
        }
        _ => {
            let dim = d.input_dim as f64;
            e.add("teacher", outputs * dim, 8.0);
            if !d.online {
                // Drawn as f64, stored as f32.
                e.add("training set", d.train_size as f64 * (dim + outputs), 12.0);
            }
            e.add("test set", d.test_size as f64 * (dim + outputs), 12.0);
        }
    }
    e
}

impl Dataset {
    /// Build (or read) the data a run config describes.
    pub fn from_config(cfg: &RunConfig) -> Result<Self> {
        let d = &cfg.data;
        memory_estimate(cfg)
            .check("the data", "lower data.train_size, data.test_size, data.input_dim or data.outputs")?;
        match d.kind {
            DataKind::Files => return Self::from_files(cfg),
            DataKind::Cifar10 => return Self::cifar10(cfg),
            _ => {}
        }
        let output_dim = cfg.output_dim();
        let teacher = Teacher::new(d.seed, d.input_dim, output_dim, d.hermite_coefficients(), d.noise);
        let train = if d.online {
            TrainSet::Online
        } else {
            TrainSet::Fixed(Samples::Host(teacher.sample_stream(d.seed, Purpose::TrainSet, 0, d.train_size)))
        };
        let test =
            (d.test_size > 0).then(|| Samples::Host(teacher.sample_stream(d.seed, Purpose::TestSet, 0, d.test_size)));
        Ok(Dataset {
            train,
            test,
            shape: DataShape { input_dim: d.input_dim, image: None, outputs: output_dim },
            teacher: Some(teacher),
            classification: false,
            data_seed: d.seed,
            augment: false,
        })
    }

    fn cifar10(cfg: &RunConfig) -> Result<Self> {
        let d = &cfg.data;
        let dir = PathBuf::from(d.dir.as_deref().unwrap_or_default());
        let (train, test) = cifar::load(&dir)?;
        if d.train_size > train.len() {
            return Err(Error::config(
                format!(
                    "data.train_size = {} but {} holds {} training images",
                    d.train_size,
                    dir.display(),
                    train.len()
                ),
                format!("use data.train_size ≤ {} (the full CIFAR-10 has 50000)", train.len()),
            ));
        }
        if d.test_size > test.len() {
            return Err(Error::config(
                format!("data.test_size = {} but {} holds {} test images", d.test_size, dir.display(), test.len()),
                format!("use data.test_size ≤ {}", test.len()),
            ));
        }
        if cfg.train.batch_size > d.train_size {
            return Err(Error::config(
                format!("train.batch_size = {} exceeds data.train_size = {}", cfg.train.batch_size, d.train_size),
                "use a smaller batch",
            ));
        }
        Ok(Dataset {
            train: TrainSet::Fixed(Samples::Images(train.first(d.train_size))),
            test: (d.test_size > 0).then(|| Samples::Images(test.first(d.test_size))),
            shape: DataShape { input_dim: cifar::PIXELS, image: Some(cifar::SHAPE), outputs: cifar::CLASSES },
            teacher: None,
            classification: true,
            data_seed: d.seed,
            augment: d.augment,
        })
    }

    fn from_files(cfg: &RunConfig) -> Result<Self> {
        let d = &cfg.data;
        let (xs, ys) = (d.x.as_deref().unwrap_or_default(), d.y.as_deref().unwrap_or_default());
        let all = load_pair(xs, ys)?;
        let (train, test) = match (&d.test_x, &d.test_y) {
            (Some(tx), Some(ty)) => {
                let test = load_pair(tx, ty)?;
                if test.d != all.d || test.c != all.c {
                    return Err(Error::data(
                        &PathBuf::from(tx),
                        format!(
                            "test data is [{}, {}] → [{}] but training data is [{}, {}] → [{}]",
                            test.n, test.d, test.c, all.n, all.d, all.c
                        ),
                        "give test files with the same input and output dimensions",
                    ));
                }
                (all, Some(test))
            }
            _ => {
                let n_test = (d.test_fraction * all.n as f64).round() as usize;
                let order = permutation(&mut stream(d.seed, Purpose::TestSet, 0), all.n);
                let (test_idx, train_idx) = order.split_at(n_test);
                (all.rows(train_idx), (n_test > 0).then(|| all.rows(test_idx)))
            }
        };
        if train.n == 0 {
            return Err(Error::data(&PathBuf::from(xs), "no training samples left", "lower data.test_fraction"));
        }
        if cfg.train.batch_size > train.n {
            return Err(Error::config(
                format!(
                    "train.batch_size = {} exceeds the {} training samples in the files",
                    cfg.train.batch_size, train.n
                ),
                "use a smaller batch, or 0 for full batch",
            ));
        }
        let shape = DataShape { input_dim: train.d, image: None, outputs: train.c };
        Ok(Dataset {
            train: TrainSet::Fixed(Samples::Host(train)),
            test: test.map(Samples::Host),
            teacher: None,
            shape,
            classification: false,
            data_seed: d.seed,
            augment: false,
        })
    }

    /// Input dimension D (features per sample).
    pub fn input_dim(&self) -> usize {
        self.shape.input_dim
    }

    /// Outputs C.
    pub fn output_dim(&self) -> usize {
        self.shape.outputs
    }

    /// Number of training samples P (None when online).
    pub fn train_size(&self) -> Option<usize> {
        match &self.train {
            TrainSet::Fixed(s) => Some(s.len()),
            TrainSet::Online => None,
        }
    }

    /// The batch for `step`. `batch_size = 0` means full batch; `order_seed` seeds the
    /// per-epoch permutation (epochs of ⌊P/B⌋ equal batches, the remainder dropped) and the
    /// augmentation.
    pub fn batch(&self, step: u64, batch_size: usize, order_seed: u64) -> Batch {
        match &self.train {
            TrainSet::Online => {
                let teacher = self.teacher.as_ref().expect("online data always has a teacher");
                Batch::Samples(teacher.sample_stream(self.data_seed, Purpose::Online, step, batch_size))
            }
            TrainSet::Fixed(data) => match self.batch_indices(step, batch_size, order_seed) {
                None if !self.augment => Batch::Full,
                idx => {
                    let idx = idx.unwrap_or_else(|| (0..data.len()).collect());
                    let mut rng = self.augment.then(|| stream(order_seed, Purpose::Augment, step));
                    Batch::Samples(data.rows(&idx, rng.as_mut()))
                }
            },
        }
    }

    /// Whether training images are augmented.
    pub fn augments(&self) -> bool {
        self.augment
    }

    /// The flip and crop of each of the `n` images of `step`'s batch, as [`Dataset::batch`]
    /// draws them.
    pub fn crops(&self, step: u64, n: usize, order_seed: u64) -> Vec<Crop> {
        let mut rng = stream(order_seed, Purpose::Augment, step);
        (0..n).map(|_| Crop::draw(&mut rng)).collect()
    }

    /// Which training samples [`Dataset::batch`] uses at `step` (None: all of them, or online).
    pub fn batch_indices(&self, step: u64, batch_size: usize, order_seed: u64) -> Option<Vec<usize>> {
        match &self.train {
            TrainSet::Fixed(data) if batch_size > 0 && batch_size < data.len() => {
                let per_epoch = (data.len() / batch_size) as u64;
                let (epoch, k) = (step / per_epoch, (step % per_epoch) as usize);
                let order = permutation(&mut stream(order_seed, Purpose::Order, epoch), data.len());
                Some(order[k * batch_size..(k + 1) * batch_size].to_vec())
            }
            _ => None,
        }
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn load_pair(xs: &str, ys: &str) -> Result<HostData> {
    let x = read_array(xs)?;
    let y = read_array(ys)?;
    let xpath = files::split_spec(xs).0;
    let ypath = files::split_spec(ys).0;
    if x.shape.len() != 2 {
        return Err(Error::data(
            &xpath,
            format!("inputs must be 2-D [P, D], got shape {:?}", x.shape),
            "reshape to [samples, features] (e.g. X.reshape(len(X), -1))",
        ));
    }
    let (n, d) = (x.shape[0], x.shape[1]);
    if n == 0 || d == 0 {
        return Err(Error::data(
            &xpath,
            format!("inputs have shape {:?}: a zero-size dimension (no samples or no features)", x.shape),
            "give at least one sample with at least one feature",
        ));
    }
    let c = match y.shape.as_slice() {
        [p] if *p == n => 1,
        [p, c] if *p == n && *c > 0 => *c,
        s => {
            return Err(Error::data(
                &ypath,
                format!("targets have shape {s:?} but the inputs have {n} samples"),
                format!("targets must be [{n}] or [{n}, C] with C ≥ 1"),
            ));
        }
    };
    for (a, path) in [(&x, &xpath), (&y, &ypath)] {
        if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::data(
                path,
                format!("contains NaN or infinite values (first at flat index {i})"),
                "clean the data first",
            ));
        }
    }
    Ok(HostData { x: x.data, y: y.data, n, d, c })
}
