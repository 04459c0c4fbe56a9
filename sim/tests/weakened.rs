//! A checker that cannot fail proves nothing: a core broken on purpose
//! (feature `__weaken` of redlock-core, a dev-dependency here) must be caught.

use redlock_sim::{simulate, FailureClass, Scenario, SimCore};

fn first_violation(hook: fn(&mut SimCore), seeds: u64, unsafe_clocks: bool) -> Option<u64> {
    let scenario = Scenario {
        core_hook: Some(hook),
        safe_faults: !unsafe_clocks,
        ..Scenario::default()
    };
    (0..seeds).find(|&seed| {
        let o = simulate(seed, &scenario);
        assert!(
            !matches!(o.failure, Some((FailureClass::Livelock, _))),
            "{:?}",
            o.failure
        );
        o.is_violation()
    })
}

#[test]
fn quorum_of_half_is_caught() {
    let seed = first_violation(|c| c.weaken(true, false), 200, false)
        .expect("quorum N/2 was never caught");
    eprintln!("quorum N/2: first violation at seed {seed}");
}

#[test]
fn quorum_of_half_and_no_drift_is_caught() {
    let seed = first_violation(|c| c.weaken(true, true), 200, false)
        .expect("weakened core was never caught");
    eprintln!("quorum N/2 + no drift: first violation at seed {seed}");
}

#[test]
fn the_unweakened_core_passes_the_same_seeds() {
    assert_eq!(first_violation(|_| {}, 200, false), None);
}
