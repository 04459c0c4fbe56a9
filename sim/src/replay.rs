//! Explicit schedules: real cores and simulated nodes driven step by step,
//! with every choice (which connection delivers next, when time moves, which
//! fault strikes) written down, so a run can be replayed exactly.
//!
//! This is the ground both methods stand on. The model checker
//! (`redlock-mc`) enumerates the schedules of a [`Rig`] within fault budgets;
//! [`replay`] runs one schedule and judges it with the simulator's own
//! mutual-exclusion and quorum-backing checker (`checker.rs`), plus the
//! fencing, event and cleanup checks below. A counterexample the model
//! checker finds is exported as a [`Schedule`] (a small text format) and a
//! test in `sim/tests/` replays it here, so the two agree on what a trace
//! means.
//!
//! ## The world of a rig
//! * **Nodes**: [`SimNode`]s with their own linear clocks (a rate error in
//!   ppm), up or crashed (keys kept or lost), one resource `r` and its fence
//!   register `{r}:fence`.
//! * **Connections**: one per (client, node), a FIFO of byte chunks each way
//!   (one chunk per `poll_transmit` or per node reply). Chunks on one
//!   connection stay in order; connections interleave freely. A connection
//!   the core closes itself ([`Event::Disconnect`]) keeps the bytes already
//!   written: they still reach the node (TCP delivers before the FIN), in
//!   their own order, unordered with any later connection, and the replies
//!   are lost. A reset (fault) loses what was in flight both ways; the
//!   client notices in a later step.
//! * **Connecting** is immediate: a `Connect` directive succeeds at once if
//!   the node is up and fails at once (`handle_node_down`) if it is not.
//! * **Clients** drain their core by the contract after every input
//!   (`poll_transmit` until `None`, then `poll_event` until `None`, again
//!   while anything happened) and run one lock cycle: acquire `r` (with the
//!   setup's retries; fenced if the setup says so), hold, maybe extend once,
//!   release (also after a lost extension), done.
//! * **Time** is true time in microseconds and moves only by an explicit
//!   [`Step::At`]. Each client reads it through its own linear clock; node
//!   clocks give the milliseconds Redis expires keys with.
//! * **A foreign client** ([`Setup::foreign`], optional) stands for a client
//!   outside the rig that held the lock before true time 0: its keys sit on
//!   some nodes until they expire, and it believes it holds the lock while a
//!   quorum of nodes holds them. A belief of a client of the rig that starts
//!   before that is a mutual-exclusion violation; its keys are not "left
//!   behind" (nobody here could remove them). It is what a second client
//!   would do to the first, without the second client's state space.
//!
//! ```
//! use redlock_sim::replay::{replay, Schedule, Setup, Step};
//! let setup = Setup::default();
//! let steps = vec![
//!     Step::Acquire { client: 0, zero_pause: false },
//!     Step::ToNode { client: 0, node: 0 },
//!     Step::ToNode { client: 0, node: 1 },
//!     Step::ToClient { client: 0, node: 0 },
//!     Step::ToClient { client: 0, node: 1 },
//!     Step::Release { client: 0 },
//! ];
//! let schedule = Schedule { setup, steps };
//! let text = schedule.to_string();
//! let again: Schedule = text.parse().unwrap();
//! assert_eq!(again, schedule);
//! let report = replay(&again, None).unwrap();
//! assert!(report.violations.is_empty(), "{:?}", report.violations);
//! ```

use core::fmt;
use core::str::FromStr;
use core::time::Duration;
use std::collections::VecDeque;

use redlock_core::rand_core::{TryCryptoRng, TryRng};
use redlock_core::{
    fence_register, AcquireOptions, Config, Event, Fencing, Instant, Lease, NodeConfig, NodeId,
    Redlock, ResourceSet, RetryPolicy, Token, Weakness,
};

use crate::checker::Checker;
use crate::clock::Clock;
use crate::node::{Feed, SimNode};

/// The core every client of a rig runs: room for an acquire, an extend and
/// a release at once, 16 requests in flight per node (so new work is never
/// refused for want of room behind a few unanswered requests).
///
/// ```
/// use redlock_sim::replay::{ModelCore, Setup};
/// let nodes = vec![redlock_core::NodeConfig::default(); 3];
/// assert!(ModelCore::new(Setup::default().config(), &nodes).is_ok());
/// ```
pub type ModelCore = Redlock<3, 16>;

/// The one resource every client locks.
///
/// ```
/// use redlock_sim::replay::{Rig, Setup, RESOURCE};
/// assert_eq!(RESOURCE, b"r");
/// let rig = Rig::new(&Setup::default(), None).unwrap();
/// assert_eq!(rig.lock_key(0), None); // nobody holds it yet
/// ```
pub const RESOURCE: &[u8] = b"r";

/// Called on each client's core right after construction, with the setup's
/// weakness (tests use it to plant bugs through feature `__weaken`).
///
/// ```
/// use redlock_core::Weakness;
/// use redlock_sim::replay::{CoreHook, ModelCore, Rig, Setup};
/// fn plant(core: &mut ModelCore, weak: Weakness) {
///     core.weaken_with(weak); // feature `__weaken` of redlock-core
/// }
/// let hook: CoreHook = plant;
/// let weakness = Weakness { no_drift: true, ..Weakness::default() };
/// assert!(Rig::new(&Setup { weakness, ..Setup::default() }, Some(hook)).is_ok());
/// ```
pub type CoreHook = fn(&mut ModelCore, Weakness);

/// A linear clock (the simulator's): `local(t) = offset + t + t * ppm / 1e6`.
///
/// ```
/// use redlock_sim::replay::LinearClock;
/// let fast = LinearClock { ppm: 2_000, offset: 0 };
/// assert_eq!(fast.local(1_000_000), 1_002_000);
/// let t = fast.true_at(1_002_000, 0);
/// assert!(fast.local(t) >= 1_002_000 && fast.local(t - 1) < 1_002_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearClock {
    /// Rate error in parts per million (negative: slow).
    pub ppm: i64,
    /// Reading at true time 0, in microseconds.
    pub offset: u64,
}

impl LinearClock {
    fn inner(self) -> Clock {
        Clock {
            ppm: self.ppm,
            offset: self.offset,
        }
    }

    /// The local reading at true time `t` (µs).
    ///
    /// ```
    /// let slow = redlock_sim::replay::LinearClock { ppm: -2_000, offset: 5 };
    /// assert_eq!(slow.local(1_000_000), 998_005);
    /// ```
    pub fn local(self, t: u64) -> u64 {
        self.inner().local(t)
    }

    /// The earliest true time, not before `now`, at which the reading is at
    /// least `target`.
    ///
    /// ```
    /// let fast = redlock_sim::replay::LinearClock { ppm: 2_000, offset: 0 };
    /// assert_eq!(fast.true_at(1_002_000, 0), 1_000_000);
    /// assert_eq!(fast.true_at(0, 7), 7); // never before `now`
    /// ```
    pub fn true_at(self, target: u64, now: u64) -> u64 {
        self.inner().true_at(target, now)
    }
}

/// A deterministic stand-in for the cryptographic RNG the core takes tokens
/// from (SplitMix64): the tokens of a schedule are the same on every replay.
///
/// ```
/// use redlock_sim::replay::ModelRng;
/// use redlock_core::rand_core::TryRng;
/// let mut a = ModelRng(7);
/// let mut b = ModelRng(7);
/// assert_eq!(a.try_next_u64(), b.try_next_u64());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelRng(pub u64);

impl TryRng for ModelRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for ModelRng {}

/// The value of a [`Foreign`] key: the token of a client outside the rig.
///
/// ```
/// use redlock_sim::replay::{Foreign, Rig, Setup, FOREIGN_TOKEN};
/// let setup = Setup { foreign: vec![Foreign { node: 1, until_ms: 150 }], ..Setup::default() };
/// let rig = Rig::new(&setup, None).unwrap();
/// assert_eq!(rig.lock_key(1), Some((FOREIGN_TOKEN, Some(150))));
/// ```
pub const FOREIGN_TOKEN: &[u8] = b"foreign";

/// A lock key held by a client outside the rig, present from true time 0
/// until it expires: what a second client holding the lock would leave on
/// the node, without that client's state space. The foreign client believes
/// it holds the lock while a quorum of nodes holds its key (the longest
/// belief a correct client could have, see [`Setup::foreign_belief_end`]).
///
/// ```
/// use redlock_sim::replay::Foreign;
/// let f = Foreign { node: 2, until_ms: 150 };
/// assert_eq!(f.to_string(), "2:150");
/// assert_eq!("2:150".parse(), Ok(f));
/// assert!("2".parse::<Foreign>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Foreign {
    /// The node.
    pub node: usize,
    /// The key's expiry on the node's clock (ms, the node's clock reads 0
    /// at true time 0): it lives while the node's clock reads at most this.
    pub until_ms: u64,
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.until_ms)
    }
}

impl FromStr for Foreign {
    type Err = String;
    fn from_str(s: &str) -> Result<Foreign, String> {
        let (n, u) = s
            .split_once(':')
            .ok_or_else(|| format!("NODE:UNTIL_MS expected, got {s:?}"))?;
        Ok(Foreign {
            node: n.parse().map_err(|_| format!("bad node in {s:?}"))?,
            until_ms: u.parse().map_err(|_| format!("bad expiry in {s:?}"))?,
        })
    }
}

