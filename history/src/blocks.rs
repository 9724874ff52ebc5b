//! Values of the `transfers` key space: blocks of records (docs/history.md, "The history
//! store").
//!
//! A block holds 1 to 16 transfers of 128 bytes each, in ascending timestamp order, whose
//! timestamps share every bit above the lowest four (one "bucket" of 16 timestamps), and is
//! keyed by its first timestamp. An ingest cuts its run's transfers at every bucket boundary,
//! so a block is as long as the transfers of one bucket in one run: a whole bucket when the
//! engine gave consecutive timestamps to a batch, one record when timestamps are far apart.
//! One key per block instead of one per transfer is most of what a run costs to load: on the
//! ingest example (`history/examples/ingest_growth.rs`) loading a million records took 205 ms
//! instead of 340. Larger blocks load no faster and make each point read decompress more: 64
//! records per block tripled the time of a lookup by id (from 16 to 61 us; 16 records: 20 us).
//!
//! Where blocks start depends only on the timestamps and on where runs start, so an ingest
//! repeated after a crash writes the same keys again, with the same records or more of them;
//! a run rebuilt with another end leaves at most older blocks of one bucket that overlap newer
//! ones, holding identical copies of the same transfers. Readers allow for that: a lookup
//! searches every block of its bucket, and a scan gathers each bucket's blocks and takes every
//! timestamp once. Stores of format versions 3 and 4 hold one record per key: blocks of one.
//!
//! Decoding checks every length, the order and the bucket of every timestamp, and that the
//! first is the key's; anything else is `Corrupt`, never a panic.

use clearline_engine::Transfer;

use crate::error::HistoryError;
use crate::store::TRANSFERS;

/// Timestamps per bucket, as a power of two: the low bits a block's timestamps may differ in.
const BUCKET_BITS: u32 = 4;

/// The most transfers one block holds: a bucket's worth.
pub(crate) const BLOCK_RECORDS_MAX: usize = 1 << BUCKET_BITS;

/// Offset of the timestamp in an encoded transfer.
const TIMESTAMP_OFFSET: usize = 120;

/// The first timestamp of the bucket of `timestamp`.
pub(crate) fn bucket_start(timestamp: u64) -> u64 {
    timestamp & !(BLOCK_RECORDS_MAX as u64 - 1)
}

/// Splits `transfers` (ascending timestamps) into blocks: every bucket boundary starts one.
pub(crate) fn blocks(transfers: &[Transfer]) -> impl Iterator<Item = &[Transfer]> {
    transfers.chunk_by(|a, b| bucket_start(a.timestamp) == bucket_start(b.timestamp))
}

/// Encodes `block` into `out` (cleared first).
pub(crate) fn encode(block: &[Transfer], out: &mut Vec<u8>) {
    out.clear();
    let mut record = [0u8; Transfer::SIZE];
    for transfer in block {
        transfer.encode(&mut record);
        out.extend_from_slice(&record);
    }
}

/// A checked block value.
pub(crate) struct Block<'value> {
    first: u64,
    records: &'value [[u8; Transfer::SIZE]],
}

fn corrupt(detail: String) -> HistoryError {
    HistoryError::Corrupt {
        what: TRANSFERS,
        detail,
    }
}

fn timestamp_of(record: &[u8; Transfer::SIZE]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&record[TIMESTAMP_OFFSET..TIMESTAMP_OFFSET + 8]);
    u64::from_le_bytes(bytes)
}

impl<'value> Block<'value> {
    /// Checks the value stored under `key`.
    ///
    /// # Errors
    ///
    /// `Corrupt` if the key is not 8 bytes, the value is empty, longer than a bucket or not a
    /// whole number of records, or its timestamps are not ascending within the key's bucket
    /// starting at the key.
    pub(crate) fn decode(key: &[u8], value: &'value [u8]) -> Result<Block<'value>, HistoryError> {
        let Ok(key) = <[u8; 8]>::try_from(key) else {
            return Err(corrupt(format!("key of {} bytes, expected 8", key.len())));
        };
        let first = u64::from_be_bytes(key);
        let (records, rest) = value.as_chunks::<{ Transfer::SIZE }>();
        if records.is_empty() || !rest.is_empty() || records.len() > BLOCK_RECORDS_MAX {
            return Err(corrupt(format!(
                "block at timestamp {first} has {} bytes, expected 1 to {BLOCK_RECORDS_MAX} \
                 records of {} bytes",
                value.len(),
                Transfer::SIZE
            )));
        }
        let mut previous = None;
        for record in records {
            let timestamp = timestamp_of(record);
            let valid = match previous {
                None => timestamp == first,
                Some(previous) => {
                    timestamp > previous && bucket_start(timestamp) == bucket_start(first)
                }
            };
            if !valid {
                return Err(corrupt(format!(
                    "block at timestamp {first} holds timestamp {timestamp} after {}",
                    previous.map_or_else(|| "its start".to_owned(), |p: u64| p.to_string())
                )));
            }
            previous = Some(timestamp);
        }
        Ok(Block { first, records })
    }

    /// The timestamp of its first transfer, its key.
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// The transfers of the block, oldest first.
    pub(crate) fn transfers(&self) -> impl DoubleEndedIterator<Item = Transfer> + 'value {
        self.records.iter().map(Transfer::decode)
    }

