//! `specdyn theory …`: predictions next to finite-N simulations, as CSV tables and figures.

use super::{Figure, Panel, RefLine, Series, save_figure};
use crate::error::{Error, Result};
use crate::theory::{
    EndogenousWigner, MarchenkoPastur, Semicircle, rectangular_spike_outlier, simulate, spiked_wigner_outliers,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Mean and sample standard deviation.
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let sd = if xs.len() > 1 { (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, sd)
}

fn bar(len: u64, quiet: bool, what: &str) -> indicatif::ProgressBar {
    let b = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(len) };
    b.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(what.to_string());
    b
}

fn write_text(path: &Path, text: &str) -> Result<PathBuf> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io("write", path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io("write", path, e))?;
    Ok(path.to_path_buf())
}

fn prepare(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("create output directory", out, e))
}

/// Normalized histogram of `values` on [lo, hi] as (bin centre, density) points.
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<(f64, f64)> {
    let w = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in values {
        if *v >= lo && *v < hi {
            counts[((v - lo) / w) as usize] += 1;
        }
    }
    let total = values.len() as f64;
    counts.iter().enumerate().map(|(i, c)| (lo + (i as f64 + 0.5) * w, *c as f64 / (total * w))).collect()
}

/// Marchenko–Pastur density, quantiles and edges, with simulated eigenvalues of XXᵀ.
pub fn mp(c: f64, simulate_n: Option<usize>, seeds: u64, out: &Path, quiet: bool) -> Result<Vec<PathBuf>> {
    prepare(out)?;
    let law = MarchenkoPastur::new(c);
    let (a, b) = law.edges();
    let mut files = Vec::new();
    let mut csv = String::from("lambda,density\n");
    let curve: Vec<(f64, f64)> =
        (0..=400).map(|i| a + (b - a) * i as f64 / 400.0).map(|l| (l, law.density(l))).collect();
    for (l, d) in &curve {
        csv.push_str(&format!("{l},{d}\n"));
    }
    files.push(write_text(&out.join("mp-density.csv"), &csv)?);
    let probs: Vec<f64> = (1..20).map(|i| i as f64 * 0.05).collect();
    let mut sims: Vec<f64> = Vec::new();
    if let Some(n) = simulate_n {
        let m = ((n as f64) / c).round().max(1.0) as usize;
        let pb = bar(seeds, quiet, "simulating");
        for seed in 0..seeds {
            let x = simulate::gaussian(n, m, seed);
            sims.extend(simulate::eigenvalues_desc(&(&x * x.transpose())));
            pb.inc(1);
        }
        pb.finish_and_clear();
    }
    let mut table = String::from("p,theory,simulated\n");
    sims.sort_by(|x, y| x.total_cmp(y));
    println!("Marchenko–Pastur, c = {c}: edges [{a:.6}, {b:.6}], atom at 0: {:.4}", law.atom_at_zero());
    println!("{:>5} {:>10} {:>10}", "p", "theory", "simulated");
    for p in &probs {
        let th = law.quantile(*p);
        let sim = (!sims.is_empty()).then(|| sims[((p * sims.len() as f64) as usize).min(sims.len() - 1)]);
        table.push_str(&format!("{p},{th},{}\n", sim.map(|v| v.to_string()).unwrap_or_default()));
        println!("{p:>5.2} {th:>10.5} {:>10}", sim.map(|v| format!("{:.5}", v.max(0.0))).unwrap_or_else(|| "-".into()));
    }
    files.push(write_text(&out.join("mp-quantiles.csv"), &table)?);
    let mut series =
        vec![Series { label: format!("MP density, c = {c}"), points: curve, color: 0, ..Default::default() }];
    if !sims.is_empty() {
        series.push(Series {
            label: format!("simulated N = {}, {seeds} seeds", simulate_n.unwrap_or(0)),
            // Above the atom at 0 (c > 1), so the bins show the continuous part, whose mass is 1 − atom.
            points: histogram(&sims, if c > 1.0 { 0.9 * a } else { 0.0 }, b * 1.05, 80),
            color: 1,
            markers: true,
            ..Default::default()
        });
    }
    let fig = Figure {
        title: format!("Marchenko–Pastur law (tutorial eq. 68), aspect ratio c = {c}"),
        panels: vec![Panel {
            title: "eigenvalues of XXᵀ, X n×m with N(0, 1/m) entries".into(),
            x_label: "λ".into(),
            y_label: "density".into(),
            series,
            ref_lines: vec![RefLine { value: b, label: "edge (1+√c)²".into(), vertical: true }],
            legend_right: true,
            ..Default::default()
        }],
        columns: 1,
        panel_size: (760, 480),
    };
    files.extend(save_figure(&fig, &out.join("mp"))?);
    Ok(files)
}

/// Classical BBP: outlier vs spike strength θ, for the spiked Wigner (eigenvalues) or
/// rectangular (singular values) model, with simulations.
pub fn bbp(
    rectangular: bool,
    c: f64,
    thetas: &[f64],
    simulate_n: Option<usize>,
    seeds: u64,
    out: &Path,
    quiet: bool,
) -> Result<Vec<PathBuf>> {
    prepare(out)?;
    let (edge, threshold) =
        if rectangular { (MarchenkoPastur::new(c).singular_edges().1, c.powf(0.25)) } else { (2.0, 1.0) };
    let predict = |t: f64| -> Option<f64> {
        if rectangular { rectangular_spike_outlier(t, c) } else { spiked_wigner_outliers(1.0, &[t]).first().copied() }
    };
    let pb = bar((thetas.len() as u64) * if simulate_n.is_some() { seeds } else { 0 }, quiet, "simulating");
    let mut table = String::from("theta,predicted,edge,simulated_mean,simulated_sd\n");
    let mut sim_points = Vec::new();
    let mut sim_err = Vec::new();
    println!(
        "{} BBP: edge {edge:.5}, threshold θ = {threshold:.5}",
        if rectangular { "rectangular" } else { "Wigner" }
    );
    println!("{:>8} {:>10} {:>18}", "θ", "predicted", "simulated");
    for &t in thetas {
        let p = predict(t);
        let sim = simulate_n.map(|n| {
            let tops: Vec<f64> = (0..seeds)
                .map(|seed| {
                    pb.inc(1);
                    if rectangular { simulate_rect_spike(t, c, n, seed) } else { simulate_wigner_spike(t, n, seed) }
                })
                .collect();
            mean_sd(&tops)
        });
        if let Some((m, sd)) = sim {
            sim_points.push((t, m));
            sim_err.push(sd);
        }
        table.push_str(&format!(
            "{t},{},{edge},{},{}\n",
            p.map(|v| v.to_string()).unwrap_or_default(),
            sim.map(|s| s.0.to_string()).unwrap_or_default(),
            sim.map(|s| s.1.to_string()).unwrap_or_default()
        ));
        println!(
            "{t:>8.3} {:>10} {:>18}",
            p.map(|v| format!("{v:.5}")).unwrap_or_else(|| "(none)".into()),
            sim.map(|(m, s)| format!("{m:.5} ± {s:.5}")).unwrap_or_else(|| "-".into())
        );
    }
    pb.finish_and_clear();
    let name = if rectangular { "bbp-rectangular" } else { "bbp-wigner" };
    let mut files = vec![write_text(&out.join(format!("{name}.csv")), &table)?];
    let tmax = thetas.iter().cloned().fold(threshold * 2.0, f64::max);
    let curve: Vec<(f64, f64)> =
        (0..=300).map(|i| 0.01 + tmax * i as f64 / 300.0).map(|t| (t, predict(t).unwrap_or(edge))).collect();
    let mut series = vec![Series { label: "prediction".into(), points: curve, color: 0, ..Default::default() }];
    if !sim_points.is_empty() {
        series.push(Series {
            label: format!("simulated top value, N = {}, {seeds} seeds", simulate_n.unwrap_or(0)),
            points: sim_points,
            color: 1,
            markers: true,
            y_err: sim_err,
            ..Default::default()
        });
    }
    let fig = Figure {
        title: if rectangular {
            format!("Rectangular BBP (Benaych-Georges–Nadakuditi), c = {c}")
        } else {
            "Spiked Wigner BBP (tutorial eqs. 92–94)".into()
        },
        panels: vec![Panel {
            title: if rectangular {
                "top singular value of X + θuvᵀ".into()
            } else {
                "top eigenvalue of M₀ + θuuᵀ".into()
            },
            x_label: "spike strength θ".into(),
            y_label: "outlier".into(),
            series,
            ref_lines: vec![
                RefLine { value: edge, label: "bulk edge".into(), vertical: false },
                RefLine { value: threshold, label: "threshold".into(), vertical: true },
            ],
            ..Default::default()
        }],
        columns: 1,
        panel_size: (760, 480),
    };
    files.extend(save_figure(&fig, &out.join(name))?);
    Ok(files)
}

