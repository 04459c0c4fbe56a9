//! redlock-std at its I/O edge, against real redis-server processes: a dead
//! driver thread, capacity, TLS before and during backpressure, a slow name
//! resolver, keepers that retry, and leases whose loss must show.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use redlock_std::{Client, Error, FailureKind, RetryPolicy};
use redlock_tests::{Cluster, RedisServer, Reply, ServerOptions};

fn client(urls: &[String], ttl: Duration, node_timeout: Duration, retry: RetryPolicy) -> Client {
    Client::builder()
        .nodes(urls)
        .ttl(ttl)
        .node_timeout(node_timeout)
        .retry(retry)
        .build()
        .unwrap()
}

/// Runs `f` on its own thread and waits for its result up to `limit`:
/// `None` if it did not finish (a hang), so a test fails instead of hanging.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// Polls `f` every 10 ms until it is true or `limit` has passed.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    f()
}

fn all_nil(cluster: &Cluster, key: &str) -> bool {
    cluster
        .nodes
        .iter()
        .all(|n| n.command(&["GET", key]) == Reply::Nil)
}

/// 16.5: once the driver thread has died, a caller already waiting, and
/// every later caller, gets an error at once instead of hanging forever.
#[test]
fn driver_panic_fails_present_and_future_callers() {
    let cluster = Cluster::start(3);
    let c = client(
        &cluster.urls(),
        Duration::from_secs(10),
        Duration::from_secs(5),
        RetryPolicy::none(),
    );
    c.lock("warm").unwrap().release().unwrap();
    // A caller in flight: two nodes paused, so its acquire waits for them.
    cluster.nodes[1].pause();
    cluster.nodes[2].pause();
    let (started_tx, started_rx) = mpsc::channel();
    let waiting = {
        let c = c.clone();
        thread::spawn(move || {
            started_tx.send(()).unwrap();
            let r = c.lock("in-flight");
            (r.map(|l| l.forget()), Instant::now())
        })
    };
    started_rx.recv().unwrap();
    // Its request has reached the driver once node 0 holds the key.
    assert!(eventually(Duration::from_secs(3), || cluster.nodes[0]
        .command(&["GET", "in-flight"])
        != Reply::Nil));
    let killed = Instant::now();
    redlock_std::hooks::panic_driver(&c);
    let (result, at) = waiting.join().unwrap();
    let present = at.duration_since(killed);
    let err = result.unwrap_err();
    assert!(matches!(err, Error::DriverStopped), "{err}");
    // Later callers, of every kind, fail too (bounded: a hang fails the test).
    let future = within(Duration::from_secs(10), {
        let c = c.clone();
        move || {
            let t = Instant::now();
            let lock = c.lock("after").map(|l| l.forget());
            let token = redlock_std::Token::from_bytes(b"t0k3n").unwrap();
            let extend = c.extend_token("after", &token, Duration::from_secs(5));
            let release = c.release_token("after", &token);
            (lock, extend, release, t.elapsed())
        }
    })
    .expect("a call after the driver died hung");
    let (lock, extend, release, later) = future;
    assert!(matches!(lock, Err(Error::DriverStopped)), "{lock:?}");
    assert!(matches!(extend, Err(Error::DriverStopped)), "{extend:?}");
    assert!(matches!(release, Err(Error::DriverStopped)), "{release:?}");
    assert!(err.to_string().contains("driver"), "{err}");
    eprintln!(
        "driver death: in-flight caller failed after {present:?}, three later calls took {later:?}"
    );
    cluster.nodes[1].resume();
    cluster.nodes[2].resume();
}

