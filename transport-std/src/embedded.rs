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
//! let lease = client.lock("jobs:42", &mut rng).unwrap();
//! client.release(&lease).unwrap();
//! # Ok(()) }
//! ```

use core::fmt;
use std::collections::VecDeque;
use std::time::Duration;

use embedded_io::{Error as _, ErrorKind, Read, Write};
use rand_core::CryptoRng;
use redlock_core::{
    CommandError, Config, ConfigError, Event, FailureKind, Instant, IntoResources, Lease,
    LockError, LockOptions, NodeConfig, NodeId, OpId, Redlock, ReleaseReport, ReleaseVerdict,
    MIN_TRANSMIT_BUF,
};

/// The caller's monotonic clock.
///
/// ```
/// use std::cell::Cell;
/// use redlock_std::core::Instant;
/// use redlock_std::embedded::Clock;
///
/// /// A device's millisecond tick counter.
/// struct Ticks(Cell<u64>);
/// impl Clock for Ticks {
///     fn now(&self) -> Instant {
///         Instant::from_millis(self.0.get())
///     }
/// }
/// let t = Ticks(Cell::new(5));
/// assert_eq!(t.now(), Instant::from_millis(5));
/// ```
pub trait Clock {
    /// Now, on a clock that never goes backwards.
    ///
    /// ```
    /// use redlock_std::embedded::{Clock, StdClock};
    /// let c = StdClock::new();
    /// assert!(c.now() <= c.now());
    /// ```
    fn now(&self) -> Instant;

    /// Called when there is no socket to wait on, until `until` at most;
    /// a sleeping clock avoids a busy loop. The default returns at once.
    ///
    /// ```
    /// use redlock_std::embedded::{Clock, StdClock};
    /// let c = StdClock::new();
    /// c.idle(c.now()); // sleeps at most a few ms
    /// ```
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
    ///
    /// ```
    /// use redlock_std::embedded::{Clock, StdClock};
    /// assert!(StdClock::new().now() < redlock_std::core::Instant::from_millis(1_000));
    /// ```
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
///
/// ```
/// use redlock_std::core::CommandError;
/// use redlock_std::embedded::EmbeddedError;
/// let e = EmbeddedError::from(CommandError::BadResource);
/// assert_eq!(e.to_string(), "command refused: resource name empty or too long");
/// ```
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
    /// A release found that our token did not hold the lock on a quorum:
    /// it had expired or been taken before the release.
    NotHeld(ReleaseReport),
    /// The core refused the command (bad resources, TTL, retry policy).
    Command(CommandError),
}

