"""push_server's /metrics and /healthz (SPEC §11) against real servers."""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest
import requests

from ..push.conftest import masked_frame, raw_handshake, read_frame
from ..servers import TIMEOUT, PushServerProcess, started_redis
from ..ws_client import Browser
from .conftest import metric, scrape, wait_until


@pytest.fixture
def node() -> Iterator[PushServerProcess]:
    """A memory-backend push server of the test's own."""
    with PushServerProcess() as process:
        yield process


def test_metrics_need_no_signature_and_name_spec_metrics(node: PushServerProcess) -> None:
    """/metrics answers unsigned, in Prometheus' text format, with every name SPEC §11 lists."""
    answer = requests.get(node.api_url + "/metrics", timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    names = {name for name, _ in scrape(node.api_url)}
    for name in ("push_connections", "push_frames_sent_total", "push_events_pending"):
        assert name in names, name
    # Labelled families appear with their first sample; their HELP line is there at once.
    for name in ("push_clients_dropped", "push_api_requests"):
        assert f"# HELP {name}_total" in answer.text or f"# HELP {name} " in answer.text


async def test_values_move_with_connect_push_and_refusal(node: PushServerProcess) -> None:
    """Connecting raises push_connections; one push to two clients counts two frames; a bad path counts a refusal."""
    before = scrape(node.api_url)
    push = node.client()
    async with aiohttp.ClientSession() as session:
        first = await Browser.open(session, node.ws_url)
        second = await Browser.open(session, node.ws_url)
        assert metric(node.api_url, "push_connections") == 2
        push.send_to_all({"hello": 1})
        await first.json()
        await second.json()
        after = scrape(node.api_url)
        frames = after[("push_frames_sent_total", ())] - before[("push_frames_sent_total", ())]
        assert frames == 4  # two init frames and the push to two clients
        assert after[("push_api_requests_total", (("operation", "send_to_all"), ("status", "200")))] == 1
        assert after[("push_api_request_seconds_count", (("operation", "send_to_all"),))] == 1
        assert after[("push_handshakes_total", (("outcome", "accepted"),))] == 2
        await first.close()
        wait_until(lambda: metric(node.api_url, "push_connections") == 1, what="one connection left")
        await second.close()
    sock, head = raw_handshake(node.ws_port, path="/nowhere")
    sock.close()
    assert head.startswith(b"HTTP/1.1 404")
    assert metric(node.api_url, "push_handshakes_refused_total", status="404") == 1
    push.close()


def test_unsigned_api_call_is_counted_as_401(node: PushServerProcess) -> None:
    """An unsigned API call is counted under its operation with status 401; unknown paths share one label."""
    assert requests.post(node.api_url + "/api/v1/send_to_all", data=b"{}", timeout=TIMEOUT).status_code == 401
    requests.post(node.api_url + "/random/scan/path", data=b"{}", timeout=TIMEOUT)
    samples = scrape(node.api_url)
    assert samples[("push_api_requests_total", (("operation", "send_to_all"), ("status", "401")))] == 1
    assert samples[("push_api_requests_total", (("operation", "other"), ("status", "401")))] == 1


def test_flooding_client_is_counted_as_dropped() -> None:
    """A browser sending past the frame rate limit is closed and counted under reason="flood"."""
    with PushServerProcess("--max-client-frames-per-second", "5") as node:
        # One write of ten frames: the server closes after the sixth.
        sock, head = raw_handshake(node.ws_port)
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(b"".join(masked_frame(0x1, b"x") for _ in range(10)))
        while read_frame(sock)[0] != 0x8:
            pass
        sock.close()
        wait_until(
            lambda: metric(node.api_url, "push_clients_dropped_total", reason="flood") == 1, what="flood counted"
        )


def test_healthz_follows_redis() -> None:
    """/healthz is 200 with Redis, 503 while Redis is stopped, and 200 again once it is back."""
    with started_redis() as redis_server, PushServerProcess("--redis-url", redis_server.url) as node:
        health = lambda: requests.get(node.api_url + "/healthz", timeout=TIMEOUT).status_code  # noqa: E731
        wait_until(lambda: health() == 200, what="healthy")
        redis_server.stop()
        wait_until(lambda: health() == 503, timeout=TIMEOUT * 3, what="503 while Redis is away")
        assert metric(node.api_url, "push_up") == 0
        redis_server.start()
        wait_until(lambda: health() == 200, timeout=TIMEOUT * 4, what="200 after Redis is back")
        assert metric(node.api_url, "push_redis_round_trips_total") > 0
        # A lease is renewed every third of the node timeout: wait for one.
        wait_until(
            lambda: metric(node.api_url, "push_lease_renewals_total") > 0, timeout=TIMEOUT * 3, what="a lease renewal"
        )


def test_slow_client_is_counted_as_dropped() -> None:
    """A client that never reads is dropped at PUSH_MAX_PENDING_BYTES and counted under reason="slow_consumer"."""
    with PushServerProcess("--max-pending-bytes", "65536") as node:
        push = node.client()
        stuck, head = raw_handshake(node.ws_port, rcvbuf=4096)
        assert head.startswith(b"HTTP/1.1 101")
        payload = "x" * 16_000
        sent = 0
        # 3.2 MB at most: far past the stuck client's kernel buffers and its 64 KB bound.
        while metric(node.api_url, "push_clients_dropped_total", reason="slow_consumer") == 0:
            assert sent < 200, "the stuck client was never dropped"
            push.send_to_all(payload)
            sent += 1
        assert metric(node.api_url, "push_connections") == 0
        stuck.close()
        push.close()
