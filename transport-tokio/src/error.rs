//! Errors: every failure names the nodes concerned by their redacted URL.

use std::fmt;

use redlock_core::settings::{write_duplicate, write_url_error, SettingsError};
use redlock_core::url::UrlError;
use redlock_core::{CommandError, ConfigError, FailureKind, ReleaseReport};

pub use redlock_core::report::{Failure, NodeFailure};

/// Everything that can go wrong, by what the caller may want to do about it.
/// `redlock-std` has the same variants, with the same meanings.
///
/// `Display` names every failed node by its redacted URL and says what went
/// wrong there; it never shows a password or a token.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let e = redlock_tokio::Client::builder().node("127.0.0.1:6379").build().unwrap_err();
/// assert!(matches!(e, redlock_tokio::Error::Url { .. }));
/// assert!(e.to_string().contains("add redis://"));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The lock is held by someone else (after all retries).
    Busy(Failure),
    /// Too few nodes answered to decide (down, timing out, error replies,
    /// garbage), or no validity was left; for a release: too few answered
    /// to tell whether it was released (our key may remain on some nodes
    /// until its TTL).
    Unavailable(Failure),
    /// Too few nodes answered and at least one rejected our credentials.
    Auth(Failure),
    /// An extension failed (or the lease ran out before one succeeded): the
    /// lock must be considered lost. [`Failure::kind`] says why:
    /// `Busy`/`NotHeld` when the nodes said our token is gone.
    Lost(Failure),
    /// A release found that this token did not hold the lock on a quorum:
    /// the lease had expired (or been taken over) before it was released,
    /// so the work it protected may have run unprotected at the end. The
    /// report says what each node answered.
    NotHeld(ReleaseReport),
    /// A node URL could not be parsed.
    Url {
        /// The URL as given, anything that may be a password masked.
        url: String,
        /// What is wrong with it.
        error: UrlError,
    },
    /// The same server (host and port) was given twice, whatever the db or
    /// credentials: two dbs of one server are not independent nodes (see
    /// [`Builder::allow_same_server_twice`](crate::Builder::allow_same_server_twice)
    /// for the compatibility opt-out).
    DuplicateNode {
        /// The first URL naming the server (password redacted).
        first: String,
        /// The second one.
        second: String,
    },
    /// The configuration is invalid (no nodes, too many, a TTL too short
    /// for its node timeout and drift...).
    Config(ConfigError),
    /// The core refused the command: a bad resource name or set, a bad TTL
    /// or retry policy, or too many operations in flight (after waiting for
    /// a free slot until the request's own deadline).
    Command(CommandError),
    /// The operating system failed us (RNG, TLS setup, no tokio runtime).
    Io(std::io::Error),
    /// The acquire was cancelled; whatever part of the lock it took has
    /// been released. (An async acquire is cancelled by dropping its
    /// future, which then returns nothing: this variant exists so that both
    /// crates have the same errors, and is not produced by this crate
    /// today.)
    Cancelled,
    /// The client's driver has stopped (it panicked, its runtime shut down,
    /// or the client is shutting down): no request can reach the nodes any
    /// more. Every call, present and future, fails with this error.
    DriverStopped,
}

impl Error {
    /// The per-node details, for `Busy`, `Unavailable`, `Auth` and `Lost`.
    ///
    /// ```
    /// let e = redlock_tokio::Error::Io(std::io::Error::other("x"));
    /// assert!(e.failure().is_none());
    /// ```
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Error::Busy(f) | Error::Unavailable(f) | Error::Auth(f) | Error::Lost(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn stopped() -> Error {
        Error::DriverStopped
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

impl From<SettingsError> for Error {
    fn from(e: SettingsError) -> Error {
        match e {
            SettingsError::Url { url, error } => Error::Url { url, error },
            SettingsError::DuplicateNode { first, second } => {
                Error::DuplicateNode { first, second }
            }
            SettingsError::Config(e) => Error::Config(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Busy(x) | Error::Unavailable(x) | Error::Auth(x) => write!(f, "{x}"),
            Error::Lost(x) => write!(f, "lock lost: {x}"),
            Error::NotHeld(r) => not_held(f, r),
            Error::Url { url, error } => write_url_error(f, url, *error),
            Error::DuplicateNode { first, second } => write_duplicate(f, first, second),
            Error::Config(e) => write!(f, "bad configuration: {e}"),
            Error::Command(e) => write!(f, "command refused: {e}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Cancelled => f.write_str("cancelled (any part of the lock taken was released)"),
            Error::DriverStopped => f.write_str(DRIVER_STOPPED),
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
            Error::NotHeld(_)
            | Error::DuplicateNode { .. }
            | Error::Cancelled
            | Error::DriverStopped => None,
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

const DRIVER_STOPPED: &str =
    "the redlock driver stopped: this client can no longer reach its nodes";

fn not_held(f: &mut fmt::Formatter<'_>, r: &ReleaseReport) -> fmt::Result {
    write!(
        f,
        "this token did not hold the lock on a quorum: it had expired or been taken before \
         the release (released on {} of {} nodes, not held on {}, no answer from {})",
        r.released(),
        r.nodes.len(),
        r.not_held(),
        r.unanswered()
    )
}
