//! The resources one lease covers: one name, or several taken all or nothing.

use core::fmt;

use crate::config::MAX_RESOURCE_LEN;
use crate::event::CommandError;

/// The most resources one lease can cover.
pub const MAX_RESOURCES: usize = 8;
/// The most bytes all the resource names of one lease may take together.
pub const MAX_RESOURCE_SET_LEN: usize = 4 * MAX_RESOURCE_LEN;

/// The resources (Redis keys) of one lock, normalised: sorted bytewise and
/// without duplicates, so the same names in any order, repeated or not, make
/// the same set and the same lock. Each name is 1..=[`MAX_RESOURCE_LEN`]
/// bytes; a set holds 1..=[`MAX_RESOURCES`] names of at most
/// [`MAX_RESOURCE_SET_LEN`] bytes together. Fixed capacity, no allocation.
///
/// ```
/// use redlock_core::ResourceSet;
///
/// let a = ResourceSet::new(&[b"b".as_slice(), b"a", b"b"]).unwrap();
/// let b = ResourceSet::new(&[b"a".as_slice(), b"b"]).unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.len(), 2);
/// assert_eq!(a.iter().collect::<Vec<_>>(), [b"a".as_slice(), b"b"]);
/// assert!(ResourceSet::new(&[]).is_err());
/// assert!(ResourceSet::new(&[b"".as_slice()]).is_err());
/// ```
#[derive(PartialEq, Eq, Hash)]
pub struct ResourceSet {
    bytes: heapless::Vec<u8, MAX_RESOURCE_SET_LEN>,
    /// End offset of each name in `bytes`.
    ends: heapless::Vec<u16, MAX_RESOURCES>,
}

impl ResourceSet {
    /// A set of one resource.
    ///
    /// ```
    /// # use redlock_core::ResourceSet;
    /// assert_eq!(ResourceSet::one(b"jobs:1").unwrap().first(), b"jobs:1");
    /// assert!(ResourceSet::one(&[b'x'; 300]).is_err());
    /// ```
    pub fn one(resource: &[u8]) -> Result<ResourceSet, CommandError> {
        ResourceSet::new(&[resource])
    }

    /// The normalised set of `resources`. [`CommandError::BadResource`] when
    /// a name is empty or too long, when there is none, or when they exceed
    /// the capacity.
    ///
    /// ```
    /// # use redlock_core::{CommandError, ResourceSet};
    /// let many: Vec<&[u8]> = vec![b"x".as_slice(); 3];
    /// assert_eq!(ResourceSet::new(&many).unwrap().len(), 1);
    /// let names: Vec<Vec<u8>> = (0..9).map(|i| vec![b'a' + i]).collect();
    /// let refs: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
    /// assert_eq!(ResourceSet::new(&refs), Err(CommandError::BadResource));
    /// ```
    pub fn new(resources: &[&[u8]]) -> Result<ResourceSet, CommandError> {
        if resources.is_empty() {
            return Err(CommandError::BadResource);
        }
        let mut set = ResourceSet {
            bytes: heapless::Vec::new(),
            ends: heapless::Vec::new(),
        };
        for r in resources {
            set.insert(r)?;
        }
        Ok(set)
    }

    /// A set of no resource: only a placeholder, for a set about to be
    /// written in place (`clone_from`); never handed out empty.
    pub(crate) const fn placeholder() -> ResourceSet {
        ResourceSet {
            bytes: heapless::Vec::new(),
            ends: heapless::Vec::new(),
        }
    }

