//! Command-line arguments of every subcommand, with their defaults and help texts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clearline_engine::Config;
use clearline_journal::JournalConfig;
use clearline_net::tigerbeetle::gateway::GatewayConfig;
use clearline_net::ServerConfig;

/// clearline: a low-latency in-memory settlement and matching engine.
///
/// One process keeps double-entry accounts and transfers, matches orders and settles every fill
/// as ledger transfers, journals each batch durably before it answers, and serves fixed-size
/// binary frames over TCP (see docs/protocol.md).
#[derive(Parser, Debug)]
#[command(name = "clearline", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the data directory if needed, recover from the journal, and serve.
    ///
    /// Exit codes: 0 after SIGINT or SIGTERM, 3 when a journal record cannot be replayed (a
    /// restart gives the same result: see the message), 1 for any other failure.
    #[command(after_long_help = START_AFTER_HELP)]
    Start(Box<StartArgs>),
    /// An interactive client: create accounts and transfers, look things up.
    Repl(ReplArgs),
    /// The standard load test: transfers in batches over TCP, throughput and latency.
    ///
    /// Two ways to pace the load, measuring different things:
    ///
    /// - closed loop (the default): each client sends its next request when the previous reply
    ///   arrives, and latency runs from the actual send to the reply. This measures the most the
    ///   server can do (throughput), but a stall also delays the requests that would have been
    ///   sent during it, so their waiting is never counted (coordinated omission): read its
    ///   percentiles as service time, not as what users at a given load would see.
    ///
    /// - open loop (--rate N): requests leave on a fixed schedule of N per second, and latency
    ///   runs from each request's planned send time to its reply, so time spent queued behind a
    ///   stall is counted. This measures latency at a given load. If the achieved rate falls
    ///   short of N, the server (or the client) could not keep up and the latencies measure the
    ///   backlog.
    ///
    /// `--output FILE.json` saves the run (schema in docs/benchmark.md); `benchmark compare`
    /// compares saved runs.
    Benchmark(BenchmarkArgs),
    /// Read a journal offline (while no server uses it).
    #[command(subcommand)]
    Journal(JournalCommand),
}

/// Default of `--checkpoint-interval-mib`: three quarters of a default journal segment. A
/// restart replays at most this much journal (about 6 M transfers in full batches); on the
/// 2-core benchmark machine that keeps a restart after 100 M transfers under 10 s
/// (docs/durability.md).
pub const CHECKPOINT_INTERVAL_MIB: u64 = 768;

/// Printed after `clearline start --help`.
const START_AFTER_HELP: &str = "Every capacity is fixed at start-up; nothing grows while the \
server runs. docs/limits.md lists each limit, its default, its memory cost and what a client \
sees when it is reached.";

/// Offline journal tools.
#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// Check every record and checkpoint (a journal whose first segments were retired is
    /// checked from its first kept record); exit 0 if all are intact, 1 with the first problem
    /// (a directory without any journal segment is a problem, never OK).
    Verify {
        /// The data directory (as given to `start --data`) or its `journal` folder.
        dir: PathBuf,
    },
    /// Print segments, record counts, sequence and time ranges, checkpoints and the retired
    /// segments; exit 1 when the directory holds no journal.
    Inspect {
        /// The data directory (as given to `start --data`) or its `journal` folder.
        dir: PathBuf,
    },
}

/// How the journal makes records durable.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Every reply waits for a data sync that covers its request (group commit).
    Data,
    /// No syncs: a crash of the machine (not only of the process) can lose acknowledged
    /// requests. For benchmarks and tests only.
    None,
}

