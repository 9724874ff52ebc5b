//! Settlement of the matching side through the ledger: holds, fills, fees, cancel, amend,
//! expiry, every order type and self-trade mode, and a seeded random order flow checked against
//! the ledger's balances after every command.

use clearline_engine::{
    Account, AccountFlags, Config, CreateResult, CreateTransferStatus, Engine, Order, OrderAmend,
    OrderResult, OrderState, OrderStatus, Transfer, TransferFlags,
};
use clearline_engine::{AccountFilter, AccountFilterFlags};
use clearline_engine::{BookFilter, BookLevel, Fill, FillFilter, SETTLEMENT_ID_BIT};
use clearline_engine::{Operation, SLOTS_PER_ORDER_EVENT};
use clearline_test_support::Rng;

mod common;

use common::market::QUOTE_SOURCE;
use common::market::{account, market, market_accounts, BASE, BASE_SOURCE, FEE, MARKET, QUOTE};
use common::market::{BASE_ESCROW, QUOTE_ESCROW};

const LOT: u64 = 10;
const TICK: u64 = 5;
const MAKER_FEE: u64 = 1;
const TAKER_FEE: u64 = 2;
const SECOND: u64 = 1_000_000_000;

const BUY: u8 = 1;
const SELL: u8 = 2;
const GTC: u8 = 1;
const IOC: u8 = 2;
const FOK: u8 = 3;
const POST: u8 = 4;
const MKT: u8 = 5;

struct H {
    engine: Engine,
    now: u64,
    traders: u32,
    orders: Vec<u128>,
}

fn base_account(trader: u32) -> u128 {
    100 + u128::from(trader)
}

fn quote_account(trader: u32) -> u128 {
    200 + u128::from(trader)
}

impl H {
    fn new(traders: u32, funds: u128) -> H {
        let mut h = H {
            engine: Engine::new(&Config::test_small()),
            now: 1 << 40,
            traders,
            orders: Vec::new(),
        };
        let mut accounts = market_accounts().to_vec();
        let limited = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
        for trader in 1..=traders {
            accounts.push(account(base_account(trader), BASE, limited));
            accounts.push(account(quote_account(trader), QUOTE, limited));
        }
        let mut results = vec![CreateResult::default(); accounts.len()];
        h.now += 1 << 20;
        h.engine.create_accounts(h.now, &accounts, &mut results);
        assert!(results.iter().all(|r| r.status == u32::MAX));
        for trader in 1..=traders {
            h.fund(base_account(trader), BASE, funds);
            h.fund(quote_account(trader), QUOTE, funds);
        }
        let market = market(LOT, TICK, MAKER_FEE, TAKER_FEE);
        let mut results = [CreateResult::default()];
        h.now += 1 << 20;
        h.engine.create_markets(h.now, &[market], &mut results);
        assert_eq!(results[0].status, u32::MAX);
        h
    }

    fn fund(&mut self, id: u128, ledger: u32, amount: u128) {
        let source = if ledger == BASE {
            BASE_SOURCE
        } else {
            QUOTE_SOURCE
        };
        let transfer = Transfer {
            id: 1_000_000 + id * 1000 + self.now as u128 % 1000,
            debit_account_id: source,
            credit_account_id: id,
            amount,
            ledger,
            code: 1,
            ..Transfer::default()
        };
        let mut results = [CreateResult::default()];
        self.now += 1 << 20;
        self.engine
            .create_transfers(self.now, &[transfer], &mut results);
        assert_eq!(results[0].status, u32::MAX);
    }

    fn tick(&mut self, slots: u64) -> u64 {
        self.now += slots + 1;
        self.now
    }

    fn place(&mut self, order: Order) -> OrderResult {
        let mut results = [OrderResult::default()];
        let now = self.tick(SLOTS_PER_ORDER_EVENT);
        self.engine.place_orders(now, &[order], &mut results);
        if results[0].status == u32::MAX {
            self.orders.push(order.id);
        }
        self.check();
        results[0]
    }

    fn cancel(&mut self, id: u128) -> u32 {
        let mut results = [CreateResult::default()];
        let now = self.tick(SLOTS_PER_ORDER_EVENT);
        self.engine.cancel_orders(now, &[id], &mut results);
        self.check();
        results[0].status
    }

    fn amend(&mut self, id: u128, price: u64, quantity: u64) -> u32 {
        let amend = OrderAmend {
            order_id: id,
            price,
            quantity,
            ..OrderAmend::default()
        };
        let mut results = [CreateResult::default()];
        let now = self.tick(SLOTS_PER_ORDER_EVENT);
        self.engine.amend_orders(now, &[amend], &mut results);
        self.check();
        results[0].status
    }

    fn pulse_at(&mut self, now: u64) -> u32 {
        assert!(now > self.now);
        self.now = now;
        let expired = self.engine.pulse(now);
        self.check();
        expired
    }

