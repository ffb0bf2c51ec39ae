"""The app's PushClient and the names it uses on the push server."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Flask, current_app, request

from push_client import PushClient

log = logging.getLogger(__name__)

__all__ = ["get_push", "init_push", "room_group", "ws_url"]


def init_push(app: Flask) -> None:
    """Remember how to reach the push server; the client itself is made on first use."""
    # Made lazily so the app (and its pages) start even before PUSH_SECRET is set;
    # the endpoints that push then answer 503 with a clear error instead.
    app.extensions["webchat_push"] = None


def get_push() -> PushClient:
    """The app's PushClient (one per app, shared by every request and thread)."""
    client = current_app.extensions.get("webchat_push")
    if client is None:
        client = PushClient(
            api_url=current_app.config["PUSH_API_URL"],
            secret=current_app.config["PUSH_SECRET"] or None,
            timeout=float(current_app.config["PUSH_TIMEOUT"]),
        )
        current_app.extensions["webchat_push"] = client
    return client


def room_group(room_id: int) -> str:
    """The push group of a room's connections."""
    return f"room:{room_id}"


def ws_url() -> str:
    """Where this request's page should connect: ``PUSH_WS_URL``, or the request's host on ``PUSH_WS_PORT``."""
    configured = current_app.config.get("PUSH_WS_URL")
    if configured:
        return str(configured)
    scheme = "wss" if request.scheme == "https" else "ws"
    # request.host may carry the web app's port and, for IPv6, brackets; keep
    # the host part only and put the push server's port on it.
    host = urlsplit(f"//{request.host}").hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{current_app.config['PUSH_WS_PORT']}/ws"
