//! The driver thread: owns the core and every node's socket, multiplexed with
//! `mio`, and only moves bytes and time.
//!
//! Callers never touch the core. They push a [`Request`] onto a queue, wake
//! the driver with a [`mio::Waker`] and block on their thread's reply
//! [`Slot`] (reused for every command the thread submits: no allocation per
//! command) for the [`Outcome`]. The driver loop is the textbook sans-IO
//! pump:
//!
//! 1. take queued requests and call the core's commands;
//! 2. after every core call, drain `poll_transmit` (write to the node's
//!    socket), `poll_event` (open/close connections, answer callers) and
//!    finally `poll_timeout`;
//! 3. sleep in `mio::Poll::poll` until a socket is ready, a request arrives,
//!    the core's timeout or a connect deadline is due.
//!
//! Everything the core decides (quorum, validity, retries, node timeouts,
//! reconnect backoff) stays in the core; the driver adds only the one timer
//! the core cannot see: a connect that takes longer than the node timeout
//! is reported to the core as the node being down.

// Fx, not SipHash: the map's keys are the core's op ids, never input.
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token as MioToken, Waker};
use redlock_core::url::NodeUrl;
use redlock_core::{
    AcquireOptions, CommandError, Event, FailureKind, Instant, Lease as CoreLease, LockError,
    NodeId, NodeOutcome, OpId, Redlock, ReleaseReport, ReleaseVerdict, ResourceSet, Token,
    MIN_TRANSMIT_BUF,
};

use crate::backlog::{self, Backlog};
use crate::error::{Error, Failure, NodeFailure};
use crate::resolve::{Resolved, Resolver};
use crate::rng::OsBytes;
use crate::spare::{LeaseBox, SetBox, Spares};

/// Operations in progress at once in one client (acquires with their retry
/// pauses, extends, releases).
pub(crate) const OPS: usize = 1024;
/// Requests in flight on one node's connection.
pub(crate) const PIPE: usize = 4096;

/// The core type the blocking client drives.
pub(crate) type Core = Redlock<OPS, PIPE>;

const WAKER: MioToken = MioToken(usize::MAX);

/// A command for the core, sent by a caller thread (moved once through a
/// queue: the size difference between variants does not matter).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Command {
    Acquire {
        /// Boxed (a spare of the client's, see [`crate::spare`]): moved
        /// several times on the way into the core.
        resources: SetBox,
        /// TTL, retry policy and fencing, resolved by the caller.
        options: AcquireOptions,
        rng: OsBytes,
        /// Set from another thread to cancel the acquire.
        cancel: Option<Arc<AtomicBool>>,
    },
    Extend {
        held: Held,
        ttl: Duration,
    },
    Release {
        resources: SetBox,
        token: Token,
    },
    /// Wakes the driver to look for acquires whose cancel flag is set.
    Cancel,
    /// Answers [`Outcome::Flushed`] once nothing is in flight (every request
    /// answered, timed out or owed to a node that is down), or at `until`.
    Flush {
        until: std::time::Instant,
    },
    /// Test hook: the driver panics.
    #[cfg(feature = "__test-hooks")]
    Panic,
}

/// What an extension extends, boxed either way (see [`crate::spare`]).
#[derive(Debug)]
pub(crate) enum Held {
    /// A lease of ours: the core also checks its local deadline, and the
    /// extended lease keeps its fence.
    Lease(LeaseBox),
    /// Only the token is known (e.g. from a command line).
    Token { resources: SetBox, token: Token },
}

/// The result of one [`Command`].
#[derive(Debug)]
pub(crate) enum Outcome {
    /// In a box from the client's spares (see [`crate::spare`]).
    Acquired(LeaseBox),
    Extended(LeaseBox),
    /// The release's verdict, and for a verdict that is not known
    /// (unavailable, authentication) each node's details.
    Released(ReleaseReport, Option<Failure>),
    Failed(Failure),
    Refused(CommandError),
    /// Whether the driver became idle before the flush's deadline.
    Flushed(bool),
}

#[derive(Debug)]
struct Request {
    cmd: Command,
    reply: Option<ReplyTx>,
}

/// Where one caller thread waits for the outcome of its command. A thread
/// has one (created on its first command, then reused): a caller blocks
/// until its command is answered, so a thread never has two commands in
/// flight, and each command's [`ReplyTx`] answers exactly once.
#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

/// Moved once per command, never boxed (a box would be an allocation).
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum SlotState {
    /// Waiting for the driver.
    Empty,
    Answered(Outcome),
    /// The driver dropped the request unanswered (it stopped).
    Dropped,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: SlotState) {
        *self.state() = state;
        self.ready.notify_one();
    }
}

thread_local! {
    /// This thread's reply slot.
    static SLOT: Arc<Slot> = Arc::new(Slot {
        state: Mutex::new(SlotState::Empty),
        ready: Condvar::new(),
    });
}

/// The driver's end of a caller's [`Slot`]: answers once. Dropped without
/// answering (the driver stopped, or panicked), it wakes the caller with
/// [`Error::DriverStopped`], as a dropped channel sender would.
#[derive(Debug)]
struct ReplyTx(Option<Arc<Slot>>);

impl ReplyTx {
    /// Answers the caller (which always waits: this cannot fail).
    fn send(mut self, outcome: Outcome) {
        if let Some(slot) = self.0.take() {
            slot.set(SlotState::Answered(outcome));
        }
    }
}

