//! The driver task: the only owner of the core.
//!
//! Modelled on quinn's `ConnectionDriver`, it does nothing but pump the
//! sans-IO core, in a loop:
//! 1. take every command queued by the handles (acquire, extend, release,
//!    cancel: all of them at once, see [`crate::queue`]) and bytes or link
//!    changes from the connection tasks, feeding each to the core;
//! 2. drain the core's outputs after every input: transmits go to the
//!    node's writer task, events complete the waiting futures (by
//!    [`OpId`]) or open/close connections;
//! 3. drive the timer: if `poll_timeout` is already due, call
//!    `handle_timeout` before sleeping at all, else sleep until it.
//!
//! Every decision (quorum, validity, retries, timeouts, reconnect backoff,
//! reply meaning) is the core's.

// Fx, not SipHash: the maps' keys are the core's op ids and the handles'
// acquire numbers, never input.
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use redlock_core::url::NodeUrl;
use redlock_core::{
    AcquireOptions, CommandError, ErrorKind, Event, FailureKind, Instant, Lease as CoreLease,
    LockError, NodeError, NodeId, NodeOutcome, OpId, Redlock, ReleaseVerdict, ResourceSet, Token,
};
use tokio::io::Interest;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};

use crate::queue::Queue;
use crate::reply::{Answer, Cells, DeferWakes, ReplyTx};
use crate::spare::{LeaseBox, SetBox};
use tokio::task::AbortHandle;
use tokio_rustls::rustls::ClientConfig;
use tracing::{debug, trace, warn, Instrument};

use crate::backlog::{self, Backlog};
use crate::conn::{self, IoEvent};
use crate::error::{Error, Failure, NodeFailure};
use crate::rng::Prefilled;

/// Operations in progress at once (acquires with their retry pauses,
/// extensions, releases).
pub(crate) const OPS: usize = 1024;
/// Requests in flight on one node's connection.
pub(crate) const PIPE: usize = 4096;

pub(crate) type Core = Redlock<OPS, PIPE>;

/// The monotonic clock shared by the driver and the handles: microseconds
/// since the client was built, read from the OS's monotonic clock
/// (`std::time::Instant`), never from tokio's clock, which can be paused or
/// auto-advanced in tests: a lease's validity must be measured in real time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: std::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            epoch: std::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    /// The tokio instant at which the core's instant `t` comes, for sleeping.
    pub(crate) fn at(&self, t: Instant) -> tokio::time::Instant {
        tokio::time::Instant::now() + t.saturating_duration_since(self.now())
    }

    /// The monotonic instant at which the core's instant `t` comes.
    pub(crate) fn monotonic(&self, t: Instant) -> std::time::Instant {
        self.epoch + Duration::from_micros(t.as_micros())
    }
}

/// What an extension extends.
///
/// Boxed either way (spares of the client's, see [`crate::spare`]), so that
/// a [`Command`] is small.
pub(crate) enum Held {
    /// A lease of ours: the core also checks its local deadline, and the
    /// extended lease keeps its fence.
    Lease(LeaseBox),
    /// Only the token is known (e.g. from a command line).
    Token { resources: SetBox, token: Token },
}

impl Held {
    fn resources(&self) -> &ResourceSet {
        match self {
            Held::Lease(l) => l.resources(),
            Held::Token { resources, .. } => resources,
        }
    }
}

/// A request from a handle to the driver.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Acquire {
        req: u64,
        /// Boxed (a spare of the client's, see [`crate::spare`]): a
        /// command is moved several times on its way into the core.
        resources: SetBox,
        /// TTL, retry policy and fencing, resolved by the handle.
        options: AcquireOptions,
        rng: Prefilled,
        reply: ReplyTx,
    },
    /// The `lock()` future with this `req` was dropped before its result.
    Cancel { req: u64 },
    Extend {
        held: Held,
        ttl: Duration,
        reply: ReplyTx,
    },
    Release {
        resources: SetBox,
        token: Token,
        /// `None`: fire and forget (a dropped lease).
        reply: Option<ReplyTx>,
    },
    /// Answers `true` once nothing is in flight (every request answered,
    /// timed out or owed to a node that is down), `false` at `until`.
    Flush {
        until: tokio::time::Instant,
        reply: oneshot::Sender<bool>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Acquire { req, .. } => write!(f, "Acquire({req})"),
            Command::Cancel { req } => write!(f, "Cancel({req})"),
            Command::Extend { .. } => f.write_str("Extend"),
            Command::Release { .. } => f.write_str("Release"),
            Command::Flush { .. } => f.write_str("Flush"),
        }
    }
}

enum Reply {
    Acquire {
        req: u64,
        tx: ReplyTx,
    },
    Extend(ReplyTx),
    Release(Option<ReplyTx>),
    /// Nobody waits (a cancelled acquire): a lease it produces is released.
    Orphan,
}

/// Milliseconds since `started`, for a debug line (evaluated only when the
/// line is written).
fn latency_ms(started: Option<tokio::time::Instant>) -> Option<f64> {
    started.map(|t| t.elapsed().as_secs_f64() * 1e3)
}

struct Pending {
    reply: Reply,
    /// The names, for the completion's log line only, kept (boxed) only
    /// when debug lines are written: a set is about 1 KiB inline, and
    /// copying it into and out of `pending` cost 7 % of user CPU at 256
    /// concurrent locks (bench/PROFILE.md). See [`Kept`].
    resources: Option<Box<ResourceSet>>,
    /// When it started, for the same line's latency: read only when debug
    /// lines are written (two clock reads per operation otherwise).
    started: Option<tokio::time::Instant>,
    /// The last error each node reported for this operation; empty (not
    /// allocated) until the first one.
    errors: Vec<Option<NodeError>>,
}

