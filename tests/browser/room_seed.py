"""A lived-in room for the reading-experience browser tests and the README screenshot.

Messages are posted over HTTP like anyone would; only their times are moved
back afterwards (in the database), so that the room spans several days.
"""

from __future__ import annotations

import struct
import zlib
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from tests.web_app.live import HttpUser, Live


def gradient_png(size: int, start: tuple[int, int, int], end: tuple[int, int, int]) -> bytes:
    """A diagonal two-colour gradient PNG (a recognisable avatar, no imaging library)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b""
    for y in range(size):
        row = bytearray(b"\x00")
        for x in range(size):
            t = (x + y) / (2 * size - 2)
            row += bytes(round(a + (b - a) * t) for a, b in zip(start, end, strict=True))
        rows += bytes(row)
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def upload_avatar(user: HttpUser, png: bytes) -> str:
    """Give ``user`` a picture; its URL."""
    answer = user.post("/avatar", None, files={"file": ("me.png", png, "image/png")})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["avatar"])


def backdate(live: Live, ids_and_ages: dict[int, timedelta]) -> None:
    """Move messages' times back by the given ages (the web app's own database)."""
    from web_app.models import Message, get_db, utcnow

    with live.web.app.app_context():
        db = get_db()
        now = utcnow()
        for message_id, age in ids_and_ages.items():
            db.execute(update(Message).where(Message.id == message_id).values(created_at=now - age))
        db.commit()


def say(user: HttpUser, room_id: int, text: str, to_uid: str | None = None) -> dict[str, Any]:
    answer = user.say(room_id, text, to_uid)
    assert answer.status_code == 201, answer.text
    return answer.json()["message"]  # type: ignore[no-any-return]


def lived_in_room(live: Live, viewer: str, older: int = 0) -> tuple[int, dict[str, HttpUser]]:
    """A room with ``older`` filler messages two days ago, a conversation yesterday and today, a link,
    a mention of ``viewer`` and a user with a picture; the room id and its users by name."""
    alice, bob, carol = live.user("Alice Martin"), live.user("bob"), live.user("carol")
    upload_avatar(alice, gradient_png(48, (250, 140, 90), (120, 80, 220)))
    room_id = alice.create_room("design-review")
    ages: dict[int, timedelta] = {}
    for i in range(older):
        ages[say(bob if i % 2 else carol, room_id, f"older message {i + 1}")["id"]] = timedelta(
            days=2, minutes=older - i
        )
    yesterday = [
        (alice, "Morning! I pushed the new room layout to staging."),
        (alice, "Notes are here: https://example.com/notes/room-layout?v=2"),
        (bob, "Looks good. The drawer on phones feels right."),
    ]
    for n, (user, text) in enumerate(yesterday):
        ages[say(user, room_id, text)["id"]] = timedelta(days=1, hours=2, minutes=10 - n)
    today = [
        (carol, "Can we ship it today?"),
        (alice, f"@{viewer} could you check the history paging before we ship?"),
        (bob, "I'll write the release notes."),
        (bob, "Draft by noon."),
    ]
    for n, (user, text) in enumerate(today):
        ages[say(user, room_id, text)["id"]] = timedelta(minutes=4 - n)
    backdate(live, ages)
    return room_id, {"alice": alice, "bob": bob, "carol": carol}
