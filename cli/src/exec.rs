//! `redlock exec`: run a command while holding the lock.
//!
//! One thread acquires (so a signal can interrupt a long `--wait`), one
//! thread turns signals into messages, and the main thread supervises the
//! child: it forwards signals, watches the keeper (the background
//! auto-extension of `redlock-std`), and releases the lock as soon as the
//! child has ended.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::iterator::SignalsInfo;
use signal_hook::low_level::siginfo::{Cause, Origin};

use crate::lock::code_of;
use crate::{exit, Output};

/// Signals passed on to CMD.
const FORWARDED: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];
/// How long CMD may take to stop after SIGTERM once the lock is lost.
const GRACE: Duration = Duration::from_secs(5);
/// Upper bound on how long a lost lock goes unnoticed by the supervisor
/// (the keeper flags it at once; this is only the polling period).
const POLL: Duration = Duration::from_millis(10);

enum Msg {
    Signal(Origin),
    Acquired(Box<Result<redlock_std::Lease, redlock_std::Error>>),
}

/// Runs `redlock exec`; returns the exit status.
pub(crate) fn run(
    client: &redlock_std::Client,
    resource: &str,
    command: &[OsString],
    out: &Output,
) -> u8 {
    let (tx, rx) = mpsc::channel::<Msg>();

    // Signals first, so that none is missed (and none kills us with the lock held).
    let mut signals =
        match SignalsInfo::<WithOrigin>::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD]) {
            Ok(s) => s,
            Err(e) => {
                out.error(format_args!("cannot install signal handlers: {e}"));
                return exit::UNAVAILABLE;
            }
        };
    let signal_handle = signals.handle();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for origin in signals.forever() {
                if tx.send(Msg::Signal(origin)).is_err() {
                    break;
                }
            }
        });
    }

    // Acquire in a thread so that SIGINT/SIGTERM can cut a long wait short;
    // cancelling undoes whatever part of the lock was taken.
    let cancel = client.cancel_handle();
    {
        let client = client.clone();
        let resource = resource.to_owned();
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            let (ttl, retry) = (client.config().ttl, client.config().retry);
            let result = client.lock_cancellable(resource.as_bytes(), ttl, retry, &cancel);
            let _ = tx.send(Msg::Acquired(Box::new(result)));
        });
    }
    let lease = loop {
        match rx.recv() {
            Ok(Msg::Acquired(result)) => match *result {
                Ok(lease) => break lease,
                Err(e) => {
                    out.error(format_args!("could not acquire {resource:?}: {e}"));
                    return code_of(&e);
                }
            },
            Ok(Msg::Signal(o)) if FORWARDED.contains(&o.signal) => {
                out.error(format_args!(
                    "interrupted by {} while acquiring {resource:?}; CMD not started",
                    signal_name(o.signal)
                ));
                // Undo any part of the lock already taken before exiting; the
                // core cancels at once, so this wait is short and bounded.
                cancel.cancel();
                let bound = client.config().node_timeout * 2 + Duration::from_secs(1);
                let deadline = std::time::Instant::now() + bound;
                while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                    match rx.recv_timeout(left) {
                        Ok(Msg::Acquired(_)) | Err(_) => break,
                        Ok(Msg::Signal(_)) => {}
                    }
                }
                return 128u8.saturating_add(u8::try_from(o.signal).unwrap_or(0));
            }
            Ok(Msg::Signal(_)) => {}
            Err(_) => return exit::UNAVAILABLE, // both senders gone: cannot happen
        }
    };
    tracing::info!(resource, validity = ?lease.remaining(), "lock acquired");

    let program = &command[0];
    let spawned = std::process::Command::new(program)
        .args(&command[1..])
        .env("REDLOCK_RESOURCE", resource)
        .env("REDLOCK_TOKEN", lease.token().as_str())
        .spawn();
    let mut child = match spawned {
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
            if let Err(e) = lease.release() {
                out.error(format_args!("releasing {resource:?} failed: {e}"));
            }
            return code;
        }
    };
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    tracing::debug!(pid = child.id(), "CMD started");
    let keeper = client.keep(lease);

    let outcome = supervise(&mut child, pid, &rx, || keeper.is_lost());
    let code = match outcome {
        Supervised::Ended(status) => {
            let code = status_code(status);
            match keeper.release() {
                Ok(report) => tracing::info!(released = report.released(), "lock released"),
                Err(e) => out.error(format_args!(
                    "releasing {resource:?} after CMD ended failed: {e}"
                )),
            }
            code
        }
        Supervised::Lost => {
            let why = keeper
                .lost_error()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "the extension did not reach a quorum in time".to_owned());
            out.error(format_args!(
                "lock on {resource:?} LOST while CMD was running: {why}; stopping CMD (pid {pid}) with SIGTERM"
            ));
            let _ = kill(pid, Signal::SIGTERM);
            let status = stop(&mut child, pid, &rx, out);
            // Remove whatever is left of our keys (best effort: the lease is gone).
            let _ = keeper.release();
            out.error(format_args!(
                "CMD {}; exiting with status {}",
                describe_status(status),
                exit::LOST
            ));
            exit::LOST
        }
        Supervised::WaitFailed(e) => {
            out.error(format_args!("cannot wait for CMD: {e}"));
            let _ = child.kill();
            let _ = child.wait();
            let _ = keeper.release();
            exit::LOST
        }
    };
    signal_handle.close();
    code
}

