//! The exchange-core order mix: the command flow of exchange-core's single-book benchmark, for
//! one market, from a seed.
//!
//! The flow: about [`PREFILL_ORDERS`] resting orders over about [`PREFILL_LEVELS`] price levels
//! around [`MID_PRICE`], orders from up to [`TRADERS_MAX`] traders, and commands in the
//! proportions 9% good-till-cancel, 3% immediate-or-cancel, 6% cancel and 82% move (an amend to
//! a new price). As in exchange-core's generator, the flow keeps about `PREFILL_ORDERS` orders
//! resting: a cancel drawn while the book is thin becomes a good-till-cancel order, and a
//! good-till-cancel order drawn while it is thick becomes a cancel. Good-till-cancel orders are
//! mostly passive; one in five crosses the best price by a few ticks, and immediate-or-cancel
//! orders take from the best price. A move is mostly passive on its own side; one in fifty goes
//! to the best price of the other side and trades.
//!
//! [`OrderFlow`] draws the commands against its own model of the book (a
//! [`clearline_engine::book::Book`]), so a cancel or a move always names an order that the model
//! has resting, and a crossing price is taken from the model's best bid and ask. It yields typed
//! commands and does not know how they are sent: one at a time ([`OrderFlow::next_command`], as
//! an engine or book benchmark applies them), or in rounds grouped by kind
//! ([`OrderFlow::next_round`], as requests of one operation each). In both the model applies the
//! commands in the order the caller promises to, so it stays equal to the book that receives
//! them, as long as that book's engine accepts every order (traders with funds to hold).
//!
//! The stream for a seed is fixed: benchmark results compare runs over it, so a change here is a
//! change to them. The model allocates at [`OrderFlow::new`], and a round the first time it is
//! larger than any before.

use std::collections::HashMap;

use clearline_engine::book::{Book, BookEvent};
use clearline_engine::order::{Order, OrderAmend, Side, TimeInForce};
use clearline_engine::{Account, Market};

use crate::Rng;

/// The market's id.
pub const MARKET: u32 = 1;
/// The ledger of the base asset.
pub const BASE_LEDGER: u32 = 1;
/// The ledger of the quote asset.
pub const QUOTE_LEDGER: u32 = 2;
/// The market's fee account, on the quote ledger.
pub const FEE_ACCOUNT: u128 = 10_000_001;
/// The market's base escrow account.
pub const BASE_ESCROW: u128 = 10_000_002;
/// The market's quote escrow account.
pub const QUOTE_ESCROW: u128 = 10_000_003;
/// Most traders a flow draws from (exchange-core's benchmark has 1,000 active accounts).
pub const TRADERS_MAX: u64 = 1_000;
/// Trader `t` (1-based) holds base account `t` and quote account `t + QUOTE_ACCOUNT_OFFSET`.
pub const QUOTE_ACCOUNT_OFFSET: u128 = 1_000_000;
/// Passive prices sit within `PRICE_SPREAD` ticks of this one, on their own side.
pub const MID_PRICE: u64 = 100_000;
/// How far from `MID_PRICE` a passive price may be, in ticks.
pub const PRICE_SPREAD: u64 = 375;
/// The prefill covers this many price levels, half on each side.
pub const PREFILL_LEVELS: u64 = 750;
/// Resting orders placed before the commands, and about how many the flow keeps resting.
pub const PREFILL_ORDERS: u64 = 1_000;
/// Capacity of the model's book, and enough for any book that receives the flow: resting
/// orders.
pub const BOOK_ORDERS_MAX: u32 = 1 << 16;
/// Capacity of the model's book: price levels, both sides together.
pub const BOOK_LEVELS_MAX: u32 = 4_096;

/// Percent of commands, by kind, before the thin and thick book adjustments.
pub const GOOD_TILL_CANCEL_PERCENT: u64 = 9;
/// See [`GOOD_TILL_CANCEL_PERCENT`].
pub const IMMEDIATE_OR_CANCEL_PERCENT: u64 = 3;
/// See [`GOOD_TILL_CANCEL_PERCENT`].
pub const CANCEL_PERCENT: u64 = 6;
/// See [`GOOD_TILL_CANCEL_PERCENT`]; the rest of the hundred.
pub const MOVE_PERCENT: u64 =
    100 - GOOD_TILL_CANCEL_PERCENT - IMMEDIATE_OR_CANCEL_PERCENT - CANCEL_PERCENT;

