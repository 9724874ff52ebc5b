//! Replication at the frame level (docs/protocol.md section 4.1): the `not_primary` status, its
//! [`Redirect`] body byte for byte, the `read_from_backup` request flag, and the blocking client
//! following redirects between fake servers: to a named primary, after a while with no primary
//! known, past an unreachable primary, and giving up at its limits. One test runs the real
//! server with a core that answers every request with a redirect.
//!
//! The fake servers are plain `std` listeners on 127.0.0.1 port 0 that speak the frame format
//! with the crate's own codec; each answers according to a script of what its n-th request gets.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clearline_engine::{Operation, QueryFilter};
use clearline_net::client::{GiveUp, RedirectPolicy, REDIRECTS_MAX, REDIRECT_DEADLINE};
use clearline_net::frame::{check_redirect, Redirect, RedirectInvalid, RequestFlags};
use clearline_net::{
    check_reply_body, check_reply_header, check_request, checksum, Client, ClientError,
    ConnectionId, FrameStatus, Header, Reply, ReplyInvalid, Request, ServerConfig, HEADER_SIZE,
};
use proptest::prelude::*;

/// How long any socket operation of these tests may block.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);

/// Epoch 7, node 3, client address 10.0.0.5:7001.
const GOLDEN_REDIRECT_V4: [u8; Redirect::SIZE] = [
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // epoch
    0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // node_id
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // address: ::ffff:10.0.0.5
    0x00, 0x00, 0xFF, 0xFF, 0x0A, 0x00, 0x00, 0x05, //
    0x59, 0x1B, // port 7001, little-endian
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
];

/// Epoch 0x0102030405060708, node 0x1112131415161718, client address [2001:db8::1]:443.
const GOLDEN_REDIRECT_V6: [u8; Redirect::SIZE] = [
    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // epoch
    0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, // node_id
    0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, // address: 2001:db8::1, network order
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
    0xBB, 0x01, // port 443
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
];

/// The whole `not_primary` reply to request 5, a `create_transfers`, naming
/// [`GOLDEN_REDIRECT_V4`]'s primary: the dump of docs/protocol.md section 4.1. Both checksums
/// were computed with the bitwise CRC-32C of docs/protocol.md section 3, not with this codec:
/// body `0x1F7362DD`, header `0x8158668F`.
const GOLDEN_NOT_PRIMARY_REPLY: [u8; HEADER_SIZE + Redirect::SIZE] = [
    0x8F, 0x66, 0x58, 0x81, 0xDD, 0x62, 0x73, 0x1F, 0x43, 0x4C, 0x52, 0x31, 0x01, 0x00, 0x02, 0x0A,
    0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0x0A, 0x00, 0x00, 0x05,
    0x59, 0x1B, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

fn encode(redirect: &Redirect) -> [u8; Redirect::SIZE] {
    let mut bytes = [0u8; Redirect::SIZE];
    redirect.encode(&mut bytes);
    bytes
}

fn primary_v4() -> Redirect {
    let address = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 5), 7001));
    Redirect::primary(7, 3, address).expect("a complete primary")
}

