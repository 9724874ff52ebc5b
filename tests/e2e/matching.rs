//! Every matching operation (16-22) over the wire against the real server: markets, orders
//! placed, canceled and amended, the book and the fills, the settlement transfers and holds they
//! leave in the ledger, a restart that replays all of it, and the repl's order statements.

use std::collections::HashMap;

use clearline_engine::{
    Account, AccountFlags, BookFilter, BookLevel, CreateMarketStatus, CreateResult, Fill,
    FillFilter, Market, Operation, Order, OrderAmend, OrderResult, OrderState, OrderStatus,
    QueryFilter, Transfer, TransferFlags, SETTLEMENT_ID_BIT,
};
use clearline_net::Client;

use crate::support::{
    account, accounts, data_dir, encode, encode_accounts, encode_ids, encode_query,
    encode_transfers, repl_script, request_ok, results, transfer, transfers, Options, Server,
};

const CREATED: u32 = CreateResult::STATUS_CREATED;
const OK: u32 = OrderStatus::Ok as u32;

const BASE: u32 = 710;
const QUOTE: u32 = 711;
const BASE_SOURCE: u128 = 1;
const QUOTE_SOURCE: u128 = 2;
const FEE: u128 = 3;
const BASE_ESCROW: u128 = 4;
const QUOTE_ESCROW: u128 = 5;
/// The seller's base and quote accounts.
const SELLER: (u128, u128) = (11, 12);
/// The buyer's base and quote accounts.
const BUYER: (u128, u128) = (21, 22);
const ACCOUNT_IDS: [u128; 9] = [1, 2, 3, 4, 5, 11, 12, 21, 22];

const MARKET: u32 = 1;
const MARKET_CODE: u16 = 11;
const LOT: u64 = 10;
const TICK: u64 = 5;
const MAKER_FEE: u64 = 1;
const TAKER_FEE: u64 = 2;
const FUNDS_BASE: u128 = 1_000;
const FUNDS_QUOTE: u128 = 100_000;

const BUY: u8 = 1;
const SELL: u8 = 2;
const GTC: u8 = 1;
const IOC: u8 = 2;

/// Kinds of engine transfers (bits 120..127 of their ids): the legs of fills (kinds 1 and 2,
/// holds and voids, are no longer made).
const KIND_BASE: u8 = 3;
const KIND_QUOTE: u8 = 4;
const KIND_TAKER_FEE: u8 = 5;
const KIND_MAKER_FEE: u8 = 6;

/// Every order id the scenario uses, placed or not.
const ORDER_IDS: [u128; 9] = [101, 102, 103, 104, 105, 106, 107, 108, 109];

fn market() -> Market {
    Market {
        id: MARKET,
        base_ledger: BASE,
        quote_ledger: QUOTE,
        lot_size: LOT,
        tick_size: TICK,
        maker_fee: MAKER_FEE,
        taker_fee: TAKER_FEE,
        fee_account_id: FEE,
        base_escrow_account_id: BASE_ESCROW,
        quote_escrow_account_id: QUOTE_ESCROW,
        code: MARKET_CODE,
        user_data_64: 42,
        ..Market::default()
    }
}

fn order(id: u128, trader: (u128, u128), side: u8, tif: u8, price: u64, quantity: u64) -> Order {
    Order {
        id,
        base_account_id: trader.0,
        quote_account_id: trader.1,
        price,
        quantity,
        market: MARKET,
        side,
        time_in_force: tif,
        ..Order::default()
    }
}

fn decode<const SIZE: usize, T>(body: &[u8], read: impl Fn(&[u8; SIZE]) -> T) -> Vec<T> {
    assert_eq!(body.len() % SIZE, 0, "reply body is whole items");
    body.chunks_exact(SIZE)
        .map(|chunk| read(chunk.try_into().expect("chunk of the item size")))
        .collect()
}

fn create_markets(client: &mut Client, markets: &[Market]) -> Vec<CreateResult> {
    let body = encode(markets, Market::encode);
    let reply = request_ok(client, Operation::CreateMarkets, &body);
    assert_eq!(reply.count() as usize, markets.len(), "a result per market");
    assert_ne!(reply.sequence(), 0, "create_markets is a journaled write");
    results(&reply.body)
}

fn place(client: &mut Client, orders: &[Order]) -> Vec<OrderResult> {
    let reply = request_ok(
        client,
        Operation::PlaceOrders,
        &encode(orders, Order::encode),
    );
    assert_eq!(reply.count() as usize, orders.len(), "a result per order");
    assert_ne!(reply.sequence(), 0, "place_orders is a journaled write");
    let placed = decode(&reply.body, OrderResult::decode);
    for (result, order) in placed.iter().zip(orders) {
        assert_eq!(result.order_id, order.id, "results in request order");
    }
    placed
}

