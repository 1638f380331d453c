//! The extensive-output one-step law (src/theory/extensive.rs) against direct simulation of
//! the one-step update at N = 2000: density (KS distance), upper edge, exact mean.

use specdyn::theory::extensive::{OneStep, simulate};

/// Layer `layer` of a run's exported weights, as exported ([rows, cols]).
fn weight(run: &specdyn::train::Trainer<burn::backend::Flex>, layer: usize) -> faer::Mat<f64> {
    let w = &run.model.export()[layer];
    let (rows, cols) = (w.shape[0], w.shape[1]);
    faer::Mat::from_fn(rows, cols, |i, j| w.data[i * cols + j] as f64)
}

/// The run's next batch as X (P × D) and Y (P × C).
fn batch(
    run: &mut specdyn::train::Trainer<burn::backend::Flex>,
    d: usize,
    c: usize,
) -> (faer::Mat<f64>, faer::Mat<f64>) {
    let (x, y) = run.batch();
    let p = x.dims()[0];
    let (x, y) = (specdyn::model::tensor_to_vec(x), specdyn::model::tensor_to_vec(y));
    (faer::Mat::from_fn(p, d, |i, j| x[i * d + j] as f64), faer::Mat::from_fn(p, c, |i, j| y[i * c + j] as f64))
}

#[test]
fn one_step_bulk_matches_simulation_at_n_2000() {
    let n = 2000;
    for (nu, chi) in [(5.0, 4.0), (2.0, 1.0), (8.0, 0.5)] {
        for gamma0 in [0.5, 2.0, 8.0] {
            let m = OneStep { nu, chi, gamma0, eta0: 0.2 };
            let t0 = std::time::Instant::now();
            let curve = m.density_curve(400);
            let solve_s = t0.elapsed().as_secs_f64();
            let d = (n as f64 / nu).round();
            let c = (d * chi).round();
            let seeds = 4;
            let mut pooled = Vec::new();
            let mut top = 0.0;
            let mut means = Vec::new();
            for seed in 0..seeds {
                let e = simulate(&m, n, seed);
                top += e[0] / seeds as f64;
                means.push(e.iter().sum::<f64>() / e.len() as f64);
                pooled.extend(e);
            }
            let mean = means.iter().sum::<f64>() / seeds as f64;
            let se = (means.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (seeds * (seeds - 1)) as f64).sqrt();
            let exact_mean = m.mean_eigenvalue(n as f64, c, d);
            let ks_max = curve.ks_distance(&pooled);
            let edge_gap = (top - curve.upper_edge) / curve.upper_edge;
            eprintln!(
                "ν={nu} χ={chi} γ₀={gamma0}: KS {ks_max:.4}, edge {:.4} vs largest {top:.4} ({:+.2}%), mean {mean:.4} ± {se:.4} vs {exact_mean:.4}, mass {:.6}, solve {solve_s:.2} s",
                curve.upper_edge,
                100.0 * edge_gap,
                curve.cdf.last().unwrap()
            );
            assert!(ks_max < 0.01, "ν={nu} χ={chi} γ₀={gamma0}: KS {ks_max}");
            assert!((mean - exact_mean).abs() < 0.005 * exact_mean, "mean {mean} vs {exact_mean}");
            assert!((curve.cdf.last().unwrap() - 1.0).abs() < 2e-3, "density mass {}", curve.cdf.last().unwrap());
            // The edge where D ≥ 400: within 1%, except at γ₀ = 8, where the edge is set by the
            // few largest population values and the largest simulated eigenvalue stays 1–1.6%
            // below it at N = 1000, 2000, 4000 (a slow finite-size edge; ISSUE note).
            if d >= 400.0 {
                let tol = if gamma0 < 4.0 { 0.01 } else { 0.02 };
                assert!(edge_gap.abs() < tol, "ν={nu} χ={chi} γ₀={gamma0}: edge gap {edge_gap}");
            }
        }
    }
}

#[test]
fn the_upper_edge_approaches_the_infinite_width_limit() {
    // Paper eq. 351: at fixed χ the upper edge tends to 1 + η₀²γ₀²(1 + √χ)² as ν → ∞.
    let mut gaps = Vec::new();
    for nu in [2.0, 8.0, 32.0, 128.0, 512.0] {
        let m = OneStep { nu, chi: 1.0, gamma0: 2.0, eta0: 0.2 };
        let law = m.population_law();
        let (_, hi) = m.edges(&law);
        let limit = m.infinite_width_upper_edge();
        gaps.push((hi - limit).abs() / limit);
        eprintln!("ν = {nu}: edge {hi:.5}, limit {limit:.5}");
    }
    assert!(gaps.windows(2).all(|w| w[1] < w[0]), "gaps {gaps:?} do not shrink");
    assert!(*gaps.last().unwrap() < 0.02, "gap at ν = 512: {gaps:?}");
}

