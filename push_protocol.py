"""What push_server and push_client share: API paths, operations, signing, tokens.

Standard library only, so that push_client (and any app that imports it) never
needs aiohttp. Both sides import the same tables, so an operation's name and its
parameters are spelled once.

Wire format of the internal API (see docs/openapi.yaml for the full document):

- ``POST /api/v1/<operation>`` with a JSON object of the operation's arguments;
  the answer is ``{"result": ...}``.
- ``POST /api/v1/batch`` with ``{"operations": [...]}``, each operation compact,
  ``[name, arg, ...]`` with the arguments in the order of ``OPERATIONS`` (what
  push_client sends), or named, ``{"op": name, "args": {...}}``; the answer is
  ``{"results": [value, ...], "errors": [{"index": i, "status": 503, "error": {...}}, ...]}``
  (``errors`` lists the operations that failed while being applied).
- Errors are ``{"error": {"code": ..., "message": ...}}`` with a 4xx/5xx status.
- A message travels as ``{"text": str}``, ``{"binary": base64}`` or ``{"json": value}``
  so that a ``str`` arrives as a text frame, ``bytes`` as a binary frame and
  anything else JSON-encoded as text, exactly as the caller meant it.

Every request carries three headers (see :func:`sign_request`): a Unix timestamp,
a random nonce and an HMAC-SHA256 signature over the method, path, timestamp,
nonce and the SHA-256 of the body. The secret itself never travels.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, Final, Protocol

__all__ = [
    "API_PREFIX",
    "BATCH_PATH",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "OPERATIONS",
    "SIGNATURE_WINDOW",
    "ErrorCode",
    "check_signature_headers",
    "encode_message",
    "make_token",
    "operation_path",
    "sign_request",
    "verify_request",
    "verify_signature",
    "verify_token",
]

API_PREFIX: Final = "/api/v1"
BATCH_PATH: Final = API_PREFIX + "/batch"

HEADER_TIMESTAMP: Final = "X-Push-Timestamp"
HEADER_NONCE: Final = "X-Push-Nonce"
HEADER_SIGNATURE: Final = "X-Push-Signature"

#: How far a request's timestamp may stray from the server's clock, in seconds.
#: Nonces are remembered for twice this long, so a replay is refused for as long
#: as its timestamp would still be accepted.
SIGNATURE_WINDOW: Final = 300

# Parameter kinds, checked by the server (push_server/api.py) and named in the
# OpenAPI document:
#   client_id   a client id string
#   uid, group  str or int, normalised to str
#   uids/groups one or a list of uid/group, normalised to a list of str
#   client_ids  a list of client ids (optional where marked with "?")
#   message     a wrapped message (see the module docstring)
#   session     a JSON object
#   idempotency_key  a string of 1-200 characters: applied once within
#               PUSH_IDEMPOTENCY_WINDOW seconds cluster-wide (a repeat gets the same success)
#
# Each operation maps to its parameters in order; a trailing "?" marks an
# optional one. The order is the order of PushClient's positional arguments, and
# of the arguments in a compact batch operation (``[name, arg, ...]``).
OPERATIONS: Final[Mapping[str, tuple[str, ...]]] = {
    # pushes
    "send_to_all": ("message", "client_ids?", "exclude_client_ids?", "idempotency_key?"),
    "send_to_client": ("client_id", "message", "idempotency_key?"),
    "send_to_uid": ("uids", "message", "idempotency_key?"),
    "send_to_group": ("groups", "message", "exclude_client_ids?", "idempotency_key?"),
    "close_client": ("client_id", "message?", "idempotency_key?"),
    # uid binding
    "bind_uid": ("client_id", "uid"),
    "unbind_uid": ("client_id", "uid"),
    # groups
    "join_group": ("client_id", "group"),
    "leave_group": ("client_id", "group"),
    "ungroup": ("group",),
    # sessions
    "set_session": ("client_id", "session"),
    "update_session": ("client_id", "session"),
    "get_session": ("client_id",),
    # presence
    "is_online": ("client_id",),
    "is_uid_online": ("uid",),
    "get_client_id_by_uid": ("uid",),
    "get_uid_by_client_id": ("client_id",),
    "get_client_id_list_by_group": ("group",),
    "get_client_count_by_group": ("group",),
    "get_client_sessions_by_group": ("group",),
    "get_uid_list_by_group": ("group",),
    "get_uid_count_by_group": ("group",),
    "get_all_client_id_list": (),
    "get_all_client_count": (),
    "get_all_uid_list": (),
    "get_all_uid_count": (),
    "get_all_group_id_list": (),
    "get_nodes": (),
}


class ErrorCode:
    """The ``code`` of an API error; the HTTP status says which family it is in."""

    UNAUTHORIZED: Final = "unauthorized"  # 401: signature missing, wrong, stale or replayed
    BAD_REQUEST: Final = "bad_request"  # 400: body is not the JSON the operation needs
    INVALID_ARGUMENT: Final = "invalid_argument"  # 400: one argument is wrong (named)
    UNKNOWN_OPERATION: Final = "unknown_operation"  # 404: no such operation
    TOO_LARGE: Final = "too_large"  # 413: message, body or batch over its limit
    UNAVAILABLE: Final = "unavailable"  # 503: shared state (Redis) is out of reach
    INTERNAL: Final = "internal"  # 500: a bug; the server logs it and stays up


def operation_path(operation: str) -> str:
    """The URL path of one operation."""
    return f"{API_PREFIX}/{operation}"


def _string_to_sign(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, timestamp, nonce, body_hash)).encode()


def sign_request(secret: str, method: str, path: str, body: bytes) -> dict[str, str]:
    """Headers that authenticate one request: timestamp, nonce and signature."""
    timestamp = str(int(time.time()))
    nonce = secrets.token_urlsafe(16)
    mac = hmac.new(secret.encode(), _string_to_sign(method, path, timestamp, nonce, body), hashlib.sha256)
    return {HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce, HEADER_SIGNATURE: mac.hexdigest()}


def check_signature_headers(timestamp: str, nonce: str, signature: str, now: float | None = None) -> str | None:
    """What can be refused before the body is read: missing, malformed or stale headers (or None)."""
    if not (timestamp and nonce and signature):
        return "missing signature headers"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "malformed timestamp"
    if now is None:
        now = time.time()
    if abs(now - sent_at) > SIGNATURE_WINDOW:
        return "timestamp outside the allowed window"
    if len(nonce) > 128:
        return "malformed nonce"
    if len(signature) != 64:
        return "bad signature"
    return None


def verify_signature(
    secret: str,
    method: str,
    path: str,
    body_hash: str,
    timestamp: str,
    nonce: str,
    signature: str,
    now: float | None = None,
) -> str | None:
    """Check one request's signature; return why it is refused, or None if it is good.

    ``body_hash`` is the hex SHA-256 of the body, so a server can hash a body as
    it streams in. The nonce is not checked against replays here: that needs
    memory, which the server keeps (see ``push_server.api.auth``).
    """
    problem = check_signature_headers(timestamp, nonce, signature, now)
    if problem is not None:
        return problem
    message = "\n".join((method.upper(), path, timestamp, nonce, body_hash)).encode()
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    # compare_digest keeps the comparison's time independent of where they differ.
    if not hmac.compare_digest(expected, signature):
        return "bad signature"
    return None


class ReceivedHeaders(Protocol):
    """Received HTTP headers: aiohttp's, werkzeug's, or a dict keyed exactly as :func:`sign_request` spells them."""

    def get(self, key: str, default: str, /) -> str: ...


def verify_request(
    secret: str, method: str, path: str, headers: ReceivedHeaders, body: bytes, now: float | None = None
) -> str | None:
    """Check a received request's signature; return why it is refused, or None if it is good.

    What a receiver of signed requests calls with the request as it arrived:
    the three signature headers are read from ``headers`` (a missing one is
    refused as missing) and the body is hashed here. ``path`` is the URL's path
    without the query string, as it was signed. Like :func:`verify_signature`,
    which it calls, it remembers no nonces, so a replay passes: a receiver
    that must refuse replays keeps them itself (see ``push_server.api.auth``).
    """
    return verify_signature(
        secret,
        method,
        path,
        hashlib.sha256(body).hexdigest(),
        headers.get(HEADER_TIMESTAMP, ""),
        headers.get(HEADER_NONCE, ""),
        headers.get(HEADER_SIGNATURE, ""),
        now,
    )


def encode_message(message: Any) -> dict[str, Any]:
    """Wrap a message for the wire so its frame type survives the JSON body."""
    if isinstance(message, str):
        return {"text": message}
    if isinstance(message, (bytes, bytearray, memoryview)):
        return {"binary": base64.b64encode(bytes(message)).decode("ascii")}
    return {"json": message}


# Handshake tokens: base64url(JSON {"uid": ..., "exp": ...}) "." base64url(HMAC).
# The MAC is taken over a domain-separated string so that no API signature can be
# replayed as a token or the other way round.
_TOKEN_DOMAIN = b"webchat-ws-token\n"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: str, uid: str | int, ttl: float = 60.0) -> str:
    """A short-lived token that lets a browser connect as ``uid`` (``/ws?token=...``)."""
    payload = _b64(json.dumps({"uid": str(uid), "exp": int(time.time() + ttl)}, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), _TOKEN_DOMAIN + payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify_token(secret: str, token: str, now: float | None = None, max_ttl: float | None = None) -> str | None:
    """The uid a token was made for, or None if it is forged, malformed or expired.

    With ``max_ttl``, a token whose expiry lies more than ``max_ttl`` seconds
    ahead is refused too: a token leaked from a page must not stay good for years.
    """
    if len(token) > 2048 or token.count(".") != 1:
        return None
    payload, mac_text = token.split(".")
    expected = hmac.new(secret.encode(), _TOKEN_DOMAIN + payload.encode(), hashlib.sha256).digest()
    try:
        mac = _unb64(mac_text)
        if not hmac.compare_digest(expected, mac):
            return None
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict):
        return None
    uid, expires = claims.get("uid"), claims.get("exp")
    if not isinstance(uid, str) or not uid or not isinstance(expires, int):
        return None
    now = time.time() if now is None else now
    if now >= expires or (max_ttl is not None and expires > now + max_ttl):
        return None
    return uid
