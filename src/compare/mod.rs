//! Theory next to trained runs (`specdyn compare`): the μP DMFT of the runs' config (computed
//! once, cached in each run's `theory/`), against every run's loss, hidden feature kernels and
//! top singular values of every weight matrix, grouped by width (mean ± sd over seeds).
//!
//! Units: the hidden W^ℓ in normalized singular values (MP edge 2 at every width); the first
//! layer W⁰ (N × D) as singular values of W⁰/(σ√N), whose bulk edge 1 + √(D/N) tends to 1, with
//! the theory at each width from the finite-N rectangular law
//! ([`MupPrediction::first_layer_at_width`]) and, in the figure, also its N → ∞ limit.
//!
//! Output tables (long format, one row per step × quantity × width):
//!
//! | file | columns |
//! |---|---|
//! | `loss.csv` | step, width, seeds, run_mean, run_sd, theory, theory_stderr, rel_gap, se_gap |
//! | `alignment.csv` | step, width, seed, kernel, alignment (Φ^ℓ run vs theory, eq. below) |
//! | `outliers.csv` | step, matrix, width, seeds, run_mean, run_sd, theory, theory_stderr, rel_gap, edge_gap, se_gap, mp_edge |
//! | `summary.csv` | width, seeds, max_loss_gap, min_alignment, max_outlier_gap, max_outlier_edge_gap, outlier_steps, outlier_steps_outside |
//!
//! Gaps are theory − run mean, in three units: `rel_gap` relative to the run mean; `edge_gap`
//! relative to the predicted distance above the MP edge (theory − edge: the part of an outlier
//! that training moved, where a 1% relative gap can be a 10% error); `se_gap` in units of the
//! theory's Monte-Carlo standard error (±inf when the theory is exact or has one replica).
//! Kernel alignment A(K, K') = ⟨K, K'⟩_F / (‖K‖_F ‖K'‖_F) (Cortes et al. 2012, uncentered).
//! `max_loss_gap` is over steps where the theory loss is above 1% of its initial value;
//! the outlier columns over steps where the theory predicts an outlier of W^ℓ resolved from the
//! edge (more than [`RESOLVED_FLOOR`] and 3 theory standard errors above it; every step with a
//! prediction is in outliers.csv), with the theory's top outlier compared with the run's top
//! singular value;
//! `outlier_steps_outside` counts those whose gap exceeds both 3 theory standard errors and
//! [`EDGE_TOLERANCE`] of the distance above the edge.

pub mod linear;
pub mod prediction;

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::report::{Figure, Panel, RefLine, Series, save_figure};
use crate::rundir::RunDir;
use crate::theory::network::DmftOptions;
use crate::train::Trainer;
pub use prediction::{MupPrediction, mup_problem};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Φ^ℓ = φ(h^ℓ)φ(h^ℓ)ᵀ/N on the training inputs for ℓ = 1..=L (P × P, row-major): the finite-N
/// counterpart of the DMFT's feature kernels — over the whole fixed training set (also under
/// minibatch SGD, whose theory kernels span all P points), or over the current step's batch
/// for online data (the theory's equal-time block of that step's samples).
pub fn hidden_kernels<B: Kernels>(trainer: &Trainer<B>) -> Vec<Vec<f64>> {
    use crate::data::{Samples, TrainSet};
    let x = match &trainer.data.train {
        TrainSet::Fixed(Samples::Host(train)) => train.to_tensors::<B>(trainer.device()).0,
        _ => trainer.batch().0,
    };
    let act = trainer.config.model.activation;
    trainer
        .model
        .features(x)
        .into_iter()
        .map(|h| {
            let [p, n] = h.dims();
            let h = crate::model::tensor_to_vec(h);
            let f = faer::Mat::from_fn(p, n, |i, j| act.eval(h[i * n + j] as f64));
            let k = &f * f.transpose() * faer::Scale(1.0 / n as f64);
            (0..p * p).map(|idx| k[(idx / p, idx % p)]).collect()
        })
        .collect()
}

/// Uncentered kernel alignment ⟨a, b⟩ / (‖a‖‖b‖).
pub fn alignment(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct RunMeasurement {
    pub dir: PathBuf,
    pub config: RunConfig,
    /// (step, train loss) from metrics.csv.
    pub loss: Vec<(usize, f64)>,
    /// Top singular value of each weight matrix: name → (step, value), and its MP edge (units
    /// in the module docs).
    pub top: BTreeMap<String, Vec<(usize, f64)>>,
    pub mp_edge: BTreeMap<String, f64>,
    /// (step, kernel index ℓ−1, alignment with the theory).
    pub alignment: Vec<(usize, usize, f64)>,
}

fn read_csv_rows(path: &Path, hint: &str) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut r = csv::Reader::from_path(path).map_err(|e| Error::data(path, e.to_string(), hint))?;
    let head: Vec<String> =
        r.headers().map_err(|e| Error::data(path, e.to_string(), hint))?.iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| {
            rec.map(|r| r.iter().map(str::to_string).collect()).map_err(|e| Error::data(path, e.to_string(), hint))
        })
        .collect::<Result<_>>()?;
    Ok((head, rows))
}

