//! A run directory: its files, its lock and its state.
//!
//! ```text
//! RUN/
//!   .specdyn.lock     advisory lock, held for the life of the process that writes the run
//!   config.toml       the effective config
//!   metrics.csv       one row per logged step
//!   summary.json      status (running | completed | diverged | interrupted), losses, duration
//!   checkpoints/      step-XXXXXXXX.safetensors (log-spaced) and latest.safetensors
//!   spectra.h5 spectra.csv analysis.csv plots/ theory/ compare/
//! ```
//!
//! **One writer.** Every command that writes into a run (train, resume, spectra) first takes an
//! exclusive `flock` on `.specdyn.lock` and writes its PID, host and command into it. A second
//! writer gets [`Error::Busy`] naming the holder (exit code 75). The kernel releases the lock
//! when its process dies, however it dies, so the lock of a killed run is simply taken over.
//! The lock file is never deleted (deleting a lock file races with a process that opened it).
//!
//! **Dead runs.** A run whose `summary.json` says `running` but whose lock is free was killed;
//! [`RunDir::status`] reports it as `interrupted` and the next writer repairs the file.

use crate::checkpoint::Checkpoint;
use crate::config::RunConfig;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = ".specdyn.lock";

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Running,
    Completed,
    Diverged,
    Interrupted,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Diverged => "diverged",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// Contents of `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub status: RunStatus,
    pub specdyn_version: String,
    pub device: String,
    pub steps_planned: u64,
    /// Parameter updates applied.
    pub steps_completed: u64,
    pub initial_loss: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub final_test_loss: Option<f64>,
    /// Test accuracy at the last evaluation (classification data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_test_accuracy: Option<f64>,
    /// The step whose loss was not finite or exploded.
    pub diverged_at_step: Option<u64>,
    pub last_finite_loss: Option<f64>,
    /// Training wall time over all segments of the run, seconds.
    pub duration_s: f64,
    /// Steps per second in the last segment.
    pub steps_per_s: f64,
    pub resumed_from_step: Option<u64>,
    /// Seconds spent on spectra and curvature (CPU time; with `spectra.background` most of
    /// it overlaps training).
    #[serde(default)]
    pub spectra_s: f64,
    /// Seconds training waited for spectra and curvature (part of duration_s): the overhead.
    #[serde(default)]
    pub spectra_wait_s: f64,
}

/// What a directory holds, as far as `specdyn train` is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirState {
    /// Does not exist.
    Absent,
    /// Exists and is empty.
    Empty,
    /// A specdyn run that never got as far as its config (killed in its first milliseconds,
    /// or a sweep cell not started yet): only [`SIDECARS`], an empty `checkpoints/` and
    /// temporary files.
    Unstarted,
    /// Holds a run (`config.toml`).
    Run,
    /// Holds something else.
    Foreign,
}

/// The files of one run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub root: PathBuf,
}

/// The exclusive lock on a run directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    pub path: PathBuf,
}

impl RunLock {
    /// Record who holds the lock (shown to a second writer).
    pub fn announce(&mut self, command: &str) -> Result<()> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let text = format!("pid {} on {}, {command}, since {}\n", std::process::id(), host.trim(), chrono_like_now());
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write(&mut self.file).map_err(|e| Error::io("write", &self.path, e))
    }
}

/// Seconds since the Unix epoch as text (no date library needed for a log line).
fn chrono_like_now() -> String {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("unix time {s}")
}

/// Files a run directory may hold besides the run itself: the lock, and a sweep's cell
/// coordinates and last error. They survive `--overwrite`.
pub const SIDECARS: [&str; 3] = [LOCK_FILE, "cell.toml", "error.txt"];

/// Is `name` a temporary file of an atomic write (`.NAME.tmp-PID`)?
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

