//! The driver task: the only owner of the core.
//!
//! Modelled on quinn's `ConnectionDriver`, it does nothing but pump the
//! sans-IO core, in a loop:
//! 1. take commands from clients (acquire, extend, release, cancel) and bytes
//!    or link changes from the connection tasks, feeding each to the core;
//! 2. drain the core's outputs after every input: transmits go to the
//!    node's writer task, events complete the waiting futures (by
//!    [`OpId`]) or open/close connections;
//! 3. drive the timer: if `poll_timeout` is already due, call
//!    `handle_timeout` before sleeping at all, else sleep until it.
//!
//! Every decision (quorum, validity, retries, timeouts, reconnect backoff,
//! reply meaning) is the core's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redlock_core::url::NodeUrl;
use redlock_core::{
    ErrorKind, Event, FailureKind, Instant, Lease as CoreLease, NodeError, NodeId, NodeOutcome,
    OpId, Redlock, ReleaseReport, RetryPolicy, Token,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_rustls::rustls::ClientConfig;
use tracing::{debug, trace, warn};

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
}

/// A request from a handle to the driver.
pub(crate) enum Command {
    Acquire {
        req: u64,
        resource: Vec<u8>,
        ttl: Option<Duration>,
        retry: Option<RetryPolicy>,
        rng: Box<Prefilled>,
        reply: oneshot::Sender<Result<CoreLease, Error>>,
    },
    /// The `lock()` future with this `req` was dropped before its result.
    Cancel { req: u64 },
    Extend {
        resource: Vec<u8>,
        token: Token,
        /// When extending a known lease, the core also checks its deadline.
        lease: Option<Box<CoreLease>>,
        ttl: Duration,
        reply: oneshot::Sender<Result<CoreLease, Error>>,
    },
    Release {
        resource: Vec<u8>,
        token: Token,
        /// `None`: fire and forget (a dropped lease).
        reply: Option<oneshot::Sender<Result<ReleaseReport, Error>>>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Acquire { req, .. } => write!(f, "Acquire({req})"),
            Command::Cancel { req } => write!(f, "Cancel({req})"),
            Command::Extend { token, .. } => write!(f, "Extend({token:?})"),
            Command::Release { token, .. } => write!(f, "Release({token:?})"),
        }
    }
}

enum Reply {
    Acquire {
        req: u64,
        tx: oneshot::Sender<Result<CoreLease, Error>>,
    },
    Extend(oneshot::Sender<Result<CoreLease, Error>>),
    Release(Option<oneshot::Sender<Result<ReleaseReport, Error>>>),
    /// Nobody waits (a cancelled acquire): a lease it produces is released.
    Orphan,
}

struct Pending {
    reply: Reply,
    resource: Vec<u8>,
    started: tokio::time::Instant,
    /// The last error each node reported for this operation.
    errors: Vec<Option<NodeError>>,
}

