//! `redlock_rs._native`: the thin native half of the Python package
//! `redlock-rs`.
//!
//! Everything public in Python is pure Python (`redlock_rs/*.py`); this
//! module only exposes the Rust clients with Python types at the edge:
//!
//! * `Client` / `Lease` bind `redlock-std` (blocking). Every call that
//!   may wait on the network runs with the GIL released (`Python::detach`).
//! * `AsyncClient` / `AsyncLease` bind `redlock-tokio`; their methods
//!   return asyncio awaitables through `pyo3-async-runtimes`' generic API,
//!   over a tokio runtime of our own (`Rt`) that is rebuilt in a forked
//!   child (the global runtime of `pyo3_async_runtimes::tokio` cannot be).
//! * Errors become the pure-Python exceptions of `redlock_rs.errors`
//!   (`LockBusy`, `LockUnavailable`, ...), each with the failed nodes.
//!
//! Units at this boundary: durations are `float` seconds, tokens are
//! `bytes`, resources a list of `bytes` (one name, or several locked all or
//! nothing). Retry policies are tuples `(count, delay_s, jitter_s,
//! wait_s | None)`. A release answers a tuple whatever its verdict
//! (released, not held, unknown): the Python API reports those as values.
//!
//! Fork: a native object remembers the process that made it. Used in another
//! process (a forked child) it raises `RuntimeError`; dropped there, it is
//! leaked instead of dropped, because dropping would join driver threads
//! that do not exist in the child (and could take a lock some parent thread
//! held at fork time). The Python layer rebuilds clients in the child.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{self, ContextExt, Runtime as GenericRuntime};
use pyo3_async_runtimes::TaskLocals;

use redlock_std::core::report::Failure;
use redlock_std::core::ReleaseVerdict;
use redlock_std::{LockOptions, NodeOutcome, ReleaseReport, RetryPolicy, Token};

// ---------------------------------------------------------------- fork guard

/// A value that belongs to the process that made it.
///
/// Dropped in another process (after `fork()`), the value is leaked: its
/// destructor would join threads that only exist in the parent.
struct Owned<T> {
    pid: u32,
    value: Option<T>,
}

impl<T> Owned<T> {
    fn new(value: T) -> Owned<T> {
        Owned {
            pid: std::process::id(),
            value: Some(value),
        }
    }

    fn get(&self) -> PyResult<&T> {
        if self.pid != std::process::id() {
            return Err(PyRuntimeError::new_err(
                "this redlock_rs object was created in another process (before os.fork()); \
                 it cannot be used in a forked child",
            ));
        }
        self.value
            .as_ref()
            .ok_or_else(|| PyRuntimeError::new_err("native object already disposed"))
    }
}

impl<T> Owned<T> {
    /// The value, when in the process that made it.
    fn local(&mut self) -> Option<&mut T> {
        if self.pid == std::process::id() {
            self.value.as_mut()
        } else {
            None
        }
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            std::mem::forget(self.value.take());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded states are plain enums: a poisoned one is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ------------------------------------------------------------------- values

type RetryTuple = (u32, f64, f64, Option<f64>);

fn secs(name: &str, v: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a finite, non-negative number of seconds, got {v}"
        ))
    })
}

fn retry_policy(t: Option<RetryTuple>) -> PyResult<Option<RetryPolicy>> {
    let Some((count, delay, jitter, wait)) = t else {
        return Ok(None);
    };
    Ok(Some(RetryPolicy {
        count,
        delay: secs("retry delay", delay)?,
        jitter: secs("retry jitter", jitter)?,
        wait: wait.map(|w| secs("retry wait", w)).transpose()?,
    }))
}

/// The options of one lock call: the client's TTL and retry policy unless
/// given, fenced when asked.
fn lock_options(ttl: Option<f64>, retry: Option<RetryTuple>, fence: bool) -> PyResult<LockOptions> {
    let mut options = LockOptions::new().fencing(fence);
    if let Some(t) = ttl {
        options = options.ttl(secs("ttl", t)?);
    }
    if let Some(r) = retry_policy(retry)? {
        options = options.retry(r);
    }
    Ok(options)
}

fn token_of(bytes: &[u8]) -> PyResult<Token> {
    Token::from_bytes(bytes).ok_or_else(|| {
        PyValueError::new_err(format!(
            "a token is 1 to {} bytes, got {}",
            redlock_std::core::MAX_TOKEN_LEN,
            bytes.len()
        ))
    })
}

