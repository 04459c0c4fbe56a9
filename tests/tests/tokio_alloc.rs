//! Proves that redlock-tokio's success paths (acquire + release, extend)
//! make zero heap allocations once warmed up, on real `redis-server` nodes,
//! with a counting global allocator that counts every thread of the process
//! (the runtime's workers, where the caller and the driver task run), like
//! `core/tests/no_alloc.rs` does for the core alone: in `block_on` and in a
//! task, on a multi-thread runtime and on a current-thread one; and with
//! many locks in flight at once on one client (commands run by their
//! callers and commands batched by the driver task, side by side).
//!
//! One test function only: the counter is process-wide, so nothing else
//! may run while it counts. Each measurement is the best of up to three
//! passes of 1,000 cycles (per task): a task moving to a runtime thread it
//! had not run on allocates that thread's random pool, once, and with
//! tasks at once, the number of reply cells and spare boxes out at the same
//! time may peak above the warm-up's, once. An allocation per cycle, or one
//! every few hundred cycles, shows in every pass.

#![allow(unsafe_code)] // a global allocator is unsafe by nature; test-only

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redlock_tests::Cluster;
use redlock_tokio::{Client, RetryPolicy};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
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

fn allocations() -> usize {
    ALLOCS.load(Ordering::SeqCst)
}

const NODES: usize = 5;
const WARM_UP: usize = 200;
const CYCLES: usize = 1000;
/// Measured passes at most (see [`measure`]).
const PASSES: usize = 3;

/// Allocations per acquire+release and per extend, after a warm-up.
async fn measure(client: Client, key: &'static str) -> (usize, usize) {
    for _ in 0..WARM_UP {
        let mut lease = client.try_lock(key).await.unwrap();
        lease.extend(Duration::from_secs(10)).await.unwrap();
        lease.release().await.unwrap();
    }
    assert!(client.flush(Duration::from_secs(5)).await.unwrap());

    // Up to PASSES passes of CYCLES each, until one allocates nothing: a
    // task may move to a runtime thread it never ran on during the warm-up,
    // and a thread's first acquire boxes that thread's random pool (once
    // per thread, `transport-tokio/src/rng.rs`). An allocation per cycle, or
    // one every few hundred cycles, shows in every pass.
    let mut cycle = usize::MAX;
    for _ in 0..PASSES {
        let before = allocations();
        for _ in 0..CYCLES {
            let lease = client.try_lock(key).await.unwrap();
            lease.release().await.unwrap();
        }
        cycle = cycle.min(allocations() - before);
        if cycle == 0 {
            break;
        }
    }

    let mut lease = client.try_lock(key).await.unwrap();
    let mut extend = usize::MAX;
    for _ in 0..PASSES {
        let before = allocations();
        for _ in 0..CYCLES {
            lease.extend(Duration::from_secs(10)).await.unwrap();
        }
        extend = extend.min(allocations() - before);
        if extend == 0 {
            break;
        }
    }
    lease.release().await.unwrap();
    (cycle, extend)
}

