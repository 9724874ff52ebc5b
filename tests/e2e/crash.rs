//! Crash safety of the real binary (docs/durability.md rows 1 and 9): a client pipelines
//! batches of transfers while the server (`--sync data`) is SIGKILLed at seeded random moments,
//! [`KILLS`] times, each time restarted on the same data directory. Checkpoints are written
//! every MiB of journal, so kills also land while a checkpoint is written, renamed and while
//! the segments it covers are retired.
//!
//! After every restart: each transfer the client saw acknowledged is there with the same fields
//! and timestamp, and a retry with the same id and body returns `exists` (or the same failure);
//! requests that were in flight at the kill, retried, get a definite outcome (`created` or
//! `exists`); and every account's balances equal the fold of the transfers known to exist, so
//! nothing was lost or applied twice and debits equal credits per ledger.
//!
//! The second test runs the same cycles in history mode, where most transfers live in the
//! history store (docs/history.md).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use clearline_engine::{CreateResult, CreateTransferStatus, Operation, Transfer, TransferFlags};
use clearline_net::{Client, FrameStatus};

use crate::support::{
    account, connect, data_dir, encode_accounts, encode_transfers, files_named, lookup_accounts,
    lookup_transfers, request_ok, results, seed, transfer, Options, Rng, Server,
};

/// Kills (and restarts) of the server, unless `CLEARLINE_CRASH_KILLS` says otherwise.
const KILLS: usize = 100;
/// Journal MiB between two checkpoints: small, so that kills land before, during and after
/// checkpoints and the segment retirements that follow them.
const CHECKPOINT_INTERVAL_MIB: u64 = 1;
/// Journal segment size: small (the least allowed, rounded up to 64 KiB), so checkpoints
/// retire segments within the test.
const SEGMENT_SIZE: u64 = 1_114_112;
/// Accounts 1..=ACCOUNTS; odd ids on ledger 1, even ids on ledger 2.
const ACCOUNTS: u64 = 64;
/// Requests the client keeps in flight.
const WINDOW: usize = 4;
/// Transfers one run between two kills sends at most (the engine holds 200,000, and `KILLS`
/// runs must fit).
const RUN_TRANSFERS_MAX: u64 = 1_500;
/// Recent transfers the server keeps in memory in history mode: under half of what the run
/// creates, and room beyond the harness's --transfers-pending-max of 20,000 plus a batch, so
/// the core does not wait for the store at every write.
const HISTORY_MEMORY: u32 = 49_152;

/// The number of kills: `CLEARLINE_CRASH_KILLS` when set (CI may run fewer, a soak more),
/// else [`KILLS`]. At most 130, so that every run's transfers fit the engine.
fn kills() -> usize {
    match std::env::var("CLEARLINE_CRASH_KILLS") {
        Ok(value) => {
            let kills: usize = value
                .parse()
                .expect("CLEARLINE_CRASH_KILLS is a number of kills");
            assert!(
                (1..=130).contains(&kills),
                "CLEARLINE_CRASH_KILLS is 1 to 130"
            );
            kills
        }
        Err(_) => KILLS,
    }
}

const CREATED: u32 = CreateResult::STATUS_CREATED;
const EXISTS: u32 = CreateTransferStatus::Exists as u32;
const SAME_ACCOUNTS: u32 = CreateTransferStatus::AccountsMustBeDifferent as u32;

fn ledger_of(account_id: u128) -> u32 {
    if account_id % 2 == 1 {
        1
    } else {
        2
    }
}

/// What one run of the client between two kills saw.
#[derive(Default)]
struct Run {
    /// Transfers whose reply arrived, with their result.
    acked: Vec<(Transfer, CreateResult)>,
    /// Transfers sent (or being sent) whose reply did not arrive.
    in_flight: Vec<Transfer>,
    /// A reply that broke the protocol (not a lost connection).
    error: Option<String>,
    /// How long the run took when it finished its budget before the kill.
    finished_after: Option<Duration>,
}

/// A random transfer between two accounts of one ledger: about 3% name the same account twice
/// (a failure that stores nothing), about 10% are pending (no timeout).
fn random_transfer(rng: &mut Rng, id: u128) -> Transfer {
    let ledger = 1 + rng.below(2) as u32;
    let pick = |rng: &mut Rng| {
        let index = u128::from(rng.below(ACCOUNTS / 2));
        index * 2 + if ledger == 1 { 1 } else { 2 }
    };
    let debit = pick(rng);
    let mut credit = pick(rng);
    if rng.below(100) >= 3 {
        while credit == debit {
            credit = pick(rng);
        }
    } else {
        credit = debit;
    }
    let mut sent = transfer(id, debit, credit, u128::from(rng.range(1, 1_000)), ledger);
    if rng.below(10) == 0 {
        sent.flags = TransferFlags::PENDING;
    }
    sent.user_data_64 = rng.next_u64();
    sent
}