/// One node's connection, as the driver sees it.
struct Node {
    url: NodeUrl,
    redacted: String,
    generation: u64,
    writer: Option<crate::conn::Writer>,
    /// Plain TCP: the driver reads the socket itself (shared with the
    /// loop's list of sockets to wait on, which it awaits without the lock).
    reader: Option<Arc<OwnedReadHalf>>,
    tasks: Vec<AbortHandle>,
    /// The last thing that went wrong with the link (connect error, ...).
    last_error: Option<String>,
}

impl Node {
    fn close(&mut self) {
        self.generation += 1;
        self.writer = None;
        self.reader = None;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

/// The driver's state, shared by the driver task and the handles.
///
/// The driver task locks it for each step of its loop and never across an
/// `await`. While few requests are in flight (sequential use, a handful of
/// concurrent locks), a handle runs its command itself under the lock: it
/// starts it in the core and writes its requests to the sockets (see
/// [`Driver::direct`]), so the command does not wait for the driver task
/// to be scheduled (a thread wake-up on another worker). Beyond that, and
/// whenever something is already queued, commands go to the driver task,
/// which batches them (see [`crate::queue`]).
pub(crate) type Shared = Arc<Mutex<Driver>>;

/// Locks the shared state; `None` if a panic left it poisoned (the
/// driver then stops, and callers are told so).
pub(crate) fn lock(shared: &Mutex<Driver>) -> Option<MutexGuard<'_, Driver>> {
    shared.lock().ok()
}

pub(crate) struct Driver {
    core: Box<Core>,
    clock: Clock,
    nodes: Vec<Node>,
    tls: Option<Arc<ClientConfig>>,
    node_timeout: Duration,
    commands: Arc<Queue>,
    /// Where connection tasks are spawned, whichever thread starts them.
    runtime: tokio::runtime::Handle,
    /// The driver's span, entered by handles running a command themselves.
    span: tracing::Span,
    /// The batch of commands being started (kept empty between batches).
    incoming: VecDeque<Command>,
    io_tx: mpsc::Sender<IoEvent>,
    /// When the driver task's timer fires next (`None`: it waits without a
    /// timer). A handle that runs a command itself and needs an earlier
    /// wake-up pokes the driver task.
    armed: Option<tokio::time::Instant>,
    /// A handle ran a command itself since the driver task last armed its
    /// timer: keep a heartbeat armed (see [`heartbeat`]).
    direct_used: bool,
    /// The heartbeat deadline in use, if any.
    heartbeat: Option<tokio::time::Instant>,
    /// Events the driver task's current pass may still hand out (see
    /// [`GROUP_REQUESTS`]); unlimited outside the task's passes.
    answer_budget: usize,
    /// The last drain stopped at the budget: events may be left in the core.
    answers_left: bool,
    /// Planted bug (test hooks): wait as if no answer were left.
    #[cfg(feature = "__test-hooks")]
    pub(crate) forget_answers_left: bool,
    /// The driver task has stopped: handles must not start commands.
    stopped: bool,
    pending: FxHashMap<OpId, Pending>,
    acquires: FxHashMap<u64, OpId>,
    buf: Vec<u8>,
    /// Read buffer for the sockets the driver reads itself.
    rbuf: Vec<u8>,
    /// Commands waiting for an operation slot.
    backlog: Backlog<Command>,
    /// The client's reply cells and spare boxes (shared with the handles).
    cells: Arc<Cells>,
    /// Handles waiting for the driver to be idle, with their deadlines.
    flushes: Vec<(oneshot::Sender<bool>, tokio::time::Instant)>,
}

/// A handle runs its own command while fewer operations than this are
/// waited on; beyond, commands wait for the driver task's next batch.
///
/// The trade: a command run by its caller leaves at once, at the cost of a
/// write per node per command; a batch costs one write per node for every
/// command queued meanwhile, but waits for the driver task's next pass.
/// With few commands in flight the wait dominates (batching then runs in
/// lockstep with the nodes: the whole batch's replies come back before
/// the next batch leaves); with many, the writes do. Measured with the
/// bench (`bench/`, 16 and 256 concurrent locks, 1 to 5 nodes): running
/// only a lone command directly gave 60k cycles/s at 16 locks on one node;
/// 16 node requests (operations × nodes) gave 88k on that machine, but on
/// another 16 locks on one node did better with fewer (1: 18.3 µs per
/// cycle, 4: 15.7, 16: 21.4); 4 operations, whatever the number of nodes,
/// was best or level everywhere there (bench/PROFILE.md, 2026-12-03).
const DIRECT_OPS: usize = 4;

/// Up to this many node requests in flight (operations × nodes), the
/// driver task answers operations [`GROUP`] per pass and sends what their
/// callers queue before answering more; beyond, it answers every decided
/// operation in one pass.
///
/// Answering all at once keeps few operations in lockstep with the node:
/// the batch's replies arrive together, the driver answers all of them,
/// their callers queue their next commands, and those leave in one write,
/// so the node idles while the client works and the client while the node
/// does. Answering two at a time keeps the node fed (their next commands
/// leave while the rest are being answered). With many operations in flight
/// the node always has work, and the extra passes only cost CPU: one more
/// write per node per pass. Measured (bench/PROFILE.md, 2026-12-04), one
/// node, 16 concurrent locks: the bench's cycles/s, three A/B pairs,
/// 0.75-0.86x rslock and 0.83-0.93x the lockstep client all at once,
/// 0.98-1.02x and 1.04-1.12x two at a time; `client_cycle` wall time per
/// cycle 21.1-22.2 µs → 19.2-19.5. Two at a time lost with more requests
/// in flight: 64 locks on one node 10.6-12.7 µs → 14.4-17.6, 256: 7.6-9.3
/// → 11.8-16.6. At 3 nodes (16 locks: 48 requests) it made no difference
/// (four pairs: 1.43-1.54x rslock as is, 1.39-1.49x two at a time).
const GROUP_REQUESTS: usize = 32;
/// Operations answered per pass while at most [`GROUP_REQUESTS`] node
/// requests are in flight.
const GROUP: usize = 2;

/// Transmit buffer: several pipelined commands per write.
const TX_BUF: usize = 64 * 1024;
/// Read buffer for plain-TCP sockets read by the driver.
const RX_BUF: usize = 16 * 1024;
/// After every handle is gone, how long the driver keeps running so that
/// releases already asked for reach the nodes.
const LINGER: Duration = Duration::from_secs(2);

impl Driver {
    /// Builds the driver and spawns its task on `runtime`.
    #[allow(clippy::too_many_arguments)] // each is a part of the client's
    pub(crate) fn spawn(
        core: Box<Core>,
        clock: Clock,
        urls: Vec<NodeUrl>,
        tls: Option<Arc<ClientConfig>>,
        commands: Arc<Queue>,
        cells: Arc<Cells>,
        runtime: tokio::runtime::Handle,
        span: tracing::Span,
    ) -> Shared {
        let (io_tx, io_rx) = mpsc::channel(256);
        let node_timeout = core.config().node_timeout;
        let nodes = urls
            .into_iter()
            .map(|url| Node {
                redacted: url.to_string(),
                url,
                generation: 0,
                writer: None,
                reader: None,
                tasks: Vec::new(),
                last_error: None,
            })
            .collect();
        let shared = Arc::new(Mutex::new(Driver {
            core,
            clock,
            nodes,
            tls,
            node_timeout,
            commands: Arc::clone(&commands),
            runtime: runtime.clone(),
            span: span.clone(),
            incoming: VecDeque::with_capacity(crate::queue::BATCH),
            io_tx,
            armed: None,
            direct_used: false,
            answer_budget: usize::MAX,
            answers_left: false,
            #[cfg(feature = "__test-hooks")]
            forget_answers_left: false,
            heartbeat: None,
            stopped: false,
            // Room for a batch's worth of operations in flight up front, as
            // the queue reserves (see `queue::BATCH`): a map that grows
            // while locks are taken is an allocation on the success path
            // (seen as 1 allocation in 32,000 cycles of 32 locks at once).
            pending: FxHashMap::with_capacity_and_hasher(crate::queue::BATCH, Default::default()),
            acquires: FxHashMap::with_capacity_and_hasher(crate::queue::BATCH, Default::default()),
            buf: vec![0; TX_BUF],
            rbuf: vec![0; RX_BUF],
            backlog: Backlog::default(),
            cells,
            flushes: Vec::new(),
        }));
        let stop = StopGuard {
            shared: Arc::clone(&shared),
            commands,
        };
        runtime.spawn(run(stop, io_rx).instrument(span));
        shared
    }

