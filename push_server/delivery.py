"""What a backend needs from this node's connections: a small Protocol, so nothing imports in a circle.

The backends deliver to this node's sockets through it; ``websocket.connections.Connections``
is the implementation. Neither side imports the other: the listener imports the
backends, the backends import only this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class Closable(Protocol):
    """One connection, as far as a backend closes it."""

    def close(self, code: int = ..., reason: str = ..., frame: bytes | None = None) -> None: ...


class Delivery(Protocol):
    """This node's connections by client id, and delivery of ready frames to them."""

    @property
    def by_id(self) -> Mapping[str, Closable]: ...

    def __len__(self) -> int: ...

    def send(self, client_id: str, frame: bytes) -> bool: ...

    def send_many(self, client_ids: Iterable[str], frame: bytes) -> int: ...

    def send_all(self, frame: bytes, exclude: Iterable[str] | None = None) -> int: ...
