//! # redlock-mc: exhaustive model checking of the real core
//!
//! Random simulation samples schedules; a model checker enumerates them. The
//! protocol core (`redlock_core::Redlock`) is a pure state machine, so the
//! states explored here hold **the production code itself**: real cores for
//! the clients (feature `__model` gives them `Clone + Hash + Eq`), real
//! simulated Redis nodes (`redlock_sim::node::SimNode`, checked against
//! `redis-server` elsewhere), per-connection FIFO byte queues, and a discrete
//! true clock. The world and its steps are the simulator's
//! [`redlock_sim::replay`] rig, so every counterexample is a schedule that the
//! simulator replays (and judges with its own checker) outside the model
//! checker.
//!
//! ## What a state is, what an action is
//! A [`State`] is a [`Rig`] (cores, nodes, connections, true time), the fault
//! budget left, and what the properties remember (open beliefs, grants). An
//! [`Action`] is one [`Step`] of the rig (a client command, a delivery on one
//! connection, a due timer, a fault) or a [`Action::Tick`]: true time jumps to
//! the next instant at which anything can change ([`Rig::next_instant`]: a
//! core's `poll_timeout`, a lock key's expiry on its node's clock, a lease
//! deadline, a crashed node's restart window). Nothing happens between two
//! such instants, so nothing is lost by skipping them; which instant a
//! client starts, extends or releases at is chosen among them.
//!
//! Without faults, messages are delivered (in any order across connections,
//! FIFO within one) before time moves, and timers fire when due. The
//! [`Budget`] buys the rest: a tick while bytes are in flight (a **delay**:
//! every in-flight message is held past the instant), a tick past a due timer
//! (a client's **slow drain**), connection **resets**, node **crashes** (keys
//! kept, restart within a TTL; or keys lost, restart after the longest TTL),
//! `SCRIPT FLUSH`es, and acquires that retry with **no pause**.
//!
//! ## Shrinking the state space
//! Two clients and every fault at once are far more states than a test can
//! visit. The bugs a second client exposes mostly need only what it leaves
//! on the nodes: [`Setup::foreign`] puts a foreign client's keys on some
//! nodes until an instant, so one client against 1 or 3 nodes reaches them
//! in thousands of states instead of millions. [`RedlockModel`] also bounds
//! faults to some nodes or clients, orders the clients' starts, and can
//! leave extensions out. [`Search::BreadthFirst`] then finds a
//! counterexample with the fewest actions: a minimal trace.
//!
//! ## Properties
//! Each is a stateright `always` property (a counterexample is a path):
//! * [`MUTUAL_EXCLUSION`]: no two clients believe they hold the resource at
//!   one instant of true time (a belief runs from `Acquired`/`Extended` to the
//!   lease deadline on the client's clock, mapped to true time, or to the
//!   release), nor while a [`Foreign`] client holds it on a quorum;
//! * [`QUORUM_BACKING`]: at every instant of a belief, a quorum of nodes is
//!   down or holds the key with the belief's token, unexpired on its clock;
//! * [`ONE_EVENT`]: every operation ends with exactly one event (never two;
//!   never none when nothing is left that could end it);
//! * [`NO_KEY_LEFT`]: when every client is done and every node and link is
//!   up, no lock key is left on any node;
//! * [`FENCE_UNIQUE`] and [`FENCE_ORDER`] (fenced setups): two grants never
//!   share a fence, and a grant confirmed before another's acquire started
//!   has a smaller fence;
//! * [`TIMERS_PROGRESS`]: a due timer, once fired, is no longer due (no busy
//!   loop for a transport).
//!
//! ## Example
//! ```
//! use redlock_mc::{check, Budget, CheckOptions, RedlockModel};
//! use redlock_sim::replay::Setup;
//!
//! // One client, no faults: every interleaving of one lock cycle.
//! let setup = Setup { clients: 1, client_ppm: vec![-2_000], ..Setup::default() };
//! let model = RedlockModel::new(setup, Budget::default(), None);
//! let report = check(model, &CheckOptions::default());
//! assert!(report.complete && report.failures.is_empty());
//! assert!(report.unique_states > 100);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant as WallInstant};

use stateright::{Checker, HasDiscoveries, Model, Property};

/// The simulator's replay rig (`redlock_sim::replay`), on which the model
/// is built: a [`Setup`] fixes the world, a state holds a [`Rig`], an
/// action is a [`Step`] of it, and a counterexample is a [`Schedule`].
///
/// ```
/// use redlock_mc::{Foreign, Rig, Setup};
/// let setup = Setup { foreign: vec![Foreign { node: 0, until_ms: 50 }], ..Setup::sized(1, 1) };
/// assert!(Rig::new(&setup, None).is_ok());
/// ```
#[doc(no_inline)]
pub use redlock_sim::replay::{
    CoreHook, Foreign, Happening, ModelCore, Rig, Schedule, Setup, Step, Violation, Work,
};

