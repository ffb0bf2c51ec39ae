"""Leases and reaping: how a node proves it is alive, and how the dead ones' clients depart.

Each node renews ``lease:N`` (expiring after the node timeout) every third of
it, and every half of it, give or take a quarter, it sweeps: the script that
finds an expired lease claims the dead node's clients atomically (``reaping``:
exactly one reaper), which the claimer then departs :data:`CHUNK` at a time,
each client once, with its leave signals. A reaper that dies mid-way is
replaced at the next sweep by whoever finds its own lease expired.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from ... import metrics
from ..base import BackendUnavailable
from . import format

if TYPE_CHECKING:
    from .membership import Membership

log = logging.getLogger(__name__)

#: Clients per script call when reaping a dead node or writing state back:
#: big enough to be quick, small enough not to stall Redis for long.
CHUNK = 500


async def keep_lease(member: Membership) -> None:
    """Renew the lease and sweep, until the node finds itself missing (it then reconnects)."""
    timeout = member.config.node_timeout
    renew_every = timeout / 3
    sweep_every = timeout / 2
    loop = asyncio.get_running_loop()
    next_sweep = loop.time() + sweep_every * random.random()
    while True:
        await asyncio.sleep(renew_every)
        if await asyncio.wait_for(renew_lease(member), timeout):
            # We were reaped (a stall longer than the lease) or Redis was
            # emptied under us: reconnect, which takes the clients not
            # reaped yet back and writes every live one back, with the
            # cluster answering 503 until then.
            log.warning("node %s was missing from Redis; writing its clients back", member.node_id)
            raise BackendUnavailable("this node was missing from Redis")
        if loop.time() >= next_sweep:
            next_sweep = loop.time() + sweep_every * (0.75 + random.random() / 2)
            await sweep(member)


async def renew_lease(member: Membership) -> bool:
    """Renew the lease; True if this node was missing from Redis (reaped, or Redis emptied)."""
    ttl_ms = str(int(member.config.node_timeout * 1000))
    metrics.LEASE_RENEWALS.inc()
    missing, holders = await member.transport.script_now("renew", member.node_id, ttl_ms)
    member.remember(holders)
    return bool(missing)


async def sweep(member: Membership) -> None:
    """Claim the nodes whose lease expired, and start reaping each."""
    claimed = await member.gate.internal("sweep", member.node_id)
    for node in format.texts(claimed):
        log.warning("node %s lost its lease; reaping its clients", node)
        member.spawn(reap(member, node))


async def reap(member: Membership, node: str) -> None:
    """Depart a dead node's clients, CHUNK at a time, with the events the app is owed."""
    events = member.host.events
    try:
        if events is not None:
            await events.reaping(node)  # the dead node's client_closed, before its state goes
        while True:
            left = await member.gate.internal("reap", node, member.node_id, str(CHUNK))
            if left <= 0:
                break
        if events is not None:
            await events.reaped(node)  # then its uids' uid_offline, its groups' group_vacated
        log.info("reaped node %s", node)
    except BackendUnavailable as exc:
        # Whoever sweeps after the reconnection takes the reaping over.
        log.warning("reaping node %s interrupted: %s", node, exc)
