//! # redlock-std: a blocking Redlock client on `std::net`
//!
//! A lock held by a majority of N independent Redis masters, with blocking
//! calls for ordinary threads.
//!
//! ```no_run
//! use std::time::Duration;
//! use redlock_std::{Client, LockOptions};
//!
//! let client = Client::builder()
//!     .nodes(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"])
//!     .ttl(Duration::from_secs(10))
//!     .build()?;
//!
//! // Held while the closure runs, extended in the background.
//! let total = client.with_lock("invoices", |signal| {
//!     assert!(!signal.is_lost());
//!     42
//! })?;
//!
//! // Or by hand: the lease releases on drop; `release` says how it went.
//! let lease = client.lock("reports")?;
//! println!("held for {:?}", lease.remaining());
//! lease.release()?;
//!
//! // Several resources at once (all or nothing on each node), fenced.
//! let lease = client.lock_with(["ledger", "invoices"], &LockOptions::new().fenced())?;
//! let fence = lease.fence().unwrap(); // pass it with every write
//! # Ok::<(), redlock_std::Error>(())
//! ```
//!
//! ## Which call to use
//! * A job that must run under the lock, however long it takes:
//!   [`Client::with_lock`] (or [`Client::lock_and_keep`] when the work is
//!   not one closure). The lease is extended in the background; watch the
//!   [`LossSignal`] and stop if it fires.
//! * A short critical section: [`Client::lock`], then [`Lease::release`].
//! * Skip the work if someone else has it: [`Client::try_lock`] (one
//!   attempt, [`Error::Busy`]).
//! * Per-call TTL, waiting, fencing: the `_with` variants and
//!   [`LockOptions`].
//! * Every lock call takes one resource or several ([`IntoResources`]):
//!   `"jobs:42"`, `["accounts:1", "accounts:2"]`, a `Vec<String>`.
//!
//! ## Fencing: keep the protected resource safe when timing fails
//! A lease is a promise about time; a paused process (GC, SIGSTOP, a VM
//! migration) can wake up after its lease ended and still believe it holds
//! the lock. With [`LockOptions::fenced`] each grant carries a **fence**
//! ([`Lease::fence`]): a number that grows with every grant of the
//! resource, safe across quorums (see [`redlock_core::fence`] for the
//! protocol, its proof and its conditions: the nodes must never lose their
//! fence registers, AOF with `appendfsync always`). The protected resource
//! refuses work whose fence is below one it has already accepted:
//! [`FenceGuard`] is that rule for a store you write yourself; in SQL,
//! inside one transaction:
//! ```text
//! UPDATE t SET ..., fence = $f WHERE id = $id AND fence <= $f
//! -- 0 rows: a holder with a newer fence exists; stop, you lost the lock.
//! ```
//! `<=` because fences are unique (an equal fence is the same holder). For
//! a read-modify-write, read and write in the same transaction, with the
//! fence check on the write.
//!
//! ```
//! use redlock_std::FenceGuard;
//! let mut store = FenceGuard::new(); // persist `highest()` with the data
//! assert!(store.admit(1_700).is_ok()); // holder A's write
//! assert!(store.admit(1_801).is_ok()); // holder B, granted after A lost it
//! assert!(store.admit(1_700).is_err()); // A wakes up and writes: refused
//! ```
//!
//! ## The model
//! All of Redlock's logic (quorum, validity, drift, retries, undoing failed
//! attempts, reply matching, per-node timeouts, reconnect backoff, the
//! fencing rounds) lives in the sans-IO [`redlock_core`]. This crate only
//! moves bytes and time:
//!
//! * Each [`Client`] owns **one driver thread** that owns the core and one
//!   pipelined connection per node, multiplexed with `mio`. Every call talks
//!   to all nodes at once, and many threads can share one client (it is
//!   `Clone`): their operations share the connections.
//! * A calling thread hands its command to the driver and blocks until the
//!   core reports the operation's result. The core bounds every wait: each
//!   node gets the configured node timeout per request, and a connect that
//!   takes longer than the node timeout counts as the node being down.
//! * One client runs up to 1024 operations at once. Acquires may take
//!   three quarters of them; the rest is kept for extending and releasing
//!   leases already held, so a flood of waiting acquires can never make a
//!   keeper's extension (or a dropped lease's release) fail locally. A call
//!   that finds no room waits for it, bounded by its own deadline (an
//!   acquire's retry budget, an extension's lease deadline), and only then
//!   fails with [`Error::Command`] (`TooManyOperations`): a local refusal,
//!   never reported as a loss.
//! * Tokens are 160 random bits from the operating system (`getrandom`),
//!   fetched before the core is called, so an OS failure is an
//!   [`Error::Io`], never a panic.
//! * `rediss://` nodes use rustls, trusting the Mozilla roots and any CA
//!   given to [`Builder::tls_ca_pem`]. A TLS link counts as up (and gets
//!   requests) only once its handshake is complete, within the connect
//!   timeout.
//! * A node given by host name is resolved again at every reconnect, on a
//!   thread of its own (never on the driver thread): a slow resolver delays
//!   only that node. If the answer does not come within the node timeout,
//!   the addresses it last resolved to are used.
//! * Logs and spans go through `tracing` (resources, fence, nodes by
//!   redacted URL); they never contain a password or a token.
//!
//! A [`Lease`] releases itself when dropped (best-effort, without blocking).
//! Dropping the last handle of a client never blocks either: the driver
//! finishes what is in flight (such as that release) in the background,
//! within twice the node timeout, then exits; a process that exits at once
//! may cut it short, so call [`Lease::release`] to know the outcome, and
//! [`Client::flush`] before exiting. Should the driver thread ever die,
//! every call fails with [`Error::DriverStopped`], never hangs.
//!
//! [`Client::with_lock`] and [`Client::keep`] extend a lease in a background
//! thread at [`redlock_core::Lease::renew_at`] (a third into its validity).
//! An extension that fails is retried while another attempt can still
//! finish before the deadline; the loss is signalled ([`LossSignal`]) when
//! the nodes say our token is gone (within a node timeout of the renewal),
//! when no attempt can finish in time (about a node timeout before the
//! deadline), and in any case at the deadline ([`LossSignal::is_lost`] reads
//! the clock). Releasing a lease whose token no longer held the lock on a
//! quorum is [`Error::NotHeld`], never an `Ok` that reads as success.
//!
//! For devices with their own TCP stack, [`embedded`] drives the same core
//! over any `embedded_io::{Read, Write}` sockets and a caller's clock.
//!
//! Measured on a shared 2-core machine against 5 local redis-server
//! processes (debug build), an uncontended acquire+release takes about
//! 0.35 ms at the median and 0.7 ms at the 99th percentile
//! (`tests/tests/std_latency.rs`; noisy figures).

#![warn(missing_docs)]

pub use redlock_core::fence::{FenceGuard, StaleFence};
pub use redlock_core::{
    self as core, Config, FailureKind, IntoResources, LockError, LockOptions, NodeOutcome,
    ReleaseReport, ReleaseVerdict, ResourceSet, RetryPolicy, Token,
};

mod backlog;
mod client;
mod driver;
pub mod embedded;
mod error;
#[cfg(feature = "__test-hooks")]
#[doc(hidden)]
pub mod hooks;
mod keep;
mod lease;
mod resolve;
mod rng;
mod spare;
mod tls;

pub use client::{Builder, Cancel, Client};
pub use error::{Error, Failure, NodeFailure};
pub use keep::{KeptLease, LossSignal};
pub use lease::Lease;

/// The wall clock in ms since the Unix epoch: the hint of a fenced acquire
/// (a wrong clock costs a second round, never safety).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Resource names for logs: `a,b,c`, bytes that are not UTF-8 shown lossily.
pub(crate) struct Names<'a>(pub(crate) &'a ResourceSet);

impl std::fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", String::from_utf8_lossy(name))?;
        }
        Ok(())
    }
}

// The README's Rust examples compile (doctests, run by `cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
