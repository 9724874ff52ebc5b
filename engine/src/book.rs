//! The order books of every market: price levels on each side, each level a FIFO queue of
//! resting orders, matched with price-time priority.
//!
//! Invariants (checked by `Books::verify`):
//! - in every book the best bid is strictly below the best ask after every command;
//! - a level is active if and only if its queue is non-empty, and its quantity and order count
//!   equal the sums over its queue;
//! - every resting order is reachable from exactly one level of its book and from the id index,
//!   has an unfilled remainder, and no slot is both in use and on the free list;
//! - the expiry heap holds exactly the resting orders with an expiry, earliest at the root.
//!
//! Layout. Every book shares pools allocated in `Books::new` that never grow, so a market costs
//! a small `BookState` (its market record and the ends of its two ladders) until orders rest:
//! - orders live in one slab of `orders_max` slots addressed by `u32`; free slots form a list
//!   linked through `next`; a level's queue is a doubly linked list through `prev`/`next`;
//! - levels live in one slab shared by every book and both sides, with their own free list; a
//!   book holds at most `book_levels_max` of them;
//! - each side of a book is a doubly linked list of its active levels, best first, with both
//!   ends kept: the best bid and ask are O(1), a level at an existing price is found through a
//!   price index keyed by `(book, side, price)`, and a new level is linked in by walking from
//!   whichever end is nearer in price. Order flow concentrates near the top of the book
//!   (exchange-core's benchmark keeps ~750 levels with most activity at the best prices), so
//!   the walks are short, and a new best or worst price costs O(1); a tree over the prices
//!   would bound the far levels better but costs more per operation;
//! - the order-id index and the price index: open addressing with linear probing over a
//!   power-of-two table at most half full, with backward-shift deletion (no tombstones),
//!   hashed with a fixed mixer so iteration and behavior are deterministic (no `RandomState`);
//! - the expiry heap: a binary min-heap of the slots of good-till-time orders on
//!   `(expires_at, id)`, each slot knowing its heap position, so the next expiry is O(1) and
//!   adding, expiring or removing an order is O(log n).
//!
//! Capacity is checked before a book changes: an order that would rest needs a free order slot
//! and, at a new price, a free level slot *before* it matches (slots its own fills would free are
//! not counted), so a rejection never leaves a partial effect.
//!
//! Matching writes one `BookEvent` per maker touched (a fill or a self-trade cancel) into a
//! caller-provided buffer whose spare capacity must cover every order resting in the book; the
//! caller settles them through the ledger. The books know no accounts beyond their ids and hold
//! no funds. `Book` is the single-book view of the same code, with pools of its own.

use crate::checkpoint::{CheckpointError, ImageReader, ImageWriter};
use crate::market::Market;
use crate::order::{amended_price_and_quantity, check_amend, check_order};
use crate::order::{BookLevel, Fill, Order, OrderAmend};
use crate::order::{OrderState, OrderStatus, SelfTrade, Side, TimeInForce};
use crate::NO_POSITION;

/// A resting order as the book keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestingOrder {
    /// The client's order id.
    pub id: u128,
    /// The owner's base account; identifies the owner for self-trade prevention.
    pub base_account_id: u128,
    /// The owner's quote account.
    pub quote_account_id: u128,
    /// Quote units per lot.
    pub price: u64,
    /// Total base units, filled included.
    pub quantity: u64,
    /// Base units traded so far; always below `quantity` while resting.
    pub filled_quantity: u64,
    /// Engine timestamp at which a good-till-time order expires; 0 = never.
    pub expires_at: u64,
    /// Bid or ask.
    pub side: Side,
    /// `GoodTillCancel` or `PostOnly`.
    pub time_in_force: TimeInForce,
    /// Applied when the order takes liquidity again after an amend.
    pub self_trade: SelfTrade,
}

impl RestingOrder {
    /// Unfilled base units.
    pub fn remaining(&self) -> u64 {
        self.quantity - self.filled_quantity
    }
}

const ORDER_EMPTY: RestingOrder = RestingOrder {
    id: 0,
    base_account_id: 0,
    quote_account_id: 0,
    price: 0,
    quantity: 0,
    filled_quantity: 0,
    expires_at: 0,
    side: Side::Buy,
    time_in_force: TimeInForce::GoodTillCancel,
    self_trade: SelfTrade::CancelIncoming,
};

/// One trade produced by matching, with what settlement needs about the maker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BookFill {
    /// The incoming (or re-priced) order.
    pub taker_order_id: u128,
    /// The taker's side.
    pub taker_side: Side,
    /// The maker after this fill (`filled_quantity` includes it); it left the book when its
    /// `remaining()` is 0.
    pub maker: RestingOrder,
    /// The maker's price, quote units per lot.
    pub price: u64,
    /// Base units traded, a multiple of the lot.
    pub quantity: u64,
    /// `price x lots`.
    pub quote_amount: u128,
    /// `taker_fee x lots`.
    pub taker_fee: u64,
    /// `maker_fee x lots`.
    pub maker_fee: u64,
}

impl BookFill {
    /// The wire record of this fill, with the engine's sequence and timestamp.
    pub fn fill(&self, market: u32, sequence: u64, timestamp: u64) -> Fill {
        Fill {
            taker_order_id: self.taker_order_id,
            maker_order_id: self.maker.id,
            quote_amount: self.quote_amount,
            price: self.price,
            quantity: self.quantity,
            taker_fee: self.taker_fee,
            maker_fee: self.maker_fee,
            sequence,
            market,
            taker_side: self.taker_side as u8,
            reserved: [0; 27],
            timestamp,
        }
    }
}

/// What matching did to one resting order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookEvent {
    /// A trade against the maker.
    Fill(BookFill),
    /// Self-trade prevention removed this resting order; its `remaining()` is released.
    SelfTradeCanceled(RestingOrder),
}

/// The outcome of placing or amending one order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Execution {
    /// `Ok`, or the rejection (then nothing changed and every other field is zero or `None`).
    pub status: OrderStatus,
    /// The order's state after the command; `None` when rejected.
    pub state: Option<OrderState>,
    /// Base units traded by this command.
    pub filled_quantity: u64,
    /// Quote moved by this command's fills, fees excluded.
    pub quote_traded: u128,
    /// Taker fees of this command's fills.
    pub taker_fees: u128,
    /// Fills of this command.
    pub fill_count: u32,
    /// Resting orders canceled by self-trade prevention.
    pub self_trade_cancels: u32,
    /// Unfilled base units: resting when `state` is `Resting`, otherwise released.
    pub remaining: u64,
}

impl Execution {
    /// A rejection with `status`: nothing changed.
    ///
    /// # Panics
    ///
    /// If `status` is `Ok`.
    pub fn rejected(status: OrderStatus) -> Execution {
        assert_ne!(status, OrderStatus::Ok);
        Execution {
            status,
            state: None,
            filled_quantity: 0,
            quote_traded: 0,
            taker_fees: 0,
            fill_count: 0,
            self_trade_cancels: 0,
            remaining: 0,
        }
    }

    /// An accepted command that has not traded, rested or released anything yet.
    pub fn accepted() -> Execution {
        Execution {
            status: OrderStatus::Ok,
            ..Execution::rejected(OrderStatus::OrderNotFound)
        }
    }
}

/// The outcome of an amend: the order before it, and what the amend did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmendOutcome {
    /// The resting order before the amend; `None` when it was not found.
    pub before: Option<RestingOrder>,
    /// Status, resulting state, and the fills of a re-priced order that crossed.
    pub execution: Execution,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    order: RestingOrder,
    /// The level slot holding this order; `NO_POSITION` while the slot is free.
    level: u32,
    prev: u32,
    /// The next order of the level, or the next free slot.
    next: u32,
    /// The book the order rests in.
    book: u32,
    /// The order's position in the expiry heap; `NO_POSITION` when it has no expiry or the
    /// slot is free.
    heap: u32,
}

const SLOT_EMPTY: Slot = Slot {
    order: ORDER_EMPTY,
    level: NO_POSITION,
    prev: NO_POSITION,
    next: NO_POSITION,
    book: NO_POSITION,
    heap: NO_POSITION,
};

#[derive(Clone, Copy, Debug)]
struct Level {
    price: u64,
    /// Sum of the queue's remainders (u128: many u64 orders may rest at one price).
    quantity: u128,
    count: u32,
    /// First order of the queue, or the next free level while inactive.
    head: u32,
    tail: u32,
    /// The next better and the next worse active level of the same side of the same book.
    better: u32,
    worse: u32,
    side: Side,
    active: bool,
}

const LEVEL_EMPTY: Level = Level {
    price: 0,
    quantity: 0,
    count: 0,
    head: NO_POSITION,
    tail: NO_POSITION,
    better: NO_POSITION,
    worse: NO_POSITION,
    side: Side::Buy,
    active: false,
};

