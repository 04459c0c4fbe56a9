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

/// Quorum intact, drift term dropped: the keys outlive the belief by less
/// than the relative clock drift, so an overlap needs another client to
/// ask in that short window (about 1 seed in 1,000); the quorum-backing
/// invariant sees the belief outlast its keys on every such seed.
#[test]
fn no_drift_alone_is_caught_by_quorum_backing() {
    let scenario = Scenario {
        core_hook: Some(|c| c.weaken(false, true)),
        ..Scenario::default()
    };
    let mut caught = Vec::new();
    for seed in 0..200 {
        let o = simulate(seed, &scenario);
        if let Some((class, msg)) = &o.failure {
            assert_eq!(*class, FailureClass::Safety, "seed {seed}: {msg}");
            assert!(
                msg.contains("nodes backed it"),
                "seed {seed}: expected a quorum-backing violation: {msg}"
            );
            caught.push(seed);
        }
    }
    let first = *caught
        .first()
        .expect("no drift (quorum intact) was never caught");
    eprintln!(
        "no drift: first violation at seed {first}, {} of 200 seeds",
        caught.len()
    );
    // About a third of the seeds let a belief run to its deadline.
    assert!(caught.len() >= 20, "caught only {} of 200", caught.len());
}

#[test]
fn the_unweakened_core_passes_the_same_seeds() {
    assert_eq!(first_violation(|_| {}, 200, false), None);
    for seed in 0..200 {
        let o = simulate(seed, &Scenario::default());
        assert_eq!(o.fence_failure, None, "seed {seed}");
    }
}