/// The market: lot and tick 1, maker fee 1, taker fee 2, with the fee and escrow accounts.
pub fn market() -> Market {
    Market {
        fee_account_id: FEE_ACCOUNT,
        base_escrow_account_id: BASE_ESCROW,
        quote_escrow_account_id: QUOTE_ESCROW,
        lot_size: 1,
        tick_size: 1,
        maker_fee: 1,
        taker_fee: 2,
        id: MARKET,
        base_ledger: BASE_LEDGER,
        quote_ledger: QUOTE_LEDGER,
        code: 1,
        ..Market::default()
    }
}

/// The market's own accounts, code 1, no flags: fee, base escrow, quote escrow.
pub fn market_accounts() -> [Account; 3] {
    [
        account(FEE_ACCOUNT, QUOTE_LEDGER),
        account(BASE_ESCROW, BASE_LEDGER),
        account(QUOTE_ESCROW, QUOTE_LEDGER),
    ]
}

/// The accounts of traders `1..=traders`, code 1, no flags: every base account, then every
/// quote account.
///
/// # Panics
///
/// If `traders` is above [`TRADERS_MAX`].
pub fn trader_accounts(traders: u64) -> Vec<Account> {
    assert!(traders <= TRADERS_MAX, "{traders} traders");
    let ids = 1..=u128::from(traders);
    let base = ids.clone().map(|id| account(id, BASE_LEDGER));
    let quote = ids.map(|id| account(id + QUOTE_ACCOUNT_OFFSET, QUOTE_LEDGER));
    base.chain(quote).collect()
}

fn account(id: u128, ledger: u32) -> Account {
    Account {
        id,
        ledger,
        code: 1,
        ..Account::default()
    }
}

/// One command of the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderCommand {
    /// A good-till-cancel or immediate-or-cancel limit order.
    Place(Order),
    /// Cancel this resting order.
    Cancel(u128),
    /// A move of a resting order to a new price (quantity unchanged), with the order's side and
    /// unfilled quantity before the move, for books that move by cancel and re-add.
    Amend {
        /// The amend as sent.
        amend: OrderAmend,
        /// The order's side.
        side: Side,
        /// The order's unfilled quantity before the move.
        remaining: u64,
    },
}

/// The commands of one round, by kind, each kind in the order the flow drew it. A round is
/// applied places first, then cancels, then amends: see [`OrderFlow::next_round`].
#[derive(Clone, Debug, Default)]
pub struct OrderRound {
    /// New orders.
    pub places: Vec<Order>,
    /// Cancels.
    pub cancels: Vec<u128>,
    /// Moves.
    pub amends: Vec<OrderAmend>,
}

impl OrderRound {
    /// Commands in the round.
    pub fn len(&self) -> usize {
        self.places.len() + self.cancels.len() + self.amends.len()
    }

    /// True when the round has no command.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the round, keeping its capacity.
    pub fn clear(&mut self) {
        self.places.clear();
        self.cancels.clear();
        self.amends.clear();
    }
}

/// The kind of a command, as rolled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    GoodTillCancel,
    ImmediateOrCancel,
    Cancel,
    Move,
}

/// The seeded flow: the prefill, then commands drawn against a model of the book.
pub struct OrderFlow {
    rng: Rng,
    traders: u64,
    book: Book,
    /// Room for the events of one command (one per resting order at most).
    events: Vec<BookEvent>,
    /// The ids of the orders resting in `book`, for uniform random picks.
    resting: Vec<u128>,
    /// The index in `resting` of each id in it.
    position: HashMap<u128, usize>,
    /// The kinds rolled for the current round, with their side and trader.
    round_kinds: Vec<(Kind, Side, u64)>,
    id_next: u128,
    prefill: Vec<Order>,
}

