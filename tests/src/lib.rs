//! Test harness: real `redis-server` processes, deliberately broken "garbage" servers and
//! generated TLS material, for the integration tests of every transport.
//!
//! Every [`RedisServer`] is a child process of the test binary, listening on a free loopback
//! port, with no persistence (`--save "" --appendonly no`) and its own temporary directory.
//! [`RedisServer::start`] returns only once the server answers, and dropping the value always
//! kills (`SIGKILL`) and reaps the child and removes its directory, also when the test panicked.
//!
//! ```no_run
//! use redlock_tests::{Cluster, Reply};
//!
//! let cluster = Cluster::start(3);
//! assert_eq!(cluster.nodes[0].command(&["SET", "k", "v"]), Reply::Str("OK".into()));
//! cluster.nodes[1].pause(); // SIGSTOP: the node hangs without closing connections
//! cluster.nodes[1].resume();
//! ```
//!
//! Faults that no real Redis produces (random bytes, a truncated reply, a node that trickles
//! bytes forever) come from [`GarbageServer`].

#![warn(missing_docs)]

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use tempfile::TempDir;

/// Path of the `redis-server` binary (override with the `REDIS_SERVER` environment variable).
fn redis_server_bin() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "/usr/bin/redis-server".to_owned())
}

/// How long [`RedisServer::start`] waits for a server to answer before panicking.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Returns a currently free TCP port on 127.0.0.1 (bind port 0, read it, close).
///
/// Another process may take the port before it is used; [`RedisServer::start`] retries on a
/// clash.
///
/// ```
/// let port = redlock_tests::free_port();
/// assert_ne!(port, 0);
/// ```
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// Options for [`RedisServer::start_with`].
///
/// ```no_run
/// use redlock_tests::{RedisServer, ServerOptions};
/// let server = RedisServer::start_with(ServerOptions {
///     requirepass: Some("s3cret".into()),
///     acl_users: vec![("alice".into(), "wonderland".into())],
///     ..ServerOptions::default()
/// });
/// ```
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Password of the default user (`--requirepass`).
    pub requirepass: Option<String>,
    /// ACL users `(name, password)`, each with full access (`~* &* +@all`).
    pub acl_users: Vec<(String, String)>,
    /// Also listen for TLS (`--tls-port`) with a certificate from [`tls_material`].
    pub tls: bool,
    /// Extra command-line arguments for `redis-server`.
    pub extra_args: Vec<String>,
}

/// Generated TLS material: a CA and a server certificate for `localhost`, `127.0.0.1` and `::1`.
#[derive(Debug)]
pub struct TlsMaterial {
    /// The CA certificate, PEM, to be trusted by clients.
    pub ca_pem: Vec<u8>,
    /// Directory holding `ca.crt`, `server.crt` and `server.key` (PEM).
    pub dir: TempDir,
}

/// Generates a fresh CA and a server certificate (SAN `localhost`, `127.0.0.1`, `::1`) with rcgen.
///
/// ```
/// let tls = redlock_tests::tls_material();
/// assert!(tls.dir.path().join("server.key").exists());
/// assert!(String::from_utf8_lossy(&tls.ca_pem).contains("BEGIN CERTIFICATE"));
/// ```
pub fn tls_material() -> TlsMaterial {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "redlock test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

    let server_key = KeyPair::generate().expect("generate server key");
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_cert = params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("sign server certificate");

    let dir = tempfile::Builder::new()
        .prefix("redlock-tls-")
        .tempdir()
        .expect("tempdir for TLS material");
    let ca_pem = ca_cert.pem().into_bytes();
    std::fs::write(dir.path().join("ca.crt"), &ca_pem).expect("write ca.crt");
    std::fs::write(dir.path().join("server.crt"), server_cert.pem()).expect("write server.crt");
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem())
        .expect("write server.key");
    TlsMaterial { ca_pem, dir }
}

/// A reply to [`RedisServer::command`], simplified for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Null bulk string or null array.
    Nil,
    /// Integer reply.
    Int(i64),
    /// Simple or bulk string (bytes that are not UTF-8 are replaced lossily).
    Str(String),
    /// Error reply.
    Err(String),
    /// Array reply.
    Array(Vec<Reply>),
}

