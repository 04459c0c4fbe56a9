//! Admission: how many operations the driver lets into the core at once,
//! and where the others wait.
//!
//! The core has a fixed number of operation slots ([`OPS`](crate::driver)).
//! If acquires could take all of them, a keeper's extension would be
//! refused locally and the keeper would declare a lock lost that our token
//! still holds on every node, and the release of a dropped lease would be
//! thrown away, leaving its key for the whole TTL. So:
//!
//! * acquires may hold at most `OPS - ACQUIRE_RESERVE` slots (the core
//!   decides: `Redlock::admits_acquire`); the reserve is for extensions and
//!   releases of leases already held;
//! * a request that cannot start now (an acquire beyond its share, or
//!   anything while every slot is taken) waits here, in order, until a
//!   slot frees, bounded by its own deadline; extensions and releases are
//!   admitted first;
//! * a request whose deadline passes while it waits is refused with
//!   `TooManyOperations`: a local refusal, never reported as a loss; an
//!   acquire waits at most `RetryPolicy::longest`, and its policy is
//!   `RetryPolicy::after_waiting` once admitted.

use std::collections::VecDeque;
use std::time::Instant;

/// One request waiting for a slot.
#[derive(Debug)]
pub(crate) struct Waiting<R> {
    pub(crate) req: R,
    /// When it started waiting.
    pub(crate) since: Instant,
    /// When waiting is no longer worth it.
    pub(crate) deadline: Instant,
}

/// Requests waiting for a slot: extensions and releases (served first),
/// then acquires, each in arrival order.
#[derive(Debug)]
pub(crate) struct Backlog<R> {
    pub(crate) held: VecDeque<Waiting<R>>,
    pub(crate) acquires: VecDeque<Waiting<R>>,
}

impl<R> Default for Backlog<R> {
    fn default() -> Self {
        Backlog {
            held: VecDeque::new(),
            acquires: VecDeque::new(),
        }
    }
}

impl<R> Backlog<R> {
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty() && self.acquires.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.held.len() + self.acquires.len()
    }

    /// The earliest deadline of a waiting request.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.held
            .iter()
            .chain(self.acquires.iter())
            .map(|w| w.deadline)
            .min()
    }

    /// Removes and returns every request whose deadline is at or before `now`.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<R> {
        let mut out = Vec::new();
        for q in [&mut self.held, &mut self.acquires] {
            if !q.iter().any(|w| w.deadline <= now) {
                continue;
            }
            let (expired, kept): (VecDeque<_>, VecDeque<_>) =
                q.drain(..).partition(|w| w.deadline <= now);
            *q = kept;
            out.extend(expired.into_iter().map(|w| w.req));
        }
        out
    }

    /// Removes and returns the waiting acquires for which `pred` holds.
    pub(crate) fn take_acquires_where(&mut self, mut pred: impl FnMut(&R) -> bool) -> Vec<R> {
        let (taken, kept): (VecDeque<_>, VecDeque<_>) =
            self.acquires.drain(..).partition(|w| pred(&w.req));
        self.acquires = kept;
        taken.into_iter().map(|w| w.req).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expiry_and_order() {
        let now = Instant::now();
        let mut b: Backlog<u32> = Backlog::default();
        for (i, d) in [(1, 5), (2, 1), (3, 9)] {
            b.acquires.push_back(Waiting {
                req: i,
                since: now,
                deadline: now + Duration::from_millis(d),
            });
        }
        b.held.push_back(Waiting {
            req: 4,
            since: now,
            deadline: now + Duration::from_millis(2),
        });
        assert_eq!(b.len(), 4);
        assert_eq!(b.next_deadline(), Some(now + Duration::from_millis(1)));
        assert_eq!(b.take_expired(now + Duration::from_millis(2)), vec![4, 2]);
        assert_eq!(b.take_acquires_where(|r| *r == 3), vec![3]);
        assert_eq!(b.acquires.front().map(|w| w.req), Some(1));
        assert!(!b.is_empty());
    }
}
