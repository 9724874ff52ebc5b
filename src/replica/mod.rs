//! A node of a replication group (docs/replication.md): leadership in etcd, the primary's side
//! of the stream (one sender per backup, the acknowledger that gates replies on the backups'
//! acknowledgements) and the backup's side (the receiver that hands the primary's records to
//! the core, and the acknowledgements it sends back).
//!
//! Files: this one holds the configuration, the shared state and what the core and the main
//! thread call; `primary.rs` the primary's side (acknowledger, peer listener, one sender per
//! backup, the retention hold); `backup.rs` the backup's side (receiver, acknowledgements).
//!
//! Invariants:
//! - nothing here runs on the core thread except [`Replication::role_for_core`] and the
//!   cheap atomics the core reads; etcd calls live on the leadership thread;
//! - the reply gate the net thread reads (the `ack` given to [`Replication::start`]) moves only
//!   forward,
//!   only while this node is primary with a lease it may still acknowledge under, and never
//!   past the local durable sequence or the K-th highest backup acknowledgement of this epoch;
//! - a node that must not go on (it lost its lease, or its journal was truncated) never
//!   acknowledges again: the main thread restarts the process from its journal
//!   ([`Replication::restart_reason`]).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clearline_history::History;
use clearline_journal::le::{u32_at, u64_at};
use clearline_journal::{record_size, Durability, Journal, RecordReader, RECORD_HEADER_SIZE};
use clearline_replication::frame::{self, Frame, Message, StreamDecoder};
use clearline_replication::leadership::{LeaderInfo, Leadership, LeadershipConfig, Position, Role};

use crate::cli::ReplicationArgs;

mod backup;
mod catch_up;
mod primary;

pub use catch_up::{apply_pending_moves, request_set_aside};

/// Records a sender puts in one frame, at most (the frame's body limit keeps room for the
/// fixed part).
const RECORDS_BYTES_MAX: usize = 1 << 20;

/// Backups one primary serves at once; more connections are closed at once.
pub const BACKUPS_MAX: usize = 8;

/// How long a side waits for the other's first frame before it gives the connection up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a write to a backup may block before its connection is given up.
const PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often blocked threads look whether they should stop or the role changed.
const LOOK_INTERVAL: Duration = Duration::from_millis(100);

/// How long a backup waits before connecting again after a failed or closed connection.
const RECONNECT_WAIT: Duration = Duration::from_millis(100);

/// Frames of records a backup's receiver may hold for the core before it stops reading.
pub const INBOX_FRAMES_MAX: usize = 16;

/// The etcd key prefix of every group.
const GROUP_KEY_PREFIX: &str = "/clearline/";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The settings of a replicated node, checked.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// The group's key prefix in etcd.
    pub group_key: String,
    /// This node's id (never zero).
    pub node_id: u64,
    /// Where backups connect.
    pub peer_addr: SocketAddr,
    /// Where clients are sent while this node is primary.
    pub client_addr: SocketAddr,
    /// Nodes in the group.
    pub group_size: u32,
    /// Backups that must hold a record durably before the primary answers its request.
    pub ack_backups: u32,
    /// The primary's lease.
    pub lease_ttl: Duration,
    /// How fast a primary sends a catch-up from a checkpoint, in bytes per second (0: no
    /// limit).
    pub catch_up_bytes_per_second: u64,
}