/// `(verdict, released, not_held, unanswered)`; verdict is one of
/// `"released"`, `"not_held"`, `"auth_failed"`, `"unavailable"`.
type ReleaseTuple = (&'static str, usize, usize, usize);

fn release_tuple(r: &ReleaseReport) -> ReleaseTuple {
    let verdict = match r.verdict() {
        ReleaseVerdict::Released => "released",
        ReleaseVerdict::NotHeld => "not_held",
        ReleaseVerdict::AuthFailed => "auth_failed",
        _ => "unavailable",
    };
    (verdict, r.released(), r.not_held(), r.unanswered())
}

/// A blocking release's result as the tuple: the Rust API's `NotHeld`,
/// `Unavailable` and `Auth` errors are verdicts here; anything else (the
/// driver stopped, ...) raises.
fn std_release(r: Result<ReleaseReport, redlock_std::Error>) -> PyResult<ReleaseTuple> {
    use redlock_std::Error as E;
    match r {
        Ok(report) | Err(E::NotHeld(report)) => Ok(release_tuple(&report)),
        Err(E::Unavailable(f) | E::Auth(f)) => Ok(release_tuple(&ReleaseReport {
            nodes: f.error.nodes,
        })),
        Err(e) => Err(std_err(e)),
    }
}

/// As [`std_release`], for the asyncio client.
fn tokio_release(r: Result<ReleaseReport, redlock_tokio::Error>) -> PyResult<ReleaseTuple> {
    use redlock_tokio::Error as E;
    match r {
        Ok(report) | Err(E::NotHeld(report)) => Ok(release_tuple(&report)),
        Err(E::Unavailable(f) | E::Auth(f)) => Ok(release_tuple(&ReleaseReport {
            nodes: f.error.nodes,
        })),
        Err(e) => Err(tokio_err(e)),
    }
}

/// Validity left after an extend by token: the new lease's window minus
/// the time the call took (an underestimate by at most the call's own
/// queueing, never an overestimate).
fn validity_left(lease: &redlock_std::core::Lease, called: Instant) -> f64 {
    lease
        .deadline()
        .saturating_duration_since(lease.start())
        .saturating_sub(called.elapsed())
        .as_secs_f64()
}

// ------------------------------------------------------------------- errors

/// Which `redlock_rs.errors` class an error maps to.
#[derive(Clone, Copy)]
enum Kind {
    Busy,
    Unavailable,
    Auth,
    Lost,
    Config,
    Io,
}

impl Kind {
    fn class(self) -> &'static str {
        match self {
            Kind::Busy => "LockBusy",
            Kind::Unavailable => "LockUnavailable",
            Kind::Auth => "LockAuthError",
            Kind::Lost => "LockLost",
            Kind::Config => "ConfigurationError",
            Kind::Io => "RedlockIOError",
        }
    }
}