    fn order(&self, id: u128) -> Order {
        let mut out = Vec::with_capacity(1);
        self.engine.lookup_orders(&[id], &mut out);
        out[0]
    }

    fn account(&self, id: u128) -> Account {
        let mut out = Vec::with_capacity(1);
        self.engine.lookup_accounts(&[id], &mut out);
        out[0]
    }

    fn book(&self) -> Vec<BookLevel> {
        let mut out = Vec::with_capacity(64);
        let filter = BookFilter {
            market: MARKET,
            depth: 32,
            ..BookFilter::default()
        };
        self.engine.get_book(&filter, &mut out);
        out
    }

    /// Every invariant of the issue, after every command.
    fn check(&self) {
        self.engine.verify();
        let mut ids = self.orders.clone();
        ids.sort_unstable();
        let mut orders = Vec::with_capacity(ids.len());
        self.engine.lookup_orders(&ids, &mut orders);
        assert_eq!(orders.len(), ids.len());
        let mut held = vec![(0u128, 0u128); self.traders as usize + 1];
        for order in &orders {
            assert!(order.filled_quantity <= order.quantity, "{order:?}");
            if order.state == OrderState::Resting as u8 {
                let lots = u128::from((order.quantity - order.filled_quantity) / LOT);
                let trader = (order.base_account_id - 100) as usize;
                if order.side == BUY {
                    let fee = u128::from(TAKER_FEE.max(MAKER_FEE));
                    held[trader].1 += (u128::from(order.price) + fee) * lots;
                } else {
                    held[trader].0 += lots * u128::from(LOT);
                }
            }
        }
        for trader in 1..=self.traders {
            let base = self.account(base_account(trader));
            let quote = self.account(quote_account(trader));
            assert_eq!(
                base.debits_pending, held[trader as usize].0,
                "trader {trader}"
            );
            assert_eq!(
                quote.debits_pending, held[trader as usize].1,
                "trader {trader}"
            );
        }
        let fee = self.account(FEE);
        assert_eq!(fee.credits_posted, self.engine.fees_charged(FEE));
        let book = self.book();
        let bid = book.iter().find(|level| level.side == BUY);
        let ask = book.iter().find(|level| level.side == SELL);
        if let (Some(bid), Some(ask)) = (bid, ask) {
            assert!(bid.price < ask.price);
        }
    }
}

fn order(id: u128, trader: u32, side: u8, tif: u8, price: u64, quantity: u64) -> Order {
    Order {
        id,
        base_account_id: base_account(trader),
        quote_account_id: quote_account(trader),
        price,
        quantity,
        market: MARKET,
        side,
        time_in_force: tif,
        ..Order::default()
    }
}

fn ok(result: &OrderResult) {
    assert_eq!(
        result.status,
        u32::MAX,
        "{:?}",
        OrderStatus::from_u32(result.status)
    );
}

fn quote_posted(h: &H, trader: u32) -> i128 {
    let a = h.account(quote_account(trader));
    a.credits_posted as i128 - a.debits_posted as i128
}

fn base_posted(h: &H, trader: u32) -> i128 {
    let a = h.account(base_account(trader));
    a.credits_posted as i128 - a.debits_posted as i128
}

const FUNDS: u128 = 1_000_000;

#[test]
fn gtc_partial_fill_fees_and_price_improvement() {
    let mut h = H::new(2, FUNDS);
    // Maker sells 30 at 100; taker buys 50 at 110: 30 fill at 100, 20 rest at 110.
    ok(&h.place(order(1, 1, SELL, GTC, 100, 30)));
    let result = h.place(order(2, 2, BUY, GTC, 110, 50));
    ok(&result);
    assert_eq!(result.state, OrderState::Resting as u8);
    assert_eq!(result.filled_quantity, 30);
    assert_eq!(result.fill_count, 1);
    assert_eq!(result.quote_traded, 300);
    assert_eq!(h.order(1).state, OrderState::Filled as u8);
    assert_eq!(h.order(2).filled_quantity, 30);
    // Buyer paid 3 lots x 100 + 3 x taker fee, and holds 2 lots at its own limit plus fee.
    assert_eq!(quote_posted(&h, 2), FUNDS as i128 - 300 - 6);
    assert_eq!(h.account(quote_account(2)).debits_pending, 2 * (110 + 2));
    assert_eq!(base_posted(&h, 2), FUNDS as i128 + 30);
    // Seller got 300 less the maker fee.
    assert_eq!(quote_posted(&h, 1), FUNDS as i128 + 300 - 3);
    assert_eq!(base_posted(&h, 1), FUNDS as i128 - 30);
    assert_eq!(h.account(FEE).credits_posted, 9);
    let mut fills = Vec::with_capacity(8);
    let filter = FillFilter {
        order_id: 2,
        limit: 8,
        ..FillFilter::default()
    };
    h.engine.get_fills(&filter, &mut fills);
    assert_eq!(fills.len(), 1);
    assert_eq!((fills[0].price, fills[0].quantity), (100, 30));
    assert_eq!((fills[0].taker_fee, fills[0].maker_fee), (6, 3));
    assert_eq!(fills[0].sequence, 1);
}

