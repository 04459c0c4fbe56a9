//! A simulated Redis node: the subset of Redis that Redlock relies on.
//!
//! The model is deliberately small, and each piece is there because the
//! algorithm's safety depends on it:
//! * keys with an expiry on the node's **own** clock, in whole milliseconds,
//!   with Redis's rule that a key is gone once `now > expire_at`;
//! * `SET key value [NX|XX] [PX ms|EX s]`, `GET`, `DEL`, `EXISTS`, `PTTL`,
//!   `TTL`, `PEXPIRE`, `DBSIZE`, `FLUSHALL`/`FLUSHDB`;
//! * the release and extend scripts of `redlock_core` (by `EVAL` and by
//!   `EVALSHA`), `SCRIPT LOAD`/`EXISTS`/`FLUSH`; `EVALSHA` of a script not in
//!   the cache answers `NOSCRIPT`, and the cache is lost on restart;
//! * `AUTH` (with `requirepass`), `SELECT` (16 databases), `PING`.
//!
//! Requests are parsed with `redis-protocol` (RESP2 arrays; inline commands
//! are accepted as Redis does), replies are encoded with it. A protocol
//! error answers `-ERR Protocol error` and asks for the connection to be
//! closed, as Redis does. The model is checked against a real
//! `redis-server` by the differential test in `tests/tests/sim_differential.rs`.
//!
//! Scripts other than Redlock's two cannot be run (there is no Lua here):
//! they load and are found by `SCRIPT EXISTS`, but running one answers an
//! error.

use std::collections::BTreeMap;

use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, RangeFrame};
use redlock_core::{EXTEND_SCRIPT, EXTEND_SHA, RELEASE_SCRIPT, RELEASE_SHA};

/// Number of logical databases (`SELECT 0..16`).
const DATABASES: usize = 16;
/// An unfinished request larger than this is a protocol error.
const MAX_PENDING: usize = 1 << 20;
/// More arguments than this in one request is a protocol error.
const MAX_ARGS: usize = 1024;

/// Whether the connection stays open after [`SimNode::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// Keep reading.
    Open,
    /// The node answered a protocol error and closes the connection.
    Close,
}

#[derive(Clone, Debug)]
struct Value {
    data: Vec<u8>,
    /// Expiry on the node clock, in ms; `None` = persistent.
    expire_at: Option<u64>,
}

#[derive(Clone, Debug, Default)]
struct Conn {
    pending: Vec<u8>,
    authed: bool,
    db: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScriptKind {
    Release,
    Extend,
    Unknown,
}

/// A simulated Redis node. See the [module docs](self).
///
/// ```
/// use redlock_sim::node::SimNode;
///
/// let mut node = SimNode::new();
/// let set = b"*6\r\n$3\r\nSET\r\n$1\r\nr\r\n$3\r\ntok\r\n$2\r\nNX\r\n$2\r\nPX\r\n$3\r\n100\r\n";
/// assert_eq!(node.reply(0, set), b"+OK\r\n");
/// assert_eq!(node.reply(50, set), b"$-1\r\n"); // held
/// assert_eq!(node.reply(101, set), b"+OK\r\n"); // expired at 100 ms on the node's clock
/// ```
#[derive(Clone, Debug)]
pub struct SimNode {
    dbs: Vec<BTreeMap<Vec<u8>, Value>>,
    scripts: BTreeMap<String, ScriptKind>,
    conns: BTreeMap<u64, Conn>,
    requirepass: Option<String>,
    commands: u64,
}

impl Default for SimNode {
    fn default() -> Self {
        SimNode::new()
    }
}

impl SimNode {
    /// An empty node without a password.
    ///
    /// ```
    /// let node = redlock_sim::node::SimNode::new();
    /// assert_eq!(node.commands(), 0);
    /// ```
    pub fn new() -> SimNode {
        SimNode {
            dbs: vec![BTreeMap::new(); DATABASES],
            scripts: BTreeMap::new(),
            conns: BTreeMap::new(),
            requirepass: None,
            commands: 0,
        }
    }