fn cancel(client: &mut Client, ids: &[u128]) -> Vec<u32> {
    let reply = request_ok(client, Operation::CancelOrders, &encode_ids(ids));
    assert_eq!(reply.count() as usize, ids.len(), "a result per cancel");
    results(&reply.body).iter().map(|r| r.status).collect()
}

fn amend(client: &mut Client, amends: &[(u128, u64, u64)]) -> Vec<u32> {
    let records: Vec<OrderAmend> = amends
        .iter()
        .map(|&(order_id, price, quantity)| OrderAmend {
            order_id,
            price,
            quantity,
            ..OrderAmend::default()
        })
        .collect();
    let body = encode(&records, OrderAmend::encode);
    let reply = request_ok(client, Operation::AmendOrders, &body);
    assert_eq!(reply.count() as usize, amends.len(), "a result per amend");
    results(&reply.body).iter().map(|r| r.status).collect()
}

fn lookup_orders(client: &mut Client, ids: &[u128]) -> Vec<Order> {
    let reply = request_ok(client, Operation::LookupOrders, &encode_ids(ids));
    assert_eq!(reply.sequence(), 0, "a read has no journal sequence");
    decode(&reply.body, Order::decode)
}

fn book(client: &mut Client) -> Vec<BookLevel> {
    let filter = BookFilter {
        market: MARKET,
        depth: 10,
        ..BookFilter::default()
    };
    let body = encode(&[filter], BookFilter::encode);
    decode(
        &request_ok(client, Operation::GetBook, &body).body,
        BookLevel::decode,
    )
}

fn fills(client: &mut Client, filter: FillFilter) -> Vec<Fill> {
    let body = encode(&[filter], FillFilter::encode);
    decode(
        &request_ok(client, Operation::GetFills, &body).body,
        Fill::decode,
    )
}

fn market_fills(client: &mut Client) -> Vec<Fill> {
    let filter = FillFilter {
        market: MARKET,
        limit: 100,
        ..FillFilter::default()
    };
    fills(client, filter)
}

fn level(side: u8, price: u64, quantity: u64, order_count: u32) -> BookLevel {
    BookLevel {
        price,
        quantity,
        order_count,
        side,
        ..BookLevel::default()
    }
}

fn account_map(client: &mut Client) -> HashMap<u128, Account> {
    let reply = request_ok(client, Operation::LookupAccounts, &encode_ids(&ACCOUNT_IDS));
    let found = accounts(&reply.body);
    assert_eq!(found.len(), ACCOUNT_IDS.len(), "every account found");
    found.into_iter().map(|a| (a.id, a)).collect()
}

/// Every engine-made transfer of the market (they carry it in `user_data_32`), oldest first.
fn engine_transfers(client: &mut Client) -> Vec<Transfer> {
    let filter = QueryFilter {
        user_data_32: MARKET,
        limit: 1_000,
        ..QueryFilter::default()
    };
    let reply = request_ok(client, Operation::QueryTransfers, &encode_query(&filter));
    let found = transfers(&reply.body);
    assert!(found.len() < 1_000, "the query was not capped");
    found
}

fn kind(transfer: &Transfer) -> u8 {
    ((transfer.id >> 120) & 0x7F) as u8
}

/// The account a resting order holds from and how much it must hold: a sell its remaining
/// base, a buy `(price + max(maker, taker fee)) x lots` of quote.
fn need(order: &Order) -> (u128, u128) {
    assert_eq!(order.state, OrderState::Resting as u8);
    let remaining = order.quantity - order.filled_quantity;
    if order.side == SELL {
        (order.base_account_id, u128::from(remaining))
    } else {
        let lots = u128::from(remaining / LOT);
        let fee = u128::from(TAKER_FEE.max(MAKER_FEE));
        (
            order.quote_account_id,
            (u128::from(order.price) + fee) * lots,
        )
    }
}

