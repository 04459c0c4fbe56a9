//! redlock-tokio against real redis-server processes: locking, contention,
//! extension, auth, databases, busy keys, stale tokens, cancellation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use redlock_tests::{Cluster, RedisServer, Reply, ServerOptions};
use redlock_tokio::{Client, Error, RetryPolicy};

fn client(urls: &[String], ttl_ms: u64) -> Client {
    Client::builder()
        .nodes(urls)
        .ttl(Duration::from_millis(ttl_ms))
        .node_timeout(Duration::from_millis(200))
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
}

/// A harness call (blocking std I/O) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn get(server: &RedisServer, key: &str) -> Reply {
    server.command(&["GET", key])
}

/// Waits (up to 2 s) until `f` is true; returns its last value.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// The value of `key` on `server` once it is `want` (the lock is decided at
/// quorum: the last nodes' SETs may still be in flight), or after 2 s.
async fn settled(server: &RedisServer, db: u16, key: &str, want: &Reply) -> Reply {
    let mut got = server.command_in_db(db, &["GET", key]);
    for _ in 0..200 {
        if got == *want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        got = server.command_in_db(db, &["GET", key]);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_sets_token_on_every_node_and_release_removes_it() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), 10_000);
    let lease = c.lock("tokio:basic").await.unwrap();
    assert!(lease.is_valid());
    assert!(lease.remaining() > Duration::from_secs(9));
    assert!(
        lease.token().as_bytes().len() >= 32,
        "at least 128 bits, hex"
    );
    let want = Reply::Str(lease.token().as_str().into());
    for node in &cluster.nodes {
        assert_eq!(settled(node, 0, "tokio:basic", &want).await, want);
        let pttl = node.command(&["PTTL", "tokio:basic"]).as_int().unwrap();
        assert!(pttl > 9_000 && pttl <= 10_000, "{pttl}");
    }
    let report = lease.release().await.unwrap();
    assert!(report.released() >= 2, "decided at quorum: {report:?}");
    assert!(cluster.wait_gone("tokio:basic", Duration::from_secs(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_lease_is_released_and_forgotten_lease_is_kept() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), 10_000);
    let lease = c.lock("tokio:drop").await.unwrap();
    drop(lease);
    let forgotten = c.lock("tokio:forget").await.unwrap().forget();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in &cluster.nodes {
        assert_eq!(get(node, "tokio:drop"), Reply::Nil);
        assert_eq!(
            get(node, "tokio:forget"),
            Reply::Str(forgotten.token().as_str().into())
        );
    }
    // The token alone is enough to extend and release it later.
    let extended = c
        .extend_token("tokio:forget", forgotten.token(), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(extended.ttl() == Duration::from_secs(20));
    for node in &cluster.nodes {
        let extended = || node.command(&["PTTL", "tokio:forget"]).as_int() > Some(15_000);
        assert!(eventually(extended).await);
    }
    let report = c
        .release_token("tokio:forget", forgotten.token())
        .await
        .unwrap();
    assert!(report.released() >= 2, "decided at quorum: {report:?}");
}

/// Many tasks (over several clients) do a non-atomic read-modify-write of a
/// counter stored in Redis, each inside the lock: no update may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_under_contention_loses_no_update() {
    let cluster = Arc::new(Cluster::start(5));
    let counter = Arc::new(RedisServer::start());
    let clients: Vec<Client> = (0..4)
        .map(|_| {
            Client::builder()
                .nodes(cluster.urls())
                .ttl(Duration::from_secs(5))
                .node_timeout(Duration::from_millis(200))
                .retry(RetryPolicy {
                    count: 0,
                    delay: Duration::from_millis(5),
                    jitter: Duration::from_millis(10),
                    wait: Some(Duration::from_secs(60)),
                })
                .build()
                .unwrap()
        })
        .collect();
    const TASKS_PER_CLIENT: usize = 8;
    const ROUNDS: usize = 4;
    let inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in &clients {
        for _ in 0..TASKS_PER_CLIENT {
            let c = c.clone();
            let counter = counter.clone();
            let inside = inside.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    let lease = c.lock("tokio:counter-lock").await.unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    let counter2 = counter.clone();
                    let v = blocking(move || match counter2.command(&["GET", "counter"]) {
                        Reply::Nil => 0,
                        Reply::Str(s) => s.parse::<u64>().unwrap(),
                        other => panic!("{other:?}"),
                    })
                    .await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let counter2 = counter.clone();
                    let next = (v + 1).to_string();
                    blocking(move || counter2.command(&["SET", "counter", &next])).await;
                    assert!(lease.is_valid(), "critical section outlived its lease");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    lease.release().await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = (clients.len() * TASKS_PER_CLIENT * ROUNDS) as i64;
    assert_eq!(
        counter.command(&["GET", "counter"]),
        Reply::Str(total.to_string())
    );
}

/// 300 locks at once through one client share one connection per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_concurrent_locks_share_one_connection_per_node() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), 10_000);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.lock(format!("tokio:many:{i}")).await
        }));
    }
    let mut leases = Vec::new();
    for t in tasks {
        leases.push(t.await.unwrap().unwrap());
    }
    for node in &cluster.nodes {
        assert!(eventually(|| node.command(&["DBSIZE"]) == Reply::Int(300)).await);
        let list = match node.command(&["CLIENT", "LIST"]) {
            Reply::Str(s) => s,
            other => panic!("{other:?}"),
        };
        // Ours, plus the harness's own connection running CLIENT LIST.
        assert_eq!(list.lines().count(), 2, "{list}");
    }
    let releases: Vec<_> = leases.into_iter().map(|l| l.release()).collect();
    for r in futures_join(releases).await {
        assert!(r.unwrap().released() >= 2);
    }
    for node in &cluster.nodes {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while node.command(&["DBSIZE"]) != Reply::Int(0) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(node.command(&["DBSIZE"]), Reply::Int(0));
    }
}