    /// An empty node that requires `AUTH password` (`requirepass`).
    ///
    /// ```
    /// let mut node = redlock_sim::node::SimNode::with_password("s3cret");
    /// assert!(node.reply(0, b"*1\r\n$4\r\nPING\r\n").starts_with(b"-NOAUTH"));
    /// ```
    pub fn with_password(password: &str) -> SimNode {
        SimNode {
            requirepass: Some(password.to_string()),
            ..SimNode::new()
        }
    }

    /// Commands executed so far.
    ///
    /// ```
    /// let mut node = redlock_sim::node::SimNode::new();
    /// node.reply(0, b"*1\r\n$4\r\nPING\r\n");
    /// assert_eq!(node.commands(), 1);
    /// ```
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// Bytes arrived on connection `conn` at node-clock time `now_ms`:
    /// executes every complete request and appends the replies to `out`.
    /// Incomplete requests wait for more bytes.
    ///
    /// ```
    /// use redlock_sim::node::{Feed, SimNode};
    /// let mut node = SimNode::new();
    /// let mut out = Vec::new();
    /// assert_eq!(node.feed(1, 0, b"*1\r\n$4\r\nPI", &mut out), Feed::Open);
    /// assert!(out.is_empty());
    /// node.feed(1, 0, b"NG\r\n", &mut out);
    /// assert_eq!(out, b"+PONG\r\n");
    /// ```
    pub fn feed(&mut self, conn: u64, now_ms: u64, input: &[u8], out: &mut Vec<u8>) -> Feed {
        let mut c = self.conns.remove(&conn).unwrap_or_default();
        let mut pending = std::mem::take(&mut c.pending);
        pending.extend_from_slice(input);
        let mut consumed = 0;
        let mut result = Feed::Open;
        loop {
            let buf = &pending[consumed..];
            if buf.is_empty() {
                break;
            }
            match parse_request(buf) {
                Ok(Some((args, used))) => {
                    let argv: Vec<&[u8]> = args.iter().map(|&(s, e)| &buf[s..e]).collect();
                    if !argv.is_empty() {
                        self.execute(&mut c, now_ms, &argv, out);
                    }
                    consumed += used;
                }
                Ok(None) => {
                    if buf.len() > MAX_PENDING {
                        error(out, "ERR Protocol error: too big request");
                        result = Feed::Close;
                    }
                    break;
                }
                Err(msg) => {
                    error(out, msg);
                    result = Feed::Close;
                    break;
                }
            }
        }
        if result == Feed::Open {
            pending.drain(..consumed);
            c.pending = pending;
            self.conns.insert(conn, c);
        }
        result
    }

    /// Convenience for tests: feeds `request` on connection 0 at `now_ms`
    /// and returns the reply bytes.
    ///
    /// ```
    /// let mut node = redlock_sim::node::SimNode::new();
    /// assert_eq!(node.reply(0, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), b"$-1\r\n");
    /// ```
    pub fn reply(&mut self, now_ms: u64, request: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.feed(0, now_ms, request, &mut out) == Feed::Close {
            self.close(0);
        }
        out
    }

    /// Forgets connection `conn` (closed or reset).
    ///
    /// ```
    /// let mut node = redlock_sim::node::SimNode::new();
    /// node.close(3);
    /// ```
    pub fn close(&mut self, conn: u64) {
        self.conns.remove(&conn);
    }

    /// The process restarts: connections and the script cache are lost;
    /// keys survive only with `persistent` (as with `appendfsync always`).
    ///
    /// ```
    /// let mut node = redlock_sim::node::SimNode::new();
    /// node.reply(0, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
    /// node.restart(false);
    /// assert_eq!(node.key_count(0), 0);
    /// ```
    pub fn restart(&mut self, persistent: bool) {
        self.conns.clear();
        self.scripts.clear();
        if !persistent {
            for db in &mut self.dbs {
                db.clear();
            }
        }
    }

    /// `SCRIPT FLUSH`, as an operator (or a failover) might do.
    ///
    /// ```
    /// let mut node = redlock_sim::node::SimNode::new();
    /// node.flush_scripts();
    /// ```
    pub fn flush_scripts(&mut self) {
        self.scripts.clear();
    }

