"""The web app's own metrics: requests and latency per endpoint, at ``GET /metrics``.

gunicorn runs several worker processes, and a scrape reaches one of them; so
when ``PROMETHEUS_MULTIPROC_DIR`` is set (the Procfile and the systemd unit
set it to an empty directory made at start), prometheus_client's multiprocess
mode keeps every worker's counts in files there and ``/metrics`` sums them all.
Without it (``flask run``, tests in one process) the counts are the process's
own. Only counters and histograms are used: they need no clean-up when a
worker exits (gauges would need gunicorn's ``child_exit`` hook).

``/metrics`` needs no login: keep it off the public side at the proxy
(docs/operations.md has the nginx line).
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

__all__ = ["init_metrics"]

REQUESTS = Counter(
    "webchat_http_requests", "web app requests by endpoint, method and status", ["endpoint", "method", "status"]
)
LATENCY = Histogram(
    "webchat_http_request_seconds",
    "web app request time by endpoint",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def _registry() -> CollectorRegistry:
    """What a scrape shows: every worker's counts in multiprocess mode, else this process's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return DEFAULT_REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _finish(response: Response) -> Response:
    started = g.pop("metrics_started", None)
    if started is not None and request.endpoint != "webchat_metrics":
        # The endpoint's name, not the path: room ids must not become labels.
        endpoint = request.endpoint or "not_found"
        REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        LATENCY.labels(endpoint).observe(time.perf_counter() - started)
    return response


def serve_metrics() -> Response:
    """``GET /metrics``: Prometheus' text format."""
    return Response(generate_latest(_registry()), headers={"Content-Type": CONTENT_TYPE_LATEST})


def init_metrics(app: Flask) -> None:
    """Count every request of ``app`` and serve ``/metrics``."""
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "webchat_metrics", serve_metrics)
