"""Accounts: register (which also logs in), login, logout, and the login_required guard."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import generate_csrf
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from . import limits
from .errors import ApiError, json_errors, request_data, wants_json
from .models import NAME_MAX, User, get_db, insert_unique
from .names import KEY_MAX, check_name_script, name_key

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


# A path on this site: one slash, then no second slash or backslash (browsers
# read "/\\evil" as "//evil"), and no whitespace or control character anywhere
# (browsers drop tabs and newlines, so "/%09/evil" becomes "//evil").
# templates/static/auth.js applies the same pattern.
_SAFE_NEXT = re.compile(r"/(?![/\\])[^\\\s\x00-\x1f\x7f]*")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path on this site, never another host."""
    if target and _SAFE_NEXT.fullmatch(target):
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
    requested = request.args.get("next") or request_data().get("next")
    target = safe_next(requested if isinstance(requested, str) else None)
    if wants_json():
        return jsonify(uid=user.uid, name=user.name, csrf_token=token, next=target)
    return redirect(target)


@bp.get("/session")
def session_info() -> ResponseReturnValue:
    """Who this browser is logged in as, and a CSRF token for it.

    Two windows of one browser share one session cookie. A login in the second
    window starts a new session (the session id and the CSRF secret change, so
    nothing planted before the login is worth anything after it), which makes
    the token in the first window's page stale. Rather than keeping the old
    secret across logins, the page asks here for a current token when its own is
    refused, and sends again only if the session is still the user it shows
    (see templates/static/common.js).
    """
    user = current_user()
    return jsonify(uid=user.uid if user else None, name=user.name if user else None, csrf_token=generate_csrf())


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
    key = name_key(name)
    if not key:
        raise ApiError(400, "name must contain visible characters")
    if len(key) > KEY_MAX:
        raise ApiError(400, "name is too long")
    refused = check_name_script(name)
    if refused:
        raise ApiError(400, refused)
    # Counted only for requests that would create an account.
    limits.enforce("registrations", limits.address())
    user = User(
        name=name,
        name_key=key,
        password_hash=generate_password_hash(password, current_app.config["PASSWORD_HASH_METHOD"]),
    )
    if not insert_unique(user):
        raise ApiError(409, "that name is taken, or looks like one that is")
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
    key = name_key(name)
    # Counted per name (as its key, so look-alike spellings share one count)
    # and address: checked before the password, so past the limit even the
    # right password is not tried, and one attacker cannot lock others out.
    failures = f"{key}\n{limits.address()}"
    limits.would_exceed("login_failures", failures)
    db = get_db()
    # The exact name first (an old account left without a key by
    # schema.upgrade_name_keys has only that), then any spelling that looks like it.
    user = db.scalar(select(User).where(User.name == name)) or db.scalar(select(User).where(User.name_key == key))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        user_ok = False
    else:
        user_ok = check_password_hash(user.password_hash, password)
    if user is None or not user_ok:
        limits.hit("login_failures", failures)
        raise ApiError(401, "wrong name or password")
    return _log_in(user)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Forget the login."""
    session.clear()
    if wants_json():
        return jsonify(ok=True)
    return redirect(url_for("auth.login"))
