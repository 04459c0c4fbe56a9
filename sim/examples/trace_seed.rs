//! Prints the full trace of one seed of the default scenario:
//! `cargo run --release -p redlock-sim --example trace_seed -- SEED [EVENTS]`.
#![allow(clippy::print_stdout)] // a command-line tool: its output is the point
use redlock_sim::{simulate, Scenario};

fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let sc = Scenario {
        trace_len: events,
        record: true,
        ..Scenario::default()
    };
    let o = simulate(seed, &sc);
    for line in &o.trace {
        println!("{line}");
    }
    println!("failure: {:?}", o.failure);
}
