"""``/admin``: a live status page for the users named in ``ADMIN_USERS``.

The page (templates/admin/status.html + static/admin.js) polls
``/admin/status.json`` every few seconds and draws the last minutes from its
own samples: nodes with their connections and uptime (the push server's
``get_nodes``), totals, frames per second and drops (from the push server's
``/metrics``, the node behind ``PUSH_API_URL``; Prometheus gives the whole
cluster), rooms by members and the events backlog.

``ADMIN_USERS`` is a comma-separated list of user names (environment, or the
app's config). Anyone else gets 403; someone not logged in is sent to log in.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import requests
from flask import Blueprint, Flask, abort, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

import push_protocol
from push_client import PushClient, PushError

from .auth import current_user, login_required
from .metrics import init_metrics
from .models import Room, get_db
from .push import get_push
from .rooms import LOBBY_LIMIT, online_counts

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")

#: Rooms the page lists, most members first.
TOP_ROOMS = 20


def init_app(app: Flask) -> None:
    """The admin page and the web app's /metrics (one line in create_app)."""
    app.register_blueprint(bp)
    init_metrics(app)


def admin_names() -> set[str]:
    """The user names allowed on the page."""
    configured = current_app.config.get("ADMIN_USERS")
    if configured is None:
        configured = os.environ.get("ADMIN_USERS", "")
    if isinstance(configured, str):
        configured = configured.split(",")
    return {str(name).strip() for name in configured if str(name).strip()}


def _require_admin() -> None:
    user = current_user()
    if user is None or user.name not in admin_names():
        abort(403)


def get_nodes(push: PushClient) -> list[dict[str, Any]]:
    """The cluster's nodes: push_client's get_nodes() when it has it, else one signed call of our own."""
    method = getattr(push, "get_nodes", None)
    if method is not None:
        return list(method())
    config = current_app.config
    path = push_protocol.operation_path("get_nodes")
    headers = push_protocol.sign_request(config["PUSH_SECRET"] or "", "POST", path, b"{}")
    headers["Content-Type"] = "application/json"
    try:
        answer = requests.post(
            config["PUSH_API_URL"] + path, data=b"{}", headers=headers, timeout=float(config["PUSH_TIMEOUT"])
        )
    except requests.RequestException as exc:
        raise PushError(f"cannot reach the push server: {exc}") from exc
    if answer.status_code == 200:
        return list(answer.json()["result"])
    raise PushError(f"get_nodes answered {answer.status_code}")


def push_metrics() -> dict[str, Any]:
    """The counters the page charts, from the push server's /metrics (unsigned); {} if unreachable."""
    config = current_app.config
    try:
        answer = requests.get(config["PUSH_API_URL"] + "/metrics", timeout=float(config["PUSH_TIMEOUT"]))
        answer.raise_for_status()
    except requests.RequestException as exc:
        log.warning("cannot read the push server's metrics: %s", exc)
        return {}
    found: dict[str, Any] = {"dropped": {}}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "push_frames_sent_total":
                found["frames_sent"] = sample.value
            elif sample.name == "push_clients_dropped_total":
                found["dropped"][sample.labels["reason"]] = sample.value
            elif sample.name == "push_events_pending":
                found["events_pending"] = sample.value
            elif sample.name == "push_connections":
                found["connections"] = sample.value
            elif sample.name == "push_started_timestamp_seconds":
                found["started"] = sample.value
    return found


def status() -> dict[str, Any]:
    """Everything the page shows, as of now."""
    push = get_push()
    metrics = push_metrics()
    problems: list[str] = []
    try:
        nodes = get_nodes(push)
    except PushError as exc:
        # A server without get_nodes yet still says how many it holds.
        problems.append(str(exc))
        nodes = []
        if "connections" in metrics:
            nodes = [
                {"node": "(this node)", "connections": int(metrics["connections"]), "started": metrics.get("started")}
            ]
    try:
        online_users: int | None = push.get_all_uid_count()
    except PushError as exc:
        problems.append(str(exc))
        online_users = None
    rooms = get_db().scalars(select(Room).order_by(Room.id.desc()).limit(LOBBY_LIMIT)).all()
    counts = online_counts([room.id for room in rooms]) or {}
    busiest = sorted(rooms, key=lambda room: (-counts.get(room.id, 0), room.name))[:TOP_ROOMS]
    by_members = [{"id": room.id, "name": room.name, "members": counts.get(room.id, 0)} for room in busiest]
    return {
        "time": time.time(),
        "nodes": nodes,
        "total_connections": sum(int(node["connections"]) for node in nodes),
        "online_users": online_users,
        "rooms": by_members,
        "frames_sent": metrics.get("frames_sent"),
        "dropped": sum(metrics.get("dropped", {}).values()) if metrics else None,
        "dropped_by_reason": metrics.get("dropped", {}),
        "events_pending": metrics.get("events_pending"),
        "problems": problems,
    }


@bp.get("")
@login_required
def page() -> ResponseReturnValue:
    """The status page."""
    _require_admin()
    return render_template("admin/status.html", user=current_user())


@bp.get("/status.json")
@login_required
def status_json() -> ResponseReturnValue:
    """What the page polls."""
    _require_admin()
    return jsonify(status())
