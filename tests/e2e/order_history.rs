//! Orders and fills in history mode (`clearline start --history`, docs/history.md) over the
//! wire: a server whose memory holds 4,096 orders and 4,096 fills takes many times that many
//! of each without a capacity code, and still answers for every order and fill it ever made
//! (`lookup_orders`, `get_fills` by market and by order, re-placing an old id answers `exists`
//! or `exists_with_different_fields`, a cancel of an old order `order_not_resting`) before and
//! after kill -9.

use clearline_engine::{
    CreateResult, Fill, FillFilter, Market, Operation, Order, OrderResult, OrderState, OrderStatus,
};
use clearline_net::Client;

use crate::support::{
    account, data_dir, encode, encode_accounts, encode_ids, encode_transfers, request_ok, results,
    transfer, Options, Server,
};

/// Orders and fills the server keeps in memory.
const MEMORY: u32 = 4_096;
/// Buy-sell pairs placed: each pair is two orders and one fill, all finished at once.
const PAIRS: u128 = 20_000;
/// Pairs per request (one request of sells, then one of buys).
const BATCH: u128 = 8;
/// Orders that rest the whole time, far from the traded price.
const RESTING: u128 = 10;

const BASE: u32 = 810;
const QUOTE: u32 = 811;
const BASE_SOURCE: u128 = 1;
const QUOTE_SOURCE: u128 = 2;
const FEE: u128 = 3;
const BASE_ESCROW: u128 = 4;
const QUOTE_ESCROW: u128 = 5;
const SELLER: (u128, u128) = (11, 12);
const BUYER: (u128, u128) = (21, 22);
const MARKET: u32 = 1;
const PRICE: u64 = 100;
const OK: u32 = OrderStatus::Ok as u32;
const BUY: u8 = 1;
const SELL: u8 = 2;
const GTC: u8 = 1;
const IOC: u8 = 2;

fn options() -> Options {
    Options::new("data")
        .switch("history")
        .flag("orders-max", MEMORY)
        .flag("fills-max", MEMORY)
        .flag("transfers-max", 16_384)
        .flag("transfers-pending-max", 4_096)
        .flag("account-balances-max", 32_768)
        .flag("ids-max", 1 << 20)
        .flag("checkpoint-interval-mib", 1)
}

/// Order id of the sell (`side` 0) or the buy (1) of pair `pair`, after the resting orders.
fn order_id(pair: u128, side: u128) -> u128 {
    1_000 + 2 * pair + side
}

fn sell(pair: u128) -> Order {
    Order {
        id: order_id(pair, 0),
        base_account_id: SELLER.0,
        quote_account_id: SELLER.1,
        price: PRICE,
        quantity: 1 + (pair % 3) as u64,
        market: MARKET,
        side: SELL,
        time_in_force: GTC,
        ..Order::default()
    }
}

/// The buy that takes pair `pair`'s sell whole.
fn buy(pair: u128) -> Order {
    Order {
        id: order_id(pair, 1),
        base_account_id: BUYER.0,
        quote_account_id: BUYER.1,
        side: BUY,
        time_in_force: IOC,
        ..sell(pair)
    }
}

fn decode<const SIZE: usize, T>(body: &[u8], read: impl Fn(&[u8; SIZE]) -> T) -> Vec<T> {
    assert_eq!(body.len() % SIZE, 0, "reply body is whole items");
    body.chunks_exact(SIZE)
        .map(|chunk| read(chunk.try_into().expect("chunk of the item size")))
        .collect()
}

fn place(client: &mut Client, orders: &[Order]) -> Vec<OrderResult> {
    let reply = request_ok(
        client,
        Operation::PlaceOrders,
        &encode(orders, Order::encode),
    );
    decode(&reply.body, OrderResult::decode)
}

fn lookup_orders(client: &mut Client, ids: &[u128]) -> Vec<Order> {
    let reply = request_ok(client, Operation::LookupOrders, &encode_ids(ids));
    decode(&reply.body, Order::decode)
}

fn fills(client: &mut Client, filter: FillFilter) -> Vec<Fill> {
    let body = encode(&[filter], FillFilter::encode);
    decode(
        &request_ok(client, Operation::GetFills, &body).body,
        Fill::decode,
    )
}

fn create_ledger(client: &mut Client) {
    let new_accounts = [
        account(BASE_SOURCE, BASE, 0),
        account(QUOTE_SOURCE, QUOTE, 0),
        account(FEE, QUOTE, 0),
        account(BASE_ESCROW, BASE, 0),
        account(QUOTE_ESCROW, QUOTE, 0),
        account(SELLER.0, BASE, 0),
        account(SELLER.1, QUOTE, 0),
        account(BUYER.0, BASE, 0),
        account(BUYER.1, QUOTE, 0),
    ];
    let reply = request_ok(
        client,
        Operation::CreateAccounts,
        &encode_accounts(&new_accounts),
    );
    assert!(results(&reply.body)
        .iter()
        .all(|r| r.status == CreateResult::STATUS_CREATED));
    let funds = 1 << 60;
    let funding = [
        transfer(1, BASE_SOURCE, SELLER.0, funds, BASE),
        transfer(2, QUOTE_SOURCE, BUYER.1, funds, QUOTE),
    ];
    let reply = request_ok(
        client,
        Operation::CreateTransfers,
        &encode_transfers(&funding),
    );
    assert!(results(&reply.body)
        .iter()
        .all(|r| r.status == CreateResult::STATUS_CREATED));
    let market = Market {
        id: MARKET,
        base_ledger: BASE,
        quote_ledger: QUOTE,
        lot_size: 1,
        tick_size: 1,
        maker_fee: 1,
        taker_fee: 2,
        fee_account_id: FEE,
        base_escrow_account_id: BASE_ESCROW,
        quote_escrow_account_id: QUOTE_ESCROW,
        code: 1,
        ..Market::default()
    };
    let reply = request_ok(
        client,
        Operation::CreateMarkets,
        &encode(&[market], Market::encode),
    );
    assert_eq!(results(&reply.body)[0].status, CreateResult::STATUS_CREATED);
}

