//! The residual CNN on real CIFAR-10 images (the 6,102-image subset in
//! ../shared/datasets/cifar10-subset): its conv spectra start in the MP bulk, its μP
//! coordinates are width-stable while SP's blow up, it learns, and the data path refuses bad
//! files (see also tests/bad_input.rs and the SIGKILL test in tests/resume.rs).

use burn::backend::Flex;
use specdyn::backend::{Device, dispatch};
use specdyn::config::RunConfig;
use specdyn::coord::{CoordConfig, CoordJob, spreads};
use specdyn::model::{Model, Network, ResNetSpec};
use specdyn::spectra::SpectraState;
use specdyn::train::Trainer;

/// The CIFAR-10 subset the tests and CI use.
pub const CIFAR: &str = "../shared/datasets/cifar10-subset";

fn cifar_dir() -> String {
    assert!(
        std::path::Path::new(CIFAR).join("data_batch_1.bin").exists(),
        "the CIFAR-10 subset is missing at {CIFAR} (the tests need the project's shared datasets)"
    );
    CIFAR.to_string()
}

fn config(overrides: &[String]) -> RunConfig {
    let text = std::fs::read_to_string("configs/cifar-resnet.toml").unwrap();
    let mut all = vec![format!("data.dir=\"{}\"", cifar_dir())];
    all.extend(overrides.iter().cloned());
    RunConfig::from_toml_str(&text, &all).unwrap()
}

#[test]
fn conv_spectra_start_in_the_marchenko_pastur_bulk() {
    // N = 128: every hidden conv kernel [128, 128, 3, 3] square-unfolds to 384 × 384 (MP edge 2;
    // the Tracy–Widom mean of the largest value sits 1.2 σ_TW ≈ 0.014 below it).
    use specdyn::spectra::normalize::singular_value_quantile;
    use specdyn::theory::MarchenkoPastur;
    let cfg = config(&["model.width=128".into(), "model.depth=1".into()]);
    let mut tops = Vec::new();
    for seed in 0..3 {
        let spec = ResNetSpec::from_config(&cfg, [3, 32, 32], 10);
        let model = Model::<Flex>::init(Network::ResNet(spec), seed, &Default::default());
        let mut state = SpectraState::for_params(&model.info, 8, 4.0, None);
        let snaps = state.snapshot(&model.export()).unwrap();
        for (spec, snap) in state.specs.iter().zip(&snaps) {
            if spec.kind != "conv-hidden" {
                continue;
            }
            assert_eq!((spec.rows(), spec.cols()), (384, 384));
            assert_eq!(snap.outliers, 0, "{}: an untrained kernel has no outliers", spec.name);
            tops.push(snap.values[0]);
            // Kolmogorov–Smirnov distance to the MP singular-value law on a grid of quantiles.
            let law = MarchenkoPastur::for_shape(spec.rows(), spec.cols());
            let mut sorted = snap.values.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            let ks = (1..100)
                .map(|i| {
                    let q = i as f64 / 100.0;
                    let x = singular_value_quantile(&law, q);
                    (sorted.partition_point(|v| *v <= x) as f64 / sorted.len() as f64 - q).abs()
                })
                .fold(0.0, f64::max);
            assert!(ks < 0.04, "seed {seed} {}: KS distance {ks}", spec.name);
        }
    }
    let mean = tops.iter().sum::<f64>() / tops.len() as f64;
    eprintln!("top singular values at init: {tops:?} (mean {mean:.4}, MP edge 2)");
    assert!((mean - 2.0).abs() / 2.0 < 0.02, "mean top {mean} vs MP edge 2");
    assert!(tops.iter().all(|t| (t - 2.0).abs() / 2.0 < 0.03), "{tops:?}");
}

#[test]
fn coord_check_cnn_mup_is_flat_and_sp_grows() {
    let text = std::fs::read_to_string("configs/coord-resnet.toml").unwrap();
    let overrides = [
        format!("data.dir=\"{}\"", cifar_dir()),
        "coord.widths=[16, 32, 64]".into(),
        "coord.parameterizations=[\"mup\", \"sp\"]".into(),
        "coord.seeds=4".into(),
        "data.train_size=32".into(),
    ];
    let cfg = CoordConfig::from_toml_str(&text, &overrides).unwrap();
    let records = dispatch(Device::Cpu, 0, CoordJob { config: cfg, quiet: true }).unwrap();
    let at3: Vec<_> = spreads(&records).into_iter().filter(|s| s.step == 3).collect();
    for s in &at3 {
        eprintln!("{:<4} {:<7} spread {:>10.3} growth {:>10.3}", s.parameterization, s.layer, s.spread, s.growth);
    }
    for s in at3.iter().filter(|s| s.parameterization == "mup" && s.layer != "output") {
        assert!(s.spread < 1.3, "μP {} varies {:.3}× across widths after 3 steps", s.layer, s.spread);
    }
    let sp_max = at3.iter().filter(|s| s.parameterization == "sp").map(|s| s.growth).fold(0.0, f64::max);
    assert!(sp_max.is_nan() || sp_max > 2.0, "SP grew only {sp_max:.2}× from N = 16 to 64");
}

