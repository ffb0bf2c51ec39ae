"""The composer in real Chromium: nothing typed is lost while a send is slow, and Enter twice stores once."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.web_app.live import HttpUser, Live

from .conftest import Windows
from .test_chat_page import enter_room, message


class SlowSay:
    """Holds the page's /say requests until released (a slow web app, without slowing the server)."""

    def __init__(self, page: Any) -> None:
        self.held: list[Any] = []
        self.requests = 0
        self.released = False
        page.route("**/say", self._route)

    def _route(self, route: Any) -> None:
        self.requests += 1
        if self.released:
            route.continue_()
        else:
            self.held.append(route)

    def release(self) -> None:
        self.released = True
        for route in self.held:
            route.continue_()
        self.held.clear()


def _room(windows: Windows, live: Live) -> tuple[Any, HttpUser, int]:
    page = windows.open("alice")
    owner = HttpUser(live.url, "owner").register()
    room_id = owner.create_room("general")
    enter_room(page, live, room_id)
    return page, owner, room_id


def test_text_typed_while_a_send_is_slow_stays_in_the_composer(windows: Windows, live: Live) -> None:
    """Only the sent text leaves the composer when the answer comes: what was typed meanwhile is still there."""
    page, owner, room_id = _room(windows, live)
    slow = SlowSay(page)
    page.fill("#content", "first line")
    page.press("#content", "Enter")
    expect(page.locator("#send")).to_be_disabled()
    page.locator("#content").press_sequentially(" and what I typed next")
    slow.release()
    expect(message(page, "first line")).to_have_count(1)
    expect(page.locator("#content")).to_have_value(" and what I typed next")
    assert [m["content"] for m in owner.history(room_id)] == ["first line"]


def test_enter_twice_during_a_slow_send_stores_the_message_once(windows: Windows, live: Live) -> None:
    """The second Enter while the first send is on its way sends nothing more (the button is disabled; Enter too)."""
    page, owner, room_id = _room(windows, live)
    slow = SlowSay(page)
    page.fill("#content", "only once")
    page.press("#content", "Enter")
    expect(page.locator("#send")).to_be_disabled()
    page.press("#content", "Enter")
    slow.release()
    expect(message(page, "only once")).to_have_count(1)
    expect(page.locator("#content")).to_have_value("")
    # A later message, sent and shown, means nothing else was still queued before it.
    page.fill("#content", "then this")
    page.press("#content", "Enter")
    expect(message(page, "then this")).to_have_count(1)
    assert [m["content"] for m in owner.history(room_id)] == ["only once", "then this"]
    assert slow.requests == 2
