//! Client sessions: who is registered, which request each client may send next, and the reply
//! to resend when a client repeats its last request.
//!
//! Rules, per client id (TigerBeetle's, for a cluster of one):
//! - registration (operation 2, request 0) from an unknown client opens a session whose number
//!   is the registration's op number; a repeated registration gets the stored reply again;
//! - a request from an unknown client is evicted with `no_session`, except that a session
//!   number below this server's first op belongs to an earlier run of this server (sessions
//!   are kept in memory only): that session is resumed, so a client survives a restart;
//! - a session number below the stored one is evicted (`session_too_low`), above it dropped;
//!   a release other than the registered one is evicted (`session_release_mismatch`);
//! - the same request number with the same checksum gets the stored reply; a request still
//!   executing, an older request or a different checksum is dropped (the client retries on its
//!   own timer);
//! - the next request number whose `parent` is the last reply's `context` is executed.
//!
//! The table holds at most `sessions_max` sessions; registering into a full table evicts the
//! least recently used session that is not executing. Lookups use a hash map, but nothing
//! depends on its iteration order.

use std::collections::HashMap;

use crate::tigerbeetle::header::{EvictionReason, RequestHeader};

/// The operation number of registration.
pub const OPERATION_REGISTER: u8 = 2;

/// One client's session.
#[derive(Debug)]
pub struct Session {
    /// The client's id.
    pub client: u128,
    /// The session number (the registration's op).
    pub session: u64,
    /// The release the client registered with.
    pub release: u32,
    /// The last request number answered (0: the registration).
    pub request: u32,
    /// The checksum of that request.
    pub request_checksum: u128,
    /// The `context` of its reply: the `parent` the next request must carry.
    pub context: u128,
    /// The request being executed, as (number, checksum), if any.
    pub executing: Option<(u32, u128)>,
    /// The whole reply message to the last request (header and body); empty when none is kept
    /// (a resumed session).
    pub reply: Vec<u8>,
    /// The connection the client's latest message came in on, as the gateway names it.
    pub connection: Option<(u32, u32)>,
    /// When the session last registered or executed, for least-recently-used eviction.
    pub used: u64,
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Open a session: answer with [`SessionTable::register`].
    Register,
    /// Execute it: the session is marked executing until [`SessionTable::finish`] or
    /// [`SessionTable::abandon`].
    Execute,
    /// Send the stored reply again.
    Resend,
    /// Ignore it.
    Drop,
    /// Send an eviction.
    Evict(EvictionReason),
}

/// The sessions, with their limit.
#[derive(Debug)]
pub struct SessionTable {
    sessions: Vec<Session>,
    index: HashMap<u128, usize>,
    sessions_max: usize,
    /// Session numbers below this come from an earlier run of the server.
    op_first: u64,
    clock: u64,
}