    /// Whether a handle may run its command itself now: the driver task
    /// runs, fewer than [`DIRECT_OPS`] operations are in flight (beyond,
    /// the driver task's batches, one write per node for many commands,
    /// are cheaper), and nothing is queued or parked ahead of it (a
    /// command never overtakes one sent before it).
    pub(crate) fn runs_direct(&self) -> bool {
        !self.stopped
            && self.pending.len() < DIRECT_OPS
            && self.backlog.is_empty()
            && self.incoming.is_empty()
            && self.commands.is_empty()
    }

    /// Runs a handle's command on the caller's thread, as the driver task
    /// would: starts it in the core and writes what the core says to write.
    /// Whether the driver task must be woken (its timer is later than what
    /// the core now needs).
    pub(crate) fn direct(&mut self, cmd: Command) -> bool {
        let span = self.span.clone();
        let _entered = span.enter();
        self.command(cmd);
        // Everything decided goes to its caller (the driver task's budget
        // is for its own passes).
        let budget = std::mem::replace(&mut self.answer_budget, usize::MAX);
        self.drain();
        self.answer_budget = budget;
        self.answer_flushes();
        self.direct_used = true;
        match (self.next_wake(), self.armed) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The earliest instant the driver task must run at: the core's next
    /// timeout, a parked command's deadline, a flush's deadline.
    fn next_wake(&self) -> Option<tokio::time::Instant> {
        self.next_wake_after(self.core.poll_timeout())
    }

    /// [`next_wake`](Self::next_wake), given the core's `poll_timeout()`.
    fn next_wake_after(&self, timeout: Option<Instant>) -> Option<tokio::time::Instant> {
        let timeout = timeout.map(|t| self.clock.at(t));
        let waiting = self.backlog.next_deadline().map(|d| {
            tokio::time::Instant::now() + d.saturating_duration_since(std::time::Instant::now())
        });
        let flush_due = self.flushes.iter().map(|(_, until)| *until).min();
        [timeout, waiting, flush_due].into_iter().flatten().min()
    }

    /// Whether nothing is in flight: no handle waits, nothing is parked,
    /// and the core has no request left (late replies, owed undos) either.
    fn idle(&self) -> bool {
        self.pending.is_empty() && self.backlog.is_empty() && self.core.operations_in_flight() == 0
    }

    /// Answers the flushes that are done (idle) or due.
    fn answer_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let idle = self.idle();
        let now = tokio::time::Instant::now();
        let mut waiting = Vec::new();
        for (reply, until) in self.flushes.drain(..) {
            if idle || until <= now || reply.is_closed() {
                let _ = reply.send(idle);
            } else {
                waiting.push((reply, until));
            }
        }
        self.flushes = waiting;
    }

    /// Starts every queued command; notes when every handle is gone.
    fn take_commands(&mut self, closing: &mut Option<tokio::time::Instant>) {
        let mut batch = std::mem::take(&mut self.incoming);
        let closed = self.commands.take(&mut batch);
        for cmd in batch.drain(..) {
            self.command(cmd);
        }
        self.incoming = batch;
        if closed {
            // What was queued before the last handle went has just started.
            debug!("every handle dropped: finishing operations in progress");
            *closing = Some(tokio::time::Instant::now() + LINGER);
        }
    }

