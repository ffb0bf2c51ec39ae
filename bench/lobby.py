"""The lobby's cost with many rooms: SQL statements and time of one ``GET /rooms`` (JSON) with unread counts.

    python -m bench.lobby                         # 1,000 rooms × 20 messages, SQLite in a temp folder
    python -m bench.lobby --quick                 # 100 rooms × 5 messages
    python -m bench.lobby --database-url postgresql://127.0.0.1:5432/test   # an EMPTY database or schema

The reader has read half of every other room, so the counts are a mix of
partly read, unread and capped rooms. The push server is not running: the
online counts fail fast and are left out of the timing of the unread query
itself (reported separately). Issue 12 asks that the lobby stay one or two
queries whatever the number of rooms: the statement count is the check.
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import tempfile
import time
from typing import Any

from sqlalchemy import event, func, insert, select

ROUNDS = 7


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20, help="messages per room")
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite in a temp folder)")
    parser.add_argument("--quick", action="store_true", help="100 rooms × 5 messages")
    args = parser.parse_args()
    if args.quick:
        args.rooms, args.messages = 100, 5
    logging.basicConfig(level=logging.WARNING)

    from web_app import create_app, rooms
    from web_app.models import Message, ReadPosition, Room, User, get_db
    from web_app.reads import unread_counts

    # Every room in one lobby, so the count is over all of them.
    rooms.LOBBY_LIMIT = max(rooms.LOBBY_LIMIT, args.rooms)
    app = create_app(
        {
            "INSTANCE_PATH": tempfile.mkdtemp(prefix="bench-lobby-"),
            "SECRET_KEY": "bench",
            "DATABASE_URL": args.database_url,
            "PUSH_API_URL": f"http://127.0.0.1:{_closed_port()}",
            "PUSH_SECRET": "bench",
            "PUSH_TIMEOUT": 0.2,
            "WTF_CSRF_ENABLED": False,
        }
    )
    with app.app_context():
        db = get_db()
        author, reader = User(name="author", password_hash="-"), User(name="reader", password_hash="-")
        db.add_all([author, reader])
        db.commit()
        db.execute(insert(Room), [{"name": f"room{i}", "created_by": author.id} for i in range(args.rooms)])
        room_ids = list(db.scalars(select(Room.id)))
        db.execute(
            insert(Message),
            [
                {
                    "room_id": room_id,
                    "user_id": author.id,
                    "type": "all",
                    "kind": "text",
                    "content": "x",
                    "conversation": "all",
                    "seq": n + 1,
                }
                for room_id in room_ids
                for n in range(args.messages)
            ],
        )
        firsts = dict(db.execute(select(Message.room_id, func.min(Message.id)).group_by(Message.room_id)).all())
        db.execute(
            insert(ReadPosition),
            [
                {"user_id": reader.id, "room_id": room_id, "message_id": firsts[room_id] + args.messages // 2}
                for room_id in room_ids[::2]
            ],
        )
        db.commit()
        reader_id = reader.id

    client = app.test_client()
    with client.session_transaction() as session:
        session["uid"] = reader_id
    engine = app.extensions["webchat_db"].kw["bind"]
    statements: list[str] = []

    def counted(*call: Any) -> None:
        statements.append(call[2])

    event.listen(engine, "before_cursor_execute", counted)
    lobby_ms = []
    for _ in range(ROUNDS):
        statements.clear()
        started = time.perf_counter()
        answer = client.get("/rooms", headers={"Accept": "application/json"})
        lobby_ms.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200 and len(answer.json["rooms"]) == args.rooms  # type: ignore[index]
    per_request = list(statements)
    event.remove(engine, "before_cursor_execute", counted)

    query_ms = []
    with app.test_request_context():
        reader_row = get_db().get(User, reader_id)
        assert reader_row is not None
        for _ in range(ROUNDS):
            started = time.perf_counter()
            unread_counts(reader_row, room_ids)
            query_ms.append((time.perf_counter() - started) * 1000)

    backend = engine.dialect.name
    print(f"{backend}: {args.rooms} rooms × {args.messages} messages")
    print(
        f"  SQL statements per GET /rooms: {len(per_request)} "
        f"({sum('read_positions' in s for s in per_request)} for the unread counts of all rooms)"
    )
    print(
        f"  GET /rooms median {statistics.median(lobby_ms):.1f} ms; the unread query alone median "
        f"{statistics.median(query_ms):.1f} ms"
    )


if __name__ == "__main__":
    main()
