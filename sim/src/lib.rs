//! # redlock-sim: a deterministic simulator for Redlock
//!
//! Redlock's safety argument is about time: clocks that drift within a
//! bound, keys that expire on each node's own clock, replies that come late
//! or never, nodes that restart empty. This crate puts the **real** protocol
//! core (`redlock_core::Redlock`, the same code the transports run) into a
//! simulated world where all of that is controlled by one seed, and checks
//! mutual exclusion in *true* time, which no participant can see.
//!
//! ## The model
//! * **One thread, one event queue, virtual true time** in microseconds
//!   (a `BinaryHeap` ordered by `(time, sequence)`). Nothing reads the wall
//!   clock or OS entropy; only ordered containers are iterated.
//! * **One root seed**, one independent random stream per subsystem
//!   (network, slow nodes, mid-pipeline resets, faults, clocks, per-seed options, each client's workload and
//!   tokens), so a change in one subsystem's draws never shifts another's.
//! * **Nodes** ([`node::SimNode`]): keys with expiry on the node's own clock,
//!   `SET NX PX`, every script of the core (release, extend, the
//!   all-or-nothing acquire of several resources, the fenced acquire and its
//!   second round) by `EVAL`/`EVALSHA` (`NOSCRIPT` when not cached; the
//!   cache is lost on restart), `SCRIPT LOAD`, `AUTH`, `SELECT`, `PING`.
//!   Checked against a real `redis-server` by
//!   `tests/tests/sim_differential.rs`.
//! * **Clocks**: every node and client reads true time through its own
//!   linear clock, with a rate error within ±0.2 % (so the relative drift
//!   stays well under the core's 1 % allowance) and a random offset.
//! * **Connections**: per (client, node) ordered byte streams with delay
//!   and jitter (never reordered within a connection; different connections
//!   reorder freely), latency spikes past the node timeout, replies split at
//!   random points, resets, partitions (both ways or one way: traffic is
//!   held until the partition heals, as TCP retransmission would), and
//!   connection attempts that fail against a down or unreachable node. A
//!   connection the client closes itself still delivers the bytes already
//!   written; on half of the seeds of the network adversarial in time,
//!   those may reach the node after the bytes of the next connection.
//! * **Clients** run the core through a small driver with the transports'
//!   drain contract (`poll_transmit`, then `poll_event`, then
//!   `poll_timeout`), with instants from their own drifting clock. Each
//!   loops: acquire `"r"` (sometimes `"r2"`), hold for a while doing
//!   *protected actions* only while `now < lease.deadline()` on its own
//!   clock, sometimes extend, release (or, rarely, walk away and let the
//!   lock expire), think.
//! * **Fenced locks** ([`Scenario::fencing`], on about half of the seeds):
//!   `acquire_set` with `Fencing::On`, the proposal's wall clock per client
//!   (synchronised, skewed by up to 10 TTLs, or one client hours off, and
//!   sometimes stepped, backwards too), so the second round happens. The
//!   protected resource is a **fenced store**: each protected action is a
//!   write carrying the lease's fence, accepted iff the fence is not below
//!   the highest accepted ([`redlock_core::fence::FenceGuard`]). On a
//!   quarter of the fenced seeds only some clients are fenced: plain and
//!   fenced locks then share the resources. Fencing needs registers that
//!   are never lost, so on a fenced seed every node persists (AOF): the
//!   safe menu's crashes keep the registers, and losing them is the unsafe
//!   fault [`Fault::RegisterAmnesia`].
//! * **Resource sets** ([`Scenario::resource_sets`], on about a third of
//!   the seeds): each client locks its own set of `r`, `r2`, `r3` at once
//!   (the overlapping pairs `{r, r2}`, `{r2, r3}`, `{r, r3}` in turn, or
//!   sets drawn from those, single resources and all three), the names in
//!   any order and with duplicates.
//! * **Faults (safe menu)**, chosen per seed ("swarm"): partitions, resets,
//!   crashes with persistence or with a restart delay of at least a TTL,
//!   short client pauses, `SCRIPT FLUSH`, latency spikes. They all heal at
//!   the end of the fault phase.
//! * **A network adversarial in time** (also in the safe menu, each element
//!   on or off per seed; [`Scenario::timing_faults`]): heavy-tailed or
//!   bimodal message delays; a slow node whose replies (sometimes its
//!   requests too) lag by an eighth of a node timeout up to 3 TTLs for
//!   seconds, longer than retry pauses; connections reset while requests
//!   are in flight; script cache flushes at any moment and often (on the
//!   slow node again and again); retry pauses drawn from 0 up (shorter than
//!   a node timeout on half of the seeds); short holds, so that keys come
//!   and go while others retry. Late replies and lost connections are
//!   within Redlock's assumptions: a request may time out, a belief may not
//!   be wrong. All of it heals with the other faults.
//! * **Unsafe faults** ([`Fault`]) break one of Redlock's assumptions on
//!   purpose, and the checker must then find violations.
//!
//! ## The checks
//! * **Safety**, after every event: for one resource, no client's belief
//!   interval (from `Acquired` until the lease deadline mapped to true time,
//!   cut short by release, extension or loss) overlaps another client's
//!   belief or protected action. A lease over a set is a belief in each of
//!   its resources.
//! * **Quorum backing**, before every event and when a belief ends: at
//!   every true time inside a client's belief in a resource, at least a
//!   quorum (N/2 + 1) of the nodes block everyone else from it, by being
//!   down or by holding the resource with the belief's token, unexpired on
//!   their own clock. This is what Redlock's validity rule promises, and it
//!   fails as soon as a belief outlives its keys, without waiting for a
//!   second client to ask at the wrong moment.
//! * **Fences** (fenced seeds; [`FenceViolation`], reported apart from the
//!   above in [`Outcome::fence_failure`]): two grants of one resource never
//!   share a fence; a grant whose acquire started (its first request left)
//!   after another grant of the resource was confirmed, in true time, has a
//!   fence above it; the store never accepts interleaved writes of two
//!   grants (A, B, A); and, while the lock's own assumptions hold, it never
//!   refuses a write of a valid holder. The first two need no timing
//!   assumption, so a fenced run goes on after a mutual-exclusion violation
//!   to see what the store made of it: under `pause` and `clock-jump` the
//!   lock fails and the store stays consistent, refusing the stale writes;
//!   `register-amnesia` breaks the fences and not the lock.
//! * **Liveness**: after the faults heal, every client acquires (its lock,
//!   or its set) at least once within 40 TTLs (the report names each
//!   missing client, its set and its last failure). And at any time, an acquire must never be refused by a key
//!   that an earlier attempt of the *same* operation stored and never
//!   undid (its own stale key: the undo was lost); this is reported as a
//!   liveness failure unless a safety violation comes up in the same run.
//!   (An undo that ran before its `SET` landed, the `SET` still in flight
//!   on a closed connection, is the network's doing, not reported.)
//! * **Diagnoses** ([`Diagnosis`]): each node keeps a journal of the lock
//!   commands it ran, so a failure can say why a key is gone or there: an
//!   undo answered `NOSCRIPT`, re-sent by `EVAL` behind the next attempt's
//!   `SET` of the same token and deleting its key, or an own stale key left
//!   by an undo lost across a reconnect.
//! * **Bounded steps**: more events than [`Scenario::max_steps`] is a
//!   livelock failure.
//! * **Determinism**: every processed event is hashed; the same seed gives
//!   the same hash ([`run`] checks this on its first seed).
//!
//! ## Example
//! ```
//! use redlock_sim::{run, Fault, SimOptions};
//!
//! let opts = SimOptions { seeds: 3, ..SimOptions::default() };
//! let mut out = Vec::new();
//! let report = run(&opts, &mut out).unwrap();
//! assert_eq!(report.seeds_run, 3);
//! assert!(report.violations.is_empty());
//! // Same options, byte-identical output.
//! let mut again = Vec::new();
//! run(&opts, &mut again).unwrap();
//! assert_eq!(out, again);
//! ```

