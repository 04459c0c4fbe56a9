"""The modern blocking API against real redis-server processes."""

from __future__ import annotations

import threading
import time
from unittest import mock

import pytest

import redlock_rs
from redlock_rs import (
    Client,
    ConfigurationError,
    Lease,
    LockBusy,
    LockLost,
    LockUnavailable,
    Retry,
)


def test_lock_context_manager_holds_and_releases(three):
    client = Client(three.urls, ttl=5)
    with client.lock("job:1") as lease:
        assert isinstance(lease, Lease)
        assert not lease.lost
        assert 0 < lease.remaining <= 5
        assert lease.fence is None
        lease.check()
        assert three.holder("job:1") == [lease.token.encode()] * 3
    assert lease.released
    assert three.holder("job:1") == [None] * 3


def test_busy_and_try_lock(three):
    client = Client(three.urls, ttl=5, retry=Retry(count=2, delay=0.01, jitter=0.01))
    other = Client(three.urls, ttl=5)
    with client.lock("r"):
        assert other.try_lock("r") is None
        with pytest.raises(LockBusy) as e:
            other.lock("r", retry=1)
        assert "held by another token" in str(e.value)
        # Decided as soon as the "held" answers rule out a quorum.
        outcomes = [n.outcome for n in e.value.nodes]
        assert outcomes.count("held") >= 2 and set(outcomes) <= {"held", "no answer"}
        assert e.value.failed_nodes == ()
    lease = other.try_lock("r")
    assert lease is not None
    lease.release()


def test_release_outcomes(three):
    client = Client(three.urls, ttl=5)
    lease = client.lock("rel")
    first = lease.release()
    # Decided at quorum: the last node's reply may come after the verdict.
    assert first.outcome == "released" and first.released >= 2 and first
    again = lease.release()
    assert again.outcome == "already_gone" and not again
    # By token, after it is gone: the nodes say so.
    gone = client.release("rel", lease.token)
    assert gone.outcome == "already_gone" and gone.not_held >= 2


def test_acquire_extend_release_by_token(three):
    client = Client(three.urls, ttl=1)
    grant = client.acquire("tok", ttl=0.5)
    # 160 random bits in hex, and the attempt's number (8 hex digits).
    assert grant.resource == "tok" and len(grant.token) == 48
    assert 0 < grant.validity <= 0.5
    ttl_ms = three[0].redis().pttl("tok")
    assert 0 < ttl_ms <= 500
    left = client.extend("tok", grant.token, ttl=10)
    assert 9 < left <= 10
    assert three[0].redis().pttl("tok") > 9000
    # Not held by another token: extension fails as lost, nothing touched.
    with pytest.raises(LockLost):
        client.extend("tok", "not-the-token", ttl=10)
    assert client.release("tok", grant.token).outcome == "released"
    with pytest.raises(LockLost):
        client.extend("tok", grant.token)


def test_grant_is_not_released_by_garbage_collection(three):
    client = Client(three.urls, ttl=5)
    grant = client.acquire("gc")
    del grant
    import gc

    gc.collect()
    assert all(v is not None for v in three.holder("gc"))


def test_auto_extension_past_several_ttls(three):
    client = Client(three.urls, ttl=0.3)
    with client.lock("long") as lease:
        # Several TTLs pass; the loss signal never fires meanwhile.
        assert lease.wait_lost(timeout=1.2) is False
        assert not lease.lost
        assert lease.remaining > 0
        assert three.holder("long") == [lease.token.encode()] * 3


def test_loss_is_signalled_and_raised_on_exit(three):
    client = Client(three.urls, ttl=0.5, node_timeout=0.05)
    with pytest.raises(LockLost):
        with client.lock("lose") as lease:
            for s in three:  # someone else takes over on every node
                s.redis().set("lose", "intruder")
            assert lease.wait_lost(timeout=5) is True
            assert lease.lost
            assert lease.remaining == 0
            with pytest.raises(LockLost) as e:
                lease.check()
            assert "lost" in str(e.value)
    # The intruder's keys were never touched.
    assert three.holder("lose") == [b"intruder"] * 3


def test_lost_with_an_exception_in_flight_keeps_that_exception(three):
    client = Client(three.urls, ttl=0.5, node_timeout=0.05)
    with pytest.raises(KeyError):
        with client.lock("lose2") as lease:
            for s in three:
                s.redis().delete("lose2")
            assert lease.wait_lost(timeout=5)
            raise KeyError("mine")


