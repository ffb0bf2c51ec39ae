"""Start, watch and stop the processes under test: redis-server, push_server, the peer.

Every server runs as its own process on a free loopback port, with its output
in ``bench/results/tmp/`` so that a failed run can be read afterwards. A
process's CPU time is read from ``/proc/<pid>/stat`` (utime + stime) and its
memory from ``/proc/<pid>/status`` (VmRSS), for the process and its children.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from private_redis import redis_server_argv

__all__ = [
    "FIRST_NICE",
    "LAST_NICE",
    "ROOT",
    "TMP",
    "Proc",
    "free_port",
    "prioritize",
    "start_push_server",
    "start_redis",
    "start_sio_server",
    "wait_port",
]

ROOT = Path(__file__).resolve().parent.parent
TMP = ROOT / "bench" / "results" / "tmp"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo and len(pids) < 10_000:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live children, in seconds."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid`` and its live children, in seconds."""
    user = system = 0
    for one in _tree(pid):
        try:
            with open(f"/proc/{one}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the ")" that ends the command name, utime and stime are fields 12 and 13.
        user += int(fields[11])
        system += int(fields[12])
    return user / _CLK_TCK, system / _CLK_TCK


def _threads(pids: Sequence[int]) -> list[int]:
    """Every thread of ``pids`` and of their children (scheduling settings are per thread on Linux)."""
    found = []
    for pid in pids:
        for one in _tree(pid):
            try:
                found.extend(int(t) for t in os.listdir(f"/proc/{one}/task"))
            except OSError:
                continue
    return found


#: The scheduling priority (nice) of the server under test and of whatever
#: drives it (the pusher; the floor's sender).
FIRST_NICE = -10
#: The load generator's workers: they take whatever CPU the server leaves.
LAST_NICE = 19


def prioritize(pids: Sequence[int], nice: int) -> bool:
    """Give every thread of ``pids`` (and of their children) the scheduling priority ``nice``; False if refused."""
    done = False
    for tid in _threads(pids):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            done = True
        except OSError:
            pass
    return done


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its live children, in bytes."""
    total = 0
    for one in _tree(pid):
        try:
            with open(f"/proc/{one}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


class Proc:
    """One server process started for the benchmark, with its log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        TMP.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = TMP / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (kept open for the process's life; closed in stop())
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("PYTHONPATH", str(ROOT))
        self.popen = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def cpu(self) -> float:
        """CPU seconds used so far (user + system, children included)."""
        return cpu_seconds(self.pid)

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds used so far, children included."""
        return cpu_split(self.pid)

    def rss(self) -> int:
        """Resident memory now, in bytes (children included)."""
        return rss_bytes(self.pid)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its output, to explain a failure."""
        self._log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Ask it to stop (SIGTERM to its process group), then kill it if it lingers."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._log.close()


def start_redis() -> tuple[Proc, str]:
    """A private redis-server on a free port, persistence off; returns it and its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    proc = Proc(f"redis-{port}", redis_server_argv(port, "--maxclients", "10000", binary=binary))
    wait_port(port, proc=proc.popen)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_push_server(
    secret: str, name: str, redis_url: str | None = None, extra: Sequence[str] = ()
) -> tuple[Proc, int, int]:
    """One push_server node; returns it, its WebSocket port and its API port."""
    ws_port, api_port = free_port(), free_port()
    # The secret goes in the environment, not argv, where `ps` would show it.
    argv = [
        sys.executable,
        "-m",
        "push_server",
        "--ws-host",
        "127.0.0.1",
        "--ws-port",
        str(ws_port),
        "--api-host",
        "127.0.0.1",
        "--api-port",
        str(api_port),
        "--max-connections-per-ip",
        "0",
    ]  # the load generator is one address
    if redis_url:
        # The benchmark's redis-server is private to the run, so the default prefix is fine.
        argv += ["--redis-url", redis_url]
    proc = Proc(name, argv + list(extra), {"PUSH_SECRET": secret})
    wait_port(ws_port, proc=proc.popen)
    wait_port(api_port, proc=proc.popen)
    return proc, ws_port, api_port


def start_sio_server(redis_url: str, name: str) -> tuple[Proc, int]:
    """One python-socketio server process listening to the Redis queue; returns it and its port."""
    port = free_port()
    proc = Proc(name, [sys.executable, "-m", "bench.sio_server", "--port", str(port), "--redis-url", redis_url])
    wait_port(port, proc=proc.popen)
    return proc, port
