//! The 256-byte TigerBeetle message header: decoding what clients send (`request`,
//! `ping_client`) and encoding what the gateway sends (`reply`, `pong_client`, `eviction`).
//!
//! Layout (little-endian, offsets from the start of the message): 0 `checksum` u128 over bytes
//! 16..256, 16 padding, 32 `checksum_body` u128, 48 padding, 64 nonce (reserved), 80 `cluster`
//! u128, 96 `size` u32 (header included), 100 `epoch` u32, 104 `view` u32, 108 `release` u32,
//! 112 `protocol` u16, 114 `command` u8, 115 `replica` u8, 116..128 reserved, then 128 bytes that
//! depend on the command (see each type). Every reserved byte must be zero.
//!
//! Decoding checks the header checksum first and every zero field after it, so a header that
//! passes can be trusted for framing; the body checksum is checked once the body is in. Nothing
//! here panics on client bytes.

use crate::tigerbeetle::checksum::{checksum, CHECKSUM_EMPTY};

/// Bytes in a header.
pub const HEADER_SIZE: usize = 256;
/// The largest message, header included.
pub const MESSAGE_SIZE_MAX: usize = 1 << 20;
/// The largest body; also the batch size limit announced to clients at registration.
pub const BODY_SIZE_MAX: usize = MESSAGE_SIZE_MAX - HEADER_SIZE;
/// Release 0.17.8 as `major << 16 | minor << 8 | patch`: what the gateway sends as its own.
pub const RELEASE: u32 = 0x0000_1108;

/// The commands the gateway handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Command {
    /// A client's keep-alive and round-trip probe.
    PingClient = 3,
    /// The answer to a ping.
    PongClient = 4,
    /// A client's request.
    Request = 5,
    /// The answer to a request.
    Reply = 8,
    /// The server tells a client its session is gone; the client fails every pending call.
    Eviction = 18,
}

/// Why a client is evicted (the last byte of an eviction header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EvictionReason {
    /// The client has no session (never registered, evicted, or lost).
    NoSession = 1,
    /// The client's release is too old.
    ClientReleaseTooLow = 2,
    /// The client's release is newer than the server's.
    ClientReleaseTooHigh = 3,
    /// The operation number is not served.
    InvalidRequestOperation = 4,
    /// The body is not a valid encoding for the operation.
    InvalidRequestBody = 5,
    /// The body is larger than the announced batch size limit.
    InvalidRequestBodySize = 6,
    /// The request names an older session than the client's current one.
    SessionTooLow = 7,
    /// The request's release differs from the one the session registered with.
    SessionReleaseMismatch = 8,
}

/// Why a header cannot be trusted; the connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// `checksum` does not match bytes 16..256.
    ChecksumInvalid,
    /// `size` is below a header or above [`MESSAGE_SIZE_MAX`].
    SizeInvalid,
    /// The message is for another cluster.
    ClusterMismatch,
    /// A client sent a command it never sends (not a request or a ping).
    CommandUnexpected,
    /// A field that must be zero is not, or a field that must not be zero is.
    FieldInvalid,
}

fn u128_at(bytes: &[u8; HEADER_SIZE], offset: usize) -> u128 {
    let mut word = [0u8; 16];
    word.copy_from_slice(&bytes[offset..offset + 16]);
    u128::from_le_bytes(word)
}

fn u64_at(bytes: &[u8; HEADER_SIZE], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

fn u32_at(bytes: &[u8; HEADER_SIZE], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn u16_at(bytes: &[u8; HEADER_SIZE], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| *byte == 0)
}

/// The fields every inbound header shares, after the frame checks passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header checksum (also the request's identity for repeated requests).
    pub checksum: u128,
    /// The body checksum, checked against the body by [`Frame::check_body`].
    pub checksum_body: u128,
    /// Header plus body bytes.
    pub size: u32,
    /// The highest view the client has seen.
    pub view: u32,
    /// The client's release.
    pub release: u32,
    /// [`Command::Request`] or [`Command::PingClient`].
    pub command: Command,
}

impl Frame {
    /// Bytes of body that follow the header.
    pub fn body_size(&self) -> usize {
        self.size as usize - HEADER_SIZE
    }

