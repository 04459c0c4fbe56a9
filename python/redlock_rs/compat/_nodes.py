"""What the compat modules share: reading redis-py style connection details
into node URLs, redis-py clients for the attributes users touch, and a
process-wide cache of native clients.

The seeds take connection details as redis-py does (``{"host": ..,
"port": .., "db": ..}``, a URL, ``{"url": .., **kwargs}``, or a redis-py
client) and build one redis-py client per node, sequentially sending each
command. Here the locks go through the Rust client (all nodes at once,
per-node timeouts); redis-py clients are only built, lazily, when code
reads ``servers`` / ``redis_nodes`` or calls ``locked()``.

Node timeouts: the core requires ``ttl >= drift + node_timeout`` so that a
reply in time can leave some validity, and a client has one node timeout.
The seeds take a TTL per call (redlock-py: ``lock(resource, ttl_ms)``), so
the compat keeps one native client per node-timeout step (1 ms .. 1 s, a
handful at most) and picks, for each TTL, the largest step that is at most
5 % of the TTL (at least 5 ms), at most any ``socket_timeout`` given, and
small enough for the TTL to pass that check: TTLs down to a few
milliseconds work.
"""

from __future__ import annotations

import collections
import threading
import urllib.parse
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .._client import Client

# redis-py keyword arguments that say nothing the Rust client needs: they
# are accepted (redis-py accepts them) and ignored.
_IGNORED = frozenset(
    {
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "retry_on_timeout",
        "retry_on_error",
        "retry",
        "health_check_interval",
        "client_name",
        "decode_responses",
        "encoding",
        "encoding_errors",
        "errors",
        "charset",
        "max_connections",
        "single_connection_client",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_password",
        "protocol",
        "lib_name",
        "lib_version",
    }
)
_USED = frozenset({"host", "port", "db", "password", "username", "ssl", "ssl_ca_certs", "socket_timeout"})

_STEPS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)


class NodeSpec(NamedTuple):
    """One node: its URL for the Rust client, and how to build a redis-py
    client for it (``client`` given, or ``from_url``/``kwargs``)."""

    url: str
    socket_timeout: Optional[float]
    ca_file: Optional[str]
    client: Any
    from_url: Optional[str]
    kwargs: Dict[str, Any]


def _check_kwargs(kwargs: Dict[str, Any]) -> None:
    for k in kwargs:
        if not isinstance(k, str):
            raise TypeError(f"connection keyword must be a string, got {k!r}")
        if k == "unix_socket_path":
            raise ValueError("unix sockets are not supported: give host and port")
        if k not in _USED and k not in _IGNORED:
            raise TypeError(f"unexpected connection keyword argument {k!r}")


def _auth(username: Optional[str], password: Optional[str]) -> str:
    if password is None and username is None:
        return ""
    user = urllib.parse.quote(str(username), safe="") if username else ""
    pw = urllib.parse.quote(str(password), safe="") if password is not None else ""
    return f"{user}:{pw}@"


def _host(host: Any) -> str:
    host = str(host)
    if ":" in host and not host.startswith("["):
        return f"[{host}]"  # IPv6 literal
    return host


def _url(host: Any, port: Any, db: Any, username: Any, password: Any, ssl: bool) -> str:
    try:
        port_ = int(port)
        db_ = int(db)
    except (TypeError, ValueError):
        raise ValueError(f"port and db must be integers, got port={port!r} db={db!r}") from None
    scheme = "rediss" if ssl else "redis"
    return f"{scheme}://{_auth(username, password)}{_host(host)}:{port_}/{db_}"


def _timeout(kwargs: Dict[str, Any]) -> Optional[float]:
    t = kwargs.get("socket_timeout")
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
        raise ValueError(f"socket_timeout must be a positive number of seconds, got {t!r}")
    return float(t)


def _from_kwargs(kwargs: Dict[str, Any]) -> NodeSpec:
    _check_kwargs(kwargs)
    url = _url(
        kwargs.get("host", "localhost"),
        kwargs.get("port", 6379),
        kwargs.get("db", 0),
        kwargs.get("username"),
        kwargs.get("password"),
        bool(kwargs.get("ssl", False)),
    )
    return NodeSpec(url, _timeout(kwargs), kwargs.get("ssl_ca_certs"), None, None, dict(kwargs))


