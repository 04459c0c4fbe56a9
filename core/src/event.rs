//! What the core reports: lock decisions, node failures and link directives.

use core::fmt;

use crate::config::MAX_NODES;
use crate::lease::Lease;

/// Index of a node, in the order the nodes were given to
/// [`Redlock::new`](crate::Redlock::new).
///
/// ```
/// use redlock_core::NodeId;
/// assert_eq!(NodeId(2).index(), 2);
/// assert_eq!(NodeId(2).to_string(), "node 2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u8);

impl NodeId {
    /// The node's position as a `usize`.
    ///
    /// ```
    /// # use redlock_core::NodeId;
    /// assert_eq!(NodeId(0).index(), 0);
    /// ```
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// Handle of one operation (acquire, extend or release) inside a core. Every
/// operation ends with exactly one event carrying its `OpId`.
///
/// ```
/// use redlock_core::OpId;
/// let id = OpId::from_raw(7);
/// assert_eq!(id.into_raw(), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(u32);

impl OpId {
    pub(crate) fn new(slot: usize, generation: u16) -> OpId {
        OpId(((generation as u32) << 16) | slot as u32)
    }
    pub(crate) fn slot(self) -> usize {
        (self.0 & 0xffff) as usize
    }
    pub(crate) fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }
    /// The raw value (for maps keyed by operation).
    ///
    /// ```
    /// # use redlock_core::OpId;
    /// assert_eq!(OpId::from_raw(1).into_raw(), 1);
    /// ```
    pub fn into_raw(self) -> u32 {
        self.0
    }
    /// Rebuilds an id from [`OpId::into_raw`].
    ///
    /// ```
    /// # use redlock_core::OpId;
    /// assert_eq!(OpId::from_raw(3), OpId::from_raw(3));
    /// ```
    pub fn from_raw(raw: u32) -> OpId {
        OpId(raw)
    }
}

/// What went wrong with one node, by kind.
///
/// ```
/// use redlock_core::ErrorKind;
/// assert!(ErrorKind::Auth.is_auth());
/// assert_eq!(ErrorKind::Timeout.to_string(), "timed out");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No (complete) reply within the node timeout.
    Timeout,
    /// Not connected, the connection dropped, or connecting failed.
    Disconnected,
    /// The node sent bytes that are not a RESP reply we can accept
    /// (malformed, unexpected type, larger than the receive buffer, or a
    /// reply nobody asked for). The link is reset.
    Protocol,
    /// Authentication was rejected: `NOAUTH`, `WRONGPASS`, unknown user,
    /// `NOPERM`, or `AUTH` sent to a node without a password.
    Auth,
    /// `NOSCRIPT` after the `EVAL` fallback too.
    NoScript,
    /// `WRONGTYPE`: the key holds something that is not a lock.
    WrongType,
    /// `READONLY`: the node is a replica.
    ReadOnly,
    /// `OOM`: the node is out of memory.
    Oom,
    /// `LOADING`: the node is loading its dataset.
    Loading,
    /// `BUSY`: a script is running too long on the node.
    Busy,
    /// Any other error reply.
    Other,
    /// Too many requests in flight to this node (a stuck connection).
    Backlog,
    /// The caller's transmit buffer could not hold one command.
    BufferTooSmall,
}

impl ErrorKind {
    /// Whether this is an authentication failure.
    ///
    /// ```
    /// # use redlock_core::ErrorKind;
    /// assert!(!ErrorKind::Oom.is_auth());
    /// ```
    pub fn is_auth(self) -> bool {
        matches!(self, ErrorKind::Auth)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Timeout => "timed out",
            ErrorKind::Disconnected => "not connected",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Auth => "authentication rejected",
            ErrorKind::NoScript => "script not found",
            ErrorKind::WrongType => "key holds a value that is not a lock",
            ErrorKind::ReadOnly => "node is read-only (a replica)",
            ErrorKind::Oom => "node out of memory",
            ErrorKind::Loading => "node is loading its dataset",
            ErrorKind::Busy => "node busy running a script",
            ErrorKind::Other => "error reply",
            ErrorKind::Backlog => "too many requests in flight",
            ErrorKind::BufferTooSmall => "transmit buffer too small",
        })
    }
}

