//! After the run: reads the log back, checks it, and prints the summary and
//! the targets.
//!
//! ## The checks
//! * **Overlaps.** Per resource, sections sorted by their begin instant; a
//!   section B that begins while another, A, is inside (A.begin <= B.begin
//!   < A.end) is an *overlap* when B began before the latest instant A's
//!   lock was known valid until (A's `remaining()` read at its begin, at each
//!   check of a long section and at its commit, added to the instant it was
//!   read: a lower bound of A's real deadline). That is two holders at once,
//!   the one thing a lock must never allow. A B that begins after A's known
//!   validity, while A still runs, is counted apart (*overrun*: A kept
//!   running past its lease, e.g. descheduled; it does not commit). The
//!   lost-update counters check the same thing without the log.
//! * **Busy reported as unavailable.** An `Unavailable` acquire while at
//!   most N - quorum nodes were down is wrong when the nodes' "held by
//!   another token" replies alone rule a quorum out, or could have with the
//!   replies it did not wait for (held + not-waited-for >= N - quorum + 1).
//!   The truly mixed case (held and failed replies, neither enough alone) is
//!   unavailable by design (CLI.md: 69 wins over 75 only there) and counted
//!   apart.
//! * **Flat.** RSS and open fds of the soak process are sampled every
//!   second while the load runs. After a warm-up (10 % of the run, at least
//!   15 s: allocator arenas and connection buffers fill up first), the
//!   samples are cut in thirds; RSS is flat when the median of the last third
//!   exceeds the median of the first by at most max(5 %, 1 MiB), fds when by
//!   at most 2. A leak of one fd per fault, or of a hundred bytes per
//!   operation, grows past that within a 180 s run. (The soak's own
//!   bookkeeping is constant: everything it records goes to its log file.)

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use crate::timeline::Timeline;
use crate::watch::Sample;

/// What the summary needs besides the log.
#[derive(Debug)]
pub(crate) struct Inputs<'a> {
    pub(crate) nodes: usize,
    pub(crate) quorum: usize,
    pub(crate) ttl: Duration,
    /// When the load started and ended (ns).
    pub(crate) load: (u64, u64),
    pub(crate) timeline: &'a Timeline,
    pub(crate) samples: &'a [Sample],
    /// Per resource, (committed, counter).
    pub(crate) counters: Vec<(u64, u64)>,
    pub(crate) keys_left: Result<Vec<Vec<String>>, String>,
    /// Whether faults ran (`--no-faults` measures no reconnects).
    pub(crate) faults: bool,
}

#[derive(Clone, Debug)]
struct Section {
    transport: String,
    worker: usize,
    res: usize,
    token: String,
    begin: u64,
    end: u64,
    deadline_lb: u64,
    committed: bool,
    long: bool,
}

#[derive(Clone, Debug)]
struct Op {
    transport: String,
    res: usize,
    t0: u64,
    t_acq: u64,
    t_end: u64,
    down_acq: u32,
    down_held: u32,
    acq: String,
    end: String,
    kind: String,
    outcomes: String,
    details: String,
    message: String,
}

/// A restart (`U`) or a resume (`C`): the node was back at `back` (ns).
#[derive(Clone, Debug)]
struct Back {
    node: usize,
    /// The new process was spawned (restarts only).
    spawn: Option<u64>,
    back: u64,
}

/// `R`: when one client used a restarted node again.
#[derive(Clone, Debug)]
struct Reconnect {
    node: usize,
    spawn: u64,
    ready: u64,
    transport: String,
    used: Option<u64>,
    censored: Option<u64>,
}

/// `K`: a lock key seen on a node after it resumed.
#[derive(Clone, Debug)]
struct KeySeen {
    node: usize,
    res: usize,
    token: String,
    resumed: u64,
    first: u64,
    last: u64,
    pttl: i64,
    gone: Option<u64>,
}

