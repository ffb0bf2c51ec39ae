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

    Subclasses decide what a call does through ``_call``: PushClient sends it at
    once, Batch queues it.
    """

    def _call(self, op: str, args: dict[str, Any], convert: Callable[[Any], Any] | None = None) -> Any:
        raise NotImplementedError

    # -- pushes ---------------------------------------------------------------

    def send_to_all(
        self,
        message: Any,
        client_ids: Iterable[str] | None = None,
        exclude_client_ids: Iterable[str] | None = None,
    ) -> None:
        """Push ``message`` to every connection (or only ``client_ids``), minus the excluded."""
        args: dict[str, Any] = {"message": push_protocol.encode_message(message)}
        if client_ids is not None:
            args["client_ids"] = list(client_ids)
        if exclude_client_ids is not None:
            args["exclude_client_ids"] = list(exclude_client_ids)
        self._call("send_to_all", args)

    def send_to_client(self, client_id: str, message: Any) -> None:
        """Push ``message`` to one connection; nothing happens if it is offline."""
        self._call("send_to_client", {"client_id": client_id, "message": push_protocol.encode_message(message)})

    def send_to_uid(self, uid_or_uids: Uid | Iterable[Uid], message: Any) -> None:
        """Push ``message`` to every connection bound to the uid (or to any of the uids)."""
        self._call("send_to_uid", {"uids": _ids(uid_or_uids), "message": push_protocol.encode_message(message)})

    def send_to_group(
        self,
        group_or_groups: Group | Iterable[Group],
        message: Any,
        exclude_client_ids: Iterable[str] | None = None,
    ) -> None:
        """Push ``message`` to every member of the group(s), minus the excluded connections.

        A connection in several of the groups receives the message once.
        """
        args: dict[str, Any] = {"groups": _ids(group_or_groups), "message": push_protocol.encode_message(message)}
        if exclude_client_ids is not None:
            args["exclude_client_ids"] = list(exclude_client_ids)
        self._call("send_to_group", args)

    def close_client(self, client_id: str, message: Any = None) -> None:
        """Send ``message`` (if any) to the connection, then close it.

        Its groups get the usual leave signals.
        """
        args: dict[str, Any] = {"client_id": client_id}
        if message is not None:
            args["message"] = push_protocol.encode_message(message)
        self._call("close_client", args)

    # -- uids -----------------------------------------------------------------

    def bind_uid(self, client_id: str, uid: Uid) -> None:
        """Bind the connection to ``uid``; a connection has at most one uid, so this replaces any other."""
        self._call("bind_uid", {"client_id": client_id, "uid": uid})

    def unbind_uid(self, client_id: str, uid: Uid) -> None:
        """Undo ``bind_uid`` if the connection is bound to ``uid``."""
        self._call("unbind_uid", {"client_id": client_id, "uid": uid})

    # -- groups ---------------------------------------------------------------

    def join_group(self, client_id: str, group: Group) -> None:
        """Add the connection to ``group``."""
        self._call("join_group", {"client_id": client_id, "group": group})

    def leave_group(self, client_id: str, group: Group) -> None:
        """Take the connection out of ``group`` (no leave signal: only departures send one)."""
        self._call("leave_group", {"client_id": client_id, "group": group})

    def ungroup(self, group: Group) -> None:
        """Dissolve ``group``: every member leaves it; the connections stay open."""
        self._call("ungroup", {"group": group})

    # -- sessions -------------------------------------------------------------

    def set_session(self, client_id: str, session: dict[str, Any]) -> None:
        """Replace the connection's session with ``session`` (a JSON object)."""
        self._call("set_session", {"client_id": client_id, "session": session})

    def update_session(self, client_id: str, session: dict[str, Any]) -> None:
        """Merge ``session`` into the connection's session (top-level keys replace)."""
        self._call("update_session", {"client_id": client_id, "session": session})

    def get_session(self, client_id: str) -> dict[str, Any] | None:
        """The connection's session (``{}`` if none was set), or None if it is offline."""
        return self._call("get_session", {"client_id": client_id})  # type: ignore[no-any-return]

    # -- presence -------------------------------------------------------------

    def is_online(self, client_id: str) -> bool:
        """Whether the connection is alive."""
        return self._call("is_online", {"client_id": client_id}, bool)  # type: ignore[no-any-return]

    def is_uid_online(self, uid: Uid) -> bool:
        """Whether any connection is bound to ``uid``."""
        return self._call("is_uid_online", {"uid": uid}, bool)  # type: ignore[no-any-return]

    def get_client_id_by_uid(self, uid: Uid) -> list[str]:
        """The connections bound to ``uid``."""
        return self._call("get_client_id_by_uid", {"uid": uid}, list)  # type: ignore[no-any-return]

    def get_uid_by_client_id(self, client_id: str) -> str | None:
        """The uid the connection is bound to, or None."""
        return self._call("get_uid_by_client_id", {"client_id": client_id}, _str_or_none)  # type: ignore[no-any-return]

    def get_client_id_list_by_group(self, group: Group) -> list[str]:
        """The connections in ``group``."""
        return self._call("get_client_id_list_by_group", {"group": group}, list)  # type: ignore[no-any-return]

    def get_client_count_by_group(self, group: Group) -> int:
        """How many connections are in ``group``."""
        return self._call("get_client_count_by_group", {"group": group}, int)  # type: ignore[no-any-return]

    def get_client_sessions_by_group(self, group: Group) -> dict[str, dict[str, Any]]:
        """``{client_id: session}`` for every connection in ``group``."""
        return self._call("get_client_sessions_by_group", {"group": group}, dict)  # type: ignore[no-any-return]

    def get_uid_list_by_group(self, group: Group) -> list[str]:
        """The distinct uids bound to connections in ``group``."""
        return self._call("get_uid_list_by_group", {"group": group}, list)  # type: ignore[no-any-return]

    def get_uid_count_by_group(self, group: Group) -> int:
        """How many distinct uids are in ``group``."""
        return self._call("get_uid_count_by_group", {"group": group}, int)  # type: ignore[no-any-return]

    def get_all_client_id_list(self) -> list[str]:
        """Every live connection in the cluster."""
        return self._call("get_all_client_id_list", {}, list)  # type: ignore[no-any-return]

    def get_all_client_count(self) -> int:
        """How many live connections the cluster has."""
        return self._call("get_all_client_count", {}, int)  # type: ignore[no-any-return]

    def get_all_uid_list(self) -> list[str]:
        """Every uid bound to a live connection."""
        return self._call("get_all_uid_list", {}, list)  # type: ignore[no-any-return]

    def get_all_uid_count(self) -> int:
        """How many uids are bound to live connections."""
        return self._call("get_all_uid_count", {}, int)  # type: ignore[no-any-return]

    def get_all_group_id_list(self) -> list[str]:
        """Every group that has at least one member."""
        return self._call("get_all_group_id_list", {}, list)  # type: ignore[no-any-return]