#[test]
fn the_first_order_edge_correction_matches_the_exact_law_at_large_width() {
    // ν(λ₊(ν) − λ₊(∞)) → c₁: the relative error falls at least 10× from ν = 64 to 4096 (it
    // shrinks like 1/ν where the O(1/ν²) term dominates) and is below 1% at ν = 4096.
    for (chi, gamma0, eta0) in [(1.0, 2.0, 0.2), (4.0, 0.5, 0.5), (0.5, 8.0, 0.1), (2.0, 1.0, 1.0)] {
        let mut errors = Vec::new();
        for nu in [64.0, 256.0, 1024.0, 4096.0] {
            let m = OneStep { nu, chi, gamma0, eta0 };
            let (_, hi) = m.edges(&m.population_law());
            let scaled = nu * (hi - m.infinite_width_upper_edge());
            let c1 = m.edge_shift_coefficient();
            errors.push(((scaled - c1) / c1).abs());
            eprintln!("χ={chi} γ₀={gamma0} η₀={eta0} ν={nu}: ν·shift {scaled:.5} vs c₁ {c1:.5}");
        }
        assert!(errors[3] < errors[0] / 10.0 && errors[3] < 0.01, "χ={chi} γ₀={gamma0} η₀={eta0}: errors {errors:?}");
    }
}

#[test]
fn one_step_of_specdyn_train_is_the_laws_update() {
    // configs/extensive-one-step.toml: the network `specdyn train` runs is the law's (ν = 5,
    // χ = 4, γ₀ = 2, η₀ = 0.2; N = 1000, D = 200, C = 800). (a) Its first step is the population
    // update with the sample covariance Σ̂ = XᵀX/P in place of I:
    // W(1) − W(0) = [−(η₀/N)AAᵀW(0) + η₀γ₀ABᵀ/√D] Σ̂, checked on the run's own W(0), A and data
    // (Bᵀ/√D = YᵀX(XᵀX)⁻¹, exact without label noise). (b) The spectrum of W(1)ᵀW(1)/N: the
    // population update on the same draws against the law, and the run's (P = 40D samples).
    use burn::backend::Flex;
    use faer::Mat;
    use specdyn::compare::linear::extensive_problem;
    use specdyn::config::RunConfig;
    use specdyn::train::Trainer;
    let text = std::fs::read_to_string("configs/extensive-one-step.toml").expect("config");
    let cfg = RunConfig::from_toml_str(&text, &[]).expect("valid config");
    let m = extensive_problem(&cfg).expect("a one-step law").step;
    assert_eq!((m.nu, m.chi, m.gamma0, m.eta0), (5.0, 4.0, 2.0, 0.2));
    let (n, d, c) = (cfg.model.width, cfg.data.input_dim, cfg.output_dim());
    let mut run = Trainer::<Flex>::new(cfg, Default::default()).expect("trainer");
    let (w0, a) = (weight(&run, 0), weight(&run, 1).transpose().to_owned()); // N × D, N × C
    let (x, y) = batch(&mut run, d, c);
    let p = x.nrows();
    run.train_step();
    let w1 = weight(&run, 0);
    let sigma = x.transpose() * &x * (1.0 / p as f64);
    let yx = y.transpose() * &x * (1.0 / p as f64); // (Bᵀ/√D) Σ̂
    let aaw = &a * (a.transpose() * &w0);
    let predicted = (&aaw * &sigma) * (-m.eta0 / n as f64) + (&a * &yx) * (m.eta0 * m.gamma0);
    let moved = &w1 - &w0;
    let err = (&moved - &predicted).norm_l2() / predicted.norm_l2();
    eprintln!("one step: ‖ΔW_run − ΔW_law(Σ̂)‖/‖ΔW‖ = {err:.2e}");
    assert!(err < 1e-4, "the run's first step is not the model's: {err}");
    // (b) Spectra against the law.
    use faer::linalg::solvers::Solve;
    let b_over = sigma.partial_piv_lu().solve(yx.transpose()).transpose().to_owned(); // Bᵀ/√D (C × D), Σ̂ symmetric
    let population = &w0 - &aaw * (m.eta0 / n as f64) + (&a * &b_over) * (m.eta0 * m.gamma0);
    let eig =
        |w: &Mat<f64>| (w.transpose() * w * (1.0 / n as f64)).self_adjoint_eigenvalues(faer::Side::Lower).unwrap();
    let curve = m.density_curve(400);
    let exact_mean = m.mean_eigenvalue(n as f64, c as f64, d as f64);
    // Measured: population step KS 0.0135, mean −0.03%; the run KS 0.024, mean +1.2% (its Σ̂
    // adds an O(D/P) = 2.5% correction the population law leaves out).
    for (what, e, ks_max, mean_tol) in
        [("population step", eig(&population), 0.03, 0.005), ("run (P = 40D)", eig(&w1), 0.05, d as f64 / p as f64)]
    {
        let mean = e.iter().sum::<f64>() / e.len() as f64;
        let ks = curve.ks_distance(&e);
        let top = e.iter().cloned().fold(f64::MIN, f64::max);
        eprintln!(
            "{what}: KS {ks:.4}, mean {mean:.4} vs {exact_mean:.4} ({:+.2}%), largest {top:.4} vs edge {:.4}",
            100.0 * (mean / exact_mean - 1.0),
            curve.upper_edge
        );
        assert!(ks < ks_max, "{what}: KS {ks}");
        assert!((mean / exact_mean - 1.0).abs() < mean_tol, "{what}: mean {mean} vs {exact_mean}");
    }
}

