//! A blocked Bloom filter over u128 ids: answers "certainly absent" or "maybe present" without
//! touching the history store, so that checking a new id for idempotency costs no disk read.
//!
//! Layout (after Putze, Sanders and Singler, "Cache-, Hash- and Space-efficient Bloom Filters",
//! 2007): an array of 64-byte blocks, each eight u64 words. An id selects one block and sets one
//! bit in each of its eight words, so an insert or a query touches exactly one cache line.
//!
//! Invariants:
//! - no false negatives: after `insert(id)`, `may_contain(id)` is true, forever (bits are only
//!   ever set);
//! - the blocks are a pure function of the set of inserted ids: no seed, no clock, no
//!   dependence on insertion order, so two filters fed the same ids are equal byte for byte;
//! - all memory is allocated in `new`; `insert` and `may_contain` allocate nothing.
//!
//! Sizing: `new(ids_max)` gives `BITS_PER_ID` bits per id. Inserting more ids than `ids_max` is
//! allowed and never fails; the false-positive rate then rises smoothly (a full filter answers
//! "maybe" more often, which costs a store read, never a wrong answer). The rate at capacity is
//! pinned by the tests below.
//!
//! Does not store ids, cannot remove them and never says "present" for certain: the caller
//! resolves "maybe" against memory and the history store (`docs/history.md`).

/// Bits of filter per id at the sized capacity (2 bytes per id).
pub const ID_FILTER_BITS_PER_ID: u64 = 16;

const WORDS_PER_BLOCK: usize = 8;
const BLOCK_BITS: u64 = 64 * WORDS_PER_BLOCK as u64;

/// One cache line of filter bits.
type Block = [u64; WORDS_PER_BLOCK];

/// In the clustered layout, ids that differ only in their low `CLUSTER_BITS` bits share a
/// block: a client whose ids count up (a sequence, or a counter under a prefix) checks and
/// inserts eight ids per cache line instead of one, while ids spread at random still fall in
/// random blocks. Each id's bits still depend on the whole id. The price: blocks of counted ids
/// fill less evenly, so their false-positive rate at the sized capacity is about 0.45% instead
/// of 0.1% (0.16% against 0.02% at 78% of it); a false positive costs a store read that the
/// store's own filter answers, about a microsecond, where a cache miss saved is about a tenth
/// of that on every id.
const CLUSTER_BITS: u32 = 3;

/// A fixed-size set of ids with false positives and no false negatives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdFilter {
    /// Never empty; its length never changes after `new`.
    blocks: Vec<Block>,
    /// Ids inserted, counting repeats, for reports (`load`).
    inserts_count: u64,
    ids_max: u64,
    /// Blocks chosen by the id without its low `CLUSTER_BITS` bits (every filter this build
    /// makes); false for a filter loaded from a checkpoint written before that layout.
    clustered: bool,
}

