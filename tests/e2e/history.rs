//! History mode (`clearline start --history`, docs/history.md) over the wire: a server whose
//! memory holds a few thousand recent transfers takes many times that, never refuses one for
//! capacity, and still answers for every transfer it ever made (lookups, retries answering
//! `exists`, posts of old pending transfers, an account's whole history) before and after
//! kill -9.

use std::collections::BTreeSet;

use clearline_engine::{
    AccountFilter, AccountFilterFlags, CreateResult, CreateTransferStatus, Operation, Transfer,
    TransferFlags,
};
use clearline_net::Client;

use crate::support::{
    account, create_all, data_dir, encode_accounts, encode_transfers, lookup_accounts,
    lookup_transfers, request_ok, results, transfer, transfers, Options, Server, LEDGER,
};

/// Recent transfers the server keeps in memory.
const MEMORY_TRANSFERS: u32 = 16_384;
/// Transfers created: many times the memory.
const TRANSFERS_COUNT: u128 = 200_000;
/// Accounts; every eighth keeps balance history.
const ACCOUNTS: u128 = 64;
/// Transfers per request.
const BATCH: u128 = 8_000;

fn options() -> Options {
    Options::new("data")
        .switch("history")
        .flag("transfers-max", MEMORY_TRANSFERS)
        .flag("transfers-pending-max", 4_096)
        .flag("account-balances-max", 2 * MEMORY_TRANSFERS)
        .flag("ids-max", 1 << 20)
        .flag("checkpoint-interval-mib", 1)
}

/// Transfer `id`: between two of the accounts, one unit, a pending one every 100th.
fn nth_transfer(id: u128) -> Transfer {
    let debit = 1 + id % ACCOUNTS;
    let credit = 1 + (id * 7 + 3) % ACCOUNTS;
    let credit = if credit == debit {
        1 + credit % ACCOUNTS
    } else {
        credit
    };
    let mut made = transfer(id, debit, credit, 1, LEDGER);
    if id % 100 == 0 {
        made.flags = TransferFlags::PENDING;
    }
    made
}

/// Sends `events` and returns each result's status.
fn create(client: &mut Client, events: &[Transfer]) -> Vec<u32> {
    let reply = request_ok(
        client,
        Operation::CreateTransfers,
        &encode_transfers(events),
    );
    results(&reply.body)
        .iter()
        .map(|result| result.status)
        .collect()
}

/// Every transfer of `account`, oldest first, paged by timestamp.
fn account_history(client: &mut Client, account: u128) -> Vec<Transfer> {
    let mut listed: Vec<Transfer> = Vec::new();
    loop {
        let filter = AccountFilter {
            account_id: account,
            timestamp_min: listed.last().map_or(0, |last| last.timestamp + 1),
            limit: 4_093,
            flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
            ..AccountFilter::default()
        };
        let mut bytes = [0u8; AccountFilter::SIZE];
        filter.encode(&mut bytes);
        let page = transfers(&request_ok(client, Operation::GetAccountTransfers, &bytes).body);
        if page.is_empty() {
            return listed;
        }
        listed.extend(page);
    }
}

