"""docs/openapi.yaml against the real server, so the document and the API cannot drift apart.

The document is read as data: its POST paths must be exactly push_protocol.OPERATIONS
(plus the batch endpoint), its methods and paths exactly the routes the app serves
(so the unsigned GET /metrics and /healthz too), each operation's argument schema
must have exactly the parameters OPERATIONS names (required and optional alike),
every example must be accepted by a real push server and every answer must fit
the documented schema.
Malformed bodies of every kind must be refused by the schema *and* by the server,
with the statuses the document names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import re
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests

# The document's readers are in setup.cfg's `test` extra; without them this module is
# skipped (loudly, in pytest's summary) rather than breaking collection of the suite.
yaml = pytest.importorskip("yaml", reason="needs PyYAML (the test extra)")
pytest.importorskip("jsonschema", reason="needs jsonschema (the test extra)")

from jsonschema import Draft202012Validator, ValidationError, validators  # noqa: E402
from referencing import Registry, Resource  # noqa: E402
from referencing.jsonschema import DRAFT202012  # noqa: E402

import push_protocol  # noqa: E402
from push_protocol import ErrorCode  # noqa: E402
from push_server.api.auth import NONCE_CLOCK_SLACK  # noqa: E402

from ..servers import ROOT, TEST_SECRET, TIMEOUT, PushServerProcess, started_redis  # noqa: E402
from ..waiting import wait_until  # noqa: E402

DOC_PATH = ROOT / "docs" / "openapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text(encoding="utf-8"))
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]
_REGISTRY = Registry().with_resource("urn:openapi", Resource.from_contents(DOC, default_specification=DRAFT202012))


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # JSON Schema patterns are ECMA-262, where "$" (without the m flag) matches only at
    # the very end; Python's "$" also matches before a final newline. Read it as "\Z".
    if isinstance(instance, str):
        python_pattern = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        if not re.search(python_pattern, instance):
            yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})

OPERATIONS = list(push_protocol.OPERATIONS)

#: The keys of an OpenAPI path item that are HTTP methods (the others describe the path).
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

#: The schema each parameter name must use: the document's "kinds of argument".
PARAMETER_KINDS = {
    "client_id": "ClientId",
    "uid": "Id",
    "group": "Id",
    "uids": "IdOrIds",
    "groups": "IdOrIds",
    "client_ids": "ClientIdArray",
    "exclude_client_ids": "ClientIdArray",
    "message": "Message",
    "session": "Session",
    "idempotency_key": "IdempotencyKey",
}

#: Values of each kind that the server must refuse with 400 (and the schema must refuse too).
MALFORMED: dict[str, list[Any]] = {
    "ClientId": ["", 42, True, "x" * 257, ["abc"], {"id": "abc"}],
    "Id": ["", True, 1.5, "x" * 257, [1], {"uid": 1}],
    "IdOrIds": [[], [True], [""], [["a"]], ["x" * 257], 1.5, {"a": 1}],
    "ClientIdArray": ["abc", [1], [""], [None], {"a": 1}],
    "Message": [
        {},
        "hello",
        ["hello"],
        {"text": 1},
        {"text": "a", "json": 1},
        {"binary": "QQ"},
        {"binary": "not base64!"},
        {"binary": 12},
        {"html": "<b>hi</b>"},
    ],
    "Session": [[], "x", 1, True],
    "IdempotencyKey": ["", 42, "k" * 201, ["k"], {"k": 1}],
}


# -- helpers ---------------------------------------------------------------------------------


def schema_of(ref_or_name: str) -> Any:
    """A validator for one schema of the document, with its $refs resolved in the document."""
    name = ref_or_name.rsplit("/", 1)[-1]
    return Validator({"$ref": f"urn:openapi#/components/schemas/{name}"}, registry=_REGISTRY)


def accepts(schema: str, value: Any) -> bool:
    """Whether the document's schema ``schema`` accepts ``value``."""
    return schema_of(schema).is_valid(value)


