//! Harness of the end-to-end tests: a `clearline start` child process with a kill-on-drop
//! guard, clients with timeouts, raw-socket helpers, record builders and a seeded generator.

#![allow(dead_code)] // Each topic uses a different part of the harness.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clearline_engine::{Account, AccountBalance, CreateResult, Operation, QueryFilter, Transfer};
use clearline_net::{check_reply_header, Client, FrameStatus, Header, ReplyFrame, HEADER_SIZE};
/// The seeded generator of the random tests (the workspace's one, so seeds replay alike).
pub use clearline_test_support::Rng;

/// How long one socket read or write of a test may block.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server may take to print its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after a signal.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The ledger every test account uses unless it says otherwise.
pub const LEDGER: u32 = 700;
/// The account and transfer code tests use.
pub const CODE: u16 = 10;

/// The engine capacities every test server starts with unless its [`Options`] give the flag.
const SMALL_CAPACITIES: [(&str, &str); 8] = [
    ("--accounts-max", "10000"),
    ("--transfers-max", "200000"),
    ("--transfers-pending-max", "20000"),
    ("--account-balances-max", "20000"),
    ("--markets-max", "4"),
    ("--orders-max", "1000"),
    ("--fills-max", "1000"),
    // History mode is the default: a filter for a million ids (2 MiB), not 128 Mi.
    ("--ids-max", "1048576"),
];

/// How a test wants its server started.
#[derive(Clone, Debug)]
pub struct Options {
    /// `data` or `none`.
    pub sync: &'static str,
    /// Extra flags (limits), as `["--connections-max", "8"]`.
    pub extra: Vec<String>,
    /// Stop reading the server's stdout once it listens, closing the pipe, as a log reader that
    /// goes away would.
    pub stdout_closed_after_start: bool,
}

impl Options {
    /// Small engine capacities so start-up is fast, with the given sync mode.
    pub fn new(sync: &'static str) -> Options {
        Options {
            sync,
            extra: vec!["--segment-size".to_string(), "8388608".to_string()],
            stdout_closed_after_start: false,
        }
    }

    /// Adds the switch `--name` (a flag without a value), once.
    pub fn switch(mut self, name: &str) -> Options {
        let flag = format!("--{name}");
        if !self.extra.contains(&flag) {
            self.extra.push(flag);
        }
        self
    }

    /// Adds `--name value`, replacing an earlier value of the same flag or the default capacity
    /// it names.
    pub fn flag(mut self, name: &str, value: impl ToString) -> Options {
        let flag = format!("--{name}");
        if let Some(at) = self.extra.iter().position(|given| *given == flag) {
            self.extra.drain(at..at + 2);
        }
        self.extra.push(flag);
        self.extra.push(value.to_string());
        self
    }
}

