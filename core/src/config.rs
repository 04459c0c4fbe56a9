//! Lock parameters, per-node settings, and their validation.
//!
//! A [`Config`] holds the timing rules every lock operation follows; a
//! [`NodeConfig`] holds what one node's connection needs for its handshake
//! (credentials, database). Both are checked once, by
//! [`Redlock::new`](crate::Redlock::new); a bad value is a [`ConfigError`],
//! never a panic.

use core::time::Duration;

use crate::time::micros;

/// The most nodes one core can talk to. Redlock deployments use 3, 5 or 7.
pub const MAX_NODES: usize = 16;
/// The longest resource name (Redis key) a lock may use, in bytes.
pub const MAX_RESOURCE_LEN: usize = 256;
/// The longest ACL username accepted, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;
/// The longest password accepted, in bytes.
pub const MAX_PASSWORD_LEN: usize = 256;
/// The longest retry delay or jitter accepted (a day): longer pauses are
/// configuration mistakes, refused rather than overflowed.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(24 * 3600);
/// The longest reconnect backoff accepted (an hour).
pub const MAX_RECONNECT: Duration = Duration::from_secs(3600);

/// How a failed acquire attempt is retried.
///
/// After a failed attempt the core waits `delay`, moved by a uniformly random
/// amount in `[-jitter/2, +jitter/2]` (from the caller's RNG), then tries
/// again, up to `count` further attempts, or, when `wait` is set, for as long
/// as the next attempt would start before `wait` has passed since the first.
///
/// ```
/// use core::time::Duration;
/// use redlock_core::RetryPolicy;
///
/// let once = RetryPolicy::none();
/// assert_eq!(once.count, 0);
/// let patient = RetryPolicy { wait: Some(Duration::from_secs(10)), ..RetryPolicy::default() };
/// assert!(patient.wait.is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    /// Further attempts after the first (ignored when `wait` is set).
    pub count: u32,
    /// Base pause between attempts.
    pub delay: Duration,
    /// Width of the random window around `delay`.
    pub jitter: Duration,
    /// Keep retrying until this much time has passed since the first attempt
    /// started, instead of counting attempts. `Some(ZERO)` means one attempt.
    pub wait: Option<Duration>,
}

impl RetryPolicy {
    /// The longest an acquire with this policy takes if every attempt times
    /// out: its `wait`, or every attempt's node timeout plus the pauses
    /// between them (at their longest). A transport that queues an acquire
    /// before it can start bounds the wait by this. Saturating.
    ///
    /// ```
    /// # use redlock_core::RetryPolicy;
    /// # use core::time::Duration;
    /// let t = Duration::from_millis(100);
    /// assert_eq!(RetryPolicy::none().longest(t), t);
    /// let r = RetryPolicy { count: 2, delay: Duration::from_millis(50), jitter: Duration::from_millis(20), wait: None };
    /// assert_eq!(r.longest(t), Duration::from_millis(3 * 100 + 2 * 60));
    /// let w = RetryPolicy { wait: Some(Duration::from_secs(3)), ..r };
    /// assert_eq!(w.longest(t), Duration::from_secs(3));
    /// ```
    pub fn longest(&self, node_timeout: Duration) -> Duration {
        match self.wait {
            Some(wait) => wait.max(node_timeout),
            None => {
                let attempts = self.count.saturating_add(1);
                let pause = self.delay.saturating_add(self.jitter / 2);
                node_timeout
                    .saturating_mul(attempts)
                    .saturating_add(pause.saturating_mul(self.count))
            }
        }
    }

    /// This policy for an acquire that starts `waited` late (it waited for
    /// an operation slot): a `wait` budget shrinks by the time already
    /// spent, so the caller's deadline does not move; a count of attempts
    /// stays.
    ///
    /// ```
    /// # use redlock_core::RetryPolicy;
    /// # use core::time::Duration;
    /// let w = RetryPolicy { wait: Some(Duration::from_secs(3)), ..RetryPolicy::default() };
    /// assert_eq!(w.after_waiting(Duration::from_secs(1)).wait, Some(Duration::from_secs(2)));
    /// assert_eq!(w.after_waiting(Duration::from_secs(9)).wait, Some(Duration::ZERO));
    /// let c = RetryPolicy::default();
    /// assert_eq!(c.after_waiting(Duration::from_secs(1)), c);
    /// ```
    pub fn after_waiting(self, waited: Duration) -> RetryPolicy {
        RetryPolicy {
            wait: self.wait.map(|w| w.saturating_sub(waited)),
            ..self
        }
    }