/// The fixed parameters of a rig.
///
/// ```
/// let s = redlock_sim::replay::Setup::default();
/// assert_eq!((s.nodes, s.clients, s.ttl_ms), (3, 2, 1_000));
/// assert!(s.foreign.is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Setup {
    /// Number of nodes (1..=16).
    pub nodes: usize,
    /// Number of clients (1..=8).
    pub clients: usize,
    /// Lock TTL in ms (the core's `Config::new(ttl)` derives the rest).
    pub ttl_ms: u64,
    /// Retries after the first attempt.
    pub retry_count: u32,
    /// Pause between attempts, ms (no jitter; [`Step::Acquire`] can ask for 0).
    pub retry_delay_ms: u64,
    /// Clock rate error of each node, ppm.
    pub node_ppm: Vec<i64>,
    /// Clock rate error of each client, ppm.
    pub client_ppm: Vec<i64>,
    /// Fenced acquires: each client's wall clock (unix ms) at true time 0.
    pub fenced: Option<Vec<u64>>,
    /// Each node's fence register at the start (0: absent).
    pub registers: Vec<u64>,
    /// The bugs planted in every core (through [`CoreHook`]).
    pub weakness: Weakness,
    /// Lock keys of a client outside the rig, at most one per node.
    pub foreign: Vec<Foreign>,
}

impl Default for Setup {
    /// 3 nodes, 2 clients, TTL 1 s, one retry after 100 ms, nodes' clocks
    /// 0.2 % fast and clients' 0.2 % slow (the worst corner for safety), not
    /// fenced, nothing planted.
    fn default() -> Self {
        Setup {
            nodes: 3,
            clients: 2,
            ttl_ms: 1_000,
            retry_count: 1,
            retry_delay_ms: 100,
            node_ppm: vec![2_000; 3],
            client_ppm: vec![-2_000; 2],
            fenced: None,
            registers: vec![0; 3],
            weakness: Weakness::default(),
            foreign: Vec::new(),
        }
    }
}

impl Setup {
    /// The default setup with `nodes` nodes and `clients` clients (each
    /// node's clock 0.2 % fast, each client's 0.2 % slow, registers 0).
    ///
    /// ```
    /// let s = redlock_sim::replay::Setup::sized(1, 1);
    /// assert_eq!((s.nodes, s.clients), (1, 1));
    /// assert_eq!((s.node_ppm, s.client_ppm, s.registers), (vec![2_000], vec![-2_000], vec![0]));
    /// ```
    pub fn sized(nodes: usize, clients: usize) -> Setup {
        Setup {
            nodes,
            clients,
            node_ppm: vec![2_000; nodes],
            client_ppm: vec![-2_000; clients],
            registers: vec![0; nodes],
            ..Setup::default()
        }
    }

    /// The core configuration of every client.
    ///
    /// ```
    /// let c = redlock_sim::replay::Setup::default().config();
    /// assert_eq!(c.node_timeout, core::time::Duration::from_millis(50));
    /// assert_eq!(c.retry.count, 1);
    /// ```
    pub fn config(&self) -> Config {
        let mut c = Config::new(Duration::from_millis(self.ttl_ms));
        c.retry = self.retry(false);
        c
    }

    /// The retry policy of an acquire (`zero_pause`: no pause at all).
    ///
    /// ```
    /// use core::time::Duration;
    /// let s = redlock_sim::replay::Setup::default();
    /// assert_eq!(s.retry(false).delay, Duration::from_millis(100));
    /// assert_eq!(s.retry(true).delay, Duration::ZERO);
    /// ```
    pub fn retry(&self, zero_pause: bool) -> RetryPolicy {
        RetryPolicy {
            count: self.retry_count,
            delay: if zero_pause {
                Duration::ZERO
            } else {
                Duration::from_millis(self.retry_delay_ms)
            },
            jitter: Duration::ZERO,
            wait: None,
        }
    }

    /// Down time of a node that crashes and loses its keys: longer than any
    /// key can live on a correct node (Redlock's delayed restart), in µs.
    ///
    /// ```
    /// let s = redlock_sim::replay::Setup::default();
    /// // 1 s, plus twice the worst rate error (0.2 %) of it, plus 1 ms.
    /// assert_eq!(s.empty_restart_delay(), 1_005_000);
    /// ```
    pub fn empty_restart_delay(&self) -> u64 {
        let ttl = self.ttl_ms * 1_000;
        let worst = self
            .node_ppm
            .iter()
            .chain(self.client_ppm.iter())
            .map(|p| p.unsigned_abs())
            .max()
            .unwrap_or(0);
        ttl + ttl * 2 * worst / 1_000_000 + 1_000
    }

    /// The nodes that must agree: `n / 2 + 1`.
    ///
    /// ```
    /// assert_eq!(redlock_sim::replay::Setup::default().quorum(), 2);
    /// ```
    pub fn quorum(&self) -> usize {
        self.nodes / 2 + 1
    }

    /// The true time (µs) at which fewer than a quorum of nodes still hold
    /// the [`Foreign`] keys: the foreign client's belief runs from 0 until
    /// then, and no belief of a client of the rig may start before it.
    /// `None` if the foreign keys never were on a quorum.
    ///
    /// ```
    /// use redlock_sim::replay::{Foreign, Setup};
    /// let mut s = Setup { node_ppm: vec![0; 3], ..Setup::default() };
    /// assert_eq!(s.foreign_belief_end(), None);
    /// s.foreign = vec![Foreign { node: 0, until_ms: 100 }, Foreign { node: 2, until_ms: 50 }];
    /// // Node 2's key is gone once its clock passes 50 ms.
    /// assert_eq!(s.foreign_belief_end(), Some(51_000));
    /// ```
    pub fn foreign_belief_end(&self) -> Option<u64> {
        let mut ends: Vec<u64> = self
            .foreign
            .iter()
            .filter(|f| f.node < self.nodes)
            .map(|f| {
                let clock = LinearClock {
                    ppm: self.node_ppm.get(f.node).copied().unwrap_or(0),
                    offset: 0,
                };
                clock.true_at((f.until_ms + 1) * 1_000, 0)
            })
            .collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        ends.get(self.quorum() - 1).copied()
    }

    fn check(&self) -> Result<(), String> {
        if self.nodes == 0 || self.nodes > redlock_core::MAX_NODES {
            return Err(format!("nodes {} out of 1..=16", self.nodes));
        }
        if self.clients == 0 || self.clients > 8 {
            return Err(format!("clients {} out of 1..=8", self.clients));
        }
        if self.node_ppm.len() != self.nodes || self.registers.len() != self.nodes {
            return Err("node_ppm and registers need one value per node".into());
        }
        if self.client_ppm.len() != self.clients
            || self
                .fenced
                .as_ref()
                .is_some_and(|w| w.len() != self.clients)
        {
            return Err("client_ppm and fenced need one value per client".into());
        }
        if self
            .node_ppm
            .iter()
            .chain(&self.client_ppm)
            .any(|p| p.abs() > 100_000)
        {
            return Err("clock rates must stay within ±10 %".into());
        }
        for (i, f) in self.foreign.iter().enumerate() {
            if f.node >= self.nodes {
                return Err(format!("foreign key on node {} of {}", f.node, self.nodes));
            }
            if self.foreign[..i].iter().any(|g| g.node == f.node) {
                return Err(format!("two foreign keys on node {}", f.node));
            }
            if f.until_ms == 0 || f.until_ms > 1 << 40 {
                return Err(format!("foreign expiry {} ms out of 1..=2^40", f.until_ms));
            }
        }
        self.config()
            .validate()
            .map_err(|e| format!("core config: {e}"))
    }
}

