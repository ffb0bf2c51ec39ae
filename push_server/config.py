"""The push server's settings: one frozen dataclass, read from the environment."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Mapping


class ConfigError(ValueError):
    """A setting is missing or wrong; the message says which and why."""


@dataclass(frozen=True)
class Config:
    """Every setting, with the defaults SPEC §6 names; see docs/operations.md."""

    secret: str
    ws_host: str = "127.0.0.1"
    ws_port: int = 7272
    api_host: str = "127.0.0.1"
    api_port: int = 7273
    ws_path: str = "/ws"
    redis_url: str | None = None
    redis_prefix: str = "push:"
    #: Seconds without its lease after which a node counts as dead.
    node_timeout: float = 10.0
    #: Exact ``Origin`` values allowed to open a WebSocket; empty allows any.
    allowed_origins: tuple[str, ...] = ()
    #: Idle connections are pinged this often (seconds)...
    heartbeat_interval: float = 25.0
    #: ...and dropped after this long without any frame from them.
    heartbeat_timeout: float = 60.0
    #: A connection that has not finished its handshake after this long is dropped.
    handshake_timeout: float = 10.0
    #: Largest frame (or reassembled message) a browser may send: it only sends pongs.
    max_frame_bytes: int = 64 * 1024
    #: More frames than this in one second from one browser is a flood: close 1008.
    max_client_frames_per_second: int = 50
    #: Output a connection may have waiting in the server before it is dropped.
    max_pending_bytes: int = 1024 * 1024
    #: Largest pushed message (its payload), largest session, largest API body.
    max_message_bytes: int = 1024 * 1024
    max_session_bytes: int = 64 * 1024
    max_body_bytes: int = 16 * 1024 * 1024
    #: Operations in one batch request.
    max_batch_operations: int = 10_000
    #: Processes sharing the ports (``--workers``); more than one needs Redis.
    workers: int = 1
    #: Set for worker processes so they can share the listening ports.
    reuse_port: bool = False
    log_level: str = "INFO"
    #: "auto" (uvloop when installed, else asyncio), "uvloop" or "asyncio".
    event_loop: str = "auto"
    #: Events to the business app (docs/events.md): where they are POSTed; None sends none.
    events_url: str | None = None
    #: Seconds a uid's last connection may be gone before uid_offline (a reload sends nothing).
    offline_grace: float = 5.0
    #: Events are retried at least this long (seconds) before they may be given up.
    events_retry_s: float = 300.0
    #: Forward browsers' text frames as client_message events.
    forward_client_messages: bool = False
    #: Events waiting for the receiver, at most; past it new events are dropped and counted.
    events_queue_max: int = 100_000
    #: Seconds the receiver has to answer a batch before it counts as failed.
    events_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.secret:
            raise ConfigError(
                "PUSH_SECRET is not set: the push server refuses to start without a secret, "
                "because it signs every API request and handshake token (set PUSH_SECRET or pass --secret)"
            )
        if len(self.secret) < 16:
            raise ConfigError("PUSH_SECRET is too short: use at least 16 characters (e.g. `openssl rand -hex 32`)")
        for name in ("ws_port", "api_port"):
            port = getattr(self, name)
            if not 0 <= port < 65536:
                raise ConfigError(f"{name} must be a port number, not {port}")
        if self.ws_port and self.ws_port == self.api_port and self.ws_host == self.api_host:
            raise ConfigError("the WebSocket and API listeners need different ports")
        if self.heartbeat_interval <= 0 or self.heartbeat_timeout <= self.heartbeat_interval:
            raise ConfigError("heartbeat timeout must be longer than the heartbeat interval (both > 0)")
        if self.node_timeout <= 0:
            raise ConfigError("node timeout must be positive")
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError(f"event loop must be auto, uvloop or asyncio, not {self.event_loop!r}")
        if self.offline_grace < 0 or self.events_retry_s <= 0 or self.events_timeout <= 0:
            raise ConfigError("offline grace must be >= 0, events retry time and timeout > 0")
        if self.events_queue_max < 1:
            raise ConfigError("the events queue bound must be at least 1")
        if self.events_url and not self.events_url.startswith(("http://", "https://")):
            raise ConfigError(f"events URL must be an http:// or https:// URL, not {self.events_url!r}")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if self.workers > 1 and not self.redis_url:
            raise ConfigError(
                "--workers needs PUSH_REDIS_URL: worker processes share state through Redis; "
                "without it each process would be a separate island"
            )

    def replace(self, **changes: object) -> Config:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


#: Environment variable → (field, converter). The CLI flags mirror these names.
ENVIRONMENT: Mapping[str, tuple[str, type]] = {
    "PUSH_SECRET": ("secret", str),
    "PUSH_WS_HOST": ("ws_host", str),
    "PUSH_WS_PORT": ("ws_port", int),
    "PUSH_API_HOST": ("api_host", str),
    "PUSH_API_PORT": ("api_port", int),
    "PUSH_REDIS_URL": ("redis_url", str),
    "PUSH_REDIS_PREFIX": ("redis_prefix", str),
    "PUSH_NODE_TIMEOUT": ("node_timeout", float),
    "PUSH_ALLOWED_ORIGINS": ("allowed_origins", tuple),
    "PUSH_HEARTBEAT_INTERVAL": ("heartbeat_interval", float),
    "PUSH_HEARTBEAT_TIMEOUT": ("heartbeat_timeout", float),
    "PUSH_MAX_PENDING_BYTES": ("max_pending_bytes", int),
    "PUSH_MAX_MESSAGE_BYTES": ("max_message_bytes", int),
    "PUSH_MAX_FRAME_BYTES": ("max_frame_bytes", int),
    "PUSH_MAX_CLIENT_FRAMES_PER_SECOND": ("max_client_frames_per_second", int),
    "PUSH_WORKERS": ("workers", int),
    "PUSH_LOG_LEVEL": ("log_level", str),
    "PUSH_EVENT_LOOP": ("event_loop", str),
    "PUSH_EVENTS_URL": ("events_url", str),
    "PUSH_OFFLINE_GRACE": ("offline_grace", float),
    "PUSH_EVENTS_RETRY_S": ("events_retry_s", float),
    "PUSH_FORWARD_CLIENT_MESSAGES": ("forward_client_messages", bool),
    "PUSH_EVENTS_QUEUE_MAX": ("events_queue_max", int),
    "PUSH_EVENTS_TIMEOUT": ("events_timeout", float),
}


def parse_value(field_name: str, kind: type, text: str) -> object:
    """Convert one setting's text, or raise ConfigError naming it."""
    if kind is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if kind is bool:
        if text.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if text.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{field_name}: {text!r} is not 1/0, true/false, yes/no or on/off")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"{field_name}: {text!r} is not a valid {kind.__name__}") from None


def values_from_env(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The settings present in the environment, converted, by field name."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for variable, (field_name, kind) in ENVIRONMENT.items():
        text = environ.get(variable)
        if text is not None and text != "":
            values[field_name] = parse_value(field_name, kind, text)
    return values


def from_env(environ: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None) -> Config:
    """A Config from the environment, with ``overrides`` (e.g. from argv) on top."""
    values = values_from_env(environ)
    values.update({name: value for name, value in (overrides or {}).items() if value is not None})
    values.setdefault("secret", "")
    return Config(**values)  # type: ignore[arg-type]
