//! `Watermark`, how far the store is complete, and its value in the `meta` key space.
//!
//! The value is 24 bytes, big-endian: format version (4), journal sequence (8), timestamp (8),
//! then a CRC-32C (4) of the first 20. fjall checksums its blocks too; the value's own checksum
//! and exact length make a damaged or foreign value an error at open, independent of how fjall
//! stored it.

use crate::error::HistoryError;

/// The `meta` key that holds the watermark.
pub(crate) const WATERMARK_KEY: &[u8] = b"watermark";

/// Format version of the whole store (key spaces, keys and values); a store written with
/// another version is refused at open. Version 2 keys `transfer_ids` by id and namespace and
/// adds `balances`, `burned_ids` and `resolutions`; version 3 puts a generation before the
/// account in `account_runs` keys (account_runs.rs); version 4 adds the key spaces of finished
/// orders and fills (orders.rs); version 5 stores `transfers` in blocks of up to 16 records
/// (blocks.rs); version 6 adds blocks of up to 16 ids to `transfer_ids` (id_blocks.rs). Stores
/// of versions 3 to 5 are opened as they are: they only lack the key spaces of version 4,
/// created empty, each of their records is a block of one, and each of their ids has its own
/// key, which version 6 reads too. Their watermark is written as the current version at the
/// next ingest, after which a build that reads only older versions refuses the store. There is
/// no migration from versions before 3, which never held data in use.
pub const HISTORY_FORMAT_VERSION: u32 = 6;

/// The oldest format version this build opens.
pub const HISTORY_FORMAT_VERSION_MIN: u32 = 3;

const WATERMARK_VALUE_SIZE: usize = 24;

/// How far the store is complete: every transfer at or below `timestamp` (produced by the
/// journal up to and including `sequence`) is in the store, durably.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Watermark {
    /// Journal sequence (record position) covered.
    pub sequence: u64,
    /// Transfer timestamp covered: every transfer at or below it is stored.
    pub timestamp: u64,
}

impl Watermark {
    /// Whether `self` is below `other` in either field: a watermark never moves back.
    pub(crate) fn is_behind(&self, other: &Watermark) -> bool {
        self.sequence < other.sequence || self.timestamp < other.timestamp
    }

    pub(crate) fn encode(&self) -> [u8; WATERMARK_VALUE_SIZE] {
        self.encode_as(HISTORY_FORMAT_VERSION)
    }

    /// The value as format `version` would store it (tests write other versions).
    pub(crate) fn encode_as(&self, version: u32) -> [u8; WATERMARK_VALUE_SIZE] {
        let mut value = [0u8; WATERMARK_VALUE_SIZE];
        value[0..4].copy_from_slice(&version.to_be_bytes());
        value[4..12].copy_from_slice(&self.sequence.to_be_bytes());
        value[12..20].copy_from_slice(&self.timestamp.to_be_bytes());
        let checksum = crc32c::crc32c(&value[0..20]);
        value[20..24].copy_from_slice(&checksum.to_be_bytes());
        value
    }

    /// Decodes a stored watermark value.
    ///
    /// # Errors
    ///
    /// `Corrupt` if the length, the checksum or the format version is wrong.
    pub(crate) fn decode(value: &[u8]) -> Result<Watermark, HistoryError> {
        let corrupt = |detail: String| HistoryError::Corrupt {
            what: "meta watermark",
            detail,
        };
        let Ok(value) = <&[u8; WATERMARK_VALUE_SIZE]>::try_from(value) else {
            return Err(corrupt(format!(
                "{} bytes, expected {WATERMARK_VALUE_SIZE}",
                value.len()
            )));
        };
        let field = |range: std::ops::Range<usize>| {
            let mut bytes = [0u8; 8];
            bytes[8 - range.len()..].copy_from_slice(&value[range]);
            u64::from_be_bytes(bytes)
        };
        let checksum = crc32c::crc32c(&value[0..20]);
        if u64::from(checksum) != field(20..24) {
            return Err(corrupt(format!(
                "checksum {checksum:#010x} does not match the stored {:#010x}",
                field(20..24)
            )));
        }
        let version = field(0..4);
        let readable = u64::from(HISTORY_FORMAT_VERSION_MIN)..=u64::from(HISTORY_FORMAT_VERSION);
        if !readable.contains(&version) {
            return Err(corrupt(format!(
                "the store has format version {version}, this build reads only versions \
                 {HISTORY_FORMAT_VERSION_MIN} to {HISTORY_FORMAT_VERSION}"
            )));
        }
        Ok(Watermark {
            sequence: field(4..12),
            timestamp: field(12..20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_value_round_trips() {
        let watermark = Watermark {
            sequence: 0x0102_0304_0506_0708,
            timestamp: 0x1112_1314_1516_1718,
        };
        let value = watermark.encode();
        assert_eq!(&value[0..4], &HISTORY_FORMAT_VERSION.to_be_bytes());
        assert_eq!(&value[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Watermark::decode(&value).ok(), Some(watermark));
    }

    #[test]
    fn damaged_watermark_values_are_corrupt() {
        let value = Watermark::default().encode();
        assert!(Watermark::decode(&value[..23]).is_err_and(|e| e.is_corruption()));
        for index in 0..value.len() {
            let mut damaged = value;
            damaged[index] ^= 0x40;
            assert!(Watermark::decode(&damaged).is_err_and(|e| e.is_corruption()));
        }
        let old = Watermark::default().encode_as(3);
        assert_eq!(Watermark::decode(&old).ok(), Some(Watermark::default()));
        for version in [0, 1, 2, 7, u32::MAX] {
            let other_version = Watermark::default().encode_as(version);
            match Watermark::decode(&other_version) {
                Err(HistoryError::Corrupt { detail, .. }) => {
                    assert!(
                        detail.contains(&format!("format version {version},")),
                        "{detail}"
                    );
                    assert!(detail.contains("reads only versions 3 to 6"), "{detail}");
                }
                other => panic!("version {version}: {other:?}"),
            }
        }
    }
}
