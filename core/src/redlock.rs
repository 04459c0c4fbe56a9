//! The Redlock state machine: operations over per-node links.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;

use rand_core::CryptoRng;

use crate::config::{Config, ConfigError, NodeConfig, RetryPolicy, MAX_NODES, MAX_RESOURCE_LEN};
use crate::event::{
    CommandError, ErrorKind, Event, FailureKind, LockError, NodeError, NodeId, NodeOutcome,
    NodeReport, OpId, ReleaseReport,
};
use crate::lease::Lease;
use crate::link::{Cmd, Entry, Link, LinkState, HANDSHAKE_RESERVE};
use crate::quorum::{decide, quorum, validity_deadline, Decision};
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

/// The kind of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Acquire,
    Extend,
    Release,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// An attempt is in flight.
    Running,
    /// Between two acquire attempts.
    Waiting(Instant),
    /// The result is decided (and maybe not yet polled).
    Finished,
}

/// One operation's state.
#[derive(Clone, Debug)]
struct Op {
    kind: OpKind,
    resource: heapless::Vec<u8, MAX_RESOURCE_LEN>,
    token: Token,
    /// TTL in whole milliseconds, as sent to the nodes.
    ttl: Duration,
    /// Start of the current attempt.
    t0: Instant,
    /// Start of the first attempt (for the wait deadline).
    first: Instant,
    attempt: u32,
    retry: RetryPolicy,
    outcomes: NodeReport,
    /// Nodes whose SET for this attempt has been written to the connection
    /// and not definitely refused: they may hold the key.
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

/// An operation's decision, kept compact: the event is built when polled.
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
                let lease = Lease::new(&self.resource, self.token, self.t0, deadline, self.ttl)?;
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
                    nodes: self.outcomes,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Done {
    Won(Instant),
    Failed(FailureKind),
    Released,
}

#[derive(Debug)]
struct Slot {
    generation: u16,
    op: Option<Op>,
}

/// The sans-IO Redlock core. See the [crate docs](crate) for the contract.
///
/// `OPS` bounds the operations in progress at once (acquires, including their
/// retry pauses, extends and releases); `PIPE` bounds the requests in flight
/// on one node's connection.
#[derive(Debug)]
pub struct Redlock<const OPS: usize = 64, const PIPE: usize = 128> {
    config: Config,
    quorum: usize,
    drift_override: Option<Duration>,
    now: Instant,
    /// Allocated once in `new`, never resized: fixed capacity without
    /// putting hundreds of kilobytes on the caller's stack.
    links: Box<[Link<PIPE>]>,
    slots: Box<[Slot]>,
    /// Free slot indices (a stack; capacity `OPS`, allocated in `new`).
    free: Vec<u16>,
    /// Operations in a retry pause: when 0, timers need not scan the slots.
    waiting: usize,
    ready: heapless::Deque<u16, OPS>,
    events: heapless::Deque<Event, EVENT_CAP>,
    dropped_diagnostics: u64,
    next_transmit: usize,
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
            || PIPE <= HANDSHAKE_RESERVE
        {
            return Err(ConfigError::TooManyNodes);
        }
        let mut links = Vec::with_capacity(nodes.len());
        let mut events = heapless::Deque::new();
        for (i, node) in nodes.iter().enumerate() {
            links.push(Link::new(node.clone(), config.reconnect_min));
            let _ = events.push_back(Event::Connect {
                node: NodeId(i as u8),
            });
        }
        Ok(Redlock {
            config,
            quorum: quorum(nodes.len()),
            drift_override: None,
            now: Instant::ZERO,
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
    /// been polled, or whose late replies are still awaited).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock};
    /// let core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// assert_eq!(core.operations_in_flight(), 0);
    /// ```
    pub fn operations_in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.op.is_some()).count()
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

    /// The clock drift allowance for `ttl` (as used for validity).
    fn drift(&self, ttl: Duration) -> Duration {
        self.drift_override
            .unwrap_or_else(|| self.config.drift(ttl))
    }

    /// Test-only: break the algorithm on purpose (quorum of `n / 2`, or no
    /// drift term), so a simulator can prove its checker notices.
    #[cfg(feature = "__weaken")]
    pub fn weaken(&mut self, quorum_half: bool, no_drift: bool) {
        if quorum_half {
            self.quorum = (self.links.len() / 2).max(1);
        }
        if no_drift {
            self.drift_override = Some(Duration::ZERO);
        }
    }

    // ---------------------------------------------------------------- (C) commands

    /// Starts acquiring `resource` with the configured retry policy.
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
        let now = self.advance(now);
        let ttl = self.checked_ttl(ttl)?;
        let token = Token::generate(rng);
        let seed = rng.next_u64();
        let id = self.new_op(OpKind::Acquire, resource, token, ttl, retry, now, seed)?;
        self.start_attempt(id, now);
        Ok(id)
    }

