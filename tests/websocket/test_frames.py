"""The frame codec with no socket: encoding, parsing, close codes (push_server.websocket.frames)."""

from __future__ import annotations

import os
import struct

import pytest

from push_server.websocket import frames


def client_frame(
    opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = True, length: int | None = None
) -> bytes:
    """A client frame as a browser sends it (masked), or broken on purpose."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    size = len(payload) if length is None else length
    mask_bit = 0x80 if mask else 0
    if size < 126:
        header = bytes((first, mask_bit | size))
    elif size < 0x10000:
        header = bytes((first, mask_bit | 126)) + struct.pack("!H", size)
    else:
        header = bytes((first, mask_bit | 127)) + struct.pack("!Q", size)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def server_frame_parts(data: bytes) -> tuple[int, int, bytes]:
    """(first byte, length, payload) of an unmasked server frame."""
    length = data[1]
    if length == 126:
        return data[0], struct.unpack("!H", data[2:4])[0], data[4:]
    if length == 127:
        return data[0], struct.unpack("!Q", data[2:10])[0], data[10:]
    return data[0], length, data[2:]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_encode_frame_picks_the_shortest_length_form(size: int) -> None:
    """A server frame has FIN set, no mask, and 7-, 16- or 64-bit length as RFC 6455 §5.2 requires."""
    payload = b"x" * size
    encoded = frames.encode_frame(frames.OP_BINARY, payload)
    first, length, body = server_frame_parts(encoded)
    assert first == 0x82 and length == size and body == payload
    assert encoded[1] & 0x80 == 0
    assert len(encoded) - size == (2 if size < 126 else 4 if size < 65536 else 10)


def test_encode_json() -> None:
    """A JSON frame is a text frame of compact, unescaped UTF-8 JSON."""
    assert frames.encode_json("é") == b"\x81\x04\x22\xc3\xa9\x22"
    assert frames.encode_json({"a": "é", "b": 1}) == frames.encode_frame(frames.OP_TEXT, '{"a":"é","b":1}'.encode())


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_parse_round_trip(size: int) -> None:
    """A masked client frame of any length form parses back to its payload and the next offset."""
    payload = os.urandom(size)
    data = b"junk" + client_frame(frames.OP_BINARY, payload, fin=False)
    assert frames.parse_frame(data, 4, 100_000) == (False, frames.OP_BINARY, payload, len(data))


def test_parse_says_how_much_it_needs() -> None:
    """An incomplete frame yields the bytes needed: 2, then the extended header, then the whole frame."""
    data = client_frame(frames.OP_TEXT, b"x" * 300)
    assert frames.parse_frame(data[:1], 0, 1000) == 2
    assert frames.parse_frame(data[:3], 0, 1000) == 4
    assert frames.parse_frame(data[:10], 0, 1000) == len(data)
    long = client_frame(frames.OP_TEXT, b"x" * 70000)
    assert frames.parse_frame(long[:9], 0, 100_000) == 10
    assert frames.parse_frame(long[:20], 0, 100_000) == len(long)


@pytest.mark.parametrize(
    "data, code",
    [
        (client_frame(frames.OP_TEXT, b"x", rsv=4), 1002),
        (client_frame(0x3, b""), 1002),
        (client_frame(0xB, b""), 1002),
        (client_frame(frames.OP_TEXT, b"x", mask=False), 1002),
        (client_frame(frames.OP_PING, b"x" * 126), 1002),
        (client_frame(frames.OP_PING, b"", fin=False), 1002),
        (client_frame(frames.OP_TEXT, b"x" * 101), 1009),
        (client_frame(frames.OP_BINARY, b"", length=2**63)[:10], 1009),
    ],
    ids=["rsv", "opcode-3", "opcode-b", "unmasked", "long-ping", "fragmented-ping", "too-big", "too-big-64-bit"],
)
def test_parse_errors_carry_their_close_code(data: bytes, code: int) -> None:
    """Each protocol violation raises ProtocolError with the close code RFC 6455 asks for."""
    with pytest.raises(frames.ProtocolError) as caught:
        frames.parse_frame(data, 0, 100)
    assert caught.value.code == code and caught.value.reason


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_close_codes_round_trip(code: int) -> None:
    """A close frame with a code a peer may send parses back to its code and reason."""
    encoded = frames.encode_close(code, "bye é")
    assert frames.parse_close(encoded[2:]) == (code, "bye é")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_invalid_close_codes_are_protocol_errors(code: int) -> None:
    """Reserved, unassigned and out-of-range codes raise 1002."""
    assert not frames.is_valid_close_code(code)
    with pytest.raises(frames.ProtocolError) as caught:
        frames.parse_close(struct.pack("!H", code))
    assert caught.value.code == 1002


def test_close_payload_shapes() -> None:
    """No payload means no code; one byte is a protocol error; a non-UTF-8 reason is 1007."""
    assert frames.parse_close(b"") == (None, "")
    with pytest.raises(frames.ProtocolError) as caught:
        frames.parse_close(b"\x03")
    assert caught.value.code == 1002
    with pytest.raises(frames.ProtocolError) as caught:
        frames.parse_close(struct.pack("!H", 1000) + b"\xed\xa0\x80")
    assert caught.value.code == 1007


def test_close_reason_is_cut_on_a_character_boundary() -> None:
    """A long reason is cut to fit 125 bytes without splitting a character."""
    encoded = frames.encode_close(1000, "é" * 100)
    assert len(encoded) <= 127
    code, reason = frames.parse_close(encoded[2:])
    assert code == 1000 and reason == "é" * 61
