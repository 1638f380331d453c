//! Weight spectra (issue "specdyn spectra"): the normalization against the MP law at init, the
//! μP-vs-NTK outlier picture of a trained network, the HDF5 file through h5py, idempotent
//! recomputation, and clean failure on a corrupt checkpoint.

use burn::backend::Flex;
use specdyn::checkpoint::NamedTensor;
use specdyn::config::RunConfig;
use specdyn::model::{MlpSpec, Model, Parameterization};
use specdyn::spectra::SpectraState;
use specdyn::spectra::normalize::singular_value_quantile;
use specdyn::theory::MarchenkoPastur;
use specdyn::train::Trainer;
use std::path::Path;
use std::process::Command;

fn export(model: &Model<Flex>) -> Vec<NamedTensor> {
    model
        .info
        .iter()
        .zip(model.to_host())
        .map(|(p, h)| NamedTensor { name: p.name.clone(), shape: p.export_shape(), data: p.to_export(&h) })
        .collect()
}

#[test]
fn untrained_spectra_match_marchenko_pastur() {
    // A 1024 × 1024 hidden matrix (width 1024) and a 2048 × 512 input matrix (width 2048, D = 512).
    for (width, input_dim, matrix) in [(1024usize, 64usize, 1usize), (2048, 512, 0)] {
        let mut cfg = RunConfig::default();
        cfg.model.width = width;
        cfg.model.depth = 2;
        cfg.data.input_dim = input_dim;
        for p in [Parameterization::Mup, Parameterization::Sp] {
            cfg.model.parameterization = p;
            let model = Model::<Flex>::init(MlpSpec::from_config(&cfg, input_dim, 1), 5, &Default::default());
            let mut state = SpectraState::for_params(&model.info, cfg.spectra.top_k, cfg.spectra.outlier_margin, None);
            let snap = state.snapshot(&export(&model)).unwrap();
            let (spec, s) = (&state.specs[matrix], &snap[matrix]);
            let law = MarchenkoPastur::for_shape(spec.rows(), spec.cols());
            let (_, edge) = law.singular_edges();
            assert!(
                (s.values[0] - edge).abs() / edge < 0.01,
                "{p:?} {}: top {} vs edge {edge}",
                spec.name,
                s.values[0]
            );
            assert_eq!(s.outliers, 0, "an untrained matrix has no outliers");
            // Kolmogorov–Smirnov distance to the MP singular-value law, on a grid of quantiles.
            let mut sorted = s.values.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            let mut ks = 0.0f64;
            for i in 1..100 {
                let q = i as f64 / 100.0;
                let x = singular_value_quantile(&law, q);
                let empirical = sorted.partition_point(|v| *v <= x) as f64 / sorted.len() as f64;
                ks = ks.max((empirical - q).abs());
            }
            assert!(ks < 0.02, "{p:?} {}: KS distance {ks}", spec.name);
        }
    }
}

fn trained_tops(p: Parameterization) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let text = std::fs::read_to_string("configs/fig1-mlp-tanh.toml").unwrap();
    let cfg = RunConfig::from_toml_str(
        &text,
        &[format!("model.parameterization=\"{}\"", p.name()), "model.width=512".into(), "train.steps=300".into()],
    )
    .unwrap();
    let mut t = Trainer::<Flex>::new(cfg.clone(), Default::default()).unwrap();
    let sp = &cfg.spectra;
    let mut state = SpectraState::for_params(&t.model.info, sp.top_k, sp.outlier_margin, t.data.teacher.as_ref());
    let before = state.snapshot(&export(&t.model)).unwrap();
    for _ in 0..300 {
        t.train_step();
    }
    let after = state.snapshot(&export(&t.model)).unwrap();
    let hidden = [1, 2];
    let tops = hidden.iter().map(|&i| after[i].values[0]).collect();
    // Bulk: the median singular value before and after.
    let med = |v: &[f64]| v[v.len() / 2];
    (
        tops,
        hidden.iter().map(|&i| med(&before[i].values)).collect(),
        hidden.iter().map(|&i| med(&after[i].values)).collect(),
    )
}

