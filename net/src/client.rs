//! A blocking client: one TCP connection, requests encoded with both checksums, replies checked
//! with the same codec as the server's, optionally pipelined, and redirects to the primary
//! followed (docs/protocol.md section 4.1).
//!
//! Invariants:
//! - Request ids are chosen here, start at 1 and increase by one per request, across
//!   reconnections.
//! - Replies are matched to requests strictly in send order; a reply whose id is not the oldest
//!   unanswered request's is an error (the connection can no longer be trusted).
//! - [`Client::request`] (and the typed helpers built on it) follows a `not_primary` reply only
//!   when no other request is in flight, at most [`RedirectPolicy::redirects_max`] times and
//!   not after [`RedirectPolicy::deadline`]; resending is safe because a `not_primary` request
//!   was not executed, and writes are idempotent by id anyway.
//!
//! Does not retry after a broken connection, and does not interpret reply bodies other than a
//! redirect; callers decode results. [`Client::send`] and [`Client::receive`] (pipelining)
//! return a `not_primary` reply as it is.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clearline_engine::{Account, CreateResult, Operation, State, Transfer};

use crate::frame::{
    check_redirect, check_reply_body, check_reply_header, FrameStatus, Header, Redirect,
    ReplyInvalid, RequestFlags, HEADER_SIZE,
};

/// How many redirects naming a primary one request follows before the client gives up.
pub const REDIRECTS_MAX: u32 = 8;
/// How long one request keeps looking for the primary, from when it was first sent.
pub const REDIRECT_DEADLINE: Duration = Duration::from_secs(10);
/// The first wait before asking the same server again when it knows of no primary (or when the
/// primary it named could not be reached); each wait doubles up to [`REDIRECT_WAIT_MAX`].
pub const REDIRECT_WAIT_INITIAL: Duration = Duration::from_millis(100);
/// The longest wait between two tries while no primary is known.
pub const REDIRECT_WAIT_MAX: Duration = Duration::from_secs(1);

/// What [`Client::request`] does with a `not_primary` reply. The default follows redirects
/// with the limits above; [`RedirectPolicy::disabled`] returns the reply to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedirectPolicy {
    /// Whether to follow redirects at all.
    pub follow: bool,
    /// The most redirects naming a primary that one request follows.
    pub redirects_max: u32,
    /// How long one request may spend looking for the primary, counted from its first send;
    /// once it has passed, the next `not_primary` reply ends the search.
    pub deadline: Duration,
    /// The first wait before a retry while no primary is known; it doubles after each retry.
    pub wait_initial: Duration,
    /// The longest wait between retries.
    pub wait_max: Duration,
}

impl RedirectPolicy {
    /// Do not follow: a `not_primary` reply is returned like any other.
    pub fn disabled() -> RedirectPolicy {
        RedirectPolicy {
            follow: false,
            ..RedirectPolicy::default()
        }
    }
}

impl Default for RedirectPolicy {
    fn default() -> RedirectPolicy {
        RedirectPolicy {
            follow: true,
            redirects_max: REDIRECTS_MAX,
            deadline: REDIRECT_DEADLINE,
            wait_initial: REDIRECT_WAIT_INITIAL,
            wait_max: REDIRECT_WAIT_MAX,
        }
    }
}

/// Which limit of the [`RedirectPolicy`] ended the search for the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// [`RedirectPolicy::redirects_max`] redirects were followed and the server still
    /// answered `not_primary`.
    RedirectsMax,
    /// [`RedirectPolicy::deadline`] passed.
    Deadline,
}

