"""The lobby (rooms with their online counts), creating a room, and the room page."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from push_client import PushError

from . import limits
from .auth import clean_name, current_user, login_required
from .errors import ApiError, request_data, wants_json
from .models import ROOM_NAME_MAX, Room, get_db, insert_unique, isoformat
from .push import get_push, room_group, ws_url

log = logging.getLogger(__name__)

bp = Blueprint("rooms", __name__)

#: The lobby shows this many rooms, newest first, so one page never asks the push
#: server about an unbounded number of groups.
LOBBY_LIMIT = 200


def online_counts(room_ids: list[int]) -> dict[int, int] | None:
    """How many distinct users are in each room right now; None if the push server cannot say."""
    if not room_ids:
        return {}
    try:
        with get_push().batch() as batch:
            # Batch calls return BatchResult placeholders, though typed like PushClient's.
            queued: Any = batch
            results = [queued.get_uid_count_by_group(room_group(room_id)) for room_id in room_ids]
    except PushError as exc:
        # The lobby still lists the rooms; it just cannot say who is there.
        log.warning("cannot get online counts from the push server: %s", exc)
        return None
    return {room_id: int(result.value) for room_id, result in zip(room_ids, results, strict=True)}


def get_room(room_id: int) -> Room:
    """The room, or a 404."""
    room = get_db().get(Room, room_id)
    if room is None:
        raise ApiError(404, "no such room")
    return room


# Decorators apply bottom-up: "/" is registered first, so url_for() names it.
@bp.get("/rooms")
@bp.get("/")
@login_required
def lobby() -> ResponseReturnValue:
    """Rooms with their online counts: a page, or JSON when asked."""
    rooms = get_db().scalars(select(Room).order_by(Room.id.desc()).limit(LOBBY_LIMIT)).all()
    counts = online_counts([room.id for room in rooms])
    from .reads import unread_counts  # reads builds on this module

    me = current_user()
    assert me is not None
    unread = unread_counts(me, [room.id for room in rooms])
    listed: list[dict[str, Any]] = [
        {
            "id": room.id,
            "name": room.name,
            "online": None if counts is None else counts.get(room.id, 0),
            "unread": unread.get(room.id, 0),
        }
        for room in rooms
    ]
    if wants_json():
        return jsonify(rooms=listed)
    return render_template("rooms/lobby.html", rooms=listed, user=me, ws_url=ws_url())


@bp.post("/rooms")
@login_required
def create_room() -> ResponseReturnValue:
    """Create a room."""
    name = clean_name(request_data().get("name"), ROOM_NAME_MAX, "name")
    user = current_user()
    assert user is not None
    limits.enforce("rooms", limits.address())
    room = Room(name=name, created_by=user.id)
    if not insert_unique(room):
        raise ApiError(409, "a room with that name exists")
    log.info("user %s created room %s (%s)", user.id, room.id, room.name)
    if wants_json():
        return jsonify(id=room.id, name=room.name), 201
    return redirect(url_for("rooms.room_page", room_id=room.id))


@bp.get("/rooms/<int:room_id>")
@login_required
def room_page(room_id: int) -> ResponseReturnValue:
    """The chat page of one room."""
    room = get_room(room_id)
    if wants_json():
        return jsonify(id=room.id, name=room.name)
    from .models import MUTE
    from .moderation import active_restriction
    from .reads import read_position  # reads builds on this module

    user = current_user()
    assert user is not None
    # A muted member's page says so from the start (a ban is refused at /bind).
    muted = active_restriction(room.id, user.id, (MUTE,))
    return render_template(
        "chat/room.html",
        room=room,
        user=user,
        ws_url=ws_url(),
        owner=room.created_by == user.id,
        read_position=read_position(user.id, room.id),
        muted_until=None if muted is None else ("" if muted.until is None else isoformat(muted.until)),
    )