/// One step of a schedule.
///
/// ```
/// use redlock_sim::replay::Step;
/// let s = Step::Crash { node: 2, persistent: false };
/// assert_eq!(s.to_string(), "crash 2 empty");
/// assert_eq!("crash 2 empty".parse(), Ok(s));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// An idle client starts its acquire (`zero_pause`: retries without pause).
    Acquire {
        /// The client.
        client: usize,
        /// Retry at once.
        zero_pause: bool,
    },
    /// A holding client extends its lease (once per cycle).
    Extend {
        /// The client.
        client: usize,
    },
    /// A holding client releases.
    Release {
        /// The client.
        client: usize,
    },
    /// The next chunk from `client` reaches `node`.
    ToNode {
        /// The client.
        client: usize,
        /// The node.
        node: usize,
    },
    /// The next chunk of a connection the client closed reaches `node`.
    OldToNode {
        /// The client.
        client: usize,
        /// The node.
        node: usize,
    },
    /// The next reply from `node` reaches `client`.
    ToClient {
        /// The client.
        client: usize,
        /// The node.
        node: usize,
    },
    /// The client's core timer fires (it must be due).
    Timeout {
        /// The client.
        client: usize,
    },
    /// True time moves on to this instant (µs).
    At(u64),
    /// The network resets the connection: bytes in flight are lost.
    Reset {
        /// The client.
        client: usize,
        /// The node.
        node: usize,
    },
    /// The client notices a reset connection (`handle_node_down`).
    Notice {
        /// The client.
        client: usize,
        /// The node.
        node: usize,
    },
    /// The node crashes; it keeps its keys when `persistent`.
    Crash {
        /// The node.
        node: usize,
        /// Keys survive (AOF, `appendfsync always`).
        persistent: bool,
    },
    /// A crashed node restarts (not before its restart time).
    Restart {
        /// The node.
        node: usize,
    },
    /// `SCRIPT FLUSH` on the node.
    Flush {
        /// The node.
        node: usize,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Step::Acquire {
                client,
                zero_pause: false,
            } => write!(f, "acquire {client}"),
            Step::Acquire {
                client,
                zero_pause: true,
            } => write!(f, "acquire {client} zero-pause"),
            Step::Extend { client } => write!(f, "extend {client}"),
            Step::Release { client } => write!(f, "release {client}"),
            Step::ToNode { client, node } => write!(f, "to-node {client} {node}"),
            Step::OldToNode { client, node } => write!(f, "old-to-node {client} {node}"),
            Step::ToClient { client, node } => write!(f, "to-client {client} {node}"),
            Step::Timeout { client } => write!(f, "timeout {client}"),
            Step::At(t) => write!(f, "at {t}"),
            Step::Reset { client, node } => write!(f, "reset {client} {node}"),
            Step::Notice { client, node } => write!(f, "notice {client} {node}"),
            Step::Crash {
                node,
                persistent: true,
            } => write!(f, "crash {node} persistent"),
            Step::Crash {
                node,
                persistent: false,
            } => write!(f, "crash {node} empty"),
            Step::Restart { node } => write!(f, "restart {node}"),
            Step::Flush { node } => write!(f, "flush {node}"),
        }
    }
}

fn num<T: FromStr>(w: Option<&str>, line: &str) -> Result<T, String> {
    w.and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad or missing number in {line:?}"))
}

impl FromStr for Step {
    type Err = String;
    /// ```
    /// use redlock_sim::replay::Step;
    /// assert_eq!("to-client 1 2".parse(), Ok(Step::ToClient { client: 1, node: 2 }));
    /// assert!("teleport 1".parse::<Step>().is_err());
    /// ```
    fn from_str(line: &str) -> Result<Step, String> {
        let mut w = line.split_whitespace();
        let verb = w.next().ok_or("empty step")?;
        let a = w.next();
        let b = w.next();
        let step = match verb {
            "acquire" => Step::Acquire {
                client: num(a, line)?,
                zero_pause: match b {
                    None => false,
                    Some("zero-pause") => true,
                    Some(x) => return Err(format!("unknown acquire option {x:?}")),
                },
            },
            "extend" => Step::Extend {
                client: num(a, line)?,
            },
            "release" => Step::Release {
                client: num(a, line)?,
            },
            "to-node" => Step::ToNode {
                client: num(a, line)?,
                node: num(b, line)?,
            },
            "old-to-node" => Step::OldToNode {
                client: num(a, line)?,
                node: num(b, line)?,
            },
            "to-client" => Step::ToClient {
                client: num(a, line)?,
                node: num(b, line)?,
            },
            "timeout" => Step::Timeout {
                client: num(a, line)?,
            },
            "at" => Step::At(num(a, line)?),
            "reset" => Step::Reset {
                client: num(a, line)?,
                node: num(b, line)?,
            },
            "notice" => Step::Notice {
                client: num(a, line)?,
                node: num(b, line)?,
            },
            "crash" => Step::Crash {
                node: num(a, line)?,
                persistent: match b {
                    Some("persistent") => true,
                    Some("empty") => false,
                    _ => return Err(format!("crash needs persistent|empty: {line:?}")),
                },
            },
            "restart" => Step::Restart {
                node: num(a, line)?,
            },
            "flush" => Step::Flush {
                node: num(a, line)?,
            },
            _ => return Err(format!("unknown step {verb:?}")),
        };
        let extra = match step {
            Step::Acquire { .. } | Step::Crash { .. } => w.next(),
            Step::ToNode { .. }
            | Step::OldToNode { .. }
            | Step::ToClient { .. }
            | Step::Reset { .. }
            | Step::Notice { .. } => w.next(),
            _ => b,
        };
        if let Some(x) = extra {
            return Err(format!("unexpected {x:?} in {line:?}"));
        }
        Ok(step)
    }
}

/// A setup and its steps: what the model checker exports and [`replay`] runs.
///
/// The text form is one `key value...` line per setup field, then `steps:`
/// and one step per line; `#` starts a comment.
///
/// ```
/// use redlock_sim::replay::{replay, Schedule, Step};
/// let text = "nodes 1\nclients 1\nnode_ppm 0\nclient_ppm 0\nregisters 0\nsteps:\nacquire 0 # go\nto-node 0 0\n";
/// let s: Schedule = text.parse().unwrap();
/// assert_eq!(s.steps, vec![Step::Acquire { client: 0, zero_pause: false }, Step::ToNode { client: 0, node: 0 }]);
/// assert!(replay(&s, None).unwrap().violations.is_empty());
/// assert!("nodes 0\nsteps:\n".parse::<Schedule>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The rig.
    pub setup: Setup,
    /// What happens, in order.
    pub steps: Vec<Step>,
}

const WEAKNESSES: [&str; 9] = [
    "quorum_half",
    "no_drift",
    "reuse_token",
    "requeue_noscript",
    "drop_owed_undo",
    "fence_late_ok",
    "fence_plain_set",
    "fence_incr",
    "fence_no_check",
];

fn weak_flags(w: &mut Weakness) -> [&mut bool; 9] {
    [
        &mut w.quorum_half,
        &mut w.no_drift,
        &mut w.reuse_token,
        &mut w.requeue_noscript,
        &mut w.drop_owed_undo,
        &mut w.fence_late_ok,
        &mut w.fence_plain_set,
        &mut w.fence_incr,
        &mut w.fence_no_check,
    ]
}

/// The names of the weaknesses set in `w` (as in [`Weakness`]'s fields).
///
/// ```
/// use redlock_core::Weakness;
/// let w = Weakness { no_drift: true, ..Weakness::default() };
/// assert_eq!(redlock_sim::replay::weakness_names(&w), vec!["no_drift"]);
/// ```
pub fn weakness_names(w: &Weakness) -> Vec<&'static str> {
    let mut w = *w;
    weak_flags(&mut w)
        .into_iter()
        .zip(WEAKNESSES)
        .filter(|(f, _)| **f)
        .map(|(_, n)| n)
        .collect()
}

fn join<T: fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        writeln!(f, "nodes {}", s.nodes)?;
        writeln!(f, "clients {}", s.clients)?;
        writeln!(f, "ttl_ms {}", s.ttl_ms)?;
        writeln!(f, "retry {} {}", s.retry_count, s.retry_delay_ms)?;
        writeln!(f, "node_ppm {}", join(&s.node_ppm))?;
        writeln!(f, "client_ppm {}", join(&s.client_ppm))?;
        match &s.fenced {
            Some(w) => writeln!(f, "fenced {}", join(w))?,
            None => writeln!(f, "fenced off")?,
        }
        writeln!(f, "registers {}", join(&s.registers))?;
        if !s.foreign.is_empty() {
            writeln!(f, "foreign {}", join(&s.foreign))?;
        }
        let names = weakness_names(&s.weakness);
        if names.is_empty() {
            writeln!(f, "weakness none")?;
        } else {
            writeln!(f, "weakness {}", names.join(" "))?;
        }
        writeln!(f, "steps:")?;
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        Ok(())
    }
}

fn nums<T: FromStr>(rest: &[&str], line: &str) -> Result<Vec<T>, String> {
    rest.iter()
        .map(|w| {
            w.parse()
                .map_err(|_| format!("bad number {w:?} in {line:?}"))
        })
        .collect()
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(text: &str) -> Result<Schedule, String> {
        let mut setup = Setup::default();
        let mut steps = Vec::new();
        let mut in_steps = false;
        for raw in text.lines() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if in_steps {
                steps.push(line.parse()?);
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let rest = &words[1..];
            let one = |rest: &[&str]| -> Result<u64, String> {
                match rest {
                    [v] => v.parse().map_err(|_| format!("bad number in {line:?}")),
                    _ => Err(format!("one number expected in {line:?}")),
                }
            };
            match words[0] {
                "steps:" => in_steps = true,
                "nodes" => setup.nodes = one(rest)? as usize,
                "clients" => setup.clients = one(rest)? as usize,
                "ttl_ms" => setup.ttl_ms = one(rest)?,
                "retry" => match nums::<u64>(rest, line)?.as_slice() {
                    [c, d] => {
                        setup.retry_count = u32::try_from(*c).map_err(|e| e.to_string())?;
                        setup.retry_delay_ms = *d;
                    }
                    _ => return Err(format!("retry COUNT DELAY_MS expected: {line:?}")),
                },
                "node_ppm" => setup.node_ppm = nums(rest, line)?,
                "client_ppm" => setup.client_ppm = nums(rest, line)?,
                "fenced" => {
                    setup.fenced = match rest {
                        ["off"] => None,
                        _ => Some(nums(rest, line)?),
                    }
                }
                "registers" => setup.registers = nums(rest, line)?,
                "foreign" => {
                    setup.foreign = rest.iter().map(|w| w.parse()).collect::<Result<_, _>>()?
                }
                "weakness" => {
                    let mut w = Weakness::default();
                    for name in rest.iter().filter(|n| **n != "none") {
                        let i = WEAKNESSES
                            .iter()
                            .position(|k| k == name)
                            .ok_or_else(|| format!("unknown weakness {name:?}"))?;
                        *weak_flags(&mut w)[i] = true;
                    }
                    setup.weakness = w;
                }
                other => return Err(format!("unknown setup line {other:?}")),
            }
        }
        setup.check()?;
        Ok(Schedule { setup, steps })
    }
}

