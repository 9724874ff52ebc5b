//! History mode of the matching side (docs/history.md): finished orders and fills go to the
//! history store and leave memory once it holds them durably, as transfers do (ledger
//! eviction.rs).
//!
//! An order is finished once its state is no longer `Resting` (filled, canceled, expired, or an
//! immediate order's released remainder): nothing can change it after the command that
//! finished it. `Engine` calls `history_note` after every order event and
//! `history_note_expired` after a pulse; they record each order that command finished, with the
//! command's first timestamp as its finish time. A drain hands those orders and every new fill
//! to the sink, in the order they were made; an eviction at `through` drops the finished orders
//! whose finish time is at or below it, and the fills at or below it. Resting orders never
//! leave memory.
//!
//! What memory no longer holds is read back through `HistoryRead`, only for what this engine
//! dropped: the idempotency check of a placed order id (an id filter over dropped ids first,
//! so that a new id costs no store read), `lookup_orders`, cancel and amend of a dropped order
//! (`order_not_resting`, as from memory), and the part of `get_fills` at or below the eviction
//! watermark. Records the store holds with a later finish time are ignored (a store ahead of a
//! replay).
//!
//! The state hash does not depend on what left memory: finished orders and fills are folded
//! into running digests when drained, and only orders that may still change are hashed from
//! memory.

use super::Exchange;
use crate::checkpoint::{CheckpointError, ImageReader, ImageWriter};
use crate::digest::Digest;
use crate::history::{HistoryRead, HistorySink};
use crate::id_filter::IdFilter;
use crate::ledger::Ledger;
use crate::order::{Fill, FillFilter, Order, OrderState, OrderStatus};

/// The fill store: the fills in memory, after those dropped to the history store. Its length
/// and capacity count the dropped fills too, so that `len() + 1` is the next fill's sequence
/// and `capacity() - len()` the room left in memory.
pub(crate) struct FillStore {
    fills: Vec<Fill>,
    dropped: u64,
}

impl FillStore {
    pub(super) fn with_capacity(capacity: usize) -> FillStore {
        FillStore {
            fills: Vec::with_capacity(capacity),
            dropped: 0,
        }
    }

    /// Fills made so far (the sequence of the newest).
    pub(super) fn len(&self) -> usize {
        self.dropped as usize + self.fills.len()
    }

    /// The `len` the store reaches when memory is full.
    pub(super) fn capacity(&self) -> usize {
        self.dropped as usize + self.fills.capacity()
    }

    /// Appends a fill; the caller checked the room.
    pub(super) fn push(&mut self, fill: Fill) {
        assert!(self.fills.len() < self.fills.capacity());
        self.fills.push(fill);
    }

    /// Drops the fills after the first `len` made (never below what left memory).
    pub(super) fn truncate(&mut self, len: usize) {
        self.fills.truncate(len - self.dropped as usize);
    }

    /// The fills in memory, oldest first.
    pub(super) fn held(&self) -> &[Fill] {
        &self.fills
    }

    pub(super) fn clear(&mut self) {
        self.fills.clear();
        self.dropped = 0;
    }

    /// Room for reading an image of `count` fills (checkpoint).
    pub(super) fn memory_capacity(&self) -> usize {
        self.fills.capacity()
    }
}

/// The matching side's part of history mode.
pub(crate) struct OrderHistory {
    /// Every dropped order id: a new id needs no store read.
    filter: IdFilter,
    /// Everything finished at or below this timestamp may have left memory (0: nothing).
    evicted_through: u64,
    /// Per order in memory: the first timestamp of the command that finished it, 0 while it
    /// rests.
    finished_at: Vec<u64>,
    /// Orders finished since the last drain, in the order they finished.
    finished: Vec<u32>,
    /// Fills in memory below this position were handed to the sink.
    drained_fills: usize,
    /// Records at or below this timestamp are folded into the digests.
    folded_through: u64,
    orders_digest: Digest,
    fills_digest: Digest,
    /// An image of an earlier version was loaded: its finished orders and fills were never in
    /// the store, so the next redrain hands out all of them.
    redrain_all: bool,
}

/// A command's finish timestamp for order `position`, if it just finished.
fn note(history: &mut OrderHistory, orders: &[Order], position: u32, at: u64) {
    let index = position as usize;
    if orders[index].state != OrderState::Resting as u8 && history.finished_at[index] == 0 {
        assert!(history.finished.len() < history.finished.capacity());
        history.finished_at[index] = at;
        history.finished.push(position);
    }
}

