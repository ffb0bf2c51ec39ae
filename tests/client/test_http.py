"""push_client's short HTTP path: framing, keep-alive, retries and errors, against servers that misbehave on purpose.

The push server itself always answers with Content-Length on a kept-alive
connection; these servers answer the way other HTTP/1.1 servers (or a proxy in
between) may, byte by byte, so every branch of the client's reader runs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import push_protocol
from push_client import (
    PushClient,
    PushConnectionError,
    PushError,
    PushRequestError,
    PushTimeoutError,
    PushUnavailableError,
)

from ..servers import TIMEOUT, PushServerProcess

SECRET = "client-test-secret-0123456789"


def read_request(conn: socket.socket, buffer: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """One request from ``conn``: (head, body, what followed); empty head if the peer closed."""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return b"", b"", b""
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += conn.recv(65536)
    return head, rest[:length], rest[length:]


class ScriptedServer:
    """A TCP server whose every connection is handled by ``handle(conn, index)`` in a thread."""

    def __init__(self, handle: Callable[[socket.socket, int], None]) -> None:
        self.handle = handle
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        with conn:
            conn.settimeout(TIMEOUT)
            with contextlib.suppress(OSError):
                self.handle(conn, index)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[socket.socket, int], None]], ScriptedServer]]:
    """Start scripted servers; all are closed after the test."""
    servers: list[ScriptedServer] = []

    def start(handle: Callable[[socket.socket, int], None]) -> ScriptedServer:
        server = ScriptedServer(handle)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


class answering:
    """A handler that reads one request per answer and sends that answer, in order; it keeps the request bodies."""

    def __init__(self, *answers: bytes, keep_open: bool = True) -> None:
        self.answers = answers
        self.keep_open = keep_open
        self.bodies: list[bytes] = []

    def __call__(self, conn: socket.socket, index: int) -> None:
        rest = b""
        for answer in self.answers:
            head, body, rest = read_request(conn, rest)
            if not head:
                return
            self.bodies.append(body)
            conn.sendall(answer)
        if self.keep_open:
            read_request(conn, rest)


def ok(payload: Any = None, extra: bytes = b"") -> bytes:
    """A 200 answer with Content-Length, as the push server sends it."""
    body = json.dumps({"result": payload}).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Callable[..., Any]:
    """``client(server, timeout=..., **options)``: a client of the test's face for a scripted server."""

    def make(server: ScriptedServer, timeout: float = TIMEOUT, **options: Any) -> Any:
        return make_client(server.url, secret=SECRET, timeout=timeout, **options)

    return make


# -- framing ---------------------------------------------------------------------------------


def test_answer_arriving_byte_by_byte(scripted: Any, client: Any) -> None:
    """An answer split into one-byte writes is read whole."""

    def handle(conn: socket.socket, index: int) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        read_request(conn)
        for byte in ok(42):
            conn.sendall(bytes((byte,)))
        read_request(conn)

    assert client(scripted(handle)).get_all_client_count() == 42


