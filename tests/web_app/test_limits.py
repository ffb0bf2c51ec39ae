"""Abuse limits: past each one the answer is 429 with Retry-After, nothing is stored, and every process counts together."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from web_app import limits
from web_app.models import Image, Message, Room, User, get_db

from .conftest import Visitor
from .live import TINY_PNG, make_app

BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


def _app(instance: Path, db_url: str | None, **config: Any) -> Flask:
    # The push server is a closed port: posts are stored and answered 502, which is enough here.
    return make_app(instance, db_url, PUSH_API_URL="http://127.0.0.1:9", PUSH_SECRET="x", PUSH_TIMEOUT=0.5, **config)


def _count(app: Flask, model: Any) -> int:
    with app.app_context():
        return get_db().scalar(select(func.count()).select_from(model)) or 0


def _assert_429(answer: Any) -> None:
    assert answer.status_code == 429, answer.get_data(as_text=True)
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert answer.json["retry_after"] == retry_after
    assert "slow down" in answer.json["error"]


def _from(app: Flask, address: str) -> Visitor:
    """A visitor whose requests come from ``address``."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return Visitor(client)


def _say(visitor: Visitor, room_id: int, text: str) -> Any:
    return visitor.post("/say", {"room_id": room_id, "type": "all", "content": text})


@BOTH
def test_posting_past_the_limit_is_429_and_stores_nothing(instance: Path, db_url: str | None) -> None:
    """A user's /say past RATE_LIMIT_POSTS answers 429 with Retry-After and stores no message; others still post."""
    app = _app(instance, db_url, RATE_LIMIT_POSTS="3/600")
    alice, bob = Visitor(app.test_client()), Visitor(app.test_client())
    alice.register()
    bob.register()
    room_id = alice.create_room()
    for n in range(3):
        assert _say(alice, room_id, f"m{n}").status_code in (201, 502)
    _assert_429(_say(alice, room_id, "one too many"))
    assert _count(app, Message) == 3
    assert _say(bob, room_id, "bob has his own allowance").status_code in (201, 502)


def test_typing_notices_past_their_limit_are_429(instance: Path) -> None:
    """/typing past RATE_LIMIT_TYPING answers 429 with Retry-After (its own count: posting still works)."""
    app = _app(instance, None, RATE_LIMIT_TYPING="2/600")
    member = Visitor(app.test_client())
    member.register()
    room_id = member.create_room()
    for _ in range(2):
        # 503: the push server is a closed port here; the notice was counted all the same.
        assert member.post("/typing", {"room_id": room_id}).status_code == 503
    _assert_429(member.post("/typing", {"room_id": room_id}))
    assert _say(member, room_id, "typing's limit is not posting's").status_code in (201, 502)


def test_uploads_past_the_limit_are_429_and_store_nothing(instance: Path) -> None:
    """Image uploads past RATE_LIMIT_UPLOADS answer 429 and store neither image nor message."""
    app = _app(instance, None, RATE_LIMIT_UPLOADS="2/600")
    member = Visitor(app.test_client())
    member.register()
    room_id = member.create_room()

    def upload() -> Any:
        form = {"file": (io.BytesIO(TINY_PNG), "a.png")}
        return member.post(f"/rooms/{room_id}/images", data=form, content_type="multipart/form-data")

    assert upload().status_code in (201, 502)
    assert upload().status_code in (201, 502)
    _assert_429(upload())
    assert (_count(app, Image), _count(app, Message)) == (2, 2)


@BOTH
def test_edits_and_deletes_past_their_limit_are_429_and_change_nothing(instance: Path, db_url: str | None) -> None:
    """PATCH and DELETE /messages past RATE_LIMIT_EDITS answer 429 with Retry-After and leave the message as it was."""
    app = _app(instance, db_url, RATE_LIMIT_EDITS="3/600")
    alice = Visitor(app.test_client())
    alice.register()
    room_id = alice.create_room()
    kept, other = (_say(alice, room_id, text).json["message"]["id"] for text in ("kept", "other"))
    headers = {"X-CSRFToken": alice.csrf, "Accept": "application/json"}

    def edit(message_id: int, text: str) -> Any:
        return alice.client.patch(f"/messages/{message_id}", json={"content": text}, headers=headers)

    def delete(message_id: int) -> Any:
        return alice.client.delete(f"/messages/{message_id}", headers=headers)

    # 200, or 502 "stored" (the push server is a closed port): counted either way.
    assert edit(kept, "edited once").status_code in (200, 502)
    assert edit(kept, "edited twice").status_code in (200, 502)
    assert delete(other).status_code in (200, 502)
    _assert_429(edit(kept, "one edit too many"))
    _assert_429(delete(kept))
    with app.app_context():
        message = get_db().get(Message, kept)
        assert message is not None
        assert (message.content, message.deleted) == ("edited twice", False)
    # Posting has an allowance of its own.
    assert _say(alice, room_id, "still posting").status_code in (201, 502)


