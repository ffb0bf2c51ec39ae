"""The internal HTTP API: verify, validate, call the backend.

Order matters and never changes: the signature is checked before anything else
(401 whatever the body), then the body is validated as a whole (400 naming the
field, 413 for sizes), and only then is anything applied. A batch is validated
completely before its first operation runs, so a bad one changes nothing.

The operations and their parameters come from ``push_protocol.OPERATIONS``;
this module only knows how to check each kind of parameter.

Every request pays for aiohttp (about two thirds of the server's time per
call, measured) and for this module's own path, which is kept short: one
route per operation (an exact match, no pattern), the body taken as it
arrived, compact JSON with encoders made once, and ready-made answers for the
common results. A batch operation can be a compact array (``[op, arg, ...]``),
checked with a fast path for the common argument kinds and with every
session's size measured in one go; the batch's answer is a plain list of
values. None of this skips a check: a value the fast path does not accept
goes through the full checker, which names the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from typing import Any, Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

import push_protocol
from push_protocol import ErrorCode

from .websocket import frames
from .backends.base import Backend, BackendUnavailable, Call
from .config import Config

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
BACKEND = web.AppKey("backend", Backend)

#: Bodies are hashed as they stream in; past this many bytes the request is
#: refused without being read further (it could not be authenticated cheaply).
_HARD_BODY_LIMIT_FACTOR = 4
#: Seconds a nonce is kept past its timestamp's window (clock differences between nodes).
NONCE_CLOCK_SLACK = 60.0
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


# -- JSON --------------------------------------------------------------------------------
# Made once: json.dumps() with any option builds a new encoder on every call.


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (Python's json accepts them by default); a
    # message or session holding one could not be read back by a browser.
    raise ValueError(f"{name} is not JSON")


_decode = json.JSONDecoder(parse_constant=_refuse_constant).decode
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: A session's size is its compact JSON with non-ASCII escaped (the documented measure).
_measure = json.JSONEncoder(separators=(",", ":")).encode


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


_check_id_list = _check_list(_check_id)


def _check_ids_or_one(value: Any, field: str, config: Config) -> list[str]:
    if isinstance(value, list):
        if not value:
            raise _invalid(field, "must not be an empty list")
        return _check_id_list(value, field, config)
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
        opcode, payload = frames.OP_TEXT, _encode(content).encode()
    else:
        raise _invalid(field, f'unknown message kind "{kind}"; use "text", "binary" or "json"')
    if len(payload) > config.max_message_bytes:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"{field}: {len(payload)} bytes, over the {config.max_message_bytes}-byte limit")
    return frames.encode_frame(opcode, payload)


def _check_session(value: Any, field: str, config: Config) -> dict[str, Any]:
    # Only the type: the size is checked by the caller (see _Signature.check),
    # which in a batch measures every session at once.
    if not isinstance(value, dict):
        raise _invalid(field, "must be a JSON object")
    return value


def _check_session_size(value: dict[str, Any], field: str, config: Config) -> None:
    size = len(_measure(value))
    if size > config.max_session_bytes:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"{field}: {size} bytes, over the {config.max_session_bytes}-byte limit")


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

#: Kinds whose common form is a short non-empty string, taken as is without a
#: call to their checker (which still sees everything else: ints, errors).
_ID_KINDS = frozenset({"client_id", "uid", "group"})


class _Signature:
    """One operation: its parameters (name, optional, checker, id-like) in order."""

    __slots__ = ("op", "params", "names", "known", "arity", "session_at")

    def __init__(self, op: str, params: tuple[str, ...]) -> None:
        self.op = op
        self.names = tuple(p.rstrip("?") for p in params)
        self.params = tuple(
            (name, p.endswith("?"), _CHECKERS[name], name in _ID_KINDS) for name, p in zip(self.names, params)
        )
        self.known = frozenset(self.names)
        self.arity = len(params)
        self.session_at = self.names.index("session") if "session" in self.names else None

    def check(self, given: Sequence[Any], config: Config) -> list[Any]:
        """The backend's arguments from ``given`` (in parameter order, ``None`` for absent).

        A session's size is not checked here (see ``session_at``).
        """
        values: list[Any] = []
        append = values.append
        for (name, optional, check, id_like), value in zip(self.params, given):
            if value is None:
                if not optional:
                    raise _invalid(name, "is required")
                append(None)
            elif id_like and type(value) is str and 0 < len(value) <= MAX_ID_LENGTH:
                append(value)
            else:
                append(check(value, name, config))
        return values

    def check_object(self, args: Any, config: Config) -> list[Any]:
        """The backend's arguments from an object of named arguments."""
        if not isinstance(args, dict):
            raise _invalid("args", "must be a JSON object")
        if not args.keys() <= self.known:
            extra = sorted(name for name in args if name not in self.known)
            raise _invalid(extra[0], "is not an argument of " + self.op)
        return self.check([args.get(name) for name in self.names], config)

    def check_array(self, item: list[Any], config: Config) -> list[Any]:
        """The backend's arguments from a compact ``[op, arg, ...]`` (trailing optionals may be left out)."""
        given = item[1:]
        missing = self.arity - len(given)
        if missing < 0:
            raise _MalformedOperation(f"{self.op} takes {self.arity} argument(s), not {len(given)}")
        if missing:
            given.extend([None] * missing)
        return self.check(given, config)


