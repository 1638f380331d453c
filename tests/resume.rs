//! Crash safety and exact resume: a run killed with SIGKILL at a random step, in its first
//! milliseconds, or inside a checkpoint, metrics or spectra write (fault points), or stopped
//! with Ctrl-C (SIGINT), and then resumed ends with weights, optimizer state, metrics and
//! spectra byte-identical to an uninterrupted run; a second writer is refused while the first
//! runs on.

use specdyn::checkpoint::Checkpoint;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = "seed = 3\n\
[model]\ndepth = 3\nwidth = 192\nactivation = \"tanh\"\nparameterization = \"mup\"\nbias = true\n\
[data]\nkind = \"single-index\"\ninput_dim = 24\ntrain_size = 256\ntest_size = 64\n\
[optimizer]\nkind = \"adam\"\nlr = 0.02\nschedule = \"cosine\"\nwarmup_steps = 10\n\
[train]\nsteps = 400\nbatch_size = 32\nlog_every = 1\n\
[checkpoint]\nper_decade = 3\nlatest_every = 7\n";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_specdyn"))
}

fn start(cfg: &Path, run: &Path) -> Child {
    bin()
        .args(["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q", "--threads", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Number of metrics rows written so far.
fn rows(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.csv")).map(|t| t.lines().count().saturating_sub(1)).unwrap_or(0)
}

fn wait_for_rows(child: &mut Child, run: &Path, n: usize) -> bool {
    let t0 = Instant::now();
    while rows(run) < n {
        if child.try_wait().unwrap().is_some() || t0.elapsed() > Duration::from_secs(120) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

fn resume(run: &Path) -> std::process::Output {
    bin().args(["train", "--resume", run.to_str().unwrap(), "-q", "--threads", "2"]).output().unwrap()
}

fn final_state(run: &Path) -> Checkpoint {
    Checkpoint::load(&run.join("checkpoints/step-00000400.safetensors")).unwrap()
}

fn assert_same_state(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.step, b.step);
    let names: Vec<&str> = a.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, b.tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>());
    assert!(names.iter().any(|n| n.starts_with("optimizer.exp_avg_sq.")), "Adam state must be saved");
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        let bx: Vec<u32> = x.data.iter().map(|v| v.to_bits()).collect();
        let by: Vec<u32> = y.data.iter().map(|v| v.to_bits()).collect();
        assert!(bx == by, "tensor {} differs after resume", x.name);
    }
}

/// Metrics rows without the wall-time column.
fn metrics_without_time(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').map(|(a, _)| a.to_string()).unwrap_or_default())
        .collect()
}

#[test]
fn sigkill_then_resume_is_bit_identical() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();

    let reference = d.path().join("reference");
    let out = bin()
        .args(["train", cfg.to_str().unwrap(), "--out", reference.to_str().unwrap(), "-q", "--threads", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A kill point drawn from the clock (printed, so a failure can be replayed by hand).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as usize;
    let kill_after = 15 + nanos % 330;
    eprintln!("killing after {kill_after} metric rows");
    let crashed = d.path().join("crashed");
    let mut child = start(&cfg, &crashed);
    assert!(wait_for_rows(&mut child, &crashed, kill_after), "run finished before the kill point");
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let summary = std::fs::read_to_string(crashed.join("summary.json")).unwrap();
    assert!(summary.contains("\"running\""), "a killed run still says running: {summary}");

    let out = resume(&crashed);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_state(&final_state(&reference), &final_state(&crashed));
    assert_eq!(metrics_without_time(&reference), metrics_without_time(&crashed));
    // Spectra and curvature are rebuilt on resume and continue exactly.
    for f in ["spectra.csv", "analysis.csv"] {
        assert_eq!(
            std::fs::read_to_string(reference.join(f)).unwrap(),
            std::fs::read_to_string(crashed.join(f)).unwrap(),
            "{f}"
        );
    }
    let summary = std::fs::read_to_string(crashed.join("summary.json")).unwrap();
    assert!(summary.contains("\"completed\"") && summary.contains("resumed_from_step"), "{summary}");
}

#[test]
fn ctrl_c_checkpoints_and_resumes_exactly() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let reference = d.path().join("reference");
    assert!(
        bin()
            .args(["train", cfg.to_str().unwrap(), "--out", reference.to_str().unwrap(), "-q"])
            .status()
            .unwrap()
            .success()
    );

    let run = d.path().join("interrupted");
    let mut child = start(&cfg, &run);
    assert!(wait_for_rows(&mut child, &run, 123), "run finished before the interrupt");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    let summary = std::fs::read_to_string(run.join("summary.json")).unwrap();
    assert!(summary.contains("\"interrupted\""), "{summary}");
    assert!(run.join("checkpoints/latest.safetensors").exists());

    let out = resume(&run);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_state(&final_state(&reference), &final_state(&run));
}

#[test]
fn finished_runs_can_be_extended() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    let short = CONFIG.replace("steps = 400", "steps = 40").replace("schedule = \"cosine\"", "schedule = \"constant\"");
    std::fs::write(&cfg, &short).unwrap();
    let run = d.path().join("r");
    assert!(
        bin().args(["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]).status().unwrap().success()
    );
    let out =
        bin().args(["train", "--resume", run.to_str().unwrap(), "-q", "--set", "train.steps=60"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(run.join("checkpoints/step-00000060.safetensors").exists());
    let steps: Vec<String> =
        metrics_without_time(&run).iter().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    assert_eq!(steps.len(), 61, "one row per step 0..=60 without duplicates");
}

/// Train the reference run of `cfg` into `dir/reference`.
fn reference_run(d: &Path, cfg: &Path) -> std::path::PathBuf {
    let reference = d.join("reference");
    let out = bin()
        .args(["train", cfg.to_str().unwrap(), "--out", reference.to_str().unwrap(), "-q", "--threads", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    reference
}

fn assert_same_outputs(reference: &Path, run: &Path) {
    assert_same_state(&final_state(reference), &final_state(run));
    assert_eq!(metrics_without_time(reference), metrics_without_time(run));
    for f in ["spectra.csv", "analysis.csv"] {
        assert_eq!(
            std::fs::read_to_string(reference.join(f)).unwrap(),
            std::fs::read_to_string(run.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn a_second_writer_is_refused_and_the_first_run_is_intact() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let reference = reference_run(d.path(), &cfg);
    let run = d.path().join("busy");
    let mut child = start(&cfg, &run);
    assert!(wait_for_rows(&mut child, &run, 30), "run finished too early");
    for args in [
        vec!["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "--overwrite", "-q"],
        vec!["train", "--resume", run.to_str().unwrap(), "-q"],
        vec!["spectra", run.to_str().unwrap(), "-q"],
    ] {
        let out = bin().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(75), "{args:?}: {err}");
        assert!(
            err.contains("in use by another specdyn process") && err.contains(&format!("pid {}", child.id())),
            "{err}"
        );
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_same_outputs(&reference, &run);
    let summary = std::fs::read_to_string(run.join("summary.json")).unwrap();
    assert!(summary.contains("\"completed\""), "{summary}");
}

#[test]
fn killed_in_the_first_milliseconds_then_restarted_in_place() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let reference = reference_run(d.path(), &cfg);
    for (i, delay_ms) in [0u64, 2, 5, 10, 20, 40].into_iter().enumerate() {
        let run = d.path().join(format!("early-{i}"));
        let mut child = start(&cfg, &run);
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever state the kill left, one of the two ordinary commands continues it.
        let state = specdyn::rundir::RunDir::new(&run).state();
        let out = if state == specdyn::rundir::DirState::Run {
            if let Some(s) = specdyn::rundir::RunDir::new(&run).status() {
                assert_eq!(s.name(), "interrupted", "a killed run reads as interrupted");
            }
            resume(&run)
        } else {
            bin()
                .args(["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q", "--threads", "2"])
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "delay {delay_ms} ms, state {state:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_same_outputs(&reference, &run);
    }
}

/// SIGKILL at a chosen point inside the writers (`SPECDYN_FAULT`), then `--resume`.
fn kill_at_fault_point_then_resume(point: &str, hits: &[u32]) {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let reference = reference_run(d.path(), &cfg);
    for &n in hits {
        let run = d.path().join(format!("{point}-{n}"));
        let out = bin()
            .args(["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q", "--threads", "2"])
            .env("SPECDYN_FAULT", format!("{point}:{n}"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "the fault point {point}:{n} was not reached");
        if let Some(s) = specdyn::rundir::RunDir::new(&run).status() {
            assert_eq!(s.name(), "interrupted", "a killed run reads as interrupted");
        }
        if let Ok(d) = specdyn::spectra::h5::read(&run.join("spectra.h5")) {
            assert!(d.steps.windows(2).all(|w| w[0] < w[1]), "spectra.h5 steps in order");
        }
        let out = resume(&run);
        assert!(out.status.success(), "{point}:{n}: {}", String::from_utf8_lossy(&out.stderr));
        assert_same_outputs(&reference, &run);
        let leftovers: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .chain(std::fs::read_dir(run.join("checkpoints")).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

#[test]
fn sigkill_inside_spectra_writes_then_resume_is_bit_identical() {
    // The spectra file is rewritten at every checkpoint; hit 3 is inside the second write.
    kill_at_fault_point_then_resume("spectra-write", &[3, 9, 17]);
}

#[test]
fn sigkill_inside_checkpoint_and_metrics_writes_then_resume_is_bit_identical() {
    kill_at_fault_point_then_resume("atomic-write", &[2, 7, 19]);
}

#[test]
fn snapshots_lagging_behind_the_checkpoints_are_rebuilt_on_resume() {
    // The spectra thread is held back 400 ms per snapshot, so when the run is killed inside a
    // late checkpoint write its spectra.h5 lacks snapshots of checkpoints already on disk.
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let reference = reference_run(d.path(), &cfg);
    let run = d.path().join("lagging");
    let out = bin()
        .args(["train", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q", "--threads", "2"])
        .env("SPECDYN_FAULT", "atomic-write:19")
        .env("SPECDYN_DELAY", "spectra-analysis:400")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault point was not reached");
    let checkpoints = specdyn::rundir::RunDir::new(&run).step_checkpoints().len();
    let snapshots = specdyn::spectra::h5::read(&run.join("spectra.h5")).map(|d| d.steps.len()).unwrap_or(0);
    assert!(snapshots < checkpoints, "the snapshots did not lag: {snapshots} of {checkpoints} checkpoints");
    let out = resume(&run);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_outputs(&reference, &run);
}

#[test]
fn resnet_on_cifar_sigkill_then_resume_is_bit_identical() {
    let data = std::path::Path::new("../shared/datasets/cifar10-subset");
    assert!(data.join("data_batch_1.bin").exists(), "the CIFAR-10 subset is missing at {}", data.display());
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    let text = format!(
        "seed = 2\n[model]\nkind = \"resnet\"\nwidth = 8\ndepth = 2\nactivation = \"relu\"\ndownsample_every = 1\n\
         [data]\nkind = \"cifar10\"\ndir = \"{}\"\ntrain_size = 256\ntest_size = 64\naugment = true\n\
         [optimizer]\nlr = 0.5\n[train]\nsteps = 60\nbatch_size = 16\nlog_every = 1\n\
         [checkpoint]\nlatest_every = 7\n[spectra]\nntk = false\n",
        std::fs::canonicalize(data).unwrap().display()
    );
    std::fs::write(&cfg, text).unwrap();
    let reference = reference_run(d.path(), &cfg);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as usize;
    let kill_after = 5 + nanos % 45;
    eprintln!("killing after {kill_after} metric rows");
    let run = d.path().join("crashed");
    let mut child = start(&cfg, &run);
    assert!(wait_for_rows(&mut child, &run, kill_after), "run finished before the kill point");
    child.kill().unwrap();
    child.wait().unwrap();
    let out = resume(&run);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let last = |r: &Path| Checkpoint::load(&r.join("checkpoints/step-00000060.safetensors")).unwrap();
    assert_same_state_any(&last(&reference), &last(&run));
    assert_eq!(metrics_without_time(&reference), metrics_without_time(&run));
    assert_eq!(
        std::fs::read_to_string(reference.join("spectra.csv")).unwrap(),
        std::fs::read_to_string(run.join("spectra.csv")).unwrap()
    );
}

/// Every tensor bit-identical (any optimizer).
fn assert_same_state_any(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.step, b.step);
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(x.name, y.name);
        let bx: Vec<u32> = x.data.iter().map(|v| v.to_bits()).collect();
        let by: Vec<u32> = y.data.iter().map(|v| v.to_bits()).collect();
        assert!(bx == by, "tensor {} differs after resume", x.name);
    }
}
