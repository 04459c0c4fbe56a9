//! A held lock: resource, token and validity deadline.

use core::time::Duration;

use crate::resources::ResourceSet;
use crate::time::Instant;
use crate::token::Token;

/// A lock held on a quorum of nodes.
///
/// `deadline` is on the caller's clock: until then, and only until then, the
/// holder may act as the owner. It is `start + ttl - drift`, where `start` is
/// the instant the acquire (or extend) attempt began, so no reply latency can
/// make it later than the keys' own expiry on a correct node.
///
/// ```
/// use core::time::Duration;
/// use redlock_core::{Instant, Lease, Token};
///
/// let lease = Lease::new(b"jobs:42", Token::from_bytes(b"t").unwrap(),
///     Instant::from_millis(0), Instant::from_millis(9_898), Duration::from_secs(10)).unwrap();
/// assert_eq!(lease.remaining(Instant::from_millis(9_000)), Duration::from_millis(898));
/// assert!(!lease.is_valid(Instant::from_millis(9_898)));
/// ```
#[derive(PartialEq, Eq, Hash)]
pub struct Lease {
    resources: ResourceSet,
    token: Token,
    start: Instant,
    deadline: Instant,
    ttl: Duration,
    fence: Option<u64>,
}

impl Clone for Lease {
    fn clone(&self) -> Lease {
        Lease {
            resources: self.resources.clone(),
            token: self.token,
            start: self.start,
            deadline: self.deadline,
            ttl: self.ttl,
            fence: self.fence,
        }
    }

    /// Copies only the names' bytes of the resource set, not its whole
    /// capacity (see [`ResourceSet`]'s `clone_from`).
    fn clone_from(&mut self, source: &Lease) {
        self.resources.clone_from(&source.resources);
        self.token = source.token;
        self.start = source.start;
        self.deadline = source.deadline;
        self.ttl = source.ttl;
        self.fence = source.fence;
    }
}

impl Lease {
    /// Builds a lease on one resource from its parts (for transports and
    /// tests; the core builds the leases it reports). `None` when the
    /// resource is empty or longer than
    /// [`MAX_RESOURCE_LEN`](crate::MAX_RESOURCE_LEN).
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// assert!(Lease::new(b"", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::ZERO).is_none());
    /// ```
    pub fn new(
        resource: &[u8],
        token: Token,
        start: Instant,
        deadline: Instant,
        ttl: Duration,
    ) -> Option<Lease> {
        let resources = ResourceSet::one(resource).ok()?;
        Some(Lease::with_resources(
            resources, token, start, deadline, ttl, None,
        ))
    }

