"""``python -m bench.events``: what events cost (issue 13's benchmark).

    python -m bench.events            # 1,000 clients of churn; 500 members x 1,000 pushes
    python -m bench.events --quick    # 500 clients; 200 members x 500 pushes (under a minute)

Two measurements, each with events off and on in the same run against the same
private redis-server (a cluster node, the path that decides presence in Redis):

- **Churn:** N clients connect, are bound to N distinct uids (one API batch) and
  close. With events on, that is 3N events (``uid_online``, ``client_closed``,
  ``uid_offline`` after a 0.2 s grace); the figure is events acknowledged per
  second by a receiver in this process (it checks every signature), from the
  first connect to the last event acknowledged, and the push server's extra
  CPU per event (its CPU for the churn with events on, minus off, divided by 3N).
- **Fan-out:** M members of one group, K group pushes; the push server's CPU
  per delivered frame (µs), events off and on: the fan-out path must not
  notice events.

Writes ``bench/results/events.json`` (``events-quick.json`` with --quick) and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import push_protocol
from push_client import PushClient

from .systems import ROOT, Proc, start_push_server, start_redis

SECRET = "bench-events-secret-0123456789abcdef"
GRACE = 0.2
IDLE_SECONDS = 5.0


class Receiver:
    """The app's endpoint: verifies each request, counts distinct event ids."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.bad = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/events", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if push_protocol.verify_request(SECRET, "POST", request.path, request.headers, body):
            self.bad += 1
            return web.Response(status=401)
        self.ids.update(event["id"] for event in json.loads(body)["events"])
        return web.Response(status=204)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _connect(
    session: aiohttp.ClientSession, port: int, count: int
) -> list[tuple[aiohttp.ClientWebSocketResponse, str]]:
    limit = asyncio.Semaphore(100)

    async def one() -> tuple[aiohttp.ClientWebSocketResponse, str]:
        async with limit:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/ws")
            init = json.loads((await ws.receive(timeout=30)).data)
            return ws, init["client_id"]

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _batch(api_port: int, calls: list[tuple[str, tuple[Any, ...]]]) -> None:
    with PushClient(f"http://127.0.0.1:{api_port}", secret=SECRET, timeout=60) as push:
        for start in range(0, len(calls), 2000):
            with push.batch() as batch:
                for method, args in calls[start : start + 2000]:
                    getattr(batch, method)(*args)


async def churn(proc: Proc, ws_port: int, api_port: int, clients: int, receiver: Receiver | None) -> dict[str, Any]:
    """Connect, bind, close ``clients``; with a receiver, wait for their 3 events each."""
    before = set(receiver.ids) if receiver else set()
    cpu = proc.cpu()
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        opened = await _connect(session, ws_port, clients)
        tag = f"{started:.0f}-{id(opened)}"
        await asyncio.to_thread(
            _batch, api_port, [("bind_uid", (cid, f"u{tag}-{n}")) for n, (_, cid) in enumerate(opened)]
        )
        await asyncio.gather(*(ws.close() for ws, _ in opened))
    expected = 3 * clients
    if receiver is not None:
        deadline = time.monotonic() + 120
        while len(receiver.ids - before) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(receiver.ids - before)} of {expected} events arrived")
            await asyncio.sleep(0.01)
    else:
        await asyncio.sleep(GRACE + 0.5)  # the same settling time as with events, for a fair CPU figure
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {
        "clients": clients,
        "seconds": round(elapsed, 3),
        "server_cpu_s": round(proc.cpu() - cpu, 3),
    }
    if receiver is not None:
        result["events"] = expected
        result["events_per_s"] = round(expected / elapsed)
    return result


