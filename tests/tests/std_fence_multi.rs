//! redlock-std against real redis-server processes: fenced locks (one and
//! two rounds, fences that grow, extensions that keep them, registers that
//! plain locks and releases leave alone, a stale holder refused by a
//! FenceGuard) and locks over several resources (contention over
//! overlapping sets, foreign keys on some nodes, nodes down, release of
//! exactly our keys, interop with single-resource locks).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redlock_std::{Client, Error, FenceGuard, LockOptions, RetryPolicy};
use redlock_tests::{Cluster, Reply};

fn client(urls: &[String], ttl: Duration) -> Client {
    Client::builder()
        .nodes(urls)
        .ttl(ttl)
        .node_timeout(Duration::from_millis(200))
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
}

fn fenced() -> LockOptions {
    LockOptions::new().fenced()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

const SETTLE: Duration = Duration::from_secs(5);

// ------------------------------------------------------------------ fencing

#[test]
fn a_fenced_lock_takes_one_round_on_fresh_registers() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    for n in &cluster.nodes {
        n.reset_stats();
    }
    let before = unix_ms();
    let lease = c.lock_with("f:one", &fenced()).unwrap();
    let after = unix_ms();
    let fence = lease.fence().expect("a fenced lease has a fence");
    assert!((before * 1024..=after * 1024).contains(&fence), "{fence}");
    assert!(c.flush(SETTLE).unwrap(), "every node answered");
    for n in &cluster.nodes {
        assert_eq!(n.calls("eval"), 1, "one script per node: one round");
        assert_eq!(n.fence_register("f:one"), Some(fence));
    }
    // A plain lease has none.
    assert_eq!(c.lock("f:plain").unwrap().fence(), None);
}

#[test]
fn a_register_ahead_forces_a_second_round_and_the_fence_above_it() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    // Far above any proposal (wall clock ms x 1024 ~ 1.8e15), below 2^53,
    // on two nodes: every quorum counts one of them.
    const AHEAD: u64 = 5_000_000_000_000_000;
    for n in &cluster.nodes[..2] {
        n.command(&["SET", "{f:two}:fence", &AHEAD.to_string()]);
    }
    for n in &cluster.nodes {
        n.reset_stats();
    }
    let lease = c.lock_with("f:two", &fenced()).unwrap();
    assert_eq!(lease.fence(), Some(AHEAD + 1));
    assert!(c.flush(SETTLE).unwrap());
    let two_rounds = cluster
        .nodes
        .iter()
        .filter(|n| n.calls("eval") == 2)
        .count();
    assert!(two_rounds >= 2, "round 2 went to the counted nodes");
    let raised = cluster
        .nodes
        .iter()
        .filter(|n| n.fence_register("f:two") == Some(AHEAD + 1))
        .count();
    assert!(raised >= 2, "a quorum holds the new fence");
    // The next proposal starts above what this client saw: one round again.
    lease.release().unwrap();
    for n in &cluster.nodes {
        n.reset_stats();
    }
    let next = c.lock_with("f:two", &fenced()).unwrap();
    assert_eq!(next.fence(), Some(AHEAD + 2));
    assert!(c.flush(SETTLE).unwrap());
    assert!(cluster.nodes.iter().all(|n| n.calls("eval") == 1));
}

#[test]
fn fences_grow_across_grants_and_clients_and_extensions_keep_them() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let (a, b) = (
        client(&urls, Duration::from_secs(10)),
        client(&urls, Duration::from_secs(10)),
    );
    let mut last = 0;
    for i in 0..6 {
        let c = if i % 2 == 0 { &a } else { &b };
        let mut lease = c.lock_with("f:grow", &fenced()).unwrap();
        let fence = lease.fence().unwrap();
        assert!(fence > last, "grant {i}: {fence} > {last}");
        lease.extend(Duration::from_secs(10)).unwrap();
        assert_eq!(lease.fence(), Some(fence), "extend keeps the fence");
        last = fence;
        lease.release().unwrap();
    }
    // A kept lease keeps its fence across renewals.
    let short = client(&urls, Duration::from_millis(300));
    let kept = short.lock_and_keep_with("f:kept", &fenced()).unwrap();
    let fence = kept.fence().unwrap();
    let first_deadline = kept.until();
    assert!(!kept.wait_timeout(Duration::from_millis(700)), "kept");
    assert!(kept.until() > first_deadline, "renewed");
    assert_eq!(kept.fence(), Some(fence));
    assert_eq!(kept.lease().fence(), Some(fence));
    kept.release().unwrap();
}

