//! The core: the one thread that owns the engine. It assigns timestamps, appends each write to
//! the journal before applying it, and applies it to the engine. [`core_loop`] is that thread:
//! it takes the requests waiting in the net layer's queue as one batch, answers each with
//! [`reply_to`] (the TigerBeetle gateway's requests too, through `tigerbeetle.rs`) and pulses
//! when expiries are due.
//!
//! Timestamps: a write of `n` events gets the batch timestamp `T = max(last, now) + n`, so event
//! `i` gets `T - n + i + 1`; timestamps strictly increase and are close to the wall clock. The
//! wall clock is read here, never in the engine, and the chosen `T` is journaled with the
//! request, so replay gives the engine exactly the same inputs.
//!
//! Durability: `apply` returns the journal sequence of a write; its reply may leave only once
//! that sequence is durable. A read is gated on the last written sequence, so it never reveals a
//! write that could still be lost.
//!
//! Recovery refuses a record it cannot apply: one whose body is not a request, or one on which
//! the engine fails an invariant (a panic hook, since the release profile aborts on panic). Both
//! print which record it is and what the operator can do, and exit with [`EXIT_REPLAY_FAILED`]:
//! the record is durable, so every later start would meet it again, and a supervisor must not
//! restart the server in a loop.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clearline_engine::{Config, Engine, Operation};
use clearline_journal::{
    segment_file_name, Durability, Journal, JournalError, RecordView, Recovery,
};
use clearline_net::tigerbeetle::gateway::CoreLink;
use clearline_net::{status_reply, CoreSide, FrameStatus, Reply, Request};

use crate::history::{Pipeline, StoreReader};
use crate::request_record::{self, EpochRecord, Journaled};

/// Size of the reply scratch: the largest frame body.
pub const REPLY_SIZE_MAX: usize = 1_048_576 - 64;

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What applying one request produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Batch timestamp (0 for reads).
    pub timestamp: u64,
    /// Journal sequence of the write (0 for reads).
    pub sequence: u64,
    /// The reply may leave once this sequence is durable.
    pub gate: u64,
    /// Bytes of reply written.
    pub reply_size: usize,
}

/// Why a request was not applied.
#[derive(Debug)]
pub enum ApplyError {
    /// The journal has no room: writes are refused, reads still served.
    StorageFull,
    /// History mode: memory for recent records cannot take the write even with the history
    /// store caught up (unresolved pending transfers fill it). Answered like `StorageFull`;
    /// nothing was journaled.
    MemoryFull,
    /// Any other journal failure: the server must stop.
    Journal(JournalError),
}

/// Exit code of `clearline start` when a journal record cannot be replayed. Restarting gives the
/// same result, so supervisors should not restart on it (systemd: `RestartPreventExitStatus=3`).
pub const EXIT_REPLAY_FAILED: u8 = 3;

/// The record being replayed, kept where the panic hook can read it. Atomics rather than a lock,
/// so the hook never waits and replay pays a few stores per record.
struct ReplayPlace {
    /// The data directory, for the advice.
    data: String,
    sequence: AtomicU64,
    segment: AtomicU64,
    offset: AtomicU64,
    timestamp: AtomicU64,
    /// The operation byte, or `u64::MAX` for a body too short to have one.
    operation: AtomicU64,
}

impl ReplayPlace {
    fn new(data: &Path) -> ReplayPlace {
        ReplayPlace {
            data: data.display().to_string(),
            sequence: AtomicU64::new(0),
            segment: AtomicU64::new(0),
            offset: AtomicU64::new(0),
            timestamp: AtomicU64::new(0),
            operation: AtomicU64::new(u64::MAX),
        }
    }

    fn set(&self, view: &RecordView<'_>) {
        self.sequence.store(view.sequence, Ordering::Relaxed);
        self.segment.store(view.segment, Ordering::Relaxed);
        self.offset.store(view.offset, Ordering::Relaxed);
        self.timestamp.store(view.timestamp, Ordering::Relaxed);
        let operation = view.body.first().map_or(u64::MAX, |byte| u64::from(*byte));
        self.operation.store(operation, Ordering::Relaxed);
    }

    fn refusal(&self, problem: &str) -> ReplayFailed {
        let operation = match self.operation.load(Ordering::Relaxed) {
            u64::MAX => "none (the body is too short)".to_string(),
            value => match u8::try_from(value).ok().and_then(Operation::from_u8) {
                Some(operation) => operation.name().to_string(),
                None => format!("unknown ({value})"),
            },
        };
        let segment = self.segment.load(Ordering::Relaxed);
        ReplayFailed {
            message: format!(
                "cannot start: journal record sequence {}, segment {segment} (file {}), offset \
                 {}, operation {operation}, timestamp {}: {problem}.\n\
                 The journal's checksums pass up to and including this record, but this version \
                 of clearline cannot apply it, and serving without it would lose acknowledged \
                 requests. Keep the data directory as it is (do not delete or edit segment \
                 files), run `clearline journal inspect {}` to see the journal, and start it \
                 with the clearline release that wrote it or restore the data directory from a \
                 backup; please report the record as a bug. Starting again gives the same result \
                 (exit code {EXIT_REPLAY_FAILED}).",
                self.sequence.load(Ordering::Relaxed),
                segment_file_name(segment),
                self.offset.load(Ordering::Relaxed),
                self.timestamp.load(Ordering::Relaxed),
                self.data,
            ),
        }
    }
}

