//! Orders: the wire records of the matching side (Order, OrderResult, OrderAmend, Fill,
//! BookFilter, BookLevel, FillFilter), their enums, and the order result codes.
//!
//! Layouts are byte for byte docs/protocol.md section 6: little-endian, `#[repr(C)]`, declared
//! with `wire_record!` (sizes and offsets checked at compile time). Decoding never fails: enum
//! fields stay raw `u8` in the records and are parsed with `from_u8` when validated, so a bad
//! byte becomes a result code, never a panic.
//!
//! Does not touch accounts or books; `check_order` validates only what the record and its market
//! decide (codes 1003..=1018).

use crate::market::Market;

/// The side of an order.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Buys base, pays quote; rests on the bid side.
    Buy = 1,
    /// Sells base, receives quote; rests on the ask side.
    Sell = 2,
}

impl Side {
    /// Parses the wire value; `None` for anything but 1 and 2.
    pub fn from_u8(value: u8) -> Option<Side> {
        match value {
            1 => Some(Side::Buy),
            2 => Some(Side::Sell),
            _ => None,
        }
    }

    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

/// How long an order may live and whether it may take or rest.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeInForce {
    /// Takes what crosses, rests the remainder (good-till-time when `timeout` is not 0).
    GoodTillCancel = 1,
    /// Takes what crosses up to its limit, releases the remainder.
    ImmediateOrCancel = 2,
    /// Fills its whole quantity at once up to its limit, or does nothing.
    FillOrKill = 3,
    /// Rests only; rejected if it would take (good-till-time when `timeout` is not 0).
    PostOnly = 4,
    /// Immediate-or-cancel with no price limit; a buy is bounded by its quote budget.
    Market = 5,
}

impl TimeInForce {
    /// Parses the wire value; `None` outside 1..=5.
    pub fn from_u8(value: u8) -> Option<TimeInForce> {
        match value {
            1 => Some(TimeInForce::GoodTillCancel),
            2 => Some(TimeInForce::ImmediateOrCancel),
            3 => Some(TimeInForce::FillOrKill),
            4 => Some(TimeInForce::PostOnly),
            5 => Some(TimeInForce::Market),
            _ => None,
        }
    }

    /// Whether an order of this kind may rest in the book.
    pub fn may_rest(self) -> bool {
        matches!(self, TimeInForce::GoodTillCancel | TimeInForce::PostOnly)
    }
}

/// The life-cycle state of an order (engine field).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderState {
    /// In the book, possibly partly filled.
    Resting = 1,
    /// Its whole quantity traded.
    Filled = 2,
    /// Canceled by its owner or by self-trade prevention; the unfilled rest was released.
    Canceled = 3,
    /// A good-till-time order whose time ran out; the unfilled rest was released.
    Expired = 4,
    /// An immediate order (IOC, FOK, market) whose unfilled rest was released.
    Done = 5,
}

impl OrderState {
    /// Parses the wire value; `None` outside 1..=5.
    pub fn from_u8(value: u8) -> Option<OrderState> {
        match value {
            1 => Some(OrderState::Resting),
            2 => Some(OrderState::Filled),
            3 => Some(OrderState::Canceled),
            4 => Some(OrderState::Expired),
            5 => Some(OrderState::Done),
            _ => None,
        }
    }
}

/// Self-trade prevention: what happens when an incoming order meets a resting order of the same
/// owner (the same base account id).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SelfTrade {
    /// The incoming order stops; its unfilled rest is released (it does not rest).
    CancelIncoming = 0,
    /// The resting order is canceled and the incoming order keeps matching.
    CancelResting = 1,
    /// Both are canceled; the incoming order stops.
    CancelBoth = 2,
}

impl SelfTrade {
    /// Parses the wire value; `None` outside 0..=2.
    pub fn from_u8(value: u8) -> Option<SelfTrade> {
        match value {
            0 => Some(SelfTrade::CancelIncoming),
            1 => Some(SelfTrade::CancelResting),
            2 => Some(SelfTrade::CancelBoth),
            _ => None,
        }
    }
}

