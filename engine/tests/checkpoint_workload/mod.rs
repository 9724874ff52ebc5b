//! The mixed workload of the checkpoint tests, as requests for `Engine::execute`: imported
//! accounts and transfers, the ledger workload of the test support crate, two markets with a
//! random order flow, pulses and reads of every kind.
#![allow(dead_code)]

use clearline_engine::{
    Account, AccountFilter, AccountFilterFlags, AccountFlags, BookFilter, Config, Engine,
    FillFilter, Market, Operation, Order, OrderAmend, QueryFilter, Transfer, TransferFlags,
};
use clearline_test_support::ledger::{accounts, workload, Request as LedgerRequest, SECOND};
use clearline_test_support::Rng;

pub const BASE_LEDGER: u32 = 2;
pub const QUOTE_LEDGER: u32 = 3;
pub const FEE: u128 = 1001;
pub const BASE_ESCROW: u128 = 1002;
pub const QUOTE_ESCROW: u128 = 1003;
pub const BASE_SOURCE: u128 = 1004;
pub const QUOTE_SOURCE: u128 = 1005;
pub const TRADERS: u32 = 4;
pub const MARKETS: [u32; 2] = [1, 2];
pub const LOT: u64 = 10;
pub const TICK: u64 = 5;

/// The reply buffer size `Engine::execute` requires.
pub const REPLY_SIZE: usize = (1 << 20) - 64;

/// Small capacities: quick to allocate, ample for the workload.
pub fn config() -> Config {
    Config {
        accounts_max: 256,
        transfers_max: 16_384,
        transfers_pending_max: 2048,
        account_balances_max: 16_384,
        batch_events_max: 256,
        query_results_max: 256,
        markets_max: 4,
        orders_max: 2048,
        fills_max: 8192,
    }
}

/// One request as the server hands it to the engine.
pub struct Request {
    /// The operation.
    pub operation: Operation,
    /// The batch timestamp.
    pub timestamp: u64,
    /// The events.
    pub body: Vec<u8>,
}

pub fn base_account(trader: u32) -> u128 {
    1100 + u128::from(trader)
}

pub fn quote_account(trader: u32) -> u128 {
    1200 + u128::from(trader)
}

pub fn account(id: u128, ledger: u32, flags: u16) -> Account {
    Account {
        id,
        ledger,
        code: 1,
        flags,
        ..Account::default()
    }
}

pub fn transfer(id: u128, debit: u128, credit: u128, amount: u128, ledger: u32) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger,
        code: 1,
        ..Transfer::default()
    }
}

pub fn encode<T, const SIZE: usize>(items: &[T], encode: fn(&T, &mut [u8; SIZE])) -> Vec<u8> {
    let mut body = vec![0u8; items.len() * SIZE];
    for (item, chunk) in items.iter().zip(body.chunks_exact_mut(SIZE)) {
        encode(item, chunk.try_into().expect("chunk of SIZE"));
    }
    body
}

/// Builds requests with the batch timestamps the server would assign: each write gets a
/// timestamp past the previous one by its slots plus `step_ns`.
pub struct Builder {
    requests: Vec<Request>,
    now: u64,
}

impl Builder {
    fn push(&mut self, operation: Operation, body: Vec<u8>, step_ns: u64) {
        let count = (body.len() / operation.event_size().max(1)) as u32;
        self.now += operation.timestamp_slots(count) + step_ns;
        self.requests.push(Request {
            operation,
            timestamp: self.now,
            body,
        });
    }

    fn accounts(&mut self, accounts: &[Account]) {
        self.push(
            Operation::CreateAccounts,
            encode(accounts, Account::encode),
            1,
        );
    }

    fn transfers(&mut self, transfers: &[Transfer], step_ns: u64) {
        self.push(
            Operation::CreateTransfers,
            encode(transfers, Transfer::encode),
            step_ns,
        );
    }

    /// The reads of every kind, so replies cover what the stores hold.
    fn queries(&mut self, rng: &mut Rng) {
        let ids: Vec<u8> = (0..8u128)
            .flat_map(|index| (1 + u128::from(rng.below(70)) + index).to_le_bytes())
            .collect();
        self.push(Operation::LookupAccounts, ids.clone(), 0);
        self.push(Operation::LookupTransfers, ids, 0);
        let history = AccountFilter {
            account_id: 1 + 8 * u128::from(rng.below(8)),
            limit: 64,
            flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
            ..AccountFilter::default()
        };
        for operation in [
            Operation::GetAccountTransfers,
            Operation::GetAccountBalances,
        ] {
            self.push(operation, encode(&[history], AccountFilter::encode), 0);
        }
        let query = QueryFilter {
            ledger: 1,
            limit: 64,
            ..QueryFilter::default()
        };
        self.push(
            Operation::QueryTransfers,
            encode(&[query], QueryFilter::encode),
            0,
        );
        let market = MARKETS[rng.below(2) as usize];
        let book = BookFilter {
            market,
            depth: 16,
            reserved: [0; 56],
        };
        self.push(Operation::GetBook, encode(&[book], BookFilter::encode), 0);
        let fills = FillFilter {
            market,
            limit: 64,
            ..FillFilter::default()
        };
        self.push(Operation::GetFills, encode(&[fills], FillFilter::encode), 0);
        let orders: Vec<u8> = (0..8u128)
            .flat_map(|_| (1 + u128::from(rng.below(400))).to_le_bytes())
            .collect();
        self.push(Operation::LookupOrders, orders, 0);
    }
}

