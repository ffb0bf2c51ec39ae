"""Stopping the events tasks survives a lost cancellation (Python 3.11's wait_for can drop one)."""

from __future__ import annotations

import asyncio

from push_server.events.service import cancel_until_done


async def test_a_task_that_misses_one_cancel_is_cancelled_again() -> None:
    """A loop that runs on after one cancel (as wait_for lets it on 3.11) still ends: the push server stops on SIGTERM."""
    missed = 0

    async def loop_that_loses_a_cancel() -> None:
        nonlocal missed
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if missed:
                    raise
                missed += 1  # what wait_for does when its inner wait finished in the same tick

    tasks = [asyncio.get_running_loop().create_task(loop_that_loses_a_cancel()) for _ in range(2)]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_until_done(tasks), 5)
    assert missed == 1 and all(task.cancelled() for task in tasks)