#[test]
fn short_funds_are_rejected_before_the_book() {
    let mut h = H::new(2, 1000);
    ok(&h.place(order(1, 1, SELL, GTC, 100, 30)));
    let before = h.book();
    // 11 lots at 100 + 2 fee need 1,122 > 1,000.
    let result = h.place(order(2, 2, BUY, GTC, 100, 110));
    assert_eq!(result.status, OrderStatus::ExceedsCredits as u32);
    assert_eq!(h.book(), before);
    assert_eq!(h.account(quote_account(2)).debits_pending, 0);
    // Selling more base than owned is refused the same way.
    let result = h.place(order(3, 2, SELL, GTC, 200, 1010));
    assert_eq!(result.status, OrderStatus::ExceedsCredits as u32);
    assert_eq!(h.book(), before);
}

#[test]
fn ioc_releases_its_remainder() {
    let mut h = H::new(2, FUNDS);
    ok(&h.place(order(1, 1, SELL, GTC, 100, 20)));
    let result = h.place(order(2, 2, BUY, IOC, 105, 50));
    ok(&result);
    assert_eq!(result.state, OrderState::Done as u8);
    assert_eq!(result.filled_quantity, 20);
    assert_eq!(h.account(quote_account(2)).debits_pending, 0);
    assert!(h.book().is_empty());
}

#[test]
fn fok_fills_whole_or_nothing() {
    let mut h = H::new(2, FUNDS);
    ok(&h.place(order(1, 1, SELL, GTC, 100, 20)));
    let result = h.place(order(2, 2, BUY, FOK, 100, 30));
    assert_eq!(result.status, OrderStatus::FillOrKillNotFilled as u32);
    assert_eq!(h.account(quote_account(2)).debits_pending, 0);
    assert_eq!(quote_posted(&h, 2), FUNDS as i128);
    let result = h.place(order(3, 2, BUY, FOK, 100, 20));
    ok(&result);
    assert_eq!(result.state, OrderState::Filled as u8);
}

#[test]
fn post_only_rests_or_is_rejected() {
    let mut h = H::new(2, FUNDS);
    ok(&h.place(order(1, 1, SELL, POST, 100, 20)));
    let result = h.place(order(2, 2, BUY, POST, 100, 20));
    assert_eq!(result.status, OrderStatus::PostOnlyWouldTake as u32);
    assert_eq!(h.account(quote_account(2)).debits_pending, 0);
    ok(&h.place(order(3, 2, BUY, POST, 95, 20)));
    assert_eq!(h.book().len(), 2);
}

#[test]
fn market_buy_is_bounded_by_its_budget() {
    let mut h = H::new(2, FUNDS);
    ok(&h.place(order(1, 1, SELL, GTC, 100, 20)));
    ok(&h.place(order(2, 1, SELL, GTC, 120, 20)));
    // Budget 350: 2 lots at 102 = 204, then 1 lot at 122 = 326; the next lot does not fit.
    let mut buy = order(3, 2, BUY, MKT, 0, 100);
    buy.quote_budget = 350;
    let result = h.place(buy);
    ok(&result);
    assert_eq!(result.state, OrderState::Done as u8);
    assert_eq!(result.filled_quantity, 30);
    assert_eq!(quote_posted(&h, 2), FUNDS as i128 - 326);
    assert_eq!(h.account(quote_account(2)).debits_pending, 0);
}

#[test]
fn market_sell_takes_the_bids() {
    let mut h = H::new(2, FUNDS);
    ok(&h.place(order(1, 1, BUY, GTC, 100, 20)));
    ok(&h.place(order(2, 1, BUY, GTC, 90, 20)));
    let result = h.place(order(3, 2, SELL, MKT, 0, 30));
    ok(&result);
    assert_eq!(result.filled_quantity, 30);
    assert_eq!(result.quote_traded, 200 + 90);
    assert_eq!(quote_posted(&h, 2), FUNDS as i128 + 290 - 6);
    assert_eq!(h.order(2).filled_quantity, 10);
}

#[test]
fn good_till_time_expires_on_the_pulse() {
    let mut h = H::new(2, FUNDS);
    let mut resting = order(1, 1, BUY, GTC, 100, 20);
    resting.timeout = 5;
    ok(&h.place(resting));
    let placed = h.order(1).timestamp;
    assert!(h.account(quote_account(1)).debits_pending > 0);
    assert_eq!(h.pulse_at(placed + 4 * SECOND), 0);
    assert_eq!(h.order(1).state, OrderState::Resting as u8);
    assert_eq!(h.pulse_at(placed + 5 * SECOND + 8192), 1);
    assert_eq!(h.order(1).state, OrderState::Expired as u8);
    assert_eq!(h.account(quote_account(1)).debits_pending, 0);
    assert!(h.book().is_empty());
}