fn script_name(body_or_sha: &[u8]) -> &'static str {
    use redlock_core::{
        ACQUIRE_SCRIPT, EXTEND_SCRIPT, EXTEND_SHA, FENCE_INCR_SCRIPT, FENCE_WRITE_SCRIPT,
        FENCE_WRITE_SET_SCRIPT, RELEASE_SCRIPT, RELEASE_SHA,
    };
    let known: [(&str, &'static str); 8] = [
        (ACQUIRE_SCRIPT, "acquire"),
        (RELEASE_SCRIPT, "release"),
        (RELEASE_SHA, "release"),
        (EXTEND_SCRIPT, "extend"),
        (EXTEND_SHA, "extend"),
        (FENCE_WRITE_SCRIPT, "fence-write"),
        (FENCE_WRITE_SET_SCRIPT, "fence-write-set"),
        (FENCE_INCR_SCRIPT, "fence-incr"),
    ];
    known
        .iter()
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(body_or_sha))
        .map_or("script", |(_, n)| n)
}

fn frame_text(frame: &redis_protocol::resp2::types::OwnedFrame, request: bool) -> String {
    use redis_protocol::resp2::types::OwnedFrame as F;
    let short = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        if s.chars().count() > 24 {
            format!("{}..", s.chars().take(22).collect::<String>())
        } else {
            s.into_owned()
        }
    };
    match frame {
        F::Array(items) if request => {
            let args: Vec<&[u8]> = items
                .iter()
                .map(|i| match i {
                    F::BulkString(b) | F::SimpleString(b) => b.as_slice(),
                    _ => b"?",
                })
                .collect();
            let verb =
                String::from_utf8_lossy(args.first().copied().unwrap_or(b"?")).to_ascii_uppercase();
            match (verb.as_str(), args.get(1)) {
                ("EVAL" | "EVALSHA", Some(s)) => format!("{verb} {}", script_name(s)),
                ("SCRIPT", Some(sub)) => {
                    let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
                    match args.get(2) {
                        Some(body) if sub == "LOAD" => {
                            format!("SCRIPT LOAD {}", script_name(body))
                        }
                        _ => format!("SCRIPT {sub}"),
                    }
                }
                _ => verb,
            }
        }
        F::Array(items) => {
            let inner: Vec<String> = items.iter().map(|i| frame_text(i, false)).collect();
            format!("[{}]", inner.join(" "))
        }
        F::SimpleString(b) => format!("+{}", short(b)),
        F::Error(e) => format!("-{}", e.split_whitespace().next().unwrap_or("")),
        F::Integer(i) => format!(":{i}"),
        F::BulkString(b) => match script_name(b) {
            "script" => format!("\"{}\"", short(b)),
            name => format!("sha of {name}"),
        },
        F::Null => "nil".into(),
    }
}

/// A short reading of RESP bytes, for traces: each request as its command
/// (scripts by name), each reply as Redis would print it (errors by their
/// code); several frames are separated by commas.
///
/// ```
/// use redlock_sim::replay::summarize;
/// let set = b"*6\r\n$3\r\nSET\r\n$1\r\nr\r\n$3\r\ntok\r\n$2\r\nNX\r\n$2\r\nPX\r\n$3\r\n100\r\n";
/// assert_eq!(summarize(set, true), "SET");
/// assert_eq!(summarize(b"$-1\r\n-NOSCRIPT No matching script\r\n", false), "nil, -NOSCRIPT");
/// assert_eq!(summarize(b"+OK\r\n:1\r\n", false), "+OK, :1");
/// ```
pub fn summarize(bytes: &[u8], request: bool) -> String {
    let mut parts = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match redis_protocol::resp2::decode::decode(rest) {
            Ok(Some((frame, used))) if used > 0 => {
                parts.push(frame_text(&frame, request));
                rest = &rest[used..];
            }
            _ => {
                parts.push(format!("({} bytes)", rest.len()));
                break;
            }
        }
    }
    parts.join(", ")
}

