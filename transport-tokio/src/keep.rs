//! Auto-extension: a background task renews a lease at
//! [`renew_at`](redlock_core::Lease::renew_at) (a third into its validity)
//! with the same TTL, for as long as the work runs ([`KeptLease`]), and the
//! loss signal the work watches ([`LossSignal`]).
//!
//! **When a loss is signalled.** An extension that fails is retried after
//! a short pause (half the node timeout, 5..=100 ms) for as long as another
//! attempt could still complete before the lease's deadline: one failed
//! round trip (a node pause) does not cost a lock that has two thirds of
//! its validity left. The lock is declared lost, and
//! [`LossSignal::lost`] / the [`CancellationToken`] fire at once, when
//! * the nodes say our token is gone from too many of them (at most a node
//!   timeout after the extension was sent), or
//! * no further attempt could finish before the deadline (about a node
//!   timeout before it), or the driver stopped;
//! * and whatever the task managed to do (it may be starved, e.g. by
//!   blocking work on a current-thread runtime), [`LossSignal::is_lost`]
//!   reads the clock: it is true from the lease's deadline on, and
//!   [`LossSignal::lost`] completes then.

use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redlock_core::settings::{IntoResources, LockOptions};
use redlock_core::{
    CommandError, FailureKind, Lease as CoreLease, ReleaseReport, ResourceSet, Token,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Instrument};

use crate::client::Client;
use crate::driver::{Clock, Names};
use crate::error::{Error, Failure};
use crate::lease::Lease;

struct State {
    clock: Clock,
    /// The nodes' redacted URLs, for a loss decided locally.
    urls: Vec<String>,
    lease: Mutex<CoreLease>,
    /// Cancelled when the lock is lost.
    lost: CancellationToken,
    /// Cancelled when the keeping stops (released or dropped).
    stop: CancellationToken,
    error: Mutex<Option<LostCause>>,
}

#[derive(Clone, Debug)]
enum LostCause {
    /// The nodes refused, or no extension could be made in time.
    Failed(Failure),
    /// The driver has stopped: nothing can be extended any more.
    Stopped,
}

impl State {
    /// The deadline of the current lease has passed.
    fn expired(&self) -> bool {
        !lock(&self.lease).is_valid(self.clock.now())
    }

    fn expired_failure(&self) -> Failure {
        Failure::local(FailureKind::Expired, &self.urls)
    }

    /// Lost: the task said so, or the deadline passed while still kept.
    fn is_lost(&self) -> bool {
        self.lost.is_cancelled() || (!self.stop.is_cancelled() && self.expired())
    }
}

/// The pause between two attempts of one extension.
fn retry_pause(node_timeout: Duration) -> Duration {
    (node_timeout / 2).clamp(Duration::from_millis(5), Duration::from_millis(100))
}

/// Whether an extension that failed with `e` is worth retrying (given time).
fn retryable(e: &Error) -> bool {
    match e {
        // A blocking set of nodes answered that our token is not there
        // (held by another, or our keys gone): no retry can bring it back.
        Error::Lost(f) => !matches!(f.kind(), FailureKind::Busy | FailureKind::NotHeld),
        // Timeouts, unreachable nodes, no operation slot in time.
        Error::Unavailable(_) | Error::Auth(_) | Error::Io(_) => true,
        Error::Command(CommandError::TooManyOperations) => true,
        _ => false,
    }
}

/// Watches a [`KeptLease`]: whether the lock is still held, why it was
/// lost, and ways to await the loss. Cheap to clone and `Send`, for the
/// tasks doing the protected work; [`KeptLease::loss_signal`] gives one,
/// and a `KeptLease` derefs to its own, so every method here works on it.
///
/// Once the [`KeptLease`] is released or dropped (without a loss), the
/// signal never fires: [`is_lost`](Self::is_lost) stays false and
/// [`lost`](Self::lost) returns `false`.
///
/// ```no_run
/// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
/// client.with_lock("reports", |signal| async move {
///     tokio::select! {
///         _ = signal.lost() => eprintln!("lock lost: stopping"),
///         _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
///     }
/// }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LossSignal {
    state: Arc<State>,
}