/// Rounds of `tasks` locks taken at once on distinct resources, then
/// released at once; each answered caller then just waits (no next
/// command), so once the node has answered every request only the
/// driver's own pass can deliver the remaining results. `Err` names the
/// round that stalled for `patience`.
async fn group_rounds(
    c: &Client,
    nodes: usize,
    tasks: usize,
    patience: Duration,
) -> Result<(), String> {
    for round in 0..20 {
        let locks: Vec<_> = (0..tasks)
            .map(|i| {
                let c = c.clone();
                async move { c.lock(format!("tokio:group:{i}")).await }
            })
            .collect();
        let leases = tokio::time::timeout(patience, futures_join(locks))
            .await
            .map_err(|_| format!("{nodes} node(s), round {round}: acquires stalled"))?;
        let releases: Vec<_> = leases.into_iter().map(|l| l.unwrap().release()).collect();
        let released = tokio::time::timeout(patience, futures_join(releases))
            .await
            .map_err(|_| format!("{nodes} node(s), round {round}: releases stalled"))?;
        for r in released {
            assert!(r.unwrap().released() * 2 > nodes);
        }
    }
    Ok(())
}

/// A few operations in flight (at most 32 node requests): the driver task
/// answers them two per pass, and must go on answering the rest when
/// nothing else would wake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_concurrent_locks_answered_in_groups_all_complete() {
    for (nodes, tasks) in [(1, 16), (3, 10)] {
        let cluster = Cluster::start(nodes);
        let c = client(&cluster.urls(), 10_000);
        group_rounds(&c, nodes, tasks, Duration::from_secs(10))
            .await
            .unwrap();
        for node in &cluster.nodes {
            assert!(eventually(|| node.command(&["DBSIZE"]) == Reply::Int(0)).await);
        }
    }
}