status_enum! {
    /// Result codes of `place_orders`, `cancel_orders` and `amend_orders`. Numbers are stable wire
    /// values; new codes are appended.
    ///
    /// Check order. `place_orders`, first failing check wins:
    /// 1. `order_id_must_not_be_zero`, `order_id_must_not_be_int_max`;
    /// 2. `market_not_found` (engine);
    /// 3. `side_invalid`, `time_in_force_invalid`, `self_trade_invalid`;
    /// 4. `price_must_not_be_zero` (limit kinds) or `price_must_be_zero` (market),
    ///    `price_not_multiple_of_tick`;
    /// 5. `quantity_must_not_be_zero`, `quantity_not_multiple_of_lot`;
    /// 6. `quote_budget_must_be_zero` (all but market buys) or `quote_budget_must_not_be_zero`
    ///    (market buys);
    /// 7. `timeout_reserved_for_resting_orders` (timeout on IOC, FOK or market);
    /// 8. engine fields: `filled_quantity_must_be_zero`, `state_must_be_zero`,
    ///    `timestamp_must_be_zero`;
    /// 9. `fees_overflow` (maker or taker fee x lots above u64);
    /// 10. `exists`, `exists_with_different_fields` (engine);
    /// 11. `base_account_not_found`, `quote_account_not_found`,
    ///     `base_account_ledger_must_match_market`, `quote_account_ledger_must_match_market`
    ///     (engine);
    /// 12. `overflows_debits_pending`, `exceeds_credits` (the hold, engine);
    /// 13. book: `post_only_would_take`, `fill_or_kill_not_filled`, `orders_capacity_exceeded`,
    ///     `book_levels_capacity_exceeded` (capacity only when the order would rest);
    /// 14. `fills_capacity_exceeded` (engine fill store).
    ///
    /// Steps 1 and 3..=9 are `check_order`; step 13 is `Book::place`.
    ///
    /// `cancel_orders`: `order_id_must_not_be_zero`, `order_id_must_not_be_int_max`,
    /// `order_not_found`, `order_not_resting`.
    ///
    /// `amend_orders`: `order_id_must_not_be_zero`, `order_id_must_not_be_int_max`,
    /// `reserved_field`, `order_not_found`, `order_not_resting`,
    /// `amend_price_not_multiple_of_tick`, `amend_quantity_not_multiple_of_lot`,
    /// `amend_quantity_below_filled`, then the hold checks
    /// (`overflows_debits_pending`, `exceeds_credits`), then `post_only_would_take` and
    /// `book_levels_capacity_exceeded`.
    pub enum OrderStatus {
        /// The command was applied: the order was placed (whatever it then traded), canceled or
        /// amended.
        Ok = 0xFFFF_FFFF => "ok",
        /// `id` is 0.
        OrderIdMustNotBeZero = 1000 => "order_id_must_not_be_zero",
        /// `id` is `u128::MAX`.
        OrderIdMustNotBeIntMax = 1001 => "order_id_must_not_be_int_max",
        /// No market has this id.
        MarketNotFound = 1002 => "market_not_found",
        /// `side` is not 1 or 2.
        SideInvalid = 1003 => "side_invalid",
        /// `time_in_force` is not 1..=5.
        TimeInForceInvalid = 1004 => "time_in_force_invalid",
        /// `self_trade` is not 0..=2.
        SelfTradeInvalid = 1005 => "self_trade_invalid",
        /// A reserved field is not zero.
        ReservedField = 1006 => "reserved_field",
        /// A limit order (GTC, IOC, FOK, post-only) has price 0.
        PriceMustNotBeZero = 1007 => "price_must_not_be_zero",
        /// A market order has a price.
        PriceMustBeZero = 1008 => "price_must_be_zero",
        /// `price` is not a multiple of the market's `tick_size`.
        PriceNotMultipleOfTick = 1009 => "price_not_multiple_of_tick",
        /// `quantity` is 0.
        QuantityMustNotBeZero = 1010 => "quantity_must_not_be_zero",
        /// `quantity` is not a multiple of the market's `lot_size`.
        QuantityNotMultipleOfLot = 1011 => "quantity_not_multiple_of_lot",
        /// A quote budget on anything but a market buy.
        QuoteBudgetMustBeZero = 1012 => "quote_budget_must_be_zero",
        /// A market buy without a quote budget.
        QuoteBudgetMustNotBeZero = 1013 => "quote_budget_must_not_be_zero",
        /// A timeout on an IOC, FOK or market order.
        TimeoutReservedForRestingOrders = 1014 => "timeout_reserved_for_resting_orders",
        /// The engine field `filled_quantity` is not 0.
        FilledQuantityMustBeZero = 1015 => "filled_quantity_must_be_zero",
        /// The engine field `state` is not 0.
        StateMustBeZero = 1016 => "state_must_be_zero",
        /// The engine field `timestamp` is not 0.
        TimestampMustBeZero = 1017 => "timestamp_must_be_zero",
        /// The maker or taker fee times the order's lots does not fit in u64.
        FeesOverflow = 1018 => "fees_overflow",
        /// An order with this id and the same fields exists.
        Exists = 1019 => "exists",
        /// An order with this id but different fields exists.
        ExistsWithDifferentFields = 1020 => "exists_with_different_fields",
        /// `base_account_id` names no account.
        BaseAccountNotFound = 1021 => "base_account_not_found",
        /// `quote_account_id` names no account.
        QuoteAccountNotFound = 1022 => "quote_account_not_found",
        /// The base account is not on the market's base ledger.
        BaseAccountLedgerMustMatchMarket = 1023 => "base_account_ledger_must_match_market",
        /// The quote account is not on the market's quote ledger.
        QuoteAccountLedgerMustMatchMarket = 1024 => "quote_account_ledger_must_match_market",
        /// The hold would overflow the account's `debits_pending`.
        OverflowsDebitsPending = 1025 => "overflows_debits_pending",
        /// The hold would break the account's `debits_must_not_exceed_credits` limit.
        ExceedsCredits = 1026 => "exceeds_credits",
        /// A post-only order (placed or amended) would take liquidity.
        PostOnlyWouldTake = 1027 => "post_only_would_take",
        /// A fill-or-kill order cannot fill its whole quantity now.
        FillOrKillNotFilled = 1028 => "fill_or_kill_not_filled",
        /// The order would rest but the book holds `orders_max` orders.
        OrdersCapacityExceeded = 1029 => "orders_capacity_exceeded",
        /// The order would rest at a new price but the book holds `levels_max` levels.
        BookLevelsCapacityExceeded = 1030 => "book_levels_capacity_exceeded",
        /// No order has this id (in this book, for the book's operations).
        OrderNotFound = 1031 => "order_not_found",
        /// The order exists but is no longer resting.
        OrderNotResting = 1032 => "order_not_resting",
        /// The amended price is not a multiple of the market's `tick_size`.
        AmendPriceNotMultipleOfTick = 1033 => "amend_price_not_multiple_of_tick",
        /// The amended quantity is not a multiple of the market's `lot_size`.
        AmendQuantityNotMultipleOfLot = 1034 => "amend_quantity_not_multiple_of_lot",
        /// The amended total quantity is not above the filled quantity (use cancel instead).
        AmendQuantityBelowFilled = 1035 => "amend_quantity_below_filled",
        /// The engine's fill store is full.
        FillsCapacityExceeded = 1036 => "fills_capacity_exceeded",
        /// The ledger lacks room for the transfers one order command may make.
        TransfersCapacityExceeded = 1037 => "transfers_capacity_exceeded",
        /// A trader account is closed, so the hold was refused.
        AccountClosed = 1038 => "account_closed",
        /// The ledger refused the hold for another reason (the escrow account's flags or an
        /// overflow of its balances).
        HoldRefused = 1039 => "hold_refused",
        /// A fill-or-kill order or an amend would take more resting orders than one command may.
        FillsPerOrderExceeded = 1040 => "fills_per_order_exceeded",
        /// The ledger refused a fill's legs (an account closed or limited since the order was
        /// placed); the orders involved were canceled and their holds released.
        SettlementFailed = 1041 => "settlement_failed",
    }
}

