//! Behaviour of the core against in-memory fake nodes: the algorithm's
//! steps, failure handling and time edge cases.

mod support;

use std::time::Duration;

use redlock_core::{
    Config, ErrorKind, Event, FailureKind, Instant, NodeId, NodeOutcome, Redlock, RetryPolicy,
    Token,
};
use support::{FakeNode, Mode, Rig, TestRng};

fn acquired(rig: &mut Rig, op: redlock_core::OpId) -> redlock_core::Lease {
    match rig.take_op_event(op) {
        Some(Event::Acquired { lease, .. }) => lease,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

fn failed(rig: &mut Rig, op: redlock_core::OpId) -> redlock_core::LockError {
    match rig.take_op_event(op) {
        Some(Event::AcquireFailed { error, .. }) => error,
        other => panic!("expected AcquireFailed, got {other:?}"),
    }
}

#[test]
fn acquire_extend_release_on_five_nodes() {
    let mut rig: Rig = Rig::new(5, Rig::<64, 128>::config(1_000));
    let op = rig.core.acquire(b"r", &mut TestRng(1), rig.now).unwrap();
    rig.drain();
    let lease = acquired(&mut rig, op);
    // ttl 1000 ms, drift 10 + 2 ms, no time passed: deadline = 988 ms.
    assert_eq!(lease.deadline(), Instant::from_millis(988));
    assert_eq!(
        lease.token().as_bytes().len(),
        redlock_core::ATTEMPT_TOKEN_LEN
    );
    for n in &rig.nodes {
        assert_eq!(n.keys.get(&b"r"[..]).unwrap().0, lease.token().as_bytes());
    }
    rig.advance(Duration::from_millis(300));
    let op = rig
        .core
        .extend(&lease, Duration::from_millis(1_000), rig.now)
        .unwrap();
    rig.drain();
    let lease = match rig.take_op_event(op) {
        Some(Event::Extended { lease, .. }) => lease,
        e => panic!("{e:?}"),
    };
    assert_eq!(lease.deadline(), Instant::from_millis(1_288));
    for n in &rig.nodes {
        assert_eq!(n.keys.get(&b"r"[..]).unwrap().1, 1_300);
    }
    let op = rig.core.release(&lease, rig.now).unwrap();
    rig.drain();
    match rig.take_op_event(op) {
        // Decided at quorum; the other two releases were still sent.
        Some(Event::Released { report, .. }) => {
            assert_eq!(report.released(), 3);
            assert_eq!(report.verdict(), redlock_core::ReleaseVerdict::Released);
        }
        e => panic!("{e:?}"),
    }
    assert!(rig.nodes.iter().all(|n| n.keys.is_empty()));
    rig.settle();
    assert_eq!(rig.core.operations_in_flight(), 0);
}

#[test]
fn busy_when_held_elsewhere_and_partial_locks_are_undone() {
    let mut rig: Rig = Rig::new(5, Rig::<64, 128>::config(1_000));
    // Another client holds the key on 3 of 5 nodes.
    for n in &mut rig.nodes[..3] {
        n.keys.insert(b"r".to_vec(), (b"other".to_vec(), 10_000));
    }
    let retry = RetryPolicy {
        count: 2,
        delay: Duration::from_millis(100),
        jitter: Duration::from_millis(50),
        wait: None,
    };
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_millis(1_000),
            retry,
            &mut TestRng(2),
            rig.now,
        )
        .unwrap();
    rig.settle();
    let e = failed(&mut rig, op);
    assert_eq!(e.kind, FailureKind::Busy);
    assert_eq!(e.attempts, 3);
    // Decided as soon as three said "held": the SETs not yet written to the
    // other two were withdrawn, those written were undone.
    assert_eq!(e.nodes.held(), 3);
    for n in &rig.nodes[3..] {
        assert!(n.keys.is_empty(), "stale key left behind");
    }
    for n in &rig.nodes[..3] {
        assert_eq!(n.keys[&b"r"[..]].0, b"other");
    }
    // Retry pauses were in [delay - jitter/2, delay + jitter/2]: 3 attempts in 150..=250 ms.
    let sets: Vec<_> = rig.nodes[0]
        .commands
        .iter()
        .filter(|c| c[0] == b"SET")
        .collect();
    assert_eq!(sets.len(), 3);
    assert!(rig.now <= Instant::from_millis(1_000));
    assert_eq!(rig.core.operations_in_flight(), 0);
}

#[test]
fn unavailable_with_three_of_five_silent_within_node_timeout() {
    let mut rig: Rig = Rig::new(5, Rig::<64, 128>::config(1_000));
    for n in &mut rig.nodes[..3] {
        n.mode = Mode::Silent;
    }
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_millis(1_000),
            RetryPolicy::none(),
            &mut TestRng(3),
            rig.now,
        )
        .unwrap();
    rig.drain();
    assert!(
        rig.take_op_event(op).is_none(),
        "must wait for the silent nodes"
    );
    rig.advance(Duration::from_millis(49));
    assert!(rig.take_op_event(op).is_none());
    rig.advance(Duration::from_millis(1));
    let e = failed(&mut rig, op);
    assert_eq!(e.kind, FailureKind::Unavailable);
    assert_eq!(e.nodes.get(0), NodeOutcome::Failed(ErrorKind::Timeout));
    // The silent nodes may have applied the SET: each was sent a release
    // after it, and the two OK nodes too.
    for n in &rig.nodes {
        let releases = n.commands.iter().filter(|c| c[0] == b"EVAL").count();
        assert_eq!(releases, 1);
    }
}

