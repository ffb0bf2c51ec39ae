"""Events, one per node: the hooks the server calls, and the loops that record and send.

The hooks (:meth:`Events.bound`, :meth:`Events.groups`, :meth:`Events.closed`,
:meth:`Events.message`) are plain method calls that return at once: each
appends a step to a local outbox, which one task runs against the store in
order. A push never waits on events, and a step that fails because Redis is
away stays in the outbox and runs when Redis is back (bounded: see
``events_queue_max``). The reaper's hooks (:meth:`reaping`, :meth:`reaped`) are
awaited instead: the dead node's state must be read before it is removed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..backends.local import LocalState
from ..config import Config
from .model import Counts, EventStore, EventsUnavailable, IdMaker, encode
from .sender import Sender

log = logging.getLogger(__name__)

#: Seconds between two runs of what is due (offline graces) on each node: a
#: uid_offline comes at most this long after its grace.
SETTLE_EVERY = 0.5
#: Seconds between two checks that Redis still has this incarnation's state.
EPOCH_EVERY = 1.0
#: Outbox steps recorded in one round trip at most.
DRAIN_MAX = 200
#: Backoff while the store is unreachable (seconds).
RETRY_FIRST, RETRY_CAP = 0.05, 2.0


async def cancel_until_done(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again any that carry on.

    Once is not enough on Python 3.11: ``asyncio.wait_for`` returns the inner
    result and drops the cancellation when both land in the same tick (fixed in
    3.12), so a loop waiting for its wake-up event with ``wait_for`` can miss
    the one cancel and run on; the push server then hung on SIGTERM (about 4
    runs in 10 of a lobby test) until it was killed.
    """
    while not all(task.done() for task in tasks):
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=0.1)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("events: a task ended with an error while stopping", exc_info=task.exception())


@dataclass
class Step:
    """One hook call waiting for the store."""

    op: str
    args: tuple[Any, ...]
    #: Set once a try failed: the store may have lost its state meanwhile.
    retried: bool = field(default=False)


