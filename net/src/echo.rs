//! A plain loopback echo of frames: the floor the server benchmark compares against.
//!
//! Each connection gets a thread that reads a 64-byte header, reads `body_size` bytes (at most
//! [`BODY_SIZE_MAX`]) and writes both back unchanged. No checksum is verified, nothing is queued
//! and no other thread is involved, so the round trip measures only the sockets and the
//! kernel: what is left of a server latency above this is ours.
//!
//! Does not validate frames, limit connections or handle hostile clients; it is for benchmarks
//! on loopback only.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::frame::{Header, BODY_SIZE_MAX, HEADER_SIZE};

/// A running echo server; stops and joins its accept thread when dropped.
#[derive(Debug)]
pub struct EchoServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds `addr` and starts accepting.
    ///
    /// # Errors
    ///
    /// The error of binding or spawning.
    pub fn start(addr: SocketAddr) -> io::Result<EchoServer> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_accept = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("clearline-echo".to_string())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop_accept.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(stream) = stream else {
                        continue;
                    };
                    let _ = std::thread::Builder::new()
                        .name("clearline-echo-connection".to_string())
                        .spawn(move || echo_connection(stream));
                }
            })?;
        Ok(EchoServer {
            local_addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the echo server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Unblock `accept` with one last connection.
        let _ = TcpStream::connect(self.local_addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn echo_connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // One buffer for the whole frame, so the echo leaves in one write.
    let mut frame = Vec::with_capacity(HEADER_SIZE + BODY_SIZE_MAX);
    loop {
        frame.resize(HEADER_SIZE, 0);
        if stream.read_exact(&mut frame).is_err() {
            return;
        }
        let Some(header) = frame.first_chunk::<HEADER_SIZE>() else {
            return;
        };
        let body_size = Header::decode(header).body_size as usize;
        if body_size > BODY_SIZE_MAX {
            return;
        }
        frame.resize(HEADER_SIZE + body_size, 0);
        if stream.read_exact(&mut frame[HEADER_SIZE..]).is_err() {
            return;
        }
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}
