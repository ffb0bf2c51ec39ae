"""The events of a cluster: transitions decided by one Lua script, the queue a Redis stream.

Every node runs the same store against the same keys (see :mod:`.lua` for
them). The stream ``P ev:q`` is shared: events wait there until the sender
that delivered them deletes them, so a node that dies (SIGKILL) loses none;
whichever node holds the sender lease next delivers them. One sender at a time
keeps the stream's order, which is what makes a uid's online/offline arrive in
the order they were decided.

The store has its own Redis connection, so events never queue behind (or in
front of) the backend's pipelined commands.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .lua import EVENTS_SCRIPT
from .model import Counts, EventStore, EventsUnavailable, IdMaker, Pending

log = logging.getLogger(__name__)

#: A command with no answer within this long counts as failed (as the backend's).
COMMAND_TIMEOUT = 1.0

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class RedisEventStore(EventStore):
    """Presence as last told, in Redis, and the stream of events not yet acknowledged."""

    durable = True

    def __init__(self, url: str, prefix: str, queue_max: int, grace: float, window: float) -> None:
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._sha = hashlib.sha1(EVENTS_SCRIPT.encode()).hexdigest()
        self._common = [str(queue_max), repr(grace), repr(window)]
        self._ids = IdMaker()
        self._queue = prefix + "ev:q"

    async def stop(self) -> None:
        await self._redis.aclose()

    async def _run(self, op: str, *args: str) -> Any:
        argv = [op, self.prefix, self._ids.token(), *self._common, *args]
        try:
            try:
                return await self._redis.evalsha(self._sha, 0, *argv)
            except NoScriptError:
                # First use on this Redis, or Redis restarted and lost it.
                await self._redis.script_load(EVENTS_SCRIPT)
                return await self._redis.evalsha(self._sha, 0, *argv)
        except (RedisError, OSError) as exc:
            raise EventsUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc

    async def _counted(self, op: str, *args: str) -> Counts:
        made, dropped = await self._run(op, *args)
        return Counts(int(made), int(dropped))

    async def run_steps(self, steps: list[tuple[str, tuple[Any, ...], bool]]) -> list[Counts]:
        # One pipeline: a burst of arrivals costs one round trip, not one each
        # (measured: about a quarter of the CPU per event under churn).
        argvs = [self._step_argv(op, args, retried) for op, args, retried in steps]
        for attempt in (1, 2):
            try:
                pipe = self._redis.pipeline(transaction=False)
                for argv in argvs:
                    pipe.evalsha(self._sha, 0, *argv)
                replies = await pipe.execute(raise_on_error=False)
            except (RedisError, OSError) as exc:
                raise EventsUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc
            if attempt == 1 and any(isinstance(reply, NoScriptError) for reply in replies):
                # Redis lost the script (restarted): load it and run them all
                # again (a NOSCRIPT reply did nothing; the others are safe to repeat).
                try:
                    await self._redis.script_load(EVENTS_SCRIPT)
                except (RedisError, OSError) as exc:
                    raise EventsUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc
                continue
            break
        counts: list[Counts] = []
        for argv, reply in zip(argvs, replies, strict=True):
            if isinstance(reply, (RedisConnectionError, RedisTimeoutError, OSError)):
                raise EventsUnavailable(f"Redis: {type(reply).__name__}: {reply}")
            if isinstance(reply, Exception):
                # The script refused this step (a bug, not an outage): retrying
                # it would hold every later event back forever. Say so, skip it.
                log.error("events: step %s failed in Redis: %s", argv[0], reply)
                counts.append(Counts())
            else:
                counts.append(Counts(int(reply[0]), int(reply[1])))
        return counts

    def _step_argv(self, op: str, args: tuple[Any, ...], retried: bool) -> list[str]:
        common = [self.prefix, self._ids.token(), *self._common]
        if op == "bound":
            return ["bound", *common, args[0], args[1] or ""]
        if op == "groups":
            return ["group", *common, *args[0]]
        if op == "closed":
            client_id, uid, groups, session = args
            return [
                "closed",
                *common,
                client_id,
                uid or "",
                _dumps(groups),
                _dumps(session),
                "1" if retried else "0",
                *groups,
            ]
        return ["append", *common, *[event.decode() for event in args[0]]]

    async def bound(self, client_id: str, uid: str | None) -> Counts:
        return await self._counted("bound", client_id, uid or "")

    async def groups(self, groups: list[str]) -> Counts:
        return await self._counted("group", *groups)

    async def closed(
        self, client_id: str, uid: str | None, groups: list[str], session: dict[str, Any], assume_online: bool
    ) -> Counts:
        return await self._counted(
            "closed", client_id, uid or "", _dumps(groups), _dumps(session), "1" if assume_online else "0", *groups
        )

    async def reaping(self, node: str) -> Counts:
        """Before a dead node's clients are departed: queue their client_closed."""
        return await self._counted("reaping", node)

    async def reaped(self, node: str) -> Counts:
        """After: their uids' (graced) offline and their groups' vacated."""
        return await self._counted("reaped", node)

    async def append(self, events: list[bytes]) -> Counts:
        return await self._counted("append", *[event.decode() for event in events])

    async def settle(self) -> Counts:
        return await self._counted("settle")

    async def epoch(self, known: bool) -> str:
        """This Redis incarnation's id (made when Redis has none: first start, or restarted empty).

        ``known``: this node saw an earlier incarnation, so Redis lost its state.
        """
        value = await self._run("epoch", "1" if known else "0")
        return value.decode() if isinstance(value, bytes) else str(value)

    async def contribute(self, node: str, epoch: str, uids: set[str], groups: set[str]) -> bool:
        """Tell a new incarnation what this node's clients hold, without events; False if the epoch changed."""
        members = [f"u:{uid}" for uid in uids] + [f"g:{group}" for group in groups]
        return bool(await self._run("contribute", node, epoch, *members))

    async def lead(self, node: str, ttl: float) -> bool:
        return bool(await self._run("lead", node, str(max(1, int(ttl * 1000)))))

    async def resign(self, node: str) -> None:
        await self._run("resign", node)

    async def read(self, count: int) -> list[Pending]:
        try:
            entries: list[Any] = await self._redis.xrange(self._queue, count=count) or []
        except (RedisError, OSError) as exc:
            raise EventsUnavailable(f"Redis: {type(exc).__name__}") from exc
        pending: list[Pending] = []
        for raw_key, fields in entries:
            key = raw_key.decode()
            # A stream id starts with the milliseconds at which it was added.
            pending.append(Pending(key, int(key.partition("-")[0]) / 1000, bytes(fields[b"e"])))
        return pending

    async def ack(self, keys: list[str]) -> None:
        try:
            await self._redis.xdel(self._queue, *keys)
        except (RedisError, OSError) as exc:
            raise EventsUnavailable(f"Redis: {type(exc).__name__}") from exc

    async def depth(self) -> int:
        try:
            return int(await self._redis.xlen(self._queue))
        except (RedisError, OSError) as exc:
            raise EventsUnavailable(f"Redis: {type(exc).__name__}") from exc
