"""The typed dispatch table: operation name → (its structure, how it becomes a backend call).

Each entry's ``prepare`` turns a decoded structure into a :data:`Call` (the
backend method and its arguments, checked and converted: ids to ``str``,
messages to ready frames, sessions to dicts) without applying anything, so a
batch is checked whole before its first operation runs. ``call()`` is typed
with a TypeVarTuple: mypy checks every argument against the backend method's
signature, and an IDE follows a call from here straight to the backend.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import msgspec

from ..backends.base import Backend, Call, Session
from ..config import Config
from ..errors import invalid, too_large
from ..websocket import frames
from . import schema as s
from . import values

S = TypeVar("S", bound=s.Operation)

if TYPE_CHECKING:
    # Python 3.11 typing (the server also runs on 3.10): only the type checker needs it.
    from typing import TypeVarTuple, Unpack

    Ts = TypeVarTuple("Ts")

    def call(method: Callable[[Unpack[Ts]], Awaitable[Any]], *args: Unpack[Ts]) -> Call:
        """A backend call, its arguments checked by mypy against the method."""

else:

    def call(method, *args):
        return method, list(args)


class Entry(Generic[S]):
    """One operation: its structure and the function that prepares its backend call."""

    __slots__ = ("prepare", "struct")

    def __init__(self, struct: type[S], prepare: Callable[[Backend, S, Config], Call]) -> None:
        self.struct = struct
        self.prepare = prepare


# -- converting arguments ------------------------------------------------------------------

#: A session's size is its compact JSON with non-ASCII escaped (the documented measure).
_measure = json.JSONEncoder(separators=(",", ":")).encode


def ids(value: s.Ids, field: str) -> list[str]:
    """One uid/group or a list of them, as a list of str."""
    if isinstance(value, list):
        return [item if type(item) is str else one_id(item, f"{field}[{index}]") for index, item in enumerate(value)]
    return [one_id(value, field)]


def one_id(value: s.Id, field: str) -> str:
    """A uid or group as str (an integer as its decimal digits); callers pass strings on themselves."""
    if type(value) is str:
        return value
    text = str(value)
    if len(text) > s.MAX_ID_LENGTH:
        raise invalid(field, f"longer than {s.MAX_ID_LENGTH} characters")
    return text


def frame(message: s.Message, field: str, config: Config) -> bytes:
    """A wrapped message → the one frame every recipient gets."""
    if len(message) != 1:
        raise invalid(field, 'must be an object with exactly one of "text", "binary" or "json"')
    ((kind, raw),) = message.items()
    if kind == "text":
        try:
            text = msgspec.json.decode(raw, type=str)
        except msgspec.ValidationError:
            raise invalid(f"{field}.text", "must be a string") from None
        opcode, payload = frames.OP_TEXT, text.encode()
    elif kind == "binary":
        try:
            payload = base64.b64decode(msgspec.json.decode(raw, type=str), validate=True)
        except msgspec.ValidationError:
            raise invalid(f"{field}.binary", "must be a base64 string") from None
        except (binascii.Error, ValueError):
            raise invalid(f"{field}.binary", "is not valid base64") from None
        opcode = frames.OP_BINARY
    elif kind == "json":
        opcode, payload = frames.OP_TEXT, s.ENCODE(values.checked_value(raw, f"{field}.json"))
    else:
        raise invalid(field, f'unknown message kind "{kind}"; use "text", "binary" or "json"')
    if len(payload) > config.max_message_bytes:
        raise too_large(field, f"{len(payload)} bytes, over the {config.max_message_bytes}-byte limit")
    return frames.encode_frame(opcode, payload)


def session(raw: s.SessionRaw, config: Config) -> Session:
    """A session: a JSON object without duplicate keys, within the size limit."""
    value = values.checked_value(raw, "session")
    if type(value) is not dict:
        raise invalid("session", "must be a JSON object")
    # The measure costs an encoding; it is skipped when the raw text is short
    # enough that no re-encoding could bring it over the limit (at most 6
    # characters per byte: a 2-byte character becomes a 6-character escape, a
    # 4-byte one 12, and the shortest float that grows, "1e15", 18 from 4).
    if len(raw) * 6 <= config.max_session_bytes:
        return value
    size = len(_measure(value))
    if size > config.max_session_bytes:
        raise too_large("session", f"{size} bytes, over the {config.max_session_bytes}-byte limit")
    return value


def sessions(raws: list[s.SessionRaw], config: Config) -> list[Session]:
    """A batch's sessions, checked together as :func:`session` checks one (raises values.Refused)."""
    decoded = values.checked_objects(raws, "session")
    limit = config.max_session_bytes
    # As in session(): only a long raw text can measure over the limit.
    if max(map(len, raws), default=0) * 6 > limit:
        for position, raw in enumerate(raws):
            if len(raw) * 6 > limit:
                size = len(_measure(decoded[position]))
                if size > limit:
                    raise values.Refused(position, too_large("session", f"{size} bytes, over the {limit}-byte limit"))
    return decoded