/// One side of one book: the ends of its list of active levels, best first.
#[derive(Clone, Copy, Debug)]
struct Ladder {
    best: u32,
    worst: u32,
    count: u32,
}

const LADDER_EMPTY: Ladder = Ladder {
    best: NO_POSITION,
    worst: NO_POSITION,
    count: 0,
};

/// What one market costs while it holds no orders: its market record, the ends of its two
/// ladders and its order count.
struct BookState {
    market: Market,
    ladders: [Ladder; 2],
    orders_count: u32,
}

impl BookState {
    fn levels_count(&self) -> u32 {
        self.ladders[0].count + self.ladders[1].count
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

/// Whether price `a` is better than price `b` for a resting order on `side`.
fn better(side: Side, a: u64, b: u64) -> bool {
    match side {
        Side::Buy => a > b,
        Side::Sell => a < b,
    }
}

/// The price index key of a level: never 0 (bit 127 is set).
fn price_key(book: u32, side: Side, price: u64) -> u128 {
    (1 << 127) | (u128::from(book) << 65) | ((side_index(side) as u128) << 64) | u128::from(price)
}

/// The books of every market over shared pools: one slab of resting orders, one of price
/// levels, one order-id index, one price index and one expiry heap, all sized at creation. A
/// book itself is a `BookState` of a few dozen bytes besides its market record, so a market
/// costs little until orders rest in it. Books are addressed by a `u32` handle, the order of
/// `add`.
pub struct Books {
    books: Vec<BookState>,
    slots: Vec<Slot>,
    orders_free: u32,
    orders_count: u32,
    levels: Vec<Level>,
    levels_free: u32,
    levels_count: u32,
    /// The most active levels one book may hold.
    book_levels_max: u32,
    index: OrderIndex,
    prices: OrderIndex,
    /// Slots of resting orders with an expiry, a binary min-heap on `(expires_at, id)`.
    heap: Vec<u32>,
}

impl Books {
    /// Creates empty pools for up to `books_max` books, `orders_max` resting orders and
    /// `levels_max` price levels in all, at most `book_levels_max` levels per book. Allocates
    /// everything it will use.
    ///
    /// # Panics
    ///
    /// If `orders_max`, `levels_max` or `book_levels_max` is 0 or does not fit the `u32` links.
    pub fn new(books_max: u32, orders_max: u32, levels_max: u32, book_levels_max: u32) -> Books {
        assert!(orders_max > 0 && orders_max < NO_POSITION);
        assert!(levels_max > 0 && levels_max < NO_POSITION);
        assert!(book_levels_max > 0);
        assert!(books_max < NO_POSITION);
        let mut slots = vec![SLOT_EMPTY; orders_max as usize];
        for (index, slot) in slots.iter_mut().enumerate() {
            slot.next = if index + 1 < orders_max as usize {
                index as u32 + 1
            } else {
                NO_POSITION
            };
        }
        let mut levels = vec![LEVEL_EMPTY; levels_max as usize];
        for (index, level) in levels.iter_mut().enumerate() {
            level.head = if index + 1 < levels_max as usize {
                index as u32 + 1
            } else {
                NO_POSITION
            };
        }
        Books {
            books: Vec::with_capacity(books_max as usize),
            slots,
            orders_free: 0,
            orders_count: 0,
            levels,
            levels_free: 0,
            levels_count: 0,
            book_levels_max,
            index: OrderIndex::new(orders_max),
            prices: OrderIndex::new(levels_max),
            heap: Vec::with_capacity(orders_max as usize),
        }
    }

    /// Adds an empty book for `market`; returns its handle, or `None` when `books_max` books
    /// exist. Allocates nothing.
    ///
    /// # Panics
    ///
    /// If the market has no lot or tick (markets are checked before they are added).
    pub fn add(&mut self, market: &Market) -> Option<u32> {
        assert!(market.lot_size > 0);
        assert!(market.tick_size > 0);
        if self.books.len() == self.books.capacity() {
            return None;
        }
        self.books.push(BookState {
            market: *market,
            ladders: [LADDER_EMPTY; 2],
            orders_count: 0,
        });
        Some(self.books.len() as u32 - 1)
    }

    /// Forgets every book and order, keeping the allocations.
    pub fn clear(&mut self) {
        self.books.clear();
        let orders = self.slots.len();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            *slot = Slot {
                next: if index + 1 < orders {
                    index as u32 + 1
                } else {
                    NO_POSITION
                },
                ..SLOT_EMPTY
            };
        }
        let levels = self.levels.len();
        for (index, level) in self.levels.iter_mut().enumerate() {
            *level = Level {
                head: if index + 1 < levels {
                    index as u32 + 1
                } else {
                    NO_POSITION
                },
                ..LEVEL_EMPTY
            };
        }
        self.orders_free = 0;
        self.orders_count = 0;
        self.levels_free = 0;
        self.levels_count = 0;
        self.index.clear();
        self.prices.clear();
        self.heap.clear();
    }

    /// Bytes one more (empty) book costs: its state in the books table.
    pub fn bytes_per_book() -> usize {
        std::mem::size_of::<BookState>()
    }

    /// Bytes `Books::new(books_max, orders_max, levels_max, _)` allocates: the order and level
    /// slabs, their indexes, the expiry heap and the books table.
    pub fn bytes(books_max: u32, orders_max: u32, levels_max: u32) -> u64 {
        let index = |entries: u32| -> u64 {
            let cells = (entries as usize * 2).next_power_of_two().max(2) as u64;
            cells * (std::mem::size_of::<u128>() + std::mem::size_of::<u32>()) as u64
        };
        u64::from(orders_max) * (std::mem::size_of::<Slot>() + std::mem::size_of::<u32>()) as u64
            + u64::from(levels_max) * std::mem::size_of::<Level>() as u64
            + index(orders_max)
            + index(levels_max)
            + u64::from(books_max) * Books::bytes_per_book() as u64
    }

    /// The market of book `book`.
    pub fn market(&self, book: u32) -> &Market {
        &self.books[book as usize].market
    }

    /// Capacity for resting orders, all books together.
    pub fn orders_max(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Capacity for price levels, all books together.
    pub fn levels_max(&self) -> u32 {
        self.levels.len() as u32
    }

    /// Resting orders of all books.
    pub fn orders_total(&self) -> u32 {
        self.orders_count
    }

    /// Resting orders of one book.
    pub fn orders_count(&self, book: u32) -> u32 {
        self.books[book as usize].orders_count
    }

    /// Active price levels of one book, both sides together.
    pub fn levels_count(&self, book: u32) -> u32 {
        self.books[book as usize].levels_count()
    }

    fn best(&self, book: u32, side: Side) -> Option<u64> {
        let level = self.books[book as usize].ladders[side_index(side)].best;
        (level != NO_POSITION).then(|| self.levels[level as usize].price)
    }

    /// The highest bid price of a book, O(1).
    pub fn best_bid(&self, book: u32) -> Option<u64> {
        self.best(book, Side::Buy)
    }

    /// The lowest ask price of a book, O(1).
    pub fn best_ask(&self, book: u32) -> Option<u64> {
        self.best(book, Side::Sell)
    }

    /// The order with this id resting in book `book`.
    pub fn order(&self, book: u32, order_id: u128) -> Option<RestingOrder> {
        let slot = self.slot_of(book, order_id)?;
        Some(self.slots[slot as usize].order)
    }

    fn slot_of(&self, book: u32, order_id: u128) -> Option<u32> {
        if order_id == 0 {
            return None;
        }
        let slot = self.index.get(order_id)?;
        (self.slots[slot as usize].book == book).then_some(slot)
    }

    /// When the earliest resting good-till-time order of any book expires, O(1).
    pub fn expiry_next(&self) -> Option<u64> {
        self.heap
            .first()
            .map(|slot| self.slots[*slot as usize].order.expires_at)
    }

    /// Places an order in book `book` (limit GTC or good-till-time, IOC, FOK, post-only or
    /// market): matches what crosses, then rests or releases the remainder. `expires_at` is the
    /// engine timestamp at which a resting order expires (0 = never; ignored for orders that
    /// cannot rest).
    ///
    /// Rejections (`Execution::status`), each leaving the book unchanged: the field checks of
    /// `check_order`, `exists` (the id rests in some book), `post_only_would_take`,
    /// `fill_or_kill_not_filled`, `orders_capacity_exceeded`, `book_levels_capacity_exceeded`.
    ///
    /// # Panics
    ///
    /// If `order.market` is not this book's market, or `events` has less spare capacity than
    /// the number of orders resting in the book (one event per maker touched at most).
    pub fn place(
        &mut self,
        book: u32,
        order: &Order,
        expires_at: u64,
        events: &mut Vec<BookEvent>,
    ) -> Execution {
        let state = &self.books[book as usize];
        let market = state.market;
        assert_eq!(
            order.market, market.id,
            "orders are routed to their market's book"
        );
        assert!(events.capacity() - events.len() >= state.orders_count as usize);
        if let Some(status) = check_order(order, &market) {
            return Execution::rejected(status);
        }
        if order.id == 0 || self.index.get(order.id).is_some() {
            return Execution::rejected(OrderStatus::Exists);
        }
        let side = Side::from_u8(order.side).expect("checked");
        let time_in_force = TimeInForce::from_u8(order.time_in_force).expect("checked");
        let self_trade = SelfTrade::from_u8(order.self_trade).expect("checked");
        let market_order = time_in_force == TimeInForce::Market;
        let taker = Taker {
            id: order.id,
            owner: order.base_account_id,
            side,
            limit: match (market_order, side) {
                (true, Side::Buy) => u64::MAX,
                (true, Side::Sell) => 0,
                (false, _) => order.price,
            },
            remaining: order.quantity,
            budget: if market_order && side == Side::Buy {
                u128::from(order.quote_budget)
            } else {
                u128::MAX
            },
            self_trade,
        };
        match time_in_force {
            TimeInForce::PostOnly if self.would_take(book, &taker) => {
                return Execution::rejected(OrderStatus::PostOnlyWouldTake);
            }
            TimeInForce::FillOrKill => {
                let (fillable, _) = self.fillable(book, &taker);
                if fillable < order.quantity {
                    return Execution::rejected(OrderStatus::FillOrKillNotFilled);
                }
            }
            _ => {}
        }
        if time_in_force.may_rest() {
            let slot_short = self.orders_count == self.orders_max();
            let level_short = self.level_short(book, side, order.price);
            if slot_short || level_short {
                let (fillable, stopped) = self.fillable(book, &taker);
                if fillable < order.quantity && !stopped {
                    return Execution::rejected(if slot_short {
                        OrderStatus::OrdersCapacityExceeded
                    } else {
                        OrderStatus::BookLevelsCapacityExceeded
                    });
                }
            }
        }

        let mut taker = taker;
        let mut execution = Execution::accepted();
        let stopped = self.take(book, &mut taker, &mut execution, events);
        execution.remaining = taker.remaining;
        execution.state = Some(if stopped {
            OrderState::Canceled
        } else if taker.remaining == 0 {
            OrderState::Filled
        } else if time_in_force.may_rest() {
            let resting = RestingOrder {
                id: order.id,
                base_account_id: order.base_account_id,
                quote_account_id: order.quote_account_id,
                price: order.price,
                quantity: order.quantity,
                filled_quantity: execution.filled_quantity,
                expires_at,
                side,
                time_in_force,
                self_trade,
            };
            self.insert(book, resting);
            OrderState::Resting
        } else {
            OrderState::Done
        });
        self.verify_in_tests();
        execution
    }

    /// Whether an order resting at `price` would need a level the pools or the book's cap
    /// cannot give.
    fn level_short(&self, book: u32, side: Side, price: u64) -> bool {
        let full = self.levels_count == self.levels_max()
            || self.books[book as usize].levels_count() >= self.book_levels_max;
        full && self.prices.get(price_key(book, side, price)).is_none()
    }

    /// Cancels an order resting in book `book` and returns it (its `remaining()` is to be
    /// released); `None` when no order with this id rests there.
    pub fn cancel(&mut self, book: u32, order_id: u128) -> Option<RestingOrder> {
        let slot = self.slot_of(book, order_id)?;
        let order = self.slots[slot as usize].order;
        self.remove(slot);
        self.verify_in_tests();
        Some(order)
    }

    /// Amends an order resting in book `book`: a new price (0 = unchanged) and/or a new total
    /// quantity (0 = unchanged). Reducing the quantity at the same price keeps time priority; a
    /// price change or a larger quantity moves the order to the back of its (new) level, and a
    /// new price that crosses matches first like an incoming order of the same kind.
    ///
    /// Rejections, each leaving the book unchanged, in this order: `order_id_must_not_be_zero`,
    /// `order_id_must_not_be_int_max`, `reserved_field`, `order_not_found`,
    /// `amend_price_not_multiple_of_tick`, `amend_quantity_not_multiple_of_lot`,
    /// `amend_quantity_below_filled`, `post_only_would_take`, `book_levels_capacity_exceeded`.
    ///
    /// # Panics
    ///
    /// If `events` has less spare capacity than the number of orders resting in the book.
    pub fn amend(
        &mut self,
        book: u32,
        amend: &OrderAmend,
        events: &mut Vec<BookEvent>,
    ) -> AmendOutcome {
        let market = self.books[book as usize].market;
        assert!(events.capacity() - events.len() >= self.orders_count(book) as usize);
        let rejected = |before, status| AmendOutcome {
            before,
            execution: Execution::rejected(status),
        };
        if let Some(status) = check_amend(amend) {
            return rejected(None, status);
        }
        let Some(slot) = self.slot_of(book, amend.order_id) else {
            return rejected(None, OrderStatus::OrderNotFound);
        };
        let before = self.slots[slot as usize].order;
        let (price, quantity) = match amended_price_and_quantity(
            amend,
            &market,
            (before.price, before.quantity, before.filled_quantity),
        ) {
            Ok(amended) => amended,
            Err(status) => return rejected(Some(before), status),
        };
        let mut execution = Execution::accepted();
        execution.state = Some(OrderState::Resting);
        execution.remaining = quantity - before.filled_quantity;

        if price == before.price {
            // No match is possible at a price that already rested without crossing.
            let level = self.slots[slot as usize].level;
            let level_ref = &mut self.levels[level as usize];
            // The remainder changes by the quantity's change; add first so it never dips below 0.
            level_ref.quantity += u128::from(quantity);
            level_ref.quantity -= u128::from(before.quantity);
            self.slots[slot as usize].order.quantity = quantity;
            if quantity > before.quantity {
                self.unlink(slot);
                self.link(slot);
            }
            self.verify_in_tests();
            return AmendOutcome {
                before: Some(before),
                execution,
            };
        }

        let taker = Taker {
            id: before.id,
            owner: before.base_account_id,
            side: before.side,
            limit: price,
            remaining: quantity - before.filled_quantity,
            budget: u128::MAX,
            self_trade: before.self_trade,
        };
        if before.time_in_force == TimeInForce::PostOnly && self.would_take(book, &taker) {
            return rejected(Some(before), OrderStatus::PostOnlyWouldTake);
        }
        let old_level = self.slots[slot as usize].level;
        let level_short =
            self.levels[old_level as usize].count > 1 && self.level_short(book, before.side, price);
        if level_short {
            let (fillable, stopped) = self.fillable(book, &taker);
            if fillable < taker.remaining && !stopped {
                return rejected(Some(before), OrderStatus::BookLevelsCapacityExceeded);
            }
        }

        self.unlink(slot);
        let mut taker = taker;
        let stopped = self.take(book, &mut taker, &mut execution, events);
        let order = &mut self.slots[slot as usize].order;
        order.price = price;
        order.quantity = quantity;
        order.filled_quantity += execution.filled_quantity;
        execution.remaining = taker.remaining;
        if stopped || taker.remaining == 0 {
            self.release_slot(slot);
            execution.state = Some(if stopped {
                OrderState::Canceled
            } else {
                OrderState::Filled
            });
        } else {
            self.link(slot);
        }
        self.verify_in_tests();
        AmendOutcome {
            before: Some(before),
            execution,
        }
    }

    /// Removes good-till-time orders with `expires_at <= now` from every book, earliest
    /// `(expires_at, id)` first, at most `limit` of them, appending each to `expired` (their
    /// `remaining()` is to be released). Returns how many expired; when it returns `limit`,
    /// more may be due. O(log n) per expiry.
    ///
    /// # Panics
    ///
    /// If `expired` has less spare capacity than `limit`.
    pub fn expire(&mut self, now: u64, limit: u32, expired: &mut Vec<RestingOrder>) -> u32 {
        assert!(expired.capacity() - expired.len() >= limit as usize);
        let mut count = 0;
        while count < limit {
            let Some(&slot) = self.heap.first() else {
                break;
            };
            let order = self.slots[slot as usize].order;
            if order.expires_at > now {
                break;
            }
            expired.push(order);
            self.remove(slot);
            count += 1;
        }
        self.verify_in_tests();
        count
    }

    /// Appends the L2 book: up to `depth` bid levels best first, then up to `depth` ask levels
    /// best first, never growing `out` beyond its capacity. Level quantities above `u64::MAX`
    /// saturate.
    pub fn depth(&self, book: u32, depth: u32, out: &mut Vec<BookLevel>) {
        for ladder in &self.books[book as usize].ladders {
            let mut level = ladder.best;
            let mut taken = 0;
            while level != NO_POSITION && taken < depth {
                if out.len() == out.capacity() {
                    return;
                }
                let entry = &self.levels[level as usize];
                out.push(BookLevel {
                    price: entry.price,
                    quantity: u64::try_from(entry.quantity).unwrap_or(u64::MAX),
                    order_count: entry.count,
                    side: entry.side as u8,
                    reserved: [0; 11],
                });
                taken += 1;
                level = entry.worse;
            }
        }
    }

    /// Appends the resting orders of one side of a book in priority order (best price first,
    /// then time), never growing `out` beyond its capacity.
    pub fn resting(&self, book: u32, side: Side, out: &mut Vec<RestingOrder>) {
        let mut level = self.books[book as usize].ladders[side_index(side)].best;
        while level != NO_POSITION {
            let mut slot = self.levels[level as usize].head;
            while slot != NO_POSITION {
                if out.len() == out.capacity() {
                    return;
                }
                out.push(self.slots[slot as usize].order);
                slot = self.slots[slot as usize].next;
            }
            level = self.levels[level as usize].worse;
        }
    }

    /// Checks every invariant of the module doc over all books in O(orders_max + levels_max +
    /// books); allocates a visit map, so call it from tests and simulation only.
    ///
    /// # Panics
    ///
    /// On any broken invariant.
    pub fn verify(&self) {
        let mut visited = vec![false; self.slots.len()];
        let mut reachable = 0u32;
        let mut levels_active = 0u32;
        let mut expiring = 0usize;
        for (book, state) in self.books.iter().enumerate() {
            let book = book as u32;
            let mut book_orders = 0u32;
            for (side, ladder) in [Side::Buy, Side::Sell].into_iter().zip(&state.ladders) {
                let mut count = 0u32;
                let mut previous = NO_POSITION;
                let mut level_index = ladder.best;
                while level_index != NO_POSITION {
                    let level = &self.levels[level_index as usize];
                    assert!(level.active);
                    assert_eq!(level.side, side);
                    assert_eq!(level.better, previous);
                    if previous != NO_POSITION {
                        let better_price = self.levels[previous as usize].price;
                        assert!(better(side, better_price, level.price), "ladder order");
                    }
                    assert_eq!(
                        self.prices.get(price_key(book, side, level.price)),
                        Some(level_index)
                    );
                    assert!(level.count > 0);
                    count += 1;
                    let mut orders = 0u32;
                    let mut quantity = 0u128;
                    let mut prev = NO_POSITION;
                    let mut slot = level.head;
                    while slot != NO_POSITION {
                        assert!(!visited[slot as usize], "order slot {slot} reachable twice");
                        visited[slot as usize] = true;
                        let entry = &self.slots[slot as usize];
                        assert_eq!(entry.level, level_index);
                        assert_eq!(entry.book, book);
                        assert_eq!(entry.prev, prev);
                        assert_eq!(entry.order.side, side);
                        assert_eq!(entry.order.price, level.price);
                        assert!(entry.order.filled_quantity < entry.order.quantity);
                        assert!(entry.order.time_in_force.may_rest());
                        assert_eq!(self.index.get(entry.order.id), Some(slot));
                        if entry.order.expires_at != 0 {
                            expiring += 1;
                            assert_eq!(self.heap[entry.heap as usize], slot);
                        } else {
                            assert_eq!(entry.heap, NO_POSITION);
                        }
                        orders += 1;
                        quantity += u128::from(entry.order.remaining());
                        prev = slot;
                        slot = entry.next;
                    }
                    assert_eq!(level.tail, prev);
                    assert_eq!(level.count, orders);
                    assert_eq!(level.quantity, quantity);
                    book_orders += orders;
                    previous = level_index;
                    level_index = level.worse;
                }
                assert_eq!(ladder.worst, previous);
                assert_eq!(ladder.count, count);
                levels_active += count;
            }
            assert!(state.levels_count() <= self.book_levels_max);
            assert_eq!(book_orders, state.orders_count);
            reachable += book_orders;
            if let (Some(bid), Some(ask)) = (self.best_bid(book), self.best_ask(book)) {
                assert!(bid < ask, "crossed book {book}: bid {bid} >= ask {ask}");
            }
        }
        assert_eq!(reachable, self.orders_count);
        assert_eq!(self.index.count, self.orders_count);
        assert_eq!(levels_active, self.levels_count);
        assert_eq!(self.prices.count, self.levels_count);
        assert_eq!(self.heap.len(), expiring);
        for (position, &slot) in self.heap.iter().enumerate() {
            if position > 0 {
                let parent = self.heap[(position - 1) / 2];
                assert!(!self.heap_less(slot, parent), "heap order");
            }
        }
        let mut free = 0u32;
        let mut slot = self.orders_free;
        while slot != NO_POSITION {
            assert!(!visited[slot as usize], "free order slot {slot} in use");
            visited[slot as usize] = true;
            assert_eq!(self.slots[slot as usize].level, NO_POSITION);
            assert_eq!(self.slots[slot as usize].heap, NO_POSITION);
            free += 1;
            slot = self.slots[slot as usize].next;
        }
        assert_eq!(free, self.orders_max() - self.orders_count);
        let mut free = 0u32;
        let mut level = self.levels_free;
        while level != NO_POSITION {
            assert!(!self.levels[level as usize].active);
            free += 1;
            assert!(free <= self.levels_max());
            level = self.levels[level as usize].head;
        }
        assert_eq!(free, self.levels_max() - self.levels_count);
    }

    #[inline]
    fn verify_in_tests(&self) {
        #[cfg(any(test, feature = "verify"))]
        self.verify();
    }

    /// Whether the best opposite price crosses the taker's limit.
    fn would_take(&self, book: u32, taker: &Taker) -> bool {
        self.best(book, taker.side.opposite())
            .is_some_and(|price| taker.crosses(price))
    }

    /// A dry run of `take`: how much would fill, and whether self-trade prevention would stop
    /// the taker. Changes nothing.
    fn fillable(&self, book: u32, taker: &Taker) -> (u64, bool) {
        let market = &self.books[book as usize].market;
        let lot_size = market.lot_size;
        let mut remaining = taker.remaining;
        let mut budget = taker.budget;
        let opposite = side_index(taker.side.opposite());
        let mut level_index = self.books[book as usize].ladders[opposite].best;
        while level_index != NO_POSITION {
            let level = &self.levels[level_index as usize];
            if !taker.crosses(level.price) {
                break;
            }
            let mut slot = level.head;
            while slot != NO_POSITION {
                let entry = &self.slots[slot as usize];
                slot = entry.next;
                if entry.order.base_account_id == taker.owner {
                    if taker.self_trade == SelfTrade::CancelResting {
                        continue;
                    }
                    return (taker.remaining - remaining, true);
                }
                let mut quantity = remaining.min(entry.order.remaining());
                if budget != u128::MAX {
                    quantity = quantity.min(affordable(budget, level.price, market));
                    if quantity == 0 {
                        return (taker.remaining - remaining, false);
                    }
                    budget -= lot_cost(level.price, market) * u128::from(quantity / lot_size);
                }
                remaining -= quantity;
                if remaining == 0 || quantity < entry.order.remaining() {
                    return (taker.remaining - remaining, false);
                }
            }
            level_index = level.worse;
        }
        (taker.remaining - remaining, false)
    }

    /// Matches the taker against the opposite side of a book in price-time priority. Returns
    /// whether self-trade prevention stopped the taker.
    fn take(
        &mut self,
        book: u32,
        taker: &mut Taker,
        execution: &mut Execution,
        events: &mut Vec<BookEvent>,
    ) -> bool {
        let market = self.books[book as usize].market;
        let lot_size = market.lot_size;
        let opposite = side_index(taker.side.opposite());
        loop {
            if taker.remaining == 0 {
                return false;
            }
            let level_index = self.books[book as usize].ladders[opposite].best;
            if level_index == NO_POSITION {
                return false;
            }
            let price = self.levels[level_index as usize].price;
            if !taker.crosses(price) {
                return false;
            }
            // Walk the level's queue; removing its last order frees the level, and the outer
            // loop then moves to the next best price.
            let mut slot = self.levels[level_index as usize].head;
            while slot != NO_POSITION && taker.remaining > 0 {
                let maker = self.slots[slot as usize].order;
                let next = self.slots[slot as usize].next;
                if maker.base_account_id == taker.owner {
                    if taker.self_trade == SelfTrade::CancelIncoming {
                        return true;
                    }
                    self.remove(slot);
                    events.push(BookEvent::SelfTradeCanceled(maker));
                    execution.self_trade_cancels += 1;
                    if taker.self_trade == SelfTrade::CancelBoth {
                        return true;
                    }
                    slot = next;
                    continue;
                }
                let mut quantity = taker.remaining.min(maker.remaining());
                if taker.budget != u128::MAX {
                    quantity = quantity.min(affordable(taker.budget, price, &market));
                    if quantity == 0 {
                        return false;
                    }
                }
                let lots = quantity / lot_size;
                if taker.budget != u128::MAX {
                    taker.budget -= lot_cost(price, &market) * u128::from(lots);
                }
                let quote_amount = u128::from(price) * u128::from(lots);
                // `check_order` and the amend checks bound both fees for the taker's whole
                // quantity, so the products fit; saturating keeps this total regardless.
                let taker_fee = market.taker_fee.saturating_mul(lots);
                let maker_fee = market.maker_fee.saturating_mul(lots);
                taker.remaining -= quantity;
                self.levels[level_index as usize].quantity -= u128::from(quantity);
                let entry = &mut self.slots[slot as usize].order;
                entry.filled_quantity += quantity;
                let maker_after = *entry;
                execution.filled_quantity += quantity;
                execution.quote_traded += quote_amount;
                execution.taker_fees += u128::from(taker_fee);
                execution.fill_count += 1;
                events.push(BookEvent::Fill(BookFill {
                    taker_order_id: taker.id,
                    taker_side: taker.side,
                    maker: maker_after,
                    price,
                    quantity,
                    quote_amount,
                    taker_fee,
                    maker_fee,
                }));
                if maker_after.remaining() > 0 {
                    // The maker outlasted the taker's quantity or budget (deeper prices cost
                    // more), so the taker is done.
                    return false;
                }
                self.remove(slot);
                slot = next;
            }
        }
    }

    /// Puts a new resting order at the back of its level in book `book`.
    fn insert(&mut self, book: u32, order: RestingOrder) {
        let slot = self.orders_free;
        assert_ne!(slot, NO_POSITION, "capacity is checked before matching");
        self.orders_free = self.slots[slot as usize].next;
        self.orders_count += 1;
        self.books[book as usize].orders_count += 1;
        let entry = &mut self.slots[slot as usize];
        entry.order = order;
        entry.book = book;
        self.index.insert(order.id, slot);
        if order.expires_at != 0 {
            self.heap_push(slot);
        }
        self.link(slot);
    }

    /// Removes a resting order from its level, the index, the heap and the slab.
    fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        self.release_slot(slot);
    }

    /// Frees an unlinked slot: out of the index and the heap, back on the free list.
    fn release_slot(&mut self, slot: u32) {
        let entry = self.slots[slot as usize];
        assert_eq!(entry.level, NO_POSITION, "unlinked before freed");
        self.index.remove(entry.order.id);
        if entry.heap != NO_POSITION {
            self.heap_remove(entry.heap);
        }
        self.books[entry.book as usize].orders_count -= 1;
        self.orders_count -= 1;
        self.slots[slot as usize] = Slot {
            next: self.orders_free,
            ..SLOT_EMPTY
        };
        self.orders_free = slot;
    }

    /// Appends the order in `slot` to the tail of the level at its price, creating the level.
    fn link(&mut self, slot: u32) {
        let Slot { order, book, .. } = self.slots[slot as usize];
        let key = price_key(book, order.side, order.price);
        let level_index = match self.prices.get(key) {
            Some(level_index) => level_index,
            None => {
                let level_index = self.levels_free;
                assert_ne!(
                    level_index, NO_POSITION,
                    "capacity is checked before matching"
                );
                self.levels_free = self.levels[level_index as usize].head;
                self.levels[level_index as usize] = Level {
                    price: order.price,
                    side: order.side,
                    active: true,
                    ..LEVEL_EMPTY
                };
                self.levels_count += 1;
                self.prices.insert(key, level_index);
                self.ladder_insert(book, order.side, level_index);
                level_index
            }
        };
        let level = &mut self.levels[level_index as usize];
        let tail = level.tail;
        level.tail = slot;
        if tail == NO_POSITION {
            level.head = slot;
        }
        level.count += 1;
        level.quantity += u128::from(order.remaining());
        if tail != NO_POSITION {
            self.slots[tail as usize].next = slot;
        }
        let entry = &mut self.slots[slot as usize];
        entry.level = level_index;
        entry.prev = tail;
        entry.next = NO_POSITION;
    }

    /// Takes the order in `slot` out of its level's queue, freeing the level when it empties.
    fn unlink(&mut self, slot: u32) {
        let Slot {
            order,
            level: level_index,
            prev,
            next,
            book,
            ..
        } = self.slots[slot as usize];
        assert_ne!(level_index, NO_POSITION);
        if prev != NO_POSITION {
            self.slots[prev as usize].next = next;
        }
        if next != NO_POSITION {
            self.slots[next as usize].prev = prev;
        }
        let entry = &mut self.slots[slot as usize];
        entry.level = NO_POSITION;
        entry.prev = NO_POSITION;
        entry.next = NO_POSITION;
        let level = &mut self.levels[level_index as usize];
        if level.head == slot {
            level.head = next;
        }
        if level.tail == slot {
            level.tail = prev;
        }
        level.count -= 1;
        level.quantity -= u128::from(order.remaining());
        if level.count == 0 {
            assert_eq!(level.quantity, 0);
            assert_eq!(level.head, NO_POSITION);
            self.ladder_remove(book, order.side, level_index);
            self.prices.remove(price_key(book, order.side, order.price));
            self.levels[level_index as usize] = Level {
                head: self.levels_free,
                ..LEVEL_EMPTY
            };
            self.levels_free = level_index;
            self.levels_count -= 1;
        }
    }

    /// Links a new active level into its side of book `book` at its price's place, walking
    /// from whichever end of the ladder is nearer in price (order flow concentrates near the
    /// best price, so the walk is short; a new best or worst price costs O(1)).
    fn ladder_insert(&mut self, book: u32, side: Side, level_index: u32) {
        let price = self.levels[level_index as usize].price;
        let ladder = self.books[book as usize].ladders[side_index(side)];
        let (before, after) = if ladder.best == NO_POSITION {
            (NO_POSITION, NO_POSITION)
        } else {
            let best_price = self.levels[ladder.best as usize].price;
            let worst_price = self.levels[ladder.worst as usize].price;
            if better(side, price, best_price) {
                (NO_POSITION, ladder.best)
            } else if better(side, worst_price, price) {
                (ladder.worst, NO_POSITION)
            } else if price.abs_diff(best_price) <= price.abs_diff(worst_price) {
                // From the best: the first level this price beats.
                let mut cursor = ladder.best;
                while better(side, self.levels[cursor as usize].price, price) {
                    cursor = self.levels[cursor as usize].worse;
                }
                (self.levels[cursor as usize].better, cursor)
            } else {
                // From the worst: the first level that beats this price.
                let mut cursor = ladder.worst;
                while better(side, price, self.levels[cursor as usize].price) {
                    cursor = self.levels[cursor as usize].better;
                }
                (cursor, self.levels[cursor as usize].worse)
            }
        };
        let level = &mut self.levels[level_index as usize];
        level.better = before;
        level.worse = after;
        let ladder = &mut self.books[book as usize].ladders[side_index(side)];
        ladder.count += 1;
        if before == NO_POSITION {
            ladder.best = level_index;
        } else {
            self.levels[before as usize].worse = level_index;
        }
        let ladder = &mut self.books[book as usize].ladders[side_index(side)];
        if after == NO_POSITION {
            ladder.worst = level_index;
        } else {
            self.levels[after as usize].better = level_index;
        }
    }

    fn ladder_remove(&mut self, book: u32, side: Side, level_index: u32) {
        let Level { better, worse, .. } = self.levels[level_index as usize];
        let ladder = &mut self.books[book as usize].ladders[side_index(side)];
        ladder.count -= 1;
        if better == NO_POSITION {
            ladder.best = worse;
        } else {
            self.levels[better as usize].worse = worse;
        }
        let ladder = &mut self.books[book as usize].ladders[side_index(side)];
        if worse == NO_POSITION {
            ladder.worst = better;
        } else {
            self.levels[worse as usize].better = better;
        }
    }

    // Expiry heap: slots ordered by `(expires_at, id)`, each slot knowing its position.

    fn heap_less(&self, first: u32, second: u32) -> bool {
        let first = &self.slots[first as usize].order;
        let second = &self.slots[second as usize].order;
        (first.expires_at, first.id) < (second.expires_at, second.id)
    }

    fn heap_set(&mut self, position: usize, slot: u32) {
        self.heap[position] = slot;
        self.slots[slot as usize].heap = position as u32;
    }

    fn heap_push(&mut self, slot: u32) {
        assert!(self.heap.len() < self.heap.capacity());
        self.heap.push(slot);
        let position = self.heap.len() - 1;
        self.heap_set(position, slot);
        self.heap_up(position);
    }

    fn heap_remove(&mut self, position: u32) {
        let position = position as usize;
        let removed = self.heap[position];
        self.slots[removed as usize].heap = NO_POSITION;
        let last = self.heap.pop().expect("the removed entry is in the heap");
        if position < self.heap.len() {
            self.heap_set(position, last);
            self.heap_up(position);
            self.heap_down(self.slots[last as usize].heap as usize);
        }
    }

    fn heap_up(&mut self, mut position: usize) {
        while position > 0 {
            let parent = (position - 1) / 2;
            let (slot, above) = (self.heap[position], self.heap[parent]);
            if !self.heap_less(slot, above) {
                return;
            }
            self.heap_set(position, above);
            self.heap_set(parent, slot);
            position = parent;
        }
    }

    fn heap_down(&mut self, mut position: usize) {
        loop {
            let mut least = position;
            for child in [2 * position + 1, 2 * position + 2] {
                if child < self.heap.len() && self.heap_less(self.heap[child], self.heap[least]) {
                    least = child;
                }
            }
            if least == position {
                return;
            }
            let (slot, below) = (self.heap[position], self.heap[least]);
            self.heap_set(position, below);
            self.heap_set(least, slot);
            position = least;
        }
    }
}

/// One market's order book on pools of its own: the single-book view of `Books`, for tests,
/// benchmarks and embedding.
pub struct Book {
    books: Books,
}

impl Book {
    /// Creates an empty book for `market` holding at most `orders_max` resting orders at most
    /// `levels_max` distinct prices (both sides together). Allocates everything it will use.
    ///
    /// # Panics
    ///
    /// If a capacity is 0 or does not fit the `u32` links, or the market has no lot or tick.
    pub fn new(market: &Market, orders_max: u32, levels_max: u32) -> Book {
        let mut books = Books::new(1, orders_max, levels_max, levels_max);
        books.add(market).expect("room for one book");
        Book { books }
    }