#[test]
fn one_and_two_silent_nodes_do_not_delay_the_decision() {
    for silent in 1..=2 {
        let mut rig: Rig = Rig::new(5, Rig::<64, 128>::config(1_000));
        for n in &mut rig.nodes[..silent] {
            n.mode = Mode::Silent;
        }
        let op = rig.core.acquire(b"r", &mut TestRng(4), rig.now).unwrap();
        rig.drain();
        let lease = acquired(&mut rig, op);
        assert!(lease.is_valid(rig.now));
        // Late replies that never come: abandoned after the node timeout.
        rig.settle();
    }
}

#[test]
fn replies_split_at_every_byte_boundary() {
    for chunk in 1..=12 {
        let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
        rig.chunk = chunk;
        let op = rig
            .core
            .acquire(b"resource", &mut TestRng(5), rig.now)
            .unwrap();
        rig.drain();
        let lease = acquired(&mut rig, op);
        let op = rig.core.release(&lease, rig.now).unwrap();
        rig.drain();
        assert!(
            matches!(rig.take_op_event(op), Some(Event::Released { report, .. }) if report.released() >= 2)
        );
        assert!(rig.nodes.iter().all(|n| n.keys.is_empty()));
    }
}

#[test]
fn every_split_of_a_pipelined_reply_stream() {
    // Two pipelined acquires on one connection: OK for the first, nil
    // (held) for the second, then a script's integer for a third.
    let stream: &[u8] = b"+OK\r\n$-1\r\n:-1\r\n";
    for cut in 0..=stream.len() {
        for cut2 in cut..=stream.len() {
            let mut core: Redlock =
                Redlock::new(Rig::<64, 128>::config(1_000), &[Default::default()]).unwrap();
            while core.poll_event().is_some() {}
            core.handle_connected(NodeId(0), Instant::ZERO);
            let once = RetryPolicy::none();
            let ttl = Duration::from_millis(1_000);
            let a = core
                .acquire_with(b"a", ttl, once, &mut TestRng(6), Instant::ZERO)
                .unwrap();
            let b = core
                .acquire_with(b"b", ttl, once, &mut TestRng(7), Instant::ZERO)
                .unwrap();
            let set = redlock_core::ResourceSet::new(&[b"c".as_slice(), b"d"]).unwrap();
            let options = redlock_core::AcquireOptions {
                ttl,
                retry: once,
                fencing: redlock_core::Fencing::Off,
            };
            let c = core
                .acquire_set(&set, &options, &mut TestRng(8), Instant::ZERO)
                .unwrap();
            let mut buf = [0u8; 4096];
            while core.poll_transmit(&mut buf).is_some() {}
            for part in [&stream[..cut], &stream[cut..cut2], &stream[cut2..]] {
                core.handle_input(NodeId(0), part, Instant::ZERO);
            }
            let mut events = Vec::new();
            while let Some(e) = core.poll_event() {
                events.push(e);
            }
            let of = |op| events.iter().find(|e| e.op() == Some(op));
            assert!(
                matches!(of(a), Some(Event::Acquired { .. })),
                "cut at {cut}/{cut2}: {events:?}"
            );
            assert!(
                matches!(of(b), Some(Event::AcquireFailed { error, .. }) if error.kind == FailureKind::Busy),
                "cut at {cut}/{cut2}: {events:?}"
            );
            assert!(
                matches!(of(c), Some(Event::AcquireFailed { error, .. }) if error.kind == FailureKind::Busy),
                "cut at {cut}/{cut2}: {events:?}"
            );
        }
    }
}