/// Per node: `(url, outcome, detail)`, outcome one of `"ok"`, `"held"`,
/// `"gone"` (our key is not there: an extension's), `"no answer"`,
/// `"failed"`.
type NodeTuple = (String, &'static str, Option<String>);

fn node_tuples(f: &Failure) -> Vec<NodeTuple> {
    f.nodes
        .iter()
        .map(|n| {
            let (outcome, detail) = match (n.outcome, &n.last_error) {
                (NodeOutcome::Ok, _) => ("ok", None),
                (NodeOutcome::Held, _) => ("held", None),
                (NodeOutcome::Missing, _) => ("gone", None),
                (NodeOutcome::Pending, e) => ("no answer", e.clone()),
                (NodeOutcome::Failed(k), None) => ("failed", Some(k.to_string())),
                (NodeOutcome::Failed(k), Some(e)) => ("failed", Some(format!("{k} ({e})"))),
            };
            (n.url.clone(), outcome, detail)
        })
        .collect()
}

/// Builds the Python exception (works with or without the GIL held).
fn make_err(kind: Kind, message: String, nodes: Vec<NodeTuple>) -> PyErr {
    Python::attach(|py| {
        let class = match py
            .import("redlock_rs.errors")
            .and_then(|m| m.getattr(kind.class()))
        {
            Ok(c) => c,
            Err(e) => return e,
        };
        match class.call1((message, nodes)) {
            Ok(exc) => PyErr::from_value(exc),
            Err(e) => e,
        }
    })
}

fn std_err(e: redlock_std::Error) -> PyErr {
    use redlock_std::Error as E;
    let kind = match &e {
        E::Busy(_) => Kind::Busy,
        E::Unavailable(_) => Kind::Unavailable,
        E::Auth(_) => Kind::Auth,
        E::Lost(_) => Kind::Lost,
        E::Url { .. } | E::DuplicateNode { .. } | E::Config(_) | E::Command(_) => Kind::Config,
        _ => Kind::Io,
    };
    let nodes = e.failure().map(node_tuples).unwrap_or_default();
    make_err(kind, e.to_string(), nodes)
}

fn tokio_err(e: redlock_tokio::Error) -> PyErr {
    use redlock_tokio::Error as E;
    let kind = match &e {
        E::Busy(_) => Kind::Busy,
        E::Unavailable(_) => Kind::Unavailable,
        E::Auth(_) => Kind::Auth,
        E::Lost(_) => Kind::Lost,
        E::Url { .. } | E::DuplicateNode { .. } | E::Config(_) | E::Command(_) => Kind::Config,
        _ => Kind::Io,
    };
    let nodes = e.failure().map(node_tuples).unwrap_or_default();
    make_err(kind, e.to_string(), nodes)
}

fn config_tuple(c: &redlock_std::Config) -> (f64, f64, RetryTuple, f64) {
    (
        c.ttl.as_secs_f64(),
        c.node_timeout.as_secs_f64(),
        (
            c.retry.count,
            c.retry.delay.as_secs_f64(),
            c.retry.jitter.as_secs_f64(),
            c.retry.wait.map(|w| w.as_secs_f64()),
        ),
        f64::from(c.drift_ppm) / 1e6,
    )
}

fn drift_ppm(drift_factor: Option<f64>) -> PyResult<Option<u32>> {
    match drift_factor {
        None => Ok(None),
        Some(f) if (0.0..=1.0).contains(&f) => Ok(Some((f * 1e6).round() as u32)),
        Some(f) => Err(PyValueError::new_err(format!(
            "drift_factor must be in [0, 1], got {f}"
        ))),
    }
}

// ------------------------------------------------------------ blocking API

/// Acquires like `lock_with`, but lets Python signal handlers run (Ctrl-C)
/// while it waits: the acquire runs on a helper thread
/// (`lock_cancellable`), and the caller wakes every 50 ms to check for
/// signals; a pending one cancels the acquire (which undoes whatever it
/// took) and is raised. Used for long waits on the main thread only: the
/// helper thread costs more than a whole uncontended acquire.
fn lock_interruptible(
    py: Python<'_>,
    client: &redlock_std::Client,
    resources: Vec<Vec<u8>>,
    options: LockOptions,
) -> PyResult<redlock_std::Lease> {
    use std::sync::mpsc::{channel, RecvTimeoutError};
    let cancel = client.cancel_handle();
    let (tx, rx) = channel();
    // A Receiver is not Sync; the closures below only borrow it.
    let rx = Mutex::new(rx);
    let (c, cancel2) = (client.clone(), cancel.clone());
    std::thread::Builder::new()
        .name("redlock-acquire".into())
        .spawn(move || {
            let _ = tx.send(c.lock_cancellable(resources.as_slice(), &options, &cancel2));
        })
        .map_err(|e| make_err(Kind::Io, format!("cannot start a thread: {e}"), Vec::new()))?;
    loop {
        match py.detach(|| lock(&rx).recv_timeout(Duration::from_millis(50))) {
            Ok(r) => return r.map_err(std_err),
            Err(RecvTimeoutError::Timeout) => {
                if let Err(signal) = py.check_signals() {
                    cancel.cancel();
                    // Cancelled (anything taken undone), or a lease won just
                    // before: dropping it releases it.
                    drop(py.detach(|| lock(&rx).recv()));
                    return Err(signal);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(make_err(
                    Kind::Io,
                    "the acquire thread ended without a result".into(),
                    Vec::new(),
                ))
            }
        }
    }
}

/// A `redlock_std::Client`: one driver thread, one connection per node.
#[pyclass(frozen, module = "redlock_rs._native")]
struct Client {
    client: Owned<redlock_std::Client>,
}

impl Client {
    fn client(&self) -> PyResult<redlock_std::Client> {
        self.client.get().cloned()
    }
}

#[pymethods]
impl Client {
    /// `allow_same_server_twice`: compatibility only (the drop-in modules
    /// of libraries that accept two dbs of one server as two nodes).
    #[new]
    #[pyo3(signature = (nodes, ttl, node_timeout=None, retry=None, drift_factor=None, tls_ca_pem=None, allow_same_server_twice=false))]
    fn new(
        nodes: Vec<String>,
        ttl: f64,
        node_timeout: Option<f64>,
        retry: Option<RetryTuple>,
        drift_factor: Option<f64>,
        tls_ca_pem: Option<Vec<u8>>,
        allow_same_server_twice: bool,
    ) -> PyResult<Client> {
        let mut b = redlock_std::Client::builder()
            .nodes(&nodes)
            .ttl(secs("ttl", ttl)?);
        if allow_same_server_twice {
            b = b.allow_same_server_twice();
        }
        if let Some(t) = node_timeout {
            b = b.node_timeout(secs("node_timeout", t)?);
        }
        if let Some(r) = retry_policy(retry)? {
            b = b.retry(r);
        }
        if let Some(ppm) = drift_ppm(drift_factor)? {
            b = b.configure(move |c| c.drift_ppm = ppm);
        }
        if let Some(pem) = tls_ca_pem {
            b = b.tls_ca_pem(&pem);
        }
        let client = b.build().map_err(std_err)?;
        Ok(Client {
            client: Owned::new(client),
        })
    }

    /// The nodes' URLs, passwords redacted.
    fn node_urls(&self) -> PyResult<Vec<String>> {
        Ok(self.client()?.node_urls())
    }

    /// `(ttl, node_timeout, (retry tuple), drift_factor)` in force.
    fn config(&self) -> PyResult<(f64, f64, RetryTuple, f64)> {
        Ok(config_tuple(self.client()?.config()))
    }

    /// Acquires `resources` (all or nothing); `keep` starts background
    /// extension; `interruptible` lets signals (Ctrl-C) interrupt a long
    /// wait; `fence` asks for a fenced lock.
    #[pyo3(signature = (resources, ttl=None, retry=None, keep=true, interruptible=false, fence=false))]
    #[allow(clippy::too_many_arguments)]
    fn lock(
        &self,
        py: Python<'_>,
        resources: Vec<Vec<u8>>,
        ttl: Option<f64>,
        retry: Option<RetryTuple>,
        keep: bool,
        interruptible: bool,
        fence: bool,
    ) -> PyResult<Lease> {
        let client = self.client()?;
        let options = lock_options(ttl, retry, fence)?;
        let lease = take(py, &client, resources.clone(), options, interruptible)?;
        let fence = lease.fence();
        let state = if keep {
            State::Kept(Arc::new(client.keep(lease)))
        } else {
            State::Plain(Box::new(lease))
        };
        Ok(Lease::new(client, resources, fence, state))
    }

    /// Acquires `resources` and leaves them held until the TTL (nothing is
    /// released when Python objects die): `(token, validity_s, fence)`.
    #[pyo3(signature = (resources, ttl=None, retry=None, interruptible=false, fence=false))]
    fn acquire(
        &self,
        py: Python<'_>,
        resources: Vec<Vec<u8>>,
        ttl: Option<f64>,
        retry: Option<RetryTuple>,
        interruptible: bool,
        fence: bool,
    ) -> PyResult<(Vec<u8>, f64, Option<u64>)> {
        let client = self.client()?;
        let options = lock_options(ttl, retry, fence)?;
        let lease = take(py, &client, resources, options, interruptible)?;
        let validity = lease.remaining().as_secs_f64();
        let core = lease.forget();
        Ok((core.token().as_bytes().to_vec(), validity, core.fence()))
    }

    /// Extends the lock `token` holds on `resources`: validity left, seconds.
    #[pyo3(signature = (resources, token, ttl=None))]
    fn extend(
        &self,
        py: Python<'_>,
        resources: Vec<Vec<u8>>,
        token: Vec<u8>,
        ttl: Option<f64>,
    ) -> PyResult<f64> {
        let client = self.client()?;
        let token = token_of(&token)?;
        let ttl = match ttl {
            Some(t) => secs("ttl", t)?,
            None => client.config().ttl,
        };
        py.detach(|| {
            let called = Instant::now();
            let lease = client.extend_token(resources.as_slice(), &token, ttl)?;
            Ok(validity_left(&lease, called))
        })
        .map_err(std_err)
    }

    /// Releases the lock `token` holds on `resources` (compare-and-delete).
    fn release(
        &self,
        py: Python<'_>,
        resources: Vec<Vec<u8>>,
        token: Vec<u8>,
    ) -> PyResult<ReleaseTuple> {
        let client = self.client()?;
        let token = token_of(&token)?;
        std_release(py.detach(|| client.release_token(resources.as_slice(), &token)))
    }
}

/// The acquire of `Client.lock` and `Client.acquire`, GIL released.
fn take(
    py: Python<'_>,
    client: &redlock_std::Client,
    resources: Vec<Vec<u8>>,
    options: LockOptions,
    interruptible: bool,
) -> PyResult<redlock_std::Lease> {
    if interruptible {
        return lock_interruptible(py, client, resources, options);
    }
    py.detach(|| client.lock_with(resources.as_slice(), &options))
        .map_err(std_err)
}

enum State {
    Plain(Box<redlock_std::Lease>),
    Kept(Arc<redlock_std::KeptLease>),
    Done,
}

/// A held lock: plain (manual extension) or kept (extended in the
/// background by a `redlock_std::KeptLease`).
#[pyclass(frozen, module = "redlock_rs._native")]
struct Lease {
    client: Owned<redlock_std::Client>,
    state: Owned<Mutex<State>>,
    resources: Vec<Vec<u8>>,
    token: Vec<u8>,
    fence: Option<u64>,
}

impl Lease {
    fn new(
        client: redlock_std::Client,
        resources: Vec<Vec<u8>>,
        fence: Option<u64>,
        state: State,
    ) -> Lease {
        let token = match &state {
            State::Plain(l) => l.token().as_bytes().to_vec(),
            State::Kept(k) => k.token().as_bytes().to_vec(),
            State::Done => Vec::new(),
        };
        Lease {
            client: Owned::new(client),
            state: Owned::new(Mutex::new(state)),
            resources,
            token,
            fence,
        }
    }
}

impl Drop for Lease {
    /// A kept lease dropped unreleased (garbage-collected, with the GIL
    /// held): stopping its keeper joins a thread that may be in the middle
    /// of an extension (up to a node timeout), so that happens on a
    /// short-lived thread of its own, which then releases the lock.
    fn drop(&mut self) {
        let Some(state) = self.state.local() else {
            return;
        };
        let taken = std::mem::replace(
            state.get_mut().unwrap_or_else(|p| p.into_inner()),
            State::Done,
        );
        if let State::Kept(keeper) = taken {
            // If no thread can be had, the closure (and the keeper) is
            // dropped right here instead.
            let _ = std::thread::Builder::new()
                .name("redlock-drop".into())
                .spawn(move || drop(keeper));
        }
    }
}

#[pymethods]
impl Lease {
    /// The first resource, as given.
    #[getter]
    fn resource(&self) -> Vec<u8> {
        self.resources.first().cloned().unwrap_or_default()
    }

    /// The fence of a fenced lease (extensions keep it), else None.
    #[getter]
    fn fence(&self) -> Option<u64> {
        self.fence
    }

    #[getter]
    fn token(&self) -> Vec<u8> {
        self.token.clone()
    }

    /// Whether extension runs in the background.
    #[getter]
    fn kept(&self) -> PyResult<bool> {
        Ok(matches!(*lock(self.state.get()?), State::Kept(_)))
    }

    /// Validity left, in seconds (0 once lost, expired or released).
    fn remaining(&self, py: Python<'_>) -> PyResult<f64> {
        let state = self.state.get()?;
        Ok(py
            .detach(|| match &*lock(state) {
                State::Plain(l) => l.remaining(),
                State::Kept(k) => k.remaining(),
                State::Done => Duration::ZERO,
            })
            .as_secs_f64())
    }

    /// Whether the lock is lost: an extension failed or the validity ran out
    /// (a released lease is not lost).
    fn is_lost(&self, py: Python<'_>) -> PyResult<bool> {
        let state = self.state.get()?;
        Ok(py.detach(|| match &*lock(state) {
            State::Plain(l) => !l.is_valid(),
            State::Kept(k) => k.is_lost(),
            State::Done => false,
        }))
    }

    /// The `LockLost` exception describing the loss, or None.
    fn lost_error(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let state = self.state.get()?;
        let err = py.detach(|| match &*lock(state) {
            State::Plain(l) if !l.is_valid() => Some(make_err(
                Kind::Lost,
                "lock lost: the lease expired (it was not being extended)".into(),
                Vec::new(),
            )),
            State::Kept(k) => k.lost_error().map(|e| match e {
                e @ redlock_std::Error::Lost(_) => std_err(e),
                other => make_err(Kind::Lost, format!("lock lost: {other}"), Vec::new()),
            }),
            _ => None,
        });
        Ok(err.map(|e| e.into_value(py).into_any()))
    }

    /// Waits up to `timeout` seconds (None: until it happens) for the loss
    /// of the lock, GIL released; True if lost.
    #[pyo3(signature = (timeout=None))]
    fn wait_lost(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = match timeout {
            Some(t) => secs("timeout", t)?,
            None => Duration::MAX,
        };
        let state = self.state.get()?;
        enum Wait {
            Keeper(Arc<redlock_std::KeptLease>),
            Expiry(Duration),
            Never,
        }
        py.detach(|| {
            // Decide under the lock, wait without it.
            let wait = match &*lock(state) {
                State::Kept(k) => Wait::Keeper(Arc::clone(k)),
                State::Plain(l) => Wait::Expiry(l.remaining()),
                State::Done => Wait::Never,
            };
            let kept = match wait {
                Wait::Keeper(k) => k,
                // A plain lease is lost when it expires (nothing extends it).
                Wait::Expiry(left) if left > timeout => {
                    std::thread::sleep(timeout);
                    return Ok(false);
                }
                Wait::Expiry(left) => {
                    std::thread::sleep(left);
                    return Ok(true);
                }
                Wait::Never => return Ok(false),
            };
            if timeout == Duration::MAX {
                return Ok(kept.wait());
            }
            Ok(kept.wait_timeout(timeout))
        })
    }

    /// Extends a plain lease to `ttl` seconds from now (default: its TTL).
    #[pyo3(signature = (ttl=None))]
    fn extend(&self, py: Python<'_>, ttl: Option<f64>) -> PyResult<()> {
        let ttl = ttl.map(|t| secs("ttl", t)).transpose()?;
        let state = self.state.get()?;
        py.detach(|| match &mut *lock(state) {
            State::Plain(l) => {
                let ttl = ttl.unwrap_or(l.core().ttl());
                l.extend(ttl).map_err(std_err)
            }
            State::Kept(_) => Err(PyTypeError::new_err(
                "this lease is extended automatically; extend() is for leases taken with keep=False",
            )),
            State::Done => Err(PyRuntimeError::new_err("the lease was already released")),
        })
    }

    /// Stops any extension and releases the lock now. None if it had
    /// already been released.
    fn release(&self, py: Python<'_>) -> PyResult<Option<ReleaseTuple>> {
        let state = self.state.get()?;
        let client = self.client.get()?;
        py.detach(|| {
            let taken = std::mem::replace(&mut *lock(state), State::Done);
            let report = match taken {
                State::Plain(l) => (*l).release(),
                State::Kept(k) => match Arc::try_unwrap(k) {
                    Ok(k) => {
                        let (token, resources) = (k.token(), k.resources());
                        match k.release() {
                            // Lost: the keeper released what was left; the
                            // nodes say what that came to (the loss itself
                            // is `lost_error()`'s to report).
                            Err(redlock_std::Error::Lost(_)) => {
                                client.release_token(&resources, &token)
                            }
                            other => other,
                        }
                    }
                    Err(shared) => {
                        // A wait_lost() in another thread still holds the
                        // keeper: release by token now; the keeper stops
                        // (and its extension fails) once that waiter returns.
                        let (token, resources) = (shared.token(), shared.resources());
                        drop(shared);
                        client.release_token(&resources, &token)
                    }
                },
                State::Done => return Ok(None),
            };
            std_release(report).map(Some)
        })
    }

    /// Leaves a plain lease held until its TTL (no release when dropped).
    fn forget(&self, py: Python<'_>) -> PyResult<()> {
        let state = self.state.get()?;
        py.detach(|| {
            let mut st = lock(state);
            match std::mem::replace(&mut *st, State::Done) {
                State::Plain(l) => {
                    (*l).forget();
                    Ok(())
                }
                other => {
                    *st = other;
                    Err(PyTypeError::new_err(
                        "only a lease taken with keep=False can be forgotten",
                    ))
                }
            }
        })
    }
}

// ------------------------------------------------------------- asyncio API

/// The tokio runtime the async clients run on, with the process it belongs
/// to: a forked child builds its own (the parent's worker threads do not
/// exist there) and leaks the parent's.
static RUNTIME: ArcSwapOption<(u32, tokio::runtime::Runtime)> = ArcSwapOption::const_empty();
static RUNTIME_INIT: Mutex<()> = Mutex::new(());

fn runtime() -> std::io::Result<tokio::runtime::Handle> {
    let pid = std::process::id();
    if let Some(rt) = RUNTIME.load().as_ref() {
        if rt.0 == pid {
            return Ok(rt.1.handle().clone());
        }
    }
    let _init = lock(&RUNTIME_INIT);
    let current = RUNTIME.load_full();
    if let Some(rt) = current.as_ref() {
        if rt.0 == pid {
            return Ok(rt.1.handle().clone());
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("redlock-tokio")
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    let old = RUNTIME.swap(Some(Arc::new((pid, rt))));
    // A runtime from the parent process: never drop it here.
    std::mem::forget(old);
    if let Some(c) = current {
        std::mem::forget(c);
    }
    Ok(handle)
}

fn runtime_handle() -> tokio::runtime::Handle {
    match runtime() {
        Ok(h) => h,
        // Only reachable when the OS refuses a thread after an async
        // client was already built (which checked the runtime fallibly).
        Err(e) => panic!("cannot start the redlock tokio runtime: {e}"),
    }
}

/// pyo3-async-runtimes' generic runtime, over [`runtime`].
struct Rt;

tokio::task_local! {
    static TASK_LOCALS: std::cell::OnceCell<TaskLocals>;
}

impl GenericRuntime for Rt {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        runtime_handle().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        runtime_handle().spawn_blocking(f)
    }
}

impl ContextExt for Rt {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    generic::future_into_py::<Rt, _, _>(py, fut)
}

/// A `redlock_tokio::Client` on the module's tokio runtime.
#[pyclass(frozen, module = "redlock_rs._native")]
struct AsyncClient {
    client: Owned<redlock_tokio::Client>,
}

impl AsyncClient {
    fn client(&self) -> PyResult<redlock_tokio::Client> {
        self.client.get().cloned()
    }
}

#[pymethods]
impl AsyncClient {
    #[new]
    #[pyo3(signature = (nodes, ttl, node_timeout=None, retry=None, drift_factor=None, tls_ca_pem=None, allow_same_server_twice=false))]
    fn new(
        nodes: Vec<String>,
        ttl: f64,
        node_timeout: Option<f64>,
        retry: Option<RetryTuple>,
        drift_factor: Option<f64>,
        tls_ca_pem: Option<Vec<u8>>,
        allow_same_server_twice: bool,
    ) -> PyResult<AsyncClient> {
        let mut b = redlock_tokio::Client::builder()
            .nodes(&nodes)
            .ttl(secs("ttl", ttl)?);
        if allow_same_server_twice {
            b = b.allow_same_server_twice();
        }
        if let Some(t) = node_timeout {
            b = b.node_timeout(secs("node_timeout", t)?);
        }
        if let Some(r) = retry_policy(retry)? {
            b = b.retry(r);
        }
        if let Some(ppm) = drift_ppm(drift_factor)? {
            b = b.configure(move |c| c.drift_ppm = ppm);
        }
        if let Some(pem) = tls_ca_pem {
            b = b.tls_ca_pem(&pem);
        }
        let handle = runtime()
            .map_err(|e| make_err(Kind::Io, format!("cannot start tokio: {e}"), Vec::new()))?;
        let _entered = handle.enter();
        let client = b.build().map_err(tokio_err)?;
        Ok(AsyncClient {
            client: Owned::new(client),
        })
    }

    fn node_urls(&self) -> PyResult<Vec<String>> {
        Ok(self.client()?.node_urls())
    }

    /// `(ttl, node_timeout, (retry tuple), drift_factor)` in force.
    fn config(&self) -> PyResult<(f64, f64, RetryTuple, f64)> {
        Ok(config_tuple(self.client()?.config()))
    }

    #[pyo3(signature = (resources, ttl=None, retry=None, keep=true, fence=false))]
    fn lock<'py>(
        &self,
        py: Python<'py>,
        resources: Vec<Vec<u8>>,
        ttl: Option<f64>,
        retry: Option<RetryTuple>,
        keep: bool,
        fence: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client()?;
        let options = lock_options(ttl, retry, fence)?;
        awaitable(py, async move {
            let lease = client
                .lock_with(resources.as_slice(), &options)
                .await
                .map_err(tokio_err)?;
            let token = lease.token().as_bytes().to_vec();
            let fence = lease.fence();
            let state = if keep {
                AState::Kept(client.keep(lease))
            } else {
                AState::Plain(Box::new(lease))
            };
            Ok(AsyncLease {
                state: Owned::new(Arc::new(Mutex::new(state))),
                resources,
                token,
                fence,
            })
        })
    }

    #[pyo3(signature = (resources, ttl=None, retry=None, fence=false))]
    fn acquire<'py>(
        &self,
        py: Python<'py>,
        resources: Vec<Vec<u8>>,
        ttl: Option<f64>,
        retry: Option<RetryTuple>,
        fence: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client()?;
        let options = lock_options(ttl, retry, fence)?;
        awaitable(py, async move {
            let lease = client
                .lock_with(resources.as_slice(), &options)
                .await
                .map_err(tokio_err)?;
            let validity = lease.remaining().as_secs_f64();
            let core = lease.forget();
            Ok((core.token().as_bytes().to_vec(), validity, core.fence()))
        })
    }

    #[pyo3(signature = (resources, token, ttl=None))]
    fn extend<'py>(
        &self,
        py: Python<'py>,
        resources: Vec<Vec<u8>>,
        token: Vec<u8>,
        ttl: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client()?;
        let token = token_of(&token)?;
        let ttl = ttl.map(|t| secs("ttl", t)).transpose()?;
        awaitable(py, async move {
            let ttl = ttl.unwrap_or(client.config().ttl);
            let called = Instant::now();
            let lease = client
                .extend_token(resources.as_slice(), &token, ttl)
                .await
                .map_err(tokio_err)?;
            Ok(validity_left(&lease, called))
        })
    }

    fn release<'py>(
        &self,
        py: Python<'py>,
        resources: Vec<Vec<u8>>,
        token: Vec<u8>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client()?;
        let token = token_of(&token)?;
        awaitable(py, async move {
            tokio_release(client.release_token(resources.as_slice(), &token).await)
        })
    }
}