impl ReplicaConfig {
    /// The replication settings of `clearline start`, if --etcd is given.
    ///
    /// # Errors
    /// A missing or inconsistent flag, named.
    pub fn from_args(
        args: &ReplicationArgs,
        client_addr: SocketAddr,
    ) -> Result<Option<ReplicaConfig>, String> {
        let Some(etcd) = &args.etcd else {
            return Ok(None);
        };
        let endpoints: Vec<String> = etcd
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() {
            return Err("--etcd needs at least one URL, such as http://127.0.0.1:2379".into());
        }
        let node_id = match args.node_id {
            Some(0) => return Err("--node-id must not be 0".into()),
            Some(id) => id,
            None => return Err("--etcd needs --node-id (unique in the group, not 0)".into()),
        };
        let Some(peer_addr) = args.peer_addr else {
            return Err("--etcd needs --peer-addr (where backups connect)".into());
        };
        if args.group_size == 0 {
            return Err("--group-size must be at least 1".into());
        }
        let backups = args.group_size - 1;
        let ack_backups = args.ack_backups.unwrap_or(backups.min(1));
        if ack_backups > backups {
            return Err(format!(
                "--ack-backups {ack_backups} is more than the group's {backups} backups \
                 (--group-size {})",
                args.group_size
            ));
        }
        if ack_backups as usize > BACKUPS_MAX {
            return Err(format!(
                "--ack-backups {ack_backups} is more than the {BACKUPS_MAX} backups a primary \
                 serves"
            ));
        }
        if !(1..=60).contains(&args.lease_ttl_seconds) {
            return Err("--lease-ttl-seconds must be from 1 to 60".into());
        }
        let group = &args.group;
        let group_ok = !group.is_empty()
            && group
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
        if !group_ok {
            return Err("--group must be letters, digits, '-', '_' or '.'".into());
        }
        Ok(Some(ReplicaConfig {
            endpoints,
            group_key: format!("{GROUP_KEY_PREFIX}{group}"),
            node_id,
            peer_addr,
            client_addr: args.advertise_addr.unwrap_or(client_addr),
            group_size: args.group_size,
            ack_backups,
            lease_ttl: Duration::from_secs(args.lease_ttl_seconds),
            catch_up_bytes_per_second: args.catch_up_mib_per_second.saturating_mul(1 << 20),
        }))
    }
}

/// A counter bumped whenever something a waiting thread may care about happened: the local
/// durable sequence moved, a backup acknowledged, a connection came or went.
#[derive(Default)]
struct Progress {
    count: Mutex<u64>,
    changed: Condvar,
}

impl Progress {
    fn bump(&self) {
        *lock(&self.count) += 1;
        self.changed.notify_all();
    }

    /// Waits until the counter differs from `seen` or `timeout` passes; returns the counter.
    fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = lock(&self.count);
        if *guard != seen {
            return *guard;
        }
        let (guard, _) = self
            .changed
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard
    }

    fn now(&self) -> u64 {
        *lock(&self.count)
    }
}

/// A connected backup, as the primary's acknowledger sees it.
#[derive(Clone, Copy, Debug)]
struct BackupSlot {
    /// The connection's number (slots come and go).
    connection: u64,
    /// The backup's node id: one slot per node.
    node_id: u64,
    /// The highest sequence this backup said it holds durably, in this primary's epoch.
    acknowledged: u64,
}

/// A backup the primary heard from lately, for the journal's retention hold.
#[derive(Clone, Copy, Debug)]
struct Remembered {
    node_id: u64,
    /// The highest sequence it said it holds.
    holds: u64,
    /// When it last acknowledged or was connected.
    seen: Instant,
}

/// How long a primary keeps the records a backup that went away still needs (within
/// `RETENTION_HOLD_SEGMENTS_MAX` segments): a backup back within it catches up by streaming.
const REMEMBER_FOR: Duration = Duration::from_secs(600);

/// Backups remembered at most (the largest group's backups).
const REMEMBERED_MAX: usize = 16;

/// What a backup's receiver hands the core thread.
pub enum Inbound {
    /// The primary's journal facts: the backup's journal must take its generation.
    Welcome {
        /// The primary's journal generation.
        generation: u64,
        /// The primary's segment size.
        segment_size: u64,
    },
    /// Whole records, as in the primary's journal; the buffer goes back through
    /// [`Replication::recycle`].
    Records {
        /// The first record's sequence.
        first_sequence: u64,
        /// How many records.
        count: u32,
        /// The records' bytes.
        bytes: Vec<u8>,
    },
    /// Drop every record from `from_sequence` on, after checking the one before it.
    Truncate {
        /// The first sequence to drop.
        from_sequence: u64,
        /// The header checksum of record `from_sequence - 1` on the primary.
        previous_checksum: u128,
    },
}

