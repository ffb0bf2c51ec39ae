"""The Backend interface: where uids, groups and sessions live, and how pushes travel.

The WebSocket listener (``websocket/``) and the API (``api/``) only talk to a
Backend, so a single process (``MemoryBackend``) and a cluster (``RedisBackend``)
are interchangeable. A backend owns the cluster-wide state; the node's own
sockets are behind a :class:`~push_server.delivery.Delivery` (the listener's
``Connections``), which the backend is given at :meth:`start` and delivers through.

Conventions every implementation keeps:

- uids and groups are ``str`` (the API normalises ``int`` to ``str``).
- An operation on a client that is offline does nothing; a query about it
  answers empty (``None``, ``False``, ``[]``, ``0``). Offline is not an error.
- Messages arrive as ready WebSocket frames (``bytes``), encoded once by the
  API, so a backend only routes bytes and never re-encodes per recipient.
- A backend that cannot reach its shared state raises :class:`BackendUnavailable`
  (the API answers 503); it never hangs longer than its own short timeout.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import operator
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypedDict

from ..delivery import Delivery
from ..errors import BackendUnavailable
from ..websocket import frames

__all__ = ["Backend", "BackendUnavailable", "Call", "NodeInfo", "Session", "merge_pushes"]

if TYPE_CHECKING:
    from ..events import Events

Session = dict[str, Any]


class NodeInfo(TypedDict):
    """One live node of the cluster, as ``get_nodes`` answers it."""

    node: str
    connections: int
    started: float


def new_random_id() -> str:
    """128 random bits, URL-safe: a client id nobody can guess."""
    return secrets.token_urlsafe(16)


#: A checked operation: the backend method and its arguments, not yet called.
Call = tuple[Callable[..., Awaitable[Any]], list[Any]]

#: The push operations, each with the position of its frame among its arguments.
_FRAME_ARGUMENT = {"send_to_all": 0, "send_to_client": 1, "send_to_uid": 1, "send_to_group": 1}
_method = operator.itemgetter(0)
_name = operator.attrgetter("__name__")


def merge_pushes(calls: list[Call]) -> tuple[list[Call], list[int] | None]:
    """Merge runs of consecutive pushes that differ only in their frame.

    Returns the calls to make and, for each, how many of the given calls it
    stands for (None when nothing was merged and the calls are the given
    ones). A batch of ten messages to one room becomes one push of ten joined
    frames: the room's members are looked up once and every member gets one
    buffer (written in one ``send()``) instead of ten. Nothing between the
    merged pushes can change who receives them, because they are consecutive.
    """
    # Most batches (web_app's /bind: bind, join, set_session) hold no push at
    # all: that is found by one pass in C (a pass in Python over a 1,000-call
    # batch cost about a tenth of checking and running it), and they run as they are.
    if _FRAME_ARGUMENT.keys().isdisjoint(map(_name, map(_method, calls))):
        return calls, None
    positions = [_FRAME_ARGUMENT.get(getattr(method, "__name__", "")) for method, _ in calls]
    # Nor do most with pushes hold two in a row.
    if not any(a is not None and b is not None for a, b in itertools.pairwise(positions)):
        return calls, None
    # Each run: its first call, where the frame is among its arguments, and its frames.
    runs: list[tuple[Call, int | None, list[bytes]]] = []
    for call, position in zip(calls, positions, strict=False):
        method, values = call
        if position is not None and runs:
            (last_method, last_values), _, frames = runs[-1]
            if last_method == method and all(
                a == b for index, (a, b) in enumerate(zip(last_values, values, strict=False)) if index != position
            ):
                frames.append(values[position])
                continue
        runs.append((call, position, [] if position is None else [values[position]]))
    merged: list[Call] = []
    for (method, values), position, frames in runs:
        if position is not None and len(frames) > 1:
            values = list(values)
            values[position] = b"".join(frames)
        merged.append((method, values))
    return merged, [max(1, len(frames)) for _, _, frames in runs]


class Backend(abc.ABC):
    """Cluster state and routing. Every method is a coroutine unless noted."""

    connections: Delivery
    #: This node's id (each backend sets it when made): names it in get_nodes and the events' sender lease.
    node_id: str
    #: Events to the business app (push_server/events), set by the app when PUSH_EVENTS_URL is.
    events: Events | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self, connections: Delivery) -> None:
        """Start: remember this node's sockets, connect to shared state, start background work."""
        self.connections = connections

    async def stop(self) -> None:  # noqa: B027 (optional: most backends have nothing to stop)
        """Stop background work and release shared resources.

        Called after every local client has been unregistered.
        """

    async def run_batch(self, calls: list[Call], slice_seconds: float | None = None) -> list[Any]:
        """Run a batch's checked calls in order; return each result or the exception it raised.

        Consecutive pushes to the same recipients are first merged into one
        push of their frames joined (see :func:`merge_pushes`): the recipients
        are resolved once and each gets one buffer instead of one per message.
        What reaches each socket is byte for byte the same.

        With ``slice_seconds``, the calls are run in chunks sized to take about
        that long, yielding to the event loop between chunks: one huge batch
        then never holds up the node's other clients for long.
        """
        merged, spans = merge_pushes(calls)
        if slice_seconds is None or len(merged) <= 1:
            outcomes = await self._run_calls(merged)
        else:
            outcomes = await self._run_in_slices(merged, slice_seconds)
        if spans is None:
            return outcomes
        results: list[Any] = []
        for outcome, span in zip(outcomes, spans, strict=False):
            results.extend([outcome] * span)
        return results

    async def _run_in_slices(self, calls: list[Call], slice_seconds: float) -> list[Any]:
        outcomes: list[Any] = []
        clock = time.perf_counter
        size, start = 64, 0
        while start < len(calls):
            began = clock()
            outcomes.extend(await self._run_calls(calls[start : start + size]))
            start += size
            spent = clock() - began
            # The next chunk is sized from this one's pace (the calls' costs vary
            # with their recipients), within 1..4096.
            size = max(1, min(4096, int(size * slice_seconds / max(spent, 1e-6))))
            if start < len(calls):
                await asyncio.sleep(0)
        return outcomes

    async def _run_calls(self, calls: list[Call]) -> list[Any]:
        """Run calls in order; each result, or the BackendUnavailable it raised.

        One after the other by default. A backend that can send many
        operations in one round trip (Redis pipelines) overrides this to
        start them all at once, still in order.
        """
        results: list[Any] = []
        for method, values in calls:
            try:
                results.append(await method(*values))
            except BackendUnavailable as exc:
                results.append(exc)
        return results

    def new_client_id(self) -> str:
        """A fresh client id (not a coroutine). A cluster may encode its node in it."""
        return new_random_id()

    # -- this node's clients arriving and leaving ------------------------------

    @abc.abstractmethod
    async def register(self, client_id: str, uid: str | None = None) -> None:
        """A client connected to this node (bound to ``uid`` if its handshake carried a token).

        When this returns the client is reachable by every API call on every node.
        """

    @abc.abstractmethod
    async def unregister(self, client_id: str) -> None:
        """A client of this node went away: forget it everywhere and send leave signals.

        Every group it was in receives ``{"type":"leave","group":G,"uid":U}``
        once; the leaving client itself gets none.
        """

    # -- pushes (``frame`` is an encoded WebSocket frame) -----------------------

    @abc.abstractmethod
    async def send_to_all(
        self, frame: bytes, client_ids: list[str] | None = None, exclude_client_ids: list[str] | None = None
    ) -> None:
        """Every connection, or only ``client_ids``; minus ``exclude_client_ids``."""

    @abc.abstractmethod
    async def send_to_client(self, client_id: str, frame: bytes) -> None:
        """One connection."""

    @abc.abstractmethod
    async def send_to_uid(self, uids: list[str], frame: bytes) -> None:
        """Every connection bound to any of ``uids`` (each connection once)."""

    @abc.abstractmethod
    async def send_to_group(self, groups: list[str], frame: bytes, exclude_client_ids: list[str] | None = None) -> None:
        """Every member of any of ``groups`` (each connection once), minus the excluded."""

    @abc.abstractmethod
    async def close_client(self, client_id: str, frame: bytes | None = None) -> None:
        """Send ``frame`` if given, then close the connection (it leaves with signals)."""

    # -- uids, groups, sessions ------------------------------------------------

    @abc.abstractmethod
    async def bind_uid(self, client_id: str, uid: str) -> None:
        """Bind the client to ``uid``, replacing the uid it had (a client has at most one)."""

    @abc.abstractmethod
    async def unbind_uid(self, client_id: str, uid: str) -> None:
        """Unbind the client if it is bound to ``uid``."""

    @abc.abstractmethod
    async def join_group(self, client_id: str, group: str) -> None:
        """Add the client to ``group``."""

    @abc.abstractmethod
    async def leave_group(self, client_id: str, group: str) -> None:
        """Take the client out of ``group`` (no leave signal)."""

    @abc.abstractmethod
    async def ungroup(self, group: str) -> None:
        """Dissolve ``group``; its members stay connected."""

    @abc.abstractmethod
    async def set_session(self, client_id: str, session: Session) -> None:
        """Replace the client's session."""

    @abc.abstractmethod
    async def update_session(self, client_id: str, session: Session) -> None:
        """Merge ``session`` into the client's session (top-level keys)."""

    @abc.abstractmethod
    async def get_session(self, client_id: str) -> Session | None:
        """The client's session (``{}`` if none was set); None if offline."""

    # -- presence ---------------------------------------------------------------

    @abc.abstractmethod
    async def is_online(self, client_id: str) -> bool:
        """Whether the client is connected to some node."""

    @abc.abstractmethod
    async def is_uid_online(self, uid: str) -> bool:
        """Whether any client is bound to ``uid``."""

    @abc.abstractmethod
    async def get_client_id_by_uid(self, uid: str) -> list[str]:
        """The clients bound to ``uid``."""

    @abc.abstractmethod
    async def get_uid_by_client_id(self, client_id: str) -> str | None:
        """The uid the client is bound to, or None."""

    @abc.abstractmethod
    async def get_client_id_list_by_group(self, group: str) -> list[str]:
        """The members of ``group``."""

    @abc.abstractmethod
    async def get_client_count_by_group(self, group: str) -> int:
        """How many members ``group`` has."""

    @abc.abstractmethod
    async def get_client_sessions_by_group(self, group: str) -> dict[str, Session]:
        """``{client_id: session}`` for the members of ``group``."""

    @abc.abstractmethod
    async def get_uid_list_by_group(self, group: str) -> list[str]:
        """The distinct uids bound to members of ``group``."""

    @abc.abstractmethod
    async def get_uid_count_by_group(self, group: str) -> int:
        """How many distinct uids are in ``group``."""

    @abc.abstractmethod
    async def get_all_client_id_list(self) -> list[str]:
        """Every client in the cluster."""

    @abc.abstractmethod
    async def get_all_client_count(self) -> int:
        """How many clients the cluster has."""

    @abc.abstractmethod
    async def get_all_uid_list(self) -> list[str]:
        """Every uid bound to some client."""

    @abc.abstractmethod
    async def get_all_uid_count(self) -> int:
        """How many uids are bound."""

    @abc.abstractmethod
    async def get_all_group_id_list(self) -> list[str]:
        """Every group with at least one member."""

    @abc.abstractmethod
    async def get_nodes(self) -> list[NodeInfo]:
        """The cluster's live nodes: id, connections held, start time (Unix seconds)."""


class ClientState:
    """What a node holds for one of its clients: its uid, groups and session."""

    __slots__ = ("groups", "session", "uid")

    def __init__(self, uid: str | None) -> None:
        self.uid = uid
        # Most clients are in one or two groups: a set is made on first join.
        self.groups: set[str] | None = None
        self.session: Session | None = None


def leave_frame(group: str, uid: str | None) -> bytes:
    """The frame a group receives when one of its members goes away."""
    return frames.encode_json({"type": "leave", "group": group, "uid": uid})


def unique(client_ids: Iterable[str], exclude: Iterable[str] | None) -> Iterable[str]:
    """``client_ids`` without ``exclude``, for fan-outs that accept an exclusion list."""
    if not exclude:
        return client_ids
    excluded = set(exclude)
    return [client_id for client_id in client_ids if client_id not in excluded]