    /// Handles one handle's command: starts it in the core, or parks it in
    /// the backlog when it cannot start now (see [`crate::backlog`]).
    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Cancel { req } => self.cancel(req),
            Command::Flush { until, reply } => self.flushes.push((reply, until)),
            Command::Acquire { .. }
                if !self.backlog.acquires.is_empty() || !self.acquire_room() =>
            {
                self.wait(cmd);
            }
            cmd => {
                if let Some(cmd) = self.try_start(cmd, Duration::ZERO) {
                    self.wait(cmd);
                }
            }
        }
    }

    /// The `lock()` future of acquire `req` was dropped before its result.
    fn cancel(&mut self, req: u64) {
        let now = self.clock.now();
        let waiting = self
            .backlog
            .take_acquires_where(|c| matches!(c, Command::Acquire { req: r, .. } if *r == req));
        if !waiting.is_empty() {
            debug!(
                req,
                "acquire dropped by its caller while waiting for a slot"
            );
            return;
        }
        let Some(op) = self.acquires.remove(&req) else {
            return;
        };
        if let Some(p) = self.pending.get_mut(&op) {
            p.reply = Reply::Orphan;
        }
        // `false`: already decided; its event is still to come, and
        // an `Acquired` for an orphan is released when it arrives.
        let cancelled = self.core.cancel(op, now);
        debug!(?op, cancelled, "acquire dropped by its caller");
    }

    /// Whether acquires may take one more operation slot.
    fn acquire_room(&self) -> bool {
        self.core.admits_acquire(self.core.operations_in_flight())
    }

    /// Calls the core command for `cmd` (an acquire that `waited` for a
    /// slot keeps its own deadline). Gives the command back when every
    /// operation slot is taken.
    fn try_start(&mut self, mut cmd: Command, waited: Duration) -> Option<Command> {
        let now = self.clock.now();
        let result = match &mut cmd {
            Command::Acquire {
                resources,
                options,
                rng,
                ..
            } => {
                let options = AcquireOptions {
                    retry: options.retry.after_waiting(waited),
                    ..*options
                };
                self.core.acquire_set(resources, &options, rng, now)
            }
            Command::Extend { held, ttl, .. } => match held {
                Held::Lease(l) => self.core.extend(l, *ttl, now),
                Held::Token { resources, token } => {
                    self.core.extend_token_set(resources, token, *ttl, now)
                }
            },
            Command::Release {
                resources, token, ..
            } => self.core.release_token_set(resources, token, now),
            Command::Cancel { .. } | Command::Flush { .. } => return None,
        };
        let op = match result {
            Ok(op) => op,
            Err(CommandError::TooManyOperations) => return Some(cmd),
            Err(e) => {
                match cmd {
                    Command::Acquire { reply, .. } | Command::Extend { reply, .. } => {
                        let _ = reply.send(Answer::Lease(Err(Error::Command(e))));
                    }
                    Command::Release {
                        resources, reply, ..
                    } => {
                        warn!(resources = %Names(&resources), error = %e, "could not start a release");
                        if let Some(tx) = reply {
                            let _ = tx.send(Answer::Release(Err(Error::Command(e))));
                        }
                    }
                    Command::Cancel { .. } | Command::Flush { .. } => {}
                }
                return None;
            }
        };
        let started = tracing::enabled!(tracing::Level::DEBUG).then(tokio::time::Instant::now);
        match cmd {
            Command::Acquire {
                req,
                resources,
                reply,
                ..
            } => {
                let mut resources = resources;
                trace!(resources = %Names(&resources), ?op, "acquire started");
                self.acquires.insert(req, op);
                self.track(op, Reply::Acquire { req, tx: reply }, &resources, started);
                self.cells.sets.recycle(&mut resources);
            }
            Command::Extend {
                mut held, reply, ..
            } => {
                self.track(op, Reply::Extend(reply), held.resources(), started);
                match &mut held {
                    Held::Lease(l) => self.cells.leases.recycle(l),
                    Held::Token { resources, .. } => self.cells.sets.recycle(resources),
                }
            }
            Command::Release {
                mut resources,
                reply,
                ..
            } => {
                self.track(op, Reply::Release(reply), &resources, started);
                self.cells.sets.recycle(&mut resources);
            }
            Command::Cancel { .. } | Command::Flush { .. } => {}
        }
        None
    }

    /// Parks `cmd` until a slot frees, bounded by its own deadline.
    fn wait(&mut self, cmd: Command) {
        let since = std::time::Instant::now();
        let config = *self.core.config();
        let (deadline, acquire) = match &cmd {
            Command::Acquire { options, .. } => {
                (since + options.retry.longest(self.node_timeout), true)
            }
            Command::Extend {
                held: Held::Lease(l),
                ..
            } => (
                since + l.deadline().saturating_duration_since(self.clock.now()),
                false,
            ),
            Command::Extend { ttl, .. } => (since + *ttl, false),
            _ => (since + config.ttl.max(self.node_timeout), false),
        };
        debug!(
            waiting = self.backlog.len() + 1,
            "no operation slot free for this request: it waits"
        );
        let w = backlog::Waiting {
            req: cmd,
            since,
            deadline,
        };
        if acquire {
            self.backlog.acquires.push_back(w);
        } else {
            self.backlog.held.push_back(w);
        }
    }

    /// Starts waiting commands that fit now (extensions and releases first),
    /// refuses those whose deadline has passed. Whether anything changed.
    fn admit(&mut self) -> bool {
        if self.backlog.is_empty() {
            return false;
        }
        let mut changed = false;
        let now = std::time::Instant::now();
        for cmd in self.backlog.take_expired(now) {
            changed = true;
            let refused = || Error::Command(CommandError::TooManyOperations);
            match cmd {
                Command::Acquire { reply, .. } | Command::Extend { reply, .. } => {
                    let _ = reply.send(Answer::Lease(Err(refused())));
                }
                Command::Release {
                    resources,
                    reply: Some(tx),
                    ..
                } => {
                    debug!(resources = %Names(&resources), "release found no free slot in time");
                    let _ = tx.send(Answer::Release(Err(refused())));
                }
                Command::Release { resources, .. } => warn!(
                    resources = %Names(&resources),
                    "a background release found no free operation slot before its deadline; \
                     the key expires with its TTL"
                ),
                Command::Cancel { .. } | Command::Flush { .. } => {}
            }
        }
        while let Some(backlog::Waiting {
            req,
            since,
            deadline,
        }) = self.backlog.held.pop_front()
        {
            match self.try_start(req, Duration::ZERO) {
                None => changed = true,
                Some(req) => {
                    self.backlog.held.push_front(backlog::Waiting {
                        req,
                        since,
                        deadline,
                    });
                    break;
                }
            }
        }
        if self.backlog.acquires.is_empty() {
            return changed;
        }
        let mut in_flight = self.core.operations_in_flight();
        while self.core.admits_acquire(in_flight) {
            let Some(backlog::Waiting {
                req,
                since,
                deadline,
            }) = self.backlog.acquires.pop_front()
            else {
                break;
            };
            match self.try_start(req, now.saturating_duration_since(since)) {
                None => {
                    changed = true;
                    in_flight += 1;
                }
                Some(req) => {
                    self.backlog.acquires.push_front(backlog::Waiting {
                        req,
                        since,
                        deadline,
                    });
                    break;
                }
            }
        }
        changed
    }

    fn track(
        &mut self,
        op: OpId,
        reply: Reply,
        resources: &ResourceSet,
        started: Option<tokio::time::Instant>,
    ) {
        let resources =
            tracing::enabled!(tracing::Level::DEBUG).then(|| Box::new(resources.clone()));
        self.pending.insert(
            op,
            Pending {
                reply,
                resources,
                started,
                errors: Vec::new(),
            },
        );
    }

    fn io(&mut self, ev: IoEvent) {
        let now = self.clock.now();
        match ev {
            IoEvent::Up {
                node,
                generation,
                writer,
                writer_task,
                reader,
            } => {
                let Some(n) = self.nodes.get_mut(node.index()) else {
                    return;
                };
                if n.generation != generation {
                    writer_task.abort();
                    return;
                }
                debug!(node = node.0, url = %n.redacted, "connected");
                // Whatever went wrong before is over: a later failure must
                // not be blamed on it.
                n.last_error = None;
                n.writer = Some(writer);
                n.reader = reader.map(Arc::new);
                n.tasks.push(writer_task);
                self.core.handle_connected(node, now);
            }
            IoEvent::Data {
                node,
                generation,
                bytes,
            } => {
                if self
                    .nodes
                    .get(node.index())
                    .is_some_and(|n| n.generation == generation)
                {
                    self.core.handle_input(node, &bytes, now);
                }
            }
            IoEvent::Down {
                node,
                generation,
                reason,
            } => {
                let Some(n) = self.nodes.get_mut(node.index()) else {
                    return;
                };
                if n.generation != generation {
                    return;
                }
                debug!(node = node.0, url = %n.redacted, %reason, "node down");
                n.last_error = Some(reason);
                n.close();
                self.core.handle_node_down(node, now);
            }
        }
    }

    /// Reads every plain-TCP socket the driver owns until it would block,
    /// feeding the core (drained once afterwards by the loop).
    fn read_sockets(&mut self) {
        let now = self.clock.now();
        for i in 0..self.nodes.len() {
            while let Some(r) = self.nodes[i].reader.as_ref() {
                // A read that returns less than the buffer holds emptied the
                // socket: it is reported to tokio as `WouldBlock` (after
                // keeping its bytes), which clears the readiness, so the read
                // that would fail with `WouldBlock` is not made (~9 system
                // calls per cycle at N = 5). Data arriving later is a new
                // edge (tokio clears only if no event came meanwhile), and
                // an end of stream is never cleared: the next read sees it.
                let buf = &mut self.rbuf;
                let mut short = 0;
                let stream: &tokio::net::TcpStream = (**r).as_ref();
                let read = stream.try_io(Interest::READABLE, || match r.try_read(buf) {
                    Ok(n) if n > 0 && n < buf.len() => {
                        short = n;
                        Err(std::io::ErrorKind::WouldBlock.into())
                    }
                    other => other,
                });
                let reason = match read {
                    _ if short > 0 => {
                        self.core
                            .handle_input(NodeId(i as u8), &self.rbuf[..short], now);
                        break;
                    }
                    Ok(0) => "connection closed by the node".to_string(),
                    Ok(n) => {
                        self.core
                            .handle_input(NodeId(i as u8), &self.rbuf[..n], now);
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => format!("read failed: {e}"),
                };
                let n = &mut self.nodes[i];
                debug!(node = i, url = %n.redacted, %reason, "node down");
                n.last_error = Some(reason);
                n.close();
                self.core.handle_node_down(NodeId(i as u8), now);
                break;
            }
        }
    }

    /// Drains the core's outputs until it has nothing more to say, or
    /// until [`answer_budget`](Self::answer_budget) events were handed out
    /// (then `answers_left` is set; what is to be written is written).
    fn drain(&mut self) {
        loop {
            self.transmit();
            let mut any = false;
            while self.answer_budget > 0 {
                let Some(event) = self.core.poll_event() else {
                    break;
                };
                any = true;
                self.answer_budget -= 1;
                self.event(event);
            }
            if self.answer_budget == 0 {
                self.transmit();
                self.answers_left = true;
                return;
            }
            if !any && !self.admit() {
                return;
            }
        }
    }

    /// Writes everything the core has to send.
    fn transmit(&mut self) {
        while let Some(t) = self.core.poll_transmit(&mut self.buf) {
            let bytes = &self.buf[..t.len];
            if let Some(n) = self.nodes.get(t.node.index()) {
                match &n.writer {
                    Some(w) => w.write(bytes),
                    None => trace!(node = t.node.0, "transmit without a connection"),
                }
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Connect { node } => self.connect(node),
            Event::Disconnect { node, error } => {
                if let Some(n) = self.nodes.get_mut(node.index()) {
                    debug!(node = node.0, url = %n.redacted, %error, "closing connection");
                    n.last_error = Some(error.detail().to_string());
                    n.close();
                }
            }
            Event::NodeFailed { node, op, error } => {
                let url = self.nodes.get(node.index()).map(|n| n.redacted.as_str());
                debug!(node = node.0, url, ?op, %error, "node failed");
                match op.and_then(|op| self.pending.get_mut(&op)) {
                    Some(p) => {
                        if p.errors.is_empty() {
                            p.errors = vec![None; self.nodes.len()];
                        }
                        if let Some(slot) = p.errors.get_mut(node.index()) {
                            *slot = Some(error);
                        }
                    }
                    None => {
                        if op.is_none() {
                            // The core's "connection lost" adds nothing to
                            // the transport's own reason.
                            if let Some(n) = self.nodes.get_mut(node.index()) {
                                if error.kind != ErrorKind::Disconnected || n.last_error.is_none() {
                                    n.last_error = Some(if error.detail().is_empty() {
                                        error.to_string()
                                    } else {
                                        error.detail().to_string()
                                    });
                                }
                            }
                        }
                    }
                }
            }
            Event::Acquired { op, lease } => {
                let Some(p) = self.pending.remove(&op) else {
                    return self.release_orphan(&lease);
                };
                match p.reply {
                    Reply::Acquire { req, tx } => {
                        self.acquires.remove(&req);
                        debug!(resources = %Kept(p.resources.as_deref(), op), fence = lease.fence(), latency_ms = latency_ms(p.started),
                            validity_ms = lease.remaining(self.clock.now()).as_millis() as u64, "acquired");
                        let lease = self.cells.leases.boxed_clone(&lease);
                        if let Err(Answer::Lease(Ok(lease))) = tx.send(Answer::Lease(Ok(lease))) {
                            // The caller went away as the result arrived.
                            self.release_orphan(&lease);
                        }
                    }
                    _ => self.release_orphan(&lease),
                }
            }
            Event::AcquireFailed { op, error } => {
                let Some(p) = self.pending.remove(&op) else {
                    return;
                };
                if let Reply::Acquire { req, tx } = p.reply {
                    self.acquires.remove(&req);
                    debug!(resources = %Kept(p.resources.as_deref(), op), attempts = error.attempts, latency_ms = latency_ms(p.started),
                        error = %error, "acquire failed");
                    let failure = self.failure(error, &p.errors);
                    let _ = tx.send(Answer::Lease(Err(Error::from_acquire(failure))));
                } else if error.kind != FailureKind::Cancelled {
                    debug!(resources = %Kept(p.resources.as_deref(), op), error = %error, "orphan acquire failed");
                }
            }
            Event::Extended { op, lease } => {
                let Some(p) = self.pending.remove(&op) else {
                    return;
                };
                debug!(resources = %Kept(p.resources.as_deref(), op), fence = lease.fence(), latency_ms = latency_ms(p.started), "extended");
                if let Reply::Extend(tx) = p.reply {
                    let lease = self.cells.leases.boxed_clone(&lease);
                    let _ = tx.send(Answer::Lease(Ok(lease)));
                }
            }
            Event::Lost { op, error } => {
                let Some(p) = self.pending.remove(&op) else {
                    return;
                };
                warn!(resources = %Kept(p.resources.as_deref(), op), error = %error, "extension failed: lock lost");
                let failure = self.failure(error, &p.errors);
                if let Reply::Extend(tx) = p.reply {
                    let _ = tx.send(Answer::Lease(Err(Error::Lost(failure))));
                }
            }
            Event::Released { op, report } => {
                let Some(p) = self.pending.remove(&op) else {
                    return;
                };
                debug!(resources = %Kept(p.resources.as_deref(), op), released = report.released(),
                    not_held = report.not_held(), unanswered = report.unanswered(), latency_ms = latency_ms(p.started), "released");
                if let Reply::Release(Some(tx)) = p.reply {
                    let unknown = |kind| {
                        let error = LockError {
                            kind,
                            attempts: 1,
                            nodes: report.nodes,
                        };
                        self.failure(error, &p.errors)
                    };
                    let result = match report.verdict() {
                        ReleaseVerdict::Released => Ok(report),
                        ReleaseVerdict::NotHeld => Err(Error::NotHeld(report)),
                        ReleaseVerdict::AuthFailed => {
                            Err(Error::Auth(unknown(FailureKind::AuthFailed)))
                        }
                        _ => Err(Error::Unavailable(unknown(FailureKind::Unavailable))),
                    };
                    let _ = tx.send(Answer::Release(result));
                }
            }
            _ => {}
        }
    }

    /// Releases a lease nobody is waiting for (its acquire was dropped).
    fn release_orphan(&mut self, lease: &CoreLease) {
        debug!(resources = %Names(lease.resources()), "releasing the lease of a dropped acquire");
        self.command(Command::Release {
            resources: self.cells.sets.boxed_clone(lease.resources()),
            token: *lease.token(),
            reply: None,
        });
    }

    fn connect(&mut self, node: NodeId) {
        let Some(n) = self.nodes.get_mut(node.index()) else {
            return;
        };
        n.close();
        trace!(node = node.0, url = %n.redacted, "connecting");
        let task = self.runtime.spawn(conn::run(
            node,
            n.generation,
            n.url.clone(),
            self.tls.clone(),
            self.node_timeout,
            self.io_tx.clone(),
        ));
        n.tasks.push(task.abort_handle());
    }

    fn failure(&self, error: redlock_core::LockError, errors: &[Option<NodeError>]) -> Failure {
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let outcome = error.nodes.get(i);
                let op_detail = errors
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(|e| e.detail().to_string())
                    .filter(|d| !d.is_empty());
                // For a broken link, the transport knows best what happened
                // (connection refused, TLS rejected, closed by the node).
                let message = match outcome {
                    NodeOutcome::Ok | NodeOutcome::Held | NodeOutcome::Missing => None,
                    NodeOutcome::Failed(ErrorKind::Disconnected) | NodeOutcome::Pending => {
                        n.last_error.clone().or(op_detail)
                    }
                    NodeOutcome::Failed(_) => op_detail.or_else(|| n.last_error.clone()),
                };
                NodeFailure {
                    url: n.redacted.clone(),
                    outcome,
                    last_error: message,
                }
            })
            .collect();
        Failure::new(error, nodes)
    }
}