/// Arguments of `clearline start`.
#[derive(Args, Debug, Clone)]
pub struct StartArgs {
    /// Data directory; created on first start. The journal lives in DATA/journal.
    #[arg(long, default_value = "./data")]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub addr: SocketAddr,
    /// Durability of replies: `data` syncs before replying; `none` risks acknowledged requests
    /// on a machine crash.
    #[arg(long, value_enum, default_value_t = SyncMode::Data)]
    pub sync: SyncMode,
    /// Write a checkpoint of the engine's state each time the journal has grown by this many
    /// MiB since the last one (0: never). A restart loads the newest valid checkpoint and
    /// replays only the journal after it, and journal segments that the two newest checkpoints
    /// cover are retired. The core pauses only to fork the process that writes the file
    /// (docs/durability.md, "Checkpoints, retirement and disk use").
    #[arg(long, default_value_t = CHECKPOINT_INTERVAL_MIB, value_name = "MIB")]
    pub checkpoint_interval_mib: u64,
    /// Move retired journal segments into DIR (created if missing) instead of deleting them,
    /// to keep every request for audit. Nothing in DIR is read by the server again.
    #[arg(long, value_name = "DIR")]
    pub archive: Option<PathBuf>,
    /// History mode, on unless --no-history (docs/history.md).
    #[command(flatten)]
    pub history: HistorySwitch,
    /// History mode: transfer ids the in-memory id filter is sized for, at 2 bytes each. More
    /// ids than this still work, with more store reads for new ids. Keep it the same across
    /// restarts: a checkpoint's filter is only loaded at its own size.
    #[arg(long, default_value_t = IDS_MAX_DEFAULT, value_name = "N")]
    pub ids_max: u64,
    /// Engine capacities and network limits.
    #[command(flatten)]
    pub limits: Limits,
    /// TigerBeetle's client protocol on a second port (off unless --tigerbeetle-addr is given).
    #[command(flatten)]
    pub tigerbeetle: TigerBeetleArgs,
    /// Replication (off unless --etcd is given; docs/replication.md).
    #[command(flatten)]
    pub replication: ReplicationArgs,
}

/// The primary's lease in etcd by default, in seconds (`--lease-ttl-seconds`).
pub const LEASE_TTL_SECONDS_DEFAULT: u64 = 2;

/// A replication group: a primary streams its journal to backups, and etcd decides who is
/// primary (docs/replication.md, "Running a group").
#[derive(Args, Debug, Clone, Default)]
pub struct ReplicationArgs {
    /// Join a replication group whose leadership lives in this etcd cluster: comma-separated
    /// client URLs, for example http://127.0.0.1:2379. Off (a single node) unless given.
    #[arg(long, value_name = "URLS")]
    pub etcd: Option<String>,
    /// This node's id in the group: unique, never zero. Needed with --etcd.
    #[arg(long, value_name = "N")]
    pub node_id: Option<u64>,
    /// Where this node streams its journal to backups while it is primary, and what backups
    /// connect to. Needed with --etcd.
    #[arg(long, value_name = "ADDR")]
    pub peer_addr: Option<SocketAddr>,
    /// The address clients are redirected to while this node is primary (default: --addr).
    /// Set it when --addr is 0.0.0.0 or behind a translation.
    #[arg(long, value_name = "ADDR")]
    pub advertise_addr: Option<SocketAddr>,
    /// The group's name: its keys in etcd live under /clearline/GROUP/.
    #[arg(long, default_value = "default", value_name = "GROUP")]
    pub group: String,
    /// Nodes in the group, this one included. With --ack-backups it decides how many backups
    /// a new primary must hear from before it takes over (docs/replication.md, "Who takes
    /// over").
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub group_size: u32,
    /// A primary answers a write only once it is durable on itself and on this many backups
    /// (0: on itself only, as a single node; a failover may then lose acknowledged writes).
    /// Default: 1 when the group has backups.
    #[arg(long, value_name = "K")]
    pub ack_backups: Option<u32>,
    /// The primary's lease in etcd, in whole seconds (1 to 60; etcd raises it to its minimum,
    /// 2 s by default). A primary that cannot renew it stops acknowledging before it expires;
    /// a backup takes over after it expires.
    #[arg(long, default_value_t = LEASE_TTL_SECONDS_DEFAULT, value_name = "SECONDS")]
    pub lease_ttl_seconds: u64,
    /// While primary, send a backup that catches up from a checkpoint (its checkpoint file,
    /// the start of a segment and a copy of the history store) at most this many MiB per
    /// second, to leave the network and disks to the clients (0: as fast as they go). See
    /// docs/replication.md, "Catching up from a checkpoint".
    #[arg(long, default_value_t = 0, value_name = "MIB")]
    pub catch_up_mib_per_second: u64,
}

