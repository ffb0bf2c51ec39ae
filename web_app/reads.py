"""Read positions and unread counts: one row per (user, room), never one per message.

``POST /rooms/<room_id>/read {message_id}`` moves the caller's position
forward (never back). The authors of the private messages to the caller that
the move covers are pushed ``{"type":"read","room_id","uid","message_id"}``
(``uid`` the reader, ``message_id`` the last of that author's messages now
read), and the caller's own connections get the same frame with their own uid
so their other tabs and the lobby follow.

Unread counts for every room of the lobby come from one query (see
:func:`unread_counts`), each room's count capped at ``UNREAD_MAX``. The lobby
keeps them live: ``POST /lobby/bind {client_id}`` binds its connection to the
user and puts it in the ``lobby:<room_id>`` group of each listed room, to
which ``/say`` and images push each public message along with the room's
group (one push call either way). A lobby connection is never in a room's own
group, so it counts as nobody in the room's online count or member list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, cast

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import Integer, Table, and_, bindparam, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from push_client import PushError

from .auth import current_user, login_required
from .errors import ApiError, request_data
from .models import Message, ReadPosition, Room, User, get_db
from .push import get_push

log = logging.getLogger(__name__)

__all__ = ["bp", "lobby_group", "mark_seen", "read_position", "unread_counts"]

bp = Blueprint("reads", __name__)

#: Unread counts stop at this many (the page shows "99+"): each room's count
#: is then an index range scan of at most this many rows, however long ago the
#: reader was last there. Setting: UNREAD_MAX.
UNREAD_MAX_DEFAULT = 100


def _visible(user_id: int) -> Any:
    return or_(Message.type == "all", Message.user_id == user_id, Message.to_id == user_id)


def lobby_group(room_id: int) -> str:
    """The push group of the lobbies that show a room's unread count."""
    return f"lobby:{room_id}"


def read_position(user_id: int, room_id: int) -> int:
    """The id of the last message the user has read in the room (0 before the first read)."""
    position = get_db().scalar(
        select(ReadPosition.message_id).where(ReadPosition.user_id == user_id, ReadPosition.room_id == room_id)
    )
    return int(position or 0)


def unread_counts(user: User, room_ids: list[int]) -> dict[int, int]:
    """For each room, the messages by others after the user's position that they may see (at most UNREAD_MAX).

    One query for all the rooms: each room's count is a correlated subquery
    that walks the (room_id, id) index from the user's position and stops
    after UNREAD_MAX rows, so a lobby of many rooms costs one round trip and
    at most rooms × UNREAD_MAX index entries, not a count of whole histories.
    """
    if not room_ids:
        return {}
    cap = int(current_app.config.get("UNREAD_MAX") or UNREAD_MAX_DEFAULT)
    # Each room's messages after this user's position there (0 without one);
    # the position comes from the outer query's join, one row per room.
    unread = (
        select(literal(1))
        .where(
            Message.room_id == Room.id,
            Message.id > func.coalesce(ReadPosition.message_id, 0),
            Message.user_id != user.id,
            Message.deleted.is_(False),
            _visible(user.id),
        )
        .limit(cap)
        .correlate(Room, ReadPosition)
        .subquery()
    )
    counted = select(func.count()).select_from(unread).correlate(Room, ReadPosition).scalar_subquery()
    rows = get_db().execute(
        select(Room.id, counted)
        .outerjoin(ReadPosition, and_(ReadPosition.room_id == Room.id, ReadPosition.user_id == user.id))
        .where(Room.id.in_(room_ids))
    )
    return {int(room_id): int(count) for room_id, count in rows}


# The statements of a read, built once per dialect: a read is the chat's most
# frequent request (every member, after the messages it is shown), so it
# should not build the same expressions again each time. They are on the
# tables, not the ORM classes: their rows are plain tuples, never entities.
_messages = cast(Table, Message.__table__)
_covered = _messages.alias("covered")
_positions = cast(Table, ReadPosition.__table__)
_read_statements: dict[str, tuple[Any, Any]] = {}


def _statements(dialect: str) -> tuple[Any, Any]:
    """(the look, the move) of a read, for ``dialect``: see :func:`mark_read`."""
    if dialect not in _read_statements:
        me, room_id = bindparam("me", type_=Integer), bindparam("room_id", type_=Integer)
        message_id = bindparam("message_id", type_=Integer)
        # One row per author of a private message to me between my stored
        # position and the message (a single row of NULLs when there are none),
        # and no row at all when the message is not in this room. The walk is
        # the (room_id, id) index from my position to the message: the few
        # messages a read covers.
        old = _positions.c.message_id
        look = (
            select(old, _covered.c.user_id, func.max(_covered.c.id))
            .select_from(
                _messages.outerjoin(
                    _positions, and_(_positions.c.user_id == me, _positions.c.room_id == room_id)
                ).outerjoin(
                    _covered,
                    and_(
                        _covered.c.room_id == room_id,
                        _covered.c.id > func.coalesce(old, 0),
                        _covered.c.id <= _messages.c.id,
                        _covered.c.type == "to",
                        _covered.c.to_id == me,
                    ),
                )
            )
            .where(_messages.c.id == message_id, _messages.c.room_id == room_id)
            .group_by(old, _covered.c.user_id)
        )
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        new = insert(_positions).values(user_id=me, room_id=room_id, message_id=message_id)
        # Forward only, in the one statement: the WHERE leaves a larger stored
        # position alone (two tabs racing both land on the larger id) and then
        # returns no row, so the row that comes back says the position moved.
        move = new.on_conflict_do_update(
            index_elements=[_positions.c.user_id, _positions.c.room_id],
            set_={"message_id": new.excluded.message_id},
            where=_positions.c.message_id < new.excluded.message_id,
        ).returning(_positions.c.message_id)
        _read_statements[dialect] = (look, move)
    return _read_statements[dialect]


