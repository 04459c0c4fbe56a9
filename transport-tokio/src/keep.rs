//! Auto-extension: a background task renews a lease at
//! [`renew_at`](redlock_core::Lease::renew_at) (a third into its validity)
//! with the same TTL, for as long as the work runs, and signals loss at
//! once when an extension fails or the lease runs out first.

use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redlock_core::{FailureKind, Lease as CoreLease, ReleaseReport, Token};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::client::{Client, Lease};
use crate::driver::Clock;
use crate::error::{Error, Failure};

struct State {
    clock: Clock,
    lease: Mutex<CoreLease>,
    lost: CancellationToken,
    error: Mutex<Option<Failure>>,
}

/// A view of an auto-extended lock, for the work done under it: whether
/// the lock is still held, and a way to await its loss. Cheap to clone.
///
/// ```no_run
/// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
/// client.with_lock("reports", |guard| async move {
///     tokio::select! {
///         _ = guard.lost() => eprintln!("lock lost: stopping"),
///         _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
///     }
/// }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Guard {
    state: Arc<State>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("lost", &self.is_lost())
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl Guard {
    /// Whether the lock has been lost (an extension failed, or the lease
    /// ran out before one succeeded).
    ///
    /// ```no_run
    /// # fn f(g: redlock_tokio::Guard) { if g.is_lost() { return; } }
    /// ```
    pub fn is_lost(&self) -> bool {
        self.state.lost.is_cancelled()
    }

    /// Completes when the lock is lost (never, if it is released first).
    ///
    /// ```no_run
    /// # async fn f(g: redlock_tokio::Guard) { g.lost().await; }
    /// ```
    pub fn lost(&self) -> impl Future<Output = ()> + Send + '_ {
        self.state.lost.cancelled()
    }

    /// A token cancelled as soon as the lock is lost, to hand to code that
    /// already understands cancellation.
    ///
    /// ```no_run
    /// # fn f(g: redlock_tokio::Guard) { let token = g.cancellation_token(); }
    /// ```
    pub fn cancellation_token(&self) -> CancellationToken {
        self.state.lost.clone()
    }

    /// Why the lock was lost, once it was.
    ///
    /// ```no_run
    /// # fn f(g: redlock_tokio::Guard) { if let Some(e) = g.lost_error() { eprintln!("{e}"); } }
    /// ```
    pub fn lost_error(&self) -> Option<Error> {
        lock(&self.state.error).clone().map(Error::Lost)
    }

    /// Validity left on the current lease (zero once lost or expired).
    ///
    /// ```no_run
    /// # fn f(g: redlock_tokio::Guard) { let left = g.remaining(); }
    /// ```
    pub fn remaining(&self) -> Duration {
        if self.is_lost() {
            return Duration::ZERO;
        }
        lock(&self.state.lease).remaining(self.state.clock.now())
    }

    /// The lock's token.
    ///
    /// ```no_run
    /// # fn f(g: redlock_tokio::Guard) { println!("{}", g.token().as_str()); }
    /// ```
    pub fn token(&self) -> Token {
        *lock(&self.state.lease).token()
    }

    /// The resource.
    ///
    /// ```no_run
    /// # fn f(g: redlock_tokio::Guard) { let r = g.resource(); }
    /// ```
    pub fn resource(&self) -> Vec<u8> {
        lock(&self.state.lease).resource().to_vec()
    }

    /// The current lease (after the latest extension).
    ///
    /// ```no_run
    /// # fn f(g: redlock_tokio::Guard) { let deadline = g.lease().deadline(); }
    /// ```
    pub fn lease(&self) -> CoreLease {
        lock(&self.state.lease).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An auto-extended lock, from [`Client::lock_and_keep`] or [`Client::keep`].
/// Derefs to its [`Guard`]. Dropping it stops the extensions and releases
/// the lock in the background; [`release`](Self::release) does it now and
/// reports.
#[derive(Debug)]
pub struct LockGuard {
    guard: Guard,
    stop: CancellationToken,
    task: Option<JoinHandle<Result<ReleaseReport, Error>>>,
}

impl Deref for LockGuard {
    type Target = Guard;
    fn deref(&self) -> &Guard {
        &self.guard
    }
}

impl LockGuard {
    /// A clonable [`Guard`] for the work.
    ///
    /// ```no_run
    /// # fn f(g: redlock_tokio::LockGuard) { let view = g.guard(); }
    /// ```
    pub fn guard(&self) -> Guard {
        self.guard.clone()
    }

    /// Stops extending and releases the lock now. If the lock had been lost,
    /// returns [`Error::Lost`] (after a best-effort release of what is left).
    ///
    /// ```no_run
    /// # async fn f(g: redlock_tokio::LockGuard) -> Result<(), redlock_tokio::Error> {
    /// g.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<ReleaseReport, Error> {
        self.stop.cancel();
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

impl Drop for LockGuard {
    fn drop(&mut self) {
        // The task releases the lease when it sees `stop`.
        self.stop.cancel();
    }
}

impl Client {
    /// Acquires `resource` (as [`lock`](Client::lock)) and keeps it extended
    /// in the background until the returned guard is released or dropped.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let guard = client.lock_and_keep("nightly-report").await?;
    /// let token = guard.cancellation_token(); // cancelled if the lock is lost
    /// // ... long work that watches `token` ...
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_and_keep(&self, resource: impl AsRef<[u8]>) -> Result<LockGuard, Error> {
        let lease = self.lock(resource).await?;
        Ok(self.keep(lease))
    }

    /// Keeps an existing lease extended in the background (same TTL, renewed
    /// a third into each validity window), on the client's runtime.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let lease = client.lock("r").await?;
    /// let guard = client.keep(lease);
    /// # Ok(()) }
    /// ```
    pub fn keep(&self, lease: Lease) -> LockGuard {
        let state = Arc::new(State {
            clock: self.inner.clock,
            lease: Mutex::new(lease.core().clone()),
            lost: CancellationToken::new(),
            error: Mutex::new(None),
        });
        let stop = CancellationToken::new();
        let task = self
            .inner
            .runtime
            .spawn(keeper(lease, state.clone(), stop.clone()));
        LockGuard {
            guard: Guard { state },
            stop,
            task: Some(task),
        }
    }

    /// Runs `work` while holding `resource`, extending the lock in the
    /// background, then releases it. `work` gets a [`Guard`] to watch for
    /// loss ([`Guard::lost`], [`Guard::cancellation_token`]): if the lock is
    /// lost, the work should stop; `with_lock` still returns its output,
    /// and the guard tells what happened.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let done = client.with_lock("billing", |guard| async move {
    ///     // ... work ...
    ///     !guard.is_lost()
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn with_lock<F, Fut, T>(
        &self,
        resource: impl AsRef<[u8]>,
        work: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(Guard) -> Fut,
        Fut: Future<Output = T>,
    {
        let keeper = self.lock_and_keep(resource).await?;
        let out = work(keeper.guard()).await;
        if let Err(e) = keeper.release().await {
            debug!(error = %e, "release after with_lock");
        }
        Ok(out)
    }
}

async fn keeper(
    mut lease: Lease,
    state: Arc<State>,
    stop: CancellationToken,
) -> Result<ReleaseReport, Error> {
    let clock = state.clock;
    let lost = loop {
        let renew_at = clock.at(lease.core().renew_at());
        tokio::select! {
            _ = stop.cancelled() => break None,
            _ = tokio::time::sleep_until(renew_at) => {}
        }
        let ttl = lease.core().ttl();
        let deadline = clock.at(lease.core().deadline());
        let urls = &lease.client().inner.urls;
        let local_expiry = Failure::local(FailureKind::Expired, urls);
        tokio::select! {
            _ = stop.cancelled() => break None,
            r = lease.extend(ttl) => match r {
                Ok(()) => {
                    *lock(&state.lease) = lease.core().clone();
                    debug!(resource = %crate::driver::lossy(lease.resource()),
                        remaining_ms = lease.remaining().as_millis() as u64, "lease renewed");
                }
                Err(Error::Lost(f)) => break Some(f),
                Err(e) => {
                    let mut f = local_expiry;
                    f.error.kind = FailureKind::Unavailable;
                    warn!(error = %e, "extension could not run");
                    break Some(f);
                }
            },
            _ = tokio::time::sleep_until(deadline) => break Some(local_expiry),
        }
    };
    match lost {
        None => lease.release().await,
        Some(failure) => {
            warn!(resource = %crate::driver::lossy(lease.resource()), error = %failure, "lock lost");
            *lock(&state.error) = Some(failure.clone());
            state.lost.cancel();
            // What may be left on some nodes is ours: remove it (best effort).
            let _ = lease.release().await;
            Err(Error::Lost(failure))
        }
    }
}
