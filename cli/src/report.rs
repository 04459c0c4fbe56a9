//! Messages about failed operations: one sentence per failure, every node
//! named (password redacted) with what happened there, no phrase said twice.
//!
//! The words depend on the operation: for an acquire a node that said "no"
//! holds the lock for another token; for an extension or a release it no
//! longer holds ours. A node whose reply was not needed to decide (the
//! others already had) is "not waited for (decided before it answered)",
//! never mistaken for a node that is down or timed out.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use redlock_core::url::NodeUrl;
use redlock_core::{ErrorKind, FailureKind, NodeOutcome};
use redlock_std::{Error, Failure};

/// Which operation failed (it decides the words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Acquire,
    Extend,
    Release,
}

/// The reason, without the node list, e.g. "held by someone else after 4 attempts".
fn verdict(f: &Failure, op: Op) -> String {
    let what = match (op, f.kind()) {
        (Op::Acquire, FailureKind::Busy) => "held by someone else",
        (_, FailureKind::Busy) => {
            "this token does not hold the lock on a quorum (someone else has it)"
        }
        (_, FailureKind::NotHeld) => {
            "this token does not hold the lock on a quorum (its keys expired or were deleted)"
        }
        (_, FailureKind::Unavailable) => "too few nodes answered to decide",
        (_, FailureKind::AuthFailed) => {
            "too few nodes answered to decide, and authentication was rejected"
        }
        (Op::Acquire, FailureKind::Expired) => {
            "no validity left (the attempt took longer than the TTL allows)"
        }
        (_, FailureKind::Expired) => "the lease had already run out",
        (_, FailureKind::Cancelled) => "cancelled",
        (_, _) => "failed",
    };
    let mut s = what.to_owned();
    if op == Op::Acquire {
        let n = f.error.attempts;
        let _ = write!(s, " after {n} attempt{}", if n == 1 { "" } else { "s" });
    }
    s
}

/// What one node did, e.g. "timed out (no reply in time)".
fn node_outcome(
    outcome: NodeOutcome,
    last_error: Option<&str>,
    op: Op,
    url: Option<&NodeUrl>,
) -> String {
    let mut s = match (outcome, last_error) {
        (NodeOutcome::Ok, _) => match op {
            Op::Acquire => "ok".to_owned(),
            Op::Extend => "extended".to_owned(),
            Op::Release => "released".to_owned(),
        },
        (NodeOutcome::Held, _) => "held by another token".to_owned(),
        (NodeOutcome::Missing, _) => "our key is gone (expired or deleted)".to_owned(),
        // The operation was decided before this node answered (it may be
        // slow, or just later than the others).
        (NodeOutcome::Pending, None) => "not waited for (decided before it answered)".to_owned(),
        // Not awaited either, but its link is down (the transport clears
        // the link error on connect): say so, and why, never "not awaited".
        // (A decision can come before a refused connect is reported to the
        // core, which then still counts the node as pending.)
        (NodeOutcome::Pending, Some(e)) if e.starts_with("not connected") => e.to_owned(),
        (NodeOutcome::Pending, Some(e)) => format!("not connected ({e})"),
        (NodeOutcome::Failed(k), None) => k.to_string(),
        // Say what kind of failure, unless the detail already does.
        (NodeOutcome::Failed(k), Some(e)) if e.starts_with(k.to_string().as_str()) => e.to_owned(),
        (NodeOutcome::Failed(k), Some(e)) => format!("{k} ({e})"),
    };
    if let Some(hint) = url.and_then(|u| tls_hint(u, outcome, last_error)) {
        let _ = write!(s, " ({hint})");
    }
    s
}

