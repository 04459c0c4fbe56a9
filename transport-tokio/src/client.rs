//! The handles: [`Builder`], [`Client`] and [`Lease`].

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redlock_core::url::NodeUrl;
use redlock_core::{Config, ConfigError, Lease as CoreLease, ReleaseReport, RetryPolicy, Token};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::driver::{Clock, Command, Core, Driver};
use crate::error::Error;
use crate::rng::Prefilled;

type Configure = Box<dyn FnOnce(&mut Config) + Send>;

/// Configures a [`Client`]: nodes, TTL, timeouts, retries, TLS roots.
///
/// ```no_run
/// # async fn f() -> Result<(), redlock_tokio::Error> {
/// use std::time::Duration;
/// use redlock_tokio::Client;
///
/// let client = Client::builder()
///     .nodes(["redis://10.0.0.1", "redis://10.0.0.2", "redis://10.0.0.3"])?
///     .ttl(Duration::from_secs(10))
///     .build()?;
/// # Ok(()) }
/// ```
pub struct Builder {
    urls: Vec<NodeUrl>,
    ttl: Duration,
    node_timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    configure: Vec<Configure>,
    tls_ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("urls", &self.urls)
            .field("ttl", &self.ttl)
            .field("node_timeout", &self.node_timeout)
            .field("retry", &self.retry)
            .field("configure", &self.configure.len())
            .field("tls_ca_pem", &self.tls_ca_pem.is_some())
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A builder with [`Config::default`] (TTL 30 s) and no nodes.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new();
    /// # let _ = b;
    /// ```
    pub fn new() -> Builder {
        Builder {
            urls: Vec::new(),
            ttl: Config::default().ttl,
            node_timeout: None,
            retry: None,
            configure: Vec::new(),
            tls_ca_pem: None,
        }
    }

    /// Adds one node: `redis://[[user]:password@]host[:port][/db]`, or
    /// `rediss://` for TLS. IPv6 hosts go in brackets.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().node("redis://[::1]:6380/2").unwrap();
    /// assert!(redlock_tokio::Builder::new().node("http://x").is_err());
    /// # let _ = b;
    /// ```
    pub fn node(mut self, url: &str) -> Result<Builder, Error> {
        let parsed = NodeUrl::parse(url).map_err(|error| Error::Url {
            url: redlock_core::url::redact(url).to_string(),
            error,
        })?;
        self.urls.push(parsed);
        Ok(self)
    }

