//! Background extension of a lease ([`KeptLease`]), and the loss signal
//! ([`LossSignal`]).
//!
//! A [`KeptLease`] owns a thread that sleeps until the lease's
//! [`renew_at`](redlock_core::Lease::renew_at) (a third into its validity
//! window), extends it with the same TTL, and repeats.
//!
//! **When a loss is signalled.** An extension that fails is retried after
//! a short pause (half the node timeout, 5..=100 ms) for as long as another
//! attempt could still complete before the lease's deadline: one failed
//! round trip (a node pause) does not cost a lock that has two thirds of
//! its validity left. The lock is declared lost, and every waiter woken at
//! once, when
//! * the nodes say our token is gone from too many of them (at most a node
//!   timeout after the extension was sent), or
//! * no further attempt could finish before the deadline (about a node
//!   timeout before it), or the driver stopped;
//! * and whatever the thread managed to do (a starved process, a stopped
//!   one), [`LossSignal::is_lost`] reads the clock: it is true from the
//!   lease's deadline on.
//!
//! So a healthy keeper renews at a third of each validity window, and a
//! lost lock is signalled no later than its deadline, usually within a node
//! timeout of the failed renewal.

use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use redlock_core::{
    CommandError, FailureKind, Lease as CoreLease, ReleaseReport, ResourceSet, Token,
};

use crate::driver::Held;
use crate::{Client, Error, Failure, Lease};

#[derive(Debug, Clone)]
enum LostCause {
    /// The nodes refused, or no extension could be made in time.
    Failed(Failure),
    /// The driver has stopped: nothing can be extended any more.
    Stopped,
    /// The keeper thread could not start.
    Other(String),
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

#[derive(Debug)]
struct State {
    lease: CoreLease,
    lost: Option<LostCause>,
    /// The keeper stopped (released, or dropped): no more extensions.
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock still holds a consistent State (plain fields).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_until<'a>(
        &self,
        st: MutexGuard<'a, State>,
        until: std::time::Instant,
    ) -> MutexGuard<'a, State> {
        let left = until.saturating_duration_since(std::time::Instant::now());
        self.cv
            .wait_timeout(st, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0)
    }
}

/// Watches a [`KeptLease`]: whether the lock is still held, why it was
/// lost, and a way to wait for the loss. Cheap to clone and to send to
/// other threads (e.g. the workers doing the protected job); a
/// [`KeptLease`] gives one with [`KeptLease::loss_signal`], and derefs to
/// its own, so every method here works on it too.
///
/// Once the [`KeptLease`] is released or dropped (without a loss), the
/// signal never fires: [`is_lost`](Self::is_lost) stays false and
/// [`wait`](Self::wait) returns `false`.
///
/// ```no_run
/// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
/// let kept = client.lock_and_keep("jobs:42")?;
/// let signal = kept.loss_signal();
/// let worker = std::thread::spawn(move || {
///     for chunk in 0..100 {
///         if signal.is_lost() { return false; }
///         // ... process chunk ...
///     }
///     true
/// });
/// let finished = worker.join().unwrap();
/// kept.release()?;
/// # Ok::<(), redlock_std::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LossSignal {
    shared: Arc<Shared>,
    client: Client,
}

