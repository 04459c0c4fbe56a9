//! What the workers record: every protected section and every operation,
//! one line each in a log file (written by a thread of its own, so the
//! soak's memory does not grow with the run), plus the counters of the
//! Redis-independent lost-update check.
//!
//! A protected section reads its resource's counter when it begins and
//! writes the value plus one when it ends, if its lock is still valid then
//! (as a program would commit its work only while it holds the lock). Two
//! sections that overlap both commit from the same value: one update is
//! lost, and `committed - counter` counts it. The log's begin/end instants
//! (one monotonic clock) give the second, independent, check.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use redlock_core::NodeOutcome;

use crate::api::{Ended, FailInfo, Held, NodeInfo, NotTaken, Style};
use crate::timeline::Clock;

/// Shared by every worker.
#[derive(Debug)]
pub(crate) struct Recorder {
    clock: Clock,
    tx: SyncSender<String>,
    /// Per resource: the counter sections update.
    counters: Vec<AtomicU64>,
    /// Per resource: how many sections committed an update.
    committed: Vec<AtomicU64>,
    /// Progress, for the periodic status line.
    pub(crate) sections: AtomicU64,
    pub(crate) busy: AtomicU64,
    pub(crate) unavailable: AtomicU64,
    pub(crate) lost: AtomicU64,
}

/// The log writer thread; [`Writer::finish`] flushes and closes the file.
#[derive(Debug)]
pub(crate) struct Writer {
    thread: JoinHandle<std::io::Result<()>>,
}

impl Writer {
    /// Waits for every line sent so far (all senders must be gone).
    pub(crate) fn finish(self) -> std::io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("log writer panicked")))
    }
}

fn write_lines(rx: Receiver<String>, file: File) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, file);
    for line in rx {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Fields are tab-separated: keep tabs and newlines out of free text.
pub(crate) fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// One letter per node outcome, for the log.
pub(crate) fn outcome_letter(o: NodeOutcome) -> char {
    match o {
        NodeOutcome::Ok => 'O',
        NodeOutcome::Held => 'H',
        NodeOutcome::Missing => 'M',
        NodeOutcome::Failed(_) => 'F',
        NodeOutcome::Pending => 'P',
    }
}

fn node_detail(i: usize, n: &NodeInfo) -> String {
    let err = n.last_error.as_deref().unwrap_or("");
    clean(&format!("{i}={:?}={err}", n.outcome))
}

/// A section in progress.
#[derive(Debug)]
pub(crate) struct Open {
    res: usize,
    token: String,
    begin: u64,
    /// The latest instant the lock is known to have been valid until.
    deadline_lb: u64,
    read: u64,
}

/// Which transport, which worker.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Who {
    pub(crate) transport: &'static str,
    pub(crate) worker: usize,
}

impl Recorder {
    /// A recorder writing to `path`, for `resources` resources.
    pub(crate) fn create(
        clock: Clock,
        path: &Path,
        resources: usize,
    ) -> std::io::Result<(Recorder, Writer)> {
        let file = File::create(path)?;
        let (tx, rx) = sync_channel(1 << 14);
        let thread = std::thread::Builder::new()
            .name("soak-log".into())
            .spawn(move || write_lines(rx, file))?;
        let rec = Recorder {
            clock,
            tx,
            counters: (0..resources).map(|_| AtomicU64::new(0)).collect(),
            committed: (0..resources).map(|_| AtomicU64::new(0)).collect(),
            sections: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        };
        Ok((rec, Writer { thread }))
    }

    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// A handle for other threads to append lines to the log.
    pub(crate) fn sender(&self) -> SyncSender<String> {
        self.tx.clone()
    }

    /// Appends a line to the log (blocks if the writer is far behind).
    pub(crate) fn line(&self, line: String) {
        let _ = self.tx.send(line);
    }

    /// Per resource, `(committed, counter)`.
    pub(crate) fn counters(&self) -> Vec<(u64, u64)> {
        self.committed
            .iter()
            .zip(&self.counters)
            .map(|(c, v)| (c.load(Ordering::SeqCst), v.load(Ordering::SeqCst)))
            .collect()
    }

