//! The on-disk layouts of the journal: segment header, record header and checkpoint header, with
//! their encoders, decoders and checksums (drawn byte by byte in `journal/FORMAT.md`).
//!
//! Invariants:
//! - every header is little-endian, fixed-size, and its reserved bytes are zero;
//! - every checksum is 128-bit xxh3, and the header checksum covers the generation, segment id,
//!   offset and sequence, so a valid record copied to another place or from another generation
//!   never validates there;
//! - `decode_*` never trusts a field before the header checksum has been checked (validation
//!   order: checksum, magic, version, reserved bytes, size bounds, position).
//!
//! Does not do I/O; callers read and write the bytes.

use crate::le::{u128_at, u16_at, u32_at, u64_at};
use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed};

/// Format version written in every header; readers refuse any other value.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the record header in bytes; the body follows it.
pub const RECORD_HEADER_SIZE: u64 = 128;
/// Records start at offsets that are multiples of this; padding after a body is zero.
pub const RECORD_ALIGNMENT: u64 = 64;
/// Size of the block at the start of every segment file; records start after it.
pub const SEGMENT_HEADER_SIZE: u64 = 4096;
/// Size of the checkpoint file header; the image follows it.
pub const CHECKPOINT_HEADER_SIZE: u64 = 128;
/// Smallest segment size accepted by the configuration.
pub const SEGMENT_SIZE_MIN: u64 = 64 * 1024;

/// "CLJREC01" as a little-endian u64.
pub const RECORD_MAGIC: u64 = u64::from_le_bytes(*b"CLJREC01");
/// "CLJSEG01" as a little-endian u64.
pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"CLJSEG01");
/// "CLJCKP01" as a little-endian u64.
pub const CHECKPOINT_MAGIC: u64 = u64::from_le_bytes(*b"CLJCKP01");

/// Offset of the magic in a record header (used to find candidate records when scanning).
pub const RECORD_MAGIC_OFFSET: usize = 48;
/// Offset of the segment id in a record header (a copied record names where it goes).
pub const RECORD_SEGMENT_OFFSET: usize = 72;

const _: () = assert!(RECORD_HEADER_SIZE % RECORD_ALIGNMENT == 0);
const _: () = assert!(SEGMENT_HEADER_SIZE % RECORD_ALIGNMENT == 0);
const _: () = assert!(SEGMENT_SIZE_MIN > SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE);

