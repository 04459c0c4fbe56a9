//! Every mix of OK / nil / error / silence for N = 1..=9 nodes, driven
//! through the real core (not just the arithmetic), in several node orders.
//! Checks the decision, the lease's validity, that the failure's cause does
//! not depend on reply order, and that every node that may hold the key is
//! sent a release after a failed attempt (invariant 3).

mod support;

use std::time::Duration;

use redlock_core::{Config, Event, FailureKind, Instant, RetryPolicy};
use support::{Mode, Rig, TestRng};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Ok,
    Nil,
    Error,
    Silence,
}

fn run(answers: &[Answer]) {
    let n = answers.len();
    let q = n / 2 + 1;
    let mut config = Config::new(Duration::from_millis(1_000));
    config.node_timeout = Duration::from_millis(50);
    let mut rig: Rig = Rig::new(n, config);
    for (node, a) in rig.nodes.iter_mut().zip(answers) {
        match a {
            Answer::Ok => {}
            Answer::Nil => {
                node.keys
                    .insert(b"r".to_vec(), (b"other".to_vec(), 1_000_000));
            }
            Answer::Error => node.mode = Mode::Error("ERR boom"),
            Answer::Silence => node.mode = Mode::Silent,
        }
    }
    rig.now = Instant::from_millis(7);
    let t0 = rig.now;
    let op = rig
        .core
        .acquire_with(
            b"r",
            Duration::from_millis(1_000),
            RetryPolicy::none(),
            &mut TestRng(n as u64),
            t0,
        )
        .unwrap();
    rig.drain();
    rig.settle();
    let oks = answers.iter().filter(|a| **a == Answer::Ok).count();
    let nils = answers.iter().filter(|a| **a == Answer::Nil).count();
    let event = rig.take_op_event(op).expect("every op ends with an event");
    if oks >= q {
        match event {
            Event::Acquired { lease, .. } => {
                // validity = ttl - elapsed - drift; deadline = t0 + ttl - drift (drift = 10 + 2 ms).
                assert_eq!(
                    lease.deadline(),
                    t0 + Duration::from_millis(988),
                    "{answers:?}"
                );
                assert_eq!(lease.start(), t0);
            }
            e => panic!("{answers:?}: expected Acquired, got {e:?}"),
        }
        return;
    }
    let error = match event {
        Event::AcquireFailed { error, .. } => error,
        e => panic!("{answers:?}: expected AcquireFailed, got {e:?}"),
    };
    // The cause does not depend on which replies come first: busy exactly
    // when the "held" answers alone rule out a quorum (the core waits for
    // the replies that could decide it), unavailable otherwise.
    let expected = Some(if nils > n - q {
        FailureKind::Busy
    } else {
        FailureKind::Unavailable
    });
    assert_eq!(Some(error.kind), expected, "{answers:?}");
    // Invariant 3: every node that may hold our key (said OK, or got the SET
    // and stayed silent) got a release after the SET, on the same connection.
    for (i, a) in answers.iter().enumerate() {
        let cmds = &rig.nodes[i].commands;
        let set = cmds.iter().position(|c| c[0] == b"SET");
        let release = cmds
            .iter()
            .position(|c| c[0] == b"EVALSHA" || c[0] == b"EVAL");
        if let (Some(s), true) = (set, matches!(a, Answer::Ok | Answer::Silence)) {
            let r = release.unwrap_or_else(|| panic!("{answers:?}: node {i} not released"));
            assert!(r > s);
        }
        if *a == Answer::Ok {
            assert!(
                !rig.nodes[i].keys.contains_key(&b"r"[..]),
                "{answers:?}: stale key on node {i}"
            );
        }
    }
}

#[test]
fn every_mix_of_outcomes_through_the_core() {
    use Answer::*;
    let kinds = [Ok, Nil, Error, Silence];
    let mut runs = 0;
    for n in 1..=9usize {
        // Every multiset of answers, in sorted order and rotated, so each
        // kind of answer is seen first, last and in the middle.
        let mut counts = [0usize; 4];
        loop {
            if counts.iter().sum::<usize>() == n {
                let mut answers: Vec<Answer> = counts
                    .iter()
                    .enumerate()
                    .flat_map(|(k, c)| std::iter::repeat_n(kinds[k], *c))
                    .collect();
                for _ in 0..n.min(3) {
                    run(&answers);
                    runs += 1;
                    answers.rotate_left(1);
                }
            }
            // Next composition (odometer over counts 0..=n).
            let mut i = 0;
            loop {
                if i == 4 {
                    break;
                }
                counts[i] += 1;
                if counts[i] <= n {
                    break;
                }
                counts[i] = 0;
                i += 1;
            }
            if i == 4 {
                break;
            }
        }
    }
    assert!(runs > 1_000, "{runs}");
}
