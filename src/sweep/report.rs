//! `specdyn sweep report`: one tidy row per cell, the learning-rate-transfer summary, and one
//! HDF5 file with every cell's spectra.
//!
//! - `cells.csv`: cell, id, one column per axis, status, steps, losses (initial, final, best,
//!   test, after 1, 10, 100, … steps), divergence step and last finite loss, the largest
//!   η·λ_NTK and η·sharpness, and per matrix its outlier count and top normalized singular
//!   value at the last snapshot.
//! - `summary.csv`: per (parameterization, width): the optimal η₀ (lowest seed-mean final loss
//!   among η₀ where no seed diverged), its loss, the largest η₀ where no seed diverged, and both
//!   as grid steps from the narrowest width's (the transfer measurement).
//! - `spectra.h5`: `/cells/<name>/` holds each cell's spectra.h5 (same layout) with its
//!   coordinates as attributes.

use super::{Cell, CellState, SweepDir};
use crate::error::{Error, Result};
use crate::spectra::h5::{self, SpectraData};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What one cell measured.
#[derive(Clone, Debug)]
pub struct CellResult {
    pub cell: Cell,
    pub state: CellState,
    pub steps_completed: Option<u64>,
    pub steps_planned: Option<u64>,
    pub initial_loss: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub best_train_loss: Option<f64>,
    pub final_test_loss: Option<f64>,
    pub best_test_loss: Option<f64>,
    pub final_test_accuracy: Option<f64>,
    /// Train loss at logged steps (step, loss).
    pub loss_curve: Vec<(u64, f64)>,
    pub diverged_at_step: Option<u64>,
    pub last_finite_loss: Option<f64>,
    pub max_lr_ntk: Option<f64>,
    pub max_lr_sharpness: Option<f64>,
    pub spectra: Option<SpectraData>,
}

fn finite_max(v: impl Iterator<Item = f64>) -> Option<f64> {
    v.filter(|x| x.is_finite()).fold(None, |m, x| Some(m.map_or(x, |m: f64| m.max(x))))
}

fn finite_min(v: impl Iterator<Item = f64>) -> Option<f64> {
    v.filter(|x| x.is_finite()).fold(None, |m, x| Some(m.map_or(x, |m: f64| m.min(x))))
}

/// (step, train loss, test loss) rows of a metrics.csv.
fn read_metrics(path: &Path) -> Vec<(u64, Option<f64>, Option<f64>)> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let mut lines = text.lines();
    let Some(head) = lines.next() else { return Vec::new() };
    let cols: Vec<&str> = head.split(',').collect();
    let at = |n: &str| cols.iter().position(|c| *c == n);
    let (Some(s), Some(tr), Some(te)) = (at("step"), at("train_loss"), at("test_loss")) else { return Vec::new() };
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() != cols.len() {
                return None;
            }
            Some((f[s].parse().ok()?, f[tr].parse().ok(), f[te].parse().ok()))
        })
        .collect()
}

/// Read every cell's results.
pub fn collect(dir: &SweepDir, cells: &[Cell]) -> Vec<CellResult> {
    cells
        .iter()
        .map(|cell| {
            let run = crate::rundir::RunDir::new(&dir.cell_dir(cell));
            let summary = run.read_summary();
            let metrics = read_metrics(&run.metrics_path());
            let spectra = h5::read(&run.spectra_path()).ok();
            let analysis = spectra.as_ref().map(|d| d.analysis.clone()).unwrap_or_default();
            CellResult {
                cell: cell.clone(),
                state: dir.cell_state(cell),
                steps_completed: summary.as_ref().map(|s| s.steps_completed),
                steps_planned: summary.as_ref().map(|s| s.steps_planned),
                initial_loss: summary.as_ref().and_then(|s| s.initial_loss),
                final_train_loss: summary.as_ref().and_then(|s| s.final_train_loss),
                best_train_loss: finite_min(metrics.iter().filter_map(|m| m.1)),
                final_test_loss: summary.as_ref().and_then(|s| s.final_test_loss),
                best_test_loss: finite_min(metrics.iter().filter_map(|m| m.2)),
                final_test_accuracy: summary.as_ref().and_then(|s| s.final_test_accuracy),
                loss_curve: metrics.iter().filter_map(|m| Some((m.0, m.1?))).collect(),
                diverged_at_step: summary.as_ref().and_then(|s| s.diverged_at_step),
                last_finite_loss: summary.as_ref().and_then(|s| s.last_finite_loss),
                max_lr_ntk: finite_max(analysis.iter().map(|r| r.lr_ntk_top)),
                max_lr_sharpness: finite_max(analysis.iter().map(|r| r.lr_sharpness)),
                spectra,
            }
        })
        .collect()
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:e}")).unwrap_or_default()
}

