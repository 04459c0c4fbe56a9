//! Signals as messages: a thread turns every signal redlock handles into a
//! [`Msg::Signal`] on a channel, next to the results of the lock operation
//! that runs on its own thread, so one loop can wait for either.
//!
//! Handlers are installed before any lock operation starts and stay until
//! the process exits: an interrupt never kills redlock with part of a lock
//! taken.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP};
use signal_hook::iterator::Signals as HookSignals;

/// The signals that interrupt redlock (and that `exec` passes on to CMD).
pub(crate) const INTERRUPTS: [i32; 4] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT];

/// What the waiting loop receives.
pub(crate) enum Msg<R> {
    /// A signal arrived (its number).
    Signal(i32),
    /// The operation thread finished.
    Done(R),
}

/// The handlers, their thread, and the channel they feed.
pub(crate) struct Signals<R> {
    rx: Receiver<Msg<R>>,
    tx: Sender<Msg<R>>,
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl<R: Send + 'static> Signals<R> {
    /// Installs handlers for [`INTERRUPTS`] and `extra`.
    pub(crate) fn install(extra: &[i32]) -> std::io::Result<Signals<R>> {
        let mut hook = HookSignals::new(INTERRUPTS.iter().chain(extra))?;
        let handle = hook.handle();
        let (tx, rx) = mpsc::channel();
        let thread = {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("redlock-signals".into())
                .spawn(move || {
                    for sig in hook.forever() {
                        if tx.send(Msg::Signal(sig)).is_err() {
                            break;
                        }
                    }
                })?
        };
        Ok(Signals {
            rx,
            tx,
            handle,
            thread: Some(thread),
        })
    }

    /// Runs `op` on its own thread and waits for its result. When an
    /// interrupt arrives first, calls `on_interrupt` once (to cancel the
    /// operation) and then waits at most `bound` more for the result.
    /// Returns the result (`None` when the bound passed first) and the
    /// first interrupt, if any. Other signals are ignored.
    pub(crate) fn run(
        &self,
        op: impl FnOnce() -> R + Send + 'static,
        on_interrupt: impl FnOnce(i32),
        bound: Duration,
    ) -> (Option<R>, Option<i32>) {
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("redlock-op".into())
            .spawn(move || {
                let _ = tx.send(Msg::Done(op()));
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a thread: {e}");
            return (None, None);
        }
        let mut on_interrupt = Some(on_interrupt);
        let mut interrupted: Option<(i32, Instant)> = None;
        loop {
            let msg = match interrupted {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some((_, deadline)) => self
                    .rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now())),
            };
            match msg {
                Ok(Msg::Done(r)) => return (Some(r), interrupted.map(|(s, _)| s)),
                Ok(Msg::Signal(sig)) if INTERRUPTS.contains(&sig) && interrupted.is_none() => {
                    interrupted = Some((sig, Instant::now() + bound));
                    if let Some(f) = on_interrupt.take() {
                        f(sig);
                    }
                }
                // Job control while waiting (exec handles SIGTSTP): stop as
                // if unhandled; SIGCONT resumes.
                Ok(Msg::Signal(SIGTSTP)) => {
                    let _ = signal_hook::low_level::emulate_default_handler(SIGTSTP);
                }
                Ok(Msg::Signal(_)) => {}
                Err(_) => return (None, interrupted.map(|(s, _)| s)),
            }
        }
    }

    /// The next message within `timeout`, if any.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Option<Msg<R>> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl<R> Drop for Signals<R> {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The status a shell reports for death by `sig`: 128+N.
pub(crate) fn status_for(sig: i32) -> u8 {
    128u8.saturating_add(u8::try_from(sig).unwrap_or(0))
}

/// `SIGTERM`, or "signal N".
pub(crate) fn name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {sig}"))
}
