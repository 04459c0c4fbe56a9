//! The model checker on the real core: the unweakened core passes, and each
//! planted bug (feature `__weaken`) is found, with a shortest-found
//! counterexample that the simulator's replay judges the same way.
//!
//! Every counterexample is also committed as a schedule under
//! `sim/tests/mc/`, where `sim/tests/mc_counterexamples.rs` replays it. A
//! test here fails if the search finds a different schedule than the
//! committed one; `REDLOCK_MC_BLESS=1 cargo test -p redlock-mc` rewrites
//! them.

use std::path::PathBuf;
use std::time::Duration;

use redlock_core::Weakness;
use redlock_mc::{
    check, describe, property_of, schedule, Action, Budget, CheckOptions, CheckReport,
    RedlockModel, Search, BOTH_GRANTED, FENCE_ORDER, FENCE_UNIQUE, MUTUAL_EXCLUSION, NO_KEY_LEFT,
    QUORUM_BACKING, SOME_GRANT,
};
use redlock_sim::replay::{replay, Foreign, Schedule, Setup};

fn plant(core: &mut redlock_sim::replay::ModelCore, weak: Weakness) {
    core.weaken_with(weak);
}

fn model(setup: Setup, budget: Budget) -> RedlockModel {
    RedlockModel::new(setup, budget, Some(plant))
}

fn fenced() -> Setup {
    // Client 1's wall clock lags by 10,000 s: its proposals are below client 0's fences,
    // so a grant after client 0's takes the second round.
    Setup {
        fenced: Some(vec![10_000, 0]),
        ..Setup::default()
    }
}

fn run(model: &RedlockModel, opts: &CheckOptions) -> CheckReport {
    let report = check(model.clone(), opts);
    eprintln!(
        "budget {:?}, weakness {:?}: {report}",
        model.budget,
        redlock_sim::replay::weakness_names(&model.setup.weakness)
    );
    report
}

/// Finds a violation of `property` with the planted weakness, prints the
/// shortest path found, replays it in the simulator and compares it with
/// the committed schedule `name`.
fn find(name: &str, model: RedlockModel, property: &str) {
    find_with(name, model, property, &CheckOptions::default());
}

fn long_secs() -> u64 {
    std::env::var("REDLOCK_MC_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_800)
}

fn find_with(name: &str, model: RedlockModel, property: &str, opts: &CheckOptions) {
    let actions = search(name, &model, property, opts);
    commit_and_replay(name, &model, &actions, property);
}

/// Breadth-first: the counterexample found has the fewest actions of any.
fn bfs() -> CheckOptions {
    CheckOptions {
        search: Search::BreadthFirst,
        ..CheckOptions::default()
    }
}

/// Searches for a violation of `property`, prints the path (the search's,
/// and the shortest found from it) and returns the shortest.
fn search(name: &str, model: &RedlockModel, property: &str, opts: &CheckOptions) -> Vec<Action> {
    let report = run(model, opts);
    let failure = report
        .failures
        .iter()
        .find(|f| f.property == property)
        .unwrap_or_else(|| panic!("{name}: no violation of {property:?} found: {report}"));
    eprintln!(
        "{name}: {property}: the search found {} steps, shortest found {}:\n{}",
        failure.found.len(),
        failure.actions.len(),
        describe(model, &failure.actions)
    );
    failure.actions.clone()
}

/// Replays `actions` in the simulator (it must see `property` violated)
/// and compares the schedule with the committed file `name`.
fn commit_and_replay(name: &str, model: &RedlockModel, actions: &[Action], property: &str) {
    let sched = replays(name, model, actions, property);
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "sim", "tests", "mc", name]
        .iter()
        .collect();
    let text = format!(
        "# Found by redlock-mc (mc/tests/check.rs), replayed by sim/tests/mc_counterexamples.rs.\n# Violates: {property}\n{sched}"
    );
    if std::env::var_os("REDLOCK_MC_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write the schedule");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let committed: Schedule = committed
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e} (REDLOCK_MC_BLESS=1 writes it)", path.display()));
    assert_eq!(
        committed,
        sched,
        "{} differs from the schedule found now (REDLOCK_MC_BLESS=1 rewrites it):\n{text}",
        path.display()
    );
}