/// A journal record that recovery cannot apply; `main` exits with [`EXIT_REPLAY_FAILED`].
#[derive(Debug)]
pub struct ReplayFailed {
    message: String,
}

impl fmt::Display for ReplayFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ReplayFailed {}

type PanicHook = dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync;

/// While it lives, a panic on the replaying thread prints the record being replayed and the
/// operator's advice, then exits with [`EXIT_REPLAY_FAILED`] (with `panic = "abort"` nothing
/// could catch it, and the process would abort again at every start). Panics on other threads
/// go to the previous hook. Dropping it restores the previous hook.
struct ReplayPanicGuard {
    previous: Arc<PanicHook>,
}

impl ReplayPanicGuard {
    fn install(place: Arc<ReplayPlace>) -> ReplayPanicGuard {
        let previous: Arc<PanicHook> = Arc::from(std::panic::take_hook());
        let replaying = std::thread::current().id();
        let fallback = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() != replaying {
                fallback(info);
                return;
            }
            let refusal = place.refusal(&format!("the engine failed an invariant ({info})"));
            warn!("clearline: {refusal}");
            std::process::exit(i32::from(EXIT_REPLAY_FAILED));
        }));
        ReplayPanicGuard { previous }
    }
}

impl Drop for ReplayPanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return; // The hook is running; setting a hook now would panic again.
        }
        let previous = Arc::clone(&self.previous);
        std::panic::set_hook(Box::new(move |info| previous(info)));
    }
}

/// How often the core asks the engine whether a pending transfer is due to expire.
const PULSE_INTERVAL_NS: u64 = 100_000_000;

/// The engine, its journal and the clock state.
pub struct Core {
    engine: Engine,
    journal: Journal,
    timestamp_last: u64,
    record: Vec<u8>,
    /// Wall-clock time (ns) at which the core next considers a pulse.
    pulse_next_ns: u64,
    checkpoints: Checkpoints,
    /// History mode (`--history`, docs/history.md).
    history: Option<HistoryMode>,
    /// The newest epoch record in the journal (docs/replication.md), if any was replayed,
    /// applied or written.
    journal_epoch: Option<EpochRecord>,
}

/// The engine built from a checkpoint image, in history mode reading what left memory from
/// the store.
///
/// # Errors
///
/// The image cannot be loaded (damaged, or written with other capacities or another mode).
pub fn load_checkpoint_image(
    config: &Config,
    image: &[u8],
    history: Option<&HistoryStart>,
) -> Result<Engine, String> {
    match history {
        None => Engine::from_checkpoint(config, image),
        Some(history) => Engine::from_checkpoint_with_history(
            config,
            image,
            Box::new(StoreReader(history.pipeline.store())),
            history.ids_max,
        ),
    }
    .map_err(|error| error.to_string())
}

/// The newest checkpoint, loaded while the journal was scanned (`Journal::open_overlapped`),
/// and how long loading it took.
pub struct Preload {
    pub engine: Result<Engine, String>,
    pub took: Duration,
}

/// What recovery needs for history mode: the opened pipeline and the id filter's size.
pub struct HistoryStart {
    /// The store and its writer.
    pub pipeline: Pipeline,
    /// Ids the engine's id filter is sized for (`--ids-max`).
    pub ids_max: u64,
}

/// The history pipeline with the journal's durability, which it waits on.
struct HistoryMode {
    pipeline: Pipeline,
    durability: Arc<Durability>,
}

/// When the core starts a checkpoint, and what checkpoints cost it so far.
#[derive(Debug, Default)]
struct Checkpoints {
    /// Journal bytes between two checkpoints (0: never).
    interval_bytes: u64,
    /// Journal bytes appended since the last checkpoint started.
    bytes_since: u64,
    /// The longest pause a checkpoint start caused the core (the fork).
    pause_longest: Duration,
    /// The pause of the newest checkpoint start.
    last_pause: Duration,
    /// Whether a failure was reported and not yet followed by a success (said once).
    failing: bool,
    /// In history mode, when a checkpoint became due and the store's durable timestamp then:
    /// it waits for the store to make the next run durable (see `checkpoint_tick`).
    due: Option<(Instant, u64)>,
}

impl Checkpoints {
    fn last_pause_ms(&self) -> f64 {
        self.last_pause.as_secs_f64() * 1e3
    }
}

/// What recovery did, for the start-up message.
#[derive(Debug, Clone, Copy)]
pub struct Replayed {
    /// Records applied.
    pub records: u64,
    /// Timestamp of the last record.
    pub timestamp_last: u64,
    /// Sequence of the checkpoint the engine was loaded from, if any.
    pub checkpoint: Option<u64>,
    /// Time to load the checkpoint (or make an empty engine).
    pub load: Duration,
    /// Time to replay the journal after it.
    pub replay: Duration,
    /// Of the replay, time spent waiting for the history store to make room.
    pub history_wait: Duration,
    /// After the replay, time spent waiting for the hot set's memory to be populated.
    pub populate_wait: Duration,
}

