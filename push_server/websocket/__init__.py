"""The browser-facing listener: RFC 6455 over a bare asyncio Protocol.

- ``handshake``: the I/O-free opening handshake (parse, accept, refuse).
- ``frames``: the I/O-free frame codec (encode once, parse client frames, close codes).
- ``listener``: ``ClientConnection``, one browser's connection (accept → register →
  read → unregister), and the ``ListenerContext`` every connection shares.
- ``connections``: this node's client_id → connection, per-tick coalesced delivery,
  the heartbeat sweep.
"""
