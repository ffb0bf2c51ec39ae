"""Hypothesis fuzz of the I/O-free core: split-anywhere equivalence, bounded memory, only documented errors."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from push_server.websocket import frames, handshake

from .reader_events import Recorder
from .strategies import split, streams

#: The close codes a client can cause (frames module docstring); nothing else may escape.
DOCUMENTED = {1002, 1007, 1008, 1009}
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.data(), streams, st.integers(0, 400), st.integers(1, 6))
def test_any_split_gives_the_same_result(data: st.DataObject, stream: bytes, max_size: int, max_fragments: int) -> None:
    """However the bytes are cut into reads, the same events and the same error come out."""
    whole = Recorder().feed_all([stream], max_size, max_fragments)
    pieces = Recorder().feed_all(data.draw(split(stream)), max_size, max_fragments)
    assert (pieces.events, pieces.error) == (whole.events, whole.error)
    assert whole.error is None or whole.error in DOCUMENTED


@FUZZ
@given(st.data(), streams, st.integers(0, 400))
def test_never_holds_more_than_the_limit(data: st.DataObject, stream: bytes, max_size: int) -> None:
    """Between reads the reader holds at most one frame header plus max_size bytes."""
    reader = Recorder()
    for piece in data.draw(split(stream)):
        try:
            reader.feed(piece, max_size, 1000)
        except frames.ProtocolError:
            break
        assert reader.buffered <= max_size + 14


@FUZZ
@given(st.data(), st.binary(max_size=600), st.integers(0, 400))
def test_random_bytes_raise_only_documented_errors(data: st.DataObject, noise: bytes, max_size: int) -> None:
    """Arbitrary bytes end, at worst, in a ProtocolError with a documented close code."""
    reader = Recorder().feed_all(data.draw(split(noise)), max_size, 5)
    assert reader.error is None or reader.error in DOCUMENTED
    assert reader.buffered <= max_size + 14


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    "GET",
                    "POST",
                    " ",
                    "/ws",
                    "//[",
                    "?token=a",
                    "HTTP/1.1",
                    "\r\n",
                    ":",
                    "Host",
                    "Upgrade",
                    "websocket",
                    "Connection",
                    "Sec-WebSocket-Key",
                    "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version",
                    "13",
                    "\x00",
                    "\xe9",
                ]
            ),
            max_size=40,
        ).map(lambda parts: "".join(parts).encode("latin-1")),
    )
)
def test_handshake_parser_raises_only_handshake_errors(head: bytes) -> None:
    """Any request head parses or is refused with a HandshakeError (4xx/5xx), never another exception."""
    try:
        request = handshake.parse_upgrade(head)
    except handshake.HandshakeError as exc:
        assert 400 <= exc.status < 600
    else:
        assert request.path.startswith("/")
