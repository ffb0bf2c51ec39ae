"""Every bad input of every endpoint is answered with a JSON ``{"error": ...}`` and a 4xx; nothing is stored."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from web_app.models import Image, Message, get_db

from .conftest import Visitor
from .live import TINY_PNG

# Room 1 and users 1 (the caller) and 2 exist in every case below; 999 of anything does not.
JSON_CASES: list[tuple[str, Any, int]] = [
    # (path, body, status)
    ("/register", ["not", "an", "object"], 400),
    ("/register", {"password": "long enough pw"}, 400),
    ("/register", {"name": 123, "password": "long enough pw"}, 400),
    ("/register", {"name": "   ", "password": "long enough pw"}, 400),
    ("/register", {"name": "x" * 33, "password": "long enough pw"}, 400),
    ("/register", {"name": "new\nline", "password": "long enough pw"}, 400),
    ("/register", {"name": "zed"}, 400),
    ("/register", {"name": "zed", "password": "short"}, 400),
    ("/register", {"name": "zed", "password": "p" * 257}, 400),
    ("/register", {"name": "zed", "password": 12345678}, 400),
    ("/register", {"name": "first", "password": "long enough pw"}, 409),
    ("/login", {"name": "first"}, 400),
    ("/login", {"password": "whatever"}, 400),
    ("/login", {"name": "first", "password": "not the password"}, 401),
    ("/rooms", {}, 400),
    ("/rooms", {"name": ""}, 400),
    ("/rooms", {"name": ["list"]}, 400),
    ("/rooms", {"name": "r" * 65}, 400),
    ("/rooms", {"name": "lobby"}, 409),
    ("/bind", {"room_id": 1}, 400),
    ("/bind", {"client_id": 42, "room_id": 1}, 400),
    ("/bind", {"client_id": "../../etc", "room_id": 1}, 400),
    ("/bind", {"client_id": "a" * 129, "room_id": 1}, 400),
    ("/bind", {"client_id": "abc"}, 400),
    ("/bind", {"client_id": "abc", "room_id": "one"}, 400),
    ("/bind", {"client_id": "abc", "room_id": 0}, 400),
    ("/bind", {"client_id": "abc", "room_id": True}, 400),
    ("/bind", {"client_id": "abc", "room_id": 1.5}, 400),
    ("/bind", {"client_id": "abc", "room_id": 999}, 404),
    ("/say", {"room_id": 1, "type": "all"}, 400),
    ("/say", {"room_id": 1, "type": "all", "content": 5}, 400),
    ("/say", {"room_id": 1, "type": "all", "content": ""}, 400),
    ("/say", {"room_id": 1, "type": "all", "content": " \n\t "}, 400),
    ("/say", {"room_id": 1, "type": "all", "content": "x" * 4001}, 400),
    ("/say", {"room_id": 1, "content": "hi"}, 400),
    ("/say", {"room_id": 1, "type": "everyone", "content": "hi"}, 400),
    ("/say", {"room_id": 1, "type": "to", "content": "hi"}, 400),
    ("/say", {"room_id": 1, "type": "to", "content": "hi", "to_uid": "bob"}, 400),
    ("/say", {"room_id": 1, "type": "to", "content": "hi", "to_uid": 999}, 404),
    ("/say", {"room_id": 1, "type": "to", "content": "hi", "to_uid": "1"}, 400),
    ("/say", {"type": "all", "content": "hi"}, 400),
    ("/say", {"room_id": 999, "type": "all", "content": "hi"}, 404),
    ("/flush", {}, 400),
    ("/flush", {"room_id": "x"}, 400),
    ("/flush", {"room_id": 999}, 404),
]


def _assert_json_error(answer: TestResponse, status: int) -> None:
    assert answer.status_code == status, answer.get_data(as_text=True)
    assert answer.mimetype == "application/json"
    assert isinstance(answer.json["error"], str) and answer.json["error"]


@pytest.fixture
def caller(new_visitor: Callable[[], Visitor]) -> Visitor:
    """User 1 ("first") in room 1 ("lobby"), with user 2 ("second") existing."""
    first = new_visitor()
    assert first.register("first", "long enough pw").json["uid"] == "1"
    assert first.create_room("lobby") == 1
    assert new_visitor().register("second").json["uid"] == "2"
    return first


def _counts(app: Flask) -> tuple[int, int]:
    with app.app_context():
        db = get_db()
        return db.scalar(select(func.count(Message.id))) or 0, db.scalar(select(func.count(Image.id))) or 0


@pytest.mark.parametrize(("path", "body", "status"), JSON_CASES)
def test_bad_json_input_is_refused(app: Flask, caller: Visitor, path: str, body: Any, status: int) -> None:
    """Each bad JSON body gets its 4xx and a JSON error, and stores no message."""
    _assert_json_error(caller.post(path, body), status)
    assert _counts(app) == (0, 0)


@pytest.mark.parametrize("path", ["/register", "/login", "/rooms", "/bind", "/say", "/flush"])
def test_malformed_json_is_refused(caller: Visitor, path: str) -> None:
    """A body that is not JSON at all, though it says it is, gets a 400 JSON error."""
    answer = caller.post(path, data=b"{not json", headers={"Content-Type": "application/json"})
    _assert_json_error(answer, 400)


def _upload(caller: Visitor, room_id: int, data: bytes | None, filename: str = "a.png", **fields: str) -> TestResponse:
    form: dict[str, Any] = dict(fields)
    if data is not None:
        form["file"] = (io.BytesIO(data), filename)
    return caller.post(f"/rooms/{room_id}/images", data=form, content_type="multipart/form-data")


@pytest.mark.parametrize(
    ("room_id", "data", "fields", "status"),
    [
        (1, None, {}, 400),
        (1, b"", {}, 400),
        (1, b"<html><script>alert(1)</script></html>", {}, 415),
        (1, b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', {}, 415),
        (1, b"GIF8" + b"\x00" * 20, {}, 415),
        (1, TINY_PNG, {"type": "nobody"}, 400),
        (1, TINY_PNG, {"type": "to"}, 400),
        (1, TINY_PNG, {"type": "to", "to_uid": "999"}, 404),
        (999, TINY_PNG, {}, 404),
    ],
)
def test_bad_image_upload_is_refused(
    app: Flask, caller: Visitor, room_id: int, data: bytes | None, fields: dict[str, str], status: int
) -> None:
    """A missing, empty, non-image or misaddressed upload gets its 4xx JSON error and stores nothing."""
    _assert_json_error(_upload(caller, room_id, data, **fields), status)
    assert _counts(app) == (0, 0)


def test_oversized_image_is_refused(instance, new_visitor) -> None:  # type: ignore[no-untyped-def]
    """An image over MAX_IMAGE_BYTES gets 413 (a body far over it too) and stores nothing."""
    from .live import make_app

    app = make_app(instance, None, MAX_IMAGE_BYTES=1000, PUSH_SECRET="x", PUSH_API_URL="http://127.0.0.1:9")
    caller = Visitor(app.test_client())
    caller.register()
    room_id = caller.create_room()
    _assert_json_error(_upload(caller, room_id, TINY_PNG + b"\x00" * 1000), 413)
    _assert_json_error(_upload(caller, room_id, TINY_PNG + b"\x00" * 200_000), 413)
    assert _counts(app) == (0, 0)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("after=-1", 400),
        ("after=abc", 400),
        ("limit=0", 400),
        ("limit=201", 400),
        ("limit=ten", 400),
        ("after=1e3", 400),
    ],
)
def test_bad_history_query_is_refused(caller: Visitor, query: str, status: int) -> None:
    """History refuses a negative or non-numeric ``after`` and a ``limit`` outside 1..200."""
    _assert_json_error(caller.get(f"/rooms/1/messages?{query}"), status)


@pytest.mark.parametrize("path", ["/rooms/999/messages", "/rooms/999", "/images/999", "/no/such/page"])
def test_unknown_things_are_404_json(caller: Visitor, path: str) -> None:
    """Unknown rooms, images and paths are 404 JSON errors for JSON callers."""
    _assert_json_error(caller.get(path), 404)


def test_history_errors_are_json_even_for_a_browser(caller: Visitor) -> None:
    """The history endpoint is an API: its errors are JSON whatever the Accept header says."""
    answer = caller.client.get("/rooms/999/messages", headers={"Accept": "text/html"})
    _assert_json_error(answer, 404)


def test_wrong_method_is_405_json(caller: Visitor) -> None:
    """A GET-only URL answers POST with a 405 JSON error."""
    _assert_json_error(caller.post("/rooms/1/messages", {}), 405)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/rooms"),
        ("POST", "/rooms"),
        ("POST", "/bind"),
        ("POST", "/say"),
        ("POST", "/flush"),
        ("POST", "/rooms/1/images"),
        ("GET", "/rooms/1/messages"),
        ("GET", "/rooms/1"),
        ("GET", "/images/1"),
    ],
)
def test_endpoints_need_a_login(visitor: Visitor, method: str, path: str) -> None:
    """Without a login every chat endpoint answers 401 JSON."""
    answer = visitor.post(path, {}) if method == "POST" else visitor.get(path)
    _assert_json_error(answer, 401)


@pytest.mark.parametrize(
    "path", ["/register", "/login", "/logout", "/rooms", "/bind", "/say", "/flush", "/rooms/1/images"]
)
def test_state_changes_need_the_csrf_token(caller: Visitor, path: str) -> None:
    """A POST without the CSRF token (or with a forged one) is refused with a 400 JSON error."""
    _assert_json_error(caller.client.post(path, json={}), 400)
    _assert_json_error(caller.client.post(path, json={}, headers={"X-CSRFToken": "forged"}), 400)


def test_missing_push_secret_is_a_503_not_a_crash(instance, db_url) -> None:  # type: ignore[no-untyped-def]
    """Without PUSH_SECRET the pushing endpoints answer 503 (or 502 with the message stored), never 500."""
    from .live import make_app

    app = make_app(instance, db_url, PUSH_SECRET=None)
    visitor = Visitor(app.test_client())
    assert visitor.register().status_code == 200
    room_id = visitor.create_room()
    assert visitor.post("/bind", {"client_id": "A" * 22, "room_id": room_id}).status_code == 503
    assert visitor.post("/flush", {"room_id": room_id}).status_code == 503
    said = visitor.post("/say", {"room_id": room_id, "type": "all", "content": "kept"})
    assert said.status_code == 502 and said.json["stored"] is True
    with app.app_context():
        assert get_db().scalar(select(func.count()).select_from(Message)) == 1