/// Checks the ledger against the matching side: every fill settled by its four legs and no
/// other engine transfer, `debits_pending` of every account equal to the holds of exactly what
/// its resting orders need (and the escrows' `credits_pending` to all of them), fees credited to
/// the fee account, and per ledger debits equal to credits.
fn check_settlement(client: &mut Client) {
    let orders = lookup_orders(client, &ORDER_IDS);
    let fills = market_fills(client);
    let engine = engine_transfers(client);
    let balances = account_map(client);
    let by_id: HashMap<u128, &Order> = orders.iter().map(|o| (o.id, o)).collect();

    for transfer in &engine {
        assert_ne!(transfer.id & SETTLEMENT_ID_BIT, 0, "{transfer:?}");
        assert_ne!(
            transfer.flags & TransferFlags::SETTLEMENT,
            0,
            "{transfer:?}"
        );
        // Only fill legs: holds are reservations on balances, not transfers.
        assert!(
            (KIND_BASE..=KIND_MAKER_FEE).contains(&kind(transfer)),
            "{transfer:?}"
        );
        assert_eq!(transfer.flags, TransferFlags::SETTLEMENT, "{transfer:?}");
        assert_eq!(transfer.code, MARKET_CODE, "{transfer:?}");
    }

    // Legs: base seller -> buyer, quote buyer -> seller, taker fee, maker fee.
    for fill in &fills {
        let legs: Vec<&Transfer> = engine
            .iter()
            .filter(|t| kind(t) >= KIND_BASE && t.user_data_64 == fill.sequence)
            .collect();
        assert_eq!(legs.len(), 4, "four legs for fill {fill:?}");
        let taker = by_id[&fill.taker_order_id];
        let maker = by_id[&fill.maker_order_id];
        let (buyer, seller) = if fill.taker_side == BUY {
            (taker, maker)
        } else {
            (maker, taker)
        };
        let expected = [
            (KIND_BASE, seller.base_account_id, buyer.base_account_id),
            (KIND_QUOTE, buyer.quote_account_id, seller.quote_account_id),
            (KIND_TAKER_FEE, taker.quote_account_id, FEE),
            (KIND_MAKER_FEE, maker.quote_account_id, FEE),
        ];
        let amounts = [
            u128::from(fill.quantity),
            fill.quote_amount,
            u128::from(fill.taker_fee),
            u128::from(fill.maker_fee),
        ];
        for (leg, ((kind_expected, debit, credit), amount)) in
            legs.iter().zip(expected.into_iter().zip(amounts))
        {
            assert_eq!(
                kind(leg),
                kind_expected,
                "leg order of fill {}",
                fill.sequence
            );
            assert_eq!(
                (leg.debit_account_id, leg.credit_account_id),
                (debit, credit)
            );
            assert_eq!(leg.amount, amount, "{leg:?}");
            assert_eq!(
                leg.flags,
                TransferFlags::SETTLEMENT,
                "legs are single-phase settlement transfers: {leg:?}"
            );
            let ledger = if kind_expected == KIND_BASE {
                BASE
            } else {
                QUOTE
            };
            assert_eq!(leg.ledger, ledger, "{leg:?}");
            assert_eq!(leg.user_data_128, fill.taker_order_id, "{leg:?}");
        }
    }
    let legs_count = engine.iter().filter(|t| kind(t) >= KIND_BASE).count();
    assert_eq!(legs_count, 4 * fills.len(), "no legs without a fill");

    // Holds: reservations of exactly what each resting order needs, so `debits_pending` of
    // every account is the sum of its resting orders' needs.
    let mut needed_by_account: HashMap<u128, u128> = HashMap::new();
    for order in &orders {
        if order.state == OrderState::Resting as u8 {
            let (account_id, amount) = need(order);
            *needed_by_account.entry(account_id).or_default() += amount;
        }
    }
    for id in ACCOUNT_IDS {
        let held = needed_by_account.get(&id).copied().unwrap_or(0);
        assert_eq!(
            balances[&id].debits_pending, held,
            "debits_pending of account {id}"
        );
    }
    let escrow_pending = |side: u8| -> u128 {
        orders
            .iter()
            .filter(|o| o.state == OrderState::Resting as u8 && o.side == side)
            .map(|o| need(o).1)
            .sum()
    };
    assert_eq!(balances[&BASE_ESCROW].credits_pending, escrow_pending(SELL));
    assert_eq!(balances[&QUOTE_ESCROW].credits_pending, escrow_pending(BUY));
    assert_eq!(
        balances[&BASE_ESCROW].credits_posted, 0,
        "escrows only hold"
    );
    assert_eq!(
        balances[&QUOTE_ESCROW].credits_posted, 0,
        "escrows only hold"
    );

    let fees: u128 = fills
        .iter()
        .map(|f| u128::from(f.taker_fee) + u128::from(f.maker_fee))
        .sum();
    assert_eq!(
        balances[&FEE].credits_posted, fees,
        "the fee account got every fee"
    );

    for ledger in [BASE, QUOTE] {
        let filter = QueryFilter {
            ledger,
            limit: 100,
            ..QueryFilter::default()
        };
        let reply = request_ok(client, Operation::QueryAccounts, &encode_query(&filter));
        let on_ledger = accounts(&reply.body);
        let sum = |field: fn(&Account) -> u128| on_ledger.iter().map(field).sum::<u128>();
        assert_eq!(
            sum(|a| a.debits_posted),
            sum(|a| a.credits_posted),
            "posted debits equal credits on ledger {ledger}"
        );
        assert_eq!(
            sum(|a| a.debits_pending),
            sum(|a| a.credits_pending),
            "pending debits equal credits on ledger {ledger}"
        );
    }
}

