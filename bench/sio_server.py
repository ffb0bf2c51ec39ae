"""The peer: a python-socketio AsyncServer on aiohttp that takes its pushes from Redis.

This is how a Flask app pushes with Flask-SocketIO: the app emits through
``RedisManager(write_only=True)`` and this server, subscribed through
``AsyncRedisManager``, delivers to its WebSocket clients. Every connecting
client joins the rooms named in its query string (``?rooms=a,b``), so the load
generator needs no extra event to join, just as webchat's clients are joined
by an API call.

Run as ``python -m bench.sio_server --port P --redis-url U``.
"""

from __future__ import annotations

import argparse
import gc
import urllib.parse

import socketio
from aiohttp import web


def build(redis_url: str) -> web.Application:
    """The aiohttp application with the Socket.IO server attached."""
    # Defaults kept on purpose (ping interval, compression threshold...): the peer
    # is measured as a Flask-SocketIO deployment would run it.
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(redis_url),
        cors_allowed_origins="*",
        transports=["websocket"],
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, str]) -> None:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        for room in ",".join(query.get("rooms", [])).split(","):
            if room:
                await sio.enter_room(sid, room)

    app = web.Application()
    sio.attach(app)
    return app


def main() -> None:
    """Parse the flags and serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    app = build(args.redis_url)
    # The same start-up GC treatment webchat's server gets, so the comparison is
    # about the push path and not about one server tuning its collector.
    gc.collect()
    gc.freeze()
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
