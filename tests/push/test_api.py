"""The internal API's guard: authentication first, then validation, never a half-applied change."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

import push_protocol
from push_client import PushAuthError, PushClient, PushConnectionError, PushRequestError
from push_server.api.auth import NONCE_CLOCK_SLACK, nonce_ttl

from ..servers import PushServerProcess


def signed(
    server: PushServerProcess, path: str, payload: Any, secret: str | None = None, **tweaks: Any
) -> requests.Response:
    """POST ``payload`` to ``path`` signed with ``secret`` (the server's by default)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = push_protocol.sign_request(secret or server.secret, "POST", path, body)
    headers.update(tweaks.pop("headers", {}))
    return requests.post(server.api_url + path, data=tweaks.pop("send_body", body), headers=headers, timeout=5)


def op(name: str) -> str:
    return push_protocol.operation_path(name)


@pytest.fixture(scope="module")
def server() -> Any:
    """One in-memory push server for the module."""
    with PushServerProcess() as process:
        yield process


@pytest.fixture
def push(server: PushServerProcess) -> PushClient:
    return server.client()


def assert_error(response: requests.Response, status: int, code: str, mentions: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert mentions in error["message"]


# -- authentication: five ways to fail, each 401 and no change --------------------------------


def test_unsigned_request_is_refused(server: PushServerProcess, push: PushClient) -> None:
    """A request without signature headers gets 401 and changes nothing."""
    response = requests.post(server.api_url + op("send_to_all"), json={"message": {"text": "x"}}, timeout=5)
    assert_error(response, 401, "unauthorized", "missing")


def test_wrong_key_is_refused(server: PushServerProcess) -> None:
    """A request signed with another secret gets 401."""
    response = signed(server, op("get_all_client_count"), {}, secret="not-the-secret-at-all")
    assert_error(response, 401, "unauthorized", "bad signature")
    with pytest.raises(PushAuthError):
        PushClient(server.api_url, secret="not-the-secret-at-all").get_all_client_count()


def test_tampered_body_is_refused(server: PushServerProcess, push: PushClient) -> None:
    """Changing the body after signing breaks the signature: 401 and no change."""
    body = json.dumps({"group": "tamper"}).encode()
    headers = push_protocol.sign_request(server.secret, "POST", op("ungroup"), body)
    response = requests.post(
        server.api_url + op("get_all_group_id_list"), data=body, headers=headers, timeout=5
    )  # signed for another path
    assert_error(response, 401, "unauthorized")
    response = signed(server, op("ungroup"), {"group": "a"}, send_body=json.dumps({"group": "b"}).encode())
    assert_error(response, 401, "unauthorized", "bad signature")


def test_stale_timestamp_is_refused(server: PushServerProcess) -> None:
    """A correctly signed request from outside the ±300 s window gets 401."""
    body = b"{}"
    path = op("get_all_client_count")
    old = str(int(time.time()) - push_protocol.SIGNATURE_WINDOW - 5)
    mac = push_protocol.hmac.new(
        server.secret.encode(), push_protocol._string_to_sign("POST", path, old, "n1", body), "sha256"
    ).hexdigest()
    headers = {
        push_protocol.HEADER_TIMESTAMP: old,
        push_protocol.HEADER_NONCE: "n1",
        push_protocol.HEADER_SIGNATURE: mac,
    }
    response = requests.post(server.api_url + path, data=body, headers=headers, timeout=5)
    assert_error(response, 401, "unauthorized", "window")


def test_replayed_request_is_refused(server: PushServerProcess) -> None:
    """Sending the same signed request twice: the second is refused as a replay."""
    body = b"{}"
    path = op("get_all_client_count")
    headers = push_protocol.sign_request(server.secret, "POST", path, body)
    first = requests.post(server.api_url + path, data=body, headers=headers, timeout=5)
    again = requests.post(server.api_url + path, data=body, headers=headers, timeout=5)
    assert first.status_code == 200
    assert_error(again, 401, "unauthorized", "replay")


def test_a_nonce_is_kept_while_its_timestamp_is_accepted_and_not_much_longer() -> None:
    """The nonce's lifetime follows its timestamp: the rest of the window plus the clock slack."""
    window = push_protocol.SIGNATURE_WINDOW
    now = time.time()
    for sent, left in ((now, window), (now - window + 40, 40), (now + window, 2 * window)):
        assert nonce_ttl(str(int(sent))) == pytest.approx(left + NONCE_CLOCK_SLACK, abs=1.5)
    # At the very edge of the window the nonce still outlives the request by the slack.
    assert nonce_ttl(str(int(now - window))) >= NONCE_CLOCK_SLACK


def test_authentication_comes_before_validation(server: PushServerProcess) -> None:
    """Garbage without a valid signature is 401, not 400 or 404: nothing is revealed."""
    for path, body in [(op("bind_uid"), b"not json"), ("/nowhere", b""), (op("no_such_op"), b"{}")]:
        response = requests.post(server.api_url + path, data=body, timeout=5)
        assert response.status_code == 401, path
    assert requests.get(server.api_url + op("is_online"), timeout=5).status_code == 401


# -- validation: 400 naming the field, 404, 413 --------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "payload", "mentions"),
    [
        ("bind_uid", {"client_id": "x"}, "uid: is required"),
        ("bind_uid", {"client_id": "x", "uid": True}, "uid: expected `int | str`, got `bool`"),
        ("bind_uid", {"client_id": "x", "uid": ""}, "uid: expected `str` of length >= 1"),
        ("join_group", {"client_id": 5, "group": "g"}, "client_id: expected `str`, got `int`"),
        ("join_group", {"client_id": "x", "group": "g" * 300}, "group: expected `str` of length <= 256"),
        ("send_to_uid", {"uids": [], "message": {"text": "x"}}, "uids: expected `array` of length >= 1"),
        ("send_to_uid", {"uids": ["a", None], "message": {"text": "x"}}, "uids[1]"),
        ("send_to_group", {"groups": "g", "message": "bare"}, "message: expected `object`, got `str`"),
        ("send_to_group", {"groups": "g", "message": {"text": 1}}, "message.text: must be a string"),
        ("send_to_group", {"groups": "g", "message": {"binary": "***"}}, "message.binary: is not valid base64"),
        ("send_to_group", {"groups": "g", "message": {"html": "x"}}, 'unknown message kind "html"'),
        (
            "send_to_all",
            {"message": {"text": "x"}, "client_ids": "abc"},
            "client_ids: expected `array | null`, got `str`",
        ),
        ("set_session", {"client_id": "x", "session": [1]}, "session: must be a JSON object"),
        ("ungroup", {"group": "g", "extra": 1}, "extra: is not an argument of ungroup"),
    ],
)
def test_malformed_arguments_name_the_field(
    server: PushServerProcess, operation: str, payload: Any, mentions: str
) -> None:
    """A wrong argument gets 400 with a message naming the field and the problem."""
    assert_error(signed(server, op(operation), payload), 400, "invalid_argument", mentions)


def test_body_that_is_not_a_json_object(server: PushServerProcess) -> None:
    """A body that is not JSON, or not an object, gets 400 bad_request."""
    assert_error(signed(server, op("ungroup"), b"{not json"), 400, "bad_request", "not valid JSON")
    assert_error(signed(server, op("ungroup"), [1, 2]), 400, "bad_request", "JSON object")


def test_unknown_operation_is_404(server: PushServerProcess) -> None:
    """A signed call to an operation that does not exist gets 404 unknown_operation."""
    assert_error(signed(server, op("send_to_mars"), {}), 404, "unknown_operation")


def test_oversized_message_and_batch_are_413(server: PushServerProcess, push: PushClient) -> None:
    """A message over the size limit, or a batch over the operation limit, gets 413 and applies nothing."""
    with pytest.raises(PushRequestError) as too_big:
        push.send_to_all("x" * (1024 * 1024 + 1))
    assert (too_big.value.status, too_big.value.code) == (413, "too_large")
    batch = push.batch()
    for _ in range(10_001):
        batch.ungroup("g")
    with pytest.raises(PushRequestError) as too_many:
        batch.send()
    assert too_many.value.status == 413


def test_body_over_the_limit_is_413_after_authentication(make_push_server: Any) -> None:
    """A signed body over the body limit gets 413; an unsigned one still gets 401."""
    server = make_push_server().start()
    big = json.dumps({"group": "g" * (17 * 1024 * 1024)}).encode()
    assert signed(server, op("ungroup"), big).status_code == 413
    assert requests.post(server.api_url + op("ungroup"), data=big, timeout=10).status_code == 401


def test_server_stays_up_after_bad_input(server: PushServerProcess, push: PushClient) -> None:
    """After every kind of bad request the server still answers good ones."""
    for payload in (b"", b"\xff\xfe", b"[" * 10000, b'{"client_id":' + b"9" * 5000 + b"}"):
        assert signed(server, op("get_session"), payload).status_code in (400,)
    assert push.get_all_client_count() >= 0


def test_push_client_errors_are_its_own(server: PushServerProcess) -> None:
    """Cannot connect raises PushConnectionError; a refusal carries status, code and message."""
    from ..servers import free_port

    with pytest.raises(PushConnectionError):
        PushClient(f"http://127.0.0.1:{free_port()}", secret=server.secret, timeout=1).is_online("x")
    with pytest.raises(PushRequestError) as refused:
        server.client().bind_uid("x", {"no": "dict"})  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.code) == (400, "invalid_argument")
    assert "uid" in refused.value.message
    assert "secret" not in repr(server.client())