/// Property: no two clients believe they hold the resource at one instant.
///
/// ```
/// use redlock_mc::{Budget, RedlockModel, Setup, MUTUAL_EXCLUSION};
/// let mut m = RedlockModel::new(Setup::default(), Budget::default(), None);
/// m.only = Some(vec![MUTUAL_EXCLUSION]); // only a violation of it ends the search
/// ```
pub const MUTUAL_EXCLUSION: &str = "mutual exclusion";
/// Property: every belief is backed by a quorum of blocking nodes.
///
/// ```
/// use redlock_mc::{Budget, RedlockModel, Setup, QUORUM_BACKING};
/// let mut m = RedlockModel::new(Setup::default(), Budget::default(), None);
/// m.only = Some(vec![QUORUM_BACKING]); // only a violation of it ends the search
/// ```
pub const QUORUM_BACKING: &str = "quorum backing";
/// Property: every operation ends with exactly one event.
///
/// ```
/// use redlock_mc::{Budget, RedlockModel, Setup, ONE_EVENT};
/// let mut m = RedlockModel::new(Setup::default(), Budget::default(), None);
/// m.only = Some(vec![ONE_EVENT]); // only a violation of it ends the search
/// ```
pub const ONE_EVENT: &str = "one event per operation";
/// Property: nothing left on the nodes once everything is done and up.
///
/// ```
/// use redlock_mc::{Budget, RedlockModel, Setup, NO_KEY_LEFT};
/// let mut m = RedlockModel::new(Setup::default(), Budget::default(), None);
/// m.only = Some(vec![NO_KEY_LEFT]); // only a violation of it ends the search
/// ```
pub const NO_KEY_LEFT: &str = "no key left behind";
/// Property: two grants never share a fence.
///
/// ```
/// use redlock_mc::{Budget, RedlockModel, Setup, FENCE_ORDER, FENCE_UNIQUE};
/// let mut m = RedlockModel::new(Setup::default(), Budget::default(), None);
/// m.only = Some(vec![FENCE_UNIQUE, FENCE_ORDER]); // only a violation of it ends the search
/// ```
pub const FENCE_UNIQUE: &str = "fence uniqueness";
/// Property: a grant confirmed before another's acquire started has a
/// smaller fence.
///
/// ```
/// use redlock_mc::{property_of, FENCE_ORDER};
/// use redlock_sim::replay::Violation;
/// assert_eq!(property_of(Violation::FenceOrder), FENCE_ORDER);
/// ```
pub const FENCE_ORDER: &str = "fence order";
/// Property: a fired timer is no longer due.
///
/// ```
/// use redlock_mc::{Budget, RedlockModel, Setup, TIMERS_PROGRESS};
/// let mut m = RedlockModel::new(Setup::default(), Budget::default(), None);
/// m.only = Some(vec![TIMERS_PROGRESS]); // only a violation of it ends the search
/// ```
pub const TIMERS_PROGRESS: &str = "timers progress";
/// Coverage (`sometimes`): a client is granted the lock.
///
/// ```
/// use redlock_mc::{check, Budget, CheckOptions, RedlockModel, Setup, SOME_GRANT};
/// let model = RedlockModel::new(Setup::sized(1, 1), Budget::default(), None);
/// let report = check(model, &CheckOptions::default());
/// assert!(report.covered.contains(&SOME_GRANT));
/// ```
pub const SOME_GRANT: &str = "a lock is granted";
/// Coverage (`sometimes`): both clients are granted the lock, in turn.
///
/// ```
/// use redlock_mc::{check, Budget, CheckOptions, RedlockModel, Setup, BOTH_GRANTED};
/// // With one client, "both" is that one.
/// let model = RedlockModel::new(Setup::sized(1, 1), Budget::default(), None);
/// assert!(check(model, &CheckOptions::default()).covered.contains(&BOTH_GRANTED));
/// ```
pub const BOTH_GRANTED: &str = "both clients are granted";

/// The property a simulator [`Violation`] corresponds to.
///
/// ```
/// use redlock_sim::replay::Violation;
/// assert_eq!(redlock_mc::property_of(Violation::FenceOrder), redlock_mc::FENCE_ORDER);
/// ```
pub fn property_of(v: Violation) -> &'static str {
    match v {
        Violation::MutualExclusion => MUTUAL_EXCLUSION,
        Violation::QuorumBacking => QUORUM_BACKING,
        Violation::FenceUniqueness => FENCE_UNIQUE,
        Violation::FenceOrder => FENCE_ORDER,
        Violation::OperationEvents => ONE_EVENT,
        Violation::KeyLeftBehind => NO_KEY_LEFT,
    }
}

/// How many faults of each kind one path may contain.
///
/// ```
/// let b = redlock_mc::Budget { delays: 2, ..Default::default() };
/// assert_eq!((b.delays, b.resets), (2, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Connections whose next requests are held back (not delivered at
    /// once) while other traffic passes.
    pub holds: u8,
    /// Ticks while bytes are in flight (every in-flight message is held past
    /// the instant).
    pub delays: u8,
    /// Ticks past a client's due timer (the client drains late).
    pub slow_drains: u8,
    /// Connection resets.
    pub resets: u8,
    /// Node crashes (with or without persistence).
    pub crashes: u8,
    /// `SCRIPT FLUSH`es.
    pub flushes: u8,
    /// Acquires whose retries come without any pause.
    pub zero_pauses: u8,
}

/// The model: a [`Setup`] (nodes, clients, TTL, clocks, fencing, planted
/// weakness), the fault [`Budget`] of every path, and a time horizon.
///
/// ```
/// use redlock_mc::{check, Budget, CheckOptions, RedlockModel, Setup};
/// let mut model = RedlockModel::new(Setup::sized(1, 1), Budget { resets: 1, ..Budget::default() }, None);
/// model.extends = false; // acquire and release only
/// let report = check(model, &CheckOptions::default());
/// assert!(report.complete && report.failures.is_empty(), "{report}");
/// ```
#[derive(Clone, Debug)]
pub struct RedlockModel {
    /// The rig's fixed parameters.
    pub setup: Setup,
    /// Faults each path may contain.
    pub budget: Budget,
    /// Plants `setup.weakness` in each core (feature `__weaken`, tests only).
    pub hook: Option<CoreHook>,
    /// States later than this (true µs) are outside the bounds.
    pub horizon: u64,
    /// Properties to check (`None`: all). Fewer properties explore the
    /// same states; this only says which failures end the search.
    pub only: Option<Vec<&'static str>>,
    /// Nodes that faults (crash, flush) may hit (`None`: all). Nodes are
    /// interchangeable, so one node stands for any.
    pub fault_nodes: Option<Vec<usize>>,
    /// Clients whose connections faults (hold, reset) may hit (`None`: all).
    pub fault_clients: Option<Vec<usize>>,
    /// Client `c + 1` may start only once client `c` has started (breaks
    /// the symmetry between alike clients; with faults restricted to some
    /// clients it is a bound, not a reduction).
    pub ordered_start: bool,
    /// Whether crashes may lose the node's data (keys and fence registers).
    /// Fencing assumes registers are never lost (AOF, `appendfsync
    /// always`): fenced checks turn this off, so crashes keep the data.
    pub empty_crashes: bool,
    /// Whether a holding client may extend its lease (once). Checks of the
    /// fence, which an extension keeps, turn it off to stay small.
    pub extends: bool,
    /// Set by [`check`] from its timeout: past it, every state is outside
    /// the bounds and the search winds down.
    deadline: Option<WallInstant>,
}

