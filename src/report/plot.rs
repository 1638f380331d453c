//! Figures as data ([`Figure`] → [`Panel`] → [`Series`]) rendered to PNG and SVG with plotters.
//!
//! Text uses DejaVu Sans embedded in the binary (ab_glyph), so plots render on machines
//! without fontconfig/freetype. Log axes use plotters' log coordinates (1-2-5 ticks); points
//! that a log axis cannot show (≤ 0, non-finite) are skipped.

use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// One line (or set of markers) on a panel.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Index into the palette.
    pub color: usize,
    pub dashed: bool,
    /// Draw markers instead of a line.
    pub markers: bool,
    /// Symmetric vertical error bars (± value per point), drawn when non-empty.
    pub y_err: Vec<f64>,
    /// Draw `y_err` as a shaded band around the line instead of bars.
    pub band: bool,
}

/// A horizontal or vertical reference line.
#[derive(Clone, Debug)]
pub struct RefLine {
    pub value: f64,
    pub label: String,
    pub vertical: bool,
}

/// One set of axes.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
    pub ref_lines: Vec<RefLine>,
    /// Put the legend in the upper right corner instead of the upper left.
    pub legend_right: bool,
}

/// A grid of panels.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    pub title: String,
    pub panels: Vec<Panel>,
    pub columns: usize,
    /// Pixel size of one panel.
    pub panel_size: (u32, u32),
}

/// Colorblind-safe palette (Okabe–Ito), then repeats.
pub fn color(i: usize) -> RGBColor {
    const P: [(u8, u8, u8); 8] = [
        (0, 114, 178),
        (213, 94, 0),
        (0, 158, 115),
        (204, 121, 167),
        (230, 159, 0),
        (86, 180, 233),
        (120, 120, 120),
        (0, 0, 0),
    ];
    let (r, g, b) = P[i % P.len()];
    RGBColor(r, g, b)
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Write `stem.png` and `stem.svg`; returns both paths.
pub fn save_figure(fig: &Figure, stem: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let columns = fig.columns.max(1);
    let rows = fig.panels.len().div_ceil(columns).max(1);
    let (pw, ph) = if fig.panel_size == (0, 0) { (520, 380) } else { fig.panel_size };
    let title_h = if fig.title.is_empty() { 0 } else { 40 };
    let size = (pw * columns as u32, ph * rows as u32 + title_h);
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create plot directory", dir, e))?;
    }
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let fail = |p: &Path, e: String| Error::Io {
        action: "draw plot",
        path: p.to_path_buf(),
        source: std::io::Error::other(e),
        hint: String::new(),
    };
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw(fig, &root, columns, rows, title_h).map_err(|e| fail(&png, e))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw(fig, &root, columns, rows, title_h).map_err(|e| fail(&svg, e))?;
        root.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    Ok(vec![png, svg])
}

fn draw<DB: DrawingBackend>(
    fig: &Figure,
    root: &DrawingArea<DB, Shift>,
    columns: usize,
    rows: usize,
    title_h: u32,
) -> std::result::Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let body = if title_h > 0 {
        let (top, body) = root.split_vertically(title_h);
        top.titled(&fig.title, ("sans-serif", 22).into_font()).map_err(|e| e.to_string())?;
        body
    } else {
        root.clone()
    };
    let areas = body.split_evenly((rows, columns));
    for (panel, area) in fig.panels.iter().zip(areas.iter()) {
        draw_panel(panel, area)?;
    }
    Ok(())
}

fn finite_for(v: f64, log: bool) -> bool {
    v.is_finite() && (!log || v > 0.0)
}

fn tick_label(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        let s = format!("{v:.0e}");
        if s.parse::<f64>().is_ok_and(|r| (r - v).abs() <= 1e-9 * v.abs()) { s } else { format!("{v:.2e}") }
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Tick positions for a log axis on [lo, hi]: powers of ten over wide ranges, the 1-2-5
/// series over a few decades, every integer mantissa over less than one.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let decades = hi.log10() - lo.log10();
    let mantissas: &[f64] = if decades > 4.0 {
        &[1.0]
    } else if decades > 1.2 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    };
    let stride = if decades > 9.0 { 2 } else { 1 };
    let mut ticks = Vec::new();
    for e in (a..=b).step_by(stride) {
        for m in mantissas {
            let v = m * 10f64.powi(e);
            if v >= lo && v <= hi {
                ticks.push(v);
            }
        }
    }
    ticks
}

/// Data range of one axis (with reference lines), padded; multiplicative padding on log axes.
fn axis_range(values: &[f64], log: bool) -> (f64, f64) {
    let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return if log { (0.1, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        let (l, h) = (lo.log10(), hi.log10());
        let pad = if h > l { 0.05 * (h - l) } else { 0.3 };
        (10f64.powf(l - pad), 10f64.powf(h + pad))
    } else {
        let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 * lo.abs().max(1.0) };
        (lo - pad, hi + pad)
    }
}

