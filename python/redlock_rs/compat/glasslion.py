"""Drop-in for glasslion's ``redlock`` (PyPI ``redlock`` 1.2.0, with the
semantics of its current master): change ``from redlock import RedLock``
to ``from redlock_rs.compat.glasslion import RedLock``.

* ``RedLock(resource, connection_details=None, retry_times=3,
  retry_delay=200, ttl=100000, created_by_factory=False)``: ``ttl`` and
  ``retry_delay`` in **milliseconds**. ``acquire()`` makes
  ``retry_times + 1`` attempts, pausing a random time in
  ``[0, retry_delay]`` ms between them (master's semantics; 1.2.0 made
  ``retry_times`` attempts).
* ``acquire() -> bool``, ``acquire_with_validity() -> (bool, validity_ms)``,
  ``release()``, ``locked()``, and ``with RedLock(...) as validity:``
  (raises :class:`RedLockError` when not acquired).
* ``connection_details``: a list of host/port/db dicts (any redis-py
  keyword; unknown ones raise ``TypeError`` as redis-py does),
  ``{"url": ..., **kwargs}`` dicts, or redis-py clients; default
  ``redis://127.0.0.1:6379/0``. Naming one server twice (two dbs of one
  server) is accepted, as glasslion does, although the two are then not
  independent nodes.
* :class:`RedLockFactory` (``create_lock(resource, **kwargs)``, sharing its
  nodes), :class:`ReentrantRedLock`, :data:`CLOCK_DRIFT_FACTOR`.
* Attributes: ``resource``, ``ttl``, ``retry_times``, ``retry_delay``,
  ``lock_key``, ``quorum``, ``factory``, and ``redis_nodes`` (redis-py
  clients, built on first access; needs the ``redis`` package).

The locks go through the Rust client (every node at once, per-node
timeouts: a dead node costs at most that, not redis-py's timeouts) and are
not extended: as in glasslion, a lock lasts ``ttl``. Nothing is released
when a ``RedLock`` object is garbage-collected.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from .. import errors
from .._types import Retry
from ._nodes import NodeSet

__all__ = [
    "RedLock",
    "ReentrantRedLock",
    "RedLockFactory",
    "RedLockError",
    "CLOCK_DRIFT_FACTOR",
    "DEFAULT_RETRY_TIMES",
    "DEFAULT_RETRY_DELAY",
    "DEFAULT_TTL",
]

DEFAULT_RETRY_TIMES = 3
DEFAULT_RETRY_DELAY = 200
DEFAULT_TTL = 100000
CLOCK_DRIFT_FACTOR = 0.01

_DEFAULT_NODE = "redis://127.0.0.1:6379/0"


class RedLockError(Exception):
    """Raised by ``with RedLock(...)`` when the lock is not acquired."""


class RedLockFactory:
    """Builds :class:`RedLock` objects that share one set of nodes (and one
    native client)."""

    def __init__(self, connection_details: Sequence[Any]) -> None:
        self._nodes = NodeSet.of(connection_details)
        self.quorum = len(self._nodes) // 2 + 1

    @property
    def redis_nodes(self) -> List[Any]:
        """redis-py clients, one per node (built on first access)."""
        return self._nodes.redis_clients()

    @redis_nodes.setter
    def redis_nodes(self, clients: List[Any]) -> None:
        self._nodes = NodeSet.of_clients(clients)

    def create_lock(self, resource: Any, **kwargs: Any) -> "RedLock":
        """A :class:`RedLock` on this factory's nodes; ``kwargs`` go to its
        constructor (``ttl``, ``retry_times``, ``retry_delay``)."""
        lock = RedLock(resource=resource, created_by_factory=True, **kwargs)
        lock._nodes = self._nodes
        lock.quorum = self.quorum
        lock.factory = self
        return lock


def _resource_bytes(resource: Any) -> bytes:
    if isinstance(resource, bytes):
        return resource
    if isinstance(resource, str):
        return resource.encode("utf-8")
    if isinstance(resource, (int, float)) and not isinstance(resource, bool):
        return repr(resource).encode()
    raise errors.ConfigurationError(f"invalid resource {resource!r}: give str or bytes")


class RedLock:
    """A distributed lock with the API of ``threading.Lock`` (see the
    module doc)."""

    def __init__(
        self,
        resource: Any,
        connection_details: Optional[Sequence[Any]] = None,
        retry_times: int = DEFAULT_RETRY_TIMES,
        retry_delay: int = DEFAULT_RETRY_DELAY,
        ttl: int = DEFAULT_TTL,
        created_by_factory: bool = False,
    ) -> None:
        self.resource = resource
        self.retry_times = retry_times
        self.retry_delay = retry_delay
        self.ttl = ttl
        self.lock_key: Optional[str] = None
        self.factory: Optional[RedLockFactory] = None
        if created_by_factory:
            self._nodes: Optional[NodeSet] = None
            return
        if connection_details is None:
            connection_details = [_DEFAULT_NODE]
        self._nodes = NodeSet.of(connection_details)
        self.quorum = len(self._nodes) // 2 + 1

    @property
    def redis_nodes(self) -> List[Any]:
        """redis-py clients, one per node (built on first access)."""
        return self._node_set().redis_clients()

    @redis_nodes.setter
    def redis_nodes(self, clients: List[Any]) -> None:
        self._nodes = NodeSet.of_clients(clients)
        self.quorum = len(self._nodes) // 2 + 1

    def _node_set(self) -> NodeSet:
        nodes = getattr(self, "_nodes", None)
        if nodes is None:
            raise RuntimeError("this RedLock has no nodes (created_by_factory without a factory)")
        return nodes

    def __enter__(self) -> float:
        acquired, validity = self.acquire_with_validity()
        if not acquired:
            raise RedLockError("failed to acquire lock")
        return validity

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.release()

    def locked(self) -> bool:
        """Whether any node holds a lock on ``resource`` (by anyone). Asks
        each node with redis-py; a node that cannot be reached counts as
        not holding it."""
        import redis

        for node in self.redis_nodes:
            try:
                if node.get(self.resource):
                    return True
            except redis.exceptions.RedisError:
                continue
        return False

    def acquire(self) -> bool:
        """Acquires the lock: True, or False after ``retry_times + 1``
        attempts."""
        acquired, _validity = self._acquire()
        return acquired

    def acquire_with_validity(self) -> Tuple[bool, float]:
        """``(True, validity_ms)`` or ``(False, 0)``."""
        return self._acquire()

    def _acquire(self) -> Tuple[bool, float]:
        attempts = int(self.retry_times) + 1
        ttl = self.ttl
        if attempts <= 0 or ttl <= 0:
            return False, 0
        nodes = self._node_set()
        client = nodes.client_for(ttl, CLOCK_DRIFT_FACTOR)
        if client is None:
            return False, 0
        delay = max(float(self.retry_delay), 0.0) / 1000.0
        # A pause uniform in [0, retry_delay]: delay/2 +- delay/2.
        retry = Retry(count=attempts - 1, delay=delay / 2, jitter=delay)
        try:
            grant = client.acquire(_resource_bytes(self.resource), ttl / 1000.0, retry=retry)
        except errors.LockNotAcquired:
            return False, 0
        self.lock_key = grant.token
        return True, grant.validity * 1000.0

    def release(self) -> None:
        """Releases the lock this object last acquired, if its token still
        holds it (another holder's lock is never touched)."""
        if self.lock_key is None:
            return
        nodes = self._node_set()
        client = nodes.client_for(self.ttl if self.ttl > 0 else 1000, CLOCK_DRIFT_FACTOR)
        if client is None:
            client = nodes.client_for(1000, CLOCK_DRIFT_FACTOR)
        if client is None:  # pragma: no cover - a 1 s TTL always fits
            return
        try:
            client.release(_resource_bytes(self.resource), self.lock_key)
        except errors.RedlockError:
            pass  # glasslion ignores connection errors on release


class ReentrantRedLock(RedLock):
    """A :class:`RedLock` that the same object may acquire several times;
    the lock is released when ``release()`` has been called as many times."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquired = 0

    def acquire(self) -> bool:
        if self._acquired > 0:
            self._acquired += 1
            return True
        result = super().acquire()
        if result:
            self._acquired = 1
        return result

    def release(self) -> Any:
        if self._acquired <= 0:
            return False
        self._acquired -= 1
        if self._acquired > 0:
            return True
        return super().release()
