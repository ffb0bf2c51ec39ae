"""Fault fixtures: the real push server and web app, a database of either kind, and simulated pages.

Tests here kill and restart the real processes and count what every page
shows; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PushServerProcess
from tests.web_app.live import Live, postgres_schema


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite in the instance folder) or, when parametrised "postgresql", a schema of the test's own."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
def live(push_server: PushServerProcess, tmp_path: Path, db_url: str | None) -> Iterator[Live]:
    """The push server (a process the test may kill and restart) and the web app serving HTTP."""
    with Live(push_server, tmp_path / "instance", db_url) as running:
        yield running


# The browser suite's Chromium and windows, for the one scenario that runs the real page.
from tests.browser.conftest import WAIT_MS, Windows, browser, windows  # noqa: E402

__all__ = ["WAIT_MS", "Windows", "browser", "windows"]
