//! Resource exhaustion by misbehaving clients, against the real binary (docs/limits.md): idle
//! sockets that fill the connection table, frame headers whose bodies never come, and pipelined
//! reads whose replies would not fit in memory. In each case a well-behaved client is served
//! within seconds and the server stays up.
//!
//! Attacks come from their own loopback addresses (Linux routes all of 127.0.0.0/8 to the
//! loopback device), so the per-address connection cap applies to them and not to the
//! well-behaved client on 127.0.0.1.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clearline_engine::{AccountFilter, AccountFilterFlags, CreateResult, Operation};
use clearline_net::{Client, FrameStatus, Header};
use socket2::{Domain, Socket, Type};

use crate::support::{
    account, assert_served, closed_within, connect, create_all, data_dir, encode_accounts,
    encode_ids, encode_transfers, frame, read_reply, request_ok, results, transfer, wait_until,
    write_all_or_closed, Options, Seen, Server, LEDGER, SOCKET_TIMEOUT,
};

/// The account every well-behaved request looks up.
const HEALTHY_ACCOUNT: u128 = 1;
/// More sockets than the default connection table holds (1,024).
const ATTACK_SOCKETS: usize = 1_100;
/// How soon after an attack starts a well-behaved client must be served.
const SERVED_WITHIN: Duration = Duration::from_secs(5);

/// A loopback address other than 127.0.0.1, one per `index`.
fn loopback(index: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, index))
}

/// A TCP connection to `addr` from `source` (port chosen by the system), with socket timeouts.
fn connect_from(source: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect_timeout(&addr.into(), SOCKET_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens `count` idle connections, spread evenly over `sources`.
fn open_idle(addr: SocketAddr, sources: &[IpAddr], count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|index| {
            let source = sources[index % sources.len()];
            connect_from(source, addr)
                .unwrap_or_else(|error| panic!("connection {index} from {source}: {error}"))
        })
        .collect()
}

/// A server with `options`, account 1 created by a client that then disconnects.
fn start(data: &std::path::Path, options: &Options) -> Server {
    let server = Server::start(data, options);
    let mut client = server.client();
    create_all(
        &mut client,
        Operation::CreateAccounts,
        &encode_accounts(&[account(HEALTHY_ACCOUNT, LEDGER, 0)]),
    );
    server
}

/// Whether a new client on 127.0.0.1 is admitted and gets its lookup answered.
fn new_client_served(addr: SocketAddr) -> bool {
    let Ok(client) = Client::connect(addr) else {
        return false;
    };
    if client.set_timeout(Some(Duration::from_secs(2))).is_err() {
        return false;
    }
    let mut client = client;
    match client.request(Operation::LookupAccounts, &encode_ids(&[HEALTHY_ACCOUNT])) {
        Ok(reply) => reply.status() == FrameStatus::Ok && reply.body.len() == 128,
        Err(_) => false,
    }
}

/// Polls for a new well-behaved client to be served; returns how long it took, or `None` if
/// it was not served within `timeout`.
fn served_after(addr: SocketAddr, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if new_client_served(addr) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Whether the kernel runs a keepalive timer on the server's end of the connection whose
/// client port is `client_port` (the `tr` column of /proc/net/tcp is 2 for keepalive).
fn server_keepalive_timer(server: SocketAddr, client_port: u16) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{:04X}", server.port());
    let remote = format!(":{client_port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local_address, remote_address, timer) =
            (fields.get(1)?, fields.get(2)?, fields.get(5)?);
        if local_address.ends_with(&local) && remote_address.ends_with(&remote) {
            Some(timer.starts_with("02:"))
        } else {
            None
        }
    })
}

#[test]
fn idle_sockets_from_one_address_do_not_lock_others_out() {
    let data = data_dir();
    let mut server = start(data.path(), &Options::new("none"));
    let attacker = [loopback(2)];
    let started = Instant::now();
    let idle = open_idle(server.addr, &attacker, ATTACK_SOCKETS);
    let opened = started.elapsed();
    let served = served_after(server.addr, SERVED_WITHIN);
    assert!(
        served.is_some(),
        "a client on 127.0.0.1 was not served within {SERVED_WITHIN:?} of {ATTACK_SOCKETS} idle \
         sockets from {} (opened in {opened:?})",
        attacker[0]
    );
    // The attacker's sockets over its cap were closed; the rest stay open until idle.
    let closed = idle
        .into_iter()
        .take(8)
        .filter(|stream| {
            let mut stream = stream.try_clone().expect("clone");
            closed_within(&mut stream, Duration::from_millis(50))
        })
        .count();
    assert_eq!(closed, 0, "the attacker's first sockets are within its cap");
    server.assert_running("after the idle-socket attack");
}