    /// The market this book trades.
    pub fn market(&self) -> &Market {
        self.books.market(0)
    }

    /// Capacity for resting orders.
    pub fn orders_max(&self) -> u32 {
        self.books.orders_max()
    }

    /// Capacity for price levels, both sides together.
    pub fn levels_max(&self) -> u32 {
        self.books.levels_max()
    }

    /// Resting orders.
    pub fn orders_count(&self) -> u32 {
        self.books.orders_count(0)
    }

    /// Active price levels, both sides together.
    pub fn levels_count(&self) -> u32 {
        self.books.levels_count(0)
    }

    /// The highest bid price, O(1).
    pub fn best_bid(&self) -> Option<u64> {
        self.books.best_bid(0)
    }

    /// The lowest ask price, O(1).
    pub fn best_ask(&self) -> Option<u64> {
        self.books.best_ask(0)
    }

    /// When the earliest resting good-till-time order expires, O(1).
    pub fn expiry_next(&self) -> Option<u64> {
        self.books.expiry_next()
    }

    /// The resting order with this id.
    pub fn order(&self, order_id: u128) -> Option<RestingOrder> {
        self.books.order(0, order_id)
    }

    /// As `Books::place`.
    pub fn place(
        &mut self,
        order: &Order,
        expires_at: u64,
        events: &mut Vec<BookEvent>,
    ) -> Execution {
        self.books.place(0, order, expires_at, events)
    }