/// Longest detail kept from a node's error message (in bytes): long enough
/// for any error line Redis sends (a `MISCONF` explanation is about 300);
/// a longer one is cut at a character boundary and ends with `…`.
pub const MAX_DETAIL_LEN: usize = 400;

/// One node failure, with the node's own words where it sent any.
///
/// ```
/// use redlock_core::{ErrorKind, NodeError};
/// let e = NodeError::new(ErrorKind::Oom, "OOM command not allowed");
/// assert_eq!(e.to_string(), "node out of memory: OOM command not allowed");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodeError {
    /// The kind of failure.
    pub kind: ErrorKind,
    detail: heapless::String<MAX_DETAIL_LEN>,
}

impl NodeError {
    /// An error of `kind` with a detail message (cut to [`MAX_DETAIL_LEN`]
    /// bytes at a character boundary, ending with `…` when cut).
    ///
    /// ```
    /// # use redlock_core::{ErrorKind, NodeError, MAX_DETAIL_LEN};
    /// assert_eq!(NodeError::new(ErrorKind::Timeout, "").detail(), "");
    /// let long = "x".repeat(1000);
    /// let cut = NodeError::new(ErrorKind::Other, &long);
    /// assert!(cut.detail().len() <= MAX_DETAIL_LEN && cut.detail().ends_with('…'));
    /// ```
    pub fn new(kind: ErrorKind, detail: &str) -> NodeError {
        const ELLIPSIS: &str = "…";
        let mut d = heapless::String::new();
        if detail.len() <= MAX_DETAIL_LEN {
            // Cannot fail: it fits.
            let _ = d.push_str(detail);
        } else {
            let mut end = MAX_DETAIL_LEN - ELLIPSIS.len();
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            let _ = d.push_str(&detail[..end]);
            let _ = d.push_str(ELLIPSIS);
        }
        NodeError { kind, detail: d }
    }

    /// The node's message, or our own description of what happened.
    ///
    /// ```
    /// # use redlock_core::{ErrorKind, NodeError};
    /// assert_eq!(NodeError::new(ErrorKind::Other, "ERR x").detail(), "ERR x");
    /// ```
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Debug for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeError({:?}, {:?})", self.kind, self.detail())
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.detail())
        }
    }
}

/// How one node answered one operation's latest attempt.
///
/// ```
/// use redlock_core::NodeOutcome;
/// assert!(NodeOutcome::Ok.answered());
/// assert!(NodeOutcome::Held.answered());
/// assert!(!NodeOutcome::Pending.answered());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum NodeOutcome {
    /// No answer yet (or never: the operation ended first).
    #[default]
    Pending,
    /// The node did what was asked (SET stored the key; the script matched).
    Ok,
    /// The node answered that a key is held by another token (SET NX got
    /// nil, or a script found another value).
    Held,
    /// The node answered that our key is not there at all (an extend or
    /// release found it missing: expired, deleted, or never set there).
    Missing,
    /// The node failed this request.
    Failed(ErrorKind),
}

impl NodeOutcome {
    /// Whether the node gave a definite answer (`Ok`, `Held` or `Missing`).
    ///
    /// ```
    /// # use redlock_core::{ErrorKind, NodeOutcome};
    /// assert!(!NodeOutcome::Failed(ErrorKind::Timeout).answered());
    /// assert!(NodeOutcome::Missing.answered());
    /// ```
    pub fn answered(self) -> bool {
        matches!(
            self,
            NodeOutcome::Ok | NodeOutcome::Held | NodeOutcome::Missing
        )
    }

    /// Whether the node answered that our token does not hold the lock there
    /// (`Held` or `Missing`).
    ///
    /// ```
    /// # use redlock_core::NodeOutcome;
    /// assert!(NodeOutcome::Held.refused() && NodeOutcome::Missing.refused());
    /// assert!(!NodeOutcome::Ok.refused());
    /// ```
    pub fn refused(self) -> bool {
        matches!(self, NodeOutcome::Held | NodeOutcome::Missing)
    }
}

