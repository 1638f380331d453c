//! `specdyn bench train`: time training steps of a μP MLP, for BENCHMARKS.md.
//! `scripts/bench_train.py` runs this next to the same model in PyTorch and prints ratios.

use crate::backend::{BackendJob, ComputeBackend};
use crate::config::{OptimizerKind, RunConfig};
use crate::error::Result;
use crate::model::{Activation, Parameterization};
use crate::train::Trainer;
use serde::Serialize;
use std::time::Instant;

/// What to time.
#[derive(Clone, Debug, clap::Args)]
pub struct TrainBench {
    /// Hidden width N.
    #[arg(long, default_value_t = 1024)]
    pub width: usize,
    /// Number of hidden layers L.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Input dimension D.
    #[arg(long, default_value_t = 256)]
    pub input_dim: usize,
    /// Batch size (a fixed batch, full-batch steps).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// sgd or adam.
    #[arg(long, default_value = "sgd")]
    pub optimizer: String,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    pub steps: u64,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
}

/// One timing result (printed as a JSON line).
#[derive(Clone, Debug, Serialize)]
pub struct TrainBenchResult {
    pub framework: String,
    pub device: String,
    pub width: usize,
    pub depth: usize,
    pub input_dim: usize,
    pub batch: usize,
    pub optimizer: String,
    pub threads: usize,
    pub ms_per_step: f64,
    pub ms_per_step_min: f64,
}

pub struct TrainBenchJob {
    pub bench: TrainBench,
    pub device_name: String,
}

impl BackendJob for TrainBenchJob {
    type Output = TrainBenchResult;

