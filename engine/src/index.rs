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
//! Lookups rely on one invariant: every slot on an entry's probe path before the entry's own slot
//! is occupied. Removal keeps it without tombstones, by backward shift (Knuth, The Art of
//! Computer Programming vol. 3, section 6.4, Algorithm R, for linear probing): `remove` empties
//! the entry's slot, then walks on along the probe order to the next empty slot and moves back
//! into the hole every entry whose probe path passes the hole, the hole moving to that entry's old
//! slot. Numbering the slots by their rank in the probe order (slot times the inverse of the step
//! modulo the table size) turns the stepped probe into plain linear probing, so the algorithm
//! applies unchanged. The occupied slots of linear probing depend only on the entries' home
//! slots, not on the order of inserts, so a table that has seen any number of removals has the
//! same occupied slots, and the same probe lengths, as a fresh table fed the same entries.
//! `repoint` changes the position an entry holds in place (same slot, same tag).
//!
//! Undoing the newest inserts in reverse order (rolling back a linked chain) needs no shift:
//! emptying the slot of the most recent insert restores the table exactly to its state before
//! that insert (`remove_newest`, valid while no `remove` has run since that insert).
//!
//! The index does not store ids; the caller passes `key_of` to read the id at a position.

use crate::checkpoint::{CheckpointError, ImageReader, ImageWriter};

/// Slots of 64 consecutive ids stay adjacent.
const BLOCK_SHIFT: u32 = 6;
const BLOCK_MASK: u128 = (1 << BLOCK_SHIFT) - 1;
/// The probe step: one block plus one slot (see the module docs).
const PROBE_STEP: usize = (1 << BLOCK_SHIFT) + 1;
/// The inverse of `PROBE_STEP` modulo 2^usize::BITS, hence modulo every power-of-two table size:
/// the probe rank of slot `x` counted from home `h` is `(x - h) * PROBE_STEP_INVERSE`, masked.
const PROBE_STEP_INVERSE: usize = {
    // Newton's iteration for inverses modulo a power of two: an odd `a` is its own inverse
    // modulo 8, and each step `x * (2 - a * x)` doubles the number of correct low bits.
    let mut inverse = PROBE_STEP;
    let mut round = 0;
    while round < 6 {
        inverse = inverse.wrapping_mul(2usize.wrapping_sub(PROBE_STEP.wrapping_mul(inverse)));
        round += 1;
    }
    inverse
};
const _: () = assert!(PROBE_STEP % 2 == 1);
const _: () = assert!(PROBE_STEP.wrapping_mul(PROBE_STEP_INVERSE) == 1);

/// Where an absent id would be inserted (see `IdIndex::find_or_vacancy_with`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vacancy {
    index: usize,
    tag: u32,
    /// The entry count when found: a later insert or removal makes the vacancy stale. The check
    /// in `insert_at` sees any one of them, not a removal followed by an insert.
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

