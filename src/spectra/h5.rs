//! `spectra.h5`: the public, documented HDF5 layout (docs/spectra-hdf5.md), read by h5py.
//!
//! ```text
//! /                      attrs: format = "specdyn-spectra-1", specdyn_version, source
//!                               ("run" | "external"), config (TOML, runs), normalization (text)
//! /steps                 int64 [T]           snapshot steps (extendable)
//! /matrices/<tensor>/    one group per weight matrix, named as in the checkpoint
//!     attrs: rows, cols, aspect_ratio, kind, unfolding, scale, scale_source, mp_edge,
//!            mp_lower_edge, tw_sigma, outlier_margin, outlier_threshold
//!     singular_values    float32 [T, min(rows, cols)]  normalized, largest first
//!     top_values         float32 [T, K]      the K largest (same values)
//!     track_id           int32   [T, K]      identity of each top value across snapshots
//!     outlier_count      int32   [T]         values above outlier_threshold
//!     delta_top_values   float32 [T, K]      top singular values of (W(t) − W(0))/scale
//!     teacher_overlap    float32 [T, K]      input layer with a teacher: ‖P_teacher v_i‖
//! /analysis/             curvature at analysis steps
//!     steps              int64   [A]
//!     sharpness          float64 [A]   λ_max of the loss Hessian
//!     lr_sharpness       float64 [A]   λ_max of P^½ H P^½ (P = per-layer rates): GD is stable below 2
//!     ntk_top            float64 [A]   λ_max of the empirical NTK J Jᵀ / B on the batch
//!     lr_ntk_top         float64 [A]   λ_max of J P Jᵀ / B: compare with 2
//!     learning_rate      float64 [A]   base rate η₀ × schedule at that step
//! ```
//!
//! Every dataset grows along its first axis. The file is opened, appended to and closed for
//! each snapshot, so a crash between snapshots leaves a readable file holding every finished one.

use super::snapshot::{MatrixSnapshot, MatrixSpec};
use crate::error::{Error, Result};
use hdf5::types::VarLenUnicode;
use std::path::Path;
use std::str::FromStr;

/// Value of the root `format` attribute.
pub const FORMAT: &str = "specdyn-spectra-1";

/// One row of `/analysis`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnalysisRow {
    pub step: u64,
    pub sharpness: f64,
    pub lr_sharpness: f64,
    pub ntk_top: f64,
    pub lr_ntk_top: f64,
    pub learning_rate: f64,
}

/// Root attributes.
#[derive(Clone, Debug, Default)]
pub struct FileInfo {
    pub source: String,
    pub config: Option<String>,
}

fn h5(path: &Path, e: hdf5::Error) -> Error {
    Error::Io {
        action: "write HDF5",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
        hint: "check free disk space and that no other program holds the file open".into(),
    }
}

fn str_attr(loc: &hdf5::Location, name: &str, value: &str) -> hdf5::Result<()> {
    let v = VarLenUnicode::from_str(value).map_err(|e| hdf5::Error::from(e.to_string().as_str()))?;
    loc.new_attr::<VarLenUnicode>().shape(()).create(name)?.write_scalar(&v)
}

fn f64_attr(loc: &hdf5::Location, name: &str, value: f64) -> hdf5::Result<()> {
    loc.new_attr::<f64>().shape(()).create(name)?.write_scalar(&value)
}

fn u64_attr(loc: &hdf5::Location, name: &str, value: u64) -> hdf5::Result<()> {
    loc.new_attr::<u64>().shape(()).create(name)?.write_scalar(&value)
}

fn extendable<T: hdf5::H5Type>(g: &hdf5::Group, name: &str, width: Option<usize>) -> hdf5::Result<()> {
    match width {
        Some(w) => g.new_dataset::<T>().chunk((1, w.max(1))).shape((0.., w)).create(name).map(|_| ()),
        None => g.new_dataset::<T>().chunk(64).shape(0..).create(name).map(|_| ()),
    }
}

const NORMALIZATION: &str = "singular values of W/scale with scale = sqrt(v*cols), v the entry variance at init \
     (fitted to the MP median for external weights); an untrained matrix has the MP bulk [|1-sqrt(c)|, 1+sqrt(c)], c = rows/cols";

