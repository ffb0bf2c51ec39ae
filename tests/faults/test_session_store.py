"""The web app's session store (REDIS_URL) dying mid-request: a stored message is answered as stored, never as a 500.

In a Sentinel failover the master can die after a request read its session and
before the session's refreshed lifetime is written back. Answering that /say
500 tells the page the message was not sent while it is stored (and pushed):
room.js keeps the text and the person sends it again, a second copy. Counted
end to end by test_deploy_pages.py (``stored_unanswered``); here the moment is
hit for sure: the real redis-server is killed by an after-request hook, once
the view is done and before the session is saved.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from ..servers import PushServerProcess, RedisServer, started_redis
from ..web_app.live import make_app

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def _app(tmp_path: Path, redis_server: RedisServer, push_server: PushServerProcess) -> Flask:
    """The web app with its sessions in ``redis_server``, as gunicorn runs it: an error is answered, not raised into the test."""
    return make_app(
        tmp_path / "instance",
        None,
        REDIS_URL=redis_server.url,
        PUSH_API_URL=push_server.api_url,
        PUSH_SECRET=push_server.secret,
        TESTING=False,
    )


@pytest.mark.parametrize("path", ["/say", "/login"])
def test_a_session_store_lost_after_the_view(push_server: PushServerProcess, tmp_path: Path, path: str) -> None:
    """/say whose session could not be refreshed answers 201 with its message, not 500; a login that could not be saved still fails."""
    with started_redis() as redis_server:
        app = _app(tmp_path, redis_server, push_server)
        armed = {"on": False}

        @app.after_request
        def kill_the_store(response: Any) -> Any:
            # After the view, before Flask saves the session: the moment a failover can hit.
            if armed["on"] and request.method == "POST" and request.path == path:
                redis_server.stop()
            return response

        client = app.test_client()

        def csrf() -> str:
            token = _CSRF_META.search(client.get("/login").get_data(as_text=True))
            assert token
            return token.group(1)

        headers = {"X-CSRFToken": csrf(), "Accept": "application/json"}
        credentials = {"name": "alice", "password": "correct horse battery"}
        answer = client.post("/register", json=credentials, headers=headers)
        assert answer.status_code == 200, answer.text
        headers["X-CSRFToken"] = answer.get_json()["csrf_token"]
        answer = client.post("/rooms", json={"name": "general"}, headers=headers)
        assert answer.status_code == 201, answer.text
        room_id = answer.get_json()["id"]

        armed["on"] = True
        if path == "/say":
            answer = client.post("/say", json={"room_id": room_id, "type": "all", "content": "hi"}, headers=headers)
            assert answer.status_code == 201, answer.text
            assert answer.get_json()["message"]["content"] == "hi"
        else:
            # A login changes the session: if it cannot be saved, the person is not logged in, and must not be told so.
            client.post("/logout", headers=headers)
            headers["X-CSRFToken"] = csrf()
            answer = client.post("/login", json=credentials, headers=headers)
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "2" and answer.get_json()["code"] == "unavailable"

        armed["on"] = False
        redis_server.start()  # empty: the session is gone, so the person logs in again
        answer = client.post("/login", json=credentials, headers={**headers, "X-CSRFToken": csrf()})
        assert answer.status_code == 200, answer.text


def test_a_session_store_away_before_the_request_is_a_503_to_try_again(
    push_server: PushServerProcess, tmp_path: Path
) -> None:
    """With the session store unreachable, pages and AJAX calls get 503 with Retry-After (JSON or the styled page), never a 500."""
    with started_redis() as redis_server:
        app = _app(tmp_path, redis_server, push_server)
        client = app.test_client()
        assert client.get("/login").status_code == 200
        redis_server.stop()
        answer = client.get("/rooms", headers={"Accept": "application/json"})
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "2", answer.text
        assert "Try again in a moment" in answer.get_json()["error"]
        page = client.get("/login", headers={"Accept": "text/html"})
        assert page.status_code == 503 and "Back in a moment" in page.get_data(as_text=True)
        redis_server.start()
        assert client.get("/login").status_code == 200
