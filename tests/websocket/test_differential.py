"""Differential test: the reader against websockets' Sans-I/O ServerProtocol on random client frame streams.

websockets (the house-style model) is the reference for what a server must do
with each stream: the messages and control frames it hands up, and the close
code it answers with. Two things its Sans-I/O layer leaves to its asyncio layer
are added to the reference here, as webchat does them in the reader: UTF-8
validation of text, fragment by fragment (websockets' asyncio layer decodes a
message's text as it arrives too).

One difference is intended: websockets answers a close frame that arrives in
the middle of a fragmented message with 1002 ("incomplete fragmented message");
RFC 6455 §5.4 lets control frames come between fragments and nothing forbids a
peer to give up on a message, so webchat echoes that close as any other. The
reference below is adjusted for that case alone.

And one difference of order: for a frame both too big and malformed (reserved
bits, a fragmented or long control frame), webchat answers 1002 from the first
two bytes, websockets 1009 from the length, having read the frame's payload
before checking the rest. Then the reference is asked again without the size
limit, and must agree that the frame breaks the protocol.
"""

from __future__ import annotations

import codecs
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from .reader_events import Recorder
from .strategies import split, streams


def reference(pieces: list[bytes], max_size: int | None) -> tuple[list[tuple[Any, ...]], int | None]:
    """Events and the close code (None: none sent) of websockets' ServerProtocol for the same reads."""
    protocol = ServerProtocol(state=State.OPEN, max_size=max_size)
    events: list[tuple[Any, ...]] = []
    opcode: int | None = None
    decoder: Any = None
    message = b""
    for piece in pieces:
        protocol.receive_data(piece)
        for frame in protocol.events_received():
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                if frame.opcode is not Opcode.CONT:
                    opcode, message = int(frame.opcode), b""
                    decoder = codecs.getincrementaldecoder("utf-8")() if frame.opcode is Opcode.TEXT else None
                if decoder is not None:
                    try:
                        decoder.decode(frame.data, frame.fin)
                    except UnicodeDecodeError:
                        return events, 1007
                message += frame.data
                if frame.fin:
                    events.append(("message", opcode, message))
            elif frame.opcode is Opcode.PING:
                events.append(("ping", frame.data))
            elif frame.opcode is Opcode.PONG:
                events.append(("pong", frame.data))
            else:
                assert protocol.close_rcvd is not None
                code = protocol.close_rcvd.code
                events.append(("close", None if code == 1005 else code, protocol.close_rcvd.reason))
        if protocol.close_sent is not None:
            if str(protocol.parser_exc) == "incomplete fragmented message" and protocol.close_rcvd is not None:
                code = protocol.close_rcvd.code
                events.append(("close", None if code == 1005 else code, protocol.close_rcvd.reason))
                return events, code
            break
    if protocol.close_sent is None:
        return events, None
    return events, protocol.close_sent.code


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), streams, st.integers(0, 600))
def test_reader_agrees_with_websockets(data: st.DataObject, stream: bytes, max_size: int) -> None:
    """Same messages, pings, pongs and close, and the same close code, as websockets for any stream and split."""
    pieces = data.draw(split(stream))
    expected_events, expected_code = reference(pieces, max_size)
    reader = Recorder().feed_all(pieces, max_size, max_fragments=10**9)
    if reader.error is not None:
        code: int | None = reader.error
    elif reader.events and reader.events[-1][0] == "close":
        # The listener echoes a valid code, and answers 1000 to a close without one.
        code = reader.events[-1][1] or 1000
        expected_code = 1000 if expected_code == 1005 else expected_code
    else:
        code = None
    if (code, expected_code) == (1002, 1009):
        expected_events, expected_code = reference(pieces, None)
    assert reader.events == expected_events
    assert code == expected_code