#[test]
fn self_trade_cancel_incoming() {
    let mut h = H::new(2, FUNDS);
    ok(&h.place(order(1, 1, SELL, GTC, 100, 20)));
    let result = h.place(order(2, 1, BUY, GTC, 100, 20));
    ok(&result);
    assert_eq!(result.state, OrderState::Canceled as u8);
    assert_eq!(h.order(1).state, OrderState::Resting as u8);
}

#[test]
fn self_trade_cancel_resting() {
    let mut h = H::new(2, FUNDS);
    ok(&h.place(order(1, 1, SELL, GTC, 100, 20)));
    ok(&h.place(order(2, 2, SELL, GTC, 100, 20)));
    let mut buy = order(3, 1, BUY, GTC, 100, 20);
    buy.self_trade = 1;
    let result = h.place(buy);
    ok(&result);
    assert_eq!(result.state, OrderState::Filled as u8);
    assert_eq!(h.order(1).state, OrderState::Canceled as u8);
    assert_eq!(h.order(2).state, OrderState::Filled as u8);
}

#[test]
fn self_trade_cancel_both() {
    let mut h = H::new(2, FUNDS);
    ok(&h.place(order(1, 1, SELL, GTC, 100, 20)));
    let mut buy = order(2, 1, BUY, GTC, 100, 20);
    buy.self_trade = 2;
    let result = h.place(buy);
    ok(&result);
    assert_eq!(result.state, OrderState::Canceled as u8);
    assert_eq!(h.order(1).state, OrderState::Canceled as u8);
    assert_eq!(h.account(base_account(1)).debits_pending, 0);
}

#[test]
fn cancel_and_amend_of_partly_filled_orders_release_the_unused_hold() {
    let mut h = H::new(3, FUNDS);
    ok(&h.place(order(1, 1, BUY, GTC, 100, 50)));
    ok(&h.place(order(2, 2, SELL, IOC, 100, 20)));
    assert_eq!(h.account(quote_account(1)).debits_pending, 3 * 102);
    // Amend down keeps priority and holds for 1 lot.
    assert_eq!(h.amend(1, 0, 30), u32::MAX);
    assert_eq!(h.account(quote_account(1)).debits_pending, 102);
    // Re-price up: holds 1 lot at the new price.
    assert_eq!(h.amend(1, 120, 0), u32::MAX);
    assert_eq!(h.account(quote_account(1)).debits_pending, 122);
    assert_eq!(
        h.amend(1, 0, 20),
        OrderStatus::AmendQuantityBelowFilled as u32
    );
    assert_eq!(h.cancel(1), u32::MAX);
    assert_eq!(h.account(quote_account(1)).debits_pending, 0);
    assert_eq!(quote_posted(&h, 1), FUNDS as i128 - 200 - 2);
    assert_eq!(h.cancel(1), OrderStatus::OrderNotResting as u32);
    assert_eq!(h.cancel(77), OrderStatus::OrderNotFound as u32);
    // A crossing re-price trades like an incoming order.
    ok(&h.place(order(3, 3, SELL, GTC, 150, 20)));
    ok(&h.place(order(4, 1, BUY, GTC, 100, 20)));
    assert_eq!(h.amend(4, 150, 0), u32::MAX);
    assert_eq!(h.order(4).state, OrderState::Filled as u8);
    assert_eq!(h.order(3).state, OrderState::Filled as u8);
}

/// The kind of an engine-made transfer (bits 120..127 of its id).
fn kind(transfer: &Transfer) -> u128 {
    (transfer.id >> 120) & 0x7F
}

/// The transfers of `id` (debits and credits), oldest first.
fn transfers_of(h: &H, id: u128) -> Vec<Transfer> {
    let filter = AccountFilter {
        account_id: id,
        limit: 100,
        flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
        ..AccountFilter::default()
    };
    let mut found = Vec::with_capacity(100);
    h.engine.get_account_transfers(&filter, &mut found);
    found
}

