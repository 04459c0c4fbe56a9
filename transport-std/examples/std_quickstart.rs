//! Every call of the blocking client, against real nodes.
//!
//! ```sh
//! # three local nodes, if you have none:
//! for p in 7001 7002 7003; do redis-server --port $p --save '' --daemonize yes; done
//! REDLOCK_NODES=redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003 \
//!     cargo run -p redlock-std --example std_quickstart
//! ```

// An example talks to whoever runs it.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use redlock_std::{Client, Error, FenceGuard, LockOptions};

fn main() {
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
    if let Err(e) = run(&nodes) {
        eprintln!("quickstart: {e}");
        std::process::exit(1);
    }
}

fn run(nodes: &[String]) -> Result<(), Error> {
    let client = Client::builder()
        .nodes(nodes)
        .ttl(Duration::from_secs(2))
        .build()?;

    // A short critical section.
    let lease = client.lock("quickstart:invoices")?;
    println!("locked {:?} for {:?}", lease.resources(), lease.remaining());
    let report = lease.release()?;
    println!(
        "released on {} of {} nodes",
        report.released(),
        report.nodes.len()
    );

    // Someone else has it: one attempt, then Busy.
    let held = client.lock("quickstart:busy")?;
    match client.try_lock("quickstart:busy") {
        Err(Error::Busy(why)) => println!("busy, as expected: {why}"),
        other => println!("unexpected: {other:?}"),
    }
    held.release()?;

    // A job longer than the TTL: extended in the background.
    let steps = client.with_lock("quickstart:job", |signal| {
        let mut steps = 0;
        while steps < 5 && !signal.is_lost() {
            std::thread::sleep(Duration::from_millis(500)); // 2.5 s in all: > TTL
            steps += 1;
        }
        steps
    })?;
    println!("the job ran {steps} steps under the lock (its TTL is 2 s)");

    // Several resources, fenced, kept alive; a store that refuses stale fences.
    let mut store = FenceGuard::new();
    let opts = LockOptions::new().fenced();
    let kept = client.lock_and_keep_with(["quickstart:a", "quickstart:b"], &opts)?;
    let fence = kept.fence().expect("fenced");
    store.admit(fence).expect("the first writer");
    println!("holding {:?} with fence {fence}", kept.resources());
    kept.release()?;
    let next = client.lock_with(["quickstart:b", "quickstart:a"], &opts)?;
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
    next.release()?;

    client.flush(Duration::from_secs(1))?;
    Ok(())
}
