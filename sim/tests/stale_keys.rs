//! Issue 9, defect 5, as a liveness signal: an acquire blocked by its *own*
//! earlier attempt's key. When the connection to a node drops after an
//! attempt's `SET` was written (and executed), the core cannot queue the
//! undo on the link in backoff and never sends it after the reconnect: the
//! key lives to its TTL, and the same operation's next attempt is refused
//! there as if another client held the lock. The checker reports it as
//! [`FailureClass::Liveness`] with [`Diagnosis::OwnStaleKey`]
//! (`reconnected: true`), unless a safety violation comes up in the run.
//!
//! The core now keeps undos owed across reconnects; the pre-fix behaviour
//! stays reachable as a planted bug (feature `__weaken`: `drop_owed_undo`),
//! and every test here asserts that the simulator still FINDS it on that
//! core, and that the fixed core passes the very same runs.

use std::time::Duration;

use redlock_core::RetryPolicy;
use redlock_sim::{
    simulate, ClientScript, Diagnosis, FailureClass, Outcome, Scenario, Script, ScriptFault,
    SimCore,
};

/// The core under test, chosen in this one place: the pre-fix behaviour,
/// planted (an undo for a link that is down is dropped).
fn core_hook() -> Option<fn(&mut SimCore)> {
    Some(|c| {
        c.weaken_with(redlock_core::Weakness {
            drop_owed_undo: true,
            ..redlock_core::Weakness::default()
        })
    })
}

fn is_undo_lost_across_reconnect(o: &Outcome) -> bool {
    matches!(o.failure, Some((FailureClass::Liveness, _)))
        && matches!(
            o.diagnosis,
            Some(Diagnosis::OwnStaleKey {
                reconnected: true,
                undo_noscript: false,
                ..
            })
        )
}

fn print(o: &Outcome) {
    eprintln!("seed {}: {:?}", o.seed, o.failure);
    for line in &o.trace {
        eprintln!("  {line}");
    }
}

/// Planted bug found: the default safe menu finds an acquire blocked by
/// its own key whose undo was lost with the connection; the fixed core
/// passes the same seed.
#[test]
fn default_menu_finds_an_undo_lost_across_a_reconnect() {
    let sc = Scenario {
        core_hook: core_hook(),
        ..Scenario::default()
    };
    let seed = (0..500)
        .find(|&seed| is_undo_lost_across_reconnect(&simulate(seed, &sc)))
        .expect("500 seeds of the default menu never found a stale own key after a reconnect");
    let o = simulate(
        seed,
        &Scenario {
            record: true,
            trace_len: 200,
            ..sc
        },
    );
    print(&o);
    assert!(is_undo_lost_across_reconnect(&o));
    let (_, msg) = o.failure.as_ref().unwrap();
    assert!(msg.contains("by its own earlier attempt's key"), "{msg}");
    assert!(o.trace.iter().any(|l| l.contains("STALE KEY")));
    let fixed = simulate(seed, &Scenario::default());
    assert!(
        fixed.failure.is_none(),
        "fixed core, seed {seed}: {:?}",
        fixed.failure
    );
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Planted bug found: the defect as a script (the fixed core passes it).
/// 3 nodes, TTL 1 s, one
/// client retrying every 200 ms; a foreign client holds nodes 1 and 2; all
/// replies lag 30 ms. The client's first `SET` is stored on node 0, then the
/// connection to node 0 is reset before the reply comes back, and node 0
/// stays unreachable until 250 ms; nodes 1 and 2 refuse, the attempt fails
/// while node 0's link is down. The planted core drops that undo (never
/// sent after the reconnect), and the next attempt's `SET` on node 0 is
/// refused by the client's own key; the fixed core sends it after the
/// handshake.
#[test]
fn scripted_reset_after_set_leaves_a_key_that_blocks_the_next_attempt() {
    let mut faults = vec![
        (
            Duration::ZERO,
            ScriptFault::ForeignKey {
                node: 1,
                hold: ms(2_000),
            },
        ),
        (
            Duration::ZERO,
            ScriptFault::ForeignKey {
                node: 2,
                hold: ms(2_000),
            },
        ),
        (ms(95), ScriptFault::Reset { client: 0, node: 0 }),
        // Node 0 stays unreachable for a while: the attempt fails while its
        // link is down (the undo is owed, or dropped by the planted bug).
        (
            ms(95),
            ScriptFault::Partition {
                client: 0,
                node: 0,
                until: ms(250),
            },
        ),
    ];
    for node in 0..3 {
        faults.push((
            Duration::ZERO,
            ScriptFault::SlowReplies {
                node,
                until: ms(1_000),
                extra: ms(30),
            },
        ));
    }
    let script = Script {
        clients: vec![ClientScript {
            start: ms(80),
            hold: ms(300),
            pause_before_action: None,
        }],
        faults,
        retry: Some(RetryPolicy {
            count: 3,
            delay: ms(200),
            jitter: Duration::ZERO,
            wait: None,
        }),
    };
    for seed in 0..5 {
        let o = simulate(
            seed,
            &Scenario {
                nodes: 3,
                clients: 1,
                ttl: Some(Duration::from_secs(1)),
                script: Some(script.clone()),
                core_hook: core_hook(),
                record: true,
                trace_len: 200,
                ..Scenario::default()
            },
        );
        if seed == 0 {
            print(&o);
        }
        assert!(
            is_undo_lost_across_reconnect(&o),
            "seed {seed}: {:?} {:?}",
            o.failure,
            o.diagnosis
        );
        assert_eq!(
            o.diagnosis,
            Some(Diagnosis::OwnStaleKey {
                node: 0,
                client: 0,
                reconnected: true,
                undo_noscript: false
            }),
            "seed {seed}"
        );
        let fixed = simulate(
            seed,
            &Scenario {
                nodes: 3,
                clients: 1,
                ttl: Some(Duration::from_secs(1)),
                script: Some(script.clone()),
                ..Scenario::default()
            },
        );
        assert!(
            fixed.failure.is_none(),
            "fixed core, seed {seed}: {:?}",
            fixed.failure
        );
    }
}
