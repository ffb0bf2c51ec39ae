"""A MessageReader that records what it parses, for the reader, fuzz and differential tests."""

from __future__ import annotations

from typing import Any

from push_server.websocket import frames
from push_server.websocket.reader import MessageReader


class Recorder(MessageReader):
    """Collects ``(kind, ...)`` events; ``error`` is the close code of the ProtocolError that ended it."""

    __slots__ = ("error", "events")

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []
        self.error: int | None = None

    def feed_all(self, pieces: list[bytes], max_size: int = 1 << 20, max_fragments: int = 1000) -> Recorder:
        """Feed each piece in turn, stopping at the first ProtocolError as the listener does."""
        for piece in pieces:
            try:
                self.feed(piece, max_size, max_fragments)
            except frames.ProtocolError as exc:
                self.error = exc.code
                break
        return self

    def message_received(self, opcode: int, payload: bytes) -> None:
        self.events.append(("message", opcode, payload))

    def ping_received(self, payload: bytes) -> None:
        self.events.append(("ping", payload))

    def pong_received(self, payload: bytes) -> None:
        self.events.append(("pong", payload))

    def close_received(self, code: int | None, reason: str) -> None:
        self.events.append(("close", code, reason))