enum Supervised {
    Ended(ExitStatus),
    Lost,
    WaitFailed(std::io::Error),
}

/// Waits for the child to end or the lock to be lost, forwarding signals.
fn supervise(
    child: &mut Child,
    pid: Pid,
    rx: &Receiver<Msg>,
    lost: impl Fn() -> bool,
) -> Supervised {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Supervised::Ended(status),
            Ok(None) => {}
            Err(e) => return Supervised::WaitFailed(e),
        }
        if lost() {
            return Supervised::Lost;
        }
        match rx.recv_timeout(POLL) {
            Ok(Msg::Signal(o)) => forward(&o, pid),
            Ok(Msg::Acquired(_)) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
    }
}

/// After SIGTERM: waits up to [`GRACE`] for the child, then SIGKILLs it.
fn stop(child: &mut Child, pid: Pid, rx: &Receiver<Msg>, out: &Output) -> Option<ExitStatus> {
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => break,
        }
        if let Ok(Msg::Signal(o)) = rx.recv_timeout(POLL) {
            forward(&o, pid);
        }
    }
    out.error(format_args!(
        "CMD (pid {pid}) still running {} s after SIGTERM: SIGKILL",
        GRACE.as_secs()
    ));
    let _ = child.kill();
    child.wait().ok()
}

/// Passes a signal on to the child, unless the terminal already sent it to
/// the whole foreground process group (the child included).
fn forward(origin: &Origin, pid: Pid) {
    if !FORWARDED.contains(&origin.signal) {
        return; // SIGCHLD: only a wake-up
    }
    if origin.cause == Cause::Kernel {
        tracing::debug!(
            signal = signal_name(origin.signal),
            "signal from the terminal: CMD got it too"
        );
        return;
    }
    if let Ok(sig) = Signal::try_from(origin.signal) {
        tracing::info!(signal = signal_name(origin.signal), %pid, "passing signal on to CMD");
        let _ = kill(pid, sig);
    }
}

/// A shell's view of an exit status: the code, or 128+N for signal N.
fn status_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return (code & 0xff) as u8;
    }
    match status.signal() {
        Some(sig) => 128u8.saturating_add(u8::try_from(sig).unwrap_or(0)),
        None => exit::CANNOT_RUN,
    }
}

fn describe_status(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) if s.code().is_some() => {
            format!("exited with status {}", s.code().unwrap_or_default())
        }
        Some(s) => format!(
            "was killed by {}",
            s.signal().map(signal_name).unwrap_or("a signal")
        ),
        None => "could not be waited for".to_owned(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    Signal::try_from(sig)
        .map(Signal::as_str)
        .unwrap_or("a signal")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn shell_style_status() {
        assert_eq!(status_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(status_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(status_code(ExitStatus::from_raw(15)), 143);
    }
}
