//! Real-process crash test (docs/durability.md row 1): a child process appends records and prints
//! every sequence it learns is durable; the parent kills it with SIGKILL at random moments,
//! reopens the journal, and checks that every reported sequence is present and intact.
//!
//! The child is this same test binary, started with `CLEARLINE_JOURNAL_CRASH_CHILD=<dir>` and
//! filtered to this one test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clearline_journal::sim::Rng;
use clearline_journal::{Journal, JournalConfig, SyncMode};

const CHILD_ENV: &str = "CLEARLINE_JOURNAL_CRASH_CHILD";
const KILLS: u64 = 50;
const SEED: u64 = 0x0c4a_5e11;

fn config() -> JournalConfig {
    JournalConfig {
        segment_size: 1 << 20,
        sync: SyncMode::Data,
        body_size_max: 4096,
        ..JournalConfig::default()
    }
}

/// The body of record `sequence`: a pure function of it, so the parent can check it.
fn body(sequence: u64) -> Vec<u8> {
    let size = 16 + (sequence.wrapping_mul(2_654_435_761) % 600) as usize;
    (0..size)
        .map(|index| (sequence.wrapping_mul(31) as u8) ^ (index as u8))
        .collect()
}

/// The child: append forever, print each newly durable sequence on its own line.
fn child(dir: &Path) {
    let (mut journal, recovery) = Journal::open(dir, &config()).expect("child opens");
    let durability = journal.durability();
    let mut reported = recovery.last_sequence;
    println!("durable {reported}");
    loop {
        for _ in 0..32 {
            let sequence = journal.written_sequence() + 1;
            journal
                .append(sequence, &body(sequence))
                .expect("child appends");
        }
        // Wait for the group commit (bounds the log's growth over 50 lives), then report.
        let durable = durability
            .wait_durable(journal.written_sequence())
            .expect("sync works");
        if durable > reported {
            reported = durable;
            println!("durable {reported}");
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_reported_durable() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path();
    let executable = std::env::current_exe().unwrap();
    let mut rng = Rng::new(SEED);
    let mut reported_max = 0u64;
    for kill in 0..KILLS {
        let mut process = Command::new(&executable)
            .args([
                "sigkill_at_random_moments_loses_nothing_reported_durable",
                "--exact",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = process.stdout.take().unwrap();
        let reported = Arc::new(Mutex::new(0u64));
        let seen = Arc::clone(&reported);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(number) = line.strip_prefix("durable ") {
                    if let Ok(sequence) = number.parse::<u64>() {
                        let mut seen = seen.lock().unwrap();
                        *seen = (*seen).max(sequence);
                    }
                }
            }
        });
        // Random moments: some while the child is still starting or recovering.
        std::thread::sleep(Duration::from_millis(rng.below(60)));
        process.kill().unwrap(); // SIGKILL to our own child, by its handle.
        process.wait().unwrap();
        reader.join().unwrap();
        let reported = *reported.lock().unwrap();
        reported_max = reported_max.max(reported);

        let (journal, recovery) = Journal::open(dir, &config())
            .unwrap_or_else(|error| panic!("kill {kill} (seed {SEED:#x}): {error}"));
        assert!(
            recovery.last_sequence >= reported_max,
            "kill {kill} (seed {SEED:#x}): reported durable {reported_max}, recovered {}",
            recovery.last_sequence
        );
        let mut expected = 1u64;
        journal
            .replay(1, |record| {
                assert_eq!(record.sequence, expected, "kill {kill}");
                assert_eq!(record.timestamp, expected, "kill {kill}");
                assert_eq!(
                    record.body,
                    &body(expected)[..],
                    "kill {kill}: body of {expected}"
                );
                expected += 1;
            })
            .unwrap();
        assert_eq!(expected - 1, recovery.last_sequence);
        journal.close().unwrap();
    }
    assert!(reported_max > 0, "the child reported durable records");
    eprintln!("{KILLS} kills; the last child reported {reported_max} durable records");
    clearline_journal::verify(dir).unwrap();
}
