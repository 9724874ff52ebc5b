//! Paging through one account's 1,000,000 transfers over the wire with `get_account_transfers`.
//!
//! Oldest first, each page asks from `timestamp_min` = the previous page's newest timestamp + 1;
//! newest first (`reversed`), up to `timestamp_max` = the previous page's oldest timestamp - 1.
//! The page `limit` does not divide the count, so the last page is partial, and paging stops at
//! the first empty page. Together the pages must return each of the account's transfers exactly
//! once, in creation order (or its mirror), and none of the transfers between other accounts
//! that were created in between. Transfer ids are random, so creation order is not id order.
//!
//! The second test does the same in history mode (docs/history.md) with memory for an eighth of
//! the transfers, so the pages cross from the history store into memory.
//!
//! `CLEARLINE_PAGING_TRANSFERS=N` pages through N transfers instead of 1,000,000.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clearline_engine::{
    AccountFilter, AccountFilterFlags, CreateResult, Operation, Transfer, BATCH_EVENTS_MAX,
};
use clearline_net::Client;

use crate::support::{
    account, create_all, data_dir, encode_accounts, encode_transfers, request_ok, results, seed,
    transfer, transfers, Options, Rng, Server, LEDGER,
};

/// How many transfers of the paged account, unless `CLEARLINE_PAGING_TRANSFERS` says otherwise.
const TRANSFERS_COUNT_DEFAULT: usize = 1_000_000;
/// The page size: near the most one reply carries (8,191), and not a divisor of 1,000,000.
const PAGE_LIMIT: u32 = 8_189;
/// After every this many transfers of the paged account comes one between two other accounts.
const OTHERS_EVERY: usize = 997;
/// The account whose transfers are paged.
const PAGED: u128 = 1;
/// Its counterparties, taken in turn, and the accounts of the transfers that must not appear.
const OTHERS: [u128; 4] = [2, 3, 4, 5];
/// How long one request may wait for its reply: a full batch or page, in a test build on a
/// loaded machine.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// The number of transfers to page through.
fn transfers_count() -> usize {
    match std::env::var("CLEARLINE_PAGING_TRANSFERS") {
        Ok(text) => match text.parse::<usize>() {
            Ok(count) if count > 0 => count,
            _ => panic!("CLEARLINE_PAGING_TRANSFERS={text:?} is not a positive count"),
        },
        Err(_) => TRANSFERS_COUNT_DEFAULT,
    }
}

/// A transfer as the pages return it: its id and timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listed {
    id: u128,
    timestamp: u64,
}

/// What `create_history` created.
struct History {
    /// The paged account's transfers in creation order, with the timestamps the server gave.
    paged: Vec<Listed>,
    /// The ids of the transfers between other accounts.
    others: Vec<u128>,
}

/// A random transfer id (never 0 or `u128::MAX`, which ids may not be).
fn transfer_id(rng: &mut Rng) -> u128 {
    loop {
        let id = rng.next_u128();
        if id != 0 && id != u128::MAX {
            return id;
        }
    }
}

/// Creates `count` transfers of one unit that touch [`PAGED`], alternately as debit and as
/// credit account, with one transfer between two of [`OTHERS`] before the first and after every
/// [`OTHERS_EVERY`], in full batches. Every transfer must be created.
fn create_history(client: &mut Client, rng: &mut Rng, count: usize) -> History {
    let batch_max = BATCH_EVENTS_MAX as usize;
    let mut history = History {
        paged: Vec::with_capacity(count),
        others: Vec::with_capacity(count.div_ceil(OTHERS_EVERY)),
    };
    let mut batch: Vec<Transfer> = Vec::with_capacity(batch_max);
    let mut batch_paged: Vec<bool> = Vec::with_capacity(batch_max);
    let (mut paged_count, mut others_count) = (0usize, 0usize);
    while paged_count < count {
        batch.clear();
        batch_paged.clear();
        while batch.len() < batch_max && paged_count < count {
            let id = transfer_id(rng);
            if others_count * OTHERS_EVERY <= paged_count {
                let debit = OTHERS[others_count % OTHERS.len()];
                let credit = OTHERS[(others_count + 1) % OTHERS.len()];
                batch.push(transfer(id, debit, credit, 1, LEDGER));
                batch_paged.push(false);
                others_count += 1;
            } else {
                let other = OTHERS[(paged_count / 2) % OTHERS.len()];
                let (debit, credit) = if paged_count % 2 == 0 {
                    (PAGED, other)
                } else {
                    (other, PAGED)
                };
                batch.push(transfer(id, debit, credit, 1, LEDGER));
                batch_paged.push(true);
                paged_count += 1;
            }
        }
        let reply = request_ok(
            client,
            Operation::CreateTransfers,
            &encode_transfers(&batch),
        );
        let outcome = results(&reply.body);
        assert_eq!(outcome.len(), batch.len(), "one result per transfer");
        for ((sent, paged), result) in batch.iter().zip(&batch_paged).zip(&outcome) {
            assert_eq!(
                result.status,
                CreateResult::STATUS_CREATED,
                "transfer {:#x} created",
                sent.id
            );
            if *paged {
                history.paged.push(Listed {
                    id: sent.id,
                    timestamp: result.timestamp,
                });
            } else {
                history.others.push(sent.id);
            }
        }
    }
    assert_eq!(history.paged.len(), count);
    history
}