/// Bytes a record with a body of `body_size` bytes occupies in a segment, padding included.
pub const fn record_size(body_size: u64) -> u64 {
    RECORD_HEADER_SIZE + body_size.div_ceil(RECORD_ALIGNMENT) * RECORD_ALIGNMENT
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn put_u128(bytes: &mut [u8], at: usize, value: u128) {
    bytes[at..at + 16].copy_from_slice(&value.to_le_bytes());
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

/// The checksum of a record body, bound to the record's place: the seed mixes sequence, segment
/// id and generation (the header checksum covers them in full as well).
pub fn body_checksum(body: &[u8], generation: u64, segment: u64, sequence: u64) -> u128 {
    let seed = generation
        ^ sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ segment.wrapping_mul(0xc2b2_ae3d_27d4_eb4f).rotate_left(29);
    xxh3_128_with_seed(body, seed)
}

/// Why a header or body failed validation; a static sentence for error messages.
pub type Invalid = &'static str;

/// The decoded fields of a record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Checksum of header bytes 16..128; the next record stores it as `previous_checksum`.
    pub checksum: u128,
    /// Checksum of the body (see [`body_checksum`]).
    pub body_checksum: u128,
    /// Header checksum of the record with sequence `sequence - 1` (zero for sequence 1).
    pub previous_checksum: u128,
    /// Body length in bytes.
    pub body_size: u32,
    /// Journal generation, chosen at random when the journal is created.
    pub generation: u64,
    /// Id of the segment holding the record.
    pub segment: u64,
    /// Byte offset of the header inside its segment file.
    pub offset: u64,
    /// Position in the log; the first record is 1.
    pub sequence: u64,
    /// Timestamp given by the caller.
    pub timestamp: u64,
    /// Highest sequence known durable when the record was written.
    pub watermark: u64,
}

impl RecordHeader {
    /// Encodes the header and fills in `checksum`.
    pub fn encode(&mut self, bytes: &mut [u8; RECORD_HEADER_SIZE as usize]) {
        bytes.fill(0);
        put_u128(bytes, 16, self.body_checksum);
        put_u128(bytes, 32, self.previous_checksum);
        put_u64(bytes, 48, RECORD_MAGIC);
        bytes[56..58].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[60..64].copy_from_slice(&self.body_size.to_le_bytes());
        put_u64(bytes, 64, self.generation);
        put_u64(bytes, RECORD_SEGMENT_OFFSET, self.segment);
        put_u64(bytes, 80, self.offset);
        put_u64(bytes, 88, self.sequence);
        put_u64(bytes, 96, self.timestamp);
        put_u64(bytes, 104, self.watermark);
        self.checksum = xxh3_128(&bytes[16..]);
        put_u128(bytes, 0, self.checksum);
    }

    /// Decodes and validates a header read from `segment` at `offset` of a journal with
    /// `generation`. Checks checksum, magic, version, reserved bytes, size and position, but not
    /// the sequence chain (the caller knows what it expects).
    pub fn decode(
        bytes: &[u8],
        generation: u64,
        segment: u64,
        offset: u64,
        body_size_max: u64,
    ) -> Result<RecordHeader, Invalid> {
        assert_eq!(bytes.len() as u64, RECORD_HEADER_SIZE);
        if all_zero(bytes) {
            return Err("header is all zeros (never written)");
        }
        let checksum = u128_at(bytes, 0);
        if xxh3_128(&bytes[16..]) != checksum {
            return Err("header checksum mismatch");
        }
        if u64_at(bytes, 48) != RECORD_MAGIC {
            return Err("bad record magic");
        }
        if u16_at(bytes, 56) != FORMAT_VERSION {
            return Err("unknown record format version");
        }
        if !all_zero(&bytes[58..60]) || !all_zero(&bytes[112..128]) {
            return Err("reserved header bytes are not zero");
        }
        let header = RecordHeader {
            checksum,
            body_checksum: u128_at(bytes, 16),
            previous_checksum: u128_at(bytes, 32),
            body_size: u32_at(bytes, 60),
            generation: u64_at(bytes, 64),
            segment: u64_at(bytes, RECORD_SEGMENT_OFFSET),
            offset: u64_at(bytes, 80),
            sequence: u64_at(bytes, 88),
            timestamp: u64_at(bytes, 96),
            watermark: u64_at(bytes, 104),
        };
        if header.generation != generation {
            return Err("record from another journal generation");
        }
        if header.segment != segment {
            return Err("record belongs to another segment (misplaced)");
        }
        if header.offset != offset {
            return Err("record belongs at another offset (misplaced)");
        }
        if u64::from(header.body_size) > body_size_max {
            return Err("body size above the maximum");
        }
        if header.sequence == 0 {
            return Err("sequence zero");
        }
        if header.watermark >= header.sequence {
            return Err("watermark not below the record's own sequence");
        }
        Ok(header)
    }

    /// Whether `body` matches this header's body checksum.
    pub fn body_matches(&self, body: &[u8]) -> bool {
        body.len() as u64 == u64::from(self.body_size)
            && body_checksum(body, self.generation, self.segment, self.sequence)
                == self.body_checksum
    }

    /// Bytes this record occupies, padding included.
    pub fn size(&self) -> u64 {
        record_size(u64::from(self.body_size))
    }
}

/// The decoded fields of a segment header (the first 128 bytes of the segment's first block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Journal generation.
    pub generation: u64,
    /// Segment id; the file is named after it.
    pub segment: u64,
    /// Size of the segment file in bytes.
    pub size: u64,
}

impl SegmentHeader {
    /// Encodes the header into the first 128 bytes of `bytes` (the rest stays zero).
    pub fn encode(&self, bytes: &mut [u8]) {
        assert!(bytes.len() as u64 >= RECORD_HEADER_SIZE);
        bytes.fill(0);
        put_u64(bytes, 16, SEGMENT_MAGIC);
        bytes[24..26].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        put_u64(bytes, 32, self.generation);
        put_u64(bytes, 40, self.segment);
        put_u64(bytes, 48, self.size);
        let checksum = xxh3_128(&bytes[16..128]);
        put_u128(bytes, 0, checksum);
    }