#[test]
fn client_ids_with_bit_127_and_settlement_ids_do_not_collide() {
    let mut h = H::new(2, FUNDS);
    ok(&h.place(order(1, 1, SELL, GTC, 100, 20)));
    ok(&h.place(order(2, 2, BUY, GTC, 100, 10)));
    // A fill's base leg is a settlement transfer: found through the account, marked as
    // settlement, kind 3, tagged with the taker's order id.
    let found = transfers_of(&h, base_account(1));
    let legs: Vec<&Transfer> = found
        .iter()
        .filter(|t| t.flags & TransferFlags::SETTLEMENT != 0)
        .collect();
    assert_eq!(legs.len(), 1);
    let leg = *legs[0];
    assert_ne!(leg.id & SETTLEMENT_ID_BIT, 0);
    assert_eq!(kind(&leg), 3);
    assert_eq!(leg.user_data_128, 2);
    // The next fill's base leg (kind 3, four serials on: this fill made four legs).
    let next_leg = SETTLEMENT_ID_BIT | (3 << 120) | ((leg.id & 0xFFFF) + 4);

    let client = |id: u128, flags: u16, pending_id: u128| Transfer {
        id,
        debit_account_id: BASE_SOURCE,
        credit_account_id: base_account(1),
        amount: 1,
        pending_id,
        ledger: BASE,
        code: 1,
        flags,
        ..Transfer::default()
    };
    let pending = SETTLEMENT_ID_BIT | 0x1234_5678_9ABC;
    let events = [
        // A client id equal to the engine's leg, and to the engine's next leg.
        client(leg.id, 0, 0),
        client(next_leg, 0, 0),
        // Any id with bit 127, pending, then voided by a client void naming it.
        client(SETTLEMENT_ID_BIT | 5, 0, 0),
        client(pending, TransferFlags::PENDING, 0),
        Transfer {
            id: u128::MAX - 1,
            pending_id: pending,
            flags: TransferFlags::VOID_PENDING_TRANSFER,
            ..Transfer::default()
        },
        // A client void naming the leg's id reaches the client's own transfer of that id.
        Transfer {
            id: 98,
            pending_id: leg.id,
            flags: TransferFlags::VOID_PENDING_TRANSFER,
            ..Transfer::default()
        },
        // Clients cannot make settlement transfers.
        client(97, TransferFlags::SETTLEMENT, 0),
    ];
    let mut results = [CreateResult::default(); 7];
    let now = h.tick(7);
    h.engine.create_transfers(now, &events, &mut results);
    let statuses: Vec<u32> = results.iter().map(|r| r.status).collect();
    let created = u32::MAX;
    let not_pending = CreateTransferStatus::PendingTransferNotPending as u32;
    let reserved_flag = CreateTransferStatus::ReservedFlag as u32;
    assert_eq!(
        statuses,
        [
            created,
            created,
            created,
            created,
            created,
            not_pending,
            reserved_flag
        ]
    );
    // Lookups by id see client transfers only.
    let mut out = Vec::with_capacity(4);
    h.engine
        .lookup_transfers(&[leg.id, next_leg, SETTLEMENT_ID_BIT | 5], &mut out);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|t| t.flags & TransferFlags::SETTLEMENT == 0));
    assert_eq!((out[0].amount, out[0].flags), (1, 0));
    // The engine's hold is untouched, and the next fill's leg still gets its id.
    assert_eq!(h.account(base_account(1)).debits_pending, 10);
    ok(&h.place(order(3, 2, BUY, GTC, 100, 10)));
    assert_eq!(h.account(base_account(1)).debits_pending, 0);
    let found = transfers_of(&h, base_account(1));
    let next = found
        .iter()
        .find(|t| t.flags & TransferFlags::SETTLEMENT != 0 && t.user_data_128 == 3)
        .expect("the engine's next leg");
    assert_eq!(next.id, next_leg);
    assert_eq!(kind(next), 3);
    h.check();
}

/// Holds are reservations: placing, amending and canceling orders makes no transfer, only fills
/// do (their legs), while `debits_pending` of the traders and `credits_pending` of the escrows
/// show exactly the open holds after every step.
#[test]
fn holds_and_releases_make_no_transfers() {
    let mut h = H::new(2, FUNDS);
    let count = |h: &H| h.engine.transfers_count();
    let pending = |h: &H| {
        [
            h.account(base_account(1)).debits_pending,
            h.account(quote_account(2)).debits_pending,
            h.account(BASE_ESCROW).credits_pending,
            h.account(QUOTE_ESCROW).credits_pending,
        ]
    };
    let start = count(&h);
    // A sell of 3 lots holds 30 base.
    ok(&h.place(order(1, 1, SELL, GTC, 105, 30)));
    assert_eq!(count(&h), start);
    assert_eq!(pending(&h), [30, 0, 30, 0]);
    // Amend to 4 lots: the hold follows.
    assert_eq!(h.amend(1, 105, 40), u32::MAX);
    assert_eq!(count(&h), start);
    assert_eq!(pending(&h), [40, 0, 40, 0]);
    // A buy of 10 lots at 95 rests, holding (95 + 2) x 10 quote.
    ok(&h.place(order(2, 2, BUY, GTC, 95, 100)));
    assert_eq!(count(&h), start);
    assert_eq!(pending(&h), [40, 970, 40, 970]);
    // Re-priced to 110 it takes the 4 lots at 105: four legs, and holds 6 lots at its limit.
    assert_eq!(h.amend(2, 110, 0), u32::MAX);
    assert_eq!(count(&h), start + 4);
    assert_eq!(pending(&h), [0, 6 * 112, 0, 6 * 112]);
    // Canceled, it releases the rest.
    assert_eq!(h.cancel(2), u32::MAX);
    assert_eq!(count(&h), start + 4);
    assert_eq!(pending(&h), [0, 0, 0, 0]);
    // The traders' transfers are their funding and the fill's legs, nothing pending.
    for (id, legs) in [
        (base_account(1), vec![3]),
        (quote_account(1), vec![4, 6]),
        (base_account(2), vec![3]),
        (quote_account(2), vec![4, 5]),
    ] {
        let found = transfers_of(&h, id);
        let kinds: Vec<u128> = found
            .iter()
            .filter(|t| t.flags & TransferFlags::SETTLEMENT != 0)
            .map(kind)
            .collect();
        assert_eq!(kinds, legs, "account {id}");
        assert_eq!(found.len(), legs.len() + 1, "account {id}");
        assert!(found.iter().all(|t| t.flags & TransferFlags::PENDING == 0));
    }
    assert!(transfers_of(&h, BASE_ESCROW).is_empty());
    assert!(transfers_of(&h, QUOTE_ESCROW).is_empty());
    assert_eq!(h.engine.pending_count(), 0);
}

