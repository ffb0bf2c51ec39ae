"""web_app: the Flask chat app that stores every chat action and pushes it through push_client.

    flask --app web_app run            # development
    gunicorn 'web_app:create_app()'    # production (see the Procfile)

Settings come from the environment (SPEC §6): SECRET_KEY, DATABASE_URL,
REDIS_URL, PUSH_API_URL, PUSH_SECRET, PUSH_WS_URL, PUSH_WS_PORT, and
SESSION_COOKIE_SECURE / MAX_IMAGE_BYTES / MAX_AVATAR_BYTES / PUSH_TIMEOUT / WEB_PROXY_COUNT, and
the RATE_LIMIT_* settings (web_app/limits.py). ``create_app`` takes a mapping
that overrides them (the tests' way in).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, redirect, request, url_for
from flask.sessions import SessionMixin
from flask.typing import ResponseReturnValue
from flask_session import Session
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from . import admin, auth, avatars, chat, edits, limits, moderation, presence, reads, rooms, typing_indicator
from .errors import init_errors
from .limits import init_limits
from .logs import init_logging
from .models import init_db
from .push import init_push, ws_url

log = logging.getLogger(__name__)

__all__ = ["create_app"]

# The page and its static files live at the top of the repository (the product
# card's `templates/`), next to this package rather than inside it.
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_TRUE = {"1", "true", "yes", "on"}


def _settings_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The app's settings as the environment gives them."""
    return {
        "SECRET_KEY": environ.get("SECRET_KEY"),
        "DATABASE_URL": environ.get("DATABASE_URL") or None,
        "REDIS_URL": environ.get("REDIS_URL") or None,
        "PUSH_API_URL": environ.get("PUSH_API_URL") or "http://127.0.0.1:7273",
        "PUSH_SECRET": environ.get("PUSH_SECRET") or None,
        "PUSH_WS_URL": environ.get("PUSH_WS_URL") or None,
        "PUSH_WS_PORT": int(environ.get("PUSH_WS_PORT") or 7272),
        "PUSH_TIMEOUT": float(environ.get("PUSH_TIMEOUT") or 3.0),
        "SESSION_COOKIE_SECURE": (environ.get("SESSION_COOKIE_SECURE") or "").lower() in _TRUE,
        "MAX_IMAGE_BYTES": int(environ.get("MAX_IMAGE_BYTES") or 5 * 1024 * 1024),
        # How many proxies in front of the app to trust for the caller's address
        # (X-Forwarded-For), which the per-address limits count by. 0: none.
        "WEB_PROXY_COUNT": int(environ.get("WEB_PROXY_COUNT") or 0),
        **limits.settings_from_env(environ),
        # A picture shown 34 px wide needs far less than a chat image; capped by MAX_IMAGE_BYTES's request limit.
        "MAX_AVATAR_BYTES": int(environ.get("MAX_AVATAR_BYTES") or 1024 * 1024),
        # The lobby's unread counts stop here (the page shows "99+"); see web_app/reads.py.
        "UNREAD_MAX": int(environ.get("UNREAD_MAX") or 100),
        # werkzeug's default (scrypt). The test suite lowers the cost to stay fast.
        "PASSWORD_HASH_METHOD": "scrypt",
    }


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment, overridden by ``test_config``."""
    # INSTANCE_PATH moves the SQLite file and the session files (tests give each
    # app its own); Flask takes it only as a constructor argument.
    instance_path = (test_config or {}).get("INSTANCE_PATH") or os.environ.get("WEBCHAT_INSTANCE_PATH") or None
    app = Flask(
        __name__,
        instance_path=instance_path,
        instance_relative_config=True,
        template_folder=str(TEMPLATES),
        static_folder=str(TEMPLATES / "static"),
    )
    app.config.update(_settings_from_env(os.environ))
    if test_config is not None:
        app.config.update(test_config)
    os.makedirs(app.instance_path, exist_ok=True)

    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _instance_secret_key(app.instance_path)

    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_PERMANENT=True,
        PERMANENT_SESSION_LIFETIME=14 * 24 * 3600,
        # The session (cookie and store) is written only when it changes: a
        # login stays valid 14 days from when it was made. Refreshed at every
        # answer, an answer in flight in one window while another window of the
        # browser logged in set the old session's cookie back over the new one
        # (the second window then acted as the first user); and every request
        # rewrote its session file or Redis key.
        SESSION_REFRESH_EACH_REQUEST=False,
        # A chat page stays open for hours: its CSRF token lives as long as the session.
        WTF_CSRF_TIME_LIMIT=None,
        # The larger upload limit plus room for the multipart framing and the other fields.
        MAX_CONTENT_LENGTH=max(int(app.config["MAX_IMAGE_BYTES"]), int(app.config["MAX_AVATAR_BYTES"])) + 64 * 1024,
    )
    if int(app.config["WEB_PROXY_COUNT"]) > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["WEB_PROXY_COUNT"]))  # type: ignore[method-assign]
    _init_sessions(app)
    csrf = CSRFProtect(app)
    init_logging()
    # Before the blueprints: it sets the bounded <int:> converter their routes use.
    init_errors(app)
    init_db(app)
    init_limits(app)
    init_push(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(rooms.bp)
    app.register_blueprint(chat.bp)
    app.add_url_rule("/favicon.ico", "favicon", _favicon)
    admin.init_app(app)  # /admin (ADMIN_USERS) and the web app's /metrics
    # The push server's events are signed with PUSH_SECRET, not a CSRF token.
    csrf.exempt(presence.receive_events)
    app.register_blueprint(presence.bp)
    presence.init_presence(app)
    app.register_blueprint(avatars.bp)
    app.register_blueprint(typing_indicator.bp)
    app.register_blueprint(reads.bp)
    app.register_blueprint(edits.bp)
    app.register_blueprint(moderation.bp)
    app.after_request(_security_headers)
    # Every page's top bar shows who is logged in.
    app.context_processor(lambda: {"user": auth.current_user()})
    return app


def _favicon() -> ResponseReturnValue:
    """Browsers ask for /favicon.ico whatever the page says: send them to the real one."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