def test_a_server_that_never_answers_raises_push_timeout_error() -> None:
    """A push server that accepts but never answers makes calls fail with PushTimeoutError within the timeout."""
    import socket
    import time as clock

    from push_client import PushTimeoutError

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = PushClient(f"http://127.0.0.1:{port}", secret="some-secret-0123456789", timeout=0.5)
        started = clock.monotonic()
        with pytest.raises(PushTimeoutError):
            client.is_online("x")
        assert clock.monotonic() - started < 3


# -- the batch endpoint on the wire ----------------------------------------------------------


def test_nan_and_infinity_are_not_json(server: PushServerProcess) -> None:
    """NaN and Infinity (which Python's json would accept) are refused as invalid JSON."""
    path = op("send_to_all")
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"message": {"json": ' + literal + b"}}"
        assert_error(signed(server, path, body), 400, "bad_request", "not valid JSON")
    body = b'{"operations": [["set_session", "abc", {"x": NaN}]]}'
    assert_error(signed(server, push_protocol.BATCH_PATH, body), 400, "bad_request", "not valid JSON")


def test_batch_answer_is_a_list_of_results(server: PushServerProcess) -> None:
    """A batch is answered with one plain result per operation, in order, and no errors."""
    body = {
        "operations": [["get_all_client_count"], {"op": "is_online", "args": {"client_id": "x"}}, ["get_session", "x"]]
    }
    response = signed(server, push_protocol.BATCH_PATH, body)
    assert response.status_code == 200
    assert response.json() == {"results": [0, False, None], "errors": []}


def test_oversized_session_in_a_batch_is_named(server: PushServerProcess) -> None:
    """A session over the limit in a batch is 413 naming its operation; a malformed one is found first (shape before sizes)."""
    big = {"k": "x" * (64 * 1024)}
    fine = {"k": "x" * 100}
    operations = [["set_session", "a", fine], ["update_session", "b", big], ["bind_uid", "c", "d"]]
    response = signed(server, push_protocol.BATCH_PATH, {"operations": operations})
    assert_error(response, 413, "too_large", "operations[1].session:")
    operations = [["set_session", "a", fine], ["update_session", "b", big], ["bind_uid", "c", ""]]
    response = signed(server, push_protocol.BATCH_PATH, {"operations": operations})
    assert_error(response, 400, "invalid_argument", "operations[2].uid:")
    # Many sessions that are each within the limit are fine, whatever their total.
    operations = [["set_session", f"c{i}", {"k": "x" * 60_000}] for i in range(3)]
    assert signed(server, push_protocol.BATCH_PATH, {"operations": operations}).status_code == 200


async def test_compact_named_and_integer_forms_agree(
    server: PushServerProcess, browsers: Any, push: PushClient
) -> None:
    """A compact batch (with integer uids, the general path) leaves the same state as named calls."""
    import uuid

    first, second = await browsers(), await browsers()
    group = f"forms-{uuid.uuid4().hex[:8]}"
    operations = [
        ["bind_uid", first.client_id, 4242],
        {"op": "bind_uid", "args": {"client_id": second.client_id, "uid": "4243"}},
        ["join_group", first.client_id, group],
        ["join_group", second.client_id, group],
        ["set_session", first.client_id, {"n": 1}],
        ["get_uid_list_by_group", group],
        ["get_client_sessions_by_group", group],
    ]
    response = signed(server, push_protocol.BATCH_PATH, {"operations": operations})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert sorted(results[5]) == ["4242", "4243"]
    assert results[6] == {first.client_id: {"n": 1}, second.client_id: {}}
    assert push.get_uid_by_client_id(first.client_id) == "4242"


def test_access_log_only_when_debugging(make_push_server: Any) -> None:
    """Requests are logged (method, path, status; never the query) at DEBUG, and not at the default level."""
    quiet = make_push_server().start()
    loud = make_push_server("--log-level", "DEBUG").start()
    for server in (quiet, loud):
        body = b"{}"
        path = op("get_all_client_count")
        headers = push_protocol.sign_request(server.secret, "POST", path, body)
        response = requests.post(server.api_url + path + "?token=secret-looking", data=body, headers=headers, timeout=5)
        assert response.status_code == 401  # the query string is part of what is signed
        assert server.client().get_all_client_count() == 0
        # aiohttp writes the access line after the answer has gone out, so the
        # client can read the answer first: stopping the server settles the log.
        server.stop()
    assert "get_all_client_count" not in quiet.log()
    log = loud.log()
    assert f"POST {path} 200" in log and f"POST {path} 401" in log
    assert "secret-looking" not in log


# -- bad input never stored, never a 500 (issue 14, items 6-9) ---------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (op("bind_uid"), rb'{"client_id": "c", "uid": "\ud800"}', "uid"),
        (op("join_group"), rb'{"client_id": "c", "group": "a\udc00b"}', "group"),
        (op("set_session"), rb'{"client_id": "c", "session": {"k\ud800": 1}}', "session"),
        (
            push_protocol.BATCH_PATH,
            rb'{"operations": [["ungroup", "g"], ["bind_uid", "\ud83d", "u"]]}',
            "operations[1].client_id",
        ),
    ],
)
def test_a_lone_surrogate_is_refused_naming_the_field(
    server: PushServerProcess, path: str, body: bytes, field: str
) -> None:
    """A lone UTF-16 surrogate anywhere is a 400 naming the field, never stored (a pair is fine)."""
    assert_error(signed(server, path, body), 400, "invalid_argument", f"{field}")
    assert signed(server, op("bind_uid"), rb'{"client_id": "c", "uid": "\ud83d\ude00"}').status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (op("send_to_all"), b'{"message": {"json": {"x": 1e400}}}', "message.json"),
        (op("send_to_all"), b'{"message": {"json": [-1e400]}}', "message.json"),
        (op("set_session"), b'{"client_id": "c", "session": {"x": 1e400}}', "session"),
        (push_protocol.BATCH_PATH, b'{"operations": [["set_session", "c", {"x": -1e999}]]}', "operations[0].session"),
    ],
)
def test_an_infinite_number_is_refused(server: PushServerProcess, path: str, body: bytes, field: str) -> None:
    """A number that would become ±Infinity (not JSON for any browser) is a 400 naming the field."""
    assert_error(signed(server, path, body), 400, "invalid_argument", field)


