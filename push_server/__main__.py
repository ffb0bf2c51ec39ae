"""``push-server`` / ``python -m push_server``: the one place that reads argv and the environment.

Every flag mirrors an environment variable (``--ws-port`` ↔ ``PUSH_WS_PORT``);
a flag wins over the environment. The one exception is the secret: it comes
from ``PUSH_SECRET`` or from a file (``--secret-file``/``PUSH_SECRET_FILE``),
never from argv, which every local user can read in the process list.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import cli_status
from .config import ENVIRONMENT, ENVIRONMENT_ONLY, Config, ConfigError, from_env, parse_value
from .serve import serve

log = logging.getLogger("push_server")

_HELP = {
    "secret_file": "a file holding the secret that signs API requests and handshake tokens "
    "(or set PUSH_SECRET; there is no --secret: argv is visible to every local user)",
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
    "body_read_timeout": "seconds an API request body may take to arrive (default 10)",
    "idempotency_window": "seconds an idempotency key is remembered (default 300)",
    "batch_slice_seconds": "event-loop time a batch works for before letting others run (default 0.005)",
    "max_message_fragments": "frames in one fragmented message a browser may send (default 100)",
    "handshake_timeout": "seconds from accept within which the WebSocket handshake must complete (default 10)",
    "close_timeout": "seconds a connection the server closes has to close its side before it is dropped (default 5)",
    "token_max_ttl": "longest lifetime in seconds a handshake token may claim (default 86400)",
    "max_connections": "WebSockets this node holds; past it handshakes get 503 (default: open-files limit minus a reserve)",
    "max_connections_per_ip": "WebSockets one address may hold; 0 is no limit, e.g. behind a proxy (default 1000)",
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


class _RefuseSecret(argparse.Action):
    """``--secret`` is refused, without echoing its value: argv is public on the host."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error("--secret is not supported (every local user can read argv): set PUSH_SECRET or use --secret-file")


def parse_args(argv: Sequence[str] | None) -> dict[str, object]:
    """The settings given on the command line, by field name."""
    # No abbreviations: `--secret X` must not be taken for `--secret-file X`.
    parser = argparse.ArgumentParser(
        prog="push-server",
        description="webchat's push server; `push-server status` lists the cluster's nodes, "
        "--check-config validates the settings and exits",
        allow_abbrev=False,
    )
    parser.add_argument("--secret", action=_RefuseSecret, help=argparse.SUPPRESS)
    for variable, (field_name, _kind) in ENVIRONMENT.items():
        if variable in ENVIRONMENT_ONLY:
            continue
        flag = "--" + field_name.replace("_", "-")
        parser.add_argument(flag, dest=field_name, metavar=variable, help=f"{_HELP[field_name]} [env {variable}]")
    given = vars(parser.parse_args(argv))
    given.pop("secret", None)
    values: dict[str, object] = {}
    for field_name, kind in ENVIRONMENT.values():
        if given.get(field_name) is not None:
            values[field_name] = parse_value(field_name, kind, given[field_name])
    return values


def load_config(argv: Sequence[str] | None = None) -> Config:
    """Environment plus flags, or exit with the reason."""
    try:
        return from_env(overrides=parse_args(argv))
    except ConfigError as exc:
        sys.exit(f"push-server: {exc}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``push-server`` command."""
    if (code := cli_status.dispatch(argv)) is not None:  # `push-server status`, `--check-config`
        sys.exit(code)
    config = load_config(argv)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
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
