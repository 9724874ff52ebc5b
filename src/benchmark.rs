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
//! After the run it prints the summary, and on request saves the report (`report.rs`, schema in
//! `docs/benchmark.md`) and draws the percentile plot (`plot.rs`) with the baselines as
//! reference lines. Memory and disk use are reported only for its own server, which runs in this
//! process; a server at `--addr` is another process and its resources are left out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearline_engine::{Account, CreateResult, Operation, Transfer, TransferFlags};
use clearline_net::Client;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use clap::ValueEnum as _;

use crate::cli::{AccountDistribution, BenchmarkArgs, Limits, StartArgs, SyncMode};
use crate::plot::{format_latency_us, Curve, Reference, ReferenceKind};
use crate::report::{
    self, Baselines, Latency, LatencyStart, Load, Report, Resources, RunConfig, ServerKind,
    Throughput, Workload,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const LEDGER: u32 = 1;
const CODE: u16 = 1;
/// Transfer ids start here so they never meet account ids.
const TRANSFER_ID_BASE: u128 = 1 << 64;
/// The most requests one connection keeps in flight in open-loop mode.
const OPEN_LOOP_IN_FLIGHT_MAX: u64 = 16;

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
    let command_line: Vec<String> = std::env::args().collect();
    let time_unix_s = report::unix_time_s();
    let mut machine = report::machine();
    let mut baselines = MeasuredBaselines::default();
    let mut resources = Resources::default();

    let mut own_server = None;
    let addr = match args.addr {
        Some(addr) => addr,
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
                limits,
                tigerbeetle: crate::cli::TigerBeetleArgs::default(),
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
            let server = crate::start::Server::start(&start, false)?;
            let addr = server.local_addr();
            let echo = measure_echo(args.transfer_batch_count)?;
            say!(
                "baseline: loopback echo of frames of {}: p50 {}, p99 {}",
                counted(u64::from(args.transfer_batch_count), "event"),
                format_latency_us(echo.value_at_quantile(0.5) as f64 / 1_000.0),
                format_latency_us(echo.value_at_quantile(0.99) as f64 / 1_000.0)
            );
            baselines.echo = Some(echo);
            own_server = Some((server, dir));
            addr
        }
    };

    let result = if args.orders {
        crate::benchmark_orders::drive(args, addr)
    } else {
        drive(args, addr)
    };
    if let Some((server, dir)) = own_server {
        // The server runs in this process, so this process's memory is the server's (plus the
        // benchmark's clients, which hold little).
        (resources.rss_bytes, resources.rss_peak_bytes) = report::process_memory();
        server.shutdown()?;
        if let Some((disk_bytes, file_bytes)) = report::disk_use(&dir) {
            resources.data_disk_bytes = Some(disk_bytes);
            resources.data_file_bytes = Some(file_bytes);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let measurement = result?;
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

fn benchmark_limits(args: &BenchmarkArgs) -> Limits {
    // An order command of the benchmark's flow makes about 2.4 transfers on average (holds,
    // voids, legs); four per command leaves room, plus the block the engine keeps free.
    let per_command = if args.orders { 4 } else { 2 };
    let transfers = args
        .transfer_count
        .saturating_mul(per_command)
        .min(u64::from(u32::MAX - 1));
    let orders = u32::try_from(args.transfer_count.saturating_add(4_096)).unwrap_or(u32::MAX - 1);
    Limits {
        accounts_max: args.account_count.saturating_add(16),
        transfers_max: u32::try_from(transfers).unwrap_or(u32::MAX - 1).max(1_024),
        // Every resting order holds one pending transfer.
        transfers_pending_max: if args.transfer_pending || args.orders {
            u32::try_from(args.transfer_count)
                .unwrap_or(u32::MAX - 1)
                .max(1_024)
        } else {
            1_024
        },
        // The engine wants room for the history rows one order command could write.
        account_balances_max: 4_096,
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

struct Totals {
    requests: AtomicU64,
    transfers: AtomicU64,
}

/// Fills `body` with the transfers of request `request_index` (a pure function of the seed and
/// the index, so clients need no coordination).
fn transfer_batch(
    args: &BenchmarkArgs,
    picker: &AccountPicker,
    request_index: u64,
    body: &mut Vec<u8>,
) -> u32 {
    let batch = u64::from(args.transfer_batch_count);
    let first = request_index * batch;
    let count = batch.min(args.transfer_count - first);
    let mut random = Random(args.seed ^ request_index.wrapping_mul(0xA24B_AED4_963E_E407));
    body.clear();
    for offset in 0..count {
        let (debit, credit) = picker.pick_pair(&mut random);
        let transfer = Transfer {
            id: TRANSFER_ID_BASE + u128::from(first + offset) + 1,
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

fn drive(args: &BenchmarkArgs, addr: SocketAddr) -> Result<Measurement, BoxError> {
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
    let totals = Arc::new(Totals {
        requests: AtomicU64::new(0),
        transfers: AtomicU64::new(0),
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
                        totals.requests.fetch_add(1, Ordering::Relaxed);
                        totals.transfers.fetch_add(created, Ordering::Relaxed);
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
    verify_balances(&mut setup, args, transfers)?;
    Ok(Measurement {
        latencies,
        requests,
        events: transfers,
        elapsed,
    })
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
        planned.push_back(plan);
        progress.inc(u64::from(count));
    }
    while !planned.is_empty() {
        receive_one(client, &mut planned, latencies, totals)?;
    }
    Ok(())
}

fn receive_one(
    client: &mut Client,
    planned: &mut std::collections::VecDeque<Instant>,
    latencies: &mut Histogram<u64>,
    totals: &Totals,
) -> Result<(), BoxError> {
    let reply = client.receive()?;
    let plan = planned
        .pop_front()
        .ok_or("a reply arrived that was not asked for")?;
    latencies.record(duration_ns(plan.elapsed()).max(1))?;
    let created = check_results(&reply.body, "create_transfers", false)?;
    totals.requests.fetch_add(1, Ordering::Relaxed);
    totals.transfers.fetch_add(created, Ordering::Relaxed);
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