/// The schedule of `actions`; the simulator's replay of it must see
/// `property` violated.
fn replays(name: &str, model: &RedlockModel, actions: &[Action], property: &str) -> Schedule {
    let sched = schedule(model, actions);
    // The simulator's replay must see the same violation.
    let replayed = replay(&sched, Some(plant)).expect("the schedule replays");
    assert!(
        replayed
            .violations
            .iter()
            .any(|(v, _, _)| property_of(*v) == property),
        "{name}: the simulator's replay does not see {property:?}: {:?}\n{}",
        replayed.violations,
        replayed.trace.join("\n")
    );
    sched
}

fn weak(w: Weakness) -> Setup {
    Setup {
        weakness: w,
        ..Setup::default()
    }
}

/// The CI-sized check: 3 nodes, 2 clients, each one acquire (one retry),
/// at most one extension, a release; every interleaving of deliveries
/// across the six connections (FIFO within each), every choice of the
/// instants at which commands start; no faults. Exhaustive.
#[test]
fn the_unweakened_core_passes_every_interleaving_of_two_clients() {
    let m = model(Setup::default(), Budget::default());
    let report = run(&m, &CheckOptions::default());
    assert!(report.complete, "{report}");
    assert!(report.failures.is_empty(), "{report}");
    assert!(report.covered.contains(&SOME_GRANT) && report.covered.contains(&BOTH_GRANTED));
    assert!(report.unique_states > 100_000, "{report}");
}

/// The same, fenced, with client 1's wall clock behind: one-round and
/// two-round grants, both orders.
#[test]
fn the_unweakened_fenced_core_passes_every_interleaving_of_two_clients() {
    let m = model(fenced(), Budget::default());
    let report = run(&m, &CheckOptions::default());
    assert!(report.complete && report.failures.is_empty(), "{report}");
    assert!(report.covered.contains(&BOTH_GRANTED));
}

/// The larger check: the fault budget (one of each fault, two delays, one
/// hold) on top of the CI scope, for up to `REDLOCK_MC_SECS` seconds
/// (default 1,800). Prints the figures; fails on any violation.
#[test]
#[ignore = "long: run with --ignored (figures in mc/README.md)"]
fn the_unweakened_core_passes_the_fault_budget() {
    let secs = long_secs();
    let budget = Budget {
        holds: 1,
        delays: 2,
        slow_drains: 1,
        resets: 1,
        crashes: 1,
        flushes: 1,
        zero_pauses: 1,
    };
    for setup in [Setup::default(), fenced()] {
        let mut m = model(setup, budget);
        // Nodes are interchangeable: node 0 stands for any crashed or
        // flushed node.
        m.fault_nodes = Some(vec![0]);
        let opts = CheckOptions {
            threads: 2,
            timeout: Some(Duration::from_secs(secs)),
            ..CheckOptions::default()
        };
        let report = run(&m, &opts);
        assert!(report.failures.is_empty(), "{report}");
    }
}

#[test]
fn quorum_of_half_is_found() {
    let w = Weakness {
        quorum_half: true,
        ..Weakness::default()
    };
    let budget = Budget {
        holds: 2,
        ..Budget::default()
    };
    find("quorum_half.txt", model(weak(w), budget), QUORUM_BACKING);
}

#[test]
fn no_drift_is_found() {
    let w = Weakness {
        no_drift: true,
        ..Weakness::default()
    };
    find(
        "no_drift.txt",
        model(weak(w), Budget::default()),
        QUORUM_BACKING,
    );
}