    /// Whether `body` is the body this header announced.
    pub fn check_body(&self, body: &[u8]) -> bool {
        body.len() == self.body_size() && checksum(body) == self.checksum_body
    }
}

/// Checks what makes a header trustworthy for framing: the checksum, the size and the command.
/// Run this as soon as 256 bytes are in, before waiting for the body.
///
/// # Errors
///
/// The first rule that fails; the connection should be closed.
pub fn check_frame(bytes: &[u8; HEADER_SIZE], cluster: u128) -> Result<Frame, HeaderError> {
    if checksum(&bytes[16..]) != u128_at(bytes, 0) {
        return Err(HeaderError::ChecksumInvalid);
    }
    let size = u32_at(bytes, 96);
    if (size as usize) < HEADER_SIZE || size as usize > MESSAGE_SIZE_MAX {
        return Err(HeaderError::SizeInvalid);
    }
    if u128_at(bytes, 80) != cluster {
        return Err(HeaderError::ClusterMismatch);
    }
    let command = match bytes[114] {
        3 => Command::PingClient,
        5 => Command::Request,
        _ => return Err(HeaderError::CommandUnexpected),
    };
    // Paddings, nonce, epoch, protocol, replica and the frame's reserved bytes.
    let zeros = zero(&bytes[16..32])
        && zero(&bytes[48..80])
        && zero(&bytes[100..104])
        && u16_at(bytes, 112) == 0
        && bytes[115] == 0
        && zero(&bytes[116..128]);
    let release = u32_at(bytes, 108);
    if !zeros || release == 0 {
        return Err(HeaderError::FieldInvalid);
    }
    Ok(Frame {
        checksum: u128_at(bytes, 0),
        checksum_body: u128_at(bytes, 32),
        size,
        view: u32_at(bytes, 104),
        release,
        command,
    })
}

/// A client's request (command 5), fields from byte 128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// The frame fields.
    pub frame: Frame,
    /// The `context` of the reply to the client's previous request (0 for registration).
    pub parent: u128,
    /// The client's id (random, not 0).
    pub client: u128,
    /// The session number from the registration reply (0 for registration).
    pub session: u64,
    /// Always 0 from clients.
    pub timestamp: u64,
    /// The request number: 0 for registration, then 1, 2, 3, ...
    pub request: u32,
    /// The operation number.
    pub operation: u8,
    /// The client's latency of its previous request in microseconds (informational).
    pub previous_request_latency: u32,
}

#[cfg(test)]
impl RequestHeader {
    /// A request of `client`'s `session` with number `request` after `parent`, the frame
    /// fields and the rest zero (what the encoder fills in or clients leave 0).
    pub(crate) fn for_test(
        client: u128,
        session: u64,
        request: u32,
        operation: u8,
        parent: u128,
    ) -> RequestHeader {
        RequestHeader {
            frame: Frame {
                checksum: 0,
                checksum_body: 0,
                size: 0,
                view: 0,
                release: RELEASE,
                command: Command::Request,
            },
            parent,
            client,
            session,
            timestamp: 0,
            request,
            operation,
            previous_request_latency: 0,
        }
    }
}

impl RequestHeader {
    /// Decodes the command-specific part of a request whose frame passed [`check_frame`].
    ///
    /// # Errors
    ///
    /// [`HeaderError::FieldInvalid`] if a reserved byte is set or the client id is 0.
    pub fn decode(bytes: &[u8; HEADER_SIZE], frame: Frame) -> Result<RequestHeader, HeaderError> {
        if frame.command != Command::Request {
            return Err(HeaderError::CommandUnexpected);
        }
        let client = u128_at(bytes, 160);
        let reserved_zero = zero(&bytes[144..160]) && zero(&bytes[197..200]) && zero(&bytes[204..]);
        if !reserved_zero || client == 0 {
            return Err(HeaderError::FieldInvalid);
        }
        Ok(RequestHeader {
            frame,
            parent: u128_at(bytes, 128),
            client,
            session: u64_at(bytes, 176),
            timestamp: u64_at(bytes, 184),
            request: u32_at(bytes, 192),
            operation: bytes[196],
            previous_request_latency: u32_at(bytes, 200),
        })
    }

