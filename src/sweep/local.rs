//! Running a sweep on this machine: a pool of `--jobs J` worker processes, one per cell
//! (`specdyn sweep run-cell`), the machine's threads split among them. One process per cell
//! keeps a crash, a divergence or an out-of-memory cell from taking the others down, and makes
//! SIGKILL of anything resumable: a re-run finds each cell in its run directory.

use super::{Cell, CellState, SweepDir};
use crate::error::{Error, Result};
use crate::progress::{Progress, duration_text};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// How one cell's worker ended.
#[derive(Clone, Debug)]
pub struct Finished {
    pub index: usize,
    pub state: CellState,
    /// Exit code of the worker.
    pub code: Option<i32>,
    pub seconds: f64,
}

/// The pool's settings.
pub struct Pool {
    /// The specdyn executable that runs cells.
    pub exe: PathBuf,
    pub jobs: usize,
    /// Threads per worker.
    pub threads: usize,
    /// `--device` for the workers.
    pub device: String,
    pub quiet: bool,
}

struct Worker {
    index: usize,
    child: Child,
    start: Instant,
}

fn spawn(pool: &Pool, dir: &SweepDir, index: usize, cell: &Cell) -> Result<Worker> {
    let log = dir.log_path(cell);
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("create", parent, e))?;
    }
    let file = std::fs::File::create(&log).map_err(|e| Error::io("create", &log, e))?;
    let err = file.try_clone().map_err(|e| Error::io("open", &log, e))?;
    let child = Command::new(&pool.exe)
        .args(["sweep", "run-cell"])
        .arg(&dir.root)
        .args(["--cell", &index.to_string(), "--threads", &pool.threads.to_string(), "--device", &pool.device])
        .env("SPECDYN_PROGRESS_SECONDS", "30")
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| Error::io("start a worker", &pool.exe, e))?;
    Ok(Worker { index, child, start: Instant::now() })
}

/// One line about a finished cell: its state and its losses from `summary.json`.
pub fn describe(dir: &SweepDir, cell: &Cell, f: &Finished) -> String {
    let summary = crate::rundir::RunDir::new(&dir.cell_dir(cell)).read_summary();
    let loss = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3e}"));
    let detail = match (f.state, &summary) {
        (CellState::Completed, Some(s)) => format!("loss {} → {}", loss(s.initial_loss), loss(s.final_train_loss)),
        (CellState::Diverged, Some(s)) => {
            format!(
                "diverged at step {} (last finite loss {})",
                s.diverged_at_step.unwrap_or(0),
                loss(s.last_finite_loss)
            )
        }
        (CellState::Failed, _) => format!("failed (exit {:?}); see {}", f.code, dir.log_path(cell).display()),
        (CellState::Running, _) => "running in another process".into(),
        (s, _) => s.name().to_string(),
    };
    format!("{}: {detail} ({})", cell.name, duration_text(f.seconds))
}

/// Run `todo` (cell indices) with the pool; returns how each ended. Stops launching on
/// Ctrl-C and waits for the running workers (which checkpoint and stop).
pub fn run(
    pool: &Pool,
    dir: &SweepDir,
    cells: &[Cell],
    todo: &[usize],
    progress: &mut Progress,
) -> Result<Vec<Finished>> {
    let mut queue = todo.iter().copied().collect::<std::collections::VecDeque<_>>();
    let mut running: Vec<Worker> = Vec::new();
    let mut done = Vec::new();
    let mut forwarded = false;
    loop {
        let interrupted = crate::train::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
        if interrupted && !forwarded {
            // The terminal's Ctrl-C reaches the workers too; `kill -INT` of this process only
            // does not, so pass it on.
            for w in &running {
                let _ = Command::new("kill").args(["-INT", &w.child.id().to_string()]).status();
            }
            forwarded = true;
        }
        while !interrupted && running.len() < pool.jobs {
            let Some(i) = queue.pop_front() else { break };
            running.push(spawn(pool, dir, i, &cells[i])?);
        }
        if running.is_empty() {
            break;
        }
        let mut k = 0;
        while k < running.len() {
            match running[k].child.try_wait().map_err(|e| Error::io("wait for a worker", &pool.exe, e))? {
                Some(status) => {
                    let w = running.swap_remove(k);
                    let code = status.code();
                    let state = match code {
                        Some(crate::error::EXIT_BUSY) => CellState::Running,
                        Some(0) | Some(130) | Some(1) | Some(2) | None => dir.cell_state(&cells[w.index]),
                        Some(_) => CellState::Failed,
                    };
                    let f = Finished { index: w.index, state, code, seconds: w.start.elapsed().as_secs_f64() };
                    progress.inc(1);
                    progress.println(&describe(dir, &cells[w.index], &f));
                    done.push(f);
                }
                None => k += 1,
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(done)
}

/// The executable that runs cells: this one.
pub fn current_exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| Error::io("find the specdyn executable", Path::new("specdyn"), e))
}
