//! The handles: [`Builder`] and [`Client`].

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redlock_core::settings::{ClientSettings, IntoResources, LockOptions};
use redlock_core::{Config, Lease as CoreLease, ReleaseReport, RetryPolicy, Token};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::driver::{Clock, Command, Core, Driver, Held, Names, Shared};
use crate::error::Error;
use crate::lease::Lease;
use crate::queue::Queue;
use crate::reply::{self, Answer, Cells, ReplyRx};
use crate::rng::Prefilled;
use crate::spare::{LeaseBox, SetBox};

/// Configures a [`Client`]: nodes, TTL, timeouts, retries, TLS roots.
///
/// Every setter is infallible; [`build`](Self::build) checks everything at
/// once (each URL, no server given twice, the timing rules) and says what is
/// wrong, showing a bad URL as given but without its password.
///
/// ```no_run
/// # async fn f() -> Result<(), redlock_tokio::Error> {
/// use std::time::Duration;
/// use redlock_tokio::Client;
///
/// let client = Client::builder()
///     .nodes(["redis://10.0.0.1", "redis://10.0.0.2", "redis://10.0.0.3"])
///     .ttl(Duration::from_secs(10))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct Builder {
    settings: ClientSettings,
}

impl Builder {
    /// A builder with a 30 s TTL, everything else derived from it
    /// ([`Config::new`]), and no nodes.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new();
    /// # let _ = b;
    /// ```
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Adds one node: `redis://[[user]:password@]host[:port][/db]`, or
    /// `rediss://` for TLS. IPv6 hosts go in brackets.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().node("redis://[::1]:6380/2");
    /// # let _ = b;
    /// ```
    pub fn node(self, url: impl AsRef<str>) -> Builder {
        Builder {
            settings: self.settings.node(url),
        }
    }

    /// Adds several nodes, in order.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().nodes(["redis://a", "redis://b", "redis://c"]);
    /// # let _ = b;
    /// ```
    pub fn nodes<I, S>(self, urls: I) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Builder {
            settings: self.settings.nodes(urls),
        }
    }

    /// The lease TTL. The node timeout (5 % of the TTL, 5 ms..=1 s) and
    /// reconnect backoff are derived from it unless set.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().ttl(std::time::Duration::from_secs(5));
    /// # let _ = b;
    /// ```
    pub fn ttl(self, ttl: Duration) -> Builder {
        Builder {
            settings: self.settings.ttl(ttl),
        }
    }

    /// How long one node may take to answer one request (and to connect).
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().node_timeout(std::time::Duration::from_millis(100));
    /// # let _ = b;
    /// ```
    pub fn node_timeout(self, timeout: Duration) -> Builder {
        Builder {
            settings: self.settings.node_timeout(timeout),
        }
    }

    /// The default retry policy of acquires.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().retry(redlock_tokio::RetryPolicy::none());
    /// # let _ = b;
    /// ```
    pub fn retry(self, retry: RetryPolicy) -> Builder {
        Builder {
            settings: self.settings.retry(retry),
        }
    }

    /// Edits any other [`Config`] field (drift, reconnect backoff), after
    /// the TTL, node timeout and retry policy are applied.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().configure(|c| c.drift_ppm = 20_000);
    /// # let _ = b;
    /// ```
    pub fn configure(self, edit: impl FnOnce(&mut Config) + Send + 'static) -> Builder {
        Builder {
            settings: self.settings.configure(edit),
        }
    }

    /// Trusts an extra CA (PEM, one or more certificates) for `rediss://`
    /// nodes, besides the Mozilla roots.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().tls_ca_pem(b"-----BEGIN CERTIFICATE-----...");
    /// # let _ = b;
    /// ```
    pub fn tls_ca_pem(self, pem: &[u8]) -> Builder {
        Builder {
            settings: self.settings.tls_ca_pem(pem),
        }
    }

    /// **Compatibility only**: accepts the same server (host and port)
    /// twice, e.g. two databases of one Redis, as some older Redlock
    /// libraries do (the Python binding's drop-in modules need it). Such
    /// nodes are not independent: one crash takes both. Never for new code.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let twice = ["redis://127.0.0.1/0", "redis://127.0.0.1/1"];
    /// assert!(matches!(
    ///     redlock_tokio::Client::builder().nodes(twice).build(),
    ///     Err(redlock_tokio::Error::DuplicateNode { .. })
    /// ));
    /// assert!(redlock_tokio::Client::builder().nodes(twice).allow_same_server_twice().build().is_ok());
    /// # }
    /// ```
    pub fn allow_same_server_twice(self) -> Builder {
        Builder {
            settings: self.settings.allow_same_server_twice(),
        }
    }

    /// Checks the settings, builds the client and spawns its driver task on
    /// the current tokio runtime. Nodes need not be reachable yet:
    /// connections are opened in the background and re-opened after
    /// failures.
    ///
    /// Errors: [`Error::Url`] (shown as given, password masked, with a
    /// hint), [`Error::DuplicateNode`], [`Error::Config`] (no nodes, too
    /// many, a TTL too short for its node timeout), [`Error::Io`] (not
    /// inside a tokio runtime, a bad CA PEM).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let client = redlock_tokio::Client::builder().node("redis://127.0.0.1:1").build().unwrap();
    /// assert_eq!(client.node_urls(), vec!["redis://127.0.0.1:1".to_string()]);
    /// # }
    /// ```
    pub fn build(self) -> Result<Client, Error> {
        let valid = self.settings.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::Io(io::Error::other(format!(
                "redlock_tokio::Client must be built inside a tokio runtime: {e}"
            )))
        })?;
        let config = valid.config;
        let core = Box::new(Core::new(config, &valid.nodes)?);
        // A CA given is checked even without `rediss://` nodes: a bad one is
        // a mistake to report, not to ignore.
        let tls = if valid.any_tls() || !valid.ca_pems.is_empty() {
            Some(crate::conn::tls_config(&valid.ca_pems).map_err(Error::Io)?)
        } else {
            None
        };
        let clock = Clock::new();
        let queue = Arc::new(Queue::default());
        let urls = valid.redacted_urls();
        let span =
            tracing::debug_span!("redlock_driver", nodes = urls.len(), quorum = core.quorum());
        let cells = Arc::<Cells>::default();
        let driver = Driver::spawn(
            core,
            clock,
            valid.urls,
            tls,
            Arc::clone(&queue),
            Arc::clone(&cells),
            runtime.clone(),
            span,
        );
        Ok(Client {
            inner: Arc::new(Inner {
                runtime,
                queue,
                driver,
                cells,
                clock,
                urls,
                config,
                next_req: AtomicU64::new(0),
            }),
        })
    }
}

