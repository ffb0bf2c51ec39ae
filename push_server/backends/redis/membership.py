"""This node's membership of the cluster: connection, lease, reaping, write-back and the whole-cluster gate.

One supervisor task per node keeps it in the cluster:

- **Connection.** It connects (subscribing to its own channel and ``P all``),
  joins (:meth:`Membership._join`: the epoch, the lease) and, if Redis drops,
  reconnects with capped, jittered backoff. Meanwhile operations that need
  Redis raise :class:`BackendUnavailable`.
- **Lease and reaping.** It renews ``lease:N`` every third of the node timeout
  and sweeps for expired leases (:mod:`.reaping`).
- **Write-back.** On every (re)connection it writes the node's clients back
  (:mod:`.resync`); after Redis lost its state no node answers until every
  node that held clients has done so (``waiting``). Pages get ``resync``
  frames when the node loses Redis and when it answers again. A node that
  refused pushes meanwhile asks every node, once it serves again, to send
  ``"redis_restored"`` too (an ``r`` note): those pushes reached no other page.

Where the node stands is one value, :class:`~.gate.State` (in :mod:`.gate`,
with the commands each state lets through), moved forward by these steps
only and back to ``DOWN`` whenever the connection ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ...config import Config
from ...websocket import frames
from ..base import Backend, BackendUnavailable
from ..local import LocalState
from . import format, reaping, resync
from .gate import Gate, State
from .transport import Transport, close_pubsub, safe_url

if TYPE_CHECKING:
    from .claims import RedisClaims

log = logging.getLogger(__name__)

#: Reconnection backoff: doubles from the first value up to the cap, with jitter.
BACKOFF_FIRST = 0.05
BACKOFF_CAP = 2.0
#: How often a node that waits for the cluster to be whole again reads the
#: waiting set (entries lapse by deadline; being emptied is announced at once).
GATE_POLL = 0.2

#: The frames this node sends its own clients when pushes may have been lost
#: (Redis gone) and when it is whole again: the page then catches up.
RESYNC_LOST = frames.encode_json({"type": "resync", "reason": "redis_lost"})
RESYNC_RESTORED = frames.encode_json({"type": "resync", "reason": "redis_restored"})


class Membership:
    """The supervisor of this node's place in the cluster; see the module docstring."""

    def __init__(
        self,
        config: Config,
        node_id: str,
        transport: Transport,
        mirror: LocalState,
        host: Backend,
        claims: RedisClaims,
        handlers: dict[str, format.Handler],
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.transport = transport
        self.mirror = mirror
        #: The backend: its ``connections`` (for resync frames) and ``events`` (for reapings).
        self.host = host
        self.claims = claims
        #: When this node started (unix seconds): ``get_nodes`` answers it.
        self.started = time.time()
        #: Where the node stands (one State), and which commands may run now.
        self.gate = Gate(transport, config.node_timeout)
        #: The other nodes that held clients when last seen: the ones to wait
        #: for if this node is the first back to a Redis that lost everything.
        self.known: list[str] = []
        self._gate_changed = asyncio.Event()
        #: True from a lost connection until the clients are told it is restored.
        self._owe_restored = False
        #: True once this node refused a push since it last served (the backend sets
        #: it): the pages of other nodes, which may have caught up already, must hear of it.
        self.refused = False
        self.ready = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        #: Reapings of dead nodes, cancelled at stop.
        self.tasks: set[asyncio.Task[Any]] = set()
        self._backoff = BACKOFF_FIRST
        self._down_logged = False
        self.resync_lock = asyncio.Lock()
        #: Every message read hands it to its kind's handler: the backend's ones and this module's.
        self.dispatch = format.dispatcher({**handlers, **self._handlers()})

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        # Retire while the supervisor still holds the connection: the lease
        # goes now rather than expiring, and no one needs to reap this node.
        if self.gate.linked:
            try:
                await self.gate.internal("retire", self.node_id)
            except BackendUnavailable:
                log.warning("could not retire node %s; the others will reap it", self.node_id)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work (a reaping) until it ends or the backend stops."""
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the supervisor ---------------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            try:
                await self._serve()
            except (RedisError, OSError, BackendUnavailable) as exc:
                if not self._down_logged:
                    self._down_logged = True
                    log.warning(
                        "Redis unreachable (%s: %s); local delivery goes on, reconnecting", type(exc).__name__, exc
                    )
            except Exception:
                # A bug must not end the supervision for good: log it and reconnect.
                log.exception("cluster connection failed")
            if not self._owe_restored:
                # Pushes made on other nodes cannot reach this node's clients
                # until it is back: tell them, so pages catch up (and again,
                # with "redis_restored", once the cluster is whole).
                self._owe_restored = True
                self.host.connections.send_all(RESYNC_LOST)
            # Jitter, so nodes that lost Redis together do not come back in lockstep.
            await asyncio.sleep(self._backoff * (0.5 + random.random() / 2))
            self._backoff = min(self._backoff * 2, BACKOFF_CAP)

    async def _serve(self) -> None:
        """Connect, subscribe and keep the lease; write state back; then listen until Redis fails."""
        prefix = self.config.redis_prefix
        channels = format.node_channel(prefix, self.node_id).encode(), format.all_channel(prefix).encode()
        pubsub = await self.transport.fresh_pubsub(*channels)
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        try:
            lost = await self._join()
            self.transport.stale.clear()
            self.gate.state = State.SYNCING
            # The lease is kept and messages are read while the state is written
            # back: a big node's write-back may take longer than its lease.
            tasks = {
                loop.create_task(reaping.keep_lease(self)),
                loop.create_task(self._listen(pubsub)),
                loop.create_task(self._watch_gate()),
                loop.create_task(self._watch_epoch()),
            }
            syncing = loop.create_task(self._write_back(lost))
            tasks.add(syncing)
            while True:
                # Whichever fails first (the lease, the listener, the gate) ends this connection.
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if syncing in done:
                    tasks.discard(syncing)
                    done.discard(syncing)
                    syncing.result()
                for task in done:
                    task.result()
                if done:
                    raise BackendUnavailable("connection ended")
        finally:
            self.gate.state = State.DOWN
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            await close_pubsub(pubsub)

    async def _join(self) -> bool:
        """Take the lease on (re)connection; True if this node's Redis state was lost (Redis emptied, or reaped).

        If Redis lost everything and this node is the first back, the nodes it
        last saw holding clients become ``waiting``: the cluster answers 503
        until each has written its clients back or let its deadline lapse.
        """
        ttl_ms = str(int(self.config.node_timeout * 1000))
        pipe = self.transport.pipe
        holds = "1" if self.mirror.clients else "0"
        epoch, lost, holders = await self.transport.script_now(
            "join", self.node_id, ttl_ms, pipe.epoch, secrets.token_urlsafe(9), holds, *self.known
        )
        if pipe.epoch and format.text(epoch) != pipe.epoch:
            log.warning("Redis lost the cluster's state (new epoch); writing this node's clients back")
        pipe.epoch = format.text(epoch)
        self.remember(holders)
        return bool(lost)

    def remember(self, holders: Iterable[bytes | str]) -> None:
        """The nodes holding clients, as the script last named them (this one aside)."""
        self.known = [node for node in dict.fromkeys(format.texts(holders)) if node != self.node_id]

    async def _write_back(self, lost: bool) -> None:
        """Write this node's state back, then clear this node from ``waiting``."""
        await resync.resync(self)
        waiting = format.texts(await self.gate.internal("synced", self.node_id))
        self.gate.waiting = waiting
        if lost and self.mirror.clients:
            log.info("node %s: clients written back after Redis lost them", self.node_id)
        if waiting:
            log.warning(
                "the cluster waits for node(s) %s to write their clients back; answering 503 meanwhile",
                ", ".join(waiting),
            )
            self.gate.state = State.WAITING
            self._gate_changed.set()
        else:
            self._became_up()

    async def _watch_gate(self) -> None:
        """While the cluster is not whole, re-read ``waiting`` until it is empty (or told it may be)."""
        while True:
            if self.gate.state is State.WAITING:
                waiting = format.texts(await self.gate.internal("gate"))
                self.gate.waiting = waiting
                if not waiting:
                    self._became_up()
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._gate_changed.wait(), GATE_POLL)
            else:
                await self._gate_changed.wait()
            self._gate_changed.clear()

    async def _watch_epoch(self) -> None:
        await self.transport.stale.wait()
        log.warning("Redis lost the cluster's state; reconnecting to write this node's clients back")
        raise BackendUnavailable("Redis is in another epoch")

    def _became_up(self) -> None:
        """The node serves again: say so in the log and to its clients if they were told it was lost."""
        self.gate.state = State.UP
        self._backoff = BACKOFF_FIRST
        self._down_logged = False
        self.ready.set()
        log.info(
            "node %s is in the cluster at %s (prefix %r)",
            self.node_id,
            safe_url(self.config.redis_url),
            self.config.redis_prefix,
        )
        if self._owe_restored:
            self._owe_restored = False
            self.host.connections.send_all(RESYNC_RESTORED)
        if self.refused:
            # Pushes this node refused reached no other node's pages, and those
            # nodes may have told their pages "restored" before (or never lost
            # Redis at all): ask every node to tell its pages now, after them.
            self.refused = False
            self.spawn(self._announce_refused())

    async def _announce_refused(self) -> None:
        channel = format.all_channel(self.config.redis_prefix)
        try:
            await self.gate.internal_command("PUBLISH", channel, format.encode(format.REFUSED, [self.node_id]))
        except (BackendUnavailable, RedisError, OSError):
            self.refused = True  # told at the next return instead

    async def _listen(self, pubsub: Any) -> None:
        read = pubsub.parse_response
        dispatch = self.dispatch
        while True:
            response = await read(block=True)
            # Anything but a message (subscribe confirmations) is skipped.
            if type(response) is list and response[0] == b"message":
                dispatch(response[2])

    # -- the membership notes (format.py: W, w, H, R) ------------------------------------------

    def _handlers(self) -> dict[str, format.Handler]:
        """This module's share of the message kinds."""
        return {
            format.NOT_WHOLE: self._on_not_whole,
            format.MAYBE_WHOLE: lambda h, p: self._gate_changed.set(),
            format.HOLDER: self._on_holder,
            format.RETIRED: self._on_retired,
            format.REFUSED: self._on_refused,
        }

    def _on_not_whole(self, _header: Any, _payload: bytes) -> None:
        """A node found its state lost and is writing it back: answer 503 until it has.

        Pushes refused meanwhile (here or on any node) reach nobody, and a page
        hears of a stored message only from the next one in its conversation;
        so this node owes its clients "redis_restored" too, once whole again.
        """
        if self.gate.state is State.UP:
            log.warning("a node is writing its clients back; answering 503 until the cluster is whole")
            self.gate.state = State.WAITING
        self._owe_restored = True
        self._gate_changed.set()

    def _on_refused(self, header: Any, _payload: bytes) -> None:
        """Another node refused pushes while it was not serving: this node's pages catch up (now, or once it serves)."""
        if header[0] == self.node_id:
            return
        if self.gate.up:
            self.host.connections.send_all(RESYNC_RESTORED)
        else:
            self._owe_restored = True

    def _on_holder(self, header: Any, _payload: bytes) -> None:
        """A node got its first client: one to wait for if Redis loses everything."""
        node = header[0]
        if node != self.node_id and node not in self.known:
            self.known.append(node)

    def _on_retired(self, header: Any, _payload: bytes) -> None:
        """A node retired for good: never wait for it."""
        if header[0] in self.known:
            self.known.remove(header[0])
