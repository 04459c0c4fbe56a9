"""The asyncio client (redlock-tokio underneath)."""

from __future__ import annotations

import asyncio

import pytest

from redlock_rs import AsyncClient, AsyncLease, LockBusy, LockLost, LockUnavailable, Retry


def run(coro):
    return asyncio.run(coro)


def test_async_with_holds_and_releases(three):
    async def main():
        client = AsyncClient(three.urls, ttl=5)
        async with client.lock("a") as lease:
            assert isinstance(lease, AsyncLease)
            assert not lease.lost and 0 < lease.remaining <= 5
            lease.check()
            assert three.holder("a") == [lease.token.encode()] * 3
            assert await client.try_lock("a") is None
            with pytest.raises(LockBusy):
                await client.lock("a", retry=Retry(count=1, delay=0.01, jitter=0))
        assert three.holder("a") == [None] * 3

    run(main())


def test_await_lock_extend_release_and_by_token(three):
    async def main():
        client = AsyncClient(three.urls, ttl=1)
        lease = await client.lock("b", keep=False)
        await lease.extend(10)
        assert lease.remaining > 9
        assert (await lease.release()).outcome == "released"
        grant = await client.acquire("c", ttl=0.5)
        left = await client.extend("c", grant.token, ttl=10)
        assert 9 < left <= 10
        assert (await client.release("c", grant.token)).outcome == "released"
        with pytest.raises(LockLost):
            await client.extend("c", grant.token)

    run(main())


def test_auto_extension_and_loss(three):
    async def main():
        client = AsyncClient(three.urls, ttl=0.3, node_timeout=0.05)
        async with client.lock("long") as lease:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(lease.wait_lost(), 1.2)  # several TTLs
            assert not lease.lost
        with pytest.raises(LockLost):
            async with client.lock("lose") as lease:
                for s in three:
                    s.redis().set("lose", "intruder")
                assert await asyncio.wait_for(lease.wait_lost(), 5) is True
                assert lease.lost
        assert three.holder("lose") == [b"intruder"] * 3

    run(main())


def test_cancelled_acquire_takes_nothing(three):
    async def main():
        holder = AsyncClient(three.urls, ttl=30)
        waiter = AsyncClient(three.urls, ttl=30, retry=Retry(wait=30, delay=0.02, jitter=0.01))
        lease = await holder.lock("cancel")
        task = asyncio.ensure_future(waiter.lock("cancel"))
        await asyncio.sleep(0.2)  # let it retry a few times
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await lease.release()
        # Nothing of the cancelled acquire is left behind: locking now works.
        other = AsyncClient(three.urls, ttl=30, retry=0)
        async with other.lock("cancel"):
            pass

    run(main())


def test_async_unavailable(cluster):
    c = cluster(3)
    c[0].kill()
    c[1].kill()

    async def main():
        client = AsyncClient(c.urls, ttl=1, node_timeout=0.05, retry=0)
        with pytest.raises(LockUnavailable) as e:
            await client.lock("x")
        assert set(e.value.failed_nodes) == {c[0].url, c[1].url}

    run(main())


def test_concurrent_tasks_exclude_each_other(three):
    async def main():
        client = AsyncClient(three.urls, ttl=5, retry=Retry(wait=20, delay=0.005, jitter=0.005))
        inside = 0
        overlaps = 0

        async def worker():
            nonlocal inside, overlaps
            for _ in range(5):
                async with client.lock("shared"):
                    inside += 1
                    if inside > 1:
                        overlaps += 1
                    await asyncio.sleep(0)
                    inside -= 1

        await asyncio.gather(*(worker() for _ in range(8)))
        assert overlaps == 0

    run(main())