#![warn(missing_docs)]

mod checker;
mod clock;
mod fencing;
pub mod fuzz;
pub mod node;
pub mod replay;
mod rng;
mod scenario;
mod timeline;
mod world;

use std::io::{self, Write};
use std::path::PathBuf;

pub use scenario::{
    Choice, ClientScript, Diagnosis, FailureClass, Fault, FenceViolation, Outcome, Scenario,
    Script, ScriptFault, SimCore, Stats, UnknownFault,
};

/// Options of [`run`] (the `redlock sim` command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// First seed.
    pub seed: u64,
    /// Number of seeds: `seed .. seed + seeds`.
    pub seeds: u64,
    /// Simulated Redis nodes (1..=16).
    pub nodes: usize,
    /// Simulated clients (1..=64).
    pub clients: usize,
    /// Assumption-breaking faults to add.
    pub unsafe_faults: Vec<Fault>,
    /// Which seeds run fenced locks and the fenced store
    /// ([`Scenario::fencing`]); `redlock sim --fence` is [`Choice::Always`].
    pub fencing: Choice,
    /// Write an SVG timeline of one seed here (the first violating seed,
    /// or `seed` when none violated).
    pub timeline: Option<PathBuf>,
    /// One line per seed.
    pub verbose: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 0,
            seeds: 100,
            nodes: 5,
            clients: 3,
            unsafe_faults: Vec::new(),
            fencing: Choice::Swarm,
            timeline: None,
            verbose: false,
        }
    }
}

