//! The spectrum of every weight matrix at one snapshot.

use super::matrix::{Triplets, singular_values_of, square_unfold, to_faer, top_triplets};
use super::normalize::Normalization;
use super::tracking::Tracker;
use crate::checkpoint::NamedTensor;
use crate::data::Teacher;
use crate::error::{Error, Result};
use crate::model::ParamInfo;
use faer::Mat;

/// One matrix the spectra follow.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixSpec {
    /// Tensor name in the checkpoint (also the HDF5 group name under `matrices/`).
    pub name: String,
    /// `input`, `hidden`, `readout`, `conv-input`, `conv-hidden`, `conv` or `matrix` (external tensors).
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
    /// All singular values, largest first (full snapshots only; empty otherwise).
    pub values: Vec<f64>,
    /// The top-k values and the track id of each: exact at full snapshots, from the
    /// converged block Lanczos otherwise (to ~1e-7 relative, at the bulk edge too).
    pub top: Vec<f64>,
    pub ids: Vec<i32>,
    /// Values above the outlier threshold (at a top-k-only snapshot, counted among the top k:
    /// exact below k, a lower bound at k).
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
    /// The weight matrices of a run (biases are not matrices; conv kernels are square-unfolded),
    /// each normalized by its initialization variance.
    pub fn for_params(params: &[ParamInfo], top_k: usize, margin: f64, teacher: Option<&Teacher>) -> Self {
        let specs = params
            .iter()
            .filter_map(|p| {
                let (rows, cols) = p.matrix_shape()?;
                Some(MatrixSpec {
                    name: p.name.clone(),
                    kind: p.matrix_kind(),
                    conv_shape: p.conv_shape(),
                    normalization: Normalization::from_init(rows, cols, p.rule.init_std.powi(2), margin),
                })
            })
            .collect();
        let teacher_basis = teacher.map(|t| {
            let b = Mat::from_fn(t.input_dim, t.output_dim, |i, j| t.directions[j * t.input_dim + i]);
            b.qr().compute_thin_Q()
        });
        Self::new(specs, top_k, teacher_basis)
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
        if let Some(j) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::data(
                std::path::Path::new(&spec.name),
                format!("tensor '{}' has a non-finite entry (NaN or ±inf) at flat index {j}", spec.name),
                "its singular values are undefined; check the weights (a diverged run stops before such a checkpoint)",
            ));
        }
        let (data, rows, cols) = match spec.conv_shape {
            Some([co, ci, kh, kw]) => square_unfold(&t.data, co, ci, kh, kw),
            None => (t.data.clone(), spec.rows(), spec.cols()),
        };
        let s = spec.normalization.scale;
        let m = to_faer(&data, rows, cols);
        Ok(Mat::from_fn(rows, cols, |r, c| m[(r, c)] / s))
    }

    /// Continue tracking from a snapshot recorded earlier: the triplets of `tensors` (that
    /// snapshot's weights) with the ids `ids[i]` recorded for matrix i, and the next fresh id
    /// of each tracker. Gives the trackers exactly the state they had after that snapshot.
    pub fn restore_tracking(&mut self, tensors: &[NamedTensor], ids: &[Vec<i32>], next_ids: &[i32]) -> Result<()> {
        for i in 0..self.specs.len() {
            let w = self.normalized(i, tensors)?;
            let k = self.top_k.min(w.nrows().min(w.ncols()));
            let triplets = top_triplets(w.as_ref(), k, i as u64);
            self.trackers[i] = Tracker::restored(ids[i].clone(), triplets, next_ids[i]);
        }
        Ok(())
    }

    /// Does matrix `i` record the teacher overlap?
    pub fn has_teacher_overlap(&self, i: usize) -> bool {
        self.teacher_basis.as_ref().is_some_and(|b| self.specs[i].kind == "input" && b.nrows() == self.specs[i].cols())
    }

    /// Analyse every matrix at one snapshot with its full spectrum (advances the trackers).
    pub fn snapshot(&mut self, tensors: &[NamedTensor]) -> Result<Vec<MatrixSnapshot>> {
        self.snapshot_with(tensors, true)
    }

    /// Analyse every matrix at one snapshot; `full`: every singular value (an O(n³)
    /// eigendecomposition of the Gram matrix), else only the tracked top k (block Lanczos, O(n²k) per block).
    pub fn snapshot_with(&mut self, tensors: &[NamedTensor], full: bool) -> Result<Vec<MatrixSnapshot>> {
        let mut out = Vec::with_capacity(self.specs.len());
        for i in 0..self.specs.len() {
            let w = self.normalized(i, tensors)?;
            let k = self.top_k.min(w.nrows().min(w.ncols()));
            let values = if full { singular_values_of(w.as_ref()) } else { Vec::new() };
            let triplets = top_triplets(w.as_ref(), k, i as u64);
            let ids = self.trackers[i].assign(&triplets);
            let threshold = self.specs[i].normalization.threshold();
            let top = if full { values[..k].to_vec() } else { triplets.values.clone() };
            let counted = if full { &values } else { &top };
            let outliers = counted.iter().filter(|v| **v > threshold).count();
            let delta_top = match &self.initial[i] {
                // At step 0 the learned part is exactly zero.
                Some(w0) if w == *w0 => vec![0.0; k],
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
            out.push(MatrixSnapshot { top, values, ids, outliers, delta_top, teacher_overlap, triplets });
        }
        Ok(out)
    }
}
