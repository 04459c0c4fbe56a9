"""The blocking client: :class:`Client` and :class:`Lease`."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Optional, Sequence, Tuple, Type, Union

from . import _native
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

__all__ = ["Client", "Lease"]

# Objects to tell about a fork: each rebuilds its native half lazily in the
# child (the parent's driver threads do not exist there).
_forkable: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for obj in list(_forkable):
        obj._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _nodes(nodes: Union[str, Sequence[str]]) -> list:
    if isinstance(nodes, str):
        return [nodes]
    out = list(nodes)
    for n in out:
        if not isinstance(n, str):
            raise TypeError(f"a node is a URL string (redis://host:port/db), got {n!r}")
    return out


class Client:
    """A Redlock client over N independent Redis masters (blocking).

    ``nodes`` are URLs ``redis://[[user]:password@]host[:port][/db]`` (or
    ``rediss://`` for TLS). ``ttl`` is the default lease length in seconds;
    ``node_timeout`` how long one node may take to answer one request
    (default: 5 % of the TTL, 5 ms to 1 s), so a dead or paused node costs
    at most about that per attempt; ``retry`` the default
    :class:`Retry` policy (an int is a retry count).

    One client owns one background driver thread and one pipelined
    connection per node, shared by every thread using it: create one per
    process and share it. Every call releases the GIL while it waits.

    >>> client = Client(["redis://10.0.0.1", "redis://10.0.0.2", "redis://10.0.0.3"], ttl=10)
    >>> with client.lock("invoices") as lease:   # doctest: +SKIP
    ...     do_work()                             # extended in the background
    ...     lease.check()                         # raises LockLost if lost

    Fork: a client keeps working in a forked child (it rebuilds its driver
    and connections there on first use). Leases are *not* inherited: in the
    child a parent's lease reads as lost and is never released from there.
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
        # `_allow_same_server_twice`: for the compat modules only (the
        # libraries they replace take two dbs of one server as two nodes).
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
        self._native_client: Optional[Any] = self._build()
        _forkable.add(self)
        ttl_, timeout_, retry_t, drift = self._native_client.config()
        #: Default lease length, seconds.
        self.ttl: float = ttl_
        #: Per-request timeout of one node, seconds.
        self.node_timeout: float = timeout_
        #: Default retry policy.
        self.retry: Retry = Retry(*retry_t)
        #: Clock drift allowance, as a fraction of the TTL.
        self.drift_factor: float = drift
        #: The nodes' URLs, passwords redacted.
        self.nodes: Tuple[str, ...] = tuple(self._native_client.node_urls())
        #: Nodes that must agree: ``len(nodes) // 2 + 1``.
        self.quorum: int = len(self.nodes) // 2 + 1

    def _build(self) -> Any:
        return _native.Client(*self._args)

    def _forked(self) -> None:
        # The parent's native client is inert here (and leaked, never
        # dropped): build a fresh one on first use.
        self._build_lock = threading.Lock()
        self._native_client = None

    @property
    def _native(self) -> Any:
        client = self._native_client
        if client is None or self._pid != os.getpid():
            with self._build_lock:
                if self._native_client is None or self._pid != os.getpid():
                    self._native_client = self._build()
                    self._pid = os.getpid()
                client = self._native_client
        return client

    def __repr__(self) -> str:
        return f"{type(self).__name__}(nodes={list(self.nodes)!r}, ttl={self.ttl!r})"

    # -- leases ------------------------------------------------------------

    def lock(
        self,
        resource: Resources,
        ttl: Optional[float] = None,
        *,
        retry: RetryLike = None,
        keep: bool = True,
        fence: bool = False,
    ) -> "Lease":
        """Acquires ``resource`` (retrying as ``retry`` says) and returns a
        :class:`Lease`, also a context manager that releases it.

        ``resource`` may be a list of resources: one lease over all of
        them, taken all or nothing on each node (a set that overlaps a held
        lock is busy and takes nothing). With ``fence=True`` the lease
        carries a fencing token (:attr:`Lease.fence`) that grows with every
        grant; the protected resource must refuse writes with a lower one.

        With ``keep`` (the default) the lease is extended in the background
        a third into each validity window, for as long as it is held; if an
        extension fails, :attr:`Lease.lost` turns True at once.

        Raises :class:`~redlock_rs.errors.LockBusy` (held by someone else),
        :class:`~redlock_rs.errors.LockUnavailable` (too few nodes answered;
        ``failed_nodes`` names them), or
        :class:`~redlock_rs.errors.ConfigurationError` (e.g. a TTL too short
        for the node timeout). The GIL is released while it waits; on the
        main thread, a wait that may last seconds is interrupted by Ctrl-C
        (the partial acquire is undone and ``KeyboardInterrupt`` raised).
        """
        retry_ = _retry(retry)
        native = self._native.lock(
            _encode_all(resource),
            None if ttl is None else _seconds(ttl, "ttl"),
            None if retry_ is None else retry_._tuple(),
            bool(keep),
            _interruptible(retry_, self.retry),
            bool(fence),
        )
        return self._lease_class(self, native, resource)

    def try_lock(
        self,
        resource: Resources,
        ttl: Optional[float] = None,
        *,
        keep: bool = True,
        fence: bool = False,
    ) -> Optional["Lease"]:
        """One attempt: a :class:`Lease`, or None if the lock is busy.
        Raises :class:`~redlock_rs.errors.LockUnavailable` when too few
        nodes answered to tell."""
        try:
            return self.lock(resource, ttl, retry=Retry.none(), keep=keep, fence=fence)
        except LockBusy:
            return None

    #: The class of the leases :meth:`lock` returns (override to subclass).
    _lease_class: Type["Lease"]

    # -- by token ------------------------------------------------------------

    def acquire(
        self,
        resource: Resources,
        ttl: Optional[float] = None,
        *,
        retry: RetryLike = None,
        fence: bool = False,
    ) -> Grant:
        """Acquires ``resource`` (or a list of them) and leaves it held
        until its TTL: nothing releases it when Python objects go away.
        Returns a :class:`Grant` whose token :meth:`extend` and
        :meth:`release` take (from this or any other process, or from the
        ``redlock`` command); with ``fence=True`` it carries the fence."""
        retry_ = _retry(retry)
        token, validity, fence_ = self._native.acquire(
            _encode_all(resource),
            None if ttl is None else _seconds(ttl, "ttl"),
            None if retry_ is None else retry_._tuple(),
            _interruptible(retry_, self.retry),
            bool(fence),
        )
        return Grant(resource, _token_str(token), validity, fence_)

    def extend(self, resource: Resources, token: TokenLike, ttl: Optional[float] = None) -> float:
        """Extends the lock ``token`` holds on ``resource`` to ``ttl``
        seconds from now (default: the client's TTL). Returns the validity
        left, in seconds. Raises :class:`~redlock_rs.errors.LockLost` when a
        quorum does not confirm in time."""
        return self._native.extend(
            _encode_all(resource),
            _token_bytes(token),
            None if ttl is None else _seconds(ttl, "ttl"),
        )

    def release(self, resource: Resources, token: TokenLike) -> Release:
        """Releases the lock ``token`` holds on ``resource``
        (compare-and-delete on every node: another holder's key is never
        touched)."""
        return Release._from_native(
            self._native.release(_encode_all(resource), _token_bytes(token))
        )