/// A `clearline start` child process. Dropping it kills the process (SIGKILL by pid) and reaps
/// it, so no server outlives its test even when the test panics.
pub struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data: PathBuf,
    options: Options,
    output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts a server on `data` (created if needed) on a port the system picks, and waits
    /// until it prints `clearline: listening on ADDR`.
    pub fn start(data: &Path, options: &Options) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_clearline"));
        command
            .arg("start")
            .arg("--data")
            .arg(data)
            .args(["--sync", options.sync]);
        // A port the system picks, unless the options name one.
        if !options.extra.iter().any(|given| given == "--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        // The options' own values replace these (a flag may be given only once).
        for (flag, value) in SMALL_CAPACITIES {
            if !options.extra.iter().any(|given| given == flag) {
                command.args([flag, value]);
            }
        }
        command
            .args(&options.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn clearline start");
        let output = Arc::new(Mutex::new(String::new()));
        let (addr_sender, addr_receiver) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let output = Arc::clone(&output);
            let close_after_start = options.stdout_closed_after_start;
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    push_line(&output, &line);
                    if let Some(addr) = line.strip_prefix("clearline: listening on ") {
                        let _ = addr_sender.send(addr.trim().to_string());
                        if close_after_start {
                            break; // Drops the reader: the server's stdout is now broken.
                        }
                    }
                }
            });
        }
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    push_line(&output, &line);
                }
            });
        }
        let mut server = Server {
            child: Some(child),
            addr: "127.0.0.1:1".parse().expect("an address"),
            data: data.to_path_buf(),
            options: options.clone(),
            output,
        };
        match addr_receiver.recv_timeout(START_TIMEOUT) {
            Ok(addr) => server.addr = addr.parse().expect("the printed address parses"),
            Err(_) => panic!(
                "the server did not print its address within {START_TIMEOUT:?}; output:\n{}",
                server.output()
            ),
        }
        server
    }

    /// Starts another server on the same data directory with the same options.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart only a stopped server");
        *self = Server::start(&self.data, &self.options);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running server").id()
    }

    /// What the server printed so far (stdout and stderr, interleaved by line).
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Panics with the server's output unless it is still running.
    pub fn assert_running(&mut self, context: &str) {
        if !self.is_running() {
            panic!("the server exited ({context}); output:\n{}", self.output());
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop("TERM")
    }

    /// SIGTERM; panics, showing the server's output, unless it exits 0.
    pub fn terminate_ok(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "SIGTERM exits 0: {status:?}\n{}",
            self.output()
        );
    }

    /// SIGTERM (it must exit 0), then a new server on the same data directory and options.
    pub fn restart_after_sigterm(&mut self) {
        self.terminate_ok();
        self.restart();
    }

    /// SIGINT (Ctrl-C), then wait (bounded) for the exit status.
    pub fn interrupt(&mut self) -> ExitStatus {
        self.stop("INT")
    }

    fn stop(&mut self, name: &str) -> ExitStatus {
        let sent = signal(self.pid(), name);
        assert!(sent, "SIG{name} could not be sent");
        let mut child = self.child.take().expect("a running server");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not exit within {STOP_TIMEOUT:?} of SIG{name}; output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A client connected to the server, with [`SOCKET_TIMEOUT`].
    pub fn client(&self) -> Client {
        connect(self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn push_line(output: &Mutex<String>, line: &str) {
    let mut output = output.lock().unwrap_or_else(|p| p.into_inner());
    output.push_str(line);
    output.push('\n');
}

/// Sends the signal named `name` (`TERM`, `INT`) to `pid` with the `kill` command.
fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// A client with [`SOCKET_TIMEOUT`] on both directions.
pub fn connect(addr: SocketAddr) -> Client {
    let client = Client::connect(addr).expect("connect to the server");
    client
        .set_timeout(Some(SOCKET_TIMEOUT))
        .expect("set socket timeouts");
    client
}

/// A raw socket with the given timeout on both directions.
pub fn raw(addr: SocketAddr, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the server");
    stream
        .set_read_timeout(Some(timeout))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(timeout))
        .expect("write timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a raw connection saw after a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A reply header that passed the client's checks.
    Reply(Header),
    /// End of stream or a reset: the server closed the connection.
    Closed,
    /// Bytes that do not form a valid reply header.
    Garbage,
    /// Nothing within the read timeout.
    Silence,
}

/// Reads one reply header (status replies have no body) or notices the close.
pub fn read_reply(stream: &mut TcpStream) -> Seen {
    let mut bytes = [0u8; HEADER_SIZE];
    let mut filled = 0;
    while filled < HEADER_SIZE {
        match stream.read(&mut bytes[filled..]) {
            Ok(0) => {
                return if filled == 0 {
                    Seen::Closed
                } else {
                    Seen::Garbage
                }
            }
            Ok(size) => filled += size,
            Err(error) if is_reset(&error) => return Seen::Closed,
            Err(error) if is_timeout(&error) => return Seen::Silence,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => panic!("unexpected read error: {error}"),
        }
    }
    match check_reply_header(&bytes) {
        Ok(header) => {
            if header.body_size > 0 {
                let mut body = vec![0u8; header.body_size as usize];
                if stream.read_exact(&mut body).is_err() {
                    return Seen::Garbage;
                }
            }
            Seen::Reply(header)
        }
        Err(_) => Seen::Garbage,
    }
}

/// Whether the server closed the stream: reads until end of stream or reset (discarding what
/// arrives) for at most `timeout`.
pub fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        match stream.read(&mut scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if is_reset(&error) => return true,
            Err(error) if is_timeout(&error) => return false,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => panic!("unexpected read error: {error}"),
        }
    }
}

/// Expects a reply with `status` echoing `request_id` and then the close of the connection.
pub fn expect_status_then_close(
    stream: &mut TcpStream,
    status: FrameStatus,
    request_id: u64,
    case: &str,
) {
    expect_status(stream, status, request_id, case);
    assert!(
        closed_within(stream, SOCKET_TIMEOUT),
        "{case}: the connection stayed open after {status}"
    );
}

/// Expects a reply with `status` echoing `request_id` (the connection may stay open).
pub fn expect_status(stream: &mut TcpStream, status: FrameStatus, request_id: u64, case: &str) {
    match read_reply(stream) {
        Seen::Reply(header) => {
            assert_eq!(
                FrameStatus::from_u8(header.status),
                Some(status),
                "{case}: reply status"
            );
            assert_eq!(header.request_id, request_id, "{case}: reply request id");
            assert_eq!(header.body_size, 0, "{case}: an error reply has no body");
            assert_eq!(header.count, 0, "{case}: an error reply has no results");
        }
        other => panic!("{case}: expected a {status} reply, saw {other:?}"),
    }
}

/// Whether `error` means the peer reset or aborted the connection.
pub fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// Whether `error` is a socket timeout.
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Writes `bytes`; returns whether all were written (a closed peer is not a failure here).
pub fn write_all_or_closed(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    match stream.write_all(bytes) {
        Ok(()) => true,
        Err(error) if is_reset(&error) => false,
        Err(error) => panic!("unexpected write error: {error}"),
    }
}

/// Half-closes the write side (FIN) without failing if the peer is already gone.
pub fn finish(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
}

/// Closes `stream` with a reset instead of a FIN: the kernel resets a socket closed with
/// unread input, so this waits (bounded) until some reply bytes have arrived unread, then drops
/// it. The caller must have sent a request that gets a reply.
pub fn reset_after_reply(stream: TcpStream) {
    stream
        .set_read_timeout(Some(SOCKET_TIMEOUT))
        .expect("read timeout");
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte) {
        Ok(size) => assert!(size > 0, "the server closed before replying"),
        Err(error) => panic!("no reply arrived to make the close a reset: {error}"),
    }
    drop(stream);
}