/// What the core knows of its journal's end, for a backup's `Hello`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tip {
    /// The last sequence written.
    pub sequence: u64,
    /// Its header checksum (0 for an empty journal).
    pub checksum: u128,
}

/// The state a replicated node's threads share.
pub struct Replication {
    config: ReplicaConfig,
    /// The peer listener until its thread takes it.
    listener: Mutex<Option<TcpListener>>,
    leadership: Leadership,
    durability: Arc<Durability>,
    /// The reply gate: the net thread sends a reply once this reaches the reply's sequence.
    ack: Arc<AtomicU64>,
    progress: Progress,
    backups: Mutex<Vec<BackupSlot>>,
    connections: AtomicU64,
    /// This node's epoch while it is primary (0 while backup).
    epoch: AtomicU64,
    /// The sequence of this primary's epoch record: no other node holds a record there or
    /// after it that this node does not.
    epoch_start: AtomicU64,
    /// The epoch of the newest epoch record in this node's journal.
    journal_epoch: Arc<AtomicU64>,
    /// Set once: why the process must start again from its journal.
    restart: Mutex<Option<String>>,
    stop: AtomicBool,
    tip: Mutex<Tip>,
    /// Record buffers the core gives back to the receiver.
    pool: Mutex<Vec<Vec<u8>>>,
    reader: Mutex<RecordReader>,
    /// The journal facts a primary tells its backups.
    journal_facts: Mutex<JournalFacts>,
    /// The first sequence this node's journal holds (moves when checkpoints retire records).
    first_sequence: AtomicU64,
    /// The journal's retention hold (`Journal::retention_hold`): set while primary to keep
    /// what the backups it heard from lately still need.
    hold: Arc<AtomicU64>,
    /// Backups this primary heard from lately: what each holds, and when it was last seen.
    remembered: Mutex<Vec<Remembered>>,
    /// Waking the net thread after the gate moved (set once the net thread runs).
    wake: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The data directory (catch-ups are staged there).
    data: PathBuf,
    /// The history store, copied to a backup that catches up from a checkpoint.
    store: Option<Arc<History>>,
    /// Whether this node runs in history mode.
    history: bool,
}

/// A primary's journal facts for `Welcome`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JournalFacts {
    /// The journal's generation.
    pub generation: u64,
    /// Its segment size.
    pub segment_size: u64,
    /// The first sequence it holds.
    pub first_sequence: u64,
}

/// What a replicated node takes from its journal when it starts.
pub struct NodeJournal {
    /// The journal's durable and written sequences.
    pub durability: Arc<Durability>,
    /// A reader of the journal, for the senders (each makes its own from it).
    pub reader: RecordReader,
    /// The journal's end, for a backup's first `Hello`.
    pub tip: Tip,
    /// The newest epoch the journal has met (0 when none).
    pub epoch: u64,
    /// What a primary tells its backups about the journal.
    pub facts: JournalFacts,
    /// The journal's retention hold (`Journal::retention_hold`).
    pub hold: Arc<AtomicU64>,
    /// The node's data directory, where a catch-up from a checkpoint is staged.
    pub data: PathBuf,
    /// The history store in history mode, which a primary copies to a backup that catches
    /// up from a checkpoint.
    pub store: Option<Arc<History>>,
    /// Whether this node runs in history mode (a catch-up must bring a store exactly then).
    pub history: bool,
}

/// What the core should do, from the node's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreRole {
    /// Stay a backup: apply what the primary streams, answer writes with a redirect.
    Backup,
    /// Become primary in this epoch: journal the epoch record, then serve.
    Primary(u64),
    /// Stop applying anything: the process starts again (see `restart_reason`).
    Restart,
}

/// The running threads of a replicated node.
pub struct ReplicationThreads {
    handles: Vec<JoinHandle<()>>,
}

