//! The checkpoint image: an engine loaded from an image has the writer's state hash, writes
//! the same image again, and answers every later request byte for byte as the writer does
//! (ledger, two-phase transfers and expiry, burned ids, history, imported events, markets,
//! resting orders, good-till-time expiry, fills, amends and cancels). Images that do not fit
//! the configuration, come from another version, or were cut, extended or damaged are refused
//! with an error or load as some engine, and never panic.

mod checkpoint_workload;
mod common;

use clearline_engine::{Account, CHECKPOINT_FORMAT_VERSION};
use clearline_engine::{BookFilter, CheckpointError, Config, Engine, FillFilter, Transfer};
use clearline_test_support::Rng;

use checkpoint_workload::{apply, config, requests, Request, MARKETS, REPLY_SIZE};

fn image(engine: &Engine) -> Vec<u8> {
    let mut image = Vec::new();
    engine
        .checkpoint_write(&mut image)
        .expect("a Vec never fails");
    image
}

/// Loads an image that must load.
fn load(config: &Config, image: &[u8]) -> Engine {
    match Engine::from_checkpoint(config, image) {
        Ok(engine) => engine,
        Err(error) => panic!("the image does not load: {error}"),
    }
}

/// Runs `requests[split..]` on `original` and `loaded` and checks that every reply and the
/// final state agree.
fn assert_same_future(original: &mut Engine, loaded: &mut Engine, requests: &[Request]) {
    let mut reply = vec![0u8; REPLY_SIZE];
    for (index, request) in requests.iter().enumerate() {
        let size = original.execute(
            request.operation,
            request.timestamp,
            &request.body,
            &mut reply,
        );
        let expected = reply[..size].to_vec();
        let size = loaded.execute(
            request.operation,
            request.timestamp,
            &request.body,
            &mut reply,
        );
        assert_eq!(
            reply[..size],
            expected[..],
            "request {index} ({:?}) answers differently after loading",
            request.operation
        );
    }
    assert_eq!(original.state_hash(), loaded.state_hash());
    loaded.verify();
}

#[test]
fn loaded_engine_answers_every_later_request_alike() {
    let config = config();
    let requests = requests(0xC4EC);
    let mut reply = vec![0u8; REPLY_SIZE];
    let middle = requests.len() / 2;
    for split in [0, 1, 8, middle, requests.len() * 5 / 6, requests.len()] {
        let mut original = Engine::new(&config);
        apply(&mut original, &requests[..split], &mut reply);
        let written = image(&original);
        let mut loaded = load(&config, &written);
        assert_eq!(loaded.state_hash(), original.state_hash(), "split {split}");
        assert_eq!(loaded.timestamp_last(), original.timestamp_last());
        assert_eq!(loaded.pending_count(), original.pending_count());
        assert_eq!(loaded.expiry_next(), original.expiry_next());
        // Every store is written as it is, so the loaded engine's image is the same bytes.
        assert!(image(&loaded) == written, "split {split}: images differ");
        loaded.verify();
        if split == middle {
            // The middle of the workload holds every kind of state the image must carry.
            assert!(original.pending_count() > 0, "pending transfers");
            assert!(original.expiry_next().is_some(), "queued expiries");
            let mut levels = Vec::with_capacity(64);
            let mut fills = Vec::with_capacity(256);
            let mut resting = 0;
            for market in MARKETS {
                let filter = BookFilter {
                    market,
                    depth: 16,
                    reserved: [0; 56],
                };
                original.get_book(&filter, &mut levels);
                resting += levels.len();
                let filter = FillFilter {
                    market,
                    limit: 256,
                    ..FillFilter::default()
                };
                original.get_fills(&filter, &mut fills);
                assert!(!fills.is_empty(), "fills in market {market}");
            }
            assert!(resting > 0, "resting orders");
        }
        assert_same_future(&mut original, &mut loaded, &requests[split..]);
    }
}

#[test]
fn loads_under_larger_capacities() {
    let config = config();
    let requests = requests(0xB16);
    let mut reply = vec![0u8; REPLY_SIZE];
    let split = requests.len() / 2;
    let mut original = Engine::new(&config);
    apply(&mut original, &requests[..split], &mut reply);
    let written = image(&original);
    let larger = Config {
        accounts_max: 1000,
        transfers_max: 50_000,
        transfers_pending_max: 5000,
        account_balances_max: 40_000,
        batch_events_max: 8191,
        query_results_max: 8191,
        markets_max: 9,
        orders_max: 5000,
        fills_max: 9000,
    };
    let mut loaded = load(&larger, &written);
    assert_eq!(loaded.config(), &larger);
    assert_eq!(loaded.state_hash(), original.state_hash());
    loaded.verify();
    assert_same_future(&mut original, &mut loaded, &requests[split..]);
    // And back again: the larger engine's image loads under the first capacities.
    let again = load(&config, &image(&loaded));
    assert_eq!(again.state_hash(), original.state_hash());
    again.verify();
}

