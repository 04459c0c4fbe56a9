//! Fuzz entry points (feature `__fuzz`), shared by `fuzz/` targets and the
//! stable corpus-replay tests (`sim/tests/fuzz_replay.rs`).
//!
//! Each function takes the raw fuzzer bytes and panics only when the core
//! breaks one of the invariants of DESIGN.md:
//! 1. acquired only with OK replies, to this attempt's SETs, from a quorum
//!    of distinct nodes;
//! 2. a lease's deadline is never later than `t0 + ttl - drift`;
//! 3. after a failed attempt, every connected node that may hold the key
//!    (its SET was sent and not refused) is sent a release;
//! 4. no input panics, loops or grows state without bound.

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

use crate::{Config, Event, Instant, NodeConfig, NodeId, Redlock, Token, RELEASE_SHA};

type FuzzCore = Redlock<8, 16>;

/// Upper bound on outputs drained after one input: more means a loop.
const DRAIN_BOUND: usize = 10_000;

/// A deterministic, non-secret RNG for tokens in fuzzing.
struct CountingRng(u64);

impl rand_core::TryRng for CountingRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Ok(self.0 >> 11)
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
        for b in d {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for CountingRng {}

fn drain(
    core: &mut FuzzCore,
    buf: &mut [u8],
    mut on_tx: impl FnMut(NodeId, &[u8]),
    events: &mut Vec<Event>,
) {
    let mut n = 0;
    while let Some(t) = core.poll_transmit(buf) {
        on_tx(t.node, &buf[..t.len]);
        n += 1;
        assert!(n < DRAIN_BOUND, "poll_transmit never ends");
    }
    while let Some(e) = core.poll_event() {
        events.push(e);
        n += 1;
        assert!(n < 2 * DRAIN_BOUND, "poll_event never ends");
    }
    let _ = core.poll_timeout();
    assert!(core.operations_in_flight() <= 8);
}

/// Reply bytes into node links at any split: connect a 1..=5-node core,
/// start an acquire, an extend and a release, then feed the remaining
/// input as reply bytes, cut into arbitrary chunks for arbitrary nodes,
/// with time passing. Nothing may panic, loop, or exceed its capacities.
///
/// ```
/// redlock_core::fuzzing::replies(b"\x02+OK\r\n:1\r\n$-1\r\n-ERR x\r\n*3\r\n");
/// ```
pub fn replies(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let n = usize::from(u.int_in_range(1u8..=5).unwrap_or(3));
    let nodes: Vec<NodeConfig> = (0..n).map(|_| NodeConfig::default()).collect();
    let Ok(mut core) = FuzzCore::new(Config::new(Duration::from_secs(1)), &nodes) else {
        return;
    };
    let mut buf = [0u8; crate::MIN_TRANSMIT_BUF];
    let mut events = Vec::new();
    let mut now = Instant::from_millis(1);
    drain(&mut core, &mut buf, |_, _| {}, &mut events);
    for i in 0..n {
        core.handle_connected(NodeId(i as u8), now);
    }
    let mut rng = CountingRng(7);
    let _ = core.acquire(b"r", &mut rng, now);
    let token = Token::from_bytes(b"0123456789abcdef").unwrap_or_else(|| Token::generate(&mut rng));
    let _ = core.extend_token(b"r", &token, Duration::from_secs(1), now);
    let _ = core.release_token(b"r", &token, now);
    drain(&mut core, &mut buf, |_, _| {}, &mut events);
    while !u.is_empty() {
        let node = NodeId(u.int_in_range(0..=(n as u8 - 1)).unwrap_or(0));
        let len = u.int_in_range(0usize..=64).unwrap_or(0);
        let chunk = u.bytes(len.min(u.len())).unwrap_or(&[]);
        core.handle_input(node, chunk, now);
        drain(&mut core, &mut buf, |_, _| {}, &mut events);
        if u.ratio(1u8, 4).unwrap_or(false) {
            now = now + Duration::from_millis(u64::from(u.int_in_range(0u16..=2000).unwrap_or(0)));
            core.handle_timeout(now);
            drain(&mut core, &mut buf, |_, _| {}, &mut events);
        }
        for e in events.drain(..) {
            match e {
                Event::Connect { node } => core.handle_connected(node, now),
                Event::Acquired { lease, .. } => {
                    // Invariant 2 for whatever the bytes made of it.
                    let drift = core.config().drift(lease.ttl());
                    assert!(lease.deadline() <= lease.start() + lease.ttl().saturating_sub(drift));
                }
                _ => {}
            }
        }
        drain(&mut core, &mut buf, |_, _| {}, &mut events);
        events.clear();
    }
}

/// What the fuzzer does next in [`ops`].
#[derive(Debug, Clone)]
enum Step {
    /// Start an acquire (resource `r` or `s`).
    Acquire { second: bool, ttl_ms: u16 },
    /// Extend the last lease.
    Extend,
    /// Release the last lease.
    Release,
    /// Cancel the last acquire.
    Cancel,
    /// Answer the oldest unanswered request on a node.
    Reply {
        node: u8,
        kind: ReplyKind,
        split: u8,
    },
    /// Time passes, then `handle_timeout`.
    Advance { ms: u16 },
    /// The transport reports the node down.
    Down { node: u8 },
    /// Raw bytes on a node's connection.
    Garbage { node: u8, bytes: Vec<u8> },
}

#[derive(Debug, Clone, Copy)]
enum ReplyKind {
    /// What Redis says on success (`+OK`, `:1`, the SHA).
    Yes,
    /// A refusal (`$-1`, `:0`).
    No,
    /// `-NOSCRIPT`.
    NoScript,
    /// `-ERR`.
    Err,
    /// `-WRONGPASS`.
    Auth,
}

// Hand-written rather than derived: the derive expands to `::std` paths,
// and this crate is `no_std`.
impl<'a> Arbitrary<'a> for ReplyKind {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=9)? {
            0..=4 => ReplyKind::Yes,
            5..=6 => ReplyKind::No,
            7 => ReplyKind::NoScript,
            8 => ReplyKind::Err,
            _ => ReplyKind::Auth,
        })
    }
}