fn column(head: &[String], name: &str, path: &Path) -> Result<usize> {
    head.iter().position(|h| h == name).ok_or_else(|| {
        Error::data(path, format!("has no column '{name}'"), "it was not written by this version of specdyn")
    })
}

impl RunMeasurement {
    /// Read a run's metrics and spectra and align its checkpoints' kernels with `theory`.
    pub fn read(dir: &Path, theory: &MupPrediction) -> Result<Self> {
        let run = RunDir::new(dir);
        let config = run.read_config()?;
        let hint = "re-run `specdyn train` (or `specdyn spectra RUN` for spectra.csv)";
        let metrics = run.metrics_path();
        let (head, rows) = read_csv_rows(&metrics, hint)?;
        let (cs, cl) = (column(&head, "step", &metrics)?, column(&head, "train_loss", &metrics)?);
        let parse = |s: &str, path: &Path| -> Result<f64> {
            s.parse::<f64>().map_err(|_| Error::data(path, format!("'{s}' is not a number"), hint))
        };
        let mut loss = Vec::new();
        for r in &rows {
            loss.push((parse(&r[cs], &metrics)? as usize, parse(&r[cl], &metrics)?));
        }
        let spectra = dir.join("spectra.csv");
        if !spectra.exists() {
            return Err(Error::run_dir(dir, "has no spectra.csv", "run `specdyn spectra RUN` first"));
        }
        let (head, rows) = read_csv_rows(&spectra, hint)?;
        let [cm, ck, cst, cr, cv, ce] =
            ["matrix", "kind", "step", "rank", "value", "mp_edge"].map(|c| column(&head, c, &spectra));
        let (cm, ck, cst, cr, cv, ce) = (cm?, ck?, cst?, cr?, cv?, ce?);
        let mut top: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
        let mut mp_edge = BTreeMap::new();
        // spectra.csv normalizes W⁰ (N × D) by σ√D; × √(D/N) gives W⁰/(σ√N).
        let first = MupPrediction::matrix_name(0);
        let (input_dim, _) = prediction::first_layer_shape(&config)?;
        let to_sqrt_n = (input_dim as f64 / config.model.width as f64).sqrt();
        for r in rows.iter().filter(|r| (r[ck] == "hidden" || r[cm] == first) && r[cr] == "1") {
            let unit = if r[cm] == first { to_sqrt_n } else { 1.0 };
            let value = parse(&r[cv], &spectra)? * unit;
            top.entry(r[cm].clone()).or_default().push((parse(&r[cst], &spectra)? as usize, value));
            mp_edge.insert(r[cm].clone(), parse(&r[ce], &spectra)? * unit);
        }
        let mut alignment = Vec::new();
        for (_, path) in run.step_checkpoints() {
            let ckpt = crate::rundir::load_own(&path, &config)?;
            let t = ckpt.step as usize;
            if t > theory.steps() {
                continue;
            }
            let trainer =
                Trainer::<burn::backend::Flex>::from_checkpoint(config.clone(), &ckpt, &path, Default::default())?;
            for (k, kern) in hidden_kernels(&trainer).iter().enumerate() {
                alignment.push((t, k, self::alignment(kern, &theory.kernels[t][k])));
            }
        }
        Ok(RunMeasurement { dir: dir.to_path_buf(), config, loss, top, mp_edge, alignment })
    }
}

/// The prediction for `cfg`: from the first run's cache whose key matches, else computed and
/// cached in every run's `theory/`.
pub fn prediction_for_runs(runs: &[PathBuf], opts: &DmftOptions, quiet: bool) -> Result<MupPrediction> {
    let configs: Vec<RunConfig> = runs.iter().map(|r| RunDir::new(r).read_config()).collect::<Result<_>>()?;
    let key = prediction::cache_key(&configs[0], opts);
    for (r, c) in runs.iter().zip(&configs).skip(1) {
        if prediction::cache_key(c, opts) != key {
            return Err(Error::config(
                format!("{} has a different config from {} (beyond width and seed)", r.display(), runs[0].display()),
                "compare runs of one config at several widths and seeds (with minibatches the seed sets the batch order: one seed at a time); run `specdyn compare` once per config",
            ));
        }
    }
    let p = configs[0].data.train_size;
    let depth = configs[0].model.depth;
    for r in runs {
        if let Some(pred) = MupPrediction::read_cached(&r.join("theory"), &key, p, depth)? {
            if !quiet {
                eprintln!("using the cached theory in {}", r.join("theory").display());
            }
            for other in runs {
                if MupPrediction::read_cached(&other.join("theory"), &key, p, depth).ok().flatten().is_none() {
                    pred.write(&other.join("theory"))?;
                }
            }
            return Ok(pred);
        }
    }
    let pred = compute_with_bar(&configs[0], opts, quiet)?;
    for r in runs {
        pred.write(&r.join("theory"))?;
    }
    Ok(pred)
}

