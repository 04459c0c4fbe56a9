//! `redlock exec`: run a command while holding the lock, with the lock
//! covering everything the command starts.
//!
//! * CMD runs in a **process group of its own** (the group's id is CMD's
//!   pid). Interrupts to redlock are passed on to the whole group; on loss
//!   the whole group gets SIGTERM, then SIGKILL after [`GRACE`].
//! * CMD gets **SIGKILL as its parent-death signal**, and a small
//!   **watchdog** process (forked before CMD, in a session of its own) kills
//!   the whole group when redlock dies without saying goodbye (SIGKILL):
//!   no part of CMD runs on once nobody extends its lease.
//! * redlock is a **child subreaper**: orphans of CMD's group come back to
//!   it and are reaped, so "the group is empty" is observable even under a
//!   pid 1 that does not reap.
//! * When CMD exits but members of its group still run, the lock is kept
//!   (and extended) until the group is empty, as flock(1)'s lock stays held
//!   while a process started under it keeps the lock file open.
//! * When redlock runs as a foreground job reading its terminal, the terminal is handed to
//!   CMD's group (and taken back afterwards), as a shell does for a job.
//! * The loop checks "lost" after reaping and before "CMD ended", so a loss
//!   in the last moments of CMD is reported as a loss (70).

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{killpg, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpgrp, getpid, getppid, setpgid, tcgetpgrp, tcsetpgrp, Pid};
use redlock_std::{Error, KeptLease};
use signal_hook::consts::{SIGCHLD, SIGCONT, SIGTSTP};

use crate::exit;
use crate::lock::{self, Ctx, Done};
use crate::report::{self, Op};
use crate::signals::{self, Msg, Signals, INTERRUPTS};

/// Signals `exec` handles besides the interrupts: children's ends, and job
/// control.
pub(crate) const EXTRA_SIGNALS: [i32; 3] = [SIGCHLD, SIGTSTP, SIGCONT];
/// How long CMD's group may take to stop after SIGTERM once the lock is lost.
const GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the group to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Upper bound on how long a lost lock or an emptied group goes unnoticed
/// (the keeper flags a loss at once, SIGCHLD wakes the loop; this is only
/// the polling period for what sends no signal).
const POLL: Duration = Duration::from_millis(10);

