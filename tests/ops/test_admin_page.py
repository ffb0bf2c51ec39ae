"""/admin in real Chromium: live nodes, totals, rooms by members and charts for ADMIN_USERS; 403 for others."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import WAIT_MS, Windows
from tests.push.conftest import raw_handshake, read_frame
from tests.web_app.live import HttpUser, Live

# The page polls every 2 s; a chart needs two samples.
POLL_WAIT_MS = WAIT_MS + 3000


@pytest.fixture(autouse=True)
def admins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user named root is the admin."""
    monkeypatch.setenv("ADMIN_USERS", "root, someone-else")


def test_non_admins_get_403(windows: Windows, live: Live) -> None:
    """A logged-in user not in ADMIN_USERS gets 403 for the page and its data."""
    page = windows.open("mallory")
    answer = page.goto(live.url + "/admin")
    assert answer is not None and answer.status == 403
    assert HttpUser(live.url, "eve").register().get("/admin/status.json").status_code == 403


def test_admin_sees_live_status(windows: Windows, live: Live) -> None:
    """The admin's page shows the node, the connections, the busiest room and a frames/s chart that moves."""
    owner = HttpUser(live.url, "owner").register()
    room_id = owner.create_room("busy-room")
    owner.create_room("quiet-room")
    guest = HttpUser(live.url, "guest").register()
    sockets = []
    for user in (owner, guest):
        # A page's connection by hand (Playwright's own event loop rules out aiohttp here).
        sock, head = raw_handshake(live.push.ws_port)
        assert head.startswith(b"HTTP/1.1 101")
        init = json.loads(read_frame(sock)[1])
        assert user.bind(init["client_id"], room_id).status_code == 200
        sockets.append(sock)
    try:
        page = windows.open("root")
        page.goto(live.url + "/admin")
        expect(page.locator("#total-connections")).to_have_text("2", timeout=POLL_WAIT_MS)
        expect(page.locator("#online-users")).to_have_text("2")
        expect(page.locator("#nodes tr")).to_have_count(1)
        expect(page.locator("#nodes tr td").nth(1)).to_have_text("2")
        expect(page.locator("#rooms tr").first).to_contain_text("busy-room")
        expect(page.locator("#rooms tr").first.locator("td").nth(1)).to_have_text("2")
        for index in range(5):
            assert owner.say(room_id, f"message {index}").ok
        # Two samples apart by a poll make a rate; ten frames went out between them at least.
        expect(page.locator("#frames-rate")).not_to_have_text("–", timeout=POLL_WAIT_MS * 2)
        expect(page.locator("#frames-chart polyline")).not_to_have_attribute("points", "", timeout=POLL_WAIT_MS)
    finally:
        for sock in sockets:
            sock.close()
