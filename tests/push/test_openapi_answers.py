"""docs/openapi.yaml against a real push server: what the document shows is accepted, and what the server answers fits it.

Every documented example (each operation's, the batch's in both forms, all
operations in one batch) is answered 200 with an answer that fits the documented
schema; so are the queries about a live connection, and the unsigned GETs
(/metrics, and /healthz's 503 while Redis is away).
"""

from __future__ import annotations

import base64
import inspect
import json
from typing import Any

import aiohttp
import pytest
import requests

import push_protocol

from ..servers import TIMEOUT, PushServerProcess, started_redis
from ..waiting import wait_until
from .openapi_doc import (
    DOC,
    OPERATIONS,
    accepts,
    answer_schema_name,
    compact,
    memory_server,  # noqa: F401 - the fixture `server` of this module
    params,
    post_of,
    request_example,
    schema_of,
    signed_post,
)


@pytest.mark.parametrize("op", OPERATIONS)
def test_example_request_is_accepted(server: PushServerProcess, op: str) -> None:
    """The operation's documented example, sent signed, is answered 200 with an answer that fits its schema."""
    response = signed_post(server, push_protocol.operation_path(op), request_example(op))
    assert response.status_code == 200, response.text
    answer = response.json()
    errors = list(schema_of(answer_schema_name(op)).iter_errors(answer))
    assert not errors, errors


