//! One order book per market: price levels on each side, each level a FIFO queue of resting
//! orders, matched with price-time priority.
//!
//! Invariants (checked by `Book::verify`):
//! - the best bid is strictly below the best ask after every command;
//! - a level is active if and only if its queue is non-empty, and its quantity and order count
//!   equal the sums over its queue;
//! - every resting order is reachable from exactly one level and from the id index, has an
//!   unfilled remainder, and no slot is both in use and on the free list;
//! - no resting order expires before `expiry_bound`.
//!
//! Layout. Everything is allocated in `Book::new` and never grows:
//! - orders live in a slab of `orders_max` slots addressed by `u32`; free slots form a list
//!   linked through `next`; a level's queue is a doubly linked list through `prev`/`next`;
//! - levels live in a slab of `levels_max` slots shared by both sides, with their own free list;
//! - each side keeps a sorted array of its active prices (and the level slot of each), ordered so
//!   that the best price is the **last** element: bids ascending, asks descending. The best bid
//!   and ask are therefore O(1), finding a level is a binary search, and adding or removing a
//!   level moves only the levels better than it. Order flow concentrates near the top of the
//!   book (exchange-core's benchmark keeps ~750 levels with most activity at the best prices),
//!   so those moves are short; a radix tree or a bitmap over price ticks would bound the far
//!   levels better but costs more per operation and more memory for the common case;
//! - an id index: open addressing with linear probing over a power-of-two table at most half
//!   full, with backward-shift deletion (no tombstones), hashed with a fixed mixer so iteration
//!   and behavior are deterministic (no `RandomState`).
//!
//! Capacity is checked before the book changes: an order that would rest needs a free order slot
//! and, at a new price, a free level slot *before* it matches (slots its own fills would free are
//! not counted), so a rejection never leaves a partial effect.
//!
//! Matching writes one `BookEvent` per maker touched (a fill or a self-trade cancel) into a
//! caller-provided buffer whose spare capacity must cover every resting order; the caller settles
//! them through the ledger. The book knows no accounts beyond their ids and holds no funds.
//!
//! Expiry scans the order slab when the pulse time reaches `expiry_bound` (the earliest expiry
//! seen); that is O(orders_max) per effective pulse and deliberately simple.

use crate::market::Market;
use crate::order::{check_order, BookLevel, Fill, Order, OrderAmend};
use crate::order::{OrderState, OrderStatus, SelfTrade, Side, TimeInForce};

