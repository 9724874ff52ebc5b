//! Every ledger operation (1-8) over the wire against the real server, pipelined requests,
//! the reply header fields, a restart that keeps all state, and the repl's readable output.

use std::time::Duration;

use clearline_engine::{
    AccountFilter, AccountFilterFlags, AccountFlags, CreateAccountStatus, CreateResult,
    CreateTransferStatus, Operation, QueryFilter, QueryFilterFlags, Transfer, TransferFlags,
};
use clearline_net::{Client, FrameStatus, PIPELINE_DEPTH_CLIENT};

use crate::support::{
    account, accounts, balances, connect, data_dir, encode_accounts, encode_ids, encode_query,
    encode_transfers, repl_script, request_ok, results, transfer, transfers, wait_until, Options,
    Server, CODE, LEDGER,
};

const CREATED: u32 = CreateResult::STATUS_CREATED;

fn account_filter(account_id: u128, flags: u32) -> Vec<u8> {
    let filter = AccountFilter {
        account_id,
        limit: 100,
        flags,
        ..AccountFilter::default()
    };
    let mut bytes = [0u8; AccountFilter::SIZE];
    filter.encode(&mut bytes);
    bytes.to_vec()
}

/// The state the ledger test builds, to compare before and after a restart.
struct Ledger {
    account_ids: Vec<u128>,
    transfer_ids: Vec<u128>,
}

/// Creates accounts 1-4 (1 with history) and transfers 101-103 (103 pending), checking every
/// result and the reply header of each write.
fn create_ledger(client: &mut Client) -> Ledger {
    let mut first = account(1, LEDGER, AccountFlags::HISTORY);
    first.user_data_128 = 77;
    let new_accounts = [
        first,
        account(2, LEDGER, 0),
        account(3, LEDGER, 0),
        account(4, LEDGER + 1, 0),
    ];
    let reply = request_ok(
        client,
        Operation::CreateAccounts,
        &encode_accounts(&new_accounts),
    );
    let created = results(&reply.body);
    assert_eq!(reply.count(), 4, "one result per account");
    assert_eq!(created.len(), 4);
    for (index, result) in created.iter().enumerate() {
        assert_eq!(result.status, CREATED, "account {index} created");
        if index > 0 {
            assert!(
                result.timestamp > created[index - 1].timestamp,
                "timestamps increase"
            );
        }
    }
    assert_eq!(
        reply.timestamp(),
        created[3].timestamp,
        "the header carries the last event's timestamp"
    );
    assert_ne!(reply.sequence(), 0, "a write has a journal sequence");
    let accounts_sequence = reply.sequence();

    // The same account again: exists, with the original timestamp.
    let reply = request_ok(
        client,
        Operation::CreateAccounts,
        &encode_accounts(&[account(2, LEDGER, 0)]),
    );
    let again = results(&reply.body);
    assert_eq!(again[0].status, CreateAccountStatus::Exists as u32);
    assert_eq!(again[0].timestamp, created[1].timestamp);
    assert!(reply.sequence() > accounts_sequence, "sequences increase");

    let mut pending = transfer(103, 1, 3, 7, LEDGER);
    pending.flags = TransferFlags::PENDING;
    let mut tagged = transfer(102, 2, 3, 50, LEDGER);
    tagged.user_data_64 = 5;
    let new_transfers = [
        transfer(101, 1, 2, 100, LEDGER),
        tagged,
        pending,
        transfer(104, 2, 2, 1, LEDGER),
        transfer(105, 1, 4, 1, LEDGER),
        transfer(106, 1, 999, 1, LEDGER),
    ];
    let reply = request_ok(
        client,
        Operation::CreateTransfers,
        &encode_transfers(&new_transfers),
    );
    let outcome: Vec<u32> = results(&reply.body).iter().map(|r| r.status).collect();
    assert_eq!(
        outcome,
        [
            CREATED,
            CREATED,
            CREATED,
            CreateTransferStatus::AccountsMustBeDifferent as u32,
            CreateTransferStatus::AccountsMustHaveTheSameLedger as u32,
            CreateTransferStatus::CreditAccountNotFound as u32,
        ]
    );
    assert_eq!(reply.count(), 6);
    assert_eq!(reply.timestamp(), results(&reply.body)[5].timestamp);
    assert!(reply.sequence() > accounts_sequence);
    Ledger {
        account_ids: vec![1, 2, 3, 4],
        transfer_ids: vec![101, 102, 103],
    }
}

