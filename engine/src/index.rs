//! An open-addressing hash index from u128 ids to u32 positions in a dense store.
//!
//! Linear probing over a power-of-two table of packed u64 slots: the high 32 bits hold a tag
//! (more hash bits, so most non-matching slots are skipped without touching the store), the low
//! 32 bits hold `position + 1` (0 marks an empty slot, so the table starts as zeroed memory).
//! The table holds at most `entries_max` entries and has at least twice as many slots, so probe
//! sequences stay short and always end at an empty slot.
//!
//! The hash is a fixed mix (no random seed): the same inserts give the same table on every run.
//! It keeps blocks of 64 consecutive ids together (ids `64k..64k+63` map to 64 adjacent slots at a
//! pseudo-random place), so clients that allocate ids sequentially touch one cache line per eight
//! ids, while any other id pattern spreads like a plain hash.
//!
//! Probing steps 65 slots at a time (one block plus one), not one: when two blocks land on the
//! same place, each id of the later block then finds a free slot in the next block-sized stretch,
//! still next to its neighbours, instead of walking past the whole earlier block (one slot at a
//! time, an absent id cost about 50 probes at half load). The step is odd, so a probe sequence
//! visits every slot of the power-of-two table and always reaches an empty one.
//!
//! Removal exists only for undoing the newest inserts in reverse order (rolling back a linked
//! chain): emptying the slot of the most recent insert restores the table exactly to its state
//! before that insert, so no tombstones or backward shifts are needed.
//!
//! The index does not store ids; the caller passes `key_of` to read the id at a position.

use crate::checkpoint::{CheckpointError, ImageReader, ImageWriter};

/// Slots of 64 consecutive ids stay adjacent.
const BLOCK_SHIFT: u32 = 6;
const BLOCK_MASK: u128 = (1 << BLOCK_SHIFT) - 1;
/// The probe step: one block plus one slot (see the module docs).
const PROBE_STEP: usize = (1 << BLOCK_SHIFT) + 1;

/// Where an absent id would be inserted (see `IdIndex::find_or_vacancy_with`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vacancy {
    index: usize,
    tag: u32,
    /// The entry count when found: a later insert or removal makes the vacancy stale.
    entries_count: u32,
}

pub(crate) struct IdIndex {
    slots: Vec<u64>,
    mask: usize,
    entries_count: u32,
    entries_max: u32,
}

#[inline(always)]
fn mix(id: u128) -> u64 {
    let block = id >> BLOCK_SHIFT;
    let low = block as u64;
    let high = (block >> 64) as u64;
    let mut x = low.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ high.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 32;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^= x >> 29;
    x
}

/// The home slot (before masking) and the tag of an id.
#[inline(always)]
fn home_and_tag(id: u128) -> (usize, u32) {
    let hash = mix(id);
    let home = ((hash << BLOCK_SHIFT) as usize) | ((id & BLOCK_MASK) as usize);
    let tag = ((hash >> 32) as u32) ^ (id as u32);
    (home, tag)
}

impl IdIndex {
    /// An empty index for up to `entries_max` entries.
    pub(crate) fn new(entries_max: u32) -> IdIndex {
        let slots_count = (entries_max as usize * 2)
            .next_power_of_two()
            .max(1 << BLOCK_SHIFT);
        IdIndex {
            slots: vec![0u64; slots_count],
            mask: slots_count - 1,
            entries_count: 0,
            entries_max,
        }
    }

    /// Bytes of the table of an index for `entries_max` entries.
    pub(crate) fn table_bytes(entries_max: u32) -> u64 {
        let slots = (entries_max as usize * 2)
            .next_power_of_two()
            .max(1 << BLOCK_SHIFT);
        (slots * std::mem::size_of::<u64>()) as u64
    }

