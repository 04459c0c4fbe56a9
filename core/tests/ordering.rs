//! Queue discipline: no command is re-ordered behind a later command for the
//! same resource, an undo never touches a later attempt's key, undos owed to
//! a node whose connection dropped are sent after it reconnects, and nothing
//! is sent for a lease that has already expired. Each pre-fix behaviour is
//! planted (feature `__weaken`) to show the test catches it.

mod support;

use std::time::Duration;

use redlock_core::{
    Config, Event, FailureKind, Instant, NodeId, NodeOutcome, RetryPolicy, Weakness,
};
use support::{Mode, Rig, TestRng};

/// The review's recipe (issue "two holders after a script-cache flush"), on
/// 3 nodes: node 0's script cache is flushed and its replies are slow;
/// another client holds nodes 0 and 1 briefly and node 2 for long. Attempt 1
/// fails; its undo goes to node 0 behind attempt 1's SET; the foreign keys
/// expire; attempt 2's SET lands on node 0; node 0's replies arrive. Returns
/// whether the core believes it holds the lock, and the nodes that really
/// hold attempt 2's key.
fn recipe(weak: Weakness) -> (bool, Vec<bool>) {
    let mut config = Config::new(Duration::from_secs(1));
    config.node_timeout = Duration::from_millis(50);
    let mut rig: Rig = Rig::new(3, config);
    rig.core.weaken_with(weak);
    // The weakened build loads the scripts in its handshake: reconnect so it
    // does, then flush node 0's cache.
    for n in 0..3 {
        rig.core.handle_node_down(NodeId(n), rig.now);
    }
    rig.advance(Duration::from_millis(100));
    rig.nodes[0].scripts = false;
    let expiry = rig.now_ms() + 150;
    for n in &mut rig.nodes[..2] {
        n.keys.insert(b"r".to_vec(), (b"foreign".to_vec(), expiry));
    }
    rig.nodes[2]
        .keys
        .insert(b"r".to_vec(), (b"foreign".to_vec(), 1_000_000));
    rig.hold[0] = true;
    let retry = RetryPolicy {
        count: 1,
        delay: Duration::from_millis(200),
        jitter: Duration::ZERO,
        wait: None,
    };
    let start = rig.now;
    let op = rig
        .core
        .acquire_with(b"r", Duration::from_secs(1), retry, &mut TestRng(9), start)
        .unwrap();
    rig.drain();
    // Attempt 2 starts at +200 ms, after the foreign keys expired (+150 ms).
    rig.advance_to(start + Duration::from_millis(210));
    // Node 0 answers now: nil (attempt 1's SET), the undo's reply, then OK
    // for attempt 2's SET.
    rig.release_held(0);
    rig.hold[0] = false;
    rig.drain();
    let acquired = match rig.take_op_event(op) {
        Some(Event::Acquired { lease, .. }) => Some(lease),
        Some(Event::AcquireFailed { .. }) => None,
        other => panic!("{other:?}"),
    };
    let holders = rig
        .nodes
        .iter_mut()
        .map(|n| match (&acquired, n.keys.get(&b"r"[..])) {
            (Some(l), Some((v, _))) => v.as_slice() == l.token().as_bytes(),
            _ => false,
        })
        .collect();
    (acquired.is_some(), holders)
}

#[test]
fn an_undo_never_deletes_the_next_attempts_key() {
    let (acquired, holders) = recipe(Weakness::default());
    assert!(acquired, "attempt 2 takes nodes 0 and 1");
    assert_eq!(
        holders,
        [true, true, false],
        "every node of the quorum holds the key"
    );
}

#[test]
fn the_planted_reorder_gives_a_lock_that_a_quorum_does_not_hold() {
    // Pre-fix: one token per operation, EVALSHA re-queued by body at the back.
    let weak = Weakness {
        reuse_token: true,
        requeue_noscript: true,
        ..Weakness::default()
    };
    let (acquired, holders) = recipe(weak);
    assert!(acquired, "the broken core believes it holds the lock");
    assert_eq!(
        holders,
        [false, true, false],
        "the re-queued undo deleted node 0's new key: only node 1 holds it"
    );
    // Either fix alone closes the hole.
    for weak in [
        Weakness {
            reuse_token: true,
            ..Weakness::default()
        },
        Weakness {
            requeue_noscript: true,
            ..Weakness::default()
        },
    ] {
        assert_eq!(recipe(weak), (true, vec![true, true, false]), "{weak:?}");
    }
}

