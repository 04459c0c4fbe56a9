//! `cargo run -p redlock-sim --release --example sim -- [SEED] [SEEDS] [UNSAFE...]`:
//! the library's `run` with its output on stdout (the `redlock sim` command
//! does the same with full flag parsing).
#![allow(clippy::print_stdout)]

use redlock_sim::{run, Fault, SimOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let timeline = args
        .iter()
        .find(|a| a.ends_with(".svg"))
        .map(std::path::PathBuf::from);
    let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let opts = SimOptions {
        seed: nums.first().copied().unwrap_or(0),
        seeds: nums.get(1).copied().unwrap_or(100),
        unsafe_faults: args
            .iter()
            .filter_map(|a| a.parse::<Fault>().ok())
            .collect(),
        timeline,
        ..SimOptions::default()
    };
    match run(&opts, &mut std::io::stdout()) {
        Ok(report) => std::process::exit(i32::from(!report.violations.is_empty())),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