/// Runs `redlock exec`; returns the exit status.
pub(crate) fn run(ctx: &Ctx<'_>, command: &[OsString]) -> u8 {
    let out = ctx.out;
    let signals = &ctx.signals;
    let lease = match lock::acquire_interruptible(ctx) {
        Ok(lease) => lease,
        Err(code) => return code,
    };
    let resource = ctx.named();
    tracing::info!(resources = %resource, fence = lease.fence(), validity = ?lease.remaining(),
        "lock acquired");

    // Orphans of CMD's group are re-parented to us, so we can reap them and
    // see the group end.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::debug!("cannot become a child subreaper: {e}");
    }
    let mut watchdog = match Watchdog::start() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!("cannot start the watchdog process ({e}): if redlock is killed, only CMD itself is sure to die");
            None
        }
    };
    let tty = Terminal::foreground();

    let program = &command[0];
    let mut cmd = std::process::Command::new(program);
    cmd.args(&command[1..])
        .env("REDLOCK_RESOURCE", ctx.resource())
        .env("REDLOCK_TOKEN", lease.token().as_str());
    if ctx.resources.len() > 1 {
        cmd.env("REDLOCK_RESOURCES", ctx.resources.join(","));
    }
    if let Some(fence) = lease.fence() {
        // One fence covers the whole set: listed once per resource, in the
        // order of REDLOCK_RESOURCES.
        let fences = vec![fence.to_string(); ctx.resources.len()];
        cmd.env("REDLOCK_FENCE", fences.join(","));
    }
    let parent = getpid();
    let tty_fd = tty.as_ref().map(|t| t.fd.as_raw_fd());
    #[allow(unsafe_code)]
    // SAFETY: `child_setup` runs between fork and exec and only makes
    // async-signal-safe system calls (setpgid, sigprocmask, tcsetpgrp,
    // prctl, getppid, getpid); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || child_setup(parent, tty_fd));
    }
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let code = if e.kind() == ErrorKind::NotFound {
                exit::NOT_FOUND
            } else {
                exit::CANNOT_RUN
            };
            out.error(format_args!(
                "cannot run {}: {e}",
                program.to_string_lossy()
            ));
            if let Some(w) = watchdog.take() {
                w.disarm();
            }
            // The child may have taken the terminal before its exec failed.
            if let Some(tty) = &tty {
                tty.reclaim_from_anyone();
            }
            if let Err(e) = lease.release() {
                out.error(format_args!("releasing {resource} failed: {e}"));
            }
            return code;
        }
    };
    // CMD is the leader of its group: the group's id is its pid.
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    drop(child); // waited for with waitpid below, never through `Child`
    if let Some(w) = watchdog.as_mut() {
        w.arm(pid);
    }
    tracing::debug!(%pid, "CMD started in its own process group");
    let keeper = ctx.client.keep(lease);

    let mut group = Group {
        pgid: pid,
        leader_status: None,
        leader_stopped: false,
        watchdog: watchdog.as_ref().map(|w| w.pid),
        tty,
    };
    let code = match supervise(&mut group, signals, &keeper, ctx) {
        Supervised::Ended(status) => {
            // The group is gone: the terminal is the shell's again at once.
            if let Some(tty) = &group.tty {
                tty.reclaim(group.pgid);
            }
            match keeper.release() {
                Ok(report) => tracing::info!(released = report.released(), "lock released"),
                Err(e) => out.error(format_args!(
                    "releasing {resource} after CMD ended failed: {e}"
                )),
            }
            status
        }
        Supervised::Lost => {
            let why = match keeper.lost_error() {
                Some(Error::Lost(f)) => format!(
                    "the extension failed: {}",
                    report::failure(&f, Op::Extend, &ctx.urls)
                ),
                Some(e) => {
                    let s = e.to_string();
                    s.strip_prefix("I/O error: ")
                        .unwrap_or(&s)
                        .trim_start_matches("lock lost: ")
                        .to_owned()
                }
                None => "the lease ran out before it could be extended".to_owned(),
            };
            let running = if group.leader_status.is_some() {
                "processes of CMD's group were"
            } else {
                "CMD was"
            };
            out.error(format_args!(
                "lock on {resource} LOST while {running} running: {why}; stopping CMD's \
                 process group (pgid {pid}) with SIGTERM"
            ));
            let t0 = Instant::now();
            stop_group(&mut group, signals, &out);
            if let Some(tty) = &group.tty {
                tty.reclaim(group.pgid);
            }
            // Remove whatever is left of our keys (best effort: the lease is gone).
            let _ = keeper.release();
            out.error(format_args!(
                "CMD {}, its group ended {:.1} s after the loss was noticed; exiting with status {}",
                describe_status(group.leader_status),
                t0.elapsed().as_secs_f64(),
                exit::LOST
            ));
            exit::LOST
        }
    };
    if let Some(w) = watchdog {
        w.disarm();
    }
    code
}

/// In the child, between fork and exec: a process group of its own, the
/// terminal for that group when redlock had it, SIGKILL when redlock dies.
/// Only async-signal-safe calls.
fn child_setup(parent: Pid, tty: Option<RawFd>) -> std::io::Result<()> {
    setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    if let Some(fd) = tty {
        #[allow(unsafe_code)]
        // SAFETY: `fd` is redlock's open /dev/tty descriptor, inherited by
        // this child (it is closed on exec only).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        // The new group is a background group: block SIGTTOU to take the
        // terminal (POSIX allows it then).
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old))?;
        let handed = tcsetpgrp(fd, getpid());
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
        // Without the terminal CMD still runs, in the background.
        let _ = handed;
    }
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // redlock may have died before the line above: then nobody would kill us.
    if getppid() != parent {
        return Err(Errno::ESRCH.into());
    }
    Ok(())
}

enum Supervised {
    /// CMD ended (status as a shell reports it) and its group is empty,
    /// with the lock held throughout.
    Ended(u8),
    /// The lock was lost while the group ran.
    Lost,
}

/// CMD's process group as redlock sees it.
struct Group {
    pgid: Pid,
    /// CMD's own status once it has ended (reaped).
    leader_status: Option<WaitStatus>,
    leader_stopped: bool,
    watchdog: Option<Pid>,
    tty: Option<Terminal>,
}