/// The engine recovery starts from: the newest valid checkpoint's image, else the one before
/// it, else an empty engine when the journal still starts at its first record. Returns the
/// checkpoint's sequence and timestamp with it.
///
/// # Errors
/// No usable checkpoint while the journal's first records were retired (the state before them
/// is nowhere else).
fn engine_from_checkpoint(
    config: &Config,
    journal: &mut Journal,
    recovery: &Recovery,
    history: Option<&HistoryStart>,
    preloaded: Option<Result<Engine, String>>,
) -> Result<(Engine, Option<(u64, u64)>), String> {
    let load = |image: &[u8]| load_checkpoint_image(config, image, history);
    for rejected in &recovery.checkpoints_rejected {
        warn!("clearline: skipped checkpoint {rejected}");
    }
    let mut refusals = Vec::new();
    if let Some(checkpoint) = &recovery.checkpoint {
        let loaded = preloaded.unwrap_or_else(|| load(&checkpoint.image));
        match loaded {
            Ok(engine) => return Ok((engine, Some((checkpoint.sequence, checkpoint.timestamp)))),
            Err(error) => refusals.push(format!("sequence {}: {error}", checkpoint.sequence)),
        }
    }
    if let Some(previous) = &recovery.checkpoint_previous {
        let loaded = journal
            .load_checkpoint(previous.sequence)
            .map_err(|error| error.to_string())
            .and_then(|checkpoint| {
                load(&checkpoint.image)
                    .map(|engine| (engine, checkpoint.sequence, checkpoint.timestamp))
                    .map_err(|error| error.to_string())
            });
        match loaded {
            Ok((engine, sequence, timestamp)) => {
                warn!(
                    "clearline: the newest checkpoint cannot be loaded ({}); recovering from \
                     the previous one, at sequence {sequence}",
                    refusals.join("; ")
                );
                return Ok((engine, Some((sequence, timestamp))));
            }
            Err(error) => refusals.push(format!("sequence {}: {error}", previous.sequence)),
        }
    }
    if refusals.is_empty() || journal.first_sequence() <= 1 {
        if !refusals.is_empty() {
            warn!(
                "clearline: no checkpoint can be loaded ({}); replaying the whole journal",
                refusals.join("; ")
            );
        }
        let mut engine = Engine::new(config);
        if let Some(history) = history {
            let reader = Box::new(StoreReader(history.pipeline.store()));
            engine.enable_history(reader, history.ids_max);
        }
        return Ok((engine, None));
    }
    Err(format!(
        "no checkpoint can be loaded ({}) and the journal before sequence {} was retired, so \
         the state cannot be rebuilt; start with capacities at least those the checkpoint was \
         written with, or restore the retired segments from --archive (docs/durability.md, \
         \"Checkpoints, retirement and disk use\")",
        refusals.join("; "),
        journal.first_sequence()
    ))
}

/// Finishes the running checkpoint if its file is written and its sequence durable. Returns
/// whether a checkpoint is still running. A free function over the two fields it needs, so the
/// history pipeline can call it while the core waits for room.
fn checkpoint_poll(
    journal: &mut Journal,
    checkpoints: &mut Checkpoints,
) -> Result<bool, JournalError> {
    match journal.checkpoint_poll() {
        Ok(Some(done)) => {
            checkpoints.failing = false;
            say!(
                "clearline: {done}; core pause at its start {:.3} ms (longest {:.3} ms)",
                checkpoints.last_pause_ms(),
                checkpoints.pause_longest.as_secs_f64() * 1e3
            );
        }
        Ok(None) => {}
        Err(JournalError::SyncFailed) => return Err(JournalError::SyncFailed),
        Err(error) => checkpoints.failed(&error),
    }
    Ok(journal.checkpoint_running())
}

impl Checkpoints {
    /// Reports a failed checkpoint once until one succeeds.
    fn failed(&mut self, error: &JournalError) {
        if !self.failing {
            self.failing = true;
            warn!(
                "clearline: a checkpoint failed: {error}; the journal keeps every record, \
                 recovery replays more of it, and the next checkpoint is tried after \
                 --checkpoint-interval-mib more journal"
            );
        }
    }
}

