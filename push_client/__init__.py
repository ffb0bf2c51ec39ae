"""push_client: call the push server's internal API from any Python app.

    from push_client import PushClient, PushError
    push = PushClient("http://127.0.0.1:7273", secret="...")   # or PushClient() from env
    push.send_to_group("room:1", {"type": "hello"})

Needs only ``requests``.
"""

from push_protocol import make_token

from ._client import DEFAULT_API_URL, DEFAULT_TIMEOUT, Batch, BatchResult, PushClient, default_client
from ._exceptions import (
    PushAuthError,
    PushConnectionError,
    PushError,
    PushRequestError,
    PushTimeoutError,
    PushUnavailableError,
)

__all__ = [
    "PushClient",
    "Batch",
    "BatchResult",
    "default_client",
    "make_token",
    "DEFAULT_API_URL",
    "DEFAULT_TIMEOUT",
    "PushError",
    "PushConnectionError",
    "PushTimeoutError",
    "PushAuthError",
    "PushRequestError",
    "PushUnavailableError",
]
