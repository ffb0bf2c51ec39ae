"""The read-only operations of the Redis backend: every answer for the whole cluster, from Redis's indexes.

None asks another node. Each is one command (or a few issued in one tick:
one round trip) on the keys the script maintains (:mod:`.lua` lists them).
"""

from __future__ import annotations

import asyncio
import json

from ..base import NodeInfo, Session
from .format import session_from_pairs, text, texts
from .gate import Gate
from .transport import Transport


class Queries:
    """Presence, membership and sessions, read from Redis (a mixin of :class:`.backend.RedisBackend`)."""

    gate: Gate
    transport: Transport

    async def get_session(self, client_id: str) -> Session | None:
        # Issued in one tick: one round trip.
        command, key = self.gate.command, self.transport.key
        online, session = await asyncio.gather(
            command("SISMEMBER", key("clients"), client_id), command("HGETALL", key("s:", client_id))
        )
        if not online:
            return None
        return {text(k): json.loads(value) for k, value in session.items()}

    async def is_online(self, client_id: str) -> bool:
        return bool(await self.gate.command("SISMEMBER", self.transport.key("clients"), client_id))

    async def is_uid_online(self, uid: str) -> bool:
        return bool(await self.gate.command("EXISTS", self.transport.key("u:", uid)))

    async def get_client_id_by_uid(self, uid: str) -> list[str]:
        return texts(await self.gate.command("SMEMBERS", self.transport.key("u:", uid)))

    async def get_uid_by_client_id(self, client_id: str) -> str | None:
        uid = await self.gate.command("GET", self.transport.key("cu:", client_id))
        return None if uid is None else text(uid)

    async def get_client_id_list_by_group(self, group: str) -> list[str]:
        return texts(await self.gate.command("SMEMBERS", self.transport.key("g:", group)))

    async def get_client_count_by_group(self, group: str) -> int:
        return int(await self.gate.command("SCARD", self.transport.key("g:", group)))

    async def get_client_sessions_by_group(self, group: str) -> dict[str, Session]:
        flat = await self.gate.call("sessions_by_group", group)
        return {text(flat[i]): session_from_pairs(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def get_uid_list_by_group(self, group: str) -> list[str]:
        return texts(await self.gate.command("HKEYS", self.transport.key("gu:", group)))

    async def get_uid_count_by_group(self, group: str) -> int:
        return int(await self.gate.command("HLEN", self.transport.key("gu:", group)))

    async def get_all_client_id_list(self) -> list[str]:
        return texts(await self.gate.command("SMEMBERS", self.transport.key("clients")))

    async def get_all_client_count(self) -> int:
        return int(await self.gate.command("SCARD", self.transport.key("clients")))

    async def get_all_uid_list(self) -> list[str]:
        return texts(await self.gate.command("SMEMBERS", self.transport.key("uids")))

    async def get_all_uid_count(self) -> int:
        return int(await self.gate.command("SCARD", self.transport.key("uids")))

    async def get_all_group_id_list(self) -> list[str]:
        return texts(await self.gate.command("SMEMBERS", self.transport.key("groups")))

    async def get_nodes(self) -> list[NodeInfo]:
        # The live nodes are those whose lease has not expired; each one's
        # clients are in nc:N, and its start time in the started hash (resync).
        command, key = self.gate.command, self.transport.key
        nodes, started = await asyncio.gather(command("SMEMBERS", key("nodes")), command("HGETALL", key("started")))
        names = sorted(texts(nodes))
        counts = await asyncio.gather(
            *(command("EXISTS", key("lease:", n)) for n in names),
            *(command("SCARD", key("nc:", n)) for n in names),
        )
        since = {text(k): float(v) for k, v in started.items()}
        return [
            {"node": n, "connections": int(count), "started": since.get(n, 0.0)}
            for n, live, count in zip(names, counts[: len(names)], counts[len(names) :], strict=True)
            if live
        ]
