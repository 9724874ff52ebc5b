//! The leadership thread: its loop and every etcd call it makes (docs/replication.md,
//! "Leadership"). It runs on the thread [`Leadership::start`](super::Leadership::start) spawns,
//! inside that thread's current-thread tokio runtime, and talks to the caller only through
//! [`Shared`].
//!
//! Invariants (besides those listed in `mod.rs`):
//! - every etcd call has a timeout (`rpc_timeout`, well within a TTL), and a failure is counted
//!   and kept in `Shared` for diagnostics, then retried; nothing here panics on etcd's behalf;
//! - a backup's decisions are taken on a read of the leader key, never on a watch event; the
//!   watch only shortens the wait before that read, and the poll goes on beside it;
//! - the campaign's transaction creates the leader key only if it does not exist and the epoch
//!   counter is unchanged since the round was read, whatever the candidacies said.
//!
//! Does not decide who may take over (`candidacy.rs` does) and does not interpret a watch's
//! events (`watch.rs` only says that the key changed).

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp,
};

use super::candidacy::{decide, CandidacyValue};
use super::watch::LeaderWatch;
use super::{
    candidacy_window, lock, poll_interval, required_candidacies, safety_margin, CandidacyVerdict,
    Candidate, LeaderInfo, LeadershipConfig, Role, Shared, GROUP_SIZE_MAX,
};

/// How often the leadership thread wakes up to look at the stop flag and the deadline.
const TICK: Duration = Duration::from_millis(20);
/// Pause before retrying after an etcd call failed.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// Most candidacy keys read in one look. Twice the largest group, because the candidacy of a
/// node that left the group lingers until its lease expires. Reading fewer than exist is safe
/// (any `required` candidacies of distinct nodes include one that holds every acknowledged
/// record); it can only delay a takeover.
const CANDIDACIES_READ_MAX: i64 = 2 * GROUP_SIZE_MAX as i64;

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

/// One round of the election: the epoch counter as read before standing.
#[derive(Clone, Copy, Debug)]
struct Round {
    /// The counter's value (0 when absent): the last epoch handed out.
    epoch: u64,
    /// The counter's modification revision (0 when absent); the campaign's transaction requires
    /// it unchanged.
    revision: i64,
}

