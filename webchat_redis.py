"""Redis clients from a URL, including Redis Sentinel: ``redis+sentinel://host:port[,host:port]/service[/db]``.

redis-py reads ``redis://``, ``rediss://`` and ``unix://`` URLs itself but has no
URL form for Sentinel, so this module adds one (the form Celery and Sidekiq
use, near enough):

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]

The password (and user) are the master's; the sentinels themselves are asked
without one. The client asks the sentinels for the current master whenever it
opens a connection, so after a failover the next reconnection (the push
server's supervisor reconnects as soon as its connection breaks) lands on the
new master, with no restart.

Used by the push server's Redis backend and by the web app (sessions, limits),
so both accept the same ``PUSH_REDIS_URL`` / ``REDIS_URL`` forms. A top-level
module, standard library only at import (redis is imported when a client is
made), so the web app can use it without the push server's dependencies.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

__all__ = ["RedisUrlError", "SentinelUrl", "async_client", "parse_redis_url", "safe_url", "sync_client"]

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


class RedisUrlError(ValueError):
    """A Redis URL this module cannot use; the message says what is wrong."""


@dataclass(frozen=True)
class SentinelUrl:
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_redis_url(url: str) -> SentinelUrl | None:
    """A Sentinel URL's parts; None for a URL redis-py reads itself. RedisUrlError if malformed."""
    scheme, _, rest = url.partition("://")
    if not rest:
        raise RedisUrlError(f"{safe_url(url)!r} is not a URL (expected redis://host:port/db or redis+sentinel://...)")
    if scheme in ("redis", "rediss", "unix"):
        return None
    if scheme != SENTINEL_SCHEME:
        raise RedisUrlError(f"unknown scheme {scheme!r}: use redis://, rediss://, unix:// or redis+sentinel://")
    userinfo, _, location = rest.rpartition("@")
    hosts, _, path = location.partition("/")
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        host = host.strip("[]")
        if not host:
            raise RedisUrlError(f"sentinel address {item!r} has no host")
        try:
            sentinels.append((host, int(port) if port else DEFAULT_SENTINEL_PORT))
        except ValueError:
            raise RedisUrlError(f"sentinel address {item!r}: port {port!r} is not a number") from None
    parts = [urllib.parse.unquote(part) for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise RedisUrlError("a Sentinel URL ends with /service_name or /service_name/db")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise RedisUrlError(f"database {parts[1]!r} is not a number")
        db = int(parts[1])
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if colon else None
    return SentinelUrl(tuple(sentinels), parts[0], db, username, password)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    _, at, location = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{location}"


def _sentinel_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    # The sentinels get the same time-outs as the master, never its password.
    return {key: kwargs[key] for key in ("socket_timeout", "socket_connect_timeout") if key in kwargs}


def _client(url: str, kwargs: dict[str, Any], redis_class: Any, sentinel_class: Any) -> Any:
    """``redis_class`` for a plain URL; for a Sentinel URL, ``sentinel_class``'s client of the current master."""
    parsed = parse_redis_url(url)
    if parsed is None:
        return redis_class.from_url(url, **kwargs)
    sentinel = sentinel_class(list(parsed.sentinels), sentinel_kwargs=_sentinel_kwargs(kwargs), **kwargs)
    return sentinel.master_for(parsed.service_name, db=parsed.db, username=parsed.username, password=parsed.password)


def async_client(url: str, **kwargs: Any) -> Any:
    """A ``redis.asyncio.Redis`` for ``url`` (Sentinel URLs: a client that follows the master)."""
    import redis.asyncio
    import redis.asyncio.sentinel

    return _client(url, kwargs, redis.asyncio.Redis, redis.asyncio.sentinel.Sentinel)


def sync_client(url: str, **kwargs: Any) -> Any:
    """A ``redis.Redis`` for ``url`` (Sentinel URLs: a client that follows the master)."""
    import redis
    import redis.sentinel

    return _client(url, kwargs, redis.Redis, redis.sentinel.Sentinel)
