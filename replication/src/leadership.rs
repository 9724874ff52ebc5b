//! Leadership of one replication group, held in etcd under a lease (docs/replication.md,
//! "Leadership").
//!
//! A [`Leadership`] runs its own thread with a current-thread tokio runtime; every etcd call
//! happens there, never on the caller's thread. The caller reads the outcome cheaply: the role
//! through a small mutex ([`Leadership::role`]) and the instant after which a primary must not
//! acknowledge through one atomic ([`Leadership::may_acknowledge`]).
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
//!   stream is dropped and a new one opened, so a late answer is never credited to a later send.
//!
//! Does not replicate anything, and does not decide what a backup does with the primary's
//! address: it only says who leads, with which epoch, and until when.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn,
    TxnOp,
};

/// Smallest lease TTL accepted. etcd counts TTLs in whole seconds (and etcd 3.4 raises any TTL
/// below its minimum, 2 s with default settings, to that minimum).
pub const LEASE_TTL_MIN: Duration = Duration::from_secs(1);
/// Largest lease TTL accepted: a failover takes about this long.
pub const LEASE_TTL_MAX: Duration = Duration::from_secs(60);
/// How often the leadership thread wakes up to look at the stop flag and the deadline.
const TICK: Duration = Duration::from_millis(20);
/// Pause before retrying after an etcd call failed.
const RETRY_DELAY: Duration = Duration::from_millis(100);

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
#[derive(Clone, Debug)]
pub struct LeadershipConfig {
    /// etcd client URLs, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// The group's key prefix; the leader key is `GROUP/leader`, the epoch counter `GROUP/epoch`.
    pub group_key: String,
    /// This node's id, unique in the group, never zero.
    pub node_id: u64,
    /// The address this node serves clients on when it is primary.
    pub client_address: SocketAddr,
    /// The address this node serves backups on when it is primary.
    pub peer_address: SocketAddr,
    /// The lease's time to live, whole seconds within [`LEASE_TTL_MIN`]..=[`LEASE_TTL_MAX`].
    pub lease_ttl: Duration,
}

/// Why [`Leadership::start`] refused to start.
#[derive(Debug)]
pub enum StartError {
    /// `endpoints` is empty.
    EndpointsMustNotBeEmpty,
    /// `group_key` is empty.
    GroupKeyMustNotBeEmpty,
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
    last_error: Mutex<Option<String>>,
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
    /// Starts the leadership thread: it connects to etcd, campaigns whenever the group has no
    /// leader, renews the lease while this node leads, and follows the leader key otherwise.
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
            last_error: Mutex::new(None),
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

