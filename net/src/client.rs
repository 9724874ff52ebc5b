//! A blocking client: one TCP connection, requests encoded with both checksums, replies checked
//! with the same codec as the server's, optionally pipelined.
//!
//! Invariants:
//! - Request ids are chosen here, start at 1 and increase by one per request.
//! - Replies are matched to requests strictly in send order; a reply whose id is not the oldest
//!   unanswered request's is an error (the connection can no longer be trusted).
//!
//! Does not retry, reconnect or interpret reply bodies; callers decode results.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use clearline_engine::{Account, CreateResult, Operation, State, Transfer};

use crate::frame::{
    check_reply_body, check_reply_header, FrameStatus, Header, ReplyInvalid, HEADER_SIZE,
};

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

    /// The journal sequence of the request (0 for reads).
    pub fn sequence(&self) -> u64 {
        self.header.sequence
    }
}

/// A blocking connection to a clearline server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    request_id_next: u64,
    in_flight: VecDeque<u64>,
}

impl Client {
    /// Connects to `addr` (with `TCP_NODELAY`, no timeouts).
    ///
    /// # Errors
    ///
    /// The error of connecting.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            request_id_next: 1,
            in_flight: VecDeque::new(),
        })
    }

    /// Sets the read and write timeouts of the socket (`None`: wait forever).
    ///
    /// # Errors
    ///
    /// The error of setting a socket option.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }

    /// The underlying socket (for tests that need to misbehave).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Requests sent and not yet answered.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends one request and waits for its reply.
    ///
    /// # Errors
    ///
    /// As [`Client::send`] and [`Client::receive`]; with requests already in flight, the reply
    /// received is the oldest one's, which is a [`ClientError::RequestIdMismatch`] here.
    pub fn request(
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
    /// events of `operation` in `body`. docs/protocol.md lets a client have 16 requests in flight.
    ///
    /// # Errors
    ///
    /// [`ClientError::BodyTooLarge`] over 4 GiB; [`ClientError::Io`] if writing fails.
    pub fn send(&mut self, operation: Operation, body: &[u8]) -> Result<u64, ClientError> {
        if u32::try_from(body.len()).is_err() {
            return Err(ClientError::BodyTooLarge);
        }
        let request_id = self.request_id_next;
        let header = Header::request(operation, request_id, body);
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
