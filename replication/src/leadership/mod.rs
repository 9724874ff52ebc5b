//! Leadership of one replication group, held in etcd under a lease (docs/replication.md,
//! "Leadership").
//!
//! A [`Leadership`] runs its own thread with a current-thread tokio runtime; every etcd call
//! happens there, never on the caller's thread. The caller reads the outcome cheaply: the role
//! through a small mutex ([`Leadership::role`]) and the instant after which a primary must not
//! acknowledge through one atomic ([`Leadership::may_acknowledge`]).
//!
//! Files: this one holds the public types, the timing rules and the handle; `candidacy.rs` who
//! takes over (positions, required candidacies, the decision); `node.rs` the leadership
//! thread's loop and its etcd calls; `watch.rs` the backup's watch on the leader key.
//!
//! Invariants:
//! - the leader key `GROUP/leader` is only ever created by a transaction that also increments the
//!   counter key `GROUP/epoch`, on the condition that neither changed since they were read, so
//!   every leader has an epoch strictly larger than every leader before it;
//! - the leader key is attached to a lease, so it disappears when its holder stops renewing;
//! - the published deadline is the send time of the last keep-alive the server answered with a
//!   live lease, plus the TTL the server granted, minus [`safety_margin`]. The server restarts a
//!   lease's TTL when it *receives* that keep-alive, later than we sent it, so the lease (and the
//!   key) outlives the deadline and no other node can become primary before it has passed;
//! - [`Leadership::may_acknowledge`] compares the deadline with the caller's own clock reading,
//!   so a primary whose leadership thread is stalled still stops acknowledging in time;
//! - a keep-alive stream carries at most one unanswered request; after a timeout or error the
//!   stream is dropped and a new one opened, so a late answer is never credited to a later send;
//! - in a group of more than one node, a node campaigns only after it has read at least
//!   [`required_candidacies`] candidacies of the current round (its own included) and its own
//!   [`Position`] is the best among them, so the new primary holds every record the old one
//!   acknowledged with `ack_backups >= 1` (docs/replication.md, "Who takes over"). The round is
//!   the epoch counter's value, and the campaign's transaction is conditioned on the counter's
//!   revision read before the candidacy was written, so a decision about one round can never
//!   win a later one;
//! - a backup's watch on the leader key only wakes the thread early: every decision is taken on
//!   a fresh read of the key, and the poll every [`poll_interval`] goes on whether or not the
//!   watch works, so a broken or silent watch can delay a takeover but never cause one.
//!
//! Does not replicate anything, does not know where a position comes from (the caller's
//! journal supplies it), and does not decide what a backup does with the primary's address: it
//! only says who leads, with which epoch, and until when.

mod candidacy;
mod node;
mod watch;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use candidacy::{
    required_candidacies, CandidacyOutcome, CandidacyVerdict, Candidate, Position,
};
use node::Node;

/// Smallest lease TTL accepted. etcd counts TTLs in whole seconds (and etcd 3.4 raises any TTL
/// below its minimum, 2 s with default settings, to that minimum).
pub const LEASE_TTL_MIN: Duration = Duration::from_secs(1);
/// Largest lease TTL accepted: a failover takes about this long.
pub const LEASE_TTL_MAX: Duration = Duration::from_secs(60);
/// Largest group accepted (`group_size`). A group is a primary and a few backups; the limit
/// bounds the candidacies read in one look.
pub const GROUP_SIZE_MAX: u32 = 16;
/// Shortest poll interval, whatever the TTL.
const POLL_INTERVAL_MIN: Duration = Duration::from_millis(50);
/// Shortest candidacy window, whatever the TTL: room for the other backups' four etcd calls
/// (two reads, a lease grant and a put, the last two each a Raft commit with an fsync) between
/// their noticing the missing leader key and their candidacy being readable.
const CANDIDACY_WINDOW_MIN: Duration = Duration::from_millis(150);

