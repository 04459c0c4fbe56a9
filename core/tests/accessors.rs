//! The core's small public accessors and bounds, each pinned by value.

mod support;

use std::time::Duration;

use redlock_core::{
    fence::MAX_FENCE, Config, Event, Instant, NodeConfig, NodeId, Redlock, RetryPolicy,
};
use support::TestRng;

#[test]
fn diagnostics_a_caller_does_not_poll_stop_at_64_and_are_counted() {
    let config = Config::new(Duration::from_secs(2));
    let mut core: Redlock<128, 256> = Redlock::new(config, &[NodeConfig::default()]).unwrap();
    let mut now = Instant::ZERO;
    assert!(matches!(core.poll_event(), Some(Event::Connect { .. })));
    core.handle_connected(NodeId(0), now);
    let mut buf = [0u8; 4096];
    let mut ops = Vec::new();
    for i in 0..100 {
        let op = core
            .acquire_with(
                b"r",
                Duration::from_secs(2),
                RetryPolicy::none(),
                &mut TestRng(i),
                now,
            )
            .unwrap();
        ops.push(op);
        while core.poll_transmit(&mut buf).is_some() {}
    }
    // The node never answers: 100 requests time out, one diagnostic each.
    now = now + Duration::from_secs(1);
    core.handle_timeout(now);
    let (mut diagnostics, mut results, mut directives) = (0, 0, 0);
    while let Some(e) = core.poll_event() {
        match e {
            Event::NodeFailed { .. } => diagnostics += 1,
            Event::AcquireFailed { .. } => results += 1,
            _ => directives += 1,
        }
    }
    assert_eq!(results, 100, "results are never dropped");
    assert_eq!(
        diagnostics, 64,
        "diagnostics are queued while fewer than 64 events wait"
    );
    // At least one per timed-out request (the handshake may add its own).
    assert!(
        core.dropped_diagnostics() + 64 >= 100,
        "every other one is counted: {}",
        core.dropped_diagnostics()
    );
    let _ = directives;
}

#[test]
fn counts_quorum_and_config() {
    for (n, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (16, 9)] {
        let core: Redlock<8, 16> = Redlock::new(
            Config::new(Duration::from_millis(1_234)),
            &vec![NodeConfig::default(); n],
        )
        .unwrap();
        assert_eq!((core.node_count(), core.quorum()), (n, q));
        assert_eq!(core.config().ttl, Duration::from_millis(1_234));
        assert_eq!(core.operations_in_flight(), 0);
        assert_eq!(core.free_slots(), 8);
    }
}

#[test]
fn a_node_is_connected_only_once_the_transport_says_so() {
    let mut core: Redlock<8, 16> =
        Redlock::new(Config::default(), &vec![NodeConfig::default(); 2]).unwrap();
    assert!(!core.is_connected(NodeId(0)));
    core.handle_connected(NodeId(0), Instant::ZERO);
    assert!(core.is_connected(NodeId(0)));
    assert!(!core.is_connected(NodeId(1)));
    assert!(!core.is_connected(NodeId(7)), "no such node");
    core.handle_node_down(NodeId(0), Instant::ZERO);
    assert!(!core.is_connected(NodeId(0)));
}

#[test]
fn observed_fences_only_raise_the_last_fence_and_stay_below_2_pow_53() {
    let mut core: Redlock<8, 16> =
        Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    assert_eq!(core.last_fence(), 0);
    core.observe_fence(41);
    assert_eq!(core.last_fence(), 41);
    core.observe_fence(7);
    assert_eq!(core.last_fence(), 41, "never lowered");
    core.observe_fence(u64::MAX);
    assert_eq!(core.last_fence(), MAX_FENCE);
}

#[test]
fn a_second_down_report_for_a_node_in_backoff_changes_nothing() {
    let mut core: Redlock<8, 16> =
        Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    let now = Instant::ZERO;
    while core.poll_event().is_some() {}
    core.handle_node_down(NodeId(0), now);
    let backoff = core.poll_timeout();
    let mut first = 0;
    while core.poll_event().is_some() {
        first += 1;
    }
    assert!(first > 0, "the first report is a diagnostic");
    core.handle_node_down(NodeId(0), now);
    assert_eq!(core.poll_timeout(), backoff, "the backoff is not extended");
    assert!(core.poll_event().is_none(), "nor reported twice");
}

/// Nodes take turns: after a transmit to one node the next goes to the
/// next node with work, so a caller that sends one transmit at a time
/// cannot starve a node behind a busy one.
#[test]
fn poll_transmit_serves_the_nodes_in_turn() {
    let mut core: Redlock<8, 16> =
        Redlock::new(Config::default(), &vec![NodeConfig::default(); 3]).unwrap();
    let now = Instant::ZERO;
    for n in 0..3 {
        core.handle_connected(NodeId(n), now);
    }
    let mut buf = [0u8; 4096];
    while core.poll_transmit(&mut buf).is_some() {}
    for i in 0..2 {
        core.acquire_with(
            b"r",
            Duration::from_secs(10),
            RetryPolicy::none(),
            &mut TestRng(i),
            now,
        )
        .unwrap();
    }
    // Room for one command at a time.
    let mut small = [0u8; 120];
    let order: Vec<u8> =
        std::iter::from_fn(|| core.poll_transmit(&mut small).map(|t| t.node.0)).collect();
    assert_eq!(order, [0, 1, 2, 0, 1, 2]);
}