    fn run<B: ComputeBackend>(self, device: B::Device) -> Result<TrainBenchResult> {
        let b = &self.bench;
        let mut cfg = RunConfig::default();
        cfg.model.width = b.width;
        cfg.model.depth = b.depth;
        cfg.model.activation = Activation::Tanh;
        cfg.model.parameterization = Parameterization::Mup;
        cfg.data.input_dim = b.input_dim;
        cfg.data.train_size = b.batch;
        cfg.data.test_size = 0;
        cfg.optimizer.kind = if b.optimizer == "adam" { OptimizerKind::Adam } else { OptimizerKind::Sgd };
        cfg.optimizer.lr = 1e-3;
        cfg.train.steps = b.steps + b.warmup;
        cfg.validate()?;
        let mut trainer = Trainer::<B::InnerBackend>::new(cfg, device)?;
        let mut times = Vec::new();
        for i in 0..(b.steps + b.warmup) {
            let t0 = Instant::now();
            // Reading the loss synchronizes the device, so each step is timed to completion.
            let loss = trainer.train_step();
            std::hint::black_box(loss);
            if i >= b.warmup {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(TrainBenchResult {
            framework: "specdyn".into(),
            device: self.device_name,
            width: b.width,
            depth: b.depth,
            input_dim: b.input_dim,
            batch: b.batch,
            optimizer: b.optimizer.clone(),
            threads: rayon::current_num_threads(),
            ms_per_step: times.iter().sum::<f64>() / times.len().max(1) as f64,
            ms_per_step_min: times.iter().cloned().fold(f64::INFINITY, f64::min),
        })
    }
}

/// Timing of the endogenous-Wigner predictions against simulation (`specdyn bench wigner`).
#[derive(Clone, Debug, Serialize)]
pub struct WignerBenchResult {
    pub steps: usize,
    /// Level-1 recursion (Σᵛ, Rᵛ).
    pub level_one_ms: f64,
    /// Every outlier from the 2S × 2S eigenvalue reduction of eq. (107).
    pub outliers_ms: f64,
    /// Every outlier for every S' ≤ S (the whole trajectory).
    pub trajectory_ms: f64,
    /// Scanning det of the eq.-(107) matrix over 600 values of z instead (for comparison).
    pub determinant_scan_ms: f64,
    /// One simulation at size n (dynamics + dense eigenvalues of M_S).
    pub simulation_ms: f64,
    pub n: usize,
    pub top_outlier: f64,
}

/// Time prediction and simulation for S spike steps at size n.
/// One deep-linear timing (a JSON line of `specdyn bench linear`).
#[derive(Clone, Debug, Serialize)]
pub struct LinearBenchResult {
    pub depth: usize,
    pub steps: usize,
    /// The μP DMFT solve of ν = 2, α = 2, γ₀ = 8, η₀ = 0.02 (400 MP nodes), seconds.
    pub solve_s: f64,
    pub final_test_loss: f64,
    /// One direct GD run of the same network at width `simulate_n` (0: not run), seconds.
    pub simulate_n: usize,
    pub simulate_s: f64,
    /// The outliers of every layer at step T (one 2T × 2T eigenproblem a layer), seconds.
    pub outliers_last_s: f64,
    /// The outliers of every layer at every step 1…T, seconds (run only for T ≤ 200; else 0).
    pub outliers_every_step_s: f64,
}

/// Time the deep linear DMFT at depth L and horizon T, and one direct GD run at width N.
pub fn bench_linear(depth: usize, steps: usize, n: usize) -> LinearBenchResult {
    use crate::theory::linear::{LinearNet, simulate};
    let net = LinearNet::reference(depth);
    let t = Instant::now();
    let curves = net.solve(steps);
    let solve_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    if n > 0 {
        std::hint::black_box(simulate(&net, n, steps, 0));
    }
    let simulate_s = if n > 0 { t.elapsed().as_secs_f64() } else { 0.0 };
    let (_, orders) = net.solve_with_orders(steps);
    let t = Instant::now();
    std::hint::black_box(orders.iter().map(|m| m.outliers(steps)).collect::<Vec<_>>());
    let outliers_last_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    if steps <= 200 {
        use rayon::prelude::*;
        std::hint::black_box(
            orders
                .iter()
                .map(|m| (1..=steps).into_par_iter().map(|k| m.outliers(k)).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        );
    }
    let outliers_every_step_s = if steps <= 200 { t.elapsed().as_secs_f64() } else { 0.0 };
    LinearBenchResult {
        outliers_last_s,
        outliers_every_step_s,
        depth,
        steps,
        solve_s,
        final_test_loss: curves.test.last().copied().unwrap_or(f64::NAN),
        simulate_n: n,
        simulate_s,
    }
}

pub fn bench_wigner(steps: usize, n: usize) -> WignerBenchResult {
    use crate::theory::{EndogenousWigner, endogenous::det, roots::real_roots, simulate};
    let m = EndogenousWigner { gamma: 0.2, eta: 0.2, init_variance: 1.0 };
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let lvl = m.level_one(steps);
    let level_one_ms = ms(t);
    let t = Instant::now();
    let out = m.outliers(&lvl, steps);
    let outliers_ms = ms(t);
    let t = Instant::now();
    std::hint::black_box(m.trajectory(steps));
    let trajectory_ms = ms(t);
    let t = Instant::now();
    std::hint::black_box(real_roots(|k: f64| det(&m.matrix_107(&lvl, steps, k + 1.0 / k)), 1.01, 10.0, 600));
    let determinant_scan_ms = ms(t);
    let t = Instant::now();
    std::hint::black_box(simulate::endogenous_wigner(&m, n, &[steps], 0));
    let simulation_ms = ms(t);
    WignerBenchResult {
        steps,
        level_one_ms,
        outliers_ms,
        trajectory_ms,
        determinant_scan_ms,
        simulation_ms,
        n,
        top_outlier: out.upper.first().copied().unwrap_or(f64::NAN),
    }
}

/// Time to compute every singular value of random f32 matrices (`specdyn bench svd`).
#[derive(Clone, Debug, Serialize)]
pub struct SvdBenchResult {
    pub rows: usize,
    pub cols: usize,
    pub threads: usize,
    /// specdyn's method: eigenvalues of the f64 Gram matrix of the smaller side.
    pub seconds: f64,
    /// faer's f64 SVD (singular values only), for reference.
    pub faer_svd_seconds: f64,
    /// The top 8 singular triplets as the spectra path computes them between full spectra
    /// ([`crate::spectra::top_triplets`]; a Gaussian matrix, so all 8 sit at the bulk edge).
    pub top8_seconds: f64,
}

pub fn bench_svd(rows: usize, cols: usize) -> SvdBenchResult {
    use crate::rng::{Purpose, normals, stream};
    let data: Vec<f32> =
        normals(&mut stream(0, Purpose::Analysis, 0), rows * cols).into_iter().map(|v| v as f32).collect();
    let best = |f: &dyn Fn()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let seconds = best(&|| {
        std::hint::black_box(crate::spectra::singular_values(&data, rows, cols));
    });
    let faer_svd_seconds = best(&|| {
        std::hint::black_box(crate::spectra::matrix::to_faer(&data, rows, cols).singular_values().ok());
    });
    let a = crate::spectra::matrix::to_faer(&data, rows, cols);
    let top8_seconds = best(&|| {
        std::hint::black_box(crate::spectra::top_triplets(a.as_ref(), 8, 0));
    });
    SvdBenchResult { rows, cols, threads: rayon::current_num_threads(), seconds, faer_svd_seconds, top8_seconds }
}

/// Cost of one curvature evaluation relative to one training step (`specdyn bench curvature`).
#[derive(Clone, Debug, Serialize)]
pub struct CurvatureBenchResult {
    pub width: usize,
    pub batch: usize,
    pub step_ms: f64,
    pub sharpness_ms: f64,
    pub ntk_ms: f64,
    pub lanczos_steps: usize,
    pub sharpness_in_steps: f64,
    pub ntk_in_steps: f64,
}

pub struct CurvatureBenchJob {
    pub bench: TrainBench,
}

impl BackendJob for CurvatureBenchJob {
    type Output = CurvatureBenchResult;

    fn run<B: ComputeBackend>(self, device: B::Device) -> Result<CurvatureBenchResult> {
        let b = &self.bench;
        let mut cfg = RunConfig::default();
        cfg.model.width = b.width;
        cfg.model.depth = b.depth;
        cfg.data.input_dim = b.input_dim;
        cfg.data.train_size = b.batch;
        cfg.data.test_size = 0;
        cfg.optimizer.lr = 1e-3;
        cfg.validate()?;
        let mut trainer = Trainer::<B::InnerBackend>::new(cfg.clone(), device)?;
        for _ in 0..b.warmup {
            trainer.train_step();
        }
        let t = Instant::now();
        for _ in 0..b.steps {
            std::hint::black_box(trainer.train_step());
        }
        let step_ms = t.elapsed().as_secs_f64() * 1e3 / b.steps as f64;
        let (x, y) = trainer.batch();
        let rates = trainer.learning_rates();
        let t = Instant::now();
        let c = crate::spectra::curvature::curvature(
            &trainer.model,
            &x,
            &y,
            crate::model::Loss::Mse,
            &rates,
            cfg.spectra.lanczos_steps,
            true,
            false,
        );
        let sharpness_ms = t.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(c);
        let t = Instant::now();
        let c = crate::spectra::curvature::curvature(
            &trainer.model,
            &x,
            &y,
            crate::model::Loss::Mse,
            &rates,
            cfg.spectra.lanczos_steps,
            false,
            true,
        );
        let ntk_ms = t.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box(c);
        Ok(CurvatureBenchResult {
            width: b.width,
            batch: b.batch,
            step_ms,
            sharpness_ms,
            ntk_ms,
            lanczos_steps: cfg.spectra.lanczos_steps,
            sharpness_in_steps: sharpness_ms / step_ms,
            ntk_in_steps: ntk_ms / step_ms,
        })
    }
}

/// Cost of the μP network DMFT and of its outlier roots (`specdyn bench dmft`).
#[derive(Clone, Debug, Serialize)]
pub struct DmftBenchResult {
    pub depth: usize,
    pub p: usize,
    pub steps: usize,
    pub samples: usize,
    pub response_samples: usize,
    pub replicas: usize,
    /// Relative eigenvalue cutoff of the outlier compression.
    pub outlier_tol: f64,
    /// Super-index size P·(T + 1).
    pub size: usize,
    pub solve_seconds: f64,
    /// Peak resident memory of the process so far (Linux VmHWM), MiB.
    pub peak_rss_mib: f64,
    /// Outliers of every hidden matrix after every step 1..=T (shared compression).
    pub outliers_all_steps_seconds: f64,
    /// Modes kept by the compression (last hidden matrix).
    pub modes_kept: usize,
    /// The uncompressed 2S × 2S reduction at the last step, one matrix, S = P·T (skipped,
    /// None, above S = 2000: a dense nonsymmetric eigenproblem of 4000+ takes minutes).
    pub outliers_full_last_step_seconds: Option<f64>,
    /// Largest |compressed − full| over the last step's outliers (normalized singular values).
    pub compression_error: Option<f64>,
    /// The last hidden matrix's outliers at the last step.
    pub outliers_last_step: Vec<f64>,
    /// Every hidden matrix's outliers after every step (`[ℓ−1][t−1]`), to compare settings.
    pub outliers: Vec<Vec<Vec<f64>>>,
    pub final_loss: f64,
    /// The problem (for scripts/dmft_numpy.py): γ, η₀, σ², K^x (P × P row-major), y, and the
    /// loss curve specdyn found.
    pub gamma: f64,
    pub eta0: f64,
    pub sigma2: f64,
    pub activation: String,
    pub kx: Vec<f64>,
    pub y: Vec<f64>,
    pub loss: Vec<f64>,
}

/// Peak resident set size of this process in MiB (0 where /proc is unavailable).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Time the DMFT of the Fig.-1 network (configs/dmft-compare.toml's settings, L = 3, tanh)
/// with P points over T steps, then its outliers.
pub fn bench_dmft(
    cfg: &crate::config::RunConfig,
    opts: &crate::theory::network::DmftOptions,
    outlier_tol: f64,
) -> crate::Result<DmftBenchResult> {
    use crate::theory::network::solve;
    use crate::theory::weight_outliers::outliers_over_time;
    let pr = crate::compare::mup_problem(cfg)?;
    let t = Instant::now();
    let sol = solve(&pr, opts);
    let solve_seconds = t.elapsed().as_secs_f64();
    let steps: Vec<usize> = (1..=pr.steps).collect();
    let t = Instant::now();
    let all: Vec<Vec<Vec<f64>>> = (1..pr.depth).map(|l| outliers_over_time(&sol, l, &steps, outlier_tol)).collect();
    let outliers_all_steps_seconds = t.elapsed().as_secs_f64();
    let last = pr.depth - 1;
    let op = sol.spike_order_parameters(last, pr.steps);
    let modes_kept = op.compressed(outlier_tol).size();
    let comp = all[last - 1].last().cloned().unwrap_or_default();
    let (mut outliers_full_last_step_seconds, mut compression_error) = (None, None);
    if op.size() <= 2000 {
        let t = Instant::now();
        let full = op.outliers();
        outliers_full_last_step_seconds = Some(t.elapsed().as_secs_f64());
        compression_error = Some(if comp.len() == full.len() {
            comp.iter().zip(&full).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
        } else {
            f64::INFINITY
        });
    }
    Ok(DmftBenchResult {
        depth: pr.depth,
        p: pr.p(),
        steps: pr.steps,
        samples: opts.samples,
        response_samples: opts.response_samples_for(pr.steps),
        replicas: opts.replicas,
        outlier_tol,
        size: pr.size(),
        solve_seconds,
        peak_rss_mib: peak_rss_mib(),
        outliers_all_steps_seconds,
        modes_kept,
        outliers_full_last_step_seconds,
        compression_error,
        outliers_last_step: comp,
        outliers: all,
        final_loss: sol.loss().last().copied().unwrap_or(f64::NAN),
        gamma: pr.gamma,
        eta0: pr.eta0,
        sigma2: pr.sigma2,
        activation: format!("{:?}", pr.activation).to_lowercase(),
        kx: (0..pr.p() * pr.p()).map(|k| pr.kx[(k / pr.p(), k % pr.p())]).collect(),
        y: pr.y.clone(),
        loss: sol.loss(),
    })
}

/// What to time in `specdyn bench resnet`.
#[derive(Clone, Debug, clap::Args)]
pub struct ResNetBench {
    /// Channels N.
    #[arg(long, default_value_t = 32)]
    pub width: usize,
    /// Residual blocks.
    #[arg(long, default_value_t = 2)]
    pub blocks: usize,
    /// Images per step (32 × 32 × 3).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    pub steps: u64,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
}

/// One ResNet timing (a JSON line).
#[derive(Clone, Debug, Serialize)]
pub struct ResNetBenchResult {
    pub framework: String,
    pub device: String,
    pub width: usize,
    pub blocks: usize,
    pub batch: usize,
    pub threads: usize,
    pub ms_per_step: f64,
    pub images_per_s: f64,
}

pub struct ResNetBenchJob {
    pub bench: ResNetBench,
    pub device_name: String,
}

impl BackendJob for ResNetBenchJob {
    type Output = ResNetBenchResult;

    /// One SGD step (forward, backward, update) of the μP ResNet of `configs/cifar-resnet.toml`
    /// (ReLU, no normalization, branch scale 1/√depth, MSE to one-hot targets) on a fixed batch
    /// of Gaussian images, as `scripts/bench_resnet.py` does in PyTorch.
    fn run<B: ComputeBackend>(self, device: B::Device) -> Result<ResNetBenchResult> {
        use crate::model::{Loss, Model, ResNetSpec, ResidualScale, scalar};
        use burn::tensor::{Tensor, TensorData};
        let b = &self.bench;
        let mut cfg = RunConfig::default();
        cfg.model.kind = crate::config::ModelKind::Resnet;
        cfg.model.width = b.width;
        cfg.model.depth = b.blocks;
        cfg.model.activation = Activation::Relu;
        cfg.model.residual_scale = ResidualScale::InvSqrtDepth;
        let spec = ResNetSpec::from_config(&cfg, [3, 32, 32], 10);
        let mut need = crate::train::memory_estimate_for(&cfg, &spec.clone().into(), b.batch);
        need.add("images", (b.batch * 3072) as f64, 4.0);
        need.check("this benchmark", "lower --width or --batch")?;
        let mut model = Model::<B::InnerBackend>::init(spec, 0, &device);
        let x: Vec<f32> =
            crate::rng::normals(&mut crate::rng::stream(0, crate::rng::Purpose::Analysis, 1), b.batch * 3072)
                .into_iter()
                .map(|v| v as f32)
                .collect();
        let y: Vec<f32> = (0..b.batch * 10).map(|i| f32::from(u8::from(i % 10 == (i / 10) % 10))).collect();
        let x = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(x, [b.batch, 3072]), &device);
        let y = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(y, [b.batch, 10]), &device);
        let mut opt = crate::train::Optimizer::<B::InnerBackend>::new(cfg.optimizer.clone(), model.params.len());
        let lrs: Vec<f64> = model.info.iter().map(|p| 1e-3 * p.rule.lr_scale).collect();
        let mut times = Vec::new();
        for i in 0..(b.steps + b.warmup) {
            let t0 = Instant::now();
            let (loss, _, grads) = model.gradients(x.clone(), y.clone(), Loss::Mse);
            opt.step(&mut model.params, grads, &lrs);
            std::hint::black_box(scalar(loss));
            if i >= b.warmup {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        let ms = times.iter().sum::<f64>() / times.len().max(1) as f64;
        Ok(ResNetBenchResult {
            framework: "specdyn".into(),
            device: self.device_name,
            width: b.width,
            blocks: b.blocks,
            batch: b.batch,
            threads: rayon::current_num_threads(),
            ms_per_step: ms,
            images_per_s: b.batch as f64 / (ms / 1e3),
        })
    }
}
