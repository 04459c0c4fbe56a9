//! Command-line definitions (clap derive) and the manual text of `--help`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Default node when neither `--node` nor `REDLOCK_NODES` gives one.
pub(crate) const DEFAULT_NODE: &str = "redis://127.0.0.1:6379";
/// Environment variable with comma-separated node URLs.
pub(crate) const NODES_ENV: &str = "REDLOCK_NODES";

const ABOUT: &str =
    "A distributed lock on a majority of independent Redis masters (Redlock): flock(1) for a fleet";

const LONG_ABOUT: &str = "\
A distributed lock on a majority of independent Redis masters (the Redlock algorithm): \
flock(1) for a fleet of machines.

With N nodes the lock is held when a majority (N/2+1) of them stored our random token under \
the resource name, within a validity window computed from the TTL, the time the attempt took \
and a clock-drift allowance. The Redis key is the resource name and its value the token, as \
with every other Redlock client, so locks taken here are respected by them and the other way \
round. An attempt that fails removes whatever part of the lock it took, on every node, at once.

NODES
    -n/--node URL, repeatable: redis://[[user]:password@]host[:port][/db], rediss:// for TLS.
    Without --node, the comma-separated list in REDLOCK_NODES is used, else redis://127.0.0.1:6379.
    Use independent masters (not replicas of each other): 3 or 5 is usual.
    Passwords are never printed: messages show a node as redis://user:***@host:port.

DURATIONS
    Written as people write them: 250ms, 10s, 2m, 1h30m (0 for --wait = a single attempt).

