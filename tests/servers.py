"""Real servers for the tests: push_server and redis-server as subprocesses on free ports.

Nothing is mocked: tests talk to the same processes a deployment runs, so they
can also stop, kill and restart them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from private_redis import redis_server_argv

ROOT = Path(__file__).resolve().parent.parent

#: Every wait in the tests scales from this one number (slow CI: raise it).
TIMEOUT = float(os.environ.get("WEBCHAT_TEST_TIMEOUT", "5"))
#: Waits for a process to start listening: starting Python and importing aiohttp
#: is what a busy machine slows most (5 s was missed at a load average of 13), and
#: a longer wait costs nothing when the port opens early.
STARTUP_TIMEOUT = TIMEOUT * 3

TEST_SECRET = "test-secret-0123456789abcdef"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = STARTUP_TIMEOUT, process: subprocess.Popen[Any] | None = None) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


class PushServerProcess:
    """``python -m push_server`` on free ports, with extra flags; start/stop/kill/restart."""

    def __init__(self, *flags: str, secret: str = TEST_SECRET, env: dict[str, str] | None = None) -> None:
        self.secret = secret
        self.ws_port = free_port()
        self.api_port = free_port()
        self.flags = list(flags)
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="push-server-", suffix=".log")[1])

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self, **kwargs: Any) -> Any:
        """A PushClient for this server."""
        from push_client import PushClient

        return PushClient(self.api_url, secret=self.secret, **kwargs)

    def start(self) -> PushServerProcess:
        """Start (again, on the same ports) and wait until both listeners accept."""
        env = {**os.environ, "PUSH_SECRET": self.secret, "PYTHONUNBUFFERED": "1", **self.env}
        for name in ("PUSH_REDIS_URL", "PUSH_ALLOWED_ORIGINS"):
            if name not in self.env:
                env.pop(name, None)
        command = [
            sys.executable,
            "-m",
            "push_server",
            "--ws-port",
            str(self.ws_port),
            "--api-port",
            str(self.api_port),
            *self.flags,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.api_port, process=self.process)
        wait_for_port(self.ws_port, process=self.process)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Send ``sig`` (SIGTERM: a clean shutdown) and wait for the process to end."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(TIMEOUT * 2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(TIMEOUT)

    def kill(self) -> None:
        """SIGKILL: the node dies without a word."""
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> PushServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RedisServer:
    """A private ``redis-server`` on a free port, keeping nothing on disk."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="webchat-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> RedisServer:
        """Start (again, empty, on the same port)."""
        self.process = subprocess.Popen(
            redis_server_argv(self.port, "--dir", self.dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)
        return self

    def stop(self) -> None:
        """Kill it: everything it held is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)


@contextlib.contextmanager
def started_redis() -> Iterator[RedisServer]:
    """A redis-server started for the caller and killed afterwards; skips the test when none is installed."""
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (test.sh installs it)")
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
