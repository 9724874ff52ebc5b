//! `clearline start`: the server. Opens (and recovers) the journal, rebuilds the engine by
//! replay, starts the network thread and runs the core loop until SIGINT or SIGTERM.
//!
//! Threads: the net thread (mio), the core thread (engine and journal appends), and the
//! journal's syncer. The core takes whatever requests are waiting as one batch, applies them in
//! order and hands the replies back; the net thread sends each reply only once the journal's
//! durable sequence reaches its gate. Nobody spins while idle: the core sleeps on the request
//! queue, the net thread in its poller, the syncer on its condition variable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clearline_engine::Config;
use clearline_journal::{Journal, JournalConfig};
use clearline_net::tigerbeetle::gateway::{self, GatewayHandle, GatewayStats};
use clearline_net::{ServerConfig, ServerHandle};

use crate::cli::{Limits, StartArgs, SyncMode};
use crate::core::{core_loop, load_checkpoint_image, Core, HistoryStart, Preload};
use crate::history::{Pipeline, HISTORY_DIR_NAME};
use crate::replica::{NodeJournal, ReplicaConfig, Replication, ReplicationThreads, Tip};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running server: the net thread and the core thread.
pub struct Server {
    net: Option<ServerHandle>,
    /// The TigerBeetle gateway, when asked for (stopped before the net thread).
    tigerbeetle: Option<GatewayHandle>,
    core: Option<JoinHandle<Result<Journal, String>>>,
    stop: Arc<AtomicBool>,
    local_addr: std::net::SocketAddr,
    /// The node's replication, in a group (`--etcd`).
    replication: Option<(Arc<Replication>, ReplicationThreads)>,
}

/// How long a start waits for the journal's lock while the process it restarted from still
/// holds it (a checkpoint writer it forked ends with it).
const JOURNAL_LOCK_WAIT: Duration = Duration::from_secs(10);

/// The journal's folder inside the data directory.
pub const JOURNAL_DIR_NAME: &str = "journal";

/// The journal directory an offline tool should read for `dir`: the `journal` folder when `dir`
/// is a data directory (it has one), else `dir` itself.
pub fn journal_dir_of(dir: &Path) -> PathBuf {
    let inside = dir.join(JOURNAL_DIR_NAME);
    if inside.is_dir() {
        inside
    } else {
        dir.to_path_buf()
    }
}

/// Transfers per history run: a quarter of the memory for recent transfers, at most a million
/// (docs/history.md, "When history is written"). Runs of a sixteenth (at most 262,144) cost a
/// third of the throughput at 100 M transfers (more ingests, more evictions) and did not
/// shorten a restart.
fn history_run_transfers(config: &Config) -> usize {
    (config.transfers_max as usize / 4).clamp(1, 1 << 20)
}

/// In history mode memory must hold every unresolved pending transfer (they never leave it)
/// and a full batch besides, and the rows a full batch can write, or a write could wait for
/// room that never comes.
fn check_history_memory(config: &Config) -> Result<(), String> {
    let needed = u64::from(config.transfers_pending_max) + u64::from(config.batch_events_max);
    if u64::from(config.transfers_max) < needed {
        return Err(format!(
            "in history mode, --transfers-max sizes memory for recent transfers and must be at \
             least --transfers-pending-max plus a full batch ({needed}): unresolved pending \
             transfers stay in memory (docs/history.md)"
        ));
    }
    // A batch may write two balance rows per transfer.
    let rows = 2 * u64::from(config.batch_events_max);
    if u64::from(config.account_balances_max) < rows {
        return Err(format!(
            "in history mode, --account-balances-max sizes memory for recent balance rows and \
             must be at least two per transfer of a full batch ({rows}) (docs/history.md)"
        ));
    }
    Ok(())
}

fn engine_config(limits: &Limits) -> Config {
    Config {
        accounts_max: limits.accounts_max,
        transfers_max: limits.transfers_max,
        transfers_pending_max: limits.transfers_pending_max,
        account_balances_max: limits.account_balances_max,
        markets_max: limits.markets_max,
        orders_max: limits.orders_max,
        fills_max: limits.fills_max,
        ..Config::default()
    }
}