    /// Adds several nodes.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().nodes(["redis://a", "redis://b", "redis://c"]).unwrap();
    /// # let _ = b;
    /// ```
    pub fn nodes<I, S>(mut self, urls: I) -> Result<Builder, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for url in urls {
            self = self.node(url.as_ref())?;
        }
        Ok(self)
    }

    /// The lease TTL. Also re-derives the default node timeout (5 % of the
    /// TTL, 5 ms..=1 s) unless [`node_timeout`](Self::node_timeout) was set.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().ttl(std::time::Duration::from_secs(5));
    /// # let _ = b;
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Builder {
        self.ttl = ttl;
        self
    }

    /// How long one node may take to answer one request (and to connect).
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().node_timeout(std::time::Duration::from_millis(100));
    /// # let _ = b;
    /// ```
    pub fn node_timeout(mut self, d: Duration) -> Builder {
        self.node_timeout = Some(d);
        self
    }

    /// The retry policy of [`Client::lock`].
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().retry(redlock_tokio::RetryPolicy::none());
    /// # let _ = b;
    /// ```
    pub fn retry(mut self, retry: RetryPolicy) -> Builder {
        self.retry = Some(retry);
        self
    }

    /// Adjusts any other [`Config`] field (drift, reconnect backoff), after
    /// the TTL, node timeout and retry policy are applied.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().configure(|c| c.drift_ppm = 20_000);
    /// # let _ = b;
    /// ```
    pub fn configure(mut self, f: impl FnOnce(&mut Config) + Send + 'static) -> Builder {
        self.configure.push(Box::new(f));
        self
    }

    /// An extra trusted root certificate (PEM) for `rediss://` nodes, on top
    /// of the Mozilla roots.
    ///
    /// ```
    /// let b = redlock_tokio::Builder::new().tls_ca_pem(b"-----BEGIN CERTIFICATE-----...");
    /// # let _ = b;
    /// ```
    pub fn tls_ca_pem(mut self, pem: &[u8]) -> Builder {
        self.tls_ca_pem = Some(pem.to_vec());
        self
    }

    /// The configuration this builder would use.
    fn config(&mut self) -> Config {
        let mut config = Config::new(self.ttl);
        if let Some(d) = self.node_timeout {
            config.node_timeout = d;
        }
        if let Some(r) = self.retry {
            config.retry = r;
        }
        for f in self.configure.drain(..) {
            f(&mut config);
        }
        config
    }

    /// Builds the client and spawns its driver task on the current tokio
    /// runtime. Nodes need not be reachable yet: connections are opened in
    /// the background and re-opened after failures.
    ///
    /// Errors: [`Error::Config`] (no nodes, bad TTL/timeouts),
    /// [`Error::Io`] (not inside a tokio runtime, bad CA PEM).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let client = redlock_tokio::Client::builder().node("redis://127.0.0.1:1").unwrap().build().unwrap();
    /// assert_eq!(client.node_urls(), vec!["redis://127.0.0.1:1".to_string()]);
    /// # }
    /// ```
    pub fn build(mut self) -> Result<Client, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::Io(io::Error::other(format!(
                "redlock_tokio::Client must be built inside a tokio runtime: {e}"
            )))
        })?;
        if self.urls.is_empty() {
            return Err(Error::Config(ConfigError::NoNodes));
        }
        let config = self.config();
        let node_configs: Vec<_> = self.urls.iter().map(NodeUrl::node_config).collect();
        let core = Box::new(Core::new(config, &node_configs).map_err(Error::Config)?);
        let tls = if self.urls.iter().any(|u| u.tls) || self.tls_ca_pem.is_some() {
            Some(crate::conn::tls_config(self.tls_ca_pem.as_deref()).map_err(Error::Io)?)
        } else {
            None
        };
        let clock = Clock::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let urls: Vec<String> = self.urls.iter().map(|u| u.to_string()).collect();
        let span =
            tracing::debug_span!("redlock_driver", nodes = urls.len(), quorum = core.quorum());
        let driver = Driver::new(core, clock, self.urls, tls, rx);
        runtime.spawn(driver.run().instrument(span));
        Ok(Client {
            inner: Arc::new(Inner {
                runtime,
                tx,
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
    tx: mpsc::UnboundedSender<Command>,
    pub(crate) clock: Clock,
    pub(crate) urls: Vec<String>,
    config: Config,
    next_req: AtomicU64,
}

impl Inner {
    fn send(&self, cmd: Command) -> Result<(), Error> {
        self.tx.send(cmd).map_err(|_| Error::stopped())
    }
}

/// A Redlock client: a handle to one driver task that owns one pipelined
/// connection per node, shared by every lock taken through any clone.
///
/// Cheap to clone. The driver stops once every clone and every [`Lease`]
/// is dropped (after finishing the releases already asked for).
///
/// ```no_run
/// # async fn f() -> Result<(), redlock_tokio::Error> {
/// let client = redlock_tokio::Client::builder()
///     .nodes(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?
///     .build()?;
/// let lease = client.lock("invoices").await?;
/// // ... work, while lease.remaining() > 0 ...
/// lease.release().await?;
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
    rx: Option<oneshot::Receiver<Result<CoreLease, Error>>>,
}

impl AcquireGuard<'_> {
    async fn wait(&mut self) -> Result<CoreLease, Error> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(Error::stopped());
        };
        let result = rx.await;
        self.rx = None;
        result.map_err(|_| Error::stopped())?
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
        rx.close();
        match rx.try_recv() {
            Ok(Ok(lease)) => {
                let _ = self.inner.send(Command::Release {
                    resource: lease.resource().to_vec(),
                    token: *lease.token(),
                    reply: None,
                });
            }
            Ok(Err(_)) => {}
            Err(_) => {
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

    /// Acquires `resource` with the configured TTL and retry policy.
    ///
    /// **Cancel-safe**: dropping the future before it completes (a
    /// `select!`, a timeout) cancels the acquire, and whatever part of the
    /// lock it had taken, on any node, is released.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let lease = client.lock("jobs:42").await?;
    /// lease.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self, resource: impl AsRef<[u8]>) -> Result<Lease, Error> {
        self.acquire(resource.as_ref(), None, None).await
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
    pub async fn try_lock(&self, resource: impl AsRef<[u8]>) -> Result<Lease, Error> {
        self.acquire(resource.as_ref(), None, Some(RetryPolicy::none()))
            .await
    }

    /// Acquires with a given TTL and retry policy. Cancel-safe like
    /// [`lock`](Self::lock).
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// use std::time::Duration;
    /// use redlock_tokio::RetryPolicy;
    /// let retry = RetryPolicy { wait: Some(Duration::from_secs(5)), ..RetryPolicy::default() };
    /// let lease = client.lock_with("jobs:42", Duration::from_secs(2), retry).await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_with(
        &self,
        resource: impl AsRef<[u8]>,
        ttl: Duration,
        retry: RetryPolicy,
    ) -> Result<Lease, Error> {
        self.acquire(resource.as_ref(), Some(ttl), Some(retry))
            .await
    }

    async fn acquire(
        &self,
        resource: &[u8],
        ttl: Option<Duration>,
        retry: Option<RetryPolicy>,
    ) -> Result<Lease, Error> {
        let span =
            tracing::debug_span!("redlock_lock", resource = %String::from_utf8_lossy(resource));
        self.acquire_inner(resource, ttl, retry)
            .instrument(span)
            .await
    }

    async fn acquire_inner(
        &self,
        resource: &[u8],
        ttl: Option<Duration>,
        retry: Option<RetryPolicy>,
    ) -> Result<Lease, Error> {
        let rng = Box::new(Prefilled::from_os().map_err(Error::Io)?);
        let (tx, rx) = oneshot::channel();
        let req = self.inner.next_req.fetch_add(1, Ordering::Relaxed);
        self.inner.send(Command::Acquire {
            req,
            resource: resource.to_vec(),
            ttl,
            retry,
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
            token = ?lease.token(),
            validity_ms = lease.remaining(self.inner.clock.now()).as_millis() as u64,
            "lock acquired"
        );
        Ok(Lease {
            lease,
            client: self.clone(),
            armed: true,
        })
    }

    /// Extends the lock held on `resource` by `token` (compare-and-`PEXPIRE`
    /// on every node), when only the token is known. [`Error::Lost`] if a
    /// quorum does not confirm in time.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client, token: redlock_tokio::Token) -> Result<(), redlock_tokio::Error> {
    /// let lease = client.extend_token("jobs:42", &token, std::time::Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend_token(
        &self,
        resource: impl AsRef<[u8]>,
        token: &Token,
        ttl: Duration,
    ) -> Result<CoreLease, Error> {
        self.extend_raw(resource.as_ref(), token, None, ttl).await
    }

    pub(crate) async fn extend_raw(
        &self,
        resource: &[u8],
        token: &Token,
        lease: Option<CoreLease>,
        ttl: Duration,
    ) -> Result<CoreLease, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner.send(Command::Extend {
            resource: resource.to_vec(),
            token: *token,
            lease: lease.map(Box::new),
            ttl,
            reply: tx,
        })?;
        rx.await.map_err(|_| Error::stopped())?
    }

    /// Releases the lock held on `resource` by `token` (compare-and-delete:
    /// a key holding another token is never touched).
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client, token: redlock_tokio::Token) -> Result<(), redlock_tokio::Error> {
    /// let report = client.release_token("jobs:42", &token).await?;
    /// println!("released on {} nodes", report.released());
    /// # Ok(()) }
    /// ```
    pub async fn release_token(
        &self,
        resource: impl AsRef<[u8]>,
        token: &Token,
    ) -> Result<ReleaseReport, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner.send(Command::Release {
            resource: resource.as_ref().to_vec(),
            token: *token,
            reply: Some(tx),
        })?;
        rx.await.map_err(|_| Error::stopped())?
    }

    pub(crate) fn release_detached(&self, lease: &CoreLease) {
        let _ = self.inner.send(Command::Release {
            resource: lease.resource().to_vec(),
            token: *lease.token(),
            reply: None,
        });
    }
}

