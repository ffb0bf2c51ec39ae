"""The events of a single process: presence flags and the queue in this process's memory.

The truth it compares against is the memory backend's :class:`LocalState`.
Nothing here survives the process: with one node and no Redis there is no one
else to deliver a dead process's events (docs/events.md says so).
"""

from __future__ import annotations

import collections
import itertools
import time
from typing import Any

from ..backends.local import LocalState
from .model import Counts, EventStore, IdMaker, Pending, closed_id, encode


class MemoryEventStore(EventStore):
    """Presence as last told, and a bounded queue, in dicts and a deque."""

    def __init__(self, state: LocalState, queue_max: int, grace: float) -> None:
        self.state = state
        self.queue_max = queue_max
        self.grace = grace
        self._queue: collections.deque[Pending] = collections.deque()
        self._keys = itertools.count(1)
        self._ids = IdMaker()
        self._on: set[str] = set()
        self._occupied: set[str] = set()
        #: uid → when its offline grace ends.
        self._due: dict[str, float] = {}
        #: client → uid as last seen, so a rebind re-checks the old uid.
        self._seen_uid: dict[str, str] = {}

    def _push(self, data: bytes, counts: Counts) -> None:
        if len(self._queue) >= self.queue_max:
            counts.dropped += 1
            return
        self._queue.append(Pending(str(next(self._keys)), time.time(), data))
        counts.made += 1

    def _emit(self, kind: str, counts: Counts, **fields: Any) -> None:
        self._push(encode(self._ids(), kind, **fields), counts)

    def _touch_uid(self, uid: str, counts: Counts, settling: bool = False) -> None:
        connected = uid in self.state.uids
        if connected:
            self._due.pop(uid, None)
            if uid not in self._on:
                self._on.add(uid)
                self._emit("uid_online", counts, uid=uid)
        elif uid in self._on:
            if settling:
                self._on.discard(uid)
                self._emit("uid_offline", counts, uid=uid)
            else:
                self._due.setdefault(uid, time.monotonic() + self.grace)
        else:
            self._due.pop(uid, None)

    def _touch_group(self, group: str, counts: Counts) -> None:
        occupied = bool(self.state.groups.get(group))
        if occupied and group not in self._occupied:
            self._occupied.add(group)
            self._emit("group_occupied", counts, group=group)
        elif not occupied and group in self._occupied:
            self._occupied.discard(group)
            self._emit("group_vacated", counts, group=group)

    async def bound(self, client_id: str, hooked: str | None) -> Counts:
        counts = Counts()
        client = self.state.clients.get(client_id)
        uid = client.uid if client is not None else None
        old = self._seen_uid.pop(client_id, None)
        if uid is not None:
            self._seen_uid[client_id] = uid
        if old is not None and old != uid:
            self._touch_uid(old, counts)
        if hooked is not None and hooked != uid and hooked not in self._on:
            # Bound and gone again before this ran: it was online for a moment.
            self._on.add(hooked)
            self._emit("uid_online", counts, uid=hooked)
            self._touch_uid(hooked, counts)
        if uid is not None:
            self._touch_uid(uid, counts)
        return counts

    async def groups(self, groups: list[str]) -> Counts:
        counts = Counts()
        for group in groups:
            self._touch_group(group, counts)
        return counts

    async def closed(
        self, client_id: str, uid: str | None, groups: list[str], session: dict[str, Any], assume_online: bool
    ) -> Counts:
        counts = Counts()
        self._push(
            encode(closed_id(client_id), "client_closed", client_id=client_id, uid=uid, groups=groups, session=session),
            counts,
        )
        old = self._seen_uid.pop(client_id, None)
        if old is not None and old != uid:
            self._touch_uid(old, counts)
        if uid is not None:
            self._touch_uid(uid, counts)
        for group in groups:
            self._touch_group(group, counts)
        return counts

    async def append(self, events: list[bytes]) -> Counts:
        counts = Counts()
        for data in events:
            self._push(data, counts)
        return counts

    async def settle(self) -> Counts:
        counts = Counts()
        now = time.monotonic()
        for uid in [uid for uid, due in self._due.items() if due <= now]:
            del self._due[uid]
            self._touch_uid(uid, counts, settling=True)
        return counts

    async def lead(self, node: str, ttl: float) -> bool:
        return True

    async def read(self, count: int) -> list[Pending]:
        return list(itertools.islice(self._queue, count))

    async def ack(self, keys: list[str]) -> None:
        # Only the sender removes, and always from the front: what it read.
        done = set(keys)
        while self._queue and self._queue[0].key in done:
            self._queue.popleft()

    async def depth(self) -> int:
        return len(self._queue)
