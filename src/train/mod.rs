//! Training: the optimizer, one step of the trainer, and the `specdyn train` loop around it.

mod optim;
mod run;
mod trainer;

pub use optim::{Optimizer, ParamState, schedule_factor};
pub use run::{INTERRUPTED, RecomputeSpectra, TrainOptions, analysis_row, install_interrupt_handler, train};
pub use trainer::{Evaluation, StepGradients, Trainer, memory_estimate, memory_estimate_for, mse_loss};