#[test]
fn scripts_go_by_body_so_a_flushed_cache_changes_nothing() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let op = rig.core.acquire(b"r", &mut TestRng(7), rig.now).unwrap();
    rig.drain();
    let lease = acquired(&mut rig, op);
    for n in &mut rig.nodes {
        n.scripts = false; // SCRIPT FLUSH
    }
    let op = rig
        .core
        .extend(&lease, Duration::from_millis(1_000), rig.now)
        .unwrap();
    rig.drain();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::Extended { .. })
    ));
    let op = rig.core.release(&lease, rig.now).unwrap();
    rig.drain();
    assert!(
        matches!(rig.take_op_event(op), Some(Event::Released { report, .. }) if report.released() >= 2)
    );
    for n in &rig.nodes {
        assert!(n.keys.is_empty());
        assert!(!n
            .commands
            .iter()
            .any(|c| c[0] == b"EVALSHA" || c[0] == b"SCRIPT"));
    }
}

#[test]
fn late_reply_to_an_abandoned_request_is_never_mistaken() {
    let mut rig: Rig = Rig::new(1, Rig::<64, 128>::config(1_000));
    rig.hold[0] = true;
    let op1 = rig
        .core
        .acquire_with(
            b"a",
            Duration::from_millis(1_000),
            RetryPolicy::none(),
            &mut TestRng(8),
            rig.now,
        )
        .unwrap();
    rig.drain();
    rig.advance(Duration::from_millis(60)); // times out; a cleanup release is queued behind it
    assert_eq!(failed(&mut rig, op1).kind, FailureKind::Unavailable);
    // Now node "a" is held by op1's token on the fake node (SET applied, reply held back).
    // A second op on another resource; then all held replies arrive at once.
    let op2 = rig
        .core
        .acquire_with(
            b"b",
            Duration::from_millis(1_000),
            RetryPolicy::none(),
            &mut TestRng(9),
            rig.now,
        )
        .unwrap();
    rig.drain();
    rig.hold[0] = false;
    rig.release_held(0);
    // op2's OK is op2's, not op1's late OK.
    let lease = acquired(&mut rig, op2);
    assert_eq!(lease.resource(), b"b");
    // The cleanup removed "a".
    assert!(!rig.nodes[0].keys.contains_key(&b"a"[..]));
}

#[test]
fn garbage_resets_the_link_and_names_the_node() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.hold[2] = true;
    let op = rig.core.acquire(b"r", &mut TestRng(10), rig.now).unwrap();
    rig.drain();
    rig.core
        .handle_input(NodeId(2), b"\x00\xffgarbage\r\n", rig.now);
    rig.drain();
    assert!(rig.events.iter().any(|e| matches!(e, Event::Disconnect { node: NodeId(2), error } if error.kind == ErrorKind::Protocol)));
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::Acquired { .. })
    ));
    // The core asks to reconnect after a backoff, and the node works again.
    rig.hold[2] = false;
    rig.advance(Duration::from_millis(100));
    assert!(rig.core.is_connected(NodeId(2)));
}

#[test]
fn oversized_reply_is_a_protocol_error_not_a_buffer() {
    let mut rig: Rig = Rig::new(1, Rig::<64, 128>::config(1_000));
    rig.hold[0] = true;
    let op = rig.core.acquire(b"r", &mut TestRng(11), rig.now).unwrap();
    rig.drain();
    // A bulk header claiming gigabytes, then a trickle of bytes.
    rig.core
        .handle_input(NodeId(0), b"$9999999999\r\n", rig.now);
    for _ in 0..2_000 {
        rig.core.handle_input(NodeId(0), b"x", rig.now);
    }
    rig.drain();
    assert!(rig.events.iter().any(
        |e| matches!(e, Event::Disconnect { error, .. } if error.kind == ErrorKind::Protocol)
    ));
    assert!(rig.core.dropped_diagnostics() == 0);
    rig.settle();
    assert!(rig.take_op_event(op).is_some());
}