impl RunDir {
    pub fn new(root: &Path) -> Self {
        RunDir { root: root.to_path_buf() }
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    pub fn summary_path(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn checkpoint_path(&self, step: u64) -> PathBuf {
        self.checkpoints_dir().join(format!("step-{step:08}.safetensors"))
    }
    pub fn latest_path(&self) -> PathBuf {
        self.checkpoints_dir().join("latest.safetensors")
    }
    pub fn spectra_path(&self) -> PathBuf {
        self.root.join("spectra.h5")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// What the directory holds (read-only).
    pub fn state(&self) -> DirState {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return if self.root.exists() { DirState::Foreign } else { DirState::Absent };
        };
        let names: Vec<String> =
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into()).collect();
        if names.is_empty() {
            return DirState::Empty;
        }
        if names.iter().any(|n| n == "config.toml") {
            return DirState::Run;
        }
        let leftovers_only = names.iter().all(|n| {
            SIDECARS.contains(&n.as_str())
                || is_temp_file(n)
                || (n == "checkpoints"
                    && std::fs::read_dir(self.checkpoints_dir())
                        .map(|d| d.filter_map(|e| e.ok()).all(|e| is_temp_file(&e.file_name().to_string_lossy())))
                        .unwrap_or(false))
        });
        if leftovers_only { DirState::Unstarted } else { DirState::Foreign }
    }

    /// Take the exclusive lock, creating the directory and the lock file if needed.
    pub fn lock(&self) -> Result<RunLock> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io("create run directory", &self.root, e))?;
        let path = self.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { file, path }),
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                Err(Error::Busy {
                    path: self.root.clone(),
                    holder: if holder.is_empty() { "starting up".to_string() } else { holder.to_string() },
                    hint: "wait for it to finish (`specdyn train --resume` continues a run once it has stopped), or write to another --out directory".to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }

    /// Is a live process holding the lock? (False when there is no lock file.)
    pub fn is_locked(&self) -> bool {
        let Ok(file) = OpenOptions::new().read(true).write(true).open(self.lock_path()) else {
            return false;
        };
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(_) => true,
        }
    }

    /// The effective config stored in the directory.
    pub fn read_config(&self) -> Result<RunConfig> {
        let path = self.config_path();
        if !path.exists() {
            return Err(Error::run_dir(
                &self.root,
                "has no config.toml, so it is not a specdyn run",
                "pass the directory a `specdyn train CONFIG --out DIR` run created",
            ));
        }
        RunConfig::load(&path, &[])
    }

    /// Read `summary.json`, if present and readable.
    pub fn read_summary(&self) -> Option<Summary> {
        let text = std::fs::read_to_string(self.summary_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The run's status: `summary.json`'s, except that a run marked running whose lock is free
    /// was killed, and is reported as interrupted.
    pub fn status(&self) -> Option<RunStatus> {
        let s = self.read_summary()?;
        Some(if s.status == RunStatus::Running && !self.is_locked() { RunStatus::Interrupted } else { s.status })
    }

    /// Write `summary.json` atomically.
    pub fn write_summary(&self, summary: &Summary) -> Result<()> {
        let text = serde_json::to_string_pretty(summary).unwrap_or_default();
        crate::checkpoint::atomic_write(&self.summary_path(), format!("{text}\n").as_bytes())
    }

    /// Step checkpoints (`latest` excluded), by step.
    pub fn step_checkpoints(&self) -> Vec<(u64, PathBuf)> {
        let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(self.checkpoints_dir())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                let step = name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()?;
                Some((step, p))
            })
            .collect();
        v.sort();
        v
    }

    /// The checkpoint with the highest step (the newest step file or `latest`), loaded and
    /// checked against `config`'s fingerprint. A corrupt or foreign file is an error naming it.
    pub fn newest_checkpoint(&self, config: &RunConfig) -> Result<Option<(PathBuf, Checkpoint)>> {
        let mut best: Option<(PathBuf, Checkpoint)> = None;
        let latest = self.latest_path();
        let newest_step_file = self.step_checkpoints().pop().map(|(_, p)| p);
        for path in [newest_step_file, latest.exists().then_some(latest.clone())].into_iter().flatten() {
            let ckpt = load_own(&path, config)?;
            if best.as_ref().is_none_or(|(_, b)| ckpt.step > b.step) {
                best = Some((path, ckpt));
            }
        }
        Ok(best)
    }

    /// Remove temporary files of interrupted atomic writes (needs the lock: no live writer).
    pub fn clean_temp_files(&self, _lock: &RunLock) {
        for dir in [self.root.clone(), self.checkpoints_dir(), self.root.join("plots"), self.root.join("theory")] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.filter_map(|e| e.ok()) {
                if is_temp_file(&e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Remove everything but the sidecar files (a run being replaced; needs the lock).
    pub fn clear(&self, _lock: &RunLock) -> Result<()> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| Error::io("list", &self.root, e))?;
        for e in entries.filter_map(|e| e.ok()) {
            if SIDECARS.iter().any(|s| e.file_name() == *s) {
                continue;
            }
            let p = e.path();
            let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            r.map_err(|err| Error::io("remove", &p, err))?;
        }
        Ok(())
    }
}

/// Check that `out` can receive the files of command `what` (coord-check, theory, compare,
/// spectra --weights): not an existing file, and not a training run's directory, whose own
/// files (config.toml, metrics.csv, spectra.h5, plots/) would be mixed or replaced.
pub fn check_output_dir(out: &Path, what: &str) -> Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(Error::run_dir(out, "is a file, not a directory", format!("give `{what}` a directory for --out")));
    }
    if out.join("config.toml").exists() || out.join(LOCK_FILE).exists() {
        return Err(Error::run_dir(
            out,
            "is a training run's directory",
            format!(
                "give `{what}` its own --out directory (e.g. a subdirectory); it would mix its files with the run's"
            ),
        ));
    }
    Ok(())
}

/// Load a checkpoint and check that it belongs to a run with `config` (same fingerprint).
pub fn load_own(path: &Path, config: &RunConfig) -> Result<Checkpoint> {
    let ckpt = Checkpoint::load(path)?;
    let want = config.fingerprint();
    let theirs = if ckpt.fingerprint.is_empty() {
        RunConfig::from_toml_str(&ckpt.config, &[]).map(|c| c.fingerprint()).unwrap_or_default()
    } else {
        ckpt.fingerprint.clone()
    };
    if theirs != want {
        let differences = RunConfig::from_toml_str(&ckpt.config, &[])
            .map(|theirs| crate::config::differences(&theirs.trajectory(), &config.trajectory()))
            .unwrap_or_default();
        let what = if differences.is_empty() {
            format!("fingerprint {theirs} is not this run's {want}")
        } else {
            differences.join("; ")
        };
        return Err(Error::checkpoint(
            path,
            format!("belongs to another run ({what})"),
            "checkpoints cannot be moved between runs; resume the run it came from, or delete it to fall back to an earlier checkpoint",
        ));
    }
    Ok(ckpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_and_a_dead_lock_is_free() {
        let d = tempfile::tempdir().unwrap();
        let run = RunDir::new(&d.path().join("r"));
        assert_eq!(run.state(), DirState::Absent);
        let mut lock = run.lock().unwrap();
        lock.announce("test").unwrap();
        assert_eq!(run.state(), DirState::Unstarted);
        assert!(run.is_locked());
        let err = run.lock().unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_BUSY);
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");
        drop(lock);
        assert!(!run.is_locked());
        run.lock().unwrap();
    }
}