impl Drop for ReplyTx {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.set(SlotState::Dropped);
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    requests: VecDeque<Request>,
    /// Answers of the nodes' resolver threads, by node index.
    resolved: Vec<(usize, Resolved)>,
    shutdown: bool,
    /// The driver sleeps in `poll` (or is about to) with no request
    /// queued: the next request must wake it. While it runs, requests are
    /// only queued (it looks at the queue before every sleep): no eventfd
    /// write per request under load.
    polling: bool,
    /// The driver thread has exited (normally or by a panic): nothing will
    /// ever take a request again.
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    waker: Waker,
    /// Boxes for the leases answered to callers and in extend commands.
    leases: Spares<redlock_core::Lease>,
    /// Boxes for the resource sets of commands.
    sets: Spares<ResourceSet>,
}

impl Shared {
    /// The queue, also after a panic elsewhere poisoned its lock (it holds
    /// plain data that is consistent at every point).
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Lives on the driver thread's stack: when the thread ends, by a panic or
/// otherwise, marks the queue stopped and drops every request still in it,
/// so each waiting caller (and every later one) gets
/// [`Error::DriverStopped`] instead of waiting forever.
struct StopOnExit(Arc<Shared>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the redlock driver thread panicked: every call now fails");
        }
        let orphans = {
            let mut q = self.0.queue();
            q.stopped = true;
            std::mem::take(&mut q.requests)
        };
        // Dropping a request's reply sender wakes its caller with an error.
        drop(orphans);
    }
}

/// The callers' side of the driver: submit commands, read the clock.
/// Dropping it asks the driver to stop once in-flight operations finish
/// (bounded), without waiting for that.
#[derive(Debug)]
pub(crate) struct DriverHandle {
    shared: Arc<Shared>,
    epoch: std::time::Instant,
}

impl DriverHandle {
    /// Starts the driver thread for `core` talking to `urls` (in node order).
    pub(crate) fn spawn(
        core: Core,
        urls: Vec<NodeUrl>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> io::Result<DriverHandle> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            waker,
            leases: Spares::default(),
            sets: Spares::default(),
        });
        let epoch = std::time::Instant::now();
        let node_timeout = core.config().node_timeout;
        let nodes = urls
            .into_iter()
            .map(|url| Node {
                redacted: url.to_string(),
                url,
                conn: Conn::Closed,
                link_error: None,
                resolver: None,
            })
            .collect();
        let mut driver = Driver {
            core,
            poll,
            nodes,
            shared: Arc::clone(&shared),
            pending: FxHashMap::default(),
            epoch,
            tls,
            tx: vec![0u8; MIN_TRANSMIT_BUF * 16],
            rx: vec![0u8; 16 * 1024],
            node_timeout,
            down: Vec::new(),
            backlog: Backlog::default(),
            flushes: Vec::new(),
            incoming: VecDeque::new(),
            ready: Vec::new(),
        };
        let on_exit = StopOnExit(Arc::clone(&shared));
        // Detached: it ends by itself once every handle is gone.
        let _thread = std::thread::Builder::new()
            .name("redlock-driver".into())
            .spawn(move || {
                let _on_exit = on_exit;
                driver.run();
            })?;
        Ok(DriverHandle { shared, epoch })
    }

    /// The driver's clock, as the core sees it.
    pub(crate) fn now(&self) -> Instant {
        instant_since(self.epoch)
    }

    /// Converts a core instant to a std instant.
    pub(crate) fn to_std(&self, t: Instant) -> std::time::Instant {
        self.epoch + Duration::from_micros(t.as_micros())
    }

    fn push(&self, req: Request) -> Result<(), Error> {
        let wake = {
            let mut q = self.shared.queue();
            if q.stopped {
                return Err(Error::DriverStopped);
            }
            q.requests.push_back(req);
            // Only the first request of a sleep wakes the driver.
            std::mem::take(&mut q.polling)
        };
        if wake {
            self.shared.waker.wake().map_err(Error::Io)?;
        }
        Ok(())
    }

    /// Submits `cmd` and blocks until its outcome; [`Error::DriverStopped`]
    /// at once if the driver thread has ended (or ends meanwhile).
    pub(crate) fn submit(&self, cmd: Command) -> Result<Outcome, Error> {
        // This thread's slot; a fresh one while the thread is being torn
        // down (a lease dropped by a thread-local destructor).
        let slot = SLOT.try_with(Arc::clone).unwrap_or_else(|_| {
            Arc::new(Slot {
                state: Mutex::new(SlotState::Empty),
                ready: Condvar::new(),
            })
        });
        *slot.state() = SlotState::Empty;
        self.push(Request {
            cmd,
            reply: Some(ReplyTx(Some(Arc::clone(&slot)))),
        })?;
        let mut state = slot.state();
        loop {
            match std::mem::replace(&mut *state, SlotState::Empty) {
                SlotState::Empty => {
                    state = slot
                        .ready
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                SlotState::Answered(outcome) => return Ok(outcome),
                SlotState::Dropped => return Err(Error::DriverStopped),
            }
        }
    }

    /// Blocks until nothing is in flight or `timeout` passed; whether it
    /// became idle.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<bool, Error> {
        let now = std::time::Instant::now();
        // A timeout beyond any clock: a year is "forever" here.
        let until = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
        match self.submit(Command::Flush { until })? {
            Outcome::Flushed(idle) => Ok(idle),
            _ => Ok(false),
        }
    }

    /// The client's spare lease boxes (see [`crate::spare`]).
    pub(crate) fn leases(&self) -> &Spares<CoreLease> {
        &self.shared.leases
    }

    /// The client's spare resource-set boxes.
    pub(crate) fn sets(&self) -> &Spares<ResourceSet> {
        &self.shared.sets
    }

    /// Submits `cmd` without waiting (best-effort release on drop).
    pub(crate) fn submit_detached(&self, cmd: Command) {
        let _ = self.push(Request { cmd, reply: None });
    }
}

