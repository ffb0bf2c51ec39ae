"""The lobby in real headless Chromium: one WebSocket carries both its live unread counts and its people list."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.servers import TIMEOUT, PushServerProcess
from tests.web_app.live import Live

from .conftest import Windows

#: The push server tells the web app of a departure after this grace (short: the suite stays fast).
GRACE = 0.6
#: Presence goes push server → events POST → web app → push to the lobby: allow two round trips.
PRESENCE_MS = TIMEOUT * 2000


def _settled(live: Live) -> None:
    """Wait (up to a bound) until the web app has been told everyone went offline: no event is left to send.

    The push server is stopped only then: an event queued during its shutdown
    can keep it from exiting for a long while (asyncio.wait_for in Python 3.11
    can swallow the sender's cancellation when an event wakes it at that moment).
    """
    from sqlalchemy import func, select

    from web_app.models import User, get_db

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with live.web.app.app_context():
            if not get_db().scalar(select(func.count()).select_from(User).where(User.online.is_(True))):
                return
        time.sleep(0.05)


@pytest.fixture
def wired(tmp_path: Path) -> Iterator[Live]:
    """The push server sending its events to the live web app (the people list's presence), as ./run.sh wires them."""
    push = PushServerProcess("--offline-grace", str(GRACE))
    with Live(push, tmp_path / "instance", None) as live:
        push.flags += ["--events-url", live.url + "/push/events"]
        with push:
            yield live
            _settled(live)


@pytest.fixture
def lobby_windows(browser: Any, wired: Live) -> Iterator[Windows]:
    """Browser windows on the wired web app; all closed afterwards."""
    opened = Windows(browser, wired)
    yield opened
    opened.close()
    assert opened.dialogs == [], "no page may open a dialog"


def test_the_lobby_opens_one_websocket_for_unread_counts_and_people(
    lobby_windows: Windows, wired: Live, tmp_path: Path
) -> None:
    """A lobby page holds one WebSocket, and over it both the unread counts and the people list stay live.

    Set WEBCHAT_SCREENSHOTS=<dir> to keep the pictures of the lobby (1280 px and 390 px).
    """
    out = Path(os.environ.get("WEBCHAT_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    carol = wired.user("carol")
    room_id = carol.create_room("release")
    carol.create_room("design-review")
    # A lobby page of its own, watched from before it loads (the registration's lobby page is closed).
    registered = lobby_windows.open("alice")
    alice = registered.context.new_page()
    registered.close()
    alice.set_viewport_size({"width": 1280, "height": 800})
    sockets: list[str] = []
    alice.on("websocket", lambda ws: sockets.append(ws.url))
    with alice.expect_response("**/lobby/bind") as unread_bound, alice.expect_response("**/people/watch") as watching:
        alice.goto(wired.url + "/")
    assert unread_bound.value.status == 200 and watching.value.status == 200

    # Unread counts, live.
    badge = alice.locator(f'.room-item[data-room-id="{room_id}"] .unread-badge')
    expect(badge).to_be_hidden()
    assert carol.say(room_id, "Release notes are up for review.").status_code == 201
    expect(badge).to_have_text("1")
    # The people list, live: bob comes online.
    bob_row = alice.locator("#people-list .person", has_text="bob")
    expect(bob_row).to_have_count(0)
    lobby_windows.open("bob")
    expect(bob_row).to_have_attribute("data-online", "1", timeout=PRESENCE_MS)
    assert carol.say(room_id, "And the changelog.").status_code == 201
    expect(badge).to_have_text("2")

    assert sockets == [wired.push.ws_url], sockets
    alice.screenshot(path=str(out / "lobby-1280.png"))
    alice.set_viewport_size({"width": 390, "height": 844})
    assert alice.evaluate("document.documentElement.scrollWidth") <= 390
    alice.screenshot(path=str(out / "lobby-390.png"), full_page=True)
    assert sockets == [wired.push.ws_url], sockets


def test_a_rooms_answer_older_than_a_live_message_does_not_undo_its_count(windows: Windows, live: Live) -> None:
    """A /rooms answer computed before a message was stored, landing after its live frame, is followed by a fresh one.

    The lobby refreshes its counts from /rooms once bound; a message said
    meanwhile arrives live and is counted, then the older answer put the badge
    back to 0 for good (the frame was already counted). Here every answer asked
    for before the message is held back until it has been counted live.
    """
    carol = live.user("carol")
    room_id = carol.create_room("race")
    bob = windows.open("bob")
    held: list[tuple[Any, Any]] = []
    holding = True

    def hold_older_answers(route: Any) -> None:
        if route.request.resource_type != "fetch" or not holding:
            route.continue_()
            return
        held.append((route, route.fetch()))  # computed now, delivered later

    bob.route("**/rooms", hold_older_answers)
    with bob.expect_response("**/lobby/bind"):
        bob.reload()
    deadline = time.monotonic() + TIMEOUT
    while not held and time.monotonic() < deadline:
        bob.wait_for_timeout(20)
    assert held, "the lobby asks /rooms once bound"
    bob.wait_for_timeout(200)  # let the route handler fetch what was asked so far
    badge = bob.locator(f'.room-item[data-room-id="{room_id}"] .unread-badge')
    assert carol.say(room_id, "said while the answer was on its way").status_code == 201
    expect(badge).to_have_text("1")  # counted live
    holding = False
    # Any answer computed after the message is delivered first, the stale ones last.
    held.sort(key=lambda pair: '"unread":0' in pair[1].text())
    assert '"unread":0' in held[-1][1].text()
    for route, answer in held:
        route.fulfill(response=answer)
    bob.wait_for_timeout(100)
    expect(badge).to_have_text("1")  # a fresh /rooms followed the stale one
