"""The browser-facing WebSocket listener: accept → register → read → unregister.

Each connection is a plain :class:`asyncio.Protocol` with ``__slots__`` and no
task of its own. That is a deliberate choice over aiohttp's
``WebSocketResponse``: measured here, an idle aiohttp WebSocket costs 13.4 KB of
RSS (request, parser, reader, handler task) against 1.75 KB for a bare
protocol, and a push server's cost is dominated by idle connections. The
HTTP/WebSocket parsing itself lives in the I/O-free ``handshake`` and ``frames``
modules; aiohttp still serves the internal API.

A browser never sends anything we act on except pongs: other frames are read
(to honour the protocol and the flood limit) and ignored.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import push_protocol

from . import frames, handshake
from ..backends.base import BackendUnavailable

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..config import Config
    from .connections import Connections

log = logging.getLogger(__name__)

# Connection states.
_HANDSHAKE, _OPENING, _OPEN, _CLOSING, _CLOSED = range(5)


class ListenerContext:
    """What every connection of one listener shares (one reference per connection)."""

    __slots__ = ("config", "backend", "connections", "loop", "allowed_origins")

    def __init__(self, config: Config, backend: Backend, connections: Connections) -> None:
        self.config = config
        self.backend = backend
        self.connections = connections
        self.loop = asyncio.get_running_loop()
        self.allowed_origins = frozenset(config.allowed_origins)


class ClientConnection(asyncio.Protocol):
    """One browser's WebSocket connection."""

    __slots__ = (
        "context",
        "transport",
        "client_id",
        "state",
        "buffer",
        "pending",
        "last_seen",
        "window_start",
        "window_frames",
        "fragments",
    )

    def __init__(self, context: ListenerContext) -> None:
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.client_id: str | None = None
        self.state = _HANDSHAKE
        self.buffer = b""
        #: Frames queued for the end of this tick: None, one ``bytes`` or a list.
        self.pending: bytes | list[bytes] | None = None
        self.last_seen = 0.0
        self.window_start = 0.0
        self.window_frames = 0
        #: Parts of a fragmented message, or None (rare: browsers do not fragment).
        self.fragments: list[bytes] | None = None

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not
        # asyncio.Transport subclasses, though they offer the same methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        context = self.context
        self.last_seen = self.window_start = context.loop.time()
        # The transport buffers what the kernel cannot take yet; past this bound
        # pause_writing() fires and the client is dropped as a slow consumer.
        transport.set_write_buffer_limits(high=context.config.max_pending_bytes)
        context.connections.accepted.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_seen = self.context.loop.time()
        if self.state == _HANDSHAKE:
            self._receive_handshake(data)
        elif self.state != _CLOSED:
            self._receive_frames(data)

    def pause_writing(self) -> None:
        # The client reads slower than we push and its buffer passed the bound:
        # drop it rather than hold memory (or anyone else) for it. Its close
        # frame could not get through a full buffer anyway.
        log.info("dropping slow client %s: %d bytes pending", self.client_id, self.context.config.max_pending_bytes)
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        self.pending = None
        self.buffer = b""
        connections = self.context.connections
        # Only a registered client departs; one still registering departs when
        # its registration ends (see _open), so it never leaves a ghost behind.
        registered = self.client_id is not None and connections.by_id.get(self.client_id) is self
        connections.discard(self)
        self.transport = None
        if registered:
            assert self.client_id is not None
            self._depart(self.client_id)

    # -- handshake --------------------------------------------------------------------

    def _receive_handshake(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self.buffer) > handshake.MAX_HEAD_BYTES:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
            return
        head, rest = self.buffer[:head_end], self.buffer[head_end + 4 :]
        self.buffer = b""
        try:
            request = handshake.parse_upgrade(head)
            uid = self._authorize(request)
        except handshake.HandshakeError as exc:
            self._refuse(exc.status, exc.reason)
            return
        assert self.transport is not None
        self.transport.write(handshake.accept_response(request.key))
        self.state = _OPENING
        self.client_id = self.context.backend.new_client_id()
        # Registration may need Redis, so it runs as a task; frames that arrive
        # meanwhile are parsed as usual (they are only pongs and ignored data).
        self.context.loop.create_task(self._open(uid))
        if rest:
            self._receive_frames(rest)

    def _authorize(self, request: handshake.UpgradeRequest) -> str | None:
        """Check path, origin and token; return the token's uid (or None)."""
        config = self.context.config
        if request.path != config.ws_path:
            raise handshake.HandshakeError(HTTPStatus.NOT_FOUND, "no WebSocket endpoint here")
        origin = request.headers.get("origin")
        # Browsers always send Origin; a missing one is a non-browser client,
        # which no cross-site page can be.
        if origin is not None and self.context.allowed_origins and origin not in self.context.allowed_origins:
            raise handshake.HandshakeError(HTTPStatus.FORBIDDEN, "origin not allowed")
        token = request.query.get("token")
        if token is None:
            return None
        uid = push_protocol.verify_token(config.secret, token)
        if uid is None:
            raise handshake.HandshakeError(HTTPStatus.UNAUTHORIZED, "invalid or expired token")
        return uid

    def _refuse(self, status: int, reason: str) -> None:
        # Never log the request target: it may carry a token.
        log.info("refused WebSocket handshake: %d %s", status, reason)
        self.state = _CLOSING
        assert self.transport is not None
        self.transport.write(handshake.reject_response(status, reason))
        self.transport.close()

    async def _open(self, uid: str | None) -> None:
        context = self.context
        client_id = self.client_id
        assert client_id is not None
        try:
            await context.backend.register(client_id, uid)
        except BackendUnavailable as exc:
            # Expected during a Redis outage, for every arriving browser: one
            # line each, no traceback. The page reconnects later.
            log.warning("refusing a client while shared state is unavailable: %s", exc)
            if self.state != _CLOSED:
                self.close(frames.CLOSE_TRY_AGAIN_LATER, "server busy, try again")
            return
        except Exception:
            log.exception("could not register client; closing it")
            if self.state != _CLOSED:
                self.close(frames.CLOSE_TRY_AGAIN_LATER, "server busy, try again")
            return
        if self.state == _CLOSED:
            # It went away while registering: undo the registration now.
            self._depart(client_id)
            return
        # From here connection_lost() sees a registered client and departs it.
        context.connections.add(self)
        if self.state != _OPENING:
            return
        self.state = _OPEN
        init: dict[str, str] = {"type": "init", "client_id": client_id}
        if uid is not None:
            init["uid"] = uid
        context.connections.queue(self, frames.encode_json(init))

    def _depart(self, client_id: str) -> None:
        context = self.context
        task = context.loop.create_task(self._unregister(client_id))
        context.connections.track_departure(task)

    async def _unregister(self, client_id: str) -> None:
        try:
            await self.context.backend.unregister(client_id)
        except Exception:
            # The backend logs and repairs what it can (a cluster reaps dead
            # clients by lease); a failure here must not kill the listener.
            log.exception("could not unregister client %s", client_id)

    # -- frames ---------------------------------------------------------------------------

    def _receive_frames(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        config = self.context.config
        offset = 0
        try:
            while True:
                parsed = frames.parse_frame(buffer, offset, config.max_frame_bytes)
                if parsed is None:
                    break
                fin, opcode, payload, offset = parsed
                self._count_frame()
                self._handle_frame(fin, opcode, payload)
                if self.state >= _CLOSING:
                    return
        except frames.ProtocolError as exc:
            self.buffer = b""
            self.close(exc.code, exc.reason)
            return
        self.buffer = buffer[offset:]

    def _count_frame(self) -> None:
        now = self.last_seen
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.window_frames = 0
        self.window_frames += 1
        if self.window_frames > self.context.config.max_client_frames_per_second:
            raise frames.ProtocolError(frames.CLOSE_POLICY_VIOLATION, "too many frames")

    def _handle_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == frames.OP_PING:
            self._write_now(frames.encode_frame(frames.OP_PONG, payload))
        elif opcode == frames.OP_CLOSE:
            code, _ = frames.parse_close(payload)
            # Echo the close (RFC 6455 §5.5.1), then the transport closes.
            self.close(code if code is not None and 1000 <= code < 5000 and code not in (1005, 1006) else 1000)
        elif opcode == frames.OP_PONG:
            pass
        elif opcode == frames.OP_CONTINUATION:
            if self.fragments is None:
                raise frames.ProtocolError(frames.CLOSE_PROTOCOL_ERROR, "continuation without a start")
            self.fragments.append(payload)
            if sum(map(len, self.fragments)) > self.context.config.max_frame_bytes:
                raise frames.ProtocolError(frames.CLOSE_MESSAGE_TOO_BIG, "message too big")
            if fin:
                message, self.fragments = b"".join(self.fragments), None
                self._handle_message(message)
        else:
            if self.fragments is not None:
                raise frames.ProtocolError(frames.CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            if not fin:
                self.fragments = [bytes((opcode,)), payload]
            elif opcode == frames.OP_TEXT:
                self._handle_message(bytes((opcode,)) + payload)

    def _handle_message(self, message: bytes) -> None:
        # message[0] is the opcode. Browsers talk to the business app over HTTP,
        # not here, so a message (a {"type":"pong"} or anything else) is only
        # checked as RFC 6455 requires (text must be UTF-8) and then ignored.
        if message[0] == frames.OP_TEXT:
            try:
                text = message[1:].decode("utf-8")
            except UnicodeDecodeError:
                raise frames.ProtocolError(frames.CLOSE_INVALID_DATA, "text is not UTF-8") from None
            events = self.context.backend.events  # forwarded as client_message when configured (docs/events.md)
            if events is not None and self.client_id is not None and self.state == _OPEN:
                events.message(self.client_id, text)

    # -- writing and closing ---------------------------------------------------------------

    def _write_now(self, data: bytes) -> None:
        """Write pending frames, then ``data``, keeping their order."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pending = self.pending
        if pending is not None:
            self.pending = None
            transport.write(pending if isinstance(pending, bytes) else b"".join(pending))
        transport.write(data)

    def close(self, code: int = frames.CLOSE_NORMAL, reason: str = "", frame: bytes | None = None) -> None:
        """Send ``frame`` (if any) and a close frame, then close the connection."""
        if self.state >= _CLOSING or self.transport is None:
            return
        if self.state == _HANDSHAKE:
            self.transport.close()
            self.state = _CLOSING
            return
        self.state = _CLOSING
        self._write_now((frame or b"") + frames.encode_close(code, reason))
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once, without a close handshake."""
        if self.transport is not None:
            self.transport.abort()
