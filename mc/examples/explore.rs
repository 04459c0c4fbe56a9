//! Runs one model check from the command line and prints the figures and
//! any counterexample (minimised, with its schedule for the simulator).
//!
//! ```text
//! cargo run --release -p redlock-mc --example explore -- \
//!     [clients=2] [nodes=3] [foreign=0:150,1:150] [delays=1] [slow=0] [resets=0] [crashes=0] [flushes=0] [zero=0] \
//!     [fenced=1] [threads=2] [timeout=60] [registers=a,b,c] [retry=1,20] [ttl=100] [bfs=1] [cppm=a,b] [nppm=a,b,c] [empty=0] [only=fence] [extend=0]
//! ```
#![allow(clippy::print_stdout)]

use std::time::Duration;

use redlock_mc::{check, describe, schedule, Budget, CheckOptions, RedlockModel};
use redlock_sim::replay::Setup;

fn main() {
    let mut setup = Setup::default();
    let mut budget = Budget::default();
    let mut opts = CheckOptions::default();
    for arg in std::env::args().skip(1) {
        let Some((k, v)) = arg.split_once('=') else {
            eprintln!("expected key=value, got {arg:?}");
            std::process::exit(2);
        };
        let n = |v: &str| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("bad number {v:?}"))
        };
        match k {
            "clients" => {
                setup.clients = n(v) as usize;
                setup.client_ppm = vec![-2_000; setup.clients];
            }
            "nodes" => {
                setup.nodes = n(v) as usize;
                setup.node_ppm = vec![2_000; setup.nodes];
                setup.registers = vec![0; setup.nodes];
            }
            "foreign" => {
                setup.foreign = v
                    .split(',')
                    .map(|f| f.parse().unwrap_or_else(|e| panic!("{e}")))
                    .collect()
            }
            "delays" => budget.delays = n(v) as u8,
            "holds" => budget.holds = n(v) as u8,
            "slow" => budget.slow_drains = n(v) as u8,
            "resets" => budget.resets = n(v) as u8,
            "crashes" => budget.crashes = n(v) as u8,
            "flushes" => budget.flushes = n(v) as u8,
            "zero" => budget.zero_pauses = n(v) as u8,
            "fenced" if v == "1" => {
                setup.fenced = Some((0..setup.clients as u64).map(|c| 1_000 - 10 * c).collect())
            }
            "fenced" => {}
            "threads" => opts.threads = n(v) as usize,
            "timeout" => opts.timeout = Some(Duration::from_secs(n(v))),
            "registers" => setup.registers = v.split(',').map(n).collect(),
            "retry" => {
                let p: Vec<u64> = v.split(',').map(n).collect();
                setup.retry_count = p[0] as u32;
                setup.retry_delay_ms = p[1];
            }
            "ttl" => setup.ttl_ms = n(v),
            "cppm" => setup.client_ppm = v.split(',').map(|x| x.parse().expect("ppm")).collect(),
            "nppm" => setup.node_ppm = v.split(',').map(|x| x.parse().expect("ppm")).collect(),
            "bfs" if v == "1" => opts.search = redlock_mc::Search::BreadthFirst,
            "bfs" => {}
            "max" => opts.max_states = Some(n(v) as usize),
            "weak" => {
                let text = format!("weakness {}\nsteps:\n", v.replace(',', " "));
                let parsed: redlock_sim::replay::Schedule = text.parse().expect("weakness names");
                setup.weakness = parsed.setup.weakness;
            }
            "wall" => setup.fenced = Some(v.split(',').map(n).collect()),
            "fnode" | "fclient" | "ordered" | "horizon" | "empty" | "only" | "extend" => {}
            _ => {
                eprintln!("unknown key {k:?}");
                std::process::exit(2);
            }
        }
    }
    let mut model = RedlockModel::new(setup, budget, Some(|c, w| c.weaken_with(w)));
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "fnode=0" => model.fault_nodes = Some(vec![0]),
            "fclient=0" => model.fault_clients = Some(vec![0]),
            "fclient=1" => model.fault_clients = Some(vec![1]),
            "ordered=1" => model.ordered_start = true,
            "empty=0" => model.empty_crashes = false,
            "extend=0" => model.extends = false,
            "only=fence" => {
                model.only = Some(vec![redlock_mc::FENCE_UNIQUE, redlock_mc::FENCE_ORDER])
            }
            a if a.starts_with("horizon=") => model.horizon = a[8..].parse().expect("horizon µs"),
            _ => {}
        }
    }
    if let Ok(file) = std::env::var("MC_PATH") {
        let text = std::fs::read_to_string(file).expect("path file");
        let actions: Vec<redlock_mc::Action> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.parse().expect("action"))
            .collect();
        print!("{}", describe(&model, &actions));
        return;
    }
    let report = check(model.clone(), &opts);
    println!("{report}");
    for f in &report.failures {
        println!(
            "\n{}: found {} steps, shortest {}:",
            f.property,
            f.found.len(),
            f.actions.len()
        );
        print!("{}", describe(&model, &f.actions));
        println!("schedule:\n{}", schedule(&model, &f.actions));
    }
}