/// Time subtracted from a lease's expiry to get the instant a primary stops acknowledging.
///
/// It covers two things the send-time rule does not: the rate difference between this machine's
/// monotonic clock and the etcd server's (NTP slews a clock by at most 0.05%; we allow 10%, which
/// also covers a virtual machine whose clock stalls), and the time between a caller's
/// [`Leadership::may_acknowledge`] check and its acknowledgement leaving the process (a fixed
/// 100 ms, for a loaded machine). Keep-alive latency needs no margin: the deadline counts from
/// the send, and latency only makes it earlier than the server's expiry.
pub fn safety_margin(lease_ttl: Duration) -> Duration {
    lease_ttl / 10 + Duration::from_millis(100)
}

/// How often a backup reads the leader key whatever its watch says: an eighth of the TTL, at
/// least 50 ms (250 ms for a 2 s TTL). The watch on the key normally reports a deletion within
/// milliseconds; the poll is the fallback for a watch that broke or went silent.
pub fn poll_interval(lease_ttl: Duration) -> Duration {
    (lease_ttl / 8).max(POLL_INTERVAL_MIN)
}

/// How long a node waits between writing its candidacy and reading everyone's: an eighth of the
/// TTL, at least 150 ms (250 ms for a 2 s TTL).
///
/// Backups notice a deletion of the leader key through their own watches, which etcd notifies
/// from the same commit, so they write their candidacies within a few etcd calls of each other;
/// the window leaves room for those calls on a loaded machine. It is also at least
/// [`poll_interval`], so a backup whose watch is broken and that notices by polling is still
/// heard by one that noticed at once. Safety does not depend on it (the quorum gives that); a
/// window too short only makes the first look of a round hear too few candidacies (the node
/// looks again) or pass over a better candidate that was late.
pub fn candidacy_window(lease_ttl: Duration) -> Duration {
    (lease_ttl / 8).max(CANDIDACY_WINDOW_MIN)
}

/// Where the current primary of a group can be reached, as written in its leader key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The primary's node id (never zero).
    pub node_id: u64,
    /// The address clients connect to.
    pub client_address: SocketAddr,
    /// The address backups connect to for the replication stream.
    pub peer_address: SocketAddr,
    /// The primary's epoch.
    pub epoch: u64,
}

const LEADER_VALUE_PREFIX: &str = "clearline-leader-v1";

impl LeaderInfo {
    /// The leader key's value: one line of text, so an operator can read it with `etcdctl get`.
    fn to_value(self) -> String {
        format!(
            "{LEADER_VALUE_PREFIX} epoch={} node={} client={} peer={}",
            self.epoch, self.node_id, self.client_address, self.peer_address
        )
    }

    /// Parses a leader key's value; `None` if it is not one [`LeaderInfo::to_value`] wrote.
    fn from_value(value: &[u8]) -> Option<LeaderInfo> {
        let text = std::str::from_utf8(value).ok()?;
        let mut words = text.split(' ');
        if words.next()? != LEADER_VALUE_PREFIX {
            return None;
        }
        let epoch = words.next()?.strip_prefix("epoch=")?.parse().ok()?;
        let node_id = words.next()?.strip_prefix("node=")?.parse().ok()?;
        let client_address = words.next()?.strip_prefix("client=")?.parse().ok()?;
        let peer_address = words.next()?.strip_prefix("peer=")?.parse().ok()?;
        if words.next().is_some() || node_id == 0 || epoch == 0 {
            return None;
        }
        Some(LeaderInfo {
            node_id,
            client_address,
            peer_address,
            epoch,
        })
    }
}

/// What this node is in its group right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This node holds the leader key.
    Primary {
        /// Strictly larger than the epoch of every earlier primary of the group.
        epoch: u64,
        /// The instant after which this node must not acknowledge (moves on every renewal).
        lease_deadline: Instant,
        /// When the lease that made this node primary was granted (the grant's answer arrived).
        lease_granted_at: Instant,
    },
    /// Another node leads, or nobody does (`None`), or this node does not know yet.
    Backup {
        /// The primary as last read from etcd.
        primary: Option<LeaderInfo>,
    },
}

