//! Leadership against a real etcd server (Debian's `etcd-server`, 3.4), started on loopback for
//! each test: election, backups following the primary, failover on resignation and on lease
//! expiry, and a primary that loses etcd stopping its acknowledgements in time.
//!
//! Every wait polls with a generous limit; the only timing assertions are orderings of instants
//! and upper bounds far above what a healthy run needs.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clearline_replication::leadership::{
    safety_margin, LeaderInfo, Leadership, LeadershipConfig, Role,
};

/// etcd 3.4 raises shorter TTLs to 2 s, so this is the shortest the server really applies.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// Limit for anything that should take about one TTL on a healthy machine.
const WAIT_MAX: Duration = Duration::from_secs(30);

/// One etcd server on loopback with its own data directory; killed (by its pid) on drop.
struct Etcd {
    child: Option<Child>,
    client_url: String,
    _data: tempfile::TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address").port()
}

impl Etcd {
    fn start() -> Etcd {
        let data = tempfile::tempdir().expect("temporary directory");
        let client_port = free_port();
        let peer_port = free_port();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(data.path().join("etcd.log")).expect("etcd log file");
        let spawned = Command::new("etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", data.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => panic!(
                "cannot start `etcd` ({error}); these tests need the real server: run \
                 `bash .ci/run` (it installs it) or `apt-get install etcd-server`"
            ),
        };
        let mut etcd = Etcd {
            child: Some(child),
            client_url,
            _data: data,
        };
        let address = SocketAddr::from(([127, 0, 0, 1], client_port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            let exited = etcd
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "etcd exited at start ({status:?}); see {}",
                    etcd.log_path().display()
                );
            }
            assert!(
                started.elapsed() < WAIT_MAX,
                "etcd did not listen within {WAIT_MAX:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }

    fn log_path(&self) -> PathBuf {
        self._data.path().join("etcd.log")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL to this child's pid only.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn address(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn node(etcd: &Etcd, node_id: u64) -> Leadership {
    let port = u16::try_from(7000 + node_id * 10).expect("small node ids");
    Leadership::start(LeadershipConfig {
        endpoints: vec![etcd.client_url.clone()],
        group_key: "clearline-test/group-1".to_string(),
        node_id,
        client_address: address(port),
        peer_address: address(port + 1),
        lease_ttl: LEASE_TTL,
    })
    .expect("valid configuration")
}

/// Polls `condition` until it holds; panics with `what` (and the node's last error) after
/// [`WAIT_MAX`].
fn wait_until(what: &str, leadership: &Leadership, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < WAIT_MAX,
            "{what}: not within {WAIT_MAX:?}; role {:?}, last etcd error {:?}",
            leadership.role(),
            leadership.last_error()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for_primary(what: &str, leadership: &Leadership) -> u64 {
    wait_until(what, leadership, || leadership.primary_epoch().is_some());
    leadership.primary_epoch().expect("primary")
}

fn leader_seen_by(leadership: &Leadership) -> Option<LeaderInfo> {
    match leadership.role() {
        Role::Backup { primary } => primary,
        Role::Primary { .. } => None,
    }
}

#[test]
fn one_node_becomes_primary_and_may_acknowledge() {
    let etcd = Etcd::start();
    let first = node(&etcd, 1);
    let epoch = wait_for_primary("node 1 becomes primary", &first);
    assert!(epoch >= 1);
    let now = Instant::now();
    let deadline = first
        .stop_acknowledging_at()
        .expect("a primary has a deadline");
    assert!(
        deadline <= now + LEASE_TTL,
        "deadline {deadline:?} is past a full TTL"
    );
    // The lease is renewed: the deadline moves on while the node stays primary with one epoch.
    wait_until("the deadline moves on", &first, || {
        first
            .stop_acknowledging_at()
            .is_some_and(|later| later > deadline)
    });
    assert!(first.may_acknowledge(Instant::now()));
    assert_eq!(first.primary_epoch(), Some(epoch));
}

#[test]
fn second_node_is_backup_and_sees_the_primary() {
    let etcd = Etcd::start();
    let first = node(&etcd, 1);
    let epoch = wait_for_primary("node 1 becomes primary", &first);
    let second = node(&etcd, 2);
    wait_until("node 2 sees node 1", &second, || {
        leader_seen_by(&second).is_some()
    });
    let expected = LeaderInfo {
        node_id: 1,
        client_address: address(7010),
        peer_address: address(7011),
        epoch,
    };
    assert_eq!(leader_seen_by(&second), Some(expected));
    assert_eq!(second.stop_acknowledging_at(), None);
    assert!(!second.may_acknowledge(Instant::now()));
    assert_eq!(first.primary_epoch(), Some(epoch));
}

#[test]
fn failover_when_the_primary_resigns() {
    let etcd = Etcd::start();
    let first = node(&etcd, 1);
    let first_epoch = wait_for_primary("node 1 becomes primary", &first);
    let second = node(&etcd, 2);
    wait_until("node 2 sees node 1", &second, || {
        leader_seen_by(&second).is_some()
    });
    drop(first);
    let second_epoch = wait_for_primary("node 2 takes over after node 1 resigned", &second);
    assert!(
        second_epoch > first_epoch,
        "epoch {second_epoch} after {first_epoch}"
    );
    // A third node joining later follows the new primary with its epoch.
    let third = node(&etcd, 3);
    wait_until("node 3 sees node 2", &third, || {
        leader_seen_by(&third).is_some()
    });
    let seen = leader_seen_by(&third).expect("a leader");
    assert_eq!((seen.node_id, seen.epoch), (2, second_epoch));
}

#[test]
fn failover_when_the_primary_stops_renewing() {
    let etcd = Etcd::start();
    let first = node(&etcd, 1);
    let first_epoch = wait_for_primary("node 1 becomes primary", &first);
    let second = node(&etcd, 2);
    wait_until("node 2 sees node 1", &second, || {
        leader_seen_by(&second).is_some()
    });
    // Let at least one keep-alive be answered, so the deadline under test is a renewal's.
    let elected_deadline = first.stop_acknowledging_at().expect("node 1 is primary");
    wait_until("node 1 renews its lease", &first, || {
        first
            .stop_acknowledging_at()
            .is_some_and(|deadline| deadline > elected_deadline)
    });
    first.set_renewal_paused(true);
    let second_epoch = wait_for_primary("node 2 takes over after the lease expired", &second);
    assert!(
        second_epoch > first_epoch,
        "epoch {second_epoch} after {first_epoch}"
    );
    let Role::Primary {
        lease_granted_at, ..
    } = second.role()
    else {
        panic!("node 2 was primary a moment ago and nothing changed since");
    };
    // No split brain: the old primary stopped acknowledging before the new lease existed.
    let first_stopped_at = first.stop_acknowledging_at().expect("node 1 was primary");
    assert!(
        first_stopped_at < lease_granted_at,
        "node 1 could acknowledge until {first_stopped_at:?}, node 2's lease was granted at \
         {lease_granted_at:?}"
    );
    assert!(!first.may_acknowledge(Instant::now()));
    wait_until("node 1 gives up the primary role", &first, || {
        first.primary_epoch().is_none()
    });
    // Once it renews again it follows the new primary instead of taking anything back.
    first.set_renewal_paused(false);
    wait_until("node 1 sees node 2", &first, || {
        leader_seen_by(&first).is_some_and(|leader| leader.node_id == 2)
    });
    assert_eq!(second.primary_epoch(), Some(second_epoch));
}

#[test]
fn primary_stops_acknowledging_when_etcd_stops() {
    let mut etcd = Etcd::start();
    let first = node(&etcd, 1);
    wait_for_primary("node 1 becomes primary", &first);
    let stopped_at = Instant::now();
    etcd.stop();
    wait_until("node 1 stops acknowledging", &first, || {
        !first.may_acknowledge(Instant::now())
    });
    let deadline = first.stop_acknowledging_at().expect("node 1 was primary");
    // Every keep-alive the server answered was sent before it stopped, so the deadline is at
    // most one TTL (less the margin) after that.
    assert!(
        deadline <= stopped_at + LEASE_TTL - safety_margin(LEASE_TTL),
        "deadline {deadline:?} is too late for a server stopped at {stopped_at:?}"
    );
    wait_until("node 1 gives up the primary role", &first, || {
        first.primary_epoch().is_none()
    });
    assert!(first.errors_count() > 0);
}
