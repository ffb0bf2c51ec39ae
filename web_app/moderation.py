"""Moderation: the room's owner (its creator) bans or mutes a member, for some minutes or for good.

A ban keeps the member out: their connections leave the room's group and are
told ``{"type":"banned","room_id","until"}``, and ``/bind``, ``/say``,
``/typing`` and images in the room answer 403 until it ends. A mute only stops
posting (``/say``, images, ``/typing``); the member still reads. Both are one
row per (room, user, kind) in ``restrictions``; an ended one is simply
ignored (and replaced by the next), so nothing has to run when it ends.

Every change is pushed as ``{"type":"banned"|"muted","room_id","uid","until"}``
or ``{"type":"unbanned"|"unmuted","room_id","uid"}`` (``uid`` the member's) to
the member and to the owner: the member's page blocks or unblocks itself, and
the owner's (every tab) keeps its member menu right. The owner's ``/bind``
answer carries the room's current ones (:func:`room_restrictions`), so a page
that loads or reconnects starts from the truth.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import delete, or_, select

from push_client import PushError

from .auth import current_user, login_required
from .errors import ApiError, request_data
from .models import BAN, MUTE, Restriction, Room, User, get_db, isoformat, utcnow
from .push import get_push, room_group
from .reads import lobby_group
from .rooms import get_room

log = logging.getLogger(__name__)

__all__ = ["active_restriction", "bp", "check_can_enter", "check_can_post", "room_restrictions"]

bp = Blueprint("moderation", __name__)

#: The longest timed restriction: ten years (longer is "for good": leave out minutes).
MINUTES_MAX = 10 * 366 * 24 * 60

_WORDS = {BAN: "banned", MUTE: "muted"}


def active_restriction(room_id: int, user_id: int, kinds: tuple[str, ...]) -> Restriction | None:
    """The user's restriction in the room of one of ``kinds`` that has not ended, if any (bans first)."""
    now = utcnow()
    rows = (
        get_db()
        .scalars(
            select(Restriction).where(
                Restriction.room_id == room_id,
                Restriction.user_id == user_id,
                Restriction.kind.in_(kinds),
                or_(Restriction.until.is_(None), Restriction.until > now),
            )
        )
        .all()
    )
    rows = sorted(rows, key=lambda row: row.kind != BAN)
    return rows[0] if rows else None


def room_restrictions(room_id: int) -> list[dict[str, Any]]:
    """The room's bans and mutes that have not ended, as ``{"uid", "kind": "banned"|"muted", "until"}``.

    For the owner's page (``/bind``): one query on the table's (room, user,
    kind) key, as long as the room has restricted members (ended rows are left
    out, so it does not grow with the room's past).
    """
    rows = (
        get_db()
        .scalars(
            select(Restriction)
            .where(
                Restriction.room_id == room_id,
                or_(Restriction.until.is_(None), Restriction.until > utcnow()),
            )
            .order_by(Restriction.user_id, Restriction.kind)
        )
        .all()
    )
    return [{"uid": str(row.user_id), "kind": _WORDS[row.kind], "until": _until(row)} for row in rows]


def _until(row: Restriction) -> str | None:
    return None if row.until is None else isoformat(row.until)


def _refuse(row: Restriction) -> ApiError:
    word = _WORDS[row.kind]
    when = "for good" if row.until is None else f"until {_until(row)}"
    return ApiError(403, f"you are {word} in this room {when}", kind=word, until=_until(row))


def check_can_enter(room_id: int, user: User) -> None:
    """403 if the user is banned from the room (``/bind``)."""
    row = active_restriction(room_id, user.id, (BAN,))
    if row is not None:
        raise _refuse(row)


def check_can_post(room_id: int, user: User) -> None:
    """403 if the user is banned or muted in the room (``/say``, images, ``/typing``)."""
    row = active_restriction(room_id, user.id, (BAN, MUTE))
    if row is not None:
        raise _refuse(row)


def _owned_room(room_id: int) -> tuple[Room, User]:
    room = get_room(room_id)
    me = current_user()
    assert me is not None  # login_required ran first
    if room.created_by != me.id:
        raise ApiError(403, "only the room's owner may do that")
    return room, me