fn two_holders_model() -> RedlockModel {
    let w = Weakness {
        reuse_token: true,
        requeue_noscript: true,
        ..Weakness::default()
    };
    let budget = Budget {
        flushes: 1,
        delays: 2,
        holds: 1,
        ..Budget::default()
    };
    let mut m = model(weak(w), budget);
    m.fault_nodes = Some(vec![0]);
    m.fault_clients = Some(vec![1]);
    m.ordered_start = true;
    m.horizon = 1_100_000;
    m
}

/// The review's two-holders bug (one token for every attempt, and an undo
/// by EVALSHA re-queued by body behind the next attempt's SET after a
/// script-cache flush), as a path of the model: client 0 holds; node 0's
/// script cache is flushed; client 1's attempt 1 is busy and its replies
/// from node 0 are delayed past the retry pause (two delays); its request
/// to node 2 is held. The model reaches the unbacked belief, the shortest
/// path found from it replays in the simulator, and the unweakened core on
/// the same path is clean.
#[test]
fn the_two_holders_bug_is_a_path_of_the_model() {
    let m = two_holders_model();
    let recipe: Vec<Action> = [
        // The handshakes' SCRIPT LOAD replies.
        "to-client 0 0",
        "to-client 0 1",
        "to-client 0 2",
        "to-client 1 0",
        "to-client 1 1",
        "to-client 1 2",
        "flush 0",
        "acquire 0",
        "to-client 0 0",
        "to-client 0 1",
        "to-client 0 2",
        // Client 0's lease deadline: its keys still live.
        "tick",
        "acquire 1",
        "to-client 1 1",
        "to-client 1 2",
        "hold 1 2",
        // Client 0's keys expire; client 1's retry is due: node 0's replies
        // are still in flight (two delays).
        "tick",
        "tick",
        "timeout 1",
        "to-client 1 0",
        "to-client 1 0",
        "to-client 1 0",
        "to-client 1 1",
    ]
    .iter()
    .map(|a| a.parse().expect("an action"))
    .collect();
    let at = redlock_mc::violates(&m, &recipe, QUORUM_BACKING).expect("the recipe violates");
    assert_eq!(at, recipe.len(), "violated exactly at the last step");
    let shortest = redlock_mc::minimize(&m, &recipe, QUORUM_BACKING);
    eprintln!("two holders, shortest found:\n{}", describe(&m, &shortest));
    commit_and_replay("two_holders.txt", &m, &shortest, QUORUM_BACKING);
    // The unweakened core on the same budget and path: no violation.
    let mut fixed = m.clone();
    fixed.setup.weakness = Weakness::default();
    assert_eq!(redlock_mc::violates(&fixed, &recipe, QUORUM_BACKING), None);
}

/// The same bug searched for in the two-client bounds above. Ignored: on
/// this machine the depth-first search had not reached it after 90 s
/// (about 3.5 million distinct states); the targeted setups below find it
/// in well under a second. A schedule it finds is replayed, not compared.
#[test]
#[ignore = "long: the DFS needs more than the CI budget to reach it"]
fn the_two_holders_bug_is_found_by_the_two_client_search() {
    let opts = CheckOptions {
        timeout: Some(Duration::from_secs(long_secs())),
        ..CheckOptions::default()
    };
    let m = two_holders_model();
    let actions = search("two holders, two clients", &m, QUORUM_BACKING, &opts);
    replays("two holders, two clients", &m, &actions, QUORUM_BACKING);
}

fn planted_reorder() -> Weakness {
    Weakness {
        reuse_token: true,
        requeue_noscript: true,
        ..Weakness::default()
    }
}

/// One client and one node that a foreign client holds until 100 ms on the
/// node's clock (the fuzzer's recipe, `fuzz/regressions/`): a flush, three
/// delays and a hold. The second client's part is played by the foreign
/// key, without its state space.
fn two_holders_one_node(weakness: Weakness) -> RedlockModel {
    let setup = Setup {
        nodes: 1,
        clients: 1,
        node_ppm: vec![2_000],
        client_ppm: vec![-2_000],
        registers: vec![0],
        foreign: vec![Foreign {
            node: 0,
            until_ms: 100,
        }],
        weakness,
        ..Setup::default()
    };
    let budget = Budget {
        flushes: 1,
        delays: 3,
        holds: 1,
        ..Budget::default()
    };
    model(setup, budget)
}

