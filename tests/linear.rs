//! The two-layer linear DMFT (src/theory/linear.rs) against direct full-batch GD of linear
//! networks: loss curves at N = 1000 (16 seeds), μP and NTK, and the outliers of every layer.

use burn::backend::Flex;
use specdyn::compare::linear::{as_logged, linear_problem, seed_mean_se};
use specdyn::config::RunConfig;
use specdyn::theory::linear::{LinearCurves, LinearNet, Parameterization, simulate, simulate_spectra};
use specdyn::train::Trainer;

/// Largest relative gap over steps whose predicted loss is above 1% of its start, and the
/// largest gap in standard errors there.
fn gaps(theory: &[f64], mean: &[f64], se: &[f64]) -> (f64, f64) {
    let start = theory[0];
    theory
        .iter()
        .zip(mean)
        .zip(se)
        .filter(|((th, _), _)| **th > 0.01 * start)
        .map(|((th, m), s)| ((m - th).abs() / th, (m - th).abs() / s.max(1e-300)))
        .fold((0.0, 0.0), |(a, b), (x, y)| (f64::max(a, x), f64::max(b, y)))
}

/// Every step whose predicted loss is above 1% of its start must agree within 3 standard
/// errors plus `finite_size` (relative): the seed mean is noisy late in training, and the
/// DMFT is the N → ∞ limit (the brief's note measured 2.7–2.9% at N = 1000, 2.1% at 2000).
fn check(net: LinearNet, n: usize, seeds: u64, steps: usize, finite_size: f64) {
    let runs: Vec<LinearCurves> = (0..seeds).map(|s| simulate(&net, n, steps, s)).collect();
    check_runs(&net, &net.solve(steps), &runs, &format!("N={n}"), steps, finite_size);
}

/// [`check`] for given runs and theory curves (as the runs log them).
fn check_runs(
    net: &LinearNet,
    theory: &LinearCurves,
    runs: &[LinearCurves],
    what: &str,
    steps: usize,
    finite_size: f64,
) {
    let [(train, train_se), (test, test_se)] = seed_mean_se(runs);
    let (g_train, z_train) = gaps(&theory.train, &train, &train_se);
    let (g_test, z_test) = gaps(&theory.test, &test, &test_se);
    for t in [0, steps / 8, steps / 4, steps / 2, steps] {
        eprintln!(
            "{:?} ν={} α={} {what} t={t}: train {:.5} vs {:.5} ± {:.5}, test {:.5} vs {:.5} ± {:.5}",
            net.parameterization,
            net.nu,
            net.alpha,
            theory.train[t],
            train[t],
            train_se[t],
            theory.test[t],
            test[t],
            test_se[t]
        );
    }
    eprintln!(
        "  max gap: train {:.2}% ({z_train:.1} SE), test {:.2}% ({z_test:.1} SE)",
        100.0 * g_train,
        100.0 * g_test
    );
    for (name, th, mean, se) in [("train", &theory.train, &train, &train_se), ("test", &theory.test, &test, &test_se)] {
        for t in 0..=steps {
            if th[t] > 0.01 * th[0] {
                let gap = (mean[t] - th[t]).abs();
                assert!(
                    gap < 3.0 * se[t] + finite_size * th[t],
                    "{name} t = {t}: DMFT {} vs {} ± {}",
                    th[t],
                    mean[t],
                    se[t]
                );
            }
        }
    }
}

#[test]
fn mup_loss_curves_match_direct_gd_at_n_1000() {
    // Brief's note: gaps 2.9% / 2.7% at N = 1000 (16 seeds), shrinking with N.
    let net = LinearNet::reference(1);
    check(net, 1000, 16, 128, 0.03);
}

#[test]
fn ntk_loss_curves_match_direct_gd() {
    let net = LinearNet { nu: 4.0, parameterization: Parameterization::Ntk, ..LinearNet::reference(1) };
    check(net, 1000, 8, 64, 0.03);
}