    /// Checks the pauses are within [`MAX_RETRY_PAUSE`].
    ///
    /// ```
    /// # use redlock_core::{ConfigError, RetryPolicy};
    /// # use core::time::Duration;
    /// let absurd = RetryPolicy { delay: Duration::from_secs(u64::MAX), ..RetryPolicy::default() };
    /// assert_eq!(absurd.validate(), Err(ConfigError::Retry));
    /// assert!(RetryPolicy::default().validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.delay > MAX_RETRY_PAUSE || self.jitter > MAX_RETRY_PAUSE {
            return Err(ConfigError::Retry);
        }
        Ok(())
    }

    /// A single attempt, no retries.
    ///
    /// ```
    /// # use redlock_core::RetryPolicy;
    /// assert_eq!(RetryPolicy::none().count, 0);
    /// ```
    pub const fn none() -> Self {
        RetryPolicy {
            count: 0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            wait: None,
        }
    }
}

impl Default for RetryPolicy {
    /// 3 retries, 200 ms apart with 200 ms of jitter (so 100..300 ms).
    fn default() -> Self {
        RetryPolicy {
            count: 3,
            delay: Duration::from_millis(200),
            jitter: Duration::from_millis(200),
            wait: None,
        }
    }
}

/// Timing rules for every lock of one core.
///
/// ```
/// use core::time::Duration;
/// use redlock_core::Config;
///
/// let config = Config::new(Duration::from_secs(10));
/// // drift = ttl x 0.01 + 2 ms
/// assert_eq!(config.drift(config.ttl), Duration::from_millis(102));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Validity asked of each node for one lease (`SET ... PX ttl`). Whole
    /// milliseconds are sent; a sub-millisecond part is dropped.
    pub ttl: Duration,
    /// Clock drift allowance as parts per million of the TTL (10 000 = 0.01).
    pub drift_ppm: u32,
    /// Constant added to the drift (Redis expires with 1 ms precision, plus
    /// 1 ms of minimum drift: 2 ms, as in the reference implementation).
    pub drift_floor: Duration,
    /// How long one node may take to answer one request before it counts as
    /// failed for that attempt. Must be small against the TTL.
    pub node_timeout: Duration,
    /// Retry policy for acquire.
    pub retry: RetryPolicy,
    /// First pause before reconnecting to a node whose connection dropped;
    /// doubles on each failure up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// Longest pause between reconnection attempts: a node that comes back
    /// is used again at most this long (plus a connect) after it accepts.
    pub reconnect_max: Duration,
}

impl Config {
    /// Defaults for a given TTL: drift 0.01 x TTL + 2 ms, node timeout of
    /// 5 % of the TTL clamped to 5 ms..=1 s, default retries, and a
    /// reconnect backoff derived from the TTL too: from 0.5 % of the TTL
    /// (1..=50 ms) doubling up to 5 % of it (10 ms..=2 s), so a node that
    /// restarts is back in use within a small fraction of a lease.
    ///
    /// ```
    /// # use redlock_core::Config;
    /// # use core::time::Duration;
    /// let c = Config::new(Duration::from_secs(30));
    /// assert_eq!(c.node_timeout, Duration::from_secs(1));
    /// assert_eq!(c.reconnect_max, Duration::from_millis(1_500));
    /// let short = Config::new(Duration::from_secs(2));
    /// assert_eq!((short.reconnect_min, short.reconnect_max), (Duration::from_millis(10), Duration::from_millis(100)));
    /// ```
    pub fn new(ttl: Duration) -> Self {
        let node_timeout = (ttl / 20).clamp(Duration::from_millis(5), Duration::from_secs(1));
        Config {
            ttl,
            drift_ppm: 10_000,
            drift_floor: Duration::from_millis(2),
            node_timeout,
            retry: RetryPolicy::default(),
            reconnect_min: (ttl / 200).clamp(Duration::from_millis(1), Duration::from_millis(50)),
            reconnect_max: (ttl / 20).clamp(Duration::from_millis(10), Duration::from_secs(2)),
        }
    }

