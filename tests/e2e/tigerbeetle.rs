//! TigerBeetle's official Python client (`tigerbeetle==0.17.8`, which wraps the native client
//! library every TigerBeetle language client shares) against `clearline start
//! --tigerbeetle-addr`, plus raw-socket checks of the protocol rules a client never breaks.
//!
//! The Python scenarios live in `tests/tigerbeetle/scenarios.py`; each asserts its results and
//! prints `ok NAME`. The client is installed into a virtual environment under `target/` on
//! first use (or taken from `CLEARLINE_TIGERBEETLE_PYTHON`), so the README's test command works
//! on a fresh machine; `.ci/run` installs it up front.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use clearline_net::tigerbeetle::header::{
    Command as TbCommand, Frame, RequestHeader, HEADER_SIZE, RELEASE,
};
use clearline_net::tigerbeetle::multi_batch::encode_trailer;

use crate::support::{closed_within, data_dir, raw, Options, Server};

/// How long one Python scenario may run (the first call alone takes about 0.6 s).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);
/// The client release the Python package sends.
const PACKAGE: &str = "tigerbeetle==0.17.8";

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python interpreter that can import the TigerBeetle client: `CLEARLINE_TIGERBEETLE_PYTHON`
/// if set, else a virtual environment in `target/tigerbeetle-venv`, created once (a lock
/// directory keeps parallel test processes from racing).
fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static CREATING: Mutex<()> = Mutex::new(());
    let result = PYTHON.get_or_init(|| {
        let _guard = CREATING.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(python) = std::env::var_os("CLEARLINE_TIGERBEETLE_PYTHON") {
            return Ok(PathBuf::from(python));
        }
        let venv = repository().join("target").join("tigerbeetle-venv");
        let python = venv.join("bin").join("python");
        if imports_client(&python) {
            return Ok(python);
        }
        let lock = repository().join("target").join("tigerbeetle-venv.lock");
        let deadline = Instant::now() + Duration::from_secs(600);
        while std::fs::create_dir(&lock).is_err() {
            if Instant::now() > deadline {
                return Err(format!("{} stayed locked", lock.display()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let created = create_venv(&venv, &python);
        let _ = std::fs::remove_dir(&lock);
        created.map(|()| python)
    });
    match result {
        Ok(python) => python.clone(),
        Err(error) => panic!(
            "the TigerBeetle Python client is needed for these tests and could not be \
             installed: {error}. Install it with `python3 -m venv target/tigerbeetle-venv && \
             target/tigerbeetle-venv/bin/pip install {PACKAGE}`, or point \
             CLEARLINE_TIGERBEETLE_PYTHON at a Python that has it."
        ),
    }
}

fn imports_client(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m, tigerbeetle; \
             assert m.version('tigerbeetle') == '0.17.8'",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn create_venv(venv: &Path, python: &Path) -> Result<(), String> {
    if imports_client(python) {
        return Ok(()); // Another process made it while this one waited for the lock.
    }
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let made = Command::new(&system_python)
        .args(["-m", "venv"])
        .arg(venv)
        .output()
        .map_err(|error| format!("{system_python} -m venv: {error}"))?;
    if !made.status.success() {
        return Err(format!(
            "{system_python} -m venv failed: {}",
            String::from_utf8_lossy(&made.stderr)
        ));
    }
    let installed = Command::new(python)
        .args(["-m", "pip", "install", "--quiet", PACKAGE])
        .output()
        .map_err(|error| format!("pip install: {error}"))?;
    if !installed.status.success() || !imports_client(python) {
        return Err(format!(
            "pip install {PACKAGE} failed: {}",
            String::from_utf8_lossy(&installed.stderr)
        ));
    }
    Ok(())
}

/// A port that was free a moment ago (a fixed port lets a restarted server keep it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

fn start(data: &Path, port: u16, options: Options) -> Server {
    let options = options.flag("tigerbeetle-addr", format!("127.0.0.1:{port}"));
    let server = Server::start(data, &options);
    assert!(
        server
            .output()
            .contains(&format!("tigerbeetle clients on 127.0.0.1:{port}")),
        "the server did not announce the tigerbeetle port; output:\n{}",
        server.output()
    );
    server
}

/// Waits for `child` (bounded), killing it on timeout.
fn wait_child(mut child: Child, what: &str) -> Output {
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    let output = child
        .wait_with_output()
        .expect("collect the scenario's output");
    assert!(
        Instant::now() < deadline,
        "{what} did not finish within {SCENARIO_TIMEOUT:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn scenario_command(name: &str, port: u16) -> Command {
    let mut command = Command::new(python());
    command
        .arg(repository().join("tests/tigerbeetle/scenarios.py"))
        .arg(name)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs one scenario to completion and asserts it passed.
fn run_scenario(name: &str, port: u16, server: &mut Server) {
    let child = scenario_command(name, port).spawn().expect("spawn python");
    let output = wait_child(child, name);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(&format!("ok {name}")),
        "scenario {name} failed:\n{stdout}{}\nserver output:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.output()
    );
    server.assert_running(name);
}

/// Starts a server with `options` on a fresh data directory and port, and runs the scenario
/// `name` against it; returns the server and its directory (kept until the test ends).
fn scenario_on_own_server(name: &str, options: Options) -> (Server, tempfile::TempDir) {
    let dir = data_dir();
    let port = free_port();
    let mut server = start(dir.path(), port, options);
    run_scenario(name, port, &mut server);
    (server, dir)
}

/// Stops `server` with SIGTERM (it must exit 0) and returns the number before `label` in its
/// closing line about TigerBeetle clients, and all it printed.
fn stat_after_stop(server: &mut Server, label: &str) -> (u64, String) {
    server.terminate_ok();
    let output = server.output();
    (stat(&output, label), output)
}

/// The number before `label` in the server's closing line about TigerBeetle clients.
fn stat(output: &str, label: &str) -> u64 {
    let line = output
        .lines()
        .find(|line| line.starts_with("clearline: tigerbeetle clients:"))
        .unwrap_or_else(|| panic!("no tigerbeetle summary in:\n{output}"));
    let before = line
        .split(label)
        .next()
        .filter(|before| before.len() < line.len())
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"));
    let number = before
        .trim_end()
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or_default();
    number
        .parse()
        .unwrap_or_else(|_| panic!("no number before {label:?} in {line:?}"))
}

#[test]
fn tigerbeetle_every_operation() {
    scenario_on_own_server("operations", Options::new("data"));
}

#[test]
fn tigerbeetle_batch_of_8189_transfers() {
    scenario_on_own_server("batch", Options::new("data"));
}

#[test]
fn tigerbeetle_concurrent_calls_merge_into_multi_batch_requests() {
    let (mut server, _dir) = scenario_on_own_server("concurrent", Options::new("data"));
    let (merged, output) = stat_after_stop(&mut server, "of several batches");
    assert!(merged >= 1, "no request carried several batches:\n{output}");
}

#[test]
fn tigerbeetle_linked_chains_and_two_phase_transfers() {
    scenario_on_own_server("linked_two_phase", Options::new("data"));
}

#[test]
fn tigerbeetle_client_survives_a_server_restart() {
    let dir = data_dir();
    let port = free_port();
    let mut server = start(dir.path(), port, Options::new("data"));
    let mut child = scenario_command("restart", port)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines_sender.send(line);
        }
    });
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the scenario never asked for the restart; it printed:\n{seen}")
        });
        seen.push_str(&line);
        seen.push('\n');
        if line == "restart now" {
            break;
        }
    }
    // SIGKILL: only what the journal made durable survives, and all of it was acknowledged.
    server.kill();
    server.restart();
    assert!(server
        .output()
        .contains(&format!("tigerbeetle clients on 127.0.0.1:{port}")));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(b"restarted\n").expect("tell the scenario");
    drop(stdin);
    let output = wait_child(child, "restart");
    for line in lines.try_iter() {
        seen.push_str(&line);
        seen.push('\n');
    }
    assert!(
        output.status.success() && seen.contains("ok restart"),
        "scenario restart failed:\n{seen}{}\nserver output:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.output()
    );
}

