"""Node failures: dead and paused redis-server processes.

The bounds checked here are correctness bounds (an attempt must not wait
longer than about the node timeout on a dead or silent node, as the
seeds' redis-py clients do with their multi-second socket timeouts), with
a wide margin for a loaded machine; they are not performance claims.
"""

from __future__ import annotations

import time

import pytest

from redlock_rs import Client, LockUnavailable

NODE_TIMEOUT = 0.1
# One attempt costs at most about one node timeout; allow for connection
# set-up and a busy 2-core machine.
BOUND = 2.0


def test_two_of_five_down_still_locks(five):
    five[3].kill()
    five[4].kill()
    client = Client(five.urls, ttl=5, node_timeout=NODE_TIMEOUT, retry=0)
    with client.lock("two-down") as lease:
        holders = five.holder("two-down")
        assert holders[:3] == [lease.token.encode()] * 3


def test_three_of_five_down_is_unavailable_within_the_node_timeout(five):
    for s in five[2:]:
        s.kill()
    client = Client(five.urls, ttl=5, node_timeout=NODE_TIMEOUT, retry=0)
    t0 = time.monotonic()
    with pytest.raises(LockUnavailable) as e:
        client.lock("three-down")
    assert time.monotonic() - t0 < BOUND
    assert set(e.value.failed_nodes) == set(five.urls[2:])


def test_one_paused_node_of_five_costs_at_most_a_node_timeout(five):
    client = Client(five.urls, ttl=5, node_timeout=NODE_TIMEOUT, retry=0)
    client.lock("warm").release()  # connections up
    five[0].pause()
    t0 = time.monotonic()
    with client.lock("paused") as lease:
        assert time.monotonic() - t0 < BOUND
        assert not lease.lost
    five[0].resume()


def test_three_paused_nodes_are_unavailable_within_the_node_timeout(five):
    client = Client(five.urls, ttl=5, node_timeout=NODE_TIMEOUT, retry=0)
    client.lock("warm").release()
    for s in five[:3]:
        s.pause()
    t0 = time.monotonic()
    with pytest.raises(LockUnavailable) as e:
        client.lock("paused3")
    elapsed = time.monotonic() - t0
    for s in five[:3]:
        s.resume()
    assert elapsed < BOUND
    assert set(e.value.failed_nodes) == set(five.urls[:3])
    assert "timed out" in str(e.value)


def test_lock_survives_a_node_restart_and_keeps_extending(five):
    client = Client(five.urls, ttl=0.4, node_timeout=NODE_TIMEOUT)
    with client.lock("restart") as lease:
        five[0].kill()
        five[1].kill()
        # 3 of 5 keep confirming the extensions for several TTLs.
        assert lease.wait_lost(timeout=1.5) is False
        five[0].start()
        assert lease.wait_lost(timeout=0.5) is False


def test_losing_the_quorum_signals_loss(five):
    client = Client(five.urls, ttl=0.4, node_timeout=NODE_TIMEOUT)
    lease = client.lock("quorum-loss")
    for s in five[:3]:
        s.kill()
    assert lease.wait_lost(timeout=5) is True
    err = lease.lost_error()
    assert err is not None
    lease.release()
