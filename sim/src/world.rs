//! The simulation proper: one event queue in true time, nodes, links,
//! clients driving real cores, the fault schedule and the checker.

use core::cmp::{Ordering, Reverse};
use core::time::Duration;
use std::collections::{BinaryHeap, VecDeque};

use redlock_core::{
    Config, Event, FailureKind, Fencing, Instant, Lease, NodeConfig, NodeId, OpId, ResourceSet,
    RetryPolicy, Token,
};

use crate::checker::Checker;
use crate::clock::Clock;
use crate::fencing::{Fences, Grant, Write};
use crate::node::{Exec, ExecKind, Feed, LockRequest, SimNode};
use crate::rng::{stream, SimRng};
use crate::scenario::{
    Choice, Diagnosis, FailureClass, Fault, Outcome, Scenario, ScriptFault, SimCore, Stats,
};
use crate::timeline::Timeline;

const MS: u64 = 1_000;
/// The resources the workload locks: `r` (and `r2`) for single locks, and
/// sets of all three on multi-resource seeds.
pub(crate) const RESOURCES: [&[u8]; 3] = [b"r", b"r2", b"r3"];
/// The sets a client of a multi-resource seed may lock (bit `i` =
/// `RESOURCES[i]`): the overlapping pairs first, then single resources and
/// all three.
const SET_MENU: [u8; 7] = [0b011, 0b110, 0b101, 0b001, 0b010, 0b100, 0b111];
/// The wall clocks' epoch (unix ms at true time 0 before skews): late 2025.
const WALL_EPOCH_MS: i64 = 1_764_000_000_000;

/// The resources of set `set`, by index.
fn bits(set: u8) -> impl Iterator<Item = usize> {
    (0..RESOURCES.len()).filter(move |r| set & (1 << r) != 0)
}

/// A set's name for traces: `"r"` for one resource, `{"r", "r2"}` for more.
fn set_name(set: u8) -> String {
    let names: Vec<String> = bits(set)
        .map(|r| format!("{:?}", String::from_utf8_lossy(RESOURCES[r])))
        .collect();
    if names.len() == 1 {
        names.concat()
    } else {
        format!("{{{}}}", names.join(", "))
    }
}

/// The set of a lease's resources.
fn lease_set(lease: &Lease) -> u8 {
    lease
        .resources()
        .iter()
        .filter_map(|name| RESOURCES.iter().position(|r| *r == name))
        .fold(0, |set, r| set | (1 << r))
}

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
    /// A crash and a restart without persistence after `down` (at least a
    /// TTL): the keys were due to expire anyway, the fence registers are
    /// lost.
    RegisterLoss {
        n: usize,
        down: u64,
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
    /// A reset aimed at a connection with requests in flight.
    MidReset {
        c: usize,
        n: usize,
    },
    /// A key set by a client outside the simulation.
    ForeignKey {
        n: usize,
        hold: u64,
    },
    ScriptFlush {
        n: usize,
    },
    /// A fence register written from outside the simulation.
    Register {
        n: usize,
        value: u64,
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
    Acquiring { op: OpId, set: u8 },
    Holding(Hold),
    Extending { op: OpId, hold: Hold },
    Releasing { op: OpId, held: bool },
    Done,
}

#[derive(Debug)]
struct Hold {
    lease: Lease,
    /// The resources held (bit `r` = `RESOURCES[r]`).
    set: u8,
    /// The fence checker's id of this grant (fenced leases).
    grant: Option<usize>,
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
    /// The action a paused holder performs when it resumes: its set and its
    /// fenced grant.
    pending_action: Option<(u8, Option<usize>)>,
    rng: SimRng,
    tokens: SimRng,
    acquired_after_heal: bool,
    scripted_done: bool,
    /// Why its last acquire after the heal failed (for liveness reports).
    last_failure: Option<String>,
    /// Tokens of the SETs (and acquire scripts) the current acquire
    /// operation wrote.
    op_tokens: Vec<Token>,
    /// When each of `op_tokens` was first written (true time).
    op_sent: Vec<u64>,
    /// (node, token) of the undos of the current operation's attempts that
    /// ran.
    op_undone: Vec<(usize, Token)>,
    /// Tokens of the current operation's attempts that sent round 2.
    op_round2: Vec<Token>,
    /// When the current acquire operation started (true time).
    op_start: u64,
    /// Whether this client's locks are fenced.
    fenced: bool,
    /// The set this client locks (multi-resource seeds), else `None`.
    set: Option<u8>,
    /// Its wall clock (for the fence proposal).
    wall: Wall,
    /// Keys stored by the current acquire operation's SETs.
    op_keys: Vec<Stored>,
}

/// A client's wall clock (unix ms): its own drifting clock plus a skew,
/// stepped at times (as NTP does), backwards too.
#[derive(Clone, Debug, Default)]
struct Wall {
    /// Unix ms when the client's clock read its value at true time 0.
    base: i64,
    /// (true time, step in ms), in time order.
    steps: Vec<(u64, i64)>,
}

/// The shape of one message's delay on the wire (during the fault phase),
/// on top of the seed's base delay and jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Base and jitter only.
    Uniform,
    /// With probability `per_mille`, an extra `scale * 2^g` (times 1..2),
    /// `g` geometric with step probability `step16 / 16`: a Pareto-like
    /// tail of index about 1..2, cut at 3 TTLs.
    HeavyTail {
        per_mille: u64,
        scale: u64,
        step16: u64,
    },
    /// With probability `per_mille`, an extra delay in `lo..=hi` (a slow
    /// mode beside the fast one).
    Bimodal { per_mille: u64, lo: u64, hi: u64 },
}

/// A node whose replies lag for a while.
#[derive(Clone, Copy, Debug)]
struct Slow {
    node: usize,
    from: u64,
    until: u64,
    /// Extra delay per message, drawn in `lo..=hi`.
    lo: u64,
    hi: u64,
    /// Requests to the node lag too (not only its replies).
    both_ways: bool,
}

/// Parameters drawn per seed.
#[derive(Debug)]
struct Params {
    ttl: u64,
    /// The core's node timeout (as `Config::new` sets it).
    node_timeout: u64,
    resources: usize,
    delay_base: u64,
    delay_jitter: u64,
    spike_per_mille: u64,
    split_per_mille: u64,
    shape: Shape,
    slow: Vec<Slow>,
    /// Chance that a request written is followed by a reset of its
    /// connection while it (or its reply) is in flight.
    reset_per_mille: u64,
    /// Holds last this share (percent, range) of the lease's validity.
    hold_pct: (u64, u64),
    /// Connections are independent: after the client closed one, bytes
    /// still in flight on it may reach the node after those of the next
    /// connection (otherwise every byte from a client to a node keeps its
    /// order across reconnects).
    independent: bool,
    fault_end: u64,
    live_deadline: u64,
}

