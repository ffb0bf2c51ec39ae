"""The browser side of push_server: handshake checks, heartbeat, abuse, slow consumers, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import select
import signal
import socket
import struct
import time
from typing import Any

import aiohttp
import pytest

import push_protocol

from ..servers import TEST_SECRET, TIMEOUT, PushServerProcess
from .conftest import masked_frame, raw_handshake, read_frame


async def call(function: Any, *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


async def wait_until(check: Any, timeout: float = TIMEOUT) -> None:
    """Poll a blocking ``check`` until it is true, or fail."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def close_code(sock: socket.socket) -> int | None:
    """Read frames until the server's close frame; return its code (None if the socket just ended)."""
    try:
        while True:
            opcode, payload = read_frame(sock)
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])
    except (TimeoutError, ConnectionError):
        return None


def init_of(sock: socket.socket) -> dict[str, Any]:
    opcode, payload = read_frame(sock)
    assert opcode == 0x1
    return dict(json.loads(payload))


@pytest.fixture(scope="module")
def server() -> Any:
    """A server with a fast heartbeat, an origin list and tight abuse limits."""
    with PushServerProcess(
        "--heartbeat-interval",
        "0.3",
        "--heartbeat-timeout",
        "1.0",
        "--allowed-origins",
        "https://chat.example,http://localhost:5000",
        "--max-frame-bytes",
        "4096",
        "--max-client-frames-per-second",
        "20",
        "--max-message-fragments",
        "5",
    ) as process:
        yield process


# -- handshake -----------------------------------------------------------------------------------


def test_other_paths_and_plain_http_are_refused(server: PushServerProcess) -> None:
    """Only /ws upgrades; any other path is 404 and a non-WebSocket request 426."""
    _sock, head = raw_handshake(server.ws_port, path="/elsewhere")
    assert head.startswith(b"HTTP/1.1 404")
    plain = socket.create_connection(("127.0.0.1", server.ws_port), timeout=TIMEOUT)
    plain.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    assert plain.recv(100).startswith(b"HTTP/1.1 426")