/// Every node, in order: "redis://a:6379: ok; redis://b:6379: timed out".
pub(crate) fn nodes(f: &Failure, op: Op, urls: &[NodeUrl]) -> String {
    f.nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "{}: {}",
                n.url,
                node_outcome(n.outcome, n.last_error.as_deref(), op, urls.get(i))
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The whole failure: "held by someone else after 4 attempts: redis://a: ...".
pub(crate) fn failure(f: &Failure, op: Op, urls: &[NodeUrl]) -> String {
    format!("{}: {}", verdict(f, op), nodes(f, op, urls))
}

/// Any error of an operation, as the rest of a "could not ..." sentence.
pub(crate) fn error(e: &Error, op: Op, urls: &[NodeUrl]) -> String {
    match e.failure() {
        Some(f) => failure(f, op, urls),
        None => e.to_string(),
    }
}

/// For a `rediss://` node that failed the way a plain (non-TLS) port makes
/// a TLS client fail (no reply to the ClientHello, or bytes that are not
/// TLS), asks the port in plain text: when it answers like Redis, says so.
fn tls_hint(url: &NodeUrl, outcome: NodeOutcome, last_error: Option<&str>) -> Option<String> {
    if !url.tls {
        return None;
    }
    let suspicious = match outcome {
        NodeOutcome::Failed(ErrorKind::Timeout | ErrorKind::Protocol) => true,
        NodeOutcome::Failed(_) | NodeOutcome::Pending => {
            last_error.is_some_and(|e| e.contains("TLS"))
        }
        NodeOutcome::Ok | NodeOutcome::Held | NodeOutcome::Missing => false,
    };
    if !suspicious || !answers_plain_redis(url) {
        return None;
    }
    Some(
        "the TLS handshake failed: this port is not a TLS server, it answers plain Redis; \
         use redis://, or the server's tls-port"
            .to_owned(),
    )
}

/// Whether `host:port` answers a plain-text `PING` the way Redis does
/// (`+PONG`, or an error such as `-NOAUTH`), within a short bound.
fn answers_plain_redis(url: &NodeUrl) -> bool {
    const BOUND: Duration = Duration::from_millis(500);
    let Ok(addrs) = (url.host.as_str(), url.port).to_socket_addrs() else {
        return false;
    };
    for addr in addrs {
        let Ok(mut sock) = TcpStream::connect_timeout(&addr, BOUND) else {
            continue;
        };
        let _ = sock.set_read_timeout(Some(BOUND));
        let _ = sock.set_write_timeout(Some(BOUND));
        if sock.write_all(b"PING\r\n").is_err() {
            continue;
        }
        let mut buf = [0u8; 64];
        if let Ok(n) = sock.read(&mut buf) {
            let reply = &buf[..n];
            return reply.starts_with(b"+PONG")
                || reply.starts_with(b"-NOAUTH")
                || reply.starts_with(b"-ERR")
                || reply.starts_with(b"-DENIED");
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use redlock_core::{LockError, NodeReport};
    use redlock_std::NodeFailure;

    fn failure_of(
        kind: FailureKind,
        attempts: u32,
        nodes: &[(NodeOutcome, Option<&str>)],
    ) -> Failure {
        let mut report = NodeReport::new(nodes.len());
        for (i, (o, _)) in nodes.iter().enumerate() {
            report.set(i, *o);
        }
        Failure::new(
            LockError {
                kind,
                attempts,
                nodes: report,
            },
            nodes
                .iter()
                .enumerate()
                .map(|(i, (o, e))| NodeFailure {
                    url: format!("redis://h{i}:6379"),
                    outcome: *o,
                    last_error: e.map(str::to_owned),
                })
                .collect(),
        )
    }

    #[test]
    fn one_sentence_per_failure_with_the_operation_s_words() {
        let f = failure_of(
            FailureKind::Busy,
            4,
            &[
                (NodeOutcome::Held, None),
                (NodeOutcome::Held, None),
                (NodeOutcome::Pending, None),
            ],
        );
        assert_eq!(
            failure(&f, Op::Acquire, &[]),
            "held by someone else after 4 attempts: redis://h0:6379: held by another token; \
             redis://h1:6379: held by another token; redis://h2:6379: not waited for (decided before it answered)"
        );
        let f = failure_of(
            FailureKind::Unavailable,
            1,
            &[
                (NodeOutcome::Pending, None),
                (
                    NodeOutcome::Failed(ErrorKind::Disconnected),
                    Some("not connected (connect 127.0.0.1:1: refused)"),
                ),
                (
                    NodeOutcome::Failed(ErrorKind::Timeout),
                    Some("no reply in time"),
                ),
            ],
        );
        assert_eq!(
            failure(&f, Op::Extend, &[]),
            "too few nodes answered to decide: redis://h0:6379: not waited for (decided before it answered); \
             redis://h1:6379: not connected (connect 127.0.0.1:1: refused); \
             redis://h2:6379: timed out (no reply in time)"
        );
    }
}