/// Create a new file with empty datasets for these matrices.
pub fn create(path: &Path, info: &FileInfo, specs: &[MatrixSpec], top_k: usize, teacher: bool) -> Result<()> {
    let run = || -> hdf5::Result<()> {
        let f = hdf5::File::create(path)?;
        str_attr(&f, "format", FORMAT)?;
        str_attr(&f, "specdyn_version", env!("CARGO_PKG_VERSION"))?;
        str_attr(&f, "source", &info.source)?;
        str_attr(&f, "normalization", NORMALIZATION)?;
        if let Some(c) = &info.config {
            str_attr(&f, "config", c)?;
        }
        extendable::<i64>(&f, "steps", None)?;
        let mg = f.create_group("matrices")?;
        for s in specs {
            let g = mg.create_group(&s.name)?;
            let n = &s.normalization;
            u64_attr(&g, "rows", n.rows as u64)?;
            u64_attr(&g, "cols", n.cols as u64)?;
            f64_attr(&g, "aspect_ratio", n.aspect_ratio())?;
            str_attr(&g, "kind", &s.kind)?;
            str_attr(&g, "unfolding", if s.conv_shape.is_some() { "square" } else { "none" })?;
            f64_attr(&g, "scale", n.scale)?;
            str_attr(&g, "scale_source", n.source.name())?;
            f64_attr(&g, "mp_edge", n.edge)?;
            f64_attr(&g, "mp_lower_edge", n.lower_edge)?;
            f64_attr(&g, "tw_sigma", n.tw_sigma)?;
            f64_attr(&g, "outlier_margin", n.margin)?;
            f64_attr(&g, "outlier_threshold", n.threshold())?;
            let k = top_k.min(n.rows.min(n.cols));
            extendable::<f32>(&g, "singular_values", Some(n.rows.min(n.cols)))?;
            extendable::<f32>(&g, "top_values", Some(k))?;
            extendable::<i32>(&g, "track_id", Some(k))?;
            extendable::<i32>(&g, "outlier_count", None)?;
            extendable::<f32>(&g, "delta_top_values", Some(k))?;
            if teacher && s.kind == "input" {
                extendable::<f32>(&g, "teacher_overlap", Some(k))?;
            }
        }
        let a = f.create_group("analysis")?;
        extendable::<i64>(&a, "steps", None)?;
        for name in ["sharpness", "lr_sharpness", "ntk_top", "lr_ntk_top", "learning_rate"] {
            extendable::<f64>(&a, name, None)?;
        }
        Ok(())
    };
    run().map_err(|e| h5(path, e))
}

fn push_row<T: hdf5::H5Type + Copy>(ds: &hdf5::Dataset, row: &[T]) -> hdf5::Result<()> {
    let shape = ds.shape();
    let t = shape[0];
    if shape.len() == 1 {
        ds.resize(t + 1)?;
        ds.write_slice(&row[..1], t..t + 1)
    } else {
        ds.resize((t + 1, shape[1]))?;
        let view = ndarray::ArrayView2::from_shape((1, row.len()), row)
            .map_err(|e| hdf5::Error::from(e.to_string().as_str()))?;
        ds.write_slice(view, (t..t + 1, ..))
    }
}

/// Append one snapshot.
pub fn append(path: &Path, step: u64, specs: &[MatrixSpec], snaps: &[MatrixSnapshot]) -> Result<()> {
    let run = || -> hdf5::Result<()> {
        let f = hdf5::File::open_rw(path)?;
        for (s, snap) in specs.iter().zip(snaps) {
            let g = f.group(&format!("matrices/{}", s.name))?;
            let f32s = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();
            push_row(&g.dataset("singular_values")?, &f32s(&snap.values))?;
            push_row(&g.dataset("top_values")?, &f32s(&snap.top))?;
            push_row(&g.dataset("track_id")?, &snap.ids)?;
            push_row(&g.dataset("outlier_count")?, &[snap.outliers as i32])?;
            push_row(&g.dataset("delta_top_values")?, &f32s(&snap.delta_top))?;
            if let (Some(o), Ok(ds)) = (&snap.teacher_overlap, g.dataset("teacher_overlap")) {
                push_row(&ds, &f32s(o))?;
            }
        }
        // The step last: readers trust /steps for the number of complete rows.
        push_row(&f.dataset("steps")?, &[step as i64])?;
        f.flush()
    };
    run().map_err(|e| h5(path, e))
}

/// Append one row of `/analysis`.
pub fn append_analysis(path: &Path, row: &AnalysisRow) -> Result<()> {
    let run = || -> hdf5::Result<()> {
        let f = hdf5::File::open_rw(path)?;
        let a = f.group("analysis")?;
        push_row(&a.dataset("sharpness")?, &[row.sharpness])?;
        push_row(&a.dataset("lr_sharpness")?, &[row.lr_sharpness])?;
        push_row(&a.dataset("ntk_top")?, &[row.ntk_top])?;
        push_row(&a.dataset("lr_ntk_top")?, &[row.lr_ntk_top])?;
        push_row(&a.dataset("learning_rate")?, &[row.learning_rate])?;
        push_row(&a.dataset("steps")?, &[row.step as i64])?;
        f.flush()
    };
    run().map_err(|e| h5(path, e))
}

