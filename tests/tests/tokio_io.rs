//! redlock-tokio at its I/O edge, against real redis-server processes:
//! capacity, a starved keeper, keepers that retry, leases whose loss must
//! show, error messages that are current, a stopped driver.

use std::time::{Duration, Instant};

use redlock_tests::{Cluster, Reply};
use redlock_tokio::{Client, Error, RetryPolicy};

fn client(urls: &[String], ttl: Duration, node_timeout: Duration, retry: RetryPolicy) -> Client {
    Client::builder()
        .nodes(urls)
        .ttl(ttl)
        .node_timeout(node_timeout)
        .retry(retry)
        .build()
        .unwrap()
}

/// Polls `f` every 10 ms until it is true or `limit` has passed.
async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

fn all_nil(cluster: &Cluster, key: &str) -> bool {
    cluster
        .nodes
        .iter()
        .all(|n| n.command(&["GET", key]) == Reply::Nil)
}

/// 16.6: more acquires than the client has operation slots, all waiting on
/// a lock we hold: the keeper's extensions still go out, a dropped lease is
/// still released at once, acquires beyond capacity wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_flood_does_not_starve_keeper_or_release() {
    let cluster = Cluster::start(3);
    let ttl = Duration::from_secs(2);
    let c = client(
        &cluster.urls(),
        ttl,
        Duration::from_millis(200),
        RetryPolicy::none(),
    );
    let keeper = c.lock_and_keep("flood:held").await.unwrap();
    let dropped = c
        .lock_with(
            "flood:dropped",
            &redlock_tokio::LockOptions::new()
                .ttl(Duration::from_secs(20))
                .retry(RetryPolicy::none()),
        )
        .await
        .unwrap();
    let patient = RetryPolicy {
        count: 0,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
        wait: Some(Duration::from_secs(3)),
    };
    const FLOOD: usize = 1100;
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                c.lock_with(
                    "flood:held",
                    &redlock_tokio::LockOptions::new().ttl(ttl).retry(patient),
                )
                .await
                .map(|l| l.forget())
                .err()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    drop(dropped);
    assert!(
        eventually(Duration::from_secs(3), || all_nil(
            &cluster,
            "flood:dropped"
        ))
        .await,
        "the release of a dropped lease was thrown away (key left for its 20 s TTL)"
    );
    eprintln!(
        "dropped lease released after {:?} under the flood",
        t.elapsed()
    );
    let lost = tokio::time::timeout(Duration::from_millis(2_000), keeper.lost()).await;
    assert!(
        lost.is_err(),
        "kept lock declared lost: {:?}",
        keeper.lost_error()
    );
    let token = keeper.token();
    for n in &cluster.nodes {
        assert_eq!(
            n.command(&["GET", "flood:held"]),
            Reply::Str(token.as_str().into())
        );
    }
    let mut busy = 0;
    let mut refused = 0;
    for h in flood {
        match h.await.unwrap() {
            Some(Error::Busy(_)) => busy += 1,
            Some(Error::Command(_)) => refused += 1,
            Some(e) => panic!("{e}"),
            None => panic!("acquired a lock we hold; keeper: {:?}", keeper.lost_error()),
        }
    }
    eprintln!("flood of {FLOOD}: {busy} busy, {refused} refused for capacity");
    assert!(!keeper.is_lost());
    keeper.release().await.unwrap();
}

/// 9.3: on a current-thread runtime blocked by the work itself, the keeper
/// cannot run; the guard still reports the loss once the deadline has
/// passed, and `with_lock` returns `Err(Lost)`.
#[tokio::test(flavor = "current_thread")]
async fn starved_keeper_guard_is_lost_after_the_deadline() {
    let cluster = Cluster::start(3);
    let c = client(
        &cluster.urls(),
        Duration::from_millis(500),
        Duration::from_millis(100),
        RetryPolicy::none(),
    );
    let guard = c.lock_and_keep("starved").await.unwrap();
    assert!(!guard.is_lost());
    // Blocking work: nothing else runs on this runtime meanwhile.
    std::thread::sleep(Duration::from_millis(800));
    assert!(guard.is_lost(), "deadline passed, guard says held");
    assert_eq!(guard.remaining(), Duration::ZERO);
    assert!(guard.lost_error().is_some());
    let _ = guard.release().await;

    let res = c
        .with_lock("starved2", |_guard| async move {
            std::thread::sleep(Duration::from_millis(800));
            42
        })
        .await;
    assert!(matches!(res, Err(Error::Lost(_))), "{res:?}");
}

