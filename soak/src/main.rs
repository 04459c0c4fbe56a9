//! `redlock-soak`: a chaos soak of both transports on real `redis-server`
//! nodes (issue 17).
//!
//! It starts N nodes through the test harness (AOF on, `appendfsync
//! always`, so a node killed with SIGKILL comes back with every write it
//! acknowledged), then for the given time runs at once 32 tokio tasks
//! sharing one `redlock-tokio` client and 8 threads sharing one
//! `redlock-std` client, contending on 4 resources, while a fault thread
//! kills, restarts, pauses and resumes nodes from a seeded plan (never more
//! than N - quorum down). Each protected section is checked by an overlap
//! checker that does not trust Redis. At the end it prints a summary and
//! the targets, and exits 1 when one is missed (2 when it could not run).
//!
//! Run it with `scripts/soak.sh [SECONDS]`; `--help` lists the knobs.
//! Every call into the libraries under test is in `api.rs`.

#![allow(clippy::print_stdout)] // a command-line tool: its output is the point

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use redlock_tests::{Cluster, ServerOptions};

mod analyze;
mod api;
mod faults;
mod probe;
mod record;
mod timeline;
mod watch;
mod worker;

use timeline::{Clock, Timeline};

/// A chaos soak of redlock-std and redlock-tokio on real redis-server nodes.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// How long the load runs, in seconds (at least 10).
    #[arg(value_name = "SECONDS", default_value_t = 180)]
    seconds: u64,
    /// Seed of the fault plan and of the workers' choices (printed; the same
    /// seed replays the same faults). Default: random.
    #[arg(long)]
    seed: Option<u64>,
    /// Lock TTL, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    ttl_ms: u64,
    /// Number of redis-server nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// tokio tasks sharing one redlock-tokio client.
    #[arg(long, default_value_t = 32)]
    tokio_tasks: usize,
    /// Threads sharing one redlock-std client.
    #[arg(long, default_value_t = 8)]
    std_threads: usize,
    /// Resources the workers contend on.
    #[arg(long, default_value_t = 4)]
    resources: usize,
    /// Run the load without faults (a baseline for the figures).
    #[arg(long)]
    no_faults: bool,
    /// Diagnostic, not a library default: give the std client the
    /// reconnect backoff that `Config::new(TTL)` derives from the TTL (as
    /// the tokio client has), instead of what its builder leaves.
    #[arg(long)]
    std_backoff_from_ttl: bool,
    /// Directory for the run's log (one line per section and operation).
    /// Default: a temporary directory, kept (and named) only if a target
    /// is missed.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl Args {
    fn check(&self) -> Result<(), String> {
        if self.seconds < 10 {
            return Err("SECONDS must be at least 10".into());
        }
        if !(3..=redlock_core::MAX_NODES).contains(&self.nodes) {
            return Err(format!("--nodes must be 3..={}", redlock_core::MAX_NODES));
        }
        if !(100..=60_000).contains(&self.ttl_ms) {
            return Err("--ttl-ms must be 100..=60000".into());
        }
        if !(1..=64).contains(&self.resources) {
            return Err("--resources must be 1..=64".into());
        }
        if self.tokio_tasks + self.std_threads == 0
            || self.tokio_tasks > 4096
            || self.std_threads > 256
        {
            return Err(
                "--tokio-tasks (<= 4096) and --std-threads (<= 256): at least one worker".into(),
            );
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.check() {
        eprintln!("redlock-soak: {e}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("redlock-soak: {e}");
            ExitCode::from(2)
        }
    }
}

/// The machine's load, as `/proc/loadavg` says.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

const PASSWORD: &str = "soak-password";

fn run(args: &Args) -> Result<bool, String> {
    // 53 bits: short enough to type back.
    let seed = args.seed.unwrap_or_else(|| rand::random::<u64>() >> 11);
    let ttl = Duration::from_millis(args.ttl_ms);
    let run_for = Duration::from_secs(args.seconds);
    let quorum = args.nodes / 2 + 1;
    let max_down = args.nodes - quorum;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "== redlock soak: seed {seed} (replay: scripts/soak.sh {} --seed {seed})",
        args.seconds
    );
    println!(
        "   {} nodes (AOF, appendfsync always), at most {max_down} down at once; TTL {} ms; {} tokio tasks + {} std threads on {} resources; {} s",
        args.nodes, args.ttl_ms, args.tokio_tasks, args.std_threads, args.resources, args.seconds
    );
    println!(
        "   machine: {cpus} CPUs, load average {} at the start",
        loadavg()
    );

    let plan = if args.no_faults {
        Vec::new()
    } else {
        faults::plan(seed, args.nodes, max_down, run_for)
    };
    let count = |f: fn(&faults::FaultKind) -> bool| plan.iter().filter(|x| f(&x.kind)).count();
    println!(
        "   plan: {} faults ({} kill -9 + restart, {} SIGSTOP/SIGCONT, {} two nodes killed at once)",
        plan.len(),
        count(|k| matches!(k, faults::FaultKind::Kill(_))),
        count(|k| matches!(k, faults::FaultKind::Pause(_))),
        count(|k| matches!(k, faults::FaultKind::KillTwo(..)))
    );

    let users: Vec<(&'static str, String)> =
        vec![("tokio", "soak-tokio".into()), ("std", "soak-std".into())];
    let opts = ServerOptions {
        acl_users: users
            .iter()
            .map(|(_, u)| (u.clone(), PASSWORD.to_owned()))
            .collect(),
        extra_args: ["--appendonly", "yes", "--appendfsync", "always"]
            .map(String::from)
            .to_vec(),
        ..ServerOptions::default()
    };
    let nodes = args.nodes;
    let cluster = std::panic::catch_unwind(move || Cluster::start_with(nodes, opts))
        .map_err(|_| "could not start the redis-server nodes (see above)".to_string())?;
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port()).collect();
    let urls_for = |user: &str| -> Vec<String> {
        cluster
            .nodes
            .iter()
            .map(|n| n.url_with(Some(user), Some(PASSWORD), 0))
            .collect()
    };
    let tokio_urls = urls_for("soak-tokio");
    let std_urls = urls_for("soak-std");
    println!("   nodes on ports {ports:?}");

    let (out_dir, temp) = match &args.out {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("redlock-soak-")
                .tempdir()
                .map_err(|e| format!("temporary directory: {e}"))?;
            (t.path().to_owned(), Some(t))
        }
    };
    let log_path = out_dir.join(format!("soak-{seed}.log"));

    let clock = Clock::new();
    let timeline = Arc::new(Timeline::new(clock));
    let (rec, writer) = record::Recorder::create(clock, &log_path, args.resources)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let resources: Vec<String> = (0..args.resources).map(|i| format!("soak:r{i}")).collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let tokio_client = {
        let _enter = rt.enter();
        api::build_tokio(&tokio_urls, ttl)?
    };
    let std_client = api::build_std(&std_urls, ttl, args.std_backoff_from_ttl)?;
    for (t, timing) in api::timing(&std_client, &tokio_client) {
        println!("   {t} client (library defaults for this TTL): {timing}");
    }

    let ctx = Arc::new(worker::Ctx {
        rec,
        timeline: Arc::clone(&timeline),
        resources: resources.clone(),
        stop: AtomicBool::new(false),
        seed,
    });

    // The process sampler.
    let sampler_stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&sampler_stop);
        std::thread::spawn(move || watch::sampler(clock, Duration::from_secs(1), stop))
    };

    // The load.
    let load_start = clock.now();
    let tasks: Vec<_> = (0..args.tokio_tasks)
        .map(|i| {
            rt.spawn(worker::tokio_worker(
                Arc::clone(&ctx),
                tokio_client.clone(),
                i,
            ))
        })
        .collect();
    let threads: Vec<_> = (0..args.std_threads)
        .map(|i| {
            let ctx = Arc::clone(&ctx);
            let client = std_client.clone();
            std::thread::Builder::new()
                .name(format!("soak-std-{i}"))
                .spawn(move || worker::std_worker(&ctx, &client, i))
                .map_err(|e| format!("worker thread: {e}"))
        })
        .collect::<Result<_, _>>()?;

    // The faults.
    let fault_stop = Arc::new(AtomicBool::new(false));
    let env = faults::Env {
        clock,
        timeline: Arc::clone(&timeline),
        start: load_start,
        max_down,
        users: users.clone(),
        resources: resources.clone(),
        ttl,
        log: ctx.rec.sender(),
    };
    let injector = {
        let stop = Arc::clone(&fault_stop);
        std::thread::Builder::new()
            .name("soak-faults".into())
            .spawn(move || faults::run(cluster, plan, env, stop))
            .map_err(|e| format!("fault thread: {e}"))?
    };

    // Progress every 10 s; SIGINT, SIGTERM or SIGHUP end the load early
    // (the nodes are still stopped and the summary printed).
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let end_at = clock.instant(load_start) + run_for;
    let mut next_status = clock.instant(load_start) + Duration::from_secs(10);
    while Instant::now() < end_at && !interrupted.load(Ordering::SeqCst) {
        std::thread::sleep(
            Duration::from_millis(100).min(end_at.saturating_duration_since(Instant::now())),
        );
        if Instant::now() >= next_status {
            next_status += Duration::from_secs(10);
            let r = &ctx.rec;
            eprintln!(
                "   t={:>4.0}s sections {} busy {} unavailable {} lost {} down now {} load {}",
                (clock.now() - load_start) as f64 / 1e9,
                r.sections.load(Ordering::Relaxed),
                r.busy.load(Ordering::Relaxed),
                r.unavailable.load(Ordering::Relaxed),
                r.lost.load(Ordering::Relaxed),
                timeline.mask().count_ones(),
                loadavg()
            );
        }
    }
    // Every node back first, then the load stops.
    fault_stop.store(true, Ordering::SeqCst);
    let (cluster, report) = injector
        .join()
        .map_err(|_| "the fault thread panicked".to_string())?;
    for (t, mask) in timeline.changes_list() {
        ctx.rec.line(format!("T\t{t}\t{mask:0w$b}", w = args.nodes));
    }
    ctx.stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().map_err(|_| "a std worker panicked".to_string())?;
    }
    rt.block_on(async {
        for t in tasks {
            t.await.map_err(|e| format!("a tokio worker failed: {e}"))?;
        }
        Ok::<(), String>(())
    })?;
    let load_end = clock.now();
    let flushed = api::flush_std(&std_client, Duration::from_secs(2));
    drop(std_client);
    drop(tokio_client);
    let load_at_end = loadavg();

    // Keys left one TTL after the end.
    let check_at = clock.instant(load_end) + ttl;
    std::thread::sleep(check_at.saturating_duration_since(Instant::now()));
    let keys_left = watch::keys_left(&ports);
    sampler_stop.store(true, Ordering::SeqCst);
    let samples = sampler
        .join()
        .map_err(|_| "the sampler panicked".to_string())?;
    let counters = ctx.rec.counters();
    drop(ctx);
    writer
        .finish()
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    rt.shutdown_timeout(Duration::from_secs(2));

    let inputs = analyze::Inputs {
        nodes: args.nodes,
        quorum,
        ttl,
        load: (load_start, load_end),
        timeline: &timeline,
        samples: &samples,
        counters,
        keys_left,
        faults: !args.no_faults,
    };
    let (summary, targets) = analyze::summarize(&log_path, &inputs)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    drop(cluster);

    println!(
        "== summary (seed {seed}, {} s of load)",
        (load_end - load_start) / 1_000_000_000
    );
    println!(
        "faults carried out: {} (most nodes down at once: {}; postponed to keep the limit: {}); std client flushed at the end: {flushed}",
        report.faults,
        report.max_down_seen,
        report.postponed
    );
    println!("load average at the end: {load_at_end} (the machine is shared: figures are noisy)");
    print!("{summary}");
    println!("== targets");
    let mut all_met = true;
    for t in &targets {
        all_met &= t.met != Some(false);
        let verdict = match t.met {
            Some(true) => "MET",
            Some(false) => "MISSED",
            None => "N/A",
        };
        println!("{verdict:<7} {}: {}", t.name, t.detail);
    }
    match temp {
        Some(t) if !all_met || interrupted.load(Ordering::SeqCst) => {
            let kept = t.keep();
            println!(
                "log kept: {}",
                kept.join(log_path.file_name().unwrap_or_default())
                    .display()
            );
        }
        Some(_) => {}
        None => println!("log: {}", log_path.display()),
    }
    if interrupted.load(Ordering::SeqCst) {
        println!(
            "INTERRUPTED after {} s of load: the run is incomplete",
            (load_end - load_start) / 1_000_000_000
        );
        return Err("interrupted".into());
    }
    Ok(all_met)
}