/// History mode (docs/history.md), on by default: `--history` (kept for scripts that name it)
/// and `--no-history`; the last one given wins.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct HistorySwitch {
    /// History mode, the default: keep every transfer, burned id, resolution and balance row
    /// in the history store (DATA/history) and only recent ones in memory, so the ledger never
    /// stops at a count. --transfers-max and --account-balances-max then size the memory for
    /// recent records (and half of --transfers-max the recent burned ids), not the ledger; a
    /// write waits while the store catches up (docs/history.md). A data directory written
    /// without history mode is converted on its first start with it only while its journal
    /// still starts at its first record.
    #[arg(long, overrides_with = "no_history")]
    history: bool,
    /// Keep every record in memory instead of history mode: the ledger stops at
    /// --transfers-max transfers (code 200) and --account-balances-max balance rows (code
    /// 202). A data directory keeps the mode it was written with: a checkpoint written in one
    /// mode is not loaded in the other.
    #[arg(long, overrides_with = "history")]
    no_history: bool,
}

impl HistorySwitch {
    /// Whether history mode is on.
    pub fn on(self) -> bool {
        !self.no_history
    }
}

/// Default of `--ids-max`: 128 Mi ids, a 256 MiB filter.
pub const IDS_MAX_DEFAULT: u64 = 1 << 27;

/// Serving TigerBeetle's official clients (release 0.17.8) beside our own protocol; see
/// docs/tigerbeetle-compatibility.md.
#[derive(Args, Debug, Clone)]
pub struct TigerBeetleArgs {
    /// Also serve TigerBeetle's client protocol on this address (for example 127.0.0.1:3000),
    /// so its official clients work unchanged. Off unless given.
    #[arg(long)]
    pub tigerbeetle_addr: Option<SocketAddr>,
    /// The cluster id TigerBeetle clients must use (their `cluster_id`).
    #[arg(long, default_value_t = 0)]
    pub tigerbeetle_cluster_id: u128,
    /// Most TigerBeetle client connections at once; more are refused.
    #[arg(long, default_value_t = GatewayConfig::CONNECTIONS_MAX as u32)]
    pub tigerbeetle_connections_max: u32,
    /// Most TigerBeetle client sessions; registering one more evicts the least recently used
    /// idle client. Each keeps its last reply (up to 1 MiB) for repeated requests.
    #[arg(long, default_value_t = GatewayConfig::SESSIONS_MAX as u32)]
    pub tigerbeetle_sessions_max: u32,
    /// Requests executing per TigerBeetle connection before the server stops reading it.
    #[arg(long, default_value_t = GatewayConfig::REQUESTS_IN_FLIGHT_MAX as u32)]
    pub tigerbeetle_requests_in_flight_max: u32,
    /// A TigerBeetle connection that sends nothing (not even its 30 s ping) for this many
    /// milliseconds is closed.
    #[arg(long, default_value_t = GatewayConfig::IDLE_TIMEOUT.as_millis() as u64)]
    pub tigerbeetle_idle_timeout_ms: u64,
}

impl Default for TigerBeetleArgs {
    fn default() -> TigerBeetleArgs {
        TigerBeetleArgs {
            tigerbeetle_addr: None,
            tigerbeetle_cluster_id: 0,
            tigerbeetle_connections_max: GatewayConfig::CONNECTIONS_MAX as u32,
            tigerbeetle_sessions_max: GatewayConfig::SESSIONS_MAX as u32,
            tigerbeetle_requests_in_flight_max: GatewayConfig::REQUESTS_IN_FLIGHT_MAX as u32,
            tigerbeetle_idle_timeout_ms: GatewayConfig::IDLE_TIMEOUT.as_millis() as u64,
        }
    }
}

