"""Prometheus metrics and the health check: ``GET /metrics`` and ``GET /healthz`` on the API port.

Neither route is signed (SPEC §11): the API port is internal, and what they
show (counts, not ids) is what a monitoring system on that network may read.

The fan-out path pays nothing per recipient. What grows with recipients (frames
and bytes sent) is added once per push by :class:`MeteredConnections`, and
what is a state (connections open, handshakes in progress, bytes waiting in
transports) is read at scrape time by :class:`_NodeCollector` rather than kept
up to date on every change. Counters for rare events (a refused handshake, a
dropped client, a Redis round trip) are module-level children, bound to their
labels once, so a hook elsewhere is one ``.inc()``.

Hooks for other modules (one line each where they happen):

- ``HANDSHAKES_ACCEPTED.inc()`` / ``handshake_refused(status)`` in the listener;
- ``client_dropped(reason)`` where a client is dropped;
- ``REDIS_ROUND_TRIPS`` / ``REDIS_ERRORS`` / ``LEASE_RENEWALS`` in the Redis backend;
- ``set_events_pending(function)``: the events module says how to read its queue depth.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

import push_protocol

from .websocket.connections import Connections

if TYPE_CHECKING:
    from .websocket.listener import ClientConnection

log = logging.getLogger(__name__)

__all__ = [
    "MeteredConnections",
    "add_routes",
    "client_dropped",
    "handshake_refused",
    "set_draining",
    "set_events_pending",
]

# -- counters for rare events (module-level: one process is one node) --------------------

HANDSHAKES = Counter("push_handshakes", "WebSocket handshakes by outcome", ["outcome"], registry=None)
HANDSHAKES_ACCEPTED = HANDSHAKES.labels(outcome="accepted")
#: Refusals by HTTP status ("503" is a connection limit or a draining node).
HANDSHAKES_REFUSED = Counter(
    "push_handshakes_refused", "WebSocket handshakes refused, by HTTP status", ["status"], registry=None
)
CONNECTIONS_REFUSED = Counter(
    "push_connections_refused",
    "connections refused by a connection limit (node or per address)",
    ["limit"],
    registry=None,
)
CLIENTS_DROPPED = Counter("push_clients_dropped", "clients dropped by the server, by reason", ["reason"], registry=None)
REDIS_ROUND_TRIPS = Counter("push_redis_round_trips", "round trips to Redis (one pipeline is one)", registry=None)
REDIS_ERRORS = Counter(
    "push_redis_errors", "round trips to Redis that failed (connection lost, time-out)", registry=None
)
LEASE_RENEWALS = Counter("push_lease_renewals", "renewals of this node's lease in Redis", registry=None)
API_REQUESTS = Counter(
    "push_api_requests", "internal API requests by operation and HTTP status", ["operation", "status"], registry=None
)
API_LATENCY = Histogram(
    "push_api_request_seconds",
    "internal API request time by operation",
    ["operation"],
    # From a lone cached answer (~0.2 ms) to a 10,000-operation batch.
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=None,
)

_COUNTERS = (
    HANDSHAKES,
    HANDSHAKES_REFUSED,
    CONNECTIONS_REFUSED,
    CLIENTS_DROPPED,
    REDIS_ROUND_TRIPS,
    REDIS_ERRORS,
    LEASE_RENEWALS,
    API_REQUESTS,
    API_LATENCY,
)
_DROP_REASONS = ("slow_consumer", "timeout", "flood", "protocol_error", "closed_by_api", "draining")

#: When this process started (wall clock): a node's uptime.
STARTED = time.time()

#: Called once the node listens (its WebSocket listener is bound): a worker tells its parent.
ON_READY: list[Callable[[], None]] = []

_events_pending: Callable[[], int] = lambda: 0  # noqa: E731 - replaced by the events module
_draining = False


def handshake_refused(status: int) -> None:
    """Count a refused handshake (rare: no care for speed)."""
    HANDSHAKES.labels(outcome="refused").inc()
    HANDSHAKES_REFUSED.labels(status=str(status)).inc()


def client_dropped(reason: str) -> None:
    """Count a client the server dropped; ``reason`` is one of a fixed few (bounded labels)."""
    CLIENTS_DROPPED.labels(reason=reason if reason in _DROP_REASONS else "other").inc()


def set_events_pending(read: Callable[[], int]) -> None:
    """Hook for the events module: how to read the number of events waiting to be delivered."""
    global _events_pending
    _events_pending = read


def set_draining(draining: bool) -> None:
    """A draining node answers 503 on /healthz, so a load balancer stops sending to it."""
    global _draining
    _draining = draining


# -- counting per push -------------------------------------------------------------------


class MeteredConnections(Connections):
    """:class:`Connections` that counts frames and bytes queued, once per push (not per recipient)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames_sent = 0
        self.bytes_sent = 0
        self.timeouts = 0

    def send_many(self, client_ids: Iterable[str], frame: bytes) -> int:
        count = super().send_many(client_ids, frame)
        self.frames_sent += count
        self.bytes_sent += count * len(frame)
        return count

    def queue(self, connection: ClientConnection, frame: bytes) -> None:
        super().queue(connection, frame)
        self.frames_sent += 1
        self.bytes_sent += len(frame)

    def sweep(self, *args: Any, **kwargs: Any) -> int:
        # Whatever the sweep's parameters (the handshake deadline may change
        # them), what is counted is what it returns: the connections it dropped.
        dropped = super().sweep(*args, **kwargs)
        self.timeouts += dropped
        return dropped