    /// As `Books::cancel`.
    pub fn cancel(&mut self, order_id: u128) -> Option<RestingOrder> {
        self.books.cancel(0, order_id)
    }

    /// As `Books::amend`.
    pub fn amend(&mut self, amend: &OrderAmend, events: &mut Vec<BookEvent>) -> AmendOutcome {
        self.books.amend(0, amend, events)
    }

    /// As `Books::expire`.
    pub fn expire(&mut self, now: u64, limit: u32, expired: &mut Vec<RestingOrder>) -> u32 {
        self.books.expire(now, limit, expired)
    }

    /// As `Books::depth`.
    pub fn depth(&self, depth: u32, out: &mut Vec<BookLevel>) {
        self.books.depth(0, depth, out);
    }

    /// As `Books::resting`.
    pub fn resting(&self, side: Side, out: &mut Vec<RestingOrder>) {
        self.books.resting(0, side, out);
    }

    /// As `Books::verify`.
    pub fn verify(&self) {
        self.books.verify();
    }
}

/// The order-id index: linear probing, table at most half full, key 0 marks an empty cell
/// (order ids are never 0).
struct OrderIndex {
    keys: Vec<u128>,
    slots: Vec<u32>,
    mask: usize,
    count: u32,
}

impl OrderIndex {
    fn new(orders_max: u32) -> OrderIndex {
        let cells = (orders_max as usize * 2).next_power_of_two().max(2);
        OrderIndex {
            keys: vec![0; cells],
            slots: vec![NO_POSITION; cells],
            mask: cells - 1,
            count: 0,
        }
    }