#[test]
fn each_attempt_stores_its_own_token() {
    let mut rig: Rig = Rig::new(1, Rig::<64, 128>::config(1_000));
    rig.nodes[0]
        .keys
        .insert(b"r".to_vec(), (b"foreign".to_vec(), 1_000_000));
    let retry = RetryPolicy {
        count: 2,
        delay: Duration::from_millis(10),
        jitter: Duration::ZERO,
        wait: None,
    };
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_secs(1),
            retry,
            &mut TestRng(3),
            rig.now,
        )
        .unwrap();
    rig.settle();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::AcquireFailed { .. })
    ));
    let tokens: Vec<Vec<u8>> = rig.nodes[0]
        .commands
        .iter()
        .filter(|c| c[0] == b"SET")
        .map(|c| c[2].clone())
        .collect();
    assert_eq!(tokens.len(), 3);
    assert_ne!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2]);
    // Same random part, the attempt number after it.
    assert_eq!(tokens[0][..40], tokens[2][..40]);
    assert_eq!(&tokens[2][40..], b"00000003");
}

#[test]
fn extending_an_expired_lease_sends_nothing() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let op = rig.core.acquire(b"r", &mut TestRng(19), rig.now).unwrap();
    rig.drain();
    let lease = match rig.take_op_event(op) {
        Some(Event::Acquired { lease, .. }) => lease,
        e => panic!("{e:?}"),
    };
    rig.advance(Duration::from_millis(988));
    let before: Vec<usize> = rig.nodes.iter().map(|n| n.commands.len()).collect();
    let op = rig
        .core
        .extend(&lease, Duration::from_millis(1_000), rig.now)
        .unwrap();
    rig.settle();
    assert!(
        matches!(rig.take_op_event(op), Some(Event::Lost { error, .. }) if error.kind == FailureKind::Expired)
    );
    let after: Vec<usize> = rig.nodes.iter().map(|n| n.commands.len()).collect();
    assert_eq!(
        before, after,
        "no extend script may renew keys nobody holds"
    );
}

/// Node 0's connection drops after attempt 1's SET was written there (and
/// stored), before its reply. Returns whether node 0 still holds a key of
/// ours once the link is back, and the second acquire's outcome on node 0.
fn undo_after_reconnect(weak: Weakness) -> (bool, NodeOutcome) {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.core.weaken_with(weak);
    rig.nodes[1]
        .keys
        .insert(b"r".to_vec(), (b"foreign".to_vec(), 100));
    rig.nodes[2].mode = Mode::Silent;
    rig.hold[0] = true;
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_secs(1),
            RetryPolicy::none(),
            &mut TestRng(4),
            rig.now,
        )
        .unwrap();
    rig.drain();
    // Node 0 stored our key, but its connection drops before the reply, and
    // it refuses connections for a while.
    rig.held[0].clear();
    rig.hold[0] = false;
    rig.refuse[0] = true;
    rig.core.handle_node_down(NodeId(0), rig.now);
    rig.drain();
    assert!(
        rig.take_op_event(op).is_none(),
        "node 2 could still make it busy"
    );
    // Node 2 times out: unavailable; the undo for node 0 is owed while its
    // link is down, and the node comes back within the backoff.
    rig.advance(Duration::from_millis(60));
    assert!(
        matches!(rig.take_op_event(op), Some(Event::AcquireFailed { error, .. }) if error.kind == FailureKind::Unavailable)
    );
    rig.refuse[0] = false;
    rig.advance(Duration::from_millis(90));
    let stale = rig.nodes[0].keys.contains_key(&b"r"[..]);
    // A fresh acquire by the same client, after the foreign key expired.
    rig.nodes[2].mode = Mode::Normal;
    rig.nodes[2].keys.clear();
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_secs(1),
            RetryPolicy::none(),
            &mut TestRng(5),
            rig.now,
        )
        .unwrap();
    rig.settle();
    let outcome = match rig.take_op_event(op) {
        Some(Event::Acquired { .. }) => NodeOutcome::Ok,
        Some(Event::AcquireFailed { error, .. }) => error.nodes.get(0),
        e => panic!("{e:?}"),
    };
    (stale, outcome)
}

