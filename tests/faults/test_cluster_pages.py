"""Cluster faults end to end, counted: pages on 3 nodes behind the web app see every message once through Redis trouble.

Real redis-server, push_server nodes, web app and database; simulated pages
(page.py, the rule of delivery.js) posting and reading throughout, and once
the real page in Chromium. See :mod:`tests.faults.pages_rig`, which the
benchmark's ``faults`` item runs at a larger size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from ..servers import RedisServer
from ..web_app.live import HttpUser, Live
from . import pages_rig
from .cluster_rig import cluster, until_whole
from .conftest import WAIT_MS, Windows

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not RedisServer.available(), reason="redis-server is not installed (test.sh installs it)"),
]


async def test_redis_restarted_empty_under_pages_posting_through_the_web_app() -> None:
    """Redis killed 2 s and restarted empty under 3 nodes, 15 pages, 5 posting: 0 lost, 0 duplicated, nobody reconnects."""
    figures = await pages_rig.redis_restarted_empty(pages=15, nodes=3, posters=5, outage=2.0)
    print("redis restarted empty, pages:", figures)
    assert (figures["lost"], figures["duplicated"], figures["extra"]) == (0, 0, 0), figures
    assert figures["say_statuses"].get(502, 0) > 0, "no /say met the outage: the scenario did not happen"
    assert figures["reconnected"] == 0, figures
    assert figures["told"] == 15, figures
    assert figures["undercounts"] == 0, figures


@pytest.mark.parametrize(
    "node_timeout, outage, reaped", [(10.0, 2.0, False), (2.0, 2.0, True)], ids=["within-its-lease", "reaped-meanwhile"]
)
async def test_pages_of_a_node_cut_from_redis_catch_up_on_their_sockets(
    node_timeout: float, outage: float, reaped: bool
) -> None:
    """Node 1 loses Redis while the web app's node keeps it (/say answers 201): node 1's pages get resync and catch up, 0 lost, none reconnects."""
    figures = await pages_rig.node_cut_from_redis(
        pages=15, nodes=3, posters=4, outage=outage, node_timeout=node_timeout, reaped=reaped
    )
    print("node cut from redis, pages:", figures)
    assert (figures["lost"], figures["duplicated"], figures["extra"]) == (0, 0, 0), figures
    # Acknowledged pushes that node 1's pages could not get live: only the catch-up brings them.
    assert figures["say_statuses_while_cut"].get(201, 0) > 0, figures
    assert figures["not_pushed"] > 0, figures
    assert figures["reconnected"] == 0, figures
    # Reaped, node 1 comes back to write its clients again: every node answers 503 until it has, then tells its pages.
    assert figures["others_told"] == (10 if reaped else 0), figures


async def test_pages_of_other_nodes_hear_of_pushes_the_web_apps_node_refused_while_cut_from_redis() -> None:
    """The web app's own node loses Redis (/say answers 502, its own pages only), nothing posted after: every other node's page shows every message."""
    figures = await pages_rig.node_cut_from_redis(pages=15, nodes=3, posters=4, outage=2.0, cut=0, after=0)
    print("web app's node cut from redis, pages:", figures)
    assert (figures["lost"], figures["duplicated"], figures["extra"]) == (0, 0, 0), figures
    assert figures["say_statuses_while_cut"].get(502, 0) > 0, figures
    # Nodes 1 and 2 never lost Redis: only node 0's note, once it is back, makes them tell their pages.
    assert figures["others_told"] == 10, figures
    assert figures["reconnected"] == 0, figures


def _dom_ids(page: Any) -> list[int]:
    return [
        int(value) for value in page.locator("#messages li.message").evaluate_all("els => els.map(e => e.dataset.id)")
    ]


def test_the_real_page_on_another_node_shows_every_message_once_through_a_redis_restart(
    browser: Any, tmp_path: Path
) -> None:
    """Chromium, pages on nodes 1 and 2, web app on node 0: Redis restarted empty mid-conversation; each message once, in id order, no reconnect."""
    with cluster(3) as (redis, servers), contextlib.ExitStack() as stack:
        # One web app (one database, shared sessions) per node the pages connect to; every push goes through node 0.
        fronts = [
            stack.enter_context(Live(servers[0], tmp_path / "instance", None, ws_url=servers[n].ws_url)) for n in (1, 2)
        ]
        owner = HttpUser(fronts[0].url, "owner").register()
        room_id = owner.create_room("general")
        windows = Windows(browser, fronts[0])
        stack.callback(windows.close)
        opened = []
        for front, name in zip(fronts, ("alice", "bob"), strict=True):
            page = windows.open(name)
            page.goto(f"{front.url}/rooms/{room_id}")  # the session cookie is the host's, whatever the port
            expect(page.locator("#status")).to_have_attribute("data-state", "online")
            opened.append(page)
        assert owner.say(room_id, "before").status_code == 201
        redis.stop()
        during = [owner.say(room_id, f"during {i}") for i in range(3)]
        redis.start()
        # Nothing posted after: the messages of the outage reach the pages only through their resync catch-up.
        with concurrent.futures.ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this one
            thread.submit(
                asyncio.run, until_whole(servers, 2, timeout=WAIT_MS / 1000 * 4, group=f"room:{room_id}")
            ).result()
        stored = [m["id"] for m in owner.history(room_id)]
        assert [a.status_code for a in during] == [502, 502, 502]
        for page in opened:
            expect(page.locator("#messages li.message")).to_have_count(len(stored), timeout=WAIT_MS * 2)
            assert _dom_ids(page) == stored  # each once, in id order
            assert page.locator("#messages li.notice", has_text="Reconnected").count() == 0
            expect(page.locator("#status")).to_have_attribute("data-state", "online")
        assert windows.dialogs == []