/// Tasks taking turns on their own keys, all at once on one client: each
/// warms up, then every task runs `CYCLES` cycles at the same time, in up to
/// `PASSES` passes until one allocates nothing (how many boxes and cells
/// are out at once peaks at random; past the peak, nothing is allocated:
/// traced with a backtrace per allocation, the first pass of 3 runs in 6
/// boxed one more resource set than the warm-up had, and no later pass
/// allocated).
/// The allocations counted are every thread's from a pass's start signal
/// until its last task is done. The tasks and this one meet through
/// atomics and `yield_now` (which allocate nothing; tokio's `Barrier`
/// does).
async fn measure_concurrent(client: Client, tasks: usize) -> usize {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let ready = Arc::new(AtomicUsize::new(0));
    // The pass the tasks may run (0: none yet).
    let pass = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicUsize::new(0));
    async fn until(cond: impl Fn() -> bool) {
        while !cond() {
            tokio::task::yield_now().await;
        }
    }
    let mut handles = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let client = client.clone();
        let (ready, pass, stop, finished) =
            (ready.clone(), pass.clone(), stop.clone(), finished.clone());
        let key = format!("alloc:tokio:many:{i}");
        handles.push(tokio::spawn(async move {
            let cycle = || async {
                let lease = client.try_lock(key.as_str()).await.unwrap();
                lease.release().await.unwrap();
            };
            for _ in 0..WARM_UP {
                cycle().await;
            }
            ready.fetch_add(1, Ordering::SeqCst);
            for p in 1..=PASSES {
                until(|| pass.load(Ordering::SeqCst) >= p || stop.load(Ordering::SeqCst)).await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                for _ in 0..CYCLES {
                    cycle().await;
                }
                finished.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    until(|| ready.load(Ordering::SeqCst) == tasks).await;
    let mut best = usize::MAX;
    for p in 1..=PASSES {
        let before = allocations();
        pass.store(p, Ordering::SeqCst);
        until(|| finished.load(Ordering::SeqCst) == p * tasks).await;
        best = best.min(allocations() - before);
        if best == 0 {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.await.unwrap();
    }
    best
}

#[test]
fn acquire_release_and_extend_allocate_nothing() {
    // The counter counts, on this thread and on another one (the driver
    // task may run on another worker): a test that cannot fail proves
    // nothing.
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 3]);
    assert!(allocations() > before, "the counter does not count");
    drop(v);
    let before = allocations();
    std::thread::spawn(|| drop(std::hint::black_box(vec![1u8; 3])))
        .join()
        .unwrap();
    let spawned = allocations() - before;
    assert!(spawned >= 2, "allocations of another thread not counted");

    let cluster = Cluster::start(NODES);
    let build = || {
        Client::builder()
            .nodes(cluster.urls())
            .ttl(Duration::from_secs(10))
            // Generous: a reply late under load would be a node failure, whose
            // error report allocates (and is not the success path).
            .node_timeout(Duration::from_secs(4))
            .retry(RetryPolicy::none())
            .build()
            .unwrap()
    };
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::with_capacity(4);
    // The caller in block_on, the driver on a worker.
    results.push((
        "multi-thread, block_on",
        multi.block_on(async { measure(build(), "alloc:tokio:1").await }),
    ));
    // The caller in a task of its own, beside the driver.
    let task = multi.block_on(async {
        let client = build();
        tokio::spawn(measure(client, "alloc:tokio:2"))
            .await
            .unwrap()
    });
    results.push(("multi-thread, task", task));
    results.push((
        "current-thread, block_on",
        current.block_on(async { measure(build(), "alloc:tokio:3").await }),
    ));
    let task = current.block_on(async {
        let client = build();
        tokio::spawn(measure(client, "alloc:tokio:4"))
            .await
            .unwrap()
    });
    results.push(("current-thread, task", task));
    // Many locks in flight: 4 (each caller runs its own commands) and 32
    // (most commands batched by the driver task).
    let mut concurrent = Vec::with_capacity(2);
    for tasks in [4, 32] {
        let during = multi.block_on(async { measure_concurrent(build(), tasks).await });
        concurrent.push((tasks, during));
    }
    for (tasks, during) in &concurrent {
        eprintln!(
            "redlock-tokio, {NODES} nodes, {tasks} tasks at once: {:.2} allocations per acquire+release",
            *during as f64 / (CYCLES * tasks) as f64
        );
    }
    for (name, (cycle, extend)) in &results {
        eprintln!(
            "redlock-tokio, {NODES} nodes, {name}: {:.2} allocations per acquire+release, {:.2} per extend",
            *cycle as f64 / CYCLES as f64,
            *extend as f64 / CYCLES as f64
        );
    }
    for (name, (cycle, extend)) in results {
        assert_eq!(
            cycle, 0,
            "{name}: allocations in {CYCLES} acquire+release cycles"
        );
        assert_eq!(extend, 0, "{name}: allocations in {CYCLES} extends");
    }
    for (tasks, during) in concurrent {
        assert_eq!(
            during, 0,
            "{tasks} tasks at once: allocations in {CYCLES} cycles each"
        );
    }
}
