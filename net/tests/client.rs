//! The blocking client against a scripted peer: it checks every reply with the codec, matches
//! replies to requests in order, and reports each failure as its own error. Also the echo
//! baseline, which returns frames unchanged.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;

use clearline_engine::{Operation, State};
use clearline_net::echo::EchoServer;
use clearline_net::{
    Client, ClientError, FrameStatus, Header, ReplyInvalid, BODY_SIZE_MAX, HEADER_SIZE,
};

/// A peer that reads one request frame and answers with what `answer` makes of its header.
fn scripted(answer: fn(&Header) -> Vec<u8>) -> (Client, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("an address");
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accepts");
        stream
            .set_read_timeout(Some(support::SOCKET_TIMEOUT))
            .expect("sets a timeout");
        let mut bytes = [0u8; HEADER_SIZE];
        stream.read_exact(&mut bytes).expect("a request header");
        let header = Header::decode(&bytes);
        let mut body = vec![0u8; header.body_size as usize];
        stream.read_exact(&mut body).expect("a request body");
        // The client may already have given up on a bad reply and closed: ignore errors.
        let _ = stream.write_all(&answer(&header));
        // End the stream: a client that wants more sees the end instead of waiting.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.read(&mut [0u8; 1]);
    });
    (support::client(addr), peer)
}

