//! The μP DMFT prediction for one run config, as tables that are cached next to a run.
//!
//! Files (all CSV, long format for pandas), in a `theory/` directory:
//!
//! | file | columns |
//! |---|---|
//! | `key.toml` | the theory-relevant config and solver options (the cache key) |
//! | `loss.csv` | step, train_loss, stderr |
//! | `outliers.csv` | step, matrix, rank, value, stderr (hidden W^ℓ: normalized singular values, MP edge 2; the first layer `layers.0.weight`: singular values of W⁰/(σ√N) as N → ∞ at fixed D, bulk edge 1; stderr: Monte-Carlo standard error over the replicas, NaN with one) |
//! | `kernels.csv` | step, kernel (`phi1` … `phiL`, `ntk`), i, j, value (P × P at equal times; with C outputs the NTK's mean diagonal block (1/C)Σ_c K_{(μc),(νc)}) |

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::model::Parameterization;
use crate::theory::network::{DmftOptions, DmftSolution, MupProblem, solve_replicas};
use crate::theory::weight_outliers::{first_layer_outliers_at_width, outliers_over_time};
use std::fmt::Write as _;
use std::path::Path;

/// The problem a run config describes: the same data (K^x from the training inputs), depth,
/// activation, γ, η₀, σ², steps and (for minibatch SGD) the run's batch order, which the model
/// seed sets; for online data the very samples the run draws at every step (set by the data
/// seed). The DMFT covers plain (stochastic) gradient descent of an MLP without biases and
/// with C = O(1) outputs (at most [`MAX_OUTPUTS`]), in μP or NTK parameterization (NTK: γ = γ₀/√N).
pub fn mup_problem(cfg: &RunConfig) -> Result<MupProblem> {
    use crate::config::{OptimizerKind, Schedule};
    use crate::error::Error;
    use crate::model::Parameterization;
    let unsupported = |what: &str| {
        Error::config(
            format!("the μP DMFT does not describe {what}"),
            "use plain SGD (no momentum, constant rate; full batch, minibatches, or online data), one output, no biases, μP or NTK",
        )
    };
    if cfg.optimizer.kind != OptimizerKind::Sgd || cfg.optimizer.momentum != 0.0 {
        return Err(unsupported("this optimizer"));
    }
    if cfg.optimizer.schedule != Schedule::Constant || cfg.optimizer.warmup_steps > 0 {
        return Err(unsupported("a learning-rate schedule"));
    }
    if cfg.model.bias {
        return Err(unsupported("biases"));
    }
    if cfg.model.parameterization == Parameterization::Sp {
        return Err(unsupported("the standard parameterization"));
    }
    let data = crate::data::Dataset::from_config(cfg)?;
    let outputs = data.output_dim();
    if outputs > MAX_OUTPUTS {
        return Err(Error::config(
            format!("the μP DMFT is for C = O(1) outputs; this config has {outputs}"),
            format!(
                "use at most {MAX_OUTPUTS} outputs (the solve's memory grows like C²; the extensive-output regime is `specdyn theory extensive`)"
            ),
        ));
    }
    let (xs, ys, d, batches) = match &data.train {
        crate::data::TrainSet::Fixed(crate::data::Samples::Host(train)) => {
            let batches = (cfg.train.batch_size > 0 && cfg.train.batch_size < train.n).then(|| {
                (0..=cfg.train.steps)
                    .map(|t| data.batch_indices(t, cfg.train.batch_size, cfg.seed).unwrap_or_default())
                    .collect()
            });
            (train.x.clone(), train.y.clone(), train.d, batches)
        }
        crate::data::TrainSet::Online => {
            // The samples of steps 0..=T in order: super-index a = tB + μ is sample a.
            let (mut xs, mut ys, mut d) = (Vec::new(), Vec::new(), 0);
            for t in 0..=cfg.train.steps {
                let crate::data::Batch::Samples(b) = data.batch(t, cfg.train.batch_size, cfg.seed) else {
                    return Err(unsupported("online data without a batch size"));
                };
                xs.extend_from_slice(&b.x);
                ys.extend_from_slice(&b.y);
                d = b.d;
            }
            (xs, ys, d, None)
        }
        _ => return Err(unsupported("images")),
    };
    let p = ys.len() / outputs;
    let kx = faer::Mat::from_fn(p, p, |i, j| {
        (0..d).map(|k| xs[i * d + k] as f64 * xs[j * d + k] as f64).sum::<f64>() / d as f64
    });
    let gamma = match cfg.model.parameterization {
        Parameterization::Ntk => cfg.model.gamma0 / (cfg.model.width as f64).sqrt(),
        _ => cfg.model.gamma0,
    };
    Ok(MupProblem {
        depth: cfg.model.depth,
        activation: cfg.model.activation,
        gamma,
        eta0: cfg.optimizer.lr,
        sigma2: cfg.model.init_variance,
        steps: cfg.train.steps as usize,
        kx,
        y: ys.iter().map(|v| *v as f64).collect(),
        outputs,
        batches,
        fresh: cfg.data.online,
    })
}

