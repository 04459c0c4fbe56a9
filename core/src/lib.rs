//! # redlock-core: the Redlock algorithm as a sans-IO state machine
//!
//! This crate is the whole of Redlock's logic (quorum, validity, drift,
//! retries with jitter, undoing failed attempts, extension, release,
//! per-node pipelining and reply matching) with none of its I/O. It never
//! opens a socket, reads a clock, spawns a thread or draws from a global
//! RNG: bytes and instants come in as arguments, bytes for each node and
//! decisions come out. Because it is pure, the very same code is driven by
//! the blocking transport, the tokio transport, an embedded TCP stack, a
//! deterministic simulator and a fuzzer.
//!
//! It is `#![no_std]` and uses fixed capacities: its tables are sized by the
//! const parameters of [`Redlock`] and allocated once, in
//! [`Redlock::new`] (so a large core does not sit on the caller's stack);
//! after that it makes no heap allocation on the success paths of acquire,
//! extend and release (a test with a counting allocator proves it). RESP is
//! encoded and decoded with `redis-protocol`.
//!
//! ## The algorithm
//! With N independent Redis masters and quorum `N / 2 + 1`:
//! * **Acquire**: at `t0`, `SET resource token NX PX ttl` goes to every node at
//!   once (several resources, or a fenced lock: one script per node that sets
//!   every key iff none exists, [`ACQUIRE_SCRIPT`]). As soon as a quorum said
//!   OK, the lock is held until `t0 + ttl - drift` (drift = `ttl x 0.01 +
//!   2 ms` by default), provided that is still in the future. As soon as a
//!   quorum has become impossible, or no validity can be left, the attempt
//!   fails, and says why by cause, not by which replies came first: busy when
//!   the "held" answers alone rule a quorum out, unavailable when they cannot
//!   (while pending replies could still decide it, it waits for them). Every
//!   node that said OK **or has not answered** is sent an undo on the same
//!   connection, behind the `SET`, so Redis applies it after the `SET` and no
//!   key is left behind. Then, after a random pause, the next attempt starts.
//! * **Extend**: a compare-and-`PEXPIRE` script over every key; extended iff
//!   a quorum confirms in time, computed from the extend's own start.
//!   Otherwise the lease is reported [`Event::Lost`]; a lease already past its
//!   deadline is lost without sending anything.
//! * **Release**: a compare-and-delete script on every node, decided as soon
//!   as its verdict is known (released on a quorum, already gone, or unknown:
//!   [`ReleaseVerdict`]); the other nodes' releases are still written and read.
//! * **Fencing** (opt-in, [`Fencing`]): a max register per resource on each
//!   node, read and raised in the same script as the `SET`, and a second round
//!   only when needed; the lease carries a fence that grows with every grant,
//!   with no timing assumption. The protocol and its proof are in [`fence`].
//!
//! ## Queue discipline
//! A node's connection is one ordered pipe, and Redis applies commands in the
//! order they arrive; every safety argument about undo and release rests on
//! that order. So:
//! * **nothing is ever re-sent or re-queued behind a later command for the
//!   same resource**: scripts always go by body (`EVAL`), so there is no
//!   `NOSCRIPT` fallback whose second copy could overtake or trail anything
//!   (one did: an undo re-queued behind the next attempt's `SET` deleted a
//!   fresh lock, two holders);
//! * **every attempt has its own token** ([`Token::for_attempt`]), so an undo
//!   can never match a later attempt's key, whatever the order;
//! * an undo (or a release) that cannot be written because the connection is
//!   down is **owed** to that node and written right after the next
//!   handshake, for up to two TTLs;
//! * the per-node queue keeps room: new work may fill a third of it,
//!   extensions and releases two thirds, undos all of it, so every `SET` in
//!   the queue can always be followed by its undo, and a flood of acquires
//!   cannot starve the extension of a lock already held.

