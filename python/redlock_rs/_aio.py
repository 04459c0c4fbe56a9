"""The asyncio client: :class:`AsyncClient` and :class:`AsyncLease`.

It binds ``redlock-tokio``: the network work runs on a small tokio runtime
(one worker thread, shared by every async client of the process) and each
call returns an asyncio awaitable. Cancelling an ``await`` cancels the
operation: an acquire cancelled half-way releases whatever it had taken.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Generator, Optional, Sequence, Tuple, Type, Union

from . import _native
from ._client import _forkable, _nodes, _retry_tuple
from ._types import (
    Grant,
    Release,
    Resources,
    Retry,
    RetryLike,
    TokenLike,
    _encode_all,
    _retry,
    _seconds,
    _token_bytes,
    _token_str,
)
from .errors import LockBusy, LockLost

__all__ = ["AsyncClient", "AsyncLease"]


class AsyncClient:
    """The asyncio twin of :class:`~redlock_rs.Client` (same arguments).

    >>> client = AsyncClient(["redis://a", "redis://b", "redis://c"], ttl=10)
    >>> async def job():
    ...     async with client.lock("reports") as lease:   # extended in the background
    ...         await work()
    ...         lease.check()

    ``await client.lock(...)`` also works and returns the
    :class:`AsyncLease`, to release with ``await lease.release()``.
    """

    def __init__(
        self,
        nodes: Union[str, Sequence[str]],
        ttl: float = 30.0,
        node_timeout: Optional[float] = None,
        retry: RetryLike = None,
        *,
        drift_factor: Optional[float] = None,
        tls_ca_pem: Optional[bytes] = None,
        _allow_same_server_twice: bool = False,
    ) -> None:
        retry_ = _retry(retry)
        self._args: Tuple[Any, ...] = (
            _nodes(nodes),
            _seconds(ttl, "ttl"),
            None if node_timeout is None else _seconds(node_timeout, "node_timeout"),
            None if retry_ is None else retry_._tuple(),
            drift_factor,
            tls_ca_pem,
            bool(_allow_same_server_twice),
        )
        self._build_lock = threading.Lock()
        self._pid = os.getpid()
        self._native_client: Optional[Any] = _native.AsyncClient(*self._args)
        _forkable.add(self)
        ttl_, timeout_, retry_t, drift = self._native_client.config()
        self.ttl: float = ttl_
        self.node_timeout: float = timeout_
        self.retry: Retry = Retry(*retry_t)
        self.drift_factor: float = drift
        self.nodes: Tuple[str, ...] = tuple(self._native_client.node_urls())
        self.quorum: int = len(self.nodes) // 2 + 1

    def _forked(self) -> None:
        self._build_lock = threading.Lock()
        self._native_client = None

    @property
    def _native(self) -> Any:
        client = self._native_client
        if client is None or self._pid != os.getpid():
            with self._build_lock:
                if self._native_client is None or self._pid != os.getpid():
                    self._native_client = _native.AsyncClient(*self._args)
                    self._pid = os.getpid()
                client = self._native_client
        return client

    def __repr__(self) -> str:
        return f"{type(self).__name__}(nodes={list(self.nodes)!r}, ttl={self.ttl!r})"

    #: The class of the leases :meth:`lock` returns (override to subclass).
    _lease_class: Type["AsyncLease"]

    def lock(
        self,
        resource: Resources,
        ttl: Optional[float] = None,
        *,
        retry: RetryLike = None,
        keep: bool = True,
        fence: bool = False,
    ) -> "_LockRequest":
        """Acquires ``resource`` (or a list of them, all or nothing):
        ``await`` it for an :class:`AsyncLease`, or use it with ``async
        with`` (released at the end of the block; leaving the block of a
        lost lease raises :class:`~redlock_rs.errors.LockLost`). ``fence``
        and errors as :meth:`Client.lock <redlock_rs.Client.lock>`."""
        return _LockRequest(self, resource, ttl, retry, keep, fence)

    async def _lock(
        self,
        resource: Resources,
        ttl: Optional[float],
        retry: RetryLike,
        keep: bool,
        fence: bool = False,
    ) -> "AsyncLease":
        native = await self._native.lock(
            _encode_all(resource),
            None if ttl is None else _seconds(ttl, "ttl"),
            _retry_tuple(retry),
            bool(keep),
            bool(fence),
        )
        return self._lease_class(self, native, resource)

    async def try_lock(
        self,
        resource: Resources,
        ttl: Optional[float] = None,
        *,
        keep: bool = True,
        fence: bool = False,
    ) -> Optional["AsyncLease"]:
        """One attempt: an :class:`AsyncLease`, or None if busy."""
        try:
            return await self._lock(resource, ttl, Retry.none(), keep, fence)
        except LockBusy:
            return None

    async def acquire(
        self,
        resource: Resources,
        ttl: Optional[float] = None,
        *,
        retry: RetryLike = None,
        fence: bool = False,
    ) -> Grant:
        """As :meth:`Client.acquire <redlock_rs.Client.acquire>`."""
        token, validity, fence_ = await self._native.acquire(
            _encode_all(resource),
            None if ttl is None else _seconds(ttl, "ttl"),
            _retry_tuple(retry),
            bool(fence),
        )
        return Grant(resource, _token_str(token), validity, fence_)

    async def extend(
        self, resource: Resources, token: TokenLike, ttl: Optional[float] = None
    ) -> float:
        """As :meth:`Client.extend <redlock_rs.Client.extend>`."""
        return await self._native.extend(
            _encode_all(resource),
            _token_bytes(token),
            None if ttl is None else _seconds(ttl, "ttl"),
        )

    async def release(self, resource: Resources, token: TokenLike) -> Release:
        """As :meth:`Client.release <redlock_rs.Client.release>`."""
        t = await self._native.release(_encode_all(resource), _token_bytes(token))
        return Release._from_native(t)


class _LockRequest:
    """``await``-able and ``async with``-able result of :meth:`AsyncClient.lock`."""

    def __init__(
        self, client: AsyncClient, resource: Resources, ttl: Optional[float], retry: RetryLike,
        keep: bool, fence: bool = False,
    ) -> None:
        self._client = client
        self._call = (resource, ttl, retry, keep, fence)
        self._lease: Optional[AsyncLease] = None

    def __await__(self) -> Generator[Any, None, "AsyncLease"]:
        return self._client._lock(*self._call).__await__()

    async def __aenter__(self) -> "AsyncLease":
        self._lease = await self._client._lock(*self._call)
        return self._lease

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.__aexit__(exc_type, exc, tb)


class AsyncLease:
    """A lock held through an :class:`AsyncClient`; the same attributes as
    :class:`~redlock_rs.Lease`, with ``release``, ``extend`` and
    ``wait_lost`` as coroutines."""

    def __init__(self, client: AsyncClient, native: Any, resource: Resources) -> None:
        self._client = client
        self._native = native
        self._pid = os.getpid()
        self._released = False
        self.resource: Resources = resource
        self.token: str = _token_str(native.token)

    def _foreign(self) -> bool:
        return self._pid != os.getpid()

    @property
    def kept(self) -> bool:
        return False if self._foreign() else self._native.kept

    @property
    def lost(self) -> bool:
        return True if self._foreign() else self._native.is_lost()

    @property
    def released(self) -> bool:
        return self._released

    @property
    def remaining(self) -> float:
        return 0.0 if self._foreign() else self._native.remaining()

    @property
    def fence(self) -> Optional[int]:
        """As :attr:`Lease.fence <redlock_rs.Lease.fence>`: the fencing
        token of a lease taken with ``fence=True``, else None."""
        return self._native.fence

    def lost_error(self) -> Optional[LockLost]:
        if self._foreign():
            return LockLost(
                f"lock lost: this lease was taken by process {self._pid} before os.fork()"
            )
        return self._native.lost_error()

    def check(self) -> None:
        """Raises :class:`~redlock_rs.errors.LockLost` if the lock is lost."""
        err = self.lost_error()
        if err is not None:
            raise err

    async def wait_lost(self) -> bool:
        """Completes with True when the lock is lost, False when the lease
        is (or gets) released first. Use it in ``asyncio.wait`` / a task
        group beside the work it protects."""
        if self._foreign():
            return True
        return await self._native.wait_lost()

    async def extend(self, ttl: Optional[float] = None) -> None:
        """Extends a ``keep=False`` lease; raises LockLost on failure."""
        await self._native.extend(None if ttl is None else _seconds(ttl, "ttl"))

    async def release(self) -> Release:
        """Stops extending and releases now. A kept lease that had been lost
        raises :class:`~redlock_rs.errors.LockLost` (after releasing what
        was left of it)."""
        if self._foreign():
            return Release("unknown", 0, 0, 0)
        self._released = True
        t = await self._native.release()
        if t is None:
            return Release("already_gone", 0, 0, 0)
        return Release._from_native(t)

    async def __aenter__(self) -> "AsyncLease":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        err = self.lost_error()
        try:
            await self.release()
        except LockLost as lost:
            err = err or lost
        if err is not None and exc_type is None:
            raise err

    def __repr__(self) -> str:
        state = "released" if self._released else ("lost" if self.lost else "held")
        return f"<{type(self).__name__} {self.resource!r} {state}>"


AsyncClient._lease_class = AsyncLease
