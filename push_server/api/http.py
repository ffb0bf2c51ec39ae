"""What the API's HTTP layer adds around the handlers: JSON for every refusal, a safe access log.

- :func:`keep_serving` turns a bug into a logged 500 (the server stays up), a
  client that went away mid-request into a quiet DEBUG line (not an ERROR with
  a traceback), and aiohttp's own refusals (413 over the body limit, 404, 405)
  into the documented JSON error body.
- :class:`AccessLogger` writes method, path (never the query string) and
  status, with the path escaped: a ``%0a`` decoded into the path can never
  start a forged log line.
- :func:`json_error_pages` answers the refusals aiohttp makes before any
  handler runs (malformed request line, headers over the limit) as JSON too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from push_protocol import ErrorCode

from ..errors import ApiError
from .handlers import error_answer

log = logging.getLogger("push_server.api")

_CODES = {400: ErrorCode.BAD_REQUEST, 404: ErrorCode.UNKNOWN_OPERATION, 413: ErrorCode.TOO_LARGE}


def _from_http(exc: web.HTTPException) -> web.Response:
    code = _CODES.get(exc.status, ErrorCode.BAD_REQUEST)
    response = error_answer(ApiError(exc.status, code, exc.reason))
    for name in ("Allow",):
        if name in exc.headers:
            response.headers[name] = exc.headers[name]
    return response


@web.middleware
async def keep_serving(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every answer JSON, every bug a logged 500, and the server stays up."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _from_http(exc)
    except (ConnectionResetError, EOFError) as exc:
        # The client went away before its body arrived whole: nothing to answer.
        log.debug("client left mid-request (%s)", type(exc).__name__)
        return error_answer(ApiError(400, ErrorCode.BAD_REQUEST, "request body incomplete"))
    except Exception:
        log.exception("internal error in %s %s", request.method, escape(request.path))
        return error_answer(ApiError(500, ErrorCode.INTERNAL, "internal error (logged)"))


def escape(text: str) -> str:
    """``text`` with control characters (CR, LF, ...) and backslashes escaped, for one log line."""
    if text.isprintable() and "\\" not in text:
        return text
    return text.encode("unicode_escape").decode("ascii")


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string, control characters escaped), status and time: nothing secret."""

    @property
    def enabled(self) -> bool:
        # Asked once per connection: when INFO is off (the default), aiohttp
        # skips the timing and the call per request altogether.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1fms", request.remote, request.method, escape(request.path), response.status, time * 1000
        )