/// What [`run`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReport {
    /// Seeds simulated.
    pub seeds_run: u64,
    /// Seeds that failed (safety, liveness or livelock, or a fence
    /// violation), in order.
    pub violations: Vec<u64>,
    /// Seeds whose fence checker failed, in order (also in `violations`).
    pub fence_violations: Vec<u64>,
    /// The summary text (deterministic).
    pub summary: String,
}

/// Simulates one seed of `scenario`.
///
/// ```
/// use redlock_sim::{simulate, Scenario};
/// let a = simulate(2, &Scenario::default());
/// let b = simulate(2, &Scenario::default());
/// assert_eq!(a.trace_hash, b.trace_hash);
/// assert!(a.failure.is_none());
/// ```
pub fn simulate(seed: u64, scenario: &Scenario) -> Outcome {
    world::World::new(seed, scenario).run()
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// Runs seeds `opts.seed .. opts.seed + opts.seeds`, writes the summary to
/// `out`, and for failing seeds `seed N` with the reason, plus a readable
/// trace of the last events of the first failing seed (replayable with
/// `--seed N --seeds 1` and the same options). Identical options give
/// byte-identical output.
///
/// ```
/// use redlock_sim::{run, Fault, SimOptions};
/// let opts = SimOptions { seeds: 40, unsafe_faults: vec![Fault::Amnesia], ..SimOptions::default() };
/// let report = run(&opts, &mut std::io::sink()).unwrap();
/// assert!(!report.violations.is_empty());
/// ```
pub fn run(opts: &SimOptions, out: &mut dyn Write) -> io::Result<SimReport> {
    if opts.nodes == 0 || opts.nodes > redlock_core::MAX_NODES {
        return Err(invalid("--nodes must be between 1 and 16"));
    }
    if opts.clients == 0 || opts.clients > 64 {
        return Err(invalid("--clients must be between 1 and 64"));
    }
    if opts.seeds == 0 {
        return Err(invalid("--seeds must be at least 1"));
    }
    let mut unsafe_faults = opts.unsafe_faults.clone();
    unsafe_faults.sort();
    unsafe_faults.dedup();
    let scenario = Scenario {
        nodes: opts.nodes,
        clients: opts.clients,
        unsafe_faults: unsafe_faults.clone(),
        fencing: opts.fencing,
        ..Scenario::default()
    };
    let mut text = String::new();
    let faults_desc = if unsafe_faults.is_empty() {
        "none".to_string()
    } else {
        unsafe_faults
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let last = opts.seed.wrapping_add(opts.seeds - 1);
    let fencing = match opts.fencing {
        Choice::Never => "never",
        Choice::Swarm => "on some seeds",
        Choice::Always => "always",
    };
    text.push_str(&format!(
        "redlock sim: seeds {}..={} ({}), {} nodes, {} clients, unsafe faults: {}, fencing: {}\n",
        opts.seed, last, opts.seeds, opts.nodes, opts.clients, faults_desc, fencing
    ));
    out.write_all(text.as_bytes())?;
    let mut total = Stats::default();
    let mut violations = Vec::new();
    let mut lock_violations = Vec::new();
    let mut fence_violations = Vec::new();
    let mut fence_kinds: std::collections::BTreeMap<FenceViolation, u64> = Default::default();
    let mut failures = Vec::new();
    let mut first_hash = None;
    for i in 0..opts.seeds {
        let seed = opts.seed.wrapping_add(i);
        let o = simulate(seed, &scenario);
        if i == 0 {
            first_hash = Some(o.trace_hash);
        }
        total.add(&o.stats);
        if opts.verbose {
            writeln!(
                out,
                "seed {seed}: {} cycles, {} acquisitions, {} busy, {} steps, hash {:016x}{}{}",
                o.stats.cycles,
                o.stats.acquisitions,
                o.stats.busy,
                o.stats.steps,
                o.trace_hash,
                if o.stats.fenced_runs > 0 {
                    format!(", {} fenced grants", o.stats.fenced_grants)
                } else {
                    String::new()
                },
                if o.failure.is_some() || o.fence_failure.is_some() {
                    ", FAILED"
                } else {
                    ""
                }
            )?;
        }
        let failed = o.failure.is_some() || o.fence_failure.is_some();
        if let Some((class, msg)) = o.failure {
            let line = format!("seed {seed}: {}: {msg}\n", class_name(class));
            out.write_all(line.as_bytes())?;
            text.push_str(&line);
            lock_violations.push(seed);
        }
        if let Some((kind, msg)) = o.fence_failure {
            let line = format!("seed {seed}: FENCE VIOLATION: {kind}: {msg}\n");
            out.write_all(line.as_bytes())?;
            text.push_str(&line);
            fence_violations.push(seed);
            *fence_kinds.entry(kind).or_insert(0) += 1;
        }
        if failed {
            violations.push(seed);
            failures.push(seed);
        }
    }
    // Determinism self-check: the first seed again.
    let replay = simulate(opts.seed, &scenario).trace_hash;
    let deterministic = Some(replay) == first_hash;

    let mut summary = String::new();
    summary.push_str(&format!(
        "lock cycles: {}, acquisitions: {}, busy (contention): {}, unavailable: {}, extensions: {} (lost: {}), protected actions: {}\n",
        total.cycles, total.acquisitions, total.busy, total.unavailable, total.extends, total.lost, total.actions
    ));
    let faults = if total.faults.is_empty() {
        "none".to_string()
    } else {
        total
            .faults
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    summary.push_str(&format!("faults injected: {faults}\n"));
    if total.fenced_runs > 0 {
        summary.push_str(&format!(
            "fencing: {} fenced seeds, {} fenced grants ({} needed round 2), fenced store: {} writes accepted, {} refused as stale\n",
            total.fenced_runs, total.fenced_grants, total.round2, total.store_accepted, total.store_rejected
        ));
    }
    if total.set_runs > 0 {
        summary.push_str(&format!(
            "resource sets: {} seeds lock overlapping sets, {} acquisitions of several resources\n",
            total.set_runs, total.set_acquisitions
        ));
    }
    summary.push_str(&format!(
        "simulated time: {:.1} s in {} events\n",
        total.sim_micros as f64 / 1e6,
        total.steps
    ));
    summary.push_str(&format!(
        "determinism: seed {} replayed, trace hash {:016x} {}\n",
        opts.seed,
        replay,
        if deterministic { "matches" } else { "DIFFERS" }
    ));
    let seeds_list = |v: &[u64]| {
        let list: Vec<String> = v.iter().take(20).map(|s| s.to_string()).collect();
        format!(
            " (seeds: {}{})",
            list.join(", "),
            if v.len() > 20 { ", ..." } else { "" }
        )
    };
    summary.push_str(&format!(
        "violations: {} in {} seeds{}\n",
        lock_violations.len(),
        opts.seeds,
        if lock_violations.is_empty() {
            String::new()
        } else {
            seeds_list(&lock_violations)
        }
    ));
    if total.fenced_runs > 0 {
        let kinds: Vec<String> = fence_kinds
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        summary.push_str(&format!(
            "fence violations: {} in {} fenced seeds{}{}\n",
            fence_violations.len(),
            total.fenced_runs,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            },
            if fence_violations.is_empty() {
                String::new()
            } else {
                seeds_list(&fence_violations)
            }
        ));
    }
    out.write_all(summary.as_bytes())?;
    text.push_str(&summary);

    let record_seed = failures.first().copied();
    if let Some(seed) = record_seed {
        let recorded = simulate(
            seed,
            &Scenario {
                record: true,
                ..scenario.clone()
            },
        );
        let mut t = format!(
            "\nseed {seed}\ntrace of seed {seed} (replay with --seed {seed} --seeds 1 and the same options):\n"
        );
        for line in &recorded.trace {
            t.push_str("  ");
            t.push_str(line);
            t.push('\n');
        }
        out.write_all(t.as_bytes())?;
        text.push_str(&t);
    }
    if let Some(path) = &opts.timeline {
        let seed = record_seed.unwrap_or(opts.seed);
        let recorded = simulate(
            seed,
            &Scenario {
                record: true,
                ..scenario.clone()
            },
        );
        std::fs::write(path, recorded.svg.unwrap_or_default())?;
        let line = format!("timeline of seed {seed} written to {}\n", path.display());
        out.write_all(line.as_bytes())?;
        text.push_str(&line);
    }
    if !deterministic {
        return Err(io::Error::other(format!(
            "simulator is not deterministic: seed {} gave two different trace hashes",
            opts.seed
        )));
    }
    Ok(SimReport {
        seeds_run: opts.seeds,
        violations,
        fence_violations,
        summary: text,
    })
}

fn class_name(c: FailureClass) -> &'static str {
    match c {
        FailureClass::Safety => "SAFETY VIOLATION",
        FailureClass::Liveness => "LIVENESS FAILURE",
        FailureClass::Livelock => "LIVELOCK",
    }
}
