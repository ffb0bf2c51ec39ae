"""The sans-I/O core both clients share: building and signing requests, reading answers, batches.

Nothing here touches a socket. A face (PushClient, AsyncPushClient) prepares a
call here, sends the bytes with its own HTTP transport, and hands the answer's
status and body back here to become a result or a PushError. The transport
reports a failure whose outcome is unknown (the connection was lost after the
request went out, or a time-out) as :class:`Lost`. Whether and what to send
again is decided here, by a :class:`Call` both faces drive: a call whose outcome
is unknown goes once more (``retries``), at once, signed anew but with the same
body, so the same idempotency key.

Idempotency keys: every push call (``send_to_*``, ``close_client``) and every
batch carries one, made here when the caller gave none, so that a retry is
applied once by a server that honours keys. A server from before keys refuses
the unknown argument with a 400 naming it; the Call then sends the request again
without the key it made, the face stops making keys and, since a retry is no
longer safe there, pushes are no longer retried.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import push_protocol

from ._exceptions import (
    PushAuthError,
    PushConnectionError,
    PushError,
    PushRequestError,
    PushUnavailableError,
)
from ._operations import Node, _Operations

__all__ = ["BatchResult", "Call", "Lost", "Prepared", "new_key"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The operations that take an idempotency key, as their last (optional) argument.
KEYED = frozenset({"send_to_all", "send_to_client", "send_to_uid", "send_to_group", "close_client"})
KEY = "idempotency_key"

#: Operations the client knows beyond push_protocol.OPERATIONS (added on the server side meanwhile).
_EXTRA_OPERATIONS: dict[str, tuple[str, ...]] = {"get_nodes": ()}

#: Each operation's path, and its parameter names in order (push_protocol.OPERATIONS, plus the key).
_PARAMS = {**push_protocol.OPERATIONS, **_EXTRA_OPERATIONS}
PATHS = {op: push_protocol.operation_path(op) for op in _PARAMS}
NAMES = {
    op: tuple(param.rstrip("?") for param in params) + ((KEY,) if op in KEYED and KEY + "?" not in params else ())
    for op, params in _PARAMS.items()
}

_KEYED_PATHS = frozenset(PATHS[op] for op in KEYED)

#: Made once: json.dumps() with options builds a new encoder on every call.
encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
decode = json.JSONDecoder().decode


def new_key() -> str:
    """A fresh idempotency key (22 URL-safe characters, 128 random bits)."""
    return secrets.token_urlsafe(16)


class Lost(Exception):
    """The call's outcome is unknown: the connection was lost after the request went out, or a time-out.

    ``error`` is what the caller gets if the call is not (or no longer) retried.
    """

    def __init__(self, error: PushConnectionError) -> None:
        super().__init__(str(error))
        self.error = error


class Prepared:
    """One request ready to be signed and sent: its API path and body, and how to read its answer."""

    __slots__ = ("auto_key", "body", "convert", "path", "retryable")

    def __init__(
        self, path: str, body: bytes, convert: Callable[[Any], Any] | None, retryable: bool, auto_key: bool
    ) -> None:
        self.path = path
        self.body = body
        self.convert = convert
        #: Whether sending it twice is safe: it carries a key, or the operation is idempotent by itself.
        self.retryable = retryable
        #: Whether it carries a key the client made (dropped if the server refuses keys).
        self.auto_key = auto_key


def prepare_call(
    op: str, values: tuple[Any, ...], convert: Callable[[Any], Any] | None = None, auto_key: bool = False
) -> Prepared:
    """One operation, sent with named arguments (an absent one is left out)."""
    args = {name: value for name, value in zip(NAMES[op], values, strict=True) if value is not None}
    # Every operation but the pushes is idempotent by itself (sets, binds, queries).
    retryable = op not in KEYED or KEY in args
    return Prepared(PATHS[op], encode(args).encode(), convert, retryable, auto_key)


def prepare_batch(operations: list[tuple[Any, ...]], key: str | None, auto_key: bool) -> Prepared:
    """A batch of compact operations ``[op, arg, ...]``, with the batch's key if any."""
    payload: dict[str, Any] = {"operations": operations}
    if key is not None:
        payload[KEY] = key
    return Prepared(push_protocol.BATCH_PATH, encode(payload).encode(), None, key is not None, auto_key)


