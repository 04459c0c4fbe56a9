//! Leases and resource sets in reused boxes.
//!
//! A core lease is about 1.1 KiB (its `ResourceSet` is inline, fixed
//! capacity), and every move of one by value is a copy of all of it: on its
//! way from the driver to the caller (the outcome, the reply slot, the
//! results) and in the caller's [`Lease`](crate::Lease) as it is returned
//! and passed on. So the driver puts each lease it answers into a box
//! taken from the client's spares ([`Spares::boxed_clone`]), and the caller's
//! `Lease` gives the box back when it is dropped ([`Spares::recycle`]):
//! after the first few cycles, no allocation, and a pointer instead of the
//! lease is what moves (`bench/PROFILE.md`). The resource set of an
//! acquire or a release command, and the lease of an extend command,
//! travel to the driver the same way. The same module as `redlock-tokio`'s.

use std::sync::{Mutex, MutexGuard, PoisonError};

use redlock_core::settings::IntoResources;
use redlock_core::{CommandError, Lease as CoreLease, ResourceSet};

/// Spare boxes kept at most, of each kind (about 1.1 KiB each): beyond
/// this many given back at once, boxes are freed.
const MAX_SPARE: usize = 1024;

/// A lease in a box from the client's spares.
pub(crate) type LeaseBox = Boxed<CoreLease>;
/// A resource set in a box from the client's spares.
pub(crate) type SetBox = Boxed<ResourceSet>;

/// One client's spare boxes of one kind.
#[derive(Debug)]
pub(crate) struct Spares<T> {
    /// The boxes themselves are kept: each is handed out whole.
    #[allow(clippy::vec_box)]
    boxes: Mutex<Vec<Box<T>>>,
}

impl<T> Default for Spares<T> {
    fn default() -> Spares<T> {
        Spares {
            boxes: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Spares<T> {
    #[allow(clippy::vec_box)]
    fn boxes(&self) -> MutexGuard<'_, Vec<Box<T>>> {
        // Plain data, consistent at every point: usable after a panic.
        self.boxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of `value` in a spare box (a new one only when none is
    /// spare), written in place: `clone_from`, which for a lease or a set
    /// copies the names' bytes, not the whole capacity.
    pub(crate) fn boxed_clone(&self, value: &T) -> Boxed<T>
    where
        T: Clone,
    {
        let spare = self.boxes().pop();
        Boxed(Some(match spare {
            Some(mut b) => {
                (*b).clone_from(value);
                b
            }
            None => Box::new(value.clone()),
        }))
    }

    /// Keeps `boxed`'s box for the next [`boxed_clone`](Self::boxed_clone) or `boxed_set`, leaving
    /// `boxed` empty: only for one that is being dropped (an empty one must
    /// never be read).
    pub(crate) fn recycle(&self, boxed: &mut Boxed<T>) {
        if let Some(b) = boxed.0.take() {
            let mut boxes = self.boxes();
            if boxes.len() < MAX_SPARE {
                boxes.push(b);
            }
        }
    }
}

impl Spares<ResourceSet> {
    /// The set of `resources` in a spare box, written in place
    /// ([`IntoResources::assign_to`]: for one name, only its bytes; a set
    /// made by value and then boxed would be copied whole, twice).
    pub(crate) fn boxed_set(&self, resources: impl IntoResources) -> Result<SetBox, CommandError> {
        // Taken before the user's conversion runs: no lock held meanwhile.
        let spare = self.boxes().pop();
        match spare {
            Some(mut b) => match resources.assign_to(&mut b) {
                Ok(()) => Ok(Boxed(Some(b))),
                Err(e) => {
                    // Unchanged on error: still a good spare.
                    self.recycle(&mut Boxed(Some(b)));
                    Err(e)
                }
            },
            None => Ok(Boxed(Some(Box::new(resources.into_resources()?)))),
        }
    }
}

/// A value in a box from [`Spares::boxed_clone`] or [`Spares::boxed_set`]; give the box back with
/// [`Spares::recycle`] (dropped, it is freed).
pub(crate) struct Boxed<T>(Option<Box<T>>);

impl<T> std::ops::Deref for Boxed<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.0 {
            Some(b) => b,
            // Only `recycle` empties one, as its owner is dropped.
            None => unreachable!("a recycled box was read"),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Boxed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(b) => b.fmt(f),
            None => f.write_str("(recycled)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redlock_core::{Instant, Token};
    use std::time::Duration;

    fn lease(name: &[u8]) -> CoreLease {
        let token = Token::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap();
        CoreLease::new(name, token, Instant::ZERO, Instant::ZERO, Duration::ZERO).unwrap()
    }

    #[test]
    fn a_recycled_box_is_reused_and_holds_the_new_lease() {
        let spares: Spares<CoreLease> = Spares::default();
        let mut a = spares.boxed_clone(&lease(b"a"));
        let first: *const CoreLease = &*a;
        spares.recycle(&mut a);
        assert_eq!(format!("{a:?}"), "(recycled)");
        let b = spares.boxed_clone(&lease(b"b"));
        assert_eq!(
            &*b as *const CoreLease, first,
            "the spare box was not reused"
        );
        assert_eq!(b.resource(), b"b");
    }

    #[test]
    fn a_boxed_clone_equals_the_original() {
        let spares: Spares<ResourceSet> = Spares::default();
        let one = ResourceSet::new(&[b"a".as_slice(), b"b"]).unwrap();
        let mut a = spares.boxed_clone(&one);
        assert_eq!(*a, one);
        spares.recycle(&mut a);
        let other = ResourceSet::one(b"c").unwrap();
        let b = spares.boxed_clone(&other);
        assert_eq!(*b, other);
    }

    #[test]
    fn a_boxed_set_reuses_a_spare_and_keeps_it_on_error() {
        let spares: Spares<ResourceSet> = Spares::default();
        let mut a = spares.boxed_set(["b", "a"]).unwrap();
        assert_eq!(a.len(), 2);
        let first: *const ResourceSet = &*a;
        spares.recycle(&mut a);
        assert!(spares.boxed_set("").is_err());
        let mut b = spares.boxed_set("jobs:1").unwrap();
        assert_eq!(
            &*b as *const ResourceSet, first,
            "the spare box was not reused"
        );
        assert_eq!(*b, ResourceSet::one(b"jobs:1").unwrap());
        spares.recycle(&mut b);
        let xy = ResourceSet::new(&[b"x".as_slice(), b"y"]).unwrap();
        let c = spares.boxed_set(&xy).unwrap();
        assert_eq!(&*c as *const ResourceSet, first);
        assert_eq!(*c, xy);
    }

    #[test]
    fn spares_are_bounded() {
        let spares: Spares<CoreLease> = Spares::default();
        let mut boxes: Vec<LeaseBox> = (0..MAX_SPARE + 5)
            .map(|_| spares.boxed_clone(&lease(b"x")))
            .collect();
        for b in &mut boxes {
            spares.recycle(b);
        }
        assert_eq!(spares.boxes().len(), MAX_SPARE);
    }
}
