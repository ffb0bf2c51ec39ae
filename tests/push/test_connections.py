"""The node's delivery bookkeeping: heartbeat rounds taken in slices."""

from __future__ import annotations

from typing import Any

from push_server.websocket.connections import HEARTBEAT_FRAMES, Connections


class Transport:
    """Collects what a connection writes, as an asyncio transport would send it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)


class Connection:
    """The attributes of a ClientConnection that the sweep reads and writes."""

    def __init__(self, client_id: str | None, last_seen: float) -> None:
        self.client_id = client_id
        self.last_seen = last_seen
        self.pending: Any = None
        self.transport: Transport | None = Transport()

    def abort(self) -> None:
        assert self.transport is not None
        self.transport.aborted = True


def connections_of(*connections: Connection) -> Connections:
    registry = Connections()
    for connection in connections:
        registry.accepted.add(connection)  # type: ignore[arg-type]
        if connection.client_id is not None:
            registry.by_id[connection.client_id] = connection  # type: ignore[assignment]
    return registry


async def test_a_sweep_in_slices_pings_each_idle_connection_once_per_round() -> None:
    """With 10 slices, each call pings a tenth of 100 idle connections and a round covers all of them."""
    idle = [Connection(f"c{i}", last_seen=0.0) for i in range(100)]
    registry = connections_of(*idle)
    pinged_per_slice = []
    for _ in range(10):
        registry.sweep(now=30.0, interval=25.0, timeout=60.0, handshake_timeout=10.0, slices=10)
        pinged_per_slice.append(sum(1 for c in idle if c.pending is not None))
        registry.flush()
    assert pinged_per_slice == [10] * 10
    assert all(c.transport is not None and c.transport.written == [HEARTBEAT_FRAMES] for c in idle)
    # The next call starts a new round.
    registry.sweep(now=30.0, interval=25.0, timeout=60.0, handshake_timeout=10.0, slices=10)
    assert sum(1 for c in idle if c.pending is not None) == 10


async def test_a_sweep_drops_silent_and_stuck_connections_and_spares_live_ones() -> None:
    """Silent past the timeout or stuck in the handshake: aborted; recently heard from: left alone."""
    silent = Connection("silent", last_seen=0.0)
    stuck = Connection(None, last_seen=0.0)
    live = Connection("live", last_seen=99.0)
    registry = connections_of(silent, stuck, live)
    dropped = registry.sweep(now=100.0, interval=25.0, timeout=60.0, handshake_timeout=10.0)
    assert dropped == 2
    assert silent.transport is not None and silent.transport.aborted
    assert stuck.transport is not None and stuck.transport.aborted
    assert live.transport is not None and not live.transport.aborted and live.pending is None


async def test_a_connection_gone_during_a_round_is_skipped() -> None:
    """A connection that closed after its round began is neither pinged nor counted."""
    gone, kept = Connection("gone", last_seen=0.0), Connection("kept", last_seen=0.0)
    registry = connections_of(gone, kept)
    gone.transport = None
    assert registry.sweep(now=200.0, interval=25.0, timeout=60.0, handshake_timeout=10.0) == 1
    assert gone.pending is None