    /// Decodes and validates the first 128 bytes of a segment file.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, Invalid> {
        assert_eq!(bytes.len(), 128);
        if u128_at(bytes, 0) != xxh3_128(&bytes[16..128]) {
            return Err("segment header checksum mismatch");
        }
        if u64_at(bytes, 16) != SEGMENT_MAGIC {
            return Err("bad segment magic");
        }
        if u16_at(bytes, 24) != FORMAT_VERSION {
            return Err("unknown segment format version");
        }
        if !all_zero(&bytes[26..32]) || !all_zero(&bytes[56..128]) {
            return Err("reserved segment header bytes are not zero");
        }
        Ok(SegmentHeader {
            generation: u64_at(bytes, 32),
            segment: u64_at(bytes, 40),
            size: u64_at(bytes, 48),
        })
    }
}

/// The decoded fields of a checkpoint file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// Journal generation the checkpoint belongs to.
    pub generation: u64,
    /// The checkpoint holds the state after applying records 1..=sequence.
    pub sequence: u64,
    /// Timestamp of the record `sequence`, as given by the caller.
    pub timestamp: u64,
    /// Header checksum of the record `sequence` (zero for sequence 0): anchors the hash chain.
    pub chain_checksum: u128,
    /// Length of the image in bytes.
    pub image_size: u64,
    /// xxh3-128 of the image.
    pub image_checksum: u128,
}

impl CheckpointHeader {
    /// What the journal lists of a valid checkpoint with this header.
    pub fn info(&self) -> crate::CheckpointInfo {
        crate::CheckpointInfo {
            sequence: self.sequence,
            timestamp: self.timestamp,
            image_size: self.image_size,
        }
    }

    /// Encodes the header.
    pub fn encode(&self, bytes: &mut [u8; CHECKPOINT_HEADER_SIZE as usize]) {
        bytes.fill(0);
        put_u64(bytes, 16, CHECKPOINT_MAGIC);
        bytes[24..26].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        put_u64(bytes, 32, self.generation);
        put_u64(bytes, 40, self.sequence);
        put_u64(bytes, 48, self.timestamp);
        put_u128(bytes, 56, self.chain_checksum);
        put_u64(bytes, 72, self.image_size);
        put_u128(bytes, 80, self.image_checksum);
        let checksum = xxh3_128(&bytes[16..]);
        put_u128(bytes, 0, checksum);
    }

    /// Decodes a whole checkpoint file and validates header and image; returns the header and the
    /// image bytes.
    pub fn decode(file: &[u8]) -> Result<(CheckpointHeader, &[u8]), Invalid> {
        let header = CheckpointHeader::decode_header(file)?;
        let image = &file[CHECKPOINT_HEADER_SIZE as usize..];
        if image.len() as u64 != header.image_size {
            return Err("checkpoint image size does not match the file size");
        }
        if xxh3_128(image) != header.image_checksum {
            return Err("checkpoint image checksum mismatch");
        }
        Ok((header, image))
    }

