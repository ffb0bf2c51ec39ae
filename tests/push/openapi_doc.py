"""docs/openapi.yaml read as data, and what the tests of it share (tests/push/test_openapi_*.py).

The document, its schemas and a validator that reads them as JSON Schema 2020-12
(with ECMA-262 patterns); how each operation's parameters, examples and schemas
are found in it; and a signed POST to a real push server, with the check that an
answer is the documented error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

# The document's readers are in setup.cfg's `test` extra; without them the modules that
# import this one are skipped (loudly, in pytest's summary) rather than breaking collection.
yaml = pytest.importorskip("yaml", reason="needs PyYAML (the test extra)")
pytest.importorskip("jsonschema", reason="needs jsonschema (the test extra)")

from jsonschema import Draft202012Validator, ValidationError, validators  # noqa: E402
from referencing import Registry, Resource  # noqa: E402
from referencing.jsonschema import DRAFT202012  # noqa: E402

import push_protocol  # noqa: E402

from ..servers import ROOT, TIMEOUT, PushServerProcess  # noqa: E402

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


def compact(op: str, args: dict[str, Any]) -> list[Any]:
    """An operation's named arguments as a compact batch call (absent optional ones as null)."""
    return [op, *(args.get(name) for name, _ in params(op))]


# Named apart so that a module imports it without shadowing the argument its tests take.
@pytest.fixture(scope="module", name="server")
def memory_server() -> Iterator[PushServerProcess]:
    """One real push server (in-memory backend) for the module, over conftest's one per backend: every test uses fresh names."""
    with PushServerProcess() as process:
        yield process
