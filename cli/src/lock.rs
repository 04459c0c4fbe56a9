//! Client construction (node checks), `acquire`, `extend`, `release`, and
//! how errors map to exit statuses.
//!
//! Every lock operation runs on its own thread while the main thread waits
//! for its result or a signal ([`crate::signals`]): an interrupted acquire
//! is cancelled, which undoes whatever part of the lock it took (a lease won
//! at that very moment is released), and an extension or release in progress
//! is allowed to finish; then redlock exits with 128+N.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use redlock_core::url::NodeUrl;
use redlock_core::{
    Config, ReleaseReport, RetryPolicy, Token, MAX_NODES, MAX_RESOURCES, MAX_RESOURCE_LEN,
    MAX_RESOURCE_SET_LEN,
};
use redlock_std::{Client, Error, Lease, LockOptions};
use serde::Serialize;

use crate::args::{self, Common};
use crate::report::{self, Op};
use crate::signals::{self, Signals};
use crate::{exit, Output};

/// The result of one lock operation, run on its own thread (sent once per
/// operation: the size difference between variants does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Done {
    Acquired(Result<Lease, Error>),
    Extended(Result<redlock_core::Lease, Error>),
    Released(Result<ReleaseReport, Error>),
}

/// What every lock command works with.
pub(crate) struct Ctx<'a> {
    pub(crate) client: Client,
    /// Installed before the client was built: no interrupt is missed.
    pub(crate) signals: Signals<Done>,
    /// The nodes, parsed, in node order.
    pub(crate) urls: Vec<NodeUrl>,
    /// The resources, in the order given, each once.
    pub(crate) resources: Vec<String>,
    pub(crate) common: &'a Common,
    pub(crate) out: Output,
}

impl Ctx<'_> {
    /// How long to wait for an operation to end after an interrupt: its
    /// requests are bounded by the node timeout.
    pub(crate) fn interrupt_bound(&self) -> Duration {
        self.client.config().node_timeout * 2 + Duration::from_secs(1)
    }

    /// The first resource given (the only one of a single lock).
    pub(crate) fn resource(&self) -> &str {
        self.resources.first().map_or("", String::as_str)
    }

    /// The resources for messages: `"a"`, or `"a", "b"`.
    pub(crate) fn named(&self) -> String {
        self.resources
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The options of this command's acquire: the flags' TTL and retries
    /// are the client's; `--fence` is per call.
    pub(crate) fn lock_options(&self) -> LockOptions {
        LockOptions::new().fencing(self.common.fence)
    }
}

/// The JSON line printed by `acquire` and `extend` (`shared/CLI.md`):
/// `resources` only with several, `fence` only when fenced, `fences` only
/// when fenced with several.
#[derive(Debug, Serialize)]
struct LeaseLine<'a> {
    resource: &'a str,
    token: &'a str,
    validity_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fences: Option<Vec<u64>>,
}

impl<'a> LeaseLine<'a> {
    fn new(ctx: &'a Ctx<'_>, token: &'a str, validity: Duration, fence: Option<u64>) -> Self {
        let several = ctx.resources.len() > 1;
        LeaseLine {
            resource: ctx.resource(),
            token,
            validity_ms: millis(validity),
            resources: several.then_some(ctx.resources.as_slice()),
            fence,
            // One fence covers the whole set (the core's multi-resource
            // fence has the single-resource guarantees for each resource).
            fences: fence
                .filter(|_| several)
                .map(|f| vec![f; ctx.resources.len()]),
        }
    }
}

/// The retry policy the flags ask for. The jitter is as wide as the delay,
/// so pauses are uniformly spread over `delay/2 .. 3*delay/2`.
pub(crate) fn retry_policy(common: &Common) -> RetryPolicy {
    RetryPolicy {
        count: common.retry_count,
        delay: common.retry_delay,
        jitter: common.retry_delay,
        wait: common.wait(),
    }
}

