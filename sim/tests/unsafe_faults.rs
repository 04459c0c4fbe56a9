//! Each assumption-breaking fault must be found, and reported replayably.

use redlock_sim::{run, simulate, FailureClass, Fault, Scenario, SimOptions};

/// The first seed (from 0) at which `fault` produces a safety violation.
fn first_violation(fault: Fault) -> Option<u64> {
    let scenario = Scenario {
        unsafe_faults: vec![fault],
        ..Scenario::default()
    };
    (0..200).find(|&seed| {
        let o = simulate(seed, &scenario);
        assert!(
            !matches!(o.failure, Some((FailureClass::Livelock, _))),
            "seed {seed}: {:?}",
            o.failure
        );
        o.is_violation()
    })
}

#[test]
fn amnesia_is_found_within_200_seeds() {
    let seed = first_violation(Fault::Amnesia).expect("amnesia never violated mutual exclusion");
    eprintln!("amnesia: first violation at seed {seed}");
}

#[test]
fn clock_jump_is_found_within_200_seeds() {
    let seed =
        first_violation(Fault::ClockJump).expect("clock jumps never violated mutual exclusion");
    eprintln!("clock-jump: first violation at seed {seed}");
}

#[test]
fn pause_is_found_within_200_seeds() {
    let seed = first_violation(Fault::Pause).expect("long pauses never violated mutual exclusion");
    eprintln!("pause: first violation at seed {seed}");
}

#[test]
fn violation_report_names_the_seed_and_replays() {
    let opts = SimOptions {
        seeds: 10,
        unsafe_faults: vec![Fault::Pause],
        ..SimOptions::default()
    };
    let mut out = Vec::new();
    let report = run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let seed = *report.violations.first().expect("no violation in 10 seeds");
    assert!(text.contains(&format!("\nseed {seed}\n")), "{text}");
    assert!(text.contains("VIOLATION"), "{text}");
    // The same seed alone reproduces it.
    let again = run(
        &SimOptions {
            seed,
            seeds: 1,
            ..opts.clone()
        },
        &mut std::io::sink(),
    )
    .unwrap();
    assert_eq!(again.violations, vec![seed]);
}