//! ## The contract
//! A [`Redlock`] is driven by four kinds of calls (the taxonomy of
//! `quinn-proto`'s `Connection`):
//! * **(A) getters**, `&self`: [`Redlock::quorum`], [`Redlock::is_connected`], ...
//! * **(B) inputs** from the transport:
//!   [`handle_connected`](Redlock::handle_connected),
//!   [`handle_input`](Redlock::handle_input) (bytes from a node, split
//!   anywhere), [`handle_node_down`](Redlock::handle_node_down) and
//!   [`handle_timeout`](Redlock::handle_timeout).
//! * **(C) commands** from the application:
//!   [`acquire`](Redlock::acquire), [`extend`](Redlock::extend),
//!   [`release`](Redlock::release), [`cancel`](Redlock::cancel). Each returns
//!   an [`OpId`]; every operation ends with exactly one event carrying it.
//! * **(D) outputs**, to be drained **after every (B) or (C) call** (and after
//!   construction), in this order:
//!   1. [`poll_transmit`](Redlock::poll_transmit) until `None`: bytes to write
//!      to a node, in order, on that node's connection;
//!   2. [`poll_event`](Redlock::poll_event) until `None`: operation results,
//!      link directives ([`Event::Connect`], [`Event::Disconnect`]) and
//!      diagnostics ([`Event::NodeFailed`]);
//!   3. [`poll_timeout`](Redlock::poll_timeout): when to call
//!      `handle_timeout` next.
//!
//! Several inputs may be given before one drain (a driver that read from
//! three sockets may feed all three, then drain): outputs accumulate, and
//! commands queued for one node then leave in one write. Operation results
//! are never lost while waiting to be drained; only diagnostics beyond a
//! fixed budget are dropped (and counted).
//!
//! **Time.** Every input carries `now`, an [`Instant`] from the caller's
//! *monotonic* clock. It must not go backwards; if it does, the core treats
//! the earlier instant as "no time has passed" (never a panic). The deadline
//! from `poll_timeout` is soft: calling `handle_timeout` early or spuriously
//! is a harmless no-op, calling it late only delays decisions.
//!
//! **Randomness.** Tokens come from the [`rand_core::CryptoRng`] passed to
//! [`acquire`](Redlock::acquire); so does the seed of the retry jitter.
//!
//! **Panics.** Bytes, events and instants from outside never panic, loop
//! forever or grow memory: a malformed or oversized reply is a protocol
//! error for that node (its link is reset), a full queue is a typed error.
//! A panic would mean a broken internal invariant, i.e. a bug.
//!
//! ## Example: driving the core by hand
//! Three in-memory "nodes" that answer `+OK` to SET and `:1` to scripts:
//!
//! ```
//! use core::time::Duration;
//! use redlock_core::{Config, Event, Instant, NodeConfig, NodeId, Redlock};
//!
//! # struct Rng(u64);
//! # impl rand_core::TryRng for Rng {
//! #     type Error = core::convert::Infallible;
//! #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
//! #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1); Ok(self.0) }
//! #     fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8 } Ok(()) }
//! # }
//! # impl rand_core::TryCryptoRng for Rng {}
//! // A fake node: reads RESP commands, answers like Redis would for an empty DB.
//! fn answer(request: &[u8]) -> Vec<u8> {
//!     let mut out = Vec::new();
//!     let text = String::from_utf8_lossy(request);
//!     for cmd in text.split('*').filter(|c| !c.is_empty()) {
//!         if cmd.contains("\r\nSET\r\n") {
//!             out.extend_from_slice(b"+OK\r\n");
//!         } else {
//!             out.extend_from_slice(b":1\r\n"); // EVALSHA release / extend
//!         }
//!     }
//!     out
//! }
//!
//! let nodes = [NodeConfig::default(), NodeConfig::default(), NodeConfig::default()];
//! let mut core: Redlock = Redlock::new(Config::new(Duration::from_secs(10)), &nodes).unwrap();
//! let mut now = Instant::ZERO;
//!
//! // Drain after construction: one Connect per node. "Connect" them.
//! while let Some(event) = core.poll_event() {
//!     if let Event::Connect { node } = event {
//!         core.handle_connected(node, now);
//!     }
//! }
//!
//! // Pump: transmit -> fake node -> handle_input, until the op's event.
//! fn pump(core: &mut Redlock, now: Instant) -> Vec<Event> {
//!     let mut buf = [0u8; 4096];
//!     let mut events = Vec::new();
//!     loop {
//!         let mut progressed = false;
//!         while let Some(t) = core.poll_transmit(&mut buf) {
//!             let reply = answer(&buf[..t.len]);
//!             // Deliver the reply split in two, to show any split works.
//!             let (a, b) = reply.split_at(reply.len() / 2);
//!             core.handle_input(t.node, a, now);
//!             core.handle_input(t.node, b, now);
//!             progressed = true;
//!         }
//!         while let Some(e) = core.poll_event() {
//!             events.push(e);
//!             progressed = true;
//!         }
//!         if !progressed {
//!             return events;
//!         }
//!     }
//! }
//!
//! let op = core.acquire(b"invoices", &mut Rng(7), now).unwrap();
//! now = Instant::from_millis(3);
//! let events = pump(&mut core, now);
//! let lease = events.iter().find_map(|e| match e {
//!     Event::Acquired { op: o, lease } if *o == op => Some(lease.clone()),
//!     _ => None,
//! }).expect("acquired");
//! // Validity is measured from the attempt's start: 10 s - 102 ms of drift.
//! assert_eq!(lease.deadline(), Instant::from_millis(9_898));
//!
//! let op = core.extend(&lease, Duration::from_secs(10), now).unwrap();
//! let events = pump(&mut core, now);
//! assert!(events.iter().any(|e| matches!(e, Event::Extended { op: o, .. } if *o == op)));
//!
//! let op = core.release(&lease, now).unwrap();
//! let events = pump(&mut core, now);
//! let report = events.iter().find_map(|e| match e {
//!     Event::Released { op: o, report } if *o == op => Some(*report),
//!     _ => None,
//! }).unwrap();
//! // Decided as soon as a quorum (2 of 3) deleted the key; the third reply
//! // is read afterwards on its connection.
//! assert_eq!(report.released(), 2);
//! assert_eq!(report.verdict(), redlock_core::ReleaseVerdict::Released);
//! assert_eq!(core.poll_timeout(), None); // nothing left to wait for
//! ```
//!
//! ## Several resources
//! A [`ResourceSet`] (up to [`MAX_RESOURCES`] names, sorted and without
//! duplicates) is locked all or nothing on each node: a node either holds
//! every key for us or none, so a set that overlaps a held set is busy and is
//! never partially taken. Quorum, validity, undo, extend and release are the
//! single-resource rules; the keys are the resource names and the value the
//! token, so a single-resource client of any library sees each one locked.
//!
//! ## Testing hooks
//! Feature `__weaken` plants the pre-fix bugs ([`Weakness`]) so the
//! simulator, the model checker and the tests can show they catch them;
//! feature `__model` gives the whole state `Clone + Hash + Eq` for a model
//! checker. Neither is for production.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod config;
mod event;
pub mod fence;
mod lease;
mod link;
pub mod quorum;
mod redlock;
pub mod report;
mod resources;
mod resp;
pub mod settings;
mod time;
mod token;
pub mod url;