/// The client (its socket has timeouts): pipelines batches of 100-400 transfers with ids from
/// `id_first` until the connection fails or it sent [`RUN_TRANSFERS_MAX`].
fn drive(mut client: Client, id_first: u128, seed: u64) -> Run {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut run = Run::default();
    let mut next_id = id_first;
    let mut waiting: std::collections::VecDeque<(u64, Vec<Transfer>)> = Default::default();
    loop {
        let budget_left = u128::from(RUN_TRANSFERS_MAX) - (next_id - id_first);
        if waiting.len() < WINDOW && budget_left > 0 {
            let size = rng
                .range(100, 400)
                .min(u64::try_from(budget_left).expect("small"));
            let batch: Vec<Transfer> = (0..size)
                .map(|offset| random_transfer(&mut rng, next_id + u128::from(offset)))
                .collect();
            next_id += u128::from(size);
            match client.send(Operation::CreateTransfers, &encode_transfers(&batch)) {
                Ok(request_id) => waiting.push_back((request_id, batch)),
                Err(_) => {
                    // Maybe partly written: its outcome is unknown.
                    run.in_flight.extend(batch);
                    break;
                }
            }
            continue;
        }
        if waiting.is_empty() {
            // The budget is spent and everything answered: the kill finds the server idle.
            run.finished_after = Some(started.elapsed());
            return run;
        }
        let reply = match client.receive() {
            Ok(reply) => reply,
            Err(_) => break,
        };
        let (request_id, batch) = waiting.pop_front().expect("a request waits");
        if reply.request_id() != request_id || reply.status() != FrameStatus::Ok {
            run.error = Some(format!(
                "reply {} with status {} to request {request_id}",
                reply.request_id(),
                reply.status()
            ));
            return run;
        }
        let outcome = results(&reply.body);
        if outcome.len() != batch.len() {
            run.error = Some(format!(
                "{} results for {} transfers",
                outcome.len(),
                batch.len()
            ));
            return run;
        }
        run.acked.extend(batch.into_iter().zip(outcome));
    }
    for (_, batch) in waiting {
        run.in_flight.extend(batch);
    }
    run
}

/// What the test knows about every transfer id it ever sent.
#[derive(Default)]
struct Known {
    /// Created transfers with the timestamp the server gave them.
    created: BTreeMap<u128, Transfer>,
    /// Transfers that failed, with their code.
    failed: BTreeMap<u128, u32>,
}

impl Known {
    fn record(&mut self, sent: &Transfer, result: &CreateResult, context: &str) {
        match result.status {
            CREATED | EXISTS => {
                let stored = Transfer {
                    timestamp: result.timestamp,
                    ..*sent
                };
                let previous = self.created.insert(sent.id, stored);
                assert!(
                    previous.is_none(),
                    "{context}: transfer {} recorded twice",
                    sent.id
                );
            }
            SAME_ACCOUNTS if sent.debit_account_id == sent.credit_account_id => {
                self.failed.insert(sent.id, result.status);
            }
            status => panic!(
                "{context}: transfer {} got unexpected status {status}",
                sent.id
            ),
        }
    }
}

/// Sends `batch` again with the same ids and bodies; one result per transfer.
fn retry(client: &mut Client, batch: &[Transfer]) -> Vec<CreateResult> {
    let mut outcome = Vec::with_capacity(batch.len());
    for chunk in batch.chunks(8_000) {
        let reply = request_ok(client, Operation::CreateTransfers, &encode_transfers(chunk));
        outcome.extend(results(&reply.body));
    }
    assert_eq!(outcome.len(), batch.len());
    outcome
}