def documented_operations() -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, operation)`` for every method of every path in the document."""
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, operation


def post_of(op: str) -> dict[str, Any]:
    """The document's POST operation at an operation's path."""
    return DOC["paths"][push_protocol.operation_path(op)]["post"]  # type: ignore[no-any-return]


def args_schema_name(op: str) -> str:
    ref = post_of(op)["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return str(ref).rsplit("/", 1)[-1]


def answer_schema_name(op: str) -> str:
    ref = post_of(op)["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    return str(ref).rsplit("/", 1)[-1]


def request_example(op: str) -> Any:
    """The operation's documented example request body."""
    (example,) = post_of(op)["requestBody"]["content"]["application/json"]["examples"].values()
    return example["value"]


def params(op: str) -> list[tuple[str, bool]]:
    """``(name, optional)`` for each parameter of ``op``, as push_protocol.OPERATIONS says."""
    return [(param.rstrip("?"), param.endswith("?")) for param in push_protocol.OPERATIONS[op]]


def signed_post(
    server: PushServerProcess, path: str, payload: Any = None, body: bytes | None = None
) -> requests.Response:
    """POST ``payload`` (or raw ``body``) to ``path``, signed the way the document says."""
    if body is None:
        body = json.dumps(payload).encode()
    headers = push_protocol.sign_request(server.secret, "POST", path, body)
    headers["Content-Type"] = "application/json"
    return requests.post(server.api_url + path, data=body, headers=headers, timeout=TIMEOUT)


def assert_refused(response: requests.Response, status: int, field: str | None = None) -> None:
    """The answer is the documented error shape with ``status`` (and names ``field``)."""
    assert response.status_code == status, response.text
    answer = response.json()
    assert accepts("Error", answer), answer
    if field is not None:
        message = answer["error"]["message"]
        assert message.startswith(field) and message[len(field)] in ":[.", message


@pytest.fixture(scope="module")
def server() -> Iterator[PushServerProcess]:
    """One real push server (in-memory backend) for the module: every test uses fresh names."""
    with PushServerProcess() as process:
        yield process


# -- the document's shape ----------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    """The document validates as OpenAPI 3.1."""
    validate = pytest.importorskip(
        "openapi_spec_validator", reason="needs openapi-spec-validator (the test extra)"
    ).validate
    assert DOC["openapi"].startswith("3.1")
    validate(DOC)


def test_posts_are_exactly_the_operations_and_batch() -> None:
    """Every operation in OPERATIONS has its own POST path, and every POST is an operation or the batch."""
    posts = {path: item["post"] for path, item in DOC["paths"].items() if "post" in item}
    assert set(posts) == {push_protocol.operation_path(op) for op in OPERATIONS} | {push_protocol.BATCH_PATH}
    for path, operation in posts.items():
        assert path == push_protocol.operation_path(operation["operationId"])


def test_documented_routes_are_exactly_the_served_ones() -> None:
    """The document's methods and paths are the app's routes: the signed POSTs and the unsigned GETs."""
    from push_server.app import create_app
    from push_server.config import Config

    app = create_app(Config(secret=TEST_SECRET))
    served = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    # aiohttp answers HEAD wherever it answers GET (the document says so in words);
    # the API's catch-all ("*") answers any other path 404, described in info.
    gets = {path for method, path in served if method == "GET"}
    assert {path for method, path in served if method == "HEAD"} == gets
    assert len({route for route in served if route[0] == "*"}) == 1
    served = {(method, path) for method, path in served if method not in ("HEAD", "*")}
    documented = {(method.upper(), path) for path, item in DOC["paths"].items() for method in item if method in METHODS}
    assert documented == served
    assert gets, "no GET route served: /metrics and /healthz are missing"
    for path in gets:
        assert DOC["paths"][path]["get"]["security"] == [], f"{path} is served unsigned"


