//! A blocking driver over any [`embedded_io::Read`] + [`embedded_io::Write`]
//! sockets and a caller-supplied [`Clock`], for users with their own TCP
//! stack.
//!
//! [`EmbeddedClient`] takes one already-connected socket per node. Each
//! call (`lock`, `extend`, `release`) pumps the core in a loop until the
//! operation's result:
//!
//! * transmits are written with `write_all`;
//! * every node's socket is read in turn, relying on the **socket's own read
//!   timeout** (embedded-io has none): an error that the timeout classifier
//!   recognises means "no data yet"; any other error, or end of stream,
//!   means the node is down;
//! * the core's timers are driven from the [`Clock`].
//!
//! Keep socket read timeouts short (a few milliseconds): nodes are read one
//! after another, so a silent node costs one read timeout per round.
//!
//! A node whose connection the core drops (protocol error, EOF) loses its
//! socket; the caller sees it with [`EmbeddedClient::needs_socket`] and
//! hands a fresh one with [`EmbeddedClient::set_socket`] between calls.
//! Until then the core counts the node as down, and the other nodes can
//! still form a quorum.
//!
//! ```no_run
//! # fn demo<R: redlock_std::core::rand_core::CryptoRng>(mut rng: R) -> std::io::Result<()> {
//! use std::net::TcpStream;
//! use std::time::Duration;
//! use embedded_io_adapters::std::FromStd;
//! use redlock_std::core::{url::NodeUrl, Config};
//! use redlock_std::embedded::{EmbeddedClient, StdClock};
//!
//! let url = NodeUrl::parse("redis://127.0.0.1:6379").unwrap();
//! let sock = TcpStream::connect(("127.0.0.1", 6379))?;
//! sock.set_read_timeout(Some(Duration::from_millis(5)))?;
//! let mut client = EmbeddedClient::new(
//!     Config::new(Duration::from_secs(10)),
//!     vec![(url.node_config(), FromStd::new(sock))],
//!     StdClock::new(),
//! )
//! .unwrap()
//! .with_timeout_classifier(|e: &std::io::Error| {
//!     matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
//! });
//! // `rng`: any cryptographic RNG (rand_core 0.10 `CryptoRng`).
//! let lease = client.lock(b"jobs:42", &mut rng).unwrap();
//! client.release(&lease).unwrap();
//! # Ok(()) }
//! ```

use core::fmt;
use std::collections::VecDeque;
use std::time::Duration;

use embedded_io::{Error as _, ErrorKind, Read, Write};
use rand_core::CryptoRng;
use redlock_core::{
    CommandError, Config, ConfigError, Event, FailureKind, Instant, Lease, LockError, NodeConfig,
    NodeId, OpId, Redlock, ReleaseReport, RetryPolicy, MIN_TRANSMIT_BUF,
};

/// The caller's monotonic clock.
pub trait Clock {
    /// Now, on a clock that never goes backwards.
    fn now(&self) -> Instant;

    /// Called when there is no socket to wait on, until `until` at most;
    /// a sleeping clock avoids a busy loop. The default returns at once.
    fn idle(&self, until: Instant) {
        let _ = until;
    }
}

/// A [`Clock`] on [`std::time::Instant`], sleeping in [`Clock::idle`].
///
/// ```
/// use redlock_std::embedded::{Clock, StdClock};
/// let c = StdClock::new();
/// assert!(c.now() <= c.now());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    epoch: std::time::Instant,
}

impl StdClock {
    /// A clock whose zero is now.
    pub fn new() -> StdClock {
        StdClock {
            epoch: std::time::Instant::now(),
        }
    }
}

impl Default for StdClock {
    fn default() -> Self {
        StdClock::new()
    }
}

impl Clock for StdClock {
    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    fn idle(&self, until: Instant) {
        let wait = until.saturating_duration_since(self.now());
        std::thread::sleep(wait.clamp(Duration::from_micros(100), Duration::from_millis(10)));
    }
}

