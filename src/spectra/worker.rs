//! Spectra off the training thread: a [`SpectraRecorder`] on its own thread, fed through a
//! bounded queue (snapshots are analysed in the order they were taken).
//!
//! Training hands over each snapshot (the host copy it already made for the checkpoint) and
//! goes on; [`Spectra::barrier`] waits until every queued snapshot is analysed and the file
//! written. The training loop calls it before saving any checkpoint, so — exactly as with the
//! synchronous recorder — every snapshot older than the newest checkpoint is on disk, and a
//! crash loses nothing a resume cannot rebuild. Early on, when checkpoints are dense, the
//! barrier waits; later, with log-spaced checkpoints, the analysis of one snapshot overlaps
//! the hundreds of steps before the next, on cores the training step leaves free (all of them
//! when training runs on a GPU).

use super::h5::AnalysisRow;
use super::record::SpectraRecorder;
use crate::checkpoint::NamedTensor;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

enum Job {
    Record { step: u64, tensors: Vec<NamedTensor>, full: bool },
    Analysis { row: AnalysisRow, seconds: f64 },
    Flush(SyncSender<Result<()>>),
}

/// A recorder, run here or on a background thread.
pub struct Spectra(Mode);

enum Mode {
    Inline(Box<SpectraRecorder>),
    Background { queue: Option<SyncSender<Job>>, thread: Option<JoinHandle<SpectraRecorder>>, path: PathBuf },
}

fn worker(mut rec: SpectraRecorder, jobs: Receiver<Job>) -> SpectraRecorder {
    // The first error is kept and reported at the next flush.
    let mut failed: Option<Error> = None;
    for job in jobs {
        match job {
            Job::Record { step, tensors, full } => {
                if failed.is_none()
                    && let Err(e) = rec.record(step, &tensors, full)
                {
                    failed = Some(e);
                }
            }
            Job::Analysis { row, seconds } => rec.record_analysis(row, seconds),
            Job::Flush(reply) => {
                let r = match failed.take() {
                    Some(e) => Err(e),
                    None => rec.flush(),
                };
                let _ = reply.send(r);
            }
        }
    }
    rec
}

impl Spectra {
    /// Run `rec` on a background thread (queue of `depth` snapshots) or inline.
    pub fn new(rec: SpectraRecorder, background: bool, depth: usize) -> Result<Self> {
        if !background {
            return Ok(Spectra(Mode::Inline(Box::new(rec))));
        }
        let path = rec.path.clone();
        let (tx, rx) = sync_channel(depth.max(1));
        let handle = std::thread::Builder::new()
            .name("spectra".into())
            .spawn(move || worker(rec, rx))
            .map_err(|e| Error::io("start the spectra thread for", &path, e))?;
        Ok(Spectra(Mode::Background { queue: Some(tx), thread: Some(handle), path }))
    }

    fn send(&self, job: Job) -> Result<()> {
        match &self.0 {
            Mode::Background { queue: Some(q), path, .. } => q.send(job).map_err(|_| {
                Error::io("analyse spectra for", path, std::io::Error::other("the spectra thread stopped"))
            }),
            _ => Ok(()),
        }
    }

    /// Queue (or analyse) the snapshot of `step`.
    pub fn record(&mut self, step: u64, tensors: Vec<NamedTensor>, full: bool) -> Result<()> {
        match &mut self.0 {
            Mode::Inline(rec) => rec.record(step, &tensors, full),
            Mode::Background { .. } => self.send(Job::Record { step, tensors, full }),
        }
    }

    pub fn record_analysis(&mut self, row: AnalysisRow, seconds: f64) -> Result<()> {
        match &mut self.0 {
            Mode::Inline(rec) => {
                rec.record_analysis(row, seconds);
                Ok(())
            }
            Mode::Background { .. } => self.send(Job::Analysis { row, seconds }),
        }
    }

    /// Wait until everything queued is analysed and written.
    pub fn barrier(&mut self) -> Result<()> {
        match &mut self.0 {
            Mode::Inline(rec) => rec.flush(),
            Mode::Background { path, .. } => {
                let path = path.clone();
                let (tx, rx) = sync_channel(1);
                self.send(Job::Flush(tx))?;
                // A closed channel means the thread stopped before answering.
                rx.recv().map_err(|_| {
                    Error::io("analyse spectra for", &path, std::io::Error::other("the spectra thread stopped"))
                })?
            }
        }
    }

    /// Flush, stop the thread, and return the recorder (its data and the seconds spent).
    pub fn finish(mut self) -> Result<SpectraRecorder> {
        self.barrier()?;
        match self.0 {
            Mode::Inline(rec) => Ok(*rec),
            Mode::Background { mut queue, mut thread, path } => {
                queue.take();
                thread.take().and_then(|h| h.join().ok()).ok_or_else(|| {
                    Error::io("finish spectra for", &path, std::io::Error::other("the spectra thread panicked"))
                })
            }
        }
    }
}
