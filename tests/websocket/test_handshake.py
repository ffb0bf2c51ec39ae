"""The opening handshake with no socket: parsing, every refusal, the answers (push_server.websocket.handshake)."""

from __future__ import annotations

import pytest

from push_server.websocket import handshake

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GOOD_HEADERS = [
    "Host: chat.example",
    "Upgrade: websocket",
    "Connection: keep-alive, Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
]


def head(request_line: str = "GET /ws?token=abc&x=1&x=2&empty= HTTP/1.1", headers: list[str] | None = None) -> bytes:
    return "\r\n".join([request_line, *(GOOD_HEADERS if headers is None else headers)]).encode("latin-1")


def without(name: str) -> list[str]:
    return [line for line in GOOD_HEADERS if not line.lower().startswith(name.lower() + ":")]


def test_a_browser_upgrade_parses() -> None:
    """Path, first value of each query parameter, lower-cased headers and the key come out."""
    request = handshake.parse_upgrade(head(headers=[*GOOD_HEADERS, "X-Many: a", "x-many:\tb "]))
    assert request.path == "/ws"
    assert request.query == {"token": "abc", "x": "1", "empty": ""}
    assert request.headers["host"] == "chat.example" and request.headers["x-many"] == "a, b"
    assert request.key == KEY


@pytest.mark.parametrize(
    "data, status",
    [
        (head("GET /ws"), 400),
        (head("GET  /ws HTTP/1.1"), 400),
        (b"", 400),
        (head("POST /ws HTTP/1.1"), 405),
        (head("GET /ws HTTP/1.0"), 505),
        (head("GET ws HTTP/1.1"), 400),
        (head("GET /w\x7fs HTTP/1.1"), 400),
        (head("GET //[ HTTP/1.1"), 400),
        (head(headers=[*GOOD_HEADERS, "no colon"]), 400),
        (head(headers=[*GOOD_HEADERS, ": empty name"]), 400),
        (head(headers=[*GOOD_HEADERS, " Folded: x"]), 400),
        (head(headers=[*GOOD_HEADERS, "Bad Name: x"]), 400),
        (head(headers=[*GOOD_HEADERS, "X: a\nb"]), 400),
        (head(headers=without("Host")), 400),
        (head(headers=without("Upgrade")), 426),
        (head(headers=without("Connection")), 400),
        (head(headers=without("Sec-WebSocket-Version")), 426),
        (head(headers=[*without("Sec-WebSocket-Version"), "Sec-WebSocket-Version: 8"]), 426),
        (head(headers=without("Sec-WebSocket-Key")), 400),
        (head(headers=[*without("Sec-WebSocket-Key"), "Sec-WebSocket-Key: not base64!"]), 400),
        (head(headers=[*without("Sec-WebSocket-Key"), "Sec-WebSocket-Key: c2hvcnQ="]), 400),
        (head(headers=[*without("Sec-WebSocket-Key"), "Sec-WebSocket-Key: \xe9\xe9"]), 400),
    ],
    ids=[
        "no-version",
        "double-space",
        "empty",
        "post",
        "http-1.0",
        "relative-target",
        "control-in-target",
        "unclosed-ipv6",
        "no-colon",
        "empty-name",
        "folded",
        "space-in-name",
        "newline-in-value",
        "no-host",
        "no-upgrade",
        "no-connection",
        "no-version-header",
        "version-8",
        "no-key",
        "key-not-base64",
        "key-too-short",
        "key-not-ascii",
    ],
)
def test_every_refusal_has_its_status(data: bytes, status: int) -> None:
    """Each malformed or non-WebSocket request is refused with its HTTP status, and the reason quotes nothing."""
    with pytest.raises(handshake.HandshakeError) as caught:
        handshake.parse_upgrade(data)
    assert caught.value.status == status
    assert "ws" not in caught.value.reason.replace("WebSocket", "")


def test_accept_response_matches_rfc_6455_example() -> None:
    """The accept value for RFC 6455's sample key is the one the RFC gives."""
    answer = handshake.accept_response(KEY)
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n" in answer


def test_reject_response_is_plain_text_that_closes() -> None:
    """A refusal is a complete HTTP answer with a length, Connection: close, and any extra headers."""
    answer = handshake.reject_response(405, "only GET", {"Allow": "GET"})
    head_part, body = answer.split(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 405 Method Not Allowed")
    assert b"\r\nAllow: GET" in head_part and b"\r\nConnection: close" in head_part
    assert b"Content-Length: %d" % len(body) in head_part and body == b"only GET\n"
    upgrade = handshake.reject_response(426, "WebSocket only")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in upgrade