/// A settlement that the ledger refuses part-way (the second maker's account was closed after
/// it placed its order) leaves every balance as before the command but for the released holds,
/// makes no transfer and no fill, and cancels the taker and every maker it touched.
#[test]
fn refused_settlement_leaves_balances_as_before() {
    let mut h = H::new(3, FUNDS);
    ok(&h.place(order(1, 1, SELL, GTC, 100, 10)));
    ok(&h.place(order(2, 3, SELL, GTC, 105, 10)));
    // Trader 3 closes its base account (a pending closing transfer of nothing).
    let closing = Transfer {
        id: 55,
        debit_account_id: base_account(3),
        credit_account_id: BASE_SOURCE,
        ledger: BASE,
        code: 1,
        flags: TransferFlags::PENDING | TransferFlags::CLOSING_DEBIT,
        ..Transfer::default()
    };
    let mut results = [CreateResult::default()];
    let now = h.tick(1);
    h.engine.create_transfers(now, &[closing], &mut results);
    assert_eq!(results[0].status, u32::MAX);
    let ids = [
        base_account(1),
        quote_account(1),
        base_account(2),
        quote_account(2),
        base_account(3),
        quote_account(3),
        BASE_ESCROW,
        QUOTE_ESCROW,
        FEE,
    ];
    let balances = |h: &H| -> Vec<[u128; 4]> {
        ids.iter()
            .map(|id| {
                let a = h.account(*id);
                [
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted,
                ]
            })
            .collect()
    };
    let before = balances(&h);
    let transfers = h.engine.transfers_count();
    // The buy would take order 1 (legs made), then order 2 (its base leg is refused).
    let result = h.place(order(3, 2, BUY, GTC, 105, 20));
    assert_eq!(result.status, OrderStatus::SettlementFailed as u32);
    assert_eq!(result.state, OrderState::Canceled as u8);
    for id in [1, 2, 3] {
        assert_eq!(h.order(id).state, OrderState::Canceled as u8, "order {id}");
        assert_eq!(h.order(id).filled_quantity, 0, "order {id}");
    }
    assert_eq!(h.engine.transfers_count(), transfers);
    let mut fills = Vec::with_capacity(8);
    let filter = FillFilter {
        market: MARKET,
        limit: 8,
        ..FillFilter::default()
    };
    h.engine.get_fills(&filter, &mut fills);
    assert!(fills.is_empty());
    assert!(h.book().is_empty());
    // As before, but the makers' holds (10 base each) are released.
    let mut expected = before;
    expected[0][0] -= 10; // base_account(1)
    expected[4][0] -= 10; // base_account(3)
    expected[6][2] -= 20; // BASE_ESCROW
    assert_eq!(balances(&h), expected);
    assert_eq!(h.account(base_account(3)).debits_pending, 0);
}

