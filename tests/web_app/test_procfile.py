"""`honcho start` with the Procfile and a .env made from .env.example runs a working chat."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.servers import ROOT, TIMEOUT, free_port, wait_for_port

from .live import HttpUser


def _env_file(tmp_path: Path, web_port: int, ws_port: int, api_port: int) -> Path:
    """.env.example with free ports and fresh secrets filled in, as run.sh would write it."""
    text = (ROOT / ".env.example").read_text()
    values = {
        "PUSH_SECRET": "procfile-test-secret-0123456789",
        "SECRET_KEY": "procfile-test-key",
        "PUSH_WS_PORT": str(ws_port),
        "PUSH_API_PORT": str(api_port),
        "PUSH_API_URL": f"http://127.0.0.1:{api_port}",
        "WEB_PORT": str(web_port),
    }
    for name, value in values.items():
        text, found = re.subn(rf"^{name}=.*$", f"{name}={value}", text, flags=re.M)
        assert found == 1, f".env.example sets {name} once"
    text += f"WEBCHAT_INSTANCE_PATH={tmp_path / 'instance'}\n"
    path = tmp_path / ".env"
    path.write_text(text)
    return path


class Honcho:
    """``honcho start`` on the real Procfile with a .env made from .env.example, on free ports."""

    def __init__(self, tmp_path: Path, *only: str) -> None:
        self.bin_dir = Path(sys.executable).parent
        if not (self.bin_dir / "honcho").exists() or not (self.bin_dir / "push-server").exists():
            pytest.skip("honcho and push-server are installed by `pip install -e '.[server,web]'`")
        self.web_port, self.ws_port, self.api_port = free_port(), free_port(), free_port()
        self.env_file = _env_file(tmp_path, self.web_port, self.ws_port, self.api_port)
        self.log_path = tmp_path / "honcho.log"
        self.only = only
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Honcho:
        env = {
            **os.environ,
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PUSH_RESTART_DELAY": "0.2",
        }
        for name in ("PUSH_REDIS_URL", "REDIS_URL", "DATABASE_URL", "PUSH_WS_URL", "PUSH_ALLOWED_ORIGINS"):
            env.pop(name, None)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bin_dir / "honcho"),
                    "-f",
                    str(ROOT / "Procfile"),
                    "-e",
                    str(self.env_file),
                    "-d",
                    str(ROOT),
                    "start",
                    *self.only,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_for_web(self) -> None:
        """Wait until a gunicorn worker answers (the master listens before its workers have booted)."""
        wait_for_port(self.web_port, process=self.process)
        deadline = time.monotonic() + TIMEOUT * 6
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{self.web_port}/login", timeout=TIMEOUT).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"the web app never answered:\n{self.log()[-2000:]}"
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        # honcho and both processes were started in their own session: stop them all.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(TIMEOUT * 2)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(TIMEOUT)


def test_honcho_runs_push_server_and_gunicorn_together(tmp_path: Path) -> None:
    """Both Procfile processes start from .env settings; the web app (under gunicorn) stores and pushes."""
    with Honcho(tmp_path) as honcho:
        wait_for_port(honcho.api_port, process=honcho.process)
        honcho.wait_for_web()
        user = HttpUser(f"http://127.0.0.1:{honcho.web_port}", "procfile").register()
        room_id = user.create_room("from-procfile")
        # 201 (not 502): gunicorn's app reached the push server with the shared secret.
        assert user.say(room_id, "hello").status_code == 201
        assert user.get("/rooms").json()["rooms"] == [
            {"id": room_id, "name": "from-procfile", "online": 0, "unread": 0}
        ]
        page = user.get(f"/rooms/{room_id}", headers={"Accept": "text/html"}).text
        assert f'data-ws-url="ws://127.0.0.1:{honcho.ws_port}/ws"' in page
        # The failed-login limit (default 10) holds across gunicorn's workers:
        # each attempt on a new connection, so they spread over the workers.
        url = f"http://127.0.0.1:{honcho.web_port}/login"
        body = {"name": "procfile", "password": "not the password"}
        headers = {"X-CSRFToken": user.csrf, "Connection": "close"}
        statuses = [user.http.post(url, json=body, headers=headers, timeout=TIMEOUT).status_code for _ in range(11)]
        assert statuses == [401] * 10 + [429]
    assert "Listening at" in honcho.log(), "the web app runs under gunicorn"


def _push_server_pid(honcho: Honcho) -> int:
    """The push server's pid, from its "internal API on" line (its log format carries the pid)."""
    deadline = time.monotonic() + TIMEOUT * 3
    while time.monotonic() < deadline:
        found = re.findall(
            rf" (\d+) INFO push_server(?:\.__main__)?: internal API on http://127.0.0.1:{honcho.api_port}", honcho.log()
        )
        if found:
            return int(found[-1])
        time.sleep(0.05)
    raise AssertionError(f"the push server never said it was listening:\n{honcho.log()[-2000:]}")


def test_stopping_the_push_server_leaves_the_web_app_running(tmp_path: Path) -> None:
    """Under honcho, a stopped push server is started again and the web app keeps serving throughout."""
    with Honcho(tmp_path) as honcho:
        honcho.wait_for_web()
        user = HttpUser(f"http://127.0.0.1:{honcho.web_port}", "survivor").register()
        room_id = user.create_room("still-here")
        first = _push_server_pid(honcho)
        os.kill(first, signal.SIGTERM)
        deadline = time.monotonic() + TIMEOUT * 3
        while _push_server_pid(honcho) == first:
            # The web app answers all along, the push server's absence aside.
            assert user.get("/rooms").status_code == 200
            assert time.monotonic() < deadline, "the push server was not started again"
            time.sleep(0.05)
        wait_for_port(honcho.api_port, process=honcho.process)
        assert user.say(room_id, "after the restart").status_code == 201
        assert honcho.process is not None and honcho.process.poll() is None


def test_one_process_alone(tmp_path: Path) -> None:
    """`honcho start push` runs the push server only (the documented way to run or restart one process)."""
    with Honcho(tmp_path, "push") as honcho:
        wait_for_port(honcho.api_port, process=honcho.process)
        _push_server_pid(honcho)
    assert "Listening at" not in honcho.log()
