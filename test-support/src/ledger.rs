//! The seeded ledger workload: 64 accounts with mixed flags, and batches of mixed transfers
//! (single-phase, pending, post, void, linked chains, balancing, closing, failures) with pulses
//! in between.
//!
//! The allocation and determinism tests drive the engine with it. The sequence for a seed is
//! fixed: tests compare state hashes of runs over it, so a change here is a change to them.

use clearline_engine::{Account, AccountFlags, Transfer, TransferFlags};

use crate::Rng;

/// How many accounts `accounts` opens (ids `1..=ACCOUNTS_COUNT`).
pub const ACCOUNTS_COUNT: u64 = 64;
/// Nanoseconds in a second.
pub const SECOND: u64 = 1_000_000_000;

/// One request of the workload.
pub enum Request {
    /// A `create_transfers` batch.
    Transfers(Vec<Transfer>),
    /// An expiry pulse.
    Pulse,
}

/// The workload's accounts: ledger 1, code 1; every eighth has debits must not exceed
/// credits, credits must not exceed debits, or history.
pub fn accounts() -> Vec<Account> {
    (1..=ACCOUNTS_COUNT)
        .map(|id| {
            let flags = match id % 8 {
                0 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                1 => AccountFlags::HISTORY,
                2 => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
                _ => 0,
            };
            Account {
                id: u128::from(id),
                ledger: 1,
                code: 1,
                flags,
                ..Account::default()
            }
        })
        .collect()
}

/// A mixed workload: transfers, pending with and without timeouts, posts, voids, linked chains
/// (some failing), balancing, closing, unknown accounts, duplicates; pulses in between.
pub fn workload(seed: u64, requests_count: usize) -> Vec<Request> {
    let mut random = Rng::new(seed);
    let mut next_id: u128 = 1;
    let mut pending_ids: Vec<u128> = Vec::new();
    let mut requests = Vec::new();
    for _ in 0..requests_count {
        if random.below(10) == 0 {
            requests.push(Request::Pulse);
            continue;
        }
        let size = 1 + random.below(120) as usize;
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size {
            let debit = 1 + u128::from(random.below(ACCOUNTS_COUNT));
            let mut credit = 1 + u128::from(random.below(ACCOUNTS_COUNT));
            if credit == debit {
                credit = debit % u128::from(ACCOUNTS_COUNT) + 1;
            }
            let mut t = Transfer {
                id: next_id,
                debit_account_id: debit,
                credit_account_id: credit,
                amount: u128::from(1 + random.below(100)),
                ledger: 1,
                code: 1 + random.below(3) as u16,
                user_data_64: random.below(4),
                ..Transfer::default()
            };
            next_id += 1;
            match random.below(16) {
                0..=5 => {}
                6 | 7 => {
                    t.flags = TransferFlags::PENDING;
                    t.timeout = random.below(3) as u32;
                    pending_ids.push(t.id);
                }
                8 | 9 if !pending_ids.is_empty() => {
                    let pending = pending_ids[random.below(pending_ids.len() as u64) as usize];
                    let post = random.below(2) == 0;
                    t = Transfer {
                        id: t.id,
                        pending_id: pending,
                        amount: if post {
                            u128::from(random.below(60))
                        } else {
                            0
                        },
                        flags: if post {
                            TransferFlags::POST_PENDING_TRANSFER
                        } else {
                            TransferFlags::VOID_PENDING_TRANSFER
                        },
                        ..Transfer::default()
                    };
                }
                10 if batch.len() + 3 < size => {
                    // A chain of three; the last member fails one time in three.
                    t.flags = TransferFlags::LINKED;
                    batch.push(t);
                    let mut second = t;
                    second.id = next_id;
                    next_id += 1;
                    batch.push(second);
                    let mut third = t;
                    third.id = next_id;
                    third.flags = 0;
                    next_id += 1;
                    if random.below(3) == 0 {
                        third.ledger = 0;
                    }
                    t = third;
                }
                11 => {
                    t.flags = if random.below(2) == 0 {
                        TransferFlags::BALANCING_DEBIT
                    } else {
                        TransferFlags::BALANCING_CREDIT
                    };
                    t.amount = u128::from(random.below(1000));
                }
                12 => t.debit_account_id = 1_000_000, // Unknown: burns the id.
                13 if next_id > 10 => t.id = 1 + u128::from(random.below(next_id as u64 - 1)),
                14 if random.below(8) == 0 => {
                    t.flags = TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT;
                    t.timeout = 1;
                    t.amount = 0;
                }
                15 => t.flags = TransferFlags::PENDING | TransferFlags::BALANCING_DEBIT,
                _ => {}
            }
            batch.push(t);
        }
        requests.push(Request::Transfers(batch));
    }
    requests
}
