"""Exceptions raised by :mod:`redlock_rs`.

Every lock failure names the nodes concerned: :attr:`RedlockError.nodes`
holds one :class:`NodeFailure` per node (its URL with any password
redacted, what it answered, and the last error seen there), and the message
says the same in words.

::

    RedlockError
    ├── LockNotAcquired
    │   ├── LockBusy            the lock is held by someone else
    │   └── LockUnavailable     too few nodes answered to decide
    │       └── LockAuthError   ... and a node rejected our credentials
    ├── LockLost                an extension failed / the validity ran out
    ├── ConfigurationError      bad URL, TTL, timeout (also a ValueError)
    └── RedlockIOError          the OS or the client's own threads failed
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Optional, Tuple

__all__ = [
    "NodeFailure",
    "RedlockError",
    "LockNotAcquired",
    "LockBusy",
    "LockUnavailable",
    "LockAuthError",
    "LockLost",
    "ConfigurationError",
    "RedlockIOError",
]


class NodeFailure(NamedTuple):
    """One node's part in a failed operation.

    ``outcome`` is ``"ok"`` (it did what was asked), ``"held"`` (the key is
    held by another token), ``"gone"`` (an extension found our key no
    longer there), ``"no answer"`` (nothing in time) or ``"failed"`` (an
    error: ``error`` says which).
    """

    url: str
    outcome: str
    error: Optional[str] = None


class RedlockError(Exception):
    """Base class of every error raised by :mod:`redlock_rs`."""

    def __init__(self, message: str = "", nodes: Iterable[Tuple[str, str, Optional[str]]] = ()):
        super().__init__(message)
        self.message = message
        #: Per node, in the order the nodes were given.
        self.nodes: Tuple[NodeFailure, ...] = tuple(NodeFailure(*n) for n in nodes)

    @property
    def failed_nodes(self) -> Tuple[str, ...]:
        """URLs (redacted) of the nodes that failed: an error, or no answer
        in time (a node whose answer was simply not awaited, the outcome
        being decided without it, is not listed)."""
        return tuple(
            n.url
            for n in self.nodes
            if n.outcome == "failed" or (n.outcome == "no answer" and n.error is not None)
        )

    def __reduce__(self):  # picklable, e.g. across multiprocessing
        return (type(self), (self.message, tuple(tuple(n) for n in self.nodes)))


class LockNotAcquired(RedlockError):
    """The lock could not be acquired (after the retries asked for)."""


class LockBusy(LockNotAcquired):
    """The lock is held by someone else on enough nodes."""


class LockUnavailable(LockNotAcquired):
    """Too few nodes answered to decide (down, timing out, error replies),
    or a quorum answered too late to leave any validity.
    :attr:`failed_nodes` names the nodes that failed."""


class LockAuthError(LockUnavailable):
    """Too few nodes answered and at least one rejected our credentials."""


class LockLost(RedlockError):
    """The lock can no longer be trusted: an extension failed to reach a
    quorum in time, or the validity ran out. Whatever the lock protected
    may now be changed by another holder."""


class ConfigurationError(RedlockError, ValueError):
    """A node URL, TTL, timeout or retry setting is invalid."""


class RedlockIOError(RedlockError):
    """The operating system or the client itself failed (no randomness,
    no thread, the driver stopped)."""
