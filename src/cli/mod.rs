//! The command line (the binary's side): clap types, argument checks, calls into the library,
//! printing. The library knows no command line.

mod sweep;

use clap::{Args, Parser, Subcommand};
use specdyn::backend::{BackendJob, ComputeBackend, Device, dispatch, set_threads};
use specdyn::bench::{TrainBench, TrainBenchJob};
use specdyn::config::RunConfig;
use specdyn::coord::{CoordConfig, CoordJob, spreads, write_outputs};
use specdyn::error::{Error, Result};
use specdyn::rundir::{RunDir, RunStatus, Summary};
use specdyn::theory::network::ResponseEstimator;
use specdyn::train::{TrainOptions, install_interrupt_handler, train};
use std::path::PathBuf;

/// Deepest network `theory extensive` solves (its linearization grows by 2 blocks a layer; past a
/// few layers the spike dominates and the bound-scan resolution thins).
const MAX_EXTENSIVE_LAYERS: usize = 6;

const ABOUT: &str = "Train μP / NTK / SP networks and watch the spectra of their weights evolve, next to DMFT theory.";

const LONG_ABOUT: &str = "\
specdyn trains mean-field (μP), NTK and standard-parameterized networks in burn, records
metrics and log-spaced checkpoints, measures the spectra of their weights, and compares them
with random-matrix theory and the dynamical mean-field theory of Bordelon, Lauditi & Pehlevan,
\"Spectral Dynamics in Deep Networks\".

Typical session:
  specdyn train configs/quickstart.toml --out runs/quick
  specdyn train configs/fig1-mlp-tanh.toml --out runs/fig1 --set model.width=2048
  specdyn train --resume runs/fig1              # after a crash or Ctrl-C
  specdyn coord-check configs/coord.toml --out runs/coord
  specdyn spectra runs/fig1                     # singular values of every weight vs MP
  specdyn theory mup configs/dmft-compare.toml --out runs/theory   # infinite-width DMFT
  specdyn compare runs/cmp/N*-s* --out runs/cmp-report            # theory vs trained runs

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

    /// Weight spectra from a run's checkpoints, or from any safetensors file.
    #[command(long_about = "\