/// What a node did to a resource's key (the recent history of each key,
/// for diagnoses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyOp {
    Stored,
    Refused,
    Deleted { by_body: bool },
    NotOwner { by_body: bool },
    Extend { ok: bool },
    NoScript { release: bool },
}

#[derive(Clone, Copy, Debug)]
struct KeyEv {
    at: u64,
    /// `usize::MAX` for a client outside the simulation.
    client: usize,
    token: Token,
    what: KeyOp,
}

/// Keys that this client's current acquire operation stored.
#[derive(Clone, Copy, Debug)]
struct Stored {
    node: usize,
    token: Token,
    at: u64,
    /// The connection (epoch) its SET came on.
    epoch: u32,
}

const KEY_HISTORY: usize = 16;

struct Trace {
    lines: VecDeque<String>,
    cap: usize,
    /// Faults and lock decisions of the whole run (the last 40).
    key: VecDeque<String>,
    /// Both of the above as they were when the first stale key was seen
    /// (the trace shown if that ends up being the failure).
    at_stale: Option<(VecDeque<String>, VecDeque<String>)>,
    /// Both as they were at the first violation, in a run that goes on
    /// after it (fenced runs).
    at_failure: Option<(VecDeque<String>, VecDeque<String>)>,
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
    register_arm: Option<u64>,
    /// The fence checker and the fenced store (fenced runs).
    fences: Option<Fences>,
    /// Whether the first fence violation was logged.
    fence_logged: bool,
    txbuf: Vec<u8>,
    events: Vec<Event>,
    slow_rng: SimRng,
    reset_rng: SimRng,
    /// `history[node * RESOURCES.len() + r]`: the key's last events.
    history: Vec<VecDeque<KeyEv>>,
    journal: Vec<Exec>,
    /// Undos re-ordered behind a later SET of the same token:
    /// (node, client, token).
    reorders: Vec<(usize, usize, Token)>,
    /// The first operation blocked by its own stale key (reported as a
    /// liveness failure unless a safety violation comes up).
    stale: Option<(String, Diagnosis)>,
    diagnosis: Option<Diagnosis>,
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
        let node_timeout = (ttl / 20).clamp(5 * MS, 1_000 * MS);
        let mut p = Params {
            ttl,
            node_timeout,
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
            shape: Shape::Uniform,
            slow: Vec::new(),
            reset_per_mille: 0,
            hold_pct: (5, 60),
            independent: false,
            fault_end: sc.fault_ttls.max(1) * ttl,
            live_deadline: sc.fault_ttls.max(1) * ttl + 40 * ttl,
        };
        // The network adversarial in time, and the retry policy (drawn
        // after the draws above, so the earlier menu stays reproducible).
        let timing = safe && sc.timing_faults;
        let mut retry = RetryPolicy {
            count: 3,
            delay: Duration::from_micros(ttl / 5),
            jitter: Duration::from_micros(ttl / 5),
            wait: None,
        };
        if timing {
            p.shape = match swarm.below(3) {
                0 => Shape::Uniform,
                1 => Shape::HeavyTail {
                    per_mille: swarm.range(5, 200),
                    scale: swarm.log_range(delay_base, node_timeout / 2),
                    step16: swarm.range(4, 8),
                },
                _ => {
                    let mid = swarm.log_range(node_timeout / 8, 2 * ttl);
                    Shape::Bimodal {
                        per_mille: swarm.range(5, 300),
                        lo: mid / 2,
                        hi: mid * 3 / 2,
                    }
                }
            };
            // Pauses between attempts from 0 up: shorter than a node
            // timeout, and so than late replies, on half of the seeds.
            let (delay, jitter) = match swarm.below(4) {
                0 => (ttl / 5, ttl / 5),
                1 => (
                    0,
                    if swarm.chance(1, 2) {
                        0
                    } else {
                        swarm.range(0, node_timeout)
                    },
                ),
                2 => {
                    let d = swarm.range(0, node_timeout);
                    (d, swarm.range(0, d))
                }
                _ => (swarm.range(0, ttl / 5), swarm.range(0, ttl / 5)),
            };
            if swarm.chance(1, 2) {
                // Short holds: keys come and go while others retry.
                p.hold_pct = (1, 10);
            }
            retry = RetryPolicy {
                count: swarm.range(1, 5) as u32,
                delay: Duration::from_micros(delay),
                jitter: Duration::from_micros(jitter),
                wait: None,
            };
        }
        // Network options added later, from a stream of their own (so the
        // draws above, and the seeds without these options, are unchanged).
        if timing {
            let mut n2 = SimRng::stream(seed, stream::NET_OPTIONS);
            p.independent = n2.chance(1, 2);
        }
        let nodes = (0..nodes_n)
            .map(|_| NodeSt {
                redis: {
                    let mut node = SimNode::new();
                    node.observe(true);
                    node
                },
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
        config.retry = match sc.script.as_ref() {
            Some(script) => script.retry.unwrap_or(RetryPolicy {
                count: u32::MAX,
                delay: Duration::from_micros(ttl / 20),
                jitter: Duration::from_micros(ttl / 50),
                wait: Some(Duration::from_micros(4 * ttl)),
            }),
            None => retry,
        };
        let mut clients: Vec<ClientSt> = (0..clients_n)
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
                    last_failure: None,
                    op_tokens: Vec::new(),
                    op_sent: Vec::new(),
                    op_undone: Vec::new(),
                    op_round2: Vec::new(),
                    op_start: 0,
                    fenced: false,
                    set: None,
                    wall: Wall::default(),
                    op_keys: Vec::new(),
                }
            })
            .collect();
        // Fencing and resource sets, from streams of their own (a seed
        // without them runs exactly as before they existed).
        let fenced = match sc.fencing {
            Choice::Never => false,
            Choice::Always => true,
            Choice::Swarm => !scripted && SimRng::stream(seed, stream::FENCING).chance(1, 2),
        };
        if fenced {
            let mut f = SimRng::stream(seed, stream::FENCING);
            let _ = f.chance(1, 2);
            let mixed = sc.fencing == Choice::Swarm && clients_n > 1 && f.chance(1, 4);
            let first = f.index(clients_n);
            let ttl_ms = (ttl / MS) as i64;
            // How far apart the wall clocks are: synchronised, skewed by up
            // to 10 TTLs, or one client far behind or ahead.
            let skew_mode = f.below(3);
            let far = f.index(clients_n);
            let far_by =
                f.range(3_600_000, 86_400_000) as i64 * if f.chance(1, 2) { -1 } else { 1 };
            for (i, cl) in clients.iter_mut().enumerate() {
                cl.fenced = !mixed || i == first || f.chance(1, 2);
                let skew = match skew_mode {
                    0 => f.range(0, 4) as i64 - 2,
                    1 => f.range(0, 20 * ttl_ms as u64) as i64 - 10 * ttl_ms,
                    _ if i == far => far_by,
                    _ => f.range(0, 4) as i64 - 2,
                };
                cl.wall.base = WALL_EPOCH_MS + skew;
            }
            // Wall clocks stepped during the fault phase, by up to 5 TTLs
            // either way.
            if f.chance(1, 2) && safe {
                for _ in 0..f.range(1, 4) {
                    let c = f.index(clients_n);
                    let at = f.range(0, p.fault_end);
                    let by = f.range(0, 10 * ttl_ms as u64) as i64 - 5 * ttl_ms;
                    clients[c].wall.steps.push((at, by));
                }
                for cl in clients.iter_mut() {
                    cl.wall.steps.sort_unstable();
                }
            }
        }
        let sets = match sc.resource_sets {
            Choice::Never => false,
            Choice::Always => !scripted,
            Choice::Swarm => !scripted && SimRng::stream(seed, stream::SETS).chance(1, 3),
        };
        if sets {
            let mut g = SimRng::stream(seed, stream::SETS);
            let _ = g.chance(1, 3);
            // The three overlapping pairs in turn, or each client's set
            // drawn from the whole menu.
            let ring = g.chance(1, 2);
            for (i, cl) in clients.iter_mut().enumerate() {
                cl.set = Some(if ring {
                    SET_MENU[i % 3]
                } else {
                    SET_MENU[g.index(SET_MENU.len())]
                });
            }
            p.resources = RESOURCES.len();
        }
        // Whether the lock's own assumptions hold: no unsafe fault that
        // breaks them, and no scripted fault that would be one (a clock
        // jump, a restart without persistence before a TTL has passed).
        let lock_safe = !sc.unsafe_faults.iter().any(|f| f.breaks_the_lock())
            && sc.script.as_ref().is_none_or(|s| {
                s.faults.iter().all(|(_, f)| match f {
                    ScriptFault::ClockJump { .. } => false,
                    ScriptFault::Crash {
                        restart_after,
                        persistent,
                        ..
                    } => *persistent || restart_after.as_micros() as u64 > ttl,
                    _ => true,
                })
            });
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
                at_stale: None,
                at_failure: None,
            }),
            timeline: record.then(|| Timeline::new(nodes_n, clients_n, resources)),
            amnesia_arm: None,
            jump_arm: None,
            pause_arm: None,
            register_arm: None,
            fences: fenced.then(|| Fences::new(RESOURCES.len(), lock_safe, record)),
            fence_logged: false,
            txbuf: vec![0u8; 4096],
            events: Vec::new(),
            slow_rng: SimRng::stream(seed, stream::SLOW),
            reset_rng: SimRng::stream(seed, stream::RESETS),
            history: vec![VecDeque::new(); nodes_n * RESOURCES.len()],
            journal: Vec::new(),
            reorders: Vec::new(),
            stale: None,
            diagnosis: None,
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
                "STALE",
                "REORDER",
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

    /// One message's delay on the wire: the base delay, plus the seed's
    /// delay shape during the fault phase.
    fn wire_delay(&mut self) -> u64 {
        let mut d = self.delay();
        if self.now >= self.p.fault_end {
            return d;
        }
        match self.p.shape {
            Shape::Uniform => {}
            Shape::HeavyTail {
                per_mille,
                scale,
                step16,
            } => {
                if self.net.chance(per_mille, 1000) {
                    let mut g = 0;
                    while g < 24 && self.net.chance(step16, 16) {
                        g += 1;
                    }
                    let x = (scale << g).saturating_mul(1024 + self.net.below(1024)) / 1024;
                    d += x.min(3 * self.p.ttl);
                }
            }
            Shape::Bimodal { per_mille, lo, hi } => {
                if self.net.chance(per_mille, 1000) {
                    d += self.net.range(lo, hi);
                }
            }
        }
        d
    }

    /// The extra delay of a message from (`reply`) or to node `n` now, if
    /// the node is slow.
    fn slow_extra(&mut self, n: usize, reply: bool) -> u64 {
        let now = self.now;
        let mut extra = 0;
        for i in 0..self.p.slow.len() {
            let s = self.p.slow[i];
            if s.node == n && s.from <= now && now < s.until && (reply || s.both_ways) {
                extra = extra.max(self.slow_rng.range(s.lo, s.hi));
            }
        }
        extra
    }

    fn local(&self, c: usize) -> u64 {
        self.clients[c].clock.local(self.now)
    }

    fn instant(&self, c: usize) -> Instant {
        Instant::from_micros(self.local(c))
    }

    /// Client `c`'s wall clock now, in unix ms.
    fn unix_ms(&self, c: usize) -> u64 {
        let cl = &self.clients[c];
        let elapsed = cl.clock.local(self.now).saturating_sub(cl.clock.local(0)) / MS;
        let stepped: i64 = cl
            .wall
            .steps
            .iter()
            .take_while(|(at, _)| *at <= self.now)
            .map(|(_, by)| by)
            .sum();
        (cl.wall.base + elapsed as i64 + stepped).max(0) as u64
    }

    /// Keeps the trace as it is now, to be shown for the first violation of
    /// a run that goes on after it.
    fn snapshot(&mut self) {
        if let Some(t) = self.trace.as_mut() {
            if t.at_failure.is_none() {
                t.at_failure = Some((t.lines.clone(), t.key.clone()));
            }
        }
    }

    /// Whether the fence checker has failed; logs its first violation.
    fn fence_failed(&mut self) -> bool {
        let Some(msg) = self
            .fences
            .as_ref()
            .and_then(|f| f.first.as_ref())
            .map(|(kind, msg)| format!("{kind}: {msg}"))
        else {
            return false;
        };
        if !self.fence_logged {
            self.fence_logged = true;
            self.log(|| format!("FENCE VIOLATION: {msg}"));
            // The run stops here: show the trace up to this violation (an
            // earlier violation is among its key events).
            if let Some(t) = self.trace.as_mut() {
                t.at_failure = None;
            }
        }
        true
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
                let slot = n * RESOURCES.len() + u.resource;
                if Self::blocks(node, u.resource, &u.token, u.at) || self.history[slot].is_empty() {
                    format!("n{n} {what}")
                } else {
                    format!("n{n} {what} [history: {}]", self.key_story(slot))
                }
            })
            .collect();
        let reorder = self.reorders.iter().copied().find(|&(n, c, t)| {
            c == u.client
                && t == u.token
                && !Self::blocks(&self.nodes[n], u.resource, &u.token, u.at)
        });
        let cause = match reorder {
            Some((n, c, _)) => {
                self.diagnosis = Some(Diagnosis::UndoReordered { node: n, client: c });
                format!(
                    "; on n{n} the key was deleted by client {c}'s own undo of an earlier attempt, answered NOSCRIPT and re-sent by EVAL behind this attempt's SET of the same token"
                )
            }
            None => String::new(),
        };
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
        ) + &cause;
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
            self.register_arm = arm(Fault::RegisterAmnesia, &mut self);
        }
        self.stats.fenced_runs = u64::from(self.fences.is_some());
        self.stats.set_runs = u64::from(self.clients.iter().any(|c| c.set.is_some()));
        let mut failure = self.main_loop();
        if failure.is_none() && !self.fence_failed() {
            // The beliefs still open when the run stops, up to now.
            failure = self.check_backing();
        }
        if let Some(t) = self.trace.as_mut() {
            if let Some((lines, key)) = t.at_failure.take() {
                t.lines = lines;
                t.key = key;
            }
        }
        if matches!(failure, None | Some((FailureClass::Liveness, _))) {
            // An operation blocked by its own stale key: a liveness failure,
            // reported unless a safety violation came up.
            if let Some((msg, d)) = self.stale.take() {
                failure = Some((FailureClass::Liveness, msg));
                self.diagnosis = Some(d);
                if let Some(t) = self.trace.as_mut() {
                    if let Some((lines, key)) = t.at_stale.take() {
                        t.lines = lines;
                        t.key = key;
                    }
                }
            }
        }
        if failure.is_none() {
            self.diagnosis = None;
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
            if let Some(f) = self.fences.as_mut() {
                tl.rejected = f.rejected.take().unwrap_or_default();
                tl.fence = f.first.as_ref().map(|(kind, _)| kind.to_string());
            }
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
            diagnosis: self.diagnosis,
            fence_failure: self.fences.and_then(|f| f.first),
        }
    }

    /// Runs events until the end of the run. Returns the first violation of
    /// mutual exclusion, quorum backing or liveness, or a livelock. A fenced
    /// run goes on after a violation (to see what the fenced store made of
    /// it) and stops at the first fence violation.
    fn main_loop(&mut self) -> Option<(FailureClass, String)> {
        let scripted = self.sc.script.is_some();
        let keep_going = self.fences.is_some();
        let mut failure: Option<(FailureClass, String)> = None;
        while let Some(Reverse(item)) = self.queue.pop() {
            self.now = item.time;
            self.stats.steps += 1;
            if self.stats.steps > self.sc.max_steps {
                return failure.or(Some((
                    FailureClass::Livelock,
                    format!(
                        "livelock: more than {} events by {}",
                        self.sc.max_steps,
                        secs(self.now)
                    ),
                )));
            }
            fnv(&mut self.hash, item.time);
            // Quorum backing of every open belief, up to now, with the node
            // state the previous event left.
            if failure.is_none() {
                if let Some(f) = self.check_backing() {
                    if !keep_going {
                        return Some(f);
                    }
                    self.snapshot();
                    failure = Some(f);
                }
            }
            self.dispatch(item.ev);
            if let (None, Some(o)) = (&failure, self.checker.first.clone()) {
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
                if !keep_going {
                    return Some((FailureClass::Safety, msg));
                }
                self.snapshot();
                failure = Some((FailureClass::Safety, msg));
            }
            if self.fence_failed() {
                return failure;
            }
            if !scripted {
                if self.now >= self.p.fault_end
                    && self.clients.iter().all(|c| c.acquired_after_heal)
                {
                    return failure;
                }
                if self.now > self.p.live_deadline {
                    if failure.is_some() {
                        return failure;
                    }
                    let missing: Vec<String> = (0..self.clients.len())
                        .filter(|&c| !self.clients[c].acquired_after_heal)
                        .map(|c| match self.clients[c].set {
                            Some(set) => format!("{c} ({})", set_name(set)),
                            None => c.to_string(),
                        })
                        .collect();
                    let last: Vec<String> = (0..self.clients.len())
                        .filter(|&c| !self.clients[c].acquired_after_heal)
                        .filter_map(|c| {
                            let e = self.clients[c].last_failure.as_ref()?;
                            Some(format!("; client {c}'s last acquire failed: {e}"))
                        })
                        .collect();
                    return Some((
                        FailureClass::Liveness,
                        format!(
                            "liveness: client(s) {} never acquired between the heal at {} and {}{}",
                            missing.join(", "),
                            secs(self.p.fault_end),
                            secs(self.p.live_deadline),
                            last.concat(),
                        ),
                    ));
                }
            } else if self.clients.iter().all(|c| matches!(c.work, Work::Done))
                && self.now > self.p.fault_end
            {
                return failure;
            }
        }
        failure
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
                if let Some((set, grant)) = self.clients[c].pending_action.take() {
                    // The unsafe pause: act as holder without checking again.
                    self.log(|| {
                        format!(
                            "c{c} PROTECTED ACTION on {} (after its pause, unchecked)",
                            set_name(set)
                        )
                    });
                    self.act(c, set, grant, false);
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
        let mut at = self.now + self.wire_delay() + self.slow_extra(n, false);
        let block = self.link(c, n).block_to_node;
        if self.now < block {
            at = at.max(block + self.delay());
        }
        let link = self.link(c, n);
        at = at.max(link.last_to_node);
        link.last_to_node = at;
        self.push(at, Ev::ToNode { c, n, epoch, data });
        if self.p.reset_per_mille > 0
            && self.now < self.p.fault_end
            && self.reset_rng.chance(self.p.reset_per_mille, 1000)
        {
            // Reset the connection while this request, or its reply, is
            // in flight.
            let span = 2 * (at - self.now) + 1;
            let when = self.now + self.reset_rng.below(span);
            self.push(when, Ev::Fault(FaultEv::MidReset { c, n }));
        }
    }

    fn send_to_client(&mut self, c: usize, n: usize, epoch: u32, mut data: Vec<u8>) {
        let mut at = self.now + self.wire_delay() + self.slow_extra(n, true);
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
        self.observe(n);
        if live && !out.is_empty() {
            self.send_to_client(c, n, epoch, out);
        }
        if feed == Feed::Close {
            self.reset(c, n);
        }
    }

    // ------------------------------------------------------------------ key history

    /// Reads what node `n` just executed on the lock keys: the keys'
    /// history, operations blocked by their own stale keys, and undos
    /// re-ordered behind a later SET.
    fn observe(&mut self, n: usize) {
        let mut journal = std::mem::take(&mut self.journal);
        self.nodes[n].redis.take_journal(&mut journal);
        for e in journal.drain(..) {
            self.on_exec(n, e);
        }
        self.journal = journal;
    }

    fn on_exec(&mut self, n: usize, e: Exec) {
        let Some(r) = RESOURCES.iter().position(|k| *k == e.key.as_slice()) else {
            return;
        };
        let Some(token) = Token::from_bytes(&e.token) else {
            return;
        };
        let c = usize::try_from(e.conn >> 32)
            .ok()
            .filter(|&c| c < self.clients.len());
        // Whether this command carries a token of the client's current
        // acquire operation (tokens are noted when its SETs are written).
        let acquiring = c.is_some_and(|c| self.clients[c].op_tokens.contains(&token));
        let slot = n * RESOURCES.len() + r;
        let what = match e.what {
            ExecKind::Set { stored: true, .. } => {
                if let (Some(c), true) = (c, acquiring) {
                    self.clients[c].op_keys.push(Stored {
                        node: n,
                        token,
                        at: self.now,
                        epoch: e.conn as u32,
                    });
                }
                KeyOp::Stored
            }
            ExecKind::Set {
                stored: false,
                holder,
            } => {
                if let (Some(c), true, Some(h)) =
                    (c, acquiring, holder.as_deref().and_then(Token::from_bytes))
                {
                    self.own_stale_key(n, r, c, token, h, e.conn as u32);
                }
                KeyOp::Refused
            }
            ExecKind::Release { by_body, deleted } => {
                if let (Some(c), true) = (c, acquiring) {
                    self.clients[c].op_undone.push((n, token));
                }
                if let (Some(c), true, true) = (c, by_body, deleted) {
                    if self.reordered(slot, c, &token) {
                        self.reorders.push((n, c, token));
                        self.log(|| {
                            format!(
                                "REORDER n{n}: c{c}'s undo of {}, re-sent by EVAL after NOSCRIPT, deleted the key a later SET of the same token stored",
                                token.as_str()
                            )
                        });
                    }
                }
                if deleted {
                    KeyOp::Deleted { by_body }
                } else {
                    KeyOp::NotOwner { by_body }
                }
            }
            ExecKind::Extend { extended, .. } => KeyOp::Extend { ok: extended },
            ExecKind::NoScript { release } => {
                self.stats.noscript += 1;
                KeyOp::NoScript { release }
            }
        };
        let h = &mut self.history[slot];
        if h.len() == KEY_HISTORY {
            h.pop_front();
        }
        h.push_back(KeyEv {
            at: self.now,
            client: c.unwrap_or(usize::MAX),
            token,
            what,
        });
    }

    /// Whether a release by body from `c` with `token`, deleting the key
    /// now, is a re-ordered undo: in the key's history, `c` stored `token`
    /// *after* an `EVALSHA` release of `token` from `c` had been answered
    /// `NOSCRIPT` and not yet re-sent (each release by body that ran since
    /// accounts for one earlier `NOSCRIPT`).
    fn reordered(&self, slot: usize, c: usize, token: &Token) -> bool {
        let mut stored = false;
        let mut resent = 0u32;
        for ev in self.history[slot].iter().rev() {
            if ev.client != c || ev.token != *token {
                continue;
            }
            match ev.what {
                KeyOp::Stored => stored = true,
                KeyOp::Deleted { by_body: true } | KeyOp::NotOwner { by_body: true } => resent += 1,
                KeyOp::NoScript { release: true } if resent > 0 => resent -= 1,
                KeyOp::NoScript { release: true } => return stored,
                _ => {}
            }
        }
        false
    }

    /// Client `c`'s SET for `r` on `n` with token `refused` (on connection
    /// `epoch`) was refused because the key holds `holder`: report it if
    /// its own current operation stored that key with an earlier attempt
    /// (a SET of an earlier attempt that arrives late, on a closed
    /// connection, and finds a later attempt's key is not blocking anyone).
    fn own_stale_key(
        &mut self,
        n: usize,
        r: usize,
        c: usize,
        refused: Token,
        holder: Token,
        epoch: u32,
    ) {
        if self.stale.is_some() || !matches!(self.clients[c].work, Work::Acquiring { .. }) {
            return;
        }
        let tokens = &self.clients[c].op_tokens;
        let position = |t: &Token| tokens.iter().position(|x| x == t);
        if position(&refused) <= position(&holder) && refused != holder {
            return;
        }
        // A SET that came on a connection the client has since replaced
        // belongs to an attempt that is over: the undos of the earlier
        // attempts are owed on the new connection and may simply not have
        // arrived yet (another connection, any order). Only a refusal of a
        // SET sent on the current connection says an undo went missing.
        if self.link(c, n).epoch != epoch {
            self.log(|| {
                format!(
                    "c{c}'s late SET for {:?} (on a connection it has replaced) was refused on n{n} by its own earlier attempt's key; that key's undo is owed on the new connection",
                    String::from_utf8_lossy(RESOURCES[r])
                )
            });
            return;
        }
        let Some(k) = self.clients[c]
            .op_keys
            .iter()
            .rev()
            .find(|k| k.node == n && k.token == holder)
            .copied()
        else {
            return;
        };
        let reconnected = k.epoch != epoch;
        let slot = n * RESOURCES.len() + r;
        // The undo ran before the key was stored (an undo that ran after
        // would have deleted it): the SET was still in flight on a closed
        // connection and the undo, sent on the next one, overtook it. The
        // core cannot do better (nothing tells it the SET has yet to land);
        // the key lives out its TTL.
        let overtaken = self.clients[c].op_undone.contains(&(n, holder));
        if overtaken {
            self.log(|| {
                format!(
                    "c{c}'s acquire of {:?} was refused on n{n} by its own earlier attempt's key, whose undo had overtaken its SET on another connection",
                    String::from_utf8_lossy(RESOURCES[r])
                )
            });
            return;
        }
        let undo_noscript = self.history[slot].iter().any(|ev| {
            ev.client == c
                && ev.token == holder
                && ev.at >= k.at
                && ev.what == KeyOp::NoScript { release: true }
        });
        let why = if undo_noscript {
            "its undo was answered NOSCRIPT and had not been re-sent before this SET"
        } else if reconnected {
            "the connection dropped after that SET and no undo was sent after the reconnect"
        } else {
            "no undo of it reached the node"
        };
        let msg = format!(
            "liveness: client {c}'s acquire of {:?} was refused on n{n} at {} by its own earlier attempt's key (token {}, stored at {}): {why}; key history: {}",
            String::from_utf8_lossy(RESOURCES[r]),
            secs(self.now),
            holder.as_str(),
            secs(k.at),
            self.key_story(slot),
        );
        self.log(|| format!("STALE KEY: {msg}"));
        if let Some(t) = self.trace.as_mut() {
            t.at_stale = Some((t.lines.clone(), t.key.clone()));
        }
        self.stale = Some((
            msg,
            Diagnosis::OwnStaleKey {
                node: n,
                client: c,
                reconnected,
                undo_noscript,
            },
        ));
    }

    /// The recent history of one key, readable.
    fn key_story(&self, slot: usize) -> String {
        let h = &self.history[slot];
        if h.is_empty() {
            return "(none)".to_string();
        }
        h.iter()
            .map(|ev| {
                let who = if ev.client == usize::MAX {
                    "foreign".to_string()
                } else {
                    format!("c{}", ev.client)
                };
                let tok: String = ev.token.as_str().chars().take(8).collect();
                let what = match ev.what {
                    KeyOp::Stored => "SET stored",
                    KeyOp::Refused => "SET refused",
                    KeyOp::Deleted { by_body: true } => "EVAL release deleted",
                    KeyOp::Deleted { by_body: false } => "EVALSHA release deleted",
                    KeyOp::NotOwner { .. } => "release found another token",
                    KeyOp::Extend { ok: true } => "extend extended",
                    KeyOp::Extend { ok: false } => "extend found another token",
                    KeyOp::NoScript { release: true } => "EVALSHA release NOSCRIPT",
                    KeyOp::NoScript { release: false } => "EVALSHA extend NOSCRIPT",
                };
                format!("{} {who} {what} ({tok}…)", secs(ev.at))
            })
            .collect::<Vec<_>>()
            .join("; ")
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
                if matches!(self.clients[c].work, Work::Acquiring { .. }) {
                    let now = self.now;
                    let cl = &mut self.clients[c];
                    crate::node::lock_requests(&data, |req| match req {
                        LockRequest::Take(token) => {
                            if let Some(t) = Token::from_bytes(token) {
                                if !cl.op_tokens.contains(&t) {
                                    cl.op_tokens.push(t);
                                    cl.op_sent.push(now);
                                }
                            }
                        }
                        LockRequest::FenceWrite(token) => {
                            if let Some(t) = Token::from_bytes(token) {
                                if !cl.op_round2.contains(&t) {
                                    cl.op_round2.push(t);
                                }
                            }
                        }
                    });
                }
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
                let independent = self.p.independent;
                let link = self.link(c, n);
                link.epoch += 1;
                let epoch = link.epoch;
                link.st = LinkSt::Connecting(epoch);
                if independent {
                    // A new TCP connection: its bytes are not ordered
                    // behind those still in flight on the closed one.
                    link.last_to_node = now;
                    link.last_to_client = now;
                }
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
                    if self.now >= self.p.fault_end {
                        self.clients[c].last_failure = Some(error.to_string());
                    }
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
                            format!("c{c}: EXTENDED {} until {}", set_name(hold.set), secs(end))
                        });
                        for r in bits(hold.set) {
                            self.checker.believe(c, r, self.now, end, *lease.token());
                        }
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
                        self.end_belief(c, hold.set);
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
        let set = match self.clients[c].set {
            Some(set) => set,
            None => {
                if self.p.resources > 1 && self.clients[c].rng.chance(1, 4) {
                    0b10
                } else {
                    0b01
                }
            }
        };
        let now = self.instant(c);
        let fenced = self.clients[c].fenced;
        let unix_ms = if fenced { self.unix_ms(c) } else { 0 };
        let start = self.now;
        let cl = &mut self.clients[c];
        cl.op_keys.clear();
        cl.op_tokens.clear();
        cl.op_sent.clear();
        cl.op_undone.clear();
        cl.op_round2.clear();
        cl.op_start = start;
        let started = if set.count_ones() == 1 && !fenced {
            cl.core.acquire(
                RESOURCES[bits(set).next().unwrap_or(0)],
                &mut cl.tokens,
                now,
            )
        } else {
            // The names in any order, sometimes repeated: the core
            // normalises them.
            let mut names: Vec<&[u8]> = bits(set).map(|r| RESOURCES[r]).collect();
            if names.len() > 1 {
                for i in (1..names.len()).rev() {
                    let j = cl.rng.index(i + 1);
                    names.swap(i, j);
                }
                if cl.rng.chance(1, 3) {
                    names.push(names[0]);
                }
            }
            let mut options = cl.core.config().acquire_options();
            if fenced {
                options.fencing = Fencing::On { unix_ms };
            }
            ResourceSet::new(&names).and_then(|resources| {
                cl.core
                    .acquire_set(&resources, &options, &mut cl.tokens, now)
            })
        };
        match started {
            Ok(op) => {
                cl.work = Work::Acquiring { op, set };
                self.log(|| {
                    if fenced {
                        format!(
                            "c{c}: acquire {} (fenced, wall clock {unix_ms} ms)",
                            set_name(set)
                        )
                    } else {
                        format!("c{c}: acquire {}", set_name(set))
                    }
                });
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
        let set = match self.clients[c].work {
            Work::Acquiring { op: o, set } if o == op => set,
            _ => {
                // Not ours to hold (cannot happen): release it.
                self.release(c, lease, false);
                return;
            }
        };
        self.stats.acquisitions += 1;
        if set.count_ones() > 1 {
            self.stats.set_acquisitions += 1;
        }
        if self.now >= self.p.fault_end {
            self.clients[c].acquired_after_heal = true;
        }
        let end = self.clients[c]
            .clock
            .true_at(lease.deadline().as_micros(), self.now);
        let grant = lease
            .fence()
            .map(|f| self.fence_grant(c, set, f, lease.token()));
        let fence = match (lease.fence(), grant) {
            (Some(f), Some((_, true))) => format!(", fence {f} (round 2)"),
            (Some(f), _) => format!(", fence {f}"),
            _ => String::new(),
        };
        self.log(|| {
            format!(
                "c{c}: ACQUIRED {} until {} (validity {} on its clock from the attempt's start){fence}",
                set_name(set),
                secs(end),
                secs(lease.deadline().as_micros() - lease.start().as_micros()),
            )
        });
        for r in bits(set) {
            self.checker.believe(c, r, self.now, end, *lease.token());
        }
        self.maybe_unsafe_wave(c);
        let extends_left = if self.sc.script.is_some() { 0 } else { 2 };
        let hold = Hold {
            lease,
            set,
            grant: grant.map(|(id, _)| id),
            steps: VecDeque::new(),
            extends_left,
        };
        self.plan_hold(c, hold);
    }

    /// Records a fenced grant with the fence checker: its id, and whether
    /// it needed round 2.
    fn fence_grant(&mut self, c: usize, set: u8, fence: u64, token: &Token) -> (usize, bool) {
        let cl = &self.clients[c];
        let started = cl
            .op_tokens
            .iter()
            .position(|t| t == token)
            .and_then(|i| cl.op_sent.get(i).copied())
            .unwrap_or(cl.op_start);
        let round2 = cl.op_round2.contains(token);
        self.stats.fenced_grants += 1;
        self.stats.round2 += u64::from(round2);
        let g = Grant {
            client: c,
            set,
            fence,
            started,
            confirmed: self.now,
        };
        let id = match self.fences.as_mut() {
            Some(f) => f.grant(g),
            None => usize::MAX,
        };
        (id, round2)
    }

    /// Client `c` acts as holder of `set` now: for the mutual-exclusion
    /// checker, and, fenced, as a write of each resource to the fenced
    /// store (`valid`: its lease was valid on its clock when it decided).
    fn act(&mut self, c: usize, set: u8, grant: Option<usize>, valid: bool) {
        self.stats.actions += 1;
        for r in bits(set) {
            self.checker.act(c, r, self.now);
            let (Some(g), Some(f)) = (grant, self.fences.as_mut()) else {
                continue;
            };
            match f.write(g, r, self.now, valid) {
                Write::Accepted => {
                    self.stats.store_accepted += 1;
                    self.log(|| {
                        format!(
                            "c{c} STORE accepts its write to {:?}",
                            String::from_utf8_lossy(RESOURCES[r])
                        )
                    });
                }
                Write::Rejected { highest } => {
                    self.stats.store_rejected += 1;
                    self.log(|| {
                        format!(
                            "c{c} STORE REJECTS its write to {:?}: stale fence (a write with fence {highest} was accepted)",
                            String::from_utf8_lossy(RESOURCES[r])
                        )
                    });
                }
            }
        }
    }

    /// Client `c`'s belief in every resource of `set` ends now.
    fn end_belief(&mut self, c: usize, set: u8) {
        for r in bits(set) {
            self.checker.end(c, r, self.now);
        }
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
                let (lo, hi) = self.p.hold_pct;
                let span = remaining * rng.range(lo, hi) / 100;
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
                    self.pause_client(c, dur, Some((hold.set, hold.grant)), "unsafe pause");
                } else if let Some(dur) = self.scripted_pause(c) {
                    self.pause_client(c, dur, Some((hold.set, hold.grant)), "scripted pause");
                } else {
                    self.log(|| format!("c{c} PROTECTED ACTION on {}", set_name(hold.set)));
                    self.act(c, hold.set, hold.grant, true);
                }
            }
            let next = hold.steps.front().copied().unwrap_or(local);
            self.clients[c].work = Work::Holding(hold);
            self.wake_at_local(c, next);
            return;
        }
        // The end of the hold: extend, release or walk away.
        if !valid {
            self.end_belief(c, hold.set);
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
                    self.log(|| format!("c{c}: extend {}", set_name(hold.set)));
                    self.clients[c].work = Work::Extending { op, hold };
                    self.pump(c);
                }
                Err(_) => {
                    self.end_belief(c, hold.set);
                    self.release(c, hold.lease, true);
                }
            }
        } else if !scripted && roll >= 95 {
            // Walk away: the lock expires by itself.
            let deadline = hold.lease.deadline().as_micros();
            self.log(|| format!("c{c}: lets {} expire", set_name(hold.set)));
            self.stats.cycles += 1;
            let think =
                deadline.saturating_sub(local) + self.clients[c].rng.range(0, self.p.ttl / 3);
            self.idle(c, think);
        } else {
            self.end_belief(c, hold.set);
            self.release(c, hold.lease, true);
        }
    }

    fn release(&mut self, c: usize, lease: Lease, held: bool) {
        let now = self.instant(c);
        match self.clients[c].core.release(&lease, now) {
            Ok(op) => {
                self.log(|| format!("c{c}: release {}", set_name(lease_set(&lease))));
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

    fn pause_client(&mut self, c: usize, dur: u64, action: Option<(u8, Option<usize>)>, why: &str) {
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
        for which in [Fault::Amnesia, Fault::ClockJump, Fault::RegisterAmnesia] {
            let arm = match which {
                Fault::Amnesia => self.amnesia_arm,
                Fault::ClockJump => self.jump_arm,
                _ => self.register_arm,
            };
            let Some(t) = arm else { continue };
            if self.now < t || !in_phase || !self.frng.chance(1, 2) {
                continue;
            }
            let next = Some(self.now + 3 * ttl);
            match which {
                Fault::Amnesia => self.amnesia_arm = next,
                Fault::ClockJump => self.jump_arm = next,
                _ => self.register_arm = next,
            }
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                let j = self.frng.index(i + 1);
                order.swap(i, j);
            }
            // A quorum of nodes; register amnesia sometimes hits them all
            // (a restart of the whole deployment without AOF).
            let hit = if which == Fault::RegisterAmnesia && self.frng.chance(1, 2) {
                n
            } else {
                q
            };
            for &node in order.iter().take(hit) {
                let at = self.now + self.frng.range(0, ttl / 20);
                let ev = match which {
                    Fault::Amnesia => FaultEv::Amnesia { n: node },
                    Fault::ClockJump => FaultEv::ClockJump {
                        n: node,
                        by: self.frng.range(ttl * 6 / 10, ttl * 12 / 10),
                    },
                    _ => FaultEv::RegisterLoss {
                        n: node,
                        down: self.frng.range(ttl + MS, 2 * ttl),
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
                    ScriptFault::ScriptFlush { node } => FaultEv::ScriptFlush {
                        n: node.min(self.nodes.len() - 1),
                    },
                    ScriptFault::SlowReplies { node, until, extra } => {
                        let extra = extra.as_micros() as u64;
                        self.p.slow.push(Slow {
                            node: node.min(self.nodes.len() - 1),
                            from: at,
                            until: until.as_micros() as u64,
                            lo: extra,
                            hi: extra,
                            both_ways: false,
                        });
                        continue;
                    }
                    ScriptFault::ForeignKey { node, hold } => FaultEv::ForeignKey {
                        n: node.min(self.nodes.len() - 1),
                        hold: hold.as_micros() as u64,
                    },
                    ScriptFault::FenceRegister { node, value } => FaultEv::Register {
                        n: node.min(self.nodes.len() - 1),
                        value,
                    },
                    ScriptFault::Reset { client, node } => FaultEv::Reset {
                        c: client.min(self.clients.len() - 1),
                        n: node.min(self.nodes.len() - 1),
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
        // Fencing needs its registers never lost: on a fenced seed every
        // node persists (AOF, `appendfsync always`), so a crash keeps them.
        // (Losing them is the unsafe fault `register-amnesia`.)
        let aof = self.fences.is_some();
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
                        persistent: persistent || aof,
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
        if self.sc.timing_faults {
            let nt = self.p.node_timeout;
            // A slow node: its replies (sometimes its requests too) lag by
            // an eighth of a node timeout up to 3 TTLs, for seconds.
            if f.chance(1, 2) {
                for _ in 0..f.range(1, 2) {
                    let from = f.range(0, end - ttl / 2);
                    let dur = f.range(ttl.max(500 * MS), (4 * ttl).max(3_000 * MS));
                    let until = (from + dur).min(end);
                    let mid = f.log_range(nt / 8, 3 * ttl);
                    let node = f.index(nn);
                    self.p.slow.push(Slow {
                        node,
                        from,
                        until,
                        lo: mid / 2,
                        hi: mid * 3 / 2,
                        both_ways: f.chance(1, 3),
                    });
                    if f.chance(1, 2) {
                        // Its script cache is flushed again and again
                        // meanwhile (a failover, an operator).
                        let every = f.log_range(nt / 4, ttl);
                        let mut t = from + f.range(0, every);
                        while t < until {
                            evs.push((t, FaultEv::ScriptFlush { n: node }));
                            t += f.range(every / 2, every * 3 / 2).max(MS);
                        }
                    }
                }
            }
            // Script flushes at any moment, often.
            if f.chance(1, 2) {
                let every = f.log_range(nt / 2, 2 * ttl);
                let one = f.chance(1, 2).then(|| f.index(nn));
                let mut t = f.range(0, every);
                while t < end {
                    let n = one.unwrap_or_else(|| f.index(nn));
                    evs.push((t, FaultEv::ScriptFlush { n }));
                    t += f.range(every / 2, every * 3 / 2).max(MS);
                }
            }
            // Connections reset while requests are in flight.
            if f.chance(1, 2) {
                self.p.reset_per_mille = f.range(1, 40);
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
            FaultEv::RegisterLoss { n, down } => {
                if !self.nodes[n].up {
                    return;
                }
                self.fault_count("register-amnesia (unsafe)");
                self.log(|| {
                    format!(
                        "FAULT n{n} crashes and restarts without persistence after {}: its lock keys expire anyway, its fence registers are lost (register amnesia)",
                        secs(down)
                    )
                });
                self.crash(n);
                let id = self.nodes[n].crash_id;
                if let Some(tl) = self.timeline.as_mut() {
                    tl.downs
                        .push((n, self.now, self.now + down, "register amnesia"));
                    tl.marks.push((n, self.now + down, "register amnesia"));
                }
                self.push(
                    self.now + down,
                    Ev::Fault(FaultEv::Restart {
                        n,
                        id,
                        persistent: false,
                    }),
                );
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
            FaultEv::MidReset { c, n } => {
                self.fault_count("connection reset (mid-pipeline)");
                self.log(|| format!("FAULT connection c{c} - n{n} reset, requests in flight"));
                self.reset(c, n);
            }
            FaultEv::ForeignKey { n, hold } => {
                if !self.nodes[n].up {
                    return;
                }
                self.fault_count("foreign holder");
                let ms = (hold / MS).max(1).to_string();
                let set = format!(
                    "*6\r\n$3\r\nSET\r\n$1\r\nr\r\n$7\r\nforeign\r\n$2\r\nNX\r\n$2\r\nPX\r\n${}\r\n{ms}\r\n",
                    ms.len()
                );
                let now_ms = self.node_ms(n);
                let mut out = Vec::new();
                self.nodes[n]
                    .redis
                    .feed(u64::MAX, now_ms, set.as_bytes(), &mut out);
                self.nodes[n].redis.close(u64::MAX);
                self.log(|| {
                    format!(
                        "FAULT n{n}: a foreign client holds \"r\" for {}: {}",
                        secs(hold),
                        show(&out)
                    )
                });
                self.observe(n);
            }
            FaultEv::Register { n, value } => {
                if !self.nodes[n].up {
                    return;
                }
                self.fault_count("fence register set");
                let v = value.to_string();
                let set = format!(
                    "*3\r\n$3\r\nSET\r\n$9\r\n{{r}}:fence\r\n${}\r\n{v}\r\n",
                    v.len()
                );
                let now_ms = self.node_ms(n);
                let mut out = Vec::new();
                self.nodes[n]
                    .redis
                    .feed(u64::MAX, now_ms, set.as_bytes(), &mut out);
                self.nodes[n].redis.close(u64::MAX);
                self.log(|| {
                    format!(
                        "FAULT n{n}: the fence register of \"r\" is set to {v}: {}",
                        show(&out)
                    )
                });
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
            // The process and its sockets are gone: bytes still in flight
            // on a connection the client had closed are not delivered to
            // the restarted node either (its kernel answers them with RST).
            self.link(c, n).graceful = u32::MAX;
        }
    }
}
