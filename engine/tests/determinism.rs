//! Determinism: the same seeded request sequence gives the same state hash on two engines and on
//! a second run; a different sequence gives a different hash; `execute` and the typed methods
//! reach the same state; and the state hashes of two fixed workloads are pinned, so a change of
//! outcome on another machine or in another release is caught.

use clearline_engine::{Config, CreateResult, Engine, Operation, PULSE_EXPIRIES_MAX};

use clearline_test_support::ledger::{accounts, workload, Request, SECOND};

/// Applies the workload through the typed methods; returns the final hash.
fn run_typed(config: &Config, requests: &[Request]) -> Engine {
    let mut engine = Engine::new(config);
    let accounts = accounts();
    let mut results = vec![CreateResult::default(); accounts.len()];
    let mut now = 1_000 * SECOND;
    engine.create_accounts(now, &accounts, &mut results);
    assert!(results
        .iter()
        .all(|r| r.status == CreateResult::STATUS_CREATED));
    for request in requests {
        match request {
            Request::Transfers(batch) => {
                now += batch.len() as u64 + SECOND / 3;
                let mut results = vec![CreateResult::default(); batch.len()];
                engine.create_transfers(now, batch, &mut results);
            }
            Request::Pulse => {
                now += u64::from(PULSE_EXPIRIES_MAX);
                engine.pulse(now);
            }
        }
    }
    engine.verify();
    engine
}

fn run_execute(config: &Config, requests: &[Request]) -> Engine {
    let mut engine = Engine::new(config);
    let mut reply = vec![0u8; (1 << 20) - 64];
    let mut body = Vec::new();
    for account in accounts() {
        let mut bytes = [0u8; 128];
        account.encode(&mut bytes);
        body.extend_from_slice(&bytes);
    }
    let mut now = 1_000 * SECOND;
    engine.execute(Operation::CreateAccounts, now, &body, &mut reply);
    for request in requests {
        match request {
            Request::Transfers(batch) => {
                body.clear();
                for transfer in batch {
                    let mut bytes = [0u8; 128];
                    transfer.encode(&mut bytes);
                    body.extend_from_slice(&bytes);
                }
                now += batch.len() as u64 + SECOND / 3;
                let size = engine.execute(Operation::CreateTransfers, now, &body, &mut reply);
                assert_eq!(size, batch.len() * CreateResult::SIZE);
            }
            Request::Pulse => {
                now += u64::from(PULSE_EXPIRIES_MAX);
                assert_eq!(engine.execute(Operation::Pulse, now, &[], &mut reply), 0);
            }
        }
    }
    engine.verify();
    engine
}

#[test]
fn same_requests_give_the_same_state_hash() {
    let config = Config::test_small();
    for seed in [1u64, 42, 0xDEAD_BEEF] {
        let requests = workload(seed, 120);
        let first = run_typed(&config, &requests);
        let second = run_typed(&config, &requests);
        assert_eq!(first.state_hash(), second.state_hash(), "seed {seed}");
        assert!(
            first.transfers_count() > 1000,
            "seed {seed}: workload too small"
        );
        let third = run_execute(&config, &requests);
        assert_eq!(
            first.state_hash(),
            third.state_hash(),
            "seed {seed}: execute differs"
        );
    }
}

#[test]
fn different_requests_give_different_hashes() {
    let config = Config::test_small();
    let a = run_typed(&config, &workload(7, 60)).state_hash();
    let b = run_typed(&config, &workload(8, 60)).state_hash();
    assert_ne!(a, b);
    // One changed amount in one transfer changes the hash too.
    let mut requests = workload(7, 60);
    let changed = requests.iter_mut().find_map(|request| match request {
        Request::Transfers(batch) => batch.iter_mut().find(|t| t.flags == 0 && t.amount > 1),
        Request::Pulse => None,
    });
    changed.expect("a plain transfer").amount -= 1;
    let c = run_typed(&config, &requests).state_hash();
    assert_ne!(a, c);
}

/// The state hash after the workload of seed 1, pinned: a refactor that keeps behaviour keeps
/// this number. A deliberate change to what the state holds or how it is digested re-pins it,
/// and says so in its commit message.
const WORKLOAD_1_STATE_HASH: u128 = 0xfde3_14b5_fa7d_6750_b3db_df09_e0e1_8fcd;

#[test]
fn fixed_workload_state_hash_is_pinned() {
    let engine = run_typed(&Config::test_small(), &workload(1, 120));
    assert_eq!(engine.transfers_count(), 3911);
    assert_eq!(
        engine.state_hash(),
        WORKLOAD_1_STATE_HASH,
        "state hash {:#x}",
        engine.state_hash()
    );
}

#[test]
fn empty_engines_hash_alike() {
    let config = Config::test_small();
    assert_eq!(
        Engine::new(&config).state_hash(),
        Engine::new(&config).state_hash()
    );
}

/// The state hash after the fixed workload of [`state_hash_of_a_fixed_workload_is_pinned`].
///
/// A journal written by one release is replayed by the next, and the server's state must come
/// out the same. If this value changes, the same journaled requests now give a different state:
/// replay across releases (and between machines) breaks. Change it only on purpose, in a
/// commit that says how journals written before it are handled (they replay to another state).
const GOLDEN_STATE_HASH: u128 = 0xd600_a65e_b3ff_4a0d_6291_b280_335b_54ff;

#[test]
fn state_hash_of_a_fixed_workload_is_pinned() {
    let requests = workload(0x5EED_2026, 200);
    let typed = run_typed(&Config::test_small(), &requests);
    let executed = run_execute(&Config::test_small(), &requests);
    assert!(typed.transfers_count() > 1000, "workload too small");
    assert_eq!(typed.state_hash(), executed.state_hash());
    assert_eq!(
        typed.state_hash(),
        GOLDEN_STATE_HASH,
        "the state hash of the fixed workload changed: {:#034x}",
        typed.state_hash()
    );
}
