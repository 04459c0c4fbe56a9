//! The driver thread: owns the core and every node's socket, multiplexed with
//! `mio`, and only moves bytes and time.
//!
//! Callers never touch the core. They push a [`Request`] onto a queue, wake
//! the driver with a [`mio::Waker`] and block on a one-shot channel for the
//! [`Outcome`]. The driver loop is the textbook sans-IO pump:
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

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token as MioToken, Waker};
use redlock_core::url::NodeUrl;
use redlock_core::{
    CommandError, Event, Instant, Lease as CoreLease, LockError, NodeId, NodeOutcome, OpId,
    Redlock, ReleaseReport, RetryPolicy, Token, MIN_TRANSMIT_BUF,
};

use crate::error::{Error, Failure, NodeFailure};
use crate::rng::OsBytes;

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
        resource: Vec<u8>,
        ttl: Duration,
        retry: RetryPolicy,
        rng: OsBytes,
        /// Set from another thread to cancel the acquire.
        cancel: Option<Arc<AtomicBool>>,
    },
    Extend {
        resource: Vec<u8>,
        token: Token,
        ttl: Duration,
        /// When known, the core also checks the lease's local deadline.
        lease: Option<CoreLease>,
    },
    Release {
        resource: Vec<u8>,
        token: Token,
    },
    /// Wakes the driver to look for acquires whose cancel flag is set.
    Cancel,
}

/// The result of one [`Command`].
#[derive(Debug)]
pub(crate) enum Outcome {
    Acquired(CoreLease),
    Extended(CoreLease),
    Released(ReleaseReport),
    Failed(Failure),
    Refused(CommandError),
}

#[derive(Debug)]
struct Request {
    cmd: Command,
    reply: Option<mpsc::SyncSender<Outcome>>,
}

#[derive(Debug, Default)]
struct Queue {
    requests: VecDeque<Request>,
    shutdown: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    waker: Waker,
}

/// The callers' side of the driver: submit commands, read the clock.
/// Dropping it stops the driver after in-flight operations finish (bounded).
#[derive(Debug)]
pub(crate) struct DriverHandle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
            })
            .collect();
        let mut driver = Driver {
            core,
            poll,
            nodes,
            shared: Arc::clone(&shared),
            pending: HashMap::new(),
            epoch,
            tls,
            tx: vec![0u8; MIN_TRANSMIT_BUF * 16],
            rx: vec![0u8; 16 * 1024],
            node_timeout,
            down: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("redlock-driver".into())
            .spawn(move || driver.run())?;
        Ok(DriverHandle {
            shared,
            thread: Mutex::new(Some(thread)),
            epoch,
        })
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
        {
            let mut q = self
                .shared
                .queue
                .lock()
                .map_err(|_| driver_gone("the driver's queue is poisoned"))?;
            q.requests.push_back(req);
        }
        self.shared.waker.wake().map_err(Error::Io)
    }

    /// Submits `cmd` and blocks until its outcome.
    pub(crate) fn submit(&self, cmd: Command) -> Result<Outcome, Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.push(Request {
            cmd,
            reply: Some(tx),
        })?;
        rx.recv()
            .map_err(|_| driver_gone("the redlock driver thread stopped"))
    }

    /// Submits `cmd` without waiting (best-effort release on drop).
    pub(crate) fn submit_detached(&self, cmd: Command) {
        let _ = self.push(Request { cmd, reply: None });
    }
}

