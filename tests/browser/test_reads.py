"""Read positions from the room page in real headless Chromium: few requests, none lost on leaving.

reads.js sends the position at most once per ``READ_EVERY_MS`` (read from the
file, so the test follows the page), at the end of that time, and at once when
the tab is hidden or left.
"""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.servers import TIMEOUT
from tests.web_app.live import HttpUser, Live

from .conftest import WAIT_MS, Windows
from .test_chat_page import enter_room, message, say
from .test_room_interactions import set_hidden

READS_JS = Path(__file__).resolve().parents[2] / "templates" / "static" / "reads.js"
READ_EVERY_MS = int(re.search(r"const READ_EVERY_MS = (\d+);", READS_JS.read_text()).group(1))  # type: ignore[union-attr]


def is_read(request: Any) -> bool:
    """Whether the request is a read (POST /rooms/<id>/read)."""
    return request.method == "POST" and re.search(r"/rooms/\d+/read$", request.url) is not None


def read_requests(page: Any) -> list[Any]:
    """The page's read requests from now on, as they finish."""
    finished: list[Any] = []

    def on_finished(request: Any) -> None:
        if is_read(request):
            finished.append(request)

    page.on("requestfinished", on_finished)
    return finished


def pump_until(page: Any, check: Any, what: str) -> None:
    """Wait until ``check()`` holds, letting Playwright deliver the page's events meanwhile."""
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)


def unread(user: HttpUser | Any, room_id: int) -> int:
    """The lobby's unread count of the room for this user (an HttpUser, or a page's own cookies)."""
    if isinstance(user, HttpUser):
        rooms = user.get("/rooms").json()["rooms"]
    else:
        base = user.url.split("/rooms/")[0].rstrip("/")
        rooms = user.request.get(base + "/rooms", headers={"Accept": "application/json"}).json()["rooms"]
    return int({room["id"]: room["unread"] for room in rooms}[room_id])


def test_a_burst_of_messages_is_a_few_reads_ending_at_the_last(windows: Windows, live: Live) -> None:
    """30 messages in a burst cost a few reads, READ_EVERY_MS apart at least; the last read is the last message, "seen" shows."""
    alice, bob = windows.open("alice"), windows.open("bob")
    carol = HttpUser(live.url, "carol").register()
    room_id = carol.create_room("burst")
    enter_room(alice, live, room_id)
    enter_room(bob, live, room_id)
    expect(alice.locator("#member-list .member-name")).to_have_text(["alice", "bob"])
    reads = read_requests(bob)

    said = [carol.say(room_id, f"burst {k}").json()["message"]["id"] for k in range(30)]
    # Alice's private message to bob ends the burst: his read covers it, and her page says "seen".
    alice.click("#member-list button.member >> text=bob")
    alice.click("#member-menu .menu-private")
    say(alice, "psst")
    expect(message(bob, "psst")).to_have_count(1)
    expect(message(alice, "psst").locator(".seen")).to_have_text("seen", timeout=WAIT_MS)
    last = int(message(bob, "psst").get_attribute("data-id") or 0)
    assert last > said[-1]

    expect(bob).to_have_title("#burst · webchat")
    # Alice saw "seen" once bob's read was stored; its answer may still be on its way.
    pump_until(bob, lambda: bool(reads) and reads[-1].post_data_json["message_id"] == last, "the read of psst")
    assert unread(bob, room_id) == 0
    sent = [request.post_data_json["message_id"] for request in reads]
    assert sent == sorted(set(sent)), sent
    assert len(sent) <= 10, f"{len(sent)} reads for 31 messages"
    starts = sorted(request.timing["startTime"] for request in reads)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # startTime is a float of milliseconds: allow a millisecond of rounding.
    assert all(gap >= READ_EVERY_MS - 1 for gap in gaps), gaps
    assert all(request.response().status == 200 for request in reads)


def test_hiding_or_leaving_the_tab_sends_the_read_at_once(windows: Windows, live: Live) -> None:
    """With a wait of ten minutes, hiding the tab still sends the read at once, and so does leaving the page."""
    bob = windows.open("bob")
    carol = HttpUser(live.url, "carol").register()
    room_id = carol.create_room("leaving")
    # The page's own reads.js with a wait no test would sit through: only hiding or leaving can send.
    patched = READS_JS.read_text().replace(f"const READ_EVERY_MS = {READ_EVERY_MS};", "const READ_EVERY_MS = 600000;")
    assert "600000" in patched
    bob.route("**/static/reads.js*", lambda route: route.fulfill(body=patched, content_type="text/javascript"))
    enter_room(bob, live, room_id)
    reads = read_requests(bob)

    first = carol.say(room_id, "one").json()["message"]["id"]
    expect(message(bob, "one")).to_have_count(1)
    expect(bob).to_have_title("#leaving · webchat")
    assert unread(bob, room_id) == 1, "no read goes out before the wait ends"
    with bob.expect_request_finished(is_read) as hidden:
        set_hidden(bob, True)
    assert hidden.value.post_data_json == {"message_id": first}
    assert unread(bob, room_id) == 0

    set_hidden(bob, False)
    second = carol.say(room_id, "two").json()["message"]["id"]
    expect(message(bob, "two")).to_have_count(1)
    expect(bob).to_have_title("#leaving · webchat")
    assert [request.post_data_json["message_id"] for request in reads] == [first]
    bob.goto(live.url + "/")
    # The lobby hears the read (its "read" frame, or the counts it loads once bound): nothing unread.
    item = bob.locator(f'.room-item[data-room-id="{room_id}"]')
    expect(item).to_have_count(1)
    expect(item.locator(".unread-badge")).to_be_hidden(timeout=WAIT_MS)
    assert unread(bob, room_id) == 0
    assert second > first