    /// The clock drift allowance for a lease of `ttl`:
    /// `ttl x drift_ppm / 1e6 + drift_floor`, in whole microseconds rounded up.
    ///
    /// ```
    /// # use redlock_core::Config;
    /// # use core::time::Duration;
    /// let c = Config::new(Duration::from_millis(1000));
    /// assert_eq!(c.drift(Duration::from_millis(1000)), Duration::from_millis(12));
    /// ```
    pub fn drift(&self, ttl: Duration) -> Duration {
        let ttl_us = u128::from(micros(ttl));
        let scaled = (ttl_us * u128::from(self.drift_ppm)).div_ceil(1_000_000);
        Duration::from_micros(u64::try_from(scaled).unwrap_or(u64::MAX))
            .saturating_add(self.drift_floor)
    }

    /// Checks that a lease of `ttl` can ever be valid under this config:
    /// at least 1 ms, representable by Redis, and no shorter than its drift
    /// plus the node timeout (so a reply in time can leave validity).
    ///
    /// ```
    /// # use redlock_core::{Config, ConfigError};
    /// # use core::time::Duration;
    /// let c = Config::new(Duration::from_secs(1));
    /// assert_eq!(c.check_ttl(Duration::from_millis(1)), Err(ConfigError::TtlTooShort));
    /// ```
    pub fn check_ttl(&self, ttl: Duration) -> Result<(), ConfigError> {
        if ttl < Duration::from_millis(1) {
            return Err(ConfigError::TtlTooShort);
        }
        // Redis keeps PX as a signed 64-bit count of ms added to its own
        // clock; stay far below that.
        if ttl > Duration::from_secs(100 * 365 * 24 * 3600) {
            return Err(ConfigError::TtlTooLong);
        }
        let ttl = Duration::from_millis(ttl.as_millis() as u64);
        if ttl < self.drift(ttl).saturating_add(self.node_timeout) {
            return Err(ConfigError::TtlTooShort);
        }
        Ok(())
    }

    /// Validates every field.
    ///
    /// ```
    /// # use redlock_core::{Config, ConfigError};
    /// # use core::time::Duration;
    /// let mut c = Config::new(Duration::from_secs(10));
    /// c.node_timeout = Duration::ZERO;
    /// assert_eq!(c.validate(), Err(ConfigError::NodeTimeout));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.drift_ppm > 1_000_000 {
            return Err(ConfigError::DriftFactor);
        }
        if self.node_timeout.is_zero() {
            return Err(ConfigError::NodeTimeout);
        }
        if self.reconnect_min.is_zero()
            || self.reconnect_max < self.reconnect_min
            || self.reconnect_max > MAX_RECONNECT
        {
            return Err(ConfigError::Reconnect);
        }
        self.retry.validate()?;
        self.check_ttl(self.ttl)
    }
}

impl Config {
    /// The per-acquire options this configuration gives by default: its
    /// TTL and retry policy, unfenced.
    ///
    /// ```
    /// # use redlock_core::{Config, Fencing};
    /// let o = Config::default().acquire_options();
    /// assert_eq!(o.fencing, Fencing::Off);
    /// ```
    pub fn acquire_options(&self) -> AcquireOptions {
        AcquireOptions {
            ttl: self.ttl,
            retry: self.retry,
            fencing: Fencing::Off,
        }
    }
}

/// Whether an acquire is fenced (see [`crate::fence`]).
///
/// ```
/// use redlock_core::Fencing;
/// let on = Fencing::On { unix_ms: 1_764_000_000_000 };
/// assert_ne!(on, Fencing::Off);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Fencing {
    /// A plain lock.
    #[default]
    Off,
    /// A fenced lock: the lease carries a fence. `unix_ms` is the caller's
    /// wall clock (milliseconds since the Unix epoch) at the acquire: only
    /// a hint for the proposal that keeps most acquires to one round; a wrong
    /// clock costs a second round, never safety.
    On {
        /// Wall-clock time in ms since the Unix epoch.
        unix_ms: u64,
    },
}

/// Options of one acquire: TTL, retry policy, fencing.
///
/// ```
/// use core::time::Duration;
/// use redlock_core::{AcquireOptions, Config, RetryPolicy};
/// let o = AcquireOptions { ttl: Duration::from_secs(5), retry: RetryPolicy::none(), ..Config::default().acquire_options() };
/// assert_eq!(o.ttl, Duration::from_secs(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AcquireOptions {
    /// Validity asked of each node.
    pub ttl: Duration,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// Plain or fenced.
    pub fencing: Fencing,
}