def test_chunked_answer(scripted: Any, client: Any) -> None:
    """A chunked answer (with an extension and a trailer) is joined, and the connection is kept."""
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;note=x\r\n{"re\r\n'
        b'b\r\nsult": [1, \r\n'
        b"3\r\n2]}\r\n"
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    server = scripted(answering(chunked, ok(7)))
    push = client(server)
    assert push.get_all_uid_list() == [1, 2]
    assert push.get_all_client_count() == 7
    assert server.connections == 1


def test_answer_ended_by_closing(scripted: Any, client: Any) -> None:
    """An answer without a length ends with the connection; the next call opens a new one."""
    server = scripted(answering(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"result": 3}', keep_open=False))
    push = client(server)
    assert push.get_all_client_count() == 3
    assert push.get_all_client_count() == 3
    assert server.connections == 2


def test_connection_close_is_honoured(scripted: Any, client: Any) -> None:
    """``Connection: close`` with a length: the answer is read, the connection not reused."""
    server = scripted(answering(ok(1, b"Connection: close\r\n"), keep_open=False))
    push = client(server)
    assert push.get_all_client_count() == 1
    assert push.get_all_client_count() == 1
    assert server.connections == 2


def test_http_1_0_answer_is_not_kept(scripted: Any, client: Any) -> None:
    """An HTTP/1.0 answer without keep-alive closes the connection after it."""
    server = scripted(answering(ok(5).replace(b"HTTP/1.1", b"HTTP/1.0"), keep_open=False))
    push = client(server)
    assert push.get_all_client_count() == 5
    assert push.get_all_client_count() == 5
    assert server.connections == 2


def test_interim_answer_is_skipped(scripted: Any, client: Any) -> None:
    """A 100 Continue before the answer is skipped."""
    server = scripted(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(9)))
    assert client(server).get_all_client_count() == 9


def test_bytes_past_the_answer_drop_the_connection(scripted: Any, client: Any, face: str) -> None:
    """A server that sends more than it declared is not trusted with the next request."""
    if face == "async":
        pytest.skip(
            "PushClient's own transport only: aiohttp reads stray bytes as the next answer (the push server sends none)"
        )
    server = scripted(answering(ok(1) + b"garbage", ok(2), keep_open=False))
    push = client(server)
    assert push.get_all_client_count() == 1
    assert push.get_all_client_count() == 1
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70_000 + b"\r\n\r\n",
    ],
)
def test_malformed_answer_is_a_connection_error(scripted: Any, client: Any, answer: bytes) -> None:
    """An answer that is not HTTP/1.x as framed raises PushConnectionError, not a parser's exception."""
    server = scripted(answering(answer, keep_open=False))
    with pytest.raises(PushConnectionError) as raised:
        client(server).get_all_client_count()
    assert not isinstance(raised.value, PushTimeoutError)


# -- keep-alive, retries, time-outs ----------------------------------------------------------


def test_kept_alive_connection_closed_by_the_server_is_sent_again_once(scripted: Any, client: Any) -> None:
    """A request whose connection the server closed unanswered is sent again once, on a new connection, signed anew."""

    def handle(conn: socket.socket, index: int) -> None:
        head, body, rest = read_request(conn)
        server.requests.append(head + b"\r\n\r\n" + body)
        if index == 0:
            conn.sendall(ok(1))
            # The next request on this connection is read and dropped unanswered,
            # as when a server's idle time-out races with a new request.
            head, body, _ = read_request(conn, rest)
            server.requests.append(head + b"\r\n\r\n" + body)
            return
        conn.sendall(ok(2))
        read_request(conn, rest)

    server = scripted(handle)
    push = client(server)
    assert push.get_all_client_count() == 1
    assert push.get_all_client_count() == 2
    assert server.connections == 2
    # The same body, but a new nonce: a server that saw the first would not take the second for a replay.
    first, again = (request.partition(b"\r\n\r\n") for request in server.requests[1:])
    assert first[2] == again[2]
    assert nonce(first[0]) != nonce(again[0])


def nonce(head: bytes) -> str:
    """The X-Push-Nonce of a request head."""
    for line in head.decode().split("\r\n")[1:]:
        name, _, value = line.partition(": ")
        if name.lower() == push_protocol.HEADER_NONCE.lower():
            return value
    raise AssertionError("no nonce")


def test_connection_closed_unanswered_twice_is_an_error(scripted: Any, client: Any) -> None:
    """A call whose connection is closed unanswered again on the retry raises PushConnectionError after two tries."""

    def handle(conn: socket.socket, index: int) -> None:
        read_request(conn)

    server = scripted(handle)
    with pytest.raises(PushConnectionError):
        client(server).get_all_client_count()
    assert server.connections == 2


def test_no_retry_when_retries_is_zero(scripted: Any, client: Any) -> None:
    """With retries=0 a call whose connection was lost is not sent again."""

    def handle(conn: socket.socket, index: int) -> None:
        read_request(conn)

    server = scripted(handle)
    with pytest.raises(PushConnectionError):
        client(server, retries=0).send_to_client("c", "x")
    assert server.connections == 1