/// Everything in a spectra file, for plots, CSV and tests.
#[derive(Clone, Debug, Default)]
pub struct SpectraData {
    pub steps: Vec<u64>,
    pub config: Option<String>,
    pub matrices: Vec<MatrixData>,
    pub analysis: Vec<AnalysisRow>,
}

/// One matrix's datasets and attributes.
#[derive(Clone, Debug, Default)]
pub struct MatrixData {
    pub name: String,
    pub kind: String,
    pub rows: usize,
    pub cols: usize,
    pub mp_edge: f64,
    pub threshold: f64,
    pub scale_source: String,
    /// [snapshot][index]
    pub singular_values: Vec<Vec<f32>>,
    pub top_values: Vec<Vec<f32>>,
    pub track_id: Vec<Vec<i32>>,
    pub outlier_count: Vec<i32>,
    pub delta_top_values: Vec<Vec<f32>>,
    pub teacher_overlap: Option<Vec<Vec<f32>>>,
}

fn rows2<T: hdf5::H5Type + Clone>(ds: &hdf5::Dataset, n: usize) -> hdf5::Result<Vec<Vec<T>>> {
    let a = ds.read_2d::<T>()?;
    Ok(a.outer_iter().take(n).map(|r| r.to_vec()).collect())
}

/// Read a spectra file. Rows beyond `/steps` (an interrupted append) are ignored.
pub fn read(path: &Path) -> Result<SpectraData> {
    let run = || -> hdf5::Result<SpectraData> {
        let f = hdf5::File::open(path)?;
        let format: VarLenUnicode = f.attr("format")?.read_scalar()?;
        if format.as_str() != FORMAT {
            return Err(hdf5::Error::from(format!("format is '{}', not '{FORMAT}'", format.as_str()).as_str()));
        }
        let steps: Vec<u64> = f.dataset("steps")?.read_1d::<i64>()?.iter().map(|s| *s as u64).collect();
        let n = steps.len();
        let config = f.attr("config").ok().and_then(|a| a.read_scalar::<VarLenUnicode>().ok()).map(|s| s.to_string());
        let mut matrices = Vec::new();
        let mg = f.group("matrices")?;
        for name in mg.member_names()? {
            let g = mg.group(&name)?;
            let attr_f = |k: &str| g.attr(k).and_then(|a| a.read_scalar::<f64>());
            let attr_u = |k: &str| g.attr(k).and_then(|a| a.read_scalar::<u64>());
            let attr_s = |k: &str| g.attr(k).and_then(|a| a.read_scalar::<VarLenUnicode>()).map(|s| s.to_string());
            matrices.push(MatrixData {
                kind: attr_s("kind")?,
                rows: attr_u("rows")? as usize,
                cols: attr_u("cols")? as usize,
                mp_edge: attr_f("mp_edge")?,
                threshold: attr_f("outlier_threshold")?,
                scale_source: attr_s("scale_source")?,
                singular_values: rows2(&g.dataset("singular_values")?, n)?,
                top_values: rows2(&g.dataset("top_values")?, n)?,
                track_id: rows2(&g.dataset("track_id")?, n)?,
                outlier_count: g.dataset("outlier_count")?.read_1d::<i32>()?.iter().take(n).copied().collect(),
                delta_top_values: rows2(&g.dataset("delta_top_values")?, n)?,
                teacher_overlap: match g.dataset("teacher_overlap") {
                    Ok(ds) => Some(rows2(&ds, n)?),
                    Err(_) => None,
                },
                name,
            });
        }
        // Checkpoint order (layers.0, layers.1, …), not HDF5's alphabetical order.
        matrices.sort_by_key(|m| layer_order(&m.name));
        let a = f.group("analysis")?;
        let col = |k: &str| a.dataset(k).and_then(|d| d.read_1d::<f64>()).map(|v| v.to_vec());
        let asteps: Vec<i64> = a.dataset("steps")?.read_1d::<i64>()?.to_vec();
        let (sh, lsh, nt, lnt, lr) =
            (col("sharpness")?, col("lr_sharpness")?, col("ntk_top")?, col("lr_ntk_top")?, col("learning_rate")?);
        let analysis = (0..asteps.len())
            .map(|i| AnalysisRow {
                step: asteps[i] as u64,
                sharpness: sh[i],
                lr_sharpness: lsh[i],
                ntk_top: nt[i],
                lr_ntk_top: lnt[i],
                learning_rate: lr[i],
            })
            .collect();
        Ok(SpectraData { steps, config, matrices, analysis })
    };
    run().map_err(|e| {
        Error::data(
            path,
            format!("is not a readable specdyn spectra file: {e}"),
            "recompute it with `specdyn spectra RUN_DIR`",
        )
    })
}

/// Sort key: the first number in the name, then the name.
pub fn layer_order(name: &str) -> (usize, String) {
    let digits: String = name.chars().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
    (digits.parse().unwrap_or(usize::MAX), name.to_string())
}
