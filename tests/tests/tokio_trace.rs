//! redlock-tokio's `tracing` output, captured at TRACE level through a
//! whole lock life (auth, acquire, contention, extension, loss of a node,
//! release), never contains a password or a full token; the spans of a
//! fenced lock carry its fence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redlock_tests::{Cluster, ServerOptions};
use redlock_tokio::{Client, Error, LockOptions, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every span field and event field as text.
#[derive(Clone, Default)]
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    next_id: Arc<AtomicU64>,
}

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl Capture {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {}", span.metadata().name());
        span.record(&mut Line(&mut line));
        self.push(line);
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = "record".to_string();
        values.record(&mut Line(&mut line));
        self.push(line);
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = format!("event {}", event.metadata().target());
        event.record(&mut Line(&mut line));
        self.push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_a_password_or_a_full_token() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).unwrap();

    const PASSWORD: &str = "pw-Zx81-never-logged";
    let mut cluster = Cluster::start_with(
        3,
        ServerOptions {
            requirepass: Some(PASSWORD.into()),
            ..Default::default()
        },
    );
    let client = Client::builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_millis(600))
        .node_timeout(Duration::from_millis(100))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let mut tokens = Vec::new();

    let mut lease = client.lock("trace:a").await.unwrap();
    tokens.push(*lease.token());
    lease.extend(Duration::from_millis(600)).await.unwrap();
    assert!(matches!(
        client.try_lock("trace:a").await,
        Err(Error::Busy(_))
    ));
    lease.release().await.unwrap();

    // A fenced lock, then kept: its spans name the fence.
    let fenced = client
        .lock_with(["trace:f", "trace:g"], &LockOptions::new().fenced())
        .await
        .unwrap();
    tokens.push(*fenced.token());
    let fence = fenced.fence().unwrap();
    client.keep(fenced).release().await.unwrap();

    let guard = client.lock_and_keep("trace:b").await.unwrap();
    tokens.push(guard.token());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| {
        cluster.nodes[0].kill();
        cluster.nodes[1].kill();
    });
    tokio::time::timeout(Duration::from_secs(3), guard.lost())
        .await
        .unwrap();
    let _ = guard.release().await;
    let err = client.lock("trace:c").await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)));

    // Wrong password, from another client.
    let wrong = Client::builder()
        .node(cluster.nodes[2].url_with(None, Some("wrong-pw-Qq7"), 0))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    assert!(matches!(wrong.lock("trace:d").await, Err(Error::Auth(_))));
    drop((client, wrong));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let lines = capture.lines.lock().unwrap().clone();
    if std::env::var_os("SHOW_TRACE").is_some() {
        for l in &lines {
            eprintln!("{l}");
        }
    }
    assert!(lines.len() > 20, "tracing output captured: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("latency_ms")));
    // The driver keeps an operation's names for its completion line only
    // when debug lines are written: acquire, extend and release all do.
    for done in ["acquired", "extended", "released"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("message={done} resources=trace:a "))),
            "{done}: {lines:#?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.starts_with("span redlock_lock")
            && l.contains("resources=trace:f,trace:g")
            && l.contains("fenced=true")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("record") && l.contains(&format!("fence={fence}"))),
        "the lock span records the fence it got"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("span redlock_keep") && l.contains(&format!("fence={fence}"))),
        "the keeper's span carries the fence"
    );
    assert!(lines
        .iter()
        .any(|l| l.contains("url=redis://:***@127.0.0.1")));
    for line in &lines {
        assert!(!line.contains(PASSWORD), "{line}");
        assert!(!line.contains("wrong-pw-Qq7"), "{line}");
        for t in &tokens {
            assert!(!line.contains(t.as_str()), "full token in: {line}");
            // Not even half of it.
            assert!(!line.contains(&t.as_str()[..20]), "token in: {line}");
        }
    }
}