fn server_config(args: &StartArgs) -> ServerConfig {
    let limits = &args.limits;
    ServerConfig {
        connections_max: limits.connections_max as usize,
        connections_per_address_max: limits.connections_per_address_max as usize,
        idle_timeout: Duration::from_millis(limits.connection_idle_timeout_ms),
        requests_in_flight_max: limits.requests_in_flight_max as usize,
        partial_frame_timeout: Duration::from_millis(limits.partial_frame_timeout_ms),
        reply_stall_timeout: Duration::from_millis(limits.reply_timeout_ms),
        input_size_max: usize::try_from(limits.connection_input_size_max).unwrap_or(usize::MAX),
        output_size_max: usize::try_from(limits.connection_output_size_max).unwrap_or(usize::MAX),
        reply_memory_max: usize::try_from(limits.reply_memory_max).unwrap_or(usize::MAX),
        ..ServerConfig::new(args.addr)
    }
}

/// Rough bytes of memory per stored item, from the engine's data structures (records, links
/// and index shares), used only to refuse a configuration that cannot fit in memory.
const ACCOUNT_SIZE_ESTIMATE: u64 = 192;
const TRANSFER_SIZE_ESTIMATE: u64 = 180;
const BALANCE_SIZE_ESTIMATE: u64 = 80;
const ORDER_SIZE_ESTIMATE: u64 = 256;
const FILL_SIZE_ESTIMATE: u64 = 128;
// The books (one pool of order and level slots for `orders_max`, shared by every market, and a
// few hundred bytes per market) are counted exactly by `Engine::books_bytes`.

/// Refuses capacities whose memory the machine does not have, instead of failing an allocation
/// at start-up. Memory is reserved lazily, so this is an upper bound on what the engine can use.
fn check_memory(config: &Config) -> Result<(), String> {
    let needed = u64::from(config.accounts_max) * ACCOUNT_SIZE_ESTIMATE
        + u64::from(config.transfers_max) * TRANSFER_SIZE_ESTIMATE
        + u64::from(config.account_balances_max) * BALANCE_SIZE_ESTIMATE
        + u64::from(config.orders_max) * ORDER_SIZE_ESTIMATE
        + u64::from(config.fills_max) * FILL_SIZE_ESTIMATE
        + clearline_engine::Engine::books_bytes(config);
    let Some(total) = memory_total_bytes() else {
        return Ok(());
    };
    if needed > total {
        return Err(format!(
            "the engine capacities need up to {:.1} GiB of memory and this machine has {:.1} GiB; \
             lower --transfers-max, --accounts-max, --markets-max or the other capacities",
            needed as f64 / f64::from(1u32 << 30),
            total as f64 / f64::from(1u32 << 30)
        ));
    }
    Ok(())
}

