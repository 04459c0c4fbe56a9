//! Every call the soak makes into `redlock-std` and `redlock-tokio` is in
//! this module, and nowhere else: the rest of the soak sees only [`Held`],
//! [`NotTaken`], [`Ended`] and [`FailInfo`]. When the transports' public API
//! changes (issue 13), this is the one file to adapt.
//!
//! Both clients are built as a new user would: nodes and a TTL, every other
//! setting left at the library's defaults (node timeout, retry policy,
//! reconnect backoff, drift).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redlock_core::report::Failure;
use redlock_core::{FailureKind, NodeOutcome, ReleaseReport, ReleaseVerdict};

/// The blocking client.
pub(crate) type StdClient = redlock_std::Client;
/// The async client.
pub(crate) type TokioClient = redlock_tokio::Client;

/// A blocking client with library defaults but for the TTL. With
/// `backoff_from_ttl` (a diagnostic, not a default), its reconnect backoff
/// is set to the bounds `Config::new(ttl)` derives from the TTL, as the
/// tokio builder does by itself.
pub(crate) fn build_std(
    urls: &[String],
    ttl: Duration,
    backoff_from_ttl: bool,
) -> Result<StdClient, String> {
    let derived = redlock_core::Config::new(ttl);
    let builder = redlock_std::Client::builder().nodes(urls).ttl(ttl);
    let builder = if backoff_from_ttl {
        let (min, max) = (derived.reconnect_min, derived.reconnect_max);
        builder.configure(move |c| {
            c.reconnect_min = min;
            c.reconnect_max = max;
        })
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| format!("redlock-std client: {e}"))
}

/// An async client with library defaults but for the TTL; call inside the
/// tokio runtime that will drive it.
pub(crate) fn build_tokio(urls: &[String], ttl: Duration) -> Result<TokioClient, String> {
    redlock_tokio::Client::builder()
        .nodes(urls)
        .ttl(ttl)
        .build()
        .map_err(|e| format!("redlock-tokio client: {e}"))
}

/// Waits (at most `timeout`) until the blocking client has finished what it
/// started on every node; whether it got there.
pub(crate) fn flush_std(client: &StdClient, timeout: Duration) -> bool {
    client.flush(timeout).unwrap_or(false)
}

/// The node timeout and reconnect bounds each client ended up with (for
/// the summary: these are the library's defaults for the TTL).
pub(crate) fn timing(std: &StdClient, tokio: &TokioClient) -> [(&'static str, String); 2] {
    let show = |c: &redlock_core::Config| {
        format!(
            "node timeout {:?}, reconnect backoff {:?} doubling to {:?}",
            c.node_timeout, c.reconnect_min, c.reconnect_max
        )
    };
    [("tokio", show(tokio.config())), ("std", show(std.config()))]
}

/// How a worker takes and gives back a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// `lock` (default retries), then `release`.
    Lock,
    /// `try_lock` (one attempt), then `release`.
    TryLock,
    /// Kept extended in the background: std `keep(lock(..))`, tokio
    /// `lock_and_keep`; then `release` of the kept lease.
    Keep,
    /// tokio `with_lock` (std's `with_lock` does not show the token, which
    /// the stale-key check needs: std workers use [`Style::Keep`], which is
    /// what its `with_lock` does).
    WithLock,
}

impl Style {
    /// Short name for the log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Style::Lock => "lock",
            Style::TryLock => "try_lock",
            Style::Keep => "keep",
            Style::WithLock => "with_lock",
        }
    }

    /// Whether the lease is extended in the background.
    pub(crate) fn kept(self) -> bool {
        matches!(self, Style::Keep | Style::WithLock)
    }
}

/// What the protected section may ask of the lock it runs under.
pub(crate) trait Held: Send + Sync {
    /// Validity left (zero once lost or expired).
    fn remaining(&self) -> Duration;
    /// Whether the lock is known lost (or its validity ran out).
    fn is_lost(&self) -> bool;
    /// The token stored in the key.
    fn token(&self) -> String;
}

/// One node's part in a failure.
#[derive(Clone, Debug)]
pub(crate) struct NodeInfo {
    /// What the node did in the last attempt.
    pub(crate) outcome: NodeOutcome,
    /// The error the library blames on it, if any.
    pub(crate) last_error: Option<String>,
}

