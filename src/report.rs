//! The result file of `clearline benchmark --output FILE.json`: what ran, where, and what it
//! measured, in a stable schema documented in `docs/benchmark.md`.
//!
//! Schema rules (version [`SCHEMA`]):
//! - fields are only ever added within a version; a reader ignores fields it does not know;
//! - a field whose value is unknown (the commit of a build outside git, the resources of a server
//!   in another process) is left out, never written as zero;
//! - latencies are integer nanoseconds; every latency distribution carries its full histogram
//!   (HdrHistogram's V2 deflate serialization, base64), so a saved run can be re-plotted and
//!   recomputed at any percentile later.
//!
//! Also gathers what a report says about the machine and the server (`/proc`), and reads and
//! writes report files. Does not run anything: `benchmark.rs` measures, `plot.rs` draws.

use std::path::Path;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::benchmark::BoxError;

/// The schema name and version written into every report.
pub const SCHEMA: &str = "clearline-benchmark-v1";

/// The percentiles every report lists (100 is the maximum).
pub const PERCENTILES: [f64; 6] = [50.0, 90.0, 99.0, 99.9, 99.99, 100.0];

/// One benchmark run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The clearline version (`Cargo.toml`).
    pub clearline_version: String,
    /// The git commit the binary was built from; absent for a build outside git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Whether the sources differed from `commit` at build time; absent with `commit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_dirty: Option<bool>,
    /// When the run started, in seconds since the Unix epoch.
    pub time_unix_s: u64,
    /// The program's arguments, the program name first.
    pub command_line: Vec<String>,
    /// Where it ran.
    pub machine: Machine,
    /// What it ran.
    pub config: RunConfig,
    /// Floors measured in the same run.
    pub baselines: Baselines,
    /// How much got done.
    pub throughput: Throughput,
    /// Request latency.
    pub latency: Latency,
    /// Memory and disk of the benchmark's own server; empty for a server in another process.
    pub resources: Resources,
    /// One entry per `--window-count` transfers acknowledged, in order; empty for `--orders`,
    /// absent in files written before windows existed.
    #[serde(default)]
    pub windows: Vec<Window>,
    /// The lookup of a sample of acknowledged transfer ids at the end; absent with
    /// `--no-sample-lookup` or `--orders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_lookup: Option<SampleLookup>,
    /// The restart after SIGKILL at the end; absent without `--restart-check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartCheck>,
}

/// `--restart-check`: the own server killed with SIGKILL at the end and started again.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RestartCheck {
    /// From starting the process again to its first answer, in seconds.
    pub serving_s: f64,
    /// Whether every account's balances read the same after the restart as before the kill.
    pub balances_same: bool,
    /// The server's state hash (`get_state`) before the kill, `0x` and 32 hex digits (a u128
    /// does not fit a JSON number); absent in reports of releases without `get_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_hash_before: Option<String>,
    /// The state hash once the restarted server serves, before any write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_hash_after: Option<String>,
    /// Whether the two state hashes are equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_hash_same: Option<bool>,
    /// The sample lookup again after the restart; absent with `--no-sample-lookup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_lookup: Option<SampleLookup>,
}

/// The run up to one window boundary: the transfers acknowledged so far, the rate over the
/// window that ended there, and the own server's memory and disk at that moment.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Window {
    /// Transfers acknowledged from the start of the run to the end of this window (at least
    /// the boundary; a request in flight across it counts whole).
    pub transfers: u64,
    /// Wall time of this window alone, in seconds.
    pub seconds: f64,
    /// Transfers acknowledged in this window over `seconds`.
    pub transfers_per_second: f64,
    /// Resident memory of the process (own server only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// The anonymous part of `rss_bytes` (`RssAnon`): heap and stacks, without the pages of
    /// mapped files such as the journal's segments (own server only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_anonymous_bytes: Option<u64>,
    /// Disk blocks of the journal segments (own server only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_bytes: Option<u64>,
    /// Disk blocks of the checkpoint files (own server only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_bytes: Option<u64>,
    /// Disk blocks under the history directory, 0 while it does not exist (own server only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_bytes: Option<u64>,
}