enum AState {
    Plain(Box<redlock_tokio::Lease>),
    Kept(redlock_tokio::KeptLease),
    Busy,
    Done,
}

/// A lock held through an [`AsyncClient`].
#[pyclass(frozen, module = "redlock_rs._native")]
struct AsyncLease {
    state: Owned<Arc<Mutex<AState>>>,
    resources: Vec<Vec<u8>>,
    token: Vec<u8>,
    fence: Option<u64>,
}

impl AsyncLease {
    fn state(&self) -> PyResult<&Arc<Mutex<AState>>> {
        self.state.get()
    }
}

#[pymethods]
impl AsyncLease {
    /// The first resource, as given.
    #[getter]
    fn resource(&self) -> Vec<u8> {
        self.resources.first().cloned().unwrap_or_default()
    }

    #[getter]
    fn token(&self) -> Vec<u8> {
        self.token.clone()
    }

    /// The fence of a fenced lease (extensions keep it), else None.
    #[getter]
    fn fence(&self) -> Option<u64> {
        self.fence
    }

    #[getter]
    fn kept(&self) -> PyResult<bool> {
        Ok(matches!(*lock(self.state()?), AState::Kept(_)))
    }

    fn remaining(&self) -> PyResult<f64> {
        Ok(match &*lock(self.state()?) {
            AState::Plain(l) => l.remaining(),
            AState::Kept(g) => g.remaining(),
            AState::Busy | AState::Done => Duration::ZERO,
        }
        .as_secs_f64())
    }