#[test]
fn mup_is_width_consistent_and_ntk_slows_down_as_in_the_reference_solve() {
    // The brief's note (an independent numpy solve of the same DMFT): final test loss at T = 128,
    // α = 2, γ₀ = 8, η₀ = 0.02 for ν = 2, 4, 8 — μP 1.84e-4, 1.63e-4, 1.54e-4; NTK 7.8e-4,
    // 1.98e-3, 4.01e-3 (three significant digits).
    let reference =
        [(Parameterization::Mup, [1.84e-4, 1.63e-4, 1.54e-4]), (Parameterization::Ntk, [7.8e-4, 1.98e-3, 4.01e-3])];
    for (par, want) in reference {
        for (nu, w) in [2.0, 4.0, 8.0].into_iter().zip(want) {
            let net = LinearNet { nu, parameterization: par, ..LinearNet::reference(1) };
            let got = *net.solve(128).test.last().unwrap();
            eprintln!("{par:?} ν = {nu}: final test loss {got:.4e} (reference {w:.3e})");
            assert!((got - w).abs() < 0.01 * w, "{par:?} ν = {nu}: {got} vs {w}");
        }
    }
}

#[test]
fn depth_two_loss_curves_match_direct_gd() {
    // L = 2 (one N × N matrix between W⁰ and the readout): the brief's note measured 3.3% /
    // 3.3% (train / test) at N = 1000 with 16 seeds, 3.5% / 3.6% at 2000, 1.1% / 2.7% at 4000.
    let net = LinearNet::reference(2);
    check(net, 1000, 16, 64, 0.04);
}

#[test]
fn depth_three_loss_curves_match_direct_gd() {
    // L = 3 (two N × N matrices): the chain of sites beyond the brief's note, against direct GD
    // (measured: max gap 4.0% train / 2.2% test, ≤ 1.2 SE). At η₀ = 0.02 (the L = 1, 2 rate)
    // L = 3 stalls near a train loss of 0.02 from step 8 on, in the DMFT and in the runs alike,
    // and the runs sit up to 33% (4 SE) off: a regime this test does not claim.
    let net = LinearNet { eta0: 0.005, ..LinearNet::reference(3) };
    check(net, 1000, 16, 64, 0.04);
}

#[test]
fn label_noise_matches_direct_gd() {
    // Label noise σ_ε² = 0.5 on the training targets (the data no longer drop out: each input
    // site gets the noise source √(λ/α)ξ; module docs), L = 1 and 2, against direct GD.
    for depth in [1, 2] {
        let net = LinearNet { label_noise: 0.5, ..LinearNet::reference(depth) };
        check(net, 1000, 16, 64, 0.04);
    }
}

#[test]
fn online_sgd_matches_direct_gd() {
    // Online SGD (App. E.14): a fresh batch of αD samples every step; the input site has λ = 1
    // and a batch noise of variance (|e|² + σ_ε²)/α (module docs). Batch ratio α = 1, L = 1 and
    // L = 2 (the second with label noise 0.3), against direct online GD at N = 1000.
    for (depth, noise) in [(1, 0.0), (2, 0.3)] {
        let net = LinearNet { label_noise: noise, online: true, alpha: 1.0, ..LinearNet::reference(depth) };
        check(net, 1000, 16, 64, 0.04);
    }
}

