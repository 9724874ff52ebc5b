//! The server over loopback with a fake core: round trips, pipelining and reply order, frame
//! errors answered with the right status and close, replies held until durable, status replies
//! from the core, and shutdown.

mod support;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clearline_engine::Operation;
use clearline_net::{ClientError, FrameStatus, Header, BODY_SIZE_MAX, HEADER_SIZE};
use clearline_test_support::Rng;
use support::{
    assert_closed, assert_ok, client, frame_bytes, lookup_served, raw, read_reply, send_lossy,
    Harness,
};

#[test]
fn round_trip_of_every_operation() {
    let harness = Harness::start();
    let mut client = client(harness.addr);
    for operation in Operation::ALL
        .into_iter()
        .filter(|o| o.is_client_operation())
    {
        let (_, events_max) = operation.events_range();
        let count = events_max.min(3) as usize;
        let body = vec![7u8; count * operation.event_size()];
        let reply = client.request(operation, &body).expect("a reply");
        assert_eq!(reply.status(), FrameStatus::Ok, "{}", operation.name());
        assert_eq!(reply.header.operation, operation as u8);
        assert_eq!(reply.count() as usize, count);
        assert_eq!(reply.body.len(), count * operation.reply_item_size());
        assert_eq!(
            reply.timestamp(),
            reply.request_id(),
            "the fake core's timestamp"
        );
    }
    let client_operations = Operation::ALL
        .into_iter()
        .filter(|o| o.is_client_operation())
        .count();
    assert_eq!(
        harness.control.popped.load(Ordering::Relaxed),
        client_operations as u64
    );
}

#[test]
fn largest_frame_round_trip() {
    let harness = Harness::start();
    let mut client = client(harness.addr);
    let body = vec![0xA5u8; BODY_SIZE_MAX - 64]; // 8,191 events of 128 bytes.
    let reply = client
        .request(Operation::CreateTransfers, &body)
        .expect("a reply");
    assert_eq!(reply.count(), 8191);
    assert_eq!(reply.body.len(), 8191 * 16);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let harness = Harness::start();
    let mut client = client(harness.addr);
    let operations = [
        Operation::CreateAccounts,
        Operation::LookupAccounts,
        Operation::GetBook,
    ];
    let mut ids = Vec::new();
    for round in 0..100 {
        for index in 0..16 {
            let operation = operations[(round + index) % operations.len()];
            let count = if operation == Operation::GetBook {
                1
            } else {
                1 + index
            };
            let body = vec![1u8; count * operation.event_size()];
            ids.push((client.send(operation, &body).expect("sends"), count));
        }
        for (id, count) in ids.drain(..) {
            let reply = client.receive().expect("a reply in order");
            assert_eq!(reply.request_id(), id);
            assert_eq!(reply.count() as usize, count);
            assert!(reply.body.iter().all(|byte| *byte == id as u8));
        }
    }
}

#[test]
fn more_requests_than_in_flight_max_are_read_after_replies_leave() {
    let mut config = support::config();
    config.requests_in_flight_max = 16;
    let harness = Harness::with(config);
    let mut client = client(harness.addr);
    // 200 requests without reading: the server stops at 16 in flight and goes on as the small
    // replies drain into the client's socket buffer.
    let ids: Vec<u64> = (0..200)
        .map(|_| {
            client
                .send(Operation::LookupTransfers, &[3u8; 32])
                .expect("sends")
        })
        .collect();
    for id in ids {
        assert_eq!(client.receive().expect("a reply").request_id(), id);
    }
}

/// A frame the server rejects, and what it must do.
struct Bad {
    name: &'static str,
    bytes: Vec<u8>,
    status: FrameStatus,
    closes: bool,
}