impl RedlockModel {
    /// A model of `setup` with `budget`, a horizon of 6 TTLs.
    ///
    /// ```
    /// use redlock_mc::{Budget, RedlockModel, Setup};
    /// let m = RedlockModel::new(Setup::default(), Budget::default(), None);
    /// assert_eq!(m.horizon, 6_000_000); // six TTLs, in µs
    /// ```
    pub fn new(setup: Setup, budget: Budget, hook: Option<CoreHook>) -> RedlockModel {
        let horizon = 6 * setup.ttl_ms * 1_000;
        RedlockModel {
            setup,
            budget,
            hook,
            horizon,
            only: None,
            fault_nodes: None,
            fault_clients: None,
            ordered_start: false,
            empty_crashes: true,
            extends: true,
            deadline: None,
        }
    }
}

/// An open belief, as the properties remember it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Belief {
    start: u64,
    end: u64,
    token: redlock_core::Token,
}

/// A state of the model.
///
/// ```
/// use redlock_mc::{Budget, RedlockModel, Setup, Work};
/// let model = RedlockModel::new(Setup::sized(1, 1), Budget { holds: 1, ..Budget::default() }, None);
/// let (state, _) = model.initial();
/// assert_eq!(state.rig.work(0), &Work::Idle);
/// assert_eq!(state.budget.holds, 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// The world.
    pub rig: Rig,
    /// Faults still allowed on this path.
    pub budget: Budget,
    beliefs: Vec<Option<Belief>>,
    /// (fence, true time confirmed) of every fenced grant.
    grants: Vec<(u64, u64)>,
    granted: Vec<bool>,
    /// Connections (client * nodes + node) whose requests are held back.
    held: Vec<bool>,
    /// Violations seen on the path to this state: (property, description).
    bad: Vec<(&'static str, String)>,
}

impl State {
    /// The violations seen on the path to this state.
    ///
    /// ```
    /// use redlock_core::Weakness;
    /// use redlock_mc::{Action, Budget, Foreign, RedlockModel, Setup, MUTUAL_EXCLUSION};
    /// let weakness = Weakness { quorum_half: true, ..Weakness::default() };
    /// let foreign = (0..2).map(|node| Foreign { node, until_ms: 500 }).collect();
    /// let setup = Setup { foreign, weakness, ..Setup::sized(3, 1) };
    /// let model = RedlockModel::new(setup, Budget::default(), Some(|c, w| c.weaken_with(w)));
    /// let path: Vec<Action> = ["acquire 0", "to-client 0 0", "to-client 0 2"]
    ///     .iter()
    ///     .map(|a| a.parse().unwrap())
    ///     .collect();
    /// let mut state = model.initial().0;
    /// for a in &path {
    ///     state = model.transition(&state, *a).unwrap().0;
    /// }
    /// assert_eq!(state.violations()[0].0, MUTUAL_EXCLUSION);
    /// ```
    pub fn violations(&self) -> &[(&'static str, String)] {
        &self.bad
    }

    fn has(&self, p: &str) -> bool {
        self.bad.iter().any(|(k, _)| *k == p)
    }

    fn flag(&mut self, p: &'static str, msg: String) {
        if !self.has(p) {
            self.bad.push((p, msg));
        }
    }
}

/// One transition of the model.
///
/// ```
/// use redlock_mc::{Action, Step};
/// let a: Action = "hold 1 2".parse().unwrap();
/// assert_eq!(a, Action::Hold { client: 1, node: 2 });
/// assert_eq!(a.to_string(), "hold 1 2");
/// assert_eq!("timeout 0".parse(), Ok(Action::Step(Step::Timeout { client: 0 })));
/// assert!("at 5".parse::<Action>().is_err()); // time moves by `tick`
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A step of the rig ([`Step::At`] is never used: see `Tick`).
    Step(Step),
    /// True time moves to the next instant that matters.
    Tick,
    /// The next requests on `client`'s connection to `node` are held back
    /// (a delay of the network): they reach the node only by an explicit
    /// `to-node` step, whenever the search chooses.
    Hold {
        /// The client.
        client: usize,
        /// The node.
        node: usize,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Step(s) => write!(f, "{s}"),
            Action::Tick => f.write_str("tick"),
            Action::Hold { client, node } => write!(f, "hold {client} {node}"),
        }
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    /// `tick`, `hold C N`, or a [`Step`] (not `at`).
    fn from_str(line: &str) -> Result<Action, String> {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["tick"] => Ok(Action::Tick),
            ["hold", c, n] => Ok(Action::Hold {
                client: c.parse().map_err(|_| format!("bad client in {line:?}"))?,
                node: n.parse().map_err(|_| format!("bad node in {line:?}"))?,
            }),
            _ => match line.parse::<Step>()? {
                Step::At(_) => Err("use `tick`, not `at`".into()),
                s => Ok(Action::Step(s)),
            },
        }
    }
}

impl RedlockModel {
    fn acquire_budget(&self, b: &Budget, step: Step) -> bool {
        !matches!(
            step,
            Step::Acquire {
                zero_pause: true,
                ..
            }
        ) || b.zero_pauses > 0
    }

    fn node_target(&self, n: usize) -> bool {
        self.fault_nodes.as_ref().is_none_or(|v| v.contains(&n))
    }

    fn client_target(&self, c: usize) -> bool {
        self.fault_clients.as_ref().is_none_or(|v| v.contains(&c))
    }