/// What a server in history mode must still answer for the run.
fn check_everything(client: &mut Client, context: &str) {
    // Every transfer is found, the oldest included.
    let ids: Vec<u128> = (1..=TRANSFERS_COUNT).collect();
    let found = lookup_transfers(client, &ids);
    assert_eq!(found.len(), ids.len(), "{context}: every transfer found");
    for (got, id) in found.iter().zip(&ids) {
        assert_eq!(got.id, *id, "{context}: lookups keep the request's order");
        assert_eq!(
            got.debit_account_id,
            nth_transfer(*id).debit_account_id,
            "{context}"
        );
    }
    // Retrying the first batch answers `exists` with the first timestamps.
    let first: Vec<Transfer> = (1..=BATCH).map(nth_transfer).collect();
    let statuses = create(client, &first);
    assert!(
        statuses
            .iter()
            .all(|status| *status == CreateTransferStatus::Exists as u32),
        "{context}: retries of the first batch exist"
    );
    // An account's whole history, each transfer once, in order.
    let listed = account_history(client, 2);
    let expected: Vec<u128> = (1..=TRANSFERS_COUNT)
        .filter(|id| {
            let made = nth_transfer(*id);
            made.debit_account_id == 2 || made.credit_account_id == 2
        })
        .collect();
    let listed_ids: Vec<u128> = listed.iter().map(|t| t.id).collect();
    let extra: BTreeSet<u128> = listed_ids.iter().copied().collect();
    assert_eq!(
        extra.len(),
        listed_ids.len(),
        "{context}: each transfer once"
    );
    // Posts of pending transfers come after the first pass; only the created ones are listed.
    let created: Vec<u128> = listed_ids
        .iter()
        .copied()
        .filter(|id| *id <= TRANSFERS_COUNT)
        .collect();
    assert_eq!(
        created, expected,
        "{context}: account 2's transfers in order"
    );
    // Debits equal credits.
    let accounts = lookup_accounts(client, &(1..=ACCOUNTS).collect::<Vec<_>>());
    let debits: u128 = accounts
        .iter()
        .map(|a| a.debits_posted + a.debits_pending)
        .sum();
    let credits: u128 = accounts
        .iter()
        .map(|a| a.credits_posted + a.credits_pending)
        .sum();
    assert_eq!(debits, credits, "{context}: debits equal credits");
}

#[test]
fn history_mode_runs_far_past_its_memory_and_keeps_every_transfer_across_kill() {
    let data = data_dir();
    let mut server = Server::start(data.path(), &options());
    let mut client = server.client();
    let new_accounts: Vec<_> = (1..=ACCOUNTS)
        .map(|id| {
            let flags = if id % 8 == 1 {
                clearline_engine::AccountFlags::HISTORY
            } else {
                0
            };
            account(id, LEDGER, flags)
        })
        .collect();
    create_all(
        &mut client,
        Operation::CreateAccounts,
        &encode_accounts(&new_accounts),
    );
    let mut id = 1;
    while id <= TRANSFERS_COUNT {
        let end = (id + BATCH).min(TRANSFERS_COUNT + 1);
        let batch: Vec<Transfer> = (id..end).map(nth_transfer).collect();
        let statuses = create(&mut client, &batch);
        assert!(
            statuses
                .iter()
                .all(|status| *status == CreateResult::STATUS_CREATED),
            "transfers {id}..{end} created: {:?}",
            statuses
                .iter()
                .find(|status| **status != CreateResult::STATUS_CREATED)
        );
        id = end;
    }
    check_everything(&mut client, "before the kill");

    // Post the oldest pending transfers: they left memory long ago only if resolved, so these
    // are still there; posting them twice answers `already_posted` from wherever they are.
    let posts: Vec<Transfer> = (1..=20u128)
        .map(|n| Transfer {
            id: TRANSFERS_COUNT + n,
            pending_id: n * 100,
            amount: u128::MAX,
            flags: TransferFlags::POST_PENDING_TRANSFER,
            ..Transfer::default()
        })
        .collect();
    let statuses = create(&mut client, &posts);
    assert!(
        statuses
            .iter()
            .all(|status| *status == CreateResult::STATUS_CREATED),
        "posts: {statuses:?}"
    );

    server.kill();
    server.restart();
    let mut client = server.client();
    check_everything(&mut client, "after kill -9");
    let again: Vec<Transfer> = posts
        .iter()
        .map(|post| Transfer {
            id: post.id + 1_000,
            ..*post
        })
        .collect();
    assert!(
        create(&mut client, &again)
            .iter()
            .all(|s| *s == CreateTransferStatus::PendingTransferAlreadyPosted as u32),
        "posting again after the restart answers already_posted"
    );
    assert!(
        data.path().join("history").is_dir(),
        "the store is in DATA/history"
    );
}
