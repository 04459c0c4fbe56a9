//! The Redlock state machine: operations over per-node links.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use rand_core::CryptoRng;

use crate::config::{
    AcquireOptions, Config, ConfigError, Fencing, NodeConfig, RetryPolicy, MAX_NODES,
};
use crate::event::{
    CommandError, ErrorKind, Event, FailureKind, LockError, NodeError, NodeId, NodeOutcome,
    NodeReport, OpId, ReleaseReport,
};
use crate::fence::{proposal, MAX_FENCE};
use crate::lease::Lease;
use crate::link::{Cmd, Entry, Link, LinkState, Orphan, HANDSHAKE_RESERVE};
use crate::quorum::{decide, failure_kind, quorum, validity_deadline, Decision};
use crate::resources::ResourceSet;
use crate::resp::{self, Reply, Script};
use crate::time::{micros, Instant};
use crate::token::Token;

/// Capacity of the queue of link directives and diagnostics.
const EVENT_CAP: usize = 4 * MAX_NODES + 32;
/// Diagnostics are dropped (and counted) rather than crowd out directives.
const DIAGNOSTIC_LIMIT: usize = EVENT_CAP - 2 * MAX_NODES;
/// An abandoned request whose reply is this many node timeouts overdue
/// marks its connection as stuck: the link is reset.
const STUCK_FACTOR: u32 = 4;
/// An undo (or a release) owed to a node that is down is kept this many
/// TTLs: after that, whatever it would delete has expired by itself or
/// will within one TTL of the node applying a stale `SET`.
const OWED_TTLS: u32 = 2;

/// The kind of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum OpKind {
    Acquire,
    Extend,
    Release,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// An attempt is in flight.
    Running,
    /// Between two acquire attempts.
    Waiting(Instant),
    /// The result is decided (and maybe not yet polled).
    Finished,
}

/// One operation's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Op {
    kind: OpKind,
    resources: ResourceSet,
    /// Acquire: the current attempt's token (its first 40 characters are the
    /// operation's random part). Extend and release: the token given.
    token: Token,
    /// TTL in whole milliseconds, as sent to the nodes.
    ttl: Duration,
    /// Start of the current attempt.
    t0: Instant,
    /// Start of the first attempt (for the wait deadline).
    first: Instant,
    attempt: u32,
    retry: RetryPolicy,
    /// Fenced acquire: the caller's wall clock (unix ms) at `first`.
    fenced: Option<u64>,
    /// Fenced acquire: this attempt's proposal `p`.
    proposal: u64,
    /// Fenced acquire in round 2 (the counted set is frozen).
    round2: bool,
    /// Fenced acquire: the nodes whose round-1 OK counted (a bit per node).
    counted: u16,
    /// Fenced acquire: the register value each node returned in round 1.
    olds: [u64; MAX_NODES],
    /// Round 2 outcomes (only the counted nodes are asked).
    confirms: NodeReport,
    /// The fence: chosen by a fenced acquire, carried by an extend.
    fence: Option<u64>,
    /// Round-1 outcomes (the only round of everything else).
    outcomes: NodeReport,
    /// Nodes whose key-taking command for this attempt has been written to
    /// the connection and not definitely refused: they may hold the key.
    maybe_landed: u16,
    phase: Phase,
    /// Queue entries still referring to this op.
    refs: u16,
    /// The decision, until its event is polled.
    result: Option<Done>,
    /// Whether the final event has been handed out.
    polled: bool,
    /// State of the jitter generator (seeded from the caller's RNG).
    rng: u64,
}

impl Op {
    /// The event reporting decision `done` of this op.
    fn event(&self, id: OpId, done: Done) -> Option<Event> {
        Some(match (self.kind, done) {
            (OpKind::Release, _) => Event::Released {
                op: id,
                report: ReleaseReport {
                    nodes: self.outcomes,
                },
            },
            (kind, Done::Won(deadline)) => {
                let lease = Lease::with_resources(
                    self.resources.clone(),
                    self.token,
                    self.t0,
                    deadline,
                    self.ttl,
                    self.fence,
                );
                if kind == OpKind::Acquire {
                    Event::Acquired { op: id, lease }
                } else {
                    Event::Extended { op: id, lease }
                }
            }
            (kind, Done::Failed(kind_)) => {
                let error = LockError {
                    kind: kind_,
                    attempts: self.attempt,
                    nodes: self.report(),
                };
                if kind == OpKind::Acquire {
                    Event::AcquireFailed { op: id, error }
                } else {
                    Event::Lost { op: id, error }
                }
            }
            (_, Done::Released) => return None,
        })
    }

    fn counted(&self, node: usize) -> bool {
        self.counted & (1 << node) != 0
    }

    /// Each node's outcome in the last attempt: round 1's, except that a
    /// counted node of a fenced round 2 shows why its fence write did not
    /// confirm (key gone, an error, no reply yet): "ok" there would hide
    /// what failed.
    fn report(&self) -> NodeReport {
        let mut nodes = self.outcomes;
        if self.round2 {
            for node in 0..nodes.len() {
                let confirm = self.confirms.get(node);
                if self.counted(node) && confirm != NodeOutcome::Ok {
                    nodes.set(node, confirm);
                }
            }
        }
        nodes
    }
}

/// What the last command encoded was (see `Redlock::encode_cached`): the
/// same key means the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct EncodedKey {
    op: OpId,
    cmd: Cmd,
    attempt: u32,
    round2: bool,
    by_sha: bool,
}

/// The last command encoded, to copy for the next node.
#[derive(Clone, Debug)]
pub(crate) struct Encoded {
    key: Option<EncodedKey>,
    bytes: Box<[u8]>,
    len: usize,
}

/// Where an outcome comes from (see [`Redlock::record`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The node's reply: what it says is what it did.
    Reply,
    /// A timeout or a reset: the request may or may not have run.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Done {
    Won(Instant),
    Failed(FailureKind),
    Released,
}

#[derive(Debug)]
#[cfg_attr(feature = "__model", derive(Clone, PartialEq, Eq, Hash))]
pub(crate) struct Slot {
    generation: u16,
    op: Option<Op>,
}

/// A directive or diagnostic waiting to be polled (operation results are
/// built from their slot when polled, so this queue stays small).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Queued {
    Connect(NodeId),
    Disconnect(NodeId, NodeError),
    NodeFailed(NodeId, Option<OpId>, NodeError),
}

/// Deliberately broken behaviours, for the simulator and the model checker
/// to prove they catch them (feature `__weaken`). All off by default and in
/// every normal build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Weakness {
    /// Quorum of `n / 2` instead of `n / 2 + 1`.
    pub quorum_half: bool,
    /// No clock-drift term in the validity.
    pub no_drift: bool,
    /// One token for every attempt of an acquire (the pre-fix behaviour).
    pub reuse_token: bool,
    /// Undo, extend and release by `EVALSHA`, re-queued by body at the back
    /// of the queue after `NOSCRIPT` (the pre-fix behaviour).
    pub requeue_noscript: bool,
    /// Drop an undo that cannot be written because the link is down (the
    /// pre-fix behaviour).
    pub drop_owed_undo: bool,
    /// Fencing: OKs that arrive after the counted set was frozen get round 2
    /// and their confirmations count.
    pub fence_late_ok: bool,
    /// Fencing: round 2 overwrites the registers instead of raising them.
    pub fence_plain_set: bool,
    /// Fencing: a per-node `INCR` counter instead of a max register.
    pub fence_incr: bool,
    /// Fencing: one round always, without the `old < p` check.
    pub fence_no_check: bool,
}