    /// Live keys in all databases at node time `now_ms`.
    ///
    /// ```
    /// let node = redlock_sim::node::SimNode::new();
    /// assert_eq!(node.key_count(0), 0);
    /// ```
    pub fn key_count(&self, now_ms: u64) -> usize {
        self.dbs
            .iter()
            .map(|db| db.values().filter(|v| !expired(v, now_ms)).count())
            .sum()
    }

    /// The live value of `key` in database 0 at `now_ms`, if any.
    ///
    /// ```
    /// let node = redlock_sim::node::SimNode::new();
    /// assert_eq!(node.get(0, b"k"), None);
    /// ```
    pub fn get(&self, now_ms: u64, key: &[u8]) -> Option<&[u8]> {
        self.dbs[0]
            .get(key)
            .filter(|v| !expired(v, now_ms))
            .map(|v| v.data.as_slice())
    }

    /// The stored value of `key` in database 0 and its expiry (node clock,
    /// ms; `None` = persistent), whether or not it has expired yet (an
    /// expired key stays stored until something looks it up).
    ///
    /// ```
    /// let mut node = redlock_sim::node::SimNode::new();
    /// node.reply(0, b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$2\r\n10\r\n");
    /// assert_eq!(node.entry(b"k"), Some((b"v".as_slice(), Some(10))));
    /// assert_eq!(node.get(11, b"k"), None);
    /// ```
    pub fn entry(&self, key: &[u8]) -> Option<(&[u8], Option<u64>)> {
        self.dbs[0]
            .get(key)
            .map(|v| (v.data.as_slice(), v.expire_at))
    }

    fn lookup(&mut self, db: usize, now_ms: u64, key: &[u8]) -> Option<&mut Value> {
        let map = &mut self.dbs[db];
        if map.get(key).is_some_and(|v| expired(v, now_ms)) {
            map.remove(key);
            return None;
        }
        map.get_mut(key)
    }

