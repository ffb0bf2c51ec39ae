"""Authentication of API requests: signature headers first, then the body, then the nonce.

The order is the defence: a request without the three signature headers is
refused before a byte of its body is read; the body is then read with a
deadline and, until its signature is checked, a lower size cap; only a
correctly signed body claims its nonce (a replay is refused cluster-wide).

The nonce store (and the idempotency store, the same mechanism) is a
:class:`ClaimStore`: :class:`MemoryClaims` in one process, the Redis backend's
``SET NX PX`` in a cluster. It is the API's, not part of the Backend interface.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from aiohttp import web

import push_protocol
from push_protocol import ErrorCode

from ..config import Config
from ..errors import ApiError

#: Seconds a nonce is kept past its timestamp's window (clock differences between nodes).
NONCE_CLOCK_SLACK = 60.0
#: Nonces (and idempotency keys) that expire within the same this-many seconds are forgotten together.
NONCE_BUCKET_SECONDS = 10.0


class ClaimStore(Protocol):
    """Keys claimed once within a lifetime, cluster-wide: replay nonces, idempotency keys."""

    async def claim(self, key: str, ttl: float) -> bool:
        """Hold ``key`` for ``ttl`` seconds; False if it is already held."""
        ...

    async def release(self, key: str) -> None:
        """Let ``key`` be claimed again (what it guarded failed)."""
        ...


class MemoryClaims:
    """Claimed keys still inside their lifetime, kept densely (one process).

    A node taking thousands of calls a second holds about a million nonces
    (each is kept ~360 s, see :func:`nonce_ttl`), so each costs what matters:
    a 64-bit fingerprint (the process-salted ``hash()`` of the key; two
    different keys share one with odds of ~10^-13 at a million held, and only
    signed requests get this far) in one set, and in the list of the bucket
    it expires in. About 90 bytes a key, against ~200 for the string with its
    own expiry entry. Buckets also let lifetimes differ (they follow each
    request's timestamp): a whole bucket goes at once, never before the
    lifetime asked for and at most :data:`NONCE_BUCKET_SECONDS` after it.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()
        #: Bucket number (expiry time // NONCE_BUCKET_SECONDS) → its fingerprints.
        self._expiring: dict[int, list[int]] = {}
        #: Fingerprints released early → how many stale bucket entries they still have
        #: (so pruning an old entry never forgets the key claimed again since).
        self._released: dict[int, int] = {}
        self._pruned_before = 0

    def __len__(self) -> int:
        return len(self._seen)

    def claim_at(self, key: str, ttl: float, now: float) -> bool:
        """Hold ``key`` for at least ``ttl`` seconds after ``now``; False if it is already held."""
        current = int(now // NONCE_BUCKET_SECONDS)
        if current > self._pruned_before:
            self._forget_before(current)
        fingerprint = hash(key)
        if fingerprint in self._seen:
            return False
        self._seen.add(fingerprint)
        bucket = int((now + ttl) // NONCE_BUCKET_SECONDS)
        expiring = self._expiring.get(bucket)
        if expiring is None:
            self._expiring[bucket] = [fingerprint]
        else:
            expiring.append(fingerprint)
        return True

    async def claim(self, key: str, ttl: float) -> bool:
        return self.claim_at(key, ttl, time.monotonic())

    async def release(self, key: str) -> None:
        fingerprint = hash(key)
        if fingerprint in self._seen:
            self._seen.discard(fingerprint)
            self._released[fingerprint] = self._released.get(fingerprint, 0) + 1

    def _forget_before(self, current: int) -> None:
        # A bucket ends where the next begins: every key in a bucket before
        # the current one has outlived its ttl.
        seen, released = self._seen, self._released
        for bucket in sorted(bucket for bucket in self._expiring if bucket < current):
            for fingerprint in self._expiring.pop(bucket):
                stale = released.get(fingerprint)
                if stale:
                    # This entry was released early; a later claim (if any) has its own.
                    if stale == 1:
                        del released[fingerprint]
                    else:
                        released[fingerprint] = stale - 1
                    continue
                seen.discard(fingerprint)
        self._pruned_before = current


def nonce_ttl(timestamp: str) -> float:
    """How long a request's nonce must be remembered: while its timestamp is still accepted.

    That is until ``timestamp + SIGNATURE_WINDOW`` (about 300 s for a request
    sent just now, not a flat 600 s), plus :data:`NONCE_CLOCK_SLACK` for a
    node of the cluster whose clock is behind the one that stored it.
    ``timestamp`` was checked by verify_request.
    """
    remaining = int(timestamp) + push_protocol.SIGNATURE_WINDOW - time.time()
    return max(1.0, remaining) + NONCE_CLOCK_SLACK


def _unauthorized(problem: str) -> ApiError:
    return ApiError(401, ErrorCode.UNAUTHORIZED, problem)


async def read_signed_body(request: web.Request, config: Config, claims: ClaimStore) -> bytes:
    """The request body, once its signature and nonce are good; else ApiError 401/408/413."""
    headers = request.headers
    timestamp = headers.get(push_protocol.HEADER_TIMESTAMP, "")
    nonce = headers.get(push_protocol.HEADER_NONCE, "")
    signature = headers.get(push_protocol.HEADER_SIGNATURE, "")
    # Everything that can be checked without the body is, before reading it:
    # an unsigned, stale or malformed request costs no buffering at all.
    problem = push_protocol.check_signature_headers(timestamp, nonce, signature)
    if problem is not None:
        raise _unauthorized(problem)
    # The body is needed whole to check the signature, so until then at most
    # the body limit is read (an announced larger body is refused unread), and
    # the whole read has a deadline: a stalled sender holds nothing for long.
    limit = config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"body is {request.content_length} bytes, over the {limit}-byte limit")
    content = request.content
    if content.is_eof():
        # The whole body is already here (a small one arrives with its
        # headers): nothing to wait for, so no deadline, and no task for
        # wait_for to run (that cost more than the rest of this function).
        body = content.read_nowait(-1)
        if len(body) > limit:
            raise ApiError(413, ErrorCode.TOO_LARGE, f"body over the {limit}-byte limit")
    else:
        try:
            body = await asyncio.wait_for(_read(request, limit), config.body_read_timeout)
        except asyncio.TimeoutError:
            raise ApiError(
                408, ErrorCode.BAD_REQUEST, f"body not received within {config.body_read_timeout:g} s"
            ) from None
    problem = push_protocol.verify_request(config.secret, request.method, request.raw_path, headers, body)
    if problem is not None:
        raise _unauthorized(problem)
    if not await claims.claim("nonce:" + nonce, nonce_ttl(timestamp)):
        raise _unauthorized("nonce already used (replayed request)")
    return body


async def _read(request: web.Request, cap: int) -> bytes:
    """The body (413 past ``cap`` bytes)."""
    content = request.content
    chunks: list[bytes] = []
    size = 0
    # A small body has usually arrived whole: at_eof() then saves the read
    # that would only find the end.
    while not content.at_eof():
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > cap:
            raise ApiError(413, ErrorCode.TOO_LARGE, f"body over the {cap}-byte limit")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
