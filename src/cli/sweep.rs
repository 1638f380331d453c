//! `specdyn sweep`: launch (locally or on Slurm), status, report, and the hidden `run-cell`
//! that one worker process or array task runs.

use super::{DeviceArgs, TrainJob};
use clap::{Args, Subcommand};
use specdyn::backend::{Device, dispatch, set_threads};
use specdyn::error::{Error, Result};
use specdyn::sweep::{CellState, SweepConfig, SweepDir, local, report, slurm};
use std::path::{Path, PathBuf};

pub const LONG_ABOUT: &str = "\
Sweep any config keys over value lists (widths × learning rates × parameterizations × seeds …):
each cell is a normal run directory, run on this machine (--jobs J processes, the threads split
among them) or as a Slurm job array (--slurm). Re-running the same command skips finished cells
(completed or diverged: divergence is a result), resumes interrupted ones from their
checkpoints, and adds cells when the grid grew.

The config is a run config plus a [sweep] table:
  [sweep.axes]
  \"model.width\" = [128, 256, 512, 1024, 2048]
  \"optimizer.lr\" = { geomspace = [0.05, 2.0, 17] }   # log grid, ratio 1.26
  \"model.parameterization\" = [\"mup\", \"ntk\"]
  seed = [0, 1]
  [sweep]                       # optional
  zip = [[\"model.width\", \"data.train_size\"]]      # vary together, not as a product
  [sweep.slurm]                 # --slurm: partition, time, mem, cpus_per_task, gpus_per_task,
  array_limit = 8               #   array_limit (%k), cells_per_task, extra = [\"#SBATCH …\"]

  specdyn sweep configs/transfer-mlp.toml --out sweeps/t1 --jobs 2
  specdyn sweep configs/transfer-mlp.toml --out /cluster/sweeps/t1 --slurm
  specdyn sweep status sweeps/t1        # per cell: completed / running / diverged / failed / …
  specdyn sweep report sweeps/t1        # report/: cells.csv, summary.csv, spectra.h5, figures

Exit status: 0 when every cell completed or diverged, 1 when a cell failed, 130 interrupted,
2 bad input (nothing is written).";

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    /// Sweep config: a run config with a [sweep] table.
    pub config: Option<PathBuf>,
    /// Sweep directory (created, or grown when the same sweep ran there before).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Cells run at once on this machine (each a process with threads/jobs threads).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Submit a Slurm job array instead of running here.
    #[arg(long)]
    pub slurm: bool,
    /// Print the cells and what would run; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Subcommand, Debug)]
pub enum SweepAction {
    /// Where every cell stands (with what squeue says for Slurm sweeps).
    Status {
        /// Sweep directory.
        dir: PathBuf,
    },
    /// Tables, one HDF5 file of every cell's spectra, and the transfer and EoS figures.
    #[command(long_about = "\
Writes into DIR/report (or --out): cells.csv (one row per cell: coordinates, status, losses,
divergence step and last finite loss, max η·λ_NTK and η·sharpness, outlier counts and top
values per matrix), summary.csv (per parameterization and width: optimal η₀, largest stable
η₀, and their shift in grid steps from the narrowest width), spectra.h5 (every cell's spectra,
coordinates as attributes), transfer.png (loss vs η₀, one curve per width, μP and NTK side by
side, diverged cells as markers), optimal-lr.png and eos.png (η·λ_NTK vs step against 2).")]
    Report {
        /// Sweep directory.
        dir: PathBuf,
        /// Which loss the transfer plot and summary compare.
        #[arg(long, value_enum, default_value_t = report::Metric::Train)]
        metric: report::Metric,
        /// Output directory (default DIR/report).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Run cells of a sweep in this process (what workers and Slurm array tasks call).
    #[command(hide = true)]
    RunCell {
        dir: PathBuf,
        /// Cell index in cells.json.
        #[arg(long, conflicts_with = "task")]
        cell: Option<usize>,
        /// Slurm array task (its cells are line TASK of slurm/tasks.txt).
        #[arg(long)]
        task: Option<usize>,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        #[arg(long, value_enum, default_value_t = Device::Cpu)]
        device: Device,
    },
}

pub fn run(a: SweepArgs) -> Result<i32> {
    match a.action {
        Some(SweepAction::Status { dir }) => status(&dir),
        Some(SweepAction::Report { dir, metric, out }) => report_cmd(&dir, metric, out.as_deref()),
        Some(SweepAction::RunCell { dir, cell, task, threads, device }) => run_cells(&dir, cell, task, threads, device),
        None => launch(a),
    }
}

fn launch(a: SweepArgs) -> Result<i32> {
    let (Some(config), Some(out)) = (&a.config, &a.out) else {
        return Err(Error::config(
            "a sweep needs a config and --out DIR",
            "e.g. specdyn sweep configs/transfer-mlp.toml --out sweeps/t1 --jobs 2 (or `specdyn sweep status DIR`)",
        ));
    };
    if a.jobs == 0 {
        return Err(Error::config("--jobs must be at least 1", "e.g. --jobs 2"));
    }
    let cfg = SweepConfig::load(config)?;
    cfg.slurm.validate()?;
    if a.slurm && !slurm::available() {
        return Err(Error::config(
            "--slurm: Slurm is not installed here (sbatch is not on PATH)",
            "run the sweep on this machine with --jobs J, or on a Slurm login node (scripts/slurm-one-node.sh starts a local test cluster)",
        ));
    }
    let source = specdyn::config::read_config_text(config)?;
    let dir = SweepDir::new(out);
    let (manifest, text) = dir.plan(&cfg, &source)?;
    let todo: Vec<usize> =
        manifest.cells.iter().enumerate().filter(|(_, c)| !dir.cell_state(c).is_finished()).map(|(i, _)| i).collect();
    let done = manifest.cells.len() - todo.len();
    eprintln!("{} cells ({} finished, {} to run) in {}", manifest.cells.len(), done, todo.len(), out.display());
    if a.dry_run {
        for (i, c) in manifest.cells.iter().enumerate() {
            println!("{:>5}  {:<11}  {}", i, dir.cell_state(c).name(), c.overrides().join(" "));
        }
        return Ok(0);
    }
    let _lock = lock_sweep(&dir)?;
    dir.write(&manifest, &text)?;
    let exe = local::current_exe()?;
    if a.slurm {
        if todo.is_empty() {
            eprintln!("nothing to submit: every cell is finished. Next: specdyn sweep report {}", out.display());
            return Ok(0);
        }
        let name = config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "sweep".into());
        let id = slurm::submit(&dir, &exe, &cfg.slurm, &todo, &name)?;
        println!("{id}");
        eprintln!(
            "submitted job array {id}: {} tasks for {} cells (script {}). Follow it with `specdyn sweep status {}`",
            todo.len().div_ceil(cfg.slurm.cells_per_task),
            todo.len(),
            dir.root.join("slurm/array.sbatch").display(),
            out.display()
        );
        return Ok(0);
    }
    let threads = specdyn::resources::thread_count(a.device.threads);
    let pool = local::Pool {
        exe,
        jobs: a.jobs.min(todo.len().max(1)),
        threads: (threads / a.jobs).max(1),
        device: a.device.device.name().to_string(),
        quiet: a.quiet,
    };
    specdyn::train::install_interrupt_handler();
    let mut bar = specdyn::progress::bar(manifest.cells.len() as u64, a.quiet, "sweep");
    bar.start_at(done as u64);
    let finished = local::run(&pool, &dir, &manifest.cells, &todo, &mut bar)?;
    bar.finish();
    let count = |s: CellState| finished.iter().filter(|f| f.state == s).count();
    eprintln!(
        "{} completed, {} diverged, {} failed, {} interrupted, {} running elsewhere. Next: specdyn sweep report {}",
        count(CellState::Completed),
        count(CellState::Diverged),
        count(CellState::Failed),
        count(CellState::Interrupted),
        count(CellState::Running),
        out.display()
    );
    Ok(if specdyn::train::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) || count(CellState::Interrupted) > 0 {
        130
    } else if count(CellState::Failed) > 0 {
        1
    } else {
        0
    })
}

/// One launcher per sweep directory at a time.
fn lock_sweep(dir: &SweepDir) -> Result<std::fs::File> {
    std::fs::create_dir_all(&dir.root).map_err(|e| Error::io("create sweep directory", &dir.root, e))?;
    let path = dir.root.join(".specdyn-sweep.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy {
            path: dir.root.clone(),
            holder: "another `specdyn sweep` launcher".into(),
            hint: "wait for it to finish, or follow it with `specdyn sweep status DIR`".into(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

fn run_cells(dir: &Path, cell: Option<usize>, task: Option<usize>, threads: usize, device: Device) -> Result<i32> {
    let sweep = SweepDir::new(dir);
    let manifest = sweep.read_manifest()?;
    let cfg = sweep.read_config()?;
    let indices = match (cell, task) {
        (Some(c), _) => vec![c],
        (None, Some(t)) => slurm::task_cells(&sweep, t)?,
        (None, None) => return Err(Error::config("run-cell needs --cell or --task", "")),
    };
    set_threads(threads);
    specdyn::train::install_interrupt_handler();
    let mut code = 0;
    for i in indices {
        let cell = manifest.cells.get(i).ok_or_else(|| {
            Error::config(format!("cell {i} is not in {}", sweep.manifest_path().display()), "relaunch the sweep")
        })?;
        let mut train = |config: specdyn::config::RunConfig, out: &Path, resume: bool| {
            let options = specdyn::train::TrainOptions {
                resume,
                overwrite: false,
                quiet: true,
                device_name: device.name().to_string(),
            };
            dispatch(device, 0, TrainJob { config, out: out.to_path_buf(), options })
        };
        match specdyn::sweep::run_cell(&sweep, &cfg, cell, &mut train) {
            Ok(outcome) => eprintln!("{}: {outcome:?}", cell.name),
            Err(e) => {
                eprintln!("error: {}: {e}", cell.name);
                code = e.exit_code();
            }
        }
        if specdyn::train::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(130);
        }
    }
    Ok(code)
}

fn status(dir: &Path) -> Result<i32> {
    let sweep = SweepDir::new(dir);
    let manifest = sweep.read_manifest()?;
    let queue = slurm::queue(&sweep);
    let tasks: Vec<Vec<usize>> = (0..).map_while(|t| slurm::task_cells(&sweep, t).ok()).collect();
    let queued = |i: usize| -> Option<String> {
        queue.iter().find_map(|(id, state)| {
            let t = slurm::task_of(id)?;
            tasks.get(t).filter(|cells| cells.contains(&i)).map(|_| state.to_lowercase())
        })
    };
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    println!("{:<5} {:<12} {:>11} {:>12}  cell", "index", "status", "step", "train loss");
    for (i, c) in manifest.cells.iter().enumerate() {
        let state = sweep.cell_state(c);
        let label = match (state, queued(i)) {
            (CellState::Pending | CellState::Interrupted, Some(q)) => format!("queued ({q})"),
            (s, _) => s.name().to_string(),
        };
        let summary = specdyn::rundir::RunDir::new(&sweep.cell_dir(c)).read_summary();
        let step = summary.as_ref().map(|s| format!("{}/{}", s.steps_completed, s.steps_planned)).unwrap_or_default();
        let loss = summary
            .as_ref()
            .and_then(|s| s.final_train_loss.or(s.last_finite_loss))
            .map(|l| format!("{l:.4e}"))
            .unwrap_or_default();
        println!("{i:<5} {label:<12} {step:>11} {loss:>12}  {}", c.overrides().join(" "));
        *counts.entry(label.split(' ').next().unwrap_or_default().to_string()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    eprintln!("{} cells: {}", manifest.cells.len(), summary.join(", "));
    if !queue.is_empty() {
        eprintln!("Slurm: {}", queue.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>().join(", "));
    }
    Ok(0)
}

fn report_cmd(dir: &Path, metric: report::Metric, out: Option<&Path>) -> Result<i32> {
    let sweep = SweepDir::new(dir);
    let manifest = sweep.read_manifest()?;
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| dir.join("report"));
    specdyn::rundir::check_output_dir(&out, "specdyn sweep report")?;
    let results = report::collect(&sweep, &manifest.cells);
    let rows = report::transfer(&results, metric);
    let mut files = report::write(&results, &manifest.axes, &rows, &out)?;
    files.extend(specdyn::report::sweep::figures(&results, &rows, &out)?);
    if !rows.is_empty() {
        println!(
            "{:<6} {:>7} {:>11} {:>12} {:>14} {:>10} {:>10}",
            "param", "width", "optimal η₀", "its loss", "max stable η₀", "Δ opt", "Δ stable"
        );
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        let i = |v: Option<i64>| v.map_or("-".to_string(), |v| format!("{v:+}"));
        for r in &rows {
            println!(
                "{:<6} {:>7} {:>11} {:>12} {:>14} {:>10} {:>10}",
                r.parameterization,
                r.width,
                f(r.optimal_lr),
                r.optimal_loss.map_or("-".into(), |v| format!("{v:.4e}")),
                f(r.max_stable_lr),
                i(r.optimal_shift),
                i(r.stable_shift)
            );
        }
        eprintln!("(Δ: grid steps from the narrowest width's value)");
    }
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(0)
}
