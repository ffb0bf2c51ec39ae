"""Turn a run's results into the targets' verdicts, a markdown table and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["chart", "table", "targets"]

SYSTEMS = ("webchat", "socketio")


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if abs(value) >= 10_000:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def _worst(values: list[Any], high_is_bad: bool = True) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float))]
    if not numbers or len(numbers) < len(values):
        return None
    return max(numbers) if high_is_bad else min(numbers)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 5 with the measured figure and met / not met (None: not measured)."""
    web = results["systems"].get("webchat", {})
    sio = results["systems"].get("socketio", {})
    small, large = (str(n) for n in results["config"]["groups"])
    idle = [str(n) for n in results["config"]["idle"]]
    floor = _get(results, "send_floor", "one_peer", "cpu_us")
    rows = []

    def add(name: str, measured: float | None, limit: float, unit: str, at_most: bool = True, how: str = "") -> None:
        met = None if measured is None else (measured <= limit if at_most else measured >= limit)
        rows.append({"target": name, "measured": measured, "limit": limit, "unit": unit, "met": met, "how": how})

    cpu = _worst([_get(web, "fan_out", g, "cpu_us_per_frame") for g in (small, large)])
    if floor:
        add(
            "fan-out CPU per delivered frame ≤ 1.5× send() floor",
            None if cpu is None else cpu / floor,
            1.5,
            "× floor",
            how=f"worst of groups {small}/{large}: {_fmt(cpu, 2)} µs vs floor {_fmt(floor, 2)} µs",
        )
    pending = _worst([_get(web, "fan_out", f"{g}_pending10", "cpu_us_per_frame") for g in (small, large)])
    add(
        "≤ 1 µs per message with several pending per client",
        pending,
        1.0,
        "µs",
        how="10 messages per API call (one batch), worst group",
    )
    ratios = []
    for g in (small, large):
        a, b = _get(web, "fan_out", g, "cpu_us_per_frame"), _get(sio, "fan_out", g, "cpu_us_per_frame")
        ratios.append(b / a if a and b else None)
    add(
        "≥ 10× python-socketio on CPU per delivered frame",
        _worst(ratios, high_is_bad=False),
        10,
        "×",
        at_most=False,
        how="socketio µs ÷ webchat µs, worst group",
    )
    rss = _worst([_get(web, "idle_rss", "by_connections", n, "bytes_per_connection") for n in idle])
    add(
        "≤ 6 KB RSS per idle connection",
        None if rss is None else rss / 1024,
        6,
        "KB",
        how=f"worst of {'/'.join(idle)} connections",
    )
    add(f"p99 ≤ 10 ms, group of {small} (paced)", _get(web, "latency", small, "p99_ms"), 10, "ms")
    add(f"p99 ≤ 40 ms, group of {large} (paced)", _get(web, "latency", large, "p99_ms"), 40, "ms")
    add("push_client ≥ 5,000 acknowledged calls/s", _get(web, "api", "calls_per_s"), 5000, "calls/s", at_most=False)
    ratio = _get(web, "api", "server_cpu_vs_floor")
    add(
        "unbatched call: server CPU ≤ 1.3× minimal aiohttp handler",
        ratio,
        1.3,
        "× floor",
        how=f"{_fmt(_get(web, 'api', 'server_cpu_us_per_call'))} µs vs floor "
        f"{_fmt(_get(web, 'api', 'floor', 'server_cpu_us_per_call'))} µs, same run, same client loop",
    )
    add(
        "push_client ≥ 300,000 batched operations/s",
        _get(web, "api", "batched_ops_per_s"),
        300_000,
        "ops/s",
        at_most=False,
    )
    return rows


