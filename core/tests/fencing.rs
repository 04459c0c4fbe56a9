//! Fenced acquires through the real core: one round when the proposal is
//! above every counted register, two rounds otherwise, only counted nodes in
//! round 2, a failed round 2 undone like any attempt, extensions keep the
//! fence, proposals climb above every fence seen.

mod support;

use std::time::Duration;

use redlock_core::{
    fence_register, AcquireOptions, Event, Fencing, Lease, OpId, ResourceSet, RetryPolicy,
};
use support::{Rig, TestRng};

const WALL_MS: u64 = 1_000;
const P: u64 = WALL_MS * 1024;

fn fenced(retry: RetryPolicy) -> AcquireOptions {
    AcquireOptions {
        ttl: Duration::from_secs(1),
        retry,
        fencing: Fencing::On { unix_ms: WALL_MS },
    }
}

fn reg(resource: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 300];
    fence_register(resource, &mut buf).unwrap().to_vec()
}

fn acquire(rig: &mut Rig, set: &ResourceSet, retry: RetryPolicy, seed: u64) -> OpId {
    let op = rig
        .core
        .acquire_set(set, &fenced(retry), &mut TestRng(seed), rig.now)
        .unwrap();
    rig.drain();
    op
}

fn lease(rig: &mut Rig, op: OpId) -> Lease {
    match rig.take_op_event(op) {
        Some(Event::Acquired { lease, .. }) => lease,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

fn fence_writes(rig: &Rig, node: usize) -> usize {
    rig.nodes[node]
        .commands
        .iter()
        .filter(|c| c[0] == b"EVAL" && c[1] == redlock_core::FENCE_WRITE_SCRIPT.as_bytes())
        .count()
}

#[test]
fn one_round_when_the_proposal_is_above_every_register() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let set = ResourceSet::one(b"r").unwrap();
    let op = acquire(&mut rig, &set, RetryPolicy::none(), 1);
    let lease = lease(&mut rig, op);
    assert_eq!(lease.fence(), Some(P));
    for n in 0..3 {
        assert_eq!(rig.nodes[n].registers[&reg(b"r")], P);
        assert_eq!(fence_writes(&rig, n), 0, "one round only");
        assert_eq!(rig.nodes[n].keys[&b"r"[..]].0, lease.token().as_bytes());
    }
    assert_eq!(rig.core.last_fence(), P);
}

#[test]
fn two_rounds_when_a_counted_register_is_ahead() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[1].registers.insert(reg(b"r"), 5_000_000);
    let set = ResourceSet::one(b"r").unwrap();
    let op = acquire(&mut rig, &set, RetryPolicy::none(), 2);
    let lease = lease(&mut rig, op);
    // Nodes 0 and 1 made the quorum (replies in node order): f = 1 + max(old).
    assert_eq!(lease.fence(), Some(5_000_001));
    assert_eq!(rig.nodes[0].registers[&reg(b"r")], 5_000_001);
    assert_eq!(rig.nodes[1].registers[&reg(b"r")], 5_000_001);
    // Node 2 answered after the quorum: its read did not count, it got no round 2.
    assert_eq!(fence_writes(&rig, 2), 0);
    assert_eq!(rig.nodes[2].registers[&reg(b"r")], P);
    // The next proposal starts above every fence seen.
    rig.core.release(&lease, rig.now).unwrap();
    rig.settle();
    let op = acquire(&mut rig, &set, RetryPolicy::none(), 3);
    assert_eq!(lease_fence(&mut rig, op), 5_000_002);
}

fn lease_fence(rig: &mut Rig, op: OpId) -> u64 {
    lease(rig, op).fence().unwrap()
}

/// Node 1's register is ahead, so round 2 runs; node 2's round-1 OK
/// arrives while round 2 waits for node 1. Returns the round-2 writes node 2
/// received and the fence granted.
fn late_ok_during_round_two(weak: redlock_core::Weakness) -> (usize, u64) {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.core.weaken_with(weak);
    rig.nodes[1].registers.insert(reg(b"r"), 5_000_000);
    rig.nodes[2].registers.insert(reg(b"r"), 9_000_000);
    rig.hold[1] = true;
    rig.hold[2] = true;
    let set = ResourceSet::one(b"r").unwrap();
    let op = acquire(&mut rig, &set, RetryPolicy::none(), 4);
    // Node 1's OK makes the quorum {0, 1}: round 2, whose reply from node 1
    // is held again.
    rig.release_held(1);
    assert!(rig.take_op_event(op).is_none());
    // Node 2's OK comes late.
    rig.release_held(2);
    let writes = fence_writes(&rig, 2);
    rig.hold = vec![false; 3];
    rig.release_held(1);
    rig.release_held(2);
    (writes, lease_fence(&mut rig, op))
}

