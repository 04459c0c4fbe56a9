//! Randomness from the operating system, shaped for the core.
//!
//! The core draws a lock's token (160 bits) and its retry-jitter seed from a
//! [`rand_core::CryptoRng`], whose methods cannot fail. The OS source can
//! (in theory), so the bytes are drawn *before* the core is called, by
//! [`Prefilled::from_os`]; a failure there is an ordinary
//! [`Error::Io`](crate::Error::Io) returned by `lock()`, never a panic inside
//! the core.

use std::convert::Infallible;
use std::io;

use rand_core::{TryCryptoRng, TryRng};

/// The operating system's secure random source (`getrandom`), as a
/// fallible `rand_core` 0.10 generator.
///
/// ```
/// use rand_core::TryRng;
/// let mut rng = redlock_tokio::OsRng;
/// let mut buf = [0u8; 16];
/// rng.try_fill_bytes(&mut buf).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRng;

impl TryRng for OsRng {
    type Error = getrandom::Error;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        getrandom::u32()
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        getrandom::u64()
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        getrandom::fill(dst)
    }
}

impl TryCryptoRng for OsRng {}

/// Bytes the core may draw for one command (token + jitter seed need 28).
const PREFILL: usize = 64;

/// OS randomness drawn ahead of time, so that the infallible generator the
/// core needs cannot fail while the core is using it.
#[derive(Clone)]
pub(crate) struct Prefilled {
    buf: [u8; PREFILL],
    pos: usize,
    /// Only used if the core ever asked for more than [`PREFILL`] bytes and
    /// the OS refused to give more: a SplitMix64 stream keyed by the
    /// prefilled (secret, random) bytes.
    fallback: u64,
}

impl std::fmt::Debug for Prefilled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prefilled(<secret>)")
    }
}

fn os_error(e: getrandom::Error) -> io::Error {
    io::Error::other(format!("OS random source failed: {e}"))
}

/// Acquires served by one OS call.
const POOL_DRAWS: usize = 64;

/// OS random bytes drawn in bulk, [`PREFILL`] at a time: one `getrandom`
/// call every [`POOL_DRAWS`] acquires instead of one per acquire. Still
/// cryptographic: every byte comes from the OS and is served once (and
/// wiped from the pool as it is served). A forked child never serves the
/// parent's bytes: the pool is refilled when the process id changes.
struct Pool {
    buf: [u8; PREFILL * POOL_DRAWS],
    /// Bytes before this were served (or never filled).
    pos: usize,
    /// The process that filled the pool.
    pid: u32,
}

impl Pool {
    fn take(&mut self, out: &mut [u8; PREFILL]) -> io::Result<()> {
        let pid = std::process::id();
        if self.pos + PREFILL > self.buf.len() || self.pid != pid {
            OsRng.try_fill_bytes(&mut self.buf).map_err(os_error)?;
            self.pos = 0;
            self.pid = pid;
        }
        let served = &mut self.buf[self.pos..self.pos + PREFILL];
        out.copy_from_slice(served);
        served.fill(0);
        self.pos += PREFILL;
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
fn from_pool(out: &mut [u8; PREFILL]) -> Option<std::io::Result<()>> {
    POOL.try_with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| {
                Box::new(Pool {
                    buf: [0; PREFILL * POOL_DRAWS],
                    pos: PREFILL * POOL_DRAWS,
                    pid: 0,
                })
            })
            .take(out)
    })
    .ok()
}

impl Prefilled {
    /// Fresh bytes from the OS, served from this thread's [`Pool`] (one OS
    /// call every [`POOL_DRAWS`] acquires).
    pub(crate) fn from_os() -> io::Result<Prefilled> {
        let mut buf = [0u8; PREFILL];
        match from_pool(&mut buf) {
            Some(r) => r?,
            // The thread is being torn down: straight from the OS.
            None => OsRng.try_fill_bytes(&mut buf).map_err(os_error)?,
        }
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&buf[PREFILL - 8..]);
        Ok(Prefilled {
            buf,
            pos: 0,
            fallback: u64::from_le_bytes(seed),
        })
    }

    fn next_byte(&mut self) -> u8 {
        if self.pos == PREFILL {
            // Not reached by the core's current use (28 bytes); refill.
            if getrandom::fill(&mut self.buf).is_err() {
                for chunk in self.buf.chunks_mut(8) {
                    self.fallback = self.fallback.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = self.fallback;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^= z >> 31;
                    chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
                }
            }
            self.pos = 0;
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        b
    }
}

impl TryRng for Prefilled {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst {
            *d = self.next_byte();
        }
        Ok(())
    }
}

impl TryCryptoRng for Prefilled {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn the_pool_serves_each_byte_once_and_refills() {
        // More draws than one fill serves: every draw differs, none is
        // the wiped (zero) remainder of a served one.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * POOL_DRAWS {
            let bytes = Prefilled::from_os().unwrap().buf;
            assert_ne!(bytes, [0u8; PREFILL]);
            assert!(seen.insert(bytes), "a draw was served twice");
        }
    }

    #[test]
    fn prefilled_gives_distinct_streams_and_never_runs_dry() {
        let mut a = Prefilled::from_os().unwrap();
        let mut b = Prefilled::from_os().unwrap();
        assert_ne!(a.next_u64(), b.next_u64());
        let mut big = [0u8; 1000];
        a.fill_bytes(&mut big);
        assert!(big.iter().any(|&x| x != 0));
    }
}