    fn is_lost(&self) -> PyResult<bool> {
        Ok(match &*lock(self.state()?) {
            AState::Plain(l) => !l.is_valid(),
            AState::Kept(g) => g.is_lost(),
            AState::Busy | AState::Done => false,
        })
    }

    fn lost_error(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let err = match &*lock(self.state()?) {
            AState::Plain(l) if !l.is_valid() => Some(make_err(
                Kind::Lost,
                "lock lost: the lease expired (it was not being extended)".into(),
                Vec::new(),
            )),
            AState::Kept(g) => g.lost_error().map(tokio_err),
            _ => None,
        };
        Ok(err.map(|e| e.into_value(py).into_any()))
    }

    /// Awaitable: completes (True) when the lock is lost; False when it
    /// was (or gets) released first.
    fn wait_lost<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        enum Wait {
            Guard(redlock_tokio::LossSignal),
            Until(Duration),
            Never,
        }
        let wait = match &*lock(self.state()?) {
            AState::Kept(g) => Wait::Guard(g.loss_signal()),
            AState::Plain(l) => Wait::Until(l.remaining()),
            AState::Busy | AState::Done => Wait::Never,
        };
        awaitable(py, async move {
            match wait {
                Wait::Guard(g) => Ok(g.lost().await),
                Wait::Until(d) => {
                    tokio::time::sleep(d).await;
                    Ok(true)
                }
                Wait::Never => Ok(false),
            }
        })
    }

    /// Awaitable: extends a plain lease to `ttl` seconds from now (default:
    /// its TTL). Raises LockLost when a quorum does not confirm in time.
    #[pyo3(signature = (ttl=None))]
    fn extend<'py>(&self, py: Python<'py>, ttl: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let ttl = ttl.map(|t| secs("ttl", t)).transpose()?;
        let state = Arc::clone(self.state()?);
        let lease = {
            let mut st = lock(&state);
            match std::mem::replace(&mut *st, AState::Busy) {
                AState::Plain(l) => l,
                other => {
                    let msg = match &other {
                        AState::Kept(_) => "this lease is extended automatically; extend() is for leases taken with keep=False",
                        AState::Busy => "another extend() of this lease is running",
                        _ => "the lease was already released",
                    };
                    *st = other;
                    return Err(PyRuntimeError::new_err(msg));
                }
            }
        };
        awaitable(py, async move {
            // Puts the lease back when the extend ends or is cancelled.
            let mut back = PutBack {
                state,
                lease: Some(lease),
            };
            let Some(lease) = back.lease.as_mut() else {
                return Err(PyRuntimeError::new_err("lease missing"));
            };
            let ttl = ttl.unwrap_or(lease.core().ttl());
            lease.extend(ttl).await.map_err(tokio_err)
        })
    }

    /// Awaitable: stops any extension and releases now; resolves to the
    /// release tuple, or None if already released. A kept lease that had
    /// been lost raises LockLost (after a best-effort release).
    fn release<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let taken = std::mem::replace(&mut *lock(self.state()?), AState::Done);
        awaitable(py, async move {
            let report = match taken {
                AState::Plain(l) => (*l).release().await,
                // A lost one raises LockLost (after releasing what was left).
                AState::Kept(g) => g.release().await,
                AState::Busy | AState::Done => return Ok(None),
            };
            tokio_release(report).map(Some)
        })
    }
}

struct PutBack {
    state: Arc<Mutex<AState>>,
    lease: Option<Box<redlock_tokio::Lease>>,
}

impl Drop for PutBack {
    fn drop(&mut self) {
        if let Some(l) = self.lease.take() {
            *lock(&self.state) = AState::Plain(l);
        }
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<Lease>()?;
    m.add_class::<AsyncClient>()?;
    m.add_class::<AsyncLease>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