impl Replication {
    /// Binds the peer address and starts leadership. The reply gate `ack` starts at the
    /// journal's durable sequence: what this node recovered was acknowledged by whoever wrote
    /// it, and no reply waits on it.
    ///
    /// # Errors
    /// The peer address cannot be bound, or etcd's configuration is refused (leadership's own
    /// checks).
    pub fn start(
        mut config: ReplicaConfig,
        ack: Arc<AtomicU64>,
        journal: NodeJournal,
    ) -> Result<Arc<Replication>, BoxError> {
        let NodeJournal {
            durability,
            reader,
            tip,
            epoch: journal_epoch,
            facts,
            hold,
            data,
            store,
            history,
        } = journal;
        // Bound before leadership starts, so the leader key names the real port.
        let listener = TcpListener::bind(config.peer_addr)
            .map_err(|error| format!("cannot serve backups on {}: {error}", config.peer_addr))?;
        config.peer_addr = listener.local_addr()?;
        let journal_epoch = Arc::new(AtomicU64::new(journal_epoch));
        let position = {
            let journal_epoch = Arc::clone(&journal_epoch);
            let durability = Arc::clone(&durability);
            Arc::new(move || Position {
                epoch: journal_epoch.load(Ordering::Acquire),
                sequence: durability.durable_sequence(),
            })
        };
        let leadership = Leadership::start(LeadershipConfig {
            endpoints: config.endpoints.clone(),
            group_key: config.group_key.clone(),
            node_id: config.node_id,
            client_address: config.client_addr,
            peer_address: config.peer_addr,
            lease_ttl: config.lease_ttl,
            group_size: config.group_size,
            ack_backups: config.ack_backups,
            position,
        })
        .map_err(|error| format!("replication: {error}"))?;
        ack.store(durability.durable_sequence(), Ordering::Release);
        Ok(Arc::new(Replication {
            listener: Mutex::new(Some(listener)),
            config,
            leadership,
            durability,
            ack,
            progress: Progress::default(),
            backups: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            epoch_start: AtomicU64::new(0),
            journal_epoch,
            restart: Mutex::new(None),
            stop: AtomicBool::new(false),
            tip: Mutex::new(tip),
            pool: Mutex::new(Vec::new()),
            reader: Mutex::new(reader),
            journal_facts: Mutex::new(facts),
            hold,
            remembered: Mutex::new(Vec::new()),
            first_sequence: AtomicU64::new(facts.first_sequence),
            wake: std::sync::OnceLock::new(),
            data,
            store,
            history,
        }))
    }

    /// How to wake the net thread after the reply gate moved (once; later calls are ignored).
    pub fn set_wake(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.wake.set(wake);
    }

    /// Called by the primary's core after each batch: its records are written, and the
    /// senders stream them without waiting for the local sync.
    pub fn records_written(&self, journal: &Journal) {
        // Checkpoints retire records at batch boundaries: what a new backup can be sent moves.
        self.first_sequence
            .store(journal.first_sequence(), Ordering::Release);
        self.progress.bump();
    }

    /// Called by the journal after each durable publication (on the syncer thread).
    pub fn durable_moved(&self) {
        self.progress.bump();
    }