#[test]
fn trained_mup_network_grows_outliers_and_ntk_does_not() {
    let (mup_tops, mup_bulk0, mup_bulk1) = trained_tops(Parameterization::Mup);
    let (ntk_tops, _, _) = trained_tops(Parameterization::Ntk);
    eprintln!("top normalized singular values of W¹, W² after 300 steps: μP {mup_tops:?}, NTK {ntk_tops:?}");
    // μP: an outlier clearly above the MP edge 2 in a hidden layer; the bulk stays put.
    assert!(mup_tops.iter().any(|t| *t > 2.2), "μP hidden outliers {mup_tops:?}");
    for (a, b) in mup_bulk0.iter().zip(&mup_bulk1) {
        assert!((a - b).abs() / a < 0.01, "the bulk moved: median {a} → {b}");
    }
    // NTK at the same γ₀ and width: smaller outliers (none leaves the bulk here).
    for (m, n) in mup_tops.iter().zip(&ntk_tops) {
        assert!(n < m, "NTK top {n} should be below μP top {m}");
    }
    assert!(ntk_tops.iter().all(|t| *t < 2.05), "NTK tops {ntk_tops:?}");
}

fn specdyn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_specdyn")).args(args).output().unwrap()
}

const SMALL: &str = "[model]\ndepth = 2\nwidth = 64\n[data]\ninput_dim = 8\ntrain_size = 32\ntest_size = 16\n\
[optimizer]\nlr = 0.2\n[train]\nsteps = 60\nlog_every = 5\n[checkpoint]\nper_decade = 3\n";

