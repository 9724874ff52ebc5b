//! A full journal does not stop the server: writes are answered with `storage_full` (frame
//! status 8), reads are served, and an expiry that comes due while no record fits waits (it is
//! retried later) instead of stopping the core. The same holds after a restart on the full
//! journal.
//!
//! The journal is bounded with `--journal-segments-max 2`: records fill the first segment and the
//! second stays spare, so the journal is full once the first segment is. The test fills it with
//! writes of decreasing size down to the smallest record, making the last writes that fit
//! pending transfers with a short timeout, so their expiry comes due once nothing fits.

use std::time::{Duration, Instant};

use clearline_engine::{Operation, Transfer, TransferFlags, BATCH_EVENTS_MAX};
use clearline_net::{Client, FrameStatus};

use crate::support::{
    account, data_dir, encode_accounts, encode_ids, encode_transfers, lookup_accounts, transfer,
    Options, Server, LEDGER,
};

/// Timeout (seconds) of the pending transfers written while the journal fills; the whole fill
/// after the first of them takes a few requests, far less than this.
const TIMEOUT_SECONDS: u32 = 5;
/// How long the test waits for the due expiry to be tried.
const EXPIRY_WAIT: Duration = Duration::from_secs(60);

const DEBIT: u128 = 1;
const CREDIT: u128 = 2;

/// The server's message when a due expiry cannot be journaled.
const EXPIRY_POSTPONED: &str = "expiries are due but the journal is full";

/// Sends a write and returns its frame status.
fn write_status(client: &mut Client, operation: Operation, body: &[u8]) -> FrameStatus {
    client
        .request(operation, body)
        .unwrap_or_else(|error| panic!("{}: {error}", operation.name()))
        .status()
}

/// Fills the journal: large failing batches (they are journaled, and store nothing), then
/// pending transfers in batches of halving size, then one-id cancels (the smallest record),
/// each until it gets `storage_full`. Returns the number of pending transfers created.
fn fill(client: &mut Client) -> u64 {
    let filler = encode_transfers(&vec![Transfer::default(); BATCH_EVENTS_MAX as usize]);
    let mut writes = 0;
    while write_status(client, Operation::CreateTransfers, &filler) == FrameStatus::Ok {
        writes += 1;
        assert!(writes < 1_000, "the journal never filled");
    }
    let mut next_id = 1_000u128;
    let mut pending = 0u64;
    let mut size = 4096usize;
    while size >= 1 {
        loop {
            let batch: Vec<Transfer> = (0..size)
                .map(|index| Transfer {
                    flags: TransferFlags::PENDING,
                    timeout: TIMEOUT_SECONDS,
                    ..transfer(next_id + index as u128, DEBIT, CREDIT, 1, LEDGER)
                })
                .collect();
            let status = write_status(
                client,
                Operation::CreateTransfers,
                &encode_transfers(&batch),
            );
            if status == FrameStatus::StorageFull {
                break;
            }
            assert_eq!(status, FrameStatus::Ok, "pending batch of {size}");
            next_id += size as u128;
            pending += size as u64;
        }
        size /= 2;
    }
    let cancel = encode_ids(&[u128::from(u64::MAX)]);
    while write_status(client, Operation::CancelOrders, &cancel) == FrameStatus::Ok {}
    pending
}

/// Waits until the server prints `message` (`count` times in all), failing at once if it exits.
fn wait_for_output(server: &mut Server, message: &str, count: usize) {
    let deadline = Instant::now() + EXPIRY_WAIT;
    while server.output().matches(message).count() < count {
        server.assert_running("waiting for a due expiry on a full journal");
        assert!(
            Instant::now() < deadline,
            "no \"{message}\" within {EXPIRY_WAIT:?}; output:\n{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads are served, the expiry has not been applied, and writes get `storage_full`.
fn check_full_and_serving(server: &mut Server, debits_pending: u128, context: &str) {
    let mut client = server.client();
    let found = lookup_accounts(&mut client, &[DEBIT, CREDIT]);
    assert_eq!(found.len(), 2, "{context}: both accounts found");
    assert_eq!(
        found[0].debits_pending, debits_pending,
        "{context}: the due expiry could not be journaled, so it was not applied"
    );
    let write = encode_accounts(&[account(77, LEDGER, 0)]);
    assert_eq!(
        write_status(&mut client, Operation::CreateAccounts, &write),
        FrameStatus::StorageFull,
        "{context}: a write on a full journal"
    );
    server.assert_running(context);
}

#[test]
fn full_journal_refuses_writes_serves_reads_and_survives_a_due_expiry() {
    let data = data_dir();
    let options = Options::new("data").flag("journal-segments-max", 2);
    let mut server = Server::start(data.path(), &options);
    let mut client = server.client();
    let accounts = encode_accounts(&[account(DEBIT, LEDGER, 0), account(CREDIT, LEDGER, 0)]);
    assert_eq!(
        write_status(&mut client, Operation::CreateAccounts, &accounts),
        FrameStatus::Ok
    );
    let created = fill(&mut client);
    assert!(
        created > 0,
        "some pending transfers fit before the journal filled"
    );
    let found = lookup_accounts(&mut client, &[DEBIT]);
    let debits_pending = found[0].debits_pending;
    assert!(
        debits_pending > 0,
        "the last pending transfers expired before the journal filled (more than \
         {TIMEOUT_SECONDS} s); output:\n{}",
        server.output()
    );
    drop(client);

    // Their expiry comes due; no pulse record fits.
    wait_for_output(&mut server, EXPIRY_POSTPONED, 1);
    check_full_and_serving(&mut server, debits_pending, "after the expiry came due");
    // The pulse is retried, and the server keeps running and serving meanwhile.
    std::thread::sleep(Duration::from_secs(1));
    check_full_and_serving(&mut server, debits_pending, "a second later");

    // A restart on the full journal recovers and behaves the same: the expiry is due at once.
    assert!(server.terminate().success(), "{}", server.output());
    server.restart();
    wait_for_output(&mut server, EXPIRY_POSTPONED, 1);
    check_full_and_serving(&mut server, debits_pending, "after a restart");
}