#[test]
fn an_undo_owed_to_a_dropped_connection_is_sent_after_the_reconnect() {
    let (stale, outcome) = undo_after_reconnect(Weakness::default());
    assert!(!stale, "the owed undo removed the key after the handshake");
    assert_eq!(outcome, NodeOutcome::Ok);
}

#[test]
fn the_planted_dropped_undo_leaves_a_key_that_blocks_the_next_acquire() {
    let weak = Weakness {
        drop_owed_undo: true,
        ..Weakness::default()
    };
    let (stale, outcome) = undo_after_reconnect(weak);
    assert!(
        stale,
        "pre-fix: the undo was dropped, the key lives to its TTL"
    );
    assert_eq!(
        outcome,
        NodeOutcome::Held,
        "our own stale key reads as another holder"
    );
}

#[test]
fn releases_cannot_crowd_out_undos() {
    // PIPE 22: 18 slots after the handshake reserve; new work may fill 6,
    // releases 12, undos all 18.
    let mut rig: Rig<64, 22> = Rig::new(1, Rig::<64, 22>::config(1_000));
    rig.nodes[0].mode = Mode::Silent;
    let token = redlock_core::Token::from_bytes(b"t").unwrap();
    let mut acquires = Vec::new();
    for i in 0..6 {
        acquires.push(
            rig.core
                .acquire_with(
                    format!("a{i}").as_bytes(),
                    Duration::from_secs(1),
                    RetryPolicy::none(),
                    &mut TestRng(i),
                    rig.now,
                )
                .unwrap(),
        );
    }
    for i in 0..8 {
        let _ = rig
            .core
            .release_token(format!("b{i}").as_bytes(), &token, rig.now);
    }
    rig.drain();
    // 6 SETs + 6 releases queued: the other 2 releases were refused.
    // Cancelling the acquires needs 6 undos: all fit.
    for op in &acquires {
        assert!(rig.core.cancel(*op, rig.now));
    }
    rig.drain();
    let evals = rig.nodes[0]
        .commands
        .iter()
        .filter(|c| c[0] == b"EVAL")
        .count();
    assert_eq!(evals, 6 + 6, "6 releases and every one of the 6 undos");
}

#[test]
fn absurd_backoff_and_retry_bounds_never_panic() {
    use redlock_core::{CommandError, ConfigError, Redlock, MAX_RECONNECT};
    let mut config = Config::new(Duration::from_secs(1));
    config.reconnect_min = Duration::from_millis(1);
    config.reconnect_max = MAX_RECONNECT;
    let mut core: Redlock = Redlock::new(config, &[Default::default()]).unwrap();
    let mut now = Instant::ZERO;
    for _ in 0..200 {
        core.handle_node_down(NodeId(0), now);
        now = core.poll_timeout().unwrap_or(now);
        core.handle_timeout(now);
        while core.poll_event().is_some() {}
    }
    config.reconnect_max = MAX_RECONNECT + Duration::from_secs(1);
    assert_eq!(
        Redlock::<4, 16>::new(config, &[Default::default()]).unwrap_err(),
        ConfigError::Reconnect
    );
    let absurd = RetryPolicy {
        count: u32::MAX,
        delay: Duration::MAX,
        jitter: Duration::MAX,
        wait: Some(Duration::MAX),
    };
    assert_eq!(
        core.acquire_with(b"r", Duration::from_secs(1), absurd, &mut TestRng(1), now),
        Err(CommandError::BadRetry(ConfigError::Retry))
    );
    // The largest accepted pauses, with every wait: no overflow either.
    let big = RetryPolicy {
        count: u32::MAX,
        delay: redlock_core::MAX_RETRY_PAUSE,
        jitter: redlock_core::MAX_RETRY_PAUSE,
        wait: Some(Duration::MAX),
    };
    let op = core
        .acquire_with(b"r", Duration::from_secs(1), big, &mut TestRng(2), now)
        .unwrap();
    for _ in 0..50 {
        now = core.poll_timeout().unwrap_or(now);
        core.handle_timeout(now);
        while core.poll_event().is_some() {}
    }
    assert!(core.cancel(op, now));
}

