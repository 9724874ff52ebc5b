//! Bad input against the real binary (docs/durability.md rows 6 and 7, docs/protocol.md section
//! 4): random bytes, every bad header field, wrong sizes and counts, bad body checksums and
//! disconnects in the middle of a frame. Each gets its status or a close, nothing bad is
//! applied, the server never exits, and a well-behaved client on another connection is served
//! after every case.

use std::io::Write;
use std::net::TcpStream;

use clearline_engine::{CreateAccountStatus, Operation};
use clearline_net::{Client, FrameStatus, Header, BODY_SIZE_MAX, HEADER_SIZE};

use crate::support::{
    account, accounts, assert_served, bytes_of, closed_within, connect, data_dir, encode_accounts,
    encode_ids, expect_status, expect_status_then_close, finish, frame, raw, read_reply,
    request_ok, reset_after_reply, results, seed, write_all_or_closed, Options, Rng, Seen, Server,
    LEDGER, SOCKET_TIMEOUT,
};

/// The account the well-behaved client looks up.
const HEALTHY_ACCOUNT: u128 = 1;
/// The request id of every bad frame.
const BAD_ID: u64 = 42;

/// A running server and a well-behaved client on its own connection.
struct Fixture {
    server: Server,
    healthy: Client,
    _data: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        let data = data_dir();
        let server = Server::start(data.path(), &Options::new("none"));
        let mut healthy = server.client();
        let reply = request_ok(
            &mut healthy,
            Operation::CreateAccounts,
            &encode_accounts(&[account(HEALTHY_ACCOUNT, LEDGER, 0)]),
        );
        assert_eq!(
            results(&reply.body)[0].status,
            CreateAccountStatus::Created as u32
        );
        Fixture {
            server,
            healthy,
            _data: data,
        }
    }

    /// After each case: the server runs and the well-behaved client is served.
    fn check(&mut self, case: &str) {
        self.server.assert_running(case);
        assert_served(&mut self.healthy, HEALTHY_ACCOUNT, case);
    }

    fn raw(&self) -> TcpStream {
        raw(self.server.addr, SOCKET_TIMEOUT)
    }

    /// Whether account `id` exists, asked by the well-behaved client.
    fn account_exists(&mut self, id: u128) -> bool {
        let reply = request_ok(
            &mut self.healthy,
            Operation::LookupAccounts,
            &encode_ids(&[id]),
        );
        !accounts(&reply.body).is_empty()
    }
}

/// A valid request whose reply proves a kept connection still works.
fn probe_frame(request_id: u64) -> Vec<u8> {
    frame(
        Operation::LookupAccounts,
        request_id,
        &encode_ids(&[HEALTHY_ACCOUNT]),
    )
}

/// Sends the probe on `stream` and expects its ok reply.
fn expect_kept(stream: &mut TcpStream, case: &str) {
    stream.write_all(&probe_frame(7)).expect("send the probe");
    match read_reply(stream) {
        Seen::Reply(header) => {
            assert_eq!(header.status, FrameStatus::Ok as u8, "{case}: probe status");
            assert_eq!(header.request_id, 7, "{case}: probe request id");
            assert_eq!(header.count, 1, "{case}: probe found the account");
        }
        other => panic!("{case}: the kept connection did not answer the probe: {other:?}"),
    }
}