/// Every node's outcome for one operation's latest attempt.
///
/// ```
/// use redlock_core::{NodeOutcome, NodeReport};
/// let mut r = NodeReport::new(3);
/// r.set(0, NodeOutcome::Ok);
/// r.set(1, NodeOutcome::Held);
/// assert_eq!((r.ok(), r.held(), r.failed(), r.pending()), (1, 1, 0, 1));
/// assert_eq!(r.iter().count(), 3);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeReport {
    outcomes: [NodeOutcome; MAX_NODES],
    len: u8,
}

impl NodeReport {
    /// A report for `nodes` nodes, all pending.
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert_eq!(NodeReport::new(5).len(), 5);
    /// ```
    pub fn new(nodes: usize) -> NodeReport {
        NodeReport {
            outcomes: [NodeOutcome::Pending; MAX_NODES],
            len: nodes.min(MAX_NODES) as u8,
        }
    }
    /// Number of nodes.
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert!(!NodeReport::new(1).is_empty());
    /// ```
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// Whether the report covers no node.
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert!(NodeReport::new(0).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Outcome of node `i` (`Pending` when out of range).
    ///
    /// ```
    /// # use redlock_core::{NodeOutcome, NodeReport};
    /// assert_eq!(NodeReport::new(1).get(9), NodeOutcome::Pending);
    /// ```
    pub fn get(&self, i: usize) -> NodeOutcome {
        if i < self.len() {
            self.outcomes[i]
        } else {
            NodeOutcome::Pending
        }
    }
    /// Sets the outcome of node `i` (ignored when out of range).
    ///
    /// ```
    /// # use redlock_core::{NodeOutcome, NodeReport};
    /// let mut r = NodeReport::new(1);
    /// r.set(0, NodeOutcome::Ok);
    /// assert_eq!(r.get(0), NodeOutcome::Ok);
    /// ```
    pub fn set(&mut self, i: usize, outcome: NodeOutcome) {
        if i < self.len() {
            self.outcomes[i] = outcome;
        }
    }
    /// Outcomes in node order.
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert!(NodeReport::new(2).iter().all(|(_, o)| !o.answered()));
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (crate::NodeId, NodeOutcome)> + '_ {
        self.outcomes[..self.len()]
            .iter()
            .enumerate()
            .map(|(i, o)| (crate::NodeId(i as u8), *o))
    }
    /// Nodes that said `Ok`.
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert_eq!(NodeReport::new(2).ok(), 0);
    /// ```
    pub fn ok(&self) -> usize {
        self.count(|o| o == NodeOutcome::Ok)
    }
    /// Nodes that said `Held` (another token).
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert_eq!(NodeReport::new(2).held(), 0);
    /// ```
    pub fn held(&self) -> usize {
        self.count(|o| o == NodeOutcome::Held)
    }
    /// Nodes that said `Missing` (our key is not there).
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert_eq!(NodeReport::new(2).missing(), 0);
    /// ```
    pub fn missing(&self) -> usize {
        self.count(|o| o == NodeOutcome::Missing)
    }
    /// Nodes that said our token does not hold the lock there (`Held` or
    /// `Missing`).
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert_eq!(NodeReport::new(2).refused(), 0);
    /// ```
    pub fn refused(&self) -> usize {
        self.count(NodeOutcome::refused)
    }
    /// Nodes that failed.
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert_eq!(NodeReport::new(2).failed(), 0);
    /// ```
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, NodeOutcome::Failed(_)))
    }
    /// Nodes still pending.
    ///
    /// ```
    /// # use redlock_core::NodeReport;
    /// assert_eq!(NodeReport::new(2).pending(), 2);
    /// ```
    pub fn pending(&self) -> usize {
        self.count(|o| o == NodeOutcome::Pending)
    }
    /// Whether any node failed with `kind`.
    ///
    /// ```
    /// # use redlock_core::{ErrorKind, NodeReport};
    /// assert!(!NodeReport::new(2).any_failed(ErrorKind::Auth));
    /// ```
    pub fn any_failed(&self, kind: ErrorKind) -> bool {
        self.count(|o| o == NodeOutcome::Failed(kind)) > 0
    }
    fn count(&self, f: impl Fn(NodeOutcome) -> bool) -> usize {
        self.outcomes[..self.len()]
            .iter()
            .filter(|o| f(**o))
            .count()
    }
}

