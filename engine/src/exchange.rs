//! The matching side wired to the ledger: markets, their books, the order and fill stores, and
//! settlement of every fill as ledger transfers in the same step as the match.
//!
//! Holds. Placing an order first reserves what it may spend on the trader's account towards
//! the market's escrow (ledger/reservation.rs): a limit buy holds
//! `(price + max(taker_fee, maker_fee)) x lots` of quote towards the quote escrow
//! (`price x lots + taker_fee x lots` when the maker fee is not above the taker fee, the normal
//! case; the larger fee keeps a resting buy able to pay as maker too), a market buy holds its
//! `quote_budget`, a sell holds its quantity of base towards the base escrow. A hold is a
//! reservation on balances, not a transfer: it adds its amount to the trader's `debits_pending`
//! and the escrow's `credits_pending`, makes no transfer record and no balance row, and the
//! order's record keeps the amount. If the ledger refuses the hold (the checks of a pending
//! transfer between the same accounts) the order is rejected (`exceeds_credits`,
//! `overflows_debits_pending`, `account_closed`, `hold_refused`) before it touches the book.
//! An order whose remaining hold would be zero has none.
//!
//! Fills. After matching, one settlement step (atomic through the ledger's undo log, which
//! covers reservation changes too) settles the command: release the part of the taker's hold
//! it no longer needs; per maker touched, release the part of its hold the fill consumes, then
//! post the legs as single-phase transfers in this order: base seller -> buyer (quantity),
//! quote buyer -> seller (`price x lots`), taker fee taker quote -> fee account, maker fee
//! maker quote -> fee account (zero-amount fee legs are skipped); last, a taker that rests
//! keeps the hold of its remaining lots. A buy's hold is computed at the order's own limit for
//! its remaining lots, which releases price improvement. Cancel, expiry, IOC/FOK/market
//! remainders and self-trade cancels release the whole hold; amend replaces it by the hold for
//! the new price and quantity (checked as a new hold once the old one is released) before the
//! book changes.
//!
//! If the ledger refuses a settlement step (an account closed or limited after the order was
//! placed, or a sell whose fee exceeds its proceeds), nothing of it is applied; instead the
//! holds of the taker and of every maker touched are released, those orders are canceled
//! (taken out of the book where they still rest) and the command answers `settlement_failed`.
//! No fill is recorded then. Releases cannot fail and need no room in any store.
//!
//! Transfer ids. Engine-made transfers (the legs) carry `TransferFlags::SETTLEMENT` and their
//! ids live in a namespace of their own: the ledger's id index tells the two namespaces apart by
//! that flag, so a client transfer may use any id (bit 127 included) and never meets a
//! settlement transfer in a lookup, an idempotency check or a post or void's `pending_id`, and
//! the engine's ids never collide with a client's. `lookup_transfers` finds client transfers
//! only; settlement transfers are found through the fills they settle: `get_account_transfers`
//! and `query_transfers` return them (flag set) with the fields below to select them. The ids
//! are `(1 << 127) | (kind << 120) | serial`, kind 3 base leg, 4 quote leg, 5 taker fee, 6 maker
//! fee, and `serial` an engine-wide counter incremented per transfer made. Kinds 1 (hold) and 2
//! (void) were pending transfers and their voids while holds were records; they are no longer
//! made. Every leg carries the market in `user_data_32`, the taker's order id in
//! `user_data_128` and the fill sequence in `user_data_64` (so a fill's legs are the account's
//! transfers with the fill's taker order id and sequence), and the market's `code`.
//!
//! Timestamps. Each order event starts at a first timestamp (`block`) and uses what it needs
//! from there (see `Engine`): the order, its fills and its first leg take the first, each
//! further leg the next one, so an event uses `max(1, legs made)`, at most
//! `SLOTS_PER_ORDER_EVENT`. One event produces at most `FILLS_PER_ORDER_MAX` maker events
//! (fills or self-trade cancels), 4 legs each, so it always fits. An order whose match would
//! touch more resting orders takes the first `FILLS_PER_ORDER_MAX` and releases its remainder
//! (state done) whatever its time in force, because the remainder would still cross and so
//! cannot rest; a fill-or-kill order or an amend that would need more is rejected with
//! `fills_per_order_exceeded`. The pulse releases the holds of expired good-till-time orders
//! within the expiries its ledger expiries left unused.
//!
//! Capacity. The order store keeps every accepted order (`orders_max`), the fill store every
//! fill (`fills_max`); in history mode they hold resting orders and recent finished orders and
//! fills, the rest being in the history store (exchange/history.rs). Holds and their releases
//! take no room in the ledger's stores. Before an
//! order command the ledger must have room for a whole block of transfers and their history
//! rows (`transfers_capacity_exceeded`) and the fill store for `FILLS_PER_ORDER_MAX` fills
//! (`fills_capacity_exceeded`); a cancel needs no room. The books of all markets share one pool
//! of `orders_max` resting orders and `orders_max` price levels (a level holds at least one
//! order, so levels never run out first), allocated with the engine; one book holds at most
//! `min(orders_max, BOOK_LEVELS_MAX)` price levels. A market costs a few hundred bytes until
//! orders rest in it, and neither `create_markets` nor order commands allocate.

mod history;

use crate::account::Account;
use crate::book::{BookEvent, BookFill, Books, RestingOrder};
use crate::checkpoint::{CheckpointError, ImageReader, ImageWriter};
use crate::digest::Digest;
use crate::index::IdIndex;
use crate::ledger::{Ledger, PendingStatus};
use crate::limits::{Config, NS_PER_SECOND, PULSE_EXPIRIES_MAX};
use crate::market::{check_market, CreateMarketStatus, Market};
use crate::operation::SLOTS_PER_ORDER_EVENT;
use crate::order::{amended_price_and_quantity, check_amend};
use crate::order::{BookFilter, BookLevel, Fill, FillFilter, Order, OrderAmend, OrderResult};
use crate::order::{OrderState, OrderStatus, SelfTrade, Side, TimeInForce};
use crate::result::{CreateResult, CreateTransferStatus};
use crate::transfer::{Transfer, TransferFlags};
use crate::NO_POSITION;
use history::{history_reader, FillStore, OrderHistory};

/// The most maker events (fills and self-trade cancels) one order command may produce.
pub const FILLS_PER_ORDER_MAX: usize = 128;

/// The most price levels of one book (both sides together): bounds the walk that links a new
/// price level into its side.
pub const BOOK_LEVELS_MAX: u32 = 1 << 16;

