"""The compat modules, beyond the seeds' own suites (which CI runs
unchanged but for their import lines: ``tests/run_seed_suites.sh``)."""

from __future__ import annotations

import time
from unittest import mock

import pytest
import redis

from redlock_rs import Client, Retry
from redlock_rs.compat import glasslion, redlock_py
from redlock_rs.compat._nodes import node_timeout_ms


def hostport(s):
    return {"host": "127.0.0.1", "port": s.port}


# ------------------------------------------------------------- redlock-py


def test_redlock_py_lock_unlock_and_attributes(three):
    dlm = redlock_py.Redlock([hostport(s) for s in three])
    assert dlm.quorum == 2
    assert dlm.retry_count == 3 and dlm.retry_delay == 0.2
    lock = dlm.lock("pants", 1000)
    assert isinstance(lock, redlock_py.Lock)
    assert lock.resource == "pants" and isinstance(lock.key, bytes)
    assert 0 < lock.validity <= 1000 - 12 and isinstance(lock.validity, int)
    assert [s.get("pants") for s in dlm.servers] == [lock.key] * 3
    assert dlm.lock("pants", 1000) is False
    dlm.unlock(lock)
    assert three.holder("pants") == [None] * 3


def test_redlock_py_argument_checks():
    with pytest.raises(ValueError):
        redlock_py.Redlock(["redis://127.0.0.1:1"]).lock("x", 1000.0)
    with pytest.raises(Warning):
        redlock_py.Redlock([{"cat": "hog"}])
    with pytest.raises(Warning):
        redlock_py.Redlock(["http://nope"])
    with pytest.raises(redlock_py.CannotObtainLock):
        redlock_py.Redlock([])
    e = redlock_py.MultipleRedlockException([Exception("a b"), Exception("c d")])
    assert str(e) == "a b :: c d" and repr(e) == str(e) and len(e.errors) == 2


def test_redlock_py_units_and_attempts(three):
    """retry_count counts attempts, retry_delay is in seconds, fixed."""
    dlm = redlock_py.Redlock([s.url for s in three], retry_count=2, retry_delay=0.05)
    with mock.patch.object(Client, "acquire", autospec=True, side_effect=Client.acquire) as acq:
        lock = dlm.lock("units", 500)
    assert lock
    (_self, resource, ttl), kwargs = acq.call_args
    assert resource == b"units" and ttl == 0.5
    assert kwargs["retry"] == Retry(count=1, delay=0.05, jitter=0.0)
    dlm.unlock(lock)
    # retry_count=None / 0 mean the default, as in redlock-py.
    assert redlock_py.Redlock([three[0].url], retry_count=0).retry_count == 3


def test_redlock_py_ttl_of_10_ms(three):
    dlm = redlock_py.Redlock([s.url for s in three])
    lock = dlm.lock("short", 10)
    assert lock and 0 <= lock.validity < 10
    # It expires by itself within its TTL.
    deadline = time.monotonic() + 2
    while any(three.holder("short")):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    again = dlm.lock("short", 10)
    assert again
    dlm.unlock(again)


def test_redlock_py_two_of_five_down(five):
    five[0].kill()
    five[1].kill()
    dlm = redlock_py.Redlock([s.url for s in five], retry_count=1)
    lock = dlm.lock("fault", 1000)
    assert lock
    dlm.unlock(lock)
    five[2].kill()
    t0 = time.monotonic()
    assert dlm.lock("fault", 1000) is False
    assert time.monotonic() - t0 < 2.0  # no multi-second socket timeouts


def test_redlock_py_accepts_redis_clients(three):
    clients = [redis.StrictRedis(host="127.0.0.1", port=s.port) for s in three]
    dlm = redlock_py.Redlock(clients)
    assert dlm.servers is not clients and dlm.servers == clients
    lock = dlm.lock("objs", 1000)
    assert clients[0].get("objs") == lock.key
    dlm.unlock(lock)


# -------------------------------------------------------------- glasslion


def test_glasslion_defaults():
    lock = glasslion.RedLock("d")
    assert lock._nodes.urls == ("redis://127.0.0.1:6379/0",)
    assert (lock.ttl, lock.retry_times, lock.retry_delay) == (100000, 3, 200)
    assert lock.quorum == 1
    assert glasslion.CLOCK_DRIFT_FACTOR == 0.01