def test_cross_site_origin_is_refused_before_the_upgrade(server: PushServerProcess) -> None:
    """A page from an origin not in PUSH_ALLOWED_ORIGINS gets 403; a listed origin connects."""
    _, head = raw_handshake(server.ws_port, headers="Origin: https://evil.example\r\n")
    assert head.startswith(b"HTTP/1.1 403")
    sock, head = raw_handshake(server.ws_port, headers="Origin: https://chat.example\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert init_of(sock)["type"] == "init"


def test_valid_token_binds_the_uid_before_init(server: PushServerProcess) -> None:
    """A token signed with PUSH_SECRET binds its uid before init, and init carries the uid."""
    token = push_protocol.make_token(TEST_SECRET, 42, ttl=30)
    sock, head = raw_handshake(server.ws_port, path=f"/ws?token={token}")
    assert head.startswith(b"HTTP/1.1 101")
    init = init_of(sock)
    assert init["uid"] == "42"
    push = server.client()
    assert push.get_client_id_by_uid(42) == [init["client_id"]]


@pytest.mark.parametrize(
    "token",
    [
        push_protocol.make_token(TEST_SECRET, 42, ttl=-1),  # expired
        push_protocol.make_token("some-other-secret-entirely", 42),  # forged
        "garbage",
    ],
    ids=["expired", "forged", "garbage"],
)
def test_bad_tokens_are_refused_at_the_handshake(server: PushServerProcess, token: str) -> None:
    """An expired, forged or malformed token gets 401 and no connection."""
    _, head = raw_handshake(server.ws_port, path=f"/ws?token={token}")
    assert head.startswith(b"HTTP/1.1 401")


def test_tokens_never_reach_the_log(make_push_server: Any) -> None:
    """Neither good nor bad tokens are written to the server's log."""
    server = make_push_server("--log-level", "DEBUG").start()
    good = push_protocol.make_token(TEST_SECRET, 7)
    bad = push_protocol.make_token("some-other-secret-entirely", 7)
    raw_handshake(server.ws_port, path=f"/ws?token={good}")[0].close()
    raw_handshake(server.ws_port, path=f"/ws?token={bad}")[0].close()
    server.stop()
    log = server.log()
    assert "refused WebSocket handshake" in log
    assert good not in log and bad not in log and good.split(".")[1] not in log


def raw_request(port: int, request: bytes) -> bytes:
    """Send ``request`` in one write and read the whole answer (the server closes after a refusal)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(request)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    return answer


_UPGRADE = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"


def test_unparseable_target_is_400_and_not_logged(make_push_server: Any) -> None:
    """`GET //[` gets a 400 answer; the log holds no traceback and none of the request's text."""
    server = make_push_server().start()
    answer = raw_request(server.ws_port, f"GET //[secretive HTTP/1.1\r\nHost: x\r\n{_UPGRADE}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400")
    server.stop()
    log = server.log()
    assert "refused WebSocket handshake: 400" in log
    assert "Traceback" not in log and "secretive" not in log


def test_host_header_is_required(server: PushServerProcess) -> None:
    """An upgrade without Host is refused with 400 (RFC 6455 §4.2.1)."""
    answer = raw_request(server.ws_port, f"GET /ws HTTP/1.1\r\n{_UPGRADE}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400")


def test_405_names_the_allowed_method(server: PushServerProcess) -> None:
    """A POST to the listener gets 405 with `Allow: GET`."""
    answer = raw_request(server.ws_port, f"POST /ws HTTP/1.1\r\nHost: x\r\n{_UPGRADE}\r\n".encode())
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 405")
    assert b"\r\nallow: get" in head


def test_oversized_head_in_one_write_is_431(server: PushServerProcess) -> None:
    """A request head over 8 KB is refused with 431 even when it arrives whole in one write."""
    padding = "X-Pad: " + "a" * 9000 + "\r\n"
    answer = raw_request(server.ws_port, f"GET /ws HTTP/1.1\r\nHost: x\r\n{_UPGRADE}{padding}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 431")


def test_handshake_timeout_is_a_deadline_from_accept(make_push_server: Any) -> None:
    """A client dribbling its head one byte at a time is dropped once the handshake deadline passes."""
    server = make_push_server("--handshake-timeout", "1").start()
    sock = socket.create_connection(("127.0.0.1", server.ws_port), timeout=TIMEOUT)
    request = f"GET /ws HTTP/1.1\r\nHost: x\r\n{_UPGRADE}".encode() + b"X-Slow: " + b"a" * 1000
    started = time.monotonic()
    # Each byte comes well within any idle timer; only a deadline ends this.
    for byte in request:
        assert time.monotonic() - started < TIMEOUT, "the dribbling client is still connected"
        try:
            sock.send(bytes((byte,)))
            if select.select([sock], [], [], 0.1)[0] and sock.recv(1) == b"":
                break
        except ConnectionError:
            break
    # The 1 s deadline plus at most one sweep period (0.5 s) and some slack.
    assert time.monotonic() - started < 3.0


def test_token_lifetime_is_capped(server: PushServerProcess) -> None:
    """A token that claims to stay valid longer than PUSH_TOKEN_MAX_TTL is refused with 401."""
    token = push_protocol.make_token(TEST_SECRET, 42, ttl=10 * 365 * 86400)
    _, head = raw_handshake(server.ws_port, path=f"/ws?token={token}")
    assert head.startswith(b"HTTP/1.1 401")
    token = push_protocol.make_token(TEST_SECRET, 42, ttl=3600)
    _, head = raw_handshake(server.ws_port, path=f"/ws?token={token}")
    assert head.startswith(b"HTTP/1.1 101")


# -- heartbeat -----------------------------------------------------------------------------------


async def test_silent_connection_is_dropped_with_leave_signals(server: PushServerProcess) -> None:
    """A client that never answers pings is dropped within the timeout and its groups hear it leave."""
    silent, _ = await asyncio.to_thread(raw_handshake, server.ws_port)
    silent_id = init_of(silent)["client_id"]
    async with aiohttp.ClientSession() as session:
        # aiohttp answers pings by itself, as browsers do: this one stays.
        mate = await session.ws_connect(server.ws_url)
        mate_id = json.loads((await mate.receive(timeout=TIMEOUT)).data)["client_id"]
        push = server.client()
        await call(push.join_group, silent_id, "heartbeat")
        await call(push.join_group, mate_id, "heartbeat")
        started = time.monotonic()
        while True:
            message = await mate.receive(timeout=TIMEOUT)
            if message.data != '{"type":"ping"}':
                break
        assert json.loads(message.data) == {"type": "leave", "group": "heartbeat", "uid": None}
        # Timeout 1.0 s plus at most one sweep period.
        assert time.monotonic() - started < 3.0
        assert await call(push.is_online, mate_id) is True
        assert await call(push.is_online, silent_id) is False


def test_server_pings_idle_pages(server: PushServerProcess) -> None:
    """An idle connection gets a protocol ping and a {"type":"ping"} frame."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    seen = {read_frame(sock) for _ in range(2)}
    assert (0x9, b"") in seen
    assert (0x1, b'{"type":"ping"}') in seen


def test_client_ping_gets_a_pong(server: PushServerProcess) -> None:
    """A protocol ping from the client is answered with a pong carrying the same payload."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x9, b"hello"))
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0xA:
            assert payload == b"hello"
            return


# -- abuse ---------------------------------------------------------------------------------------


def test_oversized_frame_closes_with_1009(server: PushServerProcess) -> None:
    """A frame over the size limit closes the connection with 1009 (message too big)."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x1, b"x" * 5000))
    assert close_code(sock) == 1009


def test_refused_frame_still_being_sent_gets_its_close_code(server: PushServerProcess) -> None:
    """A client still sending a refused 1 MiB frame reads the 1009, not a reset.

    The server half-closes and discards the rest; closing outright would leave
    unread bytes, and the kernel's reset then destroys the close frame in the
    client's buffer (what Autobahn's case 9.1.3 saw now and then).
    """
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    frame = masked_frame(0x1, b"x" * (1 << 20))
    sent = 0
    with contextlib.suppress(OSError):
        for start in range(0, len(frame), 65536):
            sent += sock.send(frame[start : start + 65536])
            time.sleep(0.002)
    assert sent == len(frame), "the server stopped reading before the client finished"
    time.sleep(0.2)  # the rest arrives after the server decided
    assert close_code(sock) == 1009


def test_flood_closes_with_1008(server: PushServerProcess) -> None:
    """Too many frames in a second closes the connection with 1008 (policy violation)."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(b"".join(masked_frame(0x1, b'{"type":"pong"}') for _ in range(50)))
    assert close_code(sock) == 1008


