"""AsyncPushClient: every PushClient method as a coroutine, for asyncio apps (FastAPI, aiohttp, Quart).

The same arguments, results and exceptions as PushClient: requests are built,
signed and read by the same core (push_client._core); only the transport
differs, aiohttp's client (``pip install 'webchat[async]'``). aiohttp is
imported when this module is, never by ``import push_client``::

    from push_client import AsyncPushClient
    async with AsyncPushClient("http://127.0.0.1:7273", secret="...") as push:
        await push.send_to_group("room:1", {"type": "hello"})
        async with push.batch() as batch:
            online = batch.is_online(client_id)
        online.value
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from . import _core
from ._client import DEFAULT_RETRIES, DEFAULT_TIMEOUT, resolve_settings
from ._core import BatchBase, Lost, Prepared
from ._exceptions import PushConnectionError, PushTimeoutError
from ._operations import Node, _Operations

__all__ = ["AsyncBatch", "AsyncPushClient"]

_C = Coroutine[Any, Any, Any]


class AsyncBatch(BatchBase):
    """AsyncPushClient's batch: calls queued (without ``await``) and sent as one request when ``async with`` ends."""

    def __init__(self, client: AsyncPushClient, idempotency_key: str | None = None) -> None:
        super().__init__(idempotency_key)
        self._client = client

    async def send(self) -> list[Any]:
        """Send the queued calls now; return their results in order."""
        results = self._results
        values = list(await self._flush())
        for result in results:
            values[result._index] = result.value
        return values

    async def _flush(self) -> list[Any]:
        operations, sent, prepared = self._take(self._client._keys)
        if prepared is None:
            return []
        return self._settle(operations, sent, await self._client._send(prepared))

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        # A block that raised sends nothing: its calls were never all made.
        if exc_type is None:
            await self._flush()


class AsyncPushClient(
    _Operations[
        Coroutine[Any, Any, None],
        Coroutine[Any, Any, bool],
        Coroutine[Any, Any, int],
        Coroutine[Any, Any, list[str]],
        Coroutine[Any, Any, "str | None"],
        Coroutine[Any, Any, "dict[str, Any] | None"],
        Coroutine[Any, Any, dict[str, dict[str, Any]]],
        Coroutine[Any, Any, list[Node]],
    ]
):
    """A client of the push server's internal API for asyncio; see PushClient for the arguments.

    Its aiohttp session is made on the first call (inside the running loop) and
    closed by ``await push.close()`` or the end of ``async with``. ``limit`` is
    how many connections it keeps open to the server at most (calls past it wait).
    """

    def __init__(
        self,
        api_url: str | None = None,
        secret: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        limit: int = 100,
    ) -> None:
        self.api_url, self._secret = resolve_settings(api_url, secret)
        self.timeout = timeout
        self.retries = retries
        self.limit = limit
        self._keys = True
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        # Never show the secret.
        return f"<AsyncPushClient {self.api_url}>"

    async def close(self) -> None:
        """Close the kept-alive connections; calls made afterwards raise PushConnectionError."""
        self._closed = True
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> AsyncPushClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def batch(self, idempotency_key: str | None = None) -> AsyncBatch:
        """An async context manager whose calls go to the server as one request."""
        return AsyncBatch(self, idempotency_key)

    def _op(self, op: str, values: tuple[Any, ...], convert: Callable[[Any], Any] | None = None) -> _C:
        return self._call(_core.prepare_call(op, values, convert))

    def _do(self, op: str, values: tuple[Any, ...]) -> _C:
        return self._call(_core.prepare_call(op, values))

    def _push(self, op: str, values: tuple[Any, ...], idempotency_key: str | None) -> _C:
        auto = idempotency_key is None and self._keys
        key = _core.new_key() if auto else idempotency_key
        return self._call(_core.prepare_call(op, (*values, key), None, auto))

    async def _call(self, prepared: Prepared) -> Any:
        return _core.read_result(prepared, await self._send(prepared))

    async def _send(self, prepared: Prepared) -> dict[str, Any]:
        """Send one prepared request, and again while the core's Call says so; its answer."""
        call = _core.Call(self, prepared)
        while call.answer is None:
            try:
                call.answered(*await self._exchange(call.prepared))
            except Lost as lost:
                call.lost(lost)
        return call.answer

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise PushConnectionError(f"the client of the push server at {self.api_url} is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.limit, limit_per_host=self.limit),
                # Like PushClient's: a bound on connecting and on each read, not on the whole call.
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout),
                # The internal API is reached directly, never through a proxy.
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def _exchange(self, prepared: Prepared) -> tuple[int, bytes]:
        session = self._open()
        headers = _core.sign(self._secret, prepared.path, prepared.body)
        headers["Content-Type"] = "application/json"
        where = self.api_url
        try:
            async with session.post(where + prepared.path, data=prepared.body, headers=headers) as answer:
                return answer.status, await answer.read()
        except aiohttp.ClientConnectorError as exc:
            # Refused or unreachable: the request never went out.
            raise PushConnectionError(f"cannot reach the push server at {where}: {exc}") from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise PushTimeoutError(f"cannot reach the push server at {where} within {self.timeout}s") from exc
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise Lost(PushTimeoutError(f"push server at {where} did not answer within {self.timeout}s")) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise Lost(PushConnectionError(f"connection to the push server at {where} failed: {exc!r}")) from exc
        except aiohttp.ClientResponseError as exc:
            raise PushConnectionError(f"malformed answer from the push server at {where}: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise PushConnectionError(f"connection to the push server at {where} failed: {exc!r}") from exc