/// A sealed reply header and its body, as the server's net thread builds it.
fn reply_frame(operation: u8, status: FrameStatus, count: u32, body: &[u8]) -> Vec<u8> {
    let mut header = Header {
        operation,
        status: status as u8,
        request_id: 5,
        body_size: body.len() as u32,
        count,
        ..Header::zeroed()
    };
    header.seal(body);
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Checks a whole reply frame as the client does.
fn check_reply(frame: &[u8]) -> Result<Header, ReplyInvalid> {
    let Some(bytes) = frame.first_chunk::<HEADER_SIZE>() else {
        return Err(ReplyInvalid::BodySizeInvalid);
    };
    let header = check_reply_header(bytes)?;
    check_reply_body(&header, &frame[HEADER_SIZE..])?;
    Ok(header)
}

#[test]
fn redirect_golden_bytes() {
    let v4 = primary_v4();
    assert_eq!(encode(&v4), GOLDEN_REDIRECT_V4);
    assert_eq!(Redirect::decode(&GOLDEN_REDIRECT_V4), v4);
    assert_eq!(check_redirect(&GOLDEN_REDIRECT_V4), Ok(v4));
    assert_eq!(
        v4.primary_address(),
        Some("10.0.0.5:7001".parse().expect("an address")),
        "an IPv4-mapped address comes back as IPv4"
    );

    let address: SocketAddr = "[2001:db8::1]:443".parse().expect("an address");
    let v6 = Redirect::primary(0x0102_0304_0506_0708, 0x1112_1314_1516_1718, address)
        .expect("a complete primary");
    assert_eq!(encode(&v6), GOLDEN_REDIRECT_V6);
    assert_eq!(check_redirect(&GOLDEN_REDIRECT_V6), Ok(v6));
    assert_eq!(v6.primary_address(), Some(address));

    // No primary known: forty zero bytes, whose checksum docs/protocol.md gives.
    assert_eq!(encode(&Redirect::NO_PRIMARY), [0u8; Redirect::SIZE]);
    assert_eq!(checksum(&[0u8; Redirect::SIZE]), 0x595F_B7DD);
    assert_eq!(
        check_redirect(&[0u8; Redirect::SIZE]),
        Ok(Redirect::NO_PRIMARY)
    );
    assert!(!Redirect::NO_PRIMARY.is_primary_known());
    assert_eq!(Redirect::NO_PRIMARY.primary_address(), None);
}

#[test]
fn check_redirect_refuses_bad_sizes_reserved_bytes_and_partial_primaries() {
    for size in [
        0,
        1,
        Redirect::SIZE - 1,
        Redirect::SIZE + 1,
        2 * Redirect::SIZE,
    ] {
        let bytes = vec![0u8; size];
        assert_eq!(
            check_redirect(&bytes),
            Err(RedirectInvalid::SizeInvalid { size }),
            "size {size}"
        );
    }
    for index in 34..Redirect::SIZE {
        for base in [[0u8; Redirect::SIZE], GOLDEN_REDIRECT_V4] {
            let mut bytes = base;
            bytes[index] = 0x01;
            assert_eq!(
                check_redirect(&bytes),
                Err(RedirectInvalid::ReservedNotZero),
                "reserved byte {index}"
            );
        }
    }
    // Each field of a primary missing, and each field alone: neither a primary nor none.
    let complete = primary_v4();
    let partial = [
        Redirect {
            epoch: 0,
            ..complete
        },
        Redirect {
            node_id: 0,
            ..complete
        },
        Redirect {
            port: 0,
            ..complete
        },
        Redirect {
            address: [0; 16],
            ..complete
        },
        Redirect {
            // ::ffff:0.0.0.0, the IPv4 unspecified address.
            address: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0],
            ..complete
        },
        Redirect {
            epoch: 1,
            ..Redirect::NO_PRIMARY
        },
        Redirect {
            port: 1,
            ..Redirect::NO_PRIMARY
        },
    ];
    for redirect in partial {
        assert_eq!(
            check_redirect(&encode(&redirect)),
            Err(RedirectInvalid::PrimaryIncomplete),
            "{redirect:?}"
        );
    }
    // The server cannot build one either.
    let address = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 5), 7001));
    let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7001));
    for (epoch, node_id, address) in [(0, 3, address), (7, 0, address), (7, 3, unspecified)] {
        assert_eq!(
            Redirect::primary(epoch, node_id, address),
            Err(RedirectInvalid::PrimaryIncomplete)
        );
    }
    let port_zero = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 5), 0));
    assert_eq!(
        Redirect::primary(7, 3, port_zero),
        Err(RedirectInvalid::PrimaryIncomplete)
    );
}