#[test]
fn tigerbeetle_eviction_is_the_clients_own_error() {
    let options = Options::new("data").flag("tigerbeetle-sessions-max", 1);
    let (mut server, _dir) = scenario_on_own_server("eviction", options);
    assert!(stat_after_stop(&mut server, "evictions").0 >= 1);
}

#[test]
fn tigerbeetle_idle_client_is_kept_alive_by_ping() {
    // The client pings every 30 s; connections idle for 40 s are closed. The scenario idles
    // 50 s and checks that its connection is the same one afterwards.
    let options = Options::new("data").flag("tigerbeetle-idle-timeout-ms", 40_000);
    let (mut server, _dir) = scenario_on_own_server("ping", options);
    assert!(stat_after_stop(&mut server, "pongs").0 >= 1);
}

/// The Python example in docs/tigerbeetle-compatibility.md runs as written (only its port is
/// replaced by this test's).
#[test]
fn tigerbeetle_documented_example_runs() {
    let doc = std::fs::read_to_string(repository().join("docs/tigerbeetle-compatibility.md"))
        .expect("read docs/tigerbeetle-compatibility.md");
    let start_marker = "```python\n";
    let begin = doc.find(start_marker).expect("a python block in the doc") + start_marker.len();
    let end = begin + doc[begin..].find("```").expect("the block ends");
    let example = &doc[begin..end];
    assert!(
        example.lines().count() <= 5,
        "the example has five lines:\n{example}"
    );
    assert!(example.contains("\"3000\""), "the example uses port 3000");
    let dir = data_dir();
    let port = free_port();
    let server = start(dir.path(), port, Options::new("data"));
    let script = example.replace("\"3000\"", &format!("\"{port}\""));
    let child = Command::new(python())
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let output = wait_child(child, "the documented example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("CREATED"),
        "the example failed:\n{stdout}{}\nserver output:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.output()
    );
}