    fn execute(&mut self, c: &mut Conn, now: u64, argv: &[&[u8]], out: &mut Vec<u8>) {
        self.commands += 1;
        let mut lower = [0u8; 16];
        let name: &[u8] = match lower.get_mut(..argv[0].len()) {
            Some(dst) => {
                dst.copy_from_slice(argv[0]);
                dst.make_ascii_lowercase();
                dst
            }
            None => b"<long>",
        };
        let args = &argv[1..];
        if self.requirepass.is_some()
            && !c.authed
            && name != b"auth".as_slice()
            && name != b"hello".as_slice()
        {
            return error(out, "NOAUTH Authentication required.");
        }
        let arity_ok = match name {
            b"ping" => args.len() <= 1,
            b"auth" => (1..=2).contains(&args.len()),
            b"select" | b"get" | b"pttl" | b"ttl" => args.len() == 1,
            b"set" => args.len() >= 2,
            b"del" | b"exists" => !args.is_empty(),
            b"pexpire" => args.len() >= 2,
            b"eval" | b"evalsha" => args.len() >= 2,
            b"script" => !args.is_empty(),
            b"dbsize" => args.is_empty(),
            b"flushall" | b"flushdb" => args.len() <= 1,
            _ => {
                let mut msg = format!(
                    "ERR unknown command '{}', with args beginning with: ",
                    clip(argv[0])
                );
                let _ = name;
                for a in args.iter().take(8) {
                    msg.push_str(&format!("'{}' ", clip(a)));
                }
                return error(out, &msg);
            }
        };
        if !arity_ok {
            let cmd = String::from_utf8_lossy(name).into_owned();
            return error(
                out,
                &format!("ERR wrong number of arguments for '{cmd}' command"),
            );
        }
        match name {
            b"ping" => match args.first() {
                Some(m) => bulk(out, m),
                None => simple(out, b"PONG"),
            },
            b"auth" => self.auth(c, args, out),
            b"select" => match parse_int(args[0]) {
                Some(n) if (0..DATABASES as i64).contains(&n) => {
                    c.db = n as usize;
                    simple(out, b"OK")
                }
                Some(_) => error(out, "ERR DB index is out of range"),
                None => error(out, "ERR value is not an integer or out of range"),
            },
            b"get" => match self.lookup(c.db, now, args[0]) {
                Some(v) => bulk(out, &v.data.clone()),
                None => nil(out),
            },
            b"set" => self.set(c.db, now, args, out),
            b"del" => {
                let mut n = 0;
                for k in args {
                    if self.lookup(c.db, now, k).is_some() {
                        self.dbs[c.db].remove(*k);
                        n += 1;
                    }
                }
                int(out, n)
            }
            b"exists" => {
                let mut n = 0;
                for k in args {
                    if self.lookup(c.db, now, k).is_some() {
                        n += 1;
                    }
                }
                int(out, n)
            }
            b"pttl" | b"ttl" => {
                let ms = match self.lookup(c.db, now, args[0]) {
                    None => -2,
                    Some(Value {
                        expire_at: None, ..
                    }) => -1,
                    Some(Value {
                        expire_at: Some(at),
                        ..
                    }) => at.saturating_sub(now) as i64,
                };
                if name == b"ttl".as_slice() && ms >= 0 {
                    int(out, (ms + 500) / 1000)
                } else {
                    int(out, ms)
                }
            }
            b"pexpire" => {
                if args.len() > 2 {
                    return error(out, "ERR Unsupported option");
                }
                match parse_int(args[1]) {
                    Some(ms) => int(out, self.pexpire(c.db, now, args[0], ms)),
                    None => error(out, "ERR value is not an integer or out of range"),
                }
            }
            b"dbsize" => {
                let n = self.dbs[c.db].values().filter(|v| !expired(v, now)).count();
                int(out, n as i64)
            }
            b"flushall" => {
                for db in &mut self.dbs {
                    db.clear();
                }
                simple(out, b"OK")
            }
            b"flushdb" => {
                self.dbs[c.db].clear();
                simple(out, b"OK")
            }
            b"script" => self.script(args, out),
            b"eval" => {
                let sha = sha1_smol::Sha1::from(args[0]).digest().to_string();
                let kind = script_kind(&sha);
                self.scripts.insert(sha, kind);
                self.run_script(c.db, now, kind, &args[1..], out)
            }
            b"evalsha" => {
                let sha = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
                match self.scripts.get(&sha).copied() {
                    Some(kind) => self.run_script(c.db, now, kind, &args[1..], out),
                    None => error(out, "NOSCRIPT No matching script. Please use EVAL."),
                }
            }
            _ => error(out, "ERR unknown command"),
        }
    }

