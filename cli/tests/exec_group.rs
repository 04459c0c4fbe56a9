//! `redlock exec` and everything CMD starts: the lock covers CMD's whole
//! process group. Real `redis-server` nodes, real child processes with
//! grandchildren (`sh` starting a subshell that starts `sleep`).

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redlock_tests::Cluster;
use support::*;

/// CMD prints its own pid, then those of a child and a grandchild and of a
/// second child, in some order (one per line), then waits: `sh` (CMD) ->
/// subshell -> `sleep 300`, and `sh` -> `sleep 300`.
const FAMILY: &str = "echo $$; (sleep 300 & echo $!; wait) & echo $!; sleep 300 & echo $!; wait";

fn spawn_exec(urls: &[String], opts: &[&str], script: &str) -> std::process::Child {
    redlock()
        .args(node_args(urls))
        .arg("exec")
        .args(opts)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the four pids FAMILY prints.
fn family(child: &mut std::process::Child) -> (Vec<i32>, BufReader<std::process::ChildStdout>) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let pids = (0..4).map(|_| read_pid(&mut out)).collect();
    (pids, out)
}

fn drain_stderr(child: &mut std::process::Child) -> thread::JoinHandle<String> {
    let mut err = child.stderr.take().unwrap();
    thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    })
}

/// Waits until none of `pids` runs; returns how long that took.
fn all_dead_within(pids: &[i32], limit: Duration) -> Duration {
    let t0 = Instant::now();
    wait_for("every process of CMD's group to die", limit, || {
        pids.iter().all(|&p| !alive(p))
    });
    t0.elapsed()
}

#[test]
fn a_loss_kills_cmd_s_whole_process_group() {
    let mut cluster = Cluster::start(3);
    let mut child = spawn_exec(
        &cluster.urls(),
        &["-r", "lost-group", "--ttl", "1s"],
        FAMILY,
    );
    let (pids, _out) = family(&mut child);
    let _reaper = Reaper(pids.clone());
    let err = drain_stderr(&mut child);
    assert!(pids.iter().all(|&p| alive(p)), "the family runs: {pids:?}");

    cluster.nodes[0].kill();
    cluster.nodes[1].kill();
    let t0 = Instant::now();
    let took = all_dead_within(&pids, Duration::from_secs(20));
    let status = wait_limit(&mut child, LIMIT);
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(70), "{err}");
    eprintln!(
        "figure: from killing 2 of 3 nodes to the death of CMD's last descendant: {took:?} \
         (TTL 1s: the loss is noticed at the next extension, a third into the validity)"
    );
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(
        err.matches("LOST").count(),
        1,
        "the loss is reported once: {err}"
    );
}

#[test]
fn a_member_of_cmd_s_group_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let mut cluster = Cluster::start(3);
    let script = "(trap '' TERM; echo $(exec sh -c 'echo $PPID'); \
                  while :; do sleep 0.1; done) & wait";
    let mut child = spawn_exec(
        &cluster.urls(),
        &["-r", "stubborn-gc", "--ttl", "1s"],
        script,
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let stubborn = read_pid(&mut out);
    let _reaper = Reaper(vec![stubborn]);
    let err = drain_stderr(&mut child);
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let t0 = Instant::now();
    let took = all_dead_within(&[stubborn], Duration::from_secs(30));
    let status = wait_limit(&mut child, LIMIT);
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(70), "{err}");
    assert!(err.contains("SIGKILL"), "{err}");
    // Loss noticed within a TTL, then 5 s of grace before SIGKILL.
    assert!(
        took >= Duration::from_secs(4) && t0.elapsed() < Duration::from_secs(30),
        "{took:?}"
    );
}

#[test]
fn sigterm_to_redlock_reaches_cmd_s_whole_group_and_releases_at_once() {
    let cluster = Cluster::start(3);
    let mut child = spawn_exec(
        &cluster.urls(),
        &["-r", "term-group", "--ttl", "60s"],
        FAMILY,
    );
    let (pids, _out) = family(&mut child);
    let _reaper = Reaper(pids.clone());
    let err = drain_stderr(&mut child);
    signal(&child, Signal::SIGTERM);
    all_dead_within(&pids, Duration::from_secs(10));
    let status = wait_limit(&mut child, LIMIT);
    assert_eq!(status.code(), Some(128 + 15), "{}", err.join().unwrap());
    for node in &cluster.nodes {
        assert_eq!(get(node, "term-group"), None, "released at once");
    }
}

