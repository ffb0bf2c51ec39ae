"""Faults at the push level, counted: every (page, message) pair, 0 lost and 0 duplicated.

Real redis-server and push_server processes (see :mod:`tests.faults.cluster_rig`,
which the benchmark's ``faults`` item runs at a larger size).
"""

from __future__ import annotations

import pytest

from ..servers import RedisServer
from . import cluster_rig

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not RedisServer.available(), reason="redis-server is not installed (test.sh installs it)"),
]


async def test_redis_restarted_empty_loses_no_acknowledged_push() -> None:
    """Redis killed 2 s and restarted empty under 3 nodes: every push acknowledged with 200 reaches every page; pages are told; presence is whole."""
    figures = await cluster_rig.redis_restarted_empty(pages=30, nodes=3, outage=2.0)
    print("redis restarted empty:", figures)
    assert figures["lost"] == 0, figures
    # The only extra copies are those a 503 said it had delivered locally.
    assert figures["unexplained_duplicates"] == 0, figures
    assert figures["undercounts"] == 0, figures
    assert figures["refusals"] > 0, "the outage refused nothing: the scenario did not happen"
    assert figures["resyncs_in_order"] == 30, figures


async def test_a_killed_node_leaves_no_gap_on_the_survivors() -> None:
    """A node SIGKILLed during a numbered stream to a group on every node: the survivors' pages get it whole, once, in order."""
    figures = await cluster_rig.node_killed(pages=30, nodes=3, messages=150)
    print("node killed:", figures)
    assert (figures["lost"], figures["duplicated"], figures["out_of_order"]) == (0, 0, 0), figures
    assert figures["pages"] == 20


async def test_a_slow_consumer_among_200_is_dropped_and_nobody_else_misses_anything() -> None:
    """One page of 200 never reads: it is dropped, and the 199 others get every message once."""
    figures = await cluster_rig.slow_consumer(pages=200, nodes=2, messages=60)
    print("slow consumer:", figures)
    assert (figures["lost"], figures["duplicated"]) == (0, 0), figures
    assert figures["slow_page_dropped"], figures


async def test_sigterm_closes_2000_idle_connections_with_1001() -> None:
    """2,000 idle connections, then SIGTERM: every one receives close code 1001 (going away)."""
    figures = await cluster_rig.idle_then_sigterm(connections=2000)
    print("sigterm:", figures)
    assert figures["closed_1001"] == 2000, figures
