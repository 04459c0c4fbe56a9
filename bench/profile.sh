#!/usr/bin/env bash
# The profile behind bench/PROFILE.md: where one acquire+release cycle of
# ours spends its time. Needs redis-server, valgrind (callgrind) and strace;
# writes everything raw under $OUT (default target/profile/) and prints the
# per-cycle figures.
#
#   bench/profile.sh            K = 2000 cycles per run (about 10 minutes)
#   K=500 bench/profile.sh      quicker, noisier
#   ONLY="tokio-c16-n5 std-seq-n5" SKIP_CORE=1 bench/profile.sh   some cases only
#
# Method (the same for every figure): run K cycles and 2K cycles after the
# same warm-up; (X(2K) - X(K)) / K is X per cycle with start-up, connection
# and warm-up cancelled out.
#  * instructions: valgrind --tool=callgrind (all threads of the client;
#    redis-server runs natively, outside valgrind)
#  * system calls: strace -c -f (all threads)
#  * allocations, CPU time, context switches (per thread): client_cycle's
#    own counters (counting allocator, getrusage, /proc/self/task), K cycles
# The client runs on CPU $CLIENT_CPU and the 5 redis-server nodes on CPU
# $SERVER_CPU (taskset), as in run.sh.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
K="${K:-2000}"
OUT="${OUT:-$CARGO_TARGET_DIR/profile}"
CLIENT_CPU="${CLIENT_CPU:-0}"
SERVER_CPU="${SERVER_CPU:-1}"
mkdir -p "$OUT"
for tool in redis-server valgrind strace taskset; do
  command -v "$tool" >/dev/null || { echo "profile.sh: $tool is needed" >&2; exit 1; }
done
cargo build --release --bins
bin="$CARGO_TARGET_DIR/release"

echo "== perf: does it count instructions here?"
if perf stat -e instructions true >"$OUT/perf-check.txt" 2>&1 && grep -q 'instructions' "$OUT/perf-check.txt" \
   && ! grep -q 'not supported\|<not counted>' "$OUT/perf-check.txt"; then
  echo "perf works"
else
  echo "perf does not count instructions here: $(grep -m1 -i 'not\|error\|denied' "$OUT/perf-check.txt" || true)"
fi

# Five nodes, started and stopped by this script (their pids only).
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
urls=()
for i in 1 2 3 4 5; do
  port=$(( 17300 + i ))
  taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --logfile "$OUT/redis-$port.log" &
  pids+=("$!")
  urls+=("redis://127.0.0.1:$port")
done
for i in 1 2 3 4 5; do
  port=$(( 17300 + i ))
  for _ in $(seq 100); do
    grep -q "Ready to accept connections" "$OUT/redis-$port.log" 2>/dev/null && break
    sleep 0.05
  done
done
U=$(IFS=,; echo "${urls[*]}")
U3=$(IFS=,; echo "${urls[*]:0:3}")
U1="${urls[0]}"

calltotal() { awk '/^(totals|summary):/ {print $2; exit}' "$1"; }
# Function listings (self and inclusive) and the callers of the allocator.
annotate() {
  callgrind_annotate --auto=no --threshold=100 "$1" > "$2-self.txt" 2>/dev/null || true
  callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$1" > "$2-inclusive.txt" 2>/dev/null || true
  callgrind_annotate --auto=no --threshold=100 --inclusive=yes --tree=caller "$1" > "$2-callers.txt" 2>/dev/null || true
}