impl OrderFlow {
    /// The flow for `seed` with orders from traders `1..=traders`, its prefill placed on the
    /// model. Allocates all the model will use.
    ///
    /// # Panics
    ///
    /// If `traders` is 0 or above [`TRADERS_MAX`].
    pub fn new(seed: u64, traders: u64) -> OrderFlow {
        assert!(traders > 0, "a flow needs a trader");
        assert!(traders <= TRADERS_MAX, "{traders} traders");
        let mut flow = OrderFlow {
            rng: Rng::new(seed),
            traders,
            book: Book::new(&market(), BOOK_ORDERS_MAX, BOOK_LEVELS_MAX),
            events: Vec::with_capacity(BOOK_ORDERS_MAX as usize),
            resting: Vec::with_capacity(BOOK_ORDERS_MAX as usize),
            position: HashMap::with_capacity(BOOK_ORDERS_MAX as usize),
            round_kinds: Vec::new(),
            id_next: 1,
            prefill: Vec::with_capacity(PREFILL_ORDERS as usize),
        };
        // A ladder: one order per level on each side, then the rest on random levels.
        for index in 0..PREFILL_ORDERS {
            let side = if index % 2 == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let offset = if index < PREFILL_LEVELS {
                index / 2
            } else {
                flow.rng.below(PREFILL_LEVELS / 2)
            };
            let price = match side {
                Side::Buy => MID_PRICE - 1 - offset,
                Side::Sell => MID_PRICE + 1 + offset,
            };
            let trader = flow.trader();
            let quantity = 1 + flow.rng.below(10);
            let tif = TimeInForce::GoodTillCancel;
            let order = flow.order(trader, side, tif, price, quantity);
            flow.prefill.push(order);
        }
        for index in 0..flow.prefill.len() {
            let order = flow.prefill[index];
            flow.place(&order);
        }
        flow
    }

    /// The orders placed before the commands, all good-till-cancel and none crossing; apply
    /// them in order, before any command.
    pub fn prefill(&self) -> &[Order] {
        &self.prefill
    }

    /// The model: the book after the prefill and every command handed out so far.
    pub fn book(&self) -> &Book {
        &self.book
    }

    /// The next command, applied to the model as it stands: for a caller that applies each
    /// command before the next is drawn.
    pub fn next_command(&mut self) -> OrderCommand {
        loop {
            if let Some(command) = self.draw() {
                match &command {
                    OrderCommand::Place(order) => self.place(order),
                    OrderCommand::Cancel(order_id) => self.cancel(*order_id),
                    OrderCommand::Amend { amend, .. } => self.amend(amend),
                }
                return command;
            }
        }
    }

    /// The next `commands_count` commands as one round (replacing what `round` held), applied
    /// to the model places first, then cancels, then amends. The caller applies them in the same
    /// order (for example one `place_orders`, one `cancel_orders` and one `amend_orders`
    /// request), and then every cancel and amend names an order that rests when it arrives.
    ///
    /// The round first rolls the kind of each command (the thin and thick adjustments count the
    /// round's good-till-cancel orders and cancels so far), then draws the places, the cancels
    /// and the amends, each against the model after the commands applied before it. A cancel
    /// or amend that finds the model's book empty (possible only with very few traders, whose
    /// crossing orders cancel their own resting ones) is dropped, and the round is shorter.
    pub fn next_round(&mut self, commands_count: usize, round: &mut OrderRound) {
        round.clear();
        self.round_kinds.clear();
        let mut resting = self.resting.len() as u64;
        for _ in 0..commands_count {
            let (kind, side, trader) = self.roll(resting);
            match kind {
                Kind::GoodTillCancel => resting += 1,
                Kind::Cancel => resting = resting.saturating_sub(1),
                Kind::ImmediateOrCancel | Kind::Move => {}
            }
            self.round_kinds.push((kind, side, trader));
        }
        for index in 0..self.round_kinds.len() {
            let (kind, side, trader) = self.round_kinds[index];
            if matches!(kind, Kind::GoodTillCancel | Kind::ImmediateOrCancel) {
                let order = self.place_drawn(kind, side, trader);
                self.place(&order);
                round.places.push(order);
            }
        }
        for index in 0..self.round_kinds.len() {
            if self.round_kinds[index].0 == Kind::Cancel && !self.resting.is_empty() {
                let order_id = self.cancel_drawn();
                self.cancel(order_id);
                round.cancels.push(order_id);
            }
        }
        for index in 0..self.round_kinds.len() {
            if self.round_kinds[index].0 == Kind::Move {
                while !self.resting.is_empty() {
                    if let Some(OrderCommand::Amend { amend, .. }) = self.move_drawn() {
                        self.amend(&amend);
                        round.amends.push(amend);
                        break;
                    }
                }
            }
        }
    }

