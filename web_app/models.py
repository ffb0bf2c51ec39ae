"""The chat's data: users, rooms, messages and the images they carry.

SQLAlchemy 2.x with no Flask extension: one engine per app (kept in
``app.extensions``), one ORM session per request (``get_db()``), closed when the
app context ends. SQLite in the instance folder is the default; ``DATABASE_URL``
may point at PostgreSQL instead (``postgresql://`` URLs are driven by psycopg 3).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    false,
    func,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from .names import KEY_MAX

log = logging.getLogger(__name__)

__all__ = [
    "Avatar",
    "Base",
    "Image",
    "Message",
    "ReadPosition",
    "Restriction",
    "Room",
    "User",
    "conversation_of",
    "database_url",
    "get_db",
    "init_db",
    "insert_unique",
    "isoformat",
    "next_rev",
    "store_message",
    "utcnow",
]

NAME_MAX = 32
ROOM_NAME_MAX = 64
CONTENT_MAX = 4000


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    """``2024-05-01T12:00:00.123Z``: what the page and API clients get."""
    # SQLite hands back naive datetimes; everything is stored in UTC, so say so.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Base(DeclarativeBase):
    """Declarative base of every table."""


class User(Base):
    """An account. ``password_hash`` is werkzeug's salted hash; the password itself is never stored."""

    __tablename__ = "users"
    __table_args__ = (Index("ux_users_name_key", "name_key", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    # names.name_key(name): what must be unique (look-alike names share it).
    # Nullable and indexed separately so that schema.upgrade_name_keys() can add it to
    # an existing table; NULL only for an old row whose key an older row took.
    name_key: Mapped[str | None] = mapped_column(String(KEY_MAX))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Presence, kept from the push server's events (web_app/presence.py, which
    # also adds the two columns to a database made before them).
    online: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Joined with the user (its bytes are deferred), so a message's avatar URL costs no query.
    avatar: Mapped[Avatar | None] = relationship(lazy="joined", viewonly=True)

    @property
    def uid(self) -> str:
        """The uid the push server knows this user by (uids travel as strings)."""
        return str(self.id)


class Room(Base):
    """A chat room; its push group is ``room:<id>``."""

    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(ROOM_NAME_MAX), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Image(Base):
    """An uploaded image's bytes and the type sniffed from them.

    Kept in the database rather than on disk so that a message and its image are
    stored in one transaction and every web worker (or machine) can serve it.
    """

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Avatar(Base):
    """A user's uploaded picture (web_app/avatars.py): one per user, replaced by the next upload.

    ``version`` goes up with every upload and is part of the picture's URL, so
    browsers may cache a URL for long and still see a new picture at once.
    """

    __tablename__ = "avatars"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    version: Mapped[int] = mapped_column(default=1)

    @property
    def url(self) -> str:
        """Where the page fetches the picture."""
        return f"/avatars/{self.user_id}?v={self.version}"


#: The conversation of a room's public messages (private ones are "<low uid>:<high uid>").
PUBLIC = "all"


def conversation_of(kind: str, user_id: int, to_id: int | None) -> str:
    """The sequence a message is numbered in, within its room: the public one, or one per pair of users."""
    if kind != "to" or to_id is None:
        return PUBLIC
    low, high = sorted((user_id, to_id))
    return f"{low}:{high}"


class Message(Base):
    """A chat message: public (``type`` "all") or private (``type`` "to", with ``to_id``); text or image.

    ``seq`` numbers the messages of one conversation (``conversation``: the
    room's public messages, or one pair of users' private messages in the
    room) 1, 2, 3… with no holes, so a page that holds seq n of a
    conversation and is given n + 2 knows it missed one (docs/delivery.md).
    Messages stored before the column existed have none.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_room_id_id", "room_id", "id"),
        Index("ix_messages_room_conversation_seq", "room_id", "conversation", "seq", unique=True),
        Index("ix_messages_room_rev", "room_id", "rev"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    type: Mapped[str] = mapped_column(String(8))
    to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(8), default="text")
    content: Mapped[str] = mapped_column(Text)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    conversation: Mapped[str | None] = mapped_column(String(48))
    seq: Mapped[int | None] = mapped_column()
    # Edits and deletes (see "Room interactions" below): when the text last
    # changed, whether it is gone, and the room's change number of its last change.
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    rev: Mapped[int | None] = mapped_column()

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")
    to_user: Mapped[User | None] = relationship(foreign_keys=[to_id], lazy="joined")

    def to_dict(self) -> dict[str, Any]:
        """The message as it is pushed and listed: SPEC §5's shape (§10's for an edited or deleted one)."""
        if self.deleted:
            return self._deleted_dict()
        data: dict[str, Any] = {
            "type": self.type,
            "id": self.id,
            "room_id": self.room_id,
            "uid": self.user.uid,
            "uname": self.user.name,
            "content": self.content,
            "created_at": isoformat(self.created_at),
        }
        if self.seq is not None:
            data["seq"] = self.seq
        # A private message says who it is for, so the sender's own page can show it.
        if self.type == "to" and self.to_user is not None:
            data["to_uid"] = self.to_user.uid
            data["to_uname"] = self.to_user.name
        if self.kind == "image":
            data["kind"] = "image"
            data["url"] = f"/images/{self.image_id}"
        # Only for an uploaded picture: without one the page draws initials.
        if self.user.avatar is not None:
            data["avatar"] = self.user.avatar.url
        if self.edited_at is not None:
            data["edited_at"] = isoformat(self.edited_at)
        if self.rev is not None:
            data["rev"] = self.rev
        return data

    def _deleted_dict(self) -> dict[str, Any]:
        """A deleted message: no content, only what a client needs to keep its seqs whole (docs/delivery.md)."""
        data: dict[str, Any] = {"id": self.id, "room_id": self.room_id, "deleted": True, "type": self.type}
        if self.seq is not None:
            data["seq"] = self.seq
        if self.rev is not None:
            data["rev"] = self.rev
        # A private message's conversation is its pair: both are the reader and the other party.
        if self.type == "to" and self.to_user is not None:
            data["uid"] = self.user.uid
            data["to_uid"] = self.to_user.uid
        return data


def store_message(db: Session, message: Message) -> None:
    """Number ``message`` in its conversation and commit it (with whatever else ``db`` holds).

    The room's row is locked first (PostgreSQL; SQLite lets one writer in at a
    time anyway), so that, within a room, messages are numbered and given their
    ids in the order they commit: two gunicorn workers never take one seq, and
    a reader that has seen id n will never later find a smaller id appear
    (what the catch-up's ``after=`` relies on).
    """
    message.conversation = conversation_of(message.type, message.user_id, message.to_id)
    # FOR NO KEY UPDATE: it still lets other rows refer to the room meanwhile.
    db.execute(select(Room.id).where(Room.id == message.room_id).with_for_update(key_share=True))
    # One statement computes and inserts: atomic on SQLite even without the lock.
    message.seq = (
        select(func.coalesce(func.max(Message.seq), 0) + 1)
        .where(Message.room_id == message.room_id, Message.conversation == message.conversation)
        .scalar_subquery()
    )
    db.add(message)
    db.commit()


def database_url(url: str | None, instance_path: str) -> str:
    """The SQLAlchemy URL for ``DATABASE_URL`` (or the SQLite default in the instance folder)."""
    if not url:
        return f"sqlite:///{instance_path}/webchat.sqlite"
    # Heroku-style and plain libpq URLs name no driver; psycopg 3 is the one we ship.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # Several gunicorn workers may write at once: wait for the lock instead of
        # failing, and let readers run alongside the writer (WAL).
        engine = create_engine(url, connect_args={"timeout": 15})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def init_db(app: Flask) -> None:
    """Create the app's engine and any missing tables and columns (web_app/schema.py)."""
    from .schema import create_tables  # schema.py builds on this module's tables

    url = database_url(app.config.get("DATABASE_URL"), app.instance_path)
    engine = _make_engine(url)
    create_tables(engine)
    app.extensions["webchat_db"] = sessionmaker(engine, expire_on_commit=False)
    # Rate-limit counts (web_app/limits.py) commit on a connection of their own
    # while the request's session holds one: from one pool, 15 requests at once
    # (its size plus overflow) each held one and waited for a second, and every
    # one of them failed after the pool's 30 s timeout. Their own pool's
    # connections are held only for one statement and never wait on another.
    app.extensions["webchat_counts_db"] = _make_engine(url)
    app.teardown_appcontext(_close_db)


def get_db() -> Session:
    """This request's ORM session."""
    if "db" not in g:
        g.db = current_app.extensions["webchat_db"]()
    return g.db  # type: ignore[no-any-return]


def insert_unique(row: Base) -> bool:
    """Add ``row`` and commit; False (and nothing stored) if a unique index refused it.

    The index decides, so two concurrent requests for one name cannot both win.
    """
    db = get_db()
    db.add(row)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        return False
    return True


def _close_db(_exc: BaseException | None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


# -- Room interactions: read positions, bans and mutes, change numbers -----------
#
# Added for issue 12 (typing, reads, edits, moderation); kept apart from the
# tables above. Nothing here is written per message: a read position is one
# row per (user, room), a restriction one row per (room, user, kind).


class ReadPosition(Base):
    """How far one user has read in one room: the id of the last message read. It never moves back."""

    __tablename__ = "read_positions"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    message_id: Mapped[int] = mapped_column()


#: Restriction kinds: a ban keeps the member out of the room; a mute only stops them posting.
BAN = "ban"
MUTE = "mute"


class Restriction(Base):
    """A ban or a mute of one user in one room, until ``until`` (for good when None)."""

    __tablename__ = "restrictions"

    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def next_rev(db: Session, room_id: int) -> Any:
    """Lock the room and give the SQL for its next change number (the last message edit or delete + 1).

    Like ``store_message``'s seq: under the room's row lock, so change numbers
    follow commit order and a reader that has seen change n never later finds a
    smaller one appear (what the page's change catch-up relies on).
    """
    db.execute(select(Room.id).where(Room.id == room_id).with_for_update(key_share=True))
    return select(func.coalesce(func.max(Message.rev), 0) + 1).where(Message.room_id == room_id).scalar_subquery()
