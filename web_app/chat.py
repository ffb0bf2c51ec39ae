"""The chat itself: /bind, /say, /flush, history, and image messages.

Every action is stored first and pushed second. If the push fails the message
stays stored (so it shows up in history and in a reconnecting page's catch-up),
the failure is logged, and the caller is told with a 502 that carries the
stored message.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import or_, select

from push_client import PushError

from .auth import current_user, login_required
from .avatars import avatar_urls
from .errors import ApiError, json_api, request_data
from .images import image_response, read_image
from .limits import rate_limited
from .models import CONTENT_MAX, Image, Message, User, get_db, store_message
from .moderation import check_can_enter, check_can_post, room_restrictions
from .push import get_push, room_group
from .reads import lobby_group, mark_seen
from .rooms import get_room

log = logging.getLogger(__name__)

bp = Blueprint("chat", __name__)

# Client ids are the push server's URL-safe tokens; anything else cannot be one,
# and refusing it here keeps junk out of the API call and the logs.
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_.~-]{1,128}")
HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 200
FILENAME_MAX = 200


@bp.app_context_processor
def _limits() -> dict[str, int]:
    """The composer's limit for the room page: the one /say checks."""
    return {"content_max": CONTENT_MAX}


def int_field(data: Any, name: str, minimum: int = 1, required: bool = True) -> int | None:
    """An integer field (a JSON number or a decimal string) no smaller than ``minimum``."""
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"{name} is required")
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):
        value = int(value.strip())
    # bool is an int to Python, but `true` is not a room id.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"{name} must be an integer")
    if value < minimum or value > 2**53:
        raise ApiError(400, f"{name} must be at least {minimum}")
    return value


def _me() -> User:
    user = current_user()
    assert user is not None  # login_required ran first
    return user


def _push_unavailable(exc: PushError) -> ApiError:
    log.error("push server call failed: %s", exc)
    return ApiError(503, "the push server is unavailable; try again shortly")


def flush_room(room_id: int) -> tuple[dict[str, str], dict[str, str]]:
    """Push the room's member list (``{uid: name}``, from the connections' sessions) to the room.

    The frame also carries ``avatars`` (``{uid: url}`` for members with a
    picture: web_app/avatars.py); both maps are returned.
    """
    push = get_push()
    group = room_group(room_id)
    sessions = push.get_client_sessions_by_group(group)
    users_list: dict[str, str] = {}
    for session in sessions.values():
        # Connections that joined but were never given a session are nobody yet.
        if isinstance(session, dict) and "uid" in session and "name" in session:
            users_list[str(session["uid"])] = str(session["name"])
    avatars = avatar_urls(list(users_list))
    push.send_to_group(group, {"type": "flush", "users_list": users_list, "avatars": avatars})
    return users_list, avatars


@bp.post("/bind")
@login_required
def bind() -> ResponseReturnValue:
    """Bind the logged-in user to a connection and put it in the room."""
    data = request_data()
    client_id = data.get("client_id")
    if not isinstance(client_id, str) or not CLIENT_ID_RE.fullmatch(client_id):
        raise ApiError(400, "client_id must be a client id string")
    room = get_room(int_field(data, "room_id") or 0)
    me = _me()
    check_can_enter(room.id, me)
    try:
        # Inside the try: a push client that cannot even be made (no
        # PUSH_SECRET) is the push server being unavailable to us, not a 500.
        push = get_push()
        with push.batch() as batch:
            # Batch calls return BatchResult placeholders, though typed like PushClient's.
            queued: Any = batch
            online = queued.is_online(client_id)
            bound = queued.get_uid_by_client_id(client_id)
            previous = queued.get_session(client_id)
        if not online.value:
            raise ApiError(409, "that client is not connected")
        if bound.value is not None and bound.value != me.uid:
            log.warning("user %s tried to bind client %s of uid %s", me.uid, client_id, bound.value)
            raise ApiError(403, "that client belongs to another user")
        old_room = previous.value.get("room_id") if isinstance(previous.value, dict) else None
        with push.batch() as batch:
            batch.bind_uid(client_id, me.uid)
            # One connection shows one room: moving it leaves the old room's group.
            if old_room is not None and old_room != room.id:
                batch.leave_group(client_id, room_group(old_room))
            batch.join_group(client_id, room_group(room.id))
            batch.set_session(client_id, {"uid": me.uid, "name": me.name, "room_id": room.id})
        users_list, avatars = flush_room(room.id)
    except PushError as exc:
        raise _push_unavailable(exc) from exc
    answer: dict[str, Any] = {"ok": True, "uid": me.uid, "name": me.name, "users_list": users_list, "avatars": avatars}
    if room.created_by == me.id:
        # Only the owner moderates: its member menu shows Mute or Unmute, Ban or Unban.
        answer["restrictions"] = room_restrictions(room.id)
    return jsonify(answer)


@bp.post("/flush")
@login_required
def flush() -> ResponseReturnValue:
    """Push the room's current member list to the room."""
    room = get_room(int_field(request_data(), "room_id") or 0)
    try:
        users_list, _avatars = flush_room(room.id)
    except PushError as exc:
        raise _push_unavailable(exc) from exc
    return jsonify(users_list=users_list)


