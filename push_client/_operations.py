"""Every API operation as a method, written once for PushClient, AsyncPushClient and their batches.

Each face decides what a call does through ``_op``/``_do``/``_push``: PushClient
sends it at once, AsyncPushClient returns a coroutine that sends it, a batch
queues it. What a method returns differs by face (``bool`` on PushClient, a
coroutine of ``bool`` on AsyncPushClient, a ``BatchResult[bool]`` on a batch),
so the class is generic over one type per kind of result: a face names its
eight result types once and every method is typed right for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypedDict, TypeVar, cast

import push_protocol

__all__ = ["Group", "Node", "Uid"]

Uid = str | int
Group = str | int


class Node(TypedDict):
    """One live push-server node, as ``get_nodes()`` lists it."""

    node: str
    connections: int
    started: float  # Unix seconds


# One type variable per kind of result (see the module docstring).
W = TypeVar("W")  # a write: None
B = TypeVar("B")  # bool
I = TypeVar("I")  # noqa: E741  int
L = TypeVar("L")  # list[str]
S = TypeVar("S")  # str | None
D = TypeVar("D")  # a session or None
G = TypeVar("G")  # {client_id: session}
N = TypeVar("N")  # list[Node]


def _ids(value: Uid | Iterable[Uid]) -> list[Uid]:
    """One uid/group or many, as a list (a str is one, not an iterable of characters)."""
    if isinstance(value, (str, int)):
        return [value]
    return list(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_list(values: Iterable[str] | None) -> list[str] | None:
    return None if values is None else list(values)


class _Operations(Generic[W, B, I, L, S, D, G, N]):
    """The operations; see the module docstring."""

    def _op(self, op: str, values: tuple[Any, ...], convert: Callable[[Any], Any] | None = None) -> Any:
        """Call ``op`` with its arguments in the order of push_protocol.OPERATIONS (None: absent)."""
        raise NotImplementedError

    def _do(self, op: str, values: tuple[Any, ...]) -> Any:
        """Like ``_op``, for an operation whose result (always None) nobody reads."""
        raise NotImplementedError

    def _push(self, op: str, values: tuple[Any, ...], idempotency_key: str | None) -> Any:
        """Like ``_do``, for an operation that takes an idempotency key as its last argument."""
        raise NotImplementedError

    # -- pushes ---------------------------------------------------------------

    def send_to_all(
        self,
        message: Any,
        client_ids: Iterable[str] | None = None,
        exclude_client_ids: Iterable[str] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> W:
        """Push ``message`` to every connection (or only ``client_ids``), minus the excluded."""
        values = (
            push_protocol.encode_message(message),
            _optional_list(client_ids),
            _optional_list(exclude_client_ids),
        )
        return cast(W, self._push("send_to_all", values, idempotency_key))

    def send_to_client(self, client_id: str, message: Any, *, idempotency_key: str | None = None) -> W:
        """Push ``message`` to one connection; nothing happens if it is offline."""
        values = (client_id, push_protocol.encode_message(message))
        return cast(W, self._push("send_to_client", values, idempotency_key))

    def send_to_uid(self, uid_or_uids: Uid | Iterable[Uid], message: Any, *, idempotency_key: str | None = None) -> W:
        """Push ``message`` to every connection bound to the uid (or to any of the uids)."""
        values = (_ids(uid_or_uids), push_protocol.encode_message(message))
        return cast(W, self._push("send_to_uid", values, idempotency_key))

    def send_to_group(
        self,
        group_or_groups: Group | Iterable[Group],
        message: Any,
        exclude_client_ids: Iterable[str] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> W:
        """Push ``message`` to every member of the group(s), minus the excluded connections.

        A connection in several of the groups receives the message once.
        """
        values = (_ids(group_or_groups), push_protocol.encode_message(message), _optional_list(exclude_client_ids))
        return cast(W, self._push("send_to_group", values, idempotency_key))

    def close_client(self, client_id: str, message: Any = None, *, idempotency_key: str | None = None) -> W:
        """Send ``message`` (if any) to the connection, then close it.

        Its groups get the usual leave signals.
        """
        values = (client_id, None if message is None else push_protocol.encode_message(message))
        return cast(W, self._push("close_client", values, idempotency_key))

    # -- uids -----------------------------------------------------------------

    def bind_uid(self, client_id: str, uid: Uid) -> W:
        """Bind the connection to ``uid``; a connection has at most one uid, so this replaces any other."""
        return cast(W, self._do("bind_uid", (client_id, uid)))

    def unbind_uid(self, client_id: str, uid: Uid) -> W:
        """Undo ``bind_uid`` if the connection is bound to ``uid``."""
        return cast(W, self._do("unbind_uid", (client_id, uid)))

    # -- groups ---------------------------------------------------------------

    def join_group(self, client_id: str, group: Group) -> W:
        """Add the connection to ``group``."""
        return cast(W, self._do("join_group", (client_id, group)))

    def leave_group(self, client_id: str, group: Group) -> W:
        """Take the connection out of ``group`` (no leave signal: only departures send one)."""
        return cast(W, self._do("leave_group", (client_id, group)))

    def ungroup(self, group: Group) -> W:
        """Dissolve ``group``: every member leaves it; the connections stay open."""
        return cast(W, self._do("ungroup", (group,)))

    # -- sessions -------------------------------------------------------------

    def set_session(self, client_id: str, session: dict[str, Any]) -> W:
        """Replace the connection's session with ``session`` (a JSON object)."""
        return cast(W, self._do("set_session", (client_id, session)))

    def update_session(self, client_id: str, session: dict[str, Any]) -> W:
        """Merge ``session`` into the connection's session (top-level keys replace)."""
        return cast(W, self._do("update_session", (client_id, session)))

    def get_session(self, client_id: str) -> D:
        """The connection's session (``{}`` if none was set), or None if it is offline."""
        return cast(D, self._op("get_session", (client_id,)))

    # -- presence -------------------------------------------------------------

    def is_online(self, client_id: str) -> B:
        """Whether the connection is alive."""
        return cast(B, self._op("is_online", (client_id,), bool))

    def is_uid_online(self, uid: Uid) -> B:
        """Whether any connection is bound to ``uid``."""
        return cast(B, self._op("is_uid_online", (uid,), bool))

    def get_client_id_by_uid(self, uid: Uid) -> L:
        """The connections bound to ``uid``."""
        return cast(L, self._op("get_client_id_by_uid", (uid,), list))

    def get_uid_by_client_id(self, client_id: str) -> S:
        """The uid the connection is bound to, or None."""
        return cast(S, self._op("get_uid_by_client_id", (client_id,), _str_or_none))

    def get_client_id_list_by_group(self, group: Group) -> L:
        """The connections in ``group``."""
        return cast(L, self._op("get_client_id_list_by_group", (group,), list))

    def get_client_count_by_group(self, group: Group) -> I:
        """How many connections are in ``group``."""
        return cast(I, self._op("get_client_count_by_group", (group,), int))

    def get_client_sessions_by_group(self, group: Group) -> G:
        """``{client_id: session}`` for every connection in ``group``."""
        return cast(G, self._op("get_client_sessions_by_group", (group,), dict))

    def get_uid_list_by_group(self, group: Group) -> L:
        """The distinct uids bound to connections in ``group``."""
        return cast(L, self._op("get_uid_list_by_group", (group,), list))

    def get_uid_count_by_group(self, group: Group) -> I:
        """How many distinct uids are in ``group``."""
        return cast(I, self._op("get_uid_count_by_group", (group,), int))

    def get_all_client_id_list(self) -> L:
        """Every live connection in the cluster."""
        return cast(L, self._op("get_all_client_id_list", (), list))

    def get_all_client_count(self) -> I:
        """How many live connections the cluster has."""
        return cast(I, self._op("get_all_client_count", (), int))

    def get_all_uid_list(self) -> L:
        """Every uid bound to a live connection."""
        return cast(L, self._op("get_all_uid_list", (), list))

    def get_all_uid_count(self) -> I:
        """How many uids are bound to live connections."""
        return cast(I, self._op("get_all_uid_count", (), int))

    def get_all_group_id_list(self) -> L:
        """Every group that has at least one member."""
        return cast(L, self._op("get_all_group_id_list", (), list))

    # -- the cluster ----------------------------------------------------------

    def get_nodes(self) -> N:
        """The cluster's live nodes: ``[{"node": id, "connections": n, "started": unix_s}, ...]``."""
        return cast(N, self._op("get_nodes", (), list))