#[test]
fn idle_connections_close_after_the_idle_timeout() {
    let data = data_dir();
    let options = Options::new("none")
        .flag("connection-idle-timeout-ms", 1_000)
        .flag("reply-timeout-ms", 30_000);
    let mut server = start(data.path(), &options);

    // The server's end of a connection runs TCP keepalive.
    let mut probe = connect_from(loopback(1), server.addr).expect("connect");
    let client_port = probe.local_addr().expect("local address").port();
    // The kernel lists the socket as soon as the handshake completes; the server sets the
    // option once it accepts, so wait for it.
    wait_until(SOCKET_TIMEOUT, "keepalive on the accepted socket", || {
        server_keepalive_timer(server.addr, client_port) == Some(true)
    });

    // An idle connection, served once, is closed after the idle timeout.
    let bytes = frame(
        Operation::LookupAccounts,
        1,
        &encode_ids(&[HEALTHY_ACCOUNT]),
    );
    assert!(write_all_or_closed(&mut probe, &bytes));
    assert!(matches!(read_reply(&mut probe), Seen::Reply(header) if header.status == 0));
    assert!(
        closed_within(&mut probe, Duration::from_secs(15)),
        "an idle connection is closed after the idle timeout"
    );

    // A connection whose replies are pending is not idle, even when the client reads nothing
    // for longer than the idle timeout: 8,000 accounts make each lookup reply about 1 MiB.
    let ids: Vec<u128> = (1_000..9_000).collect();
    let mut setup = server.client();
    let created: Vec<_> = ids.iter().map(|id| account(*id, LEDGER, 0)).collect();
    create_all(
        &mut setup,
        Operation::CreateAccounts,
        &encode_accounts(&created),
    );
    drop(setup);
    let mut busy = connect(server.addr);
    let lookups = 8;
    for _ in 0..lookups {
        busy.send(Operation::LookupAccounts, &encode_ids(&ids))
            .expect("send a lookup");
    }
    std::thread::sleep(Duration::from_secs(3));
    for index in 0..lookups {
        let reply = busy
            .receive()
            .unwrap_or_else(|error| panic!("reply {index} after a pause: {error}"));
        assert_eq!(reply.status(), FrameStatus::Ok);
        assert_eq!(reply.body.len(), ids.len() * 128, "reply {index} in full");
    }

    // 1,100 idle sockets from 20 addresses, each within the per-address cap, fill the table;
    // they are closed once idle, and a well-behaved client is served.
    let attackers: Vec<IpAddr> = (10..30).map(loopback).collect();
    let idle = open_idle(server.addr, &attackers, ATTACK_SOCKETS);
    let served = served_after(server.addr, Duration::from_secs(20));
    assert!(
        served.is_some(),
        "a client was not served within 20 s while {ATTACK_SOCKETS} idle sockets were open \
         (idle timeout 1 s)"
    );
    drop(idle);
    server.assert_running("after the idle timeout");
    let mut healthy = server.client();
    assert_served(&mut healthy, HEALTHY_ACCOUNT, "at the end");
}

#[test]
fn frame_headers_without_bodies_do_not_starve_others() {
    let data = data_dir();
    // A deadline far beyond the assertion, so only the body-buffer rules can pass the test.
    let options = Options::new("none").flag("partial-frame-timeout-ms", 60_000);
    let mut server = start(data.path(), &options);
    let body_size = 8_191 * 128;
    let body = vec![0u8; body_size];
    let header = Header::request(Operation::CreateTransfers, 7, &body).encode();
    let sources: Vec<IpAddr> = (40..50).map(loopback).collect();

    // 300 connections send the 64-byte header of a 1 MiB create_transfers frame, then nothing.
    let mut headers_only = open_idle(server.addr, &sources, 300);
    for stream in &mut headers_only {
        assert!(write_all_or_closed(stream, &header), "send a header");
    }
    let served = served_after(server.addr, SERVED_WITHIN);
    assert!(
        served.is_some(),
        "a client was not served within {SERVED_WITHIN:?} of 300 header-only frames"
    );

    // 300 more send the header and one byte of the body: slow senders hold at most their share
    // of the body buffers.
    let sources: Vec<IpAddr> = (50..60).map(loopback).collect();
    let mut trickles = open_idle(server.addr, &sources, 300);
    for stream in &mut trickles {
        assert!(write_all_or_closed(stream, &header), "send a header");
        assert!(write_all_or_closed(stream, &body[..1]), "send a body byte");
    }
    let served = served_after(server.addr, SERVED_WITHIN);
    assert!(
        served.is_some(),
        "a client was not served within {SERVED_WITHIN:?} of 300 frames stalled in their body"
    );

    // Once the stalled senders go, what they held is free: a whole 1 MiB frame is answered.
    drop(trickles);
    drop(headers_only);
    let mut sender = server.client();
    let reply = request_ok(&mut sender, Operation::CreateTransfers, &body);
    assert_eq!(results(&reply.body).len(), 8_191, "one result per transfer");
    server.assert_running("after header-only frames");
    let mut healthy = server.client();
    assert_served(&mut healthy, HEALTHY_ACCOUNT, "at the end");
}

