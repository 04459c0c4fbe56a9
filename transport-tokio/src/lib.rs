//! # redlock-tokio: an async Redlock client
//!
//! A lock held by a majority of N independent Redis masters, for tokio
//! programs. All of the algorithm (quorum, validity, drift, retries with
//! jitter, undoing failed attempts, reply matching) is in the sans-IO
//! [`redlock_core`]; this crate only moves bytes and time for it.
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
//! * Connections are opened in the background (with the node timeout as
//!   connect timeout, TLS for `rediss://`) and re-opened after failures on
//!   the core's backoff. A dead, paused or garbage-speaking node costs at
//!   most about the node timeout per attempt.
//! * [`Client::lock`] is **cancel-safe**: dropping its future (a
//!   `select!`, a `timeout`) cancels the acquire in the core, which
//!   releases whatever part of the lock it had already taken; if the lock
//!   had just been acquired, it is released.
//! * [`Lease`] is a held lock: check [`Lease::remaining`], extend it, release
//!   it. Dropping it releases it in the background.
//! * [`Client::with_lock`] / [`Client::lock_and_keep`] keep a lease extended
//!   while the work runs and signal loss at once ([`Guard::lost`], or a
//!   [`CancellationToken`]) when an
//!   extension fails to reach a quorum in time.
//! * Tokens are 160 random bits from the OS ([`OsRng`] over `getrandom`).
//! * Logs go through `tracing` (resource, node index, redacted URL, attempts,
//!   latency); they never contain a password or a whole token.
//!
//! ```no_run
//! use std::time::Duration;
//! use redlock_tokio::{Client, Error};
//!
//! # async fn run() -> Result<(), Error> {
//! let client = Client::builder()
//!     .nodes(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"])?
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
//!     .with_lock("nightly-report", |guard| async move {
//!         tokio::select! {
//!             _ = guard.lost() => eprintln!("lost the lock: abandoning"),
//!             _ = tokio::time::sleep(Duration::from_secs(120)) => {}
//!         }
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod conn;
mod driver;
mod error;
mod keep;
mod rng;

pub use client::{Builder, Client, Lease};
pub use error::{Error, Failure, NodeFailure};
pub use keep::{Guard, LockGuard};
pub use redlock_core::{
    self as core, Config, FailureKind, LockError, NodeOutcome, ReleaseReport, RetryPolicy, Token,
};
pub use rng::OsRng;
pub use tokio_util::sync::CancellationToken;
