//! The model checker's counterexamples (redlock-mc, `mc/tests/check.rs`),
//! replayed as simulator scenarios: each committed schedule under
//! `sim/tests/mc/` runs the real cores (with the weakness it names planted)
//! against simulated nodes, step by step, and the simulator's checker must
//! see the violation the model checker reported. The same schedule on the
//! unweakened core must be clean, or stop being possible where the fixed
//! core behaves differently: the violation belongs to the planted bug.

use redlock_core::Weakness;
use redlock_sim::replay::{replay, ModelCore, Schedule, Violation};

fn plant(core: &mut ModelCore, weak: Weakness) {
    core.weaken_with(weak);
}

fn load(name: &str) -> Schedule {
    let path = format!("{}/tests/mc/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.parse().unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn confirms(name: &str, expected: Violation) {
    let schedule = load(name);
    assert_ne!(
        schedule.setup.weakness,
        Weakness::default(),
        "{name} plants no weakness"
    );
    let report = replay(&schedule, Some(plant)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        report.found(expected),
        "{name}: the simulator does not see {expected}: {:?}\n{}",
        report.violations,
        report.trace.join("\n")
    );
    // The unweakened core on the same schedule: no violation (the schedule
    // may stop being possible, as the fixed core sends other commands).
    let mut fixed = schedule.clone();
    fixed.setup.weakness = Weakness::default();
    if let Ok(clean) = replay(&fixed, Some(plant)) {
        assert!(
            clean.violations.is_empty(),
            "{name}: the unweakened core violates too: {:?}\n{}",
            clean.violations,
            clean.trace.join("\n")
        );
    }
}

#[test]
fn quorum_of_half_replays_as_an_unbacked_belief() {
    confirms("quorum_half.txt", Violation::QuorumBacking);
}

#[test]
fn quorum_of_half_replays_as_two_holders() {
    confirms("quorum_half_overlap.txt", Violation::MutualExclusion);
}

#[test]
fn no_drift_replays_as_an_unbacked_belief() {
    confirms("no_drift.txt", Violation::QuorumBacking);
}

#[test]
fn the_two_holders_bug_replays_as_an_unbacked_belief() {
    confirms("two_holders.txt", Violation::QuorumBacking);
}

#[test]
fn the_two_holders_bug_with_one_node_and_a_foreign_key_replays_as_an_unbacked_belief() {
    confirms("two_holders_one_node.txt", Violation::QuorumBacking);
}

#[test]
fn the_two_holders_bug_with_three_nodes_and_foreign_keys_replays_as_an_unbacked_belief() {
    confirms("two_holders_three_nodes.txt", Violation::QuorumBacking);
}

#[test]
fn the_dropped_owed_undo_replays_as_a_key_left_behind() {
    confirms("drop_owed_undo.txt", Violation::KeyLeftBehind);
}

#[test]
fn the_dropped_owed_undo_with_two_clients_replays_as_a_key_left_behind() {
    confirms("drop_owed_undo_two_clients.txt", Violation::KeyLeftBehind);
}

#[test]
fn a_grant_while_a_foreign_client_holds_a_quorum_replays_as_two_holders() {
    confirms("foreign_overlap.txt", Violation::MutualExclusion);
}

#[test]
fn one_round_without_the_check_replays_as_a_fence_out_of_order() {
    confirms("fence_no_check.txt", Violation::FenceOrder);
}

#[test]
fn per_node_counters_replay_as_a_repeated_fence() {
    confirms("fence_incr.txt", Violation::FenceUniqueness);
}