#[test]
fn one_config_trains_the_network_and_solves_the_theory() {
    // configs/linear-proportional.toml (model.proportional = true): `specdyn train` runs the
    // DMFT's network (ν = α = 2, γ₀ = 8, η₀ = 0.02, L = 1, μP), 8 model seeds at N = 1000, each
    // with its own dataset (data.seed). With one shared dataset its Σ̂ is quenched disorder
    // that no number of model seeds averages out: the runs then sat 24% (5.7 SE) above the
    // DMFT at step 64 (`specdyn compare` on 8 such runs), against 2.9% (0.6 SE) when every seed
    // draws its own.
    let text = std::fs::read_to_string("configs/linear-proportional.toml").expect("config");
    let cfg = RunConfig::from_toml_str(&text, &[]).expect("valid config");
    let net = linear_problem(&cfg).expect("a deep-linear problem");
    assert_eq!((net.depth, net.nu, net.alpha, net.gamma0, net.eta0), (1, 2.0, 2.0, 8.0, 0.02));
    let steps = cfg.train.steps as usize;
    let runs: Vec<LinearCurves> = (0..8u64)
        .map(|seed| {
            let mut c = cfg.clone();
            (c.seed, c.data.seed) = (seed, seed + 1);
            let mut at_t = Trainer::<Flex>::new(c, Default::default()).expect("trainer");
            let mut curves = LinearCurves::default();
            for t in 0..=steps {
                let g = at_t.gradients();
                curves.train.push(g.loss());
                curves.test.push(at_t.test_loss().expect("a test set"));
                if t < steps {
                    at_t.apply(g);
                }
            }
            curves
        })
        .collect();
    check_runs(&net, &as_logged(&net, &net.solve(steps)), &runs, "trainer N=1000", steps, 0.03);
    // Outside the convention the deep-linear theory refuses, naming it.
    let mut other = cfg.clone();
    other.model.proportional = false;
    let err = linear_problem(&other).expect_err("not the proportional convention").to_string();
    assert!(err.contains("proportional"), "{err}");
}

#[test]
fn compare_of_a_linear_sweep_gives_learning_rate_transfer_from_theory() {
    // A small sweep of configs/transfer-linear.toml (μP and NTK at ν = 2 and 8, three rates, four
    // seeds, each with its own dataset) through `specdyn sweep` and `specdyn compare SWEEP`: the
    // seed mean of every stable point's final test loss within 3 SE + 10% of the DMFT's (the
    // recorded sweep, results/transfer-linear, has the full grid; near the edge of stability, where
    // the DMFT catapults, single rates differ more), the diverged cells past the DMFT's largest
    // stable rate, and μP's DMFT optimum the same at both widths while NTK's moves.
    let bin = env!("CARGO_BIN_EXE_specdyn");
    let tmp = std::env::temp_dir().join(format!("specdyn-lin-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let text = std::fs::read_to_string("configs/transfer-linear.toml").unwrap();
    let small = text
        .replace("\"model.width\" = [250, 500, 1000]", "\"model.width\" = [250, 1000]")
        .replace("seed = [0, 1]\n\"data.seed\" = [1, 2]", "seed = [0, 1, 2, 3]\n\"data.seed\" = [1, 2, 3, 4]")
        .replace("{ geomspace = [0.005, 0.32, 13] }", "[0.01, 0.04, 0.64]");
    assert_ne!(small, text, "the sweep config changed: update this test");
    std::fs::write(tmp.join("sweep.toml"), small).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).current_dir(&tmp).output().expect("specdyn runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["sweep", "sweep.toml", "--out", "sw", "--jobs", "2", "--quiet"]);
    run(&["compare", "sw", "--out", "cmp"]);
    let table = std::fs::read_to_string(tmp.join("cmp/lr-transfer.csv")).unwrap();
    let summary = std::fs::read_to_string(tmp.join("cmp/lr-summary.csv")).unwrap();
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let max_stable: Vec<(String, String, f64)> = summary
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[5].parse().unwrap())
        })
        .collect();
    for r in rows.iter().filter(|r| r[3] == "runs") {
        let (par, width, eta0, loss, se, diverged) = (r[0], r[1], r[4].parse::<f64>().unwrap(), r[5], r[6], r[8]);
        let stable = max_stable.iter().find(|m| m.0 == par && m.1 == width).unwrap().2;
        if diverged != "0" {
            assert!(eta0 > stable, "{par} N = {width}: diverged at η₀ = {eta0}, DMFT stable up to {stable}");
            continue;
        }
        let loss: f64 = loss.parse().unwrap();
        // The DMFT at the cell's own rate (the table's grid need not contain it).
        let base = &text[..text.find("[sweep]").expect("a [sweep] table")];
        let cfg = RunConfig::from_toml_str(
            base,
            &[
                format!("model.parameterization=\"{par}\""),
                format!("model.width={width}"),
                format!("optimizer.lr={eta0}"),
            ],
        )
        .expect("config");
        let net = linear_problem(&cfg).expect("problem");
        let exact = *as_logged(&net, &net.solve(64)).test.last().unwrap();
        let se: f64 = se.parse().unwrap();
        eprintln!("{par} N = {width} η₀ = {eta0}: runs {loss:.4e} ± {se:.1e}, DMFT {exact:.4e}");
        assert!(
            (loss - exact).abs() < 3.0 * se + 0.1 * exact,
            "{par} N = {width} η₀ = {eta0}: runs {loss} ± {se} vs DMFT {exact}"
        );
    }
    let optimum = |par: &str, width: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("{par},{width},")))
            .unwrap()
            .split(',')
            .nth(3)
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(optimum("mup", "250"), optimum("mup", "1000"), "μP's optimal η₀ must not move with the width");
    assert!(optimum("ntk", "1000") > 1.3 * optimum("ntk", "250"), "NTK's optimal η₀ must grow with the width");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Mean and standard error of the mean of seed values.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// The top outlier of every layer at `at` steps: theory vs the seed mean of direct GD at width
