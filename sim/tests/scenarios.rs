//! Named scenarios from the Redlock debate, as fixed scripts.
//!
//! Five nodes (0..=4), two clients, TTL 1 s. In the partitioned scenarios
//! client 0 cannot reach nodes 3 and 4 and client 1 cannot reach nodes 0
//! and 1, so each can only win with node 2 in its quorum.

use std::time::Duration;

use redlock_sim::{simulate, ClientScript, Outcome, Scenario, Script, ScriptFault};

const TTL: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn split_brain_partitions() -> Vec<(Duration, ScriptFault)> {
    let mut v = Vec::new();
    for (client, node) in [(0, 3), (0, 4), (1, 0), (1, 1)] {
        v.push((
            Duration::ZERO,
            ScriptFault::Partition {
                client,
                node,
                until: ms(5_000),
            },
        ));
    }
    v
}

fn holder_and_contender(faults: Vec<(Duration, ScriptFault)>, contender_start: Duration) -> Script {
    Script {
        clients: vec![
            ClientScript {
                start: ms(20),
                hold: ms(900),
                pause_before_action: None,
            },
            ClientScript {
                start: contender_start,
                hold: ms(500),
                pause_before_action: None,
            },
        ],
        faults,
        retry: None,
    }
}

fn run_script(script: Script, seed: u64) -> Outcome {
    simulate(
        seed,
        &Scenario {
            nodes: 5,
            clients: 2,
            ttl: Some(TTL),
            script: Some(script),
            record: true,
            ..Scenario::default()
        },
    )
}

fn assert_violates(name: &str, script: Script) {
    for seed in 0..5 {
        let o = run_script(script.clone(), seed);
        assert!(
            o.is_violation(),
            "{name}, seed {seed}: expected a violation, got {:?}\n{}",
            o.failure,
            o.trace.join("\n")
        );
    }
}

/// Kleppmann: client 0 holds on nodes 0, 1, 2; node 2's clock jumps
/// forward and its key expires; client 1 wins on nodes 2, 3, 4.
#[test]
fn kleppmann_clock_jump_on_one_node_violates() {
    let mut faults = split_brain_partitions();
    faults.push((
        ms(100),
        ScriptFault::ClockJump {
            node: 2,
            by: ms(1_500),
        },
    ));
    assert_violates("clock jump", holder_and_contender(faults, ms(150)));
}

/// Kleppmann: client 0 checks its lease, stops (GC) longer than the lease,
/// meanwhile the lock expires and client 1 takes it; client 0 then writes.
#[test]
fn kleppmann_gc_pause_while_holding_violates() {
    let script = Script {
        clients: vec![
            ClientScript {
                start: ms(20),
                hold: ms(600),
                pause_before_action: Some(ms(1_700)),
            },
            ClientScript {
                start: ms(100),
                hold: ms(900),
                pause_before_action: None,
            },
        ],
        faults: Vec::new(),
        retry: None,
    };
    assert_violates("gc pause", script);
}

/// A node restarts at once without persistence: client 0's key on node 2
/// is gone and client 1 wins on nodes 2, 3, 4.
#[test]
fn restart_without_persistence_violates() {
    let mut faults = split_brain_partitions();
    faults.push((
        ms(100),
        ScriptFault::Crash {
            node: 2,
            restart_after: Duration::ZERO,
            persistent: false,
        },
    ));
    assert_violates(
        "restart without persistence",
        holder_and_contender(faults, ms(150)),
    );
}

/// antirez's answer: a node that restarts empty only after the longest TTL
/// cannot help a second client while the first one's lease is valid.
#[test]
fn antirez_delayed_restart_does_not_violate() {
    for persistent in [false, true] {
        let mut faults = split_brain_partitions();
        faults.push((
            ms(100),
            ScriptFault::Crash {
                node: 2,
                restart_after: if persistent { ms(10) } else { TTL + ms(10) },
                persistent,
            },
        ));
        for seed in 0..20 {
            let o = run_script(holder_and_contender(faults.clone(), ms(150)), seed);
            assert!(
                o.failure.is_none(),
                "persistent {persistent}, seed {seed}: {:?}\n{}",
                o.failure,
                o.trace.join("\n")
            );
            assert!(
                o.stats.acquisitions >= 2,
                "both clients should get the lock in turn: {:?}",
                o.stats
            );
        }
    }
}