EXAMPLES
    Run a job on at most one machine at a time (the lock is kept alive while it runs):
        redlock -n redis://a:6379 -n redis://b:6379 -n redis://c:6379 \\
            exec --resource nightly-report -- ./make-report --full

    Wait up to 2 minutes for the lock instead of giving up after 3 retries:
        REDLOCK_NODES=redis://a,redis://b,redis://c redlock exec -r deploy --wait 2m make deploy

    Take a lock from a shell script, extend it, release it:
        lease=$(redlock acquire --resource batch --ttl 1m) || exit
        token=$(printf '%s' \"$lease\" | jq -r .token)
        redlock extend --resource batch --token \"$token\" --ttl 1m
        redlock release --resource batch --token \"$token\"

    Check the algorithm in simulation (and watch it break when an assumption is broken):
        redlock sim --seeds 1000
        redlock sim --seeds 200 --unsafe amnesia";

const EXIT_TABLE: &str = "\
EXIT STATUS
    0     done
    CMD's exec: CMD's own status when the lock was held throughout
          (128+N when CMD was killed by signal N, as a shell reports it)
    1     sim: a safety violation was found (its seed is printed)
    2     usage: unknown flag, bad URL, bad duration, missing argument (message on stderr)
    69    unavailable: too few nodes answered to decide (down, unreachable, timing out,
          error replies, protocol garbage); this wins over 75
    70    exec: the lock was lost while CMD ran (an extension failed to reach a quorum in
          time); CMD was sent SIGTERM, then SIGKILL after 5 s. Its work may be partial.
    74    sim: could not write its output (stdout, --timeline FILE)
    75    busy: the lock is held by someone else (after all retries); for extend and
          release: this token does not hold it on a quorum
    77    refused: a node rejected our authentication (wrong password, unknown user,
          or a password required and none given)
    126   exec: CMD could not be run (not executable); the lock was released
    127   exec: CMD was not found; the lock was released

SIGNALS
    exec passes SIGINT, SIGTERM, SIGHUP and SIGQUIT on to CMD (except those the terminal \
already sent to CMD's process group itself) and keeps the lock until CMD has ended, then \
releases it at once. A signal that arrives while the lock is still being acquired ends \
redlock with 128+N before CMD is started.

ENVIRONMENT
    REDLOCK_NODES      comma-separated node URLs, used when no --node is given
    CMD gets REDLOCK_RESOURCE (the resource name) and REDLOCK_TOKEN (this holder's token).";

const EXEC_ABOUT: &str =
    "Acquire the lock, run CMD while holding it (extended automatically), release it when CMD ends";
const EXEC_LONG: &str = "\
Acquire the lock, run CMD while holding it, release it as soon as CMD ends.

The lease is extended in the background (a third into each validity window) for as long as \
CMD runs, even for many TTLs. CMD's environment gets REDLOCK_RESOURCE and REDLOCK_TOKEN. \
SIGINT/SIGTERM/SIGHUP/SIGQUIT to redlock are passed on to CMD. redlock exits with CMD's \
status (128+N when CMD was killed by signal N).

If the lock is lost while CMD runs (an extension fails to reach a quorum in time), CMD is \
sent SIGTERM, then SIGKILL after 5 s, a message on stderr names the nodes that failed, and \
redlock exits with status 70.

`--` before CMD is optional; every argument from CMD on belongs to CMD.

Examples:
    redlock exec --resource backup -- pg_dump -f /backups/db.sql mydb
    redlock exec -r cron:cleanup --ttl 10s --wait 0 ./cleanup.sh";

const ACQUIRE_LONG: &str = "\
Acquire the lock and leave it held until its TTL runs out (nobody extends it).

On success prints one line of JSON on stdout:
    {\"resource\":\"NAME\",\"token\":\"TOKEN\",\"validity_ms\":N}
validity_ms is how long, from now, the holder may act as the owner (the TTL less the time the \
acquisition took and the clock-drift allowance). Keep the token: extend and release need it.

Example:
    redlock acquire --resource jobs:42 --ttl 5m";

const EXTEND_LONG: &str = "\
Extend a lease held with TOKEN to a new TTL (--ttl, default 30s) from now.

Prints the same JSON line as acquire, with the new validity. Exits 75 when this token does \
not hold the lock on a quorum (it expired or someone else has it), 69 when too few nodes \
answered.

Example:
    redlock extend --resource jobs:42 --token \"$token\" --ttl 5m";

const RELEASE_LONG: &str = "\
Release a lease held with TOKEN: the key is deleted on every node where it still holds TOKEN. \
A wrong or stale token never deletes someone else's lock.

Exits 0 when released on a quorum, 75 when this token does not hold the lock on a quorum, \
69 when too few nodes answered.

Example:
    redlock release --resource jobs:42 --token \"$token\"";

const SIM_LONG: &str = "\
Deterministic simulation of C clients contending for locks on N simulated nodes, with network \
delay and loss, node crashes and restarts, clock drift within the configured bound and client \
pauses, all driven by the same protocol core as the real transports. Runs seeds S..S+K-1 and \
checks that no two clients ever held the same lock at the same true time. The same arguments \
print byte-identical output.

--unsafe FAULT adds a fault that breaks one of Redlock's stated assumptions:
    amnesia     a node restarts at once with its keys lost
    clock-jump  a node's clock jumps forward past the drift bound
    pause       a client stops longer than its lease, then acts as holder
With these the simulation finds violations and prints `seed N` with a readable trace; \
`--seed N --seeds 1` with the same options replays it.

Exit status: 0 when no violation was found, 1 when one was.

Examples:
    redlock sim --seeds 1000
    redlock sim --seeds 200 --unsafe amnesia
    redlock sim --seed 17 --seeds 1 --unsafe amnesia --timeline seed17.svg";

/// The `redlock` command line.
#[derive(Debug, Parser)]
#[command(
    name = "redlock",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = EXIT_TABLE,
    after_help = "Exit status: 0 done, 1 sim violation, 2 usage, 69 unavailable, 70 lock lost during exec, \
75 busy, 77 auth refused; exec: CMD's own. See --help for the manual.",
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) common: Common,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every lock command takes, before or after the subcommand.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// A Redis master: redis://[[user]:password@]host[:port][/db], rediss:// for TLS (repeatable)
    /// [default: $REDLOCK_NODES (comma-separated), else redis://127.0.0.1:6379]
    #[arg(short = 'n', long = "node", value_name = "URL", global = true, action = ArgAction::Append)]
    pub(crate) nodes: Vec<String>,

    /// Validity asked of each node for one lease
    #[arg(long, value_name = "DURATION", global = true, default_value = "30s", value_parser = parse_duration)]
    pub(crate) ttl: Duration,

    /// Further acquire attempts after the first
    #[arg(long, value_name = "N", global = true, default_value_t = 3)]
    pub(crate) retry_count: u32,

    /// Base pause between attempts, randomised by +/- half of it
    #[arg(long, value_name = "DURATION", global = true, default_value = "200ms", value_parser = parse_duration)]
    pub(crate) retry_delay: Duration,

    /// Keep retrying until this much time has passed (instead of --retry-count); 0 = a single attempt
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_duration)]
    pub(crate) wait: Option<Duration>,

    /// How long one node may take to answer one request (the whole reply) before it counts as
    /// failed for that attempt [default: 5% of the TTL, between 5ms and 1s]
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_duration)]
    pub(crate) node_timeout: Option<Duration>,

    /// Extra trusted CA certificate (PEM file) for rediss:// nodes
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) tls_ca: Option<PathBuf>,

    /// More on stderr (repeat for more: -v info, -vv debug, -vvv trace)
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub(crate) verbose: u8,

    /// Less on stderr (-q: errors only, -qq: nothing)
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Acquire the lock, run CMD while holding it (extended automatically), release it when CMD ends
    #[command(about = EXEC_ABOUT, long_about = EXEC_LONG, after_long_help = EXIT_TABLE)]
    Exec {
        /// The lock's name (the Redis key)
        #[arg(short, long, value_name = "NAME")]
        resource: String,
        /// The command to run, and its arguments (`--` before it is optional)
        #[arg(value_name = "CMD", required = true, trailing_var_arg = true, num_args = 1..)]
        command: Vec<OsString>,
    },
    /// Acquire the lock and leave it held until its TTL runs out; prints JSON
    #[command(long_about = ACQUIRE_LONG, after_long_help = EXIT_TABLE)]
    Acquire {
        /// The lock's name (the Redis key)
        #[arg(short, long, value_name = "NAME")]
        resource: String,
    },
    /// Extend a lease held with TOKEN; prints JSON with the new validity
    #[command(long_about = EXTEND_LONG, after_long_help = EXIT_TABLE)]
    Extend {
        /// The lock's name (the Redis key)
        #[arg(short, long, value_name = "NAME")]
        resource: String,
        /// The token printed by `redlock acquire`
        #[arg(short, long, value_name = "TOKEN")]
        token: String,
    },
    /// Release a lease held with TOKEN
    #[command(long_about = RELEASE_LONG, after_long_help = EXIT_TABLE)]
    Release {
        /// The lock's name (the Redis key)
        #[arg(short, long, value_name = "NAME")]
        resource: String,
        /// The token printed by `redlock acquire`
        #[arg(short, long, value_name = "TOKEN")]
        token: String,
    },
    /// Deterministic simulation that checks mutual exclusion (no Redis needed)
    #[command(long_about = SIM_LONG)]
    Sim(SimArgs),
}