/// Solve the DMFT with progress: a bar on a terminal, plain lines (step, ETA) in a log.
pub fn compute_with_bar(cfg: &RunConfig, opts: &DmftOptions, quiet: bool) -> Result<MupPrediction> {
    let mut bar = crate::progress::bar(0, quiet, "DMFT");
    let t0 = std::time::Instant::now();
    let pred = MupPrediction::compute(cfg, opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if done == total {
            bar.set_message("solved; outliers of every hidden matrix at every step…");
            bar.println(&format!(
                "DMFT solved in {:.1} s; outliers of every hidden matrix at every step…",
                t0.elapsed().as_secs_f64()
            ));
        }
    })?;
    bar.finish();
    if !quiet {
        eprintln!("DMFT and outliers in {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok(pred)
}

/// The outlier gap a comparison accepts without a theory standard error to cover it, as a
/// fraction of the predicted distance above the MP edge.
pub const EDGE_TOLERANCE: f64 = 0.03;

/// A predicted outlier counts in the summaries once it is this far above the edge (and 3 theory
/// standard errors): just after escape its distance to the edge is ~0 and gaps in that unit
/// blow up (they stay in outliers.csv).
pub const RESOLVED_FLOOR: f64 = 0.01;

/// Half-width of a ±2 SE band (0 where the error is unknown).
fn band(se: f64) -> f64 {
    if se.is_finite() { 2.0 * se } else { 0.0 }
}

/// Gap in units of a standard error (±inf for a zero or missing error).
fn in_se(gap: f64, se: f64) -> f64 {
    if se.is_finite() && se > 0.0 { gap / se } else { gap.signum() * f64::INFINITY }
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    crate::report::theory::mean_sd(xs)
}

/// One width's aggregate numbers (a row of summary.csv).
#[derive(Clone, Debug)]
pub struct WidthSummary {
    pub width: usize,
    pub seeds: usize,
    pub max_loss_gap: f64,
    pub min_alignment: f64,
    pub max_outlier_gap: f64,
    /// Largest outlier gap as a fraction of the predicted distance above the MP edge.
    pub max_outlier_edge_gap: f64,
    pub outlier_steps: usize,
    /// Steps whose outlier gap exceeds both 3 theory standard errors and [`EDGE_TOLERANCE`].
    pub outlier_steps_outside: usize,
}

/// Each width's summary with its config's label (empty for a single config).
pub type Summaries = Vec<(String, WidthSummary)>;

/// A measured quantity over steps: (step, value).
type Track = Vec<(usize, f64)>;

/// One config's comparison: its theory, its runs, and the per-width summary.
pub struct Comparison {
    pub theory: MupPrediction,
    pub measured: Vec<RunMeasurement>,
    pub summaries: Vec<WidthSummary>,
    pub files: Vec<PathBuf>,
}

impl WidthSummary {
    /// The columns of a summary.csv row.
    pub const CSV_HEADER: &str = "width,seeds,max_loss_gap,min_alignment,max_outlier_gap,max_outlier_edge_gap,outlier_steps,outlier_steps_outside";

    /// One summary.csv row (no newline).
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{},{}",
            self.width,
            self.seeds,
            self.max_loss_gap,
            self.min_alignment,
            self.max_outlier_gap,
            self.max_outlier_edge_gap,
            self.outlier_steps,
            self.outlier_steps_outside
        )
    }
}

/// Compare `runs` with their theory; write tables and figures into `out`. Runs of several
/// configs (a σ² or γ₀ scan, …) are compared one config at a time into `out/<what differs>/`,
/// with the scan figure and summary in `out` ([`compare_scan`]). Returns each width's summary
/// with its config's label (empty for a single config).
pub fn compare(runs: &[PathBuf], out: &Path, opts: &DmftOptions, quiet: bool) -> Result<(Summaries, Vec<PathBuf>)> {
    if runs.is_empty() {
        return Err(Error::config(
            "no run directories given",
            "e.g. specdyn compare runs/cmp/N1024-s0 runs/cmp/N4096-s0",
        ));
    }
    let groups = group_by_config(runs, opts)?;
    // Every config must have a theory before anything is solved or written.
    for (_, g) in &groups {
        prediction::mup_problem(&RunDir::new(&g[0]).read_config()?)?;
    }
    if groups.len() == 1 {
        let c = compare_one(runs, out, opts, quiet)?;
        return Ok((c.summaries.into_iter().map(|s| (String::new(), s)).collect(), c.files));
    }
    compare_scan(&groups, out, opts, quiet)
}

