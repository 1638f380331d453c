//! Networks and how they scale with width: the parameterization table and the MLP.

mod activation;
mod mlp;
mod param;

pub use activation::{Activation, erf};
pub use mlp::{Mlp, MlpSpec, ParamInfo, Trace, scalar, tensor_to_vec, transpose};
pub use param::{LayerKind, LayerRule, ParamTable, Parameterization, UpdateRule};