pub(crate) struct Inner {
    /// The runtime the driver runs on; background work (auto-extension) is
    /// spawned there too, whichever thread asks for it.
    pub(crate) runtime: tokio::runtime::Handle,
    queue: Arc<Queue>,
    /// The driver's state: while few requests are in flight and nothing is
    /// queued, a command is run by its caller (see [`Driver::direct`]).
    pub(crate) driver: Shared,
    /// Where the driver answers commands (reused, see [`crate::reply`]).
    pub(crate) cells: Arc<Cells>,
    pub(crate) clock: Clock,
    pub(crate) urls: Vec<String>,
    config: Config,
    next_req: AtomicU64,
}

impl Inner {
    /// Hands `cmd` to the driver: runs it on this thread when few requests
    /// are in flight, nothing is queued ahead of it and the driver's state
    /// is free (see `Driver::runs_direct`), else queues it to the driver
    /// task (never blocking on the lock).
    fn send(&self, cmd: Command) -> Result<(), Error> {
        // Declared first, dropped last: wake-ups after the lock is free.
        let _defer = crate::reply::DeferWakes::new();
        if let Ok(mut d) = self.driver.try_lock() {
            if d.runs_direct() {
                let poke = d.direct(cmd);
                drop(d);
                if poke {
                    self.queue.poke();
                }
                return Ok(());
            }
        }
        self.queue.push(cmd)
    }
}

impl Drop for Inner {
    /// The last handle is gone: the driver finishes what is in flight, then
    /// stops.
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// The caller's result of an acquire or an extension.
async fn lease_answer(rx: &mut ReplyRx) -> Result<LeaseBox, Error> {
    match rx.await {
        Some(Answer::Lease(result)) => result,
        _ => Err(Error::stopped()),
    }
}

/// A Redlock client: a handle to one driver task that owns one pipelined
/// connection per node, shared by every lock taken through any clone.
///
/// Cheap to clone. The driver stops once every clone and every [`Lease`]
/// is dropped (after finishing the releases already asked for).
///
/// Every lock call takes the resources as anything [`IntoResources`]: one
/// name (`"jobs:42"`, `b"jobs:42"`, a `String`) or several (`["a", "b"]`,
/// a `Vec<String>`), locked all or nothing on each node.
///
/// ```no_run
/// # async fn f() -> Result<(), redlock_tokio::Error> {
/// use redlock_tokio::LockOptions;
/// let client = redlock_tokio::Client::builder()
///     .nodes(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])
///     .build()?;
/// let lease = client.lock("invoices").await?;
/// // ... work, while lease.remaining() > 0 ...
/// lease.release().await?;
/// let both = client.lock_with(["ledger", "invoices"], &LockOptions::new().fenced()).await?;
/// println!("fence {:?}", both.fence());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("nodes", &self.inner.urls)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// Cancels (or undoes) an acquire whose future is dropped before it ends.
struct AcquireGuard<'a> {
    inner: &'a Inner,
    req: u64,
    rx: Option<ReplyRx>,
}

