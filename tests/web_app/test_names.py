"""Display names: look-alikes of a taken name are refused; the shown name keeps the user's spelling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, func, select, text

from web_app.models import User, database_url, get_db
from web_app.names import name_key

from .conftest import PASSWORD, Visitor
from .live import make_app

BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)

LOOKALIKES = [
    "Alice",  # case
    "ALICE",
    "\u0430lice",  # Cyrillic а
    "\u0430l\u0456\u0441\u0435",  # all Cyrillic: а, і, с, е (and a Latin l)
    "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth
    "ali\u034fce",  # COMBINING GRAPHEME JOINER (invisible)
    "al\u200bice",  # ZERO WIDTH SPACE
    "\u3164alice",  # HANGUL FILLER (renders as nothing)
    "alice\u3164",
    "aIice",  # capital I for l
    "al\u00adice",  # soft hyphen
]


@BOTH
@pytest.mark.parametrize("lookalike", LOOKALIKES)
def test_a_lookalike_of_a_taken_name_is_refused(app: Flask, new_visitor: Callable[[], Visitor], lookalike: str) -> None:
    """A name that looks like a taken one (case, script, width, invisible characters) is refused; only one account exists."""
    assert new_visitor().register("alice").status_code == 200
    answer = new_visitor().register(lookalike)
    assert answer.status_code in (400, 409), answer.json
    with app.app_context():
        assert get_db().scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize("name", ["p\u0430ypal", "\u0440aypal", "g\u03bfogle"])
def test_names_mixing_lookalike_scripts_are_refused_even_when_free(visitor: Visitor, name: str) -> None:
    """A name mixing Latin with Cyrillic or Greek look-alike letters is a disguise: 400 even if nothing like it exists."""
    answer = visitor.register(name)
    assert answer.status_code == 400
    assert "scripts" in answer.json["error"]


@pytest.mark.parametrize("name", ["Anna アンナ", "Σοφία Sofia", "李 Li", "Кирилл K"])
def test_names_with_words_in_different_scripts_are_welcome(visitor: Visitor, name: str) -> None:
    """A name whose words are each in one script (a name and its transliteration) registers as typed."""
    answer = visitor.register(name)
    assert answer.status_code == 200, answer.json
    assert answer.json["name"] == name


def test_an_invisible_only_name_is_refused(visitor: Visitor) -> None:
    """A name of invisible characters only is refused."""
    answer = visitor.register("\u3164\u3164")
    assert answer.status_code == 400


@BOTH
def test_the_shown_name_keeps_the_users_spelling(app: Flask, new_visitor: Callable[[], Visitor]) -> None:
    """The name is shown as typed (case, accents, script), and different real names coexist."""
    for name in ("Ålice", "Мария", "Саша", "Zoë"):
        answer = new_visitor().register(name)
        assert answer.status_code == 200, answer.json
        assert answer.json["name"] == name
    with app.app_context():
        assert set(get_db().scalars(select(User.name))) == {"Ålice", "Мария", "Саша", "Zoë"}


def test_login_finds_the_account_by_any_lookalike_spelling(new_visitor: Callable[[], Visitor]) -> None:
    """Logging in as "bob" or "BOB" reaches the account "Bob", whose name stays "Bob"."""
    uid = new_visitor().register("Bob").json["uid"]
    for spelling in ("Bob", "bob", "BOB"):
        answer = new_visitor().login(spelling)
        assert answer.status_code == 200
        assert answer.json["uid"] == uid and answer.json["name"] == "Bob"


def test_name_key_folds_what_looks_alike() -> None:
    """name_key gives look-alikes one key and different names different keys."""
    assert len({name_key(name) for name in ["alice", *LOOKALIKES]}) == 1
    assert name_key("rnary") == name_key("mary")
    assert name_key("Mary  Ann") == name_key("mary ann")
    assert len({name_key(name) for name in ["alice", "alicia", "bob", "Мария", "Zoë", "zoe"]}) == 6


_OLD_USERS = """
CREATE TABLE users (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(32) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE
)
"""


@BOTH
def test_an_existing_users_table_gets_its_name_keys(instance: Path, db_url: str | None) -> None:
    """A database made before name keys gets the column, filled in, and its unique index; colliding old accounts still log in."""
    from werkzeug.security import generate_password_hash

    instance.mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url(db_url, str(instance)))
    password_hash = generate_password_hash(PASSWORD, "pbkdf2:sha256:1000")
    with engine.begin() as conn:
        conn.execute(text(_OLD_USERS))
        for user_id, name in ((1, "alice"), (2, "Alice"), (3, "bob")):
            conn.execute(
                text("INSERT INTO users (id, name, password_hash) VALUES (:id, :name, :hash)"),
                {"id": user_id, "name": name, "hash": password_hash},
            )
    engine.dispose()
    app = make_app(instance, db_url)
    with app.app_context():
        keys = dict(get_db().execute(select(User.name, User.name_key)).all())
    # The older "alice" has the key; "Alice" keeps none but is still an account.
    assert keys == {"alice": "alice", "Alice": None, "bob": "bob"}
    assert Visitor(app.test_client()).login("Alice").json["name"] == "Alice"
    assert Visitor(app.test_client()).login("alice").json["name"] == "alice"
    assert Visitor(app.test_client()).register("BOB").status_code == 409
    # A second start finds everything in place.
    make_app(instance, db_url)
