//! History mode of the ledger (docs/history.md): handing records to the history store and
//! dropping them from memory once they are durable there.
//!
//! Eviction compacts the in-memory stores in place: the records at or below the new
//! watermark leave, except pending transfers whose status the store does not hold yet
//! (unresolved, or resolved after the watermark); the rest keep their order and move down, and
//! every position that names them (the id index, list links and heads, the expiry queue,
//! balance rows) is rewritten. Its cost is linear in what stays in memory, so the caller
//! evicts after each durable history run. Nothing here allocates: the scratch tables are sized
//! when history mode is enabled.

use super::{is_settlement, HistoryMode, Ledger, PendingStatus, TransferLookup, ORPHAN_BIT};
use crate::account::AccountBalance;
use crate::checkpoint::{CheckpointError, ImageReader, ImageWriter};
use crate::digest::Digest;
use crate::history::{HistoryRead, HistorySink};
use crate::id_filter::{AsideIds, IdFilter, ASIDE_IDS_MAX};
use crate::NO_POSITION;

impl HistoryMode {
    /// Adds a stored id to the id filter, or aside while a checkpoint writer shares it.
    #[inline]
    pub(super) fn filter_insert(&mut self, id: u128) {
        self.aside.insert(&mut self.filter, id);
    }

    /// False: no id `id` was ever stored. True: it may have been.
    #[inline]
    pub(crate) fn filter_may_contain(&self, id: u128) -> bool {
        self.aside.may_contain(&self.filter, id)
    }

    /// Whether every record of a ledger holding `counts` (transfers, burned ids, balance rows,
    /// as `Ledger::record_counts` gives them) was handed to the sink.
    fn all_drained(&self, (transfers, orphans, rows): (usize, usize, usize)) -> bool {
        self.drained_transfers == transfers
            && self.drained_orphans == orphans
            && self.drained_rows == rows
            && self.resolutions.is_empty()
    }

    /// Marks every record of a ledger holding `counts` as handed to the sink.
    fn mark_drained(&mut self, (transfers, orphans, rows): (usize, usize, usize)) {
        self.drained_transfers = transfers;
        self.drained_orphans = orphans;
        self.drained_rows = rows;
    }

    /// Where the store answers for an id memory does not hold: `None` when memory's answer
    /// (absent) stands.
    #[cold]
    pub(super) fn lookup(&self, id: u128, settlement: bool) -> Option<TransferLookup> {
        if self.evicted_through == 0 || !self.filter_may_contain(id) {
            return None;
        }
        // Only what this engine dropped counts: a store ahead of a replay may hold records the
        // replay has not reached, and the answer must be the one given when the write was first
        // applied.
        let dropped = |timestamp: u64| timestamp <= self.evicted_through;
        if let Some(transfer) = self.reader.transfer(id, settlement) {
            return dropped(transfer.timestamp).then_some(TransferLookup::Stored(transfer));
        }
        if settlement {
            return None;
        }
        self.reader
            .burned(id)
            .filter(|timestamp| dropped(*timestamp))
            .map(|_| TransferLookup::Orphan)
    }
}

/// Eviction rebuilds the id index when at least one record leaves for every this many that
/// stay (see `Ledger::evict`).
const REBUILD_LEAVING_RATIO: usize = 8;

/// Running digests of what was handed to the sink, one per kind so that they do not depend on
/// how the caller batches its drains.
#[derive(Clone)]
pub(crate) struct HistoryDigests {
    transfers: Digest,
    burned: Digest,
    resolutions: Digest,
    balances: Digest,
}

impl HistoryDigests {
    pub(super) fn new() -> HistoryDigests {
        HistoryDigests {
            transfers: Digest::new(),
            burned: Digest::new(),
            resolutions: Digest::new(),
            balances: Digest::new(),
        }
    }
}

impl Ledger {
    /// How many transfers, burned ids and balance rows memory holds.
    fn record_counts(&self) -> (usize, usize, usize) {
        (
            self.transfers.len(),
            self.orphans.len(),
            self.balances.len(),
        )
    }