/// Checks the resource, the node URLs (none missing, none twice) and the
/// timing options, installs the signal handlers (the interrupts and
/// `extra_signals`), builds a client, and runs `f` with it. Returns `f`'s
/// exit status, or 2 for bad arguments.
pub(crate) fn with_client(
    common: &Common,
    resources: &[String],
    out: &Output,
    extra_signals: &[i32],
    f: impl FnOnce(&Ctx<'_>) -> u8,
) -> u8 {
    let resources = match distinct_resources(resources) {
        Ok(r) => r,
        Err(msg) => {
            out.error(msg);
            return exit::USAGE;
        }
    };
    let given = match args::node_list(&common.nodes) {
        Ok(urls) => urls,
        Err(msg) => {
            out.error(msg);
            return exit::USAGE;
        }
    };
    if given.len() > MAX_NODES {
        out.error(format_args!(
            "too many nodes: {} (at most {MAX_NODES})",
            given.len()
        ));
        return exit::USAGE;
    }
    if let Some(msg) = timing_problem(common) {
        out.error(msg);
        return exit::USAGE;
    }
    let signals = match Signals::<Done>::install(extra_signals) {
        Ok(s) => s,
        Err(e) => {
            out.error(format_args!("cannot install signal handlers: {e}"));
            return exit::UNAVAILABLE;
        }
    };
    // Every URL is checked by `build` (bad ones shown as given, password
    // masked; the same server twice refused).
    let mut builder = Client::builder()
        .nodes(&given)
        .ttl(common.ttl)
        .retry(retry_policy(common));
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
            // They parsed for the client: parsed again for the messages.
            let urls = given
                .iter()
                .filter_map(|u| NodeUrl::parse(u).ok())
                .collect();
            let ctx = Ctx {
                client,
                signals,
                urls,
                resources,
                common,
                out: *out,
            };
            let code = f(&ctx);
            // Releases and undos are decided at quorum: let the other nodes
            // get theirs before the process exits (bounded).
            let bound = ctx.client.config().node_timeout.saturating_mul(2);
            if !ctx.client.flush(bound).unwrap_or(false) {
                tracing::debug!("exiting with requests still in flight");
            }
            code
        }
        Err(e) => {
            out.error(&e);
            code_of(&e, exit::BUSY)
        }
    }
}