/// Everything the log holds.
#[derive(Debug, Default)]
struct Log {
    sections: Vec<Section>,
    ops: Vec<Op>,
    /// `F`: (kind, nodes, down_at).
    faults: Vec<(String, Vec<usize>, u64)>,
    backs: Vec<Back>,
    reconnects: Vec<Reconnect>,
    keys: Vec<KeySeen>,
}

fn parse(path: &Path) -> std::io::Result<Log> {
    let mut log = Log::default();
    let bad = |line: &str| std::io::Error::other(format!("bad log line: {line:?}"));
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        let f: Vec<&str> = line.split('\t').collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
        let opt = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
        let need = |v: Option<u64>| v.ok_or_else(|| bad(&line));
        match f.first() {
            Some(&"S") if f.len() == 10 => log.sections.push(Section {
                transport: f[1].to_owned(),
                worker: need(num(2))? as usize,
                res: need(num(3))? as usize,
                token: f[4].to_owned(),
                begin: need(num(5))?,
                end: need(num(6))?,
                deadline_lb: need(num(7))?,
                committed: f[8] == "1",
                long: f[9] == "1",
            }),
            Some(&"O") if f.len() == 17 => log.ops.push(Op {
                transport: f[1].to_owned(),
                res: need(num(3))? as usize,
                t0: need(num(5))?,
                t_acq: need(num(6))?,
                t_end: need(num(7))?,
                down_acq: need(num(8))? as u32,
                down_held: need(num(9))? as u32,
                acq: f[10].to_owned(),
                end: f[11].to_owned(),
                kind: f[12].to_owned(),
                outcomes: f[14].to_owned(),
                details: f[15].to_owned(),
                message: f[16].to_owned(),
            }),
            Some(&"F") if f.len() == 5 => log.faults.push((
                f[1].to_owned(),
                f[2].split(',').filter_map(|n| n.parse().ok()).collect(),
                need(num(3))?,
            )),
            Some(&"U") if f.len() == 4 => log.backs.push(Back {
                node: need(num(1))? as usize,
                spawn: Some(need(num(2))?),
                back: need(num(3))?,
            }),
            Some(&"C") if f.len() == 3 => log.backs.push(Back {
                node: need(num(1))? as usize,
                spawn: None,
                back: need(num(2))?,
            }),
            Some(&"R") if f.len() == 7 => log.reconnects.push(Reconnect {
                node: need(num(1))? as usize,
                spawn: need(num(2))?,
                ready: need(num(3))?,
                transport: f[4].to_owned(),
                used: opt(5),
                censored: opt(6),
            }),
            Some(&"K") if f.len() == 9 => log.keys.push(KeySeen {
                node: need(num(1))? as usize,
                res: need(num(2))? as usize,
                token: f[3].to_owned(),
                resumed: need(num(4))?,
                first: need(num(5))?,
                last: need(num(6))?,
                pttl: f[7].parse().map_err(|_| bad(&line))?,
                gone: opt(8),
            }),
            Some(&"T") => {}
            _ => return Err(bad(&line)),
        }
    }
    Ok(log)
}

/// Two holders at once, found in the log.
#[derive(Debug, Default)]
struct Overlaps {
    /// B began while A was inside and within A's known validity.
    violations: Vec<(Section, Section)>,
    /// B began while A was inside but after A's known validity.
    overruns: Vec<(Section, Section)>,
}

fn overlaps(sections: &[Section], resources: usize) -> Overlaps {
    let mut out = Overlaps::default();
    for res in 0..resources {
        let mut mine: Vec<&Section> = sections.iter().filter(|s| s.res == res).collect();
        mine.sort_by_key(|s| (s.begin, s.end));
        let mut active: Vec<&Section> = Vec::new();
        for b in mine {
            active.retain(|a| a.end > b.begin);
            for a in &active {
                if b.begin < a.deadline_lb {
                    out.violations.push(((*a).clone(), b.clone()));
                } else {
                    out.overruns.push(((*a).clone(), b.clone()));
                }
            }
            active.push(b);
        }
    }
    out
}

