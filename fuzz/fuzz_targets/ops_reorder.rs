#![no_main]

// The `ops` model against the planted issue-9 defect 1 (one token per
// operation, NOSCRIPT re-queued behind later commands): shows the fuzzer
// finds it. `fuzz/regressions/ops_reorder` keeps what it found.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redlock_core::fuzzing::ops_weakened(
    data,
    redlock_core::Weakness {
        reuse_token: true,
        requeue_noscript: true,
        ..Default::default()
    }
));
