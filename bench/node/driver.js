#!/usr/bin/env node
// node-redlock driver for bench/run.sh: one measurement of one workload with
// node-redlock (npm `redlock` v5, pinned in package-lock.json) over `ioredis`,
// the same workloads, warm-up and output figures as the Rust implementations
// in ../src/workload.rs. The Rust runner spawns it once per measurement and
// reads the one JSON line it prints on stdout.
//
//   node driver.js --workload seq|cK|kC --duration SECS --prefix P \
//                  --ttl-ms MS URL [URL ...]
//
// seq: sequential acquire+release of a fresh resource, one at a time
//      (latency percentiles, CPU and context switches per cycle).
// cK:  K concurrent workers on one Redlock instance (one ioredis client per
//      node), each cycling fresh resources: cycles/s.
// kC:  C Redlock instances (each its own ioredis clients) on one resource; a
//      busy attempt waits a random 0.5-1.5 ms (Node truncates timers to whole
//      milliseconds, so this is 1 ms) and retries: acquisitions/s, and
//      overlaps (a client entering the critical section while another is in
//      it; the section spans an event-loop turn so that an overlap would be
//      seen). Must be 0.
//
// Each library with its defaults and one shared client, as a new user would;
// like every implementation of the bench, one attempt per cycle
// (retryCount: 0): retries are the workload's.
"use strict";

const Redis = require("ioredis");
const { default: Redlock, ExecutionError } = require("redlock");

const WARMUP = 20;

function parseArgs(argv) {
  const args = { urls: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--workload") args.workload = value();
    else if (a === "--duration") args.duration = Number(value());
    else if (a === "--prefix") args.prefix = value();
    else if (a === "--ttl-ms") args.ttlMs = Number(value());
    else if (a.startsWith("--")) throw new Error(`unknown flag ${a}`);
    else args.urls.push(a);
  }
  if (!args.workload) throw new Error("--workload is required");
  if (!(args.duration > 0)) throw new Error("--duration must be a positive number");
  if (!(Number.isInteger(args.ttlMs) && args.ttlMs > 0)) throw new Error("--ttl-ms must be a positive integer");
  if (!args.prefix) throw new Error("--prefix is required");
  if (args.urls.length === 0) throw new Error("at least one node URL is required");
  return args;
}

/** One client as a new user would make it: one ioredis connection per node. */
function makeClient(urls) {
  // ioredis defaults (the Rust runner bounds the whole measurement's time,
  // so a node that is gone cannot hang the bench).
  const nodes = urls.map((url) => new Redis(url));
  const redlock = new Redlock(nodes, { retryCount: 0 });
  return { redlock, nodes };
}

async function closeClient(c) {
  await Promise.all(c.nodes.map((n) => n.quit().catch(() => n.disconnect())));
}

const Outcome = { Held: 0, Busy: 1 };

/** One cycle: one acquire attempt, `critical` if acquired, one release. */
async function cycle(redlock, resource, ttlMs, critical) {
  let lock;
  try {
    lock = await redlock.acquire([resource], ttlMs);
  } catch (e) {
    if (e instanceof ExecutionError) return Outcome.Busy;
    throw e;
  }
  if (critical) await critical();
  await lock.release();
  return Outcome.Held;
}

class Tally {
  constructor() {
    this.cycles = 0;
    this.failures = 0;
    this.overlaps = 0;
    this.firstError = null;
  }
  /** Records an outcome; true iff it was held. */
  record(outcome, busyIsFailure) {
    if (outcome === Outcome.Held) {
      this.cycles++;
      return true;
    }
    if (busyIsFailure) this.fail("busy on an uncontended resource");
    return false;
  }
  fail(message) {
    this.failures++;
    if (this.firstError === null) this.firstError = String(message);
  }
}

/** Runs `f`, recording a thrown error as a failure. */
async function attempt(tally, f) {
  try {
    return await f();
  } catch (e) {
    tally.fail(e && e.message ? e.message : e);
    return null;
  }
}

function nowNs() {
  return process.hrtime.bigint();
}

function usage() {
  const cpu = process.cpuUsage();
  const ru = process.resourceUsage();
  return {
    cpuUs: cpu.user + cpu.system,
    switches: ru.voluntaryContextSwitches + ru.involuntaryContextSwitches,
  };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.round((sorted.length - 1) * p);
  return Number(sorted[i]) / 1000;
}

async function warmUp(redlock, prefix, ttlMs, count) {
  for (let i = 0; i < count; i++) {
    const outcome = await cycle(redlock, `${prefix}:w${i}`, ttlMs, null);
    if (outcome !== Outcome.Held) throw new Error("warm-up: busy on an uncontended resource");
  }
}