    /// Switches an empty ledger to history mode, reading what leaves memory from `reader`;
    /// the id filter is sized for `ids_max` ids.
    ///
    /// # Panics
    ///
    /// If the ledger is not empty or already in history mode.
    pub(crate) fn enable_history(&mut self, reader: Box<dyn HistoryRead>, ids_max: u64) {
        assert!(self.history.is_none(), "history mode is already on");
        assert!(self.transfers.is_empty() && self.orphans.is_empty() && self.balances.is_empty());
        let resolutions = self.config.transfers_pending_max as usize
            + self.config.batch_events_max as usize
            + crate::limits::PULSE_EXPIRIES_MAX as usize;
        self.history = Some(Box::new(HistoryMode {
            reader,
            filter: IdFilter::new(ids_max),
            aside: AsideIds::new(ids_max.min(ASIDE_IDS_MAX)),
            evicted_through: 0,
            evicted_timestamp_max: 0,
            drained_transfers: 0,
            drained_orphans: 0,
            drained_rows: 0,
            resolutions: Vec::with_capacity(resolutions),
            folded_through: 0,
            digests: HistoryDigests::new(),
            remap_transfers: Vec::with_capacity(self.config.transfers_max as usize),
            remap_rows: Vec::with_capacity(self.config.account_balances_max as usize),
        }));
    }

    /// Whether the ledger is in history mode.
    pub(crate) fn history_enabled(&self) -> bool {
        self.history.is_some()
    }

    /// Everything at or below this timestamp may have left memory (0: nothing has).
    pub(crate) fn history_evicted_through(&self) -> u64 {
        self.history
            .as_deref()
            .map_or(0, |history| history.evicted_through)
    }

    /// Room left in memory: `(transfers, burned ids, balance rows)`. In history mode the
    /// caller keeps each at least what one command can add before applying it (waiting for
    /// the store and evicting when it is short).
    pub(crate) fn history_room(&self) -> (usize, usize, usize) {
        (
            self.config.transfers_max as usize - self.transfers.len(),
            self.orphans_max - self.orphans.len(),
            self.config.account_balances_max as usize - self.balances.len(),
        )
    }

    /// Hands every record not yet handed over to `sink`, each kind in timestamp order, and
    /// folds those newer than any folded before into the history digests.
    pub(crate) fn history_drain(&mut self, sink: &mut dyn HistorySink) {
        assert!(!self.undo_active);
        let history = self.history.as_deref_mut().expect("history mode");
        // Records of one command all have timestamps above those of earlier commands, so
        // "newer than anything folded" is exactly "not folded yet".
        let folded = history.folded_through;
        let mut newest = folded;
        for transfer in &self.transfers[history.drained_transfers..] {
            if transfer.timestamp > folded {
                let digest = &mut history.digests.transfers;
                digest.record(|bytes| transfer.encode(bytes));
                newest = newest.max(transfer.timestamp);
            }
            sink.transfer(transfer);
        }
        history.drained_transfers = self.transfers.len();
        let orphans = &self.orphans[history.drained_orphans..];
        let timestamps = &self.orphan_timestamps[history.drained_orphans..];
        for (id, timestamp) in orphans.iter().zip(timestamps) {
            if *timestamp > folded {
                history.digests.burned.u128(*id);
                history.digests.burned.u64(*timestamp);
                newest = newest.max(*timestamp);
            }
            sink.burned(*id, *timestamp);
        }
        history.drained_orphans = self.orphans.len();
        for (position, status, timestamp) in history.resolutions.drain(..) {
            let pending = &self.transfers[position as usize];
            if timestamp > folded {
                history.digests.resolutions.u128(pending.id);
                history.digests.resolutions.u64(status as u64);
                history.digests.resolutions.u64(timestamp);
                newest = newest.max(timestamp);
            }
            sink.resolution(pending.id, is_settlement(pending), status, timestamp);
        }
        // A transfer's rows are the debit account's (if it keeps history), then the credit
        // account's, and are drained together.
        let (accounts, account_index) = (&self.accounts, &self.account_index);
        let mut previous = NO_POSITION;
        for row in &self.balances[history.drained_rows..] {
            let transfer = &self.transfers[row.transfer as usize];
            let debit_keeps_history = account_index
                .find(transfer.debit_account_id, |position| {
                    accounts[position as usize].id
                })
                .is_some_and(|position| accounts[position as usize].flags().history());
            let account = if row.transfer != previous && debit_keeps_history {
                transfer.debit_account_id
            } else {
                transfer.credit_account_id
            };
            previous = row.transfer;
            let balance = AccountBalance {
                debits_pending: row.debits_pending,
                debits_posted: row.debits_posted,
                credits_pending: row.credits_pending,
                credits_posted: row.credits_posted,
                timestamp: row.timestamp,
                reserved: [0; 56],
            };
            if row.timestamp > folded {
                history.digests.balances.u128(account);
                history
                    .digests
                    .balances
                    .record(|bytes| balance.encode(bytes));
                newest = newest.max(row.timestamp);
            }
            sink.balance(account, &balance);
        }
        history.drained_rows = self.balances.len();
        history.folded_through = newest;
    }

