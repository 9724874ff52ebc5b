//! The frame codec against docs/protocol.md: golden header bytes (checksums computed independently
//! from the CRC-32C definition), every frame status with its connection action, the order of
//! the checks, and decoding arbitrary bytes without panicking.

use clearline_engine::Operation;
use clearline_net::frame::RequestFlags;
use clearline_net::{
    check_reply_body, check_reply_header, check_request, check_request_header, checksum, Action,
    FrameStatus, Header, Rejection, ReplyInvalid, BODY_SIZE_MAX, HEADER_SIZE, MAGIC,
};
use proptest::prelude::*;

/// A create_transfers request: one event holding the bytes 0..128, request id 0x0807060504030201.
const GOLDEN_REQUEST: [u8; HEADER_SIZE] = [
    0x24, 0xDE, 0x4A, 0xD8, 0x15, 0xC5, 0xD9, 0x30, 0x43, 0x4C, 0x52, 0x31, 0x01, 0x00, 0x02, 0x00,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x80, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// A create_accounts reply: one result of sixteen 0xAB bytes, request id 7, timestamp
/// 0x1122334455667788, sequence 99.
const GOLDEN_REPLY: [u8; HEADER_SIZE] = [
    0x66, 0x4E, 0xC2, 0x0C, 0xC1, 0xB6, 0xAD, 0x70, 0x43, 0x4C, 0x52, 0x31, 0x01, 0x00, 0x01, 0x00,
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x63, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// A body_checksum_invalid reply to request 42 of create_transfers.
const GOLDEN_STATUS_REPLY: [u8; HEADER_SIZE] = [
    0xDD, 0x43, 0x37, 0x74, 0x00, 0x00, 0x00, 0x00, 0x43, 0x4C, 0x52, 0x31, 0x01, 0x00, 0x02, 0x07,
    0x2A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

fn golden_body() -> Vec<u8> {
    (0..128u8).collect()
}

#[test]
fn crc32c_check_value() {
    assert_eq!(checksum(b"123456789"), 0xE306_9283);
}

#[test]
fn request_header_golden_bytes() {
    let body = golden_body();
    let header = Header::request(Operation::CreateTransfers, 0x0807_0605_0403_0201, &body);
    assert_eq!(header.body_checksum, 0x30D9_C515);
    assert_eq!(header.header_checksum, 0xD84A_DE24);
    assert_eq!(header.encode(), GOLDEN_REQUEST);
    assert_eq!(Header::decode(&GOLDEN_REQUEST), header);
    let mut frame = GOLDEN_REQUEST.to_vec();
    frame.extend_from_slice(&body);
    let request = check_request(&frame).expect("the golden request is valid");
    assert_eq!(request.operation, Operation::CreateTransfers);
    assert_eq!(request.header.count, 1);
}

#[test]
fn reply_header_golden_bytes() {
    let body = [0xABu8; 16];
    let mut header = Header {
        operation: Operation::CreateAccounts as u8,
        request_id: 7,
        body_size: 16,
        count: 1,
        timestamp: 0x1122_3344_5566_7788,
        sequence: 99,
        ..Header::zeroed()
    };
    header.seal(&body);
    assert_eq!(header.encode(), GOLDEN_REPLY);
    assert_eq!(check_reply_header(&GOLDEN_REPLY), Ok(header));
    assert_eq!(check_reply_body(&header, &body), Ok(()));

    let mut status = Header {
        operation: Operation::CreateTransfers as u8,
        status: FrameStatus::BodyChecksumInvalid as u8,
        request_id: 42,
        ..Header::zeroed()
    };
    status.seal(&[]);
    assert_eq!(status.body_checksum, 0, "the checksum of no bytes is 0");
    assert_eq!(status.encode(), GOLDEN_STATUS_REPLY);
    assert!(check_reply_header(&GOLDEN_STATUS_REPLY).is_ok());
}

#[test]
fn status_names_follow_the_protocol() {
    let names = [
        "ok",
        "header_checksum_invalid",
        "magic_invalid",
        "version_unsupported",
        "header_reserved_not_zero",
        "operation_unknown",
        "body_size_invalid",
        "body_checksum_invalid",
        "storage_full",
        "shutting_down",
        "not_primary",
    ];
    assert_eq!(names.len(), FrameStatus::ALL.len());
    for (number, name) in names.iter().enumerate() {
        let status = FrameStatus::from_u8(number as u8).expect("statuses 0..=10 exist");
        assert_eq!(status as usize, number);
        assert_eq!(status.name(), *name);
        assert_eq!(status.to_string(), *name);
    }
    assert_eq!(FrameStatus::from_u8(11), None);
}

/// A valid frame of `count` events of `operation`, each byte `fill`.
fn frame(operation: Operation, count: usize) -> (Header, Vec<u8>) {
    let body = vec![0x5Au8; count * operation.event_size()];
    (Header::request(operation, 1, &body), body)
}

fn join(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Applies `change` to a valid frame's header, reseals the header checksum, and checks.
fn check_changed(change: impl Fn(&mut Header)) -> Result<Operation, Rejection> {
    let (mut header, body) = frame(Operation::CreateAccounts, 2);
    change(&mut header);
    header.seal_header();
    check_request(&join(&header, &body)).map(|request| request.operation)
}

fn rejected(status: FrameStatus, action: Action) -> Result<Operation, Rejection> {
    Err(Rejection { status, action })
}

#[test]
fn every_request_status_with_its_action() {
    use Action::{Close, Keep};
    // 0 ok, for every client operation at its smallest and largest count.
    for operation in Operation::ALL
        .into_iter()
        .filter(|o| o.is_client_operation())
    {
        let (events_min, events_max) = operation.events_range();
        for count in [events_min, events_max] {
            let (header, body) = frame(operation, count as usize);
            assert_eq!(
                check_request(&join(&header, &body)).map(|r| r.operation),
                Ok(operation)
            );
        }
    }
    // 1: a flipped bit anywhere in bytes 4..64 (the checksum is not recomputed).
    let (header, body) = frame(Operation::CreateAccounts, 2);
    for byte in 4..HEADER_SIZE {
        let mut bytes = join(&header, &body);
        bytes[byte] ^= 0x10;
        let status = check_request(&bytes).map(|r| r.operation);
        assert_eq!(
            status,
            rejected(FrameStatus::HeaderChecksumInvalid, Close),
            "byte {byte}"
        );
    }
    // 2 and 3.
    assert_eq!(
        check_changed(|h| h.magic = 0x3152_4C44),
        rejected(FrameStatus::MagicInvalid, Close)
    );
    assert_eq!(
        check_changed(|h| h.version = 2),
        rejected(FrameStatus::VersionUnsupported, Close)
    );
    assert_eq!(
        check_changed(|h| h.version = 0),
        rejected(FrameStatus::VersionUnsupported, Close)
    );
    // 4: every reserved byte, every request flag bit with no meaning, and the fields that must
    // be zero in requests. Bytes 62..64 (reserved 14..16) are the flags; bit 0 has a meaning.
    let reserved_not_zero = rejected(FrameStatus::HeaderReservedNotZero, Close);
    for index in 0..14 {
        assert_eq!(check_changed(|h| h.reserved[index] = 1), reserved_not_zero);
    }
    for bit in 1..16 {
        let flags = RequestFlags::from_bits(1 << bit);
        assert_eq!(
            check_changed(|h| h.set_request_flags(flags)),
            reserved_not_zero,
            "flag bit {bit}"
        );
    }
    assert_eq!(check_changed(|h| h.reserved[15] = 0x80), reserved_not_zero);
    assert_eq!(
        check_changed(|h| h.set_request_flags(RequestFlags::READ_FROM_BACKUP)),
        Ok(Operation::CreateAccounts)
    );
    assert_eq!(check_changed(|h| h.status = 1), reserved_not_zero);
    assert_eq!(check_changed(|h| h.timestamp = 1), reserved_not_zero);
    assert_eq!(check_changed(|h| h.sequence = u64::MAX), reserved_not_zero);
    // 5: numbers with no operation, and the internal pulse.
    for operation in [0u8, 9, 15, 24, 127, 128, 255] {
        assert_eq!(
            check_changed(|h| h.operation = operation),
            rejected(FrameStatus::OperationUnknown, Keep),
            "operation {operation}"
        );
    }
    // 6: over the maximum closes; a count that does not match is kept.
    let size_over = rejected(FrameStatus::BodySizeInvalid, Close);
    assert_eq!(
        check_changed(|h| h.body_size = BODY_SIZE_MAX as u32 + 1),
        size_over
    );
    assert_eq!(check_changed(|h| h.body_size = u32::MAX), size_over);
    let size_wrong = rejected(FrameStatus::BodySizeInvalid, Keep);
    assert_eq!(check_changed(|h| h.count = 0), size_wrong);
    assert_eq!(check_changed(|h| h.count = 3), size_wrong);
    assert_eq!(check_changed(|h| h.count = u32::MAX), size_wrong);
    assert_eq!(check_changed(|h| h.body_size = 255), size_wrong);
    let (mut header, body) = frame(Operation::GetBook, 2);
    header.seal(&body);
    assert_eq!(
        check_request(&join(&header, &body)).map(|r| r.operation),
        size_wrong
    );
    // 7.
    let (header, mut body) = frame(Operation::CreateAccounts, 2);
    body[200] ^= 1;
    let status = check_request(&join(&header, &body)).map(|r| r.operation);
    assert_eq!(status, rejected(FrameStatus::BodyChecksumInvalid, Keep));
}

#[test]
fn checks_run_in_protocol_order() {
    use Action::{Close, Keep};
    let everything_wrong = |h: &mut Header| {
        h.magic = 1;
        h.version = 9;
        h.reserved[0] = 1;
        h.operation = 200;
        h.count = 0;
    };
    // Each row fixes one more field and names the check that fails next.
    type Fix = fn(&mut Header);
    let fixes: [(Fix, FrameStatus, Action); 4] = [
        (|_| {}, FrameStatus::MagicInvalid, Close),
        (|h| h.magic = MAGIC, FrameStatus::VersionUnsupported, Close),
        (|h| h.version = 1, FrameStatus::HeaderReservedNotZero, Close),
        (|h| h.reserved[0] = 0, FrameStatus::OperationUnknown, Keep),
    ];
    for (step, &(_, status, action)) in fixes.iter().enumerate() {
        let changed = check_changed(|h| {
            everything_wrong(h);
            for (fix, _, _) in &fixes[..=step] {
                fix(h);
            }
        });
        assert_eq!(changed, rejected(status, action), "after {step} fixes");
    }
    // A body checksum is not looked at when the size is wrong.
    assert_eq!(
        check_changed(|h| {
            h.count = 1;
            h.body_checksum ^= 1;
        }),
        rejected(FrameStatus::BodySizeInvalid, Keep)
    );
    // An unknown operation whose body is over the maximum cannot be skipped: closed.
    assert_eq!(
        check_changed(|h| {
            h.operation = 99;
            h.body_size = u32::MAX;
        }),
        rejected(FrameStatus::OperationUnknown, Close)
    );
}

#[test]
fn request_header_alone_leaves_the_body_checksum_for_later() {
    let (mut header, _) = frame(Operation::LookupAccounts, 4);
    header.body_checksum ^= 0xFFFF;
    header.seal_header();
    let request = check_request_header(&header.encode()).expect("header checks pass");
    assert_eq!(request.header.count, 4);
}

#[test]
fn reply_checks() {
    let seal = |mut header: Header, body: &[u8]| {
        header.seal(body);
        header.encode()
    };
    let ok = Header {
        operation: 3,
        count: 2,
        body_size: 256,
        ..Header::zeroed()
    };
    assert!(check_reply_header(&seal(ok, &[0u8; 256])).is_ok());
    let mismatch = Header {
        body_size: 255,
        ..ok
    };
    assert_eq!(
        check_reply_header(&seal(mismatch, &[])),
        Err(ReplyInvalid::BodySizeInvalid)
    );
    for status in [8u8, 9] {
        let refused = Header {
            status,
            ..Header::zeroed()
        };
        assert!(
            check_reply_header(&seal(refused, &[])).is_ok(),
            "status {status}"
        );
        let with_body = Header {
            status,
            count: 1,
            body_size: 16,
            ..refused
        };
        let result = check_reply_header(&seal(with_body, &[0u8; 16]));
        assert_eq!(result, Err(ReplyInvalid::BodySizeInvalid));
    }
    // An unknown status, and the pulse (not a client operation).
    let refusals = [
        (
            Header {
                status: 11,
                ..Header::zeroed()
            },
            ReplyInvalid::StatusUnknown(11),
        ),
        (
            Header {
                operation: 128,
                ..Header::zeroed()
            },
            ReplyInvalid::OperationUnknown(128),
        ),
    ];
    for (header, refusal) in refusals {
        assert_eq!(check_reply_header(&seal(header, &[])), Err(refusal));
    }
    let mut flipped = seal(ok, &[0u8; 256]);
    flipped[20] ^= 1;
    let result = check_reply_header(&flipped);
    assert_eq!(
        result,
        Err(ReplyInvalid::Header(FrameStatus::HeaderChecksumInvalid))
    );
    let header = check_reply_header(&seal(ok, &[0u8; 256])).expect("valid");
    let result = check_reply_body(&header, &[1u8; 256]);
    assert_eq!(result, Err(ReplyInvalid::BodyChecksumInvalid));
}

proptest! {
    // A fixed seed keeps the run deterministic; proptest prints the failing input.
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0C1E_A711),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = check_request(&bytes);
        if let Some(header) = bytes.first_chunk::<HEADER_SIZE>() {
            let _ = check_request_header(header);
            let _ = check_reply_header(header);
            prop_assert_eq!(&Header::decode(header).encode(), header);
        }
    }

    #[test]
    fn arbitrary_sealed_headers_never_panic(
        bytes in proptest::array::uniform32(any::<u8>()),
        more in proptest::array::uniform32(any::<u8>()),
        operation in any::<u8>(),
        small in any::<bool>(),
    ) {
        // Reseal so the checks past the header checksum are reached.
        let mut raw = [0u8; HEADER_SIZE];
        raw[..32].copy_from_slice(&bytes);
        raw[32..].copy_from_slice(&more);
        let mut header = Header::decode(&raw);
        header.magic = MAGIC;
        header.version = 1;
        header.operation = operation;
        if small {
            header.status = 0;
            header.timestamp = 0;
            header.sequence = 0;
            header.reserved = [0; 16];
            header.count %= 16;
            header.body_size %= 2048;
        }
        header.seal_header();
        let encoded = header.encode();
        if let Ok(request) = check_request_header(&encoded) {
            let size = u64::from(request.header.count) * request.operation.event_size() as u64;
            prop_assert_eq!(size, u64::from(request.header.body_size));
            prop_assert!(request.operation.is_client_operation());
        }
        let _ = check_reply_header(&encoded);
    }
}
