"""The ``faults`` item (issue 10): delivery under faults, counted, at a larger size than the test suite.

Runs the scenarios of :mod:`tests.faults.cluster_rig` and :mod:`tests.faults.pages_rig`
(the same code the suite asserts with) on real redis-server and push_server processes:

- Redis killed for 2 s and restarted empty under 3 nodes, a pusher retrying every 503;
- one node of 3 SIGKILLed while a numbered stream goes to a group on every node;
- end to end: Redis killed for 2 s and restarted empty under 3 nodes with the web
  app (its push_client on node 0) and simulated pages following docs/delivery.md
  spread over the nodes, some posting through the web app throughout; counted
  after the pages' own catch-up.

Each reports lost / duplicated (page, message) pairs and seconds until the
cluster answers for every page again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any


def run_faults(pages: int, messages: int, log: Callable[[str], None], web_pages: int = 300) -> dict[str, Any]:
    """The push-level scenarios with ``pages`` pages and the end-to-end one with ``web_pages``, on 3 nodes; the figures of each."""
    from tests.faults import cluster_rig, pages_rig

    # The web app serves in this process: its request lines and its expected
    # "stored but not pushed" errors during the outage would drown the report.
    for name in ("werkzeug", "web_app"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    out: dict[str, Any] = {}
    for name, size, scenario in (
        ("redis_restarted_empty", pages, lambda: cluster_rig.redis_restarted_empty(pages=pages, nodes=3, outage=2.0)),
        ("node_killed", pages, lambda: cluster_rig.node_killed(pages=pages, nodes=3, messages=messages)),
        # Ten posters at ~4 messages/s each: about 80 messages around the outage, every page a reader.
        (
            "pages_redis_restarted_empty",
            web_pages,
            lambda: pages_rig.redis_restarted_empty(
                pages=web_pages, nodes=3, posters=min(10, web_pages), outage=2.0, interval=0.25, after=30
            ),
        ),
    ):
        log(f"  faults: {name} ({size} pages, 3 nodes)")
        try:
            figures = asyncio.run(scenario())
        except Exception as exc:  # one failed scenario must not hide the other's figures
            log(f"  FAILED {type(exc).__name__}: {exc}")
            figures = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            log(
                f"    lost {figures['lost']}, duplicated {figures['duplicated']}, "
                f"whole again after {figures['seconds_to_whole']} s ({figures['pairs']:,} pairs)"
            )
        out[name] = figures
    return out


def table(faults: dict[str, Any]) -> list[str]:
    """The faults figures as markdown lines."""
    lines = [
        "",
        "| fault | pages | messages | (page, message) pairs | lost | duplicated | of which unexplained | s to whole |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in faults.items():
        if "error" in f:
            lines.append(f"| {name} | failed: {f['error']} |||||||")
            continue
        unexplained = f.get("unexplained_duplicates", f["duplicated"])
        lines.append(
            f"| {name} | {f['pages']} | {f['messages']} | {f['pairs']:,} | {f['lost']} | {f['duplicated']} "
            f"| {unexplained} | {f['seconds_to_whole']} |"
        )
    for name, f in faults.items():
        if "say_statuses" in f:
            lines.append("")
            lines.append(
                f"{name}: /say answered {f['say_statuses']}; {f['not_pushed']:,} pairs never pushed to their page "
                f"(shown from history); {f['reconnected']} pages reconnected; "
                f"{f.get('told', '-')} of {f['pages']} told redis_lost then redis_restored."
            )
    return lines