/// Accounts on both ledgers, the traders funded from a source account on each.
fn create_ledger(client: &mut Client) {
    let limited = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let new_accounts = [
        account(BASE_SOURCE, BASE, 0),
        account(QUOTE_SOURCE, QUOTE, 0),
        account(FEE, QUOTE, 0),
        account(BASE_ESCROW, BASE, 0),
        account(QUOTE_ESCROW, QUOTE, 0),
        account(SELLER.0, BASE, limited),
        account(SELLER.1, QUOTE, limited),
        account(BUYER.0, BASE, limited),
        account(BUYER.1, QUOTE, limited),
    ];
    let reply = request_ok(
        client,
        Operation::CreateAccounts,
        &encode_accounts(&new_accounts),
    );
    assert!(results(&reply.body).iter().all(|r| r.status == CREATED));
    let funding = [
        transfer(1, BASE_SOURCE, SELLER.0, FUNDS_BASE, BASE),
        transfer(2, BASE_SOURCE, BUYER.0, FUNDS_BASE, BASE),
        transfer(3, QUOTE_SOURCE, SELLER.1, FUNDS_QUOTE, QUOTE),
        transfer(4, QUOTE_SOURCE, BUYER.1, FUNDS_QUOTE, QUOTE),
    ];
    let reply = request_ok(
        client,
        Operation::CreateTransfers,
        &encode_transfers(&funding),
    );
    assert!(results(&reply.body).iter().all(|r| r.status == CREATED));
}

fn check_markets(client: &mut Client) {
    let same_ledgers = Market {
        id: 2,
        quote_ledger: BASE,
        ..market()
    };
    let no_fee_account = Market {
        id: 3,
        fee_account_id: 999,
        ..market()
    };
    let created = create_markets(client, &[market(), same_ledgers, no_fee_account]);
    assert_eq!(created[0].status, CREATED, "the market is created");
    assert_ne!(created[0].timestamp, 0);
    assert_eq!(
        created[1].status,
        CreateMarketStatus::LedgersMustBeDifferent as u32
    );
    assert_eq!(
        created[2].status,
        CreateMarketStatus::FeeAccountNotFound as u32
    );
    let again = create_markets(client, &[market()]);
    assert_eq!(again[0].status, CreateMarketStatus::Exists as u32);
    assert_eq!(
        again[0].timestamp, created[0].timestamp,
        "the original timestamp"
    );
    let changed = Market {
        taker_fee: TAKER_FEE + 1,
        ..market()
    };
    let again = create_markets(client, &[changed]);
    assert_eq!(
        again[0].status,
        CreateMarketStatus::ExistsWithDifferentFields as u32
    );
}

fn assert_result(
    result: &OrderResult,
    state: OrderState,
    filled_quantity: u64,
    fill_count: u32,
    quote_traded: u128,
) {
    assert_eq!(
        result.status,
        OK,
        "order {} placed: {:?}",
        result.order_id,
        OrderStatus::from_u32(result.status)
    );
    assert_eq!(
        result.state, state as u8,
        "state of order {}",
        result.order_id
    );
    assert_eq!(
        (
            result.filled_quantity,
            result.fill_count,
            result.quote_traded
        ),
        (filled_quantity, fill_count, quote_traded),
        "filled quantity, fills and quote traded of order {}",
        result.order_id
    );
    assert_ne!(result.timestamp, 0);
}

/// Timestamps of the orders that took liquidity, for the fill checks.
struct Takers {
    first: u64,
    second: u64,
}

