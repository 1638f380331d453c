//! Bad input gets a one-paragraph error that names the cause and the fix, a non-zero exit
//! code, and never a panic trace (issue "specdyn train: the spine").

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn specdyn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_specdyn")).args(args).output().expect("run specdyn")
}

const SMALL: &str = "[model]\ndepth = 2\nwidth = 16\n[data]\ninput_dim = 4\ntrain_size = 8\ntest_size = 4\n[train]\nsteps = 6\n[checkpoint]\nlatest_every = 2\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Assert a clean failure whose message contains every `needle`.
fn fails_cleanly(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE") && !err.contains("internal error"),
        "panic trace: {err}"
    );
    let msg = err.lines().filter(|l| l.starts_with("error:")).collect::<Vec<_>>();
    assert_eq!(msg.len(), 1, "want exactly one `error:` paragraph, got: {err}");
    assert!(msg[0].contains("Fix:"), "no fix suggested: {err}");
    for n in needles {
        assert!(err.contains(n), "message lacks '{n}': {err}");
    }
    err
}

#[test]
fn unknown_key_is_named() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", "[model]\nwidht = 64\n");
    let out = specdyn(&["train", cfg.to_str().unwrap(), "--out", d.path().join("r").to_str().unwrap()]);
    fails_cleanly(&out, &["widht", "c.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_override_suggests_the_key() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let out = specdyn(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        d.path().join("r").to_str().unwrap(),
        "--set",
        "model.widht=3",
    ]);
    fails_cleanly(&out, &["model.widht", "did you mean 'model.width'"]);
}

#[test]
fn zero_width_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let out = specdyn(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        d.path().join("r").to_str().unwrap(),
        "--set",
        "model.width=0",
    ]);
    fails_cleanly(&out, &["model.width = 0"]);
    assert!(!d.path().join("r").exists(), "nothing may be written for a bad config");
}

#[test]
fn wrong_type_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", "[model]\nwidth = \"wide\"\n");
    let out = specdyn(&["train", cfg.to_str().unwrap(), "--out", d.path().join("r").to_str().unwrap()]);
    fails_cleanly(&out, &["width"]);
}

#[test]
fn toml_syntax_error() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", "[model\nwidth = 3\n");
    let out = specdyn(&["train", cfg.to_str().unwrap(), "--out", d.path().join("r").to_str().unwrap()]);
    fails_cleanly(&out, &["not valid TOML"]);
}

#[test]
fn missing_config_file() {
    let d = tempfile::tempdir().unwrap();
    let out = specdyn(&["train", "no/such/config.toml", "--out", d.path().join("r").to_str().unwrap()]);
    fails_cleanly(&out, &["no/such/config.toml", "configs/"]);
}

#[test]
fn unwritable_out_dir() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let blocker = write(d.path(), "a-file", "");
    let out = specdyn(&["train", cfg.to_str().unwrap(), "--out", blocker.join("run").to_str().unwrap()]);
    fails_cleanly(&out, &["cannot create run directory", "a-file"]);
}