    /// A fixed mixer (the splitmix64 finalizer over both halves): deterministic across runs.
    fn home(&self, id: u128) -> usize {
        let mut x = (id as u64) ^ ((id >> 64) as u64).rotate_left(29);
        x ^= x >> 30;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        (x as usize) & self.mask
    }

    fn find(&self, id: u128) -> Option<usize> {
        assert_ne!(id, 0);
        let mut cell = self.home(id);
        loop {
            let key = self.keys[cell];
            if key == id {
                return Some(cell);
            }
            if key == 0 {
                return None;
            }
            cell = (cell + 1) & self.mask;
        }
    }

    fn clear(&mut self) {
        self.keys.fill(0);
        self.slots.fill(NO_POSITION);
        self.count = 0;
    }

    fn get(&self, id: u128) -> Option<u32> {
        self.find(id).map(|cell| self.slots[cell])
    }

    fn insert(&mut self, id: u128, slot: u32) {
        assert_ne!(id, 0);
        assert!(
            (self.count as usize) < self.keys.len() / 2,
            "index sized for orders_max"
        );
        let mut cell = self.home(id);
        while self.keys[cell] != 0 {
            assert_ne!(self.keys[cell], id, "order id already indexed");
            cell = (cell + 1) & self.mask;
        }
        self.keys[cell] = id;
        self.slots[cell] = slot;
        self.count += 1;
    }