/// The first layer's input dimension D and the rank r of K^x for a run config (the bulk of
/// W⁰ has D − r directions that training never touches; see `theory::weight_outliers`);
/// r = 0 for online data.
pub fn first_layer_shape(cfg: &RunConfig) -> Result<(usize, usize)> {
    if cfg.data.online {
        // The first-layer law needs a fixed dataset: the theory has no W⁰ outliers here, and
        // compare only needs D to put the runs' W⁰ in the unit W⁰/(σ√N).
        return Ok((cfg.data.input_dim, 0));
    }
    let data = crate::data::Dataset::from_config(cfg)?;
    let crate::data::TrainSet::Fixed(crate::data::Samples::Host(train)) = &data.train else {
        return Err(Error::config(
            "the first-layer theory needs a fixed training set held in memory",
            "use synthetic or array data with data.online = false",
        ));
    };
    let p = mup_problem(cfg)?;
    let rank = crate::theory::weight_outliers::first_layer_spikes(&p.kx, &p.kx, 1.0).len();
    Ok((train.d, rank))
}

/// The most outputs the μP DMFT takes (C = O(1); memory grows like C²).
pub const MAX_OUTPUTS: usize = 16;

/// Memory of a DMFT solve: per layer six order-parameter and kernel matrices (about S·SC each
/// on average, from S × S for Φ to SC × SC for G) and eight samples × SC field arrays,
/// S = P·(T + 1) super-indices, C outputs.
pub fn dmft_memory(problem: &MupProblem, opts: &DmftOptions) -> crate::resources::MemoryEstimate {
    let (s, c) = (problem.size() as f64, problem.outputs as f64);
    let l = problem.depth as f64;
    let mut e = crate::resources::MemoryEstimate::default();
    e.add("order parameters", l * 6.0 * s * s * c * (1.0 + c) / 2.0, 8.0);
    e.add("Monte-Carlo fields", l * 8.0 * opts.samples as f64 * s * c, 8.0);
    e
}

/// Relative eigenvalue cutoff of the outlier compression (see `theory::weight_outliers`);
/// `tests/theory_network.rs` measures its error against the full determinant (< 1e-6
/// relative). On configs/dmft-compare.toml (P = 16, T = 80) it keeps 147 modes instead of 245
/// at 1e-8 and changes no outlier at any step by more than 4.4e-9 (`specdyn bench dmft --p 16
/// --steps 80 --outlier-tol 1e-8` vs `1e-6`, field `outliers`).
pub const OUTLIER_TOL: f64 = 1e-4;

/// Bumped whenever the solver or the outlier computation changes, so old caches are recomputed.
pub const THEORY_REVISION: u32 = 6;

/// Everything the theory predicts for a run config, at every step 0..=T.
#[derive(Clone, Debug)]
pub struct MupPrediction {
    pub key: String,
    pub p: usize,
    pub depth: usize,
    pub loss: Vec<f64>,
    pub loss_stderr: Vec<f64>,
    /// `kernels[t][k]`: Φ^{k+1} for k < L, then the NTK; each P × P row-major.
    pub kernels: Vec<Vec<Vec<f64>>>,
    /// `outliers[ℓ][t]`: outliers of W^ℓ (ℓ = 0..L−1) after t updates, largest first; for the
    /// hidden W^ℓ normalized singular values (MP edge 2), for the first layer W⁰ singular values
    /// of W⁰/(σ√N) as N → ∞ at fixed D (edge 1; [`MupPrediction::first_layer_at_width`] gives
    /// the finite-N values).
    pub outliers: Vec<Vec<Vec<f64>>>,
    /// `outlier_stderr[ℓ][t][r]`: the Monte-Carlo standard error of `outliers[ℓ][t][r]`
    /// ([`outlier_stderr`]; 0 for an exact solve, NaN with one replica).
    pub outlier_stderr: Vec<Vec<Vec<f64>>>,
}

