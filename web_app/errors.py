"""Bad requests answered the same way everywhere: JSON ``{"error": "..."}`` with a 4xx.

Views raise :class:`ApiError` (or let Flask raise its HTTP errors); the handlers
registered here turn every error into JSON for AJAX callers and API endpoints,
and leave Flask's HTML error pages for a browser navigating to a page.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, TypeVar

from flask import Flask, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

__all__ = ["ApiError", "json_api", "wants_json", "json_errors", "request_data", "init_errors"]

F = TypeVar("F", bound=Callable[..., Any])


class ApiError(Exception):
    """A refused request: its status and the reason shown to the caller."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
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


def json_errors() -> bool:
    """Whether this request's errors are answered as JSON rather than an HTML page."""
    view = current_app.view_functions.get(request.endpoint or "")
    return request.method != "GET" or wants_json() or getattr(view, "_json_api", False)


def request_data() -> dict[str, Any]:
    """The request's fields: its JSON object, or its form."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data
    return request.form.to_dict()


def init_errors(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> ResponseReturnValue:
        if not json_errors():
            return render_template("error.html", status=error.status, message=error.message), error.status
        return jsonify(error=error.message, **error.extra), error.status

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> ResponseReturnValue:
        return jsonify(error=f"CSRF check failed: {error.description}"), 400

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> ResponseReturnValue:
        if not json_errors():
            return error
        from .images import human_size  # errors is imported by images

        # Say the limit (the request limit is the larger upload limit plus framing).
        limit = max(int(current_app.config["MAX_IMAGE_BYTES"]), int(current_app.config["MAX_AVATAR_BYTES"]))
        messages = {413: f"the upload is too large: files may be at most {human_size(limit)}"}
        return jsonify(error=messages.get(error.code or 0, error.description or error.name)), error.code or 500
