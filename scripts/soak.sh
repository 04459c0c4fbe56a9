#!/usr/bin/env bash
# redlock chaos soak (issue 17): both transports on five real redis-server
# nodes under kill -9 + restart, SIGSTOP/SIGCONT and two nodes killed at once.
#
#   1. builds the soak binary (cargo build --release -p redlock-soak; with
#      SOAK_PROFILE=dev, the debug build);
#   2. runs it: it starts its own five redis-server nodes through the test
#      harness (tests/src/lib.rs: free loopback ports, appendonly yes +
#      appendfsync always, a temporary directory each), runs 32 tokio tasks
#      sharing one redlock-tokio client and 8 threads sharing one redlock-std
#      client on 4 resources for SECONDS while a seeded fault plan runs (never
#      more than 2 of 5 nodes down), checks every protected section with an
#      overlap checker that does not trust Redis, and prints the summary and
#      the targets (MET / MISSED). The nodes are killed when it exits.
#
# Usage: scripts/soak.sh [SECONDS] [options...]     (SECONDS defaults to 180)
#        scripts/soak.sh 180 --seed 42              (replay a seed's faults)
#        scripts/soak.sh --help                     (every option)
# Exit status: 0 when every target is met, 1 when one is missed, 2 when the
# soak could not run (bad options, redis-server missing or not starting).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ $# -eq 0 || $1 == -* ]]; then
  set -- 180 "$@"
fi

if ! command -v "${REDIS_SERVER:-redis-server}" >/dev/null 2>&1 && [[ ! -x ${REDIS_SERVER:-/usr/bin/redis-server} ]]; then
  echo "soak: redis-server not found (install it, or set REDIS_SERVER to its path)" >&2
  exit 2
fi
if [[ -z ${REDIS_SERVER:-} ]]; then
  REDIS_SERVER=$(command -v redis-server || echo /usr/bin/redis-server)
  export REDIS_SERVER
fi

# SOAK_PROFILE=dev reuses the debug build `cargo test` already made (CI's
# smoke run); the default is a release build, as a user would run it.
profile=${SOAK_PROFILE:-release}
dir=$([[ $profile == dev ]] && echo debug || echo "$profile")
echo "== building the soak ($profile)"
cargo build --profile "$profile" --locked -p redlock-soak --quiet

exec "$ROOT/target/$dir/redlock-soak" "$@"
