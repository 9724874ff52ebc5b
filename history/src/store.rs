//! `History`: the store itself, one fjall database with four key spaces (docs/history.md, "The
//! history store"), its ingest of sorted runs and its reads.
//!
//! | key space | key (big-endian) | value |
//! |---|---|---|
//! | `transfers` | timestamp (8) | the 128-byte transfer |
//! | `transfer_ids` | id (16) | timestamp (8) |
//! | `account_runs` | account (16), first timestamp (8) | the account's transfers in one run |
//! | `meta` | `watermark` | format version, journal sequence, timestamp, checksum |
//!
//! Every key space is written only through fjall's ingestion of sorted input, never through its
//! write-ahead log: each ingestion writes its tables, syncs them and their directory, then
//! makes them visible by atomically replacing the key space's version file. `ingest` loads
//! `transfers`, then `transfer_ids`, then `account_runs`, then the watermark, so when a
//! watermark is durable everything at or below it is, and a reference between key spaces
//! (an id to its timestamp, an account entry to its timestamps) always points at a record that
//! was made durable before it. A crash between the steps leaves transfers above the watermark
//! that a repeated ingest of the same run replaces with identical copies.
//!
//! Invariants, checked when read and reported as `Corrupt` when broken: every value has its
//! exact length, a record's timestamp and id match the keys that led to it, and every
//! timestamp an index names has a record.
//!
//! Does not know about the journal, the engine's memory, or which transfers are "old enough":
//! the caller builds runs and chooses watermarks.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use clearline_engine::{AccountFilter, AccountFilterFlags, Transfer, TIMESTAMP_MAX};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use crate::account_runs::{self, Posting, SIDE_CREDIT, SIDE_DEBIT};
use crate::error::HistoryError;
use crate::run::Run;
use crate::watermark::{Watermark, WATERMARK_KEY};

const TRANSFERS: &str = "transfers";
const TRANSFER_IDS: &str = "transfer_ids";
const ACCOUNT_RUNS: &str = "account_runs";
const META: &str = "meta";

/// Where the store lives and how much memory it may cache.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    /// The store's directory; created if missing.
    pub directory: PathBuf,
    /// fjall's block cache, in bytes.
    pub cache_bytes: u64,
}

/// What one `ingest` did, with the time each step took (for benchmarks and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Transfers written.
    pub transfers_ingested: usize,
    /// Transfers at or below the durable watermark, skipped.
    pub transfers_skipped: usize,
    /// Entries written to `account_runs` (one per account touched).
    pub account_entries: usize,
    /// Checking the run's order and sorting ids and account postings.
    pub sort_ns: u64,
    /// Loading `transfers`, synced.
    pub transfers_ns: u64,
    /// Loading `transfer_ids`, synced.
    pub transfer_ids_ns: u64,
    /// Building and loading `account_runs`, synced.
    pub account_runs_ns: u64,
    /// Writing and syncing the watermark.
    pub watermark_ns: u64,
}

/// Buffers reused by every ingest, so a steady stream of runs of one size allocates none of
/// its own (fjall allocates per key).
#[derive(Default)]
struct Scratch {
    /// `(id, timestamp)` of the run, sorted by id.
    ids: Vec<(u128, u64)>,
    /// Both sides of every transfer, sorted by account then timestamp.
    postings: Vec<Posting>,
    /// One encoded `account_runs` value.
    value: Vec<u8>,
}

/// The history store. Reads may run from any number of threads beside one ingest; ingests are
/// serialized.
pub struct History {
    directory: PathBuf,
    database: Database,
    transfers: Keyspace,
    transfer_ids: Keyspace,
    account_runs: Keyspace,
    meta: Keyspace,
    /// The durable watermark: updated only after it is synced.
    watermark: Mutex<Option<Watermark>>,
    /// Held for the whole of an ingest.
    scratch: Mutex<Scratch>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks leaves its data half-changed on a panic, and release builds
    // abort on panic anyway.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn account_filter_valid(filter: &AccountFilter) -> bool {
    let bound_valid = |timestamp: u64| timestamp <= TIMESTAMP_MAX;
    filter.account_id != 0
        && filter.account_id != u128::MAX
        && filter.reserved.iter().all(|byte| *byte == 0)
        && bound_valid(filter.timestamp_min)
        && bound_valid(filter.timestamp_max)
        && (filter.timestamp_max == 0 || filter.timestamp_min <= filter.timestamp_max)
        && filter.limit != 0
        && !filter.flags().padding()
        && filter.flags & (AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS) != 0
}

