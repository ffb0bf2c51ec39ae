"""Avatars: a user's own picture, uploaded once and shown beside their messages and in member lists.

Without an upload the page draws the user's initials on a colour taken from
their uid (templates/static/render.js), so nothing is stored for most users.
An upload gets the same checks as a chat image (the type sniffed from its
bytes, PNG/JPEG/GIF/WebP only, a size limit: ``MAX_AVATAR_BYTES``) and is
kept in the database, one row per user.

Where the page needs the URL it is carried along: messages gain an
``avatar`` field (``Message.to_dict``), and the member list's ``flush`` frame
and ``/bind``'s answer an ``avatars`` map ``{uid: url}`` (``avatar_urls``).
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .auth import current_user, login_required
from .errors import ApiError
from .images import image_response, read_image
from .models import Avatar, User, get_db

log = logging.getLogger(__name__)

__all__ = ["avatar_urls", "bp"]

bp = Blueprint("avatars", __name__)


def _me() -> User:
    user = current_user()
    assert user is not None  # login_required ran first
    return user


def avatar_urls(uids: list[str]) -> dict[str, str]:
    """``{uid: url}`` for those of ``uids`` who uploaded a picture (one query)."""
    ids = [int(uid) for uid in uids if uid.isdigit()]
    if not ids:
        return {}
    rows = get_db().execute(select(Avatar.user_id, Avatar.version).where(Avatar.user_id.in_(ids)))
    return {str(user_id): f"/avatars/{user_id}?v={version}" for user_id, version in rows}


@bp.post("/avatar")
@login_required
def upload() -> ResponseReturnValue:
    """Store (or replace) the logged-in user's picture; answers its URL."""
    data, content_type = read_image(
        request.files.get("file"), int(current_app.config["MAX_AVATAR_BYTES"]), what="avatars"
    )
    me = _me()
    db = get_db()
    for _attempt in range(2):
        avatar = db.get(Avatar, me.id)
        if avatar is None:
            avatar = Avatar(user_id=me.id, content_type=content_type, data=data, version=1)
            db.add(avatar)
        else:
            avatar.content_type = content_type
            avatar.data = data
            avatar.version = avatar.version + 1
        try:
            db.commit()
            break
        except IntegrityError:
            # Another upload of this user's made the row first: replace that one.
            db.rollback()
    else:
        raise ApiError(409, "another upload of your avatar is under way; try again")
    log.info("user %s uploaded an avatar (%s, %d bytes)", me.id, content_type, len(data))
    return jsonify(avatar=avatar.url)


@bp.delete("/avatar")
@login_required
def remove() -> ResponseReturnValue:
    """Go back to initials."""
    db = get_db()
    avatar = db.get(Avatar, _me().id)
    if avatar is not None:
        db.delete(avatar)
        db.commit()
    return jsonify(avatar=None)


@bp.get("/avatars/<int:uid>")
@login_required
def picture(uid: int) -> ResponseReturnValue:
    """Serve a user's picture to any logged-in user, with headers that keep it a picture."""
    avatar = get_db().get(Avatar, uid) if uid < 2**53 else None
    if avatar is None:
        raise ApiError(404, "no avatar")
    # The URL names the version (?v=): a new upload is a new URL, so it may be kept a week.
    return image_response(avatar.data, avatar.content_type, f"avatar-{uid}", max_age=604800)