/// Places, cancels and amends orders, checking every result, the book and the orders.
fn trade(client: &mut Client) -> Takers {
    let resting_sell = order(101, SELLER, SELL, GTC, 100, 30);
    let placed = place(client, &[resting_sell]);
    assert_result(&placed[0], OrderState::Resting, 0, 0, 0);
    let first_timestamp = placed[0].timestamp;
    assert_eq!(
        account_map(client)[&SELLER.0].debits_pending,
        30,
        "the resting sell holds its base"
    );

    // Buys 50 at 110: takes 3 lots at the maker's 100, 2 lots rest at 110.
    let placed = place(client, &[order(102, BUYER, BUY, GTC, 110, 50)]);
    assert_result(&placed[0], OrderState::Resting, 30, 1, 300);
    let first_taker = placed[0].timestamp;
    assert!(first_taker > first_timestamp, "timestamps increase");

    let mut exceeds = order(107, BUYER, BUY, GTC, 100, 10_000);
    exceeds.user_data_64 = 7;
    let placed = place(
        client,
        &[
            order(103, SELLER, SELL, GTC, 120, 20),
            order(104, SELLER, SELL, GTC, 130, 10),
            order(105, BUYER, BUY, GTC, 90, 10),
            order(106, BUYER, BUY, GTC, 101, 10),
            exceeds,
            resting_sell,
        ],
    );
    for result in &placed[..3] {
        assert_result(result, OrderState::Resting, 0, 0, 0);
    }
    let rejected: Vec<(u32, u8)> = placed[3..].iter().map(|r| (r.status, r.state)).collect();
    assert_eq!(
        rejected,
        [
            (OrderStatus::PriceNotMultipleOfTick as u32, 0),
            (OrderStatus::ExceedsCredits as u32, 0),
            (OrderStatus::Exists as u32, 0),
        ],
        "rejected orders have their codes and no state"
    );

    let canceled = cancel(client, &[104, 999, 101, 104]);
    assert_eq!(
        canceled,
        [
            OK,
            OrderStatus::OrderNotFound as u32,
            OrderStatus::OrderNotResting as u32,
            OrderStatus::OrderNotResting as u32,
        ]
    );

    let amended = amend(
        client,
        &[(103, 125, 40), (102, 105, 0), (102, 0, 20), (999, 5, 0)],
    );
    assert_eq!(
        amended,
        [
            OK,
            OK,
            OrderStatus::AmendQuantityBelowFilled as u32,
            OrderStatus::OrderNotFound as u32,
        ]
    );

    assert_eq!(
        book(client),
        [
            level(BUY, 105, 20, 1),
            level(BUY, 90, 10, 1),
            level(SELL, 125, 40, 1),
        ],
        "bids best first, then asks best first"
    );
    check_settlement(client);

    let found = lookup_orders(client, &[101, 999, 103, 104, 106, 102]);
    let summary: Vec<(u128, u8, u64, u64, u64)> = found
        .iter()
        .map(|o| (o.id, o.state, o.price, o.quantity, o.filled_quantity))
        .collect();
    assert_eq!(
        summary,
        [
            (101, OrderState::Filled as u8, 100, 30, 30),
            (103, OrderState::Resting as u8, 125, 40, 0),
            (104, OrderState::Canceled as u8, 130, 10, 0),
            (102, OrderState::Resting as u8, 105, 50, 30),
        ],
        "found orders in request order, unknown and rejected ones left out"
    );
    assert_eq!(found[0].timestamp, first_timestamp);
    assert_eq!(found[0].base_account_id, SELLER.0);
    assert_eq!(found[3].quote_account_id, BUYER.1);

    // Sells 30 at 90 immediately: 2 lots at 105 and 1 lot at 90, both bids filled.
    let placed = place(client, &[order(108, SELLER, SELL, IOC, 90, 30)]);
    assert_result(&placed[0], OrderState::Filled, 30, 2, 210 + 90);
    let second_taker = placed[0].timestamp;
    assert_eq!(book(client), [level(SELL, 125, 40, 1)]);
    Takers {
        first: first_taker,
        second: second_taker,
    }
}

