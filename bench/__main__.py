"""``python -m bench``: webchat and python-socketio side by side, issue 5's items 1-7.

    python -m bench            # the full run (about 25 minutes on 2 cores)
    python -m bench --quick    # small sizes, no verdicts: the CI smoke run (under a minute)

Writes ``results.json``, ``results.md`` and ``results.png`` into ``bench/results/``
(``--out`` elsewhere); the quick run writes ``quick.*`` so it never overwrites a
full run's files. Servers' logs go to ``bench/results/tmp/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import report, scenarios
from bench.floor import send_floor
from bench.systems import ROOT, start_redis

ITEMS = ("floor", "core", "api", "say", "cluster", "faults", "room")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 1 if a measurement failed outright."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="webchat vs python-socketio")
    parser.add_argument("--quick", action="store_true", help="small sizes, no verdicts (CI)")
    parser.add_argument("--systems", default="webchat,socketio", help="comma list (default: both)")
    parser.add_argument("--items", default=",".join(ITEMS), help=f"comma list of {', '.join(ITEMS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="output folder")
    args = parser.parse_args(argv)
    cfg = scenarios.QUICK if args.quick else scenarios.FULL
    systems = [s for s in args.systems.split(",") if s]
    items = [i for i in args.items.split(",") if i]
    started = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    results: dict[str, Any] = {
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": scenarios.machine(),
        "config": cfg.__dict__,
        "systems": {s: {} for s in systems},
    }
    if "floor" in items:
        log("send() floor")
        results["send_floor"] = {
            "one_peer": send_floor(cfg.floor_calls, 1),
            "many_peers": send_floor(cfg.floor_calls, 1000 if not args.quick else 100),
        }
    if "faults" in items:
        log("faults: delivery under faults, counted (webchat only)")
        from bench.faults import run_faults

        results["faults"] = run_faults(cfg.faults_pages, cfg.faults_messages, log, cfg.faults_web_pages)
    if "room" in items:
        log("room: /say → a room's members, alone and with typing and reads alongside (webchat only)")
        from bench.room import run_room

        results["room"] = _attempt(lambda: run_room(args.quick, log), log)
    for system in systems:
        out = results["systems"][system]
        if "core" in items:
            log(f"{system}: items 1, 2, 3, 6")
            out.update(_core(system, cfg, log))
        if "api" in items:
            log(f"{system}: item 4")
            out["api"] = _with_redis(system, lambda factory: scenarios.run_api_rate(factory, cfg, log), log)
        if "say" in items:
            log(f"{system}: item 5")
            out["say"] = _attempt(lambda s=system: scenarios.run_say(s, cfg, log), log)
        if "cluster" in items:
            log(f"{system}: item 7 ({cfg.cluster_connections:,} connections on {cfg.cluster_nodes} processes)")
            out["cluster"] = _attempt(lambda s=system: scenarios.run_cluster(s, cfg, log), log)
    results["targets"] = report.targets(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "results"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = report.table(results)
    (args.out / f"{stem}.md").write_text(text)
    try:
        report.chart(results, args.out / f"{stem}.png")
    except ImportError as exc:
        log(f"no chart: {exc} (pip install matplotlib)")
    print(text)
    log(f"wrote {args.out / stem}.json, .md, .png")
    failed = [
        f"{s}.{k}"
        for s, data in results["systems"].items()
        for k, v in data.items()
        if isinstance(v, dict) and "error" in v
    ]
    failed += [f"faults.{k}" for k, v in results.get("faults", {}).items() if "error" in v]
    failed += ["room"] if "error" in results.get("room", {}) else []
    if failed:
        log(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def _attempt(fn: Any, log: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = fn()
        return result
    except Exception as exc:
        log(f"  FAILED {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}


def _with_redis(system: str, run: Any, log: Any) -> dict[str, Any]:
    """Run ``run(factory)`` with a factory for the system; socketio's gets a private Redis."""
    if system == "webchat":
        return _attempt(lambda: run(scenarios.Webchat), log)
    redis_proc, redis_url = start_redis()
    try:
        return _attempt(lambda: run(lambda: scenarios.Socketio(redis_url)), log)
    finally:
        redis_proc.stop()


def _core(system: str, cfg: scenarios.Config, log: Any) -> dict[str, Any]:
    result = _with_redis(system, lambda factory: scenarios.run_core(factory, cfg, log), log)
    if "error" in result and len(result) == 1:
        return {"idle_rss": result}
    return result


if __name__ == "__main__":
    sys.exit(main())