#[test]
fn a_layer_of_a_deeper_network_matches_simulation_at_n_2000() {
    // App. F.3 (src/theory/extensive.rs, "Deeper networks"): the matrix Dyson equation of the
    // update's linearization against the exact population step at N = 2000, 3 seeds. Tolerances
    // (issue): KS < 0.02 on the pooled eigenvalues, upper edge within 3% of the mean largest
    // eigenvalue. Cases: L = 2 hidden layer W¹ (N × N) at two (ν, χ, γ₀), L = 2 first layer W⁰
    // (D × D), and the middle layer of L = 3.
    use specdyn::theory::extensive::{DeepOneStep, simulate_deep};
    let n = 2000;
    for (layers, layer, nu, chi, gamma0, eta0) in
        [(2, 1, 2.0, 1.0, 2.0, 0.2), (2, 1, 5.0, 4.0, 1.0, 0.2), (2, 0, 2.0, 1.0, 2.0, 0.2), (3, 1, 4.0, 2.0, 1.0, 0.1)]
    {
        let m = DeepOneStep { step: OneStep { nu, chi, gamma0, eta0 }, layers, layer };
        let t0 = std::time::Instant::now();
        let curve = m.density_curve(400);
        let solve_s = t0.elapsed().as_secs_f64();
        let seeds = 3;
        let mut pooled = Vec::new();
        let mut top = 0.0;
        for seed in 0..seeds {
            let e = simulate_deep(&m, n, seed);
            top += e[0] / seeds as f64;
            pooled.extend(e);
        }
        let ks = curve.ks_distance(&pooled);
        let edge_gap = (top - curve.upper_edge) / curve.upper_edge;
        let mass = curve.cdf.last().unwrap();
        eprintln!(
            "L={layers} ℓ={layer} ν={nu} χ={chi} γ₀={gamma0} η₀={eta0}: KS {ks:.4}, edge {:.4} vs largest {top:.4} ({:+.2}%), support from {:.4}, mass {mass:.5}, solve {solve_s:.2} s",
            curve.upper_edge,
            100.0 * edge_gap,
            curve.lower_edge
        );
        assert!(ks < 0.02, "L={layers} ℓ={layer} ν={nu} χ={chi}: KS {ks}");
        assert!((mass - 1.0).abs() < 1e-3, "L={layers} ℓ={layer}: density mass {mass}");
        assert!(edge_gap.abs() < 0.03, "L={layers} ℓ={layer} ν={nu} χ={chi}: edge gap {edge_gap}");
    }
}