fn check_fills(client: &mut Client, takers: &Takers) {
    let all = market_fills(client);
    let summary: Vec<_> = all
        .iter()
        .map(|f| {
            (
                f.sequence,
                f.taker_order_id,
                f.maker_order_id,
                f.taker_side,
                f.price,
                f.quantity,
                f.quote_amount,
                f.taker_fee,
                f.maker_fee,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, 102, 101, BUY, 100, 30, 300, 6, 3),
            (2, 108, 102, SELL, 105, 20, 210, 4, 2),
            (3, 108, 105, SELL, 90, 10, 90, 2, 1),
        ]
    );
    assert!(all.iter().all(|f| f.market == MARKET));
    let timestamps: Vec<u64> = all.iter().map(|f| f.timestamp).collect();
    assert_eq!(timestamps, [takers.first, takers.second, takers.second]);

    let sequences = |fills: Vec<Fill>| fills.iter().map(|f| f.sequence).collect::<Vec<_>>();
    let reversed = FillFilter {
        market: MARKET,
        limit: 2,
        flags: FillFilter::REVERSED,
        ..FillFilter::default()
    };
    assert_eq!(
        sequences(fills(client, reversed)),
        [3, 2],
        "newest first, limited"
    );
    // By order: as taker and as maker, on any market (market 0).
    let of_order = |order_id: u128, market: u32| FillFilter {
        order_id,
        market,
        limit: 100,
        ..FillFilter::default()
    };
    assert_eq!(sequences(fills(client, of_order(102, 0))), [1, 2]);
    assert_eq!(sequences(fills(client, of_order(108, MARKET))), [2, 3]);
    assert_eq!(sequences(fills(client, of_order(101, MARKET))), [1]);
    assert_eq!(
        sequences(fills(client, of_order(104, MARKET))),
        [] as [u64; 0]
    );
    assert_eq!(sequences(fills(client, of_order(101, 9))), [] as [u64; 0]);
    let since_second = FillFilter {
        market: MARKET,
        limit: 100,
        timestamp_min: takers.second,
        ..FillFilter::default()
    };
    assert_eq!(sequences(fills(client, since_second)), [2, 3]);
    let until_first = FillFilter {
        timestamp_max: takers.first,
        ..since_second
    };
    assert_eq!(
        sequences(fills(client, until_first)),
        [] as [u64; 0],
        "empty range"
    );
    let first_only = FillFilter {
        timestamp_min: 0,
        ..until_first
    };
    assert_eq!(sequences(fills(client, first_only)), [1]);
}

/// The balances the three fills leave, by hand.
fn check_balances(client: &mut Client) {
    let balances = account_map(client);
    let posted = |id: u128| {
        let a = &balances[&id];
        (a.debits_posted, a.credits_posted, a.debits_pending)
    };
    // Seller: sold 30 + 30 base, holds 40 for order 103; got 300 + 210 + 90 quote, paid a maker
    // fee of 3 and a taker fee of 6.
    assert_eq!(posted(SELLER.0), (60, FUNDS_BASE, 40));
    assert_eq!(posted(SELLER.1), (9, FUNDS_QUOTE + 600, 0));
    // Buyer: bought 60 base; paid 300 + 6 as taker, then 210 + 2 and 90 + 1 as maker.
    assert_eq!(posted(BUYER.0), (0, FUNDS_BASE + 60, 0));
    assert_eq!(posted(BUYER.1), (609, FUNDS_QUOTE, 0));
    assert_eq!(posted(FEE), (0, 18, 0));
    assert_eq!(balances[&BASE_ESCROW].credits_pending, 40);
    assert_eq!(balances[&QUOTE_ESCROW].credits_pending, 0);
}

/// What a restart must reproduce: book, orders, fills, accounts and engine transfers, as bytes.
fn snapshot(client: &mut Client) -> [Vec<u8>; 5] {
    let book_filter = encode(
        &[BookFilter {
            market: MARKET,
            depth: 10,
            ..BookFilter::default()
        }],
        BookFilter::encode,
    );
    let fill_filter = encode(
        &[FillFilter {
            market: MARKET,
            limit: 100,
            ..FillFilter::default()
        }],
        FillFilter::encode,
    );
    let transfer_filter = QueryFilter {
        user_data_32: MARKET,
        limit: 1_000,
        ..QueryFilter::default()
    };
    [
        request_ok(client, Operation::GetBook, &book_filter).body,
        request_ok(client, Operation::LookupOrders, &encode_ids(&ORDER_IDS)).body,
        request_ok(client, Operation::GetFills, &fill_filter).body,
        request_ok(client, Operation::LookupAccounts, &encode_ids(&ACCOUNT_IDS)).body,
        request_ok(
            client,
            Operation::QueryTransfers,
            &encode_query(&transfer_filter),
        )
        .body,
    ]
}

