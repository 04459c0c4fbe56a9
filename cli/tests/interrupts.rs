//! Interrupting `acquire`, `extend`, `release` and `exec` never leaves part
//! of a lock behind: real `redis-server` nodes, one of them paused (SIGSTOP)
//! where an acquire must wait for it.

mod support;

use std::io::BufReader;
use std::process::{Child, Stdio};
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use redlock_tests::{Cluster, RedisServer, Reply};
use support::*;

fn spawn(urls: &[String], rest: &[&str]) -> Child {
    redlock()
        .args(node_args(urls))
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Holds `key` on `node` for another client (a foreign token, 60 s).
fn hold_foreign(node: &RedisServer, key: &str) {
    assert_eq!(
        node.command(&["SET", key, "someone-else", "PX", "60000"]),
        Reply::Str("OK".into())
    );
}

/// A cluster where an acquire takes node 0, is refused by node 1 (held by
/// another client) and must wait for node 2 (paused) on every attempt: our
/// key sits on node 0 for most of each attempt.
fn half_taken(key: &str) -> Cluster {
    let cluster = Cluster::start(3);
    hold_foreign(&cluster.nodes[1], key);
    cluster.nodes[2].pause();
    cluster
}

#[test]
fn interrupting_acquire_undoes_the_partial_lock() {
    for (cmd, sig) in [("acquire", Signal::SIGINT), ("exec", Signal::SIGTERM)] {
        let key = format!("partial-{cmd}");
        let cluster = half_taken(&key);
        let mut rest = vec![cmd, "-r", &key, "--wait", "1m"];
        if cmd == "exec" {
            rest.extend(["--", "true"]);
        }
        let child = spawn(&cluster.urls(), &rest);
        // Our key on the healthy free node: an attempt is under way.
        wait_for("a partial acquire", LIMIT, || {
            get(&cluster.nodes[0], &key).is_some()
        });
        signal(&child, sig);
        let r = collect(child, Duration::from_secs(20));
        assert_eq!(r.code, Some(128 + sig as i32), "{cmd}: {r:?}");
        assert_eq!(
            get(&cluster.nodes[0], &key),
            None,
            "{cmd}: the partial lock is undone before exit: {r:?}"
        );
        assert_eq!(
            get(&cluster.nodes[1], &key).as_deref(),
            Some("someone-else"),
            "{cmd}: another's lock is left alone"
        );
        assert!(r.stderr.contains("interrupted by"), "{cmd}: {}", r.stderr);
        cluster.nodes[2].resume();
    }
}

#[test]
fn an_interrupted_release_or_extend_finishes_first() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let r = run_on(&urls, &["acquire", "-r", "fin", "--ttl", "20s"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let (token, _) = lease_json(&r, "fin");

    // Interrupt as soon as redlock has built its client (its handlers are
    // installed before that line): the operation still completes.
    let mut child = spawn(
        &urls,
        &["-vv", "extend", "-r", "fin", "-t", &token, "--ttl", "50s"],
    );
    let mut err = BufReader::new(child.stderr.take().unwrap());
    await_line(&mut err, "client ready");
    signal(&child, Signal::SIGTERM);
    thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    assert_eq!(wait_limit(&mut child, LIMIT).code(), Some(143));
    for node in &cluster.nodes {
        let pttl = node.command(&["PTTL", "fin"]).as_int().unwrap();
        assert!(pttl > 21_000, "the extension went through: {pttl}");
    }

    let mut child = spawn(&urls, &["-vv", "release", "-r", "fin", "-t", &token]);
    let mut err = BufReader::new(child.stderr.take().unwrap());
    await_line(&mut err, "client ready");
    signal(&child, Signal::SIGINT);
    thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    assert_eq!(wait_limit(&mut child, LIMIT).code(), Some(130));
    for node in &cluster.nodes {
        assert_eq!(get(node, "fin"), None, "the release went through");
    }
}

/// Signals at every moment of a short acquire: whatever the instant, no
/// key is left behind by an interrupted run (a lease won at the instant of
/// the signal included), and a run that printed its lease left exactly it.
#[test]
fn signal_storms_during_acquire_leave_no_key_behind() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let mut interrupted = 0;
    let mut printed = 0;
    let mut while_acquiring = 0;
    let mut just_won = 0;
    for i in 0..60u64 {
        let key = format!("storm-{i}");
        let (cmd, sig) = match i % 3 {
            0 => ("acquire", Signal::SIGINT),
            1 => ("acquire", Signal::SIGTERM),
            _ => ("exec", Signal::SIGTERM),
        };
        let mut rest = vec![cmd, "-r", &key];
        if cmd == "exec" {
            rest.extend(["--", "true"]);
        }
        let child = spawn(&urls, &rest);
        // Spread the signals over the run: process start, client start,
        // the acquire itself, CMD, the release (0..30 ms).
        thread::sleep(Duration::from_micros((i * 500) % 30_000));
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
        let r = collect(child, Duration::from_secs(20));
        let held: Vec<Option<String>> = cluster.nodes.iter().map(|n| get(n, &key)).collect();
        while_acquiring += usize::from(r.stderr.contains("while acquiring"));
        just_won += usize::from(r.stderr.contains("the lease just won was released"));
        match (cmd, r.code) {
            ("acquire", Some(0)) => {
                printed += 1;
                let (token, _) = lease_json(&r, &key);
                assert!(held.iter().all(|h| h.as_deref() == Some(&token)), "{r:?}");
            }
            _ => {
                if r.code != Some(0) {
                    interrupted += 1;
                }
                assert!(
                    held.iter().all(Option::is_none),
                    "run {i} ({cmd}, {sig}): left {held:?}: {r:?}"
                );
            }
        }
    }
    // Aimed at the moment of winning: signal as soon as our key appears on
    // a node, when the other replies are arriving.
    for i in 0..30u64 {
        let key = format!("aimed-{i}");
        let child = spawn(&urls, &["acquire", "-r", &key]);
        wait_for("the key", LIMIT, || {
            get(&cluster.nodes[i as usize % 3], &key).is_some()
        });
        signal(&child, Signal::SIGTERM);
        let r = collect(child, Duration::from_secs(20));
        let held: Vec<Option<String>> = cluster.nodes.iter().map(|n| get(n, &key)).collect();
        while_acquiring += usize::from(r.stderr.contains("while acquiring"));
        just_won += usize::from(r.stderr.contains("the lease just won was released"));
        if r.code == Some(0) {
            printed += 1;
            let (token, _) = lease_json(&r, &key);
            assert!(held.iter().all(|h| h.as_deref() == Some(&token)), "{r:?}");
        } else {
            interrupted += 1;
            assert!(
                held.iter().all(Option::is_none),
                "aimed run {i}: left {held:?}: {r:?}"
            );
        }
    }
    eprintln!(
        "figure: {interrupted} of 90 runs interrupted ({while_acquiring} while acquiring, \
         {just_won} of them just after winning), {printed} acquires completed"
    );
}

#[test]
fn sigtstp_while_exec_waits_for_the_lock_stops_it() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    for node in &cluster.nodes {
        hold_foreign(node, "tstp-wait");
    }
    let mut child = spawn(
        &urls,
        &[
            "-vv",
            "exec",
            "-r",
            "tstp-wait",
            "--wait",
            "1m",
            "--",
            "true",
        ],
    );
    let mut err = BufReader::new(child.stderr.take().unwrap());
    await_line(&mut err, "client ready");
    thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let pid = child.id() as i32;
    signal(&child, Signal::SIGTSTP);
    wait_for("redlock to stop", LIMIT, || proc_state(pid) == Some('T'));
    signal(&child, Signal::SIGCONT);
    wait_for("redlock to run again", LIMIT, || {
        proc_state(pid) != Some('T')
    });
    signal(&child, Signal::SIGINT);
    assert_eq!(wait_limit(&mut child, LIMIT).code(), Some(130));
}