/// The test above catches the bug it is there for: with the driver planted
/// to wait as if no decided operation were left to answer, callers stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_forgotten_answers_are_caught() {
    let cluster = Cluster::start(1);
    let c = client(&cluster.urls(), 10_000);
    redlock_tokio::hooks::forget_answers_left(&c);
    let stalled = group_rounds(&c, 1, 16, Duration::from_secs(2)).await;
    assert!(stalled.is_err(), "the planted bug went unnoticed");
}

async fn futures_join<F: std::future::Future + Send + 'static>(fs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_set_by_another_client_is_respected() {
    let cluster = Cluster::start(3);
    // Another Redlock client holds it on two nodes of three: busy.
    for node in &cluster.nodes[..2] {
        node.command(&["SET", "tokio:other", "someone-else", "PX", "60000"]);
    }
    let c = client(&cluster.urls(), 5_000);
    let err = c.try_lock("tokio:other").await.unwrap_err();
    assert!(matches!(err, Error::Busy(_)), "{err}");
    let text = err.to_string();
    for url in cluster.urls() {
        assert!(text.contains(&url), "{text} names {url}");
    }
    // Untouched where it was held, and our partial SET undone on the third.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for node in &cluster.nodes[..2] {
        assert_eq!(get(node, "tokio:other"), Reply::Str("someone-else".into()));
    }
    assert_eq!(get(&cluster.nodes[2], "tokio:other"), Reply::Nil);
    // With retries it keeps trying, then gives up with Busy as well.
    let retry = RetryPolicy {
        count: 2,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
        wait: None,
    };
    match c
        .lock_with(
            "tokio:other",
            &redlock_tokio::LockOptions::new()
                .ttl(Duration::from_secs(5))
                .retry(retry),
        )
        .await
    {
        Err(Error::Busy(f)) => assert_eq!(f.error.attempts, 3),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_token_release_never_deletes_another_holders_key() {
    let cluster = Cluster::start(3);
    let a = client(&cluster.urls(), 300);
    let b = client(&cluster.urls(), 10_000);
    let old = a.lock("tokio:stale").await.unwrap().forget();
    tokio::time::sleep(Duration::from_millis(400)).await; // expired
    let held = b.lock("tokio:stale").await.unwrap();
    let report = match a.release_token("tokio:stale", old.token()).await {
        Err(Error::NotHeld(report)) => report,
        other => panic!("a stale token's release must be NotHeld: {other:?}"),
    };
    assert_eq!(report.released(), 0);
    assert!(report.not_held() >= 2, "{report:?}");
    let want = Reply::Str(held.token().as_str().into());
    for node in &cluster.nodes {
        assert_eq!(settled(node, 0, "tokio:stale", &want).await, want);
    }
    // Extending with the stale token fails too, and touches nothing.
    let err = a
        .extend_token("tokio:stale", old.token(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Lost(_)), "{err}");
    let pttl = cluster.nodes[0]
        .command(&["PTTL", "tokio:stale"])
        .as_int()
        .unwrap();
    assert!(pttl <= 10_000);
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_keeps_the_lock_past_its_ttl() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), 400);
    let other = client(&cluster.urls(), 400);

    // By hand.
    let mut lease = c.lock("tokio:extend-manual").await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        lease.extend(Duration::from_millis(400)).await.unwrap();
    }
    assert!(lease.is_valid());
    assert!(matches!(
        other.try_lock("tokio:extend-manual").await,
        Err(Error::Busy(_))
    ));
    lease.release().await.unwrap();

    // Automatically, for three TTLs.
    let guard = c.lock_and_keep("tokio:extend-auto").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert!(!guard.is_lost());
    assert!(guard.remaining() > Duration::ZERO);
    for node in &cluster.nodes {
        assert_eq!(
            get(node, "tokio:extend-auto"),
            Reply::Str(guard.token().as_str().into())
        );
    }
    assert!(matches!(
        other.try_lock("tokio:extend-auto").await,
        Err(Error::Busy(_))
    ));
    let report = guard.release().await.unwrap();
    assert!(report.released() >= 2, "decided at quorum: {report:?}");

    // with_lock: the work outlives the TTL, the lock holds throughout.
    let out = c
        .with_lock("tokio:with-lock", |guard| async move {
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            (guard.is_lost(), guard.token())
        })
        .await
        .unwrap();
    assert!(!out.0);
    for node in &cluster.nodes {
        assert_eq!(get(node, "tokio:with-lock"), Reply::Nil, "released after");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_requirepass_acl_user_and_wrong_password() {
    let opts = ServerOptions {
        requirepass: Some("s3cret-pw".into()),
        acl_users: vec![("app".into(), "app-pw-77".into())],
        ..Default::default()
    };
    let cluster = Cluster::start_with(3, opts);

    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let c = client(&urls, 5_000);
    let lease = c.lock("tokio:auth").await.unwrap();
    lease.release().await.unwrap();
    for u in c.node_urls() {
        assert!(!u.contains("s3cret-pw"), "{u}");
    }

    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.url_with(Some("app"), Some("app-pw-77"), 0))
        .collect();
    let c = client(&urls, 5_000);
    let lease = c.lock("tokio:auth-acl").await.unwrap();
    let want = Reply::Str(lease.token().as_str().into());
    assert_eq!(
        settled(&cluster.nodes[0], 0, "tokio:auth-acl", &want).await,
        want
    );
    lease.release().await.unwrap();

    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.url_with(Some("app"), Some("wrong-pw-99"), 0))
        .collect();
    let c = client(&urls, 5_000);
    let err = c.try_lock("tokio:auth-wrong").await.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-pw-99"), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
    assert!(text.contains("app:***@127.0.0.1"), "{text}");

    // No password at all against requirepass: also an auth failure.
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.url_with(None, None, 0))
        .collect();
    let c = client(&urls, 5_000);
    let err = c.try_lock("tokio:auth-none").await.unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_is_selected_from_the_url() {
    let cluster = Cluster::start(3);
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.url_with(None, None, 3))
        .collect();
    let c = client(&urls, 5_000);
    let lease = c.lock("tokio:db").await.unwrap();
    let want = Reply::Str(lease.token().as_str().into());
    for node in &cluster.nodes {
        assert_eq!(settled(node, 3, "tokio:db", &want).await, want);
        assert_eq!(node.command(&["GET", "tokio:db"]), Reply::Nil);
    }
    lease.release().await.unwrap();
    assert_eq!(
        cluster.nodes[0].command_in_db(3, &["GET", "tokio:db"]),
        Reply::Nil
    );
}