/// Checks every read operation against the ledger `create_ledger` built, plus `pipelined`:
/// the ids of the transfers of one unit from account 2 to 3 created since, oldest first.
fn check_reads(client: &mut Client, ledger: &Ledger, pipelined: &[u128]) {
    let extra = pipelined.len() as u128;
    // lookup_accounts: found ones only, in request order; a read has no sequence or timestamp.
    let reply = request_ok(client, Operation::LookupAccounts, &encode_ids(&[3, 999, 1]));
    assert_eq!(reply.sequence(), 0, "a read has no journal sequence");
    assert_eq!(reply.timestamp(), 0, "a read has no timestamp");
    assert_eq!(reply.count(), 2);
    let found = accounts(&reply.body);
    assert_eq!(found.iter().map(|a| a.id).collect::<Vec<_>>(), [3, 1]);
    let (three, one) = (found[0], found[1]);
    assert_eq!((one.debits_posted, one.debits_pending), (100, 7));
    assert_eq!((one.credits_posted, one.credits_pending), (0, 0));
    assert_eq!(one.user_data_128, 77);
    assert_eq!(one.flags, AccountFlags::HISTORY);
    assert_eq!(
        (three.credits_posted, three.credits_pending),
        (50 + extra, 7)
    );
    assert_eq!((three.ledger, three.code), (LEDGER, CODE));
    let two = accounts(&request_ok(client, Operation::LookupAccounts, &encode_ids(&[2])).body);
    assert_eq!(
        (two[0].debits_posted, two[0].credits_posted),
        (50 + extra, 100)
    );

    // lookup_transfers: failed transfers were not stored.
    let reply = request_ok(
        client,
        Operation::LookupTransfers,
        &encode_ids(&[101, 102, 103, 104, 105, 106]),
    );
    let stored = transfers(&reply.body);
    assert_eq!(
        stored.iter().map(|t| t.id).collect::<Vec<_>>(),
        ledger.transfer_ids
    );
    assert_eq!(stored[1].user_data_64, 5);
    assert_eq!(stored[2].flags, TransferFlags::PENDING);
    assert!(stored.windows(2).all(|w| w[0].timestamp < w[1].timestamp));

    // get_account_transfers: account 1 is the debit side of 101 and 103.
    let reply = request_ok(
        client,
        Operation::GetAccountTransfers,
        &account_filter(1, AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS),
    );
    assert_eq!(reply.sequence(), 0);
    let listed: Vec<u128> = transfers(&reply.body).iter().map(|t| t.id).collect();
    assert_eq!(listed, [101, 103]);
    let reply = request_ok(
        client,
        Operation::GetAccountTransfers,
        &account_filter(
            3,
            AccountFilterFlags::CREDITS | AccountFilterFlags::REVERSED,
        ),
    );
    let listed: Vec<u128> = transfers(&reply.body).iter().map(|t| t.id).collect();
    let expected: Vec<u128> = pipelined.iter().rev().copied().chain([103, 102]).collect();
    assert_eq!(listed, expected, "credits of account 3, newest first");

    // get_account_balances: account 1 has history, one row per transfer.
    let reply = request_ok(
        client,
        Operation::GetAccountBalances,
        &account_filter(1, AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS),
    );
    let rows = balances(&reply.body);
    assert_eq!(rows.len(), 2, "one balance row per transfer of account 1");
    assert_eq!((rows[0].debits_posted, rows[0].debits_pending), (100, 0));
    assert_eq!((rows[1].debits_posted, rows[1].debits_pending), (100, 7));
    assert_eq!(rows[0].timestamp, stored[0].timestamp);
    assert_eq!(rows[1].timestamp, stored[2].timestamp);
    // Account 2 has no history: nothing.
    let reply = request_ok(
        client,
        Operation::GetAccountBalances,
        &account_filter(2, AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS),
    );
    assert_eq!(reply.count(), 0);

    // query_accounts: by ledger, by user data, all; query_transfers: by code, reversed,
    // limited, and by user_data_64. What the reversed query lists first:
    let newest_two: Vec<u128> = pipelined
        .iter()
        .rev()
        .copied()
        .chain([103, 102])
        .take(2)
        .collect();
    let limit = |limit| QueryFilter {
        limit,
        ..QueryFilter::default()
    };
    let queries = [
        (
            Operation::QueryAccounts,
            QueryFilter {
                ledger: LEDGER,
                ..limit(100)
            },
            vec![1, 2, 3],
        ),
        (
            Operation::QueryAccounts,
            QueryFilter {
                user_data_128: 77,
                ..limit(100)
            },
            vec![1],
        ),
        (
            Operation::QueryAccounts,
            limit(100),
            ledger.account_ids.clone(),
        ),
        (
            Operation::QueryTransfers,
            QueryFilter {
                code: CODE,
                flags: QueryFilterFlags::REVERSED,
                ..limit(2)
            },
            newest_two,
        ),
        (
            Operation::QueryTransfers,
            QueryFilter {
                user_data_64: 5,
                ..limit(10)
            },
            vec![102],
        ),
    ];
    for (operation, filter, expected) in queries {
        let listed = queried_ids(client, operation, &filter);
        assert_eq!(listed, expected, "{} {filter:?}", operation.name());
    }
}