impl LossSignal {
    /// Whether the lock is lost: an extension failed for good, or the
    /// validity ran out (this reads the clock: true from the deadline on,
    /// even if the keeper thread could not run).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// if kept.is_lost() { /* stop: someone else may hold it */ }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn is_lost(&self) -> bool {
        let st = self.shared.lock();
        st.lost.is_some() || (!st.stop && !st.lease.is_valid(self.client.now()))
    }

    /// Why the lock was lost, once it was: [`Error::Lost`] (the nodes'
    /// answers, or "no validity left" when the deadline passed first), or
    /// [`Error::DriverStopped`].
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// if let Some(e) = kept.lost_error() { eprintln!("{e}"); }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn lost_error(&self) -> Option<Error> {
        let st = self.shared.lock();
        match &st.lost {
            Some(LostCause::Failed(f)) => Some(Error::Lost(f.clone())),
            Some(LostCause::Stopped) => Some(Error::DriverStopped),
            Some(LostCause::Other(msg)) => Some(Error::Io(std::io::Error::other(msg.clone()))),
            // The deadline passed before an extension succeeded (e.g. the
            // process was starved): a loss like any other.
            None if !st.stop && !st.lease.is_valid(self.client.now()) => {
                Some(Error::Lost(expired(&self.client)))
            }
            None => None,
        }
    }

    /// Blocks until the lock is lost (`true`), or until the keeping stops
    /// because the [`KeptLease`] was released or dropped (`false`).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// let signal = kept.loss_signal();
    /// std::thread::spawn(move || {
    ///     if signal.wait() { eprintln!("lost the lock: stop the job"); }
    /// });
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn wait(&self) -> bool {
        self.wait_until(None)
    }

    /// Blocks for at most `timeout` until the lock is lost: `true` if it
    /// is; `false` after the timeout, or when the keeping stopped first.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// while !kept.wait_timeout(std::time::Duration::from_secs(1)) {
    ///     // ... a second of work ...
    /// #   break;
    /// }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(std::time::Instant::now().checked_add(timeout))
    }

    fn wait_until(&self, until: Option<std::time::Instant>) -> bool {
        let mut st = self.shared.lock();
        loop {
            if st.lost.is_some() {
                return true;
            }
            if st.stop {
                return false;
            }
            let now = std::time::Instant::now();
            let deadline = self.client.to_std(st.lease.deadline());
            if now >= deadline {
                return true;
            }
            if until.is_some_and(|u| now >= u) {
                return false;
            }
            let wake = until.map_or(deadline, |u| u.min(deadline));
            st = self.shared.wait_until(st, wake);
        }
    }

    /// Validity left on the current lease (zero once lost or released).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// println!("{:?} left until the next renewal is due", kept.remaining());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn remaining(&self) -> Duration {
        let st = self.shared.lock();
        if st.lost.is_some() || st.stop {
            return Duration::ZERO;
        }
        st.lease.remaining(self.client.now())
    }

    /// When the current lease's validity ends (it moves on with every
    /// extension), on the monotonic clock.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// assert!(kept.until() > std::time::Instant::now());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn until(&self) -> std::time::Instant {
        self.client.to_std(self.shared.lock().lease.deadline())
    }

    /// The current lease (after the latest extension).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// assert_eq!(kept.lease().resource(), b"jobs:42");
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn lease(&self) -> CoreLease {
        self.shared.lock().lease.clone()
    }

    /// The lease's fence, when fenced (extensions keep it).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let opts = redlock_std::LockOptions::new().fenced();
    /// let kept = client.lock_and_keep_with("ledger", &opts)?;
    /// assert!(kept.fence().is_some());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn fence(&self) -> Option<u64> {
        self.shared.lock().lease.fence()
    }

    /// The lease's token.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// assert!(!kept.token().as_bytes().is_empty());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn token(&self) -> Token {
        *self.shared.lock().lease.token()
    }

    /// The locked resources (sorted, without duplicates).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep(["b", "a"])?;
    /// assert_eq!(kept.resources().first(), b"a");
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn resources(&self) -> ResourceSet {
        self.shared.lock().lease.resources().clone()
    }
}

/// A lease kept alive in the background (see [`Client::keep`],
/// [`Client::lock_and_keep`]). Derefs to its [`LossSignal`]
/// (`is_lost`, `wait`, `fence`...).
///
/// Dropping a `KeptLease` stops extending and releases the lock
/// (best-effort, in the background); [`release`](Self::release) does it now
/// and says how it went.
///
/// ```no_run
/// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
/// let kept = client.lock_and_keep("nightly-report")?;
/// // ... hours of work, while !kept.is_lost() ...
/// kept.release()?;
/// # Ok::<(), redlock_std::Error>(())
/// ```
#[derive(Debug)]
pub struct KeptLease {
    signal: LossSignal,
    thread: Option<JoinHandle<()>>,
    released: bool,
}

impl Deref for KeptLease {
    type Target = LossSignal;
    fn deref(&self) -> &LossSignal {
        &self.signal
    }
}

