"""Abuse limits: how often one user may post, one name may fail to log in, one address may register.

Each limit is a fixed window: at most ``count`` hits per ``seconds``, counted
per identity (a user, a name and address, an address). Past it the answer is
429 with ``Retry-After`` (the seconds until the window ends) and the view does
not run, so nothing is stored.

The counts must be shared by every process serving the app (gunicorn's
workers, several machines), so they live where the app's state lives: in Redis
when ``REDIS_URL`` is set (one ``INCR`` per hit, the key expiring with its
window), otherwise in the database (one upsert per hit on a row per identity).
An in-process counter would give each worker its own allowance. If Redis does
not answer, the request is let through and the failure logged: a limit is a
guard, not a reason to stop the chat.

The settings (environment, or ``create_app``'s mapping) are ``"count/seconds"``,
or ``off``; the defaults are far above what a person does:

=============================  ==========  ====================================
setting                        default     counts
=============================  ==========  ====================================
``RATE_LIMIT_POSTS``           ``120/60``  messages and images, per user
``RATE_LIMIT_TYPING``          ``60/60``   typing notices, per user
``RATE_LIMIT_UPLOADS``         ``20/60``   image uploads, per user
``RATE_LIMIT_EDITS``           ``120/60``  edits and deletes of messages, per user
``RATE_LIMIT_LOGIN_FAILURES``  ``10/300``  wrong passwords, per name and address
``RATE_LIMIT_REGISTRATIONS``   ``20/3600`` accounts created, per address
``RATE_LIMIT_ROOMS``           ``30/3600`` rooms created, per address
=============================  ==========  ====================================
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, request, session
from sqlalchemy import BigInteger, Engine, Integer, String, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from .errors import ApiError
from .models import Base

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULTS",
    "RateCount",
    "Rule",
    "enforce",
    "hit",
    "init_limits",
    "rate_limited",
    "settings_from_env",
    "would_exceed",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Each limit's setting and default ("count/seconds").
DEFAULTS = {
    "posts": ("RATE_LIMIT_POSTS", "120/60"),
    "typing": ("RATE_LIMIT_TYPING", "60/60"),
    "uploads": ("RATE_LIMIT_UPLOADS", "20/60"),
    # Each edit or delete is pushed to the room like a message, so it costs the
    # same; it has its own allowance so that an owner clearing out spam does not
    # lose the right to post (and editing a typo never does either).
    "edits": ("RATE_LIMIT_EDITS", "120/60"),
    "login_failures": ("RATE_LIMIT_LOGIN_FAILURES", "10/300"),
    "registrations": ("RATE_LIMIT_REGISTRATIONS", "20/3600"),
    "rooms": ("RATE_LIMIT_ROOMS", "30/3600"),
}

#: What the 429 says was too much.
_WHAT = {
    "posts": "messages",
    "typing": "typing notices",
    "uploads": "uploads",
    "edits": "edits and deletes",
    "login_failures": "failed logins",
    "registrations": "new accounts from this address",
    "rooms": "new rooms from this address",
}

_KEY_PREFIX = "webchat:limit:"


@dataclass(frozen=True)
class Rule:
    """At most ``count`` hits per ``seconds``."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, setting: str, value: str) -> Rule | None:
        """``"count/seconds"`` as a Rule, or None for ``off``; a clear error for anything else."""
        text = value.strip().lower()
        if text in ("off", "0", "none", ""):
            return None
        try:
            count, seconds = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f'{setting} must be "count/seconds" (such as 120/60) or off, not {value!r}') from None
        if count < 1 or seconds < 1:
            raise ValueError(f"{setting}: count and seconds must be at least 1, not {value!r}")
        return cls(count, seconds)


class RateCount(Base):
    """One identity's count in its current window (the database store; one row per identity, reused)."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)


def settings_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The limit settings the environment sets."""
    return {setting: environ[setting] for setting, _ in DEFAULTS.values() if setting in environ}