#[test]
fn sigkill_of_redlock_kills_cmd_and_its_whole_group() {
    let cluster = Cluster::start(3);
    let mut child = spawn_exec(&cluster.urls(), &["-r", "k9", "--ttl", "60s"], FAMILY);
    let (pids, _out) = family(&mut child);
    let _reaper = Reaper(pids.clone());
    assert!(pids.iter().all(|&p| alive(p)));
    signal(&child, Signal::SIGKILL);
    let _ = child.wait();
    let took = all_dead_within(&pids, Duration::from_secs(10));
    eprintln!("figure: from SIGKILL of redlock to the death of CMD's last descendant: {took:?}");
}

#[test]
fn leftover_members_of_cmd_s_group_keep_the_lock_until_they_end() {
    let cluster = Cluster::start(3);
    let flag = tempfile_path("leftover-may-end");
    let _ = std::fs::remove_file(&flag);
    // CMD exits at once (status 3), leaving a background job that ends when
    // the test creates the flag file (its output elsewhere: redlock's stderr
    // must end with redlock).
    let script = format!(
        "echo \"$REDLOCK_TOKEN\"; (while [ ! -e '{flag}' ]; do sleep 0.02; done) \
         >/dev/null 2>&1 & echo $!; exit 3"
    );
    let mut child = spawn_exec(&cluster.urls(), &["-r", "leftover", "--ttl", "1s"], &script);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut token = String::new();
    out.read_line(&mut token).unwrap();
    let token = token.trim().to_owned();
    let job = read_pid(&mut out);
    let _reaper = Reaper(vec![job]);
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let said = await_line(&mut err, "left processes of its group running");
    assert!(said.contains("exited with status 3"), "{said}");
    assert!(
        said.contains(&format!("pid {job}")),
        "names the leftover: {said}"
    );
    // Held, and extended past its 1 s TTL, while the leftover runs.
    let held_since = Instant::now();
    while held_since.elapsed() < Duration::from_millis(2500) {
        assert!(alive(job));
        for node in &cluster.nodes {
            assert_eq!(get(node, "leftover").as_deref(), Some(token.as_str()));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "redlock waits for its group"
        );
        thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(&flag, b"").unwrap();
    let status = wait_limit(&mut child, LIMIT);
    assert_eq!(status.code(), Some(3), "CMD's own status");
    assert!(!alive(job));
    for node in &cluster.nodes {
        assert_eq!(
            get(node, "leftover"),
            None,
            "released once the group is empty"
        );
    }
    let _ = std::fs::remove_file(&flag);
}

#[test]
fn a_loss_in_the_last_moments_of_cmd_is_reported_as_a_loss() {
    // CMD stops redlock (SIGSTOP: no extension can happen), outlives the
    // 1 s lease and exits; the test continues redlock only once CMD is dead.
    // Both "CMD exited" and "lock lost" are then true at once: the lease
    // ran out while CMD was still running, so this is a loss (70).
    let cluster = Cluster::start(3);
    let mut child = spawn_exec(
        &cluster.urls(),
        &["-r", "last-moment", "--ttl", "1s"],
        "echo $$; kill -STOP $PPID; sleep 2; exit 0",
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let cmd = read_pid(&mut out);
    let err = drain_stderr(&mut child);
    let redlock_pid = child.id() as i32;
    wait_for("redlock to be stopped", LIMIT, || {
        proc_state(redlock_pid) == Some('T')
    });
    // CMD has exited (a zombie: its parent is stopped and cannot reap it).
    wait_for("CMD to exit", LIMIT, || !alive(cmd));
    signal(&child, Signal::SIGCONT);
    let status = wait_limit(&mut child, LIMIT);
    let err = err.join().unwrap();
    assert_eq!(status.code(), Some(70), "a loss, not CMD's 0: {err}");
    assert!(err.contains("LOST"), "{err}");
}

/// Runs `script` (a pty as controlling terminal, redlock in its foreground
/// reading it) with `inner` as the shell command and `input` typed at once;
/// `None` when the machine has no script(1).
fn with_terminal(inner: &str, input: &[u8]) -> Option<Run> {
    use std::io::Write;
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no script(1)");
        return None;
    }
    let mut child = std::process::Command::new("script")
        .args(["-qec", inner, "/dev/null"])
        .env_remove("REDLOCK_NODES")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let run = collect(child, Duration::from_secs(20));
    drop(stdin);
    Some(run)
}

fn bin() -> String {
    std::env::var("REDLOCK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_redlock").into())
}

