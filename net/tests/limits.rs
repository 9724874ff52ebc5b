//! The server's limits over loopback: connections over the maximum are refused, a partial frame
//! older than its deadline closes its connection, a client that does not read its replies is
//! closed, and a core that stops popping makes the server stop reading with bounded memory. In
//! every case a well-behaved client on another connection keeps being served.

mod support;

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clearline_engine::Operation;
use clearline_net::{start, Client, Header, ServerConfig, BODY_SIZE_MAX, HEADER_SIZE};
use support::{assert_closed, client, frame_bytes, lookup_served, raw, Harness};

/// A server with `config` and `count` connected clients, each served once.
fn served_clients(config: ServerConfig, count: usize) -> (Harness, Vec<Client>) {
    let harness = Harness::with(config);
    let mut clients: Vec<_> = (0..count).map(|_| client(harness.addr)).collect();
    for client in &mut clients {
        lookup_served(client);
    }
    (harness, clients)
}

/// Closes the last of `clients` (the first connection to close on this server) and checks that
/// a new connection is then accepted and served.
fn closed_connection_makes_room(harness: &Harness, clients: &mut Vec<Client>) {
    clients.pop();
    harness.wait_stats("a connection to close", |stats| {
        stats.connections_closed == 1
    });
    let mut late = client(harness.addr);
    lookup_served(&mut late);
}

