//! The handles: [`Builder`], [`Client`] and [`Cancel`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redlock_core::settings::{ClientSettings, IntoResources, LockOptions};
use redlock_core::{
    Config, FailureKind, Lease as CoreLease, ReleaseReport, ReleaseVerdict, RetryPolicy, Token,
};

use crate::driver::{self, Command, DriverHandle, Held, Outcome};
use crate::keep::{KeptLease, LossSignal};
use crate::lease::Lease;
use crate::spare::{LeaseBox, SetBox, Spares};
use crate::{rng, tls, Error};

/// Configures a [`Client`]: nodes, TTL, timeouts, retries, TLS roots.
///
/// Every setter is infallible; [`build`](Self::build) checks everything at
/// once (each URL, no server given twice, the timing rules) and says what is
/// wrong, showing a bad URL as given but without its password.
///
/// ```
/// use std::time::Duration;
/// let builder = redlock_std::Client::builder()
///     .nodes(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"])
///     .ttl(Duration::from_secs(10))
///     .node_timeout(Duration::from_millis(100));
/// # let _ = builder;
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
    /// let b = redlock_std::Builder::new();
    /// assert!(b.build().is_err()); // no nodes
    /// ```
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Adds a node: `redis://[[user]:password@]host[:port][/db]`, or
    /// `rediss://` for TLS. IPv6 hosts go in brackets.
    ///
    /// ```
    /// let b = redlock_std::Builder::new().node("redis://[::1]:6380/2");
    /// assert!(redlock_std::Builder::new().node("redis://h:99999").build().is_err());
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
    /// let b = redlock_std::Builder::new().nodes(["redis://a:6379", "redis://b:6379"]);
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
    /// let b = redlock_std::Builder::new().ttl(std::time::Duration::from_secs(2));
    /// # let _ = b;
    /// ```
    pub fn ttl(self, ttl: Duration) -> Builder {
        Builder {
            settings: self.settings.ttl(ttl),
        }
    }

    /// How long one node may take to answer one request (also the connect
    /// timeout).
    ///
    /// ```
    /// let b = redlock_std::Builder::new().node_timeout(std::time::Duration::from_millis(50));
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
    /// let b = redlock_std::Builder::new().retry(redlock_std::RetryPolicy::none());
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
    /// let b = redlock_std::Builder::new().configure(|c| c.drift_ppm = 20_000);
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
    /// let b = redlock_std::Builder::new().tls_ca_pem(b"-----BEGIN CERTIFICATE-----...");
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
    /// let twice = ["redis://127.0.0.1/0", "redis://127.0.0.1/1"];
    /// assert!(matches!(
    ///     redlock_std::Client::builder().nodes(twice).build(),
    ///     Err(redlock_std::Error::DuplicateNode { .. })
    /// ));
    /// let b = redlock_std::Client::builder().nodes(twice).allow_same_server_twice();
    /// # let _ = b;
    /// ```
    pub fn allow_same_server_twice(self) -> Builder {
        Builder {
            settings: self.settings.allow_same_server_twice(),
        }
    }

    /// Checks the settings and starts the client's driver thread. Nodes
    /// need not be reachable yet: connections are opened (and reopened) in
    /// the background.
    ///
    /// Errors: [`Error::Url`] (shown as given, password masked, with a
    /// hint), [`Error::DuplicateNode`], [`Error::Config`] (no nodes, too
    /// many, a TTL too short for its node timeout), [`Error::Io`] (a bad CA
    /// PEM, no thread).
    ///
    /// ```
    /// let client = redlock_std::Builder::new().node("redis://127.0.0.1:1").build()?;
    /// assert_eq!(client.node_urls(), ["redis://127.0.0.1:1"]);
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn build(self) -> Result<Client, Error> {
        let valid = self.settings.validate()?;
        let core = driver::Core::new(valid.config, &valid.nodes)?;
        // A CA given is checked even without `rediss://` nodes: a bad one
        // is a mistake to report, not to ignore.
        let tls = if valid.any_tls() || !valid.ca_pems.is_empty() {
            Some(tls::client_config(&valid.ca_pems)?)
        } else {
            None
        };
        let urls = valid.redacted_urls();
        let config = valid.config;
        let driver = DriverHandle::spawn(core, valid.urls, tls)?;
        Ok(Client {
            inner: Arc::new(Inner {
                driver,
                urls,
                config,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    driver: DriverHandle,
    urls: Vec<String>,
    config: Config,
}

/// Cancels blocking acquires started with [`Client::lock_cancellable`];
/// cheap to clone and to send to another thread.
///
/// ```no_run
/// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
/// let cancel = client.cancel_handle();
/// let c = cancel.clone();
/// std::thread::spawn(move || c.cancel());
/// # Ok::<(), redlock_std::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    client: Client,
}

impl Cancel {
    /// Cancels the acquire(s) using this handle; effective at once.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let cancel = client.cancel_handle();
    /// cancel.cancel();
    /// assert!(cancel.is_cancelled());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.client.inner.driver.submit_detached(Command::Cancel);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// assert!(!client.cancel_handle().is_cancelled());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// A blocking Redlock client. Cheap to clone; clones share one driver
/// thread and one connection per node. The driver stops when the last clone
/// (and the last [`Lease`] or [`KeptLease`], which hold one) is dropped,
/// once the operations in flight have finished (in the background: the
/// drop does not wait).
///
/// Every lock call takes the resources as anything [`IntoResources`]: one
/// name (`"jobs:42"`, `b"jobs:42"`, a `String`) or several (`["a", "b"]`,
/// a `Vec<String>`), locked all or nothing on each node.
///
/// ```no_run
/// use std::time::Duration;
/// use redlock_std::{Client, LockOptions};
///
/// let client = Client::builder()
///     .nodes(["redis://10.0.0.1", "redis://10.0.0.2", "redis://10.0.0.3"])
///     .build()?;
/// let lease = client.lock("invoices")?;
/// lease.release()?;
/// let both = client.lock_with(["ledger", "invoices"], &LockOptions::new().fenced())?;
/// println!("fence {:?}", both.fence());
/// # Ok::<(), redlock_std::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A [`Builder`].
    ///
    /// ```
    /// let b = redlock_std::Client::builder();
    /// # let _ = b;
    /// ```
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The configuration in use.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// assert_eq!(client.config().ttl, std::time::Duration::from_secs(30));
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The nodes' URLs, passwords redacted, in node order.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://:pw@127.0.0.1").build()?;
    /// assert_eq!(client.node_urls(), ["redis://:***@127.0.0.1:6379"]);
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn node_urls(&self) -> Vec<String> {
        self.inner.urls.clone()
    }

    /// Acquires `resources` with the client's TTL and retry policy.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let lease = client.lock("jobs:42")?;
    /// let pair = client.lock(["accounts:1", "accounts:2"])?; // all or nothing
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn lock(&self, resources: impl IntoResources) -> Result<Lease, Error> {
        self.lock_with(resources, &LockOptions::new())
    }

    /// One attempt, no retries: [`Error::Busy`] at once if someone holds
    /// the lock.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// match client.try_lock("jobs:42") {
    ///     Ok(lease) => { /* ... */ }
    ///     Err(redlock_std::Error::Busy(_)) => { /* someone else has it */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn try_lock(&self, resources: impl IntoResources) -> Result<Lease, Error> {
        self.lock_with(resources, &LockOptions::new().single_attempt())
    }

    /// Acquires `resources` with per-call options: TTL, retry policy, how
    /// long to wait, fencing.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// use std::time::Duration;
    /// use redlock_std::LockOptions;
    /// let opts = LockOptions::new().ttl(Duration::from_secs(10)).wait(Duration::from_secs(5)).fenced();
    /// let lease = client.lock_with("jobs:42", &opts)?;
    /// assert!(lease.fence().is_some());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn lock_with(
        &self,
        resources: impl IntoResources,
        options: &LockOptions,
    ) -> Result<Lease, Error> {
        self.acquire(resources, options, None)
    }

    /// Like [`lock_with`](Self::lock_with), but `cancel` (triggered from
    /// another thread, e.g. one handling signals) stops it: whatever part of
    /// the lock was taken is released at once and [`Error::Cancelled`] is
    /// returned, even if the lock had just been won.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let cancel = client.cancel_handle();
    /// let c = cancel.clone();
    /// std::thread::spawn(move || { std::thread::sleep(Duration::from_secs(1)); c.cancel(); });
    /// let patient = redlock_std::LockOptions::new().wait(Duration::from_secs(60));
    /// match client.lock_cancellable("jobs:42", &patient, &cancel) {
    ///     Err(redlock_std::Error::Cancelled) => { /* gave up cleanly */ }
    ///     other => { let _ = other?; }
    /// }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn lock_cancellable(
        &self,
        resources: impl IntoResources,
        options: &LockOptions,
        cancel: &Cancel,
    ) -> Result<Lease, Error> {
        self.acquire(resources, options, Some(cancel))
    }

    /// A handle that cancels acquires started with
    /// [`lock_cancellable`](Self::lock_cancellable).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let cancel = client.cancel_handle();
    /// assert!(!cancel.is_cancelled());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn cancel_handle(&self) -> Cancel {
        Cancel {
            flag: Arc::new(AtomicBool::new(false)),
            client: self.clone(),
        }
    }

    fn acquire(
        &self,
        resources: impl IntoResources,
        options: &LockOptions,
        cancel: Option<&Cancel>,
    ) -> Result<Lease, Error> {
        let resources = self.sets().boxed_set(resources)?;
        let options = options.resolve(&self.inner.config, crate::unix_ms);
        let rng = rng::OsBytes::fetch()?;
        let cmd = Command::Acquire {
            resources,
            options,
            rng,
            cancel: cancel.map(|c| c.flag.clone()),
        };
        match self.inner.driver.submit(cmd)? {
            Outcome::Acquired(lease) => {
                tracing::debug!(resources = %crate::Names(lease.resources()), fence = lease.fence(),
                    "lock acquired");
                let lease = Lease::new(self.clone(), lease);
                if cancel.is_some_and(Cancel::is_cancelled) {
                    // Won just as it was cancelled: give it back at once.
                    let _ = lease.release();
                    return Err(Error::Cancelled);
                }
                Ok(lease)
            }
            Outcome::Failed(f) => Err(Error::from_acquire(f)),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `f` while holding `resources`, extending the lock in the
    /// background; releases it when `f` returns (or panics).
    ///
    /// If the lock was lost while `f` ran (an extension failed, or the
    /// validity ran out first), the result of `f` is dropped and
    /// [`Error::Lost`] returned: `f` was not protected to the end. So is it
    /// when the release finds that our token no longer held the lock on a
    /// quorum ([`Error::NotHeld`]). `f` can watch for a loss itself with
    /// [`LossSignal::is_lost`] / [`LossSignal::wait_timeout`] and stop
    /// early. A release that merely could not reach the nodes does not
    /// unmake the critical section: `Ok`.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let n = client.with_lock("counter", |signal| {
    ///     // ... work, checking signal.is_lost() now and then ...
    ///     1 + 1
    /// })?;
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn with_lock<T>(
        &self,
        resources: impl IntoResources,
        f: impl FnOnce(&LossSignal) -> T,
    ) -> Result<T, Error> {
        self.with_lock_with(resources, &LockOptions::new(), f)
    }

    /// [`with_lock`](Self::with_lock) with per-call options (TTL, which the
    /// extensions use too; retry; wait; fencing).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// use std::time::Duration;
    /// use redlock_std::LockOptions;
    /// let opts = LockOptions::new().ttl(Duration::from_secs(5)).fenced();
    /// client.with_lock_with("ledger", &opts, |signal| {
    ///     let fence = signal.fence().expect("fenced");
    ///     // ... write to the store with `fence`; it refuses older fences ...
    /// })?;
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn with_lock_with<T>(
        &self,
        resources: impl IntoResources,
        options: &LockOptions,
        f: impl FnOnce(&LossSignal) -> T,
    ) -> Result<T, Error> {
        let kept = self.lock_and_keep_with(resources, options)?;
        let signal = kept.loss_signal();
        let out = f(&signal);
        let lost = signal.lost_error();
        let released = kept.release();
        if let Some(e) = lost {
            return Err(e);
        }
        match released {
            Ok(_) => Ok(out),
            Err(e @ Error::NotHeld(_)) => Err(e),
            Err(e) => {
                // A release that fails does not unmake the critical section.
                tracing::debug!("release after with_lock: {e}");
                Ok(out)
            }
        }
    }

    /// Acquires `resources` (as [`lock`](Self::lock)) and keeps the lease
    /// extended in the background until the [`KeptLease`] is released or
    /// dropped.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("nightly-report")?;
    /// // ... long work, checking kept.is_lost() ...
    /// kept.release()?;
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn lock_and_keep(&self, resources: impl IntoResources) -> Result<KeptLease, Error> {
        self.lock_and_keep_with(resources, &LockOptions::new())
    }

    /// [`lock_and_keep`](Self::lock_and_keep) with per-call options.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let opts = redlock_std::LockOptions::new().ttl(std::time::Duration::from_secs(5));
    /// let kept = client.lock_and_keep_with(["a", "b"], &opts)?;
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn lock_and_keep_with(
        &self,
        resources: impl IntoResources,
        options: &LockOptions,
    ) -> Result<KeptLease, Error> {
        Ok(self.keep(self.lock_with(resources, options)?))
    }

    /// Keeps `lease` alive in a background thread (same TTL, renewed a
    /// third into each validity window) until the [`KeptLease`] is released
    /// or dropped.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.keep(client.lock("jobs:42")?);
    /// // ... long work ...
    /// if kept.is_lost() { /* stop: someone else may hold it */ }
    /// kept.release()?;
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn keep(&self, lease: Lease) -> KeptLease {
        KeptLease::start(lease)
    }

    /// Extends the lock on `resources` held by `token` to `ttl` from now
    /// (when only the token is known, e.g. from a command line): all or
    /// nothing on each node. [`Error::Lost`] when a quorum does not confirm
    /// in time; its [`Failure::kind`](crate::Failure::kind) is `NotHeld` or
    /// `Busy` when the nodes said this token does not hold it.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let token = redlock_std::Token::from_bytes(b"0123abcd").unwrap();
    /// let lease = client.extend_token("jobs:42", &token, Duration::from_secs(30))?;
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn extend_token(
        &self,
        resources: impl IntoResources,
        token: &Token,
        ttl: Duration,
    ) -> Result<CoreLease, Error> {
        let held = Held::Token {
            resources: self.sets().boxed_set(resources)?,
            token: *token,
        };
        let mut lease = self.extend_held(held, ttl)?;
        let out = (*lease).clone();
        self.leases().recycle(&mut lease);
        Ok(out)
    }

    /// The client's spare lease boxes (see [`crate::spare`]).
    pub(crate) fn leases(&self) -> &Spares<CoreLease> {
        self.inner.driver.leases()
    }

    /// The client's spare resource-set boxes.
    pub(crate) fn sets(&self) -> &Spares<redlock_core::ResourceSet> {
        self.inner.driver.sets()
    }

    pub(crate) fn extend_held(&self, held: Held, ttl: Duration) -> Result<LeaseBox, Error> {
        match self.inner.driver.submit(Command::Extend { held, ttl })? {
            Outcome::Extended(lease) => Ok(lease),
            Outcome::Failed(f) => Err(Error::Lost(f)),
            other => Err(unexpected(other)),
        }
    }

    /// Releases the lock on `resources` held by `token` (compare-and-delete:
    /// a key holding another token is never deleted).
    ///
    /// `Ok` only when it was released on a quorum; [`Error::NotHeld`] when
    /// this token did not hold it (already gone: expired, taken, never
    /// ours); [`Error::Unavailable`] / [`Error::Auth`] when too few nodes
    /// answered to tell (they get the release when they reconnect; our key
    /// may remain there until its TTL).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let token = redlock_std::Token::from_bytes(b"0123abcd").unwrap();
    /// match client.release_token("jobs:42", &token) {
    ///     Ok(report) => println!("released on {} nodes", report.released()),
    ///     Err(redlock_std::Error::NotHeld(_)) => println!("it was already gone"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn release_token(
        &self,
        resources: impl IntoResources,
        token: &Token,
    ) -> Result<ReleaseReport, Error> {
        let resources = self.sets().boxed_set(resources)?;
        self.release_set(resources, token)
    }

    /// [`release_token`](Self::release_token) with the set already boxed.
    pub(crate) fn release_set(
        &self,
        resources: SetBox,
        token: &Token,
    ) -> Result<ReleaseReport, Error> {
        let cmd = Command::Release {
            resources,
            token: *token,
        };
        match self.inner.driver.submit(cmd)? {
            Outcome::Released(report, failure) => self.release_result(report, failure),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until every operation already started has finished on every
    /// node it still concerns (replies after a decision, releases of dropped
    /// leases, undos owed to nodes that are down), at most `timeout`; returns
    /// whether it got there. Releases are decided at quorum and the other
    /// nodes get them a moment later: call this before a process exits (as
    /// the `redlock` command does) so they are written and answered rather
    /// than cut off.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1:6379").build()?;
    /// client.lock("report")?.release()?;
    /// client.flush(std::time::Duration::from_secs(1))?;
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn flush(&self, timeout: Duration) -> Result<bool, Error> {
        self.inner.driver.flush(timeout)
    }

    pub(crate) fn now(&self) -> redlock_core::Instant {
        self.inner.driver.now()
    }

    pub(crate) fn to_std(&self, t: redlock_core::Instant) -> std::time::Instant {
        self.inner.driver.to_std(t)
    }

    /// Submits `cmd` without waiting for its outcome.
    #[cfg(feature = "__test-hooks")]
    pub(crate) fn submit_detached(&self, cmd: Command) {
        self.inner.driver.submit_detached(cmd);
    }

    pub(crate) fn release_detached(&self, lease: &CoreLease) {
        self.inner.driver.submit_detached(Command::Release {
            resources: self.sets().boxed_clone(lease.resources()),
            token: *lease.token(),
        });
    }
}

impl Client {
    /// A release's result: `Ok` only when released on a quorum.
    fn release_result(
        &self,
        report: ReleaseReport,
        failure: Option<crate::Failure>,
    ) -> Result<ReleaseReport, Error> {
        let verdict = report.verdict();
        let unknown = |kind| {
            failure.unwrap_or_else(|| {
                let mut f = crate::Failure::local(kind, &self.inner.urls);
                f.error.nodes = report.nodes;
                f
            })
        };
        match verdict {
            ReleaseVerdict::Released => Ok(report),
            ReleaseVerdict::NotHeld => Err(Error::NotHeld(report)),
            ReleaseVerdict::AuthFailed => Err(Error::Auth(unknown(FailureKind::AuthFailed))),
            _ => Err(Error::Unavailable(unknown(FailureKind::Unavailable))),
        }
    }
}

fn unexpected(outcome: Outcome) -> Error {
    match outcome {
        Outcome::Refused(e) => Error::Command(e),
        other => Error::Io(std::io::Error::other(format!(
            "unexpected driver outcome: {other:?}"
        ))),
    }
}
