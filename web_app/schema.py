"""The database schema at boot: missing tables, and the columns newer versions added.

``create_all`` makes missing tables, never missing columns; each release that
added a column to an existing table adds it here (:func:`add_columns`), so an
older database keeps working after an upgrade. Every step is safe to run at
every boot and in several gunicorn workers at once: it looks first, and a step
that lost a race to another process looks again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine, Index, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from .models import Base, Message
from .names import KEY_MAX, name_key

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_ATTEMPTS", "add_columns", "create_tables", "upgrade_name_keys"]

#: Attempts at creating the missing tables while other processes may be doing the same.
SCHEMA_ATTEMPTS = 6


def create_tables(engine: Engine) -> None:
    """Create any missing tables and columns, even when other workers start at the same moment.

    gunicorn boots its workers together, and each creates what is missing: on
    a new database one of them wins, and the others fail on a table that was
    not there when they looked ("already exists") or on a new SQLite file
    being switched to WAL ("database is locked"). A failed attempt looks
    again once the winner is done; only a lasting failure is raised (and a
    worker that cannot boot makes gunicorn stop, so it must be rare).
    """

    def create() -> None:
        Base.metadata.create_all(engine)
        timestamp = "TIMESTAMP" if engine.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"
        # Sequences for gap detection (docs/delivery.md), then edits and deletes.
        add_columns(engine, "messages", {"conversation": "VARCHAR(48)", "seq": "INTEGER"})
        add_columns(
            engine,
            "messages",
            {"edited_at": timestamp, "deleted": "BOOLEAN NOT NULL DEFAULT false", "rev": "INTEGER"},
        )
        # Presence, kept from the push server's events (web_app/presence.py).
        add_columns(engine, "users", {"online": "BOOLEAN NOT NULL DEFAULT FALSE", "last_seen": timestamp})
        # Also when another worker added the columns and has not made the indexes yet.
        for index in _indexes(Message, "ix_messages_room_conversation_seq", "ix_messages_room_rev"):
            index.create(engine, checkfirst=True)

    _retried("creating tables", create)
    upgrade_name_keys(engine)


def add_columns(engine: Engine, table: str, columns: dict[str, str]) -> None:
    """Add each of ``columns`` (name: SQL type and default) that ``table`` lacks."""
    present = {column["name"] for column in inspect(engine).get_columns(table)}
    for name, ddl in columns.items():
        if name in present:
            continue
        log.info("adding the %s column to an existing %s table", name, table)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))
        except SQLAlchemyError:
            # Another worker added it between our look and our ALTER.
            if name not in {column["name"] for column in inspect(engine).get_columns(table)}:
                raise


def _indexes(model: type[Base], *names: str) -> list[Index]:
    """The named indexes of a model's table."""
    table = model.metadata.tables[str(model.__tablename__)]
    return [index for index in table.indexes if index.name in names]


def upgrade_name_keys(engine: Engine) -> None:
    """Give a users table made before name keys existed its ``name_key`` column, filled in, and its unique index.

    Two old accounts whose names share a key keep working: the older one gets
    the key, the newer keeps NULL (logged) and still logs in by its exact name.
    """

    def upgrade() -> None:
        add_columns(engine, "users", {"name_key": f"VARCHAR({KEY_MAX})"})
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT id, name FROM users WHERE name_key IS NULL ORDER BY id")).all()
            taken = set(conn.execute(text("SELECT name_key FROM users WHERE name_key IS NOT NULL")).scalars())
            for row_id, name in rows:
                key = name_key(name)
                if key in taken:
                    log.warning(
                        "user %s (%r) looks like an older account's name: left without a name key", row_id, name
                    )
                    continue
                taken.add(key)
                conn.execute(text("UPDATE users SET name_key = :key WHERE id = :id"), {"key": key, "id": row_id})
            conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ux_users_name_key ON users (name_key)"))

    _retried("adding name keys", upgrade)


def _retried(what: str, step: Callable[[], None]) -> None:
    """Run ``step``; when it fails because another worker raced it, look again (a lasting failure is raised)."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            step()
            return
        except SQLAlchemyError:
            if attempt == SCHEMA_ATTEMPTS:
                raise
            log.info("%s raced another process (attempt %d); looking again", what, attempt, exc_info=True)
            time.sleep(0.1 * attempt)
