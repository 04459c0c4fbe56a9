//! The simulator's Redis model must agree with a real `redis-server`.
//!
//! Generated sequences of `SET NX PX`, `GET`, `EVALSHA`/`EVAL` of Redlock's
//! release and extend scripts, `SCRIPT LOAD`/`FLUSH`, `PTTL`, `EXISTS`,
//! `DEL` with small TTLs go, as identical RESP bytes, to a real server over
//! one connection and to a `redlock_sim::node::SimNode` whose clock is the
//! time elapsed since the sequence began. Replies must be byte-identical,
//! except `PTTL` values, which must agree within a tolerance. Commands are
//! never sent close to an expiry (a guard waits until well past it), so
//! scheduling noise cannot flip an outcome.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis_protocol::resp2::decode::decode;
use redlock_core::{
    ACQUIRE_SCRIPT, EXTEND_SCRIPT, EXTEND_SHA, FENCE_WRITE_SCRIPT, RELEASE_SCRIPT, RELEASE_SHA,
};
use redlock_sim::node::SimNode;
use redlock_tests::RedisServer;

/// How close to an expiry a command may run (ms), both sides.
const GUARD_MS: u64 = 60;
/// PTTL may differ by this much (ms).
const PTTL_TOLERANCE: i64 = 40;

fn resp(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n{}\r\n", a.len(), a).as_bytes());
    }
    v
}

/// Reads exactly one reply from the real server.
fn read_reply(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some((_, used))) = decode(pending) {
            return pending.drain(..used).collect();
        }
        assert!(Instant::now() < deadline, "no reply from redis-server");
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).expect("read from redis-server");
        assert!(n > 0, "redis-server closed the connection");
        pending.extend_from_slice(&buf[..n]);
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn generate(rng: &mut Rng) -> (Vec<String>, Option<u64>) {
    let key = rng.pick(&["a", "b"]);
    let tok = rng.pick(&["t1", "t2"]);
    let ttl = (100 + 50 * (rng.next() % 6)).to_string();
    let ttl_ms = ttl.parse().ok();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let tok = tok.to_string();
    let tok = tok.as_str();
    let p = rng.pick(&["5", "50", "500"]);
    match rng.next() % 26 {
        0..=3 => (s(&["SET", key, tok, "NX", "PX", &ttl]), ttl_ms),
        4 => (s(&["SET", key, tok, "PX", &ttl]), ttl_ms),
        5 => (s(&["GET", key]), None),
        6 => (s(&["EVALSHA", RELEASE_SHA, "1", key, tok]), None),
        7 => (s(&["EVALSHA", EXTEND_SHA, "1", key, tok, &ttl]), ttl_ms),
        8 => (s(&["EVAL", RELEASE_SCRIPT, "1", key, tok]), None),
        9 => (s(&["EVAL", EXTEND_SCRIPT, "1", key, tok, &ttl]), ttl_ms),
        10 => (
            s(&["SCRIPT", "LOAD", rng.pick(&[RELEASE_SCRIPT, EXTEND_SCRIPT])]),
            None,
        ),
        11 => (s(&["SCRIPT", "FLUSH"]), None),
        12 | 13 => (s(&["PTTL", key]), None),
        14 => (s(&["EXISTS", key]), None),
        15 => (s(&["DEL", key]), None),
        // Multi-resource and fencing scripts (keys a, b; registers {a}:fence, {b}:fence).
        16 | 17 => (
            s(&["EVAL", ACQUIRE_SCRIPT, "2", "a", "b", tok, &ttl]),
            ttl_ms,
        ),
        18 | 19 => (
            s(&[
                "EVAL",
                ACQUIRE_SCRIPT,
                "4",
                "a",
                "b",
                "{a}:fence",
                "{b}:fence",
                tok,
                &ttl,
                p,
            ]),
            ttl_ms,
        ),
        20 => (
            s(&[
                "EVAL",
                ACQUIRE_SCRIPT,
                "2",
                key,
                &format!("{{{key}}}:fence"),
                tok,
                &ttl,
                p,
            ]),
            ttl_ms,
        ),
        21 => (
            s(&[
                "EVAL",
                FENCE_WRITE_SCRIPT,
                "4",
                "a",
                "b",
                "{a}:fence",
                "{b}:fence",
                tok,
                p,
            ]),
            None,
        ),
        22 => (s(&["EVAL", RELEASE_SCRIPT, "2", "a", "b", tok]), None),
        23 => (
            s(&["EVAL", EXTEND_SCRIPT, "2", "a", "b", tok, &ttl]),
            ttl_ms,
        ),
        24 => (s(&["GET", rng.pick(&["{a}:fence", "{b}:fence"])]), None),
        _ => (s(&["DEL", rng.pick(&["{a}:fence", "{b}:fence"])]), None),
    }
}

fn int_reply(r: &[u8]) -> Option<i64> {
    std::str::from_utf8(r.strip_prefix(b":")?)
        .ok()?
        .trim_end()
        .parse()
        .ok()
}

