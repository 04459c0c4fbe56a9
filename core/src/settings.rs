//! What the transports share above the core: a client's settings (validated
//! once, when the client is built), the options of one lock call, and the
//! conversion of whatever names a caller has into a [`ResourceSet`].
//!
//! `redlock-std` and `redlock-tokio` wrap these in their own `Builder` and
//! lock calls, so both crates take the same settings, check them the same
//! way and say the same thing about a bad one. Nothing here does I/O; it
//! needs `alloc` (the node URLs are kept as given until `build()`).
//!
//! ```
//! use std::time::Duration;
//! use redlock_core::settings::{ClientSettings, IntoResources, LockOptions};
//!
//! let valid = ClientSettings::new()
//!     .nodes(["redis://10.0.0.1", "redis://10.0.0.2", "redis://10.0.0.3"])
//!     .ttl(Duration::from_secs(10))
//!     .validate()?;
//! assert_eq!(valid.urls.len(), 3);
//! assert_eq!(valid.config.ttl, Duration::from_secs(10));
//!
//! // Any name, or several: the same set whatever the order.
//! assert_eq!(["b", "a"].into_resources()?, ["a", "b", "a"].into_resources()?);
//!
//! // Per call: a fenced lock, one attempt, its own TTL.
//! let opts = LockOptions::new().ttl(Duration::from_secs(5)).single_attempt().fenced();
//! let acquire = opts.resolve(&valid.config, || 1_764_000_000_000);
//! assert_eq!(acquire.ttl, Duration::from_secs(5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::config::{
    AcquireOptions, Config, ConfigError, Fencing, NodeConfig, RetryPolicy, MAX_NODES,
};
use crate::event::CommandError;
use crate::resources::{ResourceSet, MAX_RESOURCES};
use crate::url::{explain, redact, NodeUrl, UrlError};

// ----------------------------------------------------------------- resources

/// Something that names the resources of one lock: one name (`&str`,
/// `String`, `&[u8]`, `Vec<u8>`, `b"..."`) or several (`["a", "b"]`,
/// `&[&str]`, `Vec<String>`, ...), or a [`ResourceSet`]. Several names are
/// locked all or nothing on each node; their order and repetitions do not
/// matter (the set is normalised).
///
/// [`CommandError::BadResource`] when a name is empty or longer than
/// [`MAX_RESOURCE_LEN`](crate::MAX_RESOURCE_LEN), when none is given, or
/// when there are more than [`MAX_RESOURCES`] distinct names (or
/// [`MAX_RESOURCE_SET_LEN`](crate::MAX_RESOURCE_SET_LEN) bytes).
///
/// No heap allocation for one name or up to [`MAX_RESOURCES`] names.
///
/// ```
/// use redlock_core::settings::IntoResources;
/// use redlock_core::{CommandError, ResourceSet};
///
/// assert_eq!("jobs:1".into_resources()?.first(), b"jobs:1");
/// assert_eq!(b"jobs:1".into_resources()?, "jobs:1".into_resources()?);
/// let names = vec!["ledger".to_string(), "invoices".to_string()];
/// let set: ResourceSet = names.into_resources()?;
/// assert_eq!(set.iter().collect::<Vec<_>>(), [b"invoices".as_slice(), b"ledger"]);
/// assert_eq!("".into_resources(), Err(CommandError::BadResource));
/// assert_eq!(Vec::<String>::new().into_resources(), Err(CommandError::BadResource));
/// # Ok::<(), CommandError>(())
/// ```
pub trait IntoResources {
    /// The normalised set.
    ///
    /// ```
    /// use redlock_core::settings::IntoResources;
    /// assert_eq!(["a", "a"].into_resources().unwrap().len(), 1);
    /// ```
    fn into_resources(self) -> Result<ResourceSet, CommandError>;

