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

#[derive(Debug)]
pub(crate) struct Checker {
    /// `current[client][resource]`.
    current: Vec<Vec<Option<Segment>>>,
    pub(crate) first: Option<Overlap>,
    /// Every closed segment, kept only when recording (for the timeline).
    pub(crate) history: Option<Vec<Segment>>,
    pub(crate) actions: Option<Vec<(usize, usize, u64)>>,
}

impl Checker {
    pub(crate) fn new(clients: usize, resources: usize, record: bool) -> Checker {
        Checker {
            current: vec![vec![None; resources]; clients],
            first: None,
            history: record.then(Vec::new),
            actions: record.then(Vec::new),
        }
    }

    /// Client `c` believes it holds `r` from `start` until `end` (exclusive).
    /// Replaces (truncates) its previous segment for `r`.
    pub(crate) fn believe(&mut self, c: usize, r: usize, start: u64, end: u64) {
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
    }

    /// Client `c`'s belief in `r` ends at `at` (if it had not already).
    pub(crate) fn end(&mut self, c: usize, r: usize, at: u64) {
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
        let mut k = Checker::new(2, 1, false);
        k.believe(0, 0, 0, 100);
        k.end(0, 0, 50);
        k.believe(1, 0, 50, 200);
        k.act(1, 0, 60);
        assert!(k.first.is_none());
        k.act(0, 0, 150); // client 0 acts while client 1 holds
        assert!(k.first.as_ref().is_some_and(|o| o.action && o.other == 1));

        let mut k = Checker::new(2, 1, false);
        k.believe(0, 0, 0, 100);
        k.believe(1, 0, 99, 200);
        assert!(k.first.is_some());
    }
}
