//! Looking at the nodes and the soak process from the outside: when the
//! clients use a restarted node again (`CLIENT LIST`), which lock keys a
//! resumed node holds and for how long, the process's RSS and fds, and the
//! keys left after the run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use redis_protocol::resp2::types::OwnedFrame;

use crate::faults::Env;
use crate::probe::{self, Probe};
use crate::timeline::Clock;

/// How long a reconnect is watched for.
const RECONNECT_LIMIT: Duration = Duration::from_secs(10);
/// How often `CLIENT LIST` is read while watching.
const RECONNECT_POLL: Duration = Duration::from_millis(2);

/// A command that uses the lock (not the handshake, not our own probes).
fn is_use(cmd: &str) -> bool {
    !matches!(cmd, "NULL" | "auth" | "hello" | "select" | "ping" | "quit")
        && !cmd.starts_with("client")
        && !cmd.starts_with("command")
}

/// Users whose connections have run a lock command, from `CLIENT LIST`.
fn users_in_use(list: &str) -> Vec<String> {
    let mut users = Vec::new();
    for line in list.lines() {
        let mut user = None;
        let mut cmd = None;
        for field in line.split(' ') {
            if let Some(u) = field.strip_prefix("user=") {
                user = Some(u);
            } else if let Some(c) = field.strip_prefix("cmd=") {
                cmd = Some(c);
            }
        }
        if let (Some(u), Some(c)) = (user, cmd) {
            if is_use(c) {
                users.push(u.to_owned());
            }
        }
    }
    users
}

/// Something to watch, from the fault thread.
#[derive(Debug)]
pub(crate) enum Job {
    /// Node `node` was restarted: the new process was spawned at `spawn`
    /// and answered at `ready` (ns).
    Restarted {
        port: u16,
        node: usize,
        spawn: u64,
        ready: u64,
    },
    /// Node `node` got SIGCONT at `resumed` (ns).
    Resumed {
        port: u16,
        node: usize,
        resumed: u64,
    },
}

/// One lock key seen on a node after it resumed from SIGSTOP.
#[derive(Clone, Debug)]
struct KeyObs {
    /// First and last seen (ns).
    first: u64,
    last: u64,
    /// Its PTTL when first seen (ms).
    pttl_first: i64,
    /// First look at which it was gone (ns), if it went before the watch ended.
    gone: Option<u64>,
}

/// How often a resumed node's keys are read.
const STALE_POLL: Duration = Duration::from_millis(5);

/// A watch in progress.
#[derive(Debug)]
struct Active {
    job: Job,
    probe: Option<Probe>,
    /// When to look next (ns).
    due: u64,
    /// Restarted: per client, ns after `ready` it was first seen using the node.
    used: Vec<Option<u64>>,
    /// Resumed: every (resource, token) seen.
    seen: BTreeMap<(usize, String), KeyObs>,
    done: bool,
}

impl Active {
    fn new(job: Job, env: &Env) -> Active {
        Active {
            job,
            probe: None,
            due: 0,
            used: vec![None; env.users.len()],
            seen: BTreeMap::new(),
            done: false,
        }
    }

    fn port_node(&self) -> (u16, usize) {
        match self.job {
            Job::Restarted { port, node, .. } | Job::Resumed { port, node, .. } => (port, node),
        }
    }

