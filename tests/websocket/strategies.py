"""Hypothesis strategies for client frame streams, shared by the fuzz and differential tests."""

from __future__ import annotations

import itertools
import struct

from hypothesis import strategies as st

from .test_frames import client_frame

#: Close codes worth trying: valid ones, reserved ones, out of range.
CLOSE_CODES = [
    1000,
    1001,
    1002,
    1003,
    1007,
    1011,
    1014,
    3000,
    4999,
    0,
    999,
    1004,
    1005,
    1006,
    1015,
    1016,
    2999,
    5000,
    65535,
]


@st.composite
def frame(draw: st.DrawFn) -> bytes:
    """One client frame: mostly valid data and control frames, sometimes broken."""
    kind = draw(st.sampled_from(["text", "binary", "cont", "ping", "pong", "close", "broken"]))
    fin = draw(st.booleans())
    if kind in ("text", "cont") and draw(st.booleans()):
        payload = draw(st.text(max_size=40)).encode()
        if payload and draw(st.integers(0, 9)) == 0:
            payload = payload[: draw(st.integers(0, len(payload)))]  # maybe cut inside a character
    else:
        payload = draw(st.binary(max_size=300 if kind in ("text", "binary", "cont") else 30))
    if kind == "text":
        return client_frame(0x1, payload, fin)
    if kind == "binary":
        return client_frame(0x2, payload, fin)
    if kind == "cont":
        return client_frame(0x0, payload, fin)
    if kind in ("ping", "pong"):
        return client_frame(0x9 if kind == "ping" else 0xA, payload)
    if kind == "close":
        shape = draw(st.sampled_from(["empty", "one", "code"]))
        if shape == "empty":
            return client_frame(0x8, b"")
        if shape == "one":
            return client_frame(0x8, b"\x03")
        reason = draw(st.one_of(st.text(max_size=20).map(str.encode), st.binary(max_size=20)))
        return client_frame(0x8, struct.pack("!H", draw(st.sampled_from(CLOSE_CODES))) + reason[:123])
    broken = draw(st.sampled_from(["rsv", "opcode", "unmasked", "long-control", "fragmented-control"]))
    if broken == "rsv":
        return client_frame(0x1, payload, rsv=draw(st.integers(1, 7)))
    if broken == "opcode":
        return client_frame(draw(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])), payload)
    if broken == "unmasked":
        return client_frame(0x2, payload, mask=False)
    if broken == "long-control":
        return client_frame(0x9, b"x" * draw(st.integers(126, 200)))
    return client_frame(0x9, b"", fin=False)


#: A stream of client frames, weighted towards valid ones so streams get long.
streams = st.lists(frame(), max_size=12).map(b"".join)


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at arbitrary points."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]