/// A case of a spoiled header field: its name, how to spoil it, and the status it gets.
type HeaderCase = (&'static str, fn(&mut Header), FrameStatus);

/// A lookup request header for one id, sealed, for the header-field cases to spoil.
fn lookup_header() -> (Header, Vec<u8>) {
    let body = encode_ids(&[HEALTHY_ACCOUNT]);
    (
        Header::request(Operation::LookupAccounts, BAD_ID, &body),
        body,
    )
}

#[test]
fn bad_header_fields_get_their_status_and_close() {
    let mut fixture = Fixture::start();

    // A wrong header checksum: the framing can't be trusted. docs/protocol.md lets the server send
    // the error first when it can, or close silently. Either is fine, but
    // nothing after it on the connection may be served.
    let (mut header, body) = lookup_header();
    header.header_checksum ^= 1;
    let mut stream = fixture.raw();
    let mut bytes = bytes_of(&header, &body);
    bytes.extend_from_slice(&probe_frame(8));
    write_all_or_closed(&mut stream, &bytes);
    match read_reply(&mut stream) {
        Seen::Closed => {}
        Seen::Reply(reply) => {
            assert_eq!(reply.status, FrameStatus::HeaderChecksumInvalid as u8);
            assert!(
                closed_within(&mut stream, SOCKET_TIMEOUT),
                "closed after the reply"
            );
        }
        other => panic!("header checksum: expected a close, saw {other:?}"),
    }
    fixture.check("header checksum");

    // Checked in order: magic, version, reserved bytes (and the request fields that must be
    // zero: status, timestamp, sequence). Each is resealed so only that field is wrong.
    let cases: [HeaderCase; 10] = [
        ("magic", |h| h.magic ^= 0x100, FrameStatus::MagicInvalid),
        (
            "version 0",
            |h| h.version = 0,
            FrameStatus::VersionUnsupported,
        ),
        (
            "version 2",
            |h| h.version = 2,
            FrameStatus::VersionUnsupported,
        ),
        (
            "reserved first byte",
            |h| h.reserved[0] = 1,
            FrameStatus::HeaderReservedNotZero,
        ),
        (
            "reserved last byte",
            |h| h.reserved[15] = 0x80,
            FrameStatus::HeaderReservedNotZero,
        ),
        (
            "request status",
            |h| h.status = 1,
            FrameStatus::HeaderReservedNotZero,
        ),
        (
            "request timestamp",
            |h| h.timestamp = 1,
            FrameStatus::HeaderReservedNotZero,
        ),
        (
            "request sequence",
            |h| h.sequence = u64::MAX,
            FrameStatus::HeaderReservedNotZero,
        ),
        (
            "magic before version",
            |h| {
                h.magic = 0;
                h.version = 9;
            },
            FrameStatus::MagicInvalid,
        ),
        (
            "version before reserved",
            |h| {
                h.version = 9;
                h.reserved[3] = 1;
            },
            FrameStatus::VersionUnsupported,
        ),
    ];
    for (case, spoil, status) in cases {
        let (mut header, body) = lookup_header();
        spoil(&mut header);
        header.seal_header();
        let mut stream = fixture.raw();
        stream.write_all(&bytes_of(&header, &body)).expect("send");
        expect_status_then_close(&mut stream, status, BAD_ID, case);
        fixture.check(case);
    }

    // A closed connection serves nothing sent after the bad frame: the account in the valid
    // frame behind a bad magic is never created.
    let (mut header, body) = lookup_header();
    header.magic = 0;
    header.seal_header();
    let mut bytes = bytes_of(&header, &body);
    bytes.extend(frame(
        Operation::CreateAccounts,
        9,
        &encode_accounts(&[account(51, LEDGER, 0)]),
    ));
    let mut stream = fixture.raw();
    write_all_or_closed(&mut stream, &bytes);
    match read_reply(&mut stream) {
        Seen::Closed => {}
        Seen::Reply(reply) => assert_eq!(reply.status, FrameStatus::MagicInvalid as u8),
        other => panic!("bad magic then valid frame: saw {other:?}"),
    }
    assert!(
        closed_within(&mut stream, SOCKET_TIMEOUT),
        "closed after bad magic"
    );
    assert!(
        !fixture.account_exists(51),
        "a frame after a fatal error is not applied"
    );
    fixture.check("bad magic then a valid frame");

    fixture.server.terminate_ok();
}

#[test]
fn bad_operations_sizes_and_checksums_get_their_status() {
    let mut fixture = Fixture::start();

    // Unknown operations, the internal pulse (128) among them: status 5, connection kept, the
    // body skipped.
    for operation in [0u8, 9, 15, 24, 127, 128, 129, 255] {
        let case = format!("operation {operation}");
        let body = [0xA5u8; 16];
        let mut header = Header {
            operation,
            request_id: BAD_ID,
            body_size: 16,
            count: 1,
            ..Header::zeroed()
        };
        header.seal(&body);
        let mut stream = fixture.raw();
        stream.write_all(&bytes_of(&header, &body)).expect("send");
        expect_status(&mut stream, FrameStatus::OperationUnknown, BAD_ID, &case);
        expect_kept(&mut stream, &case);
        fixture.check(&case);
    }
    // An unknown operation with a body over the maximum cannot be skipped: closed.
    let mut header = Header {
        operation: 128,
        request_id: BAD_ID,
        body_size: u32::try_from(BODY_SIZE_MAX + 1).expect("fits"),
        ..Header::zeroed()
    };
    header.seal_header();
    let mut stream = fixture.raw();
    stream.write_all(&header.encode()).expect("send");
    expect_status_then_close(
        &mut stream,
        FrameStatus::OperationUnknown,
        BAD_ID,
        "pulse huge",
    );
    fixture.check("unknown operation with a huge body");

    // Body size over the maximum: status 6 and closed (the body is never read).
    for (case, count, body_size) in [
        ("8192 accounts", 8_192u32, 8_192u32 * 128),
        ("body size u32::MAX", 1, u32::MAX),
        (
            "one byte over",
            1,
            u32::try_from(BODY_SIZE_MAX + 1).expect("fits"),
        ),
    ] {
        let mut header = Header {
            operation: Operation::CreateAccounts as u8,
            request_id: BAD_ID,
            body_size,
            count,
            ..Header::zeroed()
        };
        header.seal_header();
        let mut stream = fixture.raw();
        stream.write_all(&header.encode()).expect("send");
        expect_status_then_close(&mut stream, FrameStatus::BodySizeInvalid, BAD_ID, case);
        fixture.check(case);
    }

    // Sizes within the maximum that do not fit the operation: status 6, kept, body skipped.
    let kept_cases: [(&str, Operation, u32, usize); 9] = [
        ("body not count x size", Operation::LookupAccounts, 1, 17),
        ("count 0", Operation::LookupAccounts, 0, 0),
        ("count 0 with a body", Operation::CreateAccounts, 0, 128),
        ("count 8192", Operation::LookupAccounts, 8_192, 8_192 * 16),
        ("query count 2", Operation::QueryAccounts, 2, 128),
        ("filter count 0", Operation::GetAccountTransfers, 0, 0),
        ("get_state count 2", Operation::GetState, 2, 32),
        ("get_state event of 15 bytes", Operation::GetState, 1, 15),
        ("get_state count 0", Operation::GetState, 0, 0),
    ];
    for (case, operation, count, body_size) in kept_cases {
        let body = vec![0u8; body_size];
        let mut header = Header {
            operation: operation as u8,
            request_id: BAD_ID,
            body_size: u32::try_from(body_size).expect("fits"),
            count,
            ..Header::zeroed()
        };
        header.seal(&body);
        let mut stream = fixture.raw();
        stream.write_all(&bytes_of(&header, &body)).expect("send");
        expect_status(&mut stream, FrameStatus::BodySizeInvalid, BAD_ID, case);
        expect_kept(&mut stream, case);
        fixture.check(case);
    }

    // A bad body checksum: status 7, kept, and the write is not applied.
    let body = encode_accounts(&[account(50, LEDGER, 0)]);
    let mut header = Header::request(Operation::CreateAccounts, BAD_ID, &body);
    header.body_checksum ^= 0x8000_0000;
    header.seal_header();
    let mut stream = fixture.raw();
    stream.write_all(&bytes_of(&header, &body)).expect("send");
    expect_status(
        &mut stream,
        FrameStatus::BodyChecksumInvalid,
        BAD_ID,
        "body checksum",
    );
    expect_kept(&mut stream, "body checksum");
    assert!(
        !fixture.account_exists(50),
        "a body with a bad checksum is not applied"
    );
    // A body byte flipped under a correct header checksum: the same.
    let mut header = Header::request(Operation::CreateAccounts, BAD_ID, &body);
    header.seal(&body);
    let mut spoiled = body.clone();
    spoiled[0] ^= 1;
    stream
        .write_all(&bytes_of(&header, &spoiled))
        .expect("send");
    expect_status(
        &mut stream,
        FrameStatus::BodyChecksumInvalid,
        BAD_ID,
        "body bit flip",
    );
    expect_kept(&mut stream, "body bit flip");
    assert!(!fixture.account_exists(50) && !fixture.account_exists(51));
    fixture.check("body checksum");

    fixture.server.terminate_ok();
}

#[test]
fn random_bytes_close_the_connection_and_nothing_else() {
    let (seed, _guard) = seed(
        "bad_input::random_bytes_close_the_connection_and_nothing_else",
        11,
    );
    let mut rng = Rng::new(seed);
    let mut fixture = Fixture::start();
    for trial in 0..40 {
        let case = format!("random bytes trial {trial}");
        let mut stream = fixture.raw();
        let valid_first = rng.below(2) == 0;
        let mut bytes = if valid_first {
            probe_frame(3)
        } else {
            Vec::new()
        };
        let mut noise = vec![0u8; rng.range(1, 4_000) as usize];
        rng.fill(&mut noise);
        if rng.below(4) == 0 && noise.len() >= HEADER_SIZE {
            // A header with a valid checksum over random fields, so later checks run too.
            let mut header_bytes = [0u8; HEADER_SIZE];
            header_bytes.copy_from_slice(&noise[..HEADER_SIZE]);
            let mut header = Header::decode(&header_bytes);
            if rng.below(2) == 0 {
                // Past the fatal checks: random operation, count and size only.
                header = Header {
                    operation: header.operation % 10,
                    request_id: header.request_id,
                    count: header.count % 4,
                    body_size: header.body_size % 600,
                    ..Header::zeroed()
                };
            }
            header.seal_header();
            noise[..HEADER_SIZE].copy_from_slice(&header.encode());
        }
        bytes.extend_from_slice(&noise);
        let all_written = write_all_or_closed(&mut stream, &bytes);
        if all_written {
            finish(&stream);
        }
        if valid_first {
            match read_reply(&mut stream) {
                Seen::Reply(header) => {
                    assert_eq!(header.status, FrameStatus::Ok as u8, "{case}: valid frame");
                    assert_eq!(header.request_id, 3, "{case}: valid frame id");
                }
                // The reset of the close may overtake the reply; the frame was still valid.
                Seen::Closed => {}
                other => panic!("{case}: the valid frame got {other:?}"),
            }
        }
        loop {
            match read_reply(&mut stream) {
                Seen::Closed => break,
                Seen::Reply(header) => assert_ne!(
                    header.status,
                    FrameStatus::Ok as u8,
                    "{case}: random bytes were accepted as a request"
                ),
                other => panic!("{case}: expected error replies and a close, saw {other:?}"),
            }
        }
        fixture.check(&case);
    }
}

#[test]
fn disconnects_mid_frame_have_no_effect() {
    let mut fixture = Fixture::start();
    let create = |id: u128| {
        frame(
            Operation::CreateAccounts,
            BAD_ID,
            &encode_accounts(&[account(id, LEDGER, 0)]),
        )
    };

    // FIN in the middle of a header, then in the middle of a body.
    for (case, id, cut) in [
        ("FIN mid-header", 60u128, 30usize),
        ("FIN mid-body", 61, 64 + 64),
    ] {
        let mut stream = fixture.raw();
        stream
            .write_all(&create(id)[..cut])
            .expect("send part of a frame");
        finish(&stream);
        assert!(closed_within(&mut stream, SOCKET_TIMEOUT), "{case}: closed");
        assert!(
            !fixture.account_exists(id),
            "{case}: a partial frame has no effect"
        );
        fixture.check(case);
    }

    // RST in the middle of a header, then in the middle of a body.
    for (case, id, cut) in [
        ("RST mid-header", 62u128, 30usize),
        ("RST mid-body", 63, 64 + 100),
    ] {
        let mut stream = fixture.raw();
        stream.write_all(&probe_frame(5)).expect("send the probe");
        stream
            .write_all(&create(id)[..cut])
            .expect("send part of a frame");
        reset_after_reply(stream);
        assert!(
            !fixture.account_exists(id),
            "{case}: a partial frame has no effect"
        );
        fixture.check(case);
    }

    // A whole request, then a close before the reply: it applies once, and a retry on a new
    // connection gets `exists`.
    let mut stream = fixture.raw();
    stream.write_all(&create(64)).expect("send a whole frame");
    drop(stream);
    crate::support::wait_until(SOCKET_TIMEOUT, "the abandoned request to apply", || {
        fixture.account_exists(64)
    });
    let mut retry = connect(fixture.server.addr);
    let reply = request_ok(
        &mut retry,
        Operation::CreateAccounts,
        &encode_accounts(&[account(64, LEDGER, 0)]),
    );
    assert_eq!(
        results(&reply.body)[0].status,
        CreateAccountStatus::Exists as u32
    );
    fixture.check("close after a whole request");

    fixture.server.terminate_ok();
}