@pytest.mark.parametrize("op", OPERATIONS)
def test_arguments_match_operations(op: str) -> None:
    """The argument schema has exactly OPERATIONS' parameters, required and optional as marked, of the right kind."""
    schema = SCHEMAS[args_schema_name(op)]
    names = [name for name, _ in params(op)]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == names
    assert schema.get("required", []) == [name for name, optional in params(op) if not optional]
    assert post_of(op)["requestBody"]["required"] is any(not optional for _, optional in params(op))
    for name, optional in params(op):
        prop = schema["properties"][name]
        kind_ref = f"#/components/schemas/{PARAMETER_KINDS[name]}"
        if optional:
            assert prop["anyOf"] == [{"$ref": kind_ref}, {"type": "null"}], name
        else:
            assert prop == {"$ref": kind_ref}, name


def test_batch_calls_cover_every_operation() -> None:
    """The batch schema offers each operation once in each form, with that operation's own arguments."""
    assert SCHEMAS["BatchCall"]["oneOf"] == [
        {"$ref": "#/components/schemas/CompactCall"},
        {"$ref": "#/components/schemas/NamedCall"},
    ]
    named = [SCHEMAS[ref["$ref"].rsplit("/", 1)[-1]] for ref in SCHEMAS["NamedCall"]["oneOf"]]
    assert [call["properties"]["op"]["const"] for call in named] == OPERATIONS
    for op, call in zip(OPERATIONS, named, strict=False):
        assert call["properties"]["args"] == {"$ref": f"#/components/schemas/{args_schema_name(op)}"}
        needs_args = any(not optional for _, optional in params(op))
        assert call["required"] == (["op", "args"] if needs_args else ["op"]), op
    compact = [SCHEMAS[ref["$ref"].rsplit("/", 1)[-1]] for ref in SCHEMAS["CompactCall"]["oneOf"]]
    assert [call["prefixItems"][0]["const"] for call in compact] == OPERATIONS
    for op, call in zip(OPERATIONS, compact, strict=False):
        # The positions are the named arguments' properties, in their order and of their kinds.
        kinds = [
            {k: v for k, v in prop.items() if k != "description"}
            for prop in SCHEMAS[args_schema_name(op)]["properties"].values()
        ]
        assert call["prefixItems"][1:] == kinds, op
        assert call["minItems"] == 1 + sum(not optional for _, optional in params(op)), op
        assert call["items"] is False


def compact(op: str, args: dict[str, Any]) -> list[Any]:
    """An operation's named arguments as a compact batch call (absent optional ones as null)."""
    return [op, *(args.get(name) for name, _ in params(op))]


def test_error_codes_match_push_protocol() -> None:
    """The documented error codes are exactly push_protocol.ErrorCode's."""
    codes = {value for name, value in vars(ErrorCode).items() if name.isupper()}
    assert set(SCHEMAS["ErrorBody"]["properties"]["code"]["enum"]) == codes


def test_signature_scheme_matches_push_protocol() -> None:
    """The security schemes name push_protocol's headers and window, and the test vector verifies."""
    schemes = DOC["components"]["securitySchemes"]
    assert {scheme["name"] for scheme in schemes.values()} == {
        push_protocol.HEADER_TIMESTAMP,
        push_protocol.HEADER_NONCE,
        push_protocol.HEADER_SIGNATURE,
    }
    assert DOC["security"] == [{name: [] for name in schemes}]
    description = schemes["pushSignature"]["description"]
    assert f"{push_protocol.SIGNATURE_WINDOW} seconds" in description
    assert f"`timestamp + {push_protocol.SIGNATURE_WINDOW}`" in description
    assert f"plus {NONCE_CLOCK_SLACK:.0f} seconds" in description
    vector = schemes["pushSignature"]["x-test-vector"]
    body = vector["body"].encode()
    assert hashlib.sha256(body).hexdigest() == vector["body_sha256"]
    # Computed here from the document's words alone, then checked by the server's own verifier.
    text = "\n".join((vector["method"], vector["path"], vector["timestamp"], vector["nonce"], vector["body_sha256"]))
    assert hmac.new(vector["secret"].encode(), text.encode(), hashlib.sha256).hexdigest() == vector["signature"]
    headers = {
        push_protocol.HEADER_TIMESTAMP: vector["timestamp"],
        push_protocol.HEADER_NONCE: vector["nonce"],
        push_protocol.HEADER_SIGNATURE: vector["signature"],
    }
    problem = push_protocol.verify_request(
        vector["secret"], vector["method"], vector["path"], headers, body, now=int(vector["timestamp"])
    )
    assert problem is None
    for value in (vector["body"], vector["signature"], vector["body_sha256"]):
        assert value in description


