//! One monotonic clock for the whole soak, and the timeline of which nodes
//! were down when.
//!
//! A node counts as down from just *before* the signal that takes it down
//! (SIGKILL, SIGSTOP) until just *after* it is back (the restarted server
//! answers, or SIGCONT was sent): the down intervals recorded here contain
//! the real ones, so "every node was up" is never claimed for a moment when
//! one was not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Nanoseconds since the start of the soak, from one `Instant`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }

    /// Now, in ns since the start.
    pub(crate) fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// `t` in ns since the start (0 if earlier).
    pub(crate) fn at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The `Instant` `ns` after the start.
    pub(crate) fn instant(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns)
    }
}

/// Which nodes were down, over time: a bit mask per change.
#[derive(Debug)]
pub(crate) struct Timeline {
    clock: Clock,
    /// `(since_ns, mask)`, in time order; starts with every node up.
    changes: Mutex<Vec<(u64, u32)>>,
}

impl Timeline {
    pub(crate) fn new(clock: Clock) -> Timeline {
        Timeline {
            clock,
            changes: Mutex::new(vec![(0, 0)]),
        }
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u32)>> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `node` down or up, now; returns the instant recorded.
    pub(crate) fn set(&self, node: usize, down: bool) -> u64 {
        let mut c = self.changes();
        let now = self.clock.now();
        let last = c.last().map_or(0, |&(_, m)| m);
        let mask = if down {
            last | (1 << node)
        } else {
            last & !(1 << node)
        };
        c.push((now, mask));
        now
    }

    /// Every change so far: `(since_ns, mask)`.
    pub(crate) fn changes_list(&self) -> Vec<(u64, u32)> {
        self.changes().clone()
    }

    /// The mask now.
    pub(crate) fn mask(&self) -> u32 {
        self.changes().last().map_or(0, |&(_, m)| m)
    }

    /// Whether `node` is down now.
    pub(crate) fn is_down(&self, node: usize) -> bool {
        self.mask() & (1 << node) != 0
    }

    /// The most nodes down at any moment of `[t0, t1]`.
    pub(crate) fn max_down(&self, t0: u64, t1: u64) -> u32 {
        self.masks_during(t0, t1)
            .into_iter()
            .map(u32::count_ones)
            .max()
            .unwrap_or(0)
    }

    /// Whether `node` was up during the whole of `[t0, t1]`.
    pub(crate) fn up_throughout(&self, node: usize, t0: u64, t1: u64) -> bool {
        self.masks_during(t0, t1)
            .into_iter()
            .all(|m| m & (1 << node) == 0)
    }

    /// Every mask in force at some moment of `[t0, t1]`.
    fn masks_during(&self, t0: u64, t1: u64) -> Vec<u32> {
        let c = self.changes();
        // The change in force at t0: the last one at or before it.
        let first = c.partition_point(|&(t, _)| t <= t0).saturating_sub(1);
        c[first..]
            .iter()
            .take_while(|&&(t, _)| t <= t1.max(t0))
            .map(|&(_, m)| m)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(changes: Vec<(u64, u32)>) -> Timeline {
        Timeline {
            clock: Clock::new(),
            changes: Mutex::new(changes),
        }
    }

    #[test]
    fn max_down_covers_changes_inside_and_before() {
        // node 0 down 10..20, nodes 0+1 down 15..20, all up from 20.
        let t = timeline(vec![(0, 0), (10, 0b1), (15, 0b11), (20, 0b10), (25, 0)]);
        assert_eq!(t.max_down(0, 9), 0);
        assert_eq!(t.max_down(0, 10), 1);
        assert_eq!(t.max_down(11, 12), 1, "the change in force at t0 counts");
        assert_eq!(t.max_down(12, 16), 2);
        assert_eq!(t.max_down(26, 30), 0);
        assert!(t.up_throughout(1, 0, 14));
        assert!(!t.up_throughout(1, 0, 15));
        assert!(!t.up_throughout(0, 12, 12));
        assert!(t.up_throughout(0, 20, 30));
    }

    #[test]
    fn set_keeps_other_nodes() {
        let t = Timeline::new(Clock::new());
        t.set(2, true);
        t.set(4, true);
        t.set(2, false);
        assert_eq!(t.mask(), 0b1_0000);
        assert!(t.is_down(4) && !t.is_down(2));
    }
}
