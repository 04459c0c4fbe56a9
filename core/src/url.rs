//! Node URLs: `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS.
//!
//! Parsing is pure, so it lives here and every transport and the CLI share
//! it. Userinfo may be percent-encoded (`%40` for `@`). IPv6 hosts are
//! written in brackets (`redis://[::1]:6380`). The [`Display`](core::fmt::Display)
//! form never shows the password.

use core::fmt;

use crate::config::{Auth, NodeConfig, MAX_PASSWORD_LEN, MAX_USERNAME_LEN};

/// Longest host name accepted.
pub const MAX_HOST_LEN: usize = 255;

/// A parsed node URL.
///
/// ```
/// use redlock_core::url::NodeUrl;
/// let u = NodeUrl::parse("redis://app:p%40ss@[::1]:6380/2").unwrap();
/// assert_eq!((u.host.as_str(), u.port, u.db, u.tls), ("::1", 6380, 2, false));
/// assert_eq!(u.username.as_deref(), Some("app"));
/// assert_eq!(u.password.as_deref(), Some("p@ss"));
/// assert_eq!(u.to_string(), "redis://app:***@[::1]:6380/2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct NodeUrl {
    /// `rediss://`: connect with TLS.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: heapless::String<MAX_HOST_LEN>,
    /// TCP port (default 6379).
    pub port: u16,
    /// ACL username, if given.
    pub username: Option<heapless::String<MAX_USERNAME_LEN>>,
    /// Password, if given.
    pub password: Option<heapless::String<MAX_PASSWORD_LEN>>,
    /// Database index (default 0).
    pub db: u16,
}

/// Why a URL was refused.
///
/// ```
/// use redlock_core::url::{NodeUrl, UrlError};
/// assert_eq!(NodeUrl::parse("http://x"), Err(UrlError::Scheme));
/// assert_eq!(NodeUrl::parse("127.0.0.1:6379"), Err(UrlError::NoScheme));
/// assert_eq!(NodeUrl::parse("redis://h?protocol=resp3"), Err(UrlError::Query));
/// assert_eq!(NodeUrl::parse("redis://h:99999"), Err(UrlError::Port));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// A scheme other than `redis://` or `rediss://`.
    Scheme,
    /// No scheme at all (`127.0.0.1:6379`): `redis://` must be added.
    NoScheme,
    /// A query string or fragment (`?protocol=resp3`): no parameter is
    /// supported; [`query_parameters`] names the ones given.
    Query,
    /// Missing or malformed host.
    Host,
    /// Port not a number in 1..=65535.
    Port,
    /// Database not a number in 0..=65535.
    Db,
    /// Bad percent-encoding, or userinfo too long.
    UserInfo,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::Scheme => "scheme must be redis:// or rediss://",
            UrlError::NoScheme => "no scheme: add redis:// (or rediss:// for TLS) in front",
            UrlError::Query => "query parameters (?...) and fragments (#...) are not supported",
            UrlError::Host => "missing or malformed host",
            UrlError::Port => "port must be a number from 1 to 65535",
            UrlError::Db => "database must be a number from 0 to 65535",
            UrlError::UserInfo => "malformed or too long user/password",
        })
    }
}

impl core::error::Error for UrlError {}