#[test]
fn error_replies_are_classified_and_named() {
    for (line, kind) in [
        ("WRONGPASS invalid username-password pair", ErrorKind::Auth),
        ("NOAUTH Authentication required.", ErrorKind::Auth),
        (
            "READONLY You can't write against a read only replica.",
            ErrorKind::ReadOnly,
        ),
        (
            "OOM command not allowed when used memory > 'maxmemory'.",
            ErrorKind::Oom,
        ),
        (
            "LOADING Redis is loading the dataset in memory",
            ErrorKind::Loading,
        ),
        (
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            ErrorKind::WrongType,
        ),
        ("ERR something else", ErrorKind::Other),
    ] {
        let mut rig: Rig = Rig::new(1, Rig::<64, 128>::config(1_000));
        rig.nodes[0].mode = Mode::Error(line);
        let op = rig
            .core
            .acquire_with(
                b"r",
                Duration::from_millis(1_000),
                RetryPolicy::none(),
                &mut TestRng(12),
                rig.now,
            )
            .unwrap();
        rig.drain();
        let e = failed(&mut rig, op);
        assert_eq!(e.nodes.get(0), NodeOutcome::Failed(kind), "{line}");
        let expected = if kind == ErrorKind::Auth {
            FailureKind::AuthFailed
        } else {
            FailureKind::Unavailable
        };
        assert_eq!(e.kind, expected);
        assert!(rig.events.iter().any(|ev| matches!(ev, Event::NodeFailed { node: NodeId(0), op: Some(o), error } if *o == op && error.kind == kind && error.detail() == line)));
    }
}

#[test]
fn node_down_fails_fast_and_reconnects_with_backoff() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.core.handle_node_down(NodeId(0), rig.now);
    rig.core.handle_node_down(NodeId(1), rig.now);
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_millis(1_000),
            RetryPolicy::none(),
            &mut TestRng(13),
            rig.now,
        )
        .unwrap();
    rig.drain();
    // Decided at once: two nodes are known down.
    let e = failed(&mut rig, op);
    assert_eq!(e.kind, FailureKind::Unavailable);
    assert_eq!(e.nodes.get(0), NodeOutcome::Failed(ErrorKind::Disconnected));
    // Reconnect is asked for after the backoff (0.5 % of the TTL: 5 ms).
    rig.events.clear();
    rig.advance(Duration::from_millis(4));
    assert!(!rig
        .events
        .iter()
        .any(|e| matches!(e, Event::Connect { .. })));
    rig.advance(Duration::from_millis(1));
    assert!(
        rig.events
            .iter()
            .filter(|e| matches!(e, Event::Connect { .. }))
            .count()
            == 2
    );
    let op = rig.core.acquire(b"r", &mut TestRng(14), rig.now).unwrap();
    rig.drain();
    acquired(&mut rig, op);
}

#[test]
fn reply_exactly_at_the_validity_deadline_is_too_late() {
    // ttl 100 ms, drift 1 + 2 ms: deadline at t0 + 97 ms; node timeout above that is refused by config,
    // so use a 1-node core whose reply arrives exactly at the deadline through held bytes.
    let mut c = Config::new(Duration::from_millis(100));
    c.node_timeout = Duration::from_millis(90);
    let mut rig: Rig = Rig::new(1, c);
    rig.hold[0] = true;
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_millis(100),
            RetryPolicy::none(),
            &mut TestRng(15),
            rig.now,
        )
        .unwrap();
    rig.drain();
    rig.now = Instant::from_millis(89);
    rig.release_held(0);
    let lease = acquired(&mut rig, op);
    assert_eq!(lease.deadline(), Instant::from_millis(97));
    assert_eq!(lease.remaining(rig.now), Duration::from_millis(8));

    // Same, but the reply comes when validity is exactly 0 (now == deadline).
    let mut c = Config::new(Duration::from_millis(100));
    c.node_timeout = Duration::from_millis(90);
    c.drift_floor = Duration::from_millis(9); // deadline = t0 + 100 - 1 - 9 = 90 = node timeout
    let mut rig: Rig = Rig::new(1, c);
    rig.hold[0] = true;
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_millis(100),
            RetryPolicy::none(),
            &mut TestRng(16),
            rig.now,
        )
        .unwrap();
    rig.drain();
    rig.now = Instant::from_millis(90);
    rig.release_held(0);
    let e = failed(&mut rig, op);
    assert_eq!(e.kind, FailureKind::Expired);
    // And the key it may hold is released.
    assert!(rig.nodes[0].commands.iter().any(|c| c[0] == b"EVAL"));
}

