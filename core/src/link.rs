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

/// FIFO slots kept free for the handshake of a new connection (`AUTH`,
/// `SELECT`, and in the weakened build two `SCRIPT LOAD`s).
pub(crate) const HANDSHAKE_RESERVE: usize = 4;
/// Receive buffer per node. Every reply we accept is far smaller; a reply
/// that does not fit is a protocol error for that node.
pub(crate) const RX_CAP: usize = 512;

/// A command in the FIFO. Its arguments (keys, token, TTL, fence) are read
/// from the operation when it is encoded, so an entry stays small.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Cmd {
    /// `AUTH` (handshake).
    Auth,
    /// `SELECT` (handshake).
    Select,
    /// `SCRIPT LOAD` (handshake of the weakened build only).
    ScriptLoad(Script),
    /// Round 1 of a plain single-resource acquire: `SET key token NX PX ttl`.
    Set,
    /// Round 1 of an acquire by script (several resources, or fenced).
    Acquire,
    /// Round 2 of a fenced acquire: raise the registers to the fence.
    FenceWrite,
    /// An extend operation's script.
    Extend,
    /// A release operation's script.
    Release,
    /// Compare-and-delete that nobody waits for: the undo of acquire attempt
    /// `n` of the operation, or (`n == 0`) a release that could not be
    /// confirmed on this node. Kept across reconnects ("owed") until sent
    /// and answered, or until its deadline.
    Undo(u32),
}

impl Cmd {
    pub(crate) fn is_handshake(self) -> bool {
        matches!(self, Cmd::Auth | Cmd::Select | Cmd::ScriptLoad(_))
    }
    /// Whether the reply is an outcome of the operation's current attempt.
    pub(crate) fn counts(self) -> bool {
        matches!(
            self,
            Cmd::Set | Cmd::Acquire | Cmd::FenceWrite | Cmd::Extend | Cmd::Release
        )
    }
    /// Round 1 of an acquire (a command that may store the lock key).
    pub(crate) fn takes_key(self) -> bool {
        matches!(self, Cmd::Set | Cmd::Acquire)
    }
    /// How much of the queue this kind of command may fill (see
    /// [`Link::enqueue`]).
    fn limit(self, pipe: usize) -> usize {
        let room = pipe.saturating_sub(HANDSHAKE_RESERVE);
        match self {
            // New work: a third of the queue...
            Cmd::Set | Cmd::Acquire => room / 3,
            // ...work that keeps, ends or completes held locks another
            // third (a flood of acquires must not starve the extension of a
            // lock already held)...
            Cmd::Extend | Cmd::Release | Cmd::FenceWrite => 2 * (room / 3),
            // ...and undos all of it: whatever fills the first two thirds,
            // every key-taking request in the queue can be followed by its
            // undo. The handshake keeps its own reserve.
            Cmd::Undo(_) => room,
            Cmd::Auth | Cmd::Select | Cmd::ScriptLoad(_) => pipe,
        }
    }
}

/// One request in a node's FIFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Entry {
    /// The operation waiting for the reply; `None` for the handshake and for
    /// abandoned or dropped requests.
    pub(crate) op: Option<OpId>,
    pub(crate) cmd: Cmd,
    /// When the operation stops waiting for it (for an owed undo not yet
    /// written: when it is no longer worth sending).
    pub(crate) deadline: Instant,
    /// An owed undo's deadline before it was written (restored when the
    /// connection goes down, so it is written again on the next one).
    keep_until: Instant,
    /// Sent by `EVALSHA` (only the weakened build does that).
    pub(crate) by_sha: bool,
    sent: bool,
    dropped: bool,
}

impl Entry {
    pub(crate) fn new(op: Option<OpId>, cmd: Cmd, deadline: Instant) -> Entry {
        Entry {
            op,
            cmd,
            deadline,
            keep_until: deadline,
            by_sha: false,
            sent: false,
            dropped: false,
        }
    }
}

/// What [`Link::reset`] did with one live request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Orphan {
    pub(crate) op: OpId,
    pub(crate) cmd: Cmd,
    /// Whether it had been written on the connection that went down.
    pub(crate) sent: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LinkState {
    /// The transport was asked to connect.
    Connecting,
    /// Connected: requests are written and replies read.
    Up,
    /// Not connected; the core asks to reconnect at the instant given.
    Backoff(Instant),
}