    /// After loading a checkpoint: the next drain hands out again every record above `after`
    /// (the history store's watermark), so the store receives what it lost in a crash.
    /// Resolutions of transfers still in memory are handed out again in timestamp order.
    ///
    /// # Panics
    ///
    /// If not in history mode, or if `after` is below what left memory (the store cannot be
    /// behind what the engine dropped).
    pub(crate) fn history_redrain(&mut self, after: u64) {
        let history = self.history.as_deref_mut().expect("history mode");
        assert!(
            after >= history.evicted_through,
            "the history store is behind what left memory"
        );
        history.drained_transfers = self.transfers.partition_point(|t| t.timestamp <= after);
        history.drained_orphans = self.orphan_timestamps.partition_point(|t| *t <= after);
        history.drained_rows = self.balances.partition_point(|row| row.timestamp <= after);
        history.resolutions.clear();
        for (position, meta) in self.transfer_meta.iter().enumerate() {
            let Some(status) = meta.status.resolution() else {
                continue;
            };
            if meta.resolved_at > after {
                assert!(history.resolutions.len() < history.resolutions.capacity());
                history
                    .resolutions
                    .push((position as u32, status, meta.resolved_at));
            }
        }
        history
            .resolutions
            .sort_unstable_by_key(|resolution| resolution.2);
    }

    /// Writes the history section of a checkpoint image (checkpoint.rs): 0 outside history
    /// mode; else 1, the eviction state, each burned id's burn timestamp, each transfer's
    /// resolution timestamp, the id filter and the history digests. Records not yet drained
    /// are not marked: the loader hands out again everything above the store's watermark.
    pub(crate) fn history_checkpoint_write(&self, writer: &mut ImageWriter) -> std::io::Result<()> {
        let Some(history) = self.history.as_deref() else {
            return writer.u8(0);
        };
        writer.u8(1)?;
        writer.u64(history.evicted_through)?;
        writer.u64(history.evicted_timestamp_max)?;
        for timestamp in &self.orphan_timestamps {
            writer.u64(*timestamp)?;
        }
        for meta in &self.transfer_meta {
            writer.u64(meta.resolved_at)?;
        }
        history.filter.checkpoint_write(writer)?;
        // The digests must cover every record in the image: the loader takes everything up
        // to the image's clock as folded.
        assert!(
            history.all_drained(self.record_counts()),
            "a checkpoint in history mode is taken after a drain"
        );
        let digests = &history.digests;
        for digest in [
            &digests.transfers,
            &digests.burned,
            &digests.resolutions,
            &digests.balances,
        ] {
            digest.checkpoint_write(writer)?;
        }
        Ok(())
    }