impl Drop for DriverHandle {
    fn drop(&mut self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.shutdown = true;
        }
        let _ = self.shared.waker.wake();
        let thread = self.thread.get_mut().ok().and_then(Option::take);
        if let Some(t) = thread {
            // Never join ourselves (the last client dropped on the driver
            // thread cannot happen: it holds none, but stay safe).
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

fn driver_gone(msg: &str) -> Error {
    Error::Io(io::Error::other(msg.to_owned()))
}

fn instant_since(epoch: std::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
}

#[derive(Debug)]
struct PendingOp {
    reply: Option<mpsc::SyncSender<Outcome>>,
    /// The acquire's cancel flag, until the core has been told.
    cancel: Option<Arc<AtomicBool>>,
    /// Per node, the last error the core reported for this operation.
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
}

#[derive(Debug)]
enum Conn {
    Closed,
    Connecting {
        sock: TcpStream,
        rest: VecDeque<SocketAddr>,
        deadline: std::time::Instant,
    },
    Up(Stream),
}

#[derive(Debug)]
struct Stream {
    sock: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    /// Plain TCP: bytes the socket did not take yet.
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
        match &mut self.tls {
            Some(tls) => {
                tls.writer()
                    .write_all(data)
                    .map_err(|e| format!("TLS write: {e}"))?;
            }
            None => self.out.extend_from_slice(data),
        }
        self.flush()
    }

    /// Writes pending bytes until the socket would block.
    fn flush(&mut self) -> Result<(), String> {
        match &mut self.tls {
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
            }
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
    pending: HashMap<OpId, PendingOp>,
    epoch: std::time::Instant,
    tls: Option<Arc<rustls::ClientConfig>>,
    tx: Vec<u8>,
    rx: Vec<u8>,
    node_timeout: Duration,
    /// Nodes found down while draining, reported to the core afterwards.
    down: Vec<NodeId>,
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
            let (requests, shutdown) = match self.shared.queue.lock() {
                Ok(mut q) => (std::mem::take(&mut q.requests), q.shutdown),
                Err(_) => (VecDeque::new(), true),
            };
            // Start every queued request, then drain once: commands for one
            // node leave in one write (the core batches per node).
            for req in requests {
                self.start(req);
            }
            self.drain();
            if shutdown {
                // Let in-flight operations (e.g. releases on drop) finish,
                // bounded by a couple of node timeouts.
                let at = *shutdown_at.get_or_insert_with(|| {
                    std::time::Instant::now() + self.node_timeout * 2 + Duration::from_millis(20)
                });
                if self.pending.is_empty() || std::time::Instant::now() >= at {
                    break;
                }
            }

            // 2. Sleep until something is due.
            let mut wake_at = self
                .core
                .poll_timeout()
                .map(|t| self.epoch + Duration::from_micros(t.as_micros()));
            for node in &self.nodes {
                if let Conn::Connecting { deadline, .. } = node.conn {
                    wake_at = Some(wake_at.map_or(deadline, |w| w.min(deadline)));
                }
            }
            if let Some(at) = shutdown_at {
                wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
            let timeout = wake_at.map(|at| at.saturating_duration_since(std::time::Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!("redlock driver: poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }

            // 3. Sockets.
            let ready: Vec<usize> = events
                .iter()
                .filter(|e| e.token() != WAKER)
                .map(|e| e.token().0)
                .collect();
            // Feed every readable socket, then drain once.
            for i in ready {
                self.on_ready(i);
            }
            self.drain();

            // 4. Timers: connect deadlines, then the core's.
            let now_std = std::time::Instant::now();
            for i in 0..self.nodes.len() {
                let expired = matches!(self.nodes[i].conn, Conn::Connecting { deadline, .. } if deadline <= now_std);
                if expired {
                    let msg = format!("connect timed out after {:?}", self.node_timeout);
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

    /// Calls the core command for one request.
    fn start(&mut self, req: Request) {
        let now = self.now();
        let mut cancel_flag = None;
        let result = match req.cmd {
            Command::Acquire {
                resource,
                ttl,
                retry,
                mut rng,
                cancel,
            } => {
                cancel_flag = cancel;
                self.core.acquire_with(&resource, ttl, retry, &mut rng, now)
            }
            Command::Cancel => {
                self.cancel_flagged();
                return;
            }
            Command::Extend {
                resource,
                token,
                ttl,
                lease,
            } => match lease {
                Some(l) => self.core.extend(&l, ttl, now),
                None => self.core.extend_token(&resource, &token, ttl, now),
            },
            Command::Release { resource, token } => self.core.release_token(&resource, &token, now),
        };
        match result {
            Ok(op) => {
                self.pending.insert(
                    op,
                    PendingOp {
                        reply: req.reply,
                        cancel: cancel_flag,
                        errors: vec![None; self.nodes.len()],
                    },
                );
                self.cancel_flagged();
            }
            Err(e) => {
                if let Some(r) = req.reply {
                    let _ = r.send(Outcome::Refused(e));
                }
            }
        }
        // The caller drains once after starting every queued request.
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
            if !progressed {
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
            Event::Acquired { op, lease } => self.finish(op, Outcome::Acquired(lease)),
            Event::Extended { op, lease } => self.finish(op, Outcome::Extended(lease)),
            Event::Released { op, report } => self.finish(op, Outcome::Released(report)),
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
                let _ = r.send(outcome);
            }
        }
    }

    /// Starts connecting to node `i` (the core asked with `Event::Connect`).
    fn connect(&mut self, i: usize) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        close(&self.poll, &mut node.conn);
        // Name resolution blocks; node hosts are usually IP literals or
        // names in /etc/hosts.
        let addrs: VecDeque<SocketAddr> =
            match (node.url.host.as_str(), node.url.port).to_socket_addrs() {
                Ok(a) => a.collect(),
                Err(e) => {
                    let msg = format!("cannot resolve {}: {e}", node.url.host);
                    self.fail_node(i, msg);
                    return;
                }
            };
        let deadline = std::time::Instant::now() + self.node_timeout;
        self.try_addrs(i, addrs, deadline, None);
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

    fn on_ready(&mut self, i: usize) {
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        match &mut node.conn {
            Conn::Closed => {}
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
                if let Some(node) = self.nodes.get_mut(i) {
                    node.link_error = None;
                    node.conn = Conn::Up(Stream {
                        sock,
                        tls,
                        out: Vec::new(),
                    });
                }
                let now = self.now();
                self.core.handle_connected(NodeId(i as u8), now);
                self.drain();
                // The TLS ClientHello (and anything queued) goes out now.
                self.flush(i);
            }
            Conn::Up(_) => {
                self.flush(i);
                self.read(i);
            }
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
        loop {
            let Some(Node {
                conn: Conn::Up(stream),
                ..
            }) = self.nodes.get_mut(i)
            else {
                return;
            };
            match stream.read_some(&mut self.rx) {
                ReadResult::Data(n) => {
                    let now = self.now();
                    let data = self.rx.get(..n).unwrap_or(&[]);
                    self.core.handle_input(NodeId(i as u8), data, now);
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
        Conn::Closed => {}
        Conn::Connecting { mut sock, .. } => {
            let _ = poll.registry().deregister(&mut sock);
        }
        Conn::Up(mut s) => {
            if let Some(tls) = &mut s.tls {
                tls.send_close_notify();
                let _ = tls.write_tls(&mut s.sock);
            }
            let _ = poll.registry().deregister(&mut s.sock);
        }
    }
}