/// Validates the fields of an order that the record and its market decide: checks 1 and 3..=9
/// of `OrderStatus`'s check order. Returns `None` when they pass.
pub fn check_order(order: &Order, market: &Market) -> Option<OrderStatus> {
    if order.id == 0 {
        return Some(OrderStatus::OrderIdMustNotBeZero);
    }
    if order.id == u128::MAX {
        return Some(OrderStatus::OrderIdMustNotBeIntMax);
    }
    let Some(side) = Side::from_u8(order.side) else {
        return Some(OrderStatus::SideInvalid);
    };
    let Some(time_in_force) = TimeInForce::from_u8(order.time_in_force) else {
        return Some(OrderStatus::TimeInForceInvalid);
    };
    if SelfTrade::from_u8(order.self_trade).is_none() {
        return Some(OrderStatus::SelfTradeInvalid);
    }
    assert!(market.tick_size > 0, "markets are validated at creation");
    assert!(market.lot_size > 0, "markets are validated at creation");
    if time_in_force == TimeInForce::Market {
        if order.price != 0 {
            return Some(OrderStatus::PriceMustBeZero);
        }
    } else {
        if order.price == 0 {
            return Some(OrderStatus::PriceMustNotBeZero);
        }
        if order.price % market.tick_size != 0 {
            return Some(OrderStatus::PriceNotMultipleOfTick);
        }
    }
    if order.quantity == 0 {
        return Some(OrderStatus::QuantityMustNotBeZero);
    }
    if order.quantity % market.lot_size != 0 {
        return Some(OrderStatus::QuantityNotMultipleOfLot);
    }
    let market_buy = time_in_force == TimeInForce::Market && side == Side::Buy;
    if market_buy {
        if order.quote_budget == 0 {
            return Some(OrderStatus::QuoteBudgetMustNotBeZero);
        }
    } else if order.quote_budget != 0 {
        return Some(OrderStatus::QuoteBudgetMustBeZero);
    }
    if order.timeout != 0 && !time_in_force.may_rest() {
        return Some(OrderStatus::TimeoutReservedForRestingOrders);
    }
    if order.filled_quantity != 0 {
        return Some(OrderStatus::FilledQuantityMustBeZero);
    }
    if order.state != 0 {
        return Some(OrderStatus::StateMustBeZero);
    }
    if order.timestamp != 0 {
        return Some(OrderStatus::TimestampMustBeZero);
    }
    if fees_overflow(market, order.quantity) {
        return Some(OrderStatus::FeesOverflow);
    }
    None
}

