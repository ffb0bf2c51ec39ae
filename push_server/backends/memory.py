"""One process, no extra services: the whole cluster is this node, kept in dicts and sets."""

from __future__ import annotations

import collections
import time
from typing import Any, Iterable

from .. import frames
from .base import Backend, ClientState, Session, leave_frame, unique


class MemoryBackend(Backend):
    """All state in this process. Fast, and gone when the process stops."""

    def __init__(self) -> None:
        self._clients: dict[str, ClientState] = {}
        self._uids: dict[str, set[str]] = {}
        self._groups: dict[str, set[str]] = {}
        # Nonces in the order they expire (one TTL for all), for cheap pruning.
        self._nonces: set[str] = set()
        self._nonce_expiry: collections.deque[tuple[float, str]] = collections.deque()

    async def claim_nonce(self, nonce: str, ttl: float) -> bool:
        now = time.monotonic()
        expiry = self._nonce_expiry
        while expiry and expiry[0][0] <= now:
            self._nonces.discard(expiry.popleft()[1])
        if nonce in self._nonces:
            return False
        self._nonces.add(nonce)
        expiry.append((now + ttl, nonce))
        return True

    # -- arrivals and departures ------------------------------------------------------

    async def register(self, client_id: str, uid: str | None = None) -> None:
        self._clients[client_id] = ClientState(None)
        if uid is not None:
            self._bind(client_id, uid)

    async def unregister(self, client_id: str) -> None:
        client = self._clients.pop(client_id, None)
        if client is None:
            return
        if client.uid is not None:
            self._unbind(client_id, client.uid)
        for group in client.groups or ():
            members = self._groups.get(group)
            if members is None:
                continue
            members.discard(client_id)
            if members:
                self.connections.send_many(members, leave_frame(group, client.uid))
            else:
                del self._groups[group]

    # -- pushes ---------------------------------------------------------------------

    async def send_to_all(
        self, frame: bytes, client_ids: list[str] | None = None, exclude_client_ids: list[str] | None = None
    ) -> None:
        if client_ids is None:
            self.connections.send_all(frame, exclude_client_ids)
        else:
            self.connections.send_many(unique(dict.fromkeys(client_ids), exclude_client_ids), frame)

    async def send_to_client(self, client_id: str, frame: bytes) -> None:
        self.connections.send(client_id, frame)

    async def send_to_uid(self, uids: list[str], frame: bytes) -> None:
        if len(uids) == 1:
            self.connections.send_many(self._uids.get(uids[0], ()), frame)
        else:
            self.connections.send_many(self._union(self._uids, uids), frame)

    async def send_to_group(self, groups: list[str], frame: bytes, exclude_client_ids: list[str] | None = None) -> None:
        if len(groups) == 1:
            members: Iterable[str] = self._groups.get(groups[0], ())
        else:
            members = self._union(self._groups, groups)
        self.connections.send_many(unique(members, exclude_client_ids), frame)

    async def close_client(self, client_id: str, frame: bytes | None = None) -> None:
        connection = self.connections.by_id.get(client_id)
        if connection is not None:
            connection.close(frames.CLOSE_NORMAL, "", frame)

    @staticmethod
    def _union(index: dict[str, set[str]], keys: list[str]) -> set[str]:
        members: set[str] = set()
        for key in keys:
            members.update(index.get(key, ()))
        return members

    # -- uids, groups, sessions -------------------------------------------------------

    def _bind(self, client_id: str, uid: str) -> None:
        self._clients[client_id].uid = uid
        self._uids.setdefault(uid, set()).add(client_id)

    def _unbind(self, client_id: str, uid: str) -> None:
        clients = self._uids.get(uid)
        if clients is not None:
            clients.discard(client_id)
            if not clients:
                del self._uids[uid]

    async def bind_uid(self, client_id: str, uid: str) -> None:
        client = self._clients.get(client_id)
        if client is None or client.uid == uid:
            return
        if client.uid is not None:
            self._unbind(client_id, client.uid)
        self._bind(client_id, uid)

    async def unbind_uid(self, client_id: str, uid: str) -> None:
        client = self._clients.get(client_id)
        if client is not None and client.uid == uid:
            self._unbind(client_id, uid)
            client.uid = None

    async def join_group(self, client_id: str, group: str) -> None:
        client = self._clients.get(client_id)
        if client is None:
            return
        if client.groups is None:
            client.groups = set()
        client.groups.add(group)
        self._groups.setdefault(group, set()).add(client_id)

    async def leave_group(self, client_id: str, group: str) -> None:
        client = self._clients.get(client_id)
        if client is None or not client.groups or group not in client.groups:
            return
        client.groups.discard(group)
        members = self._groups[group]
        members.discard(client_id)
        if not members:
            del self._groups[group]

    async def ungroup(self, group: str) -> None:
        for client_id in self._groups.pop(group, ()):
            client = self._clients.get(client_id)
            if client is not None and client.groups:
                client.groups.discard(group)

    async def set_session(self, client_id: str, session: Session) -> None:
        client = self._clients.get(client_id)
        if client is not None:
            client.session = dict(session)

    async def update_session(self, client_id: str, session: Session) -> None:
        client = self._clients.get(client_id)
        if client is not None:
            client.session = {**(client.session or {}), **session}

    async def get_session(self, client_id: str) -> Session | None:
        client = self._clients.get(client_id)
        if client is None:
            return None
        return dict(client.session or {})

    # -- presence ---------------------------------------------------------------------

    async def is_online(self, client_id: str) -> bool:
        return client_id in self._clients

    async def is_uid_online(self, uid: str) -> bool:
        return uid in self._uids

    async def get_client_id_by_uid(self, uid: str) -> list[str]:
        return list(self._uids.get(uid, ()))

    async def get_uid_by_client_id(self, client_id: str) -> str | None:
        client = self._clients.get(client_id)
        return None if client is None else client.uid

    async def get_client_id_list_by_group(self, group: str) -> list[str]:
        return list(self._groups.get(group, ()))

    async def get_client_count_by_group(self, group: str) -> int:
        return len(self._groups.get(group, ()))

    async def get_client_sessions_by_group(self, group: str) -> dict[str, Session]:
        sessions: dict[str, Any] = {}
        for client_id in self._groups.get(group, ()):
            session = self._clients[client_id].session
            sessions[client_id] = dict(session) if session else {}
        return sessions

    def _group_uids(self, group: str) -> set[str]:
        uids = (self._clients[client_id].uid for client_id in self._groups.get(group, ()))
        return {uid for uid in uids if uid is not None}

    async def get_uid_list_by_group(self, group: str) -> list[str]:
        return list(self._group_uids(group))

    async def get_uid_count_by_group(self, group: str) -> int:
        return len(self._group_uids(group))

    async def get_all_client_id_list(self) -> list[str]:
        return list(self._clients)

    async def get_all_client_count(self) -> int:
        return len(self._clients)

    async def get_all_uid_list(self) -> list[str]:
        return list(self._uids)

    async def get_all_uid_count(self) -> int:
        return len(self._uids)

    async def get_all_group_id_list(self) -> list[str]:
        return list(self._groups)
