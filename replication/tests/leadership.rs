//! Leadership against a real etcd server (Debian's `etcd-server`, 3.4, through the shared
//! harness in `clearline_test_support::etcd`), started on loopback for each test: election,
//! backups following the primary, failover on resignation and on lease expiry, a primary that
//! loses etcd stopping its acknowledgements in time, who takes over in a group of three (the best
//! position among a quorum of candidacies, never a lone backup), and how fast a backup notices a
//! deletion of the leader key (through its watch, also after etcd restarted).
//!
//! Every wait polls with a generous limit. The timing assertions are orderings of instants, upper
//! bounds far above what a healthy run needs, and one comparison made to fail without the watch:
//! the sum of several detection delays against a single poll interval.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clearline_replication::leadership::{
    candidacy_window, poll_interval, safety_margin, CandidacyVerdict, LeaderInfo, Leadership,
    LeadershipConfig, Position, Role, StartError,
};
use clearline_test_support::etcd::Etcd;

/// etcd 3.4 raises shorter TTLs to 2 s, so this is the shortest the server really applies.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// Limit for anything that should take about one TTL on a healthy machine.
const WAIT_MAX: Duration = Duration::from_secs(30);

fn address(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The size of a test group and how many backups acknowledge.
#[derive(Clone, Copy)]
struct Group {
    size: u32,
    ack_backups: u32,
}

/// A group of one: campaigns as soon as the leader key is gone.
const ALONE: Group = Group {
    size: 1,
    ack_backups: 0,
};
/// Two nodes, one acknowledging backup: a lone backup holds every acknowledged record, so one
/// candidacy (its own) is enough.
const PAIR: Group = Group {
    size: 2,
    ack_backups: 1,
};
/// Three nodes, one acknowledging backup: a takeover needs two candidacies.
const TRIO: Group = Group {
    size: 3,
    ack_backups: 1,
};

fn config(client_url: &str, node_id: u64, group: Group, position: Position) -> LeadershipConfig {
    let port = u16::try_from(7000 + node_id * 10).expect("small node ids");
    LeadershipConfig {
        endpoints: vec![client_url.to_string()],
        group_key: "clearline-test/group-1".to_string(),
        group_size: group.size,
        ack_backups: group.ack_backups,
        position: Arc::new(move || position),
        node_id,
        client_address: address(port),
        peer_address: address(port + 1),
        lease_ttl: LEASE_TTL,
    }
}

fn node_in(etcd: &Etcd, node_id: u64, group: Group, position: Position) -> Leadership {
    Leadership::start(config(&etcd.client_url, node_id, group, position))
        .expect("valid configuration")
}

fn node(etcd: &Etcd, node_id: u64, group: Group) -> Leadership {
    node_in(etcd, node_id, group, Position::default())
}

fn position(epoch: u64, sequence: u64) -> Position {
    Position { epoch, sequence }
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
    let first = node(&etcd, 1, ALONE);
    let epoch = wait_for_primary("node 1 becomes primary", &first);
    assert!(epoch >= 1);
    // A group of one never needs a candidacy.
    assert_eq!(first.last_candidacy(), None);
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
    let first = node(&etcd, 1, PAIR);
    let epoch = wait_for_primary("node 1 becomes primary", &first);
    let second = node(&etcd, 2, PAIR);
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
    let first = node(&etcd, 1, PAIR);
    let first_epoch = wait_for_primary("node 1 becomes primary", &first);
    let second = node(&etcd, 2, PAIR);
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
    let third = node(&etcd, 3, PAIR);
    wait_until("node 3 sees node 2", &third, || {
        leader_seen_by(&third).is_some()
    });
    let seen = leader_seen_by(&third).expect("a leader");
    assert_eq!((seen.node_id, seen.epoch), (2, second_epoch));
}

#[test]
fn failover_when_the_primary_stops_renewing() {
    let etcd = Etcd::start();
    let first = node(&etcd, 1, PAIR);
    let first_epoch = wait_for_primary("node 1 becomes primary", &first);
    let second = node(&etcd, 2, PAIR);
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
    let first = node(&etcd, 1, ALONE);
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

#[test]
fn start_refuses_a_group_out_of_range() {
    // Refused before any etcd call, so no server is needed.
    let url = "http://127.0.0.1:9";
    for (size, ack_backups, expected) in [
        (0, 0, "GroupSizeOutOfRange"),
        (17, 1, "GroupSizeOutOfRange"),
        (1, 1, "AckBackupsMustBeBelowGroupSize"),
        (3, 3, "AckBackupsMustBeBelowGroupSize"),
        (3, 4, "AckBackupsMustBeBelowGroupSize"),
    ] {
        let group = Group { size, ack_backups };
        let refused = Leadership::start(config(url, 1, group, Position::default()));
        let error: StartError = match refused {
            Ok(_) => panic!("group {size}, ack_backups {ack_backups} was accepted"),
            Err(error) => error,
        };
        assert_eq!(
            format!("{error:?}"),
            expected,
            "group {size}, ack_backups {ack_backups}"
        );
    }
}

/// The position of the first primary in the groups of three below: better than every backup's
/// in epoch and in sequence, so it wins the first election whichever node looks first.
const FIRST_POSITION: Position = Position {
    epoch: 9,
    sequence: 10_000,
};

/// Starts nodes 1 and 2 of a group of three together and waits until node 1 (the better
/// position) is primary and node 2 follows it; returns them with node 1's epoch.
fn elect_node_1(etcd: &Etcd, second_position: Position) -> (Leadership, Leadership, u64) {
    let first = node_in(etcd, 1, TRIO, FIRST_POSITION);
    let second = node_in(etcd, 2, TRIO, second_position);
    let epoch = wait_for_primary("node 1 becomes primary with node 2's candidacy", &first);
    wait_until("node 2 sees node 1", &second, || {
        leader_seen_by(&second).is_some_and(|leader| leader.node_id == 1)
    });
    (first, second, epoch)
}

/// Waits until `backup` follows `primary_id` with `epoch`, and checks it was never primary.
fn wait_for_follower(backup: &Leadership, primary_id: u64, epoch: u64) {
    wait_until("the other backup follows the new primary", backup, || {
        leader_seen_by(backup).is_some_and(|leader| leader.node_id == primary_id)
    });
    let leader = leader_seen_by(backup).expect("a leader");
    assert_eq!(leader.epoch, epoch);
    assert_eq!(
        backup.stop_acknowledging_at(),
        None,
        "the backup was primary at some point"
    );
}

#[test]
fn later_epoch_takes_over_despite_a_higher_node_id() {
    let etcd = Etcd::start();
    // Node 2 has many more records, but from an older primary; node 3 has the newer epoch. A
    // rule by lowest node id, or by sequence first, would pick node 2.
    let (first, second, first_epoch) = elect_node_1(&etcd, position(4, 1000));
    let third = node_in(&etcd, 3, TRIO, position(5, 10));
    wait_until("node 3 sees node 1", &third, || {
        leader_seen_by(&third).is_some_and(|leader| leader.node_id == 1)
    });
    drop(first);
    let third_epoch = wait_for_primary("node 3 takes over", &third);
    assert!(
        third_epoch > first_epoch,
        "epoch {third_epoch} after {first_epoch}"
    );
    wait_for_follower(&second, 3, third_epoch);
    let outcome = third.last_candidacy().expect("node 3 stood as a candidate");
    assert_eq!(outcome.verdict, CandidacyVerdict::Campaigned, "{outcome}");
    assert_eq!(outcome.round, first_epoch, "{outcome}");
    assert_eq!(outcome.heard_count, 2, "{outcome}");
    assert_eq!(outcome.required_count, 2, "{outcome}");
    assert_eq!(outcome.position, position(5, 10), "{outcome}");
}

#[test]
fn higher_position_takes_over_despite_looking_later() {
    let etcd = Etcd::start();
    let (first, second, first_epoch) = elect_node_1(&etcd, position(1, 100));
    let third = node_in(&etcd, 3, TRIO, position(1, 50));
    wait_until("node 3 sees node 1", &third, || {
        leader_seen_by(&third).is_some_and(|leader| leader.node_id == 1)
    });
    // Node 2, the better one, is stalled when the primary goes: node 3 looks first, alone. A
    // rule by first look, or by highest node id, would pick node 3.
    second.set_renewal_paused(true);
    drop(first);
    wait_until("node 3 looks at the candidacies", &third, || {
        third.last_candidacy().is_some()
    });
    let alone = third.last_candidacy().expect("node 3 looked");
    assert_eq!(
        alone.verdict,
        CandidacyVerdict::TooFewCandidacies,
        "{alone}"
    );
    assert_eq!((alone.heard_count, alone.required_count), (1, 2), "{alone}");
    assert_eq!(third.primary_epoch(), None);
    second.set_renewal_paused(false);
    let second_epoch = wait_for_primary("node 2 takes over once it looks", &second);
    assert!(
        second_epoch > first_epoch,
        "epoch {second_epoch} after {first_epoch}"
    );
    wait_for_follower(&third, 2, second_epoch);
}

#[test]
fn lone_backup_does_not_take_over_without_a_quorum() {
    let etcd = Etcd::start();
    // Node 3 of the group never starts: node 2 cannot know whether it missed records that node 3
    // acknowledged, so it must not take over.
    let (first, second, first_epoch) = elect_node_1(&etcd, position(1, 100));
    drop(first);
    let dropped_at = Instant::now();
    while dropped_at.elapsed() < 2 * LEASE_TTL {
        assert_eq!(second.primary_epoch(), None, "node 2 took over alone");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(second.stop_acknowledging_at(), None);
    assert_eq!(leader_seen_by(&second), None);
    let outcome = second.last_candidacy().expect("node 2 looked");
    assert_eq!(outcome.round, first_epoch, "{outcome}");
    assert_eq!(
        (outcome.heard_count, outcome.required_count),
        (1, 2),
        "{outcome}"
    );
    assert_eq!(
        outcome.verdict,
        CandidacyVerdict::TooFewCandidacies,
        "{outcome}"
    );
    assert_eq!(outcome.best.map(|best| best.node_id), Some(2), "{outcome}");
    // Once node 3 stands too, the better of the two takes over.
    let third = node_in(&etcd, 3, TRIO, position(1, 50));
    let second_epoch = wait_for_primary("node 2 takes over with node 3's candidacy", &second);
    assert_eq!(second_epoch, first_epoch + 1);
    wait_for_follower(&third, 2, second_epoch);
}

/// Longest accepted time from a primary's resignation to its backup being primary. A takeover
/// needs the watch's report (milliseconds), a candidacy window (250 ms for a 2 s TTL) and six
/// etcd calls; the bound leaves room for a loaded machine.
const TAKEOVER_MAX: Duration = Duration::from_secs(1);

/// One timed failover: how long the backup took to notice the leader key was gone (to stop
/// showing a primary) and to become primary, both from the moment the old primary's drop
/// returned.
struct Failover {
    noticed_after: Duration,
    took_over_after: Duration,
    epoch: u64,
}

/// Drops `primary` (which revokes its lease before the drop returns, so the leader key is gone
/// by then) and times `backup`'s takeover, checking its new epoch is above `epoch`.
fn time_failover(primary: Leadership, epoch: u64, backup: &Leadership) -> Failover {
    assert!(
        leader_seen_by(backup).is_some(),
        "the backup must follow a primary"
    );
    drop(primary);
    let dropped_at = Instant::now();
    // Looked at every millisecond: the delay measured is the backup's, not this loop's.
    while leader_seen_by(backup).is_some() {
        assert!(
            dropped_at.elapsed() < WAIT_MAX,
            "the backup still shows a primary; last etcd error {:?}",
            backup.last_error()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let noticed_after = dropped_at.elapsed();
    let new_epoch = wait_for_primary("the backup takes over", backup);
    let took_over_after = dropped_at.elapsed();
    assert!(new_epoch > epoch, "epoch {new_epoch} after {epoch}");
    assert!(
        took_over_after >= candidacy_window(LEASE_TTL),
        "took over after {took_over_after:?}, within the candidacy window"
    );
    Failover {
        noticed_after,
        took_over_after,
        epoch: new_epoch,
    }
}

/// Checks a series of failovers: each took over within [`TAKEOVER_MAX`], and all of them
/// together noticed the deletion in less than one poll interval. Polling alone would take about
/// half an interval on average for each (more here, because each drop follows a fresh read), so
/// five detections summing to under one interval happen by chance with a probability of about
/// 1/120 (the volume of a simplex) without a working watch.
fn check_failovers(failovers: &[Failover]) {
    let poll = poll_interval(LEASE_TTL);
    let noticed: Vec<Duration> = failovers.iter().map(|f| f.noticed_after).collect();
    for (index, failover) in failovers.iter().enumerate() {
        assert!(
            failover.took_over_after < TAKEOVER_MAX,
            "failover {index} took {:?}; noticed after {:?}",
            failover.took_over_after,
            failover.noticed_after
        );
    }
    let noticed_total: Duration = noticed.iter().sum();
    assert!(
        noticed_total < poll,
        "the backups noticed the deletions after {noticed:?} ({noticed_total:?} in all), not \
         within one poll interval ({poll:?}) in all: the watch did not report them"
    );
}

/// Failovers timed by the tests below.
const FAILOVERS_COUNT: u64 = 5;

#[test]
fn backup_takes_over_at_once_when_the_primary_resigns() {
    let etcd = Etcd::start();
    let mut primary = node(&etcd, 1, PAIR);
    let mut epoch = wait_for_primary("node 1 becomes primary", &primary);
    let mut failovers = Vec::new();
    for backup_id in 2..=1 + FAILOVERS_COUNT {
        let backup = node(&etcd, backup_id, PAIR);
        wait_until("the backup sees the primary", &backup, || {
            leader_seen_by(&backup).is_some()
        });
        let failover = time_failover(primary, epoch, &backup);
        epoch = failover.epoch;
        failovers.push(failover);
        primary = backup;
    }
    check_failovers(&failovers);
}

#[test]
fn backup_watches_again_after_etcd_restarts() {
    let mut etcd = Etcd::start();
    let mut primary = node(&etcd, 1, PAIR);
    wait_for_primary("node 1 becomes primary", &primary);
    let mut backup = node(&etcd, 2, PAIR);
    let mut failovers = Vec::new();
    for next_id in 3..=2 + FAILOVERS_COUNT {
        wait_until("the backup sees the primary", &backup, || {
            leader_seen_by(&backup).is_some()
        });
        let primary_watches = primary.watches_opened_count();
        let backup_watches = backup.watches_opened_count();
        // The backup's watch breaks with the connection; it must open a new one.
        etcd.restart();
        // Either node may lead afterwards (the primary may have given up while etcd was down);
        // the follower must have opened a watch since the restart.
        let settled = |lead: &Leadership, follow: &Leadership, watches_before: u64| {
            lead.primary_epoch().is_some()
                && follow.watches_opened_count() > watches_before
                && leader_seen_by(follow)
                    .is_some_and(|leader| Some(leader.epoch) == lead.primary_epoch())
        };
        wait_until("one node leads, the other watches it", &backup, || {
            settled(&primary, &backup, backup_watches)
                || settled(&backup, &primary, primary_watches)
        });
        if backup.primary_epoch().is_some() {
            std::mem::swap(&mut primary, &mut backup);
        }
        let epoch = primary.primary_epoch().expect("settled above");
        let failover = time_failover(primary, epoch, &backup);
        failovers.push(failover);
        primary = backup;
        backup = node(&etcd, next_id, PAIR);
    }
    check_failovers(&failovers);
}
