"""Restarts without loss: SIGHUP replaces --workers one by one while the ports keep accepting."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from ..cluster.conftest import call, eventually
from ..cluster.test_cluster import _children
from ..servers import TIMEOUT, PushServerProcess, started_redis
from ..ws_client import Browser

CLIENTS = 12


async def test_rolling_restart_refuses_no_connection() -> None:
    """SIGHUP to `--workers 2`: new workers replace the old, handshakes keep succeeding, every client comes back."""
    with started_redis() as redis_server:
        server = PushServerProcess("--redis-url", redis_server.url, "--workers", "2", "--node-timeout", "3").start()
        try:
            assert server.process is not None
            parent = server.process.pid
            old_workers = await eventually(lambda: _two(_children(parent)), timeout=TIMEOUT * 2)
            async with aiohttp.ClientSession() as session:
                clients = [await Browser.open(session, server.ws_url) for _ in range(CLIENTS)]
                attempts: list[str] = []
                rolling = True

                async def keep_connecting() -> None:
                    # A new page every few milliseconds for the whole restart: each must get its init.
                    while rolling:
                        # Accepted means: an init frame, or (caught on a worker just
                        # as it drains) a close frame with 1001, telling the page to reconnect.
                        try:
                            ws = await session.ws_connect(server.ws_url)
                            first = await ws.receive(timeout=TIMEOUT)
                            if (first.type == aiohttp.WSMsgType.TEXT and '"init"' in first.data) or (
                                first.type == aiohttp.WSMsgType.CLOSE and first.data == 1001
                            ):
                                attempts.append("ok")
                            else:
                                attempts.append(f"unexpected {first}")
                            await ws.close()
                        except Exception as exc:  # a refusal or reset is what this test is about
                            attempts.append(f"{type(exc).__name__}: {exc}")
                        await asyncio.sleep(0.01)

                prober = asyncio.create_task(keep_connecting())
                server.process.send_signal(signal.SIGHUP)

                async def replaced() -> set[int] | None:
                    now = _workers(parent)
                    return now if len(now) == 2 and not now & old_workers else None

                new_workers = await eventually(replaced, timeout=TIMEOUT * 8)
                # Every client of the old workers was told to go (a close frame with 1001) and can come back.
                codes: list[object] = []
                for client in clients:
                    message = await client.ws.receive(timeout=TIMEOUT * 4)
                    while message.type == aiohttp.WSMsgType.TEXT:
                        message = await client.ws.receive(timeout=TIMEOUT * 4)
                    codes.append(
                        message.data if message.type == aiohttp.WSMsgType.CLOSE else (message.type, message.data)
                    )
                rolling = False
                await prober
                assert codes == [1001] * CLIENTS
                back = [await Browser.open(session, server.ws_url) for _ in range(CLIENTS)]
                assert len(attempts) > 10, attempts
                assert [a for a in attempts if a != "ok"] == []
                assert await call(server, "get_all_client_count") == CLIENTS
                assert _workers(parent) == new_workers
                for pid in new_workers:
                    # Fresh interpreters (multiprocessing's spawn), so they run the code now on disk.
                    assert b"spawn_main" in await asyncio.to_thread(Path(f"/proc/{pid}/cmdline").read_bytes)
                for browser in back:
                    await browser.close()
        finally:
            server.stop()


def _workers(parent: int) -> set[int]:
    """The parent's worker processes (spawning also starts multiprocessing's resource tracker: not a worker)."""
    workers = set()
    for pid in _children(parent):
        try:
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.add(pid)
        except OSError:
            pass  # gone meanwhile
    return workers


async def _two(pids: set[int]) -> set[int] | None:
    return pids if len(pids) == 2 else None
