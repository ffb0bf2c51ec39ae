"""The internal HTTP API: verify, validate, call the backend.

Order matters and never changes: the signature is checked before anything else
(401 whatever the body), then the body is validated as a whole (400 naming the
field, 413 for sizes), and only then is anything applied. A batch is validated
completely before its first operation runs, so a bad one changes nothing.

The operations and their parameters come from ``push_protocol.OPERATIONS``;
this module only knows how to check each kind of parameter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

import push_protocol
from push_protocol import ErrorCode

from . import frames
from .backends.base import Backend, BackendUnavailable
from .config import Config

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
BACKEND = web.AppKey("backend", Backend)

#: Bodies are hashed as they stream in; past this many bytes the request is
#: refused without being read further (it could not be authenticated cheaply).
_HARD_BODY_LIMIT_FACTOR = 4
#: Longest uid, group or client id accepted.
MAX_ID_LENGTH = 256
#: Most uids, groups or client ids in one list argument.
MAX_LIST_LENGTH = 100_000


class ApiError(Exception):
    """An error answer: HTTP ``status`` with ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def within(self, where: str) -> ApiError:
        """The same error, located inside a batch (an unknown op there is a 400, not a 404)."""
        if self.code == ErrorCode.UNKNOWN_OPERATION:
            return ApiError(400, self.code, f"{where}.op: {self.message}")
        return ApiError(self.status, self.code, f"{where}.{self.message}")


def _invalid(field: str, problem: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_ARGUMENT, f"{field}: {problem}")


# -- parameter kinds ------------------------------------------------------------------
# Each checker takes (value, field name, config) and returns the value the
# backend wants, or raises ApiError naming the field.


def _check_client_id(value: Any, field: str, config: Config) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(field, "must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise _invalid(field, f"longer than {MAX_ID_LENGTH} characters")
    return value


def _check_id(value: Any, field: str, config: Config) -> str:
    # bool is an int in Python, but True is not a uid anyone meant.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _invalid(field, "must be a string or an integer")
    text = str(value)
    if not text:
        raise _invalid(field, "must not be empty")
    if len(text) > MAX_ID_LENGTH:
        raise _invalid(field, f"longer than {MAX_ID_LENGTH} characters")
    return text


def _check_list(item_check: Callable[[Any, str, Config], str]) -> Callable[[Any, str, Config], list[str]]:
    def check(value: Any, field: str, config: Config) -> list[str]:
        if not isinstance(value, list):
            raise _invalid(field, "must be a list")
        if len(value) > MAX_LIST_LENGTH:
            raise ApiError(413, ErrorCode.TOO_LARGE, f"{field}: more than {MAX_LIST_LENGTH} entries")
        return [item_check(item, f"{field}[{index}]", config) for index, item in enumerate(value)]

    return check


def _check_ids_or_one(value: Any, field: str, config: Config) -> list[str]:
    if isinstance(value, list):
        if not value:
            raise _invalid(field, "must not be an empty list")
        return _check_list(_check_id)(value, field, config)
    return [_check_id(value, field, config)]


def _check_message(value: Any, field: str, config: Config) -> bytes:
    """A wrapped message → the one frame every recipient gets."""
    if not isinstance(value, dict) or len(value) != 1:
        raise _invalid(field, 'must be an object with exactly one of "text", "binary" or "json"')
    ((kind, content),) = value.items()
    if kind == "text":
        if not isinstance(content, str):
            raise _invalid(f"{field}.text", "must be a string")
        opcode, payload = frames.OP_TEXT, content.encode()
    elif kind == "binary":
        if not isinstance(content, str):
            raise _invalid(f"{field}.binary", "must be a base64 string")
        try:
            payload = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"{field}.binary", "is not valid base64") from None
        opcode = frames.OP_BINARY
    elif kind == "json":
        opcode, payload = frames.OP_TEXT, json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
    else:
        raise _invalid(field, f'unknown message kind "{kind}"; use "text", "binary" or "json"')
    if len(payload) > config.max_message_bytes:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"{field}: {len(payload)} bytes, over the {config.max_message_bytes}-byte limit")
    return frames.encode_frame(opcode, payload)


