//! Replays every committed fuzz input (`fuzz/corpus/<target>/*` and
//! `fuzz/regressions/<target>/*`) through the same functions the cargo-fuzz
//! targets call, on stable, plus a few thousand pseudo-random inputs.

use std::path::Path;

fn target(name: &str) -> fn(&[u8]) {
    match name {
        "replies" => redlock_core::fuzzing::replies,
        "ops" => redlock_core::fuzzing::ops,
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
            eprintln!("replaying {}", file.path().display());
            f(&data);
            count += 1;
        }
    }
    count
}

#[test]
fn committed_corpora_and_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let n = replay(&root.join("corpus")) + replay(&root.join("regressions"));
    assert!(n > 0, "no corpus found under {}", root.display());
}

/// A cheap stand-in for fuzzing on every `cargo test`: deterministic
/// pseudo-random inputs of assorted lengths.
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
        redlock_core::fuzzing::ops(&data);
        if i % 100 == 0 {
            redlock_sim::fuzz::simulation(&data);
        }
    }
}
