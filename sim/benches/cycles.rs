//! Simulated lock cycles per minute on one core.
#![allow(clippy::print_stdout)]
//!
//! `cargo bench -p redlock-sim --bench cycles [-- SEEDS [UNSAFE...] [old-menu]
//! [fence=never|always] [sets=never|always]]` runs the safe menu (5 nodes,
//! 3 clients; `old-menu`: without the network adversarial in time; fencing
//! and resource sets per seed unless given) over SEEDS seeds (default 2000)
//! and prints the throughput: completed acquire-hold-release cycles,
//! simulated events and seeds per wall-clock second.

use std::time::Instant;

use redlock_sim::{simulate, Choice, Fault, Scenario, Stats};

/// CPU time of this process (user + system), from /proc (Linux), so the
/// figure means "per core" even on a loaded machine.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let seeds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let unsafe_faults: Vec<Fault> = args.iter().skip(1).filter_map(|s| s.parse().ok()).collect();
    let choice = |name: &str| match args.iter().find_map(|a| a.strip_prefix(name)) {
        Some("=never") => Choice::Never,
        Some("=always") => Choice::Always,
        _ => Choice::Swarm,
    };
    let scenario = Scenario {
        unsafe_faults,
        timing_faults: !args.iter().any(|a| a == "old-menu"),
        fencing: choice("fence"),
        resource_sets: choice("sets"),
        ..Scenario::default()
    };
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut total = Stats::default();
    let mut failures = 0;
    for seed in 0..seeds {
        let o = simulate(seed, &scenario);
        total.add(&o.stats);
        if o.failure.is_some() || o.fence_failure.is_some() {
            failures += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu0)
        .map(|(b, a)| b - a)
        .filter(|c| *c > 0.05);
    // Per core: CPU time when the OS reports it, else wall time.
    let secs = cpu.unwrap_or(wall);
    println!(
        "wall {wall:.2} s, cpu {}",
        cpu.map_or("n/a".to_string(), |c| format!("{c:.2} s"))
    );
    println!(
        "{seeds} seeds in {secs:.2} s ({:.0} seeds/s, {:.2} ms/seed), failures: {failures}",
        seeds as f64 / secs,
        1e3 * secs / seeds as f64
    );
    println!(
        "lock cycles: {} ({:.0}/min on one core), acquisitions: {}, busy: {}, events: {} ({:.0}/s), simulated time: {:.0} s",
        total.cycles,
        total.cycles as f64 / secs * 60.0,
        total.acquisitions,
        total.busy,
        total.steps,
        total.steps as f64 / secs,
        total.sim_micros as f64 / 1e6
    );
    println!(
        "fenced seeds: {}, fenced grants: {} ({} round 2), store writes: {} accepted, {} refused; set seeds: {}, set acquisitions: {}",
        total.fenced_runs,
        total.fenced_grants,
        total.round2,
        total.store_accepted,
        total.store_rejected,
        total.set_runs,
        total.set_acquisitions
    );
    println!("faults: {:?}", total.faults);
}
