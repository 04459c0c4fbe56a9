//! Fenced vs plain acquire+release latency on real redis-server nodes, at
//! N = 1, 3 and 5, for both transports (issue 10's benchmark): the two kinds
//! of lock run in interleaved rounds on the same client, so load on the
//! machine hits both alike, and the nodes' own EVAL counts tell how often a
//! fenced acquire needed its second round.
//!
//! Not a timed assertion (it asserts only that every cycle succeeded and
//! that the round counts add up). Run with
//! `cargo test --release -p redlock-tests --test fence_latency -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use redlock_tests::Cluster;

const ROUNDS: usize = 5;
const PER_ROUND: usize = 400;

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p) as usize]
}

/// The nodes' script calls (EVAL, EVALSHA) since the last reset, summed
/// (the commands a script runs are counted under their own names).
fn scripts(cluster: &Cluster) -> u64 {
    cluster
        .nodes
        .iter()
        .map(|n| n.calls("eval") + n.calls("evalsha"))
        .sum()
}

fn reset(cluster: &Cluster) {
    for n in &cluster.nodes {
        n.reset_stats();
    }
}

/// Round-2 scripts per fenced cycle: a fenced cycle runs one acquire script
/// and one release script on every node; anything beyond is round 2 (sent
/// to the nodes counted in round 1's quorum: between a quorum and N).
fn extra_per_cycle(cluster: &Cluster, cycles: usize) -> f64 {
    let n = cluster.nodes.len() as u64;
    let evals = scripts(cluster);
    let base = 2 * n * cycles as u64;
    assert!(
        evals >= base,
        "{evals} scripts for {cycles} fenced cycles on {n} nodes"
    );
    (evals - base) as f64 / cycles as f64
}

fn report(transport: &str, n: usize, plain: &mut [Duration], fenced: &mut [Duration], extra: f64) {
    let (p50, f50) = (pct(plain, 0.5), pct(fenced, 0.5));
    let (p99, f99) = (pct(plain, 0.99), pct(fenced, 0.99));
    eprintln!(
        "{transport:5} N={n}: plain p50 {:>6.1} µs p99 {:>6.1} µs | fenced p50 {:>6.1} µs p99 {:>6.1} µs | fenced/plain p50 {:.2}x p99 {:.2}x | round-2 scripts per fenced cycle {extra:.3}",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        f50.as_secs_f64() * 1e6,
        f99.as_secs_f64() * 1e6,
        f50.as_secs_f64() / p50.as_secs_f64(),
        f99.as_secs_f64() / p99.as_secs_f64(),
    );
}

#[test]
#[ignore = "measurement, prints numbers"]
fn std_fenced_vs_plain_at_1_3_5_nodes() {
    use redlock_std::{Client, LockOptions};
    for n in [1, 3, 5] {
        let cluster = Cluster::start(n);
        let c = Client::builder()
            .nodes(cluster.urls())
            .ttl(Duration::from_secs(10))
            .build()
            .unwrap();
        let plain = LockOptions::new().single_attempt();
        let fenced = plain.fenced();
        for o in [&plain, &fenced] {
            for _ in 0..100 {
                c.lock_with("lat", o).unwrap().release().unwrap();
            }
        }
        let (mut ps, mut fs) = (Vec::new(), Vec::new());
        let mut extra = 0.0;
        for _ in 0..ROUNDS {
            for _ in 0..PER_ROUND {
                let t = Instant::now();
                c.lock_with("lat", &plain).unwrap().release().unwrap();
                ps.push(t.elapsed());
            }
            assert!(c.flush(Duration::from_secs(5)).unwrap());
            reset(&cluster);
            for _ in 0..PER_ROUND {
                let t = Instant::now();
                let lease = c.lock_with("lat", &fenced).unwrap();
                assert!(lease.fence().is_some());
                lease.release().unwrap();
                fs.push(t.elapsed());
            }
            assert!(c.flush(Duration::from_secs(5)).unwrap());
            extra += extra_per_cycle(&cluster, PER_ROUND) / ROUNDS as f64;
        }
        report("std", n, &mut ps, &mut fs, extra);
    }
}

#[test]
#[ignore = "measurement, prints numbers"]
fn tokio_fenced_vs_plain_at_1_3_5_nodes() {
    use redlock_tokio::{Client, LockOptions};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in [1, 3, 5] {
        let cluster = Cluster::start(n);
        rt.block_on(async {
            let c = Client::builder()
                .nodes(cluster.urls())
                .ttl(Duration::from_secs(10))
                .build()
                .unwrap();
            let plain = LockOptions::new().single_attempt();
            let fenced = plain.fenced();
            for o in [&plain, &fenced] {
                for _ in 0..100 {
                    c.lock_with("lat", o)
                        .await
                        .unwrap()
                        .release()
                        .await
                        .unwrap();
                }
            }
            let (mut ps, mut fs) = (Vec::new(), Vec::new());
            let mut extra = 0.0;
            for _ in 0..ROUNDS {
                for _ in 0..PER_ROUND {
                    let t = Instant::now();
                    c.lock_with("lat", &plain)
                        .await
                        .unwrap()
                        .release()
                        .await
                        .unwrap();
                    ps.push(t.elapsed());
                }
                assert!(c.flush(Duration::from_secs(5)).await.unwrap());
                reset(&cluster);
                for _ in 0..PER_ROUND {
                    let t = Instant::now();
                    let lease = c.lock_with("lat", &fenced).await.unwrap();
                    assert!(lease.fence().is_some());
                    lease.release().await.unwrap();
                    fs.push(t.elapsed());
                }
                assert!(c.flush(Duration::from_secs(5)).await.unwrap());
                extra += extra_per_cycle(&cluster, PER_ROUND) / ROUNDS as f64;
            }
            report("tokio", n, &mut ps, &mut fs, extra);
        });
    }
}
