"""One process, no extra services: the whole cluster is this node, kept in dicts and sets."""

from __future__ import annotations

import secrets
import time

from ..websocket import frames
from .base import Backend, NodeInfo, Session, leave_frame, unique
from .local import LocalState


class MemoryBackend(Backend):
    """All state in this process (a :class:`LocalState`). Fast, and gone when the process stops."""

    def __init__(self) -> None:
        self.state = LocalState()
        self.node_id = secrets.token_urlsafe(6)
        self.started = time.time()

    # -- arrivals and departures ------------------------------------------------------

    async def register(self, client_id: str, uid: str | None = None) -> None:
        self.state.add(client_id, uid)
        if self.events is not None and uid is not None:
            self.events.bound(client_id, uid)

    async def unregister(self, client_id: str) -> None:
        client = self.state.remove(client_id)
        if client is None:
            return
        if self.events is not None:
            self.events.closed(client_id, client.uid, list(client.groups or ()), client.session)
        for group in client.groups or ():
            # The leaver is already out of the group; an emptied group is gone.
            members = self.state.groups.get(group)
            if members:
                self.connections.send_many(members, leave_frame(group, client.uid))

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
        self.connections.send_many(self.state.uid_clients(uids), frame)

    async def send_to_group(self, groups: list[str], frame: bytes, exclude_client_ids: list[str] | None = None) -> None:
        self.connections.send_many(unique(self.state.members(groups), exclude_client_ids), frame)

    async def close_client(self, client_id: str, frame: bytes | None = None) -> None:
        connection = self.connections.by_id.get(client_id)
        if connection is not None:
            connection.close(frames.CLOSE_NORMAL, "", frame)

    # -- uids, groups, sessions -------------------------------------------------------

    async def bind_uid(self, client_id: str, uid: str) -> None:
        self.state.bind(client_id, uid)
        if self.events is not None:
            self.events.bound(client_id, uid)

    async def unbind_uid(self, client_id: str, uid: str) -> None:
        client = self.state.clients.get(client_id)
        if client is not None and client.uid == uid:
            self.state.unbind(client_id)
            if self.events is not None:
                self.events.bound(client_id, None)

    async def join_group(self, client_id: str, group: str) -> None:
        self.state.join(client_id, group)
        if self.events is not None:
            self.events.groups(group)

    async def leave_group(self, client_id: str, group: str) -> None:
        self.state.leave(client_id, group)
        if self.events is not None:
            self.events.groups(group)

    async def ungroup(self, group: str) -> None:
        self.state.ungroup(group)
        if self.events is not None:
            self.events.groups(group)

    async def set_session(self, client_id: str, session: Session) -> None:
        self.state.set_session(client_id, dict(session), merge=False)

    async def update_session(self, client_id: str, session: Session) -> None:
        self.state.set_session(client_id, session, merge=True)

    async def get_session(self, client_id: str) -> Session | None:
        client = self.state.clients.get(client_id)
        if client is None:
            return None
        return dict(client.session or {})

    # -- presence ---------------------------------------------------------------------

    async def is_online(self, client_id: str) -> bool:
        return client_id in self.state.clients

    async def is_uid_online(self, uid: str) -> bool:
        return uid in self.state.uids

    async def get_client_id_by_uid(self, uid: str) -> list[str]:
        return list(self.state.uids.get(uid, ()))

    async def get_uid_by_client_id(self, client_id: str) -> str | None:
        client = self.state.clients.get(client_id)
        return None if client is None else client.uid

    async def get_client_id_list_by_group(self, group: str) -> list[str]:
        return list(self.state.groups.get(group, ()))

    async def get_client_count_by_group(self, group: str) -> int:
        return len(self.state.groups.get(group, ()))

    async def get_client_sessions_by_group(self, group: str) -> dict[str, Session]:
        clients = self.state.clients
        return {client_id: dict(clients[client_id].session or {}) for client_id in self.state.groups.get(group, ())}

    def _group_uids(self, group: str) -> set[str]:
        uids = (self.state.clients[client_id].uid for client_id in self.state.groups.get(group, ()))
        return {uid for uid in uids if uid is not None}

    async def get_uid_list_by_group(self, group: str) -> list[str]:
        return list(self._group_uids(group))

    async def get_uid_count_by_group(self, group: str) -> int:
        return len(self._group_uids(group))

    async def get_all_client_id_list(self) -> list[str]:
        return list(self.state.clients)

    async def get_all_client_count(self) -> int:
        return len(self.state.clients)

    async def get_all_uid_list(self) -> list[str]:
        return list(self.state.uids)

    async def get_all_uid_count(self) -> int:
        return len(self.state.uids)

    async def get_all_group_id_list(self) -> list[str]:
        return list(self.state.groups)

    async def get_nodes(self) -> list[NodeInfo]:
        return [{"node": self.node_id, "connections": len(self.connections), "started": self.started}]
