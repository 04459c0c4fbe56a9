//! Errors: every failure names the nodes concerned by their redacted URL.

use std::fmt;

use redlock_core::{CommandError, ConfigError, FailureKind};

pub use redlock_core::report::{Failure, NodeFailure};

/// Everything that can go wrong, by what the caller may want to do about it.
///
/// `Display` names every failed node by its redacted URL and says what went
/// wrong; it never shows a password or a full token.
///
/// ```
/// let e = redlock_std::Client::builder().node("http://nope").unwrap_err();
/// assert!(matches!(e, redlock_std::Error::Url { .. }));
/// assert!(e.to_string().contains("http://nope"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The lock is held by someone else.
    Busy(Failure),
    /// Too few nodes answered to decide (down, timing out, garbage), or no
    /// validity was left.
    Unavailable(Failure),
    /// Too few nodes answered and at least one rejected our credentials.
    Auth(Failure),
    /// An extension failed: the lock must be considered lost.
    Lost(Failure),
    /// A node URL could not be parsed.
    Url {
        /// The URL, password redacted.
        url: String,
        /// Why.
        error: redlock_core::url::UrlError,
    },
    /// The configuration is invalid.
    Config(ConfigError),
    /// The core refused the command (bad resource, bad TTL, too many operations).
    Command(CommandError),
    /// The operating system failed us (RNG, threads, the driver stopped).
    Io(std::io::Error),
    /// The acquire was cancelled through a [`Cancel`](crate::Cancel) handle;
    /// whatever part of the lock it took has been released.
    Cancelled,
}

impl Error {
    /// The failure details, for `Busy`, `Unavailable`, `Auth` and `Lost`.
    ///
    /// ```
    /// let e = redlock_std::Error::Io(std::io::Error::other("x"));
    /// assert!(e.failure().is_none());
    /// ```
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Error::Busy(f) | Error::Unavailable(f) | Error::Auth(f) | Error::Lost(f) => Some(f),
            _ => None,
        }
    }

    /// Maps an acquire failure to its variant.
    pub(crate) fn from_acquire(f: Failure) -> Error {
        match f.kind() {
            FailureKind::Busy => Error::Busy(f),
            FailureKind::AuthFailed => Error::Auth(f),
            FailureKind::Cancelled => Error::Cancelled,
            _ => Error::Unavailable(f),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Busy(x) => write!(f, "lock not acquired: {x}"),
            Error::Unavailable(x) => write!(f, "lock not acquired: {x}"),
            Error::Auth(x) => write!(f, "lock not acquired: {x}"),
            Error::Lost(x) => write!(f, "lock lost: extension failed: {x}"),
            Error::Url { url, error } => write!(f, "bad node URL {url}: {error}"),
            Error::Config(e) => write!(f, "bad configuration: {e}"),
            Error::Command(e) => write!(f, "command refused: {e}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Cancelled => f.write_str("cancelled (any part of the lock taken was released)"),
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
            Error::Command(e) => Some(e),
            Error::Io(e) => Some(e),
            Error::Config(_) | Error::Cancelled => None,
        }
    }
}

impl From<CommandError> for Error {
    fn from(e: CommandError) -> Self {
        Error::Command(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}
