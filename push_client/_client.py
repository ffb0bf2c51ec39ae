"""PushClient: the Python counterpart of GatewayWorker's GatewayClient."""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Iterable, TypeVar

import requests
import urllib3

import push_protocol

from . import _http
from ._exceptions import (
    PushAuthError,
    PushConnectionError,
    PushError,
    PushRequestError,
    PushTimeoutError,
    PushUnavailableError,
)

__all__ = ["PushClient", "Batch", "BatchResult", "default_client", "DEFAULT_API_URL", "DEFAULT_TIMEOUT"]

DEFAULT_API_URL = "http://127.0.0.1:7273"
#: Seconds to wait for a connection and then for an answer. Bounded so that a web
#: request that pushes never hangs on a push server that went away.
DEFAULT_TIMEOUT = 5.0

Uid = str | int
Group = str | int
T = TypeVar("T")


def _ids(value: Uid | Iterable[Uid]) -> list[Uid]:
    """One uid/group or many, as a list (a str is one, not an iterable of characters)."""
    if isinstance(value, (str, int)):
        return [value]
    return list(value)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


class _Operations:
    """Every API operation as a method, written once for PushClient and Batch.

    Subclasses decide what a call does through ``_op``/``_do``: PushClient
    sends it at once, Batch queues it.
    """

    def _op(self, op: str, values: tuple[Any, ...], convert: Callable[[Any], Any] | None = None) -> Any:
        """Call ``op`` with its arguments in the order of push_protocol.OPERATIONS (None: absent)."""
        raise NotImplementedError

    def _do(self, op: str, values: tuple[Any, ...]) -> None:
        """Like ``_op``, for an operation whose result (always None) nobody reads."""
        raise NotImplementedError

    # -- pushes ---------------------------------------------------------------

    def send_to_all(
        self,
        message: Any,
        client_ids: Iterable[str] | None = None,
        exclude_client_ids: Iterable[str] | None = None,
    ) -> None:
        """Push ``message`` to every connection (or only ``client_ids``), minus the excluded."""
        self._do(
            "send_to_all",
            (
                push_protocol.encode_message(message),
                None if client_ids is None else list(client_ids),
                None if exclude_client_ids is None else list(exclude_client_ids),
            ),
        )

    def send_to_client(self, client_id: str, message: Any) -> None:
        """Push ``message`` to one connection; nothing happens if it is offline."""
        self._do("send_to_client", (client_id, push_protocol.encode_message(message)))

    def send_to_uid(self, uid_or_uids: Uid | Iterable[Uid], message: Any) -> None:
        """Push ``message`` to every connection bound to the uid (or to any of the uids)."""
        self._do("send_to_uid", (_ids(uid_or_uids), push_protocol.encode_message(message)))

    def send_to_group(
        self,
        group_or_groups: Group | Iterable[Group],
        message: Any,
        exclude_client_ids: Iterable[str] | None = None,
    ) -> None:
        """Push ``message`` to every member of the group(s), minus the excluded connections.

        A connection in several of the groups receives the message once.
        """
        self._do(
            "send_to_group",
            (
                _ids(group_or_groups),
                push_protocol.encode_message(message),
                None if exclude_client_ids is None else list(exclude_client_ids),
            ),
        )

    def close_client(self, client_id: str, message: Any = None) -> None:
        """Send ``message`` (if any) to the connection, then close it.

        Its groups get the usual leave signals.
        """
        self._do("close_client", (client_id, None if message is None else push_protocol.encode_message(message)))

    # -- uids -----------------------------------------------------------------

    def bind_uid(self, client_id: str, uid: Uid) -> None:
        """Bind the connection to ``uid``; a connection has at most one uid, so this replaces any other."""
        self._do("bind_uid", (client_id, uid))

    def unbind_uid(self, client_id: str, uid: Uid) -> None:
        """Undo ``bind_uid`` if the connection is bound to ``uid``."""
        self._do("unbind_uid", (client_id, uid))

    # -- groups ---------------------------------------------------------------

    def join_group(self, client_id: str, group: Group) -> None:
        """Add the connection to ``group``."""
        self._do("join_group", (client_id, group))

    def leave_group(self, client_id: str, group: Group) -> None:
        """Take the connection out of ``group`` (no leave signal: only departures send one)."""
        self._do("leave_group", (client_id, group))

    def ungroup(self, group: Group) -> None:
        """Dissolve ``group``: every member leaves it; the connections stay open."""
        self._do("ungroup", (group,))

    # -- sessions -------------------------------------------------------------

    def set_session(self, client_id: str, session: dict[str, Any]) -> None:
        """Replace the connection's session with ``session`` (a JSON object)."""
        self._do("set_session", (client_id, session))

    def update_session(self, client_id: str, session: dict[str, Any]) -> None:
        """Merge ``session`` into the connection's session (top-level keys replace)."""
        self._do("update_session", (client_id, session))

    def get_session(self, client_id: str) -> dict[str, Any] | None:
        """The connection's session (``{}`` if none was set), or None if it is offline."""
        return self._op("get_session", (client_id,))  # type: ignore[no-any-return]

    # -- presence -------------------------------------------------------------

    def is_online(self, client_id: str) -> bool:
        """Whether the connection is alive."""
        return self._op("is_online", (client_id,), bool)  # type: ignore[no-any-return]

    def is_uid_online(self, uid: Uid) -> bool:
        """Whether any connection is bound to ``uid``."""
        return self._op("is_uid_online", (uid,), bool)  # type: ignore[no-any-return]

    def get_client_id_by_uid(self, uid: Uid) -> list[str]:
        """The connections bound to ``uid``."""
        return self._op("get_client_id_by_uid", (uid,), list)  # type: ignore[no-any-return]

    def get_uid_by_client_id(self, client_id: str) -> str | None:
        """The uid the connection is bound to, or None."""
        return self._op("get_uid_by_client_id", (client_id,), _str_or_none)  # type: ignore[no-any-return]

    def get_client_id_list_by_group(self, group: Group) -> list[str]:
        """The connections in ``group``."""
        return self._op("get_client_id_list_by_group", (group,), list)  # type: ignore[no-any-return]

    def get_client_count_by_group(self, group: Group) -> int:
        """How many connections are in ``group``."""
        return self._op("get_client_count_by_group", (group,), int)  # type: ignore[no-any-return]

    def get_client_sessions_by_group(self, group: Group) -> dict[str, dict[str, Any]]:
        """``{client_id: session}`` for every connection in ``group``."""
        return self._op("get_client_sessions_by_group", (group,), dict)  # type: ignore[no-any-return]

    def get_uid_list_by_group(self, group: Group) -> list[str]:
        """The distinct uids bound to connections in ``group``."""
        return self._op("get_uid_list_by_group", (group,), list)  # type: ignore[no-any-return]

    def get_uid_count_by_group(self, group: Group) -> int:
        """How many distinct uids are in ``group``."""
        return self._op("get_uid_count_by_group", (group,), int)  # type: ignore[no-any-return]

    def get_all_client_id_list(self) -> list[str]:
        """Every live connection in the cluster."""
        return self._op("get_all_client_id_list", (), list)  # type: ignore[no-any-return]

    def get_all_client_count(self) -> int:
        """How many live connections the cluster has."""
        return self._op("get_all_client_count", (), int)  # type: ignore[no-any-return]

    def get_all_uid_list(self) -> list[str]:
        """Every uid bound to a live connection."""
        return self._op("get_all_uid_list", (), list)  # type: ignore[no-any-return]

    def get_all_uid_count(self) -> int:
        """How many uids are bound to live connections."""
        return self._op("get_all_uid_count", (), int)  # type: ignore[no-any-return]

    def get_all_group_id_list(self) -> list[str]:
        """Every group that has at least one member."""
        return self._op("get_all_group_id_list", (), list)  # type: ignore[no-any-return]


