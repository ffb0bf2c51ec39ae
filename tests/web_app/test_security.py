"""Hostile input: off-site ?next=, non-finite numbers, NUL and lone surrogates, ids past any row, a stale CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from web_app.models import Message, Room, get_db

from .conftest import PASSWORD, Visitor

BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

OFF_SITE = [
    "/%5Cevil.example/",
    "/%09/evil.example/",
    "/%0a/evil.example/",
    "/%5C%5Cevil.example",
    "//evil.example/",
    "/%2F/evil.example/",
    "https://evil.example/",
    "%2F%2Fevil.example",
    "/ /evil.example",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_the_site(new_visitor: Callable[[], Visitor], target: str) -> None:
    """?next= that a browser would read as another host (backslash, tab, newline...) lands on the lobby instead."""
    new_visitor().register("heidi")
    form = new_visitor()
    form.refresh_csrf()
    answer = form.client.post(
        f"/login?next={target}", data={"name": "heidi", "password": PASSWORD, "csrf_token": form.csrf}
    )
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/"


def test_json_login_answers_where_to_go(new_visitor: Callable[[], Visitor]) -> None:
    """The page's JSON login gets a checked ``next``: a path on this site as asked, else "/"."""
    new_visitor().register("ivy")
    good = new_visitor().post("/login", {"name": "ivy", "password": PASSWORD, "next": "/rooms/3?x=1"})
    assert good.json["next"] == "/rooms/3?x=1"
    for target in ("/\\evil.example/", "/\t/evil.example/", "//evil.example", 5):
        bad = new_visitor().post("/login", {"name": "ivy", "password": PASSWORD, "next": target})
        assert bad.json["next"] == "/", target


def _counts(app: Flask) -> tuple[int, int]:
    with app.app_context():
        db = get_db()
        return (
            db.scalar(select(func.count()).select_from(Message)) or 0,
            db.scalar(select(func.count()).select_from(Room)) or 0,
        )


def _raw(member: Visitor, path: str, body: str) -> Any:
    return member.post(path, data=body.encode("utf-8", "surrogatepass"), headers={"Content-Type": "application/json"})


@BOTH
@pytest.mark.parametrize(
    "body",
    [
        '{"room_id": 1, "type": "all", "content": "x", "extra": 1e400}',
        '{"room_id": 1e400, "type": "all", "content": "x"}',
        '{"room_id": 1, "type": "all", "content": "x", "extra": -1e400}',
        '{"room_id": 1, "type": "all", "content": "x", "extra": NaN}',
        '{"room_id": 1, "type": "all", "content": "x", "extra": Infinity}',
        '{"room_id": 1, "type": "all", "content": "lone \\ud800 surrogate"}',
        '{"room_id": 1, "type": "all", "content": "lone \\udfff"}',
        '{"room_id": 1, "type": "all", "content": "nul \\u0000 inside"}',
        '{"room_id": 1, "type": "all", "content": "x", "\\u0000": 1}',
        '{"room_id": 1, "type": "all", "content": "x", "deep": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"room_id": 1, "type": "all", "content": "x", "deep": ' + "[" * 100 + "]" * 100 + "}",
    ],
)
def test_bodies_no_json_allows_are_400(app: Flask, member: Visitor, body: str) -> None:
    """Infinity (1e400 too), NaN, lone surrogates, NUL and absurd nesting get a 400 JSON error; nothing is stored."""
    member.create_room("one")
    answer = _raw(member, "/say", body)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert answer.json["error"]
    assert _counts(app) == (0, 1)


@BOTH
@pytest.mark.parametrize("path", ["/rooms", "/register", "/login"])
def test_nul_and_surrogates_in_names_are_400(app: Flask, member: Visitor, path: str) -> None:
    """A name with NUL or a lone surrogate, as JSON or as a form field, is a 400, not a database error."""
    assert _raw(member, path, '{"name": "a\\u0000b", "password": "long enough pw"}').status_code == 400
    assert _raw(member, path, '{"name": "a\\ud800b", "password": "long enough pw"}').status_code == 400
    form = member.post(path, data={"name": "a\x00b", "password": "long enough pw", "csrf_token": member.csrf})
    assert form.status_code == 400


@BOTH
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/say", {"room_id": 2**31, "type": "all", "content": "x"}),
        ("POST", "/say", {"room_id": str(2**40), "type": "all", "content": "x"}),
        ("POST", "/say", {"room_id": 1, "type": "to", "to_uid": 2**40, "content": "x"}),
        ("POST", "/flush", {"room_id": 2**53}),
        ("GET", "/rooms/1/messages?after=99999999999999", None),
        ("GET", "/rooms/99999999999999", None),
        ("GET", "/rooms/99999999999999/messages", None),
        ("GET", "/images/99999999999999", None),
        ("GET", "/rooms/1/messages?after=1%00", None),
    ],
)
def test_ids_past_any_row_are_4xx_not_500(app: Flask, member: Visitor, method: str, path: str, body: Any) -> None:
    """Ids past the id columns' range (and NUL in the query) are a 4xx JSON error, never a 500, on PostgreSQL too."""
    member.create_room("one")
    answer = member.post(path, body) if method == "POST" else member.get(path)
    # SQLite's integers are 64-bit, so there an `after` past the range is just
    # an empty page; what must never happen is a 500.
    assert answer.status_code < 500, answer.get_data(as_text=True)
    assert (answer.status_code == 200 and "after=" in path) or answer.json["error"]
    assert _counts(app) == (0, 1)


def test_a_second_login_in_the_same_browser_makes_the_old_token_renewable(new_visitor: Callable[[], Visitor]) -> None:
    """After a second login the first page's token is refused with code "csrf"; /session gives the current token and user."""
    new_visitor().register("judy")
    browser = new_visitor()
    browser.login("judy")
    first_window_token = browser.csrf
    second_window = browser.login("judy")
    assert second_window.status_code == 200
    browser.csrf = first_window_token
    stale = browser.post("/rooms", {"name": "from the first window"})
    assert stale.status_code == 400 and stale.json["code"] == "csrf"
    info = browser.get("/session").json
    assert info["uid"] == second_window.json["uid"] and info["name"] == "judy"
    browser.csrf = info["csrf_token"]
    assert browser.post("/rooms", {"name": "from the first window"}).status_code == 201


def test_session_says_nobody_when_logged_out(visitor: Visitor) -> None:
    """/session for a visitor who is not logged in: no uid, and a token for the login form."""
    info = visitor.get("/session").json
    assert info["uid"] is None and info["name"] is None and info["csrf_token"]
