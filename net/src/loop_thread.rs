//! What the server (`server.rs`) and the TigerBeetle gateway (`tigerbeetle/gateway.rs`) share
//! as mio loops on their own thread: the poll tokens, binding the listener next to a waker, and
//! the thread that the owner's handle stops and joins exactly once.
//!
//! Does not run a loop or know connections; each loop does.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

/// The listening socket's token.
const LISTENER: Token = Token(0);
/// The waker's token.
const WAKER: Token = Token(1);
/// Connection `i` has token `CONNECTION_TOKEN_FIRST + i`.
const CONNECTION_TOKEN_FIRST: usize = 2;

/// What an event's token names.
pub(crate) enum Source {
    Listener,
    Waker,
    /// The connection in this slot.
    Connection(u32),
}

impl Source {
    pub(crate) fn of(token: Token) -> Source {
        match token {
            LISTENER => Source::Listener,
            WAKER => Source::Waker,
            Token(token) => Source::Connection((token - CONNECTION_TOKEN_FIRST) as u32),
        }
    }
}

/// Waits up to `timeout` for events; an interrupted wait returns with none.
///
/// # Errors
///
/// The poller's error.
pub(crate) fn poll_events(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Option<Duration>,
) -> io::Result<()> {
    match poll.poll(events, timeout) {
        Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
        result => result,
    }
}

/// The token of the connection in slot `index`.
pub(crate) fn connection_token(index: u32) -> Token {
    Token(index as usize + CONNECTION_TOKEN_FIRST)
}

/// Sets `TCP_NODELAY` on an accepted stream (best effort: without it replies are only later)
/// and registers it for reading and writing under the token of slot `index`.
///
/// # Errors
///
/// The error of registering.
pub(crate) fn register_connection(
    poll: &Poll,
    stream: &mut TcpStream,
    index: u32,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let interest = Interest::READABLE | Interest::WRITABLE;
    poll.registry()
        .register(stream, connection_token(index), interest)
}

/// A poller with its waker and a listener registered for reading.
pub(crate) struct Listening {
    pub(crate) poll: Poll,
    pub(crate) waker: Waker,
    pub(crate) listener: TcpListener,
    /// The address bound (with the port the system chose for port 0).
    pub(crate) local_addr: SocketAddr,
}

/// Binds `addr` and registers the listener with a new poller that also has a waker.
///
/// # Errors
///
/// The error of binding or polling.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<Listening> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let mut listener = TcpListener::bind(addr)?;
    let local_addr = listener.local_addr()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    Ok(Listening {
        poll,
        waker,
        listener,
        local_addr,
    })
}

/// A loop's thread, joined by the first [`LoopThread::stop`].
pub(crate) struct LoopThread {
    /// Names the thread in the error if it panicked.
    what: &'static str,
    thread: Mutex<Option<JoinHandle<io::Result<()>>>>,
}

impl LoopThread {
    /// Spawns `body` on a thread called `name`.
    ///
    /// # Errors
    ///
    /// The error of spawning.
    pub(crate) fn spawn(
        name: &str,
        what: &'static str,
        body: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> io::Result<LoopThread> {
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(body)?;
        Ok(LoopThread {
            what,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Calls `signal` (which must make the loop end) and joins the thread; later calls return
    /// `Ok` at once without calling `signal`.
    ///
    /// # Errors
    ///
    /// The loop's error, or an error if the thread panicked.
    pub(crate) fn stop(&self, signal: impl FnOnce()) -> io::Result<()> {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        let Some(thread) = thread else {
            return Ok(());
        };
        signal();
        match thread.join() {
            Ok(result) => result,
            Err(_) => Err(io::Error::other(format!(
                "the {} thread panicked",
                self.what
            ))),
        }
    }
}

/// `Drop` (shuts the loop down) and `Debug` (the local address) for a loop's owner handle,
/// which has a `shutdown(&self) -> io::Result<()>` method and a `local_addr` field.
macro_rules! loop_handle_impls {
    ($handle:ident) => {
        impl Drop for $handle {
            fn drop(&mut self) {
                let _ = self.shutdown();
            }
        }

        impl std::fmt::Debug for $handle {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($handle))
                    .field("local_addr", &self.local_addr)
                    .finish()
            }
        }
    };
}
pub(crate) use loop_handle_impls;
