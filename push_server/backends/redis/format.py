"""The cluster's message format: what nodes publish to each other, in one place.

Every message on a node's channel (``P node:N``) or on the broadcast channel
(``P all``) is::

    <kind: one ASCII letter> <header: compact JSON> "\\n" <payload: bytes>

JSON never contains a raw newline, so the first ``\\n`` ends the header; the
payload (a ready WebSocket frame, or a session's JSON) is passed on untouched,
never parsed or re-encoded. Most messages are built by the Lua script
(:mod:`.lua`: state changes publish their mirror updates and leave signals in
the same atomic step), the rest by the operations in Python (:func:`encode`).

=====  =========================  ==========  =========================================================
kind   header                     payload     meaning (who publishes it)
=====  =========================  ==========  =========================================================
``c``  ``[[client_id, ...]]``     frame       deliver to these clients of the node (``send_to_client``,
                                              ``send_to_all`` with client ids: Python)
``u``  ``[[uid, ...]]``           frame       deliver to the node's clients of these uids (Lua ``send_to_uid``)
``g``  ``[[group, ...], [excl]]`` frame       deliver to the node's members of these groups, minus ``excl``
                                              (Lua ``send_to_group``)
``a``  ``[[excl, ...]]``          frame       every client of every node, minus ``excl`` (on ``P all``: Python)
``k``  ``[client_id]``            frame or    close the client (with this last frame): ``close_client``, Python
                                  empty
``L``  ``[group, uid|false, cid]``  empty     ``cid`` left ``group``: the node's remaining members get a leave
                                              signal (Lua ``depart``, once per group and node)
``b``  ``[client_id, uid]``       empty       mirror: the client was bound to ``uid`` (Lua)
``B``  ``[client_id]``            empty       mirror: the client was unbound (Lua)
``j``  ``[client_id, group]``     empty       mirror: the client joined ``group`` (Lua)
``l``  ``[client_id, group]``     empty       mirror: the client left ``group`` (Lua)
``x``  ``[group]``                empty       mirror: the group was dissolved (Lua ``ungroup``)
``s``  ``[client_id]``            JSON        mirror: the client's session is now this object (Lua)
``m``  ``[client_id]``            JSON        mirror: merge this object into the client's session (Lua)
``W``  ``[]``                     empty       membership, on ``P all``: a node is writing its clients back;
                                              the cluster is not whole (Lua ``join``)
``w``  ``[]``                     empty       membership, on ``P all``: ``waiting`` was emptied; the cluster
                                              may be whole (Lua, whoever empties it)
``H``  ``[node]``                 empty       membership, on ``P all``: ``node`` got its first client (Lua
                                              ``register``): one to wait for if Redis loses everything
``R``  ``[node]``                 empty       membership, on ``P all``: ``node`` retired for good (Lua ``retire``)
``r``  ``[node]``                 empty       membership, on ``P all``: ``node`` refused pushes while it was
                                              not serving; every other node's pages catch up (``redis_restored``)
=====  =========================  ==========  =========================================================

The Lua script's arguments and replies have two encodings of their own, also
here: a session travels as flat ``[key, JSON value, ...]`` pairs
(:func:`session_args`, :func:`session_from_pairs`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..base import Session

log = logging.getLogger(__name__)

#: Delivery: to clients, to uids, to groups, to everyone; close one client; a leave signal.
CLIENTS, UIDS, GROUPS, ALL, CLOSE, LEAVE = "c", "u", "g", "a", "k", "L"
#: Mirror updates, published by the script that changed Redis to the client's node.
BIND, UNBIND, JOIN, PART, UNGROUP, SESSION, MERGE = "b", "B", "j", "l", "x", "s", "m"
#: Membership notes, on the broadcast channel. REFUSED: a node that refused pushes
#: while it was not serving asks every node's pages to catch up (membership.py).
NOT_WHOLE, MAYBE_WHOLE, HOLDER, RETIRED, REFUSED = "W", "w", "H", "R", "r"

#: Every kind, for checks: a message of any other kind is a bug somewhere.
KINDS = frozenset(
    (
        CLIENTS,
        UIDS,
        GROUPS,
        ALL,
        CLOSE,
        LEAVE,
        BIND,
        UNBIND,
        JOIN,
        PART,
        UNGROUP,
        SESSION,
        MERGE,
        NOT_WHOLE,
        MAYBE_WHOLE,
        HOLDER,
        RETIRED,
        REFUSED,
    )
)

#: What a node does with a message of one kind: called with its header and payload.
Handler = Callable[[Any, bytes], object]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str:
    """Compact JSON, as the script and the mirror expect it (non-ASCII kept as is)."""
    return _dumps(value)


def header(value: Any) -> bytes:
    """A message header (the script adds kind, ``\\n`` and payload itself: ``send_to_uid``, ``send_to_group``)."""
    return _dumps(value).encode()


def loads(payload: bytes) -> Any:
    """A session's JSON payload (``s``, ``m``)."""
    return json.loads(payload)