def _target(data: Any, me: User) -> User:
    from .chat import int_field

    target = get_db().get(User, int_field(data, "uid"))
    if target is None:
        raise ApiError(404, "no such user")
    if target.id == me.id:
        raise ApiError(400, "you cannot do that to yourself")
    return target


def _restrict(room_id: int, kind: str) -> ResponseReturnValue:
    from .chat import flush_room, int_field

    room, me = _owned_room(room_id)
    data = request_data()
    target = _target(data, me)
    minutes = int_field(data, "minutes", required=False)
    if minutes is not None and minutes > MINUTES_MAX:
        raise ApiError(400, f"minutes must be at most {MINUTES_MAX} (leave it out for good)")
    until = None if minutes is None else utcnow() + timedelta(minutes=minutes)
    db = get_db()
    # One row per (room, user, kind): a new ban replaces the last one.
    db.execute(
        delete(Restriction).where(
            Restriction.room_id == room.id, Restriction.user_id == target.id, Restriction.kind == kind
        )
    )
    row = Restriction(room_id=room.id, user_id=target.id, kind=kind, until=until, created_by=me.id)
    db.add(row)
    db.commit()
    log.info("user %s %s user %s in room %s until %s", me.id, _WORDS[kind], target.id, room.id, until)
    # The member's page blocks itself; the owner's follows in its member menu.
    frame = {"type": _WORDS[kind], "room_id": room.id, "uid": target.uid, "until": _until(row)}
    pushed = True
    try:
        push = get_push()
        if kind == BAN:
            # Every connection of the member leaves the group (a tab of another
            # room was never in it: leaving is then a no-op).
            clients = push.get_client_id_by_uid(target.uid)
            with push.batch() as batch:
                for client_id in clients:
                    batch.leave_group(client_id, room_group(room.id))
                    batch.leave_group(client_id, lobby_group(room.id))
                batch.send_to_uid([target.uid, me.uid], frame)
            flush_room(room.id)
        else:
            push.send_to_uid([target.uid, me.uid], frame)
    except PushError as exc:
        # Stored, and enforced from now on; the member's page learns at its next request.
        log.error("%s of user %s in room %s stored but not pushed: %s", kind, target.id, room.id, exc)
        pushed = False
    return jsonify(uid=target.uid, room_id=room.id, kind=_WORDS[kind], until=_until(row), pushed=pushed)


def _lift(room_id: int, kind: str) -> ResponseReturnValue:
    room, me = _owned_room(room_id)
    target = _target(request_data(), me)
    db = get_db()
    db.execute(
        delete(Restriction).where(
            Restriction.room_id == room.id, Restriction.user_id == target.id, Restriction.kind == kind
        )
    )
    db.commit()
    log.info("user %s lifted the %s of user %s in room %s", me.id, kind, target.id, room.id)
    frame = {"type": "un" + _WORDS[kind], "room_id": room.id, "uid": target.uid}
    try:
        get_push().send_to_uid([target.uid, me.uid], frame)
    except PushError as exc:
        log.warning("un%s of user %s not pushed: %s", _WORDS[kind], target.id, exc)
    return jsonify(uid=target.uid, room_id=room.id, kind=_WORDS[kind], lifted=True)


@bp.post("/rooms/<int:room_id>/ban")
@login_required
def ban(room_id: int) -> ResponseReturnValue:
    """Ban a member from the room (for ``minutes``, or for good)."""
    return _restrict(room_id, BAN)


@bp.post("/rooms/<int:room_id>/unban")
@login_required
def unban(room_id: int) -> ResponseReturnValue:
    """Lift a member's ban."""
    return _lift(room_id, BAN)


@bp.post("/rooms/<int:room_id>/mute")
@login_required
def mute(room_id: int) -> ResponseReturnValue:
    """Mute a member in the room (for ``minutes``, or for good): they still read."""
    return _restrict(room_id, MUTE)


@bp.post("/rooms/<int:room_id>/unmute")
@login_required
def unmute(room_id: int) -> ResponseReturnValue:
    """Lift a member's mute."""
    return _lift(room_id, MUTE)
