//! Training: the optimizer, one step of the trainer, and the `specdyn train` loop around it.

mod optim;
mod run;
mod trainer;

pub use optim::{Optimizer, ParamState, schedule_factor};
pub use run::{
    INTERRUPTED, RunDir, RunStatus, Summary, TrainOptions, config_differences, install_interrupt_handler, train,
};
pub use trainer::{StepGradients, Trainer, mse_loss};