/// Why a request or reply failed.
#[derive(Debug)]
pub enum ClientError {
    /// The socket failed, timed out or was closed by the server.
    Io(io::Error),
    /// The reply frame failed a check.
    ReplyInvalid(ReplyInvalid),
    /// The reply answers another request than the oldest one waiting.
    RequestIdMismatch {
        /// The id of the oldest request waiting.
        expected: u64,
        /// The id in the reply.
        found: u64,
    },
    /// `receive` was called with no request waiting for a reply.
    NothingInFlight,
    /// The body is larger than a frame can carry.
    BodyTooLarge,
    /// A typed helper got a reply with a status other than ok.
    Status(FrameStatus),
    /// A typed helper got another number of items than the operation always answers with.
    ReplyCountUnexpected {
        /// The number the operation answers with.
        expected: u32,
        /// The number in the reply.
        found: u32,
    },
    /// The servers answered `not_primary` until a limit of the [`RedirectPolicy`]; the request
    /// was not executed.
    PrimaryNotFound {
        /// The limit reached.
        reason: GiveUp,
        /// Redirects naming a primary that were followed.
        redirects: u32,
        /// The last redirect received ([`Redirect::NO_PRIMARY`] if no primary was known).
        last: Redirect,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(error) => write!(f, "connection failed: {error}"),
            ClientError::ReplyInvalid(invalid) => write!(f, "{invalid}"),
            ClientError::RequestIdMismatch { expected, found } => {
                write!(f, "reply to request {found} while waiting for {expected}")
            }
            ClientError::NothingInFlight => f.write_str("no request is waiting for a reply"),
            ClientError::BodyTooLarge => f.write_str("request body larger than a frame"),
            ClientError::Status(status) => write!(f, "request refused: {status}"),
            ClientError::ReplyCountUnexpected { expected, found } => {
                write!(f, "reply with {found} items where {expected} were expected")
            }
            ClientError::PrimaryNotFound {
                reason,
                redirects,
                last,
            } => {
                let reason = match reason {
                    GiveUp::RedirectsMax => "too many redirects",
                    GiveUp::Deadline => "deadline passed",
                };
                write!(
                    f,
                    "no primary found ({reason}, {redirects} redirects followed); "
                )?;
                match last.primary_address() {
                    Some(address) => write!(
                        f,
                        "last named primary: node {} epoch {} at {address}",
                        last.node_id, last.epoch
                    ),
                    None => f.write_str("the server knows of no primary"),
                }
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> ClientError {
        ClientError::Io(error)
    }
}

/// A reply frame: its checked header and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyFrame {
    /// The reply header (checksums verified).
    pub header: Header,
    /// `header.count` results of the operation's reply item size (empty unless status is ok).
    pub body: Vec<u8>,
}

impl ReplyFrame {
    /// The frame status (the reply header was checked, so it is a known one).
    pub fn status(&self) -> FrameStatus {
        FrameStatus::from_u8(self.header.status).unwrap_or(FrameStatus::Ok)
    }

    /// The id of the request this answers.
    pub fn request_id(&self) -> u64 {
        self.header.request_id
    }

    /// The number of results in the body.
    pub fn count(&self) -> u32 {
        self.header.count
    }

    /// The engine timestamp of the request's last event (0 for reads).
    pub fn timestamp(&self) -> u64 {
        self.header.timestamp
    }

    /// The journal sequence of the request: 0 for reads, except reads sent with
    /// [`RequestFlags::READ_FROM_BACKUP`], where it is the sequence the state read reflects.
    pub fn sequence(&self) -> u64 {
        self.header.sequence
    }

    /// The redirect of a `not_primary` reply (`None` for any other status). The reply body was
    /// checked on receipt, so a `not_primary` reply always has one.
    pub fn redirect(&self) -> Option<Redirect> {
        if self.status() != FrameStatus::NotPrimary {
            return None;
        }
        check_redirect(&self.body).ok()
    }
}

/// A blocking connection to a clearline server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    /// The server `stream` is connected to; changes when a redirect is followed.
    server_addr: SocketAddr,
    request_id_next: u64,
    in_flight: VecDeque<u64>,
    /// Sent in the header of every request.
    flags: RequestFlags,
    redirect_policy: RedirectPolicy,
}

