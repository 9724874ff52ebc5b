//! `clearline repl`: an interactive client for people.
//!
//! Statements look like `create_accounts id=1 ledger=700 code=10, id=2 ledger=700 code=10;`:
//! an operation, then objects separated by commas, each a list of `field=value` pairs, ended by
//! a semicolon. Numbers are decimal or `0x` hexadecimal; flags are names joined by `|`
//! (`flags=linked|pending`). Results print with the names of their codes.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;

use clearline_engine::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, CreateAccountStatus,
    CreateResult, CreateTransferStatus, Operation, QueryFilter, QueryFilterFlags, Transfer,
    TransferFlags,
};
use clearline_engine::{BookFilter, BookLevel, Fill, FillFilter, Order, OrderAmend, OrderResult};
use clearline_engine::{CreateMarketStatus, Market, OrderStatus, State};
use clearline_net::{Client, FrameStatus};

use crate::cli::ReplArgs;

type BoxError = Box<dyn std::error::Error>;

/// Runs the repl until end of input or `exit;`.
pub fn run(args: &ReplArgs) -> Result<(), BoxError> {
    let mut client = Client::connect(args.addr)
        .map_err(|error| format!("cannot connect to {}: {error}", args.addr))?;
    if let Some(command) = &args.command {
        for statement in split_statements(command) {
            let output = execute(&mut client, &statement)?;
            say_inline!("{output}");
        }
        return Ok(());
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        say!(
            "clearline repl, connected to {}. Type `help;` for help, `exit;` to leave.",
            args.addr
        );
    }
    let stdin = std::io::stdin();
    let mut pending = String::new();
    loop {
        if interactive {
            say_inline!("{}", if pending.is_empty() { "> " } else { ". " });
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        pending.push_str(&line);
        while let Some(end) = pending.find(';') {
            let statement: String = pending[..end].trim().to_string();
            pending.drain(..=end);
            if statement == "exit" || statement == "quit" {
                return Ok(());
            }
            if statement.is_empty() {
                continue;
            }
            match execute(&mut client, &statement) {
                Ok(output) => say_inline!("{output}"),
                Err(error) => say!("error: {error}"),
            }
        }
    }
    Ok(())
}

fn split_statements(text: &str) -> Vec<String> {
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Parses and runs one statement (without its `;`), returning what to print.
pub fn execute(client: &mut Client, statement: &str) -> Result<String, BoxError> {
    let parsed = parse(statement)?;
    if parsed.operation == "help" {
        return Ok(HELP.to_string());
    }
    let operation = Operation::ALL
        .into_iter()
        .filter(|operation| operation.is_client_operation())
        .find(|operation| operation.name() == parsed.operation)
        .ok_or_else(|| format!("unknown operation `{}` (try `help;`)", parsed.operation))?;
    let body = encode_events(operation, &parsed.objects)?;
    // The client follows `not_primary` redirects (docs/protocol.md section 4.1); a request it
    // sent again to the primary shows as a change of server.
    let server_before = client.server_addr();
    let reply = client.request(operation, &body)?;
    let moved = moved_line(server_before, client.server_addr());
    if reply.status() != FrameStatus::Ok {
        return Err(format!(
            "{moved}the server answered with frame status {:?}",
            reply.status()
        )
        .into());
    }
    Ok(moved + &render_reply(operation, &parsed.objects, &reply.body))
}

/// The line that says the client followed a redirect to another server, or nothing.
fn moved_line(before: SocketAddr, after: SocketAddr) -> String {
    if before == after {
        String::new()
    } else {
        format!("moved to the primary at {after}\n")
    }
}

const HELP: &str = "\
Statements end with `;`. Objects are separated by `,`; fields are `name=value`.

  create_accounts id=1 ledger=700 code=10, id=2 ledger=700 code=10;
  create_transfers id=1 debit_account_id=1 credit_account_id=2 amount=10 ledger=700 code=10;
  lookup_accounts id=1, id=2;
  lookup_transfers id=1;
  get_account_transfers account_id=1 flags=debits|credits limit=10;
  get_account_balances account_id=1 flags=debits|credits limit=10;
  query_accounts ledger=700 limit=10;
  query_transfers code=10 limit=10 flags=reversed;
  create_markets id=1 base_ledger=1 quote_ledger=2 lot_size=10 tick_size=5 maker_fee=1
      taker_fee=2 fee_account_id=3 base_escrow_account_id=4 quote_escrow_account_id=5 code=9;
  place_orders id=1 market=1 side=buy time_in_force=gtc price=100 quantity=30
      base_account_id=10 quote_account_id=11;
  cancel_orders id=1;
  amend_orders order_id=1 price=105 quantity=20;
  lookup_orders id=1;
  get_book market=1 depth=10;
  get_fills market=1 limit=10 flags=reversed;
  get_state;   (the state hash, clock and counts; walks the whole state, for operators)

Account flags: linked debits_must_not_exceed_credits credits_must_not_exceed_debits history
               imported closed
Transfer flags: linked pending post_pending_transfer void_pending_transfer balancing_debit
                balancing_credit closing_debit closing_credit imported
Filter flags: debits credits reversed
Order fields: side=buy|sell time_in_force=gtc|ioc|fok|post_only|market
              self_trade=cancel_incoming|cancel_resting|cancel_both
";

/// One parsed statement.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    /// The operation's name.
    pub operation: String,
    /// Objects, each a list of (field, value) pairs in the order written.
    pub objects: Vec<Vec<(String, String)>>,
}

/// Parses `operation field=value ..., field=value ...`.
pub fn parse(statement: &str) -> Result<Statement, String> {
    let statement = statement.trim().trim_end_matches(';').trim();
    let (operation, rest) = match statement.split_once(char::is_whitespace) {
        Some((operation, rest)) => (operation, rest),
        None => (statement, ""),
    };
    if operation.is_empty() {
        return Err("empty statement".to_string());
    }
    let mut objects = Vec::new();
    for object in rest.split(',') {
        let mut fields = Vec::new();
        for pair in object.split_whitespace() {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not of the form field=value"))?;
            if name.is_empty() || value.is_empty() {
                return Err(format!("`{pair}` is not of the form field=value"));
            }
            fields.push((name.to_string(), value.to_string()));
        }
        if !fields.is_empty() {
            objects.push(fields);
        }
    }
    Ok(Statement {
        operation: operation.to_string(),
        objects,
    })
}

fn number(name: &str, value: &str) -> Result<u128, String> {
    let value = value.replace('_', "");
    let parsed = if let Some(hex) = value.strip_prefix("0x") {
        u128::from_str_radix(hex, 16)
    } else {
        value.parse::<u128>()
    };
    parsed.map_err(|_| format!("{name}: `{value}` is not an unsigned number"))
}

fn narrow<T: TryFrom<u128>>(name: &str, value: &str) -> Result<T, String> {
    let wide = number(name, value)?;
    T::try_from(wide).map_err(|_| format!("{name}: {wide} does not fit the field"))
}

fn flags(name: &str, value: &str, table: &[(&str, u32)]) -> Result<u32, String> {
    if value.starts_with(|c: char| c.is_ascii_digit()) {
        return narrow(name, value);
    }
    let mut bits = 0;
    for flag in value.split('|') {
        let (_, bit) = table
            .iter()
            .find(|(flag_name, _)| *flag_name == flag)
            .ok_or_else(|| format!("{name}: unknown flag `{flag}`"))?;
        bits |= bit;
    }
    Ok(bits)
}

const ACCOUNT_FLAGS: [(&str, u32); 6] = [
    ("linked", AccountFlags::LINKED as u32),
    (
        "debits_must_not_exceed_credits",
        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS as u32,
    ),
    (
        "credits_must_not_exceed_debits",
        AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS as u32,
    ),
    ("history", AccountFlags::HISTORY as u32),
    ("imported", AccountFlags::IMPORTED as u32),
    ("closed", AccountFlags::CLOSED as u32),
];

const TRANSFER_FLAGS: [(&str, u32); 9] = [
    ("linked", TransferFlags::LINKED as u32),
    ("pending", TransferFlags::PENDING as u32),
    (
        "post_pending_transfer",
        TransferFlags::POST_PENDING_TRANSFER as u32,
    ),
    (
        "void_pending_transfer",
        TransferFlags::VOID_PENDING_TRANSFER as u32,
    ),
    ("balancing_debit", TransferFlags::BALANCING_DEBIT as u32),
    ("balancing_credit", TransferFlags::BALANCING_CREDIT as u32),
    ("closing_debit", TransferFlags::CLOSING_DEBIT as u32),
    ("closing_credit", TransferFlags::CLOSING_CREDIT as u32),
    ("imported", TransferFlags::IMPORTED as u32),
];

const ACCOUNT_FILTER_FLAGS: [(&str, u32); 3] = [
    ("debits", AccountFilterFlags::DEBITS),
    ("credits", AccountFilterFlags::CREDITS),
    ("reversed", AccountFilterFlags::REVERSED),
];

const QUERY_FILTER_FLAGS: [(&str, u32); 1] = [("reversed", QueryFilterFlags::REVERSED)];

fn unknown_field(operation: Operation, name: &str) -> String {
    format!("{}: unknown field `{name}`", operation.name())
}

fn account(fields: &[(String, String)]) -> Result<Account, String> {
    let mut account = Account::default();
    for (name, value) in fields {
        match name.as_str() {
            "id" => account.id = number(name, value)?,
            "debits_pending" => account.debits_pending = number(name, value)?,
            "debits_posted" => account.debits_posted = number(name, value)?,
            "credits_pending" => account.credits_pending = number(name, value)?,
            "credits_posted" => account.credits_posted = number(name, value)?,
            "user_data_128" => account.user_data_128 = number(name, value)?,
            "user_data_64" => account.user_data_64 = narrow(name, value)?,
            "user_data_32" => account.user_data_32 = narrow(name, value)?,
            "ledger" => account.ledger = narrow(name, value)?,
            "code" => account.code = narrow(name, value)?,
            "flags" => account.flags = flags(name, value, &ACCOUNT_FLAGS)? as u16,
            "timestamp" => account.timestamp = narrow(name, value)?,
            _ => return Err(unknown_field(Operation::CreateAccounts, name)),
        }
    }
    Ok(account)
}

fn transfer(fields: &[(String, String)]) -> Result<Transfer, String> {
    let mut transfer = Transfer::default();
    for (name, value) in fields {
        match name.as_str() {
            "id" => transfer.id = number(name, value)?,
            "debit_account_id" => transfer.debit_account_id = number(name, value)?,
            "credit_account_id" => transfer.credit_account_id = number(name, value)?,
            "amount" => transfer.amount = number(name, value)?,
            "pending_id" => transfer.pending_id = number(name, value)?,
            "user_data_128" => transfer.user_data_128 = number(name, value)?,
            "user_data_64" => transfer.user_data_64 = narrow(name, value)?,
            "user_data_32" => transfer.user_data_32 = narrow(name, value)?,
            "timeout" => transfer.timeout = narrow(name, value)?,
            "ledger" => transfer.ledger = narrow(name, value)?,
            "code" => transfer.code = narrow(name, value)?,
            "flags" => transfer.flags = flags(name, value, &TRANSFER_FLAGS)? as u16,
            "timestamp" => transfer.timestamp = narrow(name, value)?,
            _ => return Err(unknown_field(Operation::CreateTransfers, name)),
        }
    }
    Ok(transfer)
}

fn account_filter(fields: &[(String, String)]) -> Result<AccountFilter, String> {
    let mut filter = AccountFilter {
        limit: 8_189,
        flags: AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS,
        ..AccountFilter::default()
    };
    for (name, value) in fields {
        match name.as_str() {
            "account_id" | "id" => filter.account_id = number(name, value)?,
            "user_data_128" => filter.user_data_128 = number(name, value)?,
            "user_data_64" => filter.user_data_64 = narrow(name, value)?,
            "user_data_32" => filter.user_data_32 = narrow(name, value)?,
            "code" => filter.code = narrow(name, value)?,
            "timestamp_min" => filter.timestamp_min = narrow(name, value)?,
            "timestamp_max" => filter.timestamp_max = narrow(name, value)?,
            "limit" => filter.limit = narrow(name, value)?,
            "flags" => filter.flags = flags(name, value, &ACCOUNT_FILTER_FLAGS)?,
            _ => return Err(unknown_field(Operation::GetAccountTransfers, name)),
        }
    }
    Ok(filter)
}

fn query_filter(fields: &[(String, String)]) -> Result<QueryFilter, String> {
    let mut filter = QueryFilter {
        limit: 8_189,
        ..QueryFilter::default()
    };
    for (name, value) in fields {
        match name.as_str() {
            "user_data_128" => filter.user_data_128 = number(name, value)?,
            "user_data_64" => filter.user_data_64 = narrow(name, value)?,
            "user_data_32" => filter.user_data_32 = narrow(name, value)?,
            "ledger" => filter.ledger = narrow(name, value)?,
            "code" => filter.code = narrow(name, value)?,
            "timestamp_min" => filter.timestamp_min = narrow(name, value)?,
            "timestamp_max" => filter.timestamp_max = narrow(name, value)?,
            "limit" => filter.limit = narrow(name, value)?,
            "flags" => filter.flags = flags(name, value, &QUERY_FILTER_FLAGS)?,
            _ => return Err(unknown_field(Operation::QueryAccounts, name)),
        }
    }
    Ok(filter)
}

fn market(fields: &[(String, String)]) -> Result<Market, String> {
    let mut market = Market::default();
    for (name, value) in fields {
        match name.as_str() {
            "id" => market.id = narrow(name, value)?,
            "fee_account_id" => market.fee_account_id = number(name, value)?,
            "base_escrow_account_id" => market.base_escrow_account_id = number(name, value)?,
            "quote_escrow_account_id" => market.quote_escrow_account_id = number(name, value)?,
            "user_data_128" => market.user_data_128 = number(name, value)?,
            "lot_size" => market.lot_size = narrow(name, value)?,
            "tick_size" => market.tick_size = narrow(name, value)?,
            "maker_fee" => market.maker_fee = narrow(name, value)?,
            "taker_fee" => market.taker_fee = narrow(name, value)?,
            "base_ledger" => market.base_ledger = narrow(name, value)?,
            "quote_ledger" => market.quote_ledger = narrow(name, value)?,
            "code" => market.code = narrow(name, value)?,
            "flags" => market.flags = narrow(name, value)?,
            "user_data_64" => market.user_data_64 = narrow(name, value)?,
            "timestamp" => market.timestamp = narrow(name, value)?,
            _ => return Err(unknown_field(Operation::CreateMarkets, name)),
        }
    }
    Ok(market)
}

const SIDES: [(&str, u8); 2] = [("buy", 1), ("sell", 2)];
const TIMES_IN_FORCE: [(&str, u8); 5] = [
    ("gtc", 1),
    ("ioc", 2),
    ("fok", 3),
    ("post_only", 4),
    ("market", 5),
];
const SELF_TRADE: [(&str, u8); 3] = [
    ("cancel_incoming", 0),
    ("cancel_resting", 1),
    ("cancel_both", 2),
];
const ORDER_STATES: [(&str, u8); 5] = [
    ("resting", 1),
    ("filled", 2),
    ("canceled", 3),
    ("expired", 4),
    ("done", 5),
];

/// A named enum value (or its number).
fn choice(name: &str, value: &str, table: &[(&str, u8)]) -> Result<u8, String> {
    match table.iter().find(|(label, _)| *label == value) {
        Some((_, number)) => Ok(*number),
        None => narrow(name, value),
    }
}

fn choice_name(value: u8, table: &[(&str, u8)]) -> String {
    table
        .iter()
        .find(|(_, number)| *number == value)
        .map_or_else(|| value.to_string(), |(label, _)| label.to_string())
}

fn order(fields: &[(String, String)]) -> Result<Order, String> {
    let mut order = Order::default();
    for (name, value) in fields {
        match name.as_str() {
            "id" => order.id = number(name, value)?,
            "base_account_id" => order.base_account_id = number(name, value)?,
            "quote_account_id" => order.quote_account_id = number(name, value)?,
            "user_data_128" => order.user_data_128 = number(name, value)?,
            "price" => order.price = narrow(name, value)?,
            "quantity" => order.quantity = narrow(name, value)?,
            "quote_budget" => order.quote_budget = narrow(name, value)?,
            "user_data_64" => order.user_data_64 = narrow(name, value)?,
            "market" => order.market = narrow(name, value)?,
            "timeout" => order.timeout = narrow(name, value)?,
            "user_data_32" => order.user_data_32 = narrow(name, value)?,
            "side" => order.side = choice(name, value, &SIDES)?,
            "time_in_force" => order.time_in_force = choice(name, value, &TIMES_IN_FORCE)?,
            "self_trade" => order.self_trade = choice(name, value, &SELF_TRADE)?,
            _ => return Err(unknown_field(Operation::PlaceOrders, name)),
        }
    }
    Ok(order)
}

fn amend(fields: &[(String, String)]) -> Result<OrderAmend, String> {
    let mut amend = OrderAmend::default();
    for (name, value) in fields {
        match name.as_str() {
            "order_id" | "id" => amend.order_id = number(name, value)?,
            "price" => amend.price = narrow(name, value)?,
            "quantity" => amend.quantity = narrow(name, value)?,
            _ => return Err(unknown_field(Operation::AmendOrders, name)),
        }
    }
    Ok(amend)
}

fn book_filter(fields: &[(String, String)]) -> Result<BookFilter, String> {
    let mut filter = BookFilter {
        depth: 10,
        ..BookFilter::default()
    };
    for (name, value) in fields {
        match name.as_str() {
            "market" => filter.market = narrow(name, value)?,
            "depth" => filter.depth = narrow(name, value)?,
            _ => return Err(unknown_field(Operation::GetBook, name)),
        }
    }
    Ok(filter)
}

const FILL_FILTER_FLAGS: [(&str, u32); 1] = [("reversed", FillFilter::REVERSED)];

fn fill_filter(fields: &[(String, String)]) -> Result<FillFilter, String> {
    let mut filter = FillFilter {
        limit: 8_189,
        ..FillFilter::default()
    };
    for (name, value) in fields {
        match name.as_str() {
            "order_id" => filter.order_id = number(name, value)?,
            "market" => filter.market = narrow(name, value)?,
            "limit" => filter.limit = narrow(name, value)?,
            "timestamp_min" => filter.timestamp_min = narrow(name, value)?,
            "timestamp_max" => filter.timestamp_max = narrow(name, value)?,
            "flags" => filter.flags = flags(name, value, &FILL_FILTER_FLAGS)?,
            _ => return Err(unknown_field(Operation::GetFills, name)),
        }
    }
    Ok(filter)
}

fn id(operation: Operation, fields: &[(String, String)]) -> Result<u128, String> {
    match fields {
        [(name, value)] if name == "id" => number(name, value),
        _ => Err(format!("{}: give each object as `id=N`", operation.name())),
    }
}

/// Encodes the parsed objects as the operation's events.
pub fn encode_events(
    operation: Operation,
    objects: &[Vec<(String, String)>],
) -> Result<Vec<u8>, String> {
    if operation == Operation::GetState {
        // Its one event is reserved bytes, all zero: the statement has no objects.
        if !objects.is_empty() {
            return Err("get_state takes no fields: write `get_state;`".to_string());
        }
        return Ok(vec![0; operation.event_size()]);
    }
    let (events_min, events_max) = operation.events_range();
    let count = objects.len();
    if count < events_min as usize || count > events_max as usize {
        return Err(format!(
            "{} takes {} to {} objects, not {count}",
            operation.name(),
            events_min,
            events_max
        ));
    }
    let mut body = Vec::with_capacity(count * operation.event_size());
    for fields in objects {
        match operation {
            Operation::CreateAccounts => {
                let mut bytes = [0; Account::SIZE];
                account(fields)?.encode(&mut bytes);
                body.extend_from_slice(&bytes);
            }
            Operation::CreateTransfers => {
                let mut bytes = [0; Transfer::SIZE];
                transfer(fields)?.encode(&mut bytes);
                body.extend_from_slice(&bytes);
            }
            Operation::LookupAccounts | Operation::LookupTransfers => {
                body.extend_from_slice(&id(operation, fields)?.to_le_bytes());
            }
            Operation::GetAccountTransfers | Operation::GetAccountBalances => {
                let mut bytes = [0; AccountFilter::SIZE];
                account_filter(fields)?.encode(&mut bytes);
                body.extend_from_slice(&bytes);
            }
            Operation::QueryAccounts | Operation::QueryTransfers => {
                let mut bytes = [0; QueryFilter::SIZE];
                query_filter(fields)?.encode(&mut bytes);
                body.extend_from_slice(&bytes);
            }
            Operation::CreateMarkets => {
                let mut bytes = [0; Market::SIZE];
                market(fields)?.encode(&mut bytes);
                body.extend_from_slice(&bytes);
            }
            Operation::PlaceOrders => {
                let mut bytes = [0; Order::SIZE];
                order(fields)?.encode(&mut bytes);
                body.extend_from_slice(&bytes);
            }
            Operation::CancelOrders | Operation::LookupOrders => {
                body.extend_from_slice(&id(operation, fields)?.to_le_bytes());
            }
            Operation::AmendOrders => {
                let mut bytes = [0; OrderAmend::SIZE];
                amend(fields)?.encode(&mut bytes);
                body.extend_from_slice(&bytes);
            }
            Operation::GetBook => {
                let mut bytes = [0; BookFilter::SIZE];
                book_filter(fields)?.encode(&mut bytes);
                body.extend_from_slice(&bytes);
            }
            Operation::GetFills => {
                let mut bytes = [0; FillFilter::SIZE];
                fill_filter(fields)?.encode(&mut bytes);
                body.extend_from_slice(&bytes);
            }
            _ => return Err(format!("{} is not available in the repl", operation.name())),
        }
    }
    Ok(body)
}

fn flag_names(bits: u32, table: &[(&str, u32)]) -> String {
    let names: Vec<&str> = table
        .iter()
        .filter(|(_, bit)| bits & bit != 0)
        .map(|(name, _)| *name)
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join("|")
    }
}