/// The ids a `query_accounts` or `query_transfers` request with `filter` lists, in order.
fn queried_ids(client: &mut Client, operation: Operation, filter: &QueryFilter) -> Vec<u128> {
    let reply = request_ok(client, operation, &encode_query(filter));
    if operation == Operation::QueryAccounts {
        accounts(&reply.body).iter().map(|a| a.id).collect()
    } else {
        transfers(&reply.body).iter().map(|t| t.id).collect()
    }
}

/// Sends 16 requests before reading any reply (writes and reads mixed); the replies come in
/// order, echo the request ids, and writes carry increasing sequences.
fn check_pipelining(client: &mut Client) {
    let mut sent = Vec::new();
    for index in 0..PIPELINE_DEPTH_CLIENT as u128 {
        let id = 1_000 + index;
        let (operation, body) = if index % 2 == 0 {
            let batch = [transfer(id, 2, 3, 1, LEDGER)];
            (Operation::CreateTransfers, encode_transfers(&batch))
        } else {
            (Operation::LookupTransfers, encode_ids(&[id - 1]))
        };
        let request_id = client.send(operation, &body).expect("send pipelined");
        sent.push((request_id, operation, id));
    }
    assert_eq!(client.in_flight_count(), PIPELINE_DEPTH_CLIENT);
    let mut sequence_last = 0;
    let mut timestamp_last = 0;
    for (request_id, operation, id) in sent {
        let reply = client.receive().expect("pipelined reply");
        assert_eq!(reply.request_id(), request_id, "replies in request order");
        assert_eq!(reply.status(), FrameStatus::Ok);
        assert_eq!(reply.header.operation, operation as u8);
        assert_eq!(reply.count(), 1);
        if operation == Operation::CreateTransfers {
            assert_eq!(results(&reply.body)[0].status, CREATED);
            assert!(reply.sequence() > sequence_last, "write sequences increase");
            assert!(
                reply.timestamp() > timestamp_last,
                "write timestamps increase"
            );
            sequence_last = reply.sequence();
            timestamp_last = reply.timestamp();
        } else {
            assert_eq!(reply.sequence(), 0);
            // The read follows the write of the previous request on the same connection.
            assert_eq!(transfers(&reply.body)[0].id, id - 1);
        }
    }
}