def init_limits(app: Flask) -> None:
    """Read the limit settings (failing at start on a bad one) and pick the store."""
    rules: dict[str, Rule | None] = {}
    for name, (setting, default) in DEFAULTS.items():
        rules[name] = Rule.parse(setting, str(app.config.get(setting) or default))
    app.extensions["webchat_limits"] = rules
    if app.config.get("REDIS_URL"):
        import webchat_redis  # redis:// or redis+sentinel://

        app.extensions["webchat_limits_redis"] = webchat_redis.sync_client(
            app.config["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2
        )
    else:
        app.extensions["webchat_limits_redis"] = None


def _key(rule_name: str, identity: str) -> str:
    # Identities hold names and addresses: hash them to a fixed, safe length.
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{rule_name}:{digest}"


def _count(rule_name: str, rule: Rule, identity: str, increment: int) -> tuple[int, float]:
    """Add ``increment`` to the identity's count in this window; the count and the window's end."""
    now = time.time()
    window = int(now // rule.seconds)
    ends = (window + 1) * rule.seconds
    key = _key(rule_name, identity)
    store = current_app.extensions["webchat_limits_redis"]
    if store is not None:
        import redis

        redis_key = f"{_KEY_PREFIX}{key}:{window}"
        try:
            if not increment:
                return int(store.get(redis_key) or 0), ends
            pipe = store.pipeline()
            pipe.incrby(redis_key, increment)
            pipe.expire(redis_key, rule.seconds + 1)
            return int(pipe.execute()[0]), ends
        except redis.RedisError as exc:
            log.warning("rate limit store (Redis) unavailable, letting the request through: %s", exc)
            return 0, ends
    return _count_in_database(key, window, increment), ends


#: Every this many counted hits a process deletes the rows of windows that have
#: ended, for the limit being counted: rows are per identity, and failed logins
#: for made-up names would otherwise leave one row each behind for good.
PRUNE_EVERY = 1000
_hits_since_prune = 0


def _count_in_database(key: str, window: int, increment: int) -> int:
    global _hits_since_prune
    # Its own connection and transaction, from a pool of its own (models.init_db):
    # the count stands whatever the view does.
    engine: Engine = current_app.extensions["webchat_counts_db"]
    if increment:
        _hits_since_prune += 1
        if _hits_since_prune >= PRUNE_EVERY:
            _hits_since_prune = 0
            rule_name = key.split(":", 1)[0]
            with engine.begin() as conn:
                conn.execute(
                    delete(RateCount).where(RateCount.key.startswith(f"{rule_name}:"), RateCount.window < window)
                )
    with engine.begin() as conn:
        if not increment:
            count = conn.execute(
                select(RateCount.count).where(RateCount.key == key, RateCount.window == window)
            ).scalar()
            return count or 0
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(RateCount).values(key=key, window=window, count=increment)
        upsert = statement.on_conflict_do_update(
            index_elements=[RateCount.key],
            # A row from an earlier window starts again from this hit.
            set_={
                "count": case((RateCount.window == window, RateCount.count + increment), else_=increment),
                "window": window,
            },
        ).returning(RateCount.count)
        return conn.execute(upsert).scalar_one()


def _refuse(rule_name: str, ends: float) -> ApiError:
    retry_after = max(1, math.ceil(ends - time.time()))
    return ApiError(
        429,
        f"slow down: too many {_WHAT[rule_name]}; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


def _rule(rule_name: str) -> Rule | None:
    return current_app.extensions["webchat_limits"][rule_name]  # type: ignore[no-any-return]


def hit(rule_name: str, identity: str) -> None:
    """Count one hit for ``identity`` (past the limit or not): for counting failures after the fact."""
    rule = _rule(rule_name)
    if rule is not None:
        _count(rule_name, rule, identity, 1)


def would_exceed(rule_name: str, identity: str) -> None:
    """429 if ``identity`` has used up this window already (counts nothing)."""
    rule = _rule(rule_name)
    if rule is not None:
        count, ends = _count(rule_name, rule, identity, 0)
        if count >= rule.count:
            raise _refuse(rule_name, ends)


def enforce(rule_name: str, identity: str) -> None:
    """Count one hit for ``identity``; 429 if it is past the limit."""
    rule = _rule(rule_name)
    if rule is not None:
        count, ends = _count(rule_name, rule, identity, 1)
        if count > rule.count:
            raise _refuse(rule_name, ends)


def address() -> str:
    """The caller's address (the proxy's unless WEB_PROXY_COUNT says how many to trust)."""
    return request.remote_addr or "unknown"


def rate_limited(*rule_names: str) -> Callable[[F], F]:
    """Count the logged-in user's request against each named limit before the view runs.

    Put it under ``@login_required``, so the user is known.
    """
    for name in rule_names:
        if name not in DEFAULTS:
            raise ValueError(f"no rate limit named {name!r}")

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            uid = session.get("uid")
            identity = f"user:{uid}" if uid is not None else f"address:{address()}"
            for name in rule_names:
                enforce(name, identity)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate
