"""The read endpoint's cost: its SQL statements, no session rewrite, and one row however reads race.

The app pushes to a closed port (see conftest.app): a read is stored without
its push; tests/web_app/test_room_pushes.py checks the pushes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, func, select

from web_app.models import ReadPosition, get_db

from .conftest import Visitor
from .test_room_interactions import _store

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement the app's request sessions run meanwhile."""
    engine = app.extensions["webchat_db"].kw["bind"]
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def reader(new_visitor: Callable[[], Visitor]) -> Visitor:
    v = new_visitor()
    assert v.register().status_code == 200
    return v


def test_a_read_is_the_user_one_look_and_one_upsert(app: Flask, member: Visitor, reader: Visitor) -> None:
    """A read that moves runs 3 statements: the login's user, one look at messages and position, one upsert."""
    room = member.create_room()
    ids = [_store(app, room, member.uid or "", f"m{i}") for i in range(2)]
    ids.append(_store(app, room, member.uid or "", "psst", to_id=reader.uid))
    # The first read makes the row, the others move it; the last covers a private message to the reader.
    for message_id in ids:
        with statements(app) as run:
            assert reader.post(f"/rooms/{room}/read", {"message_id": message_id}).json["moved"] is True
        assert len(run) == 3, run
        look, upsert = run[1], run[2]
        # Only the columns it needs: no author, avatar or recipient joined in.
        assert "users" not in look and "avatars" not in look and "content" not in look, look
        assert upsert.startswith("INSERT INTO read_positions") and "ON CONFLICT" in upsert, upsert
    with app.app_context():
        assert get_db().scalar(select(ReadPosition.message_id)) == ids[2]


def test_a_read_leaves_the_session_alone(app: Flask, instance: Path, member: Visitor, reader: Visitor) -> None:
    """A read (like every request that leaves the session as it was) does not store the session again."""
    room = member.create_room()
    message_id = _store(app, room, member.uid or "", "hello")

    def stored() -> list[tuple[int, int]]:
        # cachelib writes a new file and renames it over the old: a rewrite changes inode and time.
        return sorted((path.stat().st_ino, path.stat().st_mtime_ns) for path in (instance / "sessions").iterdir())

    before = stored()
    assert reader.post(f"/rooms/{room}/read", {"message_id": message_id}).json["moved"] is True
    assert stored() == before
    assert reader.get("/rooms").status_code == 200
    assert stored() == before
    assert reader.post("/logout").status_code == 200  # a change is stored
    assert stored() != before


def test_racing_reads_make_one_row_at_the_largest(app: Flask, member: Visitor, reader: Visitor) -> None:
    """Reads of one user sent at once (tabs, a first read included) all answer 200 and leave one row, the largest id."""
    room = member.create_room()
    ids = [_store(app, room, member.uid or "", f"m{i}") for i in range(6)]
    answers: list[int] = []
    start = threading.Barrier(len(ids))

    def read(message_id: int) -> None:
        tab = Visitor(app.test_client())
        tab.client.set_cookie(**_session_cookie(reader))
        tab.csrf = reader.csrf
        start.wait()
        answers.append(tab.post(f"/rooms/{room}/read", {"message_id": message_id}).status_code)

    threads = [threading.Thread(target=read, args=(message_id,)) for message_id in reversed(ids)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * len(ids)
    with app.app_context():
        assert get_db().scalar(select(func.count()).select_from(ReadPosition)) == 1
        assert get_db().scalar(select(ReadPosition.message_id)) == ids[-1]


def _session_cookie(visitor: Visitor) -> dict[str, str]:
    """The visitor's session cookie, for another client of the same browser (a second tab)."""
    cookie = visitor.client.get_cookie("session")
    assert cookie is not None
    return {"key": cookie.key, "value": cookie.value}