/// Top eigenvalue of M₀ + θuuᵀ (GOE M₀, unit u).
pub fn simulate_wigner_spike(theta: f64, n: usize, seed: u64) -> f64 {
    let mut m = simulate::goe(n, seed);
    let u = simulate::unit_vector(n, seed, 0);
    for i in 0..n {
        for j in 0..n {
            m[(i, j)] += theta * u[i] * u[j];
        }
    }
    simulate::eigenvalues_desc(&m)[0]
}

/// Top singular value of X + θuvᵀ, X of n rows and round(n/c) columns with N(0, 1/cols).
pub fn simulate_rect_spike(theta: f64, c: f64, n: usize, seed: u64) -> f64 {
    let m = ((n as f64) / c).round() as usize;
    let mut x = simulate::gaussian(n, m, seed);
    let (u, v) = (simulate::unit_vector(n, seed, 0), simulate::unit_vector(m, seed, 1));
    for i in 0..n {
        for j in 0..m {
            x[(i, j)] += theta * u[i] * v[j];
        }
    }
    x.singular_values().map(|s| s[0]).unwrap_or(f64::NAN)
}

/// The endogenous Wigner model: outliers vs S (two-level DMFT, naive rule, simulation), and
/// the bulk at the last S.
pub fn wigner(
    model: &EndogenousWigner,
    steps: usize,
    simulate_n: Option<usize>,
    seeds: u64,
    every: usize,
    out: &Path,
    quiet: bool,
) -> Result<Vec<PathBuf>> {
    prepare(out)?;
    let lvl = model.level_one(steps);
    let mut table = String::from("S,method,rank,z\n");
    let mut two_level: Vec<Vec<f64>> = Vec::new();
    let mut naive: Vec<Vec<f64>> = Vec::new();
    for s in 1..=steps {
        let o = model.outliers(&lvl, s);
        let n = model.naive_outliers(&lvl, s);
        for (r, z) in o.upper.iter().chain(&o.lower).enumerate() {
            table.push_str(&format!("{s},two-level,{r},{z}\n"));
        }
        for (r, z) in n.iter().enumerate() {
            table.push_str(&format!("{s},naive,{r},{z}\n"));
        }
        two_level.push(o.upper);
        naive.push(n);
    }
    let mut files = vec![write_text(&out.join("wigner-outliers.csv"), &table)?];
    let sim_s: Vec<usize> = (1..=steps).filter(|s| s % every.max(1) == 0 || *s == steps).collect();
    let mut sim_top: Vec<Vec<f64>> = vec![Vec::new(); sim_s.len()];
    let mut last_bulk: Vec<f64> = Vec::new();
    if let Some(n) = simulate_n {
        let pb = bar(seeds, quiet, "simulating");
        let mut sim_table = String::from("S,seed,rank,eigenvalue\n");
        for seed in 0..seeds {
            let eig = simulate::endogenous_wigner(model, n, &sim_s, seed);
            for (k, (s, e)) in sim_s.iter().zip(&eig).enumerate() {
                sim_top[k].push(e[0]);
                for (r, v) in e.iter().take(5).enumerate() {
                    sim_table.push_str(&format!("{s},{seed},{r},{v}\n"));
                }
            }
            if let Some(e) = eig.last() {
                last_bulk.extend(e.iter().copied());
            }
            pb.inc(1);
        }
        pb.finish_and_clear();
        files.push(write_text(&out.join("wigner-simulated.csv"), &sim_table)?);
    }
    println!("Endogenous Wigner: γ = {}, η = {}, σ₀² = {}", model.gamma, model.eta, model.init_variance);
    println!("{:>4} {:>11} {:>11} {:>18}", "S", "two-level", "naive", "simulated top");
    for (k, s) in sim_s.iter().enumerate() {
        let fmt = |v: Option<&f64>| v.map(|x| format!("{x:.5}")).unwrap_or_else(|| "(none)".into());
        let sim = (!sim_top[k].is_empty()).then(|| mean_sd(&sim_top[k]));
        println!(
            "{s:>4} {:>11} {:>11} {:>18}",
            fmt(two_level[s - 1].first()),
            fmt(naive[s - 1].first()),
            sim.map(|(m, sd)| format!("{m:.5} ± {sd:.5}")).unwrap_or_else(|| "-".into())
        );
    }
    // Figure: trajectories and the bulk.
    let max_rank = two_level.iter().map(Vec::len).max().unwrap_or(0).min(6);
    let mut series = Vec::new();
    for r in 0..max_rank {
        let pts: Vec<(f64, f64)> =
            two_level.iter().enumerate().filter_map(|(i, o)| o.get(r).map(|z| ((i + 1) as f64, *z))).collect();
        series.push(Series {
            label: if r == 0 { "two-level DMFT (eq. 107)".into() } else { String::new() },
            points: pts,
            color: 0,
            ..Default::default()
        });
    }
    let naive_top: Vec<(f64, f64)> =
        naive.iter().enumerate().filter_map(|(i, o)| o.first().map(|z| ((i + 1) as f64, *z))).collect();
    series.push(Series {
        label: "naive rule (eq. 102)".into(),
        points: naive_top,
        color: 1,
        dashed: true,
        ..Default::default()
    });
    if simulate_n.is_some() {
        let (pts, err): (Vec<(f64, f64)>, Vec<f64>) = sim_s
            .iter()
            .zip(&sim_top)
            .map(|(s, t)| {
                let (m, sd) = mean_sd(t);
                ((*s as f64, m), sd)
            })
            .unzip();
        series.push(Series {
            label: format!("simulation N = {}, {seeds} seeds", simulate_n.unwrap_or(0)),
            points: pts,
            color: 2,
            markers: true,
            y_err: err,
            ..Default::default()
        });
    }
    let mut panels = vec![Panel {
        title: "outlier eigenvalues of M_S".into(),
        x_label: "spike steps S".into(),
        y_label: "eigenvalue".into(),
        series,
        ref_lines: vec![RefLine { value: 2.0, label: "bulk edge 2".into(), vertical: false }],
        ..Default::default()
    }];
    if !last_bulk.is_empty() {
        let sc = Semicircle;
        let curve: Vec<(f64, f64)> =
            (0..=200).map(|i| -2.0 + 4.0 * i as f64 / 200.0).map(|x| (x, sc.density(x))).collect();
        panels.push(Panel {
            title: format!("bulk of M_S at S = {steps}"),
            x_label: "eigenvalue".into(),
            y_label: "density".into(),
            series: vec![
                Series { label: "semicircle (eq. 44)".into(), points: curve, color: 0, ..Default::default() },
                Series {
                    label: "simulated".into(),
                    points: histogram(&last_bulk, -2.5, 2.5, 60),
                    color: 2,
                    markers: true,
                    ..Default::default()
                },
            ],
            legend_right: true,
            ..Default::default()
        });
    }
    let fig = Figure {
        title: format!("Endogenously spiked Wigner matrix (tutorial §11.1): γ = {}, η = {}", model.gamma, model.eta),
        columns: panels.len(),
        panels,
        panel_size: (640, 460),
    };
    files.extend(save_figure(&fig, &out.join("wigner"))?);
    Ok(files)
}

