//! Round-trip latency of the network layer alone over loopback, next to a plain echo of the same
//! frames: one-transfer requests sent one at a time by a blocking client.
//!
//! The server runs with a core thread that answers each request at once (one result per event,
//! no journal, gate 0), so the difference to the echo is the cost of the net thread, the two
//! queue hand-offs, the wakes and the checksums. Run it with
//! `cargo run --release -p clearline-net --example loopback -- [requests]`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearline_engine::Operation;
use clearline_net::echo::EchoServer;
use clearline_net::{start, Client, Header, Reply, ServerConfig};

fn main() {
    let requests: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(50_000);
    let body = vec![0x11u8; 128];
    let addr = "127.0.0.1:0".parse().expect("a loopback address");

    let echo = EchoServer::start(addr).expect("the echo starts");
    let mut stream = TcpStream::connect(echo.local_addr()).expect("connects");
    stream.set_nodelay(true).expect("sets nodelay");
    let mut frame = Header::request(Operation::CreateTransfers, 1, &body)
        .encode()
        .to_vec();
    frame.extend_from_slice(&body);
    let mut echoed = vec![0u8; frame.len()];
    let echo_latencies = measure(requests, || {
        stream.write_all(&frame).expect("sends");
        stream.read_exact(&mut echoed).expect("the echo");
    });
    report("echo", &echo_latencies);

    let durable = Arc::new(AtomicU64::new(0));
    let (server, core) = start(&ServerConfig::new(addr), durable).expect("the server starts");
    let core_thread = std::thread::spawn(move || {
        while !core.is_stopped() {
            if !core.wait_for_requests(Duration::from_millis(100)) {
                continue;
            }
            while let Some(mut request) = core.pop_request() {
                let mut reply = Reply::to(&request);
                let mut results = std::mem::take(&mut request.reply_body);
                results.resize(request.header.count as usize * 16, 0);
                reply.count = request.header.count;
                reply.body = results;
                core.recycle(request.body);
                core.push_reply(reply).expect("one reply per request fits");
            }
            core.wake();
        }
    });
    let mut client = Client::connect(server.local_addr()).expect("connects");
    let server_latencies = measure(requests, || {
        client
            .request(Operation::CreateTransfers, &body)
            .expect("a reply");
    });
    report("server", &server_latencies);
    server.shutdown().expect("shuts down");
    core_thread.join().expect("the core ends");
}

fn measure(requests: usize, mut round_trip: impl FnMut()) -> Vec<Duration> {
    for _ in 0..requests / 10 {
        round_trip(); // Warm up.
    }
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let start = Instant::now();
        round_trip();
        latencies.push(start.elapsed());
    }
    latencies.sort_unstable();
    latencies
}

fn report(name: &str, latencies: &[Duration]) {
    let at = |fraction: f64| latencies[((latencies.len() - 1) as f64 * fraction) as usize];
    let total: Duration = latencies.iter().sum();
    println!(
        "{name:>6}: {} round trips, {:.0}/s, p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        latencies.len(),
        latencies.len() as f64 / total.as_secs_f64(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        at(1.0),
    );
}
