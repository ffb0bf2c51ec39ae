"""Many nodes, one cluster: shared state in Redis, pushes routed to the nodes that need them.

How it fits together (docs/cluster.md has the picture):

- **Indexes in Redis** answer every query for the whole cluster (who is in a
  group, which clients a uid has, ...). Every change is one Lua script
  (:mod:`.redis_lua`): atomic, one round trip.
- **Routing without lookups.** A client id starts with its node's id
  (``<node>.<random>``), so a push to a client goes straight to that node's
  channel. For groups Redis keeps, per group, how many members each node holds
  (``gn:G``), so a group push is published only to those nodes; ``send_to_all``
  is the one broadcast.
- **A mirror per node.** Each node keeps its own clients' uid, groups and
  session in memory (:class:`~.local.LocalState`) and delivers group and uid pushes from it,
  so a push crosses Redis once per node, never once per recipient. Changes made
  on another node reach the mirror as messages on the node's channel, published
  by the same script that changed Redis: a node sees a ``join_group`` before any
  push that relies on it.
- **Leases.** Each node renews ``lease:N`` (expiring after the node timeout).
  Every node sweeps; the script that finds an expired lease claims the dead
  node's clients atomically, so exactly one node reaps them, in chunks, each
  client departing once with its leave signals.
- **Outages.** While Redis is unreachable, operations that need it raise
  :class:`BackendUnavailable` at once; pushes still reach this node's own
  clients (from the mirror). The node reconnects with capped backoff and then
  writes its clients back (:meth:`RedisBackend.resync`): after a Redis restart
  that lost everything, the cluster is whole again within seconds.
- **No answer from a partial cluster.** Redis keeps an ``epoch``; a node that
  finds it gone (Redis lost everything) names, atomically, every node it last
  saw holding clients in ``waiting``. Until that set is empty (each node clears
  its own entry once its clients are written back; an entry lapses after a
  lease) every node answers 503, so no push is acknowledged that misses the
  clients of a node not back yet, and no query undercounts.
- **Pages are told.** A node that loses Redis sends its own clients
  ``{"type":"resync","reason":"redis_lost"}`` (pushes from other nodes may be
  lost meanwhile), and ``"redis_restored"`` once its state is written back and
  the cluster answers again: the page catches up without reconnecting. A node
  that refused pushes meanwhile asks every node, once it serves again, to send
  ``"redis_restored"`` too (an ``r`` note): those pushes reached no other page.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import secrets
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, Iterable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

import webchat_redis

from .. import metrics
from ..websocket import frames
from ..config import Config
from .base import Backend, BackendUnavailable, Call, NodeInfo, Session, leave_frame, new_random_id
from .local import LocalState
from .redis_lua import SCRIPT
from .redis_pipeline import TickPipeline

if TYPE_CHECKING:
    from ..delivery import Delivery

log = logging.getLogger(__name__)

#: A Redis command that gets no answer within this long counts as failed: the
#: API must answer 503 within 2 s of an outage, not hang.
COMMAND_TIMEOUT = 1.0
#: Reconnection backoff: doubles from the first value up to the cap, with jitter.
BACKOFF_FIRST = 0.05
BACKOFF_CAP = 2.0
#: How long start() waits for Redis before the node serves anyway (answering 503).
START_WAIT = 10.0
#: Clients per script call when reaping a dead node or writing state back:
#: big enough to be quick, small enough not to stall Redis for long.
CHUNK = 500
#: How often a node that waits for the cluster to be whole again reads the
#: waiting set (entries lapse by deadline; being emptied is announced at once).
GATE_POLL = 0.2

#: The frames this node sends its own clients when pushes may have been lost
#: (Redis gone) and when it is whole again: the page then catches up.
RESYNC_LOST = frames.encode_json({"type": "resync", "reason": "redis_lost"})
RESYNC_RESTORED = frames.encode_json({"type": "resync", "reason": "redis_restored"})

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def node_of(client_id: str) -> str | None:
    """The node a client id names, or None if it is not one of ours."""
    node, dot, rest = client_id.partition(".")
    return node if dot and node and rest else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _texts(values: Iterable[bytes | str]) -> list[str]:
    return [value.decode() if isinstance(value, bytes) else value for value in values]


def _session(pairs: list[Any]) -> Session:
    """A session from HGETALL's flat [key, JSON value, ...] list."""
    return {_text(pairs[i]): json.loads(pairs[i + 1]) for i in range(0, len(pairs), 2)}