/// The server's peak resident memory (`VmHWM`), in bytes.
fn peak_memory_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("a VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|text| text.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

#[test]
fn pipelined_large_reads_stay_within_the_reply_budget() {
    const REPLY_MEMORY_MAX: u64 = 16 << 20;
    const CONNECTIONS: usize = 8;
    const REQUESTS: usize = 64;
    const TRANSFERS: usize = 8_191;
    let data = data_dir();
    let options = Options::new("none")
        .flag("reply-memory-max", REPLY_MEMORY_MAX)
        .flag("requests-in-flight-max", REQUESTS);
    let mut server = start(data.path(), &options);

    // 8,191 transfers on one account, so each read below gets a reply of about 1 MiB.
    let mut setup = server.client();
    let reply = request_ok(
        &mut setup,
        Operation::CreateAccounts,
        &encode_accounts(&[account(2, LEDGER, 0)]),
    );
    assert_eq!(results(&reply.body)[0].status, CreateResult::STATUS_CREATED);
    let created: Vec<_> = (0..TRANSFERS as u128)
        .map(|index| transfer(10_000 + index, HEALTHY_ACCOUNT, 2, 1, LEDGER))
        .collect();
    create_all(
        &mut setup,
        Operation::CreateTransfers,
        &encode_transfers(&created),
    );
    let filter = AccountFilter {
        account_id: HEALTHY_ACCOUNT,
        limit: TRANSFERS as u32,
        flags: AccountFilterFlags::DEBITS,
        ..AccountFilter::default()
    };
    let mut filter_bytes = [0u8; AccountFilter::SIZE];
    filter.encode(&mut filter_bytes);
    let reply = request_ok(&mut setup, Operation::GetAccountTransfers, &filter_bytes);
    assert_eq!(
        reply.header.count as usize, TRANSFERS,
        "the read returns every transfer"
    );
    let peak_before = peak_memory_size(server.pid());

    // Each connection pipelines its reads and reads nothing for a second, then reads them all.
    let readers: Vec<_> = (0..CONNECTIONS)
        .map(|connection| {
            let mut stream = connect_from(loopback(1), server.addr).expect("connect");
            let mut bytes = Vec::new();
            for index in 0..REQUESTS {
                bytes.extend(frame(
                    Operation::GetAccountTransfers,
                    index as u64,
                    &filter_bytes,
                ));
            }
            assert!(write_all_or_closed(&mut stream, &bytes), "send the reads");
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("read timeout");
                for index in 0..REQUESTS {
                    match read_reply(&mut stream) {
                        Seen::Reply(header) => {
                            assert_eq!(header.status, FrameStatus::Ok as u8);
                            assert_eq!(header.request_id, index as u64, "replies in order");
                            assert_eq!(header.count as usize, TRANSFERS, "a whole reply");
                        }
                        other => panic!("connection {connection} read {index}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for reader in readers {
        reader.join().expect("every read is answered in full");
    }
    server.assert_running("after the pipelined reads");
    let grown = peak_memory_size(server.pid()).saturating_sub(peak_before);
    eprintln!(
        "the server's peak memory grew by {} KiB during the reads",
        grown >> 10
    );
    // What else the reads may touch: input buffers, the core's reply scratch, allocator slack.
    let slack = 16 << 20;
    assert!(
        grown <= REPLY_MEMORY_MAX + slack,
        "the server's peak memory grew by {} MiB during the reads, over the {} MiB reply \
         budget",
        grown >> 20,
        REPLY_MEMORY_MAX >> 20
    );
}
