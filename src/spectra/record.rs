//! Recording `spectra.h5` for a run (during training, on resume, or recomputed from
//! checkpoints) and for external weight files.
//!
//! A [`SpectraRecorder`] holds the file's contents in memory, appends a snapshot per
//! checkpoint, and writes the whole file atomically on [`SpectraRecorder::flush`] — before
//! every checkpoint, so every snapshot older than the newest checkpoint is on disk.

use super::h5::{self, AnalysisRow, MatrixData, SpectraData};
use super::normalize::Normalization;
use super::snapshot::{MatrixSnapshot, MatrixSpec, SpectraState};
use crate::checkpoint::{NamedTensor, atomic_write};
use crate::config::RunConfig;
use crate::data::Teacher;
use crate::error::{Error, Result};
use crate::model::ParamInfo;
use crate::rundir::{RunDir, load_own};
use std::path::{Path, PathBuf};

/// The spectra of one run, in memory, and where they go.
pub struct SpectraRecorder {
    pub path: PathBuf,
    pub state: SpectraState,
    pub data: SpectraData,
    /// Seconds spent computing spectra and curvature.
    pub seconds: f64,
}

impl SpectraRecorder {
    /// A new, empty record for a run's matrices (nothing written yet).
    pub fn new(path: &Path, config: &RunConfig, params: &[ParamInfo], teacher: Option<&Teacher>) -> Self {
        let sp = &config.spectra;
        let state = SpectraState::for_params(params, sp.top_k, sp.outlier_margin, teacher);
        let matrices = (0..state.specs.len())
            .map(|i| {
                let s = &state.specs[i];
                MatrixData::new(
                    &s.name,
                    &s.kind,
                    s.conv_shape,
                    s.normalization.clone(),
                    state.top_k,
                    state.has_teacher_overlap(i),
                )
            })
            .collect();
        let data = SpectraData {
            source: "run".into(),
            config: Some(config.to_toml()),
            steps: Vec::new(),
            matrices,
            analysis: Vec::new(),
        };
        SpectraRecorder { path: path.to_path_buf(), state, data, seconds: 0.0 }
    }

    /// Analyse and append one snapshot (the step-0 snapshot also fixes W(0)); with every
    /// singular value when `full`.
    pub fn record(&mut self, step: u64, tensors: &[NamedTensor], full: bool) -> Result<()> {
        let t0 = std::time::Instant::now();
        let snaps = analyse(&mut self.state, step, tensors, full)?;
        append(&mut self.data, step, &snaps, full);
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }

    pub fn record_analysis(&mut self, row: AnalysisRow, seconds: f64) {
        self.data.analysis.push(row);
        self.seconds += seconds;
    }

