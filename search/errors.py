"""The one error a user sees: a single line saying what is wrong and how to fix it (exit 2).

Whatever built the message (a repr of a wrong-typed value included), a password in it is
replaced by *** before anyone sees it: `UserError` scrubs its own text. The class is the
objectives' own (`objectives.UserError`), so an objective's bad input reads the same; this
module adds how messages name a bad value.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from objectives import UserError, hide_secrets

__all__ = ["MAX_SHOWN", "UserError", "closest", "hide_secrets", "must", "shown"]

MAX_SHOWN = 80  # characters of a bad value repeated in a message (a 5,000-char name is cut)

def shown(value: object) -> str:
    """A bad value as a message repeats it: its repr, cut to MAX_SHOWN characters."""
    try:
        text = repr(value)
    except RecursionError:  # a deeply nested list
        text = f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN - 14]}... ({len(text)} chars)"


def must(key: str, constraint: str, got: object, hint: str = "") -> UserError:
    """The house error pattern: "`<key>` must be <constraint> but got <value>" (+ a hint)."""
    msg = f"`{key}` must be {constraint} but got {shown(got)}"
    return UserError(f"{msg}; {hint}" if hint else msg)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant, or None where nothing is close."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None
