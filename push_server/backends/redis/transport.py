"""The node's connection to Redis: one pipeline per event-loop tick, each checked against the cluster's epoch.

:class:`Transport` is everything the membership and the operations send
through: the client (with its short timeouts and no silent retries), the tick
pipeline, and the one Lua script (:mod:`.lua`). It knows nothing of what the
commands mean.

Commands are not sent one by one: every command issued in one event-loop tick
goes out in one pipeline (one round trip, one write), in the order issued.
Concurrent API requests, and a batch whose operations are started together,
thereby share round trips.

Each pipeline reads the cluster's ``epoch`` first, on the same connection. If
it is not the epoch this node joined, Redis lost its state (restarted empty,
flushed) and this node has not noticed yet: every command of the tick answers
:class:`BackendUnavailable` rather than an undercount, and the owner is told
(``on_stale``) so that it reconnects and writes its state back.

Whatever goes wrong while a pipeline is sent, every command of its tick gets
an answer: no request may hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

import webchat_redis

from ... import metrics
from ..base import BackendUnavailable
from .format import text
from .lua import SCRIPT

log = logging.getLogger(__name__)

Pending = list[tuple[tuple[Any, ...], "asyncio.Future[Any]"]]


class TickPipeline:
    """The commands of the current tick, sent together; see the module docstring."""

    def __init__(self, redis: aioredis.Redis, epoch_key: str, on_stale: Callable[[], None]) -> None:
        self._redis = redis
        self._epoch_key = epoch_key
        self._on_stale = on_stale
        #: The cluster epoch this node joined ('' before its first join).
        self.epoch = ""
        #: Commands issued this tick, sent together by _execute.
        self._pending: Pending = []
        #: Pipelines in flight: kept referenced until done, never cancelled (callers wait on them).
        self._inflight: set[asyncio.Task[None]] = set()

    def enqueue(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command for this tick's pipeline; its future gets the result or BackendUnavailable."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((args, future))
        if len(self._pending) == 1:
            # The task's first step runs after everything already scheduled in
            # this tick, so it finds all the commands issued meanwhile.
            task = loop.create_task(self._execute())
            # Kept referenced until done; never cancelled (its callers wait on it).
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return future

    async def _execute(self) -> None:
        batch, self._pending = self._pending, []
        try:
            epoch, results = await self._send(batch)
            if epoch == self.epoch and any(isinstance(result, NoScriptError) for result in results):
                # Redis restarted under us and lost the script: load it and
                # run again what failed (a NOSCRIPT command did nothing).
                await self._redis.script_load(SCRIPT)
                again = [
                    (item, index)
                    for index, (item, result) in enumerate(zip(batch, results, strict=False))
                    if isinstance(result, NoScriptError)
                ]
                epoch, redone = await self._send([item for item, _ in again])
                for (_, index), result in zip(again, redone, strict=False):
                    results[index] = result
            if epoch != self.epoch:
                # This Redis is not the one this node joined: it lost its state
                # (restarted empty, flushed) and this node has not noticed yet.
                # Its answers would undercount, so none is given; the
                # owner reconnects and writes the state back.
                self._on_stale()
                results = [
                    BackendUnavailable("Redis lost the cluster's state; this node is writing its clients back")
                ] * len(batch)
        except BaseException as exc:
            # Whatever went wrong (Redis, the network, a bad argument, a bug),
            # every request of this tick gets an answer: none may hang.
            metrics.REDIS_ERRORS.inc()
            if isinstance(exc, (RedisError, OSError)):
                reason = f"Redis: {type(exc).__name__}"
            else:
                if isinstance(exc, Exception):
                    log.exception("a Redis pipeline of %d command(s) failed", len(batch))
                reason = f"Redis pipeline failed: {type(exc).__name__}"
            for _, future in batch:
                if not future.done():
                    future.set_exception(BackendUnavailable(reason))
            if not isinstance(exc, Exception):
                raise
            return
        for index, (_, future) in enumerate(batch):
            if future.done():
                continue  # its caller gave up (a cancelled request)
            result = results[index] if index < len(results) else BackendUnavailable("Redis: no reply")
            if isinstance(result, BackendUnavailable):
                future.set_exception(BackendUnavailable(*result.args))
            elif isinstance(result, (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError)):
                future.set_exception(BackendUnavailable(f"Redis: {type(result).__name__}"))
            elif isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _send(self, batch: Pending) -> tuple[str, list[Any]]:
        """Send commands in one round trip; Redis's epoch and each command's result (or error).

        The epoch is read first, on the same connection: if it is this node's,
        the Redis that ran the commands is the one the node joined.
        """
        metrics.REDIS_ROUND_TRIPS.inc()
        pipe = self._redis.pipeline(transaction=False)
        pipe.execute_command("GET", self._epoch_key)
        for args, _ in batch:
            pipe.execute_command(*args)
        epoch, *results = await pipe.execute(raise_on_error=False)
        return ("" if epoch is None or isinstance(epoch, Exception) else text(epoch)), results


#: A Redis command that gets no answer within this long counts as failed: the
#: API must answer 503 within 2 s of an outage, not hang.
COMMAND_TIMEOUT = 1.0


class Transport:
    """The client, the tick pipeline and the script: how this node talks to Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.redis: aioredis.Redis = webchat_redis.async_client(  # redis:// or redis+sentinel://
            url,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            # No silent retries: an outage must surface at once as a 503, and
            # the supervisor (not each command) decides when Redis is back.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._script = self.redis.register_script(SCRIPT)
        self._script_sha = hashlib.sha1(SCRIPT.encode()).hexdigest()
        #: Set when a command finds Redis in another epoch: the membership reconnects at once.
        self.stale = asyncio.Event()
        self.pipe = TickPipeline(self.redis, prefix + "epoch", self.stale.set)

    def key(self, *parts: str) -> str:
        """A key under this cluster's prefix."""
        return self.prefix + "".join(parts)

    def enqueue(self, *args: Any) -> asyncio.Future[Any]:
        """One command in this tick's pipeline (see :class:`TickPipeline`)."""
        return self.pipe.enqueue(*args)

    def script(self, op: str, *args: str | bytes) -> asyncio.Future[Any]:
        """One operation of the script, in this tick's pipeline."""
        return self.pipe.enqueue("EVALSHA", self._script_sha, 0, op, self.prefix, *args)

    async def script_now(self, op: str, *args: str) -> Any:
        """One operation of the script on its own, outside the pipeline and its epoch check.

        For joining (the epoch is what it learns) and renewing the lease (which
        must not wait behind, or fail with, a tick of API commands).
        """
        return await guard(self._script(args=[op, self.prefix, *args]))

    async def fresh_pubsub(self, *channels: bytes) -> Any:
        """After (re)connecting: drop pooled connections, load the script, subscribe to ``channels``."""
        # Pooled connections from before an outage look idle but are dead: the
        # first commands after recovery would fail on them. Start afresh.
        await self.redis.connection_pool.disconnect()
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(*channels)
            await self.redis.script_load(SCRIPT)
        except BaseException:
            await close_pubsub(pubsub)
            raise
        return pubsub

    async def close(self) -> None:
        await self.redis.aclose()


async def close_pubsub(pubsub: Any) -> None:
    """Close a subscription, ignoring a connection already gone."""
    try:
        await pubsub.aclose()
    except Exception:
        log.debug("closing the subscription failed", exc_info=True)


async def guard(call: Awaitable[Any]) -> Any:
    """Await a direct Redis call; BackendUnavailable if Redis cannot be reached."""
    try:
        return await call
    except (RedisError, OSError) as exc:
        raise BackendUnavailable(f"Redis: {type(exc).__name__}") from exc


def safe_url(url: str | None) -> str:
    """The Redis URL without its password, for logs."""
    if not url:
        return ""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