    /// The transfer of the block at `timestamp`, if it holds one.
    pub(crate) fn find(&self, timestamp: u64) -> Option<Transfer> {
        let index = self
            .records
            .binary_search_by_key(&timestamp, timestamp_of)
            .ok()?;
        Some(Transfer::decode(&self.records[index]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(timestamp: u64) -> Transfer {
        Transfer {
            id: u128::from(timestamp) * 3,
            amount: 7,
            timestamp,
            ..Transfer::default()
        }
    }

    fn encoded(timestamps: &[u64]) -> Vec<u8> {
        let transfers: Vec<Transfer> = timestamps.iter().map(|&t| transfer(t)).collect();
        let mut value = Vec::new();
        encode(&transfers, &mut value);
        value
    }

    #[test]
    fn a_run_is_cut_at_every_bucket_boundary() {
        let timestamps = [12, 13, 14, 15, 16, 17, 31, 32, 1000, 1001, 5000];
        let transfers: Vec<Transfer> = timestamps.iter().map(|&t| transfer(t)).collect();
        let cuts: Vec<Vec<u64>> = blocks(&transfers)
            .map(|block| block.iter().map(|t| t.timestamp).collect())
            .collect();
        assert_eq!(
            cuts,
            vec![
                vec![12, 13, 14, 15],
                vec![16, 17, 31],
                vec![32],
                vec![1000, 1001],
                vec![5000]
            ]
        );
        let full: Vec<Transfer> = (256..256 + 16).map(transfer).collect();
        assert_eq!(blocks(&full).count(), 1, "a whole bucket is one block");
    }

    #[test]
    fn a_block_round_trips_and_finds_each_of_its_transfers() {
        let timestamps: Vec<u64> = (16..32).step_by(3).collect();
        let value = encoded(&timestamps);
        let block = Block::decode(&16u64.to_be_bytes(), &value).expect("valid");
        let back: Vec<Transfer> = block.transfers().collect();
        assert_eq!(
            back,
            timestamps.iter().map(|&t| transfer(t)).collect::<Vec<_>>()
        );
        for &timestamp in &timestamps {
            assert_eq!(block.find(timestamp), Some(transfer(timestamp)));
            assert_eq!(block.find(timestamp + 1), None);
        }
        assert_eq!(block.find(15), None);
        assert_eq!(block.find(u64::MAX), None);
        assert_eq!(block.transfers().next_back(), Some(transfer(31)));
    }

    #[test]
    fn damaged_blocks_are_corrupt() {
        let expect_corrupt = |key: &[u8], value: &[u8], part: &str| match Block::decode(key, value)
        {
            Err(HistoryError::Corrupt { what, detail }) => {
                assert_eq!(what, TRANSFERS);
                assert!(detail.contains(part), "{detail}");
            }
            Err(error) => panic!("unexpected error {error}"),
            Ok(_) => panic!("{part}: accepted"),
        };
        let key = 16u64.to_be_bytes();
        expect_corrupt(&key[..7], &encoded(&[16]), "key of 7 bytes");
        expect_corrupt(&key, &[], "has 0 bytes");
        expect_corrupt(&key, &encoded(&[16])[..127], "has 127 bytes");
        let too_long: Vec<u8> = encoded(&[16]).repeat(BLOCK_RECORDS_MAX + 1);
        expect_corrupt(&key, &too_long, "expected 1 to 16 records");
        expect_corrupt(&key, &encoded(&[17]), "holds timestamp 17 after its start");
        expect_corrupt(&key, &encoded(&[16, 18, 17]), "holds timestamp 17 after 18");
        expect_corrupt(&key, &encoded(&[16, 16]), "holds timestamp 16 after 16");
        expect_corrupt(&key, &encoded(&[16, 32]), "holds timestamp 32 after 16");
    }
}
