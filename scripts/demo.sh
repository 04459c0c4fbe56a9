#!/usr/bin/env bash
# redlock demo: the project's main job, end to end, on one machine.
#
#   1. starts five independent redis-server nodes on free loopback ports
#      (installs redis-server with apt-get when missing);
#   2. builds the `redlock` command (cargo build --release -p redlock-cli);
#   3. runs a crowd of concurrent `redlock exec` processes, each doing a
#      non-atomic read-modify-write of a shared counter file and logging
#      "start PID TIME" / "end PID TIME" around it, then PRINTS THE EVIDENCE
#      that no two critical sections overlapped and that no update was lost
#      (and, as a control, the same crowd without the lock, which does lose
#      updates);
#   4. plays Martin Kleppmann's scenario with real processes and a real
#      database (SQLite): holder 1 takes the lock and is SIGSTOPped past its
#      lease, holder 2 takes it and writes, holder 1 resumes and writes.
#      Without fencing the stale write lands (shown); with `--fence` the
#      store rejects it (shown) and the table stays consistent;
#   5. runs a short deterministic simulation (`redlock sim`) and prints its
#      summary, plus one run with a broken assumption to show the checker bites;
#   6. stops the nodes (always, via a trap).
#
# Usage: scripts/demo.sh            (RUNS=20 SEEDS=200 by default)
#        RUNS=50 SEEDS=1000 scripts/demo.sh
# Exit status: 0 when every check passed, 1 otherwise.
set -euo pipefail

RUNS=${RUNS:-20}
SEEDS=${SEEDS:-200}
NODES=5
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\n==> %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ redis-server
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    say "installing redis-server (apt-get)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
    # Debian starts a system instance on 6379; the demo uses its own nodes only.
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/redlock-demo.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

say "starting $NODES independent redis-server nodes in $WORK"
URLS=()
port=$(( 20000 + (RANDOM % 20000) ))
while [ "${#URLS[@]}" -lt "$NODES" ]; do
    port=$((port + 1))
    if port_in_use "$port"; then continue; fi
    dir="$WORK/node-$port"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
        --daemonize no --logfile "$dir/redis.log" &
    pid=$!
    ok=""
    for _ in $(seq 1 100); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then ok=1; break; fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.05
    done
    if [ -n "$ok" ]; then
        PIDS+=("$pid")
        URLS+=("redis://127.0.0.1:$port")
        echo "    node $(( ${#URLS[@]} - 1 )): redis://127.0.0.1:$port (pid $pid)"
    else
        kill "$pid" 2>/dev/null || true   # lost a race for the port: try the next one
    fi
done
REDLOCK_NODES=$(IFS=,; echo "${URLS[*]}")
export REDLOCK_NODES

# ------------------------------------------------------------------ build
say "building redlock (cargo build --release -p redlock-cli)"
(cd "$ROOT" && cargo build --release -q -p redlock-cli)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REDLOCK="$TARGET_DIR/release/redlock"
[ -x "$REDLOCK" ] || fail "no binary at $REDLOCK"
"$REDLOCK" --version

# ------------------------------------------------------------------ the crowd
# One critical section: a deliberately racy read-modify-write of a counter
# file, with a pause in the middle, bracketed by timestamped log lines.
CRITICAL='
    echo "start $$ $(date +%s%N)" >> "$DEMO_LOG"
    n=$(cat "$DEMO_COUNTER")
    sleep 0.05
    echo $((n + 1)) > "$DEMO_COUNTER"
    echo "end $$ $(date +%s%N)" >> "$DEMO_LOG"
'

# check_log LOG: prints the evidence; returns the number of overlapping pairs.
check_log() {
    sort -k3,3n "$1" | awk '
        $1 == "start" { if (open) { overlaps++ } open++; if (open > maxopen) maxopen = open;
                        starts++; st[$2] = $3
                        if (last_end && $3 - last_end < mingap) mingap = $3 - last_end }
        $1 == "end"   { open--; ends++; d = $3 - st[$2]; if (d > maxcs) maxcs = d; last_end = $3 }
        BEGIN { mingap = 1e18 }
        END {
            printf "    critical sections: %d started, %d ended\n", starts, ends
            printf "    most sections in progress at the same instant: %d\n", maxopen
            printf "    overlapping starts (a start while another section was open): %d\n", overlaps
            if (mingap < 1e18) printf "    smallest gap between one end and the next start: %.3f ms\n", mingap / 1e6
            printf "    longest critical section: %.1f ms\n", maxcs / 1e6
            exit (overlaps > 0 ? 1 : 0)
        }'
}

crowd() { # crowd LABEL USE_LOCK
    local label=$1 use_lock=$2 i failed=0
    export DEMO_LOG="$WORK/$label.log" DEMO_COUNTER="$WORK/$label.counter"
    : > "$DEMO_LOG"
    echo 0 > "$DEMO_COUNTER"
    local pids=()
    local t0; t0=$(date +%s%N)
    for i in $(seq 1 "$RUNS"); do
        if [ "$use_lock" = yes ]; then
            "$REDLOCK" exec --resource demo:counter --ttl 2s --wait 2m -- bash -c "$CRITICAL" &
        else
            bash -c "$CRITICAL" &
        fi
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        if ! wait "$i"; then failed=$((failed + 1)); fi
    done
    local t1; t1=$(date +%s%N)
    COUNTER=$(cat "$DEMO_COUNTER")
    printf '    %d processes, %d failed, wall time %.2f s\n' "$RUNS" "$failed" "$(( (t1 - t0) / 1000000 ))e-3"
    printf '    final counter: %s (expected %d)\n' "$COUNTER" "$RUNS"
    OVERLAP_OK=yes
    check_log "$DEMO_LOG" || OVERLAP_OK=no
    FAILED=$failed
}