/// 9.4: after an extension the nodes refuse (our keys are gone), the lease
/// says it is no longer valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_extension_invalidates_the_lease() {
    let cluster = Cluster::start(3);
    let c = client(
        &cluster.urls(),
        Duration::from_secs(10),
        Duration::from_millis(200),
        RetryPolicy::none(),
    );
    let mut lease = c.lock("gone").await.unwrap();
    for n in &cluster.nodes {
        n.command(&["DEL", "gone"]);
    }
    let err = lease.extend(Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, Error::Lost(_)), "{err}");
    assert!(!lease.is_valid());
    assert_eq!(lease.remaining(), Duration::ZERO);
}

/// 9.8: one failed extension (two of three nodes paused for a moment) does
/// not lose a lock that has most of its validity left: the keeper retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeper_retries_a_failed_extension() {
    let cluster = Cluster::start(3);
    let ttl = Duration::from_secs(3);
    let c = client(
        &cluster.urls(),
        ttl,
        Duration::from_millis(100),
        RetryPolicy::none(),
    );
    let other = client(
        &cluster.urls(),
        ttl,
        Duration::from_millis(100),
        RetryPolicy::none(),
    );
    let guard = c.lock_and_keep("retry-extend").await.unwrap();
    let t = Instant::now();
    cluster.nodes[1].pause();
    cluster.nodes[2].pause();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    cluster.nodes[1].resume();
    cluster.nodes[2].resume();
    assert!(!guard.is_lost(), "lost: {:?}", guard.lost_error());
    let renewed = eventually(Duration::from_millis(1_500), || {
        guard.remaining() > Duration::from_millis(2_000)
    })
    .await;
    assert!(
        renewed,
        "not renewed after {:?}: lost = {:?}",
        t.elapsed(),
        guard.lost_error()
    );
    assert!(matches!(
        other.try_lock("retry-extend").await,
        Err(Error::Busy(_))
    ));
    guard.release().await.unwrap();
}

/// 9.8: releasing a lease whose keys expired is an error carrying the
/// report, not an `Ok` that reads as success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_an_expired_lease_is_an_error() {
    let cluster = Cluster::start(3);
    let c = client(
        &cluster.urls(),
        Duration::from_millis(300),
        Duration::from_millis(100),
        RetryPolicy::none(),
    );
    let lease = c.lock("expired").await.unwrap();
    assert!(eventually(Duration::from_secs(2), || all_nil(&cluster, "expired")).await);
    match lease.release().await {
        Err(Error::NotHeld(report)) => assert!(report.not_held() >= 2, "{report:?}"),
        other => panic!("{other:?}"),
    }
}

/// 17.3: after a node comes back, a later failure message does not blame
/// the fault it recovered from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_clears_the_node_last_error() {
    let mut cluster = Cluster::start(3);
    let urls = cluster.urls();
    tokio::task::block_in_place(|| cluster.nodes[0].kill());
    let c = client(
        &urls,
        Duration::from_secs(5),
        Duration::from_millis(200),
        RetryPolicy::none(),
    );
    // Node 0 refuses connections meanwhile.
    c.lock("before").await.unwrap().release().await.unwrap();
    tokio::task::block_in_place(|| cluster.nodes[0].restart());
    // Reconnected once a lock lands on node 0 too.
    let mut back = false;
    for _ in 0..100 {
        let lease = c.lock("probe").await.unwrap();
        let token = Reply::Str(lease.token().as_str().into());
        let on_node_0 = tokio::task::block_in_place(|| cluster.nodes[0].command(&["GET", "probe"]));
        lease.release().await.unwrap();
        if on_node_0 == token {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "node 0 never reconnected");
    // Now node 0 is merely slow, and the lock is held elsewhere.
    for n in &cluster.nodes[1..] {
        n.command(&["SET", "busy", "someone-else", "PX", "10000"]);
    }
    cluster.nodes[0].pause();
    let err = c.try_lock("busy").await.unwrap_err();
    cluster.nodes[0].resume();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, Error::Busy(_)), "{text}");
    assert!(!text.contains("refused"), "stale error: {text}");
}

/// A client whose driver has stopped (its runtime is gone) fails every call
/// with a typed error, never a hang.
#[test]
fn stopped_driver_is_a_typed_error() {
    let cluster = Cluster::start(1);
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = first.block_on(async {
        client(
            &cluster.urls(),
            Duration::from_secs(5),
            Duration::from_millis(200),
            RetryPolicy::none(),
        )
    });
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let r = tokio::time::timeout(Duration::from_secs(5), c.lock("x"))
            .await
            .expect("no hang");
        assert!(matches!(r, Err(Error::DriverStopped)), "{r:?}");
        let token = redlock_tokio::Token::from_bytes(b"t").unwrap();
        let r = c.release_token("x", &token).await;
        assert!(matches!(r, Err(Error::DriverStopped)), "{r:?}");
    });
}
