//! `specdyn train`: the training loop with its run directory, metrics, checkpoints, progress
//! bar, divergence detection, Ctrl-C handling and exact resume.
//!
//! A run directory holds
//! - `config.toml`: the effective config;
//! - `metrics.csv`: one row per logged step (step, train/test loss, gradient norm, learning
//!   rate per layer kind, wall time); the row for step t describes the parameters θ_t before
//!   update t;
//! - `checkpoints/step-XXXXXXXX.safetensors` at log-spaced steps and the last step, plus
//!   `checkpoints/latest.safetensors` every `checkpoint.latest_every` steps and on Ctrl-C;
//! - `summary.json`: status (running | completed | diverged | interrupted), losses, steps,
//!   duration, version.

use super::trainer::Trainer;
use crate::checkpoint::{Checkpoint, atomic_write, log_spaced_steps};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::model::LayerKind;
use crate::spectra::h5::AnalysisRow;
use crate::spectra::record::SpectraRecorder;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set by the Ctrl-C handler; the training loop checkpoints and stops when it sees it.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Install a SIGINT/SIGTERM handler that asks running loops to stop cleanly.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: the user insists.
            std::process::exit(130);
        }
        eprintln!("\ninterrupt received: saving a checkpoint and stopping (Ctrl-C again to abort)");
    });
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Running,
    Completed,
    Diverged,
    Interrupted,
}

/// Contents of `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub status: RunStatus,
    pub specdyn_version: String,
    pub device: String,
    pub steps_planned: u64,
    /// Parameter updates applied.
    pub steps_completed: u64,
    pub initial_loss: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub final_test_loss: Option<f64>,
    /// The step whose loss was not finite or exploded.
    pub diverged_at_step: Option<u64>,
    pub last_finite_loss: Option<f64>,
    /// Training wall time over all segments of the run, seconds.
    pub duration_s: f64,
    /// Steps per second in the last segment.
    pub steps_per_s: f64,
    pub resumed_from_step: Option<u64>,
    /// Seconds spent on spectra and curvature (part of duration_s).
    #[serde(default)]
    pub spectra_s: f64,
}

/// Options of `specdyn train` that are not part of the run's config.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Continue the run in the output directory from its newest checkpoint.
    pub resume: bool,
    /// Replace a previous run in the output directory.
    pub overwrite: bool,
    /// No progress bar.
    pub quiet: bool,
    /// Name of the device, for the summary.
    pub device_name: String,
}