async function sequential(args) {
  const c = makeClient(args.urls);
  try {
    await warmUp(c.redlock, args.prefix, args.ttlMs, WARMUP);
    const tally = new Tally();
    const latencies = [];
    const durationNs = BigInt(Math.round(args.duration * 1e9));
    const before = usage();
    const start = nowNs();
    let i = 0;
    while (nowNs() - start < durationNs) {
      const name = `${args.prefix}:${i}`;
      const t = nowNs();
      const outcome = await attempt(tally, () => cycle(c.redlock, name, args.ttlMs, null));
      const dt = nowNs() - t;
      if (outcome !== null && tally.record(outcome, true)) latencies.push(dt);
      i++;
    }
    const elapsed = Number(nowNs() - start) / 1e9;
    const after = usage();
    latencies.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const n = Math.max(latencies.length, 1);
    return {
      ...finish(tally, elapsed),
      p50_us: percentile(latencies, 0.5),
      p90_us: percentile(latencies, 0.9),
      p99_us: percentile(latencies, 0.99),
      p999_us: percentile(latencies, 0.999),
      cpu_us: (after.cpuUs - before.cpuUs) / n,
      switches: (after.switches - before.switches) / n,
    };
  } finally {
    await closeClient(c);
  }
}

async function concurrent(args, k) {
  const c = makeClient(args.urls);
  try {
    await warmUp(c.redlock, args.prefix, args.ttlMs, WARMUP);
    const tally = new Tally();
    const durationNs = BigInt(Math.round(args.duration * 1e9));
    const before = usage();
    const start = nowNs();
    const workers = [];
    for (let w = 0; w < k; w++) {
      workers.push(
        (async () => {
          let i = 0;
          while (nowNs() - start < durationNs) {
            const name = `${args.prefix}:${w}:${i}`;
            const outcome = await attempt(tally, () => cycle(c.redlock, name, args.ttlMs, null));
            if (outcome !== null) tally.record(outcome, true);
            i++;
          }
        })(),
      );
    }
    await Promise.all(workers);
    const elapsed = Number(nowNs() - start) / 1e9;
    const after = usage();
    const n = Math.max(tally.cycles, 1);
    return {
      ...finish(tally, elapsed),
      cpu_us: (after.cpuUs - before.cpuUs) / n,
      switches: (after.switches - before.switches) / n,
    };
  } finally {
    await closeClient(c);
  }
}

function spinMicros(us) {
  const until = nowNs() + BigInt(us * 1000);
  while (nowNs() < until) {
    // busy: the critical section's work
  }
}

async function contention(args, count) {
  const clients = [];
  try {
    for (let n = 0; n < count; n++) {
      const c = makeClient(args.urls);
      clients.push(c);
      await warmUp(c.redlock, `${args.prefix}:w${n}`, args.ttlMs, WARMUP / 4);
    }
    const resource = `${args.prefix}:contended`;
    const tally = new Tally();
    let holders = 0;
    const critical = async () => {
      if (holders++ !== 0) tally.overlaps++;
      spinMicros(20);
      // Hold across an event-loop turn: the other clients' replies are
      // processed meanwhile, so a second holder would be counted.
      await new Promise((resolve) => setImmediate(resolve));
      holders--;
    };
    const durationNs = BigInt(Math.round(args.duration * 1e9));
    const start = nowNs();
    await Promise.all(
      clients.map(async (c) => {
        while (nowNs() - start < durationNs) {
          const outcome = await attempt(tally, () => cycle(c.redlock, resource, args.ttlMs, critical));
          if (outcome === null || !tally.record(outcome, false)) {
            await new Promise((resolve) => setTimeout(resolve, 0.5 + Math.random()));
          }
        }
      }),
    );
    return finish(tally, Number(nowNs() - start) / 1e9);
  } finally {
    await Promise.all(clients.map(closeClient));
  }
}

function finish(tally, elapsed) {
  return {
    rate: tally.cycles / elapsed,
    cycles: tally.cycles,
    failures: tally.failures,
    overlaps: tally.overlaps,
    first_error: tally.firstError,
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const w = args.workload;
  let result;
  if (w === "seq") result = await sequential(args);
  else if (/^c[0-9]+$/.test(w)) result = await concurrent(args, Number(w.slice(1)));
  else if (/^k[0-9]+$/.test(w)) result = await contention(args, Number(w.slice(1)));
  else throw new Error(`unknown workload ${w}`);
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`node-redlock driver: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  },
);