    fn remove(&mut self, id: u128) {
        let mut hole = self.find(id).expect("removed order ids are indexed");
        self.keys[hole] = 0;
        self.slots[hole] = NO_POSITION;
        self.count -= 1;
        // Backward-shift deletion: pull later entries of the run into the hole unless their home
        // lies cyclically in (hole, cell], so every key stays reachable from its home.
        let mut cell = hole;
        loop {
            cell = (cell + 1) & self.mask;
            let key = self.keys[cell];
            if key == 0 {
                return;
            }
            let home = self.home(key);
            let stays = if hole <= cell {
                hole < home && home <= cell
            } else {
                hole < home || home <= cell
            };
            if !stays {
                self.keys[hole] = key;
                self.slots[hole] = self.slots[cell];
                self.keys[cell] = 0;
                self.slots[cell] = NO_POSITION;
                hole = cell;
            }
        }
    }
}

/// The incoming side of a match.
#[derive(Clone, Copy, Debug)]
struct Taker {
    id: u128,
    owner: u128,
    side: Side,
    /// Buy: the highest acceptable price; sell: the lowest. Market orders use the extremes.
    limit: u64,
    remaining: u64,
    /// Quote left to spend, fees included (market buys); `u128::MAX` = unbounded.
    budget: u128,
    self_trade: SelfTrade,
}

impl Taker {
    fn crosses(&self, price: u64) -> bool {
        match self.side {
            Side::Buy => price <= self.limit,
            Side::Sell => price >= self.limit,
        }
    }
}

/// Quote one lot costs a market buy at `price`: the price plus the taker fee.
fn lot_cost(price: u64, market: &Market) -> u128 {
    u128::from(price) + u128::from(market.taker_fee)
}

/// Base units a budget can buy at `price`, whole lots only, capped at `u64::MAX`.
fn affordable(budget: u128, price: u64, market: &Market) -> u64 {
    let lots = budget / lot_cost(price, market);
    let quantity = lots.saturating_mul(u128::from(market.lot_size));
    u64::try_from(quantity).unwrap_or(u64::MAX)
}

/// Writes a slab's free list (see `Books::checkpoint_write`): the nodes before its untouched
/// tail (`tail..len`, linked in increasing order to the end), then `tail`. `next` gives a free
/// node's successor and `free` tells free nodes from used ones.
fn checkpoint_write_free_list(
    writer: &mut ImageWriter,
    len: usize,
    head: u32,
    free: impl Fn(usize) -> bool,
    next: impl Fn(usize) -> u32,
) -> std::io::Result<()> {
    let mut tail = len;
    while tail > 0 {
        let expected = if tail == len {
            NO_POSITION
        } else {
            tail as u32
        };
        if !free(tail - 1) || next(tail - 1) != expected {
            break;
        }
        tail -= 1;
    }
    let mut prefix = 0usize;
    let mut node = head;
    while node != NO_POSITION && (node as usize) < tail {
        prefix += 1;
        assert!(prefix <= len, "free list has a cycle");
        node = next(node as usize);
    }
    assert!(node == NO_POSITION || node as usize == tail);
    writer.count(prefix)?;
    let mut node = head;
    for _ in 0..prefix {
        writer.u32(node)?;
        node = next(node as usize);
    }
    writer.count(tail)
}

/// Reads a free list written by `checkpoint_write_free_list` into a slab of `len` nodes whose
/// used nodes are already in place and whose nodes from `tail` on are still linked as
/// `Books::new` made them; returns the list's head. `node(position, None)` checks that a node
/// is free and not yet listed and marks it; `node(position, Some(next))` sets its successor.
fn checkpoint_read_free_list(
    reader: &mut ImageReader,
    store: &'static str,
    flag: &'static str,
    len: usize,
    mut node: impl FnMut(usize, Option<u32>) -> bool,
) -> Result<u32, CheckpointError> {
    let prefix = reader.count(store, len, flag)?;
    let mut nodes = [NO_POSITION; 2];
    let mut head = NO_POSITION;
    for _ in 0..prefix {
        let position = reader.u32()?;
        if position as usize >= len {
            return Err(CheckpointError::CapacityExceeded {
                store,
                count: u64::from(position) + 1,
                capacity: len as u64,
                flag,
            });
        }
        if !node(position as usize, None) {
            return Err(reader.invalid(store, "a free slot is in use or listed twice"));
        }
        nodes = [nodes[1], position];
        if nodes[0] == NO_POSITION {
            head = position;
        } else {
            node(nodes[0] as usize, Some(position));
        }
    }
    let tail = (reader.u32()? as usize).min(len);
    for position in tail..len {
        if !node(position, None) {
            return Err(reader.invalid(store, "a slot of the free tail is in use"));
        }
    }
    let tail = if tail == len {
        NO_POSITION
    } else {
        tail as u32
    };
    match nodes[1] {
        NO_POSITION => head = tail,
        last => {
            node(last as usize, Some(tail));
        }
    }
    Ok(head)
}

/// The checkpoint image of the books (see checkpoint.rs): the book states, the used order and
/// level slots with their numbers, the two free lists, the two hash indexes cell by cell and
/// the expiry heap in heap order. Free slots are stored empty, so only their links are written.
impl Books {
    pub(crate) fn checkpoint_write(&self, writer: &mut ImageWriter) -> std::io::Result<()> {
        let Books {
            books,
            slots,
            orders_free,
            orders_count,
            levels,
            levels_free,
            levels_count,
            book_levels_max: _,
            index,
            prices,
            heap,
        } = self;
        writer.count(books.len())?;
        let mut bytes = [0u8; Market::SIZE];
        for book in books {
            let BookState {
                market,
                ladders,
                orders_count,
            } = book;
            market.encode(&mut bytes);
            writer.bytes(&bytes)?;
            for ladder in ladders {
                let Ladder { best, worst, count } = ladder;
                writer.u32(*best)?;
                writer.u32(*worst)?;
                writer.u32(*count)?;
            }
            writer.u32(*orders_count)?;
        }
        writer.count(slots.len())?;
        writer.u32(*orders_count)?;
        for (position, slot) in slots.iter().enumerate() {
            let Slot {
                order,
                level,
                prev,
                next,
                book,
                heap,
            } = slot;
            if *level == NO_POSITION {
                continue;
            }
            let RestingOrder {
                id,
                base_account_id,
                quote_account_id,
                price,
                quantity,
                filled_quantity,
                expires_at,
                side,
                time_in_force,
                self_trade,
            } = order;
            writer.u32(position as u32)?;
            writer.u128(*id)?;
            writer.u128(*base_account_id)?;
            writer.u128(*quote_account_id)?;
            writer.u64(*price)?;
            writer.u64(*quantity)?;
            writer.u64(*filled_quantity)?;
            writer.u64(*expires_at)?;
            writer.u8(*side as u8)?;
            writer.u8(*time_in_force as u8)?;
            writer.u8(*self_trade as u8)?;
            writer.u32(*level)?;
            writer.u32(*prev)?;
            writer.u32(*next)?;
            writer.u32(*book)?;
            writer.u32(*heap)?;
        }
        let free = |position: usize| slots[position].level == NO_POSITION;
        let next = |position: usize| slots[position].next;
        checkpoint_write_free_list(writer, slots.len(), *orders_free, free, next)?;
        writer.count(levels.len())?;
        writer.u32(*levels_count)?;
        for (position, level) in levels.iter().enumerate() {
            let Level {
                price,
                quantity,
                count,
                head,
                tail,
                better,
                worse,
                side,
                active,
            } = level;
            if !active {
                continue;
            }
            writer.u32(position as u32)?;
            writer.u64(*price)?;
            writer.u128(*quantity)?;
            writer.u32(*count)?;
            writer.u32(*head)?;
            writer.u32(*tail)?;
            writer.u32(*better)?;
            writer.u32(*worse)?;
            writer.u8(*side as u8)?;
        }
        let free = |position: usize| !levels[position].active;
        let next = |position: usize| levels[position].head;
        checkpoint_write_free_list(writer, levels.len(), *levels_free, free, next)?;
        index.checkpoint_write(writer)?;
        prices.checkpoint_write(writer)?;
        writer.count(heap.len())?;
        for slot in heap {
            writer.u32(*slot)?;
        }
        Ok(())
    }

