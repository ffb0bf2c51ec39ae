"""The exceptions push_client raises.

Every error is a :class:`PushError`, so one ``except PushError`` covers them all::

    PushError
    ├── PushConnectionError      the server could not be reached or did not answer in time
    │   └── PushTimeoutError     it did not answer within the client's timeout
    ├── PushAuthError            the server refused the signature (401: wrong secret, clock skew)
    └── PushRequestError         the server refused the request (4xx/5xx) and said why
        └── PushUnavailableError the server cannot reach its shared state (Redis) right now: 503

PushAuthError and PushRequestError both carry the server's answer as
``.status``, ``.code`` and ``.message``.

None of them shadows a builtin (``ConnectionError``, ``TimeoutError``).
"""

from __future__ import annotations

__all__ = [
    "PushAuthError",
    "PushConnectionError",
    "PushError",
    "PushRequestError",
    "PushTimeoutError",
    "PushUnavailableError",
]


class PushError(Exception):
    """Base class of every push_client error."""


class PushConnectionError(PushError):
    """The push server could not be reached, or the connection broke."""


class PushTimeoutError(PushConnectionError):
    """The push server did not answer within the client's timeout."""


class _ServerRefusal(PushError):
    """An answer from the server that refuses the request, with its reason."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class PushRequestError(_ServerRefusal):
    """The push server refused a request and said why."""


class PushAuthError(_ServerRefusal):
    """The push server refused the request's signature (401)."""


class PushUnavailableError(PushRequestError):
    """The push server cannot reach its shared state (Redis); retry later (503)."""