    /// Decodes and validates the header alone (the first 128 bytes of `file`); the caller
    /// checks the image's size and checksum.
    pub fn decode_header(file: &[u8]) -> Result<CheckpointHeader, Invalid> {
        if (file.len() as u64) < CHECKPOINT_HEADER_SIZE {
            return Err("checkpoint file shorter than its header");
        }
        let bytes = &file[..CHECKPOINT_HEADER_SIZE as usize];
        if u128_at(bytes, 0) != xxh3_128(&bytes[16..]) {
            return Err("checkpoint header checksum mismatch");
        }
        if u64_at(bytes, 16) != CHECKPOINT_MAGIC {
            return Err("bad checkpoint magic");
        }
        if u16_at(bytes, 24) != FORMAT_VERSION {
            return Err("unknown checkpoint format version");
        }
        if !all_zero(&bytes[26..32]) || !all_zero(&bytes[96..128]) {
            return Err("reserved checkpoint header bytes are not zero");
        }
        let header = CheckpointHeader {
            generation: u64_at(bytes, 32),
            sequence: u64_at(bytes, 40),
            timestamp: u64_at(bytes, 48),
            chain_checksum: u128_at(bytes, 56),
            image_size: u64_at(bytes, 72),
            image_checksum: u128_at(bytes, 80),
        };
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordHeader {
        RecordHeader {
            checksum: 0,
            body_checksum: body_checksum(b"hello", 7, 2, 9),
            previous_checksum: 0x1234,
            body_size: 5,
            generation: 7,
            segment: 2,
            offset: 4096,
            sequence: 9,
            timestamp: 1_000,
            watermark: 8,
        }
    }

    #[test]
    fn record_header_round_trips() {
        let mut header = sample();
        let mut bytes = [0u8; 128];
        header.encode(&mut bytes);
        let decoded = RecordHeader::decode(&bytes, 7, 2, 4096, 1 << 20).unwrap();
        assert_eq!(decoded, header);
        assert!(decoded.body_matches(b"hello"));
        assert!(!decoded.body_matches(b"hellp"));
    }

    #[test]
    fn record_header_golden_layout() {
        let mut header = sample();
        let mut bytes = [0u8; 128];
        header.encode(&mut bytes);
        assert_eq!(&bytes[48..56], b"CLJREC01");
        assert_eq!(&bytes[56..58], &[1, 0]);
        assert_eq!(&bytes[60..64], &[5, 0, 0, 0]);
        assert_eq!(bytes[64], 7);
        assert_eq!(bytes[72], 2);
        assert_eq!(&bytes[80..82], &[0x00, 0x10]);
        assert_eq!(bytes[88], 9);
        assert_eq!(&bytes[96..98], &[0xe8, 0x03]);
        assert_eq!(bytes[104], 8);
        assert_eq!(&bytes[32..34], &[0x34, 0x12]);
    }

    #[test]
    fn record_in_wrong_place_does_not_validate() {
        let mut header = sample();
        let mut bytes = [0u8; 128];
        header.encode(&mut bytes);
        assert!(RecordHeader::decode(&bytes, 8, 2, 4096, 1 << 20).is_err());
        assert!(RecordHeader::decode(&bytes, 7, 3, 4096, 1 << 20).is_err());
        assert!(RecordHeader::decode(&bytes, 7, 2, 4160, 1 << 20).is_err());
        assert!(RecordHeader::decode(&bytes, 7, 2, 4096, 4).is_err());
    }

    #[test]
    fn every_bit_flip_in_a_header_is_detected() {
        let mut header = sample();
        let mut bytes = [0u8; 128];
        header.encode(&mut bytes);
        for bit in 0..128 * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                RecordHeader::decode(&flipped, 7, 2, 4096, 1 << 20).is_err(),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn segment_and_checkpoint_headers_round_trip() {
        let segment = SegmentHeader {
            generation: 3,
            segment: 4,
            size: 1 << 20,
        };
        let mut block = vec![0u8; SEGMENT_HEADER_SIZE as usize];
        segment.encode(&mut block);
        assert_eq!(SegmentHeader::decode(&block[..128]), Ok(segment));
        block[40] ^= 1;
        assert!(SegmentHeader::decode(&block[..128]).is_err());

        let image = b"state image";
        let checkpoint = CheckpointHeader {
            generation: 3,
            sequence: 10,
            timestamp: 99,
            chain_checksum: 5,
            image_size: image.len() as u64,
            image_checksum: xxh3_128(image),
        };
        let mut header = [0u8; 128];
        checkpoint.encode(&mut header);
        let mut file = header.to_vec();
        file.extend_from_slice(image);
        let (decoded, decoded_image) = CheckpointHeader::decode(&file).unwrap();
        assert_eq!(decoded, checkpoint);
        assert_eq!(decoded_image, image);
        let last = file.len() - 1;
        file[last] ^= 0x80;
        assert!(CheckpointHeader::decode(&file).is_err());
    }

    #[test]
    fn record_size_pads_to_alignment() {
        assert_eq!(record_size(0), 128);
        assert_eq!(record_size(1), 192);
        assert_eq!(record_size(64), 192);
        assert_eq!(record_size(128), 256);
    }
}