fn render_account(account: &Account) -> String {
    format!(
        "{{ id: {}, debits_pending: {}, debits_posted: {}, credits_pending: {}, \
         credits_posted: {}, user_data_128: {}, user_data_64: {}, user_data_32: {}, ledger: {}, \
         code: {}, flags: {}, timestamp: {} }}\n",
        account.id,
        account.debits_pending,
        account.debits_posted,
        account.credits_pending,
        account.credits_posted,
        account.user_data_128,
        account.user_data_64,
        account.user_data_32,
        account.ledger,
        account.code,
        flag_names(u32::from(account.flags), &ACCOUNT_FLAGS),
        account.timestamp
    )
}

fn render_transfer(transfer: &Transfer) -> String {
    format!(
        "{{ id: {}, debit_account_id: {}, credit_account_id: {}, amount: {}, pending_id: {}, \
         user_data_128: {}, user_data_64: {}, user_data_32: {}, timeout: {}, ledger: {}, \
         code: {}, flags: {}, timestamp: {} }}\n",
        transfer.id,
        transfer.debit_account_id,
        transfer.credit_account_id,
        transfer.amount,
        transfer.pending_id,
        transfer.user_data_128,
        transfer.user_data_64,
        transfer.user_data_32,
        transfer.timeout,
        transfer.ledger,
        transfer.code,
        flag_names(u32::from(transfer.flags), &TRANSFER_FLAGS),
        transfer.timestamp
    )
}