impl NodeUrl {
    /// Parses a node URL.
    ///
    /// ```
    /// # use redlock_core::url::NodeUrl;
    /// let u = NodeUrl::parse("rediss://:secret@cache.local").unwrap();
    /// assert!(u.tls);
    /// assert_eq!(u.port, 6379);
    /// assert_eq!(u.username, None);
    /// assert_eq!(u.password.as_deref(), Some("secret"));
    /// ```
    pub fn parse(s: &str) -> Result<NodeUrl, UrlError> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("rediss://") {
            (true, r)
        } else if s.contains("://") {
            return Err(UrlError::Scheme);
        } else {
            return Err(UrlError::NoScheme);
        };
        // Authority ends at the first '/', '?' or '#'.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (mut username, mut password) = (None, None);
        if let Some(ui) = userinfo {
            let (u, p) = match ui.find(':') {
                Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                None => (ui, None),
            };
            match p {
                // "user:pass" or ":pass"
                Some(p) => {
                    if !u.is_empty() {
                        username = Some(decode(u)?);
                    }
                    password = Some(decode(p)?);
                }
                // "pass@host" is read as a password, as redis-cli and most clients do.
                None => password = Some(decode(u)?),
            }
        }
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let close = h.find(']').ok_or(UrlError::Host)?;
            let host = &h[..close];
            let after = &h[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(UrlError::Host),
            };
            if host.is_empty() || !host.contains(':') {
                return Err(UrlError::Host);
            }
            (host, port)
        } else {
            match hostport.rfind(':') {
                Some(i) => (&hostport[..i], Some(&hostport[i + 1..])),
                None => (hostport, None),
            }
        };
        if host.is_empty()
            || host.contains(['[', ']', '@', ' '])
            || (!hostport.starts_with('[') && host.contains(':'))
        {
            return Err(UrlError::Host);
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(UrlError::Port),
                Ok(p) => p,
            },
            None => 6379,
        };
        // No query parameter or fragment is supported: refuse them rather
        // than ignore them (`?protocol=resp3` would silently mean RESP2).
        if path.contains(['?', '#']) {
            return Err(UrlError::Query);
        }
        let db = match path.strip_prefix('/') {
            Some("") | None => 0,
            Some(d) => d.parse::<u16>().map_err(|_| UrlError::Db)?,
        };
        Ok(NodeUrl {
            tls,
            host: heapless::String::try_from(host).map_err(|_| UrlError::Host)?,
            port,
            username,
            password,
            db,
        })
    }

    /// The core's view of this node: credentials and database.
    ///
    /// ```
    /// # use redlock_core::url::NodeUrl;
    /// let c = NodeUrl::parse("redis://u:p@h/3").unwrap().node_config();
    /// assert_eq!(c.db, 3);
    /// assert_eq!(c.auth.unwrap().username(), Some("u"));
    /// ```
    pub fn node_config(&self) -> NodeConfig {
        let auth = self
            .password
            .as_ref()
            .and_then(|p| Auth::new(self.username.as_deref(), p).ok());
        NodeConfig { auth, db: self.db }
    }
}

/// A URL that may not parse, shown as given but without anything that
/// could be a password: everything between the scheme and the *last* `@`
/// becomes `***` (a password may itself contain `@`, `/` or `:`), and so
/// does every query value (`?password=***`). A scheme-less string is shown
/// as given when it reads as `host:port` (`127.0.0.1:6379`); one with a `:`
/// that does not (perhaps `user:password` typed alone) is hidden entirely.
/// For URLs that parse, prefer [`NodeUrl`]'s `Display`.
///
/// ```
/// use redlock_core::url::redact;
/// assert_eq!(redact("redis://u:hunter2@h:0").to_string(), "redis://***@h:0");
/// assert_eq!(redact("redis://u:p/w@h").to_string(), "redis://***@h");
/// assert_eq!(redact("pw@h").to_string(), "***@h");
/// assert_eq!(redact("user:hunter2").to_string(), "***");
/// assert_eq!(redact("127.0.0.1:6379").to_string(), "127.0.0.1:6379");
/// assert_eq!(redact("redis://h:99999").to_string(), "redis://h:99999");
/// assert_eq!(redact("redis://h?protocol=resp3&x").to_string(), "redis://h?protocol=***&x");
/// assert_eq!(redact("u:pw@x://h").to_string(), "***@x://h");
/// ```
pub fn redact(url: &str) -> Redacted<'_> {
    Redacted(url)
}

