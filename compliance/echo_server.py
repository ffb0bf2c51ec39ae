"""The push server's own WebSocket listener, echoing every message: a testee for Autobahn.

    python compliance/echo_server.py --host 127.0.0.1 --port 9002 [push-server's limit flags]

Everything is the real listener (SPEC section 12): the same handshake, frame
parser, limits and close handling, on the same ``ClientConnection`` class, with
an in-memory backend. Two hooks differ, and only these: each complete text or
binary message is queued back to its sender, and no ``init`` frame is sent (an
echo peer must send nothing of its own). Without limit flags the limits are
production's; ``--max-frame-bytes`` and friends raise them. The path is ``/ws``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from push_server.__main__ import parse_args
from push_server.backends.memory import MemoryBackend
from push_server.config import from_env
from push_server.serve import new_event_loop
from push_server.websocket import frames
from push_server.websocket.connections import Connections
from push_server.websocket.listener import ClientConnection, ListenerContext

log = logging.getLogger("compliance.echo_server")


class EchoConnection(ClientConnection):
    """A listener connection that sends each message back."""

    __slots__ = ()

    def greet(self, client_id: str, uid: str | None) -> None:
        pass  # an echo peer speaks only when spoken to

    def message_received(self, opcode: int, payload: bytes) -> None:
        self.context.connections.queue(self, frames.encode_frame(opcode, payload))


async def serve(host: str, port: int, limit_flags: list[str]) -> None:
    """Listen until cancelled."""
    # The secret only signs tokens, which Autobahn never sends; a fresh one each run.
    config = from_env(environ={}, overrides={**parse_args(limit_flags), "secret": os.urandom(16).hex()})
    backend = MemoryBackend()
    connections = Connections()
    await backend.start(connections)
    context = ListenerContext(config, backend, connections)
    server = await asyncio.get_running_loop().create_server(lambda: EchoConnection(context), host, port)
    log.info("echo server on ws://%s:%d%s", host, port, config.ws_path)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    options, limit_flags = parser.parse_known_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    loop = new_event_loop("auto")
    try:
        loop.run_until_complete(serve(options.host, options.port, limit_flags))
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()


if __name__ == "__main__":
    main()