/// Runs grouped by the theory they share (their config beyond width and seed), each group
/// labelled by the settings that differ between the groups (`model.init_variance = 0.5`).
pub fn group_by_config(runs: &[PathBuf], opts: &DmftOptions) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut groups: Vec<(String, Vec<PathBuf>)> = Vec::new();
    for r in runs {
        let key = prediction::cache_key(&RunDir::new(r).read_config()?, opts);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(r.clone()),
            None => groups.push((key, vec![r.clone()])),
        }
    }
    let settings: Vec<Vec<String>> = groups.iter().map(|(k, _)| qualified_lines(k)).collect();
    Ok(groups
        .into_iter()
        .zip(&settings)
        .map(|((_, g), mine)| {
            let differing: Vec<&str> =
                mine.iter().filter(|l| !settings.iter().all(|o| o.contains(l))).map(String::as_str).collect();
            (differing.join(", "), g)
        })
        .collect())
}

/// `section.key = value` for every setting of a TOML text (tables as prefixes).
fn qualified_lines(toml_text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in toml_text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if section.is_empty() {
            out.push(line.to_string());
        } else {
            out.push(format!("{section}.{line}"));
        }
    }
    out
}

/// A directory name for a scan label: `model.init_variance = 0.5` → `model.init_variance=0.5`.
pub fn label_dir(label: &str) -> String {
    let s: String = label
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if c.is_ascii_alphanumeric() || "._=-".contains(c) { c } else { '_' })
        .collect();
    if s.is_empty() { "config".into() } else { s }
}

/// Each config of a scan compared on its own into `out/<label>/`, then the scan figure (every
/// config's theory next to its widest runs, one panel per quantity) and `scan-summary.csv` (the
/// per-width summaries with a `config` column) in `out`.
pub fn compare_scan(
    groups: &[(String, Vec<PathBuf>)],
    out: &Path,
    opts: &DmftOptions,
    quiet: bool,
) -> Result<(Summaries, Vec<PathBuf>)> {
    let depths: Vec<usize> =
        groups.iter().map(|(_, g)| RunDir::new(&g[0]).read_config().map(|c| c.model.depth)).collect::<Result<_>>()?;
    if depths.iter().any(|d| *d != depths[0]) {
        return Err(Error::config(
            "the runs have networks of different depths",
            "a scan compares one architecture at several settings; run `specdyn compare` once per depth",
        ));
    }
    let mut all = Vec::new();
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for (label, runs) in groups {
        if !quiet {
            eprintln!("== {label} ({} runs)", runs.len());
        }
        let c = compare_one(runs, &out.join(label_dir(label)), opts, quiet)?;
        files.extend(c.files.iter().cloned());
        all.extend(c.summaries.iter().map(|s| (label.clone(), s.clone())));
        entries.push((label.clone(), c));
    }
    let mut csv = format!("config,{}\n", WidthSummary::CSV_HEADER);
    for (label, s) in &all {
        let _ = writeln!(csv, "\"{label}\",{}", s.csv_row());
    }
    let path = out.join("scan-summary.csv");
    crate::checkpoint::atomic_write(&path, csv.as_bytes())?;
    files.push(path);
    let scan: Vec<ScanEntry> = entries
        .iter()
        .map(|(label, c)| ScanEntry { label: label.clone(), theory: &c.theory, runs: widest_runs(c) })
        .collect();
    files.extend(scan_figure(&scan, "μP DMFT across settings: theory (bands) and the widest runs (markers)", out)?);
    Ok((all, files))
}

/// The runs of the widest width of a comparison.
fn widest_runs(c: &Comparison) -> Vec<&RunMeasurement> {
    let widest = c.measured.iter().map(|m| m.config.model.width).max().unwrap_or(0);
    c.measured.iter().filter(|m| m.config.model.width == widest).collect()
}

/// One setting of a scan: its theory and (for `compare`) the runs drawn next to it.
pub struct ScanEntry<'a> {
    pub label: String,
    pub theory: &'a MupPrediction,
    pub runs: Vec<&'a RunMeasurement>,
}