/// The sample lookup: acknowledged transfer ids spread over the whole run, looked up again.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SampleLookup {
    /// Ids looked up.
    pub sampled: u64,
    /// Ids the server returned.
    pub found: u64,
    /// Wall time of all the lookups, in milliseconds.
    pub duration_ms: f64,
    /// The first missing ids (at most [`MISSING_LISTED_MAX`]), as decimal strings, since a
    /// u128 does not fit a JSON number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// How many missing ids a report lists.
pub const MISSING_LISTED_MAX: usize = 10;

/// Disk blocks under a data directory by kind, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskSplit {
    /// `journal/segment-*.log`.
    pub journal_bytes: u64,
    /// `journal/checkpoint-*.ckpt`.
    pub checkpoint_bytes: u64,
    /// Everything under `history/`; `None` while the directory does not exist.
    pub history_bytes: Option<u64>,
}

/// The machine, from `/proc`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Machine {
    /// `model name` from `/proc/cpuinfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// Logical CPUs this process may run on.
    pub cores: u32,
    /// The kernel release (`/proc/sys/kernel/osrelease`, as `uname -r` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The operating system (`linux`, ...).
    pub os: String,
    /// The CPU architecture (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// `MemTotal` from `/proc/meminfo`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The 1-minute load average when the run started (`/proc/loadavg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_average_start: Option<f64>,
    /// The 1-minute load average when the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_average_end: Option<f64>,
}

/// What kind of requests the run sent.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// `create_transfers` requests.
    Transfers,
    /// An order flow (`--orders`).
    Orders,
}

/// How requests were paced, which decides what the latency measures.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Each client sends its next request when the previous reply arrives; latency runs from the
    /// actual send to the reply.
    ClosedLoop,
    /// A fixed schedule (`--rate`); latency runs from the planned send time to the reply.
    OpenLoop,
}

/// Which server the run loaded.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    /// The benchmark started its own server in its process, on a fresh temporary directory.
    InProcess,
    /// A server at `--addr`.
    External,
}

/// The run's settings (the flags of `clearline benchmark`, by the same names).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// Transfers or orders.
    pub workload: Workload,
    /// Closed or open loop.
    pub load: Load,
    /// Requests per second over all clients in open loop; absent in closed loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
    /// Own server or `--addr`.
    pub server: ServerKind,
    /// The own server's `--sync` (`data` or `none`); absent for an external server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// `--clients`.
    pub clients: u32,
    /// `--account-count`.
    pub account_count: u32,
    /// `--account-distribution` (`uniform`, `zipfian`, `latest`).
    pub account_distribution: String,
    /// `--transfer-count` (order commands with `--orders`).
    pub transfer_count: u64,
    /// `--transfer-batch-count` (order commands per round with `--orders`).
    pub transfer_batch_count: u32,
    /// `--transfer-pending`.
    pub transfer_pending: bool,
    /// `--seed`.
    pub seed: u64,
    /// `--window-count`; absent with `--orders` and in files written before windows existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_count: Option<u64>,
    /// The benchmark's own replication group (`--group-size`); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupConfig>,
}

/// The benchmark's own replication group.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `--group-size`: nodes in the group.
    pub size: u32,
    /// Backups that held each write before the primary answered it (`--ack-backups`).
    pub ack_backups: u32,
}

/// Floors measured in the same run, before the load; absent when not measured (no own server,
/// or `--sync none` for the disk).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Baselines {
    /// One 4 KiB write + `fdatasync` in the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Latency>,
    /// A plain loopback round trip of a request-sized frame and a reply-sized answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<Latency>,
}

/// Counts and rates of the measured part of the run.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Throughput {
    /// Wall time of the measured part, in seconds.
    pub duration_s: f64,
    /// Requests answered.
    pub requests: u64,
    /// Events applied: transfers created, or order commands answered with `--orders`.
    pub events: u64,
    /// What one event is: `transfer` or `order command`.
    pub event_name: String,
    /// `events / duration_s`.
    pub events_per_s: f64,
    /// `requests / duration_s`.
    pub requests_per_s: f64,
}

/// Where a latency starts.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LatencyStart {
    /// When the request was actually sent.
    Send,
    /// When the open-loop schedule planned to send it.
    PlannedSend,
}