/// 16.6: more acquires than the client has operation slots, all waiting on
/// a lock we hold: the keeper's extensions still go out (the lock is not
/// declared lost), a dropped lease is still released at once, and the
/// acquires beyond capacity wait instead of failing at once.
#[test]
fn acquire_flood_does_not_starve_keeper_or_release() {
    let cluster = Cluster::start(3);
    let ttl = Duration::from_secs(2);
    let c = client(
        &cluster.urls(),
        ttl,
        Duration::from_millis(200),
        RetryPolicy::none(),
    );
    let keeper = c.keep(c.lock("flood:held").unwrap());
    let dropped = c
        .lock_with(
            "flood:dropped",
            &redlock_std::LockOptions::new()
                .ttl(Duration::from_secs(20))
                .retry(RetryPolicy::none()),
        )
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
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    c.lock_with(
                        "flood:held",
                        &redlock_std::LockOptions::new().ttl(ttl).retry(patient),
                    )
                    .map(|l| l.forget())
                    .err()
                })
                .unwrap()
        })
        .collect();
    // Every slot is taken well before the first renewal (a third of 2 s).
    thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    drop(dropped);
    assert!(
        eventually(Duration::from_secs(3), || all_nil(
            &cluster,
            "flood:dropped"
        )),
        "the release of a dropped lease was thrown away (key left for its 20 s TTL)"
    );
    eprintln!(
        "dropped lease released after {:?} under the flood",
        t.elapsed()
    );
    // Three renewals' worth of time while the flood lasts.
    assert!(
        !keeper.wait_timeout(Duration::from_millis(2_000)),
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
        match h.join().unwrap() {
            Some(Error::Busy(_)) => busy += 1,
            Some(Error::Command(e)) => {
                refused += 1;
                eprintln!("refused: {e}");
            }
            Some(e) => panic!("{e}"),
            None => panic!("acquired a lock we hold"),
        }
    }
    eprintln!("flood of {FLOOD}: {busy} busy, {refused} refused for capacity");
    assert!(!keeper.is_lost());
    keeper.release().unwrap();
}

