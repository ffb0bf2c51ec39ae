"""Run the Autobahn|Testsuite fuzzingclient against echo_server.py and summarise the report.

    python compliance/run_autobahn.py                 # production limits
    python compliance/run_autobahn.py --raised        # limits raised: the pure protocol
    python compliance/run_autobahn.py -- --max-frame-bytes 1048576   # any push-server limit flags

Autobahn runs on Python 2.7 only. The first run makes its virtualenv (under
``$WEBCHAT_AUTOBAHN_HOME``, default ``~/.cache/webchat-autobahn``): a Python 3
venv holding ``virtualenv<20.22`` (the last to create Python 2.7 environments),
which makes a 2.7 one from ``$AUTOBAHN_PYTHON2`` (default: pyenv's 2.7.18, else
``python2.7`` on PATH) with the pins of ``requirements-autobahn.txt``.

Prints counts by behaviour, then every FAILED case with the close code the
server sent; exits 1 when a case FAILED, 2 when Autobahn cannot run here.
``summary()`` is what the pytest test reads.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOME = Path(os.environ.get("WEBCHAT_AUTOBAHN_HOME", Path.home() / ".cache" / "webchat-autobahn"))
CONFIG = HERE / "fuzzingclient.json"
REQUIREMENTS = HERE / "requirements-autobahn.txt"

#: Limits high enough that every case tests the protocol, not a limit: the
#: largest case message is 16 MiB (9.1.6, 9.2.6), the most fragments 65,536
#: (9.3.1), the most frames in a second many thousands (9.7, 9.8).
RAISED_LIMITS = [
    "--max-frame-bytes",
    str(16 * 1024 * 1024),
    "--max-message-fragments",
    "1000000",
    "--max-client-frames-per-second",
    "1000000",
    "--max-pending-bytes",
    str(256 * 1024 * 1024),
]


class Unavailable(Exception):
    """Autobahn cannot run on this machine (no Python 2.7, or its install failed)."""


def python2() -> str | None:
    """The Python 2.7 interpreter to build Autobahn's environment with, if any."""
    candidates = [
        os.environ.get("AUTOBAHN_PYTHON2", ""),
        str(Path.home() / ".pyenv/versions/2.7.18/bin/python"),
        "/root/.pyenv/versions/2.7.18/bin/python",
        shutil.which("python2.7") or "",
    ]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def wstest() -> Path:
    """Autobahn's ``wstest``, installed on first use."""
    command = HOME / "py27" / "bin" / "wstest"
    if command.exists():
        return command
    interpreter = python2()
    if interpreter is None:
        raise Unavailable("no Python 2.7 (set AUTOBAHN_PYTHON2, or install 2.7.18 with pyenv)")
    HOME.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(HOME / "py3")], check=True, capture_output=True)
        subprocess.run(
            [str(HOME / "py3/bin/pip"), "install", "-q", "virtualenv<20.22"], check=True, capture_output=True
        )
        subprocess.run(
            [str(HOME / "py3/bin/virtualenv"), "-q", "-p", interpreter, str(HOME / "py27")],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [str(HOME / "py27/bin/pip"), "install", "-q", "-r", str(REQUIREMENTS)], check=True, capture_output=True
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(HOME / "py27", ignore_errors=True)
        raise Unavailable(f"installing Autobahn failed: {exc.stderr.decode(errors='replace')[-2000:]}") from None
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(limit_flags: list[str], outdir: Path, cases: list[str] | None = None) -> dict[str, Any]:
    """Start the echo server with ``limit_flags``, run the fuzzingclient, return the report's cases."""
    command = wstest()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "echo_server.py"), "--port", str(port), *limit_flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"echo server did not start: {server.stderr.read().decode() if server.stderr else ''}"
                    ) from None
                time.sleep(0.05)
        spec = json.loads(CONFIG.read_text())
        spec["outdir"] = str(outdir)
        spec["servers"] = [{"agent": "webchat", "url": f"ws://127.0.0.1:{port}/ws"}]
        if cases is not None:
            spec["cases"] = cases
        spec_path = outdir / "spec.json"
        outdir.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(json.dumps(spec))
        subprocess.run(
            [str(command), "-m", "fuzzingclient", "-s", str(spec_path)],
            cwd=outdir,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    finally:
        server.terminate()
        server.wait(10)
    report: dict[str, Any] = json.loads((outdir / "index.json").read_text())["webchat"]
    return report


def summary(report: dict[str, Any]) -> tuple[collections.Counter[str], dict[str, Any]]:
    """Counts by behaviour, and the FAILED cases with what the server closed with."""
    counts = collections.Counter(case["behavior"] for case in report.values())
    failed = {
        case_id: {"behaviorClose": case["behaviorClose"], "remoteCloseCode": case["remoteCloseCode"]}
        for case_id, case in sorted(report.items(), key=lambda item: [int(p) for p in item[0].split(".")])
        if case["behavior"] == "FAILED"
    }
    return counts, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raised", action="store_true", help="raise every limit (test the protocol alone)")
    parser.add_argument("--outdir", help="where Autobahn writes its report (default: a temporary folder)")
    parser.add_argument("--cases", help="comma-separated case patterns (default: fuzzingclient.json's)")
    parser.add_argument("limit_flags", nargs="*", help="push-server limit flags, after --")
    options = parser.parse_args()
    flags = (RAISED_LIMITS if options.raised else []) + options.limit_flags
    outdir = Path(options.outdir or tempfile.mkdtemp(prefix="autobahn-"))
    try:
        report = run(flags, outdir, options.cases.split(",") if options.cases else None)
    except Unavailable as exc:
        sys.exit(f"run_autobahn: {exc}")
    counts, failed = summary(report)
    print(f"{len(report)} cases, limits: {' '.join(flags) or 'production'}; report in {outdir}")
    for behaviour, count in counts.most_common():
        print(f"  {behaviour:12} {count}")
    for case_id, what in failed.items():
        print(f"  FAILED {case_id}: closed {what['remoteCloseCode']} ({what['behaviorClose']})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