/// One latency distribution.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Latency {
    /// Where each latency starts (it always ends when the reply has arrived).
    pub start: LatencyStart,
    /// Latencies recorded.
    pub count: u64,
    /// Smallest, in nanoseconds.
    pub min_ns: u64,
    /// Mean, in nanoseconds.
    pub mean_ns: f64,
    /// Largest, in nanoseconds.
    pub max_ns: u64,
    /// The latency at each of [`PERCENTILES`], ascending.
    pub percentiles: Vec<Percentile>,
    /// The full histogram: HdrHistogram V2 deflate serialization, base64 (standard alphabet,
    /// padded), values in nanoseconds.
    pub histogram: String,
}

/// The latency at one percentile.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Percentile {
    /// 0 to 100; 100 is the maximum.
    pub percentile: f64,
    /// Nanoseconds (HdrHistogram's equivalent value: within 0.1% of a recorded latency).
    pub latency_ns: u64,
}

/// Memory and disk of the benchmark's own server, each absent when unknown.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Resources {
    /// Resident memory of the process (server and benchmark clients) at the end of the load
    /// (`VmRSS` in `/proc/self/status`; of the server's own process with `--restart-check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Peak resident memory of the process (`VmHWM`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_peak_bytes: Option<u64>,
    /// Disk blocks allocated under the data directory after shutdown (preallocated journal
    /// segments count in full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disk_bytes: Option<u64>,
    /// Apparent size of the files under the data directory after shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_file_bytes: Option<u64>,
    /// Disk blocks of the journal segments after shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_bytes: Option<u64>,
    /// Disk blocks of the checkpoint files after shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_bytes: Option<u64>,
    /// Disk blocks under the history directory after shutdown (0 when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_bytes: Option<u64>,
}

impl RunConfig {
    /// One line for titles: `1 transfer per request, 1 client, sync data, closed loop`.
    pub fn describe(&self) -> String {
        use crate::benchmark::counted;
        let batch = u64::from(self.transfer_batch_count);
        let per = match self.workload {
            Workload::Transfers => format!("{} per request", counted(batch, "transfer")),
            Workload::Orders => format!("{} per round", counted(batch, "order command")),
        };
        let server = match (&self.sync, self.group) {
            (Some(sync), Some(group)) => format!(
                "sync {sync}, a group of {} acknowledging on {}",
                group.size,
                counted(u64::from(group.ack_backups), "backup")
            ),
            (Some(sync), None) => format!("sync {sync}"),
            (None, _) => "external server".to_string(),
        };
        let load = match (self.load, self.rate) {
            (Load::OpenLoop, Some(rate)) => format!("open loop at {rate} requests/s"),
            _ => "closed loop".to_string(),
        };
        format!(
            "{per}, {}, {server}, {load}",
            counted(u64::from(self.clients), "client")
        )
    }
}

impl Latency {
    /// Summarizes `histogram` (nanoseconds).
    ///
    /// # Errors
    ///
    /// When the histogram cannot be serialized (it can always be; the error is passed on).
    pub fn from_histogram(
        histogram: &Histogram<u64>,
        start: LatencyStart,
    ) -> Result<Latency, BoxError> {
        let percentiles = PERCENTILES
            .iter()
            .map(|&percentile| Percentile {
                percentile,
                latency_ns: histogram.value_at_quantile(percentile / 100.0),
            })
            .collect();
        Ok(Latency {
            start,
            count: histogram.len(),
            min_ns: histogram.min(),
            mean_ns: histogram.mean(),
            max_ns: histogram.max(),
            percentiles,
            histogram: encode_histogram(histogram)?,
        })
    }

    /// The latency at `percentile` from the table, if the table lists it.
    pub fn at(&self, percentile: f64) -> Option<u64> {
        self.percentiles
            .iter()
            .find(|row| (row.percentile - percentile).abs() < 1e-9)
            .map(|row| row.latency_ns)
    }

    /// The latency at the 50th percentile, from the table or else the histogram.
    pub fn median_ns(&self) -> Option<u64> {
        self.at(50.0).or_else(|| {
            decode_histogram(&self.histogram)
                .ok()
                .map(|histogram| histogram.value_at_quantile(0.5))
        })
    }
}