/// What a step made happen that a checker must judge.
///
/// ```
/// use redlock_sim::replay::{Happening, Rig, Setup};
/// let setup = Setup::sized(1, 1);
/// let mut rig = Rig::new(&setup, None).unwrap();
/// let mut out = Vec::new();
/// for step in ["acquire 0", "to-node 0 0", "to-client 0 0"] {
///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
/// }
/// assert!(matches!(out[0], Happening::OpEnded { client: 0, duplicate: false, .. }));
/// assert!(matches!(out[1], Happening::Believe { client: 0, start: 0, extension: false, .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Happening {
    /// The client believes it holds the resource from `start` until `end`
    /// (true µs, exclusive): an `Acquired` or `Extended` event.
    Believe {
        /// The client.
        client: usize,
        /// Now.
        start: u64,
        /// The lease deadline on the client's clock, in true time.
        end: u64,
        /// The lease's token.
        token: Token,
        /// The lease's fence.
        fence: Option<u64>,
        /// True time the acquire operation was started.
        op_start: u64,
        /// An extension (the same grant continues).
        extension: bool,
    },
    /// The client stops believing (it releases, or lost the lease).
    EndBelief {
        /// The client.
        client: usize,
        /// Now.
        at: u64,
    },
    /// A final event of an operation arrived.
    OpEnded {
        /// The client.
        client: usize,
        /// The operation (raw id).
        op: u32,
        /// It had already ended once.
        duplicate: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ConnSt {
    Down,
    Up,
    Broken,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Conn {
    st: ConnSt,
    to_node: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    old_to_node: VecDeque<Vec<u8>>,
}

/// Where a client is in its lock cycle.
///
/// ```
/// use redlock_sim::replay::{Rig, Setup, Work};
/// let setup = Setup::sized(1, 1);
/// let mut rig = Rig::new(&setup, None).unwrap();
/// let mut out = Vec::new();
/// for step in ["acquire 0", "to-node 0 0", "to-client 0 0"] {
///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
/// }
/// assert!(matches!(rig.work(0), Work::Holding { extended: false, .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Not started.
    Idle,
    /// Acquire `op` in progress, started at true time `start`.
    Acquiring {
        /// The operation.
        op: u32,
        /// True time of the acquire call.
        start: u64,
    },
    /// Holding a lease.
    Holding {
        /// The lease.
        lease: Lease,
        /// Already extended once.
        extended: bool,
    },
    /// Extend `op` of `lease` in progress.
    Extending {
        /// The operation.
        op: u32,
        /// The lease being extended.
        lease: Lease,
    },
    /// Release `op` in progress.
    Releasing {
        /// The operation.
        op: u32,
    },
    /// The cycle is over.
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Client<C> {
    core: C,
    clock: LinearClock,
    rng: ModelRng,
    work: Work,
    /// Operations whose final event arrived.
    ended: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    redis: SimNode,
    clock: LinearClock,
    up: bool,
    persistent: bool,
    /// Crashed: may restart from this true time...
    restart_at: u64,
    /// ...and must have restarted by this one.
    restart_by: u64,
}

/// Real cores, simulated nodes and the connections between them, at one
/// instant of true time. `C` is always [`ModelCore`]; it is a parameter only
/// so that `Clone`, `Hash` and `Eq` are derived exactly when the core has
/// them (its feature `__model`, which the model checker turns on).
///
/// ```
/// use redlock_sim::replay::{Rig, Setup, Work};
/// let setup = Setup::sized(1, 1);
/// let mut rig = Rig::new(&setup, None).unwrap();
/// let mut out = Vec::new();
/// for step in ["acquire 0", "to-node 0 0", "to-client 0 0"] {
///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
/// }
/// assert!(matches!(rig.work(0), Work::Holding { .. }));
/// assert_eq!(rig.live_keys().len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rig<C = ModelCore> {
    now: u64,
    nodes: Vec<Node>,
    clients: Vec<Client<C>>,
    conns: Vec<Conn>,
}

fn register_key() -> Vec<u8> {
    let mut buf = [0u8; 64];
    fence_register(RESOURCE, &mut buf)
        .map(|k| k.to_vec())
        .unwrap_or_default()
}

fn set_register(node: &mut SimNode, value: u64) {
    let key = register_key();
    let v = value.to_string();
    let mut cmd = format!("*3\r\n$3\r\nSET\r\n${}\r\n", key.len()).into_bytes();
    cmd.extend_from_slice(&key);
    cmd.extend_from_slice(format!("\r\n${}\r\n{v}\r\n", v.len()).as_bytes());
    node.reply(0, &cmd);
}

fn set_foreign(node: &mut SimNode, until_ms: u64) {
    let px = until_ms.to_string();
    let mut cmd = b"*5\r\n$3\r\nSET\r\n".to_vec();
    for arg in [RESOURCE, FOREIGN_TOKEN, b"PX", px.as_bytes()] {
        cmd.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        cmd.extend_from_slice(arg);
        cmd.extend_from_slice(b"\r\n");
    }
    node.reply(0, &cmd);
}

impl Rig<ModelCore> {
    /// The rig at true time 0: every core built (and `hook`ed), connected
    /// to every node, nothing started.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup};
    /// assert!(Rig::new(&Setup::default(), None).is_ok());
    /// let bad = Setup { nodes: 0, ..Setup::default() };
    /// assert!(Rig::new(&bad, None).is_err());
    /// ```
    pub fn new(setup: &Setup, hook: Option<CoreHook>) -> Result<Rig, String> {
        setup.check()?;
        let nodes = (0..setup.nodes)
            .map(|n| {
                let mut redis = SimNode::new();
                if setup.registers[n] > 0 {
                    set_register(&mut redis, setup.registers[n]);
                }
                if let Some(f) = setup.foreign.iter().find(|f| f.node == n) {
                    set_foreign(&mut redis, f.until_ms);
                }
                Node {
                    redis,
                    clock: LinearClock {
                        ppm: setup.node_ppm[n],
                        offset: 0,
                    },
                    up: true,
                    persistent: true,
                    restart_at: 0,
                    restart_by: 0,
                }
            })
            .collect();
        let cfgs = vec![NodeConfig::default(); setup.nodes];
        let mut clients = Vec::new();
        for c in 0..setup.clients {
            let mut core =
                ModelCore::new(setup.config(), &cfgs).map_err(|e| format!("core: {e}"))?;
            if let Some(h) = hook {
                h(&mut core, setup.weakness);
            }
            clients.push(Client {
                core,
                clock: LinearClock {
                    ppm: setup.client_ppm[c],
                    offset: 0,
                },
                rng: ModelRng(0x5eed_0000 + c as u64),
                work: Work::Idle,
                ended: Vec::new(),
            });
        }
        let conns = (0..setup.nodes * setup.clients)
            .map(|_| Conn {
                st: ConnSt::Down,
                to_node: VecDeque::new(),
                to_client: VecDeque::new(),
                old_to_node: VecDeque::new(),
            })
            .collect();
        let mut rig = Rig {
            now: 0,
            nodes,
            clients,
            conns,
        };
        let mut out = Vec::new();
        for c in 0..setup.clients {
            rig.drain(setup, c, &mut out);
        }
        Ok(rig)
    }

    /// True time now (µs).
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Step};
    /// let setup = Setup::default();
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// rig.apply(&setup, Step::At(500), &mut Vec::new()).unwrap();
    /// assert_eq!(rig.now(), 500);
    /// ```
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Client `c`'s lock cycle.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Work};
    /// let rig = Rig::new(&Setup::default(), None).unwrap();
    /// assert_eq!(rig.work(1), &Work::Idle);
    /// ```
    pub fn work(&self, c: usize) -> &Work {
        &self.clients[c].work
    }

    /// Client `c`'s core.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup};
    /// let rig = Rig::new(&Setup::default(), None).unwrap();
    /// assert_eq!(rig.core(0).poll_timeout(), None); // nothing to wait for
    /// ```
    pub fn core(&self, c: usize) -> &ModelCore {
        &self.clients[c].core
    }

    /// Whether node `n` is up.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Step};
    /// let setup = Setup::default();
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// rig.apply(&setup, Step::Crash { node: 1, persistent: true }, &mut Vec::new()).unwrap();
    /// assert!(rig.node_up(0) && !rig.node_up(1));
    /// ```
    pub fn node_up(&self, n: usize) -> bool {
        self.nodes[n].up
    }

    /// Node `n`'s clock reading in ms (what Redis expires keys by).
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Step};
    /// let setup = Setup::default(); // nodes 0.2 % fast
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// rig.apply(&setup, Step::At(1_000_000), &mut Vec::new()).unwrap();
    /// assert_eq!(rig.node_ms(0), 1_002);
    /// ```
    pub fn node_ms(&self, n: usize) -> u64 {
        self.nodes[n].clock.local(self.now) / 1_000
    }

    /// Node `n`'s lock key: value and expiry (node ms), if stored.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Work};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let mut out = Vec::new();
    /// for step in ["acquire 0", "to-node 0 0", "to-client 0 0"] {
    ///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
    /// }
    /// let Work::Holding { lease, .. } = rig.work(0) else { unreachable!() };
    /// assert_eq!(rig.lock_key(0), Some((lease.token().as_bytes(), Some(1_000))));
    /// ```
    pub fn lock_key(&self, n: usize) -> Option<(&[u8], Option<u64>)> {
        self.nodes[n].redis.entry(RESOURCE)
    }

    /// Node `n`'s fence register.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup};
    /// let setup = Setup { registers: vec![4, 0, 9], ..Setup::default() };
    /// let rig = Rig::new(&setup, None).unwrap();
    /// assert_eq!((rig.register(0), rig.register(1), rig.register(2)), (4, 0, 9));
    /// ```
    pub fn register(&self, n: usize) -> u64 {
        self.nodes[n]
            .redis
            .entry(&register_key())
            .and_then(|(v, _)| core::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0)
    }

    fn conn(&self, setup: &Setup, c: usize, n: usize) -> &Conn {
        &self.conns[c * setup.nodes + n]
    }

    fn conn_mut(&mut self, setup: &Setup, c: usize, n: usize) -> &mut Conn {
        &mut self.conns[c * setup.nodes + n]
    }

    fn local(&self, c: usize) -> Instant {
        Instant::from_micros(self.clients[c].clock.local(self.now))
    }

    /// Chunks waiting on `c`'s connection to `n`: (to the node, to the
    /// client, to the node on a closed connection).
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// rig.apply(&setup, "acquire 0".parse().unwrap(), &mut Vec::new()).unwrap();
    /// assert_eq!(rig.queued(&setup, 0, 0), (1, 0, 0)); // the SET
    /// rig.apply(&setup, "to-node 0 0".parse().unwrap(), &mut Vec::new()).unwrap();
    /// assert_eq!(rig.queued(&setup, 0, 0), (0, 1, 0)); // its reply
    /// ```
    pub fn queued(&self, setup: &Setup, c: usize, n: usize) -> (usize, usize, usize) {
        let k = self.conn(setup, c, n);
        (k.to_node.len(), k.to_client.len(), k.old_to_node.len())
    }

    /// The bytes that the delivery `step` (`to-node`, `old-to-node`,
    /// `to-client`) would carry now, if it is one and has any.
    ///
    /// ```
    /// use redlock_sim::replay::{summarize, Rig, Setup, Step};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let to_node = Step::ToNode { client: 0, node: 0 };
    /// assert_eq!(rig.chunk(&setup, to_node), None);
    /// rig.apply(&setup, "acquire 0".parse().unwrap(), &mut Vec::new()).unwrap();
    /// let set = rig.chunk(&setup, to_node).unwrap();
    /// assert_eq!(summarize(set, true), "SET");
    /// ```
    pub fn chunk(&self, setup: &Setup, step: Step) -> Option<&[u8]> {
        let (c, n) = match step {
            Step::ToNode { client, node }
            | Step::OldToNode { client, node }
            | Step::ToClient { client, node } => (client, node),
            _ => return None,
        };
        if c >= self.clients.len() || n >= self.nodes.len() {
            return None;
        }
        let k = self.conn(setup, c, n);
        let q = match step {
            Step::ToNode { .. } => &k.to_node,
            Step::OldToNode { .. } => &k.old_to_node,
            _ => &k.to_client,
        };
        q.front().map(Vec::as_slice)
    }

    /// Whether `c`'s connection to `n` is up, and whether it is reset but
    /// not yet noticed.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Step};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let mut out = Vec::new();
    /// rig.apply(&setup, "acquire 0".parse().unwrap(), &mut out).unwrap();
    /// assert_eq!(rig.conn_state(&setup, 0, 0), (true, false));
    /// rig.apply(&setup, Step::Reset { client: 0, node: 0 }, &mut out).unwrap();
    /// assert_eq!(rig.conn_state(&setup, 0, 0), (false, true));
    /// ```
    pub fn conn_state(&self, setup: &Setup, c: usize, n: usize) -> (bool, bool) {
        let st = self.conn(setup, c, n).st;
        (st == ConnSt::Up, st == ConnSt::Broken)
    }

    /// Whether any byte is in flight anywhere.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// assert!(!rig.in_flight());
    /// rig.apply(&setup, "acquire 0".parse().unwrap(), &mut Vec::new()).unwrap();
    /// assert!(rig.in_flight());
    /// ```
    pub fn in_flight(&self) -> bool {
        self.conns
            .iter()
            .any(|k| !k.to_node.is_empty() || !k.to_client.is_empty() || !k.old_to_node.is_empty())
    }

    /// When client `c`'s timer is due, in true time.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// rig.apply(&setup, "acquire 0".parse().unwrap(), &mut Vec::new()).unwrap();
    /// // The node timeout (50 ms on the client's clock, 0.2 % slow).
    /// assert_eq!(rig.timer(0), Some(50_100));
    /// ```
    pub fn timer(&self, c: usize) -> Option<u64> {
        let cl = &self.clients[c];
        let d = cl.core.poll_timeout()?;
        Some(cl.clock.true_at(d.as_micros(), self.now))
    }

    /// Whether client `c`'s timer is due now.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Step};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let mut out = Vec::new();
    /// rig.apply(&setup, "acquire 0".parse().unwrap(), &mut out).unwrap();
    /// assert!(!rig.timer_due(0));
    /// rig.apply(&setup, Step::At(rig.timer(0).unwrap()), &mut out).unwrap();
    /// assert!(rig.timer_due(0));
    /// ```
    pub fn timer_due(&self, c: usize) -> bool {
        self.timer(c).is_some_and(|t| t <= self.now)
    }

    /// Node `n` has crashed: (may restart, must have restarted).
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Step};
    /// let setup = Setup::default();
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// assert_eq!(rig.restart_window(0), None);
    /// rig.apply(&setup, Step::Crash { node: 0, persistent: false }, &mut Vec::new()).unwrap();
    /// let delay = setup.empty_restart_delay();
    /// assert_eq!(rig.restart_window(0), Some((delay, delay)));
    /// ```
    pub fn restart_window(&self, n: usize) -> Option<(u64, u64)> {
        let node = &self.nodes[n];
        (!node.up).then_some((node.restart_at, node.restart_by))
    }

    /// The true time at which the lease `deadline` (client `c`'s clock)
    /// passes.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Work};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let mut out = Vec::new();
    /// for step in ["acquire 0", "to-node 0 0", "to-client 0 0"] {
    ///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
    /// }
    /// let Work::Holding { lease, .. } = rig.work(0) else { unreachable!() };
    /// // 988 ms of validity on a clock 0.2 % slow.
    /// assert_eq!(rig.lease_end(0, lease.deadline()), 989_979);
    /// ```
    pub fn lease_end(&self, c: usize, deadline: Instant) -> u64 {
        self.clients[c]
            .clock
            .true_at(deadline.as_micros(), self.now)
    }

    /// The next instant after now at which anything can change: a core's
    /// timer, a lock key's expiry on its node's clock, a restart window's
    /// ends, a lease's deadline.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Work};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let mut out = Vec::new();
    /// for step in ["acquire 0", "to-node 0 0", "to-client 0 0"] {
    ///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
    /// }
    /// // The lease ends (989,979 µs) before the key expires on the fast node.
    /// assert_eq!(rig.next_instant(), Some(989_979));
    /// ```
    pub fn next_instant(&self) -> Option<u64> {
        let now = self.now;
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| {
            if t > now {
                next = Some(next.map_or(t, |x| x.min(t)));
            }
        };
        for (c, cl) in self.clients.iter().enumerate() {
            if let Some(t) = self.timer(c) {
                consider(t);
            }
            match &cl.work {
                Work::Holding { lease, .. } | Work::Extending { lease, .. } => {
                    consider(self.lease_end(c, lease.deadline()))
                }
                _ => {}
            }
        }
        for node in &self.nodes {
            if let Some((_, Some(exp))) = node.redis.entry(RESOURCE) {
                consider(node.clock.true_at((exp + 1) * 1_000, now));
            }
            if !node.up {
                consider(node.restart_at);
                consider(node.restart_by);
            }
        }
        next
    }

    /// Whether node `n` keeps others from the resource for `token` at true
    /// time `t`: down, or holding it with `token`, unexpired on its clock
    /// (the simulator's quorum-backing rule).
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Work};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let mut out = Vec::new();
    /// for step in ["acquire 0", "to-node 0 0", "to-client 0 0"] {
    ///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
    /// }
    /// let Work::Holding { lease, .. } = rig.work(0) else { unreachable!() };
    /// assert!(rig.blocks(0, lease.token(), 989_978));
    /// assert!(!rig.blocks(0, lease.token(), 1_000_000)); // expired on the node
    /// ```
    pub fn blocks(&self, n: usize, token: &Token, t: u64) -> bool {
        let node = &self.nodes[n];
        if !node.up {
            return true;
        }
        match node.redis.entry(RESOURCE) {
            Some((v, exp)) if v == token.as_bytes() => {
                exp.is_none_or(|e| node.clock.local(t) / 1_000 <= e)
            }
            _ => false,
        }
    }

    /// How many nodes block for `token` at true time `t`.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Work};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let mut out = Vec::new();
    /// for step in ["acquire 0", "to-node 0 0", "to-client 0 0"] {
    ///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
    /// }
    /// let Work::Holding { lease, .. } = rig.work(0) else { unreachable!() };
    /// assert_eq!(rig.backers(lease.token(), 0), 1);
    /// ```
    pub fn backers(&self, token: &Token, t: u64) -> usize {
        (0..self.nodes.len())
            .filter(|&n| self.blocks(n, token, t))
            .count()
    }

    /// Nothing left to do: every client done, nothing in flight, no core
    /// waiting on time, every node and connection up.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// assert!(!rig.quiet()); // the client has not run its cycle
    /// let mut out = Vec::new();
    /// for step in ["acquire 0", "to-node 0 0", "to-client 0 0", "release 0", "to-node 0 0", "to-client 0 0"] {
    ///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
    /// }
    /// assert!(rig.quiet() && rig.live_keys().is_empty());
    /// ```
    pub fn quiet(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.work == Work::Done && c.core.poll_timeout().is_none())
            && !self.in_flight()
            && self.nodes.iter().all(|n| n.up)
            && self.conns.iter().all(|k| k.st == ConnSt::Up)
    }

    /// A client waits for an operation's event that can no longer come:
    /// nothing is in flight and no core waits on time.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// rig.apply(&setup, "acquire 0".parse().unwrap(), &mut Vec::new()).unwrap();
    /// assert_eq!(rig.stuck(), None); // the SET is in flight, a timer runs
    /// ```
    pub fn stuck(&self) -> Option<usize> {
        if self.in_flight() || self.clients.iter().any(|c| c.core.poll_timeout().is_some()) {
            return None;
        }
        self.clients.iter().position(|c| {
            matches!(
                c.work,
                Work::Acquiring { .. } | Work::Extending { .. } | Work::Releasing { .. }
            )
        })
    }

    /// Nodes holding a live lock key of a client of the rig now: (node,
    /// value). [`Foreign`] keys are not counted: nobody here can remove them.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Work};
    /// let setup = Setup::sized(1, 1);
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let mut out = Vec::new();
    /// for step in ["acquire 0", "to-node 0 0", "to-client 0 0"] {
    ///     rig.apply(&setup, step.parse().unwrap(), &mut out).unwrap();
    /// }
    /// assert_eq!(rig.live_keys().len(), 1);
    /// assert_eq!(rig.live_keys()[0].0, 0);
    /// ```
    pub fn live_keys(&self) -> Vec<(usize, Vec<u8>)> {
        (0..self.nodes.len())
            .filter_map(|n| {
                let node = &self.nodes[n];
                match node.redis.entry(RESOURCE) {
                    Some((v, exp))
                        if v != FOREIGN_TOKEN
                            && exp.is_none_or(|e| node.clock.local(self.now) / 1_000 <= e) =>
                    {
                        Some((n, v.to_vec()))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Whether `step` can be taken now (the rules of the world, not any
    /// fault budget).
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Step};
    /// let setup = Setup::default();
    /// let rig = Rig::new(&setup, None).unwrap();
    /// assert!(rig.can(&setup, Step::Acquire { client: 0, zero_pause: false }));
    /// assert!(!rig.can(&setup, Step::Release { client: 0 })); // not holding
    /// assert!(!rig.can(&setup, Step::ToNode { client: 9, node: 0 })); // no such client
    /// ```
    pub fn can(&self, setup: &Setup, step: Step) -> bool {
        let cl = |c: usize| c < self.clients.len();
        let nd = |n: usize| n < self.nodes.len();
        match step {
            Step::Acquire { client, .. } => cl(client) && self.clients[client].work == Work::Idle,
            Step::Extend { client } => {
                cl(client)
                    && matches!(
                        self.clients[client].work,
                        Work::Holding {
                            extended: false,
                            ..
                        }
                    )
            }
            Step::Release { client } => {
                cl(client) && matches!(self.clients[client].work, Work::Holding { .. })
            }
            Step::ToNode { client, node } => {
                cl(client)
                    && nd(node)
                    && self.nodes[node].up
                    && !self.conn(setup, client, node).to_node.is_empty()
            }
            Step::OldToNode { client, node } => {
                cl(client)
                    && nd(node)
                    && self.nodes[node].up
                    && !self.conn(setup, client, node).old_to_node.is_empty()
            }
            Step::ToClient { client, node } => {
                cl(client) && nd(node) && !self.conn(setup, client, node).to_client.is_empty()
            }
            Step::Timeout { client } => cl(client) && self.timer_due(client),
            Step::At(t) => t > self.now,
            Step::Reset { client, node } => {
                cl(client) && nd(node) && self.conn(setup, client, node).st == ConnSt::Up
            }
            Step::Notice { client, node } => {
                cl(client) && nd(node) && self.conn(setup, client, node).st == ConnSt::Broken
            }
            Step::Crash { node, .. } | Step::Flush { node } => nd(node) && self.nodes[node].up,
            Step::Restart { node } => {
                nd(node) && !self.nodes[node].up && self.nodes[node].restart_at <= self.now
            }
        }
    }

    /// Takes `step`, appending what the checkers must judge to `out`.
    /// A step that [`can`](Self::can) not be taken is an error (nothing
    /// changes); so is a command the core refuses.
    ///
    /// ```
    /// use redlock_sim::replay::{Rig, Setup, Step};
    /// let setup = Setup::default();
    /// let mut rig = Rig::new(&setup, None).unwrap();
    /// let mut out = Vec::new();
    /// assert!(rig.apply(&setup, Step::Timeout { client: 0 }, &mut out).is_err()); // not due
    /// rig.apply(&setup, Step::Acquire { client: 0, zero_pause: false }, &mut out).unwrap();
    /// assert_eq!(rig.queued(&setup, 0, 2).0, 1);
    /// ```
    pub fn apply(
        &mut self,
        setup: &Setup,
        step: Step,
        out: &mut Vec<Happening>,
    ) -> Result<(), String> {
        if !self.can(setup, step) {
            return Err(format!("step `{step}` is not possible at {} µs", self.now));
        }
        match step {
            Step::Acquire {
                client: c,
                zero_pause,
            } => {
                let set = ResourceSet::one(RESOURCE).map_err(|e| e.to_string())?;
                let fencing = match &setup.fenced {
                    Some(wall) => Fencing::On {
                        unix_ms: wall[c] + self.local(c).as_micros() / 1_000,
                    },
                    None => Fencing::Off,
                };
                let options = AcquireOptions {
                    ttl: Duration::from_millis(setup.ttl_ms),
                    retry: setup.retry(zero_pause),
                    fencing,
                };
                let now = self.local(c);
                let cl = &mut self.clients[c];
                let op = cl
                    .core
                    .acquire_set(&set, &options, &mut cl.rng, now)
                    .map_err(|e| format!("acquire refused: {e}"))?;
                cl.work = Work::Acquiring {
                    op: op.into_raw(),
                    start: self.now,
                };
                self.drain(setup, c, out);
            }
            Step::Extend { client: c } => {
                let Work::Holding { lease, .. } = self.clients[c].work.clone() else {
                    return Err("not holding".into());
                };
                let now = self.local(c);
                let ttl = Duration::from_millis(setup.ttl_ms);
                let op = self.clients[c]
                    .core
                    .extend(&lease, ttl, now)
                    .map_err(|e| format!("extend refused: {e}"))?;
                self.clients[c].work = Work::Extending {
                    op: op.into_raw(),
                    lease,
                };
                self.drain(setup, c, out);
            }
            Step::Release { client: c } => {
                let Work::Holding { lease, .. } = self.clients[c].work.clone() else {
                    return Err("not holding".into());
                };
                self.release(setup, c, &lease, out)?;
            }
            Step::ToNode { client: c, node: n } | Step::OldToNode { client: c, node: n } => {
                let old = matches!(step, Step::OldToNode { .. });
                let now_ms = self.node_ms(n);
                let k = self.conn_mut(setup, c, n);
                let chunk = if old {
                    k.old_to_node.pop_front()
                } else {
                    k.to_node.pop_front()
                };
                let chunk = chunk.ok_or("nothing to deliver")?;
                let mut reply = Vec::new();
                let redis = &mut self.nodes[n].redis;
                let feed = redis.feed(c as u64, now_ms, &chunk, &mut reply);
                // Requests are whole: no connection state worth keeping
                // (no AUTH, database 0), so the node state stays canonical.
                redis.close(c as u64);
                let k = self.conn_mut(setup, c, n);
                if feed == Feed::Close {
                    if !old && k.st == ConnSt::Up {
                        k.st = ConnSt::Broken;
                        k.to_node.clear();
                        k.to_client.clear();
                    }
                } else if !old && k.st == ConnSt::Up && !reply.is_empty() {
                    k.to_client.push_back(reply);
                }
            }
            Step::ToClient { client: c, node: n } => {
                let chunk = self
                    .conn_mut(setup, c, n)
                    .to_client
                    .pop_front()
                    .ok_or("nothing to deliver")?;
                let now = self.local(c);
                self.clients[c]
                    .core
                    .handle_input(NodeId(n as u8), &chunk, now);
                self.drain(setup, c, out);
            }
            Step::Timeout { client: c } => {
                let now = self.local(c);
                self.clients[c].core.handle_timeout(now);
                self.drain(setup, c, out);
            }
            Step::At(t) => self.now = t,
            Step::Reset { client: c, node: n } => {
                let k = self.conn_mut(setup, c, n);
                k.st = ConnSt::Broken;
                k.to_node.clear();
                k.to_client.clear();
            }
            Step::Notice { client: c, node: n } => {
                self.conn_mut(setup, c, n).st = ConnSt::Down;
                let now = self.local(c);
                self.clients[c].core.handle_node_down(NodeId(n as u8), now);
                self.drain(setup, c, out);
            }
            Step::Crash {
                node: n,
                persistent,
            } => {
                let node = &mut self.nodes[n];
                node.up = false;
                node.persistent = persistent;
                if persistent {
                    node.restart_at = self.now;
                    node.restart_by = self.now + setup.ttl_ms * 1_000;
                } else {
                    node.restart_at = self.now + setup.empty_restart_delay();
                    node.restart_by = node.restart_at;
                }
                for c in 0..setup.clients {
                    let k = self.conn_mut(setup, c, n);
                    if k.st == ConnSt::Up {
                        k.st = ConnSt::Broken;
                    }
                    k.to_node.clear();
                    k.to_client.clear();
                    k.old_to_node.clear();
                }
            }
            Step::Restart { node: n } => {
                let node = &mut self.nodes[n];
                node.redis.restart(node.persistent);
                node.up = true;
                node.restart_at = 0;
                node.restart_by = 0;
            }
            Step::Flush { node: n } => self.nodes[n].redis.flush_scripts(),
        }
        Ok(())
    }

    fn release(
        &mut self,
        setup: &Setup,
        c: usize,
        lease: &Lease,
        out: &mut Vec<Happening>,
    ) -> Result<(), String> {
        out.push(Happening::EndBelief {
            client: c,
            at: self.now,
        });
        let now = self.local(c);
        let op = self.clients[c]
            .core
            .release(lease, now)
            .map_err(|e| format!("release refused: {e}"))?;
        self.clients[c].work = Work::Releasing { op: op.into_raw() };
        self.drain(setup, c, out);
        Ok(())
    }

    /// The drain contract, again while anything happened.
    fn drain(&mut self, setup: &Setup, c: usize, out: &mut Vec<Happening>) {
        let mut buf = [0u8; redlock_core::MIN_TRANSMIT_BUF];
        let mut events = Vec::new();
        loop {
            let mut progressed = false;
            while let Some(t) = self.clients[c].core.poll_transmit(&mut buf) {
                progressed = true;
                let k = &mut self.conns[c * setup.nodes + t.node.index()];
                // Written to a reset connection: lost.
                if k.st == ConnSt::Up {
                    k.to_node.push_back(buf[..t.len].to_vec());
                }
            }
            while let Some(e) = self.clients[c].core.poll_event() {
                events.push(e);
            }
            for e in events.drain(..) {
                progressed = true;
                self.on_event(setup, c, e, out);
            }
            if !progressed {
                break;
            }
        }
    }

    fn ended(&mut self, c: usize, op: u32, out: &mut Vec<Happening>) {
        let ended = &mut self.clients[c].ended;
        let duplicate = ended.contains(&op);
        if !duplicate {
            ended.push(op);
        }
        out.push(Happening::OpEnded {
            client: c,
            op,
            duplicate,
        });
    }

    fn on_event(&mut self, setup: &Setup, c: usize, e: Event, out: &mut Vec<Happening>) {
        let now = self.local(c);
        match e {
            Event::Connect { node } => {
                let n = node.index();
                if self.nodes[n].up {
                    let k = self.conn_mut(setup, c, n);
                    k.st = ConnSt::Up;
                    k.to_node.clear();
                    k.to_client.clear();
                    self.clients[c].core.handle_connected(node, now);
                } else {
                    self.clients[c].core.handle_node_down(node, now);
                }
            }
            Event::Disconnect { node, .. } => {
                let k = self.conn_mut(setup, c, node.index());
                if k.st == ConnSt::Up {
                    let written: Vec<Vec<u8>> = k.to_node.drain(..).collect();
                    k.old_to_node.extend(written);
                }
                k.to_client.clear();
                k.st = ConnSt::Down;
            }
            Event::NodeFailed { .. } => {}
            Event::Acquired { op, lease } => {
                self.ended(c, op.into_raw(), out);
                if let Work::Acquiring { op: o, start } = self.clients[c].work {
                    if o == op.into_raw() {
                        out.push(Happening::Believe {
                            client: c,
                            start: self.now,
                            end: self.lease_end(c, lease.deadline()),
                            token: *lease.token(),
                            fence: lease.fence(),
                            op_start: start,
                            extension: false,
                        });
                        self.clients[c].work = Work::Holding {
                            lease,
                            extended: false,
                        };
                    }
                }
            }
            Event::AcquireFailed { op, .. } => {
                self.ended(c, op.into_raw(), out);
                if matches!(self.clients[c].work, Work::Acquiring { op: o, .. } if o == op.into_raw())
                {
                    self.clients[c].work = Work::Done;
                }
            }
            Event::Extended { op, lease } => {
                self.ended(c, op.into_raw(), out);
                if matches!(self.clients[c].work, Work::Extending { op: o, .. } if o == op.into_raw())
                {
                    out.push(Happening::Believe {
                        client: c,
                        start: self.now,
                        end: self.lease_end(c, lease.deadline()),
                        token: *lease.token(),
                        fence: lease.fence(),
                        op_start: self.now,
                        extension: true,
                    });
                    self.clients[c].work = Work::Holding {
                        lease,
                        extended: true,
                    };
                }
            }
            Event::Lost { op, .. } => {
                self.ended(c, op.into_raw(), out);
                if let Work::Extending { op: o, lease } = self.clients[c].work.clone() {
                    if o == op.into_raw() && self.release(setup, c, &lease, out).is_err() {
                        self.clients[c].work = Work::Done;
                    }
                }
            }
            Event::Released { op, .. } => {
                self.ended(c, op.into_raw(), out);
                if matches!(self.clients[c].work, Work::Releasing { op: o } if o == op.into_raw()) {
                    self.clients[c].work = Work::Done;
                }
            }
            _ => {}
        }
    }
}

/// What a replay found wrong.
///
/// ```
/// use redlock_sim::replay::Violation;
/// assert_eq!(Violation::KeyLeftBehind.to_string(), "no key left behind");
/// assert!(Violation::MutualExclusion < Violation::QuorumBacking);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Violation {
    /// Two clients believed they held the resource at one true instant
    /// (the simulator's overlap check).
    MutualExclusion,
    /// A belief without a quorum of blocking nodes behind it (the
    /// simulator's quorum-backing check).
    QuorumBacking,
    /// Two grants with one fence.
    FenceUniqueness,
    /// A grant confirmed before another's acquire started has a fence that
    /// is not smaller.
    FenceOrder,
    /// An operation ended twice, or never (nothing left could end it).
    OperationEvents,
    /// Everything is done and up, and a node still holds a live lock key.
    KeyLeftBehind,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Violation::MutualExclusion => "mutual exclusion",
            Violation::QuorumBacking => "quorum backing",
            Violation::FenceUniqueness => "fence uniqueness",
            Violation::FenceOrder => "fence order",
            Violation::OperationEvents => "one event per operation",
            Violation::KeyLeftBehind => "no key left behind",
        })
    }
}