/// What a node needs to take part in a group's leadership.
#[derive(Clone)]
pub struct LeadershipConfig {
    /// etcd client URLs, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// The group's key prefix; the leader key is `GROUP/leader`, the epoch counter `GROUP/epoch`,
    /// and candidacies are `GROUP/candidate/NODE_ID`.
    pub group_key: String,
    /// Nodes in the group, the primary included: 1..=[`GROUP_SIZE_MAX`]. A group of one
    /// campaigns as soon as the leader key is gone.
    pub group_size: u32,
    /// Backups on which a record must be durable before the primary acknowledges it; less than
    /// `group_size`. Decides how many candidacies a takeover needs ([`required_candidacies`]).
    pub ack_backups: u32,
    /// This node's journal position, called on the leadership thread at each look at the
    /// candidacies (never on the caller's thread). It must be cheap (an atomic load or two),
    /// must not block or panic, and must count only durable records.
    pub position: Arc<dyn Fn() -> Position + Send + Sync>,
    /// This node's id, unique in the group, never zero.
    pub node_id: u64,
    /// The address this node serves clients on when it is primary.
    pub client_address: SocketAddr,
    /// The address this node serves backups on when it is primary.
    pub peer_address: SocketAddr,
    /// The lease's time to live, whole seconds within [`LEASE_TTL_MIN`]..=[`LEASE_TTL_MAX`].
    pub lease_ttl: Duration,
}

impl fmt::Debug for LeadershipConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `position` is a closure: it has no text of its own.
        f.debug_struct("LeadershipConfig")
            .field("endpoints", &self.endpoints)
            .field("group_key", &self.group_key)
            .field("group_size", &self.group_size)
            .field("ack_backups", &self.ack_backups)
            .field("node_id", &self.node_id)
            .field("client_address", &self.client_address)
            .field("peer_address", &self.peer_address)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// Why [`Leadership::start`] refused to start.
