"""The WebSocket opening handshake (RFC 6455 §4), server side, with no I/O.

Only what a WebSocket upgrade needs is parsed: the request line and headers.
Extensions are never negotiated, so permessage-deflate stays off (in aiohttp it
costs ~115 KB per connection; a push server's frames are small and many).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

#: Largest request head accepted; browsers send well under 2 KB.
MAX_HEAD_BYTES = 8192

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(Exception):
    """The upgrade request is refused with an HTTP ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A parsed upgrade request: path, query parameters and lower-cased headers."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    key: str


#: Characters of an HTTP token (RFC 9110 §5.6.2): what a header name may hold.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Control characters, never allowed in a request target or a header value (tab is, in values).
_CONTROL = frozenset(map(chr, [*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F]))


def parse_upgrade(head: bytes) -> UpgradeRequest:
    """Parse and check a request head (everything before the blank line).

    Raises :class:`HandshakeError` and nothing else, whatever the bytes: 400 for
    a malformed request line, target or header, a missing ``Host``, ``Connection``
    or key; 405 for a method other than GET; 505 for a version other than
    HTTP/1.1; 426 for a request that is not a WebSocket upgrade (version 13).
    Its reason never quotes the request (the target may carry a token).
    """
    # latin-1 maps every byte to a character: decoding cannot fail.
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if method != "GET":
        raise HandshakeError(HTTPStatus.METHOD_NOT_ALLOWED, "only GET upgrades to a WebSocket")
    if version != "HTTP/1.1":
        raise HandshakeError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/1.1 required")
    if not target.startswith("/") or not _CONTROL.isdisjoint(target):
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "malformed request target")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        value = value.strip(" \t")
        if not sep or not name or not _TOKEN_CHARS.issuperset(name) or not _CONTROL.isdisjoint(value):
            raise HandshakeError(HTTPStatus.BAD_REQUEST, "malformed header")
        name = name.lower()
        # Repeated headers are joined as RFC 9110 §5.3 allows for list-valued ones.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "host" not in headers:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "Host header required")
    try:
        # urlsplit refuses some targets (e.g. "//[": an unclosed IPv6 host).
        url = urlsplit(target)
        query = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
    except ValueError:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "malformed request target") from None
    if "websocket" not in _tokens(headers.get("upgrade", "")):
        raise HandshakeError(HTTPStatus.UPGRADE_REQUIRED, "this endpoint only speaks WebSocket")
    if "upgrade" not in _tokens(headers.get("connection", "")):
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "Connection: Upgrade required")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError(HTTPStatus.UPGRADE_REQUIRED, "Sec-WebSocket-Version 13 required")
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise HandshakeError(HTTPStatus.BAD_REQUEST, "invalid Sec-WebSocket-Key") from None
    return UpgradeRequest(url.path, query, headers, key)


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def accept_response(key: str) -> bytes:
    """The 101 answer that completes the handshake."""
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()


def reject_response(status: int, reason: str, headers: Mapping[str, str] | None = None) -> bytes:
    """A plain-text HTTP error that refuses the upgrade and closes the connection."""
    phrase = HTTPStatus(status).phrase
    body = (reason + "\n").encode()
    extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" if status == HTTPStatus.UPGRADE_REQUIRED else ""
    extra += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    ).encode() + body