    /// Writes the normalised set into `set` instead of returning a new one;
    /// `set` is unchanged on error. For one name only the name's bytes are
    /// written ([`ResourceSet::assign_one`]), where a set returned by value
    /// is a copy of its whole capacity (about 1 KiB): for a set kept in a
    /// reused buffer, as the transports keep theirs.
    ///
    /// ```
    /// use redlock_core::settings::IntoResources;
    /// use redlock_core::{CommandError, ResourceSet};
    ///
    /// let mut set = ResourceSet::one(b"old")?;
    /// "jobs:1".assign_to(&mut set)?;
    /// assert_eq!(set, "jobs:1".into_resources()?);
    /// ["b", "a"].assign_to(&mut set)?;
    /// assert_eq!(set.len(), 2);
    /// assert_eq!("".assign_to(&mut set), Err(CommandError::BadResource));
    /// assert_eq!(set.len(), 2);
    /// # Ok::<(), CommandError>(())
    /// ```
    fn assign_to(self, set: &mut ResourceSet) -> Result<(), CommandError>
    where
        Self: Sized,
    {
        *set = self.into_resources()?;
        Ok(())
    }
}

/// The set of `names`, without allocating for up to [`MAX_RESOURCES`] names.
fn set_of<T: AsRef<[u8]>>(names: &[T]) -> Result<ResourceSet, CommandError> {
    if names.len() <= MAX_RESOURCES {
        let mut refs: heapless::Vec<&[u8], MAX_RESOURCES> = heapless::Vec::new();
        for n in names {
            // Cannot fail: at most MAX_RESOURCES names.
            let _ = refs.push(n.as_ref());
        }
        ResourceSet::new(&refs)
    } else {
        // Repetitions may still bring them within capacity.
        let refs: Vec<&[u8]> = names.iter().map(AsRef::as_ref).collect();
        ResourceSet::new(&refs)
    }
}

impl IntoResources for ResourceSet {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        Ok(self)
    }
}

impl IntoResources for &ResourceSet {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        Ok(self.clone())
    }

    fn assign_to(self, set: &mut ResourceSet) -> Result<(), CommandError> {
        set.clone_from(self);
        Ok(())
    }
}

impl IntoResources for &str {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        ResourceSet::one(self.as_bytes())
    }

    fn assign_to(self, set: &mut ResourceSet) -> Result<(), CommandError> {
        set.assign_one(self.as_bytes())
    }
}

impl IntoResources for String {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        ResourceSet::one(self.as_bytes())
    }

    fn assign_to(self, set: &mut ResourceSet) -> Result<(), CommandError> {
        set.assign_one(self.as_bytes())
    }
}

impl IntoResources for &String {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        ResourceSet::one(self.as_bytes())
    }

    fn assign_to(self, set: &mut ResourceSet) -> Result<(), CommandError> {
        set.assign_one(self.as_bytes())
    }
}

impl IntoResources for &[u8] {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        ResourceSet::one(self)
    }

    fn assign_to(self, set: &mut ResourceSet) -> Result<(), CommandError> {
        set.assign_one(self)
    }
}

impl<const N: usize> IntoResources for &[u8; N] {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        ResourceSet::one(self)
    }

    fn assign_to(self, set: &mut ResourceSet) -> Result<(), CommandError> {
        set.assign_one(self)
    }
}

impl IntoResources for Vec<u8> {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        ResourceSet::one(&self)
    }

    fn assign_to(self, set: &mut ResourceSet) -> Result<(), CommandError> {
        set.assign_one(&self)
    }
}

impl IntoResources for &Vec<u8> {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        ResourceSet::one(self)
    }

    fn assign_to(self, set: &mut ResourceSet) -> Result<(), CommandError> {
        set.assign_one(self)
    }
}

/// Several names by value: `["a", "b"]`, `[b"a".as_slice(), b"b"]`,
/// `[String::from("a")]`.
impl<T: AsRef<[u8]>, const N: usize> IntoResources for [T; N] {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(&self)
    }
}

impl<const N: usize> IntoResources for &[&str; N] {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(self)
    }
}

impl<const N: usize> IntoResources for &[String; N] {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(self)
    }
}

impl IntoResources for &[&str] {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(self)
    }
}

impl IntoResources for &[String] {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(self)
    }
}

impl IntoResources for &[&[u8]] {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(self)
    }
}

impl IntoResources for &[Vec<u8>] {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(self)
    }
}

impl IntoResources for Vec<&str> {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(&self)
    }
}

impl IntoResources for Vec<String> {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(&self)
    }
}

impl IntoResources for Vec<&[u8]> {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(&self)
    }
}

impl IntoResources for Vec<Vec<u8>> {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(&self)
    }
}