impl Drop for DriverHandle {
    /// Never blocks (the last handle may be a lease dropped in a hurry): the
    /// driver finishes what is in flight, e.g. that lease's release, in the
    /// background, bounded by twice the node timeout, then exits.
    fn drop(&mut self) {
        self.shared.queue().shutdown = true;
        let _ = self.shared.waker.wake();
    }
}

fn instant_since(epoch: std::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
}

#[derive(Debug)]
struct PendingOp {
    reply: Option<ReplyTx>,
    /// The acquire's cancel flag, until the core has been told.
    cancel: Option<Arc<AtomicBool>>,
    /// Per node, the last error the core reported for this operation;
    /// empty (not allocated) until the first one.
    errors: Vec<Option<String>>,
}

#[derive(Debug)]
struct Node {
    url: NodeUrl,
    redacted: String,
    conn: Conn,
    /// The latest connection-level error (refused, TLS, handshake), cleared
    /// when a connection is established.
    link_error: Option<String>,
    /// For a host name: its resolver thread, once the first connect needed it.
    resolver: Option<Resolver>,
}

#[derive(Debug)]
enum Conn {
    Closed,
    /// Waiting for the node's resolver thread to answer.
    Resolving {
        deadline: std::time::Instant,
    },
    Connecting {
        sock: TcpStream,
        rest: VecDeque<SocketAddr>,
        deadline: std::time::Instant,
    },
    /// TCP is up, the TLS handshake is not finished: the core has not been
    /// told the link is up, so nothing of its goes into rustls yet.
    Handshaking {
        stream: Stream,
        /// The connect deadline, which covers the handshake too.
        deadline: std::time::Instant,
    },
    Up(Stream),
}

