"""The API's request handlers: authenticate, decode, (claim the idempotency key), apply, answer.

Order matters and never changes: the signature is checked before anything else
(401 whatever the body), then the body is decoded and validated as a whole
(400 naming the field, 413 for sizes), and only then is anything applied. A
batch is validated completely before its first operation runs, so a bad one
changes nothing.

Every request pays for aiohttp (about two thirds of the server's time per
call, measured) and for this module's own path, which is kept short: one route
per operation (an exact match, no pattern), the body decoded by msgspec straight
into its structure, and ready-made answers for the common results.

A large batch is worked through in slices of ``PUSH_BATCH_SLICE_SECONDS``
(checking, then applying), yielding to the event loop between them, so one
huge signed batch never stalls the node's other clients for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

import push_protocol
from push_protocol import ErrorCode

from ..backends.base import Backend, Call
from ..config import Config
from ..errors import ApiError, BackendUnavailable, invalid, too_large, unavailable
from . import decoding, schema, values
from .auth import ClaimStore, read_signed_body
from .operations import BATCH_PREPARERS, OPERATIONS, SESSION_TYPES, sessions

CONFIG = web.AppKey("config", Config)
BACKEND = web.AppKey("backend", Backend)
CLAIMS = web.AppKey("claims", ClaimStore)

#: A batch body larger than this is decoded in slices (decoding.decode_large_batch):
#: decoding 256 KiB in one go takes about 1-2 ms here.
LARGE_BATCH_BYTES = 256 * 1024

#: Operations that take an idempotency key (their struct has the field), and their structures in both forms.
_IDEMPOTENT = frozenset(
    name for name, entry in OPERATIONS.items() if "idempotency_key" in entry.struct.__struct_fields__
)
_KEYED_TYPES = frozenset(
    [OPERATIONS[name].struct for name in _IDEMPOTENT] + [schema.ARRAY_FORMS[name] for name in _IDEMPOTENT]
)


# -- answers ------------------------------------------------------------------------------


def answer(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def error_answer(error: ApiError) -> web.Response:
    return answer(error.status, schema.ENCODE({"error": error.as_json()}))


#: The answers most operations give, encoded once.
_NULL_ANSWER = b'{"result":null}'
_TRUE_ANSWER = b'{"result":true}'
_FALSE_ANSWER = b'{"result":false}'


def _result(result: Any) -> web.Response:
    if result is None:
        body = _NULL_ANSWER
    elif result is True:
        body = _TRUE_ANSWER
    elif result is False:
        body = _FALSE_ANSWER
    else:
        body = schema.ENCODE({"result": result})
    return answer(200, body)


# -- idempotency --------------------------------------------------------------------------


def _idempotency_claim_key(key: str) -> str:
    return "idem:" + key


async def _claim(claims: ClaimStore, config: Config, key: str | None) -> bool:
    """True to apply; False when ``key`` was applied within the window (answer success, apply nothing)."""
    if key is None:
        return True
    try:
        return await claims.claim(_idempotency_claim_key(key), config.idempotency_window)
    except BackendUnavailable as exc:
        raise unavailable(exc) from None


async def _release(claims: ClaimStore, key: str | None) -> None:
    """Let a retry apply ``key`` (applying failed)."""
    if key is not None:
        # Without Redis the claim lapses with its window: nothing better can be done.
        with contextlib.suppress(BackendUnavailable):
            await claims.release(_idempotency_claim_key(key))


# -- one operation ------------------------------------------------------------------------


def _operation_handler(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of ``POST /api/v1/<name>``."""
    decoder = schema.DECODERS[name]
    entry = OPERATIONS[name]
    takes_key = name in _IDEMPOTENT

    async def handle_operation(request: web.Request) -> web.Response:
        app = request.app
        config, backend, claims = app[CONFIG], app[BACKEND], app[CLAIMS]
        try:
            body = await read_signed_body(request, config, claims) or b"{}"
            try:
                operation = decoder.decode(body)
            except msgspec.MsgspecError as exc:
                raise decoding.refusal(exc, body, name) from None
            method, arguments = entry.prepare(backend, operation, config)
            # The decoder lets a key given twice win silently; a single call's
            # body is small, so it is read once more to refuse that.
            values.check_duplicate_keys(body, "body")
            key = operation.idempotency_key if takes_key else None
            if not await _claim(claims, config, key):
                return _result(None)
            try:
                result = await method(*arguments)
            except BaseException as exc:
                await _release(claims, key)
                if isinstance(exc, BackendUnavailable):
                    raise unavailable(exc) from None
                raise
        except ApiError as exc:
            return error_answer(exc)
        return _result(result)

    handle_operation.__qualname__ = handle_operation.__name__ = f"handle_{name}"
    return handle_operation


# -- batches ------------------------------------------------------------------------------