impl IntoResources for &Vec<&str> {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(self)
    }
}

impl IntoResources for &Vec<String> {
    fn into_resources(self) -> Result<ResourceSet, CommandError> {
        set_of(self)
    }
}

// ------------------------------------------------------------- lock options

/// The options of one lock call, on top of the client's settings: its TTL,
/// retry policy, how long to wait, and whether it is fenced. Anything not
/// set comes from the client. `Copy`, built with `const fn`s, so a program
/// can keep a few in constants.
///
/// ```
/// use std::time::Duration;
/// use redlock_core::settings::LockOptions;
/// use redlock_core::{Config, Fencing};
///
/// const PATIENT: LockOptions = LockOptions::new().wait(Duration::from_secs(30));
/// let config = Config::new(Duration::from_secs(10));
/// let o = PATIENT.resolve(&config, || 0);
/// assert_eq!(o.ttl, Duration::from_secs(10)); // the client's
/// assert_eq!(o.retry.wait, Some(Duration::from_secs(30)));
/// assert_eq!(o.retry.delay, config.retry.delay); // the client's pauses
/// assert_eq!(o.fencing, Fencing::Off);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LockOptions {
    ttl: Option<Duration>,
    retry: Option<RetryPolicy>,
    wait: Option<Duration>,
    fenced: bool,
}

impl LockOptions {
    /// Everything from the client: its TTL and retry policy, not fenced.
    ///
    /// ```
    /// use redlock_core::settings::LockOptions;
    /// assert_eq!(LockOptions::new(), LockOptions::default());
    /// ```
    pub const fn new() -> LockOptions {
        LockOptions {
            ttl: None,
            retry: None,
            wait: None,
            fenced: false,
        }
    }

    /// The validity asked of each node for this lease (instead of the
    /// client's TTL). Extensions by a keeper use it too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::{settings::LockOptions, Config};
    /// let o = LockOptions::new().ttl(Duration::from_secs(3));
    /// assert_eq!(o.resolve(&Config::default(), || 0).ttl, Duration::from_secs(3));
    /// ```
    pub const fn ttl(mut self, ttl: Duration) -> LockOptions {
        self.ttl = Some(ttl);
        self
    }

    /// The whole retry policy (instead of the client's). A later
    /// [`wait`](Self::wait) or [`single_attempt`](Self::single_attempt)
    /// still replaces its `wait`.
    ///
    /// ```
    /// use redlock_core::{settings::LockOptions, Config, RetryPolicy};
    /// let o = LockOptions::new().retry(RetryPolicy { count: 10, ..RetryPolicy::default() });
    /// assert_eq!(o.resolve(&Config::default(), || 0).retry.count, 10);
    /// ```
    pub const fn retry(mut self, retry: RetryPolicy) -> LockOptions {
        self.retry = Some(retry);
        self
    }

    /// Keep retrying (with the policy's pauses) until `wait` has passed
    /// since the first attempt started, instead of counting attempts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::{settings::LockOptions, Config};
    /// let o = LockOptions::new().wait(Duration::from_secs(5));
    /// assert_eq!(o.resolve(&Config::default(), || 0).retry.wait, Some(Duration::from_secs(5)));
    /// ```
    pub const fn wait(mut self, wait: Duration) -> LockOptions {
        self.wait = Some(wait);
        self
    }

    /// One attempt, no retry (what `try_lock` uses): the same as
    /// `wait(Duration::ZERO)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::{settings::LockOptions, Config};
    /// let o = LockOptions::new().single_attempt().resolve(&Config::default(), || 0);
    /// assert_eq!(o.retry.wait, Some(Duration::ZERO));
    /// ```
    pub const fn single_attempt(self) -> LockOptions {
        self.wait(Duration::ZERO)
    }

    /// A fenced lock: the lease carries a fence, a number that grows with
    /// every grant of its resources (see [`crate::fence`]). The protected
    /// resource must refuse work whose fence is below one it has accepted.
    ///
    /// ```
    /// use redlock_core::{settings::LockOptions, Config, Fencing};
    /// let o = LockOptions::new().fenced().resolve(&Config::default(), || 1_764_000_000_000);
    /// assert_eq!(o.fencing, Fencing::On { unix_ms: 1_764_000_000_000 });
    /// ```
    pub const fn fenced(self) -> LockOptions {
        self.fencing(true)
    }