fn draw_panel<DB: DrawingBackend>(p: &Panel, area: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for s in &p.series {
        for &(x, y) in &s.points {
            if finite_for(x, p.log_x) && finite_for(y, p.log_y) {
                xs.push(x);
                ys.push(y);
            }
        }
    }
    for r in &p.ref_lines {
        if r.vertical && finite_for(r.value, p.log_x) {
            xs.push(r.value);
        } else if !r.vertical && finite_for(r.value, p.log_y) {
            ys.push(r.value);
        }
    }
    let (x0, x1) = axis_range(&xs, p.log_x);
    let (y0, y1) = axis_range(&ys, p.log_y);
    match (p.log_x, p.log_y) {
        (false, false) => draw_chart(p, area, x0..x1, y0..y1),
        (true, false) => draw_chart(p, area, (x0..x1).log_scale().with_key_points(log_ticks(x0, x1)), y0..y1),
        (false, true) => draw_chart(p, area, x0..x1, (y0..y1).log_scale().with_key_points(log_ticks(y0, y1))),
        (true, true) => draw_chart(
            p,
            area,
            (x0..x1).log_scale().with_key_points(log_ticks(x0, x1)),
            (y0..y1).log_scale().with_key_points(log_ticks(y0, y1)),
        ),
    }
}

fn draw_chart<DB, X, Y>(p: &Panel, area: &DrawingArea<DB, Shift>, xr: X, yr: Y) -> std::result::Result<(), String>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 16).into_font())
        .margin(8)
        .x_label_area_size(38)
        .y_label_area_size(60)
        .build_cartesian_2d(xr, yr)
        .map_err(err)?;
    let (x0, x1) = (chart.x_range().start, chart.x_range().end);
    let (y0, y1) = (chart.y_range().start, chart.y_range().end);
    let fmt = |v: &f64| tick_label(*v);
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .x_labels(8)
        .y_labels(8)
        .light_line_style(RGBColor(235, 235, 235))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    let (lx, ly) = (p.log_x, p.log_y);
    for r in &p.ref_lines {
        let style = ShapeStyle::from(&RGBColor(90, 90, 90)).stroke_width(1);
        let ok = if r.vertical { finite_for(r.value, lx) } else { finite_for(r.value, ly) };
        if !ok {
            continue;
        }
        let line = if r.vertical { vec![(r.value, y0), (r.value, y1)] } else { vec![(x0, r.value), (x1, r.value)] };
        let anno = chart.draw_series(DashedLineSeries::new(line, 6, 4, style)).map_err(err)?;
        if !r.label.is_empty() {
            anno.label(r.label.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
    }
    for s in &p.series {
        let c = color(s.color);
        let data: Vec<(f64, f64)> =
            s.points.iter().cloned().filter(|&(x, y)| finite_for(x, lx) && finite_for(y, ly)).collect();
        let style = ShapeStyle::from(&c).stroke_width(2);
        if s.band && !s.y_err.is_empty() {
            let pts: Vec<(f64, f64, f64)> = s
                .points
                .iter()
                .zip(&s.y_err)
                .filter(|&(&(x, y), &e)| e > 0.0 && finite_for(x, lx) && finite_for(y - e, ly) && finite_for(y + e, ly))
                .map(|(&(x, y), &e)| (x, y - e, y + e))
                .collect();
            if pts.len() >= 2 {
                let outline: Vec<(f64, f64)> =
                    pts.iter().map(|p| (p.0, p.2)).chain(pts.iter().rev().map(|p| (p.0, p.1))).collect();
                chart.draw_series(std::iter::once(Polygon::new(outline, c.mix(0.22).filled()))).map_err(err)?;
            }
        } else if !s.y_err.is_empty() {
            let bars = s
                .points
                .iter()
                .zip(&s.y_err)
                .filter(|&(&(x, y), &e)| finite_for(x, lx) && finite_for(y - e, ly) && finite_for(y + e, ly))
                .map(|(&(x, y), &e)| {
                    PathElement::new(vec![(x, y - e), (x, y + e)], ShapeStyle::from(&c).stroke_width(1))
                });
            chart.draw_series(bars).map_err(err)?;
        }
        let anno = if s.markers {
            chart.draw_series(data.iter().map(|&q| Circle::new(q, 3, c.filled()))).map_err(err)?
        } else if s.dashed {
            chart.draw_series(DashedLineSeries::new(data, 7, 5, style)).map_err(err)?
        } else {
            chart.draw_series(LineSeries::new(data, style)).map_err(err)?
        };
        if !s.label.is_empty() {
            anno.label(s.label.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
    }
    if p.series.iter().any(|s| !s.label.is_empty()) || p.ref_lines.iter().any(|r| !r.label.is_empty()) {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 11))
            .position(if p.legend_right { SeriesLabelPosition::UpperRight } else { SeriesLabelPosition::UpperLeft })
            .draw()
            .map_err(err)?;
    }
    Ok(())
}
