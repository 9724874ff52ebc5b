//! Test harness: a server on 127.0.0.1 port 0 with a fake core thread, and raw-socket helpers.
//!
//! The fake core answers each request with one 16-byte result per event for operations whose
//! reply item is a `CreateResult` and otherwise with one item per event up to what fits, each
//! body byte equal to the low byte of the request id, so a test can tell replies apart. Knobs
//! in [`Control`] pause it, gate its replies on a journal sequence, or make it refuse requests.

#![allow(dead_code)] // Each test file uses a different part of the harness.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clearline_engine::Operation;
use clearline_net::{
    check_reply_body, check_reply_header, start, Client, FrameStatus, Header, NetWaker, Reply,
    ServerConfig, ServerHandle, ServerStats, BODY_SIZE_MAX, HEADER_SIZE,
};

/// How long any single socket operation of a test may block.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);

/// Knobs of the fake core.
#[derive(Default)]
pub struct Control {
    /// While set, the core pops nothing.
    pub paused: AtomicBool,
    /// The gate of every reply (0: none).
    pub gate: AtomicU64,
    /// A status to answer with instead of ok (0: ok).
    pub status: AtomicU8,
    /// Requests popped so far.
    pub popped: AtomicU64,
    /// Set once the core saw the server shutting down.
    pub saw_shutdown: AtomicBool,
}

/// A running server with its fake core.
pub struct Harness {
    pub addr: SocketAddr,
    pub durable: Arc<AtomicU64>,
    pub control: Arc<Control>,
    pub waker: NetWaker,
    server: Arc<ServerHandle>,
    core: Option<JoinHandle<()>>,
}

/// Test limits: short deadlines, the rest at their defaults.
pub fn config() -> ServerConfig {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("a loopback address"));
    config.partial_frame_timeout = Duration::from_millis(200);
    config.reply_stall_timeout = Duration::from_millis(300);
    config.shutdown_grace = Duration::from_secs(2);
    config
}

impl Harness {
    pub fn start() -> Harness {
        Harness::with(config())
    }

    pub fn with(config: ServerConfig) -> Harness {
        let durable = Arc::new(AtomicU64::new(0));
        let (server, core) = start(&config, Arc::clone(&durable)).expect("the server starts");
        let control = Arc::new(Control::default());
        let core_control = Arc::clone(&control);
        let core = std::thread::spawn(move || {
            let control = core_control;
            while !core.is_stopped() {
                if core.is_shutting_down() {
                    control.saw_shutdown.store(true, Ordering::Release);
                }
                if control.paused.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                if !core.wait_for_requests(Duration::from_millis(10)) {
                    continue;
                }
                // Checked before each pop too: a test may pause the core while it waits.
                while !control.paused.load(Ordering::Acquire) {
                    let Some(mut request) = core.pop_request() else {
                        break;
                    };
                    control.popped.fetch_add(1, Ordering::Relaxed);
                    let mut reply = Reply::to(&request);
                    reply.gate = control.gate.load(Ordering::Acquire);
                    reply.timestamp = request.header.request_id;
                    reply.sequence = reply.gate;
                    let status = control.status.load(Ordering::Acquire);
                    if status != 0 {
                        reply.status = FrameStatus::from_u8(status).expect("a valid status");
                    } else {
                        let item_size = request.operation.reply_item_size();
                        let count = (request.header.count as usize).min(BODY_SIZE_MAX / item_size);
                        let mut body = std::mem::take(&mut request.reply_body);
                        body.resize(count * item_size, request.header.request_id as u8);
                        reply.count = count as u32;
                        reply.body = body;
                    }
                    core.recycle(request.body);
                    core.push_reply(reply).expect("the reply queue has room");
                }
                core.wake();
            }
        });
        Harness {
            addr: server.local_addr(),
            durable,
            control,
            waker: server.waker(),
            server: Arc::new(server),
            core: Some(core),
        }
    }

    pub fn stats(&self) -> ServerStats {
        self.server.stats()
    }

    /// Makes `sequence` durable, as the journal syncer does.
    pub fn make_durable(&self, sequence: u64) {
        self.durable.store(sequence, Ordering::Release);
        self.waker.wake();
    }

    /// The server handle (to shut it down from another thread).
    pub fn server(&self) -> Arc<ServerHandle> {
        Arc::clone(&self.server)
    }

    /// Waits until `condition` holds on the stats, or fails after the socket timeout.
    pub fn wait_stats(&self, what: &str, condition: impl Fn(&ServerStats) -> bool) {
        wait_until(what, || condition(&self.stats()));
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.control.paused.store(false, Ordering::Release);
        self.server
            .shutdown()
            .expect("the server shuts down cleanly");
        if let Some(core) = self.core.take() {
            core.join().expect("the fake core does not panic");
        }
    }
}

/// Polls `condition` every millisecond until it holds; panics after the socket timeout.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < SOCKET_TIMEOUT,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn client(addr: SocketAddr) -> Client {
    let client = Client::connect(addr).expect("connects");
    client
        .set_timeout(Some(SOCKET_TIMEOUT))
        .expect("sets timeouts");
    client
}

/// Sends `operation` with `body` and checks that the reply is `Ok`.
pub fn assert_ok(client: &mut Client, operation: Operation, body: &[u8]) {
    let reply = client.request(operation, body).expect("served");
    assert_eq!(reply.status(), FrameStatus::Ok, "{}", operation.name());
}

/// A well-behaved request: a lookup of one account, answered `Ok`.
pub fn lookup_served(client: &mut Client) {
    assert_ok(client, Operation::LookupAccounts, &[1u8; 16]);
}

pub fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(SOCKET_TIMEOUT))
        .expect("sets a timeout");
    stream
        .set_write_timeout(Some(SOCKET_TIMEOUT))
        .expect("sets a timeout");
    stream.set_nodelay(true).expect("sets nodelay");
    stream
}

pub fn frame_bytes(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads one reply frame and checks it with the codec.
pub fn read_reply(stream: &mut TcpStream) -> io::Result<(Header, Vec<u8>)> {
    let mut bytes = [0u8; HEADER_SIZE];
    stream.read_exact(&mut bytes)?;
    let header = check_reply_header(&bytes).expect("the server sends valid reply headers");
    let mut body = vec![0u8; header.body_size as usize];
    stream.read_exact(&mut body)?;
    check_reply_body(&header, &body).expect("the server sends valid reply bodies");
    Ok((header, body))
}

/// Asserts that the server closed the connection (end of stream or a reset) with nothing more
/// to read.
pub fn assert_closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("expected the connection closed, read a byte"),
        Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
        Err(error) => panic!("expected the connection closed: {error}"),
    }
}

/// Sends `bytes` ignoring a reset (the server may close before reading everything).
pub fn send_lossy(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
}
