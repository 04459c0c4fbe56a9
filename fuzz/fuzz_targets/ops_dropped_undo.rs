#![no_main]

// The `ops` model against the planted issue-9 defect 5 (an undo for a link
// that is down is dropped): shows the fuzzer finds it.
// `fuzz/regressions/ops_dropped_undo` keeps what it found.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redlock_core::fuzzing::ops_weakened(
    data,
    redlock_core::Weakness {
        drop_owed_undo: true,
        ..Default::default()
    }
));