/// Whether the maker or the taker fee of `quantity` base units in `market` overflows u64.
fn fees_overflow(market: &Market, quantity: u64) -> bool {
    let lots = quantity / market.lot_size;
    market.taker_fee.checked_mul(lots).is_none() || market.maker_fee.checked_mul(lots).is_none()
}

/// The amend checks that need no order (`OrderStatus`'s check order for `amend_orders`): the id
/// and the reserved bytes. Returns `None` when they pass.
pub fn check_amend(amend: &OrderAmend) -> Option<OrderStatus> {
    if amend.order_id == 0 {
        return Some(OrderStatus::OrderIdMustNotBeZero);
    }
    if amend.order_id == u128::MAX {
        return Some(OrderStatus::OrderIdMustNotBeIntMax);
    }
    if amend.reserved != [0; 32] {
        return Some(OrderStatus::ReservedField);
    }
    None
}

/// The price and total quantity `amend` gives a resting order of `market` that has `price`,
/// `quantity` and `filled_quantity` (a zero field keeps the order's), or the amend check on them
/// that fails: tick, lot, below the filled quantity, fees overflow.
pub fn amended_price_and_quantity(
    amend: &OrderAmend,
    market: &Market,
    (price, quantity, filled_quantity): (u64, u64, u64),
) -> Result<(u64, u64), OrderStatus> {
    if amend.price % market.tick_size != 0 {
        return Err(OrderStatus::AmendPriceNotMultipleOfTick);
    }
    if amend.quantity % market.lot_size != 0 {
        return Err(OrderStatus::AmendQuantityNotMultipleOfLot);
    }
    let price = if amend.price == 0 { price } else { amend.price };
    let quantity = if amend.quantity == 0 {
        quantity
    } else {
        amend.quantity
    };
    if quantity <= filled_quantity {
        return Err(OrderStatus::AmendQuantityBelowFilled);
    }
    if fees_overflow(market, quantity) {
        return Err(OrderStatus::FeesOverflow);
    }
    Ok((price, quantity))
}

