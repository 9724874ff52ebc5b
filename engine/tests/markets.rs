//! Markets are cheap until orders rest in them: 10,000 markets fit the default configuration,
//! share one pool of order slots, and trade independently.

use clearline_engine::{
    Account, Config, CreateMarketStatus, CreateResult, Engine, Market, Order, OrderResult,
    OrderState, Transfer,
};

const BASE: u32 = 1;
const QUOTE: u32 = 2;
const CREATED: u32 = u32::MAX;
const MARKETS: u32 = 10_000;

fn account(id: u128, ledger: u32) -> Account {
    Account {
        id,
        ledger,
        code: 1,
        ..Account::default()
    }
}

fn market(id: u32) -> Market {
    Market {
        id,
        base_ledger: BASE,
        quote_ledger: QUOTE,
        lot_size: 1,
        tick_size: 1,
        fee_account_id: 3,
        base_escrow_account_id: 4,
        quote_escrow_account_id: 5,
        code: 1,
        ..Market::default()
    }
}

fn sell(id: u128, market: u32, price: u64) -> Order {
    Order {
        id,
        market,
        base_account_id: 10,
        quote_account_id: 11,
        price,
        quantity: 1,
        side: 2,
        time_in_force: 1,
        ..Order::default()
    }
}

#[test]
fn ten_thousand_markets_fit_the_default_configuration() {
    assert!(Config::default().markets_max >= MARKETS);
    // An empty market costs a few hundred bytes, not a book sized for every order.
    let per_market = Engine::bytes_per_market(Config::default().markets_max);
    assert!(per_market <= 512, "{per_market} bytes per empty market");
    let default = Config::default();
    let books = Engine::books_bytes(&default);
    let without_markets = Engine::books_bytes(&Config {
        markets_max: 0,
        ..default
    });
    assert!(books - without_markets <= u64::from(MARKETS) * 512);

    let config = Config {
        markets_max: MARKETS,
        orders_max: 4096,
        ..Config::test_small()
    };
    let mut engine = Engine::new(&config);
    let mut now = 1u64 << 40;
    let accounts = [
        account(3, QUOTE),
        account(4, BASE),
        account(5, QUOTE),
        account(6, BASE),
        account(10, BASE),
        account(11, QUOTE),
    ];
    let mut results = vec![CreateResult::default(); accounts.len()];
    now += 1 << 20;
    engine.create_accounts(now, &accounts, &mut results);
    assert!(results.iter().all(|r| r.status == CREATED));
    let funding = Transfer {
        id: 1,
        debit_account_id: 6,
        credit_account_id: 10,
        amount: 1_000_000,
        ledger: BASE,
        code: 1,
        ..Transfer::default()
    };
    let mut results = [CreateResult::default()];
    now += 1 << 20;
    engine.create_transfers(now, &[funding], &mut results);
    assert_eq!(results[0].status, CREATED);

    let markets: Vec<Market> = (1..=MARKETS).map(market).collect();
    for batch in markets.chunks(8191) {
        let mut results = vec![CreateResult::default(); batch.len()];
        now += 1 << 20;
        engine.create_markets(now, batch, &mut results);
        assert!(results.iter().all(|r| r.status == CREATED));
    }
    let mut results = [CreateResult::default()];
    now += 1 << 20;
    engine.create_markets(now, &[market(MARKETS + 1)], &mut results);
    assert_eq!(
        results[0].status,
        CreateMarketStatus::MarketsCapacityExceeded as u32
    );

    // Orders rest in the first, a middle and the last market from the one shared pool.
    let orders = [sell(1, 1, 100), sell(2, 5_000, 100), sell(3, MARKETS, 100)];
    let mut placed = [OrderResult::default(); 3];
    now += 1 << 20;
    engine.place_orders(now, &orders, &mut placed);
    for result in &placed {
        assert_eq!(result.status, CREATED, "{result:?}");
        assert_eq!(result.state, OrderState::Resting as u8);
    }
    engine.verify();
}
