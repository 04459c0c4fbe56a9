//! `cargo run -p redlock-sim --release --example hunt -- FIRST SEEDS [old]`:
//! runs the default safe menu over a seed range and tallies the failures by
//! class and diagnosis (how often the menu finds what). `trace=N` prints
//! the last N events of seed FIRST instead; `nodes=`, `clients=`,
//! `fault_ttls=` change the scenario.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;

use redlock_sim::{simulate, Diagnosis, Scenario, Stats};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let first: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
    let seeds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let old = args.iter().any(|a| a == "old");
    let opt = |name: &str| {
        args.iter().find_map(|a| {
            a.strip_prefix(name)?
                .strip_prefix('=')?
                .parse::<usize>()
                .ok()
        })
    };
    let scenario = Scenario {
        timing_faults: !old,
        nodes: opt("nodes").unwrap_or(5),
        clients: opt("clients").unwrap_or(3),
        fault_ttls: opt("fault_ttls").map_or(10, |f| f as u64),
        ..Scenario::default()
    };
    if let Some(n) = args.iter().find_map(|a| a.strip_prefix("trace=")) {
        // Print the readable trace of the first seed (the last N events).
        let o = simulate(
            first,
            &Scenario {
                record: true,
                trace_len: n.parse().unwrap_or(400),
                ..scenario.clone()
            },
        );
        println!("{:?}", o.failure);
        for line in &o.trace {
            println!("{line}");
        }
        return;
    }
    let start = std::time::Instant::now();
    let mut tally: BTreeMap<String, (u64, Vec<u64>)> = BTreeMap::new();
    let mut total = Stats::default();
    for seed in first..first + seeds {
        let o = simulate(seed, &scenario);
        total.add(&o.stats);
        if let Some((class, msg)) = &o.failure {
            let key = match o.diagnosis {
                Some(Diagnosis::UndoReordered { .. }) => format!("{class:?} UndoReordered"),
                Some(Diagnosis::OwnStaleKey {
                    reconnected,
                    undo_noscript,
                    ..
                }) => format!(
                    "{class:?} OwnStaleKey reconnected={reconnected} undo_noscript={undo_noscript}"
                ),
                None => format!("{class:?} (no diagnosis)"),
            };
            let e = tally.entry(key).or_insert((0, Vec::new()));
            e.0 += 1;
            if e.1.len() < 12 {
                e.1.push(seed);
            }
            if e.0 == 1 {
                println!("seed {seed}: {class:?}: {msg}");
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{seeds} seeds from {first} in {secs:.1} s ({:.1} ms/seed); cycles {}, steps {}, noscript {}",
        1e3 * secs / seeds as f64,
        total.cycles,
        total.steps,
        total.noscript
    );
    println!("faults: {:?}", total.faults);
    for (k, (n, s)) in &tally {
        println!("{n:6} x {k} (seeds {s:?})");
    }
}