/// A failed acquire or extension, as the library reported it.
#[derive(Clone, Debug)]
pub(crate) struct FailInfo {
    /// The core's verdict.
    pub(crate) kind: FailureKind,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// Per node, in node order.
    pub(crate) nodes: Vec<NodeInfo>,
    /// The error's `Display`.
    pub(crate) message: String,
}

impl FailInfo {
    fn new(f: &Failure, message: String) -> FailInfo {
        FailInfo {
            kind: f.kind(),
            attempts: f.error.attempts,
            nodes: f
                .nodes
                .iter()
                .map(|n| NodeInfo {
                    outcome: n.outcome,
                    last_error: n.last_error.clone(),
                })
                .collect(),
            message,
        }
    }
}

/// Why no lock was taken.
#[derive(Debug)]
pub(crate) enum NotTaken {
    /// `Error::Busy`.
    Busy(FailInfo),
    /// `Error::Unavailable` (too few answers, or no validity left).
    Unavailable(FailInfo),
    /// `Error::Auth`.
    Auth(FailInfo),
    /// Anything else (local refusal, driver stopped...).
    Other(String),
}

/// How a lock that was taken ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Released on a quorum.
    Released,
    /// tokio `with_lock` returned `Ok`: released, or a release that could
    /// not be confirmed (the API does not say which).
    Done,
    /// The release could not tell (too few answers).
    Unknown(String),
    /// The release found our token gone from too many nodes.
    NotHeld(String),
    /// An extension failed, or the validity ran out: the lock was lost.
    Lost(FailInfo),
    /// Anything else.
    Other(String),
}

// ---- redlock-std -----------------------------------------------------------

struct StdLease<'a>(&'a redlock_std::Lease);

impl Held for StdLease<'_> {
    fn remaining(&self) -> Duration {
        self.0.remaining()
    }
    fn is_lost(&self) -> bool {
        !self.0.is_valid()
    }
    fn token(&self) -> String {
        self.0.token().as_str().to_owned()
    }
}

impl Held for redlock_std::LossSignal {
    fn remaining(&self) -> Duration {
        redlock_std::LossSignal::remaining(self)
    }
    fn is_lost(&self) -> bool {
        redlock_std::LossSignal::is_lost(self)
    }
    fn token(&self) -> String {
        redlock_std::LossSignal::token(self).as_str().to_owned()
    }
}

fn std_not_taken(e: redlock_std::Error) -> NotTaken {
    let message = e.to_string();
    match e {
        redlock_std::Error::Busy(f) => NotTaken::Busy(FailInfo::new(&f, message)),
        redlock_std::Error::Unavailable(f) => NotTaken::Unavailable(FailInfo::new(&f, message)),
        redlock_std::Error::Auth(f) => NotTaken::Auth(FailInfo::new(&f, message)),
        _ => NotTaken::Other(message),
    }
}

fn std_ended(r: Result<ReleaseReport, redlock_std::Error>) -> Ended {
    match r {
        Ok(report) => verdict(&report),
        Err(e @ redlock_std::Error::NotHeld(_)) => Ended::NotHeld(e.to_string()),
        // A release that too few nodes answered: it could not tell.
        Err(e @ redlock_std::Error::Unavailable(_)) => Ended::Unknown(e.to_string()),
        Err(redlock_std::Error::Lost(f)) => {
            let message = format!("lock lost: {f}");
            Ended::Lost(FailInfo::new(&f, message))
        }
        Err(e) => Ended::Other(e.to_string()),
    }
}

/// Takes `resource` in `style`, runs `section` under it, gives it back.
pub(crate) fn std_op(
    client: &StdClient,
    style: Style,
    resource: &str,
    section: impl FnOnce(&dyn Held),
) -> Result<Ended, NotTaken> {
    match style {
        Style::Lock | Style::TryLock => {
            let lease = if style == Style::Lock {
                client.lock(resource)
            } else {
                client.try_lock(resource)
            }
            .map_err(std_not_taken)?;
            section(&StdLease(&lease));
            Ok(std_ended(lease.release()))
        }
        Style::Keep | Style::WithLock => {
            let lease = client.lock(resource).map_err(std_not_taken)?;
            let keeper = client.keep(lease);
            section(&*keeper);
            let lost = keeper.lost_error();
            let released = keeper.release();
            match lost {
                Some(e) => Ok(std_ended(Err(e))),
                None => Ok(std_ended(released)),
            }
        }
    }
}

