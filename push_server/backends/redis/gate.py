"""Where this node stands with the cluster, as one value, and which commands may run in each state.

The membership (:mod:`.membership`) moves the state; everything that sends to
Redis asks the gate first:

- :meth:`Gate.command` / :meth:`Gate.call`: an API operation's command or
  script call, only while ``UP``; otherwise :class:`BackendUnavailable` saying
  why (the API answers 503 with that text);
- :meth:`Gate.internal` / :meth:`Gate.internal_command`: the node's own upkeep
  (writing its clients back, a client leaving, leases, reaping), whenever it is
  connected, even while the cluster is not whole.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from ..base import BackendUnavailable
from .transport import Transport


class State(enum.Enum):
    """Where this node stands; it only ever moves DOWN → SYNCING → WAITING ⇄ UP (or SYNCING → UP), or back to DOWN."""

    #: Not connected to Redis: API operations fail; pushes reach this node's own clients only.
    DOWN = "down"
    #: Connected, writing this node's clients back: only the node's own upkeep runs.
    SYNCING = "syncing"
    #: Written back, but Redis lost its state and other nodes are still awaited (``waiting``).
    WAITING = "waiting"
    #: Serving: connected, written back, the cluster whole.
    UP = "up"


class Gate:
    """The node's :class:`State` and the commands it lets through; see the module docstring."""

    def __init__(self, transport: Transport, node_timeout: float) -> None:
        self._transport = transport
        self._node_timeout = node_timeout
        self.state = State.DOWN
        #: The nodes ``waiting`` held when last read (for the 503 message).
        self.waiting: list[str] = []

    @property
    def up(self) -> bool:
        """True while API operations are served: linked, state written back, cluster whole."""
        return self.state is State.UP

    @property
    def linked(self) -> bool:
        """True while connected (the node's own upkeep may run, e.g. a write-back)."""
        return self.state is not State.DOWN

    def unavailable(self) -> BackendUnavailable:
        """Why an operation cannot be served now (the API answers 503 with this text)."""
        if self.state is State.DOWN:
            return BackendUnavailable("Redis is unreachable")
        if self.state is State.SYNCING:
            return BackendUnavailable("this node is writing its clients back to Redis; try again shortly")
        waiting = ", ".join(self.waiting) or "none"
        return BackendUnavailable(
            "the cluster is not whole yet: Redis lost its state and node(s) "
            f"{waiting} have not written their clients back (at most {self._node_timeout:g} s); try again shortly"
        )

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """A command of an API operation: only while up."""
        if self.state is not State.UP:
            raise self.unavailable()
        return self._transport.enqueue(*args)

    def call(self, op: str, *args: str | bytes) -> asyncio.Future[Any]:
        """An operation of the script for an API operation: only while up."""
        if self.state is not State.UP:
            raise self.unavailable()
        return self._transport.script(op, *args)

    def internal(self, op: str, *args: str | bytes) -> asyncio.Future[Any]:
        """An operation of the script for the node's own upkeep: whenever connected."""
        if self.state is State.DOWN:
            raise BackendUnavailable("Redis is unreachable")
        return self._transport.script(op, *args)

    def internal_command(self, *args: Any) -> asyncio.Future[Any]:
        """A command for the node's own upkeep (see :meth:`internal`)."""
        if self.state is State.DOWN:
            raise BackendUnavailable("Redis is unreachable")
        return self._transport.enqueue(*args)
