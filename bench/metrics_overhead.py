"""Fan-out cost per frame with metrics on (MeteredConnections) against off (Connections), in one run.

    python -m bench.metrics_overhead [--recipients 5000] [--pushes 200] [--rounds 5]

Both sides deliver to the same real ClientConnection objects through the same
send_many + flush path; the transports are sinks (they take the bytes and
drop them), so what is measured is the server's own per-frame work. Rounds
alternate between the two, so drift on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from push_server.config import Config
from push_server.metrics import MeteredConnections
from push_server.websocket.connections import Connections
from push_server.websocket.listener import ClientConnection, ListenerContext


class SinkTransport:
    """Takes writes and drops them."""

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def populate(connections: Connections, context: ListenerContext, count: int) -> list[str]:
    ids = []
    for index in range(count):
        connection = ClientConnection(context)
        connection.transport = SinkTransport()  # type: ignore[assignment]
        connection.client_id = f"n.{index}"
        connections.add(connection)
        ids.append(connection.client_id)
    return ids


async def measure(connections: Connections, ids: list[str], pushes: int) -> float:
    """µs per frame of ``pushes`` fan-outs to every id, each flushed as the loop would."""
    frame = b"\x81\x20" + b"x" * 32
    started = time.perf_counter()
    for _ in range(pushes):
        connections.send_many(ids, frame)
        connections.flush()
    elapsed = time.perf_counter() - started
    return elapsed / (pushes * len(ids)) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    context = ListenerContext(Config(secret="x" * 16), None, Connections())  # type: ignore[arg-type]
    plain, metered = Connections(), MeteredConnections()
    plain_ids = populate(plain, context, args.recipients)
    metered_ids = populate(metered, context, args.recipients)
    results: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        results["off"].append(await measure(plain, plain_ids, args.pushes))
        results["on"].append(await measure(metered, metered_ids, args.pushes))
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    print(f"fan-out to {args.recipients} recipients, {args.pushes} pushes x {args.rounds} rounds (median)")
    print(f"metrics off: {off:.3f} us/frame")
    print(f"metrics on:  {on:.3f} us/frame  ({(on - off) / off * 100:+.1f}%)")
    print(f"frames counted: {metered.frames_sent}")


if __name__ == "__main__":
    asyncio.run(main())
