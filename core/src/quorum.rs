//! Quorum and validity arithmetic: the pure heart of Redlock.
//!
//! Everything here is a function of counts and instants, so it is pinned by
//! exhaustive tests below (every mix of outcomes for N = 1..=9).

use core::time::Duration;

use crate::event::{ErrorKind, FailureKind, NodeReport};
use crate::time::Instant;

/// Nodes that must agree: a strict majority, `n / 2 + 1`.
///
/// ```
/// use redlock_core::quorum::quorum;
/// assert_eq!(quorum(1), 1);
/// assert_eq!(quorum(4), 3);
/// assert_eq!(quorum(5), 3);
/// ```
pub const fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// The end of validity of an attempt that started at `t0`:
/// `t0 + ttl - drift`. Validity at `now` is `deadline - now`, which equals
/// `ttl - (now - t0) - drift`; the lock is acquired iff it is positive.
///
/// ```
/// use core::time::Duration;
/// use redlock_core::{quorum::validity_deadline, Instant};
/// let d = validity_deadline(Instant::from_millis(100), Duration::from_millis(1000), Duration::from_millis(12));
/// assert_eq!(d, Instant::from_millis(1088));
/// ```
pub fn validity_deadline(t0: Instant, ttl: Duration, drift: Duration) -> Instant {
    match ttl.checked_sub(drift) {
        Some(v) => t0 + v,
        None => t0,
    }
}

/// What an acquire or extend attempt has come to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not decided yet: replies still pending could make or break a quorum.
    Wait,
    /// A quorum said OK in time: valid until the deadline.
    Won(Instant),
    /// The attempt failed.
    Lost(FailureKind),
}

/// Decides an attempt from its node outcomes at `now`, with `q` the quorum
/// (normally [`quorum`]`(report.len())`).
///
/// Won as soon as a quorum said OK in time. Once a quorum has become
/// impossible the cause is named, not guessed from which replies came
/// first: [`Busy`](FailureKind::Busy) (or, for an extend whose keys are
/// gone, [`NotHeld`](FailureKind::NotHeld)) when the refusals alone rule a
/// quorum out; `Unavailable`/`AuthFailed` when they cannot, even with every
/// pending reply a refusal; and while pending replies could still make the
/// refusals decisive, the decision waits for them (each is bounded by the
/// node timeout).
///
/// ```
/// use redlock_core::{quorum::{decide, Decision}, ErrorKind, FailureKind, Instant, NodeOutcome, NodeReport};
/// let (now, end) = (Instant::from_millis(1), Instant::from_millis(10));
/// let mut r = NodeReport::new(3);
/// r.set(0, NodeOutcome::Ok);
/// assert_eq!(decide(&r, 2, now, end), Decision::Wait);
/// r.set(1, NodeOutcome::Ok);
/// assert_eq!(decide(&r, 2, now, end), Decision::Won(end));
/// assert_eq!(decide(&r, 2, end, end), Decision::Lost(FailureKind::Expired));
/// // One node down, one held, one pending: wait for the pending one.
/// let mut r = NodeReport::new(3);
/// r.set(0, NodeOutcome::Failed(ErrorKind::Timeout));
/// r.set(1, NodeOutcome::Held);
/// assert_eq!(decide(&r, 2, now, end), Decision::Wait);
/// r.set(2, NodeOutcome::Held);
/// assert_eq!(decide(&r, 2, now, end), Decision::Lost(FailureKind::Busy));
/// ```
pub fn decide(report: &NodeReport, q: usize, now: Instant, deadline: Instant) -> Decision {
    let ok = report.ok();
    if now >= deadline {
        // No validity can be left, whatever is still pending.
        return Decision::Lost(FailureKind::Expired);
    }
    if ok >= q {
        return Decision::Won(deadline);
    }
    let pending = report.pending();
    if ok + pending >= q {
        return Decision::Wait;
    }
    let blocking = (report.len() + 1).saturating_sub(q);
    if report.refused() < blocking && report.refused() + pending >= blocking {
        // Mixed: the pending replies decide whether it is busy.
        return Decision::Wait;
    }
    Decision::Lost(failure_kind(report, q))
}