wire_record! {
    /// An order as placed by a client and as stored by the engine (128 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Order(128 bytes) {
        /// Client-chosen, unique among orders; not 0 or `u128::MAX`.
        pub id: u128 @ 0,
        /// The trader's account on the base ledger; also identifies the owner for self-trade
        /// prevention.
        pub base_account_id: u128 @ 16,
        /// The trader's account on the quote ledger.
        pub quote_account_id: u128 @ 32,
        /// Opaque client data.
        pub user_data_128: u128 @ 48,
        /// Quote units per lot, a multiple of the tick; 0 for market orders.
        pub price: u64 @ 64,
        /// Base units, a multiple of the lot.
        pub quantity: u64 @ 72,
        /// Market buys only: the most quote to spend, fees included.
        pub quote_budget: u64 @ 80,
        /// Engine: base units traded so far.
        pub filled_quantity: u64 @ 88,
        /// Opaque client data.
        pub user_data_64: u64 @ 96,
        /// The market id.
        pub market: u32 @ 104,
        /// Seconds; good-till-time when not 0 (GTC and post-only only).
        pub timeout: u32 @ 108,
        /// Opaque client data.
        pub user_data_32: u32 @ 112,
        /// `Side` as u8.
        pub side: u8 @ 116,
        /// `TimeInForce` as u8.
        pub time_in_force: u8 @ 117,
        /// Engine: `OrderState` as u8.
        pub state: u8 @ 118,
        /// `SelfTrade` as u8.
        pub self_trade: u8 @ 119,
        /// Engine: when the order was placed.
        pub timestamp: u64 @ 120,
    }
}

wire_record! {
    /// What happened to one placed order (64 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OrderResult(64 bytes) {
        /// The order's id.
        pub order_id: u128 @ 0,
        /// The order's engine timestamp.
        pub timestamp: u64 @ 16,
        /// `OrderStatus` as u32 (`0xFFFF_FFFF` = placed).
        pub status: u32 @ 24,
        /// `OrderState` as u8 after the command; 0 when rejected.
        pub state: u8 @ 28,
        /// Zero.
        pub reserved: [u8; 3] @ 29,
        /// Base units traded by this command.
        pub filled_quantity: u64 @ 32,
        /// Fills this order took part in during this command.
        pub fill_count: u32 @ 40,
        /// Zero.
        pub reserved_fill: u32 @ 44,
        /// Quote moved by this order's fills, fees excluded.
        pub quote_traded: u128 @ 48,
    }
}

wire_record! {
    /// A change to a resting order (64 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct OrderAmend(64 bytes) {
        /// The resting order's id.
        pub order_id: u128 @ 0,
        /// The new price; 0 keeps the price.
        pub price: u64 @ 16,
        /// The new total quantity (filled included); 0 keeps the quantity.
        pub quantity: u64 @ 24,
        /// Zero.
        pub reserved: [u8; 32] @ 32,
    }
}

wire_record! {
    /// One trade between a taker and a maker (128 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Fill(128 bytes) {
        /// The incoming order.
        pub taker_order_id: u128 @ 0,
        /// The resting order.
        pub maker_order_id: u128 @ 16,
        /// `price x lots`: quote moved from buyer to seller, fees excluded.
        pub quote_amount: u128 @ 32,
        /// The maker's price, quote units per lot.
        pub price: u64 @ 48,
        /// Base units traded.
        pub quantity: u64 @ 56,
        /// Quote charged to the taker: `taker_fee x lots`.
        pub taker_fee: u64 @ 64,
        /// Quote charged to the maker: `maker_fee x lots`.
        pub maker_fee: u64 @ 72,
        /// Fill number, engine-wide.
        pub sequence: u64 @ 80,
        /// The market id.
        pub market: u32 @ 88,
        /// The taker's `Side` as u8.
        pub taker_side: u8 @ 92,
        /// Zero.
        pub reserved: [u8; 27] @ 93,
        /// Engine timestamp of the command that made the fill.
        pub timestamp: u64 @ 120,
    }
}