    fn enabled(&self, s: &State, a: Action) -> bool {
        let r = &s.rig;
        let b = &s.budget;
        match a {
            Action::Tick => {
                let Some(t) = r.next_instant() else {
                    return false;
                };
                if t > self.horizon {
                    return false;
                }
                let clients = self.setup.clients;
                let nodes = self.setup.nodes;
                let due = (0..clients).any(|c| r.timer_due(c));
                let broken =
                    (0..clients).any(|c| (0..nodes).any(|n| r.conn_state(&self.setup, c, n).1));
                let must_restart =
                    (0..nodes).any(|n| r.restart_window(n).is_some_and(|(_, by)| by <= r.now()));
                (!r.in_flight() || b.delays > 0)
                    && (!due || b.slow_drains > 0)
                    && !broken
                    && !must_restart
            }
            Action::Hold { client, node } => {
                b.holds > 0
                    && self.client_target(client)
                    && !s.held[client * self.setup.nodes + node]
                    && r.conn_state(&self.setup, client, node).0
            }
            Action::Step(step) => {
                let budget_ok = match step {
                    Step::ToNode { client, node } => s.held[client * self.setup.nodes + node],
                    Step::Acquire { client, .. } if self.ordered_start && client > 0 => {
                        *r.work(client - 1) != Work::Idle && self.acquire_budget(b, step)
                    }
                    Step::Acquire {
                        zero_pause: true, ..
                    } => b.zero_pauses > 0,
                    Step::Reset { client, .. } => b.resets > 0 && self.client_target(client),
                    Step::Crash { node, persistent } => {
                        b.crashes > 0
                            && self.node_target(node)
                            && (persistent || self.empty_crashes)
                    }
                    Step::Flush { node } => b.flushes > 0 && self.node_target(node),
                    Step::At(_) => false,
                    Step::Extend { .. } => self.extends,
                    _ => true,
                };
                budget_ok && r.can(&self.setup, step)
            }
        }
    }

    fn candidates(&self) -> Vec<Action> {
        let (nc, nn) = (self.setup.clients, self.setup.nodes);
        let mut v = Vec::new();
        for c in 0..nc {
            for zero_pause in [false, true] {
                v.push(Step::Acquire {
                    client: c,
                    zero_pause,
                });
            }
            v.push(Step::Extend { client: c });
            v.push(Step::Release { client: c });
        }
        for c in 0..nc {
            for n in 0..nn {
                v.push(Step::ToNode { client: c, node: n });
                v.push(Step::OldToNode { client: c, node: n });
                v.push(Step::ToClient { client: c, node: n });
            }
        }
        for c in 0..nc {
            v.push(Step::Timeout { client: c });
            for n in 0..nn {
                v.push(Step::Notice { client: c, node: n });
            }
        }
        for n in 0..nn {
            v.push(Step::Restart { node: n });
        }
        for c in 0..nc {
            for n in 0..nn {
                v.push(Step::Reset { client: c, node: n });
            }
        }
        for n in 0..nn {
            v.push(Step::Crash {
                node: n,
                persistent: true,
            });
            v.push(Step::Crash {
                node: n,
                persistent: false,
            });
            v.push(Step::Flush { node: n });
        }
        let mut v: Vec<Action> = v.into_iter().map(Action::Step).collect();
        for c in 0..nc {
            for n in 0..nn {
                v.push(Action::Hold { client: c, node: n });
            }
        }
        v.push(Action::Tick);
        v
    }

    fn check_beliefs_at(&self, s: &mut State, t: u64) {
        let q = self.setup.quorum();
        for c in 0..s.beliefs.len() {
            let Some(b) = s.beliefs[c].clone() else {
                continue;
            };
            if b.start <= t && t < b.end {
                let k = s.rig.backers(&b.token, t);
                if k < q {
                    s.flag(
                        QUORUM_BACKING,
                        format!(
                            "client {c} believes it holds the lock at {t} µs but only {k} of {} nodes back it (belief {}..{} µs)",
                            self.setup.nodes, b.start, b.end
                        ),
                    );
                }
            }
        }
    }

    fn absorb(&self, s: &mut State, happenings: Vec<Happening>) {
        for h in happenings {
            match h {
                Happening::Believe {
                    client,
                    start,
                    end,
                    token,
                    fence,
                    op_start,
                    extension,
                } => {
                    if let Some(fe) = self.setup.foreign_belief_end().filter(|fe| start < *fe) {
                        s.flag(
                            MUTUAL_EXCLUSION,
                            format!(
                                "client {client} believes it holds the lock from {start} µs while the foreign client does (0..{fe} µs)"
                            ),
                        );
                    }
                    for (d, other) in s.beliefs.clone().iter().enumerate() {
                        if let Some(o) = other.as_ref().filter(|o| d != client && o.end > start) {
                            s.flag(
                                MUTUAL_EXCLUSION,
                                format!(
                                    "client {client} believes it holds the lock from {start} µs while client {d} does ({}..{} µs)",
                                    o.start, o.end
                                ),
                            );
                        }
                    }
                    if let (Some(f), false) = (fence, extension) {
                        for &(g, confirmed) in &s.grants.clone() {
                            if g == f {
                                s.flag(FENCE_UNIQUE, format!("fence {f} granted twice"));
                            }
                            if confirmed < op_start && g >= f {
                                s.flag(
                                    FENCE_ORDER,
                                    format!(
                                        "client {client}'s acquire started at {op_start} µs, after fence {g} was confirmed at {confirmed} µs, and got fence {f}"
                                    ),
                                );
                            }
                        }
                        s.grants.push((f, start));
                    }
                    s.granted[client] = true;
                    s.beliefs[client] = Some(Belief { start, end, token });
                }
                Happening::EndBelief { client, .. } => s.beliefs[client] = None,
                Happening::OpEnded {
                    client,
                    op,
                    duplicate: true,
                } => s.flag(
                    ONE_EVENT,
                    format!("client {client}'s operation {op} ended twice"),
                ),
                Happening::OpEnded { .. } => {}
            }
        }
    }
}

