//! What one simulated run is made of: the options that shape it, the fixed
//! scripts of the named scenarios, and what a run reports.

use core::fmt;
use core::str::FromStr;
use core::time::Duration;
use std::collections::BTreeMap;

use redlock_core::{Redlock, RetryPolicy};

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
    /// A node loses its fence registers: it crashes and restarts without
    /// persistence (no AOF) after at least a TTL. Redlock's "delayed
    /// restart" keeps the *locks* safe (every key it lost had expired
    /// anyway), but the registers that fencing needs are gone. Injected as
    /// a wave over a quorum of nodes shortly after some client acquired.
    /// Breaks fencing's assumption, not the lock's: the fence checker must
    /// fail while the overlap checker stays clean.
    RegisterAmnesia,
}

impl Fault {
    /// Every unsafe fault.
    pub const ALL: [Fault; 4] = [
        Fault::Amnesia,
        Fault::ClockJump,
        Fault::Pause,
        Fault::RegisterAmnesia,
    ];

    /// Whether the fault breaks one of the lock's own assumptions (every
    /// one but [`Fault::RegisterAmnesia`], which only breaks fencing's).
    ///
    /// ```
    /// use redlock_sim::Fault;
    /// assert!(Fault::Pause.breaks_the_lock());
    /// assert!(!Fault::RegisterAmnesia.breaks_the_lock());
    /// ```
    pub fn breaks_the_lock(self) -> bool {
        self != Fault::RegisterAmnesia
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Amnesia => "amnesia",
            Fault::ClockJump => "clock-jump",
            Fault::Pause => "pause",
            Fault::RegisterAmnesia => "register-amnesia",
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
            "unknown fault {:?} (expected one of: amnesia, clock-jump, pause, register-amnesia)",
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
    /// assert_eq!("register-amnesia".parse::<Fault>(), Ok(Fault::RegisterAmnesia));
    /// assert!("gremlins".parse::<Fault>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Fault, UnknownFault> {
        match s.to_ascii_lowercase().as_str() {
            "amnesia" => Ok(Fault::Amnesia),
            "clock-jump" | "clockjump" | "clock_jump" => Ok(Fault::ClockJump),
            "pause" => Ok(Fault::Pause),
            "register-amnesia" | "registeramnesia" | "register_amnesia" => {
                Ok(Fault::RegisterAmnesia)
            }
            _ => Err(UnknownFault(s.to_string())),
        }
    }
}

