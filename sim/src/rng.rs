//! Deterministic randomness: one root seed, one independent stream per
//! subsystem.
//!
//! Every stream is derived from `(root seed, stream id)` alone, never from
//! another stream's state, so drawing more numbers in one subsystem (say, a
//! new network delay) never shifts what another subsystem (say, the fault
//! schedule) draws. The generator is xoshiro256** seeded through SplitMix64:
//! small, fast, and identical on every platform.

use core::convert::Infallible;

/// Stream ids: one per subsystem.
pub(crate) mod stream {
    /// Network delays, jitter and reply splitting.
    pub(crate) const NET: u64 = 1;
    /// The fault schedule (safe menu and unsafe faults).
    pub(crate) const FAULTS: u64 = 2;
    /// Clock rates and offsets of nodes and clients.
    pub(crate) const CLOCKS: u64 = 3;
    /// Per-seed options ("swarm": which faults, how many resources, TTL,
    /// the network's delay shape, the retry policy).
    pub(crate) const SWARM: u64 = 4;
    /// Extra reply delays of slow nodes.
    pub(crate) const SLOW: u64 = 5;
    /// Connection resets in the middle of a pipeline.
    pub(crate) const RESETS: u64 = 6;
    /// Per-seed fencing options: which clients are fenced, their wall
    /// clocks (skews and steps).
    pub(crate) const FENCING: u64 = 7;
    /// Per-seed multi-resource options: which set each client locks.
    pub(crate) const SETS: u64 = 8;
    /// Per-seed network options added after the first menu (independent
    /// connections).
    pub(crate) const NET_OPTIONS: u64 = 9;
    /// Client `i`'s workload decisions: `WORKLOAD + 2 * i`.
    pub(crate) const WORKLOAD: u64 = 100;
    /// Client `i`'s tokens and retry jitter seeds: `TOKENS + 2 * i`.
    pub(crate) const TOKENS: u64 = 101;
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A xoshiro256** generator.
#[derive(Clone, Debug)]
pub(crate) struct SimRng {
    s: [u64; 4],
}

impl SimRng {
    /// The stream `id` of root seed `seed`.
    pub(crate) fn stream(seed: u64, id: u64) -> SimRng {
        let mut sm = seed ^ id.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        // Mix twice so that nearby (seed, id) pairs are far apart.
        let _ = splitmix(&mut sm);
        SimRng {
            s: [
                splitmix(&mut sm),
                splitmix(&mut sm),
                splitmix(&mut sm),
                splitmix(&mut sm),
            ],
        }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`0` when `n == 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi <= lo`).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// Roughly log-uniform in `lo..=hi`: a power-of-two band is chosen
    /// uniformly, then a value uniformly inside it (`lo.max(1)` when
    /// `hi <= lo`). Integer-only, so identical on every platform.
    pub(crate) fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let lo = lo.max(1);
        if hi <= lo {
            return lo;
        }
        let bands = u64::from(64 - (hi / lo).leading_zeros());
        let k = self.below(bands) as u32;
        let a = lo.saturating_mul(1 << k).min(hi);
        let b = lo.saturating_mul(1 << (k + 1)).min(hi);
        self.range(a, b)
    }

    /// True with probability `num / den`.
    pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// Uniform index into a slice of length `len` (which must be > 0).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

// The core takes tokens from a `CryptoRng`. A simulator needs reproducible
// tokens instead of secret ones, so this deterministic generator stands in.
impl redlock_core::rand_core::TryRng for SimRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next_u64() >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

impl redlock_core::rand_core::TryCryptoRng for SimRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_reproducible() {
        let mut a = SimRng::stream(7, stream::NET);
        let mut b = SimRng::stream(7, stream::NET);
        let mut c = SimRng::stream(7, stream::FAULTS);
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn ranges_stay_in_bounds() {
        let mut r = SimRng::stream(1, 1);
        for _ in 0..10_000 {
            let v = r.range(3, 9);
            assert!((3..=9).contains(&v));
            assert!(r.below(5) < 5);
        }
        assert_eq!(r.range(4, 4), 4);
        let mut small = 0;
        for _ in 0..10_000 {
            let v = r.log_range(10, 100_000);
            assert!((10..=100_000).contains(&v));
            if v < 1_000 {
                small += 1;
            }
        }
        // About half of the bands lie below 1,000: log-uniform, not uniform.
        assert!((3_000..7_000).contains(&small), "{small}");
        assert_eq!(r.log_range(0, 0), 1);
        assert_eq!(r.below(0), 0);
    }
}