class Events:
    """A node's events: hooks in, store in the middle, sender out."""

    def __init__(self, config: Config, store: EventStore, node: str, state: LocalState) -> None:
        self.config = config
        self.store = store
        self.node = node
        self.state = state
        self.sender = Sender(config, store, node, self._counted)
        self._outbox: collections.deque[Step] = collections.deque()
        self._wake = asyncio.Event()
        self._ids = IdMaker()
        self._tasks: list[asyncio.Task[None]] = []
        self._epoch: str | None = None
        #: This node's uids and groups when Redis last confirmed the current epoch
        #: with nothing left in the outbox (after each drain, and every EPOCH_EVERY).
        self._confirmed: tuple[set[str], set[str]] = (set(), set())
        #: Events the queue refused (full) or the outbox could not hold, since start.
        self.dropped = 0
        self._dropped_logged = 0

    # -- hooks: called by the backend and the listener ---------------------------------

    def bound(self, client_id: str, uid: str | None) -> None:
        """A client registered with a uid, or was bound (``uid``) or unbound (None)."""
        self._add(Step("bound", (client_id, uid)))

    def groups(self, *groups: str) -> None:
        """Clients joined or left these groups (or they were dissolved)."""
        if groups:
            self._add(Step("groups", (list(groups),)))

    def closed(self, client_id: str, uid: str | None, groups: list[str], session: dict[str, Any] | None) -> None:
        """A client of this node departed, with what it had."""
        self._add(Step("closed", (client_id, uid, sorted(groups), session or {})))

    def message(self, client_id: str, text: str) -> None:
        """A text frame from a browser (only with PUSH_FORWARD_CLIENT_MESSAGES)."""
        if not self.config.forward_client_messages or _is_pong(text):
            return
        client = self.state.clients.get(client_id)
        uid = client.uid if client is not None else None
        event = encode(self._ids(), "client_message", client_id=client_id, uid=uid, data=text)
        self._add(Step("append", ([event],)))

    async def reaping(self, node: str) -> None:
        """Before the backend departs a dead node's clients; raises if Redis is away."""
        await self._store_call("reaping", node)

    async def reaped(self, node: str) -> None:
        """After the backend departed them."""
        await self._store_call("reaped", node)

    async def _store_call(self, op: str, node: str) -> None:
        from ..backends.base import BackendUnavailable

        method = getattr(self.store, op, None)
        if method is None:
            return
        try:
            self._counted(await method(node))
        except EventsUnavailable as exc:
            # The reaping stops and is taken over after the reconnection.
            raise BackendUnavailable(str(exc)) from exc

    def _add(self, step: Step) -> None:
        if len(self._outbox) >= self.config.events_queue_max:
            self.dropped += 1
            self._log_drops("this node's outbox is full (Redis has been unreachable)")
            return
        self._outbox.append(step)
        self._wake.set()

    # -- lifecycle -------------------------------------------------------------------

    def pending(self) -> int:
        """Events waiting: this node's outbox plus the queue as its sender last read it."""
        return len(self._outbox) + self.sender.depth

    async def start(self) -> None:
        await self.store.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._record()), loop.create_task(self.sender.run())]
        log.info("events: sending to %s", self.sender.url_for_logs)

    async def stop(self) -> None:
        """Write what the outbox holds (briefly), stop sending, disconnect."""
        with contextlib.suppress(EventsUnavailable, asyncio.TimeoutError):
            await asyncio.wait_for(self._drain(), 2.0)
        await cancel_until_done(self._tasks)
        await self.sender.finish(self.store.durable)
        with contextlib.suppress(EventsUnavailable):
            await self.store.resign(self.node)
        await self.store.stop()

    # -- recording: the outbox into the store ---------------------------------------------

    async def _record(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = RETRY_FIRST
        next_settle = next_epoch = loop.time()
        while True:
            try:
                if loop.time() >= next_epoch:
                    next_epoch = loop.time() + EPOCH_EVERY
                    await self._check_epoch()
                await self._drain()
                if loop.time() >= next_settle:
                    next_settle = loop.time() + SETTLE_EVERY
                    self._counted(await self.store.settle())
                backoff = RETRY_FIRST
            except EventsUnavailable as exc:
                for step in self._outbox:
                    step.retried = True
                log.debug("events: store unreachable (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_CAP)
                continue
            except Exception:
                log.exception("events: recording failed")
                await asyncio.sleep(RETRY_CAP)
                continue
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(next_settle, next_epoch) - loop.time()))

    async def _drain(self) -> None:
        outbox = self._outbox
        if not outbox:
            return
        while outbox:
            steps = list(itertools.islice(outbox, DRAIN_MAX))
            results = await self.store.run_steps([(step.op, step.args, step.retried) for step in steps])
            # Only now: steps that failed stay first in line.
            for counts in results:
                outbox.popleft()
                self._counted(counts)
        # Confirm at once what was just recorded: given back only once
        # confirmed, a uid bound less than EPOCH_EVERY before a Redis restart
        # would otherwise be told online a second time by the next bind.
        await self._check_epoch()

    async def _check_epoch(self) -> None:
        """Give a new Redis incarnation (first start, or restarted empty) this node's state, silently."""
        epoch_of = getattr(self.store, "epoch", None)
        if epoch_of is None:
            return
        # Taken before asking: if Redis answers with the epoch we know, this
        # state predates any restart, so it is what the app was told about.
        # Only with the outbox empty: a change still in it is not recorded
        # (not told), so it must not be given back silently.
        recorded = not self._outbox
        snapshot = (set(self.state.uids), set(self.state.groups))
        epoch = await epoch_of(self._epoch is not None)
        if epoch == self._epoch:
            if recorded:
                self._confirmed = snapshot
            return
        # A new incarnation: give it the state last confirmed under the old
        # one. What was bound after the restart is not in it, so it is told
        # about as new; what left meanwhile is checked after the grace.
        uids, groups = self._confirmed
        if await self.store.contribute(self.node, epoch, uids, groups):  # type: ignore[attr-defined]
            if self._epoch is not None:
                log.warning(
                    "events: Redis lost the events' state; this node gave back %d uid(s) and %d group(s) without events",
                    len(uids),
                    len(groups),
                )
            self._epoch = epoch

    def _counted(self, counts: Counts) -> None:
        if counts.made:
            self.sender.wake()
        if counts.dropped:
            self.dropped += counts.dropped
            self._log_drops(f"the queue is full ({self.config.events_queue_max} events waiting)")

    def _log_drops(self, why: str) -> None:
        # One line per 100 drops at most, so an overflow cannot flood the log.
        if self.dropped - self._dropped_logged >= 100 or self._dropped_logged == 0:
            log.warning("events: %d event(s) dropped since start: %s", self.dropped, why)
            self._dropped_logged = self.dropped


def _is_pong(text: str) -> bool:
    if '"pong"' not in text:
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("type") == "pong"


__all__ = ["Events"]