#[test]
fn sim_node_agrees_with_redis_server() {
    let server = RedisServer::start();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    stream.set_nodelay(true).ok();
    let mut pending = Vec::new();
    let mut compared = 0;
    for seq in 0..10u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (seq + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
        for reset in [resp(&["FLUSHALL"]), resp(&["SCRIPT", "FLUSH"])] {
            stream.write_all(&reset).unwrap();
            read_reply(&mut stream, &mut pending);
        }
        let mut node = SimNode::new();
        let start = Instant::now();
        let now_ms = || start.elapsed().as_millis() as u64;
        // Expiry times (sim clock) that commands must stay away from.
        let mut expiries: Vec<u64> = Vec::new();
        for step in 0..14 {
            let (args, ttl) = generate(&mut rng);
            // Sometimes let time pass so that keys expire between commands.
            if rng.next().is_multiple_of(3) {
                std::thread::sleep(Duration::from_millis(rng.next() % 250));
            }
            // The guard: never run close to an expiry.
            loop {
                let now = now_ms();
                match expiries
                    .iter()
                    .find(|&&e| now + GUARD_MS > e && now < e + GUARD_MS)
                {
                    Some(&e) => std::thread::sleep(Duration::from_millis(e + GUARD_MS - now)),
                    None => break,
                }
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let bytes = resp(&refs);
            let at = now_ms();
            stream.write_all(&bytes).unwrap();
            let real = read_reply(&mut stream, &mut pending);
            let sim = node.reply(at, &bytes);
            let context = format!("sequence {seq} step {step}: {args:?} at {at} ms");
            if args[0] == "PTTL" {
                let (r, s) = (int_reply(&real), int_reply(&sim));
                match (r, s) {
                    (Some(r), Some(s)) if r < 0 || s < 0 => assert_eq!(r, s, "{context}"),
                    (Some(r), Some(s)) => assert!(
                        (r - s).abs() <= PTTL_TOLERANCE,
                        "{context}: real {r}, sim {s}"
                    ),
                    _ => panic!("{context}: real {real:?}, sim {sim:?}"),
                }
            } else {
                assert_eq!(
                    String::from_utf8_lossy(&real),
                    String::from_utf8_lossy(&sim),
                    "{context}: real vs sim"
                );
            }
            // Anything that may have set an expiry (a no-op is harmless).
            if let Some(ms) = ttl {
                expiries.push(at + ms);
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 140);
}

#[test]
fn sim_node_agrees_on_errors_and_edge_cases() {
    let server = RedisServer::start();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    let mut pending = Vec::new();
    let mut node = SimNode::new();
    let cases: Vec<Vec<&str>> = vec![
        vec!["PING"],
        vec!["SET", "k", "v", "PX", "0"],
        vec!["SET", "k", "v", "PX", "-5"],
        vec!["SET", "k", "v", "PX", "abc"],
        vec!["SET", "k", "v", "NX", "XX"],
        vec!["SET", "k", "v", "EX", "100"],
        vec!["SET", "k", "w", "NX", "PX", "100000"],
        vec!["GET", "k"],
        vec!["GET"],
        vec!["EVALSHA", RELEASE_SHA, "1", "k", "v"],
        vec!["EVAL", RELEASE_SCRIPT, "1", "k", "w"],
        vec!["EVALSHA", RELEASE_SHA, "1", "k", "w"],
        vec!["EVAL", RELEASE_SCRIPT, "-1", "k"],
        vec!["EVAL", RELEASE_SCRIPT, "3", "k"],
        vec!["SCRIPT", "EXISTS", RELEASE_SHA, EXTEND_SHA],
        vec!["SELECT", "3"],
        vec!["SELECT", "99"],
        vec!["GET", "k"],
        vec!["SET", "k", "v"],
        vec!["PTTL", "k"],
        vec!["SELECT", "0"],
        vec!["EXISTS", "k", "k", "zz"],
        vec!["DEL", "k", "zz"],
        vec!["AUTH", "nopass"],
        vec!["SET", "{g}:fence", "garbage"],
        vec![
            "EVAL",
            ACQUIRE_SCRIPT,
            "2",
            "g",
            "{g}:fence",
            "t",
            "1000",
            "5",
        ],
        vec!["EXISTS", "g"],
        vec!["SET", "{h}:fence", "9007199254740991"],
        vec![
            "EVAL",
            ACQUIRE_SCRIPT,
            "2",
            "h",
            "{h}:fence",
            "t",
            "1000",
            "5",
        ],
        vec![
            "EVAL",
            FENCE_WRITE_SCRIPT,
            "2",
            "h",
            "{h}:fence",
            "t",
            "9007199254740991",
        ],
        vec!["GET", "{h}:fence"],
        vec!["EVAL", EXTEND_SCRIPT, "2", "h", "zz", "t", "1000"],
        vec!["EVAL", RELEASE_SCRIPT, "2", "h", "zz", "t"],
        vec!["EVAL", RELEASE_SCRIPT, "2", "h", "zz", "t"],
    ];
    for args in cases {
        let bytes = resp(&args);
        stream.write_all(&bytes).unwrap();
        let real = read_reply(&mut stream, &mut pending);
        let sim = node.reply(0, &bytes);
        assert_eq!(
            String::from_utf8_lossy(&real),
            String::from_utf8_lossy(&sim),
            "{args:?}: real vs sim"
        );
    }
}