wire_record! {
    /// A request for the L2 book (64 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct BookFilter(64 bytes) {
        /// The market id.
        pub market: u32 @ 0,
        /// Levels per side, 1..=4,095.
        pub depth: u32 @ 4,
        /// Zero.
        pub reserved: [u8; 56] @ 8,
    }
}

impl BookFilter {
    /// The most levels per side one request may ask for.
    pub const DEPTH_MAX: u32 = 4095;
}

wire_record! {
    /// One price level of the L2 book (32 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct BookLevel(32 bytes) {
        /// Quote units per lot.
        pub price: u64 @ 0,
        /// Unfilled base units resting at this price (saturates at `u64::MAX`).
        pub quantity: u64 @ 8,
        /// Orders resting at this price.
        pub order_count: u32 @ 16,
        /// `Side` as u8.
        pub side: u8 @ 20,
        /// Zero.
        pub reserved: [u8; 11] @ 21,
    }
}

wire_record! {
    /// A request for fills of a market or of one order in a time range (64 bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct FillFilter(64 bytes) {
        /// 0 = every order of the market.
        pub order_id: u128 @ 0,
        /// The market id.
        pub market: u32 @ 16,
        /// The most fills to return.
        pub limit: u32 @ 20,
        /// Inclusive lower bound.
        pub timestamp_min: u64 @ 24,
        /// Inclusive upper bound; 0 = unbounded.
        pub timestamp_max: u64 @ 32,
        /// `FillFilter::REVERSED` and nothing else.
        pub flags: u32 @ 40,
        /// Zero.
        pub reserved: [u8; 20] @ 44,
    }
}

