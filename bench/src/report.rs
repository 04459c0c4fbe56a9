//! The markdown report: medians over rounds; a README-ready summary with
//! ours as ratios to the quorum-for-both minimal client, the lockstep
//! minimal client and node-redlock; the targets checked (MET /
//! MISSED, with the figures that tell what limits a missed one); every
//! ratio to every reference; and every raw value.

use std::fmt::Write as _;
use std::time::Duration;

use crate::clients::Impl;
use crate::workload::{Measurement, Workload};
use crate::Results;

/// A figure of one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    P50,
    P99,
    Rate,
    Cpu,
    Switches,
}

impl Metric {
    fn get(self, m: &Measurement) -> f64 {
        match self {
            Metric::P50 => m.p50_us,
            Metric::P99 => m.p99_us,
            Metric::Rate => m.rate,
            Metric::Cpu => m.cpu_us,
            Metric::Switches => m.switches,
        }
    }
    fn label(self, w: Workload) -> &'static str {
        match (self, w) {
            (Metric::P50, _) => "p50 µs",
            (Metric::P99, _) => "p99 µs",
            (Metric::Rate, Workload::Contention(_)) => "acq/s",
            (Metric::Rate, _) => "cycles/s",
            (Metric::Cpu, _) => "client CPU µs/cycle",
            (Metric::Switches, _) => "context switches/cycle",
        }
    }
    /// The metrics each workload reports.
    fn of(w: Workload) -> &'static [Metric] {
        match w {
            Workload::Sequential => &[
                Metric::P50,
                Metric::P99,
                Metric::Rate,
                Metric::Cpu,
                Metric::Switches,
            ],
            Workload::Concurrent(_) => &[Metric::Rate, Metric::Cpu, Metric::Switches],
            Workload::Contention(_) => &[Metric::Rate],
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn med(results: &Results, w: Workload, n: usize, i: Impl, metric: Metric) -> f64 {
    results
        .get(&(w, n, i))
        .map(|ms| median(ms.iter().map(|m| metric.get(m)).collect()))
        .unwrap_or(f64::NAN)
}

fn fmt_value(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn fmt_ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}x")
    } else {
        "n/a".into()
    }
}

const OURS: [Impl; 2] = [Impl::Std, Impl::Tokio];
/// The references of the full ratio table, in order.
const REFS: [Impl; 6] = [
    Impl::QuorumMin,
    Impl::LockstepMin,
    Impl::NodeRedlock,
    Impl::Rslock,
    Impl::Baseline,
    Impl::RedlockRs,
];
/// The references of the README table.
const SUMMARY_REFS: [Impl; 3] = [Impl::QuorumMin, Impl::LockstepMin, Impl::NodeRedlock];
/// The value columns of the README table.
const SUMMARY_VALUES: [Impl; 6] = [
    Impl::QuorumMin,
    Impl::LockstepMin,
    Impl::NodeRedlock,
    Impl::Rslock,
    Impl::Std,
    Impl::Tokio,
];

/// How the run went, for the report's header.
#[derive(Debug)]
pub(crate) struct RunInfo {
    pub(crate) duration: Duration,
    pub(crate) rounds: usize,
    pub(crate) wall: Duration,
    /// Load averages before and after (the machine may be shared).
    pub(crate) load: String,
    /// Which CPUs the clients and the servers were allowed on.
    pub(crate) cpus: String,
}

/// The rendered report: the whole of it, and the README-ready part.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) full: String,
    pub(crate) summary: String,
}

