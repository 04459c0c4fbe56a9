//! Proves the success paths of acquire, extend and release make zero heap
//! allocations, with a counting global allocator. The core allocates its
//! fixed tables once, in `Redlock::new`; nothing after that.

#![allow(unsafe_code)] // a global allocator is unsafe by nature; test-only

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use redlock_core::{Config, Event, Instant, NodeConfig, NodeId, Redlock};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.with(|c| c.get())
}

struct Rng(u64);
impl rand_core::TryRng for Rng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
        Ok(self.0)
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
        for b in d {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Rng {}

const NODES: usize = 5;

/// Sends every transmit's worth of replies back: `reply` per command.
/// Returns the op's event. Allocation-free itself (fixed buffers).
fn pump(core: &mut Redlock, reply: &[u8], now: Instant, buf: &mut [u8; 4096]) -> Option<Event> {
    let mut result = None;
    loop {
        let mut progressed = false;
        while let Some(t) = core.poll_transmit(buf) {
            progressed = true;
            // One reply per command in the batch ("*" starts each array).
            let commands = buf[..t.len].iter().filter(|b| **b == b'*').count();
            for _ in 0..commands {
                core.handle_input(t.node, reply, now);
            }
        }
        while let Some(e) = core.poll_event() {
            progressed = true;
            if e.op().is_some() {
                result = Some(e);
            }
        }
        let _ = core.poll_timeout();
        if !progressed {
            return result;
        }
    }
}

#[test]
fn success_paths_allocate_nothing() {
    // The counter itself works: a test that cannot fail proves nothing.
    let probe = allocations();
    let v = std::hint::black_box(vec![1u8; 3]);
    assert_eq!(allocations() - probe, 1);
    drop(v);
    let nodes = vec![NodeConfig::default(); NODES];
    let mut core: Redlock = Redlock::new(Config::new(Duration::from_secs(10)), &nodes).unwrap();
    let mut buf = [0u8; 4096];
    let mut rng = Rng(42);
    let mut now = Instant::ZERO;
    while core.poll_event().is_some() {}
    for n in 0..NODES {
        core.handle_connected(NodeId(n as u8), now);
    }
    // Handshake: two SCRIPT LOADs per node, answered with their SHA.
    pump(
        &mut core,
        b"$40\r\n0123456789012345678901234567890123456789\r\n",
        now,
        &mut buf,
    );

    let mut per_cycle = Vec::with_capacity(100);
    let before_all = allocations();
    for cycle in 0..100u64 {
        now = Instant::from_millis(cycle * 10);
        let before = allocations();
        let op = core.acquire(b"resource", &mut rng, now).unwrap();
        let lease = match pump(&mut core, b"+OK\r\n", now, &mut buf) {
            Some(Event::Acquired { op: o, lease }) if o == op => lease,
            other => panic!("{other:?}"),
        };
        let acquire = allocations() - before;

        let before = allocations();
        let op = core.extend(&lease, Duration::from_secs(10), now).unwrap();
        let lease = match pump(&mut core, b":1\r\n", now, &mut buf) {
            Some(Event::Extended { op: o, lease }) if o == op => lease,
            other => panic!("{other:?}"),
        };
        let extend = allocations() - before;

        let before = allocations();
        let op = core.release(&lease, now).unwrap();
        match pump(&mut core, b":1\r\n", now, &mut buf) {
            Some(Event::Released { op: o, report }) if o == op => {
                assert_eq!(report.released(), NODES)
            }
            other => panic!("{other:?}"),
        }
        let release = allocations() - before;
        per_cycle.push((acquire, extend, release));
    }
    let total = allocations() - before_all;
    // per_cycle itself was allocated before counting started.
    assert_eq!(
        total, 0,
        "allocations per (acquire, extend, release): {per_cycle:?}"
    );
}

#[test]
fn busy_path_allocates_nothing_either() {
    let nodes = vec![NodeConfig::default(); 3];
    let mut core: Redlock = Redlock::new(Config::new(Duration::from_secs(10)), &nodes).unwrap();
    let mut buf = [0u8; 4096];
    let mut rng = Rng(7);
    while core.poll_event().is_some() {}
    for n in 0..3 {
        core.handle_connected(NodeId(n), Instant::ZERO);
    }
    pump(
        &mut core,
        b"$40\r\n0123456789012345678901234567890123456789\r\n",
        Instant::ZERO,
        &mut buf,
    );
    let before = allocations();
    let op = core
        .acquire_with(
            b"r",
            Duration::from_secs(10),
            redlock_core::RetryPolicy::none(),
            &mut rng,
            Instant::ZERO,
        )
        .unwrap();
    match pump(&mut core, b"$-1\r\n", Instant::ZERO, &mut buf) {
        Some(Event::AcquireFailed { op: o, .. }) if o == op => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(allocations() - before, 0);
}
