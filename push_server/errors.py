"""The push server's errors, in one place: what the API answers and what a backend raises.

Nothing here imports the rest of the server, so every module can raise and
catch them without an import cycle.
"""

from __future__ import annotations

from typing import Any

from push_protocol import ErrorCode


class BackendUnavailable(Exception):
    """The shared state (Redis) cannot be reached; the operation was not applied."""


class ApiError(Exception):
    """An error answer: HTTP ``status`` with ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    def within(self, where: str) -> ApiError:
        """The same error, located inside a batch (an unknown op there is a 400, not a 404)."""
        if self.code == ErrorCode.UNKNOWN_OPERATION:
            return ApiError(400, self.code, f"{where}.op: {self.message}")
        return ApiError(self.status, self.code, f"{where}.{self.message}")


def invalid(field: str, problem: str) -> ApiError:
    """400 invalid_argument naming ``field``."""
    return ApiError(400, ErrorCode.INVALID_ARGUMENT, f"{field}: {problem}")


def too_large(field: str, problem: str) -> ApiError:
    """413 too_large naming ``field``."""
    return ApiError(413, ErrorCode.TOO_LARGE, f"{field}: {problem}")


def bad_request(problem: str) -> ApiError:
    """400 bad_request: the body as a whole is not what the operation needs."""
    return ApiError(400, ErrorCode.BAD_REQUEST, problem)


def unavailable(exc: BackendUnavailable) -> ApiError:
    """503: the shared state is out of reach."""
    return ApiError(503, ErrorCode.UNAVAILABLE, f"shared state unavailable: {exc}")