/// One node's connection, as the driver sees it.
struct Node {
    url: NodeUrl,
    redacted: String,
    generation: u64,
    writer: Option<crate::conn::Writer>,
    /// Plain TCP: the driver reads the socket itself.
    reader: Option<tokio::net::tcp::OwnedReadHalf>,
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

pub(crate) struct Driver {
    core: Box<Core>,
    clock: Clock,
    nodes: Vec<Node>,
    tls: Option<Arc<ClientConfig>>,
    node_timeout: Duration,
    commands: mpsc::UnboundedReceiver<Command>,
    io_tx: mpsc::Sender<IoEvent>,
    io_rx: mpsc::Receiver<IoEvent>,
    pending: HashMap<OpId, Pending>,
    acquires: HashMap<u64, OpId>,
    buf: Vec<u8>,
    /// Read buffer for the sockets the driver reads itself.
    rbuf: Vec<u8>,
}

/// Transmit buffer: several pipelined commands per write.
const TX_BUF: usize = 64 * 1024;
/// Read buffer for plain-TCP sockets read by the driver.
const RX_BUF: usize = 16 * 1024;
/// After every handle is gone, how long the driver keeps running so that
/// releases already asked for reach the nodes.
const LINGER: Duration = Duration::from_secs(2);

impl Driver {
    pub(crate) fn new(
        core: Box<Core>,
        clock: Clock,
        urls: Vec<NodeUrl>,
        tls: Option<Arc<ClientConfig>>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Driver {
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
        Driver {
            core,
            clock,
            nodes,
            tls,
            node_timeout,
            commands,
            io_tx,
            io_rx,
            pending: HashMap::new(),
            acquires: HashMap::new(),
            buf: vec![0; TX_BUF],
            rbuf: vec![0; RX_BUF],
        }
    }

    /// Runs until every handle is dropped and the operations in progress are
    /// done (or [`LINGER`] has passed).
    pub(crate) async fn run(mut self) {
        let mut closing: Option<tokio::time::Instant> = None;
        let mut spins = 0u32;
        loop {
            self.drain();
            if let Some(until) = closing {
                if self.core.operations_in_flight() == 0 || tokio::time::Instant::now() >= until {
                    break;
                }
            }
            // Timer first: never sleep past a deadline that is already due.
            let timeout = self.core.poll_timeout();
            let now = self.clock.now();
            if let Some(t) = timeout {
                if t <= now {
                    spins += 1;
                    if spins < 1000 {
                        self.core.handle_timeout(now);
                        continue;
                    }
                    // A deadline that handling does not move would be a core
                    // bug; never spin on it.
                    if spins == 1000 {
                        warn!("the core keeps asking for an immediate timeout");
                    }
                }
            }
            let timeout = if spins >= 1000 {
                Some(now + Duration::from_millis(1))
            } else {
                timeout
            };
            let sleep_until = match (timeout, closing) {
                (Some(t), Some(c)) => Some(self.clock.at(t).min(c)),
                (Some(t), None) => Some(self.clock.at(t)),
                (None, c) => c,
            };
            tokio::select! {
                cmd = self.commands.recv(), if closing.is_none() => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        // Take whatever else is queued before draining.
                        for _ in 0..64 {
                            match self.commands.try_recv() {
                                Ok(cmd) => self.command(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        debug!("every handle dropped: finishing operations in progress");
                        closing = Some(tokio::time::Instant::now() + LINGER);
                    }
                },
                () = readable(&self.nodes) => self.read_sockets(),
                Some(ev) = self.io_rx.recv() => {
                    self.io(ev);
                    for _ in 0..64 {
                        match self.io_rx.try_recv() {
                            Ok(ev) => self.io(ev),
                            Err(_) => break,
                        }
                    }
                }
                _ = sleep(sleep_until) => {
                    self.core.handle_timeout(self.clock.now());
                }
            }
            spins = 0;
        }
        for node in &mut self.nodes {
            node.close();
        }
        debug!("driver stopped");
    }

    fn command(&mut self, cmd: Command) {
        let now = self.clock.now();
        let started = tokio::time::Instant::now();
        match cmd {
            Command::Acquire {
                req,
                resource,
                ttl,
                retry,
                mut rng,
                reply,
            } => {
                let ttl = ttl.unwrap_or(self.core.config().ttl);
                let retry = retry.unwrap_or(self.core.config().retry);
                match self
                    .core
                    .acquire_with(&resource, ttl, retry, &mut *rng, now)
                {
                    Ok(op) => {
                        trace!(resource = %lossy(&resource), ?op, "acquire started");
                        self.acquires.insert(req, op);
                        self.track(op, Reply::Acquire { req, tx: reply }, resource, started);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Command(e)));
                    }
                }
            }
            Command::Cancel { req } => {
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
            Command::Extend {
                resource,
                token,
                lease,
                ttl,
                reply,
            } => {
                let result = match &lease {
                    Some(l) => self.core.extend(l, ttl, now),
                    None => self.core.extend_token(&resource, &token, ttl, now),
                };
                match result {
                    Ok(op) => self.track(op, Reply::Extend(reply), resource, started),
                    Err(e) => {
                        let _ = reply.send(Err(Error::Command(e)));
                    }
                }
            }
            Command::Release {
                resource,
                token,
                reply,
            } => match self.core.release_token(&resource, &token, now) {
                Ok(op) => self.track(op, Reply::Release(reply), resource, started),
                Err(e) => {
                    warn!(resource = %lossy(&resource), error = %e, "could not start a release");
                    if let Some(tx) = reply {
                        let _ = tx.send(Err(Error::Command(e)));
                    }
                }
            },
        }
    }

    fn track(&mut self, op: OpId, reply: Reply, resource: Vec<u8>, started: tokio::time::Instant) {
        self.pending.insert(
            op,
            Pending {
                reply,
                resource,
                started,
                errors: vec![None; self.nodes.len()],
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
                n.writer = Some(writer);
                n.reader = reader;
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
                let reason = match r.try_read(&mut self.rbuf) {
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

    /// Drains the core's outputs until it has nothing more to say.
    fn drain(&mut self) {
        loop {
            while let Some(t) = self.core.poll_transmit(&mut self.buf) {
                let bytes = &self.buf[..t.len];
                if let Some(n) = self.nodes.get(t.node.index()) {
                    match &n.writer {
                        Some(w) => w.write(bytes),
                        None => trace!(node = t.node.0, "transmit without a connection"),
                    }
                }
            }
            let mut any = false;
            while let Some(event) = self.core.poll_event() {
                any = true;
                self.event(event);
            }
            if !any {
                return;
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
                let ms = p.started.elapsed().as_secs_f64() * 1e3;
                match p.reply {
                    Reply::Acquire { req, tx } => {
                        self.acquires.remove(&req);
                        debug!(resource = %lossy(&p.resource), token = ?lease.token(), latency_ms = ms,
                            validity_ms = lease.remaining(self.clock.now()).as_millis() as u64, "acquired");
                        if let Err(Ok(lease)) = tx.send(Ok(lease)) {
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
                let ms = p.started.elapsed().as_secs_f64() * 1e3;
                if let Reply::Acquire { req, tx } = p.reply {
                    self.acquires.remove(&req);
                    debug!(resource = %lossy(&p.resource), attempts = error.attempts, latency_ms = ms,
                        error = %error, "acquire failed");
                    let failure = self.failure(error, &p.errors);
                    let _ = tx.send(Err(Error::acquire_failed(failure)));
                } else if error.kind != FailureKind::Cancelled {
                    debug!(resource = %lossy(&p.resource), error = %error, "orphan acquire failed");
                }
            }
            Event::Extended { op, lease } => {
                let Some(p) = self.pending.remove(&op) else {
                    return;
                };
                let ms = p.started.elapsed().as_secs_f64() * 1e3;
                debug!(resource = %lossy(&p.resource), token = ?lease.token(), latency_ms = ms, "extended");
                if let Reply::Extend(tx) = p.reply {
                    let _ = tx.send(Ok(lease));
                }
            }
            Event::Lost { op, error } => {
                let Some(p) = self.pending.remove(&op) else {
                    return;
                };
                warn!(resource = %lossy(&p.resource), error = %error, "extension failed: lock lost");
                let failure = self.failure(error, &p.errors);
                if let Reply::Extend(tx) = p.reply {
                    let _ = tx.send(Err(Error::Lost(failure)));
                }
            }
            Event::Released { op, report } => {
                let Some(p) = self.pending.remove(&op) else {
                    return;
                };
                let ms = p.started.elapsed().as_secs_f64() * 1e3;
                debug!(resource = %lossy(&p.resource), released = report.released(),
                    not_held = report.not_held(), unanswered = report.unanswered(), latency_ms = ms, "released");
                if let Reply::Release(Some(tx)) = p.reply {
                    let _ = tx.send(Ok(report));
                }
            }
            _ => {}
        }
    }

    /// Releases a lease nobody is waiting for (its acquire was dropped).
    fn release_orphan(&mut self, lease: &CoreLease) {
        let now = self.clock.now();
        match self.core.release(lease, now) {
            Ok(op) => {
                debug!(resource = %lossy(lease.resource()), token = ?lease.token(),
                    "releasing the lease of a dropped acquire");
                self.track(
                    op,
                    Reply::Release(None),
                    lease.resource().to_vec(),
                    tokio::time::Instant::now(),
                );
            }
            Err(e) => {
                warn!(resource = %lossy(lease.resource()), error = %e,
                    "could not release the lease of a dropped acquire; it expires with its TTL");
            }
        }
    }

    fn connect(&mut self, node: NodeId) {
        let Some(n) = self.nodes.get_mut(node.index()) else {
            return;
        };
        n.close();
        trace!(node = node.0, url = %n.redacted, "connecting");
        let task = tokio::spawn(conn::run(
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
                    NodeOutcome::Ok | NodeOutcome::Held => None,
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

impl Drop for Driver {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.close();
        }
    }
}

/// Resolves when any socket the driver reads itself has data (or an error,
/// or end of stream) to read.
async fn readable(nodes: &[Node]) {
    std::future::poll_fn(|cx| {
        for n in nodes {
            if let Some(r) = &n.reader {
                if r.as_ref().poll_read_ready(cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn sleep(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
