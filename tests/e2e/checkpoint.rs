//! Checkpoints of the real server (docs/durability.md, "Checkpoints, retirement and disk use"):
//! the server writes them as the journal grows, a restart loads the newest one and replays only
//! the journal after it, covered segments are retired (into `--archive` when given), and a
//! damaged newest checkpoint falls back to the one before it.

use std::time::Duration;

use clearline_engine::{Operation, Transfer};

use crate::journal_tools::journal_tool;
use crate::support::{
    account, create_all, data_dir, encode_accounts, encode_transfers, files_named,
    lookup_transfers, transfer, wait_until, Options, Server, LEDGER,
};

/// Journal MiB between checkpoints.
const INTERVAL_MIB: u64 = 1;
/// The least segment size allowed, rounded up to 64 KiB: retirement happens within the test.
const SEGMENT_SIZE: u64 = 1_114_112;
/// Transfers per request.
const BATCH: u64 = 4_000;

fn options() -> Options {
    Options::new("data")
        .flag("checkpoint-interval-mib", INTERVAL_MIB)
        .flag("segment-size", SEGMENT_SIZE)
}

/// Creates accounts 1 and 2, then sends batches of transfers between them until the server
/// says it retired segments after a checkpoint. Returns every transfer created.
fn load_until_retired(server: &Server) -> Vec<Transfer> {
    let mut client = server.client();
    let accounts = [account(1, LEDGER, 0), account(2, LEDGER, 0)];
    create_all(
        &mut client,
        Operation::CreateAccounts,
        &encode_accounts(&accounts),
    );
    let mut created = Vec::new();
    let mut next_id = 1u64;
    wait_until(
        Duration::from_secs(120),
        "a checkpoint retires segments",
        || {
            let batch: Vec<Transfer> = (next_id..next_id + BATCH)
                .map(|id| transfer(u128::from(id), 1, 2, u128::from(id % 97 + 1), LEDGER))
                .collect();
            next_id += BATCH;
            create_all(
                &mut client,
                Operation::CreateTransfers,
                &encode_transfers(&batch),
            );
            created.extend(batch);
            server.output().contains("retired segments")
        },
    );
    created
}

/// Every transfer in `created` is found, unchanged but for its timestamp.
fn assert_all_found(server: &Server, created: &[Transfer], context: &str) {
    let mut client = server.client();
    let ids: Vec<u128> = created.iter().map(|transfer| transfer.id).collect();
    let found = lookup_transfers(&mut client, &ids);
    assert_eq!(
        found.len(),
        created.len(),
        "{context}: every transfer found"
    );
    for (stored, sent) in found.iter().zip(created) {
        assert_eq!(stored.id, sent.id, "{context}: order of the lookup");
        assert_eq!(
            stored.amount, sent.amount,
            "{context}: amount of {}",
            sent.id
        );
    }
}

#[test]
fn checkpoints_bound_recovery_and_retire_segments_into_the_archive() {
    let data = data_dir();
    let archive = data.path().join("archive");
    let options = options().flag("archive", archive.display());
    let mut server = Server::start(data.path(), &options);
    let created = load_until_retired(&server);
    assert!(server.terminate().success(), "{}", server.output());

    let journal = data.path().join("journal");
    let archived = files_named(&archive, "segment-", "");
    assert!(!archived.is_empty(), "retired segments are in the archive");
    let kept = files_named(&journal, "segment-", "");
    assert!(
        kept.iter().all(|name| !archived.contains(name)),
        "a segment is either kept or archived: kept {kept:?}, archived {archived:?}"
    );
    assert!(
        !files_named(&journal, "checkpoint-", "").is_empty(),
        "checkpoint files are kept in the journal directory"
    );

    server.restart();
    let output = server.output();
    assert!(
        output.contains("clearline: recovered the checkpoint at sequence"),
        "the restart loads a checkpoint: {output}"
    );
    assert_all_found(&server, &created, "after the restart");
    assert!(server.terminate().success(), "{}", server.output());

    let verify = journal_tool("verify", data.path());
    assert!(verify.success, "verify: {}{}", verify.stdout, verify.stderr);
    let inspect = journal_tool("inspect", data.path());
    assert!(
        inspect.success,
        "inspect: {}{}",
        inspect.stdout, inspect.stderr
    );
    assert!(
        inspect.stdout.contains("checkpoint") && inspect.stdout.contains("retired"),
        "inspect shows checkpoints and what was retired: {}",
        inspect.stdout
    );
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let data = data_dir();
    let mut server = Server::start(data.path(), &options());
    let mut created = load_until_retired(&server);
    // One more interval of journal, so two checkpoints exist and the journal reaches back to
    // the older one.
    let mut client = server.client();
    let batch: Vec<Transfer> = (1_000_000..1_000_000 + 3 * BATCH)
        .map(|id| transfer(u128::from(id), 2, 1, 1, LEDGER))
        .collect();
    for chunk in batch.chunks(BATCH as usize) {
        create_all(
            &mut client,
            Operation::CreateTransfers,
            &encode_transfers(chunk),
        );
    }
    created.extend(batch);
    drop(client);
    let journal = data.path().join("journal");
    wait_until(Duration::from_secs(60), "two checkpoint files", || {
        files_named(&journal, "checkpoint-", ".ckpt").len() == 2
    });
    server.kill();

    let checkpoints = files_named(&journal, "checkpoint-", ".ckpt");
    let newest = journal.join(checkpoints.last().expect("a checkpoint"));
    let mut bytes = std::fs::read(&newest).expect("read the newest checkpoint");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&newest, &bytes).expect("damage the newest checkpoint");

    server.restart();
    // The warning goes to stderr, read by its own thread: it may trail the start-up lines.
    wait_until(
        Duration::from_secs(10),
        "the damaged checkpoint reported",
        || server.output().contains("skipped checkpoint"),
    );
    let output = server.output();
    assert!(
        output.contains("clearline: recovered the checkpoint at sequence"),
        "the previous checkpoint is loaded: {output}"
    );
    assert_all_found(&server, &created, "after falling back");
}