    /// Bytes of memory per slot, for reports.
    pub(crate) fn slots_count(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn entries_count(&self) -> u32 {
        self.entries_count
    }

    /// The position stored for `id`, if any. `key_of(position)` must return the id stored there.
    #[inline(always)]
    pub(crate) fn find(&self, id: u128, key_of: impl Fn(u32) -> u128) -> Option<u32> {
        self.find_with(id, |position| key_of(position) == id)
    }

    /// The position stored for `id` that `matches`, for indexes whose entries are keyed by more
    /// than the id (an id may then be stored more than once, told apart by `matches`).
    #[inline(always)]
    pub(crate) fn find_with(&self, id: u128, matches: impl Fn(u32) -> bool) -> Option<u32> {
        let (home, tag) = home_and_tag(id);
        let mut slot = home;
        loop {
            let entry = self.slots[slot & self.mask];
            let stored = entry as u32;
            if stored == 0 {
                return None;
            }
            if (entry >> 32) as u32 == tag && matches(stored - 1) {
                return Some(stored - 1);
            }
            slot = slot.wrapping_add(PROBE_STEP);
        }
    }

    /// The position stored for `id` that `matches` (as `find_with`), or else the empty slot
    /// where inserting `id` would put it (valid for `insert_at` until the next insert or
    /// removal).
    #[inline(always)]
    pub(crate) fn find_or_vacancy_with(
        &self,
        id: u128,
        matches: impl Fn(u32) -> bool,
    ) -> Result<u32, Vacancy> {
        let (home, tag) = home_and_tag(id);
        let mut slot = home;
        loop {
            let index = slot & self.mask;
            let entry = self.slots[index];
            let stored = entry as u32;
            if stored == 0 {
                return Err(Vacancy {
                    index,
                    tag,
                    entries_count: self.entries_count,
                });
            }
            if (entry >> 32) as u32 == tag && matches(stored - 1) {
                return Ok(stored - 1);
            }
            slot = slot.wrapping_add(PROBE_STEP);
        }
    }

    /// Inserts at a vacancy found by `find_or_vacancy_with` with no insert or removal since.
    #[inline(always)]
    pub(crate) fn insert_at(&mut self, vacancy: Vacancy, position: u32) {
        assert!(self.entries_count < self.entries_max, "id index full");
        assert_eq!(vacancy.entries_count, self.entries_count, "stale vacancy");
        assert!(position < u32::MAX);
        assert_eq!(self.slots[vacancy.index], 0);
        self.slots[vacancy.index] = (u64::from(vacancy.tag) << 32) | u64::from(position + 1);
        self.entries_count += 1;
    }

    /// Inserts `id` at `position`. The caller has checked that `id` is absent.
    ///
    /// # Panics
    ///
    /// If the index already holds `entries_max` entries or `position` is `u32::MAX`.
    #[inline(always)]
    pub(crate) fn insert(&mut self, id: u128, position: u32) {
        assert!(self.entries_count < self.entries_max, "id index full");
        assert!(position < u32::MAX);
        let (home, tag) = home_and_tag(id);
        let mut slot = home;
        loop {
            let index = slot & self.mask;
            if self.slots[index] as u32 == 0 {
                self.slots[index] = (u64::from(tag) << 32) | u64::from(position + 1);
                self.entries_count += 1;
                return;
            }
            slot = slot.wrapping_add(PROBE_STEP);
        }
    }

    /// Removes the most recently inserted entry still present, which must be `id` at
    /// `position`. Only valid in reverse insertion order (see the module docs).
    pub(crate) fn remove_newest(&mut self, id: u128, position: u32) {
        let (home, _) = home_and_tag(id);
        let mut slot = home;
        loop {
            let index = slot & self.mask;
            let stored = self.slots[index] as u32;
            assert!(stored != 0, "removed id is not in the index");
            if stored - 1 == position {
                self.slots[index] = 0;
                self.entries_count -= 1;
                return;
            }
            slot = slot.wrapping_add(PROBE_STEP);
        }
    }

    /// Clears every entry, keeping the table's memory.
    pub(crate) fn clear(&mut self) {
        self.slots.fill(0);
        self.entries_count = 0;
    }

    /// Every stored position, in slot order (deterministic: the table layout depends only on
    /// the sequence of inserts and removals).
    pub(crate) fn positions(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .filter(|slot| **slot as u32 != 0)
            .map(|slot| (*slot as u32) - 1)
    }
}

/// The checkpoint image of an index (see checkpoint.rs): the table size, the entry count, then
/// each occupied slot's number and contents in slot order.
impl IdIndex {
    pub(crate) fn checkpoint_write(&self, writer: &mut ImageWriter) -> std::io::Result<()> {
        let IdIndex {
            slots,
            mask: _,
            entries_count,
            entries_max: _,
        } = self;
        writer.count(slots.len())?;
        writer.u32(*entries_count)?;
        for (index, slot) in slots.iter().enumerate() {
            if *slot as u32 != 0 {
                writer.u32(index as u32)?;
                writer.u64(*slot)?;
            }
        }
        Ok(())
    }