// Raw-socket checks: what a well-behaved client never sends, and exact replies.

/// Opens a raw connection to `addr` and sends `registration` with its 256-byte body.
fn registered(addr: SocketAddr, registration: Raw) -> TcpStream {
    let mut stream = raw(addr, Duration::from_secs(10));
    stream
        .write_all(&registration.bytes(&[0u8; 256]))
        .expect("write");
    stream
}

/// A request message as a client builds it.
struct Raw {
    cluster: u128,
    client: u128,
    session: u64,
    request: u32,
    operation: u8,
    parent: u128,
    release: u32,
}

impl Raw {
    fn bytes(&self, body: &[u8]) -> Vec<u8> {
        let header = RequestHeader {
            frame: Frame {
                checksum: 0,
                checksum_body: 0,
                size: 0,
                view: 0,
                release: self.release,
                command: TbCommand::Request,
            },
            parent: self.parent,
            client: self.client,
            session: self.session,
            timestamp: 0,
            request: self.request,
            operation: self.operation,
            previous_request_latency: 0,
        };
        let mut bytes = header.encode(self.cluster, body).to_vec();
        bytes.extend_from_slice(body);
        bytes
    }
}

const REGISTER: Raw = Raw {
    cluster: 0,
    client: 0x77,
    session: 0,
    request: 0,
    operation: 2,
    parent: 0,
    release: RELEASE,
};

/// Reads one whole message (header and body), or `None` if the connection closed.
fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut message = vec![0u8; HEADER_SIZE];
    stream.read_exact(&mut message).ok()?;
    let size = u32::from_le_bytes([message[96], message[97], message[98], message[99]]) as usize;
    message.resize(size.max(HEADER_SIZE), 0);
    stream.read_exact(&mut message[HEADER_SIZE..]).ok()?;
    Some(message)
}

