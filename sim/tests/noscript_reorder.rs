//! Issue 9, defect 1: an undo (compare-and-delete) answered `NOSCRIPT` is
//! re-sent by `EVAL` at the back of the node's queue, behind the next
//! attempt's `SET` of the same token, and deletes the new key: the client
//! believes it holds the lock on a quorum that is not there.
//!
//! The core is fixed (scripts go by body, every attempt has its own token);
//! the pre-fix behaviour stays reachable as a planted bug (feature
//! `__weaken`: `reuse_token` + `requeue_noscript`), and every test here
//! asserts that the simulator still FINDS it on that core, from the default
//! fault menu, and that the fixed core passes the very same runs.

use std::time::Duration;

use redlock_core::RetryPolicy;
use redlock_sim::{
    simulate, ClientScript, Diagnosis, Outcome, Scenario, Script, ScriptFault, SimCore,
};

/// The core under test, chosen in this one place: the pre-fix behaviour,
/// planted (one token per operation, `NOSCRIPT` re-queued by body at the
/// back of the queue).
fn core_hook() -> Option<fn(&mut SimCore)> {
    Some(|c| {
        c.weaken_with(redlock_core::Weakness {
            reuse_token: true,
            requeue_noscript: true,
            ..redlock_core::Weakness::default()
        })
    })
}

fn scenario() -> Scenario {
    Scenario {
        core_hook: core_hook(),
        ..Scenario::default()
    }
}

