//! redlock-tokio against real redis-server processes: fenced locks (one and
//! two rounds, fences that grow, extensions that keep them, registers that
//! plain locks and releases leave alone, a stale holder refused by a
//! FenceGuard), locks over several resources (contention over overlapping
//! sets, foreign keys on some nodes, nodes down, release of exactly our
//! keys, interop with single-resource locks), and `Client::flush`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redlock_tests::{Cluster, Reply};
use redlock_tokio::{Client, Error, FenceGuard, LockOptions, RetryPolicy};

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

/// A harness call (blocking std I/O) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

// ------------------------------------------------------------------ fencing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_lock_takes_one_round_on_fresh_registers() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    for n in &cluster.nodes {
        n.reset_stats();
    }
    let before = unix_ms();
    let lease = c.lock_with("tf:one", &fenced()).await.unwrap();
    let after = unix_ms();
    let fence = lease.fence().expect("a fenced lease has a fence");
    assert!((before * 1024..=after * 1024).contains(&fence), "{fence}");
    assert!(c.flush(SETTLE).await.unwrap(), "every node answered");
    for n in &cluster.nodes {
        assert_eq!(n.calls("eval"), 1, "one script per node: one round");
        assert_eq!(n.fence_register("tf:one"), Some(fence));
    }
    assert_eq!(c.lock("tf:plain").await.unwrap().fence(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_ahead_forces_a_second_round_and_the_fence_above_it() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    const AHEAD: u64 = 5_000_000_000_000_000;
    for n in &cluster.nodes[..2] {
        n.command(&["SET", "{tf:two}:fence", &AHEAD.to_string()]);
    }
    for n in &cluster.nodes {
        n.reset_stats();
    }
    let lease = c.lock_with("tf:two", &fenced()).await.unwrap();
    assert_eq!(lease.fence(), Some(AHEAD + 1));
    assert!(c.flush(SETTLE).await.unwrap());
    let two_rounds = cluster
        .nodes
        .iter()
        .filter(|n| n.calls("eval") == 2)
        .count();
    assert!(two_rounds >= 2, "round 2 went to the counted nodes");
    let raised = cluster
        .nodes
        .iter()
        .filter(|n| n.fence_register("tf:two") == Some(AHEAD + 1))
        .count();
    assert!(raised >= 2, "a quorum holds the new fence");
    lease.release().await.unwrap();
    let next = c.lock_with("tf:two", &fenced()).await.unwrap();
    assert_eq!(
        next.fence(),
        Some(AHEAD + 2),
        "proposals climb above what was seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_grow_across_grants_and_clients_and_extensions_keep_them() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let (a, b) = (
        client(&urls, Duration::from_secs(10)),
        client(&urls, Duration::from_secs(10)),
    );
    let mut last = 0;
    for i in 0..6 {
        let c = if i % 2 == 0 { &a } else { &b };
        let mut lease = c.lock_with("tf:grow", &fenced()).await.unwrap();
        let fence = lease.fence().unwrap();
        assert!(fence > last, "grant {i}: {fence} > {last}");
        lease.extend(Duration::from_secs(10)).await.unwrap();
        assert_eq!(lease.fence(), Some(fence), "extend keeps the fence");
        last = fence;
        lease.release().await.unwrap();
    }
    let short = client(&urls, Duration::from_millis(300));
    let kept = short
        .lock_and_keep_with("tf:kept", &fenced())
        .await
        .unwrap();
    let fence = kept.fence().unwrap();
    let first_deadline = kept.until();
    let signal = kept.loss_signal();
    tokio::select! {
        _ = signal.lost() => panic!("lost: {:?}", signal.lost_error()),
        _ = tokio::time::sleep(Duration::from_millis(700)) => {}
    }
    assert!(kept.until() > first_deadline, "renewed");
    assert_eq!(kept.fence(), Some(fence));
    kept.release().await.unwrap();
    // Released: the signal never fires.
    assert!(!signal.lost().await);
    assert!(!signal.is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_locks_and_releases_leave_registers_alone() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    for n in &cluster.nodes {
        n.command(&["SET", "{tf:plain}:fence", "77"]);
    }
    let mut lease = c.lock(["tf:plain", "tf:other"]).await.unwrap();
    lease.extend(Duration::from_secs(5)).await.unwrap();
    lease.release().await.unwrap();
    let fenced_lease = c.lock_with("tf:reg", &fenced()).await.unwrap();
    let fence = fenced_lease.fence().unwrap();
    fenced_lease.release().await.unwrap();
    assert!(c.flush(SETTLE).await.unwrap());
    for n in &cluster.nodes {
        assert_eq!(n.fence_register("tf:plain"), Some(77));
        assert_eq!(n.fence_register("tf:other"), None);
        assert_eq!(n.fence_register("tf:reg"), Some(fence), "release left it");
    }
}

/// A holder whose task is held up past its lease writes with its old
/// fence after a newer holder did: the store's FenceGuard refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_s_late_write_is_refused_by_the_store() {
    let cluster = Arc::new(Cluster::start(3));
    let urls = cluster.urls();
    let store = Arc::new(Mutex::new((FenceGuard::new(), String::from("init"))));
    let write = |store: &Mutex<(FenceGuard, String)>, fence: u64, v: &str| {
        let mut s = store.lock().unwrap();
        s.0.admit(fence)?;
        s.1 = v.to_owned();
        Ok::<(), redlock_tokio::StaleFence>(())
    };
    let c1 = client(&urls, Duration::from_millis(400));
    let lease = c1.lock_with("tf:kleppmann", &fenced()).await.unwrap();
    let f1 = lease.fence().unwrap();
    let _ = lease.forget(); // nobody releases or extends it: "paused"
    let gone = {
        let cluster = Arc::clone(&cluster);
        blocking(move || cluster.wait_gone("tf:kleppmann", Duration::from_secs(5))).await
    };
    assert!(gone, "holder 1's lease ran out");
    let c2 = client(&urls, Duration::from_secs(10));
    let lease2 = c2.lock_with("tf:kleppmann", &fenced()).await.unwrap();
    let f2 = lease2.fence().unwrap();
    assert!(f2 > f1);
    write(&store, f2, "holder2").unwrap();
    // Holder 1 resumes and writes.
    let stale = write(&store, f1, "holder1").unwrap_err();
    assert_eq!((stale.fence, stale.highest), (f1, f2));
    assert_eq!(store.lock().unwrap().1, "holder2");
    lease2.release().await.unwrap();
}

// ----------------------------------------------------- several resources

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_sets_under_contention_never_share_a_resource() {
    let cluster = Arc::new(Cluster::start(3));
    let urls = cluster.urls();
    let held: Arc<[AtomicBool; 3]> = Arc::new(Default::default());
    let turns: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    const SETS: [[usize; 2]; 3] = [[0, 1], [1, 2], [0, 2]];
    const NAMES: [&str; 3] = ["tmc:a", "tmc:b", "tmc:c"];
    let shared = Client::builder()
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
    let tasks: Vec<_> = (0..6)
        .map(|w| {
            let (c, held, turns) = (shared.clone(), Arc::clone(&held), Arc::clone(&turns));
            tokio::spawn(async move {
                let set = SETS[w % 3];
                for _ in 0..15 {
                    let names = vec![NAMES[set[1]].to_string(), NAMES[set[0]].to_string()];
                    let lease = c.lock(names).await.unwrap();
                    for &r in &set {
                        assert!(
                            !held[r].swap(true, Ordering::SeqCst),
                            "{} held twice",
                            NAMES[r]
                        );
                    }
                    tokio::task::yield_now().await;
                    assert!(lease.is_valid());
                    for &r in &set {
                        held[r].store(false, Ordering::SeqCst);
                    }
                    lease.release().await.unwrap();
                    turns[w % 3].fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for (i, t) in turns.iter().enumerate() {
        assert_eq!(t.load(Ordering::SeqCst), 30, "set {i} got every turn");
    }
    let left = blocking(move || NAMES.iter().all(|n| cluster.wait_gone(n, SETTLE))).await;
    assert!(left, "a key was left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_on_some_nodes_make_the_set_busy_and_nothing_is_taken() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    for n in &cluster.nodes[..2] {
        n.command(&["SET", "tpf:b", "foreign", "PX", "60000"]);
    }
    match c.lock(["tpf:a", "tpf:b", "tpf:c"]).await {
        Err(Error::Busy(f)) => assert!(f.to_string().contains("held by another token"), "{f}"),
        other => panic!("{other:?}"),
    }
    assert!(c.flush(SETTLE).await.unwrap());
    for n in &cluster.nodes {
        assert_eq!(n.command(&["GET", "tpf:a"]), Reply::Nil, "nothing taken");
        assert_eq!(n.command(&["GET", "tpf:c"]), Reply::Nil, "nothing taken");
    }
    cluster.nodes[1].command(&["DEL", "tpf:b"]);
    let lease = c.lock(["tpf:a", "tpf:b", "tpf:c"]).await.unwrap();
    assert!(c.flush(SETTLE).await.unwrap());
    let token = Reply::Str(lease.token().as_str().into());
    assert_eq!(cluster.nodes[0].command(&["GET", "tpf:a"]), Reply::Nil);
    for n in &cluster.nodes[1..] {
        for key in ["tpf:a", "tpf:b", "tpf:c"] {
            assert_eq!(n.command(&["GET", key]), token, "{key}");
        }
    }
    lease.release().await.unwrap();
    assert_eq!(
        cluster.nodes[0].command(&["GET", "tpf:b"]),
        Reply::Str("foreign".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_is_locked_with_two_of_five_nodes_down_and_released() {
    let mut cluster = Cluster::start(5);
    let c = client(&cluster.urls(), Duration::from_secs(10));
    cluster.nodes[1].kill();
    cluster.nodes[3].kill();
    let lease = c
        .lock_with(["td:x", "td:y", "td:z"], &fenced())
        .await
        .unwrap();
    assert!(lease.fence().is_some());
    let token = Reply::Str(lease.token().as_str().into());
    for i in [0, 2, 4] {
        for key in ["td:x", "td:y", "td:z"] {
            assert_eq!(cluster.nodes[i].command(&["GET", key]), token);
        }
    }
    lease.release().await.unwrap();
    for i in [0, 2, 4] {
        for key in ["td:x", "td:y", "td:z"] {
            assert_eq!(cluster.nodes[i].command(&["GET", key]), Reply::Nil);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_removes_exactly_our_keys_and_a_single_lock_makes_the_set_busy() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let (c, other) = (
        client(&urls, Duration::from_secs(10)),
        client(&urls, Duration::from_secs(10)),
    );
    let single = other.lock("trx:b").await.unwrap();
    assert!(matches!(
        c.try_lock(["trx:a", "trx:b"]).await,
        Err(Error::Busy(_))
    ));
    assert!(c.flush(SETTLE).await.unwrap());
    for n in &cluster.nodes {
        assert_eq!(n.command(&["GET", "trx:a"]), Reply::Nil, "nothing taken");
    }
    single.release().await.unwrap();
    for n in &cluster.nodes {
        n.command(&["SET", "trx:c", "theirs"]);
    }
    let lease = c.lock(["trx:b", "trx:a", "trx:a"]).await.unwrap();
    assert_eq!(lease.resources().len(), 2, "normalised");
    assert_eq!(lease.resource(), b"trx:a");
    lease.release().await.unwrap();
    assert!(c.flush(SETTLE).await.unwrap());
    for n in &cluster.nodes {
        assert_eq!(n.command(&["GET", "trx:a"]), Reply::Nil);
        assert_eq!(n.command(&["GET", "trx:b"]), Reply::Nil);
        assert_eq!(n.command(&["GET", "trx:c"]), Reply::Str("theirs".into()));
    }
    let lease = c.lock(["trx:p", "trx:q"]).await.unwrap();
    let token = *lease.forget().token();
    c.extend_token(["trx:q", "trx:p"], &token, Duration::from_secs(10))
        .await
        .unwrap();
    c.release_token(vec!["trx:q".to_string(), "trx:p".to_string()], &token)
        .await
        .unwrap();
    assert!(matches!(
        c.release_token(["trx:p", "trx:q"], &token).await,
        Err(Error::NotHeld(_))
    ));
}

// -------------------------------------------------------------------- flush

/// `flush` waits for the nodes a decision did not wait for (a paused node
/// is owed its release until it is back), and no longer than asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_what_is_still_in_flight_within_its_bound() {
    let cluster = Cluster::start(3);
    let c = Client::builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_secs(10))
        .node_timeout(Duration::from_millis(500))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    c.lock("fl:warm").await.unwrap().release().await.unwrap();
    assert!(c.flush(SETTLE).await.unwrap(), "idle");
    // A paused node: its requests stay in flight until the node timeout.
    cluster.nodes[2].pause();
    let lease = c.lock("fl:r").await.unwrap();
    lease.release().await.unwrap();
    let t = std::time::Instant::now();
    assert!(
        !c.flush(Duration::from_millis(50)).await.unwrap(),
        "still in flight"
    );
    assert!(
        t.elapsed() < Duration::from_millis(450),
        "bounded by its timeout"
    );
    // Back: what it was owed (its release) reaches it, and flush sees the end.
    cluster.nodes[2].resume();
    assert!(c.flush(SETTLE).await.unwrap(), "done once the node is back");
    assert_eq!(cluster.nodes[2].command(&["GET", "fl:r"]), Reply::Nil);
    // A timeout no clock can hold is no panic.
    assert!(c.flush(Duration::MAX).await.unwrap());
}
