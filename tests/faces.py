"""Both faces of push_client behind one blocking interface, so one test runs against each.

``Blocking(AsyncPushClient)`` runs the async client's coroutines on an event
loop of its own thread and waits for them: the test calls it like a
PushClient, and the async client still does all its own I/O on its loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

from push_client import AsyncBatch, AsyncPushClient, PushClient

FACES = ["sync", "async"]


class Loop:
    """An event loop running in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class BlockingBatch:
    """An AsyncBatch used with ``with``: calls are queued as they are, sending waits for the loop."""

    def __init__(self, batch: AsyncBatch, loop: Loop) -> None:
        self._batch, self._loop = batch, loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def send(self) -> list[Any]:
        return self._loop.run(self._batch.send())  # type: ignore[no-any-return]

    def __enter__(self) -> BlockingBatch:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._loop.run(self._batch.__aexit__(exc_type, exc, tb))


class Blocking:
    """An AsyncPushClient called like a PushClient (each call waits for its coroutine)."""

    def __init__(self, client: AsyncPushClient, loop: Loop) -> None:
        self.client, self._loop = client, loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(method(*args, **kwargs))

        return call

    def batch(self, idempotency_key: str | None = None) -> BlockingBatch:
        return BlockingBatch(self.client.batch(idempotency_key), self._loop)

    def close(self) -> None:
        self._loop.run(self.client.close())


def clients(face: str) -> Iterator[Callable[..., Any]]:
    """A factory of clients of ``face`` (``make(api_url, secret=..., **options)``); closes them all at the end."""
    made: list[Any] = []
    loop = Loop() if face == "async" else None

    def make(api_url: str, **options: Any) -> Any:
        client: Any = (
            PushClient(api_url, **options) if loop is None else Blocking(AsyncPushClient(api_url, **options), loop)
        )
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()
        if loop is not None:
            loop.close()
