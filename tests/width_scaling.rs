//! How training depends on width, per parameterization (issue "specdyn train: the spine").
//!
//! - μP coord check: every pre-activation and the output keep their size across widths
//!   128 → 2048 after 3 steps (within 1.3×), while SP at the same base rate grows > 2×.
//! - μP loss curves converge with width (gaps shrink and are < 8% between 1024 and 2048).
//! - Lazy vs rich: ‖W(t) − W(0)‖₂/‖W(0)‖₂ of a hidden matrix falls like N^(-1/2) in NTK and
//!   is width-independent in μP.

use burn::backend::Flex;
use specdyn::backend::{Device, dispatch};
use specdyn::config::RunConfig;
use specdyn::coord::{CoordConfig, CoordJob, spreads};
use specdyn::model::{Parameterization, tensor_to_vec};
use specdyn::spectra::spectral_norm;
use specdyn::train::Trainer;

/// Training runs on the plain CPU backend (the fast kernels); no autodiff is involved.
type B = Flex;

#[test]
fn coord_check_mup_is_flat_and_sp_grows() {
    let text = std::fs::read_to_string("configs/coord.toml").expect("configs/coord.toml");
    let cfg = CoordConfig::from_toml_str(&text, &["coord.parameterizations=[\"mup\", \"sp\"]".into()]).unwrap();
    assert_eq!(cfg.coord.widths, vec![128, 256, 512, 1024, 2048]);
    let records = dispatch(Device::Cpu, 0, CoordJob { config: cfg, quiet: true }).unwrap();
    let at3: Vec<_> = spreads(&records).into_iter().filter(|s| s.step == 3).collect();
    for s in &at3 {
        eprintln!("{:<4} {:<7} spread {:>10.3} growth {:>10.3}", s.parameterization, s.layer, s.spread, s.growth);
    }
    for s in at3.iter().filter(|s| s.parameterization == "mup") {
        assert!(s.spread < 1.3, "μP {} varies {:.3}× across widths after 3 steps", s.layer, s.spread);
    }
    let sp_max = at3.iter().filter(|s| s.parameterization == "sp").map(|s| s.growth).fold(0.0, f64::max);
    assert!(sp_max > 2.0, "SP grew only {sp_max:.2}× from N = 128 to 2048");
    for s in at3.iter().filter(|s| s.parameterization == "sp" && s.layer == "output") {
        assert!(s.growth > 2.0, "SP output grew only {:.2}×", s.growth);
    }
}

fn base_config(width: usize, seed: u64, p: Parameterization, steps: u64) -> RunConfig {
    let text = format!(
        "seed = {seed}\n\
         [model]\ndepth = 3\nwidth = {width}\nactivation = \"tanh\"\nparameterization = \"{}\"\ngamma0 = 1.0\ninit_variance = 1.0\n\
         [data]\nkind = \"single-index\"\ninput_dim = 32\nhermite = [0.0, 1.0, 0.5]\ntrain_size = 64\ntest_size = 0\nseed = 7\n\
         [optimizer]\nlr = 0.5\n\
         [train]\nsteps = {steps}\nbatch_size = 0\n",
        p.name()
    );
    RunConfig::from_toml_str(&text, &[]).unwrap()
}

/// Full-batch GD loss curve (loss of θ_t for t = 0, 5, 10, …, steps).
fn loss_curve(width: usize, seed: u64, steps: u64) -> Vec<f64> {
    let mut t = Trainer::<B>::new(base_config(width, seed, Parameterization::Mup, steps), Default::default()).unwrap();
    let mut out = Vec::new();
    for s in 0..=steps {
        let g = t.gradients();
        if s % 5 == 0 {
            out.push(g.loss());
        }
        if s < steps {
            t.apply(g);
        }
    }
    out
}

#[test]
fn mup_loss_curves_converge_with_width() {
    // η₀ = 0.5 is well below the edge of stability here (the loss falls monotonically).
    let steps = 200;
    let mean_curve = |w: usize| -> Vec<f64> {
        let curves: Vec<Vec<f64>> = (0..3).map(|s| loss_curve(w, s, steps)).collect();
        (0..curves[0].len()).map(|i| curves.iter().map(|c| c[i]).sum::<f64>() / 3.0).collect()
    };
    let (l512, l1024, l2048) = (mean_curve(512), mean_curve(1024), mean_curve(2048));
    let first = l2048[0];
    let gap = |a: &[f64], b: &[f64]| -> f64 {
        a.iter().zip(b).filter(|(_, b)| **b > 0.01 * first).map(|(a, b)| (a - b).abs() / b).fold(0.0, f64::max)
    };
    let (g_small, g_large) = (gap(&l512, &l1024), gap(&l1024, &l2048));
    eprintln!("max relative loss gap: 512↔1024 {g_small:.4}, 1024↔2048 {g_large:.4}");
    assert!(l2048.last().unwrap() < &(0.1 * first), "training did not make progress");
    assert!(g_small > g_large, "gaps do not shrink with width: {g_small} vs {g_large}");
    assert!(g_large < 0.08, "1024↔2048 gap {g_large} ≥ 8%");
}

/// ‖W¹(t) − W¹(0)‖₂ / ‖W¹(0)‖₂ for the first hidden-to-hidden matrix after `steps` steps.
fn relative_change(width: usize, p: Parameterization, steps: u64) -> f64 {
    let mut t = Trainer::<B>::new(base_config(width, 0, p, steps), Default::default()).unwrap();
    let w0 = tensor_to_vec(t.model.params[1].clone());
    for _ in 0..steps {
        t.train_step();
    }
    let w1 = tensor_to_vec(t.model.params[1].clone());
    let dw: Vec<f32> = w1.iter().zip(&w0).map(|(a, b)| a - b).collect();
    spectral_norm(&dw, width, width) / spectral_norm(&w0, width, width)
}

fn log_slope(xs: &[f64], ys: &[f64]) -> f64 {
    let lx: Vec<f64> = xs.iter().map(|x| x.ln()).collect();
    let ly: Vec<f64> = ys.iter().map(|y| y.ln()).collect();
    let (mx, my) = (lx.iter().sum::<f64>() / lx.len() as f64, ly.iter().sum::<f64>() / ly.len() as f64);
    let cov: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    let var: f64 = lx.iter().map(|a| (a - mx).powi(2)).sum();
    cov / var
}

#[test]
fn hidden_weights_move_lazily_in_ntk_and_richly_in_mup() {
    let widths = [256usize, 512, 1024];
    let xs: Vec<f64> = widths.iter().map(|&w| w as f64).collect();
    let mup: Vec<f64> = widths.iter().map(|&w| relative_change(w, Parameterization::Mup, 30)).collect();
    let ntk: Vec<f64> = widths.iter().map(|&w| relative_change(w, Parameterization::Ntk, 30)).collect();
    let (s_mup, s_ntk) = (log_slope(&xs, &mup), log_slope(&xs, &ntk));
    eprintln!("μP ratios {mup:?} slope {s_mup:.3}; NTK ratios {ntk:?} slope {s_ntk:.3}");
    assert!(s_mup.abs() < 0.1, "μP relative change should not depend on width (slope {s_mup})");
    assert!((s_ntk + 0.5).abs() < 0.1, "NTK relative change should fall like N^(-1/2) (slope {s_ntk})");
}
