//! Resource limits of the real binary (docs/durability.md row 8, docs/limits.md):
//! connections over `--connections-max`, a partial frame older than
//! `--partial-frame-timeout-ms`, a slow-trickling client, and a client that never reads its
//! replies (`--reply-timeout-ms`). Each offender is closed while a well-behaved client keeps
//! getting answers and the server stays up.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clearline_engine::Operation;
use clearline_net::{Client, FrameStatus};

use crate::support::{
    account, assert_served, closed_within, create_all, data_dir, encode_accounts, encode_ids,
    frame, raw, read_reply, wait_until, write_all_or_closed, Options, Seen, Server, LEDGER,
    SOCKET_TIMEOUT,
};

const CONNECTIONS_MAX: usize = 8;
const PARTIAL_FRAME_TIMEOUT_MS: u64 = 300;
const REPLY_TIMEOUT_MS: u64 = 500;
/// The account every well-behaved request looks up.
const HEALTHY_ACCOUNT: u128 = 1;

/// A server with small limits on a new data directory (returned to keep it), account 1
/// created, and a well-behaved client.
fn start() -> (tempfile::TempDir, Server, Client) {
    let data = data_dir();
    let options = Options::new("none")
        .flag("connections-max", CONNECTIONS_MAX)
        .flag("partial-frame-timeout-ms", PARTIAL_FRAME_TIMEOUT_MS)
        .flag("reply-timeout-ms", REPLY_TIMEOUT_MS)
        .flag("requests-in-flight-max", 16);
    let server = Server::start(data.path(), &options);
    let mut healthy = server.client();
    create_all(
        &mut healthy,
        Operation::CreateAccounts,
        &encode_accounts(&[account(HEALTHY_ACCOUNT, LEDGER, 0)]),
    );
    (data, server, healthy)
}

/// At the end of a test: the server still runs and still serves the healthy client.
fn assert_still_serving(server: &mut Server, healthy: &mut Client, after: &str) {
    server.assert_running(after);
    assert_served(healthy, HEALTHY_ACCOUNT, "at the end");
}

/// Sends a lookup of the healthy account on a raw stream; whether an ok reply came back.
fn probe(stream: &mut TcpStream) -> bool {
    let bytes = frame(
        Operation::LookupAccounts,
        1,
        &encode_ids(&[HEALTHY_ACCOUNT]),
    );
    if !write_all_or_closed(stream, &bytes) {
        return false;
    }
    matches!(read_reply(stream), Seen::Reply(header) if header.status == FrameStatus::Ok as u8)
}

#[test]
fn connections_over_the_limit_are_closed_while_existing_ones_work() {
    let (_data, mut server, mut healthy) = start();
    let mut others: Vec<TcpStream> = (1..CONNECTIONS_MAX)
        .map(|_| raw(server.addr, SOCKET_TIMEOUT))
        .collect();
    for (index, stream) in others.iter_mut().enumerate() {
        assert!(
            probe(stream),
            "connection {index} within the limit is served"
        );
    }
    for extra in 0..4 {
        let mut stream = raw(server.addr, SOCKET_TIMEOUT);
        assert!(
            !probe(&mut stream),
            "extra connection {extra} is not served"
        );
        assert!(
            closed_within(&mut stream, SOCKET_TIMEOUT),
            "extra connection {extra} closed"
        );
        assert_served(&mut healthy, HEALTHY_ACCOUNT, "while over the limit");
    }
    for (index, stream) in others.iter_mut().enumerate() {
        assert!(
            probe(stream),
            "connection {index} still served after the refusals"
        );
    }
    // A closed connection frees its slot.
    drop(others.pop());
    wait_until(
        SOCKET_TIMEOUT,
        "a freed slot to admit a new connection",
        || {
            let mut stream = raw(server.addr, SOCKET_TIMEOUT);
            probe(&mut stream)
        },
    );
    assert_still_serving(&mut server, &mut healthy, "after the connection limit");
}

#[test]
fn partial_and_trickling_frames_are_closed_after_the_deadline() {
    let (_data, mut server, mut healthy) = start();
    let mut idle = raw(server.addr, SOCKET_TIMEOUT);
    assert!(probe(&mut idle), "the idle connection is served once");

    // Ten bytes of a header, then nothing: closed after the partial-frame deadline.
    let mut partial = raw(server.addr, SOCKET_TIMEOUT);
    partial.write_all(&[0u8; 10]).expect("send ten bytes");
    assert!(
        closed_within(&mut partial, SOCKET_TIMEOUT),
        "a connection holding a partial frame is closed"
    );
    assert_served(&mut healthy, HEALTHY_ACCOUNT, "after the partial frame");

    // A valid frame one byte every 25 ms (2 s in all, far over the 300 ms deadline): closed
    // before the frame completes, so it is never answered.
    let bytes = frame(
        Operation::LookupAccounts,
        2,
        &encode_ids(&[HEALTHY_ACCOUNT]),
    );
    let mut trickle = raw(server.addr, SOCKET_TIMEOUT);
    let mut written = 0;
    for (index, byte) in bytes.iter().enumerate() {
        if !write_all_or_closed(&mut trickle, &[*byte]) {
            break;
        }
        written += 1;
        if index % 8 == 0 {
            assert_served(&mut healthy, HEALTHY_ACCOUNT, "while a client trickles");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    match read_reply(&mut trickle) {
        Seen::Closed => {}
        other => panic!("the trickling client ({written} bytes written) saw {other:?}"),
    }

    // A connection without a partial frame is not a slow client: it is kept.
    assert!(
        probe(&mut idle),
        "an idle connection with no partial frame is kept"
    );
    assert_still_serving(&mut server, &mut healthy, "after partial frames");
}

#[test]
fn client_that_never_reads_is_closed_while_others_are_served() {
    let (_data, mut server, mut healthy) = start();
    // 8,000 accounts, so one lookup request has a reply of about 1 MiB.
    let ids: Vec<u128> = (1_000..9_000).collect();
    let new_accounts: Vec<_> = ids.iter().map(|id| account(*id, LEDGER, 0)).collect();
    create_all(
        &mut healthy,
        Operation::CreateAccounts,
        &encode_accounts(&new_accounts),
    );

    // Send big lookups and never read: the replies fill the socket buffers, the server stops
    // reading, and the client's writes block.
    let request = frame(Operation::LookupAccounts, 3, &encode_ids(&ids));
    let mut sluggard = raw(server.addr, Duration::from_millis(200));
    let mut sent = 0;
    // The close may come while the client is still blocked in a write.
    let mut reset_seen = false;
    while sent < 400 {
        match sluggard.write_all(&request) {
            Ok(()) => sent += 1,
            Err(error) => {
                reset_seen = crate::support::is_reset(&error);
                break;
            }
        }
    }
    assert!(
        sent < 400,
        "the server pushed back on a client that does not read"
    );

    // The server closes it (a reset, since it holds unread requests); meanwhile the
    // well-behaved client is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    if !reset_seen {
        loop {
            assert_served(
                &mut healthy,
                HEALTHY_ACCOUNT,
                "while a client does not read",
            );
            if let Some(error) = sluggard.take_error().expect("SO_ERROR") {
                assert!(
                    crate::support::is_reset(&error),
                    "the non-reading client was reset: {error}"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a client that never reads was not closed within 10 s ({sent} requests sent)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_still_serving(&mut server, &mut healthy, "after the non-reading client");
}