class BatchResult:
    """The result of one call made on a :class:`Batch`, filled in when the batch is sent."""

    __slots__ = ("_value", "_done", "_convert")

    def __init__(self, convert: Callable[[Any], Any] | None) -> None:
        self._convert = convert
        self._done = False
        self._value: Any = None

    def _set(self, value: Any) -> None:
        self._value = value if self._convert is None else self._convert(value)
        self._done = True

    @property
    def value(self) -> Any:
        """The call's result; reading it before the batch was sent is an error."""
        if not self._done:
            raise PushError("the batch has not been sent yet")
        return self._value

    def __repr__(self) -> str:
        return f"<BatchResult {self._value!r}>" if self._done else "<BatchResult pending>"


class Batch(_Operations):
    """Calls queued and sent as one request when the ``with`` block ends.

    Each method returns a :class:`BatchResult` whose ``.value`` is filled in
    when the batch is sent. The server checks every operation before it applies
    any, so a malformed one refuses the whole batch and changes nothing. If an
    operation fails while being applied (for example Redis went away), the
    others still run and the first failure is raised when the block ends.
    """

    def __init__(self, client: PushClient) -> None:
        self._client = client
        self._operations: list[dict[str, Any]] = []
        self._results: list[BatchResult] = []

    def _call(self, op: str, args: dict[str, Any], convert: Callable[[Any], Any] | None = None) -> BatchResult:
        self._operations.append({"op": op, "args": args})
        result = BatchResult(convert)
        self._results.append(result)
        return result

    def __len__(self) -> int:
        return len(self._operations)

    def send(self) -> list[Any]:
        """Send the queued calls now; return their results in order."""
        operations, results = self._operations, self._results
        self._operations, self._results = [], []
        if not operations:
            return []
        answer = self._client._request(push_protocol.BATCH_PATH, {"operations": operations})
        first_error: PushRequestError | None = None
        for result, outcome in zip(results, answer["results"]):
            if "error" in outcome:
                error = outcome["error"]
                if first_error is None:
                    first_error = _refusal(int(outcome.get("status", 500)), error)
            else:
                result._set(outcome.get("result"))
        if first_error is not None:
            raise first_error
        return [result.value for result in results]

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # A block that raised sends nothing: its calls were never all made.
        if exc_type is None:
            self.send()


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

    def _call(self, op: str, args: dict[str, Any], convert: Callable[[Any], Any] | None = None) -> Any:
        result = self._request(_PATHS[op], args)["result"]
        return result if convert is None else convert(result)

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


#: Each operation's path.
_PATHS = {op: push_protocol.operation_path(op) for op in push_protocol.OPERATIONS}

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