fn render_balance(balance: &AccountBalance) -> String {
    format!(
        "{{ debits_pending: {}, debits_posted: {}, credits_pending: {}, credits_posted: {}, \
         timestamp: {} }}\n",
        balance.debits_pending,
        balance.debits_posted,
        balance.credits_pending,
        balance.credits_posted,
        balance.timestamp
    )
}

fn render_order(order: &Order) -> String {
    format!(
        "{{ id: {}, market: {}, side: {}, time_in_force: {}, price: {}, quantity: {}, \
         filled_quantity: {}, state: {}, quote_budget: {}, timeout: {}, self_trade: {}, \
         base_account_id: {}, quote_account_id: {}, timestamp: {} }}\n",
        order.id,
        order.market,
        choice_name(order.side, &SIDES),
        choice_name(order.time_in_force, &TIMES_IN_FORCE),
        order.price,
        order.quantity,
        order.filled_quantity,
        choice_name(order.state, &ORDER_STATES),
        order.quote_budget,
        order.timeout,
        choice_name(order.self_trade, &SELF_TRADE),
        order.base_account_id,
        order.quote_account_id,
        order.timestamp
    )
}

fn render_order_result(result: &OrderResult) -> String {
    format!(
        "order id={}: {} state={} filled_quantity={} fills={} quote_traded={} \
         (timestamp {})\n",
        result.order_id,
        status_name(Operation::PlaceOrders, result.status),
        choice_name(result.state, &ORDER_STATES),
        result.filled_quantity,
        result.fill_count,
        result.quote_traded,
        result.timestamp
    )
}

