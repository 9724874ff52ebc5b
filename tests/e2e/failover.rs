//! Replication groups of real `clearline start` processes and a real etcd on loopback
//! (docs/replication.md): kill -9 of the primary under load, SIGSTOP of a backup and of the
//! primary, etcd stopped, a backup killed while it catches up from the journal and while it
//! catches up from a checkpoint, a new node catching up from a checkpoint without a history
//! store, a partitioned primary's unacknowledged records dropped when it rejoins (or its data
//! set aside when its history store took some), and `clearline benchmark --group-size`. Every
//! test name contains `failover`, so
//! `cargo nextest run failover` runs them alone.
//!
//! `CLEARLINE_FAILOVER_KILLS` sets how many primaries the kill test kills in a row (default 5;
//! the figures in docs/replication.md come from 50).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clearline_engine::{CreateTransferStatus, Operation, State};
use clearline_net::client::RedirectPolicy;
use clearline_net::{Client, FrameStatus};
use clearline_test_support::etcd::{free_port, Etcd};

use crate::support::{
    account, clearline_ok, create_all, data_dir, encode_accounts, encode_transfers,
    lookup_accounts, lookup_transfers, results, transfer, Options, Server, LEDGER,
};

/// Accounts the load moves money between.
const ACCOUNTS: u128 = 16;
/// Transfers per request of the load.
const BATCH: u128 = 10;
/// The lease every test group runs with (seconds).
const LEASE_TTL_SECONDS: u64 = 2;
/// The longest a failover may take (from the kill to a backup answering as primary).
const FAILOVER_MAX: Duration = Duration::from_secs(3);
/// How long a test waits for a group to settle (a primary, a caught-up backup).
const SETTLE_MAX: Duration = Duration::from_secs(30);