/// Capacities and limits, all chosen at start-up.
///
/// Each default is read from the engine's `Config::default()`, the network's `ServerConfig`
/// constants or the journal's `JournalConfig::default()`, so each number is written once.
/// Engine capacities are per store and never grow: a request that would need more gets a
/// result code in its reply (the request is journaled; the id is not burned, so a retry after
/// room is made may succeed). Network limits never fail a request: the server stops reading a
/// connection, or closes one that breaks a deadline.
#[derive(Args, Debug, Clone)]
pub struct Limits {
    /// Most accounts. When full, create_accounts answers `accounts_capacity_exceeded` (200)
    /// for each further account.
    #[arg(long, default_value_t = Config::default().accounts_max)]
    pub accounts_max: u32,
    /// Memory for transfers (posts, voids and settlement transfers included; half as many
    /// again for ids burned by failed transfers). In history mode (the default) it holds recent
    /// ones and unresolved pending ones, and nothing is refused for it: a write waits for the
    /// history store. With --no-history it holds every transfer, and when full create_transfers
    /// answers `transfers_capacity_exceeded` (200) and place, cancel and amend answer
    /// `transfers_capacity_exceeded` (1037).
    #[arg(long, default_value_t = Config::default().transfers_max)]
    pub transfers_max: u32,
    /// Most pending transfers unresolved at once (each resting order holds one). When reached,
    /// a pending transfer gets `pending_transfers_capacity_exceeded` (201) and order commands
    /// `transfers_capacity_exceeded` (1037).
    #[arg(long, default_value_t = Config::default().transfers_pending_max)]
    pub transfers_pending_max: u32,
    /// Memory for balance-history rows (one per transfer side on an account with the `history`
    /// flag): recent ones in history mode (the default), where nothing is refused for it. With
    /// --no-history it holds every row, and when full such a transfer gets
    /// `account_balances_capacity_exceeded` (202).
    #[arg(long, default_value_t = Config::default().account_balances_max)]
    pub account_balances_max: u32,
    /// Most markets. All books share one pool of --orders-max order slots, so a market costs
    /// a few hundred bytes until orders rest in it. When full, create_markets answers
    /// `markets_capacity_exceeded` (1118).
    #[arg(long, default_value_t = Config::default().markets_max)]
    pub markets_max: u32,
    /// Memory for orders: resting ones, and finished ones (filled, canceled, expired) not yet
    /// in the history store; resting orders of all markets share one pool of this size. In
    /// history mode (the default) finished orders move to the store and a write waits for it;
    /// a place is answered `orders_capacity_exceeded` (1029) only when resting orders fill
    /// memory. With --no-history it holds every order, and when full a place gets 1029.
    #[arg(long, default_value_t = Config::default().orders_max)]
    pub orders_max: u32,
    /// Memory for fills: recent ones in history mode (the default), where a write waits for
    /// the history store (each place or amend keeps room for 128 fills). With --no-history it
    /// holds every fill, and when fewer than 128 are free order commands answer
    /// `fills_capacity_exceeded` (1036).
    #[arg(long, default_value_t = Config::default().fills_max)]
    pub fills_max: u32,
    /// Most client connections at once. Further connections are accepted and closed at once;
    /// open ones are not affected.
    #[arg(long, default_value_t = count_u32(ServerConfig::CONNECTIONS_MAX))]
    pub connections_max: u32,
    /// Most connections at once from one IP address; more from it are accepted and closed at
    /// once, so one peer cannot take the whole table. Clients behind one NAT share an address.
    #[arg(long, default_value_t = count_u32(ServerConfig::CONNECTIONS_PER_ADDRESS_MAX))]
    pub connections_per_address_max: u32,
    /// A connection with no request in flight, no reply unsent and no partial frame that sends
    /// nothing for this many milliseconds is closed.
    #[arg(long, default_value_t = milliseconds(ServerConfig::IDLE_TIMEOUT))]
    pub connection_idle_timeout_ms: u64,
    /// Most requests one connection has unanswered. Above it the server stops reading that
    /// connection until replies go out (nothing is dropped); clients may always pipeline 16.
    #[arg(long, default_value_t = count_u32(ServerConfig::REQUESTS_IN_FLIGHT_MAX))]
    pub requests_in_flight_max: u32,
    /// A connection whose partial frame is older than this many milliseconds is closed.
    #[arg(long, default_value_t = milliseconds(ServerConfig::PARTIAL_FRAME_TIMEOUT))]
    pub partial_frame_timeout_ms: u64,
    /// A connection that does not read its replies for this many milliseconds is closed.
    #[arg(long, default_value_t = milliseconds(ServerConfig::REPLY_STALL_TIMEOUT))]
    pub reply_timeout_ms: u64,
    /// Bytes of unparsed input buffered per connection (at least one 64-byte header; a body
    /// is read into its own pooled buffer). When full, the server stops reading it.
    #[arg(long, default_value_t = bytes(ServerConfig::INPUT_SIZE_MAX))]
    pub connection_input_size_max: u64,
    /// Bytes of reply memory per connection (at least one largest frame, 1 MiB): each request
    /// reserves the largest reply it can get until that reply is sent, and a request that does
    /// not fit waits while the server stops reading the connection.
    #[arg(long, default_value_t = bytes(ServerConfig::OUTPUT_SIZE_MAX))]
    pub connection_output_size_max: u64,
    /// Bytes of reply memory over all connections (at least 1 MiB), reserved the same way; when
    /// it is all reserved, connections with a new request wait until replies are sent.
    #[arg(long, default_value_t = bytes(ServerConfig::REPLY_MEMORY_MAX))]
    pub reply_memory_max: u64,
    /// Journal segment size in bytes, preallocated when the segment is created (one largest
    /// request must fit: at least 1,052,864 bytes, a multiple of 64).
    #[arg(long, default_value_t = JournalConfig::default().segment_size)]
    pub segment_size: u64,
    /// Most journal segment files, the spare included (at least 2). Records fill all but the
    /// last, which is kept spare. When no record fits, every write gets frame status 8
    /// `storage_full`, reads are still served and due expiries wait; a full disk does the same.
    /// Without it the journal grows until the disk is full.
    #[arg(long)]
    pub journal_segments_max: Option<u64>,
}