// ---- redlock-tokio ---------------------------------------------------------

struct TokioLease(redlock_tokio::Lease);

impl Held for TokioLease {
    fn remaining(&self) -> Duration {
        self.0.remaining()
    }
    fn is_lost(&self) -> bool {
        !self.0.is_valid()
    }
    fn token(&self) -> String {
        self.0.token().as_str().to_owned()
    }
}

struct TokioGuard(redlock_tokio::LossSignal);

impl Held for TokioGuard {
    fn remaining(&self) -> Duration {
        self.0.remaining()
    }
    fn is_lost(&self) -> bool {
        self.0.is_lost()
    }
    fn token(&self) -> String {
        self.0.token().as_str().to_owned()
    }
}

fn tokio_not_taken(e: redlock_tokio::Error) -> NotTaken {
    let message = e.to_string();
    match e {
        redlock_tokio::Error::Busy(f) => NotTaken::Busy(FailInfo::new(&f, message)),
        redlock_tokio::Error::Unavailable(f) => NotTaken::Unavailable(FailInfo::new(&f, message)),
        redlock_tokio::Error::Auth(f) => NotTaken::Auth(FailInfo::new(&f, message)),
        _ => NotTaken::Other(message),
    }
}

fn tokio_ended(r: Result<ReleaseReport, redlock_tokio::Error>) -> Ended {
    match r {
        Ok(report) => verdict(&report),
        Err(e @ redlock_tokio::Error::NotHeld(_)) => Ended::NotHeld(e.to_string()),
        // A release that too few nodes answered: it could not tell.
        Err(e @ redlock_tokio::Error::Unavailable(_)) => Ended::Unknown(e.to_string()),
        Err(redlock_tokio::Error::Lost(f)) => {
            let message = format!("lock lost: {f}");
            Ended::Lost(FailInfo::new(&f, message))
        }
        Err(e) => Ended::Other(e.to_string()),
    }
}

/// Takes `resource` in `style`, runs `section` under it, gives it back.
pub(crate) async fn tokio_op<F, Fut>(
    client: &TokioClient,
    style: Style,
    resource: &str,
    section: F,
) -> Result<Ended, NotTaken>
where
    F: FnOnce(Arc<dyn Held>) -> Fut,
    Fut: Future<Output = ()>,
{
    match style {
        Style::Lock | Style::TryLock => {
            let lease = if style == Style::Lock {
                client.lock(resource).await
            } else {
                client.try_lock(resource).await
            }
            .map_err(tokio_not_taken)?;
            let held = Arc::new(TokioLease(lease));
            section(held.clone()).await;
            match Arc::try_unwrap(held) {
                Ok(TokioLease(lease)) => Ok(tokio_ended(lease.release().await)),
                // The section kept a handle: the lease is released when the
                // last one is dropped.
                Err(_) => Ok(Ended::Other("the section kept its lease".into())),
            }
        }
        Style::Keep => {
            let kept = client
                .lock_and_keep(resource)
                .await
                .map_err(tokio_not_taken)?;
            section(Arc::new(TokioGuard(kept.loss_signal()))).await;
            let lost = kept.lost_error();
            let released = kept.release().await;
            match lost {
                Some(e) => Ok(tokio_ended(Err(e))),
                None => Ok(tokio_ended(released)),
            }
        }
        Style::WithLock => {
            let r = client
                .with_lock(resource, |guard| section(Arc::new(TokioGuard(guard))))
                .await;
            match r {
                Ok(()) => Ok(Ended::Done),
                Err(
                    e @ (redlock_tokio::Error::Busy(_)
                    | redlock_tokio::Error::Unavailable(_)
                    | redlock_tokio::Error::Auth(_)),
                ) => Err(tokio_not_taken(e)),
                Err(e) => Ok(tokio_ended(Err(e))),
            }
        }
    }
}

fn verdict(report: &ReleaseReport) -> Ended {
    match report.verdict() {
        ReleaseVerdict::Released => Ended::Released,
        ReleaseVerdict::NotHeld => Ended::NotHeld(format!("release: {}", report.verdict())),
        other => Ended::Unknown(format!("release: {other}")),
    }
}
