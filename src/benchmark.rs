//! `clearline benchmark`: the standard load test over loopback.
//!
//! Without `--addr` it starts its own server (in this process, on a fresh temporary data
//! directory, durable by default), measures one disk sync and a plain loopback echo of the same
//! frames as baselines, creates the accounts, sends the transfers in batches from `--clients`
//! connections, and prints throughput and request latency percentiles. At the end it checks that
//! balances add up: per ledger, debits equal credits, and the total moved equals what the
//! acknowledged transfers say.
//!
//! Closed loop by default (each client sends its next request when the previous reply arrives;
//! latency from the actual send). With `--rate` the schedule is open loop: request k is planned
//! at `start + k / rate` and its latency counts from that planned time, so a stall shows up in
//! the percentiles instead of silently delaying the senders (no coordinated omission).
//!
//! Every `--window-count` acknowledged transfers it prints a window line (rate over the window,
//! and the own server's memory and disk split into journal, checkpoints and history), and at
//! the end compares the first and the last window. It keeps a sample of at most
//! [`SAMPLE_MAX`] acknowledged transfer ids spread over the whole run and looks them up after
//! the balances check; a missing one fails the run (docs/benchmark.md, "Long runs"). Nothing
//! the clients keep grows with the transfer count.
//!
//! After the run it prints the summary, and on request saves the report (`report.rs`, schema in
//! `docs/benchmark.md`) and draws the percentile plot (`plot.rs`) with the baselines as
//! reference lines. Memory and disk use are reported only for its own server, which runs in this
//! process (or, with `--restart-check`, in a child process killed with SIGKILL and started again
//! at the end; with `--group-size`, as a replication group of child processes, whose primary is
//! loaded and reported); a server at `--addr` is another process and its resources are left out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clearline_engine::{
    Account, Config, CreateResult, CreateTransferStatus, Operation, Transfer, TransferFlags,
};
use clearline_net::{Client, FrameStatus};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use clap::ValueEnum as _;

use crate::cli::{AccountDistribution, BenchmarkArgs, Limits, StartArgs, SyncMode};
use crate::plot::{format_latency_us, Curve, Reference, ReferenceKind};
use crate::report::RestartCheck;
use crate::report::{
    self, Baselines, Latency, LatencyStart, Load, Report, Resources, RunConfig, SampleLookup,
    ServerKind, Throughput, Window, Workload,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const LEDGER: u32 = 1;
const CODE: u16 = 1;

/// The primary a server redirects to, or the server itself when it serves writes.
///
/// # Errors
/// The server cannot be reached or names no primary within the client's redirect deadline.
fn primary_of(addr: SocketAddr) -> Result<SocketAddr, BoxError> {
    let mut client = Client::connect(addr)?;
    client.get_state()?;
    Ok(client.server_addr())
}

/// Transfer ids start here so they never meet account ids.
const TRANSFER_ID_BASE: u128 = 1 << 64;
/// The most requests one connection keeps in flight in open-loop mode.
const OPEN_LOOP_IN_FLIGHT_MAX: u64 = 16;
/// The most acknowledged transfer ids the sample lookup checks at the end.
pub const SAMPLE_MAX: u64 = 10_000;
/// Ids per `lookup_transfers` request of the sample lookup: the reply (128 bytes per transfer)
/// stays within the 1 MiB frame.
const LOOKUP_BATCH_MAX: usize = 8_189;

/// What one run measured.
pub struct Measurement {
    /// Request latencies in nanoseconds.
    pub latencies: Histogram<u64>,
    /// Requests answered.
    pub requests: u64,
    /// Transfers created, or order commands answered.
    pub events: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
}

/// What a transfer run measured beyond [`Measurement`]: absent (empty) for `--orders`.
#[derive(Default)]
struct Progress {
    windows: Vec<Window>,
    sample_lookup: Option<SampleLookup>,
    /// The transfer indexes the sample lookup checked.
    sample_indexes: Vec<u64>,
}

/// The own server and what the windows read of it: its data directory, and its process when
/// it is not this one.
struct Watched<'a> {
    data: &'a Path,
    pid: Option<u32>,
}

/// The benchmark's own server: in this process, a child process with `--restart-check`, or
/// a replication group of child processes with `--group-size` (the primary is loaded).
enum OwnServer {
    InProcess(crate::start::Server),
    Child(ChildServer),
    Group {
        nodes: Vec<ChildServer>,
        primary: usize,
    },
}

impl OwnServer {
    fn addr(&self) -> SocketAddr {
        match self {
            OwnServer::InProcess(server) => server.local_addr(),
            OwnServer::Child(child) => child.addr,
            OwnServer::Group { nodes, primary } => nodes[*primary].addr,
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            OwnServer::InProcess(_) => None,
            OwnServer::Child(child) => Some(child.child.id()),
            OwnServer::Group { nodes, primary } => Some(nodes[*primary].child.id()),
        }
    }

    /// The data directory of the server loaded (the primary's in a group).
    fn data(&self, dir: &Path) -> PathBuf {
        match self {
            OwnServer::Group { primary, .. } => group_node_dir(dir, *primary),
            OwnServer::InProcess(_) | OwnServer::Child(_) => dir.to_path_buf(),
        }
    }

    fn stop(self) -> Result<(), BoxError> {
        match self {
            OwnServer::InProcess(server) => Ok(server.shutdown()?),
            // Its data directory is removed next, so nothing is lost by SIGKILL.
            OwnServer::Child(mut child) => child.kill(),
            OwnServer::Group { mut nodes, .. } => {
                for node in &mut nodes {
                    node.kill()?;
                }
                Ok(())
            }
        }
    }
}

/// The data directory of node `index` (from 0) of the benchmark's own group.
fn group_node_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("node-{}", index + 1))
}

/// How long the benchmark waits for its own group to choose a primary.
const GROUP_PRIMARY_WAIT: Duration = Duration::from_secs(60);