impl AcquireGuard<'_> {
    async fn wait(&mut self) -> Result<LeaseBox, Error> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(Error::stopped());
        };
        let result = lease_answer(rx).await;
        self.rx = None;
        result
    }
}

impl Drop for AcquireGuard<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        // After close(), the driver can no longer deliver: either the result
        // is already here, or the driver will see the closed channel / the
        // Cancel below and undo whatever the acquire took.
        match rx.close() {
            Some(Answer::Lease(Ok(mut lease))) => {
                let _ = self.inner.send(Command::Release {
                    resources: self.inner.cells.sets.boxed_clone(lease.resources()),
                    token: *lease.token(),
                    reply: None,
                });
                self.inner.cells.leases.recycle(&mut lease);
            }
            Some(_) => {}
            None => {
                let _ = self.inner.send(Command::Cancel { req: self.req });
            }
        }
    }
}

impl Client {
    /// A [`Builder`].
    ///
    /// ```
    /// let b = redlock_tokio::Client::builder();
    /// # let _ = b;
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The nodes' URLs, passwords redacted, in node order.
    ///
    /// ```no_run
    /// # fn f(client: redlock_tokio::Client) {
    /// for url in client.node_urls() { println!("{url}"); }
    /// # }
    /// ```
    pub fn node_urls(&self) -> Vec<String> {
        self.inner.urls.clone()
    }