impl Group {
    /// Reaps every child that ended (CMD, orphans of its group, the
    /// watchdog) without blocking; records CMD's status and stops.
    fn reap(&mut self) -> Vec<Signal> {
        let mut stops = Vec::new();
        loop {
            match waitpid(
                None::<Pid>,
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED),
            ) {
                Ok(WaitStatus::StillAlive) | Err(_) => return stops,
                Ok(status) => {
                    let pid = status.pid();
                    if pid == Some(self.pgid) {
                        match status {
                            WaitStatus::Stopped(_, sig) => {
                                self.leader_stopped = true;
                                stops.push(sig);
                            }
                            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                                tracing::debug!(?status, "CMD ended");
                                self.leader_status = Some(status);
                            }
                            _ => {}
                        }
                    } else if pid.is_some() && pid == self.watchdog {
                        if matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                            tracing::warn!(?status, "the watchdog process ended early");
                            self.watchdog = None;
                        }
                    } else {
                        tracing::debug!(?status, "reaped an orphan of CMD's group");
                    }
                }
            }
        }
    }

    /// Whether no process of the group is left (zombies count as left).
    fn is_empty(&self) -> bool {
        killpg(self.pgid, None) == Err(Errno::ESRCH)
    }

    /// Sends `sig` to every process of the group.
    fn signal(&self, sig: Signal) {
        match killpg(self.pgid, sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => tracing::warn!("cannot send {sig} to CMD's group: {e}"),
        }
    }

    /// Passes an interrupt on to the group, and SIGCONT so that a stopped
    /// member gets it too (as a shell's `kill %job` does).
    fn forward(&self, sig: i32) {
        if let Ok(s) = Signal::try_from(sig) {
            tracing::info!(signal = s.as_str(), pgid = %self.pgid, "passing signal on to CMD's group");
            self.signal(s);
            self.signal(Signal::SIGCONT);
        }
    }
}

/// Waits for CMD's group to end or the lock to be lost, passing signals on.
/// "Lost" is checked after reaping and before "ended": a loss in the last
/// moments of CMD wins.
fn supervise(
    group: &mut Group,
    signals: &Signals<Done>,
    keeper: &KeptLease,
    ctx: &Ctx<'_>,
) -> Supervised {
    let mut told_leftovers = false;
    let mut told_ttin = false;
    loop {
        for stop in group.reap() {
            on_leader_stopped(group, stop, &mut told_ttin, ctx);
        }
        if keeper.is_lost() {
            return Supervised::Lost;
        }
        if let Some(status) = group.leader_status {
            if group.is_empty() {
                return Supervised::Ended(status_code(status));
            }
            if !told_leftovers {
                told_leftovers = true;
                ctx.out.error(format_args!(
                    "CMD {} but left processes of its group running ({}): the lock is kept \
                     and extended until they end (SIGTERM to redlock ends them)",
                    describe_status(Some(status)),
                    members(group.pgid)
                ));
            }
        }
        match signals.recv_timeout(POLL) {
            Some(Msg::Signal(sig)) if INTERRUPTS.contains(&sig) => group.forward(sig),
            Some(Msg::Signal(SIGTSTP)) => suspend(group),
            Some(Msg::Signal(SIGCONT)) => resume(group),
            Some(_) | None => {}
        }
    }
}

/// CMD itself was stopped. With the terminal handed over this is job
/// control (Ctrl-Z): take the terminal back and stop with CMD, as a shell's
/// job would. Without it, a read from the terminal (SIGTTIN) cannot
/// succeed: say so once; the lock stays held.
fn on_leader_stopped(group: &mut Group, sig: Signal, told_ttin: &mut bool, ctx: &Ctx<'_>) {
    let terminal_stop = matches!(sig, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU);
    match &group.tty {
        Some(_) if terminal_stop => suspend(group),
        None if matches!(sig, Signal::SIGTTIN | Signal::SIGTTOU) && !*told_ttin => {
            *told_ttin = true;
            ctx.out.error(format_args!(
                "CMD (pid {}) was stopped by {sig}: it used the terminal, which belongs to \
                 another process group (redlock was not a foreground job reading the terminal); the lock \
                 stays held while CMD is stopped: give CMD its input another way, or end it \
                 with SIGTERM to redlock",
                group.pgid
            ));
        }
        _ => {}
    }
}