impl Core {
    /// Builds the engine and replays the journal into it. `preload` is the newest checkpoint
    /// (`recovery.checkpoint`) already loaded, if it was; a failed preload falls back to the
    /// previous checkpoint as a failed load here would.
    ///
    /// # Errors
    /// [`ReplayFailed`] for a record that is not a valid write request (the journal's checksums
    /// passed, so the journal was written by something else); a journal read failure. A record
    /// on which the engine fails an invariant does not return: the process exits with
    /// [`EXIT_REPLAY_FAILED`] after naming the record.
    pub fn recover(
        config: &Config,
        data: &Path,
        mut journal: Journal,
        recovery: &Recovery,
        checkpoint_interval_bytes: u64,
        history: Option<HistoryStart>,
        preload: Option<Preload>,
    ) -> Result<(Core, Replayed), Box<dyn std::error::Error + Send + Sync>> {
        let started = Instant::now();
        let (preloaded, preload_took) = match preload {
            Some(preload) => (Some(preload.engine), preload.took),
            None => (None, Duration::ZERO),
        };
        let (mut engine, checkpoint) =
            engine_from_checkpoint(config, &mut journal, recovery, history.as_ref(), preloaded)?;
        // Loading the newest checkpoint alongside the journal's scan counts here too.
        let load = started.elapsed() + preload_took;
        let started = Instant::now();
        let durability = journal.durability();
        let mut history = history.map(|start| HistoryMode {
            pipeline: start.pipeline,
            durability: Arc::clone(&durability),
        });
        let mut populating = None;
        if let Some(history) = &mut history {
            populating = history.pipeline.populate_unused_memory(&engine);
            // Whatever the store lost in a crash is handed to it again.
            engine.history_redrain(history.pipeline.durable().timestamp);
            let sequence = checkpoint.map_or(0, |(sequence, _)| sequence);
            history.pipeline.after_write(&mut engine, sequence);
        }
        let replay_from = checkpoint.map_or(1, |(sequence, _)| sequence + 1);
        let mut reply = vec![0u8; REPLY_SIZE_MAX];
        let mut timestamp_last = checkpoint.map_or(0, |(_, timestamp)| timestamp);
        let mut records = 0u64;
        let mut journal_epoch = None;
        // Journal after the checkpoint: it counts towards the next one, so a server that is
        // restarted often still checkpoints.
        let mut replayed_bytes = 0u64;
        let mut failure = None;
        let place = Arc::new(ReplayPlace::new(data));
        let guard = ReplayPanicGuard::install(Arc::clone(&place));
        journal
            .replay(replay_from, |view| {
                if failure.is_some() {
                    return;
                }
                place.set(&view);
                match request_record::decode_journaled(view.body) {
                    Ok(Journaled::Epoch(epoch)) => {
                        journal_epoch = Some(epoch);
                        timestamp_last = timestamp_last.max(view.timestamp);
                        records += 1;
                    }
                    Ok(Journaled::Write(operation, count, events)) => {
                        if let Some(history) = &mut history {
                            let room = history.pipeline.make_room(
                                &mut engine,
                                operation,
                                count,
                                &history.durability,
                                &mut || {},
                            );
                            if !room {
                                failure = Some(place.refusal(
                                    "memory for recent history cannot hold this write even \
                                     with everything else in the history store; raise \
                                     --transfers-max",
                                ));
                                return;
                            }
                        }
                        engine.execute(operation, view.timestamp, events, &mut reply);
                        if let Some(history) = &mut history {
                            history.pipeline.after_write(&mut engine, view.sequence);
                        }
                        timestamp_last = timestamp_last.max(view.timestamp);
                        records += 1;
                        replayed_bytes += view.body.len() as u64;
                    }
                    Err(problem) => failure = Some(place.refusal(&problem)),
                }
            })
            .map_err(|error| format!("replay failed: {error}"))?;
        drop(guard);
        if let Some(failure) = failure {
            return Err(failure.into());
        }
        timestamp_last = timestamp_last.max(recovery.last_timestamp);
        let replay = started.elapsed();
        let populate_started = Instant::now();
        if let Some(handle) = populating {
            // Only timing depends on it (see `populate_unused_memory`).
            let _ = handle.join();
        }
        let populate_wait = populate_started.elapsed();
        let history_wait = history
            .as_ref()
            .map_or(Duration::ZERO, |history| history.pipeline.waited());
        let record = Vec::with_capacity(REPLY_SIZE_MAX + request_record::PREFIX_SIZE);
        let core = Core {
            engine,
            journal,
            timestamp_last,
            record,
            pulse_next_ns: 0,
            checkpoints: Checkpoints {
                interval_bytes: checkpoint_interval_bytes,
                bytes_since: replayed_bytes,
                ..Checkpoints::default()
            },
            history,
            journal_epoch,
        };
        Ok((
            core,
            Replayed {
                records,
                timestamp_last,
                checkpoint: checkpoint.map(|(sequence, _)| sequence),
                load,
                replay,
                history_wait,
                populate_wait,
            },
        ))
    }

    /// History mode's work between batches (see history.rs).
    fn history_tick(&mut self) {
        if let Some(history) = &mut self.history {
            history.pipeline.tick(&history.durability);
        }
    }

    /// Stops history mode: the writer finishes the runs it was given.
    ///
    /// # Errors
    /// The writer failed.
    fn history_close(&mut self) -> Result<(), String> {
        match self.history.take() {
            Some(history) => history.pipeline.close(),
            None => Ok(()),
        }
    }

    /// The history store, in history mode (a primary copies it to a backup that catches up
    /// from a checkpoint).
    pub fn history_store(&self) -> Option<Arc<clearline_history::History>> {
        self.history
            .as_ref()
            .map(|history| history.pipeline.store())
    }

    /// The journal (for the durability handle and shutdown).
    pub fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// Consumes the core, returning its journal.
    pub fn into_journal(self) -> Journal {
        self.journal
    }

