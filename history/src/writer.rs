//! `HistoryWriter`: a thread that ingests runs in order, off the caller's thread.
//!
//! The owner submits `(Run, Watermark)` pairs into a bounded channel (submitting blocks while
//! `runs_max` runs wait: backpressure, never a drop). The thread ingests each, publishes the
//! durable watermark (readable with `durable`, and passed to an optional callback), and hands
//! the emptied run back through a second channel for reuse, so a steady state allocates no
//! runs. The first failed ingest stops the thread: later runs would skip a gap in history, so
//! none is ingested after it; the error is kept for the owner (`take_error`, `close`), and
//! `submit` answers `WriterStopped` from then on. Dropping the writer drains the queue and
//! joins the thread.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::error::HistoryError;
use crate::run::Run;
use crate::store::History;
use crate::watermark::Watermark;

/// Called on the writer thread after each watermark becomes durable.
pub type DurableCallback = Box<dyn FnMut(Watermark) + Send>;

/// What the thread shares with its owner.
#[derive(Default)]
struct Shared {
    durable: Option<Watermark>,
    /// The error that stopped the thread, until taken.
    error: Option<HistoryError>,
    /// Set when the thread has stopped after an error.
    failed: bool,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A thread that ingests runs into a `History` in submission order.
pub struct HistoryWriter {
    /// `None` once closed.
    runs: Option<SyncSender<(Run, Watermark)>>,
    emptied: Receiver<Run>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

impl HistoryWriter {
    /// Starts the thread; at most `runs_max` (at least 1) submitted runs wait at a time.
    ///
    /// # Errors
    ///
    /// `Io` if the thread cannot be started.
    pub fn spawn(history: Arc<History>, runs_max: usize) -> Result<HistoryWriter, HistoryError> {
        HistoryWriter::spawn_notifying(history, runs_max, Box::new(|_| {}))
    }

    /// As `spawn`, and calls `on_durable` on the writer thread with each watermark after it is
    /// durable, in order (for example to queue a notice to the core).
    ///
    /// # Errors
    ///
    /// `Io` if the thread cannot be started.
    pub fn spawn_notifying(
        history: Arc<History>,
        runs_max: usize,
        mut on_durable: DurableCallback,
    ) -> Result<HistoryWriter, HistoryError> {
        let runs_max = runs_max.max(1);
        let (runs, queued) = mpsc::sync_channel::<(Run, Watermark)>(runs_max);
        // Runs in circulation: those queued, the one being ingested and the one the owner
        // fills; returning never blocks the thread, and a run that finds this full is freed.
        let (returned, emptied) = mpsc::sync_channel::<Run>(runs_max + 2);
        let shared = Arc::new(Mutex::new(Shared {
            durable: history.watermark(),
            ..Shared::default()
        }));
        let thread_shared = Arc::clone(&shared);
        let directory = history.directory().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("history-writer".to_owned())
            .spawn(move || {
                // Ingest is background work: on a small machine the core, the network thread
                // and the syncer run first, and back-pressure (a write waits for room) gives
                // the writer the cores whenever it falls behind.
                clearline_journal::lower_thread_priority(clearline_journal::BACKGROUND_NICE);
                for (mut run, watermark) in queued {
                    if let Err(error) = history.ingest(&run, watermark) {
                        let mut shared = lock(&thread_shared);
                        shared.error = Some(error);
                        shared.failed = true;
                        return;
                    }
                    lock(&thread_shared).durable = Some(watermark);
                    on_durable(watermark);
                    run.clear();
                    match returned.try_send(run) {
                        Ok(()) | Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
                    }
                }
            })
            .map_err(|source| HistoryError::Io {
                context: "start the history writer thread for",
                path: directory,
                source,
            })?;
        Ok(HistoryWriter {
            runs: Some(runs),
            emptied,
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `run` to be ingested with `watermark`, waiting while `runs_max` runs wait.
    ///
    /// # Errors
    ///
    /// `WriterStopped` if the thread has stopped after an error (see `take_error`); the run
    /// is dropped.
    pub fn submit(&self, run: Run, watermark: Watermark) -> Result<(), HistoryError> {
        let Some(runs) = &self.runs else {
            return Err(HistoryError::WriterStopped);
        };
        if self.failed() {
            return Err(HistoryError::WriterStopped);
        }
        runs.send((run, watermark))
            .map_err(|_| HistoryError::WriterStopped)
    }

    /// An emptied run to reuse, if one has come back.
    pub fn reclaim(&self) -> Option<Run> {
        self.emptied.try_recv().ok()
    }

    /// The newest watermark the writer has made durable (the store's at spawn if none yet).
    pub fn durable(&self) -> Option<Watermark> {
        lock(&self.shared).durable
    }

    /// Whether the thread has stopped after a failed ingest.
    pub fn failed(&self) -> bool {
        lock(&self.shared).failed
    }

    /// The error that stopped the thread, once; `None` if none (or already taken).
    pub fn take_error(&self) -> Option<HistoryError> {
        lock(&self.shared).error.take()
    }

    /// Ingests every queued run, stops the thread and joins it.
    ///
    /// # Errors
    ///
    /// The error that stopped the thread, if one did and it was not taken; `WriterStopped`
    /// if the thread panicked.
    pub fn close(mut self) -> Result<(), HistoryError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), HistoryError> {
        self.runs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                return Err(HistoryError::WriterStopped);
            }
        }
        match self.take_error() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl Drop for HistoryWriter {
    fn drop(&mut self) {
        // The error, if any, was the owner's to take; dropping only joins.
        let _ = self.stop();
    }
}
