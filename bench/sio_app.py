"""The peer's chat endpoint: a Flask app that stores a message and emits it, Flask-SocketIO style.

Flask-SocketIO's ``emit`` from a web process configured with a
``message_queue`` is ``RedisManager(write_only=True).emit``: this app does
exactly that after storing the message in SQLite, so ``POST /say`` here is
the peer of webchat's ``/say``. It has no accounts, sessions or CSRF check,
so it does less work per request than web_app does.

Run as ``flask --app bench.sio_app run`` with ``BENCH_REDIS_URL`` and
``BENCH_DB`` (a SQLite file) in the environment.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

import socketio
from flask import Flask, jsonify, request

_local = threading.local()


def _db(path: str) -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(path)
        _local.conn = conn
    return conn


def create_app() -> Flask:
    """The app, configured from the environment."""
    app = Flask(__name__)
    path = os.environ["BENCH_DB"]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS message (id INTEGER PRIMARY KEY, room TEXT, content TEXT, created_at REAL)"
        )
    manager = socketio.RedisManager(os.environ["BENCH_REDIS_URL"], write_only=True)

    @app.post("/say")
    def say() -> Any:
        data = request.get_json(force=True)
        room, content = str(data["room"]), str(data["content"])
        conn = _db(path)
        created = time.time()
        cursor = conn.execute(
            "INSERT INTO message (room, content, created_at) VALUES (?, ?, ?)", (room, content, created)
        )
        conn.commit()
        payload = {"type": "all", "id": cursor.lastrowid, "room_id": room, "content": content, "created_at": created}
        manager.emit("message", payload, namespace="/", room=room)
        return jsonify(message=payload), 201

    return app
