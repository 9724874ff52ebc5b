//! Command-line arguments of every subcommand, with their defaults and help texts.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// clearline: a low-latency in-memory settlement and matching engine.
///
/// One process keeps double-entry accounts and transfers, matches orders and settles every fill
/// as ledger transfers, journals each batch durably before it answers, and serves fixed-size
/// binary frames over TCP (see PROTOCOL.md).
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
    Start(StartArgs),
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

/// Offline journal tools.
#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// Check every record and snapshot; exit 0 if all are intact, 1 with the first problem.
    Verify {
        /// The journal directory (the `journal` folder inside the data directory).
        dir: PathBuf,
    },
    /// Print segments, record counts, sequence and time ranges, and snapshots.
    Inspect {
        /// The journal directory (the `journal` folder inside the data directory).
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
    /// Engine capacities and network limits.
    #[command(flatten)]
    pub limits: Limits,
}

/// Capacities and limits, all chosen at start-up.
#[derive(Args, Debug, Clone)]
pub struct Limits {
    /// Most accounts the engine holds.
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts_max: u32,
    /// Most transfers the engine stores (posts and voids included).
    #[arg(long, default_value_t = 10_000_000)]
    pub transfers_max: u32,
    /// Most pending transfers the engine holds at once.
    #[arg(long, default_value_t = 1_000_000)]
    pub transfers_pending_max: u32,
    /// Most balance-history rows (for accounts with the `history` flag).
    #[arg(long, default_value_t = 1_000_000)]
    pub account_balances_max: u32,
    /// Most markets. Each market's book is allocated when the market is created, with room
    /// for --orders-max resting orders, so memory grows with markets x orders.
    #[arg(long, default_value_t = 16)]
    pub markets_max: u32,
    /// Most orders stored (resting and finished).
    #[arg(long, default_value_t = 1_000_000)]
    pub orders_max: u32,
    /// Most fills stored.
    #[arg(long, default_value_t = 1_000_000)]
    pub fills_max: u32,
    /// Most client connections at once; more are refused.
    #[arg(long, default_value_t = 1_024)]
    pub connections_max: u32,
    /// Most requests in flight per connection before the server stops reading it.
    #[arg(long, default_value_t = 64)]
    pub requests_in_flight_max: u32,
    /// A connection whose partial frame is older than this many milliseconds is closed.
    #[arg(long, default_value_t = 10_000)]
    pub partial_frame_timeout_ms: u64,
    /// A connection that does not read its replies for this many milliseconds is closed.
    #[arg(long, default_value_t = 10_000)]
    pub reply_timeout_ms: u64,
    /// Bytes of unparsed input buffered per connection (at least one 64-byte header; a body
    /// is read into its own pooled buffer).
    #[arg(long, default_value_t = 64 * 1024)]
    pub connection_input_size_max: u64,
    /// Bytes of unsent replies per connection above which the server stops reading it (at least
    /// one largest frame, 1 MiB).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub connection_output_size_max: u64,
    /// Journal segment size in bytes (preallocated).
    #[arg(long, default_value_t = 1 << 30)]
    pub segment_size: u64,
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
    #[arg(long)]
    pub addr: Option<SocketAddr>,
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
}
