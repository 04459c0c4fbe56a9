//! A whole (small) simulation from fuzzer bytes, shared by the `sim` fuzz
//! target and the stable corpus-replay test.
//!
//! The bytes choose the seed and the scenario's shape (nodes, clients,
//! TTL, which unsafe faults are *not* used: none, since the point is that
//! the safe menu never violates) and a short fault phase; fencing and
//! resource sets are chosen per seed as in the default menu. The run must
//! end without a safety violation, without a fence violation and without
//! exceeding its step bound.

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use crate::scenario::{FailureClass, Scenario};

/// The scenario shape a fuzzer input decodes to.
#[derive(Clone, Debug, Arbitrary)]
pub struct FuzzScenario {
    /// Root seed.
    pub seed: u64,
    /// Nodes, taken modulo 7, plus 1.
    pub nodes: u8,
    /// Clients, taken modulo 4, plus 1.
    pub clients: u8,
    /// TTL in ms, taken modulo 3000, plus 100.
    pub ttl_ms: u16,
    /// Whether safe faults are drawn.
    pub faults: bool,
    /// Fault phase in TTLs, taken modulo 4, plus 1.
    pub fault_ttls: u8,
}

impl FuzzScenario {
    /// The scenario this input describes.
    ///
    /// ```
    /// let f = redlock_sim::fuzz::FuzzScenario { seed: 1, nodes: 2, clients: 1, ttl_ms: 400, faults: true, fault_ttls: 1 };
    /// assert_eq!(f.scenario().nodes, 3);
    /// ```
    pub fn scenario(&self) -> Scenario {
        Scenario {
            nodes: usize::from(self.nodes % 7) + 1,
            clients: usize::from(self.clients % 4) + 1,
            ttl: Some(Duration::from_millis(u64::from(self.ttl_ms % 3000) + 100)),
            safe_faults: self.faults,
            fault_ttls: u64::from(self.fault_ttls % 4) + 1,
            max_steps: 400_000,
            ..Scenario::default()
        }
    }
}

/// Fuzz body: decode a [`FuzzScenario`] from `data` and simulate it.
/// Panics on a safety violation or a livelock (that is the finding).
///
/// ```
/// redlock_sim::fuzz::simulation(&[1, 2, 3, 4, 5, 6, 7, 8, 4, 2, 0, 1, 1, 2]);
/// ```
pub fn simulation(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(input) = FuzzScenario::arbitrary(&mut u) else {
        return;
    };
    let outcome = crate::simulate(input.seed, &input.scenario());
    if let Some((class, msg)) = &outcome.failure {
        if matches!(class, FailureClass::Safety | FailureClass::Livelock) {
            panic!("{input:?}: {msg}");
        }
    }
    if let Some((kind, msg)) = &outcome.fence_failure {
        panic!("{input:?}: fence {kind}: {msg}");
    }
}
