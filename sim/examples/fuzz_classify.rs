//! `cargo run -p redlock-sim --example fuzz_classify -- TARGET FILE...`:
//! replays fuzz inputs through a target's body and prints, for each file,
//! the panic message it produces (or `ok`), so that a fuzzing run's crash
//! artifacts can be sorted by the invariant they break.
#![allow(clippy::print_stdout)]

use std::panic::{catch_unwind, AssertUnwindSafe};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let f: fn(&[u8]) = match args.first().map(String::as_str) {
        Some("ops") => redlock_core::fuzzing::ops,
        Some("replies") => redlock_core::fuzzing::replies,
        Some("sim") => redlock_sim::fuzz::simulation,
        _ => {
            eprintln!("usage: fuzz_classify ops|replies|sim FILE...");
            std::process::exit(2);
        }
    };
    std::panic::set_hook(Box::new(|_| {}));
    for path in &args[1..] {
        let Ok(data) = std::fs::read(path) else {
            println!("{path}: unreadable");
            continue;
        };
        let verdict = match catch_unwind(AssertUnwindSafe(|| f(&data))) {
            Ok(()) => "ok".to_string(),
            Err(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        };
        println!("{path} ({} bytes): {verdict}", data.len());
    }
}
