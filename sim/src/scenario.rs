//! What one simulated run is made of: the options that shape it, the fixed
//! scripts of the named scenarios, and what a run reports.

use core::fmt;
use core::str::FromStr;
use core::time::Duration;
use std::collections::BTreeMap;

use redlock_core::Redlock;

/// The core as every simulated client runs it (small capacities: a client
/// has at most a few operations in flight).
pub type SimCore = Redlock<16, 32>;

/// A fault that breaks one of Redlock's stated assumptions on purpose. With
/// one of these the checker must find violations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// A node restarts at once with its keys lost (no persistence, no
    /// restart delay). Injected as a wave over a quorum of nodes shortly
    /// after some client acquired.
    Amnesia,
    /// A node's clock jumps forward past the drift bound (by 0.6 to 1.2
    /// TTLs), expiring its keys early. Injected as a wave over a quorum of
    /// nodes shortly after some client acquired.
    ClockJump,
    /// A holder checks its lease, then stops for longer than its lease
    /// (1.2 to 2 TTLs), then performs its protected action anyway.
    Pause,
}

impl Fault {
    /// Every unsafe fault.
    pub const ALL: [Fault; 3] = [Fault::Amnesia, Fault::ClockJump, Fault::Pause];
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Amnesia => "amnesia",
            Fault::ClockJump => "clock-jump",
            Fault::Pause => "pause",
        })
    }
}

/// An unknown fault name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFault(pub String);

impl fmt::Display for UnknownFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown fault {:?} (expected one of: amnesia, clock-jump, pause)",
            self.0
        )
    }
}

impl std::error::Error for UnknownFault {}

impl FromStr for Fault {
    type Err = UnknownFault;
    /// ```
    /// use redlock_sim::Fault;
    /// assert_eq!("clock-jump".parse::<Fault>(), Ok(Fault::ClockJump));
    /// assert!("gremlins".parse::<Fault>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Fault, UnknownFault> {
        match s.to_ascii_lowercase().as_str() {
            "amnesia" => Ok(Fault::Amnesia),
            "clock-jump" | "clockjump" | "clock_jump" => Ok(Fault::ClockJump),
            "pause" => Ok(Fault::Pause),
            _ => Err(UnknownFault(s.to_string())),
        }
    }
}

/// The shape of one simulated run. [`Scenario::default`] is the safe menu:
/// 5 nodes, 3 clients, the TTL and the safe faults chosen per seed.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Number of simulated Redis nodes (1..=16).
    pub nodes: usize,
    /// Number of clients, each running its own core (1..=64).
    pub clients: usize,
    /// The lock TTL; `None` = chosen per seed (300 ms to 3 s).
    pub ttl: Option<Duration>,
    /// Assumption-breaking faults to inject.
    pub unsafe_faults: Vec<Fault>,
    /// Whether to draw faults from the safe menu (partitions, resets,
    /// crashes with persistence or a restart delay of at least a TTL, short
    /// client pauses, script cache flushes, latency spikes, split replies).
    pub safe_faults: bool,
    /// A fixed script instead of the random workload and faults.
    pub script: Option<Script>,
    /// Called on every client's core after construction (tests use it to
    /// weaken the core on purpose).
    pub core_hook: Option<fn(&mut SimCore)>,
    /// Length of the fault phase, in TTLs.
    pub fault_ttls: u64,
    /// Keep a readable trace and the timeline data (slower).
    pub record: bool,
    /// Events kept in the readable trace.
    pub trace_len: usize,
    /// Step bound: more events than this is a livelock failure.
    pub max_steps: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            nodes: 5,
            clients: 3,
            ttl: None,
            unsafe_faults: Vec::new(),
            safe_faults: true,
            script: None,
            core_hook: None,
            fault_ttls: 10,
            record: false,
            trace_len: 60,
            max_steps: 2_000_000,
        }
    }
}

/// A fixed scenario: what each client does and which faults happen when.
/// Times are true times from the start of the run.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Client `i` follows `clients[i]` (missing entries: the client idles).
    pub clients: Vec<ClientScript>,
    /// Faults at fixed times.
    pub faults: Vec<(Duration, ScriptFault)>,
}