/// The sans-IO Redlock core. See the [crate docs](crate) for the contract.
///
/// `OPS` bounds the operations in progress at once (acquires, including their
/// retry pauses, extends and releases); `PIPE` bounds the requests in flight
/// on one node's connection.
#[derive(Debug)]
#[cfg_attr(feature = "__model", derive(Clone))]
pub struct Redlock<const OPS: usize = 64, const PIPE: usize = 128> {
    pub(crate) config: Config,
    pub(crate) quorum: usize,
    pub(crate) weak: Weakness,
    pub(crate) now: Instant,
    /// The highest fence this core has seen (granted, or read in a round 1).
    pub(crate) last_fence: u64,
    /// Allocated once in `new`, never resized: fixed capacity without
    /// putting hundreds of kilobytes on the caller's stack.
    pub(crate) links: Box<[Link<PIPE>]>,
    pub(crate) slots: Box<[Slot]>,
    /// Free slot indices (a stack; capacity `OPS`, allocated in `new`).
    pub(crate) free: Vec<u16>,
    /// Operations in a retry pause: when 0, timers need not scan the slots.
    pub(crate) waiting: usize,
    pub(crate) ready: heapless::Deque<u16, OPS>,
    pub(crate) events: heapless::Deque<Queued, EVENT_CAP>,
    pub(crate) dropped_diagnostics: u64,
    pub(crate) next_transmit: usize,
    /// A cache of encoded bytes, not state: excluded from `__model`'s
    /// equality and hash.
    pub(crate) encoded: Encoded,
}

impl<const OPS: usize, const PIPE: usize> Redlock<OPS, PIPE> {
    /// A core for `nodes` (1..=[`MAX_NODES`]) with `config`.
    ///
    /// The new core immediately holds one [`Event::Connect`] per node: drain
    /// [`poll_event`](Self::poll_event) after construction like after any
    /// input.
    ///
    /// ```
    /// use core::time::Duration;
    /// use redlock_core::{Config, ConfigError, NodeConfig, Redlock};
    ///
    /// let nodes = [NodeConfig::default(), NodeConfig::default(), NodeConfig::default()];
    /// let core: Redlock = Redlock::new(Config::new(Duration::from_secs(10)), &nodes).unwrap();
    /// assert_eq!(core.quorum(), 2);
    /// assert_eq!(Redlock::<64, 128>::new(Config::default(), &[]).unwrap_err(), ConfigError::NoNodes);
    /// ```
    pub fn new(config: Config, nodes: &[NodeConfig]) -> Result<Self, ConfigError> {
        config.validate()?;
        if nodes.is_empty() {
            return Err(ConfigError::NoNodes);
        }
        if nodes.len() > MAX_NODES
            || OPS == 0
            || OPS > usize::from(u16::MAX)
            || PIPE < HANDSHAKE_RESERVE + 3
        {
            return Err(ConfigError::TooManyNodes);
        }
        let mut links = Vec::with_capacity(nodes.len());
        let mut events = heapless::Deque::new();
        for (i, node) in nodes.iter().enumerate() {
            links.push(Link::new(node.clone(), config.reconnect_min));
            let _ = events.push_back(Queued::Connect(NodeId(i as u8)));
        }
        Ok(Redlock {
            config,
            quorum: quorum(nodes.len()),
            weak: Weakness::default(),
            now: Instant::ZERO,
            last_fence: 0,
            links: links.into_boxed_slice(),
            slots: (0..OPS)
                .map(|_| Slot {
                    generation: 0,
                    op: None,
                })
                .collect(),
            free: (0..OPS as u16).rev().collect(),
            waiting: 0,
            ready: heapless::Deque::new(),
            events,
            dropped_diagnostics: 0,
            next_transmit: 0,
            encoded: Encoded {
                key: None,
                bytes: alloc::vec![0u8; crate::MIN_TRANSMIT_BUF].into_boxed_slice(),
                len: 0,
            },
        })
    }

    // ---------------------------------------------------------------- (A) getters

