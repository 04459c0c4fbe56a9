//! The implementations under test behind one shape: connect, then
//! `cycle(resource, critical)` = one acquire attempt, the critical section
//! if it was acquired, one release.
//!
//! Every client is configured alike: TTL [`TTL`], a single attempt per
//! `cycle` (retries, when a workload wants them, are done by the workload,
//! identically for everyone).

use std::sync::Arc;
use std::time::Duration;

use crate::baseline::Baseline;

/// The TTL asked of every lock.
pub(crate) const TTL: Duration = Duration::from_secs(10);

/// The implementations, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Impl {
    /// The minimal raw client of `baseline.rs`: acquire returns at quorum,
    /// release waits for every node.
    Baseline,
    /// The same minimal client returning at quorum for acquire **and**
    /// release (the rest of the replies are read off the connection later).
    QuorumMin,
    /// `lockstep.rs`: one thread, one blocking connection per node, every
    /// concurrent lock's next command in one write per node, then every
    /// reply. Concurrency workloads only.
    LockstepMin,
    /// `rslock` (crates.io, async).
    Rslock,
    /// redlock-rs: the crates.io `redlock` 2.x crate (blocking).
    RedlockRs,
    /// node-redlock: npm `redlock` v5 over `ioredis`, run by `node/driver.js`.
    NodeRedlock,
    /// This project, blocking transport.
    Std,
    /// This project, tokio transport.
    Tokio,
}

impl Impl {
    pub(crate) const ALL: [Impl; 8] = [
        Impl::Baseline,
        Impl::QuorumMin,
        Impl::LockstepMin,
        Impl::Rslock,
        Impl::RedlockRs,
        Impl::NodeRedlock,
        Impl::Std,
        Impl::Tokio,
    ];

    /// The short name used on the command line and in the log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Impl::Baseline => "baseline",
            Impl::QuorumMin => "quorum-min",
            Impl::LockstepMin => "lockstep-min",
            Impl::Rslock => "rslock",
            Impl::RedlockRs => "redlock-rs",
            Impl::NodeRedlock => "node-redlock",
            Impl::Std => "std",
            Impl::Tokio => "tokio",
        }
    }

    /// What it is, for the report's legend.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Impl::Baseline => {
                "minimal raw client (`src/baseline.rs`): acquire returns at quorum, release waits \
                 for every node"
            }
            Impl::QuorumMin => {
                "the same minimal client returning at quorum for acquire **and** release (the \
                 other replies are read off the pipelined connection afterwards)"
            }
            Impl::LockstepMin => {
                "one-thread lockstep-pipelined minimal client (`src/lockstep.rs`): one blocking \
                 connection per node, all concurrent locks' next commands in one write per node, \
                 then all replies (concurrency workloads only)"
            }
            Impl::Rslock => "rslock 0.10 (crates.io; async, redis-rs multiplexed connections)",
            Impl::RedlockRs => {
                "redlock-rs (crates.io `redlock` 2.0; blocking, a new connection per command)"
            }
            Impl::NodeRedlock => {
                "node-redlock (npm `redlock` 5.0.0-beta.2 over `ioredis` 6.0.0, pinned in \
                 `node/package-lock.json`, system `node`; `node/driver.js`)"
            }
            Impl::Std => "this project, redlock-std (blocking; a driver thread per client)",
            Impl::Tokio => "this project, redlock-tokio (a driver task on the tokio runtime)",
        }
    }

    /// The name as a table column heading.
    pub(crate) fn heading(self) -> &'static str {
        match self {
            Impl::RedlockRs => "redlock-rs (crates.io `redlock` 2.0)",
            other => other.name(),
        }
    }

    pub(crate) fn from_name(s: &str) -> Option<Impl> {
        Impl::ALL.into_iter().find(|i| i.name() == s)
    }

    /// Whether it runs as tokio tasks (else as OS threads or its own process).
    pub(crate) fn is_async(self) -> bool {
        matches!(
            self,
            Impl::Baseline | Impl::QuorumMin | Impl::Rslock | Impl::Tokio
        )
    }

    /// Whether it takes part in `workload` (the lockstep client is a
    /// throughput reference only).
    pub(crate) fn runs(self, workload: crate::workload::Workload) -> bool {
        match self {
            Impl::LockstepMin => matches!(workload, crate::workload::Workload::Concurrent(_)),
            _ => true,
        }
    }
}

