"""Frames to messages with no socket: reassembly, limits, UTF-8, close (push_server.websocket.reader)."""

from __future__ import annotations

import struct
import time

import pytest

from push_server.websocket import frames

from .reader_events import Recorder
from .test_frames import client_frame

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def test_messages_and_control_frames_in_one_read() -> None:
    """Whole text and binary messages, pings and pongs come out in order from one read."""
    data = (
        client_frame(TEXT, "héllo".encode())
        + client_frame(PING, b"p")
        + client_frame(BINARY, b"\x00\xff")
        + client_frame(PONG, b"")
    )
    assert Recorder().feed_all([data]).events == [
        ("message", TEXT, "héllo".encode()),
        ("ping", b"p"),
        ("message", BINARY, b"\x00\xff"),
        ("pong", b""),
    ]


def test_fragmented_message_with_a_ping_between() -> None:
    """Fragments are joined into one message; a control frame between them is handled at once."""
    data = (
        client_frame(TEXT, b"he", fin=False)
        + client_frame(PING, b"!")
        + client_frame(CONT, b"", fin=False)
        + client_frame(CONT, b"llo")
    )
    assert Recorder().feed_all([data]).events == [("ping", b"!"), ("message", TEXT, b"hello")]


def test_close_ends_parsing() -> None:
    """After a close frame nothing more is parsed, in this read or the next."""
    reader = Recorder().feed_all(
        [
            client_frame(CLOSE, struct.pack("!H", 1001) + b"bye") + client_frame(TEXT, b"late"),
            client_frame(TEXT, b"later"),
        ]
    )
    assert reader.events == [("close", 1001, "bye")]
    assert reader.buffered == 0


@pytest.mark.parametrize(
    "data, code",
    [
        (client_frame(CONT, b"x"), 1002),
        (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), 1002),
        (client_frame(TEXT, b"\xff"), 1007),
        (client_frame(TEXT, b"\xce", fin=False) + client_frame(CONT, b""), 1007),
        (client_frame(CLOSE, b"\x03"), 1002),
        (client_frame(CLOSE, struct.pack("!H", 1005)), 1002),
        (client_frame(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    ],
    ids=[
        "orphan-continuation",
        "text-inside-fragmented",
        "bad-utf8",
        "truncated-utf8-at-end",
        "1-byte-close",
        "close-1005",
        "close-bad-reason",
    ],
)
def test_protocol_errors(data: bytes, code: int) -> None:
    """Each broken message raises the close code RFC 6455 asks for."""
    assert Recorder().feed_all([data]).error == code


def test_invalid_utf8_fails_at_the_fragment_that_holds_it() -> None:
    """Invalid text in a first fragment closes 1007 at once, before the message ends."""
    reader = Recorder().feed_all([client_frame(TEXT, b"ok", fin=False), client_frame(CONT, b"\xf4\x90", fin=False)])
    assert reader.error == 1007


def test_a_split_character_across_fragments_is_fine() -> None:
    """A character split between two fragments is valid UTF-8 (the decoder is incremental)."""
    reader = Recorder().feed_all([client_frame(TEXT, b"\xc3", fin=False) + client_frame(CONT, b"\xa9")])
    assert reader.events == [("message", TEXT, "é".encode())]


def test_fragments_are_capped_and_empty_ones_count() -> None:
    """A message in more frames than max_fragments (empty ones included) closes 1008."""
    start = client_frame(BINARY, b"", fin=False)
    empties = [client_frame(CONT, b"", fin=False)] * 3
    assert Recorder().feed_all([start, *empties], max_fragments=4).error is None
    assert Recorder().feed_all([start, *empties, client_frame(CONT, b"")], max_fragments=4).error == 1008
    assert Recorder().feed_all([start], max_fragments=1).error == 1008


def test_running_total_refuses_a_continuation_from_its_header() -> None:
    """A continuation that would take the message past max_size closes 1009 as soon as its header arrives."""
    reader = Recorder().feed_all(
        [client_frame(BINARY, b"x" * 60, fin=False), client_frame(CONT, b"y" * 41)[:2]], max_size=100
    )
    assert reader.error == 1009
    assert (
        Recorder()
        .feed_all([client_frame(BINARY, b"x" * 60, fin=False) + client_frame(CONT, b"y" * 40)], max_size=100)
        .events
    )


def test_frame_hook_may_refuse() -> None:
    """A ProtocolError from frame_received (the flood limit) propagates out of feed."""

    class Strict(Recorder):
        def frame_received(self) -> None:
            raise frames.ProtocolError(1008, "no")

    assert Strict().feed_all([client_frame(TEXT, b"x")]).error == 1008


def test_a_trickled_frame_costs_linear_time() -> None:
    """A 1 MiB frame fed 64 bytes at a time is parsed once, not re-joined per read (quadratic: tens of seconds)."""
    data = client_frame(BINARY, b"z" * (1 << 20))
    pieces = [data[i : i + 64] for i in range(0, len(data), 64)]
    reader = Recorder()
    started = time.process_time()
    reader.feed_all(pieces, max_size=1 << 20)
    assert time.process_time() - started < 1.0
    assert reader.events == [("message", BINARY, b"z" * (1 << 20))]
    assert reader.buffered == 0
