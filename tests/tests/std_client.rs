//! redlock-std against real redis-server processes.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redlock_std::{Client, Error, FailureKind, RetryPolicy};
use redlock_tests::{Cluster, GarbageMode, GarbageServer, RedisServer, Reply, ServerOptions};

const NODE_TIMEOUT: Duration = Duration::from_millis(100);

fn client(urls: &[String]) -> Client {
    Client::builder()
        .nodes(urls)
        .ttl(Duration::from_secs(2))
        .node_timeout(NODE_TIMEOUT)
        .retry(RetryPolicy {
            count: 2,
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(50),
            wait: None,
        })
        .build()
        .unwrap()
}

fn get(server: &RedisServer, key: &str) -> Reply {
    server.command(&["GET", key])
}

#[test]
fn acquire_release_roundtrip() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls());
    let lease = c.lock("res").unwrap();
    assert!(lease.is_valid());
    assert!(lease.remaining() > Duration::from_millis(1500));
    let token = lease.token().as_str().to_owned();
    assert!(token.len() >= 32, "token of >= 128 bits");
    for n in &cluster.nodes {
        assert_eq!(get(n, "res"), Reply::Str(token.clone()));
        let pttl = n.command(&["PTTL", "res"]).as_int().unwrap();
        assert!(pttl > 1000 && pttl <= 2000, "{pttl}");
    }
    let report = lease.release().unwrap();
    // Decided at quorum; the third node gets its release just after.
    assert!(report.released() >= 2, "{report:?}");
    assert_eq!(report.verdict(), redlock_core::ReleaseVerdict::Released);
    assert!(cluster.wait_gone("res", Duration::from_secs(1)));
}

#[test]
fn mutual_exclusion_under_contention() {
    let cluster = Cluster::start(5);
    let urls = cluster.urls();
    let counter = RedisServer::start();
    let counter_port = counter.port();
    const THREADS: usize = 8;
    const CYCLES: usize = 25;
    let counter = Arc::new(counter);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            // Half the threads share one client, the others have their own.
            let urls = urls.clone();
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                let c = Client::builder()
                    .nodes(&urls)
                    .ttl(Duration::from_secs(2))
                    .node_timeout(Duration::from_millis(200))
                    .retry(RetryPolicy {
                        count: 0,
                        delay: Duration::from_millis(5),
                        jitter: Duration::from_millis(10),
                        wait: Some(Duration::from_secs(60)),
                    })
                    .build()
                    .unwrap();
                for _ in 0..CYCLES {
                    let lease = c
                        .lock("counter-lock")
                        .unwrap_or_else(|e| panic!("t{t}: {e}"));
                    // Non-atomic read-modify-write.
                    let v: i64 = match counter.command(&["GET", "n"]) {
                        Reply::Nil => 0,
                        Reply::Str(s) => s.parse().unwrap(),
                        r => panic!("{r:?}"),
                    };
                    thread::sleep(Duration::from_millis(1));
                    counter.command(&["SET", "n", &(v + 1).to_string()]);
                    assert!(
                        lease.is_valid(),
                        "lease expired inside the critical section"
                    );
                    lease.release().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        counter.command(&["GET", "n"]),
        Reply::Str((THREADS * CYCLES).to_string()),
        "lost update: counter on port {counter_port}"
    );
}