#[test]
fn not_primary_reply_golden_bytes_and_round_trip() {
    let body = encode(&primary_v4());
    let operation = Operation::CreateTransfers as u8;
    let frame = reply_frame(operation, FrameStatus::NotPrimary, 1, &body);
    assert_eq!(frame, GOLDEN_NOT_PRIMARY_REPLY);
    let header = check_reply(&frame).expect("a valid not_primary reply");
    assert_eq!(
        FrameStatus::from_u8(header.status),
        Some(FrameStatus::NotPrimary)
    );
    assert_eq!(FrameStatus::NotPrimary as u8, 10);
    assert_eq!(FrameStatus::NotPrimary.name(), "not_primary");
    assert_eq!((header.count, header.body_size), (1, 40));
    // The operation does not matter, even one that is no client operation (an unknown one is
    // echoed), and no primary known is valid too.
    for operation in [1u8, 3, 23, 99, 128] {
        let frame = reply_frame(operation, FrameStatus::NotPrimary, 1, &[0u8; 40]);
        assert!(check_reply(&frame).is_ok(), "operation {operation}");
    }
}

#[test]
fn not_primary_reply_needs_exactly_one_valid_redirect() {
    let body = encode(&primary_v4());
    let operation = Operation::LookupAccounts as u8;
    let cases: [(u32, &[u8], ReplyInvalid); 5] = [
        (0, &[], ReplyInvalid::BodySizeInvalid),
        (0, &body, ReplyInvalid::BodySizeInvalid),
        (1, &body[..32], ReplyInvalid::BodySizeInvalid),
        (2, &[0u8; 80], ReplyInvalid::BodySizeInvalid),
        (
            1,
            &[0xFFu8; 40],
            ReplyInvalid::Redirect(RedirectInvalid::ReservedNotZero),
        ),
    ];
    for (count, body, invalid) in cases {
        let frame = reply_frame(operation, FrameStatus::NotPrimary, count, body);
        assert_eq!(check_reply(&frame), Err(invalid), "count {count}");
    }
    // Other refusals still carry no body.
    let frame = reply_frame(operation, FrameStatus::StorageFull, 1, &body);
    assert_eq!(check_reply(&frame), Err(ReplyInvalid::BodySizeInvalid));
    // The rule the server's net thread and the client share.
    let lookup = Operation::LookupAccounts;
    assert_eq!(FrameStatus::NotPrimary.reply_body_size(lookup, 1), Some(40));
    assert_eq!(FrameStatus::NotPrimary.reply_body_size(lookup, 0), None);
    assert_eq!(FrameStatus::Ok.reply_body_size(lookup, 3), Some(3 * 128));
    assert_eq!(FrameStatus::StorageFull.reply_body_size(lookup, 0), Some(0));
    assert_eq!(FrameStatus::StorageFull.reply_body_size(lookup, 1), None);
}

#[test]
fn reply_redirect_encodes_into_the_request_reply_buffer() {
    let body = 7u128.to_le_bytes();
    let header = Header::request(Operation::LookupAccounts, 42, &body);
    let reply_body = Vec::with_capacity(1024);
    let buffer = reply_body.as_ptr();
    let mut request = Request {
        connection: ConnectionId::external(9),
        header,
        operation: Operation::LookupAccounts,
        body: body.to_vec(),
        reply_body,
        reply_reserved: 1024,
    };
    let reply = Reply::redirect(&mut request, &primary_v4());
    assert_eq!(reply.status, FrameStatus::NotPrimary);
    assert_eq!(reply.request_id, 42);
    assert_eq!(reply.operation, Operation::LookupAccounts);
    assert_eq!(reply.count, 1);
    assert_eq!(reply.body, GOLDEN_REDIRECT_V4);
    assert_eq!(
        reply.body.as_ptr(),
        buffer,
        "the request's buffer, not a new one"
    );
    assert_eq!((reply.timestamp, reply.sequence, reply.gate), (0, 0, 0));
    assert_eq!(reply.reply_reserved, 1024);
    assert!(
        request.reply_body.is_empty(),
        "the buffer moved to the reply"
    );
}