    /// One look at the node.
    fn step(&mut self, env: &Env) {
        let clock = env.clock;
        let (port, node) = self.port_node();
        if self.probe.is_none() && !env.timeline.is_down(node) {
            self.probe = Probe::connect(port, Duration::from_millis(200)).ok();
        }
        match self.job {
            Job::Restarted { ready, .. } => {
                let now = clock.now();
                if now.saturating_sub(ready) > nanos(RECONNECT_LIMIT) || env.timeline.is_down(node)
                {
                    self.finish(env, Some(now.saturating_sub(ready)));
                    return;
                }
                let list = self
                    .probe
                    .as_mut()
                    .and_then(|p| p.command(&["CLIENT", "LIST"]).ok());
                let seen_at = clock.now();
                match list.as_ref().and_then(probe::text) {
                    Some(list) => {
                        let users = users_in_use(&list);
                        for (i, at) in self.used.iter_mut().enumerate() {
                            if at.is_none() && users.iter().any(|u| *u == env.users[i].1) {
                                *at = Some(seen_at.saturating_sub(ready));
                            }
                        }
                    }
                    None => self.probe = None,
                }
                if self.used.iter().all(Option::is_some) {
                    self.finish(env, None);
                }
                self.due = clock.now() + nanos(RECONNECT_POLL);
            }
            Job::Resumed { resumed, .. } => {
                let until = resumed + nanos(env.ttl + Duration::from_millis(500));
                if clock.now() >= until || env.timeline.is_down(node) {
                    self.finish(env, None);
                    return;
                }
                self.look_for_keys(env);
                self.due = clock.now() + nanos(STALE_POLL);
            }
        }
    }

    /// Reads every lock key of a resumed node (MGET, then PTTL of each).
    fn look_for_keys(&mut self, env: &Env) {
        let mget: Vec<&str> = std::iter::once("MGET")
            .chain(env.resources.iter().map(String::as_str))
            .collect();
        let pttls: Vec<[&str; 2]> = env.resources.iter().map(|r| ["PTTL", r.as_str()]).collect();
        let mut commands: Vec<&[&str]> = vec![&mget];
        commands.extend(pttls.iter().map(|c| &c[..]));
        let replies = self.probe.as_mut().and_then(|p| p.pipeline(&commands).ok());
        let now = env.clock.now();
        let Some(replies) = replies else {
            self.probe = None;
            return;
        };
        let values: Vec<Option<String>> = match replies.first() {
            Some(OwnedFrame::Array(vals)) => vals.iter().map(probe::text).collect(),
            _ => Vec::new(),
        };
        for (res, value) in values.iter().enumerate() {
            // Whatever we saw before under another token is gone.
            for ((r, token), obs) in self.seen.iter_mut() {
                if *r == res && Some(token) != value.as_ref() && obs.gone.is_none() {
                    obs.gone = Some(now);
                }
            }
            if let Some(token) = value {
                let pttl = replies.get(res + 1).and_then(probe::int).unwrap_or(-3);
                let obs = self.seen.entry((res, token.clone())).or_insert(KeyObs {
                    first: now,
                    last: now,
                    pttl_first: pttl,
                    gone: None,
                });
                obs.last = now;
                obs.gone = None;
            }
        }
    }

    /// Logs what the watch found (see [`watcher`]).
    fn finish(&mut self, env: &Env, censored: Option<u64>) {
        self.done = true;
        match self.job {
            Job::Restarted {
                node, spawn, ready, ..
            } => {
                for (i, at) in self.used.iter().enumerate() {
                    let cut = if at.is_some() { None } else { censored };
                    env.line(format!(
                        "R\t{node}\t{spawn}\t{ready}\t{}\t{}\t{}",
                        env.users[i].0,
                        dash(*at),
                        dash(cut)
                    ));
                }
            }
            Job::Resumed { node, resumed, .. } => {
                for ((res, token), k) in std::mem::take(&mut self.seen) {
                    env.line(format!(
                        "K\t{node}\t{res}\t{token}\t{resumed}\t{}\t{}\t{}\t{}",
                        k.first,
                        k.last,
                        k.pttl_first,
                        dash(k.gone)
                    ));
                }
            }
        }
    }
}

