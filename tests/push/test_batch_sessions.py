"""A batch's sessions are checked together (operations.sessions): each refusal still names its operation."""

from __future__ import annotations

from typing import Any

import pytest

import push_protocol
from push_client import PushClient

from ..servers import PushServerProcess
from .test_api import assert_error, signed

BATCH = push_protocol.BATCH_PATH


@pytest.fixture(scope="module")
def server() -> Any:
    """One in-memory push server for the module."""
    with PushServerProcess() as process:
        yield process


def _sessions(count: int) -> list[Any]:
    return [["set_session", f"c{i}", {"name": f"user {i}", "room": i % 7}] for i in range(count)]


@pytest.mark.parametrize("index", [0, 63, 64, 150])
def test_a_repeated_key_in_any_session_of_a_batch_is_named(server: PushServerProcess, index: int) -> None:
    """A session repeating a key is a 400 naming its operation, wherever it falls among the others."""
    operations = _sessions(200)
    body = signed_body(operations, index, b'{"k": 1, "k": 2}')
    assert_error(
        signed(server, BATCH, body), 400, "invalid_argument", f"operations[{index}].session: duplicate key 'k'"
    )


def test_a_repeated_key_in_a_nested_object_of_a_session_is_named(server: PushServerProcess) -> None:
    """A repeat inside a nested object of one session is found, with others nested too."""
    operations: list[Any] = [["set_session", f"c{i}", {"a": {"b": [1, {"c": i}]}}] for i in range(100)]
    body = signed_body(operations, 70, b'{"a": {"b": 1, "b": 2}, "c": [1]}')
    assert_error(signed(server, BATCH, body), 400, "invalid_argument", "operations[70].session: duplicate key 'b'")


def test_colons_and_braces_inside_strings_are_not_repeats(server: PushServerProcess, push: PushClient) -> None:
    """Values full of colons, quotes and braces are stored as sent: only real repeats are refused."""
    tricky = {"url": "http://x:80/a?b=c:d", "t": '"k": {"k": 1}, [', "n": {"x:": 'y\\":'}}
    operations = [["set_session", f"c{i}", tricky] for i in range(70)]
    assert signed(server, BATCH, {"operations": operations}).status_code == 200


def test_a_session_that_is_not_an_object_is_named(server: PushServerProcess) -> None:
    """A session that is an array (or a number) is a 400 naming its operation."""
    for bad in (b"[1, 2]", b"7"):
        body = signed_body(_sessions(100), 80, bad)
        assert_error(signed(server, BATCH, body), 400, "invalid_argument", "operations[80].session")


def test_an_infinite_number_in_one_session_of_many_is_named(server: PushServerProcess) -> None:
    """A number out of range in one session of many is a 400 naming that operation."""
    body = signed_body(_sessions(100), 99, b'{"x": 1e999}')
    assert_error(signed(server, BATCH, body), 400, "invalid_argument", "operations[99].session")


def test_the_first_refusal_in_order_is_the_one_answered(server: PushServerProcess) -> None:
    """A bad session before a bad message is the one named, though sessions are checked later in a group."""
    operations: list[Any] = _sessions(10)
    operations.append(["send_to_all", {"kind": "unknown"}])
    body = signed_body(operations, 3, b'{"k": 1, "k": 2}')
    assert_error(signed(server, BATCH, body), 400, "invalid_argument", "operations[3].session")
    operations[3] = ["set_session", "c3", {"k": 1}]
    assert_error(signed(server, BATCH, {"operations": operations}), 400, "invalid_argument", "operations[10].message")


def test_an_oversized_session_among_many_is_413_naming_it(server: PushServerProcess) -> None:
    """Sessions each under the limit pass whatever their total; the one over it is named."""
    operations: list[Any] = [["update_session", f"c{i}", {"k": "é" * 10_000}] for i in range(20)]
    assert signed(server, BATCH, {"operations": operations}).status_code == 200
    operations[12] = ["update_session", "c12", {"k": "x" * 70_000}]
    assert_error(signed(server, BATCH, {"operations": operations}), 413, "too_large", "operations[12].session:")


async def test_sessions_of_a_batch_are_stored_as_sent(server: PushServerProcess, browsers: Any) -> None:
    """Sessions set by one batch (named and compact, set and update) are each stored whole."""
    clients = [await browsers() for _ in range(3)]
    ids = [client.client_id for client in clients]
    operations: list[Any] = [
        ["set_session", ids[0], {"a": 1, "nested": {"b": [1, 2]}}],
        {"op": "set_session", "args": {"client_id": ids[1], "session": {"x": "y:z"}}},
        ["set_session", ids[2], {"n": 0}],
        ["update_session", ids[2], {"m": 1}],
        ["get_session", ids[0]],
        ["get_session", ids[1]],
        ["get_session", ids[2]],
    ]
    response = signed(server, BATCH, {"operations": operations})
    assert response.status_code == 200, response.text
    assert response.json()["results"][4:] == [{"a": 1, "nested": {"b": [1, 2]}}, {"x": "y:z"}, {"n": 0, "m": 1}]


def signed_body(operations: list[Any], index: int, session: bytes) -> bytes:
    """The batch body with operation ``index`` replaced by a set_session whose session is ``session`` as is."""
    import json

    placeholder = "\u0000session\u0000"
    operations = list(operations)
    operations[index] = ["set_session", f"c{index}", placeholder]
    text = json.dumps({"operations": operations}).encode()
    return text.replace(json.dumps(placeholder).encode(), session)