def _recipient(data: Any, me: User, default: str | None = None) -> tuple[str, User | None]:
    """The message's ``type`` and, for a private one, its existing recipient."""
    kind = data.get("type") or default
    if kind not in ("all", "to"):
        raise ApiError(400, 'type must be "all" or "to"')
    if kind == "all":
        return "all", None
    to_id = int_field(data, "to_uid")
    if to_id == me.id:
        raise ApiError(400, "a private message needs someone other than you")
    target = get_db().get(User, to_id)
    if target is None:
        raise ApiError(404, "no such user")
    return "to", target


def _deliver(message: Message) -> ResponseReturnValue:
    """Push a stored message to its room or its two parties, and answer the caller."""
    payload = message.to_dict()
    # Keyed by the stored message: a push retried after an ambiguous failure
    # (here or in push_client) is applied once, cluster-wide.
    key = f"msg:{message.id}"
    try:
        push = get_push()
        if message.type == "to":
            push.send_to_uid([payload["to_uid"], payload["uid"]], payload, idempotency_key=key)
        else:
            # The room, and the lobbies watching it for unread counts (web_app/reads.py).
            push.send_to_group(
                [room_group(message.room_id), lobby_group(message.room_id)], payload, idempotency_key=key
            )
    except PushError as exc:
        log.error("message %s was stored but not pushed: %s", message.id, exc)
        return (
            jsonify(error="stored, but the push server could not deliver it", stored=True, message=payload),
            502,
        )
    return jsonify(message=payload), 201


@bp.post("/say")
@login_required
@rate_limited("posts")
def say() -> ResponseReturnValue:
    """Store a text message, then push it."""
    data = request_data()
    me = _me()
    content = data.get("content")
    if not isinstance(content, str):
        raise ApiError(400, "content must be a string")
    if not content.strip():
        raise ApiError(400, "content must not be empty")
    if len(content) > CONTENT_MAX:
        raise ApiError(400, f"content must be at most {CONTENT_MAX} characters")
    room = get_room(int_field(data, "room_id") or 0)
    kind, target = _recipient(data, me)
    check_can_post(room.id, me)
    message = Message(
        room_id=room.id, user_id=me.id, type=kind, to_id=target.id if target else None, kind="text", content=content
    )
    store_message(get_db(), message)
    return _deliver(message)


def _clean_filename(name: str | None) -> str:
    # Only shown as text (alt text and caption), but keep it short and printable.
    name = "".join(ch for ch in (name or "") if ch.isprintable()).strip()
    return name[:FILENAME_MAX] or "image"


@bp.post("/rooms/<int:room_id>/images")
@login_required
@rate_limited("posts", "uploads")
def upload_image(room_id: int) -> ResponseReturnValue:
    """Store an uploaded image as a message, then push it."""
    room = get_room(room_id)
    me = _me()
    check_can_post(room.id, me)
    upload = request.files.get("file")
    data, content_type = read_image(upload, int(current_app.config["MAX_IMAGE_BYTES"]))
    # A plain upload (no type field) goes to the whole room.
    kind, target = _recipient(request.form, me, default="all")
    db = get_db()
    image = Image(content_type=content_type, data=data)
    message = Message(
        room_id=room.id,
        user_id=me.id,
        type=kind,
        to_id=target.id if target else None,
        kind="image",
        content=_clean_filename(upload.filename if upload is not None else None),
    )
    db.add(image)
    db.flush()
    message.image_id = image.id
    # Image and message are committed together: neither exists without the other.
    store_message(db, message)
    return _deliver(message)


def _visible_to(user: User) -> Any:
    """The SQL condition for messages a user may read: public ones and their own private ones."""
    return or_(Message.type == "all", Message.user_id == user.id, Message.to_id == user.id)


@bp.get("/rooms/<int:room_id>/messages")
@json_api
@login_required
def messages(room_id: int) -> ResponseReturnValue:
    """History, oldest first: the ``limit`` messages after ``after``, or before ``before``, or the latest."""
    room = get_room(room_id)
    # A banned member reads nothing more of the room.
    check_can_enter(room.id, _me())
    after = int_field(request.args, "after", minimum=0, required=False)
    # An older page of history (SPEC §10): the page asks with its oldest id.
    before = int_field(request.args, "before", required=False)
    if after is not None and before is not None:
        raise ApiError(400, "give after or before, not both")
    limit = int_field(request.args, "limit", required=False) or HISTORY_LIMIT_DEFAULT
    if limit > HISTORY_LIMIT_MAX:
        raise ApiError(400, f"limit must be at most {HISTORY_LIMIT_MAX}")
    query = select(Message).where(Message.room_id == room.id, _visible_to(_me()))
    if after is not None:
        rows = list(get_db().scalars(query.where(Message.id > after).order_by(Message.id).limit(limit)))
    else:
        if before is not None:
            query = query.where(Message.id < before)
        rows = list(get_db().scalars(query.order_by(Message.id.desc()).limit(limit)))[::-1]
    listed = [message.to_dict() for message in rows]
    mark_seen(listed, _me(), room.id)
    return jsonify(messages=listed)


@bp.get("/images/<int:image_id>")
@login_required
def image(image_id: int) -> ResponseReturnValue:
    """Serve an image to whoever may see its message, with headers that keep it a picture."""
    db = get_db()
    message = db.scalar(select(Message).where(Message.image_id == image_id, _visible_to(_me())))
    if message is None:
        raise ApiError(404, "no such image")
    stored = db.get(Image, image_id)
    assert stored is not None
    return image_response(stored.data, stored.content_type, f"image-{image_id}", max_age=86400)
