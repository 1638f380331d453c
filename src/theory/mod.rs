//! Theory: the predictions specdyn checks training against.
//!
//! - [`rmt`]: Marchenko–Pastur, the semicircle, classical and rectangular BBP (T1–T4).
//! - [`endogenous`]: the two-level DMFT of a Wigner matrix with self-generated spikes (T5).
//! - [`roots`]: robust real-root finding for determinant conditions.
//! - [`simulate`]: the same random systems at finite N, the ground truth for every test.

pub mod endogenous;
pub mod network;
pub mod rmt;
pub mod roots;
pub mod simulate;
pub mod weight_outliers;

pub use endogenous::{EndogenousWigner, LevelOne, Outliers};
pub use rmt::{MarchenkoPastur, Semicircle, rectangular_spike_outlier, spiked_wigner_outliers};
