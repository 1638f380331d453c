//! The command line: parse, build validated configs, call the library, report.

use crate::backend::{BackendJob, ComputeBackend, Device, dispatch, set_threads};
use crate::bench::{TrainBench, TrainBenchJob};
use crate::config::RunConfig;
use crate::coord::{CoordConfig, CoordJob, spreads, write_outputs};
use crate::error::{Error, Result};
use crate::train::{RunDir, RunStatus, Summary, TrainOptions, install_interrupt_handler, train};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const ABOUT: &str = "Train μP / NTK / SP networks and watch the spectra of their weights evolve, next to DMFT theory.";

const LONG_ABOUT: &str = "\
specdyn trains mean-field (μP), NTK and standard-parameterized networks in burn, records
metrics and log-spaced checkpoints, and (in later versions) measures weight spectra and
compares them with the dynamical mean-field theory of Bordelon, Lauditi & Pehlevan,
\"Spectral Dynamics in Deep Networks\".

Typical session:
  specdyn train configs/quickstart.toml --out runs/quick
  specdyn train configs/fig1-mlp-tanh.toml --out runs/fig1 --set model.width=2048
  specdyn train --resume runs/fig1              # after a crash or Ctrl-C
  specdyn coord-check configs/coord.toml --out runs/coord

Every config key and its default is listed by `specdyn config`.";

#[derive(Parser, Debug)]
#[command(name = "specdyn", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where to compute.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Compute device (cuda/wgpu need the binary built with that cargo feature).
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
    /// GPU index for cuda/wgpu.
    #[arg(long, default_value_t = 0)]
    pub gpu: usize,
    /// CPU threads for burn and faer (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a network; write config.toml, metrics.csv, checkpoints/ and summary.json.
    #[command(long_about = "\
Train a network described by a TOML config (see `specdyn config` for every key).

The run directory (--out) receives:
  config.toml     the effective config (file + --set overrides)
  metrics.csv     one row per logged step: step, train_loss, test_loss, grad_norm,
                  lr_<layer kind>, wall_time_s (row t describes the weights before update t)
  checkpoints/    step-XXXXXXXX.safetensors at log-spaced steps (0,1,2,5,10,20,50,… with
                  checkpoint.per_decade = 3) and the last step; latest.safetensors every
                  checkpoint.latest_every steps and on Ctrl-C. Weights are [fan_out, fan_in]
                  (PyTorch layout), readable with safetensors.torch.load_file.
  summary.json    status (running|completed|diverged|interrupted), losses, duration

Resume after a crash or Ctrl-C with `specdyn train --resume DIR`: the run continues from its
newest checkpoint and reproduces the uninterrupted run bit for bit on the CPU. To extend a
finished run: `specdyn train --resume DIR --set train.steps=5000`.

Exit status: 0 completed, 3 diverged, 130 interrupted, 2 bad config, 1 other errors.")]
    Train(TrainArgs),

    /// μP/NTK/SP coordinate check: activation sizes across widths over the first steps.
    #[command(long_about = "\
Coordinate check (as in microsoft/mup): for each parameterization, width and seed, train the
config's network for a few steps and record the root-mean-square size of every pre-activation
and of the output. μP curves are flat in width; SP curves grow with width.

The config is a run config plus a [coord] table:
  [coord]
  widths = [128, 256, 512, 1024, 2048]
  parameterizations = [\"mup\", \"ntk\", \"sp\"]
  steps = 3
  seeds = 3

Writes coord.csv (one row per parameterization, width, seed, step, layer), coord-spread.csv
(growth from the narrowest to the widest network) and coord.png / coord.svg.")]
    CoordCheck(CoordArgs),

    /// Print the effective config (defaults, a file, and --set overrides) as TOML.
    Config(ConfigArgs),

    /// Time training steps (for BENCHMARKS.md; scripts/bench_train.py compares with PyTorch).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Run config (TOML). Optional with --resume, which reads the run's own config.toml.
    pub config: Option<PathBuf>,
    /// Run directory to create.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its newest checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Override a config value, e.g. --set model.width=2048 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Replace an existing run in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct CoordArgs {
    /// Coord-check config (a run config with a [coord] table).
    pub config: PathBuf,
    /// Output directory.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Override a value, e.g. --set coord.steps=5 or --set optimizer.lr=0.05.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Config file; without it, print the defaults.
    pub config: Option<PathBuf>,
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Milliseconds per training step of a μP tanh MLP (prints one JSON line).
    Train {
        #[command(flatten)]
        bench: TrainBench,
        #[command(flatten)]
        device: DeviceArgs,
    },
}