impl Conn {
    /// When connecting (TCP and TLS handshake) must be done by.
    fn deadline(&self) -> Option<std::time::Instant> {
        match self {
            Conn::Resolving { deadline }
            | Conn::Connecting { deadline, .. }
            | Conn::Handshaking { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Stream {
    sock: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    /// Bytes not handed on yet: for plain TCP what the socket did not take,
    /// for TLS the plaintext rustls did not take (it buffers a bounded
    /// amount of records). Either way, written when the socket is writable
    /// again: the same backpressure for both.
    out: Vec<u8>,
}

enum ReadResult {
    Data(usize),
    WouldBlock,
    Closed,
    Failed(String),
}

impl Stream {
    /// Queues `data` and writes as much as the socket takes.
    fn send(&mut self, data: &[u8]) -> Result<(), String> {
        self.out.extend_from_slice(data);
        self.flush()
    }

    /// Writes pending bytes until the socket would block.
    fn flush(&mut self) -> Result<(), String> {
        match &mut self.tls {
            Some(tls) => loop {
                // Hand rustls what it takes, then write its records out,
                // until both are empty or the socket is full.
                if !self.out.is_empty() {
                    let n = tls
                        .writer()
                        .write(&self.out)
                        .map_err(|e| format!("TLS write: {e}"))?;
                    self.out.drain(..n);
                }
                if !tls.wants_write() {
                    break;
                }
                match tls.write_tls(&mut self.sock) {
                    Ok(0) => return Err("write: connection closed".into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("write: {e}")),
                }
            },
            None => {
                while !self.out.is_empty() {
                    match self.sock.write(&self.out) {
                        Ok(0) => return Err("write: connection closed".into()),
                        Ok(n) => {
                            self.out.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
            }
        }
        Ok(())
    }

    /// Advances the TLS handshake as far as the socket allows: `true` once
    /// it is complete (at once for plain TCP).
    fn handshake(&mut self) -> Result<bool, String> {
        let Some(tls) = &mut self.tls else {
            return Ok(true);
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(0) => return Err("TLS handshake: connection closed".into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("TLS handshake: write: {e}")),
                }
            }
            if !tls.is_handshaking() {
                // Anything rustls still wants to write goes with the first
                // flush of the link.
                return Ok(true);
            }
            if !tls.wants_read() {
                // Waiting for the socket to take our handshake bytes.
                return Ok(false);
            }
            match tls.read_tls(&mut self.sock) {
                Ok(0) => return Err("TLS handshake: connection closed by the node".into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("TLS handshake: read: {e}")),
            }
            if let Err(e) = tls.process_new_packets() {
                // Tell the server why (alert), best-effort.
                let _ = tls.write_tls(&mut self.sock);
                return Err(format!("TLS: {e}"));
            }
        }
    }

    /// Reads plaintext into `buf`.
    fn read_some(&mut self, buf: &mut [u8]) -> ReadResult {
        let Some(tls) = &mut self.tls else {
            return loop {
                match self.sock.read(buf) {
                    Ok(0) => break ReadResult::Closed,
                    Ok(n) => break ReadResult::Data(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        break ReadResult::WouldBlock
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break ReadResult::Failed(format!("read: {e}")),
                }
            };
        };
        loop {
            match tls.reader().read(buf) {
                Ok(0) => return ReadResult::Closed,
                Ok(n) => return ReadResult::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return ReadResult::Failed(format!("TLS read: {e}")),
            }
            match tls.read_tls(&mut self.sock) {
                Ok(0) => return ReadResult::Closed,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadResult::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return ReadResult::Failed(format!("read: {e}")),
            }
            if let Err(e) = tls.process_new_packets() {
                // Tell the server why (alert), best-effort.
                let _ = tls.write_tls(&mut self.sock);
                return ReadResult::Failed(format!("TLS: {e}"));
            }
            // Handshake messages may need an answer.
            while tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return ReadResult::Failed(format!("write: {e}")),
                }
            }
        }
    }
}

struct Driver {
    core: Core,
    poll: Poll,
    nodes: Vec<Node>,
    shared: Arc<Shared>,
    pending: FxHashMap<OpId, PendingOp>,
    epoch: std::time::Instant,
    tls: Option<Arc<rustls::ClientConfig>>,
    tx: Vec<u8>,
    rx: Vec<u8>,
    node_timeout: Duration,
    /// Nodes found down while draining, reported to the core afterwards.
    down: Vec<NodeId>,
    /// Requests waiting for an operation slot.
    backlog: Backlog<Request>,
    /// Callers waiting for the driver to be idle, with their deadlines.
    flushes: Vec<(ReplyTx, std::time::Instant)>,
    /// The queue's requests, swapped in under the lock and started from
    /// here: both deques keep their capacity (no allocation per wake-up).
    incoming: VecDeque<Request>,
    /// The sockets of one poll's events, reused, each with whether its
    /// event reported the peer's end of stream or an error (see
    /// [`Driver::read`]).
    ready: Vec<(usize, bool)>,
}

impl Driver {
    fn now(&self) -> Instant {
        instant_since(self.epoch)
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        let mut shutdown_at: Option<std::time::Instant> = None;
        // The core asks for one Connect per node at construction.
        self.drain();
        loop {
            // 1. Commands from callers.
            let mut requests = std::mem::take(&mut self.incoming);
            let (resolved, shutdown) = {
                let mut q = self.shared.queue();
                std::mem::swap(&mut q.requests, &mut requests);
                let resolved = if q.resolved.is_empty() {
                    Vec::new()
                } else {
                    std::mem::take(&mut q.resolved)
                };
                (resolved, q.shutdown)
            };
            for (i, result) in resolved {
                self.on_resolved(i, result);
            }
            // Start every queued request, then drain once: commands for one
            // node leave in one write (the core batches per node).
            for req in requests.drain(..) {
                self.start(req);
            }
            self.incoming = requests;
            self.drain();
            self.answer_flushes();
            if shutdown {
                // Let in-flight operations (e.g. releases on drop) finish,
                // bounded by a couple of node timeouts.
                let at = *shutdown_at.get_or_insert_with(|| {
                    std::time::Instant::now() + self.node_timeout * 2 + Duration::from_millis(20)
                });
                if self.idle() || std::time::Instant::now() >= at {
                    break;
                }
            }

            // 2. Sleep until something is due.
            let mut wake_at = self
                .core
                .poll_timeout()
                .map(|t| self.epoch + Duration::from_micros(t.as_micros()));
            for deadline in self.nodes.iter().filter_map(|n| n.conn.deadline()) {
                wake_at = Some(wake_at.map_or(deadline, |w| w.min(deadline)));
            }
            if let Some(at) = shutdown_at
                .into_iter()
                .chain(self.backlog.next_deadline())
                .chain(self.flushes.iter().map(|(_, until)| *until))
                .min()
            {
                wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
            let mut timeout =
                wake_at.map(|at| at.saturating_duration_since(std::time::Instant::now()));
            {
                // Requests queued since the top of the loop did not wake us
                // (see `Queue::polling`): look at them after a quick poll.
                let mut q = self.shared.queue();
                if q.requests.is_empty() {
                    q.polling = true;
                } else {
                    timeout = Some(Duration::ZERO);
                }
            }
            let polled = self.poll.poll(&mut events, timeout);
            self.shared.queue().polling = false;
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("redlock driver: poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }

            // 3. Sockets.
            let mut ready = std::mem::take(&mut self.ready);
            ready.clear();
            ready.extend(
                events
                    .iter()
                    .filter(|e| e.token() != WAKER)
                    .map(|e| (e.token().0, e.is_read_closed() || e.is_error())),
            );
            // Feed every readable socket, then drain once.
            for &(i, closing) in &ready {
                self.on_ready(i, closing);
            }
            self.ready = ready;
            self.drain();

            // 4. Timers: connect deadlines, then the core's.
            let now_std = std::time::Instant::now();
            for i in 0..self.nodes.len() {
                let conn = &self.nodes[i].conn;
                if conn.deadline().is_some_and(|d| d <= now_std) {
                    let during = match conn {
                        Conn::Resolving { .. } => {
                            self.resolution_overdue(i);
                            continue;
                        }
                        Conn::Handshaking { .. } => " (TLS handshake not finished)",
                        _ => "",
                    };
                    let msg = format!("connect timed out after {:?}{during}", self.node_timeout);
                    self.fail_node(i, msg);
                }
            }
            self.report_down();
            let now = self.now();
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
                self.drain();
            }
        }
        // Dropping the driver closes every socket.
    }

    /// Offers one caller's request to the core, or parks it in the backlog
    /// when it cannot start now (see [`crate::backlog`]).
    fn start(&mut self, req: Request) {
        match &req.cmd {
            Command::Cancel => {
                self.cancel_flagged();
                return;
            }
            Command::Flush { until } => {
                if let Some(reply) = req.reply {
                    self.flushes.push((reply, *until));
                }
                return;
            }
            #[cfg(feature = "__test-hooks")]
            Command::Panic => panic!("redlock driver: panic requested by a test hook"),
            // Behind acquires already waiting, and within the acquires' share.
            Command::Acquire { .. }
                if !self.backlog.acquires.is_empty() || !self.acquire_room() =>
            {
                return self.wait(req);
            }
            _ => {}
        }
        if let Some(req) = self.try_start(req, Duration::ZERO) {
            self.wait(req);
        }
        // The caller drains once after starting every queued request.
    }

    /// Whether acquires may take one more operation slot.
    fn acquire_room(&self) -> bool {
        self.core.admits_acquire(self.core.operations_in_flight())
    }

    /// Calls the core command for `req` (an acquire that `waited` for a
    /// slot keeps its own deadline). Gives the request back when every
    /// operation slot is taken.
    /// Whether nothing is in flight: no caller waits, nothing is parked, and
    /// the core has no request left (late replies, owed undos) either.
    fn idle(&self) -> bool {
        self.pending.is_empty() && self.backlog.is_empty() && self.core.operations_in_flight() == 0
    }

    /// Answers the flushes that are done (idle) or due.
    fn answer_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let idle = self.idle();
        let now = std::time::Instant::now();
        let mut i = 0;
        while i < self.flushes.len() {
            if idle || self.flushes[i].1 <= now {
                let (reply, _) = self.flushes.swap_remove(i);
                reply.send(Outcome::Flushed(idle));
            } else {
                i += 1;
            }
        }
    }

    fn try_start(&mut self, mut req: Request, waited: Duration) -> Option<Request> {
        let now = self.now();
        let result = match &mut req.cmd {
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
            Command::Extend { held, ttl } => match held {
                Held::Lease(l) => self.core.extend(l, *ttl, now),
                Held::Token { resources, token } => {
                    self.core.extend_token_set(resources, token, *ttl, now)
                }
            },
            Command::Release { resources, token } => {
                self.core.release_token_set(resources, token, now)
            }
            Command::Cancel | Command::Flush { .. } => return None,
            #[cfg(feature = "__test-hooks")]
            Command::Panic => return None,
        };
        match result {
            Ok(op) => {
                // The command's boxes go back to the spares.
                let cancel = match req.cmd {
                    Command::Acquire {
                        cancel,
                        mut resources,
                        ..
                    } => {
                        self.shared.sets.recycle(&mut resources);
                        cancel
                    }
                    Command::Release { mut resources, .. } => {
                        self.shared.sets.recycle(&mut resources);
                        None
                    }
                    Command::Extend { mut held, .. } => {
                        match &mut held {
                            Held::Lease(l) => self.shared.leases.recycle(l),
                            Held::Token { resources, .. } => self.shared.sets.recycle(resources),
                        }
                        None
                    }
                    _ => None,
                };
                // Cancelled before it started (its `Cancel` command found
                // it queued or parked, or has not come yet): it ends now.
                // Only this operation needs the check: a flag raised for
                // one already pending comes with a `Cancel` command, which
                // looks at every operation (before, every start scanned
                // every pending operation: quadratic under concurrency).
                let flagged = cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
                self.pending.insert(
                    op,
                    PendingOp {
                        reply: req.reply,
                        cancel: if flagged { None } else { cancel },
                        errors: Vec::new(),
                    },
                );
                if flagged {
                    self.core.cancel(op, now);
                }
                None
            }
            Err(CommandError::TooManyOperations) => Some(req),
            Err(e) => {
                if let Some(r) = req.reply {
                    r.send(Outcome::Refused(e));
                }
                None
            }
        }
    }

    /// Parks `req` until a slot frees, bounded by its own deadline.
    fn wait(&mut self, req: Request) {
        let since = std::time::Instant::now();
        let (deadline, acquire) = match &req.cmd {
            Command::Acquire { options, .. } => {
                (since + options.retry.longest(self.node_timeout), true)
            }
            Command::Extend {
                held: Held::Lease(l),
                ..
            } => (self.to_std(l.deadline()), false),
            Command::Extend { ttl, .. } => (since + *ttl, false),
            _ => (since + self.core.config().ttl.max(self.node_timeout), false),
        };
        tracing::debug!(
            waiting = self.backlog.len() + 1,
            "no operation slot free for this request: it waits"
        );
        let w = backlog::Waiting {
            req,
            since,
            deadline,
        };
        if acquire {
            self.backlog.acquires.push_back(w);
        } else {
            self.backlog.held.push_back(w);
        }
    }

    /// Starts waiting requests that fit now (extensions and releases first),
    /// refuses those whose deadline has passed. Whether anything changed.
    fn admit(&mut self) -> bool {
        if self.backlog.is_empty() {
            return false;
        }
        let mut changed = false;
        let now = std::time::Instant::now();
        for req in self.backlog.take_expired(now) {
            changed = true;
            match req.reply {
                Some(r) => {
                    r.send(Outcome::Refused(CommandError::TooManyOperations));
                }
                None => tracing::warn!(
                    "a background release found no free operation slot before its deadline; \
                     the key expires with its TTL"
                ),
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

    fn to_std(&self, t: Instant) -> std::time::Instant {
        self.epoch + Duration::from_micros(t.as_micros())
    }

    /// Cancels, in the core, every acquire whose cancel flag is set: the core
    /// undoes whatever part of the lock it took and ends the operation.
    fn cancel_flagged(&mut self) {
        let now = self.now();
        let flagged: Vec<OpId> = self
            .pending
            .iter_mut()
            .filter(|(_, p)| p.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)))
            .map(|(op, p)| {
                p.cancel = None;
                *op
            })
            .collect();
        for op in flagged {
            self.core.cancel(op, now);
        }
        // Acquires still waiting for a slot end here.
        let waiting = self.backlog.take_acquires_where(|r| match &r.cmd {
            Command::Acquire {
                cancel: Some(c), ..
            } => c.load(Ordering::SeqCst),
            _ => false,
        });
        for req in waiting {
            if let Some(r) = req.reply {
                let urls: Vec<String> = self.nodes.iter().map(|n| n.redacted.clone()).collect();
                r.send(Outcome::Failed(Failure::local(
                    FailureKind::Cancelled,
                    &urls,
                )));
            }
        }
    }

    /// Drains the core's outputs until it has nothing more to say.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.core.poll_transmit(&mut self.tx) {
                progressed = true;
                let i = t.node.index();
                let Some(node) = self.nodes.get_mut(i) else {
                    continue;
                };
                let data = self.tx.get(..t.len).unwrap_or(&[]);
                if let Conn::Up(stream) = &mut node.conn {
                    if let Err(e) = stream.send(data) {
                        node.link_error = Some(e);
                        close(&self.poll, &mut node.conn);
                        self.down.push(t.node);
                    }
                }
            }
            while let Some(event) = self.core.poll_event() {
                progressed = true;
                self.on_event(event);
            }
            if !self.down.is_empty() {
                progressed = true;
                self.report_down();
            }
            if !progressed && !self.admit() {
                return;
            }
        }
    }

    fn report_down(&mut self) {
        while let Some(node) = self.down.pop() {
            let now = self.now();
            self.core.handle_node_down(node, now);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connect { node } => self.connect(node.index()),
            Event::Disconnect { node, error } => {
                if let Some(n) = self.nodes.get_mut(node.index()) {
                    tracing::debug!(node = %n.redacted, "disconnect: {error}");
                    set_link_error(&mut n.link_error, &error);
                    close(&self.poll, &mut n.conn);
                }
            }
            Event::NodeFailed { node, op, error } => {
                let i = node.index();
                match op.and_then(|op| self.pending.get_mut(&op)) {
                    Some(p) => {
                        if p.errors.is_empty() {
                            p.errors = vec![None; self.nodes.len()];
                        }
                        if let Some(slot) = p.errors.get_mut(i) {
                            *slot = Some(error.to_string());
                        }
                    }
                    None => {
                        if let Some(n) = self.nodes.get_mut(i) {
                            tracing::debug!(node = %n.redacted, "node failed: {error}");
                            set_link_error(&mut n.link_error, &error);
                        }
                    }
                }
            }
            Event::Acquired { op, lease } => {
                let lease = self.shared.leases.boxed_clone(&lease);
                self.finish(op, Outcome::Acquired(lease))
            }
            Event::Extended { op, lease } => {
                let lease = self.shared.leases.boxed_clone(&lease);
                self.finish(op, Outcome::Extended(lease))
            }
            Event::Released { op, report } => {
                let kind = match report.verdict() {
                    ReleaseVerdict::Released | ReleaseVerdict::NotHeld => None,
                    ReleaseVerdict::AuthFailed => Some(FailureKind::AuthFailed),
                    _ => Some(FailureKind::Unavailable),
                };
                let failure = kind.map(|kind| {
                    let error = LockError {
                        kind,
                        attempts: 1,
                        nodes: report.nodes,
                    };
                    self.failure(op, error)
                });
                self.finish(op, Outcome::Released(report, failure));
            }
            Event::AcquireFailed { op, error } | Event::Lost { op, error } => {
                let failure = self.failure(op, error);
                self.finish(op, Outcome::Failed(failure));
            }
            _ => {}
        }
    }

    fn failure(&self, op: OpId, error: LockError) -> Failure {
        let op_errors = self.pending.get(&op).map(|p| &p.errors);
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let outcome = error.nodes.get(i);
                let op_err = op_errors.and_then(|e| e.get(i).cloned().flatten());
                let last_error = match (outcome, op_err, &n.link_error) {
                    (NodeOutcome::Ok | NodeOutcome::Held, _, _) => None,
                    (_, Some(o), Some(l)) if l.starts_with(o.as_str()) => Some(l.clone()),
                    (_, Some(o), Some(l)) if !o.contains(l.as_str()) => Some(format!("{o} ({l})")),
                    (_, Some(o), _) => Some(o),
                    (_, None, l) => l.clone(),
                };
                NodeFailure {
                    url: n.redacted.clone(),
                    outcome,
                    last_error,
                }
            })
            .collect();
        Failure::new(error, nodes)
    }