#[test]
fn shared_client_many_threads() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls());
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let c = c.clone();
            thread::spawn(move || {
                for j in 0..10 {
                    let lease = c.try_lock(format!("r{i}-{j}")).unwrap();
                    lease.release().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn minority_down_still_works() {
    let mut cluster = Cluster::start(5);
    cluster.nodes[0].kill();
    let c = client(&cluster.urls());
    let lease = c.lock("m1").unwrap();
    lease.release().unwrap();
    cluster.nodes[1].kill();
    let lease = c.lock("m2").unwrap();
    assert!(lease.remaining() > Duration::from_millis(1000));
    lease.release().unwrap();
}

#[test]
fn majority_down_is_unavailable_in_bounded_time() {
    let mut cluster = Cluster::start(5);
    let dead: Vec<String> = cluster.nodes[..3].iter().map(|n| n.url()).collect();
    for n in &mut cluster.nodes[..3] {
        n.kill();
    }
    let c = client(&cluster.urls());
    let t = Instant::now();
    let err = c.lock("x").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    let msg = err.to_string();
    for url in dead {
        assert!(msg.contains(&url), "{msg} should name {url}");
    }
    // No key left behind on the live nodes.
    thread::sleep(Duration::from_millis(200));
    for n in &cluster.nodes[3..] {
        assert_eq!(get(n, "x"), Reply::Nil);
    }
}

#[test]
fn paused_node_costs_about_the_node_timeout() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls());
    // Warm up the connections.
    c.lock("warm").unwrap().release().unwrap();
    cluster.nodes[2].pause();
    let t = Instant::now();
    let lease = c.lock("p").unwrap();
    let took = t.elapsed();
    lease.release().unwrap();
    cluster.nodes[2].resume();
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Paused node: acquire decides at quorum, it does not wait for the slow node.
    let t = Instant::now();
    cluster.nodes[2].pause();
    cluster.nodes[1].pause();
    let err = c.try_lock("q").unwrap_err();
    let took = t.elapsed();
    cluster.nodes[1].resume();
    cluster.nodes[2].resume();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn garbage_node_is_outvoted() {
    for mode in [
        GarbageMode::RandomBytes,
        GarbageMode::HugeBulkHeader,
        GarbageMode::Trickle,
        GarbageMode::Silence,
        GarbageMode::CloseMidReply,
    ] {
        let cluster = Cluster::start(2);
        let garbage = GarbageServer::start(mode);
        let mut urls = cluster.urls();
        urls.insert(1, garbage.url());
        let c = client(&urls);
        let t = Instant::now();
        let lease = c
            .lock(format!("g-{mode:?}"))
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(t.elapsed() < Duration::from_secs(5), "{mode:?}");
        lease.release().unwrap();
    }
}

#[test]
fn garbage_only_node_gives_named_error() {
    for mode in [
        GarbageMode::RandomBytes,
        GarbageMode::HugeBulkHeader,
        GarbageMode::Trickle,
        GarbageMode::Silence,
        GarbageMode::CloseMidReply,
    ] {
        let garbage = GarbageServer::start(mode);
        let c = client(&[garbage.url()]);
        let t = Instant::now();
        let err = c.lock("x").unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10), "{mode:?}");
        assert!(matches!(err, Error::Unavailable(_)), "{mode:?}: {err}");
        let msg = err.to_string();
        eprintln!("{mode:?}: {msg}");
        assert!(msg.contains(&garbage.url()), "{mode:?}: {msg}");
        // Release of a token through garbage: no panic, no hang, and
        // "unknown", never a success.
        let token = redlock_std::Token::from_bytes(b"abc").unwrap();
        match c.release_token("x", &token) {
            Err(Error::Unavailable(f)) => {
                assert!(f.to_string().contains(&garbage.url()), "{mode:?}: {f}")
            }
            other => panic!("{mode:?}: {other:?}"),
        }
    }
}

#[test]
fn auth_requirepass_and_acl() {
    let server = RedisServer::start_with(ServerOptions {
        requirepass: Some("s3cret-pw".into()),
        acl_users: vec![("alice".into(), "wonder-pw".into())],
        ..ServerOptions::default()
    });
    let c = client(&[server.url()]);
    let lease = c.lock("a1").unwrap();
    assert_eq!(
        get(&server, "a1"),
        Reply::Str(lease.token().as_str().into())
    );
    lease.release().unwrap();

    let c = client(&[server.url_with(Some("alice"), Some("wonder-pw"), 0)]);
    c.lock("a2").unwrap().release().unwrap();
    assert!(!c.node_urls()[0].contains("wonder-pw"));

    for url in [
        server.url_with(None, Some("wrong-pw-123"), 0),
        server.url_with(Some("alice"), Some("wrong-pw-123"), 0),
        server.url_with(None, None, 0),
    ] {
        let c = client(std::slice::from_ref(&url));
        let err = c.try_lock("a3").unwrap_err();
        let msg = err.to_string();
        let dbg = format!("{err:?}");
        eprintln!("{msg}");
        assert!(matches!(err, Error::Auth(_)), "{url}: {msg}");
        assert!(!msg.contains("wrong-pw-123"), "{msg}");
        assert!(!dbg.contains("wrong-pw-123"), "{dbg}");
        assert!(
            msg.contains(&format!("127.0.0.1:{}", server.port())),
            "{msg}"
        );
    }
}