/// `redlock sim` options.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// First seed
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub(crate) seed: u64,
    /// Number of seeds to run (S..S+K-1)
    #[arg(long, value_name = "K", default_value_t = 100)]
    pub(crate) seeds: u64,
    /// Simulated Redis nodes
    #[arg(long = "nodes", value_name = "N", default_value_t = 5)]
    pub(crate) sim_nodes: usize,
    /// Simulated clients contending for the locks
    #[arg(long, value_name = "C", default_value_t = 3)]
    pub(crate) clients: usize,
    /// Add a fault that breaks one of Redlock's assumptions: amnesia, clock-jump, pause (repeatable)
    #[arg(long = "unsafe", value_name = "FAULT", value_parser = parse_fault, action = ArgAction::Append)]
    pub(crate) unsafe_faults: Vec<redlock_sim::Fault>,
    /// Write an SVG timeline of the (first violating, else first) seed to FILE
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) timeline: Option<PathBuf>,
}

/// Parses a human duration: `250ms`, `10s`, `2m`, `1h30m`, `0`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{e} (write durations like 250ms, 10s, 2m, 1h30m)"))
}

fn parse_fault(s: &str) -> Result<redlock_sim::Fault, String> {
    s.parse::<redlock_sim::Fault>()
        .map_err(|_| format!("unknown fault {s:?}: expected amnesia, clock-jump or pause"))
}

/// The node URLs to use: `--node`s, else `$REDLOCK_NODES`, else the default.
pub(crate) fn node_list(flags: &[String]) -> Vec<String> {
    if !flags.is_empty() {
        return flags.to_vec();
    }
    match std::env::var(NODES_ENV) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => vec![DEFAULT_NODE.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn options_after_subcommand_and_optional_double_dash() {
        let c = Cli::try_parse_from([
            "redlock",
            "exec",
            "--resource",
            "r",
            "--ttl",
            "5s",
            "sleep",
            "1",
        ])
        .unwrap();
        assert_eq!(c.common.ttl, Duration::from_secs(5));
        match c.command {
            Command::Exec { command, .. } => assert_eq!(command, ["sleep", "1"]),
            _ => panic!(),
        }
        let c = Cli::try_parse_from([
            "redlock",
            "-n",
            "redis://a",
            "exec",
            "-r",
            "r",
            "--",
            "ls",
            "-la",
            "--ttl",
        ])
        .unwrap();
        match c.command {
            Command::Exec { command, .. } => assert_eq!(command, ["ls", "-la", "--ttl"]),
            _ => panic!(),
        }
        assert_eq!(c.common.ttl, Duration::from_secs(30));
        assert!(Cli::try_parse_from(["redlock", "exec", "-r", "r"]).is_err());
        assert!(Cli::try_parse_from(["redlock", "acquire", "--bogus"]).is_err());
        assert!(Cli::try_parse_from(["redlock", "acquire", "-r", "x", "--ttl", "soon"]).is_err());
    }
}
