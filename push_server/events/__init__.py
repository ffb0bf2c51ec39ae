"""Events to the business app (SPEC §8): who comes and goes, POSTed to PUSH_EVENTS_URL.

- :mod:`.model` — the event's shape, ids, the store interface;
- :mod:`.memory` / :mod:`.redis` (+ :mod:`.lua`) — presence as the app was told
  it and the queue of unacknowledged events, in one process or in Redis;
- :mod:`.service` — the hooks the backend and listener call, recording them;
- :mod:`.sender` — batches, signatures, retries.

docs/events.md describes the guarantees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import TYPES, EventsUnavailable
from .service import Events

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..config import Config

__all__ = ["TYPES", "Events", "EventsUnavailable", "make_events"]


def make_events(config: Config, backend: Backend) -> Events | None:
    """The node's events for ``backend``, or None when PUSH_EVENTS_URL is not set."""
    if not config.events_url:
        return None
    from ..backends.local import LocalState

    state: LocalState | None = getattr(backend, "mirror", None) or getattr(backend, "state", None)
    if state is None:
        raise TypeError(f"{type(backend).__name__} has no local state the events can read")
    if config.redis_url:
        from .redis import RedisEventStore

        store: object = RedisEventStore(
            config.redis_url,
            config.redis_prefix,
            config.events_queue_max,
            config.offline_grace,
            config.node_timeout * 2,
        )
        node = str(backend.node_id)
    else:
        from .memory import MemoryEventStore

        store = MemoryEventStore(state, config.events_queue_max, config.offline_grace)
        node = "local"
    from .model import EventStore

    assert isinstance(store, EventStore)
    return Events(config, store, node, state)
