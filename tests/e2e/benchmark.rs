//! `clearline benchmark --output/--plot` and `clearline benchmark compare`, run as the real
//! binary: a saved run holds what docs/benchmark.md promises, and two saved runs compare into a
//! table whose ratios match the files and a plot with a legend. A run prints and saves its
//! windows (`--window-count`) and looks a sample of its acknowledged transfers up at the end.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

use crate::support::{clearline_command, clearline_ok, run_until_exit, Options, Server};

/// A small benchmark run can take this long on a loaded machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `clearline ARGS` to completion (killed after [`RUN_TIMEOUT`]).
fn clearline(args: &[&str]) -> Output {
    run_until_exit(clearline_command().args(args), RUN_TIMEOUT)
}

fn succeed(args: &[&str]) -> String {
    clearline_ok(args, RUN_TIMEOUT)
}

/// Runs a small benchmark of single transfers on its own server, saving JSON and SVG.
fn run_benchmark(dir: &Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let json = dir.join(format!("{name}.json"));
    let svg = dir.join(format!("{name}.svg"));
    let mut args = vec![
        "benchmark",
        "--account-count",
        "100",
        "--transfer-count",
        "2000",
        "--transfer-batch-count",
        "1",
        "--no-progress",
        "--output",
        json.to_str().expect("UTF-8 path"),
        "--plot",
        svg.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    let stdout = succeed(&args);
    assert!(
        stdout.contains("2,000 transfers in 2,000 requests"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 transfer per request, 1 client,"),
        "{stdout}"
    );
    assert!(stdout.contains("balances:"), "{stdout}");
    let plot = std::fs::read_to_string(&svg).expect("the plot is written");
    assert!(plot.contains("1 transfer per request"), "plot title");
    assert!(!plot.contains("1 transfers"), "plural for one");
    let text = std::fs::read_to_string(&json).expect("the results are written");
    serde_json::from_str(&text).expect("the results are JSON")
}

fn histogram(value: &serde_json::Value) -> Histogram<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("histogram is a string"))
        .expect("histogram is base64");
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .expect("histogram is an HdrHistogram V2 serialization")
}

fn u64_of(value: &serde_json::Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not an integer in {value}"))
}

fn f64_of(value: &serde_json::Value, pointer: &str) -> f64 {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {value}"))
}

#[test]
fn benchmark_saves_its_results_and_compare_reads_them() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let none = run_benchmark(dir.path(), "sync-none", &["--sync", "none"]);
    let open = run_benchmark(
        dir.path(),
        "open-loop",
        &["--sync", "none", "--rate", "4000"],
    );

    // What the schema promises.
    assert_eq!(none["schema"], "clearline-benchmark-v1");
    assert_eq!(none["command_line"][1], "benchmark");
    assert_eq!(none["config"]["sync"], "none");
    assert_eq!(none["config"]["load"], "closed_loop");
    assert_eq!(none["config"]["server"], "in_process");
    assert!(
        none["config"].get("rate").is_none(),
        "no rate in closed loop"
    );
    assert_eq!(open["config"]["load"], "open_loop");
    assert_eq!(u64_of(&open, "/config/rate"), 4_000);
    assert_eq!(none["latency"]["start"], "send");
    assert_eq!(open["latency"]["start"], "planned_send");
    assert_eq!(u64_of(&none, "/throughput/events"), 2_000);
    assert_eq!(u64_of(&none, "/throughput/requests"), 2_000);
    assert_eq!(none["throughput"]["event_name"], "transfer");
    assert!(u64_of(&none, "/machine/cores") >= 1);
    if let Some(commit) = none.get("commit") {
        let commit = commit.as_str().expect("commit is a string");
        assert_eq!(commit.len(), 40, "{commit}");
        assert!(none["commit_dirty"].is_boolean());
    }
    // The own server's memory and disk are known; --sync none measures no disk baseline.
    assert!(u64_of(&none, "/resources/rss_bytes") > 0);
    assert!(u64_of(&none, "/resources/rss_peak_bytes") >= u64_of(&none, "/resources/rss_bytes"));
    assert!(u64_of(&none, "/resources/data_file_bytes") > 0);
    assert!(none["baselines"].get("sync").is_none());
    assert!(u64_of(&none, "/baselines/echo/count") > 0);

    // The full histogram agrees with the percentile table and the counts.
    let latencies = histogram(&none["latency"]["histogram"]);
    assert_eq!(latencies.len(), 2_000);
    assert_eq!(u64_of(&none, "/latency/count"), 2_000);
    let percentiles = none["latency"]["percentiles"]
        .as_array()
        .expect("percentiles");
    assert_eq!(percentiles.len(), 6);
    let mut previous = 0;
    for row in percentiles {
        let percentile = row["percentile"].as_f64().expect("percentile");
        let latency_ns = row["latency_ns"].as_u64().expect("latency_ns");
        assert_eq!(latencies.value_at_quantile(percentile / 100.0), latency_ns);
        assert!(latency_ns >= previous);
        previous = latency_ns;
    }
    assert_eq!(previous, u64_of(&none, "/latency/max_ns"));

    // Compare the two saved files.
    let compare_svg = dir.path().join("compare.svg");
    let a = dir.path().join("sync-none.json");
    let b = dir.path().join("open-loop.json");
    let stdout = succeed(&[
        "benchmark",
        "compare",
        a.to_str().expect("UTF-8 path"),
        b.to_str().expect("UTF-8 path"),
        "--plot",
        compare_svg.to_str().expect("UTF-8 path"),
    ]);
    assert!(
        stdout.contains("differs: load: closed_loop / open_loop"),
        "{stdout}"
    );
    assert!(stdout.contains("each ratio is to sync-none"), "{stdout}");
    let header = stdout
        .lines()
        .find(|line| line.starts_with("| ") && line.contains("ratio"))
        .unwrap_or_else(|| panic!("no table header in {stdout}"));
    assert!(
        header.contains("sync-none") && header.contains("open-loop"),
        "{header}"
    );
    let row = |name: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {name} ")))
            .unwrap_or_else(|| panic!("no row {name} in {stdout}"));
        line.split('|')
            .map(|cell| cell.trim().to_string())
            .filter(|cell| !cell.is_empty())
            .collect()
    };
    for name in ["latency p50", "latency p99", "latency p99.9", "latency max"] {
        assert_eq!(row(name).len(), 4, "{name}: {:?}", row(name));
    }
    // The ratios are the second run's figures over the first's (printed rounded).
    let check_ratio = |cell: &str, expected: f64| {
        let printed: f64 = cell
            .strip_suffix('x')
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("{cell:?} is not a ratio"));
        assert!(
            (printed - expected).abs() <= 0.005 * expected.max(1.0),
            "printed {cell}, expected {expected}"
        );
    };
    let throughput = row("throughput (events/s)");
    check_ratio(
        &throughput[3],
        f64_of(&open, "/throughput/events_per_s") / f64_of(&none, "/throughput/events_per_s"),
    );
    let p99 = row("latency p99");
    check_ratio(
        &p99[3],
        u64_of(&open, "/latency/percentiles/2/latency_ns") as f64
            / u64_of(&none, "/latency/percentiles/2/latency_ns") as f64,
    );
    // One plot, both runs named in its legend, each with its echo baseline.
    let plot = std::fs::read_to_string(&compare_svg).expect("the compare plot is written");
    for label in [
        "sync-none: ",
        "open-loop: ",
        "open-loop: loopback echo, p50",
    ] {
        assert!(plot.contains(label), "no {label:?} in the plot");
    }
}

