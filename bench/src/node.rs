//! node-redlock: runs one measurement in `node node/driver.js` (npm
//! `redlock` v5 over `ioredis`, installed by `run.sh` with `npm ci` from the
//! committed `node/package-lock.json`) and reads back the one JSON line it
//! prints: the same figures as the Rust implementations' [`Measurement`].
//!
//! The child inherits this process's CPU affinity (run.sh pins the bench to
//! the clients' CPU). Its run is bounded: a driver that has not finished
//! within the measurement's duration plus [`GRACE`] is killed and the
//! measurement reported as failed.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::clients::TTL;
use crate::workload::{Measurement, Plan, Workload};

/// Start-up (node, module loading, connections, warm-up) and shut-down
/// allowance on top of the measurement's duration.
pub(crate) const GRACE: Duration = Duration::from_secs(30);

fn workload_arg(w: Workload) -> String {
    match w {
        Workload::Sequential => "seq".into(),
        Workload::Concurrent(k) => format!("c{k}"),
        Workload::Contention(c) => format!("k{c}"),
    }
}

/// Runs the driver at `driver` for one measurement.
pub(crate) fn run(
    driver: &Path,
    workload: Workload,
    urls: &[String],
    plan: &Plan,
) -> Result<Measurement, String> {
    let mut child = Command::new("node")
        .arg(driver)
        .args(["--workload", &workload_arg(workload)])
        .args(["--duration", &plan.duration.as_secs_f64().to_string()])
        .args(["--prefix", &plan.prefix])
        .args(["--ttl-ms", &TTL.as_millis().to_string()])
        .args(urls)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `node {}`: {e}", driver.display()))?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    // The driver closes its stdout when it exits: wait for that, bounded.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        let _ = done.send(s);
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let out = match finished.recv_timeout(plan.duration + GRACE) {
        Ok(out) => out,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "node driver did not finish within {:?}; killed",
                plan.duration + GRACE
            ));
        }
    };
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the node driver: {e}"))?;
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let last = err.lines().take(3).collect::<Vec<_>>().join(" / ");
        return Err(format!("node driver failed ({status}): {last}"));
    }
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("node driver printed no result: {out:?}"))?;
    parse(line)
}

/// Parses the driver's JSON line.
fn parse(line: &str) -> Result<Measurement, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("node driver output {line:?}: {e}"))?;
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    let count = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Ok(Measurement {
        rate: num("rate").ok_or_else(|| format!("node driver output without rate: {line}"))?,
        p50_us: num("p50_us").unwrap_or(f64::NAN),
        p99_us: num("p99_us").unwrap_or(f64::NAN),
        p90_us: num("p90_us").unwrap_or(f64::NAN),
        p999_us: num("p999_us").unwrap_or(f64::NAN),
        cpu_us: num("cpu_us").unwrap_or(f64::NAN),
        switches: num("switches").unwrap_or(f64::NAN),
        cycles: count("cycles"),
        failures: count("failures"),
        overlaps: count("overlaps"),
        first_error: v
            .get("first_error")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sequential_line() {
        let m = parse(
            r#"{"rate":2461.8,"cycles":2463,"failures":0,"overlaps":0,"first_error":null,"p50_us":308.9,"p90_us":638.4,"p99_us":2206.4,"p999_us":3412.5,"cpu_us":344.2,"switches":3.25}"#,
        )
        .unwrap();
        assert_eq!(m.cycles, 2463);
        assert!((m.p50_us - 308.9).abs() < 1e-9);
        assert!(m.first_error.is_none());
    }

    #[test]
    fn parses_a_throughput_line_and_refuses_garbage() {
        let m =
            parse(r#"{"rate":10.5,"cycles":21,"failures":2,"overlaps":0,"first_error":"boom"}"#)
                .unwrap();
        assert!(m.p50_us.is_nan());
        assert_eq!(m.failures, 2);
        assert_eq!(m.first_error.as_deref(), Some("boom"));
        assert!(parse("{}").is_err());
        assert!(parse("not json").is_err());
    }
}