/// Why an [`EmbeddedClient`] operation failed (nodes named by index).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// The lock is held by someone else.
    Busy(LockError),
    /// Too few nodes answered to decide.
    Unavailable(LockError),
    /// Too few nodes answered and at least one rejected our credentials.
    Auth(LockError),
    /// An extension failed: the lock is lost.
    Lost(LockError),
    /// The core refused the command.
    Command(CommandError),
}

impl fmt::Display for EmbeddedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbeddedError::Busy(e) | EmbeddedError::Unavailable(e) | EmbeddedError::Auth(e) => {
                write!(f, "lock not acquired: {e}")
            }
            EmbeddedError::Lost(e) => write!(f, "lock lost: {e}"),
            EmbeddedError::Command(e) => write!(f, "command refused: {e}"),
        }
    }
}

impl std::error::Error for EmbeddedError {}

impl From<CommandError> for EmbeddedError {
    fn from(e: CommandError) -> Self {
        EmbeddedError::Command(e)
    }
}

/// A blocking Redlock client over caller-supplied sockets; see the
/// [module docs](self).
pub struct EmbeddedClient<S: Read + Write, C: Clock> {
    core: Redlock<4, 32>,
    sockets: Vec<Option<S>>,
    clock: C,
    tx: Vec<u8>,
    rx: Vec<u8>,
    is_timeout: fn(&S::Error) -> bool,
    results: VecDeque<Event>,
}

impl<S: Read + Write, C: Clock> fmt::Debug for EmbeddedClient<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedClient")
            .field("nodes", &self.sockets.len())
            .field(
                "connected",
                &self.sockets.iter().filter(|s| s.is_some()).count(),
            )
            .finish()
    }
}

fn default_is_timeout<E: embedded_io::Error>(e: &E) -> bool {
    e.kind() == ErrorKind::TimedOut
}

impl<S: Read + Write, C: Clock> EmbeddedClient<S, C> {
    /// A client for `nodes` (each node's credentials/db and its connected
    /// socket), timing with `clock`.
    pub fn new(config: Config, nodes: Vec<(NodeConfig, S)>, clock: C) -> Result<Self, ConfigError> {
        let configs: Vec<NodeConfig> = nodes.iter().map(|(c, _)| c.clone()).collect();
        let core = Redlock::new(config, &configs)?;
        let mut client = EmbeddedClient {
            core,
            sockets: nodes.into_iter().map(|(_, s)| Some(s)).collect(),
            clock,
            tx: vec![0u8; MIN_TRANSMIT_BUF * 4],
            rx: vec![0u8; 4096],
            is_timeout: default_is_timeout::<S::Error>,
            results: VecDeque::new(),
        };
        client.drain();
        Ok(client)
    }

    /// Sets how to recognise a read timeout among the socket's errors (the
    /// default recognises [`ErrorKind::TimedOut`]; `std` sockets report
    /// `WouldBlock`, which embedded-io maps to `Other`).
    pub fn with_timeout_classifier(mut self, f: fn(&S::Error) -> bool) -> Self {
        self.is_timeout = f;
        self
    }

    /// Whether node `node` lost its socket and needs a new one.
    pub fn needs_socket(&self, node: usize) -> bool {
        self.sockets.get(node).is_some_and(Option::is_none)
    }

    /// Hands a freshly connected socket for `node`; it is used when the core
    /// next asks to connect (after its reconnect backoff).
    pub fn set_socket(&mut self, node: usize, socket: S) {
        if let Some(slot) = self.sockets.get_mut(node) {
            *slot = Some(socket);
        }
    }

    /// Acquires `resource` with the configured TTL and retries; the token
    /// comes from `rng` (must be a cryptographic RNG).
    pub fn lock<R: CryptoRng + ?Sized>(
        &mut self,
        resource: &[u8],
        rng: &mut R,
    ) -> Result<Lease, EmbeddedError> {
        let c = *self.core.config();
        self.lock_with(resource, c.ttl, c.retry, rng)
    }