/// Serializes a histogram as base64 of its V2 deflate form.
///
/// # Errors
///
/// When the serializer fails (compression errors only).
pub fn encode_histogram(histogram: &Histogram<u64>) -> Result<String, BoxError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .map_err(|error| format!("cannot serialize a histogram: {error:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Reads a histogram written by [`encode_histogram`] (or any HdrHistogram V2 serialization,
/// compressed or not, in base64).
///
/// # Errors
///
/// When the text is not base64 or the bytes are not a histogram.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, BoxError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|error| format!("the histogram is not base64: {error}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|error| format!("the histogram cannot be read: {error:?}").into())
}

/// Writes `report` as pretty-printed JSON.
///
/// # Errors
///
/// When the file cannot be written.
pub fn write(path: &Path, report: &Report) -> Result<(), BoxError> {
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    std::fs::write(path, text)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    Ok(())
}

/// Reads a report and checks its schema.
///
/// # Errors
///
/// When the file cannot be read, is not JSON of this schema, or has another schema version.
pub fn read(path: &Path) -> Result<Report, BoxError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    parse(&text).map_err(|error| format!("{}: {error}", path.display()).into())
}

/// Parses a report and checks its schema.
///
/// # Errors
///
/// When the text is not a report of schema [`SCHEMA`].
pub fn parse(text: &str) -> Result<Report, BoxError> {
    // The schema is checked first, so a file of another version gets a clear message rather
    // than a complaint about a missing field.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    match value.get("schema").and_then(serde_json::Value::as_str) {
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(
                format!("schema {other} is not supported (this build reads {SCHEMA})").into(),
            )
        }
        None => return Err("not a clearline benchmark report (no \"schema\" field)".into()),
    }
    serde_json::from_value(value).map_err(|error| format!("malformed report: {error}").into())
}

/// The commit recorded at build time, with its dirty flag.
pub fn commit() -> (Option<String>, Option<bool>) {
    match option_env!("CLEARLINE_COMMIT") {
        Some(commit) => (
            Some(commit.to_string()),
            Some(option_env!("CLEARLINE_COMMIT_DIRTY") == Some("true")),
        ),
        None => (None, None),
    }
}

/// The seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_time_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// What `/proc` says about this machine (fields it cannot read stay absent).
pub fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.split_whitespace().collect::<Vec<_>>().join(" "))
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty());
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| status_kib(&text, "MemTotal:"));
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism()
            .map_or(1, |count| u32::try_from(count.get()).unwrap_or(u32::MAX)),
        kernel,
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        memory_bytes,
        load_average_start: load_average(),
        load_average_end: None,
    }
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The resident memory now and at its peak of process `pid` (this one if `None`), in bytes.
pub fn process_memory_of(pid: Option<u32>) -> (Option<u64>, Option<u64>) {
    let path = pid.map_or_else(
        || "/proc/self/status".to_string(),
        |pid| format!("/proc/{pid}/status"),
    );
    match std::fs::read_to_string(path) {
        Ok(text) => (status_kib(&text, "VmRSS:"), status_kib(&text, "VmHWM:")),
        Err(_) => (None, None),
    }
}

/// The anonymous resident memory (`RssAnon`) of process `pid`: its heap and stacks, without
/// mapped files, whose resident pages the kernel can drop.
pub fn anonymous_memory_of(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/status".to_string(),
        |pid| format!("/proc/{pid}/status"),
    );
    status_kib(&std::fs::read_to_string(path).ok()?, "RssAnon:")
}

/// Reads a `Name:   1234 kB` line of a `/proc` file, in bytes.
fn status_kib(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let mut words = line[name.len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

/// Disk blocks and apparent bytes of every file under `dir`, or `None` if any cannot be read.
pub fn disk_use(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let mut blocks_bytes = 0u64;
    let mut file_bytes = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).ok()? {
            let entry = entry.ok()?;
            let metadata = entry.metadata().ok()?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                // st_blocks counts 512-byte units whatever the file system's block size.
                blocks_bytes = blocks_bytes.saturating_add(metadata.blocks().saturating_mul(512));
                file_bytes = file_bytes.saturating_add(metadata.len());
            }
        }
    }
    Some((blocks_bytes, file_bytes))
}