#[test]
fn compare_refuses_files_that_are_not_results() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let not_json = dir.path().join("notes.json");
    std::fs::write(&not_json, "p50 = 235 us\n").expect("written");
    let other = dir.path().join("other.json");
    std::fs::write(&other, "{\"schema\": \"clearline-benchmark-v9\"}").expect("written");
    for (path, expected) in [
        (&not_json, "not JSON"),
        (&other, "schema clearline-benchmark-v9 is not supported"),
    ] {
        let output = clearline(&["benchmark", "compare", path.to_str().expect("UTF-8 path")]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            stderr.contains("notes.json") || stderr.contains("other.json"),
            "{stderr}"
        );
    }
    let missing = dir.path().join("missing.json");
    let output = clearline(&[
        "benchmark",
        "compare",
        missing.to_str().expect("UTF-8 path"),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}

/// The windows and the sample lookup of a run on the benchmark's own server.
#[test]
fn benchmark_reports_windows_and_finds_its_sample() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("windows.json");
    let stdout = succeed(&[
        "benchmark",
        "--sync",
        "none",
        "--account-count",
        "100",
        "--transfer-count",
        "25000",
        "--transfer-batch-count",
        "500",
        "--window-count",
        "5000",
        "--no-progress",
        "--output",
        json.to_str().expect("UTF-8 path"),
    ]);
    // One line per window, in order, with the own server's memory and disk.
    for (number, transfers) in [(1, "5,000"), (2, "10,000"), (5, "25,000")] {
        let prefix = format!("window {number}: {transfers} transfers so far, ");
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {stdout}"));
        assert!(line.contains(" transfers/s over the last "), "{line}");
        assert!(line.contains("; resident "), "{line}");
        assert!(line.contains("; disk: journal "), "{line}");
        // History mode is the default: the store's size is reported.
        assert!(line.contains(", history "), "{line}");
        assert!(!line.contains(", history none"), "{line}");
    }
    assert!(!stdout.contains("window 6:"), "{stdout}");
    assert!(
        stdout.contains("windows: 5 of 5,000 transfers; throughput first "),
        "{stdout}"
    );
    assert!(
        stdout.contains(" after the first window (5,000 transfers): end/first "),
        "{stdout}"
    );
    assert!(stdout.contains("disk at the end: journal "), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("JSON");
    assert_eq!(u64_of(&report, "/config/window_count"), 5_000);
    let windows = report["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 5);
    for (index, window) in windows.iter().enumerate() {
        // One client and batches that divide the window: each ends exactly at its boundary.
        assert_eq!(u64_of(window, "/transfers"), 5_000 * (index as u64 + 1));
        let seconds = f64_of(window, "/seconds");
        let rate = f64_of(window, "/transfers_per_second");
        assert!(seconds > 0.0 && rate > 0.0, "{window}");
        assert!((rate * seconds - 5_000.0).abs() < 1.0, "{window}");
        assert!(u64_of(window, "/rss_bytes") > 0, "{window}");
        assert!(u64_of(window, "/journal_bytes") > 0, "{window}");
        assert!(window.get("checkpoint_bytes").is_some(), "{window}");
        assert!(u64_of(window, "/history_bytes") > 0, "{window}");
    }
    assert!(u64_of(&report, "/resources/journal_bytes") > 0);
    assert!(u64_of(&report, "/resources/history_bytes") > 0);

    // 25,000 transfers: every third is sampled (over 8,189, so two lookup requests).
    let lookup = &report["sample_lookup"];
    assert_eq!(u64_of(lookup, "/sampled"), 8_334);
    assert_eq!(u64_of(lookup, "/found"), 8_334);
    assert!(lookup.get("missing").is_none(), "{lookup}");
    assert!(f64_of(lookup, "/duration_ms") > 0.0);
    assert!(
        stdout.contains("sample lookup: 8,334 of 8,334 found in "),
        "{stdout}"
    );
}

/// An external server: windows without resources, a single window, no sample lookup asked.
#[test]
fn benchmark_windows_of_an_external_server() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&dir.path().join("data"), &Options::new("none"));
    let addr = server.addr.to_string();
    let json = dir.path().join("external.json");
    let stdout = succeed(&[
        "benchmark",
        "--addr",
        &addr,
        "--account-count",
        "100",
        "--transfer-count",
        "3000",
        "--transfer-batch-count",
        "1000",
        "--window-count",
        "2000",
        "--no-sample-lookup",
        "--no-progress",
        "--output",
        json.to_str().expect("UTF-8 path"),
    ]);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("window 1: 2,000 transfers so far, "))
        .unwrap_or_else(|| panic!("no window line in {stdout}"));
    assert!(
        !line.contains("resident") && !line.contains("disk"),
        "{line}"
    );
    assert!(!stdout.contains("window 2:"), "{stdout}");
    assert!(
        stdout.contains("windows: one window of 2,000 transfers at "),
        "{stdout}"
    );
    assert!(!stdout.contains("sample lookup"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("JSON");
    let windows = report["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 1);
    assert_eq!(u64_of(&windows[0], "/transfers"), 2_000);
    for field in [
        "rss_bytes",
        "journal_bytes",
        "checkpoint_bytes",
        "history_bytes",
    ] {
        assert!(windows[0].get(field).is_none(), "{field} in {}", windows[0]);
    }
    assert!(report.get("sample_lookup").is_none());
    drop(server);
}

/// `--restart-check`: the own server runs as a child process, is killed with SIGKILL at the
/// end, starts again, and reads the same.
#[test]
fn benchmark_restart_check_kills_and_restarts_its_server() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("restart.json");
    let stdout = succeed(&[
        "benchmark",
        "--account-count",
        "100",
        "--transfer-count",
        "3000",
        "--transfer-batch-count",
        "100",
        "--window-count",
        "1000",
        "--restart-check",
        "--no-progress",
        "--output",
        json.to_str().expect("UTF-8 path"),
    ]);
    for expected in [
        "sample lookup: 3,000 of 3,000 found in ",
        "restart after kill -9: serving in ",
        "restart after kill -9: balances of 100 accounts the same as before the kill",
        "sample lookup after the restart: 3,000 of 3,000 found in ",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in {stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("JSON");
    let restart = &report["restart"];
    assert!(f64_of(restart, "/serving_s") > 0.0, "{restart}");
    assert_eq!(restart["balances_same"], true, "{restart}");
    // The state hash read over the wire before the kill and after the restart, in full hex.
    assert_eq!(restart["state_hash_same"], true, "{restart}");
    let hash = restart["state_hash_before"].as_str().expect("a hex string");
    assert_eq!(
        restart["state_hash_after"].as_str(),
        Some(hash),
        "{restart}"
    );
    assert!(
        hash.len() == 34 && u128::from_str_radix(&hash[2..], 16).is_ok_and(|hash| hash != 0),
        "{hash}"
    );
    let line =
        format!("restart after kill -9: state hash {hash} before the kill, {hash} after: the same");
    assert!(stdout.contains(&line), "no {line:?} in {stdout}");
    assert_eq!(u64_of(restart, "/sample_lookup/found"), 3_000, "{restart}");
    // The windows read the child's memory, not this benchmark's.
    let windows = report["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 3);
    assert!(u64_of(&windows[0], "/rss_bytes") > 0);
    assert!(u64_of(&report, "/resources/rss_bytes") > 0);

    // It needs the benchmark's own server.
    let output = clearline(&[
        "benchmark",
        "--addr",
        "127.0.0.1:9",
        "--restart-check",
        "--no-progress",
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--restart-check needs"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
