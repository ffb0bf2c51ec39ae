"""Accounts: register (which also logs in), login, logout, and the login_required guard."""

from __future__ import annotations

import logging
import unicodedata
from functools import wraps
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import generate_csrf
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import ApiError, json_errors, request_data, wants_json
from .models import NAME_MAX, User, get_db, insert_unique

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])

PASSWORD_MIN = 8
# Long enough for any passphrase, short enough that hashing it is not a way to burn CPU.
PASSWORD_MAX = 256

# A hash made once so that a login for an unknown name costs as much as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password")


def current_user() -> User | None:
    """The logged-in user, or None."""
    if "user" not in g:
        uid = session.get("uid")
        g.user = get_db().get(User, uid) if isinstance(uid, int) else None
    return g.user  # type: ignore[no-any-return]


def login_required(view: F) -> F:
    """Let only logged-in users in: 401 JSON for API calls, a redirect to the login page for pages."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            if not json_errors():
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            raise ApiError(401, "log in first")
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def clean_name(value: Any, maximum: int, what: str) -> str:
    """A display name: text, trimmed, 1..maximum characters, no control characters."""
    if not isinstance(value, str):
        raise ApiError(400, f"{what} must be a string")
    name = unicodedata.normalize("NFC", value.strip())
    if not name:
        raise ApiError(400, f"{what} must not be empty")
    if len(name) > maximum:
        raise ApiError(400, f"{what} must be at most {maximum} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise ApiError(400, f"{what} must not contain control characters")
    return name


def _credentials() -> tuple[str, str]:
    data = request_data()
    name = clean_name(data.get("name"), NAME_MAX, "name")
    password = data.get("password")
    if not isinstance(password, str) or not password:
        raise ApiError(400, "password must be a non-empty string")
    if len(password) > PASSWORD_MAX:
        raise ApiError(400, f"password must be at most {PASSWORD_MAX} characters")
    return name, password


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path on this site, never another host."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("rooms.lobby")


def _log_in(user: User) -> ResponseReturnValue:
    # A fresh session (and session id) at every login, so an id planted before
    # login (session fixation) is worth nothing after it.
    session.clear()
    session["uid"] = user.id
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
    g.user = user
    # The CSRF token was tied to the old session: hand out the new one.
    g.pop("csrf_token", None)
    token = generate_csrf()
    if wants_json():
        return jsonify(uid=user.uid, name=user.name, csrf_token=token)
    return redirect(_safe_next(request.args.get("next") or request.form.get("next")))


@bp.get("/register")
def register_page() -> ResponseReturnValue:
    """The registration form."""
    return render_template("auth/register.html", next=request.args.get("next", ""))


@bp.post("/register")
def register() -> ResponseReturnValue:
    """Create an account and log in as it."""
    name, password = _credentials()
    if len(password) < PASSWORD_MIN:
        raise ApiError(400, f"password must be at least {PASSWORD_MIN} characters")
    user = User(name=name, password_hash=generate_password_hash(password, current_app.config["PASSWORD_HASH_METHOD"]))
    if not insert_unique(user):
        raise ApiError(409, "that name is taken")
    log.info("registered user %s (%s)", user.id, user.name)
    return _log_in(user)


@bp.get("/login")
def login() -> ResponseReturnValue:
    """The login form."""
    return render_template("auth/login.html", next=request.args.get("next", ""))


@bp.post("/login")
def login_post() -> ResponseReturnValue:
    """Log in with name and password."""
    name, password = _credentials()
    user = get_db().scalar(select(User).where(User.name == name))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        raise ApiError(401, "wrong name or password")
    if not check_password_hash(user.password_hash, password):
        raise ApiError(401, "wrong name or password")
    return _log_in(user)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Forget the login."""
    session.clear()
    if wants_json():
        return jsonify(ok=True)
    return redirect(url_for("auth.login"))
