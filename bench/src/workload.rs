//! The workloads, run identically for every implementation: blocking ones on
//! OS threads, async ones as tasks on one shared multi-thread tokio runtime.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::runtime::Runtime;

use crate::clients::{Async, Blocking, Impl, Outcome};

/// Which workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Workload {
    /// Sequential acquire+release of a fresh resource, one at a time.
    Sequential,
    /// This many workers on one client, each cycling fresh resources.
    Concurrent(usize),
    /// This many clients (each its own connections) on one resource.
    Contention(usize),
}

impl Workload {
    pub(crate) fn label(self) -> String {
        match self {
            Workload::Sequential => "sequential".into(),
            Workload::Concurrent(k) => format!("{k} concurrent"),
            Workload::Contention(c) => format!("contention {c}"),
        }
    }
}

/// One measurement.
#[derive(Clone, Debug, Default)]
pub(crate) struct Measurement {
    /// Successful cycles (acquisitions, for contention) per second.
    pub(crate) rate: f64,
    /// Sequential only: cycle latency percentiles, microseconds.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Sequential only, for the log: p90 and p99.9.
    pub(crate) p90_us: f64,
    pub(crate) p999_us: f64,
    /// Sequential only: CPU time of this process (user + system, all
    /// threads) per cycle, microseconds; and context switches per cycle.
    pub(crate) cpu_us: f64,
    pub(crate) switches: f64,
    /// Successful cycles.
    pub(crate) cycles: u64,
    /// Failed cycles (errors; for uncontended workloads also "busy").
    pub(crate) failures: u64,
    /// Contention only: times a client entered the critical section while
    /// another was inside. Must be 0.
    pub(crate) overlaps: u64,
    /// The first failure's message, for the report.
    pub(crate) first_error: Option<String>,
}

/// How long and with which names one measurement runs.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) duration: Duration,
    /// Unique prefix for this measurement's keys.
    pub(crate) prefix: String,
    /// node-redlock's driver script.
    pub(crate) node_driver: std::path::PathBuf,
}

/// Warm-up cycles before timing (connections, script loads, caches).
const WARMUP: usize = 20;