def _check_session(value: Any, field: str, config: Config) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(field, "must be a JSON object")
    size = len(json.dumps(value, separators=(",", ":")))
    if size > config.max_session_bytes:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"{field}: {size} bytes, over the {config.max_session_bytes}-byte limit")
    return value


Checker = Callable[[Any, str, Config], Any]

_CHECKERS: dict[str, Checker] = {
    "client_id": _check_client_id,
    "uid": _check_id,
    "group": _check_id,
    "uids": _check_ids_or_one,
    "groups": _check_ids_or_one,
    "client_ids": _check_list(_check_client_id),
    "exclude_client_ids": _check_list(_check_client_id),
    "message": _check_message,
    "session": _check_session,
}

class _Signature:
    """One operation's parameters (name, optional, checker) and the set of their names."""

    __slots__ = ("params", "known")

    def __init__(self, params: tuple[str, ...]) -> None:
        self.params = tuple((p.rstrip("?"), p.endswith("?"), _CHECKERS[p.rstrip("?")]) for p in params)
        self.known = frozenset(name for name, _, _ in self.params)


_SIGNATURES = {op: _Signature(params) for op, params in push_protocol.OPERATIONS.items()}

#: A checked operation: the backend method and its arguments, not yet called.
Call = tuple[Callable[..., Awaitable[Any]], list[Any]]


def prepare(backend: Backend, config: Config, op: Any, args: Any) -> Call:
    """Check one operation's arguments; return the call to make (not yet made).

    This runs once per operation of every batch, so it does no formatting
    unless it has an error to report.
    """
    signature = _SIGNATURES.get(op) if isinstance(op, str) else None
    if signature is None:
        raise ApiError(404, ErrorCode.UNKNOWN_OPERATION, f"unknown operation {op!r}")
    if not isinstance(args, dict):
        raise _invalid("args", "must be a JSON object")
    if not args.keys() <= signature.known:
        extra = sorted(name for name in args if name not in signature.known)
        raise _invalid(extra[0], "is not an argument of " + op)
    values: list[Any] = []
    for name, optional, check in signature.params:
        value = args.get(name)
        if value is not None:
            values.append(check(value, name, config))
        elif optional:
            values.append(None)
        else:
            raise _invalid(name, "is required")
    return getattr(backend, op), values


# -- authentication and bodies ------------------------------------------------------------


async def read_signed_body(request: web.Request, config: Config, backend: Backend) -> bytes:
    """The request body, once its signature and nonce are good; else ApiError 401/413."""
    headers = request.headers
    timestamp = headers.get(push_protocol.HEADER_TIMESTAMP, "")
    nonce = headers.get(push_protocol.HEADER_NONCE, "")
    signature = headers.get(push_protocol.HEADER_SIGNATURE, "")
    if not (timestamp and nonce and signature):
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "missing signature headers")
    # The body must be hashed to verify the signature. It is hashed as it
    # streams in and kept only up to the body limit; beyond a hard limit it is
    # not read at all.
    limit = config.max_body_bytes
    hard_limit = limit * _HARD_BODY_LIMIT_FACTOR
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > hard_limit:
            raise ApiError(413, ErrorCode.TOO_LARGE, f"body over {hard_limit} bytes")
        digest.update(chunk)
        if size <= limit:
            chunks.append(chunk)
    problem = push_protocol.verify_signature(
        config.secret, request.method, request.raw_path, digest.hexdigest(), timestamp, nonce, signature
    )
    if problem is not None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, problem)
    if not await backend.claim_nonce(nonce, 2 * push_protocol.SIGNATURE_WINDOW):
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "nonce already used (replayed request)")
    if size > limit:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"body is {size} bytes, over the {limit}-byte limit")
    return b"".join(chunks)


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack allows.
        raise ApiError(400, ErrorCode.BAD_REQUEST, "body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, ErrorCode.BAD_REQUEST, "body must be a JSON object")
    return value


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(),
        content_type="application/json",
    )


