//! `redlock`: a distributed lock on a majority of independent Redis masters,
//! from the command line (`flock(1)` for a fleet of machines).
//!
//! The contract (flags, outputs, exit statuses) is `shared/CLI.md`; `redlock
//! --help` is the manual. All lock decisions are made by `redlock-core`,
//! driven by the blocking transport `redlock-std`; this binary only turns
//! arguments into calls, results into JSON lines and exit statuses, and
//! supervises the child process of `exec`.

mod args;
mod exec;
mod exit;
mod lock;
mod report;
mod signals;

use std::io::Write;
use std::process::ExitCode;

use args::Command;

fn main() -> ExitCode {
    let cli = match args::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        // clap prints the message (or the help/version) and picks the status:
        // 2 for usage errors, 0 for --help / --version.
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(exit::USAGE));
        }
    };
    init_logging(cli.common.verbose, cli.common.quiet);
    let out = Output {
        quiet: cli.common.quiet,
    };
    let common = &cli.common;
    let code = match &cli.command {
        Command::Sim(sim) => run_sim(sim, common.verbose, &out),
        Command::Exec { resources, command } => {
            lock::with_client(common, resources, &out, &exec::EXTRA_SIGNALS, |ctx| {
                exec::run(ctx, command)
            })
        }
        Command::Acquire { resources } => {
            lock::with_client(common, resources, &out, &[], lock::acquire)
        }
        Command::Extend { resources, token } => {
            lock::with_client(common, resources, &out, &[], |ctx| lock::extend(ctx, token))
        }
        Command::Release { resources, token } => {
            lock::with_client(common, resources, &out, &[], |ctx| {
                lock::release(ctx, token)
            })
        }
    };
    ExitCode::from(code)
}

/// Where the program's own messages go: stderr, unless `-qq`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    quiet: u8,
}

impl Output {
    /// An error or warning for the user, on stderr (suppressed by `-qq`).
    pub(crate) fn error(&self, msg: impl std::fmt::Display) {
        if self.quiet < 2 {
            let _ = writeln!(std::io::stderr().lock(), "redlock: {msg}");
        }
    }

    /// One line on stdout (results: JSON, simulation summary).
    pub(crate) fn line(&self, msg: impl std::fmt::Display) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{msg}")?;
        out.flush()
    }
}

fn init_logging(verbose: u8, quiet: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = match (verbose, quiet) {
        (_, q) if q >= 2 => LevelFilter::OFF,
        (_, 1) => LevelFilter::ERROR,
        (0, _) => LevelFilter::WARN,
        (1, _) => LevelFilter::INFO,
        (2, _) => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // The keeper logs a failed extension as a warning; `exec` reports the
    // loss itself, in one message: show the keeper's only from -vv on.
    let keeper = if verbose >= 2 {
        level
    } else {
        level.min(LevelFilter::ERROR)
    };
    let filter = Targets::new()
        .with_default(level)
        .with_target("redlock_std::keep", keeper);
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(LevelFilter::TRACE)
        .with_target(verbose >= 2)
        .with_ansi(false)
        .finish()
        .with(filter)
        .try_init();
}

fn run_sim(sim: &args::SimArgs, verbose: u8, out: &Output) -> u8 {
    let opts = redlock_sim::SimOptions {
        seed: sim.seed,
        seeds: sim.seeds,
        nodes: sim.sim_nodes,
        clients: sim.clients,
        unsafe_faults: sim.unsafe_faults.clone(),
        fencing: if sim.fence {
            redlock_sim::Choice::Always
        } else {
            redlock_sim::Choice::Swarm
        },
        timeline: sim.timeline.clone(),
        verbose: verbose > 0,
    };
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let report = redlock_sim::run(&opts, &mut lock);
    let _ = lock.flush();
    match report {
        Ok(report) if report.violations.is_empty() => exit::OK,
        Ok(_) => exit::VIOLATION,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            out.error(format_args!("sim: {e}"));
            exit::USAGE
        }
        Err(e) => {
            out.error(format_args!("sim: {e}"));
            exit::IO
        }
    }
}