def test_limits_match_the_server() -> None:
    """The limits the document states are the server's defaults."""
    from push_server.api import schema as api
    from push_server.config import Config

    config = Config(secret="x" * 16)
    assert f"{config.max_message_bytes:,} bytes" in SCHEMAS["Message"]["description"]
    assert f"{config.max_session_bytes:,} characters" in SCHEMAS["Session"]["description"]
    assert SCHEMAS["BatchRequest"]["properties"]["operations"]["maxItems"] == config.max_batch_operations
    assert SCHEMAS["IdOrIds"]["oneOf"][1]["maxItems"] == api.MAX_LIST_LENGTH
    assert SCHEMAS["ClientIdArray"]["maxItems"] == api.MAX_LIST_LENGTH
    assert SCHEMAS["ClientId"]["maxLength"] == api.MAX_ID_LENGTH
    assert SCHEMAS["Id"]["oneOf"][0]["maxLength"] == api.MAX_ID_LENGTH
    assert f"{config.max_body_bytes // 2**20} MiB" in DOC["info"]["description"]


def test_documented_examples_fit_their_schemas() -> None:
    """Every request and response example in the document fits the schema it illustrates."""
    checked = 0
    for path, operation in documented_operations():
        for status, response in operation["responses"].items():
            if "$ref" in response:
                response = DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
            for content in response.get("content", {}).values():
                for example in content.get("examples", {}).values():
                    assert schema_of(content["schema"]["$ref"]).is_valid(example["value"]), (path, status)
                    checked += 1
        if "requestBody" not in operation:  # a GET
            continue
        content = operation["requestBody"]["content"]["application/json"]
        assert content["examples"], path
        for example in content["examples"].values():
            errors = list(schema_of(content["schema"]["$ref"]).iter_errors(example["value"]))
            assert not errors, (path, errors)
            checked += 1
    assert checked >= 2 * len(DOC["paths"])


# -- the document against the server -------------------------------------------------------------


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


def _malformed_cases() -> Iterator[Any]:
    for op in OPERATIONS:
        for name, _optional in params(op):
            for index, value in enumerate(MALFORMED[PARAMETER_KINDS[name]]):
                yield pytest.param(op, name, value, id=f"{op}-{name}-{index}")


@pytest.mark.parametrize(("op", "name", "value"), list(_malformed_cases()))
def test_malformed_argument_is_refused(server: PushServerProcess, op: str, name: str, value: Any) -> None:
    """A malformed argument of any kind is refused by the schema and answered 400 naming the field."""
    body = {**request_example(op), name: value}
    assert not accepts(args_schema_name(op), body)
    assert_refused(signed_post(server, push_protocol.operation_path(op), body), 400, name)


@pytest.mark.parametrize(("op", "name", "value"), list(_malformed_cases()))
def test_malformed_argument_in_a_compact_batch_call_is_refused(
    server: PushServerProcess, op: str, name: str, value: Any
) -> None:
    """The same malformed argument in a compact batch call is refused by the schema and answered 400 naming the operation and field."""
    call = compact(op, {**request_example(op), name: value})
    body = {"operations": [compact("get_all_client_count", {}), call]}
    assert not accepts("BatchRequest", body)
    assert_refused(signed_post(server, push_protocol.BATCH_PATH, body), 400, f"operations[1].{name}")


