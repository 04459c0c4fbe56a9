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

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
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
    let code = match cli.command {
        Command::Sim(ref sim) => run_sim(sim, cli.common.verbose, &out),
        Command::Exec {
            ref resource,
            ref command,
        } => lock::with_client(&cli.common, resource, &out, |client| {
            exec::run(client, resource, command, &out)
        }),
        Command::Acquire { ref resource } => {
            lock::with_client(&cli.common, resource, &out, |client| {
                lock::acquire(client, resource, &out)
            })
        }
        Command::Extend {
            ref resource,
            ref token,
        } => lock::with_client(&cli.common, resource, &out, |client| {
            lock::extend(client, &cli.common, resource, token, &out)
        }),
        Command::Release {
            ref resource,
            ref token,
        } => lock::with_client(&cli.common, resource, &out, |client| {
            lock::release(client, resource, token, &out)
        }),
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
    use tracing_subscriber::filter::LevelFilter;
    let level = match (verbose, quiet) {
        (_, q) if q >= 2 => LevelFilter::OFF,
        (_, 1) => LevelFilter::ERROR,
        (0, _) => LevelFilter::WARN,
        (1, _) => LevelFilter::INFO,
        (2, _) => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(verbose >= 2)
        .with_ansi(false)
        .try_init();
}

fn run_sim(sim: &args::SimArgs, verbose: u8, out: &Output) -> u8 {
    let opts = redlock_sim::SimOptions {
        seed: sim.seed,
        seeds: sim.seeds,
        nodes: sim.sim_nodes,
        clients: sim.clients,
        unsafe_faults: sim.unsafe_faults.clone(),
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