impl<'a> Arbitrary<'a> for Step {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=15)? {
            0 | 1 => Step::Acquire {
                second: u.arbitrary()?,
                ttl_ms: u.arbitrary()?,
            },
            2 => Step::Extend,
            3 => Step::Release,
            4 => Step::Cancel,
            5..=11 => Step::Reply {
                node: u.arbitrary()?,
                kind: u.arbitrary()?,
                split: u.arbitrary()?,
            },
            12 | 13 => Step::Advance { ms: u.arbitrary()? },
            14 => Step::Down {
                node: u.arbitrary()?,
            },
            _ => {
                let node = u.arbitrary()?;
                let len = u.int_in_range(0usize..=32)?;
                Step::Garbage {
                    node,
                    bytes: u.bytes(len)?.to_vec(),
                }
            }
        })
    }
}

/// A request the core wrote, as the harness parsed it.
#[derive(Debug, Clone)]
struct Req {
    name: Vec<u8>,
    key: Vec<u8>,
    token: Vec<u8>,
    release: bool,
    sent_at: Instant,
}

#[derive(Default, Debug)]
struct NodeModel {
    connected: bool,
    fifo: alloc::collections::VecDeque<Req>,
    /// (key, token, SET sent at, answered OK?) of SETs not released since.
    maybe_held: Vec<(Vec<u8>, Vec<u8>, Instant, bool)>,
    /// (token, SET sent at) of SETs answered OK.
    ok: Vec<(Vec<u8>, Instant)>,
    /// Raw bytes were injected: the model no longer knows what this node
    /// answered until the link resets.
    wild: bool,
}

impl NodeModel {
    fn reset(&mut self, connected: bool) {
        self.connected = connected;
        self.fifo.clear();
        self.maybe_held.clear();
        self.wild = false;
    }
}

fn parse_requests(bytes: &[u8], now: Instant, out: &mut Vec<Req>) {
    let mut rest = bytes;
    while let Ok(Some((frame, used))) = decode(rest) {
        rest = &rest[used..];
        let OwnedFrame::Array(items) = frame else {
            panic!("the core wrote a non-array command");
        };
        let args: Vec<Vec<u8>> = items
            .into_iter()
            .map(|f| match f {
                OwnedFrame::BulkString(b) => b,
                other => panic!("the core wrote a non-bulk argument: {other:?}"),
            })
            .collect();
        let name = args
            .first()
            .cloned()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let (key, token, release) = match name.as_slice() {
            b"SET" => (args[1].clone(), args[2].clone(), false),
            b"EVALSHA" | b"EVAL" => {
                let release = args[1] == RELEASE_SHA.as_bytes()
                    || args[1] == crate::RELEASE_SCRIPT.as_bytes();
                (args[3].clone(), args[4].clone(), release)
            }
            _ => (Vec::new(), Vec::new(), false),
        };
        out.push(Req {
            name,
            key,
            token,
            release,
            sent_at: now,
        });
        if rest.is_empty() {
            break;
        }
    }
    assert!(
        rest.is_empty(),
        "the core wrote an incomplete or invalid command"
    );
}