    /// Write the file (atomically).
    pub fn flush(&mut self) -> Result<()> {
        let t0 = std::time::Instant::now();
        h5::write(&self.path, &self.data)?;
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// The record of a run resumed at `step`, built without writing anything: the snapshots
    /// and analysis rows of the existing file before `step`, tracking restored from the last
    /// of them, and any step checkpoint before `step` the file lacks analysed again. Fails,
    /// naming the file and the fix, when the existing file is unreadable or from another run.
    pub fn resume(
        run: &RunDir,
        config: &RunConfig,
        params: &[ParamInfo],
        teacher: Option<&Teacher>,
        step: u64,
    ) -> Result<Self> {
        let path = run.spectra_path();
        let mut rec = Self::new(&path, config, params, teacher);
        if step == 0 {
            return Ok(rec);
        }
        let unusable = |problem: String| {
            Error::run_dir(
                &run.root,
                problem,
                format!(
                    "rebuild it from the checkpoints with `specdyn spectra {0}` (analysis rows between checkpoints are recomputed only at checkpoints), then resume",
                    run.root.display()
                ),
            )
        };
        let old = match h5::read(&path) {
            Ok(d) => d,
            Err(_) if !path.exists() => SpectraData::default(),
            Err(e) => return Err(unusable(format!("its spectra.h5 cannot be read ({e})"))),
        };
        if let Some(text) = &old.config {
            let theirs = RunConfig::from_toml_str(text, &[]).map(|c| c.fingerprint()).unwrap_or_default();
            if theirs != config.fingerprint() {
                return Err(unusable("its spectra.h5 was written by another run (its config differs)".into()));
            }
        }
        let mut old = old;
        old.truncate_before(step);
        let names: Vec<&str> = rec.data.matrices.iter().map(|m| m.name.as_str()).collect();
        let old_names: Vec<&str> = old.matrices.iter().map(|m| m.name.as_str()).collect();
        if !old.steps.is_empty() && names != old_names {
            return Err(unusable(format!("its spectra.h5 holds matrices {old_names:?}, the run has {names:?}")));
        }
        let ckpts = run.step_checkpoints();
        let load = |s: u64| -> Result<crate::checkpoint::Checkpoint> {
            let p =
                ckpts.iter().find(|(t, _)| *t == s).map(|(_, p)| p.clone()).unwrap_or_else(|| run.checkpoint_path(s));
            load_own(&p, config)
        };
        if let Some(&last) = old.steps.last() {
            // W(0) and the trackers as they were after the last kept snapshot.
            rec.state.set_initial(&load(0)?.tensors)?;
            let ids: Vec<Vec<i32>> =
                old.matrices.iter().map(|m| m.track_id.last().cloned().unwrap_or_default()).collect();
            let next: Vec<i32> =
                old.matrices.iter().map(|m| m.track_id.iter().flatten().copied().max().map_or(0, |v| v + 1)).collect();
            rec.state.restore_tracking(&load(last)?.tensors, &ids, &next)?;
            rec.data.steps = old.steps.clone();
            rec.data.analysis = old.analysis.clone();
            for (m, o) in rec.data.matrices.iter_mut().zip(old.matrices) {
                m.singular_values = o.singular_values;
                m.full_steps = o.full_steps;
                m.top_values = o.top_values;
                m.track_id = o.track_id;
                m.outlier_count = o.outlier_count;
                m.delta_top_values = o.delta_top_values;
                m.teacher_overlap = o.teacher_overlap;
            }
        } else {
            rec.data.analysis = old.analysis;
        }
        let done = rec.data.steps.last().copied();
        let full = full_steps(config);
        for (s, p) in ckpts.iter().filter(|(s, _)| *s < step && done.is_none_or(|d| *s > d)) {
            let ckpt = load_own(p, config)?;
            rec.record(*s, &ckpt.tensors, full.contains(s))?;
        }
        rec.seconds = 0.0;
        Ok(rec)
    }
}

/// The analysis of one snapshot (the step-0 snapshot also fixes W(0)).
pub fn analyse(
    state: &mut SpectraState,
    step: u64,
    tensors: &[NamedTensor],
    full: bool,
) -> Result<Vec<MatrixSnapshot>> {
    if step == 0 {
        state.set_initial(tensors)?;
    }
    state.snapshot_with(tensors, full)
}

/// Append the analysed snapshot of `step` to the file's contents.
pub fn append(data: &mut SpectraData, step: u64, snaps: &[MatrixSnapshot], full: bool) {
    let f32s = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();
    for (m, snap) in data.matrices.iter_mut().zip(snaps) {
        if full {
            m.singular_values.push(f32s(&snap.values));
            m.full_steps.push(step);
        }
        m.top_values.push(f32s(&snap.top));
        m.track_id.push(snap.ids.clone());
        m.outlier_count.push(snap.outliers as i32);
        m.delta_top_values.push(f32s(&snap.delta_top));
        if let Some(o) = &snap.teacher_overlap {
            m.teacher_overlap.push(f32s(o));
        }
    }
    data.steps.push(step);
}

/// The snapshot steps of a run that record every singular value: `spectra.full_per_decade`
/// log-spaced steps (always including 0 and the last step) except step 1, which is one update
/// away from step 0: the same bulk up to a rank-P change whose outliers the top k at every
/// snapshot record. The O(n³) decomposition is the dominant cost of spectra at large N.
pub fn full_steps(config: &RunConfig) -> std::collections::BTreeSet<u64> {
    let total = config.train.steps;
    crate::checkpoint::log_spaced_steps(total, config.spectra.full_per_decade)
        .into_iter()
        .filter(|s| *s != 1 || total == 1)
        .collect()
}

/// How external weights are normalized (`--normalize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExternalNormalization {
    /// By the matrix's own RMS entry: an unstructured matrix with that entry variance fills
    /// the MP bulk, so a shifted or reshaped bulk shows.
    #[default]
    Rms,
    /// The median singular value fitted to the MP median (hides a bulk shift).
    Median,
}