#[test]
fn db_selection() {
    let server = RedisServer::start();
    let c = client(&[server.url_with(None, None, 3)]);
    let lease = c.lock("indb").unwrap();
    assert_eq!(get(&server, "indb"), Reply::Nil);
    assert_eq!(
        server.command_in_db(3, &["GET", "indb"]),
        Reply::Str(lease.token().as_str().into())
    );
    lease.release().unwrap();
    assert_eq!(server.command_in_db(3, &["GET", "indb"]), Reply::Nil);
}

#[test]
fn keep_extends_past_ttl() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls());
    let other = client(&cluster.urls());
    let lease = c
        .lock_with(
            "kept",
            &redlock_std::LockOptions::new()
                .ttl(Duration::from_secs(1))
                .retry(RetryPolicy::none()),
        )
        .unwrap();
    let keeper = c.keep(lease);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        match other.try_lock("kept") {
            Err(Error::Busy(_)) => {}
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("lock taken while kept"),
        }
        assert!(!keeper.is_lost());
        thread::sleep(Duration::from_millis(100));
    }
    let token = keeper.token();
    keeper.release().unwrap();
    for n in &cluster.nodes {
        assert_ne!(get(n, "kept"), Reply::Str(token.as_str().into()));
    }
    other.try_lock("kept").unwrap().release().unwrap();
}

#[test]
fn with_lock_extends_and_returns() {
    let cluster = Cluster::start(3);
    let c = Client::builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_secs(1))
        .node_timeout(NODE_TIMEOUT)
        .build()
        .unwrap();
    let other = client(&cluster.urls());
    let v = c
        .with_lock("wl", |guard| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(3) {
                assert!(matches!(other.try_lock("wl"), Err(Error::Busy(_))));
                assert!(!guard.is_lost());
                assert!(guard.remaining() > Duration::ZERO);
                thread::sleep(Duration::from_millis(150));
            }
            7
        })
        .unwrap();
    assert_eq!(v, 7);
    other.try_lock("wl").unwrap().release().unwrap();
}

#[test]
fn loss_signal_when_majority_dies() {
    let cluster = Cluster::start(5);
    let c = Client::builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_secs(1))
        .node_timeout(NODE_TIMEOUT)
        .build()
        .unwrap();
    let cluster = std::sync::Mutex::new(cluster);
    let t = Instant::now();
    let res = c.with_lock("doomed", |guard| {
        for n in cluster.lock().unwrap().nodes[..3].iter_mut() {
            n.kill();
        }
        // The next extension is at ~1/3 of the validity: it must fail.
        let lost = guard.wait_timeout(Duration::from_secs(5));
        assert!(lost, "loss not signalled");
        t.elapsed()
    });
    let err = res.unwrap_err();
    assert!(matches!(err, Error::Lost(_)), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn stale_token_never_deletes_other_holder() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls());
    let lease = c
        .lock_with(
            "st",
            &redlock_std::LockOptions::new()
                .ttl(Duration::from_millis(300))
                .retry(RetryPolicy::none()),
        )
        .unwrap();
    let stale = *lease.token();
    let _ = lease.forget();
    thread::sleep(Duration::from_millis(400));
    let second = c.try_lock("st").unwrap();
    let report = match c.release_token("st", &stale) {
        Err(Error::NotHeld(report)) => report,
        other => panic!("a stale token's release must be NotHeld: {other:?}"),
    };
    assert_eq!(report.released(), 0);
    assert!(report.not_held() >= 2, "{report:?}");
    for n in &cluster.nodes {
        assert_eq!(get(n, "st"), Reply::Str(second.token().as_str().into()));
    }
    second.release().unwrap();
}

