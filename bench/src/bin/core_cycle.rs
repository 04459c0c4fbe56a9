//! `core_cycle K [N]`: drives `redlock_core` by hand through K
//! acquire+release cycles against N in-memory "nodes" that give canned
//! replies, and reports the heap allocations made during those cycles.
//!
//! It is the core alone: no sockets, no clock, no runtime. `run.sh` runs it
//! under `valgrind --tool=callgrind` with K and 2K cycles; the difference of
//! the two instruction totals divided by K is the core's instructions per
//! cycle, with start-up, construction and the handshake cancelled out.
//!
//! The loop follows the drain contract a transport follows: after every
//! command or input, `poll_transmit` until `None`, `poll_event` until `None`,
//! then `poll_timeout`. Each node's reply is delivered as its own input, as
//! it would arrive from its own socket.

#![allow(unsafe_code)] // a counting global allocator is unsafe by nature

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redlock_core::{
    Config, Event, Instant, NodeConfig, NodeId, Redlock, RetryPolicy, MIN_TRANSMIT_BUF,
};

/// Counts every allocation and reallocation made by the process.
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

/// A deterministic stand-in for the transports' CSPRNG (an LCG: the cost of
/// a real CSPRNG belongs to the transport, not to the core).
struct Rng(u64);

impl rand_core::TryRng for Rng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Ok(self.0)
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
        for b in d {
            *b = (self.try_next_u64()? >> 56) as u8;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Rng {}

/// The command names in one transmit (a batch of RESP arrays of bulk strings).
fn command_names(mut bytes: &[u8]) -> Vec<String> {
    fn line(bytes: &[u8]) -> (&[u8], &[u8]) {
        let end = bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a RESP line");
        (&bytes[..end], &bytes[end + 2..])
    }
    let mut names = Vec::new();
    while !bytes.is_empty() {
        let (head, rest) = line(bytes);
        assert_eq!(head[0], b'*', "a command is an array");
        let argc: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
        bytes = rest;
        for i in 0..argc {
            let (head, rest) = line(bytes);
            let len: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
            if i == 0 {
                names.push(String::from_utf8_lossy(&rest[..len]).into_owned());
            }
            bytes = &rest[len + 2..];
        }
    }
    names
}

/// Drains the core as a transport would, answering each transmitted command
/// with `reply` (one reply per command, one input per node). Returns the
/// event ending an operation, if one came. When `check` is set, asserts that
/// every transmit holds exactly one `expect` command.
fn pump<const OPS: usize, const PIPE: usize>(
    core: &mut Redlock<OPS, PIPE>,
    reply: &[u8],
    now: Instant,
    buf: &mut [u8],
    check: Option<&str>,
) -> Option<Event> {
    let mut result = None;
    let mut owed = [0usize; redlock_core::MAX_NODES];
    loop {
        let mut progressed = false;
        while let Some(t) = core.poll_transmit(buf) {
            progressed = true;
            let commands = if let Some(expect) = check {
                let names = command_names(&buf[..t.len]);
                assert!(
                    names.iter().all(|n| n == expect),
                    "expected {expect}, got {names:?}"
                );
                names.len()
            } else {
                1
            };
            owed[t.node.index()] += commands;
        }
        while let Some(e) = core.poll_event() {
            progressed = true;
            if e.op().is_some() {
                result = Some(e);
            }
        }
        let _ = core.poll_timeout();
        for (node, owed) in owed.iter_mut().enumerate() {
            while *owed > 0 {
                *owed -= 1;
                progressed = true;
                core.handle_input(NodeId(node as u8), reply, now);
                while let Some(t) = core.poll_transmit(buf) {
                    // Nothing is expected here (a node's reply never causes a
                    // new command on the success path); count it anyway.
                    let _ = t;
                }
                while let Some(e) = core.poll_event() {
                    if e.op().is_some() {
                        result = Some(e);
                    }
                }
                let _ = core.poll_timeout();
            }
        }
        if !progressed {
            return result;
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cycles: u64 = args
        .next()
        .map(|a| a.parse().expect("K: a number of cycles"))
        .unwrap_or(100_000);
    let nodes: usize = args
        .next()
        .map(|a| a.parse().expect("N: a number of nodes"))
        .unwrap_or(5);
    // The core's capacities: the default, or those the transports pick
    // (`poll_timeout` scans every operation slot, so they matter).
    let sizes = args.next().unwrap_or_else(|| "default".into());
    let allocs = match sizes.as_str() {
        "default" => run::<64, 128>(cycles, nodes),
        "std" => run::<256, 512>(cycles, nodes),
        "tokio" => run::<1024, 4096>(cycles, nodes),
        other => panic!("sizes: default, std or tokio, not {other:?}"),
    };
    // A machine-readable line for run.sh and the report.
    println!(
        "core_cycle nodes={nodes} sizes={sizes} cycles={cycles} allocs={allocs} allocs_per_cycle={:.4}",
        allocs as f64 / cycles.max(1) as f64
    );
}

/// Runs `cycles` checked cycles on a `Redlock<OPS, PIPE>`; returns the
/// allocations made by all but the first (warm-up) cycle.
fn run<const OPS: usize, const PIPE: usize>(cycles: u64, nodes: usize) -> u64 {
    let node_configs = vec![NodeConfig::default(); nodes];
    let mut config = Config::new(Duration::from_secs(10));
    config.retry = RetryPolicy::none();
    let mut core: Redlock<OPS, PIPE> = Redlock::new(config, &node_configs).expect("a valid config");
    let mut buf = vec![0u8; MIN_TRANSMIT_BUF * 4];
    let mut rng = Rng(42);
    let mut now = Instant::ZERO;
    while core.poll_event().is_some() {}
    for n in 0..nodes {
        core.handle_connected(NodeId(n as u8), now);
    }
    // No handshake without credentials or a db (scripts go by body).
    let _ = pump(&mut core, b"+OK\r\n", now, &mut buf, None);

    let resource: &[u8] = b"bench:core_cycle";
    let mut allocs = 0;
    for cycle in 0..=cycles {
        // Cycle 0 is a checked warm-up, outside the counts.
        let check = cycle == 0;
        let before = ALLOCS.load(Ordering::Relaxed);
        now = Instant::from_micros(cycle * 1_000);
        let op = core
            .acquire(resource, &mut rng, now)
            .expect("acquire starts");
        let lease = match pump(&mut core, b"+OK\r\n", now, &mut buf, check.then_some("SET")) {
            Some(Event::Acquired { op: o, lease }) if o == op => lease,
            other => panic!("cycle {cycle}: expected Acquired, got {other:?}"),
        };
        now = Instant::from_micros(cycle * 1_000 + 500);
        let op = core.release(&lease, now).expect("release starts");
        match pump(&mut core, b":1\r\n", now, &mut buf, check.then_some("EVAL")) {
            // Decided at quorum; every node's reply is still read.
            Some(Event::Released { op: o, report }) if o == op => {
                assert!(
                    report.released() >= core.quorum(),
                    "cycle {cycle}: released on a quorum"
                )
            }
            other => panic!("cycle {cycle}: expected Released, got {other:?}"),
        }
        if !check {
            allocs += ALLOCS.load(Ordering::Relaxed) - before;
        }
    }
    allocs
}
