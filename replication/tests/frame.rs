//! Property tests of the replication stream's framing: every valid frame round-trips, every
//! single-byte change and every truncation is refused (or, never in practice, decodes to the
//! same frame), arbitrary bytes never panic, and the stream decoder finds the same frames
//! however the bytes are cut.

use clearline_replication::frame::{
    decode, encode, CatchUpPart, Frame, FrameError, Message, StreamDecoder, CATCH_UP_LZ4,
    CATCH_UP_STORE, FRAME_BODY_SIZE_MAX, FRAME_HEADER_SIZE,
};
use proptest::prelude::*;

/// A message with owned bytes, from which a borrowing [`Frame`] is made.
#[derive(Clone, Debug)]
struct Owned {
    epoch: u64,
    kind: u8,
    a: u64,
    b: u64,
    c: u128,
    count: u32,
    bytes: Vec<u8>,
}

impl Owned {
    fn frame(&self) -> Frame<'_> {
        let message = match self.kind {
            0 => Message::Hello {
                node_id: self.a,
                durable_sequence: self.b,
                durable_checksum: self.c,
            },
            1 => Message::Records {
                first_sequence: self.a,
                records_count: self.count,
                records: &self.bytes,
            },
            2 => Message::Ack {
                durable_sequence: self.b,
            },
            3 => Message::Truncate {
                from_sequence: self.a,
                previous_checksum: self.c,
            },
            4 => Message::CatchUp {
                checkpoint_sequence: self.a,
                checkpoint_size: self.a,
                segment: self.b,
                segment_prefix_size: self.a,
                flags: (self.c & u128::from(CATCH_UP_STORE | CATCH_UP_LZ4)) as u64,
            },
            5 => Message::Welcome {
                generation: self.a,
                segment_size: self.a,
                first_sequence: self.a,
                written_sequence: self.b,
            },
            6 => Message::CatchUpEnd {
                store_entries: self.a,
                store_bytes: self.b,
            },
            _ => Message::CatchUpChunk {
                part: [
                    CatchUpPart::Checkpoint,
                    CatchUpPart::Segment,
                    CatchUpPart::Store,
                ][self.count as usize % 3],
                offset: self.b,
                bytes: &self.bytes,
            },
        };
        Frame {
            epoch: self.epoch,
            message,
        }
    }
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        1u64..u64::MAX,
        0u8..8,
        1u64..u64::MAX,
        0u64..u64::MAX / 2,
        any::<u128>(),
        1u32..4,
        1usize..6,
        any::<u8>(),
    )
        .prop_map(|(epoch, kind, a, b, c, count, blocks, fill)| {
            // Records need whole 64-byte blocks and a 128-byte header per record; chunks take
            // any non-empty size.
            let size = if kind == 1 {
                (count as usize * 2 + blocks) * 64
            } else {
                blocks * 37
            };
            let bytes = (0..size)
                .map(|index| fill.wrapping_add(index as u8))
                .collect();
            Owned {
                epoch,
                kind,
                a,
                b,
                c,
                count,
                bytes,
            }
        })
}

fn encoded(owned: &Owned) -> Vec<u8> {
    let mut buffer = vec![0u8; FRAME_HEADER_SIZE + FRAME_BODY_SIZE_MAX as usize];
    let size = encode(&owned.frame(), &mut buffer).expect("generated frames are valid");
    buffer.truncate(size);
    buffer
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trips(owned in owned()) {
        let bytes = encoded(&owned);
        let (frame, size) = decode(&bytes, FRAME_BODY_SIZE_MAX).expect("decodes");
        prop_assert_eq!(size, bytes.len());
        prop_assert_eq!(frame, owned.frame());
    }

    #[test]
    fn every_byte_flip_is_refused_or_harmless(owned in owned(), flip in 1u8..=255) {
        let bytes = encoded(&owned);
        let original = owned.frame();
        for index in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[index] ^= flip;
            match decode(&changed, FRAME_BODY_SIZE_MAX) {
                Ok((frame, _)) => prop_assert_eq!(frame, original, "byte {}", index),
                Err(FrameError::Truncated { frame_size }) => {
                    // A flip in the size field can announce a longer frame: still refused,
                    // by waiting for bytes that never come.
                    prop_assert!(frame_size > bytes.len(), "byte {}", index);
                }
                Err(_) => {}
            }
        }
    }

    #[test]
    fn every_truncation_is_refused(owned in owned()) {
        let bytes = encoded(&owned);
        for size in 0..bytes.len() {
            let result = decode(&bytes[..size], FRAME_BODY_SIZE_MAX);
            prop_assert!(
                matches!(result, Err(FrameError::Truncated { .. })),
                "{} of {} bytes: {:?}", size, bytes.len(), result
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes, FRAME_BODY_SIZE_MAX);
        let mut decoder = StreamDecoder::new(256);
        let spare = decoder.spare();
        let count = bytes.len().min(spare.len());
        spare[..count].copy_from_slice(&bytes[..count]);
        decoder.filled(count);
        while let Ok(Some(_)) = decoder.next_frame() {}
    }

    #[test]
    fn stream_decoder_finds_frames_across_any_cuts(
        frames in proptest::collection::vec(owned(), 1..6),
        cuts in proptest::collection::vec(1usize..50, 1..20),
    ) {
        let mut stream = Vec::new();
        for owned in &frames {
            stream.extend_from_slice(&encoded(owned));
        }
        let mut decoder = StreamDecoder::new(1024);
        let mut found = Vec::new();
        let mut position = 0;
        let mut cut = 0;
        while position < stream.len() {
            let piece = cuts[cut % cuts.len()].min(stream.len() - position);
            cut += 1;
            let spare = decoder.spare();
            let piece = piece.min(spare.len());
            spare[..piece].copy_from_slice(&stream[position..position + piece]);
            decoder.filled(piece);
            position += piece;
            while let Some(frame) = decoder.next_frame().expect("valid stream") {
                found.push(encoded_frame(&frame));
            }
        }
        prop_assert_eq!(decoder.buffered_size(), 0);
        let expected: Vec<Vec<u8>> = frames.iter().map(encoded).collect();
        prop_assert_eq!(found, expected);
    }
}

