"""The page's reconnect schedule: backoff with full jitter, and a restart's 1001 spread out."""

from __future__ import annotations

from tests.web_app.live import Live

from .conftest import Windows
from .test_chat_page import enter_room

SAMPLES = 400


def test_reconnects_after_a_restart_are_spread_over_seconds_and_backoff_is_jittered(
    windows: Windows, live: Live
) -> None:
    """After 1001 the first try is spread over 5 s; other drops back off with full jitter up to 15 s."""
    page = windows.open("erin")
    enter_room(page, live, live.user("owner").create_room("reconnects"))
    delays = page.evaluate(
        """(n) => ({
            restart: Array.from({length: n}, () => webchat.reconnectDelay(0, 1001)),
            dropped: Array.from({length: n}, () => webchat.reconnectDelay(0, 1006)),
            later: Array.from({length: n}, () => webchat.reconnectDelay(3, 1001)),
            capped: Array.from({length: n}, () => webchat.reconnectDelay(20, 1006)),
        })""",
        SAMPLES,
    )
    restart, dropped, later, capped = delays["restart"], delays["dropped"], delays["later"], delays["capped"]
    # 10,000 pages told 1001 at once come back over 5 s, not in the same instant.
    assert all(0 <= d < 5000 for d in restart)
    assert max(restart) - min(restart) > 3500
    assert sum(d < 1000 for d in restart) < SAMPLES * 0.35
    # A plain drop retries soon; later attempts back off, to a cap.
    assert all(0 <= d < 500 for d in dropped)
    assert all(0 <= d < 4000 for d in later) and max(later) > 2000
    assert all(0 <= d < 15000 for d in capped) and max(capped) > 10000
