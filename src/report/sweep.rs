//! Figures of a sweep (`specdyn sweep report`): learning-rate transfer (loss vs η₀, one curve
//! per width, μP and NTK side by side), the optimal and largest stable η₀ vs width, and the
//! edge of stability (η·λ_NTK vs step for each width, against 2).

use super::{Figure, Panel, RefLine, Series, save_figure};
use crate::error::Result;
use crate::sweep::report::{CellResult, TransferRow};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Draw the three figures into `out` (PNG and SVG each).
pub fn figures(results: &[CellResult], rows: &[TransferRow], out: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let params: Vec<String> = {
        let mut p: Vec<String> = rows.iter().map(|r| r.parameterization.clone()).collect();
        p.dedup();
        p
    };
    if rows.is_empty() {
        return Ok(files);
    }
    // Transfer: loss vs η₀ per width; diverged points drawn at the top as markers.
    let top = rows.iter().flat_map(|r| r.curve.iter().map(|c| c.1)).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let cap = if top > 0.0 { top * 3.0 } else { 1.0 };
    let panels: Vec<Panel> = params
        .iter()
        .map(|p| {
            let mut series = Vec::new();
            for (k, r) in rows.iter().filter(|r| &r.parameterization == p).enumerate() {
                series.push(Series {
                    label: format!("N = {}", r.width),
                    points: r.curve.iter().filter(|c| c.1.is_finite()).map(|c| (c.0, c.1)).collect(),
                    color: k,
                    ..Default::default()
                });
                let diverged: Vec<(f64, f64)> =
                    r.curve.iter().filter(|c| !c.1.is_finite()).map(|c| (c.0, cap)).collect();
                if !diverged.is_empty() {
                    series.push(Series {
                        label: String::new(),
                        points: diverged,
                        color: k,
                        markers: true,
                        ..Default::default()
                    });
                }
            }
            Panel {
                title: format!("{p}: final loss vs η₀ (markers on top: diverged)"),
                x_label: "base learning rate η₀".into(),
                y_label: "final loss (seed mean)".into(),
                log_x: true,
                log_y: true,
                series,
                ..Default::default()
            }
        })
        .collect();
    files.extend(save_figure(
        &Figure { title: "Learning-rate transfer".into(), columns: panels.len(), panels, panel_size: (620, 440) },
        &out.join("transfer"),
    )?);
    // Optimal and largest stable η₀ vs width.
    let series: Vec<Series> = params
        .iter()
        .enumerate()
        .flat_map(|(k, p)| {
            let mine: Vec<&TransferRow> = rows.iter().filter(|r| &r.parameterization == p).collect();
            [
                Series {
                    label: format!("{p}: optimal η₀"),
                    points: mine.iter().filter_map(|r| Some((r.width as f64, r.optimal_lr?))).collect(),
                    color: k,
                    markers: true,
                    ..Default::default()
                },
                Series {
                    label: format!("{p}: largest stable η₀"),
                    points: mine.iter().filter_map(|r| Some((r.width as f64, r.max_stable_lr?))).collect(),
                    color: k,
                    dashed: true,
                    ..Default::default()
                },
            ]
        })
        .collect();
    files.extend(save_figure(
        &Figure {
            title: "Optimal and largest stable learning rate vs width".into(),
            columns: 1,
            panels: vec![Panel {
                title: "width-stable = transfer".into(),
                x_label: "width N".into(),
                y_label: "η₀".into(),
                log_x: true,
                log_y: true,
                series,
                ..Default::default()
            }],
            panel_size: (720, 480),
        },
        &out.join("optimal-lr"),
    )?);
    // Edge of stability: for each (parameterization, width) the cell at the largest stable η₀.
    let mut eos_panels = Vec::new();
    for p in &params {
        let mut series = Vec::new();
        for (k, r) in rows.iter().filter(|r| &r.parameterization == p).enumerate() {
            let Some(lr) = r.max_stable_lr else { continue };
            let mut by_seed: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for c in results.iter().filter(|c| {
                let cfg = c
                    .spectra
                    .as_ref()
                    .and_then(|d| d.config.as_deref())
                    .and_then(|t| crate::config::RunConfig::from_toml_str(t, &[]).ok());
                cfg.is_some_and(|cfg| {
                    cfg.model.parameterization.name() == p && cfg.model.width == r.width && cfg.optimizer.lr == lr
                })
            }) {
                let pts: Vec<(f64, f64)> = c
                    .spectra
                    .iter()
                    .flat_map(|d| {
                        d.analysis.iter().filter(|a| a.lr_ntk_top.is_finite()).map(|a| (a.step as f64, a.lr_ntk_top))
                    })
                    .collect();
                by_seed.insert(c.cell.name.clone(), pts);
            }
            for (j, (_, pts)) in by_seed.into_iter().enumerate() {
                series.push(Series {
                    label: if j == 0 { format!("N = {} (η₀ = {lr})", r.width) } else { String::new() },
                    points: pts,
                    color: k,
                    dashed: j > 0,
                    ..Default::default()
                });
            }
        }
        eos_panels.push(Panel {
            title: format!("{p}: η·λ_NTK at the largest stable η₀"),
            x_label: "step".into(),
            y_label: "LR-scaled top NTK eigenvalue".into(),
            log_x: true,
            // Log scale: a catapult (η·λ of 10⁴ for a few steps) must not flatten the rest.
            log_y: true,
            series,
            ref_lines: vec![RefLine { value: 2.0, label: "2 (edge of stability)".into(), vertical: false }],
            ..Default::default()
        });
    }
    files.extend(save_figure(
        &Figure {
            title: "Edge of stability".into(),
            columns: eos_panels.len(),
            panels: eos_panels,
            panel_size: (620, 440),
        },
        &out.join("eos"),
    )?);
    Ok(files)
}
