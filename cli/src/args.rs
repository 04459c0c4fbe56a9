//! Command-line definitions (clap derive), their bounds, and the manual text
//! of `--help`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Environment variable with comma-separated node URLs.
pub(crate) const NODES_ENV: &str = "REDLOCK_NODES";

/// One year as humantime counts it (`1y` = 365.25 days).
const YEAR: Duration = Duration::from_secs(31_557_600);
/// Longest `--ttl` and `--wait`.
const MAX_TTL: Duration = YEAR;
/// Longest `--wait`.
const MAX_WAIT: Duration = YEAR;
/// Longest `--retry-delay`.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// Longest `--node-timeout`.
const MAX_NODE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most `--retry-count`.
const MAX_RETRY_COUNT: u32 = 10_000;

const ABOUT: &str =
    "A distributed lock on a majority of independent Redis masters (Redlock): flock(1) for a fleet";

const LONG_ABOUT: &str = "\
A distributed lock on a majority of independent Redis masters (the Redlock algorithm): \
flock(1) for a fleet of machines.

With N nodes the lock is held when a majority (N/2+1) of them stored our random token under \
the resource name, within a validity window computed from the TTL, the time the attempt took \
and a clock-drift allowance. The Redis key is the resource name and its value the token, as \
with every other Redlock client, so locks taken here are respected by them and the other way \
round. An attempt that fails removes whatever part of the lock it took, on every node, at once; \
so does an interrupted one (SIGINT, SIGTERM).

NODES
    -n/--node URL, repeatable: redis://[[user]:password@]host[:port][/db], rediss:// for TLS.
    Without --node, the comma-separated list in REDLOCK_NODES is used. There is no other \
default: with neither (or an empty REDLOCK_NODES) redlock refuses to run (status 2), because \
a silent fallback to a local Redis would let every machine of a fleet take \"the\" lock at once.
    Use independent masters (not replicas of each other): 3 or 5 is usual. The same server \
(host as written, case-insensitive, and port, 6379 when omitted) given twice is refused, \
whatever the db or credentials: two dbs of one server are not independent nodes.
    Passwords are never printed: messages show a node as redis://user:***@host:port.

SEVERAL RESOURCES
    --resource may be repeated (acquire, extend, release, exec): one lease over all the \
resources, taken all or nothing on each node, so a set that overlaps a held lock is busy and \
takes nothing (no deadlock from taking locks one by one). A resource named twice counts once; \
extend and release name the same set, in any order. Each resource is its own Redis key, so \
other Redlock clients see each one locked.

FENCING (--fence, for acquire and exec)
    A lease is a promise about time: a holder that is paused (GC, SIGSTOP, a VM migration) \
past its lease can wake up and act as if it still held the lock. With --fence every grant \
carries a fence: an integer that grows with every grant of the resource, strictly greater than \
the fence of every grant confirmed before this acquire started, and never equal to another \
grant's, with no timing assumption (each node keeps a fence register per resource: the string \
key {NAME}:fence, no expiry; the nodes must never lose it: AOF with appendfsync always, no \
eviction of keys without a TTL, no failover to an asynchronous replica).
    What the protected resource must do: remember the highest fence it has accepted and refuse \
a write whose fence is lower. In SQL, in one transaction:
        UPDATE t SET ..., fence = $f WHERE id = $id AND fence <= $f
    0 rows updated means a newer holder has written: stop, the lock was lost. (<= because \
fences are unique: an equal fence is the same holder.) exec passes the fence to CMD as \
REDLOCK_FENCE; acquire prints it as \"fence\". Fenced and plain locks on one resource exclude \
each other (the key and its value are the same); extend and release need no --fence.

TIMING
    Each attempt asks every node at once and waits at most --node-timeout for each (default \
5% of the TTL, between 5ms and 1s): with default options a silent node adds at most about 1 s \
to each attempt. There are 1 + --retry-count attempts, --retry-delay apart (randomised), or \
as many as fit in --wait.

DURATIONS
    Written as people write them: 250ms, 10s, 2m, 1h30m (0 for --wait = a single attempt). \
Absurd values are refused (status 2): --ttl and --wait at most 1y, --retry-delay at most 1h, \
--node-timeout from 1ms to 1m, --retry-count at most 10000.