/// Structured sequences of operations, replies, timeouts and link events,
/// checking DESIGN.md's invariants 1-4 against a model of what each node
/// was sent and answered.
///
/// ```
/// redlock_core::fuzzing::ops(&[0, 0, 1, 4, 0, 0, 0, 4, 1, 0, 0, 4, 2, 0, 0]);
/// ```
pub fn ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let n = usize::from(u.int_in_range(1u8..=5).unwrap_or(3));
    let nodes: Vec<NodeConfig> = (0..n).map(|_| NodeConfig::default()).collect();
    let config = Config::new(Duration::from_millis(1000));
    let Ok(mut core) = FuzzCore::new(config, &nodes) else {
        return;
    };
    let quorum = core.quorum();
    let mut model: Vec<NodeModel> = (0..n).map(|_| NodeModel::default()).collect();
    let mut buf = [0u8; crate::MIN_TRANSMIT_BUF];
    let mut events = Vec::new();
    let mut now = Instant::from_millis(1);
    let mut rng = CountingRng(u.arbitrary().unwrap_or(1));
    let mut last_lease = None;
    let mut last_acquire = None;
    // One acquire at a time, so that its token is known.
    let mut acquiring: Option<crate::OpId> = None;
    let mut acquiring_token: Option<Vec<u8>> = None;
    let mut steps = 0;
    loop {
        // Drain, updating the model with what was written.
        let mut sent: Vec<(usize, Vec<Req>)> = Vec::new();
        drain(
            &mut core,
            &mut buf,
            |node, bytes| {
                let mut reqs = Vec::new();
                parse_requests(bytes, now, &mut reqs);
                sent.push((node.index(), reqs));
            },
            &mut events,
        );
        for (node, reqs) in sent {
            let m = &mut model[node];
            assert!(
                m.connected,
                "the core wrote to node {node}, which is not connected"
            );
            for r in reqs {
                if r.name == b"SET" {
                    if acquiring.is_some() && acquiring_token.is_none() {
                        acquiring_token = Some(r.token.clone());
                    }
                    // Invariant 3 (retries): no new SET over an unreleased one.
                    assert!(
                        m.wild || !m.maybe_held.iter().any(|(k, t, _, _)| *k == r.key && *t == r.token),
                        "a new SET for the same token on node {node} without a release of the previous attempt"
                    );
                    m.maybe_held
                        .push((r.key.clone(), r.token.clone(), r.sent_at, false));
                }
                if r.release {
                    m.maybe_held
                        .retain(|(k, t, _, _)| !(*k == r.key && *t == r.token));
                }
                m.fifo.push_back(r);
            }
        }
        let mut reconnect = Vec::new();
        for e in events.drain(..) {
            match e {
                Event::Connect { node } => reconnect.push(node),
                Event::Disconnect { node, .. } => model[node.index()].reset(false),
                Event::Acquired { op, lease } => {
                    if acquiring == Some(op) {
                        acquiring = None;
                        acquiring_token = None;
                    }
                    // Invariant 1: a quorum of distinct nodes said OK to SETs
                    // of this token sent during this attempt.
                    let token = lease.token().as_bytes();
                    let oks = model
                        .iter()
                        .filter(|m| {
                            m.wild
                                || m.ok
                                    .iter()
                                    .any(|(t, at)| t == token && *at >= lease.start())
                        })
                        .count();
                    assert!(oks >= quorum, "acquired with {oks} OKs, quorum is {quorum}");
                    // Invariant 2.
                    let drift = config.drift(lease.ttl());
                    assert!(lease.deadline() <= lease.start() + lease.ttl().saturating_sub(drift));
                    assert!(lease.start() <= now);
                    last_lease = Some(lease);
                }
                Event::AcquireFailed { op, .. } if acquiring == Some(op) => {
                    // Invariant 3: every connected node that may hold the key
                    // (SET sent, not refused) was sent a release, written in
                    // this very drain. A full pipeline excuses it (best
                    // effort: the key expires), as does injected garbage.
                    let token = acquiring_token.take();
                    acquiring = None;
                    for (i, m) in model.iter().enumerate() {
                        let busy = m.fifo.len() >= 8;
                        if m.connected && !m.wild && !busy && core.is_connected(NodeId(i as u8)) {
                            assert!(
                                !m.maybe_held
                                    .iter()
                                    .any(|(_, t, _, _)| Some(t) == token.as_ref()),
                                "node {i} may hold the key of a failed attempt and got no release"
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        for node in reconnect {
            model[node.index()].reset(true);
            core.handle_connected(node, now);
        }
        if u.is_empty() {
            break;
        }
        steps += 1;
        if steps > 2_000 {
            break;
        }
        let Ok(step) = u.arbitrary::<Step>() else {
            break;
        };
        match step {
            Step::Acquire { second, ttl_ms } => {
                let ttl = Duration::from_millis(200 + u64::from(ttl_ms % 2000));
                let res: &[u8] = if second { b"s" } else { b"r" };
                if acquiring.is_none() {
                    if let Ok(op) = core.acquire_with(res, ttl, config.retry, &mut rng, now) {
                        last_acquire = Some(op);
                        acquiring = Some(op);
                        acquiring_token = None;
                    }
                }
            }
            Step::Extend => {
                if let Some(l) = last_lease.as_ref() {
                    let _ = core.extend(l, l.ttl(), now);
                }
            }
            Step::Release => {
                if let Some(l) = last_lease.take() {
                    let _ = core.release(&l, now);
                }
            }
            Step::Cancel => {
                if let Some(op) = last_acquire {
                    core.cancel(op, now);
                }
            }
            Step::Reply { node, kind, split } => {
                let i = usize::from(node) % n;
                let Some(req) = model[i].fifo.pop_front() else {
                    continue;
                };
                let reply: Vec<u8> = match (kind, req.name.as_slice()) {
                    (ReplyKind::Yes, b"SET") => b"+OK\r\n".to_vec(),
                    (ReplyKind::Yes, b"SCRIPT") => {
                        alloc::format!("$40\r\n{RELEASE_SHA}\r\n").into_bytes()
                    }
                    (ReplyKind::Yes, b"EVALSHA" | b"EVAL") => b":1\r\n".to_vec(),
                    (ReplyKind::Yes, _) => b"+OK\r\n".to_vec(),
                    (ReplyKind::No, b"SET") => b"$-1\r\n".to_vec(),
                    (ReplyKind::No, _) => b":0\r\n".to_vec(),
                    (ReplyKind::NoScript, _) => {
                        b"-NOSCRIPT No matching script. Please use EVAL.\r\n".to_vec()
                    }
                    (ReplyKind::Err, _) => b"-ERR something went wrong\r\n".to_vec(),
                    (ReplyKind::Auth, _) => {
                        b"-WRONGPASS invalid username-password pair\r\n".to_vec()
                    }
                };
                let m = &mut model[i];
                if req.name == b"SET" {
                    let ok = matches!(kind, ReplyKind::Yes);
                    for h in m.maybe_held.iter_mut() {
                        if h.0 == req.key && h.1 == req.token && h.2 == req.sent_at {
                            h.3 = ok;
                        }
                    }
                    if ok {
                        m.ok.push((req.token.clone(), req.sent_at));
                    } else {
                        // A refusal: no key of ours there.
                        m.maybe_held.retain(|(k, t, at, _)| {
                            !(*k == req.key && *t == req.token && *at == req.sent_at)
                        });
                    }
                }
                let cut = usize::from(split) % (reply.len() + 1);
                core.handle_input(NodeId(i as u8), &reply[..cut], now);
                core.handle_input(NodeId(i as u8), &reply[cut..], now);
            }
            Step::Advance { ms } => {
                now = now + Duration::from_millis(u64::from(ms % 3000));
                core.handle_timeout(now);
            }
            Step::Down { node } => {
                let i = usize::from(node) % n;
                model[i].reset(false);
                core.handle_node_down(NodeId(i as u8), now);
            }
            Step::Garbage { node, bytes } => {
                let i = usize::from(node) % n;
                // Garbage may be taken as replies: the model no longer knows
                // what the node holds, so stop checking this node's holds.
                model[i].fifo.clear();
                model[i].wild = true;
                core.handle_input(NodeId(i as u8), &bytes, now);
            }
        }
    }
}