fn bad_frames() -> Vec<Bad> {
    let body = vec![9u8; 2 * 128];
    let good = Header::request(Operation::CreateAccounts, 77, &body);
    let changed = |change: &dyn Fn(&mut Header)| {
        let mut header = good;
        change(&mut header);
        header.seal_header();
        frame_bytes(&header, &body)
    };
    let mut flipped = frame_bytes(&good, &body);
    flipped[60] ^= 0x40; // A reserved byte: the request id stays readable.
    let mut body_flipped = frame_bytes(&good, &body);
    body_flipped[HEADER_SIZE + 5] ^= 1;
    let mut oversize = good;
    oversize.body_size = BODY_SIZE_MAX as u32 + 128;
    oversize.count = oversize.body_size / 128;
    oversize.seal_header();
    vec![
        Bad {
            name: "header checksum",
            bytes: flipped,
            status: FrameStatus::HeaderChecksumInvalid,
            closes: true,
        },
        Bad {
            name: "magic",
            bytes: changed(&|h| h.magic = 0),
            status: FrameStatus::MagicInvalid,
            closes: true,
        },
        Bad {
            name: "version",
            bytes: changed(&|h| h.version = 2),
            status: FrameStatus::VersionUnsupported,
            closes: true,
        },
        Bad {
            name: "reserved",
            bytes: changed(&|h| h.reserved[15] = 1),
            status: FrameStatus::HeaderReservedNotZero,
            closes: true,
        },
        Bad {
            name: "request status",
            bytes: changed(&|h| h.status = 3),
            status: FrameStatus::HeaderReservedNotZero,
            closes: true,
        },
        Bad {
            name: "unknown operation",
            bytes: changed(&|h| h.operation = 99),
            status: FrameStatus::OperationUnknown,
            closes: false,
        },
        Bad {
            name: "pulse",
            bytes: changed(&|h| h.operation = 128),
            status: FrameStatus::OperationUnknown,
            closes: false,
        },
        Bad {
            name: "body over maximum",
            bytes: frame_bytes(&oversize, &[]),
            status: FrameStatus::BodySizeInvalid,
            closes: true,
        },
        Bad {
            name: "count mismatch",
            bytes: changed(&|h| h.count = 3),
            status: FrameStatus::BodySizeInvalid,
            closes: false,
        },
        Bad {
            name: "count zero",
            bytes: changed(&|h| h.count = 0),
            status: FrameStatus::BodySizeInvalid,
            closes: false,
        },
        Bad {
            name: "body checksum",
            bytes: body_flipped,
            status: FrameStatus::BodyChecksumInvalid,
            closes: false,
        },
    ]
}

#[test]
fn bad_frames_get_their_status_while_another_connection_is_served() {
    let harness = Harness::start();
    let mut good_client = client(harness.addr);
    for bad in bad_frames() {
        let mut stream = raw(harness.addr);
        send_lossy(&mut stream, &bad.bytes);
        let (header, body) = read_reply(&mut stream).expect(bad.name);
        assert_eq!(
            FrameStatus::from_u8(header.status),
            Some(bad.status),
            "{}",
            bad.name
        );
        assert_eq!(header.request_id, 77, "{}", bad.name);
        assert!(body.is_empty());
        if bad.closes {
            assert_closed(&mut stream);
        } else {
            // The framing survived: the next frame on the same connection is served.
            let body = [4u8; 16];
            let next = Header::request(Operation::LookupAccounts, 78, &body);
            stream.write_all(&frame_bytes(&next, &body)).expect("sends");
            let (header, _) = read_reply(&mut stream).expect("the next reply");
            assert_eq!(
                (header.request_id, header.status),
                (78, 0),
                "after {}",
                bad.name
            );
        }
        lookup_served(&mut good_client);
    }
    assert_eq!(
        harness.control.popped.load(Ordering::Relaxed) as usize,
        11 + 5
    );
    assert_eq!(harness.stats().frames_rejected, 11);
}

#[test]
fn random_bytes_never_stop_the_server() {
    let harness = Harness::start();
    let mut good_client = client(harness.addr);
    // A fixed seed: deterministic garbage.
    let mut rng = Rng::new(0x6A2B_A6E5);
    for round in 0..50 {
        let mut bytes = vec![0u8; 64 + round * 13];
        rng.fill(&mut bytes);
        let mut stream = raw(harness.addr);
        send_lossy(&mut stream, &bytes);
        // Garbage fails the header checksum: a status 1 reply (sent when possible), then close.
        if let Ok((header, _)) = read_reply(&mut stream) {
            assert_eq!(
                header.status,
                FrameStatus::HeaderChecksumInvalid as u8,
                "round {round}"
            );
        }
        assert_closed(&mut stream);
        assert_ok(&mut good_client, Operation::LookupOrders, &[2u8; 16]);
    }
}

