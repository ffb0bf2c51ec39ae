"""Accounts: register, login, logout, sessions and their cookies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from web_app.models import User, get_db

from .conftest import PASSWORD, Visitor
from .live import make_app


def _session_cookie(visitor: Visitor) -> str | None:
    cookie = visitor.client.get_cookie("session")
    return None if cookie is None else cookie.value


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_register_logs_in_and_answers_uid_and_name(visitor: Visitor) -> None:
    """Registering answers {uid, name} and leaves the visitor logged in."""
    answer = visitor.register("alice")
    assert answer.status_code == 200
    assert answer.json["name"] == "alice"
    assert answer.json["uid"].isdigit()
    assert visitor.get("/rooms").status_code == 200


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_passwords_are_stored_hashed_not_in_clear(instance: Path, db_url: str | None) -> None:
    """The stored password is a salted scrypt hash; the clear password appears nowhere in the database."""
    # The production hashing method, not the suite's cheap one.
    app = make_app(instance, db_url, PASSWORD_HASH_METHOD="scrypt")
    visitor = Visitor(app.test_client())
    password = "Tr0ub4dor&3-unique-marker"
    assert visitor.register("bob", password).status_code == 200
    with app.app_context():
        user = get_db().scalar(select(User).where(User.name == "bob"))
        assert user is not None
        assert password not in user.password_hash
        assert user.password_hash.startswith("scrypt:")
    if db_url is None:
        for path in instance.glob("webchat.sqlite*"):
            assert password.encode() not in path.read_bytes()


def test_same_password_hashes_differently(app: Flask, new_visitor: Callable[[], Visitor]) -> None:
    """Two accounts with one password get different hashes (the hash is salted)."""
    assert new_visitor().register("carol").status_code == 200
    assert new_visitor().register("dave").status_code == 200
    with app.app_context():
        hashes = get_db().scalars(select(User.password_hash)).all()
    assert len(set(hashes)) == 2


def test_names_are_unique(new_visitor: Callable[[], Visitor]) -> None:
    """A taken name is refused with 409."""
    assert new_visitor().register("erin").status_code == 200
    answer = new_visitor().register("erin")
    assert answer.status_code == 409
    assert "taken" in answer.json["error"]


def test_login_with_right_and_wrong_password(new_visitor: Callable[[], Visitor]) -> None:
    """Login answers {uid, name} for the right password and 401 for a wrong one or an unknown name."""
    first = new_visitor()
    uid = first.register("frank").json["uid"]
    second = new_visitor()
    assert second.login("frank", "wrong password").status_code == 401
    assert second.login("nobody-here", PASSWORD).status_code == 401
    answer = second.login("frank")
    assert answer.status_code == 200
    assert answer.json == {"uid": uid, "name": "frank", "csrf_token": answer.json["csrf_token"], "next": "/"}


def test_login_regenerates_the_session_id(new_visitor: Callable[[], Visitor]) -> None:
    """The session id before login is not the one after it (no session fixation)."""
    new_visitor().register("grace")
    visitor = new_visitor()
    visitor.refresh_csrf()
    before = _session_cookie(visitor)
    assert before
    assert visitor.login("grace").status_code == 200
    after = _session_cookie(visitor)
    assert after and after != before


def test_logout_forgets_the_login(member: Visitor) -> None:
    """After logout the chat endpoints answer 401."""
    assert member.post("/logout").json == {"ok": True}
    assert member.get("/rooms").status_code == 401


def test_session_cookie_is_httponly_and_samesite_lax(visitor: Visitor) -> None:
    """The session cookie is HttpOnly and SameSite=Lax (and not Secure unless configured)."""
    answer = visitor.client.get("/login")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_unchanged_sessions_set_no_cookie(member: Visitor) -> None:
    """Answers that leave the session as it was set no cookie, so one in flight cannot undo a login in another window."""
    for answer in (
        member.get("/rooms"),
        member.get("/session"),
        member.client.get("/", headers={"Accept": "text/html"}),
    ):
        assert answer.status_code == 200
        assert "Set-Cookie" not in answer.headers, answer.headers


def test_session_cookie_secure_when_configured(instance: Path) -> None:
    """SESSION_COOKIE_SECURE makes the cookie Secure."""
    app = make_app(instance, None, SESSION_COOKIE_SECURE=True)
    cookie = app.test_client().get("/login").headers["Set-Cookie"]
    assert "Secure" in cookie


def test_pages_redirect_to_login_and_back_only_to_this_site(
    visitor: Visitor, new_visitor: Callable[[], Visitor]
) -> None:
    """A page needs a login and returns there after it; ?next= never leads off the site."""
    answer = visitor.client.get("/rooms/1")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=/rooms/1")
    new_visitor().register("heidi")
    form = new_visitor()
    form.refresh_csrf()
    data = {"name": "heidi", "password": PASSWORD, "csrf_token": form.csrf}
    good = form.client.post("/login?next=/rooms/1", data=data)
    assert good.status_code == 302 and good.headers["Location"] == "/rooms/1"
    form.refresh_csrf()
    data["csrf_token"] = form.csrf
    evil = form.client.post("/login?next=//evil.example/", data=data)
    assert evil.status_code == 302 and evil.headers["Location"] == "/"


def test_sessions_live_in_redis_when_configured(redis_server, instance: Path) -> None:  # type: ignore[no-untyped-def]
    """With REDIS_URL the session is stored in Redis, and a login survives a new app on the same Redis."""
    import redis

    first = make_app(instance, None, REDIS_URL=redis_server.url)
    visitor = Visitor(first.test_client())
    assert visitor.register("ivan").status_code == 200
    sid = _session_cookie(visitor)
    store = redis.Redis.from_url(redis_server.url)
    assert store.exists(f"webchat:session:{sid}")
    # Another app process (same Redis, same database) knows the session.
    second = make_app(instance, None, REDIS_URL=redis_server.url)
    client = second.test_client()
    client.set_cookie("session", sid)
    assert client.get("/rooms", headers={"Accept": "application/json"}).status_code == 200


def test_logout_form_redirects_to_login(member: Visitor) -> None:
    """The page's logout form (CSRF token as a form field) logs out and lands on the login page."""
    answer = member.client.post("/logout", data={"csrf_token": member.csrf})
    assert answer.status_code == 302 and answer.headers["Location"] == "/login"
    assert member.get("/rooms").status_code == 401