impl std::fmt::Debug for LossSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LossSignal")
            .field("lost", &self.is_lost())
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl LossSignal {
    /// Whether the lock has been lost (the extension task gave up, or the
    /// lease's deadline passed before an extension succeeded). Reads the
    /// clock itself: true once the deadline has passed even if the
    /// extension task could not run.
    ///
    /// ```no_run
    /// # fn f(s: redlock_tokio::LossSignal) { if s.is_lost() { return; } }
    /// ```
    pub fn is_lost(&self) -> bool {
        self.state.is_lost()
    }

    /// Completes with `true` when the lock is lost (the extension task
    /// gives up, or the lease's deadline comes), or with `false` when the
    /// keeping stops first (the [`KeptLease`] released or dropped).
    ///
    /// ```no_run
    /// # async fn f(s: redlock_tokio::LossSignal) { if s.lost().await { eprintln!("lost"); } }
    /// ```
    pub async fn lost(&self) -> bool {
        loop {
            if self.is_lost() {
                return true;
            }
            if self.state.stop.is_cancelled() {
                return false;
            }
            let deadline = self.state.clock.at(lock(&self.state.lease).deadline());
            tokio::select! {
                _ = self.state.lost.cancelled() => return true,
                _ = self.state.stop.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// A token cancelled as soon as the extension task sees the lock lost,
    /// to hand to code that already understands cancellation (it is not
    /// cancelled by a release). A task starved of the runtime cannot cancel
    /// it in time: code that may block the runtime should check
    /// [`is_lost`](Self::is_lost), which reads the clock.
    ///
    /// ```no_run
    /// # fn f(s: redlock_tokio::LossSignal) { let token = s.cancellation_token(); }
    /// ```
    pub fn cancellation_token(&self) -> CancellationToken {
        self.state.lost.clone()
    }

    /// Why the lock was lost, once it was: [`Error::Lost`] (the nodes'
    /// answers, or "no validity left" when the deadline passed first), or
    /// [`Error::DriverStopped`].
    ///
    /// ```no_run
    /// # fn f(s: redlock_tokio::LossSignal) { if let Some(e) = s.lost_error() { eprintln!("{e}"); } }
    /// ```
    pub fn lost_error(&self) -> Option<Error> {
        match lock(&self.state.error).clone() {
            Some(LostCause::Failed(f)) => Some(Error::Lost(f)),
            Some(LostCause::Stopped) => Some(Error::DriverStopped),
            None if self.state.is_lost() => Some(Error::Lost(self.state.expired_failure())),
            None => None,
        }
    }

    /// Validity left on the current lease (zero once lost, expired or
    /// released).
    ///
    /// ```no_run
    /// # fn f(s: redlock_tokio::LossSignal) { let left = s.remaining(); }
    /// ```
    pub fn remaining(&self) -> Duration {
        if self.is_lost() || self.state.stop.is_cancelled() {
            return Duration::ZERO;
        }
        lock(&self.state.lease).remaining(self.state.clock.now())
    }

    /// When the current lease's validity ends (it moves on with every
    /// extension), on the monotonic clock.
    ///
    /// ```no_run
    /// # fn f(s: redlock_tokio::LossSignal) { let until = s.until(); }
    /// ```
    pub fn until(&self) -> std::time::Instant {
        self.state
            .clock
            .monotonic(lock(&self.state.lease).deadline())
    }

    /// The current lease (after the latest extension).
    ///
    /// ```no_run
    /// # fn f(s: redlock_tokio::LossSignal) { let deadline = s.lease().deadline(); }
    /// ```
    pub fn lease(&self) -> CoreLease {
        lock(&self.state.lease).clone()
    }

    /// The lease's fence, when fenced (extensions keep it).
    ///
    /// ```no_run
    /// # fn f(s: redlock_tokio::LossSignal) { if let Some(fence) = s.fence() { println!("{fence}"); } }
    /// ```
    pub fn fence(&self) -> Option<u64> {
        lock(&self.state.lease).fence()
    }

    /// The lease's token.
    ///
    /// ```no_run
    /// # fn f(s: redlock_tokio::LossSignal) { println!("{}", s.token().as_bytes().len()); }
    /// ```
    pub fn token(&self) -> Token {
        *lock(&self.state.lease).token()
    }

    /// The locked resources (sorted, without duplicates).
    ///
    /// ```no_run
    /// # fn f(s: redlock_tokio::LossSignal) { let first = s.resources().first().to_vec(); }
    /// ```
    pub fn resources(&self) -> ResourceSet {
        lock(&self.state.lease).resources().clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An auto-extended lock, from [`Client::lock_and_keep`] or
/// [`Client::keep`]. Derefs to its [`LossSignal`] (`is_lost`, `lost`,
/// `fence`...). Dropping it stops the extensions and releases the lock in
/// the background; [`release`](Self::release) does it now and reports.
///
/// ```no_run
/// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
/// let kept = client.lock_and_keep("nightly-report").await?;
/// let token = kept.cancellation_token(); // cancelled if the lock is lost
/// // ... long work that watches `token` ...
/// kept.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct KeptLease {
    signal: LossSignal,
    task: Option<JoinHandle<Result<ReleaseReport, Error>>>,
}

impl Deref for KeptLease {
    type Target = LossSignal;
    fn deref(&self) -> &LossSignal {
        &self.signal
    }
}

impl KeptLease {
    /// A clonable [`LossSignal`] for the work.
    ///
    /// ```no_run
    /// # fn f(kept: redlock_tokio::KeptLease) { let signal = kept.loss_signal(); tokio::spawn(async move { signal.lost().await }); }
    /// ```
    pub fn loss_signal(&self) -> LossSignal {
        self.signal.clone()
    }

    /// Stops extending and releases the lock now. If the lock had been
    /// lost, returns that loss ([`Error::Lost`], after a best-effort release
    /// of what is left); otherwise as [`Lease::release`]: `Ok` only when
    /// released on a quorum, [`Error::NotHeld`] when our token no longer
    /// held it, [`Error::Unavailable`] / [`Error::Auth`] when too few nodes
    /// answered to tell.
    ///
    /// ```no_run
    /// # async fn f(kept: redlock_tokio::KeptLease) -> Result<(), redlock_tokio::Error> {
    /// kept.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<ReleaseReport, Error> {
        self.signal.state.stop.cancel();
        let Some(task) = self.task.take() else {
            return Err(Error::stopped());
        };
        match task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Io(std::io::Error::other(format!(
                "the extension task failed: {e}"
            )))),
        }
    }
}

impl Drop for KeptLease {
    fn drop(&mut self) {
        // The task releases the lease when it sees `stop`.
        self.signal.state.stop.cancel();
    }
}

impl Client {
    /// Acquires `resources` (as [`lock`](Client::lock)) and keeps the lease
    /// extended in the background until the [`KeptLease`] is released or
    /// dropped.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let kept = client.lock_and_keep("nightly-report").await?;
    /// // ... long work, while !kept.is_lost() ...
    /// kept.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_and_keep(&self, resources: impl IntoResources) -> Result<KeptLease, Error> {
        self.lock_and_keep_with(resources, &LockOptions::new())
            .await
    }

    /// [`lock_and_keep`](Client::lock_and_keep) with per-call options (the
    /// TTL is also the extensions').
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let opts = redlock_tokio::LockOptions::new().ttl(std::time::Duration::from_secs(5)).fenced();
    /// let kept = client.lock_and_keep_with(["a", "b"], &opts).await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_and_keep_with(
        &self,
        resources: impl IntoResources,
        options: &LockOptions,
    ) -> Result<KeptLease, Error> {
        let lease = self.lock_with(resources, options).await?;
        Ok(self.keep(lease))
    }

    /// Keeps an existing lease extended in the background (same TTL,
    /// renewed a third into each validity window), on the client's runtime.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let lease = client.lock("r").await?;
    /// let kept = client.keep(lease);
    /// # Ok(()) }
    /// ```
    pub fn keep(&self, lease: Lease) -> KeptLease {
        let state = Arc::new(State {
            clock: self.inner.clock,
            urls: self.inner.urls.clone(),
            lease: Mutex::new(lease.core().clone()),
            lost: CancellationToken::new(),
            stop: CancellationToken::new(),
            error: Mutex::new(None),
        });
        let span = tracing::debug_span!("redlock_keep",
            resources = %Names(lease.resources()), fence = lease.fence());
        let task = self
            .inner
            .runtime
            .spawn(keeper(lease, state.clone()).instrument(span));
        KeptLease {
            signal: LossSignal { state },
            task: Some(task),
        }
    }

    /// Runs `work` while holding `resources`, extending the lock in the
    /// background, then releases it. `work` gets a [`LossSignal`] to watch
    /// for loss ([`LossSignal::lost`], [`LossSignal::is_lost`],
    /// [`LossSignal::cancellation_token`]): if the lock is lost, the work
    /// should stop.
    ///
    /// If the lock was lost while `work` ran (an extension failed, or the
    /// validity ran out first), its output is dropped and [`Error::Lost`]
    /// returned: `work` was not protected to the end. So is it when the
    /// release finds that our token no longer held the lock on a quorum
    /// ([`Error::NotHeld`]). A release that merely could not reach the nodes
    /// does not unmake the critical section: `Ok`. (As
    /// `redlock_std::Client::with_lock`.)
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let done = client.with_lock("billing", |signal| async move {
    ///     // ... work ...
    ///     !signal.is_lost()
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_lock<F, Fut, T>(
        &self,
        resources: impl IntoResources,
        work: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(LossSignal) -> Fut,
        Fut: Future<Output = T>,
    {
        self.with_lock_with(resources, &LockOptions::new(), work)
            .await
    }

    /// [`with_lock`](Client::with_lock) with per-call options (TTL, which
    /// the extensions use too; retry; wait; fencing).
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// use redlock_tokio::LockOptions;
    /// let opts = LockOptions::new().ttl(std::time::Duration::from_secs(5)).fenced();
    /// client.with_lock_with("ledger", &opts, |signal| async move {
    ///     let fence = signal.fence().expect("fenced");
    ///     // ... write to the store with `fence`; it refuses older fences ...
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_lock_with<F, Fut, T>(
        &self,
        resources: impl IntoResources,
        options: &LockOptions,
        work: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(LossSignal) -> Fut,
        Fut: Future<Output = T>,
    {
        let kept = self.lock_and_keep_with(resources, options).await?;
        let signal = kept.loss_signal();
        let out = work(signal.clone()).await;
        let lost = signal.lost_error();
        let released = kept.release().await;
        if let Some(e) = lost {
            return Err(e);
        }
        match released {
            Ok(_) => Ok(out),
            Err(e @ (Error::Lost(_) | Error::NotHeld(_))) => Err(e),
            Err(e) => {
                // A release that fails does not unmake the critical section.
                debug!(error = %e, "release after with_lock");
                Ok(out)
            }
        }
    }
}

async fn keeper(mut lease: Lease, state: Arc<State>) -> Result<ReleaseReport, Error> {
    let stop = state.stop.clone();
    let clock = state.clock;
    let node_timeout = lease.client().config().node_timeout;
    let pause = retry_pause(node_timeout);
    let lost = 'renewals: loop {
        let renew_at = clock.at(lease.core().renew_at());
        tokio::select! {
            _ = stop.cancelled() => break None,
            _ = tokio::time::sleep_until(renew_at) => {}
        }
        let ttl = lease.core().ttl();
        let deadline = clock.at(lease.core().deadline());
        // Attempts of this extension, until one succeeds or none can help.
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => break 'renewals None,
                r = lease.extend(ttl) => r,
                _ = tokio::time::sleep_until(deadline) => {
                    break 'renewals Some(LostCause::Failed(state.expired_failure()));
                }
            };
            let e = match result {
                Ok(()) => {
                    *lock(&state.lease) = lease.core().clone();
                    debug!(
                        remaining_ms = lease.remaining().as_millis() as u64,
                        "lease renewed"
                    );
                    break;
                }
                Err(e) => e,
            };
            // Retry only if one more attempt can still end before the
            // deadline (an attempt takes at most the node timeout).
            let next = tokio::time::Instant::now() + pause;
            if !retryable(&e) || next + node_timeout >= deadline {
                break 'renewals Some(match e {
                    Error::Lost(f) => LostCause::Failed(f),
                    Error::DriverStopped => LostCause::Stopped,
                    // Every attempt failed locally until no time was left.
                    _ => LostCause::Failed(state.expired_failure()),
                });
            }
            debug!(error = %e, "extension failed, trying again in {pause:?}");
            tokio::select! {
                _ = stop.cancelled() => break 'renewals None,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    };
    match lost {
        None => lease.release().await,
        Some(cause) => {
            let error = match &cause {
                LostCause::Failed(f) => Error::Lost(f.clone()),
                LostCause::Stopped => Error::DriverStopped,
            };
            warn!(error = %error, "lock lost");
            *lock(&state.error) = Some(cause);
            state.lost.cancel();
            // What may be left on some nodes is ours: remove it (best effort).
            let _ = lease.release().await;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `LossSignal::lost` can be awaited from a spawned task (it is `Send`).
    #[test]
    fn lost_is_send() {
        fn send<T: Send>(_: &T) {}
        fn check(s: &LossSignal) {
            send(&s.lost());
        }
        let _ = check;
    }

    #[test]
    fn retry_rules() {
        assert_eq!(
            retry_pause(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
        assert_eq!(
            retry_pause(Duration::from_secs(5)),
            Duration::from_millis(100)
        );
        assert_eq!(
            retry_pause(Duration::from_millis(1)),
            Duration::from_millis(5)
        );
        assert!(!retryable(&Error::DriverStopped));
        assert!(retryable(&Error::Command(CommandError::TooManyOperations)));
        assert!(!retryable(&Error::Command(CommandError::BadResource)));
        let urls = ["redis://a:1".to_string()];
        assert!(retryable(&Error::Lost(Failure::local(
            FailureKind::Unavailable,
            &urls
        ))));
        assert!(!retryable(&Error::Lost(Failure::local(
            FailureKind::Busy,
            &urls
        ))));
    }
}