impl fmt::Debug for NodeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(&self.outcomes[..self.len()])
            .finish()
    }
}

impl fmt::Display for NodeReport {
    /// `node 0: ok, node 1: held, node 2: timed out`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (node, o)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match o {
                NodeOutcome::Pending => {
                    write!(f, "{node}: not needed (decided before it answered)")?
                }
                NodeOutcome::Ok => write!(f, "{node}: ok")?,
                NodeOutcome::Held => write!(f, "{node}: held by another token")?,
                NodeOutcome::Missing => write!(f, "{node}: our key is gone")?,
                NodeOutcome::Failed(k) => write!(f, "{node}: {k}")?,
            }
        }
        Ok(())
    }
}

/// Why an acquire or extend did not produce a valid lease.
///
/// ```
/// use redlock_core::FailureKind;
/// assert_eq!(FailureKind::Busy.to_string(), "lock is held by someone else");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// Enough nodes answered, and the lock is held by another token on so
    /// many of them that no quorum is possible.
    Busy,
    /// Extend: so many nodes answered that our key is gone (expired or
    /// deleted) or held by another token that no quorum is possible, and
    /// fewer than that many are held by another token. The lease was lost
    /// before this extension.
    NotHeld,
    /// Too few nodes gave a definite answer to decide (down, timing out,
    /// error replies, protocol garbage).
    Unavailable,
    /// Too few nodes answered and at least one rejected our credentials.
    AuthFailed,
    /// A quorum said OK, but too late: no validity was left.
    Expired,
    /// The caller cancelled the operation.
    Cancelled,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Busy => "lock is held by someone else",
            FailureKind::NotHeld => "our lock is gone (its keys expired or were deleted)",
            FailureKind::Unavailable => "too few nodes answered to decide",
            FailureKind::AuthFailed => "authentication rejected",
            FailureKind::Expired => "no validity left",
            FailureKind::Cancelled => "cancelled",
        })
    }
}

/// A failed acquire or extend, with each node's outcome in the last attempt.
///
/// ```
/// use redlock_core::{FailureKind, LockError, NodeReport};
/// let e = LockError { kind: FailureKind::Unavailable, attempts: 4, nodes: NodeReport::new(3) };
/// assert!(e.to_string().starts_with("too few nodes answered to decide after 4 attempts"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockError {
    /// The overall reason.
    pub kind: FailureKind,
    /// Attempts made.
    pub attempts: u32,
    /// Each node's outcome in the last attempt.
    pub nodes: NodeReport,
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "{} after {} attempt{s} ({})",
            self.kind, self.attempts, self.nodes
        )
    }
}

impl core::error::Error for LockError {}

/// The result of a release, node by node, as it stood when the release was
/// decided.
///
/// A release is decided as soon as its [`verdict`](Self::verdict) can no
/// longer change (e.g. a quorum deleted our key), like an acquire is decided
/// at quorum; the remaining nodes' requests are still written and their
/// replies read on the pipelined connections, but they are not waited for,
/// and they show as `Pending` here. Nodes whose connection was down get the
/// release after they reconnect.
///
/// ```
/// use redlock_core::{NodeOutcome, NodeReport, ReleaseReport, ReleaseVerdict};
/// let mut nodes = NodeReport::new(3);
/// nodes.set(0, NodeOutcome::Ok);
/// nodes.set(1, NodeOutcome::Ok);
/// let r = ReleaseReport { nodes };
/// assert_eq!(r.released(), 2);
/// assert_eq!(r.verdict(), ReleaseVerdict::Released);
/// assert_eq!(r.answered(), 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReleaseReport {
    /// Per node: `Ok` = deleted our key, `Held` = another token holds it,
    /// `Missing` = our key was already gone, `Pending` = not waited for.
    pub nodes: NodeReport,
}