    /// Draws one command against the model without applying it; `None` for a move to the
    /// price the order already has (drawn and dropped). A cancel's order leaves `resting` at
    /// once.
    fn draw(&mut self) -> Option<OrderCommand> {
        let (kind, side, trader) = self.roll(self.resting.len() as u64);
        match kind {
            _ if self.resting.is_empty() => {
                let kind = Kind::GoodTillCancel;
                Some(OrderCommand::Place(self.place_drawn(kind, side, trader)))
            }
            Kind::GoodTillCancel | Kind::ImmediateOrCancel => {
                Some(OrderCommand::Place(self.place_drawn(kind, side, trader)))
            }
            Kind::Cancel => Some(OrderCommand::Cancel(self.cancel_drawn())),
            Kind::Move => self.move_drawn(),
        }
    }

    /// Rolls the kind of the next command, with the side and trader every command draws (used
    /// by places only). `resting` is the number of orders resting, or expected to, for the
    /// thin and thick adjustments.
    fn roll(&mut self, resting: u64) -> (Kind, Side, u64) {
        let roll = self.rng.below(100);
        let side = if self.rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let trader = self.trader();
        let thin = resting < PREFILL_ORDERS * 9 / 10;
        let thick = resting > PREFILL_ORDERS * 11 / 10;
        let good_till_cancel = GOOD_TILL_CANCEL_PERCENT;
        let immediate_or_cancel = good_till_cancel + IMMEDIATE_OR_CANCEL_PERCENT;
        let cancel = immediate_or_cancel + CANCEL_PERCENT;
        let kind = if roll < good_till_cancel {
            if thick {
                Kind::Cancel
            } else {
                Kind::GoodTillCancel
            }
        } else if roll < immediate_or_cancel {
            Kind::ImmediateOrCancel
        } else if roll < cancel {
            if thin {
                Kind::GoodTillCancel
            } else {
                Kind::Cancel
            }
        } else {
            Kind::Move
        };
        (kind, side, trader)
    }

    /// A new order of `kind` (good-till-cancel or immediate-or-cancel).
    fn place_drawn(&mut self, kind: Kind, side: Side, trader: u64) -> Order {
        if kind == Kind::GoodTillCancel {
            let price = if self.rng.below(5) == 0 {
                self.crossing_price(side, 3)
            } else {
                self.passive(side)
            };
            let quantity = 1 + self.rng.below(10);
            let tif = TimeInForce::GoodTillCancel;
            self.order(trader, side, tif, price.max(1), quantity)
        } else {
            assert_eq!(kind, Kind::ImmediateOrCancel);
            let price = self.crossing_price(side, 2);
            let quantity = 1 + self.rng.below(2);
            let tif = TimeInForce::ImmediateOrCancel;
            self.order(trader, side, tif, price.max(1), quantity)
        }
    }

    /// A price for `side` at the other side's best, or up to `ticks - 1` ticks through it.
    fn crossing_price(&mut self, side: Side, ticks: u64) -> u64 {
        match side {
            Side::Buy => self.book.best_ask().unwrap_or(MID_PRICE + 1) + self.rng.below(ticks),
            Side::Sell => {
                let best = self.book.best_bid().unwrap_or(MID_PRICE - 1);
                best.saturating_sub(self.rng.below(ticks))
            }
        }
    }

    /// A resting order to cancel, taken out of `resting`.
    fn cancel_drawn(&mut self) -> u128 {
        let order_id = self.resting[self.rng.below(self.resting.len() as u64) as usize];
        self.unlist(order_id);
        order_id
    }

