//! redlock-tokio under faults, against real redis-server processes: dead,
//! paused and garbage-speaking nodes, loss of a majority mid-lease, TLS.

use std::time::{Duration, Instant};

use redlock_tests::{Cluster, GarbageMode, GarbageServer, Reply, ServerOptions};
use redlock_tokio::{Client, Error, RetryPolicy};

const NODE_TIMEOUT: Duration = Duration::from_millis(100);

fn client(urls: &[String], ttl_ms: u64) -> Client {
    Client::builder()
        .nodes(urls)
        .ttl(Duration::from_millis(ttl_ms))
        .node_timeout(NODE_TIMEOUT)
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
}

/// Kills node `i` (blocking harness call, off the async workers).
async fn kill(cluster: &mut Cluster, i: usize) {
    tokio::task::block_in_place(|| cluster.nodes[i].kill());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_and_two_of_five_down_still_lock() {
    let mut cluster = Cluster::start(5);
    let urls = cluster.urls();
    let before = client(&urls, 5_000);
    before.lock("warm").await.unwrap().release().await.unwrap();

    kill(&mut cluster, 0).await;
    let lease = before.lock("tokio:down1").await.unwrap();
    assert!(lease.is_valid());
    lease.release().await.unwrap();
    let after = client(&urls, 5_000);
    after
        .lock("tokio:down1")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();

    kill(&mut cluster, 3).await;
    let lease = before.lock("tokio:down2").await.unwrap();
    lease.release().await.unwrap();
    let after = client(&urls, 5_000);
    let lease = after.lock("tokio:down2").await.unwrap();
    for i in [1, 2, 4] {
        let want = Reply::Str(lease.token().as_str().into());
        let mut got = Reply::Nil;
        for _ in 0..100 {
            got = cluster.nodes[i].command(&["GET", "tokio:down2"]);
            if got == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(got, want);
    }
    lease.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_five_down_is_unavailable_quickly_and_names_them() {
    let mut cluster = Cluster::start(5);
    let urls = cluster.urls();
    let before = client(&urls, 5_000);
    before.lock("warm").await.unwrap().release().await.unwrap();
    for i in [0, 2, 4] {
        kill(&mut cluster, i).await;
    }
    for c in [&before, &client(&urls, 5_000)] {
        let start = Instant::now();
        let err = c.lock("tokio:down3").await.unwrap_err();
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(matches!(err, Error::Unavailable(_)), "{err}");
        let text = err.to_string();
        for i in [0, 2, 4] {
            assert!(text.contains(&urls[i]), "{text} names {}", urls[i]);
        }
    }
    // Nothing left on the live nodes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in [1, 3] {
        assert_eq!(cluster.nodes[i].command(&["DBSIZE"]), Reply::Int(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_is_reconnected() {
    let mut cluster = Cluster::start(3);
    let c = client(&cluster.urls(), 5_000);
    c.lock("warm").await.unwrap().release().await.unwrap();
    for i in [0, 1] {
        tokio::task::block_in_place(|| cluster.nodes[i].restart());
    }
    // Both connections broke; the core reconnects after its backoff.
    let start = Instant::now();
    let lease = loop {
        match c.lock("tokio:restart").await {
            Ok(l) => break l,
            Err(e) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("not reconnected after 5 s: {e}"),
        }
    };
    lease.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_node_costs_about_the_node_timeout() {
    let cluster = Cluster::start(3);
    let c = client(&cluster.urls(), 5_000);
    c.lock("warm").await.unwrap().release().await.unwrap();

    cluster.nodes[0].pause();
    for round in 0..5 {
        let start = Instant::now();
        let lease = c.lock(format!("tokio:paused:{round}")).await.unwrap();
        let acquired = start.elapsed();
        // Release waits for every node, so it pays the timeout in full.
        let report = lease.release().await.unwrap();
        let total = start.elapsed();
        assert!(
            acquired < Duration::from_secs(1),
            "acquire took {acquired:?}"
        );
        assert!(
            total < Duration::from_secs(2),
            "lock+release took {total:?}"
        );
        assert_eq!(report.released(), 2);
    }
    // Two of three paused: unavailable, within a bound of a few timeouts.
    cluster.nodes[1].pause();
    let start = Instant::now();
    let err = c.lock("tokio:paused2").await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    cluster.nodes[0].resume();
    cluster.nodes[1].resume();
    // The paused nodes come back (possibly after a reconnect).
    let start = Instant::now();
    loop {
        match c.lock("tokio:resumed").await {
            Ok(l) => {
                l.release().await.unwrap();
                break;
            }
            Err(e) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

const MODES: [GarbageMode; 5] = [
    GarbageMode::RandomBytes,
    GarbageMode::HugeBulkHeader,
    GarbageMode::Trickle,
    GarbageMode::Silence,
    GarbageMode::CloseMidReply,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_node_among_three_does_not_stop_locking() {
    let cluster = Cluster::start(2);
    for mode in MODES {
        let garbage = GarbageServer::start(mode);
        let mut urls = cluster.urls();
        urls.insert(1, garbage.url());
        let c = client(&urls, 5_000);
        for round in 0..3 {
            let start = Instant::now();
            let lease = tokio::time::timeout(Duration::from_secs(5), c.lock("tokio:garbage"))
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: hung"))
                .unwrap_or_else(|e| panic!("{mode:?} round {round}: {e}"));
            let report = lease.release().await.unwrap();
            assert_eq!(report.released(), 2, "{mode:?}");
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{mode:?}: {:?}",
                start.elapsed()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_node_alone_is_an_error_naming_it() {
    for mode in MODES {
        let garbage = GarbageServer::start(mode);
        let c = client(&[garbage.url()], 5_000);
        for _ in 0..2 {
            let start = Instant::now();
            let err = tokio::time::timeout(Duration::from_secs(5), c.lock("tokio:garbage"))
                .await
                .unwrap_or_else(|_| panic!("{mode:?}: hung"))
                .unwrap_err();
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "{mode:?}: {:?}",
                start.elapsed()
            );
            eprintln!("{mode:?}: {err}");
            assert!(matches!(err, Error::Unavailable(_)), "{mode:?}: {err}");
            assert!(err.to_string().contains(&garbage.url()), "{mode:?}: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_signal_fires_when_a_majority_is_killed_mid_lease() {
    let mut cluster = Cluster::start(3);
    let urls = cluster.urls();
    let c = client(&urls, 600);
    let guard = c.lock_and_keep("tokio:loss").await.unwrap();
    let token = guard.cancellation_token();
    // Survives a few renewals first.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!guard.is_lost());
    kill(&mut cluster, 0).await;
    kill(&mut cluster, 2).await;
    let killed = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), guard.lost())
        .await
        .expect("loss was signalled");
    // At the latest when the validity ran out (600 ms), plus slack.
    assert!(
        killed.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        killed.elapsed()
    );
    assert!(token.is_cancelled());
    assert_eq!(guard.remaining(), Duration::ZERO);
    let err = guard.lost_error().expect("a reason");
    eprintln!("lost: {err}");
    assert!(matches!(err, Error::Lost(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains(&urls[0]) && text.contains(&urls[2]), "{text}");
    match guard.release().await {
        Err(Error::Lost(_)) => {}
        other => panic!("{other:?}"),
    }

    // The same through with_lock: the work sees the loss and stops early,
    // and with_lock reports the loss (its output is not to be trusted).
    let mut cluster = Cluster::start(3);
    let c = client(&cluster.urls(), 600);
    let saw = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = saw.clone();
    let work = c.with_lock("tokio:loss2", |guard| async move {
        tokio::select! {
            _ = guard.lost() => seen.store(true, std::sync::atomic::Ordering::SeqCst),
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    });
    let killer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        kill(&mut cluster, 1).await;
        kill(&mut cluster, 2).await;
    };
    let (out, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(5), work), killer);
    let out = out.expect("no hang");
    assert!(matches!(out, Err(Error::Lost(_))), "{out:?}");
    assert!(
        saw.load(std::sync::atomic::Ordering::SeqCst),
        "the work saw the loss"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_nodes_with_the_generated_ca() {
    let cluster = Cluster::start_with(
        3,
        ServerOptions {
            tls: true,
            ..Default::default()
        },
    );
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.tls_url().unwrap()).collect();
    let mut pem = Vec::new();
    for n in &cluster.nodes {
        pem.extend_from_slice(&n.tls().unwrap().ca_pem);
    }
    let c = Client::builder()
        .nodes(&urls)
        .ttl(Duration::from_secs(5))
        .node_timeout(Duration::from_millis(500))
        .retry(RetryPolicy::none())
        .tls_ca_pem(&pem)
        .build()
        .unwrap();
    let lease = c.lock("tokio:tls").await.unwrap();
    // Our token was on all three nodes.
    assert!(lease.release().await.unwrap().released() >= 2);

    // Without the CA the certificates are not trusted: an error, not a hang.
    let untrusted = Client::builder()
        .nodes(&urls)
        .ttl(Duration::from_secs(5))
        .node_timeout(Duration::from_millis(500))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), untrusted.lock("tokio:tls"))
        .await
        .expect("no hang")
        .unwrap_err();
    eprintln!("untrusted: {err}");
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    assert!(err.to_string().contains(&urls[0]), "{err}");
}
