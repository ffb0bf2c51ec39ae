"""Client bytes → frames → messages (RFC 6455 §5.4, §8.1), server side, with no I/O.

:class:`MessageReader` is mixed into the listener's connection class: it keeps
the bytes of a frame that has not fully arrived, reassembles fragmented
messages and checks them, then calls the connection's hooks
(:meth:`~MessageReader.message_received` and friends). Tests drive it with
bytes alone, no socket.

What it holds is bounded, whatever a client sends:

- a partial frame (at most a 14-byte header plus ``max_size`` of payload), kept
  in a ``bytearray`` that later reads append to; it is parsed again only once
  it holds the byte count the last parse asked for, so a frame trickled one
  byte per read costs linear time, not a re-join of the buffer on every read;
- a fragmented message: its bytes so far in one ``bytearray`` (at most
  ``max_size`` in all: each continuation is checked against the room left, from
  its header), a frame count (at most ``max_fragments``, empty frames included,
  so a message cannot be kept open by empty continuations for ever) and, for
  text, an incremental UTF-8 decoder, so invalid text closes the connection at
  the fragment that holds it, not when the message ends.

Idle connections hold none of this: ``_buffer`` is the shared ``b""`` and
``_message`` None (browsers never fragment; each slot is 8 bytes).
"""

from __future__ import annotations

import codecs
from typing import Final

from . import frames

#: ``_need`` after a close frame: nothing more is parsed.
_DONE: Final = -1


class _Message:
    """A fragmented message being reassembled."""

    __slots__ = ("data", "decoder", "frames", "opcode")

    def __init__(self, opcode: int, decoder: codecs.IncrementalDecoder | None) -> None:
        self.opcode = opcode
        self.data = bytearray()
        self.frames = 0
        self.decoder = decoder


_new_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class MessageReader:
    """Parse client frames fed in arbitrary pieces; hooks receive what they carry.

    A hook or the parser may raise :class:`frames.ProtocolError`; it propagates
    out of :meth:`feed`, and the caller closes with its code and feeds no more.
    """

    __slots__ = ("_buffer", "_message", "_need")

    def __init__(self) -> None:
        #: The start of a frame not whole yet (a bytearray), or ``b""``.
        self._buffer: bytes | bytearray = b""
        #: How many bytes ``_buffer`` must hold before parsing it again.
        self._need = 0
        self._message: _Message | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a partial frame and a partial message."""
        message = self._message
        return len(self._buffer) + (len(message.data) if message is not None else 0)

    def feed(self, data: bytes, max_size: int, max_fragments: int) -> None:
        """Parse ``data`` (the next bytes from the client) and call the hooks.

        ``max_size`` bounds a frame and a reassembled message; ``max_fragments``
        the frames of one fragmented message.
        """
        if self._need == _DONE:
            return
        buffer = self._buffer
        if buffer:
            assert isinstance(buffer, bytearray)
            buffer += data
            if len(buffer) < self._need:
                return
            chunk: bytes | bytearray = buffer
            self._buffer = b""
        else:
            chunk = data
        offset = 0
        end = len(chunk)
        while offset < end:
            message = self._message
            room = max_size - len(message.data) if message is not None else max_size
            parsed = frames.parse_frame(chunk, offset, room)
            if isinstance(parsed, int):
                # Keep the partial frame; copied once here, appended to later.
                self._buffer = bytearray(memoryview(chunk)[offset:])
                self._need = parsed
                return
            fin, opcode, payload, offset = parsed
            self.frame_received()
            if opcode >= frames.OP_CLOSE:
                if opcode == frames.OP_CLOSE:
                    code, reason = frames.parse_close(payload)
                    self._need = _DONE
                    self._message = None
                    self.close_received(code, reason)
                    return
                if opcode == frames.OP_PING:
                    self.ping_received(payload)
                else:
                    self.pong_received(payload)
            else:
                self._data_frame(fin, opcode, payload, max_fragments)

    def _data_frame(self, fin: bool, opcode: int, payload: bytes, max_fragments: int) -> None:
        message = self._message
        if opcode == frames.OP_CONTINUATION:
            if message is None:
                raise frames.ProtocolError(frames.CLOSE_PROTOCOL_ERROR, "continuation without a start")
            message.frames += 1
            if message.frames > max_fragments:
                raise frames.ProtocolError(frames.CLOSE_POLICY_VIOLATION, "too many fragments")
        else:
            if message is not None:
                raise frames.ProtocolError(frames.CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            if fin:
                if opcode == frames.OP_TEXT:
                    _check_utf8(payload)
                self.message_received(opcode, payload)
                return
            message = self._message = _Message(opcode, _new_utf8_decoder() if opcode == frames.OP_TEXT else None)
            message.frames = 1
            if max_fragments < 2:
                raise frames.ProtocolError(frames.CLOSE_POLICY_VIOLATION, "too many fragments")
        if message.decoder is not None:
            try:
                message.decoder.decode(payload, fin)
            except UnicodeDecodeError:
                raise frames.ProtocolError(frames.CLOSE_INVALID_DATA, "text is not UTF-8") from None
        message.data += payload
        if fin:
            self._message = None
            self.message_received(message.opcode, bytes(message.data))

    # -- hooks: the listener overrides what it acts on ---------------------------------

    def frame_received(self) -> None:
        """A whole frame arrived (before it is handled); raise ProtocolError to refuse it."""

    def message_received(self, opcode: int, payload: bytes) -> None:
        """A whole text (valid UTF-8) or binary message arrived."""

    def ping_received(self, payload: bytes) -> None:
        """A ping arrived; RFC 6455 wants a pong with the same payload."""

    def pong_received(self, payload: bytes) -> None:
        """A pong arrived."""

    def close_received(self, code: int | None, reason: str) -> None:
        """A valid close frame arrived (code None: it had no payload); nothing after it is parsed."""


def _check_utf8(payload: bytes) -> None:
    try:
        payload.decode()
    except UnicodeDecodeError:
        raise frames.ProtocolError(frames.CLOSE_INVALID_DATA, "text is not UTF-8") from None
