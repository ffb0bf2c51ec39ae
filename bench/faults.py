"""The ``faults`` item (issue 10): delivery under faults, counted, at a larger size than the test suite.

Runs the push-level scenarios of :mod:`tests.faults.cluster_rig` (the same code
the suite asserts with) on real redis-server and push_server processes:

- Redis killed for 2 s and restarted empty under 3 nodes, a pusher retrying every 503;
- one node of 3 SIGKILLed while a numbered stream goes to a group on every node.

Each reports lost / duplicated (page, message) pairs and seconds until the
cluster answers for every page again.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable


def run_faults(pages: int, messages: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Both scenarios with ``pages`` pages on 3 nodes; the figures of each."""
    from tests.faults import cluster_rig

    out: dict[str, Any] = {}
    for name, scenario in (
        ("redis_restarted_empty", lambda: cluster_rig.redis_restarted_empty(pages=pages, nodes=3, outage=2.0)),
        ("node_killed", lambda: cluster_rig.node_killed(pages=pages, nodes=3, messages=messages)),
    ):
        log(f"  faults: {name} ({pages} pages, 3 nodes)")
        try:
            figures = asyncio.run(scenario())
        except Exception as exc:  # one failed scenario must not hide the other's figures
            log(f"  FAILED {type(exc).__name__}: {exc}")
            figures = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            log(f"    lost {figures['lost']}, duplicated {figures['duplicated']}, "
                f"whole again after {figures['seconds_to_whole']} s ({figures['pairs']:,} pairs)")
        out[name] = figures
    return out


def table(faults: dict[str, Any]) -> list[str]:
    """The faults figures as markdown lines."""
    lines = ["", "| fault | pages | messages | (page, message) pairs | lost | duplicated | of which unexplained | s to whole |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, f in faults.items():
        if "error" in f:
            lines.append(f"| {name} | failed: {f['error']} |||||||")
            continue
        unexplained = f.get("unexplained_duplicates", f["duplicated"])
        lines.append(f"| {name} | {f['pages']} | {f['messages']} | {f['pairs']:,} | {f['lost']} | {f['duplicated']} "
                     f"| {unexplained} | {f['seconds_to_whole']} |")
    return lines