/// One page: the paged account's transfers on both sides, within the bounds, at most
/// [`PAGE_LIMIT`].
fn page(
    client: &mut Client,
    timestamp_min: u64,
    timestamp_max: u64,
    reversed: bool,
) -> Vec<Listed> {
    let mut flags = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
    if reversed {
        flags |= AccountFilterFlags::REVERSED;
    }
    let filter = AccountFilter {
        account_id: PAGED,
        timestamp_min,
        timestamp_max,
        limit: PAGE_LIMIT,
        flags,
        ..AccountFilter::default()
    };
    let mut bytes = [0u8; AccountFilter::SIZE];
    filter.encode(&mut bytes);
    let reply = request_ok(client, Operation::GetAccountTransfers, &bytes);
    let listed = transfers(&reply.body);
    assert_eq!(
        reply.count() as usize,
        listed.len(),
        "the header counts the page"
    );
    for transfer in &listed {
        assert!(
            transfer.debit_account_id == PAGED || transfer.credit_account_id == PAGED,
            "transfer {:#x} of the page touches the paged account",
            transfer.id
        );
    }
    listed
        .iter()
        .map(|transfer| Listed {
            id: transfer.id,
            timestamp: transfer.timestamp,
        })
        .collect()
}

/// Pages oldest first from the start, each page from the last one's newest timestamp + 1, until
/// an empty page. `count` transfers are expected, so every page but the last is full.
fn page_oldest_first(client: &mut Client, count: usize) -> (Vec<Listed>, usize) {
    let mut listed: Vec<Listed> = Vec::with_capacity(count);
    let mut pages = 0usize;
    loop {
        let timestamp_min = listed.last().map_or(0, |last| last.timestamp + 1);
        let items = page(client, timestamp_min, 0, false);
        pages += 1;
        let expected = (PAGE_LIMIT as usize).min(count.saturating_sub(listed.len()));
        assert_eq!(
            items.len(),
            expected,
            "page {pages} from timestamp {timestamp_min}, after {} transfers",
            listed.len()
        );
        if items.is_empty() {
            return (listed, pages);
        }
        for item in items {
            if let Some(last) = listed.last() {
                assert!(
                    item.timestamp > last.timestamp,
                    "page {pages}: timestamp {} follows {}",
                    item.timestamp,
                    last.timestamp
                );
            }
            listed.push(item);
        }
    }
}

/// Pages newest first from the end, each page up to the last one's oldest timestamp - 1, until
/// an empty page; every page but the last is full.
fn page_newest_first(client: &mut Client, count: usize) -> (Vec<Listed>, usize) {
    let mut listed: Vec<Listed> = Vec::with_capacity(count);
    let mut pages = 0usize;
    loop {
        // 0 would mean unbounded; accounts took the first timestamps, so a transfer's is above 1.
        let timestamp_max = listed.last().map_or(0, |oldest| {
            assert!(oldest.timestamp > 1, "a transfer timestamp above 1");
            oldest.timestamp - 1
        });
        let items = page(client, 0, timestamp_max, true);
        pages += 1;
        let expected = (PAGE_LIMIT as usize).min(count.saturating_sub(listed.len()));
        assert_eq!(
            items.len(),
            expected,
            "reversed page {pages} up to timestamp {timestamp_max}, after {} transfers",
            listed.len()
        );
        if items.is_empty() {
            return (listed, pages);
        }
        for item in items {
            if let Some(last) = listed.last() {
                assert!(
                    item.timestamp < last.timestamp,
                    "reversed page {pages}: timestamp {} follows {}",
                    item.timestamp,
                    last.timestamp
                );
            }
            listed.push(item);
        }
    }
}

