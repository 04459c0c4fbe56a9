//! Reply cells: how the driver answers a handle's acquire, extend or
//! release, without a `oneshot` channel (an allocation) per command.
//!
//! A client has one table of cells shared by its handles and its driver.
//! A command takes a free cell ([`pair`]); its [`ReplyTx`] goes with the
//! command to the driver, its [`ReplyRx`] stays with the caller's future.
//! The cell goes back to the free list once both ends are done with it, so
//! the table grows to the largest number of commands ever in flight at once
//! and then allocates no more.
//!
//! The semantics are a oneshot channel's: [`ReplyTx::send`] gives the
//! answer back when the receiver is gone (the caller dropped its future);
//! a sender dropped without answering (the driver stopped) wakes the
//! receiver with `None`; [`ReplyRx::close`] stops any later delivery and
//! returns what had already arrived.
//!
//! A lease travels in a box from the client's spares ([`crate::spare`]),
//! so a cell is small and cheap to move.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use redlock_core::{Lease as CoreLease, ReleaseReport, ResourceSet};

use crate::spare::{LeaseBox, Spares};
use crate::Error;

thread_local! {
    /// Wakers held back while this thread holds the driver's lock: whether
    /// deferring is on, and the wakers (the vector keeps its capacity).
    static DEFERRED: RefCell<(bool, Vec<Waker>)> = const { RefCell::new((false, Vec::new())) };
}

/// Holds back the wake-ups of answered receivers until it is dropped.
///
/// Made before the driver's lock is taken (so dropped after it is
/// released): a caller woken while the lock is still held would find it
/// taken when it starts its next command, and queue that command to the
/// driver task instead of running it itself.
pub(crate) struct DeferWakes(());

impl DeferWakes {
    pub(crate) fn new() -> DeferWakes {
        DEFERRED.with(|d| d.borrow_mut().0 = true);
        DeferWakes(())
    }
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        let mut wakers = DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            d.0 = false;
            std::mem::take(&mut d.1)
        });
        for w in wakers.drain(..) {
            w.wake();
        }
        // Give the (empty) vector back, with its capacity.
        DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            if d.1.capacity() < wakers.capacity() {
                d.1 = wakers;
            }
        });
    }
}

/// Wakes `w` now, or when the thread's [`DeferWakes`] is dropped.
fn wake(w: Waker) {
    let w = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 {
            d.1.push(w);
            None
        } else {
            Some(w)
        }
    });
    if let Some(w) = w {
        w.wake();
    }
}

/// What the driver answers: small, so that a cell is cheap to move.
pub(crate) enum Answer {
    /// An acquire's or an extension's result.
    Lease(Result<LeaseBox, Error>),
    /// A release's result.
    Release(Result<ReleaseReport, Error>),
}

/// A cell's state, moved in and out of the table.
enum State {
    Free,
    /// Both ends hold the cell; the receiver's waker once it polled.
    Waiting(Option<Waker>),
    /// Answered; the receiver has not taken it yet.
    Done(Answer),
    /// The receiver is gone; the sender still holds the cell.
    Abandoned,
    /// The sender was dropped without answering.
    Closed,
}

#[derive(Default)]
struct Table {
    cells: Vec<State>,
    free: Vec<usize>,
}

/// The cells of one client, and its spare boxes (see [`crate::spare`]).
#[derive(Default)]
pub(crate) struct Cells {
    table: Mutex<Table>,
    /// Boxes for the leases answered and in extend commands.
    pub(crate) leases: Spares<CoreLease>,
    /// Boxes for the resource sets of commands.
    pub(crate) sets: Spares<ResourceSet>,
}

impl Cells {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Plain data, consistent at every point: usable after a panic.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    fn release(&mut self, i: usize) {
        if let Some(c) = self.cells.get_mut(i) {
            *c = State::Free;
            self.free.push(i);
        }
    }
}

/// A free cell, as a sender and a receiver.
pub(crate) fn pair(cells: &Arc<Cells>) -> (ReplyTx, ReplyRx) {
    let mut t = cells.table();
    let i = match t.free.pop() {
        Some(i) => {
            t.cells[i] = State::Waiting(None);
            i
        }
        None => {
            t.cells.push(State::Waiting(None));
            t.cells.len() - 1
        }
    };
    drop(t);
    (
        ReplyTx {
            cells: Arc::clone(cells),
            cell: Some(i),
        },
        ReplyRx {
            cells: Arc::clone(cells),
            cell: Some(i),
        },
    )
}

/// The driver's end: answers once.
pub(crate) struct ReplyTx {
    cells: Arc<Cells>,
    cell: Option<usize>,
}