/// One scripted client: acquire once (retrying for up to 4 TTLs), hold,
/// act, release.
#[derive(Clone, Debug)]
pub struct ClientScript {
    /// When to start acquiring.
    pub start: Duration,
    /// How long to hold after acquiring (on the client's clock), acting
    /// every quarter of it while the lease is valid.
    pub hold: Duration,
    /// Before its first protected action, after checking the lease, the
    /// client stops this long and then acts without checking again (a GC
    /// pause).
    pub pause_before_action: Option<Duration>,
}

/// A scripted fault.
#[derive(Clone, Debug)]
pub enum ScriptFault {
    /// Traffic between `client` and `node` is held (both ways) until `until`.
    Partition {
        /// The client.
        client: usize,
        /// The node.
        node: usize,
        /// When the partition heals.
        until: Duration,
    },
    /// `node`'s clock jumps forward by `by`.
    ClockJump {
        /// The node.
        node: usize,
        /// The jump.
        by: Duration,
    },
    /// `node` crashes and restarts `restart_after` later, keeping its keys
    /// only when `persistent`.
    Crash {
        /// The node.
        node: usize,
        /// Down time.
        restart_after: Duration,
        /// Whether keys survive the restart.
        persistent: bool,
    },
}

/// Counters of one run (or, added up, of many).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Acquire-hold-release cycles completed.
    pub cycles: u64,
    /// `Acquired` events.
    pub acquisitions: u64,
    /// Acquires that failed because the lock was held (contention).
    pub busy: u64,
    /// Acquires that failed for another reason (too few nodes answered...).
    pub unavailable: u64,
    /// Successful extensions.
    pub extends: u64,
    /// Extensions that lost the lease.
    pub lost: u64,
    /// Protected actions performed.
    pub actions: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Events processed.
    pub steps: u64,
    /// Simulated true time, in microseconds.
    pub sim_micros: u64,
}

impl Stats {
    /// Adds `other` into `self`.
    ///
    /// ```
    /// let mut a = redlock_sim::Stats::default();
    /// let b = redlock_sim::Stats { cycles: 2, ..Default::default() };
    /// a.add(&b);
    /// a.add(&b);
    /// assert_eq!(a.cycles, 4);
    /// ```
    pub fn add(&mut self, other: &Stats) {
        self.cycles += other.cycles;
        self.acquisitions += other.acquisitions;
        self.busy += other.busy;
        self.unavailable += other.unavailable;
        self.extends += other.extends;
        self.lost += other.lost;
        self.actions += other.actions;
        self.steps += other.steps;
        self.sim_micros += other.sim_micros;
        for (k, v) in &other.faults {
            *self.faults.entry(k).or_insert(0) += v;
        }
    }
}

/// Why a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// Two clients held (or acted on) one resource at the same true time,
    /// or a client believed it held a resource that fewer than a quorum of
    /// nodes kept from the others (quorum backing).
    Safety,
    /// After the faults healed, some client never acquired in time.
    Liveness,
    /// The step bound was exceeded.
    Livelock,
}

/// What one run found.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The failure, if any, with a one-line description.
    pub failure: Option<(FailureClass, String)>,
    /// Hash of every processed event: the same seed and scenario always
    /// give the same hash.
    pub trace_hash: u64,
    /// Counters.
    pub stats: Stats,
    /// The last events before the end of the run, readable (only with
    /// [`Scenario::record`]).
    pub trace: Vec<String>,
    /// The timeline as SVG (only with [`Scenario::record`]).
    pub svg: Option<String>,
}

impl Outcome {
    /// Whether the run found a mutual-exclusion violation.
    ///
    /// ```
    /// let o = redlock_sim::simulate(0, &redlock_sim::Scenario::default());
    /// assert!(!o.is_violation());
    /// ```
    pub fn is_violation(&self) -> bool {
        matches!(self.failure, Some((FailureClass::Safety, _)))
    }
}
