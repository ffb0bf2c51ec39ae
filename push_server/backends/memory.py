"""One process, no extra services: the whole cluster is this node, kept in dicts and sets."""

from __future__ import annotations

import time

from ..websocket import frames
from .base import Backend, Session, leave_frame, unique
from .local import LocalState


#: Nonces that expire within the same this-many seconds are forgotten together.
NONCE_BUCKET_SECONDS = 10.0


class NonceMemory:
    """The API's nonces still inside their replay window, kept densely.

    A node taking thousands of calls a second holds about a million of them
    (each is kept ~360 s, see ``api._nonce_ttl``), so each costs what matters:
    a 64-bit fingerprint (the process-salted ``hash()`` of the nonce; two
    different nonces share one with odds of ~10^-13 at a million held, and only
    signed requests get this far) in one set, and in the list of the bucket
    it expires in. About 90 bytes a nonce, against ~200 for the string with
    its own expiry entry. Buckets also let lifetimes differ (they follow each
    request's timestamp): a whole bucket goes at once, never before the
    lifetime asked for and at most :data:`NONCE_BUCKET_SECONDS` after it.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()
        #: Bucket number (expiry time // NONCE_BUCKET_SECONDS) → its fingerprints.
        self._expiring: dict[int, list[int]] = {}
        self._pruned_before = 0

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, nonce: str, ttl: float, now: float) -> bool:
        """Remember ``nonce`` for at least ``ttl`` seconds after ``now``; False if it is already held."""
        current = int(now // NONCE_BUCKET_SECONDS)
        if current > self._pruned_before:
            self._forget_before(current)
        fingerprint = hash(nonce)
        if fingerprint in self._seen:
            return False
        self._seen.add(fingerprint)
        bucket = int((now + ttl) // NONCE_BUCKET_SECONDS)
        expiring = self._expiring.get(bucket)
        if expiring is None:
            self._expiring[bucket] = [fingerprint]
        else:
            expiring.append(fingerprint)
        return True

    def _forget_before(self, current: int) -> None:
        # A bucket ends where the next begins: every nonce in a bucket before
        # the current one has outlived its ttl.
        seen = self._seen
        for bucket in [bucket for bucket in self._expiring if bucket < current]:
            for fingerprint in self._expiring.pop(bucket):
                seen.discard(fingerprint)
        self._pruned_before = current


class MemoryBackend(Backend):
    """All state in this process (a :class:`LocalState`). Fast, and gone when the process stops."""

    def __init__(self) -> None:
        self.state = LocalState()
        self.nonces = NonceMemory()

    async def claim_nonce(self, nonce: str, ttl: float) -> bool:
        return self.nonces.claim(nonce, ttl, time.monotonic())

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