/// Tensors of an external safetensors file as matrices: every 2-D tensor, and every 4-D
/// tensor square-unfolded; `filters` keeps names containing any of the given substrings.
pub fn external_matrices(
    path: &Path,
    filters: &[String],
    margin: f64,
    how: ExternalNormalization,
) -> Result<(Vec<MatrixSpec>, Vec<NamedTensor>)> {
    use safetensors::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).map_err(|e| {
        Error::input("weights", path, e, "pass a .safetensors file (e.g. from safetensors.torch.save_file)")
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        Error::data(
            path,
            format!("not a valid safetensors file ({e})"),
            "pass a .safetensors file (e.g. from safetensors.torch.save_file)",
        )
    })?;
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort_by_key(|n| h5::layer_order(n));
    let mut specs = Vec::new();
    let mut tensors = Vec::new();
    for name in names {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let view = st.tensor(&name).map_err(|e| Error::data(path, format!("tensor '{name}': {e}"), ""))?;
        let shape = view.shape().to_vec();
        if !(shape.len() == 2 || shape.len() == 4) || shape.contains(&0) {
            continue;
        }
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F64 => {
                raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect()
            }
            Dtype::F16 => {
                raw.chunks_exact(2).map(|b| burn::tensor::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::BF16 => {
                raw.chunks_exact(2).map(|b| burn::tensor::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            _ => continue,
        };
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::data(
                path,
                format!("tensor '{name}' has a non-finite entry (NaN or ±inf) at flat index {i}"),
                "its singular values are undefined: fix or drop the tensor (--layers keeps only the tensors you name)",
            ));
        }
        let (rows, cols, conv) = match shape.as_slice() {
            [r, c] => (*r, *c, None),
            [co, ci, kh, kw] => (co * kh, ci * kw, Some([*co, *ci, *kh, *kw])),
            _ => continue,
        };
        let unfolded = match conv {
            Some([co, ci, kh, kw]) => super::matrix::square_unfold(&data, co, ci, kh, kw).0,
            None => data.clone(),
        };
        let normalization = match how {
            ExternalNormalization::Rms => Normalization::from_rms(&unfolded, rows, cols, margin),
            ExternalNormalization::Median => {
                Normalization::fitted(&super::matrix::singular_values(&unfolded, rows, cols), rows, cols, margin)
            }
        };
        specs.push(MatrixSpec {
            name: name.clone(),
            kind: if conv.is_some() { "conv".into() } else { "matrix".into() },
            conv_shape: conv,
            normalization,
        });
        tensors.push(NamedTensor { name, shape, data });
    }
    if specs.is_empty() {
        return Err(Error::data(
            path,
            "holds no 2-D or 4-D float tensor matching the filters",
            "check --layers (substrings of tensor names); `python -c \"from safetensors import safe_open; print(safe_open(PATH, 'np').keys())\"` lists them",
        ));
    }
    Ok((specs, tensors))
}

/// Spectra of an external weight file: one snapshot (step 0), written to `out/spectra.h5`.
pub fn external(
    path: &Path,
    filters: &[String],
    top_k: usize,
    margin: f64,
    how: ExternalNormalization,
    out: &Path,
) -> Result<PathBuf> {
    let (specs, tensors) = external_matrices(path, filters, margin, how)?;
    let mut state = SpectraState::new(specs.clone(), top_k, None);
    let snaps = state.snapshot(&tensors)?;
    let f32s = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();
    let matrices = specs
        .iter()
        .zip(&snaps)
        .map(|(s, snap)| {
            let mut m = MatrixData::new(&s.name, &s.kind, s.conv_shape, s.normalization.clone(), top_k, false);
            m.singular_values.push(f32s(&snap.values));
            m.full_steps.push(0);
            m.top_values.push(f32s(&snap.top));
            m.track_id.push(snap.ids.clone());
            m.outlier_count.push(snap.outliers as i32);
            m.delta_top_values.push(f32s(&snap.delta_top));
            m
        })
        .collect();
    let data = SpectraData {
        source: format!("external: {}", path.display()),
        config: None,
        steps: vec![0],
        matrices,
        analysis: Vec::new(),
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io("create output directory", out, e))?;
    let target = out.join("spectra.h5");
    h5::write(&target, &data)?;
    Ok(target)
}

/// Tidy CSV views of a spectra file: `spectra.csv` (one row per matrix, step and rank) and
/// `analysis.csv` (one row per analysis step).
pub fn write_csv(d: &SpectraData, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut s = String::from(
        "matrix,kind,step,rank,value,track_id,is_outlier,delta_value,teacher_overlap,mp_edge,outlier_threshold,outlier_count,scale_source\n",
    );
    for m in &d.matrices {
        for (t, step) in d.steps.iter().enumerate() {
            for (r, v) in m.top_values[t].iter().enumerate() {
                let overlap = m.teacher_overlap.get(t).map(|o| o[r].to_string()).unwrap_or_default();
                s.push_str(&format!(
                    "{},{},{step},{},{v},{},{},{},{overlap},{},{},{},{}\n",
                    m.name,
                    m.kind,
                    r + 1,
                    m.track_id[t][r],
                    u8::from(*v as f64 > m.threshold()),
                    m.delta_top_values[t][r],
                    m.mp_edge(),
                    m.threshold(),
                    m.outlier_count[t],
                    m.scale_source()
                ));
            }
        }
    }
    let spectra_csv = out_dir.join("spectra.csv");
    atomic_write(&spectra_csv, s.as_bytes())?;
    let mut a = String::from("step,sharpness,lr_sharpness,ntk_top,lr_ntk_top,learning_rate,two_over_lr\n");
    for r in &d.analysis {
        a.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            r.step,
            r.sharpness,
            r.lr_sharpness,
            r.ntk_top,
            r.lr_ntk_top,
            r.learning_rate,
            2.0 / r.learning_rate
        ));
    }
    let analysis_csv = out_dir.join("analysis.csv");
    atomic_write(&analysis_csv, a.as_bytes())?;
    Ok(vec![spectra_csv, analysis_csv])
}