@pytest.mark.parametrize("op", [op for op in OPERATIONS if any(not optional for _, optional in params(op))])
def test_missing_or_null_required_argument_is_refused(server: PushServerProcess, op: str) -> None:
    """Leaving out (or sending null for) a required argument is refused by the schema and answered 400."""
    for name, optional in params(op):
        if optional:
            continue
        for body in ({k: v for k, v in request_example(op).items() if k != name}, {**request_example(op), name: None}):
            assert not accepts(args_schema_name(op), body)
            assert_refused(signed_post(server, push_protocol.operation_path(op), body), 400, name)


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_unknown_argument_is_refused(server: PushServerProcess, op: str) -> None:
    """An argument the operation does not have (next to its required ones) is refused by the schema and answered 400 naming it."""
    required = {name for name, optional in params(op) if not optional}
    body = {**{k: v for k, v in request_example(op).items() if k in required}, "colour": "red"}
    assert not accepts(args_schema_name(op), body)
    assert_refused(signed_post(server, push_protocol.operation_path(op), body), 400, "colour")


@pytest.mark.parametrize("op", [op for op in OPERATIONS if any(optional for _, optional in params(op))])
def test_null_optional_argument_is_accepted(server: PushServerProcess, op: str) -> None:
    """An optional argument sent as null is accepted, as the schema says."""
    body = {**request_example(op), **{name: None for name, optional in params(op) if optional}}
    assert accepts(args_schema_name(op), body)
    assert signed_post(server, push_protocol.operation_path(op), body).status_code == 200


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"1", b"null", b"{", b"\xff"])
def test_body_that_is_not_an_object_is_refused(server: PushServerProcess, body: bytes) -> None:
    """A body that is not a JSON object is answered 400 bad_request."""
    response = signed_post(server, push_protocol.operation_path("get_all_client_count"), body=body)
    assert_refused(response, 400)
    assert response.json()["error"]["code"] == ErrorCode.BAD_REQUEST


def test_empty_body_counts_as_no_arguments(server: PushServerProcess) -> None:
    """An empty body is `{}`, so an operation without required arguments accepts it (requestBody not required)."""
    assert post_of("get_all_client_count")["requestBody"]["required"] is False
    response = signed_post(server, push_protocol.operation_path("get_all_client_count"), body=b"")
    assert response.status_code == 200
    assert accepts(answer_schema_name("get_all_client_count"), response.json())


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"operations": "get_all_client_count"},
        {"operations": [1]},
        {"operations": [{"op": "send_to_everyone", "args": {}}]},
        {"operations": [{"op": "ungroup"}]},
        {"operations": [{"op": "ungroup", "args": None}]},
        {"operations": [{"op": "get_all_client_count"}, {"op": "bind_uid", "args": {"client_id": "abc", "uid": ""}}]},
        {"operations": [], "atomic": True},
        {"operations": [[]]},
        {"operations": [[1, "abc"]]},
        {"operations": [["send_to_everyone"]]},
        {"operations": [["bind_uid", "abc"]]},
        {"operations": [["bind_uid", "abc", None]]},
        {"operations": [["bind_uid", "abc", 42, "extra"]]},
        {"operations": [["bind_uid", "abc", ""]]},
        {"operations": [["set_session", "abc", []]]},
        {"operations": [["get_all_client_count"], ["join_group", "abc", True]]},
        {"operations": [["ungroup", "g"], {"op": "ungroup", "args": {"group": ""}}]},
    ],
)
def test_malformed_batch_is_refused(server: PushServerProcess, body: Any) -> None:
    """A malformed batch, in either form, is refused by the schema and answered 400 naming the operation."""
    assert not accepts("BatchRequest", body)
    response = signed_post(server, push_protocol.BATCH_PATH, body)
    assert_refused(response, 400)
    operations = body.get("operations")
    if isinstance(operations, list) and operations and "atomic" not in body:
        assert response.json()["error"]["message"].startswith(f"operations[{len(operations) - 1}]"), response.text