/// `p` in 0..=100 of sorted `v` (nearest rank).
fn pct(v: &[u64], p: u64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let rank = (p as usize * v.len()).div_ceil(100).max(1);
    Some(v[rank.min(v.len()) - 1])
}

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    if v.is_empty() {
        0
    } else {
        v[v.len() / 2]
    }
}

/// The flatness rule of the module docs, on `(t, value)` samples after
/// `warm` ns: `(first third median, last third median, flat)`.
pub(crate) fn flat(
    samples: &[(u64, u64)],
    warm: u64,
    limit: impl Fn(u64) -> u64,
) -> (u64, u64, bool) {
    let after: Vec<u64> = samples
        .iter()
        .filter(|s| s.0 >= warm)
        .map(|s| s.1)
        .collect();
    let third = after.len() / 3;
    if third == 0 {
        return (0, 0, false);
    }
    let first = median(&mut after[..third].to_vec());
    let last = median(&mut after[after.len() - third..].to_vec());
    (first, last, last <= first + limit(first))
}

/// One target and whether it was met.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) name: &'static str,
    /// `None`: not measured in this run (no faults).
    pub(crate) met: Option<bool>,
    pub(crate) detail: String,
}

fn count_letter(s: &str, c: char) -> usize {
    s.chars().filter(|&x| x == c).count()
}

/// Per-node `(index, outcome, last_error)` from an op's details.
fn node_details(details: &str) -> Vec<(usize, String, String)> {
    if details == "-" {
        return Vec::new();
    }
    details
        .split(" | ")
        .filter_map(|d| {
            let mut p = d.splitn(3, '=');
            let i = p.next()?.parse().ok()?;
            Some((i, p.next()?.to_owned(), p.next().unwrap_or("").to_owned()))
        })
        .collect()
}

/// Whether an error text speaks of a connection failure (which a node up
/// and connected for a while cannot currently have).
fn speaks_of_connection(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    [
        "refused",
        "closed by the node",
        "reset by peer",
        "connect failed",
        "broken pipe",
    ]
    .iter()
    .any(|w| e.contains(w))
}