/// Disk blocks of the journal segments, the checkpoints and the history store under the data
/// directory `dir` (the layout of `clearline start --data`, docs/durability.md), or `None` if
/// the journal directory cannot be read. A file removed while it is listed (a retired segment,
/// a replaced checkpoint) counts as gone.
pub fn disk_split(dir: &Path) -> Option<DiskSplit> {
    use std::os::unix::fs::MetadataExt as _;
    let mut split = DiskSplit::default();
    for entry in std::fs::read_dir(dir.join("journal")).ok()? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        // st_blocks counts 512-byte units whatever the file system's block size.
        let bytes = metadata.blocks().saturating_mul(512);
        if name.starts_with("segment-") && name.ends_with(".log") {
            split.journal_bytes = split.journal_bytes.saturating_add(bytes);
        } else if name.starts_with("checkpoint-") && name.ends_with(".ckpt") {
            split.checkpoint_bytes = split.checkpoint_bytes.saturating_add(bytes);
        }
    }
    let history = dir.join("history");
    if history.is_dir() {
        split.history_bytes = Some(disk_use(&history).map_or(0, |(blocks, _)| blocks));
    }
    Some(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values: &[u64]) -> Histogram<u64> {
        let mut histogram = crate::benchmark::histogram();
        for &value in values {
            histogram.record(value).expect("in range");
        }
        histogram
    }

    fn sample() -> Report {
        let values: Vec<u64> = (1..=10_000u64)
            .map(|index| 50_000 + index * 17)
            .chain([72_000_000])
            .collect();
        let latency = histogram_of(&values);
        let sync = histogram_of(&[100_000, 120_000, 400_000]);
        Report {
            schema: SCHEMA.to_string(),
            clearline_version: "0.1.0".to_string(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_string()),
            commit_dirty: Some(false),
            time_unix_s: 1_795_000_000,
            command_line: vec!["clearline".into(), "benchmark".into(), "--sync".into()],
            machine: Machine {
                cpu_model: Some("AMD EPYC".into()),
                cores: 2,
                kernel: Some("6.18.44".into()),
                os: "linux".into(),
                arch: "x86_64".into(),
                memory_bytes: Some(1 << 34),
                load_average_start: Some(1.25),
                load_average_end: None,
            },
            config: RunConfig {
                workload: Workload::Transfers,
                load: Load::OpenLoop,
                rate: Some(2_000),
                server: ServerKind::InProcess,
                sync: Some("data".into()),
                clients: 1,
                account_count: 10_000,
                account_distribution: "uniform".into(),
                transfer_count: 10_000,
                transfer_batch_count: 1,
                transfer_pending: false,
                seed: 42,
                window_count: Some(5_000),
                group: Some(GroupConfig {
                    size: 3,
                    ack_backups: 1,
                }),
            },
            baselines: Baselines {
                sync: Some(Latency::from_histogram(&sync, LatencyStart::Send).expect("encodes")),
                echo: None,
            },
            throughput: Throughput {
                duration_s: 5.0,
                requests: 10_000,
                events: 10_000,
                event_name: "transfer".into(),
                events_per_s: 2_000.0,
                requests_per_s: 2_000.0,
            },
            latency: Latency::from_histogram(&latency, LatencyStart::PlannedSend).expect("encodes"),
            resources: Resources {
                rss_bytes: Some(123 << 20),
                rss_peak_bytes: Some(150 << 20),
                data_disk_bytes: None,
                data_file_bytes: None,
                journal_bytes: Some(1 << 30),
                checkpoint_bytes: Some(0),
                history_bytes: Some(0),
            },
            windows: vec![Window {
                transfers: 5_000,
                seconds: 2.5,
                transfers_per_second: 2_000.0,
                rss_bytes: Some(120 << 20),
                rss_anonymous_bytes: Some(100 << 20),
                journal_bytes: Some(1 << 30),
                checkpoint_bytes: Some(0),
                history_bytes: Some(0),
            }],
            sample_lookup: Some(SampleLookup {
                sampled: 10_000,
                found: 9_999,
                duration_ms: 12.5,
                missing: vec!["18446744073709551617".into()],
            }),
            restart: None,
        }
    }

    #[test]
    fn report_survives_a_json_round_trip() {
        let report = sample();
        let text = serde_json::to_string_pretty(&report).expect("serializes");
        let back = parse(&text).expect("parses");
        assert_eq!(back, report);
        // Unknown fields are absent, not zero or null.
        assert!(!text.contains("data_disk_bytes"));
        assert!(!text.contains("null"));
        assert!(!text.contains("\"echo\""));
        // The histogram inside gives back every count.
        let histogram = decode_histogram(&back.latency.histogram).expect("decodes");
        let original = histogram_of(
            &(1..=10_000u64)
                .map(|index| 50_000 + index * 17)
                .chain([72_000_000])
                .collect::<Vec<_>>(),
        );
        assert_eq!(histogram, original);
        assert_eq!(histogram.len(), 10_001);
        assert_eq!(back.latency.at(100.0), Some(histogram.max()));
        assert_eq!(back.latency.count, 10_001);
    }

    #[test]
    fn reports_without_windows_still_parse() {
        // A file written before windows and the sample lookup existed.
        let mut value = serde_json::to_value(sample()).expect("serializes");
        let object = value.as_object_mut().expect("an object");
        object.remove("windows");
        object.remove("sample_lookup");
        for field in ["journal_bytes", "checkpoint_bytes", "history_bytes"] {
            value["resources"]
                .as_object_mut()
                .expect("an object")
                .remove(field);
        }
        value["config"]
            .as_object_mut()
            .expect("an object")
            .remove("window_count");
        let report = parse(&value.to_string()).expect("parses");
        assert!(report.windows.is_empty());
        assert_eq!(report.sample_lookup, None);
        assert_eq!(report.config.window_count, None);
        assert_eq!(report.resources.journal_bytes, None);
    }

    #[test]
    fn disk_split_sorts_files_by_kind() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let journal = dir.path().join("journal");
        std::fs::create_dir(&journal).expect("created");
        let block = vec![1u8; 64 * 1024];
        for (name, copies) in [
            ("segment-0000000000000001.log", 2),
            ("checkpoint-00000000000000000007.ckpt", 1),
            ("checkpoint-00000000000000000007.ckpt.tmp", 4),
        ] {
            std::fs::write(journal.join(name), block.repeat(copies)).expect("written");
        }
        let split = disk_split(dir.path()).expect("readable");
        assert!(split.journal_bytes >= 128 * 1024, "{split:?}");
        assert!(split.checkpoint_bytes >= 64 * 1024, "{split:?}");
        // The unfinished checkpoint is neither.
        assert!(split.checkpoint_bytes < 128 * 1024, "{split:?}");
        assert_eq!(split.history_bytes, None);
        std::fs::create_dir(dir.path().join("history")).expect("created");
        std::fs::write(dir.path().join("history").join("run"), &block).expect("written");
        let split = disk_split(dir.path()).expect("readable");
        assert!(split.history_bytes >= Some(64 * 1024), "{split:?}");
        assert_eq!(disk_split(&dir.path().join("missing")), None);
    }

    #[test]
    fn report_round_trips_through_a_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("run.json");
        let report = sample();
        write(&path, &report).expect("writes");
        assert_eq!(read(&path).expect("reads"), report);
    }

    #[test]
    fn parse_rejects_other_schemas_and_non_reports() {
        let check = |text: &str, expected: &str| {
            let error = parse(text).expect_err("must be rejected").to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        };
        check("{", "not JSON");
        check("{\"a\": 1}", "no \"schema\" field");
        check(
            "{\"schema\": \"clearline-benchmark-v0\"}",
            "is not supported",
        );
        check(
            "{\"schema\": \"clearline-benchmark-v1\"}",
            "malformed report",
        );
        let mut value = serde_json::to_value(sample()).expect("serializes");
        value["latency"]["histogram"] = serde_json::Value::from("not base64!");
        let report: Report = serde_json::from_value(value).expect("still a report");
        assert!(decode_histogram(&report.latency.histogram).is_err());
    }

    #[test]
    fn reads_proc_status_lines() {
        let text = "Name:\tclearline\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(text, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(status_kib(text, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(status_kib(text, "VmSwap:"), None);
        assert_eq!(status_kib("VmRSS: 12 pages", "VmRSS:"), None);
    }
}
