"""The JSON values the server stores or forwards (sessions, ``json`` messages), checked past the decoder.

msgspec refuses non-finite numbers and lone surrogates but, like most decoders,
lets a repeated key win silently; these functions refuse that too.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from typing import Any

import msgspec
from msgspec import Raw

from ..errors import ApiError, invalid

_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return value


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("non-finite number")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# The C scanner straight (JSONDecoder.decode would add a Python wrapper and a
# whitespace regex per call): msgspec has already checked that the raw value is
# one well-formed JSON value, without surrounding whitespace.
_scan = json.scanner.make_scanner(
    json.JSONDecoder(object_pairs_hook=_pairs, parse_float=_finite, parse_constant=_no_constant)  # type: ignore[arg-type]
)


def strict_value(raw: bytes | Raw, field: str) -> Any:
    """A raw JSON value (already known to be well-formed) with no duplicate keys and no non-finite number."""
    try:
        text = str(raw, "utf-8")
        value, end = _scan(text, 0)
        if end != len(text):
            raise ValueError("trailing data")
        return value
    except _Duplicate as exc:
        raise invalid(field, f"duplicate key {exc.args[0]!r}") from None
    except StopIteration:
        raise invalid(field, "is not valid JSON") from None
    except (ValueError, RecursionError):
        raise invalid(field, "a number out of range (JSON numbers must be finite)") from None


_any = msgspec.json.Decoder()
#: Where a key ends: every key of an object in the raw text is one match (a
#: string value can add matches, never hide one).
_KEY_END = re.compile(rb'"\s*:')


def _keys(value: Any) -> int:
    """How many object keys ``value`` holds, nested ones included."""
    count = 0
    if type(value) is dict:
        count = len(value)
        values: Any = value.values()
    elif type(value) is list:
        values = value
    else:
        return 0
    for item in values:
        if type(item) is dict or type(item) is list:
            count += _keys(item)
    return count


def checked_value(raw: Raw, field: str) -> Any:
    """A raw JSON value, decoded by msgspec (finite numbers), refused if an object in it repeats a key.

    Duplicates are ruled out cheaply: the raw text's key ends are counted and
    compared with the keys decoded (a repeated key is decoded once). Only
    when they differ (a repeat, or a string value that looks like a key end)
    is the value read again by the strict parser, which tells.
    """
    try:
        value = _any.decode(raw)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        raise invalid(field, match.group(1)[0].lower() + match.group(1)[1:]) from None
    if len(_KEY_END.findall(raw)) != _keys(value):
        strict_value(raw, field)
    return value


#: Sessions are objects: decoding a batch's sessions together refuses any other value at once.
_objects: msgspec.json.Decoder[list[dict[str, Any]]] = msgspec.json.Decoder(list[dict[str, Any]])


class Refused(Exception):
    """One value of several checked together was refused: which one, and why."""

    def __init__(self, position: int, error: ApiError) -> None:
        super().__init__(error.message)
        self.position = position
        self.error = error


def checked_objects(raws: list[Raw], field: str) -> list[dict[str, Any]]:
    """Raw JSON objects (a batch's sessions) decoded together, refused if one repeats a key or is not an object.

    One decoder call for all of them (a call each cost more than the decoding),
    and one duplicate check for all of them: every key has a colon after it,
    so when the text holds no more colons than the decoded objects hold
    distinct keys, no key was given twice. (Colons inside strings only make
    the count larger: then the exact checks below decide.) Raises
    :class:`Refused` naming the first value refused.
    """
    joined = b"[" + b",".join(raws) + b"]"
    try:
        values = _objects.decode(joined)
    except msgspec.MsgspecError:
        values = []
    if len(values) != len(raws):
        # One of them is refused: say which (the error path, one at a time).
        for position, raw in enumerate(raws):
            try:
                value = checked_value(raw, field)
            except ApiError as exc:
                raise Refused(position, exc) from None
            if type(value) is not dict:
                raise Refused(position, invalid(field, "must be a JSON object"))
        raise AssertionError("a batch of values was refused but none alone")  # pragma: no cover
    # Flat objects (no "{" or "[" beyond their own) hold exactly len() keys each.
    if joined.count(b"{") == len(values) and joined.count(b"[") == 1:
        keys = sum(map(len, values))
    else:
        keys = sum(map(_keys, values))
    if joined.count(b":") != keys and len(_KEY_END.findall(joined)) != keys:
        for position, raw in enumerate(raws):
            try:
                strict_value(raw, field)
            except ApiError as exc:
                raise Refused(position, exc) from None
    return values


def check_duplicate_keys(body: bytes, field: str) -> None:
    """Refuse an object with a key given twice (the decoder would keep the last silently)."""
    strict_value(body, field)