/// An undo owed to a node that is down is not disturbed by the next
/// attempts: retries with no pause, which cannot reach that node either,
/// leave it owed, and it is sent once the node is back.
#[test]
fn an_owed_undo_outlives_the_retries_that_follow_it() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[1]
        .keys
        .insert(b"r".to_vec(), (b"foreign".to_vec(), 100_000));
    rig.nodes[2].mode = Mode::Silent;
    rig.hold[0] = true;
    let retry = RetryPolicy {
        count: 2,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        wait: None,
    };
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_secs(1),
            retry,
            &mut TestRng(8),
            rig.now,
        )
        .unwrap();
    rig.drain();
    // Node 0 stored attempt 1's key; its connection drops before the reply
    // and it stays unreachable while the attempts time out on node 2.
    rig.held[0].clear();
    rig.hold[0] = false;
    rig.refuse[0] = true;
    rig.core.handle_node_down(NodeId(0), rig.now);
    rig.advance(Duration::from_millis(200));
    assert!(
        matches!(rig.take_op_event(op), Some(Event::AcquireFailed { error, .. }) if error.attempts == 3)
    );
    assert!(
        rig.nodes[0].keys.contains_key(&b"r"[..]),
        "attempt 1's key, undo owed"
    );
    rig.refuse[0] = false;
    rig.advance(Duration::from_millis(100));
    assert!(
        !rig.nodes[0].keys.contains_key(&b"r"[..]),
        "the owed undo reached node 0 after the retries"
    );
}

/// A lease held on three idle nodes, then node 2's connection drops and
/// it refuses connections until the test says otherwise.
fn held_on_three_then_node_2_down(seed: u64) -> (Rig, redlock_core::Lease) {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_secs(10),
            RetryPolicy::none(),
            &mut TestRng(seed),
            rig.now,
        )
        .unwrap();
    rig.settle();
    let Some(Event::Acquired { lease, .. }) = rig.take_op_event(op) else {
        panic!("acquired on three idle nodes");
    };
    assert!(rig.nodes.iter().all(|n| n.keys.contains_key(&b"r"[..])));
    rig.refuse[2] = true;
    rig.core.handle_node_down(NodeId(2), rig.now);
    rig.drain();
    (rig, lease)
}

/// A release issued while a node's connection is down is owed to that node
/// and written after its handshake: the key there goes at once, not at its
/// TTL.
#[test]
fn a_release_issued_while_a_node_is_down_reaches_it_after_the_reconnect() {
    let (mut rig, lease) = held_on_three_then_node_2_down(9);
    let op = rig.core.release(&lease, rig.now).unwrap();
    rig.drain();
    assert!(
        matches!(rig.take_op_event(op), Some(Event::Released { report, .. }) if report.released() == 2),
        "decided on the two nodes that answered"
    );
    assert!(!rig.nodes[0].keys.contains_key(&b"r"[..]));
    assert!(
        rig.nodes[2].keys.contains_key(&b"r"[..]),
        "not reachable yet"
    );
    rig.refuse[2] = false;
    rig.advance(Duration::from_millis(200));
    assert!(
        !rig.nodes[2].keys.contains_key(&b"r"[..]),
        "the owed release was written after the handshake"
    );
}