/// Checks a recovered server against what the last run saw, then records it in `known`.
fn check_recovered(client: &mut Client, run: Run, known: &mut Known, cycle: usize) {
    let context = format!("after kill {cycle}");
    if let Some(error) = &run.error {
        panic!("{context}: the client saw a protocol error: {error}");
    }
    // Every acknowledged transfer is there with the same fields and timestamp ...
    let created_ids: Vec<u128> = run
        .acked
        .iter()
        .filter(|(_, result)| result.status == CREATED)
        .map(|(sent, _)| sent.id)
        .collect();
    let found: HashMap<u128, Transfer> = lookup_transfers(client, &created_ids)
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    for (sent, result) in &run.acked {
        let stored = found.get(&sent.id);
        if result.status == CREATED {
            let expected = Transfer {
                timestamp: result.timestamp,
                ..*sent
            };
            assert_eq!(
                stored,
                Some(&expected),
                "{context}: acknowledged transfer {}",
                sent.id
            );
        } else {
            assert_eq!(
                result.status, SAME_ACCOUNTS,
                "{context}: first outcome of {}",
                sent.id
            );
            assert!(
                stored.is_none(),
                "{context}: failed transfer {} stored",
                sent.id
            );
        }
    }
    // ... and a retry returns `exists` with the original timestamp, or the same failure.
    let acked: Vec<Transfer> = run.acked.iter().map(|(sent, _)| *sent).collect();
    for ((sent, first), again) in run.acked.iter().zip(retry(client, &acked)) {
        if first.status == CREATED {
            assert_eq!(
                again.status, EXISTS,
                "{context}: retry of acknowledged {}",
                sent.id
            );
            assert_eq!(
                again.timestamp, first.timestamp,
                "{context}: retry timestamp"
            );
        } else {
            assert_eq!(
                again.status, first.status,
                "{context}: retry of failed {}",
                sent.id
            );
        }
    }
    for (sent, result) in &run.acked {
        known.record(sent, result, &context);
    }
    // Requests in flight at the kill get a definite outcome when retried.
    let outcome = retry(client, &run.in_flight);
    for (sent, result) in run.in_flight.iter().zip(&outcome) {
        if sent.debit_account_id == sent.credit_account_id {
            assert_eq!(
                result.status, SAME_ACCOUNTS,
                "{context}: in-flight {}",
                sent.id
            );
        } else {
            assert!(
                result.status == CREATED || result.status == EXISTS,
                "{context}: in-flight transfer {} got {}",
                sent.id,
                result.status
            );
        }
        known.record(sent, result, &context);
    }
    check_balances(client, known, &context);
}

/// Every account's balances equal the fold of the transfers known to exist (nothing lost,
/// nothing applied twice), and debits equal credits per ledger.
fn check_balances(client: &mut Client, known: &Known, context: &str) {
    let mut expected: BTreeMap<u128, [u128; 4]> =
        (1..=u128::from(ACCOUNTS)).map(|id| (id, [0; 4])).collect();
    for created in known.created.values() {
        let pending = created.flags & TransferFlags::PENDING != 0;
        let (debit, credit) = if pending { (0, 2) } else { (1, 3) };
        expected
            .get_mut(&created.debit_account_id)
            .expect("a test account")[debit] += created.amount;
        expected
            .get_mut(&created.credit_account_id)
            .expect("a test account")[credit] += created.amount;
    }
    let ids: Vec<u128> = expected.keys().copied().collect();
    let found = lookup_accounts(client, &ids);
    assert_eq!(found.len(), ids.len(), "{context}: every account recovered");
    let mut per_ledger: BTreeMap<u32, [u128; 4]> = BTreeMap::new();
    for account in &found {
        let balances = [
            account.debits_pending,
            account.debits_posted,
            account.credits_pending,
            account.credits_posted,
        ];
        assert_eq!(
            balances, expected[&account.id],
            "{context}: balances of account {} (debits pending/posted, credits pending/posted)",
            account.id
        );
        let sums = per_ledger.entry(account.ledger).or_default();
        for (sum, value) in sums.iter_mut().zip(balances) {
            *sum += value;
        }
    }
    for (ledger, [debits_pending, debits_posted, credits_pending, credits_posted]) in per_ledger {
        assert_eq!(
            debits_posted, credits_posted,
            "{context}: ledger {ledger} posted"
        );
        assert_eq!(
            debits_pending, credits_pending,
            "{context}: ledger {ledger} pending"
        );
    }
}

/// With every record in memory (`--no-history`).
#[test]
fn sigkill_under_load_loses_no_acknowledged_transfer() {
    let options = Options::new("data")
        .switch("no-history")
        .flag("checkpoint-interval-mib", CHECKPOINT_INTERVAL_MIB)
        .flag("segment-size", SEGMENT_SIZE);
    kill_cycles(
        &options,
        "crash::sigkill_under_load_loses_no_acknowledged_transfer",
    );
}

/// The same in history mode (docs/history.md), with memory for [`HISTORY_MEMORY`] recent
/// transfers: kills also land while runs are sealed, ingested into the history store and
/// evicted, and the checks read what left memory back from the store.
#[test]
fn sigkill_under_load_in_history_mode_loses_no_acknowledged_transfer() {
    let options = Options::new("data")
        .switch("history")
        .flag("transfers-max", HISTORY_MEMORY)
        .flag("ids-max", 1 << 20)
        .flag("checkpoint-interval-mib", CHECKPOINT_INTERVAL_MIB)
        .flag("segment-size", SEGMENT_SIZE);
    kill_cycles(
        &options,
        "crash::sigkill_under_load_in_history_mode_loses_no_acknowledged_transfer",
    );
}