#[test]
fn foreign_key_makes_lock_busy() {
    let cluster = Cluster::start(3);
    for n in &cluster.nodes {
        n.command(&["SET", "taken", "othertoken", "PX", "10000"]);
    }
    let c = client(&cluster.urls());
    let err = c.lock("taken").unwrap_err();
    assert!(
        matches!(err, Error::Busy(ref f) if f.kind() == FailureKind::Busy),
        "{err}"
    );
    for n in &cluster.nodes {
        assert_eq!(get(n, "taken"), Reply::Str("othertoken".into()));
    }
}

#[test]
fn lease_drop_releases() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls());
    {
        let _lease = c.lock("dropped").unwrap();
    }
    let t = Instant::now();
    loop {
        if cluster
            .nodes
            .iter()
            .all(|n| get(n, "dropped") == Reply::Nil)
        {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(2), "drop did not release");
        thread::sleep(Duration::from_millis(10));
    }
    // Dropping the last client right after a lease still releases (in the
    // background: the drop does not wait).
    let c2 = client(&cluster.urls());
    let lease = c2.lock("dropped2").unwrap();
    drop(c2);
    drop(lease);
    let t = Instant::now();
    while !cluster
        .nodes
        .iter()
        .all(|n| get(n, "dropped2") == Reply::Nil)
    {
        assert!(t.elapsed() < Duration::from_secs(2), "drop did not release");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn extend_token_and_lease_extend() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls());
    let mut lease = c.lock("ext").unwrap();
    lease.extend(Duration::from_secs(5)).unwrap();
    let pttl = cluster.nodes[0].command(&["PTTL", "ext"]).as_int().unwrap();
    assert!(pttl > 3000, "{pttl}");
    let token = *lease.token();
    let core_lease = c
        .extend_token("ext", &token, Duration::from_secs(8))
        .unwrap();
    assert!(core_lease.ttl() == Duration::from_secs(8));
    lease.release().unwrap();
    let err = c
        .extend_token("ext", &token, Duration::from_secs(8))
        .unwrap_err();
    assert!(matches!(err, Error::Lost(_)), "{err}");
}

