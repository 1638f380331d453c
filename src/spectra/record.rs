//! Writing `spectra.h5` for a run (during training, on resume, or recomputed from checkpoints)
//! and for external weight files.

use super::h5::{self, AnalysisRow, FileInfo};
use super::normalize::Normalization;
use super::snapshot::{MatrixSpec, SpectraState};
use crate::checkpoint::{Checkpoint, NamedTensor, atomic_write};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Appends snapshots of one run to its spectra file.
pub struct SpectraRecorder {
    pub path: PathBuf,
    pub state: SpectraState,
    /// Seconds spent computing spectra and curvature.
    pub seconds: f64,
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

impl SpectraRecorder {
    /// A new, empty spectra file for a run (replacing any previous one).
    pub fn create(path: &Path, config: &RunConfig, data: &Dataset) -> Result<Self> {
        let state = SpectraState::for_run(config, data.input_dim, data.output_dim, data.teacher.as_ref());
        let info = FileInfo { source: "run".into(), config: Some(config.to_toml()) };
        h5::create(path, &info, &state.specs, state.top_k, data.teacher.is_some())?;
        Ok(SpectraRecorder { path: path.to_path_buf(), state, seconds: 0.0 })
    }

    /// Analyse and append one snapshot (the step-0 snapshot also fixes W(0)).
    pub fn record(&mut self, step: u64, tensors: &[NamedTensor]) -> Result<()> {
        let t0 = std::time::Instant::now();
        if step == 0 {
            self.state.set_initial(tensors)?;
        }
        let snaps = self.state.snapshot(tensors)?;
        h5::append(&self.path, step, &self.state.specs, &snaps)?;
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }

    pub fn record_analysis(&mut self, row: &AnalysisRow, seconds: f64) -> Result<()> {
        h5::append_analysis(&self.path, row)?;
        self.seconds += seconds;
        Ok(())
    }