/// `theory-scan.png/svg`: the loss and the top outlier of every weight matrix against the step,
/// one color per setting; theory as ±2 SE bands (for W⁰ at the runs' width when there are runs,
/// else N → ∞), runs as the mean over seeds with markers.
pub fn scan_figure(entries: &[ScanEntry<'_>], title: &str, out: &Path) -> Result<Vec<PathBuf>> {
    let depth = entries.first().map(|e| e.theory.depth).unwrap_or(0);
    let mut loss = Panel {
        title: "train loss".into(),
        x_label: "step".into(),
        y_label: "train loss".into(),
        log_y: true,
        legend_right: true,
        ..Default::default()
    };
    let mut panels: Vec<Panel> = (0..depth)
        .map(|k| Panel {
            title: match k {
                0 => "top singular value of W⁰/(σ√N)".into(),
                _ => format!("top singular value of W{k} (normalized)"),
            },
            x_label: "step".into(),
            y_label: "singular value".into(),
            ref_lines: vec![RefLine {
                value: prediction::infinite_width_edge(k),
                label: if k == 0 { "bulk (N → ∞)" } else { "MP edge" }.into(),
                vertical: false,
            }],
            ..Default::default()
        })
        .collect();
    for (color, e) in entries.iter().enumerate() {
        let th = e.theory;
        loss.series.push(Series {
            label: format!("{} (DMFT)", e.label),
            points: th.loss.iter().enumerate().map(|(t, l)| (t as f64, *l)).collect(),
            y_err: th.loss_stderr.iter().map(|s| band(*s)).collect(),
            band: true,
            color,
            ..Default::default()
        });
        let width = e.runs.first().map(|m| m.config.model.width);
        let shape = match e.runs.first() {
            Some(m) => Some(prediction::first_layer_shape(&m.config)?),
            None => None,
        };
        for (k, panel) in panels.iter_mut().enumerate() {
            let (points, y_err): (Vec<(f64, f64)>, Vec<f64>) = (0..th.loss.len())
                .filter_map(|t| {
                    let (v, se) = match (k, width, shape) {
                        (0, Some(n), Some((d, r))) => th.first_layer_at_width(t, n, d, r).first().copied()?,
                        _ => (*th.outliers[k][t].first()?, *th.outlier_stderr[k][t].first()?),
                    };
                    Some(((t as f64, v), band(se)))
                })
                .unzip();
            panel.series.push(Series {
                label: e.label.clone(),
                points,
                y_err,
                band: true,
                color,
                ..Default::default()
            });
        }
        if let Some(n) = width {
            let mean_over = |get: &dyn Fn(&RunMeasurement) -> Option<Track>| -> Vec<(f64, f64)> {
                let per: Vec<Vec<(usize, f64)>> = e.runs.iter().filter_map(|m| get(m)).collect();
                let Some(first) = per.first() else { return Vec::new() };
                first
                    .iter()
                    .filter_map(|(t, _)| {
                        let vals: Vec<f64> =
                            per.iter().filter_map(|v| v.iter().find(|(s, _)| s == t).map(|x| x.1)).collect();
                        (vals.len() == per.len()).then(|| (*t as f64, mean_sd(&vals).0))
                    })
                    .collect()
            };
            loss.series.push(Series {
                label: format!("N = {n}"),
                points: mean_over(&|m| Some(m.loss.clone())),
                color,
                markers: true,
                ..Default::default()
            });
            for (k, panel) in panels.iter_mut().enumerate() {
                let name = MupPrediction::matrix_name(k);
                panel.series.push(Series {
                    label: format!("N = {n}"),
                    points: mean_over(&|m| m.top.get(&name).cloned()),
                    color,
                    markers: true,
                    ..Default::default()
                });
            }
        }
    }
    let mut all = vec![loss];
    all.extend(panels);
    let fig = Figure { title: title.into(), columns: all.len().min(2), panels: all, panel_size: (640, 440) };
    save_figure(&fig, &out.join("theory-scan"))
}

/// Compare the runs of one config with its theory; write tables and figures into `out`.
pub fn compare_one(runs: &[PathBuf], out: &Path, opts: &DmftOptions, quiet: bool) -> Result<Comparison> {
    let theory = prediction_for_runs(runs, opts, quiet)?;
    let measured: Vec<RunMeasurement> = runs.iter().map(|r| RunMeasurement::read(r, &theory)).collect::<Result<_>>()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io("create output directory", out, e))?;

    let mut by_width: BTreeMap<usize, Vec<&RunMeasurement>> = BTreeMap::new();
    for m in &measured {
        by_width.entry(m.config.model.width).or_default().push(m);
    }
    let t_max = theory.steps();
    let floor = 0.01 * theory.loss[0];
    let (mut loss_csv, mut out_csv, mut align_csv) = (
        String::from("step,width,seeds,run_mean,run_sd,theory,theory_stderr,rel_gap,se_gap\n"),
        String::from("step,matrix,width,seeds,run_mean,run_sd,theory,theory_stderr,rel_gap,edge_gap,se_gap,mp_edge\n"),
        String::from("step,width,seed,kernel,alignment\n"),
    );
    let mut summaries = Vec::new();
    let mut loss_series = vec![Series {
        label: "DMFT (N → ∞) ± 2 SE".into(),
        points: theory.loss.iter().enumerate().map(|(t, l)| (t as f64, *l)).collect(),
        color: 0,
        y_err: theory.loss_stderr.iter().map(|s| band(*s)).collect(),
        band: true,
        ..Default::default()
    }];
    let matrices: Vec<String> = (0..theory.depth).map(MupPrediction::matrix_name).collect();
    let (input_dim, input_rank) = prediction::first_layer_shape(&measured[0].config)?;
    let mut outlier_panels: Vec<Panel> = matrices
        .iter()
        .enumerate()
        .map(|(k, name)| Panel {
            title: match k {
                0 => format!("top singular value of W⁰/(σ√N) ({name})"),
                _ => format!("top singular value of W{k} ({name})"),
            },
            x_label: "step".into(),
            y_label: if k == 0 { "singular value / (σ√N)" } else { "normalized singular value" }.into(),
            series: vec![Series {
                label: if k == 0 { "DMFT outlier (N → ∞) ± 2 SE" } else { "DMFT outlier ± 2 SE" }.into(),
                points: theory.outliers[k]
                    .iter()
                    .enumerate()
                    .filter_map(|(t, v)| v.first().map(|x| (t as f64, *x)))
                    .collect(),
                y_err: theory.outlier_stderr[k].iter().filter_map(|v| v.first().map(|s| band(*s))).collect(),
                band: true,
                color: 0,
                ..Default::default()
            }],
            ref_lines: vec![RefLine {
                value: prediction::infinite_width_edge(k),
                label: if k == 0 { "bulk (N → ∞)" } else { "MP edge" }.into(),
                vertical: false,
            }],
            ..Default::default()
        })
        .collect();
    let mut align_series = Vec::new();
    let mut gap_series = Vec::new();
    for (wi, (width, group)) in by_width.iter().enumerate() {
        let color = wi + 1;
        let mut s = WidthSummary {
            width: *width,
            seeds: group.len(),
            max_loss_gap: 0.0,
            min_alignment: f64::INFINITY,
            max_outlier_gap: 0.0,
            max_outlier_edge_gap: 0.0,
            outlier_steps: 0,
            outlier_steps_outside: 0,
        };
        // Loss at the steps every seed logged.
        let steps: Vec<usize> = group[0].loss.iter().map(|(t, _)| *t).filter(|t| *t <= t_max).collect();
        let mut pts = Vec::new();
        let mut errs = Vec::new();
        let mut gaps = Vec::new();
        for t in steps {
            let vals: Vec<f64> =
                group.iter().filter_map(|m| m.loss.iter().find(|(s, _)| *s == t).map(|(_, l)| *l)).collect();
            if vals.len() != group.len() {
                continue;
            }
            let (m, sd) = mean_sd(&vals);
            let gap = (theory.loss[t] - m) / m;
            if theory.loss[t] > floor {
                s.max_loss_gap = s.max_loss_gap.max(gap.abs());
            }
            let se_gap = in_se(theory.loss[t] - m, theory.loss_stderr[t]);
            let _ = writeln!(
                loss_csv,
                "{t},{width},{},{m:e},{sd:e},{:e},{:e},{gap:e},{se_gap:e}",
                vals.len(),
                theory.loss[t],
                theory.loss_stderr[t]
            );
            pts.push((t as f64, m));
            errs.push(sd);
            gaps.push((t as f64, -100.0 * gap));
        }
        gap_series.push(Series { label: format!("N = {width}"), points: gaps, color, ..Default::default() });
        loss_series.push(Series {
            label: format!("N = {width}"),
            points: pts,
            color,
            markers: true,
            y_err: errs,
            ..Default::default()
        });
        // Outliers.
        for (k, name) in matrices.iter().enumerate() {
            let edge = group[0].mp_edge.get(name).copied().unwrap_or(prediction::infinite_width_edge(k));
            // The theory at this width: the DMFT value, or for W⁰ its finite-N rectangular law.
            let predicted = |t: usize| -> (Option<f64>, Option<f64>) {
                match k {
                    0 => {
                        let at = theory.first_layer_at_width(t, *width, input_dim, input_rank);
                        (at.first().map(|x| x.0), at.first().map(|x| x.1))
                    }
                    _ => (theory.outliers[k][t].first().copied(), theory.outlier_stderr[k][t].first().copied()),
                }
            };
            if k == 0 {
                outlier_panels[0].series.push(Series {
                    label: format!("theory at N = {width}"),
                    points: (0..=t_max).filter_map(|t| predicted(t).0.map(|v| (t as f64, v))).collect(),
                    color,
                    dashed: true,
                    ..Default::default()
                });
            }
            let steps: Vec<usize> = group[0]
                .top
                .get(name)
                .map(|v| v.iter().map(|(t, _)| *t).filter(|t| *t <= t_max).collect())
                .unwrap_or_default();
            let (mut pts, mut errs) = (Vec::new(), Vec::new());
            for t in steps {
                let vals: Vec<f64> = group
                    .iter()
                    .filter_map(|m| m.top.get(name).and_then(|v| v.iter().find(|(s, _)| *s == t)).map(|(_, x)| *x))
                    .collect();
                if vals.len() != group.len() {
                    continue;
                }
                let (m, sd) = mean_sd(&vals);
                let (pred, se) = predicted(t);
                let gap = pred.map(|p| (p - m) / m);
                let edge_gap = pred.map(|p| (p - m) / (p - edge));
                let se_gap = pred.zip(se).map(|(p, e)| in_se(p - m, e));
                // Summaries count the steps whose predicted outlier is resolved from the edge
                // (at escape the distance above the edge is ~0 and the edge unit is meaningless).
                let resolved = pred.zip(se).is_some_and(|(p, e)| p - edge > RESOLVED_FLOOR.max(3.0 * e.max(0.0)));
                if let (Some(g), Some(eg), Some(sg), true) = (gap, edge_gap, se_gap, resolved) {
                    s.max_outlier_gap = s.max_outlier_gap.max(g.abs());
                    s.max_outlier_edge_gap = s.max_outlier_edge_gap.max(eg.abs());
                    s.outlier_steps += 1;
                    if eg.abs() > EDGE_TOLERANCE && sg.abs() > 3.0 {
                        s.outlier_steps_outside += 1;
                    }
                }
                let fmt = |x: Option<f64>| x.map(|v| format!("{v:e}")).unwrap_or_default();
                let _ = writeln!(
                    out_csv,
                    "{t},{name},{width},{},{m:e},{sd:e},{},{},{},{},{},{edge}",
                    vals.len(),
                    fmt(pred),
                    fmt(se),
                    fmt(gap),
                    fmt(edge_gap),
                    fmt(se_gap)
                );
                pts.push((t as f64, m));
                errs.push(sd);
            }
            outlier_panels[k].series.push(Series {
                label: format!("N = {width}"),
                points: pts,
                color,
                markers: true,
                y_err: errs,
                ..Default::default()
            });
        }
        // Alignment.
        let mut last_layer = Vec::new();
        for m in group {
            for (t, k, a) in &m.alignment {
                s.min_alignment = s.min_alignment.min(*a);
                let _ = writeln!(align_csv, "{t},{width},{},{},{a}", m.config.seed, theory.kernel_name(*k));
                if *k + 1 == theory.depth && m.config.seed == group[0].config.seed {
                    last_layer.push((*t as f64, *a));
                }
            }
        }
        align_series.push(Series {
            label: format!("N = {width}, Φ^{} (seed {})", theory.depth, group[0].config.seed),
            points: last_layer,
            color,
            markers: true,
            ..Default::default()
        });
        summaries.push(s);
    }
    let mut summary_csv = format!("{}\n", WidthSummary::CSV_HEADER);
    for s in &summaries {
        let _ = writeln!(summary_csv, "{}", s.csv_row());
    }
    let mut files = Vec::new();
    for (name, text) in [
        ("loss.csv", &loss_csv),
        ("outliers.csv", &out_csv),
        ("alignment.csv", &align_csv),
        ("summary.csv", &summary_csv),
    ] {
        let path = out.join(name);
        crate::checkpoint::atomic_write(&path, text.as_bytes())?;
        files.push(path);
    }
    let fig = |title: &str, panels: Vec<Panel>| Figure {
        title: title.into(),
        columns: panels.len().min(3),
        panels,
        panel_size: (640, 440),
    };
    let loss_panel = Panel {
        title: "train loss: DMFT vs trained networks (mean ± sd over seeds)".into(),
        x_label: "step".into(),
        y_label: "train loss".into(),
        log_y: true,
        series: loss_series,
        legend_right: true,
        ..Default::default()
    };
    let align_panel = Panel {
        title: "kernel alignment A(Φ_run, Φ_DMFT), last hidden layer".into(),
        x_label: "step".into(),
        y_label: "alignment".into(),
        series: align_series,
        ..Default::default()
    };
    let gap_panel = Panel {
        title: "loss gap: (run mean − DMFT) / run mean".into(),
        x_label: "step".into(),
        y_label: "relative gap (%)".into(),
        series: gap_series,
        ref_lines: vec![RefLine { value: 0.0, label: "DMFT".into(), vertical: false }],
        ..Default::default()
    };
    files.extend(save_figure(
        &fig("μP DMFT vs training: loss and kernels", vec![loss_panel, gap_panel, align_panel]),
        &out.join("compare-loss"),
    )?);
    files
        .extend(save_figure(&fig("weight outliers: DMFT vs training", outlier_panels), &out.join("compare-outliers"))?);
    Ok(Comparison { theory, measured, summaries, files })
}

