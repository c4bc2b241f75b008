"""The one error a user sees: a single line saying what is wrong and how to fix it (exit 2)."""

from __future__ import annotations

__all__ = ["UserError", "must"]


class UserError(ValueError):
    """Bad input from the user. The CLI prints `error: <message>` and exits with code 2."""


def must(key: str, constraint: str, got: object, hint: str = "") -> UserError:
    """The house error pattern: "`<key>` must be <constraint> but got <value>" (+ a hint)."""
    msg = f"`{key}` must be {constraint} but got {got!r}"
    return UserError(f"{msg}; {hint}" if hint else msg)