/// Everything the server holds about `ledger`, for comparison across a restart.
fn snapshot(client: &mut Client, ledger: &Ledger) -> (Vec<u8>, Vec<Transfer>) {
    let accounts_reply = request_ok(
        client,
        Operation::LookupAccounts,
        &encode_ids(&ledger.account_ids),
    );
    let ids: Vec<u128> = ledger
        .transfer_ids
        .iter()
        .copied()
        .chain(1_000..1_016)
        .collect();
    let transfers_reply = request_ok(client, Operation::LookupTransfers, &encode_ids(&ids));
    (accounts_reply.body, transfers(&transfers_reply.body))
}

#[test]
fn every_operation_pipelining_and_restart_keep_state() {
    let data = data_dir();
    let mut server = Server::start(data.path(), &Options::new("data"));
    let mut client = server.client();
    let ledger = create_ledger(&mut client);
    check_reads(&mut client, &ledger, &[]);
    check_pipelining(&mut client);
    let before = snapshot(&mut client, &ledger);
    assert_eq!(
        before.1.len(),
        3 + 8,
        "three transfers and eight pipelined ones"
    );
    drop(client);

    server.restart_after_sigterm();
    let mut client = server.client();
    let after = snapshot(&mut client, &ledger);
    assert_eq!(before.0, after.0, "accounts byte for byte after a restart");
    assert_eq!(before.1, after.1, "transfers after a restart");
    let pipelined: Vec<u128> = (1_000..1_016).step_by(2).collect();
    check_reads(&mut client, &ledger, &pipelined);

    // The restarted server goes on: new timestamps after the recovered ones, ids still known.
    let timestamp_last = after.1.iter().map(|t| t.timestamp).max().unwrap_or(0);
    let batch = [
        transfer(101, 1, 2, 100, LEDGER),
        transfer(2_000, 3, 1, 1, LEDGER),
    ];
    let reply = request_ok(
        &mut client,
        Operation::CreateTransfers,
        &encode_transfers(&batch),
    );
    let outcome = results(&reply.body);
    assert_eq!(outcome[0].status, CreateTransferStatus::Exists as u32);
    assert_eq!(
        outcome[0].timestamp, after.1[0].timestamp,
        "the original timestamp"
    );
    assert_eq!(outcome[1].status, CREATED);
    assert!(
        outcome[1].timestamp > timestamp_last,
        "time moves on after recovery"
    );
    drop(client);
    let status = server.interrupt();
    assert!(status.success(), "SIGINT exits 0: {status:?}");
    // The output is read by another thread, which may lag the exit a little.
    wait_until(
        Duration::from_secs(5),
        "the server to print that it stopped",
        || server.output().contains("clearline: stopped"),
    );
}

#[test]
fn repl_prints_result_names() {
    let expected = [
        "account id=1: created",
        "account id=2: created",
        "transfer id=1: accounts_must_be_different",
        "transfer id=2: credit_account_not_found",
        "transfer id=3: created",
    ];
    let (_data, server, output) = repl_script(
        "create_accounts id=1 ledger=700 code=10, id=2 ledger=700 code=10; \
         create_transfers id=1 debit_account_id=1 credit_account_id=1 amount=5 ledger=700 \
         code=10, id=2 debit_account_id=1 credit_account_id=9 amount=5 ledger=700 code=10, \
         id=3 debit_account_id=1 credit_account_id=2 amount=5 ledger=700 code=10; \
         lookup_accounts id=2;",
        &expected,
    );
    let lines: Vec<&str> = output.lines().collect();
    assert!(lines.len() > expected.len(), "lookup printed\n{output}");
    let account_line = lines[expected.len()];
    assert!(
        account_line.contains("id: 2") && account_line.contains("credits_posted: 5"),
        "the looked-up account shows its balance: {account_line}"
    );

    // The repl's writes went through the same server a program sees.
    let mut client = connect(server.addr);
    let found =
        accounts(&request_ok(&mut client, Operation::LookupAccounts, &encode_ids(&[1])).body);
    assert_eq!(found[0].debits_posted, 5);
}