/// The watcher: one thread that runs every watch the fault thread sends it,
/// until the channel closes and the last watch ends. What each finds goes
/// to the log:
///
/// * after a restart, per client, `R node spawn ready transport used
///   censored`: `used` is ns after `ready` when `CLIENT LIST` (read every
///   2 ms) first showed a connection of that client's ACL user that had run
///   a lock command (on the new process, so a new connection); `censored`
///   ns after `ready` when the watch ended without it (the node went down
///   again, or 10 s passed); `-` when not applicable;
/// * after a resume, every (resource, token) seen on the node in the TTL
///   (+ 0.5 s) after SIGCONT, read every 5 ms: `K node resource token
///   resumed first last pttl_first gone` (`gone`: the first look at which
///   it was not there, `-` if it still was at the end).
///
/// One thread rather than one per watch: its allocations stay in one
/// allocator arena, so the soak's own memory does not blur the RSS figures.
pub(crate) fn watcher(env: &Env, jobs: &Receiver<Job>) {
    let mut active: Vec<Active> = Vec::new();
    let mut open = true;
    while open || !active.is_empty() {
        let now = env.clock.now();
        let next_due = active.iter().map(|a| a.due).min();
        let wait = next_due.map_or(Duration::from_millis(100), |d| {
            Duration::from_nanos(d.saturating_sub(now))
        });
        if open {
            match jobs.recv_timeout(wait) {
                Ok(job) => active.push(Active::new(job, env)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        } else {
            std::thread::sleep(wait);
        }
        let now = env.clock.now();
        for a in active.iter_mut().filter(|a| a.due <= now) {
            a.step(env);
        }
        active.retain(|a| !a.done);
    }
}

fn dash(v: Option<u64>) -> String {
    v.map_or("-".to_string(), |x| x.to_string())
}

/// One sample of the soak process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    pub(crate) t: u64,
    pub(crate) rss_kib: u64,
    pub(crate) fds: u64,
    pub(crate) threads: u64,
}

/// Reads `/proc/self` (RSS, open fds, threads).
pub(crate) fn sample(clock: Clock) -> Option<Sample> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(Sample {
        t: clock.now(),
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:")?,
    })
}

/// Samples the process every `every` until `stop`.
pub(crate) fn sampler(clock: Clock, every: Duration, stop: Arc<AtomicBool>) -> Vec<Sample> {
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if let Some(s) = sample(clock) {
            out.push(s);
        }
        // Sleep in slices so that `stop` is seen promptly.
        let mut left = every;
        while !left.is_zero() && !stop.load(Ordering::SeqCst) {
            let nap = left.min(Duration::from_millis(50));
            std::thread::sleep(nap);
            left -= nap;
        }
    }
    out
}

/// Every key on every node (`KEYS *`), by node; an unreachable node is an error.
pub(crate) fn keys_left(ports: &[u16]) -> Result<Vec<Vec<String>>, String> {
    ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let mut p = Probe::connect(port, Duration::from_secs(2))
                .map_err(|e| format!("node {i} (port {port}): {e}"))?;
            match p.command(&["KEYS", "*"]) {
                Ok(OwnedFrame::Array(keys)) => Ok(keys.iter().filter_map(probe::text).collect()),
                Ok(other) => Err(format!("node {i}: KEYS answered {other:?}")),
                Err(e) => Err(format!("node {i} (port {port}): {e}")),
            }
        })
        .collect()
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_list_parsing() {
        let list = "id=3 addr=127.0.0.1:1 laddr=x fd=8 name= age=0 idle=0 flags=N db=0 user=soak-std cmd=auth\n\
                    id=4 addr=127.0.0.1:2 laddr=x fd=9 name= age=0 idle=0 flags=N db=0 user=soak-tokio cmd=set\n\
                    id=5 addr=127.0.0.1:3 laddr=x fd=10 name= age=0 idle=0 flags=N db=0 user=default cmd=client|list\n\
                    id=6 addr=127.0.0.1:4 laddr=x fd=11 name= age=0 idle=0 flags=N db=0 user=soak-std cmd=NULL\n";
        assert_eq!(users_in_use(list), vec!["soak-tokio".to_string()]);
        assert!(is_use("eval") && is_use("set") && !is_use("auth") && !is_use("client|list"));
    }

    #[test]
    fn samples_this_process() {
        let s = sample(Clock::new()).expect("/proc/self readable");
        assert!(s.rss_kib > 0 && s.fds >= 3 && s.threads >= 1);
    }
}