/// What one cycle did.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Acquired (the critical section ran) and released.
    Held,
    /// The lock is held by someone else.
    Busy,
    /// Anything else.
    Failed(String),
}

/// A blocking client.
pub(crate) enum Blocking {
    Std(redlock_std::Client),
    RedlockRs(redlock_rs::RedLock),
}

impl std::fmt::Debug for Blocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Blocking::Std(_) => "Blocking::Std",
            Blocking::RedlockRs(_) => "Blocking::RedlockRs",
        })
    }
}

impl Blocking {
    pub(crate) fn connect(which: Impl, urls: &[String]) -> Result<Blocking, String> {
        match which {
            Impl::Std => redlock_std::Client::builder()
                .nodes(urls)
                .ttl(TTL)
                .retry(redlock_std::RetryPolicy::none())
                .build()
                .map(Blocking::Std)
                .map_err(|e| e.to_string()),
            Impl::RedlockRs => {
                let mut rl = redlock_rs::RedLock::new(urls.to_vec());
                // One attempt; its post-failure pause is rand(0..1) = 0 ms.
                rl.set_retry(1, 1);
                Ok(Blocking::RedlockRs(rl))
            }
            other => Err(format!("{} is not blocking", other.name())),
        }
    }

    pub(crate) fn cycle(&self, resource: &str, critical: impl FnOnce()) -> Outcome {
        match self {
            Blocking::Std(client) => match client.try_lock(resource) {
                Ok(lease) => {
                    critical();
                    match lease.release() {
                        Ok(_) => Outcome::Held,
                        Err(e) => Outcome::Failed(format!("release: {e}")),
                    }
                }
                Err(redlock_std::Error::Busy(_)) => Outcome::Busy,
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Blocking::RedlockRs(rl) => {
                let ttl = TTL.as_millis() as usize;
                match rl.lock(resource.as_bytes(), ttl) {
                    Ok(Some(lock)) => {
                        critical();
                        rl.unlock(&lock);
                        Outcome::Held
                    }
                    Ok(None) => Outcome::Busy,
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    }
}

/// An async client; clones share connections.
#[derive(Clone)]
pub(crate) enum Async {
    Tokio(redlock_tokio::Client),
    Rslock(rslock::LockManager),
    Baseline(Arc<Baseline>),
}

impl std::fmt::Debug for Async {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Async::Tokio(_) => "Async::Tokio",
            Async::Rslock(_) => "Async::Rslock",
            Async::Baseline(_) => "Async::Baseline",
        })
    }
}

impl Async {
    pub(crate) async fn connect(which: Impl, urls: &[String]) -> Result<Async, String> {
        match which {
            Impl::Tokio => redlock_tokio::Client::builder()
                .nodes(urls)
                .ttl(TTL)
                .retry(redlock_tokio::RetryPolicy::none())
                .build()
                .map(Async::Tokio)
                .map_err(|e| e.to_string()),
            Impl::Rslock => {
                let mut lm = rslock::LockManager::new(urls.to_vec());
                // One attempt (`count` is the number of tries; the delay is
                // only used between tries and must be non-zero).
                lm.set_retry(1, Duration::from_millis(1));
                Ok(Async::Rslock(lm))
            }
            Impl::Baseline | Impl::QuorumMin => {
                Baseline::connect(urls, TTL, which == Impl::QuorumMin)
                    .await
                    .map(|b| Async::Baseline(Arc::new(b)))
                    .map_err(|e| e.to_string())
            }
            other => Err(format!("{} is not async", other.name())),
        }
    }

    pub(crate) async fn cycle(&self, resource: &str, critical: impl FnOnce()) -> Outcome {
        match self {
            Async::Tokio(client) => match client.try_lock(resource).await {
                Ok(lease) => {
                    critical();
                    match lease.release().await {
                        Ok(_) => Outcome::Held,
                        Err(e) => Outcome::Failed(format!("release: {e}")),
                    }
                }
                Err(redlock_tokio::Error::Busy(_)) => Outcome::Busy,
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Async::Rslock(lm) => match lm.lock(resource, TTL).await {
                Ok(lock) => {
                    critical();
                    lock.release().await;
                    Outcome::Held
                }
                Err(rslock::LockError::Unavailable) => Outcome::Busy,
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Async::Baseline(b) => match b.try_lock(resource).await {
                Some(lease) => {
                    critical();
                    b.release(&lease).await;
                    Outcome::Held
                }
                None => Outcome::Busy,
            },
        }
    }
}
