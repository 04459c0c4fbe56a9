//! Drifting clocks: each node and client reads true time through its own
//! linear clock (a rate error in parts per million plus an offset), and a
//! node's clock may jump forward.
//!
//! True time is the simulator's virtual time in microseconds; nobody but
//! the checker sees it.

/// A linear clock: `local(t) = offset + t + t * ppm / 1e6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Clock {
    /// Rate error, parts per million (negative = slow).
    pub(crate) ppm: i64,
    /// Offset in microseconds (jumps add to it).
    pub(crate) offset: u64,
}

impl Clock {
    /// Local reading at true time `t` (µs).
    pub(crate) fn local(&self, t: u64) -> u64 {
        // i64 is plenty (2^63 µs is 290,000 years) and much faster than i128.
        let t = t as i64;
        let v = (self.offset as i64)
            .saturating_add(t.saturating_add(t.saturating_mul(self.ppm) / 1_000_000));
        v.max(0) as u64
    }

    /// The earliest true time at which the local reading is `>= target`
    /// (never earlier than `now`).
    pub(crate) fn true_at(&self, target: u64, now: u64) -> u64 {
        if self.local(now) >= target {
            return now;
        }
        let delta = i128::from(target) - i128::from(self.offset);
        let mut t =
            (delta * 1_000_000 / (1_000_000 + i128::from(self.ppm))).max(i128::from(now)) as u64;
        // Integer rounding: step to the exact crossing.
        while self.local(t) < target {
            t += 1;
        }
        while t > now && self.local(t - 1) >= target {
            t -= 1;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_at_inverts_local() {
        for ppm in [-2000, -1, 0, 1, 1999] {
            let c = Clock {
                ppm,
                offset: 12_345,
            };
            for target in [20_000u64, 1_000_000, 7_777_777] {
                let t = c.true_at(target, 0);
                assert!(c.local(t) >= target);
                assert!(t == 0 || c.local(t - 1) < target);
            }
            assert_eq!(c.true_at(0, 50), 50);
        }
    }
}