#[test]
fn a_late_ok_never_counts() {
    let (writes, fence) = late_ok_during_round_two(Default::default());
    assert_eq!(writes, 0, "node 2's read did not go into the fence");
    assert_eq!(fence, 5_000_001, "decided by the counted nodes 0 and 1");
}

#[test]
fn the_planted_late_ok_is_counted() {
    // The weakened core sends round 2 to late OKs too and counts them.
    let (writes, _) = late_ok_during_round_two(redlock_core::Weakness {
        fence_late_ok: true,
        ..Default::default()
    });
    assert_eq!(writes, 1, "round 2 went to a node whose read never counted");
}

#[test]
fn a_failed_round_two_is_undone_and_retried_with_a_fresh_token() {
    use redlock_core::NodeId;
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[0].registers.insert(reg(b"r"), 5_000_000);
    // Node 2 is down; node 1's replies are held: round 2 cannot reach a quorum.
    rig.refuse[2] = true;
    rig.core.handle_node_down(NodeId(2), rig.now);
    rig.hold[1] = true;
    let retry = RetryPolicy {
        count: 1,
        delay: Duration::from_millis(100),
        jitter: Duration::ZERO,
        wait: None,
    };
    let set = ResourceSet::one(b"r").unwrap();
    let op = acquire(&mut rig, &set, retry, 6);
    rig.release_held(1);
    assert_eq!(fence_writes(&rig, 0), 1);
    assert_eq!(fence_writes(&rig, 1), 1);
    rig.advance(Duration::from_millis(60));
    // Round 2 timed out on node 1: the attempt failed and was undone.
    assert!(rig.take_op_event(op).is_none(), "retrying");
    assert!(
        !rig.nodes[0].keys.contains_key(&b"r"[..]),
        "undone on node 0"
    );
    assert!(
        !rig.nodes[1].keys.contains_key(&b"r"[..]),
        "undone on node 1"
    );
    // Node 1's connection drops (its held replies are lost), node 2 is back.
    rig.held[1].clear();
    rig.hold[1] = false;
    rig.core.handle_node_down(NodeId(1), rig.now);
    rig.refuse[2] = false;
    rig.settle();
    let lease = lease(&mut rig, op);
    assert!(lease.fence().unwrap() > 5_000_000);
    assert_eq!(&lease.token().as_str()[40..], "00000002");
    // Every request the operation left behind (the abandoned round-2 write
    // included) gave its reference back: the slot is free once released.
    rig.core.release(&lease, rig.now).unwrap();
    rig.settle();
    rig.events.clear();
    assert_eq!(rig.core.free_slots(), 64);
}

#[test]
fn an_extension_keeps_the_fence() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let set = ResourceSet::one(b"r").unwrap();
    let op = acquire(&mut rig, &set, RetryPolicy::none(), 7);
    let first = lease(&mut rig, op);
    rig.advance(Duration::from_millis(100));
    let op = rig
        .core
        .extend(&first, Duration::from_secs(1), rig.now)
        .unwrap();
    rig.drain();
    match rig.take_op_event(op) {
        Some(Event::Extended { lease, .. }) => assert_eq!(lease.fence(), first.fence()),
        e => panic!("{e:?}"),
    }
    // Release leaves the register alone.
    rig.core.release(&first, rig.now).unwrap();
    rig.settle();
    assert!(rig.nodes.iter().all(|n| n.registers[&reg(b"r")] == P));
}

#[test]
fn several_resources_share_one_fence_above_each_register() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[0].registers.insert(reg(b"b"), 7_000_000);
    let set = ResourceSet::new(&[b"c".as_slice(), b"a", b"b"]).unwrap();
    let op = acquire(&mut rig, &set, RetryPolicy::none(), 8);
    let lease = lease(&mut rig, op);
    assert_eq!(lease.fence(), Some(7_000_001));
    for r in [b"a", b"b", b"c"] {
        assert!(rig.nodes[0].registers[&reg(r)] >= 7_000_001);
        assert!(rig.nodes[1].registers[&reg(r)] >= 7_000_001);
    }
}

#[test]
fn the_wall_clock_is_only_a_hint() {
    // A wall clock far behind the registers: two rounds, still above them.
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    for n in &mut rig.nodes {
        n.registers.insert(reg(b"r"), u64::pow(10, 15));
    }
    let set = ResourceSet::one(b"r").unwrap();
    let opts = AcquireOptions {
        fencing: Fencing::On { unix_ms: 0 },
        ..fenced(RetryPolicy::none())
    };
    let op = rig
        .core
        .acquire_set(&set, &opts, &mut TestRng(9), rig.now)
        .unwrap();
    rig.drain();
    assert_eq!(lease_fence(&mut rig, op), u64::pow(10, 15) + 1);
    // A register at the largest fence cannot be outgrown: a typed failure.
    let mut rig: Rig = Rig::new(1, Rig::<64, 128>::config(1_000));
    rig.nodes[0]
        .registers
        .insert(reg(b"r"), redlock_core::fence::MAX_FENCE);
    let op = rig
        .core
        .acquire_set(&set, &opts, &mut TestRng(10), rig.now)
        .unwrap();
    rig.settle();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::AcquireFailed { .. })
    ));
    assert!(rig.nodes[0].keys.is_empty(), "the failed attempt is undone");
    // One below it: the largest fence itself is still granted.
    let mut rig: Rig = Rig::new(1, Rig::<64, 128>::config(1_000));
    rig.nodes[0]
        .registers
        .insert(reg(b"r"), redlock_core::fence::MAX_FENCE - 1);
    let op = rig
        .core
        .acquire_set(&set, &opts, &mut TestRng(11), rig.now)
        .unwrap();
    rig.settle();
    assert_eq!(lease_fence(&mut rig, op), redlock_core::fence::MAX_FENCE);
}

