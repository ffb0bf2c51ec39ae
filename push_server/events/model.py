"""What an event is on the wire, and the store interface both queues implement.

An event is one JSON object, ``{"id", "type", "time", ...}`` (SPEC §8). The
queues hold each event as its encoded JSON (``bytes``), so a batch is written
by joining them: nothing is decoded and re-encoded between the script that made
an event and the POST that delivers it.
"""

from __future__ import annotations

import abc
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

#: The event types, as SPEC §8 names them.
TYPES = ("uid_online", "uid_offline", "client_closed", "group_occupied", "group_vacated", "client_message")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class EventsUnavailable(Exception):
    """The queue's storage (Redis) cannot be reached; nothing was changed."""


class IdMaker:
    """Unique event ids: a random token per process, then a counter.

    The token's 64 random bits keep ids unique across nodes and restarts
    without any shared counter (which a Redis restart would reset).
    """

    def __init__(self) -> None:
        self._token = secrets.token_hex(8)
        self._next = 0

    def __call__(self) -> str:
        self._next += 1
        return f"{self._token}-{self._next}"

    def token(self) -> str:
        """A fresh token for ids made elsewhere (the Lua script numbers its own)."""
        return secrets.token_hex(8)


def encode(event_id: str, kind: str, **fields: Any) -> bytes:
    """One event as JSON, its id, type and time first."""
    return _dumps({"id": event_id, "type": kind, "time": round(time.time(), 3), **fields}).encode()


def closed_id(client_id: str) -> str:
    """The id of a client's ``client_closed``: the same wherever and however often it is made."""
    return "closed-" + client_id


@dataclass
class Pending:
    """One queued event: its key in the queue, when it was queued (unix s) and its JSON."""

    key: str
    queued_at: float
    data: bytes


@dataclass
class Counts:
    """What one store call did: events queued, and events refused because the queue was full."""

    made: int = 0
    dropped: int = 0


class EventStore(abc.ABC):
    """Presence as the business app was last told it, and the queue of events not yet acknowledged.

    The memory store serves a single process; the Redis store a cluster, where
    every transition is decided by one Lua script call (see :mod:`.lua`).
    """

    #: Whether a dead node's events can be picked up by another (Redis: yes).
    durable = False

    async def start(self) -> None:  # noqa: B027 (optional: the memory store has nothing to connect)
        """Connect (Redis)."""

    async def stop(self) -> None:  # noqa: B027 (optional, like start)
        """Disconnect."""

    async def run_steps(self, steps: list[tuple[str, tuple[Any, ...], bool]]) -> list[Counts]:
        """Record hook calls ``(op, args, retried)`` in order; all or (on EventsUnavailable) none count as done.

        One by one here; the Redis store sends them in one round trip. A step
        may run again after a failure: every step is safe to repeat (touches
        re-read the truth, and a repeated event carries the same id).
        """
        results: list[Counts] = []
        for op, args, retried in steps:
            if op == "bound":
                results.append(await self.bound(args[0], args[1]))
            elif op == "groups":
                results.append(await self.groups(args[0]))
            elif op == "closed":
                results.append(await self.closed(args[0], args[1], args[2], args[3], assume_online=retried))
            else:
                results.append(await self.append(args[0]))
        return results

    @abc.abstractmethod
    async def bound(self, client_id: str, uid: str | None) -> Counts:
        """A client registered or was (un)bound: uid_online / a pending uid_offline.

        ``uid`` is what the client was bound to when the hook ran: if it left
        before this runs, the uid still had a connection for a moment (online,
        then offline after the grace), not none at all.
        """

    @abc.abstractmethod
    async def groups(self, groups: list[str]) -> Counts:
        """Members joined or left these groups: group_occupied / group_vacated."""

    @abc.abstractmethod
    async def closed(
        self, client_id: str, uid: str | None, groups: list[str], session: dict[str, Any], assume_online: bool
    ) -> Counts:
        """A client departed: its client_closed, then its uid's and groups' transitions."""

    @abc.abstractmethod
    async def append(self, events: list[bytes]) -> Counts:
        """Queue events the node made itself (client_message)."""

    @abc.abstractmethod
    async def settle(self) -> Counts:
        """Run what is due: offline graces that ran out, deferred checks."""

    @abc.abstractmethod
    async def lead(self, node: str, ttl: float) -> bool:
        """Take or keep the right to send (one sender at a time keeps the queue's order)."""

    async def resign(self, node: str) -> None:  # noqa: B027 (optional: one process is always the sender)
        """Give the right to send up (shutting down)."""

    @abc.abstractmethod
    async def read(self, count: int) -> list[Pending]:
        """The oldest ``count`` events, without removing them."""

    @abc.abstractmethod
    async def ack(self, keys: list[str]) -> None:
        """Remove delivered (or given up) events from the queue."""

    @abc.abstractmethod
    async def depth(self) -> int:
        """How many events wait."""