def test_unknown_operation_is_404(server: PushServerProcess) -> None:
    """A path that is not in the document is answered 404 unknown_operation once authenticated."""
    response = signed_post(server, push_protocol.operation_path("send_to_everyone"), {})
    assert_refused(response, 404)
    assert response.json()["error"]["code"] == ErrorCode.UNKNOWN_OPERATION


def test_unsigned_request_is_401(server: PushServerProcess) -> None:
    """A request without the security scheme's headers is answered 401 whatever its body."""
    response = requests.post(server.api_url + push_protocol.operation_path("ungroup"), data=b"{", timeout=TIMEOUT)
    assert_refused(response, 401)


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


def test_over_limit_message_and_list_are_413(server: PushServerProcess) -> None:
    """A message over the documented size and a list over its maxItems are answered 413."""
    from push_server.config import Config

    limit = Config(secret="x" * 16).max_message_bytes
    path = push_protocol.operation_path("send_to_client")
    assert_refused(
        signed_post(server, path, {"client_id": "abc", "message": {"text": "x" * (limit + 1)}}), 413, "message"
    )
    assert signed_post(server, path, {"client_id": "abc", "message": {"text": "x" * limit}}).status_code == 200
    too_many = SCHEMAS["IdOrIds"]["oneOf"][1]["maxItems"] + 1
    body = {"uids": list(range(too_many)), "message": {"text": "x"}}
    assert not accepts("SendToUidArgs", body)
    assert_refused(signed_post(server, push_protocol.operation_path("send_to_uid"), body), 413, "uids")


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("", True),
        ("QQ==", True),
        ("QUI=", True),
        ("QUJD", True),
        ("QR==", True),
        ("+/8=", True),
        ("_-8=", False),
        ("QQ", False),
        ("QQ=", False),
        ("Q===", False),
        ("QQ==QQ==", False),
        ("QUJD\n", False),
        (" QUJD", False),
        ("QU JD", False),
    ],
)
def test_binary_pattern_agrees_with_the_server(server: PushServerProcess, text: str, valid: bool) -> None:
    """The schema's base64 pattern and the server accept and refuse the same binary messages."""
    message = {"binary": text}
    assert accepts("Message", message) is valid
    response = signed_post(
        server, push_protocol.operation_path("send_to_client"), {"client_id": "abc", "message": message}
    )
    assert response.status_code == (200 if valid else 400), response.text


@pytest.mark.parametrize("uid", [0, -7, 42, "0", "x" * 256, "名前", 10**255])
def test_id_forms_the_schema_accepts_are_accepted(server: PushServerProcess, uid: Any) -> None:
    """Every uid form the Id schema accepts (strings, integers, 256 characters) is accepted."""
    assert accepts("Id", uid)
    response = signed_post(server, push_protocol.operation_path("get_client_id_by_uid"), {"uid": uid})
    assert response.status_code == 200, response.text


def test_structures_match_the_operations_and_the_document() -> None:
    """Each operation's msgspec structure has push_protocol's parameters in order, and the document's (required alike)."""
    from push_server.api.operations import OPERATIONS as TABLE
    from push_server.api.schema import STRUCTS

    assert list(STRUCTS) == list(TABLE) == OPERATIONS
    for op, struct in STRUCTS.items():
        fields = struct.__struct_fields__
        assert fields == tuple(name for name, _ in params(op)), op
        required = set(fields[: len(fields) - len(struct.__struct_defaults__)])
        assert required == {name for name, optional in params(op) if not optional}, op
        schema = SCHEMAS[args_schema_name(op)]
        assert list(schema["properties"]) == list(fields), op
        assert set(schema.get("required", [])) == required, op
