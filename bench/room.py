"""The ``room`` item (issue 12): ``POST /say`` → every member of a room, with typing and read traffic and without, in one run.

    python -m bench --items room --out /tmp/room           # 100 members, 10 typists (about 8 minutes on 2 cores)
    python -m bench --items room --quick --out /tmp/room   # 10 members, 3 typists (tests/bench/test_room.py)

The processes are real: push_server as item 5 starts it, and web_app as the
Procfile runs it (gunicorn, 2 worker processes of 8 threads, access log on;
SQLite by default, as item 5), both at nice −10 like the servers of items
1–4, with every rate limit at its default except registrations (all the
members register from one address). Not ``flask run --with-threads`` as in
item 5: its unbounded threads let more than 15 rate-limited requests run at
once, each holding one pooled database connection and waiting for a second
(the limit's own), and at one message a second they waited out the pool's
30 s timeout and answered 500. The members (bench/room_members.py) are real
accounts that register and log in through the web app, open the room's
history, connect to the push server and ``/bind`` as the page does.

Messages are said at a fixed pace, each by the next of the typists in turn, in
phases that alternate *quiet* (nothing but ``/say``) and *side* (the typists
also call ``/typing`` at typing.js's throttle, and every member marks read as
reads.js does), after a warm-up that is not counted. Each message's latency
to each member runs from just before its POST (``time.time()`` in the sayer's
process) to the kernel's receive time on that member's socket; p50 and p99
are over every (member, message) pair. The cost of the side traffic is the
side figure divided by the quiet one, measured on the same machine minutes
apart. Server CPU comes from ``/proc`` and the web app's time per endpoint
from its own ``/metrics``; the SQL statements of one ``/say``, one read and
one ``/typing`` are counted in-process (bench/room_sql.py).
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.room_members import Crowds
from bench.room_sql import count_sql
from bench.scenarios import percentile
from bench.systems import FIRST_NICE, TMP, Proc, cpu_seconds, free_port, prioritize, wait_port

__all__ = ["FULL", "QUICK", "RoomConfig", "run_room", "table"]


@dataclass(frozen=True)
class RoomConfig:
    """The sizes of one run of the item."""

    members: int
    typists: int  # they say the messages too, in turn
    messages: int  # counted per mode (quiet, side)
    rounds: int  # quiet/side alternations the messages are split over
    interval: float  # seconds between two messages said
    warmup: int  # messages said (with side traffic) before counting
    workers: int  # member processes
    #: Seconds a phase waits for its last message to reach everyone before counting what is missing.
    timeout: float = 30.0


#: A busy room: a message every 2 s, each read by every member (reads.js sends one read 1-2 s after the
#: position moves, at most one a second). At one a second, with the reads before `cheap-reads` (one per
#: message, 6 statements, in a burst), the web app saturated here (2 shared cores, load ~8).
FULL = RoomConfig(members=100, typists=10, messages=100, rounds=2, interval=2.0, warmup=10, workers=2)
QUICK = RoomConfig(members=10, typists=3, messages=10, rounds=1, interval=0.1, warmup=2, workers=1)

#: The Procfile's default (WEB_WORKERS): one process per core here.
WEB_WORKERS = 2

_ENDPOINTS = {"say": "chat.say", "read": "reads.mark_read", "typing": "typing_indicator.typing"}


def run_room(
    quick: bool, log: Callable[[str], None], cfg: RoomConfig | None = None, database_url: str | None = None
) -> dict[str, Any]:
    """The item's figures: the run's sizes, each mode's figures, the side ÷ quiet ratios and the SQL statements.

    ``database_url``: the web app's database (an empty one); SQLite in the run's folder by default.
    """
    cfg = cfg or (QUICK if quick else FULL)
    why = scenarios.web_app_available()
    if why:
        return {"available": False, "why": why}
    workdir = TMP / "room"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    system: Any = None
    app: Proc | None = None
    # The member processes import while the servers start.
    crowds = Crowds(cfg.workers)
    sql: dict[str, Any] = {}
    counting: threading.Thread | None = None
    try:
        system = scenarios.Webchat()
        push, ws_port, api_port = system.nodes[0]
        api_url = f"http://127.0.0.1:{api_port}"
        # The SQL statements are counted in this process while the members set up, which nothing measures.
        counting = threading.Thread(target=count_sql, args=(workdir / "sql", sql), daemon=True)
        counting.start()
        app, port = _gunicorn(
            workdir,
            {
                "PUSH_API_URL": api_url,
                "PUSH_SECRET": system.secret,
                "SECRET_KEY": "bench-room",
                "DATABASE_URL": database_url or f"sqlite:///{workdir}/chat.db",
                "WEBCHAT_INSTANCE_PATH": str(workdir),
                "PUSH_WS_PORT": str(ws_port),
                # Every member registers from 127.0.0.1: the per-address limit (20 an hour) would refuse the 21st.
                "RATE_LIMIT_REGISTRATIONS": "off",
            },
        )
        web_url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{ws_port}/ws"
        database = (database_url or "sqlite").split(":", 1)[0]
        out: dict[str, Any] = {"available": True, "config": cfg.__dict__, "database": database}
        log(f"  room: {cfg.members} members register and log in, open the room and /bind")
        names = [[f"member{i}" for i in range(w, cfg.members, cfg.workers)] for w in range(cfg.workers)]
        crowds.ask("register", [{"web_url": web_url, "ws_url": ws_url, "names": n} for n in names], 60 + cfg.members)
        room_id = crowds.ask("create_room", [{"name": "bench"}], 30)[0]
        crowds.ask("open", [{"room_id": room_id, "timeout": 30 + cfg.members / 5}] * cfg.workers, 60 + cfg.members)
        counting.join(60)
        out["prioritized"] = prioritize([push.pid, app.pid], FIRST_NICE)
        procs = {"web_app": app, "push_server": push}
        _phase(crowds, cfg, procs, web_url, "warm", cfg.warmup, side=True)
        phases: dict[str, list[dict[str, Any]]] = {"quiet": [], "side": []}
        per_round = cfg.messages // cfg.rounds
        for r in range(cfg.rounds):
            for mode in ("quiet", "side"):
                log(f"  room: round {r + 1}/{cfg.rounds}, {mode}: {per_round} messages, one every {cfg.interval} s")
                phases[mode].append(_phase(crowds, cfg, procs, web_url, f"{mode}{r}", per_round, side=mode == "side"))
        for mode, done in phases.items():
            out[mode] = _figures(done, cfg)
        quiet, side = out["quiet"], out["side"]
        out["side_vs_quiet"] = {
            key: side[key] / quiet[key]
            for key in ("p50_ms", "p99_ms", "say_call_p50_ms", "web_app_cpu_ms_per_message")
            if quiet.get(key) and side.get(key) is not None
        }
        log(
            f"    quiet p50 {quiet['p50_ms'] or 0:.1f} ms p99 {quiet['p99_ms'] or 0:.1f} ms; side p50 "
            f"{side['p50_ms'] or 0:.1f} ms p99 {side['p99_ms'] or 0:.1f} ms; missing {quiet['missing']}/{side['missing']}"
        )
        out["sql"] = sql
        return out
    finally:
        crowds.stop()
        if app is not None:
            app.stop()
        if system is not None:
            system.stop()


def _gunicorn(workdir: Path, env: dict[str, str]) -> tuple[Proc, int]:
    """web_app as the Procfile runs it: gunicorn, WEB_WORKERS processes of 8 threads, access log on."""
    port = free_port()
    metrics = workdir / "metrics"  # every worker's counts, summed by /metrics (docs/operations.md)
    metrics.mkdir()
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(WEB_WORKERS)]
    argv += ["--worker-class", "gthread", "--threads", "8", "--access-logfile", "-"]
    # Its default control socket is one path per user, which another gunicorn (a test's, a deployment's) shares.
    argv += ["--no-control-socket", "web_app:create_app()"]
    proc = Proc("web_app-room", argv, {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)})
    wait_port(port, timeout=30, proc=proc.popen)
    return proc, port


def _phase(
    crowds: Crowds, cfg: RoomConfig, procs: dict[str, Proc], web_url: str, tag: str, count: int, side: bool
) -> dict[str, Any]:
    """One phase: ``count`` messages one every ``cfg.interval`` s, each by the next typist; what every worker saw."""
    from tests.scrape import scrape

    workers = cfg.workers
    start = time.time() + 0.3
    says: list[list[tuple[int, float, int]]] = [[] for _ in range(workers)]
    for k in range(count):
        sayer = k % cfg.typists  # member `sayer` lives in worker sayer % workers, at place sayer // workers
        says[sayer % workers].append((k, start + k * cfg.interval, sayer // workers))
    typists = [[t // workers for t in range(w, cfg.typists, workers)] for w in range(workers)]
    cpu0 = {name: proc.cpu() for name, proc in procs.items()}
    members0 = sum(map(cpu_seconds, crowds.pids))
    metrics0 = scrape(web_url)
    began = time.monotonic()
    answers = crowds.ask(
        "phase",
        [
            {"tag": tag, "count": count, "says": says[w], "typists": typists[w], "side": side, "timeout": cfg.timeout}
            for w in range(workers)
        ],
        timeout=count * cfg.interval + cfg.timeout * 3 + 30,
    )
    wall = time.monotonic() - began
    cpu = {name: proc.cpu() - cpu0[name] for name, proc in procs.items()}
    cpu["members"] = sum(map(cpu_seconds, crowds.pids)) - members0
    metrics1 = scrape(web_url)

    def server_time(endpoint: str) -> tuple[float, float]:
        key = (("endpoint", endpoint),)
        return (
            metrics1.get(("webchat_http_request_seconds_sum", key), 0.0)
            - metrics0.get(("webchat_http_request_seconds_sum", key), 0.0),
            metrics1.get(("webchat_http_request_seconds_count", key), 0.0)
            - metrics0.get(("webchat_http_request_seconds_count", key), 0.0),
        )

    return {
        "count": count,
        "said": [s for answer in answers for s in answer["said"]],
        "arrivals": [a for answer in answers for a in answer["arrivals"]],
        "calls": [c for answer in answers for c in answer["calls"]],
        "frames": sum((Counter(answer["frames"]) for answer in answers), Counter()),
        "duplicates": sum(answer["duplicates"] for answer in answers),
        "resent": sum(answer["resent"] for answer in answers),
        "failures": sum((Counter(answer["failures"]) for answer in answers), Counter()),
        "disconnects": sum(answer["disconnects"] for answer in answers),
        "wall_s": wall,
        "cpu_s": cpu,
        "server": {kind: server_time(endpoint) for kind, endpoint in _ENDPOINTS.items()},
    }


def _ms(values: list[float], q: float) -> float | None:
    return percentile(values, q) * 1e3 if values else None


def _figures(phases: list[dict[str, Any]], cfg: RoomConfig) -> dict[str, Any]:
    """One mode's figures over its phases: latency over every (member, message) pair, the side traffic, CPU."""
    latencies: list[float] = []
    firsts: list[float] = []
    lasts: list[float] = []
    say_calls: list[float] = []
    statuses: Counter[int] = Counter()
    expected = 0
    for phase in phases:
        for said in phase["said"]:
            statuses[said["status"]] += 1
            say_calls.append(said["call_s"])
            if said["status"] != 201:
                continue
            k = str(said["k"])  # JSON's keys
            got = [arrivals[k] - said["at"] for arrivals in phase["arrivals"] if k in arrivals]
            expected += len(phase["arrivals"])
            latencies += got
            if got:
                firsts.append(min(got))
                lasts.append(max(got))
    seconds = sum(phase["count"] for phase in phases) * cfg.interval  # the time the messages were said over
    wall = sum(phase["wall_s"] for phase in phases)
    out: dict[str, Any] = {
        "members": len(phases[0]["arrivals"]),
        "messages": sum(phase["count"] for phase in phases),
        "say_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "pairs": expected,
        "arrived": len(latencies),
        "missing": expected - len(latencies),
        "duplicated": sum(phase["duplicates"] for phase in phases),
        "disconnects": sum(phase["disconnects"] for phase in phases),
        "resent": sum(phase["resent"] for phase in phases),
        "failures": dict(sum((phase["failures"] for phase in phases), Counter())),
        "p50_ms": _ms(latencies, 50),
        "p99_ms": _ms(latencies, 99),
        "max_ms": max(latencies) * 1e3 if latencies else None,
        "first_member_p50_ms": _ms(firsts, 50),
        "last_member_p50_ms": _ms(lasts, 50),
        "last_member_p99_ms": _ms(lasts, 99),
        "say_call_p50_ms": _ms(say_calls, 50),
        "say_call_p99_ms": _ms(say_calls, 99),
        "wall_s": round(wall, 1),
    }
    for kind in ("read", "typing"):
        calls = [c for phase in phases for c in phase["calls"] if c[0] == kind]
        out[kind] = {
            "calls": len(calls),
            "per_s": len(calls) / seconds,
            "per_message": len(calls) / max(out["messages"], 1),
            "statuses": {str(k): v for k, v in sorted(Counter(c[1] for c in calls).items())},
            "call_p50_ms": _ms([c[2] for c in calls], 50),
            "call_p99_ms": _ms([c[2] for c in calls], 99),
        }
    frames: Counter[str] = sum((phase["frames"] for phase in phases), Counter())
    out["frames_per_member_per_s"] = {kind: n / out["members"] / seconds for kind, n in sorted(frames.items())}
    for name in ("web_app", "push_server", "members"):
        used = sum(phase["cpu_s"][name] for phase in phases)
        out[f"{name}_cpu_share"] = used / wall  # of one core, over the phases' wall time
        out[f"{name}_cpu_ms_per_message"] = used / max(out["messages"], 1) * 1e3  # side traffic included
    for kind in _ENDPOINTS:
        total, count = (sum(phase["server"][kind][i] for phase in phases) for i in (0, 1))
        out[f"{kind}_in_app_mean_ms"] = total / count * 1e3 if count else None
    return out