def sign(secret: str, path: str, body: bytes) -> dict[str, str]:
    """The headers that authenticate one request (a new nonce each time, so a retry is not a replay)."""
    return push_protocol.sign_request(secret, "POST", path, body)


def refusal(status: int, error: Any) -> PushRequestError:
    """The exception for an error the server answered (``{"code": ..., "message": ...}``)."""
    code = str(error.get("code", "error")) if isinstance(error, dict) else "error"
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    if status == 503:
        return PushUnavailableError(status, code, message)
    return PushRequestError(status, code, message)


def read_answer(status: int, content: bytes) -> dict[str, Any]:
    """The answer's JSON object if it is a success; otherwise raise the PushError it means."""
    try:
        answer = decode(content.decode())
    except ValueError:
        answer = None
    if status == 200 and isinstance(answer, dict):
        return answer
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict):
        error = {"code": "error", "message": content[:200].decode("utf-8", "replace") or f"HTTP {status}"}
    if status == 401:
        raise PushAuthError(401, str(error.get("code")), str(error.get("message")))
    raise refusal(status, error)


def read_result(prepared: Prepared, answer: dict[str, Any]) -> Any:
    """The result of a single operation from its answer."""
    if "result" not in answer:
        raise PushError("the push server's answer has no result (is it another version?)")
    result = answer["result"]
    return result if prepared.convert is None else prepared.convert(result)


def refuses_keys(error: PushRequestError) -> bool:
    """Whether the server refused a request for carrying an idempotency key it does not know."""
    return (
        error.status == 400
        and error.code == push_protocol.ErrorCode.INVALID_ARGUMENT
        and (error.message.startswith(KEY + ":"))
    )


def without_key(prepared: Prepared) -> Prepared:
    """The same request without the key the client made (for a server that does not know keys)."""
    payload = decode(prepared.body.decode())
    payload.pop(KEY, None)
    # Without a key, neither a push nor a batch is safe to send twice.
    retryable = prepared.path != push_protocol.BATCH_PATH and prepared.path not in _KEYED_PATHS
    return Prepared(prepared.path, encode(payload).encode(), prepared.convert, retryable, False)


class Face(Protocol):
    """What a :class:`Call` reads and sets on the client that sends it."""

    api_url: str
    #: How many times a call whose outcome is unknown is sent again.
    retries: int
    #: Whether the server takes idempotency keys (False once it refused one): read when a call is prepared.
    _keys: bool


class Call:
    """One call on its way to an answer: which request to send next, and what each outcome means.

    The retry decision of both faces, which only do the I/O::

        call = Call(face, prepared)
        while call.answer is None:
            try:
                call.answered(*exchange(call.prepared))  # (status, content)
            except Lost as lost:
                call.lost(lost)
        return call.answer

    ``answered`` sets the answer, raises the PushError it means, or (a server
    that refuses keys) sets the request to send again without the key;
    ``lost`` raises the error if the call is not sent again.
    """

    __slots__ = ("_attempt", "_face", "answer", "prepared")

    def __init__(self, face: Face, prepared: Prepared) -> None:
        self._face = face
        #: What to send (next).
        self.prepared = prepared
        #: The server's answer, once it came (a success's JSON object).
        self.answer: dict[str, Any] | None = None
        self._attempt = 0

    def answered(self, status: int, content: bytes) -> None:
        """The server answered: keep the answer, raise the error, or send again without the key the client made."""
        try:
            self.answer = read_answer(status, content)
        except PushRequestError as refused:
            if not (self.prepared.auto_key and refuses_keys(refused)):
                raise
            log.warning(
                "the push server at %s does not take idempotency keys; pushes are not retried", self._face.api_url
            )
            self._face._keys = False
            self.prepared = without_key(self.prepared)

    def lost(self, lost: Lost) -> None:
        """The outcome is unknown: send the same request again if it is safe and retries are left, else raise."""
        if not self.prepared.retryable or self._attempt >= self._face.retries:
            raise lost.error from lost.__cause__
        self._attempt += 1
        log.info("sending %s again with the same body: %s", self.prepared.path, lost)


# -- batches ---------------------------------------------------------------------------------


class _Sent:
    """What the server answered for one sent batch, shared by that batch's results."""

    __slots__ = ("errors", "values")

    def __init__(self) -> None:
        self.values: list[Any] | None = None
        self.errors: dict[int, PushRequestError] = {}