    fn auth(&mut self, c: &mut Conn, args: &[&[u8]], out: &mut Vec<u8>) {
        let (user, pass) = match args {
            [p] => (&b"default"[..], *p),
            [u, p] => (*u, *p),
            _ => return error(out, "ERR syntax error"),
        };
        match &self.requirepass {
            None if args.len() == 1 => error(
                out,
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            None => {
                if user == b"default" {
                    c.authed = true;
                    simple(out, b"OK")
                } else {
                    error(out, "WRONGPASS invalid username-password pair or user is disabled.")
                }
            }
            Some(pw) => {
                if user == b"default" && pass == pw.as_bytes() {
                    c.authed = true;
                    simple(out, b"OK")
                } else {
                    error(out, "WRONGPASS invalid username-password pair or user is disabled.")
                }
            }
        }
    }

    fn set(&mut self, db: usize, now: u64, args: &[&[u8]], out: &mut Vec<u8>) {
        let (key, value) = (args[0], args[1]);
        let (mut nx, mut xx) = (false, false);
        let mut expire_at: Option<u64> = None;
        let mut i = 2;
        while i < args.len() {
            let opt = args[i].to_ascii_lowercase();
            match opt.as_slice() {
                b"nx" if !xx => nx = true,
                b"xx" if !nx => xx = true,
                b"px" | b"ex" if expire_at.is_none() && i + 1 < args.len() => {
                    i += 1;
                    let Some(n) = parse_int(args[i]) else {
                        return error(out, "ERR value is not an integer or out of range");
                    };
                    let ms = if opt == b"ex" {
                        n.checked_mul(1000)
                    } else {
                        Some(n)
                    };
                    match ms {
                        Some(ms) if ms > 0 => match now.checked_add(ms as u64) {
                            Some(at) => expire_at = Some(at),
                            None => return error(out, "ERR invalid expire time in 'set' command"),
                        },
                        _ => return error(out, "ERR invalid expire time in 'set' command"),
                    }
                }
                _ => return error(out, "ERR syntax error"),
            }
            i += 1;
        }
        let exists = self.lookup(db, now, key).is_some();
        if (nx && exists) || (xx && !exists) {
            return nil(out);
        }
        self.dbs[db].insert(
            key.to_vec(),
            Value {
                data: value.to_vec(),
                expire_at,
            },
        );
        simple(out, b"OK")
    }

    fn pexpire(&mut self, db: usize, now: u64, key: &[u8], ms: i64) -> i64 {
        if self.lookup(db, now, key).is_none() {
            return 0;
        }
        // Redis deletes a key whose new expiry is already past.
        if ms <= 0 {
            self.dbs[db].remove(key);
            return 1;
        }
        if let Some(v) = self.lookup(db, now, key) {
            v.expire_at = Some(now.saturating_add(ms as u64));
        }
        1
    }

    fn script(&mut self, args: &[&[u8]], out: &mut Vec<u8>) {
        let sub = args[0].to_ascii_lowercase();
        match (sub.as_slice(), &args[1..]) {
            (b"load", [body]) => {
                let sha = sha1_smol::Sha1::from(body).digest().to_string();
                let kind = script_kind(&sha);
                self.scripts.insert(sha.clone(), kind);
                bulk(out, sha.as_bytes())
            }
            (b"flush", rest) if rest.len() <= 1 => {
                self.scripts.clear();
                simple(out, b"OK")
            }
            (b"exists", shas) if !shas.is_empty() => {
                let found: Vec<BorrowedFrame<'_>> = shas
                    .iter()
                    .map(|s| {
                        let sha = String::from_utf8_lossy(s).to_ascii_lowercase();
                        BorrowedFrame::Integer(i64::from(self.scripts.contains_key(&sha)))
                    })
                    .collect();
                put(out, &BorrowedFrame::Array(&found))
            }
            _ => {
                let name = String::from_utf8_lossy(&sub).into_owned();
                error(
                    out,
                    &format!("ERR unknown subcommand or wrong number of arguments for '{name}'. Try SCRIPT HELP."),
                )
            }
        }
    }

    /// Runs a script given `numkeys keys... args...`.
    fn run_script(
        &mut self,
        db: usize,
        now: u64,
        kind: ScriptKind,
        rest: &[&[u8]],
        out: &mut Vec<u8>,
    ) {
        let Some(numkeys) = parse_int(rest[0]) else {
            return error(out, "ERR value is not an integer or out of range");
        };
        if numkeys < 0 {
            return error(out, "ERR Number of keys can't be negative");
        }
        if numkeys as usize > rest.len() - 1 {
            return error(
                out,
                "ERR Number of keys can't be greater than number of args",
            );
        }
        let keys = &rest[1..1 + numkeys as usize];
        let argv = &rest[1 + numkeys as usize..];
        if kind == ScriptKind::Unknown {
            return error(out, "ERR the simulated node can only run redlock's scripts");
        }
        // Both scripts: if redis.call("get", KEYS[1]) == ARGV[1] then ... else return 0 end
        let Some(key) = keys.first() else {
            return error(out, "ERR Error running script: Lua redis lib command arguments must be strings or integers");
        };
        let matches = match (self.lookup(db, now, key), argv.first()) {
            (Some(v), Some(token)) => v.data.as_slice() == *token,
            _ => false,
        };
        if !matches {
            return int(out, 0);
        }
        match kind {
            ScriptKind::Release => {
                self.dbs[db].remove(*key);
                int(out, 1)
            }
            _ => match argv.get(1).and_then(|a| parse_int(a)) {
                Some(ms) => int(out, self.pexpire(db, now, key, ms)),
                None => error(
                    out,
                    "ERR Error running script: @user_script:1: ERR value is not an integer or out of range",
                ),
            },
        }
    }
}

fn script_kind(sha: &str) -> ScriptKind {
    if sha == RELEASE_SHA {
        ScriptKind::Release
    } else if sha == EXTEND_SHA {
        ScriptKind::Extend
    } else {
        ScriptKind::Unknown
    }
}

// Keep the texts referenced: the SHAs above are of exactly these bodies.
const _: (&str, &str) = (RELEASE_SCRIPT, EXTEND_SCRIPT);

fn expired(v: &Value, now_ms: u64) -> bool {
    v.expire_at.is_some_and(|at| now_ms > at)
}

fn clip(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(128).collect()
}

/// Redis's integer parsing for arguments: optional `-`, digits, no spaces.
fn parse_int(b: &[u8]) -> Option<i64> {
    let s = core::str::from_utf8(b).ok()?;
    if s.is_empty()
        || s.starts_with('+')
        || (s.len() > 1 && s.starts_with('0'))
        || s.starts_with("-0")
    {
        return None;
    }
    s.parse().ok()
}

/// Ranges of the arguments of the first request in `buf` and the bytes it
/// used; `Ok(None)` when incomplete.
type Parsed = Option<(Vec<(usize, usize)>, usize)>;

fn parse_request(buf: &[u8]) -> Result<Parsed, &'static str> {
    if buf[0] != b'*' {
        // Inline command: one line, arguments separated by spaces.
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let mut args = Vec::new();
        let mut start = None;
        for (i, &b) in buf[..line_end].iter().enumerate() {
            match (b == b' ' || b == b'\t', start) {
                (true, Some(s)) => {
                    args.push((s, i));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            args.push((s, line_end));
        }
        return Ok(Some((args, nl + 1)));
    }
    // Refuse absurd array headers before redis-protocol allocates for them.
    if let Some(nl) = buf.iter().take(24).position(|&b| b == b'\n') {
        let count = core::str::from_utf8(&buf[1..nl.saturating_sub(1).max(1)])
            .ok()
            .and_then(|s| s.parse::<i64>().ok());
        match count {
            Some(n) if n > MAX_ARGS as i64 => {
                return Err("ERR Protocol error: invalid multibulk length")
            }
            Some(_) => {}
            None => return Err("ERR Protocol error: invalid multibulk length"),
        }
    } else if buf.len() >= 24 {
        return Err("ERR Protocol error: invalid multibulk length");
    }
    match decode_range(buf) {
        Ok(None) => Ok(None),
        Ok(Some((RangeFrame::Array(items), used))) => {
            let mut args = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    RangeFrame::BulkString((s, e)) => args.push((s, e)),
                    _ => return Err("ERR Protocol error: expected '$'"),
                }
            }
            Ok(Some((args, used)))
        }
        Ok(Some((RangeFrame::Null, used))) => Ok(Some((Vec::new(), used))),
        Ok(Some(_)) => Err("ERR Protocol error: expected '$'"),
        Err(_) => Err("ERR Protocol error: invalid bulk length"),
    }
}

fn put(out: &mut Vec<u8>, frame: &BorrowedFrame<'_>) {
    // The replies of the hot path, pre-encoded (identical bytes).
    match frame {
        BorrowedFrame::SimpleString(b"OK") => return out.extend_from_slice(b"+OK\r\n"),
        BorrowedFrame::Integer(0) => return out.extend_from_slice(b":0\r\n"),
        BorrowedFrame::Integer(1) => return out.extend_from_slice(b":1\r\n"),
        BorrowedFrame::Null => return out.extend_from_slice(b"$-1\r\n"),
        _ => {}
    }
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    // Cannot fail: the buffer has exactly the frame's encoded length.
    let n = encode_borrowed(&mut out[start..], frame, false).unwrap_or(0);
    out.truncate(start + n);
}

fn simple(out: &mut Vec<u8>, s: &[u8]) {
    put(out, &BorrowedFrame::SimpleString(s))
}

fn error(out: &mut Vec<u8>, s: &str) {
    put(out, &BorrowedFrame::Error(s))
}

fn int(out: &mut Vec<u8>, n: i64) {
    put(out, &BorrowedFrame::Integer(n))
}

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    put(out, &BorrowedFrame::BulkString(b))
}