#[test]
fn every_matching_operation_round_trips() {
    let data = data_dir();
    let mut server = Server::start(data.path(), &Options::new("data"));
    let mut client = server.client();
    create_ledger(&mut client);
    check_markets(&mut client);
    let takers = trade(&mut client);
    check_fills(&mut client, &takers);
    check_balances(&mut client);
    check_settlement(&mut client);
    let before = snapshot(&mut client);
    assert!(before.iter().all(|body| !body.is_empty()));
    drop(client);

    server.restart_after_sigterm();
    let mut client = server.client();
    let after = snapshot(&mut client);
    let names = ["book", "orders", "fills", "accounts", "engine transfers"];
    for ((name, before), after) in names.iter().zip(&before).zip(&after) {
        assert!(before == after, "{name} identical after replay");
    }
    check_fills(&mut client, &takers);
    check_balances(&mut client);
    check_settlement(&mut client);

    // The replayed engine goes on: ids are still known, and new fills and transfers continue
    // the numbering instead of colliding with the replayed ones.
    let again = create_markets(&mut client, &[market()]);
    assert_eq!(again[0].status, CreateMarketStatus::Exists as u32);
    let placed = place(
        &mut client,
        &[
            order(101, SELLER, SELL, GTC, 100, 30),
            order(109, BUYER, BUY, GTC, 125, 10),
        ],
    );
    assert_eq!(placed[0].status, OrderStatus::Exists as u32);
    assert_result(&placed[1], OrderState::Filled, 10, 1, 125);
    assert!(
        placed[1].timestamp > takers.second,
        "time moves on after replay"
    );
    let last = market_fills(&mut client);
    assert_eq!(last.len(), 4);
    assert_eq!(
        (
            last[3].sequence,
            last[3].taker_order_id,
            last[3].maker_order_id
        ),
        (4, 109, 103)
    );
    assert_eq!(book(&mut client), [level(SELL, 125, 30, 1)]);
    check_settlement(&mut client);
    let transfers_after = engine_transfers(&mut client);
    let mut ids: Vec<u128> = transfers_after.iter().map(|t| t.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        transfers_after.len(),
        "engine transfer ids are unique"
    );
}

#[test]
fn repl_places_orders_and_prints_the_book() {
    let prefixes = [
        "account id=1: created",
        "account id=2: created",
        "account id=3: created",
        "account id=4: created",
        "account id=5: created",
        "account id=10: created",
        "account id=11: created",
        "transfer id=1: created",
        "transfer id=2: created",
        "market id=1: created",
        "market id=2: ledgers_must_be_different",
        "order id=1: ok state=resting filled_quantity=0 fills=0 quote_traded=0",
        "order id=2: ok state=resting filled_quantity=0 fills=0 quote_traded=0",
        "order id=3: ok state=resting filled_quantity=0 fills=0 quote_traded=0",
        "order id=4: price_not_multiple_of_tick",
    ];
    let (_data, server, output) = repl_script(
        "create_accounts id=1 ledger=1 code=10, id=2 ledger=2 code=10, id=3 ledger=2 code=10, \
         id=4 ledger=1 code=10, id=5 ledger=2 code=10, id=10 ledger=1 code=10, \
         id=11 ledger=2 code=10; \
         create_transfers id=1 debit_account_id=1 credit_account_id=10 amount=1000 ledger=1 \
         code=10, id=2 debit_account_id=2 credit_account_id=11 amount=100000 ledger=2 code=10; \
         create_markets id=1 base_ledger=1 quote_ledger=2 lot_size=10 tick_size=5 maker_fee=1 \
         taker_fee=2 fee_account_id=3 base_escrow_account_id=4 quote_escrow_account_id=5 \
         code=9, id=2 base_ledger=1 quote_ledger=1 lot_size=10 tick_size=5 fee_account_id=3 \
         base_escrow_account_id=4 quote_escrow_account_id=5 code=9; \
         place_orders id=1 market=1 side=buy time_in_force=gtc price=100 quantity=30 \
         base_account_id=10 quote_account_id=11, id=2 market=1 side=buy time_in_force=gtc \
         price=95 quantity=20 base_account_id=10 quote_account_id=11, id=3 market=1 side=sell \
         time_in_force=gtc price=120 quantity=40 base_account_id=10 quote_account_id=11, \
         id=4 market=1 side=sell time_in_force=gtc price=121 quantity=10 base_account_id=10 \
         quote_account_id=11; \
         get_book market=1 depth=10;",
        &prefixes,
    );
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines.len(),
        prefixes.len() + 3,
        "a line per result and per level\n{output}"
    );
    let levels: Vec<Vec<&str>> = lines[prefixes.len()..]
        .iter()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        levels,
        [
            ["buy", "100", "x", "30", "(1", "orders)"],
            ["buy", "95", "x", "20", "(1", "orders)"],
            ["sell", "120", "x", "40", "(1", "orders)"],
        ],
        "the book, bids then asks\n{output}"
    );

    // The repl's orders went through the same server a program sees, with their holds.
    let mut client = server.client();
    let found = lookup_orders(&mut client, &[1, 2, 3, 4]);
    assert_eq!(found.len(), 3);
    let held = accounts(
        &request_ok(
            &mut client,
            Operation::LookupAccounts,
            &encode_ids(&[10, 11]),
        )
        .body,
    );
    assert_eq!(held[0].debits_pending, 40, "the sell holds its base");
    assert_eq!(
        held[1].debits_pending,
        3 * (100 + 2) + 2 * (95 + 2),
        "the buys hold price and fee per lot"
    );
}