/// The leadership thread's state.
pub(super) struct Node<'a> {
    config: LeadershipConfig,
    shared: &'a Shared,
    leader_key: String,
    epoch_key: String,
    /// `GROUP/candidate/`: the prefix of every candidacy key.
    candidate_prefix: String,
    /// `GROUP/candidate/NODE_ID`: this node's candidacy.
    candidate_key: String,
    required_count: u32,
    candidacy_window: Duration,
    rpc_timeout: Duration,
    client: Option<Client>,
    held: Option<Held>,
    /// The lease this node's candidacy key is attached to, while it has one.
    candidacy_lease_id: Option<i64>,
    /// A backup's watch on the leader key; `None` while primary, before the first read and
    /// after the watch failed (a new one is opened at the next read).
    watch: Option<LeaderWatch>,
    /// The leader key's modification revision at the last read (0: absent); `None` before the
    /// first read. Lets a poll notice a change the watch did not report.
    leader_revision_seen: Option<i64>,
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl<'a> Node<'a> {
    pub(super) fn new(config: LeadershipConfig, shared: &'a Shared) -> Node<'a> {
        let leader_key = format!("{}/leader", config.group_key);
        let epoch_key = format!("{}/epoch", config.group_key);
        let candidate_prefix = format!("{}/candidate/", config.group_key);
        let candidate_key = format!("{candidate_prefix}{}", config.node_id);
        let required_count = required_candidacies(config.group_size, config.ack_backups);
        assert!(required_count >= 1, "required {required_count}");
        assert!(
            required_count <= config.group_size,
            "required {required_count}"
        );
        let candidacy_window = candidacy_window(config.lease_ttl);
        // Every call must finish well within a TTL, or the node would be late to notice loss.
        let rpc_timeout = (config.lease_ttl / 4).max(Duration::from_millis(250));
        Node {
            config,
            shared,
            leader_key,
            epoch_key,
            candidate_prefix,
            candidate_key,
            required_count,
            candidacy_window,
            rpc_timeout,
            client: None,
            held: None,
            candidacy_lease_id: None,
            watch: None,
            leader_revision_seen: None,
        }
    }

    pub(super) async fn run(&mut self) {
        // Whether the wait before the coming read of the leader key ran its full length with a
        // watch open that reported nothing.
        let mut watch_stayed_quiet = false;
        while !self.shared.stopping.load(Ordering::Acquire) {
            self.give_up_if_expired();
            if self.shared.renewal_paused.load(Ordering::Acquire) {
                watch_stayed_quiet = false;
                tokio::time::sleep(TICK).await;
                continue;
            }
            if self.client.is_none() && !self.connect().await {
                watch_stayed_quiet = false;
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
            if self.held.is_some() {
                // A primary learns of its loss from its own lease, not from the key.
                self.watch = None;
                self.leader_revision_seen = None;
                watch_stayed_quiet = false;
                let wait = self.renew().await;
                self.sleep_unless_stopping(wait).await;
            } else {
                let wait = self.follow(watch_stayed_quiet).await;
                watch_stayed_quiet = self.wait_as_backup(wait).await;
            }
        }
        self.resign().await;
    }

    /// Waits `wait`, or less if the node is stopping or the watch reports a change of the
    /// leader key. Returns whether a watch was open for the whole wait, which ran its full
    /// length, and reported nothing.
    async fn wait_as_backup(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut quiet = wait > Duration::ZERO && self.watch.is_some();
        loop {
            let now = Instant::now();
            if self.shared.stopping.load(Ordering::Acquire) {
                return false;
            }
            if now >= until {
                return quiet;
            }
            let slice = (until - now).min(TICK);
            let Some(watch) = self.watch.as_mut() else {
                tokio::time::sleep(slice).await;
                continue;
            };
            match watch.changed_within(slice).await {
                Ok(true) => return false,
                Ok(false) => {}
                Err(error) => {
                    // The poll carries on alone until the next read opens a new watch.
                    self.watch = None;
                    quiet = false;
                    self.shared.record_error("watch leader", &error);
                }
            }
        }
    }

    /// Opens a watch on the leader key if none is open, starting after `read_revision` (the
    /// store revision of the read just made). Best effort: on failure the poll goes on alone.
    async fn watch_leader(&mut self, read_revision: i64) {
        if self.watch.is_some() {
            return;
        }
        let Some(client) = self.client.as_mut() else {
            return;
        };
        match LeaderWatch::open(client, &self.leader_key, read_revision, self.rpc_timeout).await {
            Ok(watch) => {
                self.watch = Some(watch);
                self.shared
                    .watches_opened_count
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => self.shared.record_error("watch leader", &error),
        }
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

    /// Reads the leader key and watches it; if there is none, stands as a candidate (in a group
    /// of more than one) and campaigns if the candidacies allow it. Returns the wait before the
    /// next look. `watch_stayed_quiet`: the watch reported nothing since the last read.
    async fn follow(&mut self, watch_stayed_quiet: bool) -> Duration {
        let poll_interval = poll_interval(self.config.lease_ttl);
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
        let read_revision = response.header().map_or(0, |header| header.revision());
        let leader_revision = response
            .kvs()
            .first()
            .map_or(0, |leader| leader.mod_revision());
        if watch_stayed_quiet
            && self
                .leader_revision_seen
                .is_some_and(|seen| seen != leader_revision)
        {
            // The watch covers every change since the last read, yet said nothing: it is
            // broken or silent (or the report is a few milliseconds late). Watch afresh.
            self.watch = None;
            self.shared.record_error(
                "watch leader",
                &"the watch missed a change of the leader key",
            );
        }
        self.leader_revision_seen = Some(leader_revision);
        self.watch_leader(read_revision).await;
        if let Some(leader) = response.kvs().first() {
            let primary = LeaderInfo::from_value(leader.value());
            if primary.is_none() {
                self.shared
                    .record_error("read leader", &"the leader key's value is malformed");
            }
            self.shared.set_role(Role::Backup { primary });
            // A candidacy of a round that is over can never count again; remove it now rather
            // than when its lease expires.
            self.retire_candidacy().await;
            return poll_interval;
        }
        // Nobody leads: say so while the candidacies are weighed, which can take several looks.
        self.shared.set_role(Role::Backup { primary: None });
        let round = match self.read_round().await {
            Ok(round) => round,
            Err(error) => {
                self.shared.record_error("read epoch", &error);
                return RETRY_DELAY;
            }
        };
        if self.config.group_size > 1 {
            match self.stand(round).await {
                Ok(true) => {}
                Ok(false) => return poll_interval,
                Err(error) => {
                    self.shared.record_error("candidacy", &error);
                    return RETRY_DELAY;
                }
            }
        }
        match self.campaign(round).await {
            Ok(true) => {
                self.retire_candidacy().await;
                Duration::ZERO
            }
            Ok(false) => poll_interval.min(RETRY_DELAY),
            Err(error) => {
                self.shared.record_error("campaign", &error);
                RETRY_DELAY
            }
        }
    }

    /// Reads the epoch counter: the round a candidacy and a campaign are for.
    async fn read_round(&mut self) -> Result<Round, CallError> {
        let Some(client) = self.client.as_mut() else {
            return Err(CallError::NotConnected);
        };
        let epoch_read = call(
            self.rpc_timeout,
            client.get(self.epoch_key.as_bytes(), None),
        )
        .await?;
        match epoch_read.kvs().first() {
            None => Ok(Round {
                epoch: 0,
                revision: 0,
            }),
            Some(counter) => {
                let text = std::str::from_utf8(counter.value()).unwrap_or("");
                let Ok(epoch) = text.parse::<u64>() else {
                    return Err(CallError::Malformed("the epoch counter is not a number"));
                };
                Ok(Round {
                    epoch,
                    revision: counter.mod_revision(),
                })
            }
        }
    }

    /// Writes this node's candidacy for `round`, waits the candidacy window, reads every
    /// candidacy and decides; `Ok(true)` if this node may campaign. Publishes the outcome.
    ///
    /// The candidacy key is attached to a lease of the configured TTL that is kept alive once
    /// per look and revoked when the node wins, sees a leader or stops; a node that dies leaves
    /// a candidacy that disappears within a TTL, so it cannot block a takeover for longer.
    async fn stand(&mut self, round: Round) -> Result<bool, CallError> {
        let timeout = self.rpc_timeout;
        let ttl = self.config.lease_ttl;
        // Read after the leader key was seen gone, hence after the old primary's deadline: every
        // record it acknowledged is already counted in the positions of the backups holding it.
        let own = CandidacyValue {
            round: round.epoch,
            candidate: Candidate {
                node_id: self.config.node_id,
                position: (self.config.position)(),
            },
        };
        let Some(client) = self.client.as_mut() else {
            return Err(CallError::NotConnected);
        };
        if let Some(lease_id) = self.candidacy_lease_id {
            // Opening a keep-alive stream sends one keep-alive and fails if the lease is gone;
            // the stream is dropped at once. On any failure a fresh lease replaces this one, and
            // the old one (if it is still alive) expires on its own with no key attached.
            if call(timeout, client.lease_keep_alive(lease_id))
                .await
                .is_err()
            {
                self.candidacy_lease_id = None;
            }
        }
        let lease_id = match self.candidacy_lease_id {
            Some(lease_id) => lease_id,
            None => {
                let grant = call(timeout, client.lease_grant(seconds(ttl), None)).await?;
                if grant.ttl() <= 0 {
                    return Err(CallError::Malformed(
                        "the server granted a lease without a TTL",
                    ));
                }
                self.candidacy_lease_id = Some(grant.id());
                grant.id()
            }
        };
        let options = PutOptions::new().with_lease(lease_id);
        let writing = client.put(self.candidate_key.as_bytes(), own.to_value(), Some(options));
        call(timeout, writing).await?;
        self.sleep_unless_stopping(self.candidacy_window).await;
        if self.shared.stopping.load(Ordering::Acquire)
            || self.shared.renewal_paused.load(Ordering::Acquire)
        {
            return Ok(false);
        }
        let Some(client) = self.client.as_mut() else {
            return Err(CallError::NotConnected);
        };
        let options = GetOptions::new()
            .with_prefix()
            .with_limit(CANDIDACIES_READ_MAX);
        let read = call(
            timeout,
            client.get(self.candidate_prefix.as_bytes(), Some(options)),
        )
        .await?;
        let mut malformed_count: u32 = 0;
        let mut candidacies = Vec::with_capacity(read.kvs().len());
        for pair in read.kvs() {
            let key_node_id = pair
                .key()
                .strip_prefix(self.candidate_prefix.as_bytes())
                .unwrap_or(&[]);
            match CandidacyValue::from_value(key_node_id, pair.value()) {
                Some(value) => candidacies.push(value),
                None => malformed_count += 1,
            }
        }
        if malformed_count > 0 {
            // Not counted: that can delay a takeover or pass over a better node, but never lets
            // a node win without a quorum, so no acknowledged record is lost.
            self.shared
                .record_error("candidacy", &"a candidacy key's value is malformed");
        }
        let outcome = decide(own, self.required_count, candidacies);
        *lock(&self.shared.last_candidacy) = Some(outcome);
        Ok(outcome.verdict == CandidacyVerdict::Campaigned)
    }

    /// Revokes this node's candidacy lease, which deletes its candidacy key. Best effort: if it
    /// fails, the key disappears when the lease expires (within a TTL), and a stale candidacy
    /// only ever counts in its own round.
    async fn retire_candidacy(&mut self) {
        let Some(lease_id) = self.candidacy_lease_id.take() else {
            return;
        };
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let _ = call(self.rpc_timeout, client.lease_revoke(lease_id)).await;
    }

    /// Tries once to take the leader key for the epoch after `round`; `Ok(true)` if this node is
    /// now primary. Fails (`Ok(false)`) if the counter moved since `round` was read.
    async fn campaign(&mut self, round: Round) -> Result<bool, CallError> {
        let timeout = self.rpc_timeout;
        let Some(client) = self.client.as_mut() else {
            return Ok(false);
        };
        let epoch_revision = round.revision;
        let Some(epoch) = round.epoch.checked_add(1) else {
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

    /// Gives the lease back so a backup can take over at once, and withdraws any candidacy.
    async fn resign(&mut self) {
        self.retire_candidacy().await;
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
    NotConnected,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Etcd(error) => write!(f, "{error}"),
            CallError::Timeout => write!(f, "no answer in time"),
            CallError::Malformed(what) => write!(f, "{what}"),
            CallError::NotConnected => write!(f, "not connected to etcd"),
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