#[test]
fn status_replies_keep_request_order() {
    let harness = Harness::start();
    let mut client = client(harness.addr);
    let first = client
        .send(Operation::CreateAccounts, &[1u8; 128])
        .expect("sends");
    let mut bad = Header::request(Operation::CreateAccounts, 500, &[1u8; 128]);
    bad.body_checksum ^= 1;
    bad.seal_header();
    client.send_frame(&bad, &[1u8; 128]).expect("sends");
    let third = client
        .send(Operation::CreateAccounts, &[1u8; 128])
        .expect("sends");
    assert_eq!(client.receive().expect("first").request_id(), first);
    let status = client.receive().expect("second");
    assert_eq!(
        (status.request_id(), status.status()),
        (500, FrameStatus::BodyChecksumInvalid)
    );
    assert_eq!(client.receive().expect("third").request_id(), third);
}

#[test]
fn replies_wait_until_durable_covers_their_gate() {
    let harness = Harness::start();
    harness.control.gate.store(5, Ordering::Release);
    let mut client = client(harness.addr);
    let first = client
        .send(Operation::CreateTransfers, &[1u8; 128])
        .expect("sends");
    // A status reply behind a held reply is held too (request order).
    let mut bad = Header::request(Operation::CreateTransfers, 900, &[1u8; 128]);
    bad.count = 2;
    bad.seal_header();
    client.send_frame(&bad, &[1u8; 128]).expect("sends");
    support::wait_until("the core to take the request", || {
        harness.control.popped.load(Ordering::Relaxed) == 1
    });
    client
        .set_timeout(Some(Duration::from_millis(100)))
        .expect("sets a timeout");
    match client.receive() {
        Err(ClientError::Io(error)) => assert!(matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        other => panic!("a reply left before it was durable: {other:?}"),
    }
    harness.make_durable(4);
    client
        .set_timeout(Some(Duration::from_millis(100)))
        .expect("sets a timeout");
    assert!(client.receive().is_err(), "durable 4 does not cover gate 5");
    harness.make_durable(5);
    client
        .set_timeout(Some(support::SOCKET_TIMEOUT))
        .expect("sets a timeout");
    let reply = client.receive().expect("released at durable 5");
    assert_eq!((reply.request_id(), reply.sequence()), (first, 5));
    let status = client.receive().expect("the status reply follows");
    assert_eq!(
        (status.request_id(), status.status()),
        (900, FrameStatus::BodySizeInvalid)
    );
}

#[test]
fn storage_full_from_the_core_has_an_empty_body_and_keeps_the_connection() {
    let harness = Harness::start();
    harness
        .control
        .status
        .store(FrameStatus::StorageFull as u8, Ordering::Release);
    let mut client = client(harness.addr);
    let reply = client
        .request(Operation::CreateAccounts, &[1u8; 256])
        .expect("a reply");
    assert_eq!(reply.status(), FrameStatus::StorageFull);
    assert!(reply.body.is_empty());
    harness.control.status.store(0, Ordering::Release);
    lookup_served(&mut client);
}

#[test]
fn disconnect_mid_frame_frees_the_connection_and_applies_nothing() {
    let mut config = support::config();
    config.connections_max = 2;
    let harness = Harness::with(config);
    let body = [6u8; 128];
    let frame = frame_bytes(&Header::request(Operation::CreateAccounts, 1, &body), &body);
    let mut connections_made = 0;
    for cut in [1, 30, HEADER_SIZE, HEADER_SIZE + 1, frame.len() - 1] {
        for _ in 0..2 {
            let mut stream = raw(harness.addr);
            stream.write_all(&frame[..cut]).expect("sends");
            drop(stream);
            connections_made += 1;
            harness.wait_stats("the cut connection to close", |stats| {
                stats.connections_accepted == connections_made
                    && stats.connections_closed == connections_made
            });
        }
        // Both slots are free again: two connections are served at once.
        let mut first = client(harness.addr);
        let mut second = client(harness.addr);
        let lookup = [1u8; 16];
        assert!(
            first.request(Operation::LookupAccounts, &lookup).is_ok(),
            "cut {cut}"
        );
        assert!(
            second.request(Operation::LookupAccounts, &lookup).is_ok(),
            "cut {cut}"
        );
        drop((first, second));
        connections_made += 2;
        harness.wait_stats("the clients to close", |stats| {
            stats.connections_closed == connections_made
        });
    }
    // Only the lookups reached the core, and nothing was refused.
    assert_eq!(harness.control.popped.load(Ordering::Relaxed), 10);
    assert_eq!(harness.stats().connections_refused, 0);
}

#[test]
fn disconnect_after_a_full_request_applies_it_once() {
    let harness = Harness::start();
    let body = [6u8; 128];
    let mut stream = raw(harness.addr);
    let frame = frame_bytes(&Header::request(Operation::CreateAccounts, 1, &body), &body);
    stream.write_all(&frame).expect("sends");
    drop(stream);
    support::wait_until("the request to reach the core", || {
        harness.control.popped.load(Ordering::Relaxed) == 1
    });
    let mut client = client(harness.addr);
    assert!(client
        .request(Operation::LookupAccounts, &[1u8; 16])
        .is_ok());
    assert_eq!(harness.control.popped.load(Ordering::Relaxed), 2);
}

#[test]
fn shutdown_sends_durable_replies_then_refuses_new_requests() {
    let harness = Harness::start();
    harness.control.gate.store(10, Ordering::Release);
    let mut busy = client(harness.addr);
    let mut idle = raw(harness.addr);
    let first = busy
        .send(Operation::CreateAccounts, &[1u8; 128])
        .expect("sends");
    support::wait_until("the core to take the request", || {
        harness.control.popped.load(Ordering::Relaxed) == 1
    });
    let server = harness.server();
    let shutdown = std::thread::spawn(move || server.shutdown());
    support::wait_until("the core to see the shutdown", || {
        harness.control.saw_shutdown.load(Ordering::Acquire)
    });
    // The idle connection owes nothing: it is closed.
    assert_closed(&mut idle);
    // A new request on the busy connection gets shutting_down, after the held reply.
    let second = busy
        .send(Operation::CreateAccounts, &[1u8; 128])
        .expect("sends");
    harness.wait_stats("the new request to be refused", |stats| {
        stats.frames_rejected == 1
    });
    harness.make_durable(10);
    let reply = busy
        .receive()
        .expect("the durable reply is sent during the grace period");
    assert_eq!(
        (reply.request_id(), reply.status()),
        (first, FrameStatus::Ok)
    );
    let refused = busy.receive().expect("a shutting_down reply");
    assert_eq!(
        (refused.request_id(), refused.status()),
        (second, FrameStatus::ShuttingDown)
    );
    assert_closed(&mut busy_stream(&busy));
    shutdown.join().expect("joins").expect("shuts down cleanly");
    assert_eq!(harness.control.popped.load(Ordering::Relaxed), 1);
}

fn busy_stream(client: &clearline_net::Client) -> std::net::TcpStream {
    client.stream().try_clone().expect("clones the socket")
}

#[test]
fn reply_for_a_closed_connection_is_dropped_even_when_its_slot_is_reused() {
    let mut config = support::config();
    config.connections_max = 1;
    let harness = Harness::with(config);
    harness.control.paused.store(true, Ordering::Release);
    // A request, then part of a header: the partial-frame deadline closes the connection while
    // the request is still with the core.
    let mut first = raw(harness.addr);
    let body = [1u8; 128];
    let mut bytes = frame_bytes(&Header::request(Operation::CreateAccounts, 1, &body), &body);
    bytes.extend_from_slice(&[0u8; 10]);
    first.write_all(&bytes).expect("sends");
    harness.wait_stats("the first connection to close", |stats| {
        stats.connections_closed == 1
    });
    assert_eq!(harness.stats().connections_closed_partial_frame, 1);
    // The only slot now belongs to a new connection (a new generation). Its frame goes out in
    // one write: sent as header and body apart, a test thread descheduled between the two for
    // longer than this test's short partial-frame deadline would have the server close this
    // connection too, rightly, as a slow sender.
    let mut second = raw(harness.addr);
    let lookup = [1u8; 16];
    let header = Header::request(Operation::LookupAccounts, 2, &lookup);
    second
        .write_all(&frame_bytes(&header, &lookup))
        .expect("sends");
    harness.control.paused.store(false, Ordering::Release);
    let (reply, _) = read_reply(&mut second).expect("its own reply");
    assert_eq!((reply.request_id, reply.count), (2, 1));
    harness.wait_stats("the stale reply to be dropped", |stats| {
        stats.replies_dropped == 1
    });
    assert_eq!(harness.control.popped.load(Ordering::Relaxed), 2);
}
