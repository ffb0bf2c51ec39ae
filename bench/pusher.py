"""The pushing side: a separate process that pushes as a business app would.

For webchat it calls the internal API with push_client (each call acknowledged
by the server). For python-socketio it emits through
``socketio.RedisManager(write_only=True)``, which is what Flask-SocketIO's
``emit`` does in an app configured with a ``message_queue``: the call returns
once Redis took the message, and the server delivers it.

Every message is made by :func:`bench.loadgen.make_message` just before its
push call, so the send time it carries is the moment the app pushed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

from bench.loadgen import make_message

__all__ = ["Pusher"]


def _calls_for(seconds: float, call: Callable[[], Any]) -> dict[str, Any]:
    """Make ``call`` one after the other for ``seconds``; how many, in how long."""
    count = 0
    start, cpu = time.monotonic(), time.process_time()
    end = start + seconds
    while time.monotonic() < end:
        call()
        count += 1
    return {"calls": count, "seconds": time.monotonic() - start, "cpu_seconds": time.process_time() - cpu}


class _WebchatSide:
    def __init__(self, api_url: str, secret: str) -> None:
        from push_client import PushClient

        self.client = PushClient(api_url, secret=secret, timeout=30)

    def push(self, target: str | None, messages: list[str]) -> None:
        if len(messages) == 1:
            if target is None:
                self.client.send_to_all(messages[0])
            else:
                self.client.send_to_group(target, messages[0])
            return
        # Several messages in one request: the server has them all pending for
        # each recipient at once, which is what lets it write them in one syscall.
        with self.client.batch() as batch:
            for message in messages:
                if target is None:
                    batch.send_to_all(message)
                else:
                    batch.send_to_group(target, message)

    def calls(self, seconds: float, client_id: str) -> dict[str, Any]:
        message = "x" * 100
        return _calls_for(seconds, lambda: self.client.send_to_client(client_id, message))

    def async_calls(self, seconds: float, client_id: str, in_flight: int) -> dict[str, Any]:
        """AsyncPushClient from one event loop, ``in_flight`` calls at a time (each task calls back to back)."""
        import asyncio

        from push_client import AsyncPushClient

        message = "x" * 100

        async def run() -> dict[str, Any]:
            async with AsyncPushClient(
                self.client.api_url, secret=self.client._secret, timeout=30, limit=in_flight
            ) as push:
                await push.send_to_client(client_id, message)  # the session and a first connection
                count = 0
                start, cpu = time.monotonic(), time.process_time()
                end = start + seconds

                async def worker() -> None:
                    nonlocal count
                    while time.monotonic() < end:
                        await push.send_to_client(client_id, message)
                        count += 1

                await asyncio.gather(*(worker() for _ in range(in_flight)))
                return {
                    "calls": count,
                    "seconds": time.monotonic() - start,
                    "in_flight": in_flight,
                    "cpu_seconds": time.process_time() - cpu,
                }

        return asyncio.run(run())

    def batched(self, seconds: float, client_ids: list[str], size: int) -> dict[str, Any]:
        # What web_app's /bind does for a browser, many browsers per request:
        # bind a uid, join a group, set the session.
        ops = 0
        start = time.monotonic()
        end = start + seconds
        round_ = 0
        while time.monotonic() < end:
            with self.client.batch() as batch:
                for i in range(size):
                    client_id = client_ids[(round_ * size + i) % len(client_ids)]
                    kind = i % 3
                    if kind == 0:
                        batch.bind_uid(client_id, f"u{i}")
                    elif kind == 1:
                        batch.join_group(client_id, f"bench-batch-{i % 7}")
                    else:
                        batch.set_session(client_id, {"name": f"user {i}", "room": i % 7})
            ops += size
            round_ += 1
        return {"ops": ops, "seconds": time.monotonic() - start}


class _SocketioSide:
    def __init__(self, redis_url: str) -> None:
        import socketio

        self.manager = socketio.RedisManager(redis_url, write_only=True)

    def push(self, target: str | None, messages: list[str]) -> None:
        for message in messages:
            self.manager.emit("m", message, namespace="/", room=target)

    def calls(self, seconds: float, client_id: str) -> dict[str, Any]:
        message = "x" * 100
        return _calls_for(seconds, lambda: self.manager.emit("m", message, namespace="/", room=client_id))


def _pusher_main(pipe: Any, system: str, options: dict[str, Any]) -> None:
    side: Any = (
        _WebchatSide(options["api_url"], options["secret"])
        if system == "webchat"
        else _SocketioSide(options["redis_url"])
    )
    seq = 0
    while True:
        cmd = pipe.recv()
        name = cmd[0]
        try:
            if name == "burst":
                _, target, count, per_call, size = cmd
                first = seq + 1
                start = time.monotonic()
                for _ in range(count // per_call):
                    batch = []
                    for _ in range(per_call):
                        seq += 1
                        batch.append(make_message(seq, size))
                    side.push(target, batch)
                pipe.send({"start": start, "end": time.monotonic(), "first": first, "last": seq})
            elif name == "paced":
                _, target, count, interval, size = cmd
                first = seq + 1
                start = time.monotonic()
                call_times = []
                for k in range(count):
                    delay = start + k * interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    seq += 1
                    began = time.monotonic()
                    side.push(target, [make_message(seq, size)])
                    call_times.append(time.monotonic() - began)
                pipe.send(
                    {"start": start, "end": time.monotonic(), "first": first, "last": seq, "call_times": call_times}
                )
            elif name == "calls":
                pipe.send(side.calls(cmd[1], cmd[2]))
            elif name == "async_calls":
                pipe.send(side.async_calls(cmd[1], cmd[2], cmd[3]))
            elif name == "batched":
                pipe.send(side.batched(cmd[1], cmd[2], cmd[3]))
            elif name == "quit":
                return
        except Exception as exc:  # the driver reports it; the pusher stays usable
            pipe.send({"error": f"{type(exc).__name__}: {exc}"})


class Pusher:
    """A pushing process for one system, driven over a pipe."""

    def __init__(self, system: str, **options: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipe, theirs = ctx.Pipe()
        self._proc = ctx.Process(target=_pusher_main, args=(theirs, system, options), daemon=True)
        self._proc.start()

    @property
    def pid(self) -> int:
        """The pushing process's id."""
        assert self._proc.pid is not None
        return self._proc.pid

    def _ask(self, cmd: tuple[Any, ...], timeout: float) -> dict[str, Any]:
        self._pipe.send(cmd)
        if not self._pipe.poll(timeout):
            raise TimeoutError(f"pusher did not finish {cmd[0]!r} within {timeout:.0f}s")
        answer: dict[str, Any] = self._pipe.recv()
        if "error" in answer:
            raise RuntimeError(f"pusher {cmd[0]} failed: {answer['error']}")
        return answer

    def burst(self, target: str | None, count: int, per_call: int = 1, size: int = 100) -> dict[str, Any]:
        """Push ``count`` messages back to back (``per_call`` per API call)."""
        return self._ask(("burst", target, count, per_call, size), 600)

    def paced(self, target: str | None, count: int, interval: float, size: int = 100) -> dict[str, Any]:
        """Push ``count`` messages, one every ``interval`` seconds."""
        return self._ask(("paced", target, count, interval, size), 60 + count * interval * 3)

    def calls(self, seconds: float, client_id: str) -> dict[str, Any]:
        """Unbatched calls (one thread, one at a time) for ``seconds``."""
        return self._ask(("calls", seconds, client_id), seconds + 60)

    def async_calls(self, seconds: float, client_id: str, in_flight: int = 32) -> dict[str, Any]:
        """AsyncPushClient calls from one event loop, ``in_flight`` at a time, for ``seconds`` (webchat only)."""
        return self._ask(("async_calls", seconds, client_id, in_flight), seconds + 60)

    def batched(self, seconds: float, client_ids: list[str], size: int) -> dict[str, Any]:
        """Batches of ``size`` operations for ``seconds``."""
        return self._ask(("batched", seconds, client_ids, size), seconds + 60)

    def stop(self) -> None:
        """Stop the process."""
        with contextlib.suppress(OSError):
            self._pipe.send(("quit",))
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
