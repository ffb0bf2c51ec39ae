"""push_client: call the push server's internal API from any Python app.

    from push_client import PushClient, PushError
    push = PushClient("http://127.0.0.1:7273", secret="...")   # or PushClient() from env
    push.send_to_group("room:1", {"type": "hello"})

    from push_client import AsyncPushClient                    # pip install 'webchat[async]'
    async with AsyncPushClient("http://127.0.0.1:7273", secret="...") as push:
        await push.send_to_group("room:1", {"type": "hello"})

Needs only ``requests``; AsyncPushClient needs aiohttp (the ``async`` extra),
imported only when AsyncPushClient is first named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from push_protocol import make_token

from ._client import DEFAULT_API_URL, DEFAULT_RETRIES, DEFAULT_TIMEOUT, Batch, PushClient, default_client
from ._core import BatchResult
from ._exceptions import (
    PushAuthError,
    PushConnectionError,
    PushError,
    PushRequestError,
    PushTimeoutError,
    PushUnavailableError,
)
from ._operations import Node

if TYPE_CHECKING:
    from ._async import AsyncBatch, AsyncPushClient

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "AsyncBatch",
    "AsyncPushClient",
    "Batch",
    "BatchResult",
    "Node",
    "PushAuthError",
    "PushClient",
    "PushConnectionError",
    "PushError",
    "PushRequestError",
    "PushTimeoutError",
    "PushUnavailableError",
    "default_client",
    "make_token",
]


def __getattr__(name: str) -> Any:
    # The async face is loaded on first use, so `import push_client` never needs aiohttp.
    if name in ("AsyncPushClient", "AsyncBatch"):
        from . import _async

        return getattr(_async, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