/// What `theory extensive` simulates next to the law.
#[derive(Clone, Debug, Default)]
pub struct ExtensiveSimulation {
    /// The update at this N (D = N/ν, C = χD).
    pub n: Option<usize>,
    /// Two-layer ν-scan at this fixed D: N = νD for ν = 2, 4, …, 64 (N ≤ [`SCAN_MAX_N`]).
    pub scan_d: Option<usize>,
    pub seeds: u64,
}

/// The largest N of a simulated ν-scan.
pub const SCAN_MAX_N: usize = 40_000;

/// Extensive outputs after one GD step (paper §5, App. F): a depth-L network goes to
/// [`extensive_deep`]; the two-layer one gets the predicted density and edges of W(1)ᵀW(1)/N, the
/// Dyson-equation cross-check, the upper edge across ν with its ν → ∞ limit (eq. 351), and with a
/// simulation the eigenvalue histogram, KS distance, largest eigenvalue and exact mean.
pub fn extensive(
    deep: &crate::theory::extensive::DeepOneStep,
    sim: &ExtensiveSimulation,
    out: &Path,
    quiet: bool,
) -> Result<Vec<PathBuf>> {
    use crate::theory::extensive::{OneStep, simulate as simulate_step};
    let (simulate_n, seeds) = (sim.n, sim.seeds);
    if deep.layers > 1 {
        return extensive_deep(deep, simulate_n, seeds, out, quiet);
    }
    let model = &deep.step;
    prepare(out)?;
    let t0 = std::time::Instant::now();
    let curve = model.density_curve(400);
    let solve_s = t0.elapsed().as_secs_f64();
    let mut files = Vec::new();
    let mut csv = String::from("x,density,cdf\n");
    let total = curve.cdf.last().copied().unwrap_or(1.0);
    for ((x, r), c) in curve.x.iter().zip(&curve.rho).zip(&curve.cdf) {
        csv.push_str(&format!("{x},{r},{}\n", c / total));
    }
    files.push(write_text(&out.join("extensive-density.csv"), &csv)?);
    // The upper edge across ν at fixed χ, γ₀, η₀.
    let nus: Vec<f64> = (0..=24).map(|i| 1.25 * (1024.0f64 / 1.25).powf(i as f64 / 24.0)).collect();
    let mut scan = String::from("nu,upper_edge,infinite_width_edge\n");
    let limit = model.infinite_width_upper_edge();
    let edge_scan: Vec<(f64, f64)> = nus
        .iter()
        .map(|nu| {
            let m = OneStep { nu: *nu, ..*model };
            let (_, hi) = m.edges(&m.population_law());
            scan.push_str(&format!("{nu},{hi},{limit}\n"));
            (*nu, hi)
        })
        .collect();
    files.push(write_text(&out.join("extensive-edge-scan.csv"), &scan)?);
    // The simulated ν-scan at fixed D: largest eigenvalue (mean ± SE over seeds) per ν.
    let mut scan_points: Vec<(f64, f64, f64)> = Vec::new();
    let mut scan_report = String::new();
    if let Some(d) = sim.scan_d {
        let nus: Vec<f64> =
            [2.0, 4.0, 8.0, 16.0, 32.0, 64.0].into_iter().filter(|nu| nu * d as f64 <= SCAN_MAX_N as f64).collect();
        let pb = bar(nus.len() as u64 * seeds, quiet, "ν-scan");
        let mut csv = String::from("nu,n,d,c,largest_mean,largest_se,edge,first_order_edge,infinite_width_edge\n");
        scan_report.push_str(&format!(
            "  simulated ν-scan at D = {d}, {seeds} seeds (largest eigenvalue vs the law's edge):\n"
        ));
        scan_report.push_str(&format!(
            "    {:>5} {:>6} {:>20} {:>10} {:>12} {:>10}\n",
            "ν", "N", "largest", "edge", "first order", "ν → ∞"
        ));
        for nu in nus {
            let m = OneStep { nu, ..*model };
            let n = (nu * d as f64).round() as usize;
            let tops: Vec<f64> = (0..seeds)
                .map(|seed| {
                    let top = simulate_step(&m, n, seed).first().copied().unwrap_or(f64::NAN);
                    pb.inc(1);
                    top
                })
                .collect();
            let (top, sd) = mean_sd(&tops);
            let se = sd / (seeds as f64).sqrt();
            let (_, edge) = m.edges(&m.population_law());
            let first = limit + m.edge_shift_coefficient() / nu;
            let c = (d as f64 * model.chi).round();
            csv.push_str(&format!("{nu},{n},{d},{c},{top},{se},{edge},{first},{limit}\n"));
            scan_report.push_str(&format!(
                "    {nu:>5} {n:>6} {top:>11.5} ± {se:.5} {edge:>10.5} {first:>12.5} {limit:>10.5}\n"
            ));
            scan_points.push((nu, top, se));
        }
        pb.finish_and_clear();
        files.push(write_text(&out.join("extensive-nu-scan.csv"), &csv)?);
    }
    // The collapse: relative edge shift vs ν/ν_c for several χ, γ₀ at this η₀ (and this model).
    let mut collapse_csv = String::from("chi,gamma0,eta0,nu,nu_over_nu_c,relative_shift\n");
    let mut collapse = Vec::new();
    let sets = [(0.5, 0.5), (0.5, 8.0), (4.0, 0.5), (4.0, 8.0), (model.chi, model.gamma0)];
    for (k, (chi, gamma0)) in sets.iter().enumerate() {
        let base = OneStep { chi: *chi, gamma0: *gamma0, ..*model };
        let (lim, nu_c) = (base.infinite_width_upper_edge(), base.edge_scaling_width());
        let pts: Vec<(f64, f64)> = nus
            .iter()
            .map(|nu| {
                let m = OneStep { nu: *nu, ..base };
                let (_, hi) = m.edges(&m.population_law());
                let rel = (hi - lim) / lim;
                collapse_csv.push_str(&format!("{chi},{gamma0},{},{nu},{},{rel}\n", model.eta0, nu / nu_c));
                (nu / nu_c, rel)
            })
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .collect();
        collapse.push(Series {
            label: format!("χ = {chi}, γ₀ = {gamma0}"),
            points: pts,
            color: k,
            markers: true,
            ..Default::default()
        });
    }
    if !scan_points.is_empty() {
        let nu_c = model.edge_scaling_width();
        collapse.push(Series {
            label: format!("simulated, χ = {}, γ₀ = {}", model.chi, model.gamma0),
            points: scan_points
                .iter()
                .map(|(nu, top, _)| (nu / nu_c, (top - limit) / limit))
                .filter(|p| p.1 > 0.0)
                .collect(),
            color: 6,
            markers: true,
            ..Default::default()
        });
    }
    let (lo_x, hi_x) = collapse
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    if lo_x < hi_x {
        let line = (0..=40).map(|i| lo_x * (hi_x / lo_x).powf(i as f64 / 40.0)).map(|x| (x, 1.0 / x)).collect();
        collapse.push(Series {
            label: "first order: ν_c/ν".into(),
            points: line,
            color: 7,
            dashed: true,
            ..Default::default()
        });
    }
    files.push(write_text(&out.join("extensive-collapse.csv"), &collapse_csv)?);
    let limit_mean = model.population_mean();
    println!(
        "One GD step, extensive outputs: ν = N/D = {}, χ = C/D = {}, γ₀ = {}, η₀ = {}",
        model.nu, model.chi, model.gamma0, model.eta0
    );
    println!("  support of W(1)ᵀW(1)/N   [{:.6}, {:.6}]", curve.lower_edge, curve.upper_edge);
    println!("  mean eigenvalue          {limit_mean:.6} (N, D → ∞)");
    println!("  ν → ∞ upper edge          {limit:.6} (eq. 351)");
    println!(
        "  first-order edge          {:.6} = λ₊(∞) + c₁/ν, c₁ = {:.6} (ν_c = {:.4})",
        limit + model.edge_shift_coefficient() / model.nu,
        model.edge_shift_coefficient(),
        model.edge_scaling_width()
    );
    println!("  density curve (400 points) solved in {solve_s:.2} s");
    // The independent route: the Dyson equation of the update's linearization (App. F.1's role).
    let t0 = std::time::Instant::now();
    let inner = &curve.x[1..curve.x.len() - 1];
    let dyson = deep.densities(inner);
    let gap = dyson.iter().zip(&curve.rho[1..]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let peak = curve.rho.iter().copied().fold(0.0, f64::max);
    println!(
        "  Dyson-equation route      max density gap {:.1e} of the peak over the curve's {} points ({:.2} s)",
        gap / peak,
        inner.len(),
        t0.elapsed().as_secs_f64()
    );
    print!("{scan_report}");
    let mut sims: Vec<f64> = Vec::new();
    if let Some(n) = simulate_n {
        let d = ((n as f64) / model.nu).round();
        let c = (d * model.chi).round();
        let (pooled, means, table, sim_s) = simulate_seeds(seeds, quiet, |seed| simulate_step(model, n, seed));
        files.push(write_text(&out.join("extensive-simulated.csv"), &table)?);
        println!("  simulated N = {n}, D = {d}, C = {c}, {seeds} seeds ({sim_s:.2} s each):");
        print_simulated(&curve, &pooled, &table_tops(&table));
        let (mean, sd) = mean_sd(&means);
        println!(
            "    mean eigenvalue        {mean:.6} ± {:.6} (exact at this N, C, D: {:.6})",
            sd / (seeds as f64).sqrt(),
            model.mean_eigenvalue(n as f64, c, d)
        );
        sims = pooled;
    }
    let mut series = vec![Series {
        label: "generalized MP (Silverstein)".into(),
        points: curve.x.iter().copied().zip(curve.rho.iter().copied()).collect(),
        color: 0,
        ..Default::default()
    }];
    if !sims.is_empty() {
        series.push(Series {
            label: format!("simulated N = {}, {seeds} seeds", simulate_n.unwrap_or(0)),
            points: histogram(&sims, 0.0, curve.upper_edge * 1.05, 80),
            color: 1,
            markers: true,
            ..Default::default()
        });
    }
    let fig = Figure {
        title: format!(
            "One GD step with extensive outputs (paper §5, App. F): ν = {}, χ = {}, γ₀ = {}, η₀ = {}",
            model.nu, model.chi, model.gamma0, model.eta0
        ),
        panels: vec![
            Panel {
                title: "eigenvalues of W(1)ᵀW(1)/N".into(),
                x_label: "λ".into(),
                y_label: "density".into(),
                series,
                ref_lines: vec![RefLine { value: curve.upper_edge, label: "upper edge".into(), vertical: true }],
                legend_right: true,
                ..Default::default()
            },
            Panel {
                title: "upper edge vs ν = N/D".into(),
                x_label: "ν".into(),
                y_label: "upper edge".into(),
                log_x: true,
                series: std::iter::once(Series {
                    label: "finite ν".into(),
                    points: edge_scan,
                    color: 0,
                    ..Default::default()
                })
                .chain((!scan_points.is_empty()).then(|| Series {
                    label: format!("simulated largest, D = {}", sim.scan_d.unwrap_or(0)),
                    points: scan_points.iter().map(|(nu, top, _)| (*nu, *top)).collect(),
                    color: 1,
                    markers: true,
                    ..Default::default()
                }))
                .collect(),
                ref_lines: vec![RefLine { value: limit, label: "ν → ∞ (eq. 351)".into(), vertical: false }],
                legend_right: true,
                ..Default::default()
            },
            Panel {
                title: format!("collapse: relative edge shift vs ν/ν_c (η₀ = {})", model.eta0),
                x_label: "ν / ν_c".into(),
                y_label: "(λ₊(ν) − λ₊(∞)) / λ₊(∞)".into(),
                log_x: true,
                log_y: true,
                series: collapse,
                legend_right: true,
                ..Default::default()
            },
        ],
        columns: 3,
        panel_size: (640, 440),
    };
    files.extend(save_figure(&fig, &out.join("extensive"))?);
    Ok(files)
}

/// Eigenvalues of `seeds` simulated updates (descending each): pooled, each seed's mean, the
/// table seed,largest,mean and the seconds per seed.
fn simulate_seeds(seeds: u64, quiet: bool, run: impl Fn(u64) -> Vec<f64>) -> (Vec<f64>, Vec<f64>, String, f64) {
    let pb = bar(seeds, quiet, "simulating");
    let t0 = std::time::Instant::now();
    let (mut pooled, mut means) = (Vec::new(), Vec::new());
    let mut table = String::from("seed,largest,mean\n");
    for seed in 0..seeds {
        let e = run(seed);
        let mean = e.iter().sum::<f64>() / e.len().max(1) as f64;
        table.push_str(&format!("{seed},{},{mean}\n", e.first().copied().unwrap_or(f64::NAN)));
        means.push(mean);
        pooled.extend(e);
        pb.inc(1);
    }
    pb.finish_and_clear();
    (pooled, means, table, t0.elapsed().as_secs_f64() / seeds.max(1) as f64)
}

/// The largest eigenvalues of a [`simulate_seeds`] table.
fn table_tops(table: &str) -> Vec<f64> {
    table.lines().skip(1).filter_map(|l| l.split(',').nth(1)?.parse().ok()).collect()
}

/// KS distance and the largest eigenvalue against the predicted upper edge.
fn print_simulated(curve: &crate::theory::extensive::Density, pooled: &[f64], tops: &[f64]) {
    let (top, sd) = mean_sd(tops);
    println!("    KS distance            {:.4}", curve.ks_distance(pooled));
    println!(
        "    largest eigenvalue     {top:.6} ± {:.6} (edge {:+.2}%)",
        sd / (tops.len() as f64).sqrt(),
        100.0 * (top - curve.upper_edge) / curve.upper_edge
    );
}

/// One GD step of a depth-L network at layer ℓ (App. F.3): the Dyson-equation density and edges
/// of W^ℓ(1)ᵀW^ℓ(1)/N, and with a simulation the histogram, KS distance and largest eigenvalue.
pub fn extensive_deep(
    model: &crate::theory::extensive::DeepOneStep,
    simulate_n: Option<usize>,
    seeds: u64,
    out: &Path,
    quiet: bool,
) -> Result<Vec<PathBuf>> {
    use crate::theory::extensive::simulate_deep;
    prepare(out)?;
    let s = &model.step;
    let t0 = std::time::Instant::now();
    let curve = model.density_curve(400);
    let solve_s = t0.elapsed().as_secs_f64();
    let mut files = Vec::new();
    let total = curve.cdf.last().copied().unwrap_or(1.0);
    let mut csv = String::from("x,density,cdf\n");
    for ((x, r), c) in curve.x.iter().zip(&curve.rho).zip(&curve.cdf) {
        csv.push_str(&format!("{x},{r},{}\n", c / total));
    }
    files.push(write_text(&out.join("extensive-density.csv"), &csv)?);
    let mean: f64 = curve
        .x
        .windows(2)
        .zip(curve.rho.windows(2))
        .map(|(x, r)| 0.5 * (x[0] * r[0] + x[1] * r[1]) * (x[1] - x[0]))
        .sum::<f64>()
        / total;
    println!(
        "One GD step, extensive outputs, layer {} of {} hidden layers (App. F.3): ν = {}, χ = {}, γ₀ = {}, η₀ = {}",
        model.layer, model.layers, s.nu, s.chi, s.gamma0, s.eta0
    );
    println!("  support of W^ℓ(1)ᵀW^ℓ(1)/N [{:.6}, {:.6}]", curve.lower_edge, curve.upper_edge);
    println!("  mean eigenvalue            {mean:.6} (N, D → ∞)");
    let pencil = model.pencil();
    println!(
        "  density curve (400 points) solved in {solve_s:.2} s (matrix Dyson equation: {} blocks, {} unknowns)",
        pencil.blocks(),
        pencil.unknowns()
    );
    let mut sims = Vec::new();
    if let Some(n) = simulate_n {
        let (pooled, means, table, sim_s) = simulate_seeds(seeds, quiet, |seed| simulate_deep(model, n, seed));
        files.push(write_text(&out.join("extensive-simulated.csv"), &table)?);
        let d = ((n as f64) / s.nu).round();
        println!("  simulated N = {n}, D = {d}, C = {}, {seeds} seeds ({sim_s:.2} s each):", (d * s.chi).round());
        print_simulated(&curve, &pooled, &table_tops(&table));
        let (m, sd) = mean_sd(&means);
        println!("    mean eigenvalue        {m:.6} ± {:.6}", sd / (seeds as f64).sqrt());
        sims = pooled;
    }
    // Density on a log scale (a square layer's density diverges like 1/√λ at 0) and the CDF,
    // the quantity the KS distance compares.
    let positive = |pts: Vec<(f64, f64)>| pts.into_iter().filter(|p| p.1 > 0.0).collect::<Vec<_>>();
    let total = curve.cdf.last().copied().unwrap_or(1.0);
    let mut density = vec![Series {
        label: "matrix Dyson equation".into(),
        points: positive(curve.x.iter().copied().zip(curve.rho.iter().copied()).collect()),
        color: 0,
        ..Default::default()
    }];
    let mut cdf = vec![Series {
        label: "matrix Dyson equation".into(),
        points: curve.x.iter().zip(&curve.cdf).map(|(x, c)| (*x, c / total)).collect(),
        color: 0,
        ..Default::default()
    }];
    if !sims.is_empty() {
        let label = format!("simulated N = {}, {seeds} seeds", simulate_n.unwrap_or(0));
        density.push(Series {
            label: label.clone(),
            points: positive(histogram(&sims, 0.0, curve.upper_edge * 1.05, 80)),
            color: 1,
            markers: true,
            ..Default::default()
        });
        let mut sorted = sims.clone();
        sorted.sort_by(f64::total_cmp);
        let stride = (sorted.len() / 200).max(1);
        let points = sorted
            .iter()
            .enumerate()
            .step_by(stride)
            .map(|(i, x)| (*x, (i + 1) as f64 / sorted.len() as f64))
            .collect();
        cdf.push(Series { label, points, color: 1, markers: true, ..Default::default() });
    }
    let edge = || vec![RefLine { value: curve.upper_edge, label: "upper edge".into(), vertical: true }];
    let fig = Figure {
        title: format!(
            "One GD step, layer {} of {} (App. F.3): ν = {}, χ = {}, γ₀ = {}, η₀ = {}",
            model.layer, model.layers, s.nu, s.chi, s.gamma0, s.eta0
        ),
        panels: vec![
            Panel {
                title: "density of W^ℓ(1)ᵀW^ℓ(1)/N".into(),
                x_label: "λ".into(),
                y_label: "density".into(),
                log_y: true,
                series: density,
                ref_lines: edge(),
                legend_right: true,
                ..Default::default()
            },
            Panel {
                title: "cumulative distribution".into(),
                x_label: "λ".into(),
                y_label: "CDF".into(),
                series: cdf,
                ref_lines: edge(),
                legend_right: true,
                ..Default::default()
            },
        ],
        columns: 2,
        panel_size: (640, 440),
    };
    files.extend(save_figure(&fig, &out.join("extensive"))?);
    Ok(files)
}

/// Deep linear networks in the proportional limit (paper §4, App. E): DMFT loss curves for
/// μP and NTK at several widths ν = N/D (fixed D and P), with direct GD at N = ν·D_sim.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    base: &crate::theory::linear::LinearNet,
    nus: &[f64],
    steps: usize,
    simulate_d: Option<usize>,
    seeds: u64,
    out: &Path,
    quiet: bool,
) -> Result<Vec<PathBuf>> {
    use crate::theory::linear::{LinearNet, Parameterization, simulate_spectra};
    use rayon::prelude::*;
    prepare(out)?;
    let pars = [Parameterization::Mup, Parameterization::Ntk];
    let name = |p: Parameterization| if p == Parameterization::Mup { "mup" } else { "ntk" };
    let mut csv = String::from("parameterization,nu,step,train,test,sim_train,sim_train_se,sim_test,sim_test_se\n");
    let mut out_csv = String::from(
        "parameterization,nu,layer,step,edge,outliers,top,second,sim_top,sim_top_se,sim_second,sim_second_se\n",
    );
    let depth = base.depth.max(1);
    // Outliers on at most 65 steps (a 2t × 2t eigenproblem each), the runs' spectra on 9.
    let grid: Vec<usize> = (0..=steps).step_by(steps.div_ceil(64).max(1)).chain([steps]).collect::<Vec<_>>();
    let grid: Vec<usize> =
        grid.iter().copied().enumerate().filter(|(i, t)| *i == 0 || grid[i - 1] != *t).map(|(_, t)| t).collect();
    let sim_at: Vec<usize> =
        (0..=8).map(|k| k * steps / 8).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    // Outlier panels: one per (parameterization, layer).
    let mut outlier_panels: Vec<Panel> = Vec::new();
    let mut outlier_rows = Vec::new();
    // The NTK's top (L = 1, full batch): 17 steps, one panel per parameterization.
    let with_ntk = depth == 1 && !base.online;
    let ntk_at: Vec<usize> =
        (0..=16).map(|k| k * steps / 16).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut ntk_csv =
        String::from("parameterization,nu,step,readout,population_top,edge,top,eta0_top,sim_top,sim_top_se\n");
    let mut ntk_panels: Vec<Panel> = Vec::new();
    let mut ntk_rows = Vec::new();
    let pb = bar((pars.len() * nus.len()) as u64, quiet, "solving");
    let mut panels = Vec::new();
    println!(
        "Linear network with L = {} hidden layer(s), proportional limit: α = {} ({}), γ₀ = {}, η₀ = {}, label noise σ_ε² = {}, T = {steps}",
        base.depth,
        base.alpha,
        if base.online { "fresh batch ratio B/D: online SGD" } else { "P/D: full batch" },
        base.gamma0,
        base.eta0,
        base.label_noise
    );
    println!("{:<5} {:>6} {:>12} {:>12} {:>22}", "par", "ν", "final train", "final test", "simulated final test");
    for par in pars {
        let mut series = Vec::new();
        for (k, nu) in nus.iter().enumerate() {
            let net = LinearNet { nu: *nu, parameterization: par, ..*base };
            let (th, orders) = net.solve_with_orders(steps);
            // [layer][grid step] outliers, largest first (module docs of theory::linear).
            let tops: Vec<Vec<Vec<f64>>> =
                orders.iter().map(|m| grid.par_iter().map(|&t| m.outliers(t)).collect()).collect();
            // Seed means and standard errors: (train, its SE, test, its SE).
            let mut sim: Option<[Vec<f64>; 4]> = None;
            let mut sim_tops: Option<SimTops> = None;
            // [checkpoint] seed mean and SE of the training-set NTK's top eigenvalue.
            let mut sim_ntk: Option<Vec<(f64, f64)>> = None;
            if let Some(d) = simulate_d {
                let n = (*nu * d as f64).round() as usize;
                let sims: Vec<_> = (0..seeds).map(|s| simulate_spectra(&net, n, steps, s, &sim_at, 2)).collect();
                let runs: Vec<_> = sims.iter().map(|s| s.curves.clone()).collect();
                let spectra: Vec<_> = sims.iter().map(|s| s.layers.clone()).collect();
                if with_ntk {
                    sim_ntk = Some(
                        (0..sim_at.len())
                            .map(|k| {
                                let (m, sd) = mean_sd(&sims.iter().map(|s| s.ntk[k][0]).collect::<Vec<_>>());
                                (m, sd / (seeds as f64).sqrt())
                            })
                            .collect(),
                    );
                }
                let stat_of = |xs: Vec<f64>| {
                    let (m, sd) = mean_sd(&xs);
                    (m, sd / (seeds as f64).sqrt())
                };
                sim_tops = Some(
                    (0..sim_at.len())
                        .map(|k| {
                            (0..depth)
                                .map(|l| {
                                    let pick = |r: usize| stat_of(spectra.iter().map(|s| s[k][l][r]).collect());
                                    [pick(0), pick(1)]
                                })
                                .collect()
                        })
                        .collect(),
                );
                let stat = |f: &dyn Fn(&crate::theory::linear::LinearCurves) -> &Vec<f64>| {
                    (0..=steps)
                        .map(|t| {
                            let xs: Vec<f64> = runs.iter().map(|r| f(r)[t]).collect();
                            let (m, sd) = mean_sd(&xs);
                            (m, sd / (seeds as f64).sqrt())
                        })
                        .unzip::<f64, f64, Vec<f64>, Vec<f64>>()
                };
                let (tr, tr_se) = stat(&|r| &r.train);
                let (te, te_se) = stat(&|r| &r.test);
                sim = Some([tr, tr_se, te, te_se]);
            }
            for t in 0..=steps {
                let s = sim
                    .as_ref()
                    .map(|[a, b, c, d]| format!("{},{},{},{}", a[t], b[t], c[t], d[t]))
                    .unwrap_or_else(|| ",,,".into());
                csv.push_str(&format!("{},{nu},{t},{},{},{s}\n", name(par), th.train[t], th.test[t]));
            }
            println!(
                "{:<5} {nu:>6} {:>12.4e} {:>12.4e} {:>22}",
                name(par),
                th.train[steps],
                th.test[steps],
                sim.as_ref()
                    .map(|[_, _, te, se]| format!("{:.4e} ± {:.1e}", te[steps], se[steps]))
                    .unwrap_or_else(|| "-".into())
            );
            for (l, m) in orders.iter().enumerate() {
                let edge = m.edge();
                for (i, &t) in grid.iter().enumerate() {
                    let o = &tops[l][i];
                    let at = |r: usize| o.get(r).map(|v| v.to_string()).unwrap_or_default();
                    let sim_part = match (&sim_tops, sim_at.iter().position(|s| *s == t)) {
                        (Some(st), Some(k)) => {
                            let [(a, b), (c, d)] = st[k][l];
                            format!("{a},{b},{c},{d}")
                        }
                        _ => ",,,".into(),
                    };
                    out_csv.push_str(&format!(
                        "{},{nu},{l},{t},{edge},{},{},{},{sim_part}\n",
                        name(par),
                        o.len(),
                        at(0),
                        at(1)
                    ));
                }
                let escape = grid.iter().zip(&tops[l]).find(|(_, o)| !o.is_empty()).map(|(t, _)| *t);
                let last = tops[l].last().and_then(|o| o.first().copied());
                let sim_last = sim_tops.as_ref().and_then(|st| st.last()).map(|row| row[l][0]);
                outlier_rows.push((name(par), *nu, l, edge, escape, last, sim_last));
                // The panel of (par, layer): theory line per ν, GD points.
                let idx = pars.iter().position(|p| *p == par).unwrap_or(0) * depth + l;
                if outlier_panels.len() <= idx {
                    outlier_panels.resize_with(idx + 1, Panel::default);
                }
                let panel = &mut outlier_panels[idx];
                panel.title = format!("{}: top eigenvalue of W{}ᵀW{}/N", name(par), sup(l), sup(l));
                panel.x_label = "step".into();
                panel.y_label = "largest eigenvalue (the bulk edge where none)".into();
                panel.series.push(Series {
                    label: format!("DMFT ν = {nu}"),
                    points: grid
                        .iter()
                        .zip(&tops[l])
                        .map(|(t, o)| (*t as f64, o.first().copied().unwrap_or(edge)))
                        .collect(),
                    color: k,
                    ..Default::default()
                });
                if let Some(st) = &sim_tops {
                    panel.series.push(Series {
                        label: format!("GD N = {}", (*nu * simulate_d.unwrap_or(0) as f64).round()),
                        points: sim_at.iter().zip(st).map(|(t, row)| (*t as f64, row[l][0].0)).collect(),
                        y_err: st.iter().map(|row| row[l][0].1).collect(),
                        color: k,
                        markers: true,
                        ..Default::default()
                    });
                }
                if k == 0 {
                    panel.ref_lines.push(RefLine { value: edge, label: "bulk edge".into(), vertical: false });
                }
            }
            if let Some(tops) = with_ntk.then(|| net.ntk(steps, &ntk_at)).flatten() {
                let e0 = net.eta0;
                for top in &tops {
                    let sim_part = match (&sim_ntk, sim_at.iter().position(|s| *s == top.step)) {
                        (Some(st), Some(k)) => format!("{},{}", st[k].0, st[k].1),
                        _ => ",".into(),
                    };
                    ntk_csv.push_str(&format!(
                        "{},{nu},{},{},{},{},{},{},{sim_part}\n",
                        name(par),
                        top.step,
                        top.readout,
                        top.population,
                        top.edge,
                        top.top(),
                        e0 * top.top()
                    ));
                }
                let last = tops.last().map(|t| e0 * t.top()).unwrap_or(f64::NAN);
                let peak = tops.iter().map(|t| e0 * t.top()).fold(f64::NAN, f64::max);
                let sim_last = sim_ntk.as_ref().and_then(|st| st.last()).map(|(m, se)| (e0 * m, e0 * se));
                ntk_rows.push((name(par), *nu, peak, last, sim_last));
                let idx = pars.iter().position(|p| *p == par).unwrap_or(0);
                if ntk_panels.len() <= idx {
                    ntk_panels.resize_with(idx + 1, Panel::default);
                }
                let panel = &mut ntk_panels[idx];
                panel.title = format!("{}: η·λ_max of the training-set NTK", name(par));
                panel.x_label = "step".into();
                panel.y_label = "η₀·λ_max(KΣ̂)".into();
                panel.series.push(Series {
                    label: format!("DMFT ν = {nu}"),
                    points: tops.iter().map(|t| (t.step as f64, e0 * t.top())).collect(),
                    color: k,
                    ..Default::default()
                });
                if let Some(st) = &sim_ntk {
                    panel.series.push(Series {
                        label: format!("GD N = {}", (*nu * simulate_d.unwrap_or(0) as f64).round()),
                        points: sim_at.iter().zip(st).map(|(t, (m, _))| (*t as f64, e0 * m)).collect(),
                        y_err: st.iter().map(|(_, se)| e0 * se).collect(),
                        color: k,
                        markers: true,
                        ..Default::default()
                    });
                }
                if k == 0 {
                    panel.ref_lines.push(RefLine {
                        value: 2.0,
                        label: "2 (edge of stability)".into(),
                        vertical: false,
                    });
                }
            }
            series.push(Series {
                label: format!("DMFT ν = {nu}"),
                points: th.test.iter().enumerate().map(|(t, v)| (t as f64, *v)).collect(),
                color: k,
                ..Default::default()
            });
            if let Some([_, _, te, se]) = &sim {
                let every = (steps / 16).max(1);
                let idx: Vec<usize> = (0..=steps).filter(|t| t % every == 0).collect();
                series.push(Series {
                    label: format!("GD N = {}", (*nu * simulate_d.unwrap_or(0) as f64).round()),
                    points: idx.iter().map(|t| (*t as f64, te[*t])).collect(),
                    y_err: idx.iter().map(|t| se[*t]).collect(),
                    color: k,
                    markers: true,
                    ..Default::default()
                });
            }
            pb.inc(1);
        }
        panels.push(Panel {
            title: format!(
                "{}: test loss (g = {})",
                name(par),
                if par == Parameterization::Mup { "γ₀" } else { "γ₀/√ν" }
            ),
            x_label: "step".into(),
            y_label: "test loss ½|u − β/√D|²".into(),
            log_y: true,
            series,
            legend_right: true,
            ..Default::default()
        });
    }
    pb.finish_and_clear();
    let mut files = vec![write_text(&out.join("linear-losses.csv"), &csv)?];
    let fig = Figure {
        title: format!(
            "Linear network (L = {}), proportional limit (paper §4): α = {}, γ₀ = {}, η₀ = {} — μP is width-consistent, NTK slows down",
            base.depth, base.alpha, base.gamma0, base.eta0
        ),
        panels,
        columns: 2,
        panel_size: (700, 460),
    };
    files.extend(save_figure(&fig, &out.join("linear"))?);
    // Outliers (module docs of theory::linear, "Outliers"): escape step and final value.
    println!(
        "\nTop outlier of each layer's WᵀW/N (theory on {} steps; escape = first of them with an outlier):",
        grid.len()
    );
    println!(
        "{:<5} {:>6} {:>6} {:>8} {:>8} {:>12} {:>22}",
        "par", "ν", "layer", "edge", "escape", "final top", "simulated final top"
    );
    for (par, nu, l, edge, escape, last, sim_last) in &outlier_rows {
        println!(
            "{par:<5} {nu:>6} {:>6} {edge:>8.4} {:>8} {:>12} {:>22}",
            format!("W{}", sup(*l)),
            escape.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
            last.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into()),
            sim_last.map(|(m, se)| format!("{m:.4} ± {se:.4}")).unwrap_or_else(|| "-".into())
        );
    }
    files.push(write_text(&out.join("linear-outliers.csv"), &out_csv)?);
    let fig = Figure {
        title: format!(
            "Linear network (L = {}): outliers of every layer (App. E.12) — α = {}, γ₀ = {}, η₀ = {}",
            base.depth, base.alpha, base.gamma0, base.eta0
        ),
        panels: outlier_panels,
        columns: depth.min(3),
        panel_size: (600, 420),
    };
    files.extend(save_figure(&fig, &out.join("linear-outliers"))?);
    if with_ntk {
        println!(
            "\nTop of the training-set NTK (η·λ_max = η₀·λ_max(KΣ̂); above 2 full-batch GD cannot settle along its top mode: a period-2 orbit (the edge of stability) or divergence):"
        );
        println!("{:<5} {:>6} {:>12} {:>12} {:>22}", "par", "ν", "peak", "final", "simulated final");
        for (par, nu, peak, last, sim_last) in &ntk_rows {
            println!(
                "{par:<5} {nu:>6} {peak:>12.4} {last:>12.4} {:>22}",
                sim_last.map(|(m, se)| format!("{m:.4} ± {se:.4}")).unwrap_or_else(|| "-".into())
            );
        }
        files.push(write_text(&out.join("linear-ntk.csv"), &ntk_csv)?);
        let fig = Figure {
            title: format!(
                "Linear network (L = 1): top NTK eigenvalue on the training set — α = {}, γ₀ = {}, η₀ = {}",
                base.alpha, base.gamma0, base.eta0
            ),
            panels: ntk_panels,
            columns: 2,
            panel_size: (600, 420),
        };
        files.extend(save_figure(&fig, &out.join("linear-ntk"))?);
    }
    Ok(files)
}