/// `n`, as (theory, mean, SE, edge) per checkpoint and layer.
fn outlier_gaps(net: &LinearNet, n: usize, seeds: u64, at: &[usize]) -> Vec<Vec<(f64, f64, f64, f64)>> {
    let steps = *at.last().expect("checkpoints");
    let (_, orders) = net.solve_with_orders(steps);
    let sims: Vec<_> = (0..seeds).map(|s| simulate_spectra(net, n, steps, s, at, 1).layers).collect();
    at.iter()
        .enumerate()
        .map(|(k, &t)| {
            orders
                .iter()
                .enumerate()
                .map(|(l, m)| {
                    let th = m.outliers(t).first().copied().unwrap_or(m.edge());
                    let xs: Vec<f64> = sims.iter().map(|s| s[k][l][0]).collect();
                    let (mean, se) = mean_se(&xs);
                    eprintln!(
                        "L={} ν={} {:?} N={n} t={t} layer {l}: theory {th:.4} vs GD {mean:.4} ± {se:.4} (edge {:.4}): gap {:+.2}% of the distance above the edge, {:+.1} SE",
                        net.depth,
                        net.nu,
                        net.parameterization,
                        m.edge(),
                        100.0 * (mean - th) / (th - m.edge()),
                        (mean - th) / se
                    );
                    (th, mean, se, m.edge())
                })
                .collect()
        })
        .collect()
}

#[test]
fn outliers_of_every_layer_match_direct_gd_at_n_2000() {
    // The pole conditions (module docs, "Outliers") for W⁰ (rectangular, N × D) and the hidden
    // W¹ (square) against the top eigenvalue of direct GD's weights, N = 2000, D = 1000, 4 seeds.
    // Measured: L = 1 W⁰ −5.4/−2.3/−1.5% of the distance above the edge at t = 10/20/30 (≤ 2.8
    // SE); L = 2 W⁰ −2.2/−0.9/−0.8%, W¹ −6.6/−4.2/−4.0% (≤ 3.2 SE; the W¹ gap halves with each
    // doubling of N in results/linear-outliers). Allowed: 3 SE + 5% of the distance. Before the
    // escape (t = 5, L = 1: theory 3.15, GD 3.13 ± 0.02) the bulk edge itself fluctuates, so only
    // the sign of the escape is checked there.
    for net in [LinearNet::reference(1), LinearNet::reference(2)] {
        let at = [5, 10, 20, 30];
        for (k, per_layer) in outlier_gaps(&net, 2000, 4, &at).iter().enumerate() {
            for (l, &(th, mean, se, edge)) in per_layer.iter().enumerate() {
                let t = at[k];
                if t == 5 {
                    assert!(
                        mean > edge - 3.0 * se.max(0.01),
                        "L = {} t = 5 layer {l}: GD {mean} far below the edge {edge}",
                        net.depth
                    );
                    continue;
                }
                assert!(th > edge, "L = {} t = {t} layer {l}: no outlier predicted (GD {mean} ± {se})", net.depth);
                let allowed = 3.0 * se + 0.05 * (th - edge);
                assert!(
                    (mean - th).abs() < allowed,
                    "L = {} t = {t} layer {l}: DMFT {th} vs GD {mean} ± {se} (edge {edge}; allowed {allowed})",
                    net.depth
                );
            }
        }
    }
}