    /// Starts extending `lease` to `ttl` from now (compare-and-`PEXPIRE` on
    /// every node). Ends with [`Event::Extended`] or [`Event::Lost`]. A
    /// lease already past its deadline is reported lost at once, without
    /// asking the nodes: its keys may have expired and been taken by others.
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
        let id = self.extend_token(lease.resource(), lease.token(), ttl, now)?;
        if !lease.is_valid(now) {
            self.finish_failure(id, FailureKind::Expired);
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
        let now = self.advance(now);
        let ttl = self.checked_ttl(ttl)?;
        let id = self.new_op(
            OpKind::Extend,
            resource,
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
    /// [`Event::Released`] once every node answered or timed out.
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, Redlock, Instant, Lease, Token};
    /// # use core::time::Duration;
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::from_secs(30)).unwrap();
    /// assert!(core.release(&lease, Instant::ZERO).is_ok());
    /// ```
    pub fn release(&mut self, lease: &Lease, now: Instant) -> Result<OpId, CommandError> {
        self.release_token(lease.resource(), lease.token(), now)
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
        let now = self.advance(now);
        let ttl = self.config.ttl;
        let id = self.new_op(
            OpKind::Release,
            resource,
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
        self.cleanup_attempt(op, now);
        self.finish_failure(op, FailureKind::Cancelled);
        true
    }

    // ---------------------------------------------------------------- (B) inputs

    /// The transport connected to `node`. The handshake (`AUTH`, `SELECT`,
    /// script loading) is queued ahead of any request waiting for the link;
    /// other requests are held back until `AUTH` and `SELECT` are answered.
    ///
    /// Replies are matched to requests by their order on one connection, so
    /// once this is called, bytes read from any *earlier* connection to the
    /// node must never be passed to [`handle_input`](Self::handle_input).
    ///
    /// ```
    /// # use redlock_core::{Config, NodeConfig, NodeId, Redlock, Instant};
    /// let mut core: Redlock = Redlock::new(Config::default(), &[NodeConfig::default()]).unwrap();
    /// core.handle_connected(NodeId(0), Instant::ZERO);
    /// let mut buf = [0u8; 1024];
    /// let t = core.poll_transmit(&mut buf).unwrap(); // SCRIPT LOAD x2
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
    /// there fail; the core asks to reconnect after a backoff.
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
            while let Some((op, cmd, sent)) = self.links.get_mut(n).and_then(|l| l.expire_one(now))
            {
                if !sent {
                    // Never written: it cannot have landed.
                    if let Some(o) = self.op_mut(op) {
                        o.maybe_landed &= !(1 << n);
                    }
                }
                self.node_failed(
                    node,
                    Some(op),
                    NodeError::new(ErrorKind::Timeout, "no reply in time"),
                    now,
                );
                if cmd.counts() {
                    self.record(op, n, NodeOutcome::Failed(ErrorKind::Timeout), now);
                }
                self.unref(op);
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
                    self.push_directive(Event::Connect { node });
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
                        o.attempt += 1;
                    }
                    self.start_attempt(id, now);
                }
            }
        }
    }

    // ---------------------------------------------------------------- (D) outputs

    /// Writes the next bytes to send into `buf` and says to which node.
    /// Call until `None` after every input. Several pipelined commands for
    /// one node are batched while they fit; a `buf` of
    /// [`MIN_TRANSMIT_BUF`](crate::MIN_TRANSMIT_BUF) bytes always fits one.
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
        if let Some(e) = self.events.pop_front() {
            return Some(e);
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
        for link in &self.links {
            if let Some(t) = link.next_deadline(stuck_after) {
                consider(t);
            }
            if let LinkState::Backoff(until) = link.state {
                consider(until);
            }
        }
        if self.waiting > 0 {
            for slot in &self.slots {
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

    #[allow(clippy::too_many_arguments)]
    fn new_op(
        &mut self,
        kind: OpKind,
        resource: &[u8],
        token: Token,
        ttl: Duration,
        retry: RetryPolicy,
        now: Instant,
        seed: u64,
    ) -> Result<OpId, CommandError> {
        if resource.is_empty() {
            return Err(CommandError::BadResource);
        }
        let resource =
            heapless::Vec::from_slice(resource).map_err(|_| CommandError::BadResource)?;
        let slot = usize::from(self.free.pop().ok_or(CommandError::TooManyOperations)?);
        let s = &mut self.slots[slot];
        s.generation = s.generation.wrapping_add(1);
        s.op = Some(Op {
            kind,
            resource,
            token,
            ttl,
            t0: now,
            first: now,
            attempt: 1,
            retry,
            outcomes: NodeReport::new(self.links.len()),
            maybe_landed: 0,
            phase: Phase::Running,
            refs: 0,
            result: None,
            polled: false,
            rng: seed,
        });
        Ok(OpId::new(slot, s.generation))
    }

    /// Sends this attempt's command to every node.
    fn start_attempt(&mut self, id: OpId, now: Instant) {
        let n = self.links.len();
        let deadline = now + self.config.node_timeout;
        let Some(op) = self.op_mut(id) else { return };
        let was_waiting = matches!(op.phase, Phase::Waiting(_));
        op.t0 = now;
        op.phase = Phase::Running;
        if was_waiting {
            self.waiting -= 1;
        }
        let Some(op) = self.op_mut(id) else { return };
        op.outcomes = NodeReport::new(n);
        op.maybe_landed = 0;
        let cmd = match op.kind {
            OpKind::Acquire => Cmd::Set,
            OpKind::Extend => Cmd::Script(Script::Extend, false),
            OpKind::Release => Cmd::Script(Script::Release, false),
        };
        for node in 0..n {
            if let Err(kind) = self.enqueue(node, id, cmd, deadline) {
                if let Some(op) = self.op_mut(id) {
                    op.outcomes.set(node, NodeOutcome::Failed(kind));
                }
                self.node_failed(NodeId(node as u8), Some(id), NodeError::new(kind, ""), now);
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
        let link = self.links.get_mut(node).ok_or(ErrorKind::Disconnected)?;
        link.enqueue(Entry::new(Some(id), cmd, deadline))?;
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
            // Never exceeds OPS entries: each slot is freed once per use.
            self.free.push(id.slot() as u16);
        }
    }

    /// Records `node`'s outcome for `id`'s current attempt and re-decides.
    fn record(&mut self, id: OpId, node: usize, outcome: NodeOutcome, now: Instant) {
        let Some(op) = self.op_mut(id) else { return };
        if op.phase != Phase::Running || op.outcomes.get(node) != NodeOutcome::Pending {
            return;
        }
        op.outcomes.set(node, outcome);
        if op.kind == OpKind::Acquire && outcome != NodeOutcome::Ok {
            // A definite refusal (nil, error reply) means no key there.
            if !matches!(
                outcome,
                NodeOutcome::Failed(ErrorKind::Timeout | ErrorKind::Disconnected)
            ) {
                op.maybe_landed &= !(1 << node);
            }
        }
        self.evaluate(id, now);
    }

    fn evaluate(&mut self, id: OpId, now: Instant) {
        let q = self.quorum;
        let Some(op) = self.op(id) else { return };
        if op.phase != Phase::Running {
            return;
        }
        match op.kind {
            OpKind::Acquire | OpKind::Extend => {
                let deadline = validity_deadline(op.t0, op.ttl, self.drift(op.ttl));
                match decide(&op.outcomes, q, now, deadline) {
                    Decision::Wait => {}
                    Decision::Won(deadline) => self.finish_success(id, deadline),
                    Decision::Lost(kind) => {
                        if op.kind == OpKind::Acquire {
                            self.attempt_failed(id, kind, now);
                        } else {
                            self.finish_failure(id, kind);
                        }
                    }
                }
            }
            OpKind::Release => {
                if op.outcomes.pending() == 0 {
                    self.finish(id, Done::Released);
                }
            }
        }
    }

    fn finish_success(&mut self, id: OpId, deadline: Instant) {
        self.finish(id, Done::Won(deadline));
    }

    fn finish_failure(&mut self, id: OpId, kind: FailureKind) {
        self.finish(id, Done::Failed(kind));
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
    /// said OK, and every node whose SET was sent but not answered (a release
    /// travels on the same connection behind the SET, so it is applied
    /// after it). SETs not yet written are withdrawn instead.
    fn cleanup_attempt(&mut self, id: OpId, now: Instant) {
        let deadline = now + self.config.node_timeout;
        for node in 0..self.links.len() {
            // Withdraw or abandon this op's outstanding SET on the node.
            let (withdrawn, abandoned) = match self.links.get_mut(node) {
                Some(link) => link.detach(id, Cmd::Set),
                None => (0, 0),
            };
            for _ in 0..withdrawn + abandoned {
                self.unref(id);
            }
            let Some(op) = self.op_mut(id) else { return };
            if withdrawn > 0 {
                op.maybe_landed &= !(1 << node);
            }
            let landed =
                op.outcomes.get(node) == NodeOutcome::Ok || op.maybe_landed & (1 << node) != 0;
            if landed {
                if let Err(kind) = self.enqueue(node, id, Cmd::Cleanup(false), deadline) {
                    // Unreachable: the key expires by itself at its TTL. Say so.
                    let e =
                        NodeError::new(kind, "could not send the release undoing a failed acquire");
                    self.node_failed(NodeId(node as u8), Some(id), e, now);
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
        if again {
            op.phase = Phase::Waiting(next);
            self.waiting += 1;
        } else {
            self.finish_failure(id, kind);
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
                    self.node_failed(node, None, e, now);
                }
            }
            return true;
        };
        if let Reply::Error(ErrorKind::NoScript, _, _) = reply {
            // Not in this node's script cache: send the body instead.
            let retry = match entry.cmd {
                Cmd::Script(script, false) => Some(Cmd::Script(script, true)),
                Cmd::Cleanup(false) => Some(Cmd::Cleanup(true)),
                _ => None,
            };
            if let Some(cmd) = retry {
                if self.enqueue(n, id, cmd, entry.deadline).is_ok() {
                    self.unref(id);
                    return true;
                }
            }
        }
        let outcome = match (entry.cmd, reply) {
            (Cmd::Set, Reply::Simple) => NodeOutcome::Ok,
            (Cmd::Set, Reply::Nil) => NodeOutcome::Held,
            (Cmd::Script(..) | Cmd::Cleanup(_), Reply::Int(i)) if i >= 1 => NodeOutcome::Ok,
            (Cmd::Script(..) | Cmd::Cleanup(_), Reply::Int(0)) => NodeOutcome::Held,
            (_, Reply::Error(kind, _, _)) => NodeOutcome::Failed(kind),
            _ => NodeOutcome::Failed(ErrorKind::Protocol),
        };
        if let NodeOutcome::Failed(k) = outcome {
            let e = error.unwrap_or_else(|| NodeError::new(k, "unexpected reply type"));
            self.node_failed(node, Some(id), e, now);
        }
        if entry.cmd.counts() {
            self.record(id, n, outcome, now);
        }
        self.unref(id);
        true
    }

    /// Drops `node`'s connection state: every request in flight there fails.
    fn reset_link(&mut self, node: NodeId, error: NodeError, tell_transport: bool, now: Instant) {
        let n = node.index();
        let max = self.config.reconnect_max;
        let Some(link) = self.links.get_mut(n) else {
            return;
        };
        let mut orphans: heapless::Vec<(OpId, Cmd), PIPE> = heapless::Vec::new();
        link.reset(now, error.kind, max, &mut orphans);
        let kind = error.kind;
        if tell_transport {
            self.push_directive(Event::Disconnect {
                node,
                error: error.clone(),
            });
        }
        self.node_failed(node, None, error, now);
        for (id, cmd) in orphans {
            if cmd.counts() {
                self.record(id, n, NodeOutcome::Failed(kind), now);
            }
            self.unref(id);
        }
    }

    /// Fills `buf` with as many unsent commands for `node` as fit.
    fn fill(&mut self, node: usize, buf: &mut [u8]) -> usize {
        let mut len = 0;
        while let Some((idx, entry)) = self.links.get_mut(node).and_then(|l| l.next_unsent()) {
            let written = match self.encode(node, &entry, &mut buf[len..]) {
                Some(w) => w,
                None if len > 0 => break,
                None => {
                    // Even an empty buffer cannot hold it: fail the request.
                    let failed = self.links.get_mut(node).and_then(|l| l.withdraw(idx));
                    if let Some(id) = failed {
                        if entry.cmd.counts() {
                            self.record(
                                id,
                                node,
                                NodeOutcome::Failed(ErrorKind::BufferTooSmall),
                                self.now,
                            );
                        }
                        self.unref(id);
                    }
                    continue;
                }
            };
            len += written;
            if let Some(link) = self.links.get_mut(node) {
                link.mark_sent(idx);
            }
            if let (Cmd::Set, Some(id)) = (entry.cmd, entry.op) {
                if let Some(op) = self.op_mut(id) {
                    op.maybe_landed |= 1 << node;
                }
            }
        }
        len
    }

    fn encode(&self, node: usize, entry: &Entry, out: &mut [u8]) -> Option<usize> {
        let link = self.links.get(node)?;
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
                    &op.resource,
                    op.token.as_bytes(),
                    op.ttl.as_millis() as u64,
                )
            }
            Cmd::Script(s, by_body) => {
                let op = self.op(entry.op?)?;
                resp::encode_script(
                    out,
                    s,
                    by_body,
                    &op.resource,
                    op.token.as_bytes(),
                    op.ttl.as_millis() as u64,
                )
            }
            Cmd::Cleanup(by_body) => {
                let op = self.op(entry.op?)?;
                resp::encode_script(
                    out,
                    Script::Release,
                    by_body,
                    &op.resource,
                    op.token.as_bytes(),
                    0,
                )
            }
        }
    }

    fn push_directive(&mut self, e: Event) {
        if self.events.push_back(e).is_err() {
            // Cannot happen: directives are bounded by 2 per node and the
            // queue reserves room for them. Count it rather than panic.
            self.dropped_diagnostics += 1;
        }
    }

    fn node_failed(&mut self, node: NodeId, op: Option<OpId>, error: NodeError, _now: Instant) {
        if self.events.len() >= DIAGNOSTIC_LIMIT {
            self.dropped_diagnostics += 1;
            return;
        }
        let _ = self.events.push_back(Event::NodeFailed { node, op, error });
    }
}

/// The pause before the next attempt: `delay` moved by a uniform amount in
/// `[-jitter/2, +jitter/2]`, never negative. `state` is a SplitMix64 stream
/// seeded from the caller's RNG when the operation started.
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
    let offset = z % (j + 1);
    Duration::from_micros((micros(delay) + offset).saturating_sub(j / 2))
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
