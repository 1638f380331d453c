//! `specdyn train`: the training loop with its run directory, metrics, checkpoints, progress,
//! divergence detection, Ctrl-C handling and exact resume.
//!
//! A run directory ([`RunDir`]) holds `config.toml`, `metrics.csv` (one row per logged step;
//! the row for step t describes the parameters θ_t before update t), `checkpoints/`
//! (`step-XXXXXXXX.safetensors` at log-spaced steps and the last step, `latest.safetensors`
//! every `checkpoint.latest_every` steps and on Ctrl-C), `spectra.h5` and `summary.json`.
//!
//! **Validate, then write.** A new run, an `--overwrite` and a `--resume` first build
//! everything they need in memory — config, data, network (with the memory check), the
//! checkpoint to resume from (checksum and fingerprint), the spectra record rebuilt from the
//! old file and the step checkpoints — and only then take the run's lock and touch a file.
//! A failure before that point leaves the directory exactly as it was.

use super::trainer::Trainer;
use crate::checkpoint::{atomic_write, log_spaced_steps};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::model::LayerKind;
use crate::rundir::{DirState, RunDir, RunLock, RunStatus, Summary};
use crate::spectra::h5::AnalysisRow;
use crate::spectra::record::SpectraRecorder;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
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

/// Options of `specdyn train` that are not part of the run's config.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Continue the run in the output directory from its newest checkpoint.
    pub resume: bool,
    /// Replace a previous run in the output directory.
    pub overwrite: bool,
    /// No progress output.
    pub quiet: bool,
    /// Name of the device, for the summary.
    pub device_name: String,
}

/// Which optional metrics columns exist.
fn lr_kinds(trainer_kinds: &[LayerKind]) -> Vec<LayerKind> {
    [LayerKind::Input, LayerKind::Hidden, LayerKind::Readout, LayerKind::Bias]
        .into_iter()
        .filter(|k| trainer_kinds.contains(k))
        .collect()
}

fn metrics_header(kinds: &[LayerKind], classification: bool) -> String {
    let mut cols = vec!["step".to_string(), "train_loss".into(), "test_loss".into()];
    if classification {
        cols.extend(["train_accuracy".into(), "test_accuracy".into()]);
    }
    cols.push("grad_norm".into());
    cols.extend(kinds.iter().map(|k| format!("lr_{}", k.name())));
    cols.push("wall_time_s".into());
    cols.join(",")
}

/// The header and the complete rows of steps before `step` (a resumed run rewrites the rest).
fn kept_metrics(path: &Path, header: &str, step: u64) -> String {
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
    out
}

/// Shortest text that reads back to the same f32 (losses are computed in f32).
fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{:e}", v as f32)).unwrap_or_default()
}

/// The curvature row of the trainer's current step.
pub fn analysis_row<B: Kernels>(trainer: &Trainer<B>) -> AnalysisRow {
    let c = trainer.curvature();
    let cfg = &trainer.config;
    AnalysisRow {
        step: trainer.step,
        sharpness: c.sharpness,
        lr_sharpness: c.lr_sharpness,
        ntk_top: c.ntk_top,
        lr_ntk_top: c.lr_ntk_top,
        learning_rate: cfg.optimizer.lr * super::schedule_factor(&cfg.optimizer, trainer.step, cfg.train.steps),
    }
}

/// Everything a run needs, validated, before anything is written.
struct Plan<B: Kernels> {
    dir: RunDir,
    lock: RunLock,
    config: RunConfig,
    trainer: Trainer<B>,
    resumed_from: Option<u64>,
    elapsed_before: f64,
    initial_loss: Option<f64>,
    spectra: Option<SpectraRecorder>,
    /// metrics.csv as it must be before the first new row.
    metrics: String,
    /// Write config.toml (new runs, or a resume that changed train.steps).
    write_config: bool,
    clear: bool,
}

fn prepare_new<B: Kernels>(config: RunConfig, dir: RunDir, opts: &TrainOptions, device: B::Device) -> Result<Plan<B>> {
    let refuse = |state: DirState| -> Result<()> {
        match state {
            DirState::Run if !opts.overwrite => Err(Error::run_dir(
                &dir.root,
                "already holds a run",
                format!(
                    "continue it with `specdyn train --resume {0}`, replace it with --overwrite, or choose another --out",
                    dir.root.display()
                ),
            )),
            DirState::Foreign => Err(Error::run_dir(
                &dir.root,
                "exists, is not empty and is not a specdyn run",
                "choose a new --out directory (specdyn only overwrites its own runs)",
            )),
            _ => Ok(()),
        }
    };
    refuse(dir.state())?;
    let trainer = Trainer::<B>::new(config.clone(), device)?;
    let spectra = config.spectra.enabled.then(|| {
        SpectraRecorder::new(&dir.spectra_path(), &config, &trainer.model.info, trainer.data.teacher.as_ref())
    });
    let lock = dir.lock()?;
    let state = dir.state();
    refuse(state)?;
    let header = metrics_header(&lr_kinds(&kinds(&trainer)), trainer.data.classification);
    Ok(Plan {
        clear: matches!(state, DirState::Run | DirState::Unstarted),
        dir,
        lock,
        config,
        trainer,
        resumed_from: None,
        elapsed_before: 0.0,
        initial_loss: None,
        spectra,
        metrics: format!("{header}\n"),
        write_config: true,
    })
}

