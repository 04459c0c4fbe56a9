//! Latency of one uncontended acquire + release on 5 local redis-server
//! nodes through redlock-tokio. Ignored by default; run with
//! `cargo test --release -p redlock-tests --test tokio_bench -- --ignored --nocapture`.

#![allow(clippy::print_stdout)] // a measurement that reports its numbers

use std::time::{Duration, Instant};

use redlock_tests::Cluster;
use redlock_tokio::{Client, RetryPolicy};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, prints numbers"]
async fn uncontended_acquire_release_latency_on_five_nodes() {
    const CYCLES: usize = 1000;
    let cluster = Cluster::start(5);
    let client = Client::builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_secs(10))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    for _ in 0..50 {
        client.lock("bench").await.unwrap().release().await.unwrap();
    }
    let mut acquire = Vec::with_capacity(CYCLES);
    let mut cycle = Vec::with_capacity(CYCLES);
    for _ in 0..CYCLES {
        let start = Instant::now();
        let lease = client.lock("bench").await.unwrap();
        acquire.push(start.elapsed());
        lease.release().await.unwrap();
        cycle.push(start.elapsed());
    }
    acquire.sort();
    cycle.sort();
    for (name, v) in [("acquire", &acquire), ("acquire+release", &cycle)] {
        println!(
            "{name:>16} over {CYCLES} cycles on 5 nodes: p50 {:?}  p99 {:?}  max {:?}",
            percentile(v, 0.50),
            percentile(v, 0.99),
            v[v.len() - 1]
        );
    }
}
