//! `--fence` and repeated `--resource` (shared/CLI.md), black-box on real
//! redis-server nodes: the JSON fields and CMD's environment, the one- and
//! two-round fencing paths, registers left alone by plain locks, extend and
//! release, several resources all or nothing, and Kleppmann's scenario: a
//! fenced holder frozen past its lease whose later write a SQL database
//! refuses.

mod support;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use redlock_tests::{Cluster, RedisServer, Reply};
use support::*;

fn json(r: &Run) -> serde_json::Map<String, serde_json::Value> {
    let line = r.stdout.trim_end();
    assert_eq!(line.lines().count(), 1, "exactly one line: {r:?}");
    let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
    v.as_object().expect("a JSON object").clone()
}

fn register(node: &RedisServer, resource: &str) -> Option<u64> {
    get(node, &format!("{{{resource}}}:fence")).map(|s| s.parse().expect("an integer register"))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// EVAL calls a node has run since its stats were reset.
fn evals(node: &RedisServer) -> u64 {
    let Reply::Str(info) = node.command(&["INFO", "commandstats"]) else {
        panic!("INFO commandstats")
    };
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_eval:calls="))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap().parse().expect("a count")
        })
}

fn reset_stats(cluster: &Cluster) {
    for n in &cluster.nodes {
        assert_eq!(n.command(&["CONFIG", "RESETSTAT"]), Reply::Str("OK".into()));
    }
}

#[test]
fn help_explains_fencing_and_several_resources() {
    let r = run(&["--help"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let text = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "--fence",
        "FENCING",
        "refuse a write whose fence is lower",
        "WHERE id = $id AND fence <= $f",
        "appendfsync always",
        "REDLOCK_FENCE",
        "REDLOCK_RESOURCES",
        "SEVERAL RESOURCES",
        "all or nothing",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}");
    }
    let r = run(&["acquire", "--help"]);
    let text = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in ["\"fence\":N", "\"fences\":[...]", "\"resources\":[...]"] {
        assert!(text.contains(needle), "acquire --help lacks {needle:?}");
    }
}