/// A network count default as the flag's type (the constants are far below `u32::MAX`).
fn count_u32(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// A byte-size default as the flag's type.
fn bytes(size: usize) -> u64 {
    u64::try_from(size).unwrap_or(u64::MAX)
}

/// A duration default in whole milliseconds.
fn milliseconds(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Arguments of `clearline repl`.
#[derive(Args, Debug)]
pub struct ReplArgs {
    /// Address of the server.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub addr: SocketAddr,
    /// Run these statements (separated by `;`) and exit instead of reading standard input.
    #[arg(long)]
    pub command: Option<String>,
}

/// How benchmark transfers pick their accounts.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountDistribution {
    /// Every account equally likely.
    Uniform,
    /// A few accounts take most transfers.
    Zipfian,
    /// Recently created accounts are more likely.
    Latest,
}

/// The y axis of a latency plot.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotScale {
    /// Logarithmic: p50 and the maximum stay readable together.
    Log,
    /// Linear, from zero to the maximum.
    Linear,
}

/// Subcommands of `clearline benchmark`.
#[derive(Subcommand, Debug, Clone)]
pub enum BenchmarkCommand {
    /// Compare saved runs (`--output` files): a side-by-side table of throughput and
    /// percentiles, each as a ratio to the first run, and optionally one plot of all of them.
    Compare(CompareArgs),
}

/// Arguments of `clearline benchmark compare`.
#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Result files written by `clearline benchmark --output`; the first is the reference for
    /// the ratios. One file alone prints its table and can be plotted again.
    #[arg(required = true, value_name = "FILE.json")]
    pub files: Vec<PathBuf>,
    /// Draw every run's latency distribution into this SVG file, with a legend.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// The y axis of the plot.
    #[arg(long, value_enum, default_value_t = PlotScale::Log)]
    pub plot_scale: PlotScale,
}