/// Steps 1, 10, 100, … up to `max`.
fn decades(max: u64) -> Vec<u64> {
    std::iter::successors(Some(1u64), |s| s.checked_mul(10)).take_while(|s| *s <= max).collect()
}

/// The rows of `cells.csv`: header and one row per cell.
pub fn cell_table(results: &[CellResult], axes: &[String]) -> (Vec<String>, Vec<Vec<String>>) {
    let max_steps = results.iter().filter_map(|r| r.steps_planned).max().unwrap_or(0);
    let at_steps = decades(max_steps);
    let matrices: Vec<String> = results
        .iter()
        .find_map(|r| r.spectra.as_ref())
        .map(|d| d.matrices.iter().map(|m| m.name.clone()).collect())
        .unwrap_or_default();
    let mut header = vec!["cell".to_string(), "id".into()];
    header.extend(axes.iter().cloned());
    header.extend(
        [
            "status",
            "steps_completed",
            "steps_planned",
            "initial_loss",
            "final_train_loss",
            "best_train_loss",
            "final_test_loss",
            "best_test_loss",
            "final_test_accuracy",
        ]
        .map(String::from),
    );
    header.extend(at_steps.iter().map(|s| format!("train_loss_at_{s}")));
    header.extend(["diverged_at_step", "last_finite_loss", "max_lr_ntk_top", "max_lr_sharpness"].map(String::from));
    for m in &matrices {
        header.push(format!("{m}:outliers"));
        header.push(format!("{m}:top"));
    }
    let rows = results
        .iter()
        .map(|r| {
            let mut row = vec![r.cell.name.clone(), r.cell.id.clone()];
            row.extend(axes.iter().map(|a| r.cell.coordinate(a).unwrap_or_default().trim_matches('"').to_string()));
            row.push(r.state.name().into());
            row.push(r.steps_completed.map(|v| v.to_string()).unwrap_or_default());
            row.push(r.steps_planned.map(|v| v.to_string()).unwrap_or_default());
            for v in [
                r.initial_loss,
                r.final_train_loss,
                r.best_train_loss,
                r.final_test_loss,
                r.best_test_loss,
                r.final_test_accuracy,
            ] {
                row.push(opt(v));
            }
            for s in &at_steps {
                row.push(opt(r.loss_curve.iter().find(|(t, _)| t == s).map(|(_, l)| *l)));
            }
            row.push(r.diverged_at_step.map(|v| v.to_string()).unwrap_or_default());
            row.push(opt(r.last_finite_loss));
            row.push(opt(r.max_lr_ntk));
            row.push(opt(r.max_lr_sharpness));
            for m in &matrices {
                let last = r.spectra.as_ref().and_then(|d| {
                    let mm = d.matrices.iter().find(|x| &x.name == m)?;
                    Some((*mm.outlier_count.last()?, *mm.top_values.last()?.first()?))
                });
                row.push(last.map(|(c, _)| c.to_string()).unwrap_or_default());
                row.push(last.map(|(_, t)| format!("{t}")).unwrap_or_default());
            }
            row
        })
        .collect();
    (header, rows)
}

/// One (parameterization, width) line of the transfer summary.
#[derive(Clone, Debug)]
pub struct TransferRow {
    pub parameterization: String,
    pub width: usize,
    /// (η₀, seed-mean final loss or +∞ when a seed diverged, seeds), by η₀.
    pub curve: Vec<(f64, f64, usize)>,
    pub optimal_lr: Option<f64>,
    pub optimal_loss: Option<f64>,
    pub max_stable_lr: Option<f64>,
    /// Grid steps from the narrowest width's optimum / max stable η₀ (same parameterization).
    pub optimal_shift: Option<i64>,
    pub stable_shift: Option<i64>,
}

/// The loss a transfer plot compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Metric {
    /// Final train loss.
    #[default]
    Train,
    /// Final test loss.
    Test,
}

