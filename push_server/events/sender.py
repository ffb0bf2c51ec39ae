"""The sender: batches of queued events POSTed to PUSH_EVENTS_URL, signed, until acknowledged.

- **Batches.** Whatever waits (up to :data:`BATCH_MAX`) goes in one request:
  many per POST when events come fast, one POST soon after a lone event.
- **Signed** exactly like an API request (``push_protocol.sign_request`` over
  ``POST``, the URL's path and the body), so the app checks it with
  ``push_protocol.verify_request``.
- **At least once.** Any 2xx acknowledges the batch (it leaves the queue);
  anything else, or no answer within ``events_timeout``, is retried with capped
  exponential backoff and full jitter. Events are given up only when the
  receiver has been failing for ``events_retry_s`` and they are at least that
  old; each give-up is counted and logged.
- **One sender per cluster.** A node sends only while it holds the sender
  lease (the memory store always does): the queue's order is the order
  presence changed in, and a second sender could reorder a uid's
  online/offline. The lease expires after ``node_timeout`` without renewal, so a
  dead sender's queue is taken over within that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

import push_protocol

from ..config import Config
from .model import Counts, EventStore, EventsUnavailable, Pending

log = logging.getLogger(__name__)

#: Events in one POST at most.
BATCH_MAX = 500
#: Backoff after a failed POST: doubles from the first value up to the cap.
BACKOFF_FIRST, BACKOFF_CAP = 0.2, 30.0
#: How often the sender with nothing to send looks again (events queued on
#: this node wake it at once; this is for those queued by other nodes).
IDLE_POLL = 0.25
#: How often a node that does not hold the lease tries to take it (it can only
#: when the holder's lease expired, after node_timeout).
FOLLOWER_POLL = 1.0
#: Seconds between two log lines about the queue's depth while events wait.
DEPTH_LOG_EVERY = 10.0


class Sender:
    """Reads the queue's head, POSTs it, removes what was acknowledged."""

    def __init__(self, config: Config, store: EventStore, node: str, counted: Callable[[Counts], None]) -> None:
        assert config.events_url
        self.config = config
        self.store = store
        self.node = node
        self.url = config.events_url
        parts = urlsplit(self.url)
        self.path = parts.path or "/"
        self.url_for_logs = f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{self.path}"
        self._wake = asyncio.Event()
        self._counted = counted
        self._session: aiohttp.ClientSession | None = None
        self._stopping = False
        #: Since when POSTs have been failing (None while they succeed).
        self._failing_since: float | None = None
        self.delivered = 0
        self.given_up = 0
        self._last_depth_log = 0.0
        #: The queue's depth when last read (push_events_pending reads it at scrape time).
        self.depth = 0
        self._depth_read_at = 0.0

    def wake(self) -> None:
        """Events were queued: look now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.events_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)
        ttl = self.config.node_timeout
        loop = asyncio.get_running_loop()
        leading = False
        renewed = 0.0
        backoff = BACKOFF_FIRST
        try:
            while True:
                try:
                    if not leading or loop.time() - renewed > ttl / 3:
                        leading = await self.store.lead(self.node, ttl)
                        renewed = loop.time()
                    batch = await self.store.read(BATCH_MAX) if leading else []
                except EventsUnavailable:
                    leading = False
                    await asyncio.sleep(IDLE_POLL)
                    continue
                if not leading:
                    await asyncio.sleep(FOLLOWER_POLL)
                    continue
                if not batch:
                    # Read just now and empty: exact, whereas the last depth
                    # read may predate the final ack by up to a second.
                    self.depth = 0
                    await self._idle()
                    continue
                if await self._deliver(batch, ttl):
                    backoff = BACKOFF_FIRST
                    continue
                # Full jitter: nodes (or app workers) that failed together do
                # not retry together.
                await asyncio.sleep(random.uniform(0, backoff))
                backoff = min(backoff * 2, BACKOFF_CAP)
        finally:
            await self._session.close()

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), IDLE_POLL)

    async def _deliver(self, batch: list[Pending], ttl: float) -> bool:
        """POST one batch; True if it was acknowledged (and removed)."""
        body = b'{"events":[' + b",".join(event.data for event in batch) + b"]}"
        # The lease is renewed while a slow receiver keeps us waiting.
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(ttl))
        try:
            status = await self._post(body)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, EventsUnavailable):
                await keeper
        keys = [event.key for event in batch]
        if status is not None and 200 <= status < 300:
            try:
                await self.store.ack(keys)
            except EventsUnavailable:
                # Delivered, not removed: they are sent again (ids deduplicate).
                return False
            self.delivered += len(batch)
            self._failing_since = None
            await self._log_depth()
            return True
        now = time.time()
        if self._failing_since is None:
            self._failing_since = now
        log.warning(
            "events: %s answered %s for %d event(s); retrying", self.url_for_logs, status or "nothing", len(batch)
        )
        await self._log_depth()
        if now - self._failing_since >= self.config.events_retry_s:
            stale = [event.key for event in batch if now - event.queued_at >= self.config.events_retry_s]
            if stale:
                with contextlib.suppress(EventsUnavailable):
                    await self.store.ack(stale)
                    self.given_up += len(stale)
                    log.error(
                        "events: gave up %d event(s) after %.0f s of failures (%d given up since start)",
                        len(stale),
                        now - self._failing_since,
                        self.given_up,
                    )
        return False

    async def _post(self, body: bytes) -> int | None:
        assert self._session is not None
        headers = push_protocol.sign_request(self.config.secret, "POST", self.path, body)
        headers["Content-Type"] = "application/json"
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                await response.read()
                return int(response.status)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.debug("events: POST failed: %s", exc)
            return None

    async def _keep_lease(self, ttl: float) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            await self.store.lead(self.node, ttl)

    async def _log_depth(self) -> None:
        # Read at most once a second (the metric's freshness); logged every DEPTH_LOG_EVERY.
        now = time.monotonic()
        if now - self._depth_read_at < 1.0:
            return
        self._depth_read_at = now
        with contextlib.suppress(EventsUnavailable):
            self.depth = await self.store.depth()
        if self.depth and now - self._last_depth_log >= DEPTH_LOG_EVERY:
            self._last_depth_log = now
            log.info("events: %d waiting, %d delivered since start", self.depth, self.delivered)

    async def finish(self, durable: bool) -> None:
        """At shutdown: a memory queue gets a short last chance; a Redis queue stays for the others."""
        if durable:
            return
        deadline = time.monotonic() + 2.0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as self._session:
            while time.monotonic() < deadline:
                try:
                    batch = await self.store.read(BATCH_MAX)
                except EventsUnavailable:
                    return
                if not batch or not await self._deliver(batch, self.config.node_timeout):
                    return