/// The id of the oldest journal segment in `journal` (`u64::MAX` if there is none).
fn first_segment(journal: &std::path::Path) -> u64 {
    files_named(journal, "segment-", ".log")
        .first()
        .map_or(u64::MAX, |name| {
            name["segment-".len()..name.len() - ".log".len()]
                .parse()
                .expect("a segment id")
        })
}

/// Runs the kill cycles of the module docs on a server started with `options`.
fn kill_cycles(options: &Options, name: &'static str) {
    let (seed, _guard) = seed(name, 7);
    let mut rng = Rng::new(seed);
    let data = data_dir();
    let started = Instant::now();
    let kills = kills();
    let mut server = Server::start(data.path(), options);
    {
        let mut client = server.client();
        let new_accounts: Vec<_> = (1..=u128::from(ACCOUNTS))
            .map(|id| account(id, ledger_of(id), 0))
            .collect();
        let reply = request_ok(
            &mut client,
            Operation::CreateAccounts,
            &encode_accounts(&new_accounts),
        );
        assert!(results(&reply.body).iter().all(|r| r.status == CREATED));
    }
    let mut known = Known::default();
    let mut next_id: u128 = 1;
    let mut acked_total = 0;
    let mut in_flight_total = 0;
    let mut kills_under_load = 0;
    // Kills land uniformly within the time a run takes, learned from runs that finished first.
    let mut run_time_ms = 200;
    for cycle in 1..=kills {
        let run_seed = rng.next_u64();
        let id_first = next_id;
        // Connected before the thread starts, so even an early kill finds the connection.
        let connection = server.client();
        let client = std::thread::spawn(move || drive(connection, id_first, run_seed));
        std::thread::sleep(Duration::from_millis(rng.range(1, run_time_ms)));
        server.assert_running(&format!("before kill {cycle}"));
        server.kill();
        let run = client.join().expect("the client thread does not panic");
        match run.finished_after {
            Some(took) => {
                let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
                run_time_ms = run_time_ms.min(took_ms * 9 / 10).max(2);
            }
            None => kills_under_load += 1,
        }
        next_id += u128::from(RUN_TRANSFERS_MAX);
        acked_total += run.acked.len();
        in_flight_total += run.in_flight.len();
        server.restart();
        let mut client = server.client();
        check_recovered(&mut client, run, &mut known, cycle);
    }
    // Kills often land before a checkpoint is finished, so a run may end before one retires a
    // segment: load on, without kills, until one has (the checks below then always see it).
    let journal = data.path().join("journal");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut extra_runs = 0;
    while kills >= KILLS && first_segment(&journal) == 0 && Instant::now() < deadline {
        let run = drive(server.client(), next_id, rng.next_u64());
        next_id += u128::from(RUN_TRANSFERS_MAX);
        acked_total += run.acked.len();
        extra_runs += 1;
        let mut client = server.client();
        check_recovered(&mut client, run, &mut known, kills + extra_runs);
    }
    // A last full check of everything ever acknowledged, then a clean stop.
    let mut client = connect(server.addr);
    let ids: Vec<u128> = known.created.keys().copied().collect();
    let found = lookup_transfers(&mut client, &ids);
    assert_eq!(
        found.len(),
        ids.len(),
        "every created transfer is still there"
    );
    for stored in &found {
        assert_eq!(
            Some(stored),
            known.created.get(&stored.id),
            "transfer {}",
            stored.id
        );
    }
    let failed: Vec<u128> = known.failed.keys().copied().collect();
    assert!(
        lookup_transfers(&mut client, &failed).is_empty(),
        "failed ids are not stored"
    );
    check_balances(&mut client, &known, "at the end");
    drop(client);
    let status = server.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    eprintln!(
        "{name}: {kills} kills ({kills_under_load} under load), {acked_total} transfers \
         acknowledged, {in_flight_total} in flight at a kill, {} created, {:.1} s",
        known.created.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(acked_total > 0, "the client got some acknowledgements");
    // The kills crossed checkpoints and retirements (with the default count: the journal
    // grows by several checkpoint intervals and segments).
    let checkpoints = files_named(&journal, "checkpoint-", ".ckpt").len();
    let first_segment = first_segment(&journal);
    eprintln!(
        "{name}: {checkpoints} checkpoint files kept, first segment left {first_segment}, \
         {extra_runs} runs without kills after the cycles"
    );
    if kills >= KILLS {
        assert!(checkpoints >= 1, "checkpoints were written");
        assert!(first_segment > 0, "segments were retired");
    }
    assert!(in_flight_total > 0, "some kills caught requests in flight");
}