def test_unmasked_frame_closes_with_1002(server: PushServerProcess) -> None:
    """A client frame without a mask breaks the protocol: close 1002."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x1, b"hi", mask=False))
    assert close_code(sock) == 1002


def test_invalid_utf8_closes_with_1007(server: PushServerProcess) -> None:
    """A text frame that is not UTF-8 closes with 1007."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x1, b"\xff\xfe"))
    assert close_code(sock) == 1007


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 1014, 3000, 4999])
def test_client_close_is_echoed(server: PushServerProcess, code: int) -> None:
    """A close frame with a valid code is answered with the same code."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x8, struct.pack("!H", code) + b"bye"))
    assert close_code(sock) == code


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_invalid_close_code_is_a_protocol_error(server: PushServerProcess, code: int) -> None:
    """A close frame with a reserved or undefined code is answered 1002, never echoed."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x8, struct.pack("!H", code)))
    assert close_code(sock) == 1002


def test_one_byte_close_payload_is_a_protocol_error(server: PushServerProcess) -> None:
    """A close payload of one byte (half a code) is answered 1002."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x8, b"\x03"))
    assert close_code(sock) == 1002


def test_close_reason_must_be_utf8(server: PushServerProcess) -> None:
    """A close reason that is not UTF-8 is answered 1007."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(
        masked_frame(0x8, struct.pack("!H", 1000) + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")
    )
    assert close_code(sock) == 1007


def test_empty_close_is_answered_1000(server: PushServerProcess) -> None:
    """A close frame with no payload is answered with 1000."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x8, b""))
    assert close_code(sock) == 1000


def test_invalid_utf8_in_a_first_fragment_fails_fast(server: PushServerProcess) -> None:
    """Invalid UTF-8 in the first fragment of a text message closes 1007 before the message ends."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x1, b"ok \xf4\x90\x80\x80", fin=False))
    assert close_code(sock) == 1007