#[test]
fn plain_locks_and_releases_leave_registers_alone() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    for n in &cluster.nodes {
        n.command(&["SET", "{f:plain}:fence", "77"]);
    }
    let mut lease = c.lock(["f:plain", "f:other"]).unwrap();
    lease.extend(Duration::from_secs(5)).unwrap();
    lease.release().unwrap();
    let fenced_lease = c.lock_with("f:kept-reg", &fenced()).unwrap();
    let fence = fenced_lease.fence().unwrap();
    fenced_lease.release().unwrap();
    assert!(c.flush(SETTLE).unwrap());
    for n in &cluster.nodes {
        assert_eq!(n.fence_register("f:plain"), Some(77));
        assert_eq!(
            n.fence_register("f:other"),
            None,
            "no register made by a plain lock"
        );
        assert_eq!(
            n.fence_register("f:kept-reg"),
            Some(fence),
            "release left it"
        );
    }
}

/// A holder paused past its lease (a thread blocked while its lease runs
/// out) writes with its old fence after a newer holder did: the store's
/// FenceGuard refuses it, and the data stays the newer holder's.
#[test]
fn a_paused_holder_s_late_write_is_refused_by_the_store() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    // The protected store: the data and the guard, updated together.
    let store = Arc::new(Mutex::new((FenceGuard::new(), String::from("init"))));
    let write = |store: &Mutex<(FenceGuard, String)>, fence: u64, v: &str| {
        let mut s = store.lock().unwrap();
        s.0.admit(fence)?;
        s.1 = v.to_owned();
        Ok::<(), redlock_std::StaleFence>(())
    };
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let (fence_tx, fence_rx) = mpsc::channel::<u64>();
    let holder1 = {
        let (urls, store) = (urls.clone(), Arc::clone(&store));
        thread::spawn(move || {
            let c = client(&urls, Duration::from_millis(400));
            let lease = c.lock_with("f:kleppmann", &fenced()).unwrap();
            let fence = lease.fence().unwrap();
            let _ = lease.forget(); // nobody releases or extends it
            fence_tx.send(fence).unwrap();
            // "GC pause": blocked until told, long past the lease.
            resume_rx.recv().unwrap();
            write(&store, fence, "holder1")
        })
    };
    let f1 = fence_rx.recv().unwrap();
    assert!(
        cluster.wait_gone("f:kleppmann", Duration::from_secs(5)),
        "holder 1's lease ran out"
    );
    let c2 = client(&urls, Duration::from_secs(10));
    let lease2 = c2.lock_with("f:kleppmann", &fenced()).unwrap();
    let f2 = lease2.fence().unwrap();
    assert!(f2 > f1);
    write(&store, f2, "holder2").unwrap();
    resume_tx.send(()).unwrap();
    let stale = holder1.join().unwrap().unwrap_err();
    assert_eq!((stale.fence, stale.highest), (f1, f2));
    let s = store.lock().unwrap();
    assert_eq!((s.0.highest(), s.1.as_str()), (f2, "holder2"));
    drop(s);
    lease2.release().unwrap();
}

// ----------------------------------------------------- several resources

