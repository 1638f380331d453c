//! `spectra.h5`: the public, documented HDF5 layout (docs/spectra-hdf5.md), read by h5py.
//!
//! ```text
//! /                      attrs: format = "specdyn-spectra-1", specdyn_version, source
//!                               ("run" | "external: PATH"), config (TOML, runs), normalization (text)
//! /steps                 int64 [T]           snapshot steps
//! /matrices/<tensor>/    one group per weight matrix, named as in the checkpoint
//!     attrs: index (position in the network), rows, cols, aspect_ratio, kind, unfolding, conv_shape (conv kernels), scale,
//!            scale_source, mp_edge, mp_lower_edge, tw_sigma, outlier_margin, outlier_threshold
//!     singular_values    float32 [F, min(rows, cols)]  normalized, largest first, at the full snapshots
//!     full_steps         int64   [F]         the steps of those rows (spectra.full_per_decade)
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
//! **One writer, atomic.** The whole file is written from a [`SpectraData`] held in memory, to a
//! temporary name that is fsynced and renamed over `spectra.h5` ([`write`]). HDF5 files are not
//! crash-safe while open for writing; written this way a crash (SIGKILL in the middle of a
//! write included) leaves the previous complete file. The file is small (singular values, not
//! matrices), so rewriting it at each snapshot costs little.

use super::normalize::{Normalization, ScaleSource};
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

/// Everything in a spectra file.
#[derive(Clone, Debug, Default)]
pub struct SpectraData {
    /// "run" or "external: PATH".
    pub source: String,
    /// The run's effective config (TOML), for runs.
    pub config: Option<String>,
    pub steps: Vec<u64>,
    pub matrices: Vec<MatrixData>,
    pub analysis: Vec<AnalysisRow>,
}

/// One matrix: what it is, and one row per snapshot of each dataset.
#[derive(Clone, Debug)]
pub struct MatrixData {
    pub name: String,
    /// `input`, `hidden`, `readout`, `conv-input`, `conv-hidden`, `conv` or `matrix`.
    pub kind: String,
    /// Conv kernels: [c_out, c_in, k_h, k_w], square-unfolded before analysis.
    pub conv_shape: Option<[usize; 4]>,
    pub normalization: Normalization,
    /// Number of tracked top values K.
    pub top_k: usize,
    /// Whether the teacher overlap is recorded.
    pub has_teacher_overlap: bool,
    /// [full snapshot][index]: every singular value at the steps `full_steps`.
    pub singular_values: Vec<Vec<f32>>,
    pub full_steps: Vec<u64>,
    /// [snapshot][index]
    pub top_values: Vec<Vec<f32>>,
    pub track_id: Vec<Vec<i32>>,
    pub outlier_count: Vec<i32>,
    pub delta_top_values: Vec<Vec<f32>>,
    pub teacher_overlap: Vec<Vec<f32>>,
}

impl MatrixData {
    /// An empty series for this matrix.
    pub fn new(
        name: &str,
        kind: &str,
        conv_shape: Option<[usize; 4]>,
        normalization: Normalization,
        top_k: usize,
        has_teacher_overlap: bool,
    ) -> Self {
        let top_k = top_k.min(normalization.rows.min(normalization.cols));
        MatrixData {
            name: name.to_string(),
            kind: kind.to_string(),
            conv_shape,
            normalization,
            top_k,
            has_teacher_overlap,
            singular_values: Vec::new(),
            full_steps: Vec::new(),
            top_values: Vec::new(),
            track_id: Vec::new(),
            outlier_count: Vec::new(),
            delta_top_values: Vec::new(),
            teacher_overlap: Vec::new(),
        }
    }
    pub fn rows(&self) -> usize {
        self.normalization.rows
    }
    pub fn cols(&self) -> usize {
        self.normalization.cols
    }
    pub fn mp_edge(&self) -> f64 {
        self.normalization.edge
    }
    pub fn threshold(&self) -> f64 {
        self.normalization.threshold()
    }
    pub fn scale_source(&self) -> &'static str {
        self.normalization.source.name()
    }
    /// Keep the first `n` snapshots, and the full spectra of steps before `step`.
    pub fn truncate(&mut self, n: usize, step: u64) {
        let f = self.full_steps.partition_point(|s| *s < step);
        self.singular_values.truncate(f);
        self.full_steps.truncate(f);
        self.top_values.truncate(n);
        self.track_id.truncate(n);
        self.outlier_count.truncate(n);
        self.delta_top_values.truncate(n);
        self.teacher_overlap.truncate(n);
    }
}

