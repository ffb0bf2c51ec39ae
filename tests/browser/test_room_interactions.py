"""Typing, unread counts and "seen", edits and deletes, and the member menu, in real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.servers import PushServerProcess
from tests.web_app.live import HttpUser, Live

from .conftest import WAIT_MS, Windows
from .test_chat_page import RECONNECT_MS, enter_room, message, say

# The indicator shows for 5 s after the last typing frame (typing.js SHOW_MS).
EXPIRY_MS = WAIT_MS + 6000


def set_hidden(page: Any, hidden: bool) -> None:
    """Make the page believe its tab is hidden (or visible again), as switching tabs would."""
    page.evaluate(
        """hidden => {
            Object.defineProperty(document, "visibilityState", { configurable: true, get: () => hidden ? "hidden" : "visible" });
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_typing_indicator_shows_to_others_and_expires(windows: Windows, live: Live) -> None:
    """While alice types, bob sees "alice is typing…" (alice does not); it goes when she sends, or by itself."""
    alice, bob = windows.open("alice"), windows.open("bob")
    room_id = HttpUser(live.url, "owner").register().create_room("typing")
    enter_room(alice, live, room_id)
    enter_room(bob, live, room_id)
    expect(alice.locator("#member-list .member-name")).to_have_text(["alice", "bob"])

    alice.type("#content", "hel")
    expect(bob.locator("#typing")).to_have_text("alice is typing…")
    expect(alice.locator("#typing")).to_be_hidden()
    alice.press("#content", "Enter")
    expect(message(bob, "hel")).to_have_count(1)
    # Her message arrived: she is no longer typing it.
    expect(bob.locator("#typing")).to_be_hidden()

    alice.type("#content", "more")
    expect(bob.locator("#typing")).to_have_text("alice is typing…")
    expect(bob.locator("#typing")).to_be_hidden(timeout=EXPIRY_MS)


def test_edit_and_delete_live_and_in_history(windows: Windows, live: Live) -> None:
    """Alice edits and deletes her messages from the page; bob sees both live, and again after a reload."""
    alice, bob = windows.open("alice"), windows.open("bob")
    room_id = HttpUser(live.url, "owner").register().create_room("edits")
    enter_room(alice, live, room_id)
    enter_room(bob, live, room_id)
    say(alice, "helo wrld")
    say(alice, "regrettable")
    expect(message(bob, "regrettable")).to_have_count(1)
    # Bob may not edit or delete alice's messages (he does not own the room).
    expect(bob.locator("#messages .message-actions")).to_have_count(0)

    item = message(alice, "helo wrld")
    item.hover()
    item.locator(".edit-button").click()
    alice.fill("textarea.edit-box", "hello world")
    alice.press("textarea.edit-box", "Enter")
    expect(message(bob, "hello world")).to_have_count(1)
    expect(message(bob, "hello world").locator(".edited")).to_have_text("edited")

    gone = message(alice, "regrettable")
    gone.hover()
    gone.locator(".delete-button").click()
    expect(gone.locator(".delete-button")).to_have_text("Delete?")
    gone.locator(".delete-button").click()
    expect(bob.locator("#messages li.message.deleted")).to_have_text(re.compile("This message was deleted"))
    expect(message(bob, "regrettable")).to_have_count(0)

    enter_room(bob, live, room_id)
    expect(message(bob, "hello world").locator(".edited")).to_have_count(1)
    expect(bob.locator("#messages li.message.deleted")).to_have_count(1)
    assert "regrettable" not in bob.content()


def test_an_edit_past_the_limit_says_slow_down_and_keeps_the_text(
    browser: Any, push_server: PushServerProcess, tmp_path: Path
) -> None:
    """Past RATE_LIMIT_EDITS the page says how long to wait and keeps the edited text; the message is unchanged."""
    with Live(push_server, tmp_path / "instance", None, RATE_LIMIT_EDITS="1/600") as live:
        windows = Windows(browser, live)
        try:
            page = windows.open("alice")
            owner = HttpUser(live.url, "owner").register()
            room_id = owner.create_room("edit-limit")
            enter_room(page, live, room_id)
            say(page, "first draft")
            for before, after in (("first draft", "second draft"), ("second draft", "third draft, too soon")):
                item = message(page, before)
                item.hover()
                item.locator(".edit-button").click()
                page.fill("textarea.edit-box", after)
                page.press("textarea.edit-box", "Enter")
                if before == "first draft":
                    expect(message(page, "second draft").locator(".edited")).to_have_text("edited")
            expect(page.locator("#composer-error")).to_have_text(
                re.compile(r"^Slow down — try again in \d+ s\. Your message is still here\.$")
            )
            expect(page.locator("textarea.edit-box")).to_have_value("third draft, too soon")
            assert [m["content"] for m in owner.history(room_id)] == ["second draft"]
        finally:
            windows.close()
        assert windows.dialogs == []


def test_edits_and_deletes_made_while_away_are_caught_up(windows: Windows, live: Live) -> None:
    """Edits and deletes made while the push server was down reach the page when it reconnects."""
    watcher = windows.open("watcher")
    author = HttpUser(live.url, "author").register()
    room_id = author.create_room("away")
    enter_room(watcher, live, room_id)
    first = author.say(room_id, "first draft").json()["message"]["id"]
    second = author.say(room_id, "doomed").json()["message"]["id"]
    expect(message(watcher, "doomed")).to_have_count(1)

    live.push.stop()
    expect(watcher.locator("#status")).to_have_attribute("data-state", "offline")
    edited = author.http.patch(
        f"{live.url}/messages/{first}", json={"content": "final draft"}, headers={"X-CSRFToken": author.csrf}
    )
    deleted = author.http.delete(f"{live.url}/messages/{second}", headers={"X-CSRFToken": author.csrf})
    assert edited.status_code == 502 and deleted.status_code == 502 and deleted.json()["stored"] is True

    live.push.start()
    expect(watcher.locator("#status")).to_have_attribute("data-state", "online", timeout=RECONNECT_MS)
    expect(message(watcher, "final draft")).to_have_count(1)
    expect(watcher.locator("#messages li.message.deleted")).to_have_count(1)
    expect(message(watcher, "doomed")).to_have_count(0)


def test_unread_in_lobby_and_title_and_seen_on_private_messages(windows: Windows, live: Live) -> None:
    """The lobby counts unread live; a hidden tab's title counts them; reading clears both and shows "seen"."""
    alice, bob = windows.open("alice"), windows.open("bob")
    room_id = HttpUser(live.url, "owner").register().create_room("unread")
    alice_api = HttpUser(live.url, "carol").register()

    # Bob waits in the lobby: carol's messages show up as unread, live.
    bob.reload()
    badge = bob.locator(f'.room-item[data-room-id="{room_id}"] .unread-badge')
    expect(badge).to_be_hidden()
    expect(bob.locator("body")).to_have_attribute("data-uid", re.compile(r"\d+"))
    assert alice_api.say(room_id, "one").status_code == 201
    expect(badge).to_have_text("1")
    assert alice_api.say(room_id, "two").status_code == 201
    expect(badge).to_have_text("2")

    # Bob opens the room: everything shown is read.
    enter_room(bob, live, room_id)
    expect(bob).to_have_title("#unread · webchat")
    enter_room(alice, live, room_id)
    expect(alice.locator("#member-list .member-name")).to_have_text(["alice", "bob"])

    # Bob's tab goes to the background: new messages count in its title.
    set_hidden(bob, True)
    assert alice_api.say(room_id, "three").status_code == 201
    assert alice_api.say(room_id, "four").status_code == 201
    expect(message(bob, "four")).to_have_count(1)
    expect(bob).to_have_title("(2) #unread · webchat")

    # Alice writes to bob privately: not seen while his tab is hidden, seen once he looks.
    alice.click("#member-list button.member >> text=bob")
    alice.click("#member-menu .menu-private")
    say(alice, "psst")
    expect(message(bob, "psst")).to_have_count(1)
    expect(bob).to_have_title("(3) #unread · webchat")
    expect(message(alice, "psst").locator(".seen")).to_have_count(0)
    set_hidden(bob, False)
    expect(bob).to_have_title("#unread · webchat")
    expect(message(alice, "psst").locator(".seen")).to_have_text("seen")
    # And the stored position says so: the lobby shows nothing unread; alice's reload still shows "seen".
    assert {room["id"]: room["unread"] for room in _rooms(bob)}[room_id] == 0
    enter_room(alice, live, room_id)
    expect(message(alice, "psst").locator(".seen")).to_have_text("seen")


def _rooms(page: Any) -> list[dict[str, Any]]:
    answer = page.request.get(page.url.split("/rooms/")[0] + "/rooms", headers={"Accept": "application/json"})
    return answer.json()["rooms"]  # type: ignore[no-any-return]


def test_member_menu_mutes_and_bans(windows: Windows, live: Live) -> None:
    """The owner's member menu mutes then bans bob; bob's page says so and stops posting, then hears nothing."""
    alice, bob = windows.open("alice"), windows.open("bob")
    alice.fill("#room-name", "moderated")
    alice.click("#create-room button[type=submit]")
    alice.wait_for_url(re.compile(r".*/rooms/\d+$"))
    room_id = int(alice.url.rsplit("/", 1)[1])
    expect(alice.locator("#status")).to_have_attribute("data-state", "online")
    enter_room(bob, live, room_id)
    expect(alice.locator("#member-list .member-name")).to_have_text(["alice", "bob"])

    # Bob's menu for alice: only a private message (he does not own the room).
    bob.click("#member-list button.member >> text=alice")
    expect(bob.locator("#member-menu .menu-item")).to_have_text(["Message privately"])
    bob.keyboard.press("Escape")
    expect(bob.locator("#member-menu")).to_be_hidden()

    alice.click("#member-list button.member >> text=bob")
    expect(alice.locator("#member-menu .menu-item")).to_have_text(["Message privately", "Mute…", "Ban…"])
    alice.click("#member-menu .menu-mute")
    alice.click("#member-menu .mute-for >> text=10 minutes")
    expect(alice.locator("#messages li.notice", has_text="bob is muted until")).to_have_count(1)
    expect(bob.locator("#blocked-banner")).to_contain_text("You are muted in this room until")
    # A reload still says so.
    enter_room(bob, live, room_id)
    expect(bob.locator("#blocked-banner")).to_contain_text("You are muted in this room until")
    # Muted: bob still reads, his posts are refused and his text stays.
    say(alice, "you can still read this")
    expect(message(bob, "you can still read this")).to_have_count(1)
    bob.evaluate("document.getElementById('composer').classList.remove('blocked')")
    say(bob, "let me speak")
    expect(bob.locator("#composer-error")).to_contain_text("muted")
    expect(bob.locator("#content")).to_have_value("let me speak")

    alice.click("#member-list button.member >> text=bob")
    alice.click("#member-menu .menu-ban")
    alice.click("#member-menu .ban-for >> text=For good")
    expect(bob.locator("#blocked-banner")).to_have_text("You are banned from this room for good.")
    expect(bob.locator("#status")).to_have_text("Banned")
    expect(alice.locator("#member-list .member-name")).to_have_text(["alice"])
    say(alice, "bob cannot see this")
    expect(message(alice, "bob cannot see this")).to_have_count(1)
    # Coming back is refused too.
    enter_room_refused = bob.goto(f"{live.url}/rooms/{room_id}")
    assert enter_room_refused is not None
    expect(bob.locator("#blocked-banner")).to_contain_text("You are banned in this room for good")
    expect(message(bob, "bob cannot see this")).to_have_count(0)


def test_an_edit_keeps_links_and_mentions(windows: Windows, live: Live) -> None:
    """An edited message is drawn like a new one: its link is a link and a mention of the reader is highlighted."""
    alice, bob = windows.open("alice"), windows.open("bob")
    room_id = HttpUser(live.url, "owner").register().create_room("rich-edits")
    enter_room(alice, live, room_id)
    enter_room(bob, live, room_id)
    say(alice, "notes soon")
    item = message(alice, "notes soon")
    item.hover()
    item.locator(".edit-button").click()
    alice.fill("textarea.edit-box", "notes: https://example.com/notes?v=2 for @bob")
    alice.press("textarea.edit-box", "Enter")
    edited = message(bob, "notes: https://example.com/notes?v=2")
    expect(edited.locator(".edited")).to_have_text("edited")
    expect(edited.locator("a.link")).to_have_attribute("href", "https://example.com/notes?v=2")
    expect(edited.locator(".mention.me")).to_have_text("@bob")
    expect(edited).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(message(alice, "notes: https://example.com/notes?v=2").locator("a.link")).to_have_count(1)


def test_typing_notices_stop_after_a_429(windows: Windows, live: Live) -> None:
    """After /typing answers 429, the page sends no typing notice until Retry-After has passed (even right after a send)."""
    page = windows.open("alice")
    room_id = HttpUser(live.url, "owner").register().create_room("quiet-typing")
    enter_room(page, live, room_id)
    typing_requests: list[Any] = []
    order: list[str] = []
    page.on("request", lambda request: order.append(request.url))

    def refuse(route: Any) -> None:
        typing_requests.append(route.request)
        route.fulfill(
            status=429,
            headers={"Retry-After": "60"},
            content_type="application/json",
            body='{"error": "slow down: too many typing notices", "retry_after": 60}',
        )

    page.route("**/typing", refuse)
    with page.expect_request("**/typing"):
        page.type("#content", "hi")
    page.press("#content", "Enter")  # a sent message lifts the page's own throttle (typing.js sent())
    expect(message(page, "hi")).to_have_count(1)
    page.type("#content", "again")
    # A request made after the keystrokes: any /typing they made is in `order` before it.
    with page.expect_request("**/session"):
        page.evaluate("fetch('/session')")
    assert len(typing_requests) == 1, [url for url in order if url.endswith("/typing")]