#[test]
fn resnet_learns_cifar_above_chance() {
    let cfg = config(&[
        "model.width=16".into(),
        "model.depth=2".into(),
        "model.downsample_every=1".into(),
        "model.gamma0=2.0".into(),
        "optimizer.lr=2.0".into(),
        "train.batch_size=64".into(),
        "data.test_size=500".into(),
    ]);
    let mut t = Trainer::<Flex>::new(cfg, Default::default()).unwrap();
    let before = t.evaluate_test().unwrap();
    for _ in 0..250 {
        t.train_step();
    }
    let after = t.evaluate_test().unwrap();
    let acc = after.accuracy.unwrap();
    eprintln!("test loss {:.4} → {:.4}, accuracy {:.3}", before.loss, after.loss, acc);
    // Chance is 0.1; the standard error of an accuracy on 500 images is ≤ 0.023.
    assert!(acc > 0.18, "test accuracy {acc} after 250 steps");
    assert!(after.loss < before.loss);
}

/// The batch the trainer gathers on the device at `step`, and the one the host builds.
fn device_and_host_batch<B: specdyn::kernels::Kernels>(t: &mut Trainer<B>, step: u64) -> [Vec<f32>; 4] {
    use specdyn::data::Batch;
    use specdyn::model::tensor_to_vec;
    t.step = step;
    let (x, y) = t.batch();
    let host = match t.data.batch(step, t.config.train.batch_size, t.config.seed) {
        Batch::Samples(h) => h,
        Batch::Full => match &t.data.train {
            specdyn::data::TrainSet::Fixed(s) => s.all(),
            specdyn::data::TrainSet::Online => unreachable!(),
        },
    };
    [tensor_to_vec(x), tensor_to_vec(y), host.x, host.y]
}

/// Batches gathered on the device (minibatch indices, flips and crops) are bit-identical to
/// the batches the host builds, for images with and without augmentation and for vectors.
#[test]
fn device_gathered_batches_are_the_host_batches() {
    let images = |augment: bool, batch: usize| {
        config(&[
            "data.train_size=64".into(),
            "data.test_size=0".into(),
            format!("data.augment={augment}"),
            format!("train.batch_size={batch}"),
        ])
    };
    let vectors = |batch: usize| {
        RunConfig::from_toml_str(
            &format!("[model]\nwidth = 16\n[data]\ninput_dim = 8\ntrain_size = 40\ntest_size = 0\n[train]\nbatch_size = {batch}\n"),
            &[],
        )
        .unwrap()
    };
    let cases = [
        ("augmented images, minibatches", images(true, 16)),
        ("augmented images, full batch", images(true, 0)),
        ("images, minibatches", images(false, 16)),
        ("vectors, minibatches", vectors(8)),
        ("vectors, full batch", vectors(0)),
    ];
    for (what, cfg) in cases {
        let augment = cfg.data.augment;
        let mut t = Trainer::<Flex>::new(cfg, Default::default()).unwrap();
        let mut cropped = 0;
        for step in [0, 1, 3, 4, 9] {
            let [x, y, hx, hy] = device_and_host_batch(&mut t, step);
            assert_eq!(x.len(), hx.len(), "{what}: step {step}");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(bits(&x) == bits(&hx), "{what}: step {step}: device inputs differ from the host's");
            assert!(bits(&y) == bits(&hy), "{what}: step {step}: device targets differ from the host's");
            if augment {
                let idx = t.data.batch_indices(step, t.config.train.batch_size, t.config.seed);
                let idx = idx.unwrap_or_else(|| (0..64).collect());
                let specdyn::data::TrainSet::Fixed(s) = &t.data.train else { unreachable!() };
                cropped += usize::from(s.rows(&idx, None).x != hx);
            }
        }
        assert!(!augment || cropped == 5, "{what}: augmentation changed only {cropped} of 5 batches");
    }
}