/// The real server with a core that answers every request as a backup without a flagged read
/// would: its net thread sends the redirect body and keeps the connection.
#[test]
fn the_server_sends_the_redirect_body_and_keeps_the_connection() {
    let config = ServerConfig::new("127.0.0.1:0".parse().expect("a loopback address"));
    let durable = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (server, core) = clearline_net::start(&config, durable).expect("the server starts");
    let redirect = primary_v4();
    let core_thread = std::thread::spawn(move || {
        while !core.is_stopped() {
            if !core.wait_for_requests(Duration::from_millis(10)) {
                continue;
            }
            while let Some(mut request) = core.pop_request() {
                let reply = Reply::redirect(&mut request, &redirect);
                core.recycle(std::mem::take(&mut request.body));
                core.push_reply(reply).expect("one reply per request fits");
            }
            core.wake();
        }
    });
    let mut client = client(server.local_addr());
    client.set_redirect_policy(RedirectPolicy::disabled());
    for _ in 0..3 {
        let reply = lookup(&mut client).expect("a reply on the same connection");
        assert_eq!(reply.status(), FrameStatus::NotPrimary);
        assert_eq!((reply.count(), reply.body.len()), (1, Redirect::SIZE));
        assert_eq!(reply.redirect(), Some(redirect));
    }
    // A query for no item reserves no reply buffer: its redirect grows it, the one exception.
    let mut filter = [0u8; QueryFilter::SIZE];
    QueryFilter::default().encode(&mut filter);
    let reply = client
        .request(Operation::QueryAccounts, &filter)
        .expect("a reply");
    assert_eq!(reply.redirect(), Some(redirect));
    assert_eq!(server.stats().replies_over_reservation, 1);
    drop(client);
    server.shutdown().expect("the server shuts down");
    core_thread.join().expect("the core ends");
}

#[test]
fn read_from_backup_is_bit_0_of_header_byte_62() {
    let body = 7u128.to_le_bytes();
    let flagged = Header::request_flagged(
        Operation::LookupAccounts,
        1,
        RequestFlags::READ_FROM_BACKUP,
        &body,
    );
    let bytes = flagged.encode();
    assert_eq!(&bytes[48..62], &[0u8; 14]);
    assert_eq!(&bytes[62..64], &[0x01, 0x00]);
    let mut frame = bytes.to_vec();
    frame.extend_from_slice(&body);
    let request = check_request(&frame).expect("the flag is known");
    assert!(request.header.read_from_backup());
    assert_eq!(
        request.header.request_flags(),
        RequestFlags::READ_FROM_BACKUP
    );

    let plain = Header::request(Operation::LookupAccounts, 1, &body);
    assert!(!plain.read_from_backup());
    assert_eq!(plain.request_flags(), RequestFlags::NONE);
    // Only the flag bytes differ (and the header checksum that covers them).
    assert_eq!(&plain.encode()[4..62], &bytes[4..62]);

    let flags = RequestFlags::NONE.with(RequestFlags::READ_FROM_BACKUP, true);
    assert!(flags.read_from_backup());
    assert_eq!(flags.unknown_bits(), 0);
    assert!(!flags
        .with(RequestFlags::READ_FROM_BACKUP, false)
        .read_from_backup());
    assert_eq!(RequestFlags::from_bits(0xFFFF).unknown_bits(), 0xFFFE);

    // A reply carries no flags: the bytes are reserved there.
    let mut reply = Header {
        operation: Operation::LookupAccounts as u8,
        ..Header::zeroed()
    };
    reply.set_request_flags(RequestFlags::READ_FROM_BACKUP);
    reply.seal(&[]);
    assert_eq!(
        check_reply_header(&reply.encode()),
        Err(ReplyInvalid::Header(FrameStatus::HeaderReservedNotZero))
    );
}

/// What a fake server answers to one request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Status ok, one reply item of the request's operation, every byte `mark`.
    Ok { mark: u8 },
    /// `not_primary` with this redirect.
    NotPrimary(Redirect),
    /// Nothing: close the connection.
    Close,
}

