//! Random inputs in random order (valid replies, garbage, drops, reconnects,
//! time jumping forwards and backwards): the core never panics, every
//! operation ends with exactly one event, leases obey
//! `deadline = start + ttl - drift`, and state stays bounded.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use redlock_core::{Config, Event, Instant, Lease, NodeId, OpId, RetryPolicy, Token};
use support::{Rig, TestRng};

struct Dice(u64);
impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const REPLIES: &[&[u8]] = &[
    b"+OK\r\n",
    b"$-1\r\n",
    b":1\r\n",
    b":0\r\n",
    b"-ERR x\r\n",
    b"-NOSCRIPT x\r\n",
    b"-WRONGPASS x\r\n",
    b"*-1\r\n",
    b"*2\r\n:1\r\n:1\r\n",
    b"$3\r\nabc\r\n",
    b"\r\n",
    b"+",
    b"$99999999999\r\n",
    b":-5\r\n",
    b"-\r\n",
    b"%1\r\n",
];

#[test]
fn random_inputs_never_break_the_core() {
    for seed in 1..=300u64 {
        let mut d = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let n = 1 + d.below(7) as usize;
        let mut config = Config::new(Duration::from_millis(200 + d.below(2_000)));
        config.node_timeout = Duration::from_millis(1 + d.below(60));
        config.retry = RetryPolicy {
            count: d.below(3) as u32,
            delay: Duration::from_millis(d.below(50)),
            jitter: Duration::from_millis(d.below(50)),
            wait: None,
        };
        let mut rig: Rig<8, 32> = Rig::new(n, config);
        let mut open: BTreeSet<OpId> = BTreeSet::new();
        let mut ended: BTreeSet<OpId> = BTreeSet::new();
        let mut leases: Vec<Lease> = Vec::new();
        let mut rng = TestRng(seed);
        for _step in 0..400 {
            match d.below(12) {
                0 | 1 => {
                    let res = format!("r{}", d.below(3));
                    if let Ok(op) = rig.core.acquire(res.as_bytes(), &mut rng, rig.now) {
                        open.insert(op);
                    }
                }
                2 => {
                    if let Some(l) = leases
                        .get(d.below(leases.len().max(1) as u64) as usize)
                        .cloned()
                    {
                        if let Ok(op) = rig.core.extend(&l, l.ttl(), rig.now) {
                            open.insert(op);
                        }
                    }
                }
                3 => {
                    let res = format!("r{}", d.below(3));
                    if let Ok(op) = rig.core.release_token(
                        res.as_bytes(),
                        &Token::from_bytes(b"tok").unwrap(),
                        rig.now,
                    ) {
                        open.insert(op);
                    }
                }
                4 => {
                    if let Some(op) = open
                        .iter()
                        .nth(d.below(open.len().max(1) as u64) as usize)
                        .copied()
                    {
                        rig.core.cancel(op, rig.now);
                    }
                }
                5 | 6 => {
                    let node = NodeId(d.below(n as u64) as u8);
                    let r = REPLIES[d.below(REPLIES.len() as u64) as usize];
                    let cut = d.below(r.len() as u64 + 1) as usize;
                    rig.core.handle_input(node, &r[..cut], rig.now);
                    rig.core.handle_input(node, &r[cut..], rig.now);
                }
                7 => {
                    let mut junk = [0u8; 32];
                    for b in junk.iter_mut() {
                        *b = d.next() as u8;
                    }
                    let len = d.below(33) as usize;
                    rig.core
                        .handle_input(NodeId(d.below(n as u64) as u8), &junk[..len], rig.now);
                }
                8 => rig
                    .core
                    .handle_node_down(NodeId(d.below(n as u64 + 2) as u8), rig.now),
                9 => rig
                    .core
                    .handle_connected(NodeId(d.below(n as u64 + 2) as u8), rig.now),
                10 => {
                    // Time: forwards a little or a lot, or backwards.
                    let t = match d.below(4) {
                        0 => rig.now.saturating_sub(Duration::from_millis(d.below(500))),
                        1 => rig.now + Duration::from_millis(d.below(3_000)),
                        _ => rig.now + Duration::from_micros(d.below(20_000)),
                    };
                    rig.core.handle_timeout(t);
                    rig.now = rig.now.max(t);
                }
                _ => {
                    rig.drain();
                }
            }
            // Harvest events (drain also answers through the fake nodes).
            if d.below(3) == 0 {
                rig.drain();
            }
            for e in rig.events.drain(..) {
                if let Some(op) = e.op() {
                    assert!(ended.insert(op), "seed {seed}: two events for {op:?}");
                    open.remove(&op);
                }
                if let Event::Acquired { lease, .. } | Event::Extended { lease, .. } = &e {
                    let drift = Config::new(lease.ttl()).drift(lease.ttl());
                    assert_eq!(
                        lease.deadline(),
                        lease.start() + (lease.ttl() - drift),
                        "seed {seed}"
                    );
                    leases.push(lease.clone());
                    if leases.len() > 8 {
                        leases.remove(0);
                    }
                }
            }
            assert!(rig.core.operations_in_flight() <= 8);
        }
        // Heal: every open operation ends within bounded time.
        for _ in 0..10_000 {
            rig.drain();
            for e in rig.events.drain(..) {
                if let Some(op) = e.op() {
                    assert!(ended.insert(op), "seed {seed}: two events for {op:?}");
                    open.remove(&op);
                }
            }
            if open.is_empty() {
                break;
            }
            let next = rig
                .core
                .poll_timeout()
                .unwrap_or(rig.now + Duration::from_millis(1));
            rig.now = rig.now.max(next);
            rig.core.handle_timeout(rig.now);
        }
        assert!(
            open.is_empty(),
            "seed {seed}: operations never ended: {open:?}"
        );
        let _ = Instant::ZERO;
    }
}
