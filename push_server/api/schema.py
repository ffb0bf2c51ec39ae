"""The API's operations as typed structures, decoded and validated in one pass by msgspec.

One ``msgspec.Struct`` per operation (``push_protocol.OPERATIONS`` spells the
same parameters, in order; a test keeps them equal). A body is decoded straight
into its structure: wrong types, missing or unknown fields, out-of-range
numbers (``1e400``), NaN/Infinity, lone UTF-16 surrogates and invalid UTF-8
are all refused by the decoder, and the error is turned into a 400 naming the
field (:func:`refusal`). A batch's operations are decoded in the same pass:
each compact one (``[op, arg, ...]``) is an ``array_like`` structure tagged by
its first element; a named one (``{"op", "args"}``) is decoded from its raw
``args`` by :func:`decode_named`.

What the decoder cannot see is checked after it: duplicate keys (msgspec,
like most decoders, lets the last one win) in the objects the server stores or
forwards (sessions, ``json`` messages, named arguments), by the standard
library's C parser with a pairs hook, which also refuses non-finite numbers
there; sizes; a message's one kind.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from typing import Annotated, Any, ClassVar, Union

import msgspec
from msgspec import Meta, Raw

from push_protocol import ErrorCode

from ..errors import ApiError, bad_request, invalid, too_large

#: Longest uid, group or client id accepted.
MAX_ID_LENGTH = 256
#: Most uids, groups or client ids in one list argument.
MAX_LIST_LENGTH = 100_000
#: Longest idempotency key.
MAX_IDEMPOTENCY_KEY_LENGTH = 200

ClientId = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)]
#: A uid or group: a string, or an integer (normalised to its decimal string, at most
#: MAX_ID_LENGTH digits: checked by operations.one_id).
Id = Union[Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)], int]
Ids = Union[Id, Annotated[list[Id], Meta(min_length=1, max_length=MAX_LIST_LENGTH)]]
ClientIds = Annotated[list[ClientId], Meta(max_length=MAX_LIST_LENGTH)]
#: A wrapped message: exactly one of ``text``, ``binary`` (base64) or ``json`` (see messages.py).
Message = dict[str, Raw]
#: A session: a JSON object, kept raw until checked for duplicate keys.
SessionRaw = Raw
IdempotencyKey = Annotated[str, Meta(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH)]


class Operation(msgspec.Struct, forbid_unknown_fields=True):
    """The arguments of one operation (subclasses: one per operation, fields in wire order)."""

    name: ClassVar[str]


class SendToAll(Operation):
    name = "send_to_all"
    message: Message
    client_ids: ClientIds | None = None
    exclude_client_ids: ClientIds | None = None
    idempotency_key: IdempotencyKey | None = None


class SendToClient(Operation):
    name = "send_to_client"
    client_id: ClientId
    message: Message
    idempotency_key: IdempotencyKey | None = None


class SendToUid(Operation):
    name = "send_to_uid"
    uids: Ids
    message: Message
    idempotency_key: IdempotencyKey | None = None


class SendToGroup(Operation):
    name = "send_to_group"
    groups: Ids
    message: Message
    exclude_client_ids: ClientIds | None = None
    idempotency_key: IdempotencyKey | None = None


class CloseClient(Operation):
    name = "close_client"
    client_id: ClientId
    message: Message | None = None
    idempotency_key: IdempotencyKey | None = None


class ClientUid(Operation):
    """``(client_id, uid)``: bind_uid, unbind_uid."""

    client_id: ClientId
    uid: Id


class BindUid(ClientUid):
    name = "bind_uid"


class UnbindUid(ClientUid):
    name = "unbind_uid"


class ClientGroup(Operation):
    """``(client_id, group)``: join_group, leave_group."""

    client_id: ClientId
    group: Id


class JoinGroup(ClientGroup):
    name = "join_group"


class LeaveGroup(ClientGroup):
    name = "leave_group"


class ClientSession(Operation):
    """``(client_id, session)``: set_session, update_session."""

    client_id: ClientId
    session: SessionRaw


class SetSession(ClientSession):
    name = "set_session"


class UpdateSession(ClientSession):
    name = "update_session"


class OneClient(Operation):
    """``(client_id)``: the queries about one client."""

    client_id: ClientId


class GetSession(OneClient):
    name = "get_session"


class IsOnline(OneClient):
    name = "is_online"


class GetUidByClientId(OneClient):
    name = "get_uid_by_client_id"


class OneUid(Operation):
    """``(uid)``: the queries about one uid."""

    uid: Id


class IsUidOnline(OneUid):
    name = "is_uid_online"


class GetClientIdByUid(OneUid):
    name = "get_client_id_by_uid"


class OneGroup(Operation):
    """``(group)``: ungroup and the queries about one group."""

    group: Id


class Ungroup(OneGroup):
    name = "ungroup"


class GetClientIdListByGroup(OneGroup):
    name = "get_client_id_list_by_group"


class GetClientCountByGroup(OneGroup):
    name = "get_client_count_by_group"


class GetClientSessionsByGroup(OneGroup):
    name = "get_client_sessions_by_group"


class GetUidListByGroup(OneGroup):
    name = "get_uid_list_by_group"


class GetUidCountByGroup(OneGroup):
    name = "get_uid_count_by_group"


class NoArguments(Operation):
    """The cluster-wide queries."""


class GetAllClientIdList(NoArguments):
    name = "get_all_client_id_list"


class GetAllClientCount(NoArguments):
    name = "get_all_client_count"


class GetAllUidList(NoArguments):
    name = "get_all_uid_list"


class GetAllUidCount(NoArguments):
    name = "get_all_uid_count"


class GetAllGroupIdList(NoArguments):
    name = "get_all_group_id_list"


class GetNodes(NoArguments):
    name = "get_nodes"


STRUCTS: dict[str, type[Operation]] = {
    cls.name: cls
    for cls in (
        SendToAll, SendToClient, SendToUid, SendToGroup, CloseClient, BindUid, UnbindUid, JoinGroup, LeaveGroup,
        Ungroup, SetSession, UpdateSession, GetSession, IsOnline, IsUidOnline, GetClientIdByUid, GetUidByClientId,
        GetClientIdListByGroup, GetClientCountByGroup, GetClientSessionsByGroup, GetUidListByGroup,
        GetUidCountByGroup, GetAllClientIdList, GetAllClientCount, GetAllUidList, GetAllUidCount, GetAllGroupIdList,
        GetNodes,
    )
}  # fmt: skip

#: Each operation's compact form: the same fields, as an array tagged by the op's name.
ARRAY_FORMS: dict[str, type[Operation]] = {
    name: type(cls.__name__ + "Array", (cls,), {}, array_like=True, tag=name, tag_field="op")
    for name, cls in STRUCTS.items()
}

#: Decoders made once: the body of ``POST /api/v1/<op>`` is decoded straight into its structure.
DECODERS: dict[str, msgspec.json.Decoder[Any]] = {name: msgspec.json.Decoder(cls) for name, cls in STRUCTS.items()}


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /api/v1/batch``: operations compact or named, and an optional idempotency key."""

    operations: list[Any]
    idempotency_key: IdempotencyKey | None = None