    /// Encodes a request as a client does: the body checksum, then the header checksum.
    /// Used by tests and tools that play the client.
    pub fn encode(&self, cluster: u128, body: &[u8]) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        let size = u32::try_from(HEADER_SIZE + body.len()).unwrap_or(u32::MAX);
        put_frame(
            &mut bytes,
            cluster,
            size,
            self.frame.view,
            self.frame.release,
        );
        bytes[114] = Command::Request as u8;
        bytes[128..144].copy_from_slice(&self.parent.to_le_bytes());
        bytes[160..176].copy_from_slice(&self.client.to_le_bytes());
        bytes[176..184].copy_from_slice(&self.session.to_le_bytes());
        bytes[184..192].copy_from_slice(&self.timestamp.to_le_bytes());
        bytes[192..196].copy_from_slice(&self.request.to_le_bytes());
        bytes[196] = self.operation;
        bytes[200..204].copy_from_slice(&self.previous_request_latency.to_le_bytes());
        seal(&mut bytes, checksum(body));
        bytes
    }
}

/// A client's ping (command 3), fields from byte 128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingHeader {
    /// The frame fields.
    pub frame: Frame,
    /// The client's id.
    pub client: u128,
    /// The client's monotonic clock, echoed in the pong.
    pub ping_timestamp_monotonic: u64,
    /// The client's session (0 before registration).
    pub session: u64,
}

impl PingHeader {
    /// Decodes the command-specific part of a ping whose frame passed [`check_frame`].
    ///
    /// # Errors
    ///
    /// [`HeaderError::FieldInvalid`] if the ping has a body, a reserved byte is set or the
    /// client id is 0.
    pub fn decode(bytes: &[u8; HEADER_SIZE], frame: Frame) -> Result<PingHeader, HeaderError> {
        if frame.command != Command::PingClient {
            return Err(HeaderError::CommandUnexpected);
        }
        let client = u128_at(bytes, 128);
        if frame.size as usize != HEADER_SIZE
            || !zero(&bytes[160..])
            || frame.view != 0
            || client == 0
        {
            return Err(HeaderError::FieldInvalid);
        }
        Ok(PingHeader {
            frame,
            client,
            ping_timestamp_monotonic: u64_at(bytes, 144),
            session: u64_at(bytes, 152),
        })
    }
}

/// Writes the frame fields every outbound header shares (replica 0, epoch 0, protocol 0).
fn put_frame(bytes: &mut [u8; HEADER_SIZE], cluster: u128, size: u32, view: u32, release: u32) {
    bytes[80..96].copy_from_slice(&cluster.to_le_bytes());
    bytes[96..100].copy_from_slice(&size.to_le_bytes());
    bytes[104..108].copy_from_slice(&view.to_le_bytes());
    bytes[108..112].copy_from_slice(&release.to_le_bytes());
}

/// Writes the body checksum, then the header checksum over bytes 16..256 (which cover it).
fn seal(bytes: &mut [u8; HEADER_SIZE], checksum_body: u128) {
    bytes[32..48].copy_from_slice(&checksum_body.to_le_bytes());
    let header_checksum = checksum(&bytes[16..]);
    bytes[0..16].copy_from_slice(&header_checksum.to_le_bytes());
}

/// A reply (command 8) to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The cluster id.
    pub cluster: u128,
    /// The view (always 0: a cluster of one never changes primary).
    pub view: u32,
    /// The request's release, echoed: clients abort on any other.
    pub release: u32,
    /// The checksum of the request answered.
    pub request_checksum: u128,
    /// The client's id.
    pub client: u128,
    /// The operation's global number; also `commit`, and for registration the session number.
    pub op: u64,
    /// Not 0, and increasing from one reply to the next.
    pub timestamp: u64,
    /// The request number answered.
    pub request: u32,
    /// The request's operation.
    pub operation: u8,
}

