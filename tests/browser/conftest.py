"""Browser fixtures: Debian's Chromium driven by Playwright, against the real push server and web app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import TIMEOUT, PushServerProcess
from tests.web_app.live import Live

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Playwright waits in milliseconds, scaled from the suite's one timeout.
WAIT_MS = TIMEOUT * 1000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (skipped only when Chromium is not installed)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; test.sh does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live(push_server: PushServerProcess, tmp_path: Path) -> Iterator[Live]:
    """The real push server and the web app (SQLite) on free ports."""
    with Live(push_server, tmp_path / "instance", None) as running:
        yield running


class Windows:
    """Browser windows, each with its own cookies, registered as a user; and every dialog any of them opened."""

    def __init__(self, browser: Any, live: Live) -> None:
        self.browser = browser
        self.live = live
        self.contexts: list[Any] = []
        # Any dialog at all (alert, confirm) would be a script we did not write running.
        self.dialogs: list[str] = []

    def open(self, name: str) -> Any:
        """A new window that registered as ``name`` and is now on the lobby."""
        context = self.browser.new_context()
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        page = context.new_page()
        page.on("dialog", self._dialog)
        page.goto(self.live.url + "/register")
        page.fill("#name", name)
        page.fill("#password", "correct horse battery")
        page.click("#submit")
        page.wait_for_url(self.live.url + "/")
        return page

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def windows(browser: Any, live: Live) -> Iterator[Windows]:
    """Open browser windows for the test; all closed afterwards."""
    opened = Windows(browser, live)
    yield opened
    opened.close()
    assert opened.dialogs == [], "no page may open a dialog"