    /// The journal sequence the history store holds durably, in history mode.
    pub fn history_durable_sequence(&self) -> Option<u64> {
        self.history
            .as_ref()
            .map(|history| history.pipeline.durable().sequence)
    }

    /// The newest epoch record the journal holds (docs/replication.md), if recovery or this
    /// core met one.
    pub fn journal_epoch(&self) -> Option<EpochRecord> {
        self.journal_epoch
    }

    /// Journals the epoch record of a node that has just become primary, before any request
    /// of its epoch. Not applied to the engine: it only marks where the epoch's records start.
    ///
    /// # Errors
    /// The journal cannot take it (a full journal included: the node cannot lead then).
    pub fn append_epoch(&mut self, record: EpochRecord) -> Result<u64, JournalError> {
        let timestamp_before = self.timestamp_last;
        let timestamp = self.next_timestamp(1);
        request_record::encode_epoch(record, &mut self.record);
        match self.journal.append(timestamp, &self.record) {
            Ok(sequence) => {
                self.journal_epoch = Some(record);
                Ok(sequence)
            }
            Err(error) => {
                self.timestamp_last = timestamp_before;
                Err(error)
            }
        }
    }

    /// In history mode, waits until memory can take a write of `count` events of `operation`
    /// (the store catching up); false when it cannot even then. Always true otherwise. While it
    /// waits, a checkpoint that is written still gets finished (a failed sync is seen by the
    /// core loop right after).
    fn make_room(&mut self, operation: Operation, count: u32) -> bool {
        let Some(history) = &mut self.history else {
            return true;
        };
        let (journal, checkpoints) = (&mut self.journal, &mut self.checkpoints);
        let mut waiting = || {
            let _ = checkpoint_poll(journal, checkpoints);
        };
        history.pipeline.make_room(
            &mut self.engine,
            operation,
            count,
            &history.durability,
            &mut waiting,
        )
    }

    /// Appends a record copied from the primary's journal (a backup's hot standby) and applies
    /// it exactly as replay would. Returns its sequence and whether it was an epoch record.
    ///
    /// # Errors
    /// The journal refused the record (it does not continue this journal) or failed, or the
    /// record is not a write this engine can apply (another capacity than the primary's):
    /// either way the backup must stop following.
    pub fn apply_copied(
        &mut self,
        record: &[u8],
        reply: &mut [u8],
    ) -> Result<(u64, Option<EpochRecord>), String> {
        let sequence = self
            .journal
            .append_copied(record)
            .map_err(|error| format!("the journal refused record: {error}"))?;
        let (_, timestamp) = crate::replica::record_sequence_and_timestamp(record);
        let body_size = clearline_journal::le::u32_at(record, 60) as usize;
        let header = clearline_journal::RECORD_HEADER_SIZE as usize;
        let body = &record[header..header + body_size];
        self.timestamp_last = self.timestamp_last.max(timestamp);
        self.checkpoints.bytes_since += body.len() as u64;
        let (operation, count, events) = match request_record::decode_journaled(body) {
            Ok(Journaled::Epoch(epoch)) => {
                self.journal_epoch = Some(epoch);
                return Ok((sequence, Some(epoch)));
            }
            Ok(Journaled::Write(operation, count, events)) => (operation, count, events),
            Err(problem) => return Err(format!("record {sequence}: {problem}")),
        };
        if !self.make_room(operation, count) {
            return Err(format!(
                "memory for recent history cannot hold record {sequence}; give this node the \
                 primary's --transfers-max"
            ));
        }
        self.engine.execute(operation, timestamp, events, reply);
        if let Some(history) = &mut self.history {
            history.pipeline.after_write(&mut self.engine, sequence);
        }
        Ok((sequence, None))
    }

    /// Serves a read on a backup (a client asked for it): the reply reflects every record
    /// applied so far, and carries that sequence.
    pub fn read_on_backup(
        &mut self,
        operation: Operation,
        events: &[u8],
        reply: &mut [u8],
    ) -> Applied {
        assert!(!operation.is_write());
        let reply_size = self.engine.execute(operation, 0, events, reply);
        Applied {
            timestamp: 0,
            sequence: self.journal.written_sequence(),
            gate: 0,
            reply_size,
        }
    }

    /// A batch boundary's background work: history ingest and checkpoints.
    ///
    /// # Errors
    /// A failed journal sync during a checkpoint.
    pub fn between_batches(&mut self) -> Result<(), String> {
        self.history_tick();
        self.checkpoint_tick()
            .map_err(|error| format!("checkpoint: {error}; stopping"))
    }

    /// Ends the core: waits for a running checkpoint, closes history mode, says what pauses it
    /// had, and returns the journal for its final sync.
    ///
    /// # Errors
    /// A failed sync, or the history writer failed.
    pub fn finish(mut self) -> Result<Journal, String> {
        self.checkpoint_finish()
            .map_err(|error| format!("checkpoint: {error}; stopping"))?;
        if let Some(history) = &self.history {
            say!(
                "clearline: writes waited {:.3} s in all for room in memory while the history \
                 store caught up",
                history.pipeline.waited().as_secs_f64()
            );
            let evictions = history.pipeline.evictions();
            if evictions.count > 0 {
                say!(
                    "clearline: {} eviction{} of durable history from memory took {:.3} s \
                     in all; the longest core pause for one was {:.3} ms",
                    evictions.count,
                    if evictions.count == 1 { "" } else { "s" },
                    evictions.total.as_secs_f64(),
                    evictions.longest.as_secs_f64() * 1e3
                );
            }
        }
        self.history_close()?;
        if !self.checkpoints.pause_longest.is_zero() {
            say!(
                "clearline: the longest core pause for a checkpoint was {:.3} ms",
                self.checkpoints.pause_longest.as_secs_f64() * 1e3
            );
        }
        Ok(self.into_journal())
    }