/// Parse arguments and run; returns the process exit code.
pub fn run<I, T>(args: I) -> Result<i32>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return Ok(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Train(a) => cmd_train(a),
        Command::CoordCheck(a) => cmd_coord(a),
        Command::Config(a) => {
            let cfg = match &a.config {
                Some(p) => RunConfig::load(p, &a.overrides)?,
                None => RunConfig::from_toml_str("", &a.overrides)?,
            };
            print!("{}", cfg.to_toml());
            Ok(0)
        }
        Command::Bench { what: BenchWhat::Train { bench, device } } => {
            set_threads(device.threads);
            let job = TrainBenchJob { bench, device_name: device.device.name().to_string() };
            let r = dispatch(device.device, device.gpu, job)?;
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            Ok(0)
        }
    }
}

struct TrainJob {
    config: RunConfig,
    out: PathBuf,
    options: TrainOptions,
}

impl BackendJob for TrainJob {
    type Output = Summary;
    fn run<B: ComputeBackend>(self, device: B::Device) -> Result<Summary> {
        train::<B::InnerBackend>(self.config, &self.out, &self.options, device)
    }
}

fn cmd_train(a: TrainArgs) -> Result<i32> {
    let (out, resume) = match (&a.out, &a.resume) {
        (Some(o), Some(r)) if o != r => {
            return Err(Error::config(
                format!("--out {} and --resume {} name different directories", o.display(), r.display()),
                "give only --resume DIR to continue a run",
            ));
        }
        (_, Some(r)) => (r.clone(), true),
        (Some(o), None) => (o.clone(), false),
        (None, None) => {
            return Err(Error::config(
                "no run directory given",
                "add --out runs/NAME to start a run, or --resume runs/NAME to continue one",
            ));
        }
    };
    let config = match (&a.config, resume) {
        (Some(p), _) => RunConfig::load(p, &a.overrides)?,
        (None, true) => {
            let dir = RunDir::new(&out);
            let stored = dir.read_config()?;
            RunConfig::from_toml_str(&stored.to_toml(), &a.overrides).map_err(|e| e.in_file(&dir.config_path()))?
        }
        (None, false) => {
            return Err(Error::config(
                "no config file given",
                "pass one, e.g. `specdyn train configs/quickstart.toml --out runs/quick`",
            ));
        }
    };
    set_threads(a.device.threads);
    install_interrupt_handler();
    let options = TrainOptions {
        resume,
        overwrite: a.overwrite,
        quiet: a.quiet,
        device_name: a.device.device.name().to_string(),
    };
    let summary = dispatch(a.device.device, a.device.gpu, TrainJob { config, out: out.clone(), options })?;
    report_summary(&summary, &out);
    Ok(match summary.status {
        RunStatus::Completed | RunStatus::Running => 0,
        RunStatus::Diverged => 3,
        RunStatus::Interrupted => 130,
    })
}

fn report_summary(s: &Summary, out: &std::path::Path) {
    let loss = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4e}"));
    match s.status {
        RunStatus::Completed | RunStatus::Running => eprintln!(
            "completed {} steps in {:.1} s ({:.1} steps/s): train loss {} → {}, test loss {}. Results in {}",
            s.steps_completed,
            s.duration_s,
            s.steps_per_s,
            loss(s.initial_loss),
            loss(s.final_train_loss),
            loss(s.final_test_loss),
            out.display()
        ),
        RunStatus::Diverged => eprintln!(
            "diverged at step {}: the loss became non-finite or exceeded train.divergence_factor × its initial value \
             (last finite loss {}). Fix: lower optimizer.lr (gradient descent is stable below lr ≈ 2/sharpness), \
             or raise train.divergence_factor if the spike is expected. Recorded in {}",
            s.diverged_at_step.unwrap_or(0),
            loss(s.last_finite_loss),
            out.join("summary.json").display()
        ),
        RunStatus::Interrupted => eprintln!(
            "interrupted at step {}; checkpoint saved. Continue with `specdyn train --resume {}`",
            s.steps_completed,
            out.display()
        ),
    }
}

fn cmd_coord(a: CoordArgs) -> Result<i32> {
    let config = CoordConfig::load(&a.config, &a.overrides)?;
    set_threads(a.device.threads);
    let settings = config.coord.clone();
    let records = dispatch(a.device.device, a.device.gpu, CoordJob { config, quiet: a.quiet })?;
    let files = write_outputs(&records, &settings, &a.out)?;
    println!(
        "parameterization  layer   step  growth(N={}→{})",
        settings.widths[0],
        settings.widths[settings.widths.len() - 1]
    );
    for s in spreads(&records).iter().filter(|s| s.step == settings.steps) {
        println!("{:<17} {:<7} {:>4}  {:>8.3}", s.parameterization, s.layer, s.step, s.growth);
    }
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(0)
}