impl Client {
    /// Connects to `addr` (with `TCP_NODELAY`, no timeouts), following redirects by default
    /// ([`RedirectPolicy::default`]) and without [`RequestFlags::READ_FROM_BACKUP`].
    ///
    /// # Errors
    ///
    /// The error of connecting.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let server_addr = stream.peer_addr()?;
        Ok(Client {
            stream,
            server_addr,
            request_id_next: 1,
            in_flight: VecDeque::new(),
            flags: RequestFlags::NONE,
            redirect_policy: RedirectPolicy::default(),
        })
    }

    /// Sets the read and write timeouts of the socket (`None`: wait forever); a redirect's new
    /// connection keeps them, and the read timeout also bounds connecting to a primary.
    ///
    /// # Errors
    ///
    /// The error of setting a socket option.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }

    /// The server the client is connected to now (another than the one given to
    /// [`Client::connect`] once a redirect was followed).
    pub fn server_addr(&self) -> SocketAddr {
        self.server_addr
    }

    /// Whether the requests sent from now on carry [`RequestFlags::READ_FROM_BACKUP`]: a backup
    /// then serves the reads among them (their replies' `sequence` is the journal sequence the
    /// read reflects) instead of redirecting them to the primary. Writes still go to the
    /// primary. A server from before replication refuses the flag with
    /// `header_reserved_not_zero` and closes the connection.
    pub fn set_read_from_backup(&mut self, read_from_backup: bool) {
        self.flags = self
            .flags
            .with(RequestFlags::READ_FROM_BACKUP, read_from_backup);
    }

    /// The flags sent with every request.
    pub fn request_flags(&self) -> RequestFlags {
        self.flags
    }

    /// What [`Client::request`] does with `not_primary` replies from now on.
    pub fn set_redirect_policy(&mut self, policy: RedirectPolicy) {
        self.redirect_policy = policy;
    }

    /// The redirect policy in use.
    pub fn redirect_policy(&self) -> RedirectPolicy {
        self.redirect_policy
    }

    /// The underlying socket (for tests that need to misbehave).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Requests sent and not yet answered.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends one request and waits for its reply, following redirects to the primary as the
    /// [`RedirectPolicy`] says (docs/protocol.md section 4.1):
    ///
    /// - `not_primary` naming a primary: connect to it and send the request again there, at
    ///   most `redirects_max` times. If the primary cannot be reached, wait as below and ask
    ///   the server that named it again.
    /// - `not_primary` with no primary known: wait `wait_initial`, doubling up to `wait_max`,
    ///   and send the request again to the same server.
    ///
    /// Both stop once `deadline` has passed since the first send. Sending again is safe: a
    /// `not_primary` request was not executed, and writes are idempotent by id (a create sent
    /// twice answers `exists` the second time). With following disabled, or with other
    /// requests in flight, a `not_primary` reply is returned as it is.
    ///
    /// # Errors
    ///
    /// As [`Client::send`] and [`Client::receive`]; with requests already in flight, the reply
    /// received is the oldest one's, which is a [`ClientError::RequestIdMismatch`] here.
    /// [`ClientError::PrimaryNotFound`] when a limit of the policy ended the search.
    pub fn request(
        &mut self,
        operation: Operation,
        body: &[u8],
    ) -> Result<ReplyFrame, ClientError> {
        let policy = self.redirect_policy;
        let start = Instant::now();
        let mut redirects = 0;
        let mut wait = policy.wait_initial;
        loop {
            let reply = self.request_once(operation, body)?;
            let Some(redirect) = reply.redirect() else {
                return Ok(reply);
            };
            if !policy.follow || !self.in_flight.is_empty() {
                return Ok(reply);
            }
            let elapsed = start.elapsed();
            let give_up = |reason| ClientError::PrimaryNotFound {
                reason,
                redirects,
                last: redirect,
            };
            let Some(remaining) = policy
                .deadline
                .checked_sub(elapsed)
                .filter(|r| !r.is_zero())
            else {
                return Err(give_up(GiveUp::Deadline));
            };
            if let Some(primary) = redirect.primary_address() {
                if redirects >= policy.redirects_max {
                    return Err(give_up(GiveUp::RedirectsMax));
                }
                redirects += 1;
                if self.reconnect(primary, remaining).is_ok() {
                    continue;
                }
                // The primary named is unreachable (it may have just failed): ask the server
                // that named it again after a wait, as if it knew of no primary.
            }
            std::thread::sleep(wait.min(remaining));
            wait = wait.saturating_mul(2).min(policy.wait_max);
        }
    }

    /// Replaces the connection with one to `addr`, with the same socket timeouts, connecting
    /// for at most `timeout` (or the read timeout, if shorter). Keeps the old connection if
    /// connecting fails.
    fn reconnect(&mut self, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
        assert!(
            self.in_flight.is_empty(),
            "reconnecting would lose requests in flight"
        );
        let read_timeout = self.stream.read_timeout()?;
        let write_timeout = self.stream.write_timeout()?;
        let timeout = read_timeout.map_or(timeout, |socket| socket.min(timeout));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(read_timeout)?;
        stream.set_write_timeout(write_timeout)?;
        self.stream = stream;
        self.server_addr = addr;
        Ok(())
    }

    /// One request and its reply on the current connection.
    fn request_once(
        &mut self,
        operation: Operation,
        body: &[u8],
    ) -> Result<ReplyFrame, ClientError> {
        let request_id = self.send(operation, body)?;
        let reply = self.receive()?;
        if reply.request_id() != request_id {
            return Err(ClientError::RequestIdMismatch {
                expected: request_id,
                found: reply.request_id(),
            });
        }
        Ok(reply)
    }

    /// Sends one request without waiting; returns its id. The count is the number of whole
    /// events of `operation` in `body`; the header carries the client's request flags.
    /// docs/protocol.md lets a client have 16 requests in flight. Does not follow redirects.
    ///
    /// # Errors
    ///
    /// [`ClientError::BodyTooLarge`] over 4 GiB; [`ClientError::Io`] if writing fails.
    pub fn send(&mut self, operation: Operation, body: &[u8]) -> Result<u64, ClientError> {
        if u32::try_from(body.len()).is_err() {
            return Err(ClientError::BodyTooLarge);
        }
        let request_id = self.request_id_next;
        let header = Header::request_flagged(operation, request_id, self.flags, body);
        self.send_frame(&header, body)?;
        Ok(request_id)
    }

    /// Sends a frame with a header built by the caller (which may be invalid on purpose) and
    /// expects a reply to it in order.
    ///
    /// # Errors
    ///
    /// [`ClientError::Io`] if writing fails.
    pub fn send_frame(&mut self, header: &Header, body: &[u8]) -> Result<(), ClientError> {
        let bytes = header.encode();
        self.stream.write_all(&bytes)?;
        self.stream.write_all(body)?;
        self.in_flight.push_back(header.request_id);
        self.request_id_next = self.request_id_next.max(header.request_id.wrapping_add(1));
        Ok(())
    }

    /// Receives the reply to the oldest request in flight.
    ///
    /// # Errors
    ///
    /// [`ClientError::NothingInFlight`]; [`ClientError::Io`] if reading fails or the server
    /// closed the connection; [`ClientError::ReplyInvalid`] if the reply fails a check;
    /// [`ClientError::RequestIdMismatch`] if it answers another request.
    pub fn receive(&mut self) -> Result<ReplyFrame, ClientError> {
        let Some(&expected) = self.in_flight.front() else {
            return Err(ClientError::NothingInFlight);
        };
        let mut bytes = [0u8; HEADER_SIZE];
        self.stream.read_exact(&mut bytes)?;
        let header = check_reply_header(&bytes).map_err(ClientError::ReplyInvalid)?;
        // The size is at most BODY_SIZE_MAX, checked with the header.
        let mut body = vec![0u8; header.body_size as usize];
        self.stream.read_exact(&mut body)?;
        check_reply_body(&header, &body).map_err(ClientError::ReplyInvalid)?;
        if header.request_id != expected {
            return Err(ClientError::RequestIdMismatch {
                expected,
                found: header.request_id,
            });
        }
        self.in_flight.pop_front();
        Ok(ReplyFrame { header, body })
    }

    /// Creates `accounts`; one result per account, in order.
    ///
    /// # Errors
    ///
    /// As [`Client::request`], and [`ClientError::Status`] for a refused request.
    pub fn create_accounts(
        &mut self,
        accounts: &[Account],
    ) -> Result<Vec<CreateResult>, ClientError> {
        self.typed(
            Operation::CreateAccounts,
            accounts,
            Account::encode,
            CreateResult::decode,
        )
    }

    /// Creates `transfers`; one result per transfer, in order.
    ///
    /// # Errors
    ///
    /// As [`Client::request`], and [`ClientError::Status`] for a refused request.
    pub fn create_transfers(
        &mut self,
        transfers: &[Transfer],
    ) -> Result<Vec<CreateResult>, ClientError> {
        self.typed(
            Operation::CreateTransfers,
            transfers,
            Transfer::encode,
            CreateResult::decode,
        )
    }

    /// Looks accounts up by id; the accounts found, in request order.
    ///
    /// # Errors
    ///
    /// As [`Client::request`], and [`ClientError::Status`] for a refused request.
    pub fn lookup_accounts(&mut self, ids: &[u128]) -> Result<Vec<Account>, ClientError> {
        self.typed(Operation::LookupAccounts, ids, encode_id, Account::decode)
    }

    /// Looks transfers up by id; the transfers found, in request order.
    ///
    /// # Errors
    ///
    /// As [`Client::request`], and [`ClientError::Status`] for a refused request.
    pub fn lookup_transfers(&mut self, ids: &[u128]) -> Result<Vec<Transfer>, ClientError> {
        self.typed(Operation::LookupTransfers, ids, encode_id, Transfer::decode)
    }

    /// The server's state: its state hash, clock and counts (`get_state`). Computing the hash
    /// walks the server's whole in-memory state, so this is an operator's read, not one to
    /// send with every request (docs/protocol.md section 6.14).
    ///
    /// # Errors
    ///
    /// As [`Client::request`]; [`ClientError::Status`] for a refused request (a server that
    /// predates `get_state` answers `operation_unknown`); [`ClientError::ReplyCountUnexpected`]
    /// if the reply does not hold exactly one `State`.
    pub fn get_state(&mut self) -> Result<State, ClientError> {
        let states = self.typed(
            Operation::GetState,
            &[[0u8; 16]],
            |reserved, bytes| *bytes = *reserved,
            State::decode,
        )?;
        match states.as_slice() {
            [state] => Ok(*state),
            _ => Err(ClientError::ReplyCountUnexpected {
                expected: 1,
                found: u32::try_from(states.len()).unwrap_or(u32::MAX),
            }),
        }
    }

    fn typed<Event, Item, const EVENT_SIZE: usize, const ITEM_SIZE: usize>(
        &mut self,
        operation: Operation,
        events: &[Event],
        encode: impl Fn(&Event, &mut [u8; EVENT_SIZE]),
        decode: impl Fn(&[u8; ITEM_SIZE]) -> Item,
    ) -> Result<Vec<Item>, ClientError> {
        assert_eq!(operation.event_size(), EVENT_SIZE);
        assert_eq!(operation.reply_item_size(), ITEM_SIZE);
        let mut body = Vec::with_capacity(events.len() * EVENT_SIZE);
        for event in events {
            let mut bytes = [0u8; EVENT_SIZE];
            encode(event, &mut bytes);
            body.extend_from_slice(&bytes);
        }
        let reply = self.request(operation, &body)?;
        if reply.status() != FrameStatus::Ok {
            return Err(ClientError::Status(reply.status()));
        }
        // The reply header was checked: the body is `count` whole items.
        let items = reply
            .body
            .chunks_exact(ITEM_SIZE)
            .filter_map(|chunk| chunk.first_chunk());
        Ok(items.map(decode).collect())
    }
}

fn encode_id(id: &u128, bytes: &mut [u8; 16]) {
    *bytes = id.to_le_bytes();
}
