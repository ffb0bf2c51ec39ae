"""The benchmark's room item in quick mode: every (member, message) pair counted, alone and with typing and reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("wsproto", reason="the room item's members frame their sockets with it (pip install -e .[bench])")


@pytest.mark.timeout(150)
def test_room_quick_run_delivers_every_pair_with_and_without_side_traffic(tmp_path: Path) -> None:
    """`python -m bench --quick --items room` exits 0, every pair arrives once in both modes, and the side traffic was real."""
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--items", "room", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    room = json.loads((tmp_path / "quick.json").read_text())["room"]
    cfg = room["config"]
    for mode in ("quiet", "side"):
        figures = room[mode]
        assert figures["say_statuses"] == {"201": cfg["messages"]}, (mode, figures["say_statuses"])
        assert figures["pairs"] == cfg["members"] * cfg["messages"], (mode, figures)
        assert figures["arrived"] == figures["pairs"] and figures["missing"] == 0, (mode, figures)
        assert figures["duplicated"] == 0 and figures["disconnects"] == 0, (mode, figures)
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"], (mode, figures)
        assert figures["first_member_p50_ms"] > 0 and figures["say_call_p50_ms"] > 0, (mode, figures)
    quiet, side = room["quiet"], room["side"]
    # Quiet is /say alone; side adds the page's typing and read requests, all answered.
    assert quiet["read"]["calls"] == 0 and quiet["typing"]["calls"] == 0, quiet
    for kind in ("read", "typing"):
        assert side[kind]["calls"] > 0 and side[kind]["statuses"] == {"200": side[kind]["calls"]}, side[kind]
    # Each read's answer is pushed back to the reader ("read" frames); typing goes to the others.
    assert side["frames_per_member_per_s"]["read"] > 0 and side["frames_per_member_per_s"]["typing"] > 0, side
    assert room["side_vs_quiet"]["p50_ms"] > 0 and room["side_vs_quiet"]["p99_ms"] > 0
    sql = room["sql"]["brief"]
    assert "INSERT messages" in sql["say"] and "INSERT read_positions (upsert)" in sql["read"], sql
    report = (tmp_path / "quick.md").read_text()
    assert "room: POST /say → 10 members" in report
    assert "| p99, every (member, message) pair (ms) |" in report
    assert f"SQL of one read: {len(sql['read'])} statements" in report