/// Arguments of `clearline benchmark`; the names and defaults follow TigerBeetle's benchmark so
/// the two run side by side.
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchmarkArgs {
    /// Compare saved runs instead of running one.
    #[command(subcommand)]
    pub command: Option<BenchmarkCommand>,
    /// Server to load; without it the benchmark starts its own on a fresh temporary directory.
    /// A node of a replication group may be given: a backup's redirect is followed.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Start the own server as a replication group of this many nodes, each a `clearline
    /// start` child process with its own temporary data directory, and load its primary.
    /// Needs --etcd. 0: one server, no group (docs/replication.md, "Benchmarking a group").
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub group_size: u32,
    /// With --group-size: the backups that must hold a write durably before the primary
    /// answers it (default: 1 when the group has backups).
    #[arg(long, value_name = "K")]
    pub ack_backups: Option<u32>,
    /// With --group-size: the etcd cluster the group's leadership lives in, as comma-separated
    /// client URLs (for example http://127.0.0.1:2379).
    #[arg(long, value_name = "URLS")]
    pub etcd: Option<String>,
    /// Accounts to create before the transfers.
    #[arg(long, default_value_t = 10_000)]
    pub account_count: u32,
    /// How transfers pick their debit and credit accounts.
    #[arg(long, value_enum, default_value_t = AccountDistribution::Uniform)]
    pub account_distribution: AccountDistribution,
    /// Transfers to send.
    #[arg(long, default_value_t = 10_000_000)]
    pub transfer_count: u64,
    /// Transfers per request.
    #[arg(long, default_value_t = 8_189)]
    pub transfer_batch_count: u32,
    /// Send pending transfers (and post them) instead of single-phase ones.
    #[arg(long)]
    pub transfer_pending: bool,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 1)]
    pub clients: u32,
    /// Open loop: send this many requests per second in total on a fixed schedule and time each
    /// reply from its planned send time (latency at this load, stalls included). Without it the
    /// load is closed loop: latency from the actual send (service time; throughput).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Draw the request latency percentiles into this SVG file, with the baselines as
    /// reference lines.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// The y axis of the plot.
    #[arg(long, value_enum, default_value_t = PlotScale::Log)]
    pub plot_scale: PlotScale,
    /// Save the run (command line, commit, machine, baselines, throughput, percentiles, full
    /// histogram) as JSON in this file; the schema is in docs/benchmark.md.
    #[arg(long, value_name = "FILE.json")]
    pub output: Option<PathBuf>,
    /// Durability of the benchmark's own server.
    #[arg(long, value_enum, default_value_t = SyncMode::Data)]
    pub sync: SyncMode,
    /// Seed of the workload.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Send an order flow to one market instead of transfers: 9% good-till-cancel, 3%
    /// immediate-or-cancel, 6% cancel, 82% amend; every fill settles through the ledger. Then
    /// --transfer-count counts order commands and --transfer-batch-count commands per round.
    #[arg(long)]
    pub orders: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Print one line each time this many more transfers are acknowledged: the rate over that
    /// window and, for the own server, memory and disk split into journal, checkpoints and
    /// history. The summary compares the first and the last window (docs/benchmark.md).
    #[arg(long, default_value_t = 10_000_000, value_name = "N")]
    pub window_count: u64,
    /// Skip the lookup at the end of a sample of at most 10,000 acknowledged transfer ids
    /// spread over the whole run (without this flag a missing id fails the run).
    #[arg(long)]
    pub no_sample_lookup: bool,
    /// Run the own server as a child process (`clearline start`), and at the end kill it with
    /// SIGKILL, start it again on the same data directory, time until it answers, and check
    /// that balances and the sample are the same as before the kill.
    #[arg(long)]
    pub restart_check: bool,
    /// The own server's mode: history mode unless --no-history (`clearline start`,
    /// docs/history.md), with memory for --history-memory-transfers recent transfers; with
    /// --no-history, memory for the whole run.
    #[command(flatten)]
    pub history: HistorySwitch,
    /// History mode: recent transfers the server keeps in memory (its --transfers-max).
    #[arg(long, default_value_t = 4_194_304, value_name = "N")]
    pub history_memory_transfers: u32,
}
