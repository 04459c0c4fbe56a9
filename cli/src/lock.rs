//! Client construction, `acquire`, `extend`, `release`, and how errors map
//! to exit statuses.

use std::time::Instant;

use redlock_core::url::NodeUrl;
use redlock_core::{ReleaseVerdict, RetryPolicy, Token, MAX_NODES, MAX_RESOURCE_LEN};
use redlock_std::{Client, Error};
use serde::Serialize;

use crate::args::{self, Common};
use crate::{exit, Output};

/// The JSON line printed by `acquire` and `extend`.
#[derive(Debug, Serialize)]
struct LeaseLine<'a> {
    resource: &'a str,
    token: &'a str,
    validity_ms: u64,
}

/// The retry policy the flags ask for. The jitter is as wide as the delay,
/// so pauses are uniformly spread over `delay/2 .. 3*delay/2`.
pub(crate) fn retry_policy(common: &Common) -> RetryPolicy {
    RetryPolicy {
        count: common.retry_count,
        delay: common.retry_delay,
        jitter: common.retry_delay,
        wait: common.wait,
    }
}

/// Checks the resource and node URLs, builds a client, and runs `f` with it.
/// Returns `f`'s exit status, or 2 for bad arguments.
pub(crate) fn with_client(
    common: &Common,
    resource: &str,
    out: &Output,
    f: impl FnOnce(&Client) -> u8,
) -> u8 {
    if resource.is_empty() || resource.len() > MAX_RESOURCE_LEN {
        out.error(format_args!(
            "the resource name must be 1 to {MAX_RESOURCE_LEN} bytes long (got {} bytes)",
            resource.len()
        ));
        return exit::USAGE;
    }
    let urls = args::node_list(&common.nodes);
    for url in &urls {
        if let Err(e) = NodeUrl::parse(url) {
            out.error(format_args!(
                "bad node URL {}: {e}",
                redlock_core::url::redact(url)
            ));
            return exit::USAGE;
        }
    }
    if urls.len() > MAX_NODES {
        out.error(format_args!(
            "too many nodes: {} (at most {MAX_NODES})",
            urls.len()
        ));
        return exit::USAGE;
    }
    let mut builder = match Client::builder().nodes(&urls) {
        Ok(b) => b.ttl(common.ttl).retry(retry_policy(common)),
        Err(e) => {
            out.error(&e);
            return code_of(&e);
        }
    };
    if let Some(t) = common.node_timeout {
        builder = builder.node_timeout(t);
    }
    if let Some(path) = &common.tls_ca {
        match std::fs::read(path) {
            Ok(pem) => builder = builder.tls_ca_pem(&pem),
            Err(e) => {
                out.error(format_args!("cannot read --tls-ca {}: {e}", path.display()));
                return exit::USAGE;
            }
        }
    }
    match builder.build() {
        Ok(client) => {
            tracing::debug!(nodes = ?client.node_urls(), ttl = ?common.ttl, "client ready");
            f(&client)
        }
        Err(e) => {
            out.error(&e);
            code_of(&e)
        }
    }
}

/// The exit status for a failed operation.
pub(crate) fn code_of(e: &Error) -> u8 {
    match e {
        Error::Busy(_) => exit::BUSY,
        Error::Unavailable(_) => exit::UNAVAILABLE,
        Error::Auth(_) => exit::AUTH,
        Error::Lost(f) => match f.kind() {
            redlock_core::FailureKind::Busy => exit::BUSY,
            redlock_core::FailureKind::AuthFailed => exit::AUTH,
            _ => exit::UNAVAILABLE,
        },
        Error::Url { .. } | Error::Config(_) | Error::Command(_) => exit::USAGE,
        _ => exit::UNAVAILABLE,
    }
}