impl ReplyHeader {
    /// Encodes the reply header for `body`, returning the header and its `context`: the checksum
    /// of the finished header with `context` zero, which the client sends back as the `parent`
    /// of its next request.
    pub fn encode(&self, body: &[u8]) -> ([u8; HEADER_SIZE], u128) {
        let mut bytes = [0u8; HEADER_SIZE];
        let size = u32::try_from(HEADER_SIZE + body.len()).unwrap_or(u32::MAX);
        put_frame(&mut bytes, self.cluster, size, self.view, self.release);
        bytes[114] = Command::Reply as u8;
        bytes[128..144].copy_from_slice(&self.request_checksum.to_le_bytes());
        bytes[192..208].copy_from_slice(&self.client.to_le_bytes());
        bytes[208..216].copy_from_slice(&self.op.to_le_bytes());
        bytes[216..224].copy_from_slice(&self.op.to_le_bytes());
        bytes[224..232].copy_from_slice(&self.timestamp.to_le_bytes());
        bytes[232..236].copy_from_slice(&self.request.to_le_bytes());
        bytes[236] = self.operation;
        bytes[32..48].copy_from_slice(&checksum(body).to_le_bytes());
        let context = checksum(&bytes[16..]);
        bytes[160..176].copy_from_slice(&context.to_le_bytes());
        let header_checksum = checksum(&bytes[16..]);
        bytes[0..16].copy_from_slice(&header_checksum.to_le_bytes());
        (bytes, context)
    }
}

/// A pong (command 4) echoing a ping's timestamp.
pub fn pong(cluster: u128, release: u32, ping_timestamp_monotonic: u64) -> [u8; HEADER_SIZE] {
    let mut bytes = [0u8; HEADER_SIZE];
    put_frame(&mut bytes, cluster, HEADER_SIZE as u32, 0, release);
    bytes[114] = Command::PongClient as u8;
    bytes[128..136].copy_from_slice(&ping_timestamp_monotonic.to_le_bytes());
    seal(&mut bytes, CHECKSUM_EMPTY);
    bytes
}