fn nil(out: &mut Vec<u8>) {
    put(out, &BorrowedFrame::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n{}\r\n", a.len(), a).as_bytes());
        }
        v
    }

    #[test]
    fn set_nx_px_and_expiry_on_node_clock() {
        let mut n = SimNode::new();
        assert_eq!(
            n.reply(1000, &cmd(&["SET", "k", "a", "NX", "PX", "100"])),
            b"+OK\r\n"
        );
        assert_eq!(n.reply(1100, &cmd(&["PTTL", "k"])), b":0\r\n");
        assert_eq!(
            n.reply(1100, &cmd(&["SET", "k", "b", "NX", "PX", "100"])),
            b"$-1\r\n"
        );
        assert_eq!(
            n.reply(1101, &cmd(&["SET", "k", "b", "NX", "PX", "100"])),
            b"+OK\r\n"
        );
        assert_eq!(n.reply(1101, &cmd(&["GET", "k"])), b"$1\r\nb\r\n");
        assert_eq!(
            n.reply(0, &cmd(&["SET", "k", "b", "PX", "0"])),
            b"-ERR invalid expire time in 'set' command\r\n"
        );
    }

    #[test]
    fn scripts_release_and_extend() {
        let mut n = SimNode::new();
        assert_eq!(
            n.reply(0, &cmd(&["EVALSHA", RELEASE_SHA, "1", "k", "t"])),
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
        );
        let load = n.reply(0, &cmd(&["SCRIPT", "LOAD", RELEASE_SCRIPT]));
        assert_eq!(load, format!("$40\r\n{RELEASE_SHA}\r\n").into_bytes());
        n.reply(0, &cmd(&["SET", "k", "t", "PX", "1000"]));
        assert_eq!(
            n.reply(0, &cmd(&["EVALSHA", RELEASE_SHA, "1", "k", "x"])),
            b":0\r\n"
        );
        assert_eq!(
            n.reply(0, &cmd(&["EVAL", EXTEND_SCRIPT, "1", "k", "t", "5000"])),
            b":1\r\n"
        );
        assert_eq!(n.reply(10, &cmd(&["PTTL", "k"])), b":4990\r\n");
        assert_eq!(
            n.reply(10, &cmd(&["EVALSHA", EXTEND_SHA, "1", "k", "t", "100"])),
            b":1\r\n"
        );
        assert_eq!(
            n.reply(10, &cmd(&["EVALSHA", RELEASE_SHA, "1", "k", "t"])),
            b":1\r\n"
        );
        assert_eq!(n.reply(10, &cmd(&["EXISTS", "k"])), b":0\r\n");
        n.restart(true);
        assert!(n
            .reply(10, &cmd(&["EVALSHA", RELEASE_SHA, "1", "k", "t"]))
            .starts_with(b"-NOSCRIPT"));
    }

    #[test]
    fn protocol_errors_close() {
        let mut n = SimNode::new();
        let mut out = Vec::new();
        assert_eq!(n.feed(1, 0, b"*99999999\r\n", &mut out), Feed::Close);
        assert!(out.starts_with(b"-ERR Protocol error"));
        out.clear();
        assert_eq!(n.feed(2, 0, b"PING\r\n", &mut out), Feed::Open);
        assert_eq!(out, b"+PONG\r\n");
    }

    #[test]
    fn auth_and_select() {
        let mut n = SimNode::with_password("pw");
        assert!(n.reply(0, &cmd(&["GET", "k"])).starts_with(b"-NOAUTH"));
        let mut out = Vec::new();
        n.feed(5, 0, &cmd(&["AUTH", "bad"]), &mut out);
        assert!(out.starts_with(b"-WRONGPASS"));
        out.clear();
        n.feed(5, 0, &cmd(&["AUTH", "pw"]), &mut out);
        n.feed(5, 0, &cmd(&["SELECT", "3"]), &mut out);
        n.feed(5, 0, &cmd(&["SET", "k", "v"]), &mut out);
        assert_eq!(out, b"+OK\r\n+OK\r\n+OK\r\n");
        assert_eq!(n.get(0, b"k"), None);
    }
}
