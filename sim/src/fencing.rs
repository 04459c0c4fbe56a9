//! The fence checker and the simulated fenced store, in true time.
//!
//! With fencing on, the protected resource is a **fenced store**: one
//! [`FenceGuard`] per resource (the core's own resource-side rule), and
//! every protected action of a fenced holder is a write to each resource of
//! its lease, carrying the lease's fence. The store accepts a write iff its
//! fence is not below the highest it accepted. The checks:
//! * **uniqueness**: two grants of one resource never share a fence;
//! * **order**: a grant whose acquire started after grant A of the resource
//!   was confirmed (true time) has a fence above A's. "Started" is the moment
//!   the winning attempt's first request left the client (every request of
//!   that attempt reaches its node later; an attempt that reused an earlier
//!   token counts from that token's first request, which can only make the
//!   check apply to fewer pairs);
//! * **no interleaving**: the store never accepts a write of grant A after
//!   accepting one of grant B that came after one of A's (A, B, A);
//! * **no valid holder rejected**, under the stated assumptions (no fault
//!   that breaks the lock's own assumptions): a write made while the lease
//!   was valid on the holder's clock is never refused.
//!
//! The first two need no timing assumption at all (see
//! [`redlock_core::fence`]), so they are checked under every fault; the
//! third follows from uniqueness; the fourth needs the lock to be safe.

use redlock_core::fence::FenceGuard;

use crate::scenario::FenceViolation;

/// One fenced grant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grant {
    pub(crate) client: usize,
    /// The resources (bit `r` = resource `r`).
    pub(crate) set: u8,
    pub(crate) fence: u64,
    /// True time the winning attempt's first request left the client.
    pub(crate) started: u64,
    /// True time the client processed `Acquired`.
    pub(crate) confirmed: u64,
}

/// The fenced store's state for one resource.
#[derive(Clone, Debug, Default)]
struct Store {
    guard: FenceGuard,
    /// The grant of the last accepted write.
    last: Option<usize>,
    /// `superseded[g]`: grant `g` had a write accepted, then another grant
    /// had one accepted after it.
    superseded: Vec<bool>,
}

/// What a write to the store came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    Accepted,
    /// Refused: a write with fence `highest` was accepted before.
    Rejected {
        highest: u64,
    },
}

#[derive(Debug)]
pub(crate) struct Fences {
    grants: Vec<Grant>,
    stores: Vec<Store>,
    /// Whether the lock's own assumptions hold (no valid holder may then be
    /// refused).
    lock_safe: bool,
    /// The first violation found.
    pub(crate) first: Option<(FenceViolation, String)>,
    /// Refused writes (client, resource, true time), kept only when
    /// recording (for the timeline).
    pub(crate) rejected: Option<Vec<(usize, usize, u64)>>,
}

fn name(r: usize) -> String {
    crate::world::RESOURCES
        .get(r)
        .map(|b| format!("{:?}", String::from_utf8_lossy(b)))
        .unwrap_or_else(|| format!("#{r}"))
}

fn secs(t: u64) -> String {
    format!("{}.{:06}s", t / 1_000_000, t % 1_000_000)
}

impl Fences {
    pub(crate) fn new(resources: usize, lock_safe: bool, record: bool) -> Fences {
        Fences {
            grants: Vec::new(),
            stores: vec![Store::default(); resources],
            lock_safe,
            first: None,
            rejected: record.then(Vec::new),
        }
    }

    fn violation(&mut self, kind: FenceViolation, msg: String) {
        if self.first.is_none() {
            self.first = Some((kind, msg));
        }
    }

    /// A new fenced grant: checks it against every earlier grant of its
    /// resources and returns its id.
    pub(crate) fn grant(&mut self, g: Grant) -> usize {
        let id = self.grants.len();
        for (i, a) in self.grants.iter().enumerate() {
            let shared = a.set & g.set;
            if shared == 0 || self.first.is_some() {
                continue;
            }
            let r = shared.trailing_zeros() as usize;
            if a.fence == g.fence {
                let msg = format!(
                    "grants {i} (client {}, confirmed at {}) and {id} (client {}, confirmed at {}) of {} both got fence {}",
                    a.client,
                    secs(a.confirmed),
                    g.client,
                    secs(g.confirmed),
                    name(r),
                    g.fence
                );
                self.first = Some((FenceViolation::Uniqueness, msg));
            } else if a.confirmed < g.started && a.fence > g.fence {
                let msg = format!(
                    "client {}'s acquire of {} started at {}, after grant {i} (client {}, fence {}) was confirmed at {}, and got the lower fence {} (grant {id})",
                    g.client,
                    name(r),
                    secs(g.started),
                    a.client,
                    a.fence,
                    secs(a.confirmed),
                    g.fence
                );
                self.first = Some((FenceViolation::Order, msg));
            }
        }
        self.grants.push(g);
        id
    }