#[test]
fn refuses_images_larger_than_the_configuration() {
    let config = config();
    let requests = requests(7);
    let mut reply = vec![0u8; REPLY_SIZE];
    let mut engine = Engine::new(&config);
    apply(&mut engine, &requests, &mut reply);
    let written = image(&engine);
    let transfers = engine.transfers_count();
    let small = Config {
        transfers_max: transfers - 1,
        ..config
    };
    let error = Engine::from_checkpoint(&small, &written).err();
    assert_eq!(
        error,
        Some(CheckpointError::CapacityExceeded {
            store: "transfers",
            count: u64::from(transfers),
            capacity: u64::from(transfers - 1),
            flag: "--transfers-max",
        })
    );
    let message = error.map(|error| error.to_string()).unwrap_or_default();
    assert!(message.contains("--transfers-max"), "{message}");
    let small = Config {
        accounts_max: engine.accounts_count() - 1,
        ..config
    };
    let message = match Engine::from_checkpoint(&small, &written) {
        Err(error) => error.to_string(),
        Ok(_) => String::from("loaded"),
    };
    assert!(
        message.contains("accounts") && message.contains("--accounts-max"),
        "{message}"
    );
    let small = Config {
        orders_max: 3,
        ..config
    };
    let message = match Engine::from_checkpoint(&small, &written) {
        Err(error) => error.to_string(),
        Ok(_) => String::from("loaded"),
    };
    assert!(message.contains("--orders-max"), "{message}");
}

/// A version 1 image (written by a build whose id indexes probed one slot at a time, and whose
/// order holds were pending transfers) is refused with a clear error once its ledger part
/// (whose index entries are inserted again where this build places them) is read: its resting
/// orders' holds are transfers, which this build does not make or resolve. The fixture is the
/// image after the first 60 requests of `requests(0xC4EC)`.
#[test]
fn refuses_a_version_one_image_whose_holds_are_transfers() {
    let config = config();
    let version_one = include_bytes!("fixtures/checkpoint-v1.image");
    assert_eq!(version_one[8..12], 1u32.to_le_bytes());
    let error = Engine::from_checkpoint(&config, version_one).err();
    let Some(CheckpointError::Invalid { store, rule, .. }) = error else {
        panic!("the image loads or fails otherwise: {error:?}");
    };
    assert_eq!(store, "orders");
    assert!(rule.contains("hold is a pending transfer"), "{rule}");
}

#[test]
fn refuses_foreign_cut_and_extended_images() {
    let config = config();
    let mut engine = Engine::new(&config);
    let mut reply = vec![0u8; REPLY_SIZE];
    apply(&mut engine, &requests(11)[..40], &mut reply);
    let written = image(&engine);
    assert_eq!(&written[..8], b"CLCKPT\0\0");
    assert_eq!(
        written[8..12],
        CHECKPOINT_FORMAT_VERSION.to_le_bytes(),
        "the version follows the magic"
    );
    let trailer = u64::from_le_bytes(written[written.len() - 8..].try_into().unwrap());
    assert_eq!(
        trailer,
        written.len() as u64 - 8,
        "the image ends with its size"
    );

    let mut foreign = written.clone();
    foreign[0] = b'X';
    assert_eq!(
        Engine::from_checkpoint(&config, &foreign).err(),
        Some(CheckpointError::MagicMismatch)
    );
    let mut newer = written.clone();
    newer[8..12].copy_from_slice(&(CHECKPOINT_FORMAT_VERSION + 1).to_le_bytes());
    let error = Engine::from_checkpoint(&config, &newer).err();
    assert_eq!(
        error,
        Some(CheckpointError::VersionMismatch {
            found: CHECKPOINT_FORMAT_VERSION + 1
        })
    );
    assert!(error.unwrap().to_string().contains("version"));
    for size in [0, 5, 12, written.len() / 2, written.len() - 1] {
        let error = Engine::from_checkpoint(&config, &written[..size]).err();
        assert!(error.is_some(), "an image cut to {size} bytes loads");
    }
    let mut extended = written.clone();
    extended.extend_from_slice(&[0; 16]);
    // The last eight bytes are now zeros, so the trailer says the image is 8 bytes long.
    assert_eq!(
        Engine::from_checkpoint(&config, &extended).err(),
        Some(CheckpointError::LengthMismatch {
            size: written.len() as u64 + 16,
            expected: 8,
        })
    );
    let mut doubled = written.clone();
    doubled.extend_from_slice(&written);
    let error = Engine::from_checkpoint(&config, &doubled).err();
    assert!(
        error.is_some_and(|error| error.to_string().contains("trailer")),
        "an image followed by another loads"
    );
    // A body cut short under a trailer that agrees is caught by the fields themselves.
    let mut cut = written[..written.len() - 100].to_vec();
    let size = cut.len() as u64;
    cut.extend_from_slice(&size.to_le_bytes());
    let error = Engine::from_checkpoint(&config, &cut).err();
    assert!(
        matches!(error, Some(CheckpointError::Truncated { .. })),
        "{error:?}"
    );
}

/// Sets the trailer of a damaged image to its body's size, so loading reaches the fields.
fn with_trailer(mut body: Vec<u8>) -> Vec<u8> {
    let size = body.len() as u64;
    body.extend_from_slice(&size.to_le_bytes());
    body
}

