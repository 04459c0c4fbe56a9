"""Small value types shared by the blocking and asyncio clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union, cast

__all__ = ["Retry", "Release", "Grant", "RetryLike", "Resource", "Resources", "TokenLike"]

Resource = Union[str, bytes]
#: One resource, or several (a list or tuple) locked as one lease: all or
#: nothing on each node.
Resources = Union[Resource, Sequence[Resource]]
TokenLike = Union[str, bytes]


@dataclass(frozen=True)
class Retry:
    """How a failed acquire is retried.

    After a failed attempt the client waits ``delay`` seconds, moved by a
    random amount in ``[-jitter/2, +jitter/2]``, then tries again: up to
    ``count`` further attempts or, when ``wait`` is set, for as long as the
    next attempt would start within ``wait`` seconds of the first.

    >>> Retry()            # 3 retries, 0.1 to 0.3 s apart
    Retry(count=3, delay=0.2, jitter=0.2, wait=None)
    >>> Retry.none().count
    0
    >>> Retry(wait=5.0).wait
    5.0
    """

    count: int = 3
    delay: float = 0.2
    jitter: float = 0.2
    wait: Optional[float] = None

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"Retry.count must be an int >= 0, got {self.count!r}")
        for name in ("delay", "jitter"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"Retry.{name} must be a number of seconds >= 0, got {v!r}")
        if self.wait is not None and (not isinstance(self.wait, (int, float)) or self.wait < 0):
            raise ValueError(f"Retry.wait must be None or seconds >= 0, got {self.wait!r}")

    @classmethod
    def none(cls) -> "Retry":
        """A single attempt."""
        return cls(count=0, delay=0.0, jitter=0.0)

    def _tuple(self) -> Tuple[int, float, float, Optional[float]]:
        wait = None if self.wait is None else float(self.wait)
        return (self.count, float(self.delay), float(self.jitter), wait)


RetryLike = Union[Retry, int, None]


def _retry(retry: RetryLike, name: str = "retry") -> Optional[Retry]:
    """``Retry`` as is, an int as a retry count, None as "the default"."""
    if retry is None or isinstance(retry, Retry):
        return retry
    if isinstance(retry, int) and not isinstance(retry, bool):
        return Retry(count=retry)
    raise TypeError(f"{name} must be a Retry, an int (retry count) or None, got {retry!r}")


@dataclass(frozen=True)
class Release:
    """What a release amounted to, decided by quorum.

    ``outcome`` is ``"released"`` (our token held the key on a quorum and
    it was deleted there), ``"already_gone"`` (so many nodes did not hold
    our token that no quorum can have: it had expired, or was never
    acquired) or ``"unknown"`` (too few nodes answered to tell;
    ``auth_failed`` says whether one rejected our credentials). The counts
    are per node. A release never deletes a key holding another token.

    ``bool(release)`` is True for ``"released"``.
    """

    outcome: str
    released: int
    not_held: int
    unanswered: int
    auth_failed: bool = False

    def __bool__(self) -> bool:
        return self.outcome == "released"

    @classmethod
    def _from_native(cls, t: Tuple[str, int, int, int]) -> "Release":
        verdict, released, not_held, unanswered = t
        outcome = {"released": "released", "not_held": "already_gone"}.get(verdict, "unknown")
        return cls(outcome, released, not_held, unanswered, verdict == "auth_failed")


@dataclass(frozen=True)
class Grant:
    """A lock acquired by :meth:`Client.acquire`: nothing extends or
    releases it for you. Keep ``token`` to :meth:`~Client.extend` or
    :meth:`~Client.release` it (from any process); it expires by itself
    after its TTL. ``validity`` is the time, in seconds, for which it was
    held when the call returned. ``fence`` is the fencing token of a
    lock acquired with ``fence=True`` (else None)."""

    resource: Resources
    token: str
    validity: float
    fence: Optional[int] = None


def _encode(resource: Resource, what: str = "resource") -> bytes:
    if isinstance(resource, bytes):
        return resource
    if isinstance(resource, str):
        return resource.encode("utf-8")
    if isinstance(resource, (bytearray, memoryview)):
        return bytes(resource)
    raise TypeError(
        f"{what} must be str or bytes (or, for resources, a list of them), "
        f"got {type(resource).__name__}"
    )


def _encode_all(resources: Resources) -> List[bytes]:
    """One resource or several (a list or tuple), as the native layer
    takes them."""
    if isinstance(resources, (list, tuple)):
        if not resources:
            raise ValueError("no resource given")
        return [_encode(r) for r in resources]
    return [_encode(cast(Resource, resources))]


def _token_str(token: bytes) -> str:
    # Our tokens are hex; a foreign client's binary token round-trips.
    return token.decode("utf-8", "surrogateescape")


def _token_bytes(token: TokenLike) -> bytes:
    if isinstance(token, str):
        return token.encode("utf-8", "surrogateescape")
    return _encode(token, "token")


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    return float(value)
