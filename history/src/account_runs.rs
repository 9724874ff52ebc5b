//! The `account_runs` key space: for each account and each run, one entry listing the
//! account's transfers in that run.
//!
//! Key (32 bytes, big-endian): generation (8), account id (16), timestamp of the account's
//! first transfer in the run (8). Value: the number of transfers as a varint, then per
//! transfer, ascending by timestamp, the difference from the previous timestamp (from the key's
//! timestamp for the first, so 0) as a varint and one side byte (`SIDE_DEBIT`, `SIDE_CREDIT`, or
//! both bits if a transfer debits and credits the same account, which the engine never
//! produces). Varints are LEB128: 7 bits per byte, low bits first, the high bit set on all but
//! the last byte.
//!
//! One entry per account per run, instead of one per transfer and side, is what makes ingest
//! fast: a run of 1,000,000 transfers over 10,000 accounts is 10,000 entries, not 2,000,000.
//!
//! A generation is a span of consecutive runs, named by the timestamp of the first transfer of
//! its first run; a new one starts once the current one holds `GENERATION_TRANSFERS`
//! transfers (so a full run is a generation of its own), and at the first ingest after the
//! store is opened. Without it, the entries of each run would be
//! spread over the whole key range (one per account touched), every ingested table would
//! overlap every older one, and fjall's compaction would rewrite more of the key space for each
//! run as the store grows. With it, a run's tables overlap only those of its own generation:
//! older generations are never rewritten, so an ingest costs the same however large the store
//! is. A query reads each generation that may hold its time range, oldest first (newest first
//! when reversed).
//!
//! Why an entry's key is the account's own first timestamp in the run, not the run's first:
//! runs are contiguous (each starts right after the durable watermark), so a run rebuilt after
//! a crash gives every account the same first timestamp it had in the lost attempt, and the new
//! entry replaces the old one under the same key instead of overlapping it. When the lost
//! attempt and the rebuilt run fall in different generations (the process restarted in
//! between, which starts a new generation), both entries stay: they list the same transfers,
//! and a query returns each timestamp once, as it visits timestamps in order.
//!
//! Decoding checks everything (lengths, order, sides) and reports a damaged value as `Corrupt`.

use crate::error::HistoryError;

/// The transfer debits the account.
pub(crate) const SIDE_DEBIT: u8 = 1;
/// The transfer credits the account.
pub(crate) const SIDE_CREDIT: u8 = 2;

/// Bytes of an `account_runs` key.
pub(crate) const KEY_SIZE: usize = 32;

/// Transfers after which the next ingest starts a new generation: a run of the default size
/// (2^20 transfers) is a generation of its own, and smaller runs share one. Within a
/// generation, every run's table overlaps the others and fjall's compaction merges them; a
/// generation per full run leaves compaction only tables to move down without rewriting. On
/// the ingest example (40 runs of 1,000,000 transfers over 1,000,000 zipfian accounts), four
/// runs per generation took 28.9 CPU seconds, one per generation 21.9 s, and an account query
/// took 33 ms either way.
pub(crate) const GENERATION_TRANSFERS: usize = 1 << 19;

/// One side of one transfer, as sorted to build the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Posting {
    /// The account.
    pub(crate) account: u128,
    /// The transfer's timestamp.
    pub(crate) timestamp: u64,
    /// `SIDE_DEBIT`, `SIDE_CREDIT` or both bits.
    pub(crate) side: u8,
}

/// The key of an account's entry in `generation` whose first transfer is at `timestamp`.
pub(crate) fn key(generation: u64, account: u128, timestamp: u64) -> [u8; KEY_SIZE] {
    let mut key = [0u8; KEY_SIZE];
    key[..8].copy_from_slice(&generation.to_be_bytes());
    key[8..24].copy_from_slice(&account.to_be_bytes());
    key[24..].copy_from_slice(&timestamp.to_be_bytes());
    key
}

/// Splits a stored key into generation, account and first timestamp.
///
/// # Errors
///
/// `Corrupt` if the key is not 32 bytes.
pub(crate) fn key_parts(key: &[u8]) -> Result<(u64, u128, u64), HistoryError> {
    let Ok(key) = <&[u8; KEY_SIZE]>::try_from(key) else {
        return Err(HistoryError::Corrupt {
            what: "account_runs key",
            detail: format!("{} bytes, expected {KEY_SIZE}", key.len()),
        });
    };
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&key[..8]);
    let mut account = [0u8; 16];
    account.copy_from_slice(&key[8..24]);
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&key[24..]);
    Ok((
        u64::from_be_bytes(generation),
        u128::from_be_bytes(account),
        u64::from_be_bytes(timestamp),
    ))
}