/// Renders the report.
pub(crate) fn render(
    results: &Results,
    impls: &[Impl],
    nodes: &[usize],
    workloads: &[Workload],
    info: &RunInfo,
) -> Report {
    let mut columns: Vec<Impl> = impls.to_vec();
    columns.sort();
    columns.dedup();
    let ours: Vec<Impl> = OURS.into_iter().filter(|i| impls.contains(i)).collect();

    let header = header(info, &columns);
    let summary_table = summary(results, impls, nodes, workloads, &ours);
    let targets = targets(results, impls, nodes, workloads, &ours);

    let mut summary_md = String::new();
    let _ = writeln!(summary_md, "{}", info_line(info));
    let _ = writeln!(summary_md, "{summary_table}\n{targets}");

    let mut s = String::new();
    let _ = writeln!(s, "# redlock benchmark results\n");
    let _ = writeln!(s, "{header}");
    let _ = writeln!(s, "## Summary (README table)\n");
    let _ = writeln!(s, "{summary_table}");
    let _ = writeln!(s, "## Targets of issue 12\n");
    let _ = writeln!(s, "{targets}");
    let _ = writeln!(s, "## Every figure (medians over rounds)\n");
    let _ = writeln!(s, "{}", values(results, nodes, workloads, &columns));
    let _ = writeln!(s, "## Ours ÷ every reference\n");
    let _ = writeln!(s, "{}", ratios(results, impls, nodes, workloads, &ours));
    let _ = writeln!(s, "## Overlaps and failures (sums over rounds)\n");
    let _ = writeln!(s, "{}", safety(results));
    let _ = writeln!(s, "{}", raw(results));
    Report {
        full: s,
        summary: summary_md,
    }
}

fn info_line(info: &RunInfo) -> String {
    format!(
        "{} round(s) x {:.1} s per measurement, implementations interleaved in each round \
         (rotated order), medians over rounds; {}; load average {}.\n",
        info.rounds,
        info.duration.as_secs_f64(),
        info.cpus,
        info.load
    )
}

fn header(info: &RunInfo, columns: &[Impl]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "One run of `bench/run.sh`: {} round(s) x {:.1} s per measurement, implementations \
         interleaved in each round (rotated order); every figure is the median over rounds. \
         {} CPU(s); {}. redis-server nodes on loopback started by the bench; TTL 10 s; one \
         attempt per cycle (contention: the workload retries after a 0.5-1.5 ms pause, \
         identically for everyone). Wall time {:.0} s; load average {}.\n",
        info.rounds,
        info.duration.as_secs_f64(),
        crate::machine_cpus(),
        info.cpus,
        info.wall.as_secs_f64(),
        info.load
    );
    let _ = writeln!(
        s,
        "Each library with its defaults and one shared client, as a new user would. Ratios \
         are ours ÷ theirs: for latency (µs), CPU and switches lower is better, for rates \
         higher is better.\n"
    );
    let _ = writeln!(s, "| name | what |\n|---|---|");
    for c in columns {
        let _ = writeln!(s, "| {} | {} |", c.heading(), c.describe());
    }
    s
}

/// The rows of the README table: latency at every N, throughput and
/// contention rates.
fn summary_rows(nodes: &[usize], workloads: &[Workload]) -> Vec<(Workload, usize, Metric)> {
    let mut rows = Vec::new();
    for &w in workloads {
        let metrics: &[Metric] = match w {
            Workload::Sequential => &[Metric::P50, Metric::P99],
            _ => &[Metric::Rate],
        };
        for &n in nodes {
            for &m in metrics {
                rows.push((w, n, m));
            }
        }
    }
    rows
}