/// Threads lock overlapping sets ({a,b}, {b,c}, {a,c}) over and over: no
/// resource ever has two holders, every set gets its turns, and no key is
/// left at the end.
#[test]
fn overlapping_sets_under_contention_never_share_a_resource() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let held: Arc<[AtomicBool; 3]> = Arc::new(Default::default());
    let turns: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    const SETS: [[usize; 2]; 3] = [[0, 1], [1, 2], [0, 2]];
    const NAMES: [&str; 3] = ["mc:a", "mc:b", "mc:c"];
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (urls, held, turns) = (urls.clone(), Arc::clone(&held), Arc::clone(&turns));
            thread::spawn(move || {
                let c = Client::builder()
                    .nodes(&urls)
                    .ttl(Duration::from_secs(5))
                    .node_timeout(Duration::from_millis(200))
                    .retry(RetryPolicy {
                        count: 0,
                        delay: Duration::from_millis(2),
                        jitter: Duration::from_millis(4),
                        wait: Some(Duration::from_secs(30)),
                    })
                    .build()
                    .unwrap();
                let set = SETS[w % 3];
                for _ in 0..15 {
                    // Names given in a different order each time.
                    let names = [NAMES[set[1]], NAMES[set[0]]];
                    let lease = c.lock(names).unwrap();
                    for &r in &set {
                        assert!(
                            !held[r].swap(true, Ordering::SeqCst),
                            "{} held twice",
                            NAMES[r]
                        );
                    }
                    assert!(lease.is_valid());
                    for &r in &set {
                        held[r].store(false, Ordering::SeqCst);
                    }
                    lease.release().unwrap();
                    turns[w % 3].fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    for (i, t) in turns.iter().enumerate() {
        assert_eq!(t.load(Ordering::SeqCst), 30, "set {i} got every turn");
    }
    for name in NAMES {
        assert!(cluster.wait_gone(name, SETTLE), "{name} left behind");
    }
}

#[test]
fn foreign_keys_on_some_nodes_make_the_set_busy_and_nothing_is_taken() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    // Another client's key for one name on a majority: busy, and the
    // other names are not taken anywhere (all or nothing per node).
    for n in &cluster.nodes[..2] {
        n.command(&["SET", "pf:b", "foreign", "PX", "60000"]);
    }
    match c.lock(["pf:a", "pf:b", "pf:c"]) {
        Err(Error::Busy(f)) => assert!(f.to_string().contains("held by another token"), "{f}"),
        other => panic!("{other:?}"),
    }
    assert!(cluster.wait_gone("pf:a", SETTLE));
    assert!(cluster.wait_gone("pf:c", SETTLE));
    // On one node only: acquired on the other two, and the node with the
    // foreign key holds none of ours.
    cluster.nodes[1].command(&["DEL", "pf:b"]);
    let lease = c.lock(["pf:a", "pf:b", "pf:c"]).unwrap();
    assert!(c.flush(SETTLE).unwrap());
    let token = Reply::Str(lease.token().as_str().into());
    assert_eq!(cluster.nodes[0].command(&["GET", "pf:a"]), Reply::Nil);
    assert_eq!(
        cluster.nodes[0].command(&["GET", "pf:b"]),
        Reply::Str("foreign".into())
    );
    for n in &cluster.nodes[1..] {
        for key in ["pf:a", "pf:b", "pf:c"] {
            assert_eq!(n.command(&["GET", key]), token, "{key}");
        }
    }
    lease.release().unwrap();
    assert_eq!(
        cluster.nodes[0].command(&["GET", "pf:b"]),
        Reply::Str("foreign".into())
    );
}

#[test]
fn a_set_is_locked_with_two_of_five_nodes_down_and_released() {
    let mut cluster = Cluster::start(5);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    cluster.nodes[1].kill();
    cluster.nodes[3].kill();
    let lease = c.lock_with(["d:x", "d:y", "d:z"], &fenced()).unwrap();
    assert!(lease.fence().is_some());
    assert_eq!(lease.resources().len(), 3);
    let token = Reply::Str(lease.token().as_str().into());
    for i in [0, 2, 4] {
        for key in ["d:x", "d:y", "d:z"] {
            assert_eq!(cluster.nodes[i].command(&["GET", key]), token);
        }
    }
    lease.release().unwrap();
    for i in [0, 2, 4] {
        for key in ["d:x", "d:y", "d:z"] {
            assert_eq!(cluster.nodes[i].command(&["GET", key]), Reply::Nil);
        }
    }
}

#[test]
fn release_removes_exactly_our_keys_and_a_single_lock_makes_the_set_busy() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let (c, other) = (
        client(&urls, Duration::from_secs(10)),
        client(&urls, Duration::from_secs(10)),
    );
    // Interop: a single-resource lock of another client on one of the names.
    let single = other.lock("rx:b").unwrap();
    assert!(matches!(c.try_lock(["rx:a", "rx:b"]), Err(Error::Busy(_))));
    assert!(cluster.wait_gone("rx:a", SETTLE), "nothing taken");
    single.release().unwrap();
    // Another client's key next to ours is untouched by our release.
    for n in &cluster.nodes {
        n.command(&["SET", "rx:c", "theirs"]);
    }
    let lease = c.lock(["rx:b", "rx:a", "rx:a"]).unwrap();
    assert_eq!(lease.resources().len(), 2, "normalised");
    assert_eq!(lease.resource(), b"rx:a", "the first in sorted order");
    lease.release().unwrap();
    assert!(cluster.wait_gone("rx:a", SETTLE));
    assert!(cluster.wait_gone("rx:b", SETTLE));
    for n in &cluster.nodes {
        assert_eq!(n.command(&["GET", "rx:c"]), Reply::Str("theirs".into()));
    }
    // A set over capacity is refused locally.
    let many: Vec<String> = (0..=redlock_std::core::MAX_RESOURCES)
        .map(|i| format!("rx:{i}"))
        .collect();
    assert!(matches!(c.lock(many), Err(Error::Command(_))));
    // By token: release and extend take the same set, in any order.
    let lease = c.lock(["rx:p", "rx:q"]).unwrap();
    let token = *lease.forget().token();
    c.extend_token(["rx:q", "rx:p"], &token, Duration::from_secs(10))
        .unwrap();
    c.release_token(vec!["rx:q".to_string(), "rx:p".to_string()], &token)
        .unwrap();
    assert!(matches!(
        c.release_token(["rx:p", "rx:q"], &token),
        Err(Error::NotHeld(_))
    ));
}