def test_refused_connection_is_not_retried(client: Any) -> None:
    """Nobody listening: PushConnectionError (not a time-out), the request never went out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    with pytest.raises(PushConnectionError) as raised:
        client(type("Down", (), {"url": url})()).get_all_client_count()
    assert not isinstance(raised.value, PushTimeoutError)


def test_slow_answer_times_out(scripted: Any, client: Any) -> None:
    """An answer that stops half-way raises PushTimeoutError (retries=0), and the next call uses a new connection."""
    started = threading.Event()

    def handle(conn: socket.socket, index: int) -> None:
        read_request(conn)
        if index == 0:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
            started.set()
            read_request(conn)
        else:
            conn.sendall(ok(4))
            read_request(conn)

    server = scripted(handle)
    push = client(server, timeout=0.3, retries=0)
    with pytest.raises(PushTimeoutError):
        push.get_all_client_count()
    assert started.is_set()
    assert push.get_all_client_count() == 4
    assert server.connections == 2


def test_push_that_timed_out_is_sent_again_with_the_same_key(scripted: Any, client: Any) -> None:
    """A push whose answer timed out is sent once more with the same body, so the same idempotency key."""

    def handle(conn: socket.socket, index: int) -> None:
        _, body, rest = read_request(conn)
        bodies.append(body)
        if index == 0:
            read_request(conn, rest)  # no answer: the client times out
        else:
            conn.sendall(ok(None))
            read_request(conn, rest)

    bodies: list[bytes] = []
    server = scripted(handle)
    client(server, timeout=0.3).send_to_client("c1", "hello")
    assert server.connections == 2 and bodies[0] == bodies[1]
    key = json.loads(bodies[0])["idempotency_key"]
    assert isinstance(key, str) and 1 <= len(key) <= 200


def test_given_key_is_sent(scripted: Any, client: Any) -> None:
    """idempotency_key= on a push and on batch() travels as given."""
    body = b'{"results":[null],"errors":[]}'
    handler = answering(ok(None), b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    push = client(scripted(handler))
    push.send_to_uid(7, "x", idempotency_key="mine-1")
    with push.batch(idempotency_key="mine-2") as batch:
        batch.send_to_group("g", "y")
    assert json.loads(handler.bodies[0])["idempotency_key"] == "mine-1"
    assert json.loads(handler.bodies[1]) == {
        "operations": [["send_to_group", ["g"], {"text": "y"}]],
        "idempotency_key": "mine-2",
    }


def test_closed_client_raises_push_connection_error(push_server: PushServerProcess, make_client: Any) -> None:
    """A call after close() raises PushConnectionError."""
    push = make_client(push_server.api_url, secret=push_server.secret)
    assert push.get_all_client_count() == 0
    push.close()
    with pytest.raises(PushConnectionError):
        push.get_all_client_count()


# -- a real server ---------------------------------------------------------------------------


def test_calls_reuse_one_connection(scripted: Any, client: Any) -> None:
    """Sequential calls keep one connection alive."""
    server = scripted(answering(*[ok(False)] * 20))
    push = client(server)
    for _ in range(20):
        assert push.is_online("nobody") is False
    assert server.connections == 1


def test_one_client_shared_by_threads(push_server: PushServerProcess) -> None:
    """Threads sharing one PushClient each get their own answers, on pooled connections."""
    push = push_server.client()
    assert isinstance(push, PushClient)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for call in range(50):
                group = f"threads-{worker}-{call}"
                assert push.get_client_count_by_group(group) == 0
                assert push.is_uid_online(group) is False
                assert push.get_uid_by_client_id(group) is None
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 4)
    assert not errors, errors[0]
    pool = push._pool
    assert pool is not None and 1 <= pool.idle_connections <= 8


# -- batch answers ---------------------------------------------------------------------------


def test_batch_with_a_failed_operation(scripted: Any, client: Any) -> None:
    """An operation that failed raises its error at the end of the block and from its .value; the others keep theirs."""
    body = json.dumps(
        {
            "results": [None, 2],
            "errors": [{"index": 0, "status": 503, "error": {"code": "unavailable", "message": "down"}}],
        }
    ).encode()
    handler = answering(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    push = client(scripted(handler))
    with pytest.raises(PushUnavailableError) as raised, push.batch() as batch:
        online = batch.is_uid_online(7)
        count = batch.get_all_client_count()
    assert (raised.value.status, raised.value.code, raised.value.message) == (503, "unavailable", "down")
    assert count.value == 2
    with pytest.raises(PushUnavailableError):
        _ = online.value
    # What went over the wire: the compact form, with the key the client made for the batch.
    sent = json.loads(handler.bodies[0])
    assert isinstance(sent.pop("idempotency_key"), str)
    assert sent == {"operations": [["is_uid_online", 7], ["get_all_client_count"]]}


def test_batch_answer_that_does_not_match_is_an_error(scripted: Any, client: Any) -> None:
    """A batch answer with the wrong number of results raises PushError rather than misassigning them."""
    body = b'{"results": [1], "errors": []}'
    server = scripted(answering(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body))
    with pytest.raises(PushError), client(server).batch() as batch:
        batch.get_all_client_count()
        batch.get_all_uid_count()


def test_request_is_signed_for_the_path_without_the_prefix(scripted: Any, client: Any) -> None:
    """With a path prefix in the URL, the request goes to prefix + path and is signed for the API's own path."""

    def handle(conn: socket.socket, index: int) -> None:
        head, body, rest = read_request(conn)
        server.requests.append(head + b"\r\n\r\n" + body)
        conn.sendall(ok(0))
        read_request(conn, rest)

    server = scripted(handle)
    client(type("Prefixed", (), {"url": server.url + "/push/"})()).get_all_client_count()
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /push/api/v1/get_all_client_count HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Host"] == server.url.removeprefix("http://")
    assert int(headers["Content-Length"]) == len(body)
    problem = push_protocol.verify_request(SECRET, "POST", "/api/v1/get_all_client_count", headers, body)
    assert problem is None