fn kinds<B: Kernels>(t: &Trainer<B>) -> Vec<LayerKind> {
    t.model.info.iter().map(|p| p.kind).collect()
}

fn prepare_resume<B: Kernels>(config: RunConfig, dir: RunDir, device: B::Device) -> Result<Plan<B>> {
    match dir.state() {
        DirState::Run => {}
        DirState::Unstarted => {
            return Err(Error::run_dir(
                &dir.root,
                "holds a run that was stopped before it wrote its config, so there is nothing to resume",
                format!("start it again with `specdyn train CONFIG --out {}`", dir.root.display()),
            ));
        }
        _ => {
            return Err(Error::run_dir(
                &dir.root,
                "has no config.toml, so it is not a specdyn run",
                "pass the directory a `specdyn train CONFIG --out DIR` run created",
            ));
        }
    }
    let lock = dir.lock()?;
    let stored = dir.read_config()?;
    let mut comparable = config.clone();
    comparable.train.steps = stored.train.steps;
    let diffs = crate::config::differences(&stored, &comparable);
    if !diffs.is_empty() {
        return Err(Error::run_dir(
            &dir.root,
            format!("was made with a different config ({})", diffs.join("; ")),
            "resume with the stored config (`specdyn train --resume DIR`, only train.steps may change), or start a new run with another --out",
        ));
    }
    let data = crate::data::Dataset::from_config(&config)?;
    // The whole chain: a damaged or foreign step checkpoint is reported now, before anything
    // is written, even when this resume would not read it.
    for (_, path) in dir.step_checkpoints() {
        crate::rundir::load_own(&path, &config)?;
    }
    let newest = dir.newest_checkpoint(&config)?;
    let (trainer, resumed_from, elapsed_before, initial_loss) = match newest {
        Some((path, ckpt)) => {
            if ckpt.step > config.train.steps {
                return Err(Error::run_dir(
                    &dir.root,
                    format!("has a checkpoint at step {} beyond train.steps = {}", ckpt.step, config.train.steps),
                    "raise train.steps (--set train.steps=N) to extend the run",
                ));
            }
            let t = Trainer::from_checkpoint_with_data(config.clone(), data, &ckpt, &path, device)?;
            (t, Some(ckpt.step), ckpt.elapsed_s, Some(ckpt.initial_loss))
        }
        // Killed before its first checkpoint: start again in place.
        None => (Trainer::with_data(config.clone(), data, device)?, None, 0.0, None),
    };
    let step = trainer.step;
    let spectra = if config.spectra.enabled {
        Some(SpectraRecorder::resume(&dir, &config, &trainer.model.info, trainer.data.teacher.as_ref(), step)?)
    } else {
        None
    };
    let header = metrics_header(&lr_kinds(&kinds(&trainer)), trainer.data.classification);
    let metrics = kept_metrics(&dir.metrics_path(), &header, step);
    Ok(Plan {
        write_config: config != stored,
        clear: false,
        dir,
        lock,
        config,
        trainer,
        resumed_from,
        elapsed_before,
        initial_loss,
        spectra,
        metrics,
    })
}

/// Train (or resume) the run in `out` with `config`, on backend `B`.
///
/// On resume, `config` must equal the stored config except for `train.steps` (which may be
/// raised to extend a run).
pub fn train<B: Kernels>(config: RunConfig, out: &Path, opts: &TrainOptions, device: B::Device) -> Result<Summary> {
    let dir = RunDir::new(out);
    let plan = if opts.resume {
        prepare_resume::<B>(config, dir, device)?
    } else {
        prepare_new::<B>(config, dir, opts, device)?
    };
    if opts.resume && plan.resumed_from.is_none() && !opts.quiet {
        eprintln!("note: {} has no checkpoint yet; starting it again from step 0", out.display());
    }
    execute(plan, opts)
}