/// Stops CMD's group and then redlock itself (SIGTSTP to redlock, or Ctrl-Z
/// on CMD's terminal); SIGCONT to redlock resumes both ([`resume`]). The
/// lease is not extended while redlock is stopped: if it runs out, the lock
/// is lost when redlock resumes.
fn suspend(group: &mut Group) {
    tracing::info!("stopping with CMD's group (job control)");
    group.signal(Signal::SIGSTOP);
    if let Some(tty) = &group.tty {
        tty.reclaim(group.pgid);
    }
    if let Err(e) = nix::sys::signal::kill(getpid(), Signal::SIGSTOP) {
        tracing::warn!("cannot stop: {e}");
    }
}

/// SIGCONT: give the terminal back to CMD's group when redlock is in the
/// foreground again, and continue the group (as `fg`/`bg` continue a job).
fn resume(group: &mut Group) {
    if let Some(tty) = &group.tty {
        tty.hand_to(group.pgid);
    }
    group.leader_stopped = false;
    group.signal(Signal::SIGCONT);
}

/// After a loss: SIGTERM (and SIGCONT) to the whole group, SIGKILL after
/// [`GRACE`]; returns once the group is empty (or [`KILL_WAIT`] after the
/// SIGKILL, for a process that cannot die, e.g. in uninterruptible sleep).
fn stop_group(group: &mut Group, signals: &Signals<Done>, out: &crate::Output) {
    group.signal(Signal::SIGTERM);
    group.signal(Signal::SIGCONT);
    if wait_empty(group, signals, GRACE) {
        return;
    }
    out.error(format_args!(
        "CMD's process group (pgid {}) still has processes {} s after SIGTERM ({}): SIGKILL",
        group.pgid,
        GRACE.as_secs(),
        members(group.pgid)
    ));
    group.signal(Signal::SIGKILL);
    if !wait_empty(group, signals, KILL_WAIT) {
        out.error(format_args!(
            "CMD's process group (pgid {}) still has processes after SIGKILL ({})",
            group.pgid,
            members(group.pgid)
        ));
    }
}

/// Reaps until the group is empty or `bound` has passed; interrupts that
/// arrive meanwhile are passed on.
fn wait_empty(group: &mut Group, signals: &Signals<Done>, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        group.reap();
        if group.is_empty() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if let Some(Msg::Signal(sig)) = signals.recv_timeout(left.min(POLL)) {
            if INTERRUPTS.contains(&sig) {
                group.forward(sig);
            }
        }
    }
}

/// The processes of group `pgid`, for messages: "pid 12 (sleep), pid 13 (sh)".
fn members(pgid: Pid) -> String {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid pgrp ...": comm may hold anything, up to the last ')'.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = stat.get(open + 1..close).unwrap_or("?");
            let mut rest = stat.get(close + 1..).unwrap_or("").split_whitespace();
            let pgrp = rest.nth(2).and_then(|s| s.parse::<i32>().ok());
            if pgrp == Some(pgid.as_raw()) {
                found.push(format!("pid {pid} ({comm})"));
            }
        }
    }
    match found.len() {
        0 => "none visible".to_owned(),
        n if n > 8 => format!("{}, and {} more", found[..8].join(", "), n - 8),
        _ => found.join(", "),
    }
}

/// A shell's view of an exit status: the code, or 128+N for signal N.
fn status_code(status: WaitStatus) -> u8 {
    match status {
        WaitStatus::Exited(_, code) => (code & 0xff) as u8,
        WaitStatus::Signaled(_, sig, _) => signals::status_for(sig as i32),
        _ => exit::CANNOT_RUN,
    }
}