/// Builds the summary text and the targets.
pub(crate) fn summarize(log: &Path, inp: &Inputs<'_>) -> std::io::Result<(String, Vec<Target>)> {
    let log = parse(log)?;
    let (sections, ops) = (&log.sections, &log.ops);
    let n = inp.nodes;
    let q = inp.quorum;
    let spare = n - q;
    let blocking = spare + 1;
    let ttl_ns = inp.ttl.as_nanos() as u64;
    let mut s = String::new();
    let mut targets = Vec::new();
    let resources = inp.counters.len();
    let transports = ["tokio", "std"];

    // ---- sections and overlaps
    let committed = sections.iter().filter(|x| x.committed).count();
    let long = sections.iter().filter(|x| x.long).count();
    let ov = overlaps(sections, resources);
    let lost_updates: u64 = inp.counters.iter().map(|(c, v)| c.saturating_sub(*v)).sum();
    let _ = writeln!(
        s,
        "protected sections: {} ({} committed, {} found their lock lost or expired at the end and did not commit; {} long, kept extended)",
        sections.len(),
        committed,
        sections.len() - committed,
        long
    );
    for t in transports {
        let k = sections.iter().filter(|x| x.transport == t).count();
        let _ = writeln!(s, "  {t}: {k}");
    }
    let _ = writeln!(
        s,
        "overlaps (a second holder within the first's validity): {}; overruns (a section that ran past its own validity while another began): {}",
        ov.violations.len(),
        ov.overruns.len()
    );
    for (a, b) in ov.violations.iter().chain(&ov.overruns).take(5) {
        let _ = writeln!(
            s,
            "  resource {}: {}#{} [{} .. {}] valid to >= {}, then {}#{} began at {}",
            a.res,
            a.transport,
            a.worker,
            ms(a.begin),
            ms(a.end),
            ms(a.deadline_lb),
            b.transport,
            b.worker,
            ms(b.begin)
        );
    }
    let _ = writeln!(
        s,
        "lost updates (counter check, independent of Redis and of the log): {lost_updates} (committed {} = counters {})",
        inp.counters.iter().map(|c| c.0).sum::<u64>(),
        inp.counters.iter().map(|c| c.1).sum::<u64>()
    );
    targets.push(Target {
        name: "0 overlaps",
        met: Some(ov.violations.is_empty() && lost_updates == 0),
        detail: format!(
            "{} overlaps, {lost_updates} lost updates in {} sections",
            ov.violations.len(),
            sections.len()
        ),
    });

    // ---- operations
    let bucket = |v: &mut Vec<u64>, d: u32| {
        let d = d as usize;
        if v.len() <= d {
            v.resize(d + 1, 0);
        }
        v[d] += 1;
    };
    let show = |v: &[u64]| -> String {
        let total: u64 = v.iter().sum();
        let parts: Vec<String> = (0..=spare.max(v.len().saturating_sub(1)))
            .map(|d| format!("{d} down: {}", v.get(d).copied().unwrap_or(0)))
            .collect();
        format!("{total} ({})", parts.join(", "))
    };
    let _ = writeln!(s, "operations: {}", ops.len());
    for t in transports {
        let mine: Vec<&Op> = ops.iter().filter(|o| o.transport == t).collect();
        let (mut busy, mut unav, mut expired, mut losses) = (vec![], vec![], vec![], vec![]);
        let mut acquired = 0;
        let (mut unknown, mut other, mut auth) = (0, 0, 0);
        for o in &mine {
            match o.acq.as_str() {
                "ok" => acquired += 1,
                "busy" => bucket(&mut busy, o.down_acq),
                "unavailable" => {
                    bucket(&mut unav, o.down_acq);
                    if o.kind == "Expired" {
                        bucket(&mut expired, o.down_acq);
                    }
                }
                "auth" => auth += 1,
                _ => other += 1,
            }
            match o.end.as_str() {
                "lost" | "notheld" => bucket(&mut losses, o.down_held),
                "unknown" => unknown += 1,
                "other" => other += 1,
                _ => {}
            }
        }
        let _ = writeln!(
            s,
            "  {t}: {} operations, {acquired} acquisitions",
            mine.len()
        );
        let _ = writeln!(s, "    busy:        {}", show(&busy));
        let _ = writeln!(
            s,
            "    unavailable: {} (of which no validity left: {})",
            show(&unav),
            expired.iter().sum::<u64>()
        );
        let _ = writeln!(
            s,
            "    losses:      {} (down = most nodes down while held)",
            show(&losses)
        );
        let _ = writeln!(
            s,
            "    release unconfirmed: {unknown}; auth errors: {auth}; other errors: {other}"
        );
    }
    for o in ops
        .iter()
        .filter(|o| o.acq == "other" || o.end == "other")
        .take(3)
    {
        let _ = writeln!(s, "    e.g. other: {}: {}", o.transport, o.message);
    }

    // Unavailable while every node was up.
    let all_up: Vec<&Op> = ops
        .iter()
        .filter(|o| o.acq == "unavailable" && o.down_acq == 0)
        .collect();
    let _ = writeln!(s, "unavailable while every node was up: {}", all_up.len());
    let mut patterns: HashMap<&str, usize> = HashMap::new();
    for o in &all_up {
        *patterns.entry(o.outcomes.as_str()).or_default() += 1;
    }
    let mut patterns: Vec<_> = patterns.into_iter().collect();
    patterns.sort_by_key(|p| std::cmp::Reverse(p.1));
    for (p, k) in patterns.iter().take(6) {
        let _ = writeln!(
            s,
            "  outcomes {p} (O ok, H held, F failed, P not waited for): {k}"
        );
    }
    // Was a failed node just back, and had this client not used it again yet?
    let mut in_window = 0;
    let mut examples = Vec::new();
    for o in &all_up {
        let mut why = Vec::new();
        let mut inside = false;
        for (i, c) in o.outcomes.chars().enumerate() {
            if c != 'F' {
                continue;
            }
            let back = log
                .backs
                .iter()
                .filter(|b| b.node == i && b.back <= o.t0)
                .max_by_key(|b| b.back);
            let Some(back) = back else { continue };
            let kind = if back.spawn.is_some() {
                "restarted"
            } else {
                "resumed"
            };
            let used = log
                .reconnects
                .iter()
                .find(|r| r.node == i && r.ready == back.back && r.transport == o.transport)
                .and_then(|r| r.used);
            if used.is_some_and(|u| o.t0 < back.back + u) {
                inside = true;
            }
            why.push(format!(
                "node {i} {kind} {} before{}",
                ms(o.t0 - back.back),
                used.map_or(String::new(), |u| format!(
                    ", this client back on it {} after",
                    ms(u)
                ))
            ));
        }
        in_window += usize::from(inside);
        examples.push(format!(
            "  e.g. {} at {} ({}): {}",
            o.transport,
            ms(o.t0),
            why.join("; "),
            o.message
        ));
    }
    let _ = writeln!(
        s,
        "  of which began while a failed node was back but this client had not used it again yet: {in_window}"
    );
    for e in examples.iter().take(4) {
        let _ = writeln!(s, "{e}");
    }
    // An attempt that began after a node came back but before this client's
    // reconnect to it (bounded by the reconnect backoff, whose length the
    // reconnect target below measures) found that node honestly not
    // connected: it is reported above but is not a miss of this target.
    let connected = all_up.len() - in_window;
    targets.push(Target {
        name: "0 Unavailable while every node is up and reconnected",
        met: Some(connected == 0),
        detail: format!(
            "{connected} unavailable with 0 nodes down outside a reconnect window \
             ({in_window} more inside one)"
        ),
    });

    // Busy reported as unavailable.
    let mut misreported = Vec::new();
    let (mut mixed, mut truly_held) = (0usize, 0usize);
    for o in ops
        .iter()
        .filter(|o| o.acq == "unavailable" && o.kind != "Expired" && (o.down_acq as usize) <= spare)
    {
        let held = count_letter(&o.outcomes, 'H');
        let pending = count_letter(&o.outcomes, 'P');
        let failed = count_letter(&o.outcomes, 'F');
        if held >= blocking || held + pending >= blocking {
            misreported.push(o);
        } else if held > 0 && failed > 0 {
            mixed += 1;
        }
        let other_holder = sections
            .iter()
            .any(|x| x.res == o.res && x.begin < o.t_acq && x.end > o.t0);
        if other_holder {
            truly_held += 1;
        }
    }
    let _ = writeln!(
        s,
        "unavailable with at most {spare} down: busy misreported (held replies, with those not waited for, enough to rule out a quorum): {}; truly mixed (held and failed, neither enough alone): {mixed}; the resource was in fact held by another worker meanwhile: {truly_held}",
        misreported.len()
    );
    for o in misreported.iter().take(3) {
        let _ = writeln!(s, "  e.g. {} {}: {}", o.transport, o.outcomes, o.message);
    }
    targets.push(Target {
        name: "busy never reported as unavailable with <= N - quorum out",
        met: Some(misreported.is_empty()),
        detail: format!("{} misreported", misreported.len()),
    });

    // Messages that blame a connection failure on a node up for over a second.
    for t in transports {
        let mut stale = Vec::new();
        for o in ops.iter().filter(|o| o.transport == t && o.details != "-") {
            for (i, outcome, err) in node_details(&o.details) {
                if outcome.starts_with("Ok") || outcome.starts_with("Held") || err.is_empty() {
                    continue;
                }
                if speaks_of_connection(&err)
                    && inp
                        .timeline
                        .up_throughout(i, o.t0.saturating_sub(1_000_000_000), o.t_end)
                {
                    stale.push((o, i, err));
                }
            }
        }
        let _ = writeln!(
            s,
            "{t}: node errors naming a connection failure on a node up for the whole operation and the second before it: {}",
            stale.len()
        );
        for (o, i, err) in stale.iter().take(2) {
            let _ = writeln!(s, "  e.g. at {} node {i}: {err}", ms(o.t0));
        }
    }

    // ---- reconnects
    let target_ns = ttl_ns / 10;
    let mut all: Vec<u64> = Vec::new();
    let mut censored_miss = 0;
    let mut censored_short = 0;
    for t in transports {
        let mut v: Vec<u64> = Vec::new();
        for r in log.reconnects.iter().filter(|r| r.transport == t) {
            match (r.used, r.censored) {
                (Some(u), _) => v.push(u),
                (None, Some(c)) if c > target_ns => {
                    // Not back within the target while the node stayed up.
                    censored_miss += 1;
                    v.push(c);
                }
                _ => censored_short += 1,
            }
        }
        v.sort_unstable();
        let _ = writeln!(
            s,
            "reconnect after a restart, {t}: {} samples, p50 {}, p95 {}, max {}",
            v.len(),
            pct(&v, 50).map_or("-".into(), ms),
            pct(&v, 95).map_or("-".into(), ms),
            v.last().map_or("-".into(), |&x| ms(x))
        );
        all.extend(v);
    }
    all.sort_unstable();
    // The same, counted from the spawn of the new process: an upper bound
    // that also holds if the node accepted before the harness saw it ready.
    let mut from_spawn: Vec<u64> = log
        .reconnects
        .iter()
        .filter_map(|r| r.used.map(|u| u + (r.ready - r.spawn)))
        .collect();
    from_spawn.sort_unstable();
    if let Some(r) = log
        .reconnects
        .iter()
        .max_by_key(|r| r.used.or(r.censored).unwrap_or(0))
    {
        let _ = writeln!(
            s,
            "  slowest: {} to node {} restarted at {}: {}",
            r.transport,
            r.node,
            ms(r.ready),
            ms(r.used.or(r.censored).unwrap_or(0))
        );
    }
    let _ = writeln!(
        s,
        "  counted from the spawn of the new process instead: p50 {}, p95 {}",
        pct(&from_spawn, 50).map_or("-".into(), ms),
        pct(&from_spawn, 95).map_or("-".into(), ms)
    );
    let mut restarts: Vec<u64> = log
        .backs
        .iter()
        .filter_map(|b| b.spawn.map(|sp| b.back - sp))
        .collect();
    restarts.sort_unstable();
    let _ = writeln!(
        s,
        "  (from the node answering, as the harness saw it, to the node running that client's first lock command: CLIENT LIST every 2 ms; the restart itself, spawn to answering: p50 {}, max {}; {} watches cut short by the node going down again before the client came back, {} still not back after the target)",
        pct(&restarts, 50).map_or("-".into(), ms),
        restarts.last().map_or("-".into(), |&x| ms(x)),
        censored_short,
        censored_miss
    );
    let p95 = pct(&all, 95);
    targets.push(Target {
        name: "reconnect p95 after a restart <= 10 % of the TTL",
        met: inp.faults.then(|| p95.is_some_and(|p| p <= target_ns)),
        detail: format!(
            "p95 {} over {} samples, target {}",
            p95.map_or("-".into(), ms),
            all.len(),
            ms(target_ns)
        ),
    });

    // ---- keys after a resume
    // A key whose token no section held at that moment is stale. One that
    // was set before the node woke up (or while it ran the requests queued
    // in its sockets, in the first 50 ms) is a key that *reappeared*: it
    // came from the pause, and only an owed undo ends it before its TTL.
    // Its set time is estimated from its PTTL when first seen.
    let by_token: HashMap<&str, &Section> =
        sections.iter().map(|x| (x.token.as_str(), x)).collect();
    let by_base: HashMap<&str, &str> = sections
        .iter()
        .map(|x| (&x.token[..x.token.len().min(40)], x.transport.as_str()))
        .collect();
    let pauses = log.faults.iter().filter(|f| f.0 == "pause").count();
    let ttl_ms = i64::try_from(inp.ttl.as_millis()).unwrap_or(i64::MAX);
    let mut woke: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut fresh: Vec<u64> = Vec::new();
    let (mut held_seen, mut open, mut no_ttl) = (0, 0, 0);
    let mut pauses_with = std::collections::BTreeSet::new();
    let mut longest: Option<(u64, usize, usize)> = None;
    for k in &log.keys {
        let held = by_token
            .get(k.token.as_str())
            .is_some_and(|x| x.begin <= k.first + 200_000_000 && k.first <= x.end);
        if held {
            held_seen += 1;
            continue;
        }
        if k.pttl == -1 {
            no_ttl += 1;
        }
        let set_at = k.first.saturating_sub(
            u64::try_from((ttl_ms - k.pttl.max(0)).max(0)).unwrap_or(0) * 1_000_000,
        );
        let end = k.gone.unwrap_or(k.last);
        if set_at <= k.resumed + 50_000_000 {
            if k.gone.is_none() {
                open += 1;
            }
            let life = end.saturating_sub(k.resumed);
            let owner = by_base
                .get(&k.token[..k.token.len().min(40)])
                .copied()
                .unwrap_or("unknown");
            woke.entry(owner).or_default().push(life);
            pauses_with.insert((k.node, k.resumed));
            if longest.is_none_or(|l| l.0 < life) {
                longest = Some((life, k.node, k.res));
            }
        } else {
            fresh.push(end.saturating_sub(k.first));
        }
    }
    let mut lives: Vec<u64> = woke.values().flatten().copied().collect();
    lives.sort_unstable();
    let _ = writeln!(
        s,
        "keys that reappeared after a paused node resumed (no holder; set before the node woke or while it ran its queued requests): {} after {} of {pauses} pauses; lived after SIGCONT p50 {}, p95 {}, max {} (TTL {} ms); still there when the watch (TTL + 0.5 s) ended: {open}; without a TTL: {no_ttl}",
        lives.len(),
        pauses_with.len(),
        pct(&lives, 50).map_or("-".into(), ms),
        pct(&lives, 95).map_or("-".into(), ms),
        lives.last().map_or("-".into(), |&x| ms(x)),
        ttl_ms
    );
    for owner in ["tokio", "std", "unknown"] {
        if let Some(v) = woke.get_mut(owner) {
            v.sort_unstable();
            let _ = writeln!(
                s,
                "  by owner ({}): {}: p50 {}, max {}",
                if owner == "unknown" {
                    "an acquire that never succeeded"
                } else {
                    "the attempt's operation later acquired"
                },
                owner,
                pct(v, 50).map_or("-".into(), ms),
                v.last().map_or("-".into(), |&x| ms(x))
            );
        }
    }
    if let Some((life, node, res)) = longest {
        let _ = writeln!(s, "  longest: resource {res} on node {node}, {}", ms(life));
    }
    fresh.sort_unstable();
    let _ = writeln!(
        s,
        "  other keys without a holder seen there (attempts made after the node was back, undone as they fail): {}, seen for p50 {}, max {}; keys of current holders seen: {held_seen}",
        fresh.len(),
        pct(&fresh, 50).map_or("-".into(), ms),
        fresh.last().map_or("-".into(), |&x| ms(x))
    );

    // ---- process
    let warm = inp.load.0 + ((inp.load.1 - inp.load.0) / 10).max(15_000_000_000);
    // Only samples taken while the load ran count.
    let during: Vec<&Sample> = inp.samples.iter().filter(|x| x.t <= inp.load.1).collect();
    let rss: Vec<(u64, u64)> = during.iter().map(|x| (x.t, x.rss_kib)).collect();
    let fds: Vec<(u64, u64)> = during.iter().map(|x| (x.t, x.fds)).collect();
    let threads: Vec<u64> = during.iter().map(|x| x.threads).collect();
    let (r0, r1, rss_flat) = flat(&rss, warm, |first| (first / 20).max(1024));
    let (f0, f1, fds_flat) = flat(&fds, warm, |_| 2);
    let line = |v: &[(u64, u64)]| -> String {
        let step = (v.len() / 12).max(1);
        v.iter()
            .step_by(step)
            .map(|x| x.1.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(
        s,
        "process, every 1 s while the load ran: {} samples",
        during.len()
    );
    let _ = writeln!(s, "  RSS KiB: {}", line(&rss));
    let _ = writeln!(s, "  fds:     {}", line(&fds));
    let _ = writeln!(
        s,
        "  threads: {}..{}",
        threads.iter().min().unwrap_or(&0),
        threads.iter().max().unwrap_or(&0)
    );
    targets.push(Target {
        name: "RSS flat",
        met: Some(rss_flat),
        detail: format!(
            "median {r0} KiB in the first third after warm-up, {r1} KiB in the last (limit +max(5 %, 1 MiB))"
        ),
    });
    targets.push(Target {
        name: "fds flat",
        met: Some(fds_flat),
        detail: format!(
            "median {f0} in the first third after warm-up, {f1} in the last (limit +2)"
        ),
    });

    // ---- keys left
    match &inp.keys_left {
        Ok(per_node) => {
            let total: usize = per_node.iter().map(Vec::len).sum();
            let _ = writeln!(
                s,
                "keys left one TTL after the end: {total}{}",
                if total == 0 {
                    String::new()
                } else {
                    format!(" {per_node:?}")
                }
            );
        }
        Err(e) => {
            let _ = writeln!(s, "keys left one TTL after the end: unknown ({e})");
        }
    }
    Ok((s, targets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(worker: usize, begin: u64, end: u64, deadline_lb: u64) -> Section {
        Section {
            transport: "std".into(),
            worker,
            res: 0,
            token: format!("t{worker}"),
            begin,
            end,
            deadline_lb,
            committed: true,
            long: false,
        }
    }

    #[test]
    fn overlaps_are_found_and_told_from_overruns() {
        // Back to back: fine.
        let ok = [sec(1, 0, 10, 100), sec(2, 10, 20, 110)];
        let o = overlaps(&ok, 1);
        assert!(o.violations.is_empty() && o.overruns.is_empty());
        // 2 begins inside 1, within its validity: an overlap.
        let bad = [sec(1, 0, 10, 100), sec(2, 5, 20, 110)];
        assert_eq!(overlaps(&bad, 1).violations.len(), 1);
        // 2 begins inside 1 but after 1's validity ran out: an overrun.
        let late = [sec(1, 0, 50, 20), sec(2, 30, 60, 130)];
        let o = overlaps(&late, 1);
        assert!(o.violations.is_empty());
        assert_eq!(o.overruns.len(), 1);
        // Other resources do not interfere.
        let mut other = sec(2, 5, 20, 110);
        other.res = 1;
        let o = overlaps(&[sec(1, 0, 10, 100), other], 2);
        assert!(o.violations.is_empty());
    }

    #[test]
    fn flatness_rule() {
        let steady: Vec<(u64, u64)> = (0..60).map(|t| (t, 20_000 + (t % 3) * 100)).collect();
        assert!(flat(&steady, 10, |f| (f / 20).max(1024)).2);
        // 100 KiB a sample: a leak.
        let leak: Vec<(u64, u64)> = (0..60).map(|t| (t, 20_000 + t * 100)).collect();
        assert!(!flat(&leak, 10, |f| (f / 20).max(1024)).2);
        // Too few samples to tell: not flat.
        assert!(!flat(&leak[..3], 0, |_| 2).2);
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(pct(&v, 50), Some(50));
        assert_eq!(pct(&v, 95), Some(95));
        assert_eq!(pct(&[7], 95), Some(7));
        assert_eq!(pct(&[], 95), None);
    }

    #[test]
    fn node_details_parse() {
        let d = node_details("0=Ok= | 1=Failed(Timeout)=no reply in time | 2=Pending=connect failed: Connection refused");
        assert_eq!(d.len(), 3);
        assert_eq!(
            d[1],
            (1, "Failed(Timeout)".into(), "no reply in time".into())
        );
        assert!(speaks_of_connection(&d[2].2));
        assert!(!speaks_of_connection(&d[1].2));
    }
}