/// Why an attempt without a quorum failed: `Busy` when the nodes that
/// answered "held by another token" alone make a quorum impossible;
/// `NotHeld` when those plus the nodes where our key is missing do;
/// otherwise failures are to blame: `AuthFailed` if any was an auth
/// rejection, else `Unavailable`.
///
/// ```
/// use redlock_core::{quorum::failure_kind, ErrorKind, FailureKind, NodeOutcome, NodeReport};
/// let mut r = NodeReport::new(3);
/// r.set(0, NodeOutcome::Held);
/// r.set(1, NodeOutcome::Held);
/// assert_eq!(failure_kind(&r, 2), FailureKind::Busy);
/// r.set(1, NodeOutcome::Missing);
/// assert_eq!(failure_kind(&r, 2), FailureKind::NotHeld);
/// r.set(1, NodeOutcome::Failed(ErrorKind::Timeout));
/// assert_eq!(failure_kind(&r, 2), FailureKind::Unavailable);
/// ```
pub fn failure_kind(report: &NodeReport, q: usize) -> FailureKind {
    let blocking = (report.len() + 1).saturating_sub(q);
    if report.held() >= blocking {
        FailureKind::Busy
    } else if report.refused() >= blocking {
        FailureKind::NotHeld
    } else if report.any_failed(ErrorKind::Auth) {
        FailureKind::AuthFailed
    } else {
        FailureKind::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::KINDS;
    use crate::event::NodeOutcome;

    /// Every assignment of the six outcome kinds to N = 1..=9 nodes
    /// (12M reports), against a direct restatement of the rules.
    #[test]
    fn decide_is_exhaustively_correct() {
        let mut checked = 0u64;
        for n in 1..=9usize {
            let q = n / 2 + 1;
            let total = 6usize.pow(n as u32);
            for code in 0..total {
                let mut r = NodeReport::new(n);
                let mut c = code;
                let (mut ok, mut held, mut missing, mut auth, mut pending) = (0, 0, 0, 0, 0);
                for i in 0..n {
                    let o = KINDS[c % 6];
                    c /= 6;
                    r.set(i, o);
                    match o {
                        NodeOutcome::Ok => ok += 1,
                        NodeOutcome::Held => held += 1,
                        NodeOutcome::Missing => missing += 1,
                        NodeOutcome::Failed(ErrorKind::Auth) => auth += 1,
                        NodeOutcome::Pending => pending += 1,
                        _ => {}
                    }
                }
                let t = Instant::from_millis(5);
                let deadline = Instant::from_millis(10);
                // Nodes that must refuse for no quorum to be possible.
                let blocking = n - q + 1;
                let refused = held + missing;
                let expected = if ok >= q {
                    Decision::Won(deadline)
                } else if ok + pending >= q {
                    Decision::Wait
                } else if held >= blocking {
                    Decision::Lost(FailureKind::Busy)
                } else if refused >= blocking {
                    Decision::Lost(FailureKind::NotHeld)
                } else if refused + pending >= blocking {
                    // Could still turn out busy: wait for the replies.
                    Decision::Wait
                } else if auth > 0 {
                    Decision::Lost(FailureKind::AuthFailed)
                } else {
                    Decision::Lost(FailureKind::Unavailable)
                };
                assert_eq!(decide(&r, q, t, deadline), expected, "n={n} report={r:?}");
                // At or after the deadline nothing can win.
                assert_eq!(
                    decide(&r, q, deadline, deadline),
                    Decision::Lost(FailureKind::Expired)
                );
                // Two disjoint winning sets are impossible: a win needs a strict majority.
                if let Decision::Won(_) = expected {
                    assert!(2 * ok > n);
                }
                checked += 1;
            }
        }
        assert_eq!(checked, (1..=9).map(|n| 6u64.pow(n)).sum::<u64>());
    }

    #[test]
    fn quorum_is_strict_majority() {
        for n in 1..=16 {
            let q = quorum(n);
            assert!(2 * q > n, "two quorums must intersect for n={n}");
            assert!(q <= n);
            assert!(2 * (q - 1) <= n, "quorum is minimal for n={n}");
        }
    }

    #[test]
    fn validity_edges() {
        let t0 = Instant::from_millis(1_000);
        // drift larger than ttl: no validity at all.
        assert_eq!(
            validity_deadline(t0, Duration::from_millis(1), Duration::from_millis(2)),
            t0
        );
        // validity exactly 0 at the deadline: lost, one microsecond before: won.
        let d = validity_deadline(t0, Duration::from_millis(100), Duration::from_millis(3));
        assert_eq!(d, Instant::from_millis(1_097));
        let mut r = NodeReport::new(1);
        r.set(0, NodeOutcome::Ok);
        assert_eq!(decide(&r, 1, d, d), Decision::Lost(FailureKind::Expired));
        assert_eq!(
            decide(&r, 1, Instant::from_micros(d.as_micros() - 1), d),
            Decision::Won(d)
        );
    }
}
