"""The API's own CPU per request, in one process: a batch and a single call through the real app.

    python -m bench.api_cpu [--ops 999] [--rounds 7] [--compare DIR] [--profile batch|call]

Each request goes through the aiohttp Application as the server runs it
(middlewares, routing, signature and nonce, decoding, checks, the memory
backend, the answer), without the HTTP parsing and socket writes around it
(those are aiohttp's and the kernel's, measured with real processes by
``python -m bench --items api``). The batch is what item 4 sends: compact
``bind_uid`` / ``join_group`` / ``set_session`` operations to connected
clients; the call is ``send_to_client`` of a 100-character text. CPU time is
``time.process_time``; each figure is the median of ``--rounds``.

``--compare DIR`` measures another tree's ``push_server`` (for example the
branch point, ``git archive <commit> push_server | tar -x -C DIR``) against
this one in alternating rounds, each in its own worker process, so that drift
on a shared machine hits both alike. ``--profile`` prints cProfile's top
entries for this tree instead.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import statistics
import sys
import time
from typing import Any

SECRET = "bench-secret-0123456789abcdef"
BATCH_REQUESTS = 20
CALL_REQUESTS = 2000


def _batch_body(ops: int, client_ids: list[str]) -> bytes:
    """The body push_client sends for item 4's batch of ``ops`` operations."""
    from push_client import _core

    operations: list[tuple[Any, ...]] = []
    for i in range(ops):
        client_id = client_ids[i % len(client_ids)]
        kind = i % 3
        if kind == 0:
            operations.append(("bind_uid", client_id, f"u{i}"))
        elif kind == 1:
            operations.append(("join_group", client_id, f"bench-batch-{i % 7}"))
        else:
            operations.append(("set_session", client_id, {"name": f"user {i}", "room": i % 7}))
    return _core.prepare_batch(operations, None, False).body


class _Sink:
    """A transport that takes writes and drops them."""

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Rig:
    """One app, its memory backend with ``clients`` connected sink clients, and ready-signed requests."""

    def __init__(self, clients: int) -> None:
        from push_server.app import create_app
        from push_server.backends.memory import MemoryBackend
        from push_server.config import Config
        from push_server.websocket.listener import ClientConnection, ListenerContext

        self.config = Config(secret=SECRET)
        self.backend = MemoryBackend()
        self.app = create_app(self.config, self.backend)
        from push_server.app import CONNECTIONS

        connections = self.app[CONNECTIONS]
        self.loop = asyncio.get_event_loop()
        self.client_ids: list[str] = []

        async def setup() -> None:
            await self.backend.start(connections)
            context = ListenerContext(self.config, self.backend, connections)
            for index in range(clients):
                connection = ClientConnection(context)
                connection.transport = _Sink()  # type: ignore[assignment]
                connection.client_id = f"n.{index}"
                connections.add(connection)
                await self.backend.register(connection.client_id)
                self.client_ids.append(connection.client_id)

        self.loop.run_until_complete(setup())
        self.app.freeze()

    def floor_app(self) -> Any:
        """The floor: a minimal aiohttp app answering a fixed body to any POST, nothing else."""
        from aiohttp import web

        async def fixed(request: web.Request) -> web.Response:
            return web.Response(body=b'{"result":null}', content_type="application/json")

        app = web.Application()
        app.router.add_post("/{tail:.*}", fixed)
        app.freeze()
        return app

    def requests(self, path: str, body: bytes, count: int, app: Any = None) -> list[Any]:
        from aiohttp import streams
        from aiohttp.test_utils import make_mocked_request

        import push_protocol

        made = []
        for _ in range(count):
            headers = dict(push_protocol.sign_request(SECRET, "POST", path, body))
            headers["Content-Length"] = str(len(body))
            headers["Content-Type"] = "application/json"
            protocol = _Protocol()
            reader = streams.StreamReader(protocol, 2**16, loop=self.loop)  # type: ignore[arg-type]
            reader.feed_data(body)
            reader.feed_eof()
            made.append(make_mocked_request("POST", path, headers=headers, payload=reader, app=app or self.app))
        return made

    def run(self, requests: list[Any], app: Any = None) -> float:
        """CPU seconds per request for ``requests`` handled one after the other."""

        async def handle_all() -> None:
            handle = (app or self.app)._handle
            for request in requests:
                response = await handle(request)
                if response.status != 200:
                    raise RuntimeError(f"{request.path}: {response.status} {response.body!r}")

        # Collect the garbage of making the requests (mocks hold cycles) now, not while timed.
        gc.collect()
        started = time.process_time()
        self.loop.run_until_complete(handle_all())
        return (time.process_time() - started) / len(requests)