fn train_small(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, SMALL).unwrap();
    let run = dir.join("run");
    let out = specdyn(&["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run
}

#[test]
fn h5py_reads_what_rust_wrote() {
    let d = tempfile::tempdir().unwrap();
    let run = train_small(d.path());
    let data = specdyn::spectra::h5::read(&run.join("spectra.h5")).unwrap();
    let m = &data.matrices[1];
    let script = r#"
import h5py, numpy as np, sys
f = h5py.File(sys.argv[1], "r")
assert f.attrs["format"] == "specdyn-spectra-1", f.attrs["format"]
g = f["matrices/layers.1.weight"]
print(list(f["steps"][:]))
print(g["singular_values"].shape[1:], g["top_values"].shape, g["track_id"].dtype, g.attrs["mp_edge"], g.attrs["scale_source"])
print(repr(float(g["singular_values"][-1, 0])), repr(float(g["singular_values"][0, -1])))
print(f["analysis/lr_sharpness"].shape[0], "config" in f.attrs)
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(run.join("spectra.h5")).output().expect("python3");
    assert!(
        out.status.success(),
        "h5py could not read the file (install it with `pip install h5py`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let steps: Vec<String> = data.steps.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        lines[0],
        format!("[{}]", steps.iter().map(|s| format!("np.int64({s})")).collect::<Vec<_>>().join(", "))
    );
    let n = data.steps.len();
    assert!(
        lines[1].starts_with(&format!("({},) ({n}, {})", m.rows().min(m.cols()), m.top_values[0].len())),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("int32") && lines[1].contains(" 2.0 ") && lines[1].ends_with("init"), "{}", lines[1]);
    let vals: Vec<f32> = lines[2].split(' ').map(|v| v.parse::<f64>().unwrap() as f32).collect();
    let f = m.full_steps.len();
    assert_eq!(vals, vec![m.singular_values[f - 1][0], *m.singular_values[0].last().unwrap()]);
    assert_eq!(lines[3], format!("{} True", data.analysis.len()));
    // Full spectra at steps 0, 10, 100, … and the last (spectra.full_per_decade = 1; step 1 is
    // one update from step 0 and is left out).
    let want = specdyn::checkpoint::log_spaced_steps(*data.steps.last().unwrap(), 1);
    assert_eq!(m.full_steps, want.into_iter().filter(|s| *s != 1 && data.steps.contains(s)).collect::<Vec<_>>());
}

#[test]
fn recomputing_is_idempotent_and_a_corrupt_checkpoint_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let run = train_small(d.path());
    let during_training = std::fs::read_to_string(run.join("spectra.csv")).unwrap();
    let analysis = std::fs::read_to_string(run.join("analysis.csv")).unwrap();
    for _ in 0..2 {
        let out = specdyn(&["spectra", run.to_str().unwrap(), "-q"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(run.join("spectra.csv")).unwrap(), during_training);
        assert_eq!(std::fs::read_to_string(run.join("analysis.csv")).unwrap(), analysis);
    }
    let before = std::fs::read(run.join("spectra.h5")).unwrap();
    let ckpt = run.join("checkpoints/step-00000020.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() - 9]).unwrap();
    let out = specdyn(&["spectra", run.to_str().unwrap(), "-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("step-00000020.safetensors") && !err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(run.join("spectra.h5")).unwrap(), before, "existing results must stay intact");
    assert!(std::fs::read_dir(&run).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp")));
}

#[test]
fn external_weights_are_unfolded_and_normalized() {
    let d = tempfile::tempdir().unwrap();
    // A conv kernel [8, 4, 3, 3] and a 2-D matrix, written as safetensors by the crate itself.
    let conv: Vec<f32> =
        specdyn::rng::normals(&mut specdyn::rng::stream(1, specdyn::rng::Purpose::Analysis, 0), 8 * 4 * 9)
            .into_iter()
            .map(|v| v as f32 * 0.3)
            .collect();
    let fc: Vec<f32> =
        specdyn::rng::normals(&mut specdyn::rng::stream(2, specdyn::rng::Purpose::Analysis, 0), 300 * 200)
            .into_iter()
            .map(|v| v as f32 * 0.05)
            .collect();
    let ckpt = specdyn::checkpoint::Checkpoint {
        step: 0,
        config: String::new(),
        specdyn_version: String::new(),
        elapsed_s: 0.0,
        initial_loss: 0.0,
        optimizer_steps: 0,
        fingerprint: String::new(),
        tensors: vec![
            NamedTensor { name: "block.conv.weight".into(), shape: vec![8, 4, 3, 3], data: conv },
            NamedTensor { name: "head.weight".into(), shape: vec![300, 200], data: fc },
        ],
    };
    let file = d.path().join("w.safetensors");
    ckpt.save(&file).unwrap();
    let out = d.path().join("ext");
    let o = specdyn(&["spectra", "--weights", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = specdyn::spectra::h5::read(&out.join("spectra.h5")).unwrap();
    let conv = data.matrices.iter().find(|m| m.name == "block.conv.weight").unwrap();
    assert_eq!((conv.rows(), conv.cols(), conv.kind.as_str(), conv.scale_source()), (24, 12, "conv", "rms"));
    let head = data.matrices.iter().find(|m| m.name == "head.weight").unwrap();
    // A random matrix scaled by its RMS entry sits on its MP edge 1 + √1.5.
    let top = head.singular_values[0][0] as f64;
    assert!((top - (1.0 + 1.5f64.sqrt())).abs() < 0.05, "top {top}");
    // The median fit gives the same for an unstructured matrix, and is recorded as such.
    let fitted = d.path().join("fitted");
    let o = specdyn(&[
        "spectra",
        "--weights",
        file.to_str().unwrap(),
        "--out",
        fitted.to_str().unwrap(),
        "--normalize",
        "median",
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = specdyn::spectra::h5::read(&fitted.join("spectra.h5")).unwrap();
    let head = data.matrices.iter().find(|m| m.name == "head.weight").unwrap();
    assert_eq!(head.scale_source(), "fitted");
    let top = head.singular_values[0][0] as f64;
    assert!((top - (1.0 + 1.5f64.sqrt())).abs() < 0.05, "top {top}");
    // --layers filters by substring; a filter that matches nothing is a clear error.
    let o = specdyn(&[
        "spectra",
        "--weights",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--layers",
        "nothing",
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--layers"));
}

#[test]
fn background_spectra_write_the_same_file_as_inline_spectra() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    let text = "[model]\ndepth = 3\nwidth = 96\n[data]\ninput_dim = 16\ntrain_size = 32\ntest_size = 8\n\
                [train]\nsteps = 120\n[checkpoint]\nper_decade = 10\nlatest_every = 25\n\
                [spectra]\nanalysis_every = 7\nsharpness = true\nlanczos_steps = 6\nfull_per_decade = 3\n";
    std::fs::write(&cfg, text).unwrap();
    let mut files = Vec::new();
    for background in [false, true] {
        let run = d.path().join(format!("bg-{background}"));
        let out = specdyn(&[
            "train",
            cfg.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "-q",
            "--threads",
            "2",
            "--set",
            &format!("spectra.background={background}"),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        files.push(run);
    }
    for f in ["spectra.csv", "analysis.csv"] {
        assert_eq!(
            std::fs::read_to_string(files[0].join(f)).unwrap(),
            std::fs::read_to_string(files[1].join(f)).unwrap(),
            "{f}"
        );
    }
    let (a, b) = (
        specdyn::spectra::h5::read(&files[0].join("spectra.h5")).unwrap(),
        specdyn::spectra::h5::read(&files[1].join("spectra.h5")).unwrap(),
    );
    assert_eq!(a.steps, b.steps);
    assert!(a.steps.len() > 10 && a.analysis.len() > 15);
    for (x, y) in a.matrices.iter().zip(&b.matrices) {
        assert_eq!(x.full_steps, y.full_steps);
        assert_eq!(x.singular_values, y.singular_values, "{}", x.name);
        assert_eq!((&x.top_values, &x.track_id, &x.outlier_count), (&y.top_values, &y.track_id, &y.outlier_count));
    }
}
