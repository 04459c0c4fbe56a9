//! [`Lease`]: a held lock.

use std::fmt;
use std::time::Duration;

use redlock_core::{Lease as CoreLease, ReleaseReport, ResourceSet, Token};

use crate::client::Client;
use crate::driver::Held;
use crate::error::Error;
use crate::spare::LeaseBox;

/// A held lock, valid until [`remaining`](Self::remaining) reaches zero.
///
/// Dropping a lease releases it in the background (best effort); call
/// [`release`](Self::release) to know the outcome, or
/// [`forget`](Self::forget) to leave it held until its TTL.
///
/// ```no_run
/// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
/// let mut lease = client.lock("jobs:42").await?;
/// assert!(lease.is_valid());
/// lease.extend(std::time::Duration::from_secs(30)).await?;
/// lease.release().await?;
/// # Ok(()) }
/// ```
pub struct Lease {
    /// Boxed (a spare box of the client's, given back on drop): a core
    /// lease is about 1.1 KiB, and a `Lease` is moved about.
    lease: LeaseBox,
    client: Client,
    armed: bool,
    /// The last extension was refused ([`Error::Lost`]): whatever the
    /// deadline says, the lock is not ours until an extension succeeds.
    lost: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("lease", &self.lease)
            .field("remaining", &self.remaining())
            .field("lost", &self.lost)
            .finish()
    }
}

impl Lease {
    pub(crate) fn new(lease: LeaseBox, client: Client) -> Lease {
        Lease {
            lease,
            client,
            armed: true,
            lost: false,
        }
    }

    /// The first locked resource (the Redis key), in sorted order: the only
    /// one of a lease on one resource.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// assert_eq!(client.lock("jobs:42").await?.resource(), b"jobs:42");
    /// # Ok(()) }
    /// ```
    pub fn resource(&self) -> &[u8] {
        self.lease.resource()
    }

    /// Every locked resource, sorted, without duplicates.
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let lease = client.lock(["b", "a", "b"]).await?;
    /// assert_eq!(lease.resources().iter().collect::<Vec<_>>(), [b"a".as_slice(), b"b"]);
    /// # Ok(()) }
    /// ```
    pub fn resources(&self) -> &ResourceSet {
        self.lease.resources()
    }

    /// The token stored under every key (whoever knows it can release the
    /// lock: keep it out of logs).
    ///
    /// ```no_run
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// assert!(client.lock("jobs:42").await?.token().as_bytes().len() >= 32);
    /// # Ok(()) }
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
    /// # async fn f(client: redlock_tokio::Client) -> Result<(), redlock_tokio::Error> {
    /// let lease = client.lock_with("ledger", &redlock_tokio::LockOptions::new().fenced()).await?;
    /// let fence: u64 = lease.fence().expect("a fenced lease has a fence");
    /// # Ok(()) }
    /// ```
    pub fn fence(&self) -> Option<u64> {
        self.lease.fence()
    }

    /// Validity left: zero once expired, or once an extension failed with
    /// [`Error::Lost`].
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { assert!(lease.remaining() > std::time::Duration::ZERO); }
    /// ```
    pub fn remaining(&self) -> Duration {
        if self.lost {
            return Duration::ZERO;
        }
        self.lease.remaining(self.client.inner.clock.now())
    }

    /// When the validity ends, on the monotonic clock (`std`'s, never
    /// tokio's, which tests may pause): until then, and only until then, the
    /// holder may act as the owner (unless an extension failed: see
    /// [`is_valid`](Self::is_valid)).
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { assert!(lease.until() > std::time::Instant::now()); }
    /// ```
    pub fn until(&self) -> std::time::Instant {
        self.client.inner.clock.monotonic(self.lease.deadline())
    }

    /// Whether the lock is still ours: the validity has not run out, and
    /// the last extension did not fail with [`Error::Lost`].
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { assert!(lease.is_valid()); }
    /// ```
    pub fn is_valid(&self) -> bool {
        !self.lost && self.lease.is_valid(self.client.inner.clock.now())
    }

    /// The core's view of the lease (deadline, start, TTL on the client's
    /// clock).
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { let ttl = lease.core().ttl(); }
    /// ```
    pub fn core(&self) -> &CoreLease {
        &self.lease
    }

    /// Extends the lease to `ttl` from now (every key, all or nothing per
    /// node). [`Error::Lost`] when a quorum does not confirm in time (or
    /// the lease had already expired): treat the lock as lost; until an
    /// extension succeeds again the lease says so
    /// ([`is_valid`](Self::is_valid) is `false`,
    /// [`remaining`](Self::remaining) zero). Other errors (the driver
    /// stopped, no operation slot in time) leave the lease as it was.
    ///
    /// ```no_run
    /// # async fn f(mut lease: redlock_tokio::Lease) -> Result<(), redlock_tokio::Error> {
    /// if let Err(redlock_tokio::Error::Lost(why)) = lease.extend(std::time::Duration::from_secs(30)).await {
    ///     assert!(!lease.is_valid());
    ///     eprintln!("lost: {why}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn extend(&mut self, ttl: Duration) -> Result<(), Error> {
        let result = self
            .client
            .extend_held(
                Held::Lease(self.client.inner.cells.leases.boxed_clone(&self.lease)),
                ttl,
            )
            .await;
        match result {
            Ok(new) => {
                let mut old = std::mem::replace(&mut self.lease, new);
                self.client.inner.cells.leases.recycle(&mut old);
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
    /// # async fn f(lease: redlock_tokio::Lease) -> Result<(), redlock_tokio::Error> {
    /// match lease.release().await {
    ///     Ok(report) => println!("released on {} nodes", report.released()),
    ///     Err(redlock_tokio::Error::NotHeld(report)) => eprintln!("it had expired: {report:?}"),
    ///     Err(e) => eprintln!("unknown: {e}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<ReleaseReport, Error> {
        self.armed = false;
        let resources = self
            .client
            .inner
            .cells
            .sets
            .boxed_clone(self.lease.resources());
        self.client.release_set(resources, self.lease.token()).await
    }

    /// Leaves the lock held until its TTL runs out, and returns its data.
    ///
    /// ```no_run
    /// # fn f(lease: redlock_tokio::Lease) { let raw = lease.forget(); println!("{}", raw.token().as_str()); }
    /// ```
    pub fn forget(mut self) -> CoreLease {
        self.armed = false;
        (*self.lease).clone()
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
        self.client.inner.cells.leases.recycle(&mut self.lease);
    }
}