    /// Starts the peer listener, the acknowledger and the backup's receiver.
    ///
    /// # Errors
    /// The peer address cannot be bound.
    pub fn start_threads(
        self: &Arc<Replication>,
        inbox: SyncSender<Inbound>,
    ) -> Result<ReplicationThreads, BoxError> {
        let Some(listener) = lock(&self.listener).take() else {
            return Err("the replication threads were started already".into());
        };
        listener.set_nonblocking(true)?;
        let mut handles = Vec::new();
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(run)
                .map_err(|error| format!("cannot start {name}: {error}"))
        };
        {
            let this = Arc::clone(self);
            handles.push(spawn(
                "replica-listen",
                Box::new(move || this.listen(&listener)),
            )?);
        }
        {
            let this = Arc::clone(self);
            handles.push(spawn(
                "replica-acks",
                Box::new(move || this.acknowledger()),
            )?);
        }
        {
            let this = Arc::clone(self);
            handles.push(spawn(
                "replica-receive",
                Box::new(move || this.receiver(&inbox)),
            )?);
        }
        Ok(ReplicationThreads { handles })
    }

    /// Why the process must start again from its journal, once that is decided.
    pub fn restart_reason(&self) -> Option<String> {
        lock(&self.restart).clone()
    }

    /// Decides that the process starts again from its journal; acknowledges nothing more.
    pub fn request_restart(&self, reason: String) {
        self.epoch.store(0, Ordering::Release);
        let mut restart = lock(&self.restart);
        if restart.is_none() {
            warn!("clearline: {reason}; restarting from the journal");
            *restart = Some(reason);
        }
        drop(restart);
        self.progress.bump();
    }

    /// Stops every thread (they notice within [`LOOK_INTERVAL`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.progress.bump();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire) || lock(&self.restart).is_some()
    }

    /// What the core should be now. Cheap: a mutex-guarded copy of the role.
    pub fn role_for_core(&self) -> CoreRole {
        if lock(&self.restart).is_some() {
            return CoreRole::Restart;
        }
        match self.leadership.role() {
            Role::Primary { epoch, .. } if self.leadership.may_acknowledge(Instant::now()) => {
                CoreRole::Primary(epoch)
            }
            _ => CoreRole::Backup,
        }
    }

    /// The primary as this node knows it (None while unknown or this node leads).
    pub fn primary(&self) -> Option<LeaderInfo> {
        match self.leadership.role() {
            Role::Backup { primary } => primary,
            Role::Primary { .. } => None,
        }
    }

    /// Where backups connect (the bound address).
    pub fn peer_addr(&self) -> SocketAddr {
        self.config.peer_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// The core journaled the epoch record of `epoch` at `sequence`: from now on this node
    /// streams and acknowledges as that epoch's primary.
    pub fn became_primary(&self, epoch: u64, sequence: u64, facts: JournalFacts) {
        self.epoch_start.store(sequence, Ordering::Release);
        self.journal_epoch.store(epoch, Ordering::Release);
        self.first_sequence
            .store(facts.first_sequence, Ordering::Release);
        *lock(&self.journal_facts) = facts;
        self.epoch.store(epoch, Ordering::Release);
        self.progress.bump();
    }

    /// The core applied an epoch record copied from a primary.
    pub fn saw_epoch(&self, epoch: u64) {
        self.journal_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The core wrote records up to `tip` (a backup's journal end, for its next `Hello`).
    pub fn set_tip(&self, tip: Tip) {
        *lock(&self.tip) = tip;
    }

    /// The journal took another generation (a new backup took its primary's): the sender
    /// reads it with this reader from now on.
    pub fn replace_reader(&self, reader: RecordReader) {
        *lock(&self.reader) = reader;
    }

    /// Gives a records buffer back to the receiver.
    pub fn recycle(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let mut pool = lock(&self.pool);
        if pool.len() < INBOX_FRAMES_MAX + 2 {
            pool.push(buffer);
        }
    }

    fn buffer(&self) -> Vec<u8> {
        lock(&self.pool)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(RECORDS_BYTES_MAX + RECORD_HEADER_SIZE as usize))
    }
}

impl ReplicationThreads {
    /// Waits for every thread (after [`Replication::stop`]).
    pub fn join(self) {
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

/// Encodes and writes one frame.
fn send(
    stream: &mut TcpStream,
    out: &mut [u8],
    epoch: u64,
    message: Message<'_>,
) -> Result<(), BoxError> {
    let size = frame::encode(&Frame { epoch, message }, out)?;
    stream.write_all(&out[..size])?;
    Ok(())
}

/// Reads until one whole frame is decoded; `None` when the peer closed or `stop` said so.
/// The frame borrows from the decoder's buffer.
fn read_frame<'a>(
    stream: &mut TcpStream,
    decoder: &'a mut StreamDecoder,
    stop: &dyn Fn() -> bool,
) -> Result<Option<Frame<'a>>, BoxError> {
    // The borrow checker cannot see that a `None` from `next_frame` leaves the decoder
    // unborrowed, so the check is done on sizes first.
    loop {
        if decoder.frame_ready() {
            return Ok(decoder.next_frame()?);
        }
        if stop() {
            return Ok(None);
        }
        let spare = decoder.spare();
        match stream.read(spare) {
            Ok(0) => return Ok(None),
            Ok(count) => decoder.filled(count),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => return Err(error.into()),
        }
    }
}

/// Splits a `Records` frame's bytes into whole records.
pub fn records(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let rest = &bytes[at..];
        if rest.len() < RECORD_HEADER_SIZE as usize {
            return None;
        }
        let size = usize::try_from(record_size(u64::from(u32_at(rest, 60)))).ok()?;
        let record = rest.get(..size)?;
        at += size;
        Some(record)
    })
}

