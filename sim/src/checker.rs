//! The mutual-exclusion checker, in true time.
//!
//! A client *believes* it holds a resource from the moment it processes
//! `Acquired` (or `Extended`) until the lease deadline (its own clock,
//! mapped to true time), or until it issues the release, the extension
//! replaces the lease, or the lease is reported lost, whichever is first.
//! A *protected action* is a point in true time at which a client acts as
//! holder. Safety: for one resource, no belief of one client overlaps a
//! belief or an action of another client.
//!
//! Events are processed in true-time order, so it is enough to compare each
//! new belief segment or action against the *current* segment of every
//! other client: a segment that ended earlier cannot overlap, and one that
//! starts later is checked when it starts.
//!
//! # Quorum backing
//!
//! Overlaps need an unlucky schedule (a second client must ask at the wrong
//! moment), so a second invariant looks at the nodes instead: at every true
//! time `t` inside client C's belief in R with token T, at least a quorum
//! (N/2 + 1) of the nodes must *block* every other client from R. A node
//! blocks when it is down (it grants nothing to anyone), or when it holds R
//! with value T, unexpired on its own clock at `t`. Redlock's argument is
//! exactly that this holds: validity (`ttl - elapsed - drift`) ends before
//! the keys of a quorum can expire, and under the safe menu a node only
//! comes back empty after the longest TTL, when every belief from before
//! its crash has ended.
//!
//! Node state changes only at events, and between two events the number
//! of blocking nodes can only fall (keys expire, nothing else happens). So
//! [`Checker::check_backing`], called before each event with the state left
//! by the previous one, checks each open belief at the latest instant of
//! the gap that it covers: the event's time, or the belief's last instant
//! (`end - 1`) when it ended in between. That covers every `t` exactly at
//! the strictest point, with one check per open belief per event.

use redlock_core::Token;

/// One belief segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) client: usize,
    pub(crate) resource: usize,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Overlap {
    /// The client whose belief or action came second.
    pub(crate) client: usize,
    /// The client already holding.
    pub(crate) other: usize,
    pub(crate) resource: usize,
    /// True time of the overlap's detection.
    pub(crate) at: u64,
    /// Whether the second party was acting (`true`) or starting a belief.
    pub(crate) action: bool,
    /// The other client's belief segment.
    pub(crate) other_segment: Segment,
}

/// A belief that a quorum of nodes did not back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unbacked {
    pub(crate) client: usize,
    pub(crate) resource: usize,
    /// The true time checked (inside the belief).
    pub(crate) at: u64,
    /// The belief.
    pub(crate) segment: Segment,
    /// The token of the belief.
    pub(crate) token: Token,
}

/// What the quorum-backing check still has to look at for one open belief.
#[derive(Clone, Copy, Debug)]
struct Backing {
    token: Token,
    /// The belief's last instant has been checked: nothing left to do.
    done: bool,
}

#[derive(Debug)]
pub(crate) struct Checker {
    /// `current[client][resource]`.
    current: Vec<Vec<Option<Segment>>>,
    /// `backing[client][resource]`: the open belief's token, for the
    /// quorum-backing check (set with `current`, cleared when it is done).
    backing: Vec<Vec<Option<Backing>>>,
    /// Open beliefs the backing check still has to look at.
    backing_open: usize,
    pub(crate) first: Option<Overlap>,
    /// The first belief found without a quorum behind it.
    pub(crate) unbacked: Option<Unbacked>,
    /// Every closed segment, kept only when recording (for the timeline).
    pub(crate) history: Option<Vec<Segment>>,
    pub(crate) actions: Option<Vec<(usize, usize, u64)>>,
}

impl Checker {
    pub(crate) fn new(clients: usize, resources: usize, record: bool) -> Checker {
        Checker {
            current: vec![vec![None; resources]; clients],
            backing: vec![vec![None; resources]; clients],
            backing_open: 0,
            first: None,
            unbacked: None,
            history: record.then(Vec::new),
            actions: record.then(Vec::new),
        }
    }

    /// Client `c` believes it holds `r` with `token` from `start` until
    /// `end` (exclusive). Replaces (truncates) its previous segment for `r`.
    pub(crate) fn believe(&mut self, c: usize, r: usize, start: u64, end: u64, token: Token) {
        self.end(c, r, start);
        if end <= start {
            return;
        }
        for (d, segs) in self.current.iter().enumerate() {
            if d == c {
                continue;
            }
            if let Some(s) = segs[r] {
                if s.end > start && self.first.is_none() {
                    self.first = Some(Overlap {
                        client: c,
                        other: d,
                        resource: r,
                        at: start,
                        action: false,
                        other_segment: s,
                    });
                }
            }
        }
        self.current[c][r] = Some(Segment {
            client: c,
            resource: r,
            start,
            end,
        });
        self.backing[c][r] = Some(Backing { token, done: false });
        self.backing_open += 1;
    }

