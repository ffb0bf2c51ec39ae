"""Nothing lost, counted: pages that follow docs/delivery.md show every message once through push-server faults.

Real push-server process (killed with SIGKILL and restarted), real web app,
real database; simulated pages (page.py, the rule of delivery.js) and, once,
the real page in Chromium. Every (page, message) pair is counted: 0 lost,
0 shown twice.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.servers import TIMEOUT, free_port
from tests.web_app.live import HttpUser, Live, LiveServer, make_app

from .conftest import WAIT_MS, Windows
from .page import Page, tally, until, visible

DATABASES = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
#: Pages have to wait out a restart and their reconnect backoff.
SETTLE = TIMEOUT * 4
_names = itertools.count(1)


def _name(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


async def _pages(live: Live, count: int, room_id: int | None = None) -> tuple[list[Page], int]:
    pages = [await Page(live.url, live.push.ws_url, _name("p")).register() for _ in range(count)]
    if room_id is None:
        room_id = await pages[0].create_room(_name("room"))
    for page in pages:
        await page.open(room_id)
    await _until(lambda: all(page.binds >= 1 and page.delivery and page.delivery.idle for page in pages), "bound")
    return pages, room_id


async def _until(condition: Any, what: str, timeout: float = SETTLE) -> None:
    await until(condition, what, timeout)


_expected = visible


async def _count(pages: list[Page], said: list[dict[str, Any]]) -> tuple[int, int, int]:
    """Wait until every page holds what it should (or time runs out); then (lost, duplicated, pairs)."""
    figures = await tally(pages, said, SETTLE)
    assert figures["extra"] == 0, f"{figures['extra']} messages shown to pages that may not see them"
    return figures["lost"], figures["duplicated"], figures["pairs"]


@pytest.fixture
async def closing() -> Any:
    """Pages made by the test, closed after it."""
    made: list[Page] = []
    yield made
    for page in made:
        await page.close()


@pytest.fixture
def unpushed(live: Live, tmp_path: Path, db_url: str | None) -> Iterator[LiveServer]:
    """A second web app on the same database whose push server is a closed port: what it stores is never pushed."""
    app = make_app(
        tmp_path / "instance", db_url, PUSH_API_URL=f"http://127.0.0.1:{free_port()}", PUSH_SECRET="x", PUSH_TIMEOUT=1.0
    )
    server = LiveServer(app).start()
    yield server
    server.stop()


@DATABASES
async def test_issue_repro_message_of_another_posted_during_the_outage_shows(live: Live, closing: list[Page]) -> None:
    """Bob posts m1 (502), Alice posts m2 (502), the push server comes back: Alice shows m1 (and both show each once)."""
    pages, _ = await _pages(live, 2)
    closing.extend(pages)
    alice, bob = pages
    live.push.kill()
    status1, m1 = await bob.say("m1")
    status2, m2 = await alice.say("m2")
    assert (status1, status2) == (502, 502)
    live.push.start()
    await _until(lambda: alice.binds >= 2 and bob.binds >= 2, "re-bound")
    lost, duplicated, pairs = await _count(pages, [m1, m2])
    assert (lost, duplicated, pairs) == (0, 0, 4)
    assert alice.shown == {m1["id"]: 1, m2["id"]: 1}


@DATABASES
async def test_push_server_killed_and_restarted_with_pages_posting_throughout(live: Live, closing: list[Page]) -> None:
    """12 pages; posts before, during (502) and right after a SIGKILL restart, public and private: 0 lost, 0 duplicated."""
    pages, _ = await _pages(live, 12)
    closing.extend(pages)
    posters = pages[:4]
    said: list[dict[str, Any]] = []

    async def post_round(label: str, expect_status: int | None) -> None:
        async def one(page: Page, n: int) -> None:
            for i in range(3):
                to = pages[(n + 1) % len(pages)].uid if i == 2 else None  # every third is private
                status, message = await page.say(f"{label} {page.name} {i}", to_uid=to)
                if expect_status is not None:
                    assert status == expect_status
                said.append(message)

        await asyncio.gather(*(one(page, n) for n, page in enumerate(posters)))

    await post_round("before", 201)
    live.push.kill()
    await post_round("during", 502)
    live.push.start()
    # Posted while the pages reconnect and bind: live frames, 201s and catch-ups cross.
    await post_round("after", None)
    await _until(lambda: all(page.binds >= 2 for page in pages), "every page re-bound")
    await post_round("later", 201)
    lost, duplicated, pairs = await _count(pages, said)
    print(
        f"push server restart: {len(pages)} pages, {len(said)} messages, {pairs} pairs: {lost} lost, {duplicated} duplicated"
    )
    assert (lost, duplicated) == (0, 0), f"{lost} lost and {duplicated} duplicated of {pairs} pairs"


@DATABASES
async def test_a_hole_in_the_seqs_is_fetched_without_reconnecting(
    live: Live, unpushed: LiveServer, closing: list[Page]
) -> None:
    """A message stored but never pushed is found when the next one arrives with the seq after it; no reconnect."""
    pages, room_id = await _pages(live, 3)
    closing.extend(pages)
    poster = await Page(unpushed.url, live.push.ws_url, _name("quiet")).register()
    closing.append(poster)
    await poster.open(room_id)
    lost_push = (await poster.say("never pushed"))[1]
    seen_live = (await pages[0].say("pushed after it"))[1]
    assert seen_live["seq"] == lost_push["seq"] + 1
    lost, duplicated, _ = await _count(pages, [lost_push, seen_live])
    assert (lost, duplicated) == (0, 0)
    assert all(page.binds == 1 for page in pages)


@DATABASES
async def test_resync_frame_makes_pages_catch_up_on_their_socket(
    live: Live, unpushed: LiveServer, closing: list[Page]
) -> None:
    """Messages stored and never pushed show on every page once the push server sends {"type":"resync"}; no reconnect."""
    pages, room_id = await _pages(live, 3)
    closing.extend(pages)
    poster = await Page(unpushed.url, live.push.ws_url, _name("quiet")).register()
    closing.append(poster)
    await poster.open(room_id)
    said = [(await poster.say(f"unpushed {i}"))[1] for i in range(3)]
    said.append((await poster.say("private, unpushed", to_uid=pages[0].uid))[1])
    await asyncio.sleep(0)  # the pages have nothing to go on yet: no frame arrived
    assert all(not (_expected(page, said) & set(page.shown)) for page in pages)
    live.push.client().send_to_group(f"room:{room_id}", {"type": "resync", "reason": "redis_restored"})
    lost, duplicated, _ = await _count(pages, said)
    assert (lost, duplicated) == (0, 0)
    assert all(page.binds == 1 for page in pages)


def _dom_ids(page: Any) -> list[int]:
    return [
        int(value) for value in page.locator("#messages li.message").evaluate_all("els => els.map(e => e.dataset.id)")
    ]


def test_the_real_page_shows_every_message_once_through_a_restart_a_hole_and_a_resync(
    windows: Windows, live: Live, unpushed: LiveServer
) -> None:
    """Chromium: the issue's repro across a SIGKILL restart, a never-pushed message, and a resync; each message in the DOM once."""
    alice, bob = windows.open("alice"), windows.open("bob")
    owner = HttpUser(live.url, "owner").register()
    room_id = owner.create_room("general")
    quiet = HttpUser(unpushed.url, "quiet").register()
    for page in (alice, bob):
        page.goto(f"{live.url}/rooms/{room_id}")
        expect(page.locator("#status")).to_have_attribute("data-state", "online")

    live.push.kill()
    for page, text in ((bob, "m1"), (alice, "m2")):
        page.fill("#content", text)
        page.press("#content", "Enter")
        expect(page.locator("#messages li.notice", has_text="live delivery failed")).to_have_count(1)
    live.push.start()
    for page in (alice, bob):
        expect(page.locator("#status")).to_have_attribute("data-state", "online", timeout=WAIT_MS * 4)

    hole = quiet.say(room_id, "never pushed")
    assert hole.status_code == 502
    assert owner.say(room_id, "pushed after it").status_code == 201
    unseen = [quiet.say(room_id, f"unpushed {i}") for i in range(2)]
    live.push.client().send_to_group(f"room:{room_id}", {"type": "resync", "reason": "redis_lost"})

    stored = [m["id"] for m in owner.history(room_id)]
    assert len(stored) == 6 and all(answer.status_code == 502 for answer in unseen)
    for page in (alice, bob):
        expect(page.locator("#messages li.message")).to_have_count(len(stored), timeout=WAIT_MS * 2)
        assert _dom_ids(page) == stored  # each once, in id order
        assert page.locator("#messages li.notice", has_text="Reconnected").count() == 1
