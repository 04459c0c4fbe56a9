//! Uncontended acquire+release latency of redlock-std on 5 local nodes.
//! Not a timed assertion: run with
//! `cargo test -p redlock-tests --test std_latency -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use redlock_std::{Client, RetryPolicy};
use redlock_tests::Cluster;

#[test]
#[ignore = "measurement, prints numbers"]
fn acquire_release_latency_5_nodes() {
    let cluster = Cluster::start(5);
    let c = Client::builder()
        .nodes(cluster.urls())
        .unwrap()
        .ttl(Duration::from_secs(10))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    for _ in 0..100 {
        c.try_lock("lat").unwrap().release().unwrap();
    }
    let mut samples = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        let lease = c.try_lock("lat").unwrap();
        lease.release().unwrap();
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    eprintln!(
        "acquire+release on 5 nodes, {} samples: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        samples.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        samples[samples.len() - 1]
    );
}