@pytest.mark.parametrize(
    ("path", "body", "mentions"),
    [
        (op("bind_uid"), b'{"client_id": "a", "client_id": "b", "uid": "u"}', "duplicate key 'client_id'"),
        (op("set_session"), b'{"client_id": "c", "session": {"k": 1, "k": 2}}', "duplicate key 'k'"),
        (op("send_to_all"), b'{"message": {"json": {"a": {"b": 1, "b": 2}}}}', "duplicate key 'b'"),
        (
            push_protocol.BATCH_PATH,
            b'{"operations": [["set_session", "c", {"k" : 1, "k" : 2}]]}',
            "operations[0].session",
        ),
        (
            push_protocol.BATCH_PATH,
            b'{"operations": [["ungroup", "g"]], "operations": []}',
            "duplicate key 'operations'",
        ),
        (
            push_protocol.BATCH_PATH,
            b'{"operations": [{"op": "ungroup", "args": {"group": "a", "group": "b"}}]}',
            "operations[0].args",
        ),
    ],
)
def test_a_duplicate_key_is_refused(server: PushServerProcess, path: str, body: bytes, mentions: str) -> None:
    """An object giving a key twice is a 400 (the last one no longer wins silently)."""
    assert_error(signed(server, path, body), 400, "invalid_argument", mentions)


