"""Fixtures for web_app: an app per test (own instance folder and database), callers, a live server.

``db_url`` is SQLite unless a module parametrises it (indirectly) with
"postgresql", which gives the test a fresh PostgreSQL schema of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.servers import PushServerProcess, free_port

from .live import Live, make_app, postgres_schema

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_names = count(1)

PASSWORD = "correct horse battery"


@pytest.fixture
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The test's database: None (SQLite in the instance folder) or a PostgreSQL URL with a schema of its own."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield None
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    """The app's instance folder (SQLite file and session files)."""
    return tmp_path / "instance"


@pytest.fixture
def app(instance: Path, db_url: str | None) -> Flask:
    """An app whose push server is a closed port: nothing here can be delivered."""
    return make_app(
        instance,
        db_url,
        PUSH_API_URL=f"http://127.0.0.1:{free_port()}",
        PUSH_SECRET="unit-test-secret",
        PUSH_TIMEOUT=1.0,
    )


class Visitor:
    """One browser's worth of Flask test client: its cookies and its CSRF token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = ""
        self.uid: str | None = None

    def refresh_csrf(self) -> str:
        """Read the token from a page's meta tag, as the page's script does."""
        page = self.client.get("/login")
        match = _CSRF_META.search(page.get_data(as_text=True))
        assert match
        self.csrf = match.group(1)
        return self.csrf

    def post(self, path: str, json: Any = None, **kwargs: Any) -> TestResponse:
        """POST with the CSRF header (JSON unless ``data`` is given)."""
        if not self.csrf:
            self.refresh_csrf()
        headers = {"X-CSRFToken": self.csrf, "Accept": "application/json", **kwargs.pop("headers", {})}
        if json is not None:
            kwargs["json"] = json
        return self.client.post(path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        """GET asking for JSON."""
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        return self.client.get(path, headers=headers, **kwargs)

    def register(self, name: str | None = None, password: str = PASSWORD) -> TestResponse:
        """Register (and so log in); a fresh name unless one is given."""
        answer = self.post("/register", {"name": name or f"user{next(_names)}", "password": password})
        if answer.status_code == 200:
            self.csrf = answer.json["csrf_token"]
            self.uid = answer.json["uid"]
        return answer

    def login(self, name: str, password: str = PASSWORD) -> TestResponse:
        answer = self.post("/login", {"name": name, "password": password})
        if answer.status_code == 200:
            self.csrf = answer.json["csrf_token"]
            self.uid = answer.json["uid"]
        return answer

    def create_room(self, name: str | None = None) -> int:
        answer = self.post("/rooms", {"name": name or f"room{next(_names)}"})
        assert answer.status_code == 201, answer.json
        return int(answer.json["id"])


@pytest.fixture
def new_visitor(app: Flask) -> Callable[[], Visitor]:
    """Make visitors, each with its own cookie jar."""
    return lambda: Visitor(app.test_client())


@pytest.fixture
def visitor(new_visitor: Callable[[], Visitor]) -> Visitor:
    """An anonymous visitor."""
    return new_visitor()


@pytest.fixture
def member(new_visitor: Callable[[], Visitor]) -> Visitor:
    """A registered, logged-in visitor."""
    v = new_visitor()
    assert v.register().status_code == 200
    return v


@pytest.fixture
def live(push_server: PushServerProcess, instance: Path, db_url: str | None) -> Iterator[Live]:
    """A real push server and the real web app serving HTTP, wired together."""
    with Live(push_server, instance, db_url) as running:
        yield running