fn push_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint at `*offset`, advancing it; `None` if it runs past the end or overflows.
fn read_varint(bytes: &[u8], offset: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*offset)?;
        *offset += 1;
        let bits = u64::from(byte & 0x7F);
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Encodes one account's postings (one account, strictly ascending timestamps, at least one)
/// into `out`, which is cleared first.
pub(crate) fn encode_list(postings: &[Posting], out: &mut Vec<u8>) {
    out.clear();
    push_varint(postings.len() as u64, out);
    let mut previous = postings.first().map_or(0, |posting| posting.timestamp);
    for posting in postings {
        push_varint(posting.timestamp - previous, out);
        out.push(posting.side);
        previous = posting.timestamp;
    }
}

/// Decodes an entry's value into `(timestamp, side)` pairs, ascending, appended to `out`
/// (cleared first).
///
/// # Errors
///
/// `Corrupt` if the value is malformed: a bad count or varint, a first difference other than 0,
/// timestamps not strictly ascending or overflowing, an unknown side, or trailing bytes.
pub(crate) fn decode_list(
    account: u128,
    first_timestamp: u64,
    value: &[u8],
    out: &mut Vec<(u64, u8)>,
) -> Result<(), HistoryError> {
    out.clear();
    let corrupt = |detail: &str| HistoryError::Corrupt {
        what: "account_runs value",
        detail: format!("account {account}, first timestamp {first_timestamp}: {detail}"),
    };
    let mut offset = 0usize;
    let count = read_varint(value, &mut offset).ok_or_else(|| corrupt("bad count"))?;
    // Each transfer takes at least two bytes, so a count beyond that is damage; checking first
    // keeps a damaged count from reserving memory.
    if count == 0 || count > (value.len() / 2) as u64 {
        return Err(corrupt("count does not fit the value"));
    }
    out.reserve(count as usize);
    let mut timestamp = first_timestamp;
    for index in 0..count {
        let delta = read_varint(value, &mut offset).ok_or_else(|| corrupt("bad difference"))?;
        if (index == 0) != (delta == 0) {
            return Err(corrupt(
                "timestamps are not strictly ascending from the key",
            ));
        }
        timestamp = timestamp
            .checked_add(delta)
            .ok_or_else(|| corrupt("timestamp overflows"))?;
        let side = *value.get(offset).ok_or_else(|| corrupt("missing side"))?;
        offset += 1;
        if side == 0 || side > (SIDE_DEBIT | SIDE_CREDIT) {
            return Err(corrupt("unknown side"));
        }
        out.push((timestamp, side));
    }
    if offset != value.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postings(items: &[(u64, u8)]) -> Vec<Posting> {
        items
            .iter()
            .map(|&(timestamp, side)| Posting {
                account: 7,
                timestamp,
                side,
            })
            .collect()
    }

    #[test]
    fn list_round_trips() {
        let items = [(5, 1), (6, 2), (200, 1), (1 << 40, 2), (u64::MAX, 3)];
        let mut value = Vec::new();
        encode_list(&postings(&items), &mut value);
        let mut decoded = Vec::new();
        assert!(decode_list(7, 5, &value, &mut decoded).is_ok());
        assert_eq!(decoded, items);
    }

    #[test]
    fn varints_use_seven_bits_per_byte() {
        let mut value = Vec::new();
        encode_list(&postings(&[(10, 1), (10 + 300, 2)]), &mut value);
        // count 2, delta 0, side 1, delta 300 = 0b10_0101100, side 2.
        assert_eq!(value, [2, 0, 1, 0xAC, 0x02, 2]);
    }

    #[test]
    fn damaged_lists_are_corrupt_never_a_panic() {
        let mut value = Vec::new();
        encode_list(&postings(&[(5, 1), (9, 2), (700, 1)]), &mut value);
        let mut out = Vec::new();
        let check = |bytes: &[u8], out: &mut Vec<(u64, u8)>| {
            let result = decode_list(7, 5, bytes, out);
            assert!(result.is_err_and(|e| e.is_corruption()), "{bytes:?}");
        };
        for length in 0..value.len() {
            check(&value[..length], &mut out);
        }
        let mut trailing = value.clone();
        trailing.push(0);
        check(&trailing, &mut out);
        check(&[2, 0, 1, 0, 2], &mut out); // second difference 0
        check(&[1, 3, 1], &mut out); // first difference not 0
        check(&[1, 0, 4], &mut out); // unknown side
        check(&[1, 0, 0], &mut out); // no side
        check(&[0xFF; 12], &mut out); // count overflows
        check(
            &[
                2, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 1,
            ],
            &mut out,
        );
        assert!(key_parts(&[0; 31]).is_err_and(|e| e.is_corruption()));
        assert_eq!(key_parts(&key(2, 3, 4)).ok(), Some((2, 3, 4)));
    }
}