    /// Reads the image written by `checkpoint_write` into these empty books; `markets` are the
    /// exchange's markets, one per book.
    pub(crate) fn checkpoint_read(
        &mut self,
        reader: &mut ImageReader,
        markets: &[Market],
    ) -> Result<(), CheckpointError> {
        assert!(self.books.is_empty() && self.orders_count == 0 && self.levels_count == 0);
        let (slots_len, levels_len) = (self.slots.len(), self.levels.len());
        let count = reader.count("books", self.books.capacity(), "--markets-max")?;
        if count != markets.len() {
            return Err(reader.invalid("books", "the books do not match the markets"));
        }
        for _ in 0..count {
            let bytes = reader.record::<{ Market::SIZE }>()?;
            let market = Market::decode(&bytes);
            if market.lot_size == 0 || market.tick_size == 0 {
                return Err(reader.invalid("books", "a market has no lot or tick size"));
            }
            let mut ladders = [LADDER_EMPTY; 2];
            for ladder in &mut ladders {
                ladder.best = reader.link("books", levels_len)?;
                ladder.worst = reader.link("books", levels_len)?;
                ladder.count = reader.u32()?;
            }
            let orders_count = reader.u32()?;
            self.books.push(BookState {
                market,
                ladders,
                orders_count,
            });
        }
        // Order slots.
        reader.u32()?;
        let count = reader.count("resting orders", slots_len, "--orders-max")?;
        let mut previous: Option<usize> = None;
        for _ in 0..count {
            let position =
                reader.increasing(&mut previous, "resting orders", "slot numbers out of order")?;
            if position >= slots_len {
                return Err(CheckpointError::CapacityExceeded {
                    store: "order slots",
                    count: position as u64 + 1,
                    capacity: slots_len as u64,
                    flag: "--orders-max",
                });
            }
            let order = checkpoint_read_resting_order(reader)?;
            if order.id == 0 || order.filled_quantity >= order.quantity {
                return Err(reader.invalid("resting orders", "an order has no id or remainder"));
            }
            let level = reader.position("resting orders", levels_len)?;
            let prev = reader.link("resting orders", slots_len)?;
            let next = reader.link("resting orders", slots_len)?;
            let book = reader.position("resting orders", self.books.len())?;
            let heap = reader.link("resting orders", slots_len)?;
            self.slots[position] = Slot {
                order,
                level,
                prev,
                next,
                book,
                heap,
            };
        }
        self.orders_count = count as u32;
        let slots = &mut self.slots;
        // A listed free slot is marked by `prev = 0` until the list is read.
        self.orders_free = checkpoint_read_free_list(
            reader,
            "order slots",
            "--orders-max",
            slots_len,
            |position, next| {
                let slot = &mut slots[position];
                if let Some(next) = next {
                    slot.next = next;
                    return true;
                }
                let claimed = slot.level == NO_POSITION && slot.prev == NO_POSITION;
                slot.prev = 0;
                claimed
            },
        )?;
        for slot in self.slots.iter_mut() {
            if slot.level == NO_POSITION {
                if slot.prev != 0 {
                    return Err(reader.invalid("order slots", "a free slot is not listed"));
                }
                slot.prev = NO_POSITION;
            }
        }
        // Price levels.
        reader.u32()?;
        let count = reader.count("price levels", levels_len, "--orders-max")?;
        let mut previous: Option<usize> = None;
        for _ in 0..count {
            let position =
                reader.increasing(&mut previous, "price levels", "level numbers out of order")?;
            if position >= levels_len {
                return Err(CheckpointError::CapacityExceeded {
                    store: "price level slots",
                    count: position as u64 + 1,
                    capacity: levels_len as u64,
                    flag: "--orders-max",
                });
            }
            let price = reader.u64()?;
            let quantity = reader.u128()?;
            let count = reader.u32()?;
            let head = reader.position("price levels", slots_len)?;
            let tail = reader.position("price levels", slots_len)?;
            let better = reader.link("price levels", levels_len)?;
            let worse = reader.link("price levels", levels_len)?;
            let Some(side) = Side::from_u8(reader.u8()?) else {
                return Err(reader.invalid("price levels", "unknown side"));
            };
            self.levels[position] = Level {
                price,
                quantity,
                count,
                head,
                tail,
                better,
                worse,
                side,
                active: true,
            };
        }
        self.levels_count = count as u32;
        let levels = &mut self.levels;
        // A listed free level is marked by `tail = 0` until the list is read.
        self.levels_free = checkpoint_read_free_list(
            reader,
            "price level slots",
            "--orders-max",
            levels_len,
            |position, next| {
                let level = &mut levels[position];
                if let Some(next) = next {
                    level.head = next;
                    return true;
                }
                let claimed = !level.active && level.tail == NO_POSITION;
                level.tail = 0;
                claimed
            },
        )?;
        for level in self.levels.iter_mut() {
            if !level.active {
                if level.tail != 0 {
                    return Err(reader.invalid("price levels", "a free level is not listed"));
                }
                level.tail = NO_POSITION;
            }
        }
        for slot in &self.slots {
            if slot.level != NO_POSITION && !self.levels[slot.level as usize].active {
                return Err(reader.invalid("resting orders", "an order rests on a free level"));
            }
        }
        let slots = &self.slots;
        self.index
            .checkpoint_read(reader, "resting order index", slots_len, |slot| {
                slots
                    .get(slot as usize)
                    .is_some_and(|slot| slot.level != NO_POSITION)
            })?;
        let levels = &self.levels;
        self.prices
            .checkpoint_read(reader, "price index", levels_len, |level| {
                levels.get(level as usize).is_some_and(|level| level.active)
            })?;
        let count = reader.count("order expiry heap", self.heap.capacity(), "--orders-max")?;
        for _ in 0..count {
            let slot = reader.position("order expiry heap", slots_len)?;
            if self.slots[slot as usize].level == NO_POSITION {
                return Err(reader.invalid("order expiry heap", "a free slot is queued"));
            }
            self.heap.push(slot);
        }
        for slot in &self.slots {
            if slot.heap != NO_POSITION && slot.heap as usize >= self.heap.len() {
                return Err(reader.invalid("resting orders", "a heap position is out of range"));
            }
        }
        Ok(())
    }
}

/// Reads the fields of a resting order in the order `Books::checkpoint_write` writes them.
fn checkpoint_read_resting_order(
    reader: &mut ImageReader,
) -> Result<RestingOrder, CheckpointError> {
    const STORE: &str = "resting orders";
    let id = reader.u128()?;
    let base_account_id = reader.u128()?;
    let quote_account_id = reader.u128()?;
    let price = reader.u64()?;
    let quantity = reader.u64()?;
    let filled_quantity = reader.u64()?;
    let expires_at = reader.u64()?;
    let Some(side) = Side::from_u8(reader.u8()?) else {
        return Err(reader.invalid(STORE, "unknown side"));
    };
    let Some(time_in_force) = TimeInForce::from_u8(reader.u8()?) else {
        return Err(reader.invalid(STORE, "unknown time in force"));
    };
    let Some(self_trade) = SelfTrade::from_u8(reader.u8()?) else {
        return Err(reader.invalid(STORE, "unknown self-trade rule"));
    };
    Ok(RestingOrder {
        id,
        base_account_id,
        quote_account_id,
        price,
        quantity,
        filled_quantity,
        expires_at,
        side,
        time_in_force,
        self_trade,
    })
}

/// The checkpoint image of an order-id or price index: the cell count, the entry count, then
/// each occupied cell's number, key and value in cell order.
impl OrderIndex {
    fn checkpoint_write(&self, writer: &mut ImageWriter) -> std::io::Result<()> {
        let OrderIndex {
            keys,
            slots,
            mask: _,
            count,
        } = self;
        writer.count(keys.len())?;
        writer.u32(*count)?;
        for (cell, (key, slot)) in keys.iter().zip(slots).enumerate() {
            if *key != 0 {
                writer.u32(cell as u32)?;
                writer.u128(*key)?;
                writer.u32(*slot)?;
            }
        }
        Ok(())
    }