#[test]
fn config_limits_are_validated() {
    let addr = "127.0.0.1:0".parse().expect("an address");
    assert_eq!(ServerConfig::new(addr).validate(), Ok(()));
    // Each row: the limit `validate` names and a change that puts it out of range.
    type Change = fn(&mut ServerConfig);
    let out_of_range: [(&str, Change); 4] = [
        ("requests_in_flight_max", |c| c.requests_in_flight_max = 15),
        ("input_size_max", |c| c.input_size_max = HEADER_SIZE - 1),
        ("connections_per_address_max", |c| {
            c.connections_per_address_max = 0
        }),
        ("idle_timeout", |c| c.idle_timeout = Duration::ZERO),
    ];
    for (name, change) in out_of_range {
        let mut config = ServerConfig::new(addr);
        change(&mut config);
        assert_eq!(config.validate().map_err(|e| e.0), Err(name));
    }
    let mut config = ServerConfig::new(addr);
    config.connections_max = 0;
    let error = start(&config, Default::default()).expect_err("refused");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn connections_over_the_limit_are_refused_while_existing_ones_work() {
    let mut config = support::config();
    config.connections_max = 4;
    let (harness, mut clients) = served_clients(config, 4);
    for _ in 0..3 {
        let mut extra = raw(harness.addr);
        assert_closed(&mut extra);
    }
    assert_eq!(harness.stats().connections_refused, 3);
    for client in &mut clients {
        lookup_served(client);
    }
    // A slot freed by a closed connection is reused (under a new generation).
    closed_connection_makes_room(&harness, &mut clients);
    for client in &mut clients {
        lookup_served(client);
    }
}

#[test]
fn partial_frame_older_than_the_deadline_closes_only_that_connection() {
    let harness = Harness::start();
    let mut good = client(harness.addr);
    let body = [1u8; 128];
    let frame = frame_bytes(&Header::request(Operation::CreateAccounts, 1, &body), &body);
    // Half a header, then silence.
    let mut silent = raw(harness.addr);
    silent.write_all(&frame[..20]).expect("sends");
    // A whole header and part of the body, trickled a byte at a time too slowly.
    let mut trickle = raw(harness.addr);
    trickle
        .write_all(&frame[..HEADER_SIZE + 10])
        .expect("sends");
    let trickler = std::thread::spawn(move || {
        for byte in &frame[HEADER_SIZE + 10..] {
            if trickle.write_all(std::slice::from_ref(byte)).is_err() {
                return trickle;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        trickle
    });
    lookup_served(&mut good);
    assert_closed(&mut silent);
    let mut trickle = trickler.join().expect("the trickler ends");
    assert_closed(&mut trickle);
    assert_eq!(harness.stats().connections_closed_partial_frame, 2);
    lookup_served(&mut good);
    assert_eq!(
        harness.control.popped.load(Ordering::Relaxed),
        2,
        "the partial frames had no effect"
    );
}

#[test]
fn client_that_never_reads_its_replies_is_closed_while_others_are_served() {
    let harness = Harness::start();
    let mut good = client(harness.addr);
    // Each lookup of 8,191 ids gets a reply of about 1 MiB; the client never reads them.
    let ids = vec![3u8; 8191 * 16];
    let frame = frame_bytes(&Header::request(Operation::LookupAccounts, 1, &ids), &ids);
    let mut deaf = raw(harness.addr);
    deaf.set_write_timeout(Some(Duration::from_millis(500)))
        .expect("sets a timeout");
    let writer = std::thread::spawn(move || {
        for _ in 0..64 {
            if deaf.write_all(&frame).is_err() {
                break;
            }
        }
        deaf
    });
    harness.wait_stats("the deaf client to be closed", |stats| {
        stats.connections_closed_reply_stall == 1
    });
    lookup_served(&mut good);
    drop(writer.join().expect("the writer ends"));
    lookup_served(&mut good);
}

#[test]
fn core_that_stops_popping_stops_the_reading_with_bounded_memory() {
    let mut config = support::config();
    config.request_queue_depth = 4;
    config.requests_at_core_max = 4;
    config.body_buffers_count = 8;
    config.partial_frame_timeout = Duration::from_secs(5);
    config.reply_stall_timeout = Duration::from_secs(5);
    let harness = Harness::with(config);
    harness.control.paused.store(true, Ordering::Release);

    // Write 1 MiB frames without blocking until the socket stays full: the server must stop
    // reading long before the 96 frames (96 MiB) are in.
    let body = vec![8u8; BODY_SIZE_MAX - 64];
    let frame = frame_bytes(
        &Header::request(Operation::CreateTransfers, 1, &body),
        &body,
    );
    let frames_max = 96;
    let mut stream = raw(harness.addr);
    stream.set_nonblocking(true).expect("sets non-blocking");
    let mut written_size = 0usize;
    let mut blocked_since: Option<Instant> = None;
    while written_size < frames_max * frame.len() {
        let offset = written_size % frame.len();
        match stream.write(&frame[offset..]) {
            Ok(size) => {
                written_size += size;
                blocked_since = None;
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(error) => panic!("the server closed a paused connection: {error}"),
        }
    }
    let frames_started = written_size.div_ceil(frame.len());
    assert!(
        frames_started < frames_max,
        "the server kept reading: {frames_started} frames"
    );
    harness.wait_stats("the server to stop reading for the core", |stats| {
        stats.pauses_core >= 1
    });
    assert_eq!(harness.control.popped.load(Ordering::Relaxed), 0);

    // Meanwhile another connection's request waits too, but its connection stays open.
    let mut good = client(harness.addr);
    let waiting = good
        .send(Operation::LookupAccounts, &[1u8; 16])
        .expect("sends");

    // Let the core go: the rest of the last frame goes in and every frame is answered.
    harness.control.paused.store(false, Ordering::Release);
    stream.set_nonblocking(false).expect("sets blocking");
    let offset = written_size % frame.len();
    if offset != 0 {
        stream
            .write_all(&frame[offset..])
            .expect("the server reads again");
    }
    for _ in 0..frames_started {
        let (header, body) = support::read_reply(&mut stream).expect("a reply per frame");
        assert_eq!((header.status, header.count), (0, 8191));
        assert_eq!(body.len(), 8191 * 16);
    }
    assert_eq!(good.receive().expect("served").request_id(), waiting);
    assert_eq!(
        harness.control.popped.load(Ordering::Relaxed) as usize,
        frames_started + 1
    );
}

#[test]
fn pipelined_large_replies_stay_within_the_reply_memory_budget() {
    let mut config = support::config();
    config.reply_memory_max = 4 << 20;
    config.output_size_max = 2 << 20;
    config.reply_stall_timeout = Duration::from_secs(10);
    config.partial_frame_timeout = Duration::from_secs(10);
    let harness = Harness::with(config);
    // Lookups of 8,191 ids: the fake core answers each with 8,191 items, about 1 MiB.
    let ids = vec![5u8; 8191 * 16];
    let connections = 8;
    let requests = 16;
    let mut readers = Vec::new();
    for _ in 0..connections {
        let mut stream = raw(harness.addr);
        let mut reader = stream.try_clone().expect("clones");
        let ids = ids.clone();
        let writer = std::thread::spawn(move || {
            for index in 0..requests {
                let header = Header::request(Operation::LookupAccounts, index, &ids);
                stream
                    .write_all(&frame_bytes(&header, &ids))
                    .expect("the server reads again once replies are sent");
            }
            stream
        });
        readers.push(std::thread::spawn(move || {
            // Read nothing for a while, so replies pile up as far as the budget lets them.
            std::thread::sleep(Duration::from_millis(300));
            for index in 0..requests {
                let (header, body) = support::read_reply(&mut reader).expect("a reply");
                assert_eq!(header.request_id, index);
                assert_eq!((header.status, header.count), (0, 8191));
                assert_eq!(body.len(), 8191 * 128);
            }
            writer.join().expect("the writer ends")
        }));
    }
    for reader in readers {
        drop(reader.join().expect("every request is answered"));
    }
    let stats = harness.stats();
    assert!(
        stats.reply_memory_size_peak <= 4 << 20,
        "reply memory peaked at {} bytes",
        stats.reply_memory_size_peak
    );
    assert!(
        stats.reply_memory_size_peak >= 1 << 20,
        "replies were reserved"
    );
    assert!(
        stats.pauses_reply_memory > 0,
        "the budget made connections wait"
    );
    assert_eq!(stats.replies_over_reservation, 0);
    assert_eq!(harness.control.popped.load(Ordering::Relaxed), 8 * 16);
}

#[test]
fn idle_connections_close_but_ones_awaiting_replies_do_not() {
    let mut config = support::config();
    config.idle_timeout = Duration::from_millis(200);
    config.reply_stall_timeout = Duration::from_secs(10);
    let harness = Harness::with(config);
    let mut idle = client(harness.addr);
    lookup_served(&mut idle);
    // A request whose reply waits for the journal: not idle, however long it waits.
    harness.control.gate.store(7, Ordering::Release);
    let mut waiting = client(harness.addr);
    let request_id = waiting
        .send(Operation::LookupAccounts, &[1u8; 16])
        .expect("sends");
    harness.wait_stats("the idle connection to close", |stats| {
        stats.connections_closed_idle == 1
    });
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        harness.stats().connections_closed_idle,
        1,
        "only the idle one"
    );
    harness.make_durable(7);
    let reply = waiting.receive().expect("the reply arrives");
    assert_eq!(reply.request_id(), request_id);
    harness.wait_stats("the served connection to become idle and close", |stats| {
        stats.connections_closed_idle == 2
    });
}

#[test]
fn connections_over_the_per_address_cap_are_refused() {
    let mut config = support::config();
    config.connections_per_address_max = 2;
    let (harness, mut clients) = served_clients(config, 2);
    let mut extra = raw(harness.addr);
    assert_closed(&mut extra);
    assert_eq!(harness.stats().connections_refused_address, 1);
    assert_eq!(harness.stats().connections_refused, 0, "the table has room");
    closed_connection_makes_room(&harness, &mut clients);
}