#[test]
fn execute_answers_the_order_operations() {
    let mut h = H::new(2, FUNDS);
    let mut reply = vec![0u8; (1 << 20) - 64];
    let mut body = [0u8; 128];
    order(1, 1, SELL, GTC, 100, 20).encode(&mut body);
    let now = h.tick(SLOTS_PER_ORDER_EVENT);
    let size = h
        .engine
        .execute(Operation::PlaceOrders, now, &body, &mut reply);
    assert_eq!(size, OrderResult::SIZE);
    let result = OrderResult::decode(reply[..64].try_into().unwrap());
    ok(&result);
    let mut filter = [0u8; 64];
    BookFilter {
        market: MARKET,
        depth: 5,
        ..BookFilter::default()
    }
    .encode(&mut filter);
    let size = h.engine.execute(Operation::GetBook, 0, &filter, &mut reply);
    assert_eq!(size, BookLevel::SIZE);
    let level = BookLevel::decode(reply[..32].try_into().unwrap());
    assert_eq!((level.price, level.quantity, level.side), (100, 20, SELL));
    let size = h
        .engine
        .execute(Operation::LookupOrders, 0, &1u128.to_le_bytes(), &mut reply);
    assert_eq!(size, Order::SIZE);
    let mut fill_filter = [0u8; 64];
    FillFilter {
        market: MARKET,
        limit: 10,
        ..FillFilter::default()
    }
    .encode(&mut fill_filter);
    let size = h
        .engine
        .execute(Operation::GetFills, 0, &fill_filter, &mut reply);
    assert_eq!(size, 0);
    let now = h.tick(SLOTS_PER_ORDER_EVENT);
    let size = h.engine.execute(
        Operation::CancelOrders,
        now,
        &1u128.to_le_bytes(),
        &mut reply,
    );
    assert_eq!(size, CreateResult::SIZE);
    assert_eq!(
        CreateResult::decode(reply[..16].try_into().unwrap()).status,
        u32::MAX
    );
    h.check();
    let _ = Fill::SIZE;
}

/// One command of the random flow.
#[derive(Clone, Copy, Debug)]
enum Command {
    Place(Order),
    Cancel(u128),
    Amend(u128, u64, u64),
    Pulse(u64),
}

fn flow(seed: u64, count: usize, traders: u32) -> Vec<Command> {
    let mut rng = Rng::new(seed);
    let mut commands = Vec::with_capacity(count);
    let mut next_id = 1u128;
    for _ in 0..count {
        let roll = rng.below(100);
        let command = if roll < 60 || next_id < 4 {
            let trader = rng.below(u64::from(traders)) as u32 + 1;
            let side = if rng.below(2) == 0 { BUY } else { SELL };
            let tif = [GTC, GTC, GTC, IOC, FOK, POST, MKT][rng.below(7) as usize];
            let price = if tif == MKT {
                0
            } else {
                (18 + rng.below(5)) * TICK
            };
            let mut placed = order(next_id, trader, side, tif, price, (1 + rng.below(6)) * LOT);
            if tif == MKT && side == BUY {
                placed.quote_budget = 50 + rng.below(800);
            }
            if (tif == GTC || tif == POST) && rng.below(4) == 0 {
                placed.timeout = 1 + rng.below(3) as u32;
            }
            placed.self_trade = rng.below(3) as u8;
            next_id += 1;
            Command::Place(placed)
        } else if roll < 75 {
            Command::Cancel(1 + rng.below(next_id as u64) as u128)
        } else if roll < 95 {
            let id = 1 + rng.below(next_id as u64) as u128;
            let price = if rng.below(2) == 0 {
                0
            } else {
                (18 + rng.below(5)) * TICK
            };
            Command::Amend(id, price, rng.below(7) * LOT)
        } else {
            Command::Pulse(rng.below(2))
        };
        commands.push(command);
    }
    commands
}

fn run(commands: &[Command], traders: u32) -> H {
    let mut h = H::new(traders, 20_000);
    for command in commands {
        match *command {
            Command::Place(placed) => {
                let result = h.place(placed);
                if result.status == u32::MAX {
                    assert!(result.filled_quantity <= placed.quantity);
                }
            }
            Command::Cancel(id) => {
                h.cancel(id);
            }
            Command::Amend(id, price, quantity) => {
                h.amend(id, price, quantity);
            }
            Command::Pulse(seconds) => {
                let now = h.now + seconds * SECOND + 8190;
                h.pulse_at(now);
            }
        }
    }
    h
}

#[test]
fn random_flow_keeps_every_invariant_and_replays() {
    for seed in [3u64, 0x5EED] {
        let commands = flow(seed, 3000, 4);
        let first = run(&commands, 4);
        let fills = {
            let mut out = Vec::with_capacity(4096);
            let filter = FillFilter {
                market: MARKET,
                limit: 4096,
                ..FillFilter::default()
            };
            first.engine.get_fills(&filter, &mut out);
            out.len()
        };
        assert!(fills > 50, "seed {seed}: the flow trades ({fills} fills)");
        let second = run(&commands, 4);
        assert_eq!(
            first.engine.state_hash(),
            second.engine.state_hash(),
            "seed {seed}"
        );
    }
}