impl ReplyTx {
    /// Delivers `answer`; gives it back if the receiver is gone.
    #[allow(clippy::result_large_err)] // as a oneshot sender's
    pub(crate) fn send(mut self, answer: Answer) -> Result<(), Answer> {
        let Some(i) = self.cell.take() else {
            return Err(answer);
        };
        let mut t = self.cells.table();
        // States are matched in place: moving one out and back would copy
        // a whole answer's worth of bytes each time.
        let waker = match &mut t.cells[i] {
            State::Waiting(w) => w.take(),
            _ => {
                // Abandoned (nothing else is possible while we hold it).
                t.release(i);
                return Err(answer);
            }
        };
        t.cells[i] = State::Done(answer);
        drop(t);
        if let Some(w) = waker {
            wake(w);
        }
        Ok(())
    }

    /// Whether the receiver is gone.
    #[cfg(test)]
    fn is_closed(&self) -> bool {
        self.cell
            .is_none_or(|i| matches!(self.cells.table().cells[i], State::Abandoned))
    }
}

impl Drop for ReplyTx {
    fn drop(&mut self) {
        let Some(i) = self.cell.take() else {
            return;
        };
        let mut t = self.cells.table();
        let waker = match &mut t.cells[i] {
            State::Waiting(w) => {
                let w = w.take();
                t.cells[i] = State::Closed;
                w
            }
            _ => {
                t.release(i);
                None
            }
        };
        drop(t);
        if let Some(w) = waker {
            wake(w);
        }
    }
}

/// The caller's end: a future of the answer, `None` if the driver dropped
/// the command unanswered.
pub(crate) struct ReplyRx {
    cells: Arc<Cells>,
    cell: Option<usize>,
}

impl ReplyRx {
    /// Stops any later delivery; returns the answer if it had arrived.
    pub(crate) fn close(&mut self) -> Option<Answer> {
        let i = self.cell.take()?;
        let mut t = self.cells.table();
        match std::mem::replace(&mut t.cells[i], State::Abandoned) {
            State::Done(a) => {
                t.release(i);
                Some(a)
            }
            State::Waiting(_) => None,
            _ => {
                t.release(i);
                None
            }
        }
    }
}

impl Future for ReplyRx {
    type Output = Option<Answer>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Answer>> {
        let Some(i) = self.cell else {
            return Poll::Ready(None);
        };
        let mut t = self.cells.table();
        if let State::Waiting(w) = &mut t.cells[i] {
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        // Done or Closed: the sender is finished with the cell, and so are we.
        let state = std::mem::replace(&mut t.cells[i], State::Free);
        t.release(i);
        drop(t);
        self.cell = None;
        match state {
            State::Done(a) => Poll::Ready(Some(a)),
            _ => Poll::Ready(None),
        }
    }
}

impl Drop for ReplyRx {
    fn drop(&mut self) {
        drop(self.close());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Answer {
        Answer::Lease(Err(Error::stopped()))
    }

    #[tokio::test]
    async fn delivers_and_reuses_the_cell() {
        let cells = Arc::new(Cells::default());
        for _ in 0..3 {
            let (tx, rx) = pair(&cells);
            assert!(!tx.is_closed());
            let waiter = tokio::spawn(rx);
            tokio::task::yield_now().await;
            assert!(tx.send(answer()).is_ok());
            assert!(matches!(waiter.await.unwrap(), Some(Answer::Lease(Err(_)))));
        }
        assert_eq!(cells.table().cells.len(), 1, "the cell was not reused");
    }

    #[tokio::test]
    async fn a_dropped_receiver_gives_the_answer_back() {
        let cells = Arc::new(Cells::default());
        let (tx, rx) = pair(&cells);
        drop(rx);
        assert!(tx.is_closed());
        assert!(tx.send(answer()).is_err());
        assert_eq!(cells.table().free.len(), 1);
    }

    #[tokio::test]
    async fn a_dropped_sender_wakes_the_receiver_with_none() {
        let cells = Arc::new(Cells::default());
        let (tx, rx) = pair(&cells);
        let waiter = tokio::spawn(rx);
        tokio::task::yield_now().await;
        drop(tx);
        assert!(waiter.await.unwrap().is_none());
        assert_eq!(cells.table().free.len(), 1);
    }

    #[tokio::test]
    async fn close_returns_what_arrived_and_stops_the_rest() {
        let cells = Arc::new(Cells::default());
        let (tx, mut rx) = pair(&cells);
        assert!(tx.send(answer()).is_ok());
        assert!(rx.close().is_some());
        let (tx, mut rx) = pair(&cells);
        assert!(rx.close().is_none());
        assert!(tx.send(answer()).is_err());
        drop(rx);
        assert_eq!(cells.table().free.len(), 1);
        assert_eq!(cells.table().cells.len(), 1);
    }
}
