//! `client_cycle IMPL K URLS [C]`: K acquire+release cycles of one client
//! (`std`, `tokio`, or the bench's quorum-for-both minimal client
//! `quorum-min`, on the same tokio runtime as `tokio`) against running
//! redis-server nodes
//! (`URLS`, comma separated), by C concurrent workers (default 1:
//! sequential) sharing the client; for the profile (`profile.sh`,
//! `PROFILE.md`).
//!
//! After a warm-up it measures exactly K cycles and prints, per cycle:
//! heap allocations (a counting global allocator: every `alloc`/`realloc`
//! of every thread, the bench's own included, which makes none in the
//! measured loop: resource names are fixed per worker), CPU time and
//! voluntary / involuntary context switches of the whole process
//! (`getrusage`), and the context switches of each thread, by name
//! (`/proc/self/task/*`). Run under `valgrind --tool=callgrind` with K and
//! 2K, the difference of the two totals over K is the instructions per
//! cycle; under `strace -c -f`, the same difference gives the system calls.
//!
//! Sequential workers are one thread (std) or one task (tokio on the
//! default multi-thread runtime, as a new user gets it; with the environment
//! variable `CLIENT_CYCLE_BLOCK_ON` set, the loop runs in `block_on` on the
//! main thread instead, as the bench's workloads run it); concurrent ones
//! are C threads or C tasks, each doing K / C cycles.

#![allow(unsafe_code)] // a counting global allocator and getrusage

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The bench's minimal client, the same source as `redlock-bench`'s.
#[allow(dead_code)] // the bench binary uses parts this one does not
#[path = "../baseline.rs"]
mod baseline;

const TTL: Duration = Duration::from_secs(10);
/// Longer than the default (5 % of the TTL): under valgrind on a loaded
/// machine a reply can take longer than 500 ms, and a timed-out run
/// profiles nothing. Only the timers' deadlines change, not the work.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);
const WARMUP: u64 = 50;

/// CPU time of the process (user, system), voluntary and involuntary
/// context switches.
fn rusage() -> (Duration, Duration, u64, u64) {
    // SAFETY: getrusage only writes the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    (
        tv(ru.ru_utime),
        tv(ru.ru_stime),
        ru.ru_nvcsw as u64,
        ru.ru_nivcsw as u64,
    )
}

/// Each live thread's (name, tid) -> voluntary + involuntary switches.
fn thread_switches() -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let field = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        out.insert(
            (name, tid),
            field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:"),
        );
    }
    out
}

enum Client {
    Std(redlock_std::Client),
    Tokio(tokio::runtime::Runtime, redlock_tokio::Client),
    QuorumMin(tokio::runtime::Runtime, std::sync::Arc<baseline::Baseline>),
}

