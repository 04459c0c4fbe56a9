//! Helpers shared by the black-box tests of the `redlock` binary: running
//! it, reading its output, watching processes.
//!
//! `REDLOCK_BIN` may name another `redlock` binary to run the same tests
//! against (e.g. an older build, to see a test fail before a fix).

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redlock_tests::{free_port, RedisServer, Reply};

/// Generous bound on any single invocation (a loaded 2-core machine).
pub const LIMIT: Duration = Duration::from_secs(60);

/// The binary under test, with no `REDLOCK_NODES` inherited.
pub fn redlock() -> Command {
    let bin = std::env::var("REDLOCK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_redlock").into());
    let mut c = Command::new(bin);
    c.env_remove("REDLOCK_NODES");
    c
}

pub fn node_args(urls: &[String]) -> Vec<String> {
    urls.iter()
        .flat_map(|u| ["--node".to_owned(), u.clone()])
        .collect()
}

#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

pub fn collect(mut child: Child, limit: Duration) -> Run {
    let start = Instant::now();
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let t_out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_limit(&mut child, limit);
    let elapsed = start.elapsed();
    Run {
        code: status.code(),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        elapsed,
    }
}

pub fn wait_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("redlock did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let child = redlock()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn redlock");
    collect(child, LIMIT)
}

/// `redlock <nodes...> <rest...>`.
pub fn run_on(urls: &[String], rest: &[&str]) -> Run {
    let mut args = node_args(urls);
    args.extend(rest.iter().map(|s| s.to_string()));
    run(&args)
}

pub fn get(server: &RedisServer, key: &str) -> Option<String> {
    match server.command(&["GET", key]) {
        Reply::Nil => None,
        Reply::Str(s) => Some(s),
        other => panic!("GET {key}: {other:?}"),
    }
}

pub fn lease_json(run: &Run, resource: &str) -> (String, u64) {
    let line = run.stdout.trim_end();
    assert_eq!(line.lines().count(), 1, "exactly one line: {run:?}");
    let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
    let obj = v.as_object().expect("a JSON object");
    assert_eq!(obj.len(), 3, "{line}");
    assert_eq!(obj["resource"], resource);
    let token = obj["token"].as_str().expect("token string").to_owned();
    let validity = obj["validity_ms"].as_u64().expect("validity_ms number");
    (token, validity)
}

pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

pub fn dead_url() -> String {
    format!("redis://127.0.0.1:{}", free_port())
}

pub fn tempfile_path(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("redlock-cli-test-{}-{name}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

/// The state letter of a process in `/proc/PID/stat` (`R`, `S`, `T`, `Z`...),
/// `None` once it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 1..].split_whitespace().next()?.chars().next()
}

/// Whether a process still runs: gone and zombies (dead, not yet reaped by
/// a parent that may never reap, e.g. a pid 1 that does not) count as dead.
pub fn alive(pid: i32) -> bool {
    !matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// Kills (SIGKILL) the processes it was given when dropped, so that a failed
/// test leaves no `sleep 300` behind.
#[derive(Default)]
pub struct Reaper(pub Vec<i32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Reads lines from `stderr` until one contains `needle`; panics when the
/// stream ends first. The rest of the stream is returned (still open).
pub fn await_line(stderr: &mut BufReader<ChildStderr>, needle: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "redlock ended before saying {needle:?}; it said:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains(needle) {
            return seen;
        }
    }
}

/// Reads one line from a child's stdout and parses it as a pid.
pub fn read_pid(lines: &mut impl BufRead) -> i32 {
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("expected a pid, got {line:?}"))
}

pub fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}