fn encoded_frame(frame: &Frame<'_>) -> Vec<u8> {
    let mut buffer = vec![0u8; 2048];
    let size = encode(frame, &mut buffer).expect("a decoded frame encodes");
    buffer.truncate(size);
    buffer
}

#[test]
fn stream_decoder_stops_at_the_first_bad_frame() {
    let good = Owned {
        epoch: 2,
        kind: 2,
        a: 1,
        b: 5,
        c: 0,
        count: 1,
        bytes: Vec::new(),
    };
    let mut stream = encoded(&good);
    let mut bad = encoded(&good);
    bad[FRAME_HEADER_SIZE] ^= 0x10;
    stream.extend_from_slice(&bad);
    stream.extend_from_slice(&encoded(&good));
    let mut decoder = StreamDecoder::new(64);
    let mut reader = &stream[..];
    while decoder.read_from(&mut reader).expect("reading a slice") > 0 {}
    assert_eq!(decoder.next_frame(), Ok(Some(good.frame())));
    assert_eq!(decoder.next_frame(), Err(FrameError::ChecksumMismatch));
    assert_eq!(decoder.next_frame(), Err(FrameError::ChecksumMismatch));
}

#[test]
fn stream_decoder_refuses_a_body_over_its_limit() {
    let records = Owned {
        epoch: 2,
        kind: 1,
        a: 1,
        b: 0,
        c: 0,
        count: 1,
        bytes: vec![0; 256],
    };
    let mut decoder = StreamDecoder::new(128);
    let bytes = encoded(&records);
    let spare = decoder.spare();
    spare[..64].copy_from_slice(&bytes[..64]);
    decoder.filled(64);
    assert_eq!(
        decoder.next_frame(),
        Err(FrameError::BodyTooLarge {
            body_size: 16 + 256,
            body_size_max: 128
        })
    );
}

#[test]
fn encode_refuses_what_decode_would_refuse() {
    let mut buffer = [0u8; 512];
    let check = |message: Message<'_>, epoch: u64, expected: FrameError| {
        let mut buffer = [0u8; 512];
        assert_eq!(
            encode(&Frame { epoch, message }, &mut buffer),
            Err(expected)
        );
    };
    let one_record = [0u8; 128];
    check(
        Message::Records {
            first_sequence: 1,
            records_count: 2,
            records: &one_record,
        },
        1,
        FrameError::RecordsSizeInvalid,
    );
    check(
        Message::Records {
            first_sequence: 1,
            records_count: 1,
            records: &one_record[..100],
        },
        1,
        FrameError::RecordsSizeInvalid,
    );
    check(
        Message::Records {
            first_sequence: 0,
            records_count: 1,
            records: &one_record,
        },
        1,
        FrameError::FieldMustNotBeZero {
            field: "first_sequence",
        },
    );
    check(
        Message::Ack {
            durable_sequence: 1,
        },
        0,
        FrameError::EpochMustNotBeZero,
    );
    check(
        Message::CatchUpChunk {
            part: CatchUpPart::Store,
            offset: 0,
            bytes: &[],
        },
        1,
        FrameError::ChunkInvalid,
    );
    check(
        Message::CatchUp {
            checkpoint_sequence: 1,
            checkpoint_size: 1,
            segment: 0,
            segment_prefix_size: 1,
            flags: 4,
        },
        1,
        FrameError::FlagsUnknown,
    );
    check(
        Message::Hello {
            node_id: 0,
            durable_sequence: 0,
            durable_checksum: 0,
        },
        0,
        FrameError::FieldMustNotBeZero { field: "node_id" },
    );
    let hello = Message::Hello {
        node_id: 1,
        durable_sequence: 0,
        durable_checksum: 0,
    };
    assert_eq!(
        encode(
            &Frame {
                epoch: 0,
                message: hello
            },
            &mut buffer
        ),
        Ok(64)
    );
    assert_eq!(
        encode(
            &Frame {
                epoch: 0,
                message: hello
            },
            &mut buffer[..63]
        ),
        Err(FrameError::BufferTooSmall { frame_size: 64 })
    );
}