/// A request frame: header (both checksums sealed) and body.
pub fn frame(operation: Operation, request_id: u64, body: &[u8]) -> Vec<u8> {
    let header = Header::request(operation, request_id, body);
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// A header and body as one byte string, exactly as given (no resealing).
pub fn bytes_of(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// An account on `ledger` with `flags`.
pub fn account(id: u128, ledger: u32, flags: u16) -> Account {
    Account {
        id,
        ledger,
        code: CODE,
        flags,
        ..Account::default()
    }
}

/// A single-phase transfer.
pub fn transfer(id: u128, debit: u128, credit: u128, amount: u128, ledger: u32) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger,
        code: CODE,
        ..Transfer::default()
    }
}

/// The wire bytes of `records`, each written by `write` into its fixed size.
pub fn encode<const SIZE: usize, T>(records: &[T], write: impl Fn(&T, &mut [u8; SIZE])) -> Vec<u8> {
    let mut body = Vec::with_capacity(records.len() * SIZE);
    for record in records {
        let mut bytes = [0u8; SIZE];
        write(record, &mut bytes);
        body.extend_from_slice(&bytes);
    }
    body
}

/// The wire bytes of `accounts`.
pub fn encode_accounts(accounts: &[Account]) -> Vec<u8> {
    encode(accounts, Account::encode)
}

/// The wire bytes of `transfers`.
pub fn encode_transfers(transfers: &[Transfer]) -> Vec<u8> {
    encode(transfers, Transfer::encode)
}

/// The wire bytes of a list of ids.
pub fn encode_ids(ids: &[u128]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_le_bytes()).collect()
}

/// The wire bytes of a query filter.
pub fn encode_query(filter: &QueryFilter) -> Vec<u8> {
    let mut bytes = [0u8; QueryFilter::SIZE];
    filter.encode(&mut bytes);
    bytes.to_vec()
}

fn items<const SIZE: usize, T>(body: &[u8], decode: impl Fn(&[u8; SIZE]) -> T) -> Vec<T> {
    assert_eq!(body.len() % SIZE, 0, "reply body is whole items");
    body.chunks_exact(SIZE)
        .map(|chunk| decode(chunk.try_into().expect("chunk of the item size")))
        .collect()
}

/// Create results of a reply body.
pub fn results(body: &[u8]) -> Vec<CreateResult> {
    items(body, CreateResult::decode)
}

/// Accounts of a reply body.
pub fn accounts(body: &[u8]) -> Vec<Account> {
    items(body, Account::decode)
}

/// Transfers of a reply body.
pub fn transfers(body: &[u8]) -> Vec<Transfer> {
    items(body, Transfer::decode)
}

/// Balances of a reply body.
pub fn balances(body: &[u8]) -> Vec<AccountBalance> {
    items(body, AccountBalance::decode)
}

/// Sends one request and returns its reply, which must be ok and echo the request id.
pub fn request_ok(client: &mut Client, operation: Operation, body: &[u8]) -> ReplyFrame {
    let reply = client
        .request(operation, body)
        .unwrap_or_else(|error| panic!("{} failed: {error}", operation.name()));
    assert_eq!(
        reply.status(),
        FrameStatus::Ok,
        "{} status",
        operation.name()
    );
    assert_eq!(reply.header.operation, operation as u8, "reply operation");
    reply
}

/// Sends one create request of `events` (encoded accounts or transfers, 128 bytes each); there
/// must be one result per event, and every event must be created.
pub fn create_all(client: &mut Client, operation: Operation, events: &[u8]) {
    let reply = request_ok(client, operation, events);
    let results = results(&reply.body);
    assert_eq!(
        results.len(),
        events.len() / Account::SIZE,
        "{}: one result per event",
        operation.name()
    );
    assert!(
        results
            .iter()
            .all(|result| result.status == CreateResult::STATUS_CREATED),
        "{}: every event created",
        operation.name()
    );
}