/// Recorded in results/linear-outliers/n4000.txt (about 4 minutes on 2 cores):
/// `cargo nextest run --release --test linear --run-ignored only -E 'test(n_4000)' --no-capture`.
#[test]
#[ignore = "4 minutes: the N = 4000 point of results/linear-outliers"]
fn outliers_of_a_depth_two_network_at_n_4000() {
    // L = 2 reference (ν = α = 2, γ₀ = 8, η₀ = 0.02, μP), T = 64, seeds 100…107. Measured:
    // W⁰ 4.2294 ± 0.0179 vs 4.2113, W¹ 5.1090 ± 0.0149 vs 5.0901 (+1.0 and +1.3 SE; at
    // N = 2000 both sat below: the gap changes sign, finite size rather than a missing term).
    let (net, n, steps) = (LinearNet::reference(2), 4000, 64);
    let (_, orders) = net.solve_with_orders(steps);
    let sims: Vec<_> = (100..108).map(|s| simulate_spectra(&net, n, steps, s, &[steps], 1).layers).collect();
    for (l, m) in orders.iter().enumerate() {
        let th = m.outliers(steps)[0];
        let xs: Vec<f64> = sims.iter().map(|s| s[0][l][0]).collect();
        let (mean, se) = mean_se(&xs);
        eprintln!(
            "N = {n}, t = {steps}, W{l}: DMFT {th:.4} vs GD {mean:.4} ± {se:.4} (edge {:.4}; seeds {xs:?})",
            m.edge()
        );
        assert!((mean - th).abs() < 3.0 * se + 0.03 * (th - m.edge()), "W{l}: DMFT {th} vs GD {mean} ± {se}");
    }
}

#[test]
fn the_top_ntk_eigenvalue_matches_direct_gd_at_n_2000() {
    // The training-set NTK KΣ̂ of an L = 1 network (module docs, "NTK"; K = C_w I + W⁰ᵀW⁰/N,
    // η·λ_NTK = η₀·λ) against direct GD at N = 2000 (D = 1000, P = 2000), 3 seeds. Measured:
    // t = 0 (bulk edge) 6.837 vs 6.788 ± 0.064; outliers t = 5 10.533 vs 10.551 ± 0.367,
    // t = 10 19.017 vs 18.690 ± 0.587, t = 20 23.308 vs 23.010 ± 0.433 (≤ 0.7 SE; the seeds
    // scatter by 5%: Σ̂'s top directions are quenched disorder). Allowed 3 SE + 3% of the value
    // (the bulk edge itself moves with C_w, so the gap is taken relative to the value).
    let net = LinearNet::reference(1);
    let at = [0, 5, 10, 20];
    let theory = net.ntk(20, &at).expect("L = 1, full batch");
    let sims: Vec<Vec<Vec<f64>>> = (0..3).map(|s| simulate_spectra(&net, 2000, 20, s, &at, 2).ntk).collect();
    for (k, th) in theory.iter().enumerate() {
        let xs: Vec<f64> = sims.iter().map(|s| s[k][0]).collect();
        let (mean, se) = mean_se(&xs);
        eprintln!(
            "t = {}: NTK top {:.4} (edge {:.4}, outliers {:?}; population {:.4}, readout {:.4}) vs GD {mean:.4} ± {se:.4} {xs:?}",
            th.step,
            th.top(),
            th.edge,
            th.outliers,
            th.population,
            th.readout
        );
        assert!((mean - th.top()).abs() < 3.0 * se + 0.03 * th.top(), "t = {}: {} vs {mean} ± {se}", th.step, th.top());
    }
}

