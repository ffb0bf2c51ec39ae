"""``push-server`` / ``python -m push_server``: the one place that reads argv and the environment.

Every flag mirrors an environment variable (``--ws-port`` ↔ ``PUSH_WS_PORT``);
a flag wins over the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from typing import Sequence

from aiohttp import web

from . import api
from .app import create_app
from .config import ENVIRONMENT, Config, ConfigError, from_env, parse_value

log = logging.getLogger("push_server")

_HELP = {
    "secret": "signs API requests and handshake tokens (required)",
    "ws_host": "WebSocket listener host (default 127.0.0.1)",
    "ws_port": "WebSocket listener port (default 7272)",
    "api_host": "internal API host (default 127.0.0.1)",
    "api_port": "internal API port (default 7273)",
    "redis_url": "Redis URL: many nodes form one cluster (default: in-memory, one process)",
    "redis_prefix": "key prefix in Redis (default push:)",
    "node_timeout": "seconds without its lease before a node counts as dead (default 10)",
    "allowed_origins": "comma-separated Origin values allowed to connect (default: any)",
    "heartbeat_interval": "seconds of silence before a connection is pinged (default 25)",
    "heartbeat_timeout": "seconds of silence before a connection is dropped (default 60)",
    "max_pending_bytes": "output a connection may have queued before it is dropped (default 1 MiB)",
    "max_message_bytes": "largest pushed message (default 1 MiB)",
    "max_frame_bytes": "largest frame a browser may send (default 64 KiB)",
    "max_client_frames_per_second": "frames per second a browser may send before it is closed (default 50)",
    "workers": "processes sharing the ports as one cluster; needs --redis-url (default 1)",
    "log_level": "DEBUG, INFO, WARNING or ERROR (default INFO)",
    "event_loop": "auto (uvloop when installed), uvloop or asyncio (default auto)",
    "events_url": "POST events (uid_online, client_closed, ...) to this URL (default: none sent)",
    "offline_grace": "seconds a uid may be gone before uid_offline is sent (default 5)",
    "events_retry_s": "retry undelivered events at least this many seconds (default 300)",
    "forward_client_messages": "1: forward browsers' text frames as client_message events (default 0)",
    "events_queue_max": "events waiting for the receiver at most; more are dropped and logged (default 100000)",
    "events_timeout": "seconds the events receiver has to answer (default 10)",
}


def parse_args(argv: Sequence[str] | None) -> dict[str, object]:
    """The settings given on the command line, by field name."""
    parser = argparse.ArgumentParser(prog="push-server", description="webchat's push server")
    for variable, (field_name, _kind) in ENVIRONMENT.items():
        flag = "--" + field_name.replace("_", "-")
        parser.add_argument(flag, dest=field_name, metavar=variable, help=f"{_HELP[field_name]} [env {variable}]")
    given = vars(parser.parse_args(argv))
    values: dict[str, object] = {}
    for variable, (field_name, kind) in ENVIRONMENT.items():
        if given.get(field_name) is not None:
            values[field_name] = parse_value(field_name, kind, given[field_name])
    return values


def load_config(argv: Sequence[str] | None = None) -> Config:
    """Environment plus flags, or exit with the reason."""
    try:
        return from_env(overrides=parse_args(argv))
    except ConfigError as exc:
        sys.exit(f"push-server: {exc}")


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
    log.info("internal API on http://%s:%d", config.api_host, config.api_port)
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
        print=None,
        shutdown_timeout=5.0,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``push-server`` command."""
    config = load_config(argv)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    # One line per API request is too much at INFO under load: the access log
    # is written only when debugging (--log-level DEBUG).
    debugging = logging.getLogger().level <= logging.DEBUG
    logging.getLogger("push_server.access").setLevel(logging.INFO if debugging else logging.WARNING)
    if config.workers > 1:
        from .workers import run_workers

        run_workers(config)
        return
    try:
        serve(config)
    except OSError as exc:
        sys.exit(f"push-server: cannot listen: {exc}")


if __name__ == "__main__":
    main()