/// The runtime `tokio` and `quorum-min` run on.
fn runtime() -> tokio::runtime::Runtime {
    // `CLIENT_CYCLE_CURRENT_THREAD`: a current-thread runtime
    // (everything on the main thread) instead of a multi-thread one.
    let mut builder = if std::env::var_os("CLIENT_CYCLE_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all();
    // `CLIENT_CYCLE_WORKERS=n`: that many runtime workers instead
    // of tokio's default (one per CPU the process may use).
    if let Some(w) = std::env::var("CLIENT_CYCLE_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|w| (1..=256).contains(w))
    {
        builder.worker_threads(w);
    }
    builder
        .build()
        .unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")))
}

fn connect(which: &str, urls: &[String]) -> Client {
    match which {
        "std" => Client::Std(
            redlock_std::Client::builder()
                .nodes(urls)
                .ttl(TTL)
                .node_timeout(NODE_TIMEOUT)
                .retry(redlock_std::RetryPolicy::none())
                .build()
                .unwrap_or_else(|e| fail(&format!("std client: {e}"))),
        ),
        "tokio" => {
            let rt = runtime();
            let client = rt
                .block_on(async {
                    redlock_tokio::Client::builder()
                        .nodes(urls)
                        .ttl(TTL)
                        .node_timeout(NODE_TIMEOUT)
                        .retry(redlock_tokio::RetryPolicy::none())
                        .build()
                })
                .unwrap_or_else(|e| fail(&format!("tokio client: {e}")));
            Client::Tokio(rt, client)
        }
        "quorum-min" => {
            let rt = runtime();
            let client = rt
                .block_on(baseline::Baseline::connect(urls, TTL, true))
                .unwrap_or_else(|e| fail(&format!("quorum-min client: {e}")));
            Client::QuorumMin(rt, std::sync::Arc::new(client))
        }
        other => fail(&format!("IMPL is std, tokio or quorum-min, not {other:?}")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("client_cycle: {message}");
    std::process::exit(2)
}

fn std_cycles(client: &redlock_std::Client, resource: &[u8], k: u64) {
    for _ in 0..k {
        match client.try_lock(resource) {
            Ok(lease) => {
                if let Err(e) = lease.release() {
                    fail(&format!("release: {e}"));
                }
            }
            Err(e) => fail(&format!("acquire: {e}")),
        }
    }
}

async fn tokio_cycles(client: &redlock_tokio::Client, resource: &[u8], k: u64) {
    for _ in 0..k {
        match client.try_lock(resource).await {
            Ok(lease) => {
                if let Err(e) = lease.release().await {
                    fail(&format!("release: {e}"));
                }
            }
            Err(e) => fail(&format!("acquire: {e}")),
        }
    }
}

async fn quorum_min_cycles(client: &baseline::Baseline, resource: &[u8], k: u64) {
    let resource = std::str::from_utf8(resource).unwrap_or_else(|_| fail("resource: not UTF-8"));
    for _ in 0..k {
        match client.try_lock(resource).await {
            Some(lease) => {
                client.release(&lease).await;
            }
            None => fail("quorum-min: acquire failed"),
        }
    }
}

/// Runs `cycles(name)` as one task per name; returns when all are done.
async fn in_tasks<F, Fut>(names: &[Vec<u8>], cycles: F)
where
    F: Fn(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        tasks.spawn(cycles(name.clone()));
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap_or_else(|e| fail(&format!("worker: {e}")));
    }
}

/// Runs `per_worker` cycles on each of `c` workers; returns when all are done.
fn run(client: &Client, c: usize, per_worker: u64, names: &[Vec<u8>]) {
    match client {
        Client::Std(client) => {
            if c == 1 {
                std_cycles(client, &names[0], per_worker);
            } else {
                std::thread::scope(|s| {
                    for name in names {
                        s.spawn(move || std_cycles(client, name, per_worker));
                    }
                });
            }
        }
        Client::Tokio(rt, client) => rt.block_on(async {
            if c == 1 && std::env::var_os("CLIENT_CYCLE_BLOCK_ON").is_some() {
                // The loop in `block_on` itself (on this thread, outside the
                // runtime's workers), as the bench's workloads run it.
                tokio_cycles(client, &names[0], per_worker).await;
            } else {
                // Tasks, as a user's code is (one when sequential): spawned,
                // so that they run on runtime workers like real tasks do.
                in_tasks(names, |name| {
                    let client = client.clone();
                    async move { tokio_cycles(&client, &name, per_worker).await }
                })
                .await;
            }
        }),
        Client::QuorumMin(rt, client) => rt.block_on(async {
            if c == 1 && std::env::var_os("CLIENT_CYCLE_BLOCK_ON").is_some() {
                quorum_min_cycles(client, &names[0], per_worker).await;
            } else {
                in_tasks(names, |name| {
                    let client = client.clone();
                    async move { quorum_min_cycles(&client, &name, per_worker).await }
                })
                .await;
            }
        }),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        fail("usage: client_cycle std|tokio|quorum-min K URL[,URL...] [C]");
    }
    let which = args[0].as_str();
    let k: u64 = args[1]
        .parse()
        .unwrap_or_else(|_| fail("K: a number of cycles"));
    let urls: Vec<String> = args[2].split(',').map(str::to_owned).collect();
    let c: usize = args
        .get(3)
        .map(|a| a.parse().unwrap_or_else(|_| fail("C: a number of workers")))
        .unwrap_or(1)
        .max(1);
    let per_worker = k.div_ceil(c as u64);
    let names: Vec<Vec<u8>> = (0..c)
        .map(|w| format!("bench:client_cycle:{which}:{w}").into_bytes())
        .collect();
    let client = connect(which, &urls);
    // Warm-up: connections up, scripts loaded, buffers grown.
    run(&client, c, WARMUP, &names);

    let threads_before = thread_switches();
    let (user0, sys0, vol0, invol0) = rusage();
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let start = Instant::now();
    run(&client, c, per_worker, &names);
    let wall = start.elapsed();
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs0;
    let (user1, sys1, vol1, invol1) = rusage();
    let threads_after = thread_switches();

    let cycles = per_worker * c as u64;
    let per = |x: f64| x / cycles as f64;
    // Written by hand so that a closed stdout (`| head -1`) ends quietly.
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "client_cycle impl={which} nodes={} workers={c} cycles={cycles} allocs={allocs} \
         allocs_per_cycle={:.3} user_us_per_cycle={:.2} sys_us_per_cycle={:.2} voluntary_csw_per_cycle={:.3} \
         involuntary_csw_per_cycle={:.3} wall_us_per_cycle={:.2}",
        urls.len(),
        per(allocs as f64),
        per((user1 - user0).as_secs_f64() * 1e6),
        per((sys1 - sys0).as_secs_f64() * 1e6),
        per((vol1 - vol0) as f64),
        per((invol1 - invol0) as f64),
        per(wall.as_secs_f64() * 1e6),
    );
    // Per thread, grouped by name (threads alive at both ends).
    let mut by_name: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for (key, after) in &threads_after {
        if let Some(before) = threads_before.get(key) {
            let e = by_name.entry(key.0.clone()).or_default();
            e.0 += 1;
            e.1 += after - before;
        }
    }
    for (name, (count, switches)) in by_name {
        let _ = writeln!(
            out,
            "  thread {name:?} x{count}: {:.3} context switches per cycle",
            per(switches as f64)
        );
    }
    // The client (and its runtime) lived until the figures were taken.
    drop(client);
}