def _metric_rows(results: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    web = results["systems"].get("webchat", {})
    sio = results["systems"].get("socketio", {})
    small, large = (str(n) for n in results["config"]["groups"])
    rows: list[tuple[str, Any, Any]] = []

    def both(label: str, *path: str, scale: float = 1.0) -> None:
        a, b = _get(web, *path), _get(sio, *path)
        rows.append((label, None if a is None else a * scale, None if b is None else b * scale))

    for n in results["config"]["idle"]:
        both(
            f"1. RSS per idle connection at {n:,} (KB)",
            "idle_rss",
            "by_connections",
            str(n),
            "bytes_per_connection",
            scale=1 / 1024,
        )
    for g in (small, large):
        both(f"2. fan-out CPU per delivered frame, group {int(g):,} (µs)", "fan_out", g, "cpu_us_per_frame")
        both(f"2. fan-out frames/s, group {int(g):,}", "fan_out", g, "frames_per_s")
        both(
            f"2. CPU per frame, 10 pending per client, group {int(g):,} (µs)",
            "fan_out",
            f"{g}_pending10",
            "cpu_us_per_frame",
        )
    for g in (small, large):
        both(f"3. paced latency p50, group {int(g):,} (ms)", "latency", g, "p50_ms")
        both(f"3. paced latency p99, group {int(g):,} (ms)", "latency", g, "p99_ms")
    both("4. calls/s, one thread", "api", "calls_per_s")
    both("4. AsyncPushClient calls/s, one event loop, 32 in flight", "api", "async_calls_per_s")
    both("4. client CPU per call, one thread (µs)", "api", "client_cpu_us_per_call")
    both("4. AsyncPushClient CPU per call, 32 in flight (µs)", "api", "async_client_cpu_us_per_call")
    both("4. server CPU per call, one thread (µs)", "api", "server_cpu_us_per_call")
    both("4. floor (minimal aiohttp handler): calls/s, one thread", "api", "floor", "calls_per_s")
    both("4. floor (minimal aiohttp handler): server CPU per call (µs)", "api", "floor", "server_cpu_us_per_call")
    both("4. server CPU per call ÷ floor's", "api", "server_cpu_vs_floor")
    both("4. batched operations/s", "api", "batched_ops_per_s")
    both("4. server CPU per batched operation (µs)", "api", "server_cpu_us_per_batched_op")
    both("5. /say → all room members, p50 (ms)", "say", "p50_ms")
    both("5. /say → all room members, p99 (ms)", "say", "p99_ms")
    both("6. others' p99 without a never-reader (ms)", "slow_consumer", "without", "p99_ms")
    both("6. others' p99 with one never-reader (ms)", "slow_consumer", "with", "p99_ms")
    both("7. cluster connections", "cluster", "connections")
    both("7. cluster RSS per connection (KB)", "cluster", "bytes_per_connection", scale=1 / 1024)
    both("7. cluster push to all: CPU per frame (µs)", "cluster", "cpu_us_per_frame")
    both("7. cluster push to all: frames/s", "cluster", "frames_per_s")
    both("7. cluster push to all: first message, last recipient (ms)", "cluster", "first_message_last_recipient_ms")
    return rows


def table(results: dict[str, Any]) -> str:
    """The figures and the targets as markdown."""
    floor = results.get("send_floor", {})
    lines = ["| measurement | webchat | python-socketio |", "|---|---:|---:|"]
    for label, a, b in _metric_rows(results):
        lines.append(f"| {label} | {_fmt(a)} | {_fmt(b)} |")
    lines.append("")
    lines.append(
        f"send() floor this run: {_fmt(_get(floor, 'one_peer', 'cpu_us'), 2)} µs CPU per call to one peer, "
        f"{_fmt(_get(floor, 'many_peers', 'cpu_us'), 2)} µs round-robin over "
        f"{_get(floor, 'many_peers', 'peers') or '—'} peers."
    )
    notes = []
    for system in SYSTEMS:
        for item in ("say", "cluster"):
            entry = _get(results, "systems", system, item)
            if isinstance(entry, dict) and entry.get("available") is False:
                notes.append(f"- {system} item {'5' if item == 'say' else '7'}: not available — {entry['why']}")
            elif isinstance(entry, dict) and entry.get("wanted") and entry.get("connections", 0) < entry["wanted"]:
                notes.append(
                    f"- {system} item 7: only {entry['connections']:,} of {entry['wanted']:,} connections "
                    "opened (see bench/results/tmp/ for the servers' logs)"
                )
            elif isinstance(entry, dict) and "error" in entry:
                notes.append(f"- {system} {item}: failed — {entry['error']}")
        for key, entry in (_get(results, "systems", system) or {}).items():
            if isinstance(entry, dict) and "error" in entry and key not in ("say", "cluster"):
                notes.append(f"- {system} {key}: failed — {entry['error']}")
    if results.get("faults"):
        from bench.faults import table as faults_table

        lines += faults_table(results["faults"])
    if results.get("room"):
        from bench.room import table as room_table

        lines += room_table(results["room"])
    if notes:
        lines += ["", *notes]
    lines += ["", "| target | measured | met |", "|---|---:|:---:|"]
    for row in results.get("targets", []):
        verdict = {True: "met", False: "**not met**", None: "not measured"}[row["met"]]
        if results.get("quick"):
            verdict = "(quick run: not judged)"
        how = f" ({row['how']})" if row.get("how") else ""
        lines.append(f"| {row['target']}{how} | {_fmt(row['measured'], 2)} {row['unit']} | {verdict} |")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    """A four-panel PNG: CPU per frame, RSS per connection, paced latency, frames/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    web = results["systems"].get("webchat", {})
    sio = results["systems"].get("socketio", {})
    small, large = (str(n) for n in results["config"]["groups"])
    idle = [str(n) for n in results["config"]["idle"]]
    colours = {"webchat": "#1f77b4", "python-socketio": "#d62728"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))

    def bars(ax: Any, labels: list[str], series: dict[str, list[Any]], title: str, log: bool = False) -> None:
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(series.items()):
            xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
            heights = [v if isinstance(v, (int, float)) else 0 for v in values]
            ax.bar(xs, heights, width, label=name, color=colours.get(name))
            for x, v in zip(xs, values, strict=False):
                if isinstance(v, (int, float)):
                    ax.annotate(_fmt(v), (x, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_title(title, fontsize=10)
        if log and any(isinstance(v, (int, float)) and v > 0 for values in series.values() for v in values):
            ax.set_yscale("log")
        ax.legend(fontsize=8)

    cpu = {
        name: [_get(data, "fan_out", g, "cpu_us_per_frame") for g in (small, large)]
        for name, data in (("webchat", web), ("python-socketio", sio))
    }
    bars(axes[0][0], [f"group {small}", f"group {large}"], cpu, "fan-out: server CPU µs per delivered frame", log=True)
    floor = _get(results, "send_floor", "one_peer", "cpu_us")
    if floor:
        axes[0][0].axhline(floor, color="grey", linestyle="--", linewidth=1)
        axes[0][0].annotate(
            f"send() floor {floor:.1f} µs", (0.02, floor), xycoords=("axes fraction", "data"), fontsize=8, va="bottom"
        )
    rss = {
        name: [(_get(data, "idle_rss", "by_connections", n, "bytes_per_connection") or 0) / 1024 or None for n in idle]
        for name, data in (("webchat", web), ("python-socketio", sio))
    }
    bars(axes[0][1], [f"{int(n):,} conns" for n in idle], rss, "RSS per idle connection (KB)")
    latency = {
        f"{name} {q}": [_get(data, "latency", g, f"{q}_ms") for g in (small, large)]
        for name, data in (("webchat", web), ("python-socketio", sio))
        for q in ("p50", "p99")
    }
    bars(
        axes[1][0], [f"group {small}", f"group {large}"], latency, "paced latency, push → last recipient (ms)", log=True
    )
    fps = {
        name: [_get(data, "fan_out", g, "frames_per_s") for g in (small, large)]
        for name, data in (("webchat", web), ("python-socketio", sio))
    }
    bars(axes[1][1], [f"group {small}", f"group {large}"], fps, "fan-out throughput (frames/s)")
    machine = results.get("machine", {})
    fig.suptitle(
        f"webchat vs python-socketio — {machine.get('cores')} cores, {machine.get('cpu')}, "
        f"{'quick run' if results.get('quick') else 'full run'}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