class _Sent:
    """What the server answered for one sent batch, shared by that batch's results."""

    __slots__ = ("values", "errors")

    def __init__(self) -> None:
        self.values: list[Any] | None = None
        self.errors: dict[int, PushRequestError] = {}


class BatchResult:
    """The result of one call made on a :class:`Batch`, filled in when the batch is sent."""

    # The value stays in the batch's answer until it is read, so queueing a
    # call costs one small object and sending a batch touches no result.
    __slots__ = ("_sent", "_index", "_convert")

    def __init__(self, sent: _Sent, index: int, convert: Callable[[Any], Any] | None) -> None:
        self._sent = sent
        self._index = index
        self._convert = convert

    @property
    def value(self) -> Any:
        """The call's result; reading it before the batch was sent (or if this call failed) raises."""
        values = self._sent.values
        if values is None:
            raise PushError("the batch has not been sent yet")
        error = self._sent.errors.get(self._index)
        if error is not None:
            raise error
        value = values[self._index]
        return value if self._convert is None else self._convert(value)

    def __repr__(self) -> str:
        if self._sent.values is None:
            return "<BatchResult pending>"
        if self._index in self._sent.errors:
            return f"<BatchResult failed: {self._sent.errors[self._index]}>"
        return f"<BatchResult {self.value!r}>"


