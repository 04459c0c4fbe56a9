//! Every call of the async client, against real nodes.
//!
//! ```sh
//! # three local nodes, if you have none:
//! for p in 7001 7002 7003; do redis-server --port $p --save '' --daemonize yes; done
//! REDLOCK_NODES=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003 \
//!     cargo run -p redlock-tokio --example tokio_quickstart
//! ```

// An example talks to whoever runs it.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use redlock_tokio::{Client, Error, FenceGuard, LockOptions};

#[tokio::main]
async fn main() {
    let nodes: Vec<String> = std::env::var("REDLOCK_NODES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if nodes.is_empty() {
        eprintln!(
            "set REDLOCK_NODES to comma-separated redis:// URLs, e.g. start three local nodes:\n  \
             for p in 7001 7002 7003; do redis-server --port $p --save '' --daemonize yes; done\n  \
             export REDLOCK_NODES=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003"
        );
        std::process::exit(2);
    }
    if let Err(e) = run(&nodes).await {
        eprintln!("quickstart: {e}");
        std::process::exit(1);
    }
}

async fn run(nodes: &[String]) -> Result<(), Error> {
    let client = Client::builder()
        .nodes(nodes)
        .ttl(Duration::from_secs(2))
        .build()?;

    // A short critical section.
    let lease = client.lock("quickstart:invoices").await?;
    println!("locked {:?} for {:?}", lease.resources(), lease.remaining());
    let report = lease.release().await?;
    println!(
        "released on {} of {} nodes",
        report.released(),
        report.nodes.len()
    );

    // Someone else has it: one attempt, then Busy.
    let held = client.lock("quickstart:busy").await?;
    match client.try_lock("quickstart:busy").await {
        Err(Error::Busy(why)) => println!("busy, as expected: {why}"),
        other => println!("unexpected: {other:?}"),
    }
    held.release().await?;

    // A job longer than the TTL: extended in the background.
    let done = client
        .with_lock("quickstart:job", |signal| async move {
            tokio::select! {
                _ = signal.lost() => false,
                _ = tokio::time::sleep(Duration::from_millis(2_500)) => true, // > TTL
            }
        })
        .await?;
    println!("the 2.5 s job finished under the lock (its TTL is 2 s): {done}");

    // Several resources, fenced, kept alive; a store that refuses stale fences.
    let mut store = FenceGuard::new();
    let opts = LockOptions::new().fenced();
    let kept = client
        .lock_and_keep_with(["quickstart:a", "quickstart:b"], &opts)
        .await?;
    let fence = kept.fence().expect("fenced");
    store.admit(fence).expect("the first writer");
    println!("holding {:?} with fence {fence}", kept.resources());
    kept.release().await?;
    let next = client
        .lock_with(["quickstart:b", "quickstart:a"], &opts)
        .await?;
    let newer = next.fence().expect("fenced");
    store.admit(newer).expect("a newer holder");
    println!(
        "the next grant's fence {newer} is above ({})",
        newer > fence
    );
    println!(
        "a write with the old fence: {:?}",
        store.admit(fence).map_err(|e| e.to_string())
    );
    next.release().await?;

    client.flush(Duration::from_secs(1)).await?;
    Ok(())
}