impl SpectraData {
    /// Keep the snapshots and analysis rows of steps before `step`.
    pub fn truncate_before(&mut self, step: u64) {
        let n = self.steps.partition_point(|s| *s < step);
        self.steps.truncate(n);
        for m in &mut self.matrices {
            m.truncate(n, step);
        }
        self.analysis.retain(|r| r.step < step);
    }
}

fn h5err(path: &Path, e: hdf5::Error) -> Error {
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

/// A resizable 1-D dataset holding `values`.
fn column<T: hdf5::H5Type + Copy>(g: &hdf5::Group, name: &str, values: &[T]) -> hdf5::Result<()> {
    let ds = g.new_dataset::<T>().chunk(64).shape(values.len()..).create(name)?;
    if !values.is_empty() {
        ds.write_raw(values)?;
    }
    Ok(())
}

/// A resizable 2-D dataset [rows.len(), width].
fn table<T: hdf5::H5Type + Copy>(g: &hdf5::Group, name: &str, rows: &[Vec<T>], width: usize) -> hdf5::Result<()> {
    let n = rows.len();
    let ds = g.new_dataset::<T>().chunk((n.clamp(1, 64), width.max(1))).shape((n.., width)).create(name)?;
    if n > 0 && width > 0 {
        let flat: Vec<T> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let view = ndarray::ArrayView2::from_shape((n, width), &flat)
            .map_err(|e| hdf5::Error::from(format!("row width mismatch in {name}: {e}").as_str()))?;
        ds.write(view)?;
    }
    Ok(())
}

const NORMALIZATION: &str = "singular values of W/scale with scale = sqrt(v*cols), v the entry variance at init \
     (fitted to the MP median for external weights); an untrained matrix has the MP bulk [|1-sqrt(c)|, 1+sqrt(c)], c = rows/cols";

fn write_file(path: &Path, d: &SpectraData) -> hdf5::Result<()> {
    let f = hdf5::File::create(path)?;
    write_group(&f, d)?;
    f.flush()
}

/// The layout above, under `f` (the file's root, or a group of a collection).
fn write_group(f: &hdf5::Group, d: &SpectraData) -> hdf5::Result<()> {
    str_attr(f, "format", FORMAT)?;
    str_attr(f, "specdyn_version", env!("CARGO_PKG_VERSION"))?;
    str_attr(f, "source", &d.source)?;
    str_attr(f, "normalization", NORMALIZATION)?;
    if let Some(c) = &d.config {
        str_attr(f, "config", c)?;
    }
    let steps: Vec<i64> = d.steps.iter().map(|s| *s as i64).collect();
    column(f, "steps", &steps)?;
    let mg = f.create_group("matrices")?;
    for (index, m) in d.matrices.iter().enumerate() {
        let g = mg.create_group(&m.name)?;
        let n = &m.normalization;
        u64_attr(&g, "index", index as u64)?;
        u64_attr(&g, "rows", n.rows as u64)?;
        u64_attr(&g, "cols", n.cols as u64)?;
        f64_attr(&g, "aspect_ratio", n.aspect_ratio())?;
        str_attr(&g, "kind", &m.kind)?;
        str_attr(&g, "unfolding", if m.conv_shape.is_some() { "square" } else { "none" })?;
        if let Some(cs) = m.conv_shape {
            g.new_attr::<u64>().shape(4).create("conv_shape")?.write_raw(&cs.map(|v| v as u64))?;
        }
        f64_attr(&g, "scale", n.scale)?;
        str_attr(&g, "scale_source", n.source.name())?;
        f64_attr(&g, "mp_edge", n.edge)?;
        f64_attr(&g, "mp_lower_edge", n.lower_edge)?;
        f64_attr(&g, "tw_sigma", n.tw_sigma)?;
        f64_attr(&g, "outlier_margin", n.margin)?;
        f64_attr(&g, "outlier_threshold", n.threshold())?;
        table(&g, "singular_values", &m.singular_values, n.rows.min(n.cols))?;
        column(&g, "full_steps", &m.full_steps.iter().map(|s| *s as i64).collect::<Vec<_>>())?;
        table(&g, "top_values", &m.top_values, m.top_k)?;
        table(&g, "track_id", &m.track_id, m.top_k)?;
        column(&g, "outlier_count", &m.outlier_count)?;
        table(&g, "delta_top_values", &m.delta_top_values, m.top_k)?;
        if m.has_teacher_overlap {
            table(&g, "teacher_overlap", &m.teacher_overlap, m.top_k)?;
        }
        crate::fault::point("spectra-write");
    }
    let a = f.create_group("analysis")?;
    let col = |get: fn(&AnalysisRow) -> f64| d.analysis.iter().map(get).collect::<Vec<f64>>();
    column(&a, "steps", &d.analysis.iter().map(|r| r.step as i64).collect::<Vec<_>>())?;
    column(&a, "sharpness", &col(|r| r.sharpness))?;
    column(&a, "lr_sharpness", &col(|r| r.lr_sharpness))?;
    column(&a, "ntk_top", &col(|r| r.ntk_top))?;
    column(&a, "lr_ntk_top", &col(|r| r.lr_ntk_top))?;
    column(&a, "learning_rate", &col(|r| r.learning_rate))?;
    Ok(())
}

/// One member of a collection file: its group name, text attributes and spectra.
pub struct Member<'a> {
    pub name: &'a str,
    pub attrs: Vec<(String, String)>,
    pub data: &'a SpectraData,
}