/// One client and three nodes (the review's recipe, `core/tests/ordering.rs`):
/// a foreign client holds nodes 0 and 1 until 50 ms and node 2 for long;
/// node 0's script cache may be flushed; two delays.
fn two_holders_three_nodes(weakness: Weakness) -> RedlockModel {
    let setup = Setup {
        clients: 1,
        client_ppm: vec![-2_000],
        foreign: vec![
            Foreign {
                node: 0,
                until_ms: 50,
            },
            Foreign {
                node: 1,
                until_ms: 50,
            },
            Foreign {
                node: 2,
                until_ms: 100_000,
            },
        ],
        weakness,
        ..Setup::default()
    };
    let budget = Budget {
        flushes: 1,
        delays: 2,
        ..Budget::default()
    };
    let mut m = model(setup, budget);
    m.fault_nodes = Some(vec![0]);
    m
}

/// The two-holders bug, found by the search (breadth-first: the trace
/// printed is a shortest one) with one node and a foreign key.
#[test]
fn the_two_holders_bug_is_found_with_one_node_and_a_foreign_key() {
    find_with(
        "two_holders_one_node.txt",
        two_holders_one_node(planted_reorder()),
        QUORUM_BACKING,
        &bfs(),
    );
}

/// The unweakened core passes the very same bounds, exhaustively.
#[test]
fn the_unweakened_core_passes_the_one_node_two_holders_bounds() {
    let report = run(
        &two_holders_one_node(Weakness::default()),
        &CheckOptions::default(),
    );
    assert!(report.complete && report.failures.is_empty(), "{report}");
    assert!(report.covered.contains(&SOME_GRANT), "{report}");
}

/// The two-holders bug, found by the search with three nodes and foreign
/// keys.
#[test]
fn the_two_holders_bug_is_found_with_three_nodes_and_foreign_keys() {
    find_with(
        "two_holders_three_nodes.txt",
        two_holders_three_nodes(planted_reorder()),
        QUORUM_BACKING,
        &bfs(),
    );
}

/// The unweakened core passes the very same bounds, exhaustively.
#[test]
fn the_unweakened_core_passes_the_three_node_two_holders_bounds() {
    let report = run(
        &two_holders_three_nodes(Weakness::default()),
        &CheckOptions::default(),
    );
    assert!(report.complete && report.failures.is_empty(), "{report}");
    assert!(report.covered.contains(&SOME_GRANT), "{report}");
}

/// Wider: three nodes with foreign keys, a hold on top, and the flush on
/// any node (nodes are not interchangeable here). Exhaustive on the
/// unweakened core; the planted bug is found.
#[test]
#[ignore = "long: run with --ignored (figures in mc/README.md)"]
fn the_three_node_two_holders_bounds_with_a_hold() {
    let wider = |w| {
        let mut m = two_holders_three_nodes(w);
        m.budget.holds = 1;
        m.fault_nodes = None;
        m
    };
    let report = run(&wider(Weakness::default()), &CheckOptions::default());
    assert!(report.complete && report.failures.is_empty(), "{report}");
    let m = wider(planted_reorder());
    let actions = search("two holders, a hold", &m, QUORUM_BACKING, &bfs());
    replays("two holders, a hold", &m, &actions, QUORUM_BACKING);
}

fn dropped_undo() -> Weakness {
    Weakness {
        drop_owed_undo: true,
        ..Weakness::default()
    }
}

