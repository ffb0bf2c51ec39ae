"""Recognising uploaded images by their bytes, never by their name or declared type."""

from __future__ import annotations

__all__ = ["EXTENSIONS", "sniff_image_type"]

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