/// How many probe steps from `home` reach `slot` in a table of `mask + 1` slots: the `k` with
/// `home + k * PROBE_STEP == slot` modulo the table size. Both may be unmasked.
#[inline]
fn probe_distance(home: usize, slot: usize, mask: usize) -> usize {
    slot.wrapping_sub(home).wrapping_mul(PROBE_STEP_INVERSE) & mask
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

    /// The address range of the table.
    pub(crate) fn memory(&self) -> (usize, usize) {
        (
            self.slots.as_ptr() as usize,
            std::mem::size_of_val(self.slots.as_slice()),
        )
    }

    /// Bytes of memory per slot, for reports.
    pub(crate) fn slots_count(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn entries_count(&self) -> u32 {
        self.entries_count
    }

    /// The most entries the index takes.
    pub(crate) fn entries_max(&self) -> u32 {
        self.entries_max
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
    /// `position`. Only valid in reverse insertion order (see the module docs), and only while
    /// no `remove` has run since `id` was inserted: a backward shift may have moved the entry off
    /// the end of its probe path, and emptying it there would cut the paths of entries behind it.
    /// `repoint` does not move entries and may run in between. Any removals before the insert
    /// are fine.
    ///
    /// # Panics
    ///
    /// If no slot on the probe path of `id` holds `position`.
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

    /// The slot holding the entry of `id` at `position`.
    ///
    /// # Panics
    ///
    /// If the probe path of `id` reaches an empty slot first (the entry is absent).
    fn slot_of(&self, id: u128, position: u32) -> usize {
        assert!(position < u32::MAX);
        let (home, tag) = home_and_tag(id);
        let entry_wanted = (u64::from(tag) << 32) | u64::from(position + 1);
        let mut slot = home;
        loop {
            let index = slot & self.mask;
            let entry = self.slots[index];
            assert!(
                entry as u32 != 0,
                "id {id:#x} at position {position} is not in the index"
            );
            if entry == entry_wanted {
                return index;
            }
            slot = slot.wrapping_add(PROBE_STEP);
        }
    }

    /// Removes the entry of `id` at `position`, in any order, then shifts entries back so that
    /// every lookup probes as far as in a table that never held the entry (see the module
    /// docs). `key_of(position)` must return the id stored at every other position in the
    /// index; it is not called for the removed `position`, so the caller may clear it first.
    ///
    /// # Panics
    ///
    /// If the index holds no entry of `id` at `position` (a caller bug), or if `key_of` gives an
    /// id whose tag differs from the one stored with its entry.
    pub(crate) fn remove(&mut self, id: u128, position: u32, key_of: impl Fn(u32) -> u128) {
        let mut hole = self.slot_of(id, position);
        self.slots[hole] = 0;
        self.entries_count -= 1;
        // Walk the rest of the cluster (up to the next empty slot, which exists because the
        // table is at most half full). An entry moves back into the hole when the hole lies on
        // its probe path, i.e. the hole is fewer steps from its home than its own slot is; the
        // hole then takes the entry's old slot. Entries whose home lies after the hole stay.
        let mut index = hole;
        loop {
            index = index.wrapping_add(PROBE_STEP) & self.mask;
            let entry = self.slots[index];
            let stored = entry as u32;
            if stored == 0 {
                return;
            }
            let (home, tag) = home_and_tag(key_of(stored - 1));
            assert_eq!(
                tag,
                (entry >> 32) as u32,
                "key_of({}) does not give the id stored at slot {index}",
                stored - 1
            );
            if probe_distance(home, hole, self.mask) < probe_distance(home, index, self.mask) {
                self.slots[hole] = entry;
                self.slots[index] = 0;
                hole = index;
            }
        }
    }

    /// The entry of `id` at position `from` now holds `to`: the same slot and tag, so no other
    /// entry moves. The caller keeps positions unique (no other entry holds `to`).
    ///
    /// # Panics
    ///
    /// If the index holds no entry of `id` at `from`, or `to` is `u32::MAX`.
    pub(crate) fn repoint(&mut self, id: u128, from: u32, to: u32) {
        assert!(to < u32::MAX);
        let index = self.slot_of(id, from);
        let tag = self.slots[index] & !u64::from(u32::MAX);
        self.slots[index] = tag | u64::from(to + 1);
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
    use std::collections::BTreeMap;

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

    /// A fixed-seed xorshift generator, so every run of these tests sees the same operations.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        fn id(&mut self) -> u128 {
            (u128::from(self.next()) << 64) | u128::from(self.next())
        }
    }

    /// The invariant lookups rely on: for every occupied slot, every slot on the probe path
    /// from the entry's home to it is occupied. Also checks each tag against `key_of`, that the
    /// probe distance lands on the slot, and the entry count.
    fn assert_probe_invariant(index: &IdIndex, key_of: impl Fn(u32) -> u128) {
        let mut occupied = 0u32;
        for (slot_index, entry) in index.slots.iter().enumerate() {
            let stored = *entry as u32;
            if stored == 0 {
                continue;
            }
            occupied += 1;
            let (home, tag) = home_and_tag(key_of(stored - 1));
            assert_eq!(tag, (entry >> 32) as u32, "tag of slot {slot_index}");
            let distance = probe_distance(home, slot_index, index.mask);
            assert!(distance < index.slots.len());
            let mut slot = home;
            for step in 0..distance {
                let on_path = slot & index.mask;
                assert_ne!(
                    index.slots[on_path] as u32,
                    0,
                    "slot {slot_index} (position {}): empty slot {on_path} {step} steps from home",
                    stored - 1
                );
                slot = slot.wrapping_add(PROBE_STEP);
            }
            assert_eq!(
                slot & index.mask,
                slot_index,
                "probe distance of slot {slot_index}"
            );
        }
        assert_eq!(occupied, index.entries_count());
    }

    /// Probes a lookup of `id` makes before it meets an empty slot.
    fn probes_to_empty(index: &IdIndex, id: u128) -> usize {
        let (home, _) = home_and_tag(id);
        let mut slot = home;
        let mut probes = 1;
        while index.slots[slot & index.mask] as u32 != 0 {
            slot = slot.wrapping_add(PROBE_STEP);
            probes += 1;
        }
        probes
    }

    /// Sum over all entries of the probe steps from home to their slot.
    fn probe_distance_total(index: &IdIndex, key_of: impl Fn(u32) -> u128) -> usize {
        let mut total = 0;
        for (slot_index, entry) in index.slots.iter().enumerate() {
            let stored = *entry as u32;
            if stored != 0 {
                let (home, _) = home_and_tag(key_of(stored - 1));
                total += probe_distance(home, slot_index, index.mask);
            }
        }
        total
    }

    /// Ids drawn to collide: consecutive ids, ids sharing their place in a block, many ids in a
    /// few blocks, random ids, or a mix of all of these.
    fn id_pool(mode: usize, count: usize, random: &mut Xorshift) -> Vec<u128> {
        let base = u128::from(random.next()) << 8;
        let mut ids: Vec<u128> = match mode {
            0 => (0..count as u128).map(|i| base + i).collect(),
            1 => (1..=count as u128)
                .map(|i| if i % 2 == 0 { i * 64 } else { i << 70 })
                .collect(),
            2 => (0..count as u128)
                .map(|i| (((i / 64) % 5 + 1) << 64) | ((i / 320) << 6) | (i % 64))
                .collect(),
            3 => (0..count).map(|_| random.id()).collect(),
            _ => (0..count)
                .map(|i| match random.below(4) {
                    0 => base + i as u128,
                    1 => (i as u128 + 1) * 64,
                    2 => (3 << 64) | i as u128,
                    _ => random.id(),
                })
                .collect(),
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Random interleavings of insert, remove, repoint and find, checked against a `BTreeMap`
    /// after every step: every present id is found at its position, every absent pool id is
    /// missed, the count matches, and the probe invariant holds.
    #[test]
    fn removal_and_repointing_match_a_model() {
        // The largest table runs one (mixed) id pattern: checking 8,192 ids after each step
        // costs the most.
        let tables = [
            (64u32, 3000usize, 0..5),
            (300, 3000, 0..5),
            (1000, 4000, 0..5),
        ];
        for (entries_max, steps, modes) in tables.into_iter().chain([(4096, 10_000, 4..5)]) {
            for mode in modes {
                let seed = (u64::from(entries_max) << 8) ^ ((mode as u64) << 40);
                let mut random = Xorshift(0x2545_F491_4F6C_DD1D ^ seed);
                let pool = id_pool(mode, entries_max as usize * 2, &mut random);
                let positions_count = entries_max as usize * 2;
                let mut index = IdIndex::new(entries_max);
                let mut store: Vec<Option<u128>> = vec![None; positions_count];
                let mut free: Vec<u32> = (0..positions_count as u32).rev().collect();
                let mut model: BTreeMap<u128, u32> = BTreeMap::new();
                let mut present: Vec<u128> = Vec::new();
                let mut absent: Vec<u128> = pool.clone();
                let mut counts = [0usize; 4];
                let mut peak = 0;
                for step in 0..steps {
                    // Alternate between filling and draining so the table passes through every
                    // load up to full.
                    let filling = (step / (entries_max as usize * 2)) % 2 == 0;
                    let (insert_percent, remove_percent) =
                        if filling { (70, 10) } else { (20, 50) };
                    let choice = random.below(100);
                    let key_of = |store: &[Option<u128>], position: u32| {
                        store[position as usize].expect("key_of read a cleared position")
                    };
                    if choice < insert_percent {
                        if present.len() == entries_max as usize {
                            continue;
                        }
                        let id = absent.swap_remove(random.below(absent.len()));
                        let position = free.swap_remove(random.below(free.len()));
                        store[position as usize] = Some(id);
                        if random.below(2) == 0 {
                            assert_eq!(index.find(id, |p| key_of(&store, p)), None);
                            index.insert(id, position);
                        } else {
                            let matches = |p| key_of(&store, p) == id;
                            let Err(vacancy) = index.find_or_vacancy_with(id, matches) else {
                                panic!("absent id {id:#x} found");
                            };
                            index.insert_at(vacancy, position);
                        }
                        model.insert(id, position);
                        present.push(id);
                        counts[0] += 1;
                    } else if choice < insert_percent + remove_percent {
                        if present.is_empty() {
                            continue;
                        }
                        let id = present.swap_remove(random.below(present.len()));
                        let position = model.remove(&id).expect("present id in the model");
                        // Clear first: `remove` must not read the removed position.
                        store[position as usize] = None;
                        index.remove(id, position, |p| key_of(&store, p));
                        free.push(position);
                        absent.push(id);
                        counts[1] += 1;
                    } else if choice < insert_percent + remove_percent + 15 {
                        if present.is_empty() {
                            continue;
                        }
                        let id = present[random.below(present.len())];
                        let from = model[&id];
                        let to = free.swap_remove(random.below(free.len()));
                        index.repoint(id, from, to);
                        store[to as usize] = Some(id);
                        store[from as usize] = None;
                        free.push(from);
                        model.insert(id, to);
                        counts[2] += 1;
                    } else {
                        let id = pool[random.below(pool.len())];
                        let found = index.find(id, |p| key_of(&store, p));
                        assert_eq!(found, model.get(&id).copied());
                        counts[3] += 1;
                    }
                    assert_eq!(index.entries_count() as usize, model.len());
                    peak = peak.max(model.len());
                    for (id, position) in &model {
                        let found = index.find(*id, |p| key_of(&store, p));
                        assert_eq!(found, Some(*position), "id {id:#x} at step {step}");
                    }
                    for id in &absent {
                        let found = index.find(*id, |p| key_of(&store, p));
                        assert_eq!(found, None, "id {id:#x} at step {step}");
                    }
                    assert_probe_invariant(&index, |p| key_of(&store, p));
                }
                // Every kind of operation ran, and the table reached full load.
                assert!(counts.iter().all(|count| *count > steps / 20), "{counts:?}");
                assert!(
                    peak * 10 >= entries_max as usize * 9,
                    "peak {peak} of {entries_max}"
                );
            }
        }
    }

    /// After many removals and re-inserts, the table has the same occupied slots, the same
    /// total probe distance and the same probe count for absent ids as a fresh table fed the
    /// surviving entries: removal leaves nothing behind that lengthens a probe.
    #[test]
    fn removals_leave_the_probes_of_a_fresh_table() {
        for entries_max in [64u32, 1000, 4096] {
            for mode in 0..5 {
                let mut random = Xorshift(0x9E37_79B9_7F4A_7C15 ^ u64::from(entries_max));
                let pool = id_pool(mode, entries_max as usize * 4, &mut random);
                let mut store: Vec<Option<u128>> = vec![None; entries_max as usize];
                let mut present: Vec<(u128, u32)> = Vec::new();
                let mut unused: Vec<u128> = pool.clone();
                let mut index = IdIndex::new(entries_max);
                for round in 0..4 {
                    // Fill to the maximum, then remove a random half (all of it in the last
                    // round).
                    while present.len() < entries_max as usize {
                        let id = unused.swap_remove(random.below(unused.len()));
                        let position = store.iter().position(Option::is_none).expect("room");
                        store[position] = Some(id);
                        index.insert(id, position as u32);
                        present.push((id, position as u32));
                    }
                    let keep = if round == 3 { 0 } else { present.len() / 2 };
                    while present.len() > keep {
                        let (id, position) = present.swap_remove(random.below(present.len()));
                        store[position as usize] = None;
                        index.remove(id, position, |p| store[p as usize].expect("stored"));
                    }
                    let key_of = |p: u32| store[p as usize].expect("stored");
                    assert_probe_invariant(&index, key_of);
                    let mut fresh = IdIndex::new(entries_max);
                    for (id, position) in &present {
                        fresh.insert(*id, *position);
                    }
                    let occupied = |index: &IdIndex| -> Vec<bool> {
                        index.slots.iter().map(|slot| *slot as u32 != 0).collect()
                    };
                    assert_eq!(occupied(&index), occupied(&fresh), "round {round}");
                    assert_eq!(
                        probe_distance_total(&index, key_of),
                        probe_distance_total(&fresh, key_of)
                    );
                    for id in unused.iter().take(500) {
                        assert_eq!(probes_to_empty(&index, *id), probes_to_empty(&fresh, *id));
                    }
                }
                // With every entry removed, the table is all zeros again, as when new.
                assert_eq!(index.entries_count(), 0);
                assert!(index.slots.iter().all(|slot| *slot == 0));
            }
        }
    }

    /// `count` distinct ids whose home is slot `slot` of a table with mask `mask`.
    fn ids_with_home(slot: usize, mask: usize, count: usize) -> Vec<u128> {
        (0u128..)
            .filter(|id| home_and_tag(*id).0 & mask == slot)
            .take(count)
            .collect()
    }

    /// Removal across both ends of the probe order: in a 128-slot table the probe from slot 63
    /// goes 63, 0, 65, 2, 67, so it wraps from the last probe rank (slot 63) to the first
    /// (slot 0), and past the end of the table (65 to 2). Entries shift back across both, and
    /// entries whose path does not pass the hole stay where they are.
    #[test]
    fn removal_shifts_entries_back_across_the_wrap_around() {
        let mut index = IdIndex::new(64);
        assert_eq!(index.slots.len(), 128);
        let mask = index.mask;
        let at_63 = ids_with_home(63, mask, 3);
        let at_0 = ids_with_home(0, mask, 2);
        let at_65 = ids_with_home(65, mask, 1);
        // Positions 0..5 hold a, b, c (home 63), e (home 0), f (home 65).
        let ids = [at_63[0], at_63[1], at_63[2], at_0[0], at_65[0]];
        let mut store: Vec<Option<u128>> = ids.iter().copied().map(Some).collect();
        for (position, id) in [
            (0u32, ids[0]),
            (1, ids[1]),
            (3, ids[3]),
            (2, ids[2]),
            (4, ids[4]),
        ] {
            index.insert(id, position);
        }
        let position_at = |index: &IdIndex, slot: usize| (index.slots[slot] as u32).checked_sub(1);
        // a 63, b 0, e 65 (its home 0 taken), c 2, f 67 (its home 65 taken).
        for (slot, position) in [(63, 0), (0, 1), (65, 3), (2, 2), (67, 4)] {
            assert_eq!(position_at(&index, slot), Some(position), "slot {slot}");
        }
        assert_probe_invariant(&index, |p| store[p as usize].expect("stored"));

        // Removing a moves every later entry one step back, across both wraps.
        store[0] = None;
        index.remove(ids[0], 0, |p| store[p as usize].expect("stored"));
        for (slot, position) in [(63, Some(1)), (0, Some(3)), (65, Some(2)), (2, Some(4))] {
            assert_eq!(position_at(&index, slot), position, "slot {slot}");
        }
        assert_eq!(position_at(&index, 67), None);
        assert_probe_invariant(&index, |p| store[p as usize].expect("stored"));

        // Removing b (now at 63): e sits at its home 0, after the hole, so it stays; c and f
        // behind it still move back.
        store[1] = None;
        index.remove(ids[1], 1, |p| store[p as usize].expect("stored"));
        for (slot, position) in [(63, Some(2)), (0, Some(3)), (65, Some(4)), (2, None)] {
            assert_eq!(position_at(&index, slot), position, "slot {slot}");
        }
        assert_probe_invariant(&index, |p| store[p as usize].expect("stored"));

        // g (home 0) goes past e at 0 and f at 65 to 2. Removing c at 63 moves nothing: e and
        // f sit at their homes, and g's path from 0 does not pass the hole at 63, so g stays
        // although it is not at its home.
        let g = at_0[1];
        store.push(Some(g));
        index.insert(g, 5);
        assert_eq!(position_at(&index, 2), Some(5));
        store[2] = None;
        index.remove(ids[2], 2, |p| store[p as usize].expect("stored"));
        for (slot, position) in [(63, None), (0, Some(3)), (65, Some(4)), (2, Some(5))] {
            assert_eq!(position_at(&index, slot), position, "slot {slot}");
        }
        assert_probe_invariant(&index, |p| store[p as usize].expect("stored"));
        for (position, id) in [(3u32, ids[3]), (4, ids[4]), (5, g)] {
            let found = index.find(id, |p| store[p as usize].expect("stored"));
            assert_eq!(found, Some(position));
        }
        assert_eq!(index.entries_count(), 3);
    }

    /// After removals, `find_or_vacancy_with` returns vacancies that `insert_at` fills, both for
    /// removed ids coming back and for new ids, and finds the entries that stayed.
    #[test]
    fn vacancies_after_removals_accept_inserts() {
        let mut random = Xorshift(0xD1B5_4A32_D192_ED03);
        let entries_max = 500u32;
        let ids = id_pool(4, entries_max as usize, &mut random);
        let mut store: Vec<Option<u128>> = vec![None; ids.len()];
        let mut index = IdIndex::new(entries_max);
        for (position, id) in ids.iter().enumerate() {
            store[position] = Some(*id);
            index.insert(*id, position as u32);
        }
        for position in (0..ids.len()).filter(|position| position % 3 != 1) {
            store[position] = None;
            index.remove(ids[position], position as u32, |p| {
                store[p as usize].expect("stored")
            });
        }
        assert_probe_invariant(&index, |p| store[p as usize].expect("stored"));
        for (position, id) in ids.iter().enumerate() {
            let matches = |p: u32| store[p as usize] == Some(*id);
            match index.find_or_vacancy_with(*id, matches) {
                Ok(found) => {
                    assert_eq!(position % 3, 1, "removed id {id:#x} found");
                    assert_eq!(found, position as u32);
                }
                Err(vacancy) => {
                    assert_ne!(position % 3, 1, "kept id {id:#x} missed");
                    store[position] = Some(*id);
                    index.insert_at(vacancy, position as u32);
                }
            }
        }
        assert_eq!(index.entries_count() as usize, ids.len());
        assert_probe_invariant(&index, |p| store[p as usize].expect("stored"));
        for (position, id) in ids.iter().enumerate() {
            let found = index.find(*id, |p| store[p as usize].expect("stored"));
            assert_eq!(found, Some(position as u32));
        }
    }

    /// Rolling back the newest inserts with `remove_newest` still restores the table exactly
    /// when arbitrary removals ran before those inserts.
    #[test]
    fn reverse_removal_after_removals_restores_the_table() {
        let ids: Vec<u128> = (1..=300u128).map(|i| i * 64 + (i % 3)).collect();
        let mut store: Vec<Option<u128>> = ids.iter().copied().map(Some).collect();
        let mut index = IdIndex::new(300);
        for (position, id) in ids.iter().enumerate().take(200) {
            index.insert(*id, position as u32);
        }
        for position in (0..200).step_by(3) {
            store[position] = None;
            index.remove(ids[position], position as u32, |p| {
                store[p as usize].expect("stored")
            });
        }
        let before = index.slots.clone();
        for (position, id) in ids.iter().enumerate().skip(200) {
            index.insert(*id, position as u32);
        }
        index.repoint(ids[250], 250, 0);
        store[0] = Some(ids[250]);
        store[250] = None;
        for (position, id) in ids.iter().enumerate().skip(200).rev() {
            let position = if position == 250 { 0 } else { position as u32 };
            index.remove_newest(*id, position);
        }
        assert_eq!(index.slots, before);
    }

    /// `repoint` changes only the position: the slot, its tag and every other slot stay.
    #[test]
    fn repoint_keeps_the_slot_and_tag() {
        let ids: Vec<u128> = (0..100u128).map(|i| (7 << 64) | i).collect();
        let mut index = IdIndex::new(100);
        for (position, id) in ids.iter().enumerate() {
            index.insert(*id, position as u32);
        }
        let before = index.slots.clone();
        index.repoint(ids[42], 42, 1000);
        let changed: Vec<usize> = (0..before.len())
            .filter(|slot| before[*slot] != index.slots[*slot])
            .collect();
        assert_eq!(changed.len(), 1);
        let slot = changed[0];
        assert_eq!(before[slot] as u32, 43);
        assert_eq!(index.slots[slot] as u32, 1001);
        assert_eq!(before[slot] >> 32, index.slots[slot] >> 32);
        let key_of = |p: u32| if p == 1000 { ids[42] } else { ids[p as usize] };
        assert_eq!(index.find(ids[42], key_of), Some(1000));
        assert_eq!(index.entries_count(), 100);
    }

    #[test]
    #[should_panic(expected = "is not in the index")]
    fn removing_an_absent_entry_panics() {
        let ids = [11u128, 12, 13];
        let mut index = IdIndex::new(8);
        index.insert(ids[0], 0);
        index.insert(ids[1], 1);
        // The id is present, but not at this position.
        index.remove(ids[1], 2, |p| ids[p as usize]);
    }

    #[test]
    #[should_panic(expected = "is not in the index")]
    fn repointing_an_absent_entry_panics() {
        let mut index = IdIndex::new(8);
        index.insert(11, 0);
        index.repoint(12, 0, 1);
    }

    /// `probe_distance` counts the steps a probe takes, in every table size.
    #[test]
    fn probe_distance_counts_probe_steps() {
        for slots_count in [64usize, 128, 1 << 12, 1 << 20] {
            let mask = slots_count - 1;
            for home in [0usize, 5, slots_count - 1, usize::MAX - 3] {
                let mut slot = home;
                for steps in 0..300 {
                    assert_eq!(probe_distance(home, slot, mask), steps % slots_count);
                    assert_eq!(probe_distance(home, slot & mask, mask), steps % slots_count);
                    slot = slot.wrapping_add(PROBE_STEP);
                }
            }
        }
    }
}