#[cfg(feature = "__fuzz")]
pub mod fuzzing;
#[cfg(feature = "__model")]
mod model;

pub use config::{
    AcquireOptions, Auth, Config, ConfigError, Fencing, NodeConfig, RetryPolicy, MAX_NODES,
    MAX_PASSWORD_LEN, MAX_RECONNECT, MAX_RESOURCE_LEN, MAX_RETRY_PAUSE, MAX_USERNAME_LEN,
};
pub use event::{
    CommandError, ErrorKind, Event, FailureKind, LockError, NodeError, NodeId, NodeOutcome,
    NodeReport, OpId, ReleaseReport, ReleaseVerdict, MAX_DETAIL_LEN,
};
pub use lease::Lease;
pub use redlock::{Redlock, Transmit, Weakness};
pub use resources::{ResourceSet, MAX_RESOURCES, MAX_RESOURCE_SET_LEN};
pub use resp::{
    fence_register, ACQUIRE_SCRIPT, EXTEND_SCRIPT, EXTEND_SHA, FENCE_INCR_SCRIPT,
    FENCE_WRITE_SCRIPT, FENCE_WRITE_SET_SCRIPT, RELEASE_SCRIPT, RELEASE_SHA,
};
pub use settings::{IntoResources, LockOptions};
pub use time::Instant;
pub use token::{Token, ATTEMPT_TOKEN_LEN, MAX_TOKEN_LEN, TOKEN_RANDOM_BYTES};

/// A transmit buffer this large always holds at least one command (the
/// largest is a fenced acquire of a full [`ResourceSet`]: its keys, their
/// fence registers, the script body and a maximal token).
pub const MIN_TRANSMIT_BUF: usize = 4096;

/// The receive buffer per node: a single reply larger than this is a
/// protocol error for that node.
pub const MAX_REPLY_LEN: usize = link::RX_CAP;

pub use rand_core;