    /// Fenced or plain, from a flag (e.g. a command-line switch).
    ///
    /// ```
    /// use redlock_core::settings::LockOptions;
    /// assert!(LockOptions::new().fencing(true).is_fenced());
    /// assert!(!LockOptions::new().fenced().fencing(false).is_fenced());
    /// ```
    pub const fn fencing(mut self, on: bool) -> LockOptions {
        self.fenced = on;
        self
    }

    /// Whether the lock is fenced.
    ///
    /// ```
    /// use redlock_core::settings::LockOptions;
    /// assert!(!LockOptions::new().is_fenced());
    /// ```
    pub const fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// The TTL set on these options, if any.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::settings::LockOptions;
    /// assert_eq!(LockOptions::new().ttl_override(), None);
    /// assert_eq!(LockOptions::new().ttl(Duration::from_secs(1)).ttl_override(), Some(Duration::from_secs(1)));
    /// ```
    pub const fn ttl_override(&self) -> Option<Duration> {
        self.ttl
    }

    /// The core's options for one acquire: these options over `config`'s
    /// TTL and retry policy. `unix_ms` (the wall clock, milliseconds since
    /// the Unix epoch) is read only for a fenced lock: it is the hint that
    /// keeps most fenced acquires to one round.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::{settings::LockOptions, Config, Fencing, RetryPolicy};
    /// let config = Config::new(Duration::from_secs(30));
    /// let plain = LockOptions::new().resolve(&config, || unreachable!("not fenced"));
    /// assert_eq!((plain.ttl, plain.retry, plain.fencing), (config.ttl, config.retry, Fencing::Off));
    /// let once = LockOptions::new().retry(RetryPolicy::default()).single_attempt();
    /// assert_eq!(once.resolve(&config, || 0).retry.wait, Some(Duration::ZERO));
    /// ```
    pub fn resolve(&self, config: &Config, unix_ms: impl FnOnce() -> u64) -> AcquireOptions {
        let mut retry = self.retry.unwrap_or(config.retry);
        if let Some(wait) = self.wait {
            retry.wait = Some(wait);
        }
        AcquireOptions {
            ttl: self.ttl.unwrap_or(config.ttl),
            retry,
            fencing: if self.fenced {
                Fencing::On { unix_ms: unix_ms() }
            } else {
                Fencing::Off
            },
        }
    }
}

// ----------------------------------------------------------- client settings

/// An edit of the whole [`Config`], applied when the client is built.
type Edit = Box<dyn FnOnce(&mut Config) + Send>;

/// A client's settings while they are being given: nodes, TTL, node
/// timeout, retry policy, TLS roots. Every setter is infallible; everything
/// is checked once, by [`validate`](Self::validate) (which the transports'
/// `build()` calls), so a chain of setters needs no `?`.
///
/// ```
/// use std::time::Duration;
/// use redlock_core::settings::{ClientSettings, SettingsError};
///
/// let bad = ClientSettings::new().node("127.0.0.1:6379").validate().unwrap_err();
/// assert_eq!(
///     bad.to_string(),
///     "bad node URL 127.0.0.1:6379: no scheme: add redis:// (or rediss:// for TLS) in front, \
///      as in redis://127.0.0.1:6379"
/// );
/// let twice = ClientSettings::new().nodes(["redis://a", "redis://A:6379/2"]).validate();
/// assert!(matches!(twice, Err(SettingsError::DuplicateNode { .. })));
/// ```
pub struct ClientSettings {
    nodes: Vec<String>,
    ttl: Duration,
    node_timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    edits: Vec<Edit>,
    ca_pems: Vec<Vec<u8>>,
    same_server_twice: bool,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|u| redact(u).to_string()).collect();
        f.debug_struct("ClientSettings")
            .field("nodes", &nodes)
            .field("ttl", &self.ttl)
            .field("node_timeout", &self.node_timeout)
            .field("retry", &self.retry)
            .field("edits", &self.edits.len())
            .field("ca_pems", &self.ca_pems.len())
            .field("same_server_twice", &self.same_server_twice)
            .finish()
    }
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings::new()
    }
}

