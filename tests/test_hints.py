"""search.storage.hints: every command our messages suggest runs as printed.

The rule on its own (the study file's path, --study-name, --storage with its password hidden,
"$SEARCH_STORAGE"), then end to end: the hints that `run`, `best` (every format), `report`
and the failed look-ups print in realistic situations are collected and each one is executed
in bash, as a person pastes it (tiny fake trainings), and must exit 0.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import dump
from workers_support import ENV, write_study

from search import runner, storage
from search.config import load_study
from search.storage import Reach, carried, hint_command
from search.storage.hints import toward

HINT = re.compile(r"`(python -m search [^`\n]+)`")


def test_a_study_file_given_by_path_is_repeated_by_its_path():
    r = Reach(study="studies/own.toml", name="own")
    assert hint_command("validate", r) == "python -m search validate --study studies/own.toml"
    # a hint written with the stored name finds the file again; another study is left alone
    assert hint_command("validate --study own --top 1", r) == (
        "python -m search validate --study studies/own.toml --top 1")
    assert hint_command("report --study other", r) == "python -m search report --study other"
    assert hint_command("studies", r) == "python -m search studies"


def test_study_name_and_storage_flag_are_carried_the_password_never():
    r = Reach(study="lr", name="lr-cpu", study_name="lr-cpu", storage="sqlite:///my dir/s.db")
    assert hint_command("best --study lr-cpu --epochs N", r) == (
        "python -m search best --study lr --study-name lr-cpu --storage 'sqlite:///my dir/s.db'"
        " --epochs N")
    secret = Reach(study="lr", name="lr", storage="postgresql+psycopg://me:s3cret@db/x")
    hint = hint_command("best", secret)
    assert "s3cret" not in hint and hint.endswith("--storage 'postgresql+psycopg://me:***@db/x'")


def test_a_url_from_the_environment_is_named_not_spelled_out(monkeypatch):
    monkeypatch.setenv(storage.ENV, "postgresql+psycopg://me:s3cret@db/x")
    assert hint_command("best", Reach(study="lr", name="lr")) == (
        'python -m search best --study lr --storage "$SEARCH_STORAGE"')
    # the flag wins over the environment, as storage.resolve_url decides
    assert hint_command("best", Reach(study="lr", storage="sqlite:///f.db")).endswith(
        "--storage sqlite:///f.db")


def test_did_you_mean_reaches_the_stored_study_as_it_was_run():
    shipped = ("lr", "lr-fashion", "lr-fashion-adamw", "quick")
    cases = [  # (the reach given, the stored study meant, the file's own name, the hint)
        (Reach(study="lr-fashion", name="lr-fashoin", study_name="lr-fashoin"), "lr-fashion",
         "lr-fashion", "best --study lr-fashion"),  # a typo'd --study-name: its file's own
        (Reach(study="lr-fashoin", name="lr-fashoin"), "lr-fashion", None,
         "best --study lr-fashion"),  # a typo'd --study: by the stored name
        (Reach(study="lr-fashion-adamw", name="lr-fashion-adamw"), "lr-fashion",
         "lr-fashion-adamw", "best --study lr-fashion"),  # another shipped study: its own file
        (Reach(study="lr", name="lr-cpuu", study_name="lr-cpuu", storage="sqlite:///s.db"),
         "lr-cpu", "lr", "best --study lr --study-name lr-cpu --storage sqlite:///s.db"),
        (Reach(study="my.toml", name="my", storage="sqlite:///s.db"), "lr", "my",
         "best --study my.toml --study-name lr --storage sqlite:///s.db"),  # a file's own
    ]
    for reach, stored, own, hint in cases:
        meant = toward(reach, stored, own, shipped)
        assert meant.name == stored
        assert hint_command("best", meant) == f"python -m search {hint}"
        assert carried(f"`python -m search {hint}`", meant) == f"`python -m search {hint}`"


def test_carried_rewrites_hints_in_text_once():
    r = Reach(study="own.toml", name="own", storage="sqlite:///s.db")
    text = "run `python -m search validate --study own` first; or `python -m search studies`"
    once = carried(text, r)
    assert once == ("run `python -m search validate --study own.toml --storage sqlite:///s.db` "
                    "first; or `python -m search studies --storage sqlite:///s.db`")
    assert carried(once, r) == once


# End to end: real commands in a fresh directory, real hints, each executed as printed.


def _run(cwd, line: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command line as a person types it, in bash; `python` is this venv's."""
    assert line.startswith("python -m search ")
    cmd = shlex.quote(sys.executable) + line[len("python"):]
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **ENV, **(env or {})}, timeout=300)


