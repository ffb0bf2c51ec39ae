"""push_protocol.verify_request: a received request's signature, checked from its headers and body."""

from __future__ import annotations

import time
from typing import Any

import pytest
from multidict import CIMultiDict
from werkzeug.datastructures import Headers

import push_protocol

SECRET = "s3cret"
PATH = "/push/events"
BODY = b'{"events": []}'


def signed() -> dict[str, str]:
    """Headers for BODY, POSTed to PATH, as push_protocol.sign_request makes them."""
    return push_protocol.sign_request(SECRET, "POST", PATH, BODY)


def verify(
    headers: push_protocol.ReceivedHeaders,
    body: bytes = BODY,
    *,
    secret: str = SECRET,
    method: str = "POST",
    path: str = PATH,
    now: float | None = None,
) -> str | None:
    return push_protocol.verify_request(secret, method, path, headers, body, now)


def test_a_signed_request_verifies() -> None:
    """What sign_request made verifies, in any case of the header names a server hands over."""
    headers = signed()
    assert verify(headers) is None
    assert verify(CIMultiDict({name.lower(): value for name, value in headers.items()})) is None  # aiohttp
    assert verify(Headers({name.upper(): value for name, value in headers.items()})) is None  # werkzeug
    assert verify(headers, method="post") is None


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY + b" "},
        {"path": PATH + "/other"},
        {"method": "PUT"},
        {"secret": SECRET + "x"},
    ],
    ids=["body", "path", "method", "secret"],
)
def test_a_changed_request_is_a_bad_signature(change: dict[str, Any]) -> None:
    """Any change to the body, path, method or secret after signing is refused as a bad signature."""
    assert verify(signed(), **change) == "bad signature"


def test_a_wrong_signature_is_refused() -> None:
    """A signature of the right length that is not the request's MAC is refused."""
    headers = signed()
    headers[push_protocol.HEADER_SIGNATURE] = "0" * 64
    assert verify(headers) == "bad signature"


@pytest.mark.parametrize(
    "name", [push_protocol.HEADER_TIMESTAMP, push_protocol.HEADER_NONCE, push_protocol.HEADER_SIGNATURE]
)
def test_a_missing_header_is_refused(name: str) -> None:
    """Without any one of the three headers (or with it empty) the request is refused as missing them."""
    headers = signed()
    del headers[name]
    assert verify(headers) == "missing signature headers"
    assert verify({**signed(), name: ""}) == "missing signature headers"


def test_a_stale_or_future_timestamp_is_refused() -> None:
    """A good signature is accepted up to SIGNATURE_WINDOW seconds either side of now, not past it."""
    headers = signed()
    sent_at = int(headers[push_protocol.HEADER_TIMESTAMP])
    window = push_protocol.SIGNATURE_WINDOW
    assert verify(headers, now=sent_at + window) is None
    assert verify(headers, now=sent_at - window) is None
    assert verify(headers, now=sent_at + window + 1) == "timestamp outside the allowed window"
    assert verify(headers, now=sent_at - window - 1) == "timestamp outside the allowed window"


def test_without_now_the_clock_decides() -> None:
    """Without ``now`` a request signed just now passes and one signed over the window ago does not."""
    headers = signed()
    assert verify(headers) is None
    headers[push_protocol.HEADER_TIMESTAMP] = str(int(time.time()) - push_protocol.SIGNATURE_WINDOW - 5)
    # Stale is refused before the (now wrong) signature is even looked at.
    assert verify(headers) == "timestamp outside the allowed window"
