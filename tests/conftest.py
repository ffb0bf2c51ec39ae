"""Fixtures every test package shares: real push servers and a real redis-server."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from .servers import ROOT, TIMEOUT, PushServerProcess, RedisServer, free_port, started_redis

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["TIMEOUT", "free_port"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the suite's own, on a free port (the test may stop and restart it)."""
    with started_redis() as server:
        yield server


@pytest.fixture
def push_server() -> Iterator[PushServerProcess]:
    """A push server (in-memory backend) in its own process on free ports."""
    with PushServerProcess() as server:
        yield server


@pytest.fixture
def make_push_server() -> Iterator[type[PushServerProcess]]:
    """Start push servers with extra flags; all are stopped after the test."""
    started: list[PushServerProcess] = []

    class Tracked(PushServerProcess):
        def start(self) -> PushServerProcess:
            started.append(self)
            return super().start()

    yield Tracked
    for server in started:
        server.stop()