/// A command that does not fit even an empty transmit buffer fails its
/// request at once (a typed error), instead of waiting for its deadline.
#[test]
fn a_buffer_too_small_for_one_command_fails_the_request_at_once() {
    let mut core: Redlock<8, 16> =
        Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    let now = Instant::ZERO;
    core.handle_connected(NodeId(0), now);
    let mut buf = [0u8; 4096];
    while core.poll_transmit(&mut buf).is_some() {}
    while core.poll_event().is_some() {}
    let op = core
        .acquire_with(
            b"r",
            Duration::from_secs(10),
            RetryPolicy::none(),
            &mut TestRng(3),
            now,
        )
        .unwrap();
    assert_eq!(core.poll_transmit(&mut [0u8; 16]), None);
    let mut failed = None;
    while let Some(e) = core.poll_event() {
        if let Event::AcquireFailed { op: o, error } = e {
            assert_eq!(o, op);
            failed = Some(error);
        }
    }
    let error = failed.expect("failed at once, without waiting for a timeout");
    assert_eq!(
        error.nodes.get(0),
        redlock_core::NodeOutcome::Failed(redlock_core::ErrorKind::BufferTooSmall)
    );
}

/// Even a caller that breaks the contract (reports connections it was never
/// asked to open, never polls) cannot grow the queue or lose count: every
/// event is either queued or counted as dropped.
#[test]
fn a_caller_that_never_polls_loses_no_count() {
    let mut core: Redlock<8, 16> =
        Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    let now = Instant::ZERO;
    for _ in 0..100 {
        core.handle_connected(NodeId(0), now);
        // A reply to no request: a protocol error, the link is reset
        // (a Disconnect directive and a diagnostic).
        core.handle_input(NodeId(0), b"+OK\r\n", now);
    }
    let mut queued = 0u64;
    while core.poll_event().is_some() {
        queued += 1;
    }
    assert!(queued <= 96, "bounded: {queued}");
    assert_eq!(queued + core.dropped_diagnostics(), 1 + 2 * 100);
}

#[test]
fn the_largest_fence_is_2_pow_53_minus_1() {
    assert_eq!(MAX_FENCE, 9_007_199_254_740_991);
}

#[test]
fn a_fence_guard_refuses_only_older_fences() {
    use redlock_core::fence::{FenceGuard, StaleFence};
    let mut g = FenceGuard::new();
    assert_eq!(g.highest(), 0);
    assert_eq!(g.admit(5), Ok(()));
    assert_eq!(g.highest(), 5);
    assert_eq!(g.admit(5), Ok(()), "the same holder writes twice");
    assert_eq!(
        g.admit(4),
        Err(StaleFence {
            fence: 4,
            highest: 5
        })
    );
    assert_eq!(g.highest(), 5, "a refusal changes nothing");
    assert_eq!(g.admit(9), Ok(()));
    assert_eq!(FenceGuard::resume(9).admit(8).unwrap_err().highest, 9);
    assert_eq!(
        g.admit(1).unwrap_err().to_string(),
        "stale fence 1: a newer holder (fence 9) has written"
    );
}

#[test]
fn resource_sets_contain_and_overlap_by_name() {
    use redlock_core::ResourceSet;
    let ab = ResourceSet::new(&[b"b".as_slice(), b"a", b"b"]).unwrap();
    let bc = ResourceSet::new(&[b"b".as_slice(), b"c"]).unwrap();
    let c = ResourceSet::one(b"c").unwrap();
    assert!(ab.contains(b"a") && ab.contains(b"b") && !ab.contains(b"c"));
    assert!(!ab.contains(b"ab"), "whole names only");
    assert!(ab.overlaps(&bc) && bc.overlaps(&ab));
    assert!(!ab.overlaps(&c) && !c.overlaps(&ab));
    assert!(c.overlaps(&bc));
}

#[test]
fn the_longest_an_acquire_takes_saturates_and_a_late_start_keeps_the_deadline() {
    let t = Duration::from_millis(100);
    let r = RetryPolicy {
        count: 2,
        delay: Duration::from_millis(50),
        jitter: Duration::from_millis(20),
        wait: None,
    };
    assert_eq!(r.longest(t), Duration::from_millis(300 + 120));
    let huge = RetryPolicy {
        count: u32::MAX,
        delay: Duration::MAX,
        ..r
    };
    assert_eq!(huge.longest(t), Duration::MAX);
    let short = RetryPolicy {
        wait: Some(Duration::from_millis(10)),
        ..r
    };
    assert_eq!(short.longest(t), t, "at least one node timeout");
    assert_eq!(r.after_waiting(Duration::from_secs(1)), r);
}

#[test]
fn the_token_of_an_attempt_ends_in_its_number_in_hex() {
    let t = redlock_core::Token::from_bytes(b"0123456789abcdef0123456789abcdef01234567").unwrap();
    let a = t.for_attempt(0x1234_abcd);
    assert_eq!(&a.as_str()[40..], "1234abcd");
    assert_eq!(&a.as_str()[..40], t.as_str());
}

#[test]
fn validation_edges() {
    use redlock_core::{ConfigError, MAX_RETRY_PAUSE};
    let mut c = Config::new(Duration::from_secs(2));
    c.reconnect_max = c.reconnect_min;
    assert_eq!(c.validate(), Ok(()), "equal bounds are fine");
    let mut c = Config::new(Duration::from_secs(2));
    c.reconnect_max = c.reconnect_min - Duration::from_micros(1);
    assert_eq!(c.validate(), Err(ConfigError::Reconnect));
    let jitter = RetryPolicy {
        jitter: MAX_RETRY_PAUSE + Duration::from_millis(1),
        ..RetryPolicy::default()
    };
    assert_eq!(jitter.validate(), Err(ConfigError::Retry), "jitter alone");
}