Weight spectra: every singular value of every weight matrix (conv kernels square-unfolded as in
the paper's App. G.1), normalized so that an untrained matrix of the same shape fills the
Marchenko–Pastur bulk [|1 − √c|, 1 + √c] (c = rows/cols; edge 2 for square matrices), the top-k
values followed as identities across snapshots, outlier counts above the MP edge plus a
Tracy–Widom margin, the top singular values of W(t) − W(0), and (runs) sharpness and the top
NTK eigenvalue. Output: spectra.h5 (layout in docs/spectra-hdf5.md), spectra.csv, analysis.csv,
plots/.

  specdyn spectra runs/fig1                 recompute from the run's checkpoints (idempotent)
  specdyn spectra --weights model.safetensors --out runs/ext [--layers attn,mlp]

For external weights the initial variance is unknown: by default each matrix is scaled by its
own RMS entry, so an unstructured matrix with the same entry variance fills the MP bulk and a
bulk that training shifted or reshaped shows as such (scale_source = \"rms\"); --normalize
median instead matches the median singular value to the MP median (\"fitted\"; it hides a bulk
shift). Training runs record spectra at every checkpoint automatically ([spectra] config).")]
    Spectra(SpectraArgs),

    /// Figures of a run or of external-weight spectra (PNG and SVG in DIR/plots/).
    #[command(long_about = "\
Figures of one run (PNG and SVG in RUN/plots/: loss, spectra density, outliers, curvature), or,
given several runs (one config at several widths or seeds), the paper's Fig. 2 for one matrix:
its singular-value density at up to four common snapshots with one histogram per width next to
the MP law, and its top singular values vs step, one colour per width; plus
widths-outliers.csv. The matrix defaults to blocks.0.conv2.weight (second conv of the first
residual block) or layers.1.weight.

  specdyn plot runs/fig1
  specdyn plot runs/cifar/N32 runs/cifar/N64 runs/cifar/N128 --out results/fig2")]
    Plot {
        /// A run directory (or the output of `specdyn spectra --weights`), or several runs.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// With several runs: the matrix to compare (a tensor name, e.g. blocks.0.conv2.weight).
        #[arg(long)]
        matrix: Option<String>,
        /// With several runs: the output directory.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },

    /// Random-matrix and DMFT predictions next to finite-N simulations (tables, CSV, plots).
    Theory {
        #[command(subcommand)]
        model: TheoryModel,
    },

    /// Theory next to trained runs: the μP DMFT (loss, kernels, weight outliers) or the deep-linear DMFT.
    #[command(long_about = "\
Compare trained runs with the infinite-width μP DMFT of their config (tutorial §8, §11.2;
theory map T6–T7). The theory is solved once for the runs' shared config and cached in each
run's theory/ (key.toml, loss.csv, outliers.csv, kernels.csv); runs may differ only in width
and seed. Writes into --out (default: RUN/compare for a single run):
  loss.csv        step, width, seeds, run mean/sd, theory ± Monte-Carlo error, relative gap
  alignment.csv   kernel alignment of each run's Φˡ = φ(hˡ)φ(hˡ)ᵀ/N with the theory, per checkpoint
  outliers.csv    top singular value of every weight matrix (run) vs the predicted outlier, with
                  the MP edge: hidden Wˡ normalized (edge 2), the first layer W⁰ as W⁰/(σ√N)
                  against its finite-N law (edge 1 + √(D/N))
  summary.csv     per width: max loss gap (where the loss > 1% of its start), min alignment,
                  max outlier gap after escape
  compare-loss.png/svg, compare-outliers.png/svg

Runs of several configs (a σ² or γ₀ scan) are compared one config at a time into
OUT/<setting>/ (e.g. OUT/model.init_variance=0.5/), plus scan-summary.csv and theory-scan.png/svg
(every setting's theory next to its widest runs) in OUT.

  specdyn train configs/dmft-compare.toml --out runs/cmp/N1024-s0 --set model.width=1024
  specdyn compare runs/cmp/N*-s* --out results/dmft-compare

The DMFT covers plain gradient descent (full batch, minibatch SGD in the run's batch order, or
online) of bias-free MLPs with C = O(1) outputs (μP or NTK).

Linear networks with model.proportional = true (configs/linear-proportional.toml) are compared
with the deep-linear DMFT instead (exact, no Monte Carlo): loss.csv (train and test loss per
width, seed mean ± SE vs theory), summary.csv, compare-linear.png/svg; runs may differ in width,
D and P at fixed ratios, seed and data.seed. Given one sweep directory of such networks
(configs/transfer-linear.toml), compare solves the DMFT on a fine η₀ grid for every
(parameterization, width): lr-transfer.csv, lr-summary.csv (optimal and largest stable η₀, theory
and runs), lr-transfer.png/svg — learning-rate transfer from theory.

  specdyn sweep configs/transfer-linear.toml --out sweeps/transfer-linear --jobs 2
  specdyn compare sweeps/transfer-linear --out results/transfer-linear")]
    Compare(CompareArgs),

    /// Print the effective config (defaults, a file, and --set overrides) as TOML.
    Config(ConfigArgs),

    /// Grids of runs (widths × learning rates × …) here or as Slurm job arrays; status; report.
    #[command(long_about = sweep::LONG_ABOUT)]
    Sweep(sweep::SweepArgs),

    /// Check a dataset on disk (CIFAR-10: record counts, labels, classes, SHA-256).
    Data {
        #[command(subcommand)]
        what: DataWhat,
    },

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

/// Monte-Carlo settings of the μP DMFT.
#[derive(Args, Debug, Clone)]
pub struct DmftArgs {
    /// Monte-Carlo samples of each layer's single-site process, per replica.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// Samples whose Jacobians give the response functions, per replica [default: the largest
    /// of samples/100, 10 and 2T/15, i.e. 40 at T = 300]. With the control variate 10 give the
    /// error bars 100 plain ones do at T = 80 (results/dmft-responses/); their noise grows with
    /// the horizon (results/dmft-responses-T300/).
    #[arg(long)]
    pub response_samples: Option<usize>,
    /// Independent solves averaged; their spread gives the standard errors of the loss and of
    /// every outlier (≥ 2; 1 gives no error bars).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Seed of the Monte-Carlo draws.
    #[arg(long, default_value_t = 0)]
    pub dmft_seed: u64,
    /// Solve linear networks by Monte Carlo too (default: exactly).
    #[arg(long)]
    pub monte_carlo_linear: bool,
    /// Estimator of the response functions: `debiased` (the control variate with its O(1/n)
    /// bias removed), `control` (first-order control variate, the default before theory
    /// revision 6), or `plain` (plain averages, about threefold the error; for comparisons).
    #[arg(long, default_value = "debiased")]
    pub responses: String,
    /// CPU threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl DmftArgs {
    fn options(&self) -> Result<specdyn::theory::network::DmftOptions> {
        if self.samples < 2 || self.response_samples == Some(0) || self.replicas == 0 {
            return Err(Error::config(
                "--samples must be ≥ 2, --response-samples and --replicas ≥ 1",
                "the defaults (1000 samples, 10–40 response samples, 4 replicas) suit P ≈ 16, T ≤ 300",
            ));
        }
        let Some(responses) = ResponseEstimator::from_name(&self.responses) else {
            return Err(Error::config(
                format!("--responses {} is not an estimator", self.responses),
                format!("use one of {} (default debiased)", ResponseEstimator::NAMES.join(", ")),
            ));
        };
        Ok(specdyn::theory::network::DmftOptions {
            samples: self.samples,
            // 0: chosen from each config's horizon (DmftOptions::response_samples_for).
            response_samples: self.response_samples.unwrap_or(0),
            replicas: self.replicas,
            seed: self.dmft_seed,
            exact_linear: !self.monte_carlo_linear,
            responses,
        })
    }
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run directories (one config at one or more widths and seeds), or one sweep directory of
    /// proportional linear networks.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output directory (default: RUN/compare when one run is given).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub dmft: DmftArgs,
}

#[derive(Args, Debug)]
pub struct SpectraArgs {
    /// Run directory whose checkpoints to analyse.
    pub run: Option<PathBuf>,
    /// An external safetensors file instead of a run.
    #[arg(long, conflicts_with = "run")]
    pub weights: Option<PathBuf>,
    /// Output directory (with --weights).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Keep only tensors whose names contain one of these substrings (with --weights).
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Largest singular values tracked per matrix (with --weights).
    #[arg(long, default_value_t = 8)]
    pub top_k: usize,
    /// Outlier margin above the MP edge in Tracy–Widom units (with --weights).
    #[arg(long, default_value_t = 4.0)]
    pub margin: f64,
    /// How external weights are scaled (with --weights): `rms` divides by the matrix's own RMS
    /// entry (a shifted or reshaped bulk stays visible); `median` fits the median singular
    /// value to the MP median (hides a bulk shift).
    #[arg(long, value_enum, default_value_t = specdyn::spectra::record::ExternalNormalization::Rms)]
    pub normalize: specdyn::spectra::record::ExternalNormalization,
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Options shared by the theory commands.
#[derive(Args, Debug, Clone)]
pub struct TheoryCommon {
    /// Also simulate the random system at this size N (the ground truth).
    #[arg(long, value_name = "N")]
    pub simulate: Option<usize>,
    /// Number of independent simulations.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Output directory for CSV tables and PNG/SVG figures.
    #[arg(long, short)]
    pub out: PathBuf,
    #[arg(long, short)]
    pub quiet: bool,
    /// CPU threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Subcommand, Debug)]
pub enum TheoryModel {
    /// Marchenko–Pastur law of XXᵀ for an n × m Gaussian matrix.
    #[command(long_about = "\
Marchenko–Pastur law (tutorial §6.2, eqs. 67–69). X has n rows, m columns and iid N(0, 1/m)
entries; the aspect ratio is c = n/m. The eigenvalues of XXᵀ fill [(1 − √c)², (1 + √c)²] with
density √((b − λ)(λ − a))/(2πcλ), plus an atom of mass 1 − 1/c at 0 when c > 1; the singular
values of X fill [|1 − √c|, 1 + √c]. Prints the edges and quantiles (and simulated quantiles),
writes mp-density.csv, mp-quantiles.csv and mp.png/svg.")]
    Mp {
        /// Aspect ratio c = rows/columns.
        #[arg(long, default_value_t = 0.5)]
        aspect: f64,
        #[command(flatten)]
        common: TheoryCommon,
    },
    /// Classical BBP transition: outliers of a matrix plus a planted rank-one spike.
    #[command(long_about = "\
Classical BBP transition (tutorial §9, eqs. 87–94; Benaych-Georges & Nadakuditi 2012). Wigner:
M = M₀ + θuuᵀ with M₀ GOE (semicircle on [−2, 2]) and a unit vector u independent of M₀; for
θ > 1 an outlier appears at θ + 1/θ, otherwise the top eigenvalue sticks to 2. Rectangular
(--rectangular): X + θuvᵀ with X of aspect ratio c (entries N(0, 1/columns)); for θ > c^(1/4)
the top singular value is √((1 + θ²)(c + θ²))/θ, otherwise it sticks to 1 + √c. Writes
bbp-*.csv and bbp-*.png/svg with predictions and simulated values.")]
    Bbp {
        /// Singular values of a rectangular matrix instead of eigenvalues of a Wigner matrix.
        #[arg(long)]
        rectangular: bool,
        /// Aspect ratio c (rectangular only).
        #[arg(long, default_value_t = 0.5)]
        aspect: f64,
        /// Spike strengths θ.
        #[arg(long, value_delimiter = ',', default_values_t = vec![0.5, 0.9, 1.2, 1.5, 2.0, 3.0])]
        theta: Vec<f64>,
        #[command(flatten)]
        common: TheoryCommon,
    },
    /// Wigner matrix with spikes it generates itself: the two-level DMFT.
    #[command(long_about = "\
Endogenously spiked Wigner matrix (tutorial §11.1, eqs. 98–107): M_{n+1} = M_n + (γ/N)v_nv_nᵀ,
v_{n+1} = v_n − ηM_nv_n, M₀ GOE, v₀ ~ N(0, I). The spikes depend on M₀, so the classical BBP
rule (the \"naive\" eq. 102, which treats them as independent) is wrong. The two-level DMFT solves
the spike dynamics exactly (level 1: Σᵛ and Rᵛ) and finds every outlier of M_S from eq. (107),
reduced to the real eigenvalues κ > 1 of a 2S × 2S matrix (z = κ + 1/κ). Prints and plots the
outliers vs S for both rules and, with --simulate N, the simulated top eigenvalue (mean ± sd
over --seeds) every --every steps, and the simulated bulk at the last S.")]
    Wigner {
        /// Number of spike steps S.
        #[arg(long, default_value_t = 30)]
        steps: usize,
        /// Spike strength γ.
        #[arg(long, default_value_t = 0.2)]
        gamma: f64,
        /// Step size η of the spike dynamics.
        #[arg(long, default_value_t = 0.2)]
        eta: f64,
        /// Simulate every this many steps.
        #[arg(long, default_value_t = 5)]
        every: usize,
        #[command(flatten)]
        common: TheoryCommon,
    },
    /// Extensive outputs: the bulk of the first layer after one GD step (paper §5, App. F.2).
    #[command(long_about = "\
Extensive output channels (paper §5, App. F.2; theory map T10). A two-layer linear network
f(x) = AᵀWx/(γ₀N) with C = χD outputs, teacher y = Bᵀx/√D, W, A, B i.i.d. N(0, 1), takes one
population-loss GD step with η = η₀γ₀²N: W(1) = (I − (η₀/N)AAᵀ)W(0) + (η₀γ₀/√D)ABᵀ. The
spectrum of W(1)ᵀW(1)/N is a generalized Marchenko–Pastur law with population values
k(a) = (1 − η₀a)² + η₀²γ₀²ν·a over the MP law of AAᵀ/N (an exact reduction; module docs of
src/theory/extensive.rs). Prints the support, the mean and the ν → ∞ edge 1 + η₀²γ₀²(1 + √χ)²
(eq. 351); writes extensive-density.csv (x, density, cdf), extensive-edge-scan.csv (upper edge
vs ν) and extensive.png/svg. With --simulate N: the update itself at N, D = N/ν, C = χD over
--seeds, its KS distance to the law, largest eigenvalue and mean (exact at that size).
The same law also comes from an independent route, the matrix Dyson equation of the update's
linearization (src/theory/pencil.rs); the two are printed side by side.

Deeper networks (App. F.3, --layers L, --layer ℓ): hidden weights W⁰ … W^(L−1), readout A,
f = AᵀW^(L−1)⋯W⁰x/(γ₀N^((L+1)/2)); one population step moves layer ℓ by
Ŵ^ℓ(1) = Ŵ^ℓ − η₀FᵀÂÂᵀFŴ^ℓEEᵀ + η₀γ₀√ν·FᵀÂB̂ᵀEᵀ (hats: /√N; F, E the layers above and below).
Its density and edges come from the Dyson equation; --simulate N checks them.

  specdyn theory extensive --nu 5 --chi 4 --gamma0 2 --eta0 0.2 --simulate 2000 --out runs/ext
  specdyn theory extensive configs/extensive-one-step.toml --out runs/ext   # the network `specdyn train` runs
  specdyn theory extensive --layers 2 --nu 2 --chi 1 --gamma0 2 --eta0 0.2 --simulate 2000 --out runs/ext2
  specdyn theory extensive --nu 2 --chi 1 --gamma0 2 --eta0 0.2 --scan-simulate 400 --out runs/ext-scan")]
    Extensive {
        /// Run config of a linear network with C = χD outputs (model.proportional = true, any
        /// model.depth): ν, χ, γ₀, η₀ and L are read from it instead of the flags.
        config: Option<PathBuf>,
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "config")]
        overrides: Vec<String>,
        /// ν = N/D (width over input dimension; > 1 for the first layer).
        #[arg(long, default_value_t = 5.0)]
        nu: f64,
        /// χ = C/D (outputs over input dimension).
        #[arg(long, default_value_t = 4.0)]
        chi: f64,
        /// Richness γ₀.
        #[arg(long, default_value_t = 2.0)]
        gamma0: f64,
        /// Learning rate η₀ (η = η₀γ₀²N).
        #[arg(long, default_value_t = 0.2)]
        eta0: f64,
        /// L: hidden weight matrices W⁰ … W^(L−1) before the readout (App. F.3 for L > 1; a
        /// config's model.depth when a config is given).
        #[arg(long)]
        layers: Option<usize>,
        /// ℓ: the layer whose spectrum is predicted, 0 … L − 1 (default L − 1, the last hidden
        /// layer).
        #[arg(long)]
        layer: Option<usize>,
        /// Two-layer case: also simulate the update at fixed D = this, N = νD for
        /// ν = 2, 4, …, 64 (N ≤ 40000), over --seeds: the largest eigenvalue against the
        /// finite-ν edge, its first-order correction and the ν → ∞ limit (extensive-nu-scan.csv,
        /// points in the edge and collapse panels).
        #[arg(long, value_name = "D")]
        scan_simulate: Option<usize>,
        #[command(flatten)]
        common: TheoryCommon,
    },
    /// Deep linear networks in the proportional limit: μP vs NTK loss curves (paper §4).
    #[command(long_about = "\
Linear network of L hidden layers in the proportional limit (paper §4, App. E; theory map T8):
width N, input dimension D and samples P grow together at ν = N/D and α = P/D;
f(x) = wᵀW^(L−1)⋯W⁰x/(g·N^((L+1)/2)) (L = 1: wᵀW⁰x/(gN)), linear teacher y = β·x/√D, full-batch
GD on every matrix with η = η₀g²N; μP: g = γ₀, NTK: g = γ₀/√ν. The training-level
DMFT (module docs of src/theory/linear.rs) is marched in time without fixed-point iteration.
For each ν of --nu, prints the final train and test loss of μP and NTK and writes
linear-losses.csv (every step) and linear.png/svg; then each layer's outliers (App. E.12: the
pole conditions of the module docs, a 2T × 2T eigenproblem per step): escape step and final top
outlier, linear-outliers.csv and linear-outliers.png/svg; for L = 1 with full batches the top
eigenvalue of the training-set NTK (η·λ_max against 2, the edge of stability; App. E.15's
population NTK too): linear-ntk.csv and linear-ntk.png/svg. With --simulate D: direct GD at D,
N = νD, P = αD over --seeds (mean ± standard error; the spectra at 9 steps).

  specdyn theory linear --nu 2,4,8 --alpha 2 --gamma0 8 --eta0 0.02 --steps 128 --out runs/linear

Cost O((100 + L)·T³) per (ν, parameterization) with 100 quadrature nodes of the MP law;
`specdyn bench linear` measures it.")]
    Linear {
        /// Hidden layers L (L − 1 square N × N matrices between the first layer and the readout).
        #[arg(long, default_value_t = 1)]
        depth: usize,
        /// Width ratios ν = N/D (fixed D and P across them).
        #[arg(long, value_delimiter = ',', default_values_t = vec![2.0, 4.0, 8.0])]
        nu: Vec<f64>,
        /// α = P/D.
        #[arg(long, default_value_t = 2.0)]
        alpha: f64,
        #[arg(long, default_value_t = 8.0)]
        gamma0: f64,
        #[arg(long, default_value_t = 0.02)]
        eta0: f64,
        /// Label-noise variance σ_ε² of the training targets (the test loss is the excess risk).
        #[arg(long, default_value_t = 0.0)]
        label_noise: f64,
        /// Online SGD: a fresh batch of αD samples every step (α is then the batch ratio).
        #[arg(long)]
        online: bool,
        /// Several outputs (App. E.13): one teacher scale s_c per output, y_c = s_c·β_c·x/√D
        /// (any linear teacher reduces to its singular values); L = 1, full batch. Writes
        /// linear-classes.csv/png with the first layer's up to C outliers.
        #[arg(long, value_delimiter = ',', value_name = "S1,S2,...")]
        teacher_scales: Vec<f64>,
        /// GD steps T.
        #[arg(long, default_value_t = 128)]
        steps: usize,
        /// Also run direct GD with input dimension D (N = νD, P = αD).
        #[arg(long, value_name = "D")]
        simulate: Option<usize>,
        /// Number of independent simulations.
        #[arg(long, default_value_t = 8)]
        seeds: u64,
        /// Output directory for CSV tables and PNG/SVG figures.
        #[arg(long, short)]
        out: PathBuf,
        #[arg(long, short)]
        quiet: bool,
        /// CPU threads (0: all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Infinite-width DMFT of a μP MLP trained by gradient descent, with its weight outliers.
    #[command(long_about = "\
Infinite-width DMFT of a deep μP network trained by gradient descent (tutorial §8,
eqs. 75–86; theory map T6) and the outliers of its weights (hidden: §11.2, eqs. 108–111; the
first layer: a rectangular spiked law, App. C; T7), for the network, data and optimizer a run
config describes (width and model seed drop out). The single-site processes are sampled by
Monte Carlo and marched forward in time (exact for linear φ); responses are averaged
derivatives. Independent replicas give the Monte-Carlo standard error of the loss and of every
outlier. Writes loss.csv (step, train_loss, stderr), outliers.csv (step, matrix, rank, value,
stderr; hidden Wˡ normalized, MP edge 2; W⁰ as W⁰/(σ√N) for N → ∞, bulk 1), kernels.csv
(P × P feature kernels Φˡ and the NTK at every step), key.toml and theory-mup.png/svg.
--scan KEY=V1,V2,… solves one config per value into OUT/KEY=V/ and draws them together
(theory-scan.png/svg, scan.csv).

  specdyn theory mup configs/dmft-compare.toml --out runs/theory-mup
  specdyn theory mup configs/dmft-compare.toml --out runs/sigma --scan model.init_variance=0.5,1,2

Cost grows like (P·T)²·T × replicas × response samples: P = 16, T = 300 with one replica of
1000 samples and 10 response samples takes about 1.5 min on 2 cores, outliers at every step
included (BENCHMARKS.md); error bars need ≥ 2 replicas. The default response samples grow with
the horizon (40 at T = 300, where the responses' noise from 10 moves the late W² outlier by
±0.05; the replicas' standard errors include it): 4 replicas then take about 14 min
(results/dmft-fig1-T300).")]
    Mup {
        /// Run config (TOML).
        config: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Output directory.
        #[arg(long, short)]
        out: PathBuf,
        /// Solve once per value of a config key (after --set), e.g. model.gamma0=1,2,4.
        #[arg(long, value_name = "KEY=V1,V2,…")]
        scan: Option<String>,
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        dmft: DmftArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataWhat {
    /// Check a CIFAR-10 binary directory and print how to get the full set.
    #[command(long_about = "\
Check a CIFAR-10 directory (data.dir of a config): data_batch_1.bin … data_batch_5.bin and
test_batch.bin must each be a whole number of 3,073-byte records (1 label byte 0–9, 3,072
pixel bytes). Prints every file's record count, class counts and SHA-256 (sha256sum format, so
a download can be compared later with `sha256sum -c`), and says whether the directory holds
the full set (10,000 records per file) or a subset. A truncated file or a bad label byte is
an error naming the file and the byte offset.

  specdyn data cifar10 --dir datasets/cifar-10-batches-bin

The full set: see datasets/README.md (curl the official binary tarball, check its MD5
c32a1d4ab5d03f1284b67883e8d87530, unpack).")]
    Cifar10 {
        /// Directory holding the .bin files.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Seconds to compute every singular value of random matrices (scripts/bench_spectra.py
    /// compares with numpy).
    Svd {
        /// Shapes as ROWSxCOLS.
        #[arg(long, value_delimiter = ',', default_values_t = vec!["1024x1024".to_string(), "2048x2048".into(), "4096x1024".into()])]
        shapes: Vec<String>,
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Cost of one sharpness / NTK evaluation relative to one training step.
    Curvature {
        #[command(flatten)]
        bench: TrainBench,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Endogenous-Wigner prediction time vs simulation time (one JSON line per S).
    Wigner {
        /// Spike steps S to time.
        #[arg(long, value_delimiter = ',', default_values_t = vec![10, 30, 100])]
        steps: Vec<usize>,
        /// Simulation size N.
        #[arg(long, default_value_t = 2000)]
        n: usize,
    },
    /// Deep linear DMFT: solve time vs depth L and horizon T (one JSON line per (L, T)), next to
    /// one direct GD run of the same network.
    Linear {
        /// Depths L.
        #[arg(long, value_delimiter = ',', default_values_t = vec![1, 2, 3])]
        depth: Vec<usize>,
        /// Horizons T.
        #[arg(long, value_delimiter = ',', default_values_t = vec![50, 100, 200, 400])]
        steps: Vec<usize>,
        /// Width of the direct GD run timed alongside (0: none).
        #[arg(long, default_value_t = 1000)]
        simulate: usize,
    },
    /// μP network DMFT: solve time and memory, outlier roots over all steps (one JSON line per T;
    /// scripts/bench_dmft.py compares with numpy).
    Dmft {
        /// Run config whose network, data and optimizer to use.
        #[arg(long, default_value = "configs/dmft-compare.toml")]
        config: PathBuf,
        /// Training points P.
        #[arg(long, default_value_t = 10)]
        p: usize,
        /// Steps T to time (ascending: peak memory is the process's high-water mark).
        #[arg(long, value_delimiter = ',', default_values_t = vec![25, 50, 100])]
        steps: Vec<usize>,
        /// Relative eigenvalue cutoff of the outlier compression.
        #[arg(long, default_value_t = specdyn::compare::prediction::OUTLIER_TOL)]
        outlier_tol: f64,
        #[command(flatten)]
        dmft: DmftArgs,
    },
    /// Images per second of one μP ResNet SGD step (prints one JSON line; scripts/bench_resnet.py
    /// compares with PyTorch).
    Resnet {
        #[command(flatten)]
        bench: specdyn::bench::ResNetBench,
        #[command(flatten)]
        device: DeviceArgs,
    },
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
        Command::Compare(a) => cmd_compare(a),
        Command::Theory { model } => cmd_theory(model),
        Command::Spectra(a) => cmd_spectra(a),
        Command::Plot { dirs, matrix, out } => cmd_plot(&dirs, matrix.as_deref(), out.as_deref()),
        Command::Data { what: DataWhat::Cifar10 { dir } } => cmd_data_cifar10(&dir),
        Command::Sweep(a) => sweep::run(a),
        Command::Config(a) => {
            let cfg = match &a.config {
                Some(p) => RunConfig::load(p, &a.overrides)?,
                None => RunConfig::from_toml_str("", &a.overrides)?,
            };
            print!("{}", cfg.to_toml());
            Ok(0)
        }
        Command::Bench { what: BenchWhat::Svd { shapes, threads } } => {
            set_threads(threads);
            for shape in shapes {
                let dims: Vec<usize> = shape.split('x').filter_map(|v| v.parse().ok()).collect();
                let [r, c] = dims[..] else {
                    return Err(Error::config(
                        format!("shape '{shape}' is not ROWSxCOLS"),
                        "e.g. --shapes 1024x1024,4096x1024",
                    ));
                };
                if r == 0 || c == 0 {
                    return Err(Error::config(format!("shape '{shape}' has a zero side"), "e.g. --shapes 1024x1024"));
                }
                let mut need = specdyn::resources::MemoryEstimate::default();
                need.add("matrix (f32 and f64 copies)", (r * c) as f64, 12.0);
                need.add("Gram matrix and eigensolver", (r.min(c) as f64).powi(2), 24.0);
                need.check(&format!("a {r}×{c} benchmark"), "choose smaller --shapes")?;
                println!("{}", serde_json::to_string(&specdyn::bench::bench_svd(r, c)).unwrap_or_default());
            }
            Ok(0)
        }
        Command::Bench { what: BenchWhat::Curvature { bench, device } } => {
            set_threads(device.threads);
            let r = dispatch(device.device, device.gpu, specdyn::bench::CurvatureBenchJob { bench })?;
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            Ok(0)
        }
        Command::Bench { what: BenchWhat::Wigner { steps, n } } => {
            for s in steps {
                println!(
                    "{}",
                    serde_json::to_string(&specdyn::bench::bench_wigner(s.max(1), n.max(2))).unwrap_or_default()
                );
            }
            Ok(0)
        }
        Command::Bench { what: BenchWhat::Linear { depth, steps, simulate } } => {
            if depth.iter().any(|l| !(1..=16).contains(l)) || steps.iter().any(|t| !(1..=2048).contains(t)) {
                return Err(Error::config(
                    "--depth must be 1…16 and --steps 1…2048",
                    "e.g. specdyn bench linear --depth 1,3 --steps 100,200",
                ));
            }
            for &l in &depth {
                for &t in &steps {
                    let r = specdyn::bench::bench_linear(l, t, simulate);
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                }
            }
            Ok(0)
        }
        Command::Bench { what: BenchWhat::Dmft { config, p, steps, outlier_tol, dmft } } => {
            if !(0.0..1.0).contains(&outlier_tol) {
                return Err(Error::config(
                    format!("--outlier-tol {outlier_tol} is not in [0, 1)"),
                    "a relative eigenvalue cutoff, e.g. --outlier-tol 1e-6 (0 keeps every mode)",
                ));
            }
            let opts = dmft.options()?;
            set_threads(dmft.threads);
            for t in steps {
                let cfg = RunConfig::load(&config, &[format!("data.train_size={p}"), format!("train.steps={t}")])?;
                let r = specdyn::bench::bench_dmft(&cfg, &opts, outlier_tol)?;
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            }
            Ok(0)
        }
        Command::Bench { what: BenchWhat::Resnet { bench, device } } => {
            set_threads(device.threads);
            let job = specdyn::bench::ResNetBenchJob { bench, device_name: device.device.name().to_string() };
            let r = dispatch(device.device, device.gpu, job)?;
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
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
    if matches!(summary.status, RunStatus::Completed | RunStatus::Diverged) && out.join("spectra.h5").exists() {
        specdyn::report::spectra::plot_run(&out)?;
    }
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
    specdyn::rundir::check_output_dir(&a.out, "specdyn coord-check")?;
    config.check_memory()?;
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

fn check_theory(common: &TheoryCommon, values: &[(&str, f64)]) -> Result<()> {
    for (name, v) in values {
        if !(v.is_finite() && *v > 0.0) {
            return Err(Error::config(
                format!("--{name} = {v} must be a finite number > 0"),
                "see `specdyn theory --help`",
            ));
        }
    }
    if common.simulate == Some(0) || common.seeds == 0 {
        return Err(Error::config("--simulate and --seeds must be at least 1", "e.g. --simulate 2000 --seeds 3"));
    }
    if let Some(n) = common.simulate {
        let mut need = specdyn::resources::MemoryEstimate::default();
        need.add("simulated matrices and eigensolver", (n as f64).powi(2), 40.0);
        need.check(&format!("a simulation at N = {n}"), "choose a smaller --simulate N (2000 is plenty)")?;
    }
    specdyn::rundir::check_output_dir(&common.out, "specdyn theory")?;
    Ok(())
}

fn cmd_theory(model: TheoryModel) -> Result<i32> {
    use specdyn::report::theory as rep;
    let files = match model {
        TheoryModel::Mp { aspect, common } => {
            check_theory(&common, &[("aspect", aspect)])?;
            set_threads(common.threads);
            rep::mp(aspect, common.simulate, common.seeds, &common.out, common.quiet)?
        }
        TheoryModel::Bbp { rectangular, aspect, theta, common } => {
            check_theory(&common, &[("aspect", aspect)])?;
            if theta.is_empty() || theta.iter().any(|t| !(t.is_finite() && *t > 0.0)) {
                return Err(Error::config("--theta needs positive spike strengths", "e.g. --theta 0.5,1.5,3"));
            }
            set_threads(common.threads);
            rep::bbp(rectangular, aspect, &theta, common.simulate, common.seeds, &common.out, common.quiet)?
        }
        TheoryModel::Wigner { steps, gamma, eta, every, common } => {
            check_theory(&common, &[("gamma", gamma), ("eta", eta), ("steps", steps as f64)])?;
            set_threads(common.threads);
            let model = specdyn::theory::EndogenousWigner { gamma, eta, init_variance: 1.0 };
            rep::wigner(&model, steps, common.simulate, common.seeds, every, &common.out, common.quiet)?
        }
        TheoryModel::Extensive { config, overrides, nu, chi, gamma0, eta0, layers, layer, scan_simulate, common } => {
            let (nu, chi, gamma0, eta0, depth) = match config {
                Some(path) => {
                    let cfg = RunConfig::load(&path, &overrides)?;
                    let m = specdyn::compare::linear::extensive_problem(&cfg)?;
                    if let Some(l) = layers.filter(|l| *l != m.layers) {
                        return Err(Error::config(
                            format!("--layers {l} disagrees with the config's model.depth = {}", m.layers),
                            "drop --layers (the config sets the depth) or pass --set model.depth=L",
                        ));
                    }
                    (m.step.nu, m.step.chi, m.step.gamma0, m.step.eta0, m.layers)
                }
                None => (nu, chi, gamma0, eta0, layers.unwrap_or(1)),
            };
            check_theory(&common, &[("nu", nu), ("chi", chi), ("gamma0", gamma0), ("eta0", eta0)])?;
            if !(1..=MAX_EXTENSIVE_LAYERS).contains(&depth) {
                return Err(Error::config(
                    format!(
                        "--layers {depth}: the one-step law is built for 1 to {MAX_EXTENSIVE_LAYERS} hidden layers"
                    ),
                    "e.g. --layers 2",
                ));
            }
            let layer = layer.unwrap_or(depth - 1);
            if layer >= depth {
                return Err(Error::config(
                    format!("--layer {layer}: a network of {depth} hidden layers has layers 0 … {}", depth - 1),
                    format!("choose --layer between 0 and {}", depth - 1),
                ));
            }
            if nu <= 1.0 && layer == 0 {
                return Err(Error::config(
                    format!("--nu = {nu}: the first layer's law is built for ν = N/D > 1 (full-rank W(1)ᵀW(1)/N)"),
                    "e.g. --nu 2",
                ));
            }
            if let Some(n) = common.simulate
                && ((n as f64 / nu).round() < 1.0 || (n as f64 / nu * chi).round() < 1.0)
            {
                return Err(Error::config(
                    format!("--simulate {n} gives D = N/ν or C = χD below 1"),
                    "choose a larger --simulate N (e.g. 2000)",
                ));
            }
            set_threads(common.threads);
            if let Some(d) = scan_simulate {
                if depth > 1 {
                    return Err(Error::config(
                        "--scan-simulate is the two-layer ν-scan (App. F.2.1); this network has more layers",
                        "drop --scan-simulate, or use --layers 1",
                    ));
                }
                if !(10..=4000).contains(&d) || (d as f64 * chi).round() < 1.0 {
                    return Err(Error::config(
                        format!("--scan-simulate {d}: D must be 10 … 4000 with C = χD ≥ 1"),
                        "e.g. --scan-simulate 400",
                    ));
                }
            }
            // The simulations' memory: the weights, the readout and teacher, the update's products
            // and the eigensolver (doubles), at the largest N each draws.
            let mut need = specdyn::resources::MemoryEstimate::default();
            if let Some(n) = common.simulate {
                let (n, d) = (n as f64, (n as f64 / nu).round());
                let c = (d * chi).round();
                need.add("simulated weights and update", (depth as f64 + 4.0) * n * n + 4.0 * n * c + 2.0 * d * c, 8.0);
            }
            if let Some(d) = scan_simulate {
                let d = d as f64;
                let n = (64.0 * d).min(rep::SCAN_MAX_N as f64);
                need.add("the ν-scan's largest simulation", 3.0 * n * (d + d * chi), 8.0);
            }
            need.check("the simulation", "choose a smaller --simulate N, --scan-simulate D or --chi")?;
            let step = specdyn::theory::extensive::OneStep { nu, chi, gamma0, eta0 };
            let model = specdyn::theory::extensive::DeepOneStep { step, layers: depth, layer };
            let sim = rep::ExtensiveSimulation { n: common.simulate, scan_d: scan_simulate, seeds: common.seeds };
            rep::extensive(&model, &sim, &common.out, common.quiet)?
        }
        TheoryModel::Linear {
            depth,
            nu,
            alpha,
            gamma0,
            eta0,
            label_noise,
            online,
            teacher_scales,
            steps,
            simulate,
            seeds,
            out,
            quiet,
            threads,
        } => {
            if !teacher_scales.is_empty() {
                if depth != 1 || online || label_noise != 0.0 {
                    return Err(Error::config(
                        "--teacher-scales (several outputs) is built for L = 1 with full batches and no label noise",
                        "drop --depth, --online and --label-noise, or drop --teacher-scales",
                    ));
                }
                if teacher_scales.len() > 16 || teacher_scales.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
                    return Err(Error::config(
                        format!("--teacher-scales {teacher_scales:?}: give 1 to 16 scales s_c ≥ 0"),
                        "e.g. --teacher-scales 1,0.85,0.7,0.55,0.4",
                    ));
                }
                let size = (steps + 1) * teacher_scales.len();
                if size > 1024 {
                    return Err(Error::config(
                        format!(
                            "--steps {steps} with {} outputs: the class solve is dense in (T + 1)·C = {size} super-indices (memory ∝ 100·{size}²)",
                            teacher_scales.len()
                        ),
                        format!("keep (T + 1)·C ≤ 1024, e.g. --steps {}", 1024 / teacher_scales.len() - 1),
                    ));
                }
            }
            if !(label_noise.is_finite() && label_noise >= 0.0) {
                return Err(Error::config(
                    format!("--label-noise {label_noise} is not a variance"),
                    "give σ_ε² ≥ 0, e.g. --label-noise 0.1",
                ));
            }
            if !(1..=16).contains(&depth) {
                return Err(Error::config(format!("--depth {depth} is out of range"), "use 1 to 16 hidden layers"));
            }
            let common = TheoryCommon { simulate, seeds, out, quiet, threads };
            check_theory(&common, &[("alpha", alpha), ("gamma0", gamma0), ("eta0", eta0), ("steps", steps as f64)])?;
            if nu.is_empty() || nu.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(Error::config("--nu needs positive width ratios ν = N/D", "e.g. --nu 2,4,8"));
            }
            if steps > 512 {
                return Err(Error::config(
                    format!("--steps {steps}: the solve costs O(100·T³) time and O(100·T²) memory (T = 512: 0.4 GB)"),
                    "use at most 512 steps (128 reproduces the paper's figures)",
                ));
            }
            // Direct GD allocates its data and weights before the first step: check it fits.
            if let Some(d) = common.simulate {
                let nu_max = nu.iter().copied().fold(0.0, f64::max);
                let (d, n) = (d as f64, (nu_max * d as f64).round());
                let p = (alpha * d).round();
                let c = teacher_scales.len().max(1) as f64;
                let mut need = specdyn::resources::MemoryEstimate::default();
                need.add("training inputs X (P × D)", p * d, 8.0);
                need.add("first layer and its Gram matrix", n * d + n.min(d).powi(2), 8.0);
                need.add("hidden layers", (depth as f64 - 1.0) * n * n * 2.0, 8.0);
                need.add("readouts and teachers", (n + d) * c, 8.0);
                if depth == 1 && !online && teacher_scales.is_empty() {
                    need.add("training-set NTK matrix", p.min(d + n).powi(2) + p * n, 8.0);
                }
                need.add("temporaries", 2.0 * (p * d + n * d), 8.0);
                need.check(
                    &format!("direct GD at D = {d}, N = {n}, P = {p}"),
                    "choose a smaller --simulate D (or --alpha, --nu)",
                )?;
            }
            if !teacher_scales.is_empty() {
                // The class solve keeps per-node G (100 nodes) and five more (T + 1)C-square matrices.
                let size = ((steps + 1) * teacher_scales.len()) as f64;
                let mut need = specdyn::resources::MemoryEstimate::default();
                need.add("per-node response matrices", 100.0 * size * size, 8.0);
                need.add("order parameters", 8.0 * size * size, 8.0);
                need.check("the several-output DMFT", "choose fewer --steps or outputs")?;
            }
            set_threads(common.threads);
            let base = specdyn::theory::linear::LinearNet {
                nu: 1.0,
                alpha,
                gamma0,
                eta0,
                parameterization: specdyn::theory::linear::Parameterization::Mup,
                label_noise,
                online,
                depth,
            };
            if teacher_scales.is_empty() {
                rep::linear(&base, &nu, steps, common.simulate, common.seeds, &common.out, common.quiet)?
            } else {
                rep::linear_classes(&base, &nu, &teacher_scales, steps, common.simulate, common.seeds, &common.out)?
            }
        }
        TheoryModel::Mup { config, overrides, out, scan, quiet, dmft } => {
            let opts = dmft.options()?;
            specdyn::rundir::check_output_dir(&out, "specdyn theory mup")?;
            match scan {
                None => {
                    let cfg = specdyn::config::RunConfig::load(&config, &overrides)?;
                    set_threads(dmft.threads);
                    specdyn::compare::theory_alone(&cfg, &opts, &out, quiet)?
                }
                Some(scan) => {
                    // Every value's config is checked before anything is solved or written.
                    let (key, values) = parse_scan(&scan)?;
                    let configs = values
                        .iter()
                        .map(|v| {
                            let mut o = overrides.clone();
                            o.push(format!("{key}={v}"));
                            let cfg = specdyn::config::RunConfig::load(&config, &o)?;
                            specdyn::compare::mup_problem(&cfg)?;
                            Ok((format!("{key} = {v}"), cfg))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    set_threads(dmft.threads);
                    specdyn::compare::theory_scan(&configs, &opts, &out, quiet)?
                }
            }
        }
    };
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(0)
}

/// `KEY=V1,V2,…` of `--scan`: the key and at least two values.
fn parse_scan(scan: &str) -> Result<(String, Vec<String>)> {
    let bad = || {
        Error::config(
            format!("--scan '{scan}' is not KEY=V1,V2,…"),
            "give a config key and at least two values, e.g. --scan model.gamma0=1,2,4",
        )
    };
    let (key, values) = scan.split_once('=').ok_or_else(bad)?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if key.trim().is_empty() || values.len() < 2 || values.iter().any(String::is_empty) {
        return Err(bad());
    }
    Ok((key.trim().to_string(), values))
}

fn cmd_compare(a: CompareArgs) -> Result<i32> {
    let opts = a.dmft.options()?;
    set_threads(a.dmft.threads);
    let out = match (&a.out, a.runs.as_slice()) {
        (Some(o), _) => o.clone(),
        (None, [one]) => one.join("compare"),
        (None, _) => {
            return Err(Error::config(
                "several runs need --out DIR for the comparison",
                "e.g. specdyn compare runs/cmp/N*-s* --out results/dmft-compare",
            ));
        }
    };
    if a.out.is_some() {
        specdyn::rundir::check_output_dir(&out, "specdyn compare")?;
    }
    if let [one] = a.runs.as_slice()
        && specdyn::sweep::SweepDir::new(one).manifest_path().exists()
    {
        // A sweep of proportional linear networks: learning-rate transfer from the DMFT.
        for f in specdyn::compare::linear::compare_sweep(one, &out, false)? {
            eprintln!("wrote {}", f.display());
        }
        return Ok(0);
    }
    let first = specdyn::rundir::RunDir::new(&a.runs[0]).read_config()?;
    if specdyn::compare::linear::is_linear_config(&first) {
        // A linear network in the proportional convention: the deep-linear DMFT (no Monte Carlo).
        for f in specdyn::compare::linear::compare_linear(&a.runs, &out, false)? {
            eprintln!("wrote {}", f.display());
        }
        return Ok(0);
    }
    let (summary, files) = specdyn::compare::compare(&a.runs, &out, &opts, a.quiet)?;
    println!(
        "{:>7} {:>6} {:>13} {:>14} {:>16} {:>22} {:>16}",
        "width", "seeds", "max loss gap", "min alignment", "max outlier gap", "(of distance to edge)", "steps outside"
    );
    let mut last_label = None;
    for (label, s) in &summary {
        if !label.is_empty() && last_label != Some(label) {
            println!("{label}:");
            last_label = Some(label);
        }
        let (gap, edge, outside) = if s.outlier_steps > 0 {
            (
                format!("{:.2}%", 100.0 * s.max_outlier_gap),
                format!("{:.1}%", 100.0 * s.max_outlier_edge_gap),
                format!("{}/{}", s.outlier_steps_outside, s.outlier_steps),
            )
        } else {
            ("no outlier".into(), "—".into(), "—".into())
        };
        println!(
            "{:>7} {:>6} {:>12.2}% {:>14.4} {:>16} {:>22} {:>16}",
            s.width,
            s.seeds,
            100.0 * s.max_loss_gap,
            s.min_alignment,
            gap,
            edge,
            outside
        );
    }
    println!(
        "steps outside: outlier gaps beyond both 3 theory standard errors and {:.0}% of the distance above the MP edge",
        100.0 * specdyn::compare::EDGE_TOLERANCE
    );
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(0)
}

fn cmd_spectra(a: SpectraArgs) -> Result<i32> {
    set_threads(a.device.threads);
    let dir = match (&a.run, &a.weights) {
        (Some(run), None) => {
            let job = specdyn::train::RecomputeSpectra { run: run.clone(), quiet: a.quiet };
            let (path, n) = dispatch(a.device.device, a.device.gpu, job)?;
            eprintln!("wrote {} ({n} snapshots)", path.display());
            run.clone()
        }
        (None, Some(w)) => {
            let out = a.out.clone().ok_or_else(|| {
                Error::config(
                    "--weights needs --out DIR",
                    "e.g. specdyn spectra --weights model.safetensors --out runs/ext",
                )
            })?;
            if a.top_k == 0 || a.margin.is_nan() || a.margin < 0.0 {
                return Err(Error::config("--top-k must be ≥ 1 and --margin ≥ 0", "the defaults are 8 and 4"));
            }
            specdyn::rundir::check_output_dir(&out, "specdyn spectra --weights")?;
            let path = specdyn::spectra::record::external(w, &a.layers, a.top_k, a.margin, a.normalize, &out)?;
            specdyn::spectra::record::write_csv(&specdyn::spectra::h5::read(&path)?, &out)?;
            eprintln!("wrote {}", path.display());
            out
        }
        _ => {
            return Err(Error::config(
                "give a run directory or --weights FILE",
                "e.g. `specdyn spectra runs/fig1` or `specdyn spectra --weights model.safetensors --out runs/ext`",
            ));
        }
    };
    let data = specdyn::spectra::h5::read(&dir.join("spectra.h5"))?;
    let last = data.steps.len().saturating_sub(1);
    println!("{:<28} {:>11} {:>8} {:>9} {:>9}", "matrix", "shape", "edge", "top", "outliers");
    for m in &data.matrices {
        println!(
            "{:<28} {:>11} {:>8.4} {:>9.4} {:>9}",
            m.name,
            format!("{}×{}", m.rows(), m.cols()),
            m.mp_edge(),
            m.top_values.get(last).and_then(|r| r.first()).copied().unwrap_or(f32::NAN),
            m.outlier_count.get(last).copied().unwrap_or(0)
        );
    }
    for f in specdyn::report::spectra::plot_run(&dir)? {
        eprintln!("wrote {}", f.display());
    }
    Ok(0)
}

fn cmd_data_cifar10(dir: &std::path::Path) -> Result<i32> {
    use specdyn::data::cifar;
    let reports = cifar::check_dir(dir)?;
    println!("{:<18} {:>8}  class counts (0–9)", "file", "records");
    for r in &reports {
        let name = r.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let counts: Vec<String> = r.class_counts.iter().map(|c| c.to_string()).collect();
        println!("{name:<18} {:>8}  {}", r.records, counts.join(" "));
    }
    println!();
    for r in &reports {
        println!("{}  {}", r.sha256, r.path.display());
    }
    let train: usize = reports.iter().take(cifar::TRAIN_FILES.len()).map(|r| r.records).sum();
    let test = reports.last().map_or(0, |r| r.records);
    if reports.iter().all(|r| r.records == cifar::OFFICIAL_RECORDS) {
        eprintln!("complete: {train} training and {test} test images, every file whole (the official set).");
    } else {
        eprintln!(
            "a subset: {train} training and {test} test images (the official files hold {} records each). \
             For the full set see datasets/README.md.",
            cifar::OFFICIAL_RECORDS
        );
    }
    Ok(0)
}

fn cmd_plot(dirs: &[PathBuf], matrix: Option<&str>, out: Option<&std::path::Path>) -> Result<i32> {
    use specdyn::report::spectra as rep;
    let files = match (dirs, out) {
        ([one], None) if matrix.is_none() => rep::plot_run(one)?,
        (_, Some(out)) => {
            specdyn::rundir::check_output_dir(out, "specdyn plot")?;
            let (name, series) = rep::read_width_series(dirs, matrix)?;
            println!("{name}: top singular value by width (MP edge {:.4})", series[0].matrix.mp_edge());
            println!("{:>7} {:>5} {:>8} {:>9} {:>9} {:>9}", "width", "seed", "step", "top 1", "top 2", "top 3");
            for s in &series {
                let t = s.steps.len() - 1;
                let v = &s.matrix.top_values[t];
                let get = |i: usize| v.get(i).map_or("-".to_string(), |x| format!("{x:.4}"));
                println!("{:>7} {:>5} {:>8} {:>9} {:>9} {:>9}", s.width, s.seed, s.steps[t], get(0), get(1), get(2));
            }
            rep::across_widths(&series, &name, out)?
        }
        _ => {
            return Err(Error::config(
                "several runs (or --matrix) need --out DIR for the comparison",
                "e.g. specdyn plot runs/N32 runs/N64 runs/N128 --out results/fig2",
            ));
        }
    };
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(0)
}