impl RedlockModel {
    /// Delivers every request that is not held back, in a fixed order
    /// (connection by connection): a request reaches its node at once
    /// unless the search spent a hold on it.
    fn settle(&self, s: &mut State, out: &mut Vec<Happening>, steps: &mut Vec<Step>) {
        let nn = self.setup.nodes;
        loop {
            let mut next = None;
            'find: for c in 0..self.setup.clients {
                for n in 0..nn {
                    let (to_node, _, old) = s.rig.queued(&self.setup, c, n);
                    if !s.rig.node_up(n) {
                        continue;
                    }
                    if old > 0 {
                        next = Some(Step::OldToNode { client: c, node: n });
                        break 'find;
                    }
                    if to_node > 0 && !s.held[c * nn + n] {
                        next = Some(Step::ToNode { client: c, node: n });
                        break 'find;
                    }
                }
            }
            let Some(step) = next else { return };
            if s.rig.apply(&self.setup, step, out).is_err() {
                return;
            }
            steps.push(step);
        }
    }

    /// The initial state and the rig steps that lead to it from
    /// [`Rig::new`] (the handshakes' delivery).
    ///
    /// ```
    /// use redlock_mc::{Budget, RedlockModel, Setup};
    /// let model = RedlockModel::new(Setup::default(), Budget::default(), None);
    /// let (state, steps) = model.initial();
    /// assert!(steps.is_empty()); // the fixed core sends nothing before a command
    /// assert_eq!(state.rig.now(), 0);
    /// ```
    pub fn initial(&self) -> (State, Vec<Step>) {
        let rig = match Rig::new(&self.setup, self.hook) {
            Ok(r) => r,
            Err(e) => panic!("the model's setup is invalid: {e}"),
        };
        let mut s = State {
            rig,
            budget: self.budget,
            beliefs: vec![None; self.setup.clients],
            grants: Vec::new(),
            granted: vec![false; self.setup.clients],
            held: vec![false; self.setup.clients * self.setup.nodes],
            bad: Vec::new(),
        };
        let mut out = Vec::new();
        let mut steps = Vec::new();
        self.settle(&mut s, &mut out, &mut steps);
        self.absorb(&mut s, out);
        (s, steps)
    }

    /// The state after `a`, and the rig steps it took (for the schedule).
    ///
    /// ```
    /// use redlock_mc::{Action, Budget, RedlockModel, Setup, Step};
    /// let model = RedlockModel::new(Setup::sized(1, 1), Budget::default(), None);
    /// let (s, _) = model.initial();
    /// let acquire = Action::Step(Step::Acquire { client: 0, zero_pause: false });
    /// let (next, steps) = model.transition(&s, acquire).unwrap();
    /// // The SET reaches the node at once (no hold was spent).
    /// assert_eq!(steps, vec![Step::Acquire { client: 0, zero_pause: false }, Step::ToNode { client: 0, node: 0 }]);
    /// assert!(model.transition(&next, Action::Tick).is_none()); // a reply is in flight: a delay
    /// ```
    pub fn transition(&self, s: &State, a: Action) -> Option<(State, Vec<Step>)> {
        if !self.enabled(s, a) {
            return None;
        }
        let nn = self.setup.nodes;
        let mut n = s.clone();
        let mut out = Vec::new();
        let mut steps = Vec::new();
        match a {
            Action::Hold { client, node } => {
                n.budget.holds -= 1;
                n.held[client * nn + node] = true;
            }
            Action::Tick => {
                let t = s.rig.next_instant()?;
                if s.rig.in_flight() {
                    n.budget.delays -= 1;
                }
                if (0..self.setup.clients).any(|c| s.rig.timer_due(c)) {
                    n.budget.slow_drains -= 1;
                }
                // Between now and t only keys expire: each open belief is
                // checked at its strictest instant, the last one before t.
                for b in s.beliefs.iter().flatten() {
                    let last = t.min(b.end).saturating_sub(1);
                    if last >= b.start && last >= s.rig.now() {
                        self.check_beliefs_at(&mut n, last);
                    }
                }
                n.rig.apply(&self.setup, Step::At(t), &mut out).ok()?;
                steps.push(Step::At(t));
                for slot in n.beliefs.iter_mut() {
                    if slot.as_ref().is_some_and(|b| b.end <= t) {
                        *slot = None;
                    }
                }
            }
            Action::Step(step) => {
                match step {
                    Step::Acquire {
                        zero_pause: true, ..
                    } => n.budget.zero_pauses -= 1,
                    Step::Reset { .. } => n.budget.resets -= 1,
                    Step::Crash { .. } => n.budget.crashes -= 1,
                    Step::Flush { .. } => n.budget.flushes -= 1,
                    _ => {}
                }
                n.rig.apply(&self.setup, step, &mut out).ok()?;
                steps.push(step);
                match step {
                    Step::ToNode { client, node }
                        if n.rig.queued(&self.setup, client, node).0 == 0 =>
                    {
                        n.held[client * nn + node] = false;
                    }
                    Step::Reset { client, node } => n.held[client * nn + node] = false,
                    Step::Crash { node, .. } => {
                        for c in 0..self.setup.clients {
                            n.held[c * nn + node] = false;
                        }
                    }
                    Step::Timeout { client } if n.rig.timer_due(client) => {
                        n.flag(
                            TIMERS_PROGRESS,
                            format!(
                                "client {client}'s timer is still due after firing at {} µs",
                                n.rig.now()
                            ),
                        );
                    }
                    _ => {}
                }
            }
        }
        self.settle(&mut n, &mut out, &mut steps);
        self.absorb(&mut n, out);
        let now = n.rig.now();
        self.check_beliefs_at(&mut n, now);
        Some((n, steps))
    }
}

