//! The wgpu backend trains the same networks as the CPU: an MLP and a small ResNet, a few SGD
//! steps each, on wgpu and on the CPU from the same initial weights and data; losses and final
//! weights must agree to f32 round-off (tolerances below), and the batches gathered on the
//! device (minibatch indices, image flips and crops) must be the CPU's bit for bit. Without a GPU this runs on Mesa's
//! software Vulkan driver (lavapipe), which CI installs (`mesa-vulkan-drivers`).
#![cfg(feature = "wgpu")]

use burn::backend::{Flex, Wgpu};
use specdyn::config::RunConfig;
use specdyn::kernels::Kernels;
use specdyn::model::tensor_to_vec;
use specdyn::train::Trainer;

/// Is there a Vulkan driver at all? CI must have one; elsewhere the test says why it did
/// nothing and passes.
fn vulkan_present() -> bool {
    let icd_dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
    let present = icd_dirs.iter().any(|d| std::fs::read_dir(d).is_ok_and(|mut r| r.next().is_some()));
    if !present {
        assert!(std::env::var("CI").is_err(), "CI must provide a Vulkan driver (mesa-vulkan-drivers)");
        eprintln!("no Vulkan driver installed (apt-get install mesa-vulkan-drivers): nothing was run");
    }
    present
}

/// Losses of `steps` steps and the final parameters (host, in-memory layout).
fn run<B: Kernels>(cfg: &RunConfig, steps: usize, device: B::Device) -> (Vec<f64>, Vec<Vec<f32>>) {
    let mut t = Trainer::<B>::new(cfg.clone(), device).unwrap();
    let losses = (0..steps).map(|_| t.train_step()).collect();
    (losses, t.model.params.iter().map(|p| tensor_to_vec(p.clone())).collect())
}

fn compare(cfg: &RunConfig, steps: usize, what: &str) {
    let (cpu_loss, cpu_w) = run::<Flex>(cfg, steps, Default::default());
    let (gpu_loss, gpu_w) = run::<Wgpu>(cfg, steps, Default::default());
    for (t, (a, b)) in cpu_loss.iter().zip(&gpu_loss).enumerate() {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1e-6), "{what}: step {t} loss cpu {a} vs wgpu {b}");
    }
    for (i, (a, b)) in cpu_w.iter().zip(&gpu_w).enumerate() {
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        let err = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err <= 1e-4 * scale, "{what}: parameter {i} differs by {err} (scale {scale})");
    }
    eprintln!("{what}: {steps} steps, losses {cpu_loss:?} (cpu) vs {gpu_loss:?} (wgpu)");
}

#[test]
fn wgpu_trains_an_mlp_and_a_resnet_like_the_cpu() {
    if !vulkan_present() {
        return;
    }
    let mlp = RunConfig::from_toml_str(
        "[model]\ndepth = 3\nwidth = 64\nactivation = \"tanh\"\n[data]\ninput_dim = 16\ntrain_size = 32\ntest_size = 0\n\
         [optimizer]\nkind = \"adam\"\nlr = 0.01\n[train]\nsteps = 5\n",
        &[],
    )
    .unwrap();
    compare(&mlp, 5, "MLP (tanh, Adam)");
    let resnet = RunConfig::from_toml_str(
        "[model]\nkind = \"resnet\"\nwidth = 8\ndepth = 2\nactivation = \"relu\"\ndownsample_every = 1\n\
         [data]\nkind = \"cifar10\"\ndir = \"../shared/datasets/cifar10-subset\"\ntrain_size = 16\ntest_size = 0\naugment = true\n\
         [optimizer]\nlr = 0.5\n[train]\nsteps = 3\nbatch_size = 8\nloss = \"cross-entropy\"\n",
        &[],
    )
    .unwrap();
    compare(&resnet, 3, "ResNet (ReLU, cross-entropy)");
    same_batches(&resnet, 4, "augmented images");
    let mut minibatch = mlp.clone();
    minibatch.train.batch_size = 8;
    same_batches(&minibatch, 6, "vectors");
    compare(&minibatch, 5, "MLP on minibatches");
}

/// The batches wgpu gathers on the device (indices, and each image's flip and crop) are the
/// CPU's, bit for bit.
fn same_batches(cfg: &RunConfig, steps: u64, what: &str) {
    let mut cpu = Trainer::<Flex>::new(cfg.clone(), Default::default()).unwrap();
    let mut gpu = Trainer::<Wgpu>::new(cfg.clone(), Default::default()).unwrap();
    for step in 0..steps {
        (cpu.step, gpu.step) = (step, step);
        let ((a, b), (c, d)) = (cpu.batch(), gpu.batch());
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        let [a, b, c, d] = [tensor_to_vec(a), tensor_to_vec(b), tensor_to_vec(c), tensor_to_vec(d)].map(bits);
        assert!(a == c, "{what}: step {step}: wgpu batch inputs differ from the CPU's");
        assert!(b == d, "{what}: step {step}: wgpu batch targets differ from the CPU's");
    }
}

/// `scripts/gpu-check.sh` — the one-call check for a GPU machine — runs end to end on this
/// binary with wgpu (lavapipe in CI) in its quick mode, and every device matches the CPU.
#[test]
fn the_gpu_check_script_passes_on_wgpu() {
    if !vulkan_present() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("bash")
        .args(["scripts/gpu-check.sh", out.path().to_str().unwrap(), "wgpu"])
        .env("SPECDYN_BIN", env!("CARGO_BIN_EXE_specdyn"))
        .env("GPU_CHECK_QUICK", "1")
        .status()
        .unwrap();
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap_or_default();
    assert!(status.success(), "scripts/gpu-check.sh failed:\n{report}");
    let csv = std::fs::read_to_string(out.path().join("correctness.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for row in rows {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f[2], "ok", "{row}");
        let diff: f64 = f[4].parse().unwrap();
        assert!(diff <= 1e-3 && (f[1] == "wgpu" || diff == 0.0), "{row}");
    }
    assert!(report.contains("RESULT: every device matched the CPU"), "{report}");
}