    /// Reads an image written by `checkpoint_write` into this empty index. `key_of(position)`
    /// gives the id stored at a position, or `None` when the position is out of range. When
    /// the table size differs from the image's, or the image places entries as an older build
    /// did, the entries are inserted again in slot order.
    pub(crate) fn checkpoint_read(
        &mut self,
        reader: &mut ImageReader,
        store: &'static str,
        key_of: impl Fn(u32) -> Option<u128>,
    ) -> Result<(), CheckpointError> {
        assert_eq!(self.entries_count, 0);
        let slots_count = reader.u32()? as usize;
        let entries_count = reader.u32()?;
        if entries_count > self.entries_max || entries_count as usize >= slots_count {
            return Err(reader.invalid(store, "more entries than the table holds"));
        }
        let same_table = slots_count == self.slots.len() && reader.index_placement_current();
        let mut previous: Option<usize> = None;
        for _ in 0..entries_count {
            let index = reader.u32()? as usize;
            let slot = reader.u64()?;
            if index >= slots_count || previous.is_some_and(|previous| index <= previous) {
                return Err(reader.invalid(store, "slot numbers out of order or range"));
            }
            previous = Some(index);
            let stored = slot as u32;
            let Some(id) = stored.checked_sub(1).and_then(&key_of) else {
                return Err(reader.invalid(store, "an entry points past its store"));
            };
            if same_table {
                if home_and_tag(id).1 != (slot >> 32) as u32 {
                    return Err(reader.invalid(store, "an entry's tag does not match its id"));
                }
                self.slots[index] = slot;
                self.entries_count += 1;
            } else {
                self.insert(id, stored - 1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_inserted_and_misses_absent() {
        let ids: Vec<u128> = (0..1000u128).map(|i| i * 7 + (i << 70) + 1).collect();
        let mut index = IdIndex::new(1000);
        for (position, id) in ids.iter().enumerate() {
            assert_eq!(index.find(*id, |p| ids[p as usize]), None);
            index.insert(*id, position as u32);
        }
        for (position, id) in ids.iter().enumerate() {
            assert_eq!(index.find(*id, |p| ids[p as usize]), Some(position as u32));
        }
        assert_eq!(index.find(u128::MAX, |p| ids[p as usize]), None);
        assert_eq!(index.entries_count(), 1000);
    }

    /// Ids that share their place within a block (multiples of 64, of 128, and one block's
    /// worth of consecutive ids landing on occupied blocks) fill the index to its maximum: the
    /// probe step reaches every slot, so every insert finds room and every lookup ends.
    #[test]
    fn ids_sharing_a_block_offset_fill_the_index() {
        for stride in [64u128, 128, 1 << 70] {
            let ids: Vec<u128> = (1..=1000u128).map(|i| i * stride).collect();
            let mut index = IdIndex::new(1000);
            for (position, id) in ids.iter().enumerate() {
                assert_eq!(index.find(*id, |p| ids[p as usize]), None);
                index.insert(*id, position as u32);
            }
            for (position, id) in ids.iter().enumerate() {
                assert_eq!(index.find(*id, |p| ids[p as usize]), Some(position as u32));
            }
            assert_eq!(index.find(7, |p| ids[p as usize]), None);
            assert_eq!(index.positions().count(), 1000);
        }
    }

    /// The probe sequence of a home slot visits every slot of the table once before repeating.
    #[test]
    fn probe_step_visits_every_slot() {
        for slots_count in [64usize, 128, 4096] {
            let mask = slots_count - 1;
            let mut seen = vec![false; slots_count];
            let mut slot = 5usize;
            for _ in 0..slots_count {
                assert!(!seen[slot & mask]);
                seen[slot & mask] = true;
                slot = slot.wrapping_add(PROBE_STEP);
            }
            assert!(seen.iter().all(|visited| *visited));
        }
    }

    #[test]
    fn reverse_removal_restores_the_table() {
        let ids: Vec<u128> = (1..=200u128).collect();
        let mut index = IdIndex::new(200);
        for (position, id) in ids.iter().enumerate().take(100) {
            index.insert(*id, position as u32);
        }
        let before = index.slots.clone();
        for (position, id) in ids.iter().enumerate().skip(100) {
            index.insert(*id, position as u32);
        }
        for (position, id) in ids.iter().enumerate().skip(100).rev() {
            index.remove_newest(*id, position as u32);
        }
        assert_eq!(index.slots, before);
        assert_eq!(index.find(150, |p| ids[p as usize]), None);
        assert_eq!(index.find(50, |p| ids[p as usize]), Some(49));
    }

    #[test]
    fn colliding_blocks_still_resolve() {
        // Ids that share every bit above the block: all land in one block of 64 slots.
        let ids: Vec<u128> = (0..64u128).map(|i| (5 << 64) | i).collect();
        let mut index = IdIndex::new(64);
        for (position, id) in ids.iter().enumerate() {
            index.insert(*id, position as u32);
        }
        for (position, id) in ids.iter().enumerate() {
            assert_eq!(index.find(*id, |p| ids[p as usize]), Some(position as u32));
        }
    }
}
