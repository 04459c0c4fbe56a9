//! The simulation proper: one event queue in true time, nodes, links,
//! clients driving real cores, the fault schedule and the checker.

use core::cmp::{Ordering, Reverse};
use core::time::Duration;
use std::collections::{BinaryHeap, VecDeque};

use redlock_core::{
    Config, Event, FailureKind, Instant, Lease, NodeConfig, NodeId, OpId, RetryPolicy, Token,
};

use crate::checker::Checker;
use crate::clock::Clock;
use crate::node::{Feed, SimNode};
use crate::rng::{stream, SimRng};
use crate::scenario::{FailureClass, Fault, Outcome, Scenario, ScriptFault, SimCore, Stats};
use crate::timeline::Timeline;

const MS: u64 = 1_000;
pub(crate) const RESOURCES: [&[u8]; 2] = [b"r", b"r2"];

/// Events in the queue.
#[derive(Debug)]
enum Ev {
    /// Bytes from a client arrive at a node.
    ToNode {
        c: usize,
        n: usize,
        epoch: u32,
        data: Vec<u8>,
    },
    /// Bytes from a node arrive at a client.
    ToClient {
        c: usize,
        n: usize,
        epoch: u32,
        data: Vec<u8>,
    },
    /// A connection attempt completes (or fails).
    Connected {
        c: usize,
        n: usize,
        epoch: u32,
        ok: bool,
    },
    /// The client notices that a connection broke.
    LinkDown { c: usize, n: usize, epoch: u32 },
    /// The core's timer.
    Timer { c: usize },
    /// A workload step.
    Wake { c: usize, gen: u32 },
    /// A paused client resumes.
    Resume { c: usize },
    /// A fault.
    Fault(FaultEv),
}

#[derive(Clone, Debug)]
enum FaultEv {
    Crash {
        n: usize,
        down: u64,
        persistent: bool,
    },
    Restart {
        n: usize,
        id: u32,
        persistent: bool,
    },
    Amnesia {
        n: usize,
    },
    ClockJump {
        n: usize,
        by: u64,
    },
    Partition {
        c: usize,
        n: usize,
        to_node: bool,
        to_client: bool,
        until: u64,
    },
    Reset {
        c: usize,
        n: usize,
    },
    ScriptFlush {
        n: usize,
    },
    Pause {
        c: usize,
        dur: u64,
    },
}