async def prepare_batch(backend: Backend, config: Config, operations: list[Any]) -> list[Call]:
    """Check every decoded operation of a batch; return the calls to make, or raise the first error.

    Sessions are checked 64 operations at a time, together (see
    operations.sessions); the first error in the batch's order is the one
    raised all the same. Yields to the event loop every
    ``batch_slice_seconds`` of work.
    """
    calls: list[Call] = []
    append = calls.append
    preparers = BATCH_PREPARERS
    session_types = SESSION_TYPES
    #: Where the operations whose sessions are not checked yet are.
    pending: list[int] = []
    budget = config.batch_slice_seconds
    clock = time.perf_counter
    slice_end = clock() + budget
    for index, operation in enumerate(operations):
        kind = type(operation)
        try:
            if kind is dict:
                operation = operations[index] = decoding.decode_named(operation, index)
                kind = type(operation)
            append(preparers[kind](backend, operation, config))
        except ApiError as exc:
            _check_sessions(operations, calls, pending, config)  # an earlier refusal comes first
            if kind is dict:
                raise
            raise exc.within(f"operations[{index}]") from None
        if kind in session_types:
            pending.append(index)
        if not index & 63:
            _check_sessions(operations, calls, pending, config)
            if clock() > slice_end:
                await asyncio.sleep(0)
                slice_end = clock() + budget
    _check_sessions(operations, calls, pending, config)
    return calls


def _check_sessions(operations: list[Any], calls: list[Call], pending: list[int], config: Config) -> None:
    """Check the sessions of the operations at ``pending`` together and put them in their calls."""
    if not pending:
        return
    try:
        checked = sessions([operations[index].session for index in pending], config)
    except values.Refused as exc:
        raise exc.error.within(f"operations[{pending[exc.position]}]") from None
    for index, session in zip(pending, checked, strict=True):
        calls[index][1][1] = session
    pending.clear()


async def _skip_repeats(claims: ClaimStore, config: Config, operations: list[Any], calls: list[Call]) -> list[str]:
    """Claim the keys of a batch's keyed operations; replace the repeats with nothing. The keys claimed."""
    claimed: list[str] = []
    for index, operation in enumerate(operations):
        if type(operation) not in _KEYED_TYPES:
            continue
        key = operation.idempotency_key
        if key is None:
            continue
        if await _claim(claims, config, key):
            claimed.append(key)
        else:
            calls[index] = (_nothing, [])
    return claimed


async def _nothing() -> None:
    """What a repeated keyed operation of a batch does."""


async def handle_batch(request: web.Request) -> web.Response:
    """``POST /api/v1/batch``: many operations, checked first, then applied in order."""
    app = request.app
    config, backend, claims = app[CONFIG], app[BACKEND], app[CLAIMS]
    claimed: list[str] = []
    try:
        body = await read_signed_body(request, config, claims)
        if len(body) > LARGE_BATCH_BYTES:
            batch = await decoding.decode_large_batch(body, config.batch_slice_seconds)
        else:
            try:
                batch = schema.BATCH_DECODER.decode(body)
            except msgspec.MsgspecError as exc:
                raise decoding.refusal(exc, body, None) from None
        if body.count(b'"operations"') > 1 or body.count(b'"idempotency_key"') > 1:
            # Either could be a key given twice (or just text in a message):
            # only then is the whole body read again to tell.
            values.check_duplicate_keys(body, "body")
        operations = batch.operations
        if len(operations) > config.max_batch_operations:
            raise too_large("operations", f"{len(operations)}, over the {config.max_batch_operations} limit")
        calls = await prepare_batch(backend, config, operations)
        key = batch.idempotency_key
        if not await _claim(claims, config, key):
            return answer(200, schema.ENCODE({"results": [None] * len(operations), "errors": []}))
        if key is not None:
            claimed.append(key)
        # Keyed pushes inside the batch (a compact one carries its key as its last argument).
        claimed += await _skip_repeats(claims, config, operations, calls)
        results = await backend.run_batch(calls, config.batch_slice_seconds)
    except BaseException as exc:
        for claimed_key in claimed:
            await _release(claims, claimed_key)
        if isinstance(exc, ApiError):
            return error_answer(exc)
        raise
    errors: list[dict[str, Any]] = []
    failed = False
    for index, outcome in enumerate(results):
        if isinstance(outcome, BaseException):
            failed = True
            if not isinstance(outcome, BackendUnavailable):
                for claimed_key in claimed:
                    await _release(claims, claimed_key)
                raise outcome
            error = unavailable(outcome)
            errors.append({"index": index, "status": error.status, "error": error.as_json()})
            results[index] = None
    if failed:
        # Part of the batch was not applied: a retry with the same keys must be able to.
        for claimed_key in claimed:
            await _release(claims, claimed_key)
    return answer(200, schema.ENCODE({"results": results, "errors": errors}))


async def handle_not_found(request: web.Request) -> web.Response:
    """Any other path: still authenticated first, then 404."""
    app = request.app
    try:
        await read_signed_body(request, app[CONFIG], app[CLAIMS])
    except ApiError as exc:
        return error_answer(exc)
    return error_answer(ApiError(404, ErrorCode.UNKNOWN_OPERATION, f"no API at {request.path}"))


def add_routes(app: web.Application) -> None:
    """Mount the API on ``app``: one exact route per operation, the batch, and a catch-all."""
    app.router.add_post(push_protocol.BATCH_PATH, handle_batch)
    for name in OPERATIONS:
        app.router.add_post(push_protocol.operation_path(name), _operation_handler(name))
    app.router.add_route("*", "/{tail:.*}", handle_not_found)


__all__ = ["BACKEND", "CLAIMS", "CONFIG", "add_routes", "handle_batch", "invalid", "prepare_batch"]