impl Model for RedlockModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.initial().0]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let ends = |p: &str| self.only.as_ref().is_none_or(|o| o.contains(&p));
        if s.bad.iter().any(|(p, _)| ends(p)) {
            return;
        }
        actions.extend(
            self.candidates()
                .into_iter()
                .filter(|a| self.enabled(s, *a)),
        );
    }

    fn next_state(&self, s: &State, a: Action) -> Option<State> {
        self.transition(s, a).map(|(n, _)| n)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut v = vec![
            Property::<Self>::always(MUTUAL_EXCLUSION, |_, s| !s.has(MUTUAL_EXCLUSION)),
            Property::<Self>::always(QUORUM_BACKING, |_, s| !s.has(QUORUM_BACKING)),
            Property::<Self>::always(ONE_EVENT, |_, s| {
                !s.has(ONE_EVENT) && s.rig.stuck().is_none()
            }),
            Property::<Self>::always(NO_KEY_LEFT, |_, s| {
                !s.rig.quiet() || s.rig.live_keys().is_empty()
            }),
            Property::<Self>::always(FENCE_UNIQUE, |_, s| !s.has(FENCE_UNIQUE)),
            Property::<Self>::always(FENCE_ORDER, |_, s| !s.has(FENCE_ORDER)),
            Property::<Self>::always(TIMERS_PROGRESS, |_, s| !s.has(TIMERS_PROGRESS)),
            Property::<Self>::sometimes(SOME_GRANT, |_, s| s.granted.iter().any(|g| *g)),
            Property::<Self>::sometimes(BOTH_GRANTED, |_, s| s.granted.iter().all(|g| *g)),
        ];
        if let Some(only) = &self.only {
            v.retain(|p| {
                only.contains(&p.name) || p.expectation != stateright::Expectation::Always
            });
        }
        v
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.rig.now() <= self.horizon && self.deadline.is_none_or(|d| WallInstant::now() < d)
    }
}

/// Whether `name` fails at `state` (the `always` properties of the model).
fn fails(model: &RedlockModel, name: &str, state: &State) -> bool {
    model.properties().iter().any(|p| {
        p.name == name
            && p.expectation == stateright::Expectation::Always
            && !(p.condition)(model, state)
    })
}

/// Runs `actions` from the initial state; the index of the first state at
/// which `property` fails, if every action was possible.
///
/// ```
/// use redlock_core::Weakness;
/// use redlock_mc::{Action, Budget, Foreign, RedlockModel, Setup, MUTUAL_EXCLUSION};
/// let weakness = Weakness { quorum_half: true, ..Weakness::default() };
/// let foreign = (0..2).map(|node| Foreign { node, until_ms: 500 }).collect();
/// let setup = Setup { foreign, weakness, ..Setup::sized(3, 1) };
/// let model = RedlockModel::new(setup, Budget::default(), Some(|c, w| c.weaken_with(w)));
/// let path: Vec<Action> = ["acquire 0", "to-client 0 0", "to-client 0 2"]
///     .iter()
///     .map(|a| a.parse().unwrap())
///     .collect();
/// assert_eq!(redlock_mc::violates(&model, &path, MUTUAL_EXCLUSION), Some(3));
/// assert_eq!(redlock_mc::violates(&model, &path[..2], MUTUAL_EXCLUSION), None);
/// ```
pub fn violates(model: &RedlockModel, actions: &[Action], property: &str) -> Option<usize> {
    let mut s = model.init_states().pop()?;
    if fails(model, property, &s) {
        return Some(0);
    }
    for (i, a) in actions.iter().enumerate() {
        s = model.next_state(&s, *a)?;
        if fails(model, property, &s) {
            return Some(i + 1);
        }
    }
    None
}

/// Shortens a counterexample: drops every block of actions (halves, then
/// quarters, ..., then single actions) whose removal still leaves a path to
/// a violation of `property`, until nothing more can go. The result is
/// the shortest path found, not necessarily the shortest that exists.
///
/// ```
/// use redlock_core::Weakness;
/// use redlock_mc::{Action, Budget, Foreign, RedlockModel, Setup, MUTUAL_EXCLUSION};
/// let weakness = Weakness { quorum_half: true, ..Weakness::default() };
/// let foreign = (0..2).map(|node| Foreign { node, until_ms: 500 }).collect();
/// let setup = Setup { foreign, weakness, ..Setup::sized(3, 1) };
/// let model = RedlockModel::new(setup, Budget::default(), Some(|c, w| c.weaken_with(w)));
/// let path: Vec<Action> = ["acquire 0", "to-client 0 0", "to-client 0 2"]
///     .iter()
///     .map(|a| a.parse().unwrap())
///     .collect();
/// // The reply from node 0 (a refusal) is not needed.
/// let short = redlock_mc::minimize(&model, &path, MUTUAL_EXCLUSION);
/// assert_eq!(short, vec![path[0], path[2]]);
/// ```
pub fn minimize(model: &RedlockModel, actions: &[Action], property: &str) -> Vec<Action> {
    let mut best: Vec<Action> = match violates(model, actions, property) {
        Some(k) => actions[..k].to_vec(),
        None => return actions.to_vec(),
    };
    loop {
        let before = best.len();
        let mut size = best.len().div_ceil(2).max(1);
        loop {
            let mut start = 0;
            while start < best.len() {
                let end = (start + size).min(best.len());
                let mut cand = best[..start].to_vec();
                cand.extend_from_slice(&best[end..]);
                match violates(model, &cand, property) {
                    Some(k) => {
                        cand.truncate(k);
                        best = cand;
                    }
                    None => start += size,
                }
            }
            if size == 1 {
                break;
            }
            size = size.div_ceil(2);
        }
        if best.len() == before {
            return best;
        }
    }
}

/// The schedule of `actions` (ticks become `at` steps with their instants),
/// for the simulator's replay.
///
/// ```
/// use redlock_core::Weakness;
/// use redlock_mc::{Action, Budget, Foreign, RedlockModel, Setup, MUTUAL_EXCLUSION};
/// let weakness = Weakness { quorum_half: true, ..Weakness::default() };
/// let foreign = (0..2).map(|node| Foreign { node, until_ms: 500 }).collect();
/// let setup = Setup { foreign, weakness, ..Setup::sized(3, 1) };
/// let model = RedlockModel::new(setup, Budget::default(), Some(|c, w| c.weaken_with(w)));
/// let path: Vec<Action> = ["acquire 0", "to-client 0 0", "to-client 0 2"]
///     .iter()
///     .map(|a| a.parse().unwrap())
///     .collect();
/// use redlock_sim::replay::{replay, Violation};
/// let schedule = redlock_mc::schedule(&model, &path);
/// assert_eq!(schedule.steps.len(), 6); // the SETs were delivered at once
/// let report = replay(&schedule, Some(|c, w| c.weaken_with(w))).unwrap();
/// assert!(report.found(Violation::MutualExclusion));
/// ```
pub fn schedule(model: &RedlockModel, actions: &[Action]) -> Schedule {
    let (mut s, mut steps) = model.initial();
    for a in actions {
        let Some((next, taken)) = model.transition(&s, *a) else {
            break;
        };
        steps.extend(taken);
        s = next;
    }
    Schedule {
        setup: model.setup.clone(),
        steps,
    }
}