impl SessionTable {
    /// An empty table for at most `sessions_max` sessions of a server whose first op number is
    /// `op_first`.
    ///
    /// # Panics
    ///
    /// If `sessions_max` is 0.
    pub fn new(sessions_max: usize, op_first: u64) -> SessionTable {
        assert!(sessions_max > 0, "sessions_max");
        SessionTable {
            sessions: Vec::with_capacity(sessions_max),
            index: HashMap::with_capacity(sessions_max),
            sessions_max,
            op_first,
            clock: 0,
        }
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The session of `client`, if open.
    pub fn get_mut(&mut self, client: u128) -> Option<&mut Session> {
        let index = *self.index.get(&client)?;
        self.sessions.get_mut(index)
    }

    /// Decides what to do with `request`, which arrived on `connection`. For [`Decision::Execute`]
    /// the session is marked executing (and a resumed session is opened).
    pub fn decide(&mut self, request: &RequestHeader, connection: (u32, u32)) -> Decision {
        if request.timestamp != 0 {
            return Decision::Drop;
        }
        if request.operation == OPERATION_REGISTER {
            return self.decide_register(request, connection);
        }
        if request.request == 0 || request.session == 0 {
            return Decision::Drop;
        }
        let op_first = self.op_first;
        let Some(session) = self.get_mut(request.client) else {
            if request.session >= op_first {
                return Decision::Evict(EvictionReason::NoSession);
            }
            // A session from an earlier run of this server: resume it from what the request
            // says, so the client carries on after a restart.
            if !self.make_room() {
                return Decision::Drop;
            }
            self.insert(Session {
                client: request.client,
                session: request.session,
                release: request.frame.release,
                request: request.request - 1,
                request_checksum: 0,
                context: request.parent,
                executing: Some((request.request, request.frame.checksum)),
                reply: Vec::new(),
                connection: Some(connection),
                used: 0,
            });
            self.touch(request.client);
            return Decision::Execute;
        };
        session.connection = Some(connection);
        if request.session < session.session {
            return Decision::Evict(EvictionReason::SessionTooLow);
        }
        if request.session > session.session {
            return Decision::Drop;
        }
        if request.frame.release != session.release {
            return Decision::Evict(EvictionReason::SessionReleaseMismatch);
        }
        if session.executing.is_some() {
            // One request in flight per client: its repeats are dropped, not queued.
            return Decision::Drop;
        }
        if request.request == session.request {
            let same = request.frame.checksum == session.request_checksum;
            if same && !session.reply.is_empty() {
                return Decision::Resend;
            }
            return Decision::Drop;
        }
        if request.request != session.request.wrapping_add(1) || request.parent != session.context {
            return Decision::Drop;
        }
        session.executing = Some((request.request, request.frame.checksum));
        self.touch(request.client);
        Decision::Execute
    }

    fn decide_register(&mut self, request: &RequestHeader, connection: (u32, u32)) -> Decision {
        if request.request != 0 || request.session != 0 || request.parent != 0 {
            return Decision::Drop;
        }
        if let Some(session) = self.get_mut(request.client) {
            session.connection = Some(connection);
            if session.executing.is_some() {
                return Decision::Drop;
            }
            if session.request == 0
                && session.request_checksum == request.frame.checksum
                && !session.reply.is_empty()
            {
                return Decision::Resend;
            }
            // A new registration under a known id replaces the old session.
            self.remove(request.client);
        }
        if !self.make_room() {
            return Decision::Drop;
        }
        Decision::Register
    }

    /// Opens the session decided by [`Decision::Register`]: its number is `op`, and `reply` /
    /// `context` are the registration reply and its context.
    pub fn register(
        &mut self,
        request: &RequestHeader,
        connection: (u32, u32),
        op: u64,
        reply: Vec<u8>,
        context: u128,
    ) {
        self.insert(Session {
            client: request.client,
            session: op,
            release: request.frame.release,
            request: 0,
            request_checksum: request.frame.checksum,
            context,
            executing: None,
            reply,
            connection: Some(connection),
            used: 0,
        });
        self.touch(request.client);
    }

    /// Ends the execution of `client`'s request, storing its reply. Returns the old reply
    /// buffer for reuse.
    pub fn finish(&mut self, client: u128, reply: Vec<u8>, context: u128) -> Option<Vec<u8>> {
        let session = self.get_mut(client)?;
        let (request, checksum) = session.executing.take()?;
        session.request = request;
        session.request_checksum = checksum;
        session.context = context;
        Some(std::mem::replace(&mut session.reply, reply))
    }

    /// Ends the execution of `client`'s request without a reply: the client's retry executes
    /// it again.
    pub fn abandon(&mut self, client: u128) {
        if let Some(session) = self.get_mut(client) {
            session.executing = None;
        }
    }

    /// Whether a ping from `client` with `session` should be answered with an eviction: the
    /// session number is one this server gave out and no longer has.
    pub fn ping_evicts(&self, client: u128, session: u64) -> bool {
        session >= self.op_first && !self.index.contains_key(&client)
    }

    fn touch(&mut self, client: u128) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(session) = self.get_mut(client) {
            session.used = clock;
        }
    }

    fn insert(&mut self, session: Session) {
        self.index.insert(session.client, self.sessions.len());
        self.sessions.push(session);
    }

    fn remove(&mut self, client: u128) {
        let Some(index) = self.index.remove(&client) else {
            return;
        };
        self.sessions.swap_remove(index);
        if let Some(moved) = self.sessions.get(index) {
            self.index.insert(moved.client, index);
        }
    }