/// Several spectra files in one (`/cells/<name>/` with the layout above under each, plus text
/// attributes such as a sweep cell's coordinates), written atomically.
pub fn write_collection(path: &Path, format: &str, members: &[Member<'_>]) -> Result<()> {
    crate::checkpoint::atomic_write_with(path, |tmp| {
        let run = || -> hdf5::Result<()> {
            let f = hdf5::File::create(tmp)?;
            str_attr(&f, "format", format)?;
            str_attr(&f, "specdyn_version", env!("CARGO_PKG_VERSION"))?;
            let cells = f.create_group("cells")?;
            for m in members {
                let g = cells.create_group(m.name)?;
                write_group(&g, m.data)?;
                for (k, v) in &m.attrs {
                    str_attr(&g, k, v)?;
                }
            }
            f.flush()
        };
        run().map_err(|e| h5err(path, e))
    })
}

/// Write the whole file atomically (temporary file, fsync, rename).
pub fn write(path: &Path, d: &SpectraData) -> Result<()> {
    crate::checkpoint::atomic_write_with(path, |tmp| write_file(tmp, d).map_err(|e| h5err(path, e)))
}

fn rows2<T: hdf5::H5Type + Clone>(ds: &hdf5::Dataset, n: usize) -> hdf5::Result<Vec<Vec<T>>> {
    let a = ds.read_2d::<T>()?;
    Ok(a.outer_iter().take(n).map(|r| r.to_vec()).collect())
}

fn read_file(path: &Path) -> hdf5::Result<SpectraData> {
    let f = hdf5::File::open(path)?;
    let format: VarLenUnicode = f.attr("format")?.read_scalar()?;
    if format.as_str() != FORMAT {
        return Err(hdf5::Error::from(format!("format is '{}', not '{FORMAT}'", format.as_str()).as_str()));
    }
    let text_attr = |loc: &hdf5::Location, k: &str| {
        loc.attr(k).and_then(|a| a.read_scalar::<VarLenUnicode>()).map(|s| s.to_string())
    };
    let steps: Vec<u64> = f.dataset("steps")?.read_1d::<i64>()?.iter().map(|s| *s as u64).collect();
    let n = steps.len();
    let mut matrices = Vec::new();
    let mut order = Vec::new();
    let mg = f.group("matrices")?;
    for name in mg.member_names()? {
        let g = mg.group(&name)?;
        order.push(g.attr("index").and_then(|a| a.read_scalar::<u64>()).ok());
        let attr_f = |k: &str| g.attr(k).and_then(|a| a.read_scalar::<f64>());
        let attr_u = |k: &str| g.attr(k).and_then(|a| a.read_scalar::<u64>());
        let source = match text_attr(&g, "scale_source")?.as_str() {
            "fitted" => ScaleSource::Fitted,
            "rms" => ScaleSource::Rms,
            _ => ScaleSource::Init,
        };
        let normalization = Normalization {
            rows: attr_u("rows")? as usize,
            cols: attr_u("cols")? as usize,
            scale: attr_f("scale")?,
            source,
            edge: attr_f("mp_edge")?,
            lower_edge: attr_f("mp_lower_edge")?,
            tw_sigma: attr_f("tw_sigma")?,
            margin: attr_f("outlier_margin")?,
        };
        let conv_shape = g
            .attr("conv_shape")
            .and_then(|a| a.read_raw::<u64>())
            .ok()
            .and_then(|v| (v.len() == 4).then(|| [v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize]));
        let top_values: Vec<Vec<f32>> = rows2(&g.dataset("top_values")?, n)?;
        let teacher = g.dataset("teacher_overlap").ok();
        let mut m = MatrixData::new(
            &name,
            &text_attr(&g, "kind")?,
            conv_shape,
            normalization,
            g.dataset("top_values")?.shape().get(1).copied().unwrap_or(0),
            teacher.is_some(),
        );
        m.full_steps = match g.dataset("full_steps") {
            Ok(ds) => ds.read_1d::<i64>()?.iter().map(|s| *s as u64).collect(),
            // Files written before sparse full spectra: every snapshot is full.
            Err(_) => steps.clone(),
        };
        m.singular_values = rows2(&g.dataset("singular_values")?, m.full_steps.len())?;
        m.top_values = top_values;
        m.track_id = rows2(&g.dataset("track_id")?, n)?;
        m.outlier_count = g.dataset("outlier_count")?.read_1d::<i32>()?.iter().take(n).copied().collect();
        m.delta_top_values = rows2(&g.dataset("delta_top_values")?, n)?;
        if let Some(ds) = teacher {
            m.teacher_overlap = rows2(&ds, n)?;
        }
        let complete = m.singular_values.len() == m.full_steps.len()
            && m.top_values.len() == n
            && m.track_id.len() == n
            && m.outlier_count.len() == n
            && m.delta_top_values.len() == n;
        if !complete {
            return Err(hdf5::Error::from(format!("matrix '{name}' has fewer rows than /steps").as_str()));
        }
        matrices.push(m);
    }
    // The order they were written in (the network's), not HDF5's alphabetical order; files
    // without the `index` attribute fall back to the first number in the name.
    let mut keyed: Vec<((u64, usize, String), MatrixData)> = matrices
        .into_iter()
        .zip(order)
        .map(|(m, i)| {
            let (n, name) = layer_order(&m.name);
            ((i.unwrap_or(u64::MAX), n, name), m)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let matrices: Vec<MatrixData> = keyed.into_iter().map(|(_, m)| m).collect();
    let a = f.group("analysis")?;
    let col = |k: &str| a.dataset(k).and_then(|d| d.read_1d::<f64>()).map(|v| v.to_vec());
    let asteps: Vec<i64> = a.dataset("steps")?.read_1d::<i64>()?.to_vec();
    let (sh, lsh, nt, lnt, lr) =
        (col("sharpness")?, col("lr_sharpness")?, col("ntk_top")?, col("lr_ntk_top")?, col("learning_rate")?);
    if [sh.len(), lsh.len(), nt.len(), lnt.len(), lr.len()].iter().any(|l| *l < asteps.len()) {
        return Err(hdf5::Error::from("an /analysis column has fewer rows than /analysis/steps"));
    }
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
    Ok(SpectraData {
        source: text_attr(&f, "source").unwrap_or_default(),
        config: text_attr(&f, "config").ok(),
        steps,
        matrices,
        analysis,
    })
}

/// Read a spectra file.
pub fn read(path: &Path) -> Result<SpectraData> {
    read_file(path).map_err(|e| {
        Error::data(
            path,
            format!("is not a readable specdyn spectra file: {e}"),
            "recompute it from the run's checkpoints with `specdyn spectra RUN_DIR`",
        )
    })
}

/// Sort key: the first number in the name, then the name.
pub fn layer_order(name: &str) -> (usize, String) {
    let digits: String = name.chars().skip_while(|c| !c.is_ascii_digit()).take_while(|c| c.is_ascii_digit()).collect();
    (digits.parse().unwrap_or(usize::MAX), name.to_string())
}