class BatchResult(Generic[T]):
    """The result of one call made on a batch, filled in when the batch is sent."""

    # The value stays in the batch's answer until it is read, so queueing a
    # call costs one small object and sending a batch touches no result.
    __slots__ = ("_convert", "_index", "_sent")

    def __init__(self, sent: _Sent, index: int, convert: Callable[[Any], Any] | None) -> None:
        self._sent = sent
        self._index = index
        self._convert = convert

    @property
    def value(self) -> T:
        """The call's result; reading it before the batch was sent (or if this call failed) raises."""
        values = self._sent.values
        if values is None:
            raise PushError("the batch has not been sent yet")
        error = self._sent.errors.get(self._index)
        if error is not None:
            raise error
        value = values[self._index]
        return value if self._convert is None else self._convert(value)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        if self._sent.values is None:
            return "<BatchResult pending>"
        if self._index in self._sent.errors:
            return f"<BatchResult failed: {self._sent.errors[self._index]}>"
        return f"<BatchResult {self.value!r}>"


_BatchOperations = _Operations[
    None,
    BatchResult[bool],
    BatchResult[int],
    BatchResult[list[str]],
    BatchResult["str | None"],
    BatchResult["dict[str, Any] | None"],
    BatchResult[dict[str, dict[str, Any]]],
    BatchResult[list[Node]],
]


class BatchBase(_BatchOperations):
    """Calls queued to go to the server as one request: the part both clients' batches share.

    Each query returns a :class:`BatchResult` whose ``.value`` is filled in
    when the batch is sent (the other calls return None). The server checks
    every operation before it applies any, so a malformed one refuses the whole
    batch and changes nothing. If an operation fails while being applied (for
    example Redis went away), the others still run and the first failure is
    raised when the batch is sent.

    Operations travel in the API's compact form, ``[op, arg, ...]``.
    """

    def __init__(self, idempotency_key: str | None = None) -> None:
        self._operations: list[tuple[Any, ...]] = []
        # Only calls with a result have a BatchResult; writes are just queued.
        self._results: list[BatchResult[Any]] = []
        self._sent = _Sent()
        self._key = idempotency_key

    def _op(self, op: str, values: tuple[Any, ...], convert: Callable[[Any], Any] | None = None) -> BatchResult[Any]:
        result: BatchResult[Any] = BatchResult(self._sent, len(self._operations), convert)
        self._operations.append((op, *values))
        self._results.append(result)
        return result

    def _do(self, op: str, values: tuple[Any, ...]) -> None:
        self._operations.append((op, *values))

    def _push(self, op: str, values: tuple[Any, ...], idempotency_key: str | None) -> None:
        operation = (op, *values, idempotency_key)
        # Trailing absent arguments are left out, so a push without a key reads as before keys.
        end = len(operation)
        while end > 1 and operation[end - 1] is None:
            end -= 1
        self._operations.append(operation[:end])

    def __len__(self) -> int:
        return len(self._operations)

    def _take(self, keys: bool) -> tuple[list[tuple[Any, ...]], _Sent, Prepared | None]:
        """Take the queued calls for sending: (operations, their answer's holder, the request or None if empty)."""
        operations, sent = self._operations, self._sent
        self._operations, self._results, self._sent = [], [], _Sent()
        if not operations:
            sent.values = []
            return operations, sent, None
        # A key the caller gave applies to this batch's first send only; later ones get their own.
        key, self._key = self._key, None
        auto = key is None and keys
        return operations, sent, prepare_batch(operations, new_key() if auto else key, auto)

    @staticmethod
    def _settle(operations: list[tuple[Any, ...]], sent: _Sent, answer: dict[str, Any]) -> list[Any]:
        """Record the server's answer to a batch; return its results (raise the first failure)."""
        values, errors = answer.get("results"), answer.get("errors", [])
        if not isinstance(values, list) or len(values) != len(operations) or not isinstance(errors, list):
            raise PushError("the push server's answer to a batch does not match it (is it another version?)")
        first: tuple[int, PushRequestError] | None = None
        for error in errors:
            index = error.get("index") if isinstance(error, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(operations):
                raise PushError("the push server's answer to a batch does not match it (is it another version?)")
            failed = refusal(int(error.get("status", 500)), error.get("error"))
            sent.errors[index] = failed
            if first is None or index < first[0]:
                first = (index, failed)
        sent.values = values
        if first is not None:
            raise first[1]
        return values
