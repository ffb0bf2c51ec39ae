"""The SQL statements of the room item's requests: one ``/say``, one read, one ``/typing``.

The web app runs in this process (``create_app`` and Flask's test client, like
bench/lobby.py) on a fresh SQLite; SQLAlchemy's ``before_cursor_execute``
event records every statement of one request, the rate limits' own
connection included. Nothing is timed here: the count and the statements are
the figures.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from bench.systems import start_push_server

__all__ = ["count_sql", "sql_cost"]


def _brief(statement: str) -> str:
    """A statement's verb and table ("SELECT users", "INSERT rate_limits"), for the report."""
    verb = statement.split(None, 1)[0].upper() if statement.strip() else "?"
    found = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", statement, re.IGNORECASE)
    brief = f"{verb} {found.group(1)}" if found else verb
    if verb == "INSERT" and "ON CONFLICT" in statement.upper():
        brief += " (upsert)"
    lock = re.search(r"\bFOR (?:NO KEY )?UPDATE\b", statement, re.IGNORECASE)
    if verb == "SELECT" and lock:
        brief += f" {lock.group(0).upper()}"
    return brief


def sql_cost(instance: Any) -> dict[str, dict[str, list[str]]]:
    """The SQL statements of one ``/say``, one read (a position already stored) and one ``/typing``, in order.

    The app runs in this process against a fresh SQLite, with the limits' and
    sessions' defaults, pushing to a push server of its own: /say's
    idempotency keys are the message ids, which the run's own app repeats.
    CSRF is off and password hashing cheap (neither is SQL).
    """
    from web_app import create_app

    secret = secrets.token_hex(16)
    push, _, api_port = start_push_server(secret, "push_server-room-sql")
    try:
        # Its request log would drown the run's.
        logging.getLogger("web_app").setLevel(logging.WARNING)
        app = create_app(
            {
                "INSTANCE_PATH": str(instance),
                "SECRET_KEY": "bench-room-sql",
                "PUSH_API_URL": f"http://127.0.0.1:{api_port}",
                "PUSH_SECRET": secret,
                "WTF_CSRF_ENABLED": False,
                "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            }
        )
        return _statements(app)
    finally:
        push.stop()


def _statements(app: Any) -> dict[str, dict[str, list[str]]]:
    from sqlalchemy import event

    json_headers = {"Accept": "application/json"}
    alice, bob = app.test_client(), app.test_client()
    for client, name in ((alice, "alice"), (bob, "bob")):
        client.post("/register", json={"name": name, "password": "benchmark-pw"}, headers=json_headers)
    room_id = alice.post("/rooms", json={"name": "sql"}, headers=json_headers).json["id"]
    # The requests' engine and the rate limits' own (web_app/models.init_db).
    engines = [app.extensions["webchat_db"].kw["bind"], app.extensions["webchat_counts_db"]]
    statements: list[str] = []

    def counted(*call: Any) -> None:
        statements.append(call[2])

    def measure(client: Any, path: str, body: dict[str, Any]) -> tuple[list[str], Any]:
        statements.clear()
        for engine in engines:
            event.listen(engine, "before_cursor_execute", counted)
        try:
            answer = client.post(path, json=body, headers=json_headers)
        finally:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", counted)
        if answer.status_code >= 300:
            raise RuntimeError(f"{path} answered {answer.status_code}: {answer.get_data(as_text=True)[:200]}")
        return list(statements), answer.json

    say = {"room_id": room_id, "type": "all", "content": "hello"}
    _, first = measure(alice, "/say", say)
    measure(bob, f"/rooms/{room_id}/read", {"message_id": first["message"]["id"]})  # the row is made once
    full: dict[str, list[str]] = {}
    full["say"], second = measure(alice, "/say", say)
    full["read"], _ = measure(bob, f"/rooms/{room_id}/read", {"message_id": second["message"]["id"]})
    full["typing"], _ = measure(bob, "/typing", {"room_id": room_id})
    return {"brief": {kind: [_brief(s) for s in done] for kind, done in full.items()}, "full": full}


def count_sql(instance: Any, into: dict[str, Any]) -> None:
    """:func:`sql_cost` into ``into``, or its failure under ``error`` (for a thread)."""
    try:
        into.update(sql_cost(instance))
    except Exception as exc:  # the latency figures stand without it
        into["error"] = f"{type(exc).__name__}: {exc}"