/// Whether `transfer` matches the filter's field conditions (the side is checked from the
/// account entry, before the record is read).
fn fields_match(filter: &AccountFilter, transfer: &Transfer) -> bool {
    (filter.user_data_128 == 0 || transfer.user_data_128 == filter.user_data_128)
        && (filter.user_data_64 == 0 || transfer.user_data_64 == filter.user_data_64)
        && (filter.user_data_32 == 0 || transfer.user_data_32 == filter.user_data_32)
        && (filter.code == 0 || transfer.code == filter.code)
}

fn checked_order(transfers: &[Transfer]) -> Result<(), HistoryError> {
    for (index, pair) in transfers.windows(2).enumerate() {
        if pair[1].timestamp <= pair[0].timestamp {
            return Err(HistoryError::RunOutOfOrder {
                index: index + 1,
                previous: pair[0].timestamp,
                timestamp: pair[1].timestamp,
            });
        }
    }
    Ok(())
}

impl History {
    /// Opens the store in `config.directory`, creating it if needed, and reads its watermark.
    ///
    /// # Errors
    ///
    /// `Io` if the directory cannot be created; `Fjall` if fjall cannot open it (for example
    /// another process holds it); `Corrupt` if fjall finds damaged files, the watermark is
    /// damaged or from another format version, or a key space is missing from a store that
    /// has a watermark.
    pub fn open(config: &HistoryConfig) -> Result<History, HistoryError> {
        let directory = config.directory.clone();
        std::fs::create_dir_all(&directory).map_err(|source| HistoryError::Io {
            context: "create directory",
            path: directory.clone(),
            source,
        })?;
        let database = Database::builder(&directory)
            .cache_size(config.cache_bytes)
            .open()
            .map_err(|error| HistoryError::fjall("open", directory.clone(), error))?;
        let existed = [TRANSFERS, TRANSFER_IDS, ACCOUNT_RUNS]
            .map(|name| (name, database.keyspace_exists(name)));
        let keyspace = |name: &'static str, options: fn() -> KeyspaceCreateOptions| {
            database
                .keyspace(name, options)
                .map_err(|error| HistoryError::fjall(name, directory.clone(), error))
        };
        let meta = keyspace(META, KeyspaceCreateOptions::default)?;
        let watermark = match meta
            .get(WATERMARK_KEY)
            .map_err(|error| HistoryError::fjall("meta", directory.clone(), error))?
        {
            Some(value) => Some(Watermark::decode(&value)?),
            None => None,
        };
        if watermark.is_some() {
            if let Some((name, _)) = existed.iter().find(|(_, exists)| !exists) {
                return Err(HistoryError::Corrupt {
                    what: "store",
                    detail: format!(
                        "{}: a watermark is stored but key space {name} is missing",
                        directory.display()
                    ),
                });
            }
        }
        // Every read of `transfers` is a hit (its keys come from the other key spaces), so it
        // needs no Bloom filter.
        let transfers = keyspace(TRANSFERS, || {
            KeyspaceCreateOptions::default().expect_point_read_hits(true)
        })?;
        let transfer_ids = keyspace(TRANSFER_IDS, KeyspaceCreateOptions::default)?;
        let account_runs = keyspace(ACCOUNT_RUNS, KeyspaceCreateOptions::default)?;
        Ok(History {
            directory,
            database,
            transfers,
            transfer_ids,
            account_runs,
            meta,
            watermark: Mutex::new(watermark),
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// The store's directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The durable watermark; `None` until the first ingest.
    pub fn watermark(&self) -> Option<Watermark> {
        *lock(&self.watermark)
    }

    fn fjall_error(&self, context: &'static str) -> impl FnOnce(fjall::Error) -> HistoryError {
        let path = self.directory.clone();
        move |error| HistoryError::fjall(context, path, error)
    }

    /// Loads one run: transfers in strictly increasing timestamp order. Transfers at or below
    /// the current watermark's timestamp are skipped (a run rebuilt after a crash may repeat
    /// what was already loaded). Durable when it returns `Ok`: tables synced, then the
    /// watermark. A watermark equal to the durable one is not written again.
    ///
    /// # Errors
    ///
    /// Refused before anything is written: `WatermarkBackwards` if `watermark` is below the
    /// durable one, `RunOutOfOrder`, `RunBeyondWatermark` if a transfer is above
    /// `watermark.timestamp`, `RunDuplicateId`. While writing: `Fjall` or `Corrupt`; some key
    /// spaces may then hold the run's transfers above the old watermark, which the next
    /// successful ingest of the same run makes whole.
    pub fn ingest(&self, run: &Run, watermark: Watermark) -> Result<IngestReport, HistoryError> {
        let mut scratch = lock(&self.scratch);
        let durable = self.watermark();
        if let Some(durable) = durable {
            if watermark.is_behind(&durable) {
                return Err(HistoryError::WatermarkBackwards {
                    durable: (durable.sequence, durable.timestamp),
                    given: (watermark.sequence, watermark.timestamp),
                });
            }
        }
        if let Some(last) = run.transfers().last() {
            if last.timestamp > watermark.timestamp {
                return Err(HistoryError::RunBeyondWatermark {
                    timestamp: last.timestamp,
                    watermark_timestamp: watermark.timestamp,
                });
            }
        }
        let mut report = self.ingest_tables_locked(&mut scratch, run, durable)?;
        if durable != Some(watermark) {
            let start = Instant::now();
            let mut ingestion = self
                .meta
                .start_ingestion()
                .map_err(self.fjall_error("meta"))?;
            ingestion
                .write(WATERMARK_KEY, &watermark.encode()[..])
                .map_err(self.fjall_error("meta"))?;
            ingestion.finish().map_err(self.fjall_error("meta"))?;
            *lock(&self.watermark) = Some(watermark);
            report.watermark_ns = elapsed_ns(start);
        }
        Ok(report)
    }

    /// The first part of `ingest` alone: the run's transfers above the durable watermark are
    /// loaded into `transfers`, `transfer_ids` and `account_runs`, and the watermark is left
    /// as it is. Stopping here is what a crash between the tables and the watermark leaves;
    /// tests use it to check recovery from that state.
    ///
    /// # Errors
    ///
    /// As `ingest`, without the watermark checks.
    #[doc(hidden)]
    pub fn ingest_tables(&self, run: &Run) -> Result<IngestReport, HistoryError> {
        let mut scratch = lock(&self.scratch);
        let durable = self.watermark();
        self.ingest_tables_locked(&mut scratch, run, durable)
    }

    fn ingest_tables_locked(
        &self,
        scratch: &mut Scratch,
        run: &Run,
        durable: Option<Watermark>,
    ) -> Result<IngestReport, HistoryError> {
        let start = Instant::now();
        let transfers = run.transfers();
        checked_order(transfers)?;
        let skipped = durable.map_or(0, |durable| {
            transfers.partition_point(|transfer| transfer.timestamp <= durable.timestamp)
        });
        let fresh = &transfers[skipped..];
        let mut report = IngestReport {
            transfers_ingested: fresh.len(),
            transfers_skipped: skipped,
            ..IngestReport::default()
        };
        if fresh.is_empty() {
            return Ok(report);
        }

        // Everything that can refuse the run is checked before the first write.
        let ids = &mut scratch.ids;
        ids.clear();
        ids.extend(
            fresh
                .iter()
                .map(|transfer| (transfer.id, transfer.timestamp)),
        );
        ids.sort_unstable_by_key(|&(id, _)| id);
        if let Some(pair) = ids.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(HistoryError::RunDuplicateId { id: pair[0].0 });
        }
        let postings = &mut scratch.postings;
        postings.clear();
        for transfer in fresh {
            let (debit, credit) = (transfer.debit_account_id, transfer.credit_account_id);
            let timestamp = transfer.timestamp;
            if debit == credit {
                postings.push(Posting {
                    account: debit,
                    timestamp,
                    side: SIDE_DEBIT | SIDE_CREDIT,
                });
            } else {
                postings.push(Posting {
                    account: debit,
                    timestamp,
                    side: SIDE_DEBIT,
                });
                postings.push(Posting {
                    account: credit,
                    timestamp,
                    side: SIDE_CREDIT,
                });
            }
        }
        postings.sort_unstable();
        report.sort_ns = elapsed_ns(start);

        let start = Instant::now();
        let mut ingestion = self
            .transfers
            .start_ingestion()
            .map_err(self.fjall_error(TRANSFERS))?;
        let mut record = [0u8; Transfer::SIZE];
        for transfer in fresh {
            transfer.encode(&mut record);
            ingestion
                .write(&transfer.timestamp.to_be_bytes()[..], &record[..])
                .map_err(self.fjall_error(TRANSFERS))?;
        }
        ingestion.finish().map_err(self.fjall_error(TRANSFERS))?;
        report.transfers_ns = elapsed_ns(start);

        let start = Instant::now();
        let mut ingestion = self
            .transfer_ids
            .start_ingestion()
            .map_err(self.fjall_error(TRANSFER_IDS))?;
        for &(id, timestamp) in ids.iter() {
            ingestion
                .write(&id.to_be_bytes()[..], &timestamp.to_be_bytes()[..])
                .map_err(self.fjall_error(TRANSFER_IDS))?;
        }
        ingestion.finish().map_err(self.fjall_error(TRANSFER_IDS))?;
        report.transfer_ids_ns = elapsed_ns(start);

        let start = Instant::now();
        let mut ingestion = self
            .account_runs
            .start_ingestion()
            .map_err(self.fjall_error(ACCOUNT_RUNS))?;
        for group in postings.chunk_by(|a, b| a.account == b.account) {
            account_runs::encode_list(group, &mut scratch.value);
            let key = account_runs::key(group[0].account, group[0].timestamp);
            ingestion
                .write(&key[..], &scratch.value[..])
                .map_err(self.fjall_error(ACCOUNT_RUNS))?;
            report.account_entries += 1;
        }
        ingestion.finish().map_err(self.fjall_error(ACCOUNT_RUNS))?;
        report.account_runs_ns = elapsed_ns(start);
        Ok(report)
    }

    /// The record stored under `timestamp`, which an index named.
    fn record(&self, timestamp: u64, named_by: &'static str) -> Result<Transfer, HistoryError> {
        let Some(value) = self
            .transfers
            .get(timestamp.to_be_bytes())
            .map_err(self.fjall_error(TRANSFERS))?
        else {
            return Err(HistoryError::Corrupt {
                what: named_by,
                detail: format!("names timestamp {timestamp}, which has no record"),
            });
        };
        let Ok(bytes) = <&[u8; Transfer::SIZE]>::try_from(&value[..]) else {
            return Err(HistoryError::Corrupt {
                what: TRANSFERS,
                detail: format!("record at timestamp {timestamp} has {} bytes", value.len()),
            });
        };
        let transfer = Transfer::decode(bytes);
        if transfer.timestamp != timestamp {
            return Err(HistoryError::Corrupt {
                what: TRANSFERS,
                detail: format!(
                    "record under timestamp {timestamp} holds timestamp {}",
                    transfer.timestamp
                ),
            });
        }
        Ok(transfer)
    }

    /// The transfer with `id`, if the store holds it.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if the id's entry or its record is damaged.
    pub fn transfer(&self, id: u128) -> Result<Option<Transfer>, HistoryError> {
        let Some(value) = self
            .transfer_ids
            .get(id.to_be_bytes())
            .map_err(self.fjall_error(TRANSFER_IDS))?
        else {
            return Ok(None);
        };
        let Ok(bytes) = <[u8; 8]>::try_from(&value[..]) else {
            return Err(HistoryError::Corrupt {
                what: TRANSFER_IDS,
                detail: format!("id {id}: {} bytes, expected 8", value.len()),
            });
        };
        let transfer = self.record(u64::from_be_bytes(bytes), TRANSFER_IDS)?;
        if transfer.id != id {
            return Err(HistoryError::Corrupt {
                what: TRANSFER_IDS,
                detail: format!("id {id} leads to the record of id {}", transfer.id),
            });
        }
        Ok(Some(transfer))
    }

    /// Appends to `out` the transfers of `ids` that the store holds, in the order of `ids`.
    ///
    /// # Errors
    ///
    /// As `transfer`; `out` may then hold the transfers found before the error.
    pub fn transfers_by_id(
        &self,
        ids: &[u128],
        out: &mut Vec<Transfer>,
    ) -> Result<(), HistoryError> {
        for &id in ids {
            if let Some(transfer) = self.transfer(id)? {
                out.push(transfer);
            }
        }
        Ok(())
    }

    /// `get_account_transfers` over the store, with the engine's semantics (docs/ledger.md):
    /// the transfers that debit (`debits`) or credit (`credits`) `filter.account_id`, matching
    /// `user_data_128`, `user_data_64`, `user_data_32` and `code` where they are not 0, with
    /// `timestamp_min <= timestamp <= timestamp_max` (0: unbounded), oldest first or newest
    /// first (`reversed`), at most `limit`. An invalid filter selects nothing. Appends to
    /// `out`; the caller applies any cap of its own through `limit`.
    ///
    /// # Errors
    ///
    /// `Fjall` on a failed read; `Corrupt` if an account entry or a record it names is
    /// damaged. `out` may then hold part of the answer.
    pub fn account_transfers(
        &self,
        filter: &AccountFilter,
        out: &mut Vec<Transfer>,
    ) -> Result<(), HistoryError> {
        if !account_filter_valid(filter) {
            return Ok(());
        }
        let account = filter.account_id;
        let minimum = filter.timestamp_min;
        let maximum = if filter.timestamp_max == 0 {
            u64::MAX
        } else {
            filter.timestamp_max
        };
        let reversed = filter.flags().reversed();
        let sides =
            (filter.flags & (AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS)) as u8;
        let mut remaining = filter.limit as usize;
        let mut list = Vec::new();
        // An entry starting below `minimum` can still hold transfers at or above it: the scan
        // starts at the last entry starting at or below `minimum`.
        let low = match self
            .account_runs
            .range(account_runs::key(account, 0)..=account_runs::key(account, minimum))
            .next_back()
        {
            Some(guard) => {
                let key = guard.key().map_err(self.fjall_error(ACCOUNT_RUNS))?;
                account_runs::key_parts(&key)?.1
            }
            None => minimum,
        };
        let range = self
            .account_runs
            .range(account_runs::key(account, low)..=account_runs::key(account, maximum));
        let entries: Box<dyn Iterator<Item = fjall::Guard>> = if reversed {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        // Entries of one account never overlap (see account_runs.rs); `boundary`, the last
        // timestamp visited, makes sure that even if they did, no transfer is returned twice.
        let mut boundary: Option<u64> = None;
        for guard in entries {
            let (key, value) = guard.into_inner().map_err(self.fjall_error(ACCOUNT_RUNS))?;
            let (key_account, first_timestamp) = account_runs::key_parts(&key)?;
            if key_account != account {
                return Err(HistoryError::Corrupt {
                    what: ACCOUNT_RUNS,
                    detail: format!("range of account {account} met account {key_account}"),
                });
            }
            account_runs::decode_list(account, first_timestamp, &value, &mut list)?;
            let mut visit = |&(timestamp, side): &(u64, u8)| -> Result<bool, HistoryError> {
                let fresh = match boundary {
                    None => true,
                    Some(boundary) if reversed => timestamp < boundary,
                    Some(boundary) => timestamp > boundary,
                };
                if !fresh || timestamp < minimum || timestamp > maximum {
                    return Ok(true);
                }
                boundary = Some(timestamp);
                if side & sides == 0 {
                    return Ok(true);
                }
                let transfer = self.record(timestamp, ACCOUNT_RUNS)?;
                let debits = transfer.debit_account_id == account;
                let credits = transfer.credit_account_id == account;
                if (side & SIDE_DEBIT != 0) != debits || (side & SIDE_CREDIT != 0) != credits {
                    return Err(HistoryError::Corrupt {
                        what: ACCOUNT_RUNS,
                        detail: format!(
                            "account {account}, timestamp {timestamp}: side {side} does not \
                             match the record"
                        ),
                    });
                }
                if fields_match(filter, &transfer) {
                    out.push(transfer);
                    remaining -= 1;
                }
                Ok(remaining > 0)
            };
            let more = if reversed {
                list.iter()
                    .rev()
                    .map(&mut visit)
                    .find(|more| !matches!(more, Ok(true)))
            } else {
                list.iter()
                    .map(&mut visit)
                    .find(|more| !matches!(more, Ok(true)))
            };
            match more {
                Some(Err(error)) => return Err(error),
                Some(Ok(_)) => return Ok(()),
                None => {}
            }
            if reversed && first_timestamp <= minimum {
                break;
            }
        }
        Ok(())
    }

    /// Each key space's name and directory, for diagnostics (and for tests that damage
    /// files on purpose).
    pub fn key_space_paths(&self) -> [(&'static str, PathBuf); 4] {
        [
            (TRANSFERS, self.transfers.path().to_path_buf()),
            (TRANSFER_IDS, self.transfer_ids.path().to_path_buf()),
            (ACCOUNT_RUNS, self.account_runs.path().to_path_buf()),
            (META, self.meta.path().to_path_buf()),
        ]
    }

    /// Bytes the store takes on disk (tables and fjall's log), as fjall counts them; the
    /// log's part counts as 0 if it cannot be read.
    pub fn disk_bytes(&self) -> u64 {
        let keyspaces: u64 = [
            &self.transfers,
            &self.transfer_ids,
            &self.account_runs,
            &self.meta,
        ]
        .iter()
        .map(|keyspace| keyspace.disk_space())
        .sum();
        keyspaces + self.database.journal_disk_space().unwrap_or(0)
    }
}