#[test]
fn existing_run_is_not_clobbered() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let run = d.path().join("r");
    assert!(specdyn(&["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]).status.success());
    let before = std::fs::read(run.join("metrics.csv")).unwrap();
    let out = specdyn(&["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    fails_cleanly(&out, &["already holds a run", "--resume", "--overwrite"]);
    assert_eq!(before, std::fs::read(run.join("metrics.csv")).unwrap());
}

#[test]
fn resume_with_another_config_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let run = d.path().join("r");
    assert!(specdyn(&["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]).status.success());
    let out = specdyn(&["train", "--resume", run.to_str().unwrap(), "--set", "model.width=32"]);
    fails_cleanly(&out, &["different config", "model.width: 16 → 32"]);
}

#[test]
fn truncated_checkpoint_is_named_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let run = d.path().join("r");
    assert!(specdyn(&["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]).status.success());
    let ckpt = run.join("checkpoints/step-00000006.safetensors");
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    let out = specdyn(&["train", "--resume", run.to_str().unwrap()]);
    fails_cleanly(&out, &["step-00000006.safetensors", "truncated"]);
    assert_eq!(std::fs::read(&ckpt).unwrap().len(), bytes.len() / 2, "the evidence must not be overwritten");
}

#[test]
fn corrupt_checkpoint_fails_its_checksum() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let run = d.path().join("r");
    assert!(specdyn(&["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]).status.success());
    let ckpt = run.join("checkpoints/step-00000006.safetensors");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let n = bytes.len();
    bytes[n - 7] ^= 0x40;
    std::fs::write(&ckpt, &bytes).unwrap();
    let out = specdyn(&["train", "--resume", run.to_str().unwrap()]);
    fails_cleanly(&out, &["step-00000006.safetensors", "checksum mismatch"]);
}

#[test]
fn resume_needs_a_run_directory() {
    let d = tempfile::tempdir().unwrap();
    let out = specdyn(&["train", "--resume", d.path().to_str().unwrap()]);
    fails_cleanly(&out, &["not a specdyn run"]);
}

#[test]
fn missing_data_file() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", "[data]\nkind = \"files\"\nx = \"nope/X.npy\"\ny = \"nope/y.npy\"\n");
    let out = specdyn(&["train", cfg.to_str().unwrap(), "--out", d.path().join("r").to_str().unwrap()]);
    fails_cleanly(&out, &["nope/X.npy", "cannot be read"]);
}

#[test]
fn mismatched_data_shapes() {
    let d = tempfile::tempdir().unwrap();
    specdyn::data::write_npy(&d.path().join("X.npy"), &[10, 3], &[0.5; 30]).unwrap();
    specdyn::data::write_npy(&d.path().join("y.npy"), &[9], &[1.0; 9]).unwrap();
    let text = format!(
        "[data]\nkind = \"files\"\nx = \"{}\"\ny = \"{}\"\n",
        d.path().join("X.npy").display(),
        d.path().join("y.npy").display()
    );
    let cfg = write(d.path(), "c.toml", &text);
    let out = specdyn(&["train", cfg.to_str().unwrap(), "--out", d.path().join("r").to_str().unwrap()]);
    fails_cleanly(&out, &["y.npy", "[9]", "10 samples"]);
}

#[test]
fn gpu_device_not_compiled_in() {
    if cfg!(feature = "cuda") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let out =
        specdyn(&["train", cfg.to_str().unwrap(), "--out", d.path().join("r").to_str().unwrap(), "--device", "cuda"]);
    fails_cleanly(&out, &["cuda", "--features cuda"]);
}

#[test]
fn bad_override_syntax() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let out = specdyn(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        d.path().join("r").to_str().unwrap(),
        "--set",
        "model.width",
    ]);
    fails_cleanly(&out, &["key=value"]);
}

#[test]
fn divergence_is_recorded_not_panicked() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", SMALL);
    let run = d.path().join("r");
    let out = specdyn(&[
        "train",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--set",
        "optimizer.lr=1e6",
        "--set",
        "train.steps=50",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("diverged at step") && err.contains("lower optimizer.lr"), "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "diverged");
    assert!(summary["diverged_at_step"].as_u64().is_some());
    assert!(summary["last_finite_loss"].as_f64().is_some_and(f64::is_finite));
}

#[test]
fn theory_mup_refuses_what_it_does_not_describe() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "c.toml", &format!("{SMALL}[optimizer]\nkind = \"adam\"\n"));
    let out = specdyn(&["theory", "mup", cfg.to_str().unwrap(), "--out", d.path().join("t").to_str().unwrap()]);
    fails_cleanly(&out, &["does not describe this optimizer", "plain SGD"]);
    let cfg = write(d.path(), "b.toml", &SMALL.replace("[data]\n", "[data]\nonline = true\n"));
    let out = specdyn(&["theory", "mup", cfg.to_str().unwrap(), "--out", d.path().join("t").to_str().unwrap()]);
    fails_cleanly(&out, &["online data"]);
    assert!(!d.path().join("t").exists(), "nothing is written on a refused config");
}

#[test]
fn compare_names_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    // Not a run directory.
    let out = specdyn(&["compare", d.path().to_str().unwrap()]);
    fails_cleanly(&out, &["config.toml"]);
    // Runs of two different configs.
    let cfg = write(d.path(), "c.toml", SMALL);
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    assert!(specdyn(&["train", cfg.to_str().unwrap(), "--out", a.to_str().unwrap(), "-q"]).status.success());
    assert!(
        specdyn(&["train", cfg.to_str().unwrap(), "--out", b.to_str().unwrap(), "-q", "--set", "optimizer.lr=0.5"])
            .status
            .success()
    );
    let out =
        specdyn(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--out", d.path().join("c").to_str().unwrap()]);
    fails_cleanly(&out, &["different config"]);
    // A corrupt theory cache is named, with the fix.
    let one = specdyn(&["compare", a.to_str().unwrap(), "-q", "--samples", "200", "--response-samples", "20"]);
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    assert!(a.join("compare/summary.csv").exists() && a.join("theory/key.toml").exists());
    std::fs::write(a.join("theory/loss.csv"), "step,train_loss,stderr\n0,abc,0\n").unwrap();
    let out = specdyn(&["compare", a.to_str().unwrap(), "-q", "--samples", "200", "--response-samples", "20"]);
    fails_cleanly(&out, &["loss.csv", "delete the theory/ directory"]);
}