/// A held lock. Valid until [`remaining`](Self::remaining) reaches zero.
///
/// Dropping a lease releases it in the background (best effort); call
/// [`release`](Self::release) to know the outcome, or
/// [`forget`](Self::forget) to leave it held until its TTL.
pub struct Lease {
    lease: CoreLease,
    client: Client,
    armed: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("lease", &self.lease)
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl Lease {
    /// The resource (the Redis key).
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { assert!(!lease.resource().is_empty()); }
    /// ```
    pub fn resource(&self) -> &[u8] {
        self.lease.resource()
    }

    /// The token stored under the key.
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { let t = lease.token().as_str(); }
    /// ```
    pub fn token(&self) -> &Token {
        self.lease.token()
    }

    /// Validity left (zero once expired).
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { assert!(lease.remaining() > std::time::Duration::ZERO); }
    /// ```
    pub fn remaining(&self) -> Duration {
        self.lease.remaining(self.client.inner.clock.now())
    }

    /// Whether the lease is still valid.
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { assert!(lease.is_valid()); }
    /// ```
    pub fn is_valid(&self) -> bool {
        self.lease.is_valid(self.client.inner.clock.now())
    }

    /// The core's view of the lease (deadline, start, TTL on the client's clock).
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { let ttl = lease.core().ttl(); }
    /// ```
    pub fn core(&self) -> &CoreLease {
        &self.lease
    }

    /// Extends the lease to `ttl` from now. On failure the lock must be
    /// treated as lost ([`Error::Lost`]).
    ///
    /// ```no_run
    /// # async fn f(mut lease: redlock_tokio::Lease) -> Result<(), redlock_tokio::Error> {
    /// lease.extend(std::time::Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        let new = self
            .client
            .extend_raw(
                self.lease.resource(),
                self.lease.token(),
                Some(self.lease.clone()),
                ttl,
            )
            .await?;
        self.lease = new;
        Ok(())
    }

    /// Releases the lock on every node and reports where our token still
    /// held the key.
    ///
    /// ```no_run
    /// # async fn f(lease: redlock_tokio::Lease) -> Result<(), redlock_tokio::Error> {
    /// let report = lease.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<ReleaseReport, Error> {
        self.armed = false;
        self.client
            .release_token(self.lease.resource(), self.lease.token())
            .await
    }

    /// Leaves the lock held until its TTL runs out, and returns its data.
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { let raw = lease.forget(); println!("{}", raw.token().as_str()); }
    /// ```
    pub fn forget(mut self) -> CoreLease {
        self.armed = false;
        self.lease.clone()
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed {
            self.client.release_detached(&self.lease);
        }
    }
}
