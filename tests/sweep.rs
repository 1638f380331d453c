//! `specdyn sweep`: a grid with a diverging cell run locally, re-run idempotently, killed
//! mid-way (parent and workers) and resumed to the same table, and the same grid through a
//! real Slurm job array (Debian's slurm-wlm, started by scripts/slurm-one-node.sh in CI)
//! giving the same table. Bad sweep input is refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn specdyn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_specdyn")).args(args).env("SPECDYN_PROGRESS_SECONDS", "1000").output().unwrap()
}

/// 6 cells: two widths × three rates, the largest diverges.
const SWEEP: &str = "[model]\ndepth = 2\nwidth = 32\n[data]\ninput_dim = 8\ntrain_size = 32\ntest_size = 16\n\
                     [train]\nsteps = 200\nlog_every = 5\n[checkpoint]\nlatest_every = 20\n\
                     [sweep.axes]\n\"model.width\" = [32, 96]\n\"optimizer.lr\" = [0.05, 0.2, 500.0]\n";

fn write_config(d: &Path, text: &str) -> PathBuf {
    let p = d.join("sweep.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn ok(out: &Output) {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
}

/// cells.csv of a finished sweep.
fn table(dir: &Path) -> String {
    ok(&specdyn(&["sweep", "report", dir.to_str().unwrap()]));
    std::fs::read_to_string(dir.join("report/cells.csv")).unwrap()
}

fn reference(d: &Path, cfg: &Path) -> String {
    let dir = d.join("reference");
    ok(&specdyn(&["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--jobs", "2", "-q"]));
    table(&dir)
}

#[test]
fn local_sweep_records_divergence_and_is_idempotent() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), SWEEP);
    let dir = d.path().join("s");
    let out = specdyn(&["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--jobs", "2"]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 completed, 2 diverged, 0 failed"), "{err}");
    let first = table(&dir);
    let rows: Vec<&str> = first.lines().collect();
    assert_eq!(rows.len(), 7, "{first}");
    assert_eq!(rows.iter().filter(|r| r.contains(",diverged,")).count(), 2, "{first}");
    let summary = std::fs::read_to_string(dir.join("report/summary.csv")).unwrap();
    assert!(summary.lines().count() == 3, "{summary}");
    // Again: nothing runs, nothing changes.
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let metrics = dir.join("cells").read_dir().unwrap().next().unwrap().unwrap().path().join("metrics.csv");
    let before = mtime(&metrics);
    let out = specdyn(&["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--jobs", "2"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 cells (6 finished, 0 to run)"));
    assert_eq!(mtime(&metrics), before);
    assert_eq!(table(&dir), first);
    // A grown grid adds cells and keeps the old ones.
    let grown = SWEEP.replace("[0.05, 0.2, 500.0]", "[0.05, 0.1, 0.2, 500.0]");
    write_config(d.path(), &grown);
    let out = specdyn(&["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--dry-run"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 cells (6 finished, 2 to run)"));
}

/// Kill `pattern`'s processes with SIGKILL.
fn kill_all(pattern: &str) {
    let _ = Command::new("pkill").args(["-KILL", "-f", pattern]).status();
}

#[test]
fn a_killed_sweep_reruns_to_the_same_table() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), SWEEP);
    let want = reference(d.path(), &cfg);
    let dir = d.path().join("killed");
    let mut parent = Command::new(env!("CARGO_BIN_EXE_specdyn"))
        .args(["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--jobs", "2", "-q"])
        .spawn()
        .unwrap();
    // Wait until some cell has a checkpoint beyond step 0, then kill the parent and its workers.
    let t0 = Instant::now();
    loop {
        let started = std::fs::read_dir(dir.join("cells"))
            .map(|rd| {
                rd.filter_map(|e| e.ok()).any(|e| e.path().join("checkpoints/step-00000020.safetensors").exists())
            })
            .unwrap_or(false);
        if started || t0.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    parent.kill().unwrap();
    parent.wait().unwrap();
    kill_all(&format!("run-cell {}", dir.display()));
    std::thread::sleep(Duration::from_millis(200));
    let out = specdyn(&["sweep", "status", dir.to_str().unwrap()]);
    ok(&out);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("interrupted") || status.contains("pending"), "{status}");
    ok(&specdyn(&["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--jobs", "2", "-q"]));
    assert_eq!(table(&dir), want);
}

#[test]
fn a_slurm_job_array_gives_the_local_table() {
    if std::env::var("SPECDYN_SKIP_SLURM").is_ok() {
        eprintln!("SPECDYN_SKIP_SLURM is set: not testing against Slurm");
        return;
    }
    let up = Command::new("sinfo").args(["-h", "-o", "%T"]).output();
    assert!(
        up.as_ref().is_ok_and(|o| o.status.success() && !o.stdout.is_empty()),
        "no Slurm cluster answers `sinfo`; start one with `sudo scripts/slurm-one-node.sh start` (or set SPECDYN_SKIP_SLURM=1)"
    );
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), SWEEP);
    let want = reference(d.path(), &cfg);
    let dir = d.path().join("slurm");
    let t0 = Instant::now();
    let out = specdyn(&["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--slurm"]);
    ok(&out);
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(job.parse::<u64>().is_ok(), "sbatch printed '{job}'");
    let script = std::fs::read_to_string(dir.join("slurm/array.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-5") && script.contains("run-cell"), "{script}");
    // Wait for every cell to finish.
    loop {
        let out = specdyn(&["sweep", "status", dir.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if err.contains("6 cells: 4 completed, 2 diverged") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(240), "the job array did not finish: {err}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("Slurm: submission to all cells finished in {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(table(&dir), want);
    // Diverged cells exited 0: no task log holds an error.
    for e in std::fs::read_dir(dir.join("slurm/logs")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!text.contains("error:"), "{text}");
    }
}

#[test]
fn bad_sweep_input_is_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    for (text, needle) in [
        (SWEEP.replace("\"model.width\" =", "\"model.widht\" ="), "did you mean 'model.width'"),
        (SWEEP.replace("[32, 96]", "[]"), "empty"),
        (SWEEP.replace("[32, 96]", "[32, 0]"), "model.width = 0"),
        (SWEEP.replace("[sweep.axes]", "[sweep.axis]"), "[sweep]"),
        (SWEEP.split("[sweep.axes]").next().unwrap().to_string(), "no [sweep] table"),
    ] {
        let cfg = write_config(d.path(), &text);
        let out = specdyn(&["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle) && err.contains("Fix:"), "{needle}: {err}");
        assert!(!dir.exists(), "nothing may be written: {err}");
    }
    // A sweep directory made by another grid is refused and left alone.
    let cfg = write_config(d.path(), &SWEEP.replace("steps = 200", "steps = 20"));
    ok(&specdyn(&["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap(), "-q"]));
    let before = std::fs::read(dir.join("cells.json")).unwrap();
    let cfg = write_config(d.path(), &SWEEP.replace("steps = 200", "steps = 30"));
    let out = specdyn(&["sweep", cfg.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("another sweep config") && err.contains("train.steps: 20 → 30"), "{err}");
    assert_eq!(std::fs::read(dir.join("cells.json")).unwrap(), before);
    // --slurm without Slurm.
    let out = Command::new(env!("CARGO_BIN_EXE_specdyn"))
        .args(["sweep", cfg.to_str().unwrap(), "--out", d.path().join("t").to_str().unwrap(), "--slurm"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("Slurm is not installed") && err.contains("--jobs"), "{err}");
    assert!(!d.path().join("t").exists());
    // status/report of something that is not a sweep.
    let out = specdyn(&["sweep", "status", d.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a specdyn sweep"));
}
