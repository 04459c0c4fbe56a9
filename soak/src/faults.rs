//! The faults: a plan drawn from the seed before the run (so a seed replays
//! the same faults), and the thread that carries it out on the real
//! `redis-server` processes of the harness.
//!
//! Faults: `kill -9` of one node and its restart (with its AOF, as written
//! with `appendfsync always`), SIGSTOP/SIGCONT of one node, and two nodes
//! killed at once and restarted. Never more than `max_down` nodes are down
//! at once: the plan keeps to it with a margin for restarts, and the
//! executor checks it again against the nodes' real state before every
//! fault (postponing one that would break it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redlock_tests::Cluster;

use crate::timeline::{Clock, Timeline};
use crate::watch;

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// SIGKILL one node, restart it after `lasts`.
    Kill(usize),
    /// SIGSTOP one node, SIGCONT after `lasts`.
    Pause(usize),
    /// SIGKILL two nodes at once, restart both after `lasts`.
    KillTwo(usize, usize),
}

impl FaultKind {
    fn nodes(self) -> Vec<usize> {
        match self {
            FaultKind::Kill(n) | FaultKind::Pause(n) => vec![n],
            FaultKind::KillTwo(a, b) => vec![a, b],
        }
    }
}

/// One planned fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    /// When it starts, from the start of the load.
    pub(crate) at: Duration,
    pub(crate) kind: FaultKind,
    /// How long the nodes stay down.
    pub(crate) lasts: Duration,
}

/// Room left in the plan for a restart to complete after its planned time.
const RESTART_MARGIN: Duration = Duration::from_millis(300);
/// A node just back is not faulted again for this long (its clients
/// reconnect meanwhile).
const SETTLE: Duration = Duration::from_millis(700);

/// The faults for a run of `run` over `nodes` nodes, at most `max_down`
/// down at once, from `seed`. The first starts after 2 s of fault-free load;
/// every node is back 2 s before the end.
pub(crate) fn plan(seed: u64, nodes: usize, max_down: usize, run: Duration) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xFA17_FA17_FA17_FA17);
    let tail = Duration::from_secs(2);
    let mut down_until = vec![Duration::ZERO; nodes];
    let mut t = Duration::from_secs(2);
    let mut faults = Vec::new();
    let ms = |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..=hi));
    loop {
        t += ms(&mut rng, 400, 2_000);
        if t + tail >= run {
            break;
        }
        let roll = rng.random_range(0..100);
        let (two, pause, lasts) = match roll {
            0..40 => (false, false, ms(&mut rng, 100, 1_500)),
            40..80 => (false, true, ms(&mut rng, 200, 2_500)),
            _ => (true, false, ms(&mut rng, 200, 1_200)),
        };
        if t + lasts + RESTART_MARGIN + tail > run {
            continue;
        }
        let down_now = down_until.iter().filter(|&&u| u > t).count();
        let mut free: Vec<usize> = (0..nodes)
            .filter(|&i| down_until[i] + SETTLE <= t)
            .collect();
        let k = if two { 2 } else { 1 };
        if down_now + k > max_down || free.len() < k {
            continue;
        }
        let a = free.swap_remove(rng.random_range(0..free.len()));
        let kind = if two {
            let b = free.swap_remove(rng.random_range(0..free.len()));
            FaultKind::KillTwo(a.min(b), a.max(b))
        } else if pause {
            FaultKind::Pause(a)
        } else {
            FaultKind::Kill(a)
        };
        for n in kind.nodes() {
            down_until[n] = t + lasts + RESTART_MARGIN;
        }
        faults.push(Fault { at: t, kind, lasts });
    }
    faults
}

/// What the fault thread did. The details (every fault, restart, resume
/// and what the watchers saw) go to the log as they happen.
#[derive(Debug, Default)]
pub(crate) struct FaultReport {
    /// Faults carried out.
    pub(crate) faults: usize,
    /// Faults that started over 40 ms late to keep the down limit.
    pub(crate) postponed: usize,
    /// Most nodes down at once, as carried out.
    pub(crate) max_down_seen: u32,
}

impl FaultKind {
    /// Name and nodes, for the log: `kill\t3`, `kill2\t1,4`, `pause\t0`.
    fn log_fields(self) -> String {
        match self {
            FaultKind::Kill(n) => format!("kill\t{n}"),
            FaultKind::Pause(n) => format!("pause\t{n}"),
            FaultKind::KillTwo(a, b) => format!("kill2\t{a},{b}"),
        }
    }
}

/// What the fault thread needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    pub(crate) clock: Clock,
    pub(crate) timeline: Arc<Timeline>,
    /// ns (on `clock`) at which the plan's time 0 is.
    pub(crate) start: u64,
    pub(crate) max_down: usize,
    /// ACL users of the clients, by transport name.
    pub(crate) users: Vec<(&'static str, String)>,
    pub(crate) resources: Vec<String>,
    pub(crate) ttl: Duration,
    /// The run's log.
    pub(crate) log: SyncSender<String>,
}

impl Env {
    pub(crate) fn line(&self, line: String) {
        let _ = self.log.send(line);
    }
}

enum Action {
    Restart(usize),
    Resume(usize),
}