fn short(v: &[u8]) -> String {
    // Tokens: 40 hex characters of the operation, 8 of the attempt.
    let s = String::from_utf8_lossy(v);
    if s.len() == 48 {
        format!("{}#{}", &s[..4], s[40..].trim_start_matches('0'))
    } else {
        s.into_owned()
    }
}

/// A readable trace of `actions`: each step with the true time, the lock
/// keys on the nodes and where each client is.
///
/// ```
/// use redlock_core::Weakness;
/// use redlock_mc::{Action, Budget, Foreign, RedlockModel, Setup, MUTUAL_EXCLUSION};
/// let weakness = Weakness { quorum_half: true, ..Weakness::default() };
/// let foreign = (0..2).map(|node| Foreign { node, until_ms: 500 }).collect();
/// let setup = Setup { foreign, weakness, ..Setup::sized(3, 1) };
/// let model = RedlockModel::new(setup, Budget::default(), Some(|c, w| c.weaken_with(w)));
/// let path: Vec<Action> = ["acquire 0", "to-client 0 0", "to-client 0 2"]
///     .iter()
///     .map(|a| a.parse().unwrap())
///     .collect();
/// let text = redlock_mc::describe(&model, &path);
/// assert!(text.contains("to-client 0 2 (+OK)"));
/// assert!(text.contains("VIOLATION mutual exclusion"));
/// ```
pub fn describe(model: &RedlockModel, actions: &[Action]) -> String {
    let mut text = String::new();
    let Some(mut s) = model.init_states().pop() else {
        return text;
    };
    for (i, a) in actions.iter().enumerate() {
        let Some((next, steps)) = model.transition(&s, *a) else {
            text.push_str(&format!("{i:>3}. {a}: not possible\n"));
            break;
        };
        // What each delivery carried: the action's own, then the requests
        // that went out at once.
        let mut rig = s.rig.clone();
        let mut own = None;
        let mut sent = Vec::new();
        for (k, step) in steps.iter().enumerate() {
            let to_client = matches!(step, Step::ToClient { .. });
            if let Some(bytes) = rig.chunk(&model.setup, *step) {
                let what = redlock_sim::replay::summarize(bytes, !to_client);
                match step {
                    _ if k == 0 && matches!(a, Action::Step(_)) => own = Some(what),
                    Step::ToNode { client, node } | Step::OldToNode { client, node } => {
                        sent.push(format!("c{client}→n{node} {what}"))
                    }
                    _ => {}
                }
            }
            if rig.apply(&model.setup, *step, &mut Vec::new()).is_err() {
                break;
            }
        }
        s = next;
        let r = &s.rig;
        let keys: Vec<String> = (0..model.setup.nodes)
            .map(|n| {
                if !r.node_up(n) {
                    return format!("n{n}:down");
                }
                let reg = r.register(n);
                let reg = if reg > 0 {
                    format!(" fence {reg}")
                } else {
                    String::new()
                };
                match r.lock_key(n) {
                    Some((v, Some(e))) if r.node_ms(n) <= e => {
                        format!("n{n}:{}{reg}", short(v))
                    }
                    _ => format!("n{n}:-{reg}"),
                }
            })
            .collect();
        let work: Vec<String> = (0..model.setup.clients)
            .map(|c| match r.work(c) {
                Work::Idle => format!("c{c}:idle"),
                Work::Acquiring { .. } => format!("c{c}:acquiring"),
                Work::Holding { lease, .. } => format!(
                    "c{c}:holds {}{}",
                    short(lease.token().as_bytes()),
                    lease
                        .fence()
                        .map(|f| format!(" fence {f}"))
                        .unwrap_or_default()
                ),
                Work::Extending { .. } => format!("c{c}:extending"),
                Work::Releasing { .. } => format!("c{c}:releasing"),
                Work::Done => format!("c{c}:done"),
            })
            .collect();
        let shown = match (a, own) {
            (Action::Tick, _) => format!("tick to {} µs", r.now()),
            (other, Some(what)) => format!("{other} ({what})"),
            (other, None) => other.to_string(),
        };
        text.push_str(&format!(
            "{i:>3}. [{:>7} µs] {shown:<34} | {} | {}\n",
            r.now(),
            keys.join(" "),
            work.join(" ")
        ));
        if !sent.is_empty() {
            text.push_str(&format!(
                "{:>17}delivered at once: {}\n",
                "",
                sent.join(", ")
            ));
        }
    }
    for (p, msg) in s.violations() {
        text.push_str(&format!("     VIOLATION {p}: {msg}\n"));
    }
    text
}

/// How to run the checker.
///
/// ```
/// use std::time::Duration;
/// use redlock_mc::{CheckOptions, Search};
/// let opts = CheckOptions {
///     threads: 2,
///     timeout: Some(Duration::from_secs(60)),
///     search: Search::BreadthFirst,
///     ..CheckOptions::default()
/// };
/// assert!(opts.stop_at_failure && opts.minimize);
/// ```
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Worker threads.
    pub threads: usize,
    /// Give up after this long (the report then says it is incomplete).
    pub timeout: Option<Duration>,
    /// Stop at the first failing property (else: explore everything).
    pub stop_at_failure: bool,
    /// Shorten counterexamples with [`minimize`].
    pub minimize: bool,
    /// Stop after generating this many states (the report then says it is
    /// incomplete).
    pub max_states: Option<usize>,
    /// The search order. Breadth-first finds a counterexample with the
    /// fewest actions (a minimal trace), at the cost of memory: a whole
    /// frontier of states is kept, so it is for the small setups only.
    pub search: Search,
}