impl Exchange {
    /// Switches an empty exchange to history mode; the dropped-order id filter is sized for
    /// `ids_max` ids.
    pub(crate) fn enable_history(&mut self, ids_max: u64) {
        assert!(self.history.is_none(), "history mode is already on");
        assert!(self.orders.is_empty() && self.fills.len() == 0);
        let orders_max = self.orders.capacity();
        self.history = Some(Box::new(OrderHistory {
            filter: IdFilter::new(ids_max),
            evicted_through: 0,
            finished_at: Vec::with_capacity(orders_max),
            finished: Vec::with_capacity(orders_max),
            drained_fills: 0,
            folded_through: 0,
            orders_digest: Digest::new(),
            fills_digest: Digest::new(),
            redrain_all: false,
        }));
    }

    pub(super) fn history_clear(&mut self) {
        if let Some(history) = self.history.as_deref_mut() {
            history.filter = IdFilter::new(history.filter.ids_max());
            history.evicted_through = 0;
            history.finished_at.clear();
            history.finished.clear();
            history.drained_fills = 0;
            history.folded_through = 0;
            history.orders_digest = Digest::new();
            history.fills_digest = Digest::new();
            history.redrain_all = false;
        }
    }

    /// After the order event on order `id` whose timestamps start at `block`: records every
    /// order it finished (the order itself and the makers of its book events).
    pub(crate) fn history_note(&mut self, id: u128, block: u64) {
        if self.history.is_none() {
            return;
        }
        let history = self.history.as_deref_mut().expect("history mode");
        history.finished_at.truncate(self.orders.len());
        history.finished_at.resize(self.orders.len(), 0);
        let (orders, index) = (&self.orders, &self.order_index);
        let position_of = |id: u128| index.find(id, |position| orders[position as usize].id);
        if let Some(position) = position_of(id) {
            note(history, orders, position, block);
        }
        // Book events of an earlier command may remain (a cancel makes none): noting their
        // orders again changes nothing, and they are cleared below (every command that uses
        // them clears them first).
        for event in &self.events {
            let maker = match event {
                crate::book::BookEvent::Fill(fill) => fill.maker.id,
                crate::book::BookEvent::SelfTradeCanceled(resting) => resting.id,
            };
            if let Some(position) = position_of(maker) {
                note(history, orders, position, block);
            }
        }
        self.events.clear();
    }

    /// After a pulse at `timestamp`: records the orders it expired.
    pub(crate) fn history_note_expired(&mut self, timestamp: u64) {
        let Some(history) = self.history.as_deref_mut() else {
            return;
        };
        let (orders, index) = (&self.orders, &self.order_index);
        for expired in &self.expired {
            if let Some(position) = index.find(expired.id, |p| orders[p as usize].id) {
                note(history, orders, position, timestamp);
            }
        }
    }

    /// The order `id` this engine dropped from memory, read from the store.
    #[cold]
    pub(super) fn dropped_order(
        &self,
        reader: Option<&dyn HistoryRead>,
        id: u128,
    ) -> Option<Order> {
        let history = self.history.as_deref()?;
        let reader = reader?;
        if history.evicted_through == 0 || !history.filter.may_contain(id) {
            return None;
        }
        let (order, finished_at) = reader.order(id)?;
        (finished_at <= history.evicted_through && order.id == id).then_some(order)
    }

    /// What cancel and amend answer for an id memory does not hold.
    pub(super) fn absent_status(&self, ledger: &Ledger, id: u128) -> OrderStatus {
        match self.dropped_order(history_reader(ledger), id) {
            Some(_) => OrderStatus::OrderNotResting,
            None => OrderStatus::OrderNotFound,
        }
    }

    /// Appends the fills of `filter` (valid, `timestamp_max` already bounded) that left memory,
    /// at most `limit`.
    pub(super) fn dropped_fills(
        &self,
        reader: Option<&dyn HistoryRead>,
        filter: &FillFilter,
        max: u64,
        limit: usize,
        out: &mut Vec<Fill>,
    ) {
        let (Some(history), Some(reader)) = (self.history.as_deref(), reader) else {
            return;
        };
        let through = history.evicted_through;
        if through == 0 || filter.timestamp_min > through || limit == 0 {
            return;
        }
        let narrowed = FillFilter {
            timestamp_max: max.min(through),
            limit: limit.min(u32::MAX as usize) as u32,
            ..*filter
        };
        let start = out.len();
        reader.fills(&narrowed, out);
        // Only what this engine dropped, and never more than asked.
        let mut kept = start;
        for read in start..out.len() {
            if out[read].timestamp <= through && kept - start < limit {
                out[kept] = out[read];
                kept += 1;
            }
        }
        out.truncate(kept);
    }