EXAMPLES
    Run a job on at most one machine at a time (the lock is kept alive while it runs):
        redlock -n redis://a:6379 -n redis://b:6379 -n redis://c:6379 \\
            exec --resource nightly-report -- ./make-report --full

    Wait up to 2 minutes for the lock instead of giving up after 3 retries:
        REDLOCK_NODES=redis://a,redis://b,redis://c redlock exec -r deploy --wait 2m make deploy

    Skip this run when another machine has the lock, and tell \"busy\" from the job's own \
failures:
        redlock exec -r cron:cleanup --nonblock -E 99 -- ./cleanup.sh; [ $? -eq 99 ] && echo busy

    Run a job that writes to a database, fenced (the database refuses a paused ex-holder's \
writes: the job puts $REDLOCK_FENCE in its UPDATE ... WHERE fence <= $REDLOCK_FENCE):
        redlock exec -r ledger --fence -- ./update-ledger

    Two resources, all or nothing:
        redlock exec -r accounts:1 -r accounts:2 -- ./transfer 1 2 100

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
    2     usage: unknown flag, bad URL, bad duration, missing argument, no node given,
          the same node given twice, an absurd value (message on stderr)
    69    unavailable: too few nodes answered to decide (down, unreachable, timing out,
          error replies, protocol garbage); 75 instead when the nodes that said \"held by
          another\" alone rule a quorum out
    70    exec: the lock was lost while CMD (or a process of its group) ran; the group was
          sent SIGTERM, then SIGKILL after 5 s. Its work may be partial.
    74    could not write the result (the lease's JSON line; sim: stdout or --timeline FILE)
    75    busy: the lock is held by someone else (after all retries); -E N replaces 75
          with N for acquire and exec; for extend and release: this token does not hold
          the lock on a quorum
    77    refused: a node rejected our authentication (wrong password, unknown user,
          or a password required and none given)
    126   exec: CMD could not be run (not executable); the lock was released
    127   exec: CMD was not found; the lock was released
    128+N interrupted by signal N (SIGINT, SIGTERM, SIGHUP) before CMD started, or during
          acquire, extend or release; any part of a lock taken was released first

SIGNALS
    acquire, extend, release: SIGINT, SIGTERM, SIGHUP and SIGQUIT end redlock with 128+N, \
after undoing whatever part of the lock an acquire had taken (a lease won at that very \
moment is released too); an extend or release in progress finishes first (bounded by the \
node timeout).
    exec: CMD runs in a process group of its own. SIGINT, SIGTERM, SIGHUP and SIGQUIT to \
redlock are passed on to that whole group, and SIGTSTP stops it with redlock (SIGCONT \
resumes both). When redlock runs as a foreground job reading the terminal, the terminal is handed to \
CMD's group while it runs, so CMD can read from it and Ctrl-C, Ctrl-\\ reach it directly. \
If redlock itself dies, even by SIGKILL, the whole group is killed (CMD by its parent-death \
signal, the rest by a small watchdog process), so no part of CMD runs on without its lock. \
What remains: a SIGSTOP of redlock alone (not SIGTSTP) freezes the extensions while CMD \
runs on; when redlock is continued after its lease ran out, the group is stopped and \
redlock exits 70. A process that leaves CMD's group (setsid, a daemon) is beyond reach.

ENVIRONMENT
    REDLOCK_NODES      comma-separated node URLs, used when no --node is given
    exec gives CMD:
    REDLOCK_RESOURCE   the (first) resource name
    REDLOCK_TOKEN      this holder's token
    REDLOCK_RESOURCES  with several --resource: all of them, comma-separated, in the order given
    REDLOCK_FENCE      with --fence: the fence (several resources: comma-separated, same order)";

const EXEC_ABOUT: &str =
    "Acquire the lock, run CMD while holding it (extended automatically), release it when CMD ends";
const EXEC_LONG: &str = "\
Acquire the lock, run CMD while holding it, release it as soon as CMD ends.

The lease is extended in the background (a third into each validity window) for as long as \
CMD runs, even for many TTLs. CMD's environment gets REDLOCK_RESOURCE (the first resource) and \
REDLOCK_TOKEN; with several --resource also REDLOCK_RESOURCES (comma-separated, in the order \
given); with --fence also REDLOCK_FENCE (the integer the protected resource must check: see \
FENCING in redlock --help; for several resources comma-separated in the same order). \
redlock exits with CMD's status (128+N when CMD was killed by signal N).

CMD runs in a process group of its own, and the lock covers the whole group: \
SIGINT/SIGTERM/SIGHUP/SIGQUIT to redlock are passed on to the group, and if redlock dies \
(even by SIGKILL) the group is killed. When CMD exits but has left processes of its group \
running (`job &` without `wait`), redlock says so on stderr and keeps the lock, extending \
it, until the last of them has ended, as flock(1)'s lock stays held while any process \
started under it keeps the lock file open; SIGTERM to redlock ends them. The exit status \
is still CMD's.

If the lock is lost while the group runs (an extension fails to reach a quorum in time), \
the whole group is sent SIGTERM, then SIGKILL after 5 s, one message on stderr names the \
nodes that failed, and redlock exits with status 70, also when CMD happened to exit in \
the same moment: the loss is checked before CMD's end.

`--` before CMD is optional; every argument from CMD on belongs to CMD.

Examples:
    redlock exec --resource backup -- pg_dump -f /backups/db.sql mydb
    redlock exec -r cron:cleanup --ttl 10s --nonblock ./cleanup.sh
    redlock exec -r accounts:1 -r accounts:2 --fence -- ./transfer 1 2 100";

const ACQUIRE_LONG: &str = "\
Acquire the lock and leave it held until its TTL runs out (nobody extends it).

On success prints one line of JSON on stdout:
    {\"resource\":\"NAME\",\"token\":\"TOKEN\",\"validity_ms\":N}
validity_ms is how long, from now, the holder may act as the owner (the TTL less the time the \
acquisition took and the clock-drift allowance). Keep the token: extend and release need it.
With several --resource, \"resource\" is the first and \"resources\":[...] lists all (in the \
order given). With --fence, \"fence\":N is the fence the protected resource must check (see \
FENCING in redlock --help); with several resources \"fences\":[...] lists one per resource, in \
the order of \"resources\", and \"fence\" is the first.

Exits 75 (or -E N) when the lock is held by someone else after all retries, 69 when too few \
nodes answered. SIGINT/SIGTERM while acquiring undo whatever part of the lock was taken, \
then exit 128+N.

Examples:
    redlock acquire --resource jobs:42 --ttl 5m
    redlock acquire -r accounts:1 -r accounts:2 --fence";

const EXTEND_LONG: &str = "\
Extend a lease held with TOKEN to a new TTL (--ttl, default 30s) from now.

Prints the same JSON line as acquire, with the new validity (no fence: it is the \
acquire's). A lease over several resources is extended by naming the same set (any order). \
Exits 75 when this token does not hold the lock on a quorum (it expired or someone else has \
it), 69 when too few nodes answered.

Example:
    redlock extend --resource jobs:42 --token \"$token\" --ttl 5m";

const RELEASE_LONG: &str = "\
Release a lease held with TOKEN: the key is deleted on every node where it still holds TOKEN. \
A wrong or stale token never deletes someone else's lock.

A lease over several resources is released by naming the same set (any order).

Exits 0 when released on a quorum, 75 when this token does not hold the lock on a quorum (it \
expired or someone else has it: the work it protected may have run unprotected at the end), \
69 when too few nodes answered to tell (the others get the release when they come back; the \
key may remain there until its TTL).

Example:
    redlock release --resource jobs:42 --token \"$token\"";

const SIM_LONG: &str = "\
Deterministic simulation of C clients contending for locks on N simulated nodes, with network \
delay and loss, node crashes and restarts, clock drift within the configured bound and client \
pauses, all driven by the same protocol core as the real transports. Runs seeds S..S+K-1 and \
checks that no two clients ever held the same lock at the same true time. The same arguments \
print byte-identical output.

Fenced locks (on about half of the seeds, on every seed with --fence) protect a simulated \
fenced store: each protected action is a write carrying the lease's fence, accepted iff the \
fence is not below the highest the store accepted. The fence checker fails on two grants with \
one fence, on a later grant with a lower fence, on interleaved writes (A, B, A), and, while the \
lock's assumptions hold, on a refused write from a valid holder. Some seeds lock overlapping \
sets of resources at once.

--unsafe FAULT adds a fault that breaks one of Redlock's assumptions:
    amnesia           a node restarts at once with its keys lost
    clock-jump        a node's clock jumps forward past the drift bound
    pause             a client stops longer than its lease, then acts as holder
    register-amnesia  a node restarts without persistence after a TTL: the locks stay safe,
                      the fence registers are lost
With these the simulation finds violations and prints `seed N` with a readable trace; \
`--seed N --seeds 1` with the same options replays it. Under pause and clock-jump the lock \
fails while the fenced store stays consistent (--fence shows both); register-amnesia breaks \
fencing and not the lock.

Exit status: 0 when no violation was found, 1 when one was.

Examples:
    redlock sim --seeds 1000
    redlock sim --seeds 200 --unsafe amnesia
    redlock sim --seed 17 --seeds 1 --unsafe amnesia --timeline seed17.svg
    redlock sim --seeds 200 --fence --unsafe pause";

/// The `redlock` command line.
#[derive(Debug, Parser)]
#[command(
    name = "redlock",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = EXIT_TABLE,
    after_help = "Exit status: 0 done, 1 sim violation, 2 usage, 69 unavailable, 70 lock lost during exec, \
74 output failed, 75 busy (-E N), 77 auth refused, 128+N interrupted; exec: CMD's own, 126/127 CMD \
not runnable/found. See --help for the manual.",
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
    /// A Redis master (`--node URL`, repeatable); see the help text.
    #[arg(
        short = 'n',
        long = "node",
        value_name = "URL",
        global = true,
        action = ArgAction::Append,
        help = "A Redis master: redis://[[user]:password@]host[:port][/db], rediss:// for TLS \
                (repeatable) [default: $REDLOCK_NODES (comma-separated); no other default]"
    )]
    pub(crate) nodes: Vec<String>,

    /// Validity asked of each node for one lease (1ms to 1y)
    #[arg(long, value_name = "DURATION", global = true, default_value = "30s", value_parser = parse_ttl)]
    pub(crate) ttl: Duration,

    /// Further acquire attempts after the first (at most 10000)
    #[arg(long, value_name = "N", global = true, default_value_t = 3, value_parser = parse_retry_count)]
    pub(crate) retry_count: u32,

    /// Base pause between attempts, randomised by +/- half of it (at most 1h)
    #[arg(long, value_name = "DURATION", global = true, default_value = "200ms", value_parser = parse_retry_delay)]
    pub(crate) retry_delay: Duration,

    /// Keep retrying until this much time has passed (instead of --retry-count); 0 = a single
    /// attempt (at most 1y)
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_wait)]
    pub(crate) wait: Option<Duration>,

    /// One attempt only: the same as --wait 0 (not with --wait or --retry-count)
    #[arg(long, global = true, conflicts_with_all = ["wait", "retry_count"])]
    pub(crate) nonblock: bool,

    /// How long one node may take to answer one request (the whole reply) before it counts as
    /// failed for that attempt; with default options a silent node adds at most about 1 s to
    /// each attempt [default: 5% of the TTL, between 5ms and 1s; at most 1m]
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_node_timeout)]
    pub(crate) node_timeout: Option<Duration>,

    /// A fenced lock (acquire, exec): the lease carries a fence, an integer that grows with
    /// every grant, which the protected resource checks (see FENCING in --help); extend and
    /// release need none
    #[arg(long, global = true)]
    pub(crate) fence: bool,

    /// The exit status for "busy" (held by someone else) in acquire and exec, instead of 75
    /// (as flock -E); N in 1..=255
    #[arg(short = 'E', long, value_name = "N", global = true, value_parser = parse_conflict_code)]
    pub(crate) conflict_exit_code: Option<u8>,

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