/// A random order command of the matching side's flow.
pub fn order_request(builder: &mut Builder, rng: &mut Rng, next_order: &mut u128) {
    let roll = rng.below(100);
    if roll < 60 || *next_order < 4 {
        let count = 1 + rng.below(3);
        let mut orders = Vec::new();
        for _ in 0..count {
            let trader = 1 + rng.below(u64::from(TRADERS)) as u32;
            let side = 1 + rng.below(2) as u8;
            let time_in_force = [1u8, 1, 1, 2, 3, 4, 5][rng.below(7) as usize];
            let mut order = Order {
                id: *next_order,
                base_account_id: base_account(trader),
                quote_account_id: quote_account(trader),
                price: if time_in_force == 5 {
                    0
                } else {
                    (18 + rng.below(5)) * TICK
                },
                quantity: (1 + rng.below(6)) * LOT,
                market: MARKETS[rng.below(2) as usize],
                side,
                time_in_force,
                self_trade: rng.below(3) as u8,
                ..Order::default()
            };
            if time_in_force == 5 && side == 1 {
                order.quote_budget = 50 + rng.below(800);
            }
            if (time_in_force == 1 || time_in_force == 4) && rng.below(3) == 0 {
                order.timeout = 1 + rng.below(3) as u32;
            }
            *next_order += 1;
            orders.push(order);
        }
        builder.push(Operation::PlaceOrders, encode(&orders, Order::encode), 1);
    } else if roll < 75 {
        let id = 1 + u128::from(rng.below(*next_order as u64));
        builder.push(Operation::CancelOrders, id.to_le_bytes().to_vec(), 1);
    } else if roll < 95 {
        let amend = OrderAmend {
            order_id: 1 + u128::from(rng.below(*next_order as u64)),
            price: if rng.below(2) == 0 {
                0
            } else {
                (18 + rng.below(5)) * TICK
            },
            quantity: rng.below(7) * LOT,
            reserved: [0; 32],
        };
        let body = encode(&[amend], OrderAmend::encode);
        builder.push(Operation::AmendOrders, body, 1);
    } else {
        builder.push(Operation::Pulse, Vec::new(), SECOND);
    }
}

/// The mixed workload: imported accounts and transfers, the ledger workload of the test
/// support crate (pending with timeouts, posts, voids, chains, balancing, closing, burned
/// ids, history accounts), two markets with a random order flow (every time in force,
/// good-till-time, self-trade modes, cancels, amends), pulses and reads of every kind.
pub fn requests(seed: u64) -> Vec<Request> {
    let mut builder = Builder {
        requests: Vec::new(),
        now: 1 << 40,
    };
    let mut rng = Rng::new(seed);
    // Imported events keep the timestamps they carry.
    let mut imported: Vec<Account> = (0..4u64)
        .map(|index| {
            let mut account = account(5001 + u128::from(index), 1, AccountFlags::IMPORTED);
            account.timestamp = 1 + index;
            account
        })
        .collect();
    imported[1].flags |= AccountFlags::HISTORY;
    builder.accounts(&imported);
    let imported: Vec<Transfer> = (0..2u64)
        .map(|index| Transfer {
            flags: TransferFlags::IMPORTED,
            timestamp: 10 + index,
            ..transfer(5101 + u128::from(index), 5001, 5002, 7, 1)
        })
        .collect();
    builder.transfers(&imported, 1);
    builder.accounts(&accounts());
    let mut matching = vec![
        account(FEE, QUOTE_LEDGER, 0),
        account(BASE_ESCROW, BASE_LEDGER, 0),
        account(QUOTE_ESCROW, QUOTE_LEDGER, 0),
        account(BASE_SOURCE, BASE_LEDGER, 0),
        account(QUOTE_SOURCE, QUOTE_LEDGER, 0),
    ];
    for trader in 1..=TRADERS {
        let history = if trader == 1 {
            AccountFlags::HISTORY
        } else {
            0
        };
        matching.push(account(base_account(trader), BASE_LEDGER, history));
        matching.push(account(quote_account(trader), QUOTE_LEDGER, history));
    }
    builder.accounts(&matching);
    let markets: Vec<Market> = MARKETS
        .iter()
        .map(|id| Market {
            id: *id,
            base_ledger: BASE_LEDGER,
            quote_ledger: QUOTE_LEDGER,
            lot_size: LOT,
            tick_size: TICK,
            maker_fee: 1,
            taker_fee: 2,
            fee_account_id: FEE,
            base_escrow_account_id: BASE_ESCROW,
            quote_escrow_account_id: QUOTE_ESCROW,
            code: 1,
            ..Market::default()
        })
        .collect();
    builder.push(
        Operation::CreateMarkets,
        encode(&markets, Market::encode),
        1,
    );
    let mut funding = Vec::new();
    for trader in 1..=TRADERS {
        let id = 6000 + u128::from(trader) * 2;
        funding.push(transfer(id, BASE_SOURCE, base_account(trader), 20_000, 2));
        funding.push(transfer(
            id + 1,
            QUOTE_SOURCE,
            quote_account(trader),
            20_000,
            3,
        ));
    }
    builder.transfers(&funding, 1);
    let mut next_order = 1u128;
    for (index, request) in workload(seed, 80).into_iter().enumerate() {
        match request {
            LedgerRequest::Transfers(batch) => builder.transfers(&batch, SECOND / 3),
            LedgerRequest::Pulse => builder.push(Operation::Pulse, Vec::new(), SECOND / 3),
        }
        for _ in 0..3 {
            order_request(&mut builder, &mut rng, &mut next_order);
        }
        if index % 8 == 0 {
            builder.queries(&mut rng);
        }
    }
    builder.requests
}

/// Applies `requests` and returns every reply.
pub fn apply(engine: &mut Engine, requests: &[Request], reply: &mut [u8]) -> Vec<Vec<u8>> {
    requests
        .iter()
        .map(|request| {
            let size = engine.execute(request.operation, request.timestamp, &request.body, reply);
            reply[..size].to_vec()
        })
        .collect()
}
