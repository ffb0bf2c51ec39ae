"""The web app's side: POST /push/events (signed, deduplicated) and the lobby's live people list in Chromium."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import push_protocol

from ..servers import TEST_SECRET, TIMEOUT, PushServerProcess
from ..web_app.live import Live, make_app
from .conftest import GRACE

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    """A web app on its own SQLite database."""
    return make_app(tmp_path / "instance", None, PUSH_SECRET=TEST_SECRET, PUSH_API_URL="http://127.0.0.1:9")


def post_events(client: Any, events: list[dict[str, Any]], secret: str | None = TEST_SECRET) -> Any:
    body = json.dumps({"events": events}).encode()
    headers = push_protocol.sign_request(secret, "POST", "/push/events", body) if secret else {}
    return client.post("/push/events", data=body, headers={**headers, "Content-Type": "application/json"})


def user_row(app: Any, uid: int) -> tuple[bool, Any]:
    from web_app.models import User, get_db

    with app.app_context():
        user = get_db().get(User, uid)
        return bool(user.online), user.last_seen


def test_events_endpoint_checks_signatures_and_ids(app: Any) -> None:
    """Unsigned or wrongly signed batches get 401 and change nothing; a signed one applies each id once; bad JSON gets 400."""
    client = app.test_client()
    from web_app.models import User, get_db

    with app.app_context():
        get_db().add(User(name="erin", password_hash="x"))
        get_db().commit()
    online = {"id": "e1", "type": "uid_online", "time": 1000.0, "uid": "1"}
    assert post_events(client, [online], secret=None).status_code == 401
    assert post_events(client, [online], secret="another-secret-0123456789").status_code == 401
    assert user_row(app, 1) == (False, None)
    assert post_events(client, [online]).status_code == 200
    assert user_row(app, 1)[0] is True
    offline = {"id": "e2", "type": "uid_offline", "time": 1005.0, "uid": "1"}
    assert post_events(client, [offline]).status_code == 200
    # The first batch again (a retry): already applied, so erin stays offline.
    assert post_events(client, [online]).status_code == 200
    is_online, last_seen = user_row(app, 1)
    assert is_online is False and last_seen.timestamp() == 1005.0
    for bad in (b"not json", b'{"events": 3}', b'{"events": [{"type": "uid_online"}]}'):
        headers = push_protocol.sign_request(TEST_SECRET, "POST", "/push/events", bad)
        assert client.post("/push/events", data=bad, headers=headers).status_code == 400


@pytest.fixture
def wired(tmp_path: Path) -> Iterator[tuple[Live, PushServerProcess]]:
    """The push server sending its events to the live web app, as ./run.sh wires them."""
    push = PushServerProcess("--offline-grace", str(GRACE))
    with Live(push, tmp_path / "instance", None) as live:
        push.flags += ["--events-url", live.url + "/push/events"]
        with push:
            yield live, push


def test_lobby_shows_who_is_online_live(wired: tuple[Live, PushServerProcess]) -> None:
    """In Chromium, a lobby sees another user come online and, after they close their page, when they were last seen."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import expect, sync_playwright

    from ..browser.conftest import CHROMIUM_ARGS, Windows

    live, _push = wired
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        windows = Windows(chromium, live)
        try:
            alice = windows.open("alice")
            expect(alice.locator('#people-list .person[data-online="1"]')).to_have_count(1, timeout=TIMEOUT * 2000)
            bob = windows.open("bob")
            bob_row = alice.locator("#people-list .person", has_text="bob")
            expect(bob_row).to_have_attribute("data-online", "1", timeout=TIMEOUT * 2000)
            bob.context.close()
            expect(bob_row).to_have_attribute("data-online", "0", timeout=(GRACE + TIMEOUT * 2) * 1000)
            expect(bob_row.locator(".person-seen")).to_have_text("last seen just now")
            # And the database says so (the flag the seed chat shows).
            people = {p["name"]: p for p in alice.evaluate("fetch('/people').then(r => r.json())")["people"]}
            assert people["bob"]["online"] is False and people["bob"]["last_seen"]
            assert people["alice"]["online"] is True
            assert windows.dialogs == []
        finally:
            for context in windows.contexts:
                with contextlib.suppress(Exception):
                    context.close()
            chromium.close()