/// Carries out `plan` until `stop`, then brings every node back and waits
/// for the watchers; returns the cluster and the report.
pub(crate) fn run(
    mut cluster: Cluster,
    plan: Vec<Fault>,
    env: Env,
    stop: Arc<AtomicBool>,
) -> (Cluster, FaultReport) {
    let mut report = FaultReport::default();
    let (jobs, watcher) = {
        let (tx, rx) = std::sync::mpsc::channel();
        let env = env.clone();
        let thread = std::thread::Builder::new()
            .name("soak-watch".into())
            .spawn(move || watch::watcher(&env, &rx))
            .expect("spawn the watcher thread");
        (tx, thread)
    };
    let mut pending: Vec<(u64, Action)> = Vec::new();
    let mut next = 0;
    let mut next_at: Option<u64> = plan.first().map(|f| env.start + nanos(f.at));
    let clock = env.clock;
    while !stop.load(Ordering::SeqCst) {
        let now = clock.now();
        // Due actions first (bringing nodes back).
        if let Some(i) = (0..pending.len()).min_by_key(|&i| pending[i].0) {
            if pending[i].0 <= now {
                let (_, action) = pending.swap_remove(i);
                perform(&mut cluster, action, &env, &jobs);
                continue;
            }
        }
        if let (Some(at), Some(fault)) = (next_at, plan.get(next)) {
            if at <= now {
                let nodes = fault.kind.nodes();
                let down = env.timeline.mask().count_ones() as usize;
                let all_up = nodes.iter().all(|&n| !env.timeline.is_down(n));
                if down + nodes.len() > env.max_down || !all_up {
                    // Would break the limit (a restart ran late): wait.
                    next_at = Some(now + 50_000_000);
                    continue;
                }
                let planned = env.start + nanos(fault.at);
                let down_at = start(&mut cluster, fault.kind, &env);
                report.max_down_seen = report.max_down_seen.max(env.timeline.mask().count_ones());
                report.faults += 1;
                let late = down_at.saturating_sub(planned);
                if late > 40_000_000 {
                    report.postponed += 1;
                }
                env.line(format!("F\t{}\t{down_at}\t{late}", fault.kind.log_fields()));
                let back = clock.now() + nanos(fault.lasts);
                for n in nodes {
                    let action = match fault.kind {
                        FaultKind::Pause(_) => Action::Resume(n),
                        _ => Action::Restart(n),
                    };
                    pending.push((back, action));
                }
                next += 1;
                next_at = plan.get(next).map(|f| env.start + nanos(f.at));
                continue;
            }
        }
        let wake = pending
            .iter()
            .map(|p| p.0)
            .chain(next_at)
            .min()
            .unwrap_or(now + 100_000_000);
        let nap = wake.saturating_sub(now).min(20_000_000);
        std::thread::sleep(Duration::from_nanos(nap.max(200_000)));
    }
    // Heal: every node back now, in the order they went down.
    pending.sort_by_key(|p| p.0);
    for (_, action) in pending {
        perform(&mut cluster, action, &env, &jobs);
    }
    drop(jobs);
    if watcher.join().is_err() {
        eprintln!("soak: the watcher thread panicked");
    }
    (cluster, report)
}

fn start(cluster: &mut Cluster, kind: FaultKind, env: &Env) -> u64 {
    match kind {
        FaultKind::Kill(n) => {
            let t = env.timeline.set(n, true);
            cluster.nodes[n].kill();
            t
        }
        FaultKind::Pause(n) => {
            let t = env.timeline.set(n, true);
            cluster.nodes[n].pause();
            t
        }
        FaultKind::KillTwo(a, b) => {
            let t = env.timeline.set(a, true);
            env.timeline.set(b, true);
            cluster.nodes[a].kill();
            cluster.nodes[b].kill();
            t
        }
    }
}

fn perform(cluster: &mut Cluster, action: Action, env: &Env, jobs: &Sender<watch::Job>) {
    let clock = env.clock;
    match action {
        Action::Restart(n) => {
            let spawn = clock.now();
            cluster.nodes[n].restart();
            let ready = env.timeline.set(n, false);
            env.line(format!("U\t{n}\t{spawn}\t{ready}"));
            let port = cluster.nodes[n].port();
            let _ = jobs.send(watch::Job::Restarted {
                port,
                node: n,
                spawn,
                ready,
            });
        }
        Action::Resume(n) => {
            cluster.nodes[n].resume();
            let resumed = env.timeline.set(n, false);
            env.line(format!("C\t{n}\t{resumed}"));
            let port = cluster.nodes[n].port();
            let _ = jobs.send(watch::Job::Resumed {
                port,
                node: n,
                resumed,
            });
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_plan() {
        let run = Duration::from_secs(180);
        assert_eq!(plan(7, 5, 2, run), plan(7, 5, 2, run));
        assert_ne!(plan(7, 5, 2, run), plan(8, 5, 2, run));
    }

    /// The plan never has more than `max_down` nodes down, never faults a
    /// node that is still down, ends 2 s before the run, and has every
    /// kind of fault.
    #[test]
    fn plans_keep_to_the_limit() {
        let run = Duration::from_secs(180);
        for seed in 0..200 {
            let p = plan(seed, 5, 2, run);
            assert!(p.len() > 40, "seed {seed}: only {} faults", p.len());
            for kind in [0, 1, 2] {
                assert!(p.iter().any(|f| matches!(
                    (kind, f.kind),
                    (0, FaultKind::Kill(_))
                        | (1, FaultKind::Pause(_))
                        | (2, FaultKind::KillTwo(..))
                )));
            }
            // Sweep every instant a fault starts.
            for f in &p {
                let t = f.at;
                let down: usize = p
                    .iter()
                    .filter(|g| g.at <= t && t < g.at + g.lasts + RESTART_MARGIN)
                    .map(|g| g.kind.nodes().len())
                    .sum();
                assert!(down <= 2, "seed {seed}: {down} down at {t:?}");
                assert!(f.at + f.lasts + RESTART_MARGIN + Duration::from_secs(2) <= run);
                for g in &p {
                    if g.at < f.at && f.at < g.at + g.lasts + RESTART_MARGIN {
                        for n in f.kind.nodes() {
                            assert!(!g.kind.nodes().contains(&n), "seed {seed}: node {n} twice");
                        }
                    }
                }
            }
        }
    }
}