/// See [`redact`].
#[derive(Clone, Copy, Debug)]
pub struct Redacted<'a>(&'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        // A scheme is letters, digits, `+`, `-`, `.`: in "u:pw@x://h" the
        // text before "://" is userinfo, not a scheme.
        let (scheme, rest) = match url.find("://") {
            Some(i)
                if url[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
            {
                (&url[..i + 3], &url[i + 3..])
            }
            _ => ("", url),
        };
        let tail = match rest.rfind('@') {
            Some(at) => {
                write!(f, "{scheme}***")?;
                &rest[at..]
            }
            None if scheme.is_empty() && rest.contains(':') && !is_host_port(rest) => {
                return f.write_str("***");
            }
            None => {
                f.write_str(scheme)?;
                rest
            }
        };
        // Query values and fragments may hold anything: mask them.
        let Some(q) = tail.find(['?', '#']) else {
            return f.write_str(tail);
        };
        f.write_str(&tail[..q])?;
        let (query, fragment) = match tail[q..].find('#') {
            Some(h) => (&tail[q..q + h], Some(&tail[q + h + 1..])),
            None => (&tail[q..], None),
        };
        if let Some(query) = query.strip_prefix('?') {
            f.write_str("?")?;
            for (i, param) in query.split('&').enumerate() {
                if i > 0 {
                    f.write_str("&")?;
                }
                match param.split_once('=') {
                    Some((name, _)) => write!(f, "{name}=***")?,
                    None => f.write_str(param)?,
                }
            }
        }
        match fragment {
            Some("") => f.write_str("#"),
            Some(_) => f.write_str("#***"),
            None => Ok(()),
        }
    }
}

/// Whether a scheme-less string reads as `host:port[/db]` (so it can be
/// shown as given: no password in it).
fn is_host_port(s: &str) -> bool {
    let end = s.find(['/', '?', '#']).unwrap_or(s.len());
    let hostport = &s[..end];
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        match h.split_once("]:") {
            Some((host, port)) => (host, port),
            None => return h.ends_with(']'),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, port),
            _ => return false,
        }
    };
    !host.is_empty()
        && !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
}

/// The names of the query parameters of `url` (never their values), for
/// messages about [`UrlError::Query`]: only the text after the last `@` is
/// looked at, so no part of a password is ever returned.
///
/// ```
/// use redlock_core::url::query_parameters;
/// let names: Vec<&str> = query_parameters("redis://h/0?protocol=resp3&x#f").collect();
/// assert_eq!(names, ["protocol", "x"]);
/// assert_eq!(query_parameters("redis://:pa?ss@h").count(), 0);
/// ```
pub fn query_parameters(url: &str) -> impl Iterator<Item = &str> + '_ {
    let after_auth = url.rfind('@').map_or(url, |at| &url[at + 1..]);
    let query = after_auth.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .map(|p| p.split('=').next().unwrap_or(""))
        .filter(|name| !name.is_empty())
}

/// Why `url` was refused, for a person: the [`UrlError`] plus what can be
/// said without showing a password (the query parameters' names, the
/// missing scheme).
///
/// ```
/// use redlock_core::url::{explain, NodeUrl};
/// let url = "redis://h?protocol=resp3";
/// let e = NodeUrl::parse(url).unwrap_err();
/// assert_eq!(
///     explain(url, e).to_string(),
///     "unknown query parameter \"protocol\": query parameters (?...) and fragments (#...) \
///      are not supported (write ? and # in a password as %3F and %23)"
/// );
/// let e = NodeUrl::parse("10.0.0.1:6379").unwrap_err();
/// assert_eq!(explain("10.0.0.1:6379", e).to_string(), "no scheme: add redis:// (or rediss:// for TLS) in front, as in redis://10.0.0.1:6379");
/// ```
pub fn explain(url: &str, error: UrlError) -> Explained<'_> {
    Explained { url, error }
}

/// See [`explain`].
#[derive(Clone, Copy, Debug)]
pub struct Explained<'a> {
    url: &'a str,
    error: UrlError,
}

impl fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error {
            UrlError::Query => {
                let mut names = query_parameters(self.url).peekable();
                if names.peek().is_some() {
                    for (n, name) in names.enumerate() {
                        f.write_str(if n == 0 {
                            "unknown query parameter "
                        } else {
                            ", "
                        })?;
                        write!(f, "{name:?}")?;
                    }
                    f.write_str(": ")?;
                }
                write!(
                    f,
                    "{} (write ? and # in a password as %3F and %23)",
                    self.error
                )
            }
            UrlError::NoScheme => {
                write!(f, "{}", self.error)?;
                // Show the suggestion only when it is the input as given.
                if !self.url.contains('@') && is_host_port(self.url) {
                    write!(f, ", as in redis://{}", self.url)?;
                }
                Ok(())
            }
            e => write!(f, "{e}"),
        }
    }
}

