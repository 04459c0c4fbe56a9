//! Fuzz entry points (feature `__fuzz`), shared by `fuzz/` targets and the
//! stable corpus-replay tests (`sim/tests/fuzz_replay.rs`).
//!
//! Each function takes the raw fuzzer bytes and panics only when the core
//! breaks one of the invariants of DESIGN.md:
//! 1. acquired only with OK replies, to this attempt's SETs, from a quorum
//!    of distinct nodes, and, as long as a lease is believed valid, a quorum
//!    of nodes really holds its key (checked against a model node that
//!    executes what the core sent: its keys, expiries and script cache);
//! 2. a lease's deadline is never later than `t0 + ttl - drift`;
//! 3. after a failed attempt, every node that may hold the key gets a
//!    release (checked by what the model node executed: an operation's
//!    `SET` is never refused by a key that an earlier attempt of the same
//!    operation stored and whose release never reached the node);
//! 4. no input panics, loops or grows state without bound.

extern crate alloc;

use alloc::vec::Vec;
use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

use crate::{
    Config, Event, Instant, NodeConfig, NodeId, Redlock, RetryPolicy, Token, EXTEND_SCRIPT,
    EXTEND_SHA, RELEASE_SCRIPT, RELEASE_SHA,
};

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
    /// Start an acquire (resource `r` or `s`), retrying after
    /// `retry_ms % 128` ms (from 0: shorter than a node timeout).
    Acquire {
        second: bool,
        ttl_ms: u16,
        retry_ms: u8,
    },
    /// Extend the last lease.
    Extend,
    /// Release the last lease.
    Release,
    /// Cancel the last acquire.
    Cancel,
    /// The node executes the next `count % 4 + 1` requests that reached it
    /// (its replies wait to be delivered); with `fail`, the first one is
    /// answered `-ERR` without being executed.
    Deliver { node: u8, count: u8, fail: bool },
    /// The oldest reply of a node reaches the core, split at `split`.
    Reply { node: u8, split: u8 },
    /// A little time passes (0..=255 ms: around a node timeout, 50 ms),
    /// then `handle_timeout`.
    Advance { ms: u8 },
    /// Much time passes (up to 3 s), then `handle_timeout`.
    AdvanceLong { ms: u16 },
    /// The connection drops: requests not yet executed and replies not yet
    /// delivered are lost; the transport reports the node down.
    Down { node: u8 },
    /// `SCRIPT FLUSH` on a node.
    Flush { node: u8 },
    /// Another client sets the resource (`SET NX PX`) on a node.
    Foreign { node: u8, second: bool, ms: u8 },
    /// Another client releases what it holds on a node.
    ForeignRelease { node: u8 },
    /// Raw bytes on a node's connection.
    Garbage { node: u8, bytes: Vec<u8> },
}

impl<'a> Arbitrary<'a> for Step {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0u8..=20)? {
            0 | 1 => Step::Acquire {
                second: u.arbitrary()?,
                ttl_ms: u.arbitrary()?,
                retry_ms: u.arbitrary()?,
            },
            2 => Step::Extend,
            3 => Step::Release,
            4 => Step::Cancel,
            5..=8 => Step::Deliver {
                node: u.arbitrary()?,
                count: u.arbitrary()?,
                fail: u.ratio(1u8, 8)?,
            },
            9..=12 => Step::Reply {
                node: u.arbitrary()?,
                split: u.arbitrary()?,
            },
            13 | 14 => Step::Advance { ms: u.arbitrary()? },
            15 => Step::AdvanceLong { ms: u.arbitrary()? },
            16 => Step::Down {
                node: u.arbitrary()?,
            },
            17 => Step::Flush {
                node: u.arbitrary()?,
            },
            18 => Step::Foreign {
                node: u.arbitrary()?,
                second: u.arbitrary()?,
                ms: u.arbitrary()?,
            },
            19 => Step::ForeignRelease {
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
    /// Upper-cased command name.
    name: Vec<u8>,
    args: Vec<Vec<u8>>,
}

/// One of Redlock's scripts as written: (release?, by body?, key, token,
/// ms argument).
type ScriptCall<'a> = (bool, bool, &'a [u8], &'a [u8], &'a [u8]);