def test_batch_examples_are_accepted(server: PushServerProcess) -> None:
    """The batch endpoint's examples (compact and named) are answered alike: 200 with one result per operation."""
    examples = DOC["paths"][push_protocol.BATCH_PATH]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"compact", "named"}
    answers = []
    for example in examples.values():
        body = example["value"]
        response = signed_post(server, push_protocol.BATCH_PATH, body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert accepts("BatchAnswer", answer), answer
        assert len(answer["results"]) == len(body["operations"])
        assert answer["errors"] == []
        answers.append(answer)
    assert answers[0] == answers[1]


@pytest.mark.parametrize("form", ["compact", "named"])
def test_every_operation_in_one_batch_is_accepted(server: PushServerProcess, form: str) -> None:
    """A batch of every operation's example, in either form, fits BatchRequest, runs, and each result fits its operation's schema."""
    if form == "compact":
        operations: list[Any] = [compact(op, request_example(op)) for op in OPERATIONS]
    else:
        operations = [{"op": op, "args": request_example(op)} for op in OPERATIONS]
    body = {"operations": operations}
    assert accepts("BatchRequest", body)
    response = signed_post(server, push_protocol.BATCH_PATH, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert accepts("BatchAnswer", answer) and answer["errors"] == []
    for op, result in zip(OPERATIONS, answer["results"], strict=True):
        assert accepts(answer_schema_name(op), {"result": result}), (op, result)


def test_compact_calls_may_leave_out_trailing_optional_arguments(server: PushServerProcess) -> None:
    """A compact call without its trailing optional arguments, or with them null, fits the schema and is accepted."""
    message = {"text": "x"}
    operations = [
        ["send_to_all", message],
        ["send_to_all", message, None, None],
        ["send_to_all", message, None, []],
        ["close_client", "nobody-online"],
        ["send_to_group", "g", message],
    ]
    body = {"operations": operations}
    assert accepts("BatchRequest", body)
    response = signed_post(server, push_protocol.BATCH_PATH, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [None] * len(operations), "errors": []}


async def test_answers_about_a_live_connection_fit_their_schemas(server: PushServerProcess) -> None:
    """With a real browser bound, grouped and given a session, every query's answer fits its documented schema."""
    async with aiohttp.ClientSession() as session:  # noqa: SIM117 (the socket is made from the session)
        async with session.ws_connect(server.ws_url) as ws:
            init = json.loads((await ws.receive(timeout=TIMEOUT)).data)
            client_id = init["client_id"]
            assert accepts("ClientId", client_id)
            group = f"openapi-{client_id}"
            setup = [
                ("bind_uid", {"client_id": client_id, "uid": 4242}),
                ("join_group", {"client_id": client_id, "group": group}),
                ("set_session", {"client_id": client_id, "session": {"name": "alice", "n": 1}}),
            ]
            for op, args in setup:
                assert signed_post(server, push_protocol.operation_path(op), args).status_code == 200
            answers = {}
            for op in OPERATIONS:
                if op.startswith(
                    ("send_", "close_", "bind_", "unbind_", "join_", "leave_", "ungroup", "set_", "update_")
                ):
                    continue
                args = {}
                for name, _ in params(op):
                    args[name] = {"client_id": client_id, "uid": 4242, "group": group}[name]
                response = signed_post(server, push_protocol.operation_path(op), args)
                assert response.status_code == 200, response.text
                answers[op] = response.json()
                errors = list(schema_of(answer_schema_name(op)).iter_errors(answers[op]))
                assert not errors, (op, errors)
            # Not just empty answers: the connection was really seen.
            assert answers["get_session"]["result"] == {"name": "alice", "n": 1}
            assert answers["get_uid_by_client_id"]["result"] == "4242"
            assert answers["get_client_sessions_by_group"]["result"] == {client_id: {"name": "alice", "n": 1}}
            assert answers["get_uid_list_by_group"]["result"] == ["4242"]
            # A pushed message arrives as the Message schema says: binary as a binary frame.
            payload = b"\x00\x01\xfe"
            message = {"binary": base64.b64encode(payload).decode()}
            assert accepts("Message", message)
            response = signed_post(
                server, push_protocol.operation_path("send_to_client"), {"client_id": client_id, "message": message}
            )
            assert response.status_code == 200
            frame = await ws.receive(timeout=TIMEOUT)
            while frame.type == aiohttp.WSMsgType.TEXT and frame.data == '{"type":"ping"}':
                frame = await ws.receive(timeout=TIMEOUT)
            assert (frame.type, frame.data) == (aiohttp.WSMsgType.BINARY, payload)


def test_empty_body_counts_as_no_arguments(server: PushServerProcess) -> None:
    """An empty body is `{}`, so an operation without required arguments accepts it (requestBody not required)."""
    assert post_of("get_all_client_count")["requestBody"]["required"] is False
    response = signed_post(server, push_protocol.operation_path("get_all_client_count"), body=b"")
    assert response.status_code == 200
    assert accepts(answer_schema_name("get_all_client_count"), response.json())


def assert_documented_get(response: requests.Response, path: str) -> None:
    """An unsigned GET's answer has a status and media type the document names, and fits that schema."""
    responses = DOC["paths"][path]["get"]["responses"]
    assert str(response.status_code) in responses, (path, response.status_code, response.text)
    media_type = response.headers["Content-Type"].split(";")[0]
    content = responses[str(response.status_code)]["content"][media_type]
    body = response.json() if media_type == "application/json" else response.text
    assert schema_of(content["schema"]["$ref"]).is_valid(body), (path, body)


def test_monitoring_answers_fit_the_document(server: PushServerProcess) -> None:
    """Every documented GET answers 200 unsigned as documented; /metrics and its example parse as Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    paths = [path for path, item in DOC["paths"].items() if "get" in item]
    assert paths
    for path in paths:
        response = requests.get(server.api_url + path, timeout=TIMEOUT)
        assert response.status_code == 200, (path, response.text)
        assert_documented_get(response, path)
    metrics = requests.get(server.api_url + "/metrics", timeout=TIMEOUT).text
    assert "push_up" in {family.name for family in text_string_to_metric_families(metrics)}
    (example,) = DOC["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"]["examples"].values()
    assert {family.name for family in text_string_to_metric_families(example["value"])} <= {
        family.name for family in text_string_to_metric_families(metrics)
    }


def test_healthz_503_is_as_documented() -> None:
    """/healthz answers the documented 503 while Redis is away, and the documented reasons are the server's."""
    from push_server import metrics

    with started_redis() as redis_server, PushServerProcess("--redis-url", redis_server.url) as node:
        redis_server.stop()
        answer = lambda: requests.get(node.api_url + "/healthz", timeout=TIMEOUT)  # noqa: E731
        wait_until(lambda: answer().status_code == 503, timeout=TIMEOUT * 3, what="503 while Redis is away")
        assert_documented_get(answer(), "/healthz")
    # The other reason (draining) lasts only while a node shuts down: its text is checked in the code.
    examples = DOC["paths"]["/healthz"]["get"]["responses"]["503"]["content"]["application/json"]["examples"]
    for example in examples.values():
        assert f'"{example["value"]["reason"]}"' in inspect.getsource(metrics.handle_health), example