/// Looks accounts up, in chunks of at most 8,191 ids; returns the ones found.
pub fn lookup_accounts(client: &mut Client, ids: &[u128]) -> Vec<Account> {
    lookup(client, Operation::LookupAccounts, ids, accounts)
}

/// Looks transfers up, in chunks of at most 8,191 ids; returns the ones found.
pub fn lookup_transfers(client: &mut Client, ids: &[u128]) -> Vec<Transfer> {
    lookup(client, Operation::LookupTransfers, ids, transfers)
}

/// Sends `operation` over `ids` in chunks of at most 8,191 and decodes what each reply found.
fn lookup<T>(
    client: &mut Client,
    operation: Operation,
    ids: &[u128],
    decode: fn(&[u8]) -> Vec<T>,
) -> Vec<T> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(8191) {
        let reply = request_ok(client, operation, &encode_ids(chunk));
        found.extend(decode(&reply.body));
    }
    found
}

/// A well-behaved request: the account `id` is looked up and must be found.
pub fn assert_served(client: &mut Client, id: u128, context: &str) {
    let reply = client
        .request(Operation::LookupAccounts, &encode_ids(&[id]))
        .unwrap_or_else(|error| panic!("{context}: the well-behaved client failed: {error}"));
    assert_eq!(reply.status(), FrameStatus::Ok, "{context}: status");
    let found = accounts(&reply.body);
    assert_eq!(found.len(), 1, "{context}: account {id} found");
    assert_eq!(found[0].id, id, "{context}: account id");
}

/// The seed of a test: `CLEARLINE_E2E_SEED` if set, else `default`. The returned guard prints
/// the seed if the test fails, so the run can be replayed.
pub fn seed(test: &'static str, default: u64) -> (u64, SeedGuard) {
    let seed = std::env::var("CLEARLINE_E2E_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default);
    (seed, SeedGuard { test, seed })
}

/// Prints the seed of a failing test when dropped during a panic.
pub struct SeedGuard {
    test: &'static str,
    seed: u64,
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} failed with seed {} (replay: CLEARLINE_E2E_SEED={})",
                self.test, self.seed, self.seed
            );
        }
    }
}

/// A fresh temporary data directory, removed when dropped.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("clearline-e2e-")
        .tempdir()
        .expect("a temporary directory")
}

/// A `clearline` command with its standard input closed and its output captured.
pub fn clearline_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_clearline"));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` to its end and returns what it printed; kills it and panics, showing its
/// output, when it is still running after `timeout`.
pub fn run_until_exit(command: &mut Command, timeout: Duration) -> Output {
    let child = command.spawn().expect("spawn clearline");
    let pid = child.id();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    if let Ok(output) = receiver.recv_timeout(timeout) {
        return output.expect("clearline output");
    }
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    let printed = match receiver.recv_timeout(STOP_TIMEOUT) {
        Ok(Ok(output)) => format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        _ => String::from("(no output)"),
    };
    panic!("{command:?} did not finish within {timeout:?}; it printed:\n{printed}");
}

/// Runs `clearline ARGS` within `timeout`; asserts it exits 0 and returns its stdout.
pub fn clearline_ok(args: &[&str], timeout: Duration) -> String {
    let output = run_until_exit(clearline_command().args(args), timeout);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "clearline {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `clearline repl --addr ADDR --command TEXT` with a deadline; returns its stdout.
pub fn repl(addr: std::net::SocketAddr, text: &str) -> String {
    let addr = addr.to_string();
    clearline_ok(
        &["repl", "--addr", &addr, "--command", text],
        Duration::from_secs(20),
    )
}

/// Starts a server (sync `none`) of its own, runs `script` through `clearline repl` and checks
/// that the output begins with one line starting with each of `prefixes`, in order. Returns the
/// data directory and the server, still running, and the whole output for further checks.
pub fn repl_script(script: &str, prefixes: &[&str]) -> (tempfile::TempDir, Server, String) {
    let data = data_dir();
    let server = Server::start(data.path(), &Options::new("none"));
    let output = repl(server.addr, script);
    let lines: Vec<&str> = output.lines().collect();
    assert!(lines.len() >= prefixes.len(), "a line per result\n{output}");
    for (line, prefix) in lines.iter().zip(prefixes) {
        assert!(
            line.starts_with(prefix),
            "`{line}` starts with `{prefix}`\n{output}"
        );
    }
    (data, server, output)
}

/// Names of the files in `dir` that start with `prefix` and end with `suffix`, sorted (none when
/// `dir` does not exist). Journal file names carry zero-padded numbers, so sorted is numeric.
pub fn files_named(dir: &Path, prefix: &str, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| {
                    entry
                        .expect("an entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .filter(|name| name.starts_with(prefix) && name.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