/// A good-till-time order expires at its time on an idle server: the pulse that expires it is
/// journaled by the server on its own, with no write arriving. The test only reads (lookups
/// carry no journal sequence and change nothing) while it waits.
#[test]
fn good_till_time_order_expires_on_an_idle_server() {
    let data = data_dir();
    let server = Server::start(data.path(), &Options::new("data"));
    let mut client = server.client();
    create_ledger(&mut client);
    assert_eq!(create_markets(&mut client, &[market()])[0].status, CREATED);
    let gtt = Order {
        timeout: 1,
        ..order(201, SELLER, SELL, GTC, 100, 30)
    };
    let gtc = order(202, SELLER, SELL, GTC, 105, 20);
    let placed = place(&mut client, &[gtt, gtc]);
    assert_eq!(placed[0].status, OK);
    assert_eq!(placed[0].state, OrderState::Resting as u8);
    assert_eq!(account_map(&mut client)[&SELLER.0].debits_pending, 50);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let orders = lookup_orders(&mut client, &[201, 202]);
        if orders[0].state == OrderState::Expired as u8 {
            // Read after the expiry was seen: the pulse released the hold with it.
            let held = account_map(&mut client)[&SELLER.0].debits_pending;
            assert_eq!(held, 20, "the expired order's hold is released");
            assert_eq!(orders[1].state, OrderState::Resting as u8);
            break;
        }
        assert_eq!(orders[0].state, OrderState::Resting as u8);
        assert!(
            std::time::Instant::now() < deadline,
            "the good-till-time order was still resting after 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(book(&mut client), [level(SELL, 105, 20, 1)]);
}

/// A client transfer may use the very id of a settlement transfer: the two live in separate
/// namespaces. `lookup_transfers` sees the client's; the settlement transfer (a fill's leg) is
/// still found through its fill (its `user_data_128` and `user_data_64`), and the maker's hold
/// keeps working: the order's cancel releases it.
#[test]
fn client_ids_equal_to_settlement_ids_are_their_own() {
    let data = data_dir();
    let mut server = Server::start(data.path(), &Options::new("data"));
    let mut client = server.client();
    create_ledger(&mut client);
    assert_eq!(create_markets(&mut client, &[market()])[0].status, CREATED);
    let placed = place(&mut client, &[order(301, SELLER, SELL, GTC, 100, 30)]);
    assert_eq!(placed[0].status, OK);
    assert!(
        engine_transfers(&mut client).is_empty(),
        "a hold is no transfer"
    );
    let placed = place(&mut client, &[order(302, BUYER, BUY, GTC, 100, 10)]);
    assert_eq!(placed[0].status, OK);
    let legs: Vec<Transfer> = engine_transfers(&mut client)
        .into_iter()
        .filter(|t| t.user_data_128 == 302 && kind(t) == KIND_BASE)
        .collect();
    assert_eq!(legs.len(), 1);
    let hold = legs[0];
    assert_eq!(hold.flags, TransferFlags::SETTLEMENT);
    assert_eq!(hold.amount, 10);

    let same_id = transfer(hold.id, BASE_SOURCE, SELLER.0, 7, BASE);
    let reply = request_ok(
        &mut client,
        Operation::CreateTransfers,
        &encode_transfers(&[same_id]),
    );
    assert_eq!(results(&reply.body)[0].status, CREATED);
    let check = |client: &mut Client| {
        let reply = request_ok(client, Operation::LookupTransfers, &encode_ids(&[hold.id]));
        let found = transfers(&reply.body);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].amount, found[0].flags, found[0].debit_account_id),
            (7, 0, BASE_SOURCE),
            "lookup_transfers sees the client's transfer"
        );
        assert_eq!(account_map(client)[&SELLER.0].debits_pending, 20);
        let leg = engine_transfers(client)
            .into_iter()
            .find(|t| t.user_data_128 == 302 && kind(t) == KIND_BASE);
        assert_eq!(leg, Some(hold), "the leg is found through its fill");
    };
    check(&mut client);
    drop(client);
    assert!(server.terminate().success());
    server.restart();
    let mut client = server.client();
    check(&mut client);
    assert_eq!(cancel(&mut client, &[301]), [OK]);
    assert_eq!(account_map(&mut client)[&SELLER.0].debits_pending, 0);
}