/// The files of one run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path) -> Self {
        RunDir { root: root.to_path_buf() }
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    pub fn summary_path(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn checkpoint_path(&self, step: u64) -> PathBuf {
        self.checkpoints_dir().join(format!("step-{step:08}.safetensors"))
    }
    pub fn latest_path(&self) -> PathBuf {
        self.checkpoints_dir().join("latest.safetensors")
    }
    pub fn spectra_path(&self) -> PathBuf {
        self.root.join("spectra.h5")
    }

    /// The effective config stored in the directory.
    pub fn read_config(&self) -> Result<RunConfig> {
        let path = self.config_path();
        if !path.exists() {
            return Err(Error::run_dir(
                &self.root,
                "has no config.toml, so it is not a specdyn run",
                "pass the directory a `specdyn train CONFIG --out DIR` run created",
            ));
        }
        RunConfig::load(&path, &[])
    }

    /// Read `summary.json`, if present.
    pub fn read_summary(&self) -> Option<Summary> {
        let text = std::fs::read_to_string(self.summary_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Checkpoint files (step files and latest), newest step first, without loading them.
    pub fn checkpoint_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.checkpoints_dir())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            n.ends_with(".safetensors") && !n.starts_with('.')
        });
        files.sort();
        files
    }

    /// The checkpoint with the highest step. A corrupt file is an error that names it.
    pub fn newest_checkpoint(&self) -> Result<Option<(PathBuf, Checkpoint)>> {
        let mut best: Option<(PathBuf, Checkpoint)> = None;
        let latest = self.latest_path();
        // Step files are ordered by name = by step; only the newest step file and `latest` matter.
        let files = self.checkpoint_files();
        let newest_step_file = files.iter().rev().find(|p| **p != latest).cloned();
        for path in [newest_step_file, latest.exists().then_some(latest.clone())].into_iter().flatten() {
            let ckpt = Checkpoint::load(&path)?;
            if best.as_ref().is_none_or(|(_, b)| ckpt.step > b.step) {
                best = Some((path, ckpt));
            }
        }
        Ok(best)
    }

    /// Make the directory ready for a new run.
    fn prepare_new(&self, overwrite: bool) -> Result<()> {
        if self.root.exists() {
            let is_run = self.config_path().exists();
            let empty = std::fs::read_dir(&self.root).map(|mut d| d.next().is_none()).unwrap_or(false);
            if is_run && !overwrite {
                return Err(Error::run_dir(
                    &self.root,
                    "already holds a run",
                    format!(
                        "continue it with `specdyn train --resume {0}`, replace it with --overwrite, or choose another --out",
                        self.root.display()
                    ),
                ));
            }
            if !is_run && !empty {
                return Err(Error::run_dir(
                    &self.root,
                    "exists, is not empty and is not a specdyn run",
                    "choose a new --out directory (specdyn only overwrites its own runs)",
                ));
            }
            if is_run {
                for f in [self.config_path(), self.metrics_path(), self.summary_path(), self.spectra_path()] {
                    let _ = std::fs::remove_file(f);
                }
                let _ = std::fs::remove_dir_all(self.checkpoints_dir());
            }
        }
        std::fs::create_dir_all(self.checkpoints_dir()).map_err(|e| Error::io("create run directory", &self.root, e))
    }
}

/// Which optional metrics columns exist.
fn lr_kinds(trainer_kinds: &[LayerKind]) -> Vec<LayerKind> {
    [LayerKind::Input, LayerKind::Hidden, LayerKind::Readout, LayerKind::Bias]
        .into_iter()
        .filter(|k| trainer_kinds.contains(k))
        .collect()
}

fn metrics_header(kinds: &[LayerKind]) -> String {
    let mut cols = vec!["step".to_string(), "train_loss".into(), "test_loss".into(), "grad_norm".into()];
    cols.extend(kinds.iter().map(|k| format!("lr_{}", k.name())));
    cols.push("wall_time_s".into());
    cols.join(",")
}

/// Keep the header and the rows of steps before `step` (a resumed run rewrites the rest).
fn truncate_metrics(path: &Path, header: &str, step: u64) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::from(header);
    out.push('\n');
    for line in text.lines().skip(1) {
        let first = line.split(',').next().unwrap_or("");
        let complete = line.split(',').count() == header.split(',').count();
        if complete && first.parse::<u64>().is_ok_and(|s| s < step) {
            out.push_str(line);
            out.push('\n');
        }
    }
    atomic_write(path, out.as_bytes())
}

fn write_summary(dir: &RunDir, summary: &Summary) -> Result<()> {
    let text = serde_json::to_string_pretty(summary).unwrap_or_default();
    atomic_write(&dir.summary_path(), format!("{text}\n").as_bytes())
}

/// Shortest text that reads back to the same f32 (losses are computed in f32).
fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{:e}", v as f32)).unwrap_or_default()
}

/// The keys whose values differ between two configs, as "key: a → b".
pub fn config_differences(a: &RunConfig, b: &RunConfig) -> Vec<String> {
    fn flatten(v: &toml::Value, prefix: &str, out: &mut Vec<(String, String)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(v, &p, out);
                }
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    if let (Ok(va), Ok(vb)) = (toml::Value::try_from(a), toml::Value::try_from(b)) {
        flatten(&va, "", &mut fa);
        flatten(&vb, "", &mut fb);
    }
    let mb: std::collections::BTreeMap<_, _> = fb.into_iter().collect();
    let ma: std::collections::BTreeMap<_, _> = fa.into_iter().collect();
    let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    keys.into_iter()
        .filter(|k| ma.get(*k) != mb.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
            format!("{k}: {} → {}", show(ma.get(k)), show(mb.get(k)))
        })
        .collect()
}