# A blocking acquire that may wait this long (seconds) runs so that Ctrl-C
# interrupts it (a helper thread; shorter waits are not worth its cost).
_LONG_WAIT = 2.0


def _interruptible(retry: Optional[Retry], default: Retry) -> bool:
    """Whether an acquire with this policy should watch for signals: only
    the main thread gets them, and only long waits are worth it."""
    if threading.current_thread() is not threading.main_thread():
        return False
    r = retry if retry is not None else default
    if r.wait is not None:
        return r.wait >= _LONG_WAIT
    return r.count * (r.delay + r.jitter / 2) >= _LONG_WAIT


def _retry_tuple(retry: RetryLike) -> Optional[tuple]:
    r = _retry(retry)
    return None if r is None else r._tuple()


class Lease:
    """A held lock, from :meth:`Client.lock`.

    Use it as a context manager (``with client.lock("r") as lease:``) or
    call :meth:`release`. A lease that is garbage-collected unreleased is
    released in the background.

    A lease taken with ``keep=True`` (the default) is extended in the
    background; :attr:`lost` turns True as soon as an extension fails or
    the validity runs out, and :meth:`check` raises
    :class:`~redlock_rs.errors.LockLost` then. Leaving the ``with`` block
    of a lost lease raises :class:`~redlock_rs.errors.LockLost` too (unless
    another exception is already on its way): the block was not protected
    to its end.
    """

    def __init__(self, client: Client, native: Any, resource: Resources) -> None:
        self._client = client
        self._native = native
        self._pid = os.getpid()
        self._released = False
        #: The resource (or the list of resources), as given.
        self.resource: Resources = resource
        #: The token stored under the resource's key on the nodes.
        self.token: str = _token_str(native.token)

    def _foreign(self) -> bool:
        return self._pid != os.getpid()

    @property
    def kept(self) -> bool:
        """Whether the lease is extended in the background."""
        return False if self._foreign() else self._native.kept

    @property
    def lost(self) -> bool:
        """True once the lock can no longer be trusted (an extension failed,
        the validity ran out, or this is a forked child's copy of a parent's
        lease). A released lease is not lost."""
        if self._foreign():
            return True
        return self._native.is_lost()

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called (or the ``with`` block left)."""
        return self._released

    @property
    def remaining(self) -> float:
        """Validity left, in seconds (0 once lost, expired or released)."""
        if self._foreign():
            return 0.0
        return self._native.remaining()

    @property
    def fence(self) -> Optional[int]:
        """The fencing token of a lease taken with ``fence=True`` (None for
        a plain one): greater than the fence of every grant of these
        resources confirmed before this one's acquire started, and never
        equal to another grant's. Pass it with every write to the protected
        resource, which must refuse a write whose fence is lower than one it
        has accepted (in SQL: ``UPDATE ... SET fence = :f WHERE ... AND
        fence <= :f``; 0 rows means a newer holder exists). Extensions keep
        it."""
        return self._native.fence

    def lost_error(self) -> Optional[LockLost]:
        """The :class:`~redlock_rs.errors.LockLost` describing the loss, or
        None while the lock is held."""
        if self._foreign():
            return LockLost(
                "lock lost: this lease was taken by process "
                f"{self._pid} before os.fork(); a child does not hold its parent's locks"
            )
        return self._native.lost_error()

    def check(self) -> None:
        """Raises :class:`~redlock_rs.errors.LockLost` if the lock is lost."""
        err = self.lost_error()
        if err is not None:
            raise err

    def wait_lost(self, timeout: Optional[float] = None) -> bool:
        """Blocks (GIL released) until the lock is lost or ``timeout``
        seconds pass; True if it was lost. False for a lease released
        before or while waiting (a ``keep=False`` lease counts as lost when
        the validity it had at the call runs out)."""
        if self._foreign():
            return True
        lost = self._native.wait_lost(None if timeout is None else _seconds(timeout, "timeout"))
        return bool(lost) and not self._released

    def extend(self, ttl: Optional[float] = None) -> None:
        """Extends a lease taken with ``keep=False`` to ``ttl`` seconds from
        now (default: its TTL). Raises :class:`~redlock_rs.errors.LockLost`
        when a quorum does not confirm in time."""
        self._native.extend(None if ttl is None else _seconds(ttl, "ttl"))

    def release(self) -> Release:
        """Stops extending and releases the lock now. Releasing twice is
        harmless (the second reports ``"already_gone"`` without asking the
        nodes). In a forked child this does nothing: the lock is the
        parent's."""
        if self._foreign():
            return Release("unknown", 0, 0, 0)
        self._released = True
        t = self._native.release()
        if t is None:
            return Release("already_gone", 0, 0, 0)
        return Release._from_native(t)

    def forget(self) -> None:
        """Leaves a ``keep=False`` lease held until its TTL runs out (it is
        then not released when this object is garbage-collected)."""
        self._native.forget()
        self._released = True

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        err = self.lost_error()
        self.release()
        if err is not None and exc_type is None:
            raise err

    def __repr__(self) -> str:
        state = "released" if self._released else ("lost" if self.lost else "held")
        return f"<{type(self).__name__} {self.resource!r} {state}>"


Client._lease_class = Lease