/// Marks the driver stopped when its task ends, however it ends (done,
/// aborted with its runtime, or a panic): commands queued from then on, or
/// still queued, are answered with `DriverStopped` (their reply senders
/// are dropped), and the connections close.
/// It is made with the task and moved into it, so that a task dropped
/// before its first poll (a runtime shut down at once) stops the driver too.
struct StopGuard {
    shared: Shared,
    commands: Arc<Queue>,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.commands.stop();
        let mut d = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        d.stopped = true;
        for node in &mut d.nodes {
            node.close();
        }
        // Nobody will answer these: their callers learn that the driver
        // stopped.
        d.pending.clear();
        d.acquires.clear();
        d.flushes.clear();
        d.backlog = Backlog::default();
    }
}

/// How long the driver task's timer is kept armed after a handle ran a
/// command itself: a command starts with deadlines at least a node timeout
/// away, so a timer armed at most half a node timeout ahead is always
/// earlier, and the handle need not wake the driver task to re-arm it.
fn heartbeat(node_timeout: Duration) -> Duration {
    (node_timeout / 2).max(Duration::from_millis(1))
}

/// The heartbeat to keep armed: the one armed, until it passes; then a new
/// one if a handle ran a command itself since the last was armed (`used`,
/// cleared when it arms one), else none. So it stays armed until a whole
/// beat passes with no such command. (Before, any loop pass without one
/// dropped it, and the next handle's command had to wake the driver task
/// to arm the timer again.)
fn next_beat(
    armed: Option<tokio::time::Instant>,
    used: &mut bool,
    now: tokio::time::Instant,
    every: Duration,
) -> Option<tokio::time::Instant> {
    match armed {
        Some(b) if b > now => Some(b),
        _ if std::mem::take(used) => Some(now + every),
        _ => None,
    }
}

