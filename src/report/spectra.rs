//! `specdyn plot RUN_DIR`: figures of a run (or of external weights) from `spectra.h5` and
//! `metrics.csv`, written to `RUN_DIR/plots/` as PNG and SVG.

use super::theory::histogram;
use super::{Figure, Panel, RefLine, Series, save_figure};
use crate::error::{Error, Result};
use crate::spectra::h5::{self, MatrixData, SpectraData};
use crate::spectra::normalize::singular_value_density;
use crate::theory::MarchenkoPastur;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Up to three snapshot indices: first, middle, last.
fn chosen_snapshots(n: usize) -> Vec<usize> {
    let mut v = vec![0, n / 2, n.saturating_sub(1)];
    v.dedup();
    v.retain(|i| *i < n);
    v
}

fn is_matrix(m: &MatrixData) -> bool {
    m.rows().min(m.cols()) >= 8
}

/// Singular-value density of every matrix at the first, middle and last full snapshot, with
/// the MP law of its shape.
fn density_figure(d: &SpectraData) -> Option<Figure> {
    let panels: Vec<Panel> = d
        .matrices
        .iter()
        .filter(|m| is_matrix(m))
        .map(|m| {
            let law = MarchenkoPastur::for_shape(m.rows(), m.cols());
            let (lo, hi) = law.singular_edges();
            let top = m.singular_values.iter().flat_map(|r| r.first()).fold(hi, |a, b| a.max(*b as f64));
            let right = (top * 1.05).max(hi * 1.25);
            let mut series = vec![Series {
                label: format!("MP, c = {:.3}", law.c),
                points: (0..=300)
                    .map(|i| lo + (hi - lo) * i as f64 / 300.0)
                    .map(|s| (s, singular_value_density(&law, s)))
                    .collect(),
                color: 7,
                ..Default::default()
            }];
            for (k, t) in chosen_snapshots(m.full_steps.len()).into_iter().enumerate() {
                let vals: Vec<f64> = m.singular_values[t].iter().map(|v| *v as f64).collect();
                series.push(Series {
                    label: format!("step {}", m.full_steps[t]),
                    points: histogram(&vals, 0.0, right, ((vals.len() as f64).sqrt() * 2.0).clamp(8.0, 90.0) as usize),
                    color: k,
                    markers: k == 0,
                    ..Default::default()
                });
            }
            Panel {
                title: format!("{} ({}×{}, {})", m.name, m.rows(), m.cols(), m.kind),
                x_label: "normalized singular value".into(),
                y_label: "density".into(),
                series,
                ref_lines: vec![RefLine { value: m.threshold(), label: "outlier threshold".into(), vertical: true }],
                legend_right: true,
                ..Default::default()
            }
        })
        .collect();
    (!panels.is_empty()).then(|| Figure {
        title: "Weight singular values (normalized so an untrained matrix fills the MP bulk)".into(),
        columns: panels.len().min(3),
        panels,
        panel_size: (560, 400),
    })
}

/// Top singular values vs step, one line per tracked direction.
fn outlier_figure(d: &SpectraData) -> Option<Figure> {
    if d.steps.len() < 2 {
        return None;
    }
    let panels: Vec<Panel> = d
        .matrices
        .iter()
        .filter(|m| is_matrix(m))
        .map(|m| {
            let mut tracks: BTreeMap<i32, Vec<(f64, f64)>> = BTreeMap::new();
            for (t, step) in d.steps.iter().enumerate() {
                for (r, v) in m.top_values[t].iter().enumerate() {
                    tracks.entry(m.track_id[t][r]).or_default().push((*step as f64, *v as f64));
                }
            }
            let mut ranked: Vec<(i32, Vec<(f64, f64)>)> = tracks.into_iter().collect();
            ranked.sort_by(|a, b| {
                let peak = |p: &Vec<(f64, f64)>| p.iter().map(|q| q.1).fold(0.0, f64::max);
                peak(&b.1).total_cmp(&peak(&a.1))
            });
            let series = ranked
                .into_iter()
                .take(8)
                .enumerate()
                .map(|(k, (id, pts))| Series {
                    label: if k < 4 { format!("track {id}") } else { String::new() },
                    points: pts,
                    color: k,
                    ..Default::default()
                })
                .collect();
            Panel {
                title: format!("{}: top singular values", m.name),
                x_label: "step".into(),
                y_label: "normalized singular value".into(),
                log_x: true,
                series,
                ref_lines: vec![
                    RefLine { value: m.mp_edge(), label: "MP edge".into(), vertical: false },
                    RefLine { value: m.threshold(), label: "outlier threshold".into(), vertical: false },
                ],
                ..Default::default()
            }
        })
        .collect();
    (!panels.is_empty()).then(|| Figure {
        title: "Outlier singular values over training (each line follows one singular direction)".into(),
        columns: panels.len().min(3),
        panels,
        panel_size: (560, 400),
    })
}

