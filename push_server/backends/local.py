"""One node's clients and their uids, groups and sessions, in dicts and sets."""

from __future__ import annotations

from collections.abc import Iterable

from .base import ClientState, Session


class LocalState:
    """This node's clients' uids, groups and sessions, indexed both ways.

    The whole state of a single-process server (MemoryBackend), and each
    cluster node's mirror of its own clients (RedisBackend), which local
    delivery reads so a push never waits on Redis per recipient.
    """

    def __init__(self) -> None:
        self.clients: dict[str, ClientState] = {}
        self.uids: dict[str, set[str]] = {}
        self.groups: dict[str, set[str]] = {}

    def add(self, client_id: str, uid: str | None) -> None:
        self.clients[client_id] = ClientState(None)
        if uid is not None:
            self.bind(client_id, uid)

    def remove(self, client_id: str) -> ClientState | None:
        client = self.clients.pop(client_id, None)
        if client is None:
            return None
        if client.uid is not None:
            self._drop(self.uids, client.uid, client_id)
        for group in client.groups or ():
            self._drop(self.groups, group, client_id)
        return client

    def bind(self, client_id: str, uid: str) -> None:
        client = self.clients.get(client_id)
        if client is None:
            return
        if client.uid is not None:
            self._drop(self.uids, client.uid, client_id)
        client.uid = uid
        self.uids.setdefault(uid, set()).add(client_id)

    def unbind(self, client_id: str) -> None:
        client = self.clients.get(client_id)
        if client is not None and client.uid is not None:
            self._drop(self.uids, client.uid, client_id)
            client.uid = None

    def join(self, client_id: str, group: str) -> None:
        client = self.clients.get(client_id)
        if client is None:
            return
        if client.groups is None:
            client.groups = set()
        client.groups.add(group)
        self.groups.setdefault(group, set()).add(client_id)

    def leave(self, client_id: str, group: str) -> None:
        client = self.clients.get(client_id)
        if client is not None and client.groups and group in client.groups:
            client.groups.discard(group)
            self._drop(self.groups, group, client_id)

    def ungroup(self, group: str) -> None:
        for client_id in self.groups.pop(group, ()):
            client = self.clients.get(client_id)
            if client is not None and client.groups:
                client.groups.discard(group)

    def set_session(self, client_id: str, session: Session, merge: bool) -> None:
        client = self.clients.get(client_id)
        if client is not None:
            client.session = {**(client.session or {}), **session} if merge else session

    def replace(self, client_id: str, uid: str | None, groups: Iterable[str], session: Session) -> None:
        """Make one client's entry what Redis says it is."""
        if client_id not in self.clients:
            return
        self.remove(client_id)
        self.add(client_id, uid)
        for group in groups:
            self.join(client_id, group)
        self.clients[client_id].session = session or None

    def members(self, groups: list[str]) -> Iterable[str]:
        """The clients in any of ``groups``, each once."""
        return self._union(self.groups, groups)

    def uid_clients(self, uids: list[str]) -> Iterable[str]:
        """The clients bound to any of ``uids``, each once."""
        return self._union(self.uids, uids)

    @staticmethod
    def _union(index: dict[str, set[str]], keys: list[str]) -> Iterable[str]:
        # One key (the common case) needs no copy: its set is iterated as is.
        if len(keys) == 1:
            return index.get(keys[0], ())
        found: set[str] = set()
        for key in keys:
            found.update(index.get(key, ()))
        return found

    @staticmethod
    def _drop(index: dict[str, set[str]], key: str, client_id: str) -> None:
        clients = index.get(key)
        if clients is not None:
            clients.discard(client_id)
            if not clients:
                del index[key]
