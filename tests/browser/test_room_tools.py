"""The room page's tools in real Chromium: the composer's limits, 429s, image paste/drop with progress,
desktop notifications, avatars, and the phone layout (390 px) with its member drawer."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.web_app.live import TINY_PNG, Live

from .conftest import WAIT_MS, Windows
from .room_seed import gradient_png, lived_in_room, say
from .test_chat_page import enter_room, message
from .test_composer import SlowSay


class HeldUploads(SlowSay):
    """Holds the page's image uploads until released (a slow network, without slowing the server)."""

    def __init__(self, page: Any) -> None:
        self.held: list[Any] = []
        self.requests = 0
        self.released = False
        page.route("**/rooms/*/images", self._route)


PHONE = {"width": 390, "height": 844}


def _room(windows: Windows, live: Live, name: str = "dana") -> tuple[Any, Any, int]:
    page = windows.open(name)
    owner = live.user("owner")
    room_id = owner.create_room("tools")
    enter_room(page, live, room_id)
    return page, owner, room_id


def test_a_long_paste_is_counted_and_refused_with_the_text_kept(windows: Windows, live: Live) -> None:
    """5,000 characters are all kept; a counter warns near 4,000 and the send is refused with a clear message."""
    page, owner, room_id = _room(windows, live)
    counter = page.locator("#char-count")
    page.fill("#content", "x" * 100)
    expect(counter).to_be_hidden()
    page.fill("#content", "y" * 3700)
    expect(counter).to_have_text("3,700 / 4,000")
    expect(counter).not_to_have_class(re.compile(r"\bover\b"))
    page.fill("#content", "z" * 5000)
    expect(counter).to_have_text("5,000 / 4,000 · 1,000 too many")
    expect(counter).to_have_class(re.compile(r"\bover\b"))
    page.press("#content", "Enter")
    expect(page.locator("#composer-error")).to_have_text(
        "This message is 5,000 characters; the limit is 4,000. Shorten it or send it in parts."
    )
    expect(page.locator("#content")).to_have_value("z" * 5000)
    # Trimmed to the limit, it goes.
    page.fill("#content", "z" * 4000)
    page.press("#content", "Enter")
    expect(page.locator("#messages li.message")).to_have_count(1)
    expect(page.locator("#composer-error")).to_be_hidden()
    assert [len(m["content"]) for m in owner.history(room_id)] == [4000]


