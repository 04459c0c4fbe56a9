//! # redlock-tokio: an async Redlock client
//!
//! A lock held by a majority of N independent Redis masters, for tokio
//! programs. All of the algorithm (quorum, validity, drift, retries with
//! jitter, undoing failed attempts, reply matching, the fencing rounds) is
//! in the sans-IO [`redlock_core`]; this crate only moves bytes and time
//! for it. `redlock-std` has the same API, blocking.
//!
//! ```no_run
//! use std::time::Duration;
//! use redlock_tokio::{Client, Error, LockOptions};
//!
//! # async fn run() -> Result<(), Error> {
//! let client = Client::builder()
//!     .nodes(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"])
//!     .ttl(Duration::from_secs(10))
//!     .build()?;
//!
//! // A short critical section.
//! let lease = client.lock("invoice:17").await?;
//! // ... only while lease.remaining() > 0 ...
//! lease.release().await?;
//!
//! // A long job: extended automatically, stopped if the lock is lost.
//! client
//!     .with_lock("nightly-report", |signal| async move {
//!         tokio::select! {
//!             _ = signal.lost() => eprintln!("lost the lock: abandoning"),
//!             _ = tokio::time::sleep(Duration::from_secs(120)) => {}
//!         }
//!     })
//!     .await?;
//!
//! // Several resources at once (all or nothing on each node), fenced.
//! let lease = client.lock_with(["ledger", "invoices"], &LockOptions::new().fenced()).await?;
//! let fence = lease.fence().unwrap(); // pass it with every write
//! # Ok(()) }
//! ```
//!
//! ## Which call to use
//! * A job that must run under the lock, however long it takes:
//!   [`Client::with_lock`] (or [`Client::lock_and_keep`] when the work is
//!   not one future). The lease is extended in the background; watch the
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
//! use redlock_tokio::FenceGuard;
//! let mut store = FenceGuard::new(); // persist `highest()` with the data
//! assert!(store.admit(1_700).is_ok()); // holder A's write
//! assert!(store.admit(1_801).is_ok()); // holder B, granted after A lost it
//! assert!(store.admit(1_700).is_err()); // A wakes up and writes: refused
//! ```
//!
//! ## The model
//! * [`Client::builder`]`()...build()` spawns **one driver task** that owns
//!   the core and **one pipelined connection per node**, shared by every
//!   lock taken through the client and its clones: 500 concurrent locks
//!   are 500 operations in one core, not 500 connections. The driver does
//!   nothing but pump the core (as quinn's `ConnectionDriver` does): feed it
//!   commands, bytes and time, write what it says to write, open and close
//!   the connections it asks for, and complete the futures waiting on each
//!   operation.
//! * The core sits behind a lock the driver task never holds across an
//!   `await`. While few operations are in flight (fewer than 4) and
//!   nothing is queued, a lock call takes that lock without
//!   waiting, starts its command and writes its requests **on the caller's
//!   own thread**: no hand-off to the driver task. Beyond that, commands
//!   are queued and the driver task starts every queued command at once,
//!   one write per node. Either way a command never overtakes one sent
//!   before it.
//! * Connections are opened in the background (with the node timeout as
//!   connect timeout, TLS for `rediss://`) and re-opened after failures on
//!   the core's backoff. A dead, paused or garbage-speaking node costs at
//!   most about the node timeout per attempt.
//! * Every lock call is **cancel-safe**: dropping its future (a `select!`,
//!   a `timeout`) cancels the acquire in the core, which releases whatever
//!   part of the lock it had already taken; if the lock had just been
//!   acquired, it is released.
//! * [`Lease`] is a held lock: check [`Lease::remaining`], extend it,
//!   release it. Dropping it releases it in the background.
//!   [`Lease::release`] is `Ok` only when the lock was released on a
//!   quorum: [`Error::NotHeld`] when it was already gone,
//!   [`Error::Unavailable`] when too few nodes answered to tell.
//! * [`Client::with_lock`] / [`Client::lock_and_keep`] keep a lease extended
//!   while the work runs, renewing it a third into each validity window. An
//!   extension that fails is retried while another attempt can still finish
//!   before the deadline; the loss is signalled ([`LossSignal::lost`], a
//!   [`CancellationToken`]) when the nodes say our token is gone (within a
//!   node timeout of the renewal) or no attempt can finish in time (about a
//!   node timeout before the deadline), and [`LossSignal::is_lost`] is true
//!   once the deadline has passed even if the extension task was starved.
//!   `with_lock` returns [`Error::Lost`] after a loss.
//! * One client runs up to 1024 operations at once. Acquires may take
//!   three quarters of them; the rest is kept for extending and releasing
//!   leases already held, so a flood of waiting acquires can never make a
//!   keeper's extension (or a dropped lease's release) fail locally. A call
//!   that finds no room waits for it, bounded by its own deadline (an
//!   acquire's retry budget, an extension's lease deadline), and only then
//!   fails with [`Error::Command`] (`TooManyOperations`): a local refusal,
//!   never reported as a loss.
//! * Releases are decided at quorum; the other nodes get theirs a moment
//!   later: await [`Client::flush`] before a program exits.
//! * Tokens are 160 random bits from the OS ([`OsRng`] over `getrandom`).
//! * Logs and spans go through `tracing` (`redlock_lock` and `redlock_keep`
//!   spans with the resources and the fence; node index, redacted URL,
//!   attempts, latency); they never contain a password or a token.

#![warn(missing_docs)]

mod backlog;
mod client;
mod conn;
mod driver;
mod error;
#[cfg(feature = "__test-hooks")]
#[doc(hidden)]
pub mod hooks;
mod keep;
mod lease;
mod queue;
mod reply;
mod rng;
mod spare;

pub use client::{Builder, Client};
pub use error::{Error, Failure, NodeFailure};
pub use keep::{KeptLease, LossSignal};
pub use lease::Lease;
pub use redlock_core::fence::{FenceGuard, StaleFence};
pub use redlock_core::{
    self as core, Config, FailureKind, IntoResources, LockError, LockOptions, NodeOutcome,
    ReleaseReport, ReleaseVerdict, ResourceSet, RetryPolicy, Token,
};
pub use rng::OsRng;
pub use tokio_util::sync::CancellationToken;

/// The wall clock in ms since the Unix epoch: the hint of a fenced acquire
/// (a wrong clock costs a second round, never safety).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// The README's Rust examples compile (doctests, run by `cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
