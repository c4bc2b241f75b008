"""Command-line options shared by every command (`run`, `best`, `validate`, `report`,
`dashboard`) and opening the study they name. Below the CLI: commands import this module,
never `search.cli`.
"""

from __future__ import annotations

import argparse
from typing import Any

from search.errors import UserError

__all__ = ["add_study_args", "load_cfg", "open_study", "positive_int", "with_name"]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 but got {value}")
    return value


def add_study_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--study", required=required, metavar="NAME_OR_PATH",
                        help="a study name from studies/ (e.g. lr) or a path to a .toml file")
    parser.add_argument("--storage", metavar="URL",
                        help="database URL (default: $SEARCH_STORAGE, the study file, "
                        "then sqlite:///search.db)")
    parser.add_argument("--study-name", metavar="NAME",
                        help="the study's name in the storage, where it is not the file's own "
                        "(run --study-name starts a separate study from the same file)")


def load_cfg(name: str) -> Any:
    from search import config

    return config.load_study(name)


def with_name(cfg: Any, name: str | None) -> Any:
    """The study file's settings under another study name (`--study-name`)."""
    if name is None:
        return cfg
    import dataclasses

    from search import config

    return dataclasses.replace(cfg, name=config.check_study_name(name, "--study-name"))


def open_study(args: argparse.Namespace) -> tuple[Any, Any]:
    """(StudyConfig or None, the stored optuna.Study) for --study/--storage; must exist.

    A name that is not a study file is looked up in the storage as a study name. Nothing is
    created: a store or study that does not exist is one line. How the study was reached is
    recorded for the hints this command prints (`storage.reached`).
    """
    import optuna

    from search import storage

    try:
        cfg = with_name(load_cfg(args.study), getattr(args, "study_name", None))
        name = cfg.name
    except UserError:
        if args.study.endswith(".toml") or "/" in args.study:
            raise
        cfg, name = None, args.study
    storage.reached(storage.Reach(study=args.study, name=name,
                                  study_name=getattr(args, "study_name", None),
                                  storage=args.storage))
    url = storage.resolve(args.storage, cfg.storage if cfg else None)
    store = storage.open_existing(url)
    try:
        study = optuna.load_study(study_name=name, storage=store)
    except KeyError:
        there = ", ".join(optuna.get_all_study_names(store)) or "none"
        hint = (f"run `{storage.hint_command('run')}` first" if cfg is not None
                else f"studies there: {there}")
        raise UserError(f"no study {name!r} in {storage.redact(url)}; {hint}") from None
    return cfg, study
