//! Errors: every failure names the nodes concerned (by redacted URL) and
//! what went wrong with each.

use std::fmt;
use std::io;

use redlock_core::url::UrlError;
use redlock_core::{CommandError, ConfigError, FailureKind};

pub use redlock_core::report::{Failure, NodeFailure};

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
