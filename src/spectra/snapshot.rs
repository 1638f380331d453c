//! The spectrum of every weight matrix at one snapshot.

use super::matrix::{Triplets, singular_values_of, square_unfold, to_faer, top_triplets};
use super::normalize::Normalization;
use super::tracking::Tracker;
use crate::checkpoint::NamedTensor;
use crate::config::RunConfig;
use crate::data::Teacher;
use crate::error::{Error, Result};
use crate::model::{MlpSpec, ParamInfo};
use faer::Mat;

/// One matrix the spectra follow.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixSpec {
    /// Tensor name in the checkpoint (also the HDF5 group name under `matrices/`).
    pub name: String,
    /// `input`, `hidden`, `readout`, `conv` or `matrix` (external 2-D tensors).
    pub kind: String,
    /// Conv kernels: [c_out, c_in, k_h, k_w], square-unfolded before analysis.
    pub conv_shape: Option<[usize; 4]>,
    pub normalization: Normalization,
}

impl MatrixSpec {
    pub fn rows(&self) -> usize {
        self.normalization.rows
    }
    pub fn cols(&self) -> usize {
        self.normalization.cols
    }
}

/// What one matrix looks like at one snapshot (normalized singular values).
#[derive(Clone, Debug)]
pub struct MatrixSnapshot {
    /// All singular values, largest first.
    pub values: Vec<f64>,
    /// The top-k values (exact) and the track id of each.
    pub top: Vec<f64>,
    pub ids: Vec<i32>,
    /// Values above the outlier threshold.
    pub outliers: usize,
    /// Top-k singular values of (W(t) − W(0))/scale: the learned low-rank part.
    pub delta_top: Vec<f64>,
    /// ‖P_teacher v_i‖ for the top-k right singular vectors (input layer with a teacher).
    pub teacher_overlap: Option<Vec<f64>>,
    /// The top-k triplets (kept in memory for tracking; not written).
    pub triplets: Triplets,
}

/// The matrices of a run and their state across snapshots.
#[derive(Clone, Debug)]
pub struct SpectraState {
    pub specs: Vec<MatrixSpec>,
    pub top_k: usize,
    trackers: Vec<Tracker>,
    initial: Vec<Option<Mat<f64>>>,
    /// Orthonormal basis of the teacher directions (D × r), for the input layer.
    teacher_basis: Option<Mat<f64>>,
}

impl SpectraState {
    /// The weight matrices of a specdyn MLP run (biases are not matrices).
    pub fn for_run(config: &RunConfig, input_dim: usize, output_dim: usize, teacher: Option<&Teacher>) -> Self {
        let spec = MlpSpec::from_config(config, input_dim, output_dim);
        let specs = spec
            .params()
            .iter()
            .filter(|p| !p.is_bias())
            .map(|p: &ParamInfo| {
                let shape = p.export_shape();
                MatrixSpec {
                    name: p.name.clone(),
                    kind: p.kind.name().to_string(),
                    conv_shape: None,
                    normalization: Normalization::from_init(
                        shape[0],
                        shape[1],
                        p.rule.init_std.powi(2),
                        config.spectra.outlier_margin,
                    ),
                }
            })
            .collect();
        let teacher_basis = teacher.map(|t| {
            let b = Mat::from_fn(t.input_dim, t.output_dim, |i, j| t.directions[j * t.input_dim + i]);
            b.qr().compute_thin_Q()
        });
        Self::new(specs, config.spectra.top_k, teacher_basis)
    }

    pub fn new(specs: Vec<MatrixSpec>, top_k: usize, teacher_basis: Option<Mat<f64>>) -> Self {
        let n = specs.len();
        SpectraState { specs, top_k, trackers: vec![Tracker::default(); n], initial: vec![None; n], teacher_basis }
    }

    /// Set W(0) for the learned-part spectra from the step-0 tensors.
    pub fn set_initial(&mut self, tensors: &[NamedTensor]) -> Result<()> {
        for i in 0..self.specs.len() {
            self.initial[i] = Some(self.normalized(i, tensors)?);
        }
        Ok(())
    }

    /// The normalized (and, for conv kernels, unfolded) matrix `i` from checkpoint tensors.
    pub fn normalized(&self, i: usize, tensors: &[NamedTensor]) -> Result<Mat<f64>> {
        let spec = &self.specs[i];
        let t = tensors.iter().find(|t| t.name == spec.name).ok_or_else(|| {
            Error::checkpoint(
                std::path::Path::new(&spec.name),
                format!("has no tensor '{}'", spec.name),
                "the checkpoint does not belong to this run",
            )
        })?;
        let (data, rows, cols) = match spec.conv_shape {
            Some([co, ci, kh, kw]) => square_unfold(&t.data, co, ci, kh, kw),
            None => (t.data.clone(), spec.rows(), spec.cols()),
        };
        let s = spec.normalization.scale;
        let m = to_faer(&data, rows, cols);
        Ok(Mat::from_fn(rows, cols, |r, c| m[(r, c)] / s))
    }

    /// Analyse every matrix at one snapshot (advances the trackers).
    pub fn snapshot(&mut self, tensors: &[NamedTensor]) -> Result<Vec<MatrixSnapshot>> {
        let mut out = Vec::with_capacity(self.specs.len());
        for i in 0..self.specs.len() {
            let w = self.normalized(i, tensors)?;
            let values = singular_values_of(w.as_ref());
            let k = self.top_k.min(values.len());
            let triplets = top_triplets(w.as_ref(), k, i as u64);
            let ids = self.trackers[i].assign(&triplets);
            let threshold = self.specs[i].normalization.threshold();
            let outliers = values.iter().filter(|v| **v > threshold).count();
            let delta_top = match &self.initial[i] {
                Some(w0) => top_triplets((&w - w0).as_ref(), k, 1000 + i as u64).values,
                None => vec![f64::NAN; k],
            };
            let teacher_overlap = match (&self.teacher_basis, self.specs[i].kind.as_str()) {
                (Some(b), "input") if b.nrows() == w.ncols() => Some(
                    (0..k)
                        .map(|j| {
                            let proj = b.transpose() * triplets.v.col(j);
                            proj.norm_l2()
                        })
                        .collect(),
                ),
                _ => None,
            };
            out.push(MatrixSnapshot {
                top: values[..k].to_vec(),
                values,
                ids,
                outliers,
                delta_top,
                teacher_overlap,
                triplets,
            });
        }
        Ok(out)
    }
}