def test_a_string_that_looks_like_a_key_is_not_a_duplicate(server: PushServerProcess, push: PushClient) -> None:
    """A session value holding quote-colon text is accepted: the duplicate check only refuses real repeats."""
    body = b'{"operations": [["set_session", "nobody", {"a": "x\\":", "b": {"c": "\\" :"}}]]}'
    assert signed(server, push_protocol.BATCH_PATH, body).status_code == 200


def _raw_request(server: PushServerProcess, head: bytes, body: bytes = b"", wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``head`` (and part of a body), read the answer without finishing; (answer, seconds it took)."""
    import socket

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.api_port), timeout=wait) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        # The answer's body, if it came in the same read or the next.
        try:
            sock.settimeout(0.5)
            answer += sock.recv(65536)
        except OSError:
            pass
    return answer, time.monotonic() - started


def _signed_head(server: PushServerProcess, path: str, length: int, body: bytes = b"") -> bytes:
    headers = push_protocol.sign_request(server.secret, "POST", path, body)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{lines}\r\n".encode()


def test_an_unsigned_request_is_refused_before_its_body_is_read(server: PushServerProcess) -> None:
    """Without signature headers the answer is 401 at once, without waiting for the announced body."""
    head = f"POST {op('ungroup')} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n".encode()
    answer, took = _raw_request(server, head, b"{")
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert took < 2


def test_an_announced_body_over_the_limit_is_refused_unread(server: PushServerProcess) -> None:
    """A signed-looking request announcing more than the body limit gets 413 before any body arrives."""
    answer, took = _raw_request(server, _signed_head(server, op("ungroup"), 17 * 1024 * 1024))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too_large"' in answer and took < 2


def test_a_stalled_body_is_answered_408_at_the_deadline(make_push_server: Any) -> None:
    """A body that stops arriving is refused when the read deadline passes, not held forever."""
    server = make_push_server("--body-read-timeout", "0.5").start()
    answer, took = _raw_request(server, _signed_head(server, op("ungroup"), 1000), b'{"group": ', wait=10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert 0.4 < took < 5


def test_a_client_leaving_mid_body_is_not_an_error(make_push_server: Any) -> None:
    """A client that aborts in the middle of its body leaves no ERROR or traceback in the log."""
    import socket

    server = make_push_server().start()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.api_port), timeout=5) as sock:
            sock.sendall(_signed_head(server, op("ungroup"), 1000) + b'{"group": ')
            time.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    assert server.client().get_all_client_count() == 0
    server.stop()
    log = server.log()
    assert "ERROR" not in log and "Traceback" not in log, log


def test_a_newline_in_the_path_never_forges_an_access_log_line(make_push_server: Any) -> None:
    """A %0a (or %0d) in the path is escaped in the access log: no line the requester wrote."""
    server = make_push_server("--log-level", "DEBUG").start()
    requests.post(server.api_url + "/api/v1/x%0a2026-01-01 FORGED admin login ok%0d", data=b"{}", timeout=5)
    server.client().get_all_client_count()
    server.stop()
    lines = server.log().splitlines()
    assert not any(line.startswith("2026-01-01 FORGED") for line in lines), lines
    assert any("FORGED" in line and "\\n" in line for line in lines)


def test_one_huge_batch_does_not_stall_other_clients(make_push_server: Any) -> None:
    """While a big signed batch is applied, other calls are still answered promptly (work is sliced).

    With slicing off (``--batch-slice-seconds 100``) the probes wait for the whole batch and this fails.
    """
    import threading

    server = make_push_server().start()
    push = server.client(timeout=30)
    uids = [f"u{i}" for i in range(150)]
    operations = [["send_to_uid", uids, {"text": "x" * 50}, None] for _ in range(6000)]
    operations = [op if i % 2 else ["get_uid_count_by_group", f"g{i}"] for i, op in enumerate(operations)]
    body = json.dumps({"operations": operations}).encode()
    done = threading.Event()
    latencies: list[float] = []

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            push.get_all_client_count()
            latencies.append(time.monotonic() - started)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        started = time.monotonic()
        assert signed(server, push_protocol.BATCH_PATH, body).status_code == 200
        took = time.monotonic() - started
    finally:
        done.set()
        thread.join()
    # The probes ran during the batch, each answered far sooner than the batch took.
    assert len(latencies) >= 3, (latencies, took)
    assert max(latencies) < max(0.25, took / 3), (max(latencies), took)


def test_a_large_batch_names_its_malformed_operation(server: PushServerProcess) -> None:
    """A batch large enough to be decoded in slices still refuses a bad operation by its index and field."""
    operations: list[Any] = [["join_group", "c" * 40, "g" * 40] for _ in range(4000)]
    operations[3210] = ["join_group", "c", True]
    response = signed(server, push_protocol.BATCH_PATH, {"operations": operations})
    assert_error(response, 400, "invalid_argument", "operations[3210].group:")
    operations[3210] = ["join_group", "c", "g"]
    assert signed(server, push_protocol.BATCH_PATH, {"operations": operations}).status_code == 200