#[test]
fn tigerbeetle_raw_protocol_rules() {
    let dir = data_dir();
    let port = free_port();
    let mut server = start(dir.path(), port, Options::new("data"));
    let addr = format!("127.0.0.1:{port}").parse().expect("address");

    // A header whose checksum fails: the connection closes, nothing is answered.
    let mut garbage = raw(addr, Duration::from_secs(10));
    garbage.write_all(&[0x5a; HEADER_SIZE]).expect("write");
    assert!(closed_within(&mut garbage, Duration::from_secs(10)));

    // Registration, then the same registration again: the stored reply, byte for byte.
    let mut stream = registered(addr, REGISTER);
    let reply = read_message(&mut stream).expect("the registration reply");
    assert_eq!(reply[114], 8, "a reply");
    assert_eq!(reply.len(), 320);
    let limit = u32::from_le_bytes([reply[256], reply[257], reply[258], reply[259]]);
    assert_eq!(limit, 1_048_320, "the announced batch size limit");
    let session = u64::from_le_bytes(reply[216..224].try_into().expect("8 bytes"));
    assert!(session > 0);
    stream
        .write_all(&REGISTER.bytes(&[0u8; 256]))
        .expect("write");
    assert_eq!(read_message(&mut stream).as_ref(), Some(&reply));

    // A request from a client that never registered, with a session this server would have
    // given out: evicted with no_session (reason 1).
    let mut body = Vec::new();
    encode_trailer(&mut body, &[0], 16);
    let stranger = Raw {
        client: 0x99,
        session,
        request: 1,
        operation: 140,
        ..REGISTER
    }
    .bytes(&body);
    stream.write_all(&stranger).expect("write");
    let eviction = read_message(&mut stream).expect("an eviction");
    assert_eq!(eviction[114], 18);
    assert_eq!(eviction[255], 1);
    assert_eq!(&eviction[128..144], &0x99u128.to_le_bytes());

    // A lookup, then the same bytes again (the client's retry): the stored reply, byte for
    // byte, not a second execution.
    let context = u128::from_le_bytes(reply[160..176].try_into().expect("16 bytes"));
    let mut ids = 5u128.to_le_bytes().to_vec();
    encode_trailer(&mut ids, &[1], 16);
    let lookup = Raw {
        session,
        request: 1,
        operation: 140,
        parent: context,
        ..REGISTER
    }
    .bytes(&ids);
    stream.write_all(&lookup).expect("write");
    let found = read_message(&mut stream).expect("the lookup reply");
    assert_eq!((found[114], found[236]), (8, 140));
    assert_eq!(
        u32::from_le_bytes(found[232..236].try_into().expect("4")),
        1
    );
    assert_eq!(
        found.len(),
        256 + 128,
        "no account found: the trailer alone"
    );
    stream.write_all(&lookup).expect("write");
    assert_eq!(read_message(&mut stream).as_ref(), Some(&found));

    // A request of an operation that is not served (137, change events): reason 4. Its
    // parent is the lookup reply's context, so it passes the session rules.
    let context = u128::from_le_bytes(found[160..176].try_into().expect("16 bytes"));
    let change_events = Raw {
        session,
        request: 2,
        operation: 137,
        parent: context,
        ..REGISTER
    }
    .bytes(&[0u8; 64]);
    stream.write_all(&change_events).expect("write");
    let eviction = read_message(&mut stream).expect("an eviction");
    assert_eq!(eviction[114], 18);
    assert_eq!(eviction[255], 4);

    // Another cluster id: closed.
    let wrong_cluster = Raw {
        cluster: 5,
        client: 0x78,
        ..REGISTER
    };
    let mut other = registered(addr, wrong_cluster);
    assert!(closed_within(&mut other, Duration::from_secs(10)));

    // A client built from source sends release 65535.0.0: accepted, and echoed in the reply.
    let source_built_register = Raw {
        client: 0x79,
        release: 0xFFFF_0000,
        ..REGISTER
    };
    let mut source_built = registered(addr, source_built_register);
    let reply = read_message(&mut source_built).expect("the registration reply");
    assert_eq!(&reply[108..112], &0xFFFF_0000u32.to_le_bytes());
    server.assert_running("after bad input on the tigerbeetle port");
}

#[test]
fn tigerbeetle_connection_limit() {
    let dir = data_dir();
    let port = free_port();
    let options = Options::new("data").flag("tigerbeetle-connections-max", 1);
    let mut server = start(dir.path(), port, options);
    let addr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut first = registered(addr, REGISTER);
    assert!(
        read_message(&mut first).is_some(),
        "the first connection is served"
    );
    let mut second = raw(addr, Duration::from_secs(10));
    assert!(
        closed_within(&mut second, Duration::from_secs(10)),
        "a connection above the limit is closed"
    );
    // The first connection still works: its registration is resent on request.
    first
        .write_all(&REGISTER.bytes(&[0u8; 256]))
        .expect("write");
    assert!(read_message(&mut first).is_some());
    server.assert_running("after the connection limit");
}