/// The config and options that determine the prediction, as text. Width and model seed drop
/// out in μP (the limit N → ∞ with fresh weights) — except that the seed orders the minibatches
/// of SGD; checkpoint, spectra and logging settings never matter.
pub fn cache_key(cfg: &RunConfig, opts: &DmftOptions) -> String {
    let mut c = cfg.clone();
    if c.train.batch_size == 0 || c.data.online {
        c.seed = 0;
    }
    if c.model.parameterization == Parameterization::Mup {
        c.model.width = 0;
    }
    c.checkpoint = Default::default();
    c.spectra = Default::default();
    c.train.log_every = 0;
    format!(
        "{}\n[dmft]\nrevision = {THEORY_REVISION}\nsamples = {}\nresponse_samples = {}\nreplicas = {}\nseed = {}\nexact_linear = {}\nresponses = \"{}\"\n",
        c.to_toml(),
        opts.samples,
        opts.response_samples_for(cfg.train.steps as usize),
        opts.replicas,
        opts.seed,
        opts.exact_linear,
        opts.responses.name()
    )
}

impl MupPrediction {
    /// Solve the DMFT for `cfg` and tabulate it; `progress(done, total)` is called per step.
    pub fn compute(cfg: &RunConfig, opts: &DmftOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<Self> {
        let problem = mup_problem(cfg)?;
        dmft_memory(&problem, opts).check(
            "the DMFT solve",
            "lower train.steps, data.train_size or --samples (memory grows like depth × (P·T)² and depth × samples × P·T)",
        )?;
        let total = problem.times()
            * if problem.activation == crate::model::Activation::Linear && opts.exact_linear {
                1
            } else {
                opts.replicas.max(1)
            };
        let steps: Vec<usize> = (0..problem.times()).collect();
        let mut per_replica = Vec::new();
        let sol = solve_replicas(&problem, opts, &mut |done| progress(done, total), &mut |one| {
            if opts.replicas > 1 && one.replicas == 1 {
                per_replica.push(all_outliers(one, &steps));
            }
        });
        let mut pred = Self::from_solution(&sol, cache_key(cfg, opts));
        pred.outlier_stderr = outlier_stderr(&pred.outliers, &per_replica, sol.replicas);
        Ok(pred)
    }

    /// The tables of one solution (outlier standard errors 0 when exact, else NaN: see
    /// [`MupPrediction::compute`] for the replica estimate).
    pub fn from_solution(sol: &DmftSolution, key: String) -> Self {
        let pr = &sol.problem;
        let (p, depth) = (pr.p(), pr.depth);
        let flat = |m: faer::Mat<f64>| (0..p * p).map(|k| m[(k / p, k % p)]).collect::<Vec<f64>>();
        // The NTK over (μ, c) is PC × PC; the table keeps the mean of its C diagonal blocks.
        let k = pr.outputs;
        let ntk = |t: usize| {
            let full = sol.ntk_at(t);
            faer::Mat::from_fn(p, p, |i, j| (0..k).map(|c| full[(i * k + c, j * k + c)]).sum::<f64>() / k as f64)
        };
        let kernels = (0..pr.times())
            .map(|t| (1..=depth).map(|l| flat(sol.phi_at(l, t))).chain(std::iter::once(flat(ntk(t)))).collect())
            .collect();
        let steps: Vec<usize> = (0..pr.times()).collect();
        let outliers = all_outliers(sol, &steps);
        let outlier_stderr = outlier_stderr(&outliers, &[], sol.replicas);
        MupPrediction {
            key,
            p,
            depth,
            loss: sol.loss(),
            loss_stderr: sol.loss_stderr.clone(),
            kernels,
            outliers,
            outlier_stderr,
        }
    }

    pub fn steps(&self) -> usize {
        self.loss.len() - 1
    }

    /// Name of the k-th kernel in `kernels[t]`.
    pub fn kernel_name(&self, k: usize) -> String {
        if k < self.depth { format!("phi{}", k + 1) } else { "ntk".to_string() }
    }

    /// The name of W^ℓ's tensor in checkpoints and spectra (`layers.ℓ.weight`).
    pub fn matrix_name(layer: usize) -> String {
        format!("layers.{layer}.weight")
    }

    /// The first-layer outliers at step t for a network of width N with input dimension D and
    /// K^x of rank r: the DMFT's spike strengths θ = (value)² through the finite-N laws
    /// ([`first_layer_outliers_at_width`]), each standard error carried through the same map.
    /// Singular values of W⁰/(σ√N), largest first.
    pub fn first_layer_at_width(&self, t: usize, width: usize, input_dim: usize, rank: usize) -> Vec<(f64, f64)> {
        let map = |v: f64| first_layer_outliers_at_width(&[v * v], width, input_dim, rank).first().copied();
        self.outliers[0][t]
            .iter()
            .zip(&self.outlier_stderr[0][t])
            .filter_map(|(&v, &se)| {
                let m = map(v)?;
                let se = match (map(v + se), map(v - se)) {
                    (Some(hi), Some(lo)) if se.is_finite() => 0.5 * (hi - lo),
                    (Some(hi), None) if se.is_finite() => hi - m,
                    _ => se,
                };
                Some((m, se))
            })
            .collect()
    }

    /// Write the tables into `dir` (each file atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        let mut loss = String::from("step,train_loss,stderr\n");
        for (t, (l, s)) in self.loss.iter().zip(&self.loss_stderr).enumerate() {
            let _ = writeln!(loss, "{t},{l:e},{s:e}");
        }
        let mut out = String::from("step,matrix,rank,value,stderr\n");
        for (k, per_t) in self.outliers.iter().enumerate() {
            for (t, vals) in per_t.iter().enumerate() {
                for (r, v) in vals.iter().enumerate() {
                    let se = self.outlier_stderr[k][t][r];
                    let _ = writeln!(out, "{t},{},{},{v:e},{se:e}", Self::matrix_name(k), r + 1);
                }
            }
        }
        let mut ker = String::from("step,kernel,i,j,value\n");
        for (t, ks) in self.kernels.iter().enumerate() {
            for (k, m) in ks.iter().enumerate() {
                let name = self.kernel_name(k);
                for (idx, v) in m.iter().enumerate() {
                    let _ = writeln!(ker, "{t},{name},{},{},{v:e}", idx / self.p, idx % self.p);
                }
            }
        }
        use crate::checkpoint::atomic_write;
        atomic_write(&dir.join("loss.csv"), loss.as_bytes())?;
        atomic_write(&dir.join("outliers.csv"), out.as_bytes())?;
        atomic_write(&dir.join("kernels.csv"), ker.as_bytes())?;
        // The key goes last: a cache is only valid once it is there.
        atomic_write(&dir.join("key.toml"), self.key.as_bytes())
    }