impl fmt::Display for EmbeddedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbeddedError::Busy(e) | EmbeddedError::Unavailable(e) | EmbeddedError::Auth(e) => {
                write!(f, "{e}")
            }
            EmbeddedError::Lost(e) => write!(f, "lock lost: {e}"),
            EmbeddedError::NotHeld(r) => write!(
                f,
                "this token did not hold the lock on a quorum (released on {} of {} nodes)",
                r.released(),
                r.nodes.len()
            ),
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
///
/// ```no_run
/// # fn f<R: redlock_std::core::rand_core::CryptoRng>(rng: &mut R) -> Result<(), Box<dyn std::error::Error>> {
/// use embedded_io_adapters::std::FromStd;
/// use redlock_std::core::{url::NodeUrl, Config};
/// use redlock_std::embedded::{EmbeddedClient, StdClock};
///
/// let url = NodeUrl::parse("redis://127.0.0.1:6379")?;
/// let sock = std::net::TcpStream::connect(("127.0.0.1", 6379))?;
/// sock.set_read_timeout(Some(std::time::Duration::from_millis(5)))?;
/// let mut client = EmbeddedClient::new(Config::default(), vec![(url.node_config(), FromStd::new(sock))], StdClock::new())?;
/// let lease = client.lock(["a", "b"], rng)?;
/// client.release(&lease)?;
/// # Ok(()) }
/// ```
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
    /// socket), timing with `clock`. [`ConfigError`] for a bad config or
    /// node count.
    ///
    /// ```no_run
    /// # fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use embedded_io_adapters::std::FromStd;
    /// use redlock_std::core::{Config, NodeConfig};
    /// use redlock_std::embedded::{EmbeddedClient, StdClock};
    /// let sock = FromStd::new(std::net::TcpStream::connect("127.0.0.1:6379")?);
    /// let client = EmbeddedClient::new(Config::default(), vec![(NodeConfig::default(), sock)], StdClock::new())?;
    /// # let _ = client; Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # fn f(client: redlock_std::embedded::EmbeddedClient<embedded_io_adapters::std::FromStd<std::net::TcpStream>, redlock_std::embedded::StdClock>) {
    /// let client = client.with_timeout_classifier(|e: &std::io::Error| {
    ///     matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    /// });
    /// # }
    /// ```
    pub fn with_timeout_classifier(mut self, f: fn(&S::Error) -> bool) -> Self {
        self.is_timeout = f;
        self
    }

    /// Whether node `node` lost its socket and needs a new one.
    ///
    /// ```no_run
    /// # fn f(mut client: redlock_std::embedded::EmbeddedClient<embedded_io_adapters::std::FromStd<std::net::TcpStream>, redlock_std::embedded::StdClock>) -> std::io::Result<()> {
    /// use embedded_io_adapters::std::FromStd;
    /// if client.needs_socket(0) {
    ///     client.set_socket(0, FromStd::new(std::net::TcpStream::connect("127.0.0.1:6379")?));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn needs_socket(&self, node: usize) -> bool {
        self.sockets.get(node).is_some_and(Option::is_none)
    }

    /// Hands a freshly connected socket for `node`.
    ///
    /// If the node's link is down, the socket is used when the core next
    /// asks to connect (after its reconnect backoff). If the link is up, the
    /// old connection is replaced at once: the core is first told it is
    /// down (requests in flight on it fail, and no reply it still owed is
    /// ever matched against the new socket), then the handshake (`AUTH`,
    /// `SELECT`, script loading) runs on the new socket before any request.
    ///
    /// ```no_run
    /// # use std::net::TcpStream;
    /// # use embedded_io_adapters::std::FromStd;
    /// # fn f(client: &mut redlock_std::embedded::EmbeddedClient<FromStd<TcpStream>, redlock_std::embedded::StdClock>) -> std::io::Result<()> {
    /// if client.needs_socket(0) {
    ///     let sock = TcpStream::connect(("127.0.0.1", 6379))?;
    ///     sock.set_read_timeout(Some(std::time::Duration::from_millis(5)))?;
    ///     client.set_socket(0, FromStd::new(sock));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn set_socket(&mut self, node: usize, socket: S) {
        let Some(slot) = self.sockets.get_mut(node) else {
            return;
        };
        *slot = Some(socket);
        let id = NodeId(node as u8);
        if self.core.is_connected(id) {
            let now = self.clock.now();
            self.core.handle_node_down(id, now);
            self.core.handle_connected(id, now);
            self.drain();
        }
    }

    /// Acquires `resources` (one name or several, [`IntoResources`]) with
    /// the configured TTL and retries; the token comes from `rng` (must be
    /// a cryptographic RNG).
    ///
    /// ```no_run
    /// # fn f<S: embedded_io::Read + embedded_io::Write, C: redlock_std::embedded::Clock, R: redlock_std::core::rand_core::CryptoRng>(
    /// #     client: &mut redlock_std::embedded::EmbeddedClient<S, C>, rng: &mut R) -> Result<(), redlock_std::embedded::EmbeddedError> {
    /// let lease = client.lock("jobs:42", rng)?;
    /// client.release(&lease)?;
    /// # Ok(()) }
    /// ```
    pub fn lock<R: CryptoRng + ?Sized>(
        &mut self,
        resources: impl IntoResources,
        rng: &mut R,
    ) -> Result<Lease, EmbeddedError> {
        self.lock_with(resources, &LockOptions::new(), rng)
    }

    /// Acquires `resources` with per-call options (TTL, retries, waiting,
    /// fencing: a fenced lock reads the wall clock, `SystemTime`, as the
    /// hint of its proposal).
    ///
    /// ```no_run
    /// # fn f<S: embedded_io::Read + embedded_io::Write, C: redlock_std::embedded::Clock, R: redlock_std::core::rand_core::CryptoRng>(
    /// #     client: &mut redlock_std::embedded::EmbeddedClient<S, C>, rng: &mut R) -> Result<(), redlock_std::embedded::EmbeddedError> {
    /// use redlock_std::LockOptions;
    /// let lease = client.lock_with(["a", "b"], &LockOptions::new().single_attempt().fenced(), rng)?;
    /// assert!(lease.fence().is_some());
    /// # Ok(()) }
    /// ```
    pub fn lock_with<R: CryptoRng + ?Sized>(
        &mut self,
        resources: impl IntoResources,
        options: &LockOptions,
        rng: &mut R,
    ) -> Result<Lease, EmbeddedError> {
        let resources = resources.into_resources()?;
        let options = options.resolve(self.core.config(), crate::unix_ms);
        let now = self.clock.now();
        let op = self.core.acquire_set(&resources, &options, rng, now)?;
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

    /// Extends `lease` to `ttl` from now (it keeps its fence).
    ///
    /// ```no_run
    /// # fn f<S: embedded_io::Read + embedded_io::Write, C: redlock_std::embedded::Clock>(
    /// #     client: &mut redlock_std::embedded::EmbeddedClient<S, C>, lease: redlock_std::core::Lease) -> Result<(), redlock_std::embedded::EmbeddedError> {
    /// let lease = client.extend(&lease, std::time::Duration::from_secs(10))?;
    /// # Ok(()) }
    /// ```
    pub fn extend(&mut self, lease: &Lease, ttl: Duration) -> Result<Lease, EmbeddedError> {
        let now = self.clock.now();
        let op = self.core.extend(lease, ttl, now)?;
        match self.run(op) {
            Event::Extended { lease, .. } => Ok(lease),
            Event::Lost { error, .. } => Err(EmbeddedError::Lost(error)),
            _ => Err(EmbeddedError::Command(CommandError::TooManyOperations)),
        }
    }

    /// Releases `lease` on every node. `Ok` only when it was released on a
    /// quorum; [`EmbeddedError::NotHeld`] when our token no longer held it
    /// (expired, taken); [`EmbeddedError::Unavailable`] /
    /// [`EmbeddedError::Auth`] when too few nodes answered to tell.
    ///
    /// ```no_run
    /// # fn f<S: embedded_io::Read + embedded_io::Write, C: redlock_std::embedded::Clock>(
    /// #     client: &mut redlock_std::embedded::EmbeddedClient<S, C>, lease: redlock_std::core::Lease) {
    /// match client.release(&lease) {
    ///     Ok(report) => println!("released on {} nodes", report.released()),
    ///     Err(redlock_std::embedded::EmbeddedError::NotHeld(_)) => println!("it had expired"),
    ///     Err(e) => println!("unknown: {e}"),
    /// }
    /// # }
    /// ```
    pub fn release(&mut self, lease: &Lease) -> Result<ReleaseReport, EmbeddedError> {
        let now = self.clock.now();
        let op = self.core.release(lease, now)?;
        let report = match self.run(op) {
            Event::Released { report, .. } => report,
            _ => return Err(EmbeddedError::Command(CommandError::TooManyOperations)),
        };
        let unknown = |kind| LockError {
            kind,
            attempts: 1,
            nodes: report.nodes,
        };
        match report.verdict() {
            ReleaseVerdict::Released => Ok(report),
            ReleaseVerdict::NotHeld => Err(EmbeddedError::NotHeld(report)),
            ReleaseVerdict::AuthFailed => {
                Err(EmbeddedError::Auth(unknown(FailureKind::AuthFailed)))
            }
            _ => Err(EmbeddedError::Unavailable(unknown(
                FailureKind::Unavailable,
            ))),
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
