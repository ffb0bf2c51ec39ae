"""create_app(): the push server as one aiohttp Application.

The Application serves the internal API; its cleanup context starts (and, at
shutdown, stops) everything else: the backend, the WebSocket listener on its own
port and the heartbeat sweep. Running the app with ``web.run_app`` or an
``AppRunner`` therefore runs the whole server, and shutting it down (SIGTERM)
closes every browser with 1001 (going away) before the backend stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from . import api, metrics
from .api.auth import ClaimStore, MemoryClaims
from .backends.base import Backend
from .config import Config
from .events import make_events
from .websocket import frames
from .websocket.connections import Connections
from .websocket.listener import ClientConnection, ListenerContext

log = logging.getLogger(__name__)

CONNECTIONS = web.AppKey("connections", Connections)
WS_SERVER = web.AppKey("ws_server", asyncio.Server)

#: How long shutdown waits for browsers to take their close frames.
SHUTDOWN_GRACE = 2.0
#: Seconds between two slices of a heartbeat sweep (see Connections.sweep).
HEARTBEAT_STEP = 0.1


def make_backend(config: Config) -> Backend:
    """The backend the config asks for: Redis when PUSH_REDIS_URL is set, else memory."""
    if config.redis_url:
        # Imported only here, so a single-process server never needs redis.
        from .backends.redis import RedisBackend

        backend: Backend = RedisBackend(config)
        return backend
    from .backends.memory import MemoryBackend

    return MemoryBackend()


def make_claims(config: Config, backend: Backend) -> ClaimStore:
    """Where the API claims nonces and idempotency keys: in Redis for a cluster, else in memory."""
    if config.redis_url:
        from .backends.redis import RedisBackend

        if isinstance(backend, RedisBackend):
            # SET NX PX (with a local fallback while Redis is away): backends/redis/claims.py.
            return backend.claims
    return MemoryClaims()


def create_app(config: Config, backend: Backend | None = None) -> web.Application:
    """The push server: internal API routes plus the WebSocket listener's lifecycle."""
    app = web.Application(middlewares=[api.keep_serving], client_max_size=config.max_body_bytes)
    app[api.CONFIG] = config
    app[api.BACKEND] = backend if backend is not None else make_backend(config)
    app[api.CLAIMS] = make_claims(config, app[api.BACKEND])
    app[CONNECTIONS] = metrics.MeteredConnections()
    # Before the API's routes: its catch-all would otherwise take /metrics and /healthz.
    metrics.add_routes(app)
    api.add_routes(app)
    app.cleanup_ctx.append(_run_push_side)
    return app


def ws_port(app: web.Application) -> int:
    """The port the WebSocket listener is bound to (useful with port 0)."""
    sockets = app[WS_SERVER].sockets
    return int(sockets[0].getsockname()[1])


async def _run_push_side(app: web.Application) -> AsyncIterator[None]:
    config, backend, connections = app[api.CONFIG], app[api.BACKEND], app[CONNECTIONS]
    await backend.start(connections)
    backend.events = events = make_events(config, backend)
    if events is not None:
        metrics.set_events_pending(events.pending)
        await events.start()
    loop = asyncio.get_running_loop()
    context = ListenerContext(config, backend, connections)
    server = await loop.create_server(
        lambda: ClientConnection(context),
        config.ws_host,
        config.ws_port,
        backlog=4096,
        reuse_port=config.reuse_port or None,
    )
    app[WS_SERVER] = server
    heartbeat = loop.create_task(_heartbeat(config, connections))
    log.info("WebSocket listener on ws://%s:%d%s", config.ws_host, ws_port(app), config.ws_path)
    try:
        yield
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        server.close()
        await connections.close_all(frames.CLOSE_GOING_AWAY, "server restarting: reconnect", SHUTDOWN_GRACE)
        if events is not None:
            await events.stop()
        await backend.stop()


async def _heartbeat(config: Config, connections: Connections) -> None:
    loop = asyncio.get_running_loop()
    # Sweep a few times per interval so detection lands close to the timeout,
    # and take each sweep in slices of HEARTBEAT_STEP seconds so a node with many
    # connections never pings them all in one tick.
    period = min(config.heartbeat_interval, config.heartbeat_timeout / 4, config.handshake_timeout / 2)
    slices = max(1, round(period / HEARTBEAT_STEP))
    while True:
        await asyncio.sleep(period / slices)
        try:
            dropped = connections.sweep(
                loop.time(), config.heartbeat_interval, config.heartbeat_timeout, config.handshake_timeout, slices
            )
        except Exception:
            log.exception("heartbeat sweep failed")
            continue
        if dropped:
            log.info("heartbeat dropped %d silent connection(s)", dropped)
