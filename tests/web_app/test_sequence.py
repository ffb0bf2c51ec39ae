"""Every chat message carries its conversation's seq (docs/delivery.md), numbered without holes or repeats."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.servers import ROOT, free_port
from web_app.models import _make_engine, database_url
from web_app.schema import create_tables

from .conftest import Visitor
from .live import TINY_PNG, HttpUser, LiveServer, make_app

DATABASES = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


def _say(visitor: Visitor, room_id: int, content: str, to_uid: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"room_id": room_id, "type": "to" if to_uid else "all", "content": content}
    if to_uid:
        body["to_uid"] = to_uid
    answer = visitor.post("/say", body)
    assert answer.status_code == 502, answer.json  # stored; the push server is a closed port
    return answer.json["message"]  # type: ignore[no-any-return]


@DATABASES
def test_public_and_private_messages_are_numbered_per_conversation(new_visitor: Any) -> None:
    """A room's public messages count 1, 2, 3…; each pair's private messages in it count on their own; history says the same."""
    alice, bob, carol = new_visitor(), new_visitor(), new_visitor()
    for visitor in (alice, bob, carol):
        assert visitor.register().status_code == 200
    room, other_room = alice.create_room(), alice.create_room()
    said = [
        _say(alice, room, "p1"),
        _say(bob, room, "to alice 1", to_uid=alice.uid),
        _say(alice, room, "to bob 2", to_uid=bob.uid),
        _say(carol, room, "to alice 1'", to_uid=alice.uid),
        _say(bob, room, "p2"),
        _say(alice, other_room, "elsewhere p1"),
        _say(alice, other_room, "elsewhere to bob 1", to_uid=bob.uid),
    ]
    assert [message["seq"] for message in said] == [1, 1, 2, 1, 2, 1, 1]
    history = alice.get(f"/rooms/{room}/messages").json["messages"]
    assert [(m["content"], m["seq"]) for m in history] == [(m["content"], m["seq"]) for m in said[:5]]
    # Bob sees the public ones and his own conversation, with the seqs they were pushed with.
    bob_history = bob.get(f"/rooms/{room}/messages").json["messages"]
    assert [m["content"] for m in bob_history] == ["p1", "to alice 1", "to bob 2", "p2"]
    # An image is a message like any other: the next public seq.
    upload = bob.post(
        f"/rooms/{room}/images", data={"file": (io.BytesIO(TINY_PNG), "dot.png")}, content_type="multipart/form-data"
    )
    assert upload.status_code == 502, upload.json
    assert (upload.json["message"]["kind"], upload.json["message"]["seq"]) == ("image", 3)


@DATABASES
def test_concurrent_posts_through_two_apps_get_every_seq_once_in_id_order(tmp_path: Path, db_url: str | None) -> None:
    """Writers in two app processes' worth of engines at once: each conversation's seqs are 1..n, rising with the id."""
    closed = f"http://127.0.0.1:{free_port()}"
    instance = tmp_path / "instance"
    servers = [
        LiveServer(make_app(instance, db_url, PUSH_API_URL=closed, PUSH_SECRET="s", PUSH_TIMEOUT=1.0)).start()
        for _ in range(2)
    ]
    try:
        users = [HttpUser(servers[i % 2].url, f"writer{i}").register() for i in range(6)]
        room = users[0].create_room("race")
        per_user = 8

        def write(index: int) -> list[dict[str, Any]]:
            user, peer = users[index], users[(index + 1) % len(users)]
            out = []
            for n in range(per_user):
                answer = user.say(room, f"{user.name} {n}", to_uid=peer.uid if n % 2 else None)
                assert answer.status_code == 502, answer.text
                out.append(answer.json()["message"])
            return out

        with ThreadPoolExecutor(len(users)) as pool:
            said = [m for batch in pool.map(write, range(len(users))) for m in batch]
    finally:
        for server in servers:
            server.stop()
    conversations: dict[str, list[tuple[int, int]]] = {}
    for message in said:
        key = "all" if message["type"] == "all" else ":".join(sorted((message["uid"], message["to_uid"])))
        conversations.setdefault(key, []).append((message["id"], message["seq"]))
    assert len(conversations["all"]) == len(users) * per_user // 2
    for key, numbered in conversations.items():
        numbered.sort()
        assert [seq for _, seq in numbered] == list(range(1, len(numbered) + 1)), key


@DATABASES
def test_a_messages_table_from_before_sequences_gains_them(tmp_path: Path, db_url: str | None) -> None:
    """A database made before seq existed is given the columns at start-up; its old messages keep working."""
    url = database_url(db_url, str(tmp_path))
    engine = _make_engine(url)
    create_tables(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_messages_room_conversation_seq"))
        conn.execute(text("ALTER TABLE messages DROP COLUMN seq"))
        conn.execute(text("ALTER TABLE messages DROP COLUMN conversation"))
    create_tables(create_engine(url))
    with engine.connect() as conn:
        conn.execute(text("SELECT conversation, seq FROM messages"))
        names = {
            row[0]
            for row in conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type='index'"
                    if url.startswith("sqlite")
                    else "SELECT indexname FROM pg_indexes WHERE tablename='messages'"
                )
            )
        }
    assert "ix_messages_room_conversation_seq" in names


_UNPUSHED = textwrap.dedent(
    """
    import sys
    from tests.web_app.live import make_app
    app = make_app(sys.argv[1], None, PUSH_API_URL=sys.argv[2], PUSH_SECRET="s", PUSH_TIMEOUT=1.0,
                   WTF_CSRF_ENABLED=False)
    client = app.test_client()
    headers = {"Accept": "application/json"}
    client.post("/register", json={"name": "logger", "password": "correct horse battery"}, headers=headers)
    room = client.post("/rooms", json={"name": "logs"}, headers=headers).json["id"]
    answer = client.post("/say", json={"room_id": room, "type": "all", "content": "hi"}, headers=headers)
    assert answer.status_code == 502, answer.json
    """
)


def test_stored_but_not_pushed_is_logged_with_time_and_level(tmp_path: Path) -> None:
    """With logging left unconfigured (as under gunicorn), the failed push's line carries a timestamp and ERROR."""
    done = subprocess.run(
        [sys.executable, "-c", _UNPUSHED, str(tmp_path / "instance"), f"http://127.0.0.1:{free_port()}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "was stored but not pushed" in line]
    assert len(lines) == 1, done.stderr
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\] \[ERROR\] web_app\.chat: message \d+ was stored", lines[0]
    ), lines[0]