/// Order writes move engine time on by the timestamps they use, not a fixed block per event:
/// a cancel of unknown ids uses one per id, and an order that fills uses one more per ledger
/// transfer its settlement made. A later write given an older batch timestamp still gets fresh
/// timestamps.
#[test]
fn order_writes_use_only_the_timestamps_they_need() {
    let mut h = H::new(2, 1_000_000);
    assert_eq!(Operation::CancelOrders.timestamp_slots(8191), 8191);
    assert_eq!(Operation::PlaceOrders.timestamp_slots(2), 2);

    // 8,191 unknown ids: exactly 8,191 timestamps, the reservation.
    let ids: Vec<u128> = (1_000_000..1_008_191).collect();
    let mut results = vec![CreateResult::default(); ids.len()];
    let before = h.engine.timestamp_last();
    let now = before + ids.len() as u64;
    h.engine.cancel_orders(now, &ids, &mut results);
    assert!(results
        .iter()
        .all(|r| r.status == OrderStatus::OrderNotFound as u32));
    assert_eq!(results[0].timestamp, before + 1);
    assert_eq!(results[8190].timestamp, before + 8191);
    assert_eq!(h.engine.timestamp_last(), now);
    assert!(h.engine.timestamp_last() - before <= 8191);

    // A resting sell (its hold), a buy that fills it, and another resting sell, reserved 3.
    let transfers_before = h.engine.transfers_count();
    let orders = [
        order(1, 1, SELL, GTC, 100, 30),
        order(2, 2, BUY, GTC, 100, 30),
        order(3, 1, SELL, GTC, 200, 10),
    ];
    let mut results = [OrderResult::default(); 3];
    let now = h.engine.timestamp_last() + 3;
    h.engine.place_orders(now, &orders, &mut results);
    h.now = now;
    for result in &results {
        ok(result);
    }
    assert_eq!(results[1].fill_count, 1);
    let made = h.engine.transfers_count() - transfers_before;
    // Holds make no transfer: the fill's four legs are all.
    assert_eq!(made, 4);
    assert_eq!(results[0].timestamp, now - 2);
    assert_eq!(results[1].timestamp, results[0].timestamp + 1);
    assert_eq!(results[2].timestamp, results[1].timestamp + 4);
    assert_eq!(h.engine.timestamp_last(), results[2].timestamp);
    assert!(h.engine.timestamp_last() > now);

    // A transfer request whose batch timestamp the order write already used.
    let transfer = Transfer {
        id: 77,
        debit_account_id: BASE_SOURCE,
        credit_account_id: base_account(1),
        amount: 1,
        ledger: BASE,
        code: 1,
        ..Transfer::default()
    };
    let mut created = [CreateResult::default()];
    h.engine
        .create_transfers(now + 1, &[transfer], &mut created);
    assert_eq!(created[0].status, u32::MAX);
    assert!(created[0].timestamp > results[2].timestamp);
    h.now = h.engine.timestamp_last();
    h.orders.extend([1, 2, 3]);
    h.check();
}

/// One command touches at most 128 resting orders: a fill-or-kill order that would need more is
/// refused, a good-till-cancel order takes the first 128 (over several price levels) and
/// releases its rest, and a taker that reaches fewer is not limited.
#[test]
fn fills_per_order_cap_binds_at_128_makers() {
    let mut h = H::new(2, FUNDS);
    let mut id = 0;
    for price in [100, 105, 110, 115, 120, 125] {
        for _ in 0..22 {
            id += 1;
            ok(&h.place(order(id, 1, SELL, GTC, price, 10)));
        }
    }
    let exceeded = OrderStatus::FillsPerOrderExceeded as u32;
    let result = h.place(order(1_000, 2, BUY, FOK, 125, 1_300));
    assert_eq!(result.status, exceeded);
    assert_eq!(h.account(quote_account(2)).debits_pending, 0);
    // Within the cap, fill-or-kill fills: 3 levels, 66 orders.
    let result = h.place(order(1_001, 2, BUY, FOK, 110, 660));
    ok(&result);
    assert_eq!(result.fill_count, 66);
    let result = h.place(order(1_002, 2, BUY, GTC, 125, 660));
    ok(&result);
    assert_eq!(result.filled_quantity, 660);
    assert_eq!(result.fill_count, 66);
    assert_eq!(result.state, OrderState::Filled as u8);
    // The book is empty again; 130 orders at two prices, taken by one large order.
    assert!(h.book().is_empty());
    for price in [130, 135] {
        for _ in 0..65 {
            id += 1;
            ok(&h.place(order(id, 1, SELL, GTC, price, 10)));
        }
    }
    let result = h.place(order(1_003, 2, BUY, GTC, 135, 1_320));
    ok(&result);
    assert_eq!(result.fill_count, 128);
    assert_eq!(result.filled_quantity, 1_280);
    assert_eq!(result.state, OrderState::Done as u8);
    assert_eq!(h.account(quote_account(2)).debits_pending, 0);
    assert_eq!(
        h.book().iter().map(|level| level.order_count).sum::<u32>(),
        2
    );
}
