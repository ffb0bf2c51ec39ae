"""Deployment faults as pages see them: a Redis Sentinel failover and a rolling restart (SIGHUP), counted.

The chain and the count are :mod:`tests.faults.pages_rig`'s: the real web app,
simulated pages following docs/delivery.md (:class:`tests.faults.page.Page`),
several of them posting through ``/say`` before, during and after the fault;
then every (page, message) pair is counted after the pages' own catch-up.

What is counted is every message the database holds, read back through
history once posting has stopped, not only those ``/say`` acknowledged: a
``/say`` that stored its message and still answered an error would otherwise
hide it from the count. It is reported as ``stored_unanswered``, since the
real page keeps that text and the person sends it again (a second copy).

Used by ``tests/faults/test_deploy_pages.py``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

from ..sentinel import started_sentinel
from ..servers import RedisServer
from .cluster_rig import started_nodes, until_whole
from .page import Page, tally, until
from .pages_rig import SETTLE, Posters, figures, open_room, told_lost_and_restored, web_app

#: The web app as gunicorn runs it: an error is answered (JSON 500, or 503), not
#: raised into the test's server thread (which is what TESTING does).
PRODUCTION = {"TESTING": False}


async def _count_stored(pages: list[Page], posting: Posters) -> tuple[dict[str, int], int]:
    """The tally of every stored message of the room (the pages' own histories), and how many ``/say`` never acknowledged."""
    stored: dict[int, dict[str, Any]] = {}
    for page in pages:
        stored.update((message["id"], message) for message in await page.history())
    counted = await tally(pages, [stored[id_] for id_ in sorted(stored)], SETTLE)
    return counted, len(stored.keys() - {message["id"] for message in posting.said})


def _statuses(posting: Posters, since: int) -> dict[int, int]:
    """What ``/say`` answered for the messages stored from the ``since``-th on."""
    return dict(sorted(Counter(posting.status_of[message["id"]] for message in posting.said[since:]).items()))


async def sentinel_failover(
    pages: int = 12, nodes: int = 2, posters: int = 4, interval: float = 0.2, after: int = 15
) -> dict[str, Any]:
    """The Redis master SIGKILLed under ``nodes`` push nodes and the web app's sessions, all on one ``redis+sentinel://`` URL.

    The sentinel promotes the replica; the nodes and the web app follow it
    without a restart. ``posters`` pages post throughout; a ``/say`` that
    stored nothing (the web app could not read its session) is sent again.
    """
    with (
        started_sentinel() as sentinel,
        started_nodes(sentinel.url, nodes) as servers,
        web_app(servers[0], REDIS_URL=sentinel.url, **PRODUCTION) as live,
    ):
        async with open_room(live, servers, pages) as (opened, room_id):
            posting = Posters(opened[:posters], opened, interval, resend=True).start()
            try:
                await posting.until(10)
                during = len(posting.said)
                killed = time.monotonic()
                sentinel.kill("master")
                while await asyncio.to_thread(sentinel.master_port_now) != sentinel.replica_port:
                    if time.monotonic() - killed > SETTLE * 2:
                        raise AssertionError("the sentinel did not promote the replica")
                    await asyncio.sleep(0.05)
                promoted = time.monotonic() - killed
                seconds, undercounts = await until_whole(servers, pages, timeout=SETTLE * 2, group=f"room:{room_id}")
                statuses_during = _statuses(posting, during)
                await posting.until(len(posting.said) + after)
            finally:
                await posting.finish()
            counted, unanswered = await _count_stored(opened, posting)
            told = told_lost_and_restored(opened)
            return figures(
                opened,
                posting,
                counted,
                nodes=nodes,
                stored_unanswered=unanswered,
                # /say answers that stored nothing, by status: the web app's session store failing over.
                not_stored=dict(posting.not_stored),
                say_statuses_during=statuses_during,
                told=told,
                undercounts=undercounts,
                seconds_to_promotion=round(promoted, 2),
                seconds_to_whole=round(promoted + seconds, 2),  # from the kill
            )


async def rolling_restart(
    pages: int = 12, workers: int = 2, posters: int = 4, interval: float = 0.2, after: int = 15
) -> dict[str, Any]:
    """``push-server --workers N`` sent SIGHUP while pages are connected and ``posters`` of them post throughout.

    The workers are replaced one at a time; each old one closes its pages with
    1001, and they reconnect (to a worker still listening), bind and catch up.
    """
    redis = RedisServer().start()
    try:
        with (
            started_nodes(redis.url, 1, "--workers", str(workers), node_timeout=3.0) as (server,),
            web_app(server, **PRODUCTION) as live,
        ):
            # Every worker listening before the pages come, so the kernel spreads them over all.
            await until(lambda: server.log().count("internal API on") >= workers, "every worker listening", SETTLE)
            async with open_room(live, [server], pages) as (opened, room_id):
                posting = Posters(opened[:posters], opened, interval).start()
                try:
                    await posting.until(10)
                    during = len(posting.said)
                    assert server.process is not None
                    server.process.send_signal(signal.SIGHUP)
                    hup = time.monotonic()
                    await until(lambda: "rolling restart done" in server.log(), "the rolling restart", SETTLE * 4)
                    rolled = time.monotonic() - hup
                    seconds, undercounts = await until_whole(
                        [server], pages, timeout=SETTLE * 2, group=f"room:{room_id}"
                    )
                    statuses_during = _statuses(posting, during)
                    await posting.until(len(posting.said) + after)
                finally:
                    await posting.finish()
                counted, unanswered = await _count_stored(opened, posting)
                return figures(
                    opened,
                    posting,
                    counted,
                    workers=workers,
                    stored_unanswered=unanswered,
                    say_statuses_during=statuses_during,
                    # Group counts below the pages while they reconnected (they were away: not a fault).
                    undercounts=undercounts,
                    seconds_to_roll=round(rolled, 2),
                    seconds_to_whole=round(seconds, 2),  # from the end of the roll
                )
    finally:
        redis.stop()
