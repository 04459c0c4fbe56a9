//! `PartialEq`, `Eq` and `Hash` for the whole core state (feature `__model`),
//! so that a model checker can keep real cores in its states and recognise a
//! state it has seen. `heapless::Deque` implements neither, so the queues are
//! compared and hashed element by element.

use core::hash::{Hash, Hasher};

use crate::link::Link;
use crate::redlock::Redlock;

fn deque_eq<T: PartialEq, const N: usize>(
    a: &heapless::Deque<T, N>,
    b: &heapless::Deque<T, N>,
) -> bool {
    a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x == y)
}

fn deque_hash<T: Hash, const N: usize, H: Hasher>(d: &heapless::Deque<T, N>, h: &mut H) {
    d.len().hash(h);
    for x in d.iter() {
        x.hash(h);
    }
}

impl<const PIPE: usize> PartialEq for Link<PIPE> {
    fn eq(&self, o: &Self) -> bool {
        self.config == o.config
            && self.state == o.state
            && deque_eq(&self.fifo, &o.fifo)
            && self.passed == o.passed
            && self.rx == o.rx
            && self.backoff == o.backoff
            && self.backoff_min == o.backoff_min
            && self.down_reason == o.down_reason
            && self.gate == o.gate
            && self.keep_owed == o.keep_owed
            && self.script_load == o.script_load
    }
}
impl<const PIPE: usize> Eq for Link<PIPE> {}

impl<const PIPE: usize> Hash for Link<PIPE> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.config.hash(h);
        self.state.hash(h);
        deque_hash(&self.fifo, h);
        self.passed.hash(h);
        self.rx.hash(h);
        self.backoff.hash(h);
        self.backoff_min.hash(h);
        self.down_reason.hash(h);
        self.gate.hash(h);
        self.keep_owed.hash(h);
        self.script_load.hash(h);
    }
}

impl<const OPS: usize, const PIPE: usize> PartialEq for Redlock<OPS, PIPE> {
    fn eq(&self, o: &Self) -> bool {
        self.config == o.config
            && self.quorum == o.quorum
            && self.weak == o.weak
            && self.now == o.now
            && self.last_fence == o.last_fence
            && self.links == o.links
            && self.slots == o.slots
            && self.free == o.free
            && self.waiting == o.waiting
            && deque_eq(&self.ready, &o.ready)
            && deque_eq(&self.events, &o.events)
            && self.dropped_diagnostics == o.dropped_diagnostics
            && self.next_transmit == o.next_transmit
    }
}
impl<const OPS: usize, const PIPE: usize> Eq for Redlock<OPS, PIPE> {}

impl<const OPS: usize, const PIPE: usize> Hash for Redlock<OPS, PIPE> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.config.hash(h);
        self.quorum.hash(h);
        self.weak.hash(h);
        self.now.hash(h);
        self.last_fence.hash(h);
        self.links.hash(h);
        self.slots.hash(h);
        self.free.hash(h);
        self.waiting.hash(h);
        deque_hash(&self.ready, h);
        deque_hash(&self.events, h);
        self.dropped_diagnostics.hash(h);
        self.next_transmit.hash(h);
    }
}