/// An extension issued while a node is down owes that node nothing: when it
/// reconnects, our key there (still valid on its old TTL) is left alone.
#[test]
fn an_extend_issued_while_a_node_is_down_owes_it_nothing() {
    let (mut rig, lease) = held_on_three_then_node_2_down(10);
    let op = rig
        .core
        .extend(&lease, Duration::from_secs(10), rig.now)
        .unwrap();
    rig.drain();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::Extended { .. })
    ));
    rig.refuse[2] = false;
    rig.advance(Duration::from_millis(200));
    assert!(rig.core.is_connected(NodeId(2)));
    assert!(
        rig.nodes.iter().all(|n| n.keys.contains_key(&b"r"[..])),
        "every node still holds our key"
    );
}

/// A failed attempt undoes what it may have taken, and only that: a node
/// that answered "held by another" stored nothing and gets no undo; a node
/// that said OK, or that has not answered, does.
#[test]
fn a_failed_attempt_undoes_exactly_the_nodes_that_may_hold_its_key() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    for n in [1, 2] {
        rig.nodes[n]
            .keys
            .insert(b"r".to_vec(), (b"foreign".to_vec(), 100_000));
    }
    let op = acquire_r(&mut rig, RetryPolicy::none(), 11);
    rig.settle();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::AcquireFailed { error, .. }) if error.kind == FailureKind::Busy
    ));
    let names = |n: usize| -> Vec<Vec<u8>> {
        rig.nodes[n]
            .commands
            .iter()
            .map(|c| c[0].to_ascii_uppercase())
            .collect()
    };
    assert_eq!(
        names(0),
        [b"SET".to_vec(), b"EVAL".to_vec()],
        "node 0: SET, then its undo"
    );
    for n in [1, 2] {
        assert_eq!(names(n), [b"SET".to_vec()], "node {n} refused: no undo");
    }
    assert!(!rig.nodes[0].keys.contains_key(&b"r"[..]));
}

/// A wait budget ends at `first + wait`: a retry that would start exactly
/// then is not made.
#[test]
fn no_retry_starts_at_the_very_end_of_the_wait_budget() {
    let mut rig: Rig = Rig::new(1, Rig::<64, 128>::config(1_000));
    rig.nodes[0]
        .keys
        .insert(b"r".to_vec(), (b"foreign".to_vec(), 100_000));
    let retry = RetryPolicy {
        count: 0,
        delay: Duration::from_millis(100),
        jitter: Duration::ZERO,
        wait: Some(Duration::from_millis(100)),
    };
    let op = acquire_r(&mut rig, retry, 12);
    rig.settle();
    let Some(Event::AcquireFailed { error, .. }) = rig.take_op_event(op) else {
        panic!("busy");
    };
    assert_eq!(error.attempts, 1, "the retry would start at first + wait");
    // With a budget one millisecond longer it is made.
    let retry = RetryPolicy {
        wait: Some(Duration::from_millis(101)),
        ..retry
    };
    let op = acquire_r(&mut rig, retry, 13);
    rig.settle();
    let Some(Event::AcquireFailed { error, .. }) = rig.take_op_event(op) else {
        panic!("busy");
    };
    assert_eq!(error.attempts, 2);
}

/// Starts an acquire of `r` for 10 s and drives nothing.
fn acquire_r(rig: &mut Rig, retry: RetryPolicy, seed: u64) -> redlock_core::OpId {
    rig.core
        .acquire_with(
            b"r",
            Duration::from_secs(10),
            retry,
            &mut TestRng(seed),
            rig.now,
        )
        .unwrap()
}

fn commands_named(rig: &Rig, node: usize, name: &[u8]) -> usize {
    rig.nodes[node]
        .commands
        .iter()
        .filter(|c| c[0].eq_ignore_ascii_case(name))
        .count()
}

