//! Black-box tests of the `redlock` binary against real `redis-server` nodes
//! started by the harness: every exit status of the contract (`CLI.md`),
//! JSON output, signals, auto-extension and lock loss.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use redlock_tests::{Cluster, GarbageMode, GarbageServer, RedisServer, ServerOptions};
use support::*;

// ---------------------------------------------------------------- usage (2), help (0)

/// The text with every run of white space as one space (help is wrapped).
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn help_and_version_exit_0_and_document_the_exit_statuses() {
    let r = run(&["--help"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    for needle in [
        "EXIT STATUS",
        "69",
        "70",
        "74",
        "75",
        "77",
        "126",
        "127",
        "128+N",
        "REDLOCK_NODES",
        "no other default",
        "EXAMPLES",
        "exec",
        "1h30m",
        "--conflict-exit-code",
        "--nonblock",
        "a silent node adds at most about 1 s to each attempt",
        "process group of its own",
        "parent-death signal",
        "SIGSTOP of redlock alone",
    ] {
        assert!(words(&r.stdout).contains(needle), "--help lacks {needle:?}");
    }
    let r = run(&["exec", "--help"]);
    for needle in [
        "process group of its own",
        "SIGKILL",
        "until the last of them has ended",
        "checked before CMD's end",
    ] {
        assert!(
            words(&r.stdout).contains(needle),
            "exec --help lacks {needle:?}"
        );
    }
    let r = run(&["--version"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.starts_with("redlock "));
    for sub in ["exec", "acquire", "extend", "release", "sim"] {
        let r = run(&[sub, "--help"]);
        assert_eq!(r.code, Some(0), "{sub} --help: {r:?}");
        assert!(r.stdout.contains("--resource") || sub == "sim");
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let cases: &[&[&str]] = &[
        &["acquire", "--resource", "r", "--bogus"], // unknown flag
        &["--frobnicate", "acquire", "--resource", "r"], // unknown flag before the subcommand
        &["acquire", "--resource", "r", "--ttl", "soon"], // bad duration
        &["acquire", "--resource", "r", "--wait", "-1s"], // bad duration
        &["acquire"],                               // missing --resource
        &["exec", "--resource", "r"],               // missing CMD
        &["extend", "--resource", "r"],             // missing --token
        &["release", "--token", "t"],               // missing --resource
        &["frobnicate"],                            // unknown subcommand
        &[],                                        // no subcommand
        &["-n", "http://127.0.0.1:6379", "acquire", "-r", "r"], // bad URL: scheme
        &["-n", "redis://127.0.0.1:0", "acquire", "-r", "r"], // bad URL: port
        &["acquire", "-r", ""],                     // empty resource
        &["release", "-r", "r", "--token", ""],     // empty token
        &["sim", "--unsafe", "gremlins"],           // unknown fault
        &["acquire", "-r", "r"],                    // no node at all
        &["-n", "127.0.0.1:6379", "acquire", "-r", "r"], // no scheme
    ];
    for args in cases {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(!r.stderr.trim().is_empty(), "{args:?}: no message");
        assert!(
            r.stdout.is_empty() || args.is_empty(),
            "{args:?}: stdout {:?}",
            r.stdout
        );
    }
}

#[test]
fn bad_url_never_prints_the_password() {
    for url in [
        "redis://user:hunter2@127.0.0.1:0",
        "redis://:hunter2@[::1",
        "rediz://:hunter2@h",
        "hunter2:x@h",
    ] {
        let r = run(&["--node", url, "acquire", "--resource", "r"]);
        assert_eq!(r.code, Some(2), "{url}: {r:?}");
        assert!(!r.stderr.contains("hunter2"), "{url}: {}", r.stderr);
        assert!(r.stderr.contains("URL"), "{}", r.stderr);
    }
    let r = redlock()
        .env(
            "REDLOCK_NODES",
            "redis://127.0.0.1:1,redis://u:hunter2@127.0.0.1:99999",
        )
        .args(["acquire", "--resource", "r"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&r.stderr).contains("hunter2"));
}

// ---------------------------------------------------------------- acquire / extend / release

#[test]
fn acquire_extend_release_json_and_statuses() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();

    let r = run_on(&urls, &["acquire", "--resource", "jobs:1", "--ttl", "20s"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let (token, validity) = lease_json(&r, "jobs:1");
    assert!(token.len() >= 32, "at least 128 bits as hex: {token}");
    assert!(validity > 15_000 && validity < 20_000, "{validity}");
    for node in &cluster.nodes {
        assert_eq!(get(node, "jobs:1").as_deref(), Some(token.as_str()));
        let pttl = node.command(&["PTTL", "jobs:1"]).as_int().unwrap();
        assert!(
            pttl > 15_000 && pttl <= 20_000,
            "left held with its TTL: {pttl}"
        );
    }

    // Held by someone else: 75, with a message naming the nodes.
    let r = run_on(&urls, &["acquire", "--resource", "jobs:1", "--wait", "0"]);
    assert_eq!(r.code, Some(75), "{r:?}");
    assert!(r.stderr.contains("127.0.0.1:"), "{}", r.stderr);
    let r = run_on(
        &urls,
        &[
            "acquire",
            "--resource",
            "jobs:1",
            "--retry-count",
            "2",
            "--retry-delay",
            "20ms",
        ],
    );
    assert_eq!(r.code, Some(75), "{r:?}");

    // A wrong token never extends or deletes someone else's lock.
    let r = run_on(
        &urls,
        &["extend", "--resource", "jobs:1", "--token", "not-the-token"],
    );
    assert_eq!(r.code, Some(75), "{r:?}");
    let r = run_on(
        &urls,
        &[
            "release",
            "--resource",
            "jobs:1",
            "--token",
            "not-the-token",
        ],
    );
    assert_eq!(r.code, Some(75), "{r:?}");
    assert_eq!(
        get(&cluster.nodes[0], "jobs:1").as_deref(),
        Some(token.as_str())
    );

    // Extend: same JSON, new validity; options after the subcommand.
    let r = run_on(
        &urls,
        &[
            "extend",
            "--resource",
            "jobs:1",
            "--token",
            &token,
            "--ttl",
            "1m",
        ],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let (t2, validity) = lease_json(&r, "jobs:1");
    assert_eq!(t2, token);
    assert!(validity > 50_000 && validity < 60_000, "{validity}");
    let pttl = cluster.nodes[1]
        .command(&["PTTL", "jobs:1"])
        .as_int()
        .unwrap();
    assert!(pttl > 50_000, "{pttl}");

    // Release: 0, keys gone; a second release: the token holds nothing: 75.
    let r = run_on(
        &urls,
        &["release", "--resource", "jobs:1", "--token", &token],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    for node in &cluster.nodes {
        assert_eq!(get(node, "jobs:1"), None);
    }
    let r = run_on(
        &urls,
        &["release", "--resource", "jobs:1", "--token", &token],
    );
    assert_eq!(r.code, Some(75), "{r:?}");
    let r = run_on(
        &urls,
        &["extend", "--resource", "jobs:1", "--token", &token],
    );
    assert_eq!(r.code, Some(75), "{r:?}");
}

#[test]
fn nodes_from_the_environment_and_global_options_anywhere() {
    let cluster = Cluster::start(3);
    let r = redlock()
        .env("REDLOCK_NODES", cluster.urls().join(","))
        .args(["--ttl", "7s", "acquire", "--resource", "env-res"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    for node in &cluster.nodes {
        assert!(get(node, "env-res").is_some());
        let pttl = node.command(&["PTTL", "env-res"]).as_int().unwrap();
        assert!(pttl > 5_000 && pttl <= 7_000, "{pttl}");
    }
    // --node given: REDLOCK_NODES ignored.
    let other = RedisServer::start();
    let r = redlock()
        .env("REDLOCK_NODES", cluster.urls().join(","))
        .args([
            "acquire",
            "--resource",
            "env-res",
            "-n",
            &other.url(),
            "--wait",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{r:?}");
}

// ---------------------------------------------------------------- 69 / 77 / garbage

#[test]
fn all_nodes_dead_is_unavailable_69_naming_them_and_quickly() {
    let urls = vec![dead_url(), dead_url(), dead_url()];
    let r = run_on(
        &urls,
        &[
            "acquire",
            "--resource",
            "r",
            "--retry-count",
            "1",
            "--retry-delay",
            "50ms",
        ],
    );
    assert_eq!(r.code, Some(69), "{r:?}");
    for u in &urls {
        assert!(
            r.stderr.contains(u.trim_start_matches("redis://")),
            "{u} not named: {}",
            r.stderr
        );
    }
    assert!(r.elapsed < Duration::from_secs(15), "{:?}", r.elapsed);
    for cmd in [
        &["extend", "-r", "r", "-t", "tok"][..],
        &["release", "-r", "r", "-t", "tok"],
    ] {
        let r = run_on(&urls, cmd);
        assert_eq!(r.code, Some(69), "{cmd:?}: {r:?}");
    }
    let r = run_on(&urls, &["exec", "-r", "r", "--wait", "0", "--", "true"]);
    assert_eq!(r.code, Some(69), "{r:?}");
}

#[test]
fn wrong_password_is_refused_77_without_printing_it() {
    let opts = ServerOptions {
        requirepass: Some("right-pass".into()),
        ..Default::default()
    };
    let cluster = Cluster::start_with(3, opts);
    let wrong: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.url_with(None, Some("hunter2-wrong"), 0))
        .collect();
    let r = run_on(&wrong, &["acquire", "--resource", "r", "--wait", "0"]);
    assert_eq!(r.code, Some(77), "{r:?}");
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    assert!(
        r.stderr.contains("***"),
        "names the node, redacted: {}",
        r.stderr
    );

    let none: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.url_with(None, None, 0))
        .collect();
    let r = run_on(&none, &["acquire", "--resource", "r", "--wait", "0"]);
    assert_eq!(r.code, Some(77), "no password given: {r:?}");
    let unknown_user: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.url_with(Some("nobody"), Some("hunter2-x"), 0))
        .collect();
    let r = run_on(
        &unknown_user,
        &["release", "--resource", "r", "--token", "t"],
    );
    assert_eq!(r.code, Some(77), "unknown user on release: {r:?}");
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);

    let right: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.url_with(None, Some("right-pass"), 0))
        .collect();
    let r = run_on(&right, &["-v", "acquire", "--resource", "r", "--wait", "0"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(!r.stderr.contains("right-pass") && !r.stdout.contains("right-pass"));
}

#[test]
fn a_garbage_node_among_three_is_tolerated_and_alone_is_69() {
    let cluster = Cluster::start(2);
    let garbage = GarbageServer::start(GarbageMode::RandomBytes);
    let mut urls = cluster.urls();
    urls.insert(1, garbage.url());
    let r = run_on(&urls, &["acquire", "--resource", "g", "--wait", "0"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let (token, _) = lease_json(&r, "g");
    let r = run_on(&urls, &["exec", "-r", "g2", "--", "true"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = run_on(&urls, &["release", "-r", "g", "-t", &token]);
    assert_eq!(r.code, Some(0), "{r:?}");

    for mode in [
        GarbageMode::RandomBytes,
        GarbageMode::HugeBulkHeader,
        GarbageMode::Trickle,
        GarbageMode::Silence,
    ] {
        let g = GarbageServer::start(mode);
        let r = run_on(
            &[g.url()],
            &["acquire", "--resource", "g", "--retry-count", "1"],
        );
        assert_eq!(r.code, Some(69), "{mode:?}: {r:?}");
        assert!(
            r.stderr.contains(&format!("127.0.0.1:{}", g.port())),
            "{mode:?}: {}",
            r.stderr
        );
        // Default options: a silent node adds at most about 1 s per attempt.
        assert!(
            r.elapsed < Duration::from_secs(10),
            "{mode:?}: {:?}",
            r.elapsed
        );
    }
}

// ---------------------------------------------------------------- exec

#[test]
fn exec_passes_cmd_status_env_and_releases() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();

    // CMD's own status; `--` optional; env vars set.
    let r = run_on(
        &urls,
        &[
            "exec",
            "--resource",
            "ex",
            "sh",
            "-c",
            "test \"$REDLOCK_RESOURCE\" = ex && echo \"$REDLOCK_TOKEN\"; exit 7",
        ],
    );
    assert_eq!(r.code, Some(7), "{r:?}");
    let token = r.stdout.trim();
    assert!(
        token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token:?}"
    );
    for node in &cluster.nodes {
        assert_eq!(get(node, "ex"), None, "released at once");
    }

    let r = run_on(
        &urls,
        &["exec", "--resource", "ex", "--ttl", "5s", "--", "true"],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    // Killed by a signal: 128+N.
    let r = run_on(
        &urls,
        &[
            "exec",
            "--resource",
            "ex",
            "--",
            "sh",
            "-c",
            "kill -KILL $$",
        ],
    );
    assert_eq!(r.code, Some(137), "{r:?}");
    // Not found: 127, and the lock is released.
    let r = run_on(
        &urls,
        &["exec", "--resource", "ex", "--", "/nonexistent/cmd"],
    );
    assert_eq!(r.code, Some(127), "{r:?}");
    assert_eq!(get(&cluster.nodes[0], "ex"), None);

    // The token in CMD's env is the one stored on the nodes while it runs.
    let mut child = redlock()
        .args(node_args(&urls))
        .args([
            "exec",
            "-r",
            "ex",
            "--",
            "sh",
            "-c",
            "echo \"$REDLOCK_TOKEN\"; sleep 2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    for node in &cluster.nodes {
        assert_eq!(get(node, "ex").as_deref(), Some(line.trim()));
    }
    // Busy while CMD runs.
    let r = run_on(&urls, &["exec", "-r", "ex", "--wait", "0", "--", "true"]);
    assert_eq!(r.code, Some(75), "{r:?}");
    assert_eq!(wait_limit(&mut child, LIMIT).code(), Some(0));
    assert_eq!(get(&cluster.nodes[2], "ex"), None);
}

#[test]
fn exec_keeps_the_lock_across_many_ttls() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let mut args = node_args(&urls);
    args.extend(
        [
            "exec",
            "--resource",
            "long",
            "--ttl",
            "1s",
            "--",
            "sleep",
            "3.5",
        ]
        .map(String::from),
    );
    let mut child = redlock()
        .args(&args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the lock to be taken", LIMIT, || {
        get(&cluster.nodes[0], "long").is_some()
    });
    let token = get(&cluster.nodes[0], "long").unwrap();
    let start = Instant::now();
    let mut attempts = 0;
    while child.try_wait().unwrap().is_none() {
        let r = run_on(&urls, &["acquire", "--resource", "long", "--wait", "0"]);
        if child.try_wait().unwrap().is_some() {
            break; // CMD ended: the lock may legitimately be free now
        }
        assert_eq!(
            r.code,
            Some(75),
            "others are kept out for the whole run: {r:?}"
        );
        attempts += 1;
        assert_eq!(
            get(&cluster.nodes[1], "long").as_deref(),
            Some(token.as_str())
        );
        thread::sleep(Duration::from_millis(200));
    }
    let status = wait_limit(&mut child, LIMIT);
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() > Duration::from_secs(2),
        "ran for several TTLs"
    );
    assert!(attempts >= 3, "{attempts}");
    for node in &cluster.nodes {
        assert_eq!(get(node, "long"), None, "released at once");
    }
}

#[test]
fn sigterm_to_redlock_reaches_cmd_and_releases_at_once() {
    let cluster = Cluster::start(3);
    let mut child = redlock()
        .args(node_args(&cluster.urls()))
        .args([
            "exec",
            "--resource",
            "term",
            "--ttl",
            "60s",
            "--",
            "sleep",
            "30",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the lock to be taken", LIMIT, || {
        get(&cluster.nodes[2], "term").is_some()
    });
    thread::sleep(Duration::from_millis(100)); // let CMD start
    let t0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_limit(&mut child, LIMIT);
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "sleep was killed by the forwarded SIGTERM"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    for node in &cluster.nodes {
        assert_eq!(
            get(node, "term"),
            None,
            "released at once, not left to expire"
        );
    }
}

#[test]
fn losing_the_majority_stops_cmd_and_exits_70_naming_the_nodes() {
    let mut cluster = Cluster::start(3);
    let mut child = redlock()
        .args(node_args(&cluster.urls()))
        .args([
            "exec",
            "--resource",
            "lost",
            "--ttl",
            "1s",
            "--",
            "sh",
            "-c",
            "echo $$; exec sleep 60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let cmd_pid: i32 = line.trim().parse().unwrap();
    let killed: Vec<String> = cluster.nodes[..2]
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    cluster.nodes[0].kill();
    cluster.nodes[1].kill();
    let t0 = Instant::now();
    let mut stderr = child.stderr.take().unwrap();
    let status = wait_limit(&mut child, LIMIT);
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(70), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert!(err.contains("LOST"), "{err}");
    for k in &killed {
        assert!(err.contains(k), "names failed node {k}: {err}");
    }
    // CMD is gone (reaped by redlock).
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(cmd_pid), None).is_ok();
    assert!(!alive, "CMD still running");
}

#[test]
fn a_cmd_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let mut cluster = Cluster::start(3);
    let mut child = redlock()
        .args(node_args(&cluster.urls()))
        .args([
            "exec",
            "--resource",
            "stubborn",
            "--ttl",
            "1s",
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let t0 = Instant::now();
    let status = wait_limit(&mut child, LIMIT);
    assert_eq!(status.code(), Some(70));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(20),
        "{took:?}"
    );
}

#[test]
fn signal_while_waiting_for_the_lock_exits_without_running_cmd() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let r = run_on(&urls, &["acquire", "-r", "w", "--ttl", "60s"]);
    assert_eq!(r.code, Some(0));
    let marker = tempfile_path("never-ran");
    let mut child = redlock()
        .args(node_args(&urls))
        .args([
            "-vv", "exec", "-r", "w", "--wait", "1m", "--", "touch", &marker,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until redlock is under way (it logs "client ready" at -vv just
    // before installing its handlers), then give it a moment to be waiting.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("client ready") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "redlock ended early"
        );
    }
    thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_limit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    assert!(!std::path::Path::new(&marker).exists());
}

// ---------------------------------------------------------------- sim

#[test]
fn sim_exit_statuses() {
    let r = run(&["sim", "--seeds", "20"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let again = run(&["sim", "--seeds", "20"]);
    assert_eq!(again.stdout, r.stdout, "byte-identical output");

    let r = run(&["sim", "--seeds", "200", "--unsafe", "amnesia"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("seed "), "{}", r.stdout);
}

// ---------------------------------------------------------------- TLS, quiet

#[test]
fn tls_nodes_with_an_extra_ca_and_without_it() {
    let server = RedisServer::start_with(ServerOptions {
        tls: true,
        ..Default::default()
    });
    let url = server.tls_url().expect("a TLS port");
    let ca = tempfile_path("ca.pem");
    std::fs::write(&ca, &server.tls().expect("TLS material").ca_pem).unwrap();
    let r = run(&[
        "--node",
        &url,
        "--tls-ca",
        &ca,
        "acquire",
        "--resource",
        "tls-res",
    ]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let (token, _) = lease_json(&r, "tls-res");
    assert_eq!(get(&server, "tls-res").as_deref(), Some(token.as_str()));
    // Without the CA the certificate is not trusted: unavailable, naming the node.
    let r = run(&[
        "--node",
        &url,
        "acquire",
        "--resource",
        "tls-res2",
        "--wait",
        "0",
    ]);
    assert_eq!(r.code, Some(69), "{r:?}");
    assert!(r.stderr.contains("rediss://localhost:"), "{}", r.stderr);
    let r = run(&[
        "--node",
        &url,
        "--tls-ca",
        "/nonexistent/ca.pem",
        "acquire",
        "--resource",
        "x",
    ]);
    assert_eq!(r.code, Some(2), "{r:?}");
    let _ = std::fs::remove_file(ca);
}

#[test]
fn quiet_and_verbose() {
    let urls = vec![dead_url()];
    let r = run_on(&urls, &["-qq", "acquire", "--resource", "r", "--wait", "0"]);
    assert_eq!(r.code, Some(69));
    assert_eq!(r.stderr, "", "-qq: nothing on stderr");
    let r = run_on(&urls, &["acquire", "--resource", "r", "--wait", "0", "-q"]);
    assert_eq!(r.code, Some(69));
    assert!(
        r.stderr.contains("127.0.0.1:"),
        "-q still says why: {}",
        r.stderr
    );
    let server = RedisServer::start();
    let r = run_on(&[server.url()], &["acquire", "--resource", "r", "-vv"]);
    assert_eq!(r.code, Some(0));
    assert!(!r.stderr.is_empty(), "-vv says more");
}