    /// The configuration.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.config().ttl, Config::default().ttl);
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of nodes.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.node_count(), 1);
    /// ```
    pub fn node_count(&self) -> usize {
        self.links.len()
    }

    /// Nodes that must agree (`n / 2 + 1`).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let core: Redlock = Redlock::new(Config::default(), &vec![NodeConfig::default(); 5]).unwrap();
    /// assert_eq!(core.quorum(), 3);
    /// ```
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Whether `node`'s connection is established.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, NodeId, Redlock, Instant};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert!(!core.is_connected(NodeId(0)));
    /// core.handle_connected(NodeId(0), Instant::ZERO);
    /// assert!(core.is_connected(NodeId(0)));
    /// ```
    pub fn is_connected(&self, node: NodeId) -> bool {
        self.links
            .get(node.index())
            .is_some_and(|l| l.state == LinkState::Up)
    }

    /// Operations in progress (including finished ones whose event has not
    /// been polled, or whose late replies or owed undos are still awaited).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.operations_in_flight(), 0);
    /// ```
    pub fn operations_in_flight(&self) -> usize {
        OPS - self.free.len()
    }

    /// Operation slots kept for extensions and releases: a transport lets
    /// acquires hold at most `OPS - ACQUIRE_RESERVE` slots
    /// ([`admits_acquire`](Self::admits_acquire)), so a keeper's extension
    /// or a dropped lease's release always finds one.
    ///
    /// ```
    /// # use redlock_core::Redlock;
    /// assert_eq!(Redlock::<1024, 16>::ACQUIRE_RESERVE, 256);
    /// ```
    pub const ACQUIRE_RESERVE: usize = OPS / 4;

    /// Whether a new acquire may take a slot while `in_flight` operations
    /// run (the reserve for extensions and releases stays free).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let core: Redlock<8, 16> = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert!(core.admits_acquire(core.operations_in_flight()));
    /// assert!(core.admits_acquire(5) && !core.admits_acquire(6));
    /// ```
    pub fn admits_acquire(&self, in_flight: usize) -> bool {
        in_flight + Self::ACQUIRE_RESERVE < OPS
    }

    /// Operation slots free for new commands.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let core: Redlock<8, 16> = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.free_slots(), 8);
    /// ```
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Diagnostic events dropped because the caller did not drain
    /// [`poll_event`](Self::poll_event) (operation results are never dropped).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.dropped_diagnostics(), 0);
    /// ```
    pub fn dropped_diagnostics(&self) -> u64 {
        self.dropped_diagnostics
    }

    /// The highest fence this core has seen: granted to it, or read from a
    /// node's register during a fenced acquire. The next proposal is above it.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.last_fence(), 0);
    /// core.observe_fence(41);
    /// assert_eq!(core.last_fence(), 41);
    /// ```
    pub fn last_fence(&self) -> u64 {
        self.last_fence
    }

    /// Tells the core about a fence seen elsewhere (e.g. persisted from an
    /// earlier process), so its next proposal starts above it. Only ever
    /// raises; a proposal is a hint, so this affects speed, never safety.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// core.observe_fence(9);
    /// core.observe_fence(3);
    /// assert_eq!(core.last_fence(), 9);
    /// ```
    pub fn observe_fence(&mut self, fence: u64) {
        self.last_fence = self.last_fence.max(fence.min(MAX_FENCE));
    }

    /// The clock drift allowance for `ttl` (as used for validity).
    fn drift(&self, ttl: Duration) -> Duration {
        if self.weak.no_drift {
            Duration::ZERO
        } else {
            self.config.drift(ttl)
        }
    }

    /// Test-only: break the algorithm on purpose (quorum of `n / 2`, or no
    /// drift term), so a simulator can prove its checker notices.
    #[cfg(feature = "__weaken")]
    pub fn weaken(&mut self, quorum_half: bool, no_drift: bool) {
        self.weaken_with(Weakness {
            quorum_half,
            no_drift,
            ..self.weak
        });
    }

    /// Test-only: turn on the planted bugs of `weak` (see [`Weakness`]).
    #[cfg(feature = "__weaken")]
    pub fn weaken_with(&mut self, weak: Weakness) {
        self.weak = weak;
        self.quorum = if weak.quorum_half {
            (self.links.len() / 2).max(1)
        } else {
            quorum(self.links.len())
        };
        for link in self.links.iter_mut() {
            link.keep_owed = !weak.drop_owed_undo;
            link.script_load = weak.requeue_noscript;
        }
    }

    // ---------------------------------------------------------------- (C) commands

    /// Starts acquiring `resource` with the configured TTL and retry policy.
    /// The token comes from `rng`, which must be cryptographically secure;
    /// the retry jitter is seeded from it too. Exactly 28 bytes are drawn
    /// (20 for the token, 8 for the jitter seed), so a caller may prefetch
    /// them from the operating system and hand over an infallible RNG. Ends with
    /// [`Event::Acquired`] or [`Event::AcquireFailed`].
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant};
    /// # struct Counter(u64);
    /// # impl rand_core::TryRng for Counter {
    /// #     type Error = core::convert::Infallible;
    /// #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
    /// #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 += 1; Ok(self.0) }
    /// #     fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
    /// #         for b in d { *b = self.try_next_u64()? as u8 } Ok(()) }
    /// # }
    /// # impl rand_core::TryCryptoRng for Counter {}
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let op = core.acquire(b"jobs:1", &mut Counter(0), Instant::ZERO).unwrap();
    /// assert!(core.acquire(b"", &mut Counter(0), Instant::ZERO).is_err());
    /// # let _ = op;
    /// ```
    pub fn acquire<R: CryptoRng + ?Sized>(
        &mut self,
        resource: &[u8],
        rng: &mut R,
        now: Instant,
    ) -> Result<OpId, CommandError> {
        let retry = self.config.retry;
        self.acquire_with(resource, self.config.ttl, retry, rng, now)
    }

    /// Starts acquiring `resource` for `ttl` with a given retry policy
    /// (e.g. [`RetryPolicy::none`] for a single attempt).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant, RetryPolicy};
    /// # use core::time::Duration;
    /// # struct Counter(u64);
    /// # impl rand_core::TryRng for Counter {
    /// #     type Error = core::convert::Infallible;
    /// #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
    /// #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 += 1; Ok(self.0) }
    /// #     fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
    /// #         for b in d { *b = self.try_next_u64()? as u8 } Ok(()) }
    /// # }
    /// # impl rand_core::TryCryptoRng for Counter {}
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let once = core.acquire_with(b"r", Duration::from_secs(5), RetryPolicy::none(), &mut Counter(0), Instant::ZERO);
    /// assert!(once.is_ok());
    /// ```
    pub fn acquire_with<R: CryptoRng + ?Sized>(
        &mut self,
        resource: &[u8],
        ttl: Duration,
        retry: RetryPolicy,
        rng: &mut R,
        now: Instant,
    ) -> Result<OpId, CommandError> {
        let set = ResourceSet::one(resource)?;
        let options = AcquireOptions {
            ttl,
            retry,
            fencing: Fencing::Off,
        };
        self.acquire_set(&set, &options, rng, now)
    }

    /// Starts acquiring every resource of `resources` at once (all or
    /// nothing on each node), plain or fenced as `options` say. The
    /// general form of [`acquire`](Self::acquire).
    ///
    /// Each attempt gets its own token (the operation's random part plus the
    /// attempt number), so the undo of a failed attempt can never match a
    /// later attempt's key. A fenced acquire runs the protocol of
    /// [`crate::fence`]; its lease carries [`Lease::fence`].
    ///
    /// ```
    /// # use redlock_core::{AcquireOptions, Config, Fencing, NodeConfig, Redlock, Instant, ResourceSet};
    /// # struct Counter(u64);
    /// # impl rand_core::TryRng for Counter {
    /// #     type Error = core::convert::Infallible;
    /// #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
    /// #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 += 1; Ok(self.0) }
    /// #     fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
    /// #         for b in d { *b = self.try_next_u64()? as u8 } Ok(()) }
    /// # }
    /// # impl rand_core::TryCryptoRng for Counter {}
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let set = ResourceSet::new(&[b"invoices".as_slice(), b"ledger"]).unwrap();
    /// let options = AcquireOptions { fencing: Fencing::On { unix_ms: 1_764_000_000_000 }, ..core.config().acquire_options() };
    /// assert!(core.acquire_set(&set, &options, &mut Counter(0), Instant::ZERO).is_ok());
    /// ```
    pub fn acquire_set<R: CryptoRng + ?Sized>(
        &mut self,
        resources: &ResourceSet,
        options: &AcquireOptions,
        rng: &mut R,
        now: Instant,
    ) -> Result<OpId, CommandError> {
        let now = self.advance(now);
        let ttl = self.checked_ttl(options.ttl)?;
        options.retry.validate().map_err(CommandError::BadRetry)?;
        let token = Token::generate(rng);
        let seed = rng.next_u64();
        let id = self.new_op(
            OpKind::Acquire,
            resources,
            token,
            ttl,
            options.retry,
            now,
            seed,
        )?;
        if let (Fencing::On { unix_ms }, Some(op)) = (options.fencing, self.op_mut(id)) {
            op.fenced = Some(unix_ms);
        }
        self.start_attempt(id, now);
        Ok(id)
    }

    /// Starts extending `lease` to `ttl` from now (compare-and-`PEXPIRE` of
    /// every key, all or nothing per node). Ends with [`Event::Extended`]
    /// (the lease keeps its fence) or [`Event::Lost`]. A lease already past
    /// its deadline is reported lost at once and nothing is sent: its keys
    /// may have expired and been taken by others, and renewing them would
    /// make a lock nobody holds.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant, Lease, Token, Event};
    /// # use core::time::Duration;
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let expired = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::from_secs(30)).unwrap();
    /// let op = core.extend(&expired, Duration::from_secs(30), Instant::from_millis(1)).unwrap();
    /// let lost = core.poll_events_until_op(op);
    /// assert!(matches!(lost, Some(Event::Lost { .. })));
    /// ```
    pub fn extend(
        &mut self,
        lease: &Lease,
        ttl: Duration,
        now: Instant,
    ) -> Result<OpId, CommandError> {
        let now = self.advance(now);
        let ttl = self.checked_ttl(ttl)?;
        let id = self.new_op(
            OpKind::Extend,
            lease.resources(),
            *lease.token(),
            ttl,
            RetryPolicy::none(),
            now,
            0,
        )?;
        if let Some(op) = self.op_mut(id) {
            op.fence = lease.fence();
        }
        if lease.is_valid(now) {
            self.start_attempt(id, now);
        } else {
            self.finish(id, Done::Failed(FailureKind::Expired));
        }
        Ok(id)
    }

    /// Extends the lock held on `resource` by `token`, when only the token is
    /// known (e.g. given on a command line): no local deadline is checked.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant, Token};
    /// # use core::time::Duration;
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let t = Token::from_bytes(b"tok").unwrap();
    /// assert!(core.extend_token(b"r", &t, Duration::from_secs(30), Instant::ZERO).is_ok());
    /// ```
    pub fn extend_token(
        &mut self,
        resource: &[u8],
        token: &Token,
        ttl: Duration,
        now: Instant,
    ) -> Result<OpId, CommandError> {
        self.extend_token_set(&ResourceSet::one(resource)?, token, ttl, now)
    }

    /// Extends the lock held on every resource of `resources` by `token`.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant, ResourceSet, Token};
    /// # use core::time::Duration;
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let set = ResourceSet::new(&[b"a".as_slice(), b"b"]).unwrap();
    /// let t = Token::from_bytes(b"tok").unwrap();
    /// assert!(core.extend_token_set(&set, &t, Duration::from_secs(30), Instant::ZERO).is_ok());
    /// ```
    pub fn extend_token_set(
        &mut self,
        resources: &ResourceSet,
        token: &Token,
        ttl: Duration,
        now: Instant,
    ) -> Result<OpId, CommandError> {
        let now = self.advance(now);
        let ttl = self.checked_ttl(ttl)?;
        let id = self.new_op(
            OpKind::Extend,
            resources,
            *token,
            ttl,
            RetryPolicy::none(),
            now,
            0,
        )?;
        self.start_attempt(id, now);
        Ok(id)
    }

    /// Starts releasing `lease` on every node (compare-and-delete: a key
    /// that holds another token is never deleted). Ends with
    /// [`Event::Released`] as soon as the verdict is known (see
    /// [`ReleaseReport`]); the other nodes still get the release.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant, Lease, Token};
    /// # use core::time::Duration;
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::from_secs(30)).unwrap();
    /// assert!(core.release(&lease, Instant::ZERO).is_ok());
    /// ```
    pub fn release(&mut self, lease: &Lease, now: Instant) -> Result<OpId, CommandError> {
        self.release_token_set(lease.resources(), lease.token(), now)
    }

    /// Releases the lock held on `resource` by `token`.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant, Token};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert!(core.release_token(b"r", &Token::from_bytes(b"t").unwrap(), Instant::ZERO).is_ok());
    /// ```
    pub fn release_token(
        &mut self,
        resource: &[u8],
        token: &Token,
        now: Instant,
    ) -> Result<OpId, CommandError> {
        self.release_token_set(&ResourceSet::one(resource)?, token, now)
    }

    /// Releases the lock held on every resource of `resources` by `token`.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant, ResourceSet, Token};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let set = ResourceSet::new(&[b"a".as_slice(), b"b"]).unwrap();
    /// assert!(core.release_token_set(&set, &Token::from_bytes(b"t").unwrap(), Instant::ZERO).is_ok());
    /// ```
    pub fn release_token_set(
        &mut self,
        resources: &ResourceSet,
        token: &Token,
        now: Instant,
    ) -> Result<OpId, CommandError> {
        let now = self.advance(now);
        let ttl = self.config.ttl;
        let id = self.new_op(
            OpKind::Release,
            resources,
            *token,
            ttl,
            RetryPolicy::none(),
            now,
            0,
        )?;
        self.start_attempt(id, now);
        Ok(id)
    }

    /// Cancels an acquire that has not been decided yet: whatever part of
    /// the lock it took is released at once, and it ends with
    /// [`Event::AcquireFailed`] of kind [`FailureKind::Cancelled`]. Returns
    /// `false` (and does nothing) when `op` is not an undecided acquire;
    /// if it already produced [`Event::Acquired`], release that lease instead.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant, OpId};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert!(!core.cancel(OpId::from_raw(0), Instant::ZERO));
    /// ```
    pub fn cancel(&mut self, op: OpId, now: Instant) -> bool {
        let now = self.advance(now);
        match self.op(op) {
            Some(o) if o.kind == OpKind::Acquire && o.phase != Phase::Finished => {}
            _ => return false,
        }
        if self.op(op).is_some_and(|o| o.phase == Phase::Running) {
            self.cleanup_attempt(op, now);
        }
        self.finish(op, Done::Failed(FailureKind::Cancelled));
        true
    }

    // ---------------------------------------------------------------- (B) inputs

    /// The transport connected to `node`. The handshake (`AUTH`, `SELECT`)
    /// is queued ahead of any request waiting for the link (undos owed to the
    /// node come first among those); other requests are held back until
    /// `AUTH` and `SELECT` are answered.
    ///
    /// Replies are matched to requests by their order on one connection, so
    /// once this is called, bytes read from any *earlier* connection to the
    /// node must never be passed to [`handle_input`](Self::handle_input).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, NodeId, Redlock, Instant, Auth};
    /// let node = NodeConfig { auth: Some(Auth::new(None, "pw").unwrap()), db: 0 };
    /// let mut core: Redlock = Redlock::new(Config::default(), &[node]).unwrap();
    /// core.handle_connected(NodeId(0), Instant::ZERO);
    /// let mut buf = [0u8; 1024];
    /// let t = core.poll_transmit(&mut buf).unwrap(); // AUTH pw
    /// assert_eq!(t.node, NodeId(0));
    /// ```
    pub fn handle_connected(&mut self, node: NodeId, now: Instant) {
        let now = self.advance(now);
        let Some(link) = self.links.get(node.index()) else {
            return;
        };
        if link.state == LinkState::Up {
            // A second connect without a disconnect: the old stream is gone.
            self.reset_link(
                node,
                NodeError::new(ErrorKind::Disconnected, "reconnected"),
                false,
                now,
            );
        }
        let deadline = now + self.config.node_timeout;
        let Some(link) = self.links.get_mut(node.index()) else {
            return;
        };
        link.connected(deadline);
    }

    /// Bytes arrived from `node`'s connection, split anywhere. Every byte is
    /// consumed. Malformed or unsolicited replies reset the link (an
    /// [`Event::Disconnect`] is emitted).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, NodeId, Redlock, Instant, Event};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// core.handle_connected(NodeId(0), Instant::ZERO);
    /// core.handle_input(NodeId(0), b"garbage", Instant::ZERO);
    /// assert!(core.is_connected(NodeId(0)) == false);
    /// ```
    pub fn handle_input(&mut self, node: NodeId, mut bytes: &[u8], now: Instant) {
        let now = self.advance(now);
        while !bytes.is_empty() {
            let Some(link) = self.links.get_mut(node.index()) else {
                return;
            };
            if link.state != LinkState::Up {
                return;
            }
            let taken = link.absorb(bytes);
            bytes = &bytes[taken..];
            loop {
                let Some(link) = self.links.get_mut(node.index()) else {
                    return;
                };
                match resp::decode(link.rx()) {
                    Ok(Some((reply, used))) => {
                        let detail = match reply {
                            Reply::Error(_, s, e) => {
                                let text = link.rx().get(s..e).unwrap_or(&[]);
                                Some(NodeError::new(
                                    ErrorKind::Other,
                                    core::str::from_utf8(text).unwrap_or("<non-utf8 error>"),
                                ))
                            }
                            _ => None,
                        };
                        link.consume(used);
                        if !self.dispatch(node, reply, detail, now) {
                            return;
                        }
                    }
                    Ok(None) => {
                        if link.rx_full() {
                            let e = NodeError::new(
                                ErrorKind::Protocol,
                                "reply larger than the receive buffer",
                            );
                            self.reset_link(node, e, true, now);
                            return;
                        }
                        break;
                    }
                    Err(()) => {
                        let e =
                            NodeError::new(ErrorKind::Protocol, "malformed or unexpected reply");
                        self.reset_link(node, e, true, now);
                        return;
                    }
                }
            }
        }
    }

    /// `node`'s connection dropped, or connecting failed. Requests in flight
    /// there fail (undos owed to the node are kept for the next connection);
    /// the core asks to reconnect after a backoff.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, NodeId, Redlock, Instant};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// core.handle_node_down(NodeId(0), Instant::ZERO);
    /// assert!(core.poll_timeout().is_some()); // the reconnect backoff
    /// ```
    pub fn handle_node_down(&mut self, node: NodeId, now: Instant) {
        let now = self.advance(now);
        match self.links.get(node.index()) {
            Some(l) if !matches!(l.state, LinkState::Backoff(_)) => {}
            _ => return,
        }
        self.reset_link(
            node,
            NodeError::new(ErrorKind::Disconnected, "connection lost"),
            false,
            now,
        );
    }

    /// Time has passed. Safe to call early, late or spuriously: only what is
    /// due at `now` happens.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// core.handle_timeout(Instant::ZERO);
    /// core.handle_timeout(Instant::ZERO);
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        let stuck_after = self.config.node_timeout * STUCK_FACTOR;
        for n in 0..self.links.len() {
            let node = NodeId(n as u8);
            // Requests past their deadline.
            while let Some((idx, op, cmd, _)) =
                self.links.get_mut(n).and_then(|l| l.expire_one(now))
            {
                if cmd == Cmd::Release && self.keeps_owed(n) {
                    // A release nobody confirmed stays owed to the node: it
                    // is written again if the connection is replaced.
                    let until = self.owed_until(op, now);
                    if let Some(link) = self.links.get_mut(n) {
                        link.make_owed(idx, op, until);
                    }
                } else {
                    if let Some(link) = self.links.get_mut(n) {
                        link.abandon(idx);
                    }
                }
                // A key-taking request that was never written has no bit in
                // `maybe_landed` (set only by `fill`, when it is written).
                if cmd.counts() {
                    self.node_failed(
                        node,
                        Some(op),
                        NodeError::new(ErrorKind::Timeout, "no reply in time"),
                    );
                    self.record(
                        op,
                        n,
                        cmd,
                        NodeOutcome::Failed(ErrorKind::Timeout),
                        0,
                        Source::Unknown,
                        now,
                    );
                }
                if !(cmd == Cmd::Release && self.keeps_owed(n)) {
                    self.unref(op);
                }
            }
            if let Some(link) = self.links.get_mut(n) {
                link.trim();
            }
            let Some(link) = self.links.get(n) else {
                continue;
            };
            match link.state {
                LinkState::Up if link.stuck(now, stuck_after) => {
                    let e = NodeError::new(ErrorKind::Timeout, "connection stopped answering");
                    self.reset_link(node, e, true, now);
                }
                LinkState::Backoff(until) if until <= now => {
                    if let Some(link) = self.links.get_mut(n) {
                        link.state = LinkState::Connecting;
                    }
                    self.push_directive(Queued::Connect(node));
                }
                _ => {}
            }
        }
        for slot in 0..OPS {
            if self.waiting == 0 {
                break;
            }
            let Some(op) = self.slots[slot].op.as_ref() else {
                continue;
            };
            if let Phase::Waiting(until) = op.phase {
                if until <= now {
                    let id = OpId::new(slot, self.slots[slot].generation);
                    if let Some(o) = self.op_mut(id) {
                        o.attempt = o.attempt.saturating_add(1);
                    }
                    self.start_attempt(id, now);
                }
            }
        }
        // `waiting` only lets slot scans be skipped; in debug builds (every
        // test) check that it counts exactly the ops waiting to retry.
        debug_assert_eq!(
            self.waiting,
            self.slots
                .iter()
                .filter(|s| matches!(
                    s.op,
                    Some(Op {
                        phase: Phase::Waiting(_),
                        ..
                    })
                ))
                .count(),
            "the count of operations waiting to retry"
        );
    }

    // ---------------------------------------------------------------- (D) outputs

    /// Writes the next bytes to send into `buf` and says to which node.
    /// Call until `None` after every input. Several pipelined commands for
    /// one node are batched while they fit; a `buf` of
    /// [`MIN_TRANSMIT_BUF`](crate::MIN_TRANSMIT_BUF) bytes always fits one
    /// (a command that does not fit an empty `buf` fails its request at once,
    /// as [`ErrorKind::BufferTooSmall`](crate::ErrorKind::BufferTooSmall)).
    /// Nodes take turns, so one busy node cannot hold the others back.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let mut buf = [0u8; 1024];
    /// assert!(core.poll_transmit(&mut buf).is_none()); // not connected yet
    /// ```
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let n = self.links.len();
        for i in 0..n {
            let node = (self.next_transmit + i) % n;
            let has_work = self
                .links
                .get(node)
                .is_some_and(|l| l.state == LinkState::Up && l.has_unsent());
            if !has_work {
                continue;
            }
            let len = self.fill(node, buf);
            if len > 0 {
                self.next_transmit = (node + 1) % n;
                return Some(Transmit {
                    node: NodeId(node as u8),
                    len,
                });
            }
        }
        None
    }

    /// The next operation result, link directive or diagnostic.
    ///
    /// ```
    /// # use redlock_core::{Config, Event, NodeConfig, NodeId, Redlock};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.poll_event(), Some(Event::Connect { node: NodeId(0) }));
    /// assert_eq!(core.poll_event(), None);
    /// ```
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(q) = self.events.pop_front() {
            return Some(match q {
                Queued::Connect(node) => Event::Connect { node },
                Queued::Disconnect(node, error) => Event::Disconnect { node, error },
                Queued::NodeFailed(node, op, error) => Event::NodeFailed { node, op, error },
            });
        }
        while let Some(slot) = self.ready.pop_front() {
            let slot = usize::from(slot);
            let id = OpId::new(slot, self.slots[slot].generation);
            let Some(op) = self.slots[slot].op.as_mut() else {
                continue;
            };
            let done = op.result.take();
            op.polled = true;
            let event = done.and_then(|d| self.op(id).and_then(|op| op.event(id, d)));
            self.maybe_free(id);
            if event.is_some() {
                return event;
            }
        }
        None
    }

    /// Convenience for callers driving one operation by hand: drains events
    /// until the one that ends `op` (other events are dropped).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, OpId};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.poll_events_until_op(OpId::from_raw(1)), None);
    /// ```
    pub fn poll_events_until_op(&mut self, op: OpId) -> Option<Event> {
        while let Some(e) = self.poll_event() {
            if e.op() == Some(op) {
                return Some(e);
            }
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if
    /// anything waits on time. A soft deadline: calling early is harmless.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.poll_timeout(), None);
    /// ```
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stuck_after = self.config.node_timeout * STUCK_FACTOR;
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            next = Some(next.map_or(t, |n| n.min(t)));
        };
        for link in self.links.iter() {
            if let Some(t) = link.next_deadline(stuck_after) {
                consider(t);
            }
            if let LinkState::Backoff(until) = link.state {
                consider(until);
            }
        }
        if self.waiting > 0 {
            for slot in self.slots.iter() {
                if let Some(Op {
                    phase: Phase::Waiting(until),
                    ..
                }) = slot.op
                {
                    consider(until);
                }
            }
        }
        next
    }

    // ---------------------------------------------------------------- internals

    /// Time never goes backwards inside the core: an earlier `now` is taken as
    /// "no time has passed".
    fn advance(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    fn checked_ttl(&self, ttl: Duration) -> Result<Duration, CommandError> {
        self.config.check_ttl(ttl).map_err(CommandError::BadTtl)?;
        Ok(Duration::from_millis(ttl.as_millis() as u64))
    }

    fn op(&self, id: OpId) -> Option<&Op> {
        let slot = self.slots.get(id.slot())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.op.as_ref()
    }

    fn op_mut(&mut self, id: OpId) -> Option<&mut Op> {
        let slot = self.slots.get_mut(id.slot())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.op.as_mut()
    }

    fn keeps_owed(&self, node: usize) -> bool {
        self.links.get(node).is_some_and(|l| l.keep_owed)
    }

    /// Until when an undo or release of `op` is worth sending.
    fn owed_until(&self, op: OpId, now: Instant) -> Instant {
        let ttl = self.op(op).map_or(self.config.ttl, |o| o.ttl);
        now + ttl.saturating_mul(OWED_TTLS)
    }

    #[allow(clippy::too_many_arguments)]
    fn new_op(
        &mut self,
        kind: OpKind,
        resources: &ResourceSet,
        token: Token,
        ttl: Duration,
        retry: RetryPolicy,
        now: Instant,
        seed: u64,
    ) -> Result<OpId, CommandError> {
        let slot = usize::from(self.free.pop().ok_or(CommandError::TooManyOperations)?);
        let n = self.links.len();
        let s = &mut self.slots[slot];
        s.generation = s.generation.wrapping_add(1);
        // Built in the slot, the set copied in place after: a set cloned
        // into the literal is a copy of its whole capacity (about 1 KiB),
        // then another as the op moves into the slot.
        let op = s.op.insert(Op {
            kind,
            resources: ResourceSet::placeholder(),
            token,
            ttl,
            t0: now,
            first: now,
            attempt: 1,
            retry,
            fenced: None,
            proposal: 0,
            round2: false,
            counted: 0,
            olds: [0; MAX_NODES],
            confirms: NodeReport::new(n),
            fence: None,
            outcomes: NodeReport::new(n),
            maybe_landed: 0,
            phase: Phase::Running,
            refs: 0,
            result: None,
            polled: false,
            rng: seed,
        });
        op.resources.clone_from(resources);
        Ok(OpId::new(slot, s.generation))
    }

    /// Sends this attempt's command to every node.
    fn start_attempt(&mut self, id: OpId, now: Instant) {
        let n = self.links.len();
        let deadline = now + self.config.node_timeout;
        let last_fence = self.last_fence;
        let reuse = self.weak.reuse_token;
        let Some(op) = self.op_mut(id) else { return };
        let was_waiting = matches!(op.phase, Phase::Waiting(_));
        op.t0 = now;
        op.phase = Phase::Running;
        op.outcomes = NodeReport::new(n);
        op.confirms = NodeReport::new(n);
        op.maybe_landed = 0;
        op.round2 = false;
        op.counted = 0;
        op.olds = [0; MAX_NODES];
        let cmd = match op.kind {
            OpKind::Acquire => {
                op.token = op.token.for_attempt(if reuse { 1 } else { op.attempt });
                if let Some(wall) = op.fenced {
                    let elapsed = now.saturating_duration_since(op.first).as_millis() as u64;
                    op.proposal = proposal(last_fence, wall.saturating_add(elapsed));
                    op.fence = None;
                }
                if op.fenced.is_none() && op.resources.len() == 1 {
                    Cmd::Set
                } else {
                    Cmd::Acquire
                }
            }
            OpKind::Extend => Cmd::Extend,
            OpKind::Release => Cmd::Release,
        };
        if was_waiting {
            self.waiting -= 1;
        }
        for node in 0..n {
            if let Err(kind) = self.enqueue(node, id, cmd, deadline) {
                if let Some(op) = self.op_mut(id) {
                    op.outcomes.set(node, NodeOutcome::Failed(kind));
                }
                if cmd == Cmd::Release && kind != ErrorKind::Backlog {
                    // The node is down: the release is owed to it.
                    let until = self.owed_until(id, now);
                    let _ = self.enqueue(node, id, Cmd::Undo(0), until);
                }
                self.node_failed(NodeId(node as u8), Some(id), NodeError::new(kind, ""));
            }
        }
        self.evaluate(id, now);
    }

    fn enqueue(
        &mut self,
        node: usize,
        id: OpId,
        cmd: Cmd,
        deadline: Instant,
    ) -> Result<(), ErrorKind> {
        let by_sha =
            self.weak.requeue_noscript && matches!(cmd, Cmd::Extend | Cmd::Release | Cmd::Undo(_));
        let link = self.links.get_mut(node).ok_or(ErrorKind::Disconnected)?;
        let mut entry = Entry::new(Some(id), cmd, deadline);
        entry.by_sha = by_sha;
        link.enqueue(entry)?;
        if let Some(op) = self.op_mut(id) {
            op.refs += 1;
        }
        Ok(())
    }

    fn unref(&mut self, id: OpId) {
        if let Some(op) = self.op_mut(id) {
            op.refs = op.refs.saturating_sub(1);
        }
        self.maybe_free(id);
    }

    fn maybe_free(&mut self, id: OpId) {
        let free = self
            .op(id)
            .is_some_and(|op| op.refs == 0 && op.phase == Phase::Finished && op.polled);
        if free {
            self.slots[id.slot()].op = None;
            // The slot's next op may get this id back one day (generations
            // wrap): never let it hit the cache of this one's bytes.
            if self.encoded.key.is_some_and(|k| k.op == id) {
                self.encoded.key = None;
            }
            // Never exceeds OPS entries: each slot is freed once per use.
            self.free.push(id.slot() as u16);
        }
    }

    /// Records `node`'s outcome for the `cmd` of `id`'s current attempt
    /// (`old`: a fenced round 1's register value) and re-decides. Only a
    /// reply from the node (`Reply`) tells that a key-taking command stored
    /// nothing; a timeout or a connection reset (`Unknown`) leaves it
    /// possibly landed, so it is undone if the attempt fails.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        id: OpId,
        node: usize,
        cmd: Cmd,
        outcome: NodeOutcome,
        old: u64,
        source: Source,
        now: Instant,
    ) {
        let late_ok = self.weak.fence_late_ok;
        let Some(op) = self.op_mut(id) else { return };
        if op.phase != Phase::Running {
            return;
        }
        if cmd == Cmd::FenceWrite {
            if op.confirms.get(node) == NodeOutcome::Pending {
                op.confirms.set(node, outcome);
                self.evaluate(id, now);
            }
            return;
        }
        if op.outcomes.get(node) != NodeOutcome::Pending {
            return;
        }
        op.outcomes.set(node, outcome);
        if cmd.takes_key() && outcome != NodeOutcome::Ok && source == Source::Reply {
            // A definite refusal (held, error reply) means no key there.
            op.maybe_landed &= !(1 << node);
        }
        // `old` is a register value only in a fenced acquire's OK (0 for
        // every other reply), and only OK nodes' `olds` are read.
        if op.fenced.is_some() {
            if let Some(slot) = op.olds.get_mut(node) {
                *slot = old;
            }
            self.last_fence = self.last_fence.max(old.min(MAX_FENCE));
        }
        let Some(op) = self.op_mut(id) else { return };
        if op.round2 {
            // The counted set is frozen: a late OK is part of the lock (and
            // of its undo) but its read did not go into the fence.
            if late_ok && outcome == NodeOutcome::Ok {
                op.counted |= 1 << node;
                let deadline = now + self.config.node_timeout;
                if self.enqueue(node, id, Cmd::FenceWrite, deadline).is_err() {
                    if let Some(op) = self.op_mut(id) {
                        op.confirms
                            .set(node, NodeOutcome::Failed(ErrorKind::Backlog));
                    }
                }
                self.evaluate(id, now);
            }
            return;
        }
        self.evaluate(id, now);
    }

    fn evaluate(&mut self, id: OpId, now: Instant) {
        let q = self.quorum;
        let Some(op) = self.op(id) else { return };
        if op.phase != Phase::Running {
            return;
        }
        let deadline = validity_deadline(op.t0, op.ttl, self.drift(op.ttl));
        match op.kind {
            OpKind::Release => {
                let report = ReleaseReport { nodes: op.outcomes };
                if report.decided().is_some() {
                    self.finish(id, Done::Released);
                }
            }
            OpKind::Extend => match decide(&op.outcomes, q, now, deadline) {
                Decision::Wait => {}
                Decision::Won(deadline) => self.finish(id, Done::Won(deadline)),
                Decision::Lost(kind) => self.finish(id, Done::Failed(kind)),
            },
            OpKind::Acquire if op.round2 => {
                let (mut ok, mut pending) = (0, 0);
                for node in 0..self.links.len() {
                    if op.counted(node) {
                        match op.confirms.get(node) {
                            NodeOutcome::Ok => ok += 1,
                            NodeOutcome::Pending => pending += 1,
                            _ => {}
                        }
                    }
                }
                if now >= deadline {
                    self.attempt_failed(id, FailureKind::Expired, now);
                } else if ok >= q {
                    self.won(id, deadline);
                } else if ok + pending < q {
                    let kind = failure_kind(&op.confirms, q);
                    let kind = match kind {
                        FailureKind::AuthFailed => kind,
                        _ => FailureKind::Unavailable,
                    };
                    self.attempt_failed(id, kind, now);
                }
            }
            OpKind::Acquire => match decide(&op.outcomes, q, now, deadline) {
                Decision::Wait => {}
                Decision::Won(deadline) if op.fenced.is_none() => self.won(id, deadline),
                Decision::Won(deadline) => self.fence_round(id, deadline, now),
                Decision::Lost(kind) => self.attempt_failed(id, kind, now),
            },
        }
    }

    /// A fenced round 1 reached a quorum: freeze the counted set, then win
    /// in one round or start round 2.
    fn fence_round(&mut self, id: OpId, deadline: Instant, now: Instant) {
        let weak = self.weak;
        let n = self.links.len();
        let Some(op) = self.op_mut(id) else { return };
        let mut counted = 0u16;
        let mut top = 0u64;
        for node in 0..n {
            if op.outcomes.get(node) == NodeOutcome::Ok {
                counted |= 1 << node;
                top = top.max(op.olds[node]);
            }
        }
        op.counted = counted;
        if weak.fence_incr {
            // The planted per-node counter: the largest counter is the fence.
            op.fence = Some(top);
            self.won(id, deadline);
            return;
        }
        if top < op.proposal || weak.fence_no_check {
            op.fence = Some(op.proposal);
            self.won(id, deadline);
            return;
        }
        let f = top.saturating_add(1);
        if f > MAX_FENCE {
            let e = NodeError::new(
                ErrorKind::Protocol,
                "a fence register is at the largest fence (2^53 - 1)",
            );
            self.node_failed(NodeId(0), Some(id), e);
            self.attempt_failed(id, FailureKind::Unavailable, now);
            return;
        }
        op.fence = Some(f);
        op.round2 = true;
        let write_deadline = now + self.config.node_timeout;
        for node in 0..n {
            if counted & (1 << node) == 0 {
                continue;
            }
            if let Err(kind) = self.enqueue(node, id, Cmd::FenceWrite, write_deadline) {
                if let Some(op) = self.op_mut(id) {
                    op.confirms.set(node, NodeOutcome::Failed(kind));
                }
            }
        }
        self.evaluate(id, now);
    }

    fn won(&mut self, id: OpId, deadline: Instant) {
        if let Some(f) = self.op(id).and_then(|op| op.fence) {
            self.last_fence = self.last_fence.max(f);
        }
        self.finish(id, Done::Won(deadline));
    }

    fn finish(&mut self, id: OpId, done: Done) {
        let Some(op) = self.op_mut(id) else { return };
        if op.phase == Phase::Finished {
            return;
        }
        let was_waiting = matches!(op.phase, Phase::Waiting(_));
        op.phase = Phase::Finished;
        op.result = Some(done);
        if was_waiting {
            self.waiting -= 1;
        }
        // Cannot overflow: each slot is queued at most once per generation.
        let _ = self.ready.push_back(id.slot() as u16);
    }

    /// Releases whatever this acquire attempt may have taken: every node that
    /// said OK, and every node whose key-taking command was sent but not
    /// answered (the undo travels on the same connection behind it, so it is
    /// applied after it; if the connection is down, the undo is owed to the
    /// node and written after the next handshake). Commands not yet written
    /// are withdrawn instead.
    fn cleanup_attempt(&mut self, id: OpId, now: Instant) {
        let Some(attempt) = self.op(id).map(|o| o.attempt) else {
            return;
        };
        let until = self.owed_until(id, now);
        for node in 0..self.links.len() {
            let (withdrawn, abandoned) = match self.links.get_mut(node) {
                Some(link) => link.detach(id, Cmd::takes_key),
                None => (0, 0),
            };
            let (w2, a2) = match self.links.get_mut(node) {
                Some(link) => link.detach(id, |c| c == Cmd::FenceWrite),
                None => (0, 0),
            };
            if let Some(link) = self.links.get_mut(node) {
                link.trim();
            }
            for _ in 0..withdrawn + abandoned + w2 + a2 {
                self.unref(id);
            }
            // A withdrawn request was never written: it has no bit in
            // `maybe_landed` (set only by `fill`).
            let Some(op) = self.op_mut(id) else { return };
            let landed =
                op.outcomes.get(node) == NodeOutcome::Ok || op.maybe_landed & (1 << node) != 0;
            if landed {
                if let Err(kind) = self.enqueue(node, id, Cmd::Undo(attempt), until) {
                    // The key expires by itself at its TTL. Say so.
                    let e =
                        NodeError::new(kind, "could not send the release undoing a failed acquire");
                    self.node_failed(NodeId(node as u8), Some(id), e);
                }
            }
        }
    }

    fn attempt_failed(&mut self, id: OpId, kind: FailureKind, now: Instant) {
        self.cleanup_attempt(id, now);
        let Some(op) = self.op_mut(id) else { return };
        let pause = jitter(&mut op.rng, op.retry.delay, op.retry.jitter);
        let next = now + pause;
        let again = match op.retry.wait {
            Some(wait) => next < op.first + wait,
            None => op.attempt <= op.retry.count,
        };
        if again && kind != FailureKind::Cancelled {
            op.phase = Phase::Waiting(next);
            self.waiting += 1;
        } else {
            self.finish(id, Done::Failed(kind));
        }
    }

    /// Handles one reply from `node`. Returns `false` if the link was reset.
    fn dispatch(
        &mut self,
        node: NodeId,
        reply: Reply,
        detail: Option<NodeError>,
        now: Instant,
    ) -> bool {
        let n = node.index();
        let Some(link) = self.links.get_mut(n) else {
            return false;
        };
        let Some(entry) = link.pop_reply() else {
            let e = NodeError::new(ErrorKind::Protocol, "reply to no request");
            self.reset_link(node, e, true, now);
            return false;
        };
        link.answered();
        let error = match (reply, detail) {
            (Reply::Error(kind, _, _), Some(mut d)) => {
                d.kind = kind;
                Some(d)
            }
            _ => None,
        };
        let Some(id) = entry.op else {
            // Handshake, or a request abandoned after its deadline.
            if entry.cmd.is_handshake() {
                if error.is_none() && matches!(entry.cmd, Cmd::Auth | Cmd::Select) {
                    if let Some(link) = self.links.get_mut(n) {
                        link.handshake_step_done();
                    }
                }
                if let Some(e) = error {
                    if matches!(entry.cmd, Cmd::Auth | Cmd::Select) {
                        // Unusable connection: without AUTH every request
                        // fails, without SELECT they would go to the wrong
                        // database. Requests in flight fail with this error.
                        self.reset_link(node, e, true, now);
                        return false;
                    }
                    self.node_failed(node, None, e);
                }
            }
            return true;
        };
        if entry.by_sha && matches!(reply, Reply::Error(ErrorKind::NoScript, _, _)) {
            // The planted pre-fix behaviour (weakened build only): re-queue
            // by body at the back of the queue, behind whatever was
            // pipelined after the first copy.
            let link = self.links.get_mut(n);
            let requeued = link.is_some_and(|l| {
                l.enqueue(Entry::new(Some(id), entry.cmd, entry.deadline))
                    .is_ok()
            });
            if requeued {
                return true; // the op's reference moves to the new entry
            }
        }
        let (outcome, old) = outcome_of(entry.cmd, reply, self.weak.fence_incr);
        if let NodeOutcome::Failed(k) = outcome {
            let e = error.unwrap_or_else(|| NodeError::new(k, "unexpected reply"));
            self.node_failed(node, Some(id), e);
        }
        if entry.cmd.counts() {
            self.record(id, n, entry.cmd, outcome, old, Source::Reply, now);
        }
        self.unref(id);
        true
    }

    /// Drops `node`'s connection state: every request in flight there fails,
    /// except owed undos (kept for the next connection), and a release in
    /// flight becomes owed too.
    fn reset_link(&mut self, node: NodeId, error: NodeError, tell_transport: bool, now: Instant) {
        let n = node.index();
        let max = self.config.reconnect_max;
        let Some(link) = self.links.get_mut(n) else {
            return;
        };
        let mut orphans: heapless::Vec<Orphan, PIPE> = heapless::Vec::new();
        link.reset(now, error.kind, max, &mut orphans);
        let kind = error.kind;
        if tell_transport {
            self.push_directive(Queued::Disconnect(node, error.clone()));
        }
        self.node_failed(node, None, error);
        for o in orphans {
            // An unwritten key-taking request has no bit in `maybe_landed`
            // (set only by `fill`, when it is written): nothing to clear.
            if o.cmd.counts() {
                let failed = NodeOutcome::Failed(kind);
                self.record(o.op, n, o.cmd, failed, 0, Source::Unknown, now);
            }
            if o.cmd == Cmd::Release {
                let until = self.owed_until(o.op, now);
                let _ = self.enqueue(n, o.op, Cmd::Undo(0), until);
            }
            self.unref(o.op);
        }
    }

    /// Fills `buf` with as many unsent commands for `node` as fit.
    fn fill(&mut self, node: usize, buf: &mut [u8]) -> usize {
        let mut len = 0;
        let reply_by = self.now + self.config.node_timeout;
        while let Some((idx, entry)) = self.links.get_mut(node).and_then(|l| l.next_unsent()) {
            let written = match self.encode_cached(node, &entry, &mut buf[len..]) {
                Some(w) => w,
                None if len > 0 => break,
                None => {
                    // Even an empty buffer cannot hold it: fail the request.
                    let failed = self.links.get_mut(node).and_then(|l| l.withdraw(idx));
                    if let Some(id) = failed {
                        if entry.cmd.counts() {
                            let outcome = NodeOutcome::Failed(ErrorKind::BufferTooSmall);
                            let now = self.now;
                            self.record(id, node, entry.cmd, outcome, 0, Source::Reply, now);
                        }
                        self.unref(id);
                    }
                    continue;
                }
            };
            len += written;
            if let Some(link) = self.links.get_mut(node) {
                link.mark_sent(idx, reply_by);
            }
            if let (true, Some(id)) = (entry.cmd.takes_key(), entry.op) {
                if let Some(op) = self.op_mut(id) {
                    op.maybe_landed |= 1 << node;
                }
            }
        }
        if let Some(link) = self.links.get_mut(node) {
            link.trim();
        }
        len
    }

    /// Encodes `entry` into `out`, or copies it from the last command
    /// encoded when it is the same one: an attempt sends the very same bytes
    /// to every node, so they are encoded once (with `redis-protocol`) and
    /// copied for the others.
    fn encode_cached(&mut self, node: usize, entry: &Entry, out: &mut [u8]) -> Option<usize> {
        let key = entry.op.and_then(|id| {
            let op = self.op(id)?;
            Some(EncodedKey {
                op: id,
                cmd: entry.cmd,
                attempt: op.attempt,
                round2: op.round2,
                by_sha: entry.by_sha,
            })
        });
        if let Some(k) = key {
            if self.encoded.key == Some(k) {
                let bytes = self.encoded.bytes.get(..self.encoded.len)?;
                let dst = out.get_mut(..bytes.len())?;
                dst.copy_from_slice(bytes);
                return Some(bytes.len());
            }
        }
        let written = self.encode(node, entry, out)?;
        if let (Some(k), Some(src)) = (key, out.get(..written)) {
            if let Some(dst) = self.encoded.bytes.get_mut(..written) {
                dst.copy_from_slice(src);
                self.encoded.len = written;
                self.encoded.key = Some(k);
            }
        }
        Some(written)
    }

    fn encode(&self, node: usize, entry: &Entry, out: &mut [u8]) -> Option<usize> {
        let link = self.links.get(node)?;
        let mut d1 = [0u8; 20];
        let mut d2 = [0u8; 20];
        match entry.cmd {
            Cmd::Auth => {
                let auth = link.config.auth.as_ref()?;
                resp::encode_auth(out, auth.username(), auth.password())
            }
            Cmd::Select => resp::encode_select(out, link.config.db),
            Cmd::ScriptLoad(s) => resp::encode_script_load(out, s),
            Cmd::Set => {
                let op = self.op(entry.op?)?;
                resp::encode_set(
                    out,
                    op.resources.first(),
                    op.token.as_bytes(),
                    op.ttl.as_millis() as u64,
                )
            }
            Cmd::Acquire => {
                let op = self.op(entry.op?)?;
                let ttl = resp::digits(op.ttl.as_millis() as u64, &mut d1);
                match op.fenced {
                    None => resp::encode_script(
                        out,
                        Script::Acquire,
                        false,
                        &op.resources,
                        false,
                        &[op.token.as_bytes(), ttl],
                    ),
                    Some(_) => {
                        let script = if self.weak.fence_incr {
                            Script::FenceIncr
                        } else {
                            Script::Acquire
                        };
                        let p = resp::digits(op.proposal, &mut d2);
                        resp::encode_script(
                            out,
                            script,
                            false,
                            &op.resources,
                            true,
                            &[op.token.as_bytes(), ttl, p],
                        )
                    }
                }
            }
            Cmd::FenceWrite => {
                let op = self.op(entry.op?)?;
                let f = resp::digits(op.fence?, &mut d1);
                let script = if self.weak.fence_plain_set {
                    Script::FenceWriteSet
                } else {
                    Script::FenceWrite
                };
                resp::encode_script(
                    out,
                    script,
                    false,
                    &op.resources,
                    true,
                    &[op.token.as_bytes(), f],
                )
            }
            Cmd::Extend => {
                let op = self.op(entry.op?)?;
                let ttl = resp::digits(op.ttl.as_millis() as u64, &mut d1);
                resp::encode_script(
                    out,
                    Script::Extend,
                    entry.by_sha,
                    &op.resources,
                    false,
                    &[op.token.as_bytes(), ttl],
                )
            }
            Cmd::Release => {
                let op = self.op(entry.op?)?;
                resp::encode_script(
                    out,
                    Script::Release,
                    entry.by_sha,
                    &op.resources,
                    false,
                    &[op.token.as_bytes()],
                )
            }
            Cmd::Undo(attempt) => {
                let op = self.op(entry.op?)?;
                let token = if attempt == 0 {
                    op.token
                } else {
                    op.token
                        .for_attempt(if self.weak.reuse_token { 1 } else { attempt })
                };
                resp::encode_script(
                    out,
                    Script::Release,
                    entry.by_sha,
                    &op.resources,
                    false,
                    &[token.as_bytes()],
                )
            }
        }
    }

    fn push_directive(&mut self, e: Queued) {
        if self.events.push_back(e).is_err() {
            // Not for a transport that keeps the contract: directives are
            // bounded by 2 per node and the queue reserves room for them. A
            // caller reporting connections it was never asked for can
            // overflow it: count it rather than panic.
            self.dropped_diagnostics += 1;
        }
    }

    fn node_failed(&mut self, node: NodeId, op: Option<OpId>, error: NodeError) {
        if self.events.len() >= DIAGNOSTIC_LIMIT {
            self.dropped_diagnostics += 1;
            return;
        }
        let _ = self.events.push_back(Queued::NodeFailed(node, op, error));
    }
}