#[test]
fn five_outputs_give_five_outliers_that_match_direct_gd() {
    // L = 1 with C = 5 outputs and teachers of scales 1 … 0.4 (LinearClasses, the dense
    // super-index DMFT) against direct GD at N = 2000 (D = 1000, P = 2000), 4 seeds: the five
    // top eigenvalues of W⁰ᵀW⁰/N and the summed test loss. Allowed: 3 SE + 3% of the value for
    // each outlier (the "each within 3%"), 3% for the loss. Measured: at t = 30 the five
    // outliers 7.627, 6.426, 5.257, 4.148, 3.199 vs GD 7.670 ± 0.053, 6.556 ± 0.054, 5.288 ±
    // 0.053, 4.124 ± 0.018, 3.215 ± 0.043 (≤ 2.1% of the value at every checkpoint, ≤ 2.4 SE);
    // test loss within 0.9%. The top one is the scalar problem's (7.627): the classes decouple.
    use specdyn::theory::linear::{LinearClasses, simulate_classes};
    let problem = LinearClasses { net: LinearNet::reference(1), scales: vec![1.0, 0.85, 0.7, 0.55, 0.4] };
    let at = [10, 20, 30];
    let (curves, order) = problem.solve(30);
    let sims: Vec<_> = (0..4).map(|s| simulate_classes(&problem, 2000, 30, s, &at, 6)).collect();
    for (k, &t) in at.iter().enumerate() {
        let th = order.outliers(t * 5);
        for (r, want) in th.iter().enumerate() {
            let xs: Vec<f64> = sims.iter().map(|s| s.1[k][r]).collect();
            let (mean, se) = mean_se(&xs);
            eprintln!(
                "t = {t}, outlier {r}: DMFT {want:.4} vs GD {mean:.4} ± {se:.4} ({:+.2}% of the value, {:+.2}% of the distance above the edge {:.4})",
                100.0 * (mean - want) / want,
                100.0 * (mean - want) / (want - order.edge()),
                order.edge()
            );
            assert!((mean - want).abs() < 3.0 * se + 0.03 * want, "t = {t}, outlier {r}: {want} vs {mean} ± {se}");
        }
        let test: f64 = sims.iter().map(|s| s.0.test[t]).sum::<f64>() / sims.len() as f64;
        eprintln!("t = {t}: {} outliers; test loss DMFT {:.5} vs GD {test:.5}", th.len(), curves.test[t]);
        assert!(
            (test - curves.test[t]).abs() < 0.03 * curves.test[t],
            "t = {t}: test loss {} vs {test}",
            curves.test[t]
        );
    }
    assert_eq!(order.outliers(150).len(), 5, "all five teachers escape by t = 30");
}

/// Recorded in results/linear-classes/other-seeds.txt (about 1 minute):
/// `cargo nextest run --release --test linear --run-ignored only -E 'test(other_seeds)' --no-capture`.
#[test]
#[ignore = "a recorded check of results/linear-classes with seeds 50…55"]
fn five_outputs_with_other_seeds() {
    // results/linear-classes (seeds 0…7) put μP's second outlier 2.5% above the DMFT with a seed
    // spread of only 0.08; seeds 50…55 of the same runs put it 0.3% above with a spread of 0.25.
    use specdyn::theory::linear::{LinearClasses, simulate_classes};
    let problem = LinearClasses { net: LinearNet::reference(1), scales: vec![1.0, 0.85, 0.7, 0.55, 0.4] };
    let (_, order) = problem.solve(64);
    let th = order.outliers(64 * 5);
    let runs: Vec<_> = (50..56).map(|s| simulate_classes(&problem, 2000, 64, s, &[64], 5).1[0].clone()).collect();
    for (r, want) in th.iter().enumerate() {
        let xs: Vec<f64> = runs.iter().map(|x| x[r]).collect();
        let (m, se) = mean_se(&xs);
        let sd = se * (xs.len() as f64).sqrt();
        eprintln!("μP N = 2000, t = 64, outlier {r}: DMFT {want:.4} vs GD {m:.4} ± {se:.4} (seed sd {sd:.4})");
        assert!((m - want).abs() < 3.0 * se + 0.03 * want, "outlier {r}: {want} vs {m} ± {se}");
    }
}