impl Common {
    /// `--wait`, with `--nonblock` meaning `--wait 0`.
    pub(crate) fn wait(&self) -> Option<Duration> {
        if self.nonblock {
            Some(Duration::ZERO)
        } else {
            self.wait
        }
    }

    /// The status for "busy" in acquire and exec (`-E`, else 75).
    pub(crate) fn busy_code(&self) -> u8 {
        self.conflict_exit_code.unwrap_or(crate::exit::BUSY)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Acquire the lock, run CMD while holding it (extended automatically), release it when CMD ends
    #[command(about = EXEC_ABOUT, long_about = EXEC_LONG, after_long_help = EXIT_TABLE)]
    Exec {
        /// The lock's name (the Redis key); repeat for one lease over several (all or nothing)
        #[arg(short = 'r', long = "resource", value_name = "NAME", required = true, action = ArgAction::Append)]
        resources: Vec<String>,
        /// The command to run, and its arguments (`--` before it is optional)
        #[arg(value_name = "CMD", required = true, trailing_var_arg = true, num_args = 1..)]
        command: Vec<OsString>,
    },
    /// Acquire the lock and leave it held until its TTL runs out; prints JSON
    #[command(long_about = ACQUIRE_LONG, after_long_help = EXIT_TABLE)]
    Acquire {
        /// The lock's name (the Redis key); repeat for one lease over several (all or nothing)
        #[arg(short = 'r', long = "resource", value_name = "NAME", required = true, action = ArgAction::Append)]
        resources: Vec<String>,
    },
    /// Extend a lease held with TOKEN; prints JSON with the new validity
    #[command(long_about = EXTEND_LONG, after_long_help = EXIT_TABLE)]
    Extend {
        /// The lock's name (the Redis key); repeat for one lease over several (all or nothing)
        #[arg(short = 'r', long = "resource", value_name = "NAME", required = true, action = ArgAction::Append)]
        resources: Vec<String>,
        /// The token printed by `redlock acquire`
        #[arg(short, long, value_name = "TOKEN")]
        token: String,
    },
    /// Release a lease held with TOKEN
    #[command(long_about = RELEASE_LONG, after_long_help = EXIT_TABLE)]
    Release {
        /// The lock's name (the Redis key); repeat for one lease over several (all or nothing)
        #[arg(short = 'r', long = "resource", value_name = "NAME", required = true, action = ArgAction::Append)]
        resources: Vec<String>,
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
    /// Add a fault that breaks one of Redlock's assumptions: amnesia, clock-jump, pause, register-amnesia (repeatable)
    #[arg(long = "unsafe", value_name = "FAULT", value_parser = parse_fault, action = ArgAction::Append)]
    pub(crate) unsafe_faults: Vec<redlock_sim::Fault>,
    /// Fence every lock and check the fenced store on every seed (default: on about half of them)
    #[arg(long)]
    pub(crate) fence: bool,
    /// Write an SVG timeline of the (first violating, else first) seed to FILE
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) timeline: Option<PathBuf>,
}

/// Parses the command line, with the one check clap cannot make itself:
/// `--nonblock` against `--wait`/`--retry-count` given on another level
/// (before and after the subcommand).
pub(crate) fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(args)?;
    let given = |id: &str| {
        let here = |m: &clap::ArgMatches| m.value_source(id) == Some(ValueSource::CommandLine);
        here(&matches) || matches.subcommand().is_some_and(|(_, sub)| here(sub))
    };
    if given("nonblock") {
        for (id, flag) in [("wait", "--wait"), ("retry_count", "--retry-count")] {
            if given(id) {
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("the argument '--nonblock' cannot be used with '{flag}'"),
                ));
            }
        }
    }
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
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