class _MalformedOperation(Exception):
    """A batch operation that is wrong as a whole (its shape, its length), not in one field."""


_SIGNATURES = {op: _Signature(op, params) for op, params in push_protocol.OPERATIONS.items()}


def _unknown_operation(op: Any) -> ApiError:
    return ApiError(404, ErrorCode.UNKNOWN_OPERATION, f"unknown operation {op!r}")


# -- batches --------------------------------------------------------------------------------

# The fast path for compact operations whose arguments are all in their common
# form: short non-empty strings for ids, an object for a session. It is written
# out in prepare_batch's loop (a function call per operation would cost a third
# of it). Anything else, integer uids included, takes the general path, which
# accepts every valid form and names what is wrong.
_ID, _ID_ID, _ID_SESSION = 1, 2, 3


def _fast_shape(params: tuple[str, ...]) -> int | None:
    """Which fast path an operation's parameters fit, if any (optional ones never do)."""
    if params and all(param in _ID_KINDS for param in params):
        return {1: _ID, 2: _ID_ID}.get(len(params))
    if len(params) == 2 and params[0] in _ID_KINDS and params[1] == "session":
        return _ID_SESSION
    return None


_FAST = {op: shape for op, params in push_protocol.OPERATIONS.items() if (shape := _fast_shape(params))}


def prepare_batch(backend: Backend, config: Config, operations: list[Any]) -> list[Call]:
    """Check every operation of a batch; return the calls to make, or raise the first error.

    Sessions are measured together after the loop (one encoder call for the
    whole batch instead of one per session); only when they are over the
    limit together is each measured, to name the first one that is.
    """
    calls: list[Call] = []
    append = calls.append
    sessions: list[tuple[int, Any]] = []
    for index, operation in enumerate(operations):
        if type(operation) is list and operation:
            op = operation[0]
            shape = _FAST.get(op) if type(op) is str else None
            if shape is not None:
                size = len(operation)
                if size == 3:
                    a, b = operation[1], operation[2]
                    if type(a) is str and 0 < len(a) <= MAX_ID_LENGTH:
                        if shape == _ID_ID and type(b) is str and 0 < len(b) <= MAX_ID_LENGTH:
                            append((getattr(backend, op), [a, b]))
                            continue
                        if shape == _ID_SESSION and type(b) is dict:
                            sessions.append((index, b))
                            append((getattr(backend, op), [a, b]))
                            continue
                elif size == 2 and shape == _ID:
                    a = operation[1]
                    if type(a) is str and 0 < len(a) <= MAX_ID_LENGTH:
                        append((getattr(backend, op), [a]))
                        continue
        try:
            signature, values = _check_operation(operation, config)
        except ApiError as exc:
            error = exc.within(f"operations[{index}]")
        except _MalformedOperation as exc:
            error = _invalid(f"operations[{index}]", str(exc))
        else:
            if signature.session_at is not None:
                sessions.append((index, values[signature.session_at]))
            append((getattr(backend, signature.op), values))
            continue
        # A session over the limit before the bad operation is the first error.
        _check_session_sizes(sessions, config)
        raise error
    _check_session_sizes(sessions, config)
    return calls


_SHAPE = 'must be an object with "op" and "args", or an array [op, arguments...]'


def _check_operation(operation: Any, config: Config) -> tuple[_Signature, list[Any]]:
    """One batch operation: ``[name, arg, ...]`` or ``{"op": name, "args": {...}}``."""
    if type(operation) is list:
        op = operation[0] if operation else None
        if not isinstance(op, str):
            raise _MalformedOperation(_SHAPE)
        signature = _SIGNATURES.get(op)
        if signature is None:
            raise _unknown_operation(op)
        return signature, signature.check_array(operation, config)
    if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
        raise _MalformedOperation(_SHAPE)
    if len(operation) > 1 + ("args" in operation):
        extra = sorted(set(operation) - {"op", "args"})[0]
        raise _invalid(extra, 'is not a field of an operation (use "op" and "args")')
    signature = _SIGNATURES.get(operation["op"])
    if signature is None:
        raise _unknown_operation(operation["op"])
    return signature, signature.check_object(operation.get("args", {}), config)