def table(room: dict[str, Any]) -> list[str]:
    """The item's figures as markdown lines."""
    if room.get("available") is False or "error" in room:
        return ["", f"room: {room.get('why') or room.get('error')}"]
    cfg, quiet, side = room["config"], room["quiet"], room["side"]
    ratio = room.get("side_vs_quiet", {})

    def fmt(value: Any, digits: int = 1) -> str:
        return "—" if value is None else f"{value:,.{digits}f}"

    rows = [
        ("p50, every (member, message) pair (ms)", "p50_ms", "p50_ms"),
        ("p99, every (member, message) pair (ms)", "p99_ms", "p99_ms"),
        ("max (ms)", "max_ms", None),
        ("first member of a message, p50 (ms)", "first_member_p50_ms", None),
        ("last member of a message, p50 (ms)", "last_member_p50_ms", None),
        ("POST /say answered, p50 (ms)", "say_call_p50_ms", "say_call_p50_ms"),
        ("/say inside the web app, mean (ms)", "say_in_app_mean_ms", None),
        (
            "web app CPU per message said, its side traffic included (ms)",
            "web_app_cpu_ms_per_message",
            "web_app_cpu_ms_per_message",
        ),
        ("web app CPU (share of one core)", "web_app_cpu_share", None),
        ("push server CPU per message said (ms)", "push_server_cpu_ms_per_message", None),
        ("the members' CPU (share of one core)", "members_cpu_share", None),
    ]
    lines = [
        "",
        f"room: POST /say → {cfg['members']} members, {quiet['messages']} messages per mode, one every "
        f"{cfg['interval']} s; side traffic: {cfg['typists']} typists on /typing, every member marking read; "
        f"web app on {room.get('database', 'sqlite')}",
        "",
        "| measurement | /say alone | with typing and reads | ratio |",
        "|---|---:|---:|---:|",
    ]
    for label, key, ratio_key in rows:
        digits = 2 if key.endswith("share") else 1
        lines.append(
            f"| {label} | {fmt(quiet.get(key), digits)} | {fmt(side.get(key), digits)} "
            f"| {fmt(ratio.get(ratio_key) if ratio_key else None, 2)} |"
        )
    for kind, label, per in (
        ("read", "POST /rooms/<id>/read: per message said", "per_message"),
        ("typing", "POST /typing: per second", "per_s"),
    ):
        s = side[kind]
        lines.append(
            f"| {label} (answered p50 ms; mean in app ms) | {quiet[kind]['calls']} | {s[per]:.1f} "
            f"({fmt(s['call_p50_ms'])}; {fmt(side.get(f'{kind}_in_app_mean_ms'))}) | |"
        )
    lines.append(
        f"| pairs arrived / expected (missing, duplicated) | {quiet['arrived']:,} / {quiet['pairs']:,} "
        f"({quiet['missing']}, {quiet['duplicated']}) | {side['arrived']:,} / {side['pairs']:,} "
        f"({side['missing']}, {side['duplicated']}) | |"
    )
    lines.append(
        f"| requests sent again after a closed kept-alive connection; failed | {quiet['resent']}; "
        f"{sum(quiet['failures'].values())} | {side['resent']}; {sum(side['failures'].values())} | |"
    )
    sql = room.get("sql", {})
    if "error" in sql:
        lines += ["", f"SQL statements not counted: {sql['error']}"]
    for kind, statements in sql.get("brief", {}).items():
        lines += ["", f"SQL of one {kind}: {len(statements)} statements — {', '.join(statements)}"]
    return lines