async def fan_out(proc: Proc, ws_port: int, api_port: int, members: int, pushes: int) -> dict[str, Any]:
    """``pushes`` group pushes to ``members``: server CPU µs per delivered frame."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        opened = await _connect(session, ws_port, members)
        await asyncio.to_thread(_batch, api_port, [("join_group", (cid, "bench")) for _, cid in opened])
        # Let the joins' own events (group_occupied) settle: only the pushes are measured.
        await asyncio.sleep(1.0)
        expected = members * pushes
        received = 0

        async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal received
            got = 0
            while got < pushes:
                message = await ws.receive(timeout=60)
                if message.type == aiohttp.WSMsgType.TEXT and '"n"' in message.data:
                    got += 1
            received += got

        readers = [asyncio.create_task(read(ws)) for ws, _ in opened]
        cpu = proc.cpu()
        started = time.monotonic()
        await asyncio.to_thread(_batch, api_port, [("send_to_group", ("bench", {"n": n})) for n in range(pushes)])
        await asyncio.gather(*readers)
        elapsed = time.monotonic() - started
        used = proc.cpu() - cpu
        await asyncio.gather(*(ws.close() for ws, _ in opened))
    return {
        "members": members,
        "pushes": pushes,
        "frames": received,
        "expected": expected,
        "server_cpu_us_per_frame": round(used / max(1, received) * 1e6, 2),
        "frames_per_s": round(received / elapsed),
    }


async def run(clients: int, members: int, pushes: int) -> dict[str, Any]:
    receiver = Receiver()
    await receiver.start()
    redis_proc, redis_url = start_redis()
    results: dict[str, Any] = {"clients": clients, "members": members, "pushes": pushes}
    try:
        for mode in ("off", "on"):
            extra = ["--log-level", "WARNING"]
            if mode == "on":
                extra += ["--events-url", f"http://127.0.0.1:{receiver.port}/events", "--offline-grace", str(GRACE)]
            proc, ws_port, api_port = start_push_server(SECRET, f"events-{mode}", redis_url, extra)
            try:
                _log(f"events {mode}: churn of {clients} clients")
                churned = await churn(proc, ws_port, api_port, clients, receiver if mode == "on" else None)
                _log(f"events {mode}: fan-out, {members} members x {pushes} pushes")
                fanned = await fan_out(proc, ws_port, api_port, members, pushes)
                # What the node costs doing nothing (events' background ticks included).
                cpu = proc.cpu()
                await asyncio.sleep(IDLE_SECONDS)
                idle = round((proc.cpu() - cpu) / IDLE_SECONDS * 100, 2)
                results[mode] = {"churn": churned, "fan_out": fanned, "idle_cpu_percent": idle}
            finally:
                proc.stop()
    finally:
        redis_proc.stop()
        await receiver.stop()
    off, on = results["off"], results["on"]
    results["extra_cpu_us_per_event"] = round(
        (on["churn"]["server_cpu_s"] - off["churn"]["server_cpu_s"]) / on["churn"]["events"] * 1e6, 1
    )
    results["bad_signatures"] = receiver.bad
    return results


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def table(results: dict[str, Any]) -> str:
    off, on = results["off"], results["on"]
    rows = [
        ("churn: events acknowledged per second", "–", f"{on['churn']['events_per_s']:,}"),
        (
            f"churn: push server CPU for {results['clients']:,} clients (s)",
            off["churn"]["server_cpu_s"],
            on["churn"]["server_cpu_s"],
        ),
        ("extra push server CPU per event (µs)", "–", results["extra_cpu_us_per_event"]),
        (
            f"fan-out to {results['members']} members: server CPU µs/frame",
            off["fan_out"]["server_cpu_us_per_frame"],
            on["fan_out"]["server_cpu_us_per_frame"],
        ),
        ("fan-out: frames per second", f"{off['fan_out']['frames_per_s']:,}", f"{on['fan_out']['frames_per_s']:,}"),
        (f"idle node CPU over {IDLE_SECONDS:.0f} s (% of a core)", off["idle_cpu_percent"], on["idle_cpu_percent"]),
    ]
    lines = ["| measurement | events off | events on |", "|---|---|---|"]
    lines += [f"| {name} | {a} | {b} |" for name, a, b in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    sizes = (500, 200, 500) if args.quick else (1000, 500, 1000)
    results = asyncio.run(run(*sizes))
    results["quick"] = args.quick
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("events-quick.json" if args.quick else "events.json")).write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    return 1 if results["bad_signatures"] else 0


if __name__ == "__main__":
    sys.exit(main())
