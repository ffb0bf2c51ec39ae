"""When two display names are "the same name": the key that makes names unique.

People see names, so two accounts must never have names that look alike. The
displayed name keeps the user's spelling; uniqueness is decided on
:func:`name_key`, which folds away everything that does not show or that looks
like something else:

1. NFKC, so fullwidth ``ａｌｉｃｅ``, ligatures and the like become their plain letters;
2. default-ignorable and other invisible characters removed (U+00AD, U+034F,
   U+200B..U+200F, U+2060.., U+3164 HANGUL FILLER, variation selectors, tags...);
3. each letter that Unicode's confusables data (UTS #39, as shipped by the
   confusable-homoglyphs package) lists as a look-alike of an ASCII letter
   replaced by that letter, so Cyrillic ``а`` counts as Latin ``a`` and Greek
   ``ο`` as ``o``, whichever script the whole name is in;
4. the ASCII look-alikes UTS #39's skeleton folds (``1``/``|`` as ``l``, a
   capital ``I`` after a small letter as ``l``, ``0`` as ``o``, ``rn`` as
   ``m``), case folding, and runs of spaces as one.

On top of that, :func:`check_name_script` refuses a word that mixes scripts
with look-alike letters (``pаypal`` with one Cyrillic ``а``): such a word is
only ever a disguise.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

from confusable_homoglyphs import categories, confusables

__all__ = ["KEY_MAX", "check_name_script", "name_key"]

#: The key column's width; a name whose key is longer is refused.
KEY_MAX = 255

# Unicode's Default_Ignorable_Code_Point set (DerivedCoreProperties.txt), plus
# the blank characters that render as nothing in most fonts (Braille blank,
# Hangul fillers are already in the set). Python's unicodedata does not carry
# this property, so it is listed here.
_INVISIBLE = re.compile(
    "["
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
    "]"
)
_SPACES = re.compile(r"\s+")
# UTS #39 folds these ASCII look-alikes together in its skeletons.
_ASCII_FOLDS = str.maketrans({"1": "l", "|": "l", "0": "o"})
# A capital I after a small letter ("aIice") reads as l; elsewhere ("ALICE",
# "Ivan") it is an I, and case folding makes it i. Folding every I to l would
# make "ALICE" differ from "alice"; folding l to i would merge "Ali" and "All".
_I_AS_L = re.compile(r"(?<=[^\W\d_])I")


@cache
def _ascii_lookalike(char: str) -> str:
    """The ASCII letters or digits ``char`` is listed as a look-alike of, else ``char`` itself."""
    for glyph in confusables.confusables_data.get(char, ()):
        candidate = glyph["c"]
        if candidate.isascii() and candidate.isalnum():
            return str(candidate)
    return char


def name_key(name: str) -> str:
    """The form of ``name`` that must be unique: see the module docstring."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", name))
    text = "".join(char if char.isascii() else _ascii_lookalike(char) for char in text)
    text = _I_AS_L.sub(lambda found: "l" if text[found.start() - 1].islower() else "I", text)
    text = text.translate(_ASCII_FOLDS).casefold().replace("rn", "m")
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    return _SPACES.sub(" ", text).strip()


def check_name_script(name: str) -> str | None:
    """Why ``name`` is refused as a disguise, or None.

    A word (names may hold several: "Anna アンナ", "Σοφία Sofia" are fine)
    that mixes scripts and holds a letter that looks like one of another
    script in it ("pаypal" with a Cyrillic "а") is only ever a disguise.
    """
    # Invisible characters have scripts of their own (U+3164 is Hangul): they
    # are left to name_key, which drops them, rather than counted as a mix.
    for word in _INVISIBLE.sub("", unicodedata.normalize("NFKC", name)).split():
        scripts = categories.unique_aliases(word) - {"COMMON", "INHERITED"}
        if len(scripts) > 1 and any(confusables.is_confusable(word, preferred_aliases=[script]) for script in scripts):
            return "name mixes look-alike letters from different scripts in one word"
    return None
