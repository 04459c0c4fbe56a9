#!/usr/bin/env python3
"""Benchmark: acquire + release with redlock_rs and its Python peers, on
real redis-server processes this script starts on loopback.

    python3 python/bench/run.py            # 2 s per measurement, 3 rounds
    python3 python/bench/run.py --quick    # 1 s, 1 round
    python3 python/bench/run.py --duration 5 --rounds 5 --nodes 5 --threads 1,16

Every implementation runs in a venv of its own under ``python/bench/.venvs``
(redlock-py and glasslion's redlock both install a module named
``redlock``), with pinned versions:

=================  =================================================
redlock_rs         this package (``pip install ./python``, release)
redlock-py 1.0.8   ``Redlock(...).lock(r, ttl_ms)`` / ``unlock``
redlock 1.2.0      glasslion: ``RedLockFactory(...).create_lock(r)``
pottery 3.0.1      ``Redlock(key=r, masters=...)``
python-redis-lock  ``redis_lock.Lock``: single-instance, so it uses the
4.0.1              first node only whatever N is (marked ``1 node``)
=================  =================================================

All with redis-py 5.2.1 where they use it. TTL 10 s, one attempt per cycle,
a fresh resource per cycle. Each measurement runs the implementations in a
rotated order per round, in a worker process: ``threads`` threads sharing
one client (one lock manager) cycle for ``duration`` seconds. The report
gives cycles/s (median over rounds), the median cycle latency, and each
peer's time per cycle as a ratio to redlock_rs (above 1: redlock_rs is
faster). Figures from a shared machine are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

HERE = pathlib.Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
VENVS = HERE / ".venvs"

REDIS_PY = "redis==5.2.1"
IMPLS: Dict[str, List[str]] = {
    "redlock_rs": [str(PYTHON_DIR)],
    "redlock-py": ["redlock-py==1.0.8", REDIS_PY],
    "glasslion": ["redlock==1.2.0", REDIS_PY],
    "pottery": ["pottery==3.0.1", REDIS_PY],
    "python-redis-lock": ["python-redis-lock==4.0.1", REDIS_PY],
}
SINGLE_NODE = {"python-redis-lock"}
TTL_MS = 10_000


# ------------------------------------------------------------------ worker


def make_cycle(impl: str, urls: List[str]):
    """A function doing one acquire + release of a given resource."""
    if impl == "redlock_rs":
        from redlock_rs import Client, Retry

        client = Client(urls, ttl=TTL_MS / 1000, retry=Retry.none())

        def cycle(r: str) -> None:
            client.lock(r, keep=False).release()

        return cycle
    if impl == "redlock-py":
        from redlock import Redlock

        dlm = Redlock(urls, retry_count=1)

        def cycle(r: str) -> None:
            lock = dlm.lock(r, TTL_MS)
            assert lock, "not acquired"
            dlm.unlock(lock)

        return cycle
    if impl == "glasslion":
        from redlock import RedLockFactory

        factory = RedLockFactory([{"url": u} for u in urls])

        def cycle(r: str) -> None:
            lock = factory.create_lock(r, ttl=TTL_MS, retry_times=1)
            assert lock.acquire(), "not acquired"
            lock.release()

        return cycle
    if impl == "pottery":
        import redis
        from pottery import Redlock

        masters = {redis.Redis.from_url(u) for u in urls}

        def cycle(r: str) -> None:
            lock = Redlock(key=r, masters=masters, auto_release_time=TTL_MS / 1000)
            assert lock.acquire(blocking=False), "not acquired"
            lock.release()

        return cycle
    if impl == "python-redis-lock":
        import redis
        import redis_lock

        conn = redis.Redis.from_url(urls[0])

        def cycle(r: str) -> None:
            lock = redis_lock.Lock(conn, r, expire=TTL_MS // 1000)
            assert lock.acquire(blocking=False), "not acquired"
            lock.release()

        return cycle
    raise SystemExit(f"unknown implementation {impl}")


def worker(impl: str, urls: List[str], threads: int, duration: float) -> None:
    cycle = make_cycle(impl, urls)
    cycle(f"bench:{impl}:warm")
    stop = time.monotonic() + duration
    lat: List[List[float]] = [[] for _ in range(threads)]
    errors: List[str] = []

    def run(t: int) -> None:
        i = 0
        mine = lat[t]
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_perf:
                    return
                cycle(f"bench:{impl}:{os.getpid()}:{t}:{i}")
                mine.append(time.perf_counter() - t0)
                i += 1
        except Exception as e:  # reported, not hidden
            errors.append(repr(e))

    stop_perf = time.perf_counter() + (stop - time.monotonic())
    start = time.perf_counter()
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - start
    all_lat = sorted(x for l in lat for x in l)
    print(json.dumps({
        "cycles": len(all_lat),
        "seconds": elapsed,
        "p50_us": all_lat[len(all_lat) // 2] * 1e6 if all_lat else None,
        "errors": errors[:3],
    }))


# ------------------------------------------------------------ orchestrator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(n: int, workdir: str) -> List[subprocess.Popen]:
    procs = []
    for i in range(n):
        port = free_port()
        d = os.path.join(workdir, f"r{i}")
        os.mkdir(d)
        p = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", d],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        p.port = port  # type: ignore[attr-defined]
        procs.append(p)
    for p in procs:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", p.port), 0.2).close()  # type: ignore[attr-defined]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.02)
    return procs


def venv_python(impl: str) -> str:
    d = VENVS / impl
    py = d / "bin" / "python"
    stamp = d / "installed.json"
    want = json.dumps(IMPLS[impl])
    if impl == "redlock_rs" or not stamp.exists() or stamp.read_text() != want:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(d)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        print(f"-- installing {impl}: {' '.join(IMPLS[impl])}", file=sys.stderr)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *IMPLS[impl]], check=True)
        stamp.write_text(want)
    return str(py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--urls", help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nodes", default="1,3,5")
    ap.add_argument("--threads", default="1,16")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--quick", action="store_true", help="1 s per measurement, 1 round")
    ap.add_argument("--skip-install", action="store_true", help="reuse the venvs as they are")
    args = ap.parse_args()

    if args.worker:
        worker(args.worker, args.urls.split(","), int(args.threads), args.duration)
        return
    if args.quick:
        args.duration, args.rounds = 1.0, 1
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH")
    impls = args.impls.split(",")
    pythons = {
        i: (str(VENVS / i / "bin" / "python") if args.skip_install else venv_python(i)) for i in impls
    }
    node_counts = [int(n) for n in args.nodes.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]

    workdir = tempfile.mkdtemp(prefix="redlock-pybench-")
    procs = start_redis(max(node_counts), workdir)
    load_before = os.getloadavg()
    results: Dict[tuple, List[dict]] = {}
    try:
        for rnd in range(args.rounds):
            for n in node_counts:
                urls = [f"redis://127.0.0.1:{p.port}" for p in procs[:n]]  # type: ignore[attr-defined]
                for threads in thread_counts:
                    order = impls[rnd % len(impls):] + impls[: rnd % len(impls)]
                    for impl in order:
                        out = subprocess.run(
                            [pythons[impl], __file__, "--worker", impl, "--urls", ",".join(urls),
                             "--threads", str(threads), "--duration", str(args.duration)],
                            capture_output=True, text=True, timeout=args.duration * 10 + 60,
                        )
                        if out.returncode != 0:
                            print(out.stderr, file=sys.stderr)
                            raise SystemExit(f"worker {impl} failed")
                        results.setdefault((n, threads, impl), []).append(json.loads(out.stdout))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    report(results, impls, node_counts, thread_counts, args, load_before, load_after)


def report(results, impls, node_counts, thread_counts, args, before, after) -> None:
    print(f"# redlock_rs vs Python peers: acquire + release, TTL {TTL_MS // 1000} s\n")
    print(f"{args.rounds} round(s) x {args.duration} s per measurement; load average "
          f"{before[0]:.2f} before, {after[0]:.2f} after (noisy: compare within this run).\n")
    print("| nodes | threads | implementation | cycles/s | p50 µs | time per cycle vs redlock_rs |")
    print("|---:|---:|---|---:|---:|---:|")
    for n in node_counts:
        for threads in thread_counts:
            rates = {}
            for impl in impls:
                runs = results[(n, threads, impl)]
                rate = statistics.median(r["cycles"] / r["seconds"] for r in runs)
                p50 = statistics.median(r["p50_us"] for r in runs if r["p50_us"] is not None)
                errs = [e for r in runs for e in r["errors"]]
                rates[impl] = (rate, p50, errs)
            ours = rates.get("redlock_rs", (None,))[0]
            for impl in impls:
                rate, p50, errs = rates[impl]
                ratio = f"{ours / rate:.2f}x" if ours and rate else "-"
                name = impl + (" (1 node)" if impl in SINGLE_NODE and n > 1 else "")
                note = f" errors: {errs[0]}" if errs else ""
                print(f"| {n} | {threads} | {name} | {rate:.0f} | {p50:.0f} | {ratio}{note} |")


if __name__ == "__main__":
    main()