echo
echo "== core alone (core_cycle, canned replies): instructions per cycle"
for n in 1 3 5; do
  [ -n "${SKIP_CORE:-}" ] && break
  valgrind --tool=callgrind --callgrind-out-file="$OUT/core-n$n-k1.cg" "$bin/core_cycle" "$K" "$n" >/dev/null 2>&1
  valgrind --tool=callgrind --callgrind-out-file="$OUT/core-n$n-k2.cg" "$bin/core_cycle" $((2 * K)) "$n" >/dev/null 2>&1
  i1=$(calltotal "$OUT/core-n$n-k1.cg"); i2=$(calltotal "$OUT/core-n$n-k2.cg")
  echo "core N=$n: $(( (i2 - i1) / K )) instructions/cycle; $("$bin/core_cycle" "$K" "$n" | sed 's/.*allocs_per_cycle/allocs_per_cycle/')"
  annotate "$OUT/core-n$n-k2.cg" "$OUT/core-n$n"
done

# name impl urls workers cycles
cases=(
  "std-seq-n5 std $U 1 $K"
  "tokio-seq-n5 tokio $U 1 $K"
  "std-seq-n1 std $U1 1 $K"
  "tokio-seq-n1 tokio $U1 1 $K"
  "std-seq-n3 std $U3 1 $K"
  "tokio-seq-n3 tokio $U3 1 $K"
  "tokio-c16-n5 tokio $U 16 $K"
  "tokio-c256-n5 tokio $U 256 $(( K * 2 ))"
  "std-c16-n5 std $U 16 $K"
)
echo
echo "== clients against 5 (or 1, 3) real nodes"
# One retry: on a loaded machine a run can still fail (the error is kept in
# $OUT/NAME.err); a case that fails twice is reported and skipped.
run() {
  taskset -c "$CLIENT_CPU" "$@" 2>"$OUT/$name.err" && return 0
  echo "  (retrying $name: $(tail -1 "$OUT/$name.err"))" >&2
  taskset -c "$CLIENT_CPU" "$@" 2>"$OUT/$name.err"
}
profile_case() {
  # counters (native run)
  run "$bin/client_cycle" "$impl" "$k" "$urls" "$workers" > "$OUT/$name-counters.txt" || return 1
  # instructions
  run valgrind --tool=callgrind --callgrind-out-file="$OUT/$name-k1.cg" \
    "$bin/client_cycle" "$impl" "$k" "$urls" "$workers" >/dev/null || return 1
  run valgrind --tool=callgrind --callgrind-out-file="$OUT/$name-k2.cg" \
    "$bin/client_cycle" "$impl" $((2 * k)) "$urls" "$workers" >/dev/null || return 1
  i1=$(calltotal "$OUT/$name-k1.cg"); i2=$(calltotal "$OUT/$name-k2.cg")
  annotate "$OUT/$name-k2.cg" "$OUT/$name"
  # system calls
  run strace -c -f -o "$OUT/$name-strace-k1.txt" "$bin/client_cycle" "$impl" "$k" "$urls" "$workers" >/dev/null || return 1
  run strace -c -f -o "$OUT/$name-strace-k2.txt" "$bin/client_cycle" "$impl" $((2 * k)) "$urls" "$workers" >/dev/null || return 1
  sys=$(awk -v k="$k" '
    FNR == 1 { f++ }
    $NF ~ /^[a-z_0-9]+$/ && $NF != "total" && $4 ~ /^[0-9]+$/ { c[f, $NF] = $4; names[$NF] = 1 }
    END { total = 0; out = "";
          for (n in names) { d = (c[2, n] - c[1, n]) / k; if (d >= 0.05) { out = out sprintf(" %s=%.2f", n, d) }; total += d }
          printf "%.2f syscalls/cycle:%s", total, out }' "$OUT/$name-strace-k1.txt" "$OUT/$name-strace-k2.txt")
  echo "$name: $(( (i2 - i1) / k )) instructions/cycle; $sys"
  sed 's/^/    /' "$OUT/$name-counters.txt"
}
for c in "${cases[@]}"; do
  read -r name impl urls workers k <<<"$c"
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  profile_case || echo "$name: FAILED twice: $(tail -1 "$OUT/$name.err")"
done
echo
echo "raw outputs (callgrind files, annotations, strace tables): $OUT"