#[test]
fn time_going_backwards_or_standing_still_is_no_progress() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.now = Instant::from_millis(500);
    rig.core.handle_timeout(rig.now);
    rig.hold = vec![true; 3];
    let op = rig.core.acquire(b"r", &mut TestRng(17), rig.now).unwrap();
    rig.drain();
    // Earlier instants: treated as 500 ms.
    for t in [0, 100, 499, 500] {
        rig.core.handle_timeout(Instant::from_millis(t));
        rig.core.handle_timeout(Instant::from_millis(t));
    }
    rig.drain();
    assert!(rig.take_op_event(op).is_none());
    for i in 0..3 {
        let bytes = std::mem::take(&mut rig.held[i]);
        rig.core
            .handle_input(NodeId(i as u8), &bytes, Instant::from_millis(3));
    }
    rig.now = Instant::from_millis(3);
    rig.drain();
    let lease = acquired(&mut rig, op);
    // Deadline computed from t0 = 500 ms (the core's latest time), never earlier.
    assert_eq!(lease.deadline(), Instant::from_millis(1_488));
}

#[test]
fn spurious_and_early_timeouts_are_harmless() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.hold = vec![true; 3];
    let op = rig.core.acquire(b"r", &mut TestRng(18), rig.now).unwrap();
    rig.drain();
    for us in 0..49_000u64 {
        if us % 997 == 0 {
            rig.core.handle_timeout(Instant::from_micros(us));
        }
    }
    assert!(rig.take_op_event(op).is_none());
    rig.now = Instant::from_millis(10);
    for i in 0..3 {
        rig.release_held(i);
    }
    acquired(&mut rig, op);
}

#[test]
fn extend_of_an_expired_lease_is_lost_without_asking() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let op = rig.core.acquire(b"r", &mut TestRng(19), rig.now).unwrap();
    rig.drain();
    let lease = acquired(&mut rig, op);
    rig.advance(Duration::from_millis(988));
    let op = rig
        .core
        .extend(&lease, Duration::from_millis(1_000), rig.now)
        .unwrap();
    rig.drain();
    assert!(
        matches!(rig.take_op_event(op), Some(Event::Lost { error, .. }) if error.kind == FailureKind::Expired)
    );
}

#[test]
fn extend_fails_when_the_key_was_taken() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let op = rig.core.acquire(b"r", &mut TestRng(20), rig.now).unwrap();
    rig.drain();
    let lease = acquired(&mut rig, op);
    for n in &mut rig.nodes[..2] {
        n.keys.insert(b"r".to_vec(), (b"thief".to_vec(), 10_000));
    }
    let op = rig
        .core
        .extend(&lease, Duration::from_millis(1_000), rig.now)
        .unwrap();
    rig.drain();
    match rig.take_op_event(op) {
        Some(Event::Lost { error, .. }) => {
            assert_eq!(error.kind, FailureKind::Busy);
            assert_eq!(error.nodes.held(), 2);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn stale_token_release_never_deletes_anothers_key() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    for n in &mut rig.nodes {
        n.keys.insert(b"r".to_vec(), (b"owner".to_vec(), 10_000));
    }
    let op = rig
        .core
        .release_token(b"r", &Token::from_bytes(b"stale").unwrap(), rig.now)
        .unwrap();
    rig.drain();
    match rig.take_op_event(op) {
        Some(Event::Released { report, .. }) => {
            assert_eq!(report.released(), 0);
            assert!(report.not_held() >= 2);
            assert_eq!(report.verdict(), redlock_core::ReleaseVerdict::NotHeld);
        }
        e => panic!("{e:?}"),
    }
    assert!(rig.nodes.iter().all(|n| n.keys[&b"r"[..]].0 == b"owner"));
}

#[test]
fn cancel_undoes_a_partial_acquire() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.hold[2] = true;
    rig.nodes[1].mode = Mode::Silent;
    let op = rig.core.acquire(b"r", &mut TestRng(21), rig.now).unwrap();
    rig.drain();
    assert!(rig.core.cancel(op, rig.now));
    assert!(!rig.core.cancel(op, rig.now));
    rig.drain();
    rig.release_held(2);
    rig.settle();
    assert!(
        matches!(rig.take_op_event(op), Some(Event::AcquireFailed { error, .. }) if error.kind == FailureKind::Cancelled)
    );
    assert!(rig.nodes.iter().all(|n| n.keys.is_empty()));
}