/// `redlock acquire`: take the lock, print it as JSON, leave it held.
pub(crate) fn acquire(client: &Client, resource: &str, out: &Output) -> u8 {
    match client.lock(resource) {
        Ok(lease) => {
            let line = LeaseLine {
                resource,
                token: lease.token().as_str(),
                validity_ms: millis(lease.remaining()),
            };
            let json = serde_json::to_string(&line).unwrap_or_default();
            if let Err(e) = out.line(json) {
                // Nobody will ever learn the token: do not leave the lock behind.
                out.error(format_args!("cannot print the lease ({e}); releasing it"));
                let _ = lease.release();
                return exit::IO;
            }
            let _ = lease.forget();
            exit::OK
        }
        Err(e) => {
            out.error(format_args!("could not acquire {resource:?}: {e}"));
            code_of(&e)
        }
    }
}

fn parse_token(token: &str, out: &Output) -> Option<Token> {
    let t = Token::from_bytes(token.as_bytes());
    if t.is_none() {
        out.error(format_args!(
            "the token must be 1 to {} bytes long (got {} bytes)",
            redlock_core::MAX_TOKEN_LEN,
            token.len()
        ));
    }
    t
}

/// `redlock extend`: extend a lease held with `token`, print the new validity.
pub(crate) fn extend(
    client: &Client,
    common: &Common,
    resource: &str,
    token: &str,
    out: &Output,
) -> u8 {
    let Some(tok) = parse_token(token, out) else {
        return exit::USAGE;
    };
    let t0 = Instant::now();
    match client.extend_token(resource, &tok, common.ttl) {
        Ok(lease) => {
            // The core measured validity from the extension's own start on
            // the client's clock, which began no earlier than `t0`.
            let window = lease.deadline().saturating_duration_since(lease.start());
            let validity = window.saturating_sub(t0.elapsed());
            let line = LeaseLine {
                resource,
                token,
                validity_ms: millis(validity),
            };
            let json = serde_json::to_string(&line).unwrap_or_default();
            match out.line(json) {
                Ok(()) => exit::OK,
                Err(_) => exit::IO,
            }
        }
        Err(e) => {
            out.error(format_args!("could not extend {resource:?}: {e}"));
            code_of(&e)
        }
    }
}

/// `redlock release`: delete the key wherever it still holds `token`.
pub(crate) fn release(client: &Client, resource: &str, token: &str, out: &Output) -> u8 {
    let Some(tok) = parse_token(token, out) else {
        return exit::USAGE;
    };
    match client.release_token(resource, &tok) {
        Ok(report) => {
            let nodes = report.nodes.len();
            let urls = client.node_urls();
            tracing::info!(
                released = report.released(),
                not_held = report.not_held(),
                nodes,
                "release finished"
            );
            match report.verdict() {
                ReleaseVerdict::Released => {
                    if report.released() < nodes {
                        tracing::warn!(
                            "released on {} of {nodes} nodes ({})",
                            report.released(),
                            describe(&report.nodes, &urls)
                        );
                    }
                    exit::OK
                }
                ReleaseVerdict::NotHeld => {
                    out.error(format_args!(
                        "{resource:?} is not held by this token on a quorum: released on {} of {nodes} nodes ({})",
                        report.released(),
                        describe(&report.nodes, &urls)
                    ));
                    exit::BUSY
                }
                verdict => {
                    out.error(format_args!(
                        "release of {resource:?}: too few nodes answered to decide ({})",
                        describe(&report.nodes, &urls)
                    ));
                    if verdict == ReleaseVerdict::AuthFailed {
                        exit::AUTH
                    } else {
                        exit::UNAVAILABLE
                    }
                }
            }
        }
        Err(e) => {
            out.error(format_args!("could not release {resource:?}: {e}"));
            code_of(&e)
        }
    }
}

/// Each node's outcome, naming the node by its (redacted) URL.
pub(crate) fn describe(nodes: &redlock_core::NodeReport, urls: &[String]) -> String {
    use redlock_core::NodeOutcome;
    nodes
        .iter()
        .map(|(id, o)| {
            let name = urls
                .get(id.index())
                .cloned()
                .unwrap_or_else(|| id.to_string());
            let what = match o {
                NodeOutcome::Pending => "no answer (not awaited)".to_owned(),
                NodeOutcome::Ok => "released".to_owned(),
                NodeOutcome::Held => "not held by this token".to_owned(),
                NodeOutcome::Failed(k) => k.to_string(),
            };
            format!("{name}: {what}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