    fn next_timestamp(&mut self, slots: u64) -> u64 {
        let timestamp = self.timestamp_last.max(wall_clock_ns()) + slots;
        self.timestamp_last = timestamp;
        timestamp
    }

    /// Journals and applies a pulse when a pending transfer is due to expire, at most once per
    /// [`PULSE_INTERVAL_NS`]. The pulse is a journaled request like any other, so replay expires
    /// exactly what the live engine expired.
    ///
    /// # Errors
    /// As [`Core::apply`].
    pub fn pulse_if_due(&mut self, reply: &mut [u8]) -> Result<bool, ApplyError> {
        let now = wall_clock_ns();
        if now < self.pulse_next_ns {
            return Ok(false);
        }
        self.pulse_next_ns = now.saturating_add(PULSE_INTERVAL_NS);
        let due = match self.engine.expiry_next() {
            Some(expires_at) => expires_at <= self.timestamp_last.max(now),
            None => false,
        };
        if !due {
            return Ok(false);
        }
        self.apply(Operation::Pulse, 0, &[], reply)?;
        Ok(true)
    }

    /// Finishes a checkpoint whose file is written, and starts one when the journal has grown
    /// by the interval since the last. Call it at a batch boundary: every journaled record is
    /// applied, so the engine's state is the state after the last written sequence. A failed
    /// checkpoint stops nothing (the journal still holds every record); it is reported and
    /// tried again at the next interval.
    ///
    /// # Errors
    /// A failed journal sync: the server must stop.
    pub fn checkpoint_tick(&mut self) -> Result<(), JournalError> {
        self.checkpoint_poll()?;
        if !self.journal.checkpoint_running() {
            // The child no longer shares the id filter: the ids kept aside while it ran go in,
            // a step at a time (`Engine::history_filter_defer`).
            self.engine.history_filter_defer(false);
            self.engine.history_filter_merge(FILTER_MERGE_STEP);
        }
        let due = self.checkpoints.interval_bytes > 0
            && self.checkpoints.bytes_since >= self.checkpoints.interval_bytes
            && !self.journal.checkpoint_running();
        if !due {
            return Ok(());
        }
        // An image holds the recent transfers in memory, and the core pays for every page it
        // writes while the child writes the image: in history mode a due checkpoint waits
        // until the store has made the next run durable, for at most
        // `CHECKPOINT_EVICTION_WAIT_MAX`, and drops from memory all the store holds first (the
        // image of the 10 M benchmark's checkpoint is about 235 instead of 372 MB). A restart
        // may replay that much more journal.
        if let Some(history) = &mut self.history {
            let store = history.pipeline.durable().timestamp;
            let (since, before) = *self
                .checkpoints
                .due
                .get_or_insert_with(|| (Instant::now(), store));
            if store == before && since.elapsed() < CHECKPOINT_EVICTION_WAIT_MAX {
                return Ok(());
            }
            history.pipeline.evict_durable(&mut self.engine);
        }
        self.checkpoints.due = None;
        // The child never reads the unused part of the stores and runs, nor the transfer id
        // index (an image does not hold it), all of which the core keeps writing: kept from
        // it, those pages are not copied on write while it runs.
        let mut unneeded = self
            .history
            .as_ref()
            .map(|history| history.pipeline.fork_unneeded_memory(&self.engine))
            .unwrap_or_default();
        unneeded.push(self.engine.transfer_index_memory());
        // Best effort: a range not kept out is only copied on write.
        let _ = clearline_journal::keep_from_fork(&unneeded, true);
        // The image holds only the main id filter: every id kept aside goes in first (they
        // were merged long before, a checkpoint interval ago, unless the interval is tiny).
        let merged = self.engine.history_filter_merge(usize::MAX);
        assert!(merged, "no checkpoint runs, so nothing is deferred");
        let engine = &self.engine;
        let started = self
            .journal
            .checkpoint_start(&mut |out| engine.checkpoint_write(out));
        // While the child runs, new ids stay out of the filter's shared pages.
        self.engine
            .history_filter_defer(self.journal.checkpoint_running());
        // A later child must have these pages once records fill them: if they cannot be given
        // back, stop rather than go on with checkpoints that cannot succeed.
        if let Err(error) = clearline_journal::keep_from_fork(&unneeded, false) {
            return Err(JournalError::Io {
                operation: "letting checkpoint writers have the memory of recent records",
                file: "(process memory)".to_owned(),
                error,
            });
        }
        match started {
            Ok(started) => {
                self.checkpoints.bytes_since = 0;
                if let Some(started) = started {
                    self.checkpoints.last_pause = started.pause;
                    self.checkpoints.pause_longest =
                        self.checkpoints.pause_longest.max(started.pause);
                }
                Ok(())
            }
            Err(JournalError::SyncFailed) => Err(JournalError::SyncFailed),
            Err(error) => {
                // Wait a whole interval before the next try, so a full disk is not hammered.
                self.checkpoints.bytes_since = 0;
                self.checkpoint_failed(&error);
                Ok(())
            }
        }
    }