fn curvature_figure(d: &SpectraData) -> Option<Figure> {
    if d.analysis.is_empty() {
        return None;
    }
    let pts = |f: fn(&h5::AnalysisRow) -> f64| d.analysis.iter().map(|r| (r.step as f64, f(r))).collect::<Vec<_>>();
    Some(Figure {
        title: "Curvature vs the stability limit of gradient descent".into(),
        panels: vec![Panel {
            title: "LR-scaled top eigenvalues (GD is stable below 2, i.e. λ < 2/η)".into(),
            x_label: "step".into(),
            y_label: "λ_max × learning rate".into(),
            log_x: true,
            series: vec![
                Series {
                    label: "sharpness  λ_max(P½HP½)".into(),
                    points: pts(|r| r.lr_sharpness),
                    color: 0,
                    ..Default::default()
                },
                Series {
                    label: "NTK  λ_max(JPJᵀ/B)".into(),
                    points: pts(|r| r.lr_ntk_top),
                    color: 1,
                    dashed: true,
                    ..Default::default()
                },
            ],
            ref_lines: vec![RefLine { value: 2.0, label: "2 (edge of stability)".into(), vertical: false }],
            ..Default::default()
        }],
        columns: 1,
        panel_size: (760, 460),
    })
}

fn loss_figure(run: &Path) -> Option<Figure> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (s, tr, te) = (col("step")?, col("train_loss")?, col("test_loss")?);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let step: f64 = f.get(s)?.parse().ok()?;
        if let Some(v) = f.get(tr).and_then(|v| v.parse::<f64>().ok()) {
            train.push((step, v));
        }
        if let Some(v) = f.get(te).and_then(|v| v.parse::<f64>().ok()) {
            test.push((step, v));
        }
    }
    Some(Figure {
        title: "Loss".into(),
        panels: vec![Panel {
            title: "train and test loss (steps ≥ 1 on the log axis)".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            log_x: true,
            log_y: true,
            series: vec![
                Series { label: "train".into(), points: train, color: 0, ..Default::default() },
                Series { label: "test".into(), points: test, color: 1, ..Default::default() },
            ],
            legend_right: true,
            ..Default::default()
        }],
        columns: 1,
        panel_size: (760, 460),
    })
}

/// Every figure of a run directory (or of an external-weights output directory).
pub fn plot_run(run: &Path) -> Result<Vec<PathBuf>> {
    let h5_path = run.join("spectra.h5");
    if !h5_path.exists() && !run.join("metrics.csv").exists() {
        return Err(Error::run_dir(
            run,
            "has neither spectra.h5 nor metrics.csv",
            "pass a directory made by `specdyn train` or `specdyn spectra`",
        ));
    }
    let plots = run.join("plots");
    let mut files = Vec::new();
    if let Some(f) = loss_figure(run) {
        files.extend(save_figure(&f, &plots.join("loss"))?);
    }
    if h5_path.exists() {
        let d = h5::read(&h5_path)?;
        for (fig, name) in [
            (density_figure(&d), "spectra-density"),
            (outlier_figure(&d), "outliers"),
            (curvature_figure(&d), "curvature"),
        ] {
            if let Some(f) = fig {
                files.extend(save_figure(&f, &plots.join(name))?);
            }
        }
    }
    Ok(files)
}

/// One run's series of one matrix, for [`across_widths`].
pub struct WidthSeries {
    pub run: PathBuf,
    pub width: usize,
    pub seed: u64,
    pub steps: Vec<u64>,
    pub matrix: crate::spectra::h5::MatrixData,
}

/// The series of `matrix` in each run (width and seed from the run's config).
pub fn read_width_series(runs: &[PathBuf], matrix: Option<&str>) -> Result<(String, Vec<WidthSeries>)> {
    let mut out = Vec::new();
    let mut chosen = matrix.map(str::to_string);
    for run in runs {
        let config = crate::rundir::RunDir::new(run).read_config()?;
        let d = h5::read(&run.join("spectra.h5"))?;
        let name = chosen.get_or_insert_with(|| default_matrix(&d)).clone();
        let m = d.matrices.iter().find(|m| m.name == name).cloned().ok_or_else(|| {
            let names: Vec<&str> = d.matrices.iter().map(|m| m.name.as_str()).collect();
            Error::run_dir(
                run,
                format!("has no matrix '{name}' in spectra.h5"),
                format!("choose one of: {}", names.join(", ")),
            )
        })?;
        out.push(WidthSeries {
            run: run.clone(),
            width: config.model.width,
            seed: config.seed,
            steps: d.steps,
            matrix: m,
        });
    }
    out.sort_by_key(|s| (s.width, s.seed));
    Ok((chosen.unwrap_or_default(), out))
}

/// The paper's Fig.-2 matrix (second conv of the first block) if present, else the first
/// hidden matrix.
fn default_matrix(d: &SpectraData) -> String {
    ["blocks.0.conv2.weight", "layers.1.weight"]
        .into_iter()
        .find(|n| d.matrices.iter().any(|m| m.name == *n))
        .map(str::to_string)
        .or_else(|| d.matrices.first().map(|m| m.name.clone()))
        .unwrap_or_default()
}

