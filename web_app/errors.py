"""Bad requests answered the same way everywhere: JSON ``{"error": "..."}`` with a 4xx.

Views raise :class:`ApiError` (or let Flask raise its HTTP errors); the handlers
registered here turn every error into JSON for AJAX callers and API endpoints,
and into the styled error page for a browser navigating to a page.

:func:`request_data` is the one way views read a request's fields, so the input
checks every endpoint needs live there: no ``NaN``/``Infinity`` or numbers that
overflow to them (``1e400``), no lone surrogates (they cannot be stored as UTF-8
or pushed as valid JSON), no NUL characters (PostgreSQL text cannot hold them).
The query string gets the same text checks before any view runs, path ids are
bounded by the ``int`` converter below, and a value the database still refuses
as out of range is a 400 (:class:`sqlalchemy.exc.DataError`), never a 500.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from flask import Flask, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import IntegerConverter

log = logging.getLogger(__name__)

__all__ = [
    "ID_MAX",
    "ApiError",
    "check_text",
    "init_errors",
    "json_api",
    "json_errors",
    "request_data",
    "wants_json",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The largest id a row can have: the tables' integer keys are 32-bit in
#: PostgreSQL (``SERIAL``), and an id past it can only be a wrong one.
ID_MAX = 2**31 - 1

# A lone surrogate (U+D800..U+DFFF) or NUL anywhere in a string.
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")

#: How deeply a JSON body may nest; the chat's bodies are flat objects.
JSON_DEPTH_MAX = 32


class ApiError(Exception):
    """A refused request: its status and the reason shown to the caller."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


def json_api(view: F) -> F:
    """Mark a GET view whose errors are JSON even for a plain browser request."""
    view._json_api = True  # type: ignore[attr-defined]
    return view