/// Asserts `listed` holds each of `created` exactly once and none of `others`.
fn assert_each_once(listed: &[Listed], created: &[Listed], others: &[u128], walk: &str) {
    let mut seen: HashSet<u128> = HashSet::with_capacity(listed.len());
    for item in listed {
        assert!(
            seen.insert(item.id),
            "{walk}: transfer {:#x} listed twice",
            item.id
        );
    }
    assert_eq!(listed.len(), created.len(), "{walk}: every transfer listed");
    for id in others {
        assert!(
            !seen.contains(id),
            "{walk}: transfer {id:#x} of other accounts listed"
        );
    }
    assert!(
        created.iter().all(|item| seen.contains(&item.id)),
        "{walk}: every created transfer listed"
    );
}

/// With every transfer in memory (`--no-history`).
#[test]
fn paging_one_account_through_a_million_transfers_returns_each_once_in_order() {
    let count = transfers_count();
    let others_count = count.div_ceil(OTHERS_EVERY);
    let options = Options::new("none")
        .switch("no-history")
        .flag("transfers-max", count + others_count)
        .flag("segment-size", 64 << 20);
    page_through(&options, count, "paging");
}

/// The same in history mode, with memory for an eighth of the transfers: the pages cross from
/// the history store into memory and back (docs/history.md).
#[test]
fn paging_one_account_through_a_million_transfers_in_history_mode_returns_each_once_in_order() {
    let count = transfers_count();
    let options = Options::new("none")
        .switch("history")
        .flag("transfers-max", (count / 8).max(1 << 14))
        .flag("ids-max", 2 * count)
        .flag("segment-size", 64 << 20);
    page_through(&options, count, "paging in history mode");
}

/// Creates `count` transfers of the paged account on a server started with `options`, then
/// pages through them both ways (see the module docs).
fn page_through(options: &Options, count: usize, name: &'static str) {
    let (seed, _guard) = seed(name, 0x5EED_0A6E);
    let data = data_dir();
    let server = Server::start(data.path(), options);
    let mut client = server.client();
    client
        .set_timeout(Some(REPLY_TIMEOUT))
        .expect("set socket timeouts");

    let mut new_accounts = vec![account(PAGED, LEDGER, 0)];
    new_accounts.extend(OTHERS.iter().map(|id| account(*id, LEDGER, 0)));
    create_all(
        &mut client,
        Operation::CreateAccounts,
        &encode_accounts(&new_accounts),
    );

    let started = Instant::now();
    let history = create_history(&mut client, &mut Rng::new(seed), count);
    assert!(
        !history.others.is_empty(),
        "transfers of other accounts interleaved"
    );
    let created_in = started.elapsed();

    let started = Instant::now();
    let (oldest_first, pages) = page_oldest_first(&mut client, count);
    let oldest_first_in = started.elapsed();
    assert_each_once(
        &oldest_first,
        &history.paged,
        &history.others,
        "oldest first",
    );
    assert!(
        oldest_first == history.paged,
        "oldest first: the pages list the transfers in creation order, with their timestamps"
    );
    assert_eq!(
        pages,
        count.div_ceil(PAGE_LIMIT as usize) + 1,
        "pages, the empty one included"
    );

    let started = Instant::now();
    let (newest_first, reversed_pages) = page_newest_first(&mut client, count);
    let newest_first_in = started.elapsed();
    assert_each_once(
        &newest_first,
        &history.paged,
        &history.others,
        "newest first",
    );
    assert!(
        newest_first.iter().rev().eq(history.paged.iter()),
        "newest first: the pages list the transfers in reverse creation order"
    );
    assert_eq!(reversed_pages, pages, "as many pages either way");

    // Figures for whoever runs this with --nocapture; nothing depends on them.
    eprintln!(
        "{name}: {count} transfers: created in {created_in:?}, oldest first in {pages} pages in \
         {oldest_first_in:?}, newest first in {newest_first_in:?}"
    );
}