    /// Room left in memory: `(orders, fills)`. In history mode the caller keeps room for each
    /// command, evicting when short.
    pub(crate) fn history_room(&self) -> (usize, usize) {
        (
            self.orders.capacity() - self.orders.len(),
            self.fills.memory_capacity() - self.fills.held().len(),
        )
    }

    fn all_drained(&self) -> bool {
        self.history.as_deref().is_none_or(|history| {
            history.finished.is_empty() && history.drained_fills == self.fills.held().len()
        })
    }

    /// Hands the orders finished and the fills made since the last drain to `sink`.
    pub(crate) fn history_drain(&mut self, sink: &mut dyn HistorySink) {
        let history = self.history.as_deref_mut().expect("history mode");
        let folded = history.folded_through;
        let mut newest = folded;
        for &position in &history.finished {
            let order = &self.orders[position as usize];
            let at = history.finished_at[position as usize];
            if at > folded {
                history.orders_digest.record(|bytes| order.encode(bytes));
                history.orders_digest.u64(at);
                newest = newest.max(at);
            }
            sink.order(order, at);
        }
        history.finished.clear();
        for fill in &self.fills.held()[history.drained_fills..] {
            if fill.timestamp > folded {
                history.fills_digest.record(|bytes| fill.encode(bytes));
                newest = newest.max(fill.timestamp);
            }
            sink.fill(fill);
        }
        history.drained_fills = self.fills.held().len();
        history.folded_through = newest;
    }

    /// After loading a checkpoint: the next drain hands out again every finished order and
    /// fill above `after`, the store's watermark.
    pub(crate) fn history_redrain(&mut self, after: u64) {
        let history = self.history.as_deref_mut().expect("history mode");
        assert!(after >= history.evicted_through);
        let after = if history.redrain_all { 0 } else { after };
        history.redrain_all = false;
        history.finished.clear();
        for (position, at) in history.finished_at.iter().enumerate() {
            if *at > after {
                history.finished.push(position as u32);
            }
        }
        let finished_at = &history.finished_at;
        history
            .finished
            .sort_unstable_by_key(|position| (finished_at[*position as usize], *position));
        history.drained_fills = self
            .fills
            .held()
            .partition_point(|fill| fill.timestamp <= after);
    }

    /// Drops the finished orders and the fills at or below `through` (drained first).
    pub(crate) fn history_evict(&mut self, through: u64) {
        assert!(self.all_drained(), "drain first");
        let mut history = self.history.take().expect("history mode");
        if through > history.evicted_through {
            self.evict(&mut history, through);
            history.evicted_through = through;
            history.drained_fills = self.fills.held().len();
        }
        self.history = Some(history);
    }

    fn evict(&mut self, history: &mut OrderHistory, through: u64) {
        let leaves = |at: u64| at != 0 && at <= through;
        // 1. Out of the index, into the filter, while every position still names its order.
        {
            let orders = &self.orders;
            let key_of = |position: u32| orders[position as usize].id;
            for (position, order) in orders.iter().enumerate() {
                if leaves(history.finished_at[position]) {
                    self.order_index.remove(order.id, position as u32, key_of);
                    history.filter.insert(order.id);
                }
            }
        }
        // 2. Move the rest down, re-pointing their index entries.
        let mut write = 0usize;
        for read in 0..self.orders.len() {
            if leaves(history.finished_at[read]) {
                continue;
            }
            if write != read {
                let id = self.orders[read].id;
                self.order_index.repoint(id, read as u32, write as u32);
                self.orders[write] = self.orders[read];
                self.holds[write] = self.holds[read];
                history.finished_at[write] = history.finished_at[read];
            }
            write += 1;
        }
        self.orders.truncate(write);
        self.holds.truncate(write);
        history.finished_at.truncate(write);
        // 3. Fills are in timestamp order: a prefix leaves.
        let split = self
            .fills
            .fills
            .partition_point(|fill| fill.timestamp <= through);
        self.fills.fills.drain(..split);
        self.fills.dropped += split as u64;
    }