impl Default for Config {
    /// [`Config::new`] with a 30 s TTL.
    fn default() -> Self {
        Config::new(Duration::from_secs(30))
    }
}

/// Credentials sent by `AUTH` when a node's connection opens.
///
/// ```
/// use redlock_core::Auth;
/// let auth = Auth::new(Some("app"), "s3cret").unwrap();
/// assert_eq!(auth.username(), Some("app"));
/// // Debug output never shows the password.
/// assert!(!format!("{auth:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Auth {
    username: Option<heapless::String<MAX_USERNAME_LEN>>,
    password: heapless::String<MAX_PASSWORD_LEN>,
}

impl Auth {
    /// Credentials for `AUTH [username] password`.
    ///
    /// ```
    /// # use redlock_core::{Auth, ConfigError};
    /// let long = "x".repeat(1000);
    /// assert_eq!(Auth::new(None, &long), Err(ConfigError::CredentialsTooLong));
    /// ```
    pub fn new(username: Option<&str>, password: &str) -> Result<Self, ConfigError> {
        let username = match username {
            Some(u) => {
                Some(heapless::String::try_from(u).map_err(|_| ConfigError::CredentialsTooLong)?)
            }
            None => None,
        };
        let password =
            heapless::String::try_from(password).map_err(|_| ConfigError::CredentialsTooLong)?;
        Ok(Auth { username, password })
    }

    /// The ACL username, if any (`None` means the `default` user).
    ///
    /// ```
    /// # use redlock_core::Auth;
    /// assert_eq!(Auth::new(None, "pw").unwrap().username(), None);
    /// ```
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password. Handle with care: never log it.
    ///
    /// ```
    /// # use redlock_core::Auth;
    /// assert_eq!(Auth::new(None, "pw").unwrap().password(), "pw");
    /// ```
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl core::fmt::Debug for Auth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username())
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What one node's connection needs: credentials and database.
///
/// ```
/// use redlock_core::{Auth, NodeConfig};
/// let plain = NodeConfig::default();
/// assert_eq!(plain.db, 0);
/// let secured = NodeConfig { auth: Some(Auth::new(None, "pw").unwrap()), db: 3 };
/// assert_eq!(secured.db, 3);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeConfig {
    /// `AUTH` on connect, if set.
    pub auth: Option<Auth>,
    /// `SELECT db` on connect, when not 0.
    pub db: u16,
}

/// Why a configuration or command argument was refused.
///
/// ```
/// # use redlock_core::ConfigError;
/// assert_eq!(ConfigError::NoNodes.to_string(), "no nodes configured");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigError {
    /// No node was given.
    NoNodes,
    /// More nodes than [`MAX_NODES`] (or the core's capacity).
    TooManyNodes,
    /// The TTL is shorter than its drift plus the node timeout (or < 1 ms).
    TtlTooShort,
    /// The TTL is beyond what Redis can represent.
    TtlTooLong,
    /// The drift factor is above 1.
    DriftFactor,
    /// The node timeout is zero.
    NodeTimeout,
    /// Reconnect backoff bounds are zero, inverted, or above
    /// [`MAX_RECONNECT`].
    Reconnect,
    /// A retry delay or jitter above [`MAX_RETRY_PAUSE`].
    Retry,
    /// A username or password is longer than the fixed capacity.
    CredentialsTooLong,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::NoNodes => "no nodes configured",
            ConfigError::TooManyNodes => "too many nodes for this core's capacity",
            ConfigError::TtlTooShort => "ttl must be at least 1 ms and at least its clock-drift allowance plus the node timeout",
            ConfigError::TtlTooLong => "ttl is too long for Redis",
            ConfigError::DriftFactor => "drift factor must be between 0 and 1",
            ConfigError::NodeTimeout => "node timeout must be positive",
            ConfigError::Reconnect => "reconnect backoff bounds must be positive, ordered and at most an hour",
            ConfigError::Retry => "retry delay and jitter must be at most a day",
            ConfigError::CredentialsTooLong => "username or password too long",
        })
    }
}

impl core::error::Error for ConfigError {}