/// Group finished cells by (parameterization, width) and η₀, averaging seeds.
pub fn transfer(results: &[CellResult], metric: Metric) -> Vec<TransferRow> {
    let num = |r: &CellResult, k: &str| r.cell.coordinate(k).and_then(|v| v.trim_matches('"').parse::<f64>().ok());
    // (param, width) → lr bits → (lr, losses (∞ for diverged))
    type ByLr = BTreeMap<u64, (f64, Vec<f64>)>;
    let mut groups: BTreeMap<(String, usize), ByLr> = BTreeMap::new();
    for r in results.iter().filter(|r| r.state.is_finished()) {
        let cfg = r.spectra.as_ref().and_then(|d| d.config.clone());
        let parsed = cfg.as_deref().and_then(|t| crate::config::RunConfig::from_toml_str(t, &[]).ok());
        let (param, width, lr) = match (&parsed, num(r, "optimizer.lr")) {
            (Some(c), _) => (c.model.parameterization.name().to_string(), c.model.width, c.optimizer.lr),
            (None, Some(lr)) => (
                r.cell.coordinate("model.parameterization").unwrap_or("mup").trim_matches('"').to_string(),
                num(r, "model.width").unwrap_or(0.0) as usize,
                lr,
            ),
            _ => continue,
        };
        let loss = match (r.state, metric) {
            (CellState::Diverged, _) => f64::INFINITY,
            (_, Metric::Train) => r.final_train_loss.unwrap_or(f64::INFINITY),
            (_, Metric::Test) => r.final_test_loss.unwrap_or(f64::INFINITY),
        };
        groups.entry((param, width)).or_default().entry(lr.to_bits()).or_insert((lr, Vec::new())).1.push(loss);
    }
    let mut rows: Vec<TransferRow> = groups
        .into_iter()
        .map(|((parameterization, width), by_lr)| {
            let mut curve: Vec<(f64, f64, usize)> = by_lr
                .into_values()
                .map(|(lr, ls)| {
                    let mean = if ls.iter().any(|l| !l.is_finite()) {
                        f64::INFINITY
                    } else {
                        ls.iter().sum::<f64>() / ls.len() as f64
                    };
                    (lr, mean, ls.len())
                })
                .collect();
            curve.sort_by(|a, b| a.0.total_cmp(&b.0));
            let best = curve.iter().filter(|c| c.1.is_finite()).min_by(|a, b| a.1.total_cmp(&b.1));
            let stable = curve
                .iter()
                .filter(|c| c.1.is_finite())
                .map(|c| c.0)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            TransferRow {
                parameterization,
                width,
                optimal_lr: best.map(|b| b.0),
                optimal_loss: best.map(|b| b.1),
                max_stable_lr: stable,
                curve,
                optimal_shift: None,
                stable_shift: None,
            }
        })
        .collect();
    // Grid steps relative to the narrowest width of the same parameterization, on the union grid.
    let grid: Vec<f64> = {
        let mut g: Vec<f64> = rows.iter().flat_map(|r| r.curve.iter().map(|c| c.0)).collect();
        g.sort_by(|a, b| a.total_cmp(b));
        g.dedup();
        g
    };
    let index = |lr: Option<f64>| lr.and_then(|v| grid.iter().position(|g| *g == v)).map(|i| i as i64);
    let firsts: BTreeMap<String, (Option<i64>, Option<i64>)> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        m.entry(r.parameterization.clone()).or_insert((index(r.optimal_lr), index(r.max_stable_lr)));
        m
    });
    for r in &mut rows {
        let (o, s) = firsts[&r.parameterization];
        r.optimal_shift = index(r.optimal_lr).zip(o).map(|(a, b)| a - b);
        r.stable_shift = index(r.max_stable_lr).zip(s).map(|(a, b)| a - b);
    }
    rows
}

/// Write cells.csv, summary.csv and spectra.h5 into `out`; returns the files.
pub fn write(results: &[CellResult], axes: &[String], rows: &[TransferRow], out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("create report directory", out, e))?;
    let (header, table) = cell_table(results, axes);
    let cells_csv = out.join("cells.csv");
    crate::io::write_csv(&cells_csv, &header, &table)?;
    let summary_csv = out.join("summary.csv");
    let header = [
        "parameterization",
        "width",
        "optimal_lr",
        "optimal_loss",
        "max_stable_lr",
        "optimal_shift_steps",
        "stable_shift_steps",
    ]
    .map(String::from)
    .to_vec();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.parameterization.clone(),
                r.width.to_string(),
                opt(r.optimal_lr),
                opt(r.optimal_loss),
                opt(r.max_stable_lr),
                r.optimal_shift.map(|v| v.to_string()).unwrap_or_default(),
                r.stable_shift.map(|v| v.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    crate::io::write_csv(&summary_csv, &header, &table)?;
    let mut files = vec![cells_csv, summary_csv];
    let members: Vec<h5::Member<'_>> = results
        .iter()
        .filter_map(|r| {
            let data = r.spectra.as_ref()?;
            let mut attrs =
                vec![("id".to_string(), r.cell.id.clone()), ("status".to_string(), r.state.name().to_string())];
            attrs.extend(
                r.cell.coordinates.iter().map(|(k, v)| (format!("coordinate:{k}"), v.trim_matches('"').to_string())),
            );
            Some(h5::Member { name: &r.cell.name, attrs, data })
        })
        .collect();
    if !members.is_empty() {
        let path = out.join("spectra.h5");
        h5::write_collection(&path, "specdyn-sweep-spectra-1", &members)?;
        files.push(path);
    }
    Ok(files)
}