def test_a_429_says_slow_down_and_keeps_the_text(windows: Windows, live: Live) -> None:
    """When /say or an upload answers 429 with Retry-After, the page says how long to wait and loses nothing."""
    page, owner, room_id = _room(windows, live)
    body = '{"error": "slow down: too many messages; try again in 7 s", "retry_after": 7}'
    # The web app's rate limiter answers like this (Retry-After and the JSON error).
    for path in ("**/say", "**/images"):
        page.route(
            path,
            lambda route: route.fulfill(
                status=429, headers={"Retry-After": "7"}, content_type="application/json", body=body
            ),
        )
    page.fill("#content", "keep me")
    page.press("#content", "Enter")
    expect(page.locator("#composer-error")).to_have_text("Slow down — try again in 7 s. Your message is still here.")
    expect(page.locator("#content")).to_have_value("keep me")
    page.set_input_files("#image-input", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": TINY_PNG}])
    expect(page.locator("#composer-error")).to_contain_text("Slow down — try again in 7 s.")
    assert owner.history(room_id) == []


def test_an_image_over_the_limit_is_refused_naming_the_limit(windows: Windows, live: Live, tmp_path: Path) -> None:
    """An image larger than MAX_IMAGE_BYTES is refused before it is sent, and the message says the limit."""
    page, owner, room_id = _room(windows, live)
    uploads: list[str] = []
    page.on("request", lambda request: uploads.append(request.url) if "/images" in request.url else None)
    # A file on disk: the browser reads it by path (no 5 MiB copy through the driver).
    big = tmp_path / "huge.png"
    big.write_bytes(TINY_PNG + b"\x00" * (5 * 1024 * 1024))
    page.set_input_files("#image-input", str(big))
    expect(page.locator("#composer-error")).to_have_text("“huge.png” is 5.0 MiB; images may be at most 5 MiB.")
    assert uploads == [] and owner.history(room_id) == []


def _drop_or_paste(page: Any, kind: str, png: bytes, name: str) -> None:
    """Paste into the composer, or drop on the conversation, a PNG file (what the browser hands the page)."""
    page.evaluate(
        """([kind, data, name]) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            if (kind === "paste") {
                document.getElementById("content").dispatchEvent(
                    new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
            } else {
                const zone = document.getElementById("conversation");
                for (const type of ["dragenter", "dragover", "drop"]) {
                    zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
                }
            }
        }""",
        [kind, base64.b64encode(png).decode(), name],
    )


def test_pasted_and_dropped_images_upload_with_progress(windows: Windows, live: Live) -> None:
    """A pasted image and a dropped one are each sent, with a progress bar while the upload is on its way."""
    page, owner, room_id = _room(windows, live)
    slow = HeldUploads(page)
    _drop_or_paste(page, "paste", TINY_PNG, "pasted.png")
    progress = page.locator("#upload-progress")
    expect(progress).to_be_visible()
    expect(progress).to_contain_text("Uploading pasted.png")
    slow.release()
    expect(page.locator("#messages img.chat-image")).to_have_count(1)
    expect(progress).to_be_hidden()
    _drop_or_paste(page, "drop", gradient_png(8, (0, 0, 0), (255, 255, 255)), "dropped.png")
    expect(page.locator("#messages img.chat-image")).to_have_count(2)
    expect(page.locator("#messages img.chat-image").nth(1)).to_have_attribute("alt", "dropped.png")
    assert [m["content"] for m in owner.history(room_id)] == ["pasted.png", "dropped.png"]


# The browser's Notification API, recorded: permission starts undecided, and
# asking grants it. visibilityState follows window.__hidden (a hidden tab).
NOTIFICATION_RECORDER = """
window.__hidden = false;
window.__notes = [];
window.__asked = 0;
Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true, get() { return window.__hidden ? "hidden" : "visible"; } });
class RecordedNotification {
    constructor(title, options) { window.__notes.push({ title, body: options && options.body }); }
    addEventListener() {}
    close() {}
    static requestPermission() {
        window.__asked += 1;
        RecordedNotification.permission = "granted";
        return Promise.resolve("granted");
    }
}
RecordedNotification.permission = "default";
window.Notification = RecordedNotification;
"""


def test_notifications_are_asked_for_on_click_and_shown_for_private_and_mentions_while_hidden(
    windows: Windows, live: Live
) -> None:
    """No permission prompt on load; after the bell, a hidden tab is notified of private messages and mentions only."""
    page = windows.open("dana")
    page.context.add_init_script(NOTIFICATION_RECORDER)
    bob = live.user("bob")
    room_id = bob.create_room("pings")
    enter_room(page, live, room_id)
    bell = page.locator("#notify-toggle")
    expect(bell).to_be_visible()
    assert page.evaluate("window.__asked") == 0, "never asked on load"
    bell.click()
    expect(bell).to_have_attribute("data-state", "on")
    assert page.evaluate("window.__asked") == 1

    say(bob, room_id, "while you look")
    expect(message(page, "while you look")).to_have_count(1)
    page.evaluate("window.__hidden = true")
    say(bob, room_id, "plain chatter")
    say(bob, room_id, "@dana are you there?")
    say(bob, room_id, "just between us", to_uid=page.evaluate("document.body.dataset.uid"))
    expect(message(page, "just between us")).to_have_count(1)
    notes = page.evaluate("window.__notes")
    assert notes == [
        {"title": "bob mentioned you in #pings", "body": "@dana are you there?"},
        {"title": "bob (private) · #pings", "body": "just between us"},
    ]
    # Turned off with the bell: nothing more.
    page.evaluate("window.__hidden = false")
    bell.click()
    expect(bell).to_have_attribute("data-state", "off")
    page.evaluate("window.__hidden = true")
    say(bob, room_id, "@dana again")
    expect(message(page, "@dana again")).to_have_count(1)
    assert len(page.evaluate("window.__notes")) == 2


def test_avatar_upload_shows_on_messages_and_member_lists(windows: Windows, live: Live) -> None:
    """Your uploaded picture replaces your initials in the top bar, on your messages and in others' member lists."""
    dana = windows.open("dana")
    bob = windows.open("bob")
    room_id = live.user("owner").create_room("faces")
    enter_room(dana, live, room_id)
    enter_room(bob, live, room_id)
    # Before: initials on the user's own colour, the same everywhere.
    bob_row = bob.locator("#member-list .member", has_text="dana").locator(".avatar")
    expect(bob_row).to_have_text("D")
    colour = re.search(r"\bc\d+\b", bob_row.get_attribute("class") or "")
    assert colour
    dana.set_input_files(
        "#avatar-input",
        files=[{"name": "me.png", "mimeType": "image/png", "buffer": gradient_png(32, (250, 140, 90), (120, 80, 220))}],
    )
    expect(dana.locator("#my-avatar img.avatar-img")).to_have_attribute("src", re.compile(r"^/avatars/\d+\?v=1$"))
    dana.fill("#content", "new face")
    dana.press("#content", "Enter")
    picture = message(bob, "new face").locator(".avatar img.avatar-img")
    expect(picture).to_have_js_property("naturalWidth", 32)
    expect(message(bob, "new face").locator(".avatar")).to_have_class(re.compile(rf"\b{colour.group(0)}\b"))
    # A page opened afterwards gets it with the member list.
    enter_room(bob, live, room_id)
    expect(bob.locator("#member-list .member", has_text="dana").locator("img.avatar-img")).to_have_count(1)


def _open_phone(windows: Windows, name: str) -> Any:
    """A 390 px wide window that registered as ``name``."""
    context = windows.browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(WAIT_MS)
    windows.contexts.append(context)
    page = context.new_page()
    page.goto(windows.live.url + "/register")
    page.fill("#name", name)
    page.fill("#password", "correct horse battery")
    page.click("#submit")
    page.wait_for_url(windows.live.url + "/")
    return page


def test_on_a_phone_members_are_in_a_drawer_and_you_can_write_privately(windows: Windows, live: Live) -> None:
    """At 390 px the top bar stays one line, the member list opens as a drawer, and its menu's private message writes privately."""
    phone = _open_phone(windows, "dana")
    bob = windows.open("bob")
    room_id = live.user("owner").create_room("a-rather-long-room-name-for-a-phone")
    enter_room(phone, live, room_id)
    enter_room(bob, live, room_id)
    bar = phone.locator(".topbar").bounding_box()
    assert bar and bar["height"] < 60, "the top bar does not wrap"
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "nothing sticks out sideways"
    members = phone.locator("#members")
    expect(members).to_be_hidden()
    expect(phone.locator("#members-toggle-count")).to_have_text("2")

    phone.click("#members-toggle")
    expect(members).to_be_visible()
    expect(members.locator(".member-name")).to_have_text(["bob", "dana"])
    members.locator(".member", has_text="bob").click()
    # The member menu (members.js) opens over the drawer; "Message privately" closes both.
    expect(phone.locator("#member-menu .menu-item")).to_have_text(["Message privately"])
    phone.click("#member-menu .menu-private")
    expect(members).to_be_hidden()
    expect(phone.locator("#member-menu")).to_be_hidden()
    expect(phone.locator("#private-pill")).to_contain_text("Private to bob")
    phone.fill("#content", "just for you, bob")
    phone.locator("#send").click()
    item = message(bob, "just for you, bob")
    expect(item.locator(".private-tag")).to_have_text("private · to you")

    # The drawer also closes with Escape and the backdrop.
    phone.click("#members-toggle")
    expect(members).to_be_visible()
    phone.keyboard.press("Escape")
    expect(members).to_be_hidden()


def test_on_a_phone_the_owner_mutes_from_the_drawer(windows: Windows, live: Live) -> None:
    """At 390 px the room's owner opens the member menu from the drawer, above it, and mutes a member."""
    phone = _open_phone(windows, "dana")
    phone.fill("#room-name", "phone-owned")
    phone.click("#create-room button[type=submit]")
    phone.wait_for_url(re.compile(r".*/rooms/\d+$"))
    owned = int(phone.url.rsplit("/", 1)[1])
    expect(phone.locator("#status")).to_have_attribute("data-state", "online")
    bob = windows.open("bob")
    enter_room(bob, live, owned)
    expect(phone.locator("#members-toggle-count")).to_have_text("2")

    phone.click("#members-toggle")
    members = phone.locator("#members")
    expect(members).to_be_visible()
    members.locator(".member", has_text="bob").click()
    menu = phone.locator("#member-menu")
    expect(menu.locator(".menu-item")).to_have_text(["Message privately", "Mute…", "Ban…"])
    # On top of the drawer and inside the screen: what a finger taps there is the menu.
    box = menu.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    on_top = phone.evaluate(
        "([x, y]) => document.elementFromPoint(x, y).closest('#member-menu') !== null",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    assert on_top, "the member menu is hidden behind the drawer"
    phone.click("#member-menu .menu-mute")
    phone.click("#member-menu .mute-for >> text=10 minutes")
    expect(bob.locator("#blocked-banner")).to_contain_text("You are muted in this room until")


def test_screenshots_of_the_room_at_both_widths(windows: Windows, live: Live, tmp_path: Path) -> None:
    """The lived-in room renders at 1280 px (typing, an edited message with a link) and at 390 px (drawer open
    with the owner's member menu) with nothing overflowing, and the lobby shows an unread count; the pictures are kept.

    Set WEBCHAT_SCREENSHOTS=<dir> to keep them (docs/screenshot-room.png is the 1280 px one).
    """
    out = Path(os.environ.get("WEBCHAT_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    wide = windows.open("dana")
    wide.set_viewport_size({"width": 1280, "height": 800})
    room_id, users = lived_in_room(live, "dana", older=60)
    others = []
    for user in ("alice", "bob"):
        context = windows.browser.new_context()
        windows.contexts.append(context)
        context.add_cookies(
            [{"name": c.name, "value": c.value or "", "url": live.url} for c in users[user].http.cookies]
        )
        page = context.new_page()
        enter_room(page, live, room_id)
        others.append(page)
    enter_room(wide, live, room_id)
    expect(wide.locator("#member-list .member")).to_have_count(3)
    expect(wide.locator("#messages .mention.me")).to_have_count(1)
    expect(wide.locator("#messages img.avatar-img").first).to_have_js_property("complete", True)
    # Bob adds the link to his last message; carol is typing.
    bob_http, carol_http = users["bob"], users["carol"]
    last = max(
        int(m["id"]) for m in bob_http.get(f"/rooms/{room_id}/messages").json()["messages"] if m.get("uname") == "bob"
    )
    edited = bob_http.http.patch(
        f"{live.url}/messages/{last}",
        json={"content": "Draft by noon: https://example.com/release-notes"},
        headers={"X-CSRFToken": bob_http.csrf or bob_http.refresh_csrf()},
    )
    assert edited.status_code == 200, edited.text
    expect(message(wide, "Draft by noon: https://example.com/release-notes").locator("a.link")).to_have_count(1)
    assert carol_http.post("/typing", {"room_id": room_id}).status_code == 200
    expect(wide.locator("#typing")).to_have_text("carol is typing…")
    assert wide.evaluate("document.documentElement.scrollWidth") <= 1280
    wide.screenshot(path=str(out / "room-1280.png"))

    phone = _open_phone(windows, "erin")
    enter_room(phone, live, room_id)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=str(out / "room-390.png"))
    phone.click("#members-toggle")
    expect(phone.locator("#members")).to_be_visible()
    phone.wait_for_timeout(300)  # the drawer's slide (a picture, not an assertion, waits for it)
    phone.screenshot(path=str(out / "room-390-drawer.png"))

    # The owner (alice) on a phone: the drawer's member menu has mute and ban.
    owner = others[0]
    owner.set_viewport_size(PHONE)
    owner.click("#members-toggle")
    expect(owner.locator("#members")).to_be_visible()
    owner.locator("#members .member", has_text="bob").click()
    expect(owner.locator("#member-menu .menu-ban")).to_be_visible()
    owner.wait_for_timeout(300)  # the drawer's slide
    owner.screenshot(path=str(out / "room-390-owner-menu.png"))

    # The lobby: bob's new message in another room is counted there, live.
    other_room = carol_http.create_room("release")
    wide.goto(live.url + "/")
    say(carol_http, other_room, "Release notes are up for review.")
    expect(wide.locator(f'.room-item[data-room-id="{other_room}"] .unread-badge')).to_have_text("1")
    wide.screenshot(path=str(out / "lobby-1280.png"))