def _session_args(session: Session) -> list[str]:
    args: list[str] = []
    for key, value in session.items():
        args.append(key)
        args.append(_dumps(value))
    return args


def _header(value: Any) -> bytes:
    return _dumps(value).encode()


class RedisBackend(Backend):
    """Cluster state in Redis (under ``config.redis_prefix``), delivery by pub/sub to the nodes concerned."""

    def __init__(self, config: Config) -> None:
        assert config.redis_url is not None
        self.config = config
        self.prefix = config.redis_prefix
        #: Short and URL-safe: it starts every client id of this node.
        self.node_id = secrets.token_urlsafe(6)
        self.started = time.time()
        self.mirror = LocalState()
        self._redis: aioredis.Redis = webchat_redis.async_client(  # redis:// or redis+sentinel://
            config.redis_url,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            # No silent retries: an outage must surface at once as a 503, and
            # the supervisor (not each command) decides when Redis is back.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._script = self._redis.register_script(SCRIPT)
        self._script_sha = hashlib.sha1(SCRIPT.encode()).hexdigest()
        self._node_channel = (self.prefix + "node:" + self.node_id).encode()
        #: Set when a command finds Redis in another epoch: reconnect at once.
        self._stale = asyncio.Event()
        self._pipe = TickPipeline(self._redis, self.prefix + "epoch", self._stale.set)
        self._all_channel = (self.prefix + "all").encode()
        #: True while connected (the node's own upkeep may run, e.g. a resync).
        self._linked = False
        #: True once this connection has written the node's state back.
        self._synced = False
        #: True while no node is awaited in ``waiting``: the cluster is whole.
        self._whole = False
        #: The nodes ``waiting`` held when last read (for the 503 message).
        self._waiting: list[str] = []
        self._gate_changed = asyncio.Event()
        #: The other nodes that held clients when last seen: the ones to wait
        #: for if this node is the first back to a Redis that lost everything.
        self._known: list[str] = []
        #: True from a lost connection until the clients are told it is restored.
        self._owe_restored = False
        #: True once this node refused a push since it last served: the pages of
        #: other nodes, which may have caught up already, must hear of it.
        self._refused = False
        self._ready = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        #: Reapings of dead nodes, cancelled at stop.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._backoff = BACKOFF_FIRST
        self._down_logged = False
        # Keys (API nonces, idempotency keys) claimed while Redis was away: checked
        # locally meanwhile and written to Redis on reconnection, so a replay stays
        # refused cluster-wide.
        self._local_nonces: dict[str, float] = {}
        self._resync_lock = asyncio.Lock()
        self._handlers: dict[int, Callable[[Any, bytes], None]] = {
            ord(kind): handler
            for kind, handler in {
                "c": self._on_clients, "u": self._on_uids, "g": self._on_groups, "a": self._on_all,
                "W": self._on_not_whole, "w": lambda h, p: self._gate_changed.set(), "H": self._on_holder,
                "R": lambda h, p: self._known.remove(h[0]) if h[0] in self._known else None,
                "r": self._on_refused,
                "L": self._on_leave, "k": self._on_close,
                "b": lambda h, p: self.mirror.bind(h[0], h[1]), "B": lambda h, p: self.mirror.unbind(h[0]),
                "j": lambda h, p: self.mirror.join(h[0], h[1]), "l": lambda h, p: self.mirror.leave(h[0], h[1]),
                "x": lambda h, p: self.mirror.ungroup(h[0]),
                "s": lambda h, p: self.mirror.set_session(h[0], json.loads(p), merge=False),
                "m": lambda h, p: self.mirror.set_session(h[0], json.loads(p), merge=True),
            }.items()
        }

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """True while API operations are served: linked, state written back, cluster whole."""
        return self._linked and self._synced and self._whole

    def _unavailable(self) -> BackendUnavailable:
        """Why an operation cannot be served now (the API answers 503 with this text)."""
        if not self._linked:
            return BackendUnavailable("Redis is unreachable")
        if not self._synced:
            return BackendUnavailable("this node is writing its clients back to Redis; try again shortly")
        waiting = ", ".join(self._waiting) or "none"
        return BackendUnavailable(
            "the cluster is not whole yet: Redis lost its state and node(s) "
            f"{waiting} have not written their clients back (at most {self.config.node_timeout:g} s); try again shortly"
        )

    async def start(self, connections: Delivery) -> None:
        await super().start(connections)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        try:
            await asyncio.wait_for(self._ready.wait(), START_WAIT)
        except asyncio.TimeoutError:
            log.warning("Redis is not reachable yet; serving, and answering 503 until it is")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        # Retire while the supervisor still holds the connection: the lease
        # goes now rather than expiring, and no one needs to reap this node.
        if self._linked:
            try:
                await self._internal("retire", self.node_id)
            except BackendUnavailable:
                log.warning("could not retire node %s; the others will reap it", self.node_id)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._redis.aclose()

    def new_client_id(self) -> str:
        return f"{self.node_id}.{new_random_id()}"

    # -- talking to Redis ----------------------------------------------------------------
    # Commands are not sent one by one: every command issued in one event-loop
    # tick goes out in one pipeline, checked against the epoch (see redis_pipeline).

    async def _call(self, op: str, *args: str | bytes) -> Any:
        """Run one operation of the script; BackendUnavailable if Redis cannot be reached."""
        return await self._command("EVALSHA", self._script_sha, 0, op, self.prefix, *args)

    async def _query(self, command: str, *args: str) -> Any:
        return await self._command(command, *args)

    async def _internal(self, op: str, *args: str | bytes) -> Any:
        """Like _call, for the node's own upkeep: allowed while the state is still being written back."""
        if not self._linked:
            raise BackendUnavailable("Redis is unreachable")
        return await self._enqueue("EVALSHA", self._script_sha, 0, op, self.prefix, *args)

    def _internal_command(self, *args: Any) -> asyncio.Future[Any]:
        if not self._linked:
            raise BackendUnavailable("Redis is unreachable")
        return self._enqueue(*args)

    def _command(self, *args: Any) -> asyncio.Future[Any]:
        if not self.up:
            raise self._unavailable()
        return self._enqueue(*args)

    def _enqueue(self, *args: Any) -> asyncio.Future[Any]:
        return self._pipe.enqueue(*args)

    async def _guard(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(f"Redis: {type(exc).__name__}") from exc

    def _key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

    # -- the supervisor: connection, lease, sweep, resync -----------------------------------

    async def _supervise(self) -> None:
        while True:
            try:
                await self._serve()
            except (RedisError, OSError, BackendUnavailable) as exc:
                if not self._down_logged:
                    self._down_logged = True
                    log.warning("Redis unreachable (%s: %s); local delivery goes on, reconnecting", type(exc).__name__, exc)
            except Exception:
                # A bug must not end the supervision for good: log it and reconnect.
                log.exception("cluster connection failed")
            if not self._owe_restored:
                # Pushes made on other nodes cannot reach this node's clients
                # until it is back: tell them, so pages catch up (and again,
                # with "redis_restored", once the cluster is whole).
                self._owe_restored = True
                self.connections.send_all(RESYNC_LOST)
            # Jitter, so nodes that lost Redis together do not come back in lockstep.
            await asyncio.sleep(self._backoff * (0.5 + random.random() / 2))
            self._backoff = min(self._backoff * 2, BACKOFF_CAP)

    async def _serve(self) -> None:
        """Connect, subscribe and keep the lease; write state back; then listen until Redis fails."""
        # Pooled connections from before an outage look idle but are dead: the
        # first commands after recovery would fail on them. Start afresh.
        await self._redis.connection_pool.disconnect()
        pubsub = self._redis.pubsub()
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        try:
            await pubsub.subscribe(self._node_channel, self._all_channel)
            await self._redis.script_load(SCRIPT)
            lost = await self._join()
            self._stale.clear()
            self._linked = True
            # The lease is kept and messages are read while the state is written
            # back: a big node's resync may take longer than its lease.
            tasks = {
                loop.create_task(self._keep_lease()), loop.create_task(self._listen(pubsub)),
                loop.create_task(self._watch_gate()), loop.create_task(self._watch_epoch()),
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
            self._linked = self._synced = self._whole = False
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _join(self) -> bool:
        """Take the lease on (re)connection; True if this node's Redis state was lost (Redis emptied, or reaped).

        If Redis lost everything and this node is the first back, the nodes it
        last saw holding clients become ``waiting``: the cluster answers 503
        until each has written its clients back or let its deadline lapse.
        """
        ttl_ms = str(int(self.config.node_timeout * 1000))
        args = ["join", self.prefix, self.node_id, ttl_ms, self._pipe.epoch, secrets.token_urlsafe(9),
                "1" if self.mirror.clients else "0", *self._known]
        epoch, lost, holders = await self._guard(self._script(args=args))
        if self._pipe.epoch and _text(epoch) != self._pipe.epoch:
            log.warning("Redis lost the cluster's state (new epoch); writing this node's clients back")
        self._pipe.epoch = _text(epoch)
        self._remember(holders)
        return bool(lost)

    def _remember(self, holders: Iterable[bytes | str]) -> None:
        self._known = [node for node in dict.fromkeys(_texts(holders)) if node != self.node_id]

    async def _write_back(self, lost: bool) -> None:
        """Write this node's state back, then clear this node from ``waiting``."""
        await self.resync()
        waiting = _texts(await self._internal("synced", self.node_id))
        self._synced = True
        self._waiting = waiting
        if lost and self.mirror.clients:
            log.info("node %s: clients written back after Redis lost them", self.node_id)
        if waiting:
            log.warning("the cluster waits for node(s) %s to write their clients back; answering 503 meanwhile", ", ".join(waiting))
            self._gate_changed.set()
        else:
            self._whole = True
            self._became_up()

    async def _watch_gate(self) -> None:
        """While the cluster is not whole, re-read ``waiting`` until it is empty (or told it may be)."""
        while True:
            if self._synced and not self._whole:
                waiting = _texts(await self._internal("gate"))
                self._waiting = waiting
                if not waiting:
                    self._whole = True
                    self._became_up()
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._gate_changed.wait(), GATE_POLL)
            else:
                await self._gate_changed.wait()
            self._gate_changed.clear()

    async def _watch_epoch(self) -> None:
        await self._stale.wait()
        log.warning("Redis lost the cluster's state; reconnecting to write this node's clients back")
        raise BackendUnavailable("Redis is in another epoch")

    def _on_not_whole(self, _header: Any, _payload: bytes) -> None:
        """A node found its state lost and is writing it back: answer 503 until it has.

        Pushes refused meanwhile (here or on any node) reach nobody, and a page
        hears of a stored message only from the next one in its conversation;
        so this node owes its clients "redis_restored" too, once whole again.
        """
        if self._whole:
            log.warning("a node is writing its clients back; answering 503 until the cluster is whole")
        self._whole = False
        self._owe_restored = True
        self._gate_changed.set()

    def _on_holder(self, header: Any, _payload: bytes) -> None:
        """A node got its first client: one to wait for if Redis loses everything."""
        node = header[0]
        if node != self.node_id and node not in self._known:
            self._known.append(node)

    def _became_up(self) -> None:
        """The node serves again: say so in the log and to its clients if they were told it was lost."""
        if not self.up:
            return
        self._backoff = BACKOFF_FIRST
        self._down_logged = False
        self._ready.set()
        log.info("node %s is in the cluster at %s (prefix %r)", self.node_id, _safe_url(self.config.redis_url), self.prefix)
        if self._owe_restored:
            self._owe_restored = False
            self.connections.send_all(RESYNC_RESTORED)
        if self._refused:
            # Pushes this node refused reached no other node's pages, and those
            # nodes may have told their pages "restored" before (or never lost
            # Redis at all): ask every node to tell its pages now, after them.
            self._refused = False
            self._spawn(self._announce_refused())

    async def _announce_refused(self) -> None:
        try:
            await self._internal_command("PUBLISH", self._all_channel, b"r" + _header([self.node_id]) + b"\n")
        except (BackendUnavailable, RedisError, OSError):
            self._refused = True  # told at the next return instead

    def _on_refused(self, header: Any, _payload: bytes) -> None:
        """Another node refused pushes while it was not serving: this node's pages catch up (now, or once it serves)."""
        if header[0] == self.node_id:
            return
        if self.up:
            self.connections.send_all(RESYNC_RESTORED)
        else:
            self._owe_restored = True

    async def _listen(self, pubsub: Any) -> None:
        read = pubsub.parse_response
        dispatch = self._dispatch
        while True:
            response = await read(block=True)
            # Anything but a message (subscribe confirmations) is skipped.
            if type(response) is list and response[0] == b"message":
                dispatch(response[2])

    def _dispatch(self, message: bytes) -> None:
        try:
            end = message.index(b"\n")
            self._handlers[message[0]](json.loads(message[1:end]), message[end + 1 :])
        except Exception:
            log.exception("bad cluster message %r", message[:80])

    async def _renew_lease(self) -> bool:
        """Renew the lease; True if this node was missing from Redis (reaped, or Redis emptied)."""
        ttl_ms = str(int(self.config.node_timeout * 1000))
        metrics.LEASE_RENEWALS.inc()
        missing, holders = await self._guard(self._script(args=["renew", self.prefix, self.node_id, ttl_ms]))
        self._remember(holders)
        return bool(missing)

    async def _keep_lease(self) -> None:
        timeout = self.config.node_timeout
        renew_every = timeout / 3
        sweep_every = timeout / 2
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + sweep_every * random.random()
        while True:
            await asyncio.sleep(renew_every)
            if await asyncio.wait_for(self._renew_lease(), timeout):
                # We were reaped (a stall longer than the lease) or Redis was
                # emptied under us: reconnect, which takes the clients not
                # reaped yet back and writes every live one back, with the
                # cluster answering 503 until then.
                log.warning("node %s was missing from Redis; writing its clients back", self.node_id)
                raise BackendUnavailable("this node was missing from Redis")
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + sweep_every * (0.75 + random.random() / 2)
                await self._sweep()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work (a reaping, a resync) until it ends or the backend stops."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        claimed = await self._internal("sweep", self.node_id)
        for node in _texts(claimed):
            log.warning("node %s lost its lease; reaping its clients", node)
            self._spawn(self._reap(node))

    async def _reap(self, node: str) -> None:
        try:
            if self.events is not None:
                await self.events.reaping(node)  # the dead node's client_closed, before its state goes
            while True:
                left = await self._internal("reap", node, self.node_id, str(CHUNK))
                if left <= 0:
                    break
            if self.events is not None:
                await self.events.reaped(node)  # then its uids' uid_offline, its groups' group_vacated
            log.info("reaped node %s", node)
        except BackendUnavailable as exc:
            # Whoever sweeps after the reconnection takes the reaping over.
            log.warning("reaping node %s interrupted: %s", node, exc)

    async def resync(self) -> None:
        """Make Redis hold this node's clients again, and the mirror hold Redis's view of them.

        Run on every (re)connection. Clients Redis still knows keep their
        Redis state (changes made elsewhere while this node was cut off land
        in the mirror); clients it lost are written back; clients Redis lists
        for this node that are gone locally depart, with their leave signals
        to the other nodes (this node's members had theirs already).
        """
        async with self._resync_lock:
            listed = set(_texts(await self._internal("reclaim", self.node_id)))
            local = list(self.mirror.clients.items())
            for start in range(0, len(local), CHUNK):
                entries = [
                    [cid, client.uid or False, sorted(client.groups or ()), _session_args(client.session or {})]
                    for cid, client in local[start : start + CHUNK]
                ]
                known = json.loads(await self._internal("resync", self.node_id, _dumps(entries)))
                for cid, uid, groups, session in known or ():
                    self._refresh(cid, uid or None, set(groups or ()), _session(session or []))
            # Gone meanwhile: listed by Redis, or written back by this very
            # loop after the client had left (its departure may have run first).
            gone = [cid for cid in listed.union(cid for cid, _ in local) if cid not in self.mirror.clients]
            for start in range(0, len(gone), CHUNK):
                await self._internal("depart_many", self.node_id, *gone[start : start + CHUNK])
            await self._write_back_nonces()
            await self._internal_command("HSET", self._key("started"), self.node_id, repr(self.started))
            if local or gone:
                log.info("node %s: state written back (%d clients, %d departed meanwhile)", self.node_id, len(local), len(gone))

    def _refresh(self, client_id: str, uid: str | None, groups: set[str], session: Session) -> None:
        """Give the mirror Redis's state of one client, if it differs (after a blip it rarely does)."""
        client = self.mirror.clients.get(client_id)
        if client is not None and (client.uid, client.groups or set(), client.session or {}) != (uid, groups, session):
            self.mirror.replace(client_id, uid, groups, session)

    async def _write_back_nonces(self) -> None:
        now = time.monotonic()
        nonces, self._local_nonces = self._local_nonces, {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for nonce, expiry in nonces.items():
                if expiry > now:
                    pipe.set(self._key(nonce), b"1", nx=True, px=int((expiry - now) * 1000) + 1)
            if pipe:
                await self._guard(pipe.execute())

    # -- incoming messages: delivery from the mirror --------------------------------------

    def _on_clients(self, header: Any, frame: bytes) -> None:
        self.connections.send_many(header[0], frame)

    def _on_uids(self, header: Any, frame: bytes) -> None:
        self.connections.send_many(self.mirror.uid_clients(header[0]), frame)

    def _on_groups(self, header: Any, frame: bytes) -> None:
        groups, exclude = header
        members = self.mirror.members(groups)
        if exclude:
            excluded = set(exclude)
            members = [cid for cid in members if cid not in excluded]
        self.connections.send_many(members, frame)

    def _on_all(self, header: Any, frame: bytes) -> None:
        self.connections.send_all(frame, header[0])

    def _on_leave(self, header: Any, _payload: bytes) -> None:
        group, uid, leaving = header
        members = self.mirror.groups.get(group)
        if members:
            self.connections.send_many([cid for cid in members if cid != leaving], leave_frame(group, uid or None))

    def _on_close(self, header: Any, frame: bytes) -> None:
        connection = self.connections.by_id.get(header[0])
        if connection is not None:
            connection.close(frames.CLOSE_NORMAL, "", frame or None)

    async def _run_calls(self, calls: list[Call]) -> list[Any]:
        """Start every operation of a batch at once, in order.

        Each one issues its commands before its first await, so they all land
        in this tick's pipeline: one round trip for the batch instead of one
        per operation (measured ~4x the operations per second).
        """
        return await asyncio.gather(*(method(*values) for method, values in calls), return_exceptions=True)

    # -- claimed keys (the API's nonce and idempotency stores: api.auth.ClaimStore) ------------

    async def claim(self, key: str, ttl: float) -> bool:
        """SET NX PX ``key`` (namespaced by the caller, e.g. ``nonce:X``); False if it is held."""
        if self._linked:
            try:
                # Redis decides as soon as it is reachable, even while the cluster is not whole.
                claimed = await self._internal_command("SET", self._key(key), b"1", "NX", "PX", int(ttl * 1000))
                return bool(claimed)
            except BackendUnavailable:
                pass
        # Redis is away: refuse replays to this node, and remember the nonce
        # for Redis (see _write_back_nonces). A replay sent to another node
        # during the outage can only do what that node can do without Redis.
        now = time.monotonic()
        if len(self._local_nonces) > 10_000:
            self._local_nonces = {n: e for n, e in self._local_nonces.items() if e > now}
        expiry = self._local_nonces.get(key)
        if expiry is not None and expiry > now:
            return False
        self._local_nonces[key] = now + ttl
        return True

    async def release(self, key: str) -> None:
        """Forget a claimed key (its operation failed: a retry must be able to claim it)."""
        self._local_nonces.pop(key, None)
        # Best effort: with Redis away the key was only claimed locally (above).
        with contextlib.suppress(BackendUnavailable):
            await self._internal_command("DEL", self._key(key))

    # -- arrivals and departures --------------------------------------------------------

    async def register(self, client_id: str, uid: str | None = None) -> None:
        # Into the mirror first, so a resync running meanwhile counts it as ours.
        self.mirror.add(client_id, uid)
        try:
            await self._call("register", client_id, uid or "")
        except BaseException:
            self.mirror.remove(client_id)
            raise
        if self.events is not None and uid is not None:
            self.events.bound(client_id, uid)

    async def unregister(self, client_id: str) -> None:
        client = self.mirror.remove(client_id)
        if client is None:
            return
        try:
            # Upkeep, allowed while the cluster is not whole: a client leaving
            # then must not stay listed in Redis.
            await self._internal("unregister", client_id, "")
        except BackendUnavailable:
            # Not an error to report: this node's members hear it now, the
            # others when Redis is back (resync departs the clients Redis still
            # lists for this node, skipping this node's members).
            log.debug("Redis unreachable: client %s departs locally for now", client_id)
            for group in client.groups or ():
                members = self.mirror.groups.get(group)
                if members:
                    self.connections.send_many(members, leave_frame(group, client.uid))
        if self.events is not None:
            self.events.closed(client_id, client.uid, list(client.groups or ()), client.session)

    # -- pushes -------------------------------------------------------------------------------

    def _local_only(self, deliver: Callable[[], int]) -> BackendUnavailable:
        """The 503 of a push that cannot reach every node: delivered locally only while Redis is away.

        While Redis is unreachable this node's own recipients get the push at
        once (nothing better can be done for them). While the cluster is only
        waiting to be whole nothing is delivered: the push is refused as a
        whole, so a retry after the wait delivers it once.
        """
        self._refused = True
        if self._linked:
            return self._unavailable()
        return BackendUnavailable(f"Redis is unreachable: delivered to this node's clients only ({deliver()})")

    async def send_to_all(
        self, frame: bytes, client_ids: list[str] | None = None, exclude_client_ids: list[str] | None = None
    ) -> None:
        if client_ids is None:
            if not self.up:
                raise self._local_only(lambda: self.connections.send_all(frame, exclude_client_ids))
            message = b"a" + _header([exclude_client_ids or []]) + b"\n" + frame
            await self._command("PUBLISH", self._all_channel, message)
            return
        excluded = set(exclude_client_ids or ())
        by_node: dict[str, list[str]] = {}
        for cid in dict.fromkeys(client_ids):
            node = node_of(cid)
            if node is not None and cid not in excluded:
                by_node.setdefault(node, []).append(cid)
        if not by_node:
            return
        if not self.up:
            mine = by_node.pop(self.node_id, [])
            if by_node:
                raise self._local_only(lambda: self.connections.send_many(mine, frame))
            self.connections.send_many(mine, frame)
            return
        await asyncio.gather(
            *[self._command("PUBLISH", self._channel(node), b"c" + _header([cids]) + b"\n" + frame) for node, cids in by_node.items()]
        )

    def _channel(self, node: str) -> str:
        return self.prefix + "node:" + node

    async def send_to_client(self, client_id: str, frame: bytes) -> None:
        node = node_of(client_id)
        if node is None:
            return
        if not self.up:
            if node != self.node_id:
                self._refused = True
                raise self._unavailable()
            self.connections.send(client_id, frame)
            return
        await self._command("PUBLISH", self._channel(node), b"c" + _header([[client_id]]) + b"\n" + frame)

    async def send_to_uid(self, uids: list[str], frame: bytes) -> None:
        if not self.up:
            raise self._local_only(lambda: self.connections.send_many(self.mirror.uid_clients(uids), frame))
        await self._call("send_to_uid", _header([uids]), frame, *uids)

    async def send_to_group(self, groups: list[str], frame: bytes, exclude_client_ids: list[str] | None = None) -> None:
        if not self.up:
            def deliver() -> int:
                members = self.mirror.members(groups)
                if exclude_client_ids:
                    excluded = set(exclude_client_ids)
                    members = [cid for cid in members if cid not in excluded]
                return self.connections.send_many(members, frame)

            raise self._local_only(deliver)
        await self._call("send_to_group", _header([groups, exclude_client_ids or []]), frame, *groups)

    async def close_client(self, client_id: str, frame: bytes | None = None) -> None:
        node = node_of(client_id)
        if node is None:
            return
        if not self.up:
            if node != self.node_id:
                raise self._unavailable()
            self._on_close([client_id], frame or b"")
            return
        await self._command("PUBLISH", self._channel(node), b"k" + _header([client_id]) + b"\n" + (frame or b""))

    # -- uids, groups, sessions ------------------------------------------------------------

    async def bind_uid(self, client_id: str, uid: str) -> None:
        if node_of(client_id) is not None:
            await self._call("bind_uid", client_id, uid)
            if self.events is not None:
                self.events.bound(client_id, uid)

    async def unbind_uid(self, client_id: str, uid: str) -> None:
        if node_of(client_id) is not None:
            await self._call("unbind_uid", client_id, uid)
            if self.events is not None:
                self.events.bound(client_id, None)

    async def join_group(self, client_id: str, group: str) -> None:
        if node_of(client_id) is not None:
            await self._call("join_group", client_id, group)
            if self.events is not None:
                self.events.groups(group)

    async def leave_group(self, client_id: str, group: str) -> None:
        if node_of(client_id) is not None:
            await self._call("leave_group", client_id, group)
            if self.events is not None:
                self.events.groups(group)

    async def ungroup(self, group: str) -> None:
        await self._call("ungroup", group)
        if self.events is not None:
            self.events.groups(group)

    async def set_session(self, client_id: str, session: Session) -> None:
        if node_of(client_id) is not None:
            await self._call("set_session", client_id, _dumps(session), *_session_args(session))

    async def update_session(self, client_id: str, session: Session) -> None:
        if node_of(client_id) is not None:
            await self._call("update_session", client_id, _dumps(session), *_session_args(session))

    async def get_session(self, client_id: str) -> Session | None:
        # Issued in one tick: one round trip.
        online, session = await asyncio.gather(
            self._command("SISMEMBER", self._key("clients"), client_id),
            self._command("HGETALL", self._key("s:", client_id)),
        )
        if not online:
            return None
        return {_text(key): json.loads(value) for key, value in session.items()}

    # -- presence ---------------------------------------------------------------------------

    async def is_online(self, client_id: str) -> bool:
        return bool(await self._query("SISMEMBER", self._key("clients"), client_id))

    async def is_uid_online(self, uid: str) -> bool:
        return bool(await self._query("EXISTS", self._key("u:", uid)))

    async def get_client_id_by_uid(self, uid: str) -> list[str]:
        return _texts(await self._query("SMEMBERS", self._key("u:", uid)))

    async def get_uid_by_client_id(self, client_id: str) -> str | None:
        uid = await self._query("GET", self._key("cu:", client_id))
        return None if uid is None else _text(uid)

    async def get_client_id_list_by_group(self, group: str) -> list[str]:
        return _texts(await self._query("SMEMBERS", self._key("g:", group)))

    async def get_client_count_by_group(self, group: str) -> int:
        return int(await self._query("SCARD", self._key("g:", group)))

    async def get_client_sessions_by_group(self, group: str) -> dict[str, Session]:
        flat = await self._call("sessions_by_group", group)
        return {_text(flat[i]): _session(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def get_uid_list_by_group(self, group: str) -> list[str]:
        return _texts(await self._query("HKEYS", self._key("gu:", group)))

    async def get_uid_count_by_group(self, group: str) -> int:
        return int(await self._query("HLEN", self._key("gu:", group)))

    async def get_all_client_id_list(self) -> list[str]:
        return _texts(await self._query("SMEMBERS", self._key("clients")))

    async def get_all_client_count(self) -> int:
        return int(await self._query("SCARD", self._key("clients")))

    async def get_all_uid_list(self) -> list[str]:
        return _texts(await self._query("SMEMBERS", self._key("uids")))

    async def get_all_uid_count(self) -> int:
        return int(await self._query("SCARD", self._key("uids")))

    async def get_nodes(self) -> list[NodeInfo]:
        # The live nodes are those whose lease has not expired; each one's
        # clients are in nc:N, and its start time in the started hash (resync).
        nodes, started = await asyncio.gather(self._query("SMEMBERS", self._key("nodes")), self._query("HGETALL", self._key("started")))
        names = sorted(_texts(nodes))
        counts = await asyncio.gather(
            *(self._query("EXISTS", self._key("lease:", n)) for n in names),
            *(self._query("SCARD", self._key("nc:", n)) for n in names),
        )
        since = {_text(k): float(v) for k, v in started.items()}
        return [
            {"node": n, "connections": int(count), "started": since.get(n, 0.0)}
            for n, live, count in zip(names, counts[: len(names)], counts[len(names) :])
            if live
        ]

    async def get_all_group_id_list(self) -> list[str]:
        return _texts(await self._query("SMEMBERS", self._key("groups")))


def _safe_url(url: str | None) -> str:
    """The Redis URL without its password, for logs."""
    if not url:
        return ""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"