impl ClientSettings {
    /// No nodes, a 30 s TTL, everything else derived from it
    /// ([`Config::new`]).
    ///
    /// ```
    /// use redlock_core::settings::ClientSettings;
    /// assert!(ClientSettings::new().validate().is_err()); // no nodes
    /// ```
    pub fn new() -> ClientSettings {
        ClientSettings {
            nodes: Vec::new(),
            ttl: Config::default().ttl,
            node_timeout: None,
            retry: None,
            edits: Vec::new(),
            ca_pems: Vec::new(),
            same_server_twice: false,
        }
    }

    /// Adds a node: `redis://[[user]:password@]host[:port][/db]`, or
    /// `rediss://` for TLS; IPv6 hosts in brackets. Checked by
    /// [`validate`](Self::validate).
    ///
    /// ```
    /// use redlock_core::settings::ClientSettings;
    /// let v = ClientSettings::new().node("redis://[::1]:6380/2").validate().unwrap();
    /// assert_eq!(v.urls[0].port, 6380);
    /// ```
    pub fn node(mut self, url: impl AsRef<str>) -> ClientSettings {
        self.nodes.push(url.as_ref().to_string());
        self
    }

    /// Adds several nodes, in order.
    ///
    /// ```
    /// use redlock_core::settings::ClientSettings;
    /// let v = ClientSettings::new().nodes(["redis://a", "redis://b", "redis://c"]).validate().unwrap();
    /// assert_eq!(v.nodes.len(), 3);
    /// ```
    pub fn nodes<I, S>(mut self, urls: I) -> ClientSettings
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.nodes
            .extend(urls.into_iter().map(|u| u.as_ref().to_string()));
        self
    }

    /// The validity asked of each node for one lease. The node timeout and
    /// reconnect backoff are derived from it ([`Config::new`]) unless set.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::settings::ClientSettings;
    /// let v = ClientSettings::new().node("redis://a").ttl(Duration::from_secs(2)).validate().unwrap();
    /// assert_eq!(v.config.node_timeout, Duration::from_millis(100)); // 5 % of the TTL
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> ClientSettings {
        self.ttl = ttl;
        self
    }

    /// How long one node may take to answer one request (and to connect).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::settings::ClientSettings;
    /// let v = ClientSettings::new().node("redis://a").node_timeout(Duration::from_millis(50)).validate().unwrap();
    /// assert_eq!(v.config.node_timeout, Duration::from_millis(50));
    /// ```
    pub fn node_timeout(mut self, timeout: Duration) -> ClientSettings {
        self.node_timeout = Some(timeout);
        self
    }

    /// The default retry policy of acquires.
    ///
    /// ```
    /// use redlock_core::{settings::ClientSettings, RetryPolicy};
    /// let v = ClientSettings::new().node("redis://a").retry(RetryPolicy::none()).validate().unwrap();
    /// assert_eq!(v.config.retry, RetryPolicy::none());
    /// ```
    pub fn retry(mut self, retry: RetryPolicy) -> ClientSettings {
        self.retry = Some(retry);
        self
    }

    /// Edits any field of the [`Config`] (drift, reconnect backoff...),
    /// after the TTL, node timeout and retry policy are applied; edits run
    /// in the order given.
    ///
    /// ```
    /// use redlock_core::settings::ClientSettings;
    /// let v = ClientSettings::new().node("redis://a").configure(|c| c.drift_ppm = 20_000).validate().unwrap();
    /// assert_eq!(v.config.drift_ppm, 20_000);
    /// ```
    pub fn configure(mut self, edit: impl FnOnce(&mut Config) + Send + 'static) -> ClientSettings {
        self.edits.push(Box::new(edit));
        self
    }

    /// Trusts an extra CA (PEM, one or more certificates) for `rediss://`
    /// nodes, besides the Mozilla roots. The transport parses it at build.
    ///
    /// ```
    /// use redlock_core::settings::ClientSettings;
    /// let v = ClientSettings::new().node("rediss://a").tls_ca_pem(b"-----BEGIN...").validate().unwrap();
    /// assert_eq!(v.ca_pems.len(), 1);
    /// ```
    pub fn tls_ca_pem(mut self, pem: &[u8]) -> ClientSettings {
        self.ca_pems.push(pem.to_vec());
        self
    }

    /// **Compatibility only**: accepts the same server (host and port)
    /// twice, e.g. two databases of one Redis, as some older Redlock
    /// libraries do. Such nodes are not independent: one crash takes both,
    /// and the lock loses the fault tolerance a quorum is for. Never use it
    /// for new code; it exists for drop-in replacements of those libraries.
    ///
    /// ```
    /// use redlock_core::settings::ClientSettings;
    /// let v = ClientSettings::new().nodes(["redis://h/0", "redis://h/1"])
    ///     .allow_same_server_twice().validate();
    /// assert!(v.is_ok());
    /// ```
    pub fn allow_same_server_twice(mut self) -> ClientSettings {
        self.same_server_twice = true;
        self
    }

    /// Checks everything: every URL parses, no server is given twice
    /// (host as written, case-insensitive, and port, whatever the db or
    /// credentials), at most [`MAX_NODES`] nodes, and a [`Config`] whose
    /// TTL can hold against its drift and node timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_core::{settings::{ClientSettings, SettingsError}, ConfigError};
    /// let short = ClientSettings::new().node("redis://a").ttl(Duration::from_millis(3))
    ///     .node_timeout(Duration::from_millis(10)).validate();
    /// assert!(matches!(short, Err(SettingsError::Config(ConfigError::TtlTooShort))));
    /// ```
    pub fn validate(self) -> Result<ValidSettings, SettingsError> {
        if self.nodes.is_empty() {
            return Err(SettingsError::Config(ConfigError::NoNodes));
        }
        let mut urls: Vec<NodeUrl> = Vec::with_capacity(self.nodes.len());
        for given in &self.nodes {
            let url = NodeUrl::parse(given).map_err(|error| SettingsError::Url {
                url: redact(given).to_string(),
                error,
            })?;
            if !self.same_server_twice {
                if let Some(first) = urls.iter().find(|u| same_server(u, &url)) {
                    return Err(SettingsError::DuplicateNode {
                        first: first.to_string(),
                        second: url.to_string(),
                    });
                }
            }
            urls.push(url);
        }
        if urls.len() > MAX_NODES {
            return Err(SettingsError::Config(ConfigError::TooManyNodes));
        }
        let mut config = Config::new(self.ttl);
        if let Some(t) = self.node_timeout {
            config.node_timeout = t;
        }
        if let Some(r) = self.retry {
            config.retry = r;
        }
        for edit in self.edits {
            edit(&mut config);
        }
        config.validate().map_err(SettingsError::Config)?;
        let nodes = urls.iter().map(NodeUrl::node_config).collect();
        Ok(ValidSettings {
            urls,
            nodes,
            config,
            ca_pems: self.ca_pems,
        })
    }
}

