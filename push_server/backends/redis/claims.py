"""The API's claimed keys in a cluster (:class:`~push_server.api.auth.ClaimStore`): nonces, idempotency keys.

A key (``nonce:X``, ``idem:K``: the caller namespaces it) is claimed with one
``SET P<key> 1 NX PX <ttl>``, so a request replayed to any node, or a push
retried anywhere with the same idempotency key, is refused cluster-wide. Redis
decides as soon as it is reachable, even while the cluster is not whole.

While Redis is away each node claims keys locally, and writes them to Redis
when it reconnects (:meth:`RedisClaims.write_back`, called by the
write-back): after the outage a replay is refused everywhere. During it, a
request replayed to *another* node could run there, but it can do no more than
that node can without Redis (deliver to its own clients).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from ..base import BackendUnavailable
from .transport import Transport, guard

#: Local claims kept while Redis is away, before the expired ones are dropped.
LOCAL_LIMIT = 10_000


class RedisClaims:
    """``SET NX PX`` in Redis while it is reachable; a local dict (written back later) while it is not."""

    def __init__(self, transport: Transport, linked: Callable[[], bool]) -> None:
        self._transport = transport
        #: Whether the node is connected to Redis now (the membership's state).
        self._linked = linked
        #: Keys claimed while Redis was away → their expiry (monotonic seconds).
        self._local: dict[str, float] = {}

    async def claim(self, key: str, ttl: float) -> bool:
        """SET NX PX ``key`` (namespaced by the caller, e.g. ``nonce:X``); False if it is held."""
        if self._linked():
            try:
                claimed = await self._transport.enqueue(
                    "SET", self._transport.key(key), b"1", "NX", "PX", int(ttl * 1000)
                )
                return bool(claimed)
            except BackendUnavailable:
                pass
        # Redis is away: refuse replays to this node, and remember the key for
        # Redis (see write_back).
        now = time.monotonic()
        if len(self._local) > LOCAL_LIMIT:
            self._local = {n: e for n, e in self._local.items() if e > now}
        expiry = self._local.get(key)
        if expiry is not None and expiry > now:
            return False
        self._local[key] = now + ttl
        return True

    async def release(self, key: str) -> None:
        """Forget a claimed key (its operation failed: a retry must be able to claim it)."""
        self._local.pop(key, None)
        # Best effort: with Redis away the key was only claimed locally (above).
        if self._linked():
            with contextlib.suppress(BackendUnavailable):
                await self._transport.enqueue("DEL", self._transport.key(key))

    async def write_back(self) -> None:
        """Write the keys claimed while Redis was away, for what is left of their lifetimes."""
        now = time.monotonic()
        claimed, self._local = self._local, {}
        async with self._transport.redis.pipeline(transaction=False) as pipe:
            for key, expiry in claimed.items():
                if expiry > now:
                    pipe.set(self._transport.key(key), b"1", nx=True, px=int((expiry - now) * 1000) + 1)
            if pipe:
                await guard(pipe.execute())