fn render_level(level: &BookLevel) -> String {
    format!(
        "{:>4} {:>20} x {:<20} ({} orders)\n",
        choice_name(level.side, &SIDES),
        level.price,
        level.quantity,
        level.order_count
    )
}

fn render_fill(fill: &Fill) -> String {
    format!(
        "{{ sequence: {}, market: {}, taker_order_id: {}, maker_order_id: {}, taker_side: {}, \
         price: {}, quantity: {}, quote_amount: {}, taker_fee: {}, maker_fee: {}, \
         timestamp: {} }}\n",
        fill.sequence,
        fill.market,
        fill.taker_order_id,
        fill.maker_order_id,
        choice_name(fill.taker_side, &SIDES),
        fill.price,
        fill.quantity,
        fill.quote_amount,
        fill.taker_fee,
        fill.maker_fee,
        fill.timestamp
    )
}

fn render_state(state: &State) -> String {
    format!(
        "{{ state_hash: {:#034x}, timestamp: {}, accounts_count: {}, transfers_count: {} }}\n",
        state.state_hash, state.timestamp, state.accounts_count, state.transfers_count
    )
}

fn status_name(operation: Operation, status: u32) -> String {
    let name = match operation {
        Operation::CreateAccounts => CreateAccountStatus::from_u32(status).map(|s| s.name()),
        Operation::CreateMarkets => CreateMarketStatus::from_u32(status).map(|s| s.name()),
        Operation::PlaceOrders | Operation::CancelOrders | Operation::AmendOrders => {
            OrderStatus::from_u32(status).map(|s| s.name())
        }
        _ => CreateTransferStatus::from_u32(status).map(|s| s.name()),
    };
    name.map_or_else(|| format!("unknown status {status}"), String::from)
}

