"""Drop-in for ``redlock-py`` 1.0.8 (SPSCommerce): change
``from redlock import Redlock`` to
``from redlock_rs.compat.redlock_py import Redlock``.

The same names, signatures, argument checks, attributes and units as
redlock-py 1.0.8:

* ``Redlock(connection_list, retry_count=None, retry_delay=None)``; each
  entry is a URL, a dict of redis-py keyword arguments or a redis-py
  client; a bad entry raises ``Warning``; no entry at all raises
  :class:`CannotObtainLock`.
* ``lock(resource, ttl)`` with ``ttl`` an ``int`` of **milliseconds** (a
  float raises ``ValueError``) returns ``Lock(validity, resource, key)``
  (validity in ms, ``key`` the token as ``bytes``, as stored in Redis) or
  ``False``.
* ``retry_count`` is the number of **attempts** (default 3; 0 or None
  mean the default, as in redlock-py) and ``retry_delay`` the pause between
  them in **seconds** (default 0.2): redlock-py's README says
  milliseconds, its code sleeps ``retry_delay`` seconds.
* ``unlock(lock)`` never raises for node failures (redlock-py logs them).
* ``servers`` (redis-py clients, built on first access; needs the
  ``redis`` package), ``quorum``, ``retry_count``, ``retry_delay``,
  ``clock_drift_factor``, ``default_retry_count``, ``default_retry_delay``.

What is better than the original: all nodes are asked at once with a
per-node timeout (a dead node costs at most that, not redis-py's
timeouts), validity is measured on a monotonic clock, a failed attempt
releases what it took on every node, and the pause after the *last* failed
attempt (redlock-py sleeps ``retry_delay`` before returning ``False``) is
not taken. Deliberate difference: when a quorum was reached but some node
errored, redlock-py 1.0.8 raises :class:`MultipleRedlockException` *while
holding the lock* (which then can only expire); here the lock is returned.
"""

from __future__ import annotations

import logging
from collections import namedtuple
from typing import Any, List, Optional, Sequence, Union

from .. import errors
from .._types import Retry
from ._nodes import NodeSet, spec

__all__ = ["Redlock", "Lock", "CannotObtainLock", "MultipleRedlockException"]

log = logging.getLogger(__name__)

#: A held lock: ``validity`` (ms, int), ``resource`` (as given), ``key``
#: (the token, bytes).
Lock = namedtuple("Lock", ("validity", "resource", "key"))


class CannotObtainLock(Exception):
    """Raised by :class:`Redlock` when given no server at all."""


class MultipleRedlockException(Exception):
    """Several errors at once; ``str()`` joins them with ``" :: "``."""

    def __init__(self, errors: Sequence[BaseException], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.errors = list(errors)

    def __str__(self) -> str:
        return " :: ".join(str(e) for e in self.errors)

    def __repr__(self) -> str:
        return str(self)


def _resource_bytes(resource: Any) -> bytes:
    # As redis-py encodes keys.
    if isinstance(resource, bytes):
        return resource
    if isinstance(resource, str):
        return resource.encode("utf-8")
    if isinstance(resource, (int, float)) and not isinstance(resource, bool):
        return repr(resource).encode()
    raise errors.ConfigurationError(f"invalid resource {resource!r}: give str or bytes")


class Redlock:
    """A lock manager over ``connection_list`` (see the module doc)."""

    default_retry_count = 3
    default_retry_delay = 0.2
    clock_drift_factor = 0.01

    def __init__(
        self,
        connection_list: Sequence[Union[str, dict, Any]],
        retry_count: Optional[int] = None,
        retry_delay: Optional[float] = None,
    ) -> None:
        specs = []
        for info in connection_list:
            try:
                specs.append(spec(info))
            except Exception as e:
                raise Warning(str(e)) from e
        self._nodes = NodeSet(specs)
        self._servers: Optional[List[Any]] = None
        self.quorum = len(connection_list) // 2 + 1
        if len(self._nodes) < self.quorum:
            raise CannotObtainLock("Failed to connect to the majority of redis servers")
        self.retry_count = retry_count or self.default_retry_count
        self.retry_delay = retry_delay or self.default_retry_delay
        self._last_client: Any = None

    @property
    def servers(self) -> List[Any]:
        """One redis-py client per node (built on first access)."""
        if self._servers is None:
            self._servers = self._nodes.redis_clients()
        return self._servers

    @servers.setter
    def servers(self, value: List[Any]) -> None:
        self._servers = value

    def lock(self, resource: Any, ttl: int) -> Union[Lock, bool]:
        """Acquires ``resource`` for ``ttl`` milliseconds: a :data:`Lock`,
        or ``False`` when it could not be acquired in ``retry_count``
        attempts. ``ttl`` must be an ``int`` (``ValueError`` otherwise)."""
        if not isinstance(ttl, int):
            raise ValueError(f"ttl {ttl} is not an integer")
        attempts = int(self.retry_count)
        if attempts <= 0 or ttl <= 0:
            return False
        client = self._nodes.client_for(ttl, float(self.clock_drift_factor))
        if client is None:  # too short for any node timeout to leave validity
            return False
        self._last_client = client
        retry = Retry(count=attempts - 1, delay=float(self.retry_delay), jitter=0.0)
        try:
            grant = client.acquire(_resource_bytes(resource), ttl / 1000.0, retry=retry)
        except errors.LockNotAcquired as e:
            log.debug("lock %r not acquired: %s", resource, e)
            return False
        return Lock(int(grant.validity * 1000), resource, grant.token.encode("utf-8", "surrogateescape"))

    def unlock(self, lock: Lock) -> None:
        """Releases ``lock`` on every node (compare-and-delete: a key that
        now holds another token is left alone). Node failures are logged,
        not raised, as in redlock-py."""
        client = self._last_client or self._nodes.client_for(1000, float(self.clock_drift_factor))
        if client is None:  # pragma: no cover - a 1 s TTL always fits
            return
        try:
            result = client.release(_resource_bytes(lock.resource), lock.key)
        except errors.RedlockError:
            log.exception("Error unlocking resource %s", lock.resource)
            return
        if result.unanswered:
            log.error(
                "Error unlocking resource %s: %d of %d nodes did not answer",
                lock.resource, result.unanswered, len(self._nodes),
            )
