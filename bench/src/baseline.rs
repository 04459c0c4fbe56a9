//! The raw baseline: the least work any correct Redlock client can do on the
//! healthy path, so every other figure can be read as "overhead over this".
//!
//! * One persistent TCP connection per node, shared by every lock. Requests
//!   on a connection are answered in order, so a FIFO of waiting replies is
//!   all the multiplexing needed. The caller writes its own requests (one
//!   `write` each, no writer task); one reader task per node wakes the
//!   waiters.
//! * Acquire: `SET key token NX PX ttl` to all nodes at once; returns as soon
//!   as a quorum said OK (or a quorum became impossible), checks the validity
//!   (`ttl - elapsed - drift > 0`). A failed attempt releases on every node.
//! * Release: the compare-and-delete script by `EVALSHA` (loaded once per
//!   connection) on all nodes in parallel, waiting for every answer; or,
//!   as the quorum-for-both client (`quorum-min`), returning as soon as a
//!   quorum confirmed (or a quorum became impossible): the other replies are
//!   read off the connection by its reader task and dropped.
//!
//! Both build each command with one allocation (the buffer it is written
//! from) and no formatting machinery, so that their CPU time is as close to
//! "the least possible" as a shared async client gets.
//!
//! Deliberately missing, because a healthy benchmark never needs them: node
//! timeouts, reconnection, auth, TLS, error reporting. Replies are single
//! RESP lines here (`+OK`, `$-1`, `:1`, `:0`, `-ERR ...`), so the reader
//! reads lines.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rand::RngCore;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const RELEASE: &str =
    "if redis.call('get',KEYS[1]) == ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";

/// A connection to one node. A caller writes its request itself (no task
/// hop), and queues the reply's waiter under the same lock, so the FIFO's
/// order is the wire's order; the node's reader task hands each reply to
/// the next waiter.
#[derive(Debug)]
struct Node {
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Arc<Mutex<VecDeque<oneshot::Sender<bool>>>>,
}

/// The minimal client.
#[derive(Debug)]
pub(crate) struct Baseline {
    nodes: Vec<Node>,
    sha: String,
    ttl: Duration,
    /// Release returns at quorum (`quorum-min`) instead of waiting for all.
    release_at_quorum: bool,
}

/// A held lock.
#[derive(Debug)]
pub(crate) struct Lease {
    resource: String,
    token: [u8; 32],
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A RESP array of bulk strings, in one allocation.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let len = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    let mut out = Vec::with_capacity(len);
    out.push(b'*');
    push_decimal(&mut out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(&mut out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// 16 random bytes as 32 lowercase hex digits.
fn random_token() -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    let mut token = [0u8; 32];
    for (i, b) in raw.iter().enumerate() {
        token[2 * i] = HEX[usize::from(b >> 4)];
        token[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    token
}

impl Node {
    /// Connects, loads the release script, and starts the reader task.
    /// Returns the node and the script's SHA.
    async fn connect(url: &str) -> std::io::Result<(Node, String)> {
        let addr = url.trim_start_matches("redis://");
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        write
            .write_all(&encode(&[b"SCRIPT", b"LOAD", RELEASE.as_bytes()]))
            .await?;
        let mut line = String::new();
        read.read_line(&mut line).await?; // $40
        line.clear();
        read.read_line(&mut line).await?; // the SHA
        let sha = line.trim_end().to_owned();

        let waiters = Arc::new(Mutex::new(VecDeque::<oneshot::Sender<bool>>::new()));
        let queue = waiters.clone();
        tokio::spawn(async move {
            let mut line = Vec::with_capacity(64);
            loop {
                line.clear();
                match read.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                // A bulk string header other than nil would need its body
                // read too; none of our commands gets one.
                if line[0] == b'$' && line[1] != b'-' {
                    let len: usize = std::str::from_utf8(&line[1..line.len() - 2])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len + 2];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                }
                // `+OK` to SET, `:1` to the release script: success.
                let ok = line.starts_with(b"+OK") || line.starts_with(b":1");
                let waiter = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(ok); // the caller may have stopped listening
                    }
                    None => return, // a reply nobody asked for
                }
            }
        });
        let write = tokio::sync::Mutex::new(write);
        Ok((Node { write, waiters }, sha))
    }

    /// Writes a request now; the receiver yields whether it succeeded.
    async fn send(&self, bytes: &[u8]) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let mut write = self.write.lock().await;
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(tx);
        let _ = write.write_all(bytes).await; // a dead node: the waiter is dropped
        rx
    }
}

impl Baseline {
    /// Connects to every node; `release_at_quorum` makes it the
    /// quorum-for-both client.
    pub(crate) async fn connect(
        urls: &[String],
        ttl: Duration,
        release_at_quorum: bool,
    ) -> std::io::Result<Baseline> {
        let mut nodes = Vec::new();
        let mut sha = String::new();
        for url in urls {
            let (node, s) = Node::connect(url).await?;
            nodes.push(node);
            sha = s;
        }
        Ok(Baseline {
            nodes,
            sha,
            ttl,
            release_at_quorum,
        })
    }

    fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// One attempt: `Some` iff held by a quorum with validity left.
    pub(crate) async fn try_lock(&self, resource: &str) -> Option<Lease> {
        let start = Instant::now();
        let token = random_token();
        let mut ttl_ms = Vec::with_capacity(20);
        push_decimal(&mut ttl_ms, self.ttl.as_millis() as usize);
        let set = encode(&[b"SET", resource.as_bytes(), &token, b"NX", b"PX", &ttl_ms]);
        let mut replies = FuturesUnordered::new();
        for node in &self.nodes {
            replies.push(node.send(&set).await);
        }
        let (n, quorum) = (self.nodes.len(), self.quorum());
        let (mut ok, mut failed) = (0, 0);
        while let Some(reply) = replies.next().await {
            if reply == Ok(true) {
                ok += 1;
            } else {
                failed += 1;
            }
            if ok >= quorum || failed > n - quorum {
                break;
            }
        }
        let drift = self.ttl / 100 + Duration::from_millis(2);
        let lease = Lease {
            resource: resource.to_owned(),
            token,
        };
        if ok >= quorum && start.elapsed() + drift < self.ttl {
            Some(lease)
        } else {
            self.release(&lease).await;
            None
        }
    }

    /// Compare-and-delete on every node in parallel; waits for all answers,
    /// or (quorum-for-both) until a quorum confirmed or became impossible.
    /// Returns on how many nodes the key was ours, among those that answered.
    pub(crate) async fn release(&self, lease: &Lease) -> usize {
        let eval = encode(&[
            b"EVALSHA",
            self.sha.as_bytes(),
            b"1",
            lease.resource.as_bytes(),
            &lease.token,
        ]);
        let mut replies = FuturesUnordered::new();
        for node in &self.nodes {
            replies.push(node.send(&eval).await);
        }
        let (n, quorum) = (self.nodes.len(), self.quorum());
        let (mut released, mut failed) = (0, 0);
        while let Some(reply) = replies.next().await {
            if reply == Ok(true) {
                released += 1;
            } else {
                failed += 1;
            }
            if self.release_at_quorum && (released >= quorum || failed > n - quorum) {
                break;
            }
        }
        released
    }
}
