"""`honcho start` with the Procfile and a .env made from .env.example runs a working chat."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_honcho_runs_push_server_and_gunicorn_together(tmp_path: Path) -> None:
    """Both Procfile processes start from .env settings; the web app (under gunicorn) stores and pushes."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "honcho").exists() or not (bin_dir / "push-server").exists():
        pytest.skip("honcho and push-server are installed by `pip install -e '.[server,web]'`")
    web_port, ws_port, api_port = free_port(), free_port(), free_port()
    env_file = _env_file(tmp_path, web_port, ws_port, api_port)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("PUSH_REDIS_URL", "REDIS_URL", "DATABASE_URL", "PUSH_WS_URL", "PUSH_ALLOWED_ORIGINS"):
        env.pop(name, None)
    log_path = tmp_path / "honcho.log"
    with open(log_path, "wb") as log:
        honcho = subprocess.Popen(
            [str(bin_dir / "honcho"), "-f", str(ROOT / "Procfile"), "-e", str(env_file), "-d", str(ROOT), "start"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(api_port, timeout=TIMEOUT * 3, process=honcho)
        wait_for_port(web_port, timeout=TIMEOUT * 3, process=honcho)
        user = HttpUser(f"http://127.0.0.1:{web_port}", "procfile").register()
        room_id = user.create_room("from-procfile")
        # 201 (not 502): gunicorn's app reached the push server with the shared secret.
        assert user.say(room_id, "hello").status_code == 201
        assert user.get("/rooms").json()["rooms"] == [{"id": room_id, "name": "from-procfile", "online": 0}]
        page = user.get(f"/rooms/{room_id}", headers={"Accept": "text/html"}).text
        assert f'data-ws-url="ws://127.0.0.1:{ws_port}/ws"' in page
    finally:
        # honcho and both processes were started in their own session: stop them all.
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(TIMEOUT * 2)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(TIMEOUT)
    assert "Listening at" in log_path.read_text(errors="replace"), "the web app runs under gunicorn"