class Batch(_Operations):
    """Calls queued and sent as one request when the ``with`` block ends.

    Each query returns a :class:`BatchResult` whose ``.value`` is filled in
    when the batch is sent (the other calls return None, as on PushClient).
    The server checks every operation before it applies any, so a malformed
    one refuses the whole batch and changes nothing. If an
    operation fails while being applied (for example Redis went away), the
    others still run and the first failure is raised when the block ends.

    Operations travel in the API's compact form, ``[op, arg, ...]``.
    """

    def __init__(self, client: PushClient) -> None:
        self._client = client
        self._operations: list[Any] = []
        # Only calls with a result have a BatchResult; writes are just queued.
        self._results: list[BatchResult] = []
        self._sent = _Sent()

    def _op(self, op: str, values: tuple[Any, ...], convert: Callable[[Any], Any] | None = None) -> BatchResult:
        result = BatchResult(self._sent, len(self._operations), convert)
        self._operations.append((op, *values))
        self._results.append(result)
        return result

    def _do(self, op: str, values: tuple[Any, ...]) -> None:
        self._operations.append((op, *values))

    def __len__(self) -> int:
        return len(self._operations)

    def send(self) -> list[Any]:
        """Send the queued calls now; return their results in order."""
        results = self._results
        values = list(self._flush())
        for result in results:
            values[result._index] = result.value
        return values

    def _flush(self) -> list[Any]:
        """Send the queued calls; return the server's results (raise the first failure)."""
        operations, sent = self._operations, self._sent
        self._operations, self._results, self._sent = [], [], _Sent()
        if not operations:
            sent.values = []
            return sent.values
        answer = self._client._request(push_protocol.BATCH_PATH, {"operations": operations})
        values, errors = answer.get("results"), answer.get("errors", [])
        if not isinstance(values, list) or len(values) != len(operations) or not isinstance(errors, list):
            raise PushError("the push server's answer to a batch does not match it (is it another version?)")
        first: tuple[int, PushRequestError] | None = None
        for error in errors:
            index = error.get("index") if isinstance(error, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(operations):
                raise PushError("the push server's answer to a batch does not match it (is it another version?)")
            refusal = _refusal(int(error.get("status", 500)), error.get("error"))
            sent.errors[index] = refusal
            if first is None or index < first[0]:
                first = (index, refusal)
        sent.values = values
        if first is not None:
            raise first[1]
        return values

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # A block that raised sends nothing: its calls were never all made.
        if exc_type is None:
            self._flush()


def _refusal(status: int, error: Any) -> PushRequestError:
    code = str(error.get("code", "error")) if isinstance(error, dict) else "error"
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    if status == 503:
        return PushUnavailableError(status, code, message)
    return PushRequestError(status, code, message)


class PushClient(_Operations):
    """A client of the push server's internal API.

    ``PushClient()`` reads ``PUSH_API_URL`` and ``PUSH_SECRET`` from the
    environment. One kept-alive HTTP session is used for every call; the client
    is safe to share between threads (requests' connection pool is).
    """

    def __init__(
        self,
        api_url: str | None = None,
        secret: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = (api_url or os.environ.get("PUSH_API_URL") or DEFAULT_API_URL).rstrip("/")
        secret = secret if secret is not None else os.environ.get("PUSH_SECRET")
        if not secret:
            raise PushError("no secret: pass secret= or set PUSH_SECRET")
        self._secret = secret
        self.timeout = timeout
        # A plain-HTTP API with our own session takes the short path: one
        # connection of the session's own pool (requests' adapter, urllib3),
        # used directly by push_client._http, without Session.request merging
        # proxies, cookies, hooks and auth or urllib3 wrapping every answer
        # (client CPU per call ~300 -> ~50 us). HTTPS, or a session the caller
        # configured, goes through requests in full so its TLS and adapter
        # settings apply.
        self._pool: urllib3.HTTPConnectionPool | None = None
        if session is None:
            session = requests.Session()
            # The internal API is reached directly, never through a proxy, and
            # needs no .netrc: without this, requests scans the whole
            # environment for proxy settings on every call (~0.6 ms here).
            session.trust_env = False
            if self.api_url.startswith("http://"):
                adapter = session.get_adapter(self.api_url)
                assert isinstance(adapter, requests.adapters.HTTPAdapter)
                self._pool = adapter.poolmanager.connection_from_url(self.api_url)
        self._session = session
        url = urllib3.util.parse_url(self.api_url)
        self._path_prefix = url.path or ""
        # The fixed part of every request's head on the short path.
        self._host_line = f"Host: {url.netloc}\r\nContent-Type: application/json\r\n"

    def __repr__(self) -> str:
        # Never show the secret.
        return f"<PushClient {self.api_url}>"

    def close(self) -> None:
        """Close the kept-alive connections; calls made afterwards raise PushConnectionError."""
        # Closed by name: urllib3 drops a closed session's pools without closing
        # them, and this client holds on to its pool.
        if self._pool is not None:
            self._pool.close()
        self._session.close()

    def __enter__(self) -> PushClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def batch(self) -> Batch:
        """A context manager whose calls go to the server as one request."""
        return Batch(self)

    def _op(self, op: str, values: tuple[Any, ...], convert: Callable[[Any], Any] | None = None) -> Any:
        # One operation travels with named arguments; an absent one is left out.
        args = {name: value for name, value in zip(_NAMES[op], values) if value is not None}
        result = self._request(_PATHS[op], args)["result"]
        return result if convert is None else convert(result)

    def _do(self, op: str, values: tuple[Any, ...]) -> None:
        self._op(op, values)

    def _request(self, path: str, payload: dict[str, Any]) -> Any:
        body = _encode(payload).encode()
        # The signature covers the API's own path; a prefix in api_url (a proxy
        # that strips it before the server) is part of the URL only.
        headers = push_protocol.sign_request(self._secret, "POST", path, body)
        if self._pool is not None:
            head = (
                f"POST {self._path_prefix}{path} HTTP/1.1\r\n{self._host_line}Content-Length: {len(body)}\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                + "\r\n"
            )
            status, content = _http.exchange(self._pool, head.encode() + body, self.timeout, self.api_url)
        else:
            headers["Content-Type"] = "application/json"
            try:
                full = self._session.post(self.api_url + path, data=body, headers=headers, timeout=self.timeout)
            except requests.Timeout as exc:
                raise PushTimeoutError(f"push server at {self.api_url} did not answer within {self.timeout}s") from exc
            except requests.RequestException as exc:
                raise PushConnectionError(f"cannot reach the push server at {self.api_url}: {exc}") from exc
            status, content = full.status_code, full.content
        try:
            answer = _decode(content.decode())
        except ValueError:
            answer = None
        if status == 200 and isinstance(answer, dict):
            return answer
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict):
            error = {"code": "error", "message": content[:200].decode("utf-8", "replace") or f"HTTP {status}"}
        if status == 401:
            raise PushAuthError(401, str(error.get("code")), str(error.get("message")))
        raise _refusal(status, error)


#: Each operation's path, and its parameter names in order (see push_protocol.OPERATIONS).
_PATHS = {op: push_protocol.operation_path(op) for op in push_protocol.OPERATIONS}
_NAMES = {op: tuple(param.rstrip("?") for param in params) for op, params in push_protocol.OPERATIONS.items()}

#: Made once: json.dumps() with options builds a new encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_decode = json.JSONDecoder().decode


_default: PushClient | None = None
_default_lock = threading.Lock()


def default_client() -> PushClient:
    """A PushClient configured from the environment, made on first use and then shared."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PushClient()
        return _default
