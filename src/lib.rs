//! # specdyn
//!
//! Train μP (mean-field), NTK and standard-parameterized networks in [burn], record metrics and
//! log-spaced checkpoints, and watch the spectra of their weights evolve next to the dynamical
//! mean-field theory (DMFT) of Bordelon, Lauditi & Pehlevan, "Spectral Dynamics in Deep
//! Networks: Feature Learning, Outlier Escape, and Learning Rate Transfer".
//!
//! The modules follow the data's path:
//!
//! | stage | module | what |
//! |---|---|---|
//! | configure | [`config`] | one validated [`config::RunConfig`] from TOML + `--set` overrides |
//! | data | [`data`] | Gaussian teachers (single-index, linear, multi-output) and user files |
//! | model | [`model`] | the μP/NTK/SP parameterization table and the MLP |
//! | train | [`train`] | SGD/Adam with per-layer rates, the training loop, resume |
//! | checkpoint | [`checkpoint`] | atomic, verified safetensors checkpoints at log-spaced steps |
//! | diagnose | [`coord`] | the coordinate check across widths |
//! | spectra | [`spectra`] | MP-normalized singular values, outliers, sharpness, HDF5 |
//! | theory | [`theory`] | MP, BBP, the endogenous-spike DMFT, the μP network DMFT and its outliers |
//! | compare | [`compare`] | the DMFT next to trained runs (loss, kernels, outliers) |
//! | sweep | [`sweep`] | grids of runs, locally or as Slurm job arrays; transfer and EoS reports |
//! | report | [`report`] | PNG/SVG figures |
//!
//! [`backend`] is the one place that names burn backends, [`kernels`] the backend extension
//! with the hot operations of training. The command line lives in the binary (`src/cli/`).

pub mod array;
pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod coord;
pub mod data;
pub mod error;
pub mod fault;
pub mod io;
pub mod kernels;
pub mod model;
pub mod progress;
pub mod report;
pub mod resources;
pub mod rng;
pub mod rundir;
pub mod spectra;
pub mod sweep;
pub mod theory;
pub mod train;

pub use error::{Error, Result};