fn decode<const N: usize>(s: &str) -> Result<heapless::String<N>, UrlError> {
    let mut out: heapless::Vec<u8, N> = heapless::Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(UrlError::UserInfo)?;
            let hex = core::str::from_utf8(hex).map_err(|_| UrlError::UserInfo)?;
            i += 3;
            u8::from_str_radix(hex, 16).map_err(|_| UrlError::UserInfo)?
        } else {
            i += 1;
            b[i - 1]
        };
        out.push(c).map_err(|_| UrlError::UserInfo)?;
    }
    heapless::String::from_utf8(out).map_err(|_| UrlError::UserInfo)
}

impl fmt::Display for NodeUrl {
    /// The URL with the password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        match (&self.username, &self.password) {
            (Some(u), Some(_)) => write!(f, "{u}:***@")?,
            (None, Some(_)) => f.write_str(":***@")?,
            (Some(u), None) => write!(f, "{u}@")?,
            (None, None) => {}
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let u = NodeUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6379, 0));
        let u = NodeUrl::parse("redis://h:7000/").unwrap();
        assert_eq!((u.port, u.db), (7000, 0));
        let u = NodeUrl::parse("redis://user:@h").unwrap();
        assert_eq!(u.password.as_deref(), Some(""));
        let u = NodeUrl::parse("redis://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 6379));
        let u = NodeUrl::parse("redis://pw@h").unwrap();
        assert_eq!(u.password.as_deref(), Some("pw"));
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "",
            "redis://",
            "redis://:6379",
            "redis://h:0",
            "redis://h:x",
            "redis://h/x",
            "redis://h/70000",
            "redis://[::1",
            "redis://[::1]x",
            "redis://::1",
            "redis://u:%zz@h",
            "redis://h?x",
            "redis://a b",
            "redis://[]:1",
            "redis://h/0?protocol=resp3",
            "redis://h#x",
        ] {
            assert!(NodeUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(NodeUrl::parse("h:6379"), Err(UrlError::NoScheme));
        assert_eq!(NodeUrl::parse("ftp://h"), Err(UrlError::Scheme));
        assert_eq!(NodeUrl::parse("redis://h?x"), Err(UrlError::Query));
        assert_eq!(NodeUrl::parse("redis://h/1?x=1"), Err(UrlError::Query));
    }

    #[test]
    fn redact_hides_anything_that_may_be_a_password() {
        use alloc::string::ToString;
        let r = |u: &str| redact(u).to_string();
        assert_eq!(r("redis://u:pw@h:0"), "redis://***@h:0");
        assert_eq!(r("pw@h"), "***@h");
        assert_eq!(r("redis://h:0"), "redis://h:0");
        assert_eq!(r("redis://a@b@h"), "redis://***@h");
        assert_eq!(r("u:pw@x://h"), "***@x://h");
        assert_eq!(r("http://:pw@x/1"), "http://***@x/1");
        assert!(!r("user:hunter2").contains("hunter2"));
        assert_eq!(r("127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(r("[::1]:6379/2"), "[::1]:6379/2");
        assert_eq!(r("user:hunter2x"), "***");
        assert_eq!(r("redis://h?password=hunter2"), "redis://h?password=***");
        assert_eq!(r("redis://h/0#hunter2"), "redis://h/0#***");
        assert_eq!(r("redis://:pa?ss@h?x=1"), "redis://***@h?x=***");
        assert!(!r("redis://a:b@c@d").contains('b'));
    }

    #[test]
    fn display_never_shows_password() {
        let u = NodeUrl::parse("redis://u:hunter2@h").unwrap();
        assert!(!u.to_string().contains("hunter2"));
        assert!(!alloc_free_debug(&u).contains("hunter2"));
    }

    fn alloc_free_debug(u: &NodeUrl) -> heapless::String<512> {
        use core::fmt::Write;
        let mut s = heapless::String::new();
        let _ = write!(s, "{u:?}");
        s
    }
}