/// A fake server on 127.0.0.1 port 0: one connection at a time, every request answered as the
/// script says for its index among all requests this server received (0-based). Requests
/// received are recorded.
struct FakeServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Header>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(script: impl Fn(usize) -> Answer + Send + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("an address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &script, &requests, &stop),
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(error) => panic!("accept failed: {error}"),
                    }
                }
            })
        };
        FakeServer {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The redirect that names this server as the primary of `epoch`.
    fn as_primary(&self, epoch: u64) -> Redirect {
        Redirect::primary(epoch, u64::from(self.addr.port()), self.addr).expect("a primary")
    }

    fn requests(&self) -> Vec<Header> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // Re-raise a failed assertion of the server thread in the test.
            if let Err(panic) = thread.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

/// Serves one connection until the client closes it, the script closes it, or the test ends.
fn serve(
    mut stream: TcpStream,
    script: &impl Fn(usize) -> Answer,
    requests: &Mutex<Vec<Header>>,
    stop: &AtomicBool,
) {
    stream.set_nonblocking(false).expect("blocking reads");
    // Short reads, so that the thread notices the end of the test while a client idles.
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("a read timeout");
    stream.set_nodelay(true).expect("nodelay");
    loop {
        let mut header_bytes = [0u8; HEADER_SIZE];
        match read_frame_start(&mut stream, &mut header_bytes, stop) {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        let size = Header::decode(&header_bytes).body_size as usize;
        let mut frame = header_bytes.to_vec();
        frame.resize(HEADER_SIZE + size, 0);
        stream
            .set_read_timeout(Some(SOCKET_TIMEOUT))
            .expect("a read timeout");
        stream
            .read_exact(&mut frame[HEADER_SIZE..])
            .expect("a request body");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("a read timeout");
        let request = check_request(&frame).expect("the client sends valid requests");
        let index = {
            let mut requests = requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            requests.push(request.header);
            requests.len() - 1
        };
        let operation = request.header.operation;
        let mut answer = |status: FrameStatus, count: u32, body: &[u8]| {
            let mut header = Header {
                operation,
                status: status as u8,
                request_id: request.header.request_id,
                body_size: body.len() as u32,
                count,
                ..Header::zeroed()
            };
            header.seal(body);
            // The client may have given up already.
            let _ = stream.write_all(&header.encode());
            let _ = stream.write_all(body);
        };
        match script(index) {
            Answer::Ok { mark } => {
                let body = vec![mark; request.operation.reply_item_size()];
                answer(FrameStatus::Ok, 1, &body);
            }
            Answer::NotPrimary(redirect) => {
                answer(FrameStatus::NotPrimary, 1, &encode(&redirect));
            }
            Answer::Close => return,
        }
    }
}

/// Reads a header's 64 bytes; `Ok(false)` at the end of the stream or of the test.
fn read_frame_start(
    stream: &mut TcpStream,
    bytes: &mut [u8; HEADER_SIZE],
    stop: &AtomicBool,
) -> io::Result<bool> {
    let mut read = 0;
    while read < HEADER_SIZE {
        match stream.read(&mut bytes[read..]) {
            Ok(0) => return Ok(false),
            Ok(size) => read += size,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Acquire) {
                    return Ok(false);
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

fn client(addr: SocketAddr) -> Client {
    let client = Client::connect(addr).expect("connects");
    client
        .set_timeout(Some(SOCKET_TIMEOUT))
        .expect("sets timeouts");
    client
}

/// A policy with short waits, so a test waits milliseconds where a client would wait seconds.
fn quick_policy(deadline: Duration) -> RedirectPolicy {
    RedirectPolicy {
        deadline,
        wait_initial: Duration::from_millis(5),
        wait_max: Duration::from_millis(20),
        ..RedirectPolicy::default()
    }
}

/// One lookup of account 7; the reply of whichever server served it.
fn lookup(client: &mut Client) -> Result<clearline_net::ReplyFrame, ClientError> {
    client.request(Operation::LookupAccounts, &7u128.to_le_bytes())
}

#[test]
fn redirects_are_followed_by_default_with_the_documented_limits() {
    let policy = RedirectPolicy::default();
    assert!(policy.follow);
    assert_eq!(policy.redirects_max, REDIRECTS_MAX);
    assert_eq!(REDIRECTS_MAX, 8);
    assert_eq!(policy.deadline, REDIRECT_DEADLINE);
    assert_eq!(REDIRECT_DEADLINE, Duration::from_secs(10));
    assert_eq!(policy.wait_initial, Duration::from_millis(100));
    assert_eq!(policy.wait_max, Duration::from_secs(1));
    assert!(!RedirectPolicy::disabled().follow);
}

#[test]
fn client_follows_a_redirect_to_the_primary() {
    let primary = FakeServer::start(|_| Answer::Ok { mark: 0xB2 });
    let named = primary.as_primary(4);
    let backup = FakeServer::start(move |_| Answer::NotPrimary(named));
    let mut client = client(backup.addr);
    let reply = lookup(&mut client).expect("served by the primary");
    assert_eq!(reply.status(), FrameStatus::Ok);
    assert_eq!(reply.body, vec![0xB2; 128], "the primary's reply");
    assert_eq!(client.server_addr(), primary.addr);
    // The same request, sent again unchanged but for its id.
    let (to_backup, to_primary) = (backup.requests(), primary.requests());
    assert_eq!((to_backup.len(), to_primary.len()), (1, 1));
    assert_eq!(to_backup[0].body_checksum, to_primary[0].body_checksum);
    assert_eq!(to_backup[0].operation, to_primary[0].operation);
    assert!(to_primary[0].request_id > to_backup[0].request_id);
    // The next request goes to the primary directly.
    assert_eq!(lookup(&mut client).expect("served").body, vec![0xB2; 128]);
    assert_eq!((backup.requests().len(), primary.requests().len()), (1, 2));
}

#[test]
fn client_waits_while_no_primary_is_known_then_follows() {
    let primary = FakeServer::start(|_| Answer::Ok { mark: 0xC3 });
    let named = primary.as_primary(9);
    // Three answers without a primary (an election in progress), then the new primary.
    let backup = FakeServer::start(move |index| {
        if index < 3 {
            Answer::NotPrimary(Redirect::NO_PRIMARY)
        } else {
            Answer::NotPrimary(named)
        }
    });
    let mut client = client(backup.addr);
    client.set_redirect_policy(quick_policy(SOCKET_TIMEOUT));
    let start = Instant::now();
    let reply = lookup(&mut client).expect("served by the primary");
    assert_eq!(reply.body, vec![0xC3; 128]);
    assert_eq!(
        backup.requests().len(),
        4,
        "asked the same server until it knew"
    );
    assert_eq!(primary.requests().len(), 1);
    // Waited 5 + 10 + 20 ms between the four tries.
    assert!(
        start.elapsed() >= Duration::from_millis(35),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn client_gives_up_after_the_deadline_when_no_primary_is_known() {
    let backup = FakeServer::start(|_| Answer::NotPrimary(Redirect::NO_PRIMARY));
    let mut client = client(backup.addr);
    let deadline = Duration::from_millis(200);
    client.set_redirect_policy(quick_policy(deadline));
    let start = Instant::now();
    let result = lookup(&mut client);
    let elapsed = start.elapsed();
    assert!(
        matches!(
            result,
            Err(ClientError::PrimaryNotFound {
                reason: GiveUp::Deadline,
                redirects: 0,
                last,
            }) if last == Redirect::NO_PRIMARY
        ),
        "{result:?}"
    );
    assert!(elapsed >= deadline, "gave up early: {elapsed:?}");
    assert!(
        elapsed < deadline + Duration::from_secs(1),
        "gave up late: {elapsed:?}"
    );
    assert!(backup.requests().len() >= 2, "retried before giving up");
    let message = lookup(&mut client).map(|_| ()).unwrap_err().to_string();
    assert!(message.contains("no primary found"), "{message}");
}

#[test]
fn client_gives_up_after_too_many_redirects() {
    // Two servers that each name the other: a loop the client must leave.
    let second_addr = Arc::new(Mutex::new(None::<Redirect>));
    let named_second = Arc::clone(&second_addr);
    let first = FakeServer::start(move |_| {
        let named = named_second
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .expect("set before the first request");
        Answer::NotPrimary(named)
    });
    let named_first = first.as_primary(1);
    let second = FakeServer::start(move |_| Answer::NotPrimary(named_first));
    *second_addr
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(second.as_primary(2));
    let mut client = client(first.addr);
    client.set_redirect_policy(RedirectPolicy {
        redirects_max: 3,
        ..quick_policy(SOCKET_TIMEOUT)
    });
    let result = lookup(&mut client);
    assert!(
        matches!(
            result,
            Err(ClientError::PrimaryNotFound {
                reason: GiveUp::RedirectsMax,
                redirects: 3,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(first.requests().len() + second.requests().len(), 4);
}

#[test]
fn client_asks_again_when_the_named_primary_is_unreachable() {
    // An address nothing listens on: bound, then closed.
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
        listener.local_addr().expect("an address")
    };
    let dead = Redirect::primary(5, 5, dead).expect("a primary");
    let primary = FakeServer::start(|_| Answer::Ok { mark: 0xD4 });
    let named = primary.as_primary(6);
    let backup =
        FakeServer::start(move |index| Answer::NotPrimary(if index == 0 { dead } else { named }));
    let mut client = client(backup.addr);
    client.set_redirect_policy(quick_policy(SOCKET_TIMEOUT));
    let reply = lookup(&mut client).expect("served by the primary named second");
    assert_eq!(reply.body, vec![0xD4; 128]);
    assert_eq!(backup.requests().len(), 2);
    assert_eq!(client.server_addr(), primary.addr);
}

#[test]
fn with_following_disabled_not_primary_is_returned() {
    let primary = FakeServer::start(|_| Answer::Ok { mark: 0xE5 });
    let named = primary.as_primary(2);
    let backup = FakeServer::start(move |_| Answer::NotPrimary(named));
    let mut client = client(backup.addr);
    client.set_redirect_policy(RedirectPolicy::disabled());
    let reply = lookup(&mut client).expect("a reply");
    assert_eq!(reply.status(), FrameStatus::NotPrimary);
    assert_eq!(reply.redirect(), Some(named));
    assert_eq!(client.server_addr(), backup.addr);
    // The typed helpers report the status.
    let result = client.lookup_accounts(&[7]);
    assert!(
        matches!(result, Err(ClientError::Status(FrameStatus::NotPrimary))),
        "{result:?}"
    );
    assert_eq!(primary.requests().len(), 0);
}

#[test]
fn client_sends_read_from_backup_when_asked() {
    let backup = FakeServer::start(|_| Answer::Ok { mark: 0xF6 });
    let mut client = client(backup.addr);
    assert!(!client.request_flags().read_from_backup());
    lookup(&mut client).expect("served");
    client.set_read_from_backup(true);
    lookup(&mut client).expect("served");
    client.set_read_from_backup(false);
    lookup(&mut client).expect("served");
    let flags: Vec<bool> = backup
        .requests()
        .iter()
        .map(Header::read_from_backup)
        .collect();
    assert_eq!(flags, [false, true, false]);
}

#[test]
fn a_closed_connection_is_not_retried() {
    let server = FakeServer::start(|_| Answer::Close);
    let mut client = client(server.addr);
    assert!(matches!(lookup(&mut client), Err(ClientError::Io(_))));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x0C1E_A712),
        ..ProptestConfig::default()
    })]

    #[test]
    fn check_redirect_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(redirect) = check_redirect(&bytes) {
            prop_assert_eq!(bytes.len(), Redirect::SIZE);
            prop_assert_eq!(&encode(&redirect)[..], &bytes[..]);
            prop_assert_eq!(redirect.is_primary_known(), redirect.primary_address().is_some());
        }
    }
}