    /// A move of a resting order; `None` if the price drawn is the one it has.
    fn move_drawn(&mut self) -> Option<OrderCommand> {
        let order_id = self.resting[self.rng.below(self.resting.len() as u64) as usize];
        let order = self.book.order(order_id).expect("listed orders rest");
        let price = if self.rng.below(50) == 0 {
            match order.side {
                Side::Buy => self.book.best_ask().unwrap_or(MID_PRICE + 1),
                Side::Sell => self.book.best_bid().unwrap_or(MID_PRICE - 1),
            }
        } else {
            self.passive(order.side)
        };
        if price == order.price {
            return None;
        }
        let amend = OrderAmend {
            order_id,
            price,
            quantity: 0,
            reserved: [0; 32],
        };
        Some(OrderCommand::Amend {
            amend,
            side: order.side,
            remaining: order.remaining(),
        })
    }

    /// A trader, uniformly.
    fn trader(&mut self) -> u64 {
        1 + self.rng.below(self.traders)
    }

    /// A passive price on `side`: within `PRICE_SPREAD` ticks of the middle, never crossing it.
    fn passive(&mut self, side: Side) -> u64 {
        match side {
            Side::Buy => MID_PRICE - 1 - self.rng.below(PRICE_SPREAD),
            Side::Sell => MID_PRICE + 1 + self.rng.below(PRICE_SPREAD),
        }
    }

    /// A new limit order of `trader` with the next id.
    fn order(&mut self, trader: u64, side: Side, tif: TimeInForce, price: u64, qty: u64) -> Order {
        let id = self.id_next;
        self.id_next += 1;
        Order {
            id,
            market: MARKET,
            base_account_id: u128::from(trader),
            quote_account_id: u128::from(trader) + QUOTE_ACCOUNT_OFFSET,
            price,
            quantity: qty,
            side: side as u8,
            time_in_force: tif as u8,
            self_trade: 1,
            ..Order::default()
        }
    }

    fn place(&mut self, order: &Order) {
        self.events.clear();
        self.book.place(order, 0, &mut self.events);
        self.track(order.id);
        self.track_events();
    }

    fn cancel(&mut self, order_id: u128) {
        self.events.clear();
        self.book.cancel(order_id);
        self.track(order_id);
    }

    fn amend(&mut self, amend: &OrderAmend) {
        self.events.clear();
        self.book.amend(amend, &mut self.events);
        self.track(amend.order_id);
        self.track_events();
    }

    /// Tracks the makers of the last command: filled or canceled by self-trade prevention.
    fn track_events(&mut self) {
        for index in 0..self.events.len() {
            let order_id = match &self.events[index] {
                BookEvent::Fill(fill) => fill.maker.id,
                BookEvent::SelfTradeCanceled(order) => order.id,
            };
            self.track(order_id);
        }
    }

    /// Lists or unlists `order_id` in `resting` to match the model after a command.
    fn track(&mut self, order_id: u128) {
        let in_book = self.book.order(order_id).is_some();
        let listed = self.position.contains_key(&order_id);
        if in_book && !listed {
            self.position.insert(order_id, self.resting.len());
            self.resting.push(order_id);
        } else if !in_book && listed {
            self.unlist(order_id);
        }
    }

