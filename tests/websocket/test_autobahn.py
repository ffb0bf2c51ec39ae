"""Autobahn|Testsuite's fuzzingclient (cases 1-7, 9, 10) against the real listener (compliance/)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from ..servers import ROOT

_spec = importlib.util.spec_from_file_location("run_autobahn", ROOT / "compliance" / "run_autobahn.py")
assert _spec is not None and _spec.loader is not None
run_autobahn: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_autobahn)

#: The whole run takes about a minute (65 s raised, 26 s production, on 2 cores).
pytestmark = pytest.mark.timeout(600)


def _report(flags: list[str], outdir: Path) -> dict[str, Any]:
    try:
        report: dict[str, Any] = run_autobahn.run(flags, outdir)
    except run_autobahn.Unavailable as exc:
        pytest.skip(f"Autobahn cannot run here: {exc}")
    return report


def test_no_case_fails_with_limits_raised(tmp_path: Path) -> None:
    """With every limit raised, no Autobahn case FAILED: the protocol handling is conformant."""
    report = _report(run_autobahn.RAISED_LIMITS, tmp_path)
    counts, failed = run_autobahn.summary(report)
    assert len(report) == 301
    assert failed == {}, counts


def test_production_limits_refuse_only_by_design(tmp_path: Path) -> None:
    """With production limits, the only FAILED cases are the 9.x/10.1.1 ones closed 1009 (size) or 1008 (rate, fragments)."""
    report = _report([], tmp_path)
    _, failed = run_autobahn.summary(report)
    assert failed, "production limits refused nothing: were they raised?"
    for case_id, what in failed.items():
        assert case_id.startswith("9.") or case_id == "10.1.1", case_id
        assert what["remoteCloseCode"] in (1008, 1009), (case_id, what)