def wants_json() -> bool:
    """Whether the caller asked for JSON (sent JSON, or prefers it over HTML)."""
    if request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def _prefers_html() -> bool:
    """Whether the caller ranks HTML above JSON explicitly, as a browser navigating does."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes["text/html"] > request.accept_mimetypes["application/json"]


def json_errors() -> bool:
    """Whether this request's errors are answered as JSON rather than an HTML page.

    JSON for API views, for callers that send or ask for JSON, and for any other
    request that changes something unless it comes from a browser navigating (a
    form posted without script): that one gets the error page.
    """
    view = current_app.view_functions.get(request.endpoint or "")
    if wants_json() or getattr(view, "_json_api", False):
        return True
    return request.method not in ("GET", "HEAD") and not _prefers_html()


def check_text(value: str, what: str = "text") -> str:
    """``value`` if it holds no NUL and no lone surrogate; else a 400."""
    found = _BAD_TEXT.search(value)
    if found is not None:
        kind = "NUL characters" if found.group() == "\x00" else "unpaired surrogates"
        raise ApiError(400, f"{what} must not contain {kind}")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ApiError(400, f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ApiError(400, f"{name} is not a JSON number")


def _check_json(value: Any, depth: int = 0) -> None:
    """Walk a decoded body: every string (keys too) is checked, and the nesting is bounded."""
    if depth > JSON_DEPTH_MAX:
        raise ApiError(400, "the body nests too deeply")
    if isinstance(value, str):
        check_text(value, "strings")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, "keys")
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def request_data() -> dict[str, Any]:
    """The request's fields: its JSON object, or its form; checked as the module docstring says."""
    if request.is_json:
        try:
            # Python's json accepts NaN and Infinity and turns 1e400 into inf;
            # none of them is JSON, and pushed on they would make invalid JSON.
            data = json.loads(request.get_data(cache=True), parse_float=_finite, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, "the body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        _check_json(data)
        return data
    form = request.form.to_dict()
    for key, item in form.items():
        check_text(key, "field names")
        check_text(item, "fields")
    return form


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` in a URL, refusing (404) ids no row can have."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # ``map``: werkzeug's name
        kwargs.setdefault("max", ID_MAX)
        super().__init__(map, *args, **kwargs)


def _check_query() -> None:
    for key, item in request.args.items(multi=True):
        check_text(key, "query parameters")
        check_text(item, "query parameters")


#: Redis (the session store, with REDIS_URL) not answering: a failover's few
#: seconds, say. Sentinel's MasterNotFoundError is a ConnectionError.
_STORE_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: Seconds a caller is asked to wait before trying again while the store is away.
STORE_RETRY_AFTER = 2


def _store_unavailable(error: Exception) -> ResponseReturnValue:
    """503 with Retry-After: the request could not read or save its session, and can be tried again."""
    log.warning("session store (Redis) unavailable: answered 503: %s", error)
    message = "The chat is briefly unavailable (its session store is not answering). Try again in a moment."
    headers = {"Retry-After": str(STORE_RETRY_AFTER)}
    if not json_errors():
        # Rendered without the context processors: they read the session.
        page = current_app.jinja_env.get_template("unavailable.html")
        return page.render(message=message, retry_after=STORE_RETRY_AFTER), 503, headers
    return jsonify(error=message, code="unavailable"), 503, headers


def _error_page(status: int, message: str, title: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, message=message), status


def init_errors(app: Flask) -> None:
    """Register the error handlers, the query checks and the bounded ``int`` converter.

    Call before registering blueprints: routes take their converters when added.
    """
    app.url_map.converters["int"] = BoundedIntConverter
    app.before_request(_check_query)

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> ResponseReturnValue:
        if not json_errors():
            body, status = _error_page(error.status, error.message, _TITLES.get(error.status, "Something went wrong"))
            return body, status, error.headers
        return jsonify(error=error.message, **error.extra), error.status, error.headers

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> ResponseReturnValue:
        # "code" lets the page tell a stale token (another window logged in) from other 400s.
        return jsonify(error=f"CSRF check failed: {error.description}", code="csrf"), 400

    @app.errorhandler(DataError)
    def _data_error(error: DataError) -> ResponseReturnValue:
        # The database refused a value (a number past a column's range, say):
        # the request's fault, so a 400, and the session must start clean again.
        from .models import get_db

        get_db().rollback()
        log.warning("database refused a value: %s", error.orig)
        if not json_errors():
            return _error_page(400, "That request carries a value that cannot be stored.", "Bad request")
        return jsonify(error="a value in the request is out of range"), 400

    for kind in _STORE_DOWN:
        app.register_error_handler(kind, _store_unavailable)

    @app.errorhandler(InternalServerError)
    def _server_error(error: InternalServerError) -> ResponseReturnValue:
        # A session that cannot be opened (before any view runs) or saved (after
        # it) reaches Flask's 500 handler, not the one for its own type.
        if isinstance(error.original_exception, _STORE_DOWN):
            return _store_unavailable(error.original_exception)
        return _http_error(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ResponseReturnValue:
        status = error.code or 500
        if not json_errors():
            if status < 400:
                return error
            response = error.get_response()
            body, status = _error_page(
                status, _MESSAGES.get(status, error.description or ""), _TITLES.get(status, error.name)
            )
            response.set_data(body)
            response.mimetype = "text/html"
            return response
        from .images import human_size  # errors is imported by images

        # Say the limit (the request limit is the larger upload limit plus framing).
        limit = max(int(current_app.config["MAX_IMAGE_BYTES"]), int(current_app.config["MAX_AVATAR_BYTES"]))
        messages = {413: f"the upload is too large: files may be at most {human_size(limit)}"}
        answer = jsonify(error=messages.get(status, error.description or error.name))
        answer.status_code = status
        # Keep the headers the error brings, such as a 405's Allow.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                answer.headers[name] = value
        return answer


_TITLES = {
    400: "Bad request",
    401: "Please log in",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed here",
    409: "Already taken",
    413: "Too large",
    429: "Slow down",
}

_MESSAGES = {
    404: "There is nothing at this address. The room may have been removed, or the link is mistyped.",
    405: "This address does not take that kind of request.",
}
