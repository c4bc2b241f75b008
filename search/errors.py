"""The one error a user sees: a single line saying what is wrong and how to fix it (exit 2).

Whatever built the message (a repr of a wrong-typed value included), a password in it is
replaced by *** before anyone sees it: `UserError` scrubs its own text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = ["MAX_SHOWN", "UserError", "closest", "hide_secrets", "must", "shown"]

MAX_SHOWN = 80  # characters of a bad value repeated in a message (a 5,000-char name is cut)

# user:password@ in any URL; password=... in key-value connection strings (libpq DSNs)
_URL_SECRET = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s:/@'\"]*:)[^\s@'\"]*@")
_KV_SECRET = re.compile(r"(\bpassword\s*=\s*)[^\s'\"&;]+", re.IGNORECASE)


def hide_secrets(text: str) -> str:
    """`text` with URL passwords and `password=...` values replaced by ***."""
    return _KV_SECRET.sub(r"\1***", _URL_SECRET.sub(r"\1***@", text))


class UserError(ValueError):
    """Bad input from the user. The CLI prints `error: <message>` and exits with code 2."""

    def __init__(self, message: str = "") -> None:
        one_line = " ".join(hide_secrets(str(message)).split())
        super().__init__(one_line)


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
