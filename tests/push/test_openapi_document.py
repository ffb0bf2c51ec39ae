"""docs/openapi.yaml against the code, read as data (no server runs here).

Its POST paths must be exactly push_protocol.OPERATIONS (plus the batch
endpoint), its methods and paths exactly the routes the app serves (so the
unsigned GET /metrics and /healthz too), each operation's argument schema must
have exactly the parameters OPERATIONS names (required and optional alike), as
must the server's msgspec structures; the error codes, the signature scheme and
the limits must be push_protocol's and the server's, and every example must fit
the schema it illustrates. test_openapi_answers.py and test_openapi_values.py
hold the document against a real server.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

import push_protocol
from push_protocol import ErrorCode
from push_server.api.auth import NONCE_CLOCK_SLACK

from ..servers import TEST_SECRET
from .openapi_doc import (
    DOC,
    METHODS,
    OPERATIONS,
    PARAMETER_KINDS,
    SCHEMAS,
    args_schema_name,
    documented_operations,
    params,
    post_of,
    schema_of,
)


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