/// Regression: writing the shutdown message to a stdout whose reader had gone away panicked
/// (and so aborted) the server instead of letting it sync and exit 0.
#[test]
fn server_outlives_a_closed_stdout_and_stops_cleanly() {
    let data = data_dir();
    let options = Options {
        stdout_closed_after_start: true,
        ..Options::new("data")
    };
    let mut server = Server::start(data.path(), &options);
    // Give the reader thread time to drop its end of the pipe.
    std::thread::sleep(Duration::from_millis(100));
    let mut client = connect(server.addr);
    let results = results(
        &request_ok(
            &mut client,
            Operation::CreateAccounts,
            &encode_accounts(&[account(1, LEDGER, 0)]),
        )
        .body,
    );
    assert_eq!(results[0].status, CreateResult::STATUS_CREATED);
    drop(client);
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status} with a closed stdout"
    );

    let server = Server::start(data.path(), &Options::new("data"));
    let mut client = connect(server.addr);
    let found =
        accounts(&request_ok(&mut client, Operation::LookupAccounts, &encode_ids(&[1])).body);
    assert_eq!(found.len(), 1, "the account survived the restart");
}

/// Every id the reference allows is a client transfer id: ids with bit 127 set (half of all
/// random u128 ids) are created, posted and looked up like any other, and survive a restart.
#[test]
fn transfer_ids_with_bit_127_round_trip() {
    let data = data_dir();
    let mut server = Server::start(data.path(), &Options::new("data"));
    let mut client = server.client();
    let new_accounts = [account(1, LEDGER, 0), account(2, LEDGER, 0)];
    let reply = request_ok(
        &mut client,
        Operation::CreateAccounts,
        &encode_accounts(&new_accounts),
    );
    assert!(results(&reply.body).iter().all(|r| r.status == CREATED));
    let high = 1u128 << 127;
    let pending_id = high | 0x0123_4567_89AB_CDEF_0011;
    let ids = [high | 1, u128::MAX - 1, pending_id, high | (1 << 120) | 1];
    let batch = [
        transfer(ids[0], 1, 2, 10, LEDGER),
        transfer(ids[1], 2, 1, 3, LEDGER),
        Transfer {
            flags: TransferFlags::PENDING,
            ..transfer(ids[2], 1, 2, 5, LEDGER)
        },
        Transfer {
            pending_id,
            flags: TransferFlags::POST_PENDING_TRANSFER,
            ..transfer(ids[3], 0, 0, 5, 0)
        },
    ];
    let reply = request_ok(
        &mut client,
        Operation::CreateTransfers,
        &encode_transfers(&batch),
    );
    let statuses: Vec<u32> = results(&reply.body).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [CREATED; 4], "bit-127 ids are client ids");
    let lookup = |client: &mut Client| {
        let reply = request_ok(client, Operation::LookupTransfers, &encode_ids(&ids));
        transfers(&reply.body)
    };
    let before = lookup(&mut client);
    let found: Vec<u128> = before.iter().map(|t| t.id).collect();
    assert_eq!(found, ids);
    assert!(before
        .iter()
        .all(|t| t.flags & TransferFlags::SETTLEMENT == 0));
    drop(client);
    assert!(server.terminate().success());
    server.restart();
    let mut client = server.client();
    assert_eq!(
        lookup(&mut client),
        before,
        "the same transfers after replay"
    );
}
