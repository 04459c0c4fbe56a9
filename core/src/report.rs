//! Failure reports that name nodes, shared by the transports.
//!
//! The core knows nodes by index; a transport knows their URLs and the last
//! connection-level error it saw. [`Failure`] joins the two so that every
//! error message names each node (by its redacted URL) and what happened
//! there. Built only on error paths: it allocates, the success paths do not.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::event::{FailureKind, LockError, NodeOutcome, NodeReport};

/// One node's part in a failed operation.
///
/// ```
/// use redlock_core::{report::NodeFailure, NodeOutcome};
/// let n = NodeFailure { url: "redis://127.0.0.1:6379".into(), outcome: NodeOutcome::Held, last_error: None };
/// assert_eq!(n.url, "redis://127.0.0.1:6379");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node's URL, password redacted (`redis://user:***@host:port`).
    pub url: String,
    /// The node's outcome in the last attempt.
    pub outcome: NodeOutcome,
    /// The last error seen for this node (the node's own words, or what the
    /// transport saw: connection refused, TLS error, timeout...), if any.
    pub last_error: Option<String>,
}

/// A failed acquire or extend: the core's verdict plus, per node, its
/// redacted URL, outcome and last error.
///
/// ```
/// use redlock_core::{report::{Failure, NodeFailure}, FailureKind, LockError, NodeOutcome, NodeReport};
/// let mut nodes = NodeReport::new(2);
/// nodes.set(0, NodeOutcome::Held);
/// let f = Failure::new(
///     LockError { kind: FailureKind::Unavailable, attempts: 1, nodes },
///     vec![
///         NodeFailure { url: "redis://a:6379".into(), outcome: NodeOutcome::Held, last_error: None },
///         NodeFailure { url: "redis://b:6379".into(), outcome: NodeOutcome::Pending, last_error: Some("connect failed".into()) },
///     ],
/// );
/// assert_eq!(f.kind(), FailureKind::Unavailable);
/// let timeout = NodeFailure {
///     url: "redis://c:6379".into(),
///     outcome: NodeOutcome::Failed(redlock_core::ErrorKind::Timeout),
///     last_error: Some("no reply in time".into()),
/// };
/// let g = Failure::new(f.error, vec![timeout]);
/// assert!(g.to_string().ends_with("redis://c:6379: timed out (no reply in time)"));
/// assert_eq!(
///     f.to_string(),
///     "too few nodes answered to decide after 1 attempt: redis://a:6379: held by another token; \
///      redis://b:6379: not waited for (decided before it answered; last error: connect failed)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The core's verdict, with each node's outcome.
    pub error: LockError,
    /// Per node, in node order.
    pub nodes: Vec<NodeFailure>,
}

impl Failure {
    /// Joins the core's verdict with per-node details.
    ///
    /// ```
    /// # use redlock_core::{report::Failure, FailureKind, LockError, NodeReport};
    /// let f = Failure::new(LockError { kind: FailureKind::Busy, attempts: 2, nodes: NodeReport::new(0) }, vec![]);
    /// assert_eq!(f.error.attempts, 2);
    /// ```
    pub fn new(error: LockError, nodes: Vec<NodeFailure>) -> Failure {
        Failure { error, nodes }
    }

    /// A failure decided locally (e.g. the lease ran out while an extension
    /// was still in flight): no node is blamed.
    ///
    /// ```
    /// # use redlock_core::{report::Failure, FailureKind};
    /// let f = Failure::local(FailureKind::Expired, &["redis://a:6379".to_string()]);
    /// assert_eq!(f.nodes.len(), 1);
    /// ```
    pub fn local(kind: FailureKind, urls: &[String]) -> Failure {
        Failure {
            error: LockError {
                kind,
                attempts: 1,
                nodes: NodeReport::new(urls.len()),
            },
            nodes: urls
                .iter()
                .map(|u| NodeFailure {
                    url: u.clone(),
                    outcome: NodeOutcome::Pending,
                    last_error: None,
                })
                .collect(),
        }
    }

    /// The overall reason.
    ///
    /// ```
    /// # use redlock_core::{report::Failure, FailureKind, LockError, NodeReport};
    /// # let f = Failure::new(LockError { kind: FailureKind::Busy, attempts: 1, nodes: NodeReport::new(0) }, vec![]);
    /// assert_eq!(f.kind(), FailureKind::Busy);
    /// ```
    pub fn kind(&self) -> FailureKind {
        self.error.kind
    }
}

impl fmt::Display for Failure {
    /// `too few nodes answered to decide after 1 attempt: redis://h:1: timed
    /// out (no reply in time); redis://h:2: held by another token;
    /// redis://h:3: ok`: every node, by redacted URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attempts = self.error.attempts;
        let s = if attempts == 1 { "" } else { "s" };
        write!(f, "{} after {attempts} attempt{s}", self.error.kind)?;
        for (i, n) in self.nodes.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{}: ", n.url)?;
            match (n.outcome, &n.last_error) {
                (NodeOutcome::Held, _) => f.write_str("held by another token")?,
                (NodeOutcome::Missing, _) => f.write_str("our key is gone")?,
                (NodeOutcome::Pending, None) => {
                    f.write_str("not waited for (decided before it answered)")?
                }
                (NodeOutcome::Pending, Some(e)) => write!(
                    f,
                    "not waited for (decided before it answered; last error: {e})"
                )?,
                (NodeOutcome::Failed(k), None) => write!(f, "{k}")?,
                // Say what kind of failure, unless the detail already does.
                (NodeOutcome::Failed(k), Some(e)) if e.starts_with(k.to_string().as_str()) => {
                    write!(f, "{e}")?
                }
                (NodeOutcome::Failed(k), Some(e)) => write!(f, "{k} ({e})")?,
                (NodeOutcome::Ok, _) => f.write_str("ok")?,
            }
        }
        Ok(())
    }
}