    /// Makes this the set of the one resource `resource`, in place: only the
    /// name's bytes are written. A set is about 1 KiB (fixed capacity), and
    /// a new one returned by value, like [`ResourceSet::one`]'s, is a copy
    /// of all of it; this is for a set kept in a reused buffer.
    /// [`CommandError::BadResource`] when the name is empty or longer than
    /// [`MAX_RESOURCE_LEN`], and then the set is unchanged.
    ///
    /// ```
    /// # use redlock_core::{CommandError, ResourceSet};
    /// let mut set = ResourceSet::new(&[b"a".as_slice(), b"b"]).unwrap();
    /// set.assign_one(b"jobs:1").unwrap();
    /// assert_eq!(set, ResourceSet::one(b"jobs:1").unwrap());
    /// assert_eq!(set.assign_one(b""), Err(CommandError::BadResource));
    /// assert_eq!(set.first(), b"jobs:1");
    /// ```
    pub fn assign_one(&mut self, resource: &[u8]) -> Result<(), CommandError> {
        if resource.is_empty() || resource.len() > MAX_RESOURCE_LEN {
            return Err(CommandError::BadResource);
        }
        self.bytes.clear();
        self.ends.clear();
        // Cannot fail: one valid name in an empty set.
        self.insert(resource)
    }

    /// Inserts `name` at its sorted place (nothing if already present).
    fn insert(&mut self, name: &[u8]) -> Result<(), CommandError> {
        if name.is_empty() || name.len() > MAX_RESOURCE_LEN {
            return Err(CommandError::BadResource);
        }
        let mut at = self.len();
        for (i, have) in self.iter().enumerate() {
            match name.cmp(have) {
                core::cmp::Ordering::Equal => return Ok(()),
                core::cmp::Ordering::Less => {
                    at = i;
                    break;
                }
                core::cmp::Ordering::Greater => {}
            }
        }
        if self.ends.is_full() || self.bytes.len() + name.len() > MAX_RESOURCE_SET_LEN {
            return Err(CommandError::BadResource);
        }
        let start = if at == 0 {
            0
        } else {
            usize::from(self.ends[at - 1])
        };
        let old_len = self.bytes.len();
        // Cannot fail: room was checked above.
        let _ = self.bytes.resize(old_len + name.len(), 0);
        self.bytes.copy_within(start..old_len, start + name.len());
        self.bytes[start..start + name.len()].copy_from_slice(name);
        let _ = self.ends.insert(at, start as u16);
        for e in self.ends.iter_mut().skip(at) {
            *e += name.len() as u16;
        }
        Ok(())
    }

    /// Number of resources (at least 1).
    ///
    /// ```
    /// # use redlock_core::ResourceSet;
    /// assert_eq!(ResourceSet::one(b"r").unwrap().len(), 1);
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The `i`-th resource in sorted order.
    ///
    /// ```
    /// # use redlock_core::ResourceSet;
    /// let s = ResourceSet::new(&[b"b".as_slice(), b"a"]).unwrap();
    /// assert_eq!(s.get(1), Some(b"b".as_slice()));
    /// assert_eq!(s.get(2), None);
    /// ```
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = usize::from(*self.ends.get(i)?);
        let start = if i == 0 {
            0
        } else {
            usize::from(self.ends[i - 1])
        };
        self.bytes.get(start..end)
    }

    /// The first resource in sorted order (the only one of a single lock).
    ///
    /// ```
    /// # use redlock_core::ResourceSet;
    /// assert_eq!(ResourceSet::new(&[b"z".as_slice(), b"m"]).unwrap().first(), b"m");
    /// ```
    pub fn first(&self) -> &[u8] {
        self.get(0).unwrap_or(&[])
    }

    /// The resources in sorted order.
    ///
    /// ```
    /// # use redlock_core::ResourceSet;
    /// assert_eq!(ResourceSet::one(b"r").unwrap().iter().count(), 1);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// Whether `resource` is in the set.
    ///
    /// ```
    /// # use redlock_core::ResourceSet;
    /// assert!(ResourceSet::one(b"r").unwrap().contains(b"r"));
    /// ```
    pub fn contains(&self, resource: &[u8]) -> bool {
        self.iter().any(|r| r == resource)
    }

    /// Whether the two sets share a resource.
    ///
    /// ```
    /// # use redlock_core::ResourceSet;
    /// let ab = ResourceSet::new(&[b"a".as_slice(), b"b"]).unwrap();
    /// let bc = ResourceSet::new(&[b"b".as_slice(), b"c"]).unwrap();
    /// assert!(ab.overlaps(&bc));
    /// assert!(!ab.overlaps(&ResourceSet::one(b"c").unwrap()));
    /// ```
    pub fn overlaps(&self, other: &ResourceSet) -> bool {
        self.iter().any(|r| other.contains(r))
    }
}

