"""Who is online, site-wide: the push server's events in, the lobby's people list out.

- ``POST /push/events``: the push server's signed event batches (SPEC §8). A
  request whose signature does not verify with PUSH_SECRET is refused with 401
  and changes nothing. Each event id is applied once: ids are kept in
  ``push_events_seen`` for :data:`SEEN_MAX_AGE` (far longer than the push
  server retries), so a batch delivered twice changes nothing the second time.
- ``users.online`` and ``users.last_seen`` follow ``uid_online`` /
  ``uid_offline`` (``last_seen`` also moves on each ``client_closed``).
- ``GET /people``: every user with ``online`` and ``last_seen``, online first.
- ``POST /people/watch {client_id}``: the lobby's connection is bound to its user
  and put in the ``lobby`` group, which receives
  ``{"type":"presence","uid","name","online","last_seen"}`` on each change.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import DateTime, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

import push_protocol
from push_client import PushError

from .auth import current_user, login_required
from .errors import ApiError, request_data
from .models import Base, User, get_db, isoformat, utcnow
from .push import get_push, ws_url

log = logging.getLogger(__name__)

bp = Blueprint("presence", __name__)

#: The push group of every open lobby page.
LOBBY_GROUP = "lobby"
#: How long an applied event id is remembered. The push server retries for
#: PUSH_EVENTS_RETRY_S (300 s by default); a day leaves a wide margin.
SEEN_MAX_AGE = timedelta(days=1)
#: Events in one request at most (the push server sends up to 500).
MAX_EVENTS = 5000
#: The people list shows this many users at most, online ones first.
PEOPLE_LIMIT = 200


class SeenEvent(Base):
    """An event id already applied, and when."""

    __tablename__ = "push_events_seen"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


def init_presence(app: Flask) -> None:
    """Let templates ask for the push server's URL (the presence columns: web_app/schema.py)."""
    app.jinja_env.globals["people_ws_url"] = ws_url


def person(user: User) -> dict[str, Any]:
    """One user as the people list and the presence frames show them."""
    return {
        "uid": user.uid,
        "name": user.name,
        "online": bool(user.online),
        "last_seen": isoformat(user.last_seen) if user.last_seen else None,
    }


@bp.get("/people")
@login_required
def people() -> ResponseReturnValue:
    """Every user, online first, then the most recently seen."""
    users = (
        get_db()
        .scalars(
            select(User).order_by(User.online.desc(), User.last_seen.desc().nulls_last(), User.id).limit(PEOPLE_LIMIT)
        )
        .all()
    )
    return jsonify(people=[person(user) for user in users])


@bp.post("/people/watch")
@login_required
def watch() -> ResponseReturnValue:
    """Bind the lobby's connection to the user (it counts as online) and let it hear presence changes."""
    client_id = request_data().get("client_id")
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 200:
        raise ApiError(400, "client_id must be a client id string")
    me = current_user()
    assert me is not None
    try:
        push = get_push()
        bound = push.get_uid_by_client_id(client_id)
        if bound is not None and bound != me.uid:
            raise ApiError(403, "that client belongs to another user")
        with push.batch() as batch:
            batch.bind_uid(client_id, me.uid)
            batch.join_group(client_id, LOBBY_GROUP)
    except PushError as exc:
        raise ApiError(503, f"the push server is unavailable: {exc}") from exc
    return jsonify(ok=True)


@bp.post("/push/events")
def receive_events() -> ResponseReturnValue:
    """Apply a signed batch of events from the push server; each id once."""
    body = request.get_data(cache=False)
    secret = current_app.config.get("PUSH_SECRET") or ""
    refused = (
        "PUSH_SECRET is not set"
        if not secret
        else push_protocol.verify_request(secret, request.method, request.path, request.headers, body)
    )
    if refused:
        log.warning("refused events from %s: %s", request.remote_addr, refused)
        return jsonify(error=f"not authenticated: {refused}"), 401
    events = _parse(body)
    db = get_db()
    ids = [event["id"] for event in events]
    seen = set(db.scalars(select(SeenEvent.id).where(SeenEvent.id.in_(ids)))) if ids else set()
    changed: dict[int, User] = {}
    for event in events:
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        db.add(SeenEvent(id=event["id"]))
        user = _apply(event)
        if user is not None:
            changed[user.id] = user
    db.execute(delete(SeenEvent).where(SeenEvent.seen_at < utcnow() - SEEN_MAX_AGE))
    try:
        db.commit()
    except IntegrityError:
        # The same batch arrived twice at once (a retry racing the original):
        # the other request applied it; this one changes nothing and is
        # answered so that the push server tries again and finds it seen.
        db.rollback()
        return jsonify(error="applied concurrently; retry"), 503
    if changed:
        _announce(list(changed.values()))
    return jsonify(ok=True, applied=len(events) - (len(ids) - len(set(ids))))


def _parse(body: bytes) -> list[dict[str, Any]]:
    import json

    try:
        data = json.loads(body)
    except ValueError:
        raise ApiError(400, "the body must be JSON") from None
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise ApiError(400, f'the body must be {{"events": [...]}} with at most {MAX_EVENTS} events')
    for event in events:
        if not (
            isinstance(event, dict)
            and isinstance(event.get("id"), str)
            and 1 <= len(event["id"]) <= 200
            and isinstance(event.get("type"), str)
        ):
            raise ApiError(400, "every event needs a string id (1-200 characters) and a type")
    return events


def _apply(event: dict[str, Any]) -> User | None:
    """Change the user the event is about; the user if their presence changed."""
    kind = event["type"]
    if kind not in ("uid_online", "uid_offline", "client_closed"):
        return None
    uid = event.get("uid")
    if not isinstance(uid, str) or not uid.isdigit():
        return None  # not one of our users (another app sharing the push server)
    user = get_db().get(User, int(uid))
    if user is None:
        return None
    when = event.get("time")
    moment = datetime.fromtimestamp(when, timezone.utc) if isinstance(when, (int, float)) else utcnow()
    if kind == "uid_online":
        user.online = True
    elif kind == "uid_offline":
        user.online = False
    if user.last_seen is None or _aware(user.last_seen) < moment:
        user.last_seen = moment
    return user


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _announce(users: list[User]) -> None:
    """Tell every open lobby; a push server that cannot be reached only delays the lists (they reload)."""
    try:
        with get_push().batch() as batch:
            for user in users:
                batch.send_to_group(LOBBY_GROUP, {"type": "presence", **person(user)})
    except PushError as exc:
        log.warning("cannot push presence changes: %s", exc)
