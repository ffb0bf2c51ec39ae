"""The web app's /metrics under gunicorn: per-endpoint counts summed over every worker (multiprocess mode)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ..servers import ROOT, TIMEOUT, free_port, wait_for_port

REQUESTS = 30


def login_count(url: str) -> float:
    """webchat_http_requests_total for GET /login answered 200, as one scrape shows it."""
    text = requests.get(url + "/metrics", headers={"Connection": "close"}).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "webchat_http_requests_total" and sample.labels == {
                "endpoint": "auth.login",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


def test_counts_add_up_across_gunicorn_workers(tmp_path: Path) -> None:
    """Requests spread over two gunicorn workers are all counted, whichever worker answers the scrape."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        pytest.skip("gunicorn is installed by `pip install -e '.[web]'`")
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SECRET_KEY": "web-metrics-test",
        "WEBCHAT_INSTANCE_PATH": str(tmp_path / "instance"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    server = subprocess.Popen(
        [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "2", "web_app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process=server)
        url = f"http://127.0.0.1:{port}"
        sent = 0

        def login_page(_: int) -> int:
            # A new connection each time, so the workers share them.
            return requests.get(url + "/login", headers={"Connection": "close"}).status_code

        # Concurrent requests until both workers have counted some (each keeps its own file).
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while sent < REQUESTS or len(list(metrics_dir.glob("counter_*.db"))) < 2:
                assert sent < REQUESTS * 10, "one worker served everything"
                assert list(pool.map(login_page, range(8))) == [200] * 8
                sent += 8
        assert [login_count(url) for _ in range(6)] == [sent] * 6
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(TIMEOUT * 2)
