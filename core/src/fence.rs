//! Quorum-safe fencing tokens: the protocol, its proof, and the resource side.
//!
//! A lease-based lock cannot stop a holder that was paused past its lease
//! (GC, SIGSTOP, a VM migration) or whose nodes' clocks jumped from acting as
//! if it still held the lock. Only the protected resource can, by refusing
//! work that carries an older **fence** than work it has already accepted
//! (Martin Kleppmann, "How to do distributed locking", 2016). A fence must
//! therefore grow with every grant, across whichever quorums the grants used.
//! A counter on one node does not (a failover repeats it); independent
//! counters per node do not (two quorums see different counters); an id
//! fetched after the lock does not (a paused ex-holder fetches a newer one).
//!
//! ## The protocol: a max register per resource, tied to the lock key
//! Each node keeps, per resource `R`, a **fence register**: the string key
//! `{R}:fence` ([`fence_register`](crate::fence_register)) holding an
//! integer, with no expiry. A fenced acquire attempt (with its own token, see
//! [`Token::for_attempt`](crate::Token::for_attempt)) proposes
//! `p = max(highest fence this core has seen + 1, unix time in ms × 1024)`,
//! capped below 2^53 so Lua's doubles hold every value exactly.
//! * **Round 1**, one script per node ([`ACQUIRE_SCRIPT`](crate::ACQUIRE_SCRIPT)):
//!   `SET R token NX PX ttl`; if it succeeded, read the register `old`
//!   (0 if absent), raise it to `p` if `old < p`, return `old`.
//! * The nodes that said OK by the moment a quorum did are the **counted**
//!   set; the set is frozen then (an OK that comes later never counts). If
//!   every counted node returned `old < p`, every one of them now holds `p`,
//!   written while our key lived there: acquired with fence `p`, in one round.
//! * Otherwise **round 2**: `f = 1 + max(old)` over the counted nodes, sent to
//!   exactly those nodes: `if GET R == token then register = max(register, f)`
//!   ([`FENCE_WRITE_SCRIPT`](crate::FENCE_WRITE_SCRIPT)). Acquired with fence
//!   `f` iff a quorum of them confirms, within the validity measured from
//!   round 1's start (the usual rule). If not, the attempt fails and is
//!   undone like any other.
//!
//! A failed round 1 or 2 is undone as any failed attempt; a register is never
//! lowered or deleted by us: `extend` keeps the fence, `release` leaves the
//! register alone. Plain locks use the same key and value and do not touch
//! the register, so fenced and plain locks on one resource exclude each other
//! and plain locks still interoperate with every other Redlock client.
//!
//! ## Why it is safe, with no timing assumption
//! Call a grant's **write quorum** the nodes where its fence was written
//! while its key was present (the counted set in one round; the confirming
//! nodes in round 2). Take two grants A and B of one resource. Their write
//! quorums are majorities, so they share a node `m`. On `m`, each key lived
//! without a break from its `SET` to its fence write: the `SET` and the write
//! are one script in round 1, and in round 2 the write checks `GET R ==
//! token`, where the token is unique to the attempt and set only once (a fresh
//! token per attempt: a stale `SET` of an earlier attempt can never satisfy
//! the check). `SET NX` keeps the two lifetimes on `m` apart, so one of them,
//! say A's, ended before B's `SET` on `m`; A's fence write on `m` came before
//! that, so B's read on `m` saw at least `f_A`, and `m` is in B's counted set.
//! B's fence is either `p_B > old_m ≥ f_A` (one round: `old < p` on every
//! counted node) or `1 + max(old) > f_A` (round 2). Hence:
//! * **uniqueness**: two grants of a resource never share a fence;
//! * **order**: a grant whose acquire starts after grant A was confirmed
//!   (in true time) has a fence above A's: A's writes were done by then, so
//!   on `m` B reads at least `f_A`.
//!
//! **Conditions** (outside them the guarantees above do not hold):
//! * registers are never lost: AOF with `appendfsync always` (a restart
//!   keeps them), no expiry on them, no `DEL`/`FLUSHALL`, `maxmemory-policy`
//!   `noeviction` or `volatile-*` (they have no TTL, so `volatile-*` never
//!   evicts them), no failover to an asynchronous replica. Antirez's
//!   "delayed restart" protects lock keys, not registers;
//! * a fresh token per attempt (this core does that for every acquire);
//! * **only nodes whose read went into `f` count toward the write quorum**:
//!   the counted set is frozen when the quorum is reached, round 2 goes to
//!   exactly those nodes, and a late OK never counts;
//! * the order guarantee is for grants whose write quorums meet, i.e. all of
//!   them as long as the set of nodes is the same.
//!
//! ## Which rules the proof needs (and one planted "bug" that is not one)
//! The argument is about the node shared by two grants' **write** quorums:
//! the later key there read the earlier grant's fence, so that read must be
//! in the later fence. Hence:
//! * **Counting late confirmations breaks it** once a key can vanish before
//!   its time (a clock jump, a restart without persistence): an OK that
//!   arrives after the counted set was frozen may come from a node where
//!   another grant's key has just expired and whose register already holds
//!   that grant's fence; `f` never saw it, and counting that node makes it
//!   the shared node of the two write quorums. The simulator shows it on a
//!   schedule (`sim/tests/fencing.rs`: two grants with one fence). While
//!   keys live out their TTL, the other grant cannot have held a quorum
//!   meanwhile, so no random run without an unsafe fault finds it; the rule
//!   is what keeps fencing free of timing assumptions.
//! * **`SET` instead of max in round 2 is harmless on its own.** Round 2
//!   only writes on nodes where our key still lives (the script checks the
//!   token), and a key with this attempt's fresh token can only have come
//!   from its own `SET`, so it lived there since round 1 and no other grant
//!   touched that node's registers: the register is `max(old, p) < f`, and
//!   setting it to `f` is raising it to `f`. Combined with counting late
//!   confirmations it lowers a register (the simulator catches that pair).
//!
//! The test builds plant these (`Weakness::fence_late_ok`,
//! `Weakness::fence_plain_set`): the simulator catches the first on its
//! schedule and the pair, and finds no violation with `fence_plain_set`
//! alone (the model checker explores exactly the correct core's states with
//! it): evidence that the checkers do not cry wolf. The other planted bugs
//! that break fencing (a fence not above the registers it read, one round
//! without the `old < p` check: `fence_no_check`; per-node counters:
//! `fence_incr`; a token shared by the attempts: `reuse_token`) are caught.
//!
//! ## The resource side
//! The protected resource accepts a write iff its fence is **not below** the
//! highest fence it has accepted ([`FenceGuard`] is that rule). `<=` is
//! right because fences are unique: an equal fence is the same holder. In
//! SQL, inside one transaction:
//! ```text
//! UPDATE t SET ..., fence = $f WHERE id = $id AND fence <= $f
//! -- 0 rows: a holder with a newer fence exists; stop, you lost the lock.
//! ```
//! For a read-modify-write, read and write in the same transaction with the
//! fence check on the write, so a stale holder's write is rejected even if
//! its read came before the newer holder's.
//!
//! ## Several resources
//! A fenced lease over several resources has **one** fence, valid for each
//! of them: round 1 returns the largest register of the node's resources and
//! raises each to `p`; round 2 raises each to `f`. For every resource of the
//! set, the fence has the single-resource guarantees above.