    /// Builds a lease over a set of resources, with a fence when it is
    /// fenced.
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, ResourceSet, Token};
    /// # use core::time::Duration;
    /// let set = ResourceSet::new(&[b"a".as_slice(), b"b"]).unwrap();
    /// let lease = Lease::with_resources(set, Token::from_bytes(b"t").unwrap(),
    ///     Instant::ZERO, Instant::from_millis(5), Duration::from_millis(9), Some(42));
    /// assert_eq!(lease.resources().len(), 2);
    /// assert_eq!(lease.fence(), Some(42));
    /// ```
    pub fn with_resources(
        resources: ResourceSet,
        token: Token,
        start: Instant,
        deadline: Instant,
        ttl: Duration,
        fence: Option<u64>,
    ) -> Lease {
        Lease {
            resources,
            token,
            start,
            deadline,
            ttl,
            fence,
        }
    }

    /// The resources the lease covers (sorted, without duplicates).
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::ZERO).unwrap();
    /// assert_eq!(lease.resources().first(), b"r");
    /// ```
    pub fn resources(&self) -> &ResourceSet {
        &self.resources
    }

    /// The fencing token of a fenced lease: a number greater than the fence
    /// of every grant of these resources confirmed before this lease's
    /// acquire started, and different from every other grant's (see
    /// [`crate::fence`]). `None` for a plain lease. An extension keeps it.
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::ZERO).unwrap();
    /// assert_eq!(lease.fence(), None);
    /// ```
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    /// The first resource name (the Redis key; the only one of a lease on a
    /// single resource).
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::ZERO).unwrap();
    /// assert_eq!(lease.resource(), b"r");
    /// ```
    pub fn resource(&self) -> &[u8] {
        self.resources.first()
    }

    /// The token stored under the key.
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::ZERO).unwrap();
    /// assert_eq!(lease.token().as_bytes(), b"t");
    /// ```
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// When the attempt that produced this lease started (its `t0`).
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::from_millis(3), Instant::ZERO, Duration::ZERO).unwrap();
    /// assert_eq!(lease.start(), Instant::from_millis(3));
    /// ```
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The end of validity on the caller's clock.
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::from_millis(9), Duration::ZERO).unwrap();
    /// assert_eq!(lease.deadline(), Instant::from_millis(9));
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The TTL the keys were set (or last extended) with.
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::from_secs(1)).unwrap();
    /// assert_eq!(lease.ttl(), Duration::from_secs(1));
    /// ```
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Validity left at `now` (zero once the deadline has passed).
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::from_millis(9), Duration::ZERO).unwrap();
    /// assert_eq!(lease.remaining(Instant::from_millis(10)), Duration::ZERO);
    /// ```
    pub fn remaining(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// Whether the lease is still valid at `now` (strictly before the deadline).
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::from_millis(9), Duration::ZERO).unwrap();
    /// assert!(lease.is_valid(Instant::from_millis(8)));
    /// ```
    pub fn is_valid(&self, now: Instant) -> bool {
        now < self.deadline
    }

    /// When an auto-extender should renew this lease: once a third of its
    /// validity window has been used, leaving two thirds for the extension
    /// and its retries.
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::from_millis(900), Duration::ZERO).unwrap();
    /// assert_eq!(lease.renew_at(), Instant::from_millis(300));
    /// ```
    pub fn renew_at(&self) -> Instant {
        let window = self.deadline.saturating_duration_since(self.start);
        self.start + window / 3
    }
}

impl core::fmt::Debug for Lease {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lease")
            .field("resources", &self.resources)
            .field("token", &self.token)
            .field("start", &self.start)
            .field("deadline", &self.deadline)
            .field("ttl", &self.ttl)
            .field("fence", &self.fence)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(start: u64, deadline: u64) -> Lease {
        Lease::new(
            b"jobs:7",
            Token::from_bytes(b"secret-token").unwrap(),
            Instant::from_millis(start),
            Instant::from_millis(deadline),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn renewal_is_due_a_third_into_the_window() {
        assert_eq!(lease(100, 1_000).renew_at(), Instant::from_millis(400));
        assert_eq!(lease(0, 3).renew_at(), Instant::from_millis(1));
        // A deadline before the start (an expired lease): renew at once.
        assert_eq!(lease(500, 100).renew_at(), Instant::from_millis(500));
    }

    #[test]
    fn clone_and_clone_from_copy_every_field() {
        let set = ResourceSet::new(&[b"a".as_slice(), b"b"]).unwrap();
        let fenced = Lease::with_resources(
            set,
            Token::from_bytes(b"other").unwrap(),
            Instant::from_millis(3),
            Instant::from_millis(30),
            Duration::from_secs(2),
            Some(7),
        );
        assert_eq!(fenced.clone(), fenced);
        let mut l = lease(0, 10);
        l.clone_from(&fenced);
        assert_eq!(l, fenced);
        assert_eq!(l.fence(), Some(7));
        l.clone_from(&lease(1, 11));
        assert_eq!(l, lease(1, 11));
        assert_eq!(l.fence(), None);
    }

    #[test]
    fn debug_names_the_resources_and_hides_the_token() {
        let text = format!("{:?}", lease(0, 10));
        assert!(text.starts_with("Lease {"), "{text}");
        assert!(text.contains("jobs:7"), "{text}");
        assert!(!text.contains("secret-token"), "{text}");
    }
}
