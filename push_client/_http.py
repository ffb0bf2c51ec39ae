"""PushClient's HTTP/1.1 transport for a plain-HTTP push server: a small pool of sockets and an answer reader.

Standard library only (``socket``), public APIs only. Why not urllib3's
``HTTPConnectionPool.urlopen``, http.client or h11: measured against a running
push server in one process, one call costs the client ~2.5x the CPU of this
path (http.client parses headers with the email package and sends head and
body in two writes; h11 validates every header with regular expressions),
and the API is called on every chat message. What is done here, and why it
is enough:

- The request is written whole in one ``sendall`` (head and body together, so
  the server sees one segment and wakes once).
- The answer is read with a small parser that covers what an HTTP/1.1 server
  may send to such a request: a status line, header fields, then a body framed
  by ``Content-Length``, by ``Transfer-Encoding: chunked`` or by the connection
  closing; interim 1xx answers are skipped. Anything else is malformed: the
  connection is dropped and the call fails with PushConnectionError.
- A connection is kept only when the answer says it may be (HTTP/1.1 without
  ``Connection: close``) and ended exactly where its framing said; an idle one
  that became readable (the server closed it, or sent bytes nobody asked for)
  is dropped before it is reused.
- Time-outs apply to every socket operation (connecting, sending, each read),
  as ``requests``' ``timeout`` does, and raise PushTimeoutError.
- A connection lost after the request went out, and a time-out after it was
  sent, are reported as :class:`~push_client._core.Lost`: the outcome is
  unknown, and the client decides whether to send the call again.
"""

from __future__ import annotations

import socket
import threading

from ._core import Lost
from ._exceptions import PushConnectionError, PushTimeoutError

__all__ = ["Pool"]

#: Longest answer head (status line and header fields) accepted.
MAX_HEAD = 64 * 1024
_READ_SIZE = 64 * 1024
_PEEK = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


class _Closed(Exception):
    """The connection ended before the first byte of the answer."""


class _Malformed(Exception):
    """The answer is not HTTP/1.x as this client reads it."""