/// Renders a reply body for people.
pub fn render_reply(
    operation: Operation,
    objects: &[Vec<(String, String)>],
    body: &[u8],
) -> String {
    let item_size = operation.reply_item_size();
    let mut output = String::new();
    let items = body.chunks_exact(item_size);
    if items.len() == 0 {
        output.push_str(match operation {
            Operation::CreateAccounts
            | Operation::CreateTransfers
            | Operation::CreateMarkets
            | Operation::PlaceOrders
            | Operation::CancelOrders
            | Operation::AmendOrders => "no results\n",
            _ => "nothing found\n",
        });
    }
    for (index, item) in items.enumerate() {
        match operation {
            Operation::CreateAccounts | Operation::CreateTransfers => {
                let result = CreateResult::decode(item.try_into().expect("16-byte chunk"));
                let id = objects
                    .get(index)
                    .and_then(|fields| fields.iter().find(|(name, _)| name == "id"))
                    .map_or("?", |(_, value)| value.as_str());
                output.push_str(&format!(
                    "{} id={id}: {} (timestamp {})\n",
                    if operation == Operation::CreateAccounts {
                        "account"
                    } else {
                        "transfer"
                    },
                    status_name(operation, result.status),
                    result.timestamp
                ));
            }
            Operation::CreateMarkets | Operation::CancelOrders | Operation::AmendOrders => {
                let result = CreateResult::decode(item.try_into().expect("16-byte chunk"));
                let id = objects
                    .get(index)
                    .and_then(|fields| {
                        fields
                            .iter()
                            .find(|(name, _)| name == "id" || name == "order_id")
                    })
                    .map_or("?", |(_, value)| value.as_str());
                output.push_str(&format!(
                    "{} id={id}: {} (timestamp {})\n",
                    if operation == Operation::CreateMarkets {
                        "market"
                    } else {
                        "order"
                    },
                    status_name(operation, result.status),
                    result.timestamp
                ));
            }
            Operation::PlaceOrders => {
                let result = OrderResult::decode(item.try_into().expect("64-byte chunk"));
                output.push_str(&render_order_result(&result));
            }
            Operation::LookupOrders => {
                output.push_str(&render_order(&Order::decode(
                    item.try_into().expect("128-byte chunk"),
                )));
            }
            Operation::GetBook => {
                output.push_str(&render_level(&BookLevel::decode(
                    item.try_into().expect("32-byte chunk"),
                )));
            }
            Operation::GetFills => {
                output.push_str(&render_fill(&Fill::decode(
                    item.try_into().expect("128-byte chunk"),
                )));
            }
            Operation::GetState => {
                output.push_str(&render_state(&State::decode(
                    item.try_into().expect("64-byte chunk"),
                )));
            }
            Operation::LookupAccounts | Operation::QueryAccounts => {
                output.push_str(&render_account(&Account::decode(
                    item.try_into().expect("128-byte chunk"),
                )));
            }
            Operation::GetAccountBalances => {
                output.push_str(&render_balance(&AccountBalance::decode(
                    item.try_into().expect("128-byte chunk"),
                )));
            }
            _ => {
                output.push_str(&render_transfer(&Transfer::decode(
                    item.try_into().expect("128-byte chunk"),
                )));
            }
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_when_a_redirect_moved_it_to_the_primary() {
        let backup: SocketAddr = "127.0.0.1:7001".parse().expect("an address");
        let primary: SocketAddr = "[::1]:7002".parse().expect("an address");
        assert_eq!(moved_line(backup, backup), "");
        assert_eq!(
            moved_line(backup, primary),
            "moved to the primary at [::1]:7002\n"
        );
    }

    #[test]
    fn encodes_order_statements() {
        let statement = parse(
            "place_orders id=7 market=1 side=sell time_in_force=post_only \
                               price=100 quantity=30 self_trade=cancel_both",
        )
        .expect("parses");
        let body = encode_events(Operation::PlaceOrders, &statement.objects).expect("valid");
        let order = Order::decode(body[..128].try_into().unwrap());
        assert_eq!((order.id, order.side, order.time_in_force), (7, 2, 4));
        assert_eq!(
            (order.price, order.quantity, order.self_trade),
            (100, 30, 2)
        );
        let bad = parse("place_orders id=1 side=sideways").expect("parses");
        assert!(encode_events(Operation::PlaceOrders, &bad.objects).is_err());
        let book = parse("get_book market=3 depth=4").expect("parses");
        let body = encode_events(Operation::GetBook, &book.objects).expect("valid");
        assert_eq!(BookFilter::decode(body[..64].try_into().unwrap()).depth, 4);
        let result = OrderResult {
            order_id: 7,
            status: OrderStatus::ExceedsCredits as u32,
            ..OrderResult::default()
        };
        let mut bytes = [0u8; 64];
        result.encode(&mut bytes);
        let text = render_reply(Operation::PlaceOrders, &statement.objects, &bytes);
        assert!(text.contains("exceeds_credits"), "{text}");
    }

    #[test]
    fn get_state_takes_no_fields_and_renders_its_hash_in_hex() {
        let statement = parse("get_state").expect("parses");
        let body = encode_events(Operation::GetState, &statement.objects).expect("valid");
        assert_eq!(body, vec![0u8; 16]);
        let bad = parse("get_state id=1").expect("parses");
        assert!(encode_events(Operation::GetState, &bad.objects).is_err());
        let state = State {
            state_hash: 0xAB,
            timestamp: 5,
            accounts_count: 2,
            transfers_count: 1,
            ..State::default()
        };
        let mut bytes = [0u8; 64];
        state.encode(&mut bytes);
        let text = render_reply(Operation::GetState, &[], &bytes);
        assert_eq!(
            text,
            "{ state_hash: 0x000000000000000000000000000000ab, timestamp: 5, \
             accounts_count: 2, transfers_count: 1 }\n"
        );
        assert_eq!(
            render_reply(Operation::GetState, &[], &[]),
            "nothing found\n"
        );
    }

    #[test]
    fn parses_objects_and_fields() {
        let statement = parse("create_accounts id=1 ledger=700 code=10, id=2 ledger=700 code=10")
            .expect("valid");
        assert_eq!(statement.operation, "create_accounts");
        assert_eq!(statement.objects.len(), 2);
        assert_eq!(statement.objects[1][0], ("id".to_string(), "2".to_string()));
    }

    #[test]
    fn rejects_malformed_pairs() {
        assert!(parse("create_accounts id").is_err());
        assert!(parse("create_accounts =3").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn encodes_transfers_with_flags() {
        let statement = parse(
            "create_transfers id=1 debit_account_id=1 credit_account_id=2 amount=10 \
             ledger=700 code=10 flags=linked|pending",
        )
        .expect("valid");
        let body = encode_events(Operation::CreateTransfers, &statement.objects).expect("valid");
        let transfer = Transfer::decode(body[..128].try_into().expect("128 bytes"));
        assert_eq!(transfer.amount, 10);
        assert_eq!(
            transfer.flags,
            TransferFlags::LINKED | TransferFlags::PENDING
        );
    }

    #[test]
    fn reports_unknown_fields_and_flags_and_overflow() {
        let bad_field = parse("create_accounts id=1 colour=red").expect("parses");
        assert!(encode_events(Operation::CreateAccounts, &bad_field.objects).is_err());
        let bad_flag = parse("create_accounts id=1 flags=shiny").expect("parses");
        assert!(encode_events(Operation::CreateAccounts, &bad_flag.objects).is_err());
        let too_big = parse("create_accounts id=1 ledger=4294967296").expect("parses");
        assert!(encode_events(Operation::CreateAccounts, &too_big.objects).is_err());
    }
}
