"""Read a push server node's Prometheus metrics in tests (operations and events suites)."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from .servers import TIMEOUT


def scrape(api_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a node's /metrics, by (name, sorted labels)."""
    answer = requests.get(api_url + "/metrics", timeout=TIMEOUT)
    answer.raise_for_status()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(api_url: str, name: str, **labels: str) -> float:
    """One sample's value (0 when it has not appeared yet)."""
    return scrape(api_url).get((name, tuple(sorted(labels.items()))), 0.0)