impl Reply {
    /// The string if this is [`Reply::Str`].
    ///
    /// ```
    /// assert_eq!(redlock_tests::Reply::Str("x".into()).as_str(), Some("x"));
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer if this is [`Reply::Int`].
    ///
    /// ```
    /// assert_eq!(redlock_tests::Reply::Int(3).as_int(), Some(3));
    /// ```
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }

    fn from_frame(frame: OwnedFrame) -> Reply {
        match frame {
            OwnedFrame::SimpleString(s) | OwnedFrame::BulkString(s) => {
                Reply::Str(String::from_utf8_lossy(&s).into_owned())
            }
            OwnedFrame::Error(e) => Reply::Err(e),
            OwnedFrame::Integer(i) => Reply::Int(i),
            OwnedFrame::Array(items) => {
                Reply::Array(items.into_iter().map(Reply::from_frame).collect())
            }
            OwnedFrame::Null => Reply::Nil,
        }
    }
}

/// Encodes a command as a RESP array of bulk strings.
fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads exactly one RESP2 reply from `stream` (whose read timeout bounds the wait).
fn read_reply(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Reply> {
    let mut chunk = [0u8; 4096];
    loop {
        match decode(buf) {
            Ok(Some((frame, used))) => {
                buf.drain(..used);
                return Ok(Reply::from_frame(frame));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad RESP from server: {e:?}"),
                ))
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `commands` in order over one fresh connection to `127.0.0.1:port`, returning the
/// last reply (earlier replies, e.g. of AUTH/SELECT, are checked for errors).
fn run_commands(port: u16, commands: &[Vec<&str>], timeout: Duration) -> io::Result<Reply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut out = Vec::new();
    for cmd in commands {
        out.extend_from_slice(&encode_command(cmd));
    }
    stream.write_all(&out)?;
    let mut buf = Vec::new();
    let mut last = Reply::Nil;
    for (i, cmd) in commands.iter().enumerate() {
        last = read_reply(&mut stream, &mut buf)?;
        if i + 1 < commands.len() {
            if let Reply::Err(e) = &last {
                return Err(io::Error::other(format!(
                    "setup command {} failed: {e}",
                    cmd.first().copied().unwrap_or("")
                )));
            }
        }
    }
    Ok(last)
}

/// A `redis-server` child process on a free loopback port.
///
/// Dropping it kills (`SIGKILL`) and reaps the process and removes its directory.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    opts: ServerOptions,
    tls: Option<TlsMaterial>,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server with default options; returns once it answers `PING`.
    ///
    /// ```no_run
    /// let server = redlock_tests::RedisServer::start();
    /// assert!(server.url().starts_with("redis://127.0.0.1:"));
    /// ```
    pub fn start() -> RedisServer {
        RedisServer::start_with(ServerOptions::default())
    }

    /// Starts a server with `opts`; returns once it answers (panics after a timeout).
    ///
    /// ```no_run
    /// use redlock_tests::{RedisServer, ServerOptions};
    /// let server = RedisServer::start_with(ServerOptions { tls: true, ..Default::default() });
    /// assert!(server.tls_url().unwrap().starts_with("rediss://localhost:"));
    /// ```
    pub fn start_with(opts: ServerOptions) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("redlock-redis-")
            .tempdir()
            .expect("tempdir for redis-server");
        let tls = opts.tls.then(tls_material);
        let mut server = RedisServer {
            child: None,
            port: 0,
            tls_port: None,
            opts,
            tls,
            dir,
        };
        let mut last_error = String::new();
        for _attempt in 0..10 {
            server.port = free_port();
            if server.opts.tls {
                server.tls_port = Some(free_port());
            }
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start after 10 attempts: {last_error}");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Spawns the process on `self.port` and waits until it answers. On failure the child is
    /// killed and reaped and an explanation returned.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_file(self.log_path());
        let mut cmd = Command::new(redis_server_bin());
        cmd.arg("--port")
            .arg(self.port.to_string())
            // `-::1`: also listen on IPv6 loopback when the host has it (optional bind).
            .args(["--bind", "127.0.0.1", "-::1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--daemonize", "no"])
            .arg("--logfile")
            .arg(self.log_path());
        if let Some(pass) = &self.opts.requirepass {
            cmd.arg("--requirepass").arg(pass);
        }
        for (user, pass) in &self.opts.acl_users {
            cmd.arg("--user")
                .arg(user)
                .arg("on")
                .arg(format!(">{pass}"))
                .args(["~*", "&*", "+@all"]);
        }
        if let (Some(tls_port), Some(tls)) = (self.tls_port, &self.tls) {
            let d = tls.dir.path();
            cmd.arg("--tls-port")
                .arg(tls_port.to_string())
                .arg("--tls-cert-file")
                .arg(d.join("server.crt"))
                .arg("--tls-key-file")
                .arg(d.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(d.join("ca.crt"))
                .args(["--tls-auth-clients", "no"]);
        }
        cmd.args(&self.opts.extra_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", redis_server_bin()))?;
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut stderr = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut stderr);
                    }
                    self.child = None;
                    return Err(format!(
                        "redis-server on port {} exited at start ({status}): {stderr}\n{}",
                        self.port,
                        self.log_tail()
                    ));
                }
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.reap();
                panic!(
                    "redis-server on port {} did not answer PING within {:?}; log:\n{}",
                    self.port,
                    START_TIMEOUT,
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// True when the plain port answers PING (any reply, e.g. `-NOAUTH`, counts) and, for a
    /// TLS server, the TLS port accepts connections.
    fn answers(&self) -> bool {
        // Our own log says so first: a PING alone could be answered by a foreign server that
        // holds the port our child failed to bind.
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        if !log.contains("Ready to accept connections") {
            return false;
        }
        let ping = vec![vec!["PING"]];
        if run_commands(self.port, &ping, Duration::from_millis(500)).is_err() {
            return false;
        }
        match self.tls_port {
            Some(p) => TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], p)),
                Duration::from_millis(500),
            )
            .is_ok(),
            None => true,
        }
    }

    /// SIGKILL + wait (a stopped process dies on SIGKILL too).
    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("redis-server is not running");
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
    }

    /// The plain TCP port (on 127.0.0.1, and on `::1` when the host has IPv6).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port, when started with `tls: true`.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The generated TLS material, when started with `tls: true`.
    pub fn tls(&self) -> Option<&TlsMaterial> {
        self.tls.as_ref()
    }

    /// `redis://127.0.0.1:PORT`, with the password of the default user when `requirepass` is set.
    ///
    /// ```no_run
    /// let s = redlock_tests::RedisServer::start();
    /// assert_eq!(s.url(), format!("redis://127.0.0.1:{}", s.port()));
    /// ```
    pub fn url(&self) -> String {
        self.url_with(None, self.opts.requirepass.as_deref(), 0)
    }

    /// `redis://[user[:password]@]127.0.0.1:PORT[/db]` (db 0 is omitted).
    ///
    /// ```no_run
    /// let s = redlock_tests::RedisServer::start();
    /// assert!(s.url_with(Some("alice"), Some("pw"), 3).ends_with("/3"));
    /// ```
    pub fn url_with(&self, user: Option<&str>, password: Option<&str>, db: u16) -> String {
        let auth = match (user, password) {
            (Some(u), Some(p)) => format!("{u}:{p}@"),
            (Some(u), None) => format!("{u}@"),
            (None, Some(p)) => format!(":{p}@"),
            (None, None) => String::new(),
        };
        let db = if db == 0 {
            String::new()
        } else {
            format!("/{db}")
        };
        format!("redis://{auth}127.0.0.1:{}{db}", self.port)
    }

    /// `rediss://localhost:TLSPORT` when started with TLS.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("rediss://localhost:{p}"))
    }

    /// Runs one command over a fresh TCP connection (AUTH first when `requirepass` is set)
    /// and returns its reply; panics when the server cannot be reached.
    ///
    /// ```no_run
    /// use redlock_tests::{RedisServer, Reply};
    /// let s = RedisServer::start();
    /// assert_eq!(s.command(&["PING"]), Reply::Str("PONG".into()));
    /// ```
    pub fn command(&self, args: &[&str]) -> Reply {
        self.command_in_db(0, args)
    }

    /// Like [`RedisServer::command`], after `SELECT db`.
    ///
    /// ```no_run
    /// use redlock_tests::{RedisServer, Reply};
    /// let s = RedisServer::start();
    /// assert_eq!(s.command_in_db(3, &["GET", "nothing"]), Reply::Nil);
    /// ```
    pub fn command_in_db(&self, db: u16, args: &[&str]) -> Reply {
        self.try_command_in_db(db, args).unwrap_or_else(|e| {
            panic!(
                "command {:?} to redis-server on port {} failed: {e}",
                args.first(),
                self.port
            )
        })
    }

    /// Like [`RedisServer::command_in_db`], returning I/O errors instead of panicking
    /// (times out after 5 s, e.g. on a paused server).
    pub fn try_command_in_db(&self, db: u16, args: &[&str]) -> io::Result<Reply> {
        let db_s = db.to_string();
        let mut cmds: Vec<Vec<&str>> = Vec::new();
        if let Some(pass) = &self.opts.requirepass {
            cmds.push(vec!["AUTH", pass.as_str()]);
        }
        if db != 0 {
            cmds.push(vec!["SELECT", db_s.as_str()]);
        }
        cmds.push(args.to_vec());
        run_commands(self.port, &cmds, Duration::from_secs(5))
    }

    /// How many times the server ran `command` (lower case, e.g. `"eval"`)
    /// since it started or since [`RedisServer::reset_stats`], from
    /// `INFO commandstats`: how a test tells a one-round fenced acquire (one
    /// script per node) from a two-round one.
    ///
    /// ```no_run
    /// let s = redlock_tests::RedisServer::start();
    /// s.command(&["EVAL", "return 1", "0"]);
    /// assert_eq!(s.calls("eval"), 1);
    /// ```
    pub fn calls(&self, command: &str) -> u64 {
        let Reply::Str(info) = self.command(&["INFO", "commandstats"]) else {
            panic!("INFO commandstats on port {} gave no text", self.port)
        };
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().expect("a call count"))
    }

    /// Resets the server's command statistics (`CONFIG RESETSTAT`).
    ///
    /// ```no_run
    /// let s = redlock_tests::RedisServer::start();
    /// s.reset_stats();
    /// assert_eq!(s.calls("eval"), 0);
    /// ```
    pub fn reset_stats(&self) {
        assert_eq!(
            self.command(&["CONFIG", "RESETSTAT"]),
            Reply::Str("OK".into())
        );
    }

    /// The fence register of `resource` on this server (`{resource}:fence`,
    /// see `redlock_core::fence_register`), if set.
    ///
    /// ```no_run
    /// let s = redlock_tests::RedisServer::start();
    /// assert_eq!(s.fence_register("r"), None);
    /// s.command(&["SET", "{r}:fence", "42"]);
    /// assert_eq!(s.fence_register("r"), Some(42));
    /// ```
    pub fn fence_register(&self, resource: &str) -> Option<u64> {
        match self.command(&["GET", &format!("{{{resource}}}:fence")]) {
            Reply::Nil => None,
            Reply::Str(s) => Some(s.parse().expect("an integer fence register")),
            other => panic!("fence register of {resource:?}: {other:?}"),
        }
    }

    /// Suspends the server with SIGSTOP: connections stay open, nothing answers.
    pub fn pause(&self) {
        kill(self.pid(), Signal::SIGSTOP).expect("SIGSTOP redis-server");
    }

    /// Resumes a paused server with SIGCONT.
    pub fn resume(&self) {
        kill(self.pid(), Signal::SIGCONT).expect("SIGCONT redis-server");
    }

    /// Kills the server (SIGKILL) and waits for it; [`RedisServer::restart`] brings it back.
    pub fn kill(&mut self) {
        self.reap();
    }

    /// True while the process runs (it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server if running and starts it again on the same port with an empty
    /// dataset; returns once it answers.
    pub fn restart(&mut self) {
        self.reap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("redis-server could not restart on port {}: {e}", self.port)
                }
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Several independent servers, the nodes of one Redlock deployment.
#[derive(Debug)]
pub struct Cluster {
    /// The servers, in node order.
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    /// Starts `n` servers with default options (in parallel).
    ///
    /// ```no_run
    /// let c = redlock_tests::Cluster::start(5);
    /// assert_eq!(c.urls().len(), 5);
    /// ```
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, ServerOptions::default())
    }

    /// Starts `n` servers with the same options (in parallel).
    pub fn start_with(n: usize, opts: ServerOptions) -> Cluster {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let opts = opts.clone();
                thread::spawn(move || RedisServer::start_with(opts))
            })
            .collect();
        let nodes = handles
            .into_iter()
            .map(|h| h.join().expect("starting a redis-server panicked"))
            .collect();
        Cluster { nodes }
    }

    /// Every node's [`RedisServer::url`], in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Waits (up to `within`) until `key` is absent on every node; returns
    /// whether it was. Releases are decided at quorum and reach the other
    /// nodes a moment later on their pipelined connections: this is how a
    /// test waits for them without a fixed sleep.
    ///
    /// ```no_run
    /// let c = redlock_tests::Cluster::start(3);
    /// assert!(c.wait_gone("k", std::time::Duration::from_secs(1)));
    /// ```
    pub fn wait_gone(&self, key: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let gone = self
                .nodes
                .iter()
                .all(|n| n.try_command_in_db(0, &["EXISTS", key]).ok() != Some(Reply::Int(1)));
            if gone {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

/// How a [`GarbageServer`] misbehaves on every connection (after the client's first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GarbageMode {
    /// Answers every read with random bytes.
    RandomBytes,
    /// Sends `$9999999999\r\n` (a 10 GB bulk string header), then nothing.
    HugeBulkHeader,
    /// Sends a simple string that never ends (`+OOOO...`), one byte per 100 ms, forever.
    Trickle,
    /// Accepts and reads, never writes.
    Silence,
    /// Sends `+O` and closes the connection.
    CloseMidReply,
}

/// A deliberately broken TCP server on a free loopback port, serving any number of
/// connections in the given [`GarbageMode`]. Dropping it stops it.
///
/// ```no_run
/// use redlock_tests::{GarbageMode, GarbageServer};
/// let g = GarbageServer::start(GarbageMode::Silence);
/// assert!(g.url().starts_with("redis://127.0.0.1:"));
/// ```
#[derive(Debug)]
pub struct GarbageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GarbageServer {
    /// Starts the server thread.
    pub fn start(mode: GarbageMode) -> GarbageServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind garbage server");
        let addr = listener.local_addr().expect("garbage server addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut conns = Vec::new();
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let stop3 = Arc::clone(&stop2);
                    conns.push(thread::spawn(move || serve_garbage(stream, mode, &stop3)));
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        GarbageServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for GarbageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_garbage(mut stream: TcpStream, mode: GarbageMode, stop: &AtomicBool) {
    use rand::RngCore;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 4096];
    let mut got_request = false;
    let mut trickle_started = false;
    let mut last_trickle = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {
                let first = !got_request;
                got_request = true;
                match mode {
                    GarbageMode::RandomBytes => {
                        let mut junk = vec![0u8; 1024];
                        rand::rng().fill_bytes(&mut junk);
                        if stream.write_all(&junk).is_err() {
                            return;
                        }
                    }
                    GarbageMode::HugeBulkHeader
                        if first && stream.write_all(b"$9999999999\r\n").is_err() =>
                    {
                        return;
                    }
                    GarbageMode::CloseMidReply => {
                        let _ = stream.write_all(b"+O");
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                    _ => {}
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(_) => return,
        }
        if mode == GarbageMode::Trickle && got_request {
            if !trickle_started {
                trickle_started = true;
                if stream.write_all(b"+").is_err() {
                    return;
                }
                last_trickle = Instant::now();
            } else if last_trickle.elapsed() >= Duration::from_millis(100) {
                last_trickle = Instant::now();
                if stream.write_all(b"O").is_err() {
                    return;
                }
            }
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Nil => f.write_str("(nil)"),
            Reply::Int(i) => write!(f, "(integer) {i}"),
            Reply::Str(s) => write!(f, "{s:?}"),
            Reply::Err(e) => write!(f, "(error) {e}"),
            Reply::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

// The repository README's Rust examples compile (doctests of this crate,
// which has both transports as dev-dependencies).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct RootReadmeDoctests;
