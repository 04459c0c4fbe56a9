//! Test-only hooks (feature `__test-hooks`). Not part of the public API:
//! the integration tests use them to plant a known bug and prove that the
//! test meant to catch it does.

use crate::driver::lock;
use crate::Client;

/// Plants a liveness bug in `client`'s driver: after answering its group
/// of operations for a pass (see `GROUP_REQUESTS` in the driver), it waits
/// for a command, a reply or a timer as if no decided operation were left
/// to answer, so callers whose results are already decided wait for a wake
/// that may never come.
pub fn forget_answers_left(client: &Client) {
    if let Some(mut d) = lock(&client.inner.driver) {
        d.forget_answers_left = true;
    }
}