/// What a reply to `cmd` means: the node's outcome, and for a fenced round 1
/// the register value it returned.
fn outcome_of(cmd: Cmd, reply: Reply, incr: bool) -> (NodeOutcome, u64) {
    let _ = incr;
    let outcome = match (cmd, reply) {
        (_, Reply::Error(kind, _, _)) => NodeOutcome::Failed(kind),
        (Cmd::Set, Reply::Simple) => NodeOutcome::Ok,
        (Cmd::Set, Reply::Nil) => NodeOutcome::Held,
        (Cmd::Acquire, Reply::Int(i)) if i >= 0 => return (NodeOutcome::Ok, i as u64),
        (Cmd::Acquire, Reply::Int(-1)) => NodeOutcome::Held,
        (Cmd::FenceWrite, Reply::Int(1)) => NodeOutcome::Ok,
        (Cmd::FenceWrite, Reply::Int(0)) => NodeOutcome::Missing,
        (Cmd::Extend, Reply::Int(1)) => NodeOutcome::Ok,
        (Cmd::Release | Cmd::Undo(_), Reply::Int(i)) if i >= 1 => NodeOutcome::Ok,
        (Cmd::Extend | Cmd::Release | Cmd::Undo(_), Reply::Int(0)) => NodeOutcome::Held,
        (Cmd::Extend | Cmd::Release | Cmd::Undo(_), Reply::Int(-1)) => NodeOutcome::Missing,
        _ => NodeOutcome::Failed(ErrorKind::Protocol),
    };
    (outcome, 0)
}

