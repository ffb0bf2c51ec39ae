"""Redis Sentinel for the tests: a master, a replica and one sentinel, real Debian processes on free ports.

Shared by the operations suite (tests/ops/test_sentinel.py: the push server and
the web app follow a failover) and the fault suite (tests/faults: pages count
every message through one).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from private_redis import redis_server_argv

from .servers import TIMEOUT, free_port, wait_for_port
from .waiting import wait_until

__all__ = ["SERVICE", "SentinelSetup", "started_sentinel"]

SERVICE = "webchat"


class SentinelSetup:
    """A master, a replica and one sentinel (quorum 1) on free ports, all real processes."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="webchat-sentinel-"))
        self.master_port, self.replica_port, self.sentinel_port = free_port(), free_port(), free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-sentinel") is not None and shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def _redis(self, name: str, port: int, *extra: str) -> None:
        self.processes[name] = subprocess.Popen(
            redis_server_argv(port, "--dir", str(self.dir), *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, process=self.processes[name])

    def start(self) -> SentinelSetup:
        self._redis("master", self.master_port)
        self._redis("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        replica = redis.Redis(port=self.replica_port)
        wait_until(
            lambda: replica.info("replication")["master_link_status"] == "up",
            timeout=TIMEOUT * 4,
            what="replica linked",
        )
        config = self.dir / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        self.processes["sentinel"] = subprocess.Popen(
            ["redis-sentinel", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.sentinel_port, process=self.processes["sentinel"])
        sentinel = redis.Redis(port=self.sentinel_port)
        wait_until(
            lambda: len(sentinel.sentinel_slaves(SERVICE)) == 1, timeout=TIMEOUT * 4, what="sentinel knows the replica"
        )
        return self

    def master_port_now(self) -> int:
        _, port = redis.Redis(port=self.sentinel_port).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def kill(self, name: str) -> None:
        self.processes[name].kill()
        self.processes[name].wait(TIMEOUT)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def started_sentinel() -> Iterator[SentinelSetup]:
    """A Sentinel-managed Redis started for the caller and stopped afterwards; skips the test when none is installed."""
    if not SentinelSetup.available():
        pytest.skip("redis-server and redis-sentinel are not installed (test.sh installs them)")
    setup = SentinelSetup().start()
    try:
        yield setup
    finally:
        setup.stop()