impl KeptLease {
    pub(crate) fn start(lease: Lease) -> KeptLease {
        let (client, lease) = lease.disarm();
        let span = tracing::debug_span!("redlock_keep",
            resources = %crate::Names(lease.resources()), fence = lease.fence());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                lease,
                lost: None,
                stop: false,
            }),
            cv: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            let client = client.clone();
            std::thread::Builder::new()
                .name("redlock-keeper".into())
                .spawn(move || span.in_scope(|| extend_loop(&shared, &client)))
        };
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                shared.lock().lost = Some(LostCause::Other(format!(
                    "cannot start the extension thread: {e}"
                )));
                None
            }
        };
        KeptLease {
            signal: LossSignal { shared, client },
            thread,
            released: false,
        }
    }

    /// A [`LossSignal`] for other threads.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// let signal = kept.loss_signal();
    /// std::thread::spawn(move || signal.wait());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn loss_signal(&self) -> LossSignal {
        self.signal.clone()
    }

    fn stop(&mut self) -> CoreLease {
        self.signal.shared.lock().stop = true;
        self.signal.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.signal.lease()
    }

    /// Stops extending and releases the lock now. If the lock had been
    /// lost, returns that loss ([`Error::Lost`], after a best-effort release
    /// of what is left); otherwise as [`Lease::release`]: `Ok` only when
    /// released on a quorum, [`Error::NotHeld`] (with the report) when our
    /// token no longer held the lock on a quorum, [`Error::Unavailable`] /
    /// [`Error::Auth`] when too few nodes answered to tell.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let kept = client.lock_and_keep("jobs:42")?;
    /// // ... long work ...
    /// match kept.release() {
    ///     Ok(report) => println!("released on {} nodes", report.released()),
    ///     Err(redlock_std::Error::NotHeld(report)) => eprintln!("lost before the end: {report:?}"),
    ///     Err(e) => eprintln!("release failed: {e}"),
    /// }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn release(mut self) -> Result<ReleaseReport, Error> {
        let lost = self.signal.lost_error();
        let lease = self.stop();
        self.released = true;
        let released = self
            .signal
            .client
            .release_token(lease.resources(), lease.token());
        match lost {
            Some(e) => Err(e),
            None => released,
        }
    }
}

impl Drop for KeptLease {
    fn drop(&mut self) {
        if !self.released {
            let lease = self.stop();
            self.signal.client.release_detached(&lease);
        }
    }
}

fn extend_loop(shared: &Shared, client: &Client) {
    let node_timeout = client.config().node_timeout;
    let pause = retry_pause(node_timeout);
    loop {
        let lease = {
            let mut st = shared.lock();
            loop {
                if st.stop {
                    return;
                }
                let renew_at = client.to_std(st.lease.renew_at());
                let now = std::time::Instant::now();
                if now >= renew_at {
                    break;
                }
                st = shared
                    .cv
                    .wait_timeout(st, renew_at - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            st.lease.clone()
        };
        let deadline = client.to_std(lease.deadline());
        // Attempts of this extension, until one succeeds or none can help.
        let result = loop {
            let result = client.extend_held(
                Held::Lease(client.leases().boxed_clone(&lease)),
                lease.ttl(),
            );
            let e = match result {
                Ok(new) => break Ok(new),
                Err(e) => e,
            };
            // Retry only if one more attempt can still end before the
            // deadline (an attempt takes at most the node timeout).
            let next = std::time::Instant::now() + pause;
            if !retryable(&e) || next + node_timeout >= deadline {
                break Err(e);
            }
            tracing::debug!("extension failed, trying again in {pause:?}: {e}");
            let mut st = shared.lock();
            while !st.stop {
                let now = std::time::Instant::now();
                if now >= next {
                    break;
                }
                st = shared
                    .cv
                    .wait_timeout(st, next - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            if st.stop {
                return;
            }
        };
        let mut st = shared.lock();
        match result {
            Ok(mut new) => {
                tracing::debug!(
                    remaining_ms = new.remaining(client.now()).as_millis() as u64,
                    "lease renewed"
                );
                st.lease = (*new).clone();
                client.leases().recycle(&mut new);
            }
            Err(e) => {
                tracing::warn!("lock lost: {e}");
                st.lost = Some(match e {
                    Error::Lost(f) => LostCause::Failed(f),
                    Error::DriverStopped => LostCause::Stopped,
                    // Every attempt failed locally until no time was left.
                    _ => LostCause::Failed(expired(client)),
                });
                drop(st);
                shared.cv.notify_all();
                return;
            }
        }
    }
}

/// The loss of a lease whose validity ran out before an extension succeeded.
fn expired(client: &Client) -> Failure {
    Failure::local(FailureKind::Expired, &client.node_urls())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let f = |k| Failure::local(k, &urls);
        assert!(retryable(&Error::Lost(f(FailureKind::Unavailable))));
        assert!(retryable(&Error::Lost(f(FailureKind::Expired))));
        assert!(!retryable(&Error::Lost(f(FailureKind::Busy))));
        assert!(!retryable(&Error::Lost(f(FailureKind::NotHeld))));
    }
}
