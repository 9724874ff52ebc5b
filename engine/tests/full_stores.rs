//! Totality with full stores: every store the engine has (transfers, history rows, pending
//! transfers, orders, fills) is filled by client requests, then every pulse path runs (pending
//! transfer expiry, good-till-time order expiry, both in one pulse) and orders are canceled.
//! Nothing may panic, and the state stays consistent: debits equal credits, every resting
//! order's hold is exactly what it needs, and expired or canceled orders hold nothing.

use clearline_engine::{
    AccountFlags, Config, CreateResult, CreateTransferStatus, Engine, Order, OrderResult,
    OrderState, OrderStatus, Transfer, TransferFlags,
};

mod common;

use common::market::QUOTE_SOURCE;
use common::market::{account, market, market_accounts, BASE, BASE_SOURCE, MARKET, QUOTE};

const SELLER: u128 = 10;
const SELLER_QUOTE: u128 = 11;
const BUYER: u128 = 12;
const BUYER_QUOTE: u128 = 13;
const SECOND: u64 = 1_000_000_000;
const STEP: u64 = 1 << 24;
const CREATED: u32 = u32::MAX;

struct H {
    engine: Engine,
    now: u64,
    next_id: u128,
}

impl H {
    /// Traders' accounts keep history when `history` is set, so releases need history rows.
    fn new(config: Config, history: bool) -> H {
        let mut h = H {
            engine: Engine::new(&config),
            now: 1 << 40,
            next_id: 1_000,
        };
        let trader = if history { AccountFlags::HISTORY } else { 0 };
        let mut accounts = market_accounts().to_vec();
        accounts.extend([
            account(SELLER, BASE, trader),
            account(SELLER_QUOTE, QUOTE, trader),
            account(BUYER, BASE, trader),
            account(BUYER_QUOTE, QUOTE, trader),
        ]);
        let mut results = vec![CreateResult::default(); accounts.len()];
        h.now += STEP;
        h.engine.create_accounts(h.now, &accounts, &mut results);
        assert!(results.iter().all(|r| r.status == CREATED));
        let funds = [
            (BASE_SOURCE, SELLER, BASE),
            (QUOTE_SOURCE, BUYER_QUOTE, QUOTE),
        ];
        for (debit, credit, ledger) in funds {
            assert_eq!(h.transfer(debit, credit, ledger, 1 << 40, 0, 0), CREATED);
        }
        let market = market(1, 1, 0, 0);
        let mut results = [CreateResult::default()];
        h.now += STEP;
        h.engine.create_markets(h.now, &[market], &mut results);
        assert_eq!(results[0].status, CREATED);
        h
    }

    fn transfer(
        &mut self,
        debit: u128,
        credit: u128,
        ledger: u32,
        amount: u128,
        flags: u16,
        timeout: u32,
    ) -> u32 {
        self.next_id += 1;
        let transfer = Transfer {
            id: self.next_id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            ledger,
            code: 1,
            flags,
            timeout,
            ..Transfer::default()
        };
        let mut results = [CreateResult::default()];
        self.now += STEP;
        self.engine
            .create_transfers(self.now, &[transfer], &mut results);
        results[0].status
    }

    /// Sends batches of one-unit transfers between the traders' quote accounts until one is
    /// refused with a capacity code; returns that code.
    fn fill_transfers(&mut self, flags: u16, timeout: u32) -> u32 {
        for _ in 0..64 {
            let batch: Vec<Transfer> = (0..1024)
                .map(|index| Transfer {
                    id: self.next_id + 1 + index,
                    debit_account_id: BUYER_QUOTE,
                    credit_account_id: SELLER_QUOTE,
                    amount: 1,
                    ledger: QUOTE,
                    code: 1,
                    flags,
                    timeout,
                    ..Transfer::default()
                })
                .collect();
            self.next_id += 1024;
            let mut results = vec![CreateResult::default(); batch.len()];
            self.now += STEP;
            self.engine.create_transfers(self.now, &batch, &mut results);
            if let Some(refused) = results.iter().find(|r| r.status != CREATED) {
                return refused.status;
            }
        }
        panic!("the store never filled");
    }

    fn sell(&mut self, id: u128, price: u64, timeout: u32) -> OrderResult {
        self.order(id, 2, price, timeout)
    }

    fn order(&mut self, id: u128, side: u8, price: u64, timeout: u32) -> OrderResult {
        let (base, quote) = if side == 2 {
            (SELLER, SELLER_QUOTE)
        } else {
            (BUYER, BUYER_QUOTE)
        };
        let order = Order {
            id,
            market: MARKET,
            base_account_id: base,
            quote_account_id: quote,
            price,
            quantity: 10,
            side,
            time_in_force: 1,
            timeout,
            ..Order::default()
        };
        let mut results = [OrderResult::default()];
        self.now += STEP;
        self.engine.place_orders(self.now, &[order], &mut results);
        self.engine.verify();
        results[0]
    }

    fn cancel(&mut self, id: u128) -> u32 {
        let mut results = [CreateResult::default()];
        self.now += STEP;
        self.engine.cancel_orders(self.now, &[id], &mut results);
        self.engine.verify();
        results[0].status
    }

    fn state(&self, id: u128) -> u8 {
        let mut out = Vec::with_capacity(1);
        self.engine.lookup_orders(&[id], &mut out);
        out[0].state
    }

    fn debits_pending(&self, id: u128) -> u128 {
        let mut out = Vec::with_capacity(1);
        self.engine.lookup_accounts(&[id], &mut out);
        out[0].debits_pending
    }

    fn pulse_after(&mut self, seconds: u64) -> u32 {
        self.now += seconds * SECOND;
        let expired = self.engine.pulse(self.now);
        self.engine.verify();
        expired
    }
}