/// One client, three nodes, a hold and a reset.
fn owed_undo_bounds(weakness: Weakness) -> RedlockModel {
    let setup = Setup {
        clients: 1,
        client_ppm: vec![-2_000],
        weakness,
        ..Setup::default()
    };
    let budget = Budget {
        holds: 1,
        resets: 1,
        ..Budget::default()
    };
    model(setup, budget)
}

#[test]
fn the_dropped_owed_undo_is_found() {
    find_with(
        "drop_owed_undo.txt",
        owed_undo_bounds(dropped_undo()),
        NO_KEY_LEFT,
        &bfs(),
    );
}

/// The unweakened core passes the very same bounds, exhaustively.
#[test]
fn the_unweakened_core_passes_the_owed_undo_bounds() {
    let report = run(
        &owed_undo_bounds(Weakness::default()),
        &CheckOptions::default(),
    );
    assert!(report.complete && report.failures.is_empty(), "{report}");
}

/// The wider check: two clients, a hold and a reset (84 s on this
/// machine).
#[test]
#[ignore = "long: run with --ignored (figures in mc/README.md)"]
fn the_dropped_owed_undo_is_found_with_two_clients() {
    let budget = Budget {
        holds: 1,
        resets: 1,
        ..Budget::default()
    };
    find(
        "drop_owed_undo_two_clients.txt",
        model(weak(dropped_undo()), budget),
        NO_KEY_LEFT,
    );
}

/// A foreign client holding a quorum counts for mutual exclusion: with
/// quorum N/2, one node (node 2) is enough for our client while the
/// foreign client holds nodes 0 and 1.
#[test]
fn a_foreign_holder_counts_for_mutual_exclusion() {
    let w = Weakness {
        quorum_half: true,
        ..Weakness::default()
    };
    let foreign = |node| Foreign {
        node,
        until_ms: 500,
    };
    let setup = Setup {
        clients: 1,
        client_ppm: vec![-2_000],
        foreign: vec![foreign(0), foreign(1)],
        weakness: w,
        ..Setup::default()
    };
    let mut m = model(setup, Budget::default());
    m.only = Some(vec![MUTUAL_EXCLUSION]);
    find_with("foreign_overlap.txt", m, MUTUAL_EXCLUSION, &bfs());
}

#[test]
fn one_round_without_the_check_is_found() {
    let w = Weakness {
        fence_no_check: true,
        ..Weakness::default()
    };
    let setup = Setup {
        weakness: w,
        ..fenced()
    };
    find(
        "fence_no_check.txt",
        model(setup, Budget::default()),
        FENCE_ORDER,
    );
}

#[test]
fn per_node_counters_are_found() {
    let w = Weakness {
        fence_incr: true,
        ..Weakness::default()
    };
    // Registers left at 1, 0, 1 by earlier grants.
    let setup = Setup {
        weakness: w,
        registers: vec![1, 0, 1],
        ..fenced()
    };
    let budget = Budget {
        holds: 2,
        ..Budget::default()
    };
    find("fence_incr.txt", model(setup, budget), FENCE_UNIQUE);
}

/// Mutual exclusion itself (not only quorum backing) fails with quorum N/2.
#[test]
fn quorum_of_half_breaks_mutual_exclusion() {
    let w = Weakness {
        quorum_half: true,
        ..Weakness::default()
    };
    let budget = Budget {
        holds: 2,
        ..Budget::default()
    };
    let mut m = model(weak(w), budget);
    m.only = Some(vec![MUTUAL_EXCLUSION]);
    find("quorum_half_overlap.txt", m, MUTUAL_EXCLUSION);
}

