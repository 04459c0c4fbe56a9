//! One node's connection, as the core sees it: state, the FIFO of requests
//! in flight, and the receive buffer.
//!
//! Redis answers requests on one connection in order, so the FIFO is how
//! replies are matched to requests. A request whose deadline passed stays in
//! the FIFO as *abandoned* (no operation listens to it any more): when its
//! late reply comes, it is recognised and dropped, never mistaken for the
//! reply to the next request. A request withdrawn before it was written is
//! *dropped*: it will get no reply, and is skipped when matching.

use core::time::Duration;

use crate::config::NodeConfig;
use crate::event::{ErrorKind, OpId};
use crate::resp::Script;
use crate::time::Instant;

/// FIFO slots kept free for the handshake of a new connection.
pub(crate) const HANDSHAKE_RESERVE: usize = 4;
/// Receive buffer per node. Every reply we accept is far smaller; a reply
/// that does not fit is a protocol error for that node.
pub(crate) const RX_CAP: usize = 512;

/// A command in the FIFO. Its arguments (key, token, TTL) are read from the
/// operation when it is encoded, so an entry stays small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// `AUTH` (handshake).
    Auth,
    /// `SELECT` (handshake).
    Select,
    /// `SCRIPT LOAD` (handshake).
    ScriptLoad(Script),
    /// `SET key token NX PX ttl`.
    Set,
    /// A script for an extend or release operation; `true` = by body
    /// (`EVAL`), after a `NOSCRIPT`.
    Script(Script, bool),
    /// Release script undoing a failed acquire attempt; its reply only
    /// matters for `NOSCRIPT`.
    Cleanup(bool),
}

impl Cmd {
    pub(crate) fn is_handshake(self) -> bool {
        matches!(self, Cmd::Auth | Cmd::Select | Cmd::ScriptLoad(_))
    }
    /// Whether the reply is an outcome of the operation's current attempt.
    pub(crate) fn counts(self) -> bool {
        matches!(self, Cmd::Set | Cmd::Script(..))
    }
}

/// One request in a node's FIFO.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    /// The operation waiting for the reply; `None` for the handshake and for
    /// abandoned or dropped requests.
    pub(crate) op: Option<OpId>,
    pub(crate) cmd: Cmd,
    /// When the operation stops waiting for it.
    pub(crate) deadline: Instant,
    sent: bool,
    dropped: bool,
}