/// One group at a time: each is four processes, and their timing (leases, failovers) is what
/// the tests measure, so two groups must not share the machine's cores.
static ONE_GROUP_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_group_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_GROUP_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn kills() -> usize {
    std::env::var("CLEARLINE_FAILOVER_KILLS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(5)
}

/// One node: its data directory, its start options and the process, when running.
struct Node {
    id: u64,
    data: tempfile::TempDir,
    options: Options,
    addr: SocketAddr,
    server: Option<Server>,
}

impl Node {
    fn start(&mut self) {
        assert!(self.server.is_none(), "node {} runs already", self.id);
        self.server = Some(Server::start(self.data.path(), &self.options));
    }

    fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    fn pid(&self) -> u32 {
        self.server.as_ref().expect("a running node").pid()
    }

    fn output(&self) -> String {
        self.server
            .as_ref()
            .map_or_else(String::new, Server::output)
    }

    /// A client of this node only: redirects are not followed.
    fn client(&self) -> Option<Client> {
        let client = Client::connect(self.addr).ok()?;
        client.set_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut client = client;
        client.set_redirect_policy(RedirectPolicy::disabled());
        Some(client)
    }

    /// Whether this node answers a read as the primary (a backup answers `not_primary`).
    fn is_primary(&self) -> bool {
        if self.server.is_none() {
            return false;
        }
        let Some(mut client) = self.client() else {
            return false;
        };
        matches!(
            client.request(Operation::GetState, &[0; 16]),
            Ok(reply) if reply.status() == FrameStatus::Ok
        )
    }

    /// The node's state, read on it even when it is a backup.
    fn state(&self) -> Option<State> {
        let mut client = self.client()?;
        client.set_read_from_backup(true);
        client.get_state().ok()
    }
}

/// etcd and the nodes of one group.
struct Group {
    etcd: Etcd,
    nodes: Vec<Node>,
}

impl Group {
    /// `size` nodes, all started, with `ack_backups`; waits for a primary.
    fn start(size: u64, ack_backups: u32) -> Group {
        let mut group = Group::new(size, ack_backups);
        for node in &mut group.nodes {
            node.start();
        }
        group.primary();
        group
    }

    /// The group with no node started yet.
    fn new(size: u64, ack_backups: u32) -> Group {
        let etcd = Etcd::start();
        let nodes = (1..=size)
            .map(|id| {
                let port = free_port();
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
                let options = Options::new("data")
                    .flag("addr", addr)
                    .flag("etcd", &etcd.client_url)
                    .flag("node-id", id)
                    .flag("peer-addr", "127.0.0.1:0")
                    .flag("group", "failover")
                    .flag("group-size", size)
                    .flag("ack-backups", ack_backups)
                    .flag("lease-ttl-seconds", LEASE_TTL_SECONDS);
                Node {
                    id,
                    data: data_dir(),
                    options,
                    addr,
                    server: None,
                }
            })
            .collect();
        Group { etcd, nodes }
    }

    /// Small segments and checkpoints, so a primary retires its first records quickly.
    fn with_small_journals(mut self) -> Group {
        for node in &mut self.nodes {
            node.options = node
                .options
                .clone()
                .flag("segment-size", 2 << 20)
                .flag("checkpoint-interval-mib", 1);
        }
        self
    }

    /// The index of the primary, waiting for one.
    fn primary(&self) -> usize {
        self.primary_among(|_| true)
    }

    /// The index of the primary among the nodes `eligible` accepts, waiting for one.
    fn primary_among(&self, eligible: impl Fn(usize) -> bool) -> usize {
        let started = Instant::now();
        loop {
            let found = (0..self.nodes.len())
                .find(|&index| eligible(index) && self.nodes[index].is_primary());
            if let Some(index) = found {
                return index;
            }
            assert!(
                started.elapsed() < SETTLE_MAX,
                "no primary within {SETTLE_MAX:?}; outputs:\n{}",
                self.outputs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client that follows redirects, connected to any running node.
    fn client(&self) -> Client {
        for node in self.nodes.iter().filter(|node| node.server.is_some()) {
            if let Ok(client) = Client::connect(node.addr) {
                client
                    .set_timeout(Some(crate::support::SOCKET_TIMEOUT))
                    .expect("timeouts");
                return client;
            }
        }
        panic!("no node accepts connections; outputs:\n{}", self.outputs());
    }

    fn outputs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- node {}\n{}", node.id, node.output()))
            .collect()
    }

    /// Sends the batch from `first` until a node acknowledges it (redirects followed, nodes
    /// restarting or catching up meanwhile).
    fn write_eventually(&self, first: u128) {
        let started = Instant::now();
        while send_batch(&mut self.client(), first).is_err() {
            assert!(
                started.elapsed() < SETTLE_MAX,
                "batch {first} never acknowledged:\n{}",
                self.outputs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Writes batches from `first` on through `client` until the primary (node `primary`)
    /// has retired its first journal segment; returns how many batches it wrote.
    fn write_until_retired(&self, primary: usize, client: &mut Client, first: u128) -> u128 {
        let first_segment = self.nodes[primary]
            .data
            .path()
            .join("journal/segment-0000000000000000.log");
        let mut batch = 0;
        while first_segment.exists() {
            send_batch(client, first + batch * BATCH).expect("acknowledged");
            batch += 1;
            assert!(
                batch < 100_000,
                "the primary never retired its first segment"
            );
        }
        batch
    }

    /// Cuts the primary `old` off (SIGSTOP), starts its stopped `backups` again, waits for one
    /// of them to lead, lets `old` go on (SIGCONT) and waits until every node agrees.
    fn rejoin_after_partition(&mut self, old: usize, backups: &[usize]) {
        signal(self.nodes[old].pid(), "STOP");
        for &backup in backups {
            self.nodes[backup].start();
        }
        self.primary_among(|index| index != old);
        signal(self.nodes[old].pid(), "CONT");
        self.wait_converged();
    }

    /// Waits until node `index` has applied every write the primary had applied when this
    /// was called (its last write timestamp reaches the primary's).
    fn wait_caught_up(&self, index: usize) {
        let started = Instant::now();
        let target = loop {
            if let Some(state) = self.nodes[self.primary()].state() {
                break state.timestamp;
            }
            assert!(
                started.elapsed() < SETTLE_MAX,
                "the primary's state cannot be read"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        while self.nodes[index]
            .state()
            .is_none_or(|state| state.timestamp < target)
        {
            assert!(
                started.elapsed() < SETTLE_MAX,
                "node {} did not catch up within {SETTLE_MAX:?}; outputs:\n{}",
                self.nodes[index].id,
                self.outputs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running node's state hash equals the primary's.
    fn wait_converged(&self) {
        let started = Instant::now();
        loop {
            let primary = &self.nodes[self.primary()];
            let expected = primary.state().map(|state| state.state_hash);
            let all = self
                .nodes
                .iter()
                .filter(|node| node.server.is_some())
                .all(|node| node.state().map(|state| state.state_hash) == expected);
            if expected.is_some() && all {
                return;
            }
            assert!(
                started.elapsed() < SETTLE_MAX,
                "the backups did not reach the primary's state within {SETTLE_MAX:?}; \
                 outputs:\n{}",
                self.outputs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn create_accounts(client: &mut Client) {
    let accounts: Vec<_> = (1..=ACCOUNTS).map(|id| account(id, LEDGER, 0)).collect();
    create_all(
        client,
        Operation::CreateAccounts,
        &encode_accounts(&accounts),
    );
}

/// Transfers `first..first + BATCH`; whether every one was created or exists (acknowledged).
fn send_batch(client: &mut Client, first: u128) -> Result<(), String> {
    let events: Vec<_> = (first..first + BATCH)
        .map(|id| transfer(id, 1 + id % ACCOUNTS, 1 + (id + 3) % ACCOUNTS, 1, LEDGER))
        .collect();
    let reply = client
        .request(Operation::CreateTransfers, &encode_transfers(&events))
        .map_err(|error| error.to_string())?;
    if reply.status() != FrameStatus::Ok {
        return Err(format!("status {}", reply.status()));
    }
    let all_done = results(&reply.body).iter().all(|result| {
        result.status == CreateTransferStatus::Created as u32
            || result.status == CreateTransferStatus::Exists as u32
    });
    if all_done {
        Ok(())
    } else {
        Err("a transfer failed".to_string())
    }
}

/// Load on a thread: batches of transfers, each retried (same ids) until acknowledged.
struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<(u128, Instant)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addrs: Vec<SocketAddr>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let acknowledged = Arc::clone(&acknowledged);
            std::thread::spawn(move || {
                let mut next = 1_000u128;
                let mut client: Option<Client> = None;
                let mut turn = 0usize;
                while !stop.load(Ordering::Acquire) {
                    let current = match client.as_mut() {
                        Some(client) => client,
                        None => {
                            turn += 1;
                            let addr = addrs[turn % addrs.len()];
                            match Client::connect(addr) {
                                Ok(mut connected) => {
                                    let _ = connected.set_timeout(Some(Duration::from_secs(2)));
                                    connected.set_redirect_policy(RedirectPolicy {
                                        wait_max: Duration::from_millis(100),
                                        ..RedirectPolicy::default()
                                    });
                                    client.insert(connected)
                                }
                                Err(_) => {
                                    std::thread::sleep(Duration::from_millis(10));
                                    continue;
                                }
                            }
                        }
                    };
                    match send_batch(current, next) {
                        Ok(()) => {
                            let now = Instant::now();
                            let mut acknowledged = acknowledged.lock().expect("lock");
                            acknowledged.extend((next..next + BATCH).map(|id| (id, now)));
                            next += BATCH;
                        }
                        Err(_) => {
                            client = None;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            })
        };
        Load {
            stop,
            acknowledged,
            thread: Some(thread),
        }
    }

    /// The transfers acknowledged so far.
    fn acknowledged(&self) -> Vec<u128> {
        let acknowledged = self.acknowledged.lock().expect("lock");
        acknowledged.iter().map(|(id, _)| *id).collect()
    }

    fn count(&self) -> usize {
        self.acknowledged.lock().expect("lock").len()
    }

    /// The first acknowledgement at or after `since`.
    fn first_after(&self, since: Instant, wait: Duration) -> Option<Instant> {
        let started = Instant::now();
        loop {
            let found = self
                .acknowledged
                .lock()
                .expect("lock")
                .iter()
                .rev()
                .take_while(|(_, at)| *at >= since)
                .last()
                .map(|(_, at)| *at);
            if found.is_some() || started.elapsed() > wait {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_for(&self, more: usize) {
        let target = self.count() + more;
        let started = Instant::now();
        while self.count() < target {
            assert!(started.elapsed() < SETTLE_MAX, "the load made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(mut self) -> Vec<u128> {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the load thread");
        }
        self.acknowledged()
    }
}

/// Every acknowledged transfer is on the primary, and debits equal credits.
fn check_ledger(group: &Group, acknowledged: &[u128]) {
    let mut client = group.client();
    let found = lookup_transfers(&mut client, acknowledged);
    assert_eq!(
        found.len(),
        acknowledged.len(),
        "every acknowledged transfer is on the primary"
    );
    let ids: Vec<u128> = (1..=ACCOUNTS).collect();
    let accounts = lookup_accounts(&mut client, &ids);
    let debits: u128 = accounts.iter().map(|account| account.debits_posted).sum();
    let credits: u128 = accounts.iter().map(|account| account.credits_posted).sum();
    assert_eq!(debits, credits, "debits equal credits");
    assert!(
        debits >= acknowledged.len() as u128,
        "every acknowledged transfer counted"
    );
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

#[test]
fn failover_after_kill_9_of_the_primary_under_load() {
    let _serial = one_group_at_a_time();
    let mut group = Group::start(3, 1);
    create_accounts(&mut group.client());
    let load = Load::start(group.nodes.iter().map(|node| node.addr).collect());
    let mut failovers = Vec::new();
    for round in 0..kills() {
        load.wait_for(50);
        let primary = group.primary();
        group.nodes[primary].kill();
        let killed = Instant::now();
        // A backup is primary once it answers a read as one.
        loop {
            if (0..group.nodes.len()).any(|index| group.nodes[index].is_primary()) {
                break;
            }
            assert!(
                killed.elapsed() < SETTLE_MAX,
                "round {round}: no new primary; outputs:\n{}",
                group.outputs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        failovers.push(killed.elapsed());
        load.first_after(killed, SETTLE_MAX).unwrap_or_else(|| {
            panic!(
                "round {round}: no write acknowledged after the kill; outputs:\n{}",
                group.outputs()
            )
        });
        // The old primary rejoins as a backup and catches up; every write acknowledged so far
        // is there, and debits equal credits.
        group.nodes[primary].start();
        group.wait_caught_up(primary);
        check_ledger(&group, &load.acknowledged());
    }
    let acknowledged = load.finish();
    failovers.sort();
    let (p50, max) = (percentile(&failovers, 0.5), failovers[failovers.len() - 1]);
    println!(
        "failover: {} kills, p50 {:.3} s, max {:.3} s, {} transfers acknowledged",
        failovers.len(),
        p50.as_secs_f64(),
        max.as_secs_f64(),
        acknowledged.len()
    );
    check_ledger(&group, &acknowledged);
    group.wait_converged();
    assert!(
        max <= FAILOVER_MAX,
        "a failover took {max:?} (p50 {p50:?}), over {FAILOVER_MAX:?}"
    );
}

#[test]
fn failover_not_needed_when_a_backup_is_stopped() {
    let _serial = one_group_at_a_time();
    let group = Group::start(3, 1);
    let mut client = group.client();
    create_accounts(&mut client);
    let primary = group.primary();
    let backup = (primary + 1) % 3;
    signal(group.nodes[backup].pid(), "STOP");
    // With K = 1 the other backup's acknowledgements are enough.
    for batch in 0..50 {
        let sent = Instant::now();
        send_batch(&mut client, 10_000 + batch * BATCH).expect("acknowledged");
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "a write waited {:?} with one backup stopped",
            sent.elapsed()
        );
    }
    signal(group.nodes[backup].pid(), "CONT");
    group.wait_converged();
    // A backup serves a read only when asked to, and says which sequence it reflects.
    let mut on_backup = group.nodes[backup].client().expect("connect to the backup");
    let refused = on_backup
        .request(Operation::GetState, &[0; 16])
        .expect("a reply");
    assert_eq!(refused.status(), FrameStatus::NotPrimary);
    assert_eq!(
        refused
            .redirect()
            .and_then(|redirect| redirect.primary_address()),
        Some(group.nodes[primary].addr),
        "the redirect names the primary"
    );
    on_backup.set_read_from_backup(true);
    let served = on_backup
        .request(Operation::GetState, &[0; 16])
        .expect("a reply");
    assert_eq!(served.status(), FrameStatus::Ok);
    assert!(
        served.sequence() > 50,
        "the read reflects sequence {}",
        served.sequence()
    );
    let one = encode_transfers(&[transfer(99_999, 1, 2, 1, LEDGER)]);
    let writes = on_backup.request(Operation::CreateTransfers, &one);
    assert!(
        matches!(writes, Ok(reply) if reply.status() == FrameStatus::NotPrimary),
        "a write with the flag still goes to the primary"
    );
}

#[test]
fn failover_fences_a_primary_stopped_past_its_lease() {
    let _serial = one_group_at_a_time();
    let mut group = Group::start(3, 1);
    create_accounts(&mut group.client());
    let old = group.primary();
    let mut direct = group.nodes[old].client().expect("connect to the primary");
    send_batch(&mut direct, 20_000).expect("acknowledged before the stop");
    signal(group.nodes[old].pid(), "STOP");
    let new = group.primary_among(|index| index != old);
    signal(group.nodes[old].pid(), "CONT");
    // Sent after it woke: never acknowledged by the deposed primary.
    let after = send_batch(&mut direct, 20_100);
    assert!(
        after.is_err(),
        "the deposed primary acknowledged a write after waking"
    );
    // It starts again as a backup and redirects its clients to the new primary.
    let started = Instant::now();
    loop {
        let redirected = group.nodes[old].client().and_then(|mut client| {
            let reply = client.request(Operation::GetState, &[0; 16]).ok()?;
            reply.redirect()
        });
        if let Some(redirect) = redirected {
            if redirect.primary_address() == Some(group.nodes[new].addr) {
                break;
            }
        }
        assert!(
            started.elapsed() < SETTLE_MAX,
            "the old primary does not redirect to the new one:\n{}",
            group.outputs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // It may start again once more, to drop what it wrote after it woke: ask until a node
    // answers (the first batch is there: `exists`).
    group.write_eventually(20_000);
    group.wait_converged();
    group.nodes[old].kill();
}

#[test]
fn failover_stops_acknowledging_when_etcd_stops() {
    let _serial = one_group_at_a_time();
    let mut group = Group::start(3, 1);
    create_accounts(&mut group.client());
    let primary = group.primary();
    let mut direct = group.nodes[primary]
        .client()
        .expect("connect to the primary");
    send_batch(&mut direct, 30_000).expect("acknowledged");
    group.etcd.stop();
    let stopped = Instant::now();
    // The lease still holds for a while: the primary keeps serving.
    send_batch(&mut direct, 30_100).expect("acknowledged while the lease may still hold");
    assert!(stopped.elapsed() < Duration::from_secs(1));
    // Past the lease, nothing is acknowledged any more.
    std::thread::sleep(Duration::from_secs(LEASE_TTL_SECONDS + 1));
    let mut id = 30_200;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let mut client = match group.nodes[primary].client() {
            Some(client) => client,
            None => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        assert!(
            send_batch(&mut client, id).is_err(),
            "a write was acknowledged {:?} after etcd stopped",
            stopped.elapsed()
        );
        id += BATCH;
        std::thread::sleep(Duration::from_millis(100));
    }
    // With etcd back, the group serves again.
    group.etcd.restart();
    group.write_eventually(30_000);
    group.nodes[primary].kill();
}

#[test]
fn failover_backup_killed_while_catching_up_resumes() {
    let _serial = one_group_at_a_time();
    let mut group = Group::new(3, 1);
    group.nodes[0].start();
    group.nodes[1].start();
    let mut client = group.client();
    create_accounts(&mut client);
    for batch in 0..300 {
        send_batch(&mut client, 40_000 + batch * BATCH).expect("acknowledged");
    }
    let primary = group.primary();
    let sequence_of = |output: &str| -> Vec<u64> {
        output
            .lines()
            .filter_map(|line| line.split("backup 3 follows from sequence ").nth(1))
            .filter_map(|rest| rest.trim().parse().ok())
            .collect()
    };
    // Node 3 starts empty and catches up from the first record; it is killed on the way.
    group.nodes[2].start();
    let started = Instant::now();
    while sequence_of(&group.nodes[primary].output()).is_empty() {
        assert!(
            started.elapsed() < SETTLE_MAX,
            "node 3 never followed:\n{}",
            group.outputs()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(20));
    group.nodes[2].kill();
    group.nodes[2].start();
    group.wait_converged();
    let follows = sequence_of(&group.nodes[primary].output());
    assert!(
        follows.len() >= 2,
        "node 3 connected twice: {follows:?}\n{}",
        group.outputs()
    );
}

#[test]
fn failover_drops_a_partitioned_primarys_unacknowledged_records() {
    let _serial = one_group_at_a_time();
    let mut group = Group::start(3, 1);
    let mut client = group.client();
    create_accounts(&mut client);
    send_batch(&mut client, 50_000).expect("acknowledged");
    let old = group.primary();
    let backups: Vec<usize> = (0..3).filter(|&index| index != old).collect();
    // The primary loses its backups: killed, so nothing in flight reaches them later.
    for &backup in &backups {
        group.nodes[backup].kill();
    }
    // The primary journals these but no backup acknowledges them.
    let mut direct = group.nodes[old].client().expect("connect to the primary");
    direct
        .set_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    assert!(
        send_batch(&mut direct, 50_100).is_err(),
        "acknowledged without a backup"
    );
    // Then it is cut off itself, and the backups come back without it.
    group.rejoin_after_partition(old, &backups);
    let mut client = group.client();
    assert_eq!(
        lookup_transfers(&mut client, &(50_000..50_000 + BATCH).collect::<Vec<_>>()).len(),
        BATCH as usize,
        "the acknowledged batch is there"
    );
    assert!(
        lookup_transfers(&mut client, &(50_100..50_100 + BATCH).collect::<Vec<_>>()).is_empty(),
        "the unacknowledged batch is gone"
    );
    assert!(
        group.nodes[old].output().contains("dropped"),
        "the old primary says what it dropped:\n{}",
        group.outputs()
    );
    group.nodes[old].kill();
}

#[test]
fn failover_sets_aside_a_partitioned_primary_whose_store_took_unacknowledged_records() {
    let _serial = one_group_at_a_time();
    let mut group = Group::new(3, 1);
    for node in &mut group.nodes {
        // Runs of 2,500 transfers: the old primary's store takes some of what it journals.
        node.options = node
            .options
            .clone()
            .flag("transfers-max", 10_000)
            .flag("transfers-pending-max", 1000);
        node.start();
    }
    let old = group.primary();
    let mut client = group.client();
    create_accounts(&mut client);
    send_batch(&mut client, 80_000).expect("acknowledged");
    let backups: Vec<usize> = (0..3).filter(|&index| index != old).collect();
    for &backup in &backups {
        group.nodes[backup].kill();
    }
    // The old primary journals 10,000 transfers no backup acknowledges; its history writer
    // stores the runs they fill.
    const UNACKNOWLEDGED: u128 = 2_000;
    for request in 0..5 {
        let first = 100_000 + request * UNACKNOWLEDGED;
        let events: Vec<_> = (first..first + UNACKNOWLEDGED)
            .map(|id| transfer(id, 1 + id % ACCOUNTS, 1 + (id + 3) % ACCOUNTS, 1, LEDGER))
            .collect();
        let mut direct = group.nodes[old].client().expect("connect to the primary");
        direct
            .set_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        assert!(
            direct
                .request(Operation::CreateTransfers, &encode_transfers(&events))
                .is_err(),
            "acknowledged without a backup"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    group.rejoin_after_partition(old, &backups);
    let output = group.nodes[old].output();
    assert!(
        output.contains("history store already holds")
            && output.contains("moved this node's journal and history store")
            && output.contains("set-aside-1"),
        "the old primary sets its data aside:\n{}",
        group.outputs()
    );
    assert!(group.nodes[old]
        .data
        .path()
        .join("set-aside-1/journal")
        .is_dir());
    let mut reader = group.nodes[old]
        .client()
        .expect("connect to the old primary");
    reader.set_read_from_backup(true);
    assert_eq!(
        lookup_transfers(&mut reader, &(80_000..80_000 + BATCH).collect::<Vec<_>>()).len(),
        BATCH as usize,
        "the acknowledged batch is there"
    );
    assert!(
        lookup_transfers(&mut reader, &(100_000..110_000).collect::<Vec<_>>()).is_empty(),
        "the unacknowledged transfers are gone"
    );
    group.nodes[old].kill();
}

#[test]
fn failover_backup_killed_during_catch_up_from_a_checkpoint_resumes() {
    let _serial = one_group_at_a_time();
    let mut group = Group::new(3, 1).with_small_journals();
    for node in &mut group.nodes {
        // Memory for few transfers, so the first ones live only in the history store; and a
        // slow catch-up, so the kill lands in the middle of one.
        node.options = node
            .options
            .clone()
            .flag("transfers-max", 10_000)
            .flag("transfers-pending-max", 1000)
            .flag("catch-up-mib-per-second", 1);
    }
    group.nodes[0].start();
    group.nodes[1].start();
    let primary = group.primary();
    let mut client = group.client();
    create_accounts(&mut client);
    let batch = group.write_until_retired(primary, &mut client, 60_000);
    // An empty node needs records the primary retired: it catches up from a checkpoint, and
    // is killed while the catch-up arrives.
    let staging = group.nodes[2].data.path().join("catch-up.tmp");
    group.nodes[2].start();
    let started = Instant::now();
    while !staging.exists() {
        assert!(
            started.elapsed() < SETTLE_MAX,
            "no catch-up started:\n{}",
            group.outputs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let finished = group.nodes[2].output().contains("received the checkpoint")
        || group.nodes[2].data.path().join("catch-up").exists();
    assert!(
        !finished,
        "the catch-up finished before the kill:\n{}",
        group.outputs()
    );
    group.nodes[2].kill();
    // Started again, it drops the unfinished catch-up, receives a whole one and follows.
    group.nodes[2].start();
    group.write_eventually(60_000 + batch * BATCH);
    group.wait_converged();
    let output = group.nodes[2].output();
    for said in [
        "removed a catch-up from a checkpoint that did not finish",
        "installed the checkpoint",
    ] {
        assert!(output.contains(said), "node 3 says {said:?}:\n{output}");
    }
    assert!(
        group.nodes[primary]
            .output()
            .contains("backup 3 follows from sequence"),
        "the node follows the primary:\n{}",
        group.outputs()
    );
    // The oldest transfers, long out of memory, came with the store copy.
    let mut reader = group.nodes[2].client().expect("connect to node 3");
    reader.set_read_from_backup(true);
    let oldest: Vec<u128> = (60_000..60_000 + 10 * BATCH).collect();
    assert_eq!(
        lookup_transfers(&mut reader, &oldest).len(),
        oldest.len(),
        "node 3 finds the oldest transfers:\n{}",
        group.outputs()
    );
    // It holds what the group acknowledges: with the other backup gone, writes go on
    // through it alone.
    let other = 1 - primary;
    group.nodes[other].kill();
    send_batch(&mut group.client(), 60_000 + (batch + 1) * BATCH).expect("acknowledged by node 3");
}

#[test]
fn failover_new_node_without_history_catches_up_from_a_checkpoint() {
    let _serial = one_group_at_a_time();
    let mut group = Group::new(3, 1).with_small_journals();
    for node in &mut group.nodes {
        node.options = node.options.clone().switch("no-history");
    }
    group.nodes[0].start();
    group.nodes[1].start();
    let primary = group.primary();
    let mut client = group.client();
    create_accounts(&mut client);
    let batch = group.write_until_retired(primary, &mut client, 90_000);
    // Without a history store, the checkpoint holds everything.
    group.nodes[2].start();
    group.write_eventually(90_000 + batch * BATCH);
    group.wait_converged();
    let output = group.nodes[2].output();
    assert!(
        output.contains("installed the checkpoint") && !output.contains("copy of its history"),
        "node 3 caught up from the checkpoint alone:\n{output}"
    );
    let mut reader = group.nodes[2].client().expect("connect to node 3");
    reader.set_read_from_backup(true);
    let all: Vec<u128> = (90_000..90_000 + (batch + 1) * BATCH).collect();
    assert_eq!(
        lookup_transfers(&mut reader, &all).len(),
        all.len(),
        "node 3 holds every transfer"
    );
}

#[test]
fn failover_benchmark_starts_and_loads_its_own_group() {
    let _serial = one_group_at_a_time();
    let etcd = Etcd::start();
    let json = tempfile::NamedTempFile::new().expect("temporary file");
    let stdout = clearline_ok(
        &[
            "benchmark",
            "--group-size",
            "3",
            "--ack-backups",
            "2",
            "--etcd",
            &etcd.client_url,
            "--account-count",
            "100",
            "--transfer-count",
            "20000",
            "--no-progress",
            "--output",
            json.path().to_str().expect("UTF-8 path"),
        ],
        SETTLE_MAX * 4,
    );
    for said in [
        "group of 3 nodes (--ack-backups 2): node",
        "a group of 3 acknowledging on 2 backups",
        "add up",
        "20,000 transfers in",
    ] {
        assert!(stdout.contains(said), "{said:?}:\n{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).expect("saved")).expect("JSON");
    assert_eq!(
        report["config"]["group"],
        serde_json::json!({"size": 3, "ack_backups": 2})
    );
    // Without --etcd, or with --addr, the flags are refused with what to do.
    let output = crate::support::run_until_exit(
        crate::support::clearline_command().args(["benchmark", "--group-size", "3"]),
        SETTLE_MAX,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--group-size needs --etcd"), "{stderr}");
}

#[test]
fn failover_group_keeps_the_journal_a_stopped_backup_needs() {
    let _serial = one_group_at_a_time();
    let mut group = Group::new(3, 1).with_small_journals();
    for node in &mut group.nodes {
        node.start();
    }
    let primary = group.primary();
    let mut client = group.client();
    create_accounts(&mut client);
    send_batch(&mut client, 70_000).expect("acknowledged");
    let stopped = (primary + 1) % 3;
    group.wait_converged();
    signal(group.nodes[stopped].pid(), "STOP");
    // Enough journal for several checkpoints, which would retire the first segment.
    let checkpoints = |group: &Group| {
        group.nodes[primary]
            .output()
            .matches("checkpoint at")
            .count()
    };
    let mut batch = 1;
    while checkpoints(&group) < 4 {
        send_batch(&mut client, 70_000 + batch * BATCH).expect("acknowledged by the other backup");
        batch += 1;
        assert!(batch < 100_000, "no checkpoints:\n{}", group.outputs());
    }
    let first_segment = group.nodes[primary]
        .data
        .path()
        .join("journal/segment-0000000000000000.log");
    assert!(
        first_segment.exists(),
        "the primary kept what the stopped backup needs:\n{}",
        group.outputs()
    );
    signal(group.nodes[stopped].pid(), "CONT");
    group.wait_converged();
    assert!(
        !group.outputs().contains("sending it the checkpoint"),
        "the backup caught up by streaming:\n{}",
        group.outputs()
    );
    // Once every backup holds them, the next checkpoints retire the old records.
    let started = Instant::now();
    while first_segment.exists() {
        send_batch(&mut client, 70_000 + batch * BATCH).expect("acknowledged");
        batch += 1;
        assert!(
            started.elapsed() < SETTLE_MAX,
            "never retired:\n{}",
            group.outputs()
        );
    }
}