impl Req {
    /// For Redlock's scripts: what is called, on what.
    fn script(&self) -> Option<ScriptCall<'_>> {
        let by_body = match self.name.as_slice() {
            b"EVAL" => true,
            b"EVALSHA" => false,
            _ => return None,
        };
        let first = self.args.get(1)?.as_slice();
        let release = if by_body {
            first == RELEASE_SCRIPT.as_bytes()
        } else {
            first == RELEASE_SHA.as_bytes()
        };
        let key = self.args.get(3)?.as_slice();
        let token = self.args.get(4)?.as_slice();
        let ms = self.args.get(5).map_or(&[][..], |a| a.as_slice());
        Some((release, by_body, key, token, ms))
    }
}

/// What the foreign client stores.
const FOREIGN: &[u8] = b"foreign-token";

fn parse_ms(b: &[u8]) -> u64 {
    core::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One modelled Redis node: what reached it, what it holds, what it said.
#[derive(Default, Debug)]
struct NodeModel {
    connected: bool,
    /// Requests written by the core that have not been executed yet.
    inbox: alloc::collections::VecDeque<Req>,
    /// Replies the node wrote that have not reached the core yet.
    outbox: alloc::collections::VecDeque<Vec<u8>>,
    /// Keys: (key, value, expires at: alive while `now <= expiry`).
    store: Vec<(Vec<u8>, Vec<u8>, Instant)>,
    /// Script cache: release, extend.
    scripts: (bool, bool),
    /// (key, token) of keys an acquire operation stored here, and whether
    /// a release of it has reached the node since (executed, refused or
    /// answered `NOSCRIPT`).
    own: Vec<(Vec<u8>, Vec<u8>, bool)>,
    /// (token, when) of SETs answered OK.
    ok: Vec<(Vec<u8>, Instant)>,
    /// Raw bytes were injected into the core's stream from this node: the
    /// model no longer knows what the core was told until the link resets.
    wild: bool,
}

impl NodeModel {
    /// A new connection (or none): what was in flight on the old one is
    /// lost. The node's keys and script cache stay.
    fn reset(&mut self, connected: bool) {
        self.connected = connected;
        self.inbox.clear();
        self.outbox.clear();
        self.wild = false;
    }

    /// A request reached the node (to be executed or refused): a release
    /// settles the stale-key check for its key, whatever the answer.
    fn reached(&mut self, r: &Req) {
        if let Some((true, _, key, token, _)) = r.script() {
            for o in self.own.iter_mut() {
                if o.0 == key && o.1 == token {
                    o.2 = true;
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        self.store.retain(|(_, _, exp)| now <= *exp);
    }

    fn holder(&self, key: &[u8]) -> Option<&[u8]> {
        self.store
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v.as_slice())
    }

    fn holds(&self, key: &[u8], token: &[u8], now: Instant) -> bool {
        self.store
            .iter()
            .any(|(k, v, exp)| k == key && v == token && now <= *exp)
    }

    /// `SET key value NX PX ms`: whether it was stored.
    fn set_nx(&mut self, key: &[u8], value: &[u8], ms: u64, now: Instant) -> bool {
        self.expire(now);
        if self.holder(key).is_some() {
            return false;
        }
        let exp = now + Duration::from_millis(ms);
        self.store.push((key.to_vec(), value.to_vec(), exp));
        true
    }

    /// Executes one request at `now`; returns the reply. `op_tokens` are
    /// the tokens of the acquire in progress (for the stale-key check).
    fn execute(&mut self, node: usize, r: &Req, now: Instant, op_tokens: &[Vec<u8>]) -> Vec<u8> {
        self.expire(now);
        match r.name.as_slice() {
            b"SET" => {
                let (key, value) = (&r.args[1], &r.args[2]);
                let ms = r
                    .args
                    .iter()
                    .position(|a| a.eq_ignore_ascii_case(b"PX"))
                    .and_then(|i| r.args.get(i + 1))
                    .map_or(0, |a| parse_ms(a));
                if self.set_nx(key, value, ms, now) {
                    if op_tokens.contains(value) {
                        self.own.push((key.clone(), value.clone(), false));
                    }
                    return b"+OK\r\n".to_vec();
                }
                // Invariant 3: never refused by the same operation's own
                // earlier key whose release never reached the node.
                if op_tokens.contains(value) && !self.wild {
                    let holder = self.holder(key).map(<[u8]>::to_vec);
                    let stale = self.own.iter().any(|(k, t, released)| {
                        k == key && Some(t) == holder.as_ref() && !released
                    });
                    assert!(
                        !stale,
                        "node {node}: an acquire's SET was refused by the key its own earlier attempt stored there, whose release never reached the node"
                    );
                }
                b"$-1\r\n".to_vec()
            }
            b"SCRIPT" => {
                let body = r.args.get(2).map_or(&[][..], |a| a.as_slice());
                if body == RELEASE_SCRIPT.as_bytes() {
                    self.scripts.0 = true;
                    alloc::format!("$40\r\n{RELEASE_SHA}\r\n").into_bytes()
                } else if body == EXTEND_SCRIPT.as_bytes() {
                    self.scripts.1 = true;
                    alloc::format!("$40\r\n{EXTEND_SHA}\r\n").into_bytes()
                } else {
                    b"+OK\r\n".to_vec()
                }
            }
            _ => {
                let Some((release, by_body, key, token, ms)) = r.script() else {
                    return b"+OK\r\n".to_vec();
                };
                let cached = if release {
                    self.scripts.0
                } else {
                    self.scripts.1
                };
                if !by_body && !cached {
                    return b"-NOSCRIPT No matching script. Please use EVAL.\r\n".to_vec();
                }
                if release {
                    self.scripts.0 = true;
                } else {
                    self.scripts.1 = true;
                }
                let Some(i) = self
                    .store
                    .iter()
                    .position(|(k, v, _)| k == key && v == token)
                else {
                    // 0: another token holds the key; -1: no key at all.
                    return if self.holder(key).is_some() {
                        b":0\r\n".to_vec()
                    } else {
                        b":-1\r\n".to_vec()
                    };
                };
                if release {
                    self.store.remove(i);
                } else {
                    let ms = parse_ms(ms);
                    if ms == 0 {
                        self.store.remove(i);
                    } else {
                        self.store[i].2 = now + Duration::from_millis(ms);
                    }
                }
                b":1\r\n".to_vec()
            }
        }
    }
}

fn parse_requests(bytes: &[u8], out: &mut Vec<Req>) {
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
        if name == b"SET" {
            assert!(args.len() >= 3, "the core wrote a SET without a value");
        }
        out.push(Req { name, args });
        if rest.is_empty() {
            break;
        }
    }
    assert!(
        rest.is_empty(),
        "the core wrote an incomplete or invalid command"
    );
}

/// A lease the core handed out and the caller still believes in.
#[derive(Debug)]
struct Belief {
    op: crate::OpId,
    resource: Vec<u8>,
    token: Vec<u8>,
    deadline: Instant,
}

/// Structured sequences of operations, node executions, replies, timeouts
/// and link events, checking DESIGN.md's invariants 1-4 against a model of
/// each node: requests the core writes reach the node and are executed
/// when the input says so (keys with expiry, compare-and-delete and
/// compare-and-extend, a script cache that can be flushed, other clients
/// holding keys), and the node's replies reach the core later still, so a
/// reply can lag behind requests written after it.
///
/// ```
/// redlock_core::fuzzing::ops(&[0, 0, 1, 4, 0, 0, 0, 4, 1, 0, 0, 4, 2, 0, 0]);
/// ```
pub fn ops(data: &[u8]) {
    ops_with(data, crate::Weakness::default());
}

/// [`ops`] against a core with the planted bugs of `weak` turned on (feature
/// `__weaken`): how the regressions of fixed bugs show the model still
/// finds them.
///
/// ```
/// let weak = redlock_core::Weakness { reuse_token: true, requeue_noscript: true, ..Default::default() };
/// let _ = std::panic::catch_unwind(|| redlock_core::fuzzing::ops_weakened(&[0, 0, 1, 4], weak));
/// ```
#[cfg(feature = "__weaken")]
pub fn ops_weakened(data: &[u8], weak: crate::Weakness) {
    ops_with(data, weak);
}

fn ops_with(data: &[u8], weak: crate::Weakness) {
    let _ = weak;
    let mut u = Unstructured::new(data);
    let n = usize::from(u.int_in_range(1u8..=5).unwrap_or(3));
    let nodes: Vec<NodeConfig> = (0..n).map(|_| NodeConfig::default()).collect();
    let config = Config::new(Duration::from_millis(1000));
    let Ok(mut core) = FuzzCore::new(config, &nodes) else {
        return;
    };
    #[cfg(feature = "__weaken")]
    core.weaken_with(weak);
    let quorum = core.quorum();
    let mut model: Vec<NodeModel> = (0..n).map(|_| NodeModel::default()).collect();
    let mut buf = [0u8; crate::MIN_TRANSMIT_BUF];
    let mut events = Vec::new();
    let mut now = Instant::from_millis(1);
    let mut rng = CountingRng(u.arbitrary().unwrap_or(1));
    let mut last_lease = None;
    let mut last_acquire = None;
    let mut beliefs: Vec<Belief> = Vec::new();
    // One acquire at a time, so that its tokens are known.
    let mut acquiring: Option<crate::OpId> = None;
    let mut op_tokens: Vec<Vec<u8>> = Vec::new();
    let mut steps = 0;
    loop {
        // Drain, updating the model with what was written.
        let mut sent: Vec<(usize, Vec<Req>)> = Vec::new();
        drain(
            &mut core,
            &mut buf,
            |node, bytes| {
                let mut reqs = Vec::new();
                parse_requests(bytes, &mut reqs);
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
                if r.name == b"SET" && acquiring.is_some() && !op_tokens.contains(&r.args[2]) {
                    op_tokens.push(r.args[2].clone());
                }
                m.inbox.push_back(r);
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
                    beliefs.push(Belief {
                        op,
                        resource: lease.resource().to_vec(),
                        token: token.to_vec(),
                        deadline: lease.deadline(),
                    });
                    last_lease = Some((op, lease));
                }
                Event::Extended { lease, .. } => {
                    let drift = config.drift(lease.ttl());
                    assert!(lease.deadline() <= lease.start() + lease.ttl().saturating_sub(drift));
                    for b in beliefs.iter_mut() {
                        if b.token == lease.token().as_bytes() && b.resource == lease.resource() {
                            b.deadline = lease.deadline();
                        }
                    }
                }
                Event::Lost { .. } => {
                    // Extends are only ever issued for the last lease.
                    if let Some((op, _)) = last_lease.as_ref() {
                        beliefs.retain(|b| b.op != *op);
                    }
                }
                Event::AcquireFailed { op, .. } if acquiring == Some(op) => {
                    acquiring = None;
                }
                _ => {}
            }
        }
        for node in reconnect {
            model[node.index()].reset(true);
            core.handle_connected(node, now);
        }
        // Invariant 1, on the nodes: every lease believed valid is held by
        // a quorum of nodes (down or not: a node's keys outlive its link).
        beliefs.retain(|b| now < b.deadline);
        for b in &beliefs {
            let holding = model
                .iter()
                .filter(|m| m.wild || m.holds(&b.resource, &b.token, now))
                .count();
            assert!(
                holding >= quorum,
                "a lease believed valid until {:?} is held by {holding} nodes, quorum is {quorum}",
                b.deadline
            );
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
            Step::Acquire {
                second,
                ttl_ms,
                retry_ms,
            } => {
                let ttl = Duration::from_millis(200 + u64::from(ttl_ms % 2000));
                let res: &[u8] = if second { b"s" } else { b"r" };
                let retry = RetryPolicy {
                    delay: Duration::from_millis(u64::from(retry_ms % 128)),
                    jitter: Duration::ZERO,
                    ..config.retry
                };
                if acquiring.is_none() {
                    if let Ok(op) = core.acquire_with(res, ttl, retry, &mut rng, now) {
                        last_acquire = Some(op);
                        acquiring = Some(op);
                        op_tokens.clear();
                        for m in model.iter_mut() {
                            m.own.clear();
                        }
                    }
                }
            }
            Step::Extend => {
                if let Some((_, l)) = last_lease.as_ref() {
                    let _ = core.extend(l, l.ttl(), now);
                }
            }
            Step::Release => {
                if let Some((op, l)) = last_lease.take() {
                    // The caller stops believing as it asks for the release.
                    beliefs.retain(|b| b.op != op);
                    let _ = core.release(&l, now);
                }
            }
            Step::Cancel => {
                if let Some(op) = last_acquire {
                    core.cancel(op, now);
                }
            }
            Step::Deliver { node, count, fail } => {
                let i = usize::from(node) % n;
                for k in 0..=(count % 4) {
                    let Some(req) = model[i].inbox.pop_front() else {
                        break;
                    };
                    let tokens = if acquiring.is_some() {
                        op_tokens.as_slice()
                    } else {
                        &[]
                    };
                    model[i].reached(&req);
                    let reply = if fail && k == 0 {
                        b"-ERR injected failure\r\n".to_vec()
                    } else {
                        model[i].execute(i, &req, now, tokens)
                    };
                    if req.name == b"SET" && reply == b"+OK\r\n" {
                        model[i].ok.push((req.args[2].clone(), now));
                    }
                    model[i].outbox.push_back(reply);
                }
            }
            Step::Reply { node, split } => {
                let i = usize::from(node) % n;
                let Some(reply) = model[i].outbox.pop_front() else {
                    continue;
                };
                let cut = usize::from(split) % (reply.len() + 1);
                core.handle_input(NodeId(i as u8), &reply[..cut], now);
                core.handle_input(NodeId(i as u8), &reply[cut..], now);
            }
            Step::Advance { ms } => {
                now = now + Duration::from_millis(u64::from(ms));
                core.handle_timeout(now);
            }
            Step::AdvanceLong { ms } => {
                now = now + Duration::from_millis(u64::from(ms % 3000));
                core.handle_timeout(now);
            }
            Step::Down { node } => {
                let i = usize::from(node) % n;
                model[i].reset(false);
                core.handle_node_down(NodeId(i as u8), now);
            }
            Step::Flush { node } => {
                model[usize::from(node) % n].scripts = (false, false);
            }
            Step::Foreign { node, second, ms } => {
                let res: &[u8] = if second { b"s" } else { b"r" };
                let ms = 1 + u64::from(ms) * 4;
                model[usize::from(node) % n].set_nx(res, FOREIGN, ms, now);
            }
            Step::ForeignRelease { node } => {
                model[usize::from(node) % n]
                    .store
                    .retain(|(_, v, _)| v != FOREIGN);
            }
            Step::Garbage { node, bytes } => {
                let i = usize::from(node) % n;
                // Garbage may be taken as replies: the model no longer knows
                // what the core was told by this node, so stop checking it
                // until the link resets. (The requests in flight still reach
                // the node.)
                model[i].wild = true;
                core.handle_input(NodeId(i as u8), &bytes, now);
            }
        }
    }
}