fn small() -> Config {
    Config {
        accounts_max: 64,
        transfers_max: 4096,
        transfers_pending_max: 2048,
        account_balances_max: 1 << 16,
        orders_max: 64,
        fills_max: 4096,
        ..Config::test_small()
    }
}

const TRANSFERS_FULL: u32 = CreateTransferStatus::TransfersCapacityExceeded as u32;
const ROWS_FULL: u32 = CreateTransferStatus::AccountBalancesCapacityExceeded as u32;
const PENDING_FULL: u32 = CreateTransferStatus::PendingTransfersCapacityExceeded as u32;
const EXPIRED: u8 = OrderState::Expired as u8;
const RESTING: u8 = OrderState::Resting as u8;

/// Rests `count` good-till-time sells (1 s) and one good-till-cancel sell (id 99).
fn rest_sells(h: &mut H, count: u128) {
    for id in 1..=count {
        let result = h.sell(id, 100 + id as u64, 1);
        assert_eq!(result.status, CREATED, "{result:?}");
        assert_eq!(result.state, RESTING);
    }
    assert_eq!(h.sell(99, 500, 0).status, CREATED);
}

#[test]
fn order_expiry_with_the_transfer_store_full() {
    let mut h = H::new(small(), false);
    rest_sells(&mut h, 8);
    assert_eq!(h.debits_pending(SELLER), 90);
    assert_eq!(h.fill_transfers(0, 0), TRANSFERS_FULL);
    assert_eq!(h.pulse_after(2), 8);
    for id in 1..=8 {
        assert_eq!(h.state(id), EXPIRED);
    }
    assert_eq!(h.debits_pending(SELLER), 10);
    // A cancel is a release too: it needs no more room than the store keeps for it.
    assert_eq!(h.cancel(99), OrderStatus::Ok as u32);
    assert_eq!(h.debits_pending(SELLER), 0);
    // Nothing is left to release, and the store is full for new holds.
    let refused = h.sell(100, 100, 0).status;
    assert_eq!(refused, OrderStatus::TransfersCapacityExceeded as u32);
}

#[test]
fn order_expiry_with_the_history_store_full() {
    let config = Config {
        account_balances_max: 2048 + 64,
        transfers_max: 1 << 14,
        ..small()
    };
    let mut h = H::new(config, true);
    rest_sells(&mut h, 8);
    assert_eq!(h.fill_transfers(0, 0), ROWS_FULL);
    assert_eq!(h.pulse_after(2), 8);
    assert_eq!(h.debits_pending(SELLER), 10);
    assert_eq!(h.cancel(99), OrderStatus::Ok as u32);
    assert_eq!(h.debits_pending(SELLER), 0);
}

/// A harness whose pending store is full of 1 s pending transfers and whose transfer store is
/// then filled with single-phase ones, after `resting` sells rested; returns it after the pulse
/// 2 s later, which expires more than 1,000 of them and leaves the buyer nothing pending.
fn expire_full_transfer_stores(resting: u128) -> H {
    let config = Config {
        transfers_pending_max: 1500,
        ..small()
    };
    let mut h = H::new(config, false);
    if resting > 0 {
        rest_sells(&mut h, resting);
    }
    assert_eq!(h.fill_transfers(TransferFlags::PENDING, 1), PENDING_FULL);
    assert_eq!(h.fill_transfers(0, 0), TRANSFERS_FULL);
    assert!(h.debits_pending(BUYER_QUOTE) > 1000);
    let expired = h.pulse_after(2);
    assert!(expired > 1000, "{expired}");
    assert_eq!(h.debits_pending(BUYER_QUOTE), 0);
    h
}

#[test]
fn transfer_expiry_with_the_transfer_and_pending_stores_full() {
    // Both kinds are due in the same pulse.
    let h = expire_full_transfer_stores(8);
    for id in 1..=8 {
        assert_eq!(h.state(id), EXPIRED);
    }
    assert_eq!(h.debits_pending(SELLER), 10);
}

#[test]
fn transfer_expiry_alone_with_every_store_full() {
    expire_full_transfer_stores(0);
}

#[test]
fn order_expiry_with_the_fill_and_transfer_stores_full() {
    let config = Config {
        fills_max: 128 + 4,
        ..small()
    };
    let mut h = H::new(config, false);
    for id in 1..=8 {
        assert_eq!(h.sell(id, 100, 1).status, CREATED);
    }
    // Buys take one sell each until the fill store has no room for another command.
    let mut taken = 0;
    for id in 11..=18 {
        let result = h.order(id, 1, 100, 0);
        if result.status == OrderStatus::FillsCapacityExceeded as u32 {
            break;
        }
        assert_eq!(result.status, CREATED, "{result:?}");
        taken += 1;
    }
    assert_eq!(taken, 5);
    assert_eq!(h.fill_transfers(0, 0), TRANSFERS_FULL);
    assert_eq!(h.pulse_after(2), 3);
    assert_eq!(h.debits_pending(SELLER), 0);
}

#[test]
fn order_store_full_then_expiry() {
    let config = Config {
        orders_max: 16,
        ..small()
    };
    let mut h = H::new(config, false);
    for id in 1..=16 {
        assert_eq!(h.sell(id, 100 + id as u64, 1).status, CREATED);
    }
    let refused = h.sell(17, 200, 1).status;
    assert_eq!(refused, OrderStatus::OrdersCapacityExceeded as u32);
    assert_eq!(h.fill_transfers(0, 0), TRANSFERS_FULL);
    assert_eq!(h.pulse_after(2), 16);
    assert_eq!(h.debits_pending(SELLER), 0);
}
