//! Errors: every failure names the nodes concerned (by redacted URL) and
//! what went wrong with each.

use std::fmt;
use std::io;

use redlock_core::url::UrlError;
use redlock_core::{CommandError, ConfigError, FailureKind, LockError, NodeOutcome, NodeReport};

/// One node's part in a failed operation (the same shape as `redlock-std`'s).
///
/// ```
/// use redlock_core::NodeOutcome;
/// use redlock_tokio::NodeFailure;
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

/// A failed acquire or extension: the core's verdict plus, per node, its
/// redacted URL, outcome and last error.
///
/// ```
/// use redlock_core::{FailureKind, LockError, NodeReport};
/// use redlock_tokio::Failure;
/// let f = Failure::new(
///     LockError { kind: FailureKind::Unavailable, attempts: 1, nodes: NodeReport::new(0) },
///     Vec::new(),
/// );
/// assert_eq!(f.kind(), FailureKind::Unavailable);
/// assert!(f.to_string().starts_with("too few nodes answered"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The core's verdict, with each node's outcome.
    pub error: LockError,
    /// Per node, in node order.
    pub nodes: Vec<NodeFailure>,
}

impl Failure {
    /// A failure from the core's verdict and the per-node details.
    ///
    /// ```
    /// # use redlock_core::{FailureKind, LockError, NodeReport};
    /// # use redlock_tokio::Failure;
    /// let f = Failure::new(LockError { kind: FailureKind::Busy, attempts: 2, nodes: NodeReport::new(0) }, vec![]);
    /// assert_eq!(f.error.attempts, 2);
    /// ```
    pub fn new(error: LockError, nodes: Vec<NodeFailure>) -> Failure {
        Failure { error, nodes }
    }

    /// The overall reason.
    ///
    /// ```
    /// # use redlock_core::{FailureKind, LockError, NodeReport};
    /// # use redlock_tokio::Failure;
    /// # let f = Failure::new(LockError { kind: FailureKind::Busy, attempts: 1, nodes: NodeReport::new(0) }, vec![]);
    /// assert_eq!(f.kind(), FailureKind::Busy);
    /// ```
    pub fn kind(&self) -> FailureKind {
        self.error.kind
    }

    /// A failure decided locally (the lease ran out while an extension was
    /// still in flight): no node is blamed.
    pub(crate) fn local(kind: FailureKind, urls: &[String]) -> Failure {
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
}

impl fmt::Display for Failure {
    /// `too few nodes answered to decide after 1 attempt: redis://h:1: timed
    /// out (no reply in time); redis://h:2: held by another token;
    /// redis://h:3: ok`: every node, by redacted URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.error.attempts;
        let s = if a == 1 { "" } else { "s" };
        write!(f, "{} after {a} attempt{s}", self.error.kind)?;
        let mut first = true;
        for n in &self.nodes {
            f.write_str(if first { ": " } else { "; " })?;
            first = false;
            write!(f, "{}: ", n.url)?;
            match (n.outcome, &n.last_error) {
                (NodeOutcome::Held, _) => f.write_str("held by another token")?,
                (NodeOutcome::Pending, None) => f.write_str("no answer")?,
                (NodeOutcome::Pending, Some(e)) => write!(f, "no answer ({e})")?,
                (NodeOutcome::Failed(k), None) => write!(f, "{k}")?,
                (NodeOutcome::Failed(k), Some(e)) => write!(f, "{k} ({e})")?,
                (NodeOutcome::Ok, _) => f.write_str("ok")?,
            }
        }
        Ok(())
    }
}

/// Everything that can go wrong. `Display` names every failed node by its
/// redacted URL and never shows a password or a full token.
///
/// ```
/// use redlock_tokio::Client;
/// let err = Client::builder().node("redis://user:hunter2@host:99999").unwrap_err();
/// assert!(!err.to_string().contains("hunter2"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Enough nodes answered and the lock is held by someone else.
    Busy(Failure),
    /// Too few nodes gave a definite answer (down, timing out, garbage), or
    /// a quorum answered too late to leave any validity.
    Unavailable(Failure),
    /// Too few nodes answered and at least one rejected our credentials.
    Auth(Failure),
    /// An extension failed: the lock must be treated as lost.
    Lost(Failure),
    /// A node URL could not be parsed.
    Url {
        /// The URL as given, with anything that may be a password redacted.
        url: String,
        /// What is wrong with it.
        error: UrlError,
    },
    /// The configuration is invalid.
    Config(ConfigError),
    /// The command could not start (bad resource name, bad TTL, too many
    /// operations in flight).
    Command(CommandError),
    /// An I/O failure of the client itself: no OS randomness, TLS setup, no
    /// tokio runtime, or the driver task has stopped.
    Io(io::Error),
}

impl Error {
    /// The per-node details, for the lock errors.
    ///
    /// ```
    /// # use redlock_tokio::Error;
    /// assert!(Error::Io(std::io::Error::other("x")).failure().is_none());
    /// ```
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Error::Busy(f) | Error::Unavailable(f) | Error::Auth(f) | Error::Lost(f) => Some(f),
            _ => None,
        }
    }

    /// The error for a failed acquire.
    pub(crate) fn acquire_failed(failure: Failure) -> Error {
        match failure.error.kind {
            FailureKind::Busy => Error::Busy(failure),
            FailureKind::AuthFailed => Error::Auth(failure),
            _ => Error::Unavailable(failure),
        }
    }

    pub(crate) fn stopped() -> Error {
        Error::Io(io::Error::other("the redlock driver task has stopped"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Busy(x) | Error::Unavailable(x) | Error::Auth(x) => {
                write!(f, "lock not acquired: {x}")
            }
            Error::Lost(x) => write!(f, "lock lost: extension failed: {x}"),
            Error::Url { url, error } => write!(f, "bad node URL {url}: {error}"),
            Error::Config(e) => write!(f, "bad configuration: {e}"),
            Error::Command(e) => write!(f, "command refused: {e}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Busy(x) | Error::Unavailable(x) | Error::Auth(x) | Error::Lost(x) => {
                Some(&x.error)
            }
            Error::Url { error, .. } => Some(error),
            Error::Config(e) => Some(e),
            Error::Command(e) => Some(e),
            Error::Io(e) => Some(e),
        }
    }
}

/// Hides whatever may be a password in a URL that did not parse: everything
/// between the scheme and the last `@`.
pub(crate) fn redact_unparsed(url: &str) -> String {
    redlock_core::url::redact(url).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_userinfo() {
        assert_eq!(redact_unparsed("redis://u:pw@h:0"), "redis://***@h:0");
        assert_eq!(redact_unparsed("pw@h"), "***@h");
        assert_eq!(redact_unparsed("redis://h:0"), "redis://h:0");
        assert_eq!(redact_unparsed("redis://a@b@h"), "redis://***@h");
        assert_eq!(redact_unparsed("u:pw@x://h"), "***@x://h");
    }
}
