//! Spectra off the training thread: snapshots are analysed by a background thread with its
//! own low-priority thread pool, fed through a bounded queue, in the order they were taken.
//!
//! Training hands over each snapshot (the host copy it already made for its step checkpoint)
//! and goes on; it waits only when the queue is full. The worker appends each analysed
//! snapshot to the file's contents and rewrites `spectra.h5` (atomically), so a crash leaves a
//! readable file with every finished snapshot. Snapshots may lag behind the checkpoints: every
//! one of them is taken at a step checkpoint, which stays on disk, so a resume analyses the
//! ones the file lacks again ([`SpectraRecorder::resume`]) and the finished file is the same.
//! Curvature rows are computed on the training thread (they need the model) and cannot be
//! rebuilt later; [`Spectra::persist`] puts them on disk before every checkpoint.
//!
//! The pool's threads run at the lowest CPU priority (`nice` 19), so on a CPU run the analysis
//! takes the cycles training leaves idle instead of slowing it down, and on a GPU run it has
//! every core.

use super::h5::{self, AnalysisRow, SpectraData};
use super::record::{SpectraRecorder, analyse, append};
use super::snapshot::SpectraState;
use crate::checkpoint::NamedTensor;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Snapshots waiting in the queue take at most this much memory (at least one is allowed).
const QUEUE_BYTES: f64 = 256.0 * 1024.0 * 1024.0;

/// How many snapshots of a model with `param_floats` parameters the queue holds (1 to 8).
pub fn queue_depth(param_floats: f64) -> usize {
    ((QUEUE_BYTES / (4.0 * param_floats.max(1.0))) as usize).clamp(1, 8)
}

struct Job {
    step: u64,
    tensors: Vec<NamedTensor>,
    full: bool,
}

/// What the training thread and the worker share: the file's contents.
struct Shared {
    data: SpectraData,
    seconds: f64,
    /// Curvature rows recorded since the file was last written.
    unwritten: bool,
    /// The worker's first error, reported at the next [`Spectra::persist`].
    failed: Option<Error>,
}

/// A recorder, run here or on a background thread.
pub struct Spectra(Mode);

enum Mode {
    Inline(Box<SpectraRecorder>),
    Background {
        queue: Option<SyncSender<Job>>,
        thread: Option<JoinHandle<SpectraState>>,
        shared: Arc<Mutex<Shared>>,
        path: PathBuf,
    },
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic elsewhere cannot leave the contents half-updated (appends are plain pushes).
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run the calling thread only on otherwise idle CPU time (Linux `SCHED_IDLE`: any other
/// runnable thread preempts it at once; a nice level alone still delays the training threads'
/// wake-ups by a scheduler slice).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid parameter.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
    }
}

fn worker(mut state: SpectraState, shared: Arc<Mutex<Shared>>, path: PathBuf, jobs: Receiver<Job>) -> SpectraState {
    lower_priority();
    // As many threads as training uses, so the analysis is the one a resume recomputes.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("spectra-{i}"))
        .start_handler(|_| lower_priority())
        .build()
        .ok();
    for job in jobs {
        if lock(&shared).failed.is_some() {
            continue;
        }
        crate::fault::delay("spectra-analysis");
        let t0 = std::time::Instant::now();
        let mut run = || analyse(&mut state, job.step, &job.tensors, job.full);
        let snaps = match &pool {
            Some(p) => p.install(run),
            None => run(),
        };
        let mut s = lock(&shared);
        match snaps {
            Ok(snaps) => {
                append(&mut s.data, job.step, &snaps, job.full);
                match h5::write(&path, &s.data) {
                    Ok(()) => s.unwritten = false,
                    Err(e) => s.failed = Some(e),
                }
            }
            Err(e) => s.failed = Some(e),
        }
        s.seconds += t0.elapsed().as_secs_f64();
    }
    state
}

impl Spectra {
    /// Run `rec` on a background thread (queue of `depth` snapshots) or inline.
    pub fn new(rec: SpectraRecorder, background: bool, depth: usize) -> Result<Self> {
        if !background {
            return Ok(Spectra(Mode::Inline(Box::new(rec))));
        }
        let SpectraRecorder { path, state, data, seconds } = rec;
        let shared = Arc::new(Mutex::new(Shared { data, seconds, unwritten: false, failed: None }));
        let (tx, rx) = sync_channel(depth.max(1));
        let (sh, p) = (shared.clone(), path.clone());
        let handle = std::thread::Builder::new()
            .name("spectra".into())
            .spawn(move || worker(state, sh, p, rx))
            .map_err(|e| Error::io("start the spectra thread for", &path, e))?;
        Ok(Spectra(Mode::Background { queue: Some(tx), thread: Some(handle), shared, path }))
    }

    fn stopped(path: &std::path::Path) -> Error {
        Error::io("analyse spectra for", path, std::io::Error::other("the spectra thread stopped"))
    }

    /// Queue (or analyse) the snapshot of `step`; waits while the queue is full.
    pub fn record(&mut self, step: u64, tensors: Vec<NamedTensor>, full: bool) -> Result<()> {
        match &mut self.0 {
            Mode::Inline(rec) => rec.record(step, &tensors, full),
            Mode::Background { queue: Some(q), path, .. } => {
                q.send(Job { step, tensors, full }).map_err(|_| Self::stopped(path))
            }
            Mode::Background { path, .. } => Err(Self::stopped(path)),
        }
    }

    /// Add a curvature row (computed on the training thread).
    pub fn record_analysis(&mut self, row: AnalysisRow, seconds: f64) {
        match &mut self.0 {
            Mode::Inline(rec) => rec.record_analysis(row, seconds),
            Mode::Background { shared, .. } => {
                let mut s = lock(shared);
                s.data.analysis.push(row);
                s.seconds += seconds;
                s.unwritten = true;
            }
        }
    }

    /// Before a checkpoint: report a failed analysis, and put on disk what a resume could not
    /// rebuild (inline: everything; background: the curvature rows — snapshots still queued
    /// are rebuilt from their step checkpoints).
    pub fn persist(&mut self) -> Result<()> {
        match &mut self.0 {
            Mode::Inline(rec) => rec.flush(),
            Mode::Background { shared, path, .. } => {
                let mut s = lock(shared);
                if let Some(e) = s.failed.take() {
                    return Err(e);
                }
                if s.unwritten {
                    h5::write(path, &s.data)?;
                    s.unwritten = false;
                }
                Ok(())
            }
        }
    }

    /// Analyse everything queued, write the file, stop the thread, and return the recorder
    /// (its data and the seconds spent).
    pub fn finish(self) -> Result<SpectraRecorder> {
        match self.0 {
            Mode::Inline(mut rec) => {
                rec.flush()?;
                Ok(*rec)
            }
            Mode::Background { mut queue, mut thread, shared, path } => {
                queue.take();
                let state = thread.take().and_then(|h| h.join().ok()).ok_or_else(|| Self::stopped(&path))?;
                let s = Arc::try_unwrap(shared).map_err(|_| Self::stopped(&path))?;
                let s = s.into_inner().unwrap_or_else(|p| p.into_inner());
                if let Some(e) = s.failed {
                    return Err(e);
                }
                let mut rec = SpectraRecorder { path, state, data: s.data, seconds: s.seconds };
                rec.flush()?;
                Ok(rec)
            }
        }
    }
}