/// The driver task: runs until every handle is dropped and the operations
/// in progress are done (or [`LINGER`] has passed).
async fn run(stop: StopGuard, mut io_rx: mpsc::Receiver<IoEvent>) {
    let shared = &stop.shared;
    let commands = &stop.commands;
    let mut closing: Option<tokio::time::Instant> = None;
    // Consecutive due timeouts that handling did not move.
    let mut stuck = 0u32;
    // One timer for the whole run, moved to each new deadline: a fresh
    // `sleep` per loop would register a timer each time, and one earlier
    // than the runtime's next wake-up wakes its I/O driver (an eventfd
    // write and an extra epoll round) on every command.
    let timer = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(timer);
    // The sockets to wait on, taken under the lock for each wait.
    let mut readers: Vec<Arc<OwnedReadHalf>> = Vec::new();
    // Yield before waiting: commands are being batched (see the end of
    // the loop).
    let mut yield_first = false;
    loop {
        let (sleep_until, answers_left) = {
            let _defer = DeferWakes::new();
            let Some(mut d) = lock(shared) else { break };
            d.answer_budget = if d.pending.len() * d.nodes.len() <= GROUP_REQUESTS {
                GROUP
            } else {
                usize::MAX
            };
            d.answers_left = false;
            // Every command queued since the last batch starts now, then one
            // drain: commands for one node leave in one write.
            if closing.is_none() {
                d.take_commands(&mut closing);
            }
            d.drain();
            d.answer_flushes();
            if let Some(until) = closing {
                let idle = d.core.operations_in_flight() == 0 && d.backlog.is_empty();
                if idle || tokio::time::Instant::now() >= until {
                    break;
                }
            }
            // Timer first: a deadline already due is handled before anything
            // sleeps. Then the loop still goes through the select below, so
            // commands and sockets are served between timers even when many
            // retry timers come due one after another (before, up to 1000
            // due timers in a row were handled without looking at them: an
            // extension could wait behind a flood of acquires' retries).
            let now = d.clock.now();
            // The core's next deadline, computed once for the check and for
            // the wake-up below (a scan of every link's requests).
            let mut timeout = d.core.poll_timeout();
            if let Some(t) = timeout.filter(|t| *t <= now) {
                if stuck < 1000 {
                    d.core.handle_timeout(now);
                    d.drain();
                }
                timeout = d.core.poll_timeout();
                if timeout == Some(t) {
                    stuck += 1;
                    // A deadline that handling does not move would be a
                    // core bug; never spin on it.
                    if stuck == 1000 {
                        warn!("the core keeps asking for an immediate timeout");
                    }
                } else {
                    stuck = 0;
                }
            } else {
                stuck = 0;
            }
            let wake = if stuck >= 1000 {
                Some(tokio::time::Instant::now() + Duration::from_millis(1))
            } else {
                d.next_wake_after(timeout)
            };
            // While handles run their own commands, keep a heartbeat armed
            // so that they need not wake this task to arm the timer for the
            // deadlines their commands add (see `Driver::direct`).
            let tnow = tokio::time::Instant::now();
            let every = heartbeat(d.node_timeout);
            let mut used = d.direct_used;
            let beat = next_beat(d.heartbeat, &mut used, tnow, every);
            d.direct_used = used;
            d.heartbeat = beat;
            let sleep_until = [wake, closing, beat].into_iter().flatten().min();
            d.armed = sleep_until;
            readers.clear();
            readers.extend(d.nodes.iter().filter_map(|n| n.reader.clone()));
            #[cfg(feature = "__test-hooks")]
            let left = d.answers_left && !d.forget_answers_left;
            #[cfg(not(feature = "__test-hooks"))]
            let left = d.answers_left;
            (sleep_until, left)
        };
        if let Some(at) = sleep_until {
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
        }
        let woke = if answers_left {
            // Decided operations are still to be answered: let the callers
            // just answered run (they queue their next commands), then
            // answer more, before waiting for anything.
            tokio::task::yield_now().await;
            Woke::Commands
        } else {
            let wait = async {
                tokio::select! {
                    // Taken at the top of the next pass.
                    () = commands.ready(), if closing.is_none() => Woke::Commands,
                    () = readable(&readers) => Woke::Readable,
                    Some(ev) = io_rx.recv() => Woke::Io(ev),
                    () = &mut timer, if sleep_until.is_some() => Woke::Timer,
                }
            };
            let mut wait = std::pin::pin!(wait);
            if yield_first {
                tokio::task::yield_now().await;
                wait.await
            } else {
                // Yield only if something is ready at once (see below);
                // otherwise waiting is the yield.
                match std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await {
                    Poll::Ready(woke) => {
                        tokio::task::yield_now().await;
                        woke
                    }
                    Poll::Pending => wait.await,
                }
            }
        };
        match woke {
            Woke::Commands => {}
            Woke::Readable => {
                let _defer = DeferWakes::new();
                let Some(mut d) = lock(shared) else { break };
                d.read_sockets();
            }
            Woke::Io(ev) => {
                let _defer = DeferWakes::new();
                let Some(mut d) = lock(shared) else { break };
                d.io(ev);
                for _ in 0..64 {
                    match io_rx.try_recv() {
                        Ok(ev) => d.io(ev),
                        Err(_) => break,
                    }
                }
            }
            Woke::Timer => {
                let _defer = DeferWakes::new();
                let Some(mut d) = lock(shared) else { break };
                let now = d.clock.now();
                d.core.handle_timeout(now);
            }
        }
        // Not waiting for commands any more: until the next wait,
        // handles queue theirs without waking the driver.
        commands.unregister();
        {
            let _defer = DeferWakes::new();
            let Some(mut d) = lock(shared) else { break };
            // What the input decided goes out now: callers are answered,
            // writes leave.
            d.drain();
            d.answer_flushes();
            yield_first = !d.runs_direct();
        }
        readers.clear();
        // Let the tasks just answered run before the next batch: they
        // queue their next commands meanwhile (without waking this
        // task), and the loop takes them all at once. `yield_now` puts
        // this task after every other ready task of its worker. Under
        // load a branch above is always ready, so the select alone would
        // rarely yield; the tasks this loop woke (a keeper whose
        // extension just completed) would then wait on this worker for
        // seconds.
        //
        // With few requests in flight, handles run their commands
        // themselves (`runs_direct`), nothing is batched, and the loop
        // yields only when the wait above is ready at once: a wait that
        // is not ready lets the worker run the tasks just answered anyway.
        // A `yield_now` on every pass cost a sequential caller on a
        // two-worker runtime two extra thread switches per reply: tokio
        // wakes a parked worker for every yielded task (bench/PROFILE.md).
    }
    debug!("driver stopped");
}