/// What the server must still answer for every order and fill of the run.
fn check_everything(client: &mut Client, context: &str) {
    // The first and the last pairs, and pairs in between, as orders.
    for pair in [0, 1, PAIRS / 3, PAIRS / 2, PAIRS - 1] {
        let ids = [order_id(pair, 0), order_id(pair, 1)];
        let found = lookup_orders(client, &ids);
        assert_eq!(found.len(), 2, "{context}: orders of pair {pair}");
        for (order, expected) in found.iter().zip([sell(pair), buy(pair)]) {
            assert_eq!(order.id, expected.id, "{context}");
            assert_eq!(order.quantity, expected.quantity, "{context}");
            assert_eq!(order.filled_quantity, expected.quantity, "{context}");
            assert_eq!(
                order.state,
                OrderState::Filled as u8,
                "{context}: {order:?}"
            );
        }
        // The pair's one fill, through either order, in any market or this one.
        for (id, market) in [(ids[0], 0), (ids[1], MARKET)] {
            let filter = FillFilter {
                order_id: id,
                market,
                limit: 10,
                ..FillFilter::default()
            };
            let found = fills(client, filter);
            assert_eq!(found.len(), 1, "{context}: fills of order {id}");
            assert_eq!(found[0].sequence, pair as u64 + 1, "{context}");
            assert_eq!(found[0].taker_order_id, ids[1], "{context}");
            assert_eq!(found[0].maker_order_id, ids[0], "{context}");
        }
    }
    // The resting orders never left.
    let resting: Vec<u128> = (1..=RESTING).collect();
    let found = lookup_orders(client, &resting);
    assert_eq!(found.len(), RESTING as usize, "{context}");
    assert!(found.iter().all(|o| o.state == OrderState::Resting as u8));
    // The market's fills: the oldest first, the newest first, and a range in the middle.
    let oldest = fills(
        client,
        FillFilter {
            market: MARKET,
            limit: 50,
            ..FillFilter::default()
        },
    );
    let sequences: Vec<u64> = oldest.iter().map(|f| f.sequence).collect();
    assert_eq!(sequences, (1..=50).collect::<Vec<u64>>(), "{context}");
    let newest = fills(
        client,
        FillFilter {
            market: MARKET,
            limit: 50,
            flags: FillFilter::REVERSED,
            ..FillFilter::default()
        },
    );
    let sequences: Vec<u64> = newest.iter().map(|f| f.sequence).collect();
    let last = PAIRS as u64;
    assert_eq!(
        sequences,
        (last - 49..=last).rev().collect::<Vec<u64>>(),
        "{context}"
    );
    let middle = &oldest[10..20];
    let range = fills(
        client,
        FillFilter {
            market: MARKET,
            limit: 10,
            timestamp_min: middle[0].timestamp,
            timestamp_max: middle[9].timestamp,
            ..FillFilter::default()
        },
    );
    assert_eq!(range, middle, "{context}");
    // Old ids: the same order again is `exists`, a changed one `exists_with_different_fields`;
    // a cancel of a filled order that left memory is `order_not_resting`.
    let changed = Order {
        price: PRICE + 1,
        ..sell(2)
    };
    let statuses: Vec<u32> = place(client, &[sell(1), changed])
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::Exists as u32,
            OrderStatus::ExistsWithDifferentFields as u32
        ],
        "{context}"
    );
    let reply = request_ok(
        client,
        Operation::CancelOrders,
        &encode_ids(&[order_id(3, 0)]),
    );
    let status = results(&reply.body)[0].status;
    assert_eq!(status, OrderStatus::OrderNotResting as u32, "{context}");
}

#[test]
fn orders_and_fills_go_far_past_their_memory_and_are_kept_across_kill() {
    let data = data_dir();
    let mut server = Server::start(data.path(), &options());
    let mut client = server.client();
    create_ledger(&mut client);
    let resting: Vec<Order> = (1..=RESTING)
        .map(|id| Order {
            id,
            price: PRICE * 10,
            ..sell(0)
        })
        .collect();
    assert!(place(&mut client, &resting).iter().all(|r| r.status == OK));
    let mut pair = 0;
    while pair < PAIRS {
        let end = (pair + BATCH).min(PAIRS);
        let sells: Vec<Order> = (pair..end).map(sell).collect();
        let buys: Vec<Order> = (pair..end).map(buy).collect();
        for (orders, state) in [(sells, OrderState::Resting), (buys, OrderState::Filled)] {
            for result in place(&mut client, &orders) {
                assert_eq!(result.status, OK, "order {}: {result:?}", result.order_id);
                assert_eq!(result.state, state as u8, "order {}", result.order_id);
            }
        }
        pair = end;
    }
    assert!(PAIRS * 2 > 8 * u128::from(MEMORY) && PAIRS > 4 * u128::from(MEMORY));
    check_everything(&mut client, "before the kill");
    server.kill();
    server.restart();
    let mut client = server.client();
    check_everything(&mut client, "after kill -9");
    // Trading goes on after the restart.
    let pairs = [PAIRS, PAIRS + 1];
    let sells: Vec<Order> = pairs.iter().map(|p| sell(*p)).collect();
    let buys: Vec<Order> = pairs.iter().map(|p| buy(*p)).collect();
    assert!(place(&mut client, &sells).iter().all(|r| r.status == OK));
    assert!(place(&mut client, &buys).iter().all(|r| r.status == OK));
}