    /// Reads an index into this empty one; `valid(value)` checks each value. When the cell
    /// count differs from the image's, the entries are inserted again in cell order.
    fn checkpoint_read(
        &mut self,
        reader: &mut ImageReader,
        store: &'static str,
        capacity: usize,
        valid: impl Fn(u32) -> bool,
    ) -> Result<(), CheckpointError> {
        assert_eq!(self.count, 0);
        let cells = reader.u32()? as usize;
        let count = reader.count(store, capacity, "--orders-max")?;
        if count > cells / 2 || count > self.keys.len() / 2 {
            return Err(reader.invalid(store, "more entries than the table holds"));
        }
        let same_table = cells == self.keys.len();
        let mut previous: Option<usize> = None;
        for _ in 0..count {
            let cell = reader.u32()? as usize;
            let key = reader.u128()?;
            let slot = reader.u32()?;
            if cell >= cells || previous.is_some_and(|previous| cell <= previous) {
                return Err(reader.invalid(store, "cell numbers out of order or range"));
            }
            previous = Some(cell);
            if key == 0 || !valid(slot) {
                return Err(reader.invalid(store, "an entry has no key or a bad value"));
            }
            if self.find(key).is_some() {
                return Err(reader.invalid(store, "a key is indexed twice"));
            }
            if same_table {
                self.keys[cell] = key;
                self.slots[cell] = slot;
                self.count += 1;
            } else {
                self.insert(key, slot);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_survives_colliding_runs_and_deletions() {
        let mut index = OrderIndex::new(64);
        let ids: Vec<u128> = (1..=64u128).map(|i| i * 0x1_0000_0000_0000_0001).collect();
        for (slot, id) in ids.iter().enumerate() {
            index.insert(*id, slot as u32);
        }
        for (slot, id) in ids.iter().enumerate().filter(|(slot, _)| slot % 3 == 0) {
            assert_eq!(index.get(*id), Some(slot as u32));
            index.remove(*id);
            assert_eq!(index.get(*id), None);
        }
        for (slot, id) in ids.iter().enumerate() {
            let expected = (slot % 3 != 0).then_some(slot as u32);
            assert_eq!(index.get(*id), expected, "id {id}");
        }
        assert_eq!(index.count, 42);
    }

    #[test]
    fn ladders_keep_the_best_price_first() {
        let market = Market {
            id: 1,
            lot_size: 1,
            tick_size: 1,
            ..Market::default()
        };
        let mut book = Book::new(&market, 16, 16);
        let mut events = Vec::with_capacity(16);
        for (id, side, price) in [(1, 1, 10), (2, 1, 12), (3, 1, 11), (4, 2, 20), (5, 2, 15)] {
            let order = Order {
                id,
                market: 1,
                base_account_id: id,
                price,
                quantity: 1,
                side,
                time_in_force: 1,
                ..Order::default()
            };
            assert_eq!(book.place(&order, 0, &mut events).status, OrderStatus::Ok);
        }
        let mut levels = Vec::with_capacity(8);
        book.depth(8, &mut levels);
        let prices: Vec<(u8, u64)> = levels.iter().map(|l| (l.side, l.price)).collect();
        assert_eq!(prices, [(1, 12), (1, 11), (1, 10), (2, 15), (2, 20)]);
        assert_eq!((book.best_bid(), book.best_ask()), (Some(12), Some(15)));
        assert!(events.is_empty());
    }

    #[test]
    fn affordable_counts_whole_lots_with_the_taker_fee() {
        let market = Market {
            lot_size: 10,
            tick_size: 1,
            taker_fee: 2,
            ..Market::default()
        };
        assert_eq!(affordable(0, 8, &market), 0);
        assert_eq!(affordable(9, 8, &market), 0);
        assert_eq!(affordable(10, 8, &market), 10);
        assert_eq!(affordable(35, 8, &market), 30);
        assert_eq!(affordable(u128::MAX, 1, &market), u64::MAX);
    }
}