@BOTH
def test_wrong_passwords_lock_that_name_from_that_address(instance: Path, db_url: str | None) -> None:
    """After RATE_LIMIT_LOGIN_FAILURES wrong passwords (default 10) even the right one is refused, for that name and address only."""
    app = _app(instance, db_url)
    Visitor(app.test_client()).register("frank")
    Visitor(app.test_client()).register("grace")
    attacker = Visitor(app.test_client())
    for _ in range(10):
        assert attacker.login("frank", "wrong password").status_code == 401
    _assert_429(attacker.login("frank", "wrong password"))
    _assert_429(attacker.login("frank"))
    # A look-alike spelling of the name is the same name.
    _assert_429(attacker.login("FRANK"))
    # Another name from the same address, and the same name from another address, still log in.
    assert attacker.login("grace").status_code == 200
    elsewhere = _from(app, "192.0.2.7")
    assert elsewhere.login("frank").status_code == 200


def test_right_passwords_are_not_counted(instance: Path) -> None:
    """Logging in successfully, however often, never reaches the failed-login limit."""
    app = _app(instance, None, RATE_LIMIT_LOGIN_FAILURES="2/600")
    Visitor(app.test_client()).register("heidi")
    visitor = Visitor(app.test_client())
    for _ in range(5):
        assert visitor.login("heidi").status_code == 200


@BOTH
def test_registrations_and_rooms_are_limited_per_address(instance: Path, db_url: str | None) -> None:
    """RATE_LIMIT_REGISTRATIONS and RATE_LIMIT_ROOMS count per address: past them 429, no account or room stored."""
    app = _app(instance, db_url, RATE_LIMIT_REGISTRATIONS="2/3600", RATE_LIMIT_ROOMS="2/3600")
    first = Visitor(app.test_client())
    assert first.register().status_code == 200
    assert Visitor(app.test_client()).register().status_code == 200
    _assert_429(Visitor(app.test_client()).register())
    assert _count(app, User) == 2
    other = _from(app, "192.0.2.8")
    assert other.register().status_code == 200
    first.create_room()
    first.create_room()
    _assert_429(first.post("/rooms", {"name": "third"}))
    assert _count(app, Room) == 2


@BOTH
def test_processes_sharing_a_database_share_the_counts(instance: Path, db_url: str | None) -> None:
    """Two app processes on one database (no Redis) count one user's posts together, as gunicorn workers must."""
    first = _app(instance, db_url, RATE_LIMIT_POSTS="4/600")
    second = _app(instance, db_url, RATE_LIMIT_POSTS="4/600")
    # One browser: its session (files in the shared instance folder) works on both.
    one = Visitor(first.test_client())
    one.register()
    room_id = one.create_room()
    two = Visitor(second.test_client())
    two.client.set_cookie("session", one.client.get_cookie("session").value)  # type: ignore[union-attr]
    two.csrf = one.csrf
    for visitor in (one, two, one, two):
        assert _say(visitor, room_id, "counted").status_code in (201, 502)
    _assert_429(_say(two, room_id, "fifth, on the second process"))
    _assert_429(_say(one, room_id, "sixth, on the first"))