def test_glasslion_acquire_validity_locked_release(three):
    details = [hostport(s) for s in three]
    lock = glasslion.RedLock("g", details, ttl=1000)
    assert lock.locked() is False
    ok, validity = lock.acquire_with_validity()
    assert ok is True
    assert 0 < validity < 1000 - 1000 * glasslion.CLOCK_DRIFT_FACTOR - 2
    assert lock.locked() is True
    assert glasslion.RedLock("g", details, ttl=1000, retry_times=0).acquire() is False
    lock.release()
    assert lock.locked() is False
    with glasslion.RedLock("g", details, ttl=1000) as v:
        assert 0 < v < 988
        with pytest.raises(glasslion.RedLockError):
            with glasslion.RedLock("g", details, retry_times=0):
                pass


def test_glasslion_retry_semantics(three):
    """retry_times + 1 attempts, pauses uniform in [0, retry_delay] ms."""
    lock = glasslion.RedLock("sem", [s.url for s in three], ttl=700, retry_times=4, retry_delay=100)
    with mock.patch.object(Client, "acquire", autospec=True, side_effect=Client.acquire) as acq:
        assert lock.acquire()
    (_self, resource, ttl), kwargs = acq.call_args
    assert resource == b"sem" and ttl == 0.7
    assert kwargs["retry"] == Retry(count=4, delay=0.05, jitter=0.1)
    lock.release()


def test_glasslion_same_server_twice_beside_a_dead_one(cluster):
    """glasslion's own multi-backend case: db 0 and db 1 of one server,
    and a second server that is down."""
    live, dead = cluster(2)
    dead.kill()
    details = [
        {"host": "127.0.0.1", "port": live.port, "db": 0, "socket_timeout": 0.2},
        {"host": "127.0.0.1", "port": live.port, "db": 1, "socket_timeout": 0.2},
        {"host": "127.0.0.1", "port": dead.port, "db": 0, "socket_timeout": 0.2},
    ]
    lock = glasslion.RedLock("multi", connection_details=details, ttl=1000)
    assert lock.acquire() is True
    assert live.redis(0).get("multi") == lock.lock_key.encode()
    assert live.redis(1).get("multi") == lock.lock_key.encode()
    lock.release()
    assert live.redis(0).get("multi") is None and live.redis(1).get("multi") is None


def test_glasslion_factory_shares_nodes(three):
    factory = glasslion.RedLockFactory([{"url": s.url + "/0"} for s in three])
    a = factory.create_lock("f", ttl=500, retry_times=0, retry_delay=100)
    b = factory.create_lock("f", ttl=500, retry_times=0)
    assert a.redis_nodes is factory.redis_nodes and a.quorum == factory.quorum == 2
    assert a.factory is factory and (a.ttl, a.retry_times, a.retry_delay) == (500, 0, 100)
    assert a.acquire() is True and b.acquire() is False
    a.release()
    assert b.acquire() is True
    b.release()


def test_glasslion_connection_checks():
    with pytest.raises(TypeError):
        glasslion.RedLock("x", [{"host": "localhost", "cat": "hog"}])
    with pytest.raises(ValueError):
        glasslion.RedLock("x", [{"url": "unix:///tmp/redis.sock"}])
    # Extra redis-py keywords beside a URL are accepted, as redis-py does.
    lock = glasslion.RedLock("x", [{"url": "redis://localhost:6390?db=3", "socket_timeout": 0.5}])
    assert lock._nodes.urls == ("redis://localhost:6390/3",)


def test_glasslion_ttl_of_10_ms(three):
    lock = glasslion.RedLock("tiny", [s.url for s in three], ttl=10, retry_times=0)
    ok, validity = lock.acquire_with_validity()
    assert ok and 0 < validity < 10
    lock.release()


def test_glasslion_reentrant(three):
    lock = glasslion.ReentrantRedLock("re", [s.url for s in three], ttl=1000)
    assert lock.acquire() and lock.acquire()
    assert lock.release() is True  # still held once
    assert any(three.holder("re"))
    assert lock.release() is None  # released now
    assert not any(three.holder("re"))
    assert lock.release() is False


def test_node_timeout_steps():
    assert node_timeout_ms(10, 0.01, None) == 5
    assert node_timeout_ms(5, 0.01, None) == 2
    assert node_timeout_ms(1000, 0.01, None) == 50
    assert node_timeout_ms(1000, 0.01, 0.01) == 10
    assert node_timeout_ms(100000, 0.01, None) == 1000
    assert node_timeout_ms(2, 0.01, None) is None