/// Checks that the trace shows the re-ordering on `node`, from `client`:
/// an `EVALSHA` release answered `NOSCRIPT`, then a `SET` answered `+OK`,
/// then the release re-sent as `EVAL` deleting the key (`:1`).
fn assert_reorder_in_trace(o: &Outcome, node: usize, client: usize) {
    let prefix = format!("n{node} <- c{client}: ");
    let text: String = o
        .trace
        .iter()
        .filter(|l| l.contains(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut at = 0;
    for step in ["EVALSHA", "NOSCRIPT", "+OK", "EVAL local", ":1"] {
        match text[at..].find(step) {
            Some(i) => at += i + step.len(),
            None => panic!(
                "seed {}: the trace of n{node} <- c{client} does not show the re-ordered undo (missing {step:?} after byte {at}):\n{text}",
                o.seed
            ),
        }
    }
    assert!(
        o.trace
            .iter()
            .any(|l| l.contains(&format!("REORDER n{node}"))),
        "seed {}: no REORDER line in the trace",
        o.seed
    );
}

/// Runs `seed` of `scenario` again with a long trace, prints it, and checks
/// that its failure is the re-ordered undo.
fn replay_and_check(seed: u64, scenario: &Scenario) -> Outcome {
    let o = simulate(
        seed,
        &Scenario {
            record: true,
            trace_len: 400,
            ..scenario.clone()
        },
    );
    eprintln!("seed {seed}: {:?}", o.failure);
    for line in &o.trace {
        eprintln!("  {line}");
    }
    assert!(o.is_violation(), "seed {seed}: {:?}", o.failure);
    let Some(Diagnosis::UndoReordered { node, client }) = o.diagnosis else {
        panic!("seed {seed}: not the re-ordered undo: {:?}", o.diagnosis);
    };
    assert_reorder_in_trace(&o, node, client);
    o
}

/// Planted bug found: the default safe menu (5 nodes, 3 clients) finds the
/// two-holders bug on the planted core (see the README for the figures).
#[test]
fn default_menu_finds_the_reordered_undo() {
    let sc = scenario();
    let found = (0..3_000).find(|&seed| {
        let o = simulate(seed, &sc);
        o.is_violation() && matches!(o.diagnosis, Some(Diagnosis::UndoReordered { .. }))
    });
    let seed = found.expect("3,000 seeds of the default menu never found the re-ordered undo");
    eprintln!("default menu: first re-ordered undo at seed {seed}");
    replay_and_check(seed, &sc);
}

/// Planted bug found: the smallest seed of the planted core whose safety
/// violation is the re-ordered undo (rather than the same bug first shown
/// as a stale key, a liveness signal, or the reused token's undo
/// overtaking on an independent connection, seeds 91, 120, 155), as a
/// named regression: 3 nodes, 2 clients, seed 182.
/// Client 1's attempt is refused on node 0, its undo goes by `EVALSHA` to
/// node 0, whose script cache was just flushed; the other client's key goes
/// away, the next attempt stores its key there with the same token; the
/// `NOSCRIPT` arrives, the undo is re-sent by `EVAL` behind that `SET` and
/// deletes the new key; the client then counts node 0's `+OK` and believes
/// it holds the lock without a quorum.
///
/// A seed depends on the whole menu: if the menu changes, find the new
/// smallest seed with `cargo run -p redlock-sim --release --example
/// hunt_weak -- reorder 0 3000 nodes=3 clients=2` (one whose acquires go by
/// `SET`: on fenced seeds they go by script, seed 395 before fencing was in
/// the menu). The scripted recipe below does not.
#[test]
fn minimised_seed_reproduces_the_reordered_undo() {
    let sc = Scenario {
        nodes: 3,
        clients: 2,
        ..scenario()
    };
    let o = replay_and_check(182, &sc);
    assert_eq!(
        o.diagnosis,
        Some(Diagnosis::UndoReordered { node: 0, client: 1 })
    );
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The issue's recipe as a script: 3 nodes, TTL 1 s (node timeout 50 ms),
/// one client retrying every 10 ms. A foreign client holds nodes 0 and 1
/// briefly (85 ms) and node 2 for long; node 0's script cache is flushed
/// after the handshake loaded the scripts, and node 0's replies lag 30 ms
/// (longer than the retry pause, shorter than the node timeout).
fn issue_recipe() -> Script {
    Script {
        clients: vec![ClientScript {
            start: ms(80),
            hold: ms(500),
            pause_before_action: None,
        }],
        faults: vec![
            (
                Duration::ZERO,
                ScriptFault::ForeignKey {
                    node: 0,
                    hold: ms(85),
                },
            ),
            (
                Duration::ZERO,
                ScriptFault::ForeignKey {
                    node: 1,
                    hold: ms(85),
                },
            ),
            (
                Duration::ZERO,
                ScriptFault::ForeignKey {
                    node: 2,
                    hold: ms(5_000),
                },
            ),
            (
                Duration::ZERO,
                ScriptFault::SlowReplies {
                    node: 0,
                    until: ms(2_000),
                    extra: ms(30),
                },
            ),
            (ms(50), ScriptFault::ScriptFlush { node: 0 }),
        ],
        retry: Some(RetryPolicy {
            count: 5,
            delay: ms(10),
            jitter: Duration::ZERO,
            wait: None,
        }),
    }
}

/// Planted bug found: the issue's 3-node recipe reproduces on every seed
/// tried (the seed only moves sub-millisecond network delays).
#[test]
fn issue_recipe_reproduces_the_reordered_undo() {
    for seed in 0..5 {
        let sc = Scenario {
            nodes: 3,
            clients: 1,
            ttl: Some(Duration::from_secs(1)),
            script: Some(issue_recipe()),
            ..scenario()
        };
        let o = replay_and_check(seed, &sc);
        assert_eq!(
            o.diagnosis,
            Some(Diagnosis::UndoReordered { node: 0, client: 0 }),
            "seed {seed}"
        );
    }
}

/// The fixed core passes the very runs that catch the planted one: the
/// recipe, the pinned seed, and the default menu's first 3,000 seeds (the
/// safety suites run many more).
#[test]
fn the_fixed_core_passes_the_same_runs() {
    for seed in 0..5 {
        let sc = Scenario {
            nodes: 3,
            clients: 1,
            ttl: Some(Duration::from_secs(1)),
            script: Some(issue_recipe()),
            ..Scenario::default()
        };
        let o = simulate(seed, &sc);
        assert!(o.failure.is_none(), "recipe, seed {seed}: {:?}", o.failure);
    }
    let sc = Scenario {
        nodes: 3,
        clients: 2,
        ..Scenario::default()
    };
    assert!(simulate(182, &sc).failure.is_none());
    let sc = Scenario::default();
    for seed in 0..3_000 {
        let o = simulate(seed, &sc);
        assert!(o.failure.is_none(), "seed {seed}: {:?}", o.failure);
    }
}