say "control: $RUNS concurrent read-modify-writes WITHOUT a lock"
crowd nolock no
if [ "$OVERLAP_OK" = no ] || [ "$COUNTER" != "$RUNS" ]; then
    echo "    -> as expected without a lock: sections overlapped and updates were lost"
else
    echo "    -> (this time the unlocked crowd happened not to collide)"
fi

say "$RUNS concurrent 'redlock exec --resource demo:counter' on $NODES nodes"
crowd locked yes
[ "$FAILED" -eq 0 ] || fail "$FAILED redlock exec processes failed"
[ "$OVERLAP_OK" = yes ] || fail "critical sections overlapped"
[ "$COUNTER" = "$RUNS" ] || fail "counter is $COUNTER, expected $RUNS: updates were lost"
for url in "${URLS[@]}"; do
    port=${url##*:}
    left=$(redis-cli -p "$port" exists demo:counter)
    [ "$left" = 0 ] || fail "the lock key is still on $url"
done
echo "    -> EVIDENCE: no two critical sections overlapped, no update was lost,"
echo "       and every node is clean (the lock key was released, not left to expire)"

# ------------------------------------------------------------------ Kleppmann
# kleppmann MODE: plays the scenario plain ("") or fenced ("--fence"); sets
# OWNER to the table's final owner and H1 to holder 1's exit status.
kleppmann() {
    local mode=$1
    local db="$WORK/kleppmann$mode.db"
    python3 - "$db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, owner TEXT, fence INTEGER NOT NULL)")
con.execute("INSERT INTO account VALUES (1, 'nobody', 0)")
con.commit()
PY
    local fifo="$WORK/holder1$mode.in"
    rm -f "$fifo"; mkfifo "$fifo"
    local ready="$WORK/holder1$mode.ready"
    rm -f "$ready"
    READY_FILE="$ready" python3 "$ROOT/scripts/demo/fenced_writer.py" "$REDLOCK" "$db" holder1 $mode < "$fifo" &
    local h1=$!
    exec 7> "$fifo"
    # Wait until holder 1 says it holds the lock, then pause it past its lease.
    for _ in $(seq 1 200); do
        [ -e "$ready" ] && break
        sleep 0.05
    done
    [ -e "$ready" ] || fail "holder 1 did not take the lock"
    kill -STOP "$h1"
    echo "    holder1: SIGSTOPped (a GC pause) for longer than its 2 s lease"
    sleep 2.5
    echo go | python3 "$ROOT/scripts/demo/fenced_writer.py" "$REDLOCK" "$db" holder2 $mode \
        || fail "holder 2 could not take the expired lock and write"
    kill -CONT "$h1"
    echo "    holder1: resumes, believes it still holds the lock, writes"
    echo go >&7
    exec 7>&-
    set +e; wait "$h1"; H1=$?; set -e
    OWNER=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT owner FROM account").fetchone()[0])' "$db")
    echo "    table: owner = $OWNER"
}

say "Kleppmann's scenario WITHOUT fencing: a paused holder's stale write lands"
kleppmann ""
[ "$H1" = 0 ] && [ "$OWNER" = holder1 ] || fail "expected the stale write to land without fencing"
echo "    -> holder 2's update was overwritten by a holder whose lease had expired"

say "Kleppmann's scenario WITH 'redlock acquire --fence': the store rejects the stale write"
kleppmann "--fence"
[ "$H1" = 3 ] || fail "holder 1's stale fenced write was not rejected"
[ "$OWNER" = holder2 ] || fail "the table's owner is $OWNER, expected holder2"
echo "    -> EVIDENCE: the fence of the paused holder was older than holder 2's;"
echo "       the store refused it and the table is consistent (owner = holder2)"

# ------------------------------------------------------------------ simulation
say "simulation: redlock sim --seeds $SEEDS (no violation expected)"
"$REDLOCK" sim --seeds "$SEEDS" || fail "the simulation found a violation of mutual exclusion"

say "simulation with a broken assumption: redlock sim --seeds $SEEDS --unsafe amnesia (violations expected)"
set +e
"$REDLOCK" sim --seeds "$SEEDS" --unsafe amnesia > "$WORK/amnesia.txt"
status=$?
set -e
# The header, the first few violating seeds, the summary, and the end of the
# replayable trace of the first violating seed.
# Violation lines carry every node's key history: shorten them for the screen.
short() { awk '{ if (length($0) > 200) print substr($0, 1, 200) " ..."; else print }'; }
head -n 4 "$WORK/amnesia.txt" | short
echo "..."
grep -v '^seed \|^trace \|^ \|^$' "$WORK/amnesia.txt" | tail -n +2 | short
grep -m1 '^trace of seed' "$WORK/amnesia.txt" || true
echo "  ..."
tail -n 6 "$WORK/amnesia.txt" | short
[ "$status" = 1 ] || fail "expected exit status 1 (violation found) under --unsafe amnesia, got $status"
echo "    -> exit status 1: the checker catches the violation when Redis loses its keys on restart"

say "all checks passed; stopping the nodes"