/// Train (or resume) the run in `out` with `config`, on backend `B`.
///
/// On resume, `config` must equal the stored config except for `train.steps` (which may be
/// raised to extend a run).
pub fn train<B: Kernels>(config: RunConfig, out: &Path, opts: &TrainOptions, device: B::Device) -> Result<Summary> {
    let dir = RunDir::new(out);
    let mut resumed_from = None;
    let mut elapsed_before = 0.0;
    let mut initial_loss: Option<f64> = None;
    let mut trainer: Trainer<B> = if opts.resume {
        let stored = dir.read_config()?;
        let mut comparable = config.clone();
        comparable.train.steps = stored.train.steps;
        let diffs = config_differences(&stored, &comparable);
        if !diffs.is_empty() {
            return Err(Error::run_dir(
                out,
                format!("was made with a different config ({})", diffs.join("; ")),
                "resume with the stored config (`specdyn train --resume DIR`, only train.steps may change), or start a new run with another --out",
            ));
        }
        let (path, ckpt) = dir.newest_checkpoint()?.ok_or_else(|| {
            Error::run_dir(
                out,
                "has no checkpoint to resume from",
                format!(
                    "start it again with `specdyn train {} --out {} --overwrite`",
                    dir.config_path().display(),
                    out.display()
                ),
            )
        })?;
        if ckpt.step > config.train.steps {
            return Err(Error::run_dir(
                out,
                format!("has a checkpoint at step {} beyond train.steps = {}", ckpt.step, config.train.steps),
                "raise train.steps (--set train.steps=N) to extend the run",
            ));
        }
        resumed_from = Some(ckpt.step);
        elapsed_before = ckpt.elapsed_s;
        initial_loss = Some(ckpt.initial_loss);
        let t = Trainer::from_checkpoint(config.clone(), &ckpt, &path, device)?;
        atomic_write(&dir.config_path(), config.to_toml().as_bytes())?;
        t
    } else {
        dir.prepare_new(opts.overwrite)?;
        atomic_write(&dir.config_path(), config.to_toml().as_bytes())?;
        Trainer::new(config.clone(), device)?
    };

    let kinds = lr_kinds(&trainer.model.info.iter().map(|p| p.kind).collect::<Vec<_>>());
    let header = metrics_header(&kinds);
    truncate_metrics(&dir.metrics_path(), &header, trainer.step)?;
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.metrics_path())
        .map_err(|e| Error::io("open", &dir.metrics_path(), e))?;

    let mut spectra = if !config.spectra.enabled {
        None
    } else if opts.resume {
        let ckpts = crate::spectra::record::step_checkpoints(out);
        Some(SpectraRecorder::resume(&dir.spectra_path(), &config, &trainer.data, &ckpts, trainer.step)?)
    } else {
        Some(SpectraRecorder::create(&dir.spectra_path(), &config, &trainer.data)?)
    };
    let analysis_wanted = config.spectra.enabled && (config.spectra.sharpness || config.spectra.ntk);

    let total = config.train.steps;
    let checkpoint_steps: BTreeSet<u64> = log_spaced_steps(total, config.checkpoint.per_decade).into_iter().collect();
    let is_log = |t: u64| t.is_multiple_of(config.train.log_every) || t == total || checkpoint_steps.contains(&t);

    let mut summary = Summary {
        status: RunStatus::Running,
        specdyn_version: env!("CARGO_PKG_VERSION").to_string(),
        device: opts.device_name.clone(),
        steps_planned: total,
        steps_completed: trainer.step,
        initial_loss,
        final_train_loss: None,
        final_test_loss: None,
        diverged_at_step: None,
        last_finite_loss: None,
        duration_s: elapsed_before,
        steps_per_s: 0.0,
        resumed_from_step: resumed_from,
        spectra_s: 0.0,
    };
    write_summary(&dir, &summary)?;

    let bar = progress_bar(total, trainer.step, opts.quiet);
    let start = Instant::now();
    let start_step = trainer.step;
    let elapsed = |start: &Instant| elapsed_before + start.elapsed().as_secs_f64();
    loop {
        let t = trainer.step;
        if INTERRUPTED.load(Ordering::SeqCst) {
            trainer.to_checkpoint(elapsed(&start), initial_loss.unwrap_or(f64::NAN)).save(&dir.latest_path())?;
            summary.status = RunStatus::Interrupted;
            break;
        }
        let g = trainer.gradients();
        let loss = g.loss;
        let reference = *initial_loss.get_or_insert(loss);
        summary.initial_loss = Some(reference);
        let diverged = !loss.is_finite() || loss > config.train.divergence_factor * reference.max(f64::MIN_POSITIVE);
        if is_log(t) || diverged {
            let test = if diverged { None } else { trainer.test_loss() };
            let mut row = format!("{t},{},{},{}", fmt_opt(Some(loss)), fmt_opt(test), fmt_opt(Some(g.norm())));
            for k in &kinds {
                row.push_str(&format!(",{}", fmt_opt(trainer.learning_rate_of(*k))));
            }
            row.push_str(&format!(",{:.3}\n", elapsed(&start)));
            metrics.write_all(row.as_bytes()).map_err(|e| Error::io("write", &dir.metrics_path(), e))?;
            summary.final_test_loss = test.or(summary.final_test_loss);
        }
        if diverged {
            summary.status = RunStatus::Diverged;
            summary.diverged_at_step = Some(t);
            break;
        }
        summary.last_finite_loss = Some(loss);
        summary.final_train_loss = Some(loss);
        if checkpoint_steps.contains(&t) {
            let ckpt = trainer.to_checkpoint(elapsed(&start), reference);
            ckpt.save(&dir.checkpoint_path(t))?;
            if let Some(rec) = spectra.as_mut() {
                rec.record(t, &ckpt.tensors)?;
            }
        } else if config.checkpoint.latest_every > 0 && t > 0 && t.is_multiple_of(config.checkpoint.latest_every) {
            trainer.to_checkpoint(elapsed(&start), reference).save(&dir.latest_path())?;
        }
        let every = config.spectra.analysis_every;
        if analysis_wanted && (checkpoint_steps.contains(&t) || (every > 0 && t.is_multiple_of(every))) {
            let t0 = Instant::now();
            let c = trainer.curvature();
            let lr = config.optimizer.lr * crate::train::schedule_factor(&config.optimizer, t, total);
            let row = AnalysisRow {
                step: t,
                sharpness: c.sharpness,
                lr_sharpness: c.lr_sharpness,
                ntk_top: c.ntk_top,
                lr_ntk_top: c.lr_ntk_top,
                learning_rate: lr,
            };
            if let Some(rec) = spectra.as_mut() {
                rec.record_analysis(&row, t0.elapsed().as_secs_f64())?;
            }
        }
        if t >= total {
            summary.status = RunStatus::Completed;
            break;
        }
        trainer.apply(g);
        bar.inc(1);
        bar.set_message(format!("loss {loss:.4e}"));
    }
    bar.finish_and_clear();
    if let Some(rec) = &spectra {
        summary.spectra_s = rec.seconds;
        if summary.status == RunStatus::Completed {
            crate::spectra::record::write_csv(&rec.path, out)?;
            crate::report::spectra::plot_run(out)?;
        }
    }
    summary.steps_completed = trainer.step;
    summary.duration_s = elapsed(&start);
    let done = trainer.step.saturating_sub(start_step) as f64;
    summary.steps_per_s = done / start.elapsed().as_secs_f64().max(1e-9);
    write_summary(&dir, &summary)?;
    Ok(summary)
}

fn progress_bar(total: u64, pos: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30.cyan/blue}] step {pos}/{len} {msg} {per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(pos);
    bar
}
