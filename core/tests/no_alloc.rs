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
    // No handshake without credentials or a db: nothing to answer.
    pump(&mut core, b"+OK\r\n", now, &mut buf);

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
                // Decided at quorum; the other nodes' replies are read after.
                assert_eq!(report.verdict(), redlock_core::ReleaseVerdict::Released);
                assert!(report.released() >= core.quorum());
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
    pump(&mut core, b"+OK\r\n", Instant::ZERO, &mut buf);
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

/// Walks the RESP array commands in `buf` without allocating: calls `each`
/// with each command's second argument (the script body of an `EVAL`) and
/// its last one (a fenced acquire's proposal).
fn for_each_command(buf: &[u8], mut each: impl FnMut(&[u8], &[u8])) {
    fn number(buf: &[u8], at: &mut usize) -> usize {
        let mut n = 0;
        while buf[*at] != b'\r' {
            n = n * 10 + usize::from(buf[*at] - b'0');
            *at += 1;
        }
        *at += 2;
        n
    }
    let mut at = 0;
    while at < buf.len() {
        at += 1; // '*'
        let args = number(buf, &mut at);
        let (mut second, mut last): (&[u8], &[u8]) = (&[], &[]);
        for i in 0..args {
            at += 1; // '$'
            let len = number(buf, &mut at);
            if i == 1 {
                second = &buf[at..at + len];
            }
            last = &buf[at..at + len];
            at += len + 2;
        }
        each(second, last);
    }
}

/// Answers each command by what it is: a fenced round 1 reports a register
/// equal to the proposal (`ahead`: a second round is needed) or 0, round 2
/// confirms, release and extend succeed. Counts the round-2 writes.
fn pump_scripts(
    core: &mut Redlock,
    ahead: bool,
    now: Instant,
    buf: &mut [u8; 4096],
    round2: &mut usize,
) -> Option<Event> {
    let mut result = None;
    loop {
        let mut progressed = false;
        while let Some(t) = core.poll_transmit(buf) {
            progressed = true;
            let node = t.node;
            let mut replies = [[0u8; 24]; 16];
            let mut lens = [0usize; 16];
            let mut count = 0;
            for_each_command(&buf[..t.len], |second, last| {
                let reply = &mut replies[count];
                reply[0] = b':';
                let mut len = 1;
                if second == redlock_core::ACQUIRE_SCRIPT.as_bytes() && ahead {
                    reply[1..=last.len()].copy_from_slice(last);
                    len += last.len();
                } else if second == redlock_core::ACQUIRE_SCRIPT.as_bytes() {
                    reply[1] = b'0';
                    len += 1;
                } else {
                    if second == redlock_core::FENCE_WRITE_SCRIPT.as_bytes() {
                        *round2 += 1;
                    }
                    reply[1] = b'1';
                    len += 1;
                }
                reply[len..len + 2].copy_from_slice(b"\r\n");
                lens[count] = len + 2;
                count += 1;
            });
            for (r, len) in replies.iter().zip(lens).take(count) {
                core.handle_input(node, &r[..len], now);
            }
        }
        while let Some(e) = core.poll_event() {
            progressed = true;
            if e.op().is_some() {
                result = Some(e);
            }
        }
        if !progressed {
            return result;
        }
    }
}

#[test]
fn fenced_multi_resource_paths_allocate_nothing() {
    use redlock_core::{AcquireOptions, Fencing, ResourceSet, RetryPolicy};
    let nodes = vec![NodeConfig::default(); NODES];
    let mut core: Redlock = Redlock::new(Config::new(Duration::from_secs(10)), &nodes).unwrap();
    let mut buf = [0u8; 4096];
    let mut rng = Rng(9);
    while core.poll_event().is_some() {}
    for n in 0..NODES {
        core.handle_connected(NodeId(n as u8), Instant::ZERO);
    }
    let set = ResourceSet::new(&[b"orders".as_slice(), b"ledger", b"stock"]).unwrap();
    let options = AcquireOptions {
        ttl: Duration::from_secs(10),
        retry: RetryPolicy::none(),
        fencing: Fencing::On { unix_ms: 1 },
    };
    let mut round2 = 0;
    let before = allocations();
    for cycle in 0..50u64 {
        let now = Instant::from_millis(cycle * 10);
        // Odd cycles need a second round (a register ahead of the proposal).
        let ahead = cycle % 2 == 1;
        let op = core.acquire_set(&set, &options, &mut rng, now).unwrap();
        let lease = match pump_scripts(&mut core, ahead, now, &mut buf, &mut round2) {
            Some(Event::Acquired { op: o, lease }) if o == op => lease,
            other => panic!("{other:?}"),
        };
        assert!(lease.fence().is_some());
        let op = core.extend(&lease, Duration::from_secs(10), now).unwrap();
        assert!(matches!(
            pump_scripts(&mut core, ahead, now, &mut buf, &mut round2),
            Some(Event::Extended { op: o, .. }) if o == op
        ));
        let op = core.release(&lease, now).unwrap();
        assert!(matches!(
            pump_scripts(&mut core, ahead, now, &mut buf, &mut round2),
            Some(Event::Released { op: o, .. }) if o == op
        ));
    }
    assert_eq!(allocations() - before, 0);
    // Every odd cycle took a second round (counted nodes: at least a quorum).
    assert!(round2 >= 25 * core.quorum(), "{round2}");
}