/// `specdyn theory mup`: the prediction alone, as tables (see [`prediction`]) and figures.
pub fn theory_alone(cfg: &RunConfig, opts: &DmftOptions, out: &Path, quiet: bool) -> Result<Vec<PathBuf>> {
    let pred = compute_with_bar(cfg, opts, quiet)?;
    report_theory(&pred, out)
}

/// `specdyn theory mup --scan`: one prediction per (label, config), each reported into
/// `out/<label>/`, then `scan.csv` (config, step, quantity, value, stderr: the train loss and
/// the top outlier of every weight matrix) and the scan figure in `out`.
pub fn theory_scan(
    configs: &[(String, RunConfig)],
    opts: &DmftOptions,
    out: &Path,
    quiet: bool,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut preds = Vec::new();
    for (label, cfg) in configs {
        println!("== {label}");
        let pred = compute_with_bar(cfg, opts, quiet)?;
        files.extend(report_theory(&pred, &out.join(label_dir(label)))?);
        preds.push((label.clone(), pred));
    }
    let mut csv = String::from("config,step,quantity,value,stderr\n");
    for (label, p) in &preds {
        for (t, (l, se)) in p.loss.iter().zip(&p.loss_stderr).enumerate() {
            let _ = writeln!(csv, "\"{label}\",{t},train_loss,{l:e},{se:e}");
        }
        for (k, per_t) in p.outliers.iter().enumerate() {
            for (t, v) in per_t.iter().enumerate() {
                if let (Some(v), Some(se)) = (v.first(), p.outlier_stderr[k][t].first()) {
                    let _ = writeln!(csv, "\"{label}\",{t},{},{v:e},{se:e}", MupPrediction::matrix_name(k));
                }
            }
        }
    }
    let path = out.join("scan.csv");
    crate::checkpoint::atomic_write(&path, csv.as_bytes())?;
    files.push(path);
    let entries: Vec<ScanEntry> =
        preds.iter().map(|(label, p)| ScanEntry { label: label.clone(), theory: p, runs: Vec::new() }).collect();
    files.extend(scan_figure(&entries, "μP DMFT across settings (± 2 Monte-Carlo standard errors)", out)?);
    Ok(files)
}

