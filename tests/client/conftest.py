"""Every client test runs against both faces of push_client (PushClient and AsyncPushClient)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..faces import FACES, clients


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    """Which face the test drives: "sync" (PushClient) or "async" (AsyncPushClient)."""
    return str(request.param)


@pytest.fixture
def make_client(face: str) -> Iterator[Callable[..., Any]]:
    """``make_client(api_url, secret=..., **options)``: a client of the test's face, closed after the test."""
    yield from clients(face)