#[test]
fn exec_hands_the_terminal_to_cmd_and_takes_it_back() {
    // CMD, in a process group of its own, can read the terminal; after
    // redlock, the shell that started it can too.
    let cluster = Cluster::start(3);
    let nodes = node_args(&cluster.urls()).join(" ");
    let inner = format!(
        "{} {nodes} exec -r tty -- sh -c 'read line; echo \"cmd:$line\"; exit 4'; \
         echo \"status:$?\"; read line; echo \"shell:$line\"",
        bin()
    );
    let Some(run) = with_terminal(&inner, b"hello\nagain\n") else {
        return;
    };
    assert!(run.stdout.contains("cmd:hello"), "{run:?}");
    assert!(run.stdout.contains("status:4"), "{run:?}");
    assert!(run.stdout.contains("shell:again"), "{run:?}");
    assert_eq!(get(&cluster.nodes[0], "tty"), None);

    // A CMD that cannot be started gives the terminal back as well.
    let inner = format!(
        "{} {nodes} exec -r tty -- /nonexistent/cmd; echo \"status:$?\"; read line; \
         echo \"shell:$line\"",
        bin()
    );
    let run = with_terminal(&inner, b"back\n").unwrap();
    assert!(run.stdout.contains("status:127"), "{run:?}");
    assert!(run.stdout.contains("shell:back"), "{run:?}");
}

#[test]
fn sigtstp_stops_cmd_s_group_with_redlock_and_sigcont_resumes_both() {
    for (ttl, stopped_for, expect) in [
        ("60s", Duration::ZERO, 0),
        ("1s", Duration::from_millis(1500), 70),
    ] {
        let cluster = Cluster::start(3);
        let flag = tempfile_path(&format!("tstp-{ttl}"));
        let _ = std::fs::remove_file(&flag);
        let script = format!("echo $$; while [ ! -e '{flag}' ]; do sleep 0.02; done");
        let mut child = spawn_exec(&cluster.urls(), &["-r", "tstp", "--ttl", ttl], &script);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let cmd = read_pid(&mut out);
        let _reaper = Reaper(vec![cmd]);
        let err = drain_stderr(&mut child);
        let redlock_pid = child.id() as i32;
        signal(&child, Signal::SIGTSTP);
        // CMD, a shell, may be caught inside a vfork for its `sleep`: the
        // stopped child keeps it in uninterruptible sleep ('D') until
        // SIGCONT, which is as stopped as a shell gets (seen 1 run in 3).
        wait_for("redlock and CMD to stop", LIMIT, || {
            proc_state(redlock_pid) == Some('T') && matches!(proc_state(cmd), Some('T' | 'D'))
        });
        thread::sleep(stopped_for); // the stop itself is what is tested
        signal(&child, Signal::SIGCONT);
        if expect == 0 {
            wait_for("CMD to run again", LIMIT, || proc_state(cmd) != Some('T'));
            std::fs::write(&flag, b"").unwrap();
        }
        let status = wait_limit(&mut child, LIMIT);
        let err = err.join().unwrap();
        assert_eq!(status.code(), Some(expect), "ttl {ttl}: {err}");
        assert!(!alive(cmd));
        for node in &cluster.nodes {
            assert_eq!(get(node, "tstp"), None);
        }
        let _ = std::fs::remove_file(&flag);
    }
}

#[test]
fn a_cmd_stopped_for_reading_a_terminal_it_was_not_given_is_reported() {
    // redlock reads /dev/null (so it does not hand the terminal over); CMD
    // opens the terminal anyway and is stopped by SIGTTIN: redlock says so
    // and keeps the lock until told to stop.
    let cluster = Cluster::start(3);
    let nodes = node_args(&cluster.urls()).join(" ");
    let err = tempfile_path("ttin.err");
    let inner = format!(
        "{} {nodes} exec -r ttin -- sh -c 'read l < /dev/tty' < /dev/null 2> {err} & pid=$!; \
         while ! grep -q SIGTTIN {err}; do sleep 0.02; done; kill -TERM $pid; wait $pid; \
         echo \"status:$?\"",
        bin()
    );
    let Some(run) = with_terminal(&inner, b"") else {
        return;
    };
    let said = std::fs::read_to_string(&err).unwrap_or_default();
    let _ = std::fs::remove_file(&err);
    assert!(run.stdout.contains("status:143"), "{run:?} {said}");
    assert!(said.contains("was stopped by SIGTTIN"), "{said}");
    assert_eq!(get(&cluster.nodes[0], "ttin"), None);
}