/// Print a prediction's summary and write its tables and `theory-mup.png/svg` into `out`.
fn report_theory(pred: &MupPrediction, out: &Path) -> Result<Vec<PathBuf>> {
    pred.write(out)?;
    let t = pred.steps();
    let pm =
        |v: f64, se: f64| if se.is_finite() && se > 0.0 { format!("{v:.4} ± {se:.4}") } else { format!("{v:.4}") };
    println!(
        "train loss: {:.4} at step 0, {} at step {t} (± one Monte-Carlo standard error)",
        pred.loss[0],
        pm(pred.loss[t], pred.loss_stderr[t])
    );
    for (k, per_t) in pred.outliers.iter().enumerate() {
        // The BBP time: the first step after which W^ℓ has an outlier.
        let unit = match k {
            0 => "singular value of W⁰/(σ√N) as N → ∞; bulk at 1",
            _ => "normalized; MP edge 2",
        };
        match per_t.iter().position(|v| !v.is_empty()) {
            Some(first) => println!(
                "W{k}: first outlier after step {first}; top outlier at step {t}: {} ({unit})",
                pm(
                    per_t[t].first().copied().unwrap_or(f64::NAN),
                    pred.outlier_stderr[k][t].first().copied().unwrap_or(f64::NAN)
                )
            ),
            None => println!("W{k}: no outlier up to step {t} ({unit})"),
        }
    }
    let mut files: Vec<PathBuf> =
        ["loss.csv", "outliers.csv", "kernels.csv", "key.toml"].iter().map(|f| out.join(f)).collect();
    let loss = Panel {
        title: "DMFT train loss (± 2 Monte-Carlo standard errors)".into(),
        x_label: "step".into(),
        y_label: "train loss".into(),
        log_y: true,
        series: vec![Series {
            label: "DMFT".into(),
            points: pred.loss.iter().enumerate().map(|(t, l)| (t as f64, *l)).collect(),
            y_err: pred.loss_stderr.iter().map(|s| band(*s)).collect(),
            band: true,
            ..Default::default()
        }],
        legend_right: true,
        ..Default::default()
    };
    let outlier_series = |k: usize, per_t: &Vec<Vec<f64>>| Series {
        label: format!("W{k} top outlier ± 2 SE"),
        points: per_t.iter().enumerate().filter_map(|(t, v)| v.first().map(|x| (t as f64, *x))).collect(),
        y_err: pred.outlier_stderr[k].iter().filter_map(|v| v.first().map(|s| band(*s))).collect(),
        band: true,
        color: k,
        ..Default::default()
    };
    let first = Panel {
        title: "predicted first-layer outlier (N → ∞ at fixed D)".into(),
        x_label: "step".into(),
        y_label: "singular value of W⁰ / (σ√N)".into(),
        series: vec![outlier_series(0, &pred.outliers[0])],
        ref_lines: vec![RefLine { value: 1.0, label: "bulk".into(), vertical: false }],
        ..Default::default()
    };
    let outliers = Panel {
        title: "predicted outliers of the hidden weights".into(),
        x_label: "step".into(),
        y_label: "normalized singular value".into(),
        series: pred.outliers.iter().enumerate().skip(1).map(|(k, per_t)| outlier_series(k, per_t)).collect(),
        ref_lines: vec![RefLine { value: 2.0, label: "MP edge".into(), vertical: false }],
        ..Default::default()
    };
    let fig = Figure {
        title: "μP infinite-width DMFT".into(),
        panels: vec![loss, first, outliers],
        columns: 3,
        panel_size: (640, 440),
    };
    files.extend(save_figure(&fig, &out.join("theory-mup"))?);
    Ok(files)
}
