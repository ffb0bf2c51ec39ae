"""The command line of a private redis-server: the one the tests and the benchmark start.

Not shipped (setup.cfg's py_modules leaves it out): tests/ and bench/ import it
from a checkout. It lives at the top because bench/ must not depend on tests/
(the benchmark is for anyone to run), and starting Redis is not test code.
"""

from __future__ import annotations

__all__ = ["redis_server_argv"]


def redis_server_argv(port: int, *extra: str, binary: str = "redis-server") -> list[str]:
    """argv of a redis-server on ``port`` that listens on loopback only and keeps nothing on disk.

    Persistence is off (no RDB snapshots, no append-only file), so a restart
    starts empty, as the tests that stop Redis expect, and the benchmark's
    figures carry no fsync. ``extra`` goes last: more options (``--dir``,
    ``--replicaof``, ``--maxclients``) or overrides of these.
    """
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]