/// Round 1 on three nodes with every reply held: node 0's register is
/// ahead, so nodes 0 and 1 make the quorum and round 2 goes to both; before
/// node 0 runs its fence write, `tamper` changes it. Returns the failure.
fn round_two_on_a_tampered_node(
    tamper: impl FnOnce(&mut support::FakeNode),
) -> redlock_core::LockError {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[0].registers.insert(reg(b"r"), 5_000_000);
    rig.hold = vec![true; 3];
    let set = ResourceSet::one(b"r").unwrap();
    let op = acquire(&mut rig, &set, RetryPolicy::none(), 11);
    tamper(&mut rig.nodes[0]);
    rig.release_held(0);
    rig.release_held(1);
    assert_eq!((fence_writes(&rig, 0), fence_writes(&rig, 1)), (1, 1));
    // Node 2's OK arrives late: part of the lock (and of its undo), not
    // counted, and reported as round 1 saw it.
    rig.release_held(2);
    rig.release_held(0);
    rig.release_held(1);
    let error = match rig.take_op_event(op) {
        Some(Event::AcquireFailed { error, .. }) => error,
        other => panic!("expected AcquireFailed, got {other:?}"),
    };
    assert_eq!(error.nodes.get(2), redlock_core::NodeOutcome::Ok, "{error}");
    // Node 1's key and node 2's late OK are undone (node 0 is tampered).
    rig.hold = vec![false; 3];
    rig.release_held(2);
    rig.settle();
    assert!(rig.nodes[1..].iter().all(|n| n.keys.is_empty()), "undone");
    rig.events.clear();
    assert_eq!(
        rig.core.free_slots(),
        64,
        "every request gave its reference back"
    );
    error
}

#[test]
fn a_round_two_write_that_finds_the_key_gone_is_reported_as_such() {
    use redlock_core::{FailureKind, NodeOutcome};
    let error = round_two_on_a_tampered_node(|n| n.keys.clear());
    assert_eq!(error.kind, FailureKind::Unavailable);
    // The report says what failed in round 2, not round 1's "ok".
    assert_eq!(error.nodes.get(0), NodeOutcome::Missing, "{error}");
    // Decided by node 0 alone (one counted node short): node 1's write was
    // not needed.
    assert_eq!(error.nodes.get(1), NodeOutcome::Pending);
}

#[test]
fn a_round_two_write_refused_by_the_node_s_acl_is_an_auth_failure() {
    use redlock_core::{ErrorKind, FailureKind, NodeOutcome};
    let error = round_two_on_a_tampered_node(|n| {
        n.mode =
            support::Mode::Error("NOPERM this user has no permissions to run the 'eval' command");
    });
    assert_eq!(error.kind, FailureKind::AuthFailed, "{error}");
    assert_eq!(error.nodes.get(0), NodeOutcome::Failed(ErrorKind::Auth));
}

/// Round 2 is queued but not yet written when node 0's connection drops:
/// the round fails, node 1's queued fence write is withdrawn (never
/// written), its key undone, and the slot is free again.
#[test]
fn a_fence_write_still_queued_when_round_two_fails_is_withdrawn() {
    use redlock_core::NodeId;
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[0].registers.insert(reg(b"r"), 5_000_000);
    rig.hold = vec![true; 3];
    let set = ResourceSet::one(b"r").unwrap();
    let op = acquire(&mut rig, &set, RetryPolicy::none(), 16);
    rig.release_held(0);
    // Node 1's OK makes the quorum: round 2 is queued for nodes 0 and 1.
    let bytes = std::mem::take(&mut rig.held[1]);
    rig.core.handle_input(NodeId(1), &bytes, rig.now);
    rig.core.handle_node_down(NodeId(0), rig.now);
    rig.hold = vec![false; 3];
    rig.release_held(2);
    rig.settle();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::AcquireFailed { .. })
    ));
    assert_eq!(fence_writes(&rig, 1), 0, "withdrawn before it was written");
    assert!(rig.nodes[1..].iter().all(|n| n.keys.is_empty()), "undone");
    rig.events.clear();
    assert_eq!(rig.core.free_slots(), 64);
}