def test_manual_lease_extend_and_expiry(three):
    client = Client(three.urls, ttl=0.2)
    lease = client.lock("manual", keep=False)
    assert not lease.kept
    lease.extend(5)
    assert lease.remaining > 4
    with pytest.raises(TypeError):
        client.lock("manual2").extend()
    lease.release()
    short = client.lock("manual3", ttl=0.05, keep=False)
    assert short.wait_lost(timeout=5) is True  # it expires
    assert isinstance(short.lost_error(), LockLost)


def test_blocking_calls_release_the_gil(three):
    holder = Client(three.urls, ttl=5)
    waiter = Client(three.urls, ttl=5, retry=Retry(wait=0.5, delay=0.05, jitter=0.0))
    lease = holder.lock("gil")
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    before = len(ticks)
    with pytest.raises(LockBusy):
        waiter.lock("gil")  # blocks ~0.5 s in Rust
    during = len(ticks) - before
    stop.set()
    t.join()
    lease.release()
    assert during > 10, "another Python thread must run while lock() waits"


def test_many_threads_share_one_client(three):
    client = Client(three.urls, ttl=5, retry=Retry(wait=20, delay=0.005, jitter=0.005))
    inside = []
    overlaps = []

    def worker():
        for _ in range(5):
            with client.lock("shared"):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


def test_unavailable_names_the_failed_nodes(cluster):
    c = cluster(3)
    c[1].kill()
    c[2].kill()
    client = Client(c.urls, ttl=30, node_timeout=0.05, retry=0)
    with pytest.raises(LockUnavailable) as e:
        client.lock("x")
    assert set(e.value.failed_nodes) == {c[1].url, c[2].url}
    assert c[1].url in str(e.value) and "refused" in str(e.value)
    # Whatever the attempt took on the live node is undone (long before
    # the 30 s TTL).
    r = c[0].redis()
    deadline = time.monotonic() + 5
    while r.get("x") is not None:
        assert time.monotonic() < deadline, "the partial lock was not undone"
        time.sleep(0.01)


def test_configuration_errors():
    with pytest.raises(ConfigurationError) as e:
        Client(["http://nope"])
    assert isinstance(e.value, ValueError)
    with pytest.raises(ConfigurationError):
        Client(["redis://h:99999"])
    with pytest.raises(ConfigurationError):
        Client([])
    with pytest.raises(ValueError):
        Client(["redis://127.0.0.1:1"], ttl=-1)
    with pytest.raises(TypeError):
        Client([1234])
    with pytest.raises(ValueError):
        Retry(count=-1)
    client = Client(["redis://127.0.0.1:1"], ttl=10, node_timeout=1)
    with pytest.raises(ConfigurationError):  # TTL shorter than the node timeout
        client.lock("x", ttl=0.5)
    # Passwords never show.
    with pytest.raises(ConfigurationError) as e:
        Client(["redis://user:hunter2@h:99999"])
    assert "hunter2" not in str(e.value)


def test_subclass_and_mock_patch(three):
    class MyLease(Lease):
        def describe(self):
            return f"{self.resource}:{self.token[:4]}"

    class MyClient(Client):
        _lease_class = MyLease

    client = MyClient(three.urls, ttl=5)
    with client.lock("sub") as lease:
        assert isinstance(lease, MyLease)
        assert lease.describe().startswith("sub:")
    with mock.patch.object(Client, "lock", side_effect=LockBusy("mocked")):
        with pytest.raises(LockBusy):
            Client(three.urls).lock("whatever")


def test_public_surface():
    for name in redlock_rs.__all__:
        assert getattr(redlock_rs, name).__doc__, name


def test_an_unreleased_lease_is_released_when_collected(three):
    import gc

    client = Client(three.urls, ttl=30)
    lease = client.lock("collected")
    assert all(three.holder("collected"))
    t0 = time.monotonic()
    del lease
    gc.collect()
    assert time.monotonic() - t0 < 1.0  # the collector does not wait on the network
    deadline = time.monotonic() + 5  # long before the 30 s TTL
    while any(three.holder("collected")):
        assert time.monotonic() < deadline, "not released after garbage collection"
        time.sleep(0.01)


def test_ctrl_c_interrupts_a_long_wait_and_undoes_it(three):
    import os
    import signal

    # Python installs its Ctrl-C handler only when SIGINT was not ignored at
    # start-up, and a shell ignores SIGINT for a background job without job
    # control (a CI script run as `(cmd &)`): install it here, so the test
    # does not depend on how it was started.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    holder = Client(three.urls, ttl=30)
    waiter = Client(three.urls, ttl=30, retry=Retry(wait=30, delay=0.02, jitter=0.01))
    lease = holder.lock("sigint")
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            waiter.lock("sigint")
    finally:
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - t0 < 5  # not the 30 s wait
    lease.release()
    # The interrupted acquire left nothing behind.
    assert Client(three.urls, ttl=5, retry=0).try_lock("sigint") is not None
