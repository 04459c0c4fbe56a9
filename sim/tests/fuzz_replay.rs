//! Replays every committed fuzz input (`fuzz/corpus/<target>/*` and
//! `fuzz/regressions/<target>/*`) through the same functions the cargo-fuzz
//! targets call, on stable, plus a few thousand pseudo-random inputs.
//!
//! Every input replays without a panic on the fixed core. The regressions
//! listed in [`PLANTED`] reproduce issue 9's bugs, which stay reachable as
//! planted bugs (feature `__weaken`): on the planted core each must still
//! make the `ops` target panic with its invariant, so the fuzz model is shown
//! to catch them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Directories of `fuzz/regressions/` holding what the fuzzer found on a
/// planted bug (the `ops_reorder` / `ops_dropped_undo` targets), with the
/// bug and a piece of the panic message each input must produce on the
/// planted core. On the fixed core they replay through `ops` without a
/// panic like every other input.
const PLANTED: &[(&str, Planted, &str)] = &[
    // Issue 9, defect 1: the undo re-sent by EVAL after NOSCRIPT deletes the
    // key of the next attempt's SET; the lease is believed on a minority.
    ("ops_reorder", Planted::Reorder, "nodes, quorum is"),
    // Issue 9, defect 5: the undo of a SET executed before the connection
    // dropped is never sent; the next attempt is refused by its own key.
    (
        "ops_dropped_undo",
        Planted::DroppedUndo,
        "refused by the key its own earlier attempt stored there",
    ),
];

#[derive(Clone, Copy, Debug)]
enum Planted {
    /// One token per operation, `NOSCRIPT` re-queued by body at the back.
    Reorder,
    /// An undo for a link that is down is dropped.
    DroppedUndo,
}

impl Planted {
    fn weakness(self) -> redlock_core::Weakness {
        let mut w = redlock_core::Weakness::default();
        match self {
            Planted::Reorder => {
                w.reuse_token = true;
                w.requeue_noscript = true;
            }
            Planted::DroppedUndo => w.drop_owed_undo = true,
        }
        w
    }
}

/// The panic message of `f(data)`, if it panics.
fn panic_message(f: fn(&[u8]), data: &[u8]) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(|| f(data))).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default(),
    )
}

fn target(name: &str) -> fn(&[u8]) {
    match name {
        "replies" => redlock_core::fuzzing::replies,
        "ops" | "ops_reorder" | "ops_dropped_undo" => redlock_core::fuzzing::ops,
        "sim" => redlock_sim::fuzz::simulation,
        other => panic!("unknown fuzz target directory {other:?}"),
    }
}

fn replay(dir: &Path) -> usize {
    let mut count = 0;
    let Ok(targets) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut targets: Vec<_> = targets.filter_map(Result::ok).collect();
    targets.sort_by_key(|e| e.file_name());
    for t in targets {
        if !t.path().is_dir() {
            continue;
        }
        let name = t.file_name().to_string_lossy().into_owned();
        let f = target(&name);
        let mut files: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        files.sort_by_key(|e| e.file_name());
        for file in files {
            let data = std::fs::read(file.path()).unwrap();
            let rel = format!("{name}/{}", file.file_name().to_string_lossy());
            eprintln!("replaying {}", file.path().display());
            f(&data);
            if let Some((_, planted, expected)) = PLANTED.iter().find(|(dir, ..)| *dir == name) {
                // The planted bug: the input must still find it.
                let weak = planted.weakness();
                let msg = catch_unwind(AssertUnwindSafe(|| {
                    redlock_core::fuzzing::ops_weakened(&data, weak)
                }))
                .err()
                .map(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                })
                .unwrap_or_else(|| {
                    panic!("{rel}: the planted bug ({planted:?}) is no longer found")
                });
                assert!(
                    msg.contains(expected),
                    "{rel}: panicked with {msg:?}, expected {expected:?}"
                );
            }
            count += 1;
        }
    }
    count
}

/// Corpora and regressions replay without a panic; the regressions of
/// planted bugs ([`PLANTED`]) still find them on the planted core.
#[test]
fn committed_corpora_and_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let n = replay(&root.join("corpus")) + replay(&root.join("regressions"));
    assert!(n > 0, "no corpus found under {}", root.display());
    for (dir, ..) in PLANTED {
        let found = std::fs::read_dir(root.join("regressions").join(dir)).map_or(0, |d| d.count());
        assert!(found > 0, "no planted-bug regression under {dir}");
    }
}

/// A cheap stand-in for fuzzing on every `cargo test`: deterministic
/// pseudo-random inputs of assorted lengths; any panic fails the test.
#[test]
fn pseudo_random_inputs() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..3_000 {
        let len = (next() % 400) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        redlock_core::fuzzing::replies(&data);
        if let Some(msg) = panic_message(redlock_core::fuzzing::ops, &data) {
            panic!("ops panicked on pseudo-random input {i}: {msg}");
        }
        if i % 100 == 0 {
            redlock_sim::fuzz::simulation(&data);
        }
    }
}