/// Whether a feature of the workload is used: on every seed, on none, or
/// chosen per seed ("swarm": on about half of them).
///
/// ```
/// use redlock_sim::{Choice, Scenario};
/// assert_eq!(Scenario::default().fencing, Choice::Swarm);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Choice {
    /// On no seed.
    Never,
    /// Chosen per seed.
    #[default]
    Swarm,
    /// On every seed.
    Always,
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
    /// Whether the safe menu includes the network that is adversarial in
    /// time (each element on or off per seed): heavy-tailed or bimodal
    /// delays, a slow node whose replies lag by up to several TTLs for
    /// seconds, connection resets in the middle of a pipeline, frequent
    /// script cache flushes, and retry pauses drawn from 0 up. All of it
    /// stays within Redlock's assumptions (late replies, lost connections)
    /// and heals with the other faults. `false` gives the menu of earlier
    /// versions (for comparisons).
    pub timing_faults: bool,
    /// Fenced locks ([`redlock_core::Fencing::On`], each client with its
    /// own wall clock, synchronised, skewed, far behind or ahead, sometimes
    /// stepped) and a simulated fenced store as the protected resource:
    /// every protected action of a fenced holder is a write carrying its
    /// lease's fence, accepted iff the fence is not below the highest the
    /// store accepted ([`redlock_core::fence::FenceGuard`]). On a fenced
    /// seed every client is fenced, or (a quarter of them) each client is
    /// fenced or plain, so plain and fenced locks share the resources.
    /// Scripted runs are fenced only with [`Choice::Always`].
    pub fencing: Choice,
    /// Multi-resource workloads: each client locks its own set of the
    /// resources `r`, `r2`, `r3` with one `acquire_set` (overlapping pairs
    /// such as `{r, r2}`, `{r2, r3}`, `{r, r3}`, single resources, or all
    /// three; names given in any order, with duplicates), and the checker
    /// judges every resource of a set. Scripted runs never use sets.
    pub resource_sets: Choice,
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
            timing_faults: true,
            fencing: Choice::Swarm,
            resource_sets: Choice::Swarm,
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
    /// The clients' retry policy; `None` = retry every TTL/20 (jitter
    /// TTL/50) for up to 4 TTLs.
    pub retry: Option<RetryPolicy>,
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
    /// `SCRIPT FLUSH` on `node`.
    ScriptFlush {
        /// The node.
        node: usize,
    },
    /// Until `until`, every reply `node` sends (to any client) arrives
    /// `extra` later than it would.
    SlowReplies {
        /// The node.
        node: usize,
        /// When the node is fast again.
        until: Duration,
        /// The added delay.
        extra: Duration,
    },
    /// A client outside the simulation (no belief is tracked for it) holds
    /// resource `"r"` on `node` for `hold` (node clock), if it is free.
    ForeignKey {
        /// The node.
        node: usize,
        /// How long the key lives.
        hold: Duration,
    },
    /// `node`'s fence register of resource `"r"` is set to `value` (by a
    /// grant outside the simulation, e.g. a client whose wall clock ran
    /// ahead), so that fenced acquires need their second round.
    FenceRegister {
        /// The node.
        node: usize,
        /// The register's value.
        value: u64,
    },
    /// The network resets the connection between `client` and `node`
    /// (bytes in flight on it are lost).
    Reset {
        /// The client.
        client: usize,
        /// The node.
        node: usize,
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
    /// `EVALSHA`s answered `NOSCRIPT` (script cache flushed or lost).
    pub noscript: u64,
    /// Runs with fenced locks (1 for a fenced seed; summed over seeds).
    pub fenced_runs: u64,
    /// Runs whose clients lock sets of resources.
    pub set_runs: u64,
    /// Acquisitions of a set of more than one resource.
    pub set_acquisitions: u64,
    /// Fenced grants (acquisitions with a fence).
    pub fenced_grants: u64,
    /// Fenced grants that needed the second round.
    pub round2: u64,
    /// Writes the fenced store accepted (one per resource written).
    pub store_accepted: u64,
    /// Writes the fenced store refused as stale (a newer holder had
    /// written): the fence doing its job.
    pub store_rejected: u64,
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
        self.noscript += other.noscript;
        self.fenced_runs += other.fenced_runs;
        self.set_runs += other.set_runs;
        self.set_acquisitions += other.set_acquisitions;
        self.fenced_grants += other.fenced_grants;
        self.round2 += other.round2;
        self.store_accepted += other.store_accepted;
        self.store_rejected += other.store_rejected;
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

/// What the fence checker found wrong (see [`Outcome::fence_failure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FenceViolation {
    /// Two grants of one resource got the same fence.
    Uniqueness,
    /// A grant whose acquire started (its first request left) after another
    /// grant of the resource was confirmed, in true time, got a fence that
    /// is not above the other's.
    Order,
    /// The fenced store accepted a write from a grant after accepting one
    /// from another grant that came after the first's (A, B, A).
    Interleaved,
    /// Under the stated assumptions (no assumption-breaking fault other
    /// than [`Fault::RegisterAmnesia`]), the store refused a write from a
    /// holder whose lease was valid.
    ValidRejected,
}

impl fmt::Display for FenceViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FenceViolation::Uniqueness => "duplicate fence",
            FenceViolation::Order => "fence order",
            FenceViolation::Interleaved => "interleaved writes",
            FenceViolation::ValidRejected => "valid holder rejected",
        })
    }
}

/// What the checker saw behind a failure, when it recognises the pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diagnosis {
    /// On `node`, `client`'s undo (compare-and-delete) of a failed acquire
    /// attempt was answered `NOSCRIPT`, re-sent by `EVAL`, and deleted the
    /// key that a *later* `SET` of the same token had stored: the undo was
    /// re-ordered behind the next attempt (issue 9, defect 1).
    UndoReordered {
        /// The node whose key was deleted.
        node: usize,
        /// The client whose undo deleted it.
        client: usize,
    },
    /// On `node`, a `SET` of `client`'s acquire was refused because the key
    /// held a token that an earlier attempt of the *same* operation had
    /// stored there, and no compare-and-delete of it had run on the node
    /// since: the operation was blocked by its own stale key (a liveness
    /// failure; issue 9, defect 5 when `reconnected`).
    OwnStaleKey {
        /// The node.
        node: usize,
        /// The client.
        client: usize,
        /// The client's connection to the node was reset after the stale
        /// key was stored (its undo was owed across a reconnect).
        reconnected: bool,
        /// An undo of it reached the node but was answered `NOSCRIPT`.
        undo_noscript: bool,
    },
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
    /// The recognised pattern behind [`Outcome::failure`], if any.
    pub diagnosis: Option<Diagnosis>,
    /// The first violation the fence checker found (fenced runs only),
    /// with a one-line description. Judged apart from
    /// [`Outcome::failure`]: a fenced run goes on after a mutual-exclusion
    /// violation, to see whether the fenced store kept the data safe.
    pub fence_failure: Option<(FenceViolation, String)>,
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

    /// Whether the fence checker found a violation.
    ///
    /// ```
    /// let o = redlock_sim::simulate(0, &redlock_sim::Scenario::default());
    /// assert!(!o.is_fence_violation());
    /// ```
    pub fn is_fence_violation(&self) -> bool {
        self.fence_failure.is_some()
    }
}
