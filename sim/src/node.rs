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
use redlock_core::{
    ACQUIRE_SCRIPT, EXTEND_SCRIPT, FENCE_INCR_SCRIPT, FENCE_WRITE_SCRIPT, FENCE_WRITE_SET_SCRIPT,
    RELEASE_SCRIPT,
};

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

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Value {
    data: Vec<u8>,
    /// Expiry on the node clock, in ms; `None` = persistent.
    expire_at: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Conn {
    pending: Vec<u8>,
    authed: bool,
    db: usize,
}

/// One lock-relevant command a node executed on database 0 (kept only while
/// [`SimNode::observe`] is on): what the simulator's checker needs to tell
/// *why* a key is there or gone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Exec {
    /// The connection it arrived on.
    pub(crate) conn: u64,
    pub(crate) key: Vec<u8>,
    /// The value (`SET`) or the token argument (scripts).
    pub(crate) token: Vec<u8>,
    pub(crate) what: ExecKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ExecKind {
    /// `SET`: stored, or refused (`NX`) because `holder` held the key.
    Set {
        stored: bool,
        holder: Option<Vec<u8>>,
    },
    /// Redlock's release (compare-and-delete) script.
    Release { by_body: bool, deleted: bool },
    /// Redlock's extend (compare-and-`PEXPIRE`) script.
    Extend { by_body: bool, extended: bool },
    /// `EVALSHA` of a script not in the cache; `release` tells which one.
    NoScript { release: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ScriptKind {
    Release,
    Extend,
    Acquire,
    FenceWrite,
    FenceWriteSet,
    FenceIncr,
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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimNode {
    dbs: Vec<BTreeMap<Vec<u8>, Value>>,
    scripts: BTreeMap<String, ScriptKind>,
    conns: BTreeMap<u64, Conn>,
    requirepass: Option<String>,
    commands: u64,
    /// Whether lock-relevant commands are journaled.
    observe: bool,
    journal: Vec<Exec>,
    /// The connection of the request being executed.
    current: u64,
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
            observe: false,
            journal: Vec::new(),
            current: 0,
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
        self.current = conn;
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

    /// Turns the journal of lock-relevant commands on or off.
    pub(crate) fn observe(&mut self, on: bool) {
        self.observe = on;
        self.journal.clear();
    }

    /// Moves the journal's entries (oldest first) to the end of `into`.
    pub(crate) fn take_journal(&mut self, into: &mut Vec<Exec>) {
        into.append(&mut self.journal);
    }

    fn note(&mut self, key: &[u8], token: &[u8], what: ExecKind) {
        self.journal.push(Exec {
            conn: self.current,
            key: key.to_vec(),
            token: token.to_vec(),
            what,
        });
    }

    /// The values the lock keys of a script run (`rest` = `numkeys keys...
    /// args...`) hold before it runs, for the journal.
    fn holders(&mut self, now: u64, kind: ScriptKind, rest: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let Some((keys, _)) = lock_keys(kind, rest) else {
            return Vec::new();
        };
        keys.iter()
            .map(|k| self.lookup(0, now, k).map(|v| v.data.clone()))
            .collect()
    }

    /// Journals a script run (`rest` = `numkeys keys... args...`), one entry
    /// per lock key, from what the keys held before (`before`) and the
    /// reply it wrote. Round 2 of a fenced acquire touches no lock key and
    /// is not journaled.
    fn note_script(
        &mut self,
        kind: ScriptKind,
        by_body: bool,
        rest: &[&[u8]],
        before: &[Option<Vec<u8>>],
        reply: &[u8],
    ) {
        let Some((keys, token)) = lock_keys(kind, rest) else {
            return;
        };
        if !reply.starts_with(b":") || before.len() != keys.len() {
            return;
        }
        for (key, held) in keys.iter().zip(before) {
            let what = match kind {
                ScriptKind::Release => ExecKind::Release {
                    by_body,
                    deleted: held.as_deref() == Some(token),
                },
                ScriptKind::Extend => ExecKind::Extend {
                    by_body,
                    extended: reply == b":1\r\n",
                },
                ScriptKind::Acquire | ScriptKind::FenceIncr if reply != b":-1\r\n" => {
                    ExecKind::Set {
                        stored: true,
                        holder: None,
                    }
                }
                ScriptKind::Acquire | ScriptKind::FenceIncr => match held {
                    Some(h) => ExecKind::Set {
                        stored: false,
                        holder: Some(h.clone()),
                    },
                    None => continue,
                },
                _ => return,
            };
            self.note(key, token, what);
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
            b"set" => {
                let journal = self.observe && c.db == 0;
                let holder = if journal {
                    self.lookup(0, now, args[0]).map(|v| v.data.clone())
                } else {
                    None
                };
                let start = out.len();
                self.set(c.db, now, args, out);
                if journal {
                    let stored = &out[start..] == b"+OK\r\n";
                    self.note(args[0], args[1], ExecKind::Set { stored, holder });
                }
            }
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
                let sha = sha_of(args[0]);
                let kind = script_kind(&sha);
                self.scripts.insert(sha, kind);
                let journal = self.observe && c.db == 0;
                let before = if journal {
                    self.holders(now, kind, &args[1..])
                } else {
                    Vec::new()
                };
                let start = out.len();
                self.run_script(c.db, now, kind, &args[1..], out);
                if journal {
                    let reply = out[start..].to_vec();
                    self.note_script(kind, true, &args[1..], &before, &reply);
                }
            }
            b"evalsha" => {
                let sha = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
                let cached = self.scripts.get(&sha).copied();
                let journal = self.observe && c.db == 0;
                let before = match cached {
                    Some(kind) if journal => self.holders(now, kind, &args[1..]),
                    _ => Vec::new(),
                };
                let start = out.len();
                match cached {
                    Some(kind) => self.run_script(c.db, now, kind, &args[1..], out),
                    None => error(out, "NOSCRIPT No matching script. Please use EVAL."),
                }
                if journal {
                    let reply = out[start..].to_vec();
                    match cached {
                        Some(kind) => self.note_script(kind, false, &args[1..], &before, &reply),
                        None => {
                            let known = script_kind(&sha);
                            if let (Some((keys, token)), ScriptKind::Release | ScriptKind::Extend) =
                                (lock_keys(known, &args[1..]), known)
                            {
                                let release = known == ScriptKind::Release;
                                for key in keys {
                                    self.note(key, token, ExecKind::NoScript { release });
                                }
                            }
                        }
                    }
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
                let sha = sha_of(body);
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
        let lua_error = |out: &mut Vec<u8>| {
            error(
                out,
                "ERR Error running script: Lua redis lib command arguments must be strings or integers",
            )
        };
        let Some(token) = argv.first() else {
            return lua_error(out);
        };
        // GET of each lock key: the token it holds, if any.
        let value = |node: &mut SimNode, key: &[u8]| -> Option<Vec<u8>> {
            node.lookup(db, now, key).map(|v| v.data.clone())
        };
        match kind {
            ScriptKind::Release => {
                let (mut n, mut other) = (0, false);
                for key in keys {
                    match value(self, key) {
                        Some(v) if v.as_slice() == *token => {
                            self.dbs[db].remove(*key);
                            n += 1;
                        }
                        Some(_) => other = true,
                        None => {}
                    }
                }
                int(
                    out,
                    if n > 0 {
                        n
                    } else if other {
                        0
                    } else {
                        -1
                    },
                )
            }
            ScriptKind::Extend => {
                let (mut mine, mut other) = (0, false);
                for key in keys {
                    match value(self, key) {
                        Some(v) if v.as_slice() == *token => mine += 1,
                        Some(_) => other = true,
                        None => {}
                    }
                }
                if mine == keys.len() {
                    let Some(ms) = argv.get(1).and_then(|a| parse_int(a)) else {
                        return error(
                            out,
                            "ERR Error running script: @user_script:1: ERR value is not an integer or out of range",
                        );
                    };
                    for key in keys {
                        self.pexpire(db, now, key, ms);
                    }
                    int(out, 1)
                } else {
                    int(out, if other { 0 } else { -1 })
                }
            }
            ScriptKind::Acquire | ScriptKind::FenceIncr => {
                let fenced = argv.len() > 2 || kind == ScriptKind::FenceIncr;
                let k = if fenced { keys.len() / 2 } else { keys.len() };
                let Some(ttl) = argv.get(1).and_then(|a| parse_int(a)).filter(|t| *t > 0) else {
                    return error(out, "ERR Error running script: @user_script:1: ERR invalid expire time in 'set' command");
                };
                for key in &keys[..k] {
                    if value(self, key).is_some() {
                        return int(out, -1);
                    }
                }
                let mut old: i64 = 0;
                let regs = &keys[k..];
                if kind == ScriptKind::Acquire && fenced {
                    for reg in regs {
                        if let Some(v) = value(self, reg) {
                            match parse_int(&v) {
                                Some(n) => old = old.max(n),
                                None => {
                                    return error(
                                        out,
                                        &format!(
                                            "WRONGTYPE fence register {} does not hold an integer",
                                            String::from_utf8_lossy(reg)
                                        ),
                                    )
                                }
                            }
                        }
                    }
                }
                for key in &keys[..k] {
                    self.put(db, now, key, token, Some(ttl as u64));
                }
                if kind == ScriptKind::FenceIncr {
                    let mut top = 0;
                    for reg in regs {
                        let n = value(self, reg).and_then(|v| parse_int(&v)).unwrap_or(0) + 1;
                        self.put(db, now, reg, n.to_string().as_bytes(), None);
                        top = top.max(n);
                    }
                    return int(out, top);
                }
                if fenced {
                    let p = argv.get(2).and_then(|a| parse_int(a)).unwrap_or(0);
                    for reg in regs {
                        let cur = value(self, reg).and_then(|v| parse_int(&v)).unwrap_or(0);
                        if cur < p {
                            self.put(db, now, reg, argv[2], None);
                        }
                    }
                }
                int(out, old)
            }
            ScriptKind::FenceWrite | ScriptKind::FenceWriteSet => {
                let k = keys.len() / 2;
                for key in &keys[..k] {
                    if value(self, key).as_deref() != Some(*token) {
                        return int(out, 0);
                    }
                }
                let Some(f) = argv.get(1).and_then(|a| parse_int(a)) else {
                    return lua_error(out);
                };
                for reg in &keys[k..] {
                    let cur = value(self, reg).and_then(|v| parse_int(&v));
                    if kind == ScriptKind::FenceWriteSet || cur.is_none_or(|c| c < f) {
                        self.put(db, now, reg, argv[1], None);
                    }
                }
                int(out, 1)
            }
            ScriptKind::Unknown => unreachable!("checked above"),
        }
    }

    /// Stores `value` under `key`, with an expiry `ttl` ms from `now` or none.
    fn put(&mut self, db: usize, now: u64, key: &[u8], value: &[u8], ttl: Option<u64>) {
        self.dbs[db].insert(
            key.to_vec(),
            Value {
                data: value.to_vec(),
                expire_at: ttl.map(|t| now.saturating_add(t)),
            },
        );
    }
}

/// Each script the node can run: its body, its SHA1 (computed once) and
/// what it does.
fn known_scripts() -> &'static [(&'static str, String, ScriptKind)] {
    static KNOWN: std::sync::OnceLock<Vec<(&'static str, String, ScriptKind)>> =
        std::sync::OnceLock::new();
    KNOWN.get_or_init(|| {
        [
            (RELEASE_SCRIPT, ScriptKind::Release),
            (EXTEND_SCRIPT, ScriptKind::Extend),
            (ACQUIRE_SCRIPT, ScriptKind::Acquire),
            (FENCE_WRITE_SCRIPT, ScriptKind::FenceWrite),
            (FENCE_WRITE_SET_SCRIPT, ScriptKind::FenceWriteSet),
            (FENCE_INCR_SCRIPT, ScriptKind::FenceIncr),
        ]
        .iter()
        .map(|(body, kind)| {
            (
                *body,
                sha1_smol::Sha1::from(body).digest().to_string(),
                *kind,
            )
        })
        .collect()
    })
}

/// The lock keys and the token of a run of script `kind` (`rest` =
/// `numkeys keys... args...`): every key of a release or extend, the first
/// half (the rest are fence registers) of a fenced acquire or round 2.
fn lock_keys<'a>(kind: ScriptKind, rest: &[&'a [u8]]) -> Option<(Vec<&'a [u8]>, &'a [u8])> {
    let numkeys = usize::try_from(parse_int(rest.first()?)?).ok()?;
    let keys = rest.get(1..1 + numkeys)?;
    let argv = &rest[1 + numkeys..];
    let token = *argv.first()?;
    let locks = match kind {
        ScriptKind::Release | ScriptKind::Extend => keys,
        ScriptKind::Acquire if argv.len() <= 2 => keys,
        ScriptKind::Acquire
        | ScriptKind::FenceIncr
        | ScriptKind::FenceWrite
        | ScriptKind::FenceWriteSet => &keys[..numkeys / 2],
        ScriptKind::Unknown => return None,
    };
    Some((locks.to_vec(), token))
}

/// A lock request a client wrote, as the simulator follows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockRequest<'a> {
    /// A key-taking request (`SET ... NX`, or the acquire script) with
    /// this token.
    Take(&'a [u8]),
    /// Round 2 of a fenced acquire with this token.
    FenceWrite(&'a [u8]),
}

/// Calls `f` with every complete lock request in `buf` (bytes a client
/// wrote to a node).
pub(crate) fn lock_requests(mut buf: &[u8], mut f: impl FnMut(LockRequest<'_>)) {
    while !buf.is_empty() {
        let Ok(Some((ranges, used))) = parse_request(buf) else {
            return;
        };
        let args: Vec<&[u8]> = ranges.iter().map(|&(s, e)| &buf[s..e]).collect();
        if args.len() >= 3 {
            if args[0].eq_ignore_ascii_case(b"set") {
                f(LockRequest::Take(args[2]));
            } else {
                let kind = if args[0].eq_ignore_ascii_case(b"eval") {
                    body_kind(args[1])
                } else if args[0].eq_ignore_ascii_case(b"evalsha") {
                    script_kind(&String::from_utf8_lossy(args[1]).to_ascii_lowercase())
                } else {
                    ScriptKind::Unknown
                };
                if let Some((_, token)) = lock_keys(kind, &args[2..]) {
                    match kind {
                        ScriptKind::Acquire | ScriptKind::FenceIncr => f(LockRequest::Take(token)),
                        ScriptKind::FenceWrite | ScriptKind::FenceWriteSet => {
                            f(LockRequest::FenceWrite(token))
                        }
                        _ => {}
                    }
                }
            }
        }
        buf = &buf[used..];
    }
}

/// What a script body is, without hashing it.
fn body_kind(body: &[u8]) -> ScriptKind {
    known_scripts()
        .iter()
        .find(|(b, _, _)| b.as_bytes() == body)
        .map_or(ScriptKind::Unknown, |(_, _, k)| *k)
}

/// The SHA1 of a script body, as Redis names it (Redlock's scripts without
/// hashing them again: they are sent by body every time).
fn sha_of(body: &[u8]) -> String {
    match known_scripts()
        .iter()
        .find(|(b, _, _)| b.as_bytes() == body)
    {
        Some((_, sha, _)) => sha.clone(),
        None => sha1_smol::Sha1::from(body).digest().to_string(),
    }
}

fn script_kind(sha: &str) -> ScriptKind {
    known_scripts()
        .iter()
        .find(|(_, s, _)| s == sha)
        .map_or(ScriptKind::Unknown, |(_, _, k)| *k)
}

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
    use redlock_core::{EXTEND_SHA, RELEASE_SHA};

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
    fn multi_resource_and_fence_scripts() {
        use redlock_core::{ACQUIRE_SCRIPT, FENCE_WRITE_SCRIPT};
        let mut n = SimNode::new();
        let acq = |n: &mut SimNode, t: u64, args: &[&str]| {
            let mut a = vec!["EVAL", ACQUIRE_SCRIPT];
            a.extend_from_slice(args);
            n.reply(t, &cmd(&a))
        };
        assert_eq!(acq(&mut n, 0, &["2", "a", "b", "tok", "5000"]), b":0\r\n");
        assert_eq!(acq(&mut n, 0, &["2", "b", "c", "tok2", "5000"]), b":-1\r\n");
        assert_eq!(n.reply(0, &cmd(&["EXISTS", "c"])), b":0\r\n");
        assert_eq!(
            n.reply(0, &cmd(&["EVAL", RELEASE_SCRIPT, "2", "a", "b", "zzz"])),
            b":0\r\n"
        );
        assert_eq!(
            n.reply(
                10,
                &cmd(&["EVAL", EXTEND_SCRIPT, "2", "a", "b", "tok", "9000"])
            ),
            b":1\r\n"
        );
        assert_eq!(n.reply(10, &cmd(&["PTTL", "a"])), b":9000\r\n");
        assert_eq!(
            n.reply(
                10,
                &cmd(&["EVAL", EXTEND_SCRIPT, "2", "a", "x", "tok", "9000"])
            ),
            b":-1\r\n"
        );
        assert_eq!(
            n.reply(10, &cmd(&["EVAL", RELEASE_SCRIPT, "2", "a", "b", "tok"])),
            b":2\r\n"
        );
        assert_eq!(
            n.reply(10, &cmd(&["EVAL", RELEASE_SCRIPT, "1", "a", "tok"])),
            b":-1\r\n"
        );
        let regs = ["4", "a", "b", "{a}:fence", "{b}:fence"];
        let mut args = regs.to_vec();
        args.extend_from_slice(&["t1", "5000", "1000"]);
        assert_eq!(acq(&mut n, 20, &args), b":0\r\n");
        assert_eq!(n.reply(20, &cmd(&["GET", "{b}:fence"])), b"$4\r\n1000\r\n");
        n.reply(20, &cmd(&["DEL", "a", "b"]));
        n.reply(20, &cmd(&["SET", "{b}:fence", "1099"]));
        let mut args = regs.to_vec();
        args.extend_from_slice(&["t2", "5000", "1050"]);
        assert_eq!(acq(&mut n, 20, &args), b":1099\r\n");
        assert_eq!(n.reply(20, &cmd(&["GET", "{a}:fence"])), b"$4\r\n1050\r\n");
        assert_eq!(n.reply(20, &cmd(&["GET", "{b}:fence"])), b"$4\r\n1099\r\n");
        let mut fw = vec!["EVAL", FENCE_WRITE_SCRIPT];
        fw.extend_from_slice(&regs);
        let mut ok = fw.clone();
        ok.extend_from_slice(&["t2", "1100"]);
        assert_eq!(n.reply(20, &cmd(&ok)), b":1\r\n");
        assert_eq!(n.reply(20, &cmd(&["GET", "{a}:fence"])), b"$4\r\n1100\r\n");
        let mut wrong = fw.clone();
        wrong.extend_from_slice(&["t3", "1200"]);
        assert_eq!(n.reply(20, &cmd(&wrong)), b":0\r\n");
        n.reply(20, &cmd(&["DEL", "a", "b"]));
        n.reply(20, &cmd(&["SET", "{a}:fence", "garbage"]));
        assert!(
            acq(&mut n, 20, &["2", "a", "{a}:fence", "t", "5000", "5"]).starts_with(b"-WRONGTYPE")
        );
        assert_eq!(n.reply(20, &cmd(&["EXISTS", "a"])), b":0\r\n");
    }

    #[test]
    fn known_bodies_hash_to_their_shas() {
        for body in [RELEASE_SCRIPT, EXTEND_SCRIPT, "return 1"] {
            assert_eq!(
                sha_of(body.as_bytes()),
                sha1_smol::Sha1::from(body).digest().to_string()
            );
        }
        assert_eq!(sha_of(RELEASE_SCRIPT.as_bytes()), RELEASE_SHA);
        assert_eq!(sha_of(EXTEND_SCRIPT.as_bytes()), EXTEND_SHA);
    }

    #[test]
    fn the_journal_records_lock_commands() {
        let mut n = SimNode::new();
        n.observe(true);
        let mut out = Vec::new();
        n.feed(7, 0, &cmd(&["SET", "r", "a", "NX", "PX", "100"]), &mut out);
        n.feed(7, 0, &cmd(&["SET", "r", "b", "NX", "PX", "100"]), &mut out);
        n.feed(
            7,
            0,
            &cmd(&["EVALSHA", RELEASE_SHA, "1", "r", "a"]),
            &mut out,
        );
        n.feed(
            7,
            0,
            &cmd(&["EVAL", RELEASE_SCRIPT, "1", "r", "b"]),
            &mut out,
        );
        n.feed(
            7,
            0,
            &cmd(&["EVALSHA", RELEASE_SHA, "1", "r", "a"]),
            &mut out,
        );
        n.feed(7, 0, &cmd(&["GET", "r"]), &mut out);
        let mut j = Vec::new();
        n.take_journal(&mut j);
        let what: Vec<(&[u8], ExecKind)> = j
            .iter()
            .map(|e| {
                assert_eq!((e.conn, e.key.as_slice()), (7, b"r".as_slice()));
                (e.token.as_slice(), e.what.clone())
            })
            .collect();
        assert_eq!(
            what,
            vec![
                (
                    b"a".as_slice(),
                    ExecKind::Set {
                        stored: true,
                        holder: None
                    }
                ),
                (
                    b"b".as_slice(),
                    ExecKind::Set {
                        stored: false,
                        holder: Some(b"a".to_vec())
                    }
                ),
                (b"a".as_slice(), ExecKind::NoScript { release: true }),
                (
                    b"b".as_slice(),
                    ExecKind::Release {
                        by_body: true,
                        deleted: false
                    }
                ),
                (
                    b"a".as_slice(),
                    ExecKind::Release {
                        by_body: false,
                        deleted: true
                    }
                ),
            ]
        );
        n.take_journal(&mut j);
        assert_eq!(j.len(), 5, "taken once");
        let mut tokens = Vec::new();
        let two = [
            cmd(&["SET", "r", "t1", "NX", "PX", "5"]),
            cmd(&["EVALSHA", RELEASE_SHA, "1", "r", "t1"]),
            cmd(&["SET", "r", "t2", "NX", "PX", "5"]),
        ]
        .concat();
        lock_requests(&two, |r| tokens.push(format!("{r:?}")));
        assert_eq!(tokens, vec!["Take([116, 49])", "Take([116, 50])"]);
    }

    #[test]
    fn the_journal_records_each_key_of_the_scripts() {
        use redlock_core::{ACQUIRE_SCRIPT, FENCE_WRITE_SCRIPT};
        let mut n = SimNode::new();
        n.observe(true);
        let mut out = Vec::new();
        let fenced = |token: &str| {
            cmd(&[
                "EVAL",
                ACQUIRE_SCRIPT,
                "4",
                "a",
                "b",
                "{a}:fence",
                "{b}:fence",
                token,
                "100",
                "7",
            ])
        };
        n.feed(3, 0, &fenced("t1"), &mut out);
        n.feed(3, 0, &cmd(&["SET", "b", "x", "NX", "PX", "100"]), &mut out);
        n.feed(3, 0, &fenced("t2"), &mut out);
        let write = cmd(&[
            "EVAL",
            FENCE_WRITE_SCRIPT,
            "4",
            "a",
            "b",
            "{a}:fence",
            "{b}:fence",
            "t1",
            "9",
        ]);
        n.feed(3, 0, &write, &mut out);
        n.feed(
            3,
            0,
            &cmd(&["EVAL", RELEASE_SCRIPT, "2", "a", "b", "t1"]),
            &mut out,
        );
        assert_eq!(out, b":0\r\n$-1\r\n:-1\r\n:1\r\n:2\r\n");
        let mut j = Vec::new();
        n.take_journal(&mut j);
        let what: Vec<(&[u8], &[u8], ExecKind)> = j
            .iter()
            .map(|e| (e.key.as_slice(), e.token.as_slice(), e.what.clone()))
            .collect();
        let stored = ExecKind::Set {
            stored: true,
            holder: None,
        };
        let deleted = ExecKind::Release {
            by_body: true,
            deleted: true,
        };
        assert_eq!(
            what,
            vec![
                (b"a".as_slice(), b"t1".as_slice(), stored.clone()),
                (b"b".as_slice(), b"t1".as_slice(), stored),
                (
                    b"b".as_slice(),
                    b"x".as_slice(),
                    ExecKind::Set {
                        stored: false,
                        holder: Some(b"t1".to_vec())
                    }
                ),
                // The refused all-or-nothing acquire: one entry per key held.
                (
                    b"a".as_slice(),
                    b"t2".as_slice(),
                    ExecKind::Set {
                        stored: false,
                        holder: Some(b"t1".to_vec())
                    }
                ),
                (
                    b"b".as_slice(),
                    b"t2".as_slice(),
                    ExecKind::Set {
                        stored: false,
                        holder: Some(b"t1".to_vec())
                    }
                ),
                (b"a".as_slice(), b"t1".as_slice(), deleted.clone()),
                (b"b".as_slice(), b"t1".as_slice(), deleted),
            ]
        );
        let mut seen = Vec::new();
        lock_requests(&[fenced("t3"), write].concat(), |r| {
            seen.push(match r {
                LockRequest::Take(t) => format!("take {}", String::from_utf8_lossy(t)),
                LockRequest::FenceWrite(t) => format!("write {}", String::from_utf8_lossy(t)),
            })
        });
        assert_eq!(seen, ["take t3", "write t1"]);
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
