//! [`Lease`]: a held lock.

use std::time::Duration;

use redlock_core::{Lease as CoreLease, ReleaseReport, ResourceSet, Token};

use crate::driver::Held;
use crate::spare::LeaseBox;
use crate::{Client, Error};

/// A held lock, valid until [`remaining`](Self::remaining) reaches zero.
/// Dropping it releases the lock (best-effort, in the background);
/// [`release`](Self::release) does it now and says how it went;
/// [`forget`](Self::forget) leaves it held until its TTL.
///
/// ```no_run
/// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
/// let mut lease = client.lock("jobs:42")?;
/// assert!(lease.is_valid());
/// lease.extend(std::time::Duration::from_secs(30))?;
/// lease.release()?;
/// # Ok::<(), redlock_std::Error>(())
/// ```
pub struct Lease {
    client: Client,
    /// Boxed (a spare box of the client's, given back on drop): a core
    /// lease is about 1.1 KiB, and a `Lease` is moved about.
    lease: LeaseBox,
    armed: bool,
    /// An extension was refused by the nodes: whatever the deadline says,
    /// the lock is no longer ours.
    lost: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("lease", &self.lease)
            .field("remaining", &self.remaining())
            .field("lost", &self.lost)
            .finish()
    }
}

impl Lease {
    pub(crate) fn new(client: Client, lease: LeaseBox) -> Lease {
        Lease {
            client,
            lease,
            armed: true,
            lost: false,
        }
    }

    /// The first locked resource (the Redis key), in sorted order: the only
    /// one of a lease on one resource.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// assert_eq!(client.lock("jobs:42")?.resource(), b"jobs:42");
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn resource(&self) -> &[u8] {
        self.lease.resource()
    }

    /// Every locked resource, sorted, without duplicates.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let lease = client.lock(["b", "a", "b"])?;
    /// assert_eq!(lease.resources().iter().collect::<Vec<_>>(), [b"a".as_slice(), b"b"]);
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn resources(&self) -> &ResourceSet {
        self.lease.resources()
    }

    /// The token stored under every key (whoever knows it can release the
    /// lock: keep it out of logs).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let lease = client.lock("jobs:42")?;
    /// assert!(lease.token().as_bytes().len() >= 32);
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn token(&self) -> &Token {
        self.lease.token()
    }

    /// The fencing token of a fenced lease ([`LockOptions::fenced`](crate::LockOptions::fenced)):
    /// greater than the fence of every grant of these resources confirmed
    /// before this lease's acquire started, and never equal to another
    /// grant's. Hand it to the protected resource with every write; the
    /// resource refuses a fence below one it has seen ([`FenceGuard`](crate::FenceGuard)).
    /// `None` for a plain lease. Extensions keep it.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let lease = client.lock_with("ledger", &redlock_std::LockOptions::new().fenced())?;
    /// let fence: u64 = lease.fence().expect("a fenced lease has a fence");
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn fence(&self) -> Option<u64> {
        self.lease.fence()
    }

    /// Validity left: zero once expired, or once an extension failed with
    /// [`Error::Lost`].
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let lease = client.lock("jobs:42")?;
    /// println!("{:?} left", lease.remaining());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn remaining(&self) -> Duration {
        if self.lost {
            return Duration::ZERO;
        }
        self.lease.remaining(self.client.now())
    }

    /// When the validity ends, on the monotonic clock: until then, and only
    /// until then, the holder may act as the owner (unless an extension
    /// failed: see [`is_valid`](Self::is_valid)).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let lease = client.lock("jobs:42")?;
    /// assert!(lease.until() > std::time::Instant::now());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn until(&self) -> std::time::Instant {
        self.client.to_std(self.lease.deadline())
    }

    /// Whether the lock is still ours: the validity has not run out, and no
    /// extension failed with [`Error::Lost`].
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let lease = client.lock("jobs:42")?;
    /// if !lease.is_valid() { /* stop: someone else may hold it */ }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn is_valid(&self) -> bool {
        !self.lost && self.lease.is_valid(self.client.now())
    }

    /// The core's lease (start, deadline and TTL on the client's clock,
    /// `renew_at`).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let lease = client.lock("jobs:42")?;
    /// assert_eq!(lease.core().ttl(), client.config().ttl);
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn core(&self) -> &CoreLease {
        &self.lease
    }

    /// Extends the lock to `ttl` from now (every key, all or nothing per
    /// node). [`Error::Lost`] when a quorum does not confirm in time (or the
    /// lease had already expired): treat the lock as lost; until an
    /// extension succeeds again the lease says so
    /// ([`is_valid`](Self::is_valid) is `false`,
    /// [`remaining`](Self::remaining) zero). Other errors (the driver
    /// stopped, no operation slot in time) leave the lease as it was.
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let mut lease = client.lock("jobs:42")?;
    /// if let Err(redlock_std::Error::Lost(why)) = lease.extend(std::time::Duration::from_secs(30)) {
    ///     assert!(!lease.is_valid());
    ///     eprintln!("lost: {why}");
    /// }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        match self.client.extend_held(
            Held::Lease(self.client.leases().boxed_clone(&self.lease)),
            ttl,
        ) {
            Ok(lease) => {
                let mut old = std::mem::replace(&mut self.lease, lease);
                self.client.leases().recycle(&mut old);
                self.lost = false;
                Ok(())
            }
            Err(e) => {
                if matches!(e, Error::Lost(_)) {
                    self.lost = true;
                }
                Err(e)
            }
        }
    }

    /// Releases the lock now. `Ok` only when it was released on a quorum;
    /// [`Error::NotHeld`] (with the report) when our token no longer held
    /// the lock on a quorum (it had expired or been taken before this
    /// release: the work it protected may have run unprotected at the end);
    /// [`Error::Unavailable`] / [`Error::Auth`] when too few nodes answered
    /// to tell (our key may remain on some until its TTL).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let lease = client.lock("jobs:42")?;
    /// match lease.release() {
    ///     Ok(report) => println!("released on {} nodes", report.released()),
    ///     Err(redlock_std::Error::NotHeld(report)) => eprintln!("it had expired: {report:?}"),
    ///     Err(e) => eprintln!("unknown: {e}"),
    /// }
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn release(mut self) -> Result<ReleaseReport, Error> {
        self.armed = false;
        let resources = self.client.sets().boxed_clone(self.lease.resources());
        self.client.release_set(resources, self.lease.token())
    }

    /// Disarms the release on drop: the lock stays held until its TTL.
    /// Returns the core's lease (e.g. to print its token).
    ///
    /// ```no_run
    /// # let client = redlock_std::Client::builder().node("redis://127.0.0.1").build()?;
    /// let raw = client.lock("jobs:42")?.forget();
    /// println!("held until its TTL with token {}", raw.token().as_str());
    /// # Ok::<(), redlock_std::Error>(())
    /// ```
    pub fn forget(mut self) -> CoreLease {
        self.armed = false;
        (*self.lease).clone()
    }

    /// Takes the lease out without releasing it.
    pub(crate) fn disarm(mut self) -> (Client, CoreLease) {
        self.armed = false;
        (self.client.clone(), (*self.lease).clone())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed {
            self.client.release_detached(&self.lease);
        }
        self.client.leases().recycle(&mut self.lease);
    }
}