@bp.post("/rooms/<int:room_id>/read")
@login_required
def mark_read(room_id: int) -> ResponseReturnValue:
    """Move the caller's read position in the room forward to ``message_id``.

    Two statements after the login's: one look (is the message in this room,
    where is my position, which private messages to me does the move cover)
    and one upsert that moves the position only forward. The room's row is
    not loaded: a message of this room proves the room exists. The look runs
    before the move and may see an older position than the one the move
    finds (another tab's read in between): its authors are then told of
    messages that tab's read told them of already, which changes nothing on
    their page, and none is ever left out.
    """
    from .chat import int_field

    me = current_user()
    assert me is not None
    message_id = int_field(request_data(), "message_id")
    db = get_db()
    look, move = _statements(db.get_bind().dialect.name)
    params = {"me": me.id, "room_id": room_id, "message_id": message_id}
    rows = db.execute(look, params).all()
    if not rows:
        raise ApiError(404, "no such message in this room")
    if db.execute(move, params).first() is None:
        db.rollback()
        return jsonify(room_id=room_id, message_id=read_position(me.id, room_id), moved=False)
    db.commit()
    read = {"type": "read", "room_id": room_id, "uid": me.uid}
    try:
        with get_push().batch() as batch:
            # The authors of the private messages to me that this read covers: the latest of each.
            for _old, author_id, last in rows:
                if author_id is not None:
                    batch.send_to_uid(str(author_id), {**read, "message_id": int(last)})
            # My other tabs and my lobby: my position moved.
            batch.send_to_uid(me.uid, {**read, "message_id": message_id})
    except PushError as exc:
        # The position is stored: the authors see "seen" when their page next loads history.
        log.warning("read receipt of user %s in room %s not pushed: %s", me.id, room_id, exc)
    return jsonify(room_id=room_id, message_id=message_id, moved=True)


def mark_seen(entries: Iterable[dict[str, Any]], me: User, room_id: int) -> None:
    """Add ``"seen": true`` to each of my private messages its recipient has read (one query for them all)."""
    mine = [
        entry for entry in entries if entry.get("type") == "to" and entry.get("uid") == me.uid and "to_uid" in entry
    ]
    if not mine:
        return
    readers = {int(entry["to_uid"]) for entry in mine}
    positions = dict(
        get_db()
        .execute(
            select(ReadPosition.user_id, ReadPosition.message_id).where(
                and_(ReadPosition.room_id == room_id, ReadPosition.user_id.in_(readers))
            )
        )
        .all()
    )
    for entry in mine:
        if entry["id"] <= positions.get(int(entry["to_uid"]), 0):
            entry["seen"] = True


@bp.post("/lobby/bind")
@login_required
def bind_lobby() -> ResponseReturnValue:
    """Bind the lobby's connection to the user and let it hear the listed rooms' new messages."""
    from .chat import CLIENT_ID_RE
    from .models import BAN, Restriction, utcnow
    from .rooms import LOBBY_LIMIT

    client_id = request_data().get("client_id")
    if not isinstance(client_id, str) or not CLIENT_ID_RE.fullmatch(client_id):
        raise ApiError(400, "client_id must be a client id string")
    me = current_user()
    assert me is not None
    db = get_db()
    room_ids = list(db.scalars(select(Room.id).order_by(Room.id.desc()).limit(LOBBY_LIMIT)))
    # A banned member hears nothing more of the room, in the lobby either.
    banned = set(
        db.scalars(
            select(Restriction.room_id).where(
                Restriction.user_id == me.id,
                Restriction.kind == BAN,
                or_(Restriction.until.is_(None), Restriction.until > utcnow()),
            )
        )
    )
    try:
        push = get_push()
        with push.batch() as batch:
            queued: Any = batch
            online = queued.is_online(client_id)
            bound = queued.get_uid_by_client_id(client_id)
        if not online.value:
            raise ApiError(409, "that client is not connected")
        if bound.value is not None and bound.value != me.uid:
            raise ApiError(403, "that client belongs to another user")
        with push.batch() as batch:
            batch.bind_uid(client_id, me.uid)
            for room_id in room_ids:
                if room_id not in banned:
                    batch.join_group(client_id, lobby_group(room_id))
    except PushError as exc:
        log.error("push server call failed: %s", exc)
        raise ApiError(503, "the push server is unavailable; try again shortly") from exc
    return jsonify(ok=True, rooms=[room_id for room_id in room_ids if room_id not in banned])