def test_processes_sharing_redis_share_the_counts(redis_server, instance: Path) -> None:  # type: ignore[no-untyped-def]
    """With REDIS_URL the counts live in Redis: two app processes count together, and the database holds none."""
    import redis

    store = redis.Redis.from_url(redis_server.url)
    first = _app(instance, None, REDIS_URL=redis_server.url, RATE_LIMIT_LOGIN_FAILURES="3/600")
    second = _app(instance, None, REDIS_URL=redis_server.url, RATE_LIMIT_LOGIN_FAILURES="3/600")
    Visitor(first.test_client()).register("ivan")
    a, b = Visitor(first.test_client()), Visitor(second.test_client())
    assert a.login("ivan", "wrong one").status_code == 401
    assert b.login("ivan", "wrong two").status_code == 401
    assert a.login("ivan", "wrong three").status_code == 401
    _assert_429(b.login("ivan"))
    assert store.keys("webchat:limit:login_failures:*")
    from web_app.limits import RateCount

    assert _count(first, RateCount) == 0


def test_redis_down_lets_requests_through(instance: Path) -> None:
    """If the limits' Redis does not answer, requests still work (a limit is a guard, not a dependency)."""
    from tests.servers import free_port

    app = _app(instance, None, RATE_LIMIT_POSTS="1/600")
    app.extensions["webchat_limits_redis"] = __import__("redis").Redis(port=free_port(), socket_connect_timeout=0.5)
    member = Visitor(app.test_client())
    member.register()
    room_id = member.create_room()
    assert _say(member, room_id, "one").status_code in (201, 502)
    assert _say(member, room_id, "two").status_code in (201, 502)


@pytest.mark.parametrize("value", ["lots", "5", "0/60", "5/0", "-1/60", "1/2/3"])
def test_a_bad_limit_setting_stops_the_app_with_a_clear_error(instance: Path, value: str) -> None:
    """A RATE_LIMIT_* value that is not "count/seconds" or off is refused when the app starts."""
    with pytest.raises(ValueError, match="RATE_LIMIT_POSTS"):
        _app(instance, None, RATE_LIMIT_POSTS=value)


def test_off_turns_a_limit_off(instance: Path, new_visitor: Callable[[], Visitor]) -> None:
    """RATE_LIMIT_ROOMS=off: no room creation is ever refused."""
    app = _app(instance, None, RATE_LIMIT_ROOMS="off")
    member = Visitor(app.test_client())
    member.register()
    for _ in range(5):
        member.create_room()


def test_limits_read_from_the_environment(instance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RATE_LIMIT_* environment variables set the limits (defaults otherwise)."""
    from web_app.limits import Rule

    monkeypatch.setenv("RATE_LIMIT_ROOMS", "7/70")
    app = _app(instance, None)
    assert app.extensions["webchat_limits"]["rooms"] == Rule(7, 70)
    assert app.extensions["webchat_limits"]["posts"] == Rule(120, 60)


def test_rows_of_ended_windows_are_pruned(instance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database store deletes rows whose window has ended, so made-up login names leave nothing behind for good."""
    from web_app import limits

    app = _app(instance, None, RATE_LIMIT_LOGIN_FAILURES="5/600")
    visitor = Visitor(app.test_client())
    for n in range(3):
        assert visitor.login(f"nobody{n}", "wrong").status_code == 401
    assert _count(app, limits.RateCount) == 3
    with app.app_context():
        db = get_db()
        db.execute(limits.RateCount.__table__.update().values(window=limits.RateCount.window - 1))
        db.commit()
    monkeypatch.setattr(limits, "PRUNE_EVERY", 1)
    assert visitor.login("nobody-new", "wrong").status_code == 401
    assert _count(app, limits.RateCount) == 1


@BOTH
def test_counts_go_through_while_the_requests_hold_every_pooled_connection(instance: Path, db_url: str | None) -> None:
    """Requests mid-flight holding all 15 pooled connections (5 + 10 overflow) do not stop a count.

    Each request holds its session's connection while the limit is counted on a
    connection of its own. From the same pool, 15 requests at once (a server
    with 15 threads or more) each waited for a second connection that never came,
    and all of them answered 500 after the pool's 30 s timeout.
    """
    app = _app(instance, db_url)
    with app.app_context():
        requests_in_flight = [app.extensions["webchat_db"]() for _ in range(15)]
        try:
            for session in requests_in_flight:
                session.execute(select(1))
            assert limits._count_in_database("posts:someone", 1, 1) == 1
            assert limits._count_in_database("posts:someone", 1, 1) == 2
        finally:
            for session in requests_in_flight:
                session.close()