/// The training loop of a validated plan: from here on, files are written.
fn execute<B: Kernels>(plan: Plan<B>, opts: &TrainOptions) -> Result<Summary> {
    let Plan {
        dir,
        mut lock,
        config,
        mut trainer,
        resumed_from,
        elapsed_before,
        mut initial_loss,
        mut spectra,
        metrics: kept,
        write_config,
        clear,
    } = plan;
    if clear {
        dir.clear(&lock)?;
    }
    lock.announce(if opts.resume { "train --resume" } else { "train" })?;
    dir.clean_temp_files(&lock);
    std::fs::create_dir_all(dir.checkpoints_dir()).map_err(|e| Error::io("create", &dir.checkpoints_dir(), e))?;
    if write_config {
        atomic_write(&dir.config_path(), config.to_toml().as_bytes())?;
    }
    atomic_write(&dir.metrics_path(), kept.as_bytes())?;
    if let Some(rec) = spectra.as_mut() {
        rec.flush()?;
    }
    let depth = crate::spectra::worker::queue_depth(trainer.model.spec.param_floats());
    let mut spectra =
        spectra.map(|rec| crate::spectra::worker::Spectra::new(rec, config.spectra.background, depth)).transpose()?;
    let mut waited = 0.0;
    let classification = trainer.data.classification;
    let kinds = lr_kinds(&kinds(&trainer));
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.metrics_path())
        .map_err(|e| Error::io("open", &dir.metrics_path(), e))?;
    let analysis_wanted = config.spectra.enabled && (config.spectra.sharpness || config.spectra.ntk);

    let total = config.train.steps;
    let checkpoint_steps: BTreeSet<u64> = log_spaced_steps(total, config.checkpoint.per_decade).into_iter().collect();
    let full_steps = crate::spectra::record::full_steps(&config);
    let is_log = |t: u64| t.is_multiple_of(config.train.log_every) || t == total || checkpoint_steps.contains(&t);
    let is_eval = |t: u64| match config.train.eval_every {
        0 => is_log(t),
        k => t.is_multiple_of(k) || t == total || checkpoint_steps.contains(&t),
    };

    let mut summary = Summary {
        status: RunStatus::Running,
        specdyn_version: env!("CARGO_PKG_VERSION").to_string(),
        device: opts.device_name.clone(),
        steps_planned: total,
        steps_completed: trainer.step,
        initial_loss,
        final_train_loss: None,
        final_test_loss: None,
        final_test_accuracy: None,
        diverged_at_step: None,
        last_finite_loss: None,
        duration_s: elapsed_before,
        steps_per_s: 0.0,
        resumed_from_step: resumed_from,
        spectra_s: 0.0,
        spectra_wait_s: 0.0,
    };
    dir.write_summary(&summary)?;

    let mut bar = crate::progress::bar(total, opts.quiet, "train");
    bar.start_at(trainer.step);
    let start = Instant::now();
    let start_step = trainer.step;
    let elapsed = |start: &Instant| elapsed_before + start.elapsed().as_secs_f64();
    let write_row = |metrics: &mut std::fs::File, row: String| {
        metrics.write_all(row.as_bytes()).map_err(|e| Error::io("write", &dir.metrics_path(), e))
    };
    loop {
        let t = trainer.step;
        if INTERRUPTED.load(Ordering::SeqCst) {
            if let Some(rec) = spectra.as_mut() {
                rec.persist()?;
            }
            trainer.to_checkpoint(elapsed(&start), initial_loss.unwrap_or(f64::NAN)).save(&dir.latest_path())?;
            summary.status = RunStatus::Interrupted;
            break;
        }
        let g = trainer.gradients();
        let is_checkpoint = checkpoint_steps.contains(&t);
        let is_latest = config.checkpoint.latest_every > 0 && t > 0 && t.is_multiple_of(config.checkpoint.latest_every);
        // The loss is read back (a device synchronization on a GPU) only where it is used:
        // logged steps, checkpoints, the first and the last step. Divergence is checked there.
        if is_log(t) || is_checkpoint || is_latest || t == start_step || t >= total {
            let loss = g.loss();
            let reference = *initial_loss.get_or_insert(loss);
            summary.initial_loss = Some(reference);
            let diverged =
                !loss.is_finite() || loss > config.train.divergence_factor * reference.max(f64::MIN_POSITIVE);
            if is_log(t) || diverged {
                let test = if diverged || !is_eval(t) { None } else { trainer.evaluate_test() };
                let mut row = format!("{t},{},{}", fmt_opt(Some(loss)), fmt_opt(test.map(|e| e.loss)));
                if classification {
                    row.push_str(&format!(",{},{}", fmt_opt(g.accuracy()), fmt_opt(test.and_then(|e| e.accuracy))));
                }
                row.push_str(&format!(",{}", fmt_opt(Some(g.norm()))));
                for k in &kinds {
                    row.push_str(&format!(",{}", fmt_opt(trainer.learning_rate_of(*k))));
                }
                row.push_str(&format!(",{:.3}\n", elapsed(&start)));
                write_row(&mut metrics, row)?;
                if let Some(e) = test {
                    summary.final_test_loss = Some(e.loss);
                    summary.final_test_accuracy = e.accuracy.or(summary.final_test_accuracy);
                }
            }
            if diverged {
                summary.status = RunStatus::Diverged;
                summary.diverged_at_step = Some(t);
                break;
            }
            summary.last_finite_loss = Some(loss);
            summary.final_train_loss = Some(loss);
        }
        let reference = initial_loss.unwrap_or(f64::NAN);
        if is_checkpoint || is_latest {
            // What a resume could not rebuild reaches the disk first (snapshots can lag: they
            // are rebuilt from the step checkpoints).
            if let Some(rec) = spectra.as_mut() {
                rec.persist()?;
            }
            let ckpt = trainer.to_checkpoint(elapsed(&start), reference);
            ckpt.save(&if is_checkpoint { dir.checkpoint_path(t) } else { dir.latest_path() })?;
            if is_checkpoint && let Some(rec) = spectra.as_mut() {
                let t0 = Instant::now();
                rec.record(t, ckpt.tensors, full_steps.contains(&t))?;
                waited += t0.elapsed().as_secs_f64();
            }
        }
        let every = config.spectra.analysis_every;
        if analysis_wanted && (is_checkpoint || (every > 0 && t.is_multiple_of(every))) {
            let t0 = Instant::now();
            let row = analysis_row(&trainer);
            let seconds = t0.elapsed().as_secs_f64();
            waited += seconds;
            if let Some(rec) = spectra.as_mut() {
                rec.record_analysis(row, seconds);
            }
        }
        if t >= total {
            summary.status = RunStatus::Completed;
            break;
        }
        trainer.apply(g);
        bar.inc(1);
        if let Some(loss) = summary.final_train_loss {
            bar.set_message(format!("loss {loss:.4e}"));
        }
    }
    bar.finish();
    if let Some(worker) = spectra {
        let t0 = Instant::now();
        let rec = worker.finish()?;
        waited += t0.elapsed().as_secs_f64();
        summary.spectra_s = rec.seconds;
        crate::spectra::record::write_csv(&rec.data, &dir.root)?;
    }
    summary.spectra_wait_s = waited;
    summary.steps_completed = trainer.step;
    summary.duration_s = elapsed(&start);
    let done = trainer.step.saturating_sub(start_step) as f64;
    summary.steps_per_s = done / start.elapsed().as_secs_f64().max(1e-9);
    dir.write_summary(&summary)?;
    drop(lock);
    Ok(summary)
}