fn summary(
    results: &Results,
    impls: &[Impl],
    nodes: &[usize],
    workloads: &[Workload],
    ours: &[Impl],
) -> String {
    let values: Vec<Impl> = SUMMARY_VALUES
        .into_iter()
        .filter(|i| impls.contains(i))
        .collect();
    let refs: Vec<Impl> = SUMMARY_REFS
        .into_iter()
        .filter(|i| impls.contains(i))
        .collect();
    let mut s = String::new();
    let mut head = String::from("| workload | N | metric |");
    let mut rule = String::from("|---|---:|---|");
    for v in &values {
        let _ = write!(head, " {} |", v.heading());
        rule.push_str("---:|");
    }
    for r in &refs {
        for o in ours {
            let _ = write!(head, " {} ÷ {} |", o.name(), r.name());
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for (w, n, metric) in summary_rows(nodes, workloads) {
        let mut row = format!("| {} | {n} | {} |", w.label(), metric.label(w));
        for &v in &values {
            let _ = write!(row, " {} |", fmt_value(med(results, w, n, v, metric)));
        }
        for &r in &refs {
            for &o in ours {
                let ratio = med(results, w, n, o, metric) / med(results, w, n, r, metric);
                let _ = write!(row, " {} |", fmt_ratio(ratio));
            }
        }
        let _ = writeln!(s, "{row}");
    }
    s
}

/// One target's row.
struct Target {
    name: String,
    who: Impl,
    measured: f64,
    bound: String,
    met: bool,
    failures: u64,
    limits: String,
}

fn targets(
    results: &Results,
    impls: &[Impl],
    nodes: &[usize],
    workloads: &[Workload],
    ours: &[Impl],
) -> String {
    let failures = |w: Workload, n: usize, i: Impl| -> u64 {
        results
            .get(&(w, n, i))
            .map_or(0, |ms| ms.iter().map(|m| m.failures).sum())
    };
    let m = |w, n, i, metric| med(results, w, n, i, metric);
    let mut rows: Vec<Target> = Vec::new();
    let seq = Workload::Sequential;
    let has = |w: Workload| workloads.contains(&w);
    for &o in ours {
        if has(seq) {
            for &n in nodes {
                let cost = |i: Impl| {
                    format!(
                        "{}: {} CPU µs, {} switches per cycle",
                        i.name(),
                        fmt_value(m(seq, n, i, Metric::Cpu)),
                        fmt_value(m(seq, n, i, Metric::Switches))
                    )
                };
                let limits = format!("{}; {}", cost(o), cost(Impl::QuorumMin));
                if impls.contains(&Impl::QuorumMin) {
                    let r = m(seq, n, o, Metric::P50) / m(seq, n, Impl::QuorumMin, Metric::P50);
                    rows.push(Target {
                        name: format!("N={n} sequential p50 ≤ 1.05x quorum-min"),
                        who: o,
                        measured: r,
                        bound: "≤ 1.05x".into(),
                        met: r <= 1.05,
                        failures: failures(seq, n, o),
                        limits: limits.clone(),
                    });
                }
                if impls.contains(&Impl::NodeRedlock) {
                    let r = m(seq, n, o, Metric::P50) / m(seq, n, Impl::NodeRedlock, Metric::P50);
                    rows.push(Target {
                        name: format!("N={n} sequential p50 below node-redlock's"),
                        who: o,
                        measured: r,
                        bound: "< 1.00x".into(),
                        met: r < 1.0,
                        failures: failures(seq, n, o),
                        limits: format!("{}; {}", cost(o), cost(Impl::NodeRedlock)),
                    });
                }
                if impls.contains(&Impl::QuorumMin) {
                    let r = m(seq, n, o, Metric::P99) / m(seq, n, Impl::QuorumMin, Metric::P99);
                    rows.push(Target {
                        name: format!("N={n} sequential p99 ≤ 1.2x quorum-min"),
                        who: o,
                        measured: r,
                        bound: "≤ 1.20x".into(),
                        met: r <= 1.2,
                        failures: failures(seq, n, o),
                        limits,
                    });
                }
            }
        }
        for &n in nodes {
            for k in [16, 256] {
                let w = Workload::Concurrent(k);
                if !has(w) {
                    continue;
                }
                let busy = |i: Impl| {
                    let cpu = m(w, n, i, Metric::Cpu);
                    let rate = m(w, n, i, Metric::Rate);
                    format!(
                        "{}: {} CPU µs/cycle ({:.0} % of one CPU busy)",
                        i.name(),
                        fmt_value(cpu),
                        cpu * rate / 1e4
                    )
                };
                for (reference, factor) in [(Impl::Rslock, 1.5), (Impl::LockstepMin, 0.9)] {
                    if !impls.contains(&reference) {
                        continue;
                    }
                    let r = m(w, n, o, Metric::Rate) / m(w, n, reference, Metric::Rate);
                    rows.push(Target {
                        name: format!("N={n} {k} concurrent ≥ {factor}x {}", reference.name()),
                        who: o,
                        measured: r,
                        bound: format!("≥ {factor:.2}x"),
                        met: r >= factor,
                        failures: failures(w, n, o),
                        limits: format!("{}; {}", busy(o), busy(reference)),
                    });
                }
            }
            let (c16, c256) = (Workload::Concurrent(16), Workload::Concurrent(256));
            if has(c16) && has(c256) {
                let r = m(c256, n, o, Metric::Rate) / m(c16, n, o, Metric::Rate);
                let busy = |w: Workload| {
                    let cpu = m(w, n, o, Metric::Cpu);
                    format!(
                        "{}: {} CPU µs/cycle ({:.0} % busy)",
                        w.label(),
                        fmt_value(cpu),
                        cpu * m(w, n, o, Metric::Rate) / 1e4
                    )
                };
                rows.push(Target {
                    name: format!("N={n} 256 concurrent ≥ 1.5x the 16 figure"),
                    who: o,
                    measured: r,
                    bound: "≥ 1.50x".into(),
                    met: r >= 1.5,
                    failures: failures(c16, n, o) + failures(c256, n, o),
                    limits: format!("{}; {}", busy(c16), busy(c256)),
                });
            }
        }
    }
    // Safety: no overlap, for everyone.
    for (&(w, n, i), ms) in results {
        if let Workload::Contention(c) = w {
            let overlaps: u64 = ms.iter().map(|m| m.overlaps).sum();
            rows.push(Target {
                name: format!("N={n} contention {c}: 0 overlaps"),
                who: i,
                measured: overlaps as f64,
                bound: "= 0".into(),
                met: overlaps == 0 && ms.iter().all(|m| m.cycles > 0),
                failures: 0,
                limits: format!("{} acquisitions", ms.iter().map(|m| m.cycles).sum::<u64>()),
            });
        }
    }

    let mut s = String::new();
    let met = rows
        .iter()
        .filter(|t| t.measured.is_finite() && t.met && t.failures == 0)
        .count();
    let _ = writeln!(
        s,
        "{met} of {} targets MET. A target compares medians from this run only; a \
         \"what limits it\" entry gives the client-side cost behind the figure.\n",
        rows.len()
    );
    let _ = writeln!(
        s,
        "| target | implementation | measured | bound | result | what limits it |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---|---|");
    for t in rows {
        let verdict = if !t.measured.is_finite() {
            "not measured"
        } else if t.met && t.failures == 0 {
            "MET"
        } else {
            "MISSED"
        };
        let measured = if t.bound == "= 0" {
            format!("{}", t.measured)
        } else {
            fmt_ratio(t.measured)
        };
        let failed = if t.failures > 0 {
            format!(" ({} failed cycles)", t.failures)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {measured}{failed} | {} | {verdict} | {} |",
            t.name,
            t.who.name(),
            t.bound,
            t.limits
        );
    }
    s
}

fn values(results: &Results, nodes: &[usize], workloads: &[Workload], columns: &[Impl]) -> String {
    let mut s = String::new();
    let mut head = String::from("| workload | N | metric |");
    let mut rule = String::from("|---|---:|---|");
    for c in columns {
        let _ = write!(head, " {} |", c.heading());
        rule.push_str("---:|");
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for &w in workloads {
        for &n in nodes {
            for &metric in Metric::of(w) {
                let mut row = format!("| {} | {n} | {} |", w.label(), metric.label(w));
                for &c in columns {
                    let _ = write!(row, " {} |", fmt_value(med(results, w, n, c, metric)));
                }
                let _ = writeln!(s, "{row}");
            }
        }
    }
    s
}

fn ratios(
    results: &Results,
    impls: &[Impl],
    nodes: &[usize],
    workloads: &[Workload],
    ours: &[Impl],
) -> String {
    let refs: Vec<Impl> = REFS.into_iter().filter(|i| impls.contains(i)).collect();
    let mut s = String::new();
    let mut head = String::from("| workload | N | metric |");
    let mut rule = String::from("|---|---:|---|");
    for r in &refs {
        for o in ours {
            let _ = write!(head, " {} ÷ {} |", o.name(), r.name());
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(s, "{head}\n{rule}");
    for &w in workloads {
        for &n in nodes {
            for &metric in Metric::of(w) {
                let mut row = format!("| {} | {n} | {} |", w.label(), metric.label(w));
                for &r in &refs {
                    for &o in ours {
                        let ratio = med(results, w, n, o, metric) / med(results, w, n, r, metric);
                        let _ = write!(row, " {} |", fmt_ratio(ratio));
                    }
                }
                let _ = writeln!(s, "{row}");
            }
        }
    }
    s
}

fn safety(results: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Overlaps: a client entered the critical section while another was inside (checked \
         with a shared in-process counter). Must be 0.\n"
    );
    let _ = writeln!(
        s,
        "| workload | N | implementation | cycles | overlaps | failures | first failure |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---:|---:|---|");
    for (&(w, n, i), ms) in results {
        let overlaps: u64 = ms.iter().map(|m| m.overlaps).sum();
        let failures: u64 = ms.iter().map(|m| m.failures).sum();
        let cycles: u64 = ms.iter().map(|m| m.cycles).sum();
        if matches!(w, Workload::Contention(_)) || overlaps > 0 || failures > 0 {
            let first = ms
                .iter()
                .find_map(|m| m.first_error.clone())
                .unwrap_or_default()
                .replace('|', "/");
            let _ = writeln!(
                s,
                "| {} | {n} | {} | {cycles} | {overlaps} | {failures} | {first} |",
                w.label(),
                i.heading()
            );
        }
    }
    s
}

fn raw(results: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<details><summary>Every measurement (per round)</summary>\n"
    );
    let _ = writeln!(
        s,
        "| workload | N | implementation | rate/s per round | p50 µs per round | p99 µs per round | CPU µs/cycle per round |"
    );
    let _ = writeln!(s, "|---|---:|---|---|---|---|---|");
    for (&(w, n, i), ms) in results {
        let list = |f: &dyn Fn(&Measurement) -> f64| {
            ms.iter()
                .map(|m| fmt_value(f(m)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {n} | {} | {} | {} | {} | {} |",
            w.label(),
            i.heading(),
            list(&|m| m.rate),
            list(&|m| m.p50_us),
            list(&|m| m.p99_us),
            list(&|m| m.cpu_us)
        );
    }
    let _ = writeln!(s, "\n</details>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(rate: f64, p50: f64, p99: f64) -> Measurement {
        Measurement {
            rate,
            p50_us: p50,
            p99_us: p99,
            cpu_us: 10.0,
            switches: 2.0,
            cycles: 100,
            ..Measurement::default()
        }
    }

    #[test]
    fn median_ignores_missing_values() {
        assert_eq!(median(vec![3.0, f64::NAN, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        assert!(median(vec![f64::NAN]).is_nan());
    }

    #[test]
    fn targets_say_met_and_missed() {
        let mut results = Results::new();
        let seq = Workload::Sequential;
        results.insert(
            (seq, 5, Impl::QuorumMin),
            vec![measurement(1.0, 100.0, 200.0)],
        );
        results.insert(
            (seq, 5, Impl::NodeRedlock),
            vec![measurement(1.0, 140.0, 900.0)],
        );
        // std: p50 1.04x (met), below node (met), p99 1.25x (missed).
        results.insert((seq, 5, Impl::Std), vec![measurement(1.0, 104.0, 250.0)]);
        let impls = [Impl::QuorumMin, Impl::NodeRedlock, Impl::Std];
        let t = targets(&results, &impls, &[5], &[seq], &[Impl::Std]);
        let line = |needle: &str| {
            t.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in {t}"))
                .to_owned()
        };
        assert!(line("p50 ≤ 1.05x").contains("| MET |"), "{t}");
        assert!(line("below node-redlock").contains("| MET |"), "{t}");
        assert!(line("p99 ≤ 1.2x").contains("| MISSED |"), "{t}");
        assert!(t.starts_with("2 of 3 targets MET"), "{t}");
    }

    #[test]
    fn overlaps_are_a_missed_target() {
        let mut results = Results::new();
        let k8 = Workload::Contention(8);
        let mut m = measurement(1.0, f64::NAN, f64::NAN);
        m.overlaps = 1;
        results.insert((k8, 3, Impl::Tokio), vec![m]);
        let t = targets(&results, &[Impl::Tokio], &[3], &[k8], &[Impl::Tokio]);
        assert!(
            t.lines()
                .any(|l| l.contains("0 overlaps") && l.contains("MISSED")),
            "{t}"
        );
    }
}