/// What ended the driver task's wait.
enum Woke {
    Commands,
    Readable,
    Io(IoEvent),
    Timer,
}

/// Resolves when any socket the driver reads itself has data (or an error,
/// or end of stream) to read.
async fn readable(readers: &[Arc<OwnedReadHalf>]) {
    std::future::poll_fn(|cx| {
        for r in readers {
            let stream: &tokio::net::TcpStream = (**r).as_ref();
            if stream.poll_read_ready(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// A completion's [`Names`], or, when they were not kept (debug lines off
/// when the operation started), the operation it was (an acquire's start
/// is traced with both).
struct Kept<'a>(Option<&'a ResourceSet>, OpId);

impl std::fmt::Display for Kept<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(set) => Names(set).fmt(f),
            None => write!(f, "(op {:?})", self.1),
        }
    }
}

/// Resource names for logs: `a,b,c`, bytes that are not UTF-8 shown lossily.
pub(crate) struct Names<'a>(pub(crate) &'a ResourceSet);

impl std::fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", String::from_utf8_lossy(name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_stays_armed_until_a_whole_beat_passes_unused() {
        let every = Duration::from_millis(10);
        let t0 = tokio::time::Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // Nothing armed, nothing used: no heartbeat.
        let mut used = false;
        assert_eq!(next_beat(None, &mut used, t0, every), None);
        // A handle ran a command: one beat from now, and `used` is spent.
        let mut used = true;
        assert_eq!(next_beat(None, &mut used, t0, every), Some(at(10)));
        assert!(!used);
        // Armed and not yet due: kept as it is, used or not, and a command
        // run meanwhile still counts when it comes due.
        for was_used in [false, true] {
            let mut used = was_used;
            assert_eq!(
                next_beat(Some(at(10)), &mut used, at(3), every),
                Some(at(10))
            );
            assert_eq!(used, was_used);
        }
        // Due: re-armed if used since, dropped if not.
        let mut used = true;
        assert_eq!(
            next_beat(Some(at(10)), &mut used, at(10), every),
            Some(at(20))
        );
        assert!(!used);
        let mut used = false;
        assert_eq!(next_beat(Some(at(10)), &mut used, at(12), every), None);
    }
}