    /// Acquires `resource` for `ttl` with a given retry policy.
    pub fn lock_with<R: CryptoRng + ?Sized>(
        &mut self,
        resource: &[u8],
        ttl: Duration,
        retry: RetryPolicy,
        rng: &mut R,
    ) -> Result<Lease, EmbeddedError> {
        let now = self.clock.now();
        let op = self.core.acquire_with(resource, ttl, retry, rng, now)?;
        match self.run(op) {
            Event::Acquired { lease, .. } => Ok(lease),
            Event::AcquireFailed { error, .. } => Err(match error.kind {
                FailureKind::Busy => EmbeddedError::Busy(error),
                FailureKind::AuthFailed => EmbeddedError::Auth(error),
                _ => EmbeddedError::Unavailable(error),
            }),
            _ => Err(EmbeddedError::Command(CommandError::TooManyOperations)),
        }
    }

    /// Extends `lease` to `ttl` from now.
    pub fn extend(&mut self, lease: &Lease, ttl: Duration) -> Result<Lease, EmbeddedError> {
        let now = self.clock.now();
        let op = self.core.extend(lease, ttl, now)?;
        match self.run(op) {
            Event::Extended { lease, .. } => Ok(lease),
            Event::Lost { error, .. } => Err(EmbeddedError::Lost(error)),
            _ => Err(EmbeddedError::Command(CommandError::TooManyOperations)),
        }
    }

    /// Releases `lease` on every node.
    pub fn release(&mut self, lease: &Lease) -> Result<ReleaseReport, EmbeddedError> {
        let now = self.clock.now();
        let op = self.core.release(lease, now)?;
        match self.run(op) {
            Event::Released { report, .. } => Ok(report),
            _ => Err(EmbeddedError::Command(CommandError::TooManyOperations)),
        }
    }

    /// Pumps the core until `op` ends. The core guarantees it does, as
    /// time passes on the clock.
    fn run(&mut self, op: OpId) -> Event {
        loop {
            self.drain();
            if let Some(pos) = self.results.iter().position(|e| e.op() == Some(op)) {
                if let Some(e) = self.results.remove(pos) {
                    return e;
                }
            }
            let mut waited = false;
            for i in 0..self.sockets.len() {
                let node = NodeId(i as u8);
                let Some(sock) = self.sockets.get_mut(i).and_then(Option::as_mut) else {
                    continue;
                };
                waited = true;
                let read = sock.read(&mut self.rx);
                let now = self.clock.now();
                match read {
                    Ok(0) => self.node_down(i),
                    Ok(n) => {
                        let data = self.rx.get(..n).unwrap_or(&[]);
                        self.core.handle_input(node, data, now);
                    }
                    Err(e) if (self.is_timeout)(&e) || e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => self.node_down(i),
                }
                self.drain();
            }
            let now = self.clock.now();
            match self.core.poll_timeout() {
                Some(t) if t <= now => {
                    self.core.handle_timeout(now);
                }
                Some(t) if !waited => self.clock.idle(t),
                _ => {}
            }
        }
    }

    fn node_down(&mut self, i: usize) {
        if let Some(s) = self.sockets.get_mut(i) {
            *s = None;
        }
        let now = self.clock.now();
        self.core.handle_node_down(NodeId(i as u8), now);
    }

    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.core.poll_transmit(&mut self.tx) {
                progressed = true;
                let i = t.node.index();
                let data = self.tx.get(..t.len).unwrap_or(&[]);
                let failed = match self.sockets.get_mut(i).and_then(Option::as_mut) {
                    Some(s) => s.write_all(data).and_then(|()| s.flush()).is_err(),
                    None => false,
                };
                if failed {
                    self.node_down(i);
                }
            }
            while let Some(event) = self.core.poll_event() {
                progressed = true;
                let now = self.clock.now();
                match event {
                    Event::Connect { node } => {
                        if self.sockets.get(node.index()).is_some_and(Option::is_some) {
                            self.core.handle_connected(node, now);
                        } else {
                            self.core.handle_node_down(node, now);
                        }
                    }
                    Event::Disconnect { node, .. } => {
                        if let Some(s) = self.sockets.get_mut(node.index()) {
                            *s = None;
                        }
                    }
                    e if e.op().is_some() => self.results.push_back(e),
                    _ => {}
                }
            }
            if !progressed {
                return;
            }
        }
    }
}
