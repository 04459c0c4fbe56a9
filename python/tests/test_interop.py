"""Interop with the Rust command-line tool: a lock taken from Python is
respected by ``redlock`` and the other way round (same key, same token
format, same scripts).

The binary is ``$REDLOCK_BIN``, else ``<repo>/target/debug/redlock``
(``cargo build -p redlock-cli`` makes it; ``.ci/run`` does).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest

from redlock_rs import Client

BUSY = 75

REPO = pathlib.Path(__file__).resolve().parents[2]
REDLOCK = os.environ.get("REDLOCK_BIN", str(REPO / "target" / "debug" / "redlock"))


def cli(nodes, *args):
    if not os.access(REDLOCK, os.X_OK):
        pytest.fail(f"the redlock binary is missing at {REDLOCK}: cargo build -p redlock-cli")
    env = dict(os.environ, REDLOCK_NODES=",".join(nodes))
    return subprocess.run([REDLOCK, *args], env=env, capture_output=True, text=True, timeout=60)


def test_python_lock_is_respected_by_the_cli(three):
    client = Client(three.urls, ttl=10)
    with client.lock("py-held"):
        r = cli(three.urls, "acquire", "--resource", "py-held", "--retry-count", "0")
        assert r.returncode == BUSY, r.stderr
        assert "held" in r.stderr
    r = cli(three.urls, "acquire", "--resource", "py-held", "--retry-count", "0", "--ttl", "5s")
    assert r.returncode == 0, r.stderr


def test_cli_lock_is_respected_by_python(three):
    r = cli(three.urls, "acquire", "--resource", "cli-held", "--ttl", "30s")
    assert r.returncode == 0, r.stderr
    grant = json.loads(r.stdout)
    client = Client(three.urls, ttl=10)
    assert client.try_lock("cli-held") is None
    # Python extends and releases the CLI's lock by its token...
    assert client.extend("cli-held", grant["token"], ttl=60) > 59
    assert three[0].redis().pttl("cli-held") > 59_000
    assert client.release("cli-held", grant["token"]).outcome == "released"
    assert client.try_lock("cli-held") is not None


def test_cli_releases_a_python_grant(three):
    client = Client(three.urls, ttl=30)
    grant = client.acquire("py-grant")
    r = cli(three.urls, "extend", "--resource", "py-grant", "--token", grant.token, "--ttl", "60s")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["validity_ms"] > 59_000
    r = cli(three.urls, "release", "--resource", "py-grant", "--token", grant.token)
    assert r.returncode == 0, r.stderr
    assert three.holder("py-grant") == [None] * 3
