"""Redis Sentinel: kill the master, the push server follows the new one and presence is whole again."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
import requests

import webchat_redis
from private_redis import redis_server_argv

from ..servers import TIMEOUT, PushServerProcess, free_port, wait_for_port
from ..ws_client import Browser
from .conftest import wait_until

SERVICE = "webchat"


class SentinelSetup:
    """A master, a replica and one sentinel (quorum 1) on free ports, all real processes."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="webchat-sentinel-"))
        self.master_port, self.replica_port, self.sentinel_port = free_port(), free_port(), free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def _redis(self, name: str, port: int, *extra: str) -> None:
        self.processes[name] = subprocess.Popen(
            redis_server_argv(port, "--dir", str(self.dir), *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, process=self.processes[name])

    def start(self) -> SentinelSetup:
        self._redis("master", self.master_port)
        self._redis("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        replica = redis.Redis(port=self.replica_port)
        wait_until(
            lambda: replica.info("replication")["master_link_status"] == "up",
            timeout=TIMEOUT * 4,
            what="replica linked",
        )
        config = self.dir / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        self.processes["sentinel"] = subprocess.Popen(
            ["redis-sentinel", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.sentinel_port, process=self.processes["sentinel"])
        sentinel = redis.Redis(port=self.sentinel_port)
        wait_until(
            lambda: len(sentinel.sentinel_slaves(SERVICE)) == 1, timeout=TIMEOUT * 4, what="sentinel knows the replica"
        )
        return self

    def master_port_now(self) -> int:
        _, port = redis.Redis(port=self.sentinel_port).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def kill(self, name: str) -> None:
        self.processes[name].kill()
        self.processes[name].wait(TIMEOUT)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def sentinel() -> Iterator[SentinelSetup]:
    """A Sentinel-managed Redis of the test's own."""
    if shutil.which("redis-sentinel") is None or shutil.which("redis-server") is None:
        pytest.skip("redis-server and redis-sentinel are not installed (test.sh installs them)")
    setup = SentinelSetup().start()
    try:
        yield setup
    finally:
        setup.stop()


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