/// Two URLs for one server: host as written (case-insensitive) and port.
fn same_server(a: &NodeUrl, b: &NodeUrl) -> bool {
    a.host.eq_ignore_ascii_case(&b.host) && a.port == b.port
}

/// Settings that passed [`ClientSettings::validate`]: what a transport
/// needs to start a client.
///
/// ```
/// use redlock_core::settings::ClientSettings;
/// let v = ClientSettings::new().node("redis://:pw@a").validate().unwrap();
/// assert_eq!(v.redacted_urls(), ["redis://:***@a:6379"]);
/// assert!(v.nodes[0].auth.is_some());
/// assert!(!v.any_tls());
/// ```
#[derive(Debug, Clone)]
pub struct ValidSettings {
    /// The nodes, parsed, in the order given.
    pub urls: Vec<NodeUrl>,
    /// Each node's handshake (credentials, db), in the same order.
    pub nodes: Vec<NodeConfig>,
    /// The timing rules, validated.
    pub config: Config,
    /// Extra trusted CAs for `rediss://` nodes (PEM), as given.
    pub ca_pems: Vec<Vec<u8>>,
}

impl ValidSettings {
    /// The nodes' URLs with passwords replaced by `***`, for messages.
    ///
    /// ```
    /// use redlock_core::settings::ClientSettings;
    /// let v = ClientSettings::new().node("redis://u:secret@h:7000/1").validate().unwrap();
    /// assert_eq!(v.redacted_urls(), ["redis://u:***@h:7000/1"]);
    /// ```
    pub fn redacted_urls(&self) -> Vec<String> {
        self.urls.iter().map(ToString::to_string).collect()
    }