/// Starts the benchmark's own replication group: `args.group_size` nodes of `start`'s
/// settings, each in its own directory under `dir`, in a group named after this process so
/// that no earlier run's keys in etcd count; waits for a primary.
fn start_group(start: &StartArgs, args: &BenchmarkArgs, dir: &Path) -> Result<OwnServer, BoxError> {
    let etcd = args
        .etcd
        .clone()
        .ok_or("--group-size needs --etcd (the etcd cluster the group's leadership lives in)")?;
    let group = format!("benchmark-{}-{}", std::process::id(), report::unix_time_s());
    let mut nodes = Vec::new();
    for index in 0..args.group_size {
        let node_start = StartArgs {
            data: group_node_dir(dir, index as usize),
            addr: "127.0.0.1:0".parse().expect("valid address"),
            replication: crate::cli::ReplicationArgs {
                etcd: Some(etcd.clone()),
                node_id: Some(u64::from(index) + 1),
                peer_addr: Some("127.0.0.1:0".parse().expect("valid address")),
                group: group.clone(),
                group_size: args.group_size,
                ack_backups: args.ack_backups,
                lease_ttl_seconds: crate::cli::LEASE_TTL_SECONDS_DEFAULT,
                ..crate::cli::ReplicationArgs::default()
            },
            ..start.clone()
        };
        crate::replica::ReplicaConfig::from_args(&node_start.replication, node_start.addr)?;
        match ChildServer::start(&node_start) {
            Ok(node) => nodes.push(node),
            Err(error) => {
                for node in &mut nodes {
                    let _ = node.kill();
                }
                return Err(format!("node {} of the group: {error}", index + 1).into());
            }
        }
    }
    let deadline = Instant::now() + GROUP_PRIMARY_WAIT;
    loop {
        if let Ok(addr) = primary_of(nodes[0].addr) {
            if let Some(primary) = nodes.iter().position(|node| node.addr == addr) {
                say!(
                    "group of {} nodes (--ack-backups {}): node {} is primary at {addr}",
                    args.group_size,
                    args.ack_backups.unwrap_or(u32::from(args.group_size > 1)),
                    primary + 1
                );
                return Ok(OwnServer::Group { nodes, primary });
            }
        }
        if Instant::now() > deadline {
            for node in &mut nodes {
                let _ = node.kill();
            }
            return Err(format!(
                "the group chose no primary within {GROUP_PRIMARY_WAIT:?}: is etcd at {etcd} \
                 running?"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `clearline start` of this binary as a child process.
struct ChildServer {
    child: std::process::Child,
    addr: SocketAddr,
    /// The arguments it was started with, to start it again.
    arguments: Vec<String>,
}

impl ChildServer {
    /// How long a start may take (recovery included) before the benchmark gives up.
    const START_TIMEOUT: Duration = Duration::from_secs(600);

    fn start(start: &StartArgs) -> Result<ChildServer, BoxError> {
        let limits = &start.limits;
        let mut arguments: Vec<String> = vec![
            "start".into(),
            "--data".into(),
            start.data.display().to_string(),
            "--addr".into(),
            start.addr.to_string(),
            "--sync".into(),
            sync_name(start.sync).into(),
            "--checkpoint-interval-mib".into(),
            start.checkpoint_interval_mib.to_string(),
            "--ids-max".into(),
            start.ids_max.to_string(),
        ];
        if !start.history.on() {
            arguments.push("--no-history".into());
        }
        for (flag, value) in [
            ("accounts-max", u64::from(limits.accounts_max)),
            ("transfers-max", u64::from(limits.transfers_max)),
            (
                "transfers-pending-max",
                u64::from(limits.transfers_pending_max),
            ),
            (
                "account-balances-max",
                u64::from(limits.account_balances_max),
            ),
            ("markets-max", u64::from(limits.markets_max)),
            ("orders-max", u64::from(limits.orders_max)),
            ("fills-max", u64::from(limits.fills_max)),
            ("connections-max", u64::from(limits.connections_max)),
            (
                "connections-per-address-max",
                u64::from(limits.connections_per_address_max),
            ),
            (
                "connection-idle-timeout-ms",
                limits.connection_idle_timeout_ms,
            ),
            (
                "requests-in-flight-max",
                u64::from(limits.requests_in_flight_max),
            ),
            ("partial-frame-timeout-ms", limits.partial_frame_timeout_ms),
            ("reply-timeout-ms", limits.reply_timeout_ms),
            (
                "connection-input-size-max",
                limits.connection_input_size_max,
            ),
            (
                "connection-output-size-max",
                limits.connection_output_size_max,
            ),
            ("reply-memory-max", limits.reply_memory_max),
            ("segment-size", limits.segment_size),
        ] {
            arguments.push(format!("--{flag}"));
            arguments.push(value.to_string());
        }
        if let Some(segments) = limits.journal_segments_max {
            arguments.push("--journal-segments-max".into());
            arguments.push(segments.to_string());
        }
        let replication = &start.replication;
        if let (Some(etcd), Some(node_id), Some(peer_addr)) = (
            &replication.etcd,
            replication.node_id,
            replication.peer_addr,
        ) {
            arguments.extend([
                "--etcd".into(),
                etcd.clone(),
                "--node-id".into(),
                node_id.to_string(),
                "--peer-addr".into(),
                peer_addr.to_string(),
                "--group".into(),
                replication.group.clone(),
                "--group-size".into(),
                replication.group_size.to_string(),
                "--lease-ttl-seconds".into(),
                replication.lease_ttl_seconds.to_string(),
            ]);
            if let Some(ack_backups) = replication.ack_backups {
                arguments.push("--ack-backups".into());
                arguments.push(ack_backups.to_string());
            }
        }
        let (child, addr, _) = Self::spawn(&arguments)?;
        Ok(ChildServer {
            child,
            addr,
            arguments,
        })
    }

    /// Starts the process and waits until it prints the address it listens on. Returns the
    /// process, the address, and the line saying what it recovered.
    fn spawn(
        arguments: &[String],
    ) -> Result<(std::process::Child, SocketAddr, Option<String>), BoxError> {
        use std::io::BufRead as _;
        let exe = std::env::current_exe()?;
        let mut child = std::process::Command::new(exe)
            .args(arguments)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the server's output is not piped")?;
        let (listening_tx, listening) = mpsc::channel();
        // Reads the server's output to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut recovered = None;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("clearline: recovered ") {
                    recovered = Some(line);
                } else if let Some(addr) = line.strip_prefix("clearline: listening on ") {
                    let _ = listening_tx.send((addr.trim().to_string(), recovered.take()));
                }
            }
        });
        let deadline = Instant::now() + Self::START_TIMEOUT;
        loop {
            match listening.recv_timeout(Duration::from_millis(100)) {
                Ok((addr, recovered)) => return Ok((child, addr.parse()?, recovered)),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(status) = child.try_wait()? {
                        return Err(format!("the server exited at start: {status}").into());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("the server did not start listening".into());
                }
            }
        }
    }

    /// SIGKILL, and waits for the process to end.
    fn kill(&mut self) -> Result<(), BoxError> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// Kills the server with SIGKILL, starts it again on the same data directory, times until it
/// answers, and checks that its state hash, every account's balances and the sample read as
/// before the kill.
fn restart_check(
    server: &mut ChildServer,
    args: &BenchmarkArgs,
    sample: &[u64],
) -> Result<RestartCheck, BoxError> {
    let before = balances(&mut Client::connect(server.addr)?, args.account_count)?;
    let state_before = state_hash(server.addr, "before the kill")?;
    server.kill()?;
    let started = Instant::now();
    let (child, addr, recovered) = ChildServer::spawn(&server.arguments)?;
    server.child = child;
    server.addr = addr;
    let mut client = Client::connect(addr)?;
    let reply = client.request(Operation::LookupAccounts, &account_id(0).to_le_bytes())?;
    let serving = started.elapsed();
    if reply.status() != FrameStatus::Ok {
        return Err(format!("after the restart: frame status {:?}", reply.status()).into());
    }
    say!(
        "restart after kill -9: serving in {:.2} s",
        serving.as_secs_f64()
    );
    if let Some(recovered) = recovered {
        // The server's own account of where the time went.
        say!("restart after kill -9: the server said: {recovered}");
    }
    // Before any write: the retry below moves the engine clock on, and so the hash.
    let state_after = state_hash(addr, "after the restart")?;
    let state_hash_same = state_after == state_before;
    say!(
        "restart after kill -9: state hash {} before the kill, {} after: {}",
        hash_hex(state_before),
        hash_hex(state_after),
        if state_hash_same {
            "the same"
        } else {
            "DIFFERS"
        }
    );
    let after = balances(&mut client, args.account_count)?;
    let balances_same = after == before;
    say!(
        "restart after kill -9: balances of {} {}",
        counted(u64::from(args.account_count), "account"),
        if balances_same {
            "the same as before the kill"
        } else {
            "DIFFER from before the kill"
        }
    );
    let sample_lookup = if args.no_sample_lookup {
        None
    } else {
        let lookup = lookup_sample(&mut client, sample, "sample lookup after the restart")?;
        retry_first(&mut client, args.transfer_count, "retry after the restart")?;
        Some(lookup)
    };
    Ok(RestartCheck {
        serving_s: serving.as_secs_f64(),
        balances_same,
        state_hash_before: Some(hash_hex(state_before)),
        state_hash_after: Some(hash_hex(state_after)),
        state_hash_same: Some(state_hash_same),
        sample_lookup,
    })
}

/// The server's state hash (`get_state`), read over a fresh connection.
fn state_hash(addr: SocketAddr, when: &str) -> Result<u128, BoxError> {
    let state = Client::connect(addr)?
        .get_state()
        .map_err(|error| format!("get_state {when}: {error}"))?;
    Ok(state.state_hash)
}

/// A state hash as the report and the output write it: `0x` and 32 hex digits.
fn hash_hex(hash: u128) -> String {
    format!("{hash:#034x}")
}

/// Every account's balances (debits and credits, pending and posted), in id order.
fn balances(client: &mut Client, account_count: u32) -> Result<Vec<[u128; 4]>, BoxError> {
    let mut balances = Vec::with_capacity(account_count as usize);
    let mut body = Vec::with_capacity(8_189 * 16);
    let mut index = 0u32;
    while index < account_count {
        let batch = (account_count - index).min(8_189);
        body.clear();
        for offset in index..index + batch {
            body.extend_from_slice(&account_id(u64::from(offset)).to_le_bytes());
        }
        let reply = client.request(Operation::LookupAccounts, &body)?;
        for chunk in reply.body.chunks_exact(Account::SIZE) {
            let account = Account::decode(chunk.try_into().expect("128-byte chunk"));
            balances.push([
                account.debits_pending,
                account.debits_posted,
                account.credits_pending,
                account.credits_posted,
            ]);
        }
        index += batch;
    }
    Ok(balances)
}

/// The baselines of a run: their summaries for the report and their histograms for the plot.
#[derive(Default)]
struct MeasuredBaselines {
    sync: Option<Histogram<u64>>,
    echo: Option<Histogram<u64>>,
}

/// Runs the benchmark.
pub fn run(args: &BenchmarkArgs) -> Result<(), Box<dyn std::error::Error>> {
    run_inner(args).map_err(|error| error.to_string().into())
}

fn run_inner(args: &BenchmarkArgs) -> Result<(), BoxError> {
    if args.transfer_batch_count == 0 || args.transfer_batch_count > 8_191 {
        return Err("--transfer-batch-count must be between 1 and 8,191".into());
    }
    if args.account_count < 2 {
        return Err("--account-count must be at least 2".into());
    }
    if args.clients == 0 || args.clients > 256 {
        return Err("--clients must be between 1 and 256".into());
    }
    if args.rate == Some(0) {
        return Err("--rate must be at least 1 request per second".into());
    }
    if args.orders && args.rate.is_some() {
        return Err("--orders runs closed loop; leave out --rate".into());
    }
    if args.window_count == 0 {
        return Err("--window-count must be at least 1".into());
    }
    if args.group_size > 0 && (args.addr.is_some() || args.restart_check) {
        return Err(
            "--group-size starts the benchmark's own group: leave out --addr and --restart-check"
                .into(),
        );
    }
    if args.group_size > 0 && args.etcd.is_none() {
        return Err(
            "--group-size needs --etcd (the etcd cluster the group's leadership lives in)".into(),
        );
    }
    if args.group_size == 0 && (args.etcd.is_some() || args.ack_backups.is_some()) {
        return Err("--etcd and --ack-backups go with --group-size".into());
    }
    if args.restart_check && (args.addr.is_some() || args.orders) {
        return Err(
            "--restart-check needs the benchmark's own server and transfers: leave out \
                    --addr and --orders"
                .into(),
        );
    }
    let command_line: Vec<String> = std::env::args().collect();
    let time_unix_s = report::unix_time_s();
    let mut machine = report::machine();
    let mut baselines = MeasuredBaselines::default();
    let mut resources = Resources::default();

    let mut own_server = None;
    let addr = match args.addr {
        // A node of a replication group may be a backup: the load goes to the primary it
        // names (docs/replication.md, "Benchmarking a group").
        Some(addr) => {
            let primary = primary_of(addr)?;
            if primary != addr {
                say!("{addr} is a backup; loading the primary at {primary}");
            }
            primary
        }
        None => {
            let dir = temporary_dir()?;
            say!(
                "starting a server on {} (sync: {})",
                dir.display(),
                sync_name(args.sync)
            );
            let limits = benchmark_limits(args);
            let start = StartArgs {
                data: dir.clone(),
                addr: "127.0.0.1:0".parse().expect("valid address"),
                sync: args.sync,
                checkpoint_interval_mib: crate::cli::CHECKPOINT_INTERVAL_MIB,
                archive: None,
                history: args.history,
                ids_max: crate::cli::IDS_MAX_DEFAULT.max(args.transfer_count),
                limits,
                tigerbeetle: crate::cli::TigerBeetleArgs::default(),
                replication: crate::cli::ReplicationArgs::default(),
            };
            // The sync baseline runs before the server starts, so the server's own segment
            // allocation does not share the disk with it.
            if args.sync == crate::cli::SyncMode::Data {
                let sync = measure_sync(&dir)?;
                say!(
                    "baseline: one 4 KiB write + fdatasync in the data directory: p50 {}, p99 {}",
                    format_latency_us(sync.value_at_quantile(0.5) as f64 / 1_000.0),
                    format_latency_us(sync.value_at_quantile(0.99) as f64 / 1_000.0)
                );
                baselines.sync = Some(sync);
            }
            let server = if args.group_size > 0 {
                start_group(&start, args, &dir).inspect_err(|_| {
                    let _ = std::fs::remove_dir_all(&dir);
                })?
            } else if args.restart_check {
                OwnServer::Child(ChildServer::start(&start)?)
            } else {
                OwnServer::InProcess(crate::start::Server::start(&start, false)?)
            };
            let addr = server.addr();
            let echo = measure_echo(args.transfer_batch_count)?;
            say!(
                "baseline: loopback echo of frames of {}: p50 {}, p99 {}",
                counted(u64::from(args.transfer_batch_count), "event"),
                format_latency_us(echo.value_at_quantile(0.5) as f64 / 1_000.0),
                format_latency_us(echo.value_at_quantile(0.99) as f64 / 1_000.0)
            );
            baselines.echo = Some(echo);
            let data = server.data(&dir);
            own_server = Some((server, dir, data));
            addr
        }
    };

    let result = if args.orders {
        crate::benchmark_orders::drive(args, addr)
            .map(|measurement| (measurement, Progress::default()))
    } else {
        drive(
            args,
            addr,
            own_server.as_ref().map(|(server, _, data)| Watched {
                data: data.as_path(),
                pid: server.pid(),
            }),
        )
    };
    let mut restart = None;
    if let Some((mut server, dir, data)) = own_server {
        // An in-process server's memory is this process's (plus the benchmark's clients, which
        // hold little).
        (resources.rss_bytes, resources.rss_peak_bytes) = report::process_memory_of(server.pid());
        if let (OwnServer::Child(child), Ok((_, progress))) = (&mut server, &result) {
            restart = Some(restart_check(child, args, &progress.sample_indexes));
        }
        server.stop()?;
        if let Some((disk_bytes, file_bytes)) = report::disk_use(&data) {
            resources.data_disk_bytes = Some(disk_bytes);
            resources.data_file_bytes = Some(file_bytes);
        }
        if let Some(split) = report::disk_split(&data) {
            resources.journal_bytes = Some(split.journal_bytes);
            resources.checkpoint_bytes = Some(split.checkpoint_bytes);
            resources.history_bytes = Some(split.history_bytes.unwrap_or(0));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (measurement, progress) = result?;
    let restart = restart.transpose()?;
    machine.load_average_end = report::load_average();

    let config = run_config(args);
    let throughput = Throughput {
        duration_s: measurement.elapsed.as_secs_f64(),
        requests: measurement.requests,
        events: measurement.events,
        event_name: if args.orders {
            "order command"
        } else {
            "transfer"
        }
        .to_string(),
        events_per_s: rate(measurement.events, measurement.elapsed),
        requests_per_s: rate(measurement.requests, measurement.elapsed),
    };
    print_summary(&config, &throughput, &measurement.latencies, &resources);
    if !args.orders {
        print_windows_summary(args.window_count, &progress.windows, &resources);
    }

    let (commit, commit_dirty) = report::commit();
    let summary = |histogram: &Option<Histogram<u64>>| {
        histogram
            .as_ref()
            .map(|histogram| Latency::from_histogram(histogram, LatencyStart::Send))
            .transpose()
    };
    let report = Report {
        schema: report::SCHEMA.to_string(),
        clearline_version: env!("CARGO_PKG_VERSION").to_string(),
        commit,
        commit_dirty,
        time_unix_s,
        command_line,
        machine,
        baselines: Baselines {
            sync: summary(&baselines.sync)?,
            echo: summary(&baselines.echo)?,
        },
        throughput,
        latency: Latency::from_histogram(
            &measurement.latencies,
            match config.load {
                Load::ClosedLoop => LatencyStart::Send,
                Load::OpenLoop => LatencyStart::PlannedSend,
            },
        )?,
        resources,
        config,
        windows: progress.windows,
        sample_lookup: progress.sample_lookup,
        restart,
    };
    if let Some(path) = &args.output {
        report::write(path, &report)?;
        say!("results saved in {}", path.display());
    }
    if let Some(path) = &args.plot {
        let curve = Curve {
            label: "request latency".to_string(),
            histogram: &measurement.latencies,
            references: references(&report, None),
        };
        let title = format!("clearline benchmark: {}", report.config.describe());
        let svg = crate::plot::render(&title, &[curve], args.plot_scale)?;
        std::fs::write(path, svg)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        say!("latency percentiles drawn in {}", path.display());
    }
    if let Some(restart) = &report.restart {
        if restart.state_hash_same == Some(false) {
            return Err(
                "the state hash after the restart differs from the one before the kill".into(),
            );
        }
        if !restart.balances_same {
            return Err("balances after the restart differ from those before the kill".into());
        }
    }
    let lookups = [
        report.sample_lookup.as_ref(),
        report
            .restart
            .as_ref()
            .and_then(|restart| restart.sample_lookup.as_ref()),
    ];
    for lookup in lookups.into_iter().flatten() {
        if lookup.found < lookup.sampled {
            return Err(format!(
                "sample lookup: {} of {} acknowledged transfers not found",
                thousands(lookup.sampled - lookup.found),
                thousands(lookup.sampled)
            )
            .into());
        }
    }
    Ok(())
}

/// The reference lines of a run's plot: the p50 of each baseline it measured, their labels
/// prefixed with `run` when several runs share a plot.
pub fn references(report: &Report, run: Option<&str>) -> Vec<Reference> {
    let prefix = run.map_or(String::new(), |run| format!("{run}: "));
    let mut references = Vec::new();
    for (name, baseline, kind) in [
        ("one disk sync", &report.baselines.sync, ReferenceKind::Disk),
        (
            "loopback echo",
            &report.baselines.echo,
            ReferenceKind::Network,
        ),
    ] {
        if let Some(latency_ns) = baseline.as_ref().and_then(Latency::median_ns) {
            references.push(Reference {
                label: format!(
                    "{prefix}{name}, p50 {}",
                    format_latency_us(latency_ns as f64 / 1_000.0)
                ),
                latency_ns,
                kind,
            });
        }
    }
    references
}

fn run_config(args: &BenchmarkArgs) -> RunConfig {
    RunConfig {
        workload: if args.orders {
            Workload::Orders
        } else {
            Workload::Transfers
        },
        load: if args.rate.is_some() {
            Load::OpenLoop
        } else {
            Load::ClosedLoop
        },
        rate: args.rate,
        server: if args.addr.is_some() {
            ServerKind::External
        } else {
            ServerKind::InProcess
        },
        sync: args
            .addr
            .is_none()
            .then(|| sync_name(args.sync).to_string()),
        clients: args.clients,
        account_count: args.account_count,
        account_distribution: args
            .account_distribution
            .to_possible_value()
            .map_or_else(String::new, |value| value.get_name().to_string()),
        transfer_count: args.transfer_count,
        transfer_batch_count: args.transfer_batch_count,
        transfer_pending: args.transfer_pending,
        seed: args.seed,
        window_count: (!args.orders).then_some(args.window_count),
        group: (args.group_size > 0).then(|| report::GroupConfig {
            size: args.group_size,
            ack_backups: args.ack_backups.unwrap_or(u32::from(args.group_size > 1)),
        }),
    }
}

fn sync_name(sync: SyncMode) -> &'static str {
    match sync {
        SyncMode::Data => "data",
        SyncMode::None => "none",
    }
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// `1 transfer`, `2 transfers`, `20,000 transfers`.
pub fn counted(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", thousands(count))
    }
}

/// `20000` as `20,000`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

fn print_summary(
    config: &RunConfig,
    throughput: &Throughput,
    latencies: &Histogram<u64>,
    resources: &Resources,
) {
    say!(
        "{} in {} in {:.2} s ({})",
        counted(throughput.events, &throughput.event_name),
        counted(throughput.requests, "request"),
        throughput.duration_s,
        config.describe()
    );
    let achieved = match config.rate {
        Some(rate) => format!("; {rate} requests/s planned"),
        None => String::new(),
    };
    say!(
        "throughput = {} {}s/s ({} requests/s{achieved})",
        thousands(throughput.events_per_s.round() as u64),
        throughput.event_name,
        thousands(throughput.requests_per_s.round() as u64),
    );
    let start = match config.load {
        Load::ClosedLoop => "from send",
        Load::OpenLoop => "from planned send",
    };
    for percentile in report::PERCENTILES {
        let label = if percentile >= 100.0 {
            "max".to_string()
        } else {
            format!("p{percentile}")
        };
        let latency_us = latencies.value_at_quantile(percentile / 100.0) as f64 / 1_000.0;
        say!(
            "request latency {label:>6} = {:>9} ({start})",
            format_latency_us(latency_us)
        );
    }
    if let Some(rss) = resources.rss_bytes {
        say!(
            "memory: resident {} MiB, peak {} MiB",
            rss >> 20,
            resources.rss_peak_bytes.unwrap_or(rss) >> 20
        );
    }
}

/// `1234567890` bytes as `1,177 MiB`.
fn mib(bytes: u64) -> String {
    format!("{} MiB", thousands(bytes >> 20))
}

/// The disk part of a window line or the summary: `journal 1,024 MiB, checkpoints 0 MiB,
/// history none`.
fn disk_text(journal: u64, checkpoints: u64, history: Option<u64>) -> String {
    format!(
        "journal {}, checkpoints {}, history {}",
        mib(journal),
        mib(checkpoints),
        history.map_or_else(|| "none".to_string(), mib)
    )
}

/// The line printed at the end of window `number` (1-based).
fn window_line(number: usize, window: &Window) -> String {
    let mut line = format!(
        "window {number}: {} so far, {} transfers/s over the last {:.2} s",
        counted(window.transfers, "transfer"),
        thousands(window.transfers_per_second.round() as u64),
        window.seconds
    );
    if let Some(rss) = window.rss_bytes {
        line.push_str(&format!("; resident {}", mib(rss)));
        if let Some(anonymous) = window.rss_anonymous_bytes {
            line.push_str(&format!(" (anonymous {})", mib(anonymous)));
        }
    }
    if let (Some(journal), Some(checkpoints)) = (window.journal_bytes, window.checkpoint_bytes) {
        line.push_str(&format!(
            "; disk: {}",
            // The history directory does not exist until the history store writes one.
            disk_text(
                journal,
                checkpoints,
                window.history_bytes.filter(|&bytes| bytes > 0)
            )
        ));
    }
    line
}

/// The end of the run against its windows: throughput of the first and the last window, and
/// memory at the end against memory at the first window boundary.
fn print_windows_summary(window_count: u64, windows: &[Window], resources: &Resources) {
    if let (Some(journal), Some(checkpoints)) =
        (resources.journal_bytes, resources.checkpoint_bytes)
    {
        say!(
            "disk at the end: {}",
            disk_text(
                journal,
                checkpoints,
                resources.history_bytes.filter(|&bytes| bytes > 0)
            )
        );
    }
    let (first, last) = match windows {
        [] => {
            say!(
                "windows: none (fewer than {} acknowledged)",
                counted(window_count, "transfer")
            );
            return;
        }
        [only] => {
            say!(
                "windows: one window of {} at {} transfers/s, so no first-to-last ratio",
                counted(window_count, "transfer"),
                thousands(only.transfers_per_second.round() as u64)
            );
            if let (Some(end), Some(first)) = (resources.rss_bytes, only.rss_bytes) {
                say!(
                    "memory: resident {} at the end, {} at the window boundary",
                    mib(end),
                    mib(first)
                );
            }
            return;
        }
        [first, .., last] => (first, last),
    };
    say!(
        "windows: {} of {}; throughput first {} transfers/s, last {} transfers/s: \
         last/first {:.2}",
        windows.len(),
        counted(window_count, "transfer"),
        thousands(first.transfers_per_second.round() as u64),
        thousands(last.transfers_per_second.round() as u64),
        last.transfers_per_second / first.transfers_per_second.max(1e-9)
    );
    if let (Some(end), Some(at_first)) = (resources.rss_bytes, first.rss_bytes) {
        say!(
            "memory: resident {} at the end, {} after the first window ({}): end/first {:.2}",
            mib(end),
            mib(at_first),
            counted(first.transfers, "transfer"),
            end as f64 / (at_first as f64).max(1.0)
        );
    }
    // Resident memory counts the pages of mapped journal segments, which come and go with the
    // segments; the anonymous part is what the server allocated.
    if let (Some(last), Some(first)) = (last.rss_anonymous_bytes, first.rss_anonymous_bytes) {
        say!(
            "memory: anonymous (without mapped files) {} after the last window, {} after the \
             first: last/first {:.2}",
            mib(last),
            mib(first),
            last as f64 / (first as f64).max(1.0)
        );
    }
}

fn benchmark_limits(args: &BenchmarkArgs) -> Limits {
    // An order command of the benchmark's flow makes about 2.4 transfers on average (holds,
    // voids, legs); four per command leaves room, plus the block the engine keeps free.
    let per_command = if args.orders { 4 } else { 2 };
    let transfers = args
        .transfer_count
        .saturating_mul(per_command)
        .min(u64::from(u32::MAX - 1));
    let orders = u32::try_from(args.transfer_count.saturating_add(4_096)).unwrap_or(u32::MAX - 1);
    let transfers_max = u32::try_from(transfers).unwrap_or(u32::MAX - 1).max(1_024);
    // Every resting order holds one pending transfer.
    let transfers_pending_max = if args.transfer_pending || args.orders {
        u32::try_from(args.transfer_count)
            .unwrap_or(u32::MAX - 1)
            .max(1_024)
    } else {
        1_024
    };
    Limits {
        accounts_max: args.account_count.saturating_add(16),
        // In history mode the limit sizes memory for recent transfers only, at least a full
        // batch beyond the pending transfers (as `clearline start` requires).
        transfers_max: if args.history.on() {
            transfers_max
                .min(args.history_memory_transfers)
                .max(transfers_pending_max.saturating_add(Config::default().batch_events_max))
        } else {
            transfers_max
        },
        transfers_pending_max,
        // The engine wants room for the history rows one order command could write; in
        // history mode, for two per transfer of a full batch.
        account_balances_max: if args.history.on() { 1 << 16 } else { 4_096 },
        // The order flow uses one market; each market's book is allocated in full.
        markets_max: if args.orders { 1 } else { 16 },
        orders_max: if args.orders { orders } else { 1_024 },
        fills_max: if args.orders { orders } else { 1_024 },
        connections_max: args.clients + 16,
        // Every benchmark client connects from the same address.
        connections_per_address_max: args.clients + 16,
        connection_idle_timeout_ms: clearline_net::ServerConfig::IDLE_TIMEOUT.as_millis() as u64,
        requests_in_flight_max: 64,
        partial_frame_timeout_ms: 10_000,
        reply_timeout_ms: 60_000,
        connection_input_size_max: 64 * 1024,
        connection_output_size_max: 4 * 1024 * 1024,
        reply_memory_max: clearline_net::ServerConfig::REPLY_MEMORY_MAX as u64,
        segment_size: 1 << 30,
        journal_segments_max: None,
    }
}

fn temporary_dir() -> Result<PathBuf, BoxError> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let dir = base.join(format!(
            "clearline-benchmark-{}-{attempt}",
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(format!("cannot create {}: {error}", dir.display()).into()),
        }
    }
    Err("cannot find a fresh temporary directory".into())
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// The baseline for durable latency: a 4 KiB overwrite followed by fdatasync, 200 times.
fn measure_sync(dir: &Path) -> Result<Histogram<u64>, BoxError> {
    let path = dir.join("sync-probe");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let block = [0x5Au8; 4096];
    let mut latencies = histogram();
    for _ in 0..200 {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        latencies.record(duration_ns(start.elapsed()))?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(latencies)
}

/// The baseline for the network: a thread that answers each frame with a reply of the size the
/// server would send (16 bytes per event), over loopback, 200 round trips.
fn measure_echo(batch_count: u32) -> Result<Histogram<u64>, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let request_size = 64 + batch_count as usize * 128;
    let reply_size = 64 + batch_count as usize * 16;
    let rounds = 200;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut request = vec![0u8; request_size];
        let reply = vec![0u8; reply_size];
        for _ in 0..rounds {
            stream.read_exact(&mut request)?;
            stream.write_all(&reply)?;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let request = vec![1u8; request_size];
    let mut reply = vec![0u8; reply_size];
    let mut latencies = histogram();
    for _ in 0..rounds {
        let start = Instant::now();
        stream.write_all(&request)?;
        stream.read_exact(&mut reply)?;
        latencies.record(duration_ns(start.elapsed()))?;
    }
    echo.join().map_err(|_| "echo thread panicked")??;
    Ok(latencies)
}

pub fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A small deterministic generator (splitmix64) for the workload.
pub struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks account indexes (0-based) by the chosen distribution.
struct AccountPicker {
    distribution: AccountDistribution,
    count: u64,
    /// Zipfian constants (exponent 1.0, as a bounded harmonic inverse).
    zipf_norm: f64,
}

impl AccountPicker {
    fn new(distribution: AccountDistribution, count: u32) -> AccountPicker {
        let count = u64::from(count);
        let zipf_norm = (count as f64).ln() + 0.577_215_664_9;
        AccountPicker {
            distribution,
            count,
            zipf_norm,
        }
    }

    fn pick(&self, random: &mut Random) -> u64 {
        match self.distribution {
            AccountDistribution::Uniform => random.below(self.count),
            AccountDistribution::Zipfian => {
                // Inverse of the harmonic CDF, approximated by exp(u * H(n)).
                let rank = (random.unit() * self.zipf_norm).exp() as u64;
                rank.clamp(1, self.count) - 1
            }
            AccountDistribution::Latest => {
                let back = (random.unit() * self.zipf_norm).exp() as u64;
                self.count - back.clamp(1, self.count)
            }
        }
    }

    fn pick_pair(&self, random: &mut Random) -> (u64, u64) {
        let debit = self.pick(random);
        let mut credit = self.pick(random);
        if credit == debit {
            credit = (debit + 1 + random.below(self.count - 1)) % self.count;
        }
        (debit, credit)
    }
}

fn account_id(index: u64) -> u128 {
    u128::from(index) + 1
}

/// The id of the transfer sent `index`-th (0-based) in the run.
fn transfer_id(index: u64) -> u128 {
    TRANSFER_ID_BASE + u128::from(index) + 1
}

/// The first transfer index and the transfer count of request `request_index`.
fn batch_range(args: &BenchmarkArgs, request_index: u64) -> (u64, u64) {
    let batch = u64::from(args.transfer_batch_count);
    let first = request_index * batch;
    (first, batch.min(args.transfer_count - first))
}

/// Chooses the transfers the sample lookup checks: every `stride`-th transfer index from
/// `offset`, the stride from the transfer count so that at most [`SAMPLE_MAX`] are chosen,
/// spread evenly over the whole run, and the same ones for the same count and seed. It keeps
/// the chosen indexes whose requests were acknowledged, in memory allocated once.
pub struct Sampler {
    stride: u64,
    offset: u64,
    acknowledged: Mutex<Vec<u64>>,
}

impl Sampler {
    pub fn new(transfer_count: u64, seed: u64) -> Sampler {
        let stride = transfer_count.div_ceil(SAMPLE_MAX).max(1);
        let offset = seed % stride;
        let capacity = transfer_count.saturating_sub(offset).div_ceil(stride);
        Sampler {
            stride,
            offset,
            acknowledged: Mutex::new(Vec::with_capacity(usize::try_from(capacity).unwrap_or(0))),
        }
    }

    /// The chosen indexes in `first..first + count`, ascending.
    fn chosen_in(&self, first: u64, count: u64) -> impl Iterator<Item = u64> {
        let start = if first <= self.offset {
            self.offset
        } else {
            self.offset + (first - self.offset).div_ceil(self.stride) * self.stride
        };
        let step = usize::try_from(self.stride).unwrap_or(usize::MAX);
        (start..first.saturating_add(count)).step_by(step)
    }

    /// Records that the transfers `first..first + count` were acknowledged (each range once).
    pub fn acknowledge(&self, first: u64, count: u64) {
        let mut chosen = self.chosen_in(first, count).peekable();
        if chosen.peek().is_none() {
            return;
        }
        // Each index is chosen once and the capacity counts them all, so this never grows.
        self.acknowledged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(chosen);
    }

    /// The acknowledged chosen indexes, ascending.
    pub fn indexes(&self) -> Vec<u64> {
        let mut indexes = self
            .acknowledged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        indexes.sort_unstable();
        indexes
    }
}

fn create_accounts(client: &mut Client, count: u32) -> Result<(), BoxError> {
    let mut body = Vec::with_capacity(8_189 * Account::SIZE);
    let mut created = 0u32;
    while created < count {
        let batch = (count - created).min(8_189);
        body.clear();
        for index in created..created + batch {
            let account = Account {
                id: account_id(u64::from(index)),
                ledger: LEDGER,
                code: CODE,
                ..Account::default()
            };
            let mut bytes = [0; Account::SIZE];
            account.encode(&mut bytes);
            body.extend_from_slice(&bytes);
        }
        let reply = client.request(Operation::CreateAccounts, &body)?;
        check_results(&reply.body, "create_accounts", true)?;
        created += batch;
    }
    Ok(())
}

/// Counts results that are not `created` (or `exists` when `exists_ok`); errors on any.
fn check_results(body: &[u8], what: &str, exists_ok: bool) -> Result<u64, BoxError> {
    let mut created = 0;
    for chunk in body.chunks_exact(CreateResult::SIZE) {
        let result = CreateResult::decode(chunk.try_into().expect("16-byte chunk"));
        if result.status == CreateResult::STATUS_CREATED {
            created += 1;
        } else if !(exists_ok && result.status == 21) {
            return Err(format!("{what}: unexpected result code {}", result.status).into());
        }
    }
    Ok(created)
}

/// A window boundary crossed, sent by the client whose reply crossed it.
struct Crossing {
    /// Transfers acknowledged, this reply's included.
    transfers: u64,
    at: Instant,
}

struct Totals {
    requests: AtomicU64,
    transfers: AtomicU64,
    window_count: u64,
    /// Locked while `transfers` is added to, so boundaries are sent in the order crossed.
    crossings: Mutex<mpsc::Sender<Crossing>>,
    sampler: Option<Sampler>,
}

impl Totals {
    /// Counts an acknowledged request whose `created` transfers start at index `first`.
    fn acknowledge(&self, first: u64, created: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(sampler) = &self.sampler {
            sampler.acknowledge(first, created);
        }
        let crossings = self
            .crossings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let before = self.transfers.fetch_add(created, Ordering::Relaxed);
        let after = before + created;
        if after / self.window_count > before / self.window_count {
            // The receiver lives until every client has finished.
            let _ = crossings.send(Crossing {
                transfers: after,
                at: Instant::now(),
            });
        }
    }
}

/// Fills `body` with the transfers of request `request_index` (a pure function of the seed and
/// the index, so clients need no coordination).
fn transfer_batch(
    args: &BenchmarkArgs,
    picker: &AccountPicker,
    request_index: u64,
    body: &mut Vec<u8>,
) -> u32 {
    let (first, count) = batch_range(args, request_index);
    let mut random = Random(args.seed ^ request_index.wrapping_mul(0xA24B_AED4_963E_E407));
    body.clear();
    for offset in 0..count {
        let (debit, credit) = picker.pick_pair(&mut random);
        let transfer = Transfer {
            id: transfer_id(first + offset),
            debit_account_id: account_id(debit),
            credit_account_id: account_id(credit),
            amount: 1,
            ledger: LEDGER,
            code: CODE,
            flags: if args.transfer_pending {
                TransferFlags::PENDING
            } else {
                0
            },
            ..Transfer::default()
        };
        let mut bytes = [0; Transfer::SIZE];
        transfer.encode(&mut bytes);
        body.extend_from_slice(&bytes);
    }
    count as u32
}

/// Sends the transfers. `watched` is the own server, whose memory and disk each window line
/// reports.
fn drive(
    args: &BenchmarkArgs,
    addr: SocketAddr,
    watched: Option<Watched<'_>>,
) -> Result<(Measurement, Progress), BoxError> {
    let mut setup = Client::connect(addr)?;
    let accounts_start = Instant::now();
    create_accounts(&mut setup, args.account_count)?;
    say!(
        "{} accounts created in {:.2} s",
        args.account_count,
        accounts_start.elapsed().as_secs_f64()
    );

    let requests_total = args
        .transfer_count
        .div_ceil(u64::from(args.transfer_batch_count));
    let next_request = Arc::new(AtomicU64::new(0));
    let (crossings_tx, crossings) = mpsc::channel();
    let totals = Arc::new(Totals {
        requests: AtomicU64::new(0),
        transfers: AtomicU64::new(0),
        window_count: args.window_count,
        crossings: Mutex::new(crossings_tx),
        sampler: (!args.no_sample_lookup).then(|| Sampler::new(args.transfer_count, args.seed)),
    });
    let progress = if args.no_progress {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(args.transfer_count);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} transfers ({per_sec}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    };

    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..args.clients {
        let next_request = Arc::clone(&next_request);
        let totals = Arc::clone(&totals);
        let progress = progress.clone();
        let picker = AccountPicker::new(args.account_distribution, args.account_count);
        let args_copy = args.clone();
        handles.push(std::thread::spawn(
            move || -> Result<Histogram<u64>, BoxError> {
                let mut client = Client::connect(addr)?;
                let mut latencies = histogram();
                let mut body = Vec::with_capacity(8_191 * Transfer::SIZE);
                match args_copy.rate {
                    None => loop {
                        let index = next_request.fetch_add(1, Ordering::Relaxed);
                        if index >= requests_total {
                            break;
                        }
                        let count = transfer_batch(&args_copy, &picker, index, &mut body);
                        let sent = Instant::now();
                        let reply = client.request(Operation::CreateTransfers, &body)?;
                        latencies.record(duration_ns(sent.elapsed()).max(1))?;
                        let created = check_results(&reply.body, "create_transfers", false)?;
                        totals.acknowledge(batch_range(&args_copy, index).0, created);
                        progress.inc(u64::from(count));
                    },
                    Some(rate) => open_loop(
                        &mut client,
                        &args_copy,
                        &picker,
                        OpenLoop {
                            rate,
                            start,
                            requests_total,
                            next_request: &next_request,
                        },
                        &mut latencies,
                        &totals,
                        &progress,
                    )?,
                }
                Ok(latencies)
            },
        ));
    }
    let windows = watch_windows(&crossings, &handles, start, watched.as_ref(), &progress);
    let mut latencies = histogram();
    let mut failure = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(client_latencies)) => latencies.add(&client_latencies)?,
            Ok(Err(error)) => failure = Some(error),
            Err(_) => failure = Some("a client thread panicked".into()),
        }
    }
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    if let Some(error) = failure {
        return Err(error);
    }

    let transfers = totals.transfers.load(Ordering::Relaxed);
    let requests = totals.requests.load(Ordering::Relaxed);
    // The setup connection sat idle through the run: a long run outlasts the server's idle
    // timeout, so the checks use a fresh one.
    drop(setup);
    let mut setup = Client::connect(addr)?;
    verify_balances(&mut setup, args, transfers)?;
    let sample_indexes = totals
        .sampler
        .as_ref()
        .map_or_else(Vec::new, Sampler::indexes);
    let sample_lookup = match &totals.sampler {
        Some(_) => Some(lookup_sample(&mut setup, &sample_indexes, "sample lookup")?),
        None => None,
    };
    if !args.no_sample_lookup {
        retry_first(&mut setup, transfers, "retry")?;
    }
    let measurement = Measurement {
        latencies,
        requests,
        events: transfers,
        elapsed,
    };
    Ok((
        measurement,
        Progress {
            windows,
            sample_lookup,
            sample_indexes,
        },
    ))
}

/// Records and prints a window each time a client reports a boundary crossed, until every
/// client has finished.
fn watch_windows<T>(
    crossings: &mpsc::Receiver<Crossing>,
    clients: &[std::thread::JoinHandle<T>],
    start: Instant,
    watched: Option<&Watched<'_>>,
    progress: &ProgressBar,
) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut previous = Crossing {
        transfers: 0,
        at: start,
    };
    let mut record = |crossing: Crossing| {
        let seconds = crossing
            .at
            .saturating_duration_since(previous.at)
            .as_secs_f64();
        let split = watched.and_then(|watched| report::disk_split(watched.data));
        let window = Window {
            transfers: crossing.transfers,
            seconds,
            transfers_per_second: crossing.transfers.saturating_sub(previous.transfers) as f64
                / seconds.max(1e-9),
            rss_bytes: watched.and_then(|watched| report::process_memory_of(watched.pid).0),
            rss_anonymous_bytes: watched
                .and_then(|watched| report::anonymous_memory_of(watched.pid)),
            journal_bytes: split.map(|split| split.journal_bytes),
            checkpoint_bytes: split.map(|split| split.checkpoint_bytes),
            history_bytes: split.map(|split| split.history_bytes.unwrap_or(0)),
        };
        let line = window_line(windows.len() + 1, &window);
        if progress.is_hidden() {
            say!("{line}");
        } else {
            progress.println(line);
        }
        windows.push(window);
        previous = crossing;
    };
    loop {
        match crossings.recv_timeout(Duration::from_millis(100)) {
            Ok(crossing) => record(crossing),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if clients.iter().all(std::thread::JoinHandle::is_finished) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // A client may have sent its last crossing just before it finished.
    while let Ok(crossing) = crossings.try_recv() {
        record(crossing);
    }
    windows
}

/// Looks the sampled transfers (by index) up again, in requests within the frame limit.
/// `label` starts the printed lines.
/// How many of the run's first transfers `retry_first` sends again.
const RETRY_COUNT: u64 = 1_000;

/// Sends the run's first transfers again, exactly as they were created (read back with
/// `lookup_transfers`, timestamp cleared): each must answer `exists`, however old
/// (docs/history.md, "Idempotency over the whole history").
///
/// # Errors
///
/// A request failed, a first transfer is missing, or a retry did not answer `exists`.
fn retry_first(client: &mut Client, transfers: u64, label: &str) -> Result<(), BoxError> {
    let count = RETRY_COUNT.min(transfers);
    if count == 0 {
        return Ok(());
    }
    let mut body = Vec::with_capacity(count as usize * 16);
    for index in 0..count {
        body.extend_from_slice(&transfer_id(index).to_le_bytes());
    }
    let reply = client.request(Operation::LookupTransfers, &body)?;
    if reply.status() != FrameStatus::Ok || reply.body.len() != count as usize * Transfer::SIZE {
        return Err(format!("{label}: the first {count} transfers are not all found").into());
    }
    let mut events = Vec::with_capacity(reply.body.len());
    for chunk in reply.body.chunks_exact(Transfer::SIZE) {
        let transfer = Transfer {
            timestamp: 0,
            ..Transfer::decode(chunk.try_into().expect("128-byte chunk"))
        };
        let mut bytes = [0u8; Transfer::SIZE];
        transfer.encode(&mut bytes);
        events.extend_from_slice(&bytes);
    }
    let reply = client.request(Operation::CreateTransfers, &events)?;
    if reply.status() != FrameStatus::Ok {
        return Err(format!("{label}: frame status {:?}", reply.status()).into());
    }
    let exists = reply
        .body
        .chunks_exact(CreateResult::SIZE)
        .map(|chunk| CreateResult::decode(chunk.try_into().expect("16-byte chunk")))
        .filter(|result| result.status == CreateTransferStatus::Exists as u32)
        .count();
    say!(
        "{label}: the first {} sent again: {} answered exists",
        thousands(count),
        thousands(exists as u64)
    );
    if exists as u64 != count {
        return Err(format!("{label}: {exists} of {count} retries answered exists").into());
    }
    Ok(())
}

fn lookup_sample(
    client: &mut Client,
    indexes: &[u64],
    label: &str,
) -> Result<SampleLookup, BoxError> {
    let start = Instant::now();
    let mut body = Vec::with_capacity(LOOKUP_BATCH_MAX * 16);
    let mut returned = Vec::with_capacity(LOOKUP_BATCH_MAX);
    let mut missing = Vec::new();
    let mut found = 0u64;
    for chunk in indexes.chunks(LOOKUP_BATCH_MAX) {
        body.clear();
        for &index in chunk {
            body.extend_from_slice(&transfer_id(index).to_le_bytes());
        }
        let reply = client.request(Operation::LookupTransfers, &body)?;
        if reply.status() != FrameStatus::Ok {
            return Err(format!("lookup_transfers: frame status {:?}", reply.status()).into());
        }
        found += count_found(
            chunk.iter().map(|&index| transfer_id(index)),
            &reply.body,
            &mut returned,
            &mut missing,
        );
    }
    let lookup = SampleLookup {
        sampled: indexes.len() as u64,
        found,
        duration_ms: start.elapsed().as_secs_f64() * 1_000.0,
        missing: missing.iter().map(u128::to_string).collect(),
    };
    say!(
        "{label}: {} of {} found in {:.0} ms",
        thousands(lookup.found),
        thousands(lookup.sampled),
        lookup.duration_ms
    );
    if !lookup.missing.is_empty() {
        say!(
            "{label}: missing ids (first {}): {}",
            lookup.missing.len(),
            lookup.missing.join(", ")
        );
    }
    Ok(lookup)
}

/// Counts the `requested` ids that a `lookup_transfers` reply body holds, and adds the first
/// missing ones to `missing` (up to [`report::MISSING_LISTED_MAX`] in all). `returned` is
/// scratch space.
fn count_found(
    requested: impl Iterator<Item = u128>,
    reply: &[u8],
    returned: &mut Vec<u128>,
    missing: &mut Vec<u128>,
) -> u64 {
    returned.clear();
    returned.extend(
        reply
            .chunks_exact(Transfer::SIZE)
            .map(|chunk| u128::from_le_bytes(chunk[..16].try_into().unwrap_or([0; 16]))),
    );
    returned.sort_unstable();
    let mut found = 0;
    for id in requested {
        if returned.binary_search(&id).is_ok() {
            found += 1;
        } else if missing.len() < report::MISSING_LISTED_MAX {
            missing.push(id);
        }
    }
    found
}

/// The schedule of an open-loop run.
struct OpenLoop<'a> {
    /// Requests per second over all clients.
    rate: u64,
    start: Instant,
    requests_total: u64,
    next_request: &'a AtomicU64,
}

/// Open loop: request k (over all clients) is planned at `start + k / rate`, and its latency
/// counts from that planned time, so a stall shows in the percentiles instead of delaying the
/// schedule unseen. Replies are read while waiting for the next planned time.
fn open_loop(
    client: &mut Client,
    args: &BenchmarkArgs,
    picker: &AccountPicker,
    schedule: OpenLoop<'_>,
    latencies: &mut Histogram<u64>,
    totals: &Totals,
    progress: &ProgressBar,
) -> Result<(), BoxError> {
    let mut planned = std::collections::VecDeque::new();
    let mut body = Vec::with_capacity(8_191 * Transfer::SIZE);
    loop {
        let index = schedule.next_request.fetch_add(1, Ordering::Relaxed);
        if index >= schedule.requests_total {
            break;
        }
        let plan = schedule.start
            + Duration::from_nanos(index.saturating_mul(1_000_000_000) / schedule.rate);
        while planned.len() as u64 >= OPEN_LOOP_IN_FLIGHT_MAX {
            receive_one(client, &mut planned, latencies, totals)?;
        }
        while Instant::now() < plan && !planned.is_empty() {
            receive_one(client, &mut planned, latencies, totals)?;
        }
        let now = Instant::now();
        if plan > now {
            std::thread::sleep(plan - now);
        }
        let count = transfer_batch(args, picker, index, &mut body);
        client.send(Operation::CreateTransfers, &body)?;
        planned.push_back((plan, batch_range(args, index).0));
        progress.inc(u64::from(count));
    }
    while !planned.is_empty() {
        receive_one(client, &mut planned, latencies, totals)?;
    }
    Ok(())
}

/// Receives the oldest reply in flight; `planned` holds each request's planned send time and
/// first transfer index.
fn receive_one(
    client: &mut Client,
    planned: &mut std::collections::VecDeque<(Instant, u64)>,
    latencies: &mut Histogram<u64>,
    totals: &Totals,
) -> Result<(), BoxError> {
    let reply = client.receive()?;
    let (plan, first) = planned
        .pop_front()
        .ok_or("a reply arrived that was not asked for")?;
    latencies.record(duration_ns(plan.elapsed()).max(1))?;
    let created = check_results(&reply.body, "create_transfers", false)?;
    totals.acknowledge(first, created);
    Ok(())
}

/// Looks every account up and checks that debits equal credits and that the total moved is
/// what the acknowledged transfers moved (each moves 1).
fn verify_balances(
    client: &mut Client,
    args: &BenchmarkArgs,
    transfers: u64,
) -> Result<(), BoxError> {
    let mut debits_posted = 0u128;
    let mut credits_posted = 0u128;
    let mut debits_pending = 0u128;
    let mut credits_pending = 0u128;
    let mut found = 0u64;
    let mut body = Vec::with_capacity(8_189 * 16);
    let mut index = 0u32;
    while index < args.account_count {
        let batch = (args.account_count - index).min(8_189);
        body.clear();
        for offset in index..index + batch {
            body.extend_from_slice(&account_id(u64::from(offset)).to_le_bytes());
        }
        let reply = client.request(Operation::LookupAccounts, &body)?;
        for chunk in reply.body.chunks_exact(Account::SIZE) {
            let account = Account::decode(chunk.try_into().expect("128-byte chunk"));
            debits_posted += account.debits_posted;
            credits_posted += account.credits_posted;
            debits_pending += account.debits_pending;
            credits_pending += account.credits_pending;
            found += 1;
        }
        index += batch;
    }
    let moved = if args.transfer_pending {
        debits_pending
    } else {
        debits_posted
    };
    let ok = found == u64::from(args.account_count)
        && debits_posted == credits_posted
        && debits_pending == credits_pending
        && moved == u128::from(transfers);
    say!(
        "balances: {found} accounts, debits posted {debits_posted} = credits posted \
         {credits_posted}, debits pending {debits_pending} = credits pending {credits_pending}: {}",
        if ok { "add up" } else { "DO NOT ADD UP" }
    );
    if ok {
        Ok(())
    } else {
        Err("balances do not add up".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_spreads_a_bounded_sample_over_the_whole_run() {
        for (transfer_count, seed) in [(1, 7), (9_999, 3), (10_000, 42), (123_457, 42)] {
            let sampler = Sampler::new(transfer_count, seed);
            // Acknowledged in requests of 7 transfers, out of order as clients would.
            let requests = transfer_count.div_ceil(7);
            for request in (0..requests).rev() {
                let first = request * 7;
                sampler.acknowledge(first, 7.min(transfer_count - first));
            }
            let indexes = sampler.indexes();
            assert!(!indexes.is_empty(), "{transfer_count}");
            assert!(indexes.len() as u64 <= SAMPLE_MAX, "{transfer_count}");
            // Never grew: all fit in the capacity chosen at the start.
            let capacity = sampler
                .acknowledged
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .capacity();
            assert!(indexes.len() <= capacity);
            // Evenly spaced, from the start to the end of the run.
            let stride = transfer_count.div_ceil(SAMPLE_MAX).max(1);
            assert!(indexes.windows(2).all(|pair| pair[1] - pair[0] == stride));
            assert!(indexes[0] < stride, "{transfer_count}: {}", indexes[0]);
            let last = *indexes.last().unwrap_or(&0);
            assert!(last < transfer_count && last + stride >= transfer_count);
            // The same count and seed choose the same transfers.
            let again = Sampler::new(transfer_count, seed);
            again.acknowledge(0, transfer_count);
            assert_eq!(again.indexes(), indexes);
        }
        // 100 million transfers: 10,000 chosen, one every 10,000.
        let sampler = Sampler::new(100_000_000, 42);
        sampler.acknowledge(0, 100_000_000);
        let indexes = sampler.indexes();
        assert_eq!(indexes.len(), 10_000);
        assert_eq!(indexes[1] - indexes[0], 10_000);
    }

    #[test]
    fn sampler_keeps_only_acknowledged_transfers() {
        let sampler = Sampler::new(1_000, 0);
        sampler.acknowledge(0, 500);
        assert_eq!(sampler.indexes(), (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn count_found_names_the_missing_ids() {
        let transfer = |id: u128| {
            let mut bytes = [0; Transfer::SIZE];
            Transfer {
                id,
                ..Transfer::default()
            }
            .encode(&mut bytes);
            bytes
        };
        let requested: Vec<u128> = (1..=20).collect();
        // The reply holds the even ids only.
        let reply: Vec<u8> = requested
            .iter()
            .filter(|&&id| id % 2 == 0)
            .flat_map(|&id| transfer(id))
            .collect();
        let mut returned = Vec::new();
        let mut missing = Vec::new();
        let found = count_found(
            requested.iter().copied(),
            &reply,
            &mut returned,
            &mut missing,
        );
        assert_eq!(found, 10);
        assert_eq!(missing, vec![1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
        // The list stays short however many are missing.
        let found = count_found(21..=40, &[], &mut returned, &mut missing);
        assert_eq!(found, 0);
        assert_eq!(missing.len(), report::MISSING_LISTED_MAX);
    }

    #[test]
    fn window_lines_say_what_they_measured() {
        let window = Window {
            transfers: 20_000_000,
            seconds: 12.5,
            transfers_per_second: 800_000.0,
            rss_bytes: Some(3 << 30),
            rss_anonymous_bytes: Some(1 << 30),
            journal_bytes: Some(2 << 30),
            checkpoint_bytes: Some(512 << 20),
            history_bytes: Some(0),
        };
        assert_eq!(
            window_line(2, &window),
            "window 2: 20,000,000 transfers so far, 800,000 transfers/s over the last 12.50 s; \
             resident 3,072 MiB (anonymous 1,024 MiB); disk: journal 2,048 MiB, checkpoints \
             512 MiB, history none"
        );
        let external = Window {
            rss_bytes: None,
            rss_anonymous_bytes: None,
            journal_bytes: None,
            checkpoint_bytes: None,
            history_bytes: None,
            ..window
        };
        assert_eq!(
            window_line(1, &external),
            "window 1: 20,000,000 transfers so far, 800,000 transfers/s over the last 12.50 s"
        );
    }
}
