//! Uncontended acquire+release latency of redlock-std on 5 local nodes:
//! plain, several resources, fenced.
//! Not a timed assertion: run with
//! `cargo test -p redlock-tests --test std_latency -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use redlock_std::{Client, IntoResources, LockOptions, RetryPolicy};
use redlock_tests::Cluster;

#[test]
#[ignore = "measurement, prints numbers"]
fn acquire_release_latency_5_nodes() {
    let cluster = Cluster::start(5);
    let c = Client::builder()
        .nodes(cluster.urls())
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

/// p50 / p90 / p99 / max of `n` acquire+release cycles of `resources`.
fn cycles(c: &Client, resources: &[&str], options: &LockOptions, n: usize) -> [Duration; 4] {
    let set = resources.into_resources().unwrap();
    for _ in 0..100 {
        c.lock_with(&set, options).unwrap().release().unwrap();
    }
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            c.lock_with(&set, options).unwrap().release().unwrap();
            t.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    [pct(0.50), pct(0.90), pct(0.99), samples[samples.len() - 1]]
}

#[test]
#[ignore = "measurement, prints numbers"]
fn one_vs_three_resources_and_plain_vs_fenced_5_nodes() {
    let cluster = Cluster::start(5);
    let c = Client::builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_secs(10))
        .build()
        .unwrap();
    let once = LockOptions::new().single_attempt();
    let fenced = once.fenced();
    for (what, resources, options) in [
        ("1 resource, plain ", &["m1"][..], &once),
        ("3 resources, plain", &["m1", "m2", "m3"][..], &once),
        ("1 resource, fenced", &["m1"][..], &fenced),
        ("3 resources, fenced", &["m1", "m2", "m3"][..], &fenced),
    ] {
        let [p50, p90, p99, max] = cycles(&c, resources, options, 2000);
        eprintln!("{what}: acquire+release p50 {p50:?}  p90 {p90:?}  p99 {p99:?}  max {max:?}");
    }
}