#[test]
fn wait_deadline_bounds_the_retries() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    for n in &mut rig.nodes {
        n.keys.insert(b"r".to_vec(), (b"other".to_vec(), 100_000));
    }
    let retry = RetryPolicy {
        count: 0,
        delay: Duration::from_millis(100),
        jitter: Duration::ZERO,
        wait: Some(Duration::from_millis(450)),
    };
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_millis(1_000),
            retry,
            &mut TestRng(22),
            rig.now,
        )
        .unwrap();
    rig.settle();
    let e = failed(&mut rig, op);
    assert_eq!(e.attempts, 5); // starts at 0, 100, 200, 300, 400
    assert_eq!(e.kind, FailureKind::Busy);
}

#[test]
fn many_operations_share_the_connections() {
    let mut rig: Rig<256, 1024> = Rig::new(5, Rig::<256, 1024>::config(10_000));
    let ops: Vec<_> = (0..200)
        .map(|i| {
            rig.core
                .acquire(format!("res:{i}").as_bytes(), &mut TestRng(i), rig.now)
                .unwrap()
        })
        .collect();
    rig.drain();
    for op in ops {
        assert!(matches!(
            rig.take_op_event(op),
            Some(Event::Acquired { .. })
        ));
    }
    // One connection per node carried every SET, pipelined.
    assert_eq!(rig.nodes[0].keys.len(), 200);
}