/// A release a node never answered stays owed to it: when the connection is
/// replaced, the release is written again and the key there goes at once.
#[test]
fn a_release_that_timed_out_is_written_again_on_the_next_connection() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let op = acquire_r(&mut rig, RetryPolicy::none(), 12);
    rig.settle();
    let Some(Event::Acquired { lease, .. }) = rig.take_op_event(op) else {
        panic!("acquired on three idle nodes");
    };
    rig.nodes[2].mode = Mode::Silent;
    let op = rig.core.release(&lease, rig.now).unwrap();
    rig.advance(Duration::from_millis(60));
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::Released { .. })
    ));
    assert!(rig.nodes[2].keys.contains_key(&b"r"[..]), "read, never run");
    rig.nodes[2].mode = Mode::Normal;
    rig.core.handle_node_down(NodeId(2), rig.now);
    rig.advance(Duration::from_millis(200));
    assert!(rig.core.is_connected(NodeId(2)));
    assert_eq!(commands_named(&rig, 2, b"EVAL"), 2, "written again");
    assert!(!rig.nodes[2].keys.contains_key(&b"r"[..]));
}

/// A key-taking command that timed out is never written again: a new
/// connection gets nothing of the finished acquire.
#[test]
fn a_set_that_timed_out_is_never_written_again() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[0].mode = Mode::Silent;
    let op = acquire_r(&mut rig, RetryPolicy::none(), 13);
    rig.drain();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::Acquired { .. })
    ));
    rig.advance(Duration::from_millis(60));
    rig.nodes[0].mode = Mode::Normal;
    rig.core.handle_node_down(NodeId(0), rig.now);
    rig.advance(Duration::from_millis(200));
    assert!(rig.core.is_connected(NodeId(0)));
    assert_eq!(
        commands_named(&rig, 0, b"SET"),
        1,
        "{:?}",
        rig.nodes[0].commands
    );
    assert_eq!(
        commands_named(&rig, 0, b"EVAL"),
        0,
        "nor turned into an undo"
    );
    assert!(!rig.nodes[0].keys.contains_key(&b"r"[..]));
}

/// Node 0 ran the SET and its reply is late; node 1's SET waits behind a
/// handshake reply (SELECT) that is late too, so it expires unwritten; node 2 says
/// "held". The attempt fails: the undo goes to node 0 only (node 1 never got
/// the SET, node 2 refused).
#[test]
fn an_expired_unwritten_set_clears_only_its_own_node_s_undo() {
    let mut nodes = vec![redlock_core::NodeConfig::default(); 3];
    nodes[1].db = 1;
    let mut rig: Rig = Rig::with_nodes(&nodes, Rig::<64, 128>::config(1_000));
    rig.nodes[2]
        .keys
        .insert(b"r".to_vec(), (b"foreign".to_vec(), 100_000));
    rig.hold[0] = true;
    rig.hold[1] = true;
    rig.core.handle_node_down(NodeId(1), rig.now);
    rig.advance(Duration::from_millis(200));
    let op = acquire_r(&mut rig, RetryPolicy::none(), 14);
    rig.drain();
    assert_eq!(
        commands_named(&rig, 1, b"SET"),
        0,
        "waits for the SELECT reply"
    );
    rig.advance(Duration::from_millis(60));
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::AcquireFailed { .. })
    ));
    rig.hold = vec![false; 3];
    rig.release_held(0);
    rig.release_held(1);
    rig.settle();
    assert_eq!(commands_named(&rig, 0, b"EVAL"), 1, "node 0's undo");
    assert!(!rig.nodes[0].keys.contains_key(&b"r"[..]));
    assert_eq!(
        commands_named(&rig, 1, b"EVAL"),
        0,
        "{:?}",
        rig.nodes[1].commands
    );
    assert_eq!(
        commands_named(&rig, 2, b"EVAL"),
        0,
        "{:?}",
        rig.nodes[2].commands
    );
}