/// What [`replay`] found.
///
/// ```
/// use redlock_sim::replay::{replay, Schedule, Setup};
/// let schedule = Schedule { setup: Setup::sized(1, 1), steps: vec!["acquire 0".parse().unwrap()] };
/// let report = replay(&schedule, None).unwrap();
/// assert!(report.violations.is_empty());
/// assert_eq!(report.trace.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayReport {
    /// Every violation, first of each kind, with the step index it was seen
    /// at and a description.
    pub violations: Vec<(Violation, usize, String)>,
    /// One line per step: the time, the step, what it made happen.
    pub trace: Vec<String>,
}

impl ReplayReport {
    /// Whether a violation of `kind` was found.
    ///
    /// ```
    /// use redlock_sim::replay::{replay, Schedule, Setup, Violation};
    /// let schedule = Schedule { setup: Setup::sized(1, 1), steps: vec![] };
    /// assert!(!replay(&schedule, None).unwrap().found(Violation::KeyLeftBehind));
    /// ```
    pub fn found(&self, kind: Violation) -> bool {
        self.violations.iter().any(|(k, _, _)| *k == kind)
    }
}

#[derive(Clone, Copy, Debug)]
struct Grant {
    fence: u64,
    confirmed: u64,
}

/// Runs `schedule` from the start and judges it with the simulator's
/// checker (mutual exclusion, quorum backing) plus the foreign client's
/// belief, the fencing, event and cleanup checks. An impossible step is an
/// error. Each trace line shows what a delivery carried ([`summarize`]).
///
/// ```
/// use redlock_sim::replay::{replay, Schedule, Setup};
/// let steps = ["acquire 0", "to-node 0 0", "to-client 0 0", "at 2000000"];
/// let schedule = Schedule {
///     setup: Setup::sized(1, 1),
///     steps: steps.iter().map(|s| s.parse().unwrap()).collect(),
/// };
/// let report = replay(&schedule, None).unwrap();
/// assert!(report.violations.is_empty(), "{:?}", report.violations);
/// // A step that is not possible is an error.
/// let bad = Schedule { steps: vec!["release 0".parse().unwrap()], ..schedule };
/// assert!(replay(&bad, None).is_err());
/// ```
pub fn replay(schedule: &Schedule, hook: Option<CoreHook>) -> Result<ReplayReport, String> {
    let setup = &schedule.setup;
    let mut rig = Rig::new(setup, hook)?;
    let mut checker = Checker::new(setup.clients, 1, false);
    let q = setup.quorum();
    let mut report = ReplayReport {
        violations: Vec::new(),
        trace: Vec::new(),
    };
    let mut grants: Vec<Grant> = Vec::new();
    // The foreign client's belief, if its keys are on a quorum.
    let foreign_end = setup.foreign_belief_end();
    let add = |r: &mut ReplayReport, kind: Violation, i: usize, msg: String| {
        if !r.found(kind) {
            r.violations.push((kind, i, msg));
        }
    };
    let mut out = Vec::new();
    for (i, step) in schedule.steps.iter().enumerate() {
        let now = match step {
            Step::At(t) => *t,
            _ => rig.now(),
        };
        backing(&rig, &mut checker, now, q);
        if let Some(u) = checker.unbacked.take() {
            let msg = format!(
                "client {} believed it held \"r\" at {} µs but only {} of {} nodes backed it (belief {}..{} µs)",
                u.client,
                u.at,
                rig.backers(&u.token, u.at),
                setup.nodes,
                u.segment.start,
                u.segment.end
            );
            add(&mut report, Violation::QuorumBacking, i, msg);
        }
        let carried = rig
            .chunk(setup, *step)
            .map(|b| summarize(b, !matches!(step, Step::ToClient { .. })));
        rig.apply(setup, *step, &mut out)
            .map_err(|e| format!("step {i}: {e}"))?;
        let mut notes = Vec::new();
        for h in out.drain(..) {
            notes.push(format!("{h:?}"));
            match h {
                Happening::Believe {
                    client,
                    start,
                    end,
                    token,
                    fence,
                    op_start,
                    extension,
                } => {
                    checker.believe(client, 0, start, end, token);
                    if let Some(fe) = foreign_end.filter(|fe| start < *fe) {
                        let msg = format!(
                            "client {client} believed it held \"r\" at {start} µs while the foreign client held it (0..{fe} µs)"
                        );
                        add(&mut report, Violation::MutualExclusion, i, msg);
                    }
                    if let (Some(f), false) = (fence, extension) {
                        for g in &grants {
                            if g.fence == f {
                                let msg = format!("client {client} was granted fence {f} twice");
                                add(&mut report, Violation::FenceUniqueness, i, msg);
                            }
                            if g.confirmed < op_start && g.fence >= f {
                                let msg = format!(
                                    "client {client}'s acquire started at {op_start} µs, after a grant with fence {} was confirmed at {} µs, and got fence {f}",
                                    g.fence, g.confirmed
                                );
                                add(&mut report, Violation::FenceOrder, i, msg);
                            }
                        }
                        grants.push(Grant {
                            fence: f,
                            confirmed: start,
                        });
                    }
                }
                Happening::EndBelief { client, at } => checker.end(client, 0, at),
                Happening::OpEnded {
                    client,
                    op,
                    duplicate: true,
                } => {
                    let msg = format!("client {client}'s operation {op} ended twice");
                    add(&mut report, Violation::OperationEvents, i, msg);
                }
                Happening::OpEnded { .. } => {}
            }
        }
        report.trace.push(format!(
            "[{} µs] {step}{}{}{}",
            rig.now(),
            carried.map(|c| format!(" ({c})")).unwrap_or_default(),
            if notes.is_empty() { "" } else { ": " },
            notes.join(", ")
        ));
        if let Some(o) = checker.first.take() {
            let msg = format!(
                "client {} believed it held \"r\" at {} µs while client {} held it ({}..{} µs)",
                o.client, o.at, o.other, o.other_segment.start, o.other_segment.end
            );
            add(&mut report, Violation::MutualExclusion, i, msg);
        }
    }
    let end = schedule.steps.len();
    backing(&rig, &mut checker, rig.now(), q);
    if let Some(u) = checker.unbacked.take() {
        let msg = format!(
            "client {} believed it held \"r\" at {} µs but only {} of {} nodes backed it",
            u.client,
            u.at,
            rig.backers(&u.token, u.at),
            setup.nodes
        );
        add(&mut report, Violation::QuorumBacking, end, msg);
    }
    if let Some(c) = rig.stuck() {
        let msg = format!("client {c} waits for an operation that can no longer end");
        add(&mut report, Violation::OperationEvents, end, msg);
    }
    if rig.quiet() {
        let keys = rig.live_keys();
        if !keys.is_empty() {
            let msg = format!("all done and up, yet nodes {keys:?} still hold a lock key");
            add(&mut report, Violation::KeyLeftBehind, end, msg);
        }
    }
    Ok(report)
}

fn backing(rig: &Rig, checker: &mut Checker, now: u64, q: usize) {
    checker.check_backing(now, |_, token, t| rig.backers(token, t) >= q);
}