def test_too_many_fragments_close_with_1008(server: PushServerProcess) -> None:
    """A message in more frames than PUSH_MAX_MESSAGE_FRAGMENTS (empty ones count) closes 1008."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x1, b"", fin=False) + b"".join(masked_frame(0x0, b"", fin=False) for _ in range(5)))
    assert close_code(sock) == 1008


def test_fragments_over_the_size_limit_close_with_1009(server: PushServerProcess) -> None:
    """Fragments that add up to more than the frame limit close with 1009."""
    sock, _ = raw_handshake(server.ws_port)
    init_of(sock)
    sock.sendall(masked_frame(0x2, b"x" * 3000, fin=False) + masked_frame(0x0, b"x" * 3000))
    assert close_code(sock) == 1009


def test_pages_may_send_pongs_and_are_not_disturbed(server: PushServerProcess) -> None:
    """A {"type":"pong"} or other text from a page is ignored, and the connection stays."""
    sock, _ = raw_handshake(server.ws_port)
    client_id = init_of(sock)["client_id"]
    sock.sendall(masked_frame(0x1, b'{"type":"pong"}') + masked_frame(0x1, b"hello?") + masked_frame(0x2, b"\x00"))
    push = server.client()
    push.send_to_client(client_id, "still here")
    while True:
        _, payload = read_frame(sock)
        if payload == b"still here":
            return


# -- slow consumers ------------------------------------------------------------------------------


async def test_a_reader_that_never_reads_stalls_nobody(make_push_server: Any) -> None:
    """One client that never reads is dropped at its bound; the rest of its group gets every message."""
    server = make_push_server("--max-pending-bytes", "65536").start()
    push = server.client()
    stuck, _ = await asyncio.to_thread(raw_handshake, server.ws_port, "/ws", "", 4096)
    stuck_id = init_of(stuck)["client_id"]
    await call(push.join_group, stuck_id, "busy")
    async with aiohttp.ClientSession() as session:
        readers = []
        for _ in range(5):
            ws = await session.ws_connect(server.ws_url)
            client_id = json.loads((await ws.receive(timeout=TIMEOUT)).data)["client_id"]
            await call(push.join_group, client_id, "busy")
            readers.append(ws)
        payload = "x" * 16_000
        count = 200  # 3.2 MB: far past the stuck client's kernel buffers and its 64 KB bound

        async def read_all(ws: aiohttp.ClientWebSocketResponse) -> None:
            # The good readers read as the messages come, as browsers do, so
            # only the stuck client can fall behind.
            received = 0
            leave_seen = False
            while received < count or not leave_seen:
                message = await ws.receive(timeout=TIMEOUT * 4)
                if message.data.startswith('{"type":"leave"'):
                    assert json.loads(message.data) == {"type": "leave", "group": "busy", "uid": None}
                    leave_seen = True
                elif message.data != '{"type":"ping"}':
                    assert message.data == f"{received}:{payload}"
                    received += 1

        reading = [asyncio.create_task(read_all(ws)) for ws in readers]
        for index in range(count):
            await call(push.send_to_group, "busy", f"{index}:{payload}")
        await asyncio.gather(*reading)
        assert await call(push.is_online, stuck_id) is False
    server.stop()
    # The log says how much was waiting (past the bound), not the bound itself.
    dropped = re.search(r"dropping slow client \S+: (\d+) bytes pending", server.log())
    assert dropped is not None and int(dropped.group(1)) > 65536


# -- shutdown ------------------------------------------------------------------------------------


async def test_sigterm_closes_every_client_with_1001(make_push_server: Any) -> None:
    """On SIGTERM every client gets close 1001 (going away), then the process exits cleanly."""
    server = make_push_server().start()
    async with aiohttp.ClientSession() as session:
        clients = [await session.ws_connect(server.ws_url) for _ in range(3)]
        for ws in clients:
            await ws.receive(timeout=TIMEOUT)
        exit_code = await asyncio.to_thread(server.stop, signal.SIGTERM)
        for ws in clients:
            message = await ws.receive(timeout=TIMEOUT)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert message.data == 1001
    assert exit_code == 0


def test_refuses_to_start_without_a_secret() -> None:
    """Without PUSH_SECRET the server exits at once and says why."""
    import subprocess
    import sys

    from ..servers import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "push_server"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "PUSH_SECRET" in result.stderr


def test_secret_comes_from_a_file_never_argv(make_push_server: Any, tmp_path: Any) -> None:
    """PUSH_SECRET_FILE supplies the secret; `--secret` no longer exists, so no secret shows in `ps`."""
    import subprocess
    import sys

    from ..servers import ROOT

    secret_file = tmp_path / "secret"
    secret_file.write_text(TEST_SECRET + "\n")
    server = make_push_server(env={"PUSH_SECRET": "", "PUSH_SECRET_FILE": str(secret_file)}).start()
    assert server.client().get_all_client_count() == 0
    result = subprocess.run(
        [sys.executable, "-m", "push_server", "--secret", TEST_SECRET],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "--secret" in result.stderr


def test_open_files_limit_refusals_are_logged(make_push_server: Any) -> None:
    """Near RLIMIT_NOFILE new sockets are refused at once, and the log counts them (at most a line a second)."""
    import os
    import resource

    from push_server.websocket.limits import FD_RESERVE

    server = make_push_server().start()
    assert server.process is not None
    pid = server.process.pid
    # The cap is RLIMIT_NOFILE less FD_RESERVE browsers: a few dozen here.
    soft = len(os.listdir(f"/proc/{pid}/fd")) + FD_RESERVE + 10
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    opened = []
    refused = 0
    for _ in range(30):
        try:
            sock, head = raw_handshake(server.ws_port)
        except ConnectionError:
            head = b""  # reset: refused as soon as accepted
        if head.startswith(b"HTTP/1.1 101"):
            opened.append(sock)
        else:
            refused += 1
    assert opened and refused

    def counted() -> list[int]:
        return [int(n) for n in re.findall(r"open-files limit: refused (\d+) WebSocket", server.log())]

    # The first refusal is logged at once, the rest a second later in one line.
    deadline = time.monotonic() + TIMEOUT
    while sum(counted()) < refused and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(counted()) == refused and len(counted()) <= 3