/// Bit 127 is set in engine-made transfer ids (for readability: their namespace is told apart
/// by `TransferFlags::SETTLEMENT`, and clients may use ids with this bit too).
pub const SETTLEMENT_ID_BIT: u128 = 1 << 127;

/// Price levels per side that `fill_cap` counts before it walks single resting orders.
const FILL_CAP_LEVELS: u32 = 4;

/// Transfers per maker event: the four legs of a fill.
const TRANSFERS_PER_MAKER: usize = 4;

const _: () = assert!((FILLS_PER_ORDER_MAX * TRANSFERS_PER_MAKER) as u64 <= SLOTS_PER_ORDER_EVENT);

/// Kinds of engine-made transfers (bits 120..127 of their id). Kinds 1 and 2 (holds and their
/// voids, when holds were pending transfers) are no longer made.
#[derive(Clone, Copy)]
enum Kind {
    Base = 3,
    Quote = 4,
    TakerFee = 5,
    MakerFee = 6,
}

/// The hold of one order: the amount it reserves on its account towards the market's escrow
/// (0 = none; see the module doc), and the positions of those two accounts once looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hold {
    amount: u128,
    /// `(debit, credit)` account positions of the hold, or `NO_POSITION` twice while not known
    /// (a cache: accounts never move; it is neither written to images nor digested).
    accounts: (u32, u32),
}

impl Hold {
    const NONE: Hold = Hold {
        amount: 0,
        accounts: (NO_POSITION, NO_POSITION),
    };
}

/// Markets, books, orders, fills and the settlement scratch buffers.
pub(crate) struct Exchange {
    markets: Vec<Market>,
    books: Books,
    /// Market ids to positions in `markets` (which are also the books' handles).
    market_index: IdIndex,
    orders: Vec<Order>,
    holds: Vec<Hold>,
    order_index: IdIndex,
    fills: FillStore,
    serial: u64,
    events: Vec<BookEvent>,
    /// The first `FILL_CAP_LEVELS` levels of each side, for `fill_cap`.
    levels: Vec<BookLevel>,
    window: Vec<RestingOrder>,
    expired: Vec<RestingOrder>,
    /// Orders touched by the current command (for the fallback of a refused settlement).
    touched: Vec<(u32, Hold, Order)>,
    /// History mode (exchange/history.rs): finished orders and fills leave memory.
    history: Option<Box<OrderHistory>>,
}

impl Exchange {
    /// Bytes the books and the market table take for `config`, allocated at creation: the
    /// shared order and level pools for `orders_max` and, per market, its record, its book
    /// state and its share of the market index.
    pub(crate) fn books_bytes(config: &Config) -> u64 {
        let orders_max = config.orders_max.max(1);
        Books::bytes(config.markets_max, orders_max, orders_max)
            + u64::from(config.markets_max) * std::mem::size_of::<Market>() as u64
            + IdIndex::table_bytes(config.markets_max)
    }

    /// Bytes one empty market costs (see `books_bytes`), with the market index share of a
    /// table sized for `markets_max`.
    pub(crate) fn bytes_per_market(markets_max: u32) -> usize {
        let index = IdIndex::table_bytes(markets_max) as usize;
        Books::bytes_per_book()
            + std::mem::size_of::<Market>()
            + index / markets_max.max(1) as usize
    }

