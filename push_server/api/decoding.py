"""Turning what the decoder refused into a 400 that names the field, and named batch operations.

Runs only on the error path (and for named batch operations): it may re-read a
body to say where the problem is.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any, Union

import msgspec
from msgspec import Raw

from push_protocol import ErrorCode

from ..errors import ApiError, bad_request, invalid, too_large
from .schema import ARRAY_FORMS, DECODERS, MAX_LIST_LENGTH, STRUCTS, IdempotencyKey, Operation
from .values import check_duplicate_keys


def decode_named(item: dict[str, Raw], index: int) -> Operation:
    """A named batch operation ``{"op": name, "args": {...}}``."""
    where = f"operations[{index}]"
    extra = sorted(set(item) - {"op", "args"})
    if extra:
        raise invalid(f"{where}.{extra[0]}", 'is not a field of an operation (use "op" and "args")')
    op = item.get("op")
    try:
        name = msgspec.json.decode(op, type=str) if op is not None else None
    except msgspec.ValidationError:
        name = None
    if name is None:
        raise invalid(where, 'must be an object with "op" and "args", or an array [op, arguments...]')
    decoder = DECODERS.get(name)
    if decoder is None:
        raise ApiError(400, ErrorCode.UNKNOWN_OPERATION, f"{where}.op: unknown operation {name!r}")
    args = item.get("args")
    body = bytes(args) if args is not None else b"{}"
    check_duplicate_keys(body, f"{where}.args")
    try:
        operation: Operation = decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise refusal(exc, body, name).within(where) from None
    return operation


# -- refusals ---------------------------------------------------------------------------

_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_INDEX = re.compile(r"\[(\d+)\]")


def refusal(exc: msgspec.MsgspecError, body: bytes, op: str | None) -> ApiError:
    """The 400 (413 for lists over their limit) for a body the decoder refused, naming the field.

    ``op`` is the operation a single call's body is for (None for a batch).
    Runs only on the error path: it may re-read the body to name the field.
    """
    if not isinstance(exc, msgspec.ValidationError):
        where = _lone_surrogate(body)
        if where is not None:
            return invalid(
                _field_name(where, body, op) or "body", "contains a lone UTF-16 surrogate (not valid Unicode)"
            )
        return bad_request("body is not valid JSON")
    match = _AT.match(str(exc))
    assert match is not None
    problem, path = match.group(1), match.group(2) or ""
    if not path and problem.startswith("Expected `object`"):
        return bad_request("body must be a JSON object")
    if not path and op is None:
        # msgspec gives no location for some array errors: find the operation.
        located = _locate_in_batch(body)
        if located is not None:
            return located
    unknown = re.match(r"Object contains unknown field `(.*)`", problem)
    required = re.match(r"Object missing required field `(.*)`", problem)
    field = _field_name(path, body, op)
    if unknown:
        name = f"{field}.{unknown.group(1)}" if field else unknown.group(1)
        if op is None and not field:
            return invalid(name, "is not a field of a batch")
        return invalid(name, f"is not an argument of {op}" if op else "is not a field of an operation")
    if required:
        return invalid(f"{field}.{required.group(1)}" if field else required.group(1), "is required")
    if f"length <= {MAX_LIST_LENGTH}" in problem:
        return too_large(field, f"more than {MAX_LIST_LENGTH} entries")
    if "Invalid value" in problem and path.endswith("][0]"):
        return ApiError(400, ErrorCode.UNKNOWN_OPERATION, f"{field}: unknown operation")
    return invalid(field or "body", problem[0].lower() + problem[1:])


_ONE_OPERATION: msgspec.json.Decoder[Any] = msgspec.json.Decoder(Union[(*ARRAY_FORMS.values(), dict[str, Raw])])


def _locate_in_batch(body: bytes) -> ApiError | None:
    """The first operation of a batch the decoder refuses, decoded one by one (error path only)."""
    try:
        operations = msgspec.json.decode(body, type=dict[str, Raw])["operations"]
        items = msgspec.json.decode(operations, type=list[Raw])
    except (msgspec.MsgspecError, KeyError):
        return None
    for index, item in enumerate(items):
        try:
            _ONE_OPERATION.decode(item)
        except msgspec.MsgspecError as exc:
            match = _AT.match(str(exc))
            assert match is not None
            problem = match.group(1)
            return invalid(f"operations[{index}]", problem[0].lower() + problem[1:])
    return None


def _field_name(path: str, body: bytes, op: str | None) -> str:
    """``$.operations[2][1]`` → ``operations[2].uid``; ``$.uids[1]`` stays ``uids[1]``."""
    path = path.lstrip(".")
    if op is not None or not path.startswith("operations["):
        return path
    parts = _INDEX.findall(path)
    if len(parts) < 2:
        return path
    index, position = int(parts[0]), int(parts[1])
    prefix = f"operations[{index}]"
    rest = path[len(prefix) + len(f"[{position}]") :]
    if position == 0:
        return prefix + ".op"
    try:
        operation = json.loads(body)["operations"][index]
        fields = STRUCTS[operation[0]].__struct_fields__
        return f"{prefix}.{fields[position - 1]}{rest}"
    except (ValueError, LookupError, TypeError):
        return path


def _lone_surrogate(body: bytes) -> str | None:
    """Where in ``body`` a lone surrogate is (a path, "" for the top), or None if there is none."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None

    def find(value: Any, path: str) -> str | None:
        if isinstance(value, str):
            return None if _valid_unicode(value) else path
        if isinstance(value, list):
            items: Any = ((f"{path}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, dict):
            for key in value:
                if not _valid_unicode(key):
                    return f"{path}.{key.encode('utf-8', 'replace').decode()}".lstrip(".")
            items = ((f"{path}.{k}".lstrip("."), v) for k, v in value.items())
        else:
            return None
        for where, item in items:
            found = find(item, where)
            if found is not None:
                return found
        return None

    return find(value, "")


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _RawBatch(msgspec.Struct, forbid_unknown_fields=True):
    """A large batch's first pass: its operations left raw, to be decoded in slices."""

    operations: list[Raw]
    idempotency_key: IdempotencyKey | None = None


_RAW_BATCH = msgspec.json.Decoder(_RawBatch)


async def decode_large_batch(body: bytes, slice_seconds: float) -> Any:
    """A large batch decoded in slices of about ``slice_seconds``, yielding to the event loop between them.

    The first pass only finds where each operation is (no objects made); each
    operation is then decoded by the same structures as a small batch's.
    """
    try:
        batch = _RAW_BATCH.decode(body)
    except msgspec.MsgspecError as exc:
        raise refusal(exc, body, None) from None
    operations: list[Any] = []
    append = operations.append
    decode = _ONE_OPERATION.decode
    clock = time.perf_counter
    slice_end = clock() + slice_seconds
    for index, raw in enumerate(batch.operations):
        try:
            append(decode(raw))
        except msgspec.ValidationError as exc:
            match = _AT.match(str(exc))
            assert match is not None
            located = msgspec.ValidationError(f"{match.group(1)} - at `$.operations[{index}]{match.group(2) or ''}`")
            raise refusal(located, body, None) from None
        if not index & 63 and clock() > slice_end:
            await asyncio.sleep(0)
            slice_end = clock() + slice_seconds
    return _RawBatch(operations, batch.idempotency_key)