/// What a release amounted to, decided by quorum like everything else.
///
/// ```
/// use redlock_core::ReleaseVerdict;
/// assert_ne!(ReleaseVerdict::Released, ReleaseVerdict::NotHeld);
/// assert!(ReleaseVerdict::NotHeld.is_free());
/// assert!(!ReleaseVerdict::Unavailable.is_free());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReleaseVerdict {
    /// Our token held the key on a quorum, and it was deleted there: the lock
    /// was ours until now and is free for others.
    Released,
    /// So many nodes said our key was gone (expired, deleted) or held by
    /// another token that no quorum can have held it: the lease had already
    /// been lost before this release (the work it protected may have run
    /// unprotected at the end). Nothing of ours blocks others.
    NotHeld,
    /// Too few nodes answered to tell, and one rejected our credentials.
    AuthFailed,
    /// Too few nodes answered to tell: our key may remain on some nodes until
    /// its TTL (they get the release when they reconnect).
    Unavailable,
}

impl ReleaseVerdict {
    /// Whether a quorum of nodes is known to be free of our key.
    ///
    /// ```
    /// # use redlock_core::ReleaseVerdict;
    /// assert!(ReleaseVerdict::Released.is_free());
    /// ```
    pub fn is_free(self) -> bool {
        matches!(self, ReleaseVerdict::Released | ReleaseVerdict::NotHeld)
    }
}

impl fmt::Display for ReleaseVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReleaseVerdict::Released => "released",
            ReleaseVerdict::NotHeld => {
                "the lock was already gone (expired or taken) before the release"
            }
            ReleaseVerdict::AuthFailed => {
                "unknown: too few nodes answered (authentication rejected)"
            }
            ReleaseVerdict::Unavailable => "unknown: too few nodes answered",
        })
    }
}

impl ReleaseReport {
    /// The verdict, or `None` while pending replies could still change it.
    pub(crate) fn decided(&self) -> Option<ReleaseVerdict> {
        let n = self.nodes.len();
        let q = crate::quorum::quorum(n);
        let blocking = n + 1 - q;
        let pending = self.nodes.pending();
        if self.released() >= q {
            Some(ReleaseVerdict::Released)
        } else if self.not_held() >= blocking {
            Some(ReleaseVerdict::NotHeld)
        } else if self.released() + pending >= q || self.not_held() + pending >= blocking {
            None
        } else if self.nodes.any_failed(ErrorKind::Auth) {
            Some(ReleaseVerdict::AuthFailed)
        } else {
            Some(ReleaseVerdict::Unavailable)
        }
    }

    /// The overall verdict: [`Released`](ReleaseVerdict::Released) when a
    /// quorum deleted our key; [`NotHeld`](ReleaseVerdict::NotHeld) when so
    /// many nodes did not hold our token that no quorum can have; otherwise
    /// the unanswered nodes decide nothing: `AuthFailed` or `Unavailable`.
    ///
    /// ```
    /// use redlock_core::{NodeOutcome, NodeReport, ReleaseReport, ReleaseVerdict};
    /// let mut nodes = NodeReport::new(5);
    /// nodes.set(0, NodeOutcome::Ok);
    /// nodes.set(1, NodeOutcome::Ok);
    /// nodes.set(2, NodeOutcome::Missing);
    /// // Two nodes never answered: they may still hold our key.
    /// assert_eq!(ReleaseReport { nodes }.verdict(), ReleaseVerdict::Unavailable);
    /// nodes.set(3, NodeOutcome::Missing);
    /// nodes.set(4, NodeOutcome::Held);
    /// assert_eq!(ReleaseReport { nodes }.verdict(), ReleaseVerdict::NotHeld);
    /// ```
    pub fn verdict(&self) -> ReleaseVerdict {
        let n = self.nodes.len();
        let q = crate::quorum::quorum(n);
        if self.released() >= q {
            ReleaseVerdict::Released
        } else if self.not_held() > n - q {
            ReleaseVerdict::NotHeld
        } else if self.nodes.any_failed(ErrorKind::Auth) {
            ReleaseVerdict::AuthFailed
        } else {
            ReleaseVerdict::Unavailable
        }
    }