impl Clone for ResourceSet {
    fn clone(&self) -> ResourceSet {
        ResourceSet {
            bytes: self.bytes.clone(),
            ends: self.ends.clone(),
        }
    }

    /// Copies only the names' bytes, not the whole capacity (the derived
    /// one would copy about 1 KiB whatever the names' length).
    fn clone_from(&mut self, source: &ResourceSet) {
        self.bytes.clear();
        self.ends.clear();
        // Cannot fail: the same capacities.
        let _ = self.bytes.extend_from_slice(&source.bytes);
        let _ = self.ends.extend_from_slice(&source.ends);
    }
}

impl fmt::Debug for ResourceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(crate::event::Bytes))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_from_and_assign_one_make_equal_sets() {
        let many = ResourceSet::new(&[b"c".as_slice(), b"a", b"b"]).unwrap();
        let one = ResourceSet::one(b"zz").unwrap();
        let mut s = one.clone();
        s.clone_from(&many);
        assert_eq!(s, many);
        assert_eq!(
            s.iter().collect::<heapless::Vec<_, 3>>(),
            many.iter().collect::<heapless::Vec<_, 3>>()
        );
        s.clone_from(&one);
        assert_eq!(s, one);
        assert_eq!(s.len(), 1);
        s.clone_from(&many);
        s.assign_one(b"q").unwrap();
        assert_eq!(s, ResourceSet::one(b"q").unwrap());
        assert_eq!(
            s.assign_one(&[b'x'; MAX_RESOURCE_LEN + 1]),
            Err(CommandError::BadResource)
        );
        assert_eq!(s, ResourceSet::one(b"q").unwrap());
        s.assign_one(&[b'x'; MAX_RESOURCE_LEN]).unwrap();
        assert_eq!(s.first(), &[b'x'; MAX_RESOURCE_LEN][..]);
    }

    #[test]
    fn normalises_any_order_and_duplicates() {
        let orders: [&[&[u8]]; 4] = [
            &[b"c", b"a", b"b"],
            &[b"a", b"b", b"c"],
            &[b"b", b"c", b"a", b"a", b"c"],
            &[b"c", b"b", b"a"],
        ];
        let sets: Vec<ResourceSet> = orders
            .iter()
            .map(|o| ResourceSet::new(o).unwrap())
            .collect();
        for s in &sets {
            assert_eq!(s, &sets[0]);
            assert_eq!(s.iter().collect::<Vec<_>>(), [b"a".as_slice(), b"b", b"c"]);
        }
    }

    #[test]
    fn prefixes_sort_before_longer_names() {
        let s = ResourceSet::new(&[b"ab".as_slice(), b"a", b"abc", b"b"]).unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [b"a".as_slice(), b"ab", b"abc", b"b"]
        );
    }

    #[test]
    fn capacity_limits_are_errors() {
        let long = [b'x'; MAX_RESOURCE_LEN];
        let names: Vec<Vec<u8>> = (0..5u8)
            .map(|i| {
                let mut v = long.to_vec();
                v[0] = i;
                v
            })
            .collect();
        let refs: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
        assert!(ResourceSet::new(&refs[..4]).is_ok());
        assert_eq!(ResourceSet::new(&refs), Err(CommandError::BadResource));
        assert_eq!(
            ResourceSet::new(&[&[b'y'; MAX_RESOURCE_LEN + 1][..]]),
            Err(CommandError::BadResource)
        );
    }
}