/// A duration within `min..=max` (`max_text` is `max` as people write it);
/// `why` explains the upper bound.
fn bounded(
    s: &str,
    min: Duration,
    (max, max_text): (Duration, &str),
    why: &str,
) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < min {
        return Err(format!(
            "must be at least {}",
            humantime::format_duration(min)
        ));
    }
    if d > max {
        return Err(format!("must be at most {max_text} ({why})"));
    }
    Ok(d)
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    bounded(
        s,
        Duration::from_millis(1),
        (MAX_TTL, "1y"),
        "a lock that outlives its holder by more is a mistake",
    )
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    bounded(
        s,
        Duration::ZERO,
        (MAX_WAIT, "1y"),
        "use a loop for longer waits",
    )
}

fn parse_retry_delay(s: &str) -> Result<Duration, String> {
    bounded(
        s,
        Duration::ZERO,
        (MAX_RETRY_DELAY, "1h"),
        "to wait long for the lock, use --wait",
    )
}

fn parse_node_timeout(s: &str) -> Result<Duration, String> {
    bounded(
        s,
        Duration::from_millis(1),
        (MAX_NODE_TIMEOUT, "1m"),
        "a node that does not answer within a minute is down",
    )
}

fn parse_retry_count(s: &str) -> Result<u32, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of retries"))?;
    match u32::try_from(n) {
        Ok(n) if n <= MAX_RETRY_COUNT => Ok(n),
        _ => Err(format!(
            "must be at most {MAX_RETRY_COUNT} (to keep trying for a long time, use --wait DURATION)"
        )),
    }
}

