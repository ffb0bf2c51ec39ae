"""Helpers of the operations suite: read a node's /metrics and /healthz."""

from __future__ import annotations

# The browser suite's fixtures, for test_admin_page.py (pytest finds fixtures by their name here;
# imported into the test module itself, each test's parameter would redefine the import).
from ..browser.conftest import browser, live, windows  # noqa: F401
from ..scrape import metric, scrape  # noqa: F401 - the suite's tests import them from here
from ..waiting import until, wait_until  # noqa: F401 - likewise