def _check_session_sizes(sessions: list[tuple[int, Any]], config: Config) -> None:
    if not sessions or len(_measure([session for _, session in sessions])) <= config.max_session_bytes:
        return
    for index, session in sessions:
        try:
            _check_session_size(session, "session", config)
        except ApiError as exc:
            raise exc.within(f"operations[{index}]") from None


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
    # not read at all. A small body has usually arrived whole: at_eof() then
    # saves the read that would only find the end.
    limit = config.max_body_bytes
    hard_limit = limit * _HARD_BODY_LIMIT_FACTOR
    content = request.content
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    size = 0
    while not content.at_eof():
        chunk = await content.readany()
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
    if not await backend.claim_nonce(nonce, _nonce_ttl(timestamp)):
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "nonce already used (replayed request)")
    if size > limit:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"body is {size} bytes, over the {limit}-byte limit")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _nonce_ttl(timestamp: str) -> float:
    """How long a request's nonce must be remembered: while its timestamp is still accepted.

    That is until ``timestamp + SIGNATURE_WINDOW`` (about 300 s for a request
    sent just now, not a flat 600 s), plus :data:`NONCE_CLOCK_SLACK` for a
    node of the cluster whose clock is behind the one that stored it. At
    thousands of calls per second the nonces are most of what the API keeps,
    in memory or in Redis. ``timestamp`` was checked by verify_signature.
    """
    remaining = int(timestamp) + push_protocol.SIGNATURE_WINDOW - time.time()
    return max(1.0, remaining) + NONCE_CLOCK_SLACK


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        value = _decode(body.decode()) if body else {}
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and NaN/Infinity too. RecursionError:
        # JSON nested deeper than the parser's stack allows.
        raise ApiError(400, ErrorCode.BAD_REQUEST, "body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, ErrorCode.BAD_REQUEST, "body must be a JSON object")
    return value


def _answer(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


def _json(status: int, payload: Any) -> web.Response:
    return _answer(status, _encode(payload).encode())


def _error(error: ApiError) -> web.Response:
    return _json(error.status, {"error": error.as_json()})


def _unavailable(exc: BackendUnavailable) -> ApiError:
    return ApiError(503, ErrorCode.UNAVAILABLE, f"shared state unavailable: {exc}")


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
        body = _encode({"result": result}).encode()
    return _answer(200, body)


# -- handlers -------------------------------------------------------------------------------


def _operation_handler(signature: _Signature) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of ``POST /api/v1/<op>`` for one operation."""
    op = signature.op
    session_at = signature.session_at

    async def handle_operation(request: web.Request) -> web.Response:
        app = request.app
        config, backend = app[CONFIG], app[BACKEND]
        try:
            body = await read_signed_body(request, config, backend)
            values = signature.check_object(_parse_object(body), config)
            if session_at is not None:
                _check_session_size(values[session_at], "session", config)
            try:
                result = await getattr(backend, op)(*values)
            except BackendUnavailable as exc:
                raise _unavailable(exc) from None
        except ApiError as exc:
            return _error(exc)
        return _result(result)

    handle_operation.__qualname__ = handle_operation.__name__ = f"handle_{op}"
    return handle_operation


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
        calls = prepare_batch(backend, config, operations)
    except ApiError as exc:
        return _error(exc)
    results = await backend.run_batch(calls)
    errors: list[dict[str, Any]] = []
    for index, outcome in enumerate(results):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, BackendUnavailable):
                raise outcome
            error = _unavailable(outcome)
            errors.append({"index": index, "status": error.status, "error": error.as_json()})
            results[index] = None
    return _json(200, {"results": results, "errors": errors})


async def handle_not_found(request: web.Request) -> web.Response:
    """Any other path: still authenticated first, then 404."""
    app = request.app
    try:
        await read_signed_body(request, app[CONFIG], app[BACKEND])
    except ApiError as exc:
        return _error(exc)
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

    @property
    def enabled(self) -> bool:
        # Asked once per connection: when INFO is off (the default), aiohttp
        # skips the timing and the call per request altogether.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status, time * 1000)


def add_routes(app: web.Application) -> None:
    """Mount the API on ``app``: one exact route per operation, the batch, and a catch-all."""
    app.router.add_post(push_protocol.BATCH_PATH, handle_batch)
    for op, signature in _SIGNATURES.items():
        app.router.add_post(push_protocol.operation_path(op), _operation_handler(signature))
    app.router.add_route("*", "/{tail:.*}", handle_not_found)
