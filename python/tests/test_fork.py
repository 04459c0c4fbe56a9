"""Clients survive os.fork(); leases are not inherited."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import traceback

import pytest

from redlock_rs import AsyncClient, Client

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def run_in_child(body) -> int:
    """Runs ``body()`` in a forked child; its exit code (0: body returned
    True)."""
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            code = 0 if body() else 1
        except BaseException:
            traceback.print_exc()
            code = 3
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_blocking_client_survives_fork_and_leases_are_not_inherited(three):
    client = Client(three.urls, ttl=5)
    client.lock("warm").release()  # driver thread and connections up
    held = client.lock("parent-held")

    def child():
        # The parent's lease: lost here, and releasing it does nothing.
        assert held.lost and held.remaining == 0
        assert held.release().outcome == "unknown"
        # The client is rebuilt on first use in the child.
        with client.lock("child-lock") as mine:
            assert not mine.lost
        assert client.try_lock("parent-held") is None  # the parent holds it
        # The parent's native client was dropped when the child rebuilt
        # its own (leaked, not joined): nothing hangs.
        gc.collect()
        return True

    assert run_in_child(child) == 0
    # The parent's lease was untouched by the child, and still extends.
    assert not held.lost
    assert three.holder("parent-held") == [held.token.encode()] * 3
    assert held.release().outcome == "released"
    assert three.holder("child-lock") == [None] * 3


def test_fork_before_first_use(three):
    client = Client(three.urls, ttl=5)

    def child():
        with client.lock("fresh"):
            return True

    assert run_in_child(child) == 0
    with client.lock("fresh"):
        pass


def test_async_client_survives_fork(three):
    client = AsyncClient(three.urls, ttl=5)

    async def use(name):
        async with client.lock(name) as lease:
            return not lease.lost

    assert asyncio.run(use("async-parent"))

    def child():
        return asyncio.run(use("async-child"))

    assert run_in_child(child) == 0
    assert asyncio.run(use("async-parent-again"))
