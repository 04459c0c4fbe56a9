//! Mutual exclusion under the safe fault menu, and determinism.
//!
//! The normal tests run 10,000 seeds in four parallel quarters (the
//! simulator is optimised even in test builds, see the root Cargo.toml);
//! the ignored one runs 100,000:
//! `cargo test -p redlock-sim --release --test safety -- --ignored`.
//! The default menu fences about half of the seeds (every check of the
//! fenced store applies there) and gives about a third of them clients that
//! lock overlapping sets of resources; each seed also checks liveness
//! (every client acquires its lock, or its set, again after the heal).

use redlock_sim::{run, simulate, Choice, Scenario, SimOptions, Stats};

fn safe_menu(first: u64, seeds: u64) {
    let scenario = Scenario::default();
    let mut failed = Vec::new();
    let mut total = Stats::default();
    for seed in first..first + seeds {
        let o = simulate(seed, &scenario);
        total.add(&o.stats);
        if let Some((class, msg)) = o.failure {
            failed.push(format!("seed {seed}: {class:?}: {msg}"));
        }
        if let Some((kind, msg)) = o.fence_failure {
            failed.push(format!("seed {seed}: fence {kind}: {msg}"));
        }
    }
    let cycles = total.cycles;
    assert!(
        failed.is_empty(),
        "{} failing seeds:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(
        cycles > seeds * 5,
        "the workload barely ran: {cycles} cycles in {seeds} seeds"
    );
    // The swarm ran fenced and multi-resource seeds, and the fenced store
    // never refused a valid holder (no write is refused at all here).
    assert!(total.fenced_runs * 3 > seeds && total.fenced_runs * 3 < 2 * seeds);
    assert!(total.set_runs * 5 > seeds && total.set_runs * 2 < seeds);
    assert!(total.round2 > 0 && total.set_acquisitions > 0);
    assert_eq!(total.store_rejected, 0);
}

#[test]
fn safe_menu_10000_seeds_no_violation_part_1() {
    safe_menu(0, 2_500);
}

#[test]
fn safe_menu_10000_seeds_no_violation_part_2() {
    safe_menu(2_500, 2_500);
}

#[test]
fn safe_menu_10000_seeds_no_violation_part_3() {
    safe_menu(5_000, 2_500);
}

#[test]
fn safe_menu_10000_seeds_no_violation_part_4() {
    safe_menu(7_500, 2_500);
}

#[test]
#[ignore = "100,000 seeds: run with --release -- --ignored"]
fn safe_menu_100000_seeds_no_violation() {
    safe_menu(1_000_000, 100_000);
}

/// Found by the 100,000-seed run: a fenced acquire's second attempt, sent
/// on a connection the client had since replaced, reached a node after the
/// node crashed and restarted (a dead process's sockets deliver nothing: the
/// simulator now drops them) and was refused by the first attempt's key,
/// whose undo was owed and already written on the new connection. The
/// checker called that a stale key; the core had done right. Both the
/// delivery and the checker are fixed; `stale_keys.rs` shows the checker
/// still catches a dropped owed undo.
#[test]
fn seed_1096445_a_late_set_on_a_replaced_connection_is_no_stale_key() {
    let o = simulate(1_096_445, &Scenario::default());
    assert!(o.failure.is_none(), "{:?}", o.failure);
    assert!(o.fence_failure.is_none(), "{:?}", o.fence_failure);
}

#[test]
fn same_seed_same_trace_hash() {
    for seed in [0, 1, 17, 123_456_789, u64::MAX] {
        let a = simulate(seed, &Scenario::default());
        let b = simulate(seed, &Scenario::default());
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.stats, b.stats, "seed {seed}");
    }
    // Different seeds explore different schedules.
    let a = simulate(1, &Scenario::default());
    let b = simulate(2, &Scenario::default());
    assert_ne!(a.trace_hash, b.trace_hash);
    // Fenced and multi-resource runs too.
    let both = Scenario {
        fencing: Choice::Always,
        resource_sets: Choice::Always,
        ..Scenario::default()
    };
    for seed in [0, 3, 99] {
        let a = simulate(seed, &both);
        let b = simulate(seed, &both);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.stats, b.stats, "seed {seed}");
        assert!(a.stats.fenced_grants > 0 && a.stats.set_acquisitions > 0);
    }
    // Recording a trace does not change what happens.
    let rec = simulate(
        17,
        &Scenario {
            record: true,
            ..Scenario::default()
        },
    );
    assert_eq!(
        rec.trace_hash,
        simulate(17, &Scenario::default()).trace_hash
    );
}

#[test]
fn run_output_is_byte_identical() {
    let opts = SimOptions {
        seed: 5,
        seeds: 20,
        ..SimOptions::default()
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let ra = run(&opts, &mut a).unwrap();
    let rb = run(&opts, &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(ra, rb);
    let text = String::from_utf8(a).unwrap();
    assert!(text.contains("violations: 0 in 20 seeds"), "{text}");
    assert!(text.contains("determinism: seed 5 replayed"), "{text}");
    assert!(text.contains("fence violations: 0 in "), "{text}");
    // Every seed fenced (`redlock sim --fence`).
    let fenced = SimOptions {
        fencing: Choice::Always,
        ..opts
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    run(&fenced, &mut a).unwrap();
    run(&fenced, &mut b).unwrap();
    assert_eq!(a, b);
    let text = String::from_utf8(a).unwrap();
    assert!(text.contains("fencing: always"), "{text}");
    assert!(
        text.contains("fence violations: 0 in 20 fenced seeds"),
        "{text}"
    );
}