    /// Read a cache written by [`MupPrediction::write`] if its key is `key`; `Ok(None)` when
    /// there is none or it belongs to another config, an error when it is corrupt.
    pub fn read_cached(dir: &Path, key: &str, p: usize, depth: usize) -> Result<Option<Self>> {
        match std::fs::read_to_string(dir.join("key.toml")) {
            Ok(k) if k == key => {}
            _ => return Ok(None),
        }
        let corrupt =
            |path: &Path, what: String| Error::data(path, what, "delete the theory/ directory to recompute it");
        let rows = |name: &str| -> Result<Vec<Vec<String>>> {
            let path = dir.join(name);
            let mut r = csv::Reader::from_path(&path).map_err(|e| corrupt(&path, e.to_string()))?;
            r.records()
                .map(|rec| {
                    rec.map(|r| r.iter().map(str::to_string).collect()).map_err(|e| corrupt(&path, e.to_string()))
                })
                .collect()
        };
        let num = |s: &str, file: &str| -> Result<f64> {
            s.parse::<f64>().map_err(|_| corrupt(&dir.join(file), format!("'{s}' is not a number")))
        };
        let mut loss = Vec::new();
        let mut loss_stderr = Vec::new();
        for r in rows("loss.csv")? {
            if r.len() != 3 {
                return Err(corrupt(&dir.join("loss.csv"), "a row does not have 3 fields".into()));
            }
            loss.push(num(&r[1], "loss.csv")?);
            loss_stderr.push(num(&r[2], "loss.csv")?);
        }
        let times = loss.len();
        let mut kernels = vec![vec![vec![f64::NAN; p * p]; depth + 1]; times];
        for r in rows("kernels.csv")? {
            let bad = || corrupt(&dir.join("kernels.csv"), format!("unexpected row {r:?}"));
            if r.len() != 5 {
                return Err(bad());
            }
            let t = r[0].parse::<usize>().map_err(|_| bad())?;
            let k = if r[1] == "ntk" {
                depth
            } else {
                r[1].trim_start_matches("phi").parse::<usize>().map_err(|_| bad())? - 1
            };
            let (i, j) = (r[2].parse::<usize>().map_err(|_| bad())?, r[3].parse::<usize>().map_err(|_| bad())?);
            if t >= times || k > depth || i >= p || j >= p {
                return Err(bad());
            }
            kernels[t][k][i * p + j] = num(&r[4], "kernels.csv")?;
        }
        let mut outliers = vec![vec![Vec::new(); times]; depth];
        let mut outlier_stderr = outliers.clone();
        for r in rows("outliers.csv")? {
            let bad = || corrupt(&dir.join("outliers.csv"), format!("unexpected row {r:?}"));
            if r.len() != 5 {
                return Err(bad());
            }
            let t = r[0].parse::<usize>().map_err(|_| bad())?;
            let layer = r[1].split('.').nth(1).and_then(|s| s.parse::<usize>().ok()).ok_or_else(bad)?;
            if t >= times || layer >= depth {
                return Err(bad());
            }
            outliers[layer][t].push(num(&r[3], "outliers.csv")?);
            outlier_stderr[layer][t].push(num(&r[4], "outliers.csv")?);
        }
        if kernels.iter().flatten().flatten().any(|v| v.is_nan()) {
            return Err(corrupt(&dir.join("kernels.csv"), "some kernel entries are missing".into()));
        }
        Ok(Some(MupPrediction { key: key.to_string(), p, depth, loss, loss_stderr, kernels, outliers, outlier_stderr }))
    }
}