def encode(kind: str, head: Any, payload: bytes = b"") -> bytes:
    """One message: ``kind``, the header as JSON, ``\\n``, the payload."""
    return kind.encode() + _dumps(head).encode() + b"\n" + payload


def decode(message: bytes) -> tuple[str, Any, bytes]:
    """``(kind, header, payload)`` of one message; ValueError if it is not one."""
    if not message or chr(message[0]) not in KINDS:
        raise ValueError(f"unknown kind of cluster message {message[:1]!r}")
    end = message.index(b"\n")
    return chr(message[0]), json.loads(message[1:end]), message[end + 1 :]


def dispatcher(handlers: dict[str, Handler]) -> Callable[[bytes], None]:
    """A function that hands each message to the handler of its kind (logging, never raising, on a bad one).

    This is the hot path of every push that crosses Redis, so it does not go
    through :func:`decode`: one index lookup on the kind's byte, one
    ``json.loads`` of the (short) header, and the payload slice.
    """
    unknown = set(handlers) - KINDS
    if unknown:
        raise ValueError(f"handlers for unknown kinds: {sorted(unknown)}")
    table = {ord(kind): handler for kind, handler in handlers.items()}

    def dispatch(message: bytes) -> None:
        try:
            end = message.index(b"\n")
            table[message[0]](json.loads(message[1:end]), message[end + 1 :])
        except Exception:
            log.exception("bad cluster message %r", message[:80])

    return dispatch


def node_channel(prefix: str, node: str) -> str:
    """The channel of one node: messages for its clients and its mirror."""
    return prefix + "node:" + node


def all_channel(prefix: str) -> str:
    """The channel every node reads: ``send_to_all`` and the membership notes."""
    return prefix + "all"


def node_of(client_id: str) -> str | None:
    """The node a client id (``<node>.<random>``) names, or None if it is not one of ours."""
    node, dot, rest = client_id.partition(".")
    return node if dot and node and rest else None


# -- the script's arguments and replies -------------------------------------------------------


def text(value: bytes | str) -> str:
    """A reply's bytes as text."""
    return value.decode() if isinstance(value, bytes) else value


def texts(values: Iterable[bytes | str]) -> list[str]:
    """A reply's list of bytes as texts."""
    return [value.decode() if isinstance(value, bytes) else value for value in values]


def session_args(session: Session) -> list[str]:
    """A session as the script takes it: flat ``[key, JSON value, ...]``."""
    args: list[str] = []
    for key, value in session.items():
        args.append(key)
        args.append(_dumps(value))
    return args


def session_from_pairs(pairs: list[Any]) -> Session:
    """A session from HGETALL's flat ``[key, JSON value, ...]`` reply."""
    return {text(pairs[i]): json.loads(pairs[i + 1]) for i in range(0, len(pairs), 2)}
