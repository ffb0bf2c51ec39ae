"""The API's operations as typed structures, decoded and validated in one pass by msgspec.

One ``msgspec.Struct`` per operation (``push_protocol.OPERATIONS`` spells the
same parameters, in order; a test keeps them equal). A body is decoded straight
into its structure: wrong types, missing or unknown fields, out-of-range
numbers (``1e400``), NaN/Infinity, lone UTF-16 surrogates and invalid UTF-8
are all refused by the decoder, and the error is turned into a 400 naming the
field (``decoding.refusal``). A batch's operations are decoded in the same
pass: each compact one (``[op, arg, ...]``) is an ``array_like`` structure
tagged by its first element; a named one (``{"op", "args"}``) is decoded from
its raw ``args`` by ``decoding.decode_named``.

What the decoder cannot see is checked after it (``values``, ``operations``):
duplicate keys (msgspec, like most decoders, lets the last one win) in the
values the server stores or forwards and in a single call's body; sizes; a
message's one kind.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Union

import msgspec
from msgspec import Meta, Raw

#: Longest uid, group or client id accepted.
MAX_ID_LENGTH = 256
#: Most uids, groups or client ids in one list argument.
MAX_LIST_LENGTH = 100_000
#: Longest idempotency key.
MAX_IDEMPOTENCY_KEY_LENGTH = 200

ClientId = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)]
#: A uid or group: a string, or an integer (normalised to its decimal string, at most
#: MAX_ID_LENGTH digits: checked by operations.one_id).
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH)] | int
Ids = Id | Annotated[list[Id], Meta(min_length=1, max_length=MAX_LIST_LENGTH)]
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
        ("idempotency_key", IdempotencyKey | None, None),
    ],
    forbid_unknown_fields=True,
)
BATCH_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_BatchWire)

ENCODE = msgspec.json.Encoder().encode
