"""The internal HTTP API (``POST /api/v1/<operation>``, ``POST /api/v1/batch``).

- ``auth``: signature headers, the body read with a deadline, nonces (:class:`ClaimStore`).
- ``schema``: one msgspec structure per operation, decoded and validated in one pass.
- ``operations``: the typed dispatch table, operation → backend call.
- ``handlers``: the request handlers (idempotency keys, batches in slices).
- ``http``: JSON for every refusal, the middleware, the access log.
"""

from .auth import ClaimStore, MemoryClaims
from .handlers import BACKEND, CLAIMS, CONFIG, add_routes
from .http import AccessLogger, keep_serving

__all__ = ["BACKEND", "CLAIMS", "CONFIG", "AccessLogger", "ClaimStore", "MemoryClaims", "add_routes", "keep_serving"]