    /// Nodes where our token held the key and it was deleted.
    ///
    /// ```
    /// # use redlock_core::{NodeReport, ReleaseReport};
    /// assert_eq!(ReleaseReport { nodes: NodeReport::new(1) }.released(), 0);
    /// ```
    pub fn released(&self) -> usize {
        self.nodes.ok()
    }
    /// Nodes that answered that our token was not there (`Held` by another
    /// token, or `Missing`).
    ///
    /// ```
    /// # use redlock_core::{NodeReport, ReleaseReport};
    /// assert_eq!(ReleaseReport { nodes: NodeReport::new(1) }.not_held(), 0);
    /// ```
    pub fn not_held(&self) -> usize {
        self.nodes.refused()
    }
    /// Nodes that answered definitely by the time the release was decided.
    ///
    /// ```
    /// # use redlock_core::{NodeReport, ReleaseReport};
    /// assert_eq!(ReleaseReport { nodes: NodeReport::new(1) }.answered(), 0);
    /// ```
    pub fn answered(&self) -> usize {
        self.nodes.ok() + self.nodes.refused()
    }
    /// Nodes that did not answer definitely (failed, or not waited for).
    ///
    /// ```
    /// # use redlock_core::{NodeReport, ReleaseReport};
    /// assert_eq!(ReleaseReport { nodes: NodeReport::new(1) }.unanswered(), 1);
    /// ```
    pub fn unanswered(&self) -> usize {
        self.nodes.len() - self.answered()
    }
}

/// One output of the core, from [`Redlock::poll_event`](crate::Redlock::poll_event).
///
/// Operation results (`Acquired`, `AcquireFailed`, `Extended`, `Lost`,
/// `Released`) come exactly once per [`OpId`]. `Connect` and `Disconnect` are
/// directives to the transport. `NodeFailed` is diagnostics.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// Open a connection to `node`, then call
    /// [`handle_connected`](crate::Redlock::handle_connected) or, if it fails,
    /// [`handle_node_down`](crate::Redlock::handle_node_down).
    Connect {
        /// The node to connect to.
        node: NodeId,
    },
    /// Close the connection to `node` (its byte stream can no longer be
    /// trusted) and drop any bytes still unread from it. The core has
    /// already counted the node as down (no need to call
    /// [`handle_node_down`](crate::Redlock::handle_node_down)) and asks to
    /// `Connect` again after a backoff.
    Disconnect {
        /// The node whose connection must close.
        node: NodeId,
        /// Why.
        error: NodeError,
    },
    /// A node failed a request (or its handshake, when `op` is `None`).
    NodeFailed {
        /// The node.
        node: NodeId,
        /// The operation concerned, if any.
        op: Option<OpId>,
        /// What went wrong.
        error: NodeError,
    },
    /// The lock is held on a quorum until `lease.deadline()`.
    Acquired {
        /// The operation.
        op: OpId,
        /// The lease.
        lease: Lease,
    },
    /// Acquire gave up after its retries. Any part of the lock it took has
    /// been sent a release.
    AcquireFailed {
        /// The operation.
        op: OpId,
        /// Why, with the last attempt's outcomes.
        error: LockError,
    },
    /// The extension reached a quorum: the new lease replaces the old.
    Extended {
        /// The operation.
        op: OpId,
        /// The extended lease.
        lease: Lease,
    },
    /// The extension failed: treat the lock as lost. No stronger guarantee
    /// than the previous lease's deadline remains.
    Lost {
        /// The operation.
        op: OpId,
        /// Why, with each node's outcome.
        error: LockError,
    },
    /// The release is decided (see [`ReleaseReport`]): as soon as its
    /// verdict can no longer change, without waiting for the other nodes.
    Released {
        /// The operation.
        op: OpId,
        /// Per-node result.
        report: ReleaseReport,
    },
}

impl Event {
    /// The operation this event ends, if it ends one.
    ///
    /// ```
    /// # use redlock_core::{Event, NodeId};
    /// assert_eq!(Event::Connect { node: NodeId(0) }.op(), None);
    /// ```
    pub fn op(&self) -> Option<OpId> {
        match self {
            Event::Acquired { op, .. }
            | Event::AcquireFailed { op, .. }
            | Event::Extended { op, .. }
            | Event::Lost { op, .. }
            | Event::Released { op, .. } => Some(*op),
            _ => None,
        }
    }
}

