//! Start-up refuses a journal record it cannot apply, with a message that names the record and
//! says what to do, and a distinct exit code; it never crashes, and a second start gives the
//! same answer instead of a crash loop.
//!
//! The journals are written with the journal crate, so every record is well formed and its
//! checksums pass: one record whose body is not a request, and one valid request whose timestamp
//! is above the engine's maximum (the server never assigns one), which fails an engine invariant
//! during replay.

use std::path::Path;
use std::time::Duration;

use clearline_engine::{Operation, TIMESTAMP_MAX};
use clearline_journal::{record_size, Journal, JournalConfig, SyncMode, SEGMENT_HEADER_SIZE};

use crate::support::{
    account, clearline_command, data_dir, encode_accounts, run_until_exit, LEDGER,
};

/// The exit code of `clearline start` for a journal it cannot replay.
const EXIT_REPLAY_FAILED: i32 = 3;

/// A journal record body: the request prefix of the server's record format (operation, three
/// zero bytes, count, eight zero bytes) and the events.
fn request_record(operation: Operation, count: u32, events: &[u8]) -> Vec<u8> {
    let mut body = vec![operation as u8, 0, 0, 0];
    body.extend_from_slice(&count.to_le_bytes());
    body.extend_from_slice(&[0; 8]);
    body.extend_from_slice(events);
    body
}

/// The record of a request that creates the one account `id`.
fn create_account_record(id: u128) -> Vec<u8> {
    request_record(
        Operation::CreateAccounts,
        1,
        &encode_accounts(&[account(id, LEDGER, 0)]),
    )
}

/// Writes `records` (timestamp, body) as the journal of the data directory `data`.
fn write_journal(data: &Path, records: &[(u64, Vec<u8>)]) {
    let config = JournalConfig {
        segment_size: 8 << 20,
        sync: SyncMode::Data,
        ..JournalConfig::default()
    };
    let (mut journal, _) = Journal::open(&data.join("journal"), &config).expect("open journal");
    for (timestamp, body) in records {
        journal.append(*timestamp, body).expect("append");
    }
    journal.close().expect("close journal");
}

/// Runs `clearline start` on `data` until it exits (it must, within the deadline); returns its
/// exit code and everything it printed.
fn start_until_exit(data: &Path) -> (Option<i32>, String) {
    let output = run_until_exit(
        clearline_command()
            .arg("start")
            .arg("--data")
            .arg(data)
            .args(["--addr", "127.0.0.1:0", "--accounts-max", "1000"])
            .args([
                "--transfers-max",
                "10000",
                "--transfers-pending-max",
                "1000",
            ])
            .args(["--orders-max", "1000"])
            .args(["--segment-size", "8388608"]),
        Duration::from_secs(30),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// Starts twice; both starts must refuse with the replay exit code and name the record.
fn assert_refused(data: &Path, expected: &[&str]) {
    for attempt in 1..=2 {
        let (code, output) = start_until_exit(data);
        assert_eq!(
            code,
            Some(EXIT_REPLAY_FAILED),
            "start {attempt}: exit code; output:\n{output}"
        );
        assert!(
            !output.contains("listening on"),
            "start {attempt}: must not serve:\n{output}"
        );
        for text in expected {
            assert!(
                output.contains(text),
                "start {attempt}: the message names \"{text}\":\n{output}"
            );
        }
        assert!(
            output.contains(&format!("clearline journal inspect {}", data.display())),
            "start {attempt}: the message says what to do:\n{output}"
        );
    }
}

/// Where the second record of a journal starts when the first has a body of `size` bytes.
fn second_offset(first_body_size: usize) -> String {
    let offset = SEGMENT_HEADER_SIZE + record_size(first_body_size as u64);
    format!("offset {offset}")
}

/// A journal of one good record and then `second` (at `timestamp`) is refused at the second
/// record, with `what` in the message.
fn assert_second_record_refused(timestamp: u64, second: Vec<u8>, what: &str) {
    let data = data_dir();
    let first = create_account_record(1);
    let offset = second_offset(first.len());
    write_journal(data.path(), &[(1_000_000_000, first), (timestamp, second)]);
    assert_refused(data.path(), &["sequence 2", "segment 0", &offset, what]);
}

#[test]
fn start_refuses_a_record_that_fails_an_engine_invariant() {
    assert_second_record_refused(
        TIMESTAMP_MAX + 1,
        create_account_record(2),
        "create_accounts",
    );
}

#[test]
fn start_refuses_a_record_that_is_not_a_request() {
    assert_second_record_refused(2_000_000_000, vec![99u8; 16], "unknown operation 99");
}
