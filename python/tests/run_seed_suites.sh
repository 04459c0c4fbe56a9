#!/usr/bin/env bash
# Runs the two seeds' OWN test suites against redlock_rs.compat, with only
# their import lines changed:
#   redlock-py 1.0.8 (SPSCommerce): tests/test_redlock.py
#   redlock 1.2.0 (glasslion):      tests/test_lock.py, tests/test_factory.py
# The suites come from the published sdists (fetched here, at test time;
# nothing of them is kept in this repository). They talk to a Redis on
# localhost:6379, so they run in a private network namespace (unshare -n)
# with a redis-server of their own on that port: no clash with a system
# Redis or with other test runs. Without unshare, port 6379 must be free.
#
# Usage: run_seed_suites.sh [PYTHON]   (a Python with redlock_rs, pytest,
# redis and mock installed; default: python3)
set -euo pipefail
PYTHON=${1:-python3}
PYTHON=$(command -v "$PYTHON")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "-- fetching the seeds' sdists"
"$PYTHON" -m pip download --quiet --no-deps --no-binary :all: -d "$work/dl" \
  redlock-py==1.0.8 redlock==1.2.0

extract() { # sdist dir-in-archive -> $work/<name>/tests
  local archive=$1 top=$2 name=$3
  mkdir -p "$work/$name"
  tar -xzf "$archive" -C "$work/$name" --strip-components=1 "$top/tests"
}
extract "$work/dl/redlock-py-1.0.8.tar.gz" redlock-py-1.0.8 redlock_py
extract "$work/dl/redlock-1.2.0.tar.gz" redlock-1.2.0 glasslion

rewrite() { # dir module: point `from redlock[.x] import ...` at the compat module
  local dir=$1 module=$2 f
  for f in "$dir"/tests/*.py; do
    cp "$f" "$f.orig"
    sed -i -E "s/^from redlock(\.lock)? import /from redlock_rs.compat.$module import /" "$f"
    # Only import lines may differ.
    if diff "$f.orig" "$f" | grep -E '^[<>]' | grep -vqE '^[<>] from redlock(_rs\.compat\.[a-z_]+|\.lock)? import '; then
      echo "unexpected change in $f" >&2
      exit 1
    fi
    echo "   $(basename "$f"): $(diff "$f.orig" "$f" | grep -c '^>' || true) import line(s) changed"
    rm "$f.orig"
  done
  # The seed's own package must not be importable by accident.
  if [ -e "$dir/redlock" ]; then echo "seed package extracted by mistake" >&2; exit 1; fi
}
rewrite "$work/redlock_py" redlock_py
rewrite "$work/glasslion" glasslion

cat > "$work/inner.sh" <<'EOF'
set -euo pipefail
PYTHON=$1 work=$2
if command -v ip >/dev/null 2>&1; then ip link set lo up 2>/dev/null || true; fi
redis-server --port 6379 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
rpid=$!
trap 'kill $rpid 2>/dev/null || true; wait $rpid 2>/dev/null || true' EXIT
for _ in $(seq 1 500); do
  if "$PYTHON" -c 'import socket; socket.create_connection(("127.0.0.1", 6379), 0.1).close()' 2>/dev/null; then break; fi
  sleep 0.02
done
status=0
echo "== seed suite: redlock-py 1.0.8 tests/test_redlock.py"
(cd "$work/redlock_py" && "$PYTHON" -m pytest -p no:cacheprovider -q -rA tests) || status=1
echo "== seed suite: redlock 1.2.0 (glasslion) tests/test_lock.py tests/test_factory.py"
(cd "$work/glasslion" && "$PYTHON" -m pytest -p no:cacheprovider -q -rA tests) || status=1
exit $status
EOF

if unshare -n true 2>/dev/null; then
  echo "-- running in a private network namespace"
  unshare -n bash "$work/inner.sh" "$PYTHON" "$work"
elif ! "$PYTHON" -c 'import socket; socket.create_connection(("127.0.0.1", 6379), 0.2)' 2>/dev/null; then
  echo "-- unshare unavailable; port 6379 is free: running on the host"
  bash "$work/inner.sh" "$PYTHON" "$work"
else
  echo "cannot run the seed suites: no unshare and port 6379 is taken" >&2
  exit 1
fi