    /// Whether any node uses TLS (`rediss://`).
    ///
    /// ```
    /// use redlock_core::settings::ClientSettings;
    /// let v = ClientSettings::new().nodes(["redis://a", "rediss://b"]).validate().unwrap();
    /// assert!(v.any_tls());
    /// ```
    pub fn any_tls(&self) -> bool {
        self.urls.iter().any(|u| u.tls)
    }
}

/// Why a client's settings were refused. `Display` shows a bad URL as given
/// but with anything that may be a password masked, and says how to fix it.
///
/// ```
/// use redlock_core::settings::ClientSettings;
/// let e = ClientSettings::new().node("redis://u:hunter2@h?protocol=resp3").validate().unwrap_err();
/// let text = e.to_string();
/// assert!(!text.contains("hunter2"));
/// assert!(text.contains("unknown query parameter \"protocol\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsError {
    /// A node URL does not parse.
    Url {
        /// The URL as given, anything that may be a password masked.
        url: String,
        /// What is wrong with it.
        error: UrlError,
    },
    /// The same server is given twice (host and port, whatever the db or
    /// credentials): two dbs of one server are not independent nodes.
    DuplicateNode {
        /// The first URL naming the server (password redacted).
        first: String,
        /// The second one.
        second: String,
    },
    /// The timing rules or the node count are invalid.
    Config(ConfigError),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Url { url, error } => write_url_error(f, url, *error),
            SettingsError::DuplicateNode { first, second } => write_duplicate(f, first, second),
            SettingsError::Config(e) => write!(f, "bad configuration: {e}"),
        }
    }
}

impl core::error::Error for SettingsError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SettingsError::Url { error, .. } => Some(error),
            SettingsError::Config(e) => Some(e),
            SettingsError::DuplicateNode { .. } => None,
        }
    }
}

/// `bad node URL {url}: {why, with a hint}`, for [`SettingsError::Url`] and
/// the transports' errors of the same meaning. `url` must already be
/// redacted ([`redact`]).
///
/// ```
/// use redlock_core::{settings::write_url_error, url::UrlError};
/// struct Show;
/// impl std::fmt::Display for Show {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write_url_error(f, "http://x", UrlError::Scheme)
///     }
/// }
/// assert_eq!(Show.to_string(), "bad node URL http://x: scheme must be redis:// or rediss://");
/// ```
pub fn write_url_error(f: &mut fmt::Formatter<'_>, url: &str, error: UrlError) -> fmt::Result {
    write!(f, "bad node URL {url}: {}", explain(url, error))
}

