//! Mutual exclusion under the safe fault menu, and determinism.
//!
//! The normal tests run 10,000 seeds in four parallel quarters (the
//! simulator is optimised even in test builds, see the root Cargo.toml);
//! the ignored one runs 100,000:
//! `cargo test -p redlock-sim --release --test safety -- --ignored`.

use redlock_sim::{run, simulate, Scenario, SimOptions};

fn safe_menu(first: u64, seeds: u64) {
    let scenario = Scenario::default();
    let mut failed = Vec::new();
    let mut cycles = 0;
    for seed in first..first + seeds {
        let o = simulate(seed, &scenario);
        cycles += o.stats.cycles;
        if let Some((class, msg)) = o.failure {
            failed.push(format!("seed {seed}: {class:?}: {msg}"));
        }
    }
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
}
