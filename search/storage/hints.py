"""The commands our messages suggest, as a person should type them to reach the same study.

`hint_command` builds every one: `python -m search <rest>`, carrying what the command being
run was given, so that the hint runs as printed:

- the study as typed: a study file given by its path is found by that path only, and
  `--study-name` where one was given (a stored name alone names no study file);
- where the store came from: a `--storage` flag is repeated with its password as *** (never
  printed); a URL taken from $SEARCH_STORAGE is named as "$SEARCH_STORAGE", not spelled out.
  A store found through $SEARCH_STORAGE_FILE, the study file or the default is found again by
  the same command and needs nothing.

How the running command reached its study (a `Reach`) is recorded once, where the study is
opened (`search.options.open_study` calls `reached`), and read by every hint built while the
command runs. Where the study it names is not stored but another's name is close to it,
`toward` turns that reach toward the stored study, for the "did you mean" hint. Hints that
other modules still write as plain text (`` `python -m search validate --study lr` ``) are
carried at the edge where text leaves the program (`carried`: `best`'s output, the CLI's
error line); a hint already carried is left as it is.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Collection
from contextvars import ContextVar
from dataclasses import dataclass

from search.storage.urls import ENV, redact

__all__ = ["Reach", "carried", "hint_command", "reached", "toward"]

# The commands that take --study (`studies` lists a whole store).
STUDY_COMMANDS = ("run", "best", "validate", "report", "dashboard")
_HINT = re.compile(r"`python -m search ([^`\n]+)`")


@dataclass(frozen=True)
class Reach:
    """How the running command reached its study and store: what its hints repeat."""

    study: str | None = None  # --study as typed: a shipped name, a stored name or a file path
    name: str | None = None  # the study's name in the store
    study_name: str | None = None  # --study-name, where given
    storage: str | None = None  # --storage, where given


_REACH: ContextVar[Reach | None] = ContextVar("reach", default=None)


def reached(reach: Reach) -> Reach:
    """Record how this command reached its study, for every hint it prints from now on."""
    _REACH.set(reach)
    return reach


def toward(reach: Reach, stored: str, own: str | None,
           shipped: Collection[str] = ()) -> Reach:
    """`reach` turned toward the stored study `stored` (a "did you mean"), as it was likely
    reached when it was run: by the study file `--study` gave where `stored` is that file's own
    study (`own`: its name; None where `--study` named no study file), by its own shipped file
    where both are shipped studies (`shipped`: their names), else by `--study-name` beside the
    file given, or by its stored name where no file was given. The store is the same."""
    if own is not None and stored != own and not (stored in shipped and reach.study in shipped):
        return Reach(study=reach.study, name=stored, study_name=stored, storage=reach.storage)
    return Reach(study=reach.study if stored == own else stored, name=stored,
                 storage=reach.storage)


def hint_command(rest: str, reach: Reach | None = None) -> str:
    """`python -m search <rest>` that reaches the study and store this command reached.

    `rest`: the command and its own options (`best --epochs N`); `--study` is added where the
    command takes one, or replaced where it names the reached study by its stored name.
    `reach`: default, what `reached` recorded for this command.
    """
    r = reach or _REACH.get() or Reach()
    try:
        words = shlex.split(rest)
    except ValueError:  # unbalanced quotes: not a command we wrote
        return f"python -m search {rest}"
    at = 1  # where the options that reach the store go: after the command and its study
    if r.study and words and words[0] in STUDY_COMMANDS:
        if "--study" not in words:
            words[1:1] = ["--study", r.study]
        at = words.index("--study") + 2
        if words[at - 1:at] in ([r.study], [r.name]):
            words[at - 1] = r.study
            if r.study_name and "--study-name" not in words:
                words[at:at] = ["--study-name", r.study_name]
                at += 2
    if "--storage" not in words:
        if r.storage:
            words[at:at] = ["--storage", redact(r.storage)]
        elif os.environ.get(ENV):
            words[at:at] = ["--storage", f"${ENV}"]
    return "python -m search " + " ".join(_quote(w) for w in words)


def _quote(word: str) -> str:
    return f'"{word}"' if word == f"${ENV}" else shlex.quote(word)


def carried(text: str, reach: Reach | None = None) -> str:
    """`text` with each `python -m search ...` hint in backticks built by `hint_command`."""
    return _HINT.sub(lambda m: f"`{hint_command(m.group(1), reach)}`", text)