    /// The state hash's part for orders and fills in history mode: the running digests of
    /// what was drained, then the orders that may still change, in memory order.
    pub(super) fn history_digest(&self, digest: &mut Digest) -> bool {
        let Some(history) = self.history.as_deref() else {
            return false;
        };
        assert!(
            self.all_drained(),
            "the state hash of an engine in history mode is taken after a drain"
        );
        let mut resting = 0u64;
        for (position, (order, hold)) in self.orders.iter().zip(&self.holds).enumerate() {
            if history.finished_at[position] == 0 {
                digest.record(|bytes| order.encode(bytes));
                digest.u128(hold.amount);
                resting += 1;
            }
        }
        digest.u64(resting);
        digest.u128(history.orders_digest.finish());
        digest.u128(history.fills_digest.finish());
        digest.u64(self.fills.len() as u64);
        true
    }

    /// Checks of the history state (`verify`).
    pub(super) fn history_verify(&self) {
        let Some(history) = self.history.as_deref() else {
            return;
        };
        assert_eq!(history.finished_at.len(), self.orders.len());
        for (order, at) in self.orders.iter().zip(&history.finished_at) {
            assert_eq!(
                order.state == OrderState::Resting as u8,
                *at == 0,
                "{order:?} finished at {at}"
            );
            assert!(*at == 0 || *at > history.evicted_through, "{order:?}");
        }
        if let Some(first) = self.fills.held().first() {
            assert!(first.timestamp > history.evicted_through);
        }
    }

    /// Writes the matching side's history section (after the ledger's): the eviction state,
    /// the fills dropped, each order's finish timestamp, the id filter and the digests. Taken
    /// after a drain.
    pub(crate) fn history_checkpoint_write(&self, writer: &mut ImageWriter) -> std::io::Result<()> {
        let Some(history) = self.history.as_deref() else {
            return Ok(());
        };
        assert!(
            self.all_drained(),
            "a checkpoint in history mode is taken after a drain"
        );
        writer.u64(history.evicted_through)?;
        writer.u64(self.fills.dropped)?;
        for at in &history.finished_at {
            writer.u64(*at)?;
        }
        history.filter.checkpoint_write(writer)?;
        history.orders_digest.checkpoint_write(writer)?;
        history.fills_digest.checkpoint_write(writer)
    }

    /// Reads the section written by `history_checkpoint_write` (`present`), or, for an image
    /// of an earlier version, takes every finished order and fill of the image as not yet in
    /// the store.
    pub(crate) fn history_checkpoint_read(
        &mut self,
        reader: &mut ImageReader,
        clock: u64,
        present: bool,
    ) -> Result<(), CheckpointError> {
        let history = self.history.as_deref_mut().expect("history mode");
        history.finished_at.clear();
        if !present {
            for (position, order) in self.orders.iter().enumerate() {
                let finished = order.state != OrderState::Resting as u8;
                history
                    .finished_at
                    .push(if finished { clock.max(1) } else { 0 });
                if finished {
                    history.finished.push(position as u32);
                }
            }
            history.folded_through = 0;
            history.drained_fills = 0;
            history.redrain_all = true;
            return Ok(());
        }
        history.evicted_through = reader.u64()?;
        self.fills.dropped = reader.u64()?;
        for order in &self.orders {
            let at = reader.u64()?;
            if (at == 0) != (order.state == OrderState::Resting as u8) || at > clock {
                return Err(reader.invalid("orders", "a finish timestamp disagrees"));
            }
            history.finished_at.push(at);
        }
        let first = self.fills.held().first();
        if first.is_some_and(|fill| fill.sequence != self.fills.dropped + 1) {
            return Err(reader.invalid("fills", "sequence after the dropped fills"));
        }
        history.filter.checkpoint_read(reader)?;
        history.orders_digest = Digest::checkpoint_read(reader)?;
        history.fills_digest = Digest::checkpoint_read(reader)?;
        history.folded_through = clock;
        history.drained_fills = self.fills.held().len();
        Ok(())
    }
}

/// The store reader of a ledger in history mode.
pub(super) fn history_reader(ledger: &Ledger) -> Option<&dyn HistoryRead> {
    ledger.history.as_deref().map(|history| &*history.reader)
}
