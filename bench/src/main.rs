//! `redlock-bench`: end-to-end comparison of this project's transports
//! (`redlock-std`, `redlock-tokio`) with the peer crates `rslock` and
//! `redlock` 2.x and with a minimal raw client (the baseline), on
//! redis-server nodes it starts itself on loopback (N = 1, 3, 5).
//!
//! Every measurement is repeated for several rounds; in each round the
//! implementations take turns (in a rotated order) on the same workload, so
//! drifting machine load hits them alike. The report gives medians over
//! rounds, each of ours as a ratio to the baseline and to each peer.
//!
//! `bench/run.sh` is the one command: it builds, runs this, and adds the
//! core's own cost (callgrind instructions and allocations per cycle).

mod baseline;
mod clients;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use clients::Impl;
use workload::{Measurement, Plan, Workload};

/// Benchmark redlock against its peers on real redis-server nodes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Smoke run: 1 s per measurement and 1 round (unless given).
    #[arg(long)]
    quick: bool,
    /// Seconds per measurement.
    #[arg(long)]
    duration: Option<f64>,
    /// Rounds per measurement (medians are reported).
    #[arg(long)]
    rounds: Option<usize>,
    /// Node counts, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    nodes: Vec<usize>,
    /// Implementations, comma separated (baseline, rslock, redlock, std, tokio).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,rslock,redlock,std,tokio"
    )]
    impls: Vec<String>,
    /// Workloads, comma separated: seq, c16, c256, k2, k8 (k = contention).
    #[arg(long, value_delimiter = ',', default_value = "seq,c16,c256,k2,k8")]
    workloads: Vec<String>,
    /// Markdown output file.
    #[arg(long, default_value = "results.md")]
    out: PathBuf,
}

fn parse_workload(s: &str) -> Option<Workload> {
    if s == "seq" {
        return Some(Workload::Sequential);
    }
    if let Some(k) = s.strip_prefix('c') {
        return k.parse().ok().map(Workload::Concurrent);
    }
    if let Some(c) = s.strip_prefix('k') {
        return c.parse().ok().map(Workload::Contention);
    }
    None
}

/// Every measurement of the run: (workload, nodes, impl) -> one per round.
pub(crate) type Results = BTreeMap<(Workload, usize, Impl), Vec<Measurement>>;

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` gives them.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let args = Args::parse();
    let duration =
        Duration::from_secs_f64(args.duration.unwrap_or(if args.quick { 1.0 } else { 5.0 }));
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let impls: Vec<Impl> = args
        .impls
        .iter()
        .map(|s| Impl::from_name(s).unwrap_or_else(|| panic!("unknown implementation {s:?}")))
        .collect();
    let workloads: Vec<Workload> = args
        .workloads
        .iter()
        .map(|s| parse_workload(s).unwrap_or_else(|| panic!("unknown workload {s:?}")))
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    eprintln!("starting redis-server nodes for N = {:?}", args.nodes);
    let clusters: Vec<(usize, redlock_tests::Cluster)> = args
        .nodes
        .iter()
        .map(|&n| (n, redlock_tests::Cluster::start(n)))
        .collect();

    let mut results = Results::new();
    let load_before = loadavg();
    let started = std::time::Instant::now();
    for round in 0..rounds {
        for (n, cluster) in &clusters {
            let urls = cluster.urls();
            for &w in &workloads {
                // Rotate the order each round (and per workload), so no
                // implementation always runs first or last.
                let mut order = impls.clone();
                let shift = (round + workloads.iter().position(|x| *x == w).unwrap_or(0))
                    % order.len().max(1);
                order.rotate_left(shift);
                for which in order {
                    let plan = Plan {
                        duration,
                        prefix: format!("bench:{}:r{round}:n{n}:{w:?}", which.name()),
                    };
                    let m = match workload::run(&rt, which, w, &urls, &plan) {
                        Ok(m) => m,
                        Err(e) => {
                            eprintln!("  {} {} N={n}: ERROR {e}", which.name(), w.label());
                            Measurement {
                                rate: f64::NAN,
                                p50_us: f64::NAN,
                                p99_us: f64::NAN,
                                failures: 1,
                                first_error: Some(e),
                                ..Measurement::default()
                            }
                        }
                    };
                    eprintln!(
                        "round {}/{rounds} N={n} {:<14} {:<9} {:>10.0}/s p50 {:>8.1} p90 {:>8.1} p99 {:>8.1} p99.9 {:>8.1} us cpu {:>6.1} us csw {:>4.1} fail {} overlap {}{}",
                        round + 1,
                        w.label(),
                        which.name(),
                        m.rate,
                        m.p50_us,
                        m.p90_us,
                        m.p99_us,
                        m.p999_us,
                        m.cpu_us,
                        m.switches,
                        m.failures,
                        m.overlaps,
                        m.first_error
                            .as_deref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    );
                    results.entry((w, *n, which)).or_default().push(m);
                }
            }
        }
    }
    let wall = started.elapsed();
    let load = format!("{load_before} at the start, {} at the end", loadavg());
    drop(clusters);
    // Let the runtime's connection tasks see their servers go away.
    rt.shutdown_timeout(Duration::from_secs(1));

    let md = report::render(
        &results,
        &impls,
        &args.nodes,
        &workloads,
        &report::RunInfo {
            duration,
            rounds,
            wall,
            load,
        },
    );
    print!("{md}");
    if let Err(e) = std::fs::write(&args.out, &md) {
        eprintln!("cannot write {}: {e}", args.out.display());
        std::process::exit(1);
    }
    eprintln!("wrote {}", args.out.display());
}