#[derive(Debug)]
pub enum StartError {
    /// `endpoints` is empty.
    EndpointsMustNotBeEmpty,
    /// `group_key` is empty.
    GroupKeyMustNotBeEmpty,
    /// `group_size` is zero or above [`GROUP_SIZE_MAX`].
    GroupSizeOutOfRange,
    /// `ack_backups` is not less than `group_size`.
    AckBackupsMustBeBelowGroupSize,
    /// `node_id` is zero.
    NodeIdMustNotBeZero,
    /// `lease_ttl` is not whole seconds within the accepted range.
    LeaseTtlOutOfRange,
    /// The runtime or the thread could not be created.
    Spawn(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::EndpointsMustNotBeEmpty => write!(f, "no etcd endpoints given"),
            StartError::GroupKeyMustNotBeEmpty => write!(f, "the group key is empty"),
            StartError::GroupSizeOutOfRange => {
                write!(f, "the group size must be from 1 to {GROUP_SIZE_MAX}")
            }
            StartError::AckBackupsMustBeBelowGroupSize => {
                write!(f, "ack_backups must be less than the group size")
            }
            StartError::NodeIdMustNotBeZero => write!(f, "the node id must not be zero"),
            StartError::LeaseTtlOutOfRange => write!(
                f,
                "the lease TTL must be whole seconds from {} to {}",
                LEASE_TTL_MIN.as_secs(),
                LEASE_TTL_MAX.as_secs()
            ),
            StartError::Spawn(error) => write!(f, "cannot start the leadership thread: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// State shared between the leadership thread and its readers.
struct Shared {
    /// The origin of `stop_acknowledging_at_ns`.
    base: Instant,
    /// Nanoseconds after `base` at which acknowledging must stop, plus one; zero means "never
    /// primary" (no deadline). Only ever written by the leadership thread and by `drop`.
    stop_acknowledging_at_ns: AtomicU64,
    role: Mutex<Role>,
    stopping: AtomicBool,
    renewal_paused: AtomicBool,
    errors_count: AtomicU64,
    /// Watches on the leader key opened so far (only ever increases).
    watches_opened_count: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_candidacy: Mutex<Option<CandidacyOutcome>>,
}

/// Takes a lock even if a thread panicked while holding it: the data is plain values, always
/// whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn publish_deadline(&self, deadline: Instant) {
        let since_base = deadline.saturating_duration_since(self.base).as_nanos();
        let encoded = u64::try_from(since_base).unwrap_or(u64::MAX - 1) + 1;
        self.stop_acknowledging_at_ns
            .store(encoded, Ordering::Release);
    }

    fn stop_acknowledging_at(&self) -> Option<Instant> {
        match self.stop_acknowledging_at_ns.load(Ordering::Acquire) {
            0 => None,
            encoded => Some(self.base + Duration::from_nanos(encoded - 1)),
        }
    }

    fn set_role(&self, role: Role) {
        *lock(&self.role) = role;
    }

    fn record_error(&self, what: &str, error: &dyn fmt::Display) {
        self.errors_count.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(format!("{what}: {error}"));
    }
}

/// A node's part in its group's leadership; dropping it resigns.
pub struct Leadership {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Leadership {
    /// Starts the leadership thread: it connects to etcd, stands as a candidate whenever the
    /// group has no leader and campaigns when the candidacies allow it, renews the lease while
    /// this node leads, and otherwise follows the leader key (a watch for prompt news of its
    /// deletion, and a read every [`poll_interval`] in case the watch fails).
    /// Returns at once; the role starts as `Backup { primary: None }`. etcd being unreachable
    /// is not an error here: the thread keeps trying, and [`Leadership::last_error`] says why.
    ///
    /// # Errors
    ///
    /// A configuration value out of range, or the thread or runtime could not be created.
    pub fn start(config: LeadershipConfig) -> Result<Leadership, StartError> {
        if config.endpoints.is_empty() {
            return Err(StartError::EndpointsMustNotBeEmpty);
        }
        if config.group_key.is_empty() {
            return Err(StartError::GroupKeyMustNotBeEmpty);
        }
        if config.group_size == 0 || config.group_size > GROUP_SIZE_MAX {
            return Err(StartError::GroupSizeOutOfRange);
        }
        if config.ack_backups >= config.group_size {
            return Err(StartError::AckBackupsMustBeBelowGroupSize);
        }
        if config.node_id == 0 {
            return Err(StartError::NodeIdMustNotBeZero);
        }
        if config.lease_ttl < LEASE_TTL_MIN
            || config.lease_ttl > LEASE_TTL_MAX
            || config.lease_ttl.subsec_nanos() != 0
        {
            return Err(StartError::LeaseTtlOutOfRange);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Spawn)?;
        let shared = Arc::new(Shared {
            base: Instant::now(),
            stop_acknowledging_at_ns: AtomicU64::new(0),
            role: Mutex::new(Role::Backup { primary: None }),
            stopping: AtomicBool::new(false),
            renewal_paused: AtomicBool::new(false),
            errors_count: AtomicU64::new(0),
            watches_opened_count: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_candidacy: Mutex::new(None),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("leadership-{}", config.node_id))
            .spawn(move || {
                let mut node = Node::new(config, &thread_shared);
                runtime.block_on(node.run());
            })
            .map_err(StartError::Spawn)?;
        Ok(Leadership {
            shared,
            thread: Some(thread),
        })
    }

    /// The current role (a copy taken under a small mutex).
    pub fn role(&self) -> Role {
        *lock(&self.shared.role)
    }

    /// The epoch if this node is primary.
    pub fn primary_epoch(&self) -> Option<u64> {
        match self.role() {
            Role::Primary { epoch, .. } => Some(epoch),
            Role::Backup { .. } => None,
        }
    }

    /// The instant after which this node must not acknowledge anything; `None` if it has never
    /// been primary. After leadership is lost it stays at the last deadline, which has passed.
    pub fn stop_acknowledging_at(&self) -> Option<Instant> {
        self.shared.stop_acknowledging_at()
    }

    /// Whether a primary may still acknowledge at `now` (one atomic load and a comparison).
    pub fn may_acknowledge(&self, now: Instant) -> bool {
        self.stop_acknowledging_at()
            .is_some_and(|deadline| now < deadline)
    }

    /// How many etcd calls have failed so far.
    pub fn errors_count(&self) -> u64 {
        self.shared.errors_count.load(Ordering::Relaxed)
    }

    /// How many watches on the leader key this node has opened so far, for diagnostics: a
    /// backup opens one at its first read and another after each failure of the last (etcd
    /// restarted, the stream broke, or a poll saw a change the watch had not reported).
    pub fn watches_opened_count(&self) -> u64 {
        self.shared.watches_opened_count.load(Ordering::Relaxed)
    }

    /// The last etcd failure, for diagnostics.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    /// The outcome of this node's last look at the candidacies (round, candidacies heard and
    /// required, the best candidate, and what it did), so a server can log why it does not take
    /// over. `None` until the node has looked once; a group of one never looks.
    pub fn last_candidacy(&self) -> Option<CandidacyOutcome> {
        *lock(&self.shared.last_candidacy)
    }

    /// Fault injection for tests: while paused, the thread makes no etcd call at all (no
    /// keep-alive, no campaign), as if the process were stalled, but still gives up the primary
    /// role once its deadline has passed.
    pub fn set_renewal_paused(&self, paused: bool) {
        self.shared.renewal_paused.store(paused, Ordering::Release);
    }
}

impl Drop for Leadership {
    /// Stops acknowledging at once, then resigns: the thread revokes the lease, which deletes
    /// the leader key, so a backup can take over without waiting for the TTL.
    fn drop(&mut self) {
        if self.shared.stop_acknowledging_at().is_some() {
            self.shared.publish_deadline(Instant::now());
        }
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // A panic on the leadership thread has already been reported by the panic hook;
            // there is nothing more to do with it while dropping.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_value_round_trips() {
        let info = LeaderInfo {
            node_id: 7,
            client_address: "127.0.0.1:3000".parse().unwrap(),
            peer_address: "[::1]:3001".parse().unwrap(),
            epoch: 42,
        };
        assert_eq!(
            LeaderInfo::from_value(info.to_value().as_bytes()),
            Some(info)
        );
    }

