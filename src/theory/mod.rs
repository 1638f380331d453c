//! Theory: the predictions specdyn checks training against. Pure numbers: nothing here reads
//! a config, a dataset or a burn tensor (adapters from runs live in [`crate::compare`]).
//!
//! - [`activation`]: φ and its derivatives as functions of a number.
//! - [`rmt`]: Marchenko–Pastur, the semicircle, classical and rectangular BBP (T1–T4).
//! - [`endogenous`]: the two-level DMFT of a Wigner matrix with self-generated spikes (T5).
//! - [`roots`]: robust real-root finding for determinant conditions.
//! - [`simulate`]: the same random systems at finite N, the ground truth for every test.
//! - [`network`], [`weight_outliers`]: the μP network DMFT and its weight outliers (T6, T7).
//! - [`linear`]: the training-level DMFT of a two-layer linear network, proportional limit (T8).
//! - [`extensive`]: one GD step with extensive outputs: the exact two-layer law, any layer of a
//!   deeper network (T10).
//! - [`pencil`]: the spectrum of YᵀY for Y a polynomial in Gaussian matrices (matrix Dyson
//!   equation of a linearization).

pub mod activation;
pub mod endogenous;
pub mod extensive;
pub mod linear;
pub mod network;
pub mod pencil;
pub mod rmt;
pub mod roots;
pub mod simulate;
pub mod weight_outliers;

pub use endogenous::{EndogenousWigner, LevelOne, Outliers};
pub use rmt::{MarchenkoPastur, Semicircle, rectangular_spike_outlier, spiked_wigner_outliers};