class _NodeCollector(Collector):
    """What is read from the node's own state at scrape time."""

    def __init__(self, app: web.Application, connections: Connections) -> None:
        self.app = app
        self.connections = connections

    def collect(self) -> Iterable[Metric]:
        connections = self.connections
        yield GaugeMetricFamily("push_connections", "open WebSocket connections (registered clients)", len(connections))
        yield GaugeMetricFamily(
            "push_handshakes_in_progress",
            "accepted sockets that have not finished their handshake",
            max(0, len(connections.accepted) - len(connections.by_id)),
        )
        pending = 0
        for connection in list(connections.by_id.values()):
            transport = connection.transport
            if transport is not None:
                pending += transport.get_write_buffer_size()
        yield GaugeMetricFamily(
            "push_pending_bytes", "bytes waiting in this node's transports for slow readers", pending
        )
        frames_sent = getattr(connections, "frames_sent", 0)
        bytes_sent = getattr(connections, "bytes_sent", 0)
        yield CounterMetricFamily("push_frames_sent", "frames queued to browsers (counted per push)", frames_sent)
        yield CounterMetricFamily("push_bytes_sent", "bytes of frames queued to browsers", bytes_sent)
        yield CounterMetricFamily(
            "push_heartbeat_timeouts",
            "connections dropped as silent (heartbeat) or with an unfinished handshake",
            getattr(connections, "timeouts", 0),
        )
        try:
            events = int(_events_pending())
        except Exception:
            log.exception("could not read the events backlog")
            events = 0
        yield GaugeMetricFamily("push_events_pending", "events waiting to be delivered to the business app", events)
        yield GaugeMetricFamily("push_started_timestamp_seconds", "when this node started (unix time)", STARTED)
        yield GaugeMetricFamily(
            "push_up", "1 while the node can serve API calls (as /healthz says)", 1 if _healthy(self.app) else 0
        )


# -- the routes --------------------------------------------------------------------------

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


def _healthy(app: web.Application) -> bool:
    """Whether the node can serve API calls: its backend says so (Redis reachable, state written back)."""
    from .api import BACKEND

    if _draining:
        return False
    # The Redis backend keeps ``up``; the memory backend is always up.
    return bool(getattr(app[BACKEND], "up", True))


async def handle_metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus' text format."""
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def handle_health(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 while the node serves API calls, 503 while it cannot."""
    if _healthy(request.app):
        return web.json_response({"status": "ok"})
    reason = "draining" if _draining else "shared state (Redis) unavailable"
    return web.json_response({"status": "unavailable", "reason": reason}, status=503)


def _operation_names() -> dict[str, str]:
    names = {push_protocol.operation_path(op): op for op in push_protocol.OPERATIONS}
    names[push_protocol.BATCH_PATH] = "batch"
    return names


@web.middleware
async def _measure(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    # Paths outside the operations are one label ("other"), so a scanner
    # cannot grow the label set without bound.
    path = request.path
    if path in (METRICS_PATH, HEALTH_PATH):
        return await handler(request)
    operation = _OPERATION_NAMES.get(path, "other")
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        children = _API_CHILDREN.get((operation, status))
        if children is None:
            children = _API_CHILDREN[(operation, status)] = (
                API_REQUESTS.labels(operation, str(status)),
                API_LATENCY.labels(operation),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)


_OPERATION_NAMES = _operation_names()
#: (operation, status) → its counter and histogram children: labels() takes a lock and
#: builds a key on every call (~6 µs of a call's ~90 in process, measured); the set is
#: bounded (the operations, "other", and the statuses the API answers).
_API_CHILDREN: dict[tuple[str, int], tuple[Any, Any]] = {}


async def _ready(app: web.Application) -> None:
    for callback in ON_READY:
        callback()


async def _drain(app: web.Application) -> None:
    # Shutdown has begun (SIGTERM): a load balancer polling /healthz stops
    # sending here while browsers are closed with 1001 and told to reconnect.
    set_draining(True)


def add_routes(app: web.Application) -> None:
    """Serve /metrics and /healthz on ``app`` and measure its API requests.

    Call before the API's own routes: its catch-all would take these paths.
    """
    from .app import CONNECTIONS

    registry = CollectorRegistry(auto_describe=True)
    for counter in _COUNTERS:
        registry.register(counter)
    registry.register(_NodeCollector(app, app[CONNECTIONS]))
    app[_REGISTRY] = registry
    # Outermost, so it sees the status of every answer (the API's own middleware
    # turns errors into 500s inside it).
    app.middlewares.insert(0, _measure)
    app.on_startup.append(_ready)  # after the cleanup contexts: the WebSocket listener is bound
    app.on_shutdown.append(_drain)
    app.router.add_get(METRICS_PATH, handle_metrics)
    app.router.add_get(HEALTH_PATH, handle_health)