/// The 64-bit finalizer of MurmurHash3 (Appleby): every input bit affects every output bit.
#[inline(always)]
fn finalize(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// Two independent-looking 64-bit hashes of an id: one picks the block, one the bits.
///
/// Both halves of the id are mixed before they are combined, so sequential ids, ids that differ
/// only in their high half, and random ids all spread evenly. A client that crafts colliding ids
/// only makes its own new ids slower (a store read), never wrong.
///
/// Clustered (see `CLUSTER_BITS`), the block hash leaves out the id's low bits and the bits hash
/// mixes them back in, so ids of one cluster share a block but not their bits.
#[inline(always)]
fn hashes(id: u128, clustered: bool) -> (u64, u64) {
    let mix = |id: u128| {
        let low = id as u64;
        let high = (id >> 64) as u64;
        finalize(low ^ finalize(high ^ 0x243F_6A88_85A3_08D3))
    };
    if clustered {
        let block_hash = mix(id >> CLUSTER_BITS);
        let bits_hash = finalize(mix(id) ^ 0x1319_8A2E_0370_7344);
        (block_hash, bits_hash)
    } else {
        let block_hash = mix(id);
        let bits_hash = finalize(block_hash ^ 0x1319_8A2E_0370_7344);
        (block_hash, bits_hash)
    }
}

impl IdFilter {
    /// An empty filter sized for `ids_max` ids at `ID_FILTER_BITS_PER_ID` bits each (at least
    /// one block).
    ///
    /// # Panics
    ///
    /// If the size in bytes does not fit in `usize` (a start-up configuration error).
    pub fn new(ids_max: u64) -> IdFilter {
        let bits = ids_max
            .checked_mul(ID_FILTER_BITS_PER_ID)
            .unwrap_or_else(|| panic!("id filter for {ids_max} ids overflows"));
        let blocks_count = usize::try_from(bits.div_ceil(BLOCK_BITS).max(1))
            .unwrap_or_else(|_| panic!("id filter for {ids_max} ids does not fit in memory"));
        IdFilter {
            blocks: vec![[0u64; WORDS_PER_BLOCK]; blocks_count],
            inserts_count: 0,
            ids_max,
            clustered: true,
        }
    }

    /// The address range of the filter's bits.
    pub(crate) fn memory(&self) -> (usize, usize) {
        (
            self.blocks.as_ptr() as usize,
            std::mem::size_of_val(self.blocks.as_slice()),
        )
    }

    /// The block an id maps to: multiply-shift range reduction (Lemire, "Fast random integer
    /// generation in an interval", 2019), so any block count works, not only powers of two.
    #[inline(always)]
    fn block_index(&self, block_hash: u64) -> usize {
        ((u128::from(block_hash) * self.blocks.len() as u128) >> 64) as usize
    }

    /// One bit in each word of the block; six bits of `bits_hash` per word.
    #[inline(always)]
    fn masks(bits_hash: u64) -> Block {
        let mut masks = [0u64; WORDS_PER_BLOCK];
        for (word_index, mask) in masks.iter_mut().enumerate() {
            *mask = 1u64 << ((bits_hash >> (6 * word_index)) & 63);
        }
        masks
    }

    /// Adds `id`. Never fails; past `ids_max` the false-positive rate rises.
    #[inline]
    pub fn insert(&mut self, id: u128) {
        self.set_bits(id);
        self.inserts_count = self.inserts_count.saturating_add(1);
    }

    /// Sets the bits of `id` without counting an insert.
    #[inline]
    fn set_bits(&mut self, id: u128) {
        let (block_hash, bits_hash) = hashes(id, self.clustered);
        let index = self.block_index(block_hash);
        let masks = IdFilter::masks(bits_hash);
        let block = &mut self.blocks[index];
        for (word, mask) in block.iter_mut().zip(masks) {
            *word |= mask;
        }
    }

    /// False: `id` was certainly never inserted. True: it may have been.
    #[inline]
    pub fn may_contain(&self, id: u128) -> bool {
        let (block_hash, bits_hash) = hashes(id, self.clustered);
        let block = &self.blocks[self.block_index(block_hash)];
        let masks = IdFilter::masks(bits_hash);
        block
            .iter()
            .zip(masks)
            .all(|(word, mask)| word & mask == mask)
    }

    /// A word of the block `id` maps to. Reading it a little ahead of `may_contain` (while
    /// other lookups are in flight) brings the block's cache line in without a stall.
    #[inline(always)]
    pub(crate) fn touch(&self, id: u128) -> u64 {
        let (block_hash, _) = hashes(id, self.clustered);
        self.blocks[self.block_index(block_hash)][0]
    }

    /// The capacity the filter was sized for.
    pub fn ids_max(&self) -> u64 {
        self.ids_max
    }

    /// Inserts so far, counting repeats: above `ids_max` the false-positive rate is above the
    /// sized one.
    pub fn inserts_count(&self) -> u64 {
        self.inserts_count
    }

    /// Bytes of filter memory.
    pub fn size(&self) -> usize {
        self.blocks.len() * WORDS_PER_BLOCK * 8
    }
}

/// The most ids kept aside while a checkpoint is written (`AsideIds`): about two seconds of
/// new ids at the benchmark's rate. 36 MiB: a filter of 4 MiB and the ids, 32 MiB.
pub const ASIDE_IDS_MAX: u64 = 1 << 21;

/// Ids inserted while a forked checkpoint writer shares the filter's memory, kept out of it.
///
/// While the child lives, every page of the filter is shared with it, and the first write to
/// each copies the page (with a TLB shootdown on the other processors): new ids fall at random
/// over the whole filter, so in the second or so a checkpoint takes nearly every page of it is
/// copied, on the core's thread. Kept aside instead, in a small filter of their own and a list,
/// they are answered by both filters and moved into the main one a step at a time once the
/// child is gone (`merge`).
///
/// Invariants: `may_contain` answers for every id inserted, aside or not (no false negatives);
/// once everything is merged the main filter is the one the same ids would have made inserted
/// directly (the filter is a function of the set of ids), and so is its insert count; the
/// memory is allocated in `new`, and ids beyond its capacity go to the main filter at once. The
/// main filter must hold every id before a checkpoint image is taken (`merge` all first): the
/// image holds only the main filter. The memory of both buffers is never read by a checkpoint
/// writer, so the caller may keep it out of the child (`memory`).
#[derive(Clone, Debug)]
pub(crate) struct AsideIds {
    filter: IdFilter,
    /// Capacity fixed at `new`.
    ids: Vec<u128>,
    /// Whether the aside filter has bits set that the main one may lack.
    filter_used: bool,
    deferring: bool,
}

impl AsideIds {
    /// Room for `capacity` ids (at least one).
    pub(crate) fn new(capacity: u64) -> AsideIds {
        let capacity = capacity.max(1);
        AsideIds {
            filter: IdFilter::new(capacity),
            ids: Vec::with_capacity(usize::try_from(capacity).unwrap_or(usize::MAX)),
            filter_used: false,
            deferring: false,
        }
    }

    /// Inserts `id` into `main`, or aside while deferring and there is room.
    #[inline]
    pub(crate) fn insert(&mut self, main: &mut IdFilter, id: u128) {
        if self.deferring && self.ids.len() < self.ids.capacity() {
            self.ids.push(id);
            self.filter.set_bits(id);
            self.filter_used = true;
            main.inserts_count = main.inserts_count.saturating_add(1);
        } else {
            main.insert(id);
        }
    }

    /// `may_contain` over `main` and the ids aside.
    #[inline]
    pub(crate) fn may_contain(&self, main: &IdFilter, id: u128) -> bool {
        main.may_contain(id) || (self.filter_used && self.filter.may_contain(id))
    }

    /// Starts (`true`: a checkpoint writer shares the main filter from now on) or stops keeping
    /// new ids aside.
    pub(crate) fn defer(&mut self, deferring: bool) {
        self.deferring = deferring;
    }

    /// Moves up to `count` ids aside into `main`; returns whether none is left. Does nothing
    /// while deferring (the main filter is still shared).
    pub(crate) fn merge(&mut self, main: &mut IdFilter, count: usize) -> bool {
        if self.deferring {
            return self.ids.is_empty();
        }
        let keep = self.ids.len().saturating_sub(count);
        for &id in &self.ids[keep..] {
            main.set_bits(id);
        }
        self.ids.truncate(keep);
        if self.ids.is_empty() && self.filter_used {
            self.filter.blocks.fill([0; WORDS_PER_BLOCK]);
            self.filter_used = false;
        }
        self.ids.is_empty()
    }

    /// Drops every id aside and stops deferring (the main filter was cleared or loaded).
    pub(crate) fn clear(&mut self) {
        self.ids.clear();
        self.filter.blocks.fill([0; WORDS_PER_BLOCK]);
        self.filter_used = false;
        self.deferring = false;
    }

    /// The address ranges of the aside filter and of the ids' whole capacity.
    pub(crate) fn memory(&self) -> [(usize, usize); 2] {
        let ids = (
            self.ids.as_ptr() as usize,
            self.ids.capacity() * std::mem::size_of::<u128>(),
        );
        [self.filter.memory(), ids]
    }
}

/// Blocks per presence word in the sparse image.
const BLOCKS_PER_GROUP: usize = 64;

/// The checkpoint image of a filter (see checkpoint.rs): its sized capacity, its insert count,
/// its block count, then the blocks in groups of 64: a presence word (bit i set: block i of the
/// group has a bit set), then the eight words of each present block, in order. A filter far
/// below its capacity is mostly empty blocks, which cost one bit each, so a checkpoint early in
/// a ledger's life writes a fraction of the filter's memory. Images before version 5 hold every
/// word of every block.
impl IdFilter {
    pub(crate) fn checkpoint_write(
        &self,
        writer: &mut crate::checkpoint::ImageWriter,
    ) -> std::io::Result<()> {
        writer.u64(self.ids_max)?;
        writer.u64(self.inserts_count)?;
        writer.u64(self.blocks.len() as u64)?;
        for group in self.blocks.chunks(BLOCKS_PER_GROUP) {
            let mut present = 0u64;
            for (index, block) in group.iter().enumerate() {
                if block.iter().any(|&word| word != 0) {
                    present |= 1 << index;
                }
            }
            writer.u64(present)?;
            for (index, block) in group.iter().enumerate() {
                if present & (1 << index) != 0 {
                    let mut bytes = [0u8; WORDS_PER_BLOCK * 8];
                    for (word, chunk) in block.iter().zip(bytes.chunks_exact_mut(8)) {
                        chunk.copy_from_slice(&word.to_le_bytes());
                    }
                    writer.bytes(&bytes)?;
                }
            }
        }
        Ok(())
    }

    /// Reads a filter written by `checkpoint_write` into this one, which must have been sized
    /// for the same number of ids.
    pub(crate) fn checkpoint_read(
        &mut self,
        reader: &mut crate::checkpoint::ImageReader,
    ) -> Result<(), crate::checkpoint::CheckpointError> {
        let ids_max = reader.u64()?;
        if ids_max != self.ids_max {
            return Err(crate::checkpoint::CheckpointError::CapacityExceeded {
                store: "id filter (it must be sized as when it was written)",
                count: ids_max,
                capacity: self.ids_max,
                flag: "--ids-max",
            });
        }
        self.inserts_count = reader.u64()?;
        self.clustered = reader.filter_clustered();
        if reader.u64()? != self.blocks.len() as u64 {
            return Err(reader.invalid("id filter", "block count does not match its size"));
        }
        if !reader.filter_sparse() {
            for block in &mut self.blocks {
                for word in block.iter_mut() {
                    *word = reader.u64()?;
                }
            }
            return Ok(());
        }
        for group in self.blocks.chunks_mut(BLOCKS_PER_GROUP) {
            let present = reader.u64()?;
            if group.len() < BLOCKS_PER_GROUP && present >> group.len() != 0 {
                return Err(reader.invalid("id filter", "a block past its end is present"));
            }
            for (index, block) in group.iter_mut().enumerate() {
                if present & (1 << index) != 0 {
                    for word in block.iter_mut() {
                        *word = reader.u64()?;
                    }
                } else {
                    *block = [0; WORDS_PER_BLOCK];
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids kept aside are found all along; once merged, the main filter and its insert count
    /// are those of a filter fed the same ids directly, and ids past the room go straight in.
    #[test]
    fn ids_kept_aside_are_found_and_merged_into_the_same_filter() {
        let ids: Vec<u128> = (0..5_000u128)
            .map(|index| index.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) | 1)
            .collect();
        let mut direct = IdFilter::new(10_000);
        let mut main = IdFilter::new(10_000);
        let mut aside = AsideIds::new(1_000);
        for &id in &ids[..2_000] {
            direct.insert(id);
            aside.insert(&mut main, id);
        }
        aside.defer(true);
        for &id in &ids[2_000..] {
            direct.insert(id);
            aside.insert(&mut main, id);
        }
        assert_eq!(
            aside.ids.len(),
            1_000,
            "1,000 aside, the rest past the room"
        );
        assert!(ids.iter().all(|&id| aside.may_contain(&main, id)));
        let missing = ids[2_000..3_000]
            .iter()
            .filter(|&&id| !main.may_contain(id))
            .count();
        assert!(
            missing > 900,
            "the ids aside are not in the main filter: {missing}"
        );
        assert!(
            !aside.merge(&mut main, 10),
            "nothing merges while deferring"
        );
        aside.defer(false);
        assert!(!aside.merge(&mut main, 300));
        assert!(ids.iter().all(|&id| aside.may_contain(&main, id)));
        assert!(aside.merge(&mut main, usize::MAX));
        assert!(!aside.filter_used);
        assert!(aside
            .filter
            .blocks
            .iter()
            .all(|block| *block == [0; WORDS_PER_BLOCK]));
        assert_eq!(main, direct);
        assert!(ids.iter().all(|&id| main.may_contain(id)));
        aside.defer(true);
        aside.insert(&mut main, 7);
        aside.clear();
        assert!(!aside.deferring && aside.ids.is_empty() && !aside.filter_used);
    }

    /// SplitMix64, for reproducible ids.
    struct Ids(u64);

    impl Ids {
        fn next(&mut self) -> u128 {
            let mut next = || {
                self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^ (z >> 31)
            };
            (u128::from(next()) << 64) | u128::from(next())
        }
    }

    const CAPACITY: u64 = 200_000;
    const PROBES: u32 = 400_000;
    /// The sized false-positive rate is about 0.1% (16 bits per id, 8 bits set in a 512-bit
    /// block); the bound leaves room for the block-load variance but fails a broken hash.
    const FALSE_POSITIVE_RATE_MAX: f64 = 0.002;
    /// Counted ids fill clustered blocks less evenly (see `CLUSTER_BITS`).
    const SEQUENTIAL_FALSE_POSITIVE_RATE_MAX: f64 = 0.006;

    fn false_positive_rate(filter: &IdFilter, probes: impl Iterator<Item = u128>) -> f64 {
        let mut count = 0u32;
        let mut positives = 0u32;
        for id in probes {
            count += 1;
            positives += u32::from(filter.may_contain(id));
        }
        f64::from(positives) / f64::from(count)
    }

    #[test]
    fn random_ids_have_no_false_negatives_and_a_bounded_false_positive_rate() {
        let mut filter = IdFilter::new(CAPACITY);
        let mut ids = Ids(1);
        for _ in 0..CAPACITY {
            filter.insert(ids.next());
        }
        assert_eq!(filter.inserts_count(), CAPACITY);
        let mut ids = Ids(1);
        for _ in 0..CAPACITY {
            let id = ids.next();
            assert!(filter.may_contain(id), "false negative for {id:#x}");
        }
        let mut absent = Ids(2);
        let rate = false_positive_rate(&filter, (0..PROBES).map(|_| absent.next()));
        assert!(rate < FALSE_POSITIVE_RATE_MAX, "false-positive rate {rate}");
    }

    #[test]
    fn sequential_ids_have_no_false_negatives_and_a_bounded_false_positive_rate() {
        // Clients often allocate ids sequentially, in either half of the u128.
        for (first, step) in [(1u128, 1u128), (1 << 64, 1 << 64), (u128::MAX / 3, 7)] {
            let mut filter = IdFilter::new(CAPACITY);
            for index in 0..u128::from(CAPACITY) {
                filter.insert(first + index * step);
            }
            for index in 0..u128::from(CAPACITY) {
                assert!(filter.may_contain(first + index * step));
            }
            // The ids right after the inserted range are the likely retries of a fast client.
            let probes = (0..u128::from(PROBES)).map(|index| first + (index + 1_000_000) * step);
            let rate = false_positive_rate(&filter, probes);
            assert!(
                rate < SEQUENTIAL_FALSE_POSITIVE_RATE_MAX,
                "false-positive rate {rate} ({first:#x})"
            );
        }
    }

    /// The blocks that hold at least one bit.
    fn blocks_used(filter: &IdFilter) -> usize {
        filter
            .blocks
            .iter()
            .filter(|block| block.iter().any(|&word| word != 0))
            .count()
    }

    #[test]
    fn counted_ids_share_a_block_in_the_clustered_layout_only() {
        let aligned = 1u128 << 40;
        let mut clustered = IdFilter::new(1 << 20);
        let mut spread = IdFilter::new(1 << 20);
        spread.clustered = false;
        for id in aligned..aligned + (1 << CLUSTER_BITS) {
            clustered.insert(id);
            spread.insert(id);
        }
        assert_eq!(blocks_used(&clustered), 1);
        assert!(blocks_used(&spread) > 1);
        // Both answer for every id they hold, and one cluster's ids do not share their bits.
        for id in aligned..aligned + (1 << CLUSTER_BITS) {
            assert!(clustered.may_contain(id) && spread.may_contain(id));
        }
        let bits: u32 = clustered
            .blocks
            .iter()
            .flatten()
            .map(|w| w.count_ones())
            .sum();
        assert!(bits > 8 * 4, "{bits} bits for {} ids", 1 << CLUSTER_BITS);
    }

    /// The image of `filter` as versions 3 and 4 wrote it: every word of every block.
    fn dense_image(filter: &IdFilter) -> Vec<u8> {
        crate::checkpoint::image_for_test(|writer| {
            writer.u64(filter.ids_max)?;
            writer.u64(filter.inserts_count)?;
            writer.u64(filter.blocks.len() as u64)?;
            for word in filter.blocks.iter().flatten() {
                writer.u64(*word)?;
            }
            Ok(())
        })
    }

    #[test]
    fn a_filter_keeps_the_layout_of_its_checkpoint() {
        for (clustered, version) in [(false, 3), (true, 4), (true, 5)] {
            let mut filter = IdFilter::new(1_000);
            filter.clustered = clustered;
            for id in 1..=500u128 {
                filter.insert(id);
            }
            let image = if version < 5 {
                dense_image(&filter)
            } else {
                crate::checkpoint::image_for_test(|writer| filter.checkpoint_write(writer))
            };
            let mut loaded = IdFilter::new(1_000);
            let mut reader = crate::checkpoint::reader_for_test(&image, version);
            loaded
                .checkpoint_read(&mut reader)
                .expect("the image just written");
            assert_eq!(loaded, filter);
            assert!((1..=500u128).all(|id| loaded.may_contain(id)));
        }
    }

    #[test]
    fn the_sparse_image_holds_only_the_blocks_in_use_and_reads_back_equal() {
        // 70 blocks: one full group and one of six, so the last presence word has spare bits.
        let capacity = 70 * 32;
        let mut filter = IdFilter::new(capacity);
        assert_eq!(filter.blocks.len(), 70);
        let empty = crate::checkpoint::image_for_test(|writer| filter.checkpoint_write(writer));
        assert_eq!(
            empty.len(),
            3 * 8 + 2 * 8,
            "an empty filter: header and two words"
        );
        let mut ids = Ids(8);
        for _ in 0..20 {
            filter.insert(ids.next());
        }
        let used = filter
            .blocks
            .iter()
            .filter(|block| block.iter().any(|&word| word != 0))
            .count();
        assert!(used > 1 && used < 70, "{used} blocks in use");
        let image = crate::checkpoint::image_for_test(|writer| filter.checkpoint_write(writer));
        assert_eq!(image.len(), 3 * 8 + 2 * 8 + used * 64);
        // Loaded over a filter that had other bits set: absent blocks are cleared.
        let mut loaded = IdFilter::new(capacity);
        let mut other = Ids(9);
        for _ in 0..500 {
            loaded.insert(other.next());
        }
        let mut reader = crate::checkpoint::reader_for_test(&image, 5);
        loaded
            .checkpoint_read(&mut reader)
            .expect("the image just written");
        assert_eq!(loaded, filter);

        // A presence bit past the last block is refused.
        let mut corrupt = image.clone();
        let last_word = 3 * 8 + 8 + (used_in_first_group(&filter) * 64);
        corrupt[last_word + 7] |= 0x80;
        let mut reader = crate::checkpoint::reader_for_test(&corrupt, 5);
        assert!(IdFilter::new(capacity)
            .checkpoint_read(&mut reader)
            .is_err());
    }

    fn used_in_first_group(filter: &IdFilter) -> usize {
        filter.blocks[..BLOCKS_PER_GROUP]
            .iter()
            .filter(|block| block.iter().any(|&word| word != 0))
            .count()
    }

    #[test]
    fn an_overfull_filter_still_has_no_false_negatives() {
        let mut filter = IdFilter::new(1_000);
        let mut ids = Ids(3);
        for _ in 0..50_000 {
            filter.insert(ids.next());
        }
        let mut ids = Ids(3);
        for _ in 0..50_000 {
            assert!(filter.may_contain(ids.next()));
        }
        // Four times the capacity: degraded, but far from "always maybe".
        let mut filter = IdFilter::new(CAPACITY);
        let mut ids = Ids(4);
        for _ in 0..CAPACITY * 4 {
            filter.insert(ids.next());
        }
        let mut absent = Ids(5);
        let rate = false_positive_rate(&filter, (0..PROBES).map(|_| absent.next()));
        assert!(
            rate > FALSE_POSITIVE_RATE_MAX,
            "overfull rate {rate} not above the sized rate"
        );
        assert!(rate < 0.5, "overfull rate {rate}");
    }

    #[test]
    fn the_filter_depends_only_on_the_set_of_ids() {
        let mut ids = Ids(6);
        let inserted: Vec<u128> = (0..10_000).map(|_| ids.next()).collect();
        let mut forward = IdFilter::new(10_000);
        let mut backward = IdFilter::new(10_000);
        for &id in &inserted {
            forward.insert(id);
        }
        for &id in inserted.iter().rev() {
            backward.insert(id);
            backward.insert(id);
        }
        assert_eq!(forward.blocks, backward.blocks);
        assert_ne!(forward.inserts_count(), backward.inserts_count());
    }

    #[test]
    fn sizing_follows_the_capacity() {
        assert_eq!(IdFilter::new(0).size(), 64);
        assert!(!IdFilter::new(0).may_contain(1));
        assert_eq!(IdFilter::new(1_000_000).size(), 2_000_000);
        assert_eq!(IdFilter::new(1_000_000).ids_max(), 1_000_000);
        // A block count that is not a power of two still reaches every block.
        let mut filter = IdFilter::new(3 * 32);
        assert_eq!(filter.blocks.len(), 3);
        let mut ids = Ids(7);
        for _ in 0..1_000 {
            filter.insert(ids.next());
        }
        assert!(filter
            .blocks
            .iter()
            .all(|block| block.iter().any(|&word| word != 0)));
    }
}