    pub(crate) fn new(config: &Config) -> Exchange {
        let orders_max = config.orders_max.max(1);
        Exchange {
            markets: Vec::with_capacity(config.markets_max as usize),
            // Levels: a level holds at least one order, so `orders_max` levels never run out
            // before the orders do.
            books: Books::new(
                config.markets_max,
                orders_max,
                orders_max,
                orders_max.min(BOOK_LEVELS_MAX),
            ),
            market_index: IdIndex::new(config.markets_max),
            orders: Vec::with_capacity(orders_max as usize),
            holds: Vec::with_capacity(orders_max as usize),
            order_index: IdIndex::new(orders_max),
            fills: FillStore::with_capacity(config.fills_max as usize),
            serial: 0,
            events: Vec::with_capacity(orders_max as usize + 1),
            levels: Vec::with_capacity(2 * FILL_CAP_LEVELS as usize),
            window: Vec::with_capacity(FILLS_PER_ORDER_MAX),
            expired: Vec::with_capacity(PULSE_EXPIRIES_MAX as usize),
            touched: Vec::with_capacity(FILLS_PER_ORDER_MAX + 1),
            history: None,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.markets.clear();
        self.books.clear();
        self.market_index.clear();
        self.orders.clear();
        self.holds.clear();
        self.order_index.clear();
        self.fills.clear();
        self.serial = 0;
        self.history_clear();
    }

    fn market_position(&self, id: u32) -> Option<usize> {
        let markets = &self.markets;
        self.market_index
            .find(u128::from(id), |position| {
                u128::from(markets[position as usize].id)
            })
            .map(|position| position as usize)
    }

    fn order_position(&self, id: u128) -> Option<u32> {
        if id == 0 {
            return None;
        }
        let orders = &self.orders;
        self.order_index
            .find(id, |position| orders[position as usize].id)
    }

    fn next_id(&mut self, kind: Kind) -> u128 {
        self.serial += 1;
        assert!(u128::from(self.serial) < 1 << 120);
        SETTLEMENT_ID_BIT | ((kind as u128) << 120) | u128::from(self.serial)
    }

    // -------------------------------------------------------------------------------------
    // create_markets

    pub(crate) fn create_markets(
        &mut self,
        ledger: &Ledger,
        timestamp: u64,
        events: &[Market],
        results: &mut [CreateResult],
    ) {
        assert_eq!(events.len(), results.len());
        assert!(timestamp >= events.len() as u64);
        let base = timestamp - events.len() as u64;
        for (index, market) in events.iter().enumerate() {
            let slot = base + index as u64 + 1;
            let (status, result_timestamp) = match self.create_market(ledger, market, slot) {
                Ok(()) => (CreateMarketStatus::Created, slot),
                Err((status, timestamp)) => (status, timestamp),
            };
            results[index] = CreateResult {
                timestamp: result_timestamp,
                status: status as u32,
                reserved: 0,
            };
        }
    }

    fn create_market(
        &mut self,
        ledger: &Ledger,
        market: &Market,
        slot: u64,
    ) -> Result<(), (CreateMarketStatus, u64)> {
        use CreateMarketStatus as S;
        if let Some(status) = check_market(market) {
            return Err((status, slot));
        }
        if let Some(position) = self.market_position(market.id) {
            let existing = self.markets[position];
            let same = Market {
                timestamp: existing.timestamp,
                ..*market
            } == existing;
            let status = if same {
                S::Exists
            } else {
                S::ExistsWithDifferentFields
            };
            return Err((status, if same { existing.timestamp } else { slot }));
        }
        let account_ledger = |id: u128| {
            ledger
                .account_position(id)
                .map(|position| ledger.accounts[position as usize].ledger)
        };
        match account_ledger(market.fee_account_id) {
            None => return Err((S::FeeAccountNotFound, slot)),
            Some(l) if l != market.quote_ledger => {
                return Err((S::FeeAccountLedgerMustBeQuote, slot))
            }
            Some(_) => {}
        }
        match account_ledger(market.base_escrow_account_id) {
            None => return Err((S::BaseEscrowAccountNotFound, slot)),
            Some(l) if l != market.base_ledger => {
                return Err((S::BaseEscrowAccountLedgerMustBeBase, slot))
            }
            Some(_) => {}
        }
        match account_ledger(market.quote_escrow_account_id) {
            None => return Err((S::QuoteEscrowAccountNotFound, slot)),
            Some(l) if l != market.quote_ledger => {
                return Err((S::QuoteEscrowAccountLedgerMustBeQuote, slot))
            }
            Some(_) => {}
        }
        if self.markets.len() >= self.markets.capacity() {
            return Err((S::MarketsCapacityExceeded, slot));
        }
        let stored = Market {
            timestamp: slot,
            ..*market
        };
        if self.books.add(&stored).is_none() {
            return Err((S::MarketsCapacityExceeded, slot));
        }
        self.market_index
            .insert(u128::from(stored.id), self.markets.len() as u32);
        self.markets.push(stored);
        Ok(())
    }

    // -------------------------------------------------------------------------------------
    // Holds and chains

    /// What a resting order with `remaining` base units still needs held.
    fn need(market: &Market, order: &Order, remaining: u64) -> u128 {
        let lots = u128::from(remaining / market.lot_size);
        match Side::from_u8(order.side).expect("stored orders are valid") {
            Side::Buy if order.time_in_force == TimeInForce::Market as u8 => {
                if remaining == 0 {
                    0
                } else {
                    u128::from(order.quote_budget)
                }
            }
            Side::Buy => {
                let fee = market.taker_fee.max(market.maker_fee);
                (u128::from(order.price) + u128::from(fee)) * lots
            }
            Side::Sell => u128::from(remaining),
        }
    }

    /// The account positions `(debit, credit)` of order `order`'s hold (its quote or base
    /// account towards the market's escrow of that asset) and their ledger. A position is
    /// `NO_POSITION` if the account does not exist (the hold then fails).
    fn hold_accounts(ledger: &Ledger, market: &Market, order: &Order) -> ((u32, u32), u32) {
        let (debit, credit, on) = match Side::from_u8(order.side).expect("valid") {
            Side::Buy => (
                order.quote_account_id,
                market.quote_escrow_account_id,
                market.quote_ledger,
            ),
            Side::Sell => (
                order.base_account_id,
                market.base_escrow_account_id,
                market.base_ledger,
            ),
        };
        let position = |id: u128| ledger.account_position(id).unwrap_or(NO_POSITION);
        ((position(debit), position(credit)), on)
    }

    /// `hold_accounts` of stored order `position`, from its hold's cache when known (and
    /// cached from here on).
    fn order_hold_accounts(
        &mut self,
        ledger: &Ledger,
        market: &Market,
        position: u32,
    ) -> ((u32, u32), u32) {
        let order = &self.orders[position as usize];
        let hold = &mut self.holds[position as usize];
        if hold.accounts.0 != NO_POSITION {
            let on = if order.side == Side::Buy as u8 {
                market.quote_ledger
            } else {
                market.base_ledger
            };
            return (hold.accounts, on);
        }
        let (accounts, on) = Exchange::hold_accounts(ledger, market, order);
        if accounts.0 != NO_POSITION && accounts.1 != NO_POSITION {
            hold.accounts = accounts;
        }
        (accounts, on)
    }

    /// Releases the whole hold of order `position` (it cannot fail) and forgets it.
    fn release(&mut self, ledger: &mut Ledger, market: &Market, position: u32) {
        let amount = self.holds[position as usize].amount;
        if amount != 0 {
            let (accounts, _) = self.order_hold_accounts(ledger, market, position);
            ledger.release(accounts, amount);
            self.holds[position as usize].amount = 0;
        }
    }

    /// Whether the stores have room for a whole order command: a block of transfers and their
    /// history rows, and room for the fills. Holds take no room.
    fn room_status(&self, ledger: &Ledger) -> Option<OrderStatus> {
        let (transfers, _, rows) = ledger.room();
        let block = SLOTS_PER_ORDER_EVENT as usize;
        if transfers < block || rows < 2 * block {
            return Some(OrderStatus::TransfersCapacityExceeded);
        }
        if self.fills.capacity() - self.fills.len() < FILLS_PER_ORDER_MAX {
            return Some(OrderStatus::FillsCapacityExceeded);
        }
        None
    }

    fn hold_status(status: CreateTransferStatus) -> OrderStatus {
        use CreateTransferStatus as S;
        match status {
            S::ExceedsCredits => OrderStatus::ExceedsCredits,
            S::OverflowsDebitsPending => OrderStatus::OverflowsDebitsPending,
            S::DebitAccountAlreadyClosed => OrderStatus::AccountClosed,
            _ => OrderStatus::HoldRefused,
        }
    }

    /// How much the taker may take within `FILLS_PER_ORDER_MAX` maker events: `None` when the
    /// cap does not bind, else the quantity of the non-self makers in the window.
    fn fill_cap(
        &mut self,
        book_position: usize,
        side: Side,
        owner: u128,
        limit: u64,
        quantity: u64,
        self_trade: SelfTrade,
    ) -> Option<u64> {
        let book = book_position as u32;
        let crosses = |price: u64| match side {
            Side::Buy => price <= limit,
            Side::Sell => price >= limit,
        };
        let best = match side {
            Side::Buy => self.books.best_ask(book),
            Side::Sell => self.books.best_bid(book),
        };
        if !best.is_some_and(crosses) {
            return None;
        }
        // Most takers reach a few resting orders: count them by price level first, and walk
        // single orders only when the first levels do not settle it. Fewer than
        // `FILLS_PER_ORDER_MAX` crossing orders cannot reach the cap; crossing quantity that
        // covers the taker within them cannot either, unless self-trade cancels (which count
        // but do not fill) may be among them.
        self.levels.clear();
        self.books.depth(book, FILL_CAP_LEVELS, &mut self.levels);
        let (mut count, mut sum, mut seen) = (0u32, 0u64, 0u32);
        for level in &self.levels {
            if level.side != side.opposite() as u8 {
                continue;
            }
            seen += 1;
            if !crosses(level.price) {
                return None;
            }
            count += level.order_count;
            if count >= FILLS_PER_ORDER_MAX as u32 {
                break;
            }
            sum = sum.saturating_add(level.quantity);
            if sum >= quantity && self_trade != SelfTrade::CancelResting {
                return None;
            }
        }
        if count < FILLS_PER_ORDER_MAX as u32 && seen < FILL_CAP_LEVELS {
            // Every level of the side was seen, all crossing, with too few orders.
            return None;
        }
        self.window.clear();
        self.books.resting(book, side.opposite(), &mut self.window);
        if self.window.len() < FILLS_PER_ORDER_MAX {
            return None;
        }
        let mut sum = 0u64;
        for maker in &self.window {
            if !crosses(maker.price) {
                return None;
            }
            if maker.base_account_id == owner {
                if self_trade == SelfTrade::CancelResting {
                    continue;
                }
                return None;
            }
            sum = sum.saturating_add(maker.remaining());
            if sum >= quantity {
                return None;
            }
        }
        Some(sum)
    }

    // -------------------------------------------------------------------------------------
    // place_orders

    /// Places one order whose timestamps are `block .. block + SLOTS_PER_ORDER_EVENT`.
    pub(crate) fn place(&mut self, ledger: &mut Ledger, block: u64, order: &Order) -> OrderResult {
        match self.place_inner(ledger, block, order) {
            Ok(result) => result,
            Err(status) => OrderResult {
                order_id: order.id,
                timestamp: block,
                status: status as u32,
                ..OrderResult::default()
            },
        }
    }

    fn place_inner(
        &mut self,
        ledger: &mut Ledger,
        block: u64,
        order: &Order,
    ) -> Result<OrderResult, OrderStatus> {
        if order.id == 0 {
            return Err(OrderStatus::OrderIdMustNotBeZero);
        }
        if order.id == u128::MAX {
            return Err(OrderStatus::OrderIdMustNotBeIntMax);
        }
        let Some(book_position) = self.market_position(order.market) else {
            return Err(OrderStatus::MarketNotFound);
        };
        let market = self.markets[book_position];
        if let Some(status) = crate::order::check_order(order, &market) {
            return Err(status);
        }
        let existing = match self.order_position(order.id) {
            Some(position) => Some(self.orders[position as usize]),
            None => self.dropped_order(history_reader(ledger), order.id),
        };
        if let Some(existing) = existing {
            let same = Order {
                filled_quantity: existing.filled_quantity,
                state: existing.state,
                timestamp: existing.timestamp,
                ..*order
            } == existing;
            return Err(if same {
                OrderStatus::Exists
            } else {
                OrderStatus::ExistsWithDifferentFields
            });
        }
        let account_ledger = |id: u128| {
            ledger
                .account_position(id)
                .map(|position| ledger.accounts[position as usize].ledger)
        };
        let base_ledger = account_ledger(order.base_account_id);
        let quote_ledger = account_ledger(order.quote_account_id);
        let Some(base_ledger) = base_ledger else {
            return Err(OrderStatus::BaseAccountNotFound);
        };
        let Some(quote_ledger) = quote_ledger else {
            return Err(OrderStatus::QuoteAccountNotFound);
        };
        if base_ledger != market.base_ledger {
            return Err(OrderStatus::BaseAccountLedgerMustMatchMarket);
        }
        if quote_ledger != market.quote_ledger {
            return Err(OrderStatus::QuoteAccountLedgerMustMatchMarket);
        }
        if let Some(status) = self.room_status(ledger) {
            return Err(status);
        }
        if self.orders.len() >= self.orders.capacity() {
            return Err(OrderStatus::OrdersCapacityExceeded);
        }
        let side = Side::from_u8(order.side).expect("checked");
        let time_in_force = TimeInForce::from_u8(order.time_in_force).expect("checked");
        let self_trade = SelfTrade::from_u8(order.self_trade).expect("checked");
        let limit = match (time_in_force == TimeInForce::Market, side) {
            (true, Side::Buy) => u64::MAX,
            (true, Side::Sell) => 0,
            (false, _) => order.price,
        };
        // Checks the book would make anyway, made first so that no hold is churned for them.
        let cap = if time_in_force == TimeInForce::PostOnly {
            if self.would_take(book_position, side, order.price) {
                return Err(OrderStatus::PostOnlyWouldTake);
            }
            None
        } else {
            let owner = order.base_account_id;
            self.fill_cap(
                book_position,
                side,
                owner,
                limit,
                order.quantity,
                self_trade,
            )
        };
        if cap == Some(0) || (cap.is_some() && time_in_force == TimeInForce::FillOrKill) {
            return Err(OrderStatus::FillsPerOrderExceeded);
        }

        // The hold: a reservation, which takes no timestamp.
        let stored = Order {
            filled_quantity: 0,
            state: OrderState::Resting as u8,
            timestamp: block,
            ..*order
        };
        let amount = Exchange::need(&market, &stored, order.quantity);
        let (accounts, on) = Exchange::hold_accounts(ledger, &market, &stored);
        if let Err(status) = ledger.hold(accounts, on, amount, 0) {
            return Err(Exchange::hold_status(status));
        }
        let position = self.orders.len() as u32;
        self.orders.push(stored);
        self.holds.push(Hold { amount, accounts });
        let mut cursor = block;

        let placed = Order {
            quantity: cap.unwrap_or(order.quantity),
            ..*order
        };
        let expires_at = if order.timeout != 0 && time_in_force.may_rest() {
            block + u64::from(order.timeout) * NS_PER_SECOND
        } else {
            0
        };
        self.events.clear();
        let execution =
            self.books
                .place(book_position as u32, &placed, expires_at, &mut self.events);
        if execution.status != OrderStatus::Ok {
            // Refused by the book (fill-or-kill, capacity): release the hold.
            self.release(ledger, &market, position);
            self.orders.pop();
            self.holds.pop();
            return Err(execution.status);
        }
        self.order_index.insert(order.id, position);
        let mut state = execution.state.expect("accepted");
        if cap.is_some() && state == OrderState::Filled {
            state = OrderState::Done;
        }
        self.orders[position as usize].filled_quantity = execution.filled_quantity;
        self.orders[position as usize].state = state as u8;
        let status = self.settle(ledger, book_position, position, &stored, &mut cursor, block);
        let order_after = self.orders[position as usize];
        Ok(if status == OrderStatus::Ok {
            OrderResult {
                order_id: order.id,
                timestamp: block,
                status: status as u32,
                state: order_after.state,
                filled_quantity: execution.filled_quantity,
                fill_count: execution.fill_count,
                quote_traded: execution.quote_traded,
                ..OrderResult::default()
            }
        } else {
            OrderResult {
                order_id: order.id,
                timestamp: block,
                status: status as u32,
                state: order_after.state,
                ..OrderResult::default()
            }
        })
    }

    /// Whether a resting order at `price` on `side` would take liquidity.
    fn would_take(&self, book_position: usize, side: Side, price: u64) -> bool {
        let book = book_position as u32;
        match side {
            Side::Buy => self.books.best_ask(book).is_some_and(|ask| ask <= price),
            Side::Sell => self.books.best_bid(book).is_some_and(|bid| bid >= price),
        }
    }

    /// Posts one leg of fill `sequence` (none for a zero amount) at `*cursor` inside the open
    /// settlement step, moving the cursor on when it is made.
    #[allow(clippy::too_many_arguments)]
    fn post_leg(
        &mut self,
        ledger: &mut Ledger,
        cursor: &mut u64,
        (kind, market): (Kind, &Market),
        (debit, credit): (u128, u128),
        amount: u128,
        on: u32,
        (taker_id, sequence): (u128, u64),
    ) -> Result<(), CreateTransferStatus> {
        if amount == 0 {
            return Ok(());
        }
        let transfer = Transfer {
            id: self.next_id(kind),
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            user_data_128: taker_id,
            user_data_64: sequence,
            user_data_32: market.id,
            ledger: on,
            code: market.code,
            flags: TransferFlags::SETTLEMENT,
            ..Transfer::default()
        };
        ledger.settlement_transfer(*cursor, &transfer)?;
        *cursor += 1;
        Ok(())
    }

    /// Settles the book events of one command in one settlement step whose legs start at
    /// `*cursor`: the taker (order `taker`, whose state and filled quantity are already
    /// updated; `taker_before` is its record before the command) and every maker touched.
    /// Returns `Ok` or `SettlementFailed` (see the module doc).
    fn settle(
        &mut self,
        ledger: &mut Ledger,
        book_position: usize,
        taker: u32,
        taker_before: &Order,
        cursor: &mut u64,
        fill_timestamp: u64,
    ) -> OrderStatus {
        // Most commands trade nothing and keep their hold: decide that before copying records.
        let desired = {
            let taker_order = &self.orders[taker as usize];
            if taker_order.state == OrderState::Resting as u8 {
                let remaining = taker_order.quantity - taker_order.filled_quantity;
                Exchange::need(&self.markets[book_position], taker_order, remaining)
            } else {
                0
            }
        };
        let taker_hold = self.holds[taker as usize];
        if self.events.is_empty() && desired == taker_hold.amount {
            return OrderStatus::Ok;
        }
        let market = self.markets[book_position];
        let taker_order = self.orders[taker as usize];
        self.touched.clear();
        let fills_before = self.fills.len();
        let first = *cursor;
        let (taker_accounts, taker_on) = self.order_hold_accounts(ledger, &market, taker);
        ledger.settlement_begin();
        // The taker's unused hold first, so the legs see the balances without it. A taker
        // never needs more than it held (it only lost lots), but that is checked, not assumed.
        if desired <= taker_hold.amount {
            ledger.release(taker_accounts, taker_hold.amount - desired);
        }
        let mut refused = None;
        for index in 0..self.events.len() {
            match self.events[index] {
                BookEvent::Fill(fill) => {
                    let maker = self
                        .order_position(fill.maker.id)
                        .expect("makers are stored");
                    let maker_hold = self.holds[maker as usize];
                    let maker_order = self.orders[maker as usize];
                    self.touched.push((maker, maker_hold, maker_order));
                    let sequence = self.fills.len() as u64 + 1;
                    assert!(self.fills.len() < self.fills.capacity());
                    self.fills
                        .push(fill.fill(market.id, sequence, fill_timestamp));
                    let remaining = fill.maker.remaining();
                    let record = &mut self.orders[maker as usize];
                    record.filled_quantity = fill.maker.filled_quantity;
                    record.state = if remaining == 0 {
                        OrderState::Filled as u8
                    } else {
                        OrderState::Resting as u8
                    };
                    let need = Exchange::need(&market, &maker_order, remaining);
                    self.holds[maker as usize].amount = need;
                    if refused.is_some() {
                        // The step is refused already: only the records are kept up to date
                        // (every maker touched is canceled below).
                        continue;
                    }
                    // Release the part of the maker's hold this fill consumes, then the legs.
                    let (accounts, on) = self.order_hold_accounts(ledger, &market, maker);
                    let outcome =
                        ledger
                            .hold(accounts, on, need, maker_hold.amount)
                            .and_then(|()| {
                                let taker = (&taker_order, sequence);
                                self.post_fill_legs(ledger, cursor, &market, &fill, taker)
                            });
                    refused = outcome.err();
                }
                BookEvent::SelfTradeCanceled(resting) => {
                    let maker = self.order_position(resting.id).expect("makers are stored");
                    let maker_hold = self.holds[maker as usize];
                    let maker_order = self.orders[maker as usize];
                    self.touched.push((maker, maker_hold, maker_order));
                    self.release(ledger, &market, maker);
                    self.orders[maker as usize].state = OrderState::Canceled as u8;
                }
            }
        }
        if refused.is_none() && desired > taker_hold.amount {
            refused = ledger
                .hold(taker_accounts, taker_on, desired, taker_hold.amount)
                .err();
        }
        self.holds[taker as usize].amount = desired;
        if refused.is_none() {
            ledger.settlement_commit();
            return OrderStatus::Ok;
        }
        // Undo this command's ledger changes and records, then cancel every order involved.
        ledger.settlement_rollback();
        *cursor = first;
        self.fills.truncate(fills_before);
        self.holds[taker as usize] = taker_hold;
        self.orders[taker as usize] = *taker_before;
        for index in 0..self.touched.len() {
            let (maker, hold, order) = self.touched[index];
            self.holds[maker as usize] = hold;
            self.orders[maker as usize] = order;
        }
        self.touched.push((taker, taker_hold, *taker_before));
        for index in 0..self.touched.len() {
            let (position, _, order) = self.touched[index];
            self.release(ledger, &market, position);
            self.orders[position as usize].state = OrderState::Canceled as u8;
            self.books.cancel(book_position as u32, order.id);
        }
        OrderStatus::SettlementFailed
    }

    /// Posts the legs of `fill` (see the module doc) inside the open settlement step.
    fn post_fill_legs(
        &mut self,
        ledger: &mut Ledger,
        cursor: &mut u64,
        market: &Market,
        fill: &BookFill,
        (taker_order, sequence): (&Order, u64),
    ) -> Result<(), CreateTransferStatus> {
        let maker_order = fill.maker;
        let (buyer_base, buyer_quote, seller_base, seller_quote) = match fill.taker_side {
            Side::Buy => (
                taker_order.base_account_id,
                taker_order.quote_account_id,
                maker_order.base_account_id,
                maker_order.quote_account_id,
            ),
            Side::Sell => (
                maker_order.base_account_id,
                maker_order.quote_account_id,
                taker_order.base_account_id,
                taker_order.quote_account_id,
            ),
        };
        let tag = (taker_order.id, sequence);
        let (base, quote) = (market.base_ledger, market.quote_ledger);
        let fee_account = market.fee_account_id;
        let quantity = u128::from(fill.quantity);
        let accounts = (seller_base, buyer_base);
        self.post_leg(
            ledger,
            cursor,
            (Kind::Base, market),
            accounts,
            quantity,
            base,
            tag,
        )?;
        let accounts = (buyer_quote, seller_quote);
        let amount = fill.quote_amount;
        self.post_leg(
            ledger,
            cursor,
            (Kind::Quote, market),
            accounts,
            amount,
            quote,
            tag,
        )?;
        let accounts = (taker_order.quote_account_id, fee_account);
        let fee = u128::from(fill.taker_fee);
        self.post_leg(
            ledger,
            cursor,
            (Kind::TakerFee, market),
            accounts,
            fee,
            quote,
            tag,
        )?;
        let accounts = (maker_order.quote_account_id, fee_account);
        let fee = u128::from(fill.maker_fee);
        self.post_leg(
            ledger,
            cursor,
            (Kind::MakerFee, market),
            accounts,
            fee,
            quote,
            tag,
        )
    }

    // -------------------------------------------------------------------------------------
    // cancel_orders, amend_orders, expiry

    /// Cancels one resting order, releasing its hold (no transfer: the command uses one
    /// timestamp, for its result).
    pub(crate) fn cancel(&mut self, ledger: &mut Ledger, id: u128) -> OrderStatus {
        if id == 0 {
            return OrderStatus::OrderIdMustNotBeZero;
        }
        if id == u128::MAX {
            return OrderStatus::OrderIdMustNotBeIntMax;
        }
        let Some(position) = self.order_position(id) else {
            return self.absent_status(ledger, id);
        };
        let order = self.orders[position as usize];
        if order.state != OrderState::Resting as u8 {
            return OrderStatus::OrderNotResting;
        }
        let Some(book_position) = self.market_position(order.market) else {
            return OrderStatus::OrderNotFound;
        };
        let market = self.markets[book_position];
        self.release(ledger, &market, position);
        self.books.cancel(book_position as u32, id);
        self.orders[position as usize].state = OrderState::Canceled as u8;
        OrderStatus::Ok
    }

    /// Amends one resting order at timestamp block `block`.
    pub(crate) fn amend(
        &mut self,
        ledger: &mut Ledger,
        block: u64,
        amend: &OrderAmend,
    ) -> OrderStatus {
        if let Some(status) = check_amend(amend) {
            return status;
        }
        let Some(position) = self.order_position(amend.order_id) else {
            return self.absent_status(ledger, amend.order_id);
        };
        let before = self.orders[position as usize];
        if before.state != OrderState::Resting as u8 {
            return OrderStatus::OrderNotResting;
        }
        let book_position = self.market_position(before.market).expect("stored market");
        let market = self.markets[book_position];
        let (price, quantity) = match amended_price_and_quantity(
            amend,
            &market,
            (before.price, before.quantity, before.filled_quantity),
        ) {
            Ok(amended) => amended,
            Err(status) => return status,
        };
        if let Some(status) = self.room_status(ledger) {
            return status;
        }
        let side = Side::from_u8(before.side).expect("stored");
        let remaining = quantity - before.filled_quantity;
        if price != before.price {
            if before.time_in_force == TimeInForce::PostOnly as u8
                && self.would_take(book_position, side, price)
            {
                return OrderStatus::PostOnlyWouldTake;
            }
            let self_trade = SelfTrade::from_u8(before.self_trade).expect("stored");
            let owner = before.base_account_id;
            let cap = self.fill_cap(book_position, side, owner, price, remaining, self_trade);
            if cap.is_some() {
                return OrderStatus::FillsPerOrderExceeded;
            }
        }
        // Swap the hold first: the hold for the new price and quantity replaces the old one,
        // checked as a new hold once the old one is released.
        let amended = Order {
            price,
            quantity,
            ..before
        };
        let (accounts, on) = self.order_hold_accounts(ledger, &market, position);
        let old_hold = self.holds[position as usize];
        let new_hold = Hold {
            amount: Exchange::need(&market, &amended, remaining),
            ..old_hold
        };
        if let Err(status) = ledger.hold(accounts, on, new_hold.amount, old_hold.amount) {
            return Exchange::hold_status(status);
        }
        self.orders[position as usize] = amended;
        self.holds[position as usize] = new_hold;
        let mut cursor = block;
        self.events.clear();
        let outcome = self
            .books
            .amend(book_position as u32, amend, &mut self.events);
        let execution = outcome.execution;
        if execution.status != OrderStatus::Ok {
            // Refused by the book (level capacity): hold the old amount again.
            assert!(self.events.is_empty());
            self.orders[position as usize] = before;
            if ledger
                .hold(accounts, on, old_hold.amount, new_hold.amount)
                .is_ok()
            {
                self.holds[position as usize] = old_hold;
            } else {
                // Cannot happen within one command (the same funds were held a moment ago),
                // but stay safe: release the new hold and cancel the order.
                self.release(ledger, &market, position);
                self.books.cancel(book_position as u32, before.id);
                self.orders[position as usize].state = OrderState::Canceled as u8;
            }
            return execution.status;
        }
        let record = &mut self.orders[position as usize];
        record.filled_quantity = before.filled_quantity + execution.filled_quantity;
        record.state = execution.state.expect("accepted") as u8;
        self.settle(
            ledger,
            book_position,
            position,
            &amended,
            &mut cursor,
            block,
        )
    }

    /// Expires good-till-time orders due at `timestamp`, at most as many as the pulse's
    /// block has left after the `used` expiries of the ledger, releasing their holds; returns
    /// how many orders expired.
    pub(crate) fn pulse(&mut self, ledger: &mut Ledger, timestamp: u64, used: u32) -> u32 {
        let limit = PULSE_EXPIRIES_MAX - used;
        let mut expired_total = 0;
        self.expired.clear();
        self.books.expire(timestamp, limit, &mut self.expired);
        for index in 0..self.expired.len() {
            let id = self.expired[index].id;
            let Some(position) = self.order_position(id) else {
                continue;
            };
            let Some(book_position) = self.market_position(self.orders[position as usize].market)
            else {
                continue;
            };
            let market = self.markets[book_position];
            self.release(ledger, &market, position);
            self.orders[position as usize].state = OrderState::Expired as u8;
            expired_total += 1;
        }
        expired_total
    }

    /// When the earliest resting good-till-time order of any book expires.
    pub(crate) fn expiry_next(&self) -> Option<u64> {
        self.books.expiry_next()
    }

    // -------------------------------------------------------------------------------------
    // Queries

    /// Clears `out` and pushes the orders found, in the order of `ids`: from memory, else (in
    /// history mode) from the store for orders that left memory.
    pub(crate) fn lookup_orders(&self, ledger: &Ledger, ids: &[u128], out: &mut Vec<Order>) {
        out.clear();
        let reader = history_reader(ledger);
        for id in ids {
            if out.len() == out.capacity() {
                return;
            }
            if let Some(position) = self.order_position(*id) {
                out.push(self.orders[position as usize]);
            } else if let Some(order) = self.dropped_order(reader, *id) {
                out.push(order);
            }
        }
    }

    /// Clears `out` and pushes the L2 book: bids best first, then asks best first.
    pub(crate) fn get_book(&self, filter: &BookFilter, out: &mut Vec<BookLevel>) {
        out.clear();
        if filter.depth == 0 || filter.depth > BookFilter::DEPTH_MAX || filter.reserved != [0; 56] {
            return;
        }
        if let Some(position) = self.market_position(filter.market) {
            self.books.depth(position as u32, filter.depth, out);
        }
    }

    /// Clears `out` and pushes the fills of a market (or of one order) in a time range, oldest
    /// first or newest first, at most `min(filter.limit, out.capacity())`. An order filter
    /// with market 0 matches any market; an invalid filter returns nothing. In history mode the
    /// fills that left memory (all at or below the eviction watermark, all older than those in
    /// memory) come from the store: first when oldest first, after memory's when newest first.
    pub(crate) fn get_fills(&self, ledger: &Ledger, filter: &FillFilter, out: &mut Vec<Fill>) {
        out.clear();
        if filter.flags & !FillFilter::REVERSED != 0
            || filter.reserved != [0; 20]
            || filter.limit == 0
            || (filter.market == 0 && filter.order_id == 0)
        {
            return;
        }
        let max = if filter.timestamp_max == 0 {
            u64::MAX
        } else {
            filter.timestamp_max
        };
        if filter.timestamp_min > max {
            return;
        }
        let limit = (filter.limit as usize).min(out.capacity());
        let reversed = filter.flags & FillFilter::REVERSED != 0;
        let reader = history_reader(ledger);
        if !reversed {
            self.dropped_fills(reader, filter, max, limit, out);
        }
        let held = self.fills.held();
        // Fills are stored in timestamp order: bound the range by binary search.
        let start = held.partition_point(|fill| fill.timestamp < filter.timestamp_min);
        let end = held.partition_point(|fill| fill.timestamp <= max);
        let selected = |fill: &&Fill| {
            (filter.market == 0 || fill.market == filter.market)
                && (filter.order_id == 0
                    || fill.taker_order_id == filter.order_id
                    || fill.maker_order_id == filter.order_id)
        };
        let range = &held[start..end.max(start)];
        let room = limit - out.len();
        if reversed {
            out.extend(range.iter().rev().filter(selected).take(room).copied());
            let room = limit - out.len();
            self.dropped_fills(reader, filter, max, room, out);
        } else {
            out.extend(range.iter().filter(selected).take(room).copied());
        }
    }

    // -------------------------------------------------------------------------------------
    // Digest and checks

    pub(crate) fn digest(&self, digest: &mut Digest) {
        digest.u64(self.markets.len() as u64);
        for market in &self.markets {
            digest.record(|bytes| market.encode(bytes));
        }
        if !self.history_digest(digest) {
            digest.u64(self.orders.len() as u64);
            for (order, hold) in self.orders.iter().zip(&self.holds) {
                digest.record(|bytes| order.encode(bytes));
                digest.u128(hold.amount);
            }
            digest.u64(self.fills.len() as u64);
            for fill in self.fills.held() {
                digest.record(|bytes| fill.encode(bytes));
            }
        }
        digest.u64(self.serial);
        for book in 0..self.markets.len() as u32 {
            digest.u64(u64::from(self.books.orders_count(book)));
            digest.u64(self.books.best_bid(book).unwrap_or(0));
            digest.u64(self.books.best_ask(book).unwrap_or(0));
        }
    }

    /// Checks the books, every order's hold against the ledger, and the fee accounts. Every
    /// account's pending balances are exactly its unresolved pending transfers plus the holds
    /// of the resting orders on it: what an escrow has pending from holds is the sum of the
    /// holds towards it, and a trader's `debits_pending` covers its orders' holds.
    pub(crate) fn verify(&self, ledger: &Ledger) {
        self.books.verify();
        assert_eq!(self.orders.len(), self.holds.len());
        assert_eq!(self.order_index.entries_count() as usize, self.orders.len());
        // Per account position: (debits pending, credits pending) expected.
        let mut pending = vec![(0u128, 0u128); ledger.accounts.len()];
        let mut resting = 0u32;
        for (position, (order, hold)) in self.orders.iter().zip(&self.holds).enumerate() {
            assert_eq!(self.order_position(order.id), Some(position as u32));
            assert!(order.filled_quantity <= order.quantity, "{order:?}");
            let book_position = self.market_position(order.market).expect("stored market");
            let market = &self.markets[book_position];
            let in_book = self.books.order(book_position as u32, order.id);
            if hold.accounts != Hold::NONE.accounts {
                let (accounts, _) = Exchange::hold_accounts(ledger, market, order);
                assert_eq!(hold.accounts, accounts, "{order:?}");
            }
            if order.state == OrderState::Resting as u8 {
                resting += 1;
                let entry = in_book.expect("resting orders are in their book");
                assert_eq!(entry.filled_quantity, order.filled_quantity, "{order:?}");
                assert_eq!(entry.quantity, order.quantity, "{order:?}");
                let need = Exchange::need(market, order, order.quantity - order.filled_quantity);
                assert_eq!(hold.amount, need, "{order:?}");
                if need > 0 {
                    let ((debit, credit), _) = Exchange::hold_accounts(ledger, market, order);
                    assert!(debit != NO_POSITION && credit != NO_POSITION, "{order:?}");
                    pending[debit as usize].0 += need;
                    pending[credit as usize].1 += need;
                }
            } else {
                assert!(in_book.is_none(), "{order:?}");
                assert_eq!(hold.amount, 0, "{order:?}");
            }
        }
        let in_books = self.books.orders_total();
        assert_eq!(resting, in_books);
        // Unresolved pending transfers stay in memory (in history mode too).
        for (transfer, meta) in ledger.transfers.iter().zip(&ledger.transfer_meta) {
            if meta.status == PendingStatus::Pending {
                let debit = ledger.account_position(transfer.debit_account_id);
                let credit = ledger.account_position(transfer.credit_account_id);
                let (Some(debit), Some(credit)) = (debit, credit) else {
                    panic!("a pending transfer's accounts exist: {transfer:?}");
                };
                pending[debit as usize].0 += transfer.amount;
                pending[credit as usize].1 += transfer.amount;
            }
        }
        for (account, (debits, credits)) in ledger.accounts.iter().zip(pending) {
            assert_eq!(account.debits_pending, debits, "account {}", account.id);
            assert_eq!(account.credits_pending, credits, "account {}", account.id);
        }
        let dropped = self.fills.len() - self.fills.held().len();
        for (index, fill) in self.fills.held().iter().enumerate() {
            assert_eq!(fill.sequence, (dropped + index) as u64 + 1);
        }
        self.history_verify();
        for market in &self.markets {
            let fees: u128 = self
                .fills
                .held()
                .iter()
                .filter(|fill| {
                    let of = self.market_position(fill.market).expect("stored market");
                    self.markets[of].fee_account_id == market.fee_account_id
                })
                .map(|fill| u128::from(fill.taker_fee) + u128::from(fill.maker_fee))
                .sum();
            let position = ledger
                .account_position(market.fee_account_id)
                .expect("fee account");
            let account: &Account = &ledger.accounts[position as usize];
            assert!(fees <= account.credits_posted, "fees of {}", market.id);
        }
    }

    /// Sum of the fees of every fill in memory of markets paying into `fee_account_id`.
    pub(crate) fn fees_to(&self, fee_account_id: u128) -> u128 {
        self.fills
            .held()
            .iter()
            .filter(|fill| {
                self.market_position(fill.market)
                    .is_some_and(|of| self.markets[of].fee_account_id == fee_account_id)
            })
            .map(|fill| u128::from(fill.taker_fee) + u128::from(fill.maker_fee))
            .sum()
    }
}

/// The checkpoint image of the matching side (see checkpoint.rs). The settlement buffers
/// (`events`, `levels`, `window`, `expired`, `touched`) carry nothing from one command to the
/// next and are not written, nor is the hold accounts cache. Each order's hold keeps the place
/// of the fields it had while holds were pending transfers (written as 0), so the layout is
/// unchanged; an image with a non-zero hold transfer is refused.
impl Exchange {
    pub(crate) fn checkpoint_write(&self, writer: &mut ImageWriter) -> std::io::Result<()> {
        let Exchange {
            markets,
            books,
            market_index,
            orders,
            holds,
            order_index,
            fills,
            serial,
            events: _,
            levels: _,
            window: _,
            expired: _,
            touched: _,
            history: _,
        } = self;
        let mut bytes = [0u8; 128];
        writer.count(markets.len())?;
        for market in markets {
            market.encode(&mut bytes);
            writer.bytes(&bytes)?;
        }
        writer.count(orders.len())?;
        assert_eq!(holds.len(), orders.len());
        for (order, hold) in orders.iter().zip(holds) {
            order.encode(&mut bytes);
            writer.bytes(&bytes)?;
            // The hold's former pending transfer id and void rows, always 0 (holds are
            // reservations), then its amount: the layout of images whose holds were transfers.
            let Hold {
                amount,
                accounts: _,
            } = hold;
            writer.u128(0)?;
            writer.u128(*amount)?;
            writer.u8(0)?;
        }
        writer.count(fills.held().len())?;
        for fill in fills.held() {
            fill.encode(&mut bytes);
            writer.bytes(&bytes)?;
        }
        market_index.checkpoint_write(writer)?;
        order_index.checkpoint_write(writer)?;
        writer.u64(*serial)?;
        // The former counts of open hold transfers and their void rows, always 0.
        writer.u32(0)?;
        writer.u32(0)?;
        books.checkpoint_write(writer)
    }