    /// Reads the history section written by `history_checkpoint_write` into this ledger, just
    /// loaded in history mode; `clock` is the engine clock of the image (every record in it is
    /// folded into the digests).
    pub(crate) fn history_checkpoint_read(
        &mut self,
        reader: &mut ImageReader,
        clock: u64,
    ) -> Result<(), CheckpointError> {
        let counts = self.record_counts();
        let history = self.history.as_deref_mut().expect("history mode");
        history.evicted_through = reader.u64()?;
        history.evicted_timestamp_max = reader.u64()?;
        for timestamp in &mut self.orphan_timestamps {
            *timestamp = reader.u64()?;
        }
        if !self.orphan_timestamps.is_sorted() {
            return Err(reader.invalid("burned transfer ids", "burn timestamps out of order"));
        }
        for meta in &mut self.transfer_meta {
            meta.resolved_at = reader.u64()?;
        }
        history.filter.checkpoint_read(reader)?;
        history.aside.clear();
        history.digests = HistoryDigests {
            transfers: Digest::checkpoint_read(reader)?,
            burned: Digest::checkpoint_read(reader)?,
            resolutions: Digest::checkpoint_read(reader)?,
            balances: Digest::checkpoint_read(reader)?,
        };
        history.folded_through = clock;
        history.mark_drained(counts);
        Ok(())
    }

    /// The history digests, as if everything were drained.
    pub(crate) fn history_digest(&self, digest: &mut Digest) {
        let Some(history) = self.history.as_deref() else {
            return;
        };
        assert!(
            history.all_drained(self.record_counts()),
            "the state hash of an engine in history mode is taken after a drain"
        );
        digest.u128(history.digests.transfers.finish());
        digest.u128(history.digests.burned.finish());
        digest.u128(history.digests.resolutions.finish());
        digest.u128(history.digests.balances.finish());
        digest.u64(
            history.evicted_timestamp_max.max(
                self.transfers
                    .last()
                    .map_or(0, |transfer| transfer.timestamp),
            ),
        );
    }

    /// Drops from memory what the store holds durably up to `through` (a timestamp at or
    /// below the last record drained; see the module docs for what stays).
    ///
    /// # Panics
    ///
    /// If not in history mode, inside a linked chain, with records not yet drained, or if
    /// `through` is above the newest record drained.
    pub(crate) fn history_evict(&mut self, through: u64) {
        assert!(!self.undo_active);
        let mut history = self.history.take().expect("history mode");
        assert!(history.all_drained(self.record_counts()), "drain first");
        if through > history.evicted_through {
            self.evict(&mut history, through);
            history.evicted_through = through;
            history.mark_drained(self.record_counts());
        }
        self.history = Some(history);
    }

