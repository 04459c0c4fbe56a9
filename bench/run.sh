#!/usr/bin/env bash
# The whole benchmark in one command (see bench/README.md):
#   bench/run.sh            full run (5 s per measurement, 3 rounds)
#   bench/run.sh --quick    smoke run (1 s per measurement, 1 round)
# Any other arguments are passed to the redlock-bench binary (e.g. --nodes 5,
# --impls baseline,tokio, --workloads seq,c16, --duration 2, --rounds 5).
# Writes bench/results.md (and prints it), then appends the core's cost:
# instructions per acquire+release cycle under callgrind (if valgrind is
# installed) and heap allocations per cycle.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
command -v redis-server >/dev/null || { echo "redis-server is needed on PATH" >&2; exit 1; }

cargo build --release --bins
bin="$CARGO_TARGET_DIR/release"

"$bin/redlock-bench" --out results.md "$@" >/dev/null
# (The table goes to results.md; it is printed once, complete, at the end.)

{
  echo
  echo "## Core cost (redlock-core alone, canned replies, no I/O)"
  echo
  echo "\`core_cycle K N\` drives the core by hand through K acquire+release cycles against N"
  echo "in-memory nodes, following the drain contract a transport follows."
  echo
  echo "| N | instructions per cycle (callgrind, (I(2K) - I(K)) / K) | heap allocations per cycle |"
  echo "|---:|---:|---:|"
  K=20000
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
} >> results.md

cat results.md
