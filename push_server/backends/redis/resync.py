"""Writing a node's state back to Redis, on every (re)connection.

After a blip Redis still knows the node's clients and the write-back only
confirms them; after Redis lost everything (or reaped this node during a
stall) it puts every live client back, with its uid, groups and session, from
the node's mirror. Either way Redis is the authority afterwards for what it
still knew: changes made on other nodes while this one was cut off flow into
the mirror.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from ..base import Session
from . import format
from .reaping import CHUNK

if TYPE_CHECKING:
    from ..local import LocalState
    from .membership import Membership

log = logging.getLogger(__name__)


async def resync(member: Membership) -> None:
    """Make Redis hold this node's clients again, and the mirror hold Redis's view of them.

    Clients Redis still knows keep their Redis state (changes made elsewhere
    while this node was cut off land in the mirror); clients it lost are
    written back; clients Redis lists for this node that are gone locally
    depart, with their leave signals to the other nodes (this node's members
    had theirs already). Then the keys the API claimed while Redis was away
    are written too, and the node's start time (``get_nodes``).
    """
    node_id, mirror = member.node_id, member.mirror
    async with member.resync_lock:
        listed = set(format.texts(await member.gate.internal("reclaim", node_id)))
        local = list(mirror.clients.items())
        for start in range(0, len(local), CHUNK):
            entries = [
                [cid, client.uid or False, sorted(client.groups or ()), format.session_args(client.session or {})]
                for cid, client in local[start : start + CHUNK]
            ]
            known = json.loads(await member.gate.internal("resync", node_id, format.dumps(entries)))
            for cid, uid, groups, session in known or ():
                _refresh(mirror, cid, uid or None, set(groups or ()), format.session_from_pairs(session or []))
        # Gone meanwhile: listed by Redis, or written back by this very
        # loop after the client had left (its departure may have run first).
        gone = [cid for cid in listed.union(cid for cid, _ in local) if cid not in mirror.clients]
        for start in range(0, len(gone), CHUNK):
            await member.gate.internal("depart_many", node_id, *gone[start : start + CHUNK])
        await member.claims.write_back()
        await member.gate.internal_command("HSET", member.transport.key("started"), node_id, repr(member.started))
        if local or gone:
            log.info("node %s: state written back (%d clients, %d departed meanwhile)", node_id, len(local), len(gone))


def _refresh(mirror: LocalState, client_id: str, uid: str | None, groups: set[str], session: Session) -> None:
    """Give the mirror Redis's state of one client, if it differs (after a blip it rarely does)."""
    client = mirror.clients.get(client_id)
    if client is not None and (client.uid, client.groups or set(), client.session or {}) != (uid, groups, session):
        mirror.replace(client_id, uid, groups, session)
