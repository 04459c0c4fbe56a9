//! The handles' command queue to the driver, built to batch: a handle
//! wakes the driver only when the driver is asleep waiting for commands.
//!
//! While the driver runs, or has yielded to let the tasks it just answered
//! run (`yield_now`, which puts it after every other ready task), commands
//! pile up without waking it; it then takes them all at once, starts them
//! in the core and drains once: one write per node for the whole batch.
//! A wake-up per command instead (what an `mpsc` channel does) runs the
//! driver again right after the first caller's send, before the other
//! callers have queued theirs (tokio schedules the woken task next on that
//! worker): one write per node per command.
//!
//! While few requests are in flight and this queue is empty, a command
//! does not come here at all: its handle runs it itself (see
//! `Driver::direct`).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use crate::driver::Command;
use crate::Error;

#[derive(Default)]
struct State {
    commands: VecDeque<Command>,
    /// The driver's waker while it waits for commands; `None` while it
    /// runs (or yields), so that nobody wakes it needlessly.
    waker: Option<Waker>,
    /// Every handle is gone.
    closed: bool,
    /// The driver has stopped: nothing will take a command again.
    stopped: bool,
    /// A handle that ran its own command needs the driver to re-arm its
    /// timer earlier (see `Driver::direct`).
    poked: bool,
}

/// Shared by the handles (which push) and the driver (which takes).
pub(crate) struct Queue {
    state: Mutex<State>,
}

/// Room reserved up front in the queue and in the driver's batch (the two
/// deques are swapped on every take): a command queued for the first time
/// after a long run of commands the handles ran themselves must not
/// allocate.
pub(crate) const BATCH: usize = 64;

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            state: Mutex::new(State {
                commands: VecDeque::with_capacity(BATCH),
                ..State::default()
            }),
        }
    }
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, State> {
        // Plain data, consistent at every point: usable after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `cmd`; wakes the driver if it is waiting. [`Error::DriverStopped`]
    /// if it has stopped.
    pub(crate) fn push(&self, cmd: Command) -> Result<(), Error> {
        let mut s = self.state();
        if s.stopped {
            drop(s);
            // Its reply sender, dropped here, answers nobody.
            drop(cmd);
            return Err(Error::stopped());
        }
        s.commands.push_back(cmd);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Whether nothing is queued (and the driver still takes commands).
    pub(crate) fn is_empty(&self) -> bool {
        let s = self.state();
        s.commands.is_empty() && !s.stopped && !s.closed
    }

    /// Wakes the driver (or, if it runs, makes its next wait return at
    /// once) so that it re-arms its timer.
    pub(crate) fn poke(&self) {
        self.set_and_wake(|s| s.poked = true);
    }

    /// Changes the state, then wakes the driver if it is waiting.
    fn set_and_wake(&self, change: impl FnOnce(&mut State)) {
        let waker = {
            let mut s = self.state();
            change(&mut s);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Every handle is gone: the driver finishes and stops.
    pub(crate) fn close(&self) {
        self.set_and_wake(|s| s.closed = true);
    }

    /// The driver has stopped: later pushes fail, and queued commands are
    /// dropped (their callers learn that the driver stopped).
    pub(crate) fn stop(&self) {
        let orphans = {
            let mut s = self.state();
            s.stopped = true;
            s.waker = None;
            std::mem::take(&mut s.commands)
        };
        drop(orphans);
    }

    /// Moves every queued command to `into` (which the driver keeps empty
    /// between batches: both deques keep their capacity); whether every
    /// handle is gone.
    pub(crate) fn take(&self, into: &mut VecDeque<Command>) -> bool {
        let mut s = self.state();
        std::mem::swap(&mut s.commands, into);
        s.closed
    }

    /// Resolves when a command is queued or every handle is gone; until
    /// then the driver's waker is registered.
    pub(crate) async fn ready(&self) {
        std::future::poll_fn(|cx| {
            let mut s = self.state();
            if !s.commands.is_empty() || s.closed || s.poked {
                s.waker = None;
                s.poked = false;
                return Poll::Ready(());
            }
            match &s.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// The driver stops waiting (another event woke it): handles no longer
    /// wake it until it waits again.
    pub(crate) fn unregister(&self) {
        self.state().waker = None;
    }
}