def _instance_secret_key(instance_path: str) -> str:
    """A random key kept in the instance folder, for when SECRET_KEY is not set.

    Every worker process of one deployment must sign with the same key (or a
    CSRF token made by one is refused by the next), so the first process to
    start writes it and the others read it. run.sh puts a real one in .env.
    """
    path = os.path.join(instance_path, "secret_key")
    try:
        with open(path, encoding="ascii") as existing:
            return existing.read().strip()
    except FileNotFoundError:
        pass
    log.warning("SECRET_KEY is not set: using a random key kept in %s", path)
    temporary = f"{path}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as new:
        new.write(secrets.token_hex(32))
    try:
        # link() fails if another process got there first: then theirs is the key.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    with open(path, encoding="ascii") as chosen:
        return chosen.read().strip()


def _init_sessions(app: Flask) -> None:
    """Server-side sessions: in Redis when REDIS_URL is set, else files in the instance folder."""
    app.config.setdefault("SESSION_KEY_PREFIX", "webchat:session:")
    if app.config.get("REDIS_URL"):
        import webchat_redis

        app.config["SESSION_TYPE"] = "redis"
        app.config["SESSION_REDIS"] = webchat_redis.sync_client(
            app.config["REDIS_URL"]
        )  # redis:// or redis+sentinel://
    else:
        from cachelib.file import FileSystemCache

        app.config["SESSION_TYPE"] = "cachelib"
        app.config["SESSION_CACHELIB"] = FileSystemCache(
            os.path.join(app.instance_path, "sessions"), threshold=10000, mode=0o600
        )
    Session(app)
    if app.config.get("REDIS_URL"):
        _keep_answers_over_a_lost_refresh(app)


def _keep_answers_over_a_lost_refresh(app: Flask) -> None:
    """Redis failing as an unchanged session is written back must not turn a done request into a 500.

    A request may write its session back after the view has done its work
    (flask-session does so for an unchanged session only when
    SESSION_REFRESH_EACH_REQUEST is on). If Redis fails just then (a Sentinel failover), the
    message is stored and pushed: a 500 would tell the page it was not, and the
    person would send it again, a second copy. The session did not change, so
    only the extension is lost, and the next request makes it. A session the
    request changed (a login, a logout, a new CSRF token) still fails it: that
    answer is only true once the session is saved.
    """
    import redis

    interface = app.session_interface
    save = interface.save_session

    def save_session(app: Flask, session: SessionMixin, response: Response) -> None:
        try:
            save(app, session, response)
        except redis.RedisError as exc:
            if session.modified:
                raise
            log.warning("session store (Redis) unavailable: this session's lifetime was not extended: %s", exc)

    interface.save_session = save_session  # type: ignore[method-assign]


def _security_headers(response: Response) -> Response:
    """Headers every response carries; a view may set a stricter CSP of its own."""
    # Scripts and styles only from our own origin (no inline script at all), and
    # the WebSocket only to the push server the page is told about.
    connect = ws_url() if request.endpoint in ("rooms.room_page", "rooms.lobby") else ""
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"connect-src 'self' {connect}".rstrip()
        + "; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
