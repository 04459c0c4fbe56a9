//! Test support: in-memory fake nodes that speak just enough RESP, and a
//! pump that drives a core against them. Test-only: real-server behaviour is
//! covered by the integration tests in `tests/` against `redis-server`.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use redlock_core::{
    Config, Event, Instant, NodeConfig, NodeId, Redlock, ACQUIRE_SCRIPT, EXTEND_SCRIPT, EXTEND_SHA,
    FENCE_WRITE_SCRIPT, RELEASE_SCRIPT, RELEASE_SHA,
};

/// A deterministic RNG for tests (not cryptographic, which is fine here).
pub struct TestRng(pub u64);
impl rand_core::TryRng for TestRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Ok(self.0 >> 11 ^ self.0)
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
        for b in d {
            *b = self.try_next_u64()? as u8;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for TestRng {}

/// How a fake node behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Like Redis.
    Normal,
    /// Reads everything, answers nothing.
    Silent,
    /// Answers every command with this error line.
    Error(&'static str),
}

/// Just enough of a Redis node for unit tests.
pub struct FakeNode {
    pub keys: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    /// Fence registers (no expiry).
    pub registers: BTreeMap<Vec<u8>, u64>,
    pub mode: Mode,
    pub scripts: bool,
    inbuf: Vec<u8>,
    pub commands: Vec<Vec<Vec<u8>>>,
}

impl FakeNode {
    pub fn new() -> FakeNode {
        FakeNode {
            keys: BTreeMap::new(),
            registers: BTreeMap::new(),
            mode: Mode::Normal,
            scripts: false,
            inbuf: Vec::new(),
            commands: Vec::new(),
        }
    }

    /// Feeds request bytes at node time `now_ms`; returns reply bytes.
    pub fn handle(&mut self, bytes: &[u8], now_ms: u64) -> Vec<u8> {
        self.inbuf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some((args, used)) = parse_command(&self.inbuf) {
            self.inbuf.drain(..used);
            self.commands.push(args.clone());
            match self.mode {
                Mode::Silent => {}
                Mode::Error(e) => {
                    out.extend_from_slice(format!("-{e}\r\n").as_bytes());
                }
                Mode::Normal => out.extend_from_slice(&self.execute(&args, now_ms)),
            }
        }
        out
    }

    fn live(&mut self, key: &[u8], now_ms: u64) -> Option<Vec<u8>> {
        match self.keys.get(key) {
            Some((v, exp)) if *exp > now_ms => Some(v.clone()),
            Some(_) => {
                self.keys.remove(key);
                None
            }
            None => None,
        }
    }

    fn execute(&mut self, a: &[Vec<u8>], now: u64) -> Vec<u8> {
        let up = |i: usize| a.get(i).map(|x| x.to_ascii_uppercase()).unwrap_or_default();
        match up(0).as_slice() {
            b"SELECT" if std::str::from_utf8(&a[1]).unwrap().parse::<u32>().unwrap() > 15 => {
                b"-ERR DB index is out of range\r\n".to_vec()
            }
            b"AUTH" | b"SELECT" => b"+OK\r\n".to_vec(),
            b"SCRIPT" => {
                self.scripts = true;
                b"$40\r\n0123456789012345678901234567890123456789\r\n".to_vec()
            }
            b"SET" => {
                let ttl: u64 = std::str::from_utf8(&a[5]).unwrap().parse().unwrap();
                if self.live(&a[1], now).is_some() {
                    b"$-1\r\n".to_vec()
                } else {
                    self.keys.insert(a[1].clone(), (a[2].clone(), now + ttl));
                    b"+OK\r\n".to_vec()
                }
            }
            b"EVALSHA" | b"EVAL" => {
                let body: &str = if up(0) == b"EVALSHA" {
                    if !self.scripts {
                        return b"-NOSCRIPT No matching script. Please use EVAL.\r\n".to_vec();
                    }
                    if a[1] == RELEASE_SHA.as_bytes() {
                        RELEASE_SCRIPT
                    } else if a[1] == EXTEND_SHA.as_bytes() {
                        EXTEND_SCRIPT
                    } else {
                        panic!("EVALSHA of an unknown script")
                    }
                } else {
                    self.scripts = true;
                    std::str::from_utf8(&a[1]).unwrap()
                };
                let nk: usize = std::str::from_utf8(&a[2]).unwrap().parse().unwrap();
                let keys: Vec<Vec<u8>> = a[3..3 + nk].to_vec();
                let argv: Vec<Vec<u8>> = a[3 + nk..].to_vec();
                self.script(body, &keys, &argv, now)
            }
            _ => b"-ERR unknown command\r\n".to_vec(),
        }
    }
}

impl FakeNode {
    fn int(n: i64) -> Vec<u8> {
        format!(":{n}\r\n").into_bytes()
    }

    /// Runs one of the core's scripts (recognised by its body) natively.
    fn script(&mut self, body: &str, keys: &[Vec<u8>], argv: &[Vec<u8>], now: u64) -> Vec<u8> {
        let num = |b: &[u8]| -> u64 { std::str::from_utf8(b).unwrap().parse().unwrap() };
        let token = &argv[0];
        if body == RELEASE_SCRIPT {
            let (mut n, mut other) = (0, false);
            for k in keys {
                match self.live(k, now) {
                    Some(v) if &v == token => {
                        self.keys.remove(k);
                        n += 1;
                    }
                    Some(_) => other = true,
                    None => {}
                }
            }
            Self::int(if n > 0 {
                n
            } else if other {
                0
            } else {
                -1
            })
        } else if body == EXTEND_SCRIPT {
            let (mut mine, mut other) = (0, false);
            for k in keys {
                match self.live(k, now) {
                    Some(v) if &v == token => mine += 1,
                    Some(_) => other = true,
                    None => {}
                }
            }
            if mine == keys.len() {
                let ttl = num(&argv[1]);
                for k in keys {
                    let v = self.keys[k].0.clone();
                    self.keys.insert(k.clone(), (v, now + ttl));
                }
                Self::int(1)
            } else {
                Self::int(if other { 0 } else { -1 })
            }
        } else if body == ACQUIRE_SCRIPT {
            let fenced = argv.len() > 2;
            let k = if fenced { keys.len() / 2 } else { keys.len() };
            if keys[..k].iter().any(|key| self.live(key, now).is_some()) {
                return Self::int(-1);
            }
            let mut old = 0;
            if fenced {
                for reg in &keys[k..] {
                    old = old.max(self.registers.get(reg).copied().unwrap_or(0));
                }
            }
            let ttl = num(&argv[1]);
            for key in &keys[..k] {
                self.keys.insert(key.clone(), (token.clone(), now + ttl));
            }
            if fenced {
                let p = num(&argv[2]);
                for reg in &keys[k..] {
                    let r = self.registers.entry(reg.clone()).or_insert(0);
                    if *r < p {
                        *r = p;
                    }
                }
            }
            Self::int(old as i64)
        } else if body == FENCE_WRITE_SCRIPT {
            let k = keys.len() / 2;
            for key in &keys[..k] {
                if self.live(key, now).as_ref() != Some(token) {
                    return Self::int(0);
                }
            }
            let f = num(&argv[1]);
            for reg in &keys[k..] {
                let r = self.registers.entry(reg.clone()).or_insert(0);
                *r = (*r).max(f);
            }
            Self::int(1)
        } else {
            panic!("unknown script {body}")
        }
    }
}

/// Parses one RESP array of bulk strings; `None` if incomplete.
pub fn parse_command(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    let (head, mut at) = line(buf, 0)?;
    assert_eq!(head[0], b'*', "fake node expects arrays");
    let n: usize = std::str::from_utf8(&head[1..]).unwrap().parse().unwrap();
    let mut args = Vec::new();
    for _ in 0..n {
        let (h, next) = line(buf, at)?;
        assert_eq!(h[0], b'$');
        let len: usize = std::str::from_utf8(&h[1..]).unwrap().parse().unwrap();
        if buf.len() < next + len + 2 {
            return None;
        }
        args.push(buf[next..next + len].to_vec());
        at = next + len + 2;
    }
    Some((args, at))
}

/// A core wired to fake nodes, with a virtual clock.
pub struct Rig<const OPS: usize = 64, const PIPE: usize = 128> {
    pub core: Redlock<OPS, PIPE>,
    pub nodes: Vec<FakeNode>,
    pub now: Instant,
    pub events: Vec<Event>,
    /// Deliver replies split into chunks of this size (0 = whole).
    pub chunk: usize,
    /// Replies held back per node (not yet delivered).
    pub held: Vec<Vec<u8>>,
    /// Nodes whose replies are held rather than delivered.
    pub hold: Vec<bool>,
    /// Nodes that refuse connections (a Connect fails at once).
    pub refuse: Vec<bool>,
    pub buf: Vec<u8>,
}

impl<const OPS: usize, const PIPE: usize> Rig<OPS, PIPE> {
    pub fn new(n: usize, config: Config) -> Self {
        Self::with_nodes(&vec![NodeConfig::default(); n], config)
    }

    pub fn with_nodes(nodes: &[NodeConfig], config: Config) -> Self {
        let n = nodes.len();
        let mut rig = Rig {
            core: Redlock::new(config, nodes).unwrap(),
            nodes: (0..n).map(|_| FakeNode::new()).collect(),
            now: Instant::ZERO,
            events: Vec::new(),
            chunk: 0,
            held: vec![Vec::new(); n],
            hold: vec![false; n],
            refuse: vec![false; n],
            buf: vec![0u8; 4096],
        };
        rig.drain();
        rig
    }

    pub fn config(ttl_ms: u64) -> Config {
        let mut c = Config::new(Duration::from_millis(ttl_ms));
        c.node_timeout = Duration::from_millis(50);
        c
    }

    pub fn now_ms(&self) -> u64 {
        self.now.as_micros() / 1000
    }

    /// Drains outputs once: transmits go to nodes, replies come back.
    /// Connect directives are honoured at once. Returns whether anything happened.
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut progressed = false;
            while let Some(t) = self.core.poll_transmit(&mut self.buf) {
                progressed = true;
                let i = t.node.index();
                let now_ms = self.now_ms();
                let reply = self.nodes[i].handle(&self.buf[..t.len], now_ms);
                if self.hold[i] {
                    self.held[i].extend_from_slice(&reply);
                } else {
                    self.deliver(t.node, &reply);
                }
            }
            while let Some(e) = self.core.poll_event() {
                progressed = true;
                if let Event::Connect { node } = e {
                    if self.refuse[node.index()] {
                        self.core.handle_node_down(node, self.now);
                    } else {
                        self.core.handle_connected(node, self.now);
                    }
                }
                self.events.push(e);
            }
            if !progressed {
                return any;
            }
            any = true;
        }
    }

    pub fn deliver(&mut self, node: NodeId, bytes: &[u8]) {
        if self.chunk == 0 {
            self.core.handle_input(node, bytes, self.now);
        } else {
            for c in bytes.chunks(self.chunk) {
                self.core.handle_input(node, c, self.now);
            }
        }
    }

    /// Releases replies held for `node`.
    pub fn release_held(&mut self, node: usize) {
        let bytes = std::mem::take(&mut self.held[node]);
        self.deliver(NodeId(node as u8), &bytes);
        self.drain();
    }

    /// Advances virtual time to `t`, firing timeouts on the way.
    pub fn advance_to(&mut self, t: Instant) {
        loop {
            self.drain();
            match self.core.poll_timeout() {
                Some(next) if next <= t => {
                    self.now = self.now.max(next);
                    self.core.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = self.now.max(t);
        self.core.handle_timeout(self.now);
        self.drain();
    }

    pub fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.advance_to(t);
    }

    /// Runs until no operation is left in the core (bounded). Links to
    /// silent nodes may keep reconnecting: that is not an operation.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            self.drain();
            if self.core.operations_in_flight() == 0 {
                return;
            }
            match self.core.poll_timeout() {
                Some(t) => {
                    self.now = self.now.max(t);
                    self.core.handle_timeout(self.now);
                }
                None => return,
            }
        }
        panic!("core did not settle");
    }

    pub fn take_op_event(&mut self, op: redlock_core::OpId) -> Option<Event> {
        let i = self.events.iter().position(|e| e.op() == Some(op))?;
        Some(self.events.remove(i))
    }
}
