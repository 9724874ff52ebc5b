//! The order book against a naive model (a `BTreeMap` of `VecDeque` queues per side), compared
//! after every command of seeded random order flows, plus one test per order type and
//! self-trade mode, and a zero-allocation test of the steady state.
//!
//! The allocation count (allocation-counter) is per thread: other test threads running at the
//! same time never show up in the zero-allocation test's measurement.

use std::collections::{BTreeMap, VecDeque};

use clearline_engine::book::{Book, BookEvent, Execution, RestingOrder};
use clearline_engine::market::Market;
use clearline_engine::order::{amended_price_and_quantity, check_amend, check_order};
use clearline_engine::order::{BookLevel, Order, OrderAmend};
use clearline_engine::order::{OrderState, OrderStatus, SelfTrade, Side, TimeInForce};
use clearline_test_support::Rng;

const LOT: u64 = 10;
const TICK: u64 = 5;

fn market() -> Market {
    Market {
        id: 7,
        base_ledger: 1,
        quote_ledger: 2,
        lot_size: LOT,
        tick_size: TICK,
        maker_fee: 1,
        taker_fee: 3,
        code: 1,
        ..Market::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug)]
struct Model {
    market: Market,
    orders_max: usize,
    levels_max: usize,
    bids: BTreeMap<u64, VecDeque<RestingOrder>>,
    asks: BTreeMap<u64, VecDeque<RestingOrder>>,
}

/// What the model expects of one event, in the book's terms.
type Events = Vec<BookEvent>;

impl Model {
    fn new(market: Market, orders_max: usize, levels_max: usize) -> Model {
        Model {
            market,
            orders_max,
            levels_max,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
        }
    }

    fn side(&mut self, side: Side) -> &mut BTreeMap<u64, VecDeque<RestingOrder>> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn orders_count(&self) -> usize {
        self.bids
            .values()
            .chain(self.asks.values())
            .map(VecDeque::len)
            .sum()
    }

    fn levels_count(&self) -> usize {
        self.bids.len() + self.asks.len()
    }

    fn find(&self, id: u128) -> Option<RestingOrder> {
        self.bids
            .values()
            .chain(self.asks.values())
            .flatten()
            .find(|o| o.id == id)
            .copied()
    }

    fn take_out(&mut self, id: u128) -> Option<RestingOrder> {
        for side in [Side::Buy, Side::Sell] {
            let book = self.side(side);
            let mut emptied = None;
            let mut found = None;
            for (price, queue) in book.iter_mut() {
                if let Some(position) = queue.iter().position(|o| o.id == id) {
                    found = queue.remove(position);
                    if queue.is_empty() {
                        emptied = Some(*price);
                    }
                    break;
                }
            }
            if let Some(price) = emptied {
                book.remove(&price);
            }
            if found.is_some() {
                return found;
            }
        }
        None
    }

    fn best_opposite(&self, side: Side) -> Option<u64> {
        match side {
            Side::Buy => self.asks.keys().next().copied(),
            Side::Sell => self.bids.keys().next_back().copied(),
        }
    }

    fn crosses(side: Side, limit: u64, price: u64) -> bool {
        match side {
            Side::Buy => price <= limit,
            Side::Sell => price >= limit,
        }
    }

