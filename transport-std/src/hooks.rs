//! Test-only fault hooks (feature `__test-hooks`): make the driver thread
//! panic, hold a host name's resolution. Not part of the public API: the
//! integration tests use them to prove that every caller gets an error once
//! the driver is gone, and that a slow resolver stalls only its own node.

use std::sync::{Condvar, Mutex};

use crate::driver::Command;
use crate::Client;

/// Makes `client`'s driver thread panic when it takes the next command.
pub fn panic_driver(client: &Client) {
    client.submit_detached(Command::Panic);
}

static HELD: Mutex<Vec<String>> = Mutex::new(Vec::new());
static RELEASED: Condvar = Condvar::new();

/// Holds every resolution of `host` (by any client of this process) until
/// the returned value is dropped.
pub fn hold_resolution(host: &str) -> ResolutionHold {
    HELD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(host.to_owned());
    ResolutionHold {
        host: host.to_owned(),
    }
}

/// See [`hold_resolution`].
#[derive(Debug)]
pub struct ResolutionHold {
    host: String,
}

impl Drop for ResolutionHold {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = held.iter().position(|h| *h == self.host) {
            held.remove(i);
        }
        RELEASED.notify_all();
    }
}

/// Blocks while `host`'s resolution is held.
pub(crate) fn before_resolve(host: &str) {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    while held.iter().any(|h| h == host) {
        held = RELEASED.wait(held).unwrap_or_else(|p| p.into_inner());
    }
}