/// A record's sequence and timestamp from its header (already validated by the journal).
pub fn record_sequence_and_timestamp(record: &[u8]) -> (u64, u64) {
    (u64_at(record, 88), u64_at(record, 96))
}

/// The channel a backup's receiver feeds the core through.
pub fn inbox() -> (SyncSender<Inbound>, Receiver<Inbound>) {
    std::sync::mpsc::sync_channel(INBOX_FRAMES_MAX)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn config(flags: &[&str]) -> Result<Option<ReplicaConfig>, String> {
        let words = ["clearline", "start"].iter().chain(flags);
        let args = match Cli::try_parse_from(words).expect("the flags parse").command {
            Command::Start(args) => args,
            other => panic!("not start: {other:?}"),
        };
        ReplicaConfig::from_args(&args.replication, args.addr)
    }

    const NODE: [&str; 6] = [
        "--etcd",
        "http://127.0.0.1:2379",
        "--node-id",
        "2",
        "--peer-addr",
        "127.0.0.1:7171",
    ];

    #[test]
    fn without_etcd_a_node_runs_alone() {
        assert!(config(&[]).expect("valid").is_none());
    }

    #[test]
    fn defaults_acknowledge_on_one_backup_in_a_group_and_none_alone() {
        let group = config(&NODE).expect("valid").expect("a group");
        assert_eq!((group.group_size, group.ack_backups), (3, 1));
        assert_eq!(group.group_key, "/clearline/default");
        assert_eq!(group.lease_ttl, Duration::from_secs(2));
        assert_eq!(
            group.client_addr,
            "127.0.0.1:7070".parse().expect("address")
        );
        let alone = [&NODE[..], &["--group-size", "1"]].concat();
        assert_eq!(
            config(&alone).expect("valid").expect("a group").ack_backups,
            0
        );
    }

    #[test]
    fn missing_and_inconsistent_flags_are_named() {
        let cases: [(&[&str], &str); 7] = [
            (&["--etcd", "http://127.0.0.1:2379"], "--node-id"),
            (&["--etcd", ",", "--node-id", "1"], "at least one URL"),
            (
                &[&NODE[..2], &["--node-id", "0"], &NODE[4..]].concat(),
                "must not be 0",
            ),
            (&NODE[..4], "--peer-addr"),
            (
                &[&NODE[..], &["--ack-backups", "3"]].concat(),
                "more than the group's 2",
            ),
            (&[&NODE[..], &["--group", "a/b"]].concat(), "--group"),
            (
                &[&NODE[..], &["--lease-ttl-seconds", "0"]].concat(),
                "1 to 60",
            ),
        ];
        for (flags, expected) in cases {
            let error = config(flags).expect_err("refused");
            assert!(error.contains(expected), "{flags:?}: {error}");
        }
    }

    #[test]
    fn records_are_split_by_their_header_sizes() {
        let mut bytes = Vec::new();
        for body_size in [0u32, 1, 64, 65] {
            let mut record = vec![0u8; record_size(u64::from(body_size)) as usize];
            record[60..64].copy_from_slice(&body_size.to_le_bytes());
            bytes.extend_from_slice(&record);
        }
        let sizes: Vec<usize> = records(&bytes).map(<[u8]>::len).collect();
        assert_eq!(sizes, [128, 192, 192, 256]);
        // A cut record is not returned.
        let cut: Vec<usize> = records(&bytes[..bytes.len() - 1])
            .map(<[u8]>::len)
            .collect();
        assert_eq!(cut, [128, 192, 192]);
    }
}