#[test]
fn slots_and_pipes_are_bounded_with_typed_errors() {
    let mut rig: Rig<4, 16> = Rig::new(1, Rig::<4, 16>::config(1_000));
    rig.nodes[0].mode = Mode::Silent;
    let mut errors = 0;
    for i in 0..10 {
        match rig
            .core
            .acquire(format!("k{i}").as_bytes(), &mut TestRng(i), rig.now)
        {
            Ok(_) => {}
            Err(redlock_core::CommandError::TooManyOperations) => errors += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(errors, 6);
    rig.settle();
    assert_eq!(rig.core.operations_in_flight(), 0);
}

#[test]
fn a_stuck_connection_is_reset() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[0].mode = Mode::Silent;
    let op = rig.core.acquire(b"r", &mut TestRng(23), rig.now).unwrap();
    rig.drain();
    acquired(&mut rig, op);
    rig.advance(Duration::from_millis(400));
    assert!(rig.events.iter().any(|e| matches!(
        e,
        Event::Disconnect {
            node: NodeId(0),
            ..
        }
    )));
}

#[test]
fn bad_config_is_a_typed_error() {
    use redlock_core::{ConfigError, NodeConfig};
    let node = [NodeConfig::default()];
    let mut c = Config::new(Duration::from_millis(10));
    c.node_timeout = Duration::from_millis(20);
    assert_eq!(
        Redlock::<4, 16>::new(c, &node).unwrap_err(),
        ConfigError::TtlTooShort
    );
    c.node_timeout = Duration::from_millis(8); // 10 = 8 + 0.1 (rounded up) + 2: too short
    assert_eq!(
        Redlock::<4, 16>::new(c, &node).unwrap_err(),
        ConfigError::TtlTooShort
    );
    c.node_timeout = Duration::from_micros(7_900); // exactly ttl - drift: allowed
    assert!(Redlock::<4, 16>::new(c, &node).is_ok());
    let c = Config::new(Duration::ZERO);
    assert!(Redlock::<4, 16>::new(c, &node).is_err());
    let c = Config {
        drift_ppm: 2_000_000,
        ..Config::default()
    };
    assert_eq!(
        Redlock::<4, 16>::new(c, &node).unwrap_err(),
        ConfigError::DriftFactor
    );
    assert_eq!(
        Redlock::<4, 16>::new(Config::default(), &vec![NodeConfig::default(); 17]).unwrap_err(),
        ConfigError::TooManyNodes
    );
    let _ = FakeNode::new();
}

#[test]
fn rejected_password_is_an_auth_failure_across_retries() {
    use redlock_core::{Auth, NodeConfig};
    let node = NodeConfig {
        auth: Some(Auth::new(Some("app"), "wrong").unwrap()),
        db: 0,
    };
    let mut rig: Rig = Rig::with_nodes(&[node], Rig::<64, 128>::config(1_000));
    rig.nodes[0].mode =
        Mode::Error("WRONGPASS invalid username-password pair or user is disabled.");
    let op = rig.core.acquire(b"r", &mut TestRng(30), rig.now).unwrap();
    rig.settle();
    let e = failed(&mut rig, op);
    assert_eq!(e.kind, FailureKind::AuthFailed);
    assert_eq!(e.attempts, 4);
    assert!(rig.nodes[0].commands[0][0] == b"AUTH" && rig.nodes[0].commands[0][1] == b"app");
}

#[test]
fn failed_select_never_lets_requests_reach_the_wrong_database() {
    use redlock_core::NodeConfig;
    let node = NodeConfig { auth: None, db: 99 };
    let mut rig: Rig = Rig::with_nodes(&[node], Rig::<64, 128>::config(1_000));
    // The handshake ran at construction: SELECT 99 was refused, the link reset.
    assert_eq!(rig.nodes[0].commands[0][0], b"SELECT");
    assert!(
        rig.events.iter().any(|ev| matches!(ev, Event::Disconnect { error, .. } if error.detail().contains("DB index"))),
        "{:?}",
        rig.events
    );
    let op = rig.core.acquire(b"r", &mut TestRng(31), rig.now).unwrap();
    rig.settle();
    let e = failed(&mut rig, op);
    assert_eq!(e.nodes.get(0), NodeOutcome::Failed(ErrorKind::Other));
    // No SET ever reached the node: every connection failed its SELECT first.
    assert!(
        !rig.nodes[0].commands.iter().any(|c| c[0] == b"SET"),
        "{:?}",
        rig.nodes[0].commands
    );
}

#[test]
fn requests_wait_for_auth_and_select_before_being_written() {
    use redlock_core::{Auth, NodeConfig};
    let node = NodeConfig {
        auth: Some(Auth::new(None, "pw").unwrap()),
        db: 99,
    };
    let mut core: Redlock = Redlock::new(Rig::<64, 128>::config(1_000), &[node]).unwrap();
    while core.poll_event().is_some() {}
    // A request queued while the connection is being made...
    let op = core
        .acquire_with(
            b"r",
            Duration::from_millis(1_000),
            RetryPolicy::none(),
            &mut TestRng(40),
            Instant::ZERO,
        )
        .unwrap();
    core.handle_connected(NodeId(0), Instant::ZERO);
    let mut buf = [0u8; 4096];
    let mut sent = Vec::new();
    while let Some(t) = core.poll_transmit(&mut buf) {
        sent.extend_from_slice(&buf[..t.len]);
    }
    let mut fake = FakeNode::new();
    let cmds: Vec<_> = {
        fake.handle(&sent, 0);
        fake.commands
            .iter()
            .map(|c| String::from_utf8_lossy(&c[0]).into_owned())
            .collect()
    };
    // ...is held back behind AUTH and SELECT until they are answered.
    assert_eq!(cmds, ["AUTH", "SELECT"]);
    core.handle_input(
        NodeId(0),
        b"+OK\r\n-ERR DB index is out of range\r\n",
        Instant::ZERO,
    );
    assert!(
        core.poll_transmit(&mut buf).is_none(),
        "no SET after a failed SELECT"
    );
    match core.poll_events_until_op(op) {
        Some(Event::AcquireFailed { error, .. }) => {
            assert_eq!(error.nodes.get(0), NodeOutcome::Failed(ErrorKind::Other))
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn requests_flow_once_the_handshake_is_answered() {
    use redlock_core::NodeConfig;
    let node = NodeConfig { auth: None, db: 3 };
    let mut core: Redlock = Redlock::new(Rig::<64, 128>::config(1_000), &[node]).unwrap();
    while core.poll_event().is_some() {}
    let op = core.acquire(b"r", &mut TestRng(41), Instant::ZERO).unwrap();
    core.handle_connected(NodeId(0), Instant::ZERO);
    let mut buf = [0u8; 4096];
    while core.poll_transmit(&mut buf).is_some() {}
    core.handle_input(NodeId(0), b"+OK\r\n", Instant::ZERO);
    let t = core
        .poll_transmit(&mut buf)
        .expect("SET goes out after SELECT succeeded");
    assert!(buf[..t.len].windows(3).any(|w| w == b"SET"));
    core.handle_input(NodeId(0), b"+OK\r\n", Instant::ZERO);
    assert!(matches!(
        core.poll_events_until_op(op),
        Some(Event::Acquired { .. })
    ));
}

#[test]
fn a_crowded_connection_still_sends_every_undo() {
    // PIPE 32: new SETs may use (32 - 4) / 2 = 14 slots; undos the rest.
    let mut rig: Rig<64, 32> = Rig::new(1, Rig::<64, 32>::config(1_000));
    rig.hold[0] = true;
    let mut ops = Vec::new();
    for i in 0..30 {
        if let Ok(op) = rig.core.acquire_with(
            format!("k{i}").as_bytes(),
            Duration::from_millis(1_000),
            RetryPolicy::none(),
            &mut TestRng(i),
            rig.now,
        ) {
            ops.push(op);
        }
    }
    rig.drain();
    // Cancel all: each needs an undo behind its SET.
    for op in &ops {
        rig.core.cancel(*op, rig.now);
    }
    rig.drain();
    rig.hold[0] = false;
    rig.release_held(0);
    rig.settle();
    assert_eq!(ops.len(), 30);
    assert!(
        rig.nodes[0].keys.is_empty(),
        "stranded keys: {:?}",
        rig.nodes[0].keys.keys().collect::<Vec<_>>()
    );
}

/// Slot generations wrap after 65,536 uses, so an operation can get back
/// the id of one long gone: the last command's encoding, cached to copy
/// for the next node, must not be reused for it.
#[test]
fn a_reused_operation_id_never_sends_a_stale_cached_command() {
    let mut rig: Rig<1, 16> = Rig::new(1, Rig::<1, 16>::config(1_000));
    let first = rig
        .core
        .acquire_with(
            b"a",
            Duration::from_secs(1),
            RetryPolicy::none(),
            &mut TestRng(1),
            rig.now,
        )
        .unwrap();
    rig.drain();
    assert!(matches!(
        rig.take_op_event(first),
        Some(Event::Acquired { .. })
    ));
    // 65,535 operations on the only slot that never reach the encoder: the
    // node is down, so each fails at once.
    rig.refuse[0] = true;
    rig.core.handle_node_down(NodeId(0), rig.now);
    rig.drain();
    for i in 0..u16::MAX as u64 {
        let op = rig
            .core
            .acquire_with(
                b"a",
                Duration::from_secs(1),
                RetryPolicy::none(),
                &mut TestRng(i),
                rig.now,
            )
            .unwrap();
        rig.drain();
        assert!(rig.take_op_event(op).is_some());
        rig.events.clear();
    }
    rig.refuse[0] = false;
    rig.advance(Duration::from_secs(3));
    assert!(rig.core.is_connected(NodeId(0)));
    let again = rig
        .core
        .acquire_with(
            b"b",
            Duration::from_secs(1),
            RetryPolicy::none(),
            &mut TestRng(2),
            rig.now,
        )
        .unwrap();
    assert_eq!(again, first, "the id came back");
    rig.drain();
    let last = rig.nodes[0].commands.last().unwrap();
    assert_eq!(last[1], b"b", "{last:?}");
    assert!(matches!(
        rig.take_op_event(again),
        Some(Event::Acquired { .. })
    ));
}
