"""Recognising uploaded images by their bytes, never by their name or declared type."""

from __future__ import annotations

from typing import Any

from flask import Response

from .errors import ApiError

__all__ = ["EXTENSIONS", "human_size", "image_response", "read_image", "sniff_image_type"]

#: The raster formats every browser shows. SVG is deliberately absent: it is a
#: document that can carry scripts, not a picture.
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type the bytes' signature says, if it is one of EXTENSIONS; else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def human_size(size: int) -> str:
    """``5242880`` → ``"5 MiB"``: a limit as a person reads it (error messages state it)."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def read_image(upload: Any, limit: int, what: str = "images") -> tuple[bytes, str]:
    """The bytes and sniffed type of an uploaded file (werkzeug's FileStorage), or the ApiError saying why not.

    Reads at most one byte past ``limit``, so an oversized file is refused
    without holding more of it than that.
    """
    if upload is None:
        raise ApiError(400, "send the image as the multipart field 'file'")
    data = upload.stream.read(limit + 1)
    if not data:
        raise ApiError(400, "the file is empty")
    if len(data) > limit:
        raise ApiError(413, f"{what} may be at most {human_size(limit)}", limit=limit)
    content_type = sniff_image_type(data)
    if content_type is None:
        raise ApiError(415, "only PNG, JPEG, GIF and WebP images are accepted")
    return data, content_type


def image_response(data: bytes, content_type: str, name: str, max_age: int) -> Response:
    """Serve a stored picture as ``<name>.<ext>``, with headers that keep it a picture.

    The type is the one sniffed at upload and limited to raster formats;
    nosniff stops the browser second-guessing it, and the sandbox CSP makes
    sure that even a file opened on its own can run nothing.
    """
    response = Response(data, mimetype=content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = f'inline; filename="{name}.{EXTENSIONS.get(content_type, "bin")}"'
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = f"private, max-age={max_age}"
    return response