/// Node 0 is silent, node 1 says OK, node 2 "held": the attempt fails when
/// node 0's SET times out, and the operation waits to retry. After node 0's
/// connection is replaced it gets the undo again, and only it (the
/// timed-out SET itself is never turned into something to write again).
#[test]
fn a_timed_out_set_of_a_retrying_acquire_owes_its_node_only_the_undo() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[0].mode = Mode::Silent;
    rig.nodes[2]
        .keys
        .insert(b"r".to_vec(), (b"foreign".to_vec(), 100_000));
    let retry = RetryPolicy {
        count: 1,
        delay: Duration::from_millis(500),
        jitter: Duration::ZERO,
        wait: None,
    };
    let op = acquire_r(&mut rig, retry, 15);
    rig.drain();
    rig.advance(Duration::from_millis(60));
    assert!(rig.take_op_event(op).is_none(), "waiting to retry");
    rig.nodes[0].mode = Mode::Normal;
    rig.core.handle_node_down(NodeId(0), rig.now);
    rig.advance(Duration::from_millis(200));
    assert!(rig.core.is_connected(NodeId(0)));
    assert_eq!(commands_named(&rig, 0, b"SET"), 1);
    // The undo written to the silent connection, then once more to the new.
    assert_eq!(
        commands_named(&rig, 0, b"EVAL"),
        2,
        "{:?}",
        rig.nodes[0].commands
    );
}

/// A failed attempt gives back the references of its requests whether they
/// were written and unanswered (node 0: abandoned, then undone) or still
/// queued (node 1, behind a late SELECT reply: withdrawn, never written).
#[test]
fn a_failed_attempt_frees_its_slot_whatever_its_requests_had_become() {
    let mut nodes = vec![redlock_core::NodeConfig::default(); 5];
    nodes[1].db = 1;
    let mut rig: Rig = Rig::with_nodes(&nodes, Rig::<64, 128>::config(1_000));
    rig.hold[1] = true;
    rig.core.handle_node_down(NodeId(1), rig.now);
    rig.advance(Duration::from_millis(200));
    for n in [2, 3, 4] {
        rig.nodes[n]
            .keys
            .insert(b"r".to_vec(), (b"foreign".to_vec(), 100_000));
    }
    let op = acquire_r(&mut rig, RetryPolicy::none(), 17);
    rig.hold = vec![true, true, true, true, true];
    rig.drain();
    assert_eq!(commands_named(&rig, 0, b"SET"), 1, "written");
    for n in [2, 3, 4] {
        rig.release_held(n);
    }
    // Three "held": busy at once, with node 0 unanswered and node 1 unsent.
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::AcquireFailed { error, .. }) if error.kind == FailureKind::Busy
    ));
    rig.hold = vec![false; 5];
    rig.release_held(0);
    rig.release_held(1);
    rig.settle();
    assert_eq!(commands_named(&rig, 1, b"SET"), 0, "withdrawn");
    assert_eq!(commands_named(&rig, 0, b"EVAL"), 1, "node 0's undo");
    assert!(rig.nodes[0].keys.is_empty());
    rig.events.clear();
    assert_eq!(rig.core.free_slots(), 64);
}

/// A node that answers "NOSCRIPT" (no script is ever sent by SHA) gets no
/// second copy of anything: the reply is that node's error.
#[test]
fn a_noscript_reply_is_an_error_never_a_reason_to_send_again() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[0].mode = Mode::Error("NOSCRIPT No matching script. Please use EVAL.");
    let op = acquire_r(&mut rig, RetryPolicy::none(), 18);
    rig.settle();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::Acquired { .. })
    ));
    assert_eq!(
        rig.nodes[0].commands.len(),
        1,
        "{:?}",
        rig.nodes[0].commands
    );
}

/// A release written to a connection that drops before any reply is owed
/// to the node: it is written again after the reconnect.
#[test]
fn a_release_in_flight_when_the_connection_drops_is_written_again() {
    let (mut rig, lease) = held_on_three_then_node_2_down(19);
    rig.refuse[2] = false;
    rig.advance(Duration::from_millis(200));
    assert!(rig.core.is_connected(NodeId(2)));
    rig.nodes[2].mode = Mode::Silent;
    let op = rig.core.release(&lease, rig.now).unwrap();
    rig.drain();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::Released { .. })
    ));
    rig.nodes[2].mode = Mode::Normal;
    rig.core.handle_node_down(NodeId(2), rig.now);
    rig.advance(Duration::from_millis(200));
    assert!(rig.core.is_connected(NodeId(2)));
    assert!(
        !rig.nodes[2].keys.contains_key(&b"r"[..]),
        "released there too"
    );
}