    /// Grant `grant`'s holder writes resource `r` at true time `at`;
    /// `valid`: its lease was valid on its clock when it decided to write.
    pub(crate) fn write(&mut self, grant: usize, r: usize, at: u64, valid: bool) -> Write {
        let Some(g) = self.grants.get(grant).copied() else {
            return Write::Rejected { highest: 0 };
        };
        let Some(store) = self.stores.get_mut(r) else {
            return Write::Rejected { highest: 0 };
        };
        match store.guard.admit(g.fence) {
            Ok(()) => {
                let mut interleaved = None;
                if let Some(last) = store.last.filter(|&l| l != grant) {
                    if store.superseded.len() <= last.max(grant) {
                        store.superseded.resize(last.max(grant) + 1, false);
                    }
                    store.superseded[last] = true;
                    if store.superseded[grant] {
                        interleaved = Some(last);
                    }
                }
                store.last = Some(grant);
                if let Some(b) = interleaved {
                    let fb = self.grants[b].fence;
                    let cb = self.grants[b].client;
                    let msg = format!(
                        "the store accepted client {}'s write to {} at {} with fence {} (grant {grant}) after accepting a write of grant {b} (client {cb}, fence {fb}) that came after one of grant {grant}'s",
                        g.client,
                        name(r),
                        secs(at),
                        g.fence,
                    );
                    self.violation(FenceViolation::Interleaved, msg);
                }
                Write::Accepted
            }
            Err(stale) => {
                if let Some(v) = self.rejected.as_mut() {
                    v.push((g.client, r, at));
                }
                if valid && self.lock_safe {
                    let msg = format!(
                        "the store refused client {}'s write to {} at {} with fence {} (grant {grant}), made while its lease was valid: a write with fence {} was accepted before",
                        g.client,
                        name(r),
                        secs(at),
                        g.fence,
                        stale.highest
                    );
                    self.violation(FenceViolation::ValidRejected, msg);
                }
                Write::Rejected {
                    highest: stale.highest,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(client: usize, set: u8, fence: u64, started: u64, confirmed: u64) -> Grant {
        Grant {
            client,
            set,
            fence,
            started,
            confirmed,
        }
    }

    #[test]
    fn ordered_unique_grants_pass_and_a_repeated_fence_fails() {
        let mut f = Fences::new(2, true, false);
        f.grant(grant(0, 0b01, 10, 0, 5));
        f.grant(grant(1, 0b11, 20, 6, 9));
        // An attempt that started before the other's confirmation may get
        // either order; a disjoint set may get anything.
        f.grant(grant(2, 0b10, 15, 0, 12));
        assert!(f.first.is_none(), "{:?}", f.first);
        f.grant(grant(0, 0b01, 10, 0, 20));
        assert_eq!(
            f.first.as_ref().map(|v| v.0),
            Some(FenceViolation::Uniqueness)
        );
        let mut f = Fences::new(2, true, false);
        f.grant(grant(0, 0b01, 10, 0, 5));
        f.grant(grant(1, 0b10, 10, 0, 5));
        assert!(f.first.is_none(), "different resources may share a fence");
    }

    #[test]
    fn a_later_grant_with_a_lower_fence_fails_order() {
        let mut f = Fences::new(1, true, false);
        f.grant(grant(0, 1, 10, 0, 5));
        f.grant(grant(1, 1, 8, 3, 9)); // started before 5: allowed
        assert!(f.first.is_none());
        f.grant(grant(2, 1, 9, 6, 12)); // started after 5 with 9 < 10
        assert_eq!(f.first.as_ref().map(|v| v.0), Some(FenceViolation::Order));
    }

    #[test]
    fn the_store_refuses_stale_writes_and_catches_interleaving() {
        let mut f = Fences::new(1, true, false);
        let a = f.grant(grant(0, 1, 10, 0, 1));
        let b = f.grant(grant(1, 1, 20, 2, 3));
        assert_eq!(f.write(a, 0, 1, true), Write::Accepted);
        assert_eq!(f.write(a, 0, 2, true), Write::Accepted);
        assert_eq!(f.write(b, 0, 4, true), Write::Accepted);
        // A stale holder (its lease expired) is refused: no violation.
        assert_eq!(f.write(a, 0, 5, false), Write::Rejected { highest: 20 });
        assert!(f.first.is_none());
        // A valid holder refused is one.
        f.write(a, 0, 6, true);
        assert_eq!(
            f.first.as_ref().map(|v| v.0),
            Some(FenceViolation::ValidRejected)
        );

        // Two grants with one fence (already a uniqueness violation): the
        // store accepts A, B, A, and says so.
        let mut f = Fences::new(1, false, false);
        let a = f.grant(grant(0, 1, 10, 0, 1));
        let b = f.grant(grant(1, 1, 10, 0, 2));
        f.first = None;
        f.write(a, 0, 3, true);
        f.write(b, 0, 4, true);
        assert!(f.first.is_none());
        f.write(a, 0, 5, true);
        assert_eq!(
            f.first.as_ref().map(|v| v.0),
            Some(FenceViolation::Interleaved)
        );
    }

    #[test]
    fn with_the_lock_broken_a_refused_valid_holder_is_not_a_violation() {
        let mut f = Fences::new(1, false, true);
        let a = f.grant(grant(0, 1, 10, 0, 1));
        let b = f.grant(grant(1, 1, 20, 0, 2));
        f.write(b, 0, 3, true);
        assert_eq!(f.write(a, 0, 4, true), Write::Rejected { highest: 20 });
        assert!(f.first.is_none());
        assert_eq!(f.rejected.as_deref(), Some(&[(0, 0, 4)][..]));
    }
}