    fn evict(&mut self, history: &mut HistoryMode, through: u64) {
        // Transfers: a pending one at or below `through` stays while the store lacks its
        // status; everything else at or below it leaves.
        let split = self
            .transfers
            .partition_point(|transfer| transfer.timestamp <= through);
        let stays = |meta: &super::TransferMeta| match meta.status {
            PendingStatus::None => false,
            PendingStatus::Pending => true,
            _ => meta.resolved_at > through,
        };
        let rows_split = self
            .balances
            .partition_point(|row| row.timestamp <= through);
        let orphans_split = self
            .orphan_timestamps
            .partition_point(|timestamp| *timestamp <= through);

        // The id index loses what leaves and every entry that stays moves. Removing an entry
        // reads the ids of its neighbours in the table (random reads), and re-pointing one
        // costs about what inserting it does, so building the index again from what stays is
        // cheaper unless few records leave (then the table's clear would dominate): on the 10 M
        // benchmark, an eviction of one run with three staying took 190 to 246 ms by removal
        // and 163 to 211 ms by rebuilding.
        // Only the metadata is read to count what leaves: of the records below the split, only
        // the newest leaving one is read, for its timestamp.
        let mut leaving = orphans_split;
        let mut newest_leaving = None;
        for (position, meta) in self.transfer_meta[..split].iter().enumerate() {
            if !stays(meta) {
                leaving += 1;
                newest_leaving = Some(position);
            }
        }
        if let Some(newest) = newest_leaving {
            history.evicted_timestamp_max = history
                .evicted_timestamp_max
                .max(self.transfers[newest].timestamp);
        }
        let staying = self.transfers.len() + self.orphans.len() - leaving;
        let rebuild = leaving * REBUILD_LEAVING_RATIO >= staying;

        // 1. Remove what leaves from the id index while every position still names its record.
        if !rebuild {
            let (transfers, orphans) = (&self.transfers, &self.orphans);
            let key_of = |position: u32| {
                if position & ORPHAN_BIT != 0 {
                    orphans[(position & !ORPHAN_BIT) as usize]
                } else {
                    transfers[position as usize].id
                }
            };
            let leaving = transfers[..split].iter().zip(&self.transfer_meta[..split]);
            for (position, (transfer, meta)) in leaving.enumerate() {
                if !stays(meta) {
                    self.transfer_index
                        .remove(transfer.id, position as u32, key_of);
                }
            }
            for (position, id) in orphans[..orphans_split].iter().enumerate() {
                self.transfer_index
                    .remove(*id, position as u32 | ORPHAN_BIT, key_of);
            }
        }

        // 2. New positions; re-point the index entries that move.
        let remap = &mut history.remap_transfers;
        remap.clear();
        let mut kept = 0u32;
        for position in 0..self.transfers.len() {
            let keep = position >= split || stays(&self.transfer_meta[position]);
            if keep {
                if !rebuild && kept != position as u32 {
                    let id = self.transfers[position].id;
                    self.transfer_index.repoint(id, position as u32, kept);
                }
                remap.push(kept);
                kept += 1;
            } else {
                remap.push(NO_POSITION);
            }
        }
        if !rebuild {
            for (position, id) in self.orphans[orphans_split..].iter().enumerate() {
                let from = (position + orphans_split) as u32 | ORPHAN_BIT;
                self.transfer_index
                    .repoint(*id, from, position as u32 | ORPHAN_BIT);
            }
        }
        let rows_remap = &mut history.remap_rows;
        rows_remap.clear();
        for row in 0..self.balances.len() {
            rows_remap.push(if row < rows_split {
                NO_POSITION
            } else {
                (row - rows_split) as u32
            });
        }
        // A link to a record at or below `through` ends the list: memory lists hold only the
        // records above it (pending transfers that stay are reached through the index).
        let link = |target: u32, split: usize, remap: &[u32]| {
            if target == NO_POSITION || (target as usize) < split {
                NO_POSITION
            } else {
                remap[target as usize]
            }
        };

        // 3. Move the records down, rewriting their links; when rebuilding, each record that
        // stays enters the index as it is written, while its id is still in the cache.
        if rebuild {
            self.transfer_index.clear();
        }
        let mut write = 0usize;
        for read in 0..self.transfers.len() {
            if remap[read] == NO_POSITION {
                continue;
            }
            let mut meta = self.transfer_meta[read];
            if read < split {
                meta.debit_previous = NO_POSITION;
                meta.credit_previous = NO_POSITION;
            } else {
                meta.debit_previous = link(meta.debit_previous, split, remap);
                meta.credit_previous = link(meta.credit_previous, split, remap);
            }
            self.transfers[write] = self.transfers[read];
            self.transfer_meta[write] = meta;
            self.expiry_positions[write] = self.expiry_positions[read];
            if rebuild {
                self.transfer_index
                    .insert(self.transfers[write].id, write as u32);
            }
            write += 1;
        }
        self.transfers.truncate(write);
        self.transfer_meta.truncate(write);
        self.expiry_positions.truncate(write);
        self.expiry.remap(|position| remap[position as usize]);
        self.orphans.drain(..orphans_split);
        self.orphan_timestamps.drain(..orphans_split);
        if rebuild {
            // Transfers (above) then burned ids, in position order: the index holds the same
            // entries as after removals.
            self.index_burned_ids();
        }
        for read in rows_split..self.balances.len() {
            let mut row = self.balances[read];
            row.previous = link(row.previous, rows_split, rows_remap);
            row.transfer = remap[row.transfer as usize];
            assert_ne!(
                row.transfer, NO_POSITION,
                "a row above the watermark keeps its transfer"
            );
            self.balances[read - rows_split] = row;
        }
        self.balances.truncate(self.balances.len() - rows_split);
        for meta in &mut self.account_meta {
            meta.transfer_newest = link(meta.transfer_newest, split, remap);
            meta.balance_newest = link(meta.balance_newest, rows_split, rows_remap);
        }
    }
}