/// The null link of the slab lists.
const NIL: u32 = u32::MAX;

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
    fn rejected(status: OrderStatus) -> Execution {
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

    fn accepted() -> Execution {
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
    /// The level slot holding this order; `NIL` while the slot is free.
    level: u32,
    prev: u32,
    /// The next order of the level, or the next free slot.
    next: u32,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    price: u64,
    /// Sum of the queue's remainders (u128: many u64 orders may rest at one price).
    quantity: u128,
    count: u32,
    /// First order of the queue, or the next free level while inactive.
    head: u32,
    tail: u32,
    side: Side,
    active: bool,
}

/// One side's active prices, best last.
struct Ladder {
    side: Side,
    prices: Vec<u64>,
    levels: Vec<u32>,
}

impl Ladder {
    fn new(side: Side, levels_max: u32) -> Ladder {
        Ladder {
            side,
            prices: Vec::with_capacity(levels_max as usize),
            levels: Vec::with_capacity(levels_max as usize),
        }
    }

    /// The position of `price`, or where it would be inserted.
    fn search(&self, price: u64) -> Result<usize, usize> {
        match self.side {
            Side::Buy => self.prices.binary_search(&price),
            Side::Sell => self.prices.binary_search_by(|probe| price.cmp(probe)),
        }
    }

    fn best(&self) -> Option<u64> {
        self.prices.last().copied()
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
            slots: vec![NIL; cells],
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
        self.slots[hole] = NIL;
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
                self.slots[cell] = NIL;
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

/// One market's order book.
pub struct Book {
    market: Market,
    orders: Vec<Slot>,
    orders_free: u32,
    orders_count: u32,
    levels: Vec<Level>,
    levels_free: u32,
    levels_count: u32,
    bids: Ladder,
    asks: Ladder,
    index: OrderIndex,
    /// No resting order expires before this time (`u64::MAX` when none may expire).
    expiry_bound: u64,
    /// Expiry candidates, sized `orders_max`.
    expiring: Vec<u32>,
}

impl Book {
    /// Creates an empty book for `market` holding at most `orders_max` resting orders at most
    /// `levels_max` distinct prices (both sides together). Allocates everything it will use.
    ///
    /// # Panics
    ///
    /// If a capacity is 0 or does not fit the `u32` links, or the market has no lot or tick.
    pub fn new(market: &Market, orders_max: u32, levels_max: u32) -> Book {
        assert!(orders_max > 0);
        assert!(orders_max < NIL);
        assert!(levels_max > 0);
        assert!(levels_max < NIL);
        assert!(market.lot_size > 0);
        assert!(market.tick_size > 0);
        let mut orders = vec![
            Slot {
                order: ORDER_EMPTY,
                level: NIL,
                prev: NIL,
                next: NIL
            };
            orders_max as usize
        ];
        for (index, slot) in orders.iter_mut().enumerate() {
            slot.next = if index + 1 < orders_max as usize {
                index as u32 + 1
            } else {
                NIL
            };
        }
        let empty_level = Level {
            price: 0,
            quantity: 0,
            count: 0,
            head: NIL,
            tail: NIL,
            side: Side::Buy,
            active: false,
        };
        let mut levels = vec![empty_level; levels_max as usize];
        for (index, level) in levels.iter_mut().enumerate() {
            level.head = if index + 1 < levels_max as usize {
                index as u32 + 1
            } else {
                NIL
            };
        }
        Book {
            market: *market,
            orders,
            orders_free: 0,
            orders_count: 0,
            levels,
            levels_free: 0,
            levels_count: 0,
            bids: Ladder::new(Side::Buy, levels_max),
            asks: Ladder::new(Side::Sell, levels_max),
            index: OrderIndex::new(orders_max),
            expiry_bound: u64::MAX,
            expiring: Vec::with_capacity(orders_max as usize),
        }
    }

    /// The market this book trades.
    pub fn market(&self) -> &Market {
        &self.market
    }

    /// Capacity for resting orders.
    pub fn orders_max(&self) -> u32 {
        self.orders.len() as u32
    }

    /// Capacity for price levels, both sides together.
    pub fn levels_max(&self) -> u32 {
        self.levels.len() as u32
    }

    /// Resting orders.
    pub fn orders_count(&self) -> u32 {
        self.orders_count
    }

    /// Active price levels, both sides together.
    pub fn levels_count(&self) -> u32 {
        self.levels_count
    }

    /// The highest bid price, O(1).
    pub fn best_bid(&self) -> Option<u64> {
        self.bids.best()
    }

    /// The lowest ask price, O(1).
    pub fn best_ask(&self) -> Option<u64> {
        self.asks.best()
    }

    /// The earliest time at which a resting good-till-time order may expire, if any rests. It
    /// is a lower bound (an order that left the book early still counts until the next
    /// `expire` recomputes it).
    pub fn expiry_next(&self) -> Option<u64> {
        (self.expiry_bound != u64::MAX).then_some(self.expiry_bound)
    }

    /// The resting order with this id.
    pub fn order(&self, order_id: u128) -> Option<RestingOrder> {
        if order_id == 0 {
            return None;
        }
        self.index
            .get(order_id)
            .map(|slot| self.orders[slot as usize].order)
    }

    /// Places an order (limit GTC or good-till-time, IOC, FOK, post-only or market): matches
    /// what crosses, then rests or releases the remainder. `expires_at` is the engine timestamp
    /// at which a resting order expires (0 = never; ignored for orders that cannot rest).
    ///
    /// Rejections (`Execution::status`), each leaving the book unchanged: the field checks of
    /// `check_order`, `exists` (the id rests here), `post_only_would_take`,
    /// `fill_or_kill_not_filled`, `orders_capacity_exceeded`, `book_levels_capacity_exceeded`.
    ///
    /// # Panics
    ///
    /// If `order.market` is not this book's market, or `events` has less spare capacity than
    /// the number of resting orders (one event per maker touched at most).
    pub fn place(
        &mut self,
        order: &Order,
        expires_at: u64,
        events: &mut Vec<BookEvent>,
    ) -> Execution {
        assert_eq!(
            order.market, self.market.id,
            "orders are routed to their market's book"
        );
        assert!(events.capacity() - events.len() >= self.orders_count as usize);
        if let Some(status) = check_order(order, &self.market) {
            return Execution::rejected(status);
        }
        if self.index.get(order.id).is_some() {
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
            TimeInForce::PostOnly if self.would_take(&taker) => {
                return Execution::rejected(OrderStatus::PostOnlyWouldTake);
            }
            TimeInForce::FillOrKill => {
                let (fillable, _) = self.fillable(&taker);
                if fillable < order.quantity {
                    return Execution::rejected(OrderStatus::FillOrKillNotFilled);
                }
            }
            _ => {}
        }
        if time_in_force.may_rest() {
            let slot_short = self.orders_count == self.orders_max();
            let level_short = self.levels_count == self.levels_max()
                && self.ladder(side).search(order.price).is_err();
            if slot_short || level_short {
                let (fillable, stopped) = self.fillable(&taker);
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
        let stopped = self.take(&mut taker, &mut execution, events);
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
            self.insert(resting);
            OrderState::Resting
        } else {
            OrderState::Done
        });
        self.verify_in_tests();
        execution
    }

    /// Cancels a resting order and returns it (its `remaining()` is to be released); `None` when
    /// no order with this id rests here.
    pub fn cancel(&mut self, order_id: u128) -> Option<RestingOrder> {
        if order_id == 0 {
            return None;
        }
        let slot = self.index.get(order_id)?;
        let order = self.orders[slot as usize].order;
        self.remove(slot);
        self.verify_in_tests();
        Some(order)
    }

    /// Amends a resting order: a new price (0 = unchanged) and/or a new total quantity
    /// (0 = unchanged). Reducing the quantity at the same price keeps time priority; a price
    /// change or a larger quantity moves the order to the back of its (new) level, and a new
    /// price that crosses matches first like an incoming order of the same kind.
    ///
    /// Rejections, each leaving the book unchanged, in this order: `order_id_must_not_be_zero`,
    /// `order_id_must_not_be_int_max`, `reserved_field`, `order_not_found`,
    /// `amend_price_not_multiple_of_tick`, `amend_quantity_not_multiple_of_lot`,
    /// `amend_quantity_below_filled`, `post_only_would_take`, `book_levels_capacity_exceeded`.
    ///
    /// # Panics
    ///
    /// If `events` has less spare capacity than the number of resting orders.
    pub fn amend(&mut self, amend: &OrderAmend, events: &mut Vec<BookEvent>) -> AmendOutcome {
        assert!(events.capacity() - events.len() >= self.orders_count as usize);
        let rejected = |before, status| AmendOutcome {
            before,
            execution: Execution::rejected(status),
        };
        if amend.order_id == 0 {
            return rejected(None, OrderStatus::OrderIdMustNotBeZero);
        }
        if amend.order_id == u128::MAX {
            return rejected(None, OrderStatus::OrderIdMustNotBeIntMax);
        }
        if amend.reserved != [0; 32] {
            return rejected(None, OrderStatus::ReservedField);
        }
        let Some(slot) = self.index.get(amend.order_id) else {
            return rejected(None, OrderStatus::OrderNotFound);
        };
        let before = self.orders[slot as usize].order;
        if amend.price % self.market.tick_size != 0 {
            return rejected(Some(before), OrderStatus::AmendPriceNotMultipleOfTick);
        }
        if amend.quantity % self.market.lot_size != 0 {
            return rejected(Some(before), OrderStatus::AmendQuantityNotMultipleOfLot);
        }
        let price = if amend.price == 0 {
            before.price
        } else {
            amend.price
        };
        let quantity = if amend.quantity == 0 {
            before.quantity
        } else {
            amend.quantity
        };
        if quantity <= before.filled_quantity {
            return rejected(Some(before), OrderStatus::AmendQuantityBelowFilled);
        }
        let lots = quantity / self.market.lot_size;
        if self.market.taker_fee.checked_mul(lots).is_none()
            || self.market.maker_fee.checked_mul(lots).is_none()
        {
            return rejected(Some(before), OrderStatus::FeesOverflow);
        }
        let mut execution = Execution::accepted();
        execution.state = Some(OrderState::Resting);
        execution.remaining = quantity - before.filled_quantity;

        if price == before.price {
            // No match is possible at a price that already rested without crossing.
            let level = self.orders[slot as usize].level;
            let level_ref = &mut self.levels[level as usize];
            // The remainder changes by the quantity's change; add first so it never dips below 0.
            level_ref.quantity += u128::from(quantity);
            level_ref.quantity -= u128::from(before.quantity);
            self.orders[slot as usize].order.quantity = quantity;
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
        if before.time_in_force == TimeInForce::PostOnly && self.would_take(&taker) {
            return rejected(Some(before), OrderStatus::PostOnlyWouldTake);
        }
        let old_level = self.orders[slot as usize].level;
        let level_short = self.levels_count == self.levels_max()
            && self.levels[old_level as usize].count > 1
            && self.ladder(before.side).search(price).is_err();
        if level_short {
            let (fillable, stopped) = self.fillable(&taker);
            if fillable < taker.remaining && !stopped {
                return rejected(Some(before), OrderStatus::BookLevelsCapacityExceeded);
            }
        }

        self.unlink(slot);
        let mut taker = taker;
        let stopped = self.take(&mut taker, &mut execution, events);
        let order = &mut self.orders[slot as usize].order;
        order.price = price;
        order.quantity = quantity;
        order.filled_quantity += execution.filled_quantity;
        execution.remaining = taker.remaining;
        if stopped || taker.remaining == 0 {
            self.index.remove(before.id);
            self.free_slot(slot);
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

    /// Removes good-till-time orders with `expires_at <= now`, earliest `(expires_at, id)`
    /// first, at most `limit` of them, appending each to `expired` (their `remaining()` is to be
    /// released). Returns how many expired; when it returns `limit`, more may be due.
    ///
    /// # Panics
    ///
    /// If `expired` has less spare capacity than `limit`.
    pub fn expire(&mut self, now: u64, limit: u32, expired: &mut Vec<RestingOrder>) -> u32 {
        assert!(expired.capacity() - expired.len() >= limit as usize);
        if now < self.expiry_bound || limit == 0 {
            return 0;
        }
        self.expiring.clear();
        let mut bound = u64::MAX;
        for (index, slot) in self.orders.iter().enumerate() {
            let expires_at = slot.order.expires_at;
            if slot.level == NIL || expires_at == 0 {
                continue;
            }
            if expires_at <= now {
                assert!(self.expiring.len() < self.expiring.capacity());
                self.expiring.push(index as u32);
            } else {
                bound = bound.min(expires_at);
            }
        }
        let orders = &self.orders;
        self.expiring.sort_unstable_by_key(|slot| {
            let order = &orders[*slot as usize].order;
            (order.expires_at, order.id)
        });
        let count = self.expiring.len().min(limit as usize);
        if count < self.expiring.len() {
            // Orders left due keep the bound at or below `now`.
            bound = bound.min(self.orders[self.expiring[count] as usize].order.expires_at);
        }
        for position in 0..count {
            let slot = self.expiring[position];
            expired.push(self.orders[slot as usize].order);
            self.remove(slot);
        }
        self.expiry_bound = bound;
        self.verify_in_tests();
        count as u32
    }

    /// Appends the L2 book: up to `depth` bid levels best first, then up to `depth` ask levels
    /// best first, never growing `out` beyond its capacity. Level quantities above `u64::MAX`
    /// saturate.
    pub fn depth(&self, depth: u32, out: &mut Vec<BookLevel>) {
        for ladder in [&self.bids, &self.asks] {
            for &level in ladder.levels.iter().rev().take(depth as usize) {
                if out.len() == out.capacity() {
                    return;
                }
                let level = &self.levels[level as usize];
                out.push(BookLevel {
                    price: level.price,
                    quantity: u64::try_from(level.quantity).unwrap_or(u64::MAX),
                    order_count: level.count,
                    side: level.side as u8,
                    reserved: [0; 11],
                });
            }
        }
    }

    /// Appends the resting orders of one side in priority order (best price first, then time),
    /// never growing `out` beyond its capacity.
    pub fn resting(&self, side: Side, out: &mut Vec<RestingOrder>) {
        for &level in self.ladder(side).levels.iter().rev() {
            let mut slot = self.levels[level as usize].head;
            while slot != NIL {
                if out.len() == out.capacity() {
                    return;
                }
                out.push(self.orders[slot as usize].order);
                slot = self.orders[slot as usize].next;
            }
        }
    }

    /// Checks every invariant of the module doc in O(orders_max + levels_max); allocates a
    /// visit map, so call it from tests and simulation only.
    ///
    /// # Panics
    ///
    /// On any broken invariant.
    pub fn verify(&self) {
        let mut visited = vec![false; self.orders.len()];
        let mut reachable = 0u32;
        let mut levels_active = 0u32;
        for ladder in [&self.bids, &self.asks] {
            assert_eq!(ladder.prices.len(), ladder.levels.len());
            for pair in ladder.prices.windows(2) {
                match ladder.side {
                    Side::Buy => assert!(pair[0] < pair[1], "bids ascending: {pair:?}"),
                    Side::Sell => assert!(pair[0] > pair[1], "asks descending: {pair:?}"),
                }
            }
            for (position, &level_index) in ladder.levels.iter().enumerate() {
                let level = &self.levels[level_index as usize];
                assert!(level.active);
                assert_eq!(level.side, ladder.side);
                assert_eq!(level.price, ladder.prices[position]);
                assert!(level.count > 0);
                levels_active += 1;
                let mut count = 0u32;
                let mut quantity = 0u128;
                let mut prev = NIL;
                let mut slot = level.head;
                while slot != NIL {
                    assert!(!visited[slot as usize], "order slot {slot} reachable twice");
                    visited[slot as usize] = true;
                    let entry = &self.orders[slot as usize];
                    assert_eq!(entry.level, level_index);
                    assert_eq!(entry.prev, prev);
                    assert_eq!(entry.order.side, ladder.side);
                    assert_eq!(entry.order.price, level.price);
                    assert!(entry.order.filled_quantity < entry.order.quantity);
                    assert!(entry.order.time_in_force.may_rest());
                    assert_eq!(self.index.get(entry.order.id), Some(slot));
                    if entry.order.expires_at != 0 {
                        assert!(self.expiry_bound <= entry.order.expires_at);
                    }
                    count += 1;
                    quantity += u128::from(entry.order.remaining());
                    prev = slot;
                    slot = entry.next;
                }
                assert_eq!(level.tail, prev);
                assert_eq!(level.count, count);
                assert_eq!(level.quantity, quantity);
                reachable += count;
            }
        }
        if let (Some(bid), Some(ask)) = (self.best_bid(), self.best_ask()) {
            assert!(bid < ask, "crossed book: bid {bid} >= ask {ask}");
        }
        assert_eq!(reachable, self.orders_count);
        assert_eq!(self.index.count, self.orders_count);
        assert_eq!(levels_active, self.levels_count);
        let mut free = 0u32;
        let mut slot = self.orders_free;
        while slot != NIL {
            assert!(!visited[slot as usize], "free order slot {slot} in use");
            visited[slot as usize] = true;
            assert_eq!(self.orders[slot as usize].level, NIL);
            free += 1;
            slot = self.orders[slot as usize].next;
        }
        assert_eq!(free, self.orders_max() - self.orders_count);
        let mut free = 0u32;
        let mut level = self.levels_free;
        while level != NIL {
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

    fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn ladder_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Whether the best opposite price crosses the taker's limit.
    fn would_take(&self, taker: &Taker) -> bool {
        self.ladder(taker.side.opposite())
            .best()
            .is_some_and(|price| taker.crosses(price))
    }

    /// A dry run of `take`: how much would fill, and whether self-trade prevention would stop
    /// the taker. Changes nothing.
    fn fillable(&self, taker: &Taker) -> (u64, bool) {
        let lot_size = self.market.lot_size;
        let mut remaining = taker.remaining;
        let mut budget = taker.budget;
        for &level_index in self.ladder(taker.side.opposite()).levels.iter().rev() {
            let level = &self.levels[level_index as usize];
            if !taker.crosses(level.price) {
                break;
            }
            let mut slot = level.head;
            while slot != NIL {
                let entry = &self.orders[slot as usize];
                slot = entry.next;
                if entry.order.base_account_id == taker.owner {
                    if taker.self_trade == SelfTrade::CancelResting {
                        continue;
                    }
                    return (taker.remaining - remaining, true);
                }
                let mut quantity = remaining.min(entry.order.remaining());
                if budget != u128::MAX {
                    quantity = quantity.min(affordable(budget, level.price, &self.market));
                    if quantity == 0 {
                        return (taker.remaining - remaining, false);
                    }
                    budget -= lot_cost(level.price, &self.market) * u128::from(quantity / lot_size);
                }
                remaining -= quantity;
                if remaining == 0 || quantity < entry.order.remaining() {
                    return (taker.remaining - remaining, false);
                }
            }
        }
        (taker.remaining - remaining, false)
    }

    /// Matches the taker against the opposite side in price-time priority. Returns whether
    /// self-trade prevention stopped the taker.
    fn take(
        &mut self,
        taker: &mut Taker,
        execution: &mut Execution,
        events: &mut Vec<BookEvent>,
    ) -> bool {
        let lot_size = self.market.lot_size;
        loop {
            if taker.remaining == 0 {
                return false;
            }
            let Some(&level_index) = self.ladder(taker.side.opposite()).levels.last() else {
                return false;
            };
            let price = self.levels[level_index as usize].price;
            if !taker.crosses(price) {
                return false;
            }
            // Walk the level's queue; removing its last order frees the level, and the outer
            // loop then moves to the next best price.
            let mut slot = self.levels[level_index as usize].head;
            while slot != NIL && taker.remaining > 0 {
                let maker = self.orders[slot as usize].order;
                let next = self.orders[slot as usize].next;
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
                    quantity = quantity.min(affordable(taker.budget, price, &self.market));
                    if quantity == 0 {
                        return false;
                    }
                }
                let lots = quantity / lot_size;
                assert_eq!(quantity % lot_size, 0);
                if taker.budget != u128::MAX {
                    taker.budget -= lot_cost(price, &self.market) * u128::from(lots);
                }
                let quote_amount = u128::from(price) * u128::from(lots);
                let taker_fee = self
                    .market
                    .taker_fee
                    .checked_mul(lots)
                    .expect("fees_overflow");
                let maker_fee = self
                    .market
                    .maker_fee
                    .checked_mul(lots)
                    .expect("fees_overflow");
                taker.remaining -= quantity;
                self.levels[level_index as usize].quantity -= u128::from(quantity);
                let entry = &mut self.orders[slot as usize].order;
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

    /// Puts a new resting order at the back of its level.
    fn insert(&mut self, order: RestingOrder) {
        assert!(order.filled_quantity < order.quantity);
        let slot = self.orders_free;
        assert_ne!(slot, NIL, "capacity is checked before matching");
        self.orders_free = self.orders[slot as usize].next;
        self.orders_count += 1;
        self.orders[slot as usize].order = order;
        self.index.insert(order.id, slot);
        if order.expires_at != 0 {
            self.expiry_bound = self.expiry_bound.min(order.expires_at);
        }
        self.link(slot);
    }

    /// Removes a resting order from its level, the index and the slab.
    fn remove(&mut self, slot: u32) {
        let id = self.orders[slot as usize].order.id;
        self.unlink(slot);
        self.index.remove(id);
        self.free_slot(slot);
    }

    fn free_slot(&mut self, slot: u32) {
        let entry = &mut self.orders[slot as usize];
        assert_eq!(entry.level, NIL, "unlinked before freed");
        entry.order = ORDER_EMPTY;
        entry.prev = NIL;
        entry.next = self.orders_free;
        self.orders_free = slot;
        self.orders_count -= 1;
    }

    /// Appends the order in `slot` to the tail of the level at its price, creating the level.
    fn link(&mut self, slot: u32) {
        let order = self.orders[slot as usize].order;
        let level_index = match self.ladder(order.side).search(order.price) {
            Ok(position) => self.ladder(order.side).levels[position],
            Err(position) => {
                let level_index = self.levels_free;
                assert_ne!(level_index, NIL, "capacity is checked before matching");
                let level = &mut self.levels[level_index as usize];
                self.levels_free = level.head;
                *level = Level {
                    price: order.price,
                    quantity: 0,
                    count: 0,
                    head: NIL,
                    tail: NIL,
                    side: order.side,
                    active: true,
                };
                self.levels_count += 1;
                let ladder = self.ladder_mut(order.side);
                assert!(ladder.prices.len() < ladder.prices.capacity());
                ladder.prices.insert(position, order.price);
                ladder.levels.insert(position, level_index);
                level_index
            }
        };
        let level = &mut self.levels[level_index as usize];
        let tail = level.tail;
        level.tail = slot;
        if tail == NIL {
            level.head = slot;
        }
        level.count += 1;
        level.quantity += u128::from(order.remaining());
        if tail != NIL {
            self.orders[tail as usize].next = slot;
        }
        let entry = &mut self.orders[slot as usize];
        entry.level = level_index;
        entry.prev = tail;
        entry.next = NIL;
    }

    /// Takes the order in `slot` out of its level's queue, freeing the level when it empties.
    fn unlink(&mut self, slot: u32) {
        let Slot {
            order,
            level: level_index,
            prev,
            next,
        } = self.orders[slot as usize];
        assert_ne!(level_index, NIL);
        if prev != NIL {
            self.orders[prev as usize].next = next;
        }
        if next != NIL {
            self.orders[next as usize].prev = prev;
        }
        let entry = &mut self.orders[slot as usize];
        entry.level = NIL;
        entry.prev = NIL;
        entry.next = NIL;
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
            assert_eq!(level.head, NIL);
            level.active = false;
            level.head = self.levels_free;
            self.levels_free = level_index;
            self.levels_count -= 1;
            let ladder = self.ladder_mut(order.side);
            let position = ladder
                .search(order.price)
                .expect("active levels are in the ladder");
            ladder.prices.remove(position);
            ladder.levels.remove(position);
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
    fn ladders_keep_the_best_price_last() {
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
        assert_eq!(book.bids.prices, vec![10, 11, 12]);
        assert_eq!(book.asks.prices, vec![20, 15]);
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