/// Recompute `spectra.h5` (and its CSV) of a run from its step checkpoints, on any backend,
/// with the curvature at every checkpoint. Idempotent; takes the run's lock; validates every
/// checkpoint before it replaces the old file (a corrupt or foreign one is an error naming it).
pub struct RecomputeSpectra {
    pub run: std::path::PathBuf,
    pub quiet: bool,
}

impl crate::backend::BackendJob for RecomputeSpectra {
    type Output = (std::path::PathBuf, usize);

    fn run<A: crate::backend::ComputeBackend>(self, device: A::Device) -> Result<Self::Output> {
        let dir = RunDir::new(&self.run);
        let config = dir.read_config()?;
        let ckpts = dir.step_checkpoints();
        if ckpts.is_empty() {
            return Err(Error::run_dir(
                &self.run,
                "has no step checkpoints (checkpoints/step-*.safetensors)",
                "train it first (`specdyn train CONFIG --out DIR`)",
            ));
        }
        let mut lock = dir.lock()?;
        let data = crate::data::Dataset::from_config(&config)?;
        let network = crate::model::Network::from_config(&config, data.shape)?;
        let mut rec = SpectraRecorder::new(&dir.spectra_path(), &config, &network.params(), data.teacher.as_ref());
        let mut bar = crate::progress::bar(ckpts.len() as u64, self.quiet, "spectra");
        let analysis = config.spectra.sharpness || config.spectra.ntk;
        let full = crate::spectra::record::full_steps(&config);
        for (_, p) in &ckpts {
            let ckpt = crate::rundir::load_own(p, &config)?;
            rec.record(ckpt.step, &ckpt.tensors, full.contains(&ckpt.step))?;
            if analysis {
                let t0 = Instant::now();
                let trainer = Trainer::<A::InnerBackend>::from_checkpoint_with_data(
                    config.clone(),
                    data.clone(),
                    &ckpt,
                    p,
                    device.clone(),
                )?;
                rec.record_analysis(analysis_row(&trainer), t0.elapsed().as_secs_f64());
            }
            bar.inc(1);
        }
        bar.finish();
        lock.announce("spectra")?;
        dir.clean_temp_files(&lock);
        rec.flush()?;
        crate::spectra::record::write_csv(&rec.data, &self.run)?;
        Ok((rec.path, ckpts.len()))
    }
}