    /// Frees a slot if the table is full by evicting the least recently used idle session.
    /// Returns false if every session is executing.
    fn make_room(&mut self) -> bool {
        if self.sessions.len() < self.sessions_max {
            return true;
        }
        let oldest = self
            .sessions
            .iter()
            .filter(|session| session.executing.is_none())
            .min_by_key(|session| session.used)
            .map(|session| session.client);
        match oldest {
            Some(client) => {
                self.remove(client);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECTION: (u32, u32) = (0, 0);
    const OP_FIRST: u64 = 1_000;

    fn request(client: u128, session: u64, number: u32, parent: u128, sum: u128) -> RequestHeader {
        let operation = if number == 0 { OPERATION_REGISTER } else { 146 };
        let mut header = RequestHeader::for_test(client, session, number, operation, parent);
        header.frame.checksum = sum;
        header.frame.size = 256;
        header
    }

    /// What `table` decides on a request of client 9 (see [`request`]) from `CONNECTION`.
    fn decide(
        table: &mut SessionTable,
        session: u64,
        number: u32,
        parent: u128,
        sum: u128,
    ) -> Decision {
        table.decide(&request(9, session, number, parent, sum), CONNECTION)
    }

    fn registered(table: &mut SessionTable, client: u128, op: u64) {
        let register = request(client, 0, 0, 0, 77);
        assert_eq!(table.decide(&register, CONNECTION), Decision::Register);
        table.register(&register, CONNECTION, op, vec![1], 500);
    }

    #[test]
    fn the_request_chain_is_followed() {
        let mut table = SessionTable::new(4, OP_FIRST);
        registered(&mut table, 9, OP_FIRST);
        // A repeated registration gets the stored reply.
        assert_eq!(decide(&mut table, 0, 0, 0, 77), Decision::Resend);
        // Wrong parent, skipped number: dropped.
        assert_eq!(decide(&mut table, OP_FIRST, 1, 499, 1), Decision::Drop);
        assert_eq!(decide(&mut table, OP_FIRST, 2, 500, 1), Decision::Drop);
        let first = request(9, OP_FIRST, 1, 500, 1);
        assert_eq!(table.decide(&first, CONNECTION), Decision::Execute);
        // Its repeat while executing is dropped, not queued.
        assert_eq!(table.decide(&first, CONNECTION), Decision::Drop);
        table.finish(9, vec![2], 600);
        assert_eq!(table.decide(&first, CONNECTION), Decision::Resend);
        assert_eq!(decide(&mut table, OP_FIRST, 1, 500, 2), Decision::Drop);
        assert_eq!(decide(&mut table, OP_FIRST, 2, 600, 3), Decision::Execute);
        table.abandon(9);
        assert_eq!(decide(&mut table, OP_FIRST, 2, 600, 3), Decision::Execute);
    }

    #[test]
    fn evictions() {
        let mut table = SessionTable::new(1, OP_FIRST);
        registered(&mut table, 9, OP_FIRST + 1);
        assert_eq!(
            decide(&mut table, OP_FIRST, 1, 500, 1),
            Decision::Evict(EvictionReason::SessionTooLow)
        );
        let mut other_release = request(9, OP_FIRST + 1, 1, 500, 1);
        other_release.frame.release = 0xFFFF_0000;
        assert_eq!(
            table.decide(&other_release, CONNECTION),
            Decision::Evict(EvictionReason::SessionReleaseMismatch)
        );
        // A second client takes the only slot; the first is gone.
        registered(&mut table, 10, OP_FIRST + 2);
        assert_eq!(
            decide(&mut table, OP_FIRST + 1, 1, 500, 1),
            Decision::Evict(EvictionReason::NoSession)
        );
        assert!(table.ping_evicts(9, OP_FIRST + 1));
        assert!(!table.ping_evicts(10, OP_FIRST + 2));
    }

    #[test]
    fn a_session_from_an_earlier_run_is_resumed() {
        let mut table = SessionTable::new(2, OP_FIRST);
        let resumed = request(9, 5, 7, 321, 1);
        assert_eq!(table.decide(&resumed, CONNECTION), Decision::Execute);
        table.finish(9, vec![3], 700);
        assert_eq!(decide(&mut table, 5, 8, 700, 2), Decision::Execute);
        assert!(!table.ping_evicts(11, 5));
    }
}
