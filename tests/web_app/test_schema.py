"""Workers that boot together on a new database all get their tables (gunicorn starts them at once)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ..servers import ROOT

WORKERS = 6
ROUNDS = 2

# One gunicorn worker's start-up, as far as the database goes: make the engine
# and create what is missing, all starting at the same instant.
_BOOT = textwrap.dedent(
    """
    import sys, time
    from web_app.models import _make_engine
    from web_app.schema import create_tables
    url, start = sys.argv[1], float(sys.argv[2])
    engine = _make_engine(url)
    time.sleep(max(0.0, start - time.time()))
    create_tables(engine)
    """
)


def test_workers_booting_together_on_a_new_sqlite_file_all_start(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'chat{round_}.db'}"
        start = time.time() + 1.0
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _BOOT, url, str(start)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(WORKERS)
        ]
        for worker in workers:
            output, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0, (
                f"round {round_}: a worker failed to create its tables:\n{output.decode()[-2000:]}"
            )
