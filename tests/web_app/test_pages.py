"""The HTML pages: CSRF meta tag, Content-Security-Policy, no inline script, escaping, the WebSocket URL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask

from web_app.push import ws_url

from .conftest import Visitor
from .live import make_app

SCRIPT_TAG = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S)


def _page_paths(member: Visitor) -> list[str]:
    room_id = member.create_room("<img src=x onerror=alert(1)>")
    return ["/", "/rooms", f"/rooms/{room_id}"]


@pytest.mark.parametrize("path", ["/login", "/register"])
def test_public_pages_carry_csrf_meta_and_csp(visitor: Visitor, path: str) -> None:
    """Login and register pages carry the csrf-token meta tag and a scripts-from-self CSP."""
    page = visitor.client.get(path)
    assert page.status_code == 200
    assert '<meta name="csrf-token" content="' in page.get_data(as_text=True)
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_logged_in_pages_have_no_inline_script_and_escape_names(member: Visitor) -> None:
    """Lobby and room pages load scripts only by src, and show a hostile room name as text."""
    for path in _page_paths(member):
        page = member.client.get(path, headers={"Accept": "text/html"})
        assert page.status_code == 200, path
        html = page.get_data(as_text=True)
        assert '<meta name="csrf-token" content="' in html
        for attributes, body in SCRIPT_TAG.findall(html):
            assert "src=" in attributes and not body.strip(), f"inline script on {path}"
        assert "<img src=x" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_room_page_is_told_where_the_push_server_is(instance: Path) -> None:
    """PUSH_WS_URL is handed to the page and allowed by its CSP."""
    app = make_app(
        instance, None, PUSH_WS_URL="ws://push.example:9000/ws", PUSH_SECRET="x", PUSH_API_URL="http://127.0.0.1:9"
    )
    visitor = Visitor(app.test_client())
    visitor.register()
    room_id = visitor.create_room()
    page = visitor.client.get(f"/rooms/{room_id}")
    assert 'data-ws-url="ws://push.example:9000/ws"' in page.get_data(as_text=True)
    assert "connect-src 'self' ws://push.example:9000/ws" in page.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://chat.example:8000", "ws://chat.example:7272/ws"),
        ("https://chat.example", "wss://chat.example:7272/ws"),
        ("http://[::1]:5000", "ws://[::1]:7272/ws"),
    ],
)
def test_push_ws_url_defaults_to_the_request_host(app: Flask, base_url: str, expected: str) -> None:
    """Without PUSH_WS_URL the page connects to the request's host on PUSH_WS_PORT, path /ws."""
    with app.test_request_context("/rooms/1", base_url=base_url):
        assert ws_url() == expected


def test_unknown_room_page_is_an_html_404(member: Visitor) -> None:
    """A browser asking for a room that does not exist gets an HTML 404 page."""
    page = member.client.get("/rooms/999", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert page.mimetype == "text/html"


def test_static_files_are_served(visitor: Visitor) -> None:
    """The page's scripts and stylesheet are served from /static."""
    for name in ("app.css", "common.js", "auth.js", "lobby.js", "room.js"):
        assert visitor.client.get(f"/static/{name}").status_code == 200, name


def test_without_secret_key_workers_share_one_kept_in_the_instance(instance: Path) -> None:
    """With no SECRET_KEY, two app processes on one instance folder sign with the same random key."""
    first = make_app(instance, None, SECRET_KEY=None)
    second = make_app(instance, None, SECRET_KEY=None)
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert len(first.config["SECRET_KEY"]) == 64
    assert (instance / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("path", "status", "title"), [("/no/such/page", 404, "Page not found"), ("/rooms/999", 404, "no such room")]
)
def test_browser_errors_are_styled_pages(member: Visitor, path: str, status: int, title: str) -> None:
    """A browser gets a styled error page (the site's stylesheet, its status, a way back), not werkzeug's bare one."""
    page = member.client.get(path, headers={"Accept": "text/html"})
    assert page.status_code == status and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "app.css" in html and 'class="card error-card"' in html and title in html
    assert 'href="/"' in html


def test_wrong_method_is_a_styled_405_page_with_allow(visitor: Visitor) -> None:
    """A browser's wrong method gets the styled 405 page, keeping the Allow header; JSON callers keep it too."""
    page = visitor.client.delete("/login", headers={"Accept": "text/html"})
    assert page.status_code == 405
    assert "app.css" in page.get_data(as_text=True) and "GET" in page.headers["Allow"]
    answer = visitor.client.delete("/login", headers={"Accept": "application/json"})
    assert answer.status_code == 405 and answer.json["error"] and "POST" in answer.headers["Allow"]


def test_there_is_a_favicon(visitor: Visitor) -> None:
    """Pages link an SVG icon, and /favicon.ico leads to it."""
    page = visitor.client.get("/login").get_data(as_text=True)
    assert 'rel="icon" href="/static/favicon.svg"' in page
    icon = visitor.client.get("/favicon.ico", follow_redirects=True)
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


def test_an_empty_lobby_says_what_to_do(member: Visitor) -> None:
    """With no rooms the lobby shows its empty state, pointing at the room-name field."""
    html = member.client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert 'id="no-rooms"' in html and "No rooms yet" in html and 'for="room-name"' in html
    member.create_room("first")
    html = member.client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert '<div class="empty-state" id="no-rooms" hidden>' in html
