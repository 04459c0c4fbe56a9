//! `redlock-bench`: end-to-end comparison of this project's transports
//! (`redlock-std`, `redlock-tokio`) with the peers (`rslock`, redlock-rs =
//! the crates.io `redlock` 2.x crate, node-redlock = npm `redlock` v5) and
//! with minimal raw clients (the baseline, the quorum-for-both client, the
//! one-thread lockstep-pipelined client), on redis-server nodes it starts
//! itself on loopback (N = 1, 3, 5).
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
mod lockstep;
mod node;
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
    /// Smoke run: 0.5 s per measurement, 1 round, and the workloads seq,
    /// c16, c256, k8 (unless given).
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
    /// Implementations, comma separated: baseline, quorum-min, lockstep-min,
    /// rslock, redlock-rs, node-redlock, std, tokio.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,quorum-min,lockstep-min,rslock,redlock-rs,node-redlock,std,tokio"
    )]
    impls: Vec<String>,
    /// Workloads, comma separated: seq, c16, c256, k2, k8 (k = contention).
    #[arg(long, value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Markdown output file.
    #[arg(long, default_value = "results.md")]
    out: PathBuf,
    /// Also write the README-ready summary table and the targets here.
    #[arg(long)]
    summary_out: Option<PathBuf>,
    /// Worker threads of the tokio runtime the async clients share. Default:
    /// one per online CPU of the machine, what tokio's default gives an
    /// unpinned program here (pinned to one CPU, tokio would pick 1, and a
    /// one-worker runtime stalls every async client under concurrency: see
    /// README.md).
    #[arg(long)]
    tokio_workers: Option<usize>,
    /// node-redlock's driver script (its node_modules installed beside it).
    #[arg(long, default_value = "node/driver.js")]
    node_driver: PathBuf,
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

/// Online CPUs of the machine (not only those this process may use), from
/// `/sys/devices/system/cpu/online` (e.g. `0-1`, `0,2-3`); 1 if unreadable.
pub(crate) fn machine_cpus() -> usize {
    let Ok(list) = std::fs::read_to_string("/sys/devices/system/cpu/online") else {
        return 1;
    };
    let count: usize = list
        .trim()
        .split(',')
        .filter_map(|range| match range.split_once('-') {
            Some((a, b)) => Some(b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?),
            None => range.parse::<usize>().ok().map(|_| 1),
        })
        .sum();
    count.max(1)
}

/// The CPUs a process may run on, from `/proc/<pid>/status`.
fn cpus_allowed(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Where the clients and the servers ran: this process's CPUs (its threads
/// and the node driver inherit them) and each redis-server's, found by the
/// pid the server reports in `INFO server`.
fn cpu_placement(clusters: &[(usize, redlock_tests::Cluster)]) -> String {
    let clients = cpus_allowed("self");
    let mut servers: Vec<String> = clusters
        .iter()
        .flat_map(|(_, c)| c.nodes.iter())
        .map(|server| {
            let info = server.command(&["INFO", "server"]);
            info.as_str()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("process_id:"))
                        .map(|p| cpus_allowed(p.trim()))
                })
                .unwrap_or_else(|| "unknown".into())
        })
        .collect();
    servers.sort();
    servers.dedup();
    let servers = servers.join(" / ");
    let pinned = if servers == clients {
        " (NOT pinned apart: run through bench/run.sh to pin them with taskset)"
    } else {
        ""
    };
    format!(
        "clients (the bench process, its threads and the node driver) on CPU {clients}, \
         redis-server nodes on CPU {servers}{pinned}"
    )
}

fn usage_error(message: &str) -> ! {
    eprintln!("redlock-bench: {message}");
    std::process::exit(2)
}

fn main() {
    let args = Args::parse();
    let seconds = args.duration.unwrap_or(if args.quick { 0.5 } else { 5.0 });
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 86_400.0) {
        usage_error("--duration must be a number of seconds in (0, 86400)");
    }
    let duration = Duration::from_secs_f64(seconds);
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 });
    let impls: Vec<Impl> = args
        .impls
        .iter()
        .map(|s| {
            Impl::from_name(s).unwrap_or_else(|| {
                let known: Vec<&str> = Impl::ALL.iter().map(|i| i.name()).collect();
                usage_error(&format!(
                    "unknown implementation {s:?} (known: {})",
                    known.join(", ")
                ))
            })
        })
        .collect();
    let default_workloads = if args.quick {
        "seq,c16,c256,k8"
    } else {
        "seq,c16,c256,k2,k8"
    };
    let workload_names = args
        .workloads
        .clone()
        .unwrap_or_else(|| default_workloads.split(',').map(str::to_owned).collect());
    let workloads: Vec<Workload> = workload_names
        .iter()
        .map(|s| {
            parse_workload(s).unwrap_or_else(|| {
                usage_error(&format!(
                    "unknown workload {s:?} (seq, cK for K concurrent, kC for C contending)"
                ))
            })
        })
        .collect();
    if rounds == 0 || duration.is_zero() || args.nodes.iter().any(|&n| n == 0 || n > 16) {
        usage_error("--rounds and --duration must be positive, --nodes within 1..=16");
    }

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    let workers = args.tokio_workers.unwrap_or_else(machine_cpus);
    if workers == 0 || workers > 256 {
        usage_error("--tokio-workers must be within 1..=256");
    }
    builder.worker_threads(workers);
    let rt = builder
        .build()
        .unwrap_or_else(|e| usage_error(&format!("cannot build the tokio runtime: {e}")));
    eprintln!("starting redis-server nodes for N = {:?}", args.nodes);
    let clusters: Vec<(usize, redlock_tests::Cluster)> = args
        .nodes
        .iter()
        .map(|&n| (n, redlock_tests::Cluster::start(n)))
        .collect();

    let cpus = format!(
        "{}; the async clients share one tokio multi-thread runtime with {workers} worker \
         thread(s)",
        cpu_placement(&clusters)
    );
    eprintln!("{cpus}");
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
                    if !which.runs(w) {
                        continue;
                    }
                    let plan = Plan {
                        duration,
                        prefix: format!("bench:{}:r{round}:n{n}:{w:?}", which.name()),
                        node_driver: args.node_driver.clone(),
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

    let report = report::render(
        &results,
        &impls,
        &args.nodes,
        &workloads,
        &report::RunInfo {
            duration,
            rounds,
            wall,
            load,
            cpus,
        },
    );
    print!("{}", report.full);
    let mut outputs = vec![(&args.out, &report.full)];
    if let Some(path) = &args.summary_out {
        outputs.push((path, &report.summary));
    }
    for (path, text) in outputs {
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        eprintln!("wrote {}", path.display());
    }
}
