"""One holder in the demo's Kleppmann scenario (scripts/demo.sh).

Takes the lock with the `redlock` command (plain or fenced), says so, waits
for a line on stdin (the demo SIGSTOPs this process meanwhile, past the
lease: Kleppmann's GC pause), then writes to the SQLite table the way a
fenced store must: one transaction, the write guarded by the fence.

    python3 fenced_writer.py REDLOCK DB NAME [--fence]

Creates the file named by $READY_FILE (if set) once it holds the lock.
Prints one line per step; exits 0 when its write landed, 3 when the store
rejected it as stale.
"""
import json
import os
import sqlite3
import subprocess
import sys


def main() -> int:
    redlock, db, name = sys.argv[1], sys.argv[2], sys.argv[3]
    fenced = "--fence" in sys.argv[4:]
    cmd = [redlock, "acquire", "--resource", "demo:kleppmann", "--ttl", "2s", "--wait", "10s"]
    if fenced:
        cmd.append("--fence")
    lease = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    fence = lease.get("fence")
    print(f"    {name}: took the lock (fence {fence})" if fenced else f"    {name}: took the lock",
          flush=True)
    ready = os.environ.get("READY_FILE")
    if ready:  # tells the demo the lock is held (it then pauses this process)
        open(ready, "w").close()
    sys.stdin.readline()  # the pause happens here (the demo stops this process)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    if fenced:
        # The fenced store: accept a write only with a fence not below the
        # highest one seen (fences are unique: <= admits the same holder).
        cur = con.execute(
            "UPDATE account SET owner = ?, fence = ? WHERE id = 1 AND fence <= ?",
            (name, fence, fence),
        )
    else:
        cur = con.execute("UPDATE account SET owner = ? WHERE id = 1", (name,))
    landed = cur.rowcount == 1
    con.execute("COMMIT")
    if landed:
        print(f"    {name}: wrote owner={name}" + (f" with fence {fence}" if fenced else ""), flush=True)
        return 0
    (highest,) = con.execute("SELECT fence FROM account WHERE id = 1").fetchone()
    print(f"    {name}: write REJECTED: fence {fence} is older than {highest}, "
          "a newer holder has written", flush=True)
    return 3


if __name__ == "__main__":
    sys.exit(main())