/// The largest fence: 2^53 - 1, the largest integer Lua's doubles (the
/// scripts' numbers) hold exactly. A proposal is capped at it; a register at
/// or above it cannot be outgrown, and a fenced acquire then fails with a
/// protocol error for that node instead of repeating a fence.
pub const MAX_FENCE: u64 = (1 << 53) - 1;

/// The proposal of a fenced attempt: `max(last_seen + 1, unix_ms × 1024)`,
/// capped at [`MAX_FENCE`]. The wall clock is only a hint that keeps the
/// common case to one round; a wrong wall clock costs a second round, never
/// safety.
///
/// ```
/// use redlock_core::fence::{proposal, MAX_FENCE};
/// assert_eq!(proposal(0, 1), 1024);
/// assert_eq!(proposal(5_000, 1), 5_001);
/// assert_eq!(proposal(u64::MAX, u64::MAX), MAX_FENCE);
/// ```
pub fn proposal(last_seen: u64, unix_ms: u64) -> u64 {
    last_seen
        .saturating_add(1)
        .max(unix_ms.saturating_mul(1024))
        .min(MAX_FENCE)
}

/// The resource side of fencing: accepts a fence iff it is not below the
/// highest accepted so far (a pure decision for a store to embed; persist
/// [`highest`](Self::highest) with the data it guards).
///
/// ```
/// use redlock_core::fence::FenceGuard;
/// let mut guard = FenceGuard::new();
/// assert!(guard.admit(10).is_ok());
/// assert!(guard.admit(10).is_ok()); // the same holder again
/// assert!(guard.admit(12).is_ok());
/// let stale = guard.admit(11).unwrap_err();
/// assert_eq!((stale.fence, stale.highest), (11, 12));
/// assert_eq!(guard.highest(), 12);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FenceGuard {
    highest: u64,
}

impl FenceGuard {
    /// A guard that has accepted nothing yet.
    ///
    /// ```
    /// assert_eq!(redlock_core::fence::FenceGuard::new().highest(), 0);
    /// ```
    pub const fn new() -> FenceGuard {
        FenceGuard { highest: 0 }
    }

    /// A guard that has already accepted `highest` (e.g. read back from the
    /// store).
    ///
    /// ```
    /// # use redlock_core::fence::FenceGuard;
    /// assert!(FenceGuard::resume(7).admit(6).is_err());
    /// ```
    pub const fn resume(highest: u64) -> FenceGuard {
        FenceGuard { highest }
    }

    /// The highest fence accepted.
    ///
    /// ```
    /// # use redlock_core::fence::FenceGuard;
    /// assert_eq!(FenceGuard::resume(3).highest(), 3);
    /// ```
    pub const fn highest(&self) -> u64 {
        self.highest
    }

    /// Accepts work fenced with `fence` (and remembers it), or refuses it
    /// because a newer holder's work was accepted.
    ///
    /// ```
    /// # use redlock_core::fence::FenceGuard;
    /// let mut g = FenceGuard::new();
    /// assert!(g.admit(1).is_ok());
    /// ```
    pub fn admit(&mut self, fence: u64) -> Result<(), StaleFence> {
        if fence < self.highest {
            return Err(StaleFence {
                fence,
                highest: self.highest,
            });
        }
        self.highest = fence;
        Ok(())
    }
}

/// Work refused by a [`FenceGuard`]: its fence is below one already accepted.
///
/// ```
/// use redlock_core::fence::StaleFence;
/// let e = StaleFence { fence: 3, highest: 9 };
/// assert_eq!(e.to_string(), "stale fence 3: a newer holder (fence 9) has written");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StaleFence {
    /// The fence the refused work carried.
    pub fence: u64,
    /// The highest fence accepted.
    pub highest: u64,
}

impl core::fmt::Display for StaleFence {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "stale fence {}: a newer holder (fence {}) has written",
            self.fence, self.highest
        )
    }
}

impl core::error::Error for StaleFence {}