    #[test]
    fn leader_value_rejects_other_text() {
        for value in [
            "",
            "clearline-leader-v1",
            "clearline-leader-v2 epoch=1 node=1 client=127.0.0.1:1 peer=127.0.0.1:2",
            "clearline-leader-v1 epoch=0 node=1 client=127.0.0.1:1 peer=127.0.0.1:2",
            "clearline-leader-v1 epoch=1 node=0 client=127.0.0.1:1 peer=127.0.0.1:2",
            "clearline-leader-v1 epoch=1 node=1 client=127.0.0.1 peer=127.0.0.1:2",
            "clearline-leader-v1 epoch=1 node=1 client=127.0.0.1:1 peer=127.0.0.1:2 extra",
        ] {
            assert_eq!(LeaderInfo::from_value(value.as_bytes()), None, "{value}");
        }
    }

    #[test]
    fn candidacy_window_is_an_eighth_ttl_at_least_150_ms() {
        for (ttl, expected) in [
            (Duration::from_secs(1), CANDIDACY_WINDOW_MIN),
            (Duration::from_secs(2), Duration::from_millis(250)),
            (Duration::from_secs(8), Duration::from_secs(1)),
            (Duration::from_millis(400), CANDIDACY_WINDOW_MIN),
        ] {
            assert_eq!(candidacy_window(ttl), expected, "{ttl:?}");
        }
    }

    #[test]
    fn poll_interval_is_an_eighth_ttl_at_least_50_ms() {
        assert_eq!(
            poll_interval(Duration::from_secs(2)),
            Duration::from_millis(250)
        );
        assert_eq!(poll_interval(Duration::from_millis(100)), POLL_INTERVAL_MIN);
    }

    #[test]
    fn candidacy_window_covers_the_poll_interval() {
        // A backup whose watch is broken notices a deletion up to one poll interval late; the
        // window must leave it time to be heard.
        for seconds in 1..=60 {
            let ttl = Duration::from_secs(seconds);
            assert!(candidacy_window(ttl) >= poll_interval(ttl), "{seconds} s");
            assert!(candidacy_window(ttl) < ttl / 2, "{seconds} s");
        }
    }

    #[test]
    fn margin_leaves_most_of_the_lease() {
        for seconds in 1..=60 {
            let ttl = Duration::from_secs(seconds);
            assert!(safety_margin(ttl) < ttl / 2, "{seconds} s");
        }
    }
}
