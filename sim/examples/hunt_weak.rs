//! Finds the first seeds at which the simulator catches a planted bug
//! (feature `__weaken`): `cargo run --release -p redlock-sim --example
//! hunt_weak -- WEAKNESS [FIRST] [SEEDS] [nodes=N] [clients=C] [fence]
//! [sets] [unsafe=FAULT]`, WEAKNESS one of `reorder`, `dropped-undo`,
//! `quorum-half`, `no-drift`, `fence-late-ok`, `reuse-token`,
//! `fence-plain-set`, `fence-incr`, `fence-no-check`, or `none` (the
//! unweakened core). `fence` fences every lock, `sets` gives every seed
//! resource sets, `unsafe=FAULT` adds an assumption-breaking fault.
#![allow(clippy::print_stdout)] // a command-line tool: its output is the point
use redlock_core::Weakness;
use redlock_sim::{simulate, Choice, Fault, Scenario, SimCore};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("reorder");
    let first: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let seeds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let opt = |name: &str| {
        args.iter().find_map(|a| {
            a.strip_prefix(name)?
                .strip_prefix('=')?
                .parse::<usize>()
                .ok()
        })
    };
    let unsafe_faults: Vec<Fault> = args
        .iter()
        .filter_map(|a| a.strip_prefix("unsafe=")?.parse().ok())
        .collect();
    let hook: fn(&mut SimCore) = match which {
        "none" => |_| {},
        "reorder" => |c| {
            c.weaken_with(Weakness {
                reuse_token: true,
                requeue_noscript: true,
                ..Default::default()
            })
        },
        "dropped-undo" => |c| {
            c.weaken_with(Weakness {
                drop_owed_undo: true,
                ..Default::default()
            })
        },
        "quorum-half" => |c| c.weaken(true, false),
        "no-drift" => |c| c.weaken(false, true),
        "fence-late-ok" => |c| {
            c.weaken_with(Weakness {
                fence_late_ok: true,
                ..Default::default()
            })
        },
        "reuse-token" => |c| {
            c.weaken_with(Weakness {
                reuse_token: true,
                ..Default::default()
            })
        },
        "fence-plain-set" => |c| {
            c.weaken_with(Weakness {
                fence_plain_set: true,
                ..Default::default()
            })
        },
        "fence-incr" => |c| {
            c.weaken_with(Weakness {
                fence_incr: true,
                ..Default::default()
            })
        },
        "fence-no-check" => |c| {
            c.weaken_with(Weakness {
                fence_no_check: true,
                ..Default::default()
            })
        },
        other => panic!("unknown weakness {other}"),
    };
    let flag = |f: &str| args.iter().any(|a| a == f);
    let sc = Scenario {
        nodes: opt("nodes").unwrap_or(5),
        clients: opt("clients").unwrap_or(3),
        core_hook: Some(hook),
        unsafe_faults,
        fencing: if flag("fence") {
            Choice::Always
        } else {
            Choice::Swarm
        },
        resource_sets: if flag("sets") {
            Choice::Always
        } else {
            Choice::Swarm
        },
        ..Scenario::default()
    };
    let (mut found, mut fence_found) = (0, 0);
    let start = std::time::Instant::now();
    for seed in first..first + seeds {
        let o = simulate(seed, &sc);
        if o.failure.is_some() {
            found += 1;
            if found <= 10 || matches!(o.failure, Some((redlock_sim::FailureClass::Safety, _))) {
                println!(
                    "seed {seed}: {:?} {:?}",
                    o.diagnosis,
                    o.failure.as_ref().map(|f| f.0)
                );
            }
        }
        if let Some((kind, msg)) = &o.fence_failure {
            fence_found += 1;
            if fence_found <= 10 {
                println!("seed {seed}: fence {kind}: {msg}");
            }
        }
    }
    println!(
        "{which}: {found} of {seeds} seeds failed the lock checks, {fence_found} the fence checks ({:.1} s)",
        start.elapsed().as_secs_f64()
    );
}
