//! Leases in reused boxes.
//!
//! A core lease is about 1.1 KiB (its `ResourceSet` is inline, fixed
//! capacity), and every move of one by value is a copy of all of it: on its
//! way from the driver to the caller (the answer, the reply cell, the
//! futures' states) and in the caller's [`Lease`](crate::Lease) as it is returned
//! and passed on. So the driver puts each lease it answers into a box
//! taken from the client's spares ([`Spares::boxed`]), and the caller's
//! `Lease` gives the box back when it is dropped ([`Spares::recycle`]):
//! after the first few cycles, no allocation, and a pointer instead of the
//! lease is what moves (`bench/PROFILE.md`). The same module as
//! `redlock-std`'s.

use std::sync::{Mutex, MutexGuard, PoisonError};

use redlock_core::Lease as CoreLease;

/// Spare boxes kept at most (about 1.1 KiB each): beyond this many leases
/// given back at once, boxes are freed.
const MAX_SPARE: usize = 1024;

/// One client's spare lease boxes.
#[derive(Debug, Default)]
pub(crate) struct Spares {
    /// The boxes themselves are kept: each is handed out whole.
    #[allow(clippy::vec_box)]
    boxes: Mutex<Vec<Box<CoreLease>>>,
}

impl Spares {
    #[allow(clippy::vec_box)]
    fn boxes(&self) -> MutexGuard<'_, Vec<Box<CoreLease>>> {
        // Plain data, consistent at every point: usable after a panic.
        self.boxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `lease` in a spare box (a new one only when none is spare).
    pub(crate) fn boxed(&self, lease: CoreLease) -> LeaseBox {
        let spare = self.boxes().pop();
        LeaseBox(Some(match spare {
            Some(mut b) => {
                *b = lease;
                b
            }
            None => Box::new(lease),
        }))
    }

    /// Keeps `lease`'s box for the next [`boxed`](Self::boxed), leaving
    /// `lease` empty: only for one that is being dropped (an empty one must
    /// never be read).
    pub(crate) fn recycle(&self, lease: &mut LeaseBox) {
        if let Some(b) = lease.0.take() {
            let mut boxes = self.boxes();
            if boxes.len() < MAX_SPARE {
                boxes.push(b);
            }
        }
    }
}

/// A core lease in a box from [`Spares::boxed`]; give the box back with
/// [`Spares::recycle`] (dropped, it is freed).
pub(crate) struct LeaseBox(Option<Box<CoreLease>>);

impl std::ops::Deref for LeaseBox {
    type Target = CoreLease;

    fn deref(&self) -> &CoreLease {
        match &self.0 {
            Some(b) => b,
            // Only `recycle` empties one, as its owner is dropped.
            None => unreachable!("a recycled lease box was read"),
        }
    }
}

impl std::fmt::Debug for LeaseBox {
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
        let spares = Spares::default();
        let mut a = spares.boxed(lease(b"a"));
        let first: *const CoreLease = &*a;
        spares.recycle(&mut a);
        assert_eq!(format!("{a:?}"), "(recycled)");
        let b = spares.boxed(lease(b"b"));
        assert_eq!(
            &*b as *const CoreLease, first,
            "the spare box was not reused"
        );
        assert_eq!(b.resource(), b"b");
    }

    #[test]
    fn spares_are_bounded() {
        let spares = Spares::default();
        let mut boxes: Vec<LeaseBox> = (0..MAX_SPARE + 5)
            .map(|_| spares.boxed(lease(b"x")))
            .collect();
        for b in &mut boxes {
            spares.recycle(b);
        }
        assert_eq!(spares.boxes().len(), MAX_SPARE);
    }
}