#[derive(Debug)]
#[cfg_attr(feature = "__model", derive(Clone))]
pub(crate) struct Link<const PIPE: usize> {
    pub(crate) config: NodeConfig,
    pub(crate) state: LinkState,
    pub(crate) fifo: heapless::Deque<Entry, PIPE>,
    /// Entries at the front already written (or skipped as dropped) by the
    /// transmitter; the rest are waiting to be written.
    pub(crate) passed: usize,
    pub(crate) rx: heapless::Vec<u8, RX_CAP>,
    pub(crate) backoff: Duration,
    pub(crate) backoff_min: Duration,
    /// Why the link last went down: what requests fail with during backoff
    /// (so a rejected password reads as `Auth`, not as "not connected").
    pub(crate) down_reason: ErrorKind,
    /// `AUTH`/`SELECT` sent on this connection and not yet answered. Until
    /// they are, no other request is written: pipelined behind a `SELECT`
    /// that fails, a `SET` would land in the wrong database.
    pub(crate) gate: u8,
    /// Keep undos owed across reconnects (the weakened build can turn it off).
    pub(crate) keep_owed: bool,
    /// Load the scripts in the handshake (the weakened build's EVALSHA mode).
    pub(crate) script_load: bool,
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
            keep_owed: true,
            script_load: false,
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
        if self.script_load {
            let _ = hs.push(Cmd::ScriptLoad(Script::Release));
            let _ = hs.push(Cmd::ScriptLoad(Script::Extend));
        }
        for cmd in hs.iter().rev() {
            // Room is reserved by `enqueue`.
            let _ = self.fifo.push_front(Entry::new(None, *cmd, deadline));
        }
    }

    /// Queues a request. New work (`SET`, acquire scripts) may fill only a
    /// third of the queue, extends, releases and fence writes two thirds, and
    /// undos all of it (the handshake has its own reserve): every key-taking
    /// request in the queue can always be followed by its undo, and releases
    /// cannot crowd undos out. While the link is down, only undos are
    /// accepted: they are owed to the node and written after the next
    /// handshake.
    pub(crate) fn enqueue(&mut self, entry: Entry) -> Result<(), ErrorKind> {
        let owed = matches!(entry.cmd, Cmd::Undo(_)) && self.keep_owed;
        if matches!(self.state, LinkState::Backoff(_)) && !owed {
            return Err(self.down_reason);
        }
        if self.fifo.len() >= entry.cmd.limit(PIPE) {
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

    /// Whether any request may be waiting to be written (a fast path for
    /// `poll_transmit`: without it every drain walks every live link's
    /// queue; `next_unsent` decides). Only performance depends on it, so a
    /// mutant that makes it `true` is equivalent for the tests; the core's
    /// callgrind cycle shows it: 28.3k instructions at N = 5 with it, 33.8k
    /// without.
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

    /// The request at `idx` was written; it waits for its reply until
    /// `deadline` at the latest.
    pub(crate) fn mark_sent(&mut self, idx: usize, deadline: Instant) {
        if let Some(e) = self.fifo.get_mut(idx) {
            e.sent = true;
            e.deadline = e.deadline.min(deadline);
            self.passed = idx + 1;
        }
    }

    /// Forgets dropped requests that hold room for nothing: those at the front
    /// (they were never written, no reply will pop them) and every dropped one
    /// not yet written (the unsent part is compacted in place). Without this,
    /// attempts that fail at once while a quorum is down would fill a live
    /// node's queue with withdrawn `SET`s that nothing ever removes.
    pub(crate) fn trim(&mut self) {
        while self.fifo.front().is_some_and(|e| e.dropped) {
            self.pop_front();
        }
        let start = self.passed.min(self.fifo.len());
        let mut kept = start;
        for i in start..self.fifo.len() {
            let Some(e) = self.fifo.get(i).copied() else {
                break;
            };
            if e.dropped {
                continue;
            }
            if let Some(slot) = self.fifo.get_mut(kept) {
                *slot = e;
            }
            kept += 1;
        }
        while self.fifo.len() > kept {
            let _ = self.fifo.pop_back();
        }
    }

    /// Withdraws an unsent request; returns the operation it belonged to.
    pub(crate) fn withdraw(&mut self, idx: usize) -> Option<OpId> {
        let e = self.fifo.get_mut(idx)?;
        e.dropped = true;
        e.op.take()
    }

    /// When a live entry stops being worth keeping: its deadline, except for
    /// a written undo, which nobody waits for and which is kept (to be
    /// written again after a reconnect) until its own deadline.
    fn expiry(e: &Entry) -> Instant {
        if matches!(e.cmd, Cmd::Undo(_)) {
            e.keep_until
        } else {
            e.deadline
        }
    }

    /// Finds one live request that has expired at `now`: its index,
    /// operation, command, and whether it was written. Changes nothing: the
    /// caller [`abandon`](Self::abandon)s it or makes it
    /// [`owed`](Self::make_owed).
    pub(crate) fn expire_one(&self, now: Instant) -> Option<(usize, OpId, Cmd, bool)> {
        let (idx, e) = self
            .fifo
            .iter()
            .enumerate()
            .find(|(_, e)| e.op.is_some() && !e.dropped && Self::expiry(e) <= now)?;
        Some((idx, e.op?, e.cmd, e.sent))
    }

    /// Detaches the request at `idx` from its operation: an unsent one is
    /// dropped, a sent one abandoned (its late reply is recognised and
    /// discarded).
    pub(crate) fn abandon(&mut self, idx: usize) {
        if let Some(e) = self.fifo.get_mut(idx) {
            e.op = None;
            if !e.sent {
                e.dropped = true;
            }
        }
    }

    /// Turns the release at `idx` into an undo owed to the node until
    /// `until` (still referring to `op`): nobody waits for its reply any
    /// more, but it is written again if the connection is replaced.
    pub(crate) fn make_owed(&mut self, idx: usize, op: OpId, until: Instant) {
        if let Some(e) = self.fifo.get_mut(idx) {
            if e.op == Some(op) {
                e.cmd = Cmd::Undo(0);
                e.keep_until = until;
                if !e.sent {
                    e.deadline = until;
                }
            }
        }
    }

    /// Detaches `op`'s live requests whose command matches `which`.
    /// Returns (dropped, abandoned).
    pub(crate) fn detach(&mut self, op: OpId, which: impl Fn(Cmd) -> bool) -> (usize, usize) {
        let (mut dropped, mut abandoned) = (0, 0);
        for e in self.fifo.iter_mut() {
            if e.op == Some(op) && which(e.cmd) && !e.dropped {
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
            .map(Self::expiry)
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

    /// Forgets the connection: collects the live requests that fail with it
    /// into `orphans`, keeps owed undos (sent or not: either way they are
    /// written again after the next handshake, in their order), and
    /// schedules a reconnect.
    pub(crate) fn reset(
        &mut self,
        now: Instant,
        reason: ErrorKind,
        max: Duration,
        orphans: &mut heapless::Vec<Orphan, PIPE>,
    ) {
        self.down_reason = reason;
        let keep_owed = self.keep_owed;
        let mut kept = 0;
        for i in 0..self.fifo.len() {
            let Some(mut e) = self.fifo.get(i).copied() else {
                break;
            };
            let Some(op) = e.op.filter(|_| !e.dropped) else {
                continue;
            };
            if matches!(e.cmd, Cmd::Undo(_)) && keep_owed {
                e.sent = false;
                e.deadline = e.keep_until;
                if let Some(slot) = self.fifo.get_mut(kept) {
                    *slot = e;
                }
                kept += 1;
            } else {
                let _ = orphans.push(Orphan {
                    op,
                    cmd: e.cmd,
                    sent: e.sent,
                });
            }
        }
        while self.fifo.len() > kept {
            let _ = self.fifo.pop_back();
        }
        self.rx.clear();
        self.passed = 0;
        self.gate = 0;
        self.state = LinkState::Backoff(now + self.backoff);
        self.backoff = self.backoff.saturating_mul(2).min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up<const P: usize>() -> Link<P> {
        let mut l = Link::new(NodeConfig::default(), Duration::from_millis(5));
        l.connected(Instant::ZERO);
        l
    }

    fn entry(cmd: Cmd) -> Entry {
        Entry::new(Some(OpId::new(1, 1)), cmd, Instant::from_millis(10))
    }

    #[test]
    fn each_kind_of_command_fills_its_share_of_the_queue() {
        // PIPE 22: 18 slots after the handshake reserve.
        let mut l: Link<22> = up();
        let fill = |l: &mut Link<22>, cmd: Cmd| {
            let mut n = 0;
            while l.enqueue(entry(cmd)).is_ok() {
                n += 1;
            }
            n
        };
        assert_eq!(fill(&mut l, Cmd::Set), 6, "new work: a third");
        assert_eq!(fill(&mut l, Cmd::Acquire), 0);
        assert_eq!(
            fill(&mut l, Cmd::Extend),
            6,
            "extends and releases: two thirds"
        );
        assert_eq!(fill(&mut l, Cmd::Release), 0);
        assert_eq!(fill(&mut l, Cmd::Undo(1)), 6, "undos: all of it");
        assert_eq!(l.enqueue(entry(Cmd::Undo(2))), Err(ErrorKind::Backlog));
    }

    #[test]
    fn absorb_takes_only_what_fits() {
        let mut l: Link<8> = up();
        assert_eq!(l.absorb(&[b'x'; 500]), 500);
        assert_eq!(l.absorb(&[b'y'; 100]), RX_CAP - 500);
        assert!(l.rx_full());
        assert_eq!(l.absorb(b"z"), 0);
        l.consume(10);
        assert_eq!(l.rx().len(), RX_CAP - 10);
        assert_eq!(&l.rx()[..2], b"xx");
        assert_eq!(l.rx()[RX_CAP - 11], b'y');
    }

    #[test]
    fn a_reply_restarts_the_backoff_from_its_shortest() {
        let mut l: Link<8> = up();
        let mut orphans = heapless::Vec::new();
        let max = Duration::from_secs(1);
        l.reset(Instant::ZERO, ErrorKind::Disconnected, max, &mut orphans);
        assert_eq!(l.state, LinkState::Backoff(Instant::from_millis(5)));
        l.connected(Instant::from_millis(5));
        l.reset(
            Instant::from_millis(5),
            ErrorKind::Disconnected,
            max,
            &mut orphans,
        );
        assert_eq!(
            l.state,
            LinkState::Backoff(Instant::from_millis(15)),
            "doubled"
        );
        l.connected(Instant::from_millis(15));
        l.answered();
        l.reset(
            Instant::from_millis(20),
            ErrorKind::Disconnected,
            max,
            &mut orphans,
        );
        assert_eq!(
            l.state,
            LinkState::Backoff(Instant::from_millis(25)),
            "back to 5 ms"
        );
    }

    #[test]
    fn undos_survive_a_reset_in_order_and_unsent() {
        let mut l: Link<16> = up();
        l.enqueue(entry(Cmd::Set)).unwrap();
        l.enqueue(entry(Cmd::Undo(1))).unwrap();
        l.enqueue(entry(Cmd::Release)).unwrap();
        l.enqueue(entry(Cmd::Undo(2))).unwrap();
        while let Some((idx, _)) = l.next_unsent() {
            l.mark_sent(idx, Instant::from_millis(50));
        }
        let mut orphans = heapless::Vec::new();
        l.reset(
            Instant::ZERO,
            ErrorKind::Timeout,
            Duration::from_secs(1),
            &mut orphans,
        );
        let lost: heapless::Vec<Cmd, 4> = orphans.iter().map(|o| o.cmd).collect();
        assert_eq!(lost.as_slice(), [Cmd::Set, Cmd::Release]);
        l.connected(Instant::from_millis(100));
        let mut again = heapless::Vec::<Cmd, 4>::new();
        while let Some((idx, e)) = l.next_unsent() {
            let _ = again.push(e.cmd);
            l.mark_sent(idx, Instant::from_millis(150));
        }
        assert_eq!(again.as_slice(), [Cmd::Undo(1), Cmd::Undo(2)]);
    }

    #[test]
    fn next_unsent_skips_withdrawn_requests_not_yet_trimmed() {
        // `fill` withdraws a request that no buffer can hold and asks for
        // the next one before any trim: the withdrawn ones are stepped over.
        let mut l: Link<16> = up();
        l.enqueue(entry(Cmd::Set)).unwrap();
        l.enqueue(entry(Cmd::Undo(1))).unwrap();
        l.enqueue(entry(Cmd::Release)).unwrap();
        assert!(l.withdraw(0).is_some());
        assert!(l.withdraw(1).is_some());
        let (idx, e) = l.next_unsent().expect("the release");
        assert_eq!((idx, e.cmd), (2, Cmd::Release));
        l.mark_sent(idx, Instant::from_millis(50));
        assert_eq!(l.next_unsent().map(|(i, _)| i), None);
    }

    #[test]
    fn trim_gives_withdrawn_requests_room_back_and_keeps_the_rest_once_in_order() {
        let mut l: Link<16> = up();
        let mut n = 0;
        while l.enqueue(entry(Cmd::Set)).is_ok() {
            n += 1;
        }
        assert_eq!(n, 4, "new work fills a third of the 12 slots");
        // Withdraw the second one: after a trim the queue holds the other
        // three, each once, in order, and has room for one more.
        assert!(l.withdraw(1).is_some());
        l.trim();
        assert_eq!(l.fifo.len(), 3);
        assert!(l.enqueue(entry(Cmd::Set)).is_ok());
        assert!(l.enqueue(entry(Cmd::Set)).is_err());
        let mut written = 0;
        while let Some((idx, e)) = l.next_unsent() {
            assert_eq!(e.cmd, Cmd::Set);
            l.mark_sent(idx, Instant::from_millis(50));
            written += 1;
        }
        assert_eq!(written, 4);
        // Withdrawn at the front: popped, not left to wedge the queue.
        let mut l: Link<16> = up();
        while l.enqueue(entry(Cmd::Set)).is_ok() {}
        for i in 0..4 {
            assert!(l.withdraw(i).is_some());
        }
        l.trim();
        assert_eq!(l.fifo.len(), 0);
        assert!(l.enqueue(entry(Cmd::Set)).is_ok());
    }

    #[test]
    fn an_unsent_release_made_owed_waits_until_its_new_deadline() {
        // A release not yet written when it timed out becomes an owed undo:
        // its deadline moves to `until`, so once written it is not judged
        // against the old, already passed one (the link would look stuck).
        let op = OpId::new(1, 1);
        let mut l: Link<16> = up();
        l.enqueue(entry(Cmd::Release)).unwrap();
        l.make_owed(0, op, Instant::from_millis(1_000));
        assert_eq!(l.fifo.front().unwrap().cmd, Cmd::Undo(0));
        assert_eq!(
            l.fifo.front().unwrap().deadline,
            Instant::from_millis(1_000)
        );
        let (idx, _) = l.next_unsent().unwrap();
        l.mark_sent(idx, Instant::from_millis(60));
        assert!(!l.stuck(Instant::from_millis(30), Duration::ZERO));
        assert!(l.stuck(Instant::from_millis(60), Duration::ZERO));
        // A written one keeps the deadline it was written with.
        let mut l: Link<16> = up();
        l.enqueue(entry(Cmd::Release)).unwrap();
        l.mark_sent(0, Instant::from_millis(10));
        l.make_owed(0, op, Instant::from_millis(1_000));
        assert_eq!(l.fifo.front().unwrap().deadline, Instant::from_millis(10));
    }

    #[test]
    fn detach_counts_what_it_dropped_and_what_it_abandoned() {
        let op = OpId::new(1, 1);
        let mut l: Link<16> = up();
        l.enqueue(entry(Cmd::Set)).unwrap();
        l.enqueue(entry(Cmd::Set)).unwrap();
        l.enqueue(entry(Cmd::Extend)).unwrap();
        l.mark_sent(0, Instant::from_millis(50));
        assert_eq!(l.detach(op, |c| c == Cmd::Set), (1, 1));
        assert_eq!(l.detach(op, |c| c == Cmd::Set), (0, 0), "already detached");
        assert_eq!(l.detach(op, |_| true), (1, 0));
    }

    #[test]
    fn next_deadline_is_the_earliest_live_expiry_or_when_the_link_looks_stuck() {
        let mut l: Link<16> = up();
        assert_eq!(l.next_deadline(Duration::from_millis(100)), None);
        l.enqueue(entry(Cmd::Set)).unwrap();
        assert_eq!(
            l.next_deadline(Duration::from_millis(100)),
            Some(Instant::from_millis(10)),
            "a live, unsent request's deadline"
        );
        // Written, then abandoned by its operation: nothing waits for it,
        // but the link is stuck if no reply comes 100 ms past its deadline.
        l.mark_sent(0, Instant::from_millis(50));
        l.abandon(0);
        assert_eq!(
            l.next_deadline(Duration::from_millis(100)),
            Some(Instant::from_millis(110))
        );
    }
}