    /// The configuration in force.
    ///
    /// ```no_run
    /// # fn f(client: redlock_tokio::Client) {
    /// let ttl = client.config().ttl;
    /// # }
    /// ```
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Acquires `resources` (one name or several, [`IntoResources`]) with
    /// the client's TTL and retry policy.
    ///
    /// **Cancel-safe**: dropping the future before it completes (a
    /// `select!`, a timeout) cancels the acquire, and whatever part of the
    /// lock it had taken, on any node, is released.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let lease = client.lock("jobs:42").await?;
    /// lease.release().await?;
    /// let pair = client.lock(["accounts:1", "accounts:2"]).await?; // all or nothing
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self, resources: impl IntoResources) -> Result<Lease, Error> {
        self.lock_with(resources, &LockOptions::new()).await
    }

    /// One attempt, no retries: fails at once with [`Error::Busy`] if
    /// someone holds the lock.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) {
    /// match client.try_lock("jobs:42").await {
    ///     Ok(lease) => { let _ = lease.release().await; }
    ///     Err(redlock_tokio::Error::Busy(_)) => {}
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// # }
    /// ```
    pub async fn try_lock(&self, resources: impl IntoResources) -> Result<Lease, Error> {
        self.lock_with(resources, &LockOptions::new().single_attempt())
            .await
    }

    /// Acquires `resources` with per-call options: TTL, retry policy, how
    /// long to wait, fencing. Cancel-safe like [`lock`](Self::lock).
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// use std::time::Duration;
    /// use redlock_tokio::LockOptions;
    /// let opts = LockOptions::new().ttl(Duration::from_secs(10)).wait(Duration::from_secs(5)).fenced();
    /// let lease = client.lock_with("jobs:42", &opts).await?;
    /// assert!(lease.fence().is_some());
    /// # Ok(()) }
    /// ```
    pub async fn lock_with(
        &self,
        resources: impl IntoResources,
        options: &LockOptions,
    ) -> Result<Lease, Error> {
        let resources = self.inner.cells.sets.boxed_set(resources)?;
        let options = options.resolve(&self.inner.config, crate::unix_ms);
        let span = tracing::debug_span!("redlock_lock", resources = %Names(&resources),
            fenced = options.fencing != redlock_core::Fencing::Off, fence = tracing::field::Empty);
        let lease = self
            .acquire(resources, options)
            .instrument(span.clone())
            .await?;
        if let Some(fence) = lease.fence() {
            span.record("fence", fence);
        }
        Ok(lease)
    }

    async fn acquire(
        &self,
        resources: SetBox,
        options: redlock_core::AcquireOptions,
    ) -> Result<Lease, Error> {
        let rng = Prefilled::from_os().map_err(Error::Io)?;
        let (tx, rx) = reply::pair(&self.inner.cells);
        let req = self.inner.next_req.fetch_add(1, Ordering::Relaxed);
        self.inner.send(Command::Acquire {
            req,
            resources,
            options,
            rng,
            reply: tx,
        })?;
        let mut guard = AcquireGuard {
            inner: &self.inner,
            req,
            rx: Some(rx),
        };
        let lease = match guard.wait().await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::debug!(error = %e, "lock failed");
                return Err(e);
            }
        };
        tracing::debug!(
            validity_ms = lease.remaining(self.inner.clock.now()).as_millis() as u64,
            fence = lease.fence(),
            "lock acquired"
        );
        Ok(Lease::new(lease, self.clone()))
    }

    /// Extends the lock held on `resources` by `token` (compare-and-`PEXPIRE`
    /// of every key, all or nothing on each node), when only the token is
    /// known. [`Error::Lost`] if a quorum does not confirm in time; its
    /// [`Failure::kind`](crate::Failure::kind) is `NotHeld` or `Busy` when
    /// the nodes said this token does not hold it.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client, token: redlock_tokio::Token) -> Result<(), redlock_tokio::Error> {
    /// let lease = client.extend_token("jobs:42", &token, std::time::Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend_token(
        &self,
        resources: impl IntoResources,
        token: &Token,
        ttl: Duration,
    ) -> Result<CoreLease, Error> {
        let held = Held::Token {
            resources: self.inner.cells.sets.boxed_set(resources)?,
            token: *token,
        };
        let mut lease = self.extend_held(held, ttl).await?;
        let out = (*lease).clone();
        self.inner.cells.leases.recycle(&mut lease);
        Ok(out)
    }

    pub(crate) async fn extend_held(&self, held: Held, ttl: Duration) -> Result<LeaseBox, Error> {
        let (tx, mut rx) = reply::pair(&self.inner.cells);
        self.inner.send(Command::Extend {
            held,
            ttl,
            reply: tx,
        })?;
        lease_answer(&mut rx).await
    }

    /// Releases the lock held on `resources` by `token` (compare-and-delete:
    /// a key holding another token is never touched).
    ///
    /// `Ok` only when it was released on a quorum; [`Error::NotHeld`] when
    /// this token did not hold it (already gone: expired, taken, never
    /// ours); [`Error::Unavailable`] / [`Error::Auth`] when too few nodes
    /// answered to tell (they get the release when they reconnect; our key
    /// may remain there until its TTL).
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client, token: redlock_tokio::Token) -> Result<(), redlock_tokio::Error> {
    /// match client.release_token("jobs:42", &token).await {
    ///     Ok(report) => println!("released on {} nodes", report.released()),
    ///     Err(redlock_tokio::Error::NotHeld(_)) => println!("it was already gone"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn release_token(
        &self,
        resources: impl IntoResources,
        token: &Token,
    ) -> Result<ReleaseReport, Error> {
        let resources = self.inner.cells.sets.boxed_set(resources)?;
        self.release_set(resources, token).await
    }

    /// [`release_token`](Self::release_token) with the set already boxed.
    pub(crate) async fn release_set(
        &self,
        resources: SetBox,
        token: &Token,
    ) -> Result<ReleaseReport, Error> {
        let (tx, rx) = reply::pair(&self.inner.cells);
        self.inner.send(Command::Release {
            resources,
            token: *token,
            reply: Some(tx),
        })?;
        match rx.await {
            Some(Answer::Release(result)) => result,
            _ => Err(Error::stopped()),
        }
    }

    /// Waits until every operation already started has finished on every
    /// node it still concerns (replies after a decision, releases of dropped
    /// leases, undos owed to nodes that are down), at most `timeout`;
    /// returns whether it got there. Releases are decided at quorum and the
    /// other nodes get them a moment later: await this before a program
    /// exits so they are written and answered rather than cut off.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// client.lock("report").await?.release().await?;
    /// client.flush(std::time::Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self, timeout: Duration) -> Result<bool, Error> {
        let (tx, rx) = oneshot::channel();
        let now = tokio::time::Instant::now();
        // A timeout beyond any clock: a year is "forever" here.
        let until = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
        self.inner.send(Command::Flush { until, reply: tx })?;
        rx.await.map_err(|_| Error::stopped())
    }

    pub(crate) fn release_detached(&self, lease: &CoreLease) {
        let _ = self.inner.send(Command::Release {
            resources: self.inner.cells.sets.boxed_clone(lease.resources()),
            token: *lease.token(),
            reply: None,
        });
    }
}