    /// Finishes the running checkpoint if its file is written and its sequence durable.
    /// Returns whether a checkpoint is still running.
    fn checkpoint_poll(&mut self) -> Result<bool, JournalError> {
        checkpoint_poll(&mut self.journal, &mut self.checkpoints)
    }

    /// Waits, on this thread, for a running checkpoint to finish before the core stops: the
    /// child writing it is killed when the thread that forked it (this one) ends.
    ///
    /// # Errors
    /// A failed journal sync.
    pub fn checkpoint_finish(&mut self) -> Result<(), JournalError> {
        while self.checkpoint_poll()? {
            if self.journal.durability().failed() {
                return Err(JournalError::SyncFailed);
            }
            std::thread::sleep(CHECKPOINT_FINISH_POLL);
        }
        Ok(())
    }

    fn checkpoint_failed(&mut self, error: &JournalError) {
        self.checkpoints.failed(error);
    }

    /// Applies one validated request; writes the reply into `reply`.
    ///
    /// # Errors
    /// [`ApplyError::StorageFull`] when the journal cannot take the write (nothing applied);
    /// [`ApplyError::Journal`] for any other journal failure (the server must stop).
    pub fn apply(
        &mut self,
        operation: Operation,
        count: u32,
        events: &[u8],
        reply: &mut [u8],
    ) -> Result<Applied, ApplyError> {
        assert!(reply.len() >= REPLY_SIZE_MAX);
        if !operation.is_write() {
            let reply_size = self.engine.execute(operation, 0, events, reply);
            let gate = self.journal.written_sequence();
            return Ok(Applied {
                timestamp: 0,
                sequence: 0,
                gate,
                reply_size,
            });
        }
        if !self.make_room(operation, count) {
            // Never journaled, so no replay can differ (docs/history.md).
            return Err(ApplyError::MemoryFull);
        }
        let slots = operation.timestamp_slots(count);
        let timestamp_before = self.timestamp_last;
        let timestamp = self.next_timestamp(slots);
        request_record::encode(operation, count, events, &mut self.record);
        let sequence = match self.journal.append(timestamp, &self.record) {
            Ok(sequence) => sequence,
            Err(error) => {
                // Nothing was journaled, so the timestamps were not used.
                self.timestamp_last = timestamp_before;
                return Err(match error {
                    JournalError::StorageFull { .. } => ApplyError::StorageFull,
                    other => ApplyError::Journal(other),
                });
            }
        };
        self.checkpoints.bytes_since += self.record.len() as u64;
        let reply_size = self.engine.execute(operation, timestamp, events, reply);
        if let Some(history) = &mut self.history {
            history.pipeline.after_write(&mut self.engine, sequence);
        }
        Ok(Applied {
            timestamp,
            sequence,
            gate: sequence,
            reply_size,
        })
    }
}

/// The longest a due checkpoint waits for the history store to make its next run durable.
const CHECKPOINT_EVICTION_WAIT_MAX: Duration = Duration::from_secs(2);

/// Ids kept aside during a checkpoint moved into the id filter per core tick once it is done:
/// a fraction of a millisecond of random writes, so the tick's own batch hardly waits, and a
/// checkpoint's worth (a second or two of new ids) is in within a few hundred ticks.
const FILTER_MERGE_STEP: usize = 16_384;

/// How often a stopping core looks whether the running checkpoint has finished.
const CHECKPOINT_FINISH_POLL: Duration = Duration::from_millis(5);

/// How long the core sleeps waiting for requests before it looks at the clock (pulses) again.
const CORE_IDLE_WAIT: Duration = Duration::from_millis(100);

/// What the core has told the operator about a full journal, so each change is said once
/// rather than at every refused request or pulse retry.
#[derive(Default)]
struct FullJournal {
    writes_refused: bool,
    pulse_postponed: bool,
    /// The last write was refused for history mode's memory, not the journal.
    memory_full: bool,
    memory_said: bool,
}

impl FullJournal {
    fn memory_refused(&mut self) {
        if !self.memory_said {
            self.memory_said = true;
            warn!(
                "clearline: memory for recent history is full even with the history store \
                 caught up (unresolved pending transfers and resting orders stay in memory): \
                 writes that need more room are answered with storage_full; raise \
                 --transfers-max or --account-balances-max (docs/history.md)"
            );
        }
    }

    fn write_refused(&mut self) {
        if !self.writes_refused {
            self.writes_refused = true;
            warn!(
                "clearline: the journal is full: writes are answered with storage_full until a \
                 record fits again (free disk space, or restart with a larger \
                 --journal-segments-max); reads are served"
            );
        }
    }