/// Physical memory from /proc/meminfo, if readable.
fn memory_total_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Server {
    /// Recovers and starts serving. With `announce`, prints what it recovered and where it
    /// listens.
    ///
    /// # Errors
    /// The data directory cannot be created or locked, the journal is corrupt, the address
    /// cannot be bound, or a limit is out of range.
    pub fn start(args: &StartArgs, announce: bool) -> Result<Server, BoxError> {
        let started = Instant::now();
        // Limits are checked before anything touches the disk.
        let net_config = server_config(args);
        net_config.validate().map_err(|error| {
            format!("the network limit {} is out of range (see --help)", error.0)
        })?;
        let config = engine_config(&args.limits);
        config
            .check()
            .map_err(|field| format!("the engine capacity {field} is out of range (see --help)"))?;
        check_memory(&config)?;
        let replica_config = ReplicaConfig::from_args(&args.replication, args.addr)?;
        if replica_config.is_some() && args.tigerbeetle.tigerbeetle_addr.is_some() {
            return Err(
                "--tigerbeetle-addr does not work with --etcd yet: a replicated node \
                        serves clearline's own protocol only"
                    .into(),
            );
        }
        if args.history.on() {
            check_history_memory(&config)?;
        }
        let journal_config = JournalConfig {
            segment_size: args.limits.segment_size,
            segments_max: args
                .limits
                .journal_segments_max
                .unwrap_or(JournalConfig::default().segments_max),
            sync: match args.sync {
                SyncMode::Data => clearline_journal::SyncMode::Data,
                SyncMode::None => clearline_journal::SyncMode::None,
            },
            archive: args.archive.clone(),
            ..JournalConfig::default()
        };
        journal_config.check().map_err(|error| {
            format!(
                "--segment-size or --journal-segments-max is out of range: {error} (see --help)"
            )
        })?;
        let tigerbeetle_config = crate::tigerbeetle::gateway_config(&args.tigerbeetle);
        if let Some(tigerbeetle_config) = &tigerbeetle_config {
            tigerbeetle_config.validate().map_err(|name| {
                format!("the tigerbeetle limit {name} is out of range (see --help)")
            })?;
            drop(
                std::net::TcpListener::bind(tigerbeetle_config.addr).map_err(|error| {
                    format!("cannot serve on {}: {error}", tigerbeetle_config.addr)
                })?,
            );
        }
        // A taken address is reported before recovery rather than after it; the real bind
        // happens when the network thread starts.
        drop(
            std::net::TcpListener::bind(args.addr)
                .map_err(|error| format!("cannot serve on {}: {error}", args.addr))?,
        );
        std::fs::create_dir_all(&args.data)
            .map_err(|error| format!("cannot create {}: {error}", args.data.display()))?;
        // A diverged node's data is set aside, and a backup that caught up from its primary's
        // checkpoint starts from what it received.
        for done in crate::replica::apply_pending_moves(&args.data)? {
            say!("clearline: {done}");
        }
        let journal_dir = args.data.join(JOURNAL_DIR_NAME);
        let opening = Instant::now();
        // While the journal is scanned, another thread opens the history store and loads the
        // newest checkpoint: neither depends on the scan, and the journal's lock is held.
        let history_on = args.history.on();
        let lock_wait_until = Instant::now() + JOURNAL_LOCK_WAIT;
        let (journal, recovery, (history, store_open, preload)) = loop {
            let opened = Journal::open_overlapped(&journal_dir, &journal_config, |checkpoint| {
                let opening = Instant::now();
                let history = if history_on {
                    let run_transfers = history_run_transfers(&config);
                    Pipeline::open(&args.data, &config, run_transfers)
                        .map(|pipeline| {
                            Some(HistoryStart {
                                pipeline,
                                ids_max: args.ids_max,
                            })
                        })
                        .map_err(|error| {
                            format!(
                                "history store {}: {error}",
                                args.data.join(HISTORY_DIR_NAME).display()
                            )
                        })
                } else {
                    Ok(None)
                };
                let store_open = opening.elapsed();
                let preload = match (&history, checkpoint) {
                    (Ok(history), Some(checkpoint)) => {
                        let loading = Instant::now();
                        let engine =
                            load_checkpoint_image(&config, &checkpoint.image, history.as_ref());
                        Some(Preload {
                            engine,
                            took: loading.elapsed(),
                        })
                    }
                    _ => None,
                };
                (history, store_open, preload)
            });
            match opened {
                Err(clearline_journal::JournalError::Locked { .. })
                    if replica_config.is_some() && Instant::now() < lock_wait_until =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => {
                    break other
                        .map_err(|error| format!("journal {}: {error}", journal_dir.display()))?
                }
            }
        };
        let journal_open = opening.elapsed();
        if let Some(truncation) = &recovery.truncated {
            warn!("clearline: recovery dropped an unacknowledged tail: {truncation}");
        }
        let checkpoint_interval_bytes = args.checkpoint_interval_mib.saturating_mul(1 << 20);
        let history = history?;
        let (mut core, replayed) = Core::recover(
            &config,
            &args.data,
            journal,
            &recovery,
            checkpoint_interval_bytes,
            history,
            preload,
        )?;
        if announce {
            let what = match replayed.checkpoint {
                Some(sequence) => format!(
                    "the checkpoint at sequence {sequence} and {} journal records after it",
                    replayed.records
                ),
                None => format!("{} records", replayed.records),
            };
            let (store_times, replay_times) = if history_on {
                (
                    format!(
                        " and the history store opened in {:.3} s",
                        store_open.as_secs_f64()
                    ),
                    format!(
                        ", of it {:.3} s waiting for the store, memory populated {:.3} s after \
                         it",
                        replayed.history_wait.as_secs_f64(),
                        replayed.populate_wait.as_secs_f64()
                    ),
                )
            } else {
                (String::new(), String::new())
            };
            say!(
                "clearline: recovered {what} (last timestamp {}) from {} in {:.3} s (journal \
                 opened and scanned in {:.3} s, the checkpoint loaded in {:.3} s{store_times} \
                 alongside the scan; journal replayed in {:.3} s{replay_times})",
                replayed.timestamp_last,
                journal_dir.display(),
                started.elapsed().as_secs_f64(),
                journal_open.as_secs_f64(),
                replayed.load.as_secs_f64(),
                replayed.replay.as_secs_f64(),
            );
            if args.sync == SyncMode::None {
                say!(
                    "clearline: --sync none: replies do not wait for the disk; a machine crash \
                     can lose acknowledged requests"
                );
            }
        }

        let durability = core.journal_mut().durability();
        // In a group, replies wait for the backups' acknowledgements too: the net thread reads
        // the replication's gate instead of the journal's durable sequence.
        let durable = match &replica_config {
            Some(_) => Arc::new(std::sync::atomic::AtomicU64::new(
                durability.durable_sequence(),
            )),
            None => durability.durable_shared(),
        };
        let (net, core_side) = clearline_net::start(&net_config, Arc::clone(&durable))
            .map_err(|error| format!("cannot serve on {}: {error}", args.addr))?;
        let local_addr = net.local_addr();
        let waker = net.waker();
        let replication = match replica_config {
            Some(mut replica_config) => {
                if args.replication.advertise_addr.is_none() {
                    replica_config.client_addr = local_addr;
                }
                let journal = core.journal_mut();
                let mut reader = journal
                    .reader()
                    .map_err(|error| format!("journal {}: {error}", journal_dir.display()))?;
                let written = journal.written_sequence();
                let checksum = reader
                    .checksum_at(written)
                    .map_err(|error| format!("journal {}: {error}", journal_dir.display()))?
                    .unwrap_or(0);
                let facts = crate::node::journal_facts(journal);
                let hold = journal.retention_hold();
                let epoch = core
                    .journal_epoch()
                    .map_or(0, |record| record.epoch)
                    .max(crate::node::epoch_from_file(&args.data));
                let tip = Tip {
                    sequence: written,
                    checksum,
                };
                let journal = NodeJournal {
                    durability: Arc::clone(&durability),
                    reader,
                    tip,
                    epoch,
                    facts,
                    hold,
                    data: args.data.clone(),
                    store: core.history_store(),
                    history: history_on,
                };
                Some(Replication::start(
                    replica_config,
                    Arc::clone(&durable),
                    journal,
                )?)
            }
            None => None,
        };
        let tigerbeetle = match &tigerbeetle_config {
            Some(tigerbeetle_config) => Some(
                gateway::start(
                    tigerbeetle_config,
                    core_side.injector(),
                    Arc::clone(&durable),
                )
                .map_err(|error| format!("cannot serve on {}: {error}", tigerbeetle_config.addr))?,
            ),
            None => None,
        };
        let link = tigerbeetle.as_ref().map(GatewayHandle::link);
        if let Some(replication) = &replication {
            let waker = waker.clone();
            replication.set_wake(Box::new(move || waker.wake()));
        }
        {
            let link = link.clone();
            let replication = replication.clone();
            core.journal_mut().on_durable(Box::new(move |_sequence| {
                match &replication {
                    // The acknowledger wakes the net thread once the backups have it too.
                    Some(replication) => replication.durable_moved(),
                    None => waker.wake(),
                }
                if let Some(link) = &link {
                    link.wake();
                }
            }));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (core_thread, replication) = match replication {
            None => {
                let stop = Arc::clone(&stop);
                let thread = std::thread::Builder::new()
                    .name("clearline-core".to_string())
                    .spawn(move || core_loop(core, &core_side, link.as_deref(), &stop, None))?;
                (thread, None)
            }
            Some(replication) => {
                let (sender, inbox) = crate::replica::inbox();
                let threads = replication.start_threads(sender)?;
                let stop = Arc::clone(&stop);
                let node = Arc::clone(&replication);
                let data = args.data.clone();
                let thread = std::thread::Builder::new()
                    .name("clearline-core".to_string())
                    .spawn(move || {
                        crate::node::node_loop(
                            core,
                            &core_side,
                            link.as_deref(),
                            &stop,
                            &node,
                            &inbox,
                            &data,
                        )
                    })?;
                (thread, Some((replication, threads)))
            }
        };
        if announce {
            if let Some(tigerbeetle) = &tigerbeetle {
                say!(
                    "clearline: tigerbeetle clients on {} (cluster {})",
                    tigerbeetle.local_addr(),
                    args.tigerbeetle.tigerbeetle_cluster_id
                );
            }
            say!("clearline: listening on {local_addr}");
            if let Some((replication, _)) = &replication {
                say!(
                    "clearline: node {} of replication group {}; backups connect to {}",
                    replication.node_id(),
                    args.replication.group,
                    replication.peer_addr()
                );
            }
        }
        Ok(Server {
            net: Some(net),
            tigerbeetle,
            core: Some(core_thread),
            stop,
            local_addr,
            replication,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// What the TigerBeetle gateway did so far, if it runs.
    pub fn tigerbeetle_stats(&self) -> Option<GatewayStats> {
        self.tigerbeetle.as_ref().map(GatewayHandle::stats)
    }

    /// Why the process must start again from its journal (a replicated node that lost its
    /// lease, or whose journal was cut back to the primary's), once that is decided.
    pub fn restart_reason(&self) -> Option<String> {
        self.replication
            .as_ref()
            .and_then(|(replication, _)| replication.restart_reason())
    }

    /// Whether the core thread has stopped (a fatal journal error).
    pub fn core_finished(&self) -> bool {
        self.core.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops reading, sends every reply that becomes durable, syncs and closes the journal.
    ///
    /// # Errors
    /// The core stopped on a journal failure, or the final sync failed.
    pub fn shutdown(mut self) -> Result<(), BoxError> {
        // The gateway first: its requests still executing need the core and the net thread's
        // `durable` updates, which both keep running until the net thread ends.
        if let Some(tigerbeetle) = self.tigerbeetle.take() {
            tigerbeetle.shutdown()?;
        }
        if let Some(net) = self.net.take() {
            let result = net.shutdown();
            self.stop.store(true, Ordering::Release);
            result?;
        }
        self.stop.store(true, Ordering::Release);
        let core = self.core.take().expect("the core thread is joined once");
        let journal = core.join().map_err(|_| "the core thread panicked");
        if let Some((replication, threads)) = self.replication.take() {
            replication.stop();
            threads.join();
        }
        journal?
            .map_err(|error| error.to_string())?
            .close()
            .map_err(|error| format!("final journal sync failed: {error}"))?;
        Ok(())
    }
}

/// Runs `clearline start` until SIGINT or SIGTERM.
pub fn run(args: &StartArgs) -> Result<(), Box<dyn std::error::Error>> {
    let signal = Arc::new(AtomicBool::new(false));
    for number in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(number, Arc::clone(&signal))?;
    }
    // The error keeps its type, so `main` can give a replay failure its own exit code.
    let server =
        Server::start(args, true).map_err(|error| -> Box<dyn std::error::Error> { error })?;
    while !signal.load(Ordering::Acquire) && !server.core_finished() {
        if let Some(reason) = server.restart_reason() {
            // Nothing more is acknowledged (the reply gate stopped when this was decided); the
            // journal holds every record, as after a crash.
            say!("clearline: starting again from the journal: {reason}");
            return Err(restart_process().into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopping_for_signal = signal.load(Ordering::Acquire);
    if stopping_for_signal {
        say!("clearline: stopping: answering what is durable, then syncing");
    }
    if let Some(stats) = server.tigerbeetle_stats() {
        say!("clearline: {}", crate::tigerbeetle::describe(&stats));
    }
    server.shutdown().map_err(|error| error.to_string())?;
    if stopping_for_signal {
        say!("clearline: stopped");
        Ok(())
    } else {
        Err("the core stopped".into())
    }
}

/// Replaces this process with a fresh start of the same command line; returns only on failure.
fn restart_process() -> String {
    use std::os::unix::process::CommandExt as _;
    // The binary's path keeps the process's name; /proc/self/exe works even if the file was
    // replaced since.
    let program = std::env::current_exe()
        .ok()
        .filter(|path| path.exists())
        .unwrap_or_else(|| "/proc/self/exe".into());
    let error = std::process::Command::new(program)
        .arg0(
            std::env::args_os()
                .next()
                .unwrap_or_else(|| "clearline".into()),
        )
        .args(std::env::args_os().skip(1))
        .exec();
    format!("cannot start again: {error}")
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use clearline_engine::Engine;

    use super::*;
    use crate::cli::{Cli, Command};

    fn start_args(flags: &[&str]) -> StartArgs {
        let words = ["clearline", "start"].iter().chain(flags);
        match Cli::try_parse_from(words).expect("the flags parse").command {
            Command::Start(args) => *args,
            other => panic!("not start: {other:?}"),
        }
    }

    /// Each default is written once, in the library that owns it; `start` without flags runs
    /// with exactly those values.
    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let args = start_args(&[]);
        assert_eq!(engine_config(&args.limits), Config::default());
        let net = server_config(&args);
        let defaults = ServerConfig::new(args.addr);
        assert_eq!(net.connections_max, defaults.connections_max);
        assert_eq!(net.requests_in_flight_max, defaults.requests_in_flight_max);
        assert_eq!(net.partial_frame_timeout, defaults.partial_frame_timeout);
        assert_eq!(net.reply_stall_timeout, defaults.reply_stall_timeout);
        assert_eq!(net.input_size_max, defaults.input_size_max);
        assert_eq!(net.output_size_max, defaults.output_size_max);
        let journal = JournalConfig::default();
        assert_eq!(args.limits.segment_size, journal.segment_size);
        assert_eq!(args.limits.journal_segments_max, None);
    }

    #[test]
    fn flags_reach_the_configurations() {
        let args = start_args(&["--markets-max", "7", "--requests-in-flight-max", "40"]);
        assert_eq!(engine_config(&args.limits).markets_max, 7);
        assert_eq!(server_config(&args).requests_in_flight_max, 40);
    }

    /// The default capacities take 10,000 markets, and the markets add little to what the
    /// memory check counts: the books share one pool sized by --orders-max.
    #[test]
    fn default_limits_hold_ten_thousand_markets() {
        let config = engine_config(&start_args(&[]).limits);
        assert!(config.markets_max >= 10_000, "{}", config.markets_max);
        config.check().expect("the default configuration is valid");
        let no_markets = Config {
            markets_max: 0,
            ..config
        };
        let markets_bytes = Engine::books_bytes(&config) - Engine::books_bytes(&no_markets);
        assert!(
            markets_bytes <= u64::from(config.markets_max) * 512,
            "{markets_bytes} bytes for {} markets",
            config.markets_max
        );
    }
}