# -- the table -------------------------------------------------------------------------------


def _send_to_all(b: Backend, a: s.SendToAll, c: Config) -> Call:
    return call(b.send_to_all, frame(a.message, "message", c), a.client_ids, a.exclude_client_ids)


def _send_to_client(b: Backend, a: s.SendToClient, c: Config) -> Call:
    return call(b.send_to_client, a.client_id, frame(a.message, "message", c))


def _send_to_uid(b: Backend, a: s.SendToUid, c: Config) -> Call:
    return call(b.send_to_uid, ids(a.uids, "uids"), frame(a.message, "message", c))


def _send_to_group(b: Backend, a: s.SendToGroup, c: Config) -> Call:
    return call(b.send_to_group, ids(a.groups, "groups"), frame(a.message, "message", c), a.exclude_client_ids)


def _close_client(b: Backend, a: s.CloseClient, c: Config) -> Call:
    return call(b.close_client, a.client_id, None if a.message is None else frame(a.message, "message", c))


def _bind_uid(b: Backend, a: s.ClientUid, c: Config) -> Call:
    return call(b.bind_uid, a.client_id, (a.uid if type(a.uid) is str else one_id(a.uid, "uid")))


def _unbind_uid(b: Backend, a: s.ClientUid, c: Config) -> Call:
    return call(b.unbind_uid, a.client_id, (a.uid if type(a.uid) is str else one_id(a.uid, "uid")))


def _join_group(b: Backend, a: s.ClientGroup, c: Config) -> Call:
    return call(b.join_group, a.client_id, (a.group if type(a.group) is str else one_id(a.group, "group")))


def _leave_group(b: Backend, a: s.ClientGroup, c: Config) -> Call:
    return call(b.leave_group, a.client_id, (a.group if type(a.group) is str else one_id(a.group, "group")))


def _ungroup(b: Backend, a: s.OneGroup, c: Config) -> Call:
    return call(b.ungroup, (a.group if type(a.group) is str else one_id(a.group, "group")))


def _set_session(b: Backend, a: s.ClientSession, c: Config) -> Call:
    return call(b.set_session, a.client_id, session(a.session, c))


def _update_session(b: Backend, a: s.ClientSession, c: Config) -> Call:
    return call(b.update_session, a.client_id, session(a.session, c))


def _client_query(
    method: Callable[[Backend], Callable[[str], Awaitable[Any]]],
) -> Callable[[Backend, s.OneClient, Config], Call]:
    return lambda b, a, c: call(method(b), a.client_id)


def _uid_query(
    method: Callable[[Backend], Callable[[str], Awaitable[Any]]],
) -> Callable[[Backend, s.OneUid, Config], Call]:
    return lambda b, a, c: call(method(b), (a.uid if type(a.uid) is str else one_id(a.uid, "uid")))


def _group_query(
    method: Callable[[Backend], Callable[[str], Awaitable[Any]]],
) -> Callable[[Backend, s.OneGroup, Config], Call]:
    return lambda b, a, c: call(method(b), (a.group if type(a.group) is str else one_id(a.group, "group")))


def _query(
    method: Callable[[Backend], Callable[[], Awaitable[Any]]],
) -> Callable[[Backend, s.NoArguments, Config], Call]:
    return lambda b, a, c: call(method(b))