#[test]
fn a_fenced_acquire_prints_its_fence_in_one_round_and_fences_grow() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    reset_stats(&cluster);
    let before = unix_ms();
    let r = run_on(&urls, &["acquire", "-r", "f1", "--fence", "--ttl", "10s"]);
    let after = unix_ms();
    assert_eq!(r.code, Some(0), "{r:?}");
    let obj = json(&r);
    assert_eq!(obj.len(), 4, "resource, token, validity_ms, fence: {obj:?}");
    assert_eq!(obj["resource"], "f1");
    let fence = obj["fence"].as_u64().expect("an integer fence");
    // Fresh registers: the proposal (wall clock in ms x 1024) in one round.
    assert!(
        (before * 1024..=after * 1024).contains(&fence),
        "{before} {fence} {after}"
    );
    for n in &cluster.nodes {
        assert_eq!(register(n, "f1"), Some(fence));
        assert_eq!(evals(n), 1, "one round: one script per node");
        // The lock key is the resource, its value the token: plain clients see it.
        assert_eq!(get(n, "f1").as_deref(), obj["token"].as_str());
    }
    let token = obj["token"].as_str().unwrap().to_owned();

    // Extend keeps the register (and prints no fence: it is the acquire's).
    let r = run_on(&urls, &["extend", "-r", "f1", "-t", &token]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(!json(&r).contains_key("fence"), "{r:?}");
    // Release leaves the register alone.
    let r = run_on(&urls, &["release", "-r", "f1", "-t", &token]);
    assert_eq!(r.code, Some(0), "{r:?}");
    for n in &cluster.nodes {
        assert_eq!(get(n, "f1"), None);
        assert_eq!(register(n, "f1"), Some(fence));
    }

    // The next grant's fence is above: the previous one was confirmed
    // before it started.
    let r = run_on(&urls, &["acquire", "-r", "f1", "--fence"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let next = json(&r)["fence"].as_u64().unwrap();
    assert!(next > fence, "{next} > {fence}");
}

#[test]
fn a_register_ahead_on_a_quorum_forces_the_second_round() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    // Far above any proposal (wall clock ms x 1024 ~ 1.8e15), below 2^53.
    const AHEAD: u64 = 5_000_000_000_000_000;
    for n in &cluster.nodes[..2] {
        n.command(&["SET", "{f2}:fence", &AHEAD.to_string()]);
    }
    reset_stats(&cluster);
    let r = run_on(&urls, &["acquire", "-r", "f2", "--fence"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let fence = json(&r)["fence"].as_u64().unwrap();
    // Every quorum holds a register at AHEAD: f = 1 + max(old).
    assert_eq!(fence, AHEAD + 1);
    let second_round = cluster.nodes.iter().filter(|n| evals(n) == 2).count();
    assert!(second_round >= 2, "round 2 went to the counted nodes");
    let raised = cluster
        .nodes
        .iter()
        .filter(|n| register(n, "f2") == Some(fence))
        .count();
    assert!(raised >= 2, "a quorum holds the new fence");
}

#[test]
fn plain_locks_leave_fence_registers_alone() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    for n in &cluster.nodes {
        n.command(&["SET", "{p}:fence", "77"]);
    }
    let r = run_on(&urls, &["acquire", "-r", "p", "-r", "q"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let obj = json(&r);
    assert!(
        !obj.contains_key("fence") && !obj.contains_key("fences"),
        "{obj:?}"
    );
    let token = obj["token"].as_str().unwrap().to_owned();
    let r = run_on(&urls, &["extend", "-r", "q", "-r", "p", "-t", &token]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = run_on(&urls, &["release", "-r", "p", "-r", "q", "-t", &token]);
    assert_eq!(r.code, Some(0), "{r:?}");
    for n in &cluster.nodes {
        assert_eq!(register(n, "p"), Some(77));
        assert_eq!(register(n, "q"), None, "no register made by a plain lock");
    }
}

#[test]
fn several_resources_json_extend_release_in_any_order() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let r = run_on(
        &urls,
        &["acquire", "-r", "m:b", "-r", "m:a", "-r", "m:b", "--fence"],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let obj = json(&r);
    assert_eq!(obj["resource"], "m:b", "the first given");
    assert_eq!(
        obj["resources"],
        serde_json::json!(["m:b", "m:a"]),
        "in the order given, once each"
    );
    let fence = obj["fence"].as_u64().unwrap();
    assert_eq!(obj["fences"], serde_json::json!([fence, fence]));
    let token = obj["token"].as_str().unwrap().to_owned();
    for n in &cluster.nodes {
        for key in ["m:a", "m:b"] {
            assert_eq!(get(n, key).as_deref(), Some(token.as_str()));
            assert_eq!(register(n, key), Some(fence));
        }
    }
    // The same set in another order extends both keys.
    let r = run_on(
        &urls,
        &[
            "extend", "-r", "m:a", "-r", "m:b", "-t", &token, "--ttl", "1m",
        ],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(json(&r)["resources"], serde_json::json!(["m:a", "m:b"]));
    for n in &cluster.nodes {
        let pttl = n.command(&["PTTL", "m:b"]).as_int().unwrap();
        assert!(pttl > 50_000, "{pttl}");
    }
    // A set that is not ours (one name more) is not extended: all or nothing.
    let r = run_on(&urls, &["extend", "-r", "m:a", "-r", "m:c", "-t", &token]);
    assert_eq!(r.code, Some(75), "{r:?}");
    // Release removes exactly our keys.
    cluster.nodes[0].command(&["SET", "m:c", "someone-else"]);
    let r = run_on(&urls, &["release", "-r", "m:b", "-r", "m:a", "-t", &token]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(cluster.wait_gone("m:a", Duration::from_secs(5)));
    assert!(cluster.wait_gone("m:b", Duration::from_secs(5)));
    assert_eq!(
        get(&cluster.nodes[0], "m:c").as_deref(),
        Some("someone-else")
    );
    // Released twice: this token holds nothing any more.
    let r = run_on(&urls, &["release", "-r", "m:a", "-r", "m:b", "-t", &token]);
    assert_eq!(r.code, Some(75), "{r:?}");
    assert!(
        r.stderr.contains("\"m:a\", \"m:b\" are not held"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_set_overlapping_a_held_lock_is_busy_and_takes_nothing() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    // Another client (any library) holds one of the names.
    let r = run_on(&urls, &["acquire", "-r", "o:b"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = run_on(&urls, &["acquire", "-r", "o:a", "-r", "o:b", "--nonblock"]);
    assert_eq!(r.code, Some(75), "{r:?}");
    assert!(r.stderr.contains("held by another token"), "{}", r.stderr);
    let r = run_on(
        &urls,
        &[
            "exec",
            "-r",
            "o:c",
            "-r",
            "o:b",
            "--nonblock",
            "-E",
            "9",
            "--",
            "true",
        ],
    );
    assert_eq!(r.code, Some(9), "{r:?}");
    for n in &cluster.nodes {
        assert_eq!(get(n, "o:a"), None, "nothing taken");
        assert_eq!(get(n, "o:c"), None, "nothing taken");
    }
}

#[test]
fn exec_gives_cmd_the_resources_and_the_fence() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let show = "printf '%s|%s|%s|%s' \"$REDLOCK_RESOURCE\" \"${REDLOCK_RESOURCES-unset}\" \
                \"${REDLOCK_FENCE-unset}\" \"$REDLOCK_TOKEN\"";
    let r = run_on(&urls, &["exec", "-r", "e1", "--", "sh", "-c", show]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let parts: Vec<&str> = r.stdout.split('|').collect();
    assert_eq!(&parts[..3], ["e1", "unset", "unset"], "{}", r.stdout);

    let r = run_on(
        &urls,
        &[
            "exec", "-r", "e:y", "-r", "e:x", "--fence", "--", "sh", "-c", show,
        ],
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let parts: Vec<&str> = r.stdout.split('|').collect();
    assert_eq!(&parts[..2], ["e:y", "e:y,e:x"], "{}", r.stdout);
    let fences: Vec<u64> = parts[2].split(',').map(|f| f.parse().unwrap()).collect();
    assert_eq!(fences.len(), 2, "{}", r.stdout);
    assert_eq!(fences[0], fences[1]);
    for n in &cluster.nodes {
        assert_eq!(register(n, "e:x"), Some(fences[0]));
        assert_eq!(get(n, "e:x"), None, "released when CMD ended");
    }
}

/// Kleppmann's scenario with real processes and a real SQL database:
/// holder 1 takes a fenced lock and its `redlock` is frozen (SIGSTOP) past
/// the lease; holder 2 takes the lock and writes; holder 1's CMD then
/// writes with its older fence, and the database's `WHERE fence <= $f`
/// refuses it.
#[test]
fn a_frozen_fenced_holder_s_late_write_is_refused_by_the_database() {
    let cluster = Cluster::start(3);
    let urls = cluster.urls();
    let db = tempfile_path("fence.sqlite");
    let go = tempfile_path("fence.go");
    let started = tempfile_path("fence.started");
    let out1 = tempfile_path("fence.out1");
    for f in [&db, &go, &started, &out1] {
        let _ = std::fs::remove_file(f);
    }
    let sql = |args: &[&str]| {
        let o = std::process::Command::new("sqlite3")
            .arg(&db)
            .args(args)
            .output()
            .expect("sqlite3 (apt-get install sqlite3)");
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    sql(&[
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, fence INTEGER NOT NULL); \
           INSERT INTO t VALUES (1, 'init', 0);",
    ]);
    let update = |who: &str| {
        format!(
            "sqlite3 \"$DB\" \"UPDATE t SET v = '{who}', fence = $REDLOCK_FENCE \
             WHERE id = 1 AND fence <= $REDLOCK_FENCE; SELECT changes();\""
        )
    };
    // Holder 1: says it started, waits for the go, then writes.
    let holder1 = format!(
        "echo $REDLOCK_FENCE > \"$STARTED\"; while [ ! -e \"$GO\" ]; do sleep 0.01; done; {} > \"$OUT1\"",
        update("holder1")
    );
    let mut child = redlock()
        .args(node_args(&urls))
        .args([
            "exec", "-r", "ledger", "--fence", "--ttl", "1s", "--", "sh", "-c", &holder1,
        ])
        .env("DB", &db)
        .env("GO", &go)
        .env("STARTED", &started)
        .env("OUT1", &out1)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("holder 1's CMD to start", LIMIT, || {
        std::fs::read_to_string(&started).is_ok_and(|s| s.ends_with('\n'))
    });
    let f1: u64 = std::fs::read_to_string(&started)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Freeze redlock (not CMD): nobody extends the lease any more.
    signal(&child, Signal::SIGSTOP);
    assert!(
        cluster.wait_gone("ledger", Duration::from_secs(10)),
        "holder 1's lease ran out"
    );
    // Holder 2 takes the lock and writes.
    let r = redlock()
        .args(node_args(&urls))
        .args([
            "exec",
            "-r",
            "ledger",
            "--fence",
            "--",
            "sh",
            "-c",
            &update("holder2"),
        ])
        .env("DB", &db)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "1",
        "holder 2's write lands"
    );
    // Holder 1 wakes up (its CMD was never stopped) and writes: refused.
    std::fs::write(&go, b"").unwrap();
    wait_for("holder 1's write", LIMIT, || {
        std::fs::read_to_string(&out1).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(
        std::fs::read_to_string(&out1).unwrap().trim(),
        "0",
        "the stale write changed no row"
    );
    signal(&child, Signal::SIGCONT);
    let status = wait_limit(&mut child, LIMIT);
    assert_eq!(status.code(), Some(70), "redlock reports the lost lock");
    let row = sql(&["SELECT v, fence FROM t WHERE id = 1;"]);
    let (v, f2) = row.trim().split_once('|').unwrap();
    assert_eq!(v, "holder2", "the table is consistent");
    let f2: u64 = f2.parse().unwrap();
    assert!(f2 > f1, "{f2} > {f1}");
    for f in [&db, &go, &started, &out1] {
        let _ = std::fs::remove_file(f);
    }
}