impl FillFilter {
    /// Flag bit 0: newest first.
    pub const REVERSED: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes 0, 1, 2, ... so every field's offset and byte order shows in its value.
    fn counting<const N: usize>() -> [u8; N] {
        let mut bytes = [0u8; N];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = index as u8;
        }
        bytes
    }

    fn le128(first: u8) -> u128 {
        let mut bytes = [0u8; 16];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = first + index as u8;
        }
        u128::from_le_bytes(bytes)
    }

    fn le64(first: u8) -> u64 {
        let mut bytes = [0u8; 8];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = first + index as u8;
        }
        u64::from_le_bytes(bytes)
    }

    fn le32(first: u8) -> u32 {
        u32::from_le_bytes([first, first + 1, first + 2, first + 3])
    }

    #[test]
    fn order_golden_bytes() {
        let bytes = counting::<128>();
        let order = Order::decode(&bytes);
        assert_eq!(order.id, le128(0));
        assert_eq!(order.base_account_id, le128(16));
        assert_eq!(order.quote_account_id, le128(32));
        assert_eq!(order.user_data_128, le128(48));
        assert_eq!(order.price, le64(64));
        assert_eq!(order.quantity, le64(72));
        assert_eq!(order.quote_budget, le64(80));
        assert_eq!(order.filled_quantity, le64(88));
        assert_eq!(order.user_data_64, le64(96));
        assert_eq!(order.market, le32(104));
        assert_eq!(order.timeout, le32(108));
        assert_eq!(order.user_data_32, le32(112));
        assert_eq!(
            (order.side, order.time_in_force, order.state),
            (116, 117, 118)
        );
        assert_eq!(order.self_trade, 119);
        assert_eq!(order.timestamp, le64(120));
        let mut out = [0xAAu8; 128];
        order.encode(&mut out);
        assert_eq!(out, bytes);
        let small = Order {
            id: 0x0102,
            price: 7,
            side: 2,
            ..Order::default()
        };
        let mut out = [0u8; 128];
        small.encode(&mut out);
        assert_eq!(&out[0..3], &[0x02, 0x01, 0x00]);
        assert_eq!(&out[64..66], &[7, 0]);
        assert_eq!(out[116], 2);
    }

    #[test]
    fn order_result_golden_bytes() {
        let bytes = counting::<64>();
        let result = OrderResult::decode(&bytes);
        assert_eq!(result.order_id, le128(0));
        assert_eq!(result.timestamp, le64(16));
        assert_eq!(result.status, le32(24));
        assert_eq!(result.state, 28);
        assert_eq!(result.reserved, [29, 30, 31]);
        assert_eq!(result.filled_quantity, le64(32));
        assert_eq!(result.fill_count, le32(40));
        assert_eq!(result.reserved_fill, le32(44));
        assert_eq!(result.quote_traded, le128(48));
        let mut out = [0u8; 64];
        result.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn order_amend_golden_bytes() {
        let bytes = counting::<64>();
        let amend = OrderAmend::decode(&bytes);
        assert_eq!(amend.order_id, le128(0));
        assert_eq!(amend.price, le64(16));
        assert_eq!(amend.quantity, le64(24));
        assert_eq!(amend.reserved[0], 32);
        assert_eq!(amend.reserved[31], 63);
        let mut out = [0u8; 64];
        amend.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn fill_golden_bytes() {
        let bytes = counting::<128>();
        let fill = Fill::decode(&bytes);
        assert_eq!(fill.taker_order_id, le128(0));
        assert_eq!(fill.maker_order_id, le128(16));
        assert_eq!(fill.quote_amount, le128(32));
        assert_eq!(fill.price, le64(48));
        assert_eq!(fill.quantity, le64(56));
        assert_eq!(fill.taker_fee, le64(64));
        assert_eq!(fill.maker_fee, le64(72));
        assert_eq!(fill.sequence, le64(80));
        assert_eq!(fill.market, le32(88));
        assert_eq!(fill.taker_side, 92);
        assert_eq!(fill.reserved[0], 93);
        assert_eq!(fill.reserved[26], 119);
        assert_eq!(fill.timestamp, le64(120));
        let mut out = [0u8; 128];
        fill.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn book_filter_level_and_fill_filter_golden_bytes() {
        let bytes = counting::<64>();
        let filter = BookFilter::decode(&bytes);
        assert_eq!(filter.market, le32(0));
        assert_eq!(filter.depth, le32(4));
        assert_eq!(filter.reserved[0], 8);
        let mut out = [0u8; 64];
        filter.encode(&mut out);
        assert_eq!(out, bytes);

        let bytes = counting::<32>();
        let level = BookLevel::decode(&bytes);
        assert_eq!(level.price, le64(0));
        assert_eq!(level.quantity, le64(8));
        assert_eq!(level.order_count, le32(16));
        assert_eq!(level.side, 20);
        assert_eq!(level.reserved[10], 31);
        let mut out = [0u8; 32];
        level.encode(&mut out);
        assert_eq!(out, bytes);

        let bytes = counting::<64>();
        let filter = FillFilter::decode(&bytes);
        assert_eq!(filter.order_id, le128(0));
        assert_eq!(filter.market, le32(16));
        assert_eq!(filter.limit, le32(20));
        assert_eq!(filter.timestamp_min, le64(24));
        assert_eq!(filter.timestamp_max, le64(32));
        assert_eq!(filter.flags, le32(40));
        assert_eq!(filter.reserved[0], 44);
        let mut out = [0u8; 64];
        filter.encode(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn enums_round_trip_and_reject_unknown_bytes() {
        for value in 0..=255u8 {
            assert_eq!(
                Side::from_u8(value).map(|side| side as u8),
                (1..=2).contains(&value).then_some(value)
            );
            assert_eq!(
                TimeInForce::from_u8(value).map(|tif| tif as u8),
                (1..=5).contains(&value).then_some(value)
            );
            assert_eq!(
                OrderState::from_u8(value).map(|state| state as u8),
                (1..=5).contains(&value).then_some(value)
            );
            assert_eq!(
                SelfTrade::from_u8(value).map(|mode| mode as u8),
                (0..=2).contains(&value).then_some(value)
            );
        }
    }

    #[test]
    fn status_numbers_are_stable_and_names_unique() {
        assert_eq!(OrderStatus::Ok as u32, 0xFFFF_FFFF);
        assert_eq!(OrderStatus::OrderIdMustNotBeZero as u32, 1000);
        assert_eq!(OrderStatus::FeesOverflow as u32, 1018);
        assert_eq!(OrderStatus::ExceedsCredits as u32, 1026);
        assert_eq!(OrderStatus::FillsCapacityExceeded as u32, 1036);
        for (index, status) in OrderStatus::ALL.iter().enumerate().skip(1) {
            assert_eq!(*status as u32, 999 + index as u32, "{}", status.name());
        }
        for &status in OrderStatus::ALL {
            assert_eq!(OrderStatus::from_u32(status as u32), Some(status));
            let same = OrderStatus::ALL
                .iter()
                .filter(|other| other.name() == status.name());
            assert_eq!(same.count(), 1, "{}", status.name());
        }
        assert_eq!(OrderStatus::from_u32(999), None);
        assert_eq!(OrderStatus::from_u32(1042), None);
    }

    fn market() -> Market {
        Market {
            id: 1,
            lot_size: 10,
            tick_size: 5,
            taker_fee: 20,
            maker_fee: 1,
            ..Market::default()
        }
    }

    fn limit() -> Order {
        Order {
            id: 9,
            price: 100,
            quantity: 30,
            side: 1,
            time_in_force: 1,
            ..Order::default()
        }
    }

    fn check(mutate: impl FnOnce(&mut Order), expected: Option<OrderStatus>) {
        let mut order = limit();
        mutate(&mut order);
        assert_eq!(check_order(&order, &market()), expected, "{order:?}");
    }

    #[test]
    fn check_order_in_documented_order() {
        check(|_| {}, None);
        check(
            |o| {
                o.id = 0;
                o.side = 0
            },
            Some(OrderStatus::OrderIdMustNotBeZero),
        );
        check(
            |o| o.id = u128::MAX,
            Some(OrderStatus::OrderIdMustNotBeIntMax),
        );
        check(
            |o| {
                o.side = 3;
                o.time_in_force = 0
            },
            Some(OrderStatus::SideInvalid),
        );
        check(
            |o| {
                o.time_in_force = 6;
                o.self_trade = 9
            },
            Some(OrderStatus::TimeInForceInvalid),
        );
        check(
            |o| {
                o.self_trade = 3;
                o.price = 0
            },
            Some(OrderStatus::SelfTradeInvalid),
        );
        check(
            |o| {
                o.price = 0;
                o.quantity = 0
            },
            Some(OrderStatus::PriceMustNotBeZero),
        );
        check(|o| o.time_in_force = 5, Some(OrderStatus::PriceMustBeZero));
        check(
            |o| {
                o.price = 101;
                o.quantity = 0
            },
            Some(OrderStatus::PriceNotMultipleOfTick),
        );
        check(|o| o.quantity = 0, Some(OrderStatus::QuantityMustNotBeZero));
        check(
            |o| o.quantity = 31,
            Some(OrderStatus::QuantityNotMultipleOfLot),
        );
        check(
            |o| o.quote_budget = 1,
            Some(OrderStatus::QuoteBudgetMustBeZero),
        );
        check(
            |o| {
                o.time_in_force = 5;
                o.price = 0
            },
            Some(OrderStatus::QuoteBudgetMustNotBeZero),
        );
        check(
            |o| {
                o.time_in_force = 5;
                o.price = 0;
                o.side = 2
            },
            None,
        );
        check(
            |o| {
                o.time_in_force = 5;
                o.price = 0;
                o.quote_budget = 7;
                o.timeout = 1
            },
            Some(OrderStatus::TimeoutReservedForRestingOrders),
        );
        check(
            |o| {
                o.time_in_force = 2;
                o.timeout = 1
            },
            Some(OrderStatus::TimeoutReservedForRestingOrders),
        );
        check(
            |o| {
                o.time_in_force = 4;
                o.timeout = 1
            },
            None,
        );
        check(
            |o| o.filled_quantity = 1,
            Some(OrderStatus::FilledQuantityMustBeZero),
        );
        check(|o| o.state = 1, Some(OrderStatus::StateMustBeZero));
        check(|o| o.timestamp = 1, Some(OrderStatus::TimestampMustBeZero));
        check(
            |o| o.quantity = u64::MAX / 10 * 10,
            Some(OrderStatus::FeesOverflow),
        );
    }
}
