//! Training and test data: synthetic teachers on Gaussian inputs, or the user's own arrays.
//!
//! All data lives on the host as row-major f32 ([`HostData`]) and is uploaded per batch. Every
//! draw comes from a counter-based stream ([`crate::rng`]): the training set from
//! `(data.seed, TrainSet)`, the test set from `(data.seed, TestSet)`, the online batch of step t
//! from `(data.seed, Online, t)`, and the minibatch order of epoch e from `(seed, Order, e)`.

mod files;
mod teacher;

pub use files::{Array, read_array, write_npy};
pub use teacher::{Teacher, hermite, hermite_series};

use crate::config::{DataKind, RunConfig};
use crate::error::{Error, Result};
use crate::rng::{Purpose, permutation, stream};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use std::path::PathBuf;

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

/// Where training batches come from.
#[derive(Clone, Debug)]
pub enum TrainSet {
    /// A fixed dataset of P samples (full batch or minibatches).
    Fixed(HostData),
    /// A fresh batch from the teacher at every step.
    Online,
}

/// The data of one run.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub train: TrainSet,
    pub test: Option<HostData>,
    /// The synthetic teacher, when there is one (its directions are used for overlaps).
    pub teacher: Option<Teacher>,
    pub input_dim: usize,
    pub output_dim: usize,
    data_seed: u64,
}

/// One step's batch: either the whole fixed training set, or explicit samples.
pub enum Batch {
    /// The full training set (the caller keeps it uploaded).
    Full,
    Samples(HostData),
}

impl Dataset {
    /// Build (or read) the data a run config describes.
    pub fn from_config(cfg: &RunConfig) -> Result<Self> {
        let d = &cfg.data;
        if d.kind == DataKind::Files {
            return Self::from_files(cfg);
        }
        let output_dim = cfg.output_dim();
        let teacher = Teacher::new(d.seed, d.input_dim, output_dim, d.hermite_coefficients(), d.noise);
        let train = if d.online {
            TrainSet::Online
        } else {
            TrainSet::Fixed(teacher.sample_stream(d.seed, Purpose::TrainSet, 0, d.train_size))
        };
        let test = (d.test_size > 0).then(|| teacher.sample_stream(d.seed, Purpose::TestSet, 0, d.test_size));
        Ok(Dataset { train, test, input_dim: d.input_dim, output_dim, teacher: Some(teacher), data_seed: d.seed })
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
        let (input_dim, output_dim) = (train.d, train.c);
        Ok(Dataset { train: TrainSet::Fixed(train), test, teacher: None, input_dim, output_dim, data_seed: d.seed })
    }

    /// Number of training samples P (None when online).
    pub fn train_size(&self) -> Option<usize> {
        match &self.train {
            TrainSet::Fixed(h) => Some(h.n),
            TrainSet::Online => None,
        }
    }

    /// The batch for `step`. `batch_size = 0` means full batch; `order_seed` seeds the
    /// per-epoch permutation (epochs of ⌊P/B⌋ equal batches, the remainder dropped).
    pub fn batch(&self, step: u64, batch_size: usize, order_seed: u64) -> Batch {
        match &self.train {
            TrainSet::Online => {
                let teacher = self.teacher.as_ref().expect("online data always has a teacher");
                Batch::Samples(teacher.sample_stream(self.data_seed, Purpose::Online, step, batch_size))
            }
            TrainSet::Fixed(data) => match self.batch_indices(step, batch_size, order_seed) {
                None => Batch::Full,
                Some(idx) => Batch::Samples(data.rows(&idx)),
            },
        }
    }

    /// Which training samples [`Dataset::batch`] uses at `step` (None: all of them, or online).
    pub fn batch_indices(&self, step: u64, batch_size: usize, order_seed: u64) -> Option<Vec<usize>> {
        match &self.train {
            TrainSet::Fixed(data) if batch_size > 0 && batch_size < data.n => {
                let per_epoch = (data.n / batch_size) as u64;
                let (epoch, k) = (step / per_epoch, (step % per_epoch) as usize);
                let order = permutation(&mut stream(order_seed, Purpose::Order, epoch), data.n);
                Some(order[k * batch_size..(k + 1) * batch_size].to_vec())
            }
            _ => None,
        }
    }
}

fn load_pair(xs: &str, ys: &str) -> Result<HostData> {
    let x = read_array(xs)?;
    let y = read_array(ys)?;
    if x.shape.len() != 2 {
        return Err(Error::data(
            &PathBuf::from(xs),
            format!("inputs must be 2-D [P, D], got shape {:?}", x.shape),
            "reshape to [samples, features] (e.g. X.reshape(len(X), -1))",
        ));
    }
    let (n, d) = (x.shape[0], x.shape[1]);
    let c = match y.shape.as_slice() {
        [p] if *p == n => 1,
        [p, c] if *p == n => *c,
        s => {
            return Err(Error::data(
                &PathBuf::from(ys),
                format!("targets have shape {s:?} but the inputs have {n} samples"),
                format!("targets must be [{n}] or [{n}, C]"),
            ));
        }
    };
    if x.data.iter().chain(&y.data).any(|v| !v.is_finite()) {
        return Err(Error::data(&PathBuf::from(xs), "contains NaN or infinite values", "clean the data first"));
    }
    Ok(HostData { x: x.data, y: y.data, n, d, c })
}