    /// The last etcd failure, for diagnostics.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
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

/// A lease this node holds as primary.
struct Held {
    lease_id: i64,
    epoch: u64,
    lease_granted_at: Instant,
    deadline: Instant,
    next_renewal_at: Instant,
    /// `None` after a failure: a fresh stream is opened before the next keep-alive.
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// The leadership thread's state.
struct Node<'a> {
    config: LeadershipConfig,
    shared: &'a Shared,
    leader_key: String,
    epoch_key: String,
    rpc_timeout: Duration,
    client: Option<Client>,
    held: Option<Held>,
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl<'a> Node<'a> {
    fn new(config: LeadershipConfig, shared: &'a Shared) -> Node<'a> {
        let leader_key = format!("{}/leader", config.group_key);
        let epoch_key = format!("{}/epoch", config.group_key);
        // Every call must finish well within a TTL, or the node would be late to notice loss.
        let rpc_timeout = (config.lease_ttl / 4).max(Duration::from_millis(250));
        Node {
            config,
            shared,
            leader_key,
            epoch_key,
            rpc_timeout,
            client: None,
            held: None,
        }
    }

    async fn run(&mut self) {
        while !self.shared.stopping.load(Ordering::Acquire) {
            self.give_up_if_expired();
            if self.shared.renewal_paused.load(Ordering::Acquire) {
                tokio::time::sleep(TICK).await;
                continue;
            }
            if self.client.is_none() && !self.connect().await {
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
            let wait = if self.held.is_some() {
                self.renew().await
            } else {
                self.follow().await
            };
            self.sleep_unless_stopping(wait).await;
        }
        self.resign().await;
    }

    async fn sleep_unless_stopping(&self, wait: Duration) {
        let until = Instant::now() + wait;
        loop {
            let now = Instant::now();
            if now >= until || self.shared.stopping.load(Ordering::Acquire) {
                return;
            }
            tokio::time::sleep((until - now).min(TICK)).await;
            if self
                .held
                .as_ref()
                .is_some_and(|held| Instant::now() >= held.deadline)
            {
                return;
            }
        }
    }

    async fn connect(&mut self) -> bool {
        let options = ConnectOptions::new()
            .with_connect_timeout(self.rpc_timeout)
            .with_timeout(self.rpc_timeout);
        let connecting = Client::connect(&self.config.endpoints, Some(options));
        match tokio::time::timeout(self.rpc_timeout, connecting).await {
            Ok(Ok(client)) => {
                self.client = Some(client);
                true
            }
            Ok(Err(error)) => {
                self.shared.record_error("connect", &error);
                false
            }
            Err(elapsed) => {
                self.shared.record_error("connect", &elapsed);
                false
            }
        }
    }

    /// Drops the primary role once the deadline has passed without a renewal.
    fn give_up_if_expired(&mut self) {
        let Some(held) = &self.held else { return };
        if Instant::now() < held.deadline {
            return;
        }
        // The lease may still be alive on the server (answers only delayed); it expires there
        // on its own, and a new campaign takes a new lease and a new epoch.
        self.held = None;
        self.shared.set_role(Role::Backup { primary: None });
    }

    /// One keep-alive, if one is due; returns how long to wait before the next step.
    async fn renew(&mut self) -> Duration {
        let Some(client) = self.client.as_mut() else {
            return RETRY_DELAY;
        };
        let Some(held) = self.held.as_mut() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        if now < held.next_renewal_at {
            return held.next_renewal_at - now;
        }
        if held.stream.is_none() {
            match tokio::time::timeout(self.rpc_timeout, client.lease_keep_alive(held.lease_id))
                .await
            {
                Ok(Ok(stream)) => held.stream = Some(stream),
                Ok(Err(error)) => {
                    self.shared.record_error("keep-alive stream", &error);
                    return RETRY_DELAY;
                }
                Err(elapsed) => {
                    self.shared.record_error("keep-alive stream", &elapsed);
                    return RETRY_DELAY;
                }
            }
        }
        let Some((keeper, stream)) = held.stream.as_mut() else {
            return RETRY_DELAY;
        };
        let sent_at = Instant::now();
        let exchange = async {
            keeper.keep_alive().await?;
            stream.message().await
        };
        let answer = tokio::time::timeout(self.rpc_timeout, exchange).await;
        match answer {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {
                let granted = Duration::from_secs(response.ttl().unsigned_abs());
                let deadline = sent_at + granted - safety_margin(granted);
                // A deadline never moves back because of a renewal: the later send gives a
                // later expiry on the server too.
                held.deadline = held.deadline.max(deadline);
                held.next_renewal_at = sent_at + granted / 3;
                self.shared.publish_deadline(held.deadline);
                self.shared.set_role(Role::Primary {
                    epoch: held.epoch,
                    lease_deadline: held.deadline,
                    lease_granted_at: held.lease_granted_at,
                });
                held.next_renewal_at
                    .saturating_duration_since(Instant::now())
            }
            Ok(Ok(Some(_expired))) => {
                // The server says the lease is gone: stop now, not at the old deadline.
                let now = Instant::now();
                if now < held.deadline {
                    self.shared.publish_deadline(now);
                }
                self.shared
                    .record_error("keep-alive", &"the lease has expired");
                self.held = None;
                self.shared.set_role(Role::Backup { primary: None });
                Duration::ZERO
            }
            Ok(Ok(None)) => {
                held.stream = None;
                self.shared
                    .record_error("keep-alive", &"the server closed the stream");
                RETRY_DELAY
            }
            Ok(Err(error)) => {
                held.stream = None;
                self.shared.record_error("keep-alive", &error);
                RETRY_DELAY
            }
            Err(elapsed) => {
                held.stream = None;
                self.shared.record_error("keep-alive", &elapsed);
                RETRY_DELAY
            }
        }
    }

    /// Reads the leader key; campaigns if there is none. Returns the wait before the next look.
    async fn follow(&mut self) -> Duration {
        let poll_interval = (self.config.lease_ttl / 8).max(Duration::from_millis(50));
        let Some(client) = self.client.as_mut() else {
            return RETRY_DELAY;
        };
        let reading = client.get(self.leader_key.as_bytes(), None);
        let response = match tokio::time::timeout(self.rpc_timeout, reading).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                self.shared.record_error("read leader", &error);
                return RETRY_DELAY;
            }
            Err(elapsed) => {
                self.shared.record_error("read leader", &elapsed);
                return RETRY_DELAY;
            }
        };
        if let Some(leader) = response.kvs().first() {
            let primary = LeaderInfo::from_value(leader.value());
            if primary.is_none() {
                self.shared
                    .record_error("read leader", &"the leader key's value is malformed");
            }
            self.shared.set_role(Role::Backup { primary });
            return poll_interval;
        }
        match self.campaign().await {
            Ok(true) => Duration::ZERO,
            Ok(false) => poll_interval.min(RETRY_DELAY),
            Err(error) => {
                self.shared.record_error("campaign", &error);
                RETRY_DELAY
            }
        }
    }

    /// Tries once to take the leader key; `Ok(true)` if this node is now primary.
    async fn campaign(&mut self) -> Result<bool, CallError> {
        let timeout = self.rpc_timeout;
        let Some(client) = self.client.as_mut() else {
            return Ok(false);
        };
        let epoch_read = call(timeout, client.get(self.epoch_key.as_bytes(), None)).await?;
        let (epoch_previous, epoch_revision) = match epoch_read.kvs().first() {
            None => (0, 0),
            Some(counter) => {
                let text = std::str::from_utf8(counter.value()).unwrap_or("");
                let Ok(value) = text.parse::<u64>() else {
                    return Err(CallError::Malformed("the epoch counter is not a number"));
                };
                (value, counter.mod_revision())
            }
        };
        let Some(epoch) = epoch_previous.checked_add(1) else {
            return Err(CallError::Malformed("the epoch counter is at its maximum"));
        };
        let grant_sent_at = Instant::now();
        let grant = call(
            timeout,
            client.lease_grant(seconds(self.config.lease_ttl), None),
        )
        .await?;
        let lease_granted_at = Instant::now();
        let lease_id = grant.id();
        if grant.ttl() <= 0 {
            return Err(CallError::Malformed(
                "the server granted a lease without a TTL",
            ));
        }
        let lease_ttl = Duration::from_secs(grant.ttl().unsigned_abs());
        let info = LeaderInfo {
            node_id: self.config.node_id,
            client_address: self.config.client_address,
            peer_address: self.config.peer_address,
            epoch,
        };
        let take = Txn::new()
            .when([
                Compare::create_revision(self.leader_key.as_bytes(), CompareOp::Equal, 0),
                Compare::mod_revision(self.epoch_key.as_bytes(), CompareOp::Equal, epoch_revision),
            ])
            .and_then([
                TxnOp::put(
                    self.leader_key.as_bytes(),
                    info.to_value(),
                    Some(PutOptions::new().with_lease(lease_id)),
                ),
                TxnOp::put(self.epoch_key.as_bytes(), epoch.to_string(), None),
            ]);
        let taken = match call(timeout, client.txn(take)).await {
            Ok(response) => response.succeeded(),
            Err(error) => {
                // Whether the transaction applied is unknown; revoking the lease deletes the
                // key if it did, and the next look at the leader key starts over.
                let _ = call(timeout, client.lease_revoke(lease_id)).await;
                return Err(error);
            }
        };
        if !taken {
            // Another node won, or the counter moved; give the lease back and look again.
            let _ = call(timeout, client.lease_revoke(lease_id)).await;
            return Ok(false);
        }
        let deadline = grant_sent_at + lease_ttl - safety_margin(lease_ttl);
        let stream = call(timeout, client.lease_keep_alive(lease_id)).await.ok();
        self.held = Some(Held {
            lease_id,
            epoch,
            lease_granted_at,
            deadline,
            next_renewal_at: grant_sent_at + lease_ttl / 3,
            stream,
        });
        self.shared.publish_deadline(deadline);
        self.shared.set_role(Role::Primary {
            epoch,
            lease_deadline: deadline,
            lease_granted_at,
        });
        Ok(true)
    }

    /// Gives the lease back so a backup can take over at once.
    async fn resign(&mut self) {
        let Some(held) = self.held.take() else { return };
        self.shared.set_role(Role::Backup { primary: None });
        let Some(client) = self.client.as_mut() else {
            return;
        };
        if let Err(error) = call(self.rpc_timeout, client.lease_revoke(held.lease_id)).await {
            // The lease then expires on its own within its TTL.
            self.shared.record_error("resign", &error);
        }
    }
}

/// Why one etcd call failed.
#[derive(Debug)]
enum CallError {
    Etcd(etcd_client::Error),
    Timeout,
    Malformed(&'static str),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Etcd(error) => write!(f, "{error}"),
            CallError::Timeout => write!(f, "no answer in time"),
            CallError::Malformed(what) => write!(f, "{what}"),
        }
    }
}

async fn call<T>(
    timeout: Duration,
    future: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(CallError::Etcd(error)),
        Err(_elapsed) => Err(CallError::Timeout),
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
    fn margin_leaves_most_of_the_lease() {
        for seconds in 1..=60 {
            let ttl = Duration::from_secs(seconds);
            assert!(safety_margin(ttl) < ttl / 2, "{seconds} s");
        }
    }
}
