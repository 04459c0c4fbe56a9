#!/usr/bin/env bash
# The whole benchmark in one command (see bench/README.md):
#   bench/run.sh            full run (5 s per measurement, 3 rounds)
#   bench/run.sh --quick    smoke run (0.5 s per measurement, 1 round, under ~2 minutes)
# Any other arguments are passed to the redlock-bench binary (e.g. --nodes 5,
# --impls quorum-min,tokio, --workloads seq,c16, --duration 2, --rounds 5).
#
# It builds with --release, installs node-redlock from node/package-lock.json
# (`npm ci`), pins the clients (the bench and the node driver it spawns) to
# one CPU and the redis-server nodes to another with `taskset`, runs the
# workloads (every implementation in turn within each round), writes
# results.md, then appends the core's cost (callgrind instructions and heap
# allocations per acquire+release cycle), and prints the README-ready table
# and the targets at the end.
#
# Environment: CLIENT_CPU / SERVER_CPU (default 0 / 1) choose the CPUs;
# CARGO_TARGET_DIR as usual.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

quick=0
for a in "$@"; do [ "$a" = "--quick" ] && quick=1; done

need() { command -v "$1" >/dev/null || { echo "run.sh: $1 is needed on PATH ($2)" >&2; exit 1; }; }
need redis-server "the nodes"
need node "node-redlock is run with the system node"
need npm "node-redlock is installed with npm ci"
need taskset "clients and servers are pinned to separate CPUs (util-linux)"

cargo build --release --bins
bin="$CARGO_TARGET_DIR/release"

# node-redlock, exactly as pinned in the lock file.
(cd node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# CPU placement: clients on one CPU, servers on the other, so that runs are
# not bimodal (the scheduler otherwise moves them around). The servers are
# started by the bench through a wrapper (REDIS_SERVER is read by the test
# harness) that execs redis-server under taskset, so every thread of it is
# pinned; the bench reports the CPUs it finds each server on.
CLIENT_CPU="${CLIENT_CPU:-0}"
SERVER_CPU="${SERVER_CPU:-1}"
cpus=$(nproc)
pin=()
if [ "$cpus" -ge 2 ]; then
  wrapper="$CARGO_TARGET_DIR/redis-server-pinned"
  real=$(command -v redis-server)
  printf '#!/bin/sh\nexec taskset -c %s %s "$@"\n' "$SERVER_CPU" "$real" > "$wrapper"
  chmod +x "$wrapper"
  export REDIS_SERVER="$wrapper"
  pin=(taskset -c "$CLIENT_CPU")
  echo "pinning: clients to CPU $CLIENT_CPU, redis-server nodes to CPU $SERVER_CPU (taskset)" >&2
else
  echo "pinning: only $cpus CPU available, clients and servers share it" >&2
fi

summary="$CARGO_TARGET_DIR/summary.md"
"${pin[@]}" "$bin/redlock-bench" --out results.md --summary-out "$summary" "$@" >/dev/null
# (The report goes to results.md; the README table is printed at the end.)

{
  echo
  echo "## Core cost (redlock-core alone, canned replies, no I/O)"
  echo
  echo "\`core_cycle K N\` drives the core by hand through K acquire+release cycles against N"
  echo "in-memory nodes, following the drain contract a transport follows."
  echo
  echo "| N | instructions per cycle (callgrind, (I(2K) - I(K)) / K) | heap allocations per cycle |"
  echo "|---:|---:|---:|"
  if [ "$quick" = 1 ]; then K=2000; else K=20000; fi
  for n in 1 3 5; do
    allocs=$("$bin/core_cycle" "$K" "$n" | sed -n 's/.*allocs_per_cycle=\([0-9.]*\).*/\1/p')
    if command -v valgrind >/dev/null; then
      total() {
        local out
        out=$(mktemp)
        valgrind --tool=callgrind --callgrind-out-file="$out" "$bin/core_cycle" "$1" "$n" >/dev/null 2>&1
        # The "totals:" line (or "summary:") holds the instruction count.
        awk '/^(totals|summary):/ {print $2; exit}' "$out"
        rm -f "$out"
      }
      i1=$(total "$K"); i2=$(total $((2 * K)))
      per=$(( (i2 - i1) / K ))
    else
      per="n/a (valgrind not installed)"
    fi
    echo "| $n | $per | $allocs |"
  done
  echo
  echo "Where a cycle of each transport spends its time (instructions, system calls, context"
  echo "switches and allocations per cycle): \`PROFILE.md\`, made with \`profile.sh\`."
} >> results.md

echo
echo "===== README table (full report: bench/results.md) ====="
echo
cat "$summary"
