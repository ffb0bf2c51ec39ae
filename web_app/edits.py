"""Editing and deleting messages, and the feed of changes a reconnecting page catches up with.

``PATCH /messages/<id> {content}``: the author edits a text message; pushed
``{"type":"edit","id","room_id","content","edited_at","rev"}`` to those who saw
it (the room, or a private message's two parties). ``DELETE /messages/<id>``:
the author, or the room's owner, deletes it; pushed
``{"type":"delete","id","room_id","rev"}``. History then carries the new
content and ``edited_at``, or ``{"id","room_id","deleted":true,...}`` with no
content.

Every edit or delete gives the message the room's next change number
(``rev``), under the room's row lock as new messages get their ids, so
``GET /rooms/<room_id>/changes?after=<rev>`` gives a page that was away every
change it missed, in order (docs/delivery.md, "Edits and deletes").

Both are rate limited per user (``RATE_LIMIT_EDITS``, web_app/limits.py): past
it the answer is 429 with ``Retry-After`` and the message is left as it was.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, or_, select

from push_client import PushError

from .auth import current_user, login_required
from .errors import ApiError, json_api, request_data
from .limits import rate_limited
from .models import CONTENT_MAX, Message, User, get_db, next_rev, utcnow
from .moderation import check_can_enter, check_can_post
from .push import get_push, room_group
from .rooms import get_room

log = logging.getLogger(__name__)

__all__ = ["bp"]

bp = Blueprint("edits", __name__)

CHANGES_LIMIT_DEFAULT = 200
CHANGES_LIMIT_MAX = 200


def _me() -> User:
    user = current_user()
    assert user is not None  # login_required ran first
    return user


def _visible_message(message_id: int, me: User) -> Message:
    """The message, if it exists and the caller may see it; else 404 (no hint that it exists)."""
    message = get_db().get(Message, message_id)
    if message is None or message.deleted:
        raise ApiError(404, "no such message")
    if message.type == "to" and me.id not in (message.user_id, message.to_id):
        raise ApiError(404, "no such message")
    return message


def _push_change(message: Message, frame: dict[str, Any]) -> bool:
    """Push an edit or delete to those who saw the message; False if the push server could not."""
    key = f"{frame['type']}:{message.id}:{frame['rev']}"
    try:
        push = get_push()
        if message.type == "to":
            push.send_to_uid([str(message.user_id), str(message.to_id)], frame, idempotency_key=key)
        else:
            push.send_to_group(room_group(message.room_id), frame, idempotency_key=key)
    except PushError as exc:
        # Stored: pages find it in the change feed at their next catch-up.
        log.error("%s of message %s was stored but not pushed: %s", frame["type"], message.id, exc)
        return False
    return True


def _answer(frame: dict[str, Any], pushed: bool) -> ResponseReturnValue:
    if not pushed:
        return jsonify(error="stored, but the push server could not deliver it", stored=True, change=frame), 502
    return jsonify(change=frame)


@bp.patch("/messages/<int:message_id>")
@login_required
@rate_limited("edits")
def edit(message_id: int) -> ResponseReturnValue:
    """Replace the text of one of your own text messages."""
    me = _me()
    content = request_data().get("content")
    if not isinstance(content, str):
        raise ApiError(400, "content must be a string")
    if not content.strip():
        raise ApiError(400, "content must not be empty")
    if len(content) > CONTENT_MAX:
        raise ApiError(400, f"content must be at most {CONTENT_MAX} characters")
    message = _visible_message(message_id, me)
    if message.user_id != me.id:
        raise ApiError(403, "you can only edit your own messages")
    if message.kind != "text":
        raise ApiError(400, "only text messages can be edited")
    # A muted or banned member may not change what the room reads either.
    check_can_post(message.room_id, me)
    db = get_db()
    message.rev = next_rev(db, message.room_id)
    message.content = content
    message.edited_at = utcnow()
    db.commit()
    frame = {
        "type": "edit",
        "id": message.id,
        "room_id": message.room_id,
        "content": message.content,
        "edited_at": message.to_dict()["edited_at"],
        "rev": message.rev,
    }
    return _answer(frame, _push_change(message, frame))


@bp.delete("/messages/<int:message_id>")
@login_required
@rate_limited("edits")
def remove(message_id: int) -> ResponseReturnValue:
    """Delete one of your own messages, or any message of a room you own."""
    me = _me()
    message = _visible_message(message_id, me)
    room = get_room(message.room_id)
    if message.user_id != me.id and room.created_by != me.id:
        raise ApiError(403, "you can only delete your own messages (or any in a room you own)")
    db = get_db()
    message.rev = next_rev(db, message.room_id)
    message.deleted = True
    # The text (and an image's name) is gone for good, not just hidden.
    message.content = ""
    db.commit()
    log.info("user %s deleted message %s in room %s", me.id, message.id, message.room_id)
    frame = {"type": "delete", "id": message.id, "room_id": message.room_id, "rev": message.rev}
    return _answer(frame, _push_change(message, frame))


@bp.get("/rooms/<int:room_id>/changes")
@json_api
@login_required
def changes(room_id: int) -> ResponseReturnValue:
    """Messages edited or deleted after change ``after``, in change order; and the room's last change number.

    Without ``after``, only ``rev`` (the room's last change): a page reads it
    before its first page of history and asks for what changed after it.
    """
    from .chat import int_field

    me = _me()
    room = get_room(room_id)
    # Like history: a banned member reads nothing more of the room.
    check_can_enter(room.id, me)
    after = int_field(request.args, "after", minimum=0, required=False)
    limit = int_field(request.args, "limit", required=False) or CHANGES_LIMIT_DEFAULT
    if limit > CHANGES_LIMIT_MAX:
        raise ApiError(400, f"limit must be at most {CHANGES_LIMIT_MAX}")
    db = get_db()
    rev = int(db.scalar(select(func.coalesce(func.max(Message.rev), 0)).where(Message.room_id == room.id)) or 0)
    if after is None:
        return jsonify(rev=rev, messages=[])
    rows = db.scalars(
        select(Message)
        .where(
            Message.room_id == room.id,
            Message.rev > after,
            or_(Message.type == "all", Message.user_id == me.id, Message.to_id == me.id),
        )
        .order_by(Message.rev)
        .limit(limit)
    ).all()
    return jsonify(rev=rev, messages=[row.to_dict() for row in rows])