/// The outliers of every weight matrix W⁰ … W^{L−1} at `steps` (index ℓ; see
/// [`MupPrediction::outliers`]).
fn all_outliers(sol: &DmftSolution, steps: &[usize]) -> Vec<Vec<Vec<f64>>> {
    let first = steps.iter().map(|&t| sol.first_layer_outliers(t)).collect();
    std::iter::once(first)
        .chain((1..sol.problem.depth).map(|l| outliers_over_time(sol, l, steps, OUTLIER_TOL)))
        .collect()
}

/// The MP edge of `outliers[ℓ]` at infinite width: 1 for the first layer (W⁰/(σ√N) at fixed
/// D), 2 for the square hidden matrices.
pub fn infinite_width_edge(layer: usize) -> f64 {
    if layer == 0 { 1.0 } else { 2.0 }
}

/// The Monte-Carlo standard error of each outlier of the mean solution: the spread of the same
/// outlier over the `per_replica` solutions (`[replica][ℓ][t]`, largest first) divided by
/// √R. A replica without an r-th outlier at step t contributes the infinite-width edge
/// ([`infinite_width_edge`], its top singular value there), so the error near a BBP time includes the replicas' disagreement
/// about whether the outlier has escaped. `replicas = 0` (an exact solve) gives 0; fewer than
/// two per-replica tables give NaN.
pub fn outlier_stderr(
    outliers: &[Vec<Vec<f64>>],
    per_replica: &[Vec<Vec<Vec<f64>>>],
    replicas: usize,
) -> Vec<Vec<Vec<f64>>> {
    outliers
        .iter()
        .enumerate()
        .map(|(k, per_t)| {
            per_t
                .iter()
                .enumerate()
                .map(|(t, vals)| {
                    (0..vals.len())
                        .map(|r| match (replicas, per_replica.len()) {
                            (0, _) => 0.0,
                            (_, n) if n < 2 => f64::NAN,
                            (_, n) => {
                                let xs: Vec<f64> = per_replica
                                    .iter()
                                    .map(|rep| rep[k][t].get(r).copied().unwrap_or(infinite_width_edge(k)))
                                    .collect();
                                let (_, sd) = crate::report::theory::mean_sd(&xs);
                                sd / (n as f64).sqrt()
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}