def _normalise_url(url: str) -> str:
    """redis-py URLs: ``?db=N`` becomes the path; other queries are refused."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        raise ValueError("unix sockets are not supported: give host and port")
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a node URL starts with redis:// or rediss://, got {url!r}")
    if not parts.query:
        return url
    query = urllib.parse.parse_qs(parts.query)
    db = query.pop("db", None)
    if query:
        raise ValueError(f"unsupported URL options {sorted(query)} in {url!r}")
    path = parts.path
    if db is not None and path in ("", "/"):
        path = "/" + db[-1]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _from_url(url: str, kwargs: Dict[str, Any]) -> NodeSpec:
    _check_kwargs(kwargs)
    if not isinstance(url, str):
        raise TypeError(f"url must be a string, got {url!r}")
    return NodeSpec(
        _normalise_url(url), _timeout(kwargs), kwargs.get("ssl_ca_certs"), None, url, dict(kwargs)
    )


def _from_client(client: Any) -> NodeSpec:
    pool = getattr(client, "connection_pool", None)
    kw = getattr(pool, "connection_kwargs", None)
    if not isinstance(kw, dict):
        raise TypeError(f"not a redis-py client: {client!r}")
    if "path" in kw:
        raise ValueError("unix sockets are not supported: give host and port")
    ssl = "SSL" in type(pool).__name__ or "SSL" in getattr(pool, "connection_class", type).__name__
    url = _url(
        kw.get("host", "localhost"), kw.get("port", 6379), kw.get("db", 0),
        kw.get("username"), kw.get("password"), ssl,
    )
    return NodeSpec(url, _timeout(kw), kw.get("ssl_ca_certs"), client, None, {})


def is_redis_client(obj: Any) -> bool:
    return hasattr(obj, "connection_pool") and hasattr(obj, "set")


def spec(info: Any) -> NodeSpec:
    """A node from a URL string, a dict (``url`` or host/port/db), or a
    redis-py client. Raises TypeError / ValueError as redis-py would."""
    if isinstance(info, str):
        return _from_url(info, {})
    if isinstance(info, dict):
        if "url" in info:
            rest = {k: v for k, v in info.items() if k != "url"}
            return _from_url(info["url"], rest)
        return _from_kwargs(info)
    if is_redis_client(info):
        return _from_client(info)
    raise TypeError(f"connection details must be a dict, a URL or a redis client, got {info!r}")


class NodeSet:
    """The nodes of one seed object, with its redis-py clients (lazy)."""

    def __init__(self, specs: Sequence[NodeSpec]) -> None:
        self.specs: Tuple[NodeSpec, ...] = tuple(specs)
        self.urls: Tuple[str, ...] = tuple(s.url for s in self.specs)
        timeouts = [s.socket_timeout for s in self.specs if s.socket_timeout is not None]
        self.socket_timeout: Optional[float] = min(timeouts) if timeouts else None
        self._ca: Optional[bytes] = None
        self._ca_files = tuple(sorted({s.ca_file for s in self.specs if s.ca_file}))
        self._redis: Optional[List[Any]] = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, infos: Sequence[Any]) -> "NodeSet":
        return cls([spec(i) for i in infos])

    @classmethod
    def of_clients(cls, clients: Sequence[Any]) -> "NodeSet":
        ns = cls([_from_client(c) for c in clients])
        ns._redis = list(clients)
        return ns

    def __len__(self) -> int:
        return len(self.specs)

    def redis_clients(self) -> List[Any]:
        """redis-py clients, one per node (built on first use; needs the
        ``redis`` package: ``pip install 'redlock-rs[compat]'``)."""
        with self._lock:
            if self._redis is None:
                try:
                    import redis
                except ImportError as e:  # pragma: no cover - depends on the env
                    raise ImportError(
                        "this attribute gives redis-py clients: pip install 'redlock-rs[compat]'"
                    ) from e
                out = []
                for s in self.specs:
                    if s.client is not None:
                        out.append(s.client)
                    elif s.from_url is not None:
                        out.append(redis.StrictRedis.from_url(s.from_url, **s.kwargs))
                    else:
                        out.append(redis.StrictRedis(**s.kwargs))
                self._redis = out
            return self._redis

    def ca_pem(self) -> Optional[bytes]:
        if self._ca is None and self._ca_files:
            pem = b""
            for f in self._ca_files:
                with open(f, "rb") as fh:
                    pem += fh.read() + b"\n"
            self._ca = pem
        return self._ca

    def client_for(self, ttl_ms: float, drift_factor: float) -> Optional[Client]:
        """The shared native client whose node timeout suits ``ttl_ms``,
        or None if no node timeout leaves the TTL any validity."""
        nt = node_timeout_ms(ttl_ms, drift_factor, self.socket_timeout)
        if nt is None:
            return None
        return _cached(self.urls, nt, drift_factor, self.ca_pem())


def node_timeout_ms(ttl_ms: float, drift_factor: float, cap_s: Optional[float]) -> Optional[int]:
    want = min(max(ttl_ms / 20.0, 5.0), 1000.0)
    if cap_s is not None:
        want = min(want, cap_s * 1000.0)
    # The core's rule: whole-ms TTL >= drift (factor x TTL + 2 ms) + timeout.
    room = int(ttl_ms) - (int(ttl_ms) * drift_factor + 2.0) - 0.01
    fit = [s for s in _STEPS_MS if s <= want and s <= room]
    if fit:
        return fit[-1]
    # A socket_timeout below 1 ms, or a TTL too short for any step.
    return 1 if room >= 1 and want < 1 else None


_CACHE_SIZE = 64
_cache: "collections.OrderedDict[tuple, Client]" = collections.OrderedDict()
_cache_lock = threading.Lock()


def _cached(urls: Tuple[str, ...], nt_ms: int, drift: float, ca: Optional[bytes]) -> Client:
    key = (urls, nt_ms, drift, ca)
    with _cache_lock:
        client = _cache.get(key)
        if client is not None:
            _cache.move_to_end(key)
            return client
    # Built outside the lock (it starts a thread); a racing twin is harmless.
    client = Client(
        list(urls),
        ttl=max(nt_ms * 4, 1000) / 1000.0,
        node_timeout=nt_ms / 1000.0,
        retry=0,
        drift_factor=drift,
        tls_ca_pem=ca,
        # The libraries these modules replace accept one server twice (two
        # dbs); so do they, although such nodes are not independent.
        _allow_same_server_twice=True,
    )
    with _cache_lock:
        client = _cache.setdefault(key, client)
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return client