    /// Rebuild the file of a resumed run: replay every step checkpoint before `step` (the
    /// matrix spectra are recomputed exactly) and keep the analysis rows before `step`.
    /// Written to a temporary file and renamed, so the old file survives any failure.
    pub fn resume(path: &Path, config: &RunConfig, data: &Dataset, checkpoints: &[PathBuf], step: u64) -> Result<Self> {
        let old_analysis = h5::read(path).map(|d| d.analysis).unwrap_or_default();
        let tmp = temp_path(path);
        let result = (|| {
            let mut rec = Self::create(&tmp, config, data)?;
            for p in checkpoints {
                let ckpt = Checkpoint::load(p)?;
                if ckpt.step < step {
                    rec.record(ckpt.step, &ckpt.tensors)?;
                }
            }
            for row in old_analysis.iter().filter(|r| r.step < step) {
                h5::append_analysis(&tmp, row)?;
            }
            Ok::<_, Error>(rec)
        })();
        match result {
            Ok(mut rec) => {
                std::fs::rename(&tmp, path).map_err(|e| Error::io("replace", path, e))?;
                rec.path = path.to_path_buf();
                Ok(rec)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// The step checkpoints of a run directory, by step (`latest` excluded).
pub fn step_checkpoints(run: &Path) -> Vec<PathBuf> {
    let dir = run.join("checkpoints");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.retain(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-") && n.ends_with(".safetensors"))
    });
    v.sort();
    v
}

/// Tensors of an external safetensors file as matrices: every 2-D tensor, and every 4-D
/// tensor square-unfolded; `filters` keeps names containing any of the given substrings.
pub fn external_matrices(path: &Path, filters: &[String], margin: f64) -> Result<(Vec<MatrixSpec>, Vec<NamedTensor>)> {
    use safetensors::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).map_err(|e| Error::io("read weights", path, e))?;
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
        let (rows, cols, conv) = match shape.as_slice() {
            [r, c] => (*r, *c, None),
            [co, ci, kh, kw] => (co * kh, ci * kw, Some([*co, *ci, *kh, *kw])),
            _ => continue,
        };
        // Fit the scale to the bulk from the raw singular values.
        let (unfolded, _, _) = match conv {
            Some([co, ci, kh, kw]) => super::matrix::square_unfold(&data, co, ci, kh, kw),
            None => (data.clone(), rows, cols),
        };
        let raw_values = super::matrix::singular_values(&unfolded, rows, cols);
        specs.push(MatrixSpec {
            name: name.clone(),
            kind: if conv.is_some() { "conv".into() } else { "matrix".into() },
            conv_shape: conv,
            normalization: Normalization::fitted(&raw_values, rows, cols, margin),
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

/// Spectra of an external weight file: one snapshot (step 0), scales fitted to the bulk.
pub fn external(path: &Path, filters: &[String], top_k: usize, margin: f64, out: &Path) -> Result<PathBuf> {
    let (specs, tensors) = external_matrices(path, filters, margin)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io("create output directory", out, e))?;
    let target = out.join("spectra.h5");
    let tmp = temp_path(&target);
    let result = (|| {
        let info = FileInfo { source: format!("external: {}", path.display()), config: None };
        h5::create(&tmp, &info, &specs, top_k, false)?;
        let mut state = SpectraState::new(specs.clone(), top_k, None);
        let snaps = state.snapshot(&tensors)?;
        h5::append(&tmp, 0, &specs, &snaps)
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, &target).map_err(|e| Error::io("write", &target, e))?,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    Ok(target)
}

/// Tidy CSV views of a spectra file: `spectra.csv` (one row per matrix, step and rank) and
/// `analysis.csv` (one row per analysis step).
pub fn write_csv(h5_path: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let d = h5::read(h5_path)?;
    let mut s = String::from(
        "matrix,kind,step,rank,value,track_id,is_outlier,delta_value,teacher_overlap,mp_edge,outlier_threshold,outlier_count,scale_source\n",
    );
    for m in &d.matrices {
        for (t, step) in d.steps.iter().enumerate() {
            for (r, v) in m.top_values[t].iter().enumerate() {
                let overlap = m.teacher_overlap.as_ref().map(|o| o[t][r].to_string()).unwrap_or_default();
                s.push_str(&format!(
                    "{},{},{step},{},{v},{},{},{},{overlap},{},{},{},{}\n",
                    m.name,
                    m.kind,
                    r + 1,
                    m.track_id[t][r],
                    u8::from(*v as f64 > m.threshold),
                    m.delta_top_values[t][r],
                    m.mp_edge,
                    m.threshold,
                    m.outlier_count[t],
                    m.scale_source
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

/// Recompute `spectra.h5` (and its CSV and plots) of a run from its step checkpoints, on any
/// backend. Idempotent; the result replaces the old file only when everything succeeded, and a
/// corrupt checkpoint is an error that names it.
pub struct RecomputeJob {
    pub run: PathBuf,
    pub quiet: bool,
}

impl crate::backend::BackendJob for RecomputeJob {
    type Output = (PathBuf, usize);

    fn run<B: crate::backend::ComputeBackend>(self, device: B::Device) -> Result<(PathBuf, usize)> {
        let dir = crate::train::RunDir::new(&self.run);
        let config = dir.read_config()?;
        let ckpts = step_checkpoints(&self.run);
        if ckpts.is_empty() {
            return Err(Error::run_dir(
                &self.run,
                "has no step checkpoints (checkpoints/step-*.safetensors)",
                "train it first (`specdyn train CONFIG --out DIR`)",
            ));
        }
        let data = Dataset::from_config(&config)?;
        let target = dir.spectra_path();
        let tmp = temp_path(&target);
        let bar =
            if self.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(ckpts.len() as u64) };
        let analysis = config.spectra.sharpness || config.spectra.ntk;
        let result = (|| {
            let mut rec = SpectraRecorder::create(&tmp, &config, &data)?;
            for p in &ckpts {
                let ckpt = Checkpoint::load(p)?;
                rec.record(ckpt.step, &ckpt.tensors)?;
                if analysis {
                    let t0 = std::time::Instant::now();
                    let trainer = crate::train::Trainer::<B::InnerBackend>::from_checkpoint(
                        config.clone(),
                        &ckpt,
                        p,
                        device.clone(),
                    )?;
                    let c = trainer.curvature();
                    let lr = config.optimizer.lr
                        * crate::train::schedule_factor(&config.optimizer, ckpt.step, config.train.steps);
                    let row = AnalysisRow {
                        step: ckpt.step,
                        sharpness: c.sharpness,
                        lr_sharpness: c.lr_sharpness,
                        ntk_top: c.ntk_top,
                        lr_ntk_top: c.lr_ntk_top,
                        learning_rate: lr,
                    };
                    rec.record_analysis(&row, t0.elapsed().as_secs_f64())?;
                }
                bar.inc(1);
            }
            Ok::<_, Error>(())
        })();
        bar.finish_and_clear();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &target).map_err(|e| Error::io("replace", &target, e))?;
        write_csv(&target, &self.run)?;
        Ok((target, ckpts.len()))
    }
}
