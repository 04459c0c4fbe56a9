"""Fenced locks and locks over several resources, blocking and asyncio,
against real redis-server processes."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from redlock_rs import AsyncClient, Client, ConfigurationError, LockBusy


def register(server, resource: str):
    value = server.redis().get("{%s}:fence" % resource)
    return None if value is None else int(value)


def test_lease_fence_is_wired_and_grows(three):
    client = Client(three.urls, ttl=5)
    before = int(time.time() * 1000)
    with client.lock("f:py", fence=True) as lease:
        first = lease.fence
        assert isinstance(first, int)
        # Fresh registers: the proposal (wall clock ms x 1024), one round.
        assert first >= before * 1024
        assert [register(s, "f:py") for s in three].count(first) >= 2
    with client.lock("f:py", fence=True, keep=False) as lease:
        assert lease.fence > first
        second = lease.fence
        lease.extend(5)
        assert lease.fence == second, "extend keeps the fence"
    # A plain lock has none, and leaves the register alone.
    with client.lock("f:py") as lease:
        assert lease.fence is None
    assert max(register(s, "f:py") or 0 for s in three) == second
    grant = client.acquire("f:py", fence=True)
    assert grant.fence > second
    assert client.release("f:py", grant.token)
    assert client.acquire("f:plain").fence is None


def test_a_register_ahead_gives_the_fence_above_it(three):
    ahead = 5_000_000_000_000_000
    for s in three[:2]:
        s.redis().set("{f:ahead}:fence", ahead)
    client = Client(three.urls, ttl=5)
    lease = client.lock("f:ahead", fence=True)
    assert lease.fence == ahead + 1
    lease.release()


def test_a_stale_holder_is_refused_by_the_database(three, tmp_path):
    db = sqlite3.connect(str(tmp_path / "t.sqlite"))
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, fence INTEGER NOT NULL)")
    db.execute("INSERT INTO t VALUES (1, 'init', 0)")

    def write(v: str, fence: int) -> int:
        cur = db.execute(
            "UPDATE t SET v = ?, fence = ? WHERE id = 1 AND fence <= ?", (v, fence, fence)
        )
        return cur.rowcount

    a = Client(three.urls, ttl=0.3)
    b = Client(three.urls, ttl=5)
    old = a.lock("f:db", fence=True, keep=False)  # nobody extends it: "paused"
    assert old.wait_lost(5)
    new = b.lock("f:db", fence=True)
    assert write("holder 2", new.fence) == 1
    assert write("holder 1", old.fence) == 0, "the stale write changes no row"
    assert db.execute("SELECT v FROM t").fetchone() == ("holder 2",)
    new.release()


def test_several_resources_all_or_nothing(three):
    client = Client(three.urls, ttl=5)
    other = Client(three.urls, ttl=5)
    with client.lock(["m:b", "m:a", "m:b"], fence=True) as lease:
        assert lease.resource == ["m:b", "m:a", "m:b"]
        assert three.holder("m:a") == three.holder("m:b") == [lease.token.encode()] * 3
        assert register(three[0], "m:a") == register(three[0], "m:b") == lease.fence
        # A set that overlaps a held one is busy and takes nothing.
        assert other.try_lock(["m:c", "m:a"]) is None
        assert three.holder("m:c") == [None] * 3
    assert three.holder("m:a") == [None] * 3
    grant = client.acquire(("m:x", "m:y"))
    assert client.extend(["m:y", "m:x"], grant.token, 5) > 4
    assert client.release(["m:x", "m:y"], grant.token).outcome == "released"
    with pytest.raises(ValueError):
        client.lock([])
    held = other.lock("m:z")
    with pytest.raises(LockBusy):
        client.lock(["m:y", "m:z"], retry=0)
    assert three.holder("m:y") == [None] * 3
    held.release()


def test_the_same_server_twice_is_refused_outside_the_compat_modules(three):
    url = three.urls[0]
    with pytest.raises(ConfigurationError) as e:
        Client([url, url + "/1"])
    assert "given twice" in str(e.value)


def test_async_fence_and_several_resources(three):
    async def main():
        client = AsyncClient(three.urls, ttl=5)
        async with client.lock(["am:a", "am:b"], fence=True) as lease:
            assert isinstance(lease.fence, int)
            assert three.holder("am:b") == [lease.token.encode()] * 3
            assert await client.try_lock("am:a") is None
        async with client.lock("am:a") as plain:
            assert plain.fence is None
        grant = await client.acquire(["am:a"], fence=True)
        assert grant.fence > lease.fence
        assert (await client.release(["am:a"], grant.token)).outcome == "released"
        kept = await client.lock("am:k", fence=True)
        waiting = asyncio.ensure_future(kept.wait_lost())
        await kept.release()
        assert await waiting is False, "a released lease is not lost"

    asyncio.run(main())
