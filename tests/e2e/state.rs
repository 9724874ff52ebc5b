//! `get_state` over the wire (docs/protocol.md section 6.14): the state hash changes with every
//! write (even one whose events all fail, as it moves the engine clock), stays the same across
//! reads, and reads the same after kill -9 and a restart on the same data directory, with and
//! without history mode. Bad counts and sizes are in `bad_input`.

use clearline_engine::{CreateTransferStatus, Operation, State, Transfer, TransferFlags};
use clearline_net::{Client, FrameStatus};

use crate::support::{
    account, create_all, data_dir, encode_accounts, encode_transfers, request_ok, results,
    transfer, Options, Server, LEDGER,
};

/// Accounts of the workload.
const ACCOUNTS: u128 = 16;

/// The server's state over a fresh connection.
fn state_of(server: &Server) -> State {
    server.client().get_state().expect("get_state")
}

/// Transfer `id` between two of the accounts; a pending one every 50th.
fn nth_transfer(id: u128) -> Transfer {
    let debit = 1 + id % ACCOUNTS;
    let credit = 1 + (id + 1) % ACCOUNTS;
    let mut made = transfer(id, debit, credit, 1 + id % 5, LEDGER);
    if id % 50 == 0 {
        made.flags = TransferFlags::PENDING;
    }
    made
}

/// Creates transfers `first..first + count` in batches of `batch`; returns the timestamp of
/// the last reply.
fn create_transfers(client: &mut Client, first: u128, count: u128, batch: u128) -> u64 {
    let mut timestamp = 0;
    let mut id = first;
    while id < first + count {
        let end = (id + batch).min(first + count);
        let events: Vec<Transfer> = (id..end).map(nth_transfer).collect();
        let reply = request_ok(
            client,
            Operation::CreateTransfers,
            &encode_transfers(&events),
        );
        assert!(
            results(&reply.body)
                .iter()
                .all(|result| result.status == CreateTransferStatus::Created as u32),
            "transfers {id}..{end} created"
        );
        timestamp = reply.timestamp();
        id = end;
    }
    timestamp
}

/// Creates the accounts; returns the engine timestamp of the reply.
fn create_accounts(client: &mut Client) -> u64 {
    let accounts: Vec<_> = (1..=ACCOUNTS).map(|id| account(id, LEDGER, 0)).collect();
    let body = encode_accounts(&accounts);
    create_all(client, Operation::CreateAccounts, &body);
    // A repeated create answers `exists`; it is still a write with its own timestamp.
    request_ok(client, Operation::CreateAccounts, &body).timestamp()
}

#[test]
fn get_state_follows_writes_and_reads_the_same_after_kill_9() {
    let data = data_dir();
    let mut server = Server::start(data.path(), &Options::new("data"));
    let mut client = server.client();
    let empty = client.get_state().expect("get_state");
    assert_eq!(
        (empty.timestamp, empty.accounts_count, empty.transfers_count),
        (0, 0, 0)
    );
    assert_eq!(empty.reserved, [0; 24]);

    let timestamp = create_accounts(&mut client);
    let accounts = client.get_state().expect("get_state");
    assert_ne!(accounts.state_hash, empty.state_hash, "a write changes it");
    assert_eq!(
        accounts.timestamp, timestamp,
        "the clock is the last write's"
    );
    assert_eq!(accounts.accounts_count, ACCOUNTS as u64);

    let timestamp = create_transfers(&mut client, 1, 500, 100);
    let loaded = client.get_state().expect("get_state");
    assert_ne!(loaded.state_hash, accounts.state_hash);
    assert_eq!(loaded.timestamp, timestamp);
    assert_eq!((loaded.accounts_count, loaded.transfers_count), (16, 500));
    // Reads with no write between, on this and on another connection, read the same.
    assert_eq!(client.get_state().expect("get_state"), loaded);
    assert_eq!(state_of(&server), loaded);
    // A non-zero reserved byte gets no item, as an invalid filter does.
    let mut reserved = [0u8; 16];
    reserved[15] = 1;
    let reply = request_ok(&mut client, Operation::GetState, &reserved);
    assert_eq!((reply.count(), reply.body.len()), (0, 0));
    assert_eq!(client.get_state().expect("get_state"), loaded);

    // A write whose one event fails still moves the engine clock, and so the hash.
    let missing = transfer(10_000, 1, ACCOUNTS + 1, 1, LEDGER);
    let reply = request_ok(
        &mut client,
        Operation::CreateTransfers,
        &encode_transfers(&[missing]),
    );
    assert_eq!(
        results(&reply.body)[0].status,
        CreateTransferStatus::CreditAccountNotFound as u32
    );
    let failed = client.get_state().expect("get_state");
    assert_ne!(failed.state_hash, loaded.state_hash);
    assert_eq!(failed.timestamp, reply.timestamp());
    assert_eq!(failed.transfers_count, 500);

    // kill -9 and a restart on the same data directory: the same state, field for field.
    drop(client);
    server.kill();
    server.restart();
    let restarted = state_of(&server);
    assert_eq!(restarted, failed, "the state after kill -9 and restart");

    // And it goes on from there.
    let mut client = server.client();
    create_transfers(&mut client, 501, 10, 10);
    let after = client.get_state().expect("get_state");
    assert_ne!(after.state_hash, restarted.state_hash);
    assert!(after.timestamp > restarted.timestamp);
    assert_eq!(after.transfers_count, 510);
    server.terminate_ok();
}

/// Recent transfers a history-mode server keeps in memory.
const MEMORY_TRANSFERS: u32 = 16_384;

#[test]
fn get_state_in_history_mode_reads_the_same_after_kill_9() {
    let data = data_dir();
    let options = Options::new("data")
        .switch("history")
        .flag("transfers-max", MEMORY_TRANSFERS)
        .flag("transfers-pending-max", 4_096)
        .flag("account-balances-max", 2 * MEMORY_TRANSFERS)
        .flag("ids-max", 1 << 20)
        .flag("checkpoint-interval-mib", 1);
    let mut server = Server::start(data.path(), &options);
    let mut client = server.client();
    create_accounts(&mut client);
    let created = 3 * u128::from(MEMORY_TRANSFERS);
    let timestamp = create_transfers(&mut client, 1, created, 8_000);
    let before = client.get_state().expect("get_state");
    assert_eq!(before.timestamp, timestamp);
    assert_eq!(before.accounts_count, ACCOUNTS as u64);
    // Most transfers left memory for the history store; the hash still covers them.
    assert!(
        before.transfers_count <= u64::from(MEMORY_TRANSFERS),
        "{before:?}"
    );
    assert_eq!(client.get_state().expect("get_state"), before);

    drop(client);
    server.kill();
    server.restart();
    let after = state_of(&server);
    // What memory holds after recovery may differ; the hash and the clock may not.
    assert_eq!(after.state_hash, before.state_hash, "{before:?} {after:?}");
    assert_eq!(after.timestamp, before.timestamp);
    assert_eq!(after.accounts_count, before.accounts_count);

    let mut client = server.client();
    create_transfers(&mut client, created + 1, 10, 10);
    let moved = client.get_state().expect("get_state");
    assert_ne!(moved.state_hash, after.state_hash);
    let reply = client
        .request(Operation::GetState, &[0; 16])
        .expect("a reply");
    assert_eq!(reply.status(), FrameStatus::Ok);
    assert_eq!(reply.count(), 1);
    server.terminate_ok();
}