fn reply_bytes(request: &Header, change: impl Fn(&mut Header), body: &[u8]) -> Vec<u8> {
    let mut header = Header {
        operation: request.operation,
        request_id: request.request_id,
        body_size: body.len() as u32,
        count: (body.len() / 16) as u32,
        ..Header::zeroed()
    };
    change(&mut header);
    header.seal(body);
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn run(answer: fn(&Header) -> Vec<u8>) -> Result<clearline_net::ReplyFrame, ClientError> {
    let (mut client, peer) = scripted(answer);
    let result = client.request(Operation::CreateAccounts, &[1u8; 128]);
    drop(client);
    peer.join().expect("the peer ends");
    result
}

#[test]
fn valid_reply_is_returned_with_its_body() {
    let reply = run(|request| reply_bytes(request, |_| {}, &[0xEEu8; 16])).expect("valid");
    assert_eq!(reply.status(), FrameStatus::Ok);
    assert_eq!(reply.request_id(), 1, "request ids start at 1");
    assert_eq!(reply.count(), 1);
    assert_eq!(reply.body, vec![0xEEu8; 16]);
}

#[test]
fn reply_with_another_request_id_is_an_error() {
    let result = run(|request| reply_bytes(request, |h| h.request_id += 1, &[0u8; 16]));
    assert!(matches!(
        result,
        Err(ClientError::RequestIdMismatch {
            expected: 1,
            found: 2
        })
    ));
}

#[test]
fn reply_with_a_bad_header_checksum_is_an_error() {
    let result = run(|request| {
        let mut bytes = reply_bytes(request, |_| {}, &[0u8; 16]);
        bytes[40] ^= 1;
        bytes
    });
    let expected = ReplyInvalid::Header(FrameStatus::HeaderChecksumInvalid);
    assert!(matches!(result, Err(ClientError::ReplyInvalid(invalid)) if invalid == expected));
}

#[test]
fn reply_with_a_bad_body_checksum_is_an_error() {
    let result = run(|request| {
        let mut bytes = reply_bytes(request, |_| {}, &[0u8; 16]);
        bytes[HEADER_SIZE + 3] ^= 1;
        bytes
    });
    let expected = ReplyInvalid::BodyChecksumInvalid;
    assert!(matches!(result, Err(ClientError::ReplyInvalid(invalid)) if invalid == expected));
}

#[test]
fn reply_whose_size_does_not_match_its_count_is_an_error() {
    let result = run(|request| reply_bytes(request, |h| h.count = 2, &[0u8; 16]));
    let expected = ReplyInvalid::BodySizeInvalid;
    assert!(matches!(result, Err(ClientError::ReplyInvalid(invalid)) if invalid == expected));
}

#[test]
fn server_closing_is_an_io_error() {
    let result = run(|_| Vec::new());
    assert!(matches!(result, Err(ClientError::Io(_))));
}

#[test]
fn receive_with_nothing_in_flight_is_an_error() {
    let echo = EchoServer::start("127.0.0.1:0".parse().expect("an address")).expect("starts");
    let mut client = support::client(echo.local_addr());
    assert!(matches!(
        client.receive(),
        Err(ClientError::NothingInFlight)
    ));
    assert_eq!(client.in_flight_count(), 0);
}

#[test]
fn echo_returns_frames_unchanged() {
    let echo = EchoServer::start("127.0.0.1:0".parse().expect("an address")).expect("starts");
    let mut stream = TcpStream::connect(echo.local_addr()).expect("connects");
    stream
        .set_read_timeout(Some(support::SOCKET_TIMEOUT))
        .expect("sets a timeout");
    for size in [128, 8 * 128, BODY_SIZE_MAX - 64] {
        let body: Vec<u8> = (0..size).map(|index| index as u8).collect();
        let header = Header::request(Operation::CreateTransfers, size as u64, &body);
        let frame = support::frame_bytes(&header, &body);
        stream.write_all(&frame).expect("sends");
        let mut echoed = vec![0u8; frame.len()];
        stream.read_exact(&mut echoed).expect("the echo");
        assert!(echoed == frame, "frame of {size} bytes changed");
    }
}

#[test]
fn typed_helpers_encode_events_and_decode_results() {
    use clearline_engine::{Account, Transfer};
    let harness = support::Harness::start();
    let mut client = support::client(harness.addr);
    let accounts = [Account::default(), Account::default(), Account::default()];
    assert_eq!(client.create_accounts(&accounts).expect("results").len(), 3);
    assert_eq!(
        client
            .create_transfers(&[Transfer::default()])
            .expect("results")
            .len(),
        1
    );
    // The fake core answers one item per id.
    assert_eq!(client.lookup_accounts(&[1, 2]).expect("accounts").len(), 2);
    assert_eq!(
        client
            .lookup_transfers(&[u128::MAX])
            .expect("transfers")
            .len(),
        1
    );
    harness.control.status.store(
        FrameStatus::StorageFull as u8,
        std::sync::atomic::Ordering::Release,
    );
    let refused = client.create_accounts(&accounts);
    assert!(matches!(
        refused,
        Err(ClientError::Status(FrameStatus::StorageFull))
    ));
}

/// `get_state` sends one event of 16 zero bytes and decodes the one `State` of the reply; a
/// reply with another number of items is an error.
#[test]
fn get_state_decodes_one_state_and_refuses_other_counts() {
    fn state_reply(request: &Header, states: usize) -> Vec<u8> {
        assert_eq!(request.operation, Operation::GetState as u8);
        assert_eq!((request.count, request.body_size), (1, 16));
        let mut body = Vec::new();
        for _ in 0..states {
            let mut bytes = [0u8; State::SIZE];
            State {
                state_hash: 0x0123_4567_89AB_CDEF_0011_2233_4455_6677,
                timestamp: 42,
                accounts_count: 3,
                transfers_count: 7,
                ..State::default()
            }
            .encode(&mut bytes);
            body.extend_from_slice(&bytes);
        }
        reply_bytes(request, |header| header.count = states as u32, &body)
    }
    let (mut client, peer) = scripted(|request| state_reply(request, 1));
    let state = client.get_state().expect("one state");
    drop(client);
    peer.join().expect("the peer ends");
    assert_eq!(state.state_hash, 0x0123_4567_89AB_CDEF_0011_2233_4455_6677);
    assert_eq!((state.timestamp, state.accounts_count), (42, 3));
    assert_eq!(state.transfers_count, 7);

    for (states, answer) in [
        (
            0u32,
            (|request| state_reply(request, 0)) as fn(&Header) -> Vec<u8>,
        ),
        (2, |request| state_reply(request, 2)),
    ] {
        let (mut client, peer) = scripted(answer);
        let result = client.get_state();
        drop(client);
        peer.join().expect("the peer ends");
        assert!(
            matches!(
                result,
                Err(ClientError::ReplyCountUnexpected { expected: 1, found }) if found == states
            ),
            "{result:?}"
        );
    }
}