    fn write_accepted(&mut self) {
        if self.writes_refused {
            self.writes_refused = false;
            warn!("clearline: the journal has room again: writes are accepted");
        }
    }

    fn pulse_refused(&mut self) {
        if !self.pulse_postponed {
            self.pulse_postponed = true;
            warn!(
                "clearline: expiries are due but the journal is full; they are tried again \
                 until a record fits (reads are served)"
            );
        }
    }
}

/// Runs the core thread: takes what requests wait as one batch, applies them in order, hands
/// the replies back and pulses when expiries are due, until the net thread has ended. Returns
/// the journal for its final sync. `after_batch` runs after each batch's records are written
/// and after each batch boundary's checkpoint work (a primary's senders stream the records
/// then, and learn which records are retired).
///
/// # Errors
/// A journal failure (the server must stop) or a broken hand-off invariant.
pub fn core_loop(
    mut core: Core,
    core_side: &CoreSide,
    tigerbeetle: Option<&CoreLink>,
    stop: &AtomicBool,
    after_batch: Option<&dyn Fn(&Journal)>,
) -> Result<Journal, String> {
    let durability = core.journal_mut().durability();
    let mut scratch = vec![0u8; REPLY_SIZE_MAX];
    let mut full = FullJournal::default();
    loop {
        if durability.failed() {
            return Err("a journal sync failed; stopping without acknowledging more".to_string());
        }
        // During shutdown the net thread still sends replies that become durable, so the core
        // answers what it has popped until the net thread has ended; `stop` is only for a server
        // whose net thread is already gone.
        if core_side.is_stopped() || stop.load(Ordering::Acquire) {
            return core.finish();
        }
        match core.pulse_if_due(&mut scratch) {
            Ok(pulsed) => full.pulse_postponed &= !pulsed,
            // A full journal stops nothing: the pulse is tried again at the next interval.
            Err(ApplyError::StorageFull | ApplyError::MemoryFull) => full.pulse_refused(),
            Err(ApplyError::Journal(error)) => {
                return Err(format!("journal append of a pulse failed: {error}"));
            }
        }
        // A batch boundary: every journaled record is applied.
        core.between_batches()?;
        // A checkpoint may have retired records (a pulse may have written one).
        if let Some(after_batch) = after_batch {
            after_batch(&core.journal);
        }
        if !core_side.wait_for_requests(CORE_IDLE_WAIT) {
            continue;
        }
        while let Some(mut request) = core_side.pop_request() {
            let operation = request.operation;
            if request.connection.is_external() {
                crate::tigerbeetle::apply(&mut core, request, &mut scratch, tigerbeetle)?;
                continue;
            }
            let mut applied =
                core.apply(operation, request.header.count, &request.body, &mut scratch);
            // A read that may be served by a backup says which journal sequence it reflects,
            // on the primary too (docs/protocol.md, "Reads from a backup").
            if let Ok(read) = &mut applied {
                if !operation.is_write() && request.header.read_from_backup() {
                    read.sequence = read.gate;
                }
            }
            full.memory_full = matches!(applied, Err(ApplyError::MemoryFull));
            if full.memory_full {
                full.memory_refused();
            }
            // The server reserved room for the largest reply of this request in `reply_body`.
            let body = std::mem::take(&mut request.reply_body);
            let reply = reply_to(&request, applied, &scratch, body)
                .map_err(|error| format!("journal append failed: {error}"))?;
            if reply.status == FrameStatus::StorageFull && !full.memory_full {
                full.write_refused();
            } else if operation.is_write() && reply.sequence != 0 {
                full.write_accepted();
            }
            core_side.recycle(request.body);
            if core_side.push_reply(reply).is_err() {
                return Err("the reply queue overflowed".to_string());
            }
        }
        core_side.wake();
        if let Some(link) = tigerbeetle {
            link.wake();
        }
        if let Some(after_batch) = after_batch {
            after_batch(&core.journal);
        }
    }
}

/// The reply to `request` from the result of applying it: on success the results, copied from
/// `scratch` into `body` (a buffer with room for the largest reply of the request, so the copy
/// never allocates); on a full journal a `storage_full` reply with an empty body.
///
/// # Errors
/// A journal failure other than a full journal: the server must stop.
pub fn reply_to(
    request: &Request,
    applied: Result<Applied, ApplyError>,
    scratch: &[u8],
    mut body: Vec<u8>,
) -> Result<Reply, JournalError> {
    match applied {
        Ok(applied) => {
            let item_size = request.operation.reply_item_size();
            assert_eq!(applied.reply_size % item_size, 0);
            body.clear();
            body.extend_from_slice(&scratch[..applied.reply_size]);
            Ok(Reply {
                count: u32::try_from(applied.reply_size / item_size)
                    .expect("a reply holds at most 1 MiB"),
                timestamp: applied.timestamp,
                sequence: applied.sequence,
                gate: applied.gate,
                body,
                ..Reply::to(request)
            })
        }
        Err(ApplyError::StorageFull | ApplyError::MemoryFull) => {
            Ok(status_reply(request, FrameStatus::StorageFull))
        }
        Err(ApplyError::Journal(error)) => Err(error),
    }
}
