//! Spectra of weight matrices over training (theory map: what the outlier theory predicts).
//!
//! - [`matrix`]: singular values (f64 Gram eigenvalues), top-k triplets by block Lanczos, the square
//!   unfolding of conv kernels (paper App. G.1, eq. 413).
//! - [`normalize`]: the normalization convention, the MP edge and the Tracy–Widom outlier
//!   margin (written once, used everywhere).
//! - [`tracking`]: identities of singular directions across snapshots.
//! - [`snapshot`]: every matrix of a run at one snapshot.
//! - [`curvature`]: sharpness and the top NTK eigenvalue, raw and LR-scaled.
//! - [`h5`]: the `spectra.h5` layout that h5py reads.
//! - [`record`]: writing it during training, on resume, from checkpoints, for external files.
//! - [`worker`]: the recorder on a background thread (off the training's critical path).

pub mod curvature;
pub mod h5;
pub mod matrix;
pub mod normalize;
pub mod record;
pub mod snapshot;
pub mod tracking;
pub mod worker;

pub use matrix::{singular_values, spectral_norm, square_unfold, top_triplets};
pub use normalize::{Normalization, ScaleSource};
pub use snapshot::{MatrixSnapshot, MatrixSpec, SpectraState};
