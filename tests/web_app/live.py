"""The chat app served for real: werkzeug in a thread on a free port, and HTTP users that call it.

Shared by the end-to-end tests (tests/web_app) and the browser tests (tests/browser).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import threading
import time
import uuid
import zlib
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from tests.servers import TIMEOUT, PushServerProcess

__all__ = ["PG_URL", "TINY_PNG", "HttpUser", "Live", "LiveServer", "make_app", "postgres_schema", "receive_until"]

# test.sh documents DATABASE_URL_TEST; the default is the CI database.
PG_URL = os.environ.get("DATABASE_URL_TEST") or "postgresql://127.0.0.1:5432/test"


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour, built by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


TINY_PNG = _png(4, 4, (79, 91, 213))

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def make_app(instance: Path, database_url: str | None, **config: Any) -> Flask:
    """A web_app for one test: its own instance folder and database."""
    from web_app import create_app

    settings = {
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": "test-secret-key",
        "DATABASE_URL": database_url,
        "TESTING": True,
        # Cheap hashing keeps the suite fast; test_auth checks the real default separately.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }
    settings.update(config)
    return create_app(settings)


class postgres_schema:
    """A fresh schema in the test database, dropped afterwards, so test runs never collide."""

    _reachable: bool | None = None

    def __init__(self) -> None:
        self.name = f"webchat_test_{uuid.uuid4().hex[:12]}"

    @classmethod
    def reachable(cls) -> bool:
        """Whether PostgreSQL answers at PG_URL (asked once per run)."""
        if cls._reachable is None:
            try:
                psycopg.connect(PG_URL, connect_timeout=2).close()
                cls._reachable = True
            except psycopg.Error:
                cls._reachable = False
        return cls._reachable

    def __enter__(self) -> str:
        if not self.reachable():
            pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.name}"')
        # libpq's `options` puts every connection of the app in the schema.
        return f"{PG_URL}?options=-csearch_path%3D{self.name}"

    def __exit__(self, *exc_info: object) -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')


class LiveServer:
    """The app on a real HTTP port, served by werkzeug's threaded server in a background thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        # A short poll interval: shutdown() waits for the loop to notice it.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-web-app", daemon=True
        )

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(TIMEOUT)
        self._server.server_close()


_names = count(1)


class Live:
    """The push server and the web app, both for real, wired together; and a way to make users."""

    def __init__(
        self,
        push: PushServerProcess,
        instance: Path,
        database_url: str | None,
        ws_url: str | None = None,
        **config: Any,
    ) -> None:
        """``ws_url``: where pages connect, if not to ``push`` (another node of its cluster); ``config``: app settings."""
        self.push = push
        app = make_app(
            instance,
            database_url,
            PUSH_API_URL=push.api_url,
            PUSH_SECRET=push.secret,
            PUSH_WS_URL=ws_url or push.ws_url,
            **config,
        )
        self.web = LiveServer(app)
        self.url = self.web.url

    def __enter__(self) -> Live:
        self.web.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.web.stop()

    def user(self, name: str | None = None) -> HttpUser:
        """A new registered user."""
        return HttpUser(self.url, name or f"user{next(_names)}").register()


class HttpUser:
    """One person using the chat over HTTP, with their own cookies and CSRF token."""

    def __init__(self, base_url: str, name: str, password: str = "correct horse battery") -> None:
        self.base_url = base_url
        self.name = name
        self.password = password
        self.http = requests.Session()
        self.http.headers["Accept"] = "application/json"
        self.uid: str | None = None
        self.csrf = ""

    def refresh_csrf(self) -> str:
        """Read the CSRF token from a page, as the browser does."""
        page = self.http.get(self.base_url + "/login", headers={"Accept": "text/html"}, timeout=TIMEOUT)
        match = _CSRF_META.search(page.text)
        assert match, "every page carries a csrf-token meta tag"
        self.csrf = match.group(1)
        return self.csrf

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        """POST with the CSRF header."""
        if not self.csrf:
            self.refresh_csrf()
        headers = {"X-CSRFToken": self.csrf, **kwargs.pop("headers", {})}
        return self.http.post(self.base_url + path, json=json_body, headers=headers, timeout=TIMEOUT, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET asking for JSON."""
        return self.http.get(self.base_url + path, timeout=TIMEOUT, **kwargs)

    def register(self) -> HttpUser:
        """Create the account (which logs in)."""
        answer = self.post("/register", {"name": self.name, "password": self.password})
        assert answer.status_code == 200, answer.text
        self.uid = answer.json()["uid"]
        self.csrf = answer.json()["csrf_token"]
        return self

    def create_room(self, name: str) -> int:
        """Create a room; its id."""
        answer = self.post("/rooms", {"name": name})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    def bind(self, client_id: str, room_id: int) -> requests.Response:
        return self.post("/bind", {"client_id": client_id, "room_id": room_id})

    def say(self, room_id: int, content: str, to_uid: str | None = None) -> requests.Response:
        body: dict[str, Any] = {"room_id": room_id, "type": "to" if to_uid else "all", "content": content}
        if to_uid:
            body["to_uid"] = to_uid
        return self.post("/say", body)

    def history(self, room_id: int, **params: Any) -> list[dict[str, Any]]:
        answer = self.get(f"/rooms/{room_id}/messages", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()["messages"]  # type: ignore[no-any-return]

    async def connect(self, session: aiohttp.ClientSession, ws_url: str, room_id: int) -> tuple[Any, str]:
        """Open a WebSocket like the page does, bind it to ``room_id``; the socket and its client_id."""
        ws = await session.ws_connect(ws_url)
        init = await ws.receive_json(timeout=TIMEOUT)
        assert init["type"] == "init"
        answer = await asyncio.to_thread(self.bind, init["client_id"], room_id)
        assert answer.status_code == 200, answer.text
        return ws, init["client_id"]


async def receive_until(ws: Any, predicate: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The first JSON frame that satisfies ``predicate``, skipping others; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching frame arrived in time")
        message = await ws.receive(timeout=remaining)
        if message.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"socket ended or sent non-text: {message}")
        frame = json.loads(message.data)
        if predicate(frame):
            return frame  # type: ignore[no-any-return]
