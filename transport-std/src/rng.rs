//! Randomness for tokens: bytes from the operating system, fetched *before*
//! the core is called, so that an OS failure is a typed error, not a panic.
//!
//! `rand_core` 0.10 has no `OsRng`; the core wants a [`rand_core::CryptoRng`]
//! whose error type is `Infallible`. [`OsBytes`] is filled from `getrandom`
//! up front (fallibly) and then serves those bytes infallibly.

use std::convert::Infallible;

/// How many OS bytes one acquire pre-fetches. The core draws 20 bytes for the
/// token and 8 for the retry-jitter seed: 64 leaves room.
const PREFETCH: usize = 64;

/// A cryptographically secure RNG serving bytes fetched from the OS by
/// [`OsBytes::fetch`].
///
/// Should the core ever draw more than was prefetched, more bytes are read
/// from the OS; if that fails the process aborts (never a predictable token).
#[derive(Debug)]
pub(crate) struct OsBytes {
    buf: [u8; PREFETCH],
    pos: usize,
}

impl OsBytes {
    /// Fetches fresh bytes from the OS RNG.
    pub(crate) fn fetch() -> std::io::Result<OsBytes> {
        let mut buf = [0u8; PREFETCH];
        getrandom::fill(&mut buf)
            .map_err(|e| std::io::Error::other(format!("OS random number generator: {e}")))?;
        Ok(OsBytes { buf, pos: 0 })
    }

    fn take(&mut self, dst: &mut [u8]) {
        for b in dst {
            if self.pos == PREFETCH {
                if let Err(e) = getrandom::fill(&mut self.buf) {
                    tracing::error!("OS random number generator failed: {e}");
                    std::process::abort();
                }
                self.pos = 0;
            }
            *b = self.buf[self.pos];
            self.pos += 1;
        }
    }
}

impl rand_core::TryRng for OsBytes {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.take(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.take(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.take(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for OsBytes {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn serves_distinct_bytes_and_refills() {
        let mut a = OsBytes::fetch().unwrap();
        let mut b = OsBytes::fetch().unwrap();
        assert_ne!(a.next_u64(), b.next_u64());
        let mut big = [0u8; 300];
        a.fill_bytes(&mut big);
        assert!(big.iter().any(|&x| x != 0));
    }

    #[test]
    fn tokens_are_128_bits_or_more() {
        let t = redlock_core::Token::generate(&mut OsBytes::fetch().unwrap());
        const { assert!(redlock_core::TOKEN_RANDOM_BYTES * 8 >= 128) };
        assert_eq!(t.as_bytes().len(), 2 * redlock_core::TOKEN_RANDOM_BYTES);
    }
}
