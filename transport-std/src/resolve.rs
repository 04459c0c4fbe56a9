//! Host names resolved off the driver thread.
//!
//! `getaddrinfo` blocks, for as long as the system resolver takes. On the
//! driver thread that would stall every node and every keeper whenever one
//! node reconnects, so each node whose host is a name (not an IP literal)
//! gets its own resolver thread, started on its first connect and fed one
//! request at a time: a resolver that hangs delays only its own node, and
//! never piles up threads. The driver waits for the answer within the
//! connect deadline; the last good answer is kept, and used when a fresh
//! one does not come in time.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;

/// What a resolution produced: addresses, or why there are none.
pub(crate) type Resolved = Result<Vec<SocketAddr>, String>;

/// One node's resolver thread.
#[derive(Debug)]
pub(crate) struct Resolver {
    tx: mpsc::Sender<()>,
    /// A request is out and its answer has not come back yet.
    pending: bool,
    /// The addresses of the last successful resolution.
    pub(crate) last_good: Option<Vec<SocketAddr>>,
}

impl Resolver {
    /// Starts the thread resolving `host:port`; each answer goes to
    /// `deliver` (which wakes the driver). The thread ends when the
    /// resolver is dropped (after a resolution in progress, if any).
    pub(crate) fn spawn(
        host: String,
        port: u16,
        deliver: impl Fn(Resolved) + Send + 'static,
    ) -> std::io::Result<Resolver> {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("redlock-resolve".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    #[cfg(feature = "__test-hooks")]
                    crate::hooks::before_resolve(&host);
                    let result = (host.as_str(), port)
                        .to_socket_addrs()
                        .map(Iterator::collect)
                        .map_err(|e| format!("cannot resolve {host}: {e}"));
                    deliver(result);
                }
            })?;
        Ok(Resolver {
            tx,
            pending: false,
            last_good: None,
        })
    }

    /// Asks for a fresh resolution, unless one is already under way (its
    /// answer is as fresh). `false` if the thread is gone.
    pub(crate) fn request(&mut self) -> bool {
        if self.pending {
            return true;
        }
        self.pending = self.tx.send(()).is_ok();
        self.pending
    }

    /// Records an answer; returns it.
    pub(crate) fn answered(&mut self, result: Resolved) -> Resolved {
        self.pending = false;
        if let Ok(addrs) = &result {
            if !addrs.is_empty() {
                self.last_good = Some(addrs.clone());
            }
        }
        result
    }
}