    /// Reads the image written by `checkpoint_write` into this empty exchange (in history
    /// mode, the fills dropped before it are read with the history section).
    pub(crate) fn checkpoint_read(
        &mut self,
        reader: &mut ImageReader,
    ) -> Result<(), CheckpointError> {
        assert!(self.markets.is_empty() && self.orders.is_empty());
        let mut bytes: [u8; 128];
        let count = reader.count("markets", self.markets.capacity(), "--markets-max")?;
        for _ in 0..count {
            bytes = reader.record()?;
            let market = Market::decode(&bytes);
            if market.lot_size == 0 || market.tick_size == 0 {
                return Err(reader.invalid("markets", "a market has no lot or tick size"));
            }
            self.markets.push(market);
        }
        let count = reader.count("orders", self.orders.capacity(), "--orders-max")?;
        for _ in 0..count {
            bytes = reader.record()?;
            self.orders.push(Order::decode(&bytes));
            let transfer = reader.u128()?;
            let amount = reader.u128()?;
            let _rows = reader.u8()?;
            if transfer != 0 {
                // Written by a build whose holds were pending transfers: its ledger part holds
                // them as transfers, which this build would never resolve.
                return Err(reader.invalid(
                    "orders",
                    "an order hold is a pending transfer: the image was written by a build \
                     whose holds were transfers, which this build does not load",
                ));
            }
            self.holds.push(Hold {
                amount,
                ..Hold::NONE
            });
        }
        let count = reader.count("fills", self.fills.memory_capacity(), "--fills-max")?;
        for _ in 0..count {
            bytes = reader.record()?;
            self.fills.push(Fill::decode(&bytes));
        }
        let markets = &self.markets;
        self.market_index
            .checkpoint_read(reader, "market index", |position| {
                markets
                    .get(position as usize)
                    .map(|market| u128::from(market.id))
            })?;
        let orders = &self.orders;
        self.order_index
            .checkpoint_read(reader, "order index", |position| {
                orders.get(position as usize).map(|order| order.id)
            })?;
        self.serial = reader.u64()?;
        reader.u32()?;
        reader.u32()?;
        self.books.checkpoint_read(reader, &self.markets)
    }
}
