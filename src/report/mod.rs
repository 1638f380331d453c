//! Reports: figures rendered to PNG and SVG.

mod plot;

pub use plot::{Figure, Panel, RefLine, Series, color, save_figure};
