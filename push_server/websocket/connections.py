"""This node's sockets: client_id → connection, and the fast delivery path.

Nothing here is shared between nodes. A backend asks :class:`Connections` to
deliver ready frames to local client ids; this module does it without waiting
for any socket:

- a frame is queued on each recipient (no copy: the same ``bytes`` object), and
  all the connections that got something are flushed once, at the end of the
  current event-loop tick, so several messages for one client go out in one
  ``send()`` call;
- writes go straight to the transport, never awaiting a drain, so a slow reader
  cannot hold up a fan-out; its transport buffer is bounded instead (see
  ``ClientConnection.pause_writing``) and a client that passes the bound is
  dropped.

The heartbeat is one sweep over all connections, not a timer per connection:
timers would cost memory and wake-ups for every idle socket. The sweep is taken
in small slices so that its pings never all go out in one tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import frames

if TYPE_CHECKING:
    from .listener import ClientConnection

log = logging.getLogger(__name__)

#: Sent to idle connections by the heartbeat: a protocol-level ping that every
#: client answers by itself, plus ``{"type":"ping"}`` for pages that watch
#: liveness. Both go out in one write.
HEARTBEAT_FRAMES = frames.encode_frame(frames.OP_PING, b"") + frames.encode_json({"type": "ping"})


class Connections:
    """The open WebSocket connections of this node, by client id."""

    def __init__(self) -> None:
        #: Registered connections (those that have received ``init``).
        self.by_id: dict[str, ClientConnection] = {}
        #: Every accepted transport, registered or still in its handshake, so the
        #: heartbeat also reaps sockets that never finish the handshake.
        self.accepted: set[ClientConnection] = set()
        self._dirty: list[ClientConnection] = []
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Unregistrations still running (their leave signals), awaited at shutdown.
        self.departures: set[asyncio.Task[None]] = set()
        #: Set by close_all() while it waits; set when the last accepted transport goes.
        self._all_gone: asyncio.Event | None = None
        #: The heartbeat's current round (a snapshot of ``accepted``) and where it is in it.
        self._round: list[ClientConnection] = []
        self._round_next = 0

    def __len__(self) -> int:
        return len(self.by_id)

    def __contains__(self, client_id: str) -> bool:
        return client_id in self.by_id

    def client_ids(self) -> list[str]:
        """The ids of this node's registered clients."""
        return list(self.by_id)

    # -- delivery ----------------------------------------------------------------

    def send(self, client_id: str, frame: bytes) -> bool:
        """Queue ``frame`` for one client; False if it is not on this node."""
        connection = self.by_id.get(client_id)
        if connection is None:
            return False
        self.queue(connection, frame)
        return True

    def send_many(self, client_ids: Iterable[str], frame: bytes) -> int:
        """Queue ``frame`` for every listed client on this node; return how many got it."""
        # The hot loop of every fan-out: locals, no method calls per recipient,
        # and no list allocated for a client's first pending frame.
        by_id = self.by_id
        dirty = self._dirty
        was_clean = not dirty
        count = 0
        for client_id in client_ids:
            connection = by_id.get(client_id)
            if connection is None:
                continue
            pending = connection.pending
            if pending is None:
                connection.pending = frame
                dirty.append(connection)
            elif isinstance(pending, bytes):
                connection.pending = [pending, frame]
            else:
                pending.append(frame)
            count += 1
        if was_clean and dirty:
            self._schedule_flush()
        return count

    def send_all(self, frame: bytes, exclude: Iterable[str] | None = None) -> int:
        """Queue ``frame`` for every client on this node, minus ``exclude``."""
        if exclude:
            excluded = set(exclude)
            return self.send_many((cid for cid in self.by_id if cid not in excluded), frame)
        return self.send_many(list(self.by_id), frame)

    def queue(self, connection: ClientConnection, frame: bytes) -> None:
        """Queue one frame on one connection, to go out at the end of this tick."""
        pending = connection.pending
        if pending is None:
            connection.pending = frame
            if not self._dirty:
                self._schedule_flush()
            self._dirty.append(connection)
        elif isinstance(pending, bytes):
            connection.pending = [pending, frame]
        else:
            pending.append(frame)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every connection's pending frames, one write per connection."""
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            pending = connection.pending
            connection.pending = None
            if pending is None or connection.transport is None:
                continue
            # A write may call pause_writing() and drop a slow client; its
            # remaining frames are then discarded with it.
            connection.transport.write(pending if isinstance(pending, bytes) else b"".join(pending))

    # -- bookkeeping ---------------------------------------------------------------

    def add(self, connection: ClientConnection) -> None:
        """A connection finished registering; deliveries may reach it now."""
        assert connection.client_id is not None
        self.by_id[connection.client_id] = connection

    def discard(self, connection: ClientConnection) -> None:
        """A connection is gone."""
        self.accepted.discard(connection)
        if not self.accepted and self._all_gone is not None:
            self._all_gone.set()
        if connection.client_id is not None and self.by_id.get(connection.client_id) is connection:
            del self.by_id[connection.client_id]

    def track_departure(self, task: asyncio.Task[None]) -> None:
        """Keep a running unregistration until it ends, so shutdown can wait for it."""
        self.departures.add(task)
        task.add_done_callback(self.departures.discard)

    # -- heartbeat and shutdown -------------------------------------------------------

    def sweep(self, now: float, interval: float, timeout: float, handshake_timeout: float, slices: int = 1) -> int:
        """Check the next ``1/slices`` of the connections; return how many were dropped.

        A connection is silent when nothing has arrived from it for ``timeout``
        seconds (a pong counts) and is dropped; it is idle after ``interval``
        and is pinged. A connection still in its handshake after
        ``handshake_timeout`` is dropped too.

        A round over every connection is taken in ``slices`` calls, so pings
        (and the pongs they bring back) are spread over the sweep period: done
        all at once they stalled every delivery for ~200 ms at 10,000
        connections, since connections that arrived together fall idle together.
        """
        if self._round_next >= len(self._round):
            self._round = list(self.accepted)
            self._round_next = 0
        start = self._round_next
        self._round_next = start + -(-len(self._round) // max(1, slices))
        dropped = 0
        for connection in self._round[start : self._round_next]:
            if connection.transport is None:
                continue  # gone since this round began
            silent = now - connection.last_seen
            if connection.client_id is None:
                if silent > handshake_timeout:
                    connection.abort()
                    dropped += 1
            elif silent > timeout:
                connection.abort()
                dropped += 1
            elif silent >= interval:
                self.queue(connection, HEARTBEAT_FRAMES)
        if self._round_next >= len(self._round):
            self._round = []  # let go of closed connections until the next round
        return dropped

    async def close_all(self, code: int, reason: str, grace: float) -> None:
        """Close every connection with ``code`` and wait (up to ``grace``) for them to go.

        Also waits for the departures the closes start, so leave signals are
        sent before the backend stops.
        """
        self.flush()
        for connection in list(self.accepted):
            connection.close(code, reason)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        if self.accepted:
            self._all_gone = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), grace)
        for connection in list(self.accepted):
            connection.abort()
        if self.departures:
            await asyncio.wait(list(self.departures), timeout=max(0.1, deadline - loop.time()))