#[test]
fn restarted_node_reconnects() {
    let mut cluster = Cluster::start(3);
    let c = client(&cluster.urls());
    c.lock("r").unwrap().release().unwrap();
    cluster.nodes[0].restart();
    cluster.nodes[1].restart();
    // The core reconnects after its backoff; retry until it does.
    let t = Instant::now();
    loop {
        match c.try_lock("r2") {
            Ok(l) => {
                l.release().unwrap();
                break;
            }
            Err(e) => {
                assert!(t.elapsed() < Duration::from_secs(10), "{e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn tls_node() {
    let server = RedisServer::start_with(ServerOptions {
        tls: true,
        ..ServerOptions::default()
    });
    let url = server.tls_url().unwrap();
    let ca = server.tls().unwrap().ca_pem.clone();
    let c = Client::builder()
        .node(&url)
        .ttl(Duration::from_secs(2))
        .node_timeout(Duration::from_millis(500))
        .tls_ca_pem(&ca)
        .build()
        .unwrap();
    let lease = c.lock("tls").unwrap();
    assert_eq!(
        get(&server, "tls"),
        Reply::Str(lease.token().as_str().into())
    );
    lease.release().unwrap();

    // Without the CA, the certificate is refused and the error says so.
    let c = Client::builder()
        .node(&url)
        .ttl(Duration::from_secs(2))
        .node_timeout(Duration::from_millis(500))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let err = c.lock("tls").unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(matches!(err, Error::Unavailable(_)), "{msg}");
    assert!(msg.contains(&url), "{msg}");
}

#[test]
fn ipv6_host() {
    let server = RedisServer::start();
    if std::net::TcpStream::connect(("::1", server.port())).is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let c = client(&[format!("redis://[::1]:{}", server.port())]);
    let lease = c.lock("v6").unwrap();
    assert_eq!(
        get(&server, "v6"),
        Reply::Str(lease.token().as_str().into())
    );
    lease.release().unwrap();
}

#[test]
fn bad_inputs_are_typed_errors() {
    assert!(matches!(
        Client::builder().node("redis://u:secretpw@h:99999").build(),
        Err(Error::Url { ref url, .. }) if !url.contains("secretpw")
    ));
    let e = Client::builder()
        .node("127.0.0.1:6379")
        .build()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "bad node URL 127.0.0.1:6379: no scheme: add redis:// (or rediss:// for TLS) in front, \
         as in redis://127.0.0.1:6379"
    );
    let twice = Client::builder()
        .nodes(["redis://h:7000/0", "redis://u:pw@H:7000/1"])
        .build()
        .unwrap_err();
    match &twice {
        Error::DuplicateNode { first, second } => {
            assert_eq!(
                (first.as_str(), second.as_str()),
                ("redis://h:7000", "redis://u:***@H:7000/1")
            )
        }
        other => panic!("{other}"),
    }
    assert!(!twice.to_string().contains("pw@"), "{twice}");
    assert!(Client::builder()
        .nodes(["redis://127.0.0.1:1/0", "redis://127.0.0.1:1/1"])
        .allow_same_server_twice()
        .build()
        .is_ok());
    assert!(matches!(Client::builder().build(), Err(Error::Config(_))));
    let server = RedisServer::start();
    let c = client(&[server.url()]);
    assert!(matches!(c.lock(""), Err(Error::Command(_))));
    assert!(matches!(c.lock(vec![b'x'; 10_000]), Err(Error::Command(_))));
    // A node nobody listens on.
    let dead = format!("redis://127.0.0.1:{}", redlock_tests::free_port());
    let c = client(std::slice::from_ref(&dead));
    let err = c.lock("x").unwrap_err();
    assert!(err.to_string().contains(&dead), "{err}");
}

/// Three nodes where an acquire of `key` gets stuck: node 1 is held by
/// someone else and node 2 stops answering, so the attempt has one OK and
/// waits for node 2 until the client's node timeout (3 s).
fn stuck_acquire(key: &str) -> (Cluster, Client) {
    let cluster = Cluster::start(3);
    cluster.nodes[1].command(&["SET", key, "other", "PX", "10000"]);
    cluster.nodes[2].pause();
    let client = Client::builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_secs(10))
        .node_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    (cluster, client)
}

#[test]
fn acquire_cancelled_before_it_starts_ends_at_once_and_leaves_nothing() {
    let (cluster, client) = stuck_acquire("cancel:early");
    let options = redlock_std::LockOptions::new()
        .ttl(Duration::from_secs(10))
        .retry(RetryPolicy::none());
    let cancel = client.cancel_handle();
    cancel.cancel();
    let started = Instant::now();
    let result = client.lock_cancellable("cancel:early", &options, &cancel);
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an acquire cancelled before it started ends at once, not at the node timeout"
    );
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        cluster.nodes[0].command(&["GET", "cancel:early"]),
        Reply::Nil
    );
    cluster.nodes[2].resume();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        cluster.nodes[2].command(&["GET", "cancel:early"]),
        Reply::Nil
    );
}

#[test]
fn cancelled_acquire_leaves_no_partial_lock() {
    let (cluster, client) = stuck_acquire("cancel:r");
    let cancel = client.cancel_handle();
    let started = Instant::now();
    let worker = {
        let (client, cancel) = (client.clone(), cancel.clone());
        thread::spawn(move || {
            client.lock_cancellable(
                "cancel:r",
                &redlock_std::LockOptions::new()
                    .ttl(Duration::from_secs(10))
                    .retry(RetryPolicy::none()),
                &cancel,
            )
        })
    };
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        cluster.nodes[0]
            .command(&["GET", "cancel:r"])
            .as_str()
            .map(str::len),
        Some(redlock_core::ATTEMPT_TOKEN_LEN),
        "node 0 said OK"
    );
    cancel.cancel();
    let result = worker.join().unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cancel is immediate, not a node timeout"
    );
    // The OK node was released at once...
    thread::sleep(Duration::from_millis(100));
    assert_eq!(cluster.nodes[0].command(&["GET", "cancel:r"]), Reply::Nil);
    // ...and the paused node, once it runs again, applies our SET and then
    // the release queued behind it on the same connection.
    cluster.nodes[2].resume();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(cluster.nodes[2].command(&["GET", "cancel:r"]), Reply::Nil);
    assert_eq!(
        cluster.nodes[1].command(&["GET", "cancel:r"]).as_str(),
        Some("other")
    );
}
