"""PushClient: the Python counterpart of GatewayWorker's GatewayClient (blocking face)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from . import _core
from ._core import BatchBase, Lost, Prepared
from ._exceptions import PushConnectionError, PushError, PushTimeoutError
from ._http import Pool
from ._operations import Node, _Operations

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "Batch",
    "PushClient",
    "default_client",
]

DEFAULT_API_URL = "http://127.0.0.1:7273"
#: Seconds to wait for a connection and then for an answer. Bounded so that a web
#: request that pushes never hangs on a push server that went away.
DEFAULT_TIMEOUT = 5.0
#: How many times a call whose outcome is unknown (connection lost after the
#: request went out, or a time-out) is sent again. Pushes and batches carry an
#: idempotency key, so a server that honours keys applies them once; the other
#: operations are idempotent by themselves.
DEFAULT_RETRIES = 1


def resolve_settings(api_url: str | None, secret: str | None) -> tuple[str, str]:
    """The API's URL and the secret, from the arguments or else PUSH_API_URL / PUSH_SECRET."""
    url = (api_url or os.environ.get("PUSH_API_URL") or DEFAULT_API_URL).rstrip("/")
    secret = secret if secret is not None else os.environ.get("PUSH_SECRET")
    if not secret:
        raise PushError("no secret: pass secret= or set PUSH_SECRET")
    return url, secret


class Batch(BatchBase):
    """PushClient's batch: calls queued and sent as one request when the ``with`` block ends."""

    def __init__(self, client: PushClient, idempotency_key: str | None = None) -> None:
        super().__init__(idempotency_key)
        self._client = client

    def send(self) -> list[Any]:
        """Send the queued calls now; return their results in order."""
        results = self._results
        values = list(self._flush())
        for result in results:
            values[result._index] = result.value
        return values

    def _flush(self) -> list[Any]:
        operations, sent, prepared = self._take(self._client._keys)
        if prepared is None:
            return []
        return self._settle(operations, sent, self._client._send(prepared))

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # A block that raised sends nothing: its calls were never all made.
        if exc_type is None:
            self._flush()


class PushClient(
    _Operations[
        None,
        bool,
        int,
        list[str],
        "str | None",
        "dict[str, Any] | None",
        dict[str, dict[str, Any]],
        list[Node],
    ]
):
    """A client of the push server's internal API.

    ``PushClient()`` reads ``PUSH_API_URL`` and ``PUSH_SECRET`` from the
    environment. Calls keep their connections alive; the client is safe to
    share between threads. ``retries`` (default 1) is how many times a call
    whose outcome is unknown is sent again (see DEFAULT_RETRIES).
    """

    def __init__(
        self,
        api_url: str | None = None,
        secret: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.api_url, self._secret = resolve_settings(api_url, secret)
        self.timeout = timeout
        self.retries = retries
        #: Whether the server takes idempotency keys (False once it refused one).
        self._keys = True
        url = urlsplit(self.api_url)
        self._path_prefix = url.path or ""
        # A plain-HTTP API without a caller's session takes the short path
        # (push_client._http: one write per request, a small answer reader).
        # HTTPS, or a session the caller configured, goes through requests in
        # full so its TLS and adapter settings apply.
        self._pool: Pool | None = None
        self._session: requests.Session | None = session
        if session is None and url.scheme == "http":
            self._pool = Pool(url.hostname or "127.0.0.1", url.port or 80, self.api_url)
            # The fixed part of every request's head on the short path.
            self._host_line = f"Host: {url.netloc}\r\nContent-Type: application/json\r\n"
        elif session is None:
            self._session = session = requests.Session()
            # The internal API is reached directly, never through a proxy, and
            # needs no .netrc: without this, requests scans the whole
            # environment for proxy settings on every call (~0.6 ms here).
            session.trust_env = False

    def __repr__(self) -> str:
        # Never show the secret.
        return f"<PushClient {self.api_url}>"

    def close(self) -> None:
        """Close the kept-alive connections; calls made afterwards raise PushConnectionError."""
        if self._pool is not None:
            self._pool.close()
        if self._session is not None:
            self._session.close()

    def __enter__(self) -> PushClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def batch(self, idempotency_key: str | None = None) -> Batch:
        """A context manager whose calls go to the server as one request (with ``idempotency_key``, or one made)."""
        return Batch(self, idempotency_key)

    def _op(self, op: str, values: tuple[Any, ...], convert: Callable[[Any], Any] | None = None) -> Any:
        prepared = _core.prepare_call(op, values, convert)
        return _core.read_result(prepared, self._send(prepared))

    def _do(self, op: str, values: tuple[Any, ...]) -> None:
        self._op(op, values)

    def _push(self, op: str, values: tuple[Any, ...], idempotency_key: str | None) -> None:
        auto = idempotency_key is None and self._keys
        key = _core.new_key() if auto else idempotency_key
        self._send(_core.prepare_call(op, (*values, key), None, auto))

    def _send(self, prepared: Prepared) -> dict[str, Any]:
        """Send one prepared request, and again while the core's Call says so; its answer."""
        call = _core.Call(self, prepared)
        while call.answer is None:
            try:
                call.answered(*self._exchange(call.prepared))
            except Lost as lost:
                call.lost(lost)
        return call.answer

    def _exchange(self, prepared: Prepared) -> tuple[int, bytes]:
        body = prepared.body
        # The signature covers the API's own path; a prefix in api_url (a proxy
        # that strips it before the server) is part of the URL only.
        headers = _core.sign(self._secret, prepared.path, body)
        if self._pool is not None:
            head = (
                f"POST {self._path_prefix}{prepared.path} HTTP/1.1\r\n{self._host_line}Content-Length: {len(body)}\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                + "\r\n"
            )
            return self._pool.exchange(head.encode() + body, self.timeout)
        assert self._session is not None
        headers["Content-Type"] = "application/json"
        try:
            full = self._session.post(self.api_url + prepared.path, data=body, headers=headers, timeout=self.timeout)
        except requests.ConnectTimeout as exc:
            raise PushTimeoutError(f"cannot reach the push server at {self.api_url} within {self.timeout}s") from exc
        except requests.Timeout as exc:
            raise Lost(
                PushTimeoutError(f"push server at {self.api_url} did not answer within {self.timeout}s")
            ) from exc
        except requests.ConnectionError as exc:
            # requests does not say whether the request went out: count it as unknown.
            raise Lost(PushConnectionError(f"cannot reach the push server at {self.api_url}: {exc}")) from exc
        except requests.RequestException as exc:
            raise PushConnectionError(f"cannot reach the push server at {self.api_url}: {exc}") from exc
        return full.status_code, full.content


_default: PushClient | None = None
_default_lock = threading.Lock()


def default_client() -> PushClient:
    """A PushClient configured from the environment, made on first use and then shared."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PushClient()
        return _default
