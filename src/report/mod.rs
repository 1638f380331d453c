//! Reports: figures rendered to PNG and SVG, and the tables and figures of `specdyn theory`.

mod plot;
pub mod spectra;
pub mod sweep;
pub mod theory;

pub use plot::{Figure, Panel, RefLine, Series, color, save_figure};
