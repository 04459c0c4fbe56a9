"""redlock-rs: Redlock distributed locks for Python, on a Rust core.

A lock is held by a majority of N independent Redis masters. All requests
go to every node at once over pipelined connections, each node has its own
timeout, leases are extended in the background and their loss is signalled
at once. The algorithm (quorum, validity, clock drift, retries, undoing
failed attempts) is the sans-IO Rust core of the ``redlock`` project.

>>> from redlock_rs import Client
>>> client = Client(["redis://h1", "redis://h2", "redis://h3"], ttl=10)
>>> with client.lock("invoices") as lease:      # doctest: +SKIP
...     work()
...     lease.check()                            # raises LockLost if lost

For code written against ``redlock-py`` or glasslion's ``redlock``, change
one import: :mod:`redlock_rs.compat.redlock_py`,
:mod:`redlock_rs.compat.glasslion`.
"""

from ._aio import AsyncClient, AsyncLease
from ._client import Client, Lease
from ._types import Grant, Release, Retry
from .errors import (
    ConfigurationError,
    LockAuthError,
    LockBusy,
    LockLost,
    LockNotAcquired,
    LockUnavailable,
    NodeFailure,
    RedlockError,
    RedlockIOError,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Lease",
    "AsyncClient",
    "AsyncLease",
    "Retry",
    "Release",
    "Grant",
    "RedlockError",
    "LockNotAcquired",
    "LockBusy",
    "LockUnavailable",
    "LockAuthError",
    "LockLost",
    "ConfigurationError",
    "RedlockIOError",
    "NodeFailure",
]