    fn finish(&mut self, op: OpId, outcome: Outcome) {
        if let Some(p) = self.pending.remove(&op) {
            if let Some(r) = p.reply {
                r.send(outcome);
            }
        }
    }

    /// Starts connecting to node `i` (the core asked with `Event::Connect`).
    fn connect(&mut self, i: usize) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        close(&self.poll, &mut node.conn);
        let deadline = std::time::Instant::now() + self.node_timeout;
        // An IP literal needs no resolution.
        if let Ok(ip) = node.url.host.parse::<IpAddr>() {
            let addr = SocketAddr::new(ip, node.url.port);
            return self.try_addrs(i, VecDeque::from([addr]), deadline, None);
        }
        // A name is resolved by the node's own thread, never here.
        if node.resolver.is_none() {
            let shared = Arc::clone(&self.shared);
            let deliver = move |result| {
                let mut q = shared.queue();
                if !q.stopped {
                    q.resolved.push((i, result));
                    drop(q);
                    let _ = shared.waker.wake();
                }
            };
            match Resolver::spawn(node.url.host.to_string(), node.url.port, deliver) {
                Ok(r) => node.resolver = Some(r),
                Err(e) => {
                    let msg = format!("cannot start a thread to resolve {}: {e}", node.url.host);
                    return self.fail_node(i, msg);
                }
            }
        }
        if !node.resolver.as_mut().is_some_and(Resolver::request) {
            let msg = format!("the resolver thread for {} has stopped", node.url.host);
            return self.fail_node(i, msg);
        }
        node.conn = Conn::Resolving { deadline };
    }

    /// Node `i`'s resolver answered: connect if we are waiting for it, else
    /// keep the answer for the next time.
    fn on_resolved(&mut self, i: usize, result: Resolved) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        let Some(resolver) = node.resolver.as_mut() else {
            return;
        };
        let result = resolver.answered(result);
        let Conn::Resolving { deadline } = node.conn else {
            return;
        };
        match result {
            Ok(addrs) => self.try_addrs(i, addrs.into(), deadline, None),
            Err(msg) => self.fail_node(i, msg),
        }
    }

    /// Node `i`'s name did not resolve within the node timeout: connect to
    /// the addresses it last resolved to, if any (the answer still comes,
    /// for next time), else count the node as down.
    fn resolution_overdue(&mut self, i: usize) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        let late = format!(
            "resolving {} took longer than {:?}",
            node.url.host, self.node_timeout
        );
        match node.resolver.as_ref().and_then(|r| r.last_good.clone()) {
            Some(addrs) => {
                tracing::debug!(node = %node.redacted, "{late}: using its last known addresses");
                let deadline = std::time::Instant::now() + self.node_timeout;
                self.try_addrs(i, addrs.into(), deadline, Some(late));
            }
            None => self.fail_node(i, late),
        }
    }

    /// Connects to the first address that does not fail at once.
    fn try_addrs(
        &mut self,
        i: usize,
        mut addrs: VecDeque<SocketAddr>,
        deadline: std::time::Instant,
        mut last: Option<String>,
    ) {
        while let Some(addr) = addrs.pop_front() {
            match TcpStream::connect(addr) {
                Ok(mut sock) => {
                    let reg = self.poll.registry().register(
                        &mut sock,
                        MioToken(i),
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    if let Err(e) = reg {
                        last = Some(format!("connect {addr}: {e}"));
                        continue;
                    }
                    if let Some(node) = self.nodes.get_mut(i) {
                        node.conn = Conn::Connecting {
                            sock,
                            rest: addrs,
                            deadline,
                        };
                    }
                    return;
                }
                Err(e) => last = Some(format!("connect {addr}: {e}")),
            }
        }
        let msg = last.unwrap_or_else(|| "no address to connect to".to_owned());
        self.fail_node(i, msg);
    }

    /// Records why node `i` is down, closes it and tells the core.
    fn fail_node(&mut self, i: usize, msg: String) {
        if let Some(node) = self.nodes.get_mut(i) {
            tracing::debug!(node = %node.redacted, "{msg}");
            node.link_error = Some(msg);
            close(&self.poll, &mut node.conn);
            let now = self.now();
            self.core.handle_node_down(NodeId(i as u8), now);
            self.drain();
        }
    }

    fn on_ready(&mut self, i: usize, closing: bool) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        match &mut node.conn {
            Conn::Closed | Conn::Resolving { .. } => {}
            Conn::Connecting { sock, .. } => {
                let failed = match sock.take_error() {
                    Ok(Some(e)) | Err(e) => Some(e.to_string()),
                    Ok(None) => match sock.peer_addr() {
                        Ok(_) => None,
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                        Err(e) => Some(e.to_string()),
                    },
                };
                let Conn::Connecting {
                    mut sock,
                    rest,
                    deadline,
                } = std::mem::replace(&mut node.conn, Conn::Closed)
                else {
                    return;
                };
                if let Some(e) = failed {
                    let _ = self.poll.registry().deregister(&mut sock);
                    let addr = sock
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| format!("{}:{}", node.url.host, node.url.port));
                    self.try_addrs(i, rest, deadline, Some(format!("connect {addr}: {e}")));
                    return;
                }
                let _ = sock.set_nodelay(true);
                let tls = if node.url.tls {
                    match self.tls_session(i) {
                        Ok(t) => Some(Box::new(t)),
                        Err(e) => {
                            let _ = self.poll.registry().deregister(&mut sock);
                            self.fail_node(i, e);
                            return;
                        }
                    }
                } else {
                    None
                };
                let stream = Stream {
                    sock,
                    tls,
                    out: Vec::new(),
                };
                if let Some(node) = self.nodes.get_mut(i) {
                    node.conn = Conn::Handshaking { stream, deadline };
                }
                // Plain TCP is up at once; TLS sends its ClientHello.
                self.handshake(i);
            }
            Conn::Handshaking { .. } => self.handshake(i),
            Conn::Up(_) => {
                self.flush(i);
                self.read_ready(i, closing);
            }
        }
    }

    /// Advances node `i`'s TLS handshake; once it is complete (at once on
    /// plain TCP), the link is up and the core is told: only then do its
    /// requests start flowing.
    fn handshake(&mut self, i: usize) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        let Conn::Handshaking { stream, .. } = &mut node.conn else {
            return;
        };
        match stream.handshake() {
            Ok(false) => {}
            Ok(true) => {
                let Conn::Handshaking { stream, .. } =
                    std::mem::replace(&mut node.conn, Conn::Closed)
                else {
                    return;
                };
                node.conn = Conn::Up(stream);
                node.link_error = None;
                let now = self.now();
                self.core.handle_connected(NodeId(i as u8), now);
                self.drain();
                self.flush(i);
                // Readiness is edge-triggered: take what came with the end
                // of the handshake (session tickets) now.
                self.read(i);
            }
            Err(e) => self.fail_node(i, e),
        }
    }

    fn tls_session(&self, i: usize) -> Result<rustls::ClientConnection, String> {
        let config = self
            .tls
            .as_ref()
            .ok_or_else(|| "TLS is not configured".to_owned())?;
        let host = self.nodes.get(i).map(|n| n.url.host.to_string());
        let name = rustls::pki_types::ServerName::try_from(host.unwrap_or_default())
            .map_err(|e| format!("TLS: bad server name: {e}"))?;
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(|e| format!("TLS: {e}"))
    }

    fn flush(&mut self, i: usize) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        if let Conn::Up(stream) = &mut node.conn {
            if let Err(e) = stream.flush() {
                self.fail_node(i, e);
            }
        }
    }

    /// Reads until the socket would block, feeding the core.
    fn read(&mut self, i: usize) {
        self.read_ready(i, true);
    }

    /// Reads what a readiness event announced, feeding the core: on plain
    /// TCP, until a read returns less than the buffer holds (the socket is
    /// then empty, and data arriving later is a new edge of the
    /// edge-triggered poll: no read that fails with `WouldBlock` per
    /// event, ~9 system calls per cycle at N = 5), unless the event also
    /// reported an end of stream or an error (`closing`), whose edge is
    /// spent: then until `WouldBlock`, end of stream or the error. TLS
    /// always reads until `WouldBlock` (rustls may hold plaintext the
    /// socket no longer announces).
    fn read_ready(&mut self, i: usize, closing: bool) {
        loop {
            let Some(Node {
                conn: Conn::Up(stream),
                ..
            }) = self.nodes.get_mut(i)
            else {
                return;
            };
            let drained_at_short_read = !closing && stream.tls.is_none();
            match stream.read_some(&mut self.rx) {
                ReadResult::Data(n) => {
                    let now = self.now();
                    let data = self.rx.get(..n).unwrap_or(&[]);
                    self.core.handle_input(NodeId(i as u8), data, now);
                    if drained_at_short_read && n < self.rx.len() {
                        return;
                    }
                }
                ReadResult::WouldBlock => return,
                ReadResult::Closed => {
                    self.fail_node(i, "connection closed by the node".to_owned());
                    return;
                }
                ReadResult::Failed(e) => {
                    self.fail_node(i, e);
                    return;
                }
            }
        }
    }
}

