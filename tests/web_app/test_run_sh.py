"""run.sh says which port is busy, and stops, before it prints the URL; push-server says "internal API on" only once bound."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT, TEST_SECRET, TIMEOUT, free_port


def _checkout(tmp_path: Path, ports: dict[str, int]) -> Path:
    """run.sh in a copy of the repository's top files, with an installed-looking .venv and a .env using ``ports``."""
    for name in ("run.sh", ".env.example", "setup.cfg", "pyproject.toml", "Procfile"):
        shutil.copy2(ROOT / name, tmp_path / name)
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    # Only the port check runs Python here (standard library only); the stamp
    # newer than setup.cfg keeps run.sh from installing anything.
    (venv_bin / "python").symlink_to(sys.executable)
    (tmp_path / ".venv" / ".webchat-installed").touch()
    lines = [f"{name}={port}" for name, port in ports.items()]
    lines += ["PUSH_SECRET=" + TEST_SECRET, "SECRET_KEY=run-sh-test-key"]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    return tmp_path / "run.sh"


def _run(script: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PUSH_", "WEB_"))}
    # No honcho on this PATH: a run that gets past the checks ends at `exec honcho`.
    env["PATH"] = "/usr/bin:/bin"
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=TIMEOUT * 6)


def test_run_sh_names_the_busy_ports_and_prints_no_url(tmp_path: Path) -> None:
    """With the web and API ports taken, run.sh exits 1 naming both, and never prints "open http://"."""
    with socket.socket() as web, socket.socket() as api:
        web.bind(("127.0.0.1", 0))
        web.listen()
        api.bind(("127.0.0.1", 0))
        api.listen()
        ports = {"WEB_PORT": web.getsockname()[1], "PUSH_API_PORT": api.getsockname()[1], "PUSH_WS_PORT": free_port()}
        result = _run(_checkout(tmp_path, ports))
    assert result.returncode == 1, result
    assert f"port {ports['WEB_PORT']} on 127.0.0.1 (WEB_PORT, the web app)" in result.stderr
    assert f"port {ports['PUSH_API_PORT']} on 127.0.0.1 (PUSH_API_PORT" in result.stderr
    assert "PUSH_WS_PORT" not in result.stderr
    assert "open http://" not in result.stdout + result.stderr


def test_run_sh_prints_the_url_when_the_ports_are_free(tmp_path: Path) -> None:
    """With every port free, run.sh prints the URL, then hands over to honcho."""
    ports = {"WEB_PORT": free_port(), "PUSH_API_PORT": free_port(), "PUSH_WS_PORT": free_port()}
    result = _run(_checkout(tmp_path, ports))
    assert f"open http://127.0.0.1:{ports['WEB_PORT']}/" in result.stdout
    assert "honcho" in result.stderr  # not installed on this PATH: the exec is what fails


def test_push_server_says_internal_api_only_once_bound(tmp_path: Path) -> None:
    """When the API port is taken, push-server fails to listen and never logs "internal API on"."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**os.environ, "PUSH_SECRET": TEST_SECRET}
        env.pop("PUSH_REDIS_URL", None)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "push_server",
                "--ws-port",
                str(free_port()),
                "--api-port",
                str(taken.getsockname()[1]),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 6,
        )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "cannot listen" in output
    assert "internal API on" not in output
