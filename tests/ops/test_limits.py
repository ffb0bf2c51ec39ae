"""Connection limits (SPEC §11): a flood is refused with 503 while the API and open clients keep working."""

from __future__ import annotations

import asyncio
import base64
import os
import time

import aiohttp

from ..servers import TIMEOUT, PushServerProcess
from ..ws_client import Browser
from .conftest import metric, until

FLOOD = 200


async def handshake(port: int, source: str = "127.0.0.1") -> tuple[str, asyncio.StreamWriter | None]:
    """Open one WebSocket by hand from ``source``: ("101"/"503"/"reset", the open writer when accepted)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT * 2)
    except (ConnectionError, asyncio.IncompleteReadError):
        return "reset", None
    status = head.split(b" ", 2)[1].decode()
    if status == "101":
        return status, writer
    writer.close()
    return status, None


async def flood(port: int, count: int, source: str = "127.0.0.1") -> tuple[dict[str, int], list[asyncio.StreamWriter]]:
    """``count`` handshakes at once; the outcomes counted, and the accepted sockets (kept open)."""
    results = await asyncio.gather(*(handshake(port, source) for _ in range(count)))
    outcomes: dict[str, int] = {}
    for status, _ in results:
        outcomes[status] = outcomes.get(status, 0) + 1
    return outcomes, [writer for _, writer in results if writer is not None]


async def test_node_limit_refuses_flood_and_api_keeps_answering() -> None:
    """Past PUSH_MAX_CONNECTIONS handshakes get 503 (counted), while the API and an open client keep working."""
    with PushServerProcess("--max-connections", "30", "--max-connections-per-ip", "0") as node:
        push = node.client()
        async with aiohttp.ClientSession() as session:
            browser = await Browser.open(session, node.ws_url)
            started = time.monotonic()
            outcomes, held = await flood(node.ws_port, FLOOD)
            elapsed = time.monotonic() - started
            assert outcomes.get("101") == 29, outcomes  # the browser holds the 30th
            assert outcomes.get("503", 0) > 0, outcomes
            assert set(outcomes) <= {"101", "503", "reset"}, outcomes
            # At the limit: the API answers and the open client still gets its pushes.
            assert push.get_all_client_count() == 30
            push.send_to_client(browser.client_id, {"still": "here"})
            assert (await browser.json()) == {"still": "here"}
            assert metric(node.api_url, "push_connections_refused_total", limit="node") == FLOOD - 29
            assert metric(node.api_url, "push_handshakes_refused_total", status="503") == outcomes["503"]
            # Once some leave, new connections are accepted again.
            for writer in held[:5]:
                writer.close()
            await asyncio.sleep(0)  # let the closes go out before waiting on the server
            await until(lambda: push.get_all_client_count() <= 25, what="the closed connections counted out")
            again, more = await flood(node.ws_port, 5)
            assert again == {"101": 5}
            for writer in held[5:] + more:
                writer.close()
            await browser.close()
        push.close()
    log_lines = [line for line in node.log().splitlines() if "connection limit reached" in line]
    assert 1 <= len(log_lines) <= elapsed + 2, log_lines


async def test_per_address_limit_leaves_other_addresses_alone() -> None:
    """Past PUSH_MAX_CONNECTIONS_PER_IP one address gets 503 while another address still connects."""
    with PushServerProcess("--max-connections-per-ip", "10") as node:
        outcomes, held = await flood(node.ws_port, 40, source="127.0.0.1")
        assert outcomes == {"101": 10, "503": 30}
        other, other_held = await flood(node.ws_port, 3, source="127.0.0.2")
        assert other == {"101": 3}
        assert metric(node.api_url, "push_connections_refused_total", limit="ip") == 30
        push = node.client()
        assert push.get_all_client_count() == 13
        push.close()
        for writer in held + other_held:
            writer.close()