/// The paper's Fig. 2 for any matrix of runs at several widths: its normalized singular-value
/// density at up to four common snapshots (one histogram per width, the MP law, the outlier
/// threshold), and its top singular values vs step, one colour per width. Also writes
/// `widths-outliers.csv` (width, seed, step, rank, value, mp_edge, outlier_threshold).
pub fn across_widths(series: &[WidthSeries], name: &str, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("create output directory", out, e))?;
    let mut csv = String::from("width,seed,step,rank,value,mp_edge,outlier_threshold\n");
    for s in series {
        for (t, step) in s.steps.iter().enumerate() {
            for (r, v) in s.matrix.top_values[t].iter().enumerate() {
                csv.push_str(&format!(
                    "{},{},{step},{},{v},{},{}\n",
                    s.width,
                    s.seed,
                    r + 1,
                    s.matrix.mp_edge(),
                    s.matrix.threshold()
                ));
            }
        }
    }
    let csv_path = out.join("widths-outliers.csv");
    crate::checkpoint::atomic_write(&csv_path, csv.as_bytes())?;
    let mut files = vec![csv_path];
    let Some(first) = series.first() else { return Ok(files) };
    // Snapshots every run has, up to four, log-spread.
    let common: Vec<u64> = first.steps.iter().copied().filter(|t| series.iter().all(|s| s.steps.contains(t))).collect();
    let shown: Vec<u64> = if common.len() <= 4 {
        common.clone()
    } else {
        let n = common.len() - 1;
        let mut v: Vec<u64> = [0, n / 3, 2 * n / 3, n].iter().map(|i| common[*i]).collect();
        v.dedup();
        v
    };
    let law = MarchenkoPastur::for_shape(first.matrix.rows(), first.matrix.cols());
    let (lo, hi) = law.singular_edges();
    let top = series
        .iter()
        .flat_map(|s| s.matrix.top_values.iter().flat_map(|r| r.first()))
        .fold(hi, |a, b| a.max(*b as f64));
    let right = (top * 1.05).max(hi * 1.25);
    let density_panels: Vec<Panel> = shown
        .iter()
        .map(|step| {
            let mut series_out = vec![Series {
                label: format!("MP, c = {:.2}", law.c),
                points: (0..=300)
                    .map(|i| lo + (hi - lo) * i as f64 / 300.0)
                    .map(|x| (x, singular_value_density(&law, x)))
                    .collect(),
                color: 7,
                ..Default::default()
            }];
            let mut seen = std::collections::BTreeSet::new();
            for (k, s) in series.iter().filter(|s| seen.insert(s.width)).enumerate() {
                let t = s.matrix.full_steps.iter().position(|x| x == step).unwrap_or(0);
                let vals: Vec<f64> = s.matrix.singular_values[t].iter().map(|v| *v as f64).collect();
                series_out.push(Series {
                    label: format!("N = {}", s.width),
                    points: histogram(&vals, 0.0, right, ((vals.len() as f64).sqrt() * 2.0).clamp(8.0, 60.0) as usize),
                    color: k,
                    ..Default::default()
                });
            }
            Panel {
                title: format!("{name}, step {step}"),
                x_label: "normalized singular value".into(),
                y_label: "density".into(),
                log_y: false,
                series: series_out,
                ref_lines: vec![RefLine {
                    value: first.matrix.threshold(),
                    label: "outlier threshold".into(),
                    vertical: true,
                }],
                legend_right: true,
                ..Default::default()
            }
        })
        .collect();
    files.extend(save_figure(
        &Figure {
            title: format!("Singular values of {name} across widths (MP bulk at init, outliers escape)"),
            columns: density_panels.len().min(4),
            panels: density_panels,
            panel_size: (520, 400),
        },
        &out.join("widths-density"),
    )?);
    let ranks = first.matrix.top_k.min(3);
    // One colour per width; every seed of a width in that colour; ranks 2–3 dashed.
    let widths: Vec<usize> = {
        let mut w: Vec<usize> = series.iter().map(|s| s.width).collect();
        w.dedup();
        w
    };
    let mut labelled = std::collections::BTreeSet::new();
    let mut lines = Vec::new();
    for s in series {
        let color = widths.iter().position(|w| *w == s.width).unwrap_or(0);
        for r in 0..ranks {
            let label = if r == 0 && labelled.insert(s.width) { format!("N = {}", s.width) } else { String::new() };
            lines.push(Series {
                label,
                points: s.steps.iter().zip(&s.matrix.top_values).map(|(t, v)| (*t as f64, v[r] as f64)).collect(),
                color,
                dashed: r > 0,
                ..Default::default()
            });
        }
    }
    let outlier_panel = Panel {
        title: format!("{name}: top {ranks} singular values vs step (all seeds; ranks 2–{ranks} dashed)"),
        x_label: "step".into(),
        y_label: "normalized singular value".into(),
        log_x: true,
        series: lines,
        ref_lines: vec![RefLine { value: first.matrix.mp_edge(), label: "MP edge".into(), vertical: false }],
        ..Default::default()
    };
    files.extend(save_figure(
        &Figure { title: String::new(), columns: 1, panels: vec![outlier_panel], panel_size: (760, 480) },
        &out.join("widths-outliers"),
    )?);
    Ok(files)
}