/// Lock futures dropped at random points (timeouts, lost `select!` races)
/// leave no key behind on any node, once things settle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_lock_futures_leave_no_partial_lock() {
    let cluster = Cluster::start(3);
    // Long TTL: a leaked key would still be there at the check.
    let c = Client::builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_secs(60))
        .node_timeout(Duration::from_millis(200))
        .retry(RetryPolicy {
            count: 0,
            delay: Duration::from_millis(3),
            jitter: Duration::from_millis(4),
            wait: Some(Duration::from_secs(5)),
        })
        .build()
        .unwrap();
    // Warm up the connections.
    c.lock("tokio:warm").await.unwrap().release().await.unwrap();
    // A competitor holds one resource for a while, so acquires there retry
    // and are dropped during their pauses too.
    let other = client(&cluster.urls(), 60_000);
    let held = other.lock("tokio:cancel:0").await.unwrap();

    let acquired = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..400u64 {
        let c = c.clone();
        let acquired = acquired.clone();
        tasks.push(tokio::spawn(async move {
            let (resource, wait_us, mode) = {
                let mut rng = rand::rng();
                (
                    format!("tokio:cancel:{}", rng.random_range(0..6u32)),
                    rng.random_range(0..3_000u64),
                    rng.random_range(0..3u32),
                )
            };
            let deadline = Duration::from_micros(wait_us);
            match mode {
                0 => {
                    if let Ok(Ok(lease)) = tokio::time::timeout(deadline, c.lock(&resource)).await {
                        acquired.fetch_add(1, Ordering::Relaxed);
                        lease.release().await.unwrap();
                    }
                }
                1 => {
                    tokio::select! {
                        r = c.lock(&resource) => if let Ok(lease) = r {
                            acquired.fetch_add(1, Ordering::Relaxed);
                            drop(lease); // released in the background
                        },
                        _ = tokio::time::sleep(deadline) => {}
                    }
                }
                _ => {
                    // Poll once or a few times by hand, then drop.
                    let fut = c.lock(&resource);
                    tokio::pin!(fut);
                    let _ = tokio::time::timeout(Duration::from_micros(i % 50), &mut fut).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    held.release().await.unwrap();
    // Settle: in-flight SETs, their undo, background releases.
    let mut left = Vec::new();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = cluster
            .nodes
            .iter()
            .map(|n| n.command(&["KEYS", "tokio:cancel:*"]))
            .filter(|r| *r != Reply::Array(vec![]))
            .collect();
        if left.is_empty() {
            break;
        }
    }
    if !left.is_empty() {
        for (i, n) in cluster.nodes.iter().enumerate() {
            for k in 0..6 {
                let key = format!("tokio:cancel:{k}");
                eprintln!(
                    "node {i} {key} = {:?} pttl {:?}",
                    n.command(&["GET", &key]),
                    n.command(&["PTTL", &key])
                );
            }
        }
    }
    assert!(left.is_empty(), "keys left behind: {left:?}");
    eprintln!(
        "cancel test: {} of 400 acquired before drop",
        acquired.load(Ordering::Relaxed)
    );
    // And the client still works.
    c.lock("tokio:after")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_typed_error() {
    let err = Client::builder()
        .node("redis://u:topsecret@host:0")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Url { .. }));
    assert!(!err.to_string().contains("topsecret"), "{err}");
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
    assert!(
        matches!(&twice, Error::DuplicateNode { first, second }
            if first == "redis://h:7000" && second == "redis://u:***@H:7000/1"),
        "{twice}"
    );
    // A bad CA is reported even without TLS nodes.
    let err = Client::builder()
        .node("redis://127.0.0.1:1")
        .tls_ca_pem(b"not a pem")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err}");
    assert!(matches!(
        Client::builder().build(),
        Err(Error::Config(redlock_tokio::core::ConfigError::NoNodes))
    ));
    let c = client(&["redis://127.0.0.1:1".to_string()], 1_000);
    assert!(matches!(c.try_lock("").await, Err(Error::Command(_))));
    assert!(matches!(
        c.try_lock(vec![b'x'; 1000]).await,
        Err(Error::Command(_))
    ));
    // TTL below drift + node timeout.
    assert!(matches!(
        c.lock_with(
            "r",
            &redlock_tokio::LockOptions::new()
                .ttl(Duration::from_millis(1))
                .retry(RetryPolicy::none())
        )
        .await,
        Err(Error::Command(_))
    ));
    let err = Client::builder()
        .node("redis://127.0.0.1:1")
        .ttl(Duration::from_millis(1))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = Client::builder()
        .node("rediss://127.0.0.1:1")
        .tls_ca_pem(b"not a pem")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err}");
}

#[test]
fn build_outside_a_runtime_is_an_error_not_a_panic() {
    let err = Client::builder()
        .node("redis://127.0.0.1:1")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_nodes_work_when_the_host_has_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let cluster = Cluster::start(3);
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("redis://[::1]:{}", n.port()))
        .collect();
    let c = client(&urls, 5_000);
    assert_eq!(c.node_urls()[0], urls[0]);
    let lease = c.lock("tokio:v6").await.unwrap();
    let want = Reply::Str(lease.token().as_str().into());
    assert_eq!(settled(&cluster.nodes[1], 0, "tokio:v6", &want).await, want);
    lease.release().await.unwrap();
}
