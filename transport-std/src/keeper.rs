//! Background extension of a lease, and the loss signal.
//!
//! A [`Keeper`] owns a thread that sleeps until the lease's
//! [`renew_at`](redlock_core::Lease::renew_at) (a third into its validity
//! window), extends it with the same TTL, and repeats. The first extension
//! that fails marks the lock lost at once and wakes every waiter; so does
//! the lease's deadline passing without a successful extension (e.g. when
//! the process was starved).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use redlock_core::{ReleaseReport, Token};

use crate::{Client, Error, Failure, Lease};

#[derive(Debug, Clone)]
enum LostCause {
    Failed(Failure),
    Other(String),
}

#[derive(Debug)]
struct State {
    lease: redlock_core::Lease,
    lost: Option<LostCause>,
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
}

/// Keeps a lease alive in the background; see [`Client::keep`].
///
/// Dropping a `Keeper` stops extending and releases the lock
/// (best-effort, in the background).
#[derive(Debug)]
pub struct Keeper {
    shared: Arc<Shared>,
    client: Client,
    thread: Option<JoinHandle<()>>,
    released: bool,
}

impl Keeper {
    pub(crate) fn start(lease: Lease) -> Keeper {
        let (client, lease) = lease.disarm();
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
                .spawn(move || extend_loop(&shared, &client))
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
        Keeper {
            shared,
            client,
            thread,
            released: false,
        }
    }

    /// A [`Guard`] observing this keeper.
    pub(crate) fn guard(&self) -> Guard {
        Guard {
            shared: Arc::clone(&self.shared),
            client: self.client.clone(),
        }
    }

    /// Whether the lock is lost (an extension failed, or the validity ran out).
    pub fn is_lost(&self) -> bool {
        is_lost(&self.shared, &self.client)
    }

    /// Waits up to `timeout` for the lock to be lost; `true` if it is.
    pub fn wait_lost(&self, timeout: Duration) -> bool {
        wait_lost(&self.shared, &self.client, timeout)
    }

    /// Why the lock was lost, if it was.
    pub fn lost_error(&self) -> Option<Error> {
        lost_error(&self.shared, &self.client)
    }

    /// The lease's token.
    pub fn token(&self) -> Token {
        *self.shared.lock().lease.token()
    }

    /// The locked resource.
    pub fn resource(&self) -> Vec<u8> {
        self.shared.lock().lease.resource().to_vec()
    }

    /// Validity left on the current lease (zero once lost).
    pub fn remaining(&self) -> Duration {
        remaining(&self.shared, &self.client)
    }

    fn stop(&mut self) -> redlock_core::Lease {
        {
            let mut st = self.shared.lock();
            st.stop = true;
        }
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.lock().lease.clone()
    }

    /// Stops extending and releases the lock now.
    pub fn release(mut self) -> Result<ReleaseReport, Error> {
        let lease = self.stop();
        self.released = true;
        self.client.release_token(lease.resource(), lease.token())
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if !self.released {
            let lease = self.stop();
            self.client.release_detached(&lease);
        }
    }
}

fn extend_loop(shared: &Shared, client: &Client) {
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
        let result = client.extend_core(
            lease.resource(),
            lease.token(),
            lease.ttl(),
            Some(lease.clone()),
        );
        let mut st = shared.lock();
        match result {
            Ok(new) => st.lease = new,
            Err(e) => {
                tracing::warn!("{e}");
                st.lost = Some(match e {
                    Error::Lost(f) => LostCause::Failed(f),
                    other => LostCause::Other(other.to_string()),
                });
                drop(st);
                shared.cv.notify_all();
                return;
            }
        }
    }
}

fn is_lost(shared: &Shared, client: &Client) -> bool {
    let st = shared.lock();
    st.lost.is_some() || !st.lease.is_valid(client.now())
}

fn remaining(shared: &Shared, client: &Client) -> Duration {
    let st = shared.lock();
    if st.lost.is_some() {
        return Duration::ZERO;
    }
    st.lease.remaining(client.now())
}

fn wait_lost(shared: &Shared, client: &Client, timeout: Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    let mut st = shared.lock();
    loop {
        if st.lost.is_some() {
            return true;
        }
        let now = std::time::Instant::now();
        let deadline = client.to_std(st.lease.deadline());
        if now >= deadline {
            return true;
        }
        if now >= until {
            return false;
        }
        let wait = until.min(deadline) - now;
        st = shared
            .cv
            .wait_timeout(st, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

fn lost_error(shared: &Shared, client: &Client) -> Option<Error> {
    let st = shared.lock();
    match &st.lost {
        Some(LostCause::Failed(f)) => Some(Error::Lost(f.clone())),
        Some(LostCause::Other(msg)) => Some(Error::Io(std::io::Error::other(msg.clone()))),
        None if !st.lease.is_valid(client.now()) => Some(Error::Io(std::io::Error::other(
            "lock lost: the lease expired before it could be extended",
        ))),
        None => None,
    }
}

/// What the closure of [`Client::with_lock`] sees: whether the lock is still
/// held.
///
/// ```no_run
/// # let client = redlock_std::Client::builder().node("redis://127.0.0.1")?.build()?;
/// client.with_lock("jobs:42", |guard| {
///     for chunk in 0..100 {
///         if guard.is_lost() { return; }
///         // ... process chunk ...
///     }
/// })?;
/// # Ok::<(), redlock_std::Error>(())
/// ```
#[derive(Debug)]
pub struct Guard {
    shared: Arc<Shared>,
    client: Client,
}

impl Guard {
    /// Whether the lock is lost (an extension failed, or the validity ran out).
    pub fn is_lost(&self) -> bool {
        is_lost(&self.shared, &self.client)
    }

    /// Waits up to `timeout` for the lock to be lost; `true` if it is.
    pub fn wait_lost(&self, timeout: Duration) -> bool {
        wait_lost(&self.shared, &self.client, timeout)
    }

    /// Validity left on the current lease (zero once lost).
    pub fn remaining(&self) -> Duration {
        remaining(&self.shared, &self.client)
    }
}