/// The message for [`SettingsError::DuplicateNode`] (and the transports'
/// errors of the same meaning).
///
/// ```
/// use redlock_core::settings::write_duplicate;
/// struct Show;
/// impl std::fmt::Display for Show {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write_duplicate(f, "redis://a:6379", "redis://a:6379/1")
///     }
/// }
/// assert!(Show.to_string().starts_with("the same server is given twice: redis://a:6379 and redis://a:6379/1"));
/// ```
pub fn write_duplicate(f: &mut fmt::Formatter<'_>, first: &str, second: &str) -> fmt::Result {
    write!(
        f,
        "the same server is given twice: {first} and {second}; two dbs or logins of one \
         server are not independent nodes, give each server once"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// One way of writing names into a set.
    type Assign<'a> = &'a dyn Fn(&mut ResourceSet) -> Result<(), CommandError>;

    #[test]
    fn every_shape_of_names_assigns_in_place_and_leaves_the_set_on_error() {
        let want = ResourceSet::one(b"jobs:1").unwrap();
        let other = ResourceSet::new(&[b"x".as_slice(), b"y"]).unwrap();
        let name = String::from("jobs:1");
        let bytes = b"jobs:1".to_vec();
        let check = |assign: Assign<'_>| {
            let mut set = other.clone();
            assign(&mut set).unwrap();
            assert_eq!(set, want);
        };
        check(&|s| "jobs:1".assign_to(s));
        check(&|s| name.clone().assign_to(s));
        check(&|s| (&name).assign_to(s));
        check(&|s| b"jobs:1".as_slice().assign_to(s));
        check(&|s| b"jobs:1".assign_to(s));
        check(&|s| bytes.clone().assign_to(s));
        check(&|s| (&bytes).assign_to(s));
        check(&|s| (&want).assign_to(s));
        check(&|s| want.clone().assign_to(s));
        check(&|s| ["jobs:1", "jobs:1"].assign_to(s));
        let empty = String::new();
        let bad: [Assign<'_>; 7] = [
            &|s| "".assign_to(s),
            &|s| empty.clone().assign_to(s),
            &|s| (&empty).assign_to(s),
            &|s| b"".as_slice().assign_to(s),
            &|s| Vec::<u8>::new().assign_to(s),
            &|s| (&Vec::<u8>::new()).assign_to(s),
            &|s| Vec::<&str>::new().assign_to(s),
        ];
        for assign in bad {
            let mut set = other.clone();
            assert_eq!(assign(&mut set), Err(CommandError::BadResource));
            assert_eq!(set, other, "a failed assignment changed the set");
        }
    }

    #[test]
    fn every_shape_of_names_gives_the_same_set() {
        let want = ResourceSet::new(&[b"a".as_slice(), b"b"]).unwrap();
        let strings = vec![String::from("b"), String::from("a")];
        let bytes = vec![b"a".to_vec(), b"b".to_vec()];
        assert_eq!(["b", "a"].into_resources().unwrap(), want);
        assert_eq!((&["b", "a", "b"]).into_resources().unwrap(), want);
        assert_eq!((&strings[..]).into_resources().unwrap(), want);
        assert_eq!((&strings).into_resources().unwrap(), want);
        assert_eq!(strings.clone().into_resources().unwrap(), want);
        assert_eq!((&bytes[..]).into_resources().unwrap(), want);
        assert_eq!(bytes.into_resources().unwrap(), want);
        assert_eq!(vec!["a", "b"].into_resources().unwrap(), want);
        assert_eq!([b"b".as_slice(), b"a"].into_resources().unwrap(), want);
        assert_eq!((&want).into_resources().unwrap(), want);
    }

    #[test]
    fn many_repeated_names_fit_when_few_are_distinct() {
        let names: Vec<&str> = (0..40).map(|i| ["x", "y"][i % 2]).collect();
        assert_eq!(names.into_resources().unwrap().len(), 2);
        let distinct: Vec<String> = (0..9).map(|i| alloc::format!("r{i}")).collect();
        assert_eq!(distinct.into_resources(), Err(CommandError::BadResource));
    }

    #[test]
    fn configure_runs_after_the_ttl_and_in_order() {
        let v = ClientSettings::new()
            .node("redis://a")
            .configure(|c| c.node_timeout = Duration::from_millis(7))
            .ttl(Duration::from_secs(3))
            .configure(|c| c.drift_ppm = c.node_timeout.as_millis() as u32)
            .validate()
            .unwrap();
        assert_eq!(v.config.ttl, Duration::from_secs(3));
        assert_eq!(v.config.node_timeout, Duration::from_millis(7));
        assert_eq!(v.config.drift_ppm, 7);
    }

    #[test]
    fn duplicates_are_found_whatever_db_credentials_or_case() {
        for (a, b) in [
            ("redis://h", "redis://h:6379"),
            ("redis://H:7000/1", "redis://u:p@h:7000/2"),
            ("redis://[::1]:7000", "rediss://[::1]:7000"),
        ] {
            let e = ClientSettings::new().nodes([a, b]).validate().unwrap_err();
            assert!(matches!(e, SettingsError::DuplicateNode { .. }), "{a} {b}");
            assert!(!e.to_string().contains(":p@"), "{e}");
        }
        assert!(ClientSettings::new()
            .nodes(["redis://h:1", "redis://h:2", "redis://g:1"])
            .validate()
            .is_ok());
    }

    #[test]
    fn limits() {
        let many: Vec<String> = (0..=MAX_NODES)
            .map(|i| alloc::format!("redis://h{i}"))
            .collect();
        assert_eq!(
            ClientSettings::new().nodes(&many).validate().unwrap_err(),
            SettingsError::Config(ConfigError::TooManyNodes)
        );
        let e = ClientSettings::new()
            .node("redis://:hunter2@h:99999")
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad node URL redis://***@h:99999: port must be a number from 1 to 65535"
        );
    }
}
