"""Older pages of history (``messages?before=``), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .conftest import Visitor

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


def _say(visitor: Visitor, room_id: int, content: str, to_uid: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"room_id": room_id, "type": "to" if to_uid else "all", "content": content}
    if to_uid:
        body["to_uid"] = to_uid
    # No push server here: stored, then 502 "stored, not pushed".
    answer = visitor.post("/say", body)
    assert answer.status_code == 502 and answer.json["stored"] is True, answer.json
    return answer.json["message"]  # type: ignore[no-any-return]


def _ids(visitor: Visitor, room_id: int, query: str) -> list[int]:
    answer = visitor.get(f"/rooms/{room_id}/messages?{query}")
    assert answer.status_code == 200, answer.json
    return [m["id"] for m in answer.json["messages"]]


def test_before_gives_the_n_messages_before_an_id_oldest_first(member: Visitor) -> None:
    """``before`` pages backwards: the ``limit`` messages just before the id, oldest first."""
    room_id = member.create_room()
    ids = [_say(member, room_id, f"m{i}")["id"] for i in range(7)]
    assert _ids(member, room_id, f"before={ids[5]}&limit=3") == ids[2:5]
    assert _ids(member, room_id, f"before={ids[2]}&limit=3") == ids[:2]
    assert _ids(member, room_id, f"before={ids[0]}") == []
    # Without a limit, the default page (50) is all of them.
    assert _ids(member, room_id, f"before={ids[-1] + 1000}") == ids


def test_paging_back_from_the_latest_page_reaches_every_message_once(member: Visitor) -> None:
    """The latest page, then ``before=<oldest shown>`` until an empty page, yields the whole room in order."""
    room_id = member.create_room()
    ids = [_say(member, room_id, f"m{i}")["id"] for i in range(11)]
    seen = _ids(member, room_id, "limit=4")
    while True:
        older = _ids(member, room_id, f"before={seen[0]}&limit=4")
        if not older:
            break
        seen = older + seen
    assert seen == ids


def test_before_stays_in_the_room(member: Visitor) -> None:
    """Another room's messages never appear in a room's older pages."""
    room_id, other = member.create_room(), member.create_room()
    mine = _say(member, room_id, "here")["id"]
    theirs = _say(member, other, "elsewhere")["id"]
    assert _ids(member, room_id, f"before={theirs + 1}") == [mine]


def test_older_private_messages_only_for_their_two_parties(new_visitor: Callable[[], Visitor]) -> None:
    """An older page holds a private message for its sender and recipient only."""
    alice, bob, eve = new_visitor(), new_visitor(), new_visitor()
    for v in (alice, bob, eve):
        v.register()
    room_id = alice.create_room()
    public = _say(alice, room_id, "hello all")["id"]
    private = _say(alice, room_id, "for bob", to_uid=bob.uid)["id"]
    last = _say(bob, room_id, "latest")["id"]
    assert _ids(alice, room_id, f"before={last}") == [public, private]
    assert _ids(bob, room_id, f"before={last}") == [public, private]
    assert _ids(eve, room_id, f"before={last}") == [public]


@pytest.mark.parametrize(
    "query",
    [
        "before=0",
        "before=-5",
        "before=abc",
        "before=1.5",
        "before=1e3",
        "before=1&after=1",
        "before=1&limit=0",
        "before=1&limit=201",
    ],
)
def test_bad_before_is_a_json_400(member: Visitor, query: str) -> None:
    """A ``before`` that is not a positive integer, or given with ``after``, or a bad limit, is a JSON 400."""
    room_id = member.create_room()
    answer = member.get(f"/rooms/{room_id}/messages?{query}")
    assert answer.status_code == 400
    assert isinstance(answer.json["error"], str) and answer.json["error"]


def test_before_needs_a_login(visitor: Visitor, member: Visitor) -> None:
    """Anonymous callers get a JSON 401, not history."""
    room_id = member.create_room()
    _say(member, room_id, "private room talk")
    answer = visitor.get(f"/rooms/{room_id}/messages?before=100")
    assert answer.status_code == 401
    assert "messages" not in answer.json
