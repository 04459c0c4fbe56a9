//! Proves that redlock-std's success paths (acquire + release, extend) make
//! zero heap allocations once warmed up, on real `redis-server` nodes, with
//! a counting global allocator that counts every thread of the process (the
//! caller's and the client's driver thread), like `core/tests/no_alloc.rs`
//! does for the core alone.
//!
//! One test function only: the counter is process-wide, so nothing else
//! may run while it counts.

#![allow(unsafe_code)] // a global allocator is unsafe by nature; test-only

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redlock_std::{Client, RetryPolicy};
use redlock_tests::Cluster;

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

#[test]
fn acquire_release_and_extend_allocate_nothing() {
    // The counter counts, on this thread and on another one (the driver
    // is another thread): a test that cannot fail proves nothing.
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
    let client = Client::builder()
        .nodes(cluster.urls())
        .ttl(Duration::from_secs(10))
        // Generous: a reply late under load would be a node failure, whose
        // error report allocates (and is not the success path).
        .node_timeout(Duration::from_secs(4))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    // Warm up: connections, buffers, tables reach their steady size.
    for _ in 0..WARM_UP {
        let mut lease = client.try_lock("alloc:std").unwrap();
        lease.extend(Duration::from_secs(10)).unwrap();
        lease.release().unwrap();
    }
    assert!(client.flush(Duration::from_secs(5)).unwrap());

    let before = allocations();
    for _ in 0..CYCLES {
        let lease = client.try_lock("alloc:std").unwrap();
        lease.release().unwrap();
    }
    let cycle = allocations() - before;

    let mut lease = client.try_lock("alloc:std").unwrap();
    let before = allocations();
    for _ in 0..CYCLES {
        lease.extend(Duration::from_secs(10)).unwrap();
    }
    let extend = allocations() - before;
    lease.release().unwrap();

    eprintln!(
        "redlock-std, {NODES} nodes: {:.2} allocations per acquire+release, {:.2} per extend",
        cycle as f64 / CYCLES as f64,
        extend as f64 / CYCLES as f64
    );
    assert_eq!(cycle, 0, "allocations in {CYCLES} acquire+release cycles");
    assert_eq!(extend, 0, "allocations in {CYCLES} extends");
}
