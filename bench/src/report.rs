//! The markdown report: medians over rounds, ours as ratios to the baseline
//! and to each peer, the targets of the issue checked, and every raw value.

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
const REFS: [Impl; 3] = [Impl::Baseline, Impl::Rslock, Impl::Redlock];

/// How the run went, for the report's header.
#[derive(Debug)]
pub(crate) struct RunInfo {
    pub(crate) duration: Duration,
    pub(crate) rounds: usize,
    pub(crate) wall: Duration,
    /// Load averages before and after (the machine may be shared).
    pub(crate) load: String,
}

/// Renders the whole report.
pub(crate) fn render(
    results: &Results,
    impls: &[Impl],
    nodes: &[usize],
    workloads: &[Workload],
    info: &RunInfo,
) -> String {
    let RunInfo {
        duration,
        rounds,
        wall,
        load,
    } = info;
    let ours: Vec<Impl> = OURS.into_iter().filter(|i| impls.contains(i)).collect();
    let refs: Vec<Impl> = REFS.into_iter().filter(|i| impls.contains(i)).collect();
    let mut columns: Vec<Impl> = impls.to_vec();
    columns.sort();
    let mut s = String::new();
    let _ = writeln!(s, "# redlock benchmark results\n");
    let _ = writeln!(
        s,
        "One run of `bench/run.sh`: {rounds} round(s) x {:.1} s per measurement, implementations \
         interleaved in each round (rotated order); every figure is the median over rounds. \
         {} CPU(s); redis-server nodes on loopback started by the bench; TTL 10 s; one attempt \
         per cycle (contention: the workload retries after a 0.5-1.5 ms pause, identically for \
         everyone). Wall time {:.0} s; load average {load}.\n",
        duration.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        wall.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "Ratios are ours / theirs: for latency (µs) lower is better, for rates higher is better. \
         `std` = redlock-std (blocking, OS threads), `tokio` = redlock-tokio (tasks on a \
         multi-thread runtime); `baseline` = the minimal raw client of `bench/src/baseline.rs`; \
         `rslock` 0.10 and `redlock` 2.0 from crates.io.\n"
    );

    // The main table.
    let mut header = String::from("| workload | N | metric |");
    let mut rule = String::from("|---|---|---|");
    for c in &columns {
        let _ = write!(header, " {} |", c.name());
        rule.push_str("---:|");
    }
    for r in &refs {
        for o in &ours {
            let _ = write!(header, " {} / {} |", o.name(), r.name());
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for &w in workloads {
        let metrics: &[Metric] = match w {
            Workload::Sequential => &[
                Metric::P50,
                Metric::P99,
                Metric::Rate,
                Metric::Cpu,
                Metric::Switches,
            ],
            _ => &[Metric::Rate],
        };
        for &n in nodes {
            for &metric in metrics {
                let mut row = format!("| {} | {n} | {} |", w.label(), metric.label(w));
                for &c in &columns {
                    let _ = write!(row, " {} |", fmt_value(med(results, w, n, c, metric)));
                }
                for &r in &refs {
                    for &o in &ours {
                        let ratio = med(results, w, n, o, metric) / med(results, w, n, r, metric);
                        let _ = write!(row, " {} |", fmt_ratio(ratio));
                    }
                }
                let _ = writeln!(s, "{row}");
            }
        }
    }

    // Safety and failures.
    let _ = writeln!(s, "\n## Overlaps and failures (sums over rounds)\n");
    let _ = writeln!(
        s,
        "Overlaps: a client entered the critical section while another was inside (checked \
         with a shared in-process atomic). Must be 0.\n"
    );
    let _ = writeln!(
        s,
        "| workload | N | implementation | cycles | overlaps | failures | first failure |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---|");
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
                i.name()
            );
        }
    }

    // Targets.
    let _ = writeln!(s, "\n## Targets\n");
    let _ = writeln!(s, "| target | implementation | measured | met? |");
    let _ = writeln!(s, "|---|---|---:|---|");
    let mut target = |name: &str, o: Impl, value: f64, ok: bool, failures: u64| {
        let verdict = if !value.is_finite() {
            "not measured"
        } else if ok && failures == 0 {
            "met"
        } else {
            "MISSED"
        };
        let failed = if failures > 0 {
            format!(" ({failures} failed cycles)")
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {}{failed} | {verdict} |",
            o.name(),
            fmt_ratio(value)
        );
    };
    let failures = |w: Workload, n: usize, i: Impl| -> u64 {
        results
            .get(&(w, n, i))
            .map_or(0, |ms| ms.iter().map(|m| m.failures).sum())
    };
    let seq = Workload::Sequential;
    let c16 = Workload::Concurrent(16);
    let c256 = Workload::Concurrent(256);
    for &o in &ours {
        let r = med(results, seq, 5, o, Metric::P50)
            / med(results, seq, 5, Impl::Baseline, Metric::P50);
        target(
            "N=5 sequential p50 <= 1.1x baseline",
            o,
            r,
            r <= 1.1,
            failures(seq, 5, o),
        );
        let r =
            med(results, seq, 5, o, Metric::P50) / med(results, seq, 5, Impl::Rslock, Metric::P50);
        target(
            "N=5 sequential p50 <= 0.6x rslock",
            o,
            r,
            r <= 0.6,
            failures(seq, 5, o),
        );
        let r = med(results, seq, 5, o, Metric::P99)
            / med(results, seq, 5, Impl::Baseline, Metric::P99);
        target(
            "N=5 sequential p99 <= 1.3x baseline",
            o,
            r,
            r <= 1.3,
            failures(seq, 5, o),
        );
        for &n in nodes {
            let r = med(results, c16, n, o, Metric::Rate)
                / med(results, c16, n, Impl::Rslock, Metric::Rate);
            target(
                &format!("N={n} 16 concurrent >= 1.5x rslock"),
                o,
                r,
                r >= 1.5,
                failures(c16, n, o),
            );
        }
        for &n in nodes {
            let r = med(results, c256, n, o, Metric::Rate) / med(results, c16, n, o, Metric::Rate);
            target(
                &format!("N={n} no collapse: 256 / 16 concurrent >= 0.8"),
                o,
                r,
                r >= 0.8,
                failures(c16, n, o) + failures(c256, n, o),
            );
        }
    }

    // Raw values.
    let _ = writeln!(
        s,
        "\n<details><summary>Every measurement (per round)</summary>\n"
    );
    let _ = writeln!(s, "| workload | N | implementation | rate/s per round | p50 µs per round | p99 µs per round |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (&(w, n, i), ms) in results {
        let list = |f: &dyn Fn(&Measurement) -> f64| {
            ms.iter()
                .map(|m| fmt_value(f(m)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {n} | {} | {} | {} | {} |",
            w.label(),
            i.name(),
            list(&|m| m.rate),
            list(&|m| m.p50_us),
            list(&|m| m.p99_us)
        );
    }
    let _ = writeln!(s, "\n</details>");
    s
}
