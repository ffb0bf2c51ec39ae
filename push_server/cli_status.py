"""``push-server status`` and ``push-server --check-config``: the operator's two questions.

``status`` asks a running node's API for the cluster's nodes (the ``get_nodes``
operation) and prints each with its connections and uptime; it exits 0, or
says in one line why it cannot get an answer (not running, wrong secret, Redis
away) and exits non-zero, so it also serves as a script's health check.

``--check-config`` reads the settings exactly as the server would, checks what
can be checked without starting (ports, limits against the open-files limit,
the Redis URL's form), prints them without the secret and exits: 0 when the
server would start, 1 with the reason when it would not.

Both take the server's own flags and environment, so ``push-server status
--api-port 7373`` asks the node that ``push-server --api-port 7373`` runs.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import push_protocol

from .config import Config

#: Seconds the status command waits for the API.
STATUS_TIMEOUT = 5.0

#: Exit codes: the API could not be reached; it answered with an error.
EXIT_UNREACHABLE = 2
EXIT_REFUSED = 3


def dispatch(argv: Sequence[str] | None) -> int | None:
    """Run ``status`` or ``--check-config`` when asked; the exit code, or None to run the server."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["status"]:
        from .__main__ import load_config

        return status(load_config(args[1:]))
    if "--check-config" in args:
        from .__main__ import load_config

        args.remove("--check-config")
        return check_config(load_config(args))
    return None


def api_url(config: Config) -> str:
    """Where this config's node serves its API (a wildcard address is asked on loopback)."""
    host = config.api_host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.api_port}"


def call(config: Config, operation: str, arguments: dict[str, Any] | None = None) -> Any:
    """One signed API call (standard library only); its result, or an exception saying why not."""
    path = push_protocol.operation_path(operation)
    body = json.dumps(arguments or {}).encode()
    headers = push_protocol.sign_request(config.secret, "POST", path, body)
    headers["Content-Type"] = "application/json"
    request = urllib.request.Request(api_url(config) + path, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=STATUS_TIMEOUT) as answer:
        return json.loads(answer.read())["result"]


def _uptime(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s"


def _error_of(answer: urllib.error.HTTPError) -> tuple[str, str]:
    try:
        error = json.loads(answer.read())["error"]
        return str(error.get("code", "")), str(error.get("message", ""))
    except Exception:
        return "", answer.reason or ""


def status(config: Config) -> int:
    """Print the cluster's nodes with their connections and uptime; the exit code."""
    where = api_url(config)
    try:
        nodes = call(config, "get_nodes")
    except urllib.error.HTTPError as exc:
        code, message = _error_of(exc)
        if exc.code == 401:
            reason = "the API refused the signature: PUSH_SECRET differs from the server's"
        elif exc.code == 404:
            reason = "this server has no get_nodes operation (an older version)"
        elif exc.code == 503:
            reason = f"the node cannot serve API calls now ({message or 'shared state unavailable'})"
        else:
            reason = f"the API answered {exc.code} {code}: {message}"
        print(f"push-server status: {where}: {reason}", file=sys.stderr)
        return EXIT_REFUSED
    except (urllib.error.URLError, OSError) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(cause, (socket.timeout, TimeoutError)):
            reason = f"no answer within {STATUS_TIMEOUT:.0f}s"
        elif isinstance(cause, ConnectionRefusedError):
            reason = "connection refused (is push-server running there? see PUSH_API_HOST / PUSH_API_PORT)"
        else:
            reason = str(cause)
        print(f"push-server status: cannot reach the API at {where}: {reason}", file=sys.stderr)
        return EXIT_UNREACHABLE
    now = time.time()
    rows = sorted(nodes, key=lambda node: str(node["node"]))
    width = max([len("node")] + [len(str(node["node"])) for node in rows])
    print(f"{'node':<{width}}  {'connections':>11}  uptime")
    for node in rows:
        print(f"{node['node']!s:<{width}}  {int(node['connections']):>11}  {_uptime(now - float(node['started']))}")
    total = sum(int(node["connections"]) for node in rows)
    print(f"{len(rows)} node(s), {total} connection(s) at {where}")
    return 0


def check_config(config: Config) -> int:
    """Check what can be checked without starting; print the settings (no secret); the exit code."""
    from .websocket.limits import default_max_connections, raise_open_files_limit, reserve_for

    problems: list[str] = []
    open_files = raise_open_files_limit()
    max_connections = config.max_connections or default_max_connections(open_files)
    if max_connections + reserve_for(max_connections) > open_files:
        problems.append(
            f"PUSH_MAX_CONNECTIONS={max_connections} leaves fewer than {reserve_for(max_connections)} of the "
            f"{open_files} open files for the API and Redis: lower it or raise the limit (ulimit -n, LimitNOFILE=)"
        )
    if config.redis_url:
        from webchat_redis import RedisUrlError, parse_redis_url

        try:
            parse_redis_url(config.redis_url)
        except RedisUrlError as exc:
            problems.append(f"PUSH_REDIS_URL: {exc}")
    for name, host, port in (("WebSocket", config.ws_host, config.ws_port), ("API", config.api_host, config.api_port)):
        if config.workers > 1 or config.reuse_port:
            break  # workers share the ports with SO_REUSEPORT; a bind test proves nothing
        try:
            with socket.create_server((host, port)):
                pass
        except OSError as exc:
            problems.append(f"the {name} port {host}:{port} cannot be bound: {exc.strerror or exc}")
    for field, value in sorted(vars(config).items()):
        shown = "(set)" if field == "secret" else value
        if field == "redis_url" and value:
            from webchat_redis import safe_url

            shown = safe_url(value)
        print(f"{field} = {shown}")
    print(f"max_connections (effective) = {max_connections}; open files = {open_files}")
    if problems:
        for problem in problems:
            print(f"push-server: {problem}", file=sys.stderr)
        return 1
    print("configuration OK")
    return 0