/// The order in which [`check`] explores states.
///
/// ```
/// assert_eq!(redlock_mc::CheckOptions::default().search, redlock_mc::Search::DepthFirst);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Search {
    /// Depth-first (stateright's DFS): memory grows with the states seen,
    /// not with a frontier. Counterexamples are shortened by [`minimize`].
    #[default]
    DepthFirst,
    /// Breadth-first (stateright's BFS): the first counterexample found for
    /// a property has the fewest actions of any path to it.
    BreadthFirst,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            threads: 1,
            timeout: None,
            stop_at_failure: true,
            minimize: true,
            max_states: None,
            search: Search::DepthFirst,
        }
    }
}

/// A counterexample.
///
/// ```
/// use redlock_core::Weakness;
/// use redlock_mc::{Action, Budget, Foreign, RedlockModel, Setup, MUTUAL_EXCLUSION};
/// let weakness = Weakness { quorum_half: true, ..Weakness::default() };
/// let foreign = (0..2).map(|node| Foreign { node, until_ms: 500 }).collect();
/// let setup = Setup { foreign, weakness, ..Setup::sized(3, 1) };
/// let model = RedlockModel::new(setup, Budget::default(), Some(|c, w| c.weaken_with(w)));
/// let path: Vec<Action> = ["acquire 0", "to-client 0 0", "to-client 0 2"]
///     .iter()
///     .map(|a| a.parse().unwrap())
///     .collect();
/// use redlock_mc::{check, CheckOptions, Search};
/// let opts = CheckOptions { search: Search::BreadthFirst, ..CheckOptions::default() };
/// let report = check(model, &opts);
/// let failure = &report.failures[0];
/// assert_eq!(failure.property, MUTUAL_EXCLUSION);
/// assert_eq!(failure.actions.len(), 2); // acquire, then node 2's OK
/// ```
#[derive(Clone, Debug)]
pub struct Failure {
    /// The property.
    pub property: &'static str,
    /// The path the depth-first search found, to the violation.
    pub found: Vec<Action>,
    /// The shortest path found from it ([`minimize`]).
    pub actions: Vec<Action>,
}

/// What a check found, and what it cost.
///
/// ```
/// use redlock_mc::{check, Budget, CheckOptions, RedlockModel, Setup};
/// let model = RedlockModel::new(Setup::sized(1, 1), Budget::default(), None);
/// let report = check(model, &CheckOptions::default());
/// assert!(report.complete && report.unique_states <= report.states);
/// assert!(report.to_string().contains("complete"));
/// ```
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// States generated (with repeats).
    pub states: usize,
    /// Distinct states.
    pub unique_states: usize,
    /// Longest path explored.
    pub max_depth: usize,
    /// Wall time of the search (not of minimisation).
    pub elapsed: Duration,
    /// The process's peak resident memory after the search, in KiB (Linux).
    pub peak_rss_kib: Option<u64>,
    /// Whether every state within the bounds was explored.
    pub complete: bool,
    /// Counterexamples, one per failing property.
    pub failures: Vec<Failure>,
    /// Coverage properties for which an example was found.
    pub covered: Vec<&'static str>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} states ({} distinct), max depth {}, {:.1} s, peak RSS {} MiB, {}; failures: {}; covered: {}",
            self.states,
            self.unique_states,
            self.max_depth,
            self.elapsed.as_secs_f64(),
            self.peak_rss_kib.map_or("?".to_string(), |k| (k / 1024).to_string()),
            if self.complete { "complete" } else { "INCOMPLETE" },
            if self.failures.is_empty() {
                "none".to_string()
            } else {
                self.failures
                    .iter()
                    .map(|x| format!("{} ({} steps)", x.property, x.actions.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            self.covered.join(", ")
        )
    }
}

/// The process's peak resident set size (`VmHWM`), in KiB.
///
/// ```
/// if cfg!(target_os = "linux") {
///     assert!(redlock_mc::peak_rss_kib().is_some_and(|k| k > 0));
/// }
/// ```
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Explores `model` depth-first (stateright's DFS) and reports.
///
/// ```
/// use std::time::Duration;
/// use redlock_mc::{check, Budget, CheckOptions, RedlockModel, Setup};
/// let model = RedlockModel::new(Setup::default(), Budget::default(), None);
/// // Too short to finish: the report says so.
/// let opts = CheckOptions { max_states: Some(1_000), ..CheckOptions::default() };
/// let report = check(model, &opts);
/// assert!(!report.complete && report.failures.is_empty());
/// ```
pub fn check(model: RedlockModel, opts: &CheckOptions) -> CheckReport {
    let start = WallInstant::now();
    let mut timed = model.clone();
    timed.deadline = opts.timeout.map(|t| start + t);
    let mut builder =
        timed
            .checker()
            .threads(opts.threads.max(1))
            .finish_when(if opts.stop_at_failure {
                HasDiscoveries::AnyFailures
            } else {
                HasDiscoveries::All
            });
    if let Some(n) = opts.max_states {
        builder = builder.target_state_count(n);
    }

    let checker: Box<dyn Checker<RedlockModel>> = match opts.search {
        Search::DepthFirst => Box::new(builder.spawn_dfs().join()),
        Search::BreadthFirst => Box::new(builder.spawn_bfs().join()),
    };
    let elapsed = start.elapsed();
    let discoveries: BTreeMap<&'static str, Vec<Action>> = checker
        .discoveries()
        .into_iter()
        .map(|(k, p)| (k, p.into_actions()))
        .collect();
    let properties = model.properties();
    let mut failures = Vec::new();
    let mut covered = Vec::new();
    for (name, path) in discoveries {
        let always = properties
            .iter()
            .any(|p| p.name == name && p.expectation == stateright::Expectation::Always);
        if always {
            let actions = if opts.minimize {
                minimize(&model, &path, name)
            } else {
                path.clone()
            };
            failures.push(Failure {
                property: name,
                found: path,
                actions,
            });
        } else {
            covered.push(name);
        }
    }
    let complete = failures.is_empty()
        && opts.timeout.is_none_or(|t| elapsed < t)
        && opts.max_states.is_none_or(|n| checker.state_count() < n);
    CheckReport {
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        peak_rss_kib: peak_rss_kib(),
        complete,
        failures,
        covered,
    }
}