#[test]
fn damaged_images_load_or_fail_but_never_panic() {
    let config = config();
    let mut engine = Engine::new(&config);
    let mut reply = vec![0u8; REPLY_SIZE];
    let requests = requests(0xF11D);
    apply(&mut engine, &requests[..requests.len() / 2], &mut reply);
    let written = image(&engine);
    let body = &written[..written.len() - 8];
    let mut rng = Rng::new(0xDA3A6E);
    let (mut loaded, mut refused) = (0u32, 0u32);
    for round in 0..1500u32 {
        let damaged = match round % 4 {
            // Flips anywhere, the trailer included.
            0 => {
                let mut damaged = written.clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(damaged.len() as u64) as usize;
                    damaged[at] ^= 1 << rng.below(8);
                }
                damaged
            }
            // Flips in the body, under an intact trailer.
            1 => {
                let mut damaged = body.to_vec();
                let at = rng.below(damaged.len() as u64) as usize;
                damaged[at] = match rng.below(3) {
                    0 => 0xFF,
                    1 => 0,
                    _ => damaged[at] ^ (1 << rng.below(8)),
                };
                with_trailer(damaged)
            }
            // Cut short, under a trailer that agrees.
            2 => with_trailer(body[..rng.below(body.len() as u64) as usize].to_vec()),
            // Extended, under a trailer that agrees.
            _ => {
                let mut damaged = body.to_vec();
                for _ in 0..1 + rng.below(40) {
                    damaged.push(rng.below(256) as u8);
                }
                with_trailer(damaged)
            }
        };
        match Engine::from_checkpoint(&config, &damaged) {
            Ok(_) => {
                loaded += 1;
                assert!(
                    round % 4 < 2,
                    "round {round}: a cut or extended image loaded"
                );
            }
            Err(error) => {
                refused += 1;
                assert!(!error.to_string().is_empty());
            }
        }
    }
    assert!(refused > 750, "{refused} refused, {loaded} loaded");
    assert!(loaded > 0, "flips inside unchecked values load");
}

/// Image size and write time for an engine holding 1 M transfers (a figure, not a limit).
#[test]
#[allow(clippy::disallowed_methods)] // Measures the writer; the engine itself reads no clock.
fn image_of_a_million_transfers() {
    const TRANSFERS: u32 = 1_000_000;
    let config = Config {
        accounts_max: 1024,
        transfers_max: TRANSFERS,
        transfers_pending_max: 1024,
        account_balances_max: 1024,
        batch_events_max: 8190,
        query_results_max: 256,
        markets_max: 1,
        orders_max: 1,
        fills_max: 1,
    };
    let mut engine = Engine::new(&config);
    let accounts: Vec<Account> = (1..=64).map(common::acct).collect();
    let mut results = vec![Default::default(); 8190];
    let mut now = 1u64 << 40;
    engine.create_accounts(now, &accounts, &mut results[..64]);
    let mut next = 1u128;
    while engine.transfers_count() < TRANSFERS {
        let count = (TRANSFERS - engine.transfers_count()).min(8190) as usize;
        let batch: Vec<Transfer> = (0..count as u128)
            .map(|index| common::tr(next + index, 1 + index % 64, 1 + (index + 1) % 64, 1))
            .collect();
        next += count as u128;
        now += 10_000;
        engine.create_transfers(now, &batch, &mut results[..count]);
    }
    let mut sink = std::io::sink();
    let started = std::time::Instant::now();
    engine
        .checkpoint_write(&mut sink)
        .expect("a sink never fails");
    let elapsed = started.elapsed();
    let written = image(&engine);
    let per_transfer = written.len() as f64 / f64::from(TRANSFERS);
    println!(
        "checkpoint image of {TRANSFERS} transfers: {} bytes ({per_transfer:.1} bytes per \
         transfer), written to a sink in {:.1} ms",
        written.len(),
        elapsed.as_secs_f64() * 1000.0
    );
    // A transfer's record is 128 bytes; links, status and its index entry add a little.
    assert!((128.0..200.0).contains(&per_transfer), "{per_transfer}");
    let loaded = load(&config, &written);
    assert_eq!(loaded.state_hash(), engine.state_hash());
}

/// A version 6 image, which still held the transfer id index, loads: written by the build
/// before version 7 (ac57d0f) from this workload's first half, it gives the state hash of an
/// engine that applied the same requests, and then answers every later request alike.
#[test]
fn loads_a_version_six_image_with_its_transfer_index() {
    let written = include_bytes!("fixtures/checkpoint-v6.image");
    assert_eq!(
        written[8..12],
        6u32.to_le_bytes(),
        "the fixture is a version 6 image"
    );
    let config = config();
    let requests = requests(0xC4EC);
    let middle = requests.len() / 2;
    let mut reply = vec![0u8; REPLY_SIZE];
    let mut original = Engine::new(&config);
    apply(&mut original, &requests[..middle], &mut reply);
    let mut loaded = load(&config, written);
    loaded.verify();
    assert_eq!(loaded.state_hash(), original.state_hash());
    assert_same_future(&mut original, &mut loaded, &requests[middle..]);
}