def _unavailable(exc: BackendUnavailable) -> ApiError:
    return ApiError(503, ErrorCode.UNAVAILABLE, f"shared state unavailable: {exc}")


# -- handlers -------------------------------------------------------------------------------


async def handle_operation(request: web.Request) -> web.Response:
    """``POST /api/v1/{op}``: one operation."""
    app = request.app
    config, backend = app[CONFIG], app[BACKEND]
    try:
        body = await read_signed_body(request, config, backend)
        method, values = prepare(backend, config, request.match_info["op"], _parse_object(body))
        try:
            result = await method(*values)
        except BackendUnavailable as exc:
            raise _unavailable(exc) from None
    except ApiError as exc:
        return _json(exc.status, {"error": exc.as_json()})
    return _json(200, {"result": result})


async def handle_batch(request: web.Request) -> web.Response:
    """``POST /api/v1/batch``: many operations, checked first, then applied in order."""
    app = request.app
    config, backend = app[CONFIG], app[BACKEND]
    try:
        body = await read_signed_body(request, config, backend)
        payload = _parse_object(body)
        operations = payload.get("operations")
        if not isinstance(operations, list):
            raise _invalid("operations", "must be a list")
        if len(operations) > config.max_batch_operations:
            raise ApiError(
                413, ErrorCode.TOO_LARGE, f"operations: {len(operations)}, over the {config.max_batch_operations} limit"
            )
        if len(payload) > 1:
            raise _invalid(sorted(set(payload) - {"operations"})[0], "is not a field of a batch")
        calls = []
        for index, operation in enumerate(operations):
            if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
                raise _invalid(f"operations[{index}]", 'must be an object with "op" and "args"')
            if len(operation) > 1 + ("args" in operation):
                extra = sorted(set(operation) - {"op", "args"})[0]
                raise _invalid(f"operations[{index}].{extra}", 'is not a field of an operation (use "op" and "args")')
            try:
                calls.append(prepare(backend, config, operation["op"], operation.get("args", {})))
            except ApiError as exc:
                raise exc.within(f"operations[{index}]") from None
    except ApiError as exc:
        return _json(exc.status, {"error": exc.as_json()})
    results: list[dict[str, Any]] = []
    for outcome in await backend.run_batch(calls):
        if isinstance(outcome, BackendUnavailable):
            error = _unavailable(outcome)
            results.append({"error": error.as_json(), "status": error.status})
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            results.append({"result": outcome})
    return _json(200, {"results": results})


async def handle_not_found(request: web.Request) -> web.Response:
    """Any other path: still authenticated first, then 404."""
    app = request.app
    try:
        await read_signed_body(request, app[CONFIG], app[BACKEND])
    except ApiError as exc:
        return _json(exc.status, {"error": exc.as_json()})
    return _json(404, {"error": {"code": ErrorCode.UNKNOWN_OPERATION, "message": f"no API at {request.path}"}})


@web.middleware
async def keep_serving(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Turn a bug into a logged 500 answer; the server stays up."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("internal error in %s %s", request.method, request.path)
        return _json(500, {"error": {"code": ErrorCode.INTERNAL, "message": "internal error (logged)"}})


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string), status and time: nothing secret."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status, time * 1000)


def add_routes(app: web.Application) -> None:
    """Mount the API on ``app``."""
    app.router.add_post(push_protocol.BATCH_PATH, handle_batch)
    app.router.add_post(push_protocol.API_PREFIX + "/{op}", handle_operation)
    app.router.add_route("*", "/{tail:.*}", handle_not_found)