/// An eviction (command 18) of `client` for `reason`.
pub fn eviction(
    cluster: u128,
    release: u32,
    client: u128,
    reason: EvictionReason,
) -> [u8; HEADER_SIZE] {
    let mut bytes = [0u8; HEADER_SIZE];
    put_frame(&mut bytes, cluster, HEADER_SIZE as u32, 0, release);
    bytes[114] = Command::Eviction as u8;
    bytes[128..144].copy_from_slice(&client.to_le_bytes());
    bytes[255] = reason as u8;
    seal(&mut bytes, CHECKSUM_EMPTY);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn pong_matches_the_reference_bytes() {
        let mut expected = hex("20bde935b527a097e42256e4293a78b7");
        expected.extend([0u8; 16]);
        expected.extend(hex("83cc600dc4e3e7e62d4055826174f149"));
        expected.extend([0u8; 48]);
        expected.extend(hex(concat!(
            "00010000", "00000000", "00000000", "08110000", "0000", "04", "00"
        )));
        expected.extend([0u8; 12]);
        expected.extend(hex("0100000000000000"));
        expected.extend([0u8; 120]);
        assert_eq!(expected.len(), HEADER_SIZE);
        assert_eq!(pong(0, RELEASE, 1).to_vec(), expected);
    }

    #[test]
    fn register_reply_matches_the_reference_checksums() {
        let mut body = [0u8; 64];
        body[..4].copy_from_slice(&1_048_320u32.to_le_bytes());
        let reply = ReplyHeader {
            cluster: 0,
            view: 0,
            release: RELEASE,
            request_checksum: u128::from_le_bytes([0x11; 16]),
            client: 0x2222,
            op: 2,
            timestamp: 1_700_000_000_000_000_000,
            request: 0,
            operation: 2,
        };
        let (bytes, context) = reply.encode(&body);
        assert_eq!(
            u128_at(&bytes, 32),
            0x191c_da32_2bd6_8ef8_082c_67fd_040e_d2b5
        );
        assert_eq!(context, 0xdcde_d910_4ae7_9c93_04d1_906a_279d_000c);
        assert_eq!(u128_at(&bytes, 160), context);
        assert_eq!(
            u128_at(&bytes, 0),
            0x5a0a_4f2e_436d_a58e_2085_49b6_0a74_6ca0
        );
        assert_eq!(u32_at(&bytes, 96), 320);
        assert_eq!(bytes[114], 8);
        assert_eq!(u64_at(&bytes, 208), 2);
        assert_eq!(u64_at(&bytes, 216), 2);
    }

    #[test]
    fn eviction_layout_and_checksums() {
        let bytes = eviction(7, RELEASE, 0xabcd, EvictionReason::SessionTooLow);
        let mut expected = [0u8; HEADER_SIZE];
        expected[32..48].copy_from_slice(&CHECKSUM_EMPTY.to_le_bytes());
        expected[80..96].copy_from_slice(&7u128.to_le_bytes());
        expected[96..100].copy_from_slice(&256u32.to_le_bytes());
        expected[108..112].copy_from_slice(&RELEASE.to_le_bytes());
        expected[114] = 18;
        expected[128..144].copy_from_slice(&0xabcdu128.to_le_bytes());
        expected[255] = 7;
        let header_checksum = checksum(&expected[16..]);
        expected[..16].copy_from_slice(&header_checksum.to_le_bytes());
        assert_eq!(bytes, expected);
    }

    fn request(body: &[u8]) -> [u8; HEADER_SIZE] {
        RequestHeader {
            previous_request_latency: 77,
            ..RequestHeader::for_test(0x1234, 9, 3, 146, 0x55)
        }
        .encode(0, body)
    }

    #[test]
    fn request_round_trips_and_its_layout_is_fixed() {
        let body = [5u8; 128];
        let bytes = request(&body);
        // Golden offsets of the request-specific part.
        assert_eq!(u128_at(&bytes, 128), 0x55);
        assert_eq!(u128_at(&bytes, 160), 0x1234);
        assert_eq!(u64_at(&bytes, 176), 9);
        assert_eq!(u32_at(&bytes, 192), 3);
        assert_eq!(bytes[196], 146);
        assert_eq!(u32_at(&bytes, 200), 77);
        assert_eq!(u32_at(&bytes, 96), 384);
        assert_eq!(u16_at(&bytes, 112), 0);
        let frame = check_frame(&bytes, 0).unwrap();
        assert!(frame.check_body(&body));
        assert!(!frame.check_body(&[6u8; 128]));
        let decoded = RequestHeader::decode(&bytes, frame).unwrap();
        assert_eq!(decoded.client, 0x1234);
        assert_eq!(decoded.session, 9);
        assert_eq!(decoded.request, 3);
        assert_eq!(decoded.operation, 146);
        assert_eq!(decoded.parent, 0x55);
    }

    #[test]
    fn untrustworthy_headers_are_refused() {
        let bytes = request(&[]);
        assert_eq!(check_frame(&bytes, 1), Err(HeaderError::ClusterMismatch));
        let mut flipped = bytes;
        flipped[200] ^= 1;
        assert_eq!(check_frame(&flipped, 0), Err(HeaderError::ChecksumInvalid));
        // A reserved byte set, resealed so only the field rule can catch it.
        let mut reserved = bytes;
        reserved[120] = 1;
        let sum = checksum(&reserved[16..]);
        reserved[..16].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(check_frame(&reserved, 0), Err(HeaderError::FieldInvalid));
        let mut command = bytes;
        command[114] = 8;
        let sum = checksum(&command[16..]);
        command[..16].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(
            check_frame(&command, 0),
            Err(HeaderError::CommandUnexpected)
        );
        let mut size = bytes;
        size[96..100].copy_from_slice(&(MESSAGE_SIZE_MAX as u32 + 1).to_le_bytes());
        let sum = checksum(&size[16..]);
        size[..16].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(check_frame(&size, 0), Err(HeaderError::SizeInvalid));
    }

    #[test]
    fn ping_decodes() {
        let mut bytes = [0u8; HEADER_SIZE];
        put_frame(&mut bytes, 0, 256, 0, RELEASE);
        bytes[114] = 3;
        bytes[128..144].copy_from_slice(&42u128.to_le_bytes());
        bytes[144..152].copy_from_slice(&1234u64.to_le_bytes());
        bytes[152..160].copy_from_slice(&5u64.to_le_bytes());
        seal(&mut bytes, CHECKSUM_EMPTY);
        let frame = check_frame(&bytes, 0).unwrap();
        let ping = PingHeader::decode(&bytes, frame).unwrap();
        assert_eq!(ping.client, 42);
        assert_eq!(ping.ping_timestamp_monotonic, 1234);
        assert_eq!(ping.session, 5);
    }
}