#[test]
fn one_step_of_a_deeper_network_in_specdyn_train_is_the_update() {
    // configs/extensive-one-step.toml at model.depth = 2 (N = 400, D = 100, C = 200): the hidden
    // layer's first step is the update of the module docs ("Deeper networks") with Σ̂ = XᵀX/P in
    // place of I: ΔŴ¹ = −η₀ÂÂᵀŴ¹Ŵ⁰Σ̂Ŵ⁰ᵀ + η₀γ₀Â(YᵀX/P)Ŵ⁰ᵀ (hats /√N), on the run's own weights and
    // data. The law `theory extensive CONFIG` solves is this one (L = 2, ℓ = 1).
    use burn::backend::Flex;
    use specdyn::compare::linear::extensive_problem;
    use specdyn::config::RunConfig;
    use specdyn::train::Trainer;
    let text = std::fs::read_to_string("configs/extensive-one-step.toml").expect("config");
    let sets: Vec<String> =
        ["model.depth=2", "model.width=400", "data.input_dim=100", "data.outputs=200", "data.train_size=2000"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let cfg = RunConfig::from_toml_str(&text, &sets).expect("valid config");
    let m = extensive_problem(&cfg).expect("a one-step law");
    assert_eq!((m.layers, m.layer, m.step.nu, m.step.chi), (2, 1, 4.0, 2.0));
    let (n, d, c) = (cfg.model.width, cfg.data.input_dim, cfg.output_dim());
    let mut run = Trainer::<Flex>::new(cfg, Default::default()).expect("trainer");
    let inv_root = 1.0 / (n as f64).sqrt();
    let (w0, w1, a) =
        (weight(&run, 0) * inv_root, weight(&run, 1) * inv_root, weight(&run, 2).transpose().to_owned() * inv_root);
    assert_eq!((w0.nrows(), w0.ncols(), w1.nrows(), a.ncols()), (n, d, n, c));
    let (x, y) = batch(&mut run, d, c);
    let p = x.nrows();
    run.train_step();
    let moved = weight(&run, 1) * inv_root - &w1;
    let sigma = x.transpose() * &x * (1.0 / p as f64);
    let yx = y.transpose() * &x * (1.0 / p as f64);
    let (eta0, gamma0) = (m.step.eta0, m.step.gamma0);
    let predicted = (&a * (a.transpose() * &w1) * &w0 * &sigma * w0.transpose()) * (-eta0)
        + (&a * &yx * w0.transpose()) * (eta0 * gamma0);
    let err = (&moved - &predicted).norm_l2() / predicted.norm_l2();
    eprintln!("depth 2, hidden layer: ‖ΔŴ¹_run − ΔŴ¹_law(Σ̂)‖/‖ΔŴ¹‖ = {err:.2e}");
    assert!(err < 1e-4, "the run's hidden-layer step is not the update: {err}");
}

#[test]
fn the_gamma8_edge_gap_is_not_the_readouts_finite_size_spectrum() {
    // At γ₀ = 8 (ν = 5, χ = 4) the largest simulated eigenvalue stays 1–1.6% below the law's edge
    // at N = 1000 … 4000 (README). The edge there is set by the largest population values
    // k(a) ≈ η₀²γ₀²ν·a, i.e. by the top of the readout's AAᵀ/N spectrum, which at finite N sits
    // below its MP edge — a candidate explanation. Conditioning on the draw's own A (Silverstein's
    // equation with the empirical eigenvalues of AAᵀ/N as the population; W(0) and B integrated
    // out) rules it out: the conditional edge moves by < 0.2% (measured 0.05–0.09%), while the
    // gap itself scatters by seed (−1.59%, −2.87%, −0.42% at N = 2000): the soft edge's own
    // finite-size fluctuations, from W(0) and B.
    use specdyn::rng::{Purpose, normals, stream};
    use specdyn::theory::extensive::PopulationLaw;
    let m = OneStep { nu: 5.0, chi: 4.0, gamma0: 8.0, eta0: 0.2 };
    let (n, c) = (2000, 1600);
    let (_, edge) = m.edges(&m.population_law());
    for seed in 0..3 {
        let top = simulate(&m, n, seed)[0];
        // The same A as `simulate` draws (stream 301), its eigenvalues a of AAᵀ/N.
        let g = normals(&mut stream(seed, Purpose::Analysis, 301), n * c);
        let a = faer::Mat::from_fn(n, c, |i, j| g[i * c + j]);
        let ata = (a.transpose() * &a) * (1.0 / n as f64);
        let eig = ata.self_adjoint_eigenvalues(faer::Side::Lower).expect("eigenvalues");
        let mut t: Vec<f64> = eig.iter().map(|x| m.population_value(*x) / m.nu).collect();
        t.push(m.population_value(0.0) / m.nu);
        let mut w = vec![1.0 / n as f64; c];
        w.push((n - c) as f64 / n as f64);
        let (_, conditional) = m.edges(&PopulationLaw { t, w });
        eprintln!(
            "seed {seed}: largest {top:.4}, law's edge {edge:.4} ({:+.2}%), edge given this A {conditional:.4} ({:+.2}% from the law's)",
            100.0 * (top - edge) / edge,
            100.0 * (conditional - edge) / edge
        );
        assert!((conditional - edge).abs() < 0.002 * edge, "seed {seed}: conditional edge {conditional} vs {edge}");
        assert!(
            top < conditional,
            "seed {seed}: the largest eigenvalue {top} is above the conditional edge {conditional}"
        );
    }
}
