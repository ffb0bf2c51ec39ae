"""Many nodes, one cluster: shared state in Redis, pushes routed to the nodes that need them.

How it fits together (docs/cluster.md has the picture):

- **Indexes in Redis** answer every query for the whole cluster (who is in a
  group, which clients a uid has, ...). Every change is one Lua script
  (:mod:`.lua`): atomic, one round trip.
- **Routing without lookups.** A client id starts with its node's id
  (``<node>.<random>``), so a push to a client goes straight to that node's
  channel. For groups Redis keeps, per group, how many members each node holds
  (``gn:G``), so a group push is published only to those nodes; ``send_to_all``
  is the one broadcast.
- **A mirror per node.** Each node keeps its own clients' uid, groups and
  session in memory (:class:`~..local.LocalState`) and delivers group and uid
  pushes from it, so a push crosses Redis once per node, never once per
  recipient. Changes made on another node reach the mirror as messages on the
  node's channel, published by the same script that changed Redis: a node sees
  a ``join_group`` before any push that relies on it.
- **Leases.** Each node renews ``lease:N``; the script that finds an expired
  lease claims the dead node's clients atomically, so exactly one node reaps
  them, each client departing once with its leave signals.
- **Outages.** While Redis is unreachable, operations that need it raise
  :class:`BackendUnavailable` at once; pushes still reach this node's own
  clients (from the mirror). The node reconnects with capped backoff and then
  writes its clients back: after a Redis restart that lost everything, the
  cluster is whole again within seconds, and until every node that held
  clients has done so every node answers 503 (no push acknowledged that misses
  a node's clients, no query undercounting). Pages get ``resync`` frames.

The modules, python-socketio's manager split (each testable alone):

- :mod:`.transport` — the client, one pipeline per event-loop tick checked
  against the cluster's epoch, the script; knows nothing of what commands mean;
- :mod:`.format` — the one-letter messages nodes publish to each other (the
  table of kinds), and the script's argument encodings;
- :mod:`.lua` — the Lua script every state change runs, with the key table
  (its membership branches in :mod:`.lua_membership`, spliced in: one script);
- :mod:`.gate` — where the node stands (one :class:`~.gate.State`) and which
  commands may run in it;
- :mod:`.membership` — the supervisor: connection, the whole-cluster gate,
  the membership notes; with :mod:`.reaping` (leases, sweeping, reaping) and
  :mod:`.resync` (writing the node's clients back);
- :mod:`.claims` — the API's nonces and idempotency keys, cluster-wide;
- :mod:`.backend` — :class:`RedisBackend`: the operations that change state or
  push, and delivery from the mirror; :mod:`.queries` — the read-only ones.
"""

from __future__ import annotations

from .backend import RedisBackend
from .format import node_of

__all__ = ["RedisBackend", "node_of"]