/// `specdyn theory linear --teacher-scales`: several outputs at L = 1 (App. E.13), the first
/// layer's outliers per output next to direct GD's top eigenvalues.
pub fn linear_classes(
    base: &crate::theory::linear::LinearNet,
    nus: &[f64],
    scales: &[f64],
    steps: usize,
    simulate_d: Option<usize>,
    seeds: u64,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    use crate::theory::linear::{LinearClasses, LinearNet, Parameterization, simulate_classes};
    use rayon::prelude::*;
    prepare(out)?;
    let cls = scales.len();
    let name = |p: Parameterization| if p == Parameterization::Mup { "mup" } else { "ntk" };
    let grid: Vec<usize> = (0..=steps).step_by(steps.div_ceil(64).max(1)).chain([steps]).collect();
    let grid: Vec<usize> =
        grid.iter().copied().enumerate().filter(|(i, t)| *i == 0 || grid[i - 1] != *t).map(|(_, t)| t).collect();
    let sim_at: Vec<usize> =
        (0..=8).map(|k| k * steps / 8).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut csv = String::from("parameterization,nu,step,test,rank,edge,dmft,sim,sim_se\n");
    let mut panels = Vec::new();
    println!(
        "Linear network (L = 1) with {cls} outputs, teacher scales {scales:?}: α = {}, γ₀ = {}, η₀ = {}, T = {steps}",
        base.alpha, base.gamma0, base.eta0
    );
    println!("{:<5} {:>6} {:>12}  first-layer outliers at T (DMFT; GD mean ± SE)", "par", "ν", "final test");
    for par in [Parameterization::Mup, Parameterization::Ntk] {
        for nu in nus {
            let problem =
                LinearClasses { net: LinearNet { nu: *nu, parameterization: par, ..*base }, scales: scales.to_vec() };
            let (curves, order) = problem.solve(steps);
            let edge = order.edge();
            let tops: Vec<Vec<f64>> = grid.par_iter().map(|&t| order.outliers(t * cls)).collect();
            // [checkpoint][rank] seed mean and SE of the top C eigenvalues.
            let sim: Option<Vec<Vec<(f64, f64)>>> = simulate_d.map(|d| {
                let n = (*nu * d as f64).round() as usize;
                let runs: Vec<_> = (0..seeds).map(|s| simulate_classes(&problem, n, steps, s, &sim_at, cls)).collect();
                (0..sim_at.len())
                    .map(|k| {
                        (0..cls)
                            .map(|r| {
                                let (m, sd) = mean_sd(&runs.iter().map(|x| x.1[k][r]).collect::<Vec<_>>());
                                (m, sd / (seeds as f64).sqrt())
                            })
                            .collect()
                    })
                    .collect()
            });
            for (i, &t) in grid.iter().enumerate() {
                for r in 0..cls {
                    let th = tops[i].get(r).map(|v| v.to_string()).unwrap_or_default();
                    let sim_part = match (&sim, sim_at.iter().position(|s| *s == t)) {
                        (Some(st), Some(k)) => format!("{},{}", st[k][r].0, st[k][r].1),
                        _ => ",".into(),
                    };
                    csv.push_str(&format!("{},{nu},{t},{},{r},{edge},{th},{sim_part}\n", name(par), curves.test[t]));
                }
            }
            let last = tops.last().cloned().unwrap_or_default();
            let fmt_th: Vec<String> = last.iter().map(|v| format!("{v:.4}")).collect();
            let fmt_sim: Vec<String> = sim
                .as_ref()
                .and_then(|st| st.last())
                .map(|row| row.iter().map(|(m, se)| format!("{m:.4} ± {se:.4}")).collect())
                .unwrap_or_default();
            println!(
                "{:<5} {nu:>6} {:>12.4e}  {}{}",
                name(par),
                curves.test[steps],
                fmt_th.join(", "),
                if fmt_sim.is_empty() { String::new() } else { format!("; GD {}", fmt_sim.join(", ")) }
            );
            let mut series = Vec::new();
            for r in 0..cls {
                series.push(Series {
                    label: format!("DMFT outlier {} (s = {})", r + 1, {
                        let mut sorted = scales.to_vec();
                        sorted.sort_by(|a, b| b.total_cmp(a));
                        sorted[r]
                    }),
                    points: grid
                        .iter()
                        .zip(&tops)
                        .map(|(t, o)| (*t as f64, o.get(r).copied().unwrap_or(edge)))
                        .collect(),
                    color: r,
                    ..Default::default()
                });
                if let Some(st) = &sim {
                    series.push(Series {
                        label: format!("GD eigenvalue {}", r + 1),
                        points: sim_at.iter().zip(st).map(|(t, row)| (*t as f64, row[r].0)).collect(),
                        y_err: st.iter().map(|row| row[r].1).collect(),
                        color: r,
                        markers: true,
                        ..Default::default()
                    });
                }
            }
            panels.push(Panel {
                title: format!("{} ν = {nu}: top eigenvalues of W⁰ᵀW⁰/N", name(par)),
                x_label: "step".into(),
                y_label: "eigenvalue (the bulk edge where no outlier)".into(),
                series,
                ref_lines: vec![RefLine { value: edge, label: "bulk edge".into(), vertical: false }],
                ..Default::default()
            });
        }
    }
    let mut files = vec![write_text(&out.join("linear-classes.csv"), &csv)?];
    let fig = Figure {
        title: format!(
            "Linear network (L = 1), {cls} outputs (App. E.13): one outlier per teacher above the BBP threshold"
        ),
        panels,
        columns: nus.len().clamp(1, 3),
        panel_size: (600, 420),
    };
    files.extend(save_figure(&fig, &out.join("linear-classes"))?);
    Ok(files)
}

/// [checkpoint][layer] seed mean and standard error of the top two eigenvalues of WᵀW/N.
type SimTops = Vec<Vec<[(f64, f64); 2]>>;

/// A layer index as a superscript (W⁰, W¹, …).
fn sup(l: usize) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    l.to_string().chars().map(|c| DIGITS[c.to_digit(10).unwrap_or(0) as usize]).collect()
}
