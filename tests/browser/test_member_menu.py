"""The owner's member menu in real headless Chromium: Mute… or Unmute, Ban… or Unban, as each member stands."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.web_app.live import HttpUser, Live

from .conftest import WAIT_MS, Windows
from .test_chat_page import enter_room, message, say

WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def window_of(windows: Windows, user: HttpUser) -> Any:
    """A browser window logged in as ``user`` (an HTTP user's cookies): the same person in another tab."""
    context = windows.browser.new_context()
    context.set_default_timeout(WAIT_MS)
    windows.contexts.append(context)
    context.add_cookies([{"name": c.name, "value": c.value or "", "url": user.base_url} for c in user.http.cookies])
    page = context.new_page()
    page.on("dialog", windows._dialog)
    return page


def test_the_owners_member_menu_follows_each_members_state_live(windows: Windows, live: Live, tmp_path: Path) -> None:
    """The owner sees Mute… or Unmute and Ban… or Unban as the member stands, live as another tab of theirs
    changes it, and again after a reload; the owner's own page is never blocked by those frames.

    Set WEBCHAT_SCREENSHOTS=<dir> to keep the pictures of the menu (a muted member, 1280 px and 390 px).
    """
    out = Path(os.environ.get("WEBCHAT_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    owner = live.user("alice")  # also the owner's "other tab", over HTTP
    room_id = owner.create_room("menus")
    alice = window_of(windows, owner)
    alice.set_viewport_size(WIDE)
    enter_room(alice, live, room_id)
    bob = windows.open("bob")
    enter_room(bob, live, room_id)
    bob_uid = bob.locator("body").get_attribute("data-uid")
    say(bob, "hello from bob")  # his name on a message opens his menu once he is out of the list
    expect(message(alice, "hello from bob")).to_have_count(1)
    items = alice.locator("#member-menu .menu-item")
    status = alice.locator("#member-menu .menu-status")

    alice.click("#member-list button.member >> text=bob")
    expect(items).to_have_text(["Message privately", "Mute…", "Ban…"])
    expect(status).to_have_count(0)
    alice.click("#member-menu .menu-mute")
    alice.click("#member-menu .mute-for >> text=10 minutes")
    expect(bob.locator("#blocked-banner")).to_contain_text("You are muted in this room until")
    alice.click("#member-list button.member >> text=bob")
    expect(items).to_have_text(["Message privately", "Unmute", "Ban…"])
    expect(status).to_have_text(re.compile(r"^Muted until \S"))
    alice.screenshot(path=str(out / "member-menu-1280.png"))

    # At 390 px the same menu opens from the drawer.
    alice.keyboard.press("Escape")
    alice.set_viewport_size(PHONE)
    alice.click("#members-toggle")
    alice.locator("#members .member", has_text="bob").click()
    expect(items).to_have_text(["Message privately", "Unmute", "Ban…"])
    box = alice.locator("#member-menu").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert alice.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    alice.wait_for_timeout(300)  # the drawer's slide (a picture, not an assertion, waits for it)
    alice.screenshot(path=str(out / "member-menu-390.png"))

    # The owner's other tab lifts the mute, then bans bob: the open menu follows, live.
    assert owner.post(f"/rooms/{room_id}/unmute", {"uid": bob_uid}).status_code == 200
    expect(items).to_have_text(["Message privately", "Mute…", "Ban…"])
    expect(status).to_have_count(0)
    assert owner.post(f"/rooms/{room_id}/ban", {"uid": bob_uid}).status_code == 200
    expect(items).to_have_text(["Message privately", "Mute…", "Unban"])
    expect(status).to_have_text("Banned for good")
    expect(bob.locator("#status")).to_have_text("Banned")

    # Reloaded, the page knows it again (from /bind's answer): bob's message opens his menu.
    alice.set_viewport_size(WIDE)
    enter_room(alice, live, room_id)
    expect(alice.locator("#member-list .member-name")).to_have_text(["alice"])
    alice.evaluate("window.__samePage = true")
    message(alice, "hello from bob").locator(".author").click()
    expect(items).to_have_text(["Message privately", "Mute…", "Unban"])
    alice.click("#member-menu .menu-unban")
    expect(alice.locator("#messages li.notice", has_text="bob is unbanned")).to_have_count(1)
    message(alice, "hello from bob").locator(".author").click()
    expect(items).to_have_text(["Message privately", "Mute…", "Ban…"])
    # The frames about bob reached the owner's page too, and did not block or reload it.
    expect(alice.locator("#blocked-banner")).to_have_count(0)
    assert alice.evaluate("window.__samePage") is True