/// The two fencing weaknesses the checker cannot tell from the correct
/// core within its faults (mc/README.md gives the argument): a plain SET is
/// harmless in general; counting late confirmations only while keys live out
/// their TTL (the simulator catches it with clock jumps, which this model
/// does not have).
fn harmless_fencing() -> [(&'static str, Weakness); 2] {
    [
        (
            "fence_plain_set",
            Weakness {
                fence_plain_set: true,
                ..Weakness::default()
            },
        ),
        (
            "fence_late_ok",
            Weakness {
                fence_late_ok: true,
                ..Weakness::default()
            },
        ),
    ]
}

/// Registers left at 1, 0, 1 by earlier grants and client 1's wall clock
/// 10,000 s behind: client 0's grants take one round, client 1's the
/// second round whenever it reads a register at or above its proposal.
fn fence_mixed(weakness: Weakness) -> Setup {
    Setup {
        weakness,
        registers: vec![1, 0, 1],
        ..fenced()
    }
}

/// Both wall clocks at 0 and registers far above any proposal (2^30 + 1,
/// 2^30, 2^30 + 1): every grant takes the second round, from different
/// registers. The clients are alike but for their tokens, so client 1
/// starting after client 0 is a symmetry reduction.
fn fence_round2(weakness: Weakness) -> Setup {
    Setup {
        weakness,
        fenced: Some(vec![0, 0]),
        registers: vec![(1 << 30) + 1, 1 << 30, (1 << 30) + 1],
        ..Setup::default()
    }
}

/// A fenced model: no extensions (they keep the fence), and crashes keep
/// the registers (fencing's condition: AOF with `appendfsync always`).
fn fence_model(setup: Setup, budget: Budget) -> RedlockModel {
    let mut m = model(setup, budget);
    m.extends = false;
    m.empty_crashes = false;
    m.ordered_start = m.setup.fenced == Some(vec![0, 0]);
    m
}

/// CI-sized: the two weaknesses pass every interleaving of the fenced
/// two-client cycle (mixed rounds, client 1 starting after client 0),
/// and the plain `SET` explores exactly the correct core's states.
#[test]
fn the_harmless_fencing_weaknesses_pass_every_interleaving() {
    let bounds = |w| {
        let mut m = fence_model(fence_mixed(w), Budget::default());
        m.ordered_start = true;
        m
    };
    let correct = run(&bounds(Weakness::default()), &CheckOptions::default());
    assert!(correct.complete && correct.failures.is_empty(), "{correct}");
    for (name, w) in harmless_fencing() {
        let report = run(&bounds(w), &CheckOptions::default());
        assert!(
            report.complete && report.failures.is_empty(),
            "{name}: {report}"
        );
        assert!(report.covered.contains(&BOTH_GRANTED), "{name}: {report}");
        if w.fence_plain_set {
            assert_eq!(report.unique_states, correct.unique_states, "{name}");
        }
    }
}

/// The exhaustive checks of mc/README.md: each weakness, both fenced
/// setups, one fault kind at a time on top of every interleaving. Each
/// must finish (no timeout) without a violation.
#[test]
#[ignore = "long (about an hour in release): run with --ignored (figures in mc/README.md)"]
fn the_harmless_fencing_weaknesses_pass_the_fault_bounds() {
    let faults = [
        Budget::default(),
        Budget {
            holds: 1,
            ..Budget::default()
        },
        Budget {
            delays: 1,
            ..Budget::default()
        },
        Budget {
            resets: 1,
            ..Budget::default()
        },
        Budget {
            crashes: 1,
            ..Budget::default()
        },
        Budget {
            slow_drains: 1,
            zero_pauses: 1,
            ..Budget::default()
        },
    ];
    let only = std::env::var("REDLOCK_MC_ONLY").ok();
    for (name, w) in harmless_fencing() {
        for (label, setup) in [("mixed", fence_mixed(w)), ("round 2", fence_round2(w))] {
            for budget in faults {
                let tag = format!("{name}, {label}, {budget:?}");
                if only.as_ref().is_some_and(|o| !tag.contains(o.as_str())) {
                    continue;
                }
                let report = run(
                    &fence_model(setup.clone(), budget),
                    &CheckOptions::default(),
                );
                eprintln!("{tag}: {report}");
                assert!(
                    report.complete && report.failures.is_empty(),
                    "{tag}: {report}"
                );
            }
        }
    }
}
