//! The load: workers that take one of the resources in one of the API's
//! styles, run a protected section under it, give it back, and record what
//! happened. Each worker draws its choices from its own RNG stream of the
//! seed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::api::{self, Held, Style};
use crate::record::{Recorder, Who};
use crate::timeline::Timeline;

/// What every worker shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) rec: Recorder,
    pub(crate) timeline: Arc<Timeline>,
    pub(crate) resources: Vec<String>,
    pub(crate) stop: AtomicBool,
    pub(crate) seed: u64,
}

/// One operation's choices.
#[derive(Clone, Copy, Debug)]
struct Choice {
    res: usize,
    style: Style,
    /// How long the section holds the lock.
    hold: Duration,
    /// A long section (checks for loss every 50 ms).
    long: bool,
    /// Pause after the operation.
    think: Duration,
}

/// Long sections outlive a third of the TTL, so their lock is extended
/// at least once.
const LONG: (u64, u64) = (800, 2_500);
/// Steps of a long section, between checks for loss.
const STEP: Duration = Duration::from_millis(50);

fn rng_for(seed: u64, transport: &str, worker: usize) -> StdRng {
    let t = if transport == "std" {
        1u64 << 32
    } else {
        2u64 << 32
    };
    StdRng::seed_from_u64(seed ^ t ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn choose(rng: &mut StdRng, tokio: bool, resources: usize) -> Choice {
    let roll = rng.random_range(0..100);
    let style = if tokio {
        match roll {
            0..35 => Style::WithLock,
            35..60 => Style::Lock,
            60..80 => Style::TryLock,
            _ => Style::Keep,
        }
    } else {
        match roll {
            0..45 => Style::Lock,
            45..75 => Style::TryLock,
            _ => Style::Keep,
        }
    };
    let long = style.kept() && rng.random_bool(0.08);
    let hold = if long {
        Duration::from_millis(rng.random_range(LONG.0..=LONG.1))
    } else {
        Duration::from_micros(rng.random_range(0..=3_000))
    };
    Choice {
        res: rng.random_range(0..resources),
        style,
        hold,
        long,
        think: Duration::from_micros(rng.random_range(0..=15_000)),
    }
}

fn record(
    ctx: &Ctx,
    who: Who,
    c: &Choice,
    t0: u64,
    acq: &AtomicU64,
    r: &Result<api::Ended, api::NotTaken>,
) {
    let t_end = ctx.rec.clock().now();
    let t_acq = match acq.load(Ordering::SeqCst) {
        0 => t_end,
        t => t,
    };
    let down = (
        ctx.timeline.max_down(t0, t_acq),
        ctx.timeline.max_down(t_acq, t_end),
    );
    ctx.rec.op(who, c.res, c.style, (t0, t_acq, t_end), down, r);
}

/// A blocking worker: runs until `ctx.stop`.
pub(crate) fn std_worker(ctx: &Ctx, client: &api::StdClient, worker: usize) {
    let who = Who {
        transport: "std",
        worker,
    };
    let mut rng = rng_for(ctx.seed, "std", worker);
    while !ctx.stop.load(Ordering::SeqCst) {
        let c = choose(&mut rng, false, ctx.resources.len());
        let acq = AtomicU64::new(0);
        let t0 = ctx.rec.clock().now();
        let r = api::std_op(client, c.style, &ctx.resources[c.res], |held: &dyn Held| {
            let mut open = ctx.rec.begin(c.res, held);
            acq.store(ctx.rec.clock().now().max(1), Ordering::SeqCst);
            if c.long {
                let mut left = c.hold;
                while !left.is_zero() {
                    let nap = left.min(STEP);
                    std::thread::sleep(nap);
                    left -= nap;
                    if !ctx.rec.step(&mut open, held) {
                        break;
                    }
                }
            } else {
                std::thread::sleep(c.hold);
            }
            ctx.rec.end(open, held, who, c.long);
        });
        record(ctx, who, &c, t0, &acq, &r);
        std::thread::sleep(c.think);
    }
}

/// An async worker: runs until `ctx.stop`.
pub(crate) async fn tokio_worker(ctx: Arc<Ctx>, client: api::TokioClient, worker: usize) {
    let who = Who {
        transport: "tokio",
        worker,
    };
    let mut rng = rng_for(ctx.seed, "tokio", worker);
    while !ctx.stop.load(Ordering::SeqCst) {
        let c = choose(&mut rng, true, ctx.resources.len());
        let acq = AtomicU64::new(0);
        let t0 = ctx.rec.clock().now();
        let section = |held: Arc<dyn Held>| {
            let ctx = &ctx;
            let acq = &acq;
            async move {
                let held: &dyn Held = &*held;
                let mut open = ctx.rec.begin(c.res, held);
                acq.store(ctx.rec.clock().now().max(1), Ordering::SeqCst);
                if c.long {
                    let mut left = c.hold;
                    while !left.is_zero() {
                        let nap = left.min(STEP);
                        tokio::time::sleep(nap).await;
                        left -= nap;
                        if !ctx.rec.step(&mut open, held) {
                            break;
                        }
                    }
                } else {
                    tokio::time::sleep(c.hold).await;
                }
                ctx.rec.end(open, held, who, c.long);
            }
        };
        let r = api::tokio_op(&client, c.style, &ctx.resources[c.res], section).await;
        record(&ctx, who, &c, t0, &acq, &r);
        tokio::time::sleep(c.think).await;
    }
}
