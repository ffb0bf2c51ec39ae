"""Redis Sentinel: kill the master, the push server follows the new one and presence is whole again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
import requests

import webchat_redis

from ..sentinel import SentinelSetup, started_sentinel
from ..servers import TIMEOUT, PushServerProcess
from ..ws_client import Browser
from .conftest import wait_until


@pytest.fixture
def sentinel() -> Iterator[SentinelSetup]:
    """A Sentinel-managed Redis of the test's own."""
    with started_sentinel() as setup:
        yield setup


def test_url_client_reaches_the_master(sentinel: SentinelSetup) -> None:
    """A client made from the redis+sentinel URL writes to the master the sentinel names."""
    client = webchat_redis.sync_client(sentinel.url, socket_timeout=TIMEOUT)
    client.set("probe", "1")
    assert redis.Redis(port=sentinel.master_port).get("probe") == b"1"


async def test_push_server_follows_failover(sentinel: SentinelSetup) -> None:
    """Kill the master: the node follows the promoted replica without a restart; presence and group pushes are whole."""
    with PushServerProcess("--redis-url", sentinel.url, "--node-timeout", "3") as node:
        health = lambda: requests.get(node.api_url + "/healthz", timeout=TIMEOUT).status_code  # noqa: E731
        wait_until(lambda: health() == 200, what="node healthy")
        push = node.client()
        async with aiohttp.ClientSession() as session:
            browsers = [await Browser.open(session, node.ws_url) for _ in range(4)]
            for index, browser in enumerate(browsers):
                push.bind_uid(browser.client_id, f"u{index}")
                push.join_group(browser.client_id, "room")
            sentinel.kill("master")
            wait_until(
                lambda: sentinel.master_port_now() == sentinel.replica_port, timeout=TIMEOUT * 4, what="failover"
            )
            wait_until(lambda: health() == 200, timeout=TIMEOUT * 4, what="node healthy on the new master")
            assert push.get_all_client_count() == 4
            assert sorted(push.get_uid_list_by_group("room")) == ["u0", "u1", "u2", "u3"]
            push.send_to_group("room", {"after": "failover"})
            for browser in browsers:
                # The node lost Redis during the failover, so its pages were told
                # to catch up (resync frames) before the push arrives.
                seen = []
                while (frame := await browser.json()) != {"after": "failover"}:
                    seen.append(frame)
                assert seen and all(frame["type"] == "resync" for frame in seen), seen
            for browser in browsers:
                await browser.close()
        push.close()


def test_web_app_sessions_through_sentinel(sentinel: SentinelSetup, tmp_path: Path) -> None:
    """The web app with REDIS_URL=redis+sentinel://... keeps its sessions on the master the sentinel names."""
    from tests.web_app.live import make_app

    app = make_app(tmp_path / "instance", None, REDIS_URL=sentinel.url)
    client = app.test_client()
    page = client.get("/register")
    token = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    answer = client.post(
        "/register",
        json={"name": "sentinel-user", "password": "correct horse battery"},
        headers={"X-CSRFToken": token, "Accept": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert redis.Redis(port=sentinel.master_port).keys("webchat:session:*")
    assert client.get("/", headers={"Accept": "application/json"}).status_code == 200  # still logged in