/// Records a node's connection-level error. The core's generic "connection
/// lost" (our own `handle_node_down` echoed back) does not overwrite the
/// transport's more precise reason (refused, TLS, closed by the node).
fn set_link_error(slot: &mut Option<String>, error: &redlock_core::NodeError) {
    if error.kind != redlock_core::ErrorKind::Disconnected || slot.is_none() {
        *slot = Some(error.to_string());
    }
}

/// Deregisters and drops a connection.
fn close(poll: &Poll, conn: &mut Conn) {
    match std::mem::replace(conn, Conn::Closed) {
        Conn::Closed | Conn::Resolving { .. } => {}
        Conn::Connecting { mut sock, .. } => {
            let _ = poll.registry().deregister(&mut sock);
        }
        Conn::Handshaking { stream: mut s, .. } | Conn::Up(mut s) => {
            if let Some(tls) = &mut s.tls {
                tls.send_close_notify();
                let _ = tls.write_tls(&mut s.sock);
            }
            let _ = poll.registry().deregister(&mut s.sock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A CA, and a certificate for `localhost` signed by it.
    fn certs() -> (
        Vec<u8>,
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        (ca.pem().into_bytes(), cert.der().clone(), key)
    }

    /// A TLS link whose peer stops reading: the kernel buffers fill, then
    /// rustls's; what neither takes waits in `out` (no error), and every
    /// byte arrives, in order, once the peer reads again.
    #[test]
    fn tls_writes_wait_for_a_full_socket_instead_of_failing() {
        let (ca, cert, key) = certs();
        let server_config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        const TOTAL: usize = 12 << 20;
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut conn = rustls::ServerConnection::new(server_config).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).unwrap();
            }
            // Stop reading until told: the client's writes pile up.
            go_rx.recv().unwrap();
            let mut got = Vec::with_capacity(TOTAL);
            let mut buf = vec![0u8; 64 * 1024];
            while got.len() < TOTAL {
                conn.complete_io(&mut sock).unwrap();
                loop {
                    match conn.reader().read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            got
        });
        let std_sock = std::net::TcpStream::connect(addr).unwrap();
        std_sock.set_nonblocking(true).unwrap();
        let config = crate::tls::client_config(&[ca]).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = Stream {
            sock: TcpStream::from_std(std_sock),
            tls: Some(Box::new(
                rustls::ClientConnection::new(config, name).unwrap(),
            )),
            out: Vec::new(),
        };
        while !stream.handshake().unwrap() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(16 * 1024) {
            stream.send(chunk).expect("a full socket is not an error");
        }
        assert!(
            !stream.out.is_empty(),
            "the peer's buffers took {TOTAL} bytes: the test proves nothing"
        );
        go_tx.send(()).unwrap();
        let tls_pending = |s: &Stream| s.tls.as_ref().is_some_and(|t| t.wants_write());
        while !stream.out.is_empty() || tls_pending(&stream) {
            stream.flush().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = server.join().unwrap();
        assert!(got == data, "bytes lost or reordered");
    }
}
