"""Login, registration, lobby and error pages in real Chromium: safe redirects, two windows, "slow down", empty states."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.servers import PushServerProcess
from tests.web_app.live import HttpUser, Live

from .conftest import WAIT_MS, Windows

PASSWORD = "correct horse battery"


@pytest.fixture
def live(push_server: PushServerProcess, tmp_path: Path) -> Iterator[Live]:
    """The chat with low limits on failed logins and new rooms, so a test can reach them."""
    with Live(
        push_server, tmp_path / "instance", None, RATE_LIMIT_LOGIN_FAILURES="2/600", RATE_LIMIT_ROOMS="1/3600"
    ) as running:
        yield running


def _window(windows: Windows, context: Any = None) -> Any:
    """A page in ``context`` (a new browser window with its own cookies when None)."""
    if context is None:
        context = windows.browser.new_context()
        context.set_default_timeout(WAIT_MS)
        windows.contexts.append(context)
    page = context.new_page()
    page.on("dialog", windows._dialog)
    return page


def _log_in(page: Any, live: Live, name: str, password: str = PASSWORD, query: str = "") -> None:
    page.goto(f"{live.url}/login{query}")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#submit")


@pytest.mark.parametrize(
    "target", ["/%5Cevil.example/", "/%09/evil.example/", "/%5C%5Cevil.example", "//evil.example/"]
)
def test_login_page_never_goes_off_site(windows: Windows, live: Live, target: str) -> None:
    """Logging in from /login?next=<a path a browser reads as another host> lands on the lobby, on this site."""
    HttpUser(live.url, "mallory-target").register()
    page = _window(windows)
    _log_in(page, live, "mallory-target", query=f"?next={target}")
    expect(page).to_have_url(live.url + "/")
    expect(page.locator("h1")).to_have_text("Rooms")


def test_login_page_follows_a_path_on_this_site(windows: Windows, live: Live) -> None:
    """?next=/rooms/<id> still brings the user back to the room after logging in."""
    owner = HttpUser(live.url, "nina").register()
    room_id = owner.create_room("back-here")
    page = _window(windows)
    _log_in(page, live, "nina", query=f"?next=/rooms/{room_id}")
    expect(page).to_have_url(f"{live.url}/rooms/{room_id}")


def test_a_second_login_in_the_same_browser_does_not_break_the_first_window(windows: Windows, live: Live) -> None:
    """Two windows of one browser: after logging in again in the second, the first window still creates a room."""
    first = windows.open("olga")
    second = _window(windows, first.context)
    _log_in(second, live, "olga")
    expect(second).to_have_url(live.url + "/")
    first.fill("#room-name", "made after the second login")
    first.click("#create-room button[type=submit]")
    expect(first.locator(".room-title")).to_contain_text("made after the second login")


def test_a_login_as_someone_else_in_another_window_is_said_not_sent(windows: Windows, live: Live) -> None:
    """If another window of the browser logged in as another user, the first window sends nothing and says why."""
    HttpUser(live.url, "pavel").register()
    first = windows.open("quinn")
    second = _window(windows, first.context)
    _log_in(second, live, "pavel")
    expect(second).to_have_url(live.url + "/")
    first.fill("#room-name", "not as pavel")
    first.click("#create-room button[type=submit]")
    expect(first.locator("#form-error")).to_contain_text("logged in as pavel")
    expect(first.locator("#room-name")).to_have_value("not as pavel")
    assert HttpUser(live.url, "rita").register().get("/rooms").json()["rooms"] == []


def test_too_many_wrong_passwords_say_slow_down_and_keep_the_form(windows: Windows, live: Live) -> None:
    """Past the failed-login limit the login page says "slow down" with the wait, and keeps what was typed."""
    HttpUser(live.url, "sam").register()
    page = _window(windows)
    page.goto(f"{live.url}/login")
    page.fill("#name", "sam")
    for _ in range(2):
        page.fill("#password", "not the password")
        page.click("#submit")
        expect(page.locator("#form-error")).to_have_text("wrong name or password")
        page.locator("#form-error").evaluate("node => { node.hidden = true; node.textContent = ''; }")
    page.fill("#password", PASSWORD)
    page.click("#submit")
    expect(page.locator("#form-error")).to_contain_text("Slow down")
    expect(page.locator("#form-error")).to_contain_text("Try again in")
    expect(page.locator("#name")).to_have_value("sam")
    expect(page.locator("#password")).to_have_value(PASSWORD)
    expect(page).to_have_url(f"{live.url}/login")


def test_the_lobby_says_slow_down_and_keeps_the_room_name(windows: Windows, live: Live) -> None:
    """Past the room-creation limit the lobby says "slow down" and the typed name stays in the field."""
    page = windows.open("tom")
    expect(page.locator("#no-rooms")).to_be_visible()
    expect(page.locator("#no-rooms")).to_contain_text("No rooms yet")
    page.click("#no-rooms label")
    expect(page.locator("#room-name")).to_be_focused()
    page.fill("#room-name", "first")
    page.click("#create-room button[type=submit]")
    expect(page.locator(".room-title")).to_contain_text("first")
    page.goto(live.url + "/")
    expect(page.locator("#no-rooms")).to_be_hidden()
    page.fill("#room-name", "second, too soon")
    page.click("#create-room button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("Slow down")
    expect(page.locator("#room-name")).to_have_value("second, too soon")


def test_a_missing_page_is_a_styled_404(windows: Windows, live: Live) -> None:
    """A mistyped address shows the site's own 404 page, styled, with a way back to the rooms."""
    page = windows.open("uma")
    answer = page.goto(f"{live.url}/no/such/page")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("Page not found")
    expect(page.locator(".error-code")).to_have_css("font-weight", "800")
    page.click("text=Back to the rooms")
    expect(page).to_have_url(live.url + "/")