#[derive(Debug)]
struct Item {
    time: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.time, self.seq) == (o.time, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.time, self.seq).cmp(&(o.time, o.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkSt {
    Down,
    Connecting(u32),
    Up(u32),
    /// Reset by the network; the client has not noticed yet.
    Broken(u32),
}

#[derive(Debug)]
struct Link {
    st: LinkSt,
    epoch: u32,
    /// The last epoch the client closed itself: bytes already sent on it
    /// still reach the node (TCP delivers before the FIN).
    graceful: u32,
    last_to_node: u64,
    last_to_client: u64,
    block_to_node: u64,
    block_to_client: u64,
}

#[derive(Debug)]
struct NodeSt {
    redis: SimNode,
    clock: Clock,
    up: bool,
    crash_id: u32,
}

#[derive(Debug)]
enum Work {
    Idle,
    Acquiring { op: OpId, r: usize },
    Holding(Hold),
    Extending { op: OpId, hold: Hold },
    Releasing { op: OpId, held: bool },
    Done,
}

#[derive(Debug)]
struct Hold {
    lease: Lease,
    r: usize,
    /// Local times of the remaining steps (actions, then the end).
    steps: VecDeque<u64>,
    extends_left: u8,
}

#[derive(Debug)]
struct ClientSt {
    core: SimCore,
    clock: Clock,
    work: Work,
    wake_gen: u32,
    timer_at: Option<u64>,
    paused_until: u64,
    deferred: VecDeque<Ev>,
    pending_action: Option<usize>,
    rng: SimRng,
    tokens: SimRng,
    acquired_after_heal: bool,
    scripted_done: bool,
}

/// Parameters drawn per seed.
#[derive(Debug)]
struct Params {
    ttl: u64,
    resources: usize,
    delay_base: u64,
    delay_jitter: u64,
    spike_per_mille: u64,
    split_per_mille: u64,
    fault_end: u64,
    live_deadline: u64,
}

struct Trace {
    lines: VecDeque<String>,
    cap: usize,
    /// Faults and lock decisions of the whole run (the last 40).
    key: VecDeque<String>,
}

pub(crate) struct World<'a> {
    sc: &'a Scenario,
    seed: u64,
    p: Params,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Item>>,
    nodes: Vec<NodeSt>,
    clients: Vec<ClientSt>,
    links: Vec<Link>,
    net: SimRng,
    frng: SimRng,
    checker: Checker,
    stats: Stats,
    hash: u64,
    trace: Option<Trace>,
    timeline: Option<Timeline>,
    amnesia_arm: Option<u64>,
    jump_arm: Option<u64>,
    pause_arm: Option<u64>,
    txbuf: Vec<u8>,
    events: Vec<Event>,
}

fn fnv(h: &mut u64, v: u64) {
    for b in v.to_le_bytes() {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
}

fn secs(t: u64) -> String {
    format!("{}.{:06}s", t / 1_000_000, t % 1_000_000)
}

/// RESP bytes, shortened for a trace line.
fn show(data: &[u8]) -> String {
    let mut s = String::new();
    let text = String::from_utf8_lossy(data);
    for part in text.split("\r\n").filter(|p| !p.is_empty()) {
        if part == "$-1" || part == "*-1" {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str("(nil)");
            continue;
        }
        if part.starts_with('*') || part.starts_with('$') {
            continue;
        }
        if !s.is_empty() {
            s.push(' ');
        }
        if part.len() > 14 {
            s.push_str(&part[..part.char_indices().nth(10).map_or(part.len(), |(i, _)| i)]);
            s.push('…');
        } else {
            s.push_str(part);
        }
        if s.len() > 90 {
            s.push_str(" …");
            break;
        }
    }
    s
}

impl<'a> World<'a> {
    pub(crate) fn new(seed: u64, sc: &'a Scenario) -> World<'a> {
        let nodes_n = sc.nodes.clamp(1, redlock_core::MAX_NODES);
        let clients_n = sc.clients.clamp(1, 64);
        let mut swarm = SimRng::stream(seed, stream::SWARM);
        let mut clocks = SimRng::stream(seed, stream::CLOCKS);
        let ttl = match sc.ttl {
            Some(t) => (t.as_millis() as u64).max(50) * MS,
            None => swarm.range(300, 3000) * MS,
        };
        let scripted = sc.script.is_some();
        let safe = sc.safe_faults && !scripted;
        let delay_base = swarm.range(50, 500);
        let p = Params {
            ttl,
            resources: if !scripted && swarm.chance(1, 3) {
                2
            } else {
                1
            },
            delay_base,
            delay_jitter: swarm.range(0, delay_base * 3),
            spike_per_mille: if safe && swarm.chance(1, 2) {
                swarm.range(1, 10)
            } else {
                0
            },
            split_per_mille: if swarm.chance(1, 2) {
                swarm.range(10, 200)
            } else {
                0
            },
            fault_end: sc.fault_ttls.max(1) * ttl,
            live_deadline: sc.fault_ttls.max(1) * ttl + 40 * ttl,
        };
        let nodes = (0..nodes_n)
            .map(|_| NodeSt {
                redis: SimNode::new(),
                clock: Clock {
                    ppm: clocks.range(0, 4000) as i64 - 2000,
                    offset: clocks.range(0, 1 << 40),
                },
                up: true,
                crash_id: 0,
            })
            .collect();
        let node_cfgs = vec![NodeConfig::default(); nodes_n];
        let mut config = Config::new(Duration::from_micros(ttl));
        config.retry = if scripted {
            RetryPolicy {
                count: u32::MAX,
                delay: Duration::from_micros(ttl / 20),
                jitter: Duration::from_micros(ttl / 50),
                wait: Some(Duration::from_micros(4 * ttl)),
            }
        } else {
            RetryPolicy {
                count: 3,
                delay: Duration::from_micros(ttl / 5),
                jitter: Duration::from_micros(ttl / 5),
                wait: None,
            }
        };
        let clients = (0..clients_n)
            .map(|i| {
                let mut core = match SimCore::new(config, &node_cfgs) {
                    Ok(c) => c,
                    Err(e) => panic!("simulator config rejected by the core: {e}"),
                };
                if let Some(hook) = sc.core_hook {
                    hook(&mut core);
                }
                ClientSt {
                    core,
                    clock: Clock {
                        ppm: clocks.range(0, 4000) as i64 - 2000,
                        offset: clocks.range(0, 1 << 40),
                    },
                    work: Work::Idle,
                    wake_gen: 0,
                    timer_at: None,
                    paused_until: 0,
                    deferred: VecDeque::new(),
                    pending_action: None,
                    rng: SimRng::stream(seed, stream::WORKLOAD + 2 * i as u64),
                    tokens: SimRng::stream(seed, stream::TOKENS + 2 * i as u64),
                    acquired_after_heal: false,
                    scripted_done: false,
                }
            })
            .collect();
        let links = (0..nodes_n * clients_n)
            .map(|_| Link {
                st: LinkSt::Down,
                epoch: 0,
                graceful: u32::MAX,
                last_to_node: 0,
                last_to_client: 0,
                block_to_node: 0,
                block_to_client: 0,
            })
            .collect();
        let resources = p.resources;
        let record = sc.record;
        World {
            sc,
            seed,
            p,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            clients,
            links,
            net: SimRng::stream(seed, stream::NET),
            frng: SimRng::stream(seed, stream::FAULTS),
            checker: Checker::new(clients_n, resources, record),
            stats: Stats::default(),
            hash: 0xcbf2_9ce4_8422_2325,
            trace: record.then(|| Trace {
                lines: VecDeque::new(),
                cap: sc.trace_len.max(1),
                key: VecDeque::new(),
            }),
            timeline: record.then(|| Timeline::new(nodes_n, clients_n, resources)),
            amnesia_arm: None,
            jump_arm: None,
            pause_arm: None,
            txbuf: vec![0u8; 4096],
            events: Vec::new(),
        }
    }

    // ------------------------------------------------------------------ helpers

    fn push(&mut self, time: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Item {
            time,
            seq: self.seq,
            ev,
        }));
    }

    fn log(&mut self, f: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_mut() {
            if t.lines.len() == t.cap {
                t.lines.pop_front();
            }
            let line = format!("[{}] {}", secs(self.now), f());
            let key = [
                "FAULT",
                "ACQUIRED",
                "EXTENDED",
                "LOST",
                "PAUSED",
                ": release",
                "VIOLATION",
                "resumes",
            ];
            if key.iter().any(|k| line.contains(k)) {
                if t.key.len() == 40 {
                    t.key.pop_front();
                }
                t.key.push_back(line.clone());
            }
            t.lines.push_back(line);
        }
    }

    fn fault_count(&mut self, kind: &'static str) {
        *self.stats.faults.entry(kind).or_insert(0) += 1;
    }

    fn link(&mut self, c: usize, n: usize) -> &mut Link {
        let nodes = self.nodes.len();
        &mut self.links[c * nodes + n]
    }

    fn delay(&mut self) -> u64 {
        let mut d = self.p.delay_base + self.net.below(self.p.delay_jitter + 1);
        if self.p.spike_per_mille > 0
            && self.net.chance(self.p.spike_per_mille, 1000)
            && self.now < self.p.fault_end
        {
            let nt = (self.p.ttl / 20).max(5 * MS);
            d += self.net.range(nt / 2, nt * 2);
        }
        d
    }

    fn local(&self, c: usize) -> u64 {
        self.clients[c].clock.local(self.now)
    }

    fn instant(&self, c: usize) -> Instant {
        Instant::from_micros(self.local(c))
    }

    fn node_ms(&self, n: usize) -> u64 {
        self.nodes[n].clock.local(self.now) / MS
    }

    fn conn_id(c: usize, epoch: u32) -> u64 {
        ((c as u64) << 32) | u64::from(epoch)
    }

    /// Whether node `n` blocks resource `r` for `token` at true time `t`:
    /// down, or holding `r` = `token` unexpired on its own clock.
    fn blocks(node: &NodeSt, r: usize, token: &Token, t: u64) -> bool {
        if !node.up {
            return true;
        }
        match node.redis.entry(RESOURCES[r]) {
            Some((v, exp)) if v == token.as_bytes() => {
                exp.is_none_or(|e| node.clock.local(t) / MS <= e)
            }
            _ => false,
        }
    }

    /// The quorum-backing invariant (see the checker's docs): every open
    /// belief must have a quorum of blocking nodes at every instant.
    fn check_backing(&mut self) -> Option<(FailureClass, String)> {
        let q = self.nodes.len() / 2 + 1;
        let nodes = &self.nodes;
        self.checker.check_backing(self.now, |r, token, t| {
            let mut k = 0;
            for node in nodes {
                if Self::blocks(node, r, token, t) {
                    k += 1;
                    if k >= q {
                        return true;
                    }
                }
            }
            false
        });
        let u = self.checker.unbacked.clone()?;
        let details: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let what = if !node.up {
                    "down (blocks)".to_string()
                } else {
                    match node.redis.entry(RESOURCES[u.resource]) {
                        None => "no key".to_string(),
                        Some((v, _)) if v != u.token.as_bytes() => {
                            format!("another token {:?}", String::from_utf8_lossy(v))
                        }
                        Some((_, None)) => "holds it, no expiry (blocks)".to_string(),
                        Some((_, Some(e))) => {
                            let gone = node.clock.true_at((e + 1) * MS, 0);
                            if Self::blocks(node, u.resource, &u.token, u.at) {
                                format!("holds it until {} (blocks)", secs(gone))
                            } else {
                                format!("its key expired at {} on its clock", secs(gone))
                            }
                        }
                    }
                };
                format!("n{n} {what}")
            })
            .collect();
        let backed = (0..self.nodes.len())
            .filter(|&n| Self::blocks(&self.nodes[n], u.resource, &u.token, u.at))
            .count();
        let msg = format!(
            "client {} believed it held {:?} at {} but only {} of {} nodes backed it (quorum {}; belief {} .. {}, token {}): {}",
            u.client,
            String::from_utf8_lossy(RESOURCES[u.resource]),
            secs(u.at),
            backed,
            self.nodes.len(),
            q,
            secs(u.segment.start),
            secs(u.segment.end),
            u.token.as_str(),
            details.join(", "),
        );
        self.log(|| format!("VIOLATION: {msg}"));
        Some((FailureClass::Safety, msg))
    }

    // ------------------------------------------------------------------ run

    pub(crate) fn run(mut self) -> Outcome {
        self.schedule_faults();
        for c in 0..self.clients.len() {
            self.pump(c);
            let start = match self.sc.script.as_ref() {
                Some(s) => match s.clients.get(c) {
                    Some(cs) => Some(cs.start.as_micros() as u64),
                    None => {
                        self.clients[c].work = Work::Done;
                        None
                    }
                },
                None => Some(self.clients[c].rng.range(0, self.p.ttl / 2)),
            };
            if let Some(at) = start {
                let gen = self.clients[c].wake_gen;
                self.push(at, Ev::Wake { c, gen });
            }
        }
        if self.sc.script.is_none() {
            let ttl = self.p.ttl;
            let arm = |f: Fault, w: &mut World<'_>| {
                w.sc.unsafe_faults
                    .contains(&f)
                    .then(|| w.frng.range(ttl, 3 * ttl))
            };
            self.amnesia_arm = arm(Fault::Amnesia, &mut self);
            self.jump_arm = arm(Fault::ClockJump, &mut self);
            self.pause_arm = arm(Fault::Pause, &mut self);
        }
        let mut failure = self.main_loop();
        if failure.is_none() {
            // The beliefs still open when the run stops, up to now.
            failure = self.check_backing();
        }
        self.checker.finish();
        self.stats.sim_micros = self.now;
        let trace = self
            .trace
            .take()
            .map(|t| {
                let mut v = vec!["key events (faults and lock decisions, last 40):".to_string()];
                v.extend(t.key.into_iter().map(|l| format!("  {l}")));
                v.push(format!("last {} events:", t.lines.len()));
                v.extend(t.lines.into_iter().map(|l| format!("  {l}")));
                v
            })
            .unwrap_or_default();
        let svg = self.timeline.take().map(|mut tl| {
            if let Some(h) = self.checker.history.as_ref() {
                tl.segments = h.clone();
            }
            if let Some(a) = self.checker.actions.as_ref() {
                tl.actions = a.clone();
            }
            tl.overlap = self.checker.first.clone();
            tl.unbacked = self.checker.unbacked.clone();
            // Show the overlapping beliefs whole, not cut at the detection.
            tl.end = tl.segments.iter().map(|g| g.end).fold(self.now, u64::max);
            tl.ttl = self.p.ttl;
            tl.render(self.seed)
        });
        Outcome {
            seed: self.seed,
            failure,
            trace_hash: self.hash,
            stats: self.stats,
            trace,
            svg,
        }
    }

    fn main_loop(&mut self) -> Option<(FailureClass, String)> {
        let scripted = self.sc.script.is_some();
        while let Some(Reverse(item)) = self.queue.pop() {
            self.now = item.time;
            self.stats.steps += 1;
            if self.stats.steps > self.sc.max_steps {
                return Some((
                    FailureClass::Livelock,
                    format!(
                        "livelock: more than {} events by {}",
                        self.sc.max_steps,
                        secs(self.now)
                    ),
                ));
            }
            fnv(&mut self.hash, item.time);
            // Quorum backing of every open belief, up to now, with the node
            // state the previous event left.
            if let Some(f) = self.check_backing() {
                return Some(f);
            }
            self.dispatch(item.ev);
            if let Some(o) = self.checker.first.clone() {
                let what = if o.action {
                    "acted on"
                } else {
                    "believed it held"
                };
                let msg = format!(
                    "client {} {} {:?} at {} while client {} held it ({} .. {})",
                    o.client,
                    what,
                    String::from_utf8_lossy(RESOURCES[o.resource]),
                    secs(o.at),
                    o.other,
                    secs(o.other_segment.start),
                    secs(o.other_segment.end),
                );
                self.log(|| format!("VIOLATION: {msg}"));
                return Some((FailureClass::Safety, msg));
            }
            if !scripted {
                if self.now >= self.p.fault_end
                    && self.clients.iter().all(|c| c.acquired_after_heal)
                {
                    return None;
                }
                if self.now > self.p.live_deadline {
                    let missing: Vec<String> = (0..self.clients.len())
                        .filter(|&c| !self.clients[c].acquired_after_heal)
                        .map(|c| c.to_string())
                        .collect();
                    return Some((
                        FailureClass::Liveness,
                        format!(
                            "liveness: client(s) {} never acquired between the heal at {} and {}",
                            missing.join(", "),
                            secs(self.p.fault_end),
                            secs(self.p.live_deadline)
                        ),
                    ));
                }
            } else if self.clients.iter().all(|c| matches!(c.work, Work::Done))
                && self.now > self.p.fault_end
            {
                return None;
            }
        }
        None
    }

    fn client_of(ev: &Ev) -> Option<usize> {
        match ev {
            Ev::ToClient { c, .. }
            | Ev::Connected { c, .. }
            | Ev::LinkDown { c, .. }
            | Ev::Timer { c }
            | Ev::Wake { c, .. } => Some(*c),
            _ => None,
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        if let Some(c) = Self::client_of(&ev) {
            let cl = &mut self.clients[c];
            if self.now < cl.paused_until || !cl.deferred.is_empty() {
                // A paused client processes nothing; keep the order.
                cl.deferred.push_back(ev);
                return;
            }
        }
        self.handle(ev);
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::ToNode { c, n, epoch, data } => {
                fnv(
                    &mut self.hash,
                    1 + ((c as u64) << 8) + ((n as u64) << 16) + ((data.len() as u64) << 24),
                );
                self.deliver_to_node(c, n, epoch, &data);
            }
            Ev::ToClient { c, n, epoch, data } => {
                fnv(
                    &mut self.hash,
                    2 + ((c as u64) << 8) + ((n as u64) << 16) + ((data.len() as u64) << 24),
                );
                if self.link(c, n).st != LinkSt::Up(epoch) {
                    return;
                }
                self.log(|| format!("c{c} <- n{n}: {}", show(&data)));
                let now = self.instant(c);
                self.clients[c]
                    .core
                    .handle_input(NodeId(n as u8), &data, now);
                self.pump(c);
            }
            Ev::Connected { c, n, epoch, ok } => {
                fnv(
                    &mut self.hash,
                    3 + ((c as u64) << 8) + ((n as u64) << 16) + (u64::from(ok) << 24),
                );
                if self.link(c, n).st != LinkSt::Connecting(epoch) {
                    return;
                }
                let now = self.instant(c);
                if ok && self.nodes[n].up {
                    self.link(c, n).st = LinkSt::Up(epoch);
                    self.log(|| format!("c{c} connected to n{n}"));
                    self.clients[c].core.handle_connected(NodeId(n as u8), now);
                } else {
                    self.link(c, n).st = LinkSt::Down;
                    self.log(|| format!("c{c} could not connect to n{n}"));
                    self.clients[c].core.handle_node_down(NodeId(n as u8), now);
                }
                self.pump(c);
            }
            Ev::LinkDown { c, n, epoch } => {
                fnv(&mut self.hash, 4 + ((c as u64) << 8) + ((n as u64) << 16));
                if self.link(c, n).st != LinkSt::Broken(epoch) {
                    return;
                }
                self.link(c, n).st = LinkSt::Down;
                self.log(|| format!("c{c} notices its connection to n{n} broke"));
                let now = self.instant(c);
                self.clients[c].core.handle_node_down(NodeId(n as u8), now);
                self.pump(c);
            }
            Ev::Timer { c } => {
                fnv(&mut self.hash, 5 + ((c as u64) << 8));
                if self.clients[c].timer_at.is_some_and(|t| t <= self.now) {
                    self.clients[c].timer_at = None;
                }
                let now = self.instant(c);
                self.clients[c].core.handle_timeout(now);
                self.pump(c);
            }
            Ev::Wake { c, gen } => {
                fnv(&mut self.hash, 6 + ((c as u64) << 8));
                if self.clients[c].wake_gen == gen {
                    self.wake(c);
                }
            }
            Ev::Resume { c } => {
                fnv(&mut self.hash, 7 + ((c as u64) << 8));
                if self.now < self.clients[c].paused_until {
                    return;
                }
                self.log(|| format!("c{c} resumes"));
                if let Some(r) = self.clients[c].pending_action.take() {
                    // The unsafe pause: act as holder without checking again.
                    self.log(|| {
                        format!(
                            "c{c} PROTECTED ACTION on {:?} (after its pause, unchecked)",
                            r
                        )
                    });
                    self.stats.actions += 1;
                    self.checker.act(c, r, self.now);
                }
                while let Some(ev) = self.clients[c].deferred.pop_front() {
                    self.handle(ev);
                    if self.now < self.clients[c].paused_until {
                        break;
                    }
                }
            }
            Ev::Fault(f) => {
                fnv(&mut self.hash, 8);
                self.fault(f);
            }
        }
    }

    // ------------------------------------------------------------------ network

    fn send_to_node(&mut self, c: usize, n: usize, data: Vec<u8>) {
        let LinkSt::Up(epoch) = self.link(c, n).st else {
            return;
        };
        let mut at = self.now + self.delay();
        let block = self.link(c, n).block_to_node;
        if self.now < block {
            at = at.max(block + self.delay());
        }
        let link = self.link(c, n);
        at = at.max(link.last_to_node);
        link.last_to_node = at;
        self.push(at, Ev::ToNode { c, n, epoch, data });
    }

    fn send_to_client(&mut self, c: usize, n: usize, epoch: u32, mut data: Vec<u8>) {
        let mut at = self.now + self.delay();
        let block = self.link(c, n).block_to_client;
        if self.now < block {
            at = at.max(block + self.delay());
        }
        at = at.max(self.link(c, n).last_to_client);
        if data.len() > 1
            && self.p.split_per_mille > 0
            && self.net.chance(self.p.split_per_mille, 1000)
        {
            // Deliver the reply in two pieces: any split must work.
            let cut = 1 + self.net.index(data.len() - 1);
            let rest = data.split_off(cut);
            self.push(at, Ev::ToClient { c, n, epoch, data });
            at += self.net.range(0, 200);
            data = rest;
        }
        self.link(c, n).last_to_client = at;
        self.push(at, Ev::ToClient { c, n, epoch, data });
    }

    fn deliver_to_node(&mut self, c: usize, n: usize, epoch: u32, data: &[u8]) {
        let link = self.link(c, n);
        let live = link.st == LinkSt::Up(epoch) && link.epoch == epoch;
        let graceful = link.graceful == epoch;
        if !(live || graceful) || !self.nodes[n].up {
            return;
        }
        let now_ms = self.node_ms(n);
        let mut out = Vec::with_capacity(64);
        let feed = self.nodes[n]
            .redis
            .feed(Self::conn_id(c, epoch), now_ms, data, &mut out);
        self.log(|| format!("n{n} <- c{c}: {}  => {}", show(data), show(&out)));
        if live && !out.is_empty() {
            self.send_to_client(c, n, epoch, out);
        }
        if feed == Feed::Close {
            self.reset(c, n);
        }
    }

    /// The network resets `c`'s connection to `n`.
    fn reset(&mut self, c: usize, n: usize) {
        let st = self.link(c, n).st;
        match st {
            LinkSt::Up(e) | LinkSt::Connecting(e) => {
                let link = self.link(c, n);
                link.epoch += 1;
                let epoch = link.epoch;
                if matches!(st, LinkSt::Up(_)) {
                    link.st = LinkSt::Broken(epoch);
                    let at = self.now + self.delay();
                    self.push(at, Ev::LinkDown { c, n, epoch });
                } else {
                    // A connect in flight: let it fail.
                    link.st = LinkSt::Connecting(epoch);
                    let at = self.now + self.delay();
                    self.push(
                        at,
                        Ev::Connected {
                            c,
                            n,
                            epoch,
                            ok: false,
                        },
                    );
                }
                self.nodes[n].redis.close(Self::conn_id(c, e));
            }
            LinkSt::Down | LinkSt::Broken(_) => {}
        }
    }

    // ------------------------------------------------------------------ driver

    /// The drain contract: transmits, then events, then the timer; again
    /// while anything happened.
    fn pump(&mut self, c: usize) {
        let mut buf = std::mem::take(&mut self.txbuf);
        let mut events = std::mem::take(&mut self.events);
        loop {
            let mut progressed = false;
            while let Some(t) = self.clients[c].core.poll_transmit(&mut buf) {
                progressed = true;
                let n = t.node.index();
                let data = buf[..t.len].to_vec();
                self.log(|| format!("c{c} -> n{n}: {}", show(&data)));
                self.send_to_node(c, n, data);
            }
            while let Some(e) = self.clients[c].core.poll_event() {
                events.push(e);
            }
            for e in events.drain(..) {
                progressed = true;
                self.on_event(c, e);
            }
            if !progressed {
                break;
            }
        }
        self.txbuf = buf;
        self.events = events;
        if let Some(dl) = self.clients[c].core.poll_timeout() {
            let at = self.clients[c].clock.true_at(dl.as_micros(), self.now);
            if self.clients[c].timer_at.is_none_or(|t| at < t) {
                self.clients[c].timer_at = Some(at);
                self.push(at, Ev::Timer { c });
            }
        }
    }

    fn on_event(&mut self, c: usize, e: Event) {
        match e {
            Event::Connect { node } => {
                let n = node.index();
                fnv(&mut self.hash, 10 + ((n as u64) << 8));
                let now = self.now;
                let link = self.link(c, n);
                link.epoch += 1;
                let epoch = link.epoch;
                link.st = LinkSt::Connecting(epoch);
                let blocked = now < link.block_to_node || now < link.block_to_client;
                let (ok, at) = if blocked {
                    (false, self.now + (self.p.ttl / 10).max(10 * MS))
                } else if !self.nodes[n].up {
                    (false, self.now + self.delay() + self.delay())
                } else {
                    (true, self.now + self.delay() + self.delay())
                };
                self.push(at, Ev::Connected { c, n, epoch, ok });
            }
            Event::Disconnect { node, error } => {
                let n = node.index();
                fnv(&mut self.hash, 11 + ((n as u64) << 8));
                self.log(|| format!("c{c} closes its connection to n{n}: {error}"));
                let link = self.link(c, n);
                if let LinkSt::Up(e) = link.st {
                    link.graceful = e;
                }
                link.epoch += 1;
                link.st = LinkSt::Down;
            }
            Event::NodeFailed { node, error, .. } => {
                fnv(&mut self.hash, 12 + ((node.index() as u64) << 8));
                self.log(|| format!("c{c}: {node} failed: {error}"));
            }
            Event::Acquired { op, lease } => {
                fnv(&mut self.hash, 13 + (u64::from(op.into_raw()) << 8));
                self.acquired(c, op, lease);
            }
            Event::AcquireFailed { op, error } => {
                fnv(&mut self.hash, 14 + (u64::from(op.into_raw()) << 8));
                self.log(|| format!("c{c}: acquire failed: {error}"));
                if matches!(self.clients[c].work, Work::Acquiring { op: o, .. } if o == op) {
                    if error.kind == FailureKind::Busy {
                        self.stats.busy += 1;
                    } else {
                        self.stats.unavailable += 1;
                    }
                    if self.sc.script.is_some() {
                        self.clients[c].work = Work::Done;
                    } else {
                        let think = self.clients[c].rng.range(self.p.ttl / 10, self.p.ttl / 2);
                        self.idle(c, think);
                    }
                }
            }
            Event::Extended { op, lease } => {
                fnv(&mut self.hash, 15 + (u64::from(op.into_raw()) << 8));
                let work = std::mem::replace(&mut self.clients[c].work, Work::Idle);
                match work {
                    Work::Extending { op: o, mut hold } if o == op => {
                        self.stats.extends += 1;
                        let end = self.clients[c]
                            .clock
                            .true_at(lease.deadline().as_micros(), self.now);
                        self.log(|| {
                            format!(
                                "c{c}: EXTENDED {:?} until {}",
                                String::from_utf8_lossy(RESOURCES[hold.r]),
                                secs(end),
                            )
                        });
                        self.checker
                            .believe(c, hold.r, self.now, end, *lease.token());
                        hold.lease = lease;
                        self.plan_hold(c, hold);
                    }
                    other => self.clients[c].work = other,
                }
            }
            Event::Lost { op, error } => {
                fnv(&mut self.hash, 16 + (u64::from(op.into_raw()) << 8));
                let work = std::mem::replace(&mut self.clients[c].work, Work::Idle);
                match work {
                    Work::Extending { op: o, hold } if o == op => {
                        self.stats.lost += 1;
                        self.log(|| format!("c{c}: LOST the lease: {error}"));
                        self.checker.end(c, hold.r, self.now);
                        self.release(c, hold.lease, false);
                    }
                    other => self.clients[c].work = other,
                }
            }
            Event::Released { op, report } => {
                fnv(&mut self.hash, 17 + (u64::from(op.into_raw()) << 8));
                let work = std::mem::replace(&mut self.clients[c].work, Work::Idle);
                match work {
                    Work::Releasing { op: o, held } if o == op => {
                        self.log(|| format!("c{c}: released on {} node(s)", report.released()));
                        if held {
                            self.stats.cycles += 1;
                        }
                        if self.sc.script.is_some() {
                            self.clients[c].work = Work::Done;
                        } else {
                            let think = self.clients[c].rng.range(0, self.p.ttl / 3);
                            self.idle(c, think);
                        }
                    }
                    other => self.clients[c].work = other,
                }
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------ workload

    fn wake_at_local(&mut self, c: usize, local: u64) {
        let at = self.clients[c].clock.true_at(local, self.now);
        self.clients[c].wake_gen += 1;
        let gen = self.clients[c].wake_gen;
        self.push(at, Ev::Wake { c, gen });
    }

    fn idle(&mut self, c: usize, think: u64) {
        self.clients[c].work = Work::Idle;
        let local = self.local(c) + think;
        self.wake_at_local(c, local);
    }

    fn wake(&mut self, c: usize) {
        let work = std::mem::replace(&mut self.clients[c].work, Work::Idle);
        match work {
            Work::Idle => self.start_acquire(c),
            Work::Holding(hold) => self.hold_step(c, hold),
            other => self.clients[c].work = other,
        }
    }

    fn start_acquire(&mut self, c: usize) {
        if self.clients[c].scripted_done {
            self.clients[c].work = Work::Done;
            return;
        }
        let r = if self.p.resources > 1 && self.clients[c].rng.chance(1, 4) {
            1
        } else {
            0
        };
        let now = self.instant(c);
        let cl = &mut self.clients[c];
        match cl.core.acquire(RESOURCES[r], &mut cl.tokens, now) {
            Ok(op) => {
                cl.work = Work::Acquiring { op, r };
                self.log(|| format!("c{c}: acquire {:?}", String::from_utf8_lossy(RESOURCES[r])));
                self.pump(c);
            }
            Err(e) => {
                self.log(|| format!("c{c}: acquire refused: {e}"));
                let think = self.p.ttl / 10;
                self.idle(c, think);
            }
        }
    }

    fn acquired(&mut self, c: usize, op: OpId, lease: Lease) {
        let r = match self.clients[c].work {
            Work::Acquiring { op: o, r } if o == op => r,
            _ => {
                // Not ours to hold (cannot happen): release it.
                self.release(c, lease, false);
                return;
            }
        };
        self.stats.acquisitions += 1;
        if self.now >= self.p.fault_end {
            self.clients[c].acquired_after_heal = true;
        }
        let end = self.clients[c]
            .clock
            .true_at(lease.deadline().as_micros(), self.now);
        self.log(|| {
            format!(
                "c{c}: ACQUIRED {:?} until {} (validity {} on its clock from the attempt's start)",
                String::from_utf8_lossy(RESOURCES[r]),
                secs(end),
                secs(lease.deadline().as_micros() - lease.start().as_micros()),
            )
        });
        self.checker.believe(c, r, self.now, end, *lease.token());
        self.maybe_unsafe_wave(c);
        let extends_left = if self.sc.script.is_some() { 0 } else { 2 };
        let hold = Hold {
            lease,
            r,
            steps: VecDeque::new(),
            extends_left,
        };
        self.plan_hold(c, hold);
    }

    /// Plans the actions and the end of a hold from the current lease.
    fn plan_hold(&mut self, c: usize, mut hold: Hold) {
        let local = self.local(c);
        let remaining = hold.lease.deadline().as_micros().saturating_sub(local);
        hold.steps.clear();
        match self.sc.script.as_ref().and_then(|s| s.clients.get(c)) {
            Some(cs) => {
                let h = cs.hold.as_micros() as u64;
                for i in 0..4 {
                    hold.steps.push_back(local + h * i / 4);
                }
                hold.steps.push_back(local + h);
            }
            None => {
                let rng = &mut self.clients[c].rng;
                let span = remaining * rng.range(5, 60) / 100;
                let k = rng.range(1, 3);
                let mut times: Vec<u64> = (0..k).map(|_| local + rng.range(0, span)).collect();
                times.sort_unstable();
                hold.steps.extend(times);
                hold.steps.push_back(local + span);
            }
        }
        let first = hold.steps.front().copied().unwrap_or(local);
        self.clients[c].work = Work::Holding(hold);
        self.wake_at_local(c, first);
    }

    fn hold_step(&mut self, c: usize, mut hold: Hold) {
        let local = self.local(c);
        let Some(_) = hold.steps.pop_front() else {
            return;
        };
        let valid = hold.lease.is_valid(Instant::from_micros(local));
        if !hold.steps.is_empty() {
            // An action step.
            if valid {
                if self.unsafe_pause_now(c) {
                    let dur = self.frng.range(self.p.ttl * 12 / 10, self.p.ttl * 2);
                    self.pause_client(c, dur, Some(hold.r), "unsafe pause");
                } else if let Some(dur) = self.scripted_pause(c) {
                    self.pause_client(c, dur, Some(hold.r), "scripted pause");
                } else {
                    self.log(|| {
                        format!(
                            "c{c} PROTECTED ACTION on {:?}",
                            String::from_utf8_lossy(RESOURCES[hold.r])
                        )
                    });
                    self.stats.actions += 1;
                    self.checker.act(c, hold.r, self.now);
                }
            }
            let next = hold.steps.front().copied().unwrap_or(local);
            self.clients[c].work = Work::Holding(hold);
            self.wake_at_local(c, next);
            return;
        }
        // The end of the hold: extend, release or walk away.
        if !valid {
            self.checker.end(c, hold.r, self.now);
            self.release(c, hold.lease, true);
            return;
        }
        let scripted = self.sc.script.is_some();
        let roll = self.clients[c].rng.below(100);
        if !scripted && hold.extends_left > 0 && roll < 25 {
            hold.extends_left -= 1;
            let now = Instant::from_micros(local);
            let ttl = Duration::from_micros(self.p.ttl);
            match self.clients[c].core.extend(&hold.lease, ttl, now) {
                Ok(op) => {
                    self.log(|| {
                        format!(
                            "c{c}: extend {:?}",
                            String::from_utf8_lossy(RESOURCES[hold.r])
                        )
                    });
                    self.clients[c].work = Work::Extending { op, hold };
                    self.pump(c);
                }
                Err(_) => {
                    self.checker.end(c, hold.r, self.now);
                    self.release(c, hold.lease, true);
                }
            }
        } else if !scripted && roll >= 95 {
            // Walk away: the lock expires by itself.
            let deadline = hold.lease.deadline().as_micros();
            self.log(|| {
                format!(
                    "c{c}: lets {:?} expire",
                    String::from_utf8_lossy(RESOURCES[hold.r])
                )
            });
            self.stats.cycles += 1;
            let think =
                deadline.saturating_sub(local) + self.clients[c].rng.range(0, self.p.ttl / 3);
            self.idle(c, think);
        } else {
            self.checker.end(c, hold.r, self.now);
            self.release(c, hold.lease, true);
        }
    }

    fn release(&mut self, c: usize, lease: Lease, held: bool) {
        let now = self.instant(c);
        match self.clients[c].core.release(&lease, now) {
            Ok(op) => {
                self.log(|| {
                    format!(
                        "c{c}: release {:?}",
                        String::from_utf8_lossy(lease.resource())
                    )
                });
                self.clients[c].work = Work::Releasing { op, held };
                self.pump(c);
            }
            Err(_) => {
                let think = self.p.ttl / 10;
                self.idle(c, think);
            }
        }
        if self.sc.script.is_some() {
            self.clients[c].scripted_done = true;
        }
    }

    fn pause_client(&mut self, c: usize, dur: u64, action: Option<usize>, why: &str) {
        let until = self.now + dur;
        let cl = &mut self.clients[c];
        if action.is_some() {
            cl.pending_action = action;
        }
        cl.paused_until = cl.paused_until.max(until);
        let until = cl.paused_until;
        self.log(|| format!("c{c} PAUSED ({why}) until {}", secs(until)));
        if let Some(tl) = self.timeline.as_mut() {
            tl.pauses.push((c, self.now, until, action.is_some()));
        }
        self.push(until, Ev::Resume { c });
    }

    fn scripted_pause(&mut self, c: usize) -> Option<u64> {
        let cs = self.sc.script.as_ref()?.clients.get(c)?;
        let d = cs.pause_before_action?;
        if self.clients[c].pending_action.is_some() || self.clients[c].scripted_done {
            return None;
        }
        // Only once.
        self.clients[c].scripted_done = true;
        Some(d.as_micros() as u64)
    }

    fn unsafe_pause_now(&mut self, _c: usize) -> bool {
        match self.pause_arm {
            Some(t) if self.now >= t && self.now + 2 * self.p.ttl < self.p.fault_end => {
                self.pause_arm = Some(self.now + 4 * self.p.ttl);
                self.fault_count("pause (unsafe)");
                true
            }
            _ => false,
        }
    }

    /// After an acquisition: maybe start an amnesia or clock-jump wave.
    fn maybe_unsafe_wave(&mut self, _c: usize) {
        let ttl = self.p.ttl;
        let n = self.nodes.len();
        let q = n / 2 + 1;
        let in_phase = self.now + 2 * ttl < self.p.fault_end;
        for which in [Fault::Amnesia, Fault::ClockJump] {
            let arm = match which {
                Fault::Amnesia => self.amnesia_arm,
                _ => self.jump_arm,
            };
            let Some(t) = arm else { continue };
            if self.now < t || !in_phase || !self.frng.chance(1, 2) {
                continue;
            }
            let next = Some(self.now + 3 * ttl);
            match which {
                Fault::Amnesia => self.amnesia_arm = next,
                _ => self.jump_arm = next,
            }
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                let j = self.frng.index(i + 1);
                order.swap(i, j);
            }
            for &node in order.iter().take(q) {
                let at = self.now + self.frng.range(0, ttl / 20);
                let ev = match which {
                    Fault::Amnesia => FaultEv::Amnesia { n: node },
                    _ => FaultEv::ClockJump {
                        n: node,
                        by: self.frng.range(ttl * 6 / 10, ttl * 12 / 10),
                    },
                };
                self.push(at, Ev::Fault(ev));
            }
        }
    }

    // ------------------------------------------------------------------ faults

    fn schedule_faults(&mut self) {
        let ttl = self.p.ttl;
        let end = self.p.fault_end;
        if let Some(script) = self.sc.script.as_ref() {
            let faults = script.faults.clone();
            for (at, f) in faults {
                let at = at.as_micros() as u64;
                let ev = match f {
                    ScriptFault::Partition {
                        client,
                        node,
                        until,
                    } => FaultEv::Partition {
                        c: client.min(self.clients.len() - 1),
                        n: node.min(self.nodes.len() - 1),
                        to_node: true,
                        to_client: true,
                        until: until.as_micros() as u64,
                    },
                    ScriptFault::ClockJump { node, by } => FaultEv::ClockJump {
                        n: node.min(self.nodes.len() - 1),
                        by: by.as_micros() as u64,
                    },
                    ScriptFault::Crash {
                        node,
                        restart_after,
                        persistent,
                    } => FaultEv::Crash {
                        n: node.min(self.nodes.len() - 1),
                        down: restart_after.as_micros() as u64,
                        persistent,
                    },
                };
                self.push(at, Ev::Fault(ev));
            }
            return;
        }
        if !self.sc.safe_faults {
            return;
        }
        let (nc, nn) = (self.clients.len(), self.nodes.len());
        let f = &mut self.frng;
        let mut evs: Vec<(u64, FaultEv)> = Vec::new();
        // The menu for this seed: each kind is on or off ("swarm").
        if f.chance(1, 2) {
            for _ in 0..f.range(1, 6) {
                let at = f.range(0, end - ttl / 10);
                let until = (at + f.range(ttl / 10, 2 * ttl)).min(end);
                let dir = f.below(5);
                evs.push((
                    at,
                    FaultEv::Partition {
                        c: f.index(nc),
                        n: f.index(nn),
                        to_node: dir != 3,
                        to_client: dir != 4,
                        until,
                    },
                ));
            }
        }
        if f.chance(1, 2) {
            for _ in 0..f.range(1, 8) {
                let at = f.range(0, end);
                evs.push((
                    at,
                    FaultEv::Reset {
                        c: f.index(nc),
                        n: f.index(nn),
                    },
                ));
            }
        }
        if f.chance(1, 2) {
            for _ in 0..f.range(1, 3) {
                let persistent = f.chance(1, 2);
                let down = if persistent {
                    f.range(0, ttl)
                } else {
                    // Redlock's rule: come back empty only after the longest TTL.
                    f.range(ttl + MS, 2 * ttl)
                };
                if down >= end {
                    continue;
                }
                let at = f.range(0, end - down);
                evs.push((
                    at,
                    FaultEv::Crash {
                        n: f.index(nn),
                        down,
                        persistent,
                    },
                ));
            }
        }
        if f.chance(1, 2) {
            for _ in 0..f.range(1, 4) {
                let dur = f.range(MS, (ttl / 20).max(2 * MS));
                let at = f.range(0, end - dur);
                evs.push((
                    at,
                    FaultEv::Pause {
                        c: f.index(nc),
                        dur,
                    },
                ));
            }
        }
        if f.chance(1, 3) {
            for _ in 0..f.range(1, 3) {
                let at = f.range(0, end);
                evs.push((at, FaultEv::ScriptFlush { n: f.index(nn) }));
            }
        }
        for (at, ev) in evs {
            self.push(at, Ev::Fault(ev));
        }
    }

    fn fault(&mut self, f: FaultEv) {
        match f {
            FaultEv::Crash {
                n,
                down,
                persistent,
            } => {
                if !self.nodes[n].up {
                    return;
                }
                self.fault_count(if persistent {
                    "crash (persistent)"
                } else {
                    "crash (restart after a TTL)"
                });
                self.log(|| {
                    format!(
                        "FAULT n{n} crashes (persistent: {persistent}) for {}",
                        secs(down)
                    )
                });
                self.crash(n);
                let id = self.nodes[n].crash_id;
                if let Some(tl) = self.timeline.as_mut() {
                    tl.downs.push((n, self.now, self.now + down, "crash"));
                }
                self.push(
                    self.now + down,
                    Ev::Fault(FaultEv::Restart { n, id, persistent }),
                );
            }
            FaultEv::Restart { n, id, persistent } => {
                if self.nodes[n].up || self.nodes[n].crash_id != id {
                    return;
                }
                self.log(|| format!("FAULT n{n} restarts (keys kept: {persistent})"));
                self.nodes[n].redis.restart(persistent);
                self.nodes[n].up = true;
            }
            FaultEv::Amnesia { n } => {
                if !self.nodes[n].up {
                    return;
                }
                self.fault_count("amnesia (unsafe)");
                self.log(|| format!("FAULT n{n} restarts at once and loses its keys (amnesia)"));
                self.crash(n);
                self.nodes[n].redis.restart(false);
                self.nodes[n].up = true;
                if let Some(tl) = self.timeline.as_mut() {
                    tl.marks.push((n, self.now, "amnesia"));
                }
            }
            FaultEv::ClockJump { n, by } => {
                self.fault_count("clock-jump (unsafe)");
                self.log(|| format!("FAULT n{n}'s clock jumps forward by {}", secs(by)));
                self.nodes[n].clock.offset += by;
                if let Some(tl) = self.timeline.as_mut() {
                    tl.marks.push((n, self.now, "clock jump"));
                }
            }
            FaultEv::Partition {
                c,
                n,
                to_node,
                to_client,
                until,
            } => {
                if until <= self.now {
                    return;
                }
                self.fault_count(if to_node && to_client {
                    "partition"
                } else {
                    "partition (one-way)"
                });
                self.log(|| {
                    format!(
                        "FAULT partition c{c} {} n{n} until {}",
                        match (to_node, to_client) {
                            (true, true) => "<->",
                            (true, false) => "->",
                            _ => "<-",
                        },
                        secs(until)
                    )
                });
                let link = self.link(c, n);
                if to_node {
                    link.block_to_node = link.block_to_node.max(until);
                }
                if to_client {
                    link.block_to_client = link.block_to_client.max(until);
                }
                if let Some(tl) = self.timeline.as_mut() {
                    tl.partitions.push((c, n, self.now, until));
                }
            }
            FaultEv::Reset { c, n } => {
                self.fault_count("connection reset");
                self.log(|| format!("FAULT connection c{c} - n{n} reset"));
                self.reset(c, n);
            }
            FaultEv::ScriptFlush { n } => {
                self.fault_count("script cache flush");
                self.log(|| format!("FAULT n{n} SCRIPT FLUSH"));
                self.nodes[n].redis.flush_scripts();
            }
            FaultEv::Pause { c, dur } => {
                self.fault_count("client pause");
                self.pause_client(c, dur, None, "short pause");
            }
        }
    }

    fn crash(&mut self, n: usize) {
        self.nodes[n].up = false;
        self.nodes[n].crash_id += 1;
        for c in 0..self.clients.len() {
            self.reset(c, n);
        }
    }
}