fn describe_status(status: Option<WaitStatus>) -> String {
    match status {
        Some(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
        Some(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
        _ => "had ended".to_owned(),
    }
}

/// The controlling terminal, when redlock runs as a foreground job.
struct Terminal {
    fd: OwnedFd,
}

impl Terminal {
    /// The terminal, when standard input is a terminal and redlock's group
    /// is its foreground group. (A script's `redlock exec ... &` shares the
    /// script's group but reads /dev/null: it must not take the terminal.)
    fn foreground() -> Option<Terminal> {
        if !nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            return None;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?; // std opens with O_CLOEXEC
        let fd = OwnedFd::from(file);
        (tcgetpgrp(fd.as_fd()).ok()? == getpgrp()).then_some(Terminal { fd })
    }

    /// Makes `pgid` the foreground group, if redlock's group is.
    fn hand_to(&self, pgid: Pid) {
        if tcgetpgrp(self.fd.as_fd()).ok() == Some(getpgrp()) {
            let _ = tcsetpgrp(self.fd.as_fd(), pgid);
        }
    }

    /// Takes the terminal back for redlock's group if `pgid` still has it.
    fn reclaim(&self, pgid: Pid) {
        if tcgetpgrp(self.fd.as_fd()).ok() == Some(pgid) {
            self.take();
        }
    }

    /// Takes the terminal back for redlock's group whoever has it (after a
    /// child that may have taken it failed to start).
    fn reclaim_from_anyone(&self) {
        if tcgetpgrp(self.fd.as_fd()).ok() != Some(getpgrp()) {
            self.take();
        }
    }

    fn take(&self) {
        // We are a background group now: block SIGTTOU for the call.
        let mut ttou = SigSet::empty();
        ttou.add(Signal::SIGTTOU);
        let mut old = SigSet::empty();
        if pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut old)).is_ok() {
            let _ = tcsetpgrp(self.fd.as_fd(), getpgrp());
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
    }
}

/// A process that kills CMD's group when redlock dies: it waits on a pipe
/// whose only writer is redlock. End of file without the "done" byte means
/// redlock died (even by SIGKILL): SIGKILL to the group.
struct Watchdog {
    pid: Pid,
    tx: Option<OwnedFd>,
}

impl Watchdog {
    fn start() -> std::io::Result<Watchdog> {
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        #[allow(unsafe_code)]
        // SAFETY: the child only makes async-signal-safe system calls
        // (`watchdog_main`) and ends with `_exit`; it never returns here.
        let forked = unsafe { nix::unistd::fork() }?;
        match forked {
            nix::unistd::ForkResult::Child => watchdog_main(&rx, tx.as_raw_fd()),
            nix::unistd::ForkResult::Parent { child } => {
                drop(rx);
                Ok(Watchdog {
                    pid: child,
                    tx: Some(tx),
                })
            }
        }
    }

    /// Tells the watchdog which group to kill.
    fn arm(&mut self, pgid: Pid) {
        if let Some(tx) = &self.tx {
            let bytes = pgid.as_raw().to_ne_bytes();
            if nix::unistd::write(tx, &bytes) != Ok(bytes.len()) {
                tracing::warn!("cannot arm the watchdog process");
            }
        }
    }

    /// Lets the watchdog go without killing anything, and reaps it.
    fn disarm(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = nix::unistd::write(&tx, b"d");
        }
        let _ = waitpid(self.pid, None);
    }
}

/// The watchdog's whole life, after fork: async-signal-safe calls only.
fn watchdog_main(rx: &OwnedFd, tx: RawFd) -> ! {
    let _ = nix::unistd::close(tx);
    // Away from redlock's session and group: terminal signals and signals
    // to redlock's group do not reach it.
    let _ = nix::unistd::setsid();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGPIPE,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        #[allow(unsafe_code)]
        // SAFETY: setting a disposition to SIG_IGN installs no handler.
        let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) };
    }
    // Let go of redlock's standard streams (a pipe reader waits for them).
    for fd in 0..=2 {
        let _ = nix::unistd::close(fd);
    }
    let mut pgid = [0u8; 4];
    let mut got = 0;
    while got < pgid.len() {
        match nix::unistd::read(rx, &mut pgid[got..]) {
            Ok(0) => watchdog_exit(),
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(_) => watchdog_exit(),
        }
    }
    let pgid = Pid::from_raw(i32::from_ne_bytes(pgid));
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(rx, &mut byte) {
            // redlock is gone without a word: no one extends the lease.
            Ok(0) => {
                let _ = killpg(pgid, Signal::SIGKILL);
                watchdog_exit();
            }
            Ok(_) => watchdog_exit(),
            Err(Errno::EINTR) => {}
            Err(_) => watchdog_exit(),
        }
    }
}

fn watchdog_exit() -> ! {
    #[allow(unsafe_code)]
    // SAFETY: `_exit` ends the process at once, running no destructor or
    // atexit handler (none may run in a forked child of a threaded program).
    unsafe {
        nix::libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_style_status() {
        let pid = Pid::from_raw(1);
        assert_eq!(status_code(WaitStatus::Exited(pid, 3)), 3);
        assert_eq!(
            status_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            137
        );
        assert_eq!(
            status_code(WaitStatus::Signaled(pid, Signal::SIGTERM, true)),
            143
        );
    }
}
