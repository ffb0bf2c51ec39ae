"""The typing indicator: ``POST /typing {room_id, to_uid?}`` pushes "alice is typing" and stores nothing.

Pushed as ``{"type":"typing","room_id","uid","uname"}`` to the room's group
(or, with ``to_uid``, to that user's connections), never to the sender's own
connections. The page sends it at most every few seconds while the user types
and shows it for a few seconds after the last one, so a lost frame costs
nothing and there is no "stopped typing" to send.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from push_client import PushError

from .auth import current_user, login_required
from .errors import ApiError, request_data
from .limits import rate_limited
from .models import User, get_db
from .moderation import check_can_post
from .push import get_push, room_group
from .rooms import get_room

log = logging.getLogger(__name__)

__all__ = ["bp"]

bp = Blueprint("typing_indicator", __name__)


@bp.post("/typing")
@login_required
# Its own limit (RATE_LIMIT_TYPING): the page sends one every few seconds while typing.
@rate_limited("typing")
def typing() -> ResponseReturnValue:
    """Tell the room (or one member) that the caller is typing."""
    from .chat import int_field

    data = request_data()
    me = current_user()
    assert me is not None
    room = get_room(int_field(data, "room_id") or 0)
    to_id = int_field(data, "to_uid", required=False)
    if to_id == me.id:
        raise ApiError(400, "to_uid must be someone other than you")
    if to_id is not None and get_db().get(User, to_id) is None:
        raise ApiError(404, "no such user")
    check_can_post(room.id, me)
    frame = {"type": "typing", "room_id": room.id, "uid": me.uid, "uname": me.name}
    if to_id is not None:
        frame["to_uid"] = str(to_id)
    try:
        push = get_push()
        if to_id is not None:
            push.send_to_uid(to_id, frame)
        else:
            # Not to the sender: none of their tabs (in this room or not) is told.
            mine = push.get_client_id_by_uid(me.uid)
            push.send_to_group(room_group(room.id), frame, exclude_client_ids=mine or None)
    except PushError as exc:
        # Nothing was stored, so nothing is lost: the next keystrokes try again.
        log.warning("typing of user %s in room %s not pushed: %s", me.id, room.id, exc)
        raise ApiError(503, "the push server is unavailable; try again shortly") from exc
    return jsonify(ok=True)
