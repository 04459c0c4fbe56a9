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

/// Register amnesia keeps the locks safe (delayed restarts) and breaks the
/// fences: under the default menu (fencing on about half of the seeds) the
/// fence checker fails, the mutual-exclusion checker does not, and the
/// report names the seed, which replays alone.
#[test]
fn register_amnesia_is_found_by_the_fence_checker_and_replays() {
    let opts = SimOptions {
        seeds: 200,
        unsafe_faults: vec![Fault::RegisterAmnesia],
        ..SimOptions::default()
    };
    let mut out = Vec::new();
    let report = run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let seed = *report
        .fence_violations
        .first()
        .expect("register amnesia never broke the fences in 200 seeds");
    eprintln!(
        "register-amnesia: {} of 200 seeds fail the fence checker (first {seed})",
        report.fence_violations.len()
    );
    assert_eq!(report.violations, report.fence_violations, "{text}");
    assert!(text.contains("violations: 0 in 200 seeds"), "{text}");
    assert!(text.contains(&format!("\nseed {seed}\n")), "{text}");
    assert!(text.contains("FENCE VIOLATION"), "{text}");
    assert!(text.contains("register-amnesia (unsafe)"), "{text}");
    let again = run(
        &SimOptions {
            seed,
            seeds: 1,
            ..opts.clone()
        },
        &mut std::io::sink(),
    )
    .unwrap();
    assert_eq!(again.fence_violations, vec![seed]);
}