/// Counts successes, failures and overlaps from many workers.
#[derive(Debug, Default)]
struct Tally {
    cycles: AtomicU64,
    failures: AtomicU64,
    overlaps: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn record(&self, outcome: Outcome, busy_is_failure: bool) -> bool {
        match outcome {
            Outcome::Held => {
                self.cycles.fetch_add(1, Ordering::Relaxed);
                true
            }
            Outcome::Busy if !busy_is_failure => false,
            Outcome::Busy => {
                self.fail("busy on an uncontended resource".into());
                false
            }
            Outcome::Failed(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn fail(&self, e: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(e);
    }

    fn finish(self, elapsed: Duration) -> Measurement {
        let cycles = self.cycles.load(Ordering::Relaxed);
        Measurement {
            rate: cycles as f64 / elapsed.as_secs_f64(),
            cycles,
            failures: self.failures.load(Ordering::Relaxed),
            overlaps: self.overlaps.load(Ordering::Relaxed),
            first_error: self
                .first_error
                .into_inner()
                .unwrap_or_else(|p| p.into_inner()),
            ..Measurement::default()
        }
    }
}

/// The critical section of the contention workload: enter (counting an
/// overlap if someone else is inside), hold for a few microseconds, leave.
fn critical(holders: &AtomicU32, tally: &Tally) {
    if holders.fetch_add(1, Ordering::SeqCst) != 0 {
        tally.overlaps.fetch_add(1, Ordering::Relaxed);
    }
    let until = Instant::now() + Duration::from_micros(20);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    holders.fetch_sub(1, Ordering::SeqCst);
}

/// The pause after a busy attempt in the contention workload.
fn retry_pause() -> Duration {
    Duration::from_micros(rand::rng().random_range(500..1500))
}

/// CPU time (user + system) of the whole process, and its context switches.
fn usage() -> (Duration, u64) {
    // SAFETY: getrusage only writes the struct it is given.
    #[allow(unsafe_code)]
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    (
        tv(ru.ru_utime) + tv(ru.ru_stime),
        (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
    )
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1_000.0
}

/// Runs one workload for one implementation against `urls`.
pub(crate) fn run(
    rt: &Runtime,
    which: Impl,
    workload: Workload,
    urls: &[String],
    plan: &Plan,
) -> Result<Measurement, String> {
    match (which, workload) {
        (Impl::NodeRedlock, _) => crate::node::run(&plan.node_driver, workload, urls, plan),
        (Impl::LockstepMin, Workload::Concurrent(k)) => {
            let before = usage();
            crate::lockstep::run(urls, k, crate::clients::TTL, plan.duration, &plan.prefix)
                .map(|m| with_usage(m, before))
        }
        (Impl::LockstepMin, _) => Err("lockstep-min runs the concurrency workloads only".into()),
        _ if which.is_async() => rt.block_on(run_async(which, workload, urls, plan)),
        _ => run_blocking(which, workload, urls, plan),
    }
}

fn run_blocking(
    which: Impl,
    workload: Workload,
    urls: &[String],
    plan: &Plan,
) -> Result<Measurement, String> {
    let prefix = &plan.prefix;
    match workload {
        Workload::Sequential => {
            let client = Blocking::connect(which, urls)?;
            for i in 0..WARMUP {
                if let Outcome::Failed(e) = client.cycle(&format!("{prefix}:w{i}"), || {}) {
                    return Err(format!("warm-up: {e}"));
                }
            }
            let tally = Tally::default();
            let mut latencies = Vec::with_capacity(100_000);
            let before = usage();
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < plan.duration {
                let name = format!("{prefix}:{i}");
                let t = Instant::now();
                let outcome = client.cycle(&name, || {});
                let dt = t.elapsed();
                if tally.record(outcome, true) {
                    latencies.push(dt.as_nanos() as u64);
                }
                i += 1;
            }
            Ok(sequential_result(tally, latencies, start.elapsed(), before))
        }
        Workload::Concurrent(k) => {
            let client = Blocking::connect(which, urls)?;
            for i in 0..WARMUP {
                if let Outcome::Failed(e) = client.cycle(&format!("{prefix}:w{i}"), || {}) {
                    return Err(format!("warm-up: {e}"));
                }
            }
            let tally = Tally::default();
            let barrier = Barrier::new(k + 1);
            let before = usage();
            let started = std::thread::scope(|s| {
                for w in 0..k {
                    let (client, tally, barrier) = (&client, &tally, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        let mut i = 0u64;
                        while start.elapsed() < plan.duration {
                            let outcome = client.cycle(&format!("{prefix}:{w}:{i}"), || {});
                            tally.record(outcome, true);
                            i += 1;
                        }
                    });
                }
                barrier.wait();
                Instant::now()
            });
            // The scope joined every worker: the clock started when they did
            // and stops after the last one finished its last cycle.
            let elapsed = started.elapsed();
            Ok(with_usage(tally.finish(elapsed), before))
        }
        Workload::Contention(c) => {
            let clients = (0..c)
                .map(|_| Blocking::connect(which, urls))
                .collect::<Result<Vec<_>, _>>()?;
            for (n, client) in clients.iter().enumerate() {
                for i in 0..WARMUP / 4 {
                    if let Outcome::Failed(e) = client.cycle(&format!("{prefix}:w{n}:{i}"), || {}) {
                        return Err(format!("warm-up: {e}"));
                    }
                }
            }
            let resource = format!("{prefix}:contended");
            let tally = Tally::default();
            let holders = AtomicU32::new(0);
            let barrier = Barrier::new(c + 1);
            let started = std::thread::scope(|s| {
                for client in &clients {
                    let (tally, holders, barrier, resource) =
                        (&tally, &holders, &barrier, &resource);
                    s.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        while start.elapsed() < plan.duration {
                            let outcome = client.cycle(resource, || critical(holders, tally));
                            if !tally.record(outcome, false) {
                                std::thread::sleep(retry_pause());
                            }
                        }
                    });
                }
                barrier.wait();
                Instant::now()
            });
            Ok(tally.finish(started.elapsed()))
        }
    }
}

async fn run_async(
    which: Impl,
    workload: Workload,
    urls: &[String],
    plan: &Plan,
) -> Result<Measurement, String> {
    let prefix = plan.prefix.clone();
    let duration = plan.duration;
    match workload {
        Workload::Sequential => {
            let client = Async::connect(which, urls).await?;
            for i in 0..WARMUP {
                if let Outcome::Failed(e) = client.cycle(&format!("{prefix}:w{i}"), || {}).await {
                    return Err(format!("warm-up: {e}"));
                }
            }
            let tally = Tally::default();
            let mut latencies = Vec::with_capacity(100_000);
            let before = usage();
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < duration {
                let name = format!("{prefix}:{i}");
                let t = Instant::now();
                let outcome = client.cycle(&name, || {}).await;
                let dt = t.elapsed();
                if tally.record(outcome, true) {
                    latencies.push(dt.as_nanos() as u64);
                }
                i += 1;
            }
            Ok(sequential_result(tally, latencies, start.elapsed(), before))
        }
        Workload::Concurrent(k) => {
            let client = Async::connect(which, urls).await?;
            for i in 0..WARMUP {
                if let Outcome::Failed(e) = client.cycle(&format!("{prefix}:w{i}"), || {}).await {
                    return Err(format!("warm-up: {e}"));
                }
            }
            let tally = Arc::new(Tally::default());
            let go = Arc::new(tokio::sync::Notify::new());
            let ready = Arc::new(AtomicBool::new(false));
            let mut tasks = tokio::task::JoinSet::new();
            for w in 0..k {
                let (client, tally, prefix) = (client.clone(), tally.clone(), prefix.clone());
                let (go, ready) = (go.clone(), ready.clone());
                tasks.spawn(async move {
                    let notified = go.notified();
                    if !ready.load(Ordering::SeqCst) {
                        notified.await;
                    }
                    let start = Instant::now();
                    let mut i = 0u64;
                    while start.elapsed() < duration {
                        let outcome = client.cycle(&format!("{prefix}:{w}:{i}"), || {}).await;
                        tally.record(outcome, true);
                        i += 1;
                    }
                });
            }
            tokio::task::yield_now().await;
            let before = usage();
            let start = Instant::now();
            ready.store(true, Ordering::SeqCst);
            go.notify_waiters();
            while let Some(r) = tasks.join_next().await {
                r.map_err(|e| format!("worker panicked: {e}"))?;
            }
            let elapsed = start.elapsed();
            let tally = Arc::try_unwrap(tally).map_err(|_| "tally still shared".to_string())?;
            Ok(with_usage(tally.finish(elapsed), before))
        }
        Workload::Contention(c) => {
            let mut clients = Vec::new();
            for n in 0..c {
                let client = Async::connect(which, urls).await?;
                for i in 0..WARMUP / 4 {
                    let name = format!("{prefix}:w{n}:{i}");
                    if let Outcome::Failed(e) = client.cycle(&name, || {}).await {
                        return Err(format!("warm-up: {e}"));
                    }
                }
                clients.push(client);
            }
            let resource = Arc::new(format!("{prefix}:contended"));
            let tally = Arc::new(Tally::default());
            let holders = Arc::new(AtomicU32::new(0));
            let start = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for client in clients {
                let (tally, holders, resource) = (tally.clone(), holders.clone(), resource.clone());
                tasks.spawn(async move {
                    while start.elapsed() < duration {
                        let outcome = client.cycle(&resource, || critical(&holders, &tally)).await;
                        if !tally.record(outcome, false) {
                            tokio::time::sleep(retry_pause()).await;
                        }
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.map_err(|e| format!("worker panicked: {e}"))?;
            }
            let elapsed = start.elapsed();
            let tally = Arc::try_unwrap(tally).map_err(|_| "tally still shared".to_string())?;
            Ok(tally.finish(elapsed))
        }
    }
}

/// Adds the process's CPU time and context switches per successful cycle
/// since `before` (and so the CPU's busy share over the measurement).
fn with_usage(mut m: Measurement, before: (Duration, u64)) -> Measurement {
    let after = usage();
    let n = (m.cycles as f64).max(1.0);
    m.cpu_us = (after.0 - before.0).as_secs_f64() * 1e6 / n;
    m.switches = (after.1 - before.1) as f64 / n;
    m
}

fn sequential_result(
    tally: Tally,
    mut latencies: Vec<u64>,
    elapsed: Duration,
    before: (Duration, u64),
) -> Measurement {
    let after = usage();
    latencies.sort_unstable();
    let mut m = tally.finish(elapsed);
    let n = (latencies.len() as f64).max(1.0);
    m.cpu_us = (after.0 - before.0).as_secs_f64() * 1e6 / n;
    m.switches = (after.1 - before.1) as f64 / n;
    m.p50_us = percentile(&latencies, 0.50);
    m.p99_us = percentile(&latencies, 0.99);
    m.p90_us = percentile(&latencies, 0.90);
    m.p999_us = percentile(&latencies, 0.999);
    m
}
