//! Multi-resource workloads (issue 14): clients lock overlapping sets of
//! resources (`{r, r2}`, `{r2, r3}`, `{r, r3}`, single resources, all three)
//! with one `acquire_set` each, the names given in any order and with
//! duplicates. The mutual-exclusion and quorum-backing checks judge every
//! resource of a set, and liveness holds after the faults heal: every
//! client acquires its set again (no deadlock, no starved set).

use redlock_sim::{simulate, Choice, Fault, Scenario, Stats};

fn sets() -> Scenario {
    Scenario {
        resource_sets: Choice::Always,
        ..Scenario::default()
    }
}

#[test]
fn overlapping_sets_keep_mutual_exclusion_and_every_set_is_acquired_again() {
    let sc = sets();
    let mut total = Stats::default();
    for seed in 0..600 {
        let o = simulate(seed, &sc);
        assert!(
            o.failure.is_none() && o.fence_failure.is_none(),
            "seed {seed}: {:?} / {:?}",
            o.failure,
            o.fence_failure
        );
        assert_eq!(o.stats.set_runs, 1);
        total.add(&o.stats);
    }
    eprintln!(
        "600 seeds of sets: {} acquisitions ({} of several resources), {} busy, {} fenced seeds",
        total.acquisitions, total.set_acquisitions, total.busy, total.fenced_runs
    );
    assert!(total.set_acquisitions * 2 > total.acquisitions);
    // The sets overlap: contention is the common case.
    assert!(total.busy > total.acquisitions / 4);
    assert!(total.fenced_runs > 200 && total.fenced_runs < 400);
}

/// The checker judges each resource of a set: a broken assumption, or a
/// core broken on purpose, is caught on multi-resource runs too.
#[test]
fn violations_on_sets_are_caught() {
    for fault in [Fault::Pause, Fault::ClockJump, Fault::Amnesia] {
        let sc = Scenario {
            unsafe_faults: vec![fault],
            ..sets()
        };
        let seed = (0..100)
            .find(|&seed| simulate(seed, &sc).is_violation())
            .unwrap_or_else(|| panic!("{fault} never violated mutual exclusion on sets"));
        eprintln!("{fault} on sets: first violation at seed {seed}");
    }
    let weak = Scenario {
        core_hook: Some(|c| c.weaken(true, false)),
        ..sets()
    };
    let seed = (0..100)
        .find(|&seed| simulate(seed, &weak).is_violation())
        .expect("quorum N/2 was never caught on sets");
    eprintln!("quorum N/2 on sets: first violation at seed {seed}");
    for seed in 0..=seed {
        let o = simulate(seed, &sets());
        assert!(o.failure.is_none(), "seed {seed}: {:?}", o.failure);
    }
}
