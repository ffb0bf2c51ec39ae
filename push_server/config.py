"""The push server's settings: one frozen dataclass, read from the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass


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
    #: A connection that has not finished its handshake this long after it was
    #: accepted is dropped (a deadline: a client dribbling bytes gains nothing).
    handshake_timeout: float = 10.0
    #: A connection we close (a kick, a protocol error, a drain) gets this long to
    #: close its side after our close frame before it is dropped.
    close_timeout: float = 5.0
    #: Largest frame (or reassembled message) a browser may send: it only sends pongs.
    max_frame_bytes: int = 64 * 1024
    #: Frames in one fragmented message (its first frame and every continuation,
    #: empty ones too). Browsers never fragment what they send.
    max_message_fragments: int = 100
    #: More frames than this in one second from one browser is a flood: close 1008.
    max_client_frames_per_second: int = 50
    #: Output a connection may have waiting in the server before it is dropped.
    max_pending_bytes: int = 1024 * 1024
    #: Largest pushed message (its payload), largest session, largest API body.
    max_message_bytes: int = 1024 * 1024
    max_session_bytes: int = 64 * 1024
    max_body_bytes: int = 16 * 1024 * 1024
    #: Longest lifetime a handshake token may claim (seconds from now to its expiry).
    token_max_ttl: float = 86400.0
    #: Operations in one batch request.
    max_batch_operations: int = 10_000
    #: Seconds an API request's body may take to arrive (it is unauthenticated until whole).
    body_read_timeout: float = 10.0
    #: Seconds an idempotency key is remembered: a repeat within it is not applied again.
    idempotency_window: float = 300.0
    #: Seconds of event-loop time a batch is checked and applied for before it lets
    #: other requests and connections run (a huge batch is worked through in slices).
    batch_slice_seconds: float = 0.005
    #: WebSockets this node holds (0: the open-files limit minus a reserve, see websocket/limits.py).
    max_connections: int = 0
    #: WebSockets one address may hold (0: no limit). Behind a proxy every client has the proxy's address.
    max_connections_per_ip: int = 1000
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
                "because it signs every API request and handshake token "
                "(set PUSH_SECRET, or PUSH_SECRET_FILE / --secret-file naming a file that holds it)"
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
        if self.body_read_timeout <= 0 or self.idempotency_window <= 0 or self.batch_slice_seconds <= 0:
            raise ConfigError("body read timeout, idempotency window and batch slice must be positive")
        if self.handshake_timeout <= 0 or self.close_timeout <= 0:
            raise ConfigError("handshake and close timeouts must be positive")
        if self.max_frame_bytes < 125 or self.max_message_fragments < 1:
            raise ConfigError("max frame bytes must be at least 125 and max message fragments at least 1")
        if self.token_max_ttl <= 0:
            raise ConfigError("token max TTL must be positive")
        if self.node_timeout <= 0:
            raise ConfigError("node timeout must be positive")
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError(f"event loop must be auto, uvloop or asyncio, not {self.event_loop!r}")
        if self.max_connections < 0 or self.max_connections_per_ip < 0:
            raise ConfigError("connection limits must be 0 (derived / no limit) or positive")
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
    "PUSH_SECRET_FILE": ("secret_file", str),
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
    "PUSH_BODY_READ_TIMEOUT": ("body_read_timeout", float),
    "PUSH_IDEMPOTENCY_WINDOW": ("idempotency_window", float),
    "PUSH_BATCH_SLICE_SECONDS": ("batch_slice_seconds", float),
    "PUSH_MAX_MESSAGE_FRAGMENTS": ("max_message_fragments", int),
    "PUSH_HANDSHAKE_TIMEOUT": ("handshake_timeout", float),
    "PUSH_CLOSE_TIMEOUT": ("close_timeout", float),
    "PUSH_TOKEN_MAX_TTL": ("token_max_ttl", float),
    "PUSH_MAX_CONNECTIONS": ("max_connections", int),
    "PUSH_MAX_CONNECTIONS_PER_IP": ("max_connections_per_ip", int),
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


#: Settings that may only come from the environment: a flag would show the
#: secret to every local user in the process list.
ENVIRONMENT_ONLY = frozenset({"PUSH_SECRET"})


def read_secret_file(path: str) -> str:
    """The secret held in ``path`` (surrounding whitespace and the final newline dropped)."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"secret file {path!r} cannot be read: {exc}") from None


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
    secret_file = values.pop("secret_file", None)
    if secret_file is not None:
        if values.get("secret"):
            raise ConfigError("set PUSH_SECRET or PUSH_SECRET_FILE / --secret-file, not both")
        values["secret"] = read_secret_file(str(secret_file))
    values.setdefault("secret", "")
    return Config(**values)  # type: ignore[arg-type]
