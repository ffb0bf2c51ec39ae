"""push_server: holds the browsers' WebSocket connections and pushes to them.

It carries no business logic: business apps drive it through the signed
internal HTTP API (see push_client and docs/openapi.yaml).
"""

from .app import create_app, ws_port
from .config import Config, ConfigError, from_env

__all__ = ["Config", "ConfigError", "create_app", "from_env", "ws_port"]
