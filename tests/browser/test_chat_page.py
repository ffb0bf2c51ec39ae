"""The chat page in real headless Chromium: chatting, private messages, XSS, reconnecting."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.web_app.live import TINY_PNG, HttpUser, Live

from .conftest import WAIT_MS, Windows

# Reconnecting waits out the page's backoff (up to a few seconds after a restart).
RECONNECT_MS = WAIT_MS * 4


def enter_room(page: Any, live: Live, room_id: int) -> None:
    """Open the room and wait until the page is connected and bound."""
    page.goto(f"{live.url}/rooms/{room_id}")
    expect(page.locator("#status")).to_have_attribute("data-state", "online")


def say(page: Any, text: str) -> None:
    page.fill("#content", text)
    page.press("#content", "Enter")


def message(page: Any, text: str) -> Any:
    """The message items whose text is exactly ``text``."""
    return page.locator("#messages li.message").filter(has=page.locator("p.text", has_text=text))


def test_two_browsers_chat(windows: Windows, live: Live) -> None:
    """Two windows in one room see each other join, talk both ways with names, send an image, and see a leave."""
    alice = windows.open("alice")
    room_id = int(HttpUser(live.url, "owner").register().create_room("general"))
    bob = windows.open("bob")
    enter_room(alice, live, room_id)
    enter_room(bob, live, room_id)

    expect(alice.locator("#messages li.notice", has_text="bob joined")).to_have_count(1)
    expect(alice.locator("#member-list .member-name")).to_have_text(["alice", "bob"])
    expect(bob.locator("#member-list .member-name")).to_have_text(["alice", "bob"])

    say(alice, "hello bob")
    for page in (alice, bob):
        item = message(page, "hello bob")
        expect(item).to_have_count(1)
        expect(item.locator(".author")).to_have_text("alice")
        expect(item.locator("time")).not_to_have_text("")
    say(bob, "hi alice")
    expect(message(alice, "hi alice").locator(".author")).to_have_text("bob")

    bob.set_input_files("#image-input", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": TINY_PNG}])
    image = alice.locator("#messages img.chat-image")
    expect(image).to_have_count(1)
    expect(image).to_have_attribute("alt", "dot.png")
    # Loaded and decoded (a locator assertion: the page's CSP forbids the eval a
    # string predicate in wait_for_function needs once it has to poll).
    expect(image).to_have_js_property("naturalWidth", 4)

    bob.close()
    expect(alice.locator("#messages li.notice", has_text="bob left")).to_have_count(1)
    expect(alice.locator("#member-list .member-name")).to_have_text(["alice"])


def test_private_message_shows_only_where_it_should(windows: Windows, live: Live) -> None:
    """Choosing a member sends privately: the two parties see it, the third window never does."""
    alice, bob, eve = windows.open("alice"), windows.open("bob"), windows.open("eve")
    room_id = int(HttpUser(live.url, "owner").register().create_room("whispers"))
    for page in (alice, bob, eve):
        enter_room(page, live, room_id)
    expect(alice.locator("#member-list .member-name")).to_have_text(["alice", "bob", "eve"])

    expect(alice.locator("#private-pill")).to_be_hidden()
    alice.click("#member-list button.member[data-uid] >> text=bob")
    # The member menu (members.js) offers the private message.
    alice.click("#member-menu .menu-private")
    expect(alice.locator("#private-pill")).to_be_visible()
    say(alice, "secret for bob")
    for page in (alice, bob):
        item = message(page, "secret for bob")
        expect(item).to_have_count(1)
        expect(item).to_have_class("message private" if page is bob else "message mine private")
    expect(message(bob, "secret for bob").locator(".private-tag")).to_have_text("private · to you")

    # Back to everyone; once eve has the public message she would have had the private one before it.
    alice.click("#private-cancel")
    expect(alice.locator("#private-pill")).to_be_hidden()
    say(alice, "public again")
    expect(message(eve, "public again")).to_have_count(1)
    expect(message(eve, "secret for bob")).to_have_count(0)
    assert "secret for bob" not in eve.content()
    # A reload fetches history: still nothing private for eve.
    enter_room(eve, live, room_id)
    expect(message(eve, "public again")).to_have_count(1)
    assert "secret for bob" not in eve.content()


XSS_TEXT = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
XSS_NAME = "<img src=x onerror=alert(1)>"


def test_xss_payload_is_shown_as_text_and_runs_nothing(windows: Windows, live: Live) -> None:
    """Markup in a message and in a user name is displayed literally, and no script of it runs."""
    mallory = windows.open(XSS_NAME)
    victim = windows.open("victim")
    room_id = int(HttpUser(live.url, "owner").register().create_room("<b>room</b>"))
    enter_room(mallory, live, room_id)
    enter_room(victim, live, room_id)

    say(mallory, XSS_TEXT)
    item = message(victim, XSS_TEXT)
    expect(item).to_have_count(1)
    expect(item.locator("p.text")).to_have_text(XSS_TEXT)
    expect(item.locator(".author")).to_have_text(XSS_NAME)
    expect(victim.locator("#member-list .member-name", has_text=XSS_NAME)).to_have_count(1)
    expect(victim.locator(".room-title")).to_have_text("#<b>room</b>")
    # No element came out of the payloads: only the page's own markup is there.
    assert victim.locator("#messages img:not(.chat-image), #messages script, #member-list img").count() == 0
    assert victim.locator(".room-title b").count() == 0
    assert victim.evaluate("window.__xss") is None
    # Reloading renders the same payload from history, still as text.
    enter_room(victim, live, room_id)
    expect(message(victim, XSS_TEXT)).to_have_count(1)
    assert victim.evaluate("window.__xss") is None


def test_page_reconnects_after_push_server_restart_and_catches_up(windows: Windows, live: Live) -> None:
    """When the push server restarts the page reconnects by itself and shows what was said while it was down."""
    watcher = windows.open("watcher")
    speaker = HttpUser(live.url, "speaker").register()
    room_id = speaker.create_room("resilient")
    enter_room(watcher, live, room_id)
    assert speaker.say(room_id, "before the restart").status_code == 201
    expect(message(watcher, "before the restart")).to_have_count(1)

    live.push.stop()
    expect(watcher.locator("#status")).to_have_attribute("data-state", "offline")
    answer = speaker.say(room_id, "said while you were away")
    assert answer.status_code == 502 and answer.json()["stored"] is True

    live.push.start()
    expect(watcher.locator("#status")).to_have_attribute("data-state", "online", timeout=RECONNECT_MS)
    expect(message(watcher, "said while you were away")).to_have_count(1)
    expect(watcher.locator("#messages li.notice", has_text="Reconnected")).to_have_count(1)
    # Bound again: live pushes arrive once more, in order, with nothing doubled.
    assert speaker.say(room_id, "after the restart").status_code == 201
    expect(message(watcher, "after the restart")).to_have_count(1)
    texts = watcher.locator("#messages li.message p.text").all_text_contents()
    assert texts == ["before the restart", "said while you were away", "after the restart"]
