"""Fixtures: real ``redis-server`` processes on free loopback ports.

``cluster(n)`` starts n servers (no persistence) and stops them at the end
of the test; each :class:`Server` can be killed, restarted, paused
(SIGSTOP) and resumed, and has a redis-py connection for checks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Iterator, List, Optional

import pytest
import redis

REDIS_SERVER = os.environ.get("REDIS_SERVER", shutil.which("redis-server") or "redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: Optional[subprocess.Popen] = None
        self.paused = False
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # Ready when it answers PING (bounded: 10 s).
        deadline = time.monotonic() + 10
        r = self.redis()
        while True:
            try:
                if r.ping():
                    return
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} exited")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start")
                time.sleep(0.01)

    def redis(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=2)

    def kill(self) -> None:
        if self.proc is not None:
            if self.paused:
                self.resume()
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False


class Cluster(List[Server]):
    @property
    def urls(self) -> List[str]:
        return [s.url for s in self]

    def holder(self, key: str) -> List[Optional[bytes]]:
        """The value of ``key`` on each live, unpaused node."""
        return [s.redis().get(key) if s.proc and not s.paused else None for s in self]


@pytest.fixture
def cluster(tmp_path) -> Iterator:
    made: List[Cluster] = []

    def make(n: int) -> Cluster:
        c = Cluster()
        for i in range(n):
            d = tmp_path / f"redis-{len(made)}-{i}"
            d.mkdir()
            c.append(Server(str(d)))
        made.append(c)
        return c

    yield make
    for c in made:
        for s in c:
            s.kill()


@pytest.fixture
def five(cluster) -> Cluster:
    return cluster(5)


@pytest.fixture
def three(cluster) -> Cluster:
    return cluster(3)
