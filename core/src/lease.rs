//! A held lock: resource, token and validity deadline.

use core::time::Duration;

use crate::config::MAX_RESOURCE_LEN;
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
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    resource: heapless::Vec<u8, MAX_RESOURCE_LEN>,
    token: Token,
    start: Instant,
    deadline: Instant,
    ttl: Duration,
}

impl Lease {
    /// Builds a lease from its parts (for transports and tests; the core
    /// builds the leases it reports). `None` when the resource is empty or
    /// longer than [`MAX_RESOURCE_LEN`].
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
        if resource.is_empty() {
            return None;
        }
        Some(Lease {
            resource: heapless::Vec::from_slice(resource).ok()?,
            token,
            start,
            deadline,
            ttl,
        })
    }

    /// The resource name (the Redis key).
    ///
    /// ```
    /// # use redlock_core::{Instant, Lease, Token};
    /// # use core::time::Duration;
    /// # let lease = Lease::new(b"r", Token::from_bytes(b"t").unwrap(), Instant::ZERO, Instant::ZERO, Duration::ZERO).unwrap();
    /// assert_eq!(lease.resource(), b"r");
    /// ```
    pub fn resource(&self) -> &[u8] {
        &self.resource
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
            .field("resource", &crate::event::Bytes(&self.resource))
            .field("token", &self.token)
            .field("start", &self.start)
            .field("deadline", &self.deadline)
            .field("ttl", &self.ttl)
            .finish()
    }
}
