"""serve(): run one push server process (the API, the WebSocket listener) until SIGTERM/SIGINT.

Used by ``__main__`` for a single process and by ``workers`` for each worker,
so neither imports the other.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

from aiohttp import web

from . import api
from .app import create_app
from .config import Config

log = logging.getLogger("push_server")


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """The event loop the config asks for: uvloop (its transports write in C) or asyncio."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                sys.exit("push-server: --event-loop uvloop, but uvloop is not installed (pip install uvloop)")
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def serve(config: Config) -> None:
    """Run one server process until SIGTERM/SIGINT."""

    async def settle_gc(app: web.Application) -> None:
        # Everything made at start-up lives forever: freeze it out of the
        # collector's scans, and collect young objects less often. Full
        # collections over many connections caused 200-300 ms pauses.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)

    app = create_app(config)
    app.on_startup.append(settle_gc)
    loop = new_event_loop(config.event_loop)
    asyncio.set_event_loop(loop)
    log.info("event loop: %s", type(loop).__module__.split(".")[0])
    web.run_app(
        app,
        loop=loop,
        host=config.api_host,
        port=config.api_port,
        reuse_port=config.reuse_port or None,
        access_log_class=api.AccessLogger,
        access_log=logging.getLogger("push_server.access"),
        # run_app calls this once every listener is bound: only then is it true.
        print=lambda _banner: log.info("internal API on http://%s:%d", config.api_host, config.api_port),
        shutdown_timeout=5.0,
    )