class _Protocol:
    """What a StreamReader asks of its protocol (flow control) when nothing reads from a socket."""

    _reading_paused = False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


def _worker(tree: str | None, pipe: Any, ops: int) -> None:
    if tree:
        sys.path.insert(0, tree)
        for name in [n for n in sys.modules if n == "push_server" or n.startswith("push_server.")]:
            del sys.modules[name]
    asyncio.set_event_loop(asyncio.new_event_loop())
    import push_server

    rig = _Rig(1000)
    batch_body = _batch_body(ops, rig.client_ids)
    call_body = b'{"client_id":"n.1","message":{"text":"' + b"x" * 100 + b'"}}'
    import push_protocol

    pipe.send(push_server.__file__)
    while True:
        command = pipe.recv()
        if command == "quit":
            return
        if command == "floor":
            floor = rig.floor_app()
            path = push_protocol.operation_path("send_to_client")
            pipe.send(rig.run(rig.requests(path, call_body, CALL_REQUESTS, floor), floor))
            continue
        if command == "batch":
            requests = rig.requests(push_protocol.BATCH_PATH, batch_body, BATCH_REQUESTS)
        else:
            requests = rig.requests(push_protocol.operation_path("send_to_client"), call_body, CALL_REQUESTS)
        pipe.send(rig.run(requests))


class _Worker:
    def __init__(self, tree: str | None, ops: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, theirs = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(tree, theirs, ops), daemon=True)
        self.proc.start()
        self.where = self.pipe.recv()

    def ask(self, command: str) -> float:
        self.pipe.send(command)
        result: float = self.pipe.recv()
        return result

    def stop(self) -> None:
        self.pipe.send("quit")
        self.proc.join(10)


def _profile(what: str, ops: int) -> None:
    import cProfile
    import pstats

    asyncio.set_event_loop(asyncio.new_event_loop())
    import push_protocol

    rig = _Rig(1000)
    if what == "batch":
        requests = rig.requests(push_protocol.BATCH_PATH, _batch_body(ops, rig.client_ids), 200)
    else:
        body = b'{"client_id":"n.1","message":{"text":"' + b"x" * 100 + b'"}}'
        requests = rig.requests(push_protocol.operation_path("send_to_client"), body, 20000)
    rig.run(requests[:10])
    profiler = cProfile.Profile()
    profiler.enable()
    per = rig.run(requests[10:])
    profiler.disable()
    print(f"{what}: {per * 1e6:.1f} µs CPU per request (under the profiler)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=999, help="operations per batch")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--compare", metavar="DIR", help="another tree holding push_server/, measured alternately")
    parser.add_argument("--profile", choices=("batch", "call"))
    args = parser.parse_args()
    if args.profile:
        _profile(args.profile, args.ops)
        return
    workers = {"this": _Worker(None, args.ops)}
    if args.compare:
        workers["other"] = _Worker(args.compare, args.ops)
    for name, worker in workers.items():
        print(f"{name}: {worker.where}")
    figures: dict[tuple[str, str], list[float]] = {}
    try:
        for round_ in range(args.rounds):
            # Alternate which goes first, too.
            order = list(workers.items()) if round_ % 2 == 0 else list(reversed(workers.items()))
            for name, worker in order:
                for what in ("batch", "call"):
                    figures.setdefault((name, what), []).append(worker.ask(what))
            figures.setdefault(("floor", "call"), []).append(workers["this"].ask("floor"))
    finally:
        for worker in workers.values():
            worker.stop()
    for what, unit in (("batch", f"batch of {args.ops}"), ("call", "single call")):
        for name in [*workers, "floor"]:
            if (name, what) not in figures:
                continue
            values = figures[(name, what)]
            print(
                f"{name:>5} {unit:>14}: median {statistics.median(values) * 1e6:8.1f} µs CPU "
                f"(min {min(values) * 1e6:.1f}, max {max(values) * 1e6:.1f}, {len(values)} rounds)"
            )


if __name__ == "__main__":
    main()
