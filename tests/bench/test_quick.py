"""The benchmark's quick mode runs end to end and writes sane results, so it never rots."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import ITEMS

ROOT = Path(__file__).resolve().parents[2]
QUICK_ITEMS = ",".join(item for item in ITEMS if item != "room")

pytest.importorskip("socketio", reason="the benchmark's peer (pip install -e .[bench])")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.timeout(240)
def test_quick_run_writes_sane_results(tmp_path: Path) -> None:
    """`python -m bench --quick` exits 0 and reports positive figures for both systems."""
    run = subprocess.run(
        # Every item but room, which tests/bench/test_room.py runs and checks on its own.
        [sys.executable, "-m", "bench", "--quick", "--items", QUICK_ITEMS, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "quick.json").read_text())
    assert results["quick"] is True
    assert _number(results["send_floor"]["one_peer"]["cpu_us"])
    for system in ("webchat", "socketio"):
        data = results["systems"][system]
        for n in map(str, results["config"]["idle"]):
            assert _number(data["idle_rss"]["by_connections"][n]["bytes_per_connection"]), (system, n)
        for g in map(str, results["config"]["groups"]):
            fan = data["fan_out"][g]
            assert fan["delivered"] == fan["expected"], (system, g, fan)
            assert _number(fan["frames_per_s"]), (system, g)
            latency = data["latency"][g]
            assert latency["incomplete"] == 0 and _number(latency["p99_ms"]), (system, g, latency)
        stall = data["slow_consumer"]
        assert _number(stall["with"]["p99_ms"]) and _number(stall["without"]["p99_ms"]), (system, stall)
        assert _number(data["api"]["calls_per_s"]), system
        # Items 5 and 7 need web_app and the Redis cluster; without them they must say why.
        say, cluster = data["say"], data["cluster"]
        assert (say.get("available") is False and say["why"]) or _number(say["p99_ms"]), (system, say)
        assert (cluster.get("available") is False and cluster["why"]) or cluster["delivered"] > 0, (system, cluster)
    assert _number(results["systems"]["webchat"]["api"]["batched_ops_per_s"])
    assert _number(results["systems"]["webchat"]["api"]["async_calls_per_s"])
    assert _number(results["systems"]["webchat"]["api"]["client_cpu_us_per_call"])
    api = results["systems"]["webchat"]["api"]
    # Issue 11's floor: a minimal aiohttp handler in its own process, measured in the same run.
    assert _number(api["floor"]["calls_per_s"]) and _number(api["floor"]["server_cpu_us_per_call"]), api
    assert _number(api["server_cpu_us_per_call"]) and _number(api["server_cpu_vs_floor"]), api
    assert _number(api["server_cpu_us_per_batched_op"]), api
    assert (tmp_path / "quick.md").read_text().startswith("| measurement |")
    assert (tmp_path / "quick.png").stat().st_size > 10_000
