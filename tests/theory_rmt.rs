//! Random-matrix laws against direct simulation at N = 2000 (theory map T1–T4).

use specdyn::report::theory::{mean_sd, simulate_rect_spike, simulate_wigner_spike};
use specdyn::theory::{MarchenkoPastur, Semicircle, rectangular_spike_outlier, simulate, spiked_wigner_outliers};

/// Empirical p-quantile of sorted values.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted[((p * sorted.len() as f64) as usize).min(sorted.len() - 1)]
}

#[test]
fn marchenko_pastur_quantiles_and_edges_match_simulation() {
    // X: 1000 × 2000 (c = 0.5) and 2000 × 2000 (c = 1); eigenvalues of XXᵀ.
    for (n, m) in [(1000usize, 2000usize), (2000, 2000)] {
        let law = MarchenkoPastur::for_shape(n, m);
        let x = simulate::gaussian(n, m, 11);
        let mut e = simulate::eigenvalues_desc(&(&x * x.transpose()));
        e.reverse();
        let (a, b) = law.edges();
        let width = b - a;
        for p in [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95] {
            let (sim, th) = (quantile(&e, p), law.quantile(p));
            // Within 1% of the value, or of the bulk width near the hard edge at 0.
            assert!((sim - th).abs() <= 0.01 * th.max(width * 0.1), "c = {}: q({p}) simulated {sim} vs {th}", law.c);
        }
        let top = e[e.len() - 1];
        assert!((top - b).abs() / b < 0.01, "c = {}: top eigenvalue {top} vs edge {b}", law.c);
    }
}

#[test]
fn semicircle_quantiles_and_edges_match_simulation() {
    let mut e = simulate::eigenvalues_desc(&simulate::goe(2000, 5));
    e.reverse();
    let sc = Semicircle;
    for p in [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95] {
        let (sim, th) = (quantile(&e, p), sc.quantile(p));
        // 1% of the support width (the median is 0, so a relative error is undefined there).
        assert!((sim - th).abs() <= 0.01 * 4.0, "q({p}) simulated {sim} vs {th}");
    }
    assert!((e[e.len() - 1] - 2.0).abs() < 0.02 && (e[0] + 2.0).abs() < 0.02, "edges {} {}", e[0], e[e.len() - 1]);
}

#[test]
fn spiked_wigner_outliers_match_simulation() {
    // Above threshold: θ + 1/θ within 1% of the mean over 3 seeds; below: nothing leaves the bulk.
    for theta in [1.8, 3.0] {
        let want = spiked_wigner_outliers(1.0, &[theta])[0];
        let (m, _) = mean_sd(&(0..3).map(|s| simulate_wigner_spike(theta, 2000, s)).collect::<Vec<_>>());
        assert!((m - want).abs() / want < 0.01, "θ = {theta}: simulated {m} vs predicted {want}");
    }
    assert!(spiked_wigner_outliers(1.0, &[0.6]).is_empty());
    let (m, _) = mean_sd(&(0..3).map(|s| simulate_wigner_spike(0.6, 2000, s)).collect::<Vec<_>>());
    assert!(m < 2.02, "θ = 0.6 below threshold, yet the top eigenvalue is {m}");
}

#[test]
fn rectangular_spike_outliers_match_simulation() {
    let c = 0.5;
    let edge = MarchenkoPastur::new(c).singular_edges().1;
    for theta in [1.4, 2.5] {
        let want = rectangular_spike_outlier(theta, c).unwrap();
        let (m, _) = mean_sd(&(0..3).map(|s| simulate_rect_spike(theta, c, 1000, s)).collect::<Vec<_>>());
        assert!((m - want).abs() / want < 0.01, "θ = {theta}: simulated {m} vs predicted {want}");
    }
    assert_eq!(rectangular_spike_outlier(0.6, c), None);
    let (m, _) = mean_sd(&(0..3).map(|s| simulate_rect_spike(0.6, c, 1000, s)).collect::<Vec<_>>());
    assert!((m - edge).abs() / edge < 0.01, "θ = 0.6 below threshold: top {m} vs edge {edge}");
}
