//! Deep linear networks in the proportional limit next to trained runs: one run config
//! (`model.proportional = true`, linear φ, linear teacher) both trains the network
//! (`specdyn train`) and fixes the DMFT of [`crate::theory::linear`], which `specdyn compare`
//! puts next to the runs' loss curves — or, with C = χD outputs, the one-step law of
//! [`crate::theory::extensive`] ([`extensive_problem`], `specdyn theory extensive CONFIG`).
//!
//! The map (the convention is [`crate::model::param`]'s proportional one): ν = N/D,
//! α = P/D (online: B/D with B the batch size), γ₀ = `model.gamma0`, η₀ = `optimizer.lr`,
//! L = `model.depth`, label noise σ_ε² = `data.noise`², μP or NTK. The run logs the test loss on
//! noisy targets, the DMFT the excess risk ½|e|², so the comparison adds σ_ε²/2 to the theory's.
//!
//! Output tables of [`compare_linear`] (long format):
//!
//! | file | columns |
//! |---|---|
//! | `loss.csv` | step, width, seeds, loss (`train`/`test`), run_mean, run_se, theory, rel_gap, se_gap |
//! | `summary.csv` | width, seeds, max_train_gap, max_test_gap (relative, over steps whose predicted loss is above 1% of its start) |

use crate::config::{DataKind, ModelKind, OptimizerKind, RunConfig, Schedule};
use crate::error::{Error, Result};
use crate::model::{Activation, Parameterization};
use crate::report::{Figure, Panel, Series, save_figure};
use crate::rundir::RunDir;
use crate::theory::linear::{LinearCurves, LinearNet, Parameterization as LinearParameterization};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Whether a run config is a linear network in the proportional convention (the deep-linear
/// DMFT's domain) rather than the μP DMFT's.
pub fn is_linear_config(cfg: &RunConfig) -> bool {
    cfg.model.proportional && cfg.model.activation == Activation::Linear
}

/// The deep-linear DMFT problem a run config describes (see the module docs); an error naming
/// the setting when the theory does not cover it.
pub fn linear_problem(cfg: &RunConfig) -> Result<LinearNet> {
    let unsupported = |what: String| {
        Error::config(
            format!("the deep-linear DMFT does not describe {what}"),
            "use model.kind = \"mlp\", activation \"linear\", model.proportional = true, no biases, init_variance = 1, \
             data.kind = \"linear\" (hermite [0, 1]), plain SGD with a constant rate, full batch or online",
        )
    };
    let (m, d, o) = (&cfg.model, &cfg.data, &cfg.optimizer);
    if m.kind != ModelKind::Mlp || m.activation != Activation::Linear || !m.proportional {
        return Err(unsupported("this model (it needs a linear MLP with model.proportional = true)".into()));
    }
    if m.bias || (m.init_variance - 1.0).abs() > 1e-12 {
        return Err(unsupported("biases or an initial variance other than 1".into()));
    }
    if d.kind != DataKind::Linear || d.hermite_coefficients() != [0.0, 1.0] {
        return Err(unsupported("this teacher (it needs data.kind = \"linear\", hermite [0, 1])".into()));
    }
    if o.kind != OptimizerKind::Sgd || o.momentum != 0.0 || o.schedule != Schedule::Constant || o.warmup_steps > 0 {
        return Err(unsupported("this optimizer".into()));
    }
    let full_batch = cfg.train.batch_size == 0 || cfg.train.batch_size >= d.train_size;
    if !d.online && !full_batch {
        return Err(unsupported("minibatches of a fixed dataset".into()));
    }
    if d.online && cfg.train.batch_size == 0 {
        return Err(unsupported("online data without a batch size".into()));
    }
    let dim = d.input_dim as f64;
    let samples = if d.online { cfg.train.batch_size } else { d.train_size };
    Ok(LinearNet {
        depth: m.depth,
        nu: m.width as f64 / dim,
        alpha: samples as f64 / dim,
        gamma0: m.gamma0,
        eta0: o.lr,
        parameterization: match m.parameterization {
            Parameterization::Ntk => LinearParameterization::Ntk,
            _ => LinearParameterization::Mup,
        },
        label_noise: d.noise * d.noise,
        online: d.online,
    })
}

/// The one-step extensive-output law ([`crate::theory::extensive`], paper §5, App. F) a run
/// config describes: a linear network of `model.depth` hidden layers (μP, proportional
/// convention) with a linear multi-output teacher and no label noise; ν = N/D, χ = C/D, γ₀, η₀.
/// The law is that of W^ℓ(1)ᵀW^ℓ(1)/N after the first GD step on the population loss, here for
/// the last hidden layer ℓ = L − 1; a run of P samples takes the step with Σ̂ = XᵀX/P in place
/// of I (tests `one_step_of_specdyn_train_is_the_laws_update`, `…_deeper_network…`).
pub fn extensive_problem(cfg: &RunConfig) -> Result<crate::theory::extensive::DeepOneStep> {
    let unsupported = |what: &str| {
        Error::config(
            format!("the one-step extensive-output law does not describe {what}"),
            "use a linear MLP with parameterization \"mup\", model.proportional = true, \
             init_variance = 1, no biases, data.kind = \"multi-output\" with hermite [0, 1] and no noise, plain SGD",
        )
    };
    let (m, d, o) = (&cfg.model, &cfg.data, &cfg.optimizer);
    if m.kind != ModelKind::Mlp || m.activation != Activation::Linear || !m.proportional {
        return Err(unsupported("this model"));
    }
    if m.parameterization != Parameterization::Mup || m.bias || (m.init_variance - 1.0).abs() > 1e-12 {
        return Err(unsupported("this parameterization, biases or initial variance"));
    }
    if d.kind != DataKind::MultiOutput || d.hermite_coefficients() != [0.0, 1.0] || d.noise != 0.0 {
        return Err(unsupported("this teacher"));
    }
    if o.kind != OptimizerKind::Sgd || o.momentum != 0.0 || o.warmup_steps > 0 {
        return Err(unsupported("this optimizer"));
    }
    let dim = d.input_dim as f64;
    let step = crate::theory::extensive::OneStep {
        nu: m.width as f64 / dim,
        chi: cfg.output_dim() as f64 / dim,
        gamma0: m.gamma0,
        eta0: o.lr,
    };
    Ok(crate::theory::extensive::DeepOneStep { step, layers: m.depth, layer: m.depth - 1 })
}

/// The curves a run logs, from the DMFT's: the test loss on noisy targets adds σ_ε²/2.
pub fn as_logged(net: &LinearNet, theory: &LinearCurves) -> LinearCurves {
    LinearCurves { train: theory.train.clone(), test: theory.test.iter().map(|t| t + net.label_noise / 2.0).collect() }
}

/// Seed mean and standard error at every step of the train and test curves.
pub fn seed_mean_se(runs: &[LinearCurves]) -> [(Vec<f64>, Vec<f64>); 2] {
    let stat = |get: &dyn Fn(&LinearCurves) -> &Vec<f64>| {
        let t = runs.iter().map(|r| get(r).len()).min().unwrap_or(0);
        let k = runs.len() as f64;
        let mean: Vec<f64> = (0..t).map(|i| runs.iter().map(|r| get(r)[i]).sum::<f64>() / k).collect();
        let se = (0..t)
            .map(|i| {
                let var = runs.iter().map(|r| (get(r)[i] - mean[i]).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
                (var / k).sqrt()
            })
            .collect();
        (mean, se)
    };
    [stat(&|r| &r.train), stat(&|r| &r.test)]
}

/// A run's logged train and test loss at every step 0..=T (metrics.csv).
fn read_curves(dir: &Path, steps: usize) -> Result<LinearCurves> {
    let run = RunDir::new(dir);
    let path = run.metrics_path();
    let hint = "re-run `specdyn train` with train.log_every = 1";
    let mut r = csv::Reader::from_path(&path).map_err(|e| Error::data(&path, e.to_string(), hint))?;
    let head: Vec<String> =
        r.headers().map_err(|e| Error::data(&path, e.to_string(), hint))?.iter().map(String::from).collect();
    let col = |name: &str| {
        head.iter().position(|h| h == name).ok_or_else(|| Error::data(&path, format!("has no column '{name}'"), hint))
    };
    let (cs, ctr, cte) = (col("step")?, col("train_loss")?, col("test_loss")?);
    let mut curves = LinearCurves { train: vec![f64::NAN; steps + 1], test: vec![f64::NAN; steps + 1] };
    for rec in r.records() {
        let rec = rec.map_err(|e| Error::data(&path, e.to_string(), hint))?;
        let num = |c: usize| rec.get(c).and_then(|s| s.parse::<f64>().ok());
        if let (Some(t), Some(tr), Some(te)) = (num(cs), num(ctr), num(cte))
            && (t as usize) <= steps
        {
            (curves.train[t as usize], curves.test[t as usize]) = (tr, te);
        }
    }
    if curves.train.iter().chain(&curves.test).any(|v| !v.is_finite()) {
        return Err(Error::data(&path, "does not log train and test loss at every step", hint));
    }
    Ok(curves)
}

/// Write each (file name, CSV text) into `out` atomically; the paths written.
fn write_tables(out: &Path, tables: &[(&str, &String)]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for (name, text) in tables {
        let path = out.join(name);
        crate::checkpoint::atomic_write(&path, text.as_bytes())?;
        files.push(path);
    }
    Ok(files)
}

/// The largest relative gap |run − theory|/theory over steps whose theory is above 1% of its
/// start.
fn max_gap(theory: &[f64], run: &[f64]) -> f64 {
    theory
        .iter()
        .zip(run)
        .filter(|(th, _)| **th > 0.01 * theory[0])
        .map(|(th, r)| (r - th).abs() / th)
        .fold(0.0, f64::max)
}

/// `specdyn compare` for runs of one proportional linear config at one or more widths: the
/// DMFT at each width's ν against the seed mean of the runs' loss curves.
pub fn compare_linear(runs: &[PathBuf], out: &Path, quiet: bool) -> Result<Vec<PathBuf>> {
    // Runs share a theory when their networks agree beyond the width ratio ν (model and data
    // seeds, and D and P at fixed ratios, may differ), and their horizon.
    let mut by_width: BTreeMap<(usize, usize), Vec<(PathBuf, RunConfig)>> = BTreeMap::new();
    let mut shared: Option<(LinearNet, u64)> = None;
    for dir in runs {
        let cfg = RunDir::new(dir).read_config()?;
        let key = (LinearNet { nu: 0.0, ..linear_problem(&cfg)? }, cfg.train.steps);
        match &shared {
            Some(k) if *k != key => {
                return Err(Error::config(
                    format!(
                        "{} describes another network than the first run (α, γ₀, η₀, depth, noise, online or steps differ)",
                        dir.display()
                    ),
                    "compare runs of one setting: widths, D and P at fixed ratios, and seeds may differ",
                ));
            }
            _ => shared = Some(key),
        }
        by_width.entry((cfg.model.width, cfg.data.input_dim)).or_default().push((dir.clone(), cfg));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io("create directory", out, e))?;
    let mut loss_csv = String::from("step,width,seeds,loss,run_mean,run_se,theory,rel_gap,se_gap\n");
    let mut summary = String::from("width,seeds,max_train_gap,max_test_gap\n");
    let (mut train_panel, mut test_panel) = (Vec::new(), Vec::new());
    if !quiet {
        println!("{:>7} {:>6} {:>15} {:>15}", "width", "seeds", "max train gap", "max test gap");
    }
    for (k, ((width, _), group)) in by_width.iter().enumerate() {
        let cfg = &group[0].1;
        let steps = cfg.train.steps as usize;
        let net = linear_problem(cfg)?;
        let theory = as_logged(&net, &net.solve(steps));
        let curves: Vec<LinearCurves> = group.iter().map(|(d, _)| read_curves(d, steps)).collect::<Result<_>>()?;
        let [(train, train_se), (test, test_se)] = seed_mean_se(&curves);
        let seeds = group.len();
        for (name, th, mean, se) in
            [("train", &theory.train, &train, &train_se), ("test", &theory.test, &test, &test_se)]
        {
            for t in 0..=steps {
                let gap = mean[t] - th[t];
                let _ = writeln!(
                    loss_csv,
                    "{t},{width},{seeds},{name},{:e},{:e},{:e},{:e},{:e}",
                    mean[t],
                    se[t],
                    th[t],
                    gap / th[t],
                    gap / se[t]
                );
            }
        }
        let (gtr, gte) = (max_gap(&theory.train, &train), max_gap(&theory.test, &test));
        let _ = writeln!(summary, "{width},{seeds},{gtr:.6},{gte:.6}");
        if !quiet {
            println!("{width:>7} {seeds:>6} {:>14.2}% {:>14.2}%", 100.0 * gtr, 100.0 * gte);
        }
        let every = (steps / 20).max(1);
        for (panel, th, mean, se) in
            [(&mut train_panel, &theory.train, &train, &train_se), (&mut test_panel, &theory.test, &test, &test_se)]
        {
            panel.push(Series {
                label: format!("DMFT ν = {:.3}", net.nu),
                points: th.iter().enumerate().map(|(t, v)| (t as f64, *v)).collect(),
                color: k,
                ..Default::default()
            });
            let idx: Vec<usize> = (0..=steps).filter(|t| t % every == 0).collect();
            panel.push(Series {
                label: format!("N = {width} ({seeds} seeds)"),
                points: idx.iter().map(|&t| (t as f64, mean[t])).collect(),
                y_err: idx.iter().map(|&t| se[t]).collect(),
                color: k,
                markers: true,
                ..Default::default()
            });
        }
    }
    let mut files = write_tables(out, &[("loss.csv", &loss_csv), ("summary.csv", &summary)])?;
    let panel = |title: &str, series| Panel {
        title: title.into(),
        x_label: "step".into(),
        y_label: "loss".into(),
        log_y: true,
        series,
        legend_right: true,
        ..Default::default()
    };
    let fig = Figure {
        title: "Deep linear DMFT (proportional limit) vs trained networks".into(),
        panels: vec![panel("train loss", train_panel), panel("test loss", test_panel)],
        columns: 2,
        panel_size: (700, 460),
    };
    files.extend(save_figure(&fig, &out.join("compare-linear"))?);
    Ok(files)
}

/// Learning-rate transfer from theory next to a sweep: for every (parameterization, width) of
/// a `specdyn sweep` of proportional linear networks, the DMFT's final test loss after T steps
/// on a fine η₀ grid against the cells' (mean ± standard error over seeds), the optimal η₀ of
/// each, and the largest stable η₀ (final test loss below the initial one; the DMFT, exact in
/// the limit, diverges past it like the runs). Files: `lr-transfer.csv` (parameterization,
/// width, nu, source `theory`/`runs`, eta0, test_loss, test_se, seeds, diverged) and
/// `lr-summary.csv` (parameterization, width, nu, theory_optimal_eta0, runs_optimal_eta0,
/// theory_max_stable_eta0, runs_max_stable_eta0), and `lr-transfer.png`.
pub fn compare_sweep(root: &Path, out: &Path, quiet: bool) -> Result<Vec<PathBuf>> {
    use crate::sweep::{SweepDir, report};
    let dir = SweepDir::new(root);
    let sweep = dir.read_config()?;
    if !is_linear_config(&sweep.base) {
        return Err(Error::config(
            format!(
                "{}: `specdyn compare SWEEP` (learning-rate transfer from theory) is for sweeps of linear networks with model.proportional = true",
                root.display()
            ),
            "for other sweeps use `specdyn sweep report SWEEP`; compare their runs one config at a time with `specdyn compare RUN…`",
        ));
    }
    let manifest = dir.read_manifest()?;
    let results = report::collect(&dir, &manifest.cells);
    // (parameterization, width) → (config, η₀ → final test losses, diverged count).
    type Group = (RunConfig, BTreeMap<u64, (f64, Vec<f64>, usize)>);
    let mut groups: BTreeMap<(String, usize), Group> = BTreeMap::new();
    for r in &results {
        let cfg = sweep.cell_config(&r.cell)?;
        linear_problem(&cfg)?;
        let key = (cfg.model.parameterization.name().to_string(), cfg.model.width);
        let lr = cfg.optimizer.lr;
        let entry = groups.entry(key).or_insert_with(|| (cfg.clone(), BTreeMap::new()));
        let at = entry.1.entry(lr.to_bits()).or_insert((lr, Vec::new(), 0));
        match (r.state, r.final_test_loss) {
            (crate::sweep::CellState::Diverged, _) => at.2 += 1,
            (crate::sweep::CellState::Completed, Some(l)) if l.is_finite() => at.1.push(l),
            _ => {}
        }
    }
    if groups.is_empty() {
        return Err(Error::config(
            format!("{} has no cells", root.display()),
            "run `specdyn sweep CONFIG --out DIR` first",
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io("create directory", out, e))?;
    let mut table = String::from("parameterization,width,nu,source,eta0,test_loss,test_se,seeds,diverged\n");
    let mut summary = String::from(
        "parameterization,width,nu,theory_optimal_eta0,runs_optimal_eta0,theory_max_stable_eta0,runs_max_stable_eta0\n",
    );
    let mut panels: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    if !quiet {
        println!(
            "{:<5} {:>6} {:>6} {:>16} {:>16} {:>18} {:>18}",
            "par", "width", "ν", "optimal η₀ DMFT", "optimal η₀ runs", "max stable DMFT", "max stable runs"
        );
    }
    for (k, ((par, width), (cfg, cells))) in groups.iter().enumerate() {
        let base = linear_problem(cfg)?;
        let steps = cfg.train.steps as usize;
        let lrs: Vec<f64> = cells.values().map(|c| c.0).collect();
        let (lo, hi) = (lrs.iter().cloned().fold(f64::MAX, f64::min), lrs.iter().cloned().fold(0.0, f64::max));
        // The theory on a grid 8 points per factor 2, from half the smallest rate to twice the largest.
        let points = ((4.0 * hi / lo).log2() * 8.0).ceil() as usize + 1;
        let grid: Vec<f64> =
            (0..points).map(|i| lo / 2.0 * (4.0 * hi / lo).powf(i as f64 / (points - 1) as f64)).collect();
        let theory: Vec<(f64, f64)> = grid
            .iter()
            .map(|&eta0| {
                let net = LinearNet { eta0, ..base };
                let curves = as_logged(&net, &net.solve(steps));
                (eta0, *curves.test.last().unwrap_or(&f64::NAN))
            })
            .collect();
        let start = as_logged(&base, &base.solve(0)).test[0];
        let stable = |l: f64| l.is_finite() && l < start;
        let optimum = |xs: &[(f64, f64)]| {
            xs.iter().filter(|x| stable(x.1)).min_by(|a, b| a.1.total_cmp(&b.1)).map(|x| x.0).unwrap_or(f64::NAN)
        };
        let max_stable =
            |xs: &[(f64, f64)]| xs.iter().take_while(|x| stable(x.1)).last().map(|x| x.0).unwrap_or(f64::NAN);
        for (eta0, l) in &theory {
            let _ = writeln!(table, "{par},{width},{},theory,{eta0:e},{l:e},,,", base.nu);
        }
        let mut runs = Vec::new();
        let mut errs = Vec::new();
        for (eta0, losses, diverged) in cells.values() {
            let n = losses.len();
            let mean = if n > 0 && *diverged == 0 { losses.iter().sum::<f64>() / n as f64 } else { f64::INFINITY };
            let se = if n > 1 {
                (losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / ((n - 1) * n) as f64).sqrt()
            } else {
                f64::NAN
            };
            let _ = writeln!(table, "{par},{width},{},runs,{eta0:e},{mean:e},{se:e},{n},{diverged}", base.nu);
            runs.push((*eta0, mean));
            errs.push(se);
        }
        let (t_opt, r_opt, t_max, r_max) = (optimum(&theory), optimum(&runs), max_stable(&theory), max_stable(&runs));
        let _ = writeln!(summary, "{par},{width},{},{t_opt:e},{r_opt:e},{t_max:e},{r_max:e}", base.nu);
        if !quiet {
            println!("{par:<5} {width:>6} {:>6.2} {t_opt:>16.4} {r_opt:>16.4} {t_max:>18.4} {r_max:>18.4}", base.nu);
        }
        let series = panels.entry(par.clone()).or_default();
        let finite = |xs: &[(f64, f64)]| xs.iter().filter(|x| x.1.is_finite() && x.1 < 1e3 * start).cloned().collect();
        series.push(Series {
            label: format!("DMFT ν = {:.3}", base.nu),
            points: finite(&theory),
            color: k,
            ..Default::default()
        });
        let shown: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].1.is_finite()).collect();
        series.push(Series {
            label: format!("N = {width}"),
            points: shown.iter().map(|&i| runs[i]).collect(),
            y_err: shown.iter().map(|&i| if errs[i].is_finite() { errs[i] } else { 0.0 }).collect(),
            color: k,
            markers: true,
            ..Default::default()
        });
    }
    let mut files = write_tables(out, &[("lr-transfer.csv", &table), ("lr-summary.csv", &summary)])?;
    let fig = Figure {
        title: "Learning-rate transfer: deep-linear DMFT (lines) vs a sweep of trained networks (points)".into(),
        panels: panels
            .into_iter()
            .map(|(par, series)| Panel {
                title: format!("{par}: test loss after T steps"),
                x_label: "η₀".into(),
                y_label: "final test loss".into(),
                log_x: true,
                log_y: true,
                series,
                legend_right: true,
                ..Default::default()
            })
            .collect(),
        columns: 2,
        panel_size: (700, 460),
    };
    files.extend(save_figure(&fig, &out.join("lr-transfer"))?);
    Ok(files)
}
