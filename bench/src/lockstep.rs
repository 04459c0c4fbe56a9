//! The one-thread lockstep-pipelined minimal client (`lockstep-min`): the
//! throughput reference of the concurrency workloads.
//!
//! One OS thread owns one blocking TCP connection per node and `K` locks
//! (the workload's concurrent workers). Each step, every lock's next command
//! (`SET key token NX PX ttl` for an acquire, the compare-and-delete script
//! by `EVALSHA` for a release) is encoded once into one batch, the batch is
//! written to every node with one `write`, and then every node's replies are
//! read (the same count, in order). Then every lock advances: an acquire
//! held by a quorum becomes a release; a release that a quorum confirmed
//! counts one cycle and the lock starts again on a fresh resource. So a step
//! costs one round trip for all K locks together, with the fewest system
//! calls a client can make (N writes and about N reads per step) and no
//! thread or task hand-off at all.
//!
//! Like `baseline.rs`, it leaves out what a healthy benchmark never needs
//! (timeouts, reconnection, auth, TLS); replies are single RESP lines here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::workload::Measurement;

const RELEASE: &str =
    "if redis.call('get',KEYS[1]) == ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";

/// Appends a RESP array of bulk strings.
fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    use std::io::Write as _;
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One node: the write half and a buffered reader over the same socket.
struct Node {
    write: TcpStream,
    read: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Node {
    fn connect(url: &str) -> Result<(Node, String), String> {
        let addr = url.trim_start_matches("redis://");
        let stream = TcpStream::connect(addr).map_err(|e| format!("{url}: connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("{url}: nodelay: {e}"))?;
        // A bound on every read, so a node that stops answering cannot hang
        // the bench (the workloads never come near it).
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| format!("{url}: read timeout: {e}"))?;
        let read = stream
            .try_clone()
            .map_err(|e| format!("{url}: clone: {e}"))?;
        let mut node = Node {
            write: stream,
            read: BufReader::with_capacity(64 * 1024, read),
            line: Vec::with_capacity(64),
        };
        let mut load = Vec::new();
        encode(&mut load, &[b"SCRIPT", b"LOAD", RELEASE.as_bytes()]);
        node.write
            .write_all(&load)
            .map_err(|e| format!("{url}: write: {e}"))?;
        node.next_line().map_err(|e| format!("{url}: {e}"))?; // $40
        node.next_line().map_err(|e| format!("{url}: {e}"))?; // the SHA
        let sha = String::from_utf8_lossy(node.line.trim_ascii_end()).into_owned();
        Ok((node, sha))
    }

    fn next_line(&mut self) -> Result<(), String> {
        self.line.clear();
        match self.read.read_until(b'\n', &mut self.line) {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Reads one single-line reply: `+OK` or `:1` is a success.
    fn reply(&mut self) -> Result<bool, String> {
        self.next_line()?;
        Ok(self.line.starts_with(b"+OK") || self.line.starts_with(b":1"))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Acquire,
    /// Release; `true` when the acquire was held (a cycle on success).
    Release(bool),
}

struct Slot {
    resource: Vec<u8>,
    token: [u8; 32],
    phase: Phase,
    started: Instant,
    /// Successes among this step's replies.
    ok: usize,
    next: u64,
}

fn fresh(slot: &mut Slot, prefix: &str, worker: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    slot.resource.clear();
    let _ = write!(slot.resource, "{prefix}:{worker}:{}", slot.next);
    slot.next += 1;
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    for (i, b) in raw.iter().enumerate() {
        slot.token[2 * i] = HEX[usize::from(b >> 4)];
        slot.token[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    slot.phase = Phase::Acquire;
}

/// Runs `k` locks in lockstep on one thread for `duration`: cycles/s.
pub(crate) fn run(
    urls: &[String],
    k: usize,
    ttl: Duration,
    duration: Duration,
    prefix: &str,
) -> Result<Measurement, String> {
    let mut nodes = Vec::with_capacity(urls.len());
    let mut sha = String::new();
    for url in urls {
        let (node, s) = Node::connect(url)?;
        nodes.push(node);
        sha = s;
    }
    let (n, quorum) = (nodes.len(), nodes.len() / 2 + 1);
    let ttl_ms = ttl.as_millis().to_string();
    let drift = ttl / 100 + Duration::from_millis(2);
    let mut slots: Vec<Slot> = (0..k)
        .map(|w| {
            let mut slot = Slot {
                resource: Vec::with_capacity(prefix.len() + 24),
                token: [0; 32],
                phase: Phase::Acquire,
                started: Instant::now(),
                ok: 0,
                next: 0,
            };
            fresh(&mut slot, prefix, w);
            slot
        })
        .collect();
    let mut batch = Vec::with_capacity(k * 160);
    let (mut cycles, mut failures) = (0u64, 0u64);
    let mut first_error = None;
    let start = Instant::now();
    while start.elapsed() < duration {
        batch.clear();
        let now = Instant::now();
        for slot in &mut slots {
            slot.ok = 0;
            match slot.phase {
                Phase::Acquire => {
                    slot.started = now;
                    encode(
                        &mut batch,
                        &[
                            b"SET",
                            &slot.resource,
                            &slot.token,
                            b"NX",
                            b"PX",
                            ttl_ms.as_bytes(),
                        ],
                    );
                }
                Phase::Release(_) => encode(
                    &mut batch,
                    &[
                        b"EVALSHA",
                        sha.as_bytes(),
                        b"1",
                        &slot.resource,
                        &slot.token,
                    ],
                ),
            }
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            node.write
                .write_all(&batch)
                .map_err(|e| format!("{}: write: {e}", urls[i]))?;
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            for slot in &mut slots {
                if node.reply().map_err(|e| format!("{}: {e}", urls[i]))? {
                    slot.ok += 1;
                }
            }
        }
        let now = Instant::now();
        for (w, slot) in slots.iter_mut().enumerate() {
            match slot.phase {
                Phase::Acquire => {
                    let held = slot.ok >= quorum && now - slot.started + drift < ttl;
                    if !held {
                        failures += 1;
                        first_error.get_or_insert_with(|| {
                            format!("acquire held by {} of {n} nodes", slot.ok)
                        });
                    }
                    slot.phase = Phase::Release(held);
                }
                Phase::Release(held) => {
                    if held && slot.ok >= quorum {
                        cycles += 1;
                    } else if held {
                        failures += 1;
                        first_error.get_or_insert_with(|| {
                            format!("release confirmed by {} of {n} nodes", slot.ok)
                        });
                    }
                    fresh(slot, prefix, w);
                }
            }
        }
    }
    let elapsed = start.elapsed();
    Ok(Measurement {
        rate: cycles as f64 / elapsed.as_secs_f64(),
        cycles,
        failures,
        first_error,
        ..Measurement::default()
    })
}