/// Why a command (acquire, extend, release) could not even start.
///
/// ```
/// use redlock_core::CommandError;
/// assert_eq!(CommandError::TooManyOperations.to_string(), "too many operations in flight");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CommandError {
    /// Every operation slot is in use.
    TooManyOperations,
    /// A resource name is empty or longer than
    /// [`MAX_RESOURCE_LEN`](crate::MAX_RESOURCE_LEN), or a set of resources
    /// is empty or beyond [`MAX_RESOURCES`](crate::MAX_RESOURCES) /
    /// [`MAX_RESOURCE_SET_LEN`](crate::MAX_RESOURCE_SET_LEN).
    BadResource,
    /// The TTL asked for cannot give a positive validity.
    BadTtl(crate::ConfigError),
    /// The retry policy asked for is out of bounds.
    BadRetry(crate::ConfigError),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::TooManyOperations => f.write_str("too many operations in flight"),
            CommandError::BadResource => f.write_str("resource name empty or too long"),
            CommandError::BadTtl(e) => write!(f, "bad ttl: {e}"),
            CommandError::BadRetry(e) => write!(f, "bad retry policy: {e}"),
        }
    }
}

impl core::error::Error for CommandError {}

/// Debug-prints bytes as text where they are printable.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The six kinds of outcome a node can report (the quorum tests use
    /// them too).
    pub(crate) const KINDS: [NodeOutcome; 6] = [
        NodeOutcome::Ok,
        NodeOutcome::Held,
        NodeOutcome::Missing,
        NodeOutcome::Failed(ErrorKind::Other),
        NodeOutcome::Failed(ErrorKind::Auth),
        NodeOutcome::Pending, // silence
    ];

    /// A release is decided exactly when no answer still pending could change
    /// its verdict: every mix of outcomes for N = 1..=7, against the verdicts
    /// of the pending nodes all answering OK, all "held", or all failing.
    #[test]
    fn a_release_is_decided_exactly_when_pending_replies_cannot_change_it() {
        let mut checked = 0u64;
        for n in 1..=7usize {
            for code in 0..6usize.pow(n as u32) {
                let mut nodes = NodeReport::new(n);
                let mut c = code;
                for i in 0..n {
                    nodes.set(i, KINDS[c % 6]);
                    c /= 6;
                }
                let complete = |o: NodeOutcome| {
                    let mut all = nodes;
                    for i in 0..n {
                        if all.get(i) == NodeOutcome::Pending {
                            all.set(i, o);
                        }
                    }
                    ReleaseReport { nodes: all }.verdict()
                };
                let ends = [
                    complete(NodeOutcome::Ok),
                    complete(NodeOutcome::Held),
                    complete(NodeOutcome::Failed(ErrorKind::Other)),
                ];
                let report = ReleaseReport { nodes };
                let agree = ends.iter().all(|v| *v == ends[0]);
                match report.decided() {
                    Some(v) => assert!(agree && v == ends[0], "{nodes}: {v:?} vs {ends:?}"),
                    None => assert!(!agree, "{nodes}: undecided, yet {ends:?}"),
                }
                assert_eq!(report.answered() + report.unanswered(), n);
                assert_eq!(report.answered(), nodes.ok() + nodes.refused());
                assert_eq!(
                    nodes.missing(),
                    (0..n)
                        .filter(|&i| nodes.get(i) == NodeOutcome::Missing)
                        .count()
                );
                checked += 1;
            }
        }
        assert_eq!(checked, (1..=7).map(|n| 6u64.pow(n)).sum::<u64>());
    }

    #[test]
    fn answered_outcomes_and_free_verdicts() {
        for (o, answered) in [
            (NodeOutcome::Ok, true),
            (NodeOutcome::Held, true),
            (NodeOutcome::Missing, true),
            (NodeOutcome::Pending, false),
            (NodeOutcome::Failed(ErrorKind::Timeout), false),
        ] {
            assert_eq!(o.answered(), answered, "{o:?}");
        }
        for (v, free) in [
            (ReleaseVerdict::Released, true),
            (ReleaseVerdict::NotHeld, true),
            (ReleaseVerdict::AuthFailed, false),
            (ReleaseVerdict::Unavailable, false),
        ] {
            assert_eq!(v.is_free(), free, "{v:?}");
        }
    }
}