    /// Matches a taker; returns (remaining, stopped by self-trade prevention).
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        id: u128,
        owner: u128,
        side: Side,
        limit: u64,
        mut remaining: u64,
        mut budget: Option<u128>,
        self_trade: SelfTrade,
        execution: &mut Execution,
        events: &mut Events,
    ) -> (u64, bool) {
        let market = self.market;
        while remaining > 0 {
            let Some(price) = self.best_opposite(side) else {
                break;
            };
            if !Model::crosses(side, limit, price) {
                break;
            }
            let queue = self.side(side.opposite()).get_mut(&price).unwrap();
            while remaining > 0 && !queue.is_empty() {
                let maker = queue[0];
                if maker.base_account_id == owner {
                    queue.pop_front();
                    match self_trade {
                        SelfTrade::CancelIncoming => {
                            queue.push_front(maker);
                            return (remaining, true);
                        }
                        SelfTrade::CancelResting => {
                            events.push(BookEvent::SelfTradeCanceled(maker));
                            execution.self_trade_cancels += 1;
                            continue;
                        }
                        SelfTrade::CancelBoth => {
                            events.push(BookEvent::SelfTradeCanceled(maker));
                            execution.self_trade_cancels += 1;
                            if queue.is_empty() {
                                self.side(side.opposite()).remove(&price);
                            }
                            return (remaining, true);
                        }
                    }
                }
                let mut quantity = remaining.min(maker.remaining());
                let per_lot = u128::from(price) + u128::from(market.taker_fee);
                if let Some(left) = budget {
                    let lots = (left / per_lot).min(u128::from(u64::MAX / LOT)) as u64;
                    quantity = quantity.min(lots * LOT);
                    if quantity == 0 {
                        if queue.is_empty() {
                            self.side(side.opposite()).remove(&price);
                        }
                        return (remaining, false);
                    }
                }
                let lots = quantity / LOT;
                if let Some(left) = budget.as_mut() {
                    *left -= per_lot * u128::from(lots);
                }
                remaining -= quantity;
                queue[0].filled_quantity += quantity;
                let maker_after = queue[0];
                if maker_after.remaining() == 0 {
                    queue.pop_front();
                }
                execution.filled_quantity += quantity;
                execution.quote_traded += u128::from(price) * u128::from(lots);
                execution.taker_fees += u128::from(market.taker_fee * lots);
                execution.fill_count += 1;
                events.push(BookEvent::Fill(clearline_engine::book::BookFill {
                    taker_order_id: id,
                    taker_side: side,
                    maker: maker_after,
                    price,
                    quantity,
                    quote_amount: u128::from(price) * u128::from(lots),
                    taker_fee: market.taker_fee * lots,
                    maker_fee: market.maker_fee * lots,
                }));
            }
            if queue.is_empty() {
                self.side(side.opposite()).remove(&price);
            }
        }
        (remaining, false)
    }

    fn rest(&mut self, order: RestingOrder) {
        self.side(order.side)
            .entry(order.price)
            .or_default()
            .push_back(order);
    }

    fn place(&mut self, order: &Order, expires_at: u64, events: &mut Events) -> Execution {
        if let Some(status) = check_order(order, &self.market) {
            return Execution::rejected(status);
        }
        if self.find(order.id).is_some() {
            return Execution::rejected(OrderStatus::Exists);
        }
        let side = Side::from_u8(order.side).unwrap();
        let time_in_force = TimeInForce::from_u8(order.time_in_force).unwrap();
        let self_trade = SelfTrade::from_u8(order.self_trade).unwrap();
        let (limit, budget) = match (time_in_force, side) {
            (TimeInForce::Market, Side::Buy) => (u64::MAX, Some(u128::from(order.quote_budget))),
            (TimeInForce::Market, Side::Sell) => (0, None),
            _ => (order.price, None),
        };
        if time_in_force == TimeInForce::PostOnly
            && self
                .best_opposite(side)
                .is_some_and(|p| Model::crosses(side, limit, p))
        {
            return Execution::rejected(OrderStatus::PostOnlyWouldTake);
        }
        let run = |model: &mut Model, execution: &mut Execution, events: &mut Events| {
            model.take(
                order.id,
                order.base_account_id,
                side,
                limit,
                order.quantity,
                budget,
                self_trade,
                execution,
                events,
            )
        };
        if time_in_force == TimeInForce::FillOrKill {
            let (remaining, _) = run(
                &mut self.clone(),
                &mut Execution::accepted(),
                &mut Vec::new(),
            );
            if remaining > 0 {
                return Execution::rejected(OrderStatus::FillOrKillNotFilled);
            }
        }
        if time_in_force.may_rest() {
            let slot_short = self.orders_count() == self.orders_max;
            let level_short = self.levels_count() == self.levels_max
                && !self.side(side).contains_key(&order.price);
            if slot_short || level_short {
                let (remaining, stopped) = run(
                    &mut self.clone(),
                    &mut Execution::accepted(),
                    &mut Vec::new(),
                );
                if remaining > 0 && !stopped {
                    return Execution::rejected(if slot_short {
                        OrderStatus::OrdersCapacityExceeded
                    } else {
                        OrderStatus::BookLevelsCapacityExceeded
                    });
                }
            }
        }
        let mut execution = Execution::accepted();
        let (remaining, stopped) = run(self, &mut execution, events);
        execution.remaining = remaining;
        execution.state = Some(if stopped {
            OrderState::Canceled
        } else if remaining == 0 {
            OrderState::Filled
        } else if time_in_force.may_rest() {
            self.rest(RestingOrder {
                id: order.id,
                base_account_id: order.base_account_id,
                quote_account_id: order.quote_account_id,
                price: order.price,
                quantity: order.quantity,
                filled_quantity: order.quantity - remaining,
                expires_at,
                side,
                time_in_force,
                self_trade,
            });
            OrderState::Resting
        } else {
            OrderState::Done
        });
        execution
    }

    fn amend(&mut self, amend: &OrderAmend, events: &mut Events) -> Execution {
        if let Some(status) = check_amend(amend) {
            return Execution::rejected(status);
        }
        let Some(before) = self.find(amend.order_id) else {
            return Execution::rejected(OrderStatus::OrderNotFound);
        };
        let current = (before.price, before.quantity, before.filled_quantity);
        let (price, quantity) = match amended_price_and_quantity(amend, &market(), current) {
            Ok(amended) => amended,
            Err(status) => return Execution::rejected(status),
        };
        let mut execution = Execution::accepted();
        execution.state = Some(OrderState::Resting);
        execution.remaining = quantity - before.filled_quantity;
        if price == before.price {
            let queue = self.side(before.side).get_mut(&price).unwrap();
            let position = queue.iter().position(|o| o.id == before.id).unwrap();
            if quantity <= before.quantity {
                queue[position].quantity = quantity;
            } else {
                let mut order = queue.remove(position).unwrap();
                order.quantity = quantity;
                queue.push_back(order);
            }
            return execution;
        }
        let side = before.side;
        if before.time_in_force == TimeInForce::PostOnly
            && self
                .best_opposite(side)
                .is_some_and(|p| Model::crosses(side, price, p))
        {
            return Execution::rejected(OrderStatus::PostOnlyWouldTake);
        }
        let remaining = quantity - before.filled_quantity;
        let run = |model: &mut Model, execution: &mut Execution, events: &mut Events| {
            model.take(
                before.id,
                before.base_account_id,
                side,
                price,
                remaining,
                None,
                before.self_trade,
                execution,
                events,
            )
        };
        let old_level_count = self.side(side)[&before.price].len();
        let level_short = self.levels_count() == self.levels_max
            && old_level_count > 1
            && !self.side(side).contains_key(&price);
        if level_short {
            let mut dry = self.clone();
            dry.take_out(before.id);
            let (left, stopped) = run(&mut dry, &mut Execution::accepted(), &mut Vec::new());
            if left > 0 && !stopped {
                return Execution::rejected(OrderStatus::BookLevelsCapacityExceeded);
            }
        }
        self.take_out(before.id);
        let (left, stopped) = run(self, &mut execution, events);
        execution.remaining = left;
        if stopped {
            execution.state = Some(OrderState::Canceled);
        } else if left == 0 {
            execution.state = Some(OrderState::Filled);
        } else {
            let mut order = before;
            order.price = price;
            order.quantity = quantity;
            order.filled_quantity = quantity - left;
            self.rest(order);
        }
        execution
    }

    fn expire(&mut self, now: u64, limit: u32) -> Vec<RestingOrder> {
        let mut due: Vec<RestingOrder> = self
            .bids
            .values()
            .chain(self.asks.values())
            .flatten()
            .filter(|o| o.expires_at != 0 && o.expires_at <= now)
            .copied()
            .collect();
        due.sort_by_key(|o| (o.expires_at, o.id));
        due.truncate(limit as usize);
        for order in &due {
            self.take_out(order.id);
        }
        due
    }

    fn resting(&self, side: Side) -> Vec<RestingOrder> {
        match side {
            Side::Buy => self.bids.values().rev().flatten().copied().collect(),
            Side::Sell => self.asks.values().flatten().copied().collect(),
        }
    }

    fn depth(&self, depth: usize) -> Vec<BookLevel> {
        let level = |side: Side, (price, queue): (&u64, &VecDeque<RestingOrder>)| BookLevel {
            price: *price,
            quantity: queue.iter().map(RestingOrder::remaining).sum(),
            order_count: queue.len() as u32,
            side: side as u8,
            reserved: [0; 11],
        };
        let bids = self
            .bids
            .iter()
            .rev()
            .take(depth)
            .map(|entry| level(Side::Buy, entry));
        let asks = self
            .asks
            .iter()
            .take(depth)
            .map(|entry| level(Side::Sell, entry));
        bids.chain(asks).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Random order flows.

#[derive(Clone, Copy, Debug)]
enum Command {
    Place(Order, u64),
    Cancel(u128),
    Amend(OrderAmend),
    Expire(u64, u32),
}

struct Flow {
    rng: Rng,
    next_id: u128,
    now: u64,
    owners: u64,
    invalid_percent: u64,
}

impl Flow {
    fn new(seed: u64, owners: u64) -> Flow {
        Flow {
            rng: Rng::new(seed),
            next_id: 1,
            now: 1_000,
            owners,
            invalid_percent: 2,
        }
    }

    /// An id that was placed recently (it may have left the book since) or, rarely, never used.
    fn known_id(&mut self) -> u128 {
        if self.rng.below(50) == 0 {
            return self.next_id + 1_000_000;
        }
        let window = self.next_id.min(200) as u64;
        self.next_id - 1 - u128::from(self.rng.below(window.max(1)))
    }

    fn command(&mut self) -> Command {
        self.now += 1 + self.rng.below(3);
        let roll = self.rng.below(100);
        if roll < 55 {
            Command::Place(self.order(), self.now)
        } else if roll < 70 {
            Command::Cancel(self.known_id())
        } else if roll < 95 {
            let price = if self.rng.below(3) == 0 {
                0
            } else {
                (180 + self.rng.below(41)) * TICK
            };
            let quantity = if self.rng.below(3) == 0 {
                0
            } else {
                (1 + self.rng.below(12)) * LOT
            };
            let mut amend = OrderAmend {
                order_id: self.known_id(),
                price,
                quantity,
                ..Default::default()
            };
            if self.rng.below(100) < self.invalid_percent {
                amend.price += 1;
            }
            Command::Amend(amend)
        } else {
            Command::Expire(self.now, 1 + self.rng.below(4) as u32)
        }
    }

    fn order(&mut self) -> Order {
        let id = self.next_id;
        self.next_id += 1;
        let side = 1 + self.rng.below(2) as u8;
        let time_in_force = match self.rng.below(20) {
            0..=9 => 1,
            10..=12 => 2,
            13..=14 => 3,
            15..=17 => 4,
            _ => 5,
        };
        let owner = 1 + u128::from(self.rng.below(self.owners));
        let mut order = Order {
            id,
            market: 7,
            base_account_id: owner,
            quote_account_id: 1_000 + owner,
            price: (190 + self.rng.below(21)) * TICK,
            quantity: (1 + self.rng.below(10)) * LOT,
            side,
            time_in_force,
            self_trade: self.rng.below(3) as u8,
            ..Order::default()
        };
        if time_in_force == 5 {
            order.price = 0;
            if side == 1 {
                order.quote_budget = self.rng.below(20_000);
            }
        }
        if time_in_force == 1 || time_in_force == 4 {
            order.timeout = if self.rng.below(4) == 0 {
                1 + self.rng.below(60) as u32
            } else {
                0
            };
        }
        if self.rng.below(100) < self.invalid_percent {
            match self.rng.below(4) {
                0 => order.side = 9,
                1 => order.quantity += 1,
                2 => order.price += 1,
                _ => order.state = 1,
            }
        }
        order
    }
}

fn expires_at(order: &Order, now: u64) -> u64 {
    if order.timeout == 0 {
        0
    } else {
        now + u64::from(order.timeout)
    }
}

fn compare(book: &Book, model: &Model, context: &dyn Fn() -> String) {
    book.verify();
    for side in [Side::Buy, Side::Sell] {
        let mut resting = Vec::with_capacity(book.orders_max() as usize);
        book.resting(side, &mut resting);
        assert_eq!(
            resting,
            model.resting(side),
            "{side:?} resting; {}",
            context()
        );
        for order in &resting {
            assert!(order.filled_quantity < order.quantity, "{}", context());
        }
    }
    let mut levels = Vec::with_capacity(2 * book.levels_max() as usize);
    book.depth(u32::MAX, &mut levels);
    assert_eq!(levels, model.depth(usize::MAX), "depth; {}", context());
    assert_eq!(
        book.orders_count() as usize,
        model.orders_count(),
        "{}",
        context()
    );
    assert_eq!(
        book.levels_count() as usize,
        model.levels_count(),
        "{}",
        context()
    );
    if let (Some(bid), Some(ask)) = (book.best_bid(), book.best_ask()) {
        assert!(bid < ask, "crossed; {}", context());
    }
}

fn run_flow(
    seed: u64,
    commands: usize,
    (orders_max, levels_max): (u32, u32),
    owners: u64,
    required: &[&str],
) {
    let mut book = Book::new(&market(), orders_max, levels_max);
    let mut model = Model::new(market(), orders_max as usize, levels_max as usize);
    let mut flow = Flow::new(seed, owners);
    let mut events = Vec::with_capacity(orders_max as usize);
    let mut expected = Vec::new();
    let mut expired = Vec::with_capacity(16);
    let mut statuses = BTreeMap::new();
    for step in 0..commands {
        let command = flow.command();
        let context = || format!("seed {seed} step {step} command {command:?}");
        events.clear();
        expected.clear();
        match command {
            Command::Place(order, now) => {
                let at = expires_at(&order, now);
                let got = book.place(&order, at, &mut events);
                let want = model.place(&order, at, &mut expected);
                assert_eq!(got, want, "{}", context());
                *statuses.entry(got.status.name()).or_insert(0u32) += 1;
                if let Some(state) = got.state {
                    *statuses.entry(state_name(state)).or_insert(0u32) += 1;
                }
            }
            Command::Cancel(id) => {
                let want = model.take_out(id);
                assert_eq!(book.cancel(id), want, "{}", context());
            }
            Command::Amend(amend) => {
                let before = model.find(amend.order_id);
                let got = book.amend(&amend, &mut events);
                let want = model.amend(&amend, &mut expected);
                assert_eq!(got.execution, want, "{}", context());
                if got.execution.status != OrderStatus::OrderIdMustNotBeZero
                    && got.execution.status != OrderStatus::ReservedField
                {
                    assert_eq!(got.before, before, "{}", context());
                }
                *statuses.entry("amend").or_insert(0u32) += 1;
            }
            Command::Expire(now, limit) => {
                expired.clear();
                let count = book.expire(now, limit, &mut expired);
                assert_eq!(count as usize, expired.len());
                assert_eq!(expired, model.expire(now, limit), "{}", context());
                *statuses.entry("expired").or_insert(0u32) += count;
            }
        }
        assert_eq!(events, expected, "events; {}", context());
        for event in &events {
            if let BookEvent::Fill(fill) = event {
                assert!(
                    fill.maker.filled_quantity <= fill.maker.quantity,
                    "{}",
                    context()
                );
                assert!(
                    fill.quantity > 0 && fill.quantity % LOT == 0,
                    "{}",
                    context()
                );
            }
        }
        compare(&book, &model, &context);
    }
    // The flow must reach the interesting paths, or the comparison proves little.
    let common = [
        "ok", "resting", "filled", "canceled", "done", "amend", "expired",
    ];
    for name in common.iter().chain(required) {
        let count = statuses.get(name).copied().unwrap_or(0);
        assert!(count > 0, "seed {seed}: no {name}");
    }
}

fn state_name(state: OrderState) -> &'static str {
    match state {
        OrderState::Resting => "resting",
        OrderState::Filled => "filled",
        OrderState::Canceled => "canceled",
        OrderState::Expired => "expired_state",
        OrderState::Done => "done",
    }
}