    fn unlist(&mut self, order_id: u128) {
        let at = self.position.remove(&order_id).expect("listed");
        self.resting.swap_remove(at);
        if at < self.resting.len() {
            self.position.insert(self.resting[at], at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use clearline_engine::book::{Book, BookEvent};
    use clearline_engine::order::{OrderStatus, TimeInForce};

    use super::{market, OrderCommand, OrderFlow, OrderRound, BOOK_LEVELS_MAX, BOOK_ORDERS_MAX};
    use super::{CANCEL_PERCENT, GOOD_TILL_CANCEL_PERCENT, IMMEDIATE_OR_CANCEL_PERCENT};
    use super::{MOVE_PERCENT, PREFILL_ORDERS, TRADERS_MAX};

    fn commands(seed: u64, count: usize) -> Vec<OrderCommand> {
        let mut flow = OrderFlow::new(seed, TRADERS_MAX);
        (0..count).map(|_| flow.next_command()).collect()
    }

    #[test]
    fn same_seed_same_stream() {
        let flow = OrderFlow::new(7, TRADERS_MAX);
        assert_eq!(flow.prefill(), OrderFlow::new(7, TRADERS_MAX).prefill());
        assert_eq!(flow.prefill().len(), PREFILL_ORDERS as usize);
        assert_eq!(commands(7, 5_000), commands(7, 5_000));
        assert_ne!(commands(7, 5_000), commands(8, 5_000));

        let mut rounds = [OrderRound::default(), OrderRound::default()];
        let mut flows = [OrderFlow::new(7, 10), OrderFlow::new(7, 10)];
        for _ in 0..20 {
            for (flow, round) in flows.iter_mut().zip(rounds.iter_mut()) {
                flow.next_round(500, round);
            }
            assert_eq!(rounds[0].places, rounds[1].places);
            assert_eq!(rounds[0].cancels, rounds[1].cancels);
            assert_eq!(rounds[0].amends, rounds[1].amends);
        }
    }

    #[test]
    fn stream_is_pinned() {
        // A digest of the first 200,000 commands of the matching bench's seed; the bench's
        // recorded figures are runs over this stream.
        let mut flow = OrderFlow::new(0x5EED_0001, TRADERS_MAX);
        let mut digest = 0u64;
        // FNV-1a style, one 64-bit word at a time.
        let mut fold = |value: u128| {
            digest = (digest ^ value as u64 ^ (value >> 64) as u64).wrapping_mul(0x100_0000_01B3);
        };
        for order in flow.prefill() {
            fold(order.id ^ (u128::from(order.price) << 32) ^ (u128::from(order.quantity) << 96));
        }
        for _ in 0..200_000 {
            match flow.next_command() {
                OrderCommand::Place(order) => {
                    fold(order.id);
                    fold(order.base_account_id);
                    fold((u128::from(order.price) << 64) | u128::from(order.quantity));
                    fold((u128::from(order.side) << 8) | u128::from(order.time_in_force));
                }
                OrderCommand::Cancel(order_id) => fold(order_id),
                OrderCommand::Amend {
                    amend,
                    side,
                    remaining,
                } => {
                    fold(amend.order_id);
                    fold((u128::from(amend.price) << 64) | u128::from(remaining));
                    fold(side as u128);
                }
            }
        }
        assert_eq!(digest, PINNED_DIGEST, "{digest:#x}");
    }

    const PINNED_DIGEST: u64 = 0xEF73_D71D_08AD_FABB;

    #[test]
    fn mix_keeps_its_proportions() {
        let count = 100_000;
        let mut counts = [0u64; 4];
        for command in commands(1, count) {
            let kind = match command {
                OrderCommand::Place(order) if order.time_in_force == 1 => 0,
                OrderCommand::Place(_) => 1,
                OrderCommand::Cancel(_) => 2,
                OrderCommand::Amend { .. } => 3,
            };
            counts[kind] += 1;
        }
        let percent = |kind: usize| counts[kind] as f64 * 100.0 / count as f64;
        let near = |value: f64, expected: u64, tolerance: f64| {
            assert!(
                (value - expected as f64).abs() <= tolerance,
                "{value:.2}% for {expected}%: {counts:?}"
            );
        };
        // Sampling noise is about 0.1 points. Immediate-or-cancel orders and moves keep their
        // shares (a few non-moves are dropped); the thin and thick adjustments trade
        // good-till-cancel orders and cancels for each other, keeping their sum.
        near(percent(1), IMMEDIATE_OR_CANCEL_PERCENT, 0.5);
        near(percent(3), MOVE_PERCENT, 0.5);
        let gtc_and_cancel = GOOD_TILL_CANCEL_PERCENT + CANCEL_PERCENT;
        near(percent(0) + percent(2), gtc_and_cancel, 0.5);
        near(percent(0), GOOD_TILL_CANCEL_PERCENT, 2.0);
        near(percent(2), CANCEL_PERCENT, 2.0);
    }

    /// Applies `command` to `book`, asserting what the flow promises about it.
    fn apply_checked(book: &mut Book, events: &mut Vec<BookEvent>, command: &OrderCommand) {
        events.clear();
        match command {
            OrderCommand::Place(order) => {
                let execution = book.place(order, 0, events);
                assert_eq!(execution.status, OrderStatus::Ok, "{order:?}");
            }
            OrderCommand::Cancel(order_id) => {
                assert!(book.cancel(*order_id).is_some(), "cancel of {order_id}");
            }
            OrderCommand::Amend {
                amend,
                side,
                remaining,
            } => {
                let resting = book
                    .order(amend.order_id)
                    .expect("amends name resting orders");
                assert_eq!(resting.side, *side);
                assert_eq!(resting.remaining(), *remaining);
                assert_ne!(resting.price, amend.price, "a move changes the price");
                let outcome = book.amend(amend, events);
                assert_eq!(outcome.execution.status, OrderStatus::Ok, "{amend:?}");
            }
        }
    }

    #[test]
    fn cancels_and_amends_name_resting_orders() {
        let mut flow = OrderFlow::new(3, 50);
        let mut book = Book::new(&market(), BOOK_ORDERS_MAX, BOOK_LEVELS_MAX);
        let mut events = Vec::with_capacity(BOOK_ORDERS_MAX as usize);
        let mut placed: HashSet<u128> = HashSet::new();
        for order in flow.prefill() {
            assert!(placed.insert(order.id), "ids are unique");
            apply_checked(&mut book, &mut events, &OrderCommand::Place(*order));
        }
        for _ in 0..100_000 {
            let command = flow.next_command();
            match command {
                OrderCommand::Place(order) => {
                    assert!(placed.insert(order.id), "ids are unique");
                    assert!((1..=50).contains(&order.base_account_id));
                }
                OrderCommand::Cancel(order_id) => assert!(placed.contains(&order_id)),
                OrderCommand::Amend { amend, .. } => assert!(placed.contains(&amend.order_id)),
            }
            apply_checked(&mut book, &mut events, &command);
        }
        assert_eq!(book.orders_count(), flow.book().orders_count());
        let resting = book.orders_count() as u64;
        assert!(
            resting > PREFILL_ORDERS / 2 && resting < PREFILL_ORDERS * 2,
            "{resting}"
        );
    }

    #[test]
    fn rounds_name_resting_orders_and_match_a_book_applied_by_kind() {
        let mut flow = OrderFlow::new(5, TRADERS_MAX);
        let mut book = Book::new(&market(), BOOK_ORDERS_MAX, BOOK_LEVELS_MAX);
        let mut events = Vec::with_capacity(BOOK_ORDERS_MAX as usize);
        let mut placed: HashSet<u128> = flow.prefill().iter().map(|o| o.id).collect();
        for order in flow.prefill() {
            book.place(order, 0, &mut events);
        }
        let mut round = OrderRound::default();
        let (mut commands, mut amends) = (0, 0);
        for count in [1, 7, 100, 1_000, 8_189, 3, 8_189, 8_189, 500] {
            flow.next_round(count, &mut round);
            assert_eq!(round.len(), count);
            commands += count;
            amends += round.amends.len();
            for order in &round.places {
                assert!(placed.insert(order.id), "ids are unique");
                let tif = order.time_in_force;
                let good_till_cancel = TimeInForce::GoodTillCancel as u8;
                assert!(tif == good_till_cancel || tif == TimeInForce::ImmediateOrCancel as u8);
                apply_checked(&mut book, &mut events, &OrderCommand::Place(*order));
            }
            for order_id in &round.cancels {
                assert!(placed.contains(order_id), "cancel of {order_id}");
                apply_checked(&mut book, &mut events, &OrderCommand::Cancel(*order_id));
            }
            for amend in &round.amends {
                assert!(placed.contains(&amend.order_id), "{amend:?}");
                let resting = book
                    .order(amend.order_id)
                    .expect("amends name resting orders");
                let amend = OrderCommand::Amend {
                    amend: *amend,
                    side: resting.side,
                    remaining: resting.remaining(),
                };
                apply_checked(&mut book, &mut events, &amend);
            }
            // The model is the book that applied the round by kind.
            assert_eq!(book.orders_count(), flow.book().orders_count());
            assert_eq!(book.levels_count(), flow.book().levels_count());
            assert_eq!(book.best_bid(), flow.book().best_bid());
            assert_eq!(book.best_ask(), flow.book().best_ask());
        }
        let percent = amends as f64 * 100.0 / commands as f64;
        assert!(
            (percent - MOVE_PERCENT as f64).abs() < 1.0,
            "{percent:.2}% moves"
        );
    }
}