fn parse_conflict_code(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u16>() {
        Ok(n @ 1..=255) => Ok(n as u8),
        _ => Err(format!("{s:?} is not an exit status from 1 to 255")),
    }
}

fn parse_fault(s: &str) -> Result<redlock_sim::Fault, String> {
    s.parse::<redlock_sim::Fault>().map_err(|_| {
        format!("unknown fault {s:?}: expected amnesia, clock-jump, pause or register-amnesia")
    })
}

/// The node URLs to use: `--node`s, else `$REDLOCK_NODES`; there is no
/// default (a message naming both when neither gives any).
pub(crate) fn node_list(flags: &[String]) -> Result<Vec<String>, String> {
    if !flags.is_empty() {
        return Ok(flags.to_vec());
    }
    let from_env: Vec<String> = std::env::var(NODES_ENV)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if from_env.is_empty() {
        return Err(format!(
            "no node given: use --node URL (repeatable) or set {NODES_ENV} to comma-separated \
             URLs, e.g. {NODES_ENV}=redis://10.0.0.1,redis://10.0.0.2,redis://10.0.0.3 \
             (there is no default node, so that a missing setting cannot make every machine \
             lock its own local Redis)"
        ));
    }
    Ok(from_env)
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
    fn bounds() {
        assert_eq!(parse_ttl("1y"), Ok(YEAR));
        assert!(parse_ttl("10000000y").unwrap_err().contains("at most 1y"));
        assert!(parse_ttl("0").unwrap_err().contains("at least 1ms"));
        assert!(parse_retry_delay("600000y").is_err());
        assert_eq!(parse_retry_delay("0"), Ok(Duration::ZERO));
        assert!(parse_node_timeout("0").is_err());
        assert!(parse_node_timeout("2m").is_err());
        assert!(parse_wait("2y").is_err());
        assert_eq!(parse_retry_count("10000"), Ok(10_000));
        assert!(parse_retry_count("10001").is_err());
        assert!(parse_retry_count("99999999999999999999999").is_err());
        assert!(parse_retry_count("-1").is_err());
        assert_eq!(parse_conflict_code("255"), Ok(255));
        assert!(parse_conflict_code("0").is_err());
        assert!(parse_conflict_code("256").is_err());
    }

    #[test]
    fn nonblock_conflicts_with_wait_and_retry_count_wherever_given() {
        let ok = parse_from(["redlock", "acquire", "-r", "x", "--nonblock"]).unwrap();
        assert_eq!(ok.common.wait(), Some(Duration::ZERO));
        let ok = parse_from(["redlock", "--nonblock", "acquire", "-r", "x"]).unwrap();
        assert_eq!(ok.common.wait(), Some(Duration::ZERO));
        for args in [
            &[
                "redlock",
                "acquire",
                "-r",
                "x",
                "--nonblock",
                "--wait",
                "1s",
            ][..],
            &[
                "redlock",
                "--nonblock",
                "acquire",
                "-r",
                "x",
                "--retry-count",
                "3",
            ],
            &[
                "redlock",
                "--wait",
                "0",
                "exec",
                "-r",
                "x",
                "--nonblock",
                "true",
            ],
        ] {
            let e = parse_from(args).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{args:?}"
            );
        }
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
