//! Blocks of `transfer_ids` (docs/history.md, "The history store"): the ids of one run that
//! share every bit but the lowest four, in one namespace, under one key.
//!
//! fjall's cost is mostly per key, so a run of a million ids allocated in sequence (a counter,
//! or time-based ids that count up within a millisecond) loads as 62,500 keys instead of a
//! million. Ids with nothing in common still cost one key each, as before.
//!
//! Keys: an id key (`records::id_key`) is the id (16 bytes) and the namespace byte (0 or 1);
//! a block key is the block's base (the id with its lowest four bits cleared, 16 bytes) and the
//! namespace byte with its top bit set (`0x80` or `0x81`). So both shapes share the key space
//! and its order: the keys of one base sort together, and a block key never equals an id key.
//!
//! An ingest writes a base's ids as a block only if the block key sorts after every key the
//! key space holds; otherwise it writes them one key each. A block key is therefore written at
//! most once: a later id of the same base gets its own id key, and so do the ids of a run
//! rebuilt after a crash where the lost attempt's blocks were written (they hold the same ids
//! with the same timestamps, which the journal's replay gives again). A lookup reads the block
//! key first and then the id key.
//!
//! Value: up to 16 entries in ascending order of the id's lowest four bits, each that nibble
//! (1 byte) and the transfer's timestamp (8 bytes, big-endian). Decoding checks the length,
//! the order and every nibble; anything else is `Corrupt`, never a panic.

use crate::error::HistoryError;
use crate::records::ID_KEY_SIZE;
use crate::store::TRANSFER_IDS;

/// Low bits of an id that vary within one block.
const BLOCK_BITS: u32 = 4;
/// Mask of those bits.
const BLOCK_MASK: u128 = (1 << BLOCK_BITS) - 1;
/// The most ids in one block.
pub(crate) const BLOCK_IDS_MAX: usize = 1 << BLOCK_BITS;
/// Bytes per entry of a block value: the id's low nibble, its timestamp.
const ENTRY_SIZE: usize = 9;
/// Set in the namespace byte of a block key.
const BLOCK_NAMESPACE_BIT: u8 = 0x80;

/// The base of `id`: the id with its lowest four bits cleared.
pub(crate) fn base(id: u128) -> u128 {
    id & !BLOCK_MASK
}

/// The key of the block of `id` in the client or the settlement namespace.
pub(crate) fn block_key(id: u128, settlement: bool) -> [u8; ID_KEY_SIZE] {
    let mut key = [0u8; ID_KEY_SIZE];
    key[..16].copy_from_slice(&base(id).to_be_bytes());
    key[16] = BLOCK_NAMESPACE_BIT | u8::from(settlement);
    key
}

/// Appends the entry of `id` at `timestamp` to the block value `out`. The caller appends at
/// most [`BLOCK_IDS_MAX`] ids of one base, in ascending order.
pub(crate) fn push(out: &mut Vec<u8>, id: u128, timestamp: u64) {
    out.push((id & BLOCK_MASK) as u8);
    out.extend_from_slice(&timestamp.to_be_bytes());
}

/// The timestamp of `id` in the block value `value`, if the block holds it.
///
/// # Errors
///
/// `Corrupt` if the value is empty, not a whole number of entries, longer than a block, or
/// its nibbles are not ascending and below 16.
pub(crate) fn find(id: u128, value: &[u8]) -> Result<Option<u64>, HistoryError> {
    let corrupt = |detail: String| HistoryError::Corrupt {
        what: TRANSFER_IDS,
        detail: format!("block of id {id}: {detail}"),
    };
    let (entries, rest) = value.as_chunks::<ENTRY_SIZE>();
    if entries.is_empty() || !rest.is_empty() || entries.len() > BLOCK_IDS_MAX {
        return Err(corrupt(format!(
            "{} bytes, expected 1 to {BLOCK_IDS_MAX} entries of {ENTRY_SIZE}",
            value.len()
        )));
    }
    let wanted = (id & BLOCK_MASK) as u8;
    let mut found = None;
    let mut previous: Option<u8> = None;
    for entry in entries {
        let nibble = entry[0];
        if u128::from(nibble) > BLOCK_MASK || previous.is_some_and(|p| p >= nibble) {
            return Err(corrupt(format!(
                "entry {nibble} after {previous:?} (ascending, below 16)"
            )));
        }
        previous = Some(nibble);
        if nibble == wanted {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(&entry[1..]);
            found = Some(u64::from_be_bytes(timestamp));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::id_key;

    #[test]
    fn block_keys_sort_among_the_id_keys_of_their_base_and_never_equal_one() {
        let id = (7u128 << 100) | 0x35;
        let key = block_key(id, false);
        assert_eq!(key, block_key(base(id), false));
        assert!(key > id_key(base(id), true), "after the base's own id keys");
        assert!(
            key < id_key(base(id) + 1, false),
            "before the next id's keys"
        );
        assert!(block_key(id, false) < block_key(id, true));
        for low in 0..16u128 {
            for settlement in [false, true] {
                assert_ne!(key, id_key(base(id) + low, settlement));
            }
        }
    }

    #[test]
    fn a_block_answers_for_its_ids_only() {
        let base = 0xabcd_0000u128;
        let mut value = Vec::new();
        for (low, timestamp) in [(0u128, 10u64), (3, 13), (15, 25)] {
            push(&mut value, base + low, timestamp);
        }
        assert_eq!(find(base, &value).unwrap(), Some(10));
        assert_eq!(find(base + 3, &value).unwrap(), Some(13));
        assert_eq!(find(base + 15, &value).unwrap(), Some(25));
        assert_eq!(find(base + 4, &value).unwrap(), None);
    }

    #[test]
    fn damaged_blocks_are_corrupt_not_a_panic() {
        let mut value = Vec::new();
        push(&mut value, 1, 10);
        push(&mut value, 2, 20);
        let damaged: [Vec<u8>; 5] = [
            Vec::new(),
            value[..ENTRY_SIZE + 3].to_vec(),
            [&value[ENTRY_SIZE..], &value[..ENTRY_SIZE]].concat(),
            {
                let mut bad = value.clone();
                bad[0] = 16;
                bad
            },
            value.repeat(9),
        ];
        for bytes in damaged {
            assert!(matches!(find(1, &bytes), Err(HistoryError::Corrupt { .. })));
        }
    }
}
