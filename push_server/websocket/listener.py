"""The browser-facing WebSocket listener: accept → register → read → unregister.

Each connection is a plain :class:`asyncio.Protocol` with ``__slots__`` and no
task of its own. That is a deliberate choice over aiohttp's
``WebSocketResponse``: measured here, an idle aiohttp WebSocket costs 13.4 KB of
RSS (request, parser, reader, handler task) against 1.75 KB for a bare
protocol, and a push server's cost is dominated by idle connections. The
HTTP/WebSocket parsing itself lives in the I/O-free ``handshake`` and ``frames``
modules; aiohttp still serves the internal API.

A browser never sends anything we act on except pongs: other frames are read
(to honour the protocol and the flood limit) and ignored. Frame parsing and
reassembly are the I/O-free ``reader.MessageReader``, mixed into the connection
class so that an idle connection costs no extra object; its hooks are where the
listener acts (``compliance/echo_server.py`` overrides ``message_received``).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import push_protocol

from .. import metrics
from ..backends.base import BackendUnavailable
from . import frames, handshake
from .limits import ConnectionLimits
from .reader import MessageReader

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..config import Config
    from .connections import Connections

log = logging.getLogger(__name__)

# Connection states.
_HANDSHAKE, _OPENING, _OPEN, _CLOSING, _CLOSED = range(5)


class ListenerContext:
    """What every connection of one listener shares (one reference per connection)."""

    __slots__ = ("allowed_origins", "backend", "config", "connections", "limits", "loop")

    def __init__(self, config: Config, backend: Backend, connections: Connections) -> None:
        self.config = config
        self.backend = backend
        self.connections = connections
        self.loop = asyncio.get_running_loop()
        self.allowed_origins = frozenset(config.allowed_origins)
        #: The node's and each address's connection limits, and the open-files backstop.
        self.limits = ConnectionLimits(config.max_connections, config.max_connections_per_ip)


class ClientConnection(MessageReader, asyncio.Protocol):
    """One browser's WebSocket connection."""

    __slots__ = (
        "client_id",
        "context",
        "ip",
        "last_seen",
        "pending",
        "state",
        "transport",
        "window_frames",
        "window_start",
    )

    def __init__(self, context: ListenerContext) -> None:
        # The reader's buffer also holds the request head while in _HANDSHAKE:
        # one slot fewer per connection.
        MessageReader.__init__(self)
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.client_id: str | None = None
        self.state = _HANDSHAKE
        #: Frames queued for the end of this tick: None, one ``bytes`` or a list.
        self.pending: bytes | list[bytes] | None = None
        #: When the last bytes arrived; until the handshake completes, when the
        #: connection was accepted (so the handshake timeout is a deadline).
        self.last_seen = 0.0
        self.window_start = 0.0
        self.window_frames = 0
        #: The peer's address as the connection limits counted it (None: not counted).
        self.ip: str | None = None

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not
        # asyncio.Transport subclasses, though they offer the same methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        context = self.context
        self.ip = context.limits.opened(transport.get_extra_info("peername"))
        if self.ip is None:  # far over the node limit, or out of descriptors: not even read
            self.state = _CLOSED
            transport.abort()
            return
        self.last_seen = self.window_start = context.loop.time()
        # The transport buffers what the kernel cannot take yet; past this bound
        # pause_writing() fires and the client is dropped as a slow consumer.
        transport.set_write_buffer_limits(high=context.config.max_pending_bytes)
        context.connections.accepted.add(self)

    def data_received(self, data: bytes) -> None:
        if self.state == _HANDSHAKE:
            self._receive_handshake(data)
        elif self.state < _CLOSING:
            self.last_seen = self.context.loop.time()
            self._receive_frames(data)

    def pause_writing(self) -> None:
        # The client reads slower than we push and its buffer passed the bound:
        # drop it rather than hold memory (or anyone else) for it. Its close
        # frame could not get through a full buffer anyway.
        pending = self.transport.get_write_buffer_size() if self.transport is not None else 0
        log.info("dropping slow client %s: %d bytes pending", self.client_id, pending)
        metrics.client_dropped("slow_consumer")
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        self.pending = None
        self._buffer = b""
        self._message = None
        connections = self.context.connections
        # Only a registered client departs; one still registering departs when
        # its registration ends (see _open), so it never leaves a ghost behind.
        registered = self.client_id is not None and connections.by_id.get(self.client_id) is self
        connections.discard(self)
        if self.ip is not None:
            self.context.limits.closed(self.ip, self.client_id is not None)
        self.transport = None
        if registered:
            assert self.client_id is not None
            self._depart(self.client_id)

    # -- handshake --------------------------------------------------------------------

    def _receive_handshake(self, data: bytes) -> None:
        buffer = self._buffer
        # Search only the new bytes (and the 3 before them, for a split "\r\n\r\n").
        start = max(0, len(buffer) - 3)
        if buffer:
            assert isinstance(buffer, bytearray)
            buffer += data
        else:
            buffer = data
        head_end = buffer.find(b"\r\n\r\n", start)
        # The cap holds however the head arrives: in pieces or in one write.
        if (head_end < 0 and len(buffer) > handshake.MAX_HEAD_BYTES) or head_end > handshake.MAX_HEAD_BYTES:
            self._buffer = b""
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
            return
        if head_end < 0:
            self._buffer = buffer if isinstance(buffer, bytearray) else bytearray(buffer)
            return
        self._buffer = b""
        head, rest = bytes(buffer[:head_end]), bytes(buffer[head_end + 4 :])
        try:
            request = handshake.parse_upgrade(head)
            uid = self._authorize(request)
        except handshake.HandshakeError as exc:
            self._refuse(exc.status, exc.reason)
            return
        if (refusal := self.context.limits.admit(self.ip or "")) is not None:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, refusal, quiet=True)  # the limits log, once a second
            return
        assert self.transport is not None
        self.transport.write(handshake.accept_response(request.key))
        metrics.HANDSHAKES_ACCEPTED.inc()
        # From here last_seen is the heartbeat's: the time bytes last arrived.
        self.last_seen = self.window_start = self.context.loop.time()
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
        uid = push_protocol.verify_token(config.secret, token, max_ttl=config.token_max_ttl)
        if uid is None:
            raise handshake.HandshakeError(HTTPStatus.UNAUTHORIZED, "invalid or expired token")
        return uid

    def _refuse(self, status: int, reason: str, quiet: bool = False) -> None:
        # Never log the request target: it may carry a token.
        if not quiet:
            log.info("refused WebSocket handshake: %d %s", status, reason)
        metrics.handshake_refused(status)
        self.state = _CLOSING
        assert self.transport is not None
        extra = {"Allow": "GET"} if status == HTTPStatus.METHOD_NOT_ALLOWED else None
        self.transport.write(handshake.reject_response(status, reason, extra))
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
        self.greet(client_id, uid)

    def greet(self, client_id: str, uid: str | None) -> None:
        """Send ``init``, the first frame every page gets (SPEC §2)."""
        init: dict[str, str] = {"type": "init", "client_id": client_id}
        if uid is not None:
            init["uid"] = uid
        self.context.connections.queue(self, frames.encode_json(init))

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
        config = self.context.config
        try:
            self.feed(data, config.max_frame_bytes, config.max_message_fragments)
        except frames.ProtocolError as exc:
            metrics.client_dropped("flood" if exc.code == frames.CLOSE_POLICY_VIOLATION else "protocol_error")
            self._buffer = b""
            self._message = None
            self.close(exc.code, exc.reason)

    def frame_received(self) -> None:
        # The flood limit: frames per one-second window, whatever they carry.
        now = self.last_seen
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.window_frames = 0
        self.window_frames += 1
        if self.window_frames > self.context.config.max_client_frames_per_second:
            raise frames.ProtocolError(frames.CLOSE_POLICY_VIOLATION, "too many frames")

    def ping_received(self, payload: bytes) -> None:
        self._write_now(frames.encode_frame(frames.OP_PONG, payload))

    def close_received(self, code: int | None, reason: str) -> None:
        # Echo the (valid) code, or 1000 for a close without one (RFC 6455
        # §5.5.1); then the transport closes: the handshake is complete, and the
        # server closes the TCP connection first (§7.1.1). An invalid close never
        # gets here: the reader raised 1002 or 1007 for it.
        self.close(frames.CLOSE_NORMAL if code is None else code, echo=True)

    def message_received(self, opcode: int, payload: bytes) -> None:
        # Browsers talk to the business app over HTTP, not here: a message (a
        # {"type":"pong"} or anything else) has been checked as RFC 6455 requires
        # (the reader checked text is UTF-8) and is otherwise ignored, unless the
        # node forwards text as client_message events (docs/events.md).
        events = self.context.backend.events
        if events is not None and opcode == frames.OP_TEXT and self.client_id is not None and self.state == _OPEN:
            events.message(self.client_id, payload.decode("utf-8"))

    # pong_received keeps the reader's default: any frame already counted as a sign of life.

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

    def close(
        self, code: int = frames.CLOSE_NORMAL, reason: str = "", frame: bytes | None = None, echo: bool = False
    ) -> None:
        """Send ``frame`` (if any) and a close frame, then close the connection.

        ``echo`` answers the client's own close: the TCP connection closes at
        once. A close we start only shuts our side (FIN after the close frame)
        and waits, up to ``PUSH_CLOSE_TIMEOUT``, for the client to close its
        side, discarding what it still sends. Closing at once would throw away
        unread bytes the client is still sending (a 1 MiB frame refused with
        1009), and the kernel answers those with a reset that can destroy our
        close frame in the client's buffer before it reads the code.
        """
        transport = self.transport
        if self.state >= _CLOSING or transport is None:
            return
        if self.state == _HANDSHAKE:
            transport.close()
            self.state = _CLOSING
            return
        self.state = _CLOSING
        self._write_now((frame or b"") + frames.encode_close(code, reason))
        if echo or transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.context.loop.call_later(self.context.config.close_timeout, self.abort)

    def abort(self) -> None:
        """Drop the connection at once, without a close handshake."""
        if self.transport is not None:
            self.transport.abort()
