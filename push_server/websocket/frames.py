"""WebSocket frames (RFC 6455 §5), server side, with no I/O.

The push path encodes a message once with :func:`encode_frame` and writes the
same bytes to every recipient: server frames are never masked, so one frame is
valid on every connection. Client frames are parsed by :func:`parse_frame`,
which works on a buffer and an offset so the caller can keep partial frames
without copying, and which says how many bytes it needs when a frame is not
whole yet (so a frame trickled in small reads is parsed once, not once per read).

Every error a client can cause is a :class:`ProtocolError` carrying the close
code to answer with:

- 1002 (protocol error): reserved bits, unknown opcode, unmasked frame,
  malformed control frame, a close payload of one byte, an invalid close code;
- 1007 (invalid data): text or a close reason that is not UTF-8;
- 1008 (policy violation): a flood, or too many fragments (see ``reader``);
- 1009 (message too big): a frame or reassembled message over the limit.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

_DATA_OPCODES = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY))
_CONTROL_OPCODES = frozenset((OP_CLOSE, OP_PING, OP_PONG))

# Close codes (RFC 6455 §7.4.1).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_INVALID_DATA: Final = 1007
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_TRY_AGAIN_LATER: Final = 1013

#: Close codes a peer may send (RFC 6455 §7.4 and the IANA registry: 1012-1014
#: were registered after the RFC); 3000-4999 belong to libraries and apps.
#: 1004, 1005, 1006 and 1015 are reserved and never sent; the rest of 1000-2999
#: is unassigned.
_VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015)))


def is_valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close frame."""
    return code in _VALID_CLOSE_CODES or 3000 <= code < 5000


_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


class ProtocolError(Exception):
    """The peer broke the protocol; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One unfragmented, unmasked frame: what the server sends."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 0x10000:
        return _pack_short(0x80 | opcode, 126, length) + payload
    return _pack_long(0x80 | opcode, 127, length) + payload


def encode_json(value: Any) -> bytes:
    """A text frame holding ``value`` as compact JSON."""
    return encode_frame(OP_TEXT, json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def encode_close(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125-byte control-frame limit.

    The cut never splits a character, so the reason stays valid UTF-8.
    """
    encoded = reason.encode()
    if len(encoded) > 123:
        encoded = encoded[:123].decode("utf-8", "ignore").encode()
    return encode_frame(OP_CLOSE, struct.pack("!H", code) + encoded)


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """The code and reason of a close frame's payload (None: no code was sent).

    Raises :class:`ProtocolError`: 1002 for a one-byte payload or a code a
    peer may not send, 1007 for a reason that is not UTF-8.
    """
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "close payload of one byte")
    # The reason first, then the code: websockets' order, so that the
    # differential test compares like with like when both are wrong.
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError(CLOSE_INVALID_DATA, "close reason is not UTF-8") from None
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "invalid close code")
    return code, reason


def _unmask(payload: bytes | bytearray, mask: bytes) -> bytes:
    # XOR as one big integer: far faster in pure Python than a byte loop, and
    # client frames (pongs, small messages) are small.
    length = len(payload)
    if not length:
        return b""
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(length, "little")


def parse_frame(buffer: bytes | bytearray, offset: int, max_size: int) -> tuple[bool, int, bytes, int] | int:
    """Parse one client frame at ``offset``: ``(fin, opcode, payload, next_offset)``.

    When the buffer does not hold the whole frame yet, returns how many bytes
    (counted from ``offset``) it must hold before parsing can go further: the
    whole frame once its header is known, else the rest of the header.

    Raises :class:`ProtocolError` for an unmasked frame, reserved bits, an
    unknown opcode, a malformed control frame, or a payload over ``max_size``
    (checked from its header, before the payload arrives). The reader passes
    the room left in a fragmented message, so a control frame between
    fragments counts against it too, as in websockets; outside a message the
    room is the whole limit, never under 125, so control frames always fit.
    """
    available = len(buffer) - offset
    if available < 2:
        return 2
    first, second = buffer[offset], buffer[offset + 1]
    fin = bool(first & 0x80)
    if first & 0x70:
        # No extension is negotiated (permessage-deflate is off), so RSV bits must be 0.
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
    opcode = first & 0x0F
    if opcode not in _DATA_OPCODES and opcode not in _CONTROL_OPCODES:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "unknown opcode")
    if not second & 0x80:
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
    length = second & 0x7F
    position = offset + 2
    if opcode in _CONTROL_OPCODES and (length > 125 or not fin):
        raise ProtocolError(CLOSE_PROTOCOL_ERROR, "malformed control frame")
    if length == 126:
        if available < 4:
            return 4
        length = struct.unpack_from("!H", buffer, position)[0]
        position += 2
    elif length == 127:
        if available < 10:
            return 10
        length = struct.unpack_from("!Q", buffer, position)[0]
        position += 8
    if length > max_size:
        raise ProtocolError(CLOSE_MESSAGE_TOO_BIG, "frame too big")
    end = position + 4 + length
    if len(buffer) < end:
        return end - offset
    mask = bytes(buffer[position : position + 4])
    return fin, opcode, _unmask(buffer[position + 4 : end], mask), end