OPERATIONS: dict[str, Entry[Any]] = {
    "send_to_all": Entry(s.SendToAll, _send_to_all),
    "send_to_client": Entry(s.SendToClient, _send_to_client),
    "send_to_uid": Entry(s.SendToUid, _send_to_uid),
    "send_to_group": Entry(s.SendToGroup, _send_to_group),
    "close_client": Entry(s.CloseClient, _close_client),
    "bind_uid": Entry(s.BindUid, _bind_uid),
    "unbind_uid": Entry(s.UnbindUid, _unbind_uid),
    "join_group": Entry(s.JoinGroup, _join_group),
    "leave_group": Entry(s.LeaveGroup, _leave_group),
    "ungroup": Entry(s.Ungroup, _ungroup),
    "set_session": Entry(s.SetSession, _set_session),
    "update_session": Entry(s.UpdateSession, _update_session),
    "get_session": Entry(s.GetSession, _client_query(lambda b: b.get_session)),
    "is_online": Entry(s.IsOnline, _client_query(lambda b: b.is_online)),
    "is_uid_online": Entry(s.IsUidOnline, _uid_query(lambda b: b.is_uid_online)),
    "get_client_id_by_uid": Entry(s.GetClientIdByUid, _uid_query(lambda b: b.get_client_id_by_uid)),
    "get_uid_by_client_id": Entry(s.GetUidByClientId, _client_query(lambda b: b.get_uid_by_client_id)),
    "get_client_id_list_by_group": Entry(
        s.GetClientIdListByGroup, _group_query(lambda b: b.get_client_id_list_by_group)
    ),
    "get_client_count_by_group": Entry(s.GetClientCountByGroup, _group_query(lambda b: b.get_client_count_by_group)),
    "get_client_sessions_by_group": Entry(
        s.GetClientSessionsByGroup, _group_query(lambda b: b.get_client_sessions_by_group)
    ),
    "get_uid_list_by_group": Entry(s.GetUidListByGroup, _group_query(lambda b: b.get_uid_list_by_group)),
    "get_uid_count_by_group": Entry(s.GetUidCountByGroup, _group_query(lambda b: b.get_uid_count_by_group)),
    "get_all_client_id_list": Entry(s.GetAllClientIdList, _query(lambda b: b.get_all_client_id_list)),
    "get_all_client_count": Entry(s.GetAllClientCount, _query(lambda b: b.get_all_client_count)),
    "get_all_uid_list": Entry(s.GetAllUidList, _query(lambda b: b.get_all_uid_list)),
    "get_all_uid_count": Entry(s.GetAllUidCount, _query(lambda b: b.get_all_uid_count)),
    "get_all_group_id_list": Entry(s.GetAllGroupIdList, _query(lambda b: b.get_all_group_id_list)),
    "get_nodes": Entry(s.GetNodes, _query(lambda b: b.get_nodes)),
}


#: Each structure (named and compact form alike) → its prepare function.
PREPARERS: dict[type[s.Operation], Callable[[Backend, Any, Config], Call]] = {
    **{entry.struct: entry.prepare for entry in OPERATIONS.values()},
    **{s.ARRAY_FORMS[name]: entry.prepare for name, entry in OPERATIONS.items()},
}


def _set_raw_session(b: Backend, a: s.ClientSession, c: Config) -> Call:
    # The raw session stands in until the batch checks it with the others (SESSION_TYPES).
    return call(b.set_session, a.client_id, cast(Session, a.session))


def _update_raw_session(b: Backend, a: s.ClientSession, c: Config) -> Call:
    return call(b.update_session, a.client_id, cast(Session, a.session))


#: The operations whose session a batch checks together with the others' (:func:`sessions`),
#: each the second argument of its call: decoding them one by one cost more than all the rest
#: of checking them.
SESSION_TYPES: frozenset[type[s.Operation]] = frozenset(
    [s.SetSession, s.UpdateSession, s.ARRAY_FORMS["set_session"], s.ARRAY_FORMS["update_session"]]
)

#: The batch loop's table: as PREPARERS, but sessions are left raw for :func:`sessions`.
BATCH_PREPARERS: dict[type[s.Operation], Callable[[Backend, Any, Config], Call]] = {
    **PREPARERS,
    s.SetSession: _set_raw_session,
    s.ARRAY_FORMS["set_session"]: _set_raw_session,
    s.UpdateSession: _update_raw_session,
    s.ARRAY_FORMS["update_session"]: _update_raw_session,
}


def prepare(backend: Backend, config: Config, operation: s.Operation) -> Call:
    """The backend call for one decoded operation (raises ApiError naming a field)."""
    return PREPARERS[type(operation)](backend, operation, config)