impl Entry {
    pub(crate) fn new(op: Option<OpId>, cmd: Cmd, deadline: Instant) -> Entry {
        Entry {
            op,
            cmd,
            deadline,
            sent: false,
            dropped: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// The transport was asked to connect.
    Connecting,
    /// Connected: requests are written and replies read.
    Up,
    /// Not connected; the core asks to reconnect at the instant given.
    Backoff(Instant),
}

#[derive(Debug)]
pub(crate) struct Link<const PIPE: usize> {
    pub(crate) config: NodeConfig,
    pub(crate) state: LinkState,
    fifo: heapless::Deque<Entry, PIPE>,
    /// Entries at the front already written (or skipped as dropped) by the
    /// transmitter; the rest are waiting to be written.
    passed: usize,
    rx: heapless::Vec<u8, RX_CAP>,
    backoff: Duration,
    backoff_min: Duration,
    /// Why the link last went down: what requests fail with during backoff
    /// (so a rejected password reads as `Auth`, not as "not connected").
    pub(crate) down_reason: ErrorKind,
    /// `AUTH`/`SELECT` sent on this connection and not yet answered. Until
    /// they are, no other request is written: pipelined behind a `SELECT`
    /// that fails, a `SET` would land in the wrong database.
    gate: u8,
}

impl<const PIPE: usize> Link<PIPE> {
    pub(crate) fn new(config: NodeConfig, backoff_min: Duration) -> Self {
        Link {
            config,
            state: LinkState::Connecting,
            fifo: heapless::Deque::new(),
            passed: 0,
            rx: heapless::Vec::new(),
            backoff: backoff_min,
            backoff_min,
            down_reason: ErrorKind::Disconnected,
            gate: 0,
        }
    }

    /// The connection is up: queue the handshake ahead of waiting requests.
    pub(crate) fn connected(&mut self, deadline: Instant) {
        self.state = LinkState::Up;
        self.rx.clear();
        self.passed = 0;
        // Pushed to the front in reverse: AUTH goes first.
        let mut hs: heapless::Vec<Cmd, HANDSHAKE_RESERVE> = heapless::Vec::new();
        if self.config.auth.is_some() {
            let _ = hs.push(Cmd::Auth);
        }
        if self.config.db != 0 {
            let _ = hs.push(Cmd::Select);
        }
        self.gate = hs.len() as u8;
        let _ = hs.push(Cmd::ScriptLoad(Script::Release));
        let _ = hs.push(Cmd::ScriptLoad(Script::Extend));
        for cmd in hs.iter().rev() {
            // Room is reserved by `enqueue`.
            let _ = self.fifo.push_front(Entry::new(None, *cmd, deadline));
        }
    }

    /// Queues a request. New work (`SET`, extend) may use only half of the
    /// queue; the other half is kept for releases and for undoing failed
    /// acquires. Every `SET` in the queue can thus always be followed by its
    /// undo: a crowded connection never strands a key.
    pub(crate) fn enqueue(&mut self, entry: Entry) -> Result<(), ErrorKind> {
        if let LinkState::Backoff(_) = self.state {
            return Err(self.down_reason);
        }
        let undo = matches!(entry.cmd, Cmd::Cleanup(_) | Cmd::Script(Script::Release, _));
        let reserve = if undo {
            HANDSHAKE_RESERVE
        } else {
            HANDSHAKE_RESERVE + (PIPE - HANDSHAKE_RESERVE) / 2
        };
        if self.fifo.len() + reserve >= PIPE {
            return Err(ErrorKind::Backlog);
        }
        self.fifo.push_back(entry).map_err(|_| ErrorKind::Backlog)
    }

    /// Copies as much of `bytes` into the receive buffer as fits.
    pub(crate) fn absorb(&mut self, bytes: &[u8]) -> usize {
        let room = RX_CAP - self.rx.len();
        let take = room.min(bytes.len());
        // Cannot fail: `take` fits.
        let _ = self.rx.extend_from_slice(&bytes[..take]);
        take
    }

    pub(crate) fn rx(&self) -> &[u8] {
        &self.rx
    }

    pub(crate) fn rx_full(&self) -> bool {
        self.rx.len() == RX_CAP
    }

    /// Removes `used` bytes (one decoded reply) from the receive buffer.
    pub(crate) fn consume(&mut self, used: usize) {
        let used = used.min(self.rx.len());
        self.rx.copy_within(used.., 0);
        self.rx.truncate(self.rx.len() - used);
    }

    /// The request a reply answers: the oldest written one. `None` if no
    /// written request is waiting (the reply is unsolicited).
    pub(crate) fn pop_reply(&mut self) -> Option<Entry> {
        loop {
            let front = self.fifo.front()?;
            if front.dropped {
                self.pop_front();
                continue;
            }
            if !front.sent {
                return None;
            }
            return self.pop_front();
        }
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let e = self.fifo.pop_front()?;
        self.passed = self.passed.saturating_sub(1);
        Some(e)
    }

    /// A reply was decoded: the connection works, so reconnects start again
    /// from the shortest backoff.
    pub(crate) fn answered(&mut self) {
        self.backoff = self.backoff_min;
    }

    pub(crate) fn has_unsent(&self) -> bool {
        self.passed < self.fifo.len()
    }

    /// The next request to write, skipping dropped ones; `None` while the
    /// handshake gate is closed and the next request is not part of it.
    pub(crate) fn next_unsent(&mut self) -> Option<(usize, Entry)> {
        while let Some(e) = self.fifo.get(self.passed) {
            if e.dropped {
                self.passed += 1;
                continue;
            }
            if self.gate > 0 && !e.cmd.is_handshake() {
                return None;
            }
            return Some((self.passed, *e));
        }
        None
    }

    /// An `AUTH` or `SELECT` was answered successfully.
    pub(crate) fn handshake_step_done(&mut self) {
        self.gate = self.gate.saturating_sub(1);
    }

    pub(crate) fn mark_sent(&mut self, idx: usize) {
        if let Some(e) = self.fifo.get_mut(idx) {
            e.sent = true;
            self.passed = idx + 1;
        }
    }

    /// Withdraws an unsent request; returns the operation it belonged to.
    pub(crate) fn withdraw(&mut self, idx: usize) -> Option<OpId> {
        let e = self.fifo.get_mut(idx)?;
        e.dropped = true;
        e.op.take()
    }

    /// Finds one live request whose deadline has passed and detaches it from
    /// its operation: an unsent one is dropped, a sent one abandoned.
    /// Returns the operation, the command, and whether it had been sent.
    pub(crate) fn expire_one(&mut self, now: Instant) -> Option<(OpId, Cmd, bool)> {
        let e = self
            .fifo
            .iter_mut()
            .find(|e| e.op.is_some() && !e.dropped && e.deadline <= now)?;
        let op = e.op.take()?;
        if !e.sent {
            e.dropped = true;
        }
        Some((op, e.cmd, e.sent))
    }

    /// Detaches `op`'s live `cmd` requests. Returns (dropped, abandoned).
    pub(crate) fn detach(&mut self, op: OpId, cmd: Cmd) -> (usize, usize) {
        let (mut dropped, mut abandoned) = (0, 0);
        for e in self.fifo.iter_mut() {
            if e.op == Some(op) && e.cmd == cmd && !e.dropped {
                e.op = None;
                if e.sent {
                    abandoned += 1;
                } else {
                    e.dropped = true;
                    dropped += 1;
                }
            }
        }
        (dropped, abandoned)
    }

    /// The oldest written request is `after` past its deadline with no reply.
    pub(crate) fn stuck(&self, now: Instant, after: Duration) -> bool {
        self.oldest_sent()
            .is_some_and(|e| e.deadline + after <= now)
    }

    fn oldest_sent(&self) -> Option<&Entry> {
        self.fifo.iter().find(|e| !e.dropped).filter(|e| e.sent)
    }

    /// The earliest instant at which something on this link is due.
    pub(crate) fn next_deadline(&self, stuck_after: Duration) -> Option<Instant> {
        let live = self
            .fifo
            .iter()
            .filter(|e| e.op.is_some() && !e.dropped)
            .map(|e| e.deadline)
            .min();
        let stuck = match self.state {
            LinkState::Up => self.oldest_sent().map(|e| e.deadline + stuck_after),
            _ => None,
        };
        match (live, stuck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets the connection: collects the operations (and commands) still
    /// waiting on it into `orphans`, and schedules a reconnect.
    pub(crate) fn reset(
        &mut self,
        now: Instant,
        reason: ErrorKind,
        max: Duration,
        orphans: &mut heapless::Vec<(OpId, Cmd), PIPE>,
    ) {
        self.down_reason = reason;
        for e in self.fifo.iter() {
            if let (Some(op), false) = (e.op, e.dropped) {
                let _ = orphans.push((op, e.cmd));
            }
        }
        self.fifo.clear();
        self.rx.clear();
        self.passed = 0;
        self.gate = 0;
        self.state = LinkState::Backoff(now + self.backoff);
        self.backoff = (self.backoff * 2).min(max);
    }
}
