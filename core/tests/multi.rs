//! Multi-resource locks through the real core: all or nothing on each node,
//! normalised sets, overlapping sets busy and never partially taken, undo,
//! extend and release covering every key (and only ours).

mod support;

use std::time::Duration;

use redlock_core::{
    AcquireOptions, Event, FailureKind, Lease, NodeOutcome, OpId, ResourceSet, RetryPolicy,
};
use support::{Rig, TestRng};

fn once() -> AcquireOptions {
    AcquireOptions {
        ttl: Duration::from_secs(1),
        retry: RetryPolicy::none(),
        fencing: redlock_core::Fencing::Off,
    }
}

fn set(names: &[&str]) -> ResourceSet {
    let v: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    ResourceSet::new(&v).unwrap()
}

fn acquire(rig: &mut Rig, s: &ResourceSet, seed: u64) -> OpId {
    let op = rig
        .core
        .acquire_set(s, &once(), &mut TestRng(seed), rig.now)
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

fn holds(rig: &Rig, node: usize, key: &str) -> Option<Vec<u8>> {
    rig.nodes[node]
        .keys
        .get(key.as_bytes())
        .map(|(v, _)| v.clone())
}

#[test]
fn a_node_holding_any_key_of_the_set_takes_none_of_it() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    rig.nodes[0]
        .keys
        .insert(b"b".to_vec(), (b"foreign".to_vec(), 100_000));
    let op = acquire(&mut rig, &set(&["a", "b", "c"]), 1);
    let lease = lease(&mut rig, op);
    assert_eq!(lease.resources().len(), 3);
    // Node 0 refused the whole set: it took neither a nor c.
    assert_eq!(holds(&rig, 0, "a"), None);
    assert_eq!(holds(&rig, 0, "c"), None);
    assert_eq!(holds(&rig, 0, "b").as_deref(), Some(&b"foreign"[..]));
    for n in 1..3 {
        for k in ["a", "b", "c"] {
            assert_eq!(holds(&rig, n, k).as_deref(), Some(lease.token().as_bytes()));
        }
    }
}

#[test]
fn an_overlapping_set_is_busy_and_takes_nothing() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let op = acquire(&mut rig, &set(&["a", "b"]), 2);
    let held = lease(&mut rig, op);
    let op = acquire(&mut rig, &set(&["b", "c"]), 3);
    match rig.take_op_event(op) {
        Some(Event::AcquireFailed { error, .. }) => {
            assert_eq!(error.kind, FailureKind::Busy);
            assert!(error.nodes.iter().all(|(_, o)| o != NodeOutcome::Ok));
        }
        e => panic!("{e:?}"),
    }
    for n in 0..3 {
        assert_eq!(holds(&rig, n, "c"), None, "c never partially taken");
        assert_eq!(
            holds(&rig, n, "b").as_deref(),
            Some(held.token().as_bytes())
        );
    }
    // A disjoint set is free.
    let op = acquire(&mut rig, &set(&["c", "d"]), 4);
    lease(&mut rig, op);
}

#[test]
fn order_and_duplicates_do_not_matter() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let op = acquire(&mut rig, &set(&["z", "m", "z", "a"]), 5);
    let lease = lease(&mut rig, op);
    let names: Vec<&[u8]> = lease.resources().iter().collect();
    assert_eq!(names, [b"a".as_slice(), b"m", b"z"]);
    let op = acquire(&mut rig, &set(&["a", "m", "z"]), 6);
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::AcquireFailed { error, .. }) if error.kind == FailureKind::Busy
    ));
    // Releasing by the same set in another order removes it.
    let op = rig
        .core
        .release_token_set(&set(&["m", "z", "a", "a"]), lease.token(), rig.now)
        .unwrap();
    rig.settle();
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::Released { .. })
    ));
    assert!(rig.nodes.iter().all(|n| n.keys.is_empty()));
}

#[test]
fn extend_and_release_cover_every_key_and_only_ours() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    let op = acquire(&mut rig, &set(&["a", "b"]), 7);
    let first = lease(&mut rig, op);
    rig.advance(Duration::from_millis(300));
    let op = rig
        .core
        .extend(&first, Duration::from_secs(1), rig.now)
        .unwrap();
    rig.drain();
    let lease = match rig.take_op_event(op) {
        Some(Event::Extended { lease, .. }) => lease,
        e => panic!("{e:?}"),
    };
    for n in 0..3 {
        for k in [b"a", b"b"] {
            assert_eq!(rig.nodes[n].keys[&k[..]].1, 1_300);
        }
    }
    // On node 2, b was taken over by someone else (our key expired there).
    rig.nodes[2]
        .keys
        .insert(b"b".to_vec(), (b"foreign".to_vec(), 100_000));
    let op = rig.core.release(&lease, rig.now).unwrap();
    rig.settle();
    match rig.take_op_event(op) {
        Some(Event::Released { report, .. }) => {
            assert_eq!(report.verdict(), redlock_core::ReleaseVerdict::Released)
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(holds(&rig, 2, "b").as_deref(), Some(&b"foreign"[..]));
    assert_eq!(holds(&rig, 2, "a"), None);
    assert!(rig.nodes[..2].iter().all(|n| n.keys.is_empty()));
    // An extension of a set partly gone on a node counts as "missing" there.
    let op = rig
        .core
        .extend_token_set(
            &set(&["a", "b"]),
            lease.token(),
            Duration::from_secs(1),
            rig.now,
        )
        .unwrap();
    rig.settle();
    match rig.take_op_event(op) {
        Some(Event::Lost { error, .. }) => {
            assert_eq!(error.kind, FailureKind::NotHeld);
            assert_eq!(error.nodes.get(0), NodeOutcome::Missing);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn a_failed_multi_attempt_undoes_every_key() {
    let mut rig: Rig = Rig::new(3, Rig::<64, 128>::config(1_000));
    for n in 1..3 {
        rig.nodes[n]
            .keys
            .insert(b"c".to_vec(), (b"foreign".to_vec(), 100_000));
    }
    let op = acquire(&mut rig, &set(&["a", "b", "c"]), 8);
    assert!(matches!(
        rig.take_op_event(op),
        Some(Event::AcquireFailed { .. })
    ));
    rig.settle();
    // Node 0 took the whole set, then its undo removed all of it.
    assert!(rig.nodes[0].keys.is_empty());
    for n in 1..3 {
        assert_eq!(rig.nodes[n].keys.len(), 1);
    }
}