# The decoder's own view of a batch: each operation is a compact one (a
# tagged array) or a named one (an object whose args are decoded by its op).
_BatchWire = msgspec.defstruct(
    "BatchRequest",
    [
        ("operations", list[Union[(*ARRAY_FORMS.values(), dict[str, Raw])]]),  # type: ignore[misc]
        ("idempotency_key", Union[IdempotencyKey, None], None),
    ],
    forbid_unknown_fields=True,
)
BATCH_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_BatchWire)

ENCODE = msgspec.json.Encoder().encode


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
            return invalid(_field_name(where, body, op) or "body", "contains a lone UTF-16 surrogate (not valid Unicode)")
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


# -- values the decoder keeps raw ------------------------------------------------------------


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return value


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("non-finite number")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# The C scanner straight (JSONDecoder.decode would add a Python wrapper and a
# whitespace regex per call): msgspec has already checked that the raw value is
# one well-formed JSON value, without surrounding whitespace.
_scan = json.scanner.make_scanner(
    json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_finite, parse_constant=_no_constant)  # type: ignore[arg-type]
)


def strict_value(raw: bytes | Raw, field: str) -> Any:
    """A raw JSON value (already known to be well-formed) with no duplicate keys and no non-finite number."""
    try:
        text = str(raw, "utf-8")
        value, end = _scan(text, 0)
        if end != len(text):
            raise ValueError("trailing data")
        return value
    except _Duplicate as exc:
        raise invalid(field, f"duplicate key {exc.args[0]!r}") from None
    except StopIteration:
        raise invalid(field, "is not valid JSON") from None
    except (ValueError, RecursionError):
        raise invalid(field, "a number out of range (JSON numbers must be finite)") from None


_any = msgspec.json.Decoder()
#: Where a key ends: every key of an object in the raw text is one match (a
#: string value can add matches, never hide one).
_KEY_END = re.compile(rb'"\s*:')


def _keys(value: Any) -> int:
    """How many object keys ``value`` holds, nested ones included."""
    count = 0
    if type(value) is dict:
        count = len(value)
        values: Any = value.values()
    elif type(value) is list:
        values = value
    else:
        return 0
    for item in values:
        if type(item) is dict or type(item) is list:
            count += _keys(item)
    return count


def checked_value(raw: Raw, field: str) -> Any:
    """A raw JSON value, decoded by msgspec (finite numbers), refused if an object in it repeats a key.

    Duplicates are ruled out cheaply: the raw text's key ends are counted and
    compared with the keys decoded (a repeated key is decoded once). Only
    when they differ (a repeat, or a string value that looks like a key end)
    is the value read again by the strict parser, which tells.
    """
    try:
        value = _any.decode(raw)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        raise invalid(field, match.group(1)[0].lower() + match.group(1)[1:]) from None
    if len(_KEY_END.findall(raw)) != _keys(value):
        strict_value(raw, field)
    return value


def check_duplicate_keys(body: bytes, field: str) -> None:
    """Refuse an object with a key given twice (the decoder would keep the last silently)."""
    strict_value(body, field)