#[test]
fn random_flows_match_the_model() {
    for seed in 1..=12u64 {
        let required = [
            "post_only_would_take",
            "fill_or_kill_not_filled",
            "side_invalid",
        ];
        run_flow(seed, 2_000, (256, 64), 6, &required);
    }
}

#[test]
fn random_flows_at_capacity_match_the_model() {
    for seed in 100..=105u64 {
        run_flow(seed, 2_000, (12, 32), 4, &["orders_capacity_exceeded"]);
    }
    for seed in 106..=111u64 {
        run_flow(seed, 2_000, (64, 6), 4, &["book_levels_capacity_exceeded"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

struct Scenario {
    book: Book,
    events: Vec<BookEvent>,
}

impl Scenario {
    fn new() -> Scenario {
        Scenario {
            book: Book::new(&market(), 64, 32),
            events: Vec::with_capacity(64),
        }
    }

    fn place(&mut self, order: Order) -> Execution {
        self.events.clear();
        let execution = self.book.place(&order, 0, &mut self.events);
        self.book.verify();
        execution
    }

    fn fills(&self) -> Vec<(u128, u64, u64)> {
        let fills = self.events.iter().filter_map(|event| match event {
            BookEvent::Fill(fill) => Some((fill.maker.id, fill.price, fill.quantity)),
            BookEvent::SelfTradeCanceled(_) => None,
        });
        fills.collect()
    }

    fn canceled(&self) -> Vec<u128> {
        let canceled = self.events.iter().filter_map(|event| match event {
            BookEvent::SelfTradeCanceled(order) => Some(order.id),
            BookEvent::Fill(_) => None,
        });
        canceled.collect()
    }
}

fn order(id: u128, owner: u128, side: Side, tif: TimeInForce, price: u64, quantity: u64) -> Order {
    Order {
        id,
        market: 7,
        base_account_id: owner,
        quote_account_id: 1_000 + owner,
        price,
        quantity,
        side: side as u8,
        time_in_force: tif as u8,
        ..Order::default()
    }
}

fn gtc(id: u128, owner: u128, side: Side, price: u64, quantity: u64) -> Order {
    order(
        id,
        owner,
        side,
        TimeInForce::GoodTillCancel,
        price,
        quantity,
    )
}

/// Asks: 1 @ 100 x 20, 2 @ 100 x 30, 3 @ 105 x 40 (owners 1, 2, 3).
fn with_asks() -> Scenario {
    let mut s = Scenario::new();
    for (id, price, quantity) in [(1, 100, 20), (2, 100, 30), (3, 105, 40)] {
        let execution = s.place(gtc(id, id, Side::Sell, price, quantity));
        assert_eq!(execution.state, Some(OrderState::Resting));
    }
    s
}

#[test]
fn gtc_partial_fill_rests_the_remainder_with_price_improvement() {
    let mut s = with_asks();
    let execution = s.place(gtc(10, 9, Side::Buy, 110, 100));
    assert_eq!(s.fills(), vec![(1, 100, 20), (2, 100, 30), (3, 105, 40)]);
    assert_eq!(execution.state, Some(OrderState::Resting));
    assert_eq!(execution.filled_quantity, 90);
    // Price improvement: the taker's limit is 110 but it pays the makers' prices.
    assert_eq!(execution.quote_traded, 100 * 2 + 100 * 3 + 105 * 4);
    assert_eq!(execution.taker_fees, 3 * 9);
    assert_eq!(execution.fill_count, 3);
    assert_eq!(execution.remaining, 10);
    let rest = s.book.order(10).unwrap();
    assert_eq!((rest.price, rest.filled_quantity), (110, 90));
    assert_eq!((s.book.best_bid(), s.book.best_ask()), (Some(110), None));
}

#[test]
fn gtc_partly_fills_a_maker_and_keeps_its_priority() {
    let mut s = with_asks();
    let execution = s.place(gtc(10, 9, Side::Buy, 100, 10));
    assert_eq!(execution.state, Some(OrderState::Filled));
    assert_eq!(s.fills(), vec![(1, 100, 10)]);
    let mut asks = Vec::with_capacity(8);
    s.book.resting(Side::Sell, &mut asks);
    let ids: Vec<u128> = asks.iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(asks[0].filled_quantity, 10);
}

#[test]
fn ioc_releases_the_remainder() {
    let mut s = with_asks();
    let execution = s.place(order(
        10,
        9,
        Side::Buy,
        TimeInForce::ImmediateOrCancel,
        100,
        80,
    ));
    assert_eq!(s.fills(), vec![(1, 100, 20), (2, 100, 30)]);
    assert_eq!(execution.state, Some(OrderState::Done));
    assert_eq!(execution.remaining, 30);
    assert_eq!(s.book.order(10), None);
    assert_eq!(s.book.best_ask(), Some(105));
}

#[test]
fn fill_or_kill_fills_whole_or_changes_nothing() {
    let mut s = with_asks();
    let execution = s.place(order(10, 9, Side::Buy, TimeInForce::FillOrKill, 100, 60));
    assert_eq!(execution.status, OrderStatus::FillOrKillNotFilled);
    assert!(s.events.is_empty());
    assert_eq!(s.book.orders_count(), 3);
    let execution = s.place(order(11, 9, Side::Buy, TimeInForce::FillOrKill, 105, 60));
    assert_eq!(execution.status, OrderStatus::Ok);
    assert_eq!(execution.state, Some(OrderState::Filled));
    assert_eq!(s.fills(), vec![(1, 100, 20), (2, 100, 30), (3, 105, 10)]);
}

#[test]
fn post_only_rests_or_is_rejected_when_it_would_take() {
    let mut s = with_asks();
    let execution = s.place(order(10, 9, Side::Buy, TimeInForce::PostOnly, 100, 10));
    assert_eq!(execution.status, OrderStatus::PostOnlyWouldTake);
    assert_eq!(s.book.orders_count(), 3);
    let execution = s.place(order(11, 9, Side::Buy, TimeInForce::PostOnly, 95, 10));
    assert_eq!(execution.state, Some(OrderState::Resting));
    assert_eq!(s.book.best_bid(), Some(95));
}

#[test]
fn market_sell_takes_any_price_and_market_buy_stops_at_its_budget() {
    let mut s = Scenario::new();
    s.place(gtc(1, 1, Side::Buy, 100, 20));
    s.place(gtc(2, 2, Side::Buy, 50, 20));
    let execution = s.place(order(3, 9, Side::Sell, TimeInForce::Market, 0, 50));
    assert_eq!(s.fills(), vec![(1, 100, 20), (2, 50, 20)]);
    assert_eq!(
        (execution.state, execution.remaining),
        (Some(OrderState::Done), 10)
    );

    let mut s = with_asks();
    // A lot at 100 costs 100 + taker fee 3 = 103: 512 buys 4 lots at 100 (412), leaving 100,
    // which is less than a lot at 105 + 3.
    let mut buy = order(10, 9, Side::Buy, TimeInForce::Market, 0, 1_000);
    buy.quote_budget = 512;
    let execution = s.place(buy);
    assert_eq!(s.fills(), vec![(1, 100, 20), (2, 100, 20)]);
    assert_eq!(execution.quote_traded + execution.taker_fees, 412);
    assert_eq!(
        (execution.state, execution.remaining),
        (Some(OrderState::Done), 960)
    );
    // 108 more buys exactly one lot at 100 (the rest of order 2 is 10 = one lot).
    let mut buy = order(11, 9, Side::Buy, TimeInForce::Market, 0, 1_000);
    buy.quote_budget = 103 + 108;
    s.place(buy);
    assert_eq!(s.fills(), vec![(2, 100, 10), (3, 105, 10)]);
}

/// Owner 2 buys 90 up to 105 against `with_asks`, where its own order 2 rests second at 100.
fn self_trade_buy(mode: SelfTrade) -> (Scenario, Execution) {
    let mut s = with_asks();
    let mut taker = gtc(10, 2, Side::Buy, 105, 90);
    taker.self_trade = mode as u8;
    let execution = s.place(taker);
    (s, execution)
}

#[test]
fn self_trade_cancel_incoming_stops_before_the_own_order() {
    let (s, execution) = self_trade_buy(SelfTrade::CancelIncoming);
    assert_eq!(s.fills(), vec![(1, 100, 20)]);
    assert!(s.canceled().is_empty());
    assert_eq!(execution.state, Some(OrderState::Canceled));
    assert_eq!(execution.remaining, 70);
    assert_eq!(s.book.order(2).unwrap().filled_quantity, 0);
    assert_eq!(s.book.order(10), None);
}

#[test]
fn self_trade_cancel_resting_removes_the_own_order_and_keeps_matching() {
    let (s, execution) = self_trade_buy(SelfTrade::CancelResting);
    assert_eq!(s.fills(), vec![(1, 100, 20), (3, 105, 40)]);
    assert_eq!(s.canceled(), vec![2]);
    assert_eq!(execution.state, Some(OrderState::Resting));
    assert_eq!(execution.self_trade_cancels, 1);
    assert_eq!(s.book.order(10).unwrap().remaining(), 30);
    assert_eq!(s.book.order(2), None);
}

#[test]
fn self_trade_cancel_both_removes_both() {
    let (s, execution) = self_trade_buy(SelfTrade::CancelBoth);
    assert_eq!(s.fills(), vec![(1, 100, 20)]);
    assert_eq!(s.canceled(), vec![2]);
    assert_eq!(execution.state, Some(OrderState::Canceled));
    assert_eq!((s.book.order(2), s.book.order(10)), (None, None));
    assert_eq!(s.book.best_ask(), Some(105));
}

/// An amend of order `id` to `price` and total `quantity` (0 keeps either).
fn amend(id: u128, price: u64, quantity: u64) -> OrderAmend {
    OrderAmend {
        order_id: id,
        price,
        quantity,
        ..OrderAmend::default()
    }
}

#[test]
fn amend_quantity_down_keeps_priority_and_up_or_price_loses_it() {
    let mut s = with_asks();
    s.place(gtc(4, 4, Side::Sell, 100, 30));
    let ids = |s: &Scenario| {
        let mut asks = Vec::with_capacity(8);
        s.book.resting(Side::Sell, &mut asks);
        asks.iter()
            .map(|o| (o.id, o.price, o.quantity))
            .collect::<Vec<_>>()
    };
    let outcome = s.book.amend(&amend(1, 0, 10), &mut s.events);
    assert_eq!(outcome.execution.status, OrderStatus::Ok);
    assert_eq!(
        ids(&s),
        vec![(1, 100, 10), (2, 100, 30), (4, 100, 30), (3, 105, 40)]
    );
    s.book.amend(&amend(2, 0, 40), &mut s.events);
    assert_eq!(
        ids(&s),
        vec![(1, 100, 10), (4, 100, 30), (2, 100, 40), (3, 105, 40)]
    );
    s.book.amend(&amend(1, 105, 0), &mut s.events);
    assert_eq!(
        ids(&s),
        vec![(4, 100, 30), (2, 100, 40), (3, 105, 40), (1, 105, 10)]
    );
    let outcome = s.book.amend(&amend(9, 105, 0), &mut s.events);
    assert_eq!(outcome.execution.status, OrderStatus::OrderNotFound);
    s.book.verify();
}

#[test]
fn amend_of_a_partly_filled_order_counts_the_filled_quantity() {
    let mut s = with_asks();
    s.place(gtc(10, 9, Side::Buy, 100, 10));
    s.place(gtc(11, 8, Side::Buy, 95, 50));
    assert_eq!(s.book.order(1).unwrap().filled_quantity, 10);
    let outcome = s.book.amend(&amend(1, 0, 10), &mut s.events);
    assert_eq!(
        outcome.execution.status,
        OrderStatus::AmendQuantityBelowFilled
    );
    let outcome = s.book.amend(&amend(1, 0, 30), &mut s.events);
    assert_eq!(outcome.execution.remaining, 20);
    assert_eq!(outcome.before.unwrap().quantity, 20);
    // Re-priced across the spread, the amended order takes all 50 of bid 11, then rests 10.
    s.events.clear();
    let outcome = s.book.amend(&amend(1, 95, 70), &mut s.events);
    assert_eq!(outcome.execution.state, Some(OrderState::Resting));
    assert_eq!(
        (
            outcome.execution.filled_quantity,
            outcome.execution.remaining
        ),
        (50, 10)
    );
    assert_eq!(s.fills(), vec![(11, 95, 50)]);
    let after = s.book.order(1).unwrap();
    assert_eq!(
        (after.price, after.quantity, after.filled_quantity),
        (95, 70, 60)
    );
    assert_eq!((s.book.best_bid(), s.book.best_ask()), (None, Some(95)));
    s.book.verify();
}

#[test]
fn cancel_of_a_partly_filled_order_returns_its_remainder() {
    let mut s = with_asks();
    s.place(gtc(10, 9, Side::Buy, 100, 40));
    let canceled = s.book.cancel(2).unwrap();
    assert_eq!((canceled.filled_quantity, canceled.remaining()), (20, 10));
    assert_eq!(s.book.cancel(2), None);
    assert_eq!(s.book.cancel(0), None);
    s.book.verify();
}

#[test]
fn expiry_removes_due_orders_earliest_first() {
    let mut book = Book::new(&market(), 16, 16);
    let mut events = Vec::with_capacity(16);
    for (id, expires_at) in [(1u128, 50u64), (2, 30), (3, 0), (4, 30), (5, 90)] {
        let order = gtc(id, id, Side::Sell, 100 + 5 * id as u64, 10);
        book.place(&order, expires_at, &mut events);
    }
    let mut expired = Vec::with_capacity(32);
    assert_eq!(book.expire(29, 8, &mut expired), 0);
    assert_eq!(book.expire(60, 2, &mut expired), 2);
    assert_eq!(book.expire(60, 2, &mut expired), 1);
    let ids: Vec<u128> = expired.iter().map(|o| o.id).collect();
    assert_eq!(ids, vec![2, 4, 1]);
    assert_eq!(book.expire(1_000, 8, &mut expired), 1);
    assert_eq!(book.orders_count(), 1);
    assert!(book.order(3).is_some());
    book.verify();
}

#[test]
fn capacity_is_checked_before_the_book_changes() {
    let mut book = Book::new(&market(), 2, 2);
    let mut events = Vec::with_capacity(16);
    // Places `gtc(id, owner, side, price, 10)`.
    let mut place = |id: u128, owner: u128, side: Side, price: u64| {
        book.place(&gtc(id, owner, side, price, 10), 0, &mut events)
    };
    assert_eq!(place(1, 1, Side::Sell, 100).status, OrderStatus::Ok);
    assert_eq!(place(2, 2, Side::Sell, 105).status, OrderStatus::Ok);
    let full = OrderStatus::OrdersCapacityExceeded;
    assert_eq!(place(3, 3, Side::Buy, 95).status, full);
    // An order that fills completely needs no slot, even in a full book.
    assert_eq!(place(4, 3, Side::Buy, 100).state, Some(OrderState::Filled));
    assert_eq!(place(5, 4, Side::Sell, 110).status, OrderStatus::Ok);
    assert_eq!(place(6, 3, Side::Sell, 115).status, full);
    book.verify();
}

#[test]
fn fill_converts_to_the_wire_record() {
    let mut s = with_asks();
    s.place(gtc(10, 9, Side::Buy, 100, 20));
    let BookEvent::Fill(fill) = s.events[0] else {
        panic!("a fill")
    };
    let wire = fill.fill(7, 42, 1_000);
    assert_eq!((wire.taker_order_id, wire.maker_order_id), (10, 1));
    assert_eq!(
        (wire.price, wire.quantity, wire.quote_amount),
        (100, 20, 200)
    );
    assert_eq!((wire.taker_fee, wire.maker_fee), (6, 2));
    assert_eq!(
        (wire.sequence, wire.market, wire.taker_side, wire.timestamp),
        (42, 7, 1, 1_000)
    );
}

// ---------------------------------------------------------------------------------------------
// Steady state allocates nothing.

#[test]
fn steady_state_allocates_nothing() {
    // The counter works: a fresh vector counts.
    let probe = allocation_counter::measure(|| {
        std::hint::black_box(Vec::<u64>::with_capacity(7));
    });
    assert!(probe.count_total >= 1, "{probe:?}");
    let mut book = Book::new(&market(), 4_096, 1_024);
    let mut events = Vec::with_capacity(4_096);
    let mut expired = Vec::with_capacity(16);
    let mut flow = Flow::new(0xA110C, 200);
    flow.invalid_percent = 1;
    let warm_up: Vec<Command> = (0..2_000).map(|_| flow.command()).collect();
    let workload: Vec<Command> = (0..10_000).map(|_| flow.command()).collect();
    let mut apply = |command: &Command, book: &mut Book| {
        events.clear();
        match *command {
            Command::Place(order, now) => {
                book.place(&order, expires_at(&order, now), &mut events);
            }
            Command::Cancel(id) => {
                book.cancel(id);
            }
            Command::Amend(amend) => {
                book.amend(&amend, &mut events);
            }
            Command::Expire(now, limit) => {
                expired.clear();
                book.expire(now, limit, &mut expired);
            }
        }
    };
    for command in &warm_up {
        apply(command, &mut book);
    }
    let change = allocation_counter::measure(|| {
        for command in &workload {
            apply(command, &mut book);
        }
    });
    assert_eq!(change.count_total, 0, "{change:?}");
    assert!(
        book.orders_count() > 10,
        "the workload keeps orders resting"
    );
    book.verify();
}