    /// Client `c`'s belief in `r` ends at `at` (if it had not already).
    pub(crate) fn end(&mut self, c: usize, r: usize, at: u64) {
        if self.backing[c][r].take().is_some_and(|b| !b.done) {
            self.backing_open -= 1;
        }
        if let Some(mut s) = self.current[c][r].take() {
            s.end = s.end.min(at).max(s.start);
            if let Some(h) = self.history.as_mut() {
                h.push(s);
            }
        }
    }

    /// Client `c` acts as holder of `r` at `at`.
    pub(crate) fn act(&mut self, c: usize, r: usize, at: u64) {
        if let Some(a) = self.actions.as_mut() {
            a.push((c, r, at));
        }
        for (d, segs) in self.current.iter().enumerate() {
            if d == c {
                continue;
            }
            if let Some(s) = segs[r] {
                if s.start <= at && at < s.end && self.first.is_none() {
                    self.first = Some(Overlap {
                        client: c,
                        other: d,
                        resource: r,
                        at,
                        action: true,
                        other_segment: s,
                    });
                }
            }
        }
    }

    /// The quorum-backing check, called before each event at true time
    /// `now` (node state as the previous event left it), and once at the
    /// end of the run. For each open belief, `backed(resource, token, t)`
    /// must say whether a quorum of nodes blocks the resource for `token`
    /// at true time `t`, which is `now` or, for a belief that ended since
    /// the previous event, its last instant. The first failure is kept in
    /// [`Checker::unbacked`].
    pub(crate) fn check_backing(
        &mut self,
        now: u64,
        mut backed: impl FnMut(usize, &Token, u64) -> bool,
    ) {
        if self.backing_open == 0 || self.unbacked.is_some() {
            return;
        }
        for (c, row) in self.backing.iter_mut().enumerate() {
            for (r, slot) in row.iter_mut().enumerate() {
                let Some(b) = slot.as_mut().filter(|b| !b.done) else {
                    continue;
                };
                let Some(seg) = self.current[c][r] else {
                    continue;
                };
                let at = if seg.end <= now {
                    // Ended since the previous event: check its last instant.
                    b.done = true;
                    self.backing_open -= 1;
                    seg.end - 1
                } else {
                    now
                };
                if at >= seg.start && !backed(r, &b.token, at) && self.unbacked.is_none() {
                    self.unbacked = Some(Unbacked {
                        client: c,
                        resource: r,
                        at,
                        segment: seg,
                        token: b.token,
                    });
                }
            }
        }
    }

    /// Closes every open segment (end of the run), for the timeline.
    pub(crate) fn finish(&mut self) {
        for c in 0..self.current.len() {
            for r in 0..self.current[c].len() {
                if let Some(s) = self.current[c][r].take() {
                    if let Some(h) = self.history.as_mut() {
                        h.push(s);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disjoint_beliefs_pass_and_overlaps_fail() {
        let t = Token::from_bytes(b"t").unwrap();
        let mut k = Checker::new(2, 1, false);
        k.believe(0, 0, 0, 100, t);
        k.end(0, 0, 50);
        k.believe(1, 0, 50, 200, t);
        k.act(1, 0, 60);
        assert!(k.first.is_none());
        k.act(0, 0, 150); // client 0 acts while client 1 holds
        assert!(k.first.as_ref().is_some_and(|o| o.action && o.other == 1));

        let mut k = Checker::new(2, 1, false);
        k.believe(0, 0, 0, 100, t);
        k.believe(1, 0, 99, 200, t);
        assert!(k.first.is_some());
    }

    #[test]
    fn backing_is_checked_at_each_event_and_at_the_last_instant() {
        let t = Token::from_bytes(b"tok").unwrap();
        let mut k = Checker::new(2, 1, false);
        let mut seen = Vec::new();
        k.check_backing(5, |_, _, at| {
            seen.push(at);
            true
        });
        assert!(seen.is_empty(), "no belief, nothing to check");
        k.believe(0, 0, 10, 100, t);
        for now in [10, 50, 150, 200] {
            k.check_backing(now, |r, tok, at| {
                assert_eq!((r, tok.as_bytes()), (0, b"tok".as_slice()));
                seen.push(at);
                true
            });
        }
        // At each event while open, then once at its last instant, then never.
        assert_eq!(seen, vec![10, 50, 99]);
        assert!(k.unbacked.is_none());

        // A belief cut short by a release is not checked past it.
        k.believe(1, 0, 300, 400, t);
        k.end(1, 0, 320);
        k.check_backing(500, |_, _, _| panic!("closed belief checked"));

        // A quorum missing at some instant is reported, first only.
        k.believe(0, 0, 600, 700, t);
        k.believe(1, 0, 600, 700, t);
        k.check_backing(650, |_, _, at| at < 640);
        let u = k.unbacked.clone().expect("unbacked belief not reported");
        assert_eq!((u.client, u.resource, u.at), (0, 0, 650));
        assert_eq!(u.segment.start, 600);
    }
}