    /// The section begins: the lock was just acquired.
    pub(crate) fn begin(&self, res: usize, held: &dyn Held) -> Open {
        let begin = self.clock.now();
        let remaining = held.remaining();
        let token = held.token();
        let read = self.counters[res].load(Ordering::SeqCst);
        Open {
            res,
            token,
            begin,
            deadline_lb: begin.saturating_add(nanos(remaining)),
            read,
        }
    }

    /// A check during a long section: refreshes the known validity; `false`
    /// once the lock is lost (the section should stop).
    pub(crate) fn step(&self, open: &mut Open, held: &dyn Held) -> bool {
        let t = self.clock.now();
        let remaining = held.remaining();
        if held.is_lost() || remaining.is_zero() {
            return false;
        }
        open.deadline_lb = open.deadline_lb.max(t.saturating_add(nanos(remaining)));
        true
    }

    /// The section ends: commits if the lock is still valid, and logs it.
    pub(crate) fn end(&self, mut open: Open, held: &dyn Held, who: Who, long: bool) {
        // Commit only while the lock is valid, as a program would.
        let t = self.clock.now();
        let remaining = held.remaining();
        let committed = !held.is_lost() && !remaining.is_zero();
        if committed {
            open.deadline_lb = open.deadline_lb.max(t.saturating_add(nanos(remaining)));
            self.counters[open.res].store(open.read + 1, Ordering::SeqCst);
            self.committed[open.res].fetch_add(1, Ordering::SeqCst);
        }
        let deadline_lb = open.deadline_lb;
        let end = self.clock.now();
        self.sections.fetch_add(1, Ordering::Relaxed);
        self.line(format!(
            "S\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            who.transport,
            who.worker,
            open.res,
            open.token,
            open.begin,
            end,
            deadline_lb,
            u8::from(committed),
            u8::from(long),
        ));
    }

    /// Logs one operation: `t0` it started, `t_acq` the lock was taken (or
    /// the acquire failed), `t_end` it ended; `down_*` the most nodes down
    /// while acquiring and while held.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn op(
        &self,
        who: Who,
        res: usize,
        style: Style,
        (t0, t_acq, t_end): (u64, u64, u64),
        (down_acq, down_held): (u32, u32),
        result: &Result<Ended, NotTaken>,
    ) {
        let (acq, end, fail): (&str, &str, Option<&FailInfo>) = match result {
            Ok(e) => {
                let (name, f) = match e {
                    Ended::Released => ("released", None),
                    Ended::Done => ("done", None),
                    Ended::Unknown(_) => ("unknown", None),
                    Ended::NotHeld(_) => ("notheld", None),
                    Ended::Lost(f) => ("lost", Some(f)),
                    Ended::Other(_) => ("other", None),
                };
                ("ok", name, f)
            }
            Err(NotTaken::Busy(f)) => ("busy", "-", Some(f)),
            Err(NotTaken::Unavailable(f)) => ("unavailable", "-", Some(f)),
            Err(NotTaken::Auth(f)) => ("auth", "-", Some(f)),
            Err(NotTaken::Other(_)) => ("other", "-", None),
        };
        match acq {
            "busy" => {
                self.busy.fetch_add(1, Ordering::Relaxed);
            }
            "unavailable" => {
                self.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if matches!(end, "lost" | "notheld") {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        let message = match result {
            Ok(Ended::Unknown(m) | Ended::NotHeld(m) | Ended::Other(m))
            | Err(NotTaken::Other(m)) => m.clone(),
            _ => fail.map(|f| f.message.clone()).unwrap_or_default(),
        };
        let (kind, attempts, outcomes, details) = match fail {
            Some(f) => (
                format!("{:?}", f.kind),
                f.attempts,
                f.nodes
                    .iter()
                    .map(|n| outcome_letter(n.outcome))
                    .collect::<String>(),
                f.nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| node_detail(i, n))
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            None => ("-".into(), 0, "-".into(), "-".into()),
        };
        self.line(format!(
            "O\t{}\t{}\t{res}\t{}\t{t0}\t{t_acq}\t{t_end}\t{down_acq}\t{down_held}\t{acq}\t{end}\t{kind}\t{attempts}\t{outcomes}\t{details}\t{}",
            who.transport,
            who.worker,
            style.name(),
            clean(&message),
        ));
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