class Pool:
    """Kept-alive connections to one server, safe to share between threads (each call uses one alone)."""

    def __init__(self, host: str, port: int, where: str, maxsize: int = 10) -> None:
        self._address = (host, port)
        self._where = where  # names the server in error messages
        self._maxsize = maxsize
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def idle_connections(self) -> int:
        """How many connections wait in the pool."""
        return len(self._idle)

    def close(self) -> None:
        """Close the idle connections; later calls raise PushConnectionError."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def _take(self, timeout: float) -> socket.socket:
        with self._lock:
            if self._closed:
                raise PushConnectionError(f"the client of the push server at {self._where} is closed")
            while self._idle:
                sock = self._idle.pop()
                if _idle_and_open(sock):
                    sock.settimeout(timeout)
                    return sock
                sock.close()
        try:
            sock = socket.create_connection(self._address, timeout=timeout)
        except TimeoutError as exc:
            raise PushTimeoutError(f"cannot reach the push server at {self._where} within {timeout}s") from exc
        except OSError as exc:
            raise PushConnectionError(f"cannot reach the push server at {self._where}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _give(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._maxsize:
                self._idle.append(sock)
                return
        sock.close()

    def exchange(self, request: bytes, timeout: float) -> tuple[int, bytes]:
        """Send ``request`` (a whole HTTP/1.1 request) on a pooled connection; return (status, body)."""
        sock = self._take(timeout)
        where = self._where
        keep = False
        try:
            sent = True
            try:
                sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                # The server may have answered before reading it all (a body
                # over its hard limit) and closed: its answer may be waiting.
                sent = False
            try:
                first = sock.recv(_READ_SIZE)
            except (ConnectionResetError, ConnectionAbortedError):
                first = b""
            if not first:
                raise _Closed()
            status, body, keep = _read_answer(sock, first)
            keep = keep and sent
            return status, body
        except _Closed as exc:
            raise Lost(
                PushConnectionError(f"the push server at {where} closed the connection without answering")
            ) from exc
        except _Malformed as exc:
            raise PushConnectionError(f"malformed answer from the push server at {where}: {exc}") from exc
        except TimeoutError as exc:
            raise Lost(PushTimeoutError(f"push server at {where} did not answer within {timeout}s")) from exc
        except OSError as exc:
            raise Lost(PushConnectionError(f"connection to the push server at {where} failed: {exc}")) from exc
        finally:
            if keep:
                self._give(sock)
            else:
                sock.close()


def _idle_and_open(sock: socket.socket) -> bool:
    """Whether an idle connection can take a request: nothing to read on it, not even its end."""
    try:
        sock.setblocking(False)
        try:
            sock.recv(1, _PEEK)
        finally:
            sock.setblocking(True)
    except BlockingIOError:
        return True
    except OSError:
        return False
    # Its end (b"") or bytes nobody asked for: either way, not for the next request.
    return False


def _read_answer(sock: socket.socket, buffer: bytes) -> tuple[int, bytes, bool]:
    """Read one answer that starts with ``buffer``: (status, body, whether the connection may be kept)."""
    rest = b""
    while True:
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(buffer) > MAX_HEAD:
                raise _Malformed("answer head too long")
            more = sock.recv(_READ_SIZE)
            if not more:
                raise _Malformed("connection closed in the middle of the answer head")
            buffer += more
            end = buffer.find(b"\r\n\r\n", max(0, len(buffer) - len(more) - 3))
        if end > MAX_HEAD:
            raise _Malformed("answer head too long")
        lines = buffer[:end].split(b"\r\n")
        rest = buffer[end + 4 :]
        version, _, after = lines[0].partition(b" ")
        status_text = after[:3]
        if (
            version not in (b"HTTP/1.1", b"HTTP/1.0")
            or len(status_text) != 3
            or not status_text.isdigit()
            or after[3:4] not in (b"", b" ")
        ):
            raise _Malformed(f"bad status line {lines[0][:80]!r}")
        status = int(status_text)
        if 100 <= status < 200 and status != 101:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            buffer = rest if rest else _recv_some(sock)
            continue
        break
    length: int | None = None
    chunked = False
    to_the_end = False  # a transfer coding other than chunked: the body ends with the connection
    tokens: set[bytes] = set()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise _Malformed(f"bad header line {line[:80]!r}")
        name = name.strip().lower()
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or (length is not None and length != int(value)):
                raise _Malformed("bad Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            codings = [coding.strip() for coding in value.lower().split(b",")]
            # Only "chunked" last frames the body; any other coding is read to the end.
            chunked = codings[-1] == b"chunked"
            to_the_end = not chunked
        elif name == b"connection":
            tokens.update(token.strip() for token in value.lower().split(b","))
    # HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when told to.
    close = b"close" in tokens or (version == b"HTTP/1.0" and b"keep-alive" not in tokens)
    if status in (101, 204, 304):
        # No body; a 101 (an upgrade we never asked for) leaves the connection unusable.
        return status, b"", not close and status != 101 and not rest
    if chunked:
        body, rest = _read_chunked(sock, rest)
    elif length is not None and not to_the_end:
        body, rest = _read_exactly(sock, rest, length)
    else:
        body, rest = _read_to_end(sock, rest), b""
        close = True
    # Bytes past the end of the answer mean the server and this client
    # disagree about where it ended: never reuse such a connection.
    return status, body, not close and not rest


def _recv_some(sock: socket.socket) -> bytes:
    data = sock.recv(_READ_SIZE)
    if not data:
        raise _Malformed("connection closed in the middle of the answer")
    return data


def _read_exactly(sock: socket.socket, buffer: bytes, length: int) -> tuple[bytes, bytes]:
    """``length`` bytes (starting with ``buffer``) and what came after them."""
    if len(buffer) >= length:
        return buffer[:length], buffer[length:]
    parts = [buffer]
    have = len(buffer)
    while have < length:
        data = _recv_some(sock)
        parts.append(data)
        have += len(data)
    joined = b"".join(parts)
    return joined[:length], joined[length:]


def _read_line(sock: socket.socket, buffer: bytes) -> tuple[bytes, bytes]:
    end = buffer.find(b"\r\n")
    while end < 0:
        if len(buffer) > MAX_HEAD:
            raise _Malformed("chunk line too long")
        buffer += _recv_some(sock)
        end = buffer.find(b"\r\n")
    return buffer[:end], buffer[end + 2 :]


def _read_chunked(sock: socket.socket, buffer: bytes) -> tuple[bytes, bytes]:
    """A chunked body (starting with ``buffer``) and what came after it."""
    parts: list[bytes] = []
    while True:
        line, buffer = _read_line(sock, buffer)
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
            raise _Malformed(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            # Trailer fields, if any, up to an empty line.
            while True:
                line, buffer = _read_line(sock, buffer)
                if not line:
                    return b"".join(parts), buffer
        chunk, buffer = _read_exactly(sock, buffer, size + 2)
        if chunk[-2:] != b"\r\n":
            raise _Malformed("chunk not followed by CRLF")
        parts.append(chunk[:-2])


def _read_to_end(sock: socket.socket, buffer: bytes) -> bytes:
    parts = [buffer]
    while True:
        data = sock.recv(_READ_SIZE)
        if not data:
            return b"".join(parts)
        parts.append(data)