/// 16.7: a TLS node that is slow to answer its handshake while hundreds of
/// acquires (over 64 KiB of requests) wait: nothing is written into rustls
/// before the handshake, the link is not torn down, every acquire succeeds.
#[test]
fn tls_slow_handshake_many_acquires() {
    let server = RedisServer::start_with(ServerOptions {
        tls: true,
        ..ServerOptions::default()
    });
    let ca = server.tls().unwrap().ca_pem.clone();
    server.pause();
    let c = Client::builder()
        .node(server.tls_url().unwrap())
        .ttl(Duration::from_secs(20))
        .node_timeout(Duration::from_secs(3))
        .retry(RetryPolicy::none())
        .tls_ca_pem(&ca)
        .build()
        .unwrap();
    const N: usize = 300;
    let long = "x".repeat(240);
    let workers: Vec<_> = (0..N)
        .map(|i| {
            let c = c.clone();
            let name = format!("{long}{i:05}");
            thread::spawn(move || c.lock(name).map(|l| l.forget()))
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    server.resume();
    let mut failed = Vec::new();
    for w in workers {
        if let Err(e) = w.join().unwrap() {
            failed.push(e.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {N} failed, e.g. {}",
        failed.len(),
        failed[0]
    );
    assert_eq!(server.command(&["DBSIZE"]), Reply::Int(N as i64));
}

/// 16.9: dropping the last lease (which holds the last client handle) does
/// not wait for its release, even when a node is silent.
#[test]
fn dropping_the_last_lease_does_not_block() {
    let cluster = Cluster::start(3);
    let c = client(
        &cluster.urls(),
        Duration::from_secs(10),
        Duration::from_secs(3),
        RetryPolicy::none(),
    );
    let lease = c.lock("last-lease").unwrap();
    drop(c);
    cluster.nodes[2].pause();
    let t = Instant::now();
    drop(lease);
    let took = t.elapsed();
    eprintln!("drop of the last lease took {took:?} (node timeout 3 s)");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The release still happens, in the background.
    assert!(eventually(Duration::from_secs(2), || {
        cluster.nodes[..2]
            .iter()
            .all(|n| n.command(&["GET", "last-lease"]) == Reply::Nil)
    }));
    cluster.nodes[2].resume();
}

/// 9.4: after an extension that the nodes refuse (our keys are gone), the
/// lease says it is no longer valid.
#[test]
fn lost_extension_invalidates_the_lease() {
    let cluster = Cluster::start(3);
    let c = client(
        &cluster.urls(),
        Duration::from_secs(10),
        Duration::from_millis(200),
        RetryPolicy::none(),
    );
    let mut lease = c.lock("gone").unwrap();
    for n in &cluster.nodes {
        n.command(&["DEL", "gone"]);
    }
    let err = lease.extend(Duration::from_secs(10)).unwrap_err();
    assert!(matches!(err, Error::Lost(_)), "{err}");
    assert!(!lease.is_valid());
    assert_eq!(lease.remaining(), Duration::ZERO);
}

/// 9.3 (std side): the guard reports the loss once the deadline has passed,
/// even while the extension is still waiting for silent nodes, and
/// `with_lock` returns `Err(Lost)`.
#[test]
fn guard_is_lost_at_the_deadline_and_with_lock_says_so() {
    let cluster = Cluster::start(3);
    // The extension (at a third of ~1 s) waits up to 900 ms for the paused
    // nodes: it cannot report before the deadline does.
    let c = client(
        &cluster.urls(),
        Duration::from_secs(1),
        Duration::from_millis(900),
        RetryPolicy::none(),
    );
    let res = c.with_lock("starved", |guard| {
        cluster.nodes[1].pause();
        cluster.nodes[2].pause();
        while guard.remaining() > Duration::ZERO {
            thread::sleep(Duration::from_millis(5));
        }
        guard.is_lost()
    });
    cluster.nodes[1].resume();
    cluster.nodes[2].resume();
    assert!(matches!(res, Err(Error::Lost(_))), "{res:?}");
}

/// 9.8: one failed extension (two of three nodes paused for a moment) does
/// not lose a lock that has most of its validity left: the keeper retries.
#[test]
fn keeper_retries_a_failed_extension() {
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
    let keeper = c.keep(c.lock("retry-extend").unwrap());
    let t = Instant::now();
    cluster.nodes[1].pause();
    cluster.nodes[2].pause();
    // The first renewal is due at ~1 s: it fails while they are paused.
    thread::sleep(Duration::from_millis(1_300));
    cluster.nodes[1].resume();
    cluster.nodes[2].resume();
    assert!(!keeper.is_lost(), "lost: {:?}", keeper.lost_error());
    // A retried extension renews the lease before its ~3 s deadline.
    let renewed = eventually(Duration::from_millis(1_500), || {
        keeper.remaining() > Duration::from_millis(2_000)
    });
    assert!(
        renewed,
        "not renewed after {:?}: lost = {:?}",
        t.elapsed(),
        keeper.lost_error()
    );
    assert!(matches!(
        other.try_lock("retry-extend"),
        Err(Error::Busy(_))
    ));
    keeper.release().unwrap();
}

/// 9.8: releasing a lease that had expired (and whose keys are gone) is an
/// error that carries the report, not an `Ok` that reads as success.
#[test]
fn releasing_an_expired_lease_is_an_error() {
    let cluster = Cluster::start(3);
    let c = client(
        &cluster.urls(),
        Duration::from_millis(300),
        Duration::from_millis(100),
        RetryPolicy::none(),
    );
    let lease = c.lock("expired").unwrap();
    assert!(eventually(Duration::from_secs(2), || all_nil(
        &cluster, "expired"
    )));
    match lease.release() {
        Err(Error::NotHeld(report)) => assert!(report.not_held() >= 2, "{report:?}"),
        other => panic!("{other:?}"),
    }
    // Through a keeper whose keys were deleted: the loss is signalled, and
    // releasing says so (never an `Ok`), as redlock-tokio's does.
    let keeper = c.keep(c.lock("expired2").unwrap());
    for n in &cluster.nodes {
        n.command(&["DEL", "expired2"]);
    }
    assert!(keeper.wait_timeout(Duration::from_secs(3)));
    match keeper.release() {
        Err(Error::Lost(f)) => assert_eq!(f.kind(), FailureKind::NotHeld, "{f}"),
        other => panic!("{other:?}"),
    }
}

/// 9.7: a node whose host name takes forever to resolve does not stall the
/// driver: the other nodes keep serving acquires meanwhile.
#[test]
fn slow_resolution_of_one_node_does_not_stall_the_others() {
    let cluster = Cluster::start(3);
    let mut urls = cluster.urls();
    // "localhost" resolves through /etc/hosts; the hook holds it.
    urls[0] = format!("redis://localhost:{}", cluster.nodes[0].port());
    let hold = redlock_std::hooks::hold_resolution("localhost");
    let c = client(
        &urls,
        Duration::from_secs(5),
        Duration::from_millis(200),
        RetryPolicy::none(),
    );
    let result = within(Duration::from_secs(10), {
        let c = c.clone();
        move || {
            let t = Instant::now();
            let mut lease = c.lock("resolve")?;
            lease.extend(Duration::from_secs(5))?;
            let report = lease.release()?;
            Ok::<_, Error>((report.released(), t.elapsed()))
        }
    });
    drop(hold);
    let (released, took) = result
        .expect("the driver stalled while one node's name resolved")
        .unwrap();
    assert_eq!(released, 2);
    eprintln!("lock+extend+release with node 0 unresolved: {took:?}");
    // Once the name resolves, node 0 joins in.
    assert!(eventually(Duration::from_secs(5), || {
        let Ok(lease) = c.try_lock("resolve2") else {
            return false;
        };
        let token = redlock_tests::Reply::Str(lease.token().as_str().into());
        let on_node_0 = cluster.nodes[0].command(&["GET", "resolve2"]) == token;
        let _ = lease.release();
        on_node_0
    }));
}