/// The resources in the order given, each once, or why they cannot make
/// one lease.
fn distinct_resources(given: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for r in given {
        if r.is_empty() || r.len() > MAX_RESOURCE_LEN {
            return Err(format!(
                "the resource name must be 1 to {MAX_RESOURCE_LEN} bytes long (got {} bytes)",
                r.len()
            ));
        }
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    if out.is_empty() {
        return Err("no resource given: use --resource NAME (repeatable)".to_owned());
    }
    if out.len() > MAX_RESOURCES {
        return Err(format!(
            "too many resources: {} (one lease covers at most {MAX_RESOURCES})",
            out.len()
        ));
    }
    let total: usize = out.iter().map(String::len).sum();
    if total > MAX_RESOURCE_SET_LEN {
        return Err(format!(
            "the resource names are {total} bytes together (one lease covers at most \
             {MAX_RESOURCE_SET_LEN})"
        ));
    }
    Ok(out)
}

/// A TTL that cannot hold against the node timeout and drift allowance,
/// named by its flags (the core would refuse it with no flag names).
fn timing_problem(common: &Common) -> Option<String> {
    let mut config = Config::new(common.ttl);
    if let Some(t) = common.node_timeout {
        config.node_timeout = t;
    }
    match config.check_ttl(common.ttl) {
        Ok(()) => None,
        Err(_) => Some(format!(
            "--ttl {} is too short: a lease must outlast one node's answer (--node-timeout, \
             here {}) plus the clock-drift allowance ({})",
            humantime::format_duration(common.ttl),
            humantime::format_duration(config.node_timeout),
            humantime::format_duration(config.drift(common.ttl)),
        )),
    }
}

/// The exit status for a failed operation; `busy` is the status for "held
/// by someone else" (75, or `-E N` for acquire and exec).
pub(crate) fn code_of(e: &Error, busy: u8) -> u8 {
    match e {
        Error::Busy(_) => busy,
        Error::Unavailable(_) => exit::UNAVAILABLE,
        Error::Auth(_) => exit::AUTH,
        Error::Lost(f) => match f.kind() {
            redlock_core::FailureKind::Busy | redlock_core::FailureKind::NotHeld => exit::BUSY,
            redlock_core::FailureKind::AuthFailed => exit::AUTH,
            _ => exit::UNAVAILABLE,
        },
        Error::NotHeld(_) => exit::BUSY,
        Error::Url { .. } | Error::DuplicateNode { .. } | Error::Config(_) | Error::Command(_) => {
            exit::USAGE
        }
        _ => exit::UNAVAILABLE,
    }
}

/// Acquires the lock on its own thread; an interrupt cancels the attempt
/// (the core undoes whatever part of the lock it took) and a lease won at
/// that very moment is released before this returns.
/// `Err(status)` when the lock is not held: the message is printed.
pub(crate) fn acquire_interruptible(ctx: &Ctx<'_>) -> Result<Lease, u8> {
    let cancel = ctx.client.cancel_handle();
    let (client, names, c) = (ctx.client.clone(), ctx.resources.clone(), cancel.clone());
    let options = ctx.lock_options();
    let (result, interrupt) = ctx.signals.run(
        move || Done::Acquired(client.lock_cancellable(&names, &options, &c)),
        |_| cancel.cancel(),
        ctx.interrupt_bound(),
    );
    let resource = ctx.named();
    let result = match result {
        Some(Done::Acquired(r)) => Some(r),
        _ => None,
    };
    if let Some(sig) = interrupt {
        let mut msg = format!(
            "interrupted by {} while acquiring {resource}",
            signals::name(sig)
        );
        match result {
            Some(Ok(lease)) => {
                // Won at the very moment of the interrupt: give it back now,
                // before exiting (a release on drop could be cut short).
                match lease.release() {
                    Ok(_) => msg.push_str("; the lease just won was released"),
                    Err(e) => {
                        let _ = write!(msg, "; releasing the lease just won failed: {e}");
                    }
                }
            }
            Some(Err(_)) => msg.push_str("; whatever part of the lock was taken was undone"),
            None => msg.push_str("; the attempt did not end in time, its undo may be incomplete"),
        }
        ctx.out.error(msg);
        return Err(signals::status_for(sig));
    }
    match result {
        Some(Ok(lease)) => Ok(lease),
        Some(Err(e)) => {
            ctx.out.error(format_args!(
                "could not acquire {resource}: {}",
                report::error(&e, Op::Acquire, &ctx.urls)
            ));
            Err(code_of(&e, ctx.common.busy_code()))
        }
        None => {
            ctx.out.error(format_args!(
                "could not acquire {resource}: the operation thread stopped"
            ));
            Err(exit::UNAVAILABLE)
        }
    }
}

/// `redlock acquire`: take the lock, print it as JSON, leave it held.
pub(crate) fn acquire(ctx: &Ctx<'_>) -> u8 {
    let lease = match acquire_interruptible(ctx) {
        Ok(lease) => lease,
        Err(code) => return code,
    };
    let line = LeaseLine::new(
        ctx,
        lease.token().as_str(),
        lease.remaining(),
        lease.fence(),
    );
    let json = serde_json::to_string(&line).unwrap_or_default();
    if let Err(e) = ctx.out.line(json) {
        // Nobody will ever learn the token: do not leave the lock behind.
        ctx.out
            .error(format_args!("cannot print the lease ({e}); releasing it"));
        let _ = lease.release();
        return exit::IO;
    }
    let _ = lease.forget();
    exit::OK
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

/// Runs an extension or release to its end even when interrupted (its
/// requests are bounded by the node timeout); `Err(status)` after an
/// interrupt, with a message saying how the operation ended.
fn run_to_end(
    ctx: &Ctx<'_>,
    what: &str,
    op: impl FnOnce() -> Done + Send + 'static,
    ended: impl FnOnce(&Done) -> String,
) -> Result<Done, u8> {
    match ctx.signals.run(op, |_| {}, ctx.interrupt_bound()) {
        (Some(r), None) => Ok(r),
        (r, Some(sig)) => {
            let how = r
                .as_ref()
                .map(ended)
                .unwrap_or_else(|| "it did not end in time".to_owned());
            ctx.out.error(format_args!(
                "interrupted by {} during {what}; the operation in progress finished first: {how}",
                signals::name(sig)
            ));
            Err(signals::status_for(sig))
        }
        (None, None) => {
            ctx.out
                .error(format_args!("{what}: the operation thread stopped"));
            Err(exit::UNAVAILABLE)
        }
    }
}

/// `redlock extend`: extend a lease held with `token`, print the new validity.
pub(crate) fn extend(ctx: &Ctx<'_>, token: &str) -> u8 {
    let Some(tok) = parse_token(token, &ctx.out) else {
        return exit::USAGE;
    };
    let t0 = Instant::now();
    let (client, names, ttl) = (ctx.client.clone(), ctx.resources.clone(), ctx.common.ttl);
    let resource = ctx.named();
    let result = run_to_end(
        ctx,
        &format!("the extension of {resource}"),
        move || Done::Extended(client.extend_token(&names, &tok, ttl)),
        |r| match r {
            Done::Extended(Ok(_)) => "extended".to_owned(),
            Done::Extended(Err(e)) => {
                format!("not extended ({})", report::error(e, Op::Extend, &[]))
            }
            _ => "unknown".to_owned(),
        },
    );
    match result {
        Err(code) => code,
        Ok(Done::Extended(Ok(lease))) => {
            // The core measured validity from the extension's own start on
            // the client's clock, which began no earlier than `t0`.
            let window = lease.deadline().saturating_duration_since(lease.start());
            let validity = window.saturating_sub(t0.elapsed());
            let line = LeaseLine::new(ctx, token, validity, None);
            let json = serde_json::to_string(&line).unwrap_or_default();
            match ctx.out.line(json) {
                Ok(()) => exit::OK,
                Err(_) => exit::IO,
            }
        }
        Ok(Done::Extended(Err(e))) => {
            ctx.out.error(format_args!(
                "could not extend {resource}: {}",
                report::error(&e, Op::Extend, &ctx.urls)
            ));
            code_of(&e, exit::BUSY)
        }
        Ok(_) => exit::UNAVAILABLE,
    }
}

/// `redlock release`: delete the keys wherever they still hold `token`.
pub(crate) fn release(ctx: &Ctx<'_>, token: &str) -> u8 {
    let Some(tok) = parse_token(token, &ctx.out) else {
        return exit::USAGE;
    };
    let (client, names) = (ctx.client.clone(), ctx.resources.clone());
    let resource = ctx.named();
    let nodes = ctx.urls.len();
    let result = run_to_end(
        ctx,
        &format!("the release of {resource}"),
        move || Done::Released(client.release_token(&names, &tok)),
        |r| match r {
            Done::Released(Ok(report)) => format!(
                "released on {} of {} nodes",
                report.released(),
                report.nodes.len()
            ),
            Done::Released(Err(e)) => format!("not released ({e})"),
            _ => "unknown".to_owned(),
        },
    );
    let report = match result {
        Err(code) => return code,
        Ok(Done::Released(Ok(report))) => report,
        Ok(Done::Acquired(_) | Done::Extended(_)) => return exit::UNAVAILABLE,
        Ok(Done::Released(Err(Error::NotHeld(report)))) => {
            let described = describe_release(&report.nodes, &ctx.client.node_urls());
            ctx.out.error(format_args!(
                "{resource} {} not held by this token on a quorum: released on {} of {nodes} \
                 nodes ({described})",
                if ctx.resources.len() > 1 { "are" } else { "is" },
                report.released()
            ));
            return exit::BUSY;
        }
        Ok(Done::Released(Err(e))) => {
            ctx.out.error(format_args!(
                "could not release {resource}: {}",
                report::error(&e, Op::Release, &ctx.urls)
            ));
            return code_of(&e, exit::BUSY);
        }
    };
    tracing::info!(
        released = report.released(),
        not_held = report.not_held(),
        nodes,
        "release finished"
    );
    if report.released() < nodes {
        let described = describe_release(&report.nodes, &ctx.client.node_urls());
        tracing::warn!(
            "released on {} of {nodes} nodes ({described})",
            report.released()
        );
    }
    exit::OK
}

/// Each node's part in a release, naming the node by its (redacted) URL.
fn describe_release(nodes: &redlock_core::NodeReport, urls: &[String]) -> String {
    use redlock_core::NodeOutcome;
    nodes
        .iter()
        .map(|(id, o)| {
            let name = urls
                .get(id.index())
                .cloned()
                .unwrap_or_else(|| id.to_string());
            let what = match o {
                NodeOutcome::Pending => "not waited for (decided before it answered)".to_owned(),
                NodeOutcome::Ok => "released".to_owned(),
                NodeOutcome::Held => "held by another token".to_owned(),
                NodeOutcome::Missing => "already gone (expired or deleted)".to_owned(),
                NodeOutcome::Failed(k) => k.to_string(),
            };
            format!("{name}: {what}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