def _hints(text: str) -> set[str]:
    # `best --epochs N --steps-per-epoch M` asks for the person's own numbers
    return {h.replace("--epochs N --steps-per-epoch M", "--epochs 3 --steps-per-epoch 7")
            for h in HINT.findall(html.unescape(text).replace("\\u002f", "/"))}


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> tuple:
    """(directory, {hint: its environment}, the report page): what a person saw in a fresh
    directory with a study file under studies/ and a store under stores/."""
    cwd = tmp_path_factory.mktemp("hints")
    (cwd / "studies").mkdir()
    (cwd / "stores").mkdir()
    write_study(cwd / "studies", "own", trials=3, epochs=2, sleep=0)
    empty = write_study(cwd / "studies", "empty", trials=2, epochs=2, sleep=0)
    # created by a `run` stopped before its first trial finished
    runner.create_or_load(load_study(str(empty)), f"sqlite:///{cwd}/stores/s.db")
    flags = "--study studies/own.toml --storage sqlite:///stores/s.db"
    env_store = {storage.ENV: "sqlite:///stores/env.db"}
    situations = [  # (command line, exit code, environment)
        (f"python -m search run {flags}", 0, None),
        (f"python -m search best {flags}", 0, None),
        (f"python -m search best {flags} --format python", 0, None),
        (f"python -m search best {flags} --format json", 0, None),
        (f"python -m search best {flags} --format lightning", 0, None),
        (f"python -m search best {flags} --format hf --grad-accum 2", 0, None),
        (f"python -m search best {flags} --trial 99", 2, None),
        (f"python -m search best {flags} --study-name fresh", 2, None),
        (f"python -m search best {flags} --study-name onw", 2, None),  # did you mean 'own'?
        ("python -m search best --study studies/empty.toml --storage sqlite:///stores/s.db",
         2, None),
        ("python -m search run --study studies/own.toml", 0, env_store),
        (f"python -m search report {flags} --no-save", 0, None),
    ]
    hints: dict[str, dict | None] = {}
    for line, code, env in situations:
        r = _run(cwd, line, env)
        assert r.returncode == code, (line, r.stderr)
        found = _hints(r.stdout + r.stderr)
        assert found or line.startswith("python -m search report"), f"no hint from {line}"
        hints |= dict.fromkeys(found, env)
    page = (cwd / "own-report.html").read_text()
    return cwd, hints, _hints(page)


# what dashboards/_winner.py wrote before its note went through storage.hint_command
WINNER_NOTE = "python -m search validate --study own"


def test_every_hint_printed_runs_as_printed(printed):
    cwd, hints, page = printed
    hints = hints | dict.fromkeys(page)
    assert {h.split()[3] for h in hints} == {"run", "best", "validate", "report"}
    for hint, env in sorted(hints.items()):
        words = shlex.split(hint)
        assert words[words.index("--study") + 1] in ("studies/own.toml", "studies/empty.toml")
        assert words[words.index("--storage") + 1] == (
            "$SEARCH_STORAGE" if env else "sqlite:///stores/s.db")
        r = _run(cwd, hint, env)
        assert r.returncode == 0, (hint, r.stderr)


def test_the_reports_winner_note_carries_the_study_file(printed):
    assert WINNER_NOTE not in printed[2]


def test_a_typo_in_a_study_name_is_did_you_mean_the_stored_study_and_changes_nothing(printed):
    """A typo'd --study-name or --study: 'did you mean' the stored study with the command that
    reads it (it runs as printed), never a new study to run; exit 2, the store unchanged."""
    cwd = printed[0]
    db = cwd / "stores" / "s.db"
    before = dump(db)
    readers = []
    for typed, meant in [
        ("best --study studies/own.toml --study-name onw", "best --study studies/own.toml"),
        ("best --study onw", "best --study own"),  # a stored name, not a study file
        ("validate --study studies/empty.toml --study-name onw",  # another file's study
         "validate --study studies/empty.toml --study-name own"),
    ]:
        r = _run(cwd, f"python -m search {typed} --storage sqlite:///stores/s.db")
        line = f"python -m search {meant} --storage sqlite:///stores/s.db"
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert f"did you mean 'own'? `{line}` reads it" in r.stderr
        assert "run" not in r.stderr.replace(line, "")
        assert dump(db) == before
        readers.append(line)
    for line in readers[:2]:  # the reading hints run as printed (validate would train)
        assert _run(cwd, line).returncode == 0, line
    # nothing close: how to start it, as before
    r = _run(cwd, "python -m search best --study studies/own.toml --study-name unrelated "
             "--storage sqlite:///stores/s.db")
    assert r.returncode == 2 and "did you mean" not in r.stderr and "`python -m search run " \
        "--study studies/own.toml --study-name unrelated --storage sqlite:///stores/s.db` first" \
        in r.stderr
    assert dump(db) == before