/// The pause before the next attempt: `delay` moved by a uniform amount in
/// `[-jitter/2, +jitter/2]`, never negative. `state` is a SplitMix64 stream
/// seeded from the caller's RNG when the operation started. Saturating
/// throughout: no policy, however absurd, overflows.
fn jitter(state: &mut u64, delay: Duration, jitter: Duration) -> Duration {
    let j = micros(jitter);
    if j == 0 {
        return delay;
    }
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let offset = match j.checked_add(1) {
        Some(span) => z % span,
        None => z,
    };
    Duration::from_micros(micros(delay).saturating_add(offset).saturating_sub(j / 2))
}

/// Bytes to send to one node, written by
/// [`Redlock::poll_transmit`] at the start of the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Destination node.
    pub node: NodeId,
    /// Number of bytes written at the start of the buffer.
    pub len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pause is SplitMix64 (first outputs for state 0:
    /// 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4) reduced modulo `jitter + 1`,
    /// centred on `delay`: pinned so a change to the mixing is seen.
    #[test]
    fn jitter_is_splitmix64_centred_on_the_delay() {
        let (delay, j) = (Duration::from_millis(100), Duration::from_millis(50));
        let mut s = 0;
        assert_eq!(jitter(&mut s, delay, j), Duration::from_micros(102_379));
        assert_eq!(jitter(&mut s, delay, j), Duration::from_micros(87_741));
        let mut s = 7;
        assert_eq!(jitter(&mut s, delay, Duration::ZERO), delay);
        assert_eq!(s, 7, "no jitter draws nothing");
    }

    #[test]
    fn jitter_never_overflows() {
        let mut s = 1;
        for (d, j) in [
            (Duration::MAX, Duration::MAX),
            (Duration::ZERO, Duration::MAX),
            (
                Duration::from_micros(u64::MAX),
                Duration::from_micros(u64::MAX),
            ),
            (Duration::MAX, Duration::from_micros(1)),
        ] {
            let _ = jitter(&mut s, d, j);
        }
        let p = jitter(
            &mut s,
            Duration::from_millis(100),
            Duration::from_millis(50),
        );
        assert!(p >= Duration::from_millis(75) && p <= Duration::from_millis(125));
    }
}