def test_answer_sent_before_the_body_was_read(scripted: Any, client: Any) -> None:
    """A server that refuses a large body after its head and closes still has its answer read."""
    body = b'{"error": {"code": "too_large", "message": "body too big"}}'
    answer = (
        b"HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )

    def handle(conn: socket.socket, index: int) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += conn.recv(65536)
        conn.sendall(answer)
        conn.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # the client sees the answer before the unread body resets the connection

    server = scripted(handle)
    with pytest.raises(PushRequestError) as refused:
        client(server).send_to_all("x" * (8 * 1024 * 1024))
    assert (refused.value.status, refused.value.code) == (413, "too_large")


def test_server_without_keys_gets_pushes_without_them(scripted: Any, client: Any) -> None:
    """A server that refuses the idempotency_key argument gets the push again without it, and later pushes carry none."""
    error = b'{"error": {"code": "invalid_argument", "message": "idempotency_key: is not an argument of send_to_uid"}}'
    refusal = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(error) + error
    handler = answering(refusal, ok(None), ok(None))
    push = client(scripted(handler))
    push.send_to_uid(1, "a")
    push.send_to_uid(2, "b")
    assert [sorted(json.loads(body)) for body in handler.bodies] == [
        ["idempotency_key", "message", "uids"],
        ["message", "uids"],
        ["message", "uids"],
    ]


def test_a_given_key_is_never_dropped(scripted: Any, client: Any) -> None:
    """A key the caller gave is not silently dropped: the server's refusal is raised."""
    error = b'{"error": {"code": "invalid_argument", "message": "idempotency_key: is not an argument of send_to_uid"}}'
    handler = answering(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(error) + error)
    with pytest.raises(PushRequestError) as refused:
        client(scripted(handler)).send_to_uid(1, "a", idempotency_key="k")
    assert refused.value.status == 400
