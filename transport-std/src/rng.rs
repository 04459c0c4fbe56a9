//! Randomness for tokens: bytes from the operating system, fetched *before*
//! the core is called, so that an OS failure is a typed error, not a panic.
//!
//! `rand_core` 0.10 has no `OsRng`; the core wants a [`rand_core::CryptoRng`]
//! whose error type is `Infallible`. [`OsBytes`] is filled from `getrandom`
//! up front (fallibly) and then serves those bytes infallibly. The OS bytes
//! are drawn in bulk into a per-thread pool (see [`Pool`]).

use std::convert::Infallible;

/// How many OS bytes one acquire pre-fetches. The core draws 20 bytes for the
/// token and 8 for the retry-jitter seed: 64 leaves room.
const PREFETCH: usize = 64;

/// Acquires served by one OS call.
const POOL_DRAWS: usize = 64;

fn os_error(e: getrandom::Error) -> std::io::Error {
    std::io::Error::other(format!("OS random number generator: {e}"))
}

/// OS random bytes drawn in bulk, [`PREFETCH`] at a time: one `getrandom`
/// call every [`POOL_DRAWS`] acquires instead of one per acquire. Still
/// cryptographic: every byte comes from the OS and is served once (and
/// wiped from the pool as it is served). A forked child never serves the
/// parent's bytes: the pool is refilled when the process id changes.
struct Pool {
    buf: [u8; PREFETCH * POOL_DRAWS],
    /// Bytes before this were served (or never filled).
    pos: usize,
    /// The process that filled the pool.
    pid: u32,
}

impl Pool {
    fn take(&mut self, out: &mut [u8; PREFETCH]) -> std::io::Result<()> {
        let pid = std::process::id();
        if self.pos + PREFETCH > self.buf.len() || self.pid != pid {
            getrandom::fill(&mut self.buf).map_err(os_error)?;
            self.pos = 0;
            self.pid = pid;
        }
        let served = &mut self.buf[self.pos..self.pos + PREFETCH];
        out.copy_from_slice(served);
        served.fill(0);
        self.pos += PREFETCH;
        Ok(())
    }
}

thread_local! {
    /// Boxed on a thread's first acquire (one allocation per thread), so
    /// that threads that never lock carry no 4 KiB of thread-local storage.
    static POOL: std::cell::RefCell<Option<Box<Pool>>> = const { std::cell::RefCell::new(None) };
}

/// Fills `out` from this thread's pool; `None` while the thread is being
/// torn down (its pool is gone).
fn from_pool(out: &mut [u8; PREFETCH]) -> Option<std::io::Result<()>> {
    POOL.try_with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| {
                Box::new(Pool {
                    buf: [0; PREFETCH * POOL_DRAWS],
                    pos: PREFETCH * POOL_DRAWS,
                    pid: 0,
                })
            })
            .take(out)
    })
    .ok()
}

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
    /// Fresh bytes from the OS RNG, served from this thread's [`Pool`]
    /// (one OS call every [`POOL_DRAWS`] acquires).
    pub(crate) fn fetch() -> std::io::Result<OsBytes> {
        let mut buf = [0u8; PREFETCH];
        match from_pool(&mut buf) {
            Some(r) => r?,
            // The thread is being torn down: straight from the OS.
            None => getrandom::fill(&mut buf).map_err(os_error)?,
        }
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
    fn the_pool_serves_each_byte_once_and_refills() {
        // More draws than one fill serves: every draw differs, none is
        // the wiped (zero) remainder of a served one.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * POOL_DRAWS {
            let bytes = OsBytes::fetch().unwrap().buf;
            assert_ne!(bytes, [0u8; PREFETCH]);
            assert!(seen.insert(bytes), "a draw was served twice");
        }
    }

    #[test]
    fn tokens_are_128_bits_or_more() {
        let t = redlock_core::Token::generate(&mut OsBytes::fetch().unwrap());
        const { assert!(redlock_core::TOKEN_RANDOM_BYTES * 8 >= 128) };
        assert_eq!(t.as_bytes().len(), 2 * redlock_core::TOKEN_RANDOM_BYTES);
    }
}
